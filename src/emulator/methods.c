/*
 * The methods on one instance and one operation: get, delete, setLabels,
 * setMetadata and setTags (each guarded by its fingerprint: a stale one is
 * 412 conditionNotMet), stop, start, suspend, resume, reset,
 * getSerialPortOutput and getGuestAttributes; operations' get, delete and
 * wait. What a method does
 * to the instance's life is compute.c's; this file checks the call and
 * answers it as Google does.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

static struct inst *
find_inst(struct call *c)
{
	struct inst *inst = emu_find_inst(c->rq->emu, c->zone->name, c->name);

	if (inst == NULL)
		compute_not_found(c->rq, "instances", c->zone->name, c->name);
	return inst;
}

void
inst_get(struct call *c)
{
	struct inst *inst = find_inst(c);

	if (inst != NULL)
		emu_reply(c->rq, 200, "application/json; charset=UTF-8", inst_text(inst),
		    strlen(inst_text(inst)));
}

void
inst_guest_attributes(struct call *c)
{
	struct inst *inst = find_inst(c);

	if (inst != NULL)
		metadata_guest_attributes(c->rq, inst);
}

void
inst_delete(struct call *c)
{
	struct rq *rq = c->rq;
	const char *request_id;
	struct op *op, *overtaken;
	struct inst *inst;

	if (!compute_request_id(rq, &request_id) || (inst = find_inst(c)) == NULL)
		return;
	if (inst->deleting && inst->op != NULL) {
		emu_reply_json(rq, 200, compute_op_json(inst->op));
		return;
	}
	/* A pending insert (or start) has done its part once a delete overtakes it. */
	if ((overtaken = inst->op) != NULL)
		compute_op_done(overtaken, NULL, 0, NULL);
	op = compute_op_new(c->zone, "delete", "instances", inst->name, jx_str(inst->res, "id"),
	    request_id, rq_user(rq));
	/* ...at the very moment the delete came: it never ran (the clock may run fast). */
	if (overtaken != NULL)
		json_object_set(overtaken->res, "endTime", json_object_get(op->res, "insertTime"));
	compute_op_start(op);
	inst->op = op;
	inst->fail_code = NULL;
	compute_stop(inst, true);
	emu_reply_json(rq, 200, compute_op_json(op));
}

/* --- fingerprinted sets --- */

/*
 * Fingerprints are bytes in base64, which clients may send in its URL-safe
 * alphabet (gcloud does): the same bytes either way.
 */
static bool
same_fingerprint(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++) {
		char x = *a == '-' ? '+' : *a == '_' ? '/' : *a;
		char y = *b == '-' ? '+' : *b == '_' ? '/' : *b;

		if (x != y)
			return false;
	}
	return *a == *b;
}

/* A set* call's fingerprint (field) must be the one the instance's set (what) has now. */
static bool
fingerprint_ok(
    struct rq *rq, const char *have, const char *given, const char *field, const char *what)
{
	if (given != NULL && have != NULL && same_fingerprint(have, given))
		return true;
	if (given == NULL)
		emu_error(rq, 400, "required", "Required field '%s' not specified", field);
	else
		emu_error(rq, 412, "conditionNotMet",
		    "Supplied fingerprint does not match current %s fingerprint.", what);
	return false;
}

/* The call done at once: its operation answered DONE, as Google's quick ones end. */
static void
done_now(struct call *c, struct inst *inst, const char *type, const char *request_id)
{
	struct op *op = compute_op_new(c->zone, type, "instances", inst->name,
	    jx_str(inst->res, "id"), request_id, rq_user(c->rq));

	compute_op_done(op, NULL, 0, NULL);
	emu_reply_json(c->rq, 200, compute_op_json(op));
}

void
inst_set_labels(struct call *c)
{
	struct inst *inst = find_inst(c);
	json_t *body, *labels;

	if (inst == NULL || (body = compute_read_body(c->rq, "InstancesSetLabelsRequest")) == NULL)
		return;
	labels = json_object_get(body, "labels");
	if (fingerprint_ok(c->rq, jx_str(inst->res, "labelFingerprint"),
	        jx_str(body, "labelFingerprint"), "labelFingerprint", "label") &&
	    compute_check_labels_metadata(c->rq, body) == 0) {
		if (json_object_size(labels) > 0)
			json_object_set(inst->res, "labels", labels);
		else
			json_object_del(inst->res, "labels");
		compute_fingerprint(inst->res, "labelFingerprint", json_object_size(labels) == 0);
		inst_changed(inst);
		done_now(c, inst, "setLabels", NULL);
	}
	json_decref(body);
}

void
inst_set_metadata(struct call *c)
{
	struct inst *inst = find_inst(c);
	json_t *body, *md, *wrap;

	if (inst == NULL || (body = compute_read_body(c->rq, "Metadata")) == NULL)
		return;
	md = json_object_get(inst->res, "metadata");
	wrap = jx_pack("{s:O}", "metadata", body);
	if (fingerprint_ok(c->rq, jx_str(md, "fingerprint"), jx_str(body, "fingerprint"),
	        "fingerprint", "metadata") &&
	    compute_check_labels_metadata(c->rq, wrap) == 0) {
		json_t *items = json_object_get(body, "items");

		if (json_array_size(items) > 0)
			json_object_set(md, "items", items);
		else
			json_object_del(md, "items");
		compute_fingerprint(md, "fingerprint", json_array_size(items) == 0);
		inst_changed(inst);
		metadata_changed(c->rq->emu, inst);
		done_now(c, inst, "setMetadata", NULL);
	}
	json_decref(wrap);
	json_decref(body);
}

void
inst_set_tags(struct call *c)
{
	struct inst *inst = find_inst(c);
	json_t *body, *tags, *items;
	size_t i;
	json_t *t;

	if (inst == NULL || (body = compute_read_body(c->rq, "Tags")) == NULL)
		return;
	tags = json_object_get(inst->res, "tags");
	items = json_object_get(body, "items");
	json_array_foreach (items, i, t)
		if (!compute_name_ok(c->rq, "resource.tags.items", json_string_value(t)))
			goto out;
	if (fingerprint_ok(c->rq, jx_str(tags, "fingerprint"), jx_str(body, "fingerprint"),
	        "fingerprint", "tags")) {
		if (json_array_size(items) > 0)
			json_object_set(tags, "items", items);
		else
			json_object_del(tags, "items");
		compute_fingerprint(tags, "fingerprint", json_array_size(items) == 0);
		inst_changed(inst);
		done_now(c, inst, "setTags", NULL);
	}
out:
	json_decref(body);
}

/* --- power --- */

/* Google refuses what a state cannot do with 400 resourceNotReady or unsupportedOperation. */
static bool
state_allows(struct call *c, struct inst *inst, bool ok, const char *verb)
{
	if (ok)
		return true;
	emu_error(c->rq, 400, "resourceNotReady",
	    "The resource 'projects/%s/zones/%s/instances/%s' is not ready (it is %s: it "
	    "cannot %s now)",
	    c->rq->emu->project, c->zone->name, inst->name, jx_str(inst->res, "status"), verb);
	return false;
}

/* The operation a power call makes and waits on, answered now, done when the state comes. */
static void
power_op(struct call *c, struct inst *inst, const char *type, const char *request_id)
{
	struct op *op = compute_op_new(c->zone, type, "instances", inst->name,
	    jx_str(inst->res, "id"), request_id, rq_user(c->rq));

	compute_op_start(op);
	inst->op = op;
	emu_reply_json(c->rq, 200, compute_op_json(op));
}

/* A power call: its requestId checked (a repeat answers its first operation); NULL when answered.
 */
static struct inst *
power_call(struct call *c, const char **request_id)
{
	return compute_request_id(c->rq, request_id) ? find_inst(c) : NULL;
}

void
inst_stop(struct call *c)
{
	const char *request_id;
	struct inst *inst = power_call(c, &request_id);

	if (inst == NULL)
		return;
	if (inst->status == ST_TERMINATED && inst->op == NULL) {
		done_now(c, inst, "stop", request_id); /* already stopped: nothing to do */
		return;
	}
	/* A suspended instance may be stopped too: it loses its saved memory. */
	if (state_allows(c, inst,
	        (inst->status == ST_RUNNING || inst->status == ST_SUSPENDED) && inst->op == NULL,
	        "stop")) {
		power_op(c, inst, "stop", request_id);
		compute_stop(inst, false);
	}
}

void
inst_start(struct call *c)
{
	const char *request_id;
	struct inst *inst = power_call(c, &request_id);

	if (inst == NULL)
		return;
	if (inst->status == ST_RUNNING && inst->op == NULL) {
		done_now(c, inst, "start", request_id);
		return;
	}
	if (state_allows(c, inst, inst->status == ST_TERMINATED && inst->op == NULL, "start")) {
		power_op(c, inst, "start", request_id);
		compute_start(inst);
	}
}

void
inst_reset(struct call *c)
{
	const char *request_id;
	struct inst *inst = power_call(c, &request_id);

	if (inst == NULL)
		return;
	if (state_allows(c, inst, inst->status == ST_RUNNING && inst->op == NULL, "reset")) {
		compute_reset(inst);
		done_now(c, inst, "reset", request_id);
	}
}

/*
 * Suspending, as Compute Engine's "Suspend or resume" documents it: only a
 * RUNNING instance, with no GPUs and at most 208 GB of memory; Spot and
 * standard alike (a Spot VM may still be preempted while it suspends).
 */
void
inst_suspend(struct call *c)
{
	const char *request_id;
	struct inst *inst = power_call(c, &request_id);
	const char *mt;
	int vcpus, mb;
	bool shared;

	if (inst == NULL)
		return;
	mt = strrchr(jx_str(inst->res, "machineType"), '/') + 1;
	if (json_array_size(json_object_get(inst->res, "guestAccelerators")) > 0 ||
	    (machine_lookup(mt, &vcpus, &mb, &shared) == 0 && mb > 208 * 1024)) {
		emu_error(c->rq, 400, "unsupportedOperation",
		    "Suspending instance '%s' is not supported: instances with GPUs or more than "
		    "208 GB of memory cannot be suspended.",
		    inst->name);
		return;
	}
	if (inst->status == ST_SUSPENDED && inst->op == NULL) {
		emu_error(c->rq, 400, "unsupportedOperation",
		    "You cannot suspend an already suspended instance.");
		return;
	}
	if (inst->status == ST_TERMINATED) {
		emu_error(c->rq, 400, "unsupportedOperation",
		    "You cannot suspend an instance that is stopped or terminated.");
		return;
	}
	if (state_allows(c, inst, inst->status == ST_RUNNING && inst->op == NULL, "suspend")) {
		power_op(c, inst, "suspend", request_id);
		compute_suspend(inst);
	}
}

void
inst_resume(struct call *c)
{
	const char *request_id;
	struct inst *inst = power_call(c, &request_id);

	if (inst == NULL)
		return;
	if (state_allows(c, inst, inst->status == ST_SUSPENDED && inst->op == NULL, "resume")) {
		power_op(c, inst, "resume", request_id);
		compute_resume(inst);
	}
}

/*
 * getSerialPortOutput: port 1, the console, from byte `start` of all it ever
 * wrote: Google's shape (contents, start, next, selfLink), start moved up to
 * what the console still holds.
 */
void
inst_serial_port(struct call *c)
{
	/* Read before find_inst, which may answer (and free) the request. */
	const char *port = rq_query(c->rq, "port");
	const char *from = rq_query(c->rq, "start");
	struct inst *inst = find_inst(c);
	int64_t start = 0, p = 1;
	size_t base, len;
	char *self, *text;

	if (inst == NULL)
		return;
	if (port != NULL && parse_int64(port, 1, 4, &p) != 0) {
		compute_bad_field(c->rq, "port", port, "Must be from 1 to 4.");
		return;
	}
	if (from != NULL && parse_int64(from, 0, INT64_MAX, &start) != 0) {
		compute_bad_field(c->rq, "start", from, "Must be a number, 0 or more.");
		return;
	}
	text = p == 1 ? serial_text(inst, &base) : (base = 0, xstrdup(""));
	len = strlen(text);
	if (start < (int64_t)base)
		start = (int64_t)base;
	if (start > (int64_t)(base + len))
		start = (int64_t)(base + len);
	self = xasprintf(GCE_LINK "projects/%s/zones/%s/instances/%s", c->rq->emu->project,
	    c->zone->name, inst->name);
	emu_reply_json(c->rq, 200,
	    jx_pack("{s:s, s:s, s:o, s:o, s:s}", "kind", "compute#serialPortOutput", "contents",
	        text + (start - (int64_t)base), "start", jx_int64_string(start), "next",
	        jx_int64_string((int64_t)(base + len)), "selfLink", self));
	free(self);
	free(text);
}

/* --- operations --- */

static struct op *
find_op(struct call *c)
{
	struct emulator *emu = c->rq->emu;
	struct op *op =
	    compute_find_op(emu, c->zone != NULL ? c->zone : &emu->global, c->name, NULL);

	if (op == NULL)
		compute_not_found(
		    c->rq, "operations", c->zone != NULL ? c->zone->name : NULL, c->name);
	return op;
}

void
op_get(struct call *c)
{
	struct op *op = find_op(c);

	if (op != NULL)
		emu_reply_json(c->rq, 200, compute_op_json(op));
}

void
op_delete(struct call *c)
{
	struct op *op = find_op(c);

	if (op != NULL) {
		compute_op_remove(op);
		emu_reply(c->rq, 204, NULL, "", 0);
	}
}

void
op_wait(struct call *c)
{
	struct op *op = find_op(c);

	if (op == NULL)
		return;
	if (op->done) {
		emu_reply_json(c->rq, 200, compute_op_json(op));
		return;
	}
	c->rq->op = op;
	rq_defer(c->rq, RQ_OP);
	rq_defer_timer(c->rq, c->rq->emu->opts.wait_ms);
}
