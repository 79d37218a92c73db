/*
 * The components' local copies, for those whose copy spillway runs
 * (local_unit or local_start, docs/offload.md): each started and stopped on
 * the loop, its health asked (local_health's URL answering 2xx, else its
 * route's local address taking a connection), and the memory its processes
 * hold measured. The service knows the components' settings and nothing of
 * VMs or routes: the offload (vm/offload.h) says when a copy starts or stops,
 * and hears every change of state through one callback.
 *
 * How a copy is run:
 *	local_unit   `systemctl --user start|stop UNIT`; its processes are the
 *	             unit's cgroup
 *	local_start  a command (no shell, the hooks' placeholders) run in a
 *	             session of its own, so that it outlives a daemon that dies;
 *	             while it runs it is the copy (its session's processes), and
 *	             its PID is kept in STATE_DIR/local/NAME.pid for the next
 *	             daemon. One that ends with status 0 started the copy
 *	             elsewhere (its processes: the component's match). Stopped
 *	             by local_stop, or else SIGTERM to its session and SIGKILL
 *	             after LOCAL_STOP_GRACE_MS. Its output goes to
 *	             STATE_DIR/local/NAME.log.
 *
 * A copy's timers run on real time whatever the daemon's clock: they time a
 * real program's start and stop.
 */
#ifndef SPILLWAY_LOCAL_H
#define SPILLWAY_LOCAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "config/config.h"
#include "local/plan.h"
#include "net/http.h"
#include "util/clock.h"

#define LOCAL_STOP_GRACE_MS 10000 /* SIGTERM to SIGKILL, as docker stop */

/* A copy as it stands. */
struct local_info {
	char component[64];
	enum local_state state;
	int64_t since_ms; /* in this state since (the daemon's clock) */
	char why[256];   /* what brought it here: "its health answers", "exited with status 1"... */
	bool on_its_own; /* the copy did it (it ended), nobody asked */
	bool measured;   /* STOPPED by a stop: the figures below are that stop's */
	int64_t start_took_ms; /* RUNNING after a start: how long the start took (real time) */
	/* STOPPED by a stop: what it held and gave back (-1: not measured). */
	int64_t pss_kb;
	int64_t avail_before_kb, avail_after_kb;
};

struct locals_opts {
	const struct clock *clock;
	const char *state_dir;    /* STATE_DIR/local holds pidfiles and logs */
	const char *procdir;      /* "/proc" but in tests */
	struct http_client *http; /* local_health's calls */
	/* A copy changed state (said from the loop, never from inside a call of ours). */
	void (*changed)(void *arg, const struct local_info *);
	void *arg;
};

struct locals;

int locals_new(
    uv_loop_t *, const struct config *, const struct locals_opts *, struct locals **, char **cause);
/* A reload: copies of components no longer run by spillway are forgotten (left as they are). */
void locals_set_config(struct locals *, const struct config *);
/* Whether each copy runs now (asked once, at start): UNKNOWN becomes RUNNING or STOPPED. */
void locals_probe(struct locals *);
/*
 * Start a STOPPED or FAILED copy (why: for the log and its placeholders; vm:
 * the VM it comes back from, "" none): STARTING, then RUNNING once healthy,
 * or FAILED past its local_start_timeout_s. -EALREADY when it runs or starts.
 */
int locals_start(struct locals *, const char *component, const char *vm, const char *why);
/*
 * Stop a RUNNING copy: its processes' PSS and MemAvailable are read before,
 * MemAvailable again after; STOPPING, then STOPPED with them.
 */
int locals_stop(struct locals *, const char *component, const char *vm, const char *why);
/* The copy of a component spillway runs; NULL for another. */
const struct local_info *locals_get(const struct locals *, const char *component);
/* The PSS of its processes now, in kB; -1 when it does not run or cannot be read. */
int64_t locals_pss_kb(const struct locals *, const char *component);
/* Every copy, in the configuration's order. */
size_t locals_list(const struct locals *, const struct local_info **out, size_t max);
/* What runs is left running (a copy serves whether spillway runs or not). */
void locals_free(struct locals *);
/*
 * The session of the copy local_start started, as its pidfile in state_dir
 * says; 0 when none. For those who end a copy spillway left running: the
 * live demo, whose copy it is, and the tests.
 */
pid_t local_copy_pid(const char *state_dir, const char *component);

#endif
