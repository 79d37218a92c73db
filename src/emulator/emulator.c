/*
 * The emulator's core: start-up, routing, faults, the request log, deferred
 * answers and the admin API under /emulator/v1/. The Compute API itself is in
 * compute.c, tokens in oauth.c, the metadata server in metadata.c, guests in
 * guest.c and the billing catalog in catalog.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "emulator/fields.h"
#include "emulator/internal.h"
#include "util/buf.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define REQUEST_LOG_MAX 200000

void
emulator_opts_default(struct emulator_opts *o)
{
	memset(o, 0, sizeof *o);
	o->host = "127.0.0.1";
	o->project = "spillway-emulator";
	o->zones = "us-central1-a,us-central1-b,us-central1-c";
	o->boot_ms = 1500;
	o->stop_ms = 500;
	o->guest_boot_ms = 1000;
	o->start_ms = o->resume_ms = -1;
	o->wait_ms = 120000;
	o->preempt_notice_ms = 30000;
	o->guest_port = 8010;
	o->agent_port = 8011;
}

/* --- small services for the other files --- */

double
emu_rand(struct emulator *emu)
{
	/* Repeatable with --seed, which is all the dice need. */
	return prng_next(&emu->rng);
}

int64_t
emu_now_ms(const struct emulator *emu)
{
	return clock_now_ms(emu->clock);
}

void
emu_time(const struct emulator *emu, int64_t ms, char out[RFC3339_LEN])
{
	time_rfc3339(ms, pacific_offset_min(ms), out);
}

uint64_t
emu_new_id(struct emulator *emu)
{
	uint64_t r;

	(void)emu;
	/* Google's ids: random, 19 decimal digits, unique across every kind of resource. */
	random_bytes(&r, sizeof r);
	return 1000000000000000000ULL + r % 8000000000000000000ULL;
}

struct zone *
emu_zone(struct emulator *emu, const char *name)
{
	for (size_t i = 0; i < emu->nzones; i++)
		if (strcmp(emu->zones[i].name, name) == 0)
			return &emu->zones[i];
	return NULL;
}

void
emu_split_path(const char *path, char ***parts, size_t *n)
{
	*parts = str_split(path, '/', n);
}

json_t *
emu_form(const char *text)
{
	json_t *form = json_object();
	char **pairs = str_split(text, '&', NULL);

	for (char **p = pairs; *p != NULL; p++) {
		char *eq = strchr(*p, '='), *key, *value;

		if (eq == NULL)
			continue;
		*eq = '\0';
		key = url_decode(*p);
		value = url_decode(eq + 1);
		if (json_object_get(form, key) == NULL)
			json_object_set_new(form, key, json_string(value));
		free(key);
		free(value);
	}
	str_list_free(pairs);
	return form;
}

const char *
rq_user(const struct rq *rq)
{
	return rq->user != NULL ? rq->user : rq->emu->client_email;
}

/* --- answering --- */

struct rq *
rq_new(struct emulator *emu, struct httpd_req *req, const char *server)
{
	struct rq *rq = xcalloc(1, sizeof *rq);

	rq->emu = emu;
	rq->req = req;
	rq->server = server;
	rq->log = true;
	return rq;
}

static void
rq_unlink(struct rq *rq)
{
	if (rq->prev != NULL)
		rq->prev->next = rq->next;
	else if (rq->emu->pending == rq)
		rq->emu->pending = rq->next;
	if (rq->next != NULL)
		rq->next->prev = rq->prev;
	rq->prev = rq->next = NULL;
}

static void
rq_release(uv_handle_t *h)
{
	struct rq *rq = h->data;

	free(rq->ctype);
	free(rq->body);
	free(rq->meta_inst);
	free(rq->meta_path);
	free(rq->meta_etag);
	free(rq->user);
	fields_free(rq->fields);
	free(rq);
}

static void
rq_free(struct rq *rq)
{
	rq_unlink(rq);
	if (rq->has_timer) {
		uv_timer_stop(&rq->timer);
		uv_close((uv_handle_t *)&rq->timer, rq_release);
	} else {
		rq->timer.data = rq;
		rq_release((uv_handle_t *)&rq->timer);
	}
}

static void on_rq_timer(uv_timer_t *);

void
rq_defer(struct rq *rq, enum rq_wait wait)
{
	struct emulator *emu = rq->emu;

	rq->wait = wait;
	if (rq->prev == NULL && emu->pending != rq) {
		rq->next = emu->pending;
		if (emu->pending != NULL)
			emu->pending->prev = rq;
		emu->pending = rq;
	}
}

void
rq_defer_timer(struct rq *rq, int64_t virtual_ms)
{
	if (!rq->has_timer) {
		uv_timer_init(rq->emu->loop, &rq->timer);
		rq->timer.data = rq;
		rq->has_timer = true;
	}
	uv_timer_start(&rq->timer, on_rq_timer, clock_timer_ms(rq->emu->clock, virtual_ms), 0);
}

/* Form values that are secrets are not written to the request log. */
static char *
redact_form(const char *body)
{
	static const char *secret_keys[] = {"assertion=", "refresh_token=", "client_secret="};
	struct buf b = BUF_INIT(SIZE_MAX);
	char **pairs = str_split(body, '&', NULL);

	for (char **p = pairs; *p != NULL; p++) {
		size_t i;

		for (i = 0; i < nitems(secret_keys); i++)
			if (str_prefix(*p, secret_keys[i]))
				break;
		if (i < nitems(secret_keys))
			buf_printf(&b, "%s%s[redacted]", b.len ? "&" : "", secret_keys[i]);
		else
			buf_printf(&b, "%s%s", b.len ? "&" : "", *p);
	}
	str_list_free(pairs);
	return buf_detach(&b, NULL);
}

static void
log_request(struct rq *rq, unsigned status)
{
	struct emulator *emu = rq->emu;
	const char *path = rq_path(rq);
	char now[RFC3339_LEN], *query = rq_query_string(rq), *body;
	size_t len;
	int too_large;
	const char *raw = rq_body(rq, &len, &too_large);
	json_t *entry;

	body = strcmp(path, "/token") == 0 ? redact_form(raw) : xstrdup(raw);
	emu_time(emu, emu_now_ms(emu), now);
	entry =
	    jx_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s}", "seq", (json_int_t)++emu->seq,
	        "time", now, "server", rq->server, "method", rq_method(rq), "path", path, "query",
	        query, "body", body, "status", (int)status, "peer", httpd_req_peer(rq->req));
	if (rq->host != NULL)
		json_object_set_new(entry, "host", json_string(rq->host));
	if (too_large)
		json_object_set_new(entry, "body_too_large", json_true());
	if (emu->request_log != NULL) {
		char *line = jx_dumps(entry);

		fprintf(emu->request_log, "%s\n", line);
		fflush(emu->request_log);
		free(line);
	}
	if (json_array_size(emu->requests) >= REQUEST_LOG_MAX)
		json_array_remove(emu->requests, 0);
	json_array_append_new(emu->requests, entry);
	free(query);
	free(body);
}

static json_t *
error_body(unsigned code, const char *domain, const char *reason, const char *status,
    const char *location, const char *msg)
{
	json_t *one =
	    jx_pack("{s:s, s:s, s:s}", "message", msg, "domain", domain, "reason", reason);
	json_t *err;

	if (location != NULL) {
		json_object_set_new(one, "location", json_string(location));
		json_object_set_new(one, "locationType",
		    json_string(strcmp(location, "Authorization") == 0 ? "header" : "parameter"));
	}
	err = jx_pack("{s:i, s:s, s:[o]}", "code", (int)code, "message", msg, "errors", one);
	if (status != NULL)
		json_object_set_new(err, "status", json_string(status));
	return jx_pack("{s:o}", "error", err);
}

/* The body Google sends for a fault of this status. */
static json_t *
fault_body(struct emulator *emu, unsigned status)
{
	char *msg;
	json_t *body;

	switch (status) {
	case 429:
		msg = xasprintf("Quota exceeded for quota metric 'Queries' and limit 'Queries per "
		                "minute' of service 'compute.googleapis.com' for consumer "
		                "'project_number:%s'.",
		    emu->project_number);
		body =
		    error_body(429, "global", "rateLimitExceeded", "RESOURCE_EXHAUSTED", NULL, msg);
		free(msg);
		return body;
	case 403:
		return error_body(
		    403, "usageLimits", "rateLimitExceeded", NULL, NULL, "Rate Limit Exceeded");
	case 500:
		return error_body(500, "global", "backendError", NULL, NULL,
		    "Internal error. Please try again or contact Google Support.");
	default:
		return error_body(503, "global", "backendError", NULL, NULL,
		    "The service is currently unavailable.");
	}
}

static void
respond_now(struct rq *rq, unsigned status, const char *ctype, const char *body, size_t len)
{
	if (rq->part != NULL)
		batch_part_answered(rq, status, ctype, body, len);
	else
		httpd_respond(rq->req, status, ctype, body, len);
	rq_free(rq);
}

void
emu_reply(struct rq *rq, unsigned status, const char *ctype, const char *body, size_t len)
{
	char *lost = NULL, *part = NULL;
	json_t *v;

	/* An answer kept serialised (an instance, a list of them), when only part is asked. */
	if (rq->fields != NULL && status < 300 && ctype != NULL &&
	    str_prefix(ctype, "application/json") && jx_parse(body, len, &v, NULL) == 0) {
		json_t *sel = fields_select(rq->fields, v);

		part = jx_dumps(sel);
		json_decref(sel);
		json_decref(v);
		body = part;
		len = strlen(part);
	}

	if (rq->lost_status != 0) {
		/* The change happened; the answer is lost on the way back. */
		json_t *fb = fault_body(rq->emu, rq->lost_status);

		status = rq->lost_status;
		rq->lost_status = 0;
		lost = jx_dumps(fb);
		json_decref(fb);
		ctype = "application/json; charset=UTF-8";
		body = lost;
		len = strlen(lost);
	}
	if (rq->log)
		log_request(rq, status);
	if (rq->latency_ms > 0 && !rq->emu->closing) {
		rq->status = status;
		rq->ctype = xstrdup(ctype);
		rq->body = xmalloc(len + 1);
		memcpy(rq->body, body, len);
		rq->len = len;
		rq_defer(rq, RQ_DELAY);
		rq_defer_timer(rq, rq->latency_ms);
		rq->latency_ms = 0;
	} else {
		respond_now(rq, status, ctype, body, len);
	}
	free(part);
	free(lost);
}

void
emu_reply_json(struct rq *rq, unsigned status, json_t *v)
{
	char *s;

	if (rq->fields != NULL && status < 300) {
		json_t *part = fields_select(rq->fields, v);

		json_decref(v);
		v = part;
	}
	fields_free(rq->fields); /* selected: emu_reply has nothing left to do */
	rq->fields = NULL;
	s = jx_dumps(v);

	json_decref(v);
	emu_reply(rq, status, "application/json; charset=UTF-8", s, strlen(s));
	free(s);
}

void
emu_reply_text(struct rq *rq, unsigned status, const char *text)
{
	emu_reply(rq, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void verror(struct rq *, unsigned, const char *, const char *, const char *, va_list)
    PRINTFLIKE(5, 0);

static void
verror(struct rq *rq, unsigned code, const char *reason, const char *status, const char *fmt,
    va_list ap)
{
	char *msg = xvasprintf(fmt, ap);
	const char *domain = strcmp(reason, "rateLimitExceeded") == 0 ? "usageLimits" : "global";
	const char *location = strcmp(reason, "authError") == 0 || strcmp(reason, "required") == 0
	    ? "Authorization"
	    : NULL;

	emu_reply_json(rq, code, error_body(code, domain, reason, status, location, msg));
	free(msg);
}

void
emu_error(struct rq *rq, unsigned code, const char *reason, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(rq, code, reason, NULL, fmt, ap);
	va_end(ap);
}

void
emu_error_status(
    struct rq *rq, unsigned code, const char *reason, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(rq, code, reason, status, fmt, ap);
	va_end(ap);
}

static void
on_rq_timer(uv_timer_t *t)
{
	struct rq *rq = t->data;

	switch (rq->wait) {
	case RQ_DELAY:
		respond_now(rq, rq->status, rq->ctype, rq->body, rq->len);
		break;
	case RQ_OP:
		rq->wait = RQ_NOW;
		emu_reply_json(rq, 200, compute_op_json(rq->op));
		break;
	case RQ_META:
		rq->wait = RQ_NOW;
		metadata_answer(rq);
		break;
	default:
		break;
	}
}

/*
 * Faults for a compute or billing call. True when the call was answered here.
 * For a mutation, half of the server errors strike after the change was made.
 */
enum { HUGE_ANSWER = 1, ENDLESS_ANSWER = 2, HUGE_ANSWER_BYTES = 12 << 20 };

static bool
inject_faults(struct rq *rq, bool mutation)
{
	struct emulator *emu = rq->emu;
	struct faults *f = &emu->faults;
	double r = emu_rand(emu);
	unsigned status = 0;

	if ((r -= f->error500) < 0)
		status = 500;
	else if ((r -= f->error503) < 0)
		status = 503;
	else if ((r -= f->rate429) < 0)
		status = 429;
	else if ((r -= f->rate403) < 0)
		status = 403;
	else if ((r -= f->huge) < 0)
		status = HUGE_ANSWER;
	else if ((r -= f->endless) < 0)
		status = ENDLESS_ANSWER;
	if (f->latency_max_ms > 0)
		rq->latency_ms = f->latency_min_ms +
		    (int64_t)(emu_rand(emu) * (double)(f->latency_max_ms - f->latency_min_ms));
	if (status == 0)
		return false;
	if (status == HUGE_ANSWER) {
		char *junk = xmalloc(HUGE_ANSWER_BYTES);

		memset(junk, ' ', HUGE_ANSWER_BYTES);
		junk[0] = '[';
		emu_reply(rq, 200, "application/json", junk, HUGE_ANSWER_BYTES);
		free(junk);
		return true;
	}
	if (status == ENDLESS_ANSWER) {
		if (rq->log)
			log_request(rq, 200);
		httpd_respond_endless(rq->req, 200, "application/json");
		rq_free(rq);
		return true;
	}
	if (mutation && status >= 500 && emu_rand(emu) < 0.5) {
		rq->lost_status = status;
		return false;
	}
	emu_reply_json(rq, status, fault_body(emu, status));
	return true;
}

/* --- routing --- */

/*
 * Resource Manager's projects.testIamPermissions: the permissions asked for
 * that the caller has, which here is all of them but --deny-permissions.
 */
static void
test_permissions(struct rq *rq, const char *target)
{
	struct emulator *emu = rq->emu;
	size_t len, i, plen = strlen(emu->project);
	const char *body = httpd_req_body(rq->req, &len, NULL);
	json_t *doc = NULL, *granted, *p;
	char **denied;

	if (strncmp(target, emu->project, plen) != 0 || target[plen] != ':') {
		emu_error(rq, 403, "forbidden", "The caller does not have permission");
		return;
	}
	if (jx_parse(body, len, &doc, NULL) != 0 ||
	    !json_is_array(json_object_get(doc, "permissions"))) {
		json_decref(doc);
		emu_error(
		    rq, 400, "invalid", "Invalid JSON payload received: expected permissions.");
		return;
	}
	denied = str_split(emu->opts.denied != NULL ? emu->opts.denied : "", ',', NULL);
	granted = json_array();
	json_array_foreach (json_object_get(doc, "permissions"), i, p) {
		bool deny = false;

		for (char **d = denied; *d != NULL && json_is_string(p); d++)
			deny |= strcmp(*d, json_string_value(p)) == 0;
		if (json_is_string(p) && !deny)
			json_array_append(granted, p);
	}
	str_list_free(denied);
	json_decref(doc);
	emu_reply_json(rq, 200, jx_pack("{s:o}", "permissions", granted));
}

/* The answer's `fields` (a partial response), refused before the method acts when bad. */
static bool
partial(struct rq *rq)
{
	const char *spec = rq_query(rq, "fields");
	char *cause = NULL;

	if (spec == NULL || fields_parse(spec, &rq->fields, &cause) == 0)
		return true;
	emu_error(rq, 400, "invalidParameter", "%s", cause);
	free(cause);
	return false;
}

/* A path's parts, or 400 when one would climb (".", "..", a backslash); NULL when answered. */
static char **
path_parts(struct rq *rq, const char *path, size_t *n)
{
	char **parts;

	emu_split_path(path, &parts, n);
	for (size_t i = 0; i < *n; i++) {
		if (strcmp(parts[i], ".") == 0 || strcmp(parts[i], "..") == 0 ||
		    strchr(parts[i], '\\') != NULL) {
			emu_error(rq, 400, "invalid", "Invalid resource path '%s'.", path);
			str_list_free(parts);
			return NULL;
		}
	}
	return parts;
}

void
compute_call(struct rq *rq)
{
	size_t n;
	char **parts = path_parts(rq, rq_path(rq), &n);

	if (parts == NULL)
		return;
	if (n < 2 || strcmp(parts[0], "compute") != 0 || strcmp(parts[1], "v1") != 0)
		emu_error(rq, 404, "notFound", "The requested URL %s was not found on this server.",
		    rq_path(rq));
	else if (partial(rq))
		compute_route(rq, parts, n);
	str_list_free(parts);
}

static void
on_request(struct httpd_req *req, void *arg)
{
	struct emulator *emu = arg;
	struct rq *rq = rq_new(emu, req, "api");
	const char *path = httpd_req_path(req);
	char **parts;
	size_t n;
	int too_large;

	if ((parts = path_parts(rq, path, &n)) == NULL)
		return;
	httpd_req_body(req, NULL, &too_large);
	if (too_large) {
		emu_error_status(rq, 413, "badRequest", "INVALID_ARGUMENT",
		    "Request payload size exceeds the limit: %d bytes.", MAX_BODY);
		goto out;
	}
	if (n >= 2 && strcmp(parts[0], "compute") == 0 && strcmp(parts[1], "v1") == 0) {
		bool mutation = strcmp(httpd_req_method(req), "GET") != 0 &&
		    !(n > 0 && strcmp(parts[n - 1], "wait") == 0);

		if (oauth_check(rq) == 0 && !inject_faults(rq, mutation))
			compute_call(rq);
	} else if (n == 3 && strcmp(parts[0], "batch") == 0 && strcmp(parts[1], "compute") == 0 &&
	    strcmp(parts[2], "v1") == 0) {
		/* One exchange: its token and its faults are the whole batch's. */
		if (oauth_check(rq) == 0 && !inject_faults(rq, true))
			batch_route(rq);
	} else if (n == 1 && strcmp(parts[0], "token") == 0) {
		oauth_token(rq);
	} else if (n >= 2 && strcmp(parts[0], "computeMetadata") == 0) {
		metadata_route(rq, parts, n);
	} else if (n >= 2 && strcmp(parts[0], "v1") == 0 && strcmp(parts[1], "services") == 0) {
		if (oauth_check(rq) == 0 && !inject_faults(rq, false))
			catalog_route(rq, parts, n);
	} else if (n == 3 && strcmp(parts[0], "v1") == 0 && strcmp(parts[1], "projects") == 0 &&
	    str_suffix(parts[2], ":testIamPermissions")) {
		if (oauth_check(rq) == 0 && !inject_faults(rq, false))
			test_permissions(rq, parts[2]);
	} else if (n >= 2 && strcmp(parts[0], "emulator") == 0 && strcmp(parts[1], "v1") == 0) {
		emu_admin_route(rq, parts, n);
	} else {
		emu_error(rq, 404, "notFound", "The requested URL %s was not found on this server.",
		    path);
	}
out:
	str_list_free(parts);
}

/* --- life --- */

int
emulator_set_faults(struct emulator *emu, const char *spec, char **cause)
{
	if (faults_parse(spec, &emu->faults, cause) != 0)
		return -EINVAL;
	for (char **z = emu->faults.stockout; *z != NULL; z++)
		if (emu_zone(emu, *z) == NULL)
			log_warnx(
			    "emulator: stockout zone '%s' is not one of the emulated zones", *z);
	return 0;
}

static int
setup_zones(struct emulator *emu, char **cause)
{
	size_t n;
	char **names = str_split(emu->opts.zones, ',', &n);
	int error = 0;

	if (n == 0) {
		*cause = xstrdup("--zones: at least one zone is needed");
		error = -EINVAL;
	}
	emu->zones = xcalloc(n + 1, sizeof *emu->zones);
	for (size_t i = 0; i < n && error == 0; i++) {
		char *z = names[i];
		size_t len = strlen(z);

		if (len < 4 || z[len - 2] != '-' || emu_zone(emu, z) != NULL) {
			*cause =
			    xasprintf("--zones: '%s' is not a zone name such as us-central1-a, or "
			              "is given twice",
			        z);
			error = -EINVAL;
			break;
		}
		emu->zones[i].emu = emu;
		emu->zones[i].name = xstrdup(z);
		emu->zones[i].region = xstrndup(z, len - 2);
		emu->zones[i].disks = json_object();
		emu->nzones = i + 1;
	}
	emu->global = (struct zone){.emu = emu, .disks = json_object()};
	str_list_free(names);
	return error;
}

static void
setup_auth(struct emulator *emu)
{
	char kid[41], secret[33];
	unsigned char raw[20];

	if ((emu->key = rsa_generate(2048)) == NULL)
		fatalx("emulator: cannot generate an RSA key");
	random_bytes(raw, sizeof raw);
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(kid + 2 * i, 3, "%02x", raw[i]);
	emu->key_id = xstrdup(kid);
	emu->client_email = xasprintf("spillway-emulator@%s.iam.gserviceaccount.com", emu->project);
	random_bytes(raw, 16);
	for (size_t i = 0; i < 16; i++)
		snprintf(secret + 2 * i, 3, "%02x", raw[i]);
	emu->user_client_id =
	    xasprintf("%s-emulator.apps.googleusercontent.com", emu->project_number);
	emu->user_client_secret = xasprintf("GOCSPX-%s", secret);
	random_bytes(raw, 16);
	for (size_t i = 0; i < 16; i++)
		snprintf(secret + 2 * i, 3, "%02x", raw[i]);
	emu->user_refresh_token = xasprintf("1//0g%s", secret);
	log_secret(emu->user_client_secret);
	log_secret(emu->user_refresh_token);
	emu->tokens = json_object();
}

/*
 * Each guest holds 3 descriptors (its backend's and its agent's listening
 * sockets, its server's epoll set) and 3 more per connection to its agent
 * (guest.c): the soft limit (often 1,024) would stop the guests near 300.
 * Up to the hard limit, and past it to FD_WANTED where the process may
 * (CAP_SYS_RESOURCE): 5,000 guests, each with a daemon's channel to its
 * agent, need about 30,000.
 */
#define FD_WANTED 65536

int
emulator_new(uv_loop_t *loop, const struct emulator_opts *o, struct emulator **out, char **cause)
{
	struct emulator *emu = xcalloc(1, sizeof *emu);
	struct httpd_opts ho = {.max_body = MAX_BODY, .conn_timeout_s = 60, .conn_limit = 4096};
	uint64_t seed = o->seed;
	int error;

	emu->loop = loop;
	emu->opts = *o;
	emu->fd_limit = raise_fd_limit(FD_WANTED);
	clock_real(&emu->real_clock);
	emu->clock = o->clock != NULL ? o->clock : &emu->real_clock;
	emu->project = xstrdup(o->project);
	if (seed == 0)
		random_bytes(&seed, sizeof seed);
	emu->rng = seed;
	emu->project_number =
	    xasprintf("%llu", 100000000000ULL + (unsigned long long)(emu_rand(emu) * 1e11));
	/* Guests live on 127.NET.x.y: a random NET keeps parallel emulators apart. */
	emu->ip_net = 32 + (unsigned)(emu_rand(emu) * 200);
	emu->next_ip = 257;
	emu->next_internal = 2;
	emu->requests = json_array();
	faults_init(&emu->faults);
	if ((error = setup_zones(emu, cause)) != 0)
		goto fail;
	if (o->faults != NULL && (error = emulator_set_faults(emu, o->faults, cause)) != 0)
		goto fail;
	if (o->request_log != NULL && (emu->request_log = fopen(o->request_log, "a")) == NULL) {
		error = -errno;
		*cause =
		    xasprintf("cannot open request log '%s': %s", o->request_log, strerror(errno));
		goto fail;
	}
	setup_auth(emu);
	emu->firewalls = json_object();
	emu->images = json_object();
	emu->holds = json_object();
	if ((error = httpd_new(loop, o->host, o->port, &ho, on_request, emu, &emu->http, cause)) !=
	    0)
		goto fail;
	emu->url = xasprintf("http://%s:%d", o->host, httpd_port(emu->http));
	firewalls_default(emu);
	*out = emu;
	return 0;
fail:
	emulator_free(emu);
	return error;
}

void
emulator_free(struct emulator *emu)
{
	if (emu == NULL)
		return;
	emu->closing = true;
	while (emu->pending != NULL) {
		struct rq *rq = emu->pending;

		rq->log = false;
		respond_now(rq, 503, "text/plain", "emulator shutting down\n", 23);
	}
	for (size_t i = 0; i < emu->nzones; i++) {
		compute_free_zone(&emu->zones[i]);
		json_decref(emu->zones[i].disks);
		free(emu->zones[i].name);
		free(emu->zones[i].region);
	}
	free(emu->zones);
	compute_free_zone(&emu->global);
	json_decref(emu->global.disks);
	json_decref(emu->firewalls);
	json_decref(emu->images);
	json_decref(emu->holds);
	httpd_free(emu->http);
	if (emu->request_log != NULL)
		fclose(emu->request_log);
	faults_free(&emu->faults);
	json_decref(emu->requests);
	json_decref(emu->tokens);
	if (emu->user_refresh_token != NULL) {
		log_forget_secret(emu->user_client_secret);
		log_forget_secret(emu->user_refresh_token);
	}
	EVP_PKEY_free(emu->key);
	free(emu->key_id);
	free(emu->client_email);
	free(emu->user_client_id);
	free(emu->user_client_secret);
	free(emu->user_refresh_token);
	free(emu->project_number);
	free(emu->project);
	free(emu->url);
	free(emu);
}

int
emulator_port(const struct emulator *emu)
{
	return httpd_port(emu->http);
}

const char *
emulator_url(const struct emulator *emu)
{
	return emu->url;
}

char *
emulator_service_account_json(const struct emulator *emu)
{
	char *pem = pem_write_private(emu->key), *token_uri = xasprintf("%s/token", emu->url), *s;
	json_t *v = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type",
	    "service_account", "project_id", emu->project, "private_key_id", emu->key_id,
	    "private_key", pem, "client_email", emu->client_email, "client_id", emu->project_number,
	    "auth_uri", "https://accounts.google.com/o/oauth2/auth", "token_uri", token_uri,
	    "auth_provider_x509_cert_url", "https://www.googleapis.com/oauth2/v1/certs",
	    "client_x509_cert_url", "https://www.googleapis.com/robot/v1/metadata/x509/emulator",
	    "universe_domain", "googleapis.com");

	s = json_dumps(v, JSON_INDENT(2));
	explicit_bzero(pem, strlen(pem));
	free(pem);
	free(token_uri);
	json_decref(v);
	return s;
}

char *
emulator_user_credentials_json(const struct emulator *emu)
{
	json_t *v = jx_pack("{s:s, s:s, s:s, s:s}", "type", "authorized_user", "client_id",
	    emu->user_client_id, "client_secret", emu->user_client_secret, "refresh_token",
	    emu->user_refresh_token);
	char *s = json_dumps(v, JSON_INDENT(2));

	json_decref(v);
	return s;
}
