#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/client.h"
#include "api/view.h"
#include "cli/link.h"
#include "cli/report.h"
#include "pressure/monitor.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define FOLLOW_POLL_MS 250

int
link_error(const char *command, long status, const json_t *doc)
{
	json_t *e = json_object_get(doc, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *rule = json_string_value(json_object_get(e, "rule"));

	/* A rule's message begins with the rule (decision_refuse): said once. */
	fprintf(stderr, "spillway %s: %s%s\n", command,
	    status == 409 && rule != NULL ? "refused: " : "",
	    msg != NULL ? msg : "the daemon refused");
	if (status == 409 && rule != NULL)
		return EXIT_REFUSED;
	return status == 400 || status == 404 ? EXIT_USAGE : EXIT_FAIL;
}

int
link_call(struct cmd_ctx *ctx, const char *method, const char *path, const json_t *body,
    long *status, json_t **doc, char **cause)
{
	return client_call(
	    ctx->cfg.socket_path, method, path, body, LINK_TIMEOUT_MS, status, doc, cause);
}

/* No daemon: the document from the ledger, as the daemon would build it. */
static int
build(struct cmd_ctx *ctx, const char *path, long *status, json_t **doc)
{
	struct ledger *l = NULL;
	struct pressure_snapshot snap;
	struct view_src s = {.cfg = &ctx->cfg};
	char owner[64], *cause = NULL;

	/* Figures from a damaged file would mislead: said, with what to do, instead. */
	if (ledger_open(ctx->cfg.state_dir, &l, &cause) != 0 || ledger_check(l, &cause) != 0) {
		fprintf(stderr, "spillway: %s\n", cause);
		free(cause);
		ledger_close(l);
		return EXIT_FAIL;
	}
	if (*ctx->cfg.owner != '\0')
		snprintf(owner, sizeof owner, "%s", ctx->cfg.owner);
	else
		daemon_owner_label(ctx->cfg.state_dir, owner);
	s.ledger = l;
	s.now = realtime_ns() / 1000000;
	s.owner = owner;
	*status = 200;
	if (strcmp(path, "/v1/status") == 0 || strcmp(path, "/v1/pressure") == 0) {
		pressure_glance(&ctx->cfg, &snap);
		s.snap = &snap;
		*doc = strcmp(path, "/v1/status") == 0
		    ? view_status(&s)
		    : json_pack("{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "pressure",
		          view_pressure(&snap));
	} else if (strcmp(path, "/v1/vms") == 0) {
		*doc = view_vms(&s);
	} else if (str_prefix(path, "/v1/vms/")) {
		if ((*doc = view_vm_detail(&s, path + 8)) == NULL) {
			char *msg =
			    xasprintf("no VM named '%s' (spillway status lists them)", path + 8);

			*status = 404;
			*doc = view_error(404, NULL, msg);
			free(msg);
		}
	} else if (strcmp(path, "/v1/routes") == 0) {
		*doc = view_routes(&s);
	} else if (strcmp(path, "/v1/images") == 0) {
		*doc = view_images(&s);
	} else if (str_prefix(path, "/v1/images/")) {
		if ((*doc = view_image(&s, path + 11)) == NULL) {
			char *msg = xasprintf(
			    "no image named '%s' (spillway image list shows them)", path + 11);

			*status = 404;
			*doc = view_error(404, NULL, msg);
			free(msg);
		}
	} else if (str_prefix(path, "/v1/costs?days=")) {
		*doc = view_costs(&s, (int)strtol(path + 15, NULL, 10));
	} else {
		fatalx("link: no local document for %s", path);
	}
	ledger_close(l);
	return 0;
}

int
link_local_answer(struct link_local *l, const char *command, int error, const char *why)
{
	if (error == 0)
		return 0;
	fprintf(stderr, "spillway %s: %s%s\n", command, error == -EAGAIN ? "refused: " : "", why);
	link_local_done(l,
	    error == -EAGAIN       ? EXIT_REFUSED
	        : error == -EINVAL ? EXIT_USAGE
	                           : EXIT_FAIL);
	return error;
}

int
link_get(struct cmd_ctx *ctx, const char *path, long *status, json_t **doc)
{
	char *cause = NULL;
	int error = link_call(ctx, "GET", path, NULL, status, doc, &cause);

	if (error == -ENOENT) {
		free(cause);
		return build(ctx, path, status, doc);
	}
	if (error != 0) {
		fprintf(stderr, "spillway: %s\n", cause);
		free(cause);
		return EXIT_FAIL;
	}
	return 0;
}

int
link_show(struct cmd_ctx *ctx, const char *command, const char *path, bool json, link_print *print,
    bool verbose)
{
	json_t *doc = NULL;
	long status;
	int error;

	if ((error = link_get(ctx, path, &status, &doc)) != 0)
		return error;
	if (status != 200) {
		error = link_error(command, status, doc);
	} else if (json) {
		report_json(stdout, doc);
	} else {
		print(stdout, doc, verbose);
	}
	json_decref(doc);
	return error;
}

int
link_follow(struct cmd_ctx *ctx, const char *command, const char *name, int64_t timeout_ms,
    bool (*done)(const json_t *, void *), void *arg, json_t **vm)
{
	int64_t until = monotonic_ns() + timeout_ms * 1000000;
	char path[128];

	*vm = NULL;
	snprintf(path, sizeof path, "/v1/vms/%s", name);
	for (;;) {
		json_t *doc = NULL;
		long status;
		char *cause = NULL;
		int error;

		if ((error = link_call(ctx, "GET", path, NULL, &status, &doc, &cause)) != 0) {
			fprintf(stderr, "spillway %s: %s\n", command, cause);
			free(cause);
			json_decref(*vm);
			*vm = NULL;
			return EXIT_FAIL;
		}
		if (status != 200) {
			error = link_error(command, status, doc);
			json_decref(doc);
			json_decref(*vm);
			*vm = NULL;
			return error;
		}
		json_decref(*vm);
		*vm = json_incref(json_object_get(doc, "vm"));
		json_decref(doc);
		if (done(*vm, arg))
			return 0;
		if (monotonic_ns() >= until)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){0, FOLLOW_POLL_MS * 1000000L}, NULL);
	}
}

/* --- a daemon of our own --- */

struct link_local {
	uv_loop_t loop;
	struct clock clock;
	struct daemon *d;
	uv_signal_t sig[2];
	uv_timer_t settle;
	uv_timer_t deadline;
	void (*expired)(struct link_local *, void *);
	void (*ready)(struct link_local *, struct daemon *, void *);
	manager_event_cb *on_event;
	void *arg;
	int status;
	bool readied; /* ready() was called: events reach the command */
	bool stopping;
};

static void
on_stopped(void *arg)
{
	struct link_local *l = arg;

	for (int i = 0; i < 2; i++)
		uv_close((uv_handle_t *)&l->sig[i], NULL);
	uv_close((uv_handle_t *)&l->deadline, NULL);
	daemon_free(l->d);
	l->d = NULL;
}

void
link_local_done(struct link_local *l, int status)
{
	if (l->stopping)
		return;
	l->stopping = true;
	l->status = status;
	uv_timer_stop(&l->deadline);
	daemon_stop(l->d, on_stopped, l);
}

static void
on_deadline(uv_timer_t *t)
{
	struct link_local *l = t->data;

	if (!l->stopping)
		l->expired(l, l->arg);
}

void
link_local_deadline(
    struct link_local *l, int64_t timeout_ms, void (*expired)(struct link_local *, void *))
{
	l->expired = expired;
	uv_timer_start(&l->deadline, on_deadline, (uint64_t)timeout_ms, 0);
}

/* What is asked is judged once the cloud has been listed and the price is known. */
static void
on_settle(uv_timer_t *t)
{
	struct link_local *l = t->data;

	if (l->stopping) {
		uv_close((uv_handle_t *)t, NULL);
	} else if (manager_settled(daemon_manager(l->d))) {
		uv_close((uv_handle_t *)t, NULL);
		l->readied = true;
		l->ready(l, l->d, l->arg);
	}
}

static void
on_started(void *arg, int error, const char *cause)
{
	struct link_local *l = arg;

	if (error != 0) {
		fprintf(stderr, "spillway: %s\n", cause);
		link_local_done(l, EXIT_FAIL);
		return;
	}
	uv_timer_init(&l->loop, &l->settle);
	l->settle.data = l;
	uv_timer_start(&l->settle, on_settle, 0, 20);
}

/*
 * The command hears events from ready() on: before, it has asked for
 * nothing (what the first pass finds out, it reads from the ledger then).
 */
static void
on_event(const struct manager_event *e, void *arg)
{
	struct link_local *l = arg;

	if (l->on_event != NULL && l->readied && !l->stopping)
		l->on_event(e, l->arg);
}

static void
on_signal(uv_signal_t *h, int signum)
{
	struct link_local *l = h->data;

	fprintf(stderr, "spillway: %s: stopping; the VMs are kept (spillway status shows them)\n",
	    strsignal(signum));
	link_local_done(l, 128 + signum);
}

int
link_local(struct cmd_ctx *ctx, void (*ready)(struct link_local *, struct daemon *, void *),
    manager_event_cb *cmd_event, void *arg)
{
	struct link_local l = {
	    .ready = ready, .on_event = cmd_event, .arg = arg, .status = EXIT_OK};
	struct daemon_opts o = {0};
	char *cause = NULL;
	int lock, sigs[2] = {SIGINT, SIGTERM};

	if ((lock = daemon_lock(&ctx->cfg, &cause)) < 0) {
		fprintf(stderr, "spillway: %s, but its socket %s does not answer; is it stuck?\n",
		    cause, ctx->cfg.socket_path);
		free(cause);
		return EXIT_FAIL;
	}
	uv_loop_init(&l.loop);
	clock_real(&l.clock);
	/* The daemon's own chatter is not this command's output. */
	if (log_get_level() == LOG_LEVEL_INFO)
		log_set_level(LOG_LEVEL_WARN);
	o.cfg = &ctx->cfg;
	o.clock = &l.clock;
	o.passive = true;
	o.on_event = on_event;
	o.event_arg = &l;
	o.on_started = on_started;
	for (int i = 0; i < 2; i++) {
		uv_signal_init(&l.loop, &l.sig[i]);
		l.sig[i].data = &l;
		uv_signal_start(&l.sig[i], on_signal, sigs[i]);
	}
	uv_timer_init(&l.loop, &l.deadline);
	l.deadline.data = &l;
	if (daemon_new(&l.loop, &o, &l.d, &cause) != 0) {
		fprintf(stderr, "spillway: %s\n", cause);
		free(cause);
		for (int i = 0; i < 2; i++)
			uv_close((uv_handle_t *)&l.sig[i], NULL);
		uv_close((uv_handle_t *)&l.deadline, NULL);
		l.status = EXIT_USAGE;
	}
	uv_run(&l.loop, UV_RUN_DEFAULT);
	uv_loop_close(&l.loop);
	daemon_unlock(lock);
	return l.status;
}
