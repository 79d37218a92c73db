/*
 * When a component's local copy runs, pure (docs/offload.md). For a
 * component whose copy spillway runs, exactly one side serves it: a READY VM
 * that runs it and is not asked to go, or else its local copy.
 *
 *	a VM serves it      the copy's connections through the route get
 *	                    route.drain_s from the moment the VM took over, then
 *	                    the copy stops (at once when none is open)
 *	no VM serves it     the copy starts (a failed start is tried again after
 *	                    a while); a VM asked to go waits for it (plan_gate)
 *
 * Every input is data; the offload (vm/offload.c) gathers it and carries the
 * answer out. Unit-tested case by case.
 */
#ifndef SPILLWAY_LOCAL_PLAN_H
#define SPILLWAY_LOCAL_PLAN_H

#include <stdbool.h>
#include <stdint.h>

enum local_state {
	LOCAL_UNKNOWN,  /* not asked yet */
	LOCAL_RUNNING,  /* it serves: its health answers */
	LOCAL_STARTING, /* started; not healthy yet */
	LOCAL_STOPPING,
	LOCAL_STOPPED,
	LOCAL_FAILED, /* its last start failed; it does not run */
};

const char *local_state_name(enum local_state);

struct plan_view {
	enum local_state copy;
	int serving;          /* READY VMs that run the component and are not asked to go */
	long local_open;      /* connections open to the local copy through its route */
	int64_t served_since; /* serving > 0 since then: the copy's connections drain from then */
	int64_t drain_ms;     /* route.drain_s */
	int64_t failed_ms;    /* FAILED: when its last start failed */
	int64_t retry_ms;     /* a failed start is tried again this long after */
	bool unstoppable;     /* it runs where spillway cannot stop it (no local_stop) */
};

enum plan_action {
	PLAN_NONE,
	PLAN_START,
	PLAN_STOP,
};

struct plan {
	enum plan_action action;
	int64_t wake_ms; /* nothing now, but look again then (0: when something changes) */
};

void plan_step(const struct plan_view *, int64_t now, struct plan *);

/* Whether a VM asked to go may go now, for one of its components. */
enum plan_gate {
	GATE_GO,   /* another VM serves it, or its copy does: no gap */
	GATE_WAIT, /* its copy starts: the VM stays until it serves */
	GATE_KEEP, /* its copy failed to start: the VM stays (the reason is the copy's) */
};

/*
 * others: READY VMs besides this one that serve it and stay. insist: the
 * VM goes whatever happens once its copy has been tried (by hand, shutdown).
 */
enum plan_gate plan_gate(enum local_state copy, int others, bool insist);

#endif
