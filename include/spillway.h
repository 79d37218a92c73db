/*
 * libspillway: spillway inside a program, as an application that runs its
 * own heavy components wants it. Link with `pkg-config --cflags --libs
 * spillway`.
 *
 * A handle talks to the spillway daemon that runs for this user (through its
 * control socket), or, when none runs, runs spillway's daemon inside the
 * program: the same rules, the same ledger, the same VMs. Every call is
 * synchronous and returns 0 or a negative errno; a message for people goes
 * to err when one is given. Nothing is thread-safe: use a handle from one
 * thread. Events are delivered from spillway_dispatch(), which a program
 * calls from its own loop (spillway_fd() tells when there is something).
 *
 * The documents behind these structures are docs/api.md's; the JSON of each
 * event is passed too, for what the structures do not carry.
 */
#ifndef SPILLWAY_H
#define SPILLWAY_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPILLWAY_ABI 1

typedef struct spillway spillway;

enum spillway_mode {
	SPILLWAY_AUTO,       /* the daemon if one answers, else in this process */
	SPILLWAY_DAEMON,     /* the daemon only: -ENOENT if none runs */
	SPILLWAY_IN_PROCESS, /* in this process: -EBUSY if a daemon holds the state directory */
};

/*
 * config_file: NULL for the usual places (see spillway(1)). In this process,
 * open returns once spillway has looked at the cloud and knows the price.
 */
int spillway_open(
    spillway **, enum spillway_mode, const char *config_file, char *err, size_t errlen);
/*
 * In this process: delete the VMs it manages (as the daemon does at SIGTERM),
 * or leave them (keep) for the next start to adopt. With a daemon: nothing.
 */
void spillway_close(spillway *, bool keep);
bool spillway_in_process(const spillway *);

struct spillway_pressure {
	char level[16]; /* NORMAL, ELEVATED, HIGH, CRITICAL; "" when not known yet */
	double some_avg10, full_avg10, available_pct;
	long long mem_total_kb, mem_available_kb, swap_used_kb;
};
int spillway_pressure(spillway *, struct spillway_pressure *);

struct spillway_advice {
	bool create;
	double confidence;    /* 0 to 1 */
	char rule[16];        /* the rule that said no, or "" */
	char reason[768];     /* one line: what was seen and why yes or no */
	char components[256]; /* comma-separated */
};
/* What spillway would decide now, without acting on it. */
int spillway_should_create(spillway *, struct spillway_advice *);

struct spillway_kv {
	const char *key, *value;
};
/*
 * Create a VM for these components (NULL: spillway's choice) with a reason
 * and instance metadata; name gets its name. Returns once the request is
 * accepted (the VM then boots: SPILLWAY_EVENT_OFFLOAD says READY). -EAGAIN:
 * a rule refused (budget, max concurrent...; err says which and why);
 * -EINVAL: bad components or metadata.
 */
int spillway_create(spillway *, const char *components, const char *reason,
    const struct spillway_kv *metadata, size_t nmetadata, char name[64], char *err, size_t errlen);
/* Delete a VM; its final cost is recorded once it is gone. -ENOENT: no such VM running. */
int spillway_terminate(spillway *, const char *name, char *err, size_t errlen);

struct spillway_stats {
	long created, active, failed, terminated, preempted;
	double total_cost;  /* US$, every VM ever */
	double spent_today; /* US$; when the ledger cannot say, the whole budget: spend nothing */
	double budget_today;
};
int spillway_stats(spillway *, struct spillway_stats *);

struct spillway_vm {
	char name[64];
	char state[16];
	char zone[64];
	char ip[64];        /* "" until it has one */
	char endpoint[128]; /* http://IP:PORT of its backend, or "" */
	char components[256];
	long long uptime_s;
	double cost; /* so far, or final */
};
/*
 * The VMs (the active ones, or every one the ledger knows with all): fills
 * at most max and returns how many there are, or -errno.
 */
int spillway_vms(spillway *, bool all, struct spillway_vm *, size_t max);

/* A component's route (docs/offload.md): where its connections go now and its traffic. */
struct spillway_route {
	char component[64];
	char listen[64];
	char local[64]; /* "" when it has no local copy */
	char to[8];     /* where a new connection goes now: "vm", "local", "wait" or "none" */
	char vm[64];    /* to is "vm": which */
	char why[160];
	long open;                      /* connections open now */
	long long bytes_up, bytes_down; /* from the application, to it */
	long long last_use_ms;          /* Unix ms; 0: never */
};
/* The routes: fills at most max and returns how many there are, or -errno. */
int spillway_routes(spillway *, struct spillway_route *, size_t max);

enum spillway_event_type {
	SPILLWAY_EVENT_PRESSURE, /* the level changed: level */
	SPILLWAY_EVENT_DECISION, /* spillway decided (or refused): reason */
	SPILLWAY_EVENT_STATE,    /* a VM changed state: vm, from */
	SPILLWAY_EVENT_OFFLOAD,  /* a VM is READY: move its components there (vm->endpoint);
	                            reason: created, recovered or adopted */
	SPILLWAY_EVENT_RETURN,   /* a VM stopped being READY: its components are local again;
	                            reason: why (unhealthy: ..., idle: ..., preempted ...) */
	SPILLWAY_EVENT_NOTE,     /* something else: note says what kind ("local": a
	                            component's local copy started or stopped, and what that
	                            freed; "kept": a VM stays though asked to go), reason what */
};

struct spillway_event {
	enum spillway_event_type type;
	const char *time;             /* RFC 3339 */
	const char *reason;           /* may be "" */
	const char *level;            /* PRESSURE */
	const char *from;             /* STATE: the state before, or "" for a new VM */
	const struct spillway_vm *vm; /* STATE, OFFLOAD, RETURN; else NULL */
	const char *json;             /* the whole event, as the control API streams it */
	const char *note;             /* NOTE: its kind; else "" */
};

typedef void spillway_event_fn(const struct spillway_event *, void *arg);
/* One callback per handle (a second call replaces it; NULL stops events). */
int spillway_on_event(spillway *, spillway_event_fn *, void *arg);
/*
 * Do spillway's work and deliver events for up to timeout_ms (0: only what
 * is ready). -EPIPE when the daemon went away (open a new handle).
 */
int spillway_dispatch(spillway *, int timeout_ms);
/* Readable when spillway_dispatch has something to do; for poll() in the program's loop. */
int spillway_fd(const spillway *);

#ifdef __cplusplus
}
#endif

#endif
