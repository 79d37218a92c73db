/*
 * bench/rest: the daemon at rest, as a laptop has it most of the day: no VM
 * alive, calm pressure. `spillway run` in its own process, with the live
 * monitor, against `spillway emulator`; once it has settled (its first pass
 * done), over SECONDS (30): its wake-ups (voluntary context switches), its
 * CPU ticks, and its anonymous memory (RssAnon) at the end.
 *
 *	usage: rest [SPILLWAY_BINARY] [SECONDS]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/str.h"
#include "util/xmalloc.h"
#include "figure.h"

#define SETTLE_S 5

static char dir[] = "/tmp/spillway-rest-XXXXXX";
static pid_t emulator = -1, daemon_pid = -1;

static void
cleanup(void)
{
	if (daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
	if (emulator > 0)
		kill(emulator, SIGTERM);
	if (strcmp(dir + strlen(dir) - 6, "XXXXXX") != 0)
		remove_tree(dir);
}

/* utime + stime, in clock ticks. */
static long
cpu_ticks(pid_t pid)
{
	char path[64], *text = NULL, *p;
	unsigned long ut = 0, st = 0;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (read_file(path, 1 << 16, &text, NULL) != 0 || (p = strrchr(text, ')')) == NULL) {
		free(text);
		return -1;
	}
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		ut = st = 0;
	free(text);
	return (long)(ut + st);
}

static pid_t
spawn(char *const argv[], char *const env[], int out_fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* nothing left behind, whatever happens */
		if (out_fd >= 0)
			dup2(out_fd, 1);
		execve(argv[0], argv, env);
		_exit(127);
	}
	return pid;
}

int
main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : "build/spillway";
	int seconds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 30;
	char line[256] = "", *url, *sock, *env[16];
	long wakes0, ticks0, wakes, ticks, anon;
	int out[2], n = 0;
	ssize_t got;

	if (mkdtemp(dir) == NULL || pipe(out) != 0)
		return 1;
	atexit(cleanup);
	{
		char *creds = xasprintf("%s/sa.json", dir);
		char *const eargv[] = {(char *)bin, "emulator", "--write-credentials", creds, NULL};
		char *const eenv[] = {NULL};

		emulator = spawn(eargv, eenv, out[1]);
		close(out[1]);
		if ((got = read(out[0], line, sizeof line - 1)) <= 0 ||
		    (url = strstr(line, "http://")) == NULL) {
			fprintf(stderr, "bench/rest: the emulator did not start\n");
			return 1;
		}
		line[got] = '\0';
		url[strcspn(url, " \n")] = '\0';
		env[n++] = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", creds);
		free(creds);
	}
	env[n++] = xasprintf("HOME=%s", dir);
	env[n++] = xasprintf("XDG_CONFIG_HOME=%s/xdg", dir);
	env[n++] = xasprintf("SPILLWAY_STATE_DIR=%s/state", dir);
	env[n++] = sock = xasprintf("SPILLWAY_SOCKET=%s/run/control.sock", dir);
	env[n++] = xasprintf("SPILLWAY_COMPUTE_ENDPOINT=%s/compute/v1/", url);
	env[n++] = xasprintf("SPILLWAY_BILLING_ENDPOINT=%s/v1/", url);
	env[n++] = xstrdup("GCP_PROJECT_ID=spillway-emulator");
	env[n++] = xstrdup("SPILLWAY_OWNER=rest");
	env[n++] = xstrdup("SPILLWAY_LOG_LEVEL=warning");
	env[n] = NULL;
	{
		char *const dargv[] = {(char *)bin, "run", "--foreground", NULL};

		daemon_pid = spawn(dargv, env, -1);
	}
	/* Its socket answers once it runs; then its first pass and price settle. */
	for (int i = 0; i < 100 && access(strchr(sock, '=') + 1, F_OK) != 0; i++)
		usleep(100000);
	sleep(SETTLE_S);
	wakes0 = proc_status(daemon_pid, "voluntary_ctxt_switches:");
	ticks0 = cpu_ticks(daemon_pid);
	if (wakes0 < 0 || waitpid(daemon_pid, NULL, WNOHANG) != 0) {
		fprintf(stderr, "bench/rest: the daemon did not run\n");
		return 1;
	}
	sleep((unsigned)seconds);
	wakes = proc_status(daemon_pid, "voluntary_ctxt_switches:") - wakes0;
	ticks = cpu_ticks(daemon_pid) - ticks0;
	anon = proc_status(daemon_pid, "RssAnon:");
	printf(
	    "bench/rest: spillway run at rest (no VM, calm pressure, the live monitor) for %d s\n",
	    seconds);
	printf("  wake-ups %ld, CPU %ld ticks, RssAnon %.2f MB\n", wakes, ticks, anon / 1024.0);
	figure("rest wake-ups in 30 s", (double)wakes * 30 / seconds, "");
	figure("rest CPU ticks in 30 s", (double)ticks * 30 / seconds, "ticks");
	figure("rest anonymous memory", anon / 1024.0, "MB");
	kill(daemon_pid, SIGTERM);
	waitpid(daemon_pid, NULL, 0);
	daemon_pid = -1;
	for (int i = 0; i < n; i++)
		free(env[i]);
	return 0;
}
