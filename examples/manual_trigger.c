/*
 * manual_trigger: what an application does when it decides by itself that
 * its heavy parts should move: look at the pressure, ask spillway, create a
 * VM for them, wait until it is READY, use its endpoint, and let it go.
 *
 *	usage: manual_trigger [COMPONENTS] [SECONDS]
 *
 * Exit 0 when the VM was READY and is deleted again; 3 when a rule refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spillway.h>

struct wait {
	const char *name;
	char endpoint[128];
	bool ready, failed;
};

static void
on_event(const struct spillway_event *e, void *arg)
{
	struct wait *w = arg;

	if (e->vm == NULL || strcmp(e->vm->name, w->name) != 0)
		return;
	printf("%s: %s %s\n", e->type == SPILLWAY_EVENT_OFFLOAD ? "offload" : "event", e->vm->state,
	    e->reason);
	if (e->type == SPILLWAY_EVENT_OFFLOAD) {
		snprintf(w->endpoint, sizeof w->endpoint, "%s", e->vm->endpoint);
		w->ready = true;
	}
	if (strcmp(e->vm->state, "FAILED") == 0 || strcmp(e->vm->state, "TERMINATED") == 0)
		w->failed = true;
}

int
main(int argc, char **argv)
{
	const char *components = argc > 1 ? argv[1] : "vision,chatbots";
	int seconds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 120;
	const struct spillway_kv metadata[] = {{"app", "manual-trigger"}};
	struct spillway_pressure p;
	struct spillway_advice a;
	struct spillway_stats s;
	struct wait w = {0};
	char name[64], err[512];
	spillway *sp;
	int error;

	if ((error = spillway_open(&sp, SPILLWAY_AUTO, NULL, err, sizeof err)) != 0) {
		fprintf(stderr, "manual_trigger: %s\n", err);
		return 1;
	}
	printf("spillway: %s\n", spillway_in_process(sp) ? "in this process" : "the daemon");
	if (spillway_pressure(sp, &p) == 0)
		printf("pressure: %s, %.1f%% of memory available\n",
		    p.level[0] ? p.level : "unknown", p.available_pct);
	if (spillway_should_create(sp, &a) == 0)
		printf("advice: %s (confidence %.2f): %s\n", a.create ? "create" : "wait",
		    a.confidence, a.reason);
	/* The application has decided: it asks anyway, under spillway's money rules. */
	w.name = name;
	spillway_on_event(sp, on_event, &w);
	error = spillway_create(
	    sp, components, "the application asked", metadata, 1, name, err, sizeof err);
	if (error == -EAGAIN) {
		printf("refused: %s\n", err);
		spillway_close(sp, false);
		return 3;
	}
	if (error != 0) {
		fprintf(stderr, "manual_trigger: %s\n", err);
		spillway_close(sp, false);
		return 1;
	}
	printf("created: %s for %s\n", name, components);
	for (int i = 0; i < seconds * 10 && !w.ready && !w.failed; i++)
		spillway_dispatch(sp, 100);
	if (!w.ready) {
		printf("%s did not become READY\n", name);
		spillway_terminate(sp, name, err, sizeof err);
		spillway_close(sp, false);
		return 1;
	}
	printf("ready: %s at %s\n", name, w.endpoint);
	/* ... the application's components would talk to the endpoint here ... */
	if (spillway_terminate(sp, name, err, sizeof err) != 0)
		fprintf(stderr, "manual_trigger: %s\n", err);
	for (int i = 0; i < seconds * 10 && !w.failed; i++)
		spillway_dispatch(sp, 100);
	if (spillway_stats(sp, &s) == 0)
		printf("stats: %ld created, %ld active, %ld terminated, $%.4f in all\n", s.created,
		    s.active, s.terminated, s.total_cost);
	spillway_close(sp, false);
	return 0;
}
