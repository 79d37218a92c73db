/*
 * The warm pool (docs/pool.md): pool.size VMs made ahead, booted to READY
 * once, then suspended where Compute Engine allows it (else stopped) to
 * wait; a VM asked for (by pressure or by hand) is one of them started or
 * resumed rather than a new one inserted, and the pool is made whole again
 * when the money rules allow.
 *
 *	REQUESTED .. BOOTING -> POOLING -> POOLED -> STARTING -> BOOTING -> READY ...
 *
 * Money: a pooled VM's warm-up run is billed when it has stopped, its wait
 * (its disk, and its saved memory when suspended) when it leaves the pool;
 * while it waits, the rest of the day's wait is committed spend, and its
 * start reserves a run of the maxRunDuration it was made with, under the
 * same rules as any VM. Each step follows from the ledger and the listing,
 * its requestIds derived from its insert's, so a restart goes on from there.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/pricing.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"
#include "vm/internal.h"

/* Compute Engine suspends no VM with more memory than this (nor one with GPUs: none here). */
#define SUSPEND_MAX_MB (208 * 1024)
/* A pooled VM whose start failed is not taken again for this long. */
#define UNTAKEN_MS (5 * 60000)

static void on_pooled(const struct cloud_error *, const struct cloud_op *, void *);
static void on_started(const struct cloud_error *, const struct cloud_op *, void *);

bool
pool_suspends(const struct manager *m)
{
	return m->cfg->pool_suspend && m->memory_mb > 0 && m->memory_mb <= SUSPEND_MAX_MB;
}

/*
 * What a pooled VM costs an hour while it waits: its boot disk, and when
 * suspended its memory kept as storage (counted at the catalog's standard
 * persistent disk price a GiB: docs/pool.md).
 */
double
pool_wait_per_hour(const struct manager *m, bool suspended)
{
	const struct config *cfg = m->cfg;
	double disk = 0, memory = 0;
	char *cause = NULL;

	if (m->o.catalog == NULL)
		return 0;
	if (price_disk(m->o.catalog, cfg->region, cfg->disk_type, (double)cfg->disk_gb, &disk,
	        &cause) != 0 ||
	    (suspended &&
	        price_disk(m->o.catalog, cfg->region, "pd-standard", m->memory_mb / 1024.0, &memory,
	            &cause) != 0))
		log_warnx("pool: %s: its wait is counted without it", cause);
	free(cause);
	return disk + memory;
}

/* A part of a VM's life billed now (ledger_bill); what the ledger cannot take is said. */
static void
bill(struct mvm *v, int64_t from, int64_t to, double per_hour, bool storage)
{
	struct manager *m = v->m;
	double amount;

	if (from <= 0 || to <= from)
		return;
	if (ledger_bill(m->o.ledger, &v->rec, from, to, per_hour, storage, &amount) != 0)
		log_warnx("%s: the ledger cannot bill its %s: %s; its close bills it", v->rec.name,
		    storage ? "wait in the pool" : "warm-up", ledger_error(m->o.ledger));
}

/* It waits in the pool from now: what an hour of it costs, stopped or suspended. */
static void
waits(struct mvm *v, int64_t now)
{
	v->rec.reserved = 0;
	v->rec.pool_since_ms = now;
	v->rec.wait_per_hour = pool_wait_per_hour(v->m, v->rec.suspended);
}

void
pool_waited(struct mvm *v, int64_t now)
{
	if (v->rec.pool_since_ms > 0)
		bill(v, v->rec.pool_since_ms, now, v->rec.wait_per_hour, true);
	v->rec.pool_since_ms = 0;
	v->rec.wait_per_hour = 0;
}

/* --- warming: BOOTING -> POOLING -> POOLED --- */

/* Stopped or suspended: its warm-up billed, its wait begun. */
static void
pooled(struct mvm *v, bool suspended)
{
	struct manager *m = v->m;
	int64_t now = now_ms(m);

	bill(v, v->rec.started_ms, now, v->rec.per_hour, false);
	v->rec.started_ms = 0;
	v->rec.nat_ip[0] = '\0'; /* its ephemeral address went with the run */
	v->rec.suspended = suspended;
	waits(v, now);
	hconn_free(v->agent);
	v->agent = NULL;
	set_state(v, VM_POOLED,
	    suspended ? "warm, suspended until it is needed" : "warm, stopped until it is needed");
}

static void
send_pool_power(struct mvm *v, enum cloud_power how)
{
	struct manager *m = v->m;
	char rid[UUID_LEN];

	/* One stop (or suspend) per pooling: the same after a restart. */
	uuid_derived(v->rec.request_id, how == CLOUD_SUSPEND ? "suspend" : "stop", rid);
	v->pool_how = how;
	v->busy = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->power == NULL ||
	    m->o.cloud->ops->power(m->o.cloud, v->rec.zone, v->rec.name, how, rid,
	        now_ms(m) + CALL_DEADLINE_MS, on_pooled, v) != 0) {
		v->busy = false;
		terminate(v, "the pool cannot stop it", VM_TERMINATED);
	}
}

static void
on_pooled(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;

	v->busy = false;
	if (waits_on(v, v->rec.zone, e, op, on_pooled))
		return;
	if (e->code == CLOUD_OK && v->terminate_after == NULL) {
		pooled(v, v->pool_how == CLOUD_SUSPEND);
	} else if (e->code != CLOUD_OK && v->pool_how == CLOUD_SUSPEND && !transient(e->code)) {
		/* Not suspended (this image's OS, say): stopped instead. */
		char *t = cloud_error_text(e);

		log_info("%s: cannot be suspended (%s): stopped instead", v->rec.name, t);
		free(t);
		send_pool_power(v, CLOUD_STOP);
		return;
	} else if (e->code != CLOUD_OK && !transient(e->code)) {
		char *t = cloud_error_text(e), *why = xasprintf("the pool cannot stop it: %s", t);

		terminate(v, why, VM_TERMINATED);
		free(why);
		free(t);
	}
	/* Transient: still POOLING; the next pass asks again. */
	after_call(v);
}

void
pool_warm(struct mvm *v)
{
	enum cloud_power how = pool_suspends(v->m) ? CLOUD_SUSPEND : CLOUD_STOP;

	set_state(v, VM_POOLING,
	    how == CLOUD_SUSPEND ? "warm: suspending it until it is needed"
	                         : "warm: stopping it until it is needed");
	send_pool_power(v, how);
}

/* --- taking: POOLED -> STARTING -> BOOTING --- */

static void
send_start(struct mvm *v)
{
	struct manager *m = v->m;
	enum cloud_power how = v->rec.suspended ? CLOUD_RESUME : CLOUD_START;
	char rid[UUID_LEN];

	uuid_derived(v->rec.request_id, how == CLOUD_RESUME ? "resume" : "start", rid);
	v->busy = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->power(m->o.cloud, v->rec.zone, v->rec.name, how, rid,
	        now_ms(m) + CALL_DEADLINE_MS, on_started, v) != 0) {
		v->busy = false;
		log_warnx("%s: cannot send its %s; the next pass tries again", v->rec.name,
		    cloud_power_name(how));
	}
}

/* Its start failed: back in the pool, not taken again for a while; another way is found. */
static void
untake(struct mvm *v, const struct cloud_error *e)
{
	struct manager *m = v->m;
	char *t = cloud_error_text(e), *why = xasprintf("its start failed: %s", t);

	if (e->code == CLOUD_STOCKOUT)
		skip_zone(m, e->zone != NULL ? e->zone : v->rec.zone, t);
	v->untaken_until = now_ms(m) + UNTAKEN_MS;
	waits(v, now_ms(m));
	snprintf(v->rec.purpose, sizeof v->rec.purpose, "pool");
	v->rec.components[0] = '\0';
	set_state(v, VM_POOLED, why);
	free(why);
	free(t);
	consider(m); /* the pressure that asked for it may still be there */
}

static void
on_started(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;

	v->busy = false;
	if (waits_on(v, v->rec.zone, e, op, on_started))
		return;
	if (e->code == CLOUD_OK && v->rec.state == VM_STARTING) {
		set_state(v, VM_BOOTING,
		    v->rec.suspended ? "resumed from the pool" : "started from the pool");
		v->rec.suspended = false;
		learn_instance(v);
	} else if (e->code != CLOUD_OK && !transient(e->code) && v->rec.state == VM_STARTING &&
	    v->terminate_after == NULL) {
		untake(v, e);
	}
	/* Transient: still STARTING; the next pass asks again, with the same requestId. */
	after_call(v);
}

struct mvm *
pool_next(struct manager *m)
{
	int64_t now = now_ms(m);

	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (v->rec.state == VM_POOLED && !v->busy && now >= v->untaken_until &&
		    !zone_skipped(m, v->rec.zone))
			return v;
	return NULL;
}

int
pool_take(
    struct manager *m, const struct vm_intent *it, char *name, size_t namelen, struct decision *no)
{
	struct reserve_rules rules = reserve_rules_of(m->cfg);
	struct budget_plan plan;
	struct vm_record rec;
	struct mvm *v;
	int64_t now = now_ms(m);
	char why[512];
	int error;

	if ((v = pool_next(m)) == NULL)
		return -ENOENT;
	/* Its wait is over: billed, before its run is reserved. */
	pool_waited(v, now);
	rec = v->rec;
	rec.purpose[0] = '\0';
	snprintf(rec.components, sizeof rec.components, "%s", or_default(it->components, ""));
	snprintf(rec.reason, sizeof rec.reason, "%s", it->reason);
	snprintf(rec.metadata, sizeof rec.metadata, "%s", or_default(it->metadata, ""));
	rec.confidence = it->confidence;
	if ((error = ledger_reserve_start(
	         m->o.ledger, &rec, &rules, now, &plan, why, sizeof why)) != 0) {
		/* Refused: it waits on; the caller may still insert a shorter-lived VM. */
		waits(v, now);
		records_save(m->records, &v->rec, (int)v->rec.state, NULL, now);
		return reserve_refused(no, error, why);
	}
	{
		struct manager_event e = {.kind = MEV_STATE,
		    .t_ms = now,
		    .vm = &v->rec,
		    .from = (int)VM_POOLED,
		    .reason = it->reason};

		v->rec = rec;
		snprintf(name, namelen, "%s", v->rec.name);
		log_info("%s: POOLED -> STARTING: %s", v->rec.name, it->reason);
		emit(m, &e);
	}
	send_start(v);
	return 0;
}

/* --- reconciling and refilling --- */

void
pool_seen(struct mvm *v, const char *status)
{
	bool stopped = str_eq(status, "TERMINATED"), suspended = str_eq(status, "SUSPENDED");

	if (v->busy)
		return;
	switch (v->rec.state) {
	case VM_POOLING:
		if (stopped || suspended)
			pooled(v, suspended);
		else if (str_eq(status, "RUNNING"))
			send_pool_power(v,
			    v->pool_how == CLOUD_STOP || !pool_suspends(v->m) ? CLOUD_STOP
			                                                      : CLOUD_SUSPEND);
		break;
	case VM_POOLED:
		if (str_eq(status, "RUNNING")) {
			/* Started outside spillway: it costs again; stopped again. */
			pool_waited(v, now_ms(v->m));
			v->rec.started_ms = now_ms(v->m);
			set_state(
			    v, VM_POOLING, "it runs, started outside spillway: stopped again");
			send_pool_power(v, CLOUD_STOP);
		} else if (stopped || suspended) {
			v->rec.suspended = suspended;
		}
		break;
	case VM_STARTING:
		if (str_eq(status, "RUNNING")) {
			set_state(v, VM_BOOTING,
			    v->rec.suspended ? "resumed from the pool" : "started from the pool");
			v->rec.suspended = false;
			learn_instance(v);
		} else if (stopped || suspended) {
			v->rec.suspended = suspended;
			send_start(v); /* the same requestId: one start, whatever came of it */
		}
		break;
	default:
		break;
	}
}

void
pool_refill(struct manager *m)
{
	const struct config *cfg = m->cfg;
	int64_t want_run = (int64_t)(cfg->max_lifetime_hours * 3600);
	long waiting = 0, warming = 0;
	struct decision d;
	char name[64], reason[128];

	if (m->stopping || m->o.passive)
		return;
	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		if (!vm_state_alive(v->rec.state) || !vm_pooled(&v->rec))
			continue;
		/* A smaller pool (pool.size lowered, SIGHUP): the VMs beyond it go, oldest first.
		 */
		if (v->rec.state == VM_POOLED && !v->busy && waiting >= cfg->pool_size) {
			char why[96];

			snprintf(why, sizeof why, "the pool is smaller now: pool.size %lld",
			    (long long)cfg->pool_size);
			terminate(v, why, VM_TERMINATED);
			continue;
		}
		if (v->rec.state == VM_POOLED)
			waiting++;
		else
			warming++;
	}
	if (cfg->pool_size <= 0)
		return;
	/* One at a time: a pool fills in the background, never in a burst. */
	if (waiting + warming >= cfg->pool_size || warming > 0)
		return;
	if (!manager_by_hand(m, NULL, &d)) {
		pool_said(m, d.rule, d.reason);
		return;
	}
	/* A pooled VM runs its whole lifetime when taken: made only when a day can pay for it. */
	if (d.run_s < want_run) {
		snprintf(d.reason, sizeof d.reason,
		    "today's budget buys %lld min of a VM; the pool's run %lld min",
		    (long long)(d.run_s / 60), (long long)(want_run / 60));
		pool_said(m, "budget", d.reason);
		return;
	}
	snprintf(reason, sizeof reason, "to fill the warm pool (%ld of %lld waiting)", waiting,
	    (long long)cfg->pool_size);
	if (create_vm(m, &(struct vm_intent){.reason = reason, .confidence = 1, .purpose = "pool"},
	        name, sizeof name, &d) != 0)
		pool_said(m, d.rule, d.reason);
	else
		m->pool_rule[0] = '\0';
}

void
pool_said(struct manager *m, const char *rule, const char *why)
{
	/* Said once per rule, not once a pass. */
	if (strcmp(m->pool_rule, rule) == 0)
		return;
	snprintf(m->pool_rule, sizeof m->pool_rule, "%s", rule);
	log_info("pool: not refilled now: %s", why);
	records_event(m->records, "-", "pool", why, now_ms(m));
}
