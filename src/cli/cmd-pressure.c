/*
 * spillway pressure [--json] [--watch [--all]] [--cgroup PATH] [--record FILE]
 *                   [--replay FILE [--realtime | --speed X]]
 *
 * One snapshot (two samples a second apart), or a line per level change with
 * --watch (every sample with --all), or a recorded trace replayed through the
 * same monitor. See docs/pressure.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "api/view.h"
#include "cli/cmd.h"
#include "pressure/monitor.h"
#include "pressure/procfs.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

enum { OPT_CGROUP = 256, OPT_RECORD, OPT_REPLAY, OPT_REALTIME, OPT_SPEED, OPT_ALL };

struct run {
	uv_loop_t loop;
	struct clock clock;
	struct monitor *m;
	uv_signal_t sigint, sigterm;
	bool json;
	bool all;
	bool once;
	int samples;
	int printed;          /* lines said by --watch or --replay */
	char watch_mode[160]; /* what --watch would use: a trigger where the kernel allows */
	int64_t start_ms;     /* a replay's first time, for offsets */
};

/* The pressure document of the API, as a document of its own. */
static json_t *
document(const struct pressure_snapshot *s, const char *mode_reason)
{
	json_t *doc = json_pack("{s:i}", "schema_version", VIEW_SCHEMA_VERSION),
	       *v = pressure_snapshot_json(s, mode_reason);

	json_object_update(doc, v);
	json_decref(v);
	return doc;
}

static void
print_line(struct run *r, const struct pressure_snapshot *s, enum pressure_level previous)
{
	char t[RFC3339_LEN];

	if (r->json) {
		json_t *v = document(s, monitor_mode_reason(r->m));
		char *line;

		json_object_set_new(v, "previous", json_string(pressure_level_name(previous)));
		if (r->start_ms > 0)
			json_object_set_new(v, "offset_ms", json_integer(s->t_ms - r->start_ms));
		line = jx_dumps(v);
		puts(line);
		free(line);
		json_decref(v);
	} else {
		time_rfc3339(s->t_ms, 0, t);
		if (r->start_ms > 0)
			printf("+%8.3fs ", (double)(s->t_ms - r->start_ms) / 1000.0);
		else
			printf("%.23s ", t);
		printf("%-8s", pressure_level_name(s->level));
		if (previous != s->level)
			printf(" (was %s)", pressure_level_name(previous));
		printf("  some %5.1f%%  full %5.1f%%  available %5.1f%%  refaults %.0f/s",
		    s->some_pct, s->full_pct, s->available_pct, s->refault_rate);
		if (s->level > previous && s->ntop > 0)
			printf("  top: %s (%lld MiB%s%s)", s->top[0].comm,
			    (long long)s->top[0].rss_kb / 1024, s->top[0].component ? ", " : "",
			    s->top[0].component ? s->top[0].component : "");
		printf("\n");
	}
	fflush(stdout);
}

static void
on_change(const struct pressure_snapshot *s, enum pressure_level previous, void *arg)
{
	((struct run *)arg)->printed++;
	print_line(arg, s, previous);
}

static void
stop(struct run *r)
{
	monitor_free(r->m);
	r->m = NULL;
	if (uv_is_active((uv_handle_t *)&r->sigint)) {
		uv_close((uv_handle_t *)&r->sigint, NULL);
		uv_close((uv_handle_t *)&r->sigterm, NULL);
	}
}

static void
on_signal(uv_signal_t *h, int signum)
{
	stop(h->data);
}

static void
print_snapshot(struct run *r, const struct pressure_snapshot *s)
{
	if (r->json) {
		json_t *v = document(s, monitor_mode_reason(r->m));
		char *text = json_dumps(v, JSON_INDENT(2));

		puts(text);
		free(text);
		json_decref(v);
		return;
	}
	printf("level          %s\nstall          some %.1f%%  full %.1f%%  (avg10 %.2f%%/%.2f%%, "
	       "avg60 %.2f%%/%.2f%%)\n",
	    pressure_level_name(s->level), s->some_pct, s->full_pct, s->some_avg10, s->full_avg10,
	    s->some_avg60, s->full_avg60);
	printf("memory         %lld MiB available of %lld MiB (%.1f%%), swap used %lld MiB\n",
	    (long long)s->mem_available_kb / 1024, (long long)s->mem_total_kb / 1024,
	    s->available_pct, (long long)s->swap_used_kb / 1024);
	printf("rates          refaults %.0f/s, swap-ins %.0f/s, major faults %.0f/s\n",
	    s->refault_rate, s->swapin_rate, s->majfault_rate);
	/* A snapshot samples twice; the daemon and --watch use what the kernel allows. */
	printf("source         %s (a snapshot of two samples a second apart; the daemon and "
	       "--watch use %s)\n",
	    s->source ? s->source : "-", r->watch_mode);
	printf("components    ");
	for (int i = 0; i < s->ncomponents; i++)
		printf(" %s %lld MiB (%d)%s", s->components[i].name,
		    (long long)s->components[i].rss_kb / 1024, s->components[i].processes,
		    i + 1 < s->ncomponents ? "," : "");
	printf(
	    "\n\n%7s  %-16s %10s %10s  %s\n", "PID", "COMMAND", "RSS MiB", "PSS MiB", "COMPONENT");
	for (int i = 0; i < s->ntop; i++) {
		char pss[24] = "-";

		if (s->top[i].pss_kb >= 0)
			snprintf(pss, sizeof pss, "%.1f", (double)s->top[i].pss_kb / 1024);
		printf("%7d  %-16s %10.1f %10s  %s\n", s->top[i].pid, s->top[i].comm,
		    (double)s->top[i].rss_kb / 1024, pss,
		    s->top[i].component ? s->top[i].component : "-");
	}
}

/* One snapshot: the instantaneous level over a second, and who uses the memory now. */
static void
on_once(const struct pressure_snapshot *s, enum pressure_level previous, void *arg)
{
	struct run *r = arg;
	struct pressure_snapshot copy;

	if (++r->samples < 2)
		return;
	copy = *s;
	{
		const struct config *cfg = uv_loop_get_data(&r->loop);
		struct monitor_opts o;
		struct level_input in = {.some_pct = s->some_pct,
		    .full_pct = s->full_pct,
		    .available_pct = s->available_pct};

		monitor_opts_from_config(&o, cfg);
		copy.level = level_target(&o.level, &in, false);
		copy.since_ms = s->t_ms;
		if (procfs_processes("/proc", cfg->components, cfg->ncomponents, &copy) == 0)
			copy.processes_ms = s->t_ms;
	}
	print_snapshot(r, &copy);
	stop(r);
}

static void
on_replayed(void *arg)
{
	struct run *r = arg;

	/* A calm trace is an answer too. */
	if (r->printed == 0 && !r->json)
		printf(
		    "the trace's level stayed %s: no change to show (--all shows every sample)\n",
		    pressure_level_name(monitor_snapshot(r->m)->level));
	stop(r);
}

/* The options that go together, and --speed: 0, or the exit status of a usage error. */
static int
check_options(const struct args *a, const char *cgroup, double *speed)
{
	const struct cmd_entry *e = &cmd_pressure_entry;

	if (cgroup != NULL && cgroup[0] != '/')
		return cmd_usage_error(e,
		    "--cgroup '%s': expected the absolute path of a cgroup v2 "
		    "directory, such as /sys/fs/cgroup/user.slice",
		    cgroup);
	if (args_get(a, OPT_REPLAY) != NULL &&
	    (args_has(a, 'w') || args_has(a, OPT_RECORD) || cgroup != NULL))
		return cmd_usage_error(e, "--replay cannot go with --watch, --record or --cgroup");
	if (args_has(a, OPT_SPEED) && parse_double(args_get(a, OPT_SPEED), 0.001, 1e6, speed) != 0)
		return cmd_usage_error(e,
		    "invalid value '%s' for --speed: expected a number from "
		    "0.001 to 1000000",
		    args_get(a, OPT_SPEED));
	if (args_has(a, OPT_REALTIME))
		*speed = 1;
	return 0;
}

/* The live monitor: one snapshot, or --watch until a signal. 0, or the exit status. */
static int
start_live(struct run *r, bool watch)
{
	char *cause = NULL;

	if (monitor_start(r->m, &cause) != 0) {
		fprintf(stderr, "spillway pressure: %s\n", cause);
		free(cause);
		monitor_free(r->m);
		return EXIT_FAIL;
	}
	if (!watch) {
		monitor_on_sample(r->m, on_once, r);
		return 0;
	}
	if (!r->json) {
		printf(
		    "watching %s: %s\n", monitor_snapshot(r->m)->source, monitor_mode_reason(r->m));
		fflush(stdout);
	}
	if (r->all)
		monitor_on_sample(r->m, on_change, r);
	else
		monitor_on_level(r->m, on_change, r);
	uv_signal_init(&r->loop, &r->sigint);
	uv_signal_init(&r->loop, &r->sigterm);
	r->sigint.data = r->sigterm.data = r;
	uv_signal_start(&r->sigint, on_signal, SIGINT);
	uv_signal_start(&r->sigterm, on_signal, SIGTERM);
	return 0;
}

static int
exec_pressure(struct cmd_ctx *ctx, const struct args *a)
{
	struct run r = {0};
	struct monitor_opts o;
	struct trace trace = {NULL, 0};
	const char *cgroup = args_get(a, OPT_CGROUP), *replay = args_get(a, OPT_REPLAY);
	char *psi = NULL, *cause = NULL;
	double speed = 0;
	int status = EXIT_OK;

	if (cgroup == NULL && *ctx->cfg.pressure_cgroup != '\0')
		cgroup = ctx->cfg.pressure_cgroup;
	if ((status = check_options(a, cgroup, &speed)) != 0)
		return status;
	if (monitor_check(&ctx->cfg, have_cap_sys_resource(), &cause) != 0) {
		fprintf(stderr, "spillway: %s\n", cause);
		free(cause);
		return EXIT_USAGE;
	}
	if (replay != NULL && trace_load(replay, &trace, &cause) != 0) {
		fprintf(stderr, "spillway pressure: %s\n", cause);
		free(cause);
		return EXIT_USAGE;
	}
	r.json = args_has(a, 'j');
	r.all = args_has(a, OPT_ALL);
	clock_real(&r.clock);
	uv_loop_init(&r.loop);
	uv_loop_set_data(&r.loop, &ctx->cfg);
	monitor_opts_from_config(&o, &ctx->cfg);
	o.clock = &r.clock;
	o.record = args_get(a, OPT_RECORD);
	if (cgroup != NULL)
		psi = xasprintf("%s/memory.pressure", cgroup);
	else if (access("/proc/pressure/memory", F_OK) == 0)
		psi = xstrdup("/proc/pressure/memory");
	o.psi_path = psi;
	snprintf(r.watch_mode, sizeof r.watch_mode, "%s",
	    psi != NULL ? "a PSI trigger, else sampling" : "sampling /proc/meminfo");
	if (!args_has(a, 'w') && replay == NULL) {
		/* One snapshot: two samples a second apart, no trigger. */
		o.poll = true;
		o.sample_ms = 1000;
		o.processes = false;
	}
	/* Every sample: a trigger would say nothing while it is calm. */
	if (args_has(a, 'w') && r.all)
		o.poll = true;
	if (monitor_new(&r.loop, &o, &r.m, &cause) != 0) {
		fprintf(stderr, "spillway pressure: %s\n", cause);
		free(cause);
		status = EXIT_USAGE;
		goto out;
	}
	if (replay != NULL) {
		r.start_ms = trace.samples[0].t_ms;
		if (r.all)
			monitor_on_sample(r.m, on_change, &r);
		else
			monitor_on_level(r.m, on_change, &r);
		monitor_replay(r.m, &trace, speed, on_replayed, &r);
	} else if ((status = start_live(&r, args_has(a, 'w'))) != 0) {
		goto out;
	}
	uv_run(&r.loop, UV_RUN_DEFAULT);
out:
	uv_run(&r.loop, UV_RUN_DEFAULT);
	uv_loop_close(&r.loop);
	trace_free(&trace);
	free(psi);
	return status;
}

static const struct option options[] = {
    {"json", no_argument, NULL, 'j'},
    {"watch", no_argument, NULL, 'w'},
    {"all", no_argument, NULL, OPT_ALL},
    {"cgroup", required_argument, NULL, OPT_CGROUP},
    {"record", required_argument, NULL, OPT_RECORD},
    {"replay", required_argument, NULL, OPT_REPLAY},
    {"realtime", no_argument, NULL, OPT_REALTIME},
    {"speed", required_argument, NULL, OPT_SPEED},
    {0},
};

const struct cmd_entry cmd_pressure_entry = {
    .name = "pressure",
    .usage = "[--json] [--watch [--all]] [--cgroup PATH] [--record FILE]\n"
             "        [--replay FILE [--realtime | --speed X]]",
    .summary = "memory pressure now, live (--watch), or from a recorded trace",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_pressure,
};
