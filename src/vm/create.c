/*
 * Creation and termination: the zones a VM may go to and the backoffs that
 * hold creation back, the insert (its requestId in the ledger first, a
 * stockout moved to the next zone, a create given up past its deadline), the
 * delete (its requestId derived from the insert's), and the closing of a
 * run's cost. Each VM has at most one cloud call in flight (mvm.busy); a
 * termination asked meanwhile waits for it (mvm.terminate_after).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"
#include "vm/internal.h"
#include "vm/rules.h"
#include "vm/startup.h"

#define QUOTA_BACKOFF_FIRST_MS (5 * 60000)
#define QUOTA_BACKOFF_MAX_MS   (30 * 60000)
#define QUOTA_BACKOFF_RESET_MS (3 * 3600000)
#define FAILURE_BACKOFF_MS     (5 * 60000)

static void on_inserted(const struct cloud_error *, const struct cloud_op *, void *);

bool
zone_skipped(struct manager *m, const char *zone)
{
	int64_t now = now_ms(m);

	for (int i = 0; i < m->nskips; i++)
		if (strcmp(m->skips[i].zone, zone) == 0 && m->skips[i].until > now)
			return true;
	return false;
}

void
skip_zone(struct manager *m, const char *zone, const char *why)
{
	int64_t until = now_ms(m) + minutes_ms(m->cfg->stockout_skip_minutes);
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

const char *
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

int
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

void
cool_down(struct manager *m, const char *why)
{
	m->cooldown_until = now_ms(m) + minutes_ms(m->cfg->cooldown_minutes);
	snprintf(m->cooldown_why, sizeof m->cooldown_why, "%s", why);
}

/* --- termination --- */

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

void
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

void
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
	if (v->rec.state == VM_POOLED)
		pool_waited(v, now_ms(v->m)); /* its wait ends with the delete's request */
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

/* The routes' connections open to it now. */
static long
routed_open(const struct mvm *v)
{
	int64_t last;

	return vm_traffic(v, &last);
}

void
leave(struct mvm *v, const char *reason, enum vm_state end, int64_t limit_ms)
{
	struct manager *m = v->m;
	int64_t now = now_ms(m);
	long open;

	if (v->rec.state == VM_DRAINING) {
		/* Already on its way out: a sooner end (a preemption) wins. */
		if (end == VM_PREEMPTED)
			v->end_state = end;
		if (now + limit_ms < v->drain_until_ms) {
			v->drain_until_ms = now + limit_ms;
			drain_timer(m);
		}
		return;
	}
	if ((v->rec.state != VM_READY && v->rec.state != VM_UNHEALTHY) || limit_ms <= 0 ||
	    (open = routed_open(v)) == 0) {
		terminate(v, reason, end);
		return;
	}
	free(v->drain_why);
	v->drain_why = xstrdup(reason);
	v->end_state = end;
	v->drain_until_ms = now + limit_ms;
	{
		char why[sizeof v->rec.end_reason + 96];

		/* The routes hear it first (set_state's event): no new connection goes there. */
		snprintf(why, sizeof why, "%s; draining %ld connection%s for up to %g s", reason,
		    open, open == 1 ? "" : "s", (double)limit_ms / 1000);
		set_state(v, VM_DRAINING, why);
	}
	drain_timer(m);
}

void
go(struct mvm *v, const char *reason, enum vm_state end, bool insist)
{
	struct manager *m = v->m;
	char why[sizeof v->kept_why] = "";
	enum manager_gate g = MANAGER_GO;

	if (v->rec.state == VM_READY && m->o.gate != NULL)
		g = m->o.gate(m->o.gate_arg, &v->rec, insist, false, why, sizeof why);
	if (g == MANAGER_GO) {
		v->going = false;
		v->kept_why[0] = '\0';
		leave(v, reason, end, drain_ms(m));
		return;
	}
	if (!v->going || strcmp(v->going_why, reason) != 0) {
		free(v->going_why);
		v->going_why = xstrdup(reason);
	}
	v->going = true;
	v->going_end = end;
	v->going_insist = v->going_insist || insist;
	/* A refusal is said once for each reason, not at every pass. */
	if (g == MANAGER_KEEP && strcmp(why, v->kept_why) != 0) {
		char text[sizeof v->kept_why + sizeof v->rec.end_reason + 32];

		snprintf(v->kept_why, sizeof v->kept_why, "%s", why);
		snprintf(text, sizeof text, "kept though %s: %s", reason, why);
		manager_note(m, v->rec.name, "kept", text);
	}
}

void
stay(struct mvm *v)
{
	struct manager *m = v->m;
	char why[8];

	if (!v->going || v->going_insist)
		return;
	v->going = false;
	v->kept_why[0] = '\0';
	if (m->o.gate != NULL)
		m->o.gate(m->o.gate_arg, &v->rec, false, true, why, sizeof why);
}

void
manager_gate_open(struct manager *m, const char *name)
{
	struct mvm *v = find_vm(m, name);

	if (v != NULL && v->going && vm_state_alive(v->rec.state)) {
		char *why = xstrdup(v->going_why);

		go(v, why, v->going_end, v->going_insist);
		free(why);
	}
}

/* Drained, or its time is up: the delete it was draining for. */
static void
drained(struct mvm *v, const char *how)
{
	char why[sizeof v->rec.end_reason];

	snprintf(why, sizeof why, "%s (%s)", v->drain_why != NULL ? v->drain_why : "drained", how);
	free(v->drain_why);
	v->drain_why = NULL;
	v->drain_until_ms = 0;
	terminate(v, why, v->end_state);
}

static void
on_drain_timer(uv_timer_t *t)
{
	struct manager *m = t->data;
	int64_t now = now_ms(m);

	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (v->rec.state == VM_DRAINING && v->drain_until_ms <= now) {
			long open = routed_open(v);
			char how[96] = "its connections ended";

			if (open > 0)
				snprintf(how, sizeof how,
				    "route.drain_s over with %ld connection%s open", open,
				    open == 1 ? "" : "s");
			drained(v, how);
		}
	drain_timer(m);
}

void
drain_timer(struct manager *m)
{
	int64_t next = 0;

	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (v->rec.state == VM_DRAINING && (next == 0 || v->drain_until_ms < next))
			next = v->drain_until_ms;
	uv_timer_stop(&m->drain);
	if (next > 0) {
		int64_t in = next - now_ms(m);

		uv_timer_start(
		    &m->drain, on_drain_timer, clock_timer_ms(m->o.clock, in > 0 ? in : 0), 0);
	}
}

void
manager_drained(struct manager *m, const char *name)
{
	struct mvm *v = find_vm(m, name);

	if (v != NULL && v->rec.state == VM_DRAINING && routed_open(v) == 0) {
		drained(v, "its connections ended");
		drain_timer(m);
	}
}

static void
close_cost(struct mvm *v, int64_t end, bool preempted)
{
	if (v->rec.started_ms > 0 && end < v->rec.started_ms)
		end = v->rec.started_ms;
	v->rec.ended_ms = end;
	records_close_cost(v->m->records, &v->rec, preempted);
}

void
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
	if (vm_bakes(&v->rec))
		bake_ended(v);
	if (!v->preempted) /* a preempted VM is replaced at once, elsewhere */
		cool_down(m, "a VM ended just now");
}

/* --- creation --- */

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

void
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
		/* Its address known: its agent is asked now, not at the next round of probes. */
		if (v->rec.state == VM_BOOTING && v->rec.nat_ip[0] != '\0')
			probe_soon(v->m);
	}
	after_call(v);
}

int
reserve_refused(struct decision *no, int error, const char *why)
{
	/* Refused by a rule, or the ledger could not say: nothing was reserved either way. */
	decision_refuse(no,
	    error == -EBUSY        ? "concurrency"
	        : error == -EAGAIN ? "budget"
	                           : "ledger",
	    "%s%s",
	    error == -EBUSY || error == -EAGAIN ? "" : "the ledger could not record the VM: ", why);
	return error == -EAGAIN || error == -EBUSY ? -EAGAIN : error;
}

void
learn_instance(struct mvm *v)
{
	struct manager *m = v->m;

	v->busy = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->get(
	        m->o.cloud, v->rec.zone, v->rec.name, now_ms(m) + CALL_DEADLINE_MS, on_got, v) != 0)
		v->busy = false;
}

bool
waits_on(struct mvm *v, const char *zone, const struct cloud_error *e, const struct cloud_op *op,
    cloud_op_cb *cb)
{
	struct manager *m = v->m;

	if (e->code != CLOUD_OK || op->name == NULL || op->done)
		return false;
	v->busy = true;
	if (m->o.cloud->ops->wait(
	        m->o.cloud, zone, op->name, now_ms(m) + CALL_DEADLINE_MS, cb, v) == 0)
		return true;
	v->busy = false;
	return false;
}

void
give_up_create(struct mvm *v, const char *why)
{
	struct cloud_error e = {.code = CLOUD_DEADLINE, .message = why};

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

	if (e->code == CLOUD_STOCKOUT &&
	    !rules_past_create_deadline(v->m->cfg, &v->rec, now_ms(v->m))) {
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

static void
on_created(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;

	v->busy = false;
	if (e->code == CLOUD_OK) {
		set_state(v, VM_BOOTING, "the insert is DONE");
		learn_instance(v);
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
		int64_t deadline =
		    v->rec.requested_ms + minutes_ms(m->cfg->create_deadline_minutes);

		snprintf(v->rec.op, sizeof v->rec.op, "%s", op->name);
		set_state(v, VM_PROVISIONING, "Compute Engine accepted the insert");
		/*
		 * Past the deadline the insert is sent again only to learn its fate: a
		 * DONE operation is a VM that ran (or an error); one still running is
		 * an insert that takes effect only now, too late.
		 */
		if (rules_past_create_deadline(v->m->cfg, &v->rec, now_ms(v->m)) && !op->done &&
		    v->terminate_after == NULL)
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

void
send_insert(struct mvm *v)
{
	struct manager *m = v->m;
	const struct config *cfg = m->cfg;
	/* A pool VM says so: whoever lists the project sees why a stopped VM is kept. */
	const struct cloud_kv labels[] = {
	    {"managed-by", "spillway"}, {"spillway-owner", m->o.owner}, {"spillway-pool", "true"}};
	struct cloud_kv metadata[STARTUP_ITEMS_MAX + VM_METADATA_MAX];
	struct startup boot;
	char secret[STARTUP_SECRET_LEN + 1], image[128];
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
	    .image =
	        vm_bakes(&v->rec) ? cfg->image_base : manager_boot_image(m, image, sizeof image),
	    .disk_gb = (int)cfg->disk_gb,
	    .disk_type = cfg->disk_type,
	    .labels = labels,
	    .nlabels = vm_pooled(&v->rec) ? 3 : 2,
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
	startup_render(&boot, cfg, v->rec.name, v->rec.components, secret,
	    m->o.identity != NULL ? m->o.identity->cert_pem : "");
	if (vm_bakes(&v->rec))
		startup_bake(&boot);
	memcpy(metadata, boot.items, boot.n * sizeof *metadata);
	nmetadata = boot.n;
	/* What the program asked for, checked when it asked (vm_metadata_check). */
	if (jx_parse(v->rec.metadata, strlen(v->rec.metadata), &asked, NULL) == 0)
		json_object_foreach (asked, key, value)
			if (nmetadata < nitems(metadata) && json_is_string(value))
				metadata[nmetadata++] = (struct cloud_kv){
				    .key = key, .value = json_string_value(value)};
	s.nmetadata = nmetadata;
	if (v->rec.state == VM_REQUESTED)
		set_state(v, VM_CREATING, "sending the insert");
	v->busy = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->create(m->o.cloud, &s, v->rec.request_id, now_ms(m) + CALL_DEADLINE_MS,
	        on_inserted, v) != 0) {
		struct cloud_error e = {
		    .code = CLOUD_INVALID, .message = "the insert could not be sent"};

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

/*
 * Reserve in the ledger, then insert: once decide() said create (a zone is
 * available, the price known). 0, or -EAGAIN with the rule and why in *no
 * when the ledger's own check of the budget and the limit refuses.
 */
int
create_vm(
    struct manager *m, const struct vm_intent *it, char *name, size_t namelen, struct decision *no)
{
	char why[512];
	const struct config *cfg = m->cfg;
	struct reserve_rules rules = reserve_rules_of(cfg);
	struct vm_record rec;
	struct budget_plan plan;
	const char *zone = next_zone(m, NULL);
	struct mvm *v;
	int error;

	/* A VM to serve: one of the pool's, started, before a new one (pool.c). */
	if (it->purpose == NULL && pool_take(m, it, name, namelen, no) == 0)
		return 0;
	memset(&rec, 0, sizeof rec);
	vm_name(m, rec.name, sizeof rec.name);
	snprintf(rec.zone, sizeof rec.zone, "%s", zone);
	uuid_v4(rec.request_id);
	snprintf(rec.machine_type, sizeof rec.machine_type, "%s", cfg->machine_type);
	rec.spot = cfg->use_spot;
	rec.per_hour = m->per_hour;
	snprintf(rec.components, sizeof rec.components, "%s", or_default(it->components, ""));
	snprintf(rec.reason, sizeof rec.reason, "%s", it->reason);
	snprintf(rec.metadata, sizeof rec.metadata, "%s", or_default(it->metadata, ""));
	snprintf(rec.purpose, sizeof rec.purpose, "%s", or_default(it->purpose, ""));
	/* A VM for the pool commits its wait from the start (ledger_reserve). */
	if (vm_pooled(&rec))
		rec.wait_per_hour = pool_wait_per_hour(m, pool_suspends(m));
	rec.confidence = it->confidence;
	rec.zones_tried = 1;
	/* The budget check and the reservation: one transaction. */
	if ((error = ledger_reserve(
	         m->o.ledger, &rec, &rules, now_ms(m), &plan, why, sizeof why)) != 0)
		return reserve_refused(no, error, why);
	ledger_price(m->o.ledger, rec.machine_type, cfg->region, rec.spot, rec.per_hour,
	    m->o.catalog_source, m->o.catalog_source, now_ms(m));
	snprintf(name, namelen, "%s", rec.name);
	v = add_vm(m, &rec);
	{
		struct manager_event e = {.kind = MEV_STATE,
		    .t_ms = now_ms(m),
		    .vm = &v->rec,
		    .from = -1,
		    .reason = it->reason};

		emit(m, &e);
	}
	send_insert(v);
	return 0;
}
