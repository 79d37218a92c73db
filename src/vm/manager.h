/*
 * The lifecycle manager: the daemon's VMs from the decision to create one to
 * the closing of its cost.
 *
 *	REQUESTED -> CREATING -> PROVISIONING -> BOOTING -> READY <-> UNHEALTHY
 *	    [-> DRAINING] -> TERMINATING -> TERMINATED  (and FAILED, PREEMPTED, ORPHANED)
 *
 * Every intent is in the ledger before the call that acts on it (the insert's
 * and the delete's requestIds included), so a crash at any point leaves what
 * the next start needs: reconciling the ledger with what the cloud lists under
 * our owner label re-issues an unfinished insert or delete with the same
 * requestId, closes what is gone, and adopts or deletes what nobody knows.
 *
 * A monitoring pass every health-check interval: one filtered, paginated list
 * per zone, the preemption operations, health checks of every VM in parallel,
 * then the rules: boot timeout, unhealthy too long, idle, lifetime. Pressure
 * reaches it through manager_pressure(); what happens leaves through events
 * (hooks, the control API, the library).
 */
#ifndef SPILLWAY_MANAGER_H
#define SPILLWAY_MANAGER_H

#include <stdbool.h>

#include <jansson.h>
#include <uv.h>

#include "cloud/provider.h"
#include "config/config.h"
#include "decide/decide.h"
#include "ledger/ledger.h"
#include "net/http.h"
#include "pressure/pressure.h"
#include "util/clock.h"

struct agent_identity;

/* Whether a VM spillway chose to end may go now (manager_opts.gate). */
enum manager_gate {
	MANAGER_GO,   /* its components are served elsewhere: it goes */
	MANAGER_WAIT, /* not yet: manager_gate_open says when */
	MANAGER_KEEP, /* not: it stays, for the reason given; asked again at the next pass */
};

struct manager_opts {
	const struct config *cfg;
	const struct clock *clock;
	struct cloud *cloud;
	struct ledger *ledger;
	const json_t *catalog; /* the price catalog's SKUs */
	const char *catalog_source;
	const char *owner;              /* the spillway-owner label */
	const char *const *zones;       /* the zone first, then the fallbacks */
	const unsigned char *agent_key; /* AGENT_KEY_LEN bytes: the VMs' lease secrets */
	const struct agent_identity
	    *identity;       /* our certificate, in the VMs' metadata (startup.h) */
	struct tls_ctx *tls; /* TLS to the agents, with that identity; NULL: no agent is asked */
	/*
	 * The routes' connections open to a VM now and their last use (0: never);
	 * NULL: no routes. Idleness counts them, and a VM with some is drained
	 * before it is deleted (manager_drained).
	 */
	long (*traffic)(void *arg, const char *vm, int64_t *last_use_ms);
	void *traffic_arg;
	/*
	 * Before a READY VM spillway chose to end goes (idle, lifetime, by hand,
	 * shutdown; not a preemption), its components must be served elsewhere:
	 * asked here (NULL: it always may). insist: it goes once they have been
	 * tried, whatever came of it (by hand, shutdown). why: a KEEP's reason.
	 * cancel: the VM is no longer asked to go (nothing to answer).
	 */
	enum manager_gate (*gate)(void *arg, const struct vm_record *, bool insist, bool cancel,
	    char *why, size_t whylen);
	void *gate_arg;
	/* What is known of a component's memory, for decide() (NULL: nothing beyond its RSS). */
	void (*memory)(void *arg, const char *component, struct component_memory *);
	void *memory_arg;
	bool keep;    /* leave VMs running at shutdown */
	bool passive; /* acts only when asked: no decisions, no rules (the CLI without a daemon) */
};

enum manager_event_kind {
	MEV_PRESSURE, /* the level changed */
	MEV_DECISION, /* a decision was made (create or not) */
	MEV_STATE,    /* a VM changed state */
	MEV_READY,    /* a VM is READY: offload its components there */
	MEV_GONE,     /* a VM is leaving: its components are local again */
	MEV_NOTE,     /* something else worth hearing: note (kind), reason (what) */
};

struct manager_event {
	enum manager_event_kind kind;
	int64_t t_ms;
	const struct vm_record *vm; /* MEV_STATE, MEV_READY, MEV_GONE */
	int from;                   /* MEV_STATE: the state before */
	const char *reason;
	const struct decision *decision;      /* MEV_DECISION */
	const struct pressure_snapshot *snap; /* MEV_PRESSURE */
	enum pressure_level previous;         /* MEV_PRESSURE */
	const char *note;                     /* MEV_NOTE: its kind ("local", "kept") */
	const char *note_vm;                  /* MEV_NOTE: the VM it is about, or "-" */
};

typedef void manager_event_cb(const struct manager_event *, void *arg);

/* Who hears events, in the order they asked: the manager's, and the daemon's that relays them. */
struct manager_listeners {
	struct manager_listener {
		manager_event_cb *cb;
		void *arg;
	} * v;
	size_t n;
};
void manager_listeners_add(struct manager_listeners *, manager_event_cb *, void *arg);
void manager_listeners_emit(const struct manager_listeners *, const struct manager_event *);
void manager_listeners_free(struct manager_listeners *);

struct manager;

int manager_new(uv_loop_t *, const struct manager_opts *, struct manager **, char **cause);
/* Reconcile with the cloud now, then every health-check interval. */
void manager_start(struct manager *);
/* The monitor's level changes (and samples, for idleness). */
void manager_pressure(struct manager *, const struct pressure_snapshot *, enum pressure_level prev);
void manager_on_event(struct manager *, manager_event_cb *, void *arg);
/* A reloaded configuration; the caller keeps it alive while the manager runs. */
void manager_set_config(struct manager *, const struct config *);
/* Reloaded zones (the zone, then the fallbacks) and price catalog; the caller keeps them alive. */
void manager_set_zones(struct manager *, const char *const *zones);
void manager_set_catalog(struct manager *, const json_t *catalog, const char *source);
/*
 * Whether a VM alive would be out of sight in these zones (NULL: in any):
 * its name and zone in vm. A reload must not lose sight of a VM.
 */
bool manager_alive_outside(const struct manager *, const char *const *zones, char *vm, size_t size);
/* Whether shutdown deletes the warm pool's VMs too (run --drain-pool), or keeps them stopped. */
void manager_set_drain_pool(struct manager *, bool drain);
/* Whether shutdown leaves the VMs running (the library decides when it closes). */
void manager_set_keep(struct manager *, bool keep);
/* A pass now (tests, SIGUSR1). */
void manager_pass_now(struct manager *);
/* A DRAINING VM's last routed connection ended: its delete goes now. */
void manager_drained(struct manager *, const char *name);
/* What a VM waited for to go (MANAGER_WAIT) is done: it is asked again now. */
void manager_gate_open(struct manager *, const char *name);
/*
 * Something that happened besides the VMs' states, for the ledger's events
 * and the listeners (MEV_NOTE): a VM's ("-": the daemon's) kind and detail.
 */
void manager_note(struct manager *, const char *vm, const char *kind, const char *detail);
/* A VM's health asked now (a route could not reach it), unless a check is in flight. */
void manager_check_vm(struct manager *, const char *name);
/*
 * A VM by hand: the daemon's rules of money and limits, not those of pressure.
 * metadata: instance metadata to add (vm_metadata_check's output), or NULL.
 * 0 and its name; -EAGAIN with the rule and why in *d; -EIO.
 */
int manager_create(struct manager *, const char *components, const char *reason,
    const char *metadata, char *name, size_t namelen, struct decision *d);
/*
 * Bake an image of the family (docs/images.md): a VM under the same rules,
 * that installs the backend, is stopped, made an image, and deleted. 0 and
 * the VM's name, with the image's in d->reason; -EAGAIN with the rule and
 * why in *d; -EBUSY (a bake is under way) and -EINVAL (nothing to bake) with
 * why in d->reason; -EIO.
 */
int manager_bake(
    struct manager *, const char *family, char *name, size_t namelen, struct decision *d);
/*
 * Delete an image spillway baked: 0 when its delete is sent (the ledger has
 * it DELETED once Compute Engine took it); -ENOENT (no such image), -EBUSY
 * (it is being baked, or deleted) with why.
 */
int manager_image_delete(struct manager *, const char *name, char *why, size_t whylen);
/*
 * The image VMs boot from: daemon.image, or for "baked" the family of
 * image.family when the ledger has an image of it READY, else image.base.
 */
const char *manager_boot_image(struct manager *, char *buf, size_t size);
/*
 * What manager_create would do now, without doing it: the zone it would go to
 * (the first not skipped; a stockout on the way may move it), the price, the
 * planned run, its cost and what is left today, or the rule that refuses.
 */
struct manager_plan {
	struct decision d; /* create, or the refusal; run_s, cost, left; the components */
	char zone[64];
	char machine_type[64];
	bool spot;
	double per_hour;
	char pooled[64]; /* the warm pool's VM taken instead (docs/pool.md), or "" */
	bool suspended;  /* it is resumed, not started */
};
int manager_plan(struct manager *, const char *components, struct manager_plan *);
/*
 * Metadata a program asks to add to its VM: an object of at most
 * VM_METADATA_MAX string values, keys of letters, digits, - and _, none of
 * spillway's (spillway-*) or the guest's own (startup-script...). 0 and the
 * object as compact JSON in out; -EINVAL and why.
 */
#define VM_METADATA_MAX 16
int vm_metadata_check(const json_t *, char *out, size_t size, char *why, size_t whylen);
int manager_terminate(struct manager *, const char *name, const char *reason);
/* The decision as things stand, without acting on it. */
void manager_decide(struct manager *, struct decision *);
/* Stop; delete every VM unless keep, bounded by the shutdown timeout; then done(arg). */
void manager_shutdown(struct manager *, void (*done)(void *), void *arg);
void manager_free(struct manager *);

/*
 * A first pass is over (or could not list the cloud) and the price is known
 * (or why not is): what is asked can be judged, if only to be refused.
 */
bool manager_settled(const struct manager *);
/* The backoffs in force now (at most max). */
size_t manager_backoffs(struct manager *, struct backoff *, size_t max);

/*
 * What the ledger has not taken yet (records.h): why (NULL when nothing
 * waits) and how much, and copies of the VM records it lacks, which views
 * show in place of the ledger's.
 */
const char *manager_ledger_problem(const struct manager *, size_t *waiting);
size_t manager_waiting(const struct manager *, struct vm_record **out); /* caller frees */

/* Counters, for the benchmark and status. */
struct manager_counts {
	long passes, api_calls, health_checks;
	int64_t last_pass_ms; /* wall time the last pass took, ms */
};
void manager_counts(const struct manager *, struct manager_counts *);

#endif
