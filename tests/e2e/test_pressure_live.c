/*
 * Real memory pressure on this machine: a memory cgroup limited to 24 MiB,
 * two processes inside it re-reading a 256 MiB file, and `spillway pressure
 * --watch` on that cgroup's memory.pressure through PSI triggers. It must
 * reach HIGH (or beyond) while the load runs and return to NORMAL after it
 * stops. Then the same load watched sample by sample (--all, which samples
 * every 100 ms here rather than waiting for the kernel's trigger): HIGH must come
 * within HIGH's sustain + 1 s of the stall's onset as the kernel counted it.
 *
 * Where the machine cannot do this (no PSI, no writable memory cgroup), it
 * says why and exits 77: skipped, never passed. The cgroups, the processes and
 * the file are removed on every way out.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "memload.h"

#define LIMIT   "24M"
#define FILE_MB 256
#define READERS 2
#define SKIP    77

static struct memload load;
static pid_t monitor;
static char pressure[300];
static char gone[300]; /* the cgroup removed under the monitor, until it is */

/* The kernel's own stall counter beside the monitor: the cgroup's "some total", every 100 ms. */
#define KSAMPLES 4096
static struct {
	double t;
	long long total_us;
} ks[KSAMPLES];
static int nks;
static bool sampling;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
cleanup(void)
{
	if (monitor > 0) {
		kill(monitor, SIGKILL);
		waitpid(monitor, NULL, 0);
		monitor = 0;
	}
	if (gone[0] != '\0')
		rmdir(gone);
	memload_cleanup(&load);
}

static void
on_signal(int sig)
{
	cleanup();
	_exit(128 + sig);
}

static void __attribute__((noreturn, format(printf, 2, 3))) finish(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	cleanup();
	exit(status);
}

static int
start_monitor(bool all, int *out_fd)
{
	int out[2];

	if (pipe(out) != 0)
		return -1;
	if ((monitor = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(out[1], 1);
		close(out[0]);
		setenv("SPILLWAY_PRESSURE_DWELL_S", "4", 1);
		/*
		 * Sampled as this test samples the kernel's counter, each share over
		 * the second before the sample: on a 1 s grid a bursty first second
		 * can fall across two samples, neither of them over 10 %.
		 */
		if (all)
			setenv("SPILLWAY_PRESSURE_SAMPLE_MS", "100", 1);
		setenv("HOME", "/nonexistent", 1);
		execl(getenv("SPILLWAY_BIN"), "spillway", "pressure", "--watch", "--json",
		    "--cgroup", load.cg.v2, all ? "--all" : (char *)NULL, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	*out_fd = out[0];
	return 0;
}

static void
kernel_sample(void)
{
	char buf[512], *p;
	FILE *f;

	if (!sampling || nks == KSAMPLES || (f = fopen(pressure, "r")) == NULL)
		return;
	if (fgets(buf, sizeof buf, f) != NULL && (p = strstr(buf, "total=")) != NULL) {
		ks[nks].t = now_s();
		ks[nks++].total_us = strtoll(p + 6, NULL, 10);
	}
	fclose(f);
}

/* The kernel's stalled share from sample i over the first whole second after it, or -1. */
static double
second_share(int i)
{
	for (int j = i + 1; j < nks; j++)
		if (ks[j].t - ks[i].t >= 1.0)
			return (double)(ks[j].total_us - ks[i].total_us) / 1e6 /
			    (ks[j].t - ks[i].t) * 100;
	return -1;
}

/* The first sample from `from` on whose whole second after it was at least `pct` % stalled. */
static int
first_second_over(int from, double pct)
{
	for (int i = from; i < nks; i++) {
		double share = second_share(i);

		if (share < 0)
			break;
		if (share >= pct)
			return i;
	}
	return -1;
}

/*
 * When the stall HIGH rose on began: the first whole second over HIGH's 10 %
 * after the last whole second that fell below its disarm share (5 %), since
 * such a dip ends a candidate, in the monitor and here alike. -1: none.
 */
static double
onset_of_high(double *first)
{
	int at, dip = -1;

	*first = -1;
	if ((at = first_second_over(0, 10)) < 0)
		return -1;
	*first = ks[at].t;
	for (int i = at; i < nks; i++) {
		double share = second_share(i);

		if (share < 0)
			break;
		if (share < 5)
			dip = i;
	}
	if (dip < 0)
		return *first;
	printf("  the kernel's stall fell below 5 %% in the second from +%.1f s\n",
	    ks[dip].t - *first);
	return (at = first_second_over(dip + 1, 10)) >= 0 ? ks[at].t : -1;
}

/* Read the monitor's lines until one says a level at least `want` (or exactly NORMAL). */
static bool
wait_level(int fd, const char *want, double timeout_s, char *line, size_t size)
{
	static char pending[1 << 16], shown[16];
	static size_t used;
	double deadline = now_s() + timeout_s;

	for (;;) {
		char *nl;

		while ((nl = memchr(pending, '\n', used)) != NULL) {
			json_t *v;
			const char *level;
			size_t len = (size_t)(nl - pending);
			bool hit;

			snprintf(line, size, "%.*s", (int)len, pending);
			memmove(pending, nl + 1, used - len - 1);
			used -= len + 1;
			if ((v = json_loads(line, 0, NULL)) == NULL)
				finish(1,
				    "FAIL: the monitor printed something that is not JSON: %s",
				    line);
			level = json_string_value(json_object_get(v, "level"));
			hit = strcmp(want, "NORMAL") == 0
			    ? strcmp(level, "NORMAL") == 0
			    : strcmp(level, "HIGH") == 0 || strcmp(level, "CRITICAL") == 0;
			if (strcmp(level, shown) != 0)
				printf("  monitor: %s (some %.1f%%, full %.1f%%)\n", level,
				    json_real_value(json_object_get(v, "some_pct")),
				    json_real_value(json_object_get(v, "full_pct")));
			snprintf(shown, sizeof shown, "%s", level);
			json_decref(v);
			if (hit)
				return true;
		}
		{
			struct pollfd p = {fd, POLLIN, 0};
			int left = (int)((deadline - now_s()) * 1000), got;
			ssize_t n;

			kernel_sample();
			if (left <= 0)
				return false;
			if ((got = poll(&p, 1, left < 100 ? left : 100)) < 0)
				return false;
			if (got == 0)
				continue;
			if ((n = read(fd, pending + used, sizeof pending - used - 1)) <= 0)
				return false;
			used += (size_t)n;
		}
	}
}

/* A watched cgroup removed under the monitor (POLLERR): a clear message, and it goes on. */
static void
vanishing_cgroup(void)
{
	char *dir = gone, buf[4096];
	int err[2], out[2];
	size_t used = 0;
	double deadline;
	pid_t pid;
	int status;

	snprintf(gone, sizeof gone, "%s-gone", load.cg.v2);
	if (mkdir(dir, 0755) != 0)
		finish(1, "FAIL: cannot create %s", dir);
	if (pipe(err) != 0 || pipe(out) != 0)
		finish(1, "FAIL: pipe");
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(out[1], 1);
		dup2(err[1], 2);
		setenv("HOME", "/nonexistent", 1);
		execl(getenv("SPILLWAY_BIN"), "spillway", "pressure", "--watch", "--cgroup", dir,
		    (char *)NULL);
		_exit(127);
	}
	monitor = pid;
	close(err[1]);
	close(out[1]);
	/* It says it watches with a trigger before the cgroup goes. */
	if (read(out[0], buf, sizeof buf - 1) <= 0 || strstr(buf, "PSI trigger") == NULL)
		finish(1, "FAIL: the monitor did not arm a trigger on %s", dir);
	if (rmdir(dir) != 0)
		finish(1, "FAIL: cannot remove %s (%s)", dir, strerror(errno));
	printf("removed %s under the monitor\n", dir);
	deadline = now_s() + 20;
	for (;;) {
		struct pollfd p = {err[0], POLLIN, 0};
		ssize_t n;

		buf[used] = '\0';
		/* POLLERR or a failed read, whichever the kernel gives first: both must say it. */
		if (strstr(buf, dir) != NULL && strstr(buf, "whole system") != NULL)
			break;
		if (now_s() > deadline || poll(&p, 1, 1000) < 0 ||
		    (p.revents && (n = read(err[0], buf + used, sizeof buf - 1 - used)) <= 0))
			finish(1, "FAIL: no fallback message after %s went away; stderr: %s", dir,
			    buf);
		if (p.revents)
			used += (size_t)n;
	}
	printf("the monitor said: %s", strstr(buf, "spillway"));
	gone[0] = '\0';
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	monitor = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		finish(1, "FAIL: the monitor did not survive its cgroup (status 0x%x)", status);
	close(err[0]);
	close(out[0]);
}

/* The monitor, run until it exits on SIGTERM; it must exit cleanly. */
static void
stop_monitor(int fd)
{
	int status;

	kill(monitor, SIGTERM);
	waitpid(monitor, &status, 0);
	monitor = 0;
	close(fd);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		finish(1, "FAIL: the monitor did not exit cleanly on SIGTERM (0x%x)", status);
}

/*
 * Start the load and wait for HIGH, sampling the kernel's counter meanwhile
 * if asked. Not beside a trigger: each read of memory.pressure moves the
 * kernel's next averaging on, and unprivileged triggers are served only by
 * that averaging, so a reader every 100 ms delays their events (by 1.35 s
 * here: docs/pressure.md).
 */
static double
load_until_high(int fd, bool counter, char *line, size_t size)
{
	double start, high_at;

	/* Give the monitor a moment to arm its trigger or take its first sample. */
	usleep(1500 * 1000);
	nks = 0;
	start = now_s();
	sampling = counter;
	memload_start(&load, READERS);
	if (!wait_level(fd, "HIGH", 90, line, size))
		finish(1, "FAIL: the level did not reach HIGH within 90 s of real memory stalls");
	high_at = now_s();
	sampling = false;
	printf("HIGH %.2f s after the load started (sustain for HIGH: 6 s)\n", high_at - start);
	return high_at;
}

/*
 * Watched through the kernel's trigger: HIGH, then NORMAL once the load
 * stops. The delay is printed, not asserted: the monitor cannot see a stall
 * before the kernel's first event, which without CAP_SYS_RESOURCE comes from
 * the kernel's 2-second averaging (docs/pressure.md). The stall begins with
 * the load (the counter, sampled below, is over 10 % from its first second).
 */
static void
through_trigger(char *line, size_t size)
{
	double high_at, calm_at;
	int fd;

	if (start_monitor(false, &fd) != 0)
		finish(1, "FAIL: cannot start the monitor");
	high_at = load_until_high(fd, false, line, size);
	memload_stop(&load);
	if (!wait_level(fd, "NORMAL", 90, line, size))
		finish(1,
		    "FAIL: the level did not return to NORMAL within 90 s after the load stopped");
	calm_at = now_s();
	printf("NORMAL %.2f s after the load stopped (dwell: 4 s)\n", calm_at - high_at);
	stop_monitor(fd);
}

/* Sampled every 100 ms: HIGH within sustain + 1 s of the stall's onset. */
static void
on_time(char *line, size_t size)
{
	double high_at, first, onset;
	int fd;

	memload_drop(&load);
	if (start_monitor(true, &fd) != 0)
		finish(1, "FAIL: cannot start the monitor");
	high_at = load_until_high(fd, true, line, size);
	if ((onset = onset_of_high(&first)) < 0)
		finish(1,
		    "FAIL: HIGH, yet the kernel's counter (%d samples) had no whole second "
		    "over 10 %% stalled that held",
		    nks);
	printf("HIGH %.2f s after the first whole second the kernel counted over 10 %% stalled, "
	       "%.2f s after the stall it rose on began (%d samples of its counter)\n",
	    high_at - first, high_at - onset, nks);
	/* Sustain + 1 s, and the 0.1 s of this test's own sampling of the counter. */
	if (high_at - onset > 7.1)
		finish(1,
		    "FAIL: HIGH %.2f s after the stall began; the goal is sustain + 1 s = 7 s",
		    high_at - onset);
	memload_stop(&load);
	stop_monitor(fd);
}

int
main(void)
{
	char line[8192];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("SPILLWAY_BIN") == NULL)
		finish(1, "FAIL: SPILLWAY_BIN is not set: run the tests with meson test");
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	{
		const char *why;

		if (memload_setup(&load, LIMIT, FILE_MB, &why) != 0)
			finish(SKIP, "skipped: %s", why);
	}
	printf("cgroups %s %s, limit %s, file %d MiB, %d readers; watching %s\n", load.cg.v1,
	    load.cg.v2, LIMIT, FILE_MB, READERS,
	    memload_pressure(&load, pressure, sizeof pressure));
	through_trigger(line, sizeof line);
	on_time(line, sizeof line);
	vanishing_cgroup();
	finish(0,
	    "ok: HIGH under real pressure and on time, NORMAL after it; a vanished cgroup "
	    "falls back");
}
