/*
 * The daemon, as one object that `spillway run` and `spillway demo` share:
 * the ledger, the cloud (Compute Engine, or one the command points it at), the
 * price catalog (the shipped one, refreshed from the billing API), the
 * pressure monitor (live, or a trace replayed on the clock), the lifecycle
 * manager, and the hooks. Start-up talks to the cloud, so it is asynchronous:
 * on_event hears everything from the first decision on.
 */
#ifndef SPILLWAY_DAEMON_H
#define SPILLWAY_DAEMON_H

#include <stdbool.h>

#include <uv.h>

#include "config/config.h"
#include "util/clock.h"
#include "vm/manager.h"

/* Where a Compute Engine is; the strings are the caller's, alive as long as the daemon. */
struct daemon_cloud {
	char *compute_endpoint; /* ".../compute/v1/" */
	char *billing_endpoint; /* ".../v1/" */
	char *project;
	const char *credentials; /* a service account key file for it */
};

struct daemon_opts {
	const struct config *cfg;
	const struct clock *clock;
	/*
	 * A Compute Engine other than the configured one (an emulator the command
	 * started): its endpoints, project and credentials file take the
	 * configuration's place, on every reload too. NULL: as configured.
	 */
	const struct daemon_cloud *cloud_at;
	bool keep;           /* leave the VMs at shutdown */
	bool drain_pool;     /* delete the warm pool's VMs at shutdown too (else kept, stopped) */
	bool passive;        /* no decisions or rules: only what is asked (manager_opts.passive) */
	const char *replay;  /* a pressure trace instead of the live monitor */
	double replay_speed; /* 0: the clock's own pace */
	char *const *env;    /* where credentials are looked up (NULL: the process's) */
	manager_event_cb *on_event;
	void (*hook_output)(const char *hook, const char *line, void *arg);
	void *event_arg; /* for on_event, hook_output and on_started */
	/*
	 * The first pass is under way (error 0), or start-up failed (the cause
	 * says what and what to do): called once, on its own turn of the loop,
	 * so it may daemon_stop() and, once stopped, daemon_free().
	 */
	void (*on_started)(void *arg, int error, const char *cause);
	/*
	 * Someone asked it to stop (POST /v1/stop, `spillway stop`): leave the VMs
	 * when keep; delete the warm pool too when drain_pool. NULL where it cannot
	 * be stopped so (inside a program).
	 */
	void (*on_stop_asked)(void *arg, bool keep, bool drain_pool);
};

struct daemon;

/* The synchronous part (ledger, configuration checks): 0, or -errno and a cause (exit 2). */
int daemon_new(uv_loop_t *, const struct daemon_opts *, struct daemon **, char **cause);
/* Shut down (VMs deleted unless keep), then done(arg), on a later turn of the loop. */
void daemon_stop(struct daemon *, void (*done)(void *), void *arg);
/* Free; the caller runs the loop on until its handles are closed. */
void daemon_free(struct daemon *);
/* Whether daemon_stop leaves the VMs running (--keep), decided late. */
void daemon_set_keep(struct daemon *, bool keep);
/* Whether daemon_stop deletes the warm pool too (--drain-pool), decided late. */
void daemon_set_drain_pool(struct daemon *, bool drain);
/*
 * Pass a request to stop to whoever runs it: 0, or -ENOTSUP (o.on_stop_asked is
 * NULL). *kept: whether the VMs stay (asked, or run --keep).
 */
int daemon_ask_stop(struct daemon *, bool keep, bool drain_pool, bool *kept);
/* Take a new configuration (SIGHUP): what the manager and the hooks read. */
int daemon_reload(struct daemon *, const struct config *, char **cause);
/* Every event, after the hooks and o.on_event (the control API listens here). */
void daemon_on_event(struct daemon *, manager_event_cb *, void *arg);
/* The live pressure snapshot; NULL before the monitor runs. */
const struct pressure_snapshot *daemon_snapshot(const struct daemon *);
const struct config *daemon_config(const struct daemon *);
const struct clock *daemon_clock(const struct daemon *);
/* NULL until started (the first pass is under way). */
struct manager *daemon_manager(struct daemon *);
struct ledger *daemon_ledger(struct daemon *);
struct router *daemon_router(struct daemon *); /* the components' routes */
struct offload *daemon_offload(struct daemon *); /* the local copies spillway runs; may be NULL */
const char *daemon_owner(const struct daemon *);
/*
 * One daemon per state directory: an exclusive lock on its daemon.lock (with
 * the PID in it), held while the returned fd is open. -EBUSY names the PID.
 */
int daemon_lock(const struct config *, char **cause);
/* After a fork the lock is the child's: daemon.lock names this process now. */
void daemon_lock_claim(int fd);
/* Let it go: daemon.lock names nobody once its holder is done. */
void daemon_unlock(int fd);
/* The stable owner label of this host and state directory. */
void daemon_owner_label(const char *state_dir, char out[64]);

#endif
