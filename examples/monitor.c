/*
 * monitor: watch what spillway does, as the original application's
 * monitoring loop did: every pressure change, decision and VM event as it
 * happens, then the VMs and the statistics.
 *
 *	usage: monitor [SECONDS]
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include <spillway.h>

static void
on_event(const struct spillway_event *e, void *arg)
{
	static const char *const names[] = {"pressure", "decision", "state", "offload", "return"};

	(*(int *)arg)++;
	printf("%s %-8s", e->time, names[e->type]);
	if (e->type == SPILLWAY_EVENT_PRESSURE)
		printf(" %s", e->level);
	if (e->vm != NULL)
		printf(" %s %s%s%s", e->vm->name, e->from[0] ? e->from : "",
		    e->from[0] ? " -> " : "", e->vm->state);
	printf(": %s\n", e->reason);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	int seconds = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 10, events = 0, n;
	struct spillway_vm vms[16];
	struct spillway_stats s;
	char err[512];
	spillway *sp;

	if (spillway_open(&sp, SPILLWAY_AUTO, NULL, err, sizeof err) != 0) {
		fprintf(stderr, "monitor: %s\n", err);
		return 1;
	}
	if (spillway_on_event(sp, on_event, &events) != 0) {
		fprintf(stderr, "monitor: cannot follow the events\n");
		spillway_close(sp, true);
		return 1;
	}
	printf("watching for %d s (%s)\n", seconds,
	    spillway_in_process(sp) ? "in this process" : "the daemon's events");
	fflush(stdout);
	/* The program's own loop: poll spillway's fd beside its own, then dispatch. */
	for (int i = 0; i < seconds * 10; i++) {
		struct pollfd p = {spillway_fd(sp), POLLIN, 0};

		poll(&p, p.fd >= 0 ? 1 : 0, 100);
		if (spillway_dispatch(sp, 0) != 0)
			break;
	}
	n = spillway_vms(sp, false, vms, 16);
	for (int i = 0; i < n && i < 16; i++)
		printf("vm: %s %s %s %s %lld s $%.4f\n", vms[i].name, vms[i].state, vms[i].zone,
		    vms[i].endpoint[0] ? vms[i].endpoint : "-", vms[i].uptime_s, vms[i].cost);
	{
		struct spillway_route routes[8];
		int nr = spillway_routes(sp, routes, 8);

		for (int i = 0; i < nr && i < 8; i++)
			printf("route: %s %s -> %s%s%s, %ld open, %lld bytes up, %lld down\n",
			    routes[i].component, routes[i].listen, routes[i].to,
			    routes[i].vm[0] ? " " : "", routes[i].vm, routes[i].open,
			    routes[i].bytes_up, routes[i].bytes_down);
	}
	if (spillway_stats(sp, &s) == 0)
		printf("stats: %ld created, %ld active, %ld failed, %ld terminated, %ld preempted, "
		       "$%.4f in all, $%.4f of $%.2f today; %d events\n",
		    s.created, s.active, s.failed, s.terminated, s.preempted, s.total_cost,
		    s.spent_today, s.budget_today, events);
	spillway_close(sp, true);
	return 0;
}
