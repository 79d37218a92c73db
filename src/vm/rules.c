/* The rules that end a VM (rules.h): pure, no clock and no state of their own. */
#include <stdio.h>
#include <string.h>

#include "util/clock.h"
#include "vm/rules.h"

bool
rules_past_create_deadline(const struct config *cfg, const struct vm_record *r, int64_t now)
{
	return now - r->requested_ms >= minutes_ms(cfg->create_deadline_minutes);
}

int64_t
rules_lead_ms(const struct config *cfg, const struct vm_record *r)
{
	int64_t lead = 0;

	for (size_t i = 0; i < cfg->ncomponents; i++) {
		const struct component_def *c = &cfg->components[i];
		int64_t t = (int64_t)(c->local_start_timeout_s * 1000);

		if (component_managed(c) && components_include(r->components, c->name) && t > lead)
			lead = t;
	}
	return lead;
}

int64_t
rules_last_used(const struct vm_record *r)
{
	return r->last_activity_ms > r->ready_ms ? r->last_activity_ms : r->ready_ms;
}

/* The verdict's kind and end; its reason is written next, into v->reason. */
static char *
end(struct verdict *v, enum verdict_kind kind, enum vm_state state)
{
	v->kind = kind;
	v->end = state;
	return v->reason;
}

/* From its start, or from its install's last move: a long install is kept. */
static void
booting(const struct config *cfg, const struct vm_record *r, const struct rules_seen *s,
    int64_t now, struct verdict *v)
{
	int64_t from = s->progress_ms > r->started_ms ? s->progress_ms : r->started_ms;

	if (r->started_ms <= 0 || now - from <= minutes_ms(cfg->boot_timeout_minutes))
		return;
	if (s->progress_ms > 0)
		snprintf(end(v, VERDICT_END, VM_FAILED), sizeof v->reason,
		    "boot timeout: not healthy, and its install has not moved for %.0f min",
		    cfg->boot_timeout_minutes);
	else
		snprintf(end(v, VERDICT_END, VM_FAILED), sizeof v->reason,
		    "boot timeout: not healthy %.0f min after it started",
		    cfg->boot_timeout_minutes);
}

static void
running(const struct config *cfg, const struct vm_record *r, const struct rules_seen *s,
    int64_t now, struct verdict *v)
{
	int64_t every = cfg->health_check_interval * 1000, used = rules_last_used(r);

	if (s->routed_ms > used)
		used = s->routed_ms;

	if (r->state == VM_UNHEALTHY &&
	    now - r->unhealthy_ms > minutes_ms(cfg->unhealthy_minutes)) {
		snprintf(end(v, VERDICT_END, VM_TERMINATED), sizeof v->reason,
		    "unhealthy for %.1f min (another VM comes if the pressure holds)",
		    cfg->unhealthy_minutes);
		v->replace_now = true;
	} else if (r->started_ms > 0 &&
	    r->started_ms + r->planned_run_s * 1000 - now <= every + s->lead_ms) {
		/* Within a pass of its end (and its copies' start): before Compute Engine's own
		 * stop cuts it off. */
		snprintf(end(v, VERDICT_END, VM_TERMINATED), sizeof v->reason,
		    "lifetime: its planned run of %.2f h is over",
		    (double)r->planned_run_s / 3600.0);
	} else if (r->state == VM_READY && (r->last_activity_ms > 0 || s->routed_ms > 0) &&
	    s->routed_open == 0 && now - used >= minutes_ms(cfg->idle_timeout_minutes)) {
		/* Idle is its backend unused since READY, never local calm: offloading is
		 * what calms the workstation. */
		snprintf(end(v, VERDICT_END, VM_TERMINATED), sizeof v->reason,
		    "idle: its backend unused for %.0f min", cfg->idle_timeout_minutes);
	}
}

void
rules_judge(const struct config *cfg, const struct vm_record *r, const struct rules_seen *s,
    int64_t now, struct verdict *v)
{
	memset(v, 0, sizeof *v);
	v->kind = VERDICT_KEEP;
	switch (r->state) {
	case VM_REQUESTED:
	case VM_CREATING:
	case VM_PROVISIONING:
		if (s->status != NULL && strcmp(s->status, "RUNNING") != 0 &&
		    rules_past_create_deadline(cfg, r, now))
			snprintf(end(v, VERDICT_GIVE_UP, VM_FAILED), sizeof v->reason,
			    "not running by the create deadline");
		break;
	case VM_BOOTING:
		booting(cfg, r, s, now, v);
		break;
	case VM_READY:
	case VM_UNHEALTHY:
		running(cfg, r, s, now, v);
		break;
	case VM_ORPHANED:
		if (strcmp(cfg->orphan_policy, "delete") == 0 &&
		    now - r->state_ms >= minutes_ms(cfg->orphan_grace_minutes))
			snprintf(end(v, VERDICT_END, VM_TERMINATED), sizeof v->reason,
			    "orphan: carries our owner label, unknown to the ledger; grace period "
			    "over");
		break;
	default:
		break;
	}
}
