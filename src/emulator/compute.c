/*
 * The Compute API: instances, zone operations, machine types, zones and
 * regions under /compute/v1/projects/P/..., with Google's validation, errors,
 * idempotent requestIds, filters, pagination, and the instance lifecycle
 *
 *	PROVISIONING -> STAGING -> RUNNING -> STOPPING -> (gone | TERMINATED)
 *
 * on one timer per instance, in the emulator's (possibly scaled) time.
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
#define METADATA_MAX      (512 * 1024)
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

static json_t *
now_json(struct emulator *emu)
{
	char s[RFC3339_LEN];

	emu_time(emu, emu_now_ms(emu), s);
	return json_string(s);
}

/* --- schema --- */

static json_t *
schemas(void)
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

static void bad_field(struct rq *rq, const char *field, const char *value, const char *fmt, ...)
    PRINTFLIKE(4, 5);

static void
bad_field(struct rq *rq, const char *field, const char *value, const char *fmt, ...)
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

static bool
valid_name(const char *s)
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

static size_t
inst_index(const struct zone *z, const char *name, bool *found)
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
	i = inst_index(z, name, &found);
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

static char *
zone_link(struct emulator *emu, const struct zone *z)
{
	return xasprintf(GCE_LINK "projects/%s/zones/%s", emu->project, z->name);
}

static struct op *
op_new(struct zone *z, const char *type, const char *target_name, const char *target_id,
    const char *request_id, const char *user)
{
	struct emulator *emu = z->emu;
	struct op *op = xcalloc(1, sizeof *op);
	char *zl = zone_link(emu, z), *tl, *sl, id[24];
	uint64_t nid = emu_new_id(emu);
	unsigned char r[8];
	json_t *now = now_json(emu);

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

static void
op_start(struct op *op)
{
	json_object_set_new(op->res, "status", json_string("RUNNING"));
	json_object_set_new(op->res, "startTime", now_json(op->zone->emu));
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
		op_start(op);
	json_object_set_new(op->res, "status", json_string("DONE"));
	json_object_set_new(op->res, "progress", json_integer(100));
	json_object_set_new(op->res, "endTime", now_json(op->zone->emu));
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

static struct op *
find_op(struct emulator *emu, const char *zone, const char *name, const char *request_id)
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
	size_t i = inst_index(z, inst->name, &found);

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

static int64_t
quota_limit(struct emulator *emu)
{
	return emu->faults.quota_cpus >= 0 ? emu->faults.quota_cpus : DEFAULT_CPU_QUOTA * 1000;
}

static json_t *
quota_error(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	double limit = (double)quota_limit(emu);
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
		json_object_set_new(inst->res, "lastStartTimestamp", now_json(emu));
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
		json_object_set_new(inst->res, "lastStopTimestamp", now_json(emu));
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
	op = op_new(inst->zone, "compute.instances.preempted", inst->name, json_string_value(id),
	    NULL, "system");
	json_object_set_new(op->res, "statusMessage", json_string("Instance was preempted."));
	op_done(op, NULL, 0, NULL);
	metadata_changed(emu, inst);
	log_debug("emulator: preempting %s", inst->name);
	inst_timer_start(inst, EV_PREEMPT_STOP, emu->opts.preempt_notice_ms);
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

/* --- instances.insert --- */

static char *
fingerprint(void)
{
	unsigned char r[8], out[16];

	random_bytes(r, sizeof r);
	EVP_EncodeBlock(out, r, sizeof r);
	return xstrdup((char *)out);
}

static void
set_fingerprint(json_t *obj, const char *key)
{
	char *fp = fingerprint();

	json_object_set_new(obj, key, json_string(fp));
	free(fp);
}

/* A partial URL ("global/networks/default", "projects/p/...") made whole. */
static char *
full_link(struct emulator *emu, const char *s)
{
	if (str_prefix(s, "https://") || str_prefix(s, "http://"))
		return xstrdup(s);
	if (str_prefix(s, "projects/"))
		return xasprintf(GCE_LINK "%s", s);
	return xasprintf(GCE_LINK "projects/%s/%s", emu->project, s);
}

/* "zones/Z/machineTypes/T" in any of Google's URL forms; NULL when malformed. */
static char *
machine_type_name(struct emulator *emu, const char *s, const char *zone)
{
	const char *p = s;
	char *want;

	if (str_prefix(p, "https://www.googleapis.com/compute/v1/"))
		p += strlen("https://www.googleapis.com/compute/v1/");
	else if (str_prefix(p, "https://compute.googleapis.com/compute/v1/"))
		p += strlen("https://compute.googleapis.com/compute/v1/");
	if (str_prefix(p, "projects/")) {
		p += strlen("projects/");
		if (!str_prefix(p, emu->project) || p[strlen(emu->project)] != '/')
			return NULL;
		p += strlen(emu->project) + 1;
	}
	want = xasprintf("zones/%s/machineTypes/", zone);
	if (!str_prefix(p, want) || strchr(p + strlen(want), '/') != NULL) {
		free(want);
		return NULL;
	}
	p += strlen(want);
	free(want);
	return *p != '\0' ? xstrdup(p) : NULL;
}

static bool
label_ok(const char *s, bool key)
{
	size_t n = strlen(s);

	if (n > 63 || (key && (n == 0 || s[0] < 'a' || s[0] > 'z')))
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		        *s == '-' || (unsigned char)*s >= 0x80))
			return false;
	return true;
}

static bool
metadata_key_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		        (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

struct spec {
	char *machine;
	int vcpus;
	bool spot;
	bool delete_on_stop;
	int64_t max_run_ms;
	int64_t stop_at_ms;
};

static int
check_disks(struct rq *rq, json_t *body)
{
	json_t *disks = json_object_get(body, "disks"), *d;
	size_t i, boots = 0;

	if (json_array_size(disks) == 0) {
		bad_field(rq, "resource.disks", "", "At least one disk must be specified.");
		return -EINVAL;
	}
	json_array_foreach (disks, i, d) {
		json_t *ip = json_object_get(d, "initializeParams");
		char field[96];
		int64_t gb;

		boots += json_is_true(json_object_get(d, "boot"));
		if (ip == NULL && json_object_get(d, "source") == NULL) {
			snprintf(field, sizeof field, "resource.disks[%zu]", i);
			bad_field(
			    rq, field, "", "A disk must have either a source or initializeParams.");
			return -EINVAL;
		}
		if (ip != NULL && jx_str(ip, "sourceImage") == NULL &&
		    jx_str(ip, "sourceSnapshot") == NULL &&
		    json_is_true(json_object_get(d, "boot"))) {
			snprintf(field, sizeof field,
			    "resource.disks[%zu].initializeParams.sourceImage", i);
			bad_field(rq, field, "", "A boot disk needs a source image.");
			return -EINVAL;
		}
		if (json_object_get(ip, "diskSizeGb") != NULL &&
		    (jx_int64(json_object_get(ip, "diskSizeGb"), &gb) != 0 || gb < 10 ||
		        gb > 65536)) {
			snprintf(field, sizeof field,
			    "resource.disks[%zu].initializeParams.diskSizeGb", i);
			bad_field(rq, field, or_default(jx_str(ip, "diskSizeGb"), "?"),
			    "Requested disk size cannot be smaller than the image size (10 GB) or "
			    "larger than 65536 GB.");
			return -EINVAL;
		}
	}
	if (boots != 1) {
		bad_field(rq, "resource.disks", "", "Exactly one boot disk must be specified.");
		return -EINVAL;
	}
	return 0;
}

static int
check_labels_metadata(struct rq *rq, json_t *body)
{
	json_t *labels = json_object_get(body, "labels"), *items, *it, *v;
	const char *k;
	size_t i, total = 0;

	if (json_object_size(labels) > 64) {
		bad_field(rq, "resource.labels", "", "At most 64 labels are allowed.");
		return -EINVAL;
	}
	json_object_foreach (labels, k, v) {
		if (!label_ok(k, true)) {
			bad_field(rq, "resource.labels", "",
			    "Label key '%s' violates format constraints. The key must start with a "
			    "lowercase character, can only contain lowercase letters, numeric "
			    "characters, underscores and dashes. The key can be at most 63 characters "
			    "long. International characters are allowed.",
			    k);
			return -EINVAL;
		}
		if (!json_is_string(v) || !label_ok(json_string_value(v), false)) {
			bad_field(rq, "resource.labels", "",
			    "Label value '%s' violates format constraints. The value can only contain "
			    "lowercase letters, numeric characters, underscores and dashes. The value "
			    "can be at most 63 characters long. International characters are allowed.",
			    json_is_string(v) ? json_string_value(v) : "");
			return -EINVAL;
		}
	}
	items = jx_get(body, "metadata.items");
	json_array_foreach (items, i, it) {
		const char *key = jx_str(it, "key"), *val = jx_str(it, "value");
		char field[64];

		snprintf(field, sizeof field, "resource.metadata.items[%zu].key", i);
		if (key == NULL || !metadata_key_ok(key)) {
			bad_field(rq, field, key ? key : "",
			    "Must be a match of regex '[a-zA-Z0-9-_]{1,128}'");
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(jx_str(json_array_get(items, j), "key"), key) == 0) {
				bad_field(rq, "resource.metadata", "",
				    "Duplicate metadata key '%s'.", key);
				return -EINVAL;
			}
		}
		total += strlen(key) + (val != NULL ? strlen(val) : 0);
	}
	if (total > METADATA_MAX) {
		bad_field(rq, "resource.metadata", "",
		    "Metadata total size (%zu bytes) exceeds the limit of 524288 bytes.", total);
		return -EINVAL;
	}
	return 0;
}

static int
check_scheduling(struct rq *rq, json_t *body, struct spec *sp)
{
	json_t *s = json_object_get(body, "scheduling");
	const char *model = jx_str(s, "provisioningModel"), *action, *term;
	json_t *mrd = json_object_get(s, "maxRunDuration");
	int64_t now = emu_now_ms(rq->emu);

	sp->spot = (model != NULL && strcmp(model, "SPOT") == 0) ||
	    json_is_true(json_object_get(s, "preemptible"));
	if (sp->spot && json_is_true(json_object_get(s, "automaticRestart"))) {
		bad_field(rq, "resource.scheduling.automaticRestart", "true",
		    "Preemptible instances cannot be automatically restarted.");
		return -EINVAL;
	}
	if (sp->spot && jx_str(s, "onHostMaintenance") != NULL &&
	    strcmp(jx_str(s, "onHostMaintenance"), "TERMINATE") != 0) {
		bad_field(rq, "resource.scheduling.onHostMaintenance",
		    jx_str(s, "onHostMaintenance"),
		    "Scheduling must have preemptible be false when OnHostMaintenance isn't "
		    "TERMINATE.");
		return -EINVAL;
	}
	if (mrd != NULL) {
		int64_t secs = 0;

		if (jx_int64(json_object_get(mrd, "seconds"), &secs) != 0 || secs < 30 ||
		    secs > 120 * 86400) {
			bad_field(rq, "resource.scheduling.maxRunDuration.seconds",
			    or_default(jx_str(mrd, "seconds"), "?"),
			    "Must be between 30 seconds and 120 days.");
			return -EINVAL;
		}
		sp->max_run_ms = secs * 1000;
	}
	if ((term = jx_str(s, "terminationTime")) != NULL) {
		if (time_parse_rfc3339(term, &sp->stop_at_ms) != 0 || sp->stop_at_ms <= now) {
			bad_field(rq, "resource.scheduling.terminationTime", term,
			    "Must be an RFC 3339 time in the future.");
			return -EINVAL;
		}
	}
	action = jx_str(s, "instanceTerminationAction");
	if ((sp->max_run_ms > 0 || sp->stop_at_ms > 0) &&
	    (action == NULL || strcmp(action, "INSTANCE_TERMINATION_ACTION_UNSPECIFIED") == 0)) {
		bad_field(rq, "resource.scheduling.instanceTerminationAction", "",
		    "Instance termination action must be specified when maxRunDuration or "
		    "terminationTime is set.");
		return -EINVAL;
	}
	sp->delete_on_stop = action != NULL && strcmp(action, "DELETE") == 0;
	return 0;
}

static int
check_instance(struct rq *rq, struct zone *z, json_t *body, struct spec *sp)
{
	struct emulator *emu = rq->emu;
	const char *name = jx_str(body, "name"), *mt = jx_str(body, "machineType");
	int mb;
	bool shared;
	json_t *nics = json_object_get(body, "networkInterfaces"), *nic, *sas;
	size_t i;

	if (name == NULL || !valid_name(name)) {
		bad_field(rq, "resource.name", name ? name : "",
		    "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'");
		return -EINVAL;
	}
	if (mt == NULL) {
		bad_field(rq, "resource.machineType", "", "Machine type must be specified.");
		return -EINVAL;
	}
	if ((sp->machine = machine_type_name(emu, mt, z->name)) == NULL) {
		bad_field(rq, "resource.machineType", mt,
		    "The URL is malformed: expected zones/%s/machineTypes/TYPE.", z->name);
		return -EINVAL;
	}
	if (machine_lookup(sp->machine, &sp->vcpus, &mb, &shared) != 0) {
		bad_field(rq, "resource.machineType", mt,
		    "Machine type with name '%s' does not exist in zone '%s'.", sp->machine,
		    z->name);
		return -EINVAL;
	}
	if (check_disks(rq, body) != 0 || check_labels_metadata(rq, body) != 0 ||
	    check_scheduling(rq, body, sp) != 0)
		return -EINVAL;
	if (json_array_size(nics) == 0) {
		bad_field(rq, "resource.networkInterfaces", "",
		    "At least one network interface must be specified.");
		return -EINVAL;
	}
	json_array_foreach (nics, i, nic) {
		json_t *ac = json_object_get(nic, "accessConfigs"), *a;
		size_t j;

		json_array_foreach (ac, j, a) {
			const char *type = jx_str(a, "type");

			if (type != NULL && strcmp(type, "ONE_TO_ONE_NAT") != 0 &&
			    strcmp(type, "DIRECT_IPV6") != 0) {
				bad_field(rq, "resource.networkInterfaces[0].accessConfigs[0].type",
				    type, "Must be ONE_TO_ONE_NAT.");
				return -EINVAL;
			}
		}
	}
	sas = json_object_get(body, "serviceAccounts");
	if (json_array_size(sas) > 1) {
		bad_field(rq, "resource.serviceAccounts", "",
		    "At most one service account may be "
		    "attached.");
		return -EINVAL;
	}
	return 0;
}

/* The Instance as Google returns it, from the Instance as the client sent it. */
static json_t *
build_instance(struct inst *inst, json_t *body, const struct spec *sp, const char *id)
{
	struct emulator *emu = inst->emu;
	struct zone *z = inst->zone;
	json_t *res = json_deep_copy(body), *disks, *d, *nics, *nic, *sched, *sas, *sa, *md;
	char *zl = zone_link(emu, z), *link;
	size_t i;

	json_object_set_new(res, "kind", json_string("compute#instance"));
	json_object_set_new(res, "id", json_string(id));
	json_object_set_new(res, "creationTimestamp", now_json(emu));
	json_object_set_new(res, "zone", json_string(zl));
	link = xasprintf("%s/machineTypes/%s", zl, sp->machine);
	json_object_set_new(res, "machineType", json_string(link));
	free(link);
	link = xasprintf("%s/instances/%s", zl, inst->name);
	json_object_set_new(res, "selfLink", json_string(link));
	free(link);
	json_object_set_new(res, "status", json_string("PROVISIONING"));
	json_object_set_new(res, "cpuPlatform",
	    json_string(str_prefix(sp->machine, "n2d") ? "AMD Rome"
	            : str_prefix(sp->machine, "n2")    ? "Intel Cascade Lake"
	                                               : "Intel Broadwell"));
	if (json_object_get(res, "canIpForward") == NULL)
		json_object_set_new(res, "canIpForward", json_false());
	if (json_object_get(res, "deletionProtection") == NULL)
		json_object_set_new(res, "deletionProtection", json_false());
	json_object_set_new(res, "startRestricted", json_false());
	set_fingerprint(res, "fingerprint");
	set_fingerprint(res, "labelFingerprint");

	disks = json_object_get(res, "disks");
	json_array_foreach (disks, i, d) {
		json_t *ip = json_object_get(d, "initializeParams");
		const char *dev = jx_str(d, "deviceName");
		char *devname = dev != NULL ? xstrdup(dev)
		    : i == 0                ? xstrdup(inst->name)
		                            : xasprintf("persistent-disk-%zu", i);
		const char *size = ip != NULL ? jx_str(ip, "diskSizeGb") : NULL;
		int64_t gb = 10;

		if (ip != NULL)
			jx_int64(json_object_get(ip, "diskSizeGb"), &gb);
		(void)size;
		if (json_object_get(d, "source") == NULL) {
			link = xasprintf("%s/disks/%s", zl,
			    ip != NULL && jx_str(ip, "diskName") ? jx_str(ip, "diskName")
			                                         : devname);
			json_object_set_new(d, "source", json_string(link));
			free(link);
		}
		json_object_set_new(d, "diskSizeGb", jx_int64_string(gb));
		json_object_del(d, "initializeParams");
		json_object_set_new(d, "kind", json_string("compute#attachedDisk"));
		json_object_set_new(d, "deviceName", json_string(devname));
		json_object_set_new(d, "index", json_integer((json_int_t)i));
		if (json_object_get(d, "type") == NULL)
			json_object_set_new(d, "type", json_string("PERSISTENT"));
		if (json_object_get(d, "mode") == NULL)
			json_object_set_new(d, "mode", json_string("READ_WRITE"));
		if (json_object_get(d, "interface") == NULL)
			json_object_set_new(d, "interface", json_string("SCSI"));
		if (json_object_get(d, "autoDelete") == NULL)
			json_object_set_new(d, "autoDelete", json_false());
		if (json_object_get(d, "boot") == NULL)
			json_object_set_new(d, "boot", json_false());
		json_object_set_new(d, "architecture", json_string("X86_64"));
		free(devname);
	}

	nics = json_object_get(res, "networkInterfaces");
	json_array_foreach (nics, i, nic) {
		json_t *acs = json_object_get(nic, "accessConfigs"), *ac;
		const char *net = jx_str(nic, "network"), *sub = jx_str(nic, "subnetwork");
		unsigned n = emu->next_internal++;
		char ip[16], name[24];
		size_t j;

		link = full_link(emu, net != NULL ? net : "global/networks/default");
		json_object_set_new(nic, "network", json_string(link));
		free(link);
		if (sub != NULL)
			link = full_link(emu, sub);
		else
			link = xasprintf(GCE_LINK "projects/%s/regions/%s/subnetworks/default",
			    emu->project, z->region);
		json_object_set_new(nic, "subnetwork", json_string(link));
		free(link);
		snprintf(ip, sizeof ip, "10.128.%u.%u", (n >> 8) & 255, n & 255);
		snprintf(name, sizeof name, "nic%zu", i);
		json_object_set_new(nic, "kind", json_string("compute#networkInterface"));
		json_object_set_new(nic, "name", json_string(name));
		json_object_set_new(nic, "networkIP", json_string(ip));
		json_object_set_new(nic, "stackType", json_string("IPV4_ONLY"));
		set_fingerprint(nic, "fingerprint");
		json_array_foreach (acs, j, ac) {
			json_object_set_new(ac, "kind", json_string("compute#accessConfig"));
			if (json_object_get(ac, "type") == NULL)
				json_object_set_new(ac, "type", json_string("ONE_TO_ONE_NAT"));
			if (json_object_get(ac, "name") == NULL)
				json_object_set_new(ac, "name", json_string("External NAT"));
			if (json_object_get(ac, "networkTier") == NULL)
				json_object_set_new(ac, "networkTier", json_string("PREMIUM"));
		}
	}

	sched = json_object_get(res, "scheduling");
	if (sched == NULL) {
		sched = json_object();
		json_object_set_new(res, "scheduling", sched);
	}
	if (json_object_get(sched, "provisioningModel") == NULL)
		json_object_set_new(
		    sched, "provisioningModel", json_string(sp->spot ? "SPOT" : "STANDARD"));
	if (json_object_get(sched, "onHostMaintenance") == NULL)
		json_object_set_new(
		    sched, "onHostMaintenance", json_string(sp->spot ? "TERMINATE" : "MIGRATE"));
	if (json_object_get(sched, "automaticRestart") == NULL)
		json_object_set_new(sched, "automaticRestart", json_boolean(!sp->spot));
	if (json_object_get(sched, "preemptible") == NULL)
		json_object_set_new(sched, "preemptible", json_false());
	if (sp->spot && json_object_get(sched, "instanceTerminationAction") == NULL)
		json_object_set_new(sched, "instanceTerminationAction", json_string("STOP"));

	sas = json_object_get(res, "serviceAccounts");
	json_array_foreach (sas, i, sa) {
		const char *email = jx_str(sa, "email");

		if (email == NULL || strcmp(email, "default") == 0) {
			link = xasprintf(
			    "%s-compute@developer.gserviceaccount.com", emu->project_number);
			json_object_set_new(sa, "email", json_string(link));
			free(link);
		}
	}

	md = json_object_get(res, "metadata");
	if (md == NULL) {
		md = json_object();
		json_object_set_new(res, "metadata", md);
	}
	json_object_set_new(md, "kind", json_string("compute#metadata"));
	set_fingerprint(md, "fingerprint");
	if (json_object_get(res, "tags") != NULL)
		set_fingerprint(json_object_get(res, "tags"), "fingerprint");
	free(zl);
	return res;
}

static int64_t
region_cpus(struct emulator *emu, const char *region)
{
	int64_t used = 0;

	for (size_t i = 0; i < emu->nzones; i++) {
		struct zone *z = &emu->zones[i];

		if (strcmp(z->region, region) != 0)
			continue;
		for (size_t j = 0; j < z->ninsts; j++)
			if (z->insts[j]->status != ST_TERMINATED && z->insts[j]->fail_code == NULL)
				used += z->insts[j]->vcpus;
	}
	return used;
}

/* A requestId must be a UUID; a repeated one answers with its first operation. */
static int
check_request_id(struct rq *rq, const char **out, struct op **existing)
{
	const char *id = httpd_req_query(rq->req, "requestId");

	*out = NULL;
	*existing = NULL;
	if (id == NULL || *id == '\0')
		return 0;
	if (!uuid_valid(id)) {
		bad_field(rq, "requestId", id,
		    "The request ID must be a valid UUID with the exception that zero UUID is not "
		    "supported (00000000-0000-0000-0000-000000000000).");
		return -EINVAL;
	}
	*out = id;
	*existing = find_op(rq->emu, NULL, NULL, id);
	return 0;
}

static void
inst_insert(struct rq *rq, struct zone *z)
{
	struct emulator *emu = rq->emu;
	struct spec sp = {0};
	struct inst *inst;
	struct op *op;
	const char *request_id, *raw;
	json_t *body = NULL;
	char *cause = NULL, id[24];
	size_t len, at;
	bool found;
	int stockout;

	if (check_request_id(rq, &request_id, &op) != 0)
		return;
	if (op != NULL) {
		emu_reply_json(rq, 200, compute_op_json(op));
		return;
	}
	raw = httpd_req_body(rq->req, &len, NULL);
	if (jx_parse(raw, len, &body, &cause) != 0 ||
	    jschema_validate(schemas(), "Instance", body, "resource", 0, &cause) != 0) {
		emu_error_status(rq, 400, "invalid", "INVALID_ARGUMENT",
		    "Invalid JSON payload received. %s", cause);
		goto out;
	}
	if (check_instance(rq, z, body, &sp) != 0)
		goto out;
	inst_index(z, jx_str(body, "name"), &found);
	if (found) {
		emu_error(rq, 409, "alreadyExists",
		    "The resource 'projects/%s/zones/%s/instances/%s' already exists", emu->project,
		    z->name, jx_str(body, "name"));
		goto out;
	}

	inst = xcalloc(1, sizeof *inst);
	inst->emu = emu;
	inst->zone = z;
	inst->name = xstrdup(jx_str(body, "name"));
	inst->vcpus = sp.vcpus;
	inst->spot = sp.spot;
	inst->delete_on_stop = sp.delete_on_stop;
	inst->max_run_ms = sp.max_run_ms;
	inst->stop_at_ms = sp.stop_at_ms;
	snprintf(id, sizeof id, "%" PRIu64, emu_new_id(emu));
	inst->res = build_instance(inst, body, &sp, id);
	if ((stockout = faults_stockout(&emu->faults, z->name)) != 0)
		inst->fail_code = stockout == 2 ? "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
		                                : "ZONE_RESOURCE_POOL_EXHAUSTED";
	else if (region_cpus(emu, z->region) + sp.vcpus > quota_limit(emu))
		inst->fail_code = "QUOTA_EXCEEDED";
	uv_timer_init(emu->loop, &inst->timer);
	inst->timer.data = inst;

	at = inst_index(z, inst->name, &found);
	if (z->ninsts == z->capinsts) {
		z->capinsts = z->capinsts ? z->capinsts * 2 : 64;
		z->insts = xreallocarray(z->insts, z->capinsts, sizeof *z->insts);
	}
	memmove(&z->insts[at + 1], &z->insts[at], (z->ninsts - at) * sizeof *z->insts);
	z->insts[at] = inst;
	z->ninsts++;

	op = op_new(z, "insert", inst->name, id, request_id, emu->client_email);
	op_start(op);
	inst->op = op;
	inst_timer_start(inst, EV_STAGE, emu->opts.boot_ms / 2);
	emu_reply_json(rq, 200, compute_op_json(op));
out:
	free(sp.machine);
	free(cause);
	json_decref(body);
}

/* --- instances.delete, get, list --- */

static void
inst_delete(struct rq *rq, struct zone *z, const char *name)
{
	struct emulator *emu = rq->emu;
	struct inst *inst = emu_find_inst(emu, z->name, name);
	const char *request_id;
	struct op *op, *overtaken;

	if (check_request_id(rq, &request_id, &op) != 0)
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
	op =
	    op_new(z, "delete", inst->name, jx_str(inst->res, "id"), request_id, emu->client_email);
	/* ...at the very moment the delete came: it never ran (the clock may run fast). */
	if (overtaken != NULL)
		json_object_set(overtaken->res, "endTime", json_object_get(op->res, "insertTime"));
	op_start(op);
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
		bad_field(rq, "maxResults", m, "Must be an integer.");
		return -EINVAL;
	}
	if (n < 0 || n > LIST_MAX) {
		bad_field(rq, "maxResults", m,
		    n < 0 ? "Must be greater than or equal to 0"
		          : "Must be less than or equal to 500");
		return -EINVAL;
	}
	*max = n == 0 ? LIST_MAX : (size_t)n;
	if (order != NULL && *order != '\0' && strcmp(order, "name") != 0) {
		bad_field(rq, "orderBy", order, "Only ordering by name is supported.");
		return -EINVAL;
	}
	if (tok != NULL && *tok != '\0') {
		unsigned char *raw;
		size_t len;

		if (b64url_decode(tok, strlen(tok), &raw, &len) != 0 || len == 0 ||
		    memchr(raw, '\0', len) != NULL) {
			bad_field(rq, "pageToken", tok, "The page token is invalid.");
			return -EINVAL;
		}
		*cursor = (char *)raw;
	}
	if (f != NULL && filter_parse(f, filter, &cause) != 0) {
		bad_field(rq, "filter", f, "Invalid list filter expression (%s).", cause);
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
		i = inst_index(z, cursor, &found);
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
	char *self = zone_link(emu, z);
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
			char *zl = zone_link(emu, &emu->zones[i]);

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
	    "CPUS", "limit", (double)quota_limit(emu), "usage", (double)region_cpus(emu, name));
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
	char port[16], agent[16];

	json_array_append_new(items,
	    jx_pack("{s:s, s:s, s:s, s:[{s:s, s:[s]}], s:[s], s:i, s:b}", "kind",
	        "compute#firewall", "name", "default-allow-ssh", "direction", "INGRESS", "allowed",
	        "IPProtocol", "tcp", "ports", "22", "sourceRanges", "0.0.0.0/0", "priority", 65534,
	        "disabled", 0));
	snprintf(port, sizeof port, "%d", emu->opts.guest_port);
	snprintf(agent, sizeof agent, "%d", emu->opts.agent_port);
	if (emu->opts.firewall_source != NULL)
		json_array_append_new(items,
		    jx_pack("{s:s, s:s, s:s, s:[{s:s, s:[s, s]}], s:[s], s:[s], s:i, s:b}", "kind",
		        "compute#firewall", "name", "spillway-backend", "direction", "INGRESS",
		        "allowed", "IPProtocol", "tcp", "ports", port, agent, "sourceRanges",
		        emu->opts.firewall_source, "targetTags", "spillway-backend", "priority", 1000,
		        "disabled", 0));
	emu_reply_json(rq, 200, jx_pack("{s:s, s:s, s:o}", "kind", "compute#firewallList", "id",
	                            "firewalls", "items", items));
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
	if (!valid_name(parts[5])) {
		emu_error(rq, 400, "invalidParameter",
		    "Invalid value '%s'. Values must match the "
		    "following regular expression: "
		    "'[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'",
		    parts[5]);
		return;
	}
	if ((z = emu_zone(emu, parts[5])) == NULL) {
		bad_field(rq, "zone", parts[5], "Unknown zone.");
		return;
	}
	if (n == 6 && method_is(rq, "GET")) {
		emu_reply_json(rq, 200, zone_json(emu, z));
	} else if (n == 7 && strcmp(collection, "instances") == 0 && method_is(rq, "GET")) {
		inst_list(rq, z);
	} else if (n == 7 && strcmp(collection, "instances") == 0 && method_is(rq, "POST")) {
		inst_insert(rq, z);
	} else if (n == 8 && strcmp(collection, "instances") == 0 && method_is(rq, "GET")) {
		struct inst *inst = emu_find_inst(emu, z->name, parts[7]);

		if (inst == NULL)
			not_found(rq, "instances", z->name, parts[7]);
		else
			emu_reply(rq, 200, "application/json; charset=UTF-8", inst_text(inst),
			    strlen(inst_text(inst)));
	} else if (n == 8 && strcmp(collection, "instances") == 0 && method_is(rq, "DELETE")) {
		inst_delete(rq, z, parts[7]);
	} else if (n == 7 && strcmp(collection, "operations") == 0 && method_is(rq, "GET")) {
		op_list(rq, z);
	} else if (n >= 8 && strcmp(collection, "operations") == 0) {
		struct op *op = find_op(emu, z->name, parts[7], NULL);

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
