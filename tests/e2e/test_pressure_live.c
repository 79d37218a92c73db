/*
 * Real memory pressure on this machine: a memory cgroup limited to 24 MiB,
 * two processes inside it re-reading a 256 MiB file, and `spillway pressure
 * --watch` on that cgroup's memory.pressure through PSI triggers. It must
 * reach HIGH (or beyond) while the load runs and return to NORMAL after it
 * stops.
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
start_monitor(int *out_fd)
{
	int out[2];

	if (pipe(out) != 0)
		return -1;
	if ((monitor = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(out[1], 1);
		close(out[0]);
		setenv("SPILLWAY_PRESSURE_DWELL_S", "4", 1);
		setenv("HOME", "/nonexistent", 1);
		execl(getenv("SPILLWAY_BIN"), "spillway", "pressure", "--watch", "--json",
		    "--cgroup", load.v2, (char *)NULL);
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

/* The start of the first whole second in which the kernel counted over `pct` % stalled, or -1. */
static double
first_second_over(double pct)
{
	for (int i = 0; i < nks; i++)
		for (int j = i + 1; j < nks; j++) {
			double dt = ks[j].t - ks[i].t;

			if (dt < 1.0)
				continue;
			if ((double)(ks[j].total_us - ks[i].total_us) / 1e6 / dt * 100 >= pct)
				return ks[i].t;
			break;
		}
	return -1;
}

/* Read the monitor's lines until one says a level at least `want` (or exactly NORMAL). */
static bool
wait_level(int fd, const char *want, double timeout_s, char *line, size_t size)
{
	static char pending[1 << 16];
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
			printf("  monitor: %s (some %.1f%%, full %.1f%%)\n", level,
			    json_real_value(json_object_get(v, "some_pct")),
			    json_real_value(json_object_get(v, "full_pct")));
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

	snprintf(gone, sizeof gone, "%s-gone", load.v2);
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
			finish(1, "FAIL: no fallback message after %s went away; stderr: %s", dir, buf);
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

int
main(void)
{
	char line[8192];
	double load_start, high_at, calm_at;
	int fd;

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
	printf("cgroups %s %s, limit %s, file %d MiB, %d readers; watching %s\n", load.v1, load.v2,
	    LIMIT, FILE_MB, READERS, memload_pressure(&load, pressure, sizeof pressure));
	if (start_monitor(&fd) != 0)
		finish(1, "FAIL: cannot start the monitor");
	/* Give the monitor a moment to arm its trigger; the load must come after. */
	usleep(500 * 1000);
	load_start = now_s();
	sampling = true;
	memload_start(&load, READERS);
	if (!wait_level(fd, "HIGH", 90, line, sizeof line))
		finish(1, "FAIL: the level did not reach HIGH within 90 s of real memory stalls");
	high_at = now_s();
	sampling = false;
	printf(
	    "HIGH %.2f s after the load started (sustain for HIGH: 6 s)\n", high_at - load_start);
	{
		double onset = first_second_over(10);

		/* Measured, not asserted yet: HIGH should come within sustain + 1 s of it. */
		if (onset >= 0)
			printf(
			    "HIGH %.2f s after the first whole second the kernel counted over 10 %% "
			    "stalled (%d samples of its counter)\n",
			    high_at - onset, nks);
	}
	memload_stop(&load);
	if (!wait_level(fd, "NORMAL", 90, line, sizeof line))
		finish(1,
		    "FAIL: the level did not return to NORMAL within 90 s after the load stopped");
	calm_at = now_s();
	printf("NORMAL %.2f s after the load stopped (dwell: 4 s)\n", calm_at - high_at);
	kill(monitor, SIGTERM);
	{
		int status;

		waitpid(monitor, &status, 0);
		monitor = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			finish(
			    1, "FAIL: the monitor did not exit cleanly on SIGTERM (0x%x)", status);
	}
	vanishing_cgroup();
	finish(0, "ok: HIGH under real pressure, NORMAL after it; a vanished cgroup falls back");
}
