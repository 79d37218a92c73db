/*
 * A copy's stop (internal.h): its processes found (the unit's cgroup, the
 * session of local_start's copy, or its match) and measured (their PSS,
 * MemAvailable before and after), then ended by systemctl stop, local_stop,
 * or SIGTERM to its session and SIGKILL after LOCAL_STOP_GRACE_MS.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "local/internal.h"
#include "pressure/procfs.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

/* --- stopping --- */

/* Its processes now: the unit's cgroup, the session of local_start's copy, or its match. */
static size_t
copy_pids(struct copy *c, int *pids, size_t max)
{
	const char *procdir = c->l->o.procdir;

	if (c->cgroup[0] != '\0') {
		static const char *const roots[] = {
		    "/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"};

		for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
			char *path = xasprintf("%s%s/cgroup.procs", roots[i], c->cgroup),
			     *text = NULL;
			size_t n = 0;

			if (read_file(path, 1 << 20, &text, NULL) == 0) {
				for (char *p = text; *p != '\0' && n < max;) {
					long pid = strtol(p, &p, 10);

					if (pid > 0)
						pids[n++] = (int)pid;
					while (*p == '\n' || *p == ' ')
						p++;
				}
			}
			free(text);
			free(path);
			if (n > 0)
				return n;
		}
		return 0;
	}
	if (c->pid > 0 && copy_pid_alive(c))
		return procfs_session(procdir, c->pid, pids, max);
	return procfs_matching(procdir, c->def->match, pids, max);
}

/* What its processes hold now, in kB (their PSS); -1 when none can be read. */
static int64_t
copy_pss_kb(struct copy *c)
{
	int *pids = xcalloc(MAX_PIDS, sizeof *pids);
	size_t n = copy_pids(c, pids, MAX_PIDS);
	int64_t kb = n > 0 ? procfs_pss_kb(c->l->o.procdir, pids, n) : -1;

	free(pids);
	return kb;
}

static void
measure_before(struct copy *c)
{
	c->info.pss_kb = copy_pss_kb(c);
	c->info.avail_before_kb = procfs_available_kb(c->l->o.procdir);
}

/* Its processes are gone (or were never there): the stop is done. */
static void
stopped(struct copy *c)
{
	char held[48] = "";

	uv_timer_stop(&c->timer);
	c->step = STEP_NONE;
	c->term_sent = c->kill_sent = false;
	if (c->cleanup) {
		c->cleanup = false;
		return; /* FAILED it stays, with its reason */
	}
	c->info.avail_after_kb = procfs_available_kb(c->l->o.procdir);
	if (c->info.pss_kb >= 0)
		snprintf(held, sizeof held, ": it held %" PRId64 " MB", c->info.pss_kb / 1024);
	copy_set_state(c, LOCAL_STOPPED, "stopped (%s)%s", copy_reason(c), held);
	c->info.measured = true;
}

/* The stop's grace and watch: the copy looked at again. */
static void
on_watch(uv_timer_t *t)
{
	copy_stop_processes(t->data);
}

/*
 * The copy's own processes after local_stop (or without one): SIGTERM to its
 * session, SIGKILL after the grace; done once its leader is gone.
 */
void
copy_stop_processes(struct copy *c)
{
	bool ours = c->child != NULL;

	if (c->launched || c->pid <= 0 || (!ours && !copy_pid_alive(c))) {
		if (!ours) {
			if (c->pid > 0)
				copy_pid_forget(c);
			stopped(c);
		}
		return; /* our child: its end (on_child_done) comes back here */
	}
	c->step = STEP_WAIT;
	if (!c->term_sent) {
		c->term_sent = true;
		c->deadline_ns = monotonic_ns() + (int64_t)LOCAL_STOP_GRACE_MS * NS_PER_MS;
		kill(-c->pid, SIGTERM);
	} else if (!c->kill_sent && monotonic_ns() >= c->deadline_ns) {
		c->kill_sent = true;
		log_warnx("%s's local copy: still running %d s after SIGTERM: SIGKILL",
		    c->info.component, LOCAL_STOP_GRACE_MS / 1000);
		kill(-c->pid, SIGKILL);
	}
	uv_timer_start(&c->timer, on_watch, WATCH_MS, 0);
}

static void
on_stop_done(void *arg, int status, int signal, bool timed_out)
{
	struct copy *c = arg;
	char how[320];

	c->cmd = NULL;
	if (status != 0 || signal != 0 || timed_out) {
		copy_ended_text(c, status, signal, timed_out, how, sizeof how);
		log_warnx("%s's local copy: %s %s", c->info.component,
		    *c->def->local_unit != '\0' ? "systemctl --user stop" : "local_stop", how);
	}
	if (*c->def->local_unit != '\0')
		stopped(c); /* systemctl stop returns once the unit is down */
	else
		copy_stop_processes(c);
}

static void
send_stop(struct copy *c)
{
	char why[300];
	int error = 0;

	c->step = STEP_STOP;
	if (*c->def->local_unit != '\0')
		error = copy_systemctl(c, &c->cmd, (const char *const[]){"stop", NULL},
		    on_stop_done, COMMAND_TIMEOUT, why, sizeof why);
	else if (*c->def->local_stop != '\0')
		error = copy_command(c, &c->cmd, "local-stop", c->def->local_stop, NULL,
		    COMMAND_TIMEOUT, on_stop_done, why, sizeof why);
	else
		copy_stop_processes(c);
	if (error != 0) {
		log_warnx("%s's local copy: cannot stop it: %s", c->info.component, why);
		copy_stop_processes(c);
	}
}

/*
 * systemctl show's answer: the unit's cgroup (its one line,
 * "/app.slice/x.service"). A stop that waited for it goes on.
 */
static void
on_cgroup(void *arg, int status, int signal, bool timed_out)
{
	struct copy *c = arg;

	(void)timed_out;
	c->show = NULL;
	if (status == 0 && signal == 0 && c->lastline[0] == '/')
		snprintf(c->cgroup, sizeof c->cgroup, "%s", c->lastline);
	if (c->step == STEP_SHOW) {
		measure_before(c);
		send_stop(c);
	}
}

/* Asks systemd for the unit's cgroup, unless it is asked already: 0, or -errno. */
static int
ask_cgroup(struct copy *c)
{
	static const char *const words[] = {"show", "--value", "-p", "ControlGroup", NULL};
	char why[300];
	int error;

	if (c->show != NULL)
		return 0;
	if ((error = copy_systemctl(
	         c, &c->show, words, on_cgroup, COMMAND_TIMEOUT, why, sizeof why)) != 0)
		log_debug("%s's local copy: %s", c->info.component, why);
	return error;
}

void
copy_learn_cgroup(struct copy *c)
{
	if (*c->def->local_unit != '\0' && c->cgroup[0] == '\0')
		ask_cgroup(c);
}

void
copy_begin_stop(struct copy *c, bool cleanup)
{
	c->cleanup = cleanup;
	c->term_sent = c->kill_sent = false;
	/* A start given up is not measured; a unit is, once its cgroup is known. */
	if (!cleanup && *c->def->local_unit != '\0' && c->cgroup[0] == '\0') {
		c->step = STEP_SHOW;
		if (ask_cgroup(c) == 0)
			return; /* on_cgroup goes on */
	}
	if (!cleanup)
		measure_before(c);
	send_stop(c);
}

int
locals_stop(struct locals *l, const char *component, const char *vm, const char *why)
{
	struct copy *c = copy_find(l, component);

	if (c == NULL)
		return -ENOENT;
	if (c->info.state != LOCAL_RUNNING)
		return -EALREADY;
	/* local_start ended and left it running elsewhere: only local_stop could stop it. */
	if (c->launched && *c->def->local_stop == '\0')
		return -ENOTSUP;
	copy_set_cause(c, vm, why);
	copy_set_state(c, LOCAL_STOPPING, "%s", copy_reason(c));
	copy_begin_stop(c, false);
	return 0;
}

int64_t
locals_pss_kb(const struct locals *l, const char *component)
{
	struct copy *c = copy_find(l, component);

	if (c == NULL || c->info.state != LOCAL_RUNNING ||
	    (*c->def->local_unit != '\0' && c->cgroup[0] == '\0'))
		return -1; /* a unit's processes are known once systemd said its cgroup */
	return copy_pss_kb(c);
}
