/*
 * bench/cli: how fast the CLI answers, as a person or a script feels it.
 *
 *  1. `spillway status --json`, a whole process each time: median and p99
 *     wall time with the daemon running (one request on its socket) and
 *     without (the ledger read here, a glance at /proc).
 *  2. GET /v1/status on the control socket, one kept-alive connection:
 *     requests per second for a few seconds.
 *
 * Against `spillway emulator` and `spillway run` processes, with two VMs
 * alive so the documents are not empty.
 *
 *	usage: cli [SPILLWAY_BINARY] [RUNS]
 */
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "util/clock.h"
#include "util/compat.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "figure.h"

#define RPS_SECONDS 3

static const char *bin;
static char dir[] = "/tmp/spillway-bench-XXXXXX";

static void setenvf(const char *name, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
setenvf(const char *name, const char *fmt, ...)
{
	char value[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof value, fmt, ap);
	va_end(ap);
	setenv(name, value, 1);
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Run spillway with args, output to /dev/null; its exit status. */
static int
run(const char *const *args)
{
	const char *argv[16] = {"spillway"};
	int n = 1, status;
	pid_t pid;

	for (; *args != NULL; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if ((pid = fork()) == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		execv(bin, (char **)argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static pid_t
spawn(const char *const *args, const char *out)
{
	const char *argv[16] = {"spillway"};
	int n = 1;
	pid_t pid;

	for (; *args != NULL; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if ((pid = fork()) == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(bin, (char **)argv);
		_exit(127);
	}
	return pid;
}

static void
status_times(const char *label, int runs)
{
	const char *args[] = {"status", "--json", NULL};
	double *ms = xcalloc((size_t)runs, sizeof *ms);

	for (int i = 0; i < runs; i++) {
		int64_t t0 = monotonic_ns();

		if (run(args) != 0) {
			fprintf(stderr, "bench/cli: spillway status failed\n");
			exit(1);
		}
		ms[i] = (double)(monotonic_ns() - t0) / 1e6;
	}
	qsort(ms, (size_t)runs, sizeof *ms, cmp);
	printf("  spillway status --json, %-18s median %6.2f ms, p99 %6.2f ms (%d runs)\n", label,
	    ms[runs / 2], ms[(int)(0.99 * (runs - 1))], runs);
	{
		char *name = xasprintf("cli status --json, %s (median)", label);

		figure(name, ms[runs / 2], "ms");
		free(name);
	}
	free(ms);
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
	return size * n;
}

static void
requests_per_second(const char *sock)
{
	CURL *c = curl_easy_init();
	int64_t end = monotonic_ns() + RPS_SECONDS * 1000000000LL;
	long count = 0, code = 0;

	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, "http://spillway/v1/status");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	while (monotonic_ns() < end) {
		if (curl_easy_perform(c) != CURLE_OK ||
		    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK ||
		    code != 200) {
			fprintf(stderr, "bench/cli: GET /v1/status failed\n");
			exit(1);
		}
		count++;
	}
	curl_easy_cleanup(c);
	printf("  GET /v1/status on the socket:     %.0f requests/s (one kept-alive connection)\n",
	    (double)count / RPS_SECONDS);
	figure("socket GET /v1/status", (double)count / RPS_SECONDS, "/s");
}

int
main(int argc, char **argv)
{
	int runs = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 100;
	char port_file[300], creds[300], sock[300], emu_log[300], dmn_log[300], port[32] = "";
	const char *create[] = {"create", "--components", "vision", "--yes", NULL};
	struct stat st;
	pid_t emu, dmn;
	FILE *f;

	bin = argc > 1 ? argv[1] : "build/spillway";
	if (runs < 10 || mkdtemp(dir) == NULL)
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(port_file, sizeof port_file, "%s/port", dir);
	snprintf(creds, sizeof creds, "%s/sa.json", dir);
	snprintf(sock, sizeof sock, "%s/run/control.sock", dir);
	snprintf(emu_log, sizeof emu_log, "%s/emulator.log", dir);
	snprintf(dmn_log, sizeof dmn_log, "%s/daemon.log", dir);
	{
		const char *args[] = {"emulator", "--port-file", port_file, "--write-credentials",
		    creds, "--boot-ms", "200", "--guest-boot-ms", "200", NULL};

		emu = spawn(args, emu_log);
	}
	for (int i = 0; i < 500 && (f = fopen(port_file, "r")) == NULL; i++)
		usleep(10000);
	if (f == NULL || fgets(port, sizeof port, f) == NULL)
		return 1;
	fclose(f);
	port[strcspn(port, "\n")] = '\0';
	setenv("GOOGLE_APPLICATION_CREDENTIALS", creds, 1);
	setenvf("SPILLWAY_COMPUTE_ENDPOINT", "http://127.0.0.1:%s/compute/v1/", port);
	setenvf("SPILLWAY_BILLING_ENDPOINT", "http://127.0.0.1:%s/v1/", port);
	setenvf("SPILLWAY_STATE_DIR", "%s/state", dir);
	setenv("SPILLWAY_SOCKET", sock, 1);
	setenv("GCP_PROJECT_ID", "spillway-emulator", 1);
	setenv(
	    "GCP_VM_ENABLE_MONITORING", "false", 1); /* no passes: the socket alone is measured */
	setenv("HOME", dir, 1);
	setenv("XDG_CONFIG_HOME", dir, 1);

	printf("bench/cli: spillway's commands and control socket (emulator, two VMs alive)\n");
	/* Two VMs, created without a daemon; then the daemon adopts them from the ledger. */
	if (run(create) != 0 || run(create) != 0) {
		fprintf(stderr, "bench/cli: cannot create the VMs\n");
		return 1;
	}
	status_times("no daemon:", runs);
	{
		const char *args[] = {"run", "--foreground", NULL};

		dmn = spawn(args, dmn_log);
	}
	for (int i = 0; i < 1000 && stat(sock, &st) != 0; i++)
		usleep(10000);
	status_times("the daemon running:", runs);
	requests_per_second(sock);
	kill(dmn, SIGTERM);
	waitpid(dmn, NULL, 0);
	kill(emu, SIGTERM);
	waitpid(emu, NULL, 0);
	remove_tree(dir);
	curl_global_cleanup();
	return 0;
}
