/*
 * The offload: for each component whose local copy spillway runs
 * (local/local.h), one of a READY VM and the local copy serves it, and the
 * hand-over between them leaves no gap (docs/offload.md).
 *
 *	out   a VM turns READY for it: the route sends new connections there;
 *	      those open to the local copy get route.drain_s; the copy stops, and
 *	      what it gave back (its PSS before, MemAvailable before and after)
 *	      is recorded with the VM (ledger offloads, a "local" note)
 *	back  a VM spillway chose to end waits (the manager's gate) until the
 *	      copy serves again; a copy that cannot start keeps the VM (idle,
 *	      lifetime) or lets it go once tried (by hand, shutdown); a VM lost
 *	      (unhealthy, preempted, gone) starts the copy at once, connections
 *	      waiting for it (route.wait_s)
 *
 * The rules are local/plan.h's, pure; this gathers their inputs from the
 * manager's events, the router and the copies, and carries them out. It
 * owns the copies' service (locals) and its view of the VMs; the daemon
 * owns the offload, the manager, the router and the ledger, all of which
 * outlive it.
 */
#ifndef SPILLWAY_OFFLOAD_H
#define SPILLWAY_OFFLOAD_H

#include <uv.h>

#include "config/config.h"
#include "decide/decide.h"
#include "ledger/ledger.h"
#include "local/local.h"
#include "route/route.h"
#include "vm/manager.h"

struct offload;

struct offload_opts {
	const struct clock *clock;
	const char *state_dir;
	struct ledger *ledger;
	struct router *router;    /* may be NULL: no routes */
	struct http_client *http; /* the copies' health calls */
};

int offload_new(uv_loop_t *, const struct config *, const struct offload_opts *, struct offload **,
    char **cause);
/*
 * The manager, once it exists: its VMs (from the ledger) are known from now
 * on, and the copies are asked whether they run.
 */
void offload_attach(struct offload *, struct manager *);
void offload_set_config(struct offload *, const struct config *);
/* Every manager event goes through here (the daemon's listener). */
void offload_event(struct offload *, const struct manager_event *);
/* manager_opts.gate */
enum manager_gate offload_gate(
    void *arg, const struct vm_record *, bool insist, bool cancel, char *why, size_t whylen);
/* manager_opts.memory: what decide() knows of a component's memory. */
void offload_memory(void *arg, const char *component, struct component_memory *);
/* router_opts.local_drained */
void offload_local_drained(void *arg, const char *component);
/* The copies, for status (at most max). */
size_t offload_copies(const struct offload *, const struct local_info **, size_t max);
void offload_free(struct offload *);

#endif
