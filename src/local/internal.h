/*
 * What the local copies' files share, and nobody else sees (local.h):
 *
 *	local.c  the service, a copy's states and what it says of them, its
 *	         pidfile, its commands, its health, and its start
 *	stop.c   a copy's stop: its processes found, measured, ended
 *
 * Ownership: the service owns its copies (struct copy, a list in the
 * configuration's order); a copy owns its command in flight (cmd), its
 * supervised local_start (child), its health call or connect, and its timer.
 */
#ifndef SPILLWAY_LOCAL_INTERNAL_H
#define SPILLWAY_LOCAL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "local/local.h"
#include "util/compat.h"
#include "util/run.h"

#define PROBE_MS        250   /* a starting copy's health, asked this often */
#define PROBE_TIMEOUT   2000  /* one health call, at most */
#define WATCH_MS        100   /* a stopping copy that is not our child, looked at this often */
#define COMMAND_TIMEOUT 90000 /* systemctl stop, local_stop: at most (systemd's own default) */
#define MAX_PIDS        4096

extern char **environ;

struct copy;

/* A TCP connect to the copy's address: its health when it has no local_health. */
struct probe {
	uv_tcp_t tcp;
	uv_connect_t req;
	struct copy *c; /* NULL once the copy no longer waits for it */
};

/* Where a stop is. */
enum step {
	STEP_NONE,
	STEP_SHOW, /* systemctl show: the unit's cgroup, before its stop */
	STEP_STOP, /* systemctl stop, or local_stop */
	STEP_WAIT, /* the copy's processes to end (SIGTERM sent, or local_stop done) */
};

struct copy {
	struct locals *l;
	const struct component_def *def;
	struct local_info info;
	struct copy *next;
	enum step step;
	bool cleanup;                 /* the stop under way ends in FAILED, not STOPPED */
	/* Its commands in flight, each in its own place: none is lost for another. */
	struct run *start;            /* systemctl start */
	struct run *show;             /* systemctl show: the unit's cgroup */
	struct run *cmd;              /* the stop's: systemctl stop, local_stop */
	char lastline[256];           /* what it said last, for the reason of a failure */
	struct run *child;            /* local_start, while it runs: the copy itself */
	pid_t pid;                    /* the copy's session: the child's, or a pidfile's */
	unsigned long long starttime; /* of pid: a PID reused is not the copy */
	bool launched;                /* local_start ended with 0: the copy runs elsewhere */
	char cgroup[512];             /* a unit's, from systemctl show */
	uv_timer_t timer;
	int64_t deadline_ns; /* real time: the start's deadline, or the stop's grace */
	int64_t began_ns;    /* real time: the start began */
	bool term_sent, kill_sent;
	struct http_call *call;   /* a health call in flight */
	struct probe *probe;      /* a connect in flight */
	bool pending;             /* a change to say */
	char vm[64], reason[160]; /* the start's or stop's, for placeholders */
};

struct locals {
	uv_loop_t *loop;
	struct locals_opts o;
	const struct config *cfg;
	struct copy *copies;
	uv_timer_t notify; /* says changes from the loop's top */
	char dir[512];     /* STATE_DIR/local */
	bool freed;
	int handles;
};

/* local.c */
/* The copy of this component; NULL when spillway does not run it. */
struct copy *copy_find(const struct locals *, const char *component);
/* The copy's new state and why; the offload hears it from the loop's top. */
void copy_set_state(struct copy *, enum local_state to, const char *fmt, ...) PRINTFLIKE(3, 4);
/* What a start or stop is for: the VM it concerns ("" none) and why (placeholders, log). */
void copy_set_cause(struct copy *, const char *vm, const char *why);
/* Its why, or "asked". */
const char *copy_reason(const struct copy *);
/* Its session leader still runs (not a PID reused since, not a zombie). */
bool copy_pid_alive(const struct copy *);
/* It ended: no pidfile, no PID. */
void copy_pid_forget(struct copy *);
typedef void cmd_done_fn(void *, int, int, bool);
/*
 * A command of the copy's (systemctl, local_stop) into *slot: its argv from
 * text with the placeholders, or argv as given. 0, or -errno and why.
 */
int copy_command(struct copy *, struct run **slot, const char *event, const char *text,
    char *const *argv, int64_t timeout_ms, cmd_done_fn *done, char *why, size_t whylen);
/* `systemctl --user VERB UNIT` (and more words: NULL-ended) into *slot. */
int copy_systemctl(struct copy *, struct run **slot, const char *const *words, cmd_done_fn *done,
    int64_t timeout_ms, char *why, size_t whylen);
/* A command's end for people: "exited with status 1: Unit x not found". */
void copy_ended_text(
    const struct copy *, int status, int signal, bool timed_out, char *out, size_t size);

/* stop.c */
/* A unit's cgroup, where its processes are: asked of systemd once it serves. */
void copy_learn_cgroup(struct copy *);
/* The stop: measured first (not a cleanup's), then its command or signals. */
void copy_begin_stop(struct copy *, bool cleanup);
/* SIGTERM to its session, SIGKILL after the grace; the stop is done once it is gone. */
void copy_stop_processes(struct copy *);

#endif
