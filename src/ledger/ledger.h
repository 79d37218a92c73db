/*
 * The ledger: every VM spillway means to create or has created, every state
 * it went through, and every cent it cost, in SQLite (WAL, synchronous FULL)
 * under the state directory. A crash at any point loses no committed fact, and
 * the daemon and a CLI can use it at once: the budget check and the
 * reservation of a VM's planned cost are one transaction, so two processes
 * cannot both spend the last dollar. The SQL stays portable (a PostgreSQL
 * backend is planned for hosts sharing one budget). See docs/ledger.md.
 */
#ifndef SPILLWAY_LEDGER_H
#define SPILLWAY_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/cost.h"

enum vm_state {
	VM_REQUESTED,    /* the intent is written; nothing sent yet */
	VM_CREATING,     /* the insert is sent (its requestId is in the ledger) */
	VM_PROVISIONING, /* Compute Engine accepted it; the operation runs */
	VM_BOOTING,      /* it runs; the backend is not healthy yet */
	VM_READY,        /* healthy: components offloaded */
	VM_UNHEALTHY,    /* health checks fail */
	VM_DRAINING, /* to be deleted: routes send new connections elsewhere, open ones finish */
	VM_IMAGING,  /* a bake's VM, installed: stopped, its disk made an image (docs/images.md) */
	VM_TERMINATING, /* the delete is sent (its requestId is in the ledger) */
	VM_TERMINATED,  /* gone, cost closed */
	VM_FAILED,      /* never ran (quota, stockout, refused, timed out) */
	VM_PREEMPTED,   /* Google took it back; cost closed */
	VM_ORPHANED,    /* ours by label, unknown to the ledger: to adopt or delete */
	/* The warm pool (docs/pool.md): */
	VM_POOLING,  /* warmed (READY once): being stopped or suspended */
	VM_POOLED,   /* stopped or suspended, waiting to be started; its disk costs */
	VM_STARTING, /* taken from the pool: its start or resume is sent (its requestId here) */
};

#define VM_STATES 16

struct vm_record {
	char name[64];
	char zone[64];
	char request_id[40];        /* the insert's */
	char delete_request_id[40]; /* the delete's, once decided */
	enum vm_state state;
	char machine_type[64];
	bool spot;
	double per_hour;
	int64_t planned_run_s; /* also the VM's maxRunDuration */
	double reserved;       /* the planned run's cost, held against the budget */
	char components[256];  /* comma-separated */
	char reason[512];      /* why it was created */
	double confidence;
	char op[128]; /* the operation in flight, if any */
	char nat_ip[64];
	int64_t requested_ms, started_ms, ready_ms, ended_ms, state_ms;
	int64_t last_activity_ms;
	int health_failures;
	int64_t unhealthy_ms;
	double cost; /* closed: what it was billed */
	char end_reason[128];
	int zones_tried;
	char metadata[2048]; /* instance metadata asked for with the VM: a JSON object, or "" */
	char tls_pin[64];    /* its agent's key, "sha256//BASE64", from its guest attributes */
	char purpose[8]; /* "": it serves components; "bake": it makes an image; "pool": it waits */
	/* The pool's: */
	bool suspended;        /* POOLED by a suspend (its memory kept), not a stop */
	int64_t pool_since_ms; /* POOLED since */
	double wait_per_hour;  /* what it costs while POOLED (its disk, its saved memory) */
	int64_t billed_ms;     /* its cost is in the ledger up to here (ledger_bill) */
};

static inline bool
vm_bakes(const struct vm_record *v)
{
	return v->purpose[0] == 'b';
}

/* A VM of the warm pool, not taken yet: it serves nobody. */
static inline bool
vm_pooled(const struct vm_record *v)
{
	return v->purpose[0] == 'p';
}

struct vm_stats {
	long created, failed, terminated, preempted, orphaned, alive;
	double total_cost;
};

struct ledger;

const char *vm_state_name(enum vm_state);
int vm_state_parse(const char *, enum vm_state *);
/* Not terminal: counts against max_concurrent and the budget's commitments. */
bool vm_state_alive(enum vm_state);

/* Open (creating the directory 0700 and the file 0600) and migrate. */
int ledger_open(const char *dir, struct ledger **, char **cause);
void ledger_close(struct ledger *);
/*
 * SQLite's quick check of the whole file (the daemon's start, doctor): 0, or
 * -EUCLEAN and a cause with its first line and what to do.
 */
int ledger_check(struct ledger *, char **cause);
/*
 * Fold the WAL into the file and cut it back (the manager's passes): the WAL
 * stays within a few hundred KiB whatever happens. 0, or the ledger's error.
 */
int ledger_checkpoint(struct ledger *);
/*
 * At rest (the manager, nothing alive): the connection is closed, its WAL
 * folded into the file and SQLite's memory (schema, page cache) given back;
 * the next call opens the file again.
 */
void ledger_rest(struct ledger *);
/*
 * Whether the file at the ledger's path is still the one open; if it was
 * deleted or replaced, the file there is opened (a new one made, migrated)
 * and *reopened set: the caller writes what it knows into it. 0, or -errno
 * and a cause (the ledger is then not usable until a refresh works).
 */
int ledger_refresh(struct ledger *, bool *reopened, char **cause);
const char *ledger_path(const struct ledger *);
/*
 * Every call that fails returns a negative errno: -ENOSPC (the state
 * directory is full), -EUCLEAN (the file is damaged), -EROFS, -ETIMEDOUT
 * (another process held the lock too long) or -EIO; and this says what the
 * last failure means to the user ("the state directory '/x' is full ...").
 */
const char *ledger_error(const struct ledger *);

struct reserve_rules {
	double budget;
	int max_concurrent;
	int64_t max_run_s;
	int64_t min_run_s;
};

/*
 * In one transaction: count what is alive, work out today's spend and what
 * alive VMs can still cost, plan the run, and if the rules allow, write the
 * intent (state REQUESTED, planned_run_s and reserved set). 0 and the plan;
 * when refused, *why (the rule's numbers) and -EBUSY (max concurrent) or
 * -EAGAIN (the budget); another negative errno, with the ledger's error in
 * *why, when the ledger cannot be read or written (nothing is reserved).
 */
int ledger_reserve(struct ledger *, struct vm_record *intent, const struct reserve_rules *,
    int64_t now, struct budget_plan *, char *why, size_t whylen);

/*
 * A pooled VM taken (docs/pool.md): the same rules as ledger_reserve, in one
 * transaction, for a run of its maxRunDuration (v->planned_run_s, set when it
 * was made): refused (-EAGAIN) when today's budget buys less. On success v
 * is STARTING, its run reserved.
 */
int ledger_reserve_start(struct ledger *, struct vm_record *v, const struct reserve_rules *,
    int64_t now, struct budget_plan *, char *why, size_t whylen);
/*
 * Bill a part of a VM's life before its end, once: a run (per_hour, as a
 * run is billed) or a wait in the pool (storage, per second), from..to split
 * over days, added to its cost; what is billed already (up to billed_ms) is
 * not billed again. *amount: what was added. A pooled VM bills its warm-up
 * run when it stops and its wait when it is taken; ledger_close_cost bills
 * the rest.
 */
int ledger_bill(struct ledger *, struct vm_record *v, int64_t from, int64_t to, double per_hour,
    bool storage, double *amount);
/* Write a record (insert or update); an event when its state changed from `from`. */
int ledger_save(
    struct ledger *, const struct vm_record *, int from_state, const char *reason, int64_t now);
int ledger_event(
    struct ledger *, const char *vm, const char *kind, const char *detail, int64_t now);
int ledger_get(struct ledger *, const char *name, struct vm_record *);
/* The VMs in these states (NULL: the alive ones), oldest first. Caller frees *list. */
int ledger_list(struct ledger *, const enum vm_state *states, size_t nstates,
    struct vm_record **list, size_t *n);
/*
 * Close a run: its cost, split over days, with the run it was billed for, in
 * one transaction, once. A second close (after a restart, say) changes
 * nothing and gives back the first: *start_ms and *end_ms are in the run as
 * the caller sees it, out the run that was billed.
 */
int ledger_close_cost(struct ledger *, const char *vm, double per_hour, int64_t *start_ms,
    int64_t *end_ms, bool spot, bool preempted, double *total);
/*
 * Billed today: closed runs, plus what running VMs have accrued on it by now.
 * A ledger that cannot be read is an error, never $0.
 */
int ledger_spent(struct ledger *, int64_t now, double *spent);
/* What alive VMs can still cost until their hard stop (in flight: their whole reservation). */
int ledger_committed(struct ledger *, int64_t now, double *committed);
int ledger_stats(struct ledger *, struct vm_stats *);
/*
 * Retention: VMs ended more than `days` ago (their cost closed) are
 * summarised per day (their money, how they ended) and their rows and events
 * deleted, with the daemon's own events as old: the ledger's size, and what
 * SQLite caches of it, stay bounded. Totals and per-day costs are unchanged.
 * One transaction. *pruned: how many VMs.
 */
int ledger_prune(struct ledger *, int64_t now, int days, int *pruned);
int ledger_price(struct ledger *, const char *machine_type, const char *region, bool spot,
    double per_hour, const char *effective, const char *source, int64_t now);

/*
 * Offloads (docs/offload.md): each time a component's local copy was stopped
 * because a VM served it, what it gave back, and when the copy served again.
 */
struct offload_record {
	char vm[64];
	char component[64];
	int64_t stopped_ms;
	int64_t pss_kb;          /* its processes' PSS just before it stopped; -1: not measured */
	int64_t avail_before_kb; /* MemAvailable just before it stopped, and just after */
	int64_t avail_after_kb;
	int64_t back_ms;       /* its local copy served again; 0: not yet */
	int64_t start_took_ms; /* from its start to healthy, that time */
};
/* MemAvailable was read before its stop and after: what it gave back is known. */
static inline bool
offload_measured(const struct offload_record *o)
{
	return o->avail_before_kb >= 0 && o->avail_after_kb >= 0;
}
/* What a stop gave back, as MemAvailable saw it: after - before (may be below 0: noise). */
static inline int64_t
offload_freed_kb(const struct offload_record *o)
{
	return o->avail_after_kb - o->avail_before_kb;
}
int ledger_offload_stopped(struct ledger *, const struct offload_record *);
/* The component's local copy serves again: its offloads still open are closed. */
int ledger_offload_back(struct ledger *, const char *component, int64_t back_ms, int64_t took_ms);
/*
 * Offloads of a VM or a component (NULL: any), newest first, at most limit.
 * Caller frees *list.
 */
int ledger_offloads(struct ledger *, const char *vm, const char *component, int limit,
    struct offload_record **list, size_t *n);

/* Per-day totals of the last n days up to today, newest first. Caller frees *days. */
int ledger_days(struct ledger *, int64_t now, int n, struct day_cost **days, int *count);

/*
 * Images spillway baked (docs/images.md): each from the request to its
 * deletion, with what it holds and what its storage costs.
 */
enum image_state { IMAGE_BAKING, IMAGE_READY, IMAGE_FAILED, IMAGE_DELETED };

struct image_record {
	char name[64];
	char family[64];
	char vm[64];           /* the VM it is baked on */
	char install_hash[40]; /* what it holds (startup_install_hash) */
	char backend[256];     /* backend.git at backend.ref, for people */
	char request_id[40];   /* images.insert's */
	enum image_state state;
	int64_t requested_ms, ready_ms, deleted_ms;
	double size_gib;      /* what its storage is billed on */
	double per_gib_month; /* its storage's price */
	char why[256];        /* FAILED: why */
};

const char *image_state_name(enum image_state);
/* Storage billed from ready to deleted (0: still there), on a day and by now. */
double image_storage_on(const struct image_record *, const char *day, int64_t now);
int ledger_image_save(struct ledger *, const struct image_record *);
int ledger_image_get(struct ledger *, const char *name, struct image_record *);
/* The image a bake's VM makes: -ENOENT when none. */
int ledger_image_of(struct ledger *, const char *vm, struct image_record *);
/* The newest image of a family READY in a list newest first (ledger_images'), or NULL. */
const struct image_record *image_newest(
    const struct image_record *list, size_t n, const char *family);
/* Every image not deleted (all: those too), newest first. Caller frees *list. */
int ledger_images(struct ledger *, bool all, struct image_record **list, size_t *n);

/* Recent events, newest first, as "time vm kind detail" for people. Caller frees. */
struct ledger_event {
	int64_t t_ms;
	char vm[64];
	char kind[32];
	char detail[512];
};
int ledger_events(
    struct ledger *, const char *vm, int limit, struct ledger_event **list, size_t *n);

#endif
