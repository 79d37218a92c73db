/*
 * The Compute Engine provider. Each call is a small state machine:
 *
 *	token (cached, or wait for the shared refresh)
 *	  -> HTTP request -> answer
 *	       2xx: the call's next step (next page, next zone, wait again) or done
 *	       401: drop the token, refresh once, send again
 *	       retryable (429, rate-limit 403, 5xx, no answer): back off with full
 *	         jitter and send again, while attempts and the deadline allow
 *	       otherwise: a typed error
 *
 * One timer per call covers the token wait (until the deadline) and the
 * backoff; curl bounds each request by what is left of the deadline.
 * Mutations carry the caller's requestId, so a retry is never a second VM.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud/gce-json.h"
#include "cloud/gce.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define WAIT_TIMEOUT_MS 130000 /* zoneOperations.wait returns within about 2 minutes */
#define PAGE_SIZE       500

enum kind { K_CREATE, K_GET, K_LIST, K_DELETE, K_WAIT, K_PREEMPT, K_MACHINE, K_ZONES, K_GUEST };

struct gce {
	struct cloud base;
	uv_loop_t *loop;
	const struct clock *clock;
	struct http_client *http;
	struct auth *auth;
	char *endpoint;
	char *project;
	struct gce_opts opts;
	uint64_t rng;
	struct call *calls;
	long requests;
	long retries;
};

/* The caller's callback, by kind of call. */
union callback {
	cloud_op_cb *op;
	cloud_instance_cb *instance;
	cloud_list_cb *list;
	cloud_ops_cb *ops;
	cloud_machine_cb *machine;
	cloud_zones_cb *zones;
	cloud_value_cb *value;
};

struct call {
	struct gce *g;
	enum kind kind;
	union callback cb;
	void *arg;
	int64_t deadline_ms;
	int attempts;
	bool refreshed; /* a 401 has been answered with a refresh already */
	bool waiting_token;
	struct http_call *http;
	uv_timer_t timer;
	char *token; /* the token the request in flight carries */
	/* the request */
	const char *method;
	char *path; /* after the endpoint, without the page token */
	char *body;
	/* the last error, and what its strings point into */
	struct gce_error e; /* e.err: what the caller hears */
	/* listings: zones to go, the page within one, what has been gathered */
	char **zones;
	size_t zone;
	char *page_token;
	char *filter;
	char *region;
	json_t *items;
	int64_t since_ms;
	char *target_zone; /* for create/delete/wait/get */
	struct call *prev, *next;
};

void
gce_opts_default(struct gce_opts *o)
{
	memset(o, 0, sizeof *o);
	o->endpoint = "https://compute.googleapis.com/compute/v1/";
	o->retry.base_ms = 500;
	o->retry.cap_ms = 32000;
	o->retry.attempts = 8;
	o->request_timeout_ms = 30000;
	o->max_response = 32 << 20;
}

static double
jitter(struct gce *g)
{
	return prng_next(&g->rng);
}

static int64_t
now_ms(struct gce *g)
{
	return clock_now_ms(g->clock);
}

/* --- the life of a call --- */

static void
clear_error(struct call *c)
{
	gce_error_release(&c->e);
}

static void set_error(struct call *, enum cloud_errc, const char *, ...) PRINTFLIKE(3, 4);

static void
set_error(struct call *c, enum cloud_errc code, const char *fmt, ...)
{
	va_list ap;

	clear_error(c);
	va_start(ap, fmt);
	c->e.text = xvasprintf(fmt, ap);
	va_end(ap);
	c->e.err.code = code;
	c->e.err.message = c->e.text;
}

static void
call_release(uv_handle_t *h)
{
	struct call *c = h->data;

	clear_error(c);
	free(c->token);
	free(c->path);
	free(c->body);
	str_list_free(c->zones);
	free(c->page_token);
	free(c->filter);
	free(c->region);
	free(c->target_zone);
	json_decref(c->items);
	free(c);
}

/* Unlink, stop what runs, and free once libuv lets go of the timer. */
static void
call_free(struct call *c)
{
	struct gce *g = c->g;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		g->calls = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->http != NULL)
		http_cancel(c->http);
	if (c->waiting_token)
		auth_cancel(g->auth, c);
	if (c->token != NULL)
		explicit_bzero(c->token, strlen(c->token));
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, call_release);
}

static struct call *
call_new(struct gce *g, enum kind kind, union callback cb, void *arg, int64_t deadline_ms)
{
	struct call *c = xcalloc(1, sizeof *c);

	c->g = g;
	c->kind = kind;
	c->cb = cb;
	c->arg = arg;
	c->deadline_ms = deadline_ms;
	c->method = "GET";
	uv_timer_init(g->loop, &c->timer);
	c->timer.data = c;
	c->next = g->calls;
	if (g->calls != NULL)
		g->calls->prev = c;
	g->calls = c;
	return c;
}

/* Finish with the error in c->e.err. */
static void
fail(struct call *c)
{
	c->e.err.attempts = c->attempts;
	switch (c->kind) {
	case K_CREATE:
	case K_DELETE:
	case K_WAIT:
		c->cb.op(&c->e.err, NULL, c->arg);
		break;
	case K_GET:
		c->cb.instance(&c->e.err, NULL, c->arg);
		break;
	case K_LIST:
		c->cb.list(&c->e.err, NULL, 0, c->arg);
		break;
	case K_PREEMPT:
		c->cb.ops(&c->e.err, NULL, 0, c->arg);
		break;
	case K_MACHINE:
		c->cb.machine(&c->e.err, NULL, c->arg);
		break;
	case K_ZONES:
		c->cb.zones(&c->e.err, NULL, 0, c->arg);
		break;
	case K_GUEST:
		c->cb.value(&c->e.err, NULL, c->arg);
		break;
	}
	call_free(c);
}

static void send_request(struct call *, const char *token);
static void call_start(struct call *);

/*
 * What a listing asks Compute Engine to send of each item (a partial
 * response): what gce_instance_from_json and gce_op_from_json read, not an
 * instance's metadata, which is most of its size (a startup script, a
 * certificate). URL-encoded once, here.
 */
#define INSTANCE_FIELDS                                                                            \
	"items(name%2Cid%2Czone%2Cstatus%2CmachineType%2CcreationTimestamp%2ClastStartTimestamp"   \
	"%2CnetworkInterfaces(networkIP%2CaccessConfigs%2FnatIP)%2Clabels"                         \
	"%2Cscheduling(provisioningModel%2Cpreemptible%2CmaxRunDuration))%2CnextPageToken"
#define OPERATION_FIELDS                                                                           \
	"items(name%2Czone%2CoperationType%2CtargetLink%2Cstatus%2CinsertTime%2CendTime)"          \
	"%2CnextPageToken"

/* A listing's path in its current zone (its page token is added when it is sent). */
static char *
listing_path(const struct call *c)
{
	bool instances = c->kind == K_LIST;

	return xasprintf("projects/%s/zones/%s/%s?maxResults=%d&filter=%s&fields=%s", c->g->project,
	    c->zones[c->zone], instances ? "instances" : "operations", PAGE_SIZE, c->filter,
	    instances ? INSTANCE_FIELDS : OPERATION_FIELDS);
}

static void
on_timer(uv_timer_t *t)
{
	struct call *c = t->data;

	if (c->waiting_token) {
		/* The deadline passed while the token was on its way. */
		auth_cancel(c->g->auth, c);
		c->waiting_token = false;
		set_error(c, CLOUD_DEADLINE, "the deadline passed while waiting for a token");
		fail(c);
		return;
	}
	call_start(c);
}

static void
on_token(int error, const char *token, const char *cause, void *arg)
{
	struct call *c = arg;

	c->waiting_token = false;
	uv_timer_stop(&c->timer);
	if (error != 0) {
		set_error(c, error == -EAGAIN ? CLOUD_NETWORK : CLOUD_AUTH, "%s", cause);
		if (error == -EAGAIN && c->attempts + 1 < c->g->opts.retry.attempts) {
			int64_t wait =
			    retry_backoff_ms(&c->g->opts.retry, ++c->attempts, jitter(c->g));

			if (now_ms(c->g) + wait < c->deadline_ms) {
				uv_timer_start(
				    &c->timer, on_timer, clock_timer_ms(c->g->clock, wait), 0);
				return;
			}
		}
		fail(c);
		return;
	}
	send_request(c, token);
}

static void
call_start(struct call *c)
{
	struct gce *g = c->g;
	const char *tok;

	if (now_ms(g) >= c->deadline_ms) {
		if (c->e.err.code == CLOUD_OK)
			set_error(c, CLOUD_DEADLINE, "the deadline passed");
		else
			c->e.err.code = CLOUD_DEADLINE;
		fail(c);
		return;
	}
	if ((tok = auth_cached(g->auth)) != NULL) {
		send_request(c, tok);
		return;
	}
	c->waiting_token = true;
	uv_timer_start(
	    &c->timer, on_timer, clock_timer_ms(g->clock, c->deadline_ms - now_ms(g)), 0);
	auth_refresh(g->auth, c->deadline_ms, on_token, c);
}

/* Back off and try again, or fail when attempts or time are spent. */
static void
retry(struct call *c)
{
	struct gce *g = c->g;
	int64_t wait;

	if (c->attempts >= g->opts.retry.attempts) {
		fail(c);
		return;
	}
	wait = retry_backoff_ms(&g->opts.retry, c->attempts, jitter(g));
	if (now_ms(g) + wait >= c->deadline_ms) {
		c->e.err.code = CLOUD_DEADLINE;
		fail(c);
		return;
	}
	g->retries++;
	log_debug("gce: %s %s: %s; retry %d in %" PRId64 " ms", c->method, c->path,
	    cloud_errc_name(c->e.err.code), c->attempts, wait);
	uv_timer_start(&c->timer, on_timer, clock_timer_ms(g->clock, wait), 0);
}

static void on_http(const struct http_response *, void *);

static void
send_request(struct call *c, const char *token)
{
	struct gce *g = c->g;
	char auth[AUTH_HEADER_SIZE], *url;
	const char *headers[3] = {auth, NULL, NULL};
	struct http_request req = {0};
	int64_t left = c->deadline_ms - now_ms(g);
	int64_t cap = c->kind == K_WAIT ? WAIT_TIMEOUT_MS : g->opts.request_timeout_ms;
	int error;

	/* Kept to recognise a 401 for this token; auth registered it with the logger. */
	free(c->token);
	c->token = xstrdup(token);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
	if (c->body != NULL)
		headers[1] = "Content-Type: application/json";
	if (c->page_token != NULL)
		url = xasprintf("%s%s%cpageToken=%s", g->endpoint, c->path,
		    strchr(c->path, '?') ? '&' : '?', c->page_token);
	else
		url = xasprintf("%s%s", g->endpoint, c->path);
	req.method = c->method;
	req.url = url;
	req.headers = headers;
	req.body = c->body;
	req.len = c->body != NULL ? strlen(c->body) : 0;
	/* A wall-clock bound for curl, from what is left in the call's (virtual) deadline. */
	req.timeout_ms = (long)(left < cap ? (int64_t)clock_timer_ms(g->clock, left) : cap);
	if (req.timeout_ms < 1)
		req.timeout_ms = 1;
	req.max_response = g->opts.max_response;
	g->requests++;
	c->attempts++;
	error = http_send(g->http, &req, on_http, c, &c->http);
	explicit_bzero(auth, sizeof auth);
	free(url);
	if (error != 0) {
		c->http = NULL;
		set_error(c, CLOUD_INVALID,
		    "cannot send a request to %s (http:// is for loopback "
		    "addresses only)",
		    g->endpoint);
		fail(c);
	}
}

/* A Google error envelope, or whatever came instead. */
static void
http_error(struct call *c, const struct http_response *r)
{
	clear_error(c);
	gce_error_from_http(r->status, r->body, r->len, &c->e);
}

/* A DONE operation that carries an error: the matching typed error. */
static bool
op_failed(struct call *c, json_t *op)
{
	clear_error(c);
	return gce_error_from_op(op, c->target_zone, &c->e);
}

/* --- answers --- */

static void
deliver_op(struct call *c, json_t *v)
{
	struct cloud_op op;

	gce_op_from_json(v, &op);
	if (!gce_fits(op.name, CLOUD_OP_LEN)) {
		set_error(c, CLOUD_NETWORK, "the answer is not an operation");
		fail(c);
		return;
	}
	/* An operation of ours is in the zone we asked: what we wait on next. */
	if (!gce_valid_name(op.zone))
		op.zone = c->target_zone;
	c->cb.op(&c->e.err, &op, c->arg);
	call_free(c);
}

/*
 * A listing with an item we cannot read fails whole: leaving the item out
 * would make its VM look deleted, and what is kept of it must hold.
 */
static void
deliver_list(struct call *c)
{
	size_t n = json_array_size(c->items), k = 0;
	struct cloud_instance *list = xcalloc(n + 1, sizeof *list);
	const char *bad = NULL;
	json_t *it;
	size_t i;

	json_array_foreach (c->items, i, it) {
		if ((bad = gce_instance_from_json(it, &list[k])) != NULL)
			break;
		k++;
	}
	if (bad != NULL) {
		set_error(c, CLOUD_NETWORK,
		    "instances.list answered an item (%zu) without a valid '%s'", i, bad);
		gce_instances_free(list, k);
		fail(c);
		return;
	}
	c->cb.list(&c->e.err, list, k, c->arg);
	gce_instances_free(list, k);
	call_free(c);
}

static void
deliver_preemptions(struct call *c)
{
	size_t n = json_array_size(c->items), k = 0;
	struct cloud_op *ops = xcalloc(n + 1, sizeof *ops);
	json_t *it;
	size_t i;

	json_array_foreach (c->items, i, it) {
		const char *bad = gce_preemption_from_json(it, &ops[k]);

		if (bad != NULL) {
			set_error(c, CLOUD_NETWORK,
			    "operations.list answered a preemption (%zu) without a valid '%s'", i,
			    bad);
			free(ops);
			fail(c);
			return;
		}
		if (ops[k].inserted_ms >= c->since_ms)
			k++;
	}
	c->cb.ops(&c->e.err, ops, k, c->arg);
	free(ops);
	call_free(c);
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
deliver_zones(struct call *c)
{
	size_t n = json_array_size(c->items), k = 0;
	const char **names = xcalloc(n + 1, sizeof *names);
	json_t *it;
	size_t i;

	json_array_foreach (c->items, i, it) {
		const char *name = jx_str(it, "name"),
		           *region = gce_last_segment(jx_str(it, "region"));
		const char *status = jx_str(it, "status");

		if (name != NULL && region != NULL && strcmp(region, c->region) == 0 &&
		    (status == NULL || strcmp(status, "UP") == 0))
			names[k++] = name;
	}
	qsort(names, k, sizeof *names, compare_names);
	c->cb.zones(&c->e.err, names, k, c->arg);
	free(names);
	call_free(c);
}

/* The next page, or the next zone, or the end of a listing. */
static void
next_page(struct call *c, json_t *v)
{
	json_t *items = json_object_get(v, "items");
	const char *next = jx_str(v, "nextPageToken");

	if (json_is_array(items))
		json_array_extend(c->items, items);
	free(c->page_token);
	c->page_token = NULL;
	c->attempts = 0;
	if (next != NULL && *next != '\0') {
		c->page_token = url_encode(next);
		call_start(c);
		return;
	}
	if (c->zones != NULL && c->zones[++c->zone] != NULL) {
		free(c->path);
		c->path = listing_path(c);
		call_start(c);
		return;
	}
	switch (c->kind) {
	case K_LIST:
		deliver_list(c);
		break;
	case K_PREEMPT:
		deliver_preemptions(c);
		break;
	default:
		deliver_zones(c);
		break;
	}
}

static void
answered(struct call *c, json_t *v)
{
	c->e.err.attempts = c->attempts;
	switch (c->kind) {
	case K_CREATE:
	case K_DELETE:
		if (op_failed(c, v))
			fail(c);
		else
			deliver_op(c, v);
		break;
	case K_WAIT:
		if (jx_str(v, "status") == NULL || strcmp(jx_str(v, "status"), "DONE") != 0) {
			/* Google's wait may return early: wait again (not a failure). */
			c->attempts = 0;
			call_start(c);
		} else if (op_failed(c, v)) {
			fail(c);
		} else {
			deliver_op(c, v);
		}
		break;
	case K_GET: {
		struct cloud_instance in;
		const char *bad;

		if ((bad = gce_instance_from_json(v, &in)) != NULL) {
			set_error(
			    c, CLOUD_NETWORK, "the answer is not an instance: no valid '%s'", bad);
			free((void *)in.labels);
			free((void *)in.metadata);
			fail(c);
			break;
		}
		c->cb.instance(&c->e.err, &in, c->arg);
		free((void *)in.labels);
		free((void *)in.metadata);
		call_free(c);
		break;
	}
	case K_MACHINE: {
		struct cloud_machine_type mt = {.name = jx_str(v, "name"),
		    .vcpus = (int)json_integer_value(json_object_get(v, "guestCpus")),
		    .memory_mb = (int)json_integer_value(json_object_get(v, "memoryMb")),
		    .shared_core = json_is_true(json_object_get(v, "isSharedCpu"))};

		if (mt.name == NULL || mt.vcpus <= 0 || mt.memory_mb <= 0) {
			set_error(c, CLOUD_NETWORK, "the answer is not a machine type");
			fail(c);
			break;
		}
		c->cb.machine(&c->e.err, &mt, c->arg);
		call_free(c);
		break;
	}
	case K_GUEST:
		if (jx_str(v, "variableValue") == NULL) {
			set_error(c, CLOUD_NETWORK, "the answer is not a guest attribute");
			fail(c);
			break;
		}
		c->cb.value(&c->e.err, jx_str(v, "variableValue"), c->arg);
		call_free(c);
		break;
	case K_LIST:
	case K_PREEMPT:
	case K_ZONES:
		next_page(c, v);
		break;
	}
}

static void
on_http(const struct http_response *r, void *arg)
{
	struct call *c = arg;
	struct gce *g = c->g;
	json_t *v = NULL;

	c->http = NULL;
	if (r->error != 0) {
		set_error(c, CLOUD_NETWORK, "%s %s%s: %s", c->method, g->endpoint, c->path,
		    r->error_text);
		/* An answer past the bound would be as large next time. */
		if (r->error == -E2BIG)
			fail(c);
		else
			retry(c);
		return;
	}
	if (r->status == 401 && !c->refreshed) {
		/* The token expired under us: refresh once, then send once more. */
		c->refreshed = true;
		auth_invalidate(g->auth, c->token);
		call_start(c);
		return;
	}
	if (r->status < 200 || r->status >= 300) {
		http_error(c, r);
		if (c->kind == K_DELETE && r->status == 404) {
			/* Already gone: what a delete wanted. */
			struct cloud_op op = {
			    .zone = c->target_zone, .type = "delete", .done = true};

			clear_error(c);
			c->e.err.attempts = c->attempts;
			c->cb.op(&c->e.err, &op, c->arg);
			call_free(c);
		} else if (cloud_errc_retryable(c->e.err.code)) {
			retry(c);
		} else {
			fail(c);
		}
		return;
	}
	if (jx_parse(r->body, r->len, &v, NULL) != 0 || !json_is_object(v)) {
		set_error(c, CLOUD_NETWORK, "the answer to %s %s%s is not a JSON object", c->method,
		    g->endpoint, c->path);
		json_decref(v);
		fail(c);
		return;
	}
	clear_error(c);
	answered(c, v);
	json_decref(v);
}

/* --- the interface --- */

static int
gce_create(struct cloud *cl, const struct cloud_instance_spec *s, const char *request_id,
    int64_t deadline_ms, cloud_op_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;
	json_t *body;

	if (!gce_valid_name(s->name) || !gce_valid_name(s->zone) ||
	    !gce_valid_name(s->machine_type) || s->image == NULL || request_id == NULL ||
	    !uuid_valid(request_id))
		return -EINVAL;
	c = call_new(g, K_CREATE, (union callback){.op = cb}, arg, deadline_ms);
	body = gce_instance_body(s);
	c->method = "POST";
	c->body = jx_dumps(body);
	c->path = xasprintf(
	    "projects/%s/zones/%s/instances?requestId=%s", g->project, s->zone, request_id);
	c->target_zone = xstrdup(s->zone);
	json_decref(body);
	call_start(c);
	return 0;
}

static int
gce_get(struct cloud *cl, const char *zone, const char *name, int64_t deadline_ms,
    cloud_instance_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(name))
		return -EINVAL;
	c = call_new(g, K_GET, (union callback){.instance = cb}, arg, deadline_ms);
	c->path = xasprintf("projects/%s/zones/%s/instances/%s", g->project, zone, name);
	call_start(c);
	return 0;
}

/* A listing over zones, all pages each; the first zone's path is set here. */
static int
start_listing(struct gce *g, enum kind kind, const char *const *zones, const char *filter,
    int64_t deadline_ms, union callback cb, void *arg, struct call **out)
{
	struct call *c;
	size_t n = 0;

	for (; zones != NULL && zones[n] != NULL; n++)
		if (!gce_valid_name(zones[n]))
			return -EINVAL;
	if (n == 0)
		return -EINVAL;
	c = call_new(g, kind, cb, arg, deadline_ms);
	c->zones = xcalloc(n + 1, sizeof *c->zones);
	for (size_t i = 0; i < n; i++)
		c->zones[i] = xstrdup(zones[i]);
	c->filter = url_encode(filter);
	c->items = json_array();
	c->path = listing_path(c);
	*out = c;
	return 0;
}

static int
gce_list(struct cloud *cl, const char *const *zones, const char *key, const char *value,
    int64_t deadline_ms, cloud_list_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;
	char *filter;
	int error;

	if (key == NULL || value == NULL || strpbrk(key, " \"()") != NULL || strchr(value, '"'))
		return -EINVAL;
	filter = xasprintf("labels.%s = \"%s\"", key, value);
	error = start_listing(
	    g, K_LIST, zones, filter, deadline_ms, (union callback){.list = cb}, arg, &c);
	free(filter);
	if (error == 0)
		call_start(c);
	return error;
}

static int
gce_destroy(struct cloud *cl, const char *zone, const char *name, const char *request_id,
    int64_t deadline_ms, cloud_op_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(name) || request_id == NULL ||
	    !uuid_valid(request_id))
		return -EINVAL;
	c = call_new(g, K_DELETE, (union callback){.op = cb}, arg, deadline_ms);
	c->method = "DELETE";
	c->path = xasprintf(
	    "projects/%s/zones/%s/instances/%s?requestId=%s", g->project, zone, name, request_id);
	c->target_zone = xstrdup(zone);
	call_start(c);
	return 0;
}

static int
gce_wait(struct cloud *cl, const char *zone, const char *op, int64_t deadline_ms, cloud_op_cb *cb,
    void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(op))
		return -EINVAL;
	c = call_new(g, K_WAIT, (union callback){.op = cb}, arg, deadline_ms);
	c->method = "POST";
	c->path = xasprintf("projects/%s/zones/%s/operations/%s/wait", g->project, zone, op);
	c->target_zone = xstrdup(zone);
	call_start(c);
	return 0;
}

static int
gce_preemptions(struct cloud *cl, const char *const *zones, int64_t since_ms, int64_t deadline_ms,
    cloud_ops_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;
	int error =
	    start_listing(g, K_PREEMPT, zones, "operationType = \"compute.instances.preempted\"",
	        deadline_ms, (union callback){.ops = cb}, arg, &c);

	if (error == 0) {
		c->since_ms = since_ms;
		call_start(c);
	}
	return error;
}

static int
gce_machine_type(struct cloud *cl, const char *zone, const char *type, int64_t deadline_ms,
    cloud_machine_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(type))
		return -EINVAL;
	c = call_new(g, K_MACHINE, (union callback){.machine = cb}, arg, deadline_ms);
	c->path = xasprintf("projects/%s/zones/%s/machineTypes/%s", g->project, zone, type);
	call_start(c);
	return 0;
}

static int
gce_zones(struct cloud *cl, const char *region, int64_t deadline_ms, cloud_zones_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(region))
		return -EINVAL;
	c = call_new(g, K_ZONES, (union callback){.zones = cb}, arg, deadline_ms);
	c->region = xstrdup(region);
	c->items = json_array();
	c->path = xasprintf("projects/%s/zones?maxResults=%d", g->project, PAGE_SIZE);
	call_start(c);
	return 0;
}

static int
gce_guest_attribute(struct cloud *cl, const char *zone, const char *name, const char *key,
    int64_t deadline_ms, cloud_value_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(name) ||
	    strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/") !=
	        strlen(key))
		return -EINVAL;
	c = call_new(g, K_GUEST, (union callback){.value = cb}, arg, deadline_ms);
	c->path = xasprintf("projects/%s/zones/%s/instances/%s/getGuestAttributes?variableKey=%s",
	    g->project, zone, name, key);
	call_start(c);
	return 0;
}

static void
gce_free(struct cloud *cl)
{
	struct gce *g = (struct gce *)cl;

	while (g->calls != NULL)
		call_free(g->calls);
	free(g->endpoint);
	free(g->project);
	free(g);
}

static const struct cloud_ops gce_ops = {
    .name = "gce",
    .create = gce_create,
    .get = gce_get,
    .list = gce_list,
    .destroy = gce_destroy,
    .wait = gce_wait,
    .preemptions = gce_preemptions,
    .machine_type = gce_machine_type,
    .zones = gce_zones,
    .guest_attribute = gce_guest_attribute,
    .free = gce_free,
};

/* Endpoint, project and retries; 0, or -EINVAL and a cause (nothing changed). */
static int
take_opts(struct gce *g, const struct gce_opts *o, char **cause)
{
	const char *project =
	    o->project != NULL && *o->project != '\0' ? o->project : auth_project(g->auth);

	if (!str_prefix(o->endpoint, "https://") && !http_url_is_loopback(o->endpoint)) {
		*cause = xasprintf("endpoint '%s' must be https:// (plain http only to a loopback "
		                   "address)",
		    o->endpoint);
		return -EINVAL;
	}
	if (project == NULL || *project == '\0') {
		*cause =
		    xasprintf("no project: the credentials (%s) name none; set GCP_PROJECT_ID, "
		              "or run 'gcloud config set project PROJECT'",
		        auth_source(g->auth));
		return -EINVAL;
	}
	g->opts = *o;
	free(g->project);
	g->project = xstrdup(project);
	free(g->endpoint);
	g->endpoint =
	    str_suffix(o->endpoint, "/") ? xstrdup(o->endpoint) : xasprintf("%s/", o->endpoint);
	return 0;
}

int
gce_reconfigure(struct cloud *cl, const struct gce_opts *o, char **cause)
{
	return take_opts((struct gce *)cl, o, cause);
}

int
gce_new(uv_loop_t *loop, const struct clock *clock, struct http_client *http, struct auth *auth,
    const struct gce_opts *o, struct cloud **out, char **cause)
{
	struct gce *g = xcalloc(1, sizeof *g);
	int error;

	g->base.ops = &gce_ops;
	g->loop = loop;
	g->clock = clock;
	g->http = http;
	g->auth = auth;
	if ((error = take_opts(g, o, cause)) != 0) {
		free(g);
		return error;
	}
	g->rng = o->seed;
	if (g->rng == 0)
		random_bytes(&g->rng, sizeof g->rng);
	*out = &g->base;
	return 0;
}

void
gce_stats(const struct cloud *cl, long *requests, long *retries)
{
	const struct gce *g = (const struct gce *)cl;

	*requests = g->requests;
	*retries = g->retries;
}
