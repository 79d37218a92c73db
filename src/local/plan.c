/* When a component's local copy runs (plan.h): pure, no clock, no state of its own. */
#include "local/plan.h"

const char *
local_state_name(enum local_state s)
{
	static const char *names[] = {
	    "unknown", "running", "starting", "stopping", "stopped", "failed"};

	return names[s];
}

void
plan_step(const struct plan_view *v, int64_t now, struct plan *p)
{
	p->action = PLAN_NONE;
	p->wake_ms = 0;
	if (v->serving > 0) {
		int64_t until = v->served_since + v->drain_ms;

		/* A copy that starts is let finish first; one asked to go need not be. */
		if (v->copy != LOCAL_RUNNING || v->unstoppable)
			return;
		if (v->local_open == 0 || now >= until)
			p->action = PLAN_STOP;
		else
			p->wake_ms = until;
		return;
	}
	switch (v->copy) {
	case LOCAL_STOPPED:
		p->action = PLAN_START;
		break;
	case LOCAL_FAILED:
		if (now >= v->failed_ms + v->retry_ms)
			p->action = PLAN_START;
		else
			p->wake_ms = v->failed_ms + v->retry_ms;
		break;
	default:
		/* Running or on its way; unknown until asked; stopping, then started. */
		break;
	}
}

enum plan_gate
plan_gate(enum local_state copy, int others, bool insist)
{
	if (others > 0 || copy == LOCAL_RUNNING)
		return GATE_GO;
	if (copy == LOCAL_FAILED)
		return insist ? GATE_GO : GATE_KEEP;
	return GATE_WAIT;
}
