/*
 * The emulator's own API under /emulator/v1/, for tests and benches: the
 * request log, a reset, faults, tokens (to expire them, or to prove none
 * leaked), every instance at once, counts, and an instance preempted, powered
 * off from inside (a guest's systemctl poweroff), or its guest made healthy,
 * unhealthy or used. A table of routes, like the
 * control API's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/jx.h"
#include "util/str.h"

static struct inst *
admin_inst(struct rq *rq, char **parts, size_t n)
{
	/* emulator v1 projects P zones Z instances N verb */
	struct inst *inst;

	if (n != 9 || strcmp(parts[2], "projects") != 0 || strcmp(parts[4], "zones") != 0 ||
	    strcmp(parts[6], "instances") != 0) {
		emu_error(rq, 404, "notFound", "No such admin path.");
		return NULL;
	}
	if ((inst = emu_find_inst(rq->emu, parts[5], parts[7])) == NULL) {
		emu_error(rq, 404, "notFound",
		    "The resource 'projects/%s/zones/%s/instances/%s' was "
		    "not found",
		    parts[3], parts[5], parts[7]);
		return NULL;
	}
	return inst;
}

static void
reset(struct emulator *emu)
{
	compute_reset_all(emu);
	json_array_clear(emu->requests);
	faults_free(&emu->faults);
	faults_init(&emu->faults);
}

static void
admin_requests(struct rq *rq, char **parts, size_t n)
{
	struct emulator *emu = rq->emu;
	const char *since = httpd_req_query(rq->req, "since");
	int64_t from = 0;
	json_t *out, *e;
	size_t i;

	(void)parts, (void)n;
	if (since != NULL && parse_int64(since, 0, INT64_MAX, &from) != 0) {
		emu_error(rq, 400, "invalid", "'since' must be a sequence number");
		return;
	}
	out = json_array();
	json_array_foreach (emu->requests, i, e)
		if (json_integer_value(json_object_get(e, "seq")) > from)
			json_array_append(out, e);
	emu_reply_json(rq, 200, jx_pack("{s:o}", "requests", out));
}

static void
admin_reset(struct rq *rq, char **parts, size_t n)
{
	(void)parts, (void)n;
	reset(rq->emu);
	emu_reply_json(rq, 200, json_object());
}

static void
admin_faults_get(struct rq *rq, char **parts, size_t n)
{
	char *spec = faults_format(&rq->emu->faults);

	(void)parts, (void)n;
	emu_reply_json(rq, 200, jx_pack("{s:s}", "faults", spec));
	free(spec);
}

static void
admin_faults_put(struct rq *rq, char **parts, size_t n)
{
	struct emulator *emu = rq->emu;
	size_t len;
	int too_large;
	const char *body = httpd_req_body(rq->req, &len, &too_large), *s;
	json_t *v = NULL;
	char *cause = NULL, *spec;

	(void)parts, (void)n;
	if (too_large || jx_parse(body, len, &v, &cause) != 0 ||
	    (s = json_string_value(json_object_get(v, "faults"))) == NULL) {
		emu_error(rq, 400, "invalid", "expected {\"faults\": \"SPEC\"}%s%s",
		    cause ? ": " : "", cause ? cause : "");
	} else if (emulator_set_faults(emu, s, &cause) != 0) {
		emu_error(rq, 400, "invalid", "%s", cause);
	} else {
		spec = faults_format(&emu->faults);
		emu_reply_json(rq, 200, jx_pack("{s:s}", "faults", spec));
		free(spec);
	}
	json_decref(v);
	free(cause);
}

static void
admin_tokens_expire(struct rq *rq, char **parts, size_t n)
{
	size_t count = json_object_size(rq->emu->tokens);

	(void)parts, (void)n;
	oauth_expire_all(rq->emu);
	emu_reply_json(rq, 200, jx_pack("{s:i}", "expired", (int)count));
}

/* Every zone at once, free of faults and tokens: what a test checks against. */
static void
admin_instances(struct rq *rq, char **parts, size_t n)
{
	struct emulator *emu = rq->emu;
	json_t *out = json_array();

	(void)parts, (void)n;
	for (size_t i = 0; i < emu->nzones; i++)
		for (size_t j = 0; j < emu->zones[i].ninsts; j++) {
			const struct inst *in = emu->zones[i].insts[j];

			json_array_append_new(out,
			    jx_pack("{s:s, s:s, s:s, s:O, s:o, s:s?}", "name", in->name, "zone",
			        emu->zones[i].name, "status", jx_str(in->res, "status"), "metadata",
			        json_object_get(in->res, "metadata"), "lease", guest_lease(in),
			        "guest_root", guest_root(in)));
		}
	emu_reply_json(rq, 200, jx_pack("{s:o}", "instances", out));
}

/* What it issued, for tests that prove no token leaked anywhere. */
static void
admin_tokens(struct rq *rq, char **parts, size_t n)
{
	json_t *out = json_array(), *exp;
	const char *tok;

	(void)parts, (void)n;
	json_object_foreach (rq->emu->tokens, tok, exp)
		json_array_append_new(out, json_string(tok));
	emu_reply_json(rq, 200, jx_pack("{s:o}", "tokens", out));
}

static void
admin_stats(struct rq *rq, char **parts, size_t n)
{
	struct emulator *emu = rq->emu;
	size_t insts = 0, ops = 0, guests = 0, pending = 0;

	(void)parts, (void)n;
	for (size_t i = 0; i < emu->nzones; i++) {
		insts += emu->zones[i].ninsts;
		ops += emu->zones[i].nops;
		for (size_t j = 0; j < emu->zones[i].ninsts; j++)
			guests += emu->zones[i].insts[j]->guest != NULL;
	}
	for (struct rq *p = emu->pending; p != NULL; p = p->next)
		pending++;
	emu_reply_json(rq, 200,
	    jx_pack("{s:i, s:i, s:i, s:i, s:i, s:i}", "instances", (int)insts, "operations",
	        (int)ops, "guests", (int)guests, "requests", (int)json_array_size(emu->requests),
	        "tokens", (int)json_object_size(emu->tokens), "pending", (int)pending));
}

/*
 * .../instances/NAME/preempt and .../instances/NAME/guest {"healthy",
 * "activity", "agent": "ok" | "stall" | "other-key" | "reset"}.
 */
static void
admin_instance(struct rq *rq, char **parts, size_t n)
{
	struct inst *inst = admin_inst(rq, parts, n);
	json_t *v = NULL, *healthy;
	char *cause = NULL;
	size_t len;
	int too_large, error;
	const char *body;

	if (inst == NULL)
		return;
	if (strcmp(parts[8], "preempt") == 0) {
		if (inst->status != ST_RUNNING || inst->preempted) {
			emu_error(rq, 400, "invalid", "instance '%s' is not RUNNING", inst->name);
			return;
		}
		compute_preempt(inst);
		emu_reply_json(rq, 200, jx_pack("{s:s}", "instance", inst->name));
		return;
	}
	if (strcmp(parts[8], "poweroff") == 0) {
		compute_poweroff(inst);
		emu_reply_json(rq, 200, jx_pack("{s:s}", "instance", inst->name));
		return;
	}
	if (strcmp(parts[8], "guest") != 0) {
		emu_error(rq, 404, "notFound", "No such admin path.");
		return;
	}
	body = httpd_req_body(rq->req, &len, &too_large);
	if (too_large || jx_parse(body, len, &v, &cause) != 0 || !json_is_object(v)) {
		emu_error(rq, 400, "invalid", "expected a JSON object: %s",
		    cause ? cause : "not an object");
		free(cause);
		json_decref(v);
		return;
	}
	if (json_is_string(json_object_get(v, "agent")) &&
	    (error = guest_set_agent(inst, jx_str(v, "agent"))) != 0) {
		emu_error(rq, 400, "invalid",
		    error == -ENOTSUP
		        ? "this guest runs the real agent: its faults are its own"
		        : "agent must be \"ok\", \"stall\", \"other-key\" or \"reset\"");
		json_decref(v);
		return;
	}
	healthy = json_object_get(v, "healthy");
	guest_set(inst, healthy == NULL ? -1 : json_is_true(healthy),
	    json_is_true(json_object_get(v, "activity")));
	json_decref(v);
	emu_reply_json(rq, 200, jx_pack("{s:s}", "instance", inst->name));
}

/*
 * /emulator/v1/WHAT[/SUB]: sub NULL takes any path under WHAT, "" exactly
 * /emulator/v1/WHAT, another word that one more segment.
 */
static const struct admin {
	const char *method, *what, *sub;
	void (*handler)(struct rq *, char **parts, size_t n);
} admins[] = {
    {"GET", "requests", NULL, admin_requests},
    {"POST", "reset", NULL, admin_reset},
    {"GET", "faults", NULL, admin_faults_get},
    {"PUT", "faults", NULL, admin_faults_put},
    {"POST", "tokens", "expire", admin_tokens_expire},
    {"GET", "instances", "", admin_instances},
    {"GET", "tokens", "", admin_tokens},
    {"GET", "stats", NULL, admin_stats},
    {"POST", "projects", NULL, admin_instance},
};

void
emu_admin_route(struct rq *rq, char **parts, size_t n)
{
	const char *method = httpd_req_method(rq->req);
	const char *what = n > 2 ? parts[2] : "";

	rq->log = false;
	for (size_t i = 0; i < nitems(admins); i++) {
		const struct admin *r = &admins[i];

		if (strcmp(r->what, what) != 0 || strcmp(r->method, method) != 0)
			continue;
		if (r->sub != NULL &&
		    (*r->sub == '\0' ? n != 3 : n != 4 || strcmp(parts[3], r->sub) != 0))
			continue;
		r->handler(rq, parts, n);
		return;
	}
	emu_error(rq, 404, "notFound", "No such admin path.");
}
