/*
 * spillway demo [--time-scale X] | --live
 *
 * The whole story in under a minute, on this machine alone: the daemon with a
 * Compute Engine emulator inside the process, a recorded pressure trace
 * replayed on a clock running X times faster than real time (60 by default),
 * and a narration of what the daemon hears: the pressure rising, the decision,
 * the VM created, booting, READY, the on_ready hook, the pressure falling, the
 * VM idle and deleted, what it cost; then `status` and `costs` of the ledger.
 *
 * It reads no configuration file (only --config and --set, if given) and a
 * fresh state directory, so it neither touches nor counts against the user's
 * ledger, and works the same on every machine. `--live` tells the offload's
 * whole loop with real pressure on this machine instead (demo-live.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "cli/cmd.h"
#include "cli/demo.h"
#include "cli/local-emulator.h"
#include "api/control.h"
#include "api/view.h"
#include "cli/report.h"
#include "emulator/emulator.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/daemon.h"

#define DEMO_SCALE        60
#define DEMO_DEADLINE_MS  120000 /* real time: the story takes about 20 s */
#define DEMO_IDLE_MINUTES "10"   /* gcp.idle_timeout_minutes, as the demo sets it */

extern const char demo_trace[];
extern const size_t demo_trace_len;

enum { OPT_SCALE = 256, OPT_LIVE };

struct demo {
	uv_loop_t loop;
	struct clock clock;
	struct config cfg;
	struct daemon *d;
	struct local_emulator emu; /* the daemon's Compute Engine */
	uv_timer_t deadline;
	int64_t t0_ms;
	bool created, gone;
	int explained; /* how a level holds: said once */
	int status;
};

void
demo_vsay(int64_t s, const char *fmt, va_list ap)
{
	printf("[%02lld:%02lld] ", (long long)(s / 60), (long long)(s % 60));
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
}

static void say(struct demo *, const char *, ...) PRINTFLIKE(2, 3);

/* Each line with the time on the demo's clock since it began. */
static void
say(struct demo *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	demo_vsay((clock_now_ms(&m->clock) - m->t0_ms) / 1000, fmt, ap);
	va_end(ap);
}

static void
on_stopped(void *arg)
{
	struct demo *m = arg;
	struct view_src s;
	json_t *doc;

	control_view(m->d, &s); /* its configuration is pointed at the emulator */
	uv_close((uv_handle_t *)&m->deadline, NULL);
	printf("\n$ spillway status\n");
	report_status(stdout, doc = view_status(&s), false);
	json_decref(doc);
	printf("\n$ spillway costs --days 1\n");
	report_costs(stdout, doc = view_costs(&s, 1));
	json_decref(doc);
	daemon_free(m->d);
	m->d = NULL;
	local_emulator_stop(&m->emu);
}

static void
stop(struct demo *m, int status)
{
	if (m->status >= 0)
		return;
	m->status = status;
	uv_timer_stop(&m->deadline);
	daemon_stop(m->d, on_stopped, m);
}

static void
on_deadline(uv_timer_t *t)
{
	struct demo *m = t->data;

	say(m, "demo failed: the story did not end within %d s", DEMO_DEADLINE_MS / 1000);
	stop(m, EXIT_FAIL);
}

static void
on_started(void *arg, int error, const char *cause)
{
	struct demo *m = arg;

	if (error != 0) {
		say(m, "demo failed: %s", cause);
		stop(m, EXIT_FAIL);
		return;
	}
	m->t0_ms = clock_now_ms(&m->clock);
	say(m, "the daemon runs against the emulator at %s; replaying the trace",
	    emulator_url(m->emu.emu));
}

static void
on_hook_output(const char *hook, const char *line, void *arg)
{
	say(arg, "  hook on_%s says: %s", hook, line);
}

/* The rule the new level met, in the configuration's numbers (src/pressure/level.h). */
static void
level_rule(const struct config *c, enum pressure_level to, enum pressure_level from, char *out,
    size_t size)
{
	switch (to) {
	case PRESSURE_ELEVATED:
		snprintf(out, size,
		    "ELEVATED arms at %.4g%% some (or under %.4g%% available) for %.4g s",
		    c->elevated_pct, c->low_available_pct, c->elevated_sustain_s);
		break;
	case PRESSURE_HIGH:
		snprintf(out, size, "HIGH arms at %.4g%% some for %.4g s", c->high_pct,
		    c->high_sustain_s);
		break;
	case PRESSURE_CRITICAL:
		snprintf(out, size,
		    "CRITICAL arms at %.4g%% some or %.4g%% full for %.4g s, after HIGH's %.4g%% for "
		    "%.4g s",
		    c->critical_pct, c->critical_full_pct, c->critical_sustain_s, c->high_pct,
		    c->high_sustain_s);
		break;
	default:
		snprintf(out, size, "it falls after %.4g s under %.4g times %s's threshold",
		    c->dwell_s, c->disarm_ratio, pressure_level_name(from));
		break;
	}
}

static void
narrate_pressure(struct demo *m, const struct manager_event *e)
{
	const struct pressure_snapshot *s = e->snap;
	char rule[256];

	level_rule(&m->cfg, s->level, e->previous, rule, sizeof rule);
	say(m, "pressure %s -> %s: %.1f%% some, %.1f%% full of the last %lld s stalled now; %s",
	    pressure_level_name(e->previous), pressure_level_name(s->level), s->some_pct,
	    s->full_pct, (long long)m->cfg.window_s, rule);
	if (s->level > e->previous && !m->explained++)
		say(m,
		    "  (a level, once armed, holds while the stall stays above %.4g times its "
		    "threshold; %.0f%% of memory is available: the trace's cgroup stalled under its "
		    "memory.high while the machine had memory to spare)",
		    m->cfg.disarm_ratio, s->available_pct);
}

static void
narrate_decision(struct demo *m, const struct decision *dn)
{
	if (!dn->create) { /* the manager says each refusal once, not every second */
		say(m, "decision: no VM now: %s", dn->reason);
		return;
	}
	say(m, "decision: create a Spot VM (confidence %.2f)", dn->confidence);
	say(m, "  why: %s", dn->reason);
	say(m, "  components to move: %s", dn->components);
	say(m, "  budget: $%.4f for a run of at most %.1f h; $%.2f of today's budget left",
	    dn->cost, (double)dn->run_s / 3600, dn->left);
}

static void
narrate(const struct manager_event *e, void *arg)
{
	struct demo *m = arg;
	const struct vm_record *v = e->vm;

	switch (e->kind) {
	case MEV_PRESSURE:
		narrate_pressure(m, e);
		break;
	case MEV_DECISION:
		narrate_decision(m, e->decision);
		break;
	case MEV_STATE:
		if (v->state == VM_REQUESTED)
			say(m, "%s: REQUESTED in %s: the intent is in the ledger (requestId %s)",
			    v->name, v->zone, v->request_id);
		else
			say(m, "%s: %s -> %s: %s", v->name, vm_state_name(e->from),
			    vm_state_name(v->state), e->reason);
		if (v->state == VM_CREATING) {
			m->created = true;
			say(m,
			    "  the insert: %s, %s, maxRunDuration %lld s then DELETE, labels "
			    "managed-by=spillway and spillway-owner=%s, the startup script and agent "
			    "in its metadata",
			    v->machine_type, v->spot ? "SPOT" : "STANDARD",
			    (long long)v->planned_run_s, daemon_owner(m->d));
		}
		if (!vm_state_alive(v->state) && m->created) {
			say(m, "%s cost $%.4f (%s, %.2f min billed at $%.4f/h)", v->name, v->cost,
			    v->machine_type, (double)(v->ended_ms - v->started_ms) / 60000,
			    v->per_hour);
			stop(m, v->state == VM_TERMINATED ? EXIT_OK : EXIT_FAIL);
		}
		break;
	case MEV_READY:
		say(m, "%s is READY at http://%s:%lld: %s now run there", v->name, v->nat_ip,
		    (long long)m->cfg.backend_port, v->components);
		break;
	case MEV_GONE:
		say(m, "%s is leaving (%s): %s run locally again", v->name, e->reason,
		    v->components);
		break;
	case MEV_NOTE:
		say(m, "%s", e->reason);
		break;
	}
}

int
demo_config(struct config *cfg, const struct config_args *user, const char *file,
    const char *const *own, size_t nown, const char *state_dir, char **cause)
{
	const char *const *sets = user != NULL && user->sets != NULL ? user->sets : NULL;
	size_t n = 0;
	const char **all;
	char *state, *const env[] = {NULL};
	struct config_args args = {file, NULL};
	int error;

	while (sets != NULL && sets[n] != NULL)
		n++;
	all = xcalloc(n + nown + 2, sizeof *all);
	for (size_t i = 0; i < nown; i++)
		all[i] = own[i];
	for (size_t i = 0; i < n; i++) /* after the demo's: the user's win */
		all[nown + i] = sets[i];
	state = xasprintf("spillway.state_dir=%s", state_dir);
	all[nown + n] = state;
	args.sets = all;
	error = config_load(cfg, &args, env, cause);
	free(state);
	free(all);
	return error;
}

int
demo_start(uv_loop_t *loop, const struct clock *clock, const struct config *cfg,
    const struct emulator_opts *eo, struct daemon_opts *o, struct local_emulator *emu,
    struct daemon **d, const char *who)
{
	char *cause = NULL;

	o->cfg = cfg;
	o->clock = clock;
	o->cloud_at = &emu->at;
	o->env = (char *const[]){NULL};
	if (local_emulator_start(loop, clock, cfg, eo, emu, &cause) != 0) {
		fprintf(stderr, "%s: the emulator: %s\n", who, cause);
		free(cause);
		return -1;
	}
	if (daemon_new(loop, o, d, &cause) != 0) {
		fprintf(stderr, "%s: %s\n", who, cause);
		free(cause);
		local_emulator_stop(emu);
		return -1;
	}
	return 0;
}

int
demo_free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int
exec_demo(struct cmd_ctx *ctx, const struct args *a)
{
	/* The demo's own settings; the user's --set come after. */
	const char *own[] = {"gcp.idle_timeout_minutes=" DEMO_IDLE_MINUTES,
	    "hooks.on_ready=echo name={name} endpoint={endpoint} components={components} "
	    "reason={reason}",
	    "hooks.on_gone=echo event={event} components={components} reason={reason}"};
	struct daemon_opts o = {0};
	struct emulator_opts eo;
	struct demo m = {.status = -1};
	char *dir = NULL, *trace = NULL, *cause = NULL;
	double scale = DEMO_SCALE;
	int error, status = EXIT_FAIL;

	if (args_has(a, OPT_LIVE)) {
		if (args_has(a, OPT_SCALE))
			return cmd_usage_error(
			    &cmd_demo_entry, "--live runs in real time: it takes no --time-scale");
		return demo_live(ctx);
	}
	if (args_has(a, OPT_SCALE) && parse_double(args_get(a, OPT_SCALE), 1, 10000, &scale) != 0)
		return cmd_usage_error(&cmd_demo_entry,
		    "invalid value '%s' for --time-scale: expected a number from 1 to 10000",
		    args_get(a, OPT_SCALE));
	if (make_temp_dir("spillway-demo", &dir, &cause) != 0) {
		fprintf(stderr, "spillway demo: %s\n", cause);
		goto out;
	}
	if (demo_config(&m.cfg, ctx->config_args,
	        ctx->config_args != NULL ? ctx->config_args->file : NULL, own,
	        sizeof own / sizeof own[0], dir, &cause) != 0) {
		fprintf(stderr, "spillway demo: %s\n", cause);
		status = EXIT_USAGE;
		goto out;
	}
	trace = xasprintf("%s/pressure.trace", dir);
	if ((error = write_file_atomic(trace, demo_trace, demo_trace_len, 0600)) != 0) {
		fprintf(stderr, "spillway demo: cannot write %s: %s\n", trace, strerror(-error));
		goto out;
	}
	/* Boot times as Google's, on the fast clock. */
	emulator_opts_default(&eo);
	eo.project = "spillway-demo";
	eo.boot_ms = 40000;
	eo.guest_boot_ms = 45000;
	clock_scaled(&m.clock, scale, realtime_ns());
	uv_loop_init(&m.loop);
	o.replay = trace;
	o.on_event = narrate;
	o.hook_output = on_hook_output;
	o.on_started = on_started;
	o.event_arg = &m;
	log_set_level(LOG_LEVEL_WARN); /* the narration tells the story; warnings still show */
	printf(
	    "spillway demo: a Compute Engine emulator in this process, a recorded pressure trace,\n"
	    "and a clock %.0f times faster than real time (times below are on that clock).\n"
	    "The VM is idle, and deleted, once its backend is unused for %s min (the demo's\n"
	    "gcp.idle_timeout_minutes; 30 by default). The hooks echo what they are given.\n\n",
	    scale, DEMO_IDLE_MINUTES);
	if (demo_start(&m.loop, &m.clock, &m.cfg, &eo, &o, &m.emu, &m.d, "spillway demo") != 0)
		goto loop;
	uv_timer_init(&m.loop, &m.deadline);
	m.deadline.data = &m;
	uv_timer_start(&m.deadline, on_deadline, DEMO_DEADLINE_MS, 0);
	uv_run(&m.loop, UV_RUN_DEFAULT);
	status = m.status >= 0 ? m.status : EXIT_FAIL;
loop:
	uv_run(&m.loop, UV_RUN_DEFAULT);
	uv_loop_close(&m.loop);
out:
	if (dir != NULL && remove_tree(dir) != 0)
		fprintf(stderr, "spillway demo: cannot remove %s\n", dir);
	config_free(&m.cfg);
	free(cause);
	free(trace);
	free(dir);
	return status;
}

static const struct option options[] = {
    {"time-scale", required_argument, NULL, OPT_SCALE},
    {"live", no_argument, NULL, OPT_LIVE},
    {0},
};

const struct cmd_entry cmd_demo_entry = {
    .name = "demo",
    .usage = "[--time-scale X] | --live",
    .summary = "the whole story on the built-in emulator: pressure, a VM, its cost (--live: "
               "real pressure, the memory given back)",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = 0,
    .exec = exec_demo,
};
