/*
 * The Compute API: instances, zone operations, machine types, zones and
 * regions under /compute/v1/projects/P/..., with Google's validation, errors,
 * idempotent requestIds, filters, pagination, and the instance lifecycle
 *
 *	PROVISIONING -> STAGING -> RUNNING -> STOPPING -> (gone | TERMINATED)
 *
 * on one timer per instance, in the emulator's (possibly scaled) time.
 * instances.insert, its checks and the instance it builds, are insert.c's.
 */
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emulator/filter.h"
#include "emulator/internal.h"
#include "util/b64.h"
#include "util/jschema.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

extern const char gce_schema_json[];
extern const size_t gce_schema_json_len;

#define NAME_RE           "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
#define LIST_MAX          500
#define DEFAULT_CPU_QUOTA 24

static const char *status_names[] = {
    "PROVISIONING", "STAGING", "RUNNING", "STOPPING", "TERMINATED"};

/* --- time --- */

/* Day of the month of the n-th Sunday of a month. */
static int
nth_sunday(int year, int mon, int n)
{
	struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = 1, .tm_hour = 12};
	time_t t = timegm(&tm);

	gmtime_r(&t, &tm);
	return 1 + (7 - tm.tm_wday) % 7 + 7 * (n - 1);
}

/*
 * Google writes times in US Pacific time: -08:00, or -07:00 from the second
 * Sunday of March, 2:00 PST, to the first Sunday of November, 2:00 PDT.
 */
int
pacific_offset_min(int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm, start = {0}, end = {0};
	int year;

	gmtime_r(&t, &tm);
	year = tm.tm_year + 1900;
	start.tm_year = end.tm_year = year - 1900;
	start.tm_mon = 2;
	start.tm_mday = nth_sunday(year, 3, 2);
	start.tm_hour = 10; /* 2:00 PST */
	end.tm_mon = 10;
	end.tm_mday = nth_sunday(year, 11, 1);
	end.tm_hour = 9; /* 2:00 PDT */
	return t >= timegm(&start) && t < timegm(&end) ? -420 : -480;
}

json_t *
compute_now_json(struct emulator *emu)
{
	char s[RFC3339_LEN];

	emu_time(emu, emu_now_ms(emu), s);
	return json_string(s);
}

/* --- schema --- */

json_t *
compute_schemas(void)
{
	static json_t *doc;

	if (doc == NULL) {
		char *cause = NULL;

		if (jx_parse(gce_schema_json, gce_schema_json_len, &doc, &cause) != 0)
			fatalx("the built-in Compute schema does not parse: %s", cause);
	}
	return json_object_get(doc, "schemas");
}

/* --- errors --- */

void
compute_bad_field(struct rq *rq, const char *field, const char *value, const char *fmt, ...)
{
	va_list ap;
	char *why;

	va_start(ap, fmt);
	why = xvasprintf(fmt, ap);
	va_end(ap);
	emu_error(rq, 400, "invalid", "Invalid value for field '%s': '%s'. %s", field, value, why);
	free(why);
}

static void
not_found(struct rq *rq, const char *what, const char *zone, const char *name)
{
	emu_error(rq, 404, "notFound", "The resource 'projects/%s/zones/%s/%s/%s' was not found",
	    rq->emu->project, zone, what, name);
}

bool
compute_valid_name(const char *s)
{
	static regex_t re;
	static bool compiled;

	if (!compiled) {
		if (regcomp(&re, NAME_RE, REG_EXTENDED | REG_NOSUB) != 0)
			fatalx("bad name pattern");
		compiled = true;
	}
	return regexec(&re, s, 0, NULL, 0) == 0;
}

/* --- zones, instances, operations --- */

size_t
compute_inst_index(const struct zone *z, const char *name, bool *found)
{
	size_t lo = 0, hi = z->ninsts;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(z->insts[mid]->name, name);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

struct inst *
emu_find_inst(struct emulator *emu, const char *zone, const char *name)
{
	struct zone *z = emu_zone(emu, zone);
	bool found;
	size_t i;

	if (z == NULL)
		return NULL;
	i = compute_inst_index(z, name, &found);
	return found ? z->insts[i] : NULL;
}

struct inst *
emu_inst_by_ip(struct emulator *emu, const char *ip)
{
	for (size_t i = 0; i < emu->nzones; i++)
		for (size_t j = 0; j < emu->zones[i].ninsts; j++)
			if (strcmp(emu->zones[i].insts[j]->nat_ip, ip) == 0)
				return emu->zones[i].insts[j];
	return NULL;
}

char *
compute_zone_link(struct emulator *emu, const struct zone *z)
{
	return xasprintf(GCE_LINK "projects/%s/zones/%s", emu->project, z->name);
}

struct op *
compute_op_new(struct zone *z, const char *type, const char *target_name, const char *target_id,
    const char *request_id, const char *user)
{
	struct emulator *emu = z->emu;
	struct op *op = xcalloc(1, sizeof *op);
	char *zl = compute_zone_link(emu, z), *tl, *sl, id[24];
	uint64_t nid = emu_new_id(emu);
	unsigned char r[8];
	json_t *now = compute_now_json(emu);

	random_bytes(r, sizeof r);
	op->zone = z;
	op->name = xasprintf("operation-%" PRId64 "-%02x%02x%02x%02x%02x%02x-%02x%02x-%08" PRIx64,
	    emu_now_ms(emu), r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], nid & 0xffffffff);
	op->request_id = request_id != NULL ? xstrdup(request_id) : NULL;
	tl = xasprintf("%s/instances/%s", zl, target_name);
	sl = xasprintf("%s/operations/%s", zl, op->name);
	snprintf(id, sizeof id, "%" PRIu64, nid);
	op->res = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:O, s:s}", "kind",
	    "compute#operation", "id", id, "name", op->name, "zone", zl, "operationType", type,
	    "targetLink", tl, "targetId", target_id, "status", "PENDING", "progress", 0,
	    "insertTime", now, "selfLink", sl);
	json_object_set_new(op->res, "user", json_string(user));
	if (request_id != NULL)
		json_object_set_new(op->res, "clientOperationId", json_string(request_id));
	json_decref(now);
	free(zl);
	free(tl);
	free(sl);
	if (z->nops == z->capops) {
		z->capops = z->capops ? z->capops * 2 : 64;
		z->ops = xreallocarray(z->ops, z->capops, sizeof *z->ops);
	}
	z->ops[z->nops++] = op;
	return op;
}

void
compute_op_start(struct op *op)
{
	json_object_set_new(op->res, "status", json_string("RUNNING"));
	json_object_set_new(op->res, "startTime", compute_now_json(op->zone->emu));
}

/* Answer everybody waiting on this operation. */
static void
op_wake(struct op *op)
{
	struct emulator *emu = op->zone->emu;
	struct rq *rq = emu->pending, *next;

	for (; rq != NULL; rq = next) {
		next = rq->next;
		if (rq->wait == RQ_OP && rq->op == op) {
			rq->wait = RQ_NOW;
			emu_reply_json(rq, 200, compute_op_json(op));
		}
	}
}

static void
op_done(struct op *op, json_t *error, int http_status, const char *http_message)
{
	if (op == NULL || op->done)
		return;
	op->done = true;
	if (json_object_get(op->res, "startTime") == NULL)
		compute_op_start(op);
	json_object_set_new(op->res, "status", json_string("DONE"));
	json_object_set_new(op->res, "progress", json_integer(100));
	json_object_set_new(op->res, "endTime", compute_now_json(op->zone->emu));
	if (error != NULL) {
		json_object_set_new(op->res, "error", error);
		json_object_set_new(op->res, "httpErrorStatusCode", json_integer(http_status));
		json_object_set_new(op->res, "httpErrorMessage", json_string(http_message));
	}
	op_wake(op);
}

json_t *
compute_op_json(struct op *op)
{
	return json_incref(op->res);
}

struct op *
compute_find_op(struct emulator *emu, const char *zone, const char *name, const char *request_id)
{
	for (size_t i = 0; i < emu->nzones; i++) {
		struct zone *z = &emu->zones[i];

		if (zone != NULL && strcmp(z->name, zone) != 0)
			continue;
		for (size_t j = z->nops; j-- > 0;) {
			struct op *op = z->ops[j];

			if (name != NULL && strcmp(op->name, name) == 0)
				return op;
			if (request_id != NULL && op->request_id != NULL &&
			    strcmp(op->request_id, request_id) == 0)
				return op;
		}
	}
	return NULL;
}

static void
op_free(struct op *op)
{
	op->done = true;
	op_wake(op);
	json_decref(op->res);
	free(op->name);
	free(op->request_id);
	free(op);
}

/* --- instance lifecycle --- */

void
inst_changed(struct inst *inst)
{
	free(inst->text);
	inst->text = NULL;
}

static const char *
inst_text(struct inst *inst)
{
	if (inst->text == NULL)
		inst->text = jx_dumps(inst->res);
	return inst->text;
}

static void
inst_set_status(struct inst *inst, enum inst_status st)
{
	inst->status = st;
	json_object_set_new(inst->res, "status", json_string(status_names[st]));
	inst_changed(inst);
}

static void
inst_release(uv_handle_t *h)
{
	struct inst *inst = h->data;

	json_decref(inst->res);
	json_decref(inst->guest_attrs);
	free(inst->text);
	free(inst->name);
	free(inst);
}

/* Remove from its zone and free once the loop lets go of its timer. */
static void
inst_remove(struct inst *inst)
{
	struct zone *z = inst->zone;
	bool found;
	size_t i = compute_inst_index(z, inst->name, &found);

	if (found) {
		memmove(&z->insts[i], &z->insts[i + 1], (z->ninsts - i - 1) * sizeof *z->insts);
		z->ninsts--;
	}
	guest_stop(inst);
	inst->zone = NULL;
	metadata_changed(inst->emu, inst);
	uv_timer_stop(&inst->timer);
	uv_close((uv_handle_t *)&inst->timer, inst_release);
}

static void on_inst_timer(uv_timer_t *);

void
inst_timer_start(struct inst *inst, enum inst_event ev, int64_t virtual_ms)
{
	inst->next = ev;
	uv_timer_start(&inst->timer, on_inst_timer,
	    clock_timer_ms(inst->emu->clock, virtual_ms < 0 ? 0 : virtual_ms), 0);
}

static void
begin_stop(struct inst *inst, bool remove)
{
	inst->deleting |= remove;
	if (inst->status == ST_STOPPING)
		return;
	inst_set_status(inst, ST_STOPPING);
	guest_stop(inst);
	inst_timer_start(inst, EV_STOPPED, inst->emu->opts.stop_ms);
}

/* After RUNNING: whichever comes first of maxRunDuration, terminationTime, preemption. */
static void
schedule_running(struct inst *inst)
{
	int64_t now = emu_now_ms(inst->emu), at = INT64_MAX;
	enum inst_event ev = EV_NONE;

	if (inst->max_run_ms > 0 && inst->started_ms + inst->max_run_ms < at) {
		at = inst->started_ms + inst->max_run_ms;
		ev = EV_EXPIRE;
	}
	if (inst->stop_at_ms > 0 && inst->stop_at_ms < at) {
		at = inst->stop_at_ms;
		ev = EV_EXPIRE;
	}
	if (inst->preempt_at_ms > 0 && inst->preempt_at_ms < at) {
		at = inst->preempt_at_ms;
		ev = EV_PREEMPT;
	}
	if (ev != EV_NONE)
		inst_timer_start(inst, ev, at - now);
}

static json_t *
stockout_error(struct inst *inst, bool details)
{
	struct emulator *emu = inst->emu;
	char *msg;
	json_t *e;

	if (details)
		msg = xasprintf("The zone 'projects/%s/zones/%s' does not have enough resources "
		                "available to fulfill the request.  '(resource type:compute)'.",
		    emu->project, inst->zone->name);
	else
		msg = xasprintf("The zone 'projects/%s/zones/%s' does not have enough resources "
		                "available to fulfill the request.  Try a different zone, or try "
		                "again later.",
		    emu->project, inst->zone->name);
	e = jx_pack("{s:[{s:s, s:s}]}", "errors", "code",
	    details ? "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS" : "ZONE_RESOURCE_POOL_EXHAUSTED",
	    "message", msg);
	free(msg);
	return e;
}

int64_t
compute_quota_limit(struct emulator *emu)
{
	return emu->faults.quota_cpus >= 0 ? emu->faults.quota_cpus : DEFAULT_CPU_QUOTA * 1000;
}

static json_t *
quota_error(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	double limit = (double)compute_quota_limit(emu);
	char *msg = xasprintf(
	    "Quota 'CPUS' exceeded.  Limit: %.1f in region %s.", limit, inst->zone->region);
	json_t *e = jx_pack("{s:[{s:s, s:s, s:[{s:{s:s, s:s, s:{s:s}, s:f}}]}]}", "errors", "code",
	    "QUOTA_EXCEEDED", "message", msg, "errorDetails", "quotaInfo", "metricName",
	    "compute.googleapis.com/cpus", "limitName", "CPUS-per-project-region", "dimensions",
	    "region", inst->zone->region, "limit", limit);

	free(msg);
	return e;
}

static void
set_nat_ip(struct inst *inst)
{
	json_t *nics = json_object_get(inst->res, "networkInterfaces"), *ac;

	ac = jx_get(nics, "0.accessConfigs.0");
	if (json_is_object(ac))
		json_object_set_new(ac, "natIP", json_string(inst->nat_ip));
	inst_changed(inst);
}

static void
on_inst_timer(uv_timer_t *t)
{
	struct inst *inst = t->data;
	struct emulator *emu = inst->emu;
	enum inst_event ev = inst->next;

	inst->next = EV_NONE;
	switch (ev) {
	case EV_STAGE:
		if (inst->fail_code != NULL) {
			bool quota = strcmp(inst->fail_code, "QUOTA_EXCEEDED") == 0;

			if (quota)
				op_done(inst->op, quota_error(inst), 403, "FORBIDDEN");
			else
				op_done(inst->op,
				    stockout_error(
				        inst, str_suffix(inst->fail_code, "_WITH_DETAILS")),
				    503, "SERVICE UNAVAILABLE");
			inst->op = NULL;
			inst_remove(inst);
			return;
		}
		inst_set_status(inst, ST_STAGING);
		if (jx_get(inst->res, "networkInterfaces.0.accessConfigs.0") != NULL &&
		    guest_reserve(inst) == 0)
			set_nat_ip(inst);
		inst_timer_start(inst, EV_RUN, emu->opts.boot_ms - emu->opts.boot_ms / 2);
		break;
	case EV_RUN:
		inst_set_status(inst, ST_RUNNING);
		inst->started_ms = emu_now_ms(emu);
		json_object_set_new(inst->res, "lastStartTimestamp", compute_now_json(emu));
		inst_changed(inst);
		op_done(inst->op, NULL, 0, NULL);
		inst->op = NULL;
		if (inst->spot && emu->faults.preempt > 0 && emu_rand(emu) < emu->faults.preempt)
			inst->preempt_at_ms = inst->started_ms +
			    (int64_t)(emu_rand(emu) * (double)emu->faults.preempt_within_s * 1000);
		guest_start(inst);
		schedule_running(inst);
		break;
	case EV_EXPIRE:
		log_debug("emulator: %s reached its maxRunDuration or terminationTime", inst->name);
		begin_stop(inst, inst->delete_on_stop);
		break;
	case EV_PREEMPT:
		compute_preempt(inst);
		break;
	case EV_PREEMPT_STOP:
		begin_stop(inst, inst->delete_on_stop);
		break;
	case EV_STOPPED:
		if (inst->deleting) {
			op_done(inst->op, NULL, 0, NULL);
			inst->op = NULL;
			inst_remove(inst);
			return;
		}
		inst_set_status(inst, ST_TERMINATED);
		json_object_set_new(inst->res, "lastStopTimestamp", compute_now_json(emu));
		inst_changed(inst);
		op_done(inst->op, NULL, 0, NULL);
		inst->op = NULL;
		break;
	case EV_NONE:
		break;
	}
}

void
compute_preempt(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	json_t *id = json_object_get(inst->res, "id");
	struct op *op;

	inst->preempted = true;
	inst->preempt_at_ms = 0;
	op = compute_op_new(inst->zone, "compute.instances.preempted", inst->name,
	    json_string_value(id), NULL, "system");
	json_object_set_new(op->res, "statusMessage", json_string("Instance was preempted."));
	op_done(op, NULL, 0, NULL);
	metadata_changed(emu, inst);
	log_debug("emulator: preempting %s", inst->name);
	inst_timer_start(inst, EV_PREEMPT_STOP, emu->opts.preempt_notice_ms);
}

void
compute_poweroff(struct inst *inst)
{
	if (inst->status == ST_RUNNING)
		begin_stop(inst, false);
}

void
compute_free_zone(struct zone *z)
{
	while (z->ninsts > 0)
		inst_remove(z->insts[z->ninsts - 1]);
	for (size_t i = 0; i < z->nops; i++)
		op_free(z->ops[i]);
	free(z->insts);
	free(z->ops);
	z->insts = NULL;
	z->ops = NULL;
	z->ninsts = z->capinsts = z->nops = z->capops = 0;
}

/* --- instances.delete, get, list --- */

static void
inst_delete(struct rq *rq, struct zone *z, const char *name)
{
	struct emulator *emu = rq->emu;
	struct inst *inst = emu_find_inst(emu, z->name, name);
	const char *request_id;
	struct op *op, *overtaken;

	if (compute_check_request_id(rq, &request_id, &op) != 0)
		return;
	if (op != NULL) {
		emu_reply_json(rq, 200, compute_op_json(op));
		return;
	}
	if (inst == NULL) {
		not_found(rq, "instances", z->name, name);
		return;
	}
	if (inst->deleting && inst->op != NULL) {
		emu_reply_json(rq, 200, compute_op_json(inst->op));
		return;
	}
	/* A pending insert has done its part once a delete overtakes it. */
	if ((overtaken = inst->op) != NULL)
		op_done(overtaken, NULL, 0, NULL);
	op = compute_op_new(
	    z, "delete", inst->name, jx_str(inst->res, "id"), request_id, emu->client_email);
	/* ...at the very moment the delete came: it never ran (the clock may run fast). */
	if (overtaken != NULL)
		json_object_set(overtaken->res, "endTime", json_object_get(op->res, "insertTime"));
	compute_op_start(op);
	inst->op = op;
	inst->fail_code = NULL;
	begin_stop(inst, true);
	emu_reply_json(rq, 200, compute_op_json(op));
}

static char *
page_token(const char *cursor)
{
	return b64url_encode(cursor, strlen(cursor));
}

static int
parse_page(struct rq *rq, size_t *max, char **cursor, struct filter **filter)
{
	const char *m = httpd_req_query(rq->req, "maxResults");
	const char *tok = httpd_req_query(rq->req, "pageToken");
	const char *f = httpd_req_query(rq->req, "filter");
	const char *order = httpd_req_query(rq->req, "orderBy");
	char *cause = NULL;
	int64_t n = LIST_MAX;

	*cursor = NULL;
	*filter = NULL;
	if (m != NULL && parse_int64(m, INT64_MIN, INT64_MAX, &n) != 0) {
		compute_bad_field(rq, "maxResults", m, "Must be an integer.");
		return -EINVAL;
	}
	if (n < 0 || n > LIST_MAX) {
		compute_bad_field(rq, "maxResults", m,
		    n < 0 ? "Must be greater than or equal to 0"
		          : "Must be less than or equal to 500");
		return -EINVAL;
	}
	*max = n == 0 ? LIST_MAX : (size_t)n;
	if (order != NULL && *order != '\0' && strcmp(order, "name") != 0) {
		compute_bad_field(rq, "orderBy", order, "Only ordering by name is supported.");
		return -EINVAL;
	}
	if (tok != NULL && *tok != '\0') {
		unsigned char *raw;
		size_t len;

		if (b64url_decode(tok, strlen(tok), &raw, &len) != 0 || len == 0 ||
		    memchr(raw, '\0', len) != NULL) {
			compute_bad_field(rq, "pageToken", tok, "The page token is invalid.");
			return -EINVAL;
		}
		*cursor = (char *)raw;
	}
	if (f != NULL && filter_parse(f, filter, &cause) != 0) {
		compute_bad_field(rq, "filter", f, "Invalid list filter expression (%s).", cause);
		free(cause);
		free(*cursor);
		*cursor = NULL;
		return -EINVAL;
	}
	return 0;
}

static json_t *
list_json(struct rq *rq, struct zone *z, const char *kind, const char *what, json_t *items,
    const char *next)
{
	char *id = xasprintf("projects/%s/zones/%s/%s", rq->emu->project, z->name, what);
	char *self = xasprintf(GCE_LINK "%s", id);
	json_t *v = jx_pack("{s:s, s:s, s:s}", "kind", kind, "id", id, "selfLink", self);

	if (json_array_size(items) > 0)
		json_object_set(v, "items", items);
	if (next != NULL)
		json_object_set_new(v, "nextPageToken", json_string(next));
	json_decref(items);
	free(id);
	free(self);
	return v;
}

static void
inst_list(struct rq *rq, struct zone *z)
{
	struct emulator *emu = rq->emu;
	struct filter *filter;
	struct buf out = BUF_INIT(SIZE_MAX);
	char *cursor, *next = NULL;
	const char *last = NULL;
	size_t max, i = 0, n = 0;
	bool found, more = false;

	if (parse_page(rq, &max, &cursor, &filter) != 0)
		return;
	if (cursor != NULL) {
		i = compute_inst_index(z, cursor, &found);
		i += found;
	}
	/* Each instance's JSON is kept serialised: a page is mostly memcpy. */
	buf_printf(&out,
	    "{\"kind\":\"compute#instanceList\",\"id\":\"projects/%s/zones/%s/instances\","
	    "\"selfLink\":\"" GCE_LINK "projects/%s/zones/%s/instances\"",
	    emu->project, z->name, emu->project, z->name);
	for (; i < z->ninsts; i++) {
		if (!filter_match(filter, z->insts[i]->res))
			continue;
		if (n == max) {
			more = true;
			break;
		}
		buf_addstr(&out, n++ == 0 ? ",\"items\":[" : ",");
		buf_addstr(&out, inst_text(z->insts[i]));
		last = z->insts[i]->name;
	}
	if (n > 0)
		buf_addch(&out, ']');
	/* The cursor is the last name sent: a page never repeats or skips one. */
	if (more) {
		next = page_token(last);
		buf_printf(&out, ",\"nextPageToken\":\"%s\"", next);
	}
	buf_addch(&out, '}');
	emu_reply(rq, 200, "application/json; charset=UTF-8", out.data, out.len);
	buf_release(&out);
	free(next);
	free(cursor);
	filter_free(filter);
}

/* --- operations --- */

static void
op_list(struct rq *rq, struct zone *z)
{
	struct filter *filter;
	char *cursor, *next = NULL;
	size_t max, i = 0;
	int64_t from;
	json_t *items;

	if (parse_page(rq, &max, &cursor, &filter) != 0)
		return;
	if (cursor != NULL && parse_int64(cursor, 0, INT64_MAX, &from) == 0)
		i = (size_t)from;
	items = json_array();
	for (; i < z->nops; i++) {
		if (!filter_match(filter, z->ops[i]->res))
			continue;
		if (json_array_size(items) == max) {
			char pos[24];

			snprintf(pos, sizeof pos, "%zu", i);
			next = page_token(pos);
			break;
		}
		json_array_append(items, z->ops[i]->res);
	}
	emu_reply_json(
	    rq, 200, list_json(rq, z, "compute#operationList", "operations", items, next));
	free(next);
	free(cursor);
	filter_free(filter);
}

static void
op_wait(struct rq *rq, struct op *op)
{
	if (op->done) {
		emu_reply_json(rq, 200, compute_op_json(op));
		return;
	}
	rq->op = op;
	rq_defer(rq, RQ_OP);
	rq_defer_timer(rq, rq->emu->opts.wait_ms);
}

static void
op_delete(struct rq *rq, struct zone *z, struct op *op)
{
	size_t i;

	for (i = 0; i < z->nops && z->ops[i] != op; i++)
		;
	memmove(&z->ops[i], &z->ops[i + 1], (z->nops - i - 1) * sizeof *z->ops);
	z->nops--;
	op_free(op);
	emu_reply(rq, 204, NULL, "", 0);
}

/* --- zones and regions --- */

static json_t *
zone_json(struct emulator *emu, struct zone *z)
{
	char *self = compute_zone_link(emu, z);
	char *region = xasprintf(GCE_LINK "projects/%s/regions/%s", emu->project, z->region);
	char id[24];
	unsigned h = 2166136261u;
	json_t *v;

	for (const char *p = z->name; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	snprintf(id, sizeof id, "%u", 2000 + h % 1000);
	v = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[s,s,s], s:b}", "kind",
	    "compute#zone", "id", id, "creationTimestamp", "1969-12-31T16:00:00.000-08:00", "name",
	    z->name, "description", z->name, "status", "UP", "region", region, "selfLink", self,
	    "availableCpuPlatforms", "Intel Cascade Lake", "Intel Broadwell", "AMD Rome",
	    "supportsPzs", false);
	free(self);
	free(region);
	return v;
}

static void
region_get(struct rq *rq, const char *name)
{
	struct emulator *emu = rq->emu;
	json_t *zones = json_array(), *v;
	char *self;

	for (size_t i = 0; i < emu->nzones; i++) {
		if (strcmp(emu->zones[i].region, name) == 0) {
			char *zl = compute_zone_link(emu, &emu->zones[i]);

			json_array_append_new(zones, json_string(zl));
			free(zl);
		}
	}
	if (json_array_size(zones) == 0) {
		json_decref(zones);
		emu_error(rq, 404, "notFound",
		    "The resource 'projects/%s/regions/%s' was not found", emu->project, name);
		return;
	}
	self = xasprintf(GCE_LINK "projects/%s/regions/%s", emu->project, name);
	v = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:[{s:s, s:f, s:f}]}", "kind",
	    "compute#region", "id", "1000", "creationTimestamp", "1969-12-31T16:00:00.000-08:00",
	    "name", name, "status", "UP", "selfLink", self, "zones", zones, "quotas", "metric",
	    "CPUS", "limit", (double)compute_quota_limit(emu), "usage",
	    (double)compute_region_cpus(emu, name));
	free(self);
	emu_reply_json(rq, 200, v);
}

/*
 * The project's firewall rules: SSH from anywhere (as a new project has it),
 * and with --firewall-source a rule opening the guest port to that range for
 * instances tagged spillway-backend (spillway.network_tags by default).
 */
static void
firewall_list(struct rq *rq)
{
	struct emulator *emu = rq->emu;
	json_t *items = json_array();
	char agent[16];

	json_array_append_new(items,
	    jx_pack("{s:s, s:s, s:s, s:[{s:s, s:[s]}], s:[s], s:i, s:b}", "kind",
	        "compute#firewall", "name", "default-allow-ssh", "direction", "INGRESS", "allowed",
	        "IPProtocol", "tcp", "ports", "22", "sourceRanges", "0.0.0.0/0", "priority", 65534,
	        "disabled", 0));
	/* The agent's port only, as docs/offload.md asks: the agent carries the backend's. */
	snprintf(agent, sizeof agent, "%d", emu->opts.agent_port);
	if (emu->opts.firewall_source != NULL) {
		char **list = str_split(or_default(emu->opts.firewall_ports, agent), ',', NULL);
		json_t *ports = json_array();

		for (char **p = list; *p != NULL; p++)
			json_array_append_new(ports, json_string(*p));
		str_list_free(list);
		json_array_append_new(items,
		    jx_pack("{s:s, s:s, s:s, s:[{s:s, s:o}], s:[s], s:[s], s:i, s:b}", "kind",
		        "compute#firewall", "name", "spillway-backend", "direction", "INGRESS",
		        "allowed", "IPProtocol", "tcp", "ports", ports, "sourceRanges",
		        emu->opts.firewall_source, "targetTags", "spillway-backend", "priority",
		        1000, "disabled", 0));
	}
	emu_reply_json(rq, 200,
	    jx_pack("{s:s, s:s, s:o}", "kind", "compute#firewallList", "id", "firewalls", "items",
	        items));
}

/* --- routing --- */

static bool
method_is(struct rq *rq, const char *m)
{
	return strcmp(httpd_req_method(rq->req), m) == 0;
}

void
compute_route(struct rq *rq, char **parts, size_t n)
{
	struct emulator *emu = rq->emu;
	struct zone *z = NULL;
	const char *collection = n > 6 ? parts[6] : "";

	/* compute v1 projects P ... */
	if (n < 4 || strcmp(parts[2], "projects") != 0)
		goto nomethod;
	if (strcmp(parts[3], emu->project) != 0) {
		emu_error(
		    rq, 404, "notFound", "The resource 'projects/%s' was not found", parts[3]);
		return;
	}
	if (n == 6 && strcmp(parts[4], "global") == 0 && strcmp(parts[5], "firewalls") == 0 &&
	    method_is(rq, "GET")) {
		firewall_list(rq);
		return;
	}
	if (n == 6 && strcmp(parts[4], "regions") == 0 && method_is(rq, "GET")) {
		region_get(rq, parts[5]);
		return;
	}
	if (n < 5 || strcmp(parts[4], "zones") != 0)
		goto nomethod;
	if (n == 5 && method_is(rq, "GET")) {
		json_t *items = json_array();

		for (size_t i = 0; i < emu->nzones; i++)
			json_array_append_new(items, zone_json(emu, &emu->zones[i]));
		emu_reply_json(rq, 200,
		    jx_pack("{s:s, s:s, s:o, s:s}", "kind", "compute#zoneList", "id",
		        "projects/zones", "items", items, "selfLink", GCE_LINK "zones"));
		return;
	}
	if (!compute_valid_name(parts[5])) {
		emu_error(rq, 400, "invalidParameter",
		    "Invalid value '%s'. Values must match the "
		    "following regular expression: "
		    "'[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'",
		    parts[5]);
		return;
	}
	if ((z = emu_zone(emu, parts[5])) == NULL) {
		compute_bad_field(rq, "zone", parts[5], "Unknown zone.");
		return;
	}
	if (n == 6 && method_is(rq, "GET")) {
		emu_reply_json(rq, 200, zone_json(emu, z));
	} else if (n == 7 && strcmp(collection, "instances") == 0 && method_is(rq, "GET")) {
		inst_list(rq, z);
	} else if (n == 7 && strcmp(collection, "instances") == 0 && method_is(rq, "POST")) {
		compute_inst_insert(rq, z);
	} else if (n == 8 && strcmp(collection, "instances") == 0 && method_is(rq, "GET")) {
		struct inst *inst = emu_find_inst(emu, z->name, parts[7]);

		if (inst == NULL)
			not_found(rq, "instances", z->name, parts[7]);
		else
			emu_reply(rq, 200, "application/json; charset=UTF-8", inst_text(inst),
			    strlen(inst_text(inst)));
	} else if (n == 9 && strcmp(collection, "instances") == 0 &&
	    strcmp(parts[8], "getGuestAttributes") == 0 && method_is(rq, "GET")) {
		struct inst *inst = emu_find_inst(emu, z->name, parts[7]);

		if (inst == NULL)
			not_found(rq, "instances", z->name, parts[7]);
		else
			metadata_guest_attributes(rq, inst);
	} else if (n == 8 && strcmp(collection, "instances") == 0 && method_is(rq, "DELETE")) {
		inst_delete(rq, z, parts[7]);
	} else if (n == 7 && strcmp(collection, "operations") == 0 && method_is(rq, "GET")) {
		op_list(rq, z);
	} else if (n >= 8 && strcmp(collection, "operations") == 0) {
		struct op *op = compute_find_op(emu, z->name, parts[7], NULL);

		if (op == NULL)
			not_found(rq, "operations", z->name, parts[7]);
		else if (n == 8 && method_is(rq, "GET"))
			emu_reply_json(rq, 200, compute_op_json(op));
		else if (n == 8 && method_is(rq, "DELETE"))
			op_delete(rq, z, op);
		else if (n == 9 && strcmp(parts[8], "wait") == 0 && method_is(rq, "POST"))
			op_wait(rq, op);
		else
			goto nomethod;
	} else if (n == 8 && strcmp(collection, "machineTypes") == 0 && method_is(rq, "GET")) {
		json_t *mt = machine_json(emu, z, parts[7]);

		if (mt == NULL)
			not_found(rq, "machineTypes", z->name, parts[7]);
		else
			emu_reply_json(rq, 200, mt);
	} else {
		goto nomethod;
	}
	return;
nomethod:
	emu_error(rq, 404, "notFound", "The requested URL %s was not found on this server.",
	    httpd_req_path(rq->req));
}
