#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger/pricing.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"
#include "vm/health.h"
#include "vm/manager.h"
#include "vm/records.h"
#include "vm/startup.h"

#define CALL_DEADLINE_MS       120000
#define HEALTH_ANSWER_MAX      65536
#define MAX_SKIPS              32
#define QUOTA_BACKOFF_FIRST_MS (5 * 60000)
#define QUOTA_BACKOFF_MAX_MS   (30 * 60000)
#define QUOTA_BACKOFF_RESET_MS (3 * 3600000)
#define FAILURE_BACKOFF_MS     (5 * 60000)
#define SHUTDOWN_POLL_MS       100
#define ORPHAN_WHY             "it carries our owner label but the ledger did not know it"
#define LEDGER_AGAIN_WHY       "written again: the ledger was deleted while spillway ran"
#define BOOT_PROBE_MS          1000   /* a booting VM is READY within this of its backend */
#define PREEMPT_LOOKBACK_MS    300000 /* preemptions are listed this far back, beyond two passes */

struct mvm {
	struct manager *m;
	struct vm_record rec;
	bool busy;             /* a cloud call about it is in flight */
	char *terminate_after; /* terminate once the call in flight is done, for this reason */
	bool announced;        /* MEV_READY was sent, MEV_GONE not yet: its components are there */
	bool adopted;          /* taken over: its next READY is announced as "adopted" */
	bool preempted;
	int64_t preempted_ms;
	enum vm_state end_state; /* what TERMINATING ends in */
	int64_t gave_up_ms;      /* its create was given up then (it did not run yet) */
	int64_t deleted_ms;      /* when the cloud took its delete */
	int64_t boot_moved_s;    /* booting: the agent's last "boot.updated" (its clock) */
	int64_t progress_ms;     /* booting: when we saw it move (ours) */
	struct http_call *health;
	bool probe; /* the health call in flight is a boot probe, not the pass's */
	struct mvm *next;
};

struct consumer {
	manager_event_cb *cb;
	void *arg;
};

struct skip {
	char zone[64];
	int64_t until;
};

struct manager {
	uv_loop_t *loop;
	struct manager_opts o;
	const struct config *cfg;
	struct records *records; /* every write to the ledger, kept when it cannot take it */
	bool ledger_lost_said;   /* the ledger's file could not be made again: said */
	struct mvm *vms;
	uv_timer_t timer;
	uv_timer_t probe; /* health of BOOTING VMs, more often than the passes */
	int handles;      /* open timers, for the release */
	bool passing;
	bool list_failed; /* a pass could not list the VMs: what is asked need not wait for one */
	bool preemptions_failed; /* this pass could not list the preemptions */
	int health_pending;
	int64_t pass_started_ns;
	int64_t list_sent_ms; /* when the pass's list was asked: what ended since is newer */
	int64_t preempt_since;
	struct cloud_seen *listed; /* the pass's instances, while it runs */
	size_t nlisted;
	struct cloud_preempted *preemptions; /* the pass's preemption operations */
	size_t npreemptions;
	/* pressure */
	struct pressure_snapshot snap;
	enum pressure_level level;
	int64_t level_since;
	/* rules' state */
	int64_t cooldown_until;
	char cooldown_why[160];
	int64_t backoff_until;
	int64_t backoff_step;
	bool backoff_quota; /* the backoff is the quota's, else a failure's */
	int64_t last_failure;
	char backoff_why[512];
	struct skip skips[MAX_SKIPS];
	int nskips;
	/* the price of a VM of the configured type */
	bool price_known;
	bool price_asked;
	double per_hour;
	int vcpus, memory_mb;
	char price_why[256];
	char last_rule[16];
	struct consumer *consumers;
	size_t nconsumers;
	/* shutdown */
	bool stopping;
	int64_t stop_deadline_ns;
	void (*done)(void *);
	void *done_arg;
	struct manager_counts counts;
};

static int64_t
now_ms(const struct manager *m)
{
	return clock_now_ms(m->o.clock);
}

static int64_t
minutes(double m)
{
	return (int64_t)(m * 60000.0);
}

static void
emit(struct manager *m, const struct manager_event *e)
{
	for (size_t i = 0; i < m->nconsumers; i++)
		m->consumers[i].cb(e, m->consumers[i].arg);
}

void
manager_on_event(struct manager *m, manager_event_cb *cb, void *arg)
{
	m->consumers = xreallocarray(m->consumers, m->nconsumers + 1, sizeof *m->consumers);
	m->consumers[m->nconsumers++] = (struct consumer){cb, arg};
}

/* --- states --- */

static void probe_soon(struct manager *);

/* Up, and so checked each pass: its backend's health and use. */
static bool
up(enum vm_state s)
{
	return s == VM_BOOTING || s == VM_READY || s == VM_UNHEALTHY;
}

/*
 * The components are on a VM exactly while it is READY: the application hears
 * "offload" when it turns READY (created, recovered, adopted) and "return" the
 * moment it stops being READY, with why, whatever comes next.
 */
static void
announce(struct mvm *v, enum vm_state from, const char *reason)
{
	bool ready = v->rec.state == VM_READY;
	struct manager_event e = {
	    ready ? MEV_READY : MEV_GONE, now_ms(v->m), &v->rec, (int)from, reason, NULL, NULL, 0};
	char why[sizeof v->rec.end_reason + 16];

	if (ready == v->announced)
		return;
	if (ready) {
		e.reason = v->adopted ? "adopted" : from == VM_UNHEALTHY ? "recovered" : "created";
		v->adopted = false;
	} else if (v->rec.state == VM_UNHEALTHY) {
		snprintf(why, sizeof why, "unhealthy: %s", reason != NULL ? reason : "");
		e.reason = why;
	}
	v->announced = ready;
	emit(v->m, &e);
}

static void
set_state(struct mvm *v, enum vm_state to, const char *reason)
{
	struct manager *m = v->m;
	enum vm_state from = v->rec.state;
	struct manager_event e = {MEV_STATE, now_ms(m), &v->rec, (int)from, reason, NULL, NULL, 0};

	if (from == to)
		return;
	v->rec.state = to;
	v->rec.state_ms = e.t_ms;
	if (to == VM_READY && v->rec.ready_ms == 0)
		v->rec.ready_ms = e.t_ms;
	/* Why it ends is said when it starts to end (terminate), or here. */
	if ((to == VM_TERMINATING || !vm_state_alive(to)) && reason != NULL &&
	    v->rec.end_reason[0] == '\0')
		snprintf(v->rec.end_reason, sizeof v->rec.end_reason, "%s", reason);
	records_save(m->records, &v->rec, (int)from, reason, e.t_ms);
	log_info("%s: %s -> %s%s%s", v->rec.name, vm_state_name(from), vm_state_name(to),
	    reason ? ": " : "", reason ? reason : "");
	emit(m, &e);
	if (to == VM_BOOTING)
		probe_soon(m);
	announce(v, from, reason);
}

static struct mvm *
find_vm(struct manager *m, const char *name)
{
	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (strcmp(v->rec.name, name) == 0)
			return v;
	return NULL;
}

static struct mvm *
add_vm(struct manager *m, const struct vm_record *rec)
{
	struct mvm *v = xcalloc(1, sizeof *v), **tail = &m->vms;

	v->m = m;
	v->rec = *rec;
	v->end_state = VM_TERMINATED;
	/* A READY VM from the ledger is announced again once it answers: the application may
	 * have restarted too. */
	v->adopted = rec->state == VM_READY;
	while (*tail != NULL)
		tail = &(*tail)->next;
	*tail = v;
	return v;
}

/* Forget what is over and idle in memory; the ledger keeps it. */
static void
prune(struct manager *m)
{
	struct mvm **p = &m->vms;

	while (*p != NULL) {
		struct mvm *v = *p;

		if (!vm_state_alive(v->rec.state) && !v->busy && v->health == NULL &&
		    !records_waiting(m->records, v->rec.name)) {
			*p = v->next;
			free(v->terminate_after);
			free(v);
		} else {
			p = &v->next;
		}
	}
}

/* --- zones and backoff --- */

static bool
zone_skipped(struct manager *m, const char *zone)
{
	int64_t now = now_ms(m);

	for (int i = 0; i < m->nskips; i++)
		if (strcmp(m->skips[i].zone, zone) == 0 && m->skips[i].until > now)
			return true;
	return false;
}

static void
skip_zone(struct manager *m, const char *zone, const char *why)
{
	int64_t until = now_ms(m) + minutes(m->cfg->stockout_skip_minutes);
	int i;

	for (i = 0; i < m->nskips && strcmp(m->skips[i].zone, zone) != 0; i++)
		;
	if (i == m->nskips && m->nskips < MAX_SKIPS)
		m->nskips++;
	if (i < MAX_SKIPS) {
		snprintf(m->skips[i].zone, sizeof m->skips[i].zone, "%s", zone);
		m->skips[i].until = until;
	}
	log_info(
	    "manager: skipping zone %s for %.0f min: %s", zone, m->cfg->stockout_skip_minutes, why);
}

static const char *
next_zone(struct manager *m, const char *after)
{
	bool passed = after == NULL;

	for (const char *const *z = m->o.zones; *z != NULL; z++) {
		if (!passed) {
			passed = strcmp(*z, after) == 0;
			continue;
		}
		if (!zone_skipped(m, *z))
			return *z;
	}
	/* Wrap around: an earlier zone may have come back. */
	for (const char *const *z = m->o.zones; *z != NULL; z++)
		if ((after == NULL || strcmp(*z, after) != 0) && !zone_skipped(m, *z))
			return *z;
	return NULL;
}

static int
zones_available(struct manager *m)
{
	int n = 0;

	for (const char *const *z = m->o.zones; *z != NULL; z++)
		n += !zone_skipped(m, *z);
	return n;
}

static void
back_off(struct manager *m, const struct cloud_error *e, const char *name)
{
	int64_t now = now_ms(m);
	char *text = cloud_error_text(e);

	if (e->code == CLOUD_QUOTA) {
		/* 5 min, doubling to 30; forgotten after 3 h without a failure. */
		if (m->backoff_step == 0 || now - m->last_failure > QUOTA_BACKOFF_RESET_MS)
			m->backoff_step = QUOTA_BACKOFF_FIRST_MS;
		else if (m->backoff_step < QUOTA_BACKOFF_MAX_MS)
			m->backoff_step *= 2;
		if (m->backoff_step > QUOTA_BACKOFF_MAX_MS)
			m->backoff_step = QUOTA_BACKOFF_MAX_MS;
		m->backoff_until = now + m->backoff_step;
	} else {
		m->backoff_until = now + FAILURE_BACKOFF_MS;
	}
	m->backoff_quota = e->code == CLOUD_QUOTA;
	m->last_failure = now;
	snprintf(m->backoff_why, sizeof m->backoff_why, "%s failed: %s", name, text);
	records_event(m->records, name, "backoff", m->backoff_why, now);
	free(text);
}

static void
cool_down(struct manager *m, const char *why)
{
	m->cooldown_until = now_ms(m) + minutes(m->cfg->cooldown_minutes);
	snprintf(m->cooldown_why, sizeof m->cooldown_why, "%s", why);
}

/* --- termination --- */

static void finish_termination(struct mvm *);
static void terminate(struct mvm *, const char *reason, enum vm_state end);
static bool transient(enum cloud_errc);

/*
 * What became of the insert of a VM given up before it ran: DONE before the
 * cloud took its delete, it ran from then and is billed; ended with an error,
 * or by the delete itself, it never ran. No answer: taken as run from the
 * moment it was given up, more rather than less.
 */
static void
on_insert_fate(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;

	v->busy = false;
	if (e->code == CLOUD_OK && op->done && op->ended_ms > 0 && op->ended_ms < v->deleted_ms)
		v->rec.started_ms = op->ended_ms;
	else if (e->code != CLOUD_OK && (transient(e->code) || e->code == CLOUD_NOT_FOUND))
		v->rec.started_ms = v->gave_up_ms;
	finish_termination(v);
}

/* The delete is done (op: its operation, or NULL when the VM was gone already). */
static void
deleted(struct mvm *v, const struct cloud_op *op)
{
	struct manager *m = v->m;

	/* Given up before it ran: it may have started while its delete was on the way. */
	if (v->gave_up_ms > 0 && v->rec.started_ms <= 0 && v->rec.op[0] != '\0') {
		v->deleted_ms = op != NULL && op->inserted_ms > 0 ? op->inserted_ms : now_ms(m);
		v->busy = true;
		m->counts.api_calls++;
		if (m->o.cloud->ops->wait(m->o.cloud, v->rec.zone, v->rec.op,
		        now_ms(m) + CALL_DEADLINE_MS, on_insert_fate, v) == 0)
			return;
		v->busy = false;
	}
	finish_termination(v);
}

static void
on_delete_done(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;

	v->busy = false;
	if (e->code == CLOUD_OK || e->code == CLOUD_NOT_FOUND) {
		deleted(v, e->code == CLOUD_OK ? op : NULL);
		return;
	}
	/* Still TERMINATING: the next pass sends the same delete again. */
	{
		char *t = cloud_error_text(e);

		log_warnx("%s: the delete did not finish: %s; trying again at the next pass",
		    v->rec.name, t);
		free(t);
	}
}

static void
on_deleted(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;
	struct manager *m = v->m;

	v->busy = false;
	if (e->code != CLOUD_OK) {
		on_delete_done(e, op, arg);
		return;
	}
	if (op->name == NULL || op->done) {
		deleted(v, op->name != NULL ? op : NULL);
		return;
	}
	v->busy = true;
	if (m->o.cloud->ops->wait(m->o.cloud, op->zone, op->name, now_ms(m) + CALL_DEADLINE_MS,
	        on_delete_done, v) != 0)
		v->busy = false;
}

static void
send_delete(struct mvm *v)
{
	struct manager *m = v->m;

	v->busy = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->destroy(m->o.cloud, v->rec.zone, v->rec.name, v->rec.delete_request_id,
	        now_ms(m) + CALL_DEADLINE_MS, on_deleted, v) != 0) {
		v->busy = false;
		log_warnx("%s: cannot send the delete", v->rec.name);
	}
}

static void
terminate(struct mvm *v, const char *reason, enum vm_state end)
{
	if (!vm_state_alive(v->rec.state))
		return;
	if (v->busy) {
		/* After the call in flight: an insert may still land, and must go too. */
		free(v->terminate_after);
		v->terminate_after = xstrdup(reason);
		v->end_state = end;
		return;
	}
	v->end_state = end;
	/*
	 * The delete's requestId is in the ledger before the delete is sent, and
	 * derived from the insert's: a delete sent while the ledger could not take
	 * it (a full disk) is the same delete after a crash, never a second one.
	 */
	if (v->rec.delete_request_id[0] == '\0')
		uuid_derived(v->rec.request_id[0] != '\0' ? v->rec.request_id : v->rec.name,
		    "delete", v->rec.delete_request_id);
	if (v->rec.state != VM_TERMINATING)
		set_state(v, VM_TERMINATING, reason);
	send_delete(v);
}

static void
close_cost(struct mvm *v, int64_t end, bool preempted)
{
	if (v->rec.started_ms > 0 && end < v->rec.started_ms)
		end = v->rec.started_ms;
	v->rec.ended_ms = end;
	records_close_cost(v->m->records, &v->rec, preempted);
}

static void
finish_termination(struct mvm *v)
{
	struct manager *m = v->m;
	int64_t end = v->preempted ? v->preempted_ms : now_ms(m);
	int64_t stop = v->rec.started_ms + v->rec.planned_run_s * 1000;

	/* Google's own stop (maxRunDuration) bounds what it could have cost. */
	if (v->rec.started_ms > 0 && v->rec.planned_run_s > 0 && end > stop)
		end = stop;
	close_cost(v, end, v->preempted);
	set_state(v, v->preempted ? VM_PREEMPTED : v->end_state,
	    v->preempted ? "preempted by Compute Engine" : "deleted");
	if (!v->preempted) /* a preempted VM is replaced at once, elsewhere */
		cool_down(m, "a VM ended just now");
}

/* --- creation --- */

static void on_inserted(const struct cloud_error *, const struct cloud_op *, void *);
static void send_insert(struct mvm *);

static void
after_call(struct mvm *v)
{
	if (v->terminate_after != NULL && !v->busy) {
		char *why = v->terminate_after;

		v->terminate_after = NULL;
		terminate(v, why, v->end_state);
		free(why);
	}
}

static void
on_got(const struct cloud_error *e, const struct cloud_instance *in, void *arg)
{
	struct mvm *v = arg;

	v->busy = false;
	if (e->code == CLOUD_OK) {
		if (in->nat_ip != NULL)
			snprintf(v->rec.nat_ip, sizeof v->rec.nat_ip, "%s", in->nat_ip);
		if (in->started_ms > 0)
			v->rec.started_ms = in->started_ms;
		records_save(v->m->records, &v->rec, (int)v->rec.state, NULL, now_ms(v->m));
	}
	after_call(v);
}

/* Past it, a VM that does not run yet is given up: deleted if it exists, FAILED. */
static bool
past_create_deadline(const struct mvm *v)
{
	return now_ms(v->m) - v->rec.requested_ms >= minutes(v->m->cfg->create_deadline_minutes);
}

static void
give_up_create(struct mvm *v, const char *why)
{
	struct cloud_error e = {CLOUD_DEADLINE, 0, NULL, why, NULL, NULL, 0, 0};

	back_off(v->m, &e, v->rec.name);
	v->gave_up_ms = now_ms(v->m);
	terminate(v, why, VM_FAILED);
}

/* A create that failed for good: another zone, or FAILED with a backoff. */
static void
create_failed(struct mvm *v, const struct cloud_error *e)
{
	struct manager *m = v->m;
	char *text = cloud_error_text(e);

	if (e->code == CLOUD_STOCKOUT && !past_create_deadline(v)) {
		const char *zone;

		skip_zone(m, e->zone != NULL ? e->zone : v->rec.zone, text);
		if ((zone = next_zone(m, v->rec.zone)) != NULL && v->terminate_after == NULL) {
			char *why =
			    xasprintf("zone %s has no capacity; trying %s", v->rec.zone, zone);

			log_info("%s: %s", v->rec.name, why);
			records_event(m->records, v->rec.name, "stockout", why, now_ms(m));
			/* A new zone is a new insert: a new requestId, in the ledger first. */
			snprintf(v->rec.zone, sizeof v->rec.zone, "%s", zone);
			uuid_v4(v->rec.request_id);
			v->rec.zones_tried++;
			v->rec.op[0] = '\0';
			records_save(m->records, &v->rec, (int)v->rec.state, NULL, now_ms(m));
			send_insert(v);
			free(why);
			free(text);
			return;
		}
	}
	back_off(m, e, v->rec.name);
	set_state(v, VM_FAILED, text);
	close_cost(v, v->rec.started_ms, false);
	free(text);
}

static bool
transient(enum cloud_errc c)
{
	return c == CLOUD_NETWORK || c == CLOUD_DEADLINE || c == CLOUD_SERVER ||
	    c == CLOUD_RATE_LIMITED;
}

static void
on_created(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;
	struct manager *m = v->m;

	v->busy = false;
	if (e->code == CLOUD_OK) {
		set_state(v, VM_BOOTING, "the insert is DONE");
		v->busy = true;
		m->counts.api_calls++;
		if (m->o.cloud->ops->get(m->o.cloud, v->rec.zone, v->rec.name,
		        now_ms(m) + CALL_DEADLINE_MS, on_got, v) != 0)
			v->busy = false;
	} else if (!transient(e->code)) {
		create_failed(v, e);
	}
	/* Transient: still PROVISIONING; the next pass finds out how it went. */
	after_call(v);
}

static void
on_inserted(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;
	struct manager *m = v->m;

	v->busy = false;
	if (e->code == CLOUD_OK) {
		int64_t deadline = v->rec.requested_ms + minutes(m->cfg->create_deadline_minutes);

		snprintf(v->rec.op, sizeof v->rec.op, "%s", op->name);
		set_state(v, VM_PROVISIONING, "Compute Engine accepted the insert");
		/*
		 * Past the deadline the insert is sent again only to learn its fate: a
		 * DONE operation is a VM that ran (or an error); one still running is
		 * an insert that takes effect only now, too late.
		 */
		if (past_create_deadline(v) && !op->done && v->terminate_after == NULL)
			give_up_create(v, "the insert took effect only after the create deadline");
		else if (v->terminate_after == NULL) {
			v->busy = true;
			m->counts.api_calls++;
			if (deadline < now_ms(m) + CALL_DEADLINE_MS)
				deadline = now_ms(m) + CALL_DEADLINE_MS;
			if (m->o.cloud->ops->wait(
			        m->o.cloud, v->rec.zone, op->name, deadline, on_created, v) != 0)
				v->busy = false;
		}
	} else if (!transient(e->code)) {
		create_failed(v, e);
	} else {
		char *t = cloud_error_text(e);

		/* Unanswered: the same requestId goes again at the next pass. */
		log_warnx("%s: the insert is unanswered (%s); sending it again at the next pass",
		    v->rec.name, t);
		free(t);
	}
	after_call(v);
}

static void
send_insert(struct mvm *v)
{
	struct manager *m = v->m;
	const struct config *cfg = m->cfg;
	const struct cloud_kv labels[] = {
	    {"managed-by", "spillway"}, {"spillway-owner", m->o.owner}};
	struct cloud_kv metadata[STARTUP_ITEMS_MAX + VM_METADATA_MAX];
	struct startup boot;
	char secret[STARTUP_SECRET_LEN + 1];
	json_t *asked = NULL, *value;
	const char *key;
	size_t nmetadata;
	static const char *scopes[] = {"https://www.googleapis.com/auth/cloud-platform", NULL};
	char **tags = str_split(cfg->network_tags, ',', NULL);
	struct cloud_instance_spec s = {
	    .name = v->rec.name,
	    .zone = v->rec.zone,
	    .machine_type = v->rec.machine_type,
	    .spot = v->rec.spot,
	    .image = cfg->image,
	    .disk_gb = (int)cfg->disk_gb,
	    .disk_type = cfg->disk_type,
	    .labels = labels,
	    .nlabels = 2,
	    .tags = (const char *const *)tags,
	    .metadata = metadata,
	    .service_account = "default",
	    .scopes = scopes,
	    .max_run_s = v->rec.planned_run_s,
	    .termination_action = "DELETE",
	    .external_ip = true,
	};

	/* The script, the agent and its settings; the secret is derived, never stored. */
	agent_secret(m->o.agent_key, v->rec.name, secret);
	startup_render(&boot, cfg, v->rec.name, v->rec.components, secret);
	memcpy(metadata, boot.items, boot.n * sizeof *metadata);
	nmetadata = boot.n;
	/* What the program asked for, checked when it asked (vm_metadata_check). */
	if (jx_parse(v->rec.metadata, strlen(v->rec.metadata), &asked, NULL) == 0)
		json_object_foreach (asked, key, value)
			if (nmetadata < nitems(metadata) && json_is_string(value))
				metadata[nmetadata++] =
				    (struct cloud_kv){key, json_string_value(value)};
	s.nmetadata = nmetadata;
	if (v->rec.state == VM_REQUESTED)
		set_state(v, VM_CREATING, "sending the insert");
	v->busy = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->create(m->o.cloud, &s, v->rec.request_id, now_ms(m) + CALL_DEADLINE_MS,
	        on_inserted, v) != 0) {
		struct cloud_error e = {
		    CLOUD_INVALID, 0, NULL, "the insert could not be sent", NULL, NULL, 0, 0};

		v->busy = false;
		create_failed(v, &e);
	}
	str_list_free(tags);
	json_decref(asked);
	startup_release(&boot);
	explicit_bzero(secret, sizeof secret);
}

static void
vm_name(struct manager *m, char *out, size_t size)
{
	time_t t = (time_t)(now_ms(m) / 1000);
	unsigned char r[2];
	struct tm tm;

	random_bytes(r, sizeof r);
	gmtime_r(&t, &tm);
	snprintf(out, size, "spillway-%04d%02d%02d-%02d%02d%02d-%02x%02x", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, r[0], r[1]);
}

/* Reserve in the ledger, then insert. 0, or -EAGAIN with the rule and why in *no. */
static int
create_vm(struct manager *m, const char *components, const char *reason, const char *metadata,
    double confidence, char *name, size_t namelen, struct decision *no)
{
	char why[512];
	const struct config *cfg = m->cfg;
	struct reserve_rules rules = {cfg->daily_budget, (int)cfg->max_concurrent,
	    (int64_t)(cfg->max_lifetime_hours * 3600), (int64_t)(cfg->min_run_minutes * 60)};
	struct vm_record rec;
	struct budget_plan plan;
	const char *zone = next_zone(m, NULL);
	struct mvm *v;
	int error;

	if (zone == NULL) {
		decision_refuse(
		    no, "stockout", "every zone of %s lacks capacity for now", cfg->region);
		return -EAGAIN;
	}
	if (!m->price_known) {
		decision_refuse(
		    no, "price", "%s", m->price_why[0] ? m->price_why : "not known yet");
		return -EAGAIN;
	}
	memset(&rec, 0, sizeof rec);
	vm_name(m, rec.name, sizeof rec.name);
	snprintf(rec.zone, sizeof rec.zone, "%s", zone);
	uuid_v4(rec.request_id);
	snprintf(rec.machine_type, sizeof rec.machine_type, "%s", cfg->machine_type);
	rec.spot = cfg->use_spot;
	rec.per_hour = m->per_hour;
	snprintf(rec.components, sizeof rec.components, "%s", components);
	snprintf(rec.reason, sizeof rec.reason, "%s", reason);
	snprintf(rec.metadata, sizeof rec.metadata, "%s", metadata != NULL ? metadata : "");
	rec.confidence = confidence;
	rec.zones_tried = 1;
	/* The budget check and the reservation: one transaction. */
	if ((error = ledger_reserve(
	         m->o.ledger, &rec, &rules, now_ms(m), &plan, why, sizeof why)) != 0) {
		/* Refused by a rule, or the ledger could not say: nothing was reserved either way.
		 */
		decision_refuse(no,
		    error == -EBUSY        ? "concurrency"
		        : error == -EAGAIN ? "budget"
		                           : "ledger",
		    "%s%s",
		    error == -EBUSY || error == -EAGAIN ? ""
		                                        : "the ledger could not record the VM: ",
		    why);
		return error == -EAGAIN || error == -EBUSY ? -EAGAIN : error;
	}
	ledger_price(m->o.ledger, rec.machine_type, cfg->region, rec.spot, rec.per_hour,
	    m->o.catalog_source, m->o.catalog_source, now_ms(m));
	snprintf(name, namelen, "%s", rec.name);
	v = add_vm(m, &rec);
	{
		struct manager_event e = {MEV_STATE, now_ms(m), &v->rec, -1, reason, NULL, NULL, 0};

		emit(m, &e);
	}
	send_insert(v);
	return 0;
}

/* --- decisions --- */

static void
decide_input(struct manager *m, struct decide_input *in)
{
	const struct config *cfg = m->cfg;
	int64_t now = now_ms(m);

	memset(in, 0, sizeof *in);
	in->now = now;
	in->enabled = cfg->enabled && !m->stopping;
	in->level = m->level;
	in->level_since = m->level_since;
	in->snap = m->snap.t_ms > 0 ? &m->snap : NULL;
	in->high_pct = cfg->high_pct;
	/* What the reservation counts, orphans included: they run, and they cost. */
	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		if (!vm_state_alive(v->rec.state))
			continue;
		in->alive++;
		if (v->rec.state <= VM_BOOTING)
			in->in_flight++;
	}
	in->max_concurrent = (int)cfg->max_concurrent;
	in->per_hour = m->per_hour;
	if (!m->price_known)
		in->price_why = m->price_why[0] ? m->price_why : "not known yet";
	in->max_price = cfg->max_price;
	in->budget = cfg->daily_budget;
	if (ledger_spent(m->o.ledger, now, &in->spent) != 0 ||
	    ledger_committed(m->o.ledger, now, &in->committed) != 0)
		in->ledger_why = ledger_error(m->o.ledger);
	/* While records wait for the ledger, no VM is added to them. */
	if (in->ledger_why == NULL)
		in->ledger_why = records_problem(m->records, NULL);
	in->max_run_s = (int64_t)(cfg->max_lifetime_hours * 3600);
	in->min_run_s = (int64_t)(cfg->min_run_minutes * 60);
	in->cooldown_until = m->cooldown_until;
	in->cooldown_why = m->cooldown_why;
	in->backoff_until = m->backoff_until;
	in->backoff_why = m->backoff_why;
	in->zones_available = zones_available(m);
	in->region = cfg->region;
	in->min_confidence = cfg->min_confidence;
	in->target_available_pct = cfg->target_available_pct;
	in->components = cfg->components;
	in->ncomponents = cfg->ncomponents;
}

void
manager_decide(struct manager *m, struct decision *d)
{
	struct decide_input in;

	decide_input(m, &in);
	decide(&in, d);
}

/* Under pressure: decide, say so, and act. */
static void
consider(struct manager *m)
{
	struct decision d;
	struct manager_event e = {MEV_DECISION, now_ms(m), NULL, 0, NULL, &d, NULL, 0};
	char name[64];

	if (m->stopping || m->o.passive || m->level < PRESSURE_HIGH)
		return;
	manager_decide(m, &d);
	e.reason = d.reason;
	/* A refusal is said once per rule, not once a second. */
	if (d.create || strcmp(d.rule, m->last_rule) != 0) {
		emit(m, &e);
		records_event(m->records, "-", d.create ? "decision" : "refusal", d.reason, e.t_ms);
		log_info("decision: %s%s", d.create ? "create: " : "no: ", d.reason);
	}
	snprintf(m->last_rule, sizeof m->last_rule, "%s", d.create ? "" : d.rule);
	if (!d.create)
		return;
	if (create_vm(m, d.components, d.reason, NULL, d.confidence, name, sizeof name, &d) != 0) {
		log_info("decision: refused: %s", d.reason);
		records_event(m->records, "-", "refusal", d.reason, now_ms(m));
	}
}

int
vm_metadata_check(const json_t *asked, char *out, size_t size, char *why, size_t whylen)
{
	const char *key;
	json_t *value;
	char *text;
	size_t n = 0;

	out[0] = '\0';
	if (asked == NULL || json_is_null(asked))
		return 0;
	if (!json_is_object(asked)) {
		snprintf(
		    why, whylen, "metadata must be an object of strings: {\"key\": \"value\"}");
		return -EINVAL;
	}
	json_object_foreach ((json_t *)asked, key, value) {
		size_t len = strlen(key);

		if (++n > VM_METADATA_MAX || len == 0 || len > 128 ||
		    strspn(
		        key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
		        len) {
			snprintf(why, whylen,
			    "metadata key '%s': at most %d keys, each 1 to 128 letters, digits, - or _",
			    key, VM_METADATA_MAX);
			return -EINVAL;
		}
		if (str_prefix(key, "spillway-") || strcmp(key, "startup-script") == 0 ||
		    strcmp(key, "shutdown-script") == 0 || strcmp(key, "ssh-keys") == 0) {
			snprintf(
			    why, whylen, "metadata key '%s' is spillway's or the guest's own", key);
			return -EINVAL;
		}
		if (!json_is_string(value)) {
			snprintf(why, whylen, "metadata '%s': the value must be a string", key);
			return -EINVAL;
		}
	}
	text = json_dumps(asked, JSON_COMPACT | JSON_SORT_KEYS);
	if (strlen(text) >= size) {
		snprintf(why, whylen, "metadata of %zu bytes: at most %zu", strlen(text), size - 1);
		free(text);
		return -EINVAL;
	}
	snprintf(out, size, "%s", text);
	free(text);
	return 0;
}

/*
 * The rules of the daemon, but a person asked: the pressure, the confidence,
 * the cooldown, one-at-a-time and GCP_VM_ENABLED (automatic creation) do not
 * apply; money, limits and backoffs do.
 */
static bool
by_hand(struct manager *m, const char *components, struct decision *d)
{
	struct decide_input in;

	decide_input(m, &in);
	in.enabled = !m->stopping;
	in.level = PRESSURE_CRITICAL;
	in.level_since = in.now - 3600000;
	in.in_flight = 0;
	in.cooldown_until = 0;
	in.min_confidence = 0;
	decide(&in, d);
	if (components == NULL || *components == '\0')
		decide_components(&in, d->components, sizeof d->components);
	else
		snprintf(d->components, sizeof d->components, "%s", components);
	return d->create;
}

int
manager_create(struct manager *m, const char *components, const char *reason, const char *metadata,
    char *name, size_t namelen, struct decision *d)
{
	if (!by_hand(m, components, d))
		return -EAGAIN;
	return create_vm(m, d->components, reason != NULL && *reason ? reason : "requested by hand",
	    metadata, 1.0, name, namelen, d);
}

int
manager_plan(struct manager *m, const char *components, struct manager_plan *p)
{
	const char *zone = next_zone(m, NULL);

	memset(p, 0, sizeof *p);
	snprintf(p->machine_type, sizeof p->machine_type, "%s", m->cfg->machine_type);
	p->spot = m->cfg->use_spot;
	p->per_hour = m->per_hour;
	if (!by_hand(m, components, &p->d))
		return -EAGAIN;
	if (zone == NULL) {
		decision_refuse(
		    &p->d, "stockout", "every zone of %s lacks capacity for now", m->cfg->region);
		return -EAGAIN;
	}
	snprintf(p->zone, sizeof p->zone, "%s", zone);
	return 0;
}

int
manager_terminate(struct manager *m, const char *name, const char *reason)
{
	struct mvm *v = find_vm(m, name);

	if (v == NULL || !vm_state_alive(v->rec.state))
		return -ENOENT;
	terminate(v, reason, VM_TERMINATED);
	return 0;
}

/* --- the pass --- */

static void pass_done(struct manager *);
static void on_timer(uv_timer_t *);

static void
schedule(struct manager *m)
{
	int64_t every = m->cfg->health_check_interval * 1000;

	if (!m->stopping && m->cfg->enable_monitoring)
		uv_timer_start(&m->timer, on_timer, clock_timer_ms(m->o.clock, every), 0);
}

static const struct cloud_seen *
find_listed(const struct manager *m, const char *name)
{
	for (size_t i = 0; i < m->nlisted; i++)
		if (strcmp(m->listed[i].name, name) == 0)
			return &m->listed[i];
	return NULL;
}

static bool
was_preempted(struct manager *m, const char *name, int64_t *when)
{
	for (size_t i = 0; i < m->npreemptions; i++) {
		if (strcmp(m->preemptions[i].target, name) == 0) {
			*when = m->preemptions[i].t_ms;
			return true;
		}
	}
	return false;
}

/* From the preemption operations, or the notice the VM's agent passed on. */
static void
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
	/* A start no pass saw is taken as its request: more rather than less. */
	int64_t start = v->rec.started_ms > 0 ? v->rec.started_ms : v->rec.requested_ms;
	int64_t stop = start + v->rec.planned_run_s * 1000;
	const char *why;

	/*
	 * A Spot VM that vanished on its own was most likely preempted (its
	 * termination action is DELETE): without this pass's preemptions, wait
	 * for a pass that has them (they look back to before the oldest VM
	 * alive), or for the end of its planned run, which bounds its cost.
	 */
	if (v->rec.state != VM_TERMINATING && v->rec.spot && !v->preempted &&
	    m->preemptions_failed && now < stop)
		return;
	/* Its insert took effect: billed even if no pass saw it start. */
	if (v->rec.state != VM_TERMINATING)
		v->rec.started_ms = start;
	why = v->rec.state == VM_TERMINATING ? "deleted"
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
			if (strcmp(status, "RUNNING") == 0)
				set_state(v, VM_BOOTING, "it runs");
			else if (past_create_deadline(v))
				give_up_create(v, "not running by the create deadline");
			else if (v->rec.state != VM_PROVISIONING)
				set_state(v, VM_PROVISIONING, "the insert took effect");
			break;
		case VM_BOOTING:
		case VM_READY:
		case VM_UNHEALTHY:
			if (v->preempted)
				terminate(v, "preempted by Compute Engine", VM_PREEMPTED);
			else if (strcmp(status, "TERMINATED") == 0 ||
			    strcmp(status, "STOPPING") == 0)
				terminate(v, "stopped by Compute Engine", VM_TERMINATED);
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
find_orphans(struct manager *m)
{
	/* Stopping: an orphan now would hold the shutdown; the next start finds it. */
	if (m->stopping)
		return;
	for (size_t i = 0; i < m->nlisted; i++) {
		const struct cloud_seen *it = &m->listed[i];
		const char *name = it->name;
		struct mvm *v = find_vm(m, name);
		struct vm_record rec;
		int64_t now = now_ms(m);

		if (v != NULL && vm_state_alive(v->rec.state))
			continue;
		/* It ended after the list was asked (its delete is done): the list is stale. */
		if (v != NULL && v->rec.state_ms >= m->list_sent_ms)
			continue;
		/* Preempted: it goes away by itself (its termination action is DELETE). */
		if ((v != NULL && v->rec.state == VM_PREEMPTED) ||
		    (v == NULL && ledger_get(m->o.ledger, name, &rec) == 0 &&
		        rec.state == VM_PREEMPTED))
			continue;
		if (v == NULL) {
			int got = ledger_get(m->o.ledger, name, &rec);
			bool known = got == 0;

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

static void
reconcile(struct manager *m)
{
	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (vm_state_alive(v->rec.state))
			reconcile_one(m, v, find_listed(m, v->rec.name));
	find_orphans(m);
}

/*
 * A boot probe's answer (the backend's health) or a pass's (the agent's, to
 * the lease: the backend's health as the VM sees it, its idleness, and a
 * preemption notice, docs/startup.md).
 */
static void
on_health(const struct http_response *r, void *arg)
{
	struct mvm *v = arg;
	struct manager *m = v->m;
	int64_t now = now_ms(m);
	struct health_answer h;
	bool probe = v->probe;

	v->health = NULL;
	v->probe = false;
	health_read(r->error == 0 ? r->status : 0, r->body, r->len, &h);
	/* An install that moves is no boot to give up on. */
	if (v->rec.state == VM_BOOTING && h.boot_s > v->boot_moved_s) {
		v->boot_moved_s = h.boot_s;
		v->progress_ms = now;
	}
	if (h.verdict == HEALTH_PREEMPTED) {
		mark_preempted(v, now, "its agent passed on Compute Engine's preemption notice");
		terminate(v, "preempted by Compute Engine", VM_PREEMPTED);
	} else if (h.verdict == HEALTH_OK) {
		v->rec.health_failures = 0;
		v->rec.last_activity_ms = h.idle_s >= 0 ? now - h.idle_s * 1000 : now;
		if (v->rec.state == VM_BOOTING) {
			cool_down(m, "a VM turned READY just now");
			set_state(v, VM_READY, "the backend answers its health check");
		} else if (v->rec.state == VM_UNHEALTHY) {
			set_state(v, VM_READY, "healthy again");
		} else if (v->rec.state == VM_READY) {
			announce(v, VM_READY, NULL); /* taken over: said once it answers */
		}
	} else if (v->rec.state != VM_BOOTING &&
	    ++v->rec.health_failures >= m->cfg->health_failures && v->rec.state == VM_READY) {
		char why[256];

		if (r->error)
			snprintf(why, sizeof why, "%s", r->error_text);
		else if (r->status == 401)
			snprintf(why, sizeof why,
			    "its agent refuses our lease: the VM's secret is not from this daemon's "
			    "agent.key");
		else
			snprintf(why, sizeof why, "the health check failed: %s", h.why);
		v->rec.unhealthy_ms = now;
		set_state(v, VM_UNHEALTHY, why);
	}
	if (!probe && --m->health_pending == 0)
		pass_done(m);
}

/* Between passes, a booting VM's backend is asked often: READY is noticed in seconds. */
static void
on_probe(uv_timer_t *t)
{
	struct manager *m = t->data;
	bool booting = false;

	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		struct http_request req = {.method = "GET",
		    .timeout_ms = (long)(m->cfg->health_timeout_s * 1000),
		    .max_response = HEALTH_ANSWER_MAX};
		char *url;

		if (v->rec.state != VM_BOOTING)
			continue;
		booting = true;
		if (v->rec.nat_ip[0] == '\0' || v->health != NULL || m->stopping)
			continue;
		req.url = url = xasprintf("http://%s:%lld%s", v->rec.nat_ip,
		    (long long)m->cfg->backend_port, m->cfg->health_path);
		m->counts.health_checks++;
		if (http_send(m->o.http, &req, on_health, v, &v->health) == 0)
			v->probe = true;
		free(url);
	}
	if (booting && !m->stopping)
		uv_timer_start(&m->probe, on_probe, clock_timer_ms(m->o.clock, BOOT_PROBE_MS), 0);
}

static void
probe_soon(struct manager *m)
{
	if (!uv_is_active((uv_handle_t *)&m->probe))
		uv_timer_start(&m->probe, on_probe, 0, 0);
}

/*
 * The pass's call to a VM's agent: the lease renewed, signed with the VM's
 * secret and the wall time (the agent checks it against its own clock).
 */
static int
renew_lease(struct manager *m, struct mvm *v)
{
	char url[128], auth[160], secret[STARTUP_SECRET_LEN + 1];
	const char *headers[] = {auth, NULL};
	struct http_request req = {.method = "POST",
	    .url = url,
	    .headers = headers,
	    .body = "",
	    .timeout_ms = (long)(m->cfg->health_timeout_s * 1000),
	    .max_response = HEALTH_ANSWER_MAX};
	int error;

	agent_secret(m->o.agent_key, v->rec.name, secret);
	lease_authorization(secret, v->rec.name, (int64_t)time(NULL), auth, sizeof auth);
	snprintf(url, sizeof url, "http://%s:%lld/spillway/lease", v->rec.nat_ip,
	    (long long)m->cfg->agent_port);
	m->counts.health_checks++;
	error = http_send(m->o.http, &req, on_health, v, &v->health);
	explicit_bzero(secret, sizeof secret);
	explicit_bzero(auth, sizeof auth);
	return error;
}

static void
check_health(struct manager *m)
{
	m->health_pending = 1; /* held until all are sent */
	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		if (!up(v->rec.state) || v->rec.nat_ip[0] == '\0' || v->health != NULL)
			continue;
		if (renew_lease(m, v) == 0)
			m->health_pending++;
	}
	if (--m->health_pending == 0)
		pass_done(m);
}

/* When its backend was last used; a VM just READY has had no chance to be. */
static int64_t
last_used(const struct vm_record *r)
{
	return r->last_activity_ms > r->ready_ms ? r->last_activity_ms : r->ready_ms;
}

/* The rules, once the pass knows what runs and what is healthy. */
static void
enforce(struct manager *m)
{
	const struct config *cfg = m->cfg;
	int64_t now = now_ms(m), idle = minutes(cfg->idle_timeout_minutes);
	int64_t every = cfg->health_check_interval * 1000;

	if (m->o.passive)
		return;
	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		char why[256];

		if (v->busy || !vm_state_alive(v->rec.state))
			continue;
		switch (v->rec.state) {
		case VM_BOOTING:
			/* From its start, or from its install's last move: a long install is kept.
			 */
			if (v->rec.started_ms > 0 &&
			    now -
			            (v->progress_ms > v->rec.started_ms ? v->progress_ms
			                                                : v->rec.started_ms) >
			        minutes(cfg->boot_timeout_minutes)) {
				if (v->progress_ms > 0)
					snprintf(why, sizeof why,
					    "boot timeout: not healthy, and its install has not "
					    "moved for %.0f min",
					    cfg->boot_timeout_minutes);
				else
					snprintf(why, sizeof why,
					    "boot timeout: not healthy %.0f min after it started",
					    cfg->boot_timeout_minutes);
				terminate(v, why, VM_FAILED);
			}
			break;
		case VM_UNHEALTHY:
			if (now - v->rec.unhealthy_ms > minutes(cfg->unhealthy_minutes)) {
				snprintf(why, sizeof why,
				    "unhealthy for %.1f min (another VM comes if the pressure holds)",
				    cfg->unhealthy_minutes);
				terminate(v, why, VM_TERMINATED);
				m->cooldown_until = 0;
				break;
			}
			/* fall through */
		case VM_READY:
			if (v->rec.started_ms > 0 &&
			    v->rec.started_ms + v->rec.planned_run_s * 1000 - now <= every) {
				snprintf(why, sizeof why,
				    "lifetime: its planned run of %.2f h is over",
				    (double)v->rec.planned_run_s / 3600.0);
				terminate(v, why, VM_TERMINATED);
			} else if (v->rec.state == VM_READY && v->rec.last_activity_ms > 0 &&
			    now - last_used(&v->rec) >= idle) {
				/*
				 * Idle is its backend unused since it was READY, never local
				 * calm: offloading is what calms the workstation.
				 */
				snprintf(why, sizeof why, "idle: its backend unused for %.0f min",
				    cfg->idle_timeout_minutes);
				terminate(v, why, VM_TERMINATED);
			}
			break;
		case VM_ORPHANED:
			if (strcmp(cfg->orphan_policy, "delete") == 0 &&
			    now - v->rec.state_ms >= minutes(cfg->orphan_grace_minutes))
				terminate(v,
				    "orphan: carries our owner label, unknown to the ledger; grace "
				    "period over",
				    VM_TERMINATED);
			break;
		default:
			break;
		}
	}
}

/* What the pass listed: kept while it runs, no longer. */
static void
forget_pass(struct manager *m)
{
	free(m->listed);
	free(m->preemptions);
	m->listed = NULL;
	m->preemptions = NULL;
	m->nlisted = m->npreemptions = 0;
}

static void
pass_done(struct manager *m)
{
	enforce(m);
	prune(m);
	consider(m);
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
		m->list_failed = true;
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
			m->list_failed = true;
			m->passing = false;
			schedule(m);
			return;
		}
	}
	m->counts.api_calls += (long)str_list_len((char *const *)m->o.zones);
	if (m->o.cloud->ops->preemptions(m->o.cloud, m->o.zones, m->preempt_since,
	        now_ms(m) + CALL_DEADLINE_MS, on_preemptions, m) != 0)
		on_preemptions(
		    &(struct cloud_error){CLOUD_INVALID, 0, NULL, "not sent", NULL, NULL, 0, 0},
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
		struct price_query q = {cfg->machine_type, cfg->region, cfg->use_spot, mt->vcpus,
		    mt->memory_mb, (int)cfg->disk_gb, cfg->disk_type, true};
		struct price p;

		if (price_lookup(m->o.catalog, &q, &p, &cause) != 0) {
			snprintf(m->price_why, sizeof m->price_why, "%s", cause);
			log_warnx("manager: %s", cause);
			free(cause);
			return;
		}
		m->per_hour = p.per_hour;
		m->vcpus = mt->vcpus;
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
static void
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

static void
pass(struct manager *m)
{
	if (m->passing || m->stopping)
		return;
	m->passing = true;
	m->pass_started_ns = monotonic_ns();
	check_ledger(m);
	/* What the ledger could not take before, first; then the WAL is cut back. */
	if (records_flush(m->records, now_ms(m)) == 0)
		ledger_checkpoint(m->o.ledger);
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
static bool
priced_alike(const struct config *a, const struct config *b)
{
	return strcmp(a->machine_type, b->machine_type) == 0 && strcmp(a->region, b->region) == 0 &&
	    a->use_spot == b->use_spot && a->disk_gb == b->disk_gb &&
	    strcmp(a->disk_type, b->disk_type) == 0;
}

void
manager_set_config(struct manager *m, const struct config *cfg)
{
	bool same = priced_alike(m->cfg, cfg);

	m->cfg = cfg;
	m->o.cfg = cfg;
	if (!same) {
		m->price_known = false;
		m->price_why[0] = '\0';
		ask_price(m);
	}
}

void
manager_set_zones(struct manager *m, const char *const *zones)
{
	m->o.zones = zones;
}

void
manager_set_catalog(struct manager *m, const json_t *catalog, const char *source)
{
	m->o.catalog = catalog;
	m->o.catalog_source = source;
	m->price_known = false; /* asked again now, from this catalog */
	m->price_why[0] = '\0';
	ask_price(m);
}

bool
manager_alive_outside(const struct manager *m, const char *const *zones, char *vm, size_t size)
{
	for (const struct mvm *v = m->vms; v != NULL; v = v->next) {
		bool in = false;

		if (!vm_state_alive(v->rec.state))
			continue;
		for (const char *const *z = zones; z != NULL && *z != NULL && !in; z++)
			in = strcmp(*z, v->rec.zone) == 0;
		if (!in) {
			snprintf(vm, size, "%s (in %s)", v->rec.name, v->rec.zone);
			return true;
		}
	}
	return false;
}

void
manager_set_keep(struct manager *m, bool keep)
{
	m->o.keep = keep || m->o.passive;
}

void
manager_pass_now(struct manager *m)
{
	uv_timer_stop(&m->timer);
	pass(m);
}

void
manager_pressure(struct manager *m, const struct pressure_snapshot *s, enum pressure_level prev)
{
	int64_t now = now_ms(m);

	m->snap = *s;
	if (s->level != m->level) {
		struct manager_event e = {MEV_PRESSURE, now, NULL, 0, NULL, NULL, &m->snap, prev};

		m->level = s->level;
		m->level_since = s->since_ms > 0 ? s->since_ms : now;
		m->last_rule[0] = '\0';
		emit(m, &e);
		records_event(m->records, "-", "pressure", pressure_level_name(s->level), now);
		consider(m);
	}
}

/* --- life --- */

int
manager_new(uv_loop_t *loop, const struct manager_opts *o, struct manager **out, char **cause)
{
	struct manager *m = xcalloc(1, sizeof *m);
	struct vm_record *list;
	size_t n;

	m->loop = loop;
	m->o = *o;
	m->cfg = o->cfg;
	m->records = records_new(o->ledger);
	m->level = PRESSURE_NORMAL;
	m->level_since = now_ms(m);
	if (ledger_list(o->ledger, NULL, 0, &list, &n) != 0) {
		*cause =
		    xasprintf("cannot read the VMs from the ledger: %s", ledger_error(o->ledger));
		records_free(m->records);
		free(m);
		return -EIO;
	}
	/* What the ledger has alive is ours to look after from the first pass. */
	for (size_t i = 0; i < n; i++)
		add_vm(m, &list[i]);
	free(list);
	uv_timer_init(loop, &m->timer);
	uv_timer_init(loop, &m->probe);
	m->timer.data = m->probe.data = m;
	m->handles = 2;
	*out = m;
	return 0;
}

void
manager_start(struct manager *m)
{
	pass(m);
}

static bool
all_ended(struct manager *m)
{
	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (vm_state_alive(v->rec.state) || v->busy)
			return false;
	return true;
}

static void
on_shutdown_tick(uv_timer_t *t)
{
	struct manager *m = t->data;

	if (all_ended(m) || monotonic_ns() > m->stop_deadline_ns) {
		if (!all_ended(m) && !m->o.keep)
			log_warnx(
			    "manager: shutdown timed out with VMs still alive; the next start will "
			    "find them");
		/* The last chance for what waits; else the log is where it goes. */
		if (records_flush(m->records, now_ms(m)) != 0)
			records_say_lost(m->records);
		uv_timer_stop(&m->timer);
		if (m->done != NULL)
			m->done(m->done_arg);
		return;
	}
	uv_timer_start(&m->timer, on_shutdown_tick, SHUTDOWN_POLL_MS, 0);
}

void
manager_shutdown(struct manager *m, void (*done)(void *), void *arg)
{
	m->stopping = true;
	m->done = done;
	m->done_arg = arg;
	uv_timer_stop(&m->timer);
	if (!m->o.keep)
		for (struct mvm *v = m->vms; v != NULL; v = v->next)
			if (vm_state_alive(v->rec.state))
				terminate(v, "shutdown: spillway is stopping", VM_TERMINATED);
	m->stop_deadline_ns = monotonic_ns() + (int64_t)(m->cfg->shutdown_timeout_s * 1e9);
	if (m->o.keep)
		m->stop_deadline_ns = monotonic_ns();
	uv_timer_start(&m->timer, on_shutdown_tick, 0, 0);
}

bool
manager_settled(const struct manager *m)
{
	return (m->counts.passes > 0 || m->list_failed) && !m->passing && !m->price_asked &&
	    (m->price_known || m->price_why[0] != '\0');
}

size_t
manager_backoffs(struct manager *m, struct backoff *out, size_t max)
{
	int64_t now = now_ms(m);
	size_t n = 0;

	if (m->backoff_until > now && n < max) {
		out[n] = (struct backoff){.until_ms = m->backoff_until};
		snprintf(
		    out[n].rule, sizeof out[n].rule, "%s", m->backoff_quota ? "quota" : "failure");
		snprintf(out[n++].why, sizeof out->why, "%s", m->backoff_why);
	}
	if (m->cooldown_until > now && n < max) {
		out[n] = (struct backoff){.rule = "cooldown", .until_ms = m->cooldown_until};
		snprintf(out[n++].why, sizeof out->why, "%s", m->cooldown_why);
	}
	for (int i = 0; i < m->nskips && n < max; i++) {
		if (m->skips[i].until <= now)
			continue;
		out[n] = (struct backoff){.rule = "stockout", .until_ms = m->skips[i].until};
		snprintf(out[n].zone, sizeof out->zone, "%s", m->skips[i].zone);
		snprintf(
		    out[n++].why, sizeof out->why, "no capacity in %s lately", m->skips[i].zone);
	}
	return n;
}

void
manager_counts(const struct manager *m, struct manager_counts *c)
{
	*c = m->counts;
}

size_t
manager_waiting(const struct manager *m, struct vm_record **out)
{
	return records_waiting_vms(m->records, out);
}

const char *
manager_ledger_problem(const struct manager *m, size_t *waiting)
{
	return records_problem(m->records, waiting);
}

static void
manager_release(uv_handle_t *h)
{
	struct manager *m = h->data;

	if (--m->handles > 0)
		return;
	while (m->vms != NULL) {
		struct mvm *v = m->vms;

		m->vms = v->next;
		free(v->terminate_after);
		free(v);
	}
	forget_pass(m);
	records_free(m->records);
	free(m->consumers);
	free(m);
}

void
manager_free(struct manager *m)
{
	if (m == NULL)
		return;
	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (v->health != NULL) {
			http_cancel(v->health);
			v->health = NULL;
		}
	uv_timer_stop(&m->timer);
	uv_close((uv_handle_t *)&m->timer, manager_release);
	uv_close((uv_handle_t *)&m->probe, manager_release);
}
