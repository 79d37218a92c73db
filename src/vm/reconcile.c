/*
 * The monitoring pass: the ledger checked and flushed, the price asked once,
 * one list of what carries our owner label, the preemptions, then each VM
 * reconciled with what the cloud says (reconcile_one), the orphans found,
 * the health asked (probe.c), and the rules applied (rules.h). What the pass
 * listed is sorted by name so that each VM finds its instance in log time:
 * the pass is O(N log N) in the VMs, not quadratic.
 */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/pricing.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"
#include "vm/internal.h"
#include "vm/rules.h"

#define ORPHAN_WHY          "it carries our owner label but the ledger did not know it"
#define LEDGER_AGAIN_WHY    "written again: the ledger was deleted while spillway ran"
#define PREEMPT_LOOKBACK_MS 300000 /* preemptions are listed this far back, beyond two passes */
#define REST_PASS_MS        600000 /* at rest: the sweep for orphans */

static void on_timer(uv_timer_t *);

/*
 * At rest (nothing alive, nothing waiting for the ledger, calm pressure) the
 * pass is only the sweep for orphans: it runs every REST_PASS_MS, and at once
 * when pressure rises or a VM is asked for (wake). A laptop's daemon then
 * wakes about once in 30 s, not at every health-check interval.
 */
static bool
at_rest(const struct manager *m)
{
	/* Not while something failed: the list, the price, the ledger are tried again soon. */
	if (m->level != PRESSURE_NORMAL || m->last_failed || !m->price_known ||
	    records_problem(m->records, NULL) != NULL)
		return false;
	for (const struct mvm *v = m->vms; v != NULL; v = v->next)
		if (vm_state_alive(v->rec.state) || v->busy)
			return false;
	return true;
}

void
schedule(struct manager *m)
{
	int64_t every = m->cfg->health_check_interval * 1000;

	if (at_rest(m)) {
		if (every < REST_PASS_MS)
			every = REST_PASS_MS;
		ledger_rest(m->o.ledger); /* its next call opens it again */
#ifdef __GLIBC__
		/* What the pass's answers took goes back: at rest the daemon is small. */
		malloc_trim(0);
#endif
	}
	if (!m->stopping && m->cfg->enable_monitoring)
		uv_timer_start(&m->timer, on_timer, clock_timer_ms(m->o.clock, every), 0);
}

void
wake(struct manager *m)
{
	uint64_t every = clock_timer_ms(m->o.clock, m->cfg->health_check_interval * 1000);

	if (m->handles > 0 && !m->passing && !m->stopping && m->cfg->enable_monitoring &&
	    uv_is_active((uv_handle_t *)&m->timer) && uv_timer_get_due_in(&m->timer) > every)
		uv_timer_start(&m->timer, on_timer, every, 0);
}

static int
seen_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cloud_seen *)a)->name, ((const struct cloud_seen *)b)->name);
}

static int
preempted_cmp(const void *a, const void *b)
{
	const struct cloud_preempted *x = a, *y = b;
	int c = strcmp(x->target, y->target);

	/* The earliest first: a VM is preempted once, but a list may say it twice. */
	return c != 0 ? c : (x->t_ms > y->t_ms) - (x->t_ms < y->t_ms);
}

static int
vm_cmp(const void *a, const void *b)
{
	return strcmp((*(struct mvm *const *)a)->rec.name, (*(struct mvm *const *)b)->rec.name);
}

/* The index of a listed instance by name, or -1. */
static ssize_t
find_listed(const struct manager *m, const char *name)
{
	struct cloud_seen key;
	const struct cloud_seen *it;

	snprintf(key.name, sizeof key.name, "%s", name);
	it = m->nlisted > 0 ? bsearch(&key, m->listed, m->nlisted, sizeof *m->listed, seen_cmp)
	                    : NULL;
	return it != NULL ? it - m->listed : -1;
}

/* The earliest preemption of a VM, if the pass listed one. */
static bool
was_preempted(struct manager *m, const char *name, int64_t *when)
{
	size_t lo = 0, hi = m->npreemptions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(m->preemptions[mid].target, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == m->npreemptions || strcmp(m->preemptions[lo].target, name) != 0)
		return false;
	*when = m->preemptions[lo].t_ms;
	return true;
}

/* From the preemption operations, or the notice the VM's agent passed on. */
void
mark_preempted(struct mvm *v, int64_t when, const char *why)
{
	struct manager *m = v->m;

	if (v->preempted || !vm_state_alive(v->rec.state))
		return;
	v->preempted = true;
	v->preempted_ms = when;
	records_event(m->records, v->rec.name, "preempted", why, now_ms(m));
	/* Spot capacity is short there: a replacement goes elsewhere, now. */
	skip_zone(m, v->rec.zone, "a VM was preempted there");
	m->cooldown_until = 0;
}

/* Alive in the ledger, its insert taken effect, and no longer in the cloud. */
static void
vanished(struct manager *m, struct mvm *v, int64_t now)
{
	/*
	 * A start no pass saw is taken as its request (a pooled VM's: when it
	 * was taken): more rather than less. One waiting in the pool ran nothing.
	 */
	int64_t start = v->rec.started_ms > 0 ? v->rec.started_ms
	    : v->rec.state == VM_STARTING     ? v->rec.state_ms
	                                      : v->rec.requested_ms;
	int64_t stop = start + v->rec.planned_run_s * 1000;
	const char *why;

	/*
	 * A Spot VM that vanished on its own was most likely preempted (its
	 * termination action is DELETE): without this pass's preemptions, wait
	 * for a pass that has them (they look back to before the oldest VM
	 * alive), or for the end of its planned run, which bounds its cost.
	 */
	if (v->rec.state != VM_TERMINATING && v->rec.state != VM_POOLED && v->rec.spot &&
	    !v->preempted && m->preemptions_failed && now < stop)
		return;
	/* Its insert took effect: billed even if no pass saw it start. */
	if (v->rec.state == VM_POOLED)
		pool_waited(v, now);
	else if (v->rec.state != VM_TERMINATING)
		v->rec.started_ms = start;
	why = v->rec.state == VM_TERMINATING ? "deleted"
	    : v->rec.state == VM_POOLED      ? "gone from the pool: deleted outside spillway"
	    : v->preempted                   ? "preempted by Compute Engine"
	    : now >= stop - 1000             ? "maxRunDuration reached: Compute Engine deleted it"
	                                     : "gone: deleted outside spillway";
	if (v->rec.state != VM_TERMINATING) {
		snprintf(v->rec.end_reason, sizeof v->rec.end_reason, "%s", why);
		v->end_state = VM_TERMINATED;
	}
	finish_termination(v);
}

/* What the cloud says of a VM that the ledger has alive. */
static void
reconcile_one(struct manager *m, struct mvm *v, const struct cloud_seen *inst)
{
	int64_t now = now_ms(m), when = 0;
	const char *status = inst != NULL ? inst->status : NULL;
	bool preempted = was_preempted(m, v->rec.name, &when);
	struct verdict verdict;

	if (v->busy)
		return;
	if (preempted)
		mark_preempted(v, when > 0 ? when : now, "Compute Engine preempted it");
	if (inst != NULL) {
		if (inst->started_ms > 0)
			v->rec.started_ms = inst->started_ms;
		if (inst->nat_ip[0] != '\0')
			snprintf(v->rec.nat_ip, sizeof v->rec.nat_ip, "%s", inst->nat_ip);
		switch (v->rec.state) {
		case VM_REQUESTED:
		case VM_CREATING:
		case VM_PROVISIONING:
			if (strcmp(status, "RUNNING") == 0) {
				set_state(v, VM_BOOTING, "it runs");
				break;
			}
			rules_judge(
			    m->cfg, &v->rec, &(struct rules_seen){.status = status}, now, &verdict);
			if (verdict.kind == VERDICT_GIVE_UP)
				give_up_create(v, verdict.reason);
			else if (v->rec.state != VM_PROVISIONING)
				set_state(v, VM_PROVISIONING, "the insert took effect");
			break;
		case VM_BOOTING:
		case VM_READY:
		case VM_UNHEALTHY:
		case VM_DRAINING:
			/* Still running: its notice's time, as when its agent passes the notice on.
			 */
			if (v->preempted && strcmp(status, "RUNNING") == 0)
				leave(v, "preempted by Compute Engine", VM_PREEMPTED,
				    preempt_drain_ms(m));
			else if (v->preempted)
				terminate(v, "preempted by Compute Engine", VM_PREEMPTED);
			else if (strcmp(status, "TERMINATED") == 0 ||
			    strcmp(status, "STOPPING") == 0)
				terminate(v, "stopped by Compute Engine", VM_TERMINATED);
			break;
		case VM_POOLING:
		case VM_POOLED:
		case VM_STARTING:
			pool_seen(v, status);
			break;
		case VM_IMAGING:
			if (v->preempted)
				terminate(v, "preempted by Compute Engine", VM_PREEMPTED);
			else
				bake_step(v, status);
			break;
		case VM_TERMINATING:
			send_delete(v); /* the same requestId: never a second delete */
			break;
		default:
			break;
		}
		return;
	}
	/* Not in the cloud, unless the list was asked before its latest state. */
	if (v->rec.state_ms >= m->list_sent_ms)
		return;
	switch (v->rec.state) {
	case VM_REQUESTED:
	case VM_CREATING:
	case VM_PROVISIONING:
		/*
		 * The same requestId again: never a second VM, and the answer says
		 * whether the insert took effect (even past the create deadline, so
		 * that a VM that ran unseen is billed, on_inserted).
		 */
		if (!v->preempted)
			send_insert(v);
		else /* only a running VM is preempted: it ran, though no pass saw it */
			vanished(m, v, now);
		break;
	case VM_BOOTING:
	case VM_READY:
	case VM_UNHEALTHY:
	case VM_DRAINING:
	case VM_IMAGING:
	case VM_POOLING:
	case VM_POOLED:
	case VM_STARTING:
	case VM_TERMINATING:
		vanished(m, v, now);
		break;
	case VM_ORPHANED:
		set_state(v, VM_TERMINATED, "the orphan went away");
		break;
	default:
		break;
	}
}

/* Instances with our label that the ledger does not have alive. */
static void
find_orphans(struct manager *m, struct mvm **byname, size_t nvms)
{
	/* Stopping: an orphan now would hold the shutdown; the next start finds it. */
	if (m->stopping)
		return;
	for (size_t i = 0; i < m->nlisted; i++) {
		const struct cloud_seen *it = &m->listed[i];
		const char *name = it->name;
		struct mvm key = {0}, *kp = &key, **found, *v;
		struct vm_record rec;
		int64_t now = now_ms(m);

		if (m->claimed[i])
			continue;
		snprintf(key.rec.name, sizeof key.rec.name, "%s", name);
		found = nvms > 0 ? bsearch(&kp, byname, nvms, sizeof *byname, vm_cmp) : NULL;
		v = found != NULL ? *found : NULL;
		if (v != NULL && vm_state_alive(v->rec.state))
			continue;
		/* It ended after the list was asked (its delete is done): the list is stale. */
		if (v != NULL && v->rec.state_ms >= m->list_sent_ms)
			continue;
		if (v != NULL && v->rec.state == VM_PREEMPTED)
			continue; /* it goes away by itself */
		if (v == NULL) {
			int got = ledger_get(m->o.ledger, name, &rec);
			bool known = got == 0;

			/* Preempted: it goes away by itself (its termination action is DELETE). */
			if (known && rec.state == VM_PREEMPTED)
				continue;
			if (got != 0 && got != -ENOENT)
				continue; /* the ledger cannot say: the next pass looks again */
			if (!known) {
				memset(&rec, 0, sizeof rec);
				snprintf(rec.name, sizeof rec.name, "%s", name);
				rec.requested_ms = rec.state_ms = now;
				rec.state = VM_ORPHANED;
			}
			snprintf(rec.zone, sizeof rec.zone, "%s", it->zone);
			snprintf(rec.machine_type, sizeof rec.machine_type, "%s", it->machine_type);
			rec.spot = it->spot;
			rec.planned_run_s = it->max_run_s;
			rec.started_ms = it->started_ms;
			snprintf(rec.nat_ip, sizeof rec.nat_ip, "%s", it->nat_ip);
			if (strcmp(rec.machine_type, m->cfg->machine_type) == 0 &&
			    rec.spot == m->cfg->use_spot)
				rec.per_hour = m->per_hour;
			/* Deleted once already: a delete again needs a requestId of its own. */
			if (rec.delete_request_id[0] != '\0')
				uuid_derived(
				    rec.delete_request_id, "delete", rec.delete_request_id);
			v = add_vm(m, &rec);
			if (!known)
				records_save(m->records, &v->rec, -1, ORPHAN_WHY, now);
		}
		if (strcmp(m->cfg->orphan_policy, "adopt") == 0) {
			v->adopted = true;
			set_state(v,
			    strcmp(it->status, "RUNNING") == 0 ? VM_BOOTING : VM_PROVISIONING,
			    "adopted: it carries our owner label");
		} else {
			set_state(v, VM_ORPHANED, ORPHAN_WHY);
		}
	}
}

/*
 * Each VM alive with its instance, then what is left of the list: orphans.
 * The list and the preemptions are sorted once and the VMs indexed by name
 * once, so a pass costs N log N, not N².
 */
static void
reconcile(struct manager *m)
{
	struct mvm **byname = xcalloc(m->nvms + 1, sizeof *byname);
	size_t n = 0;

	if (m->nlisted > 0)
		qsort(m->listed, m->nlisted, sizeof *m->listed, seen_cmp);
	if (m->npreemptions > 0) /* NULL when they could not be listed */
		qsort(m->preemptions, m->npreemptions, sizeof *m->preemptions, preempted_cmp);
	m->claimed = xcalloc(m->nlisted + 1, sizeof *m->claimed);
	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		byname[n++] = v;
		if (vm_state_alive(v->rec.state)) {
			ssize_t i = find_listed(m, v->rec.name);

			if (i >= 0)
				m->claimed[i] = true;
			reconcile_one(m, v, i >= 0 ? &m->listed[i] : NULL);
		}
	}
	qsort(byname, n, sizeof *byname, vm_cmp);
	find_orphans(m, byname, n);
	free(byname);
}

/* The rules (rules.h), once the pass knows what runs and what is healthy. */
static void
enforce(struct manager *m)
{
	int64_t now = now_ms(m);

	if (m->o.passive)
		return;
	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		struct rules_seen seen = {.progress_ms = v->progress_ms};
		struct verdict verdict;

		/* Creating: judged where its listing is (reconcile_one). */
		if (v->busy || !vm_state_alive(v->rec.state) || v->rec.state <= VM_PROVISIONING)
			continue;
		seen.routed_open = vm_traffic(v, &seen.routed_ms);
		seen.lead_ms = rules_lead_ms(m->cfg, &v->rec);
		rules_judge(m->cfg, &v->rec, &seen, now, &verdict);
		if (verdict.kind == VERDICT_KEEP) {
			stay(v);
			continue;
		}
		go(v, verdict.reason, verdict.end, false);
		if (verdict.replace_now)
			m->cooldown_until = 0;
	}
}

/* What the pass listed: kept while it runs, no longer. */
void
forget_pass(struct manager *m)
{
	free(m->listed);
	free(m->claimed);
	free(m->preemptions);
	m->listed = NULL;
	m->claimed = NULL;
	m->preemptions = NULL;
	m->nlisted = m->npreemptions = 0;
}

void
pass_done(struct manager *m)
{
	m->last_failed = false;
	enforce(m);
	prune(m);
	consider(m);
	pool_refill(m);
	forget_pass(m);
	m->passing = false;
	m->counts.passes++;
	m->counts.last_pass_ms = (monotonic_ns() - m->pass_started_ns) / 1000000;
	schedule(m);
}

static void
on_preemptions(const struct cloud_error *e, const struct cloud_op *ops, size_t n, void *arg)
{
	struct manager *m = arg;

	m->preemptions_failed = e->code != CLOUD_OK;
	if (e->code == CLOUD_OK) {
		m->preemptions = xcalloc(n + 1, sizeof *m->preemptions);
		for (size_t i = 0; i < n && !m->preemptions_failed; i++)
			m->preemptions_failed =
			    cloud_preempted_copy(&ops[i], &m->preemptions[m->npreemptions++]) != 0;
	}
	if (m->preemptions_failed) {
		char *t = cloud_error_text(e);

		log_warnx("manager: cannot list preemptions: %s", t);
		free(t);
	}
	reconcile(m);
	check_health(m);
}

static void
on_listed(const struct cloud_error *e, const struct cloud_instance *list, size_t n, void *arg)
{
	struct manager *m = arg;

	if (e->code != CLOUD_OK) {
		char *t = cloud_error_text(e);

		/* A partial list would look like deleted VMs: reconcile nothing this time. */
		log_warnx("manager: cannot list the VMs (%s); trying again at the next pass", t);
		free(t);
		m->list_failed = m->last_failed = true;
		m->passing = false;
		schedule(m);
		return;
	}
	m->listed = xcalloc(n + 1, sizeof *m->listed);
	for (m->nlisted = 0; m->nlisted < n; m->nlisted++) {
		if (cloud_seen_copy(&list[m->nlisted], &m->listed[m->nlisted]) != 0) {
			/* The provider checks what it passes on; a partial list is never used. */
			log_warnx("manager: the list of VMs holds one that cannot be kept; trying "
			          "again at the next pass");
			forget_pass(m);
			m->list_failed = m->last_failed = true;
			m->passing = false;
			schedule(m);
			return;
		}
	}
	m->counts.api_calls += (long)str_list_len((char *const *)m->o.zones);
	if (m->o.cloud->ops->preemptions(m->o.cloud, m->o.zones, m->preempt_since,
	        now_ms(m) + CALL_DEADLINE_MS, on_preemptions, m) != 0)
		on_preemptions(&(struct cloud_error){.code = CLOUD_INVALID, .message = "not sent"},
		    NULL, 0, m);
}

static void
on_machine_type(const struct cloud_error *e, const struct cloud_machine_type *mt, void *arg)
{
	struct manager *m = arg;
	const struct config *cfg = m->cfg;
	char *cause = NULL;

	m->price_asked = false;
	if (e->code != CLOUD_OK) {
		char *t = cloud_error_text(e);

		snprintf(m->price_why, sizeof m->price_why, "cannot get machine type %s: %s",
		    cfg->machine_type, t);
		log_warnx("manager: %s", m->price_why);
		free(t);
		return;
	}
	{
		struct price_query q = {.machine_type = cfg->machine_type,
		    .region = cfg->region,
		    .spot = cfg->use_spot,
		    .vcpus = mt->vcpus,
		    .memory_mb = mt->memory_mb,
		    .disk_gb = (int)cfg->disk_gb,
		    .disk_type = cfg->disk_type,
		    .external_ip = true};
		struct price p;

		if (price_lookup(m->o.catalog, &q, &p, &cause) != 0) {
			snprintf(m->price_why, sizeof m->price_why, "%s", cause);
			log_warnx("manager: %s", cause);
			free(cause);
			return;
		}
		m->per_hour = p.per_hour;
		m->memory_mb = mt->memory_mb;
		m->price_known = true;
		log_info("manager: %s (%d vCPUs, %d MiB, %s) costs $%.4f/h in %s (prices of %s)",
		    cfg->machine_type, mt->vcpus, mt->memory_mb,
		    cfg->use_spot ? "Spot" : "standard", p.per_hour, cfg->region, p.effective);
	}
}

/*
 * How far back the pass asks for preemptions: to before the oldest VM alive
 * was asked for, so that a slow pass, or a daemon that was down, misses
 * none; else a few minutes.
 */
static int64_t
preemptions_since(const struct manager *m)
{
	int64_t since = now_ms(m) - 2 * m->cfg->health_check_interval * 1000 - PREEMPT_LOOKBACK_MS;

	for (const struct mvm *v = m->vms; v != NULL; v = v->next)
		if (vm_state_alive(v->rec.state) && v->rec.requested_ms - 60000 < since)
			since = v->rec.requested_ms - 60000;
	return since;
}

/*
 * The ledger deleted (or another file put in its place) while we run: what we
 * wrote would go where nobody finds it. The file there is opened (a new one
 * made), and what is alive is written into it, said once.
 */
static void
check_ledger(struct manager *m)
{
	bool reopened = false;
	char *cause = NULL;
	int n = 0;

	if (ledger_refresh(m->o.ledger, &reopened, &cause) != 0) {
		if (!m->ledger_lost_said)
			log_warnx("%s; what happens is kept in memory meanwhile", cause);
		m->ledger_lost_said = true;
		free(cause);
		return;
	}
	m->ledger_lost_said = false;
	if (!reopened)
		return;
	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (vm_state_alive(v->rec.state) || records_waiting(m->records, v->rec.name)) {
			records_save(m->records, &v->rec, -1, LEDGER_AGAIN_WHY, now_ms(m));
			n++;
		}
	log_warnx("the ledger %s was deleted or replaced while spillway ran: the file there now "
	          "holds what is alive (%d VM%s); what ended before is not in it",
	    ledger_path(m->o.ledger), n, n == 1 ? "" : "s");
}

/* The machine type's size, for its price: once, until it is known (or changes). */
void
ask_price(struct manager *m)
{
	if (m->price_known || m->price_asked)
		return;
	m->price_asked = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->machine_type(m->o.cloud, m->o.zones[0], m->cfg->machine_type,
	        now_ms(m) + CALL_DEADLINE_MS, on_machine_type, m) != 0)
		m->price_asked = false;
}

/* Once a day (and at the first pass), what is past ledger.retention_days is summarised. */
static void
retain(struct manager *m)
{
	int64_t now = now_ms(m);
	int pruned;

	if (m->cfg->retention_days <= 0 || m->o.passive ||
	    (m->retained_ms > 0 && now - m->retained_ms < 86400000))
		return;
	m->retained_ms = now;
	if (ledger_prune(m->o.ledger, now, (int)m->cfg->retention_days, &pruned) != 0)
		log_warnx(
		    "the ledger keeps its old records for now: %s", ledger_error(m->o.ledger));
	else if (pruned > 0)
		log_info("ledger: %d VM%s ended over %lld days ago summarised per day", pruned,
		    pruned == 1 ? "" : "s", (long long)m->cfg->retention_days);
}

void
pass(struct manager *m)
{
	if (m->passing || m->stopping)
		return;
	m->passing = true;
	m->pass_started_ns = monotonic_ns();
	check_ledger(m);
	/* What the ledger could not take before, first; then the WAL is cut back. */
	if (records_flush(m->records, now_ms(m)) == 0) {
		retain(m);
		ledger_checkpoint(m->o.ledger);
	}
	ask_price(m);
	m->counts.api_calls += (long)str_list_len((char *const *)m->o.zones);
	m->list_sent_ms = now_ms(m);
	if (m->o.cloud->ops->list(m->o.cloud, m->o.zones, "spillway-owner", m->o.owner,
	        now_ms(m) + CALL_DEADLINE_MS, on_listed, m) != 0) {
		log_warnx("manager: cannot list: the owner label or a zone is not valid");
		m->passing = false;
		schedule(m);
	}
	m->preempt_since = preemptions_since(m);
}

static void
on_timer(uv_timer_t *t)
{
	pass(t->data);
}

/* Whether a VM's price is another under this configuration: asked again, at once. */
