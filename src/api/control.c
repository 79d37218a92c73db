#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/control.h"
#include "api/view.h"
#include "net/httpd.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/offload.h"

#define STREAM_MAX_BUFFERED (1 << 20) /* a subscriber this far behind is dropped */
#define KEEPALIVE_MS        15000     /* a comment on idle streams: dead peers show */
#define MAX_BACKOFFS        16
#define SETTLE_POLL_MS      20
#define SETTLE_MAX_MS       30000 /* a create held this long for the first look at the cloud */

struct subscriber {
	struct control *ctl;
	struct httpd_stream *stream;
	struct subscriber *prev, *next;
};

/* A create that came before the daemon could judge it (the price, the first pass). */
struct held {
	struct httpd_req *r;
	int64_t since_ns;
	struct held *next;
};

struct control {
	struct daemon *d;
	struct httpd *httpd;
	char *path;
	uv_timer_t keepalive;
	uv_timer_t settle;
	struct held *held;
	struct subscriber *subs;
	int handles; /* timers not yet closed */
};

/* --- answers --- */

static void
answer(struct httpd_req *r, unsigned status, json_t *doc)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
	size_t len = strlen(text);

	text = xrealloc(text, len + 2);
	text[len++] = '\n';
	text[len] = '\0';
	httpd_respond(r, status, "application/json", text, len);
	free(text);
	json_decref(doc);
}

static json_t *error_doc(unsigned *status, unsigned code, const char *rule, const char *fmt, ...)
    PRINTFLIKE(4, 5);

/* An error document, its status set. */
static json_t *
error_doc(unsigned *status, unsigned code, const char *rule, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	json_t *doc;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatalx("out of memory");
	va_end(ap);
	str_scrub_utf8(msg); /* it may quote the request, whatever bytes it held */
	*status = code;
	doc = view_error((int)code, rule, msg);
	free(msg);
	return doc;
}

void
control_view(struct daemon *d, struct view_src *s)
{
	memset(s, 0, sizeof *s);
	s->cfg = daemon_config(d);
	s->ledger = daemon_ledger(d);
	s->now = clock_now_ms(daemon_clock(d));
	s->owner = daemon_owner(d);
	s->snap = daemon_snapshot(d);
}

/*
 * What the daemon answers from: control_view, and that it runs, what holds it
 * back, and the records its ledger has not taken yet (source_release frees).
 */
static void
source(struct daemon *d, struct view_src *s, struct backoff *b)
{
	struct manager *m = daemon_manager(d);

	control_view(d, s);
	s->daemon_pid = (long)getpid();
	if (m != NULL) {
		struct vm_record *w;

		s->backoffs = b;
		s->nbackoffs = manager_backoffs(m, b, MAX_BACKOFFS);
		s->nwaiting = manager_waiting(m, &w);
		s->waiting = w;
		s->ledger_problem = manager_ledger_problem(m, &s->ledger_waiting);
	}
	if (daemon_router(d) != NULL) {
		struct route_stats *routes;

		s->nroutes = router_stats(daemon_router(d), &routes);
		s->routes = routes;
	}
	if (daemon_offload(d) != NULL) {
		const struct local_info **copies = xcalloc(s->cfg->ncomponents + 1, sizeof *copies);

		s->ncopies = offload_copies(daemon_offload(d), copies, s->cfg->ncomponents);
		s->copies = copies;
	}
}

static void
source_release(struct view_src *s)
{
	free((void *)s->waiting);
	s->waiting = NULL;
	s->nwaiting = 0;
	free((void *)s->routes);
	s->routes = NULL;
	s->nroutes = 0;
	free((void *)s->copies);
	s->copies = NULL;
	s->ncopies = 0;
}

/* --- POST /v1/vms --- */

/* The components asked for: an array or "A,B", each one configured (config_components). */
static int
components_arg(const struct config *cfg, json_t *v, char *out, size_t size, char **bad)
{
	struct buf csv = BUF_INIT(4096);
	char why[512];
	size_t i;
	json_t *it;
	int error = 0;

	out[0] = '\0';
	if (v == NULL || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0))
		return 0; /* spillway's choice */
	if (json_is_string(v))
		buf_addstr(&csv, json_string_value(v));
	else if (!json_is_array(v))
		error = -EINVAL;
	json_array_foreach (v, i, it) {
		if (!json_is_string(it))
			error = -EINVAL;
		else
			buf_printf(&csv, "%s%s", i ? "," : "", json_string_value(it));
	}
	if (error != 0)
		*bad = xstrdup("'components' must be an array of names or a string \"A,B\"");
	else if ((error = config_components(cfg, buf_str(&csv), out, size, why, sizeof why)) != 0)
		*bad = xstrdup(why);
	buf_release(&csv);
	return error;
}

static void handle(struct httpd_req *, void *);

/* Held creates are judged once the daemon has looked at the cloud and knows the price. */
static void
on_settle(uv_timer_t *t)
{
	struct control *c = t->data;
	struct manager *m = daemon_manager(c->d);
	bool settled = m != NULL && manager_settled(m);
	struct held *list = c->held;

	c->held = NULL;
	while (list != NULL) {
		struct held *h = list;

		list = h->next;
		unsigned status;

		if (settled)
			handle(h->r, c);
		else if (monotonic_ns() - h->since_ns > (int64_t)SETTLE_MAX_MS * 1000000)
			answer(h->r, 503,
			    error_doc(&status, 503, NULL,
			        "the daemon has not reached the cloud yet; see its log"));
		else {
			h->next = c->held;
			c->held = h;
			continue;
		}
		free(h);
	}
	if (c->held == NULL)
		uv_timer_stop(t);
}

static void
hold(struct control *c, struct httpd_req *r)
{
	struct held *h = xcalloc(1, sizeof *h);

	h->r = r;
	h->since_ns = monotonic_ns();
	h->next = c->held;
	c->held = h;
	if (!uv_is_active((uv_handle_t *)&c->settle))
		uv_timer_start(&c->settle, on_settle, SETTLE_POLL_MS, SETTLE_POLL_MS);
}

json_t *
control_plan(const struct manager_plan *p)
{
	return json_pack("{s:s, s:s, s:b, s:s, s:f, s:I, s:f, s:f, s:s, s:o}", "zone", p->zone,
	    "machine_type", p->machine_type, "spot", p->spot, "components", p->d.components,
	    "per_hour", p->per_hour, "run_s", (json_int_t)p->d.run_s, "cost", p->d.cost, "left",
	    p->d.left, "reason", p->d.reason, "pooled",
	    p->pooled[0] ? json_pack("{s:s, s:s}", "name", p->pooled, "waits",
	                       p->suspended ? "suspended" : "stopped")
	                 : json_null());
}

static json_t *
create(struct daemon *dm, const char *body, size_t len, unsigned *status)
{
	struct manager *m = daemon_manager(dm);
	const struct config *cfg = daemon_config(dm);
	json_t *doc = NULL, *reason, *out;
	char *why = NULL, components[256], name[64], bad[256];
	char metadata[sizeof((struct vm_record *)0)->metadata];
	struct vm_record rec;
	struct decision d;
	struct view_src s;
	struct backoff b[MAX_BACKOFFS];

	if (len > 0 && jx_parse(body, len, &doc, &why) != 0) {
		out = error_doc(status, 400, NULL, "the body is not JSON: %s", why);
		free(why);
		return out;
	}
	if (doc != NULL && !json_is_object(doc)) {
		out = error_doc(status, 400, NULL,
		    "the body must be an object: {\"components\": [...], \"reason\": \"...\"}");
		goto out;
	}
	reason = json_object_get(doc, "reason");
	if (reason != NULL && !json_is_string(reason) && !json_is_null(reason)) {
		out = error_doc(status, 400, NULL, "'reason' must be a string");
		goto out;
	}
	if (components_arg(cfg, json_object_get(doc, "components"), components, sizeof components,
	        &why) != 0) {
		out = error_doc(status, 400, NULL, "%s", why);
		free(why);
		goto out;
	}
	if (vm_metadata_check(json_object_get(doc, "metadata"), metadata, sizeof metadata, bad,
	        sizeof bad) != 0) {
		out = error_doc(status, 400, NULL, "%s", bad);
		goto out;
	}
	if (m == NULL || !manager_settled(m)) {
		out = error_doc(status, 503, NULL, "the daemon has not reached the cloud yet");
		goto out;
	}
	if (json_object_get(doc, "dry_run") != NULL &&
	    !json_is_boolean(json_object_get(doc, "dry_run"))) {
		out = error_doc(status, 400, NULL, "'dry_run' must be true or false");
		goto out;
	}
	if (json_is_true(json_object_get(doc, "dry_run"))) {
		struct manager_plan p;

		if (manager_plan(m, components, &p) != 0) {
			out = error_doc(status, 409, p.d.rule, "%s", p.d.reason);
			goto out;
		}
		out = json_pack(
		    "{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "plan", control_plan(&p));
		goto out;
	}
	switch (manager_create(
	    m, components, json_string_value(reason), metadata, name, sizeof name, &d)) {
	case 0:
		source(dm, &s, b);
		ledger_get(s.ledger, name, &rec);
		*status = 201;
		out = json_pack(
		    "{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "vm", view_vm(&s, &rec));
		source_release(&s);
		break;
	case -EAGAIN:
		out = error_doc(status, 409, d.rule, "%s", d.reason);
		break;
	default:
		out = error_doc(status, 500, d.rule, "%s", d.reason);
		break;
	}
out:
	json_decref(doc);
	return out;
}

/* --- the event stream --- */

static void
unsubscribe(void *arg)
{
	struct subscriber *sub = arg;
	struct control *c = sub->ctl;

	if (sub->prev != NULL)
		sub->prev->next = sub->next;
	else
		c->subs = sub->next;
	if (sub->next != NULL)
		sub->next->prev = sub->prev;
	free(sub);
	/* Nobody listens: nothing to keep alive, and the daemon sleeps. */
	if (c->subs == NULL)
		uv_timer_stop(&c->keepalive);
}

static void
broadcast(struct control *c, const char *text, size_t len)
{
	for (struct subscriber *s = c->subs, *next; s != NULL; s = next) {
		next = s->next;
		/* A failed write ends the stream: unsubscribe runs from the server. */
		httpd_stream_write(s->stream, text, len);
	}
}

static json_t *
event_vm(const struct vm_record *v)
{
	return json_pack("{s:s, s:s, s:s, s:o, s:s}", "name", v->name, "state",
	    vm_state_name(v->state), "zone", v->zone, "ip",
	    v->nat_ip[0] ? json_string(v->nat_ip) : json_null(), "components", v->components);
}

static const char *const kinds[] = {[MEV_PRESSURE] = "pressure",
    [MEV_DECISION] = "decision",
    [MEV_STATE] = "state",
    [MEV_READY] = "offload",
    [MEV_GONE] = "return",
    [MEV_NOTE] = "note"};

json_t *
control_event(const struct manager_event *e)
{
	char t[RFC3339_LEN];
	json_t *o;

	time_rfc3339(e->t_ms, 0, t);
	o = json_pack("{s:s, s:s, s:s?}", "type", kinds[e->kind], "time", t, "reason", e->reason);
	if (e->vm != NULL)
		json_object_set_new(o, "vm", event_vm(e->vm));
	if (e->kind == MEV_STATE)
		json_object_set_new(o, "from",
		    e->from >= 0 ? json_string(vm_state_name((enum vm_state)e->from))
		                 : json_null());
	if (e->kind == MEV_PRESSURE) {
		json_object_set_new(o, "pressure", view_pressure(e->snap));
		json_object_set_new(o, "previous", json_string(pressure_level_name(e->previous)));
	}
	if (e->decision != NULL)
		json_object_set_new(o, "decision", view_decision(e->decision));
	if (e->kind == MEV_NOTE) {
		json_object_set_new(o, "kind", json_string(e->note));
		json_object_set_new(o, "vm_name",
		    strcmp(e->note_vm, "-") != 0 ? json_string(e->note_vm) : json_null());
	}
	return o;
}

static void
on_event(const struct manager_event *e, void *arg)
{
	struct control *c = arg;
	char *data, *text;
	json_t *o;

	if (c->subs == NULL)
		return;
	o = control_event(e);
	data = json_dumps(o, JSON_COMPACT);
	text = xasprintf("event: %s\ndata: %s\n\n", kinds[e->kind], data);
	broadcast(c, text, strlen(text));
	free(text);
	free(data);
	json_decref(o);
}

static void
on_keepalive(uv_timer_t *t)
{
	struct control *c = t->data;

	broadcast(c, ": keepalive\n\n", 13);
}

static void
subscribe(struct control *c, struct httpd_req *r)
{
	struct subscriber *sub = xcalloc(1, sizeof *sub);

	sub->ctl = c;
	httpd_set_header(r, "Cache-Control", "no-cache");
	sub->stream =
	    httpd_stream_open(r, 200, "text/event-stream", STREAM_MAX_BUFFERED, unsubscribe, sub);
	sub->next = c->subs;
	if (c->subs != NULL)
		c->subs->prev = sub;
	else
		uv_timer_start(&c->keepalive, on_keepalive, KEEPALIVE_MS, KEEPALIVE_MS);
	c->subs = sub;
	httpd_stream_write(sub->stream, ": spillway events\n\n", 19);
}

/* --- routes --- */

/* POST /v1/stop {"keep": false}: the daemon stops as at SIGTERM; the stream says the rest. */
static json_t *
stop(struct daemon *d, const char *body, size_t len, unsigned *status)
{
	json_t *req = NULL, *doc, *v;
	const char *key;
	char *cause = NULL;
	bool keep;

	if (len > 0 && (jx_parse(body, len, &req, &cause) != 0 || !json_is_object(req))) {
		doc = error_doc(status, 400, NULL,
		    "the body is not a JSON object (%s): send {\"keep\": false}",
		    cause != NULL ? cause : "not an object");
		goto out;
	}
	json_object_foreach (req, key, v) {
		if ((strcmp(key, "keep") != 0 && strcmp(key, "drain_pool") != 0) ||
		    !json_is_boolean(v)) {
			doc = error_doc(status, 400, NULL,
			    "%s: the body takes \"keep\" and \"drain_pool\", each true or false",
			    key);
			goto out;
		}
	}
	keep = json_is_true(json_object_get(req, "keep"));
	if (daemon_ask_stop(d, keep, json_is_true(json_object_get(req, "drain_pool")), &keep) !=
	    0) {
		doc = error_doc(status, 409, NULL,
		    "spillway runs inside a program here (PID %d): it stops when that program "
		    "closes it",
		    (int)getpid());
		goto out;
	}
	*status = 202;
	doc = json_pack("{s:i, s:b, s:b, s:i}", "schema_version", VIEW_SCHEMA_VERSION, "stopping",
	    true, "keep", keep, "pid", (int)getpid());
out:
	free(cause);
	json_decref(req);
	return doc;
}

/* --- images (docs/images.md) --- */

static json_t *
bake(struct daemon *dm, const char *body, size_t len, unsigned *status)
{
	struct manager *m = daemon_manager(dm);
	const struct config *cfg = daemon_config(dm);
	json_t *doc = NULL, *out, *v;
	const char *family = cfg->image_family, *key;
	char *why = NULL, name[64];
	struct decision d;
	struct vm_record rec;
	struct image_record im;
	struct view_src s;
	struct backoff b[MAX_BACKOFFS];
	int error;

	if (len > 0 && (jx_parse(body, len, &doc, &why) != 0 || !json_is_object(doc))) {
		out = error_doc(status, 400, NULL,
		    "the body is not a JSON object (%s): send {\"family\": \"NAME\"} or nothing",
		    why != NULL ? why : "not an object");
		goto out;
	}
	json_object_foreach (doc, key, v) {
		if (strcmp(key, "family") != 0 || !json_is_string(v) ||
		    !config_family_valid(json_string_value(v))) {
			out = error_doc(status, 400, NULL,
			    "%s: the body takes one field, \"family\": 1 to 40 lowercase letters, "
			    "digits and '-', starting with a letter and not ending with '-'",
			    key);
			goto out;
		}
		family = json_string_value(v);
	}
	if (m == NULL || !manager_settled(m)) {
		out = error_doc(status, 503, NULL, "the daemon has not reached the cloud yet");
		goto out;
	}
	error = manager_bake(m, family, name, sizeof name, &d);
	if (error != 0) {
		out = error_doc(status,
		    error == -EIO          ? 500
		        : error == -EINVAL ? 400
		                           : 409,
		    d.rule, "%s", d.reason);
		goto out;
	}
	source(dm, &s, b);
	ledger_get(s.ledger, name, &rec);
	*status = 202;
	if (ledger_image_of(s.ledger, name, &im) != 0 || (out = view_image(&s, im.name)) == NULL)
		out = json_pack("{s:i, s:n}", "schema_version", VIEW_SCHEMA_VERSION, "image");
	json_object_set_new(out, "vm", view_vm(&s, &rec));
	source_release(&s);
out:
	free(why);
	json_decref(doc);
	return out;
}

static json_t *
image_gone(struct daemon *dm, struct view_src *s, const char *name, unsigned *status)
{
	struct manager *m = daemon_manager(dm);
	char why[256];

	if (m == NULL)
		return error_doc(status, 503, NULL, "the daemon is starting; try again");
	switch (manager_image_delete(m, name, why, sizeof why)) {
	case 0:
		*status = 202;
		return view_image(s, name);
	case -ENOENT:
		return error_doc(status, 404, NULL, "%s", why);
	default:
		return error_doc(status, 409, NULL, "%s", why);
	}
}

/* A request as a route's handler sees it; {name} in its pattern is in name. */
struct request {
	struct daemon *d;
	struct view_src *s;
	const char *name;
	const char *days;
	const char *body;
	size_t len;
	unsigned *status;
};

static json_t *
get_status(const struct request *q)
{
	return view_status(q->s);
}

static json_t *
get_vms(const struct request *q)
{
	return view_vms(q->s);
}

static json_t *
post_vms(const struct request *q)
{
	return create(q->d, q->body, q->len, q->status);
}

static json_t *
get_vm(const struct request *q)
{
	json_t *doc = view_vm_detail(q->s, q->name);

	if (doc != NULL)
		return doc;
	return error_doc(
	    q->status, 404, NULL, "no VM named '%s' (GET /v1/vms lists them)", q->name);
}

static json_t *
delete_vm(const struct request *q)
{
	struct manager *m = daemon_manager(q->d);
	struct vm_record rec;

	if (ledger_get(q->s->ledger, q->name, &rec) != 0)
		return error_doc(
		    q->status, 404, NULL, "no VM named '%s' (GET /v1/vms lists them)", q->name);
	if (m == NULL)
		return error_doc(q->status, 503, NULL, "the daemon is starting; try again");
	if (manager_terminate(m, q->name, "terminated by request") != 0)
		return error_doc(q->status, 409, NULL, "%s is %s: it is not running", q->name,
		    vm_state_name(rec.state));
	ledger_get(q->s->ledger, q->name, &rec);
	*q->status = 202;
	return json_pack(
	    "{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "vm", view_vm(q->s, &rec));
}

static json_t *
get_images(const struct request *q)
{
	return view_images(q->s);
}

static json_t *
post_images(const struct request *q)
{
	return bake(q->d, q->body, q->len, q->status);
}

static json_t *
get_image(const struct request *q)
{
	json_t *doc = view_image(q->s, q->name);

	if (doc != NULL)
		return doc;
	return error_doc(
	    q->status, 404, NULL, "no image named '%s' (GET /v1/images lists them)", q->name);
}

static json_t *
delete_image(const struct request *q)
{
	return image_gone(q->d, q->s, q->name, q->status);
}

static json_t *
post_stop(const struct request *q)
{
	return stop(q->d, q->body, q->len, q->status);
}

static json_t *
get_costs(const struct request *q)
{
	int64_t n = 7;

	if (q->days != NULL && parse_int64(q->days, 1, 366, &n) != 0)
		return error_doc(q->status, 400, NULL,
		    "days=%s: expected a whole number from 1 to 366", q->days);
	return view_costs(q->s, (int)n);
}

static json_t *
get_pressure(const struct request *q)
{
	return json_pack("{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "pressure",
	    view_pressure(q->s->snap));
}

static json_t *
get_routes(const struct request *q)
{
	return view_routes(q->s);
}

static json_t *
get_decision(const struct request *q)
{
	struct decision dec;

	if (daemon_manager(q->d) == NULL)
		return error_doc(q->status, 503, NULL, "the daemon is starting; try again");
	manager_decide(daemon_manager(q->d), &dec);
	return json_pack(
	    "{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "decision", view_decision(&dec));
}

/*
 * The API, as docs/api.md has it (tools/check-docs holds the two together):
 * a path's other methods are 405, other paths 404. {name} is one segment.
 */
static const struct route {
	const char *method;
	const char *pattern;
	json_t *(*handler)(const struct request *); /* NULL: the socket's own (a stream) */
} routes[] = {
    {"GET", "/v1/status", get_status},
    {"GET", "/v1/vms", get_vms},
    {"POST", "/v1/vms", post_vms},
    {"GET", "/v1/vms/{name}", get_vm},
    {"DELETE", "/v1/vms/{name}", delete_vm},
    {"GET", "/v1/costs", get_costs},
    {"GET", "/v1/pressure", get_pressure},
    {"GET", "/v1/decision", get_decision},
    {"GET", "/v1/routes", get_routes},
    {"GET", "/v1/images", get_images},
    {"POST", "/v1/images", post_images},
    {"GET", "/v1/images/{name}", get_image},
    {"DELETE", "/v1/images/{name}", delete_image},
    {"GET", "/v1/events", NULL},
    {"POST", "/v1/stop", post_stop},
};

/* Whether path is the pattern's; *name: the segment {name} stands for. */
static bool
matches(const char *pattern, const char *path, const char **name)
{
	const char *hole = strstr(pattern, "{name}");
	size_t fixed = hole != NULL ? (size_t)(hole - pattern) : strlen(pattern);

	if (hole == NULL)
		return strcmp(pattern, path) == 0;
	if (strncmp(pattern, path, fixed) != 0 || path[fixed] == '\0' ||
	    strchr(path + fixed, '/') != NULL)
		return false;
	*name = path + fixed;
	return true;
}

static json_t *
route(struct daemon *d, struct view_src *s, const char *method, const char *path, const char *days,
    const char *body, size_t len, unsigned *status)
{
	struct request q = {
	    .d = d, .s = s, .days = days, .body = body, .len = len, .status = status};
	bool known = false;

	*status = 200;
	for (size_t i = 0; i < nitems(routes); i++) {
		if (!matches(routes[i].pattern, path, &q.name))
			continue;
		known = true;
		if (strcmp(routes[i].method, method) != 0)
			continue;
		if (routes[i].handler == NULL)
			return error_doc(status, 405, NULL,
			    "%s %s is a stream: the socket serves it, not a program's call", method,
			    path);
		return routes[i].handler(&q);
	}
	if (!str_prefix(path, "/v1/"))
		return error_doc(status, 404, NULL,
		    "%s is not part of the API: its paths begin with /v1/", path);
	return error_doc(status, known ? 405 : 404, NULL,
	    "%s %s is not part of the API (see docs/api.md)", method, path);
}

json_t *
control_answer(struct daemon *d, const char *method, const char *path, const char *days,
    const char *body, size_t len, unsigned *status)
{
	struct view_src s;
	struct backoff b[MAX_BACKOFFS];
	json_t *doc;

	source(d, &s, b);
	doc = route(d, &s, method, path, days, body, len, status);
	source_release(&s);
	return doc;
}

static void
handle(struct httpd_req *r, void *arg)
{
	struct control *c = arg;
	const char *method = httpd_req_method(r), *path = httpd_req_path(r), *body;
	struct manager *m = daemon_manager(c->d);
	unsigned status;
	size_t len;
	int too_large;
	json_t *doc;

	body = httpd_req_body(r, &len, &too_large);
	if (strcmp(path, "/v1/events") == 0 && strcmp(method, "GET") == 0) {
		subscribe(c, r);
		return;
	}
	if (too_large) {
		answer(r, 413,
		    error_doc(
		        &status, 413, NULL, "the request body is over %d bytes", CONTROL_MAX_BODY));
		return;
	}
	/* A create before the first pass and the price waits for them (see on_settle). */
	if (strcmp(path, "/v1/vms") == 0 && strcmp(method, "POST") == 0 &&
	    (m == NULL || !manager_settled(m))) {
		hold(c, r);
		return;
	}
	doc = control_answer(c->d, method, path, httpd_req_query(r, "days"), body, len, &status);
	answer(r, status, doc);
}

/* --- life --- */

/* The socket's directory: ours, 0700, or we refuse to serve there. */
static int
private_dir(const char *path, char **cause)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	struct stat st;
	int error = 0;

	if (slash == NULL || slash == dir) {
		*cause = xasprintf("spillway.socket '%s' must be in a directory of its own", path);
		free(dir);
		return -EINVAL;
	}
	*slash = '\0';
	make_dirs(dir, 0700);
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
		*cause =
		    xasprintf("the socket's directory %s is not a directory of this user", dir);
		error = -EPERM;
	} else if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0) {
		*cause = xasprintf("cannot make %s private: %s", dir, strerror(errno));
		error = -errno;
	}
	free(dir);
	return error;
}

int
control_new(uv_loop_t *loop, struct daemon *d, const char *path, struct control **out, char **cause)
{
	struct httpd_opts o = {.max_body = CONTROL_MAX_BODY,
	    .conn_timeout_s = 30, /* a slow-loris client is closed after this */
	    .conn_limit = 64,
	    .conn_per_peer = 16, /* a program that floods the socket only loses its own idle ones */
	    .same_user = 1};
	struct control *c;
	int fd, error;

	if ((error = private_dir(path, cause)) != 0)
		return error;
	if ((fd = httpd_bind_unix(path, cause)) < 0)
		return fd;
	c = xcalloc(1, sizeof *c);
	c->d = d;
	c->path = xstrdup(path);
	if ((error = httpd_new_fd(loop, fd, &o, handle, c, &c->httpd, cause)) != 0) {
		unlink(path);
		free(c->path);
		free(c);
		return error;
	}
	uv_timer_init(loop, &c->keepalive);
	uv_timer_init(loop, &c->settle);
	c->keepalive.data = c->settle.data = c;
	c->handles = 2;
	daemon_on_event(d, on_event, c);
	*out = c;
	return 0;
}

static void
on_closed(uv_handle_t *h)
{
	struct control *c = h->data;

	if (--c->handles == 0)
		free(c);
}

void
control_free(struct control *c)
{
	if (c == NULL)
		return;
	for (struct subscriber *s = c->subs; s != NULL; s = s->next)
		httpd_stream_close(s->stream);
	while (c->held != NULL) { /* httpd_free answers them 503 */
		struct held *h = c->held;

		c->held = h->next;
		free(h);
	}
	httpd_free(c->httpd); /* the streams end: unsubscribe empties c->subs */
	unlink(c->path);
	free(c->path);
	uv_timer_stop(&c->keepalive);
	uv_timer_stop(&c->settle);
	uv_close((uv_handle_t *)&c->keepalive, on_closed);
	uv_close((uv_handle_t *)&c->settle, on_closed);
}
