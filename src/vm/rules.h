/*
 * When a VM goes, pure: the rules that end a VM spillway runs, as decide()
 * is the rule that starts one. One function of the settings, a VM's record,
 * what was seen of it and the time; the manager acts on its verdict, tests
 * ask it case by case.
 *
 *	creating   past the create deadline and listed but not RUNNING: given up
 *	BOOTING    not healthy boot_timeout after it started, or after its
 *	           install last moved: FAILED
 *	UNHEALTHY  longer than unhealthy_minutes: ended, and another may come now
 *	READY      its planned run is over (within a pass, and the time its
 *	           components' local copies take to start): lifetime; its backend
 *	           unused idle_timeout since it was READY (by the routes' traffic
 *	           first, and the agent's report of what did not pass through
 *	           them): idle
 *	ORPHANED   under orphan_policy = delete, past orphan_grace_minutes
 */
#ifndef SPILLWAY_RULES_H
#define SPILLWAY_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "ledger/ledger.h"

/* What was seen of a VM besides its record. */
struct rules_seen {
	const char *status;  /* the cloud's status in this pass's list; NULL: not listed */
	int64_t progress_ms; /* booting: when its install was last seen to move; 0: never */
	long routed_open;    /* connections open to it through the routes: it is in use */
	int64_t routed_ms;   /* the routes' last use of it; 0: never */
	int64_t lead_ms;     /* its end is asked for this much earlier (rules_lead_ms) */
};

enum verdict_kind {
	VERDICT_KEEP,
	VERDICT_END,     /* delete it, ending in `end` */
	VERDICT_GIVE_UP, /* its create is given up: deleted, FAILED, and a backoff */
};

struct verdict {
	enum verdict_kind kind;
	enum vm_state end; /* VERDICT_END: FAILED or TERMINATED */
	bool replace_now;  /* no cooldown before another VM: this one failed its user */
	char reason[256];  /* the rule and its numbers, for the ledger and the events */
};

/* Past the create deadline: a VM that does not run by now is given up. */
bool rules_past_create_deadline(const struct config *, const struct vm_record *, int64_t now);
/*
 * How long before its planned end a VM must be asked to go: the longest
 * local_start_timeout_s of its components whose local copy spillway runs,
 * which must serve again before the VM goes; 0 with none.
 */
int64_t rules_lead_ms(const struct config *, const struct vm_record *);
/* When its backend was last used; a VM just READY has had no chance to be. */
int64_t rules_last_used(const struct vm_record *);
void rules_judge(const struct config *, const struct vm_record *, const struct rules_seen *,
    int64_t now, struct verdict *);

#endif
