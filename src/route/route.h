/*
 * Routes: each component with a `listen` address gets a local listener; every
 * connection the application opens there is sent, when it arrives, to a VM
 * READY for that component, else to the component's local copy, else waits
 * (route.wait_s) for a VM that is booting, else is closed. Bytes pass both
 * ways unchanged (any TCP protocol), with backpressure: a side that does not
 * read stops the other. The router knows VMs only as the manager tells it
 * (router_vm) and tells back what it sees (unreachable, drained).
 * docs/offload.md.
 */
#ifndef SPILLWAY_ROUTE_H
#define SPILLWAY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config/config.h"
#include "ledger/ledger.h"
#include "net/tls.h"
#include "util/clock.h"

/* --- where a new connection goes: pure (choose.c) --- */

enum route_to {
	ROUTE_TO_VM,    /* a READY VM that runs the component */
	ROUTE_TO_LOCAL, /* the component's local copy */
	ROUTE_TO_WAIT,  /* a VM for it is on its way: wait for it */
	ROUTE_TO_NONE,  /* nowhere: closed */
};

struct route_vm_view {
	const char *name;
	enum vm_state state; /* DRAINING: sends new connections elsewhere */
	bool serves;         /* runs this route's component */
	long open;           /* connections open to it now */
};

/* The component's local copy, as far as a new connection is concerned. */
enum route_local {
	ROUTE_LOCAL_NONE,     /* it has none (no `local`) */
	ROUTE_LOCAL_UP,       /* it serves (or spillway does not run it: it is tried) */
	ROUTE_LOCAL_STARTING, /* spillway starts it: a connection may wait for it */
	ROUTE_LOCAL_DOWN,     /* spillway stopped it (a VM serves), or it failed to start */
};

struct route_choice {
	enum route_to to;
	size_t vm; /* ROUTE_TO_VM: which of the views */
	char why[160];
};

/*
 * The least loaded READY VM that serves it; else the local copy when it
 * serves; else wait (wait_s > 0) for the copy that starts or a VM on its way.
 */
void route_choose(const char *component, const struct route_vm_view *, size_t n, enum route_local,
    double wait_s, struct route_choice *);
const char *route_to_name(enum route_to);

/* --- the router --- */

struct router_opts {
	const struct clock *clock;
	/* TLS to the VMs' agents, with this daemon's identity (docs/offload.md). */
	struct tls_ctx *tls;
	/*
	 * A VM refused or dropped a connection before anything was sent: it went
	 * local instead; its health is worth checking now.
	 */
	void (*unreachable)(void *arg, const char *vm, const char *why);
	/* A DRAINING VM's last connection ended (said on a later turn of the loop). */
	void (*drained)(void *arg, const char *vm);
	/* A route's last connection to its local copy ended (said the same way). */
	void (*local_drained)(void *arg, const char *component);
	void *arg;
};

/* What `spillway routes` shows of one route. */
struct route_stats {
	char component[64];
	char listen[64];
	char local[64];    /* "" none */
	char to[8];        /* where a new connection would go now: "vm", "local", "wait", "none" */
	char vm[64];       /* "vm": which */
	char why[160];     /* and why */
	long open;         /* connections open now */
	long waiting;      /* of them, waiting for a VM */
	long total;        /* accepted since start */
	long refused;      /* another user's, refused */
	long local_open;   /* of the open ones, to the local copy */
	char local_copy[16]; /* the local copy spillway runs: "running", "stopped"...; "" none */
	uint64_t bytes_up; /* from the application */
	uint64_t bytes_down; /* to it */
	int64_t last_use_ms; /* a connection opened, closed or moved bytes; 0: never */
};

struct router;

/* Listen on every component's `listen`: 0, or -errno and a cause naming the address. */
int router_new(
    uv_loop_t *, const struct config *, const struct router_opts *, struct router **, char **cause);
/* A reload: routes added, removed or changed; open connections stay where they are. */
int router_set_config(struct router *, const struct config *, char **cause);
/* A VM's record as the manager has it now (every state change); DRAINING takes no new connection.
 */
void router_vm(struct router *, const struct vm_record *);
/*
 * The local copy of a component, as spillway runs it (vm/offload.c): a
 * connection waits for one that starts, and goes nowhere near one stopped.
 * copy: its state's name, for `spillway routes`.
 */
void router_local(struct router *, const char *component, enum route_local, const char *copy);
/* Connections open to a component's local copy now. */
long router_local_open(const struct router *, const char *component);
/* Connections open to a VM now, and when it was last used through a route (0: never). */
long router_vm_open(const struct router *, const char *vm, int64_t *last_use_ms);
/* Every route, in the configuration's order; the caller frees *out. */
size_t router_stats(const struct router *, struct route_stats **out);
/* Close every listener and connection; the memory once libuv lets go. */
void router_free(struct router *);

#endif
