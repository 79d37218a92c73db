/*
 * Where a new connection goes, pure (route.h): a function of the VMs as the
 * router sees them, whether the component has a local copy and how long a
 * connection may wait. Unit-tested case by case.
 */
#include <stdio.h>

#include "route/route.h"

const char *
route_to_name(enum route_to to)
{
	static const char *names[] = {"vm", "local", "wait", "none"};

	return names[to];
}

/* On its way to READY: a connection may wait for it. */
static bool
coming(enum vm_state s)
{
	return s == VM_REQUESTED || s == VM_CREATING || s == VM_PROVISIONING || s == VM_BOOTING;
}

void
route_choose(const char *component, const struct route_vm_view *vms, size_t n,
    enum route_local local, double wait_s, struct route_choice *c)
{
	bool on_way = false;
	size_t best = n;

	for (size_t i = 0; i < n; i++) {
		if (!vms[i].serves)
			continue;
		if (vms[i].state == VM_READY && (best == n || vms[i].open < vms[best].open))
			best = i;
		on_way = on_way || coming(vms[i].state);
	}
	if (best < n) {
		c->to = ROUTE_TO_VM;
		c->vm = best;
		snprintf(c->why, sizeof c->why, "%s is READY for %s", vms[best].name, component);
	} else if (local == ROUTE_LOCAL_UP) {
		c->to = ROUTE_TO_LOCAL;
		snprintf(c->why, sizeof c->why, "no VM is READY for %s: its local copy serves",
		    component);
	} else if (local == ROUTE_LOCAL_STARTING && wait_s > 0) {
		c->to = ROUTE_TO_WAIT;
		snprintf(c->why, sizeof c->why,
		    "no VM is READY for %s and its local copy starts: waiting up to %g s",
		    component, wait_s);
	} else if (on_way && wait_s > 0) {
		c->to = ROUTE_TO_WAIT;
		snprintf(c->why, sizeof c->why,
		    "a VM for %s is on its way and %s: waiting up to %g s", component,
		    local == ROUTE_LOCAL_NONE ? "there is no local copy"
		                              : "its local copy is stopped",
		    wait_s);
	} else {
		static const char *const copy[] = {"it has no local copy", "",
		    "its local copy starts", "its local copy is stopped"};

		c->to = ROUTE_TO_NONE;
		snprintf(c->why, sizeof c->why, "no VM is READY for %s and %s%s", component,
		    copy[local],
		    on_way || local == ROUTE_LOCAL_STARTING ? " (route.wait_s is 0: nothing waits)"
		                                            : "");
	}
}
