/*
 * spillway demo: the emulator inside this process and one Spot VM walked
 * through its life over real HTTP: a token from the emulator's OAuth endpoint,
 * instances.insert, PROVISIONING -> STAGING -> RUNNING, the backend's /health
 * on the VM's own address, instances.delete, zoneOperations.wait, gone.
 * No cloud account, no network beyond loopback.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "cli/cmd.h"
#include "emulator/emulator.h"
#include "net/http.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define DEMO_ZONE       "us-central1-a"
#define DEMO_TIMEOUT_MS 20000
#define POLL_MS         150

enum step { S_TOKEN, S_INSERT, S_POLL, S_HEALTH, S_DELETE, S_WAIT, S_GONE, S_DONE };

struct demo {
	uv_loop_t *loop;
	struct emulator *emu;
	struct http_client *http;
	uv_timer_t timer;
	enum step step;
	char *token;
	char *name;
	char *op;
	char status[32];
	char nat_ip[32];
	int guest_port;
	int64_t t0;
	int result;
};

static void next(struct demo *);
static void on_timer(uv_timer_t *);

static void say(struct demo *, const char *, ...) PRINTFLIKE(2, 3);

static void
say(struct demo *d, const char *fmt, ...)
{
	va_list ap;

	printf("[%5.1fs] ", (double)(realtime_ns() - d->t0) / 1e9);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Called from HTTP callbacks: the teardown itself runs from the timer. */
static void
finish(struct demo *d, int result)
{
	d->result = result;
	d->step = S_DONE;
	uv_timer_start(&d->timer, on_timer, 0, 0);
}

static void
fail(struct demo *d, const char *what, const struct http_response *r)
{
	say(d, "demo failed: %s: %s%.*s", what, r->error ? r->error_text : "",
	    r->error ? 0 : (int)(r->len > 300 ? 300 : r->len), r->body);
	finish(d, EXIT_FAIL);
}

static void on_response(const struct http_response *, void *);

static void
call(struct demo *d, const char *method, const char *url, const char *body, const char *ctype)
{
	char auth[512], ct[128];
	const char *headers[3] = {NULL, NULL, NULL};
	struct http_request req = {
	    method, url, headers, body, body ? strlen(body) : 0, 10000, 1 << 20, NULL};
	size_t h = 0;

	if (d->token != NULL) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", d->token);
		headers[h++] = auth;
	}
	if (ctype != NULL) {
		snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
		headers[h++] = ct;
	}
	if (http_send(d->http, &req, on_response, d, NULL) != 0) {
		say(d, "demo failed: cannot send %s %s", method, url);
		finish(d, EXIT_FAIL);
	}
}

static char *
compute_url(struct demo *d, const char *tail)
{
	return xasprintf("%s/compute/v1/projects/spillway-demo/zones/" DEMO_ZONE "/%s",
	    emulator_url(d->emu), tail);
}

/* The service-account flow, as a real client does it: sign a JWT, trade it for a token. */
static void
get_token(struct demo *d)
{
	char *sa = emulator_service_account_json(d->emu), *cause = NULL, *jwt = NULL, *form;
	json_t *key = NULL, *hdr, *claims;
	EVP_PKEY *pk;
	int64_t now = realtime_ns() / NS_PER_S;

	jx_parse(sa, strlen(sa), &key, &cause);
	explicit_bzero(sa, strlen(sa));
	free(sa);
	pk = pem_read_private(jx_str(key, "private_key"), &cause);
	hdr = jx_pack(
	    "{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", jx_str(key, "private_key_id"));
	claims = jx_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", jx_str(key, "client_email"), "scope",
	    "https://www.googleapis.com/auth/compute", "aud", jx_str(key, "token_uri"), "iat",
	    (json_int_t)now, "exp", (json_int_t)(now + 3600));
	jwt_sign_rs256(pk, hdr, claims, &jwt);
	form = xasprintf("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer"
	                 "&assertion=%s",
	    jwt);
	call(d, "POST", jx_str(key, "token_uri"), form, "application/x-www-form-urlencoded");
	EVP_PKEY_free(pk);
	json_decref(hdr);
	json_decref(claims);
	json_decref(key);
	free(jwt);
	free(form);
	free(cause);
}

static void
insert(struct demo *d)
{
	char req[UUID_LEN], *url, *tail, *body;
	json_t *inst =
	    jx_pack("{s:s, s:s, s:[{s:b, s:b, s:{s:s, s:s}}], s:[{s:s, s:[{s:s, s:s}]}], "
	            "s:{s:s, s:s}, s:{s:[{s:s, s:s}]}, s:{s:s, s:s, s:{s:s}, s:s, s:b}}",
	        "name", d->name, "machineType", "zones/" DEMO_ZONE "/machineTypes/e2-highmem-4",
	        "disks", "boot", true, "autoDelete", true, "initializeParams", "sourceImage",
	        "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb", "20",
	        "networkInterfaces", "network", "global/networks/default", "accessConfigs", "type",
	        "ONE_TO_ONE_NAT", "name", "External NAT", "labels", "managed-by", "spillway",
	        "spillway-owner", "demo", "metadata", "items", "key", "spillway-components",
	        "value", "vision,chatbots", "scheduling", "provisioningModel", "SPOT",
	        "instanceTerminationAction", "DELETE", "maxRunDuration", "seconds", "10800",
	        "onHostMaintenance", "TERMINATE", "automaticRestart", false);

	uuid_v4(req);
	tail = xasprintf("instances?requestId=%s", req);
	url = compute_url(d, tail);
	body = jx_dumps(inst);
	say(d, "instances.insert %s (e2-highmem-4, Spot, maxRunDuration 3h, requestId %.8s...)",
	    d->name, req);
	call(d, "POST", url, body, "application/json");
	json_decref(inst);
	free(body);
	free(url);
	free(tail);
}

static void
on_timer(uv_timer_t *t)
{
	next(t->data);
}

static void
later(struct demo *d)
{
	uv_timer_start(&d->timer, on_timer, POLL_MS, 0);
}

static void
next(struct demo *d)
{
	char *url = NULL, *tail = NULL;

	if (d->step != S_DONE && realtime_ns() - d->t0 > (int64_t)DEMO_TIMEOUT_MS * NS_PER_MS) {
		say(d, "demo failed: no progress in %d s", DEMO_TIMEOUT_MS / 1000);
		finish(d, EXIT_FAIL);
		return;
	}
	switch (d->step) {
	case S_TOKEN:
		get_token(d);
		break;
	case S_INSERT:
		insert(d);
		break;
	case S_POLL:
	case S_GONE:
		tail = xasprintf("instances/%s", d->name);
		url = compute_url(d, tail);
		call(d, "GET", url, NULL, NULL);
		break;
	case S_HEALTH:
		url = xasprintf("http://%s:%d/health", d->nat_ip, d->guest_port);
		call(d, "GET", url, NULL, NULL);
		break;
	case S_DELETE: {
		char req[UUID_LEN];

		uuid_v4(req);
		tail = xasprintf("instances/%s?requestId=%s", d->name, req);
		url = compute_url(d, tail);
		say(d, "instances.delete %s", d->name);
		call(d, "DELETE", url, NULL, NULL);
		break;
	}
	case S_WAIT:
		tail = xasprintf("operations/%s/wait", d->op);
		url = compute_url(d, tail);
		call(d, "POST", url, NULL, NULL);
		break;
	case S_DONE:
		uv_close((uv_handle_t *)&d->timer, NULL);
		http_client_free(d->http);
		emulator_free(d->emu);
		break;
	}
	free(url);
	free(tail);
}

static void
on_response(const struct http_response *r, void *arg)
{
	struct demo *d = arg;
	json_t *v = NULL;
	const char *s;

	if (r->error != 0) {
		fail(d, "HTTP", r);
		return;
	}
	jx_parse(r->body, r->len, &v, NULL);
	switch (d->step) {
	case S_TOKEN:
		if (r->status != 200 || (s = jx_str(v, "access_token")) == NULL) {
			fail(d, "token", r);
			break;
		}
		d->token = xstrdup(s);
		log_secret(d->token);
		say(d,
		    "signed an RS256 JWT with the emulator's service-account key; got a token "
		    "for %lld s",
		    (long long)json_integer_value(json_object_get(v, "expires_in")));
		d->step = S_INSERT;
		next(d);
		break;
	case S_INSERT:
		if (r->status != 200) {
			fail(d, "insert", r);
			break;
		}
		say(d, "operation %s is %s", jx_str(v, "name"), jx_str(v, "status"));
		d->step = S_POLL;
		next(d);
		break;
	case S_POLL:
		if (r->status != 200) {
			fail(d, "get", r);
			break;
		}
		s = jx_str(v, "status");
		if (strcmp(s, d->status) != 0) {
			snprintf(d->status, sizeof d->status, "%s", s);
			say(d, "%s is %s", d->name, s);
		}
		if (strcmp(s, "RUNNING") == 0 &&
		    (s = jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP")) != NULL) {
			snprintf(d->nat_ip, sizeof d->nat_ip, "%s", s);
			say(d, "natIP %s; waiting for the backend's /health on port %d", d->nat_ip,
			    d->guest_port);
			d->step = S_HEALTH;
		}
		later(d);
		break;
	case S_HEALTH:
		if (r->status != 200) {
			later(d);
			break;
		}
		s = jx_str(v, "status");
		{
			char *comps = jx_dumps(json_object_get(v, "components"));

			say(d, "backend on http://%s:%d is %s, running %s: offload them now",
			    d->nat_ip, d->guest_port, s, comps);
			free(comps);
		}
		d->step = S_DELETE;
		next(d);
		break;
	case S_DELETE:
		if (r->status != 200) {
			fail(d, "delete", r);
			break;
		}
		free(d->op);
		d->op = xstrdup(jx_str(v, "name"));
		d->step = S_WAIT;
		next(d);
		break;
	case S_WAIT:
		if (r->status != 200) {
			fail(d, "wait", r);
			break;
		}
		if (strcmp(jx_str(v, "status"), "DONE") != 0) {
			next(d);
			break;
		}
		say(d, "zoneOperations.wait: delete is DONE");
		d->step = S_GONE;
		next(d);
		break;
	case S_GONE:
		if (r->status == 404) {
			say(d, "instances.get: 404 notFound: %s is gone, nothing left running",
			    d->name);
			finish(d, EXIT_OK);
		} else {
			later(d);
		}
		break;
	case S_DONE:
		break;
	}
	json_decref(v);
}

static int
exec_demo(struct cmd_ctx *ctx, const struct args *a)
{
	struct emulator_opts o;
	struct demo d = {0};
	uv_loop_t loop;
	char *cause = NULL;
	time_t now = time(NULL);
	struct tm tm;
	char stamp[32];

	emulator_opts_default(&o);
	o.project = "spillway-demo";
	o.boot_ms = 2000;
	o.guest_boot_ms = 800;
	uv_loop_init(&loop);
	d.loop = &loop;
	d.t0 = realtime_ns();
	d.guest_port = o.guest_port;
	if (emulator_new(&loop, &o, &d.emu, &cause) != 0) {
		fprintf(stderr, "spillway demo: cannot start the emulator: %s\n", cause);
		free(cause);
		uv_loop_close(&loop);
		return EXIT_FAIL;
	}
	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
	d.name = xasprintf("spillway-%s-demo", stamp);
	say(&d, "a local Compute Engine is listening on %s (no cloud account needed)",
	    emulator_url(d.emu));
	d.http = http_client_new(&loop);
	uv_timer_init(&loop, &d.timer);
	d.timer.data = &d;
	next(&d);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	if (d.token != NULL)
		log_forget_secret(d.token);
	free(d.token);
	free(d.name);
	free(d.op);
	return d.result;
}

const struct cmd_entry cmd_demo_entry = {
    .name = "demo",
    .usage = "",
    .summary = "walk a Spot VM through its life on the built-in emulator",
    .options = NULL,
    .min_args = 0,
    .max_args = 0,
    .flags = 0,
    .exec = exec_demo,
};
