/*
 * bench/pressure: how fast and how cheap the pressure monitor is.
 *
 *	(a) latency from a PSI trigger's wake-up to the level callback (and to the
 *	    sample callback, for every event), during bursts of real stalls
 *	(b) latency from the onset of real stalls in a memory cgroup to HIGH, with
 *	    the default sustain (from the load's start and from the first event)
 *	(c) CPU time per sample (live reads and processing; processing alone on a
 *	    replayed trace) and per trigger event
 *	(d) idle cost over IDLE seconds with no pressure: CPU ticks, wake-ups
 *	    (context switches) and RSS of `spillway pressure --watch`, next to
 *	    earlyoom measured over the same seconds
 *
 *	usage: pressure [SPILLWAY_BINARY] [IDLE_SECONDS] [TRACE]
 *
 * (a)-(c) need a memory cgroup (root); without one they say so and (d) runs.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "config/config.h"
#include "memload.h"
#include "pressure/monitor.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "figure.h"

#define MAX_EVENTS 4096

static uv_loop_t loop;
static struct clock clk;
static struct memload load;

struct stats {
	double level_us[MAX_EVENTS];
	int nlevel;
	double sample_us[MAX_EVENTS];
	int nsample;
	double first_event_s;
	double high_s;
	enum pressure_level level;
};

static double
mono_s(void)
{
	return (double)monotonic_ns() / 1e9;
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
pct(double *v, int n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[(int)(p * (n - 1))];
}

static void
on_sample(const struct pressure_snapshot *s, enum pressure_level prev, void *arg)
{
	struct stats *st = arg;

	if (s->woke_ns == 0)
		return;
	if (st->first_event_s == 0)
		st->first_event_s = mono_s();
	if (st->nsample < MAX_EVENTS)
		st->sample_us[st->nsample++] = (double)(monotonic_ns() - s->woke_ns) / 1e3;
}

static void
on_level(const struct pressure_snapshot *s, enum pressure_level prev, void *arg)
{
	struct stats *st = arg;

	st->level = s->level;
	if (s->level >= PRESSURE_HIGH && st->high_s == 0)
		st->high_s = mono_s();
	if (s->woke_ns != 0 && s->level > prev && st->nlevel < MAX_EVENTS)
		st->level_us[st->nlevel++] = (double)(monotonic_ns() - s->woke_ns) / 1e3;
}

static void
tick(uv_timer_t *t)
{
}

/* Run the loop for this long (the monitor does its work meanwhile). */
static void
spin(double seconds)
{
	double end = mono_s() + seconds;
	uv_timer_t t;

	uv_timer_init(&loop, &t);
	while (mono_s() < end) {
		/* A stale loop time would make the timer overdue, and UV_RUN_ONCE then blocks. */
		uv_update_time(&loop);
		uv_timer_start(&t, tick, 50, 0);
		uv_run(&loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static struct monitor *
start(struct monitor_opts *o, struct stats *st)
{
	struct monitor *m;
	char *cause = NULL;

	if (monitor_new(&loop, o, &m, &cause) != 0 || monitor_start(m, &cause) != 0) {
		fprintf(stderr, "bench: %s\n", cause);
		exit(1);
	}
	monitor_on_sample(m, on_sample, st);
	monitor_on_level(m, on_level, st);
	return m;
}

static void
stop(struct monitor *m)
{
	monitor_free(m);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static void
live(const struct config *cfg, const char *pressure)
{
	struct monitor_opts o;
	struct stats *st = xcalloc(1, sizeof *st);
	struct monitor *m;
	double t0, cpu0, cpu1;
	long samples, events;

	/* (b) default sustain: from the load's start, and from the first event, to HIGH. */
	monitor_opts_from_config(&o, cfg);
	o.psi_path = pressure;
	o.clock = &clk;
	o.level.dwell_ms = 3000;
	m = start(&o, st);
	spin(0.5);
	t0 = mono_s();
	memload_start(&load, 2);
	for (double end = t0 + 60; st->high_s == 0 && mono_s() < end;)
		spin(0.2);
	memload_stop(&load);
	if (st->high_s == 0) {
		/* No figure rather than a false one: the load did not stall this machine. */
		printf("(b) onset of real stalls to HIGH: not reached within 60 s%s: no figure\n",
		    st->first_event_s == 0 ? " (no trigger event at all)" : "");
	} else {
		printf("(b) onset of real stalls to HIGH (sustain %.0f s): %.2f s from the load's "
		       "start, %.2f s from the first trigger event\n",
		    cfg->high_sustain_s, st->high_s - t0, st->high_s - st->first_event_s);
		figure("pressure load start to HIGH", st->high_s - t0, "s");
	}
	for (double end = mono_s() + 30; st->level != PRESSURE_NORMAL && mono_s() < end;)
		spin(0.2);
	stop(m);

	/* (a) and (c): bursts, every first event a level change (no sustain, short dwell). */
	memset(st, 0, sizeof *st);
	o.level.sustain_ms[PRESSURE_ELEVATED] = 0;
	o.level.dwell_ms = 500;
	m = start(&o, st);
	spin(0.5);
	cpu0 = cpu_s();
	for (int burst = 0; burst < 12; burst++) {
		memload_drop(&load);
		memload_start(&load, 2);
		spin(2.0);
		memload_stop(&load);
		spin(4.0); /* the window empties (2 s), then the dwell */
	}
	cpu1 = cpu_s();
	monitor_counts(m, &samples, &events);
	stop(m);
	printf("(a) trigger wake-up to level callback (a rise reads the top processes first): "
	       "median %.1f us, p99 %.1f us (%d level changes)\n",
	    pct(st->level_us, st->nlevel, 0.5), pct(st->level_us, st->nlevel, 0.99), st->nlevel);
	printf("    trigger wake-up to sample callback: median %.1f us, p99 %.1f us (%d events)\n",
	    pct(st->sample_us, st->nsample, 0.5), pct(st->sample_us, st->nsample, 0.99),
	    st->nsample);
	figure("pressure trigger to level callback (median)", pct(st->level_us, st->nlevel, 0.5),
	    "us");
	printf(
	    "(c) CPU per trigger event: %.1f us (%.3f s CPU for %ld events, their %ld samples and "
	    "process scans, in 72 s of bursts)\n",
	    events > 0 ? (cpu1 - cpu0) * 1e6 / (double)events : 0, cpu1 - cpu0, events, samples);
	free(st);
}

static void
per_sample(const struct config *cfg, const char *trace_path)
{
	struct monitor_opts o;
	struct stats *st = xcalloc(1, sizeof *st);
	struct monitor *m;
	struct trace t;
	char *cause = NULL;
	double cpu0;
	long samples, events;
	int rounds = 2000;

	/* Live: reads of the three files, parsing, the step; sampled every 10 ms. */
	monitor_opts_from_config(&o, cfg);
	o.psi_path = "/proc/pressure/memory";
	o.clock = &clk;
	o.poll = true;
	o.sample_ms = 10;
	m = start(&o, st);
	cpu0 = cpu_s();
	spin(3);
	monitor_counts(m, &samples, &events);
	printf("(c) CPU per live sample (the loop's wake-up, 3 preads, parsing, the step): %.1f us "
	       "over %ld samples\n",
	    (cpu_s() - cpu0) * 1e6 / (double)samples, samples);
	stop(m);
	/* Processing alone: a recorded trace replayed again and again. */
	if (trace_load(trace_path, &t, &cause) != 0) {
		fprintf(stderr, "bench: %s\n", cause);
		exit(1);
	}
	o.processes = false;
	if (monitor_new(&loop, &o, &m, &cause) != 0)
		exit(1);
	cpu0 = cpu_s();
	for (int i = 0; i < rounds; i++)
		monitor_replay(m, &t, 0, NULL, NULL);
	printf("    CPU per sample, processing only (replay): %.2f us over %zu samples\n",
	    (cpu_s() - cpu0) * 1e6 / (double)(t.n * (size_t)rounds), t.n * (size_t)rounds);
	figure("pressure CPU per sample, processing",
	    (cpu_s() - cpu0) * 1e6 / (double)(t.n * (size_t)rounds), "us");
	monitor_free(m);
	uv_run(&loop, UV_RUN_NOWAIT);
	trace_free(&t);
	free(st);
}

/* --- (d) idle --- */

struct usage {
	long ticks;
	long switches;
	long rss_kb;
};

static int
usage_of(pid_t pid, struct usage *u)
{
	char path[64], *text = NULL, *p;
	unsigned long ut = 0, st = 0;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (read_file(path, 4096, &text, NULL) != 0)
		return -1;
	p = strrchr(text, ')');
	/* fields after ") ": state(3) ... utime(14) stime(15) */
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
		free(text);
		return -1;
	}
	free(text);
	u->ticks = (long)(ut + st);
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (read_file(path, 16384, &text, NULL) != 0)
		return -1;
	u->switches = 0;
	if ((p = strstr(text, "voluntary_ctxt_switches:")) != NULL)
		u->switches += strtol(p + 24, NULL, 10);
	if ((p = strstr(text, "nonvoluntary_ctxt_switches:")) != NULL)
		u->switches += strtol(p + 27, NULL, 10);
	u->rss_kb = (p = strstr(text, "VmRSS:")) != NULL ? strtol(p + 6, NULL, 10) : -1;
	free(text);
	return 0;
}

static pid_t
spawn(const char *const *argv)
{
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", 1);

		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], (char **)argv);
		_exit(127);
	}
	return pid;
}

static void
idle(const char *bin, int seconds)
{
	const char *ours[] = {bin, "pressure", "--watch", NULL};
	const char *theirs[] = {"earlyoom", NULL};
	pid_t a = spawn(ours), b = access("/usr/bin/earlyoom", X_OK) == 0 ? spawn(theirs) : -1;
	struct usage a0, a1, b0 = {0}, b1 = {0};
	long hz = sysconf(_SC_CLK_TCK);

	sleep(2); /* both settle after start-up */
	usage_of(a, &a0);
	if (b > 0)
		usage_of(b, &b0);
	sleep((unsigned)seconds);
	usage_of(a, &a1);
	if (b > 0)
		usage_of(b, &b1);
	printf("(d) idle for %d s, no pressure         CPU ticks (1/%ld s)  wake-ups  RSS\n",
	    seconds, hz);
	printf("    spillway pressure --watch        %8ld            %8ld  %6ld kB\n",
	    a1.ticks - a0.ticks, a1.switches - a0.switches, a1.rss_kb);
	figure("idle CPU ticks: spillway", (double)(a1.ticks - a0.ticks), "ticks");
	figure("idle wake-ups: spillway", (double)(a1.switches - a0.switches), "");
	figure("idle RSS: spillway", (double)a1.rss_kb / 1024, "MB");
	if (b > 0) {
		printf("    earlyoom 1.7                     %8ld            %8ld  %6ld kB\n",
		    b1.ticks - b0.ticks, b1.switches - b0.switches, b1.rss_kb);
		figure("idle CPU ticks: earlyoom", (double)(b1.ticks - b0.ticks), "ticks");
		figure("idle wake-ups: earlyoom", (double)(b1.switches - b0.switches), "");
		figure("idle RSS: earlyoom", (double)b1.rss_kb / 1024, "MB");
	} else {
		printf("    earlyoom: not installed (apt-get install earlyoom)\n");
	}
	kill(a, SIGTERM);
	waitpid(a, NULL, 0);
	if (b > 0) {
		kill(b, SIGTERM);
		waitpid(b, NULL, 0);
	}
}

static void
on_exit_signal(int sig)
{
	memload_cleanup(&load);
	_exit(128 + sig);
}

int
main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : "build/spillway";
	int seconds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 60;
	const char *trace = argc > 3 ? argv[3] : "tests/data/pressure-sustained.trace";
	struct config cfg;
	struct config_args none = {NULL, NULL};
	char *cause = NULL, pressure[300];
	const char *why;

	jx_init();
	log_init("bench", LOG_LEVEL_WARN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (config_load(&cfg, &none, NULL, &cause) != 0) {
		fprintf(stderr, "bench: %s\n", cause);
		return 1;
	}
	uv_loop_init(&loop);
	clock_real(&clk);
	printf(
	    "bench/pressure: kernel PSI triggers, a cgroup limited to 24 MiB re-reading a 256 MiB "
	    "file\n");
	signal(SIGINT, on_exit_signal);
	signal(SIGTERM, on_exit_signal);
	if (memload_setup(&load, "24M", 256, &why) == 0) {
		live(&cfg, memload_pressure(&load, pressure, sizeof pressure));
		memload_cleanup(&load);
	} else {
		printf("(a), (b): skipped: %s\n", why);
	}
	per_sample(&cfg, trace);
	idle(bin, seconds);
	uv_loop_close(&loop);
	config_free(&cfg);
	return 0;
}
