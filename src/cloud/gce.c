/*
 * The Compute Engine provider's calls, each a small state machine (what each
 * call sends and what its answer means are gce-methods.c's):
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

#include "cloud/gce-call.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

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

void
call_clear_error(struct call *c)
{
	gce_error_release(&c->e);
}

void
call_set_error(struct call *c, enum cloud_errc code, const char *fmt, ...)
{
	va_list ap;

	call_clear_error(c);
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

	call_clear_error(c);
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

void
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

struct call *
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

static void send_request(struct call *, const char *token);

static void
on_timer(uv_timer_t *t)
{
	struct call *c = t->data;

	if (c->waiting_token) {
		/* The deadline passed while the token was on its way. */
		auth_cancel(c->g->auth, c);
		c->waiting_token = false;
		call_set_error(c, CLOUD_DEADLINE, "the deadline passed while waiting for a token");
		call_fail(c);
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
		call_set_error(c, error == -EAGAIN ? CLOUD_NETWORK : CLOUD_AUTH, "%s", cause);
		if (error == -EAGAIN && c->attempts + 1 < c->g->opts.retry.attempts) {
			int64_t wait =
			    retry_backoff_ms(&c->g->opts.retry, ++c->attempts, jitter(c->g));

			if (now_ms(c->g) + wait < c->deadline_ms) {
				uv_timer_start(
				    &c->timer, on_timer, clock_timer_ms(c->g->clock, wait), 0);
				return;
			}
		}
		call_fail(c);
		return;
	}
	send_request(c, token);
}

void
call_start(struct call *c)
{
	struct gce *g = c->g;
	const char *tok;

	if (now_ms(g) >= c->deadline_ms) {
		if (c->e.err.code == CLOUD_OK)
			call_set_error(c, CLOUD_DEADLINE, "the deadline passed");
		else
			c->e.err.code = CLOUD_DEADLINE;
		call_fail(c);
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
		call_fail(c);
		return;
	}
	wait = retry_backoff_ms(&g->opts.retry, c->attempts, jitter(g));
	if (now_ms(g) + wait >= c->deadline_ms) {
		c->e.err.code = CLOUD_DEADLINE;
		call_fail(c);
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
		call_set_error(c, CLOUD_INVALID,
		    "cannot send a request to %s (http:// is for loopback "
		    "addresses only)",
		    g->endpoint);
		call_fail(c);
	}
}

/* A Google error envelope, or whatever came instead. */
static void
http_error(struct call *c, const struct http_response *r)
{
	call_clear_error(c);
	gce_error_from_http(r->status, r->body, r->len, &c->e);
}

static void
on_http(const struct http_response *r, void *arg)
{
	struct call *c = arg;
	struct gce *g = c->g;
	json_t *v = NULL;

	c->http = NULL;
	if (r->error != 0) {
		call_set_error(c, CLOUD_NETWORK, "%s %s%s: %s", c->method, g->endpoint, c->path,
		    r->error_text);
		/* An answer past the bound would be as large next time. */
		if (r->error == -E2BIG)
			call_fail(c);
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
		if ((c->kind == K_DELETE || c->kind == K_IMAGE_DELETE) && r->status == 404) {
			/* Already gone: what a delete wanted. */
			struct cloud_op op = {
			    .zone = c->target_zone, .type = "delete", .done = true};

			call_clear_error(c);
			c->e.err.attempts = c->attempts;
			c->cb.op(&c->e.err, &op, c->arg);
			call_free(c);
		} else if (cloud_errc_retryable(c->e.err.code)) {
			retry(c);
		} else {
			call_fail(c);
		}
		return;
	}
	if (jx_parse(r->body, r->len, &v, NULL) != 0 || !json_is_object(v)) {
		call_set_error(c, CLOUD_NETWORK, "the answer to %s %s%s is not a JSON object",
		    c->method, g->endpoint, c->path);
		json_decref(v);
		call_fail(c);
		return;
	}
	call_clear_error(c);
	call_answered(c, v);
	json_decref(v);
}

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
