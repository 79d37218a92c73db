/*
 * spillway stop [--keep]: ask the running daemon to stop, as SIGTERM does
 * (its VMs deleted, or left running with --keep), show each VM's change as
 * it happens, and return once the daemon has exited. Its daemon.lock is free
 * then: the lock goes with the process's files, whoever reaps it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "api/client.h"
#include "cli/link.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/xmalloc.h"

#define STOP_MARGIN_MS 10000 /* past daemon.shutdown_timeout_s: its last writes, its exit */

static void
on_stream(const char *event, const json_t *data, void *arg)
{
	const char *from = jx_str(data, "from"), *reason = jx_str(data, "reason");

	(void)arg;
	if (strcmp(event, "state") != 0)
		return;
	printf("%s: %s -> %s%s%s\n", jx_str(data, "vm.name"), from != NULL ? from : "NEW",
	    jx_str(data, "vm.state"), reason != NULL ? ": " : "", reason != NULL ? reason : "");
	fflush(stdout);
}

static bool
lock_free(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool gone = fd < 0 || flock(fd, LOCK_EX | LOCK_NB) == 0;

	if (fd >= 0)
		close(fd); /* and with it our lock, if we took it */
	return gone;
}

static int64_t
left_ms(int64_t deadline_ns)
{
	int64_t left = (deadline_ns - monotonic_ns()) / 1000000;

	return left > 0 ? left : 0;
}

static int
exec_stop(struct cmd_ctx *ctx, const struct args *a)
{
	const struct config *cfg = &ctx->cfg;
	bool keep = args_has(a, 'k');
	struct client_events *ev = NULL;
	json_t *body = json_pack("{s:b, s:b}", "keep", keep, "drain_pool", args_has(a, 'd')),
	       *doc = NULL;
	char *cause = NULL, *lock = xasprintf("%s/daemon.lock", cfg->state_dir);
	int64_t deadline =
	    monotonic_ns() + (int64_t)((cfg->shutdown_timeout_s * 1000 + STOP_MARGIN_MS) * 1e6);
	long status;
	int error, rc = EXIT_FAIL;

	/* Subscribed first, so that no change the stop makes goes unseen. */
	if ((error = client_events_open(cfg->socket_path, &ev, &cause)) == -ENOENT) {
		printf("no spillway daemon runs (none answers on %s)\n", cfg->socket_path);
		rc = EXIT_OK;
		goto out;
	}
	if (error == 0) {
		struct pollfd p = {client_events_fd(ev), POLLIN, 0};

		/* The daemon writes at once to a new subscriber: then it is one. */
		if (poll(&p, 1, LINK_TIMEOUT_MS) != 1 ||
		    client_events_read(ev, on_stream, NULL) != 0) {
			error = -ETIMEDOUT;
			cause = xasprintf("the daemon on %s does not answer", cfg->socket_path);
		}
	}
	if (error == 0)
		error = link_call(ctx, "POST", "/v1/stop", body, &status, &doc, &cause);
	if (error != 0) {
		fprintf(stderr, "spillway stop: %s\n", cause);
		goto out;
	}
	if (status != 202) {
		rc = link_error("stop", status, doc);
		goto out;
	}
	printf("the daemon (PID %lld) is stopping%s\n",
	    (long long)json_integer_value(json_object_get(doc, "pid")),
	    json_is_true(json_object_get(doc, "keep")) /* asked, or run --keep */
	        ? " and leaves its VMs running"
	        : "; it deletes its VMs first");
	fflush(stdout);
	/* Its changes, until it ends the stream; then its exit. */
	while (client_events_read(ev, on_stream, NULL) == 0) {
		struct pollfd p = {client_events_fd(ev), POLLIN, 0};

		if (left_ms(deadline) == 0 || poll(&p, 1, (int)left_ms(deadline)) < 0)
			break;
	}
	while (!lock_free(lock) && left_ms(deadline) > 0)
		nanosleep(&(struct timespec){0, 20000000}, NULL);
	if (!lock_free(lock)) {
		fprintf(stderr,
		    "spillway stop: the daemon still runs %.0f s after it was asked "
		    "(daemon.shutdown_timeout_s); its log says why\n",
		    cfg->shutdown_timeout_s + STOP_MARGIN_MS / 1000.0);
		goto out;
	}
	printf("the daemon has stopped\n");
	rc = EXIT_OK;
out:
	client_events_close(ev);
	json_decref(body);
	json_decref(doc);
	free(cause);
	free(lock);
	return rc;
}

static const struct option options[] = {
    {"keep", no_argument, NULL, 'k'},
    {"drain-pool", no_argument, NULL, 'd'},
    {0},
};

const struct cmd_entry cmd_stop_entry = {
    .name = "stop",
    .usage = "[--keep] [--drain-pool]",
    .summary = "stop the running daemon (its VMs deleted first, or kept with --keep)",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_stop,
};
