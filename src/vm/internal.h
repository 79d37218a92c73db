/*
 * What the lifecycle manager's files share, and nobody else sees.
 *
 *	manager.c    the VMs' states and events, the decision to create, life
 *	create.c     zones and backoffs, the insert, the delete, a run's end
 *	reconcile.c  the pass: lists, preemptions, orphans, the rules applied
 *	probe.c      health and leases: the calls to a VM's backend and agent
 *	rules.c      when a VM goes, pure (rules.h)
 *	bake.c       a VM that becomes an image: stopped, imaged, deleted
 *	pool.c       the warm pool: VMs made ahead, stopped, started when asked for
 *
 * Ownership: the manager owns its VMs (struct mvm, a list in creation
 * order); a VM owns its health call and its deferred termination reason.
 * What a pass listed is the manager's until the pass is done (forget_pass).
 * Every write to the ledger goes through records (records.h).
 */
#ifndef SPILLWAY_VM_INTERNAL_H
#define SPILLWAY_VM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "net/hconn.h"
#include "vm/manager.h"
#include "vm/records.h"

#define CALL_DEADLINE_MS 120000
#define MAX_SKIPS        32

struct mvm {
	struct manager *m;
	struct vm_record rec;
	bool busy;             /* a cloud call about it is in flight */
	bool asking_pin;       /* the call for its agent's key (probe.c) is in flight */
	char *terminate_after; /* terminate once the call in flight is done, for this reason */
	bool announced;        /* MEV_READY was sent, MEV_GONE not yet: its components are there */
	bool adopted;          /* taken over: its next READY is announced as "adopted" */
	bool preempted;
	int64_t preempted_ms;
	enum vm_state end_state; /* what TERMINATING ends in */
	int64_t drain_until_ms;  /* DRAINING: deleted then, open connections or not */
	char *drain_why;         /* DRAINING: why it goes (the delete's reason) */
	int64_t gave_up_ms;      /* its create was given up then (it did not run yet) */
	int64_t deleted_ms;      /* when the cloud took its delete */
	int64_t boot_moved_s;    /* booting: the agent's last "boot.updated" (its clock) */
	int64_t progress_ms;     /* booting: when we saw it move (ours) */
	/* Asked to go, and waiting for the gate (manager_opts.gate): how it goes then. */
	bool going;
	bool going_insist;
	char *going_why;
	enum vm_state going_end;
	char kept_why[256];  /* the gate's last KEEP, said once */
	struct hconn *agent; /* the channel to its agent (probe.c): a call in flight when busy */
	bool probe; /* the call in flight is a boot probe, not the pass's */
	struct image_record *image; /* a bake's: its image (bake.c), once read */
	enum cloud_power pool_how;  /* POOLING: the stop or the suspend sent (pool.c) */
	int64_t untaken_until;      /* POOLED: its start failed; not taken before this */
	struct mvm *next;
};

struct skip {
	char zone[64];
	int64_t until;
};

struct manager {
	uv_loop_t *loop;
	struct manager_opts o;
	const struct config *cfg;
	struct records *records; /* every write to the ledger, kept when it cannot take it */
	bool ledger_lost_said;   /* the ledger's file could not be made again: said */
	struct mvm *vms, **tail; /* in creation order; tail: where the next goes */
	size_t nvms;
	uv_timer_t timer;
	uv_timer_t probe; /* health of BOOTING VMs, more often than the passes */
	uv_timer_t drain; /* the next DRAINING VM's deadline */
	int handles;      /* open timers, for the release */
	bool passing;
	bool sweeping;                      /* the images are being listed (bake.c) */
	struct image_delete *image_deletes; /* in flight (bake.c) */
	char pool_rule[16];                 /* why the pool was last not refilled, said once */
	bool drain_pool;                    /* shutdown deletes the pool too */
	bool list_failed; /* a pass could not list the VMs: what is asked need not wait for one */
	bool last_failed; /* the last pass could not list them */
	bool preemptions_failed; /* this pass could not list the preemptions */
	int health_pending;      /* the pass's lease calls out */
	struct mvm *health_next; /* the next VM whose lease the pass renews */
	bool renewing;           /* the pass is renewing leases (probe.c) */
	int64_t pass_started_ns;
	int64_t list_sent_ms; /* when the pass's list was asked: what ended since is newer */
	int64_t preempt_since;
	int64_t retained_ms; /* when the ledger's retention last ran */
	/* The pass's instances and preemptions, sorted by name, while it runs. */
	struct cloud_seen *listed;
	bool *claimed; /* listed[i] is a VM the ledger has alive */
	size_t nlisted;
	struct cloud_preempted *preemptions;
	size_t npreemptions;
	/* pressure */
	struct pressure_snapshot snap;
	enum pressure_level level;
	int64_t level_since;
	/* rules' state */
	int64_t cooldown_until;
	char cooldown_why[160];
	int64_t backoff_until;
	int64_t backoff_step;
	bool backoff_quota; /* the backoff is the quota's, else a failure's */
	int64_t last_failure;
	char backoff_why[512];
	struct skip skips[MAX_SKIPS];
	int nskips;
	/* the price of a VM of the configured type */
	int memory_mb; /* its memory, once known: whether it may be suspended */
	bool price_known;
	bool price_asked;
	double per_hour;
	char price_why[256];
	char last_rule[16];
	struct manager_listeners listeners;
	/* shutdown */
	bool stopping;
	int64_t stop_deadline_ns;
	void (*done)(void *);
	void *done_arg;
	struct manager_counts counts;
};

/* The routes' connections open to a VM now and their last use (0 and 0 without routes). */
static inline long
vm_traffic(const struct mvm *v, int64_t *last_use_ms)
{
	const struct manager *m = v->m;

	*last_use_ms = 0;
	return m->o.traffic != NULL ? m->o.traffic(m->o.traffic_arg, v->rec.name, last_use_ms) : 0;
}

/*
 * No final answer (the network, a deadline, a server's error, a rate limit,
 * retried within the call already): the same call goes again at a later pass.
 */
static inline bool
transient(enum cloud_errc c)
{
	return c == CLOUD_NETWORK || c == CLOUD_DEADLINE || c == CLOUD_SERVER ||
	    c == CLOUD_RATE_LIMITED;
}

/* route.drain_s, in ms. */
static inline int64_t
drain_ms(const struct manager *m)
{
	return (int64_t)(m->cfg->route_drain_s * 1000);
}

/* Of the 30 s Compute Engine gives before a preempted VM stops, what its connections get. */
#define PREEMPT_DRAIN_MS 20000

static inline int64_t
preempt_drain_ms(const struct manager *m)
{
	return drain_ms(m) < PREEMPT_DRAIN_MS ? drain_ms(m) : PREEMPT_DRAIN_MS;
}

static inline int64_t
now_ms(const struct manager *m)
{
	return clock_now_ms(m->o.clock);
}

/* manager.c */
void emit(struct manager *, const struct manager_event *);
void set_state(struct mvm *, enum vm_state to, const char *reason);
void announce(struct mvm *, enum vm_state from, const char *reason);
struct mvm *find_vm(struct manager *, const char *name);
struct mvm *add_vm(struct manager *, const struct vm_record *);
void prune(struct manager *);
void consider(struct manager *);
/* The rules of a VM asked by hand (decide.h); false and the refusal in *d. */
bool manager_by_hand(struct manager *, const char *components, struct decision *d);

/* create.c */
const char *next_zone(struct manager *, const char *after);
int zones_available(struct manager *);
void skip_zone(struct manager *, const char *zone, const char *why);
void cool_down(struct manager *, const char *why);
/* The money rules and limits a reservation is held to. */
static inline struct reserve_rules
reserve_rules_of(const struct config *cfg)
{
	return (struct reserve_rules){.budget = cfg->daily_budget,
	    .max_concurrent = (int)cfg->max_concurrent,
	    .max_run_s = (int64_t)(cfg->max_lifetime_hours * 3600),
	    .min_run_s = (int64_t)(cfg->min_run_minutes * 60)};
}

/* A reservation refused (ledger_reserve's error and why): said in *no; -EAGAIN or the error. */
int reserve_refused(struct decision *no, int error, const char *why);

/* What a VM is created for; strings borrowed for the call. */
struct vm_intent {
	const char *components; /* NULL: none */
	const char *reason;
	const char *metadata; /* vm_metadata_check's, or NULL */
	double confidence;
	const char *purpose; /* vm_record.purpose, or NULL */
};
int create_vm(
    struct manager *, const struct vm_intent *, char *name, size_t namelen, struct decision *no);
void send_insert(struct mvm *);
void send_delete(struct mvm *);
void terminate(struct mvm *, const char *reason, enum vm_state end);
/*
 * The delete of a VM spillway chose to end: one with routed connections open
 * is DRAINING first, for at most limit_ms (route.drain_s); others go now.
 */
void leave(struct mvm *, const char *reason, enum vm_state end, int64_t limit_ms);
/*
 * A VM spillway chose to end (a rule, by hand, shutdown): a READY one goes
 * once the gate lets it (manager_opts.gate), then leave(). insist: the gate
 * may hold it only while its components are being tried.
 */
void go(struct mvm *, const char *reason, enum vm_state end, bool insist);
/* No longer asked to go (its rule says keep now): the gate hears it. */
void stay(struct mvm *);
void drain_timer(struct manager *); /* the drain timer at the next DRAINING deadline */
void give_up_create(struct mvm *, const char *why);
/* A call about the VM is over: a termination asked meanwhile goes now. */
void after_call(struct mvm *);
bool zone_skipped(struct manager *, const char *zone);
/* Its address and start, asked of the cloud (a VM that runs now). */
void learn_instance(struct mvm *);
/*
 * An operation of the VM's not DONE yet: waited on (zone NULL: a global
 * one), cb called again with its end. Whether it waits.
 */
bool waits_on(struct mvm *, const char *zone, const struct cloud_error *, const struct cloud_op *,
    cloud_op_cb *cb);
void finish_termination(struct mvm *);

/* reconcile.c */
void pass(struct manager *);
void pass_done(struct manager *);
void schedule(struct manager *);
/* Something to look after: the next pass at the interval, not at rest's. */
void wake(struct manager *);
void ask_price(struct manager *);
void forget_pass(struct manager *);
void mark_preempted(struct mvm *, int64_t when, const char *why);

/* bake.c */
/* An agent's answer about a bake's VM: IMAGING once it says the install is done. */
struct health_answer;
void bake_answer(struct mvm *, const struct health_answer *);
/* The next step of an IMAGING VM, from its listed status ("TERMINATED": stopped). */
void bake_step(struct mvm *, const char *status);
/* A bake's VM ended (deleted, vanished): an image not made by then failed. */
void bake_ended(struct mvm *);
/* Once at start: the project's images and the ledger's made to agree. */
void bake_sweep(struct manager *);
/* What bake.c holds of calls in flight, freed (the manager goes). */
void bake_forget(struct manager *);

/* pool.c */
/* Whether pooled VMs are suspended (pool.suspend, and Compute Engine allows it), else stopped. */
bool pool_suspends(const struct manager *);
/* What a pooled VM costs an hour while it waits (stopped, or suspended). */
double pool_wait_per_hour(const struct manager *, bool suspended);
/* A pool VM answered healthy: warm; stopped or suspended now. */
void pool_warm(struct mvm *);
/* The pooled VM a VM asked for would be (waiting, not busy, its zone not skipped), or NULL. */
struct mvm *pool_next(struct manager *);
/*
 * A VM asked for, from the pool: a pooled VM started or resumed under the
 * money rules. 0 and its name; -ENOENT none to take; -EAGAIN refused (*no).
 */
int pool_take(
    struct manager *, const struct vm_intent *, char *name, size_t namelen, struct decision *no);
/* What the pass listed of a POOLING, POOLED or STARTING VM. */
void pool_seen(struct mvm *, const char *status);
/* Its wait in the pool is over (taken, deleted, gone): billed up to now. */
void pool_waited(struct mvm *, int64_t now);
/* After a pass: the pool made whole again, one VM at a time, when the rules allow. */
void pool_refill(struct manager *);
/* Why the pool is not refilled, said once per rule. */
void pool_said(struct manager *, const char *rule, const char *why);

/* probe.c */
void probe_soon(struct manager *);
void check_health(struct manager *);

#endif
