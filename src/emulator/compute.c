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
    [ST_PROVISIONING] = "PROVISIONING",
    [ST_STAGING] = "STAGING",
    [ST_RUNNING] = "RUNNING",
    [ST_STOPPING] = "STOPPING",
    [ST_TERMINATED] = "TERMINATED",
    [ST_SUSPENDING] = "SUSPENDING",
    [ST_SUSPENDED] = "SUSPENDED",
};

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

void
compute_fingerprint(json_t *obj, const char *key, bool empty)
{
	unsigned char r[8], out[16];

	random_bytes(r, sizeof r);
	EVP_EncodeBlock(out, r, sizeof r);
	json_object_set_new(obj, key, json_string(empty ? EMPTY_FINGERPRINT : (char *)out));
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

void
compute_not_found(struct rq *rq, const char *what, const char *zone, const char *name)
{
	if (zone == NULL)
		emu_error(rq, 404, "notFound",
		    "The resource 'projects/%s/global/%s/%s' was not found", rq->emu->project, what,
		    name);
	else
		emu_error(rq, 404, "notFound",
		    "The resource 'projects/%s/zones/%s/%s/%s' was not found", rq->emu->project,
		    zone, what, name);
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
compute_op_new(struct zone *z, const char *type, const char *collection, const char *target_name,
    const char *target_id, const char *request_id, const char *user)
{
	struct emulator *emu = z->emu;
	struct op *op = xcalloc(1, sizeof *op);
	char *scope = z->name != NULL
	    ? xasprintf(GCE_LINK "projects/%s/zones/%s", emu->project, z->name)
	    : xasprintf(GCE_LINK "projects/%s/global", emu->project);
	char *tl, *sl, id[24];
	uint64_t nid = emu_new_id(emu);
	unsigned char r[8];
	json_t *now = compute_now_json(emu);

	random_bytes(r, sizeof r);
	op->zone = z;
	/* Google's shape: operation-MILLISECONDS-13 hex-8 hex-8 hex. */
	op->name =
	    xasprintf("operation-%" PRId64 "-%013" PRIx64 "-%02x%02x%02x%02x-%02x%02x%02x%02x",
	        emu_now_ms(emu), (uint64_t)(nid & 0xfffffffffffffULL), r[0], r[1], r[2], r[3], r[4],
	        r[5], r[6], r[7]);
	op->request_id = request_id != NULL ? xstrdup(request_id) : NULL;
	tl = xasprintf("%s/%s/%s", scope, collection, target_name);
	sl = xasprintf("%s/operations/%s", scope, op->name);
	snprintf(id, sizeof id, "%" PRIu64, nid);
	op->res = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:O, s:s, s:s}", "kind",
	    "compute#operation", "id", id, "name", op->name, "operationType", type, "targetLink",
	    tl, "targetId", target_id, "status", "PENDING", "progress", 0, "insertTime", now,
	    "selfLink", sl, "user", user);
	if (z->name != NULL)
		json_object_set_new(op->res, "zone", json_string(scope));
	if (request_id != NULL)
		json_object_set_new(op->res, "clientOperationId", json_string(request_id));
	json_decref(now);
	free(scope);
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

void
compute_op_done(struct op *op, json_t *error, int http_status, const char *http_message)
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
compute_find_op(
    struct emulator *emu, const struct zone *scope, const char *name, const char *request_id)
{
	for (size_t i = 0; i <= emu->nzones; i++) {
		struct zone *z = i < emu->nzones ? &emu->zones[i] : &emu->global;

		if (scope != NULL && z != scope)
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

const char *
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
	free(inst->agent_cert);
	if (inst->agent_key != NULL)
		explicit_bzero(inst->agent_key, strlen(inst->agent_key));
	free(inst->agent_key);
	buf_release(&inst->serial);
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
	disks_release(inst);
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

void
compute_stop(struct inst *inst, bool remove)
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

/* How long to RUNNING: an insert's boot, a stopped VM's start, a suspended one's resume. */
static int64_t
boot_time(const struct inst *inst)
{
	const struct emulator_opts *o = &inst->emu->opts;

	if (inst->resuming && o->resume_ms >= 0)
		return o->resume_ms;
	if (!inst->resuming && inst->started_ms > 0 && o->start_ms >= 0)
		return o->start_ms;
	return o->boot_ms;
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
				compute_op_done(inst->op, quota_error(inst), 403, "FORBIDDEN");
			else
				compute_op_done(inst->op,
				    stockout_error(
				        inst, str_suffix(inst->fail_code, "_WITH_DETAILS")),
				    503, "SERVICE UNAVAILABLE");
			inst->op = NULL;
			inst->fail_code = NULL;
			/* A start (resume) that fails leaves the VM stopped (suspended); an insert,
			 * no VM. */
			if (inst->started_ms > 0)
				inst_set_status(
				    inst, inst->resuming ? ST_SUSPENDED : ST_TERMINATED);
			else
				inst_remove(inst);
			inst->resuming = false;
			return;
		}
		inst_set_status(inst, ST_STAGING);
		if (jx_get(inst->res, "networkInterfaces.0.accessConfigs.0") != NULL &&
		    guest_reserve(inst) == 0)
			set_nat_ip(inst);
		inst_timer_start(inst, EV_RUN, boot_time(inst) - boot_time(inst) / 2);
		break;
	case EV_RUN:
		inst_set_status(inst, ST_RUNNING);
		if (!inst->resuming)
			serial_boot(inst);
		inst->started_ms = emu_now_ms(emu);
		json_object_set_new(inst->res, "lastStartTimestamp", compute_now_json(emu));
		inst_changed(inst);
		compute_op_done(inst->op, NULL, 0, NULL);
		inst->op = NULL;
		if (inst->spot && emu->faults.preempt > 0 && emu_rand(emu) < emu->faults.preempt)
			inst->preempt_at_ms = inst->started_ms +
			    (int64_t)(emu_rand(emu) * (double)emu->faults.preempt_within_s * 1000);
		guest_start(inst);
		inst->resuming = false;
		schedule_running(inst);
		break;
	case EV_EXPIRE:
		log_debug("emulator: %s reached its maxRunDuration or terminationTime", inst->name);
		compute_stop(inst, inst->delete_on_stop);
		break;
	case EV_PREEMPT:
		compute_preempt(inst);
		break;
	case EV_PREEMPT_STOP:
		compute_stop(inst, inst->delete_on_stop);
		break;
	case EV_STOPPED:
		if (inst->deleting) {
			compute_op_done(inst->op, NULL, 0, NULL);
			inst->op = NULL;
			inst_remove(inst);
			return;
		}
		inst_set_status(inst, ST_TERMINATED);
		serial_stop(inst);
		json_object_set_new(inst->res, "lastStopTimestamp", compute_now_json(emu));
		inst_changed(inst);
		compute_op_done(inst->op, NULL, 0, NULL);
		inst->op = NULL;
		break;
	case EV_SUSPENDED:
		inst_set_status(inst, ST_SUSPENDED);
		compute_op_done(inst->op, NULL, 0, NULL);
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
	op = compute_op_new(inst->zone, "compute.instances.preempted", "instances", inst->name,
	    json_string_value(id), NULL, "system");
	json_object_set_new(op->res, "statusMessage", json_string("Instance was preempted."));
	compute_op_done(op, NULL, 0, NULL);
	metadata_changed(emu, inst);
	log_debug("emulator: preempting %s", inst->name);
	inst_timer_start(inst, EV_PREEMPT_STOP, emu->opts.preempt_notice_ms);
}

/*
 * PROVISIONING, then STAGING at half the boot: an insert's or a start's. What
 * the zone cannot hold now (a stockout, the region's CPUS quota without this
 * instance's own share) is the error the boot will end in.
 */
void
compute_boot(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	int stockout = faults_stockout(&emu->faults, inst->zone->name);
	int64_t others = compute_region_cpus(emu, inst->zone->region) - compute_cpus_held(inst);

	if (stockout != 0)
		inst->fail_code = stockout == 2 ? "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
		                                : "ZONE_RESOURCE_POOL_EXHAUSTED";
	else if (others + inst->vcpus > compute_quota_limit(emu))
		inst->fail_code = "QUOTA_EXCEEDED";
	inst_set_status(inst, ST_PROVISIONING);
	inst_timer_start(inst, EV_STAGE, boot_time(inst) / 2);
}

void
compute_start(struct inst *inst)
{
	inst->preempted = false;
	inst->deleting = false;
	compute_boot(inst);
}

void
compute_suspend(struct inst *inst)
{
	inst_set_status(inst, ST_SUSPENDING);
	guest_stop(inst);
	inst_timer_start(inst, EV_SUSPENDED, inst->emu->opts.stop_ms);
}

void
compute_resume(struct inst *inst)
{
	inst->resuming = true;
	compute_start(inst);
}

int
compute_cpus_held(const struct inst *inst)
{
	bool held = inst->status != ST_TERMINATED && inst->status != ST_SUSPENDED &&
	    inst->fail_code == NULL;

	return held ? inst->vcpus : 0;
}

/* A hard reset: the guest stops and boots again at once; the VM stays RUNNING. */
void
compute_reset(struct inst *inst)
{
	guest_stop(inst);
	if (jx_get(inst->res, "networkInterfaces.0.accessConfigs.0") != NULL &&
	    guest_reserve(inst) == 0)
		set_nat_ip(inst);
	serial_boot(inst);
	guest_start(inst);
}

void
compute_op_remove(struct op *op)
{
	struct zone *z = op->zone;
	size_t i;

	for (i = 0; i < z->nops && z->ops[i] != op; i++)
		;
	memmove(&z->ops[i], &z->ops[i + 1], (z->nops - i - 1) * sizeof *z->ops);
	z->nops--;
	op_free(op);
}

void
compute_poweroff(struct inst *inst)
{
	if (inst->status == ST_RUNNING)
		compute_stop(inst, false);
}

void
compute_reset_all(struct emulator *emu)
{
	for (size_t i = 0; i < emu->nzones; i++)
		compute_free_zone(&emu->zones[i]);
	compute_free_zone(&emu->global);
	json_object_clear(emu->images);
	firewalls_default(emu);
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
	json_object_clear(z->disks);
	z->insts = NULL;
	z->ops = NULL;
	z->ninsts = z->capinsts = z->nops = z->capops = 0;
}
