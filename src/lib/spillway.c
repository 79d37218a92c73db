/*
 * libspillway (include/spillway.h): the control API's documents, asked of
 * the daemon through its socket or answered by a daemon inside the program
 * (control_answer, the same routing the socket uses), turned into the
 * header's structures. Only the spillway_* functions are exported
 * (src/lib/spillway.map).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "api/client.h"
#include "api/control.h"
#include "spillway.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/daemon.h"

#define CALL_MS   10000
#define SETTLE_MS 60000

struct spillway {
	struct config cfg;
	/* with a daemon */
	struct client_events *events;
	/* in this process */
	bool in_process;
	uv_loop_t loop;
	struct clock clock;
	struct daemon *d;
	struct control *ctl; /* the daemon's socket, served here: the CLI works beside us */
	int lock;
	bool started, stopped;
	int start_error;
	char start_cause[256];
	json_t *queue; /* events not yet delivered */
	spillway_event_fn *cb;
	void *cb_arg;
};

static void say(char *err, size_t errlen, const char *fmt, ...) PRINTFLIKE(3, 4);

static void
say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void
copy(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* One request: 0 with the status and the document, or -errno. */
static int
ask(spillway *sp, const char *method, const char *path, const char *days, const json_t *body,
    long *status, json_t **doc, char *err, size_t errlen)
{
	char *cause = NULL, *text;
	unsigned st;
	int error;

	if (sp->in_process) {
		text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
		*doc =
		    control_answer(sp->d, method, path, days, text, text ? strlen(text) : 0, &st);
		*status = (long)st;
		free(text);
		return 0;
	}
	if (days != NULL) {
		char *full = xasprintf("%s?days=%s", path, days);

		error = client_call(
		    sp->cfg.socket_path, method, full, body, CALL_MS, status, doc, &cause);
		free(full);
	} else {
		error = client_call(
		    sp->cfg.socket_path, method, path, body, CALL_MS, status, doc, &cause);
	}
	if (error != 0) {
		say(err, errlen, "%s", cause);
		free(cause);
	}
	return error;
}

/* The error document's message into err, and the errno it means. */
static int
refused(long status, const json_t *doc, char *err, size_t errlen)
{
	const char *rule = jx_str(doc, "error.rule"), *msg = jx_str(doc, "error.message");

	/* A rule's message begins with the rule (decision_refuse). */
	say(err, errlen, "%s", msg != NULL ? msg : "refused");
	switch (status) {
	case 400:
		return -EINVAL;
	case 404:
		return -ENOENT;
	case 409:
		return rule != NULL ? -EAGAIN : -ENOENT;
	case 503:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

static void
vm_from(const spillway *sp, const json_t *j, struct spillway_vm *vm)
{
	json_t *comps = json_object_get(j, "components");

	memset(vm, 0, sizeof *vm);
	copy(vm->name, sizeof vm->name, jx_str(j, "name"));
	copy(vm->state, sizeof vm->state, jx_str(j, "state"));
	copy(vm->zone, sizeof vm->zone, jx_str(j, "zone"));
	copy(vm->ip, sizeof vm->ip, jx_str(j, "ip"));
	if (vm->ip[0] != '\0')
		snprintf(vm->endpoint, sizeof vm->endpoint, "http://%s:%lld", vm->ip,
		    (long long)sp->cfg.backend_port);
	if (json_is_string(comps)) { /* events carry "a,b" */
		copy(vm->components, sizeof vm->components, json_string_value(comps));
	} else {
		size_t i, used = 0;
		json_t *c;

		json_array_foreach (comps, i, c)
			used += (size_t)snprintf(vm->components + used,
			    used < sizeof vm->components ? sizeof vm->components - used : 0, "%s%s",
			    i ? "," : "", json_string_value(c));
	}
	vm->uptime_s = (long long)json_integer_value(json_object_get(j, "uptime_s"));
	vm->cost = json_number_value(json_object_get(j, "cost"));
}

int
spillway_routes(spillway *sp, struct spillway_route *out, size_t max)
{
	json_t *doc = NULL, *r;
	long status;
	size_t i;
	int error = ask(sp, "GET", "/v1/routes", NULL, NULL, &status, &doc, NULL, 0);

	if (error != 0)
		return error;
	json_array_foreach (json_object_get(doc, "routes"), i, r) {
		struct spillway_route *o;
		int64_t ms = 0;

		if (i >= max)
			continue;
		o = &out[i];
		memset(o, 0, sizeof *o);
		copy(o->component, sizeof o->component, jx_str(r, "component"));
		copy(o->listen, sizeof o->listen, jx_str(r, "listen"));
		copy(o->local, sizeof o->local, jx_str(r, "local"));
		copy(o->to, sizeof o->to, jx_str(r, "to"));
		copy(o->vm, sizeof o->vm, jx_str(r, "vm"));
		copy(o->why, sizeof o->why, jx_str(r, "why"));
		o->open = (long)json_integer_value(json_object_get(r, "open"));
		o->bytes_up = (long long)json_integer_value(json_object_get(r, "bytes_up"));
		o->bytes_down = (long long)json_integer_value(json_object_get(r, "bytes_down"));
		if (jx_str(r, "last_use") != NULL &&
		    time_parse_rfc3339(jx_str(r, "last_use"), &ms) == 0)
			o->last_use_ms = ms;
	}
	i = json_array_size(json_object_get(doc, "routes"));
	json_decref(doc);
	return (int)i;
}

/* --- events --- */

static void
deliver(spillway *sp, const char *name, const json_t *data)
{
	static const char *const types[] = {
	    "pressure", "decision", "state", "offload", "return", "note"};
	struct spillway_event e = {0};
	struct spillway_vm vm;
	bool known = false;
	char *text;

	if (sp->cb == NULL || name == NULL)
		return;
	for (size_t i = 0; i < sizeof types / sizeof types[0] && !known; i++)
		if (strcmp(types[i], name) == 0) {
			e.type = (enum spillway_event_type)i;
			known = true;
		}
	if (!known)
		return; /* a kind this version does not know */
	text = json_dumps(data, JSON_COMPACT);
	e.json = text;
	e.time = jx_str(data, "time") ? jx_str(data, "time") : "";
	e.reason = jx_str(data, "reason") ? jx_str(data, "reason") : "";
	e.level = jx_str(data, "pressure.level") ? jx_str(data, "pressure.level") : "";
	e.from = jx_str(data, "from") ? jx_str(data, "from") : "";
	e.note = jx_str(data, "kind") ? jx_str(data, "kind") : "";
	if (json_is_object(json_object_get(data, "vm"))) {
		vm_from(sp, json_object_get(data, "vm"), &vm);
		e.vm = &vm;
	}
	sp->cb(&e, sp->cb_arg);
	free(text);
}

static void
on_stream_event(const char *name, const json_t *data, void *arg)
{
	deliver(arg, name, data);
}

/* In this process, events wait in a queue for spillway_dispatch: never inside a call. */
static void
on_daemon_event(const struct manager_event *e, void *arg)
{
	spillway *sp = arg;

	if (sp->cb != NULL)
		json_array_append_new(sp->queue, control_event(e));
}

static void
drain(spillway *sp)
{
	while (json_array_size(sp->queue) > 0) {
		json_t *e = json_incref(json_array_get(sp->queue, 0));

		json_array_remove(sp->queue, 0);
		deliver(sp, jx_str(e, "type"), e);
		json_decref(e);
	}
}

/* --- life --- */

static void
on_started(void *arg, int error, const char *cause)
{
	spillway *sp = arg;

	sp->started = true;
	sp->start_error = error;
	copy(sp->start_cause, sizeof sp->start_cause, cause);
}

static void
on_timeout(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Run the loop for up to ms, or until cond(sp) holds. */
static void
run_for(spillway *sp, int ms, bool (*cond)(spillway *))
{
	uv_timer_t t;
	bool over = false;

	uv_timer_init(&sp->loop, &t);
	t.data = &over;
	uv_timer_start(&t, on_timeout, (uint64_t)ms, 0);
	while (!over && (cond == NULL || !cond(sp))) {
		uv_run(&sp->loop, UV_RUN_ONCE);
		drain(sp);
	}
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&sp->loop, UV_RUN_NOWAIT);
}

static bool
settled(spillway *sp)
{
	return (sp->started && sp->start_error != 0) ||
	    (daemon_manager(sp->d) != NULL && manager_settled(daemon_manager(sp->d)));
}

static int
start_here(spillway *sp, char *err, size_t errlen)
{
	struct daemon_opts o = {0};
	char *cause = NULL;

	if ((sp->lock = daemon_lock(&sp->cfg, &cause)) < 0) {
		say(err, errlen, "%s", cause);
		free(cause);
		return -EBUSY;
	}
	uv_loop_init(&sp->loop);
	clock_real(&sp->clock);
	sp->in_process = true;
	/* A library keeps quiet on the program's stderr, unless asked for debug. */
	{
		enum log_level level = LOG_LEVEL_WARN;

		if (log_parse_level(sp->cfg.log_level, &level) != 0 || level != LOG_LEVEL_DEBUG)
			level = LOG_LEVEL_WARN;
		log_set_level(level);
	}
	o.cfg = &sp->cfg;
	o.clock = &sp->clock;
	o.on_event = on_daemon_event;
	o.on_started = on_started;
	o.event_arg = sp;
	if (daemon_new(&sp->loop, &o, &sp->d, &cause) != 0) {
		say(err, errlen, "%s", cause);
		free(cause);
		return -EINVAL;
	}
	/* The same control socket as the daemon's, served while the program dispatches. */
	if (control_new(&sp->loop, sp->d, sp->cfg.socket_path, &sp->ctl, &cause) != 0) {
		say(err, errlen, "the control socket: %s", cause);
		free(cause);
		return -EIO;
	}
	run_for(sp, SETTLE_MS, settled);
	if (!settled(sp) || sp->start_error != 0) {
		say(err, errlen, "spillway could not reach the cloud: %s",
		    sp->start_cause[0] ? sp->start_cause : "no answer in 60 s");
		return sp->start_error != 0 ? sp->start_error : -ETIMEDOUT;
	}
	return 0;
}

int
spillway_open(
    spillway **out, enum spillway_mode mode, const char *config_file, char *err, size_t errlen)
{
	spillway *sp = xcalloc(1, sizeof *sp);
	const char *no_sets[] = {NULL};
	struct config_args args = {config_file, no_sets};
	char *cause = NULL;
	long status;
	json_t *doc = NULL;
	int error;

	/* jansson's allocator is the host's to choose (jx_init is the CLI's): not set here. */
	sp->lock = -1;
	sp->queue = json_array();
	if (config_load(&sp->cfg, &args, NULL, &cause) != 0) {
		say(err, errlen, "%s", cause);
		free(cause);
		error = -EINVAL;
		goto fail;
	}
	if (mode != SPILLWAY_IN_PROCESS) {
		error = client_call(
		    sp->cfg.socket_path, "GET", "/v1/status", NULL, CALL_MS, &status, &doc, &cause);
		json_decref(doc);
		if (error == 0) {
			*out = sp;
			return 0;
		}
		if (error != -ENOENT || mode == SPILLWAY_DAEMON) {
			say(err, errlen, "%s", cause);
			free(cause);
			goto fail;
		}
		free(cause);
	}
	if ((error = start_here(sp, err, errlen)) != 0)
		goto fail;
	*out = sp;
	return 0;
fail:
	spillway_close(sp, true);
	return error;
}

static void
on_stopped(void *arg)
{
	((spillway *)arg)->stopped = true;
}

static bool
stopped(spillway *sp)
{
	return sp->stopped;
}

void
spillway_close(spillway *sp, bool keep)
{
	if (sp == NULL)
		return;
	client_events_close(sp->events);
	if (sp->d != NULL) {
		daemon_set_keep(sp->d, keep);
		sp->cb = NULL;
		daemon_stop(sp->d, on_stopped, sp);
		run_for(sp, (int)(sp->cfg.shutdown_timeout_s * 1000) + 5000, stopped);
		control_free(sp->ctl); /* after the daemon: its last events reach the streams */
		daemon_free(sp->d);
	}
	if (sp->in_process) {
		uv_run(&sp->loop, UV_RUN_DEFAULT);
		uv_loop_close(&sp->loop);
	}
	daemon_unlock(sp->lock);
	json_decref(sp->queue);
	config_free(&sp->cfg);
	free(sp);
}

bool
spillway_in_process(const spillway *sp)
{
	return sp->in_process;
}

/* --- questions --- */

int
spillway_pressure(spillway *sp, struct spillway_pressure *p)
{
	json_t *doc = NULL, *pr;
	long status;
	int error = ask(sp, "GET", "/v1/pressure", NULL, NULL, &status, &doc, NULL, 0);

	if (error != 0)
		return error;
	memset(p, 0, sizeof *p);
	pr = json_object_get(doc, "pressure");
	copy(p->level, sizeof p->level, jx_str(pr, "level"));
	p->some_avg10 = json_number_value(json_object_get(pr, "some_avg10"));
	p->full_avg10 = json_number_value(json_object_get(pr, "full_avg10"));
	p->available_pct = json_number_value(json_object_get(pr, "available_pct"));
	p->mem_total_kb = (long long)json_integer_value(json_object_get(pr, "mem_total_kb"));
	p->mem_available_kb =
	    (long long)json_integer_value(json_object_get(pr, "mem_available_kb"));
	p->swap_used_kb = (long long)json_integer_value(json_object_get(pr, "swap_used_kb"));
	json_decref(doc);
	return 0;
}

int
spillway_should_create(spillway *sp, struct spillway_advice *a)
{
	json_t *doc = NULL, *d;
	long status;
	int error = ask(sp, "GET", "/v1/decision", NULL, NULL, &status, &doc, NULL, 0);

	if (error != 0)
		return error;
	if (status != 200) {
		error = refused(status, doc, NULL, 0);
		json_decref(doc);
		return error;
	}
	d = json_object_get(doc, "decision");
	memset(a, 0, sizeof *a);
	a->create = json_is_true(json_object_get(d, "create"));
	a->confidence = json_number_value(json_object_get(d, "confidence"));
	copy(a->rule, sizeof a->rule, jx_str(d, "rule"));
	copy(a->reason, sizeof a->reason, jx_str(d, "reason"));
	copy(a->components, sizeof a->components, jx_str(d, "components"));
	json_decref(doc);
	return 0;
}

int
spillway_create(spillway *sp, const char *components, const char *reason,
    const struct spillway_kv *metadata, size_t nmetadata, char name[64], char *err, size_t errlen)
{
	json_t *body = json_object(), *md = json_object(), *doc = NULL;
	long status;
	int error;

	if (components != NULL)
		json_object_set_new(body, "components", json_string(components));
	if (reason != NULL)
		json_object_set_new(body, "reason", json_string(reason));
	for (size_t i = 0; i < nmetadata; i++)
		json_object_set_new(md, metadata[i].key, json_string(metadata[i].value));
	json_object_set_new(body, "metadata", md);
	error = ask(sp, "POST", "/v1/vms", NULL, body, &status, &doc, err, errlen);
	json_decref(body);
	if (error != 0)
		return error;
	if (status == 201)
		copy(name, 64, jx_str(doc, "vm.name"));
	else
		error = refused(status, doc, err, errlen);
	json_decref(doc);
	return error;
}

int
spillway_terminate(spillway *sp, const char *name, char *err, size_t errlen)
{
	char *path = xasprintf("/v1/vms/%s", name);
	json_t *doc = NULL;
	long status;
	int error = ask(sp, "DELETE", path, NULL, NULL, &status, &doc, err, errlen);

	free(path);
	if (error == 0 && status != 202)
		error = refused(status, doc, err, errlen);
	json_decref(doc);
	return error;
}

int
spillway_stats(spillway *sp, struct spillway_stats *s)
{
	json_t *doc = NULL, *st, *today;
	long status;
	int error = ask(sp, "GET", "/v1/status", NULL, NULL, &status, &doc, NULL, 0);

	if (error != 0)
		return error;
	st = json_object_get(doc, "statistics");
	today = json_object_get(doc, "today");
	memset(s, 0, sizeof *s);
	s->created = (long)json_integer_value(json_object_get(st, "created"));
	s->active = (long)json_integer_value(json_object_get(st, "active"));
	s->failed = (long)json_integer_value(json_object_get(st, "failed"));
	s->terminated = (long)json_integer_value(json_object_get(st, "terminated"));
	s->preempted = (long)json_integer_value(json_object_get(st, "preempted"));
	s->total_cost = json_number_value(json_object_get(st, "total_cost"));
	/* Not known (the daemon's ledger cannot be read): the whole budget, as spent. */
	s->spent_today = json_is_number(json_object_get(today, "spent"))
	    ? json_number_value(json_object_get(today, "spent"))
	    : json_number_value(json_object_get(today, "budget"));
	s->budget_today = json_number_value(json_object_get(today, "budget"));
	json_decref(doc);
	return 0;
}

int
spillway_vms(spillway *sp, bool all, struct spillway_vm *out, size_t max)
{
	json_t *doc = NULL, *vm;
	long status;
	size_t i, n = 0;
	int error = ask(sp, "GET", "/v1/vms", NULL, NULL, &status, &doc, NULL, 0);

	if (error != 0)
		return error;
	json_array_foreach (json_object_get(doc, "vms"), i, vm) {
		enum vm_state state;

		if (!all &&
		    (vm_state_parse(jx_str(vm, "state"), &state) != 0 || !vm_state_alive(state)))
			continue;
		if (n < max)
			vm_from(sp, vm, &out[n]);
		n++;
	}
	json_decref(doc);
	return (int)n;
}

/* --- events --- */

int
spillway_on_event(spillway *sp, spillway_event_fn *cb, void *arg)
{
	char *cause = NULL;
	int error;

	sp->cb = cb;
	sp->cb_arg = arg;
	if (sp->in_process || cb == NULL || sp->events != NULL)
		return 0;
	if ((error = client_events_open(sp->cfg.socket_path, &sp->events, &cause)) != 0) {
		free(cause);
		sp->cb = NULL;
		return error;
	}
	return 0;
}

int
spillway_dispatch(spillway *sp, int timeout_ms)
{
	struct pollfd p;

	if (sp->in_process) {
		if (timeout_ms > 0)
			run_for(sp, timeout_ms, NULL);
		uv_run(&sp->loop, UV_RUN_NOWAIT);
		drain(sp);
		return 0;
	}
	if (sp->events == NULL) {
		if (timeout_ms > 0)
			poll(NULL, 0, timeout_ms);
		return 0;
	}
	p = (struct pollfd){client_events_fd(sp->events), POLLIN, 0};
	if (poll(&p, 1, timeout_ms) <= 0)
		return 0;
	return client_events_read(sp->events, on_stream_event, sp);
}

int
spillway_fd(const spillway *sp)
{
	if (sp->in_process)
		return uv_backend_fd(&sp->loop);
	return sp->events != NULL ? client_events_fd(sp->events) : -1;
}
