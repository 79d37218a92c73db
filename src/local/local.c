/*
 * The components' local copies (local.h). Each copy is a small state
 * machine driven by what it runs (a systemctl, local_start, local_stop) and
 * one timer: health probes while it starts, the grace of a stop, and the
 * watch on a copy that is not our child (found from its pidfile after a
 * restart). A copy's commands in flight each have their place (its start,
 * its cgroup asked, its stop); the supervised local_start (copy.child) is
 * apart, since it may run for days.
 *
 * Ownership: the service owns its copies; a copy is freed with the service
 * (or a reload that forgets it) once its handles are closed. What a copy
 * runs is never killed by the service going: a local copy serves whether
 * spillway runs or not.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "local/internal.h"
#include "net/addr.h"
#include "pressure/procfs.h"
#include "util/compat.h"
#include "util/log.h"
#include "util/run.h"
#include "util/str.h"
#include "util/xmalloc.h"

static void probe_health(struct copy *);

static int64_t
clock_ms(const struct locals *l)
{
	return clock_now_ms(l->o.clock);
}

/* --- changes, said from the loop's top --- */

static void
on_notify(uv_timer_t *t)
{
	struct locals *l = t->data;

	for (struct copy *c = l->copies; c != NULL; c = c->next)
		if (c->pending) {
			c->pending = false;
			if (l->o.changed != NULL)
				l->o.changed(l->o.arg, &c->info);
		}
}

void copy_set_state(struct copy *c, enum local_state to, const char *fmt, ...) PRINTFLIKE(3, 4);

void
copy_set_state(struct copy *c, enum local_state to, const char *fmt, ...)
{
	struct locals *l = c->l;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->info.why, sizeof c->info.why, fmt, ap);
	va_end(ap);
	if (c->info.state != to)
		c->info.since_ms = clock_ms(l);
	c->info.state = to;
	c->info.on_its_own = false;
	c->info.measured = false;
	(to == LOCAL_FAILED ? log_warnx : log_info)(
	    "%s's local copy: %s: %s", c->info.component, local_state_name(to), c->info.why);
	c->pending = true;
	if (!l->freed)
		uv_timer_start(&l->notify, on_notify, 0, 0);
}

void
copy_set_cause(struct copy *c, const char *vm, const char *why)
{
	snprintf(c->vm, sizeof c->vm, "%s", vm != NULL ? vm : "");
	snprintf(c->reason, sizeof c->reason, "%s", why != NULL ? why : "");
}

const char *
copy_reason(const struct copy *c)
{
	return c->reason[0] != '\0' ? c->reason : "asked";
}

/* --- the pidfile of a local_start's copy --- */

static char *
pidfile(const struct copy *c)
{
	return xasprintf("%s/%s.pid", c->l->dir, c->info.component);
}

/* Where local_start's output goes, kept from one start to the next. */
static char *
logfile(const struct copy *c)
{
	return xasprintf("%s/%s.log", c->l->dir, c->info.component);
}

static void
pid_keep(struct copy *c)
{
	char *path = pidfile(c), text[64];
	struct proc_stat st;

	c->starttime = procfs_stat(c->l->o.procdir, c->pid, &st) == 0 ? st.starttime : 0;
	snprintf(text, sizeof text, "%d %llu\n", (int)c->pid, c->starttime);
	if (write_file_atomic(path, text, strlen(text), 0600) != 0)
		log_warnx("%s's local copy: cannot write %s: a daemon started after this one will "
		          "not find it",
		    c->info.component, path);
	free(path);
}

void
copy_pid_forget(struct copy *c)
{
	char *path = pidfile(c);

	unlink(path);
	free(path);
	c->pid = 0;
	c->starttime = 0;
}

/* The copy's session leader still runs (not a PID reused since). */
bool
copy_pid_alive(const struct copy *c)
{
	struct proc_stat st;

	return c->pid > 0 && procfs_stat(c->l->o.procdir, c->pid, &st) == 0 && st.state != 'Z' &&
	    (c->starttime == 0 || st.starttime == c->starttime);
}

/* A pidfile's "PID STARTTIME": 0, or -ENOENT when there is none that says so. */
static int
pidfile_read(const char *path, pid_t *pid, unsigned long long *start)
{
	char *text = NULL;
	long long n = 0;
	int error = -ENOENT;

	if (read_file(path, 256, &text, NULL) == 0 && sscanf(text, "%lld %llu", &n, start) == 2 &&
	    n > 1 && n < INT32_MAX) {
		*pid = (pid_t)n;
		error = 0;
	}
	free(text);
	return error;
}

/* A copy started by an earlier daemon, from its pidfile. */
static void
pid_load(struct copy *c)
{
	char *path = pidfile(c);

	if (pidfile_read(path, &c->pid, &c->starttime) == 0 && !copy_pid_alive(c))
		copy_pid_forget(c);
	free(path);
}

pid_t
local_copy_pid(const char *state_dir, const char *component)
{
	char *path = xasprintf("%s/local/%s.pid", state_dir, component);
	unsigned long long start;
	pid_t pid = 0;

	if (pidfile_read(path, &pid, &start) != 0)
		pid = 0;
	free(path);
	return pid;
}

/* --- commands --- */

static char **
command_env(const struct copy *c, const char *event)
{
	char **env = env_dup(environ);

	env_put(&env, "SPILLWAY_EVENT", event);
	env_put(&env, "SPILLWAY_COMPONENT", c->info.component);
	env_put(&env, "SPILLWAY_LOCAL", c->def->local);
	env_put(&env, "SPILLWAY_VM_NAME", c->vm);
	env_put(&env, "SPILLWAY_REASON", c->reason);
	return env;
}

static void
on_cmd_line(void *arg, const char *line, bool err)
{
	struct copy *c = arg;

	(void)err;
	log_info("%s's local copy: %s", c->info.component, line);
	snprintf(c->lastline, sizeof c->lastline, "%s", line);
}

/* What a command's end says, for people: "exited with status 1: Unit x not found". */
void
copy_ended_text(
    const struct copy *c, int status, int signal, bool timed_out, char *out, size_t size)
{
	if (timed_out)
		snprintf(out, size, "did not end in time: killed");
	else if (signal != 0)
		snprintf(out, size, "killed by signal %d", signal);
	else
		snprintf(out, size, "exited with status %d", status);
	if (c->lastline[0] != '\0')
		snprintf(out + strlen(out), size - strlen(out), ": %s", c->lastline);
}

/* A command line with the placeholders of a copy's commands: 0, or -EINVAL and *cause. */
static int
copy_argv(const struct copy *c, const char *event, const char *text, char ***argv, char **cause)
{
	const struct str_var vars[] = {{"{event}", event}, {"{component}", c->info.component},
	    {"{components}", c->info.component}, {"{local}", c->def->local}, {"{name}", c->vm},
	    {"{reason}", c->reason}};

	return str_command(text, vars, sizeof vars / sizeof vars[0], argv, cause);
}

int
copy_command(struct copy *c, struct run **slot, const char *event, const char *text,
    char *const *argv, int64_t timeout_ms, cmd_done_fn *done, char *why, size_t whylen)
{
	char **words = NULL, **env, *cause = NULL;
	int error;

	if (text != NULL && copy_argv(c, event, text, &words, &cause) != 0) {
		snprintf(why, whylen, "%s", cause);
		free(cause);
		return -EINVAL;
	}
	env = command_env(c, event);
	c->lastline[0] = '\0';
	{
		struct run_opts o = {.argv = text != NULL ? words : argv,
		    .env = env,
		    .timeout_ms = timeout_ms,
		    .out_fd = -1,
		    .line = on_cmd_line,
		    .done = done,
		    .arg = c};

		error = run_start(c->l->loop, &o, slot, &cause);
	}
	if (error != 0) {
		snprintf(why, whylen, "%s", cause);
		free(cause);
	}
	str_list_free(words);
	str_list_free(env);
	return error;
}

int
copy_systemctl(struct copy *c, struct run **slot, const char *const *words, cmd_done_fn *done,
    int64_t timeout_ms, char *why, size_t whylen)
{
	char *argv[12] = {"systemctl", "--user"};
	size_t n = 2;

	for (size_t i = 0; words[i] != NULL && n < 10; i++)
		argv[n++] = (char *)words[i];
	argv[n++] = c->def->local_unit;
	argv[n] = NULL;
	return copy_command(c, slot, words[0], NULL, argv, timeout_ms, done, why, whylen);
}

/* --- health --- */

static void
healthy(struct copy *c, const char *how)
{
	c->info.start_took_ms = c->began_ns > 0 ? (monotonic_ns() - c->began_ns) / NS_PER_MS : 0;
	uv_timer_stop(&c->timer);
	copy_set_state(c, LOCAL_RUNNING, "%s", how);
	copy_learn_cgroup(c);
}

/* A health answer: a starting copy serves once it is yes; an unknown one runs or not. */
static void
answered(struct copy *c, bool ok, const char *yes, const char *no)
{
	if (ok && c->info.state == LOCAL_STARTING)
		healthy(c, yes);
	else if (c->info.state == LOCAL_UNKNOWN)
		copy_set_state(c, ok ? LOCAL_RUNNING : LOCAL_STOPPED, "%s", ok ? yes : no);
}

static void
on_health(const struct http_response *r, void *arg)
{
	struct copy *c = arg;

	c->call = NULL;
	answered(c, r->status >= 200 && r->status <= 299, "its health answers",
	    "its health does not answer: it does not run");
}

static void
on_probe_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
on_probe_connect(uv_connect_t *req, int status)
{
	struct probe *p = req->data;
	struct copy *c = p->c;

	uv_close((uv_handle_t *)&p->tcp, on_probe_closed);
	if (c == NULL)
		return;
	c->probe = NULL;
	answered(c, status == 0, "it takes connections", "it takes no connection: it does not run");
}

/* One health question in flight at most: local_health's GET, or a connect to local. */
static void
probe_health(struct copy *c)
{
	struct sockaddr_storage ss;
	char why[128];

	if (c->call != NULL || c->probe != NULL)
		return;
	if (*c->def->local_health != '\0' && c->l->o.http != NULL) {
		struct http_request req = {.method = "GET",
		    .url = c->def->local_health,
		    .timeout_ms = PROBE_TIMEOUT,
		    .max_response = 65536};

		if (http_send(c->l->o.http, &req, on_health, c, &c->call) != 0)
			c->call = NULL;
		return;
	}
	if (addr_parse(c->def->local, &ss, why, sizeof why) != 0)
		return; /* checked when the configuration was read */
	c->probe = xcalloc(1, sizeof *c->probe);
	c->probe->c = c;
	c->probe->tcp.data = c->probe;
	c->probe->req.data = c->probe;
	uv_tcp_init(c->l->loop, &c->probe->tcp);
	if (uv_tcp_connect(
	        &c->probe->req, &c->probe->tcp, (struct sockaddr *)&ss, on_probe_connect) != 0) {
		uv_close((uv_handle_t *)&c->probe->tcp, on_probe_closed);
		c->probe = NULL;
	}
}

/* Health calls in flight are let go: their answers find nobody waiting. */
static void
probe_forget(struct copy *c)
{
	if (c->call != NULL)
		http_cancel(c->call);
	c->call = NULL;
	if (c->probe != NULL)
		c->probe->c = NULL;
	c->probe = NULL;
}

/* --- the timer, while it starts: its health asked, its deadline kept --- */

static void
on_timer(uv_timer_t *t)
{
	struct copy *c = t->data;
	int64_t now = monotonic_ns();

	if (c->info.state == LOCAL_STARTING) {
		if (now >= c->deadline_ns) {
			probe_forget(c);
			copy_set_state(c, LOCAL_FAILED,
			    "not healthy within local_start_timeout_s (%g s)%s%s",
			    c->def->local_start_timeout_s, c->lastline[0] ? "; it said: " : "",
			    c->lastline);
			copy_begin_stop(c, true);
			return;
		}
		probe_health(c);
		uv_timer_start(&c->timer, on_timer, PROBE_MS, 0);
	}
}

/* --- starting --- */

/* The last line the copy wrote to its log (what a copy that failed said last), or "". */
static void
log_tail(const struct copy *c, char *out, size_t size)
{
	char *path = logfile(c), tail[1024];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = 0;
	off_t end;

	out[0] = '\0';
	free(path);
	if (fd == -1)
		return;
	if ((end = lseek(fd, 0, SEEK_END)) > 0)
		n = pread(fd, tail, sizeof tail - 1,
		    end > (off_t)sizeof tail - 1 ? end - (off_t)sizeof tail + 1 : 0);
	close(fd);
	if (n <= 0)
		return;
	tail[n] = '\0';
	while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' '))
		tail[--n] = '\0';
	snprintf(out, size, "%.*s", (int)size - 1,
	    strrchr(tail, '\n') != NULL ? strrchr(tail, '\n') + 1 : tail);
	str_scrub_utf8(out);
}

/* A start begins now: its health is asked until local_start_timeout_s from now. */
static void
start_clock(struct copy *c)
{
	c->began_ns = monotonic_ns();
	c->deadline_ns = c->began_ns + (int64_t)(c->def->local_start_timeout_s * 1e9);
}

static void
on_child_done(void *arg, int status, int signal, bool timed_out)
{
	struct copy *c = arg;
	char how[sizeof c->l->dir + 352];

	(void)timed_out;
	c->child = NULL;
	copy_pid_forget(c);
	if (c->info.state == LOCAL_STOPPING || c->cleanup) {
		/* The end of the stop under way; after local_stop, its end goes on from there. */
		if (c->step == STEP_WAIT)
			copy_stop_processes(c);
		return;
	}
	if (status == 0 && signal == 0) {
		/* A launcher: the copy runs elsewhere, found by the component's match. */
		c->launched = true;
		return;
	}
	{
		char said[160];

		log_tail(c, said, sizeof said);
		snprintf(how, sizeof how, "local_start %s %d%s%s (its output: %s/%s.log)",
		    signal ? "was killed by signal" : "exited with status",
		    signal ? signal : status, said[0] ? ": " : "", said, c->l->dir,
		    c->info.component);
	}
	if (c->info.state == LOCAL_STARTING) {
		uv_timer_stop(&c->timer);
		probe_forget(c);
		c->step = STEP_NONE;
		copy_set_state(c, LOCAL_FAILED, "%s before it was healthy", how);
	} else if (c->info.state == LOCAL_RUNNING) {
		copy_set_state(c, LOCAL_STOPPED, "it ended by itself: %s", how);
		c->info.on_its_own = true;
	}
}

static void
on_unit_started(void *arg, int status, int signal, bool timed_out)
{
	struct copy *c = arg;
	char how[320];

	c->start = NULL;
	if (status == 0 && signal == 0)
		return; /* the probes say when it serves */
	if (c->info.state != LOCAL_STARTING)
		return;
	copy_ended_text(c, status, signal, timed_out, how, sizeof how);
	uv_timer_stop(&c->timer);
	probe_forget(c);
	copy_set_state(c, LOCAL_FAILED, "systemctl --user start %s %s", c->def->local_unit, how);
}

static int
open_log(struct copy *c)
{
	char *path = logfile(c);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	free(path);
	return fd;
}

static int
launch(struct copy *c, char *why, size_t whylen)
{
	char **argv = NULL, **env, *cause = NULL;
	int fd, error;

	if (copy_argv(c, "local-start", c->def->local_start, &argv, &cause) != 0) {
		snprintf(why, whylen, "local_start: %s", cause);
		free(cause);
		return -EINVAL;
	}
	if ((fd = open_log(c)) == -1) {
		snprintf(
		    why, whylen, "cannot open its log in %.200s: %s", c->l->dir, strerror(errno));
		str_list_free(argv);
		return -errno;
	}
	env = command_env(c, "local-start");
	{
		struct run_opts o = {.argv = argv,
		    .env = env,
		    .detached = true,
		    .out_fd = fd,
		    .done = on_child_done,
		    .arg = c};

		error = run_start(c->l->loop, &o, &c->child, &cause);
	}
	close(fd);
	if (error != 0) {
		snprintf(why, whylen, "local_start: %s", cause);
		free(cause);
	} else {
		c->launched = false;
		c->pid = run_pid(c->child);
		pid_keep(c);
	}
	str_list_free(argv);
	str_list_free(env);
	return error;
}

int
locals_start(struct locals *l, const char *component, const char *vm, const char *why)
{
	struct copy *c;
	char cause[300];
	int error;

	if ((c = copy_find(l, component)) == NULL)
		return -ENOENT;
	if (c->info.state == LOCAL_RUNNING || c->info.state == LOCAL_STARTING)
		return -EALREADY;
	if (c->step != STEP_NONE)
		return -EBUSY; /* a stop (or a start's cleanup) is under way */
	copy_set_cause(c, vm, why);
	start_clock(c);
	c->lastline[0] = '\0';
	c->info.pss_kb = c->info.avail_before_kb = c->info.avail_after_kb = -1;
	if (*c->def->local_unit != '\0') {
		error = copy_systemctl(c, &c->start, (const char *const[]){"start", NULL},
		    on_unit_started, (int64_t)(c->def->local_start_timeout_s * 1000), cause,
		    sizeof cause);
	} else if (c->pid > 0 && copy_pid_alive(c)) {
		error = 0; /* started by an earlier daemon, and not healthy yet: it still starts */
	} else {
		error = launch(c, cause, sizeof cause);
	}
	if (error != 0) {
		copy_set_state(c, LOCAL_FAILED, "%s", cause);
		return 0; /* said as a change, like a start that fails later */
	}
	copy_set_state(c, LOCAL_STARTING, "%s", copy_reason(c));
	probe_health(c);
	uv_timer_start(&c->timer, on_timer, PROBE_MS, 0);
	return 0;
}

/* --- the service --- */

static struct copy *
copy_new(struct locals *l, const struct component_def *def)
{
	struct copy *c = xcalloc(1, sizeof *c);

	c->l = l;
	c->def = def;
	snprintf(c->info.component, sizeof c->info.component, "%s", def->name);
	c->info.state = LOCAL_UNKNOWN;
	c->info.since_ms = clock_ms(l);
	c->info.pss_kb = c->info.avail_before_kb = c->info.avail_after_kb = -1;
	snprintf(c->info.why, sizeof c->info.why, "not asked yet");
	uv_timer_init(l->loop, &c->timer);
	c->timer.data = c;
	l->handles++;
	return c;
}

static void
on_copy_closed(uv_handle_t *h)
{
	struct copy *c = h->data;
	struct locals *l = c->l;

	free(c);
	if (--l->handles == 0 && l->freed)
		free(l);
}

/* What runs goes on running; nothing of it is heard any more. */
static void
copy_free(struct copy *c)
{
	probe_forget(c);
	run_forget(c->start);
	run_forget(c->show);
	run_forget(c->cmd);
	run_forget(c->child);
	c->start = c->show = c->cmd = c->child = NULL;
	uv_close((uv_handle_t *)&c->timer, on_copy_closed);
}

void
locals_set_config(struct locals *l, const struct config *cfg)
{
	struct copy *kept = NULL, **tail = &kept, *c, *next;

	l->cfg = cfg;
	for (size_t i = 0; i < cfg->ncomponents; i++) {
		const struct component_def *def = &cfg->components[i];
		struct copy **pp;

		if (!component_managed(def))
			continue;
		for (pp = &l->copies; *pp != NULL && strcmp((*pp)->info.component, def->name) != 0;
		     pp = &(*pp)->next)
			;
		if ((c = *pp) != NULL)
			*pp = c->next;
		else
			c = copy_new(l, def);
		c->def = def;
		c->next = NULL;
		*tail = c;
		tail = &c->next;
	}
	for (c = l->copies; c != NULL; c = next) {
		next = c->next;
		copy_free(c);
	}
	l->copies = kept;
}

int
locals_new(uv_loop_t *loop, const struct config *cfg, const struct locals_opts *o,
    struct locals **out, char **cause)
{
	struct locals *l = xcalloc(1, sizeof *l);

	l->loop = loop;
	l->o = *o;
	if (l->o.procdir == NULL)
		l->o.procdir = "/proc";
	snprintf(l->dir, sizeof l->dir, "%s/local", o->state_dir);
	if (make_dirs(l->dir, 0700) != 0) {
		*cause = xasprintf(
		    "cannot make %s, where the local copies' logs go: %s", l->dir, strerror(errno));
		free(l);
		return -errno;
	}
	uv_timer_init(loop, &l->notify);
	l->notify.data = l;
	l->handles = 1;
	locals_set_config(l, cfg);
	*out = l;
	return 0;
}

void
locals_probe(struct locals *l)
{
	for (struct copy *c = l->copies; c != NULL; c = c->next) {
		if (c->info.state != LOCAL_UNKNOWN)
			continue;
		if (*c->def->local_start != '\0')
			pid_load(c);
		if (c->pid > 0) {
			/* Started by an earlier daemon: it serves, or it still starts. */
			start_clock(c);
			copy_set_state(c, LOCAL_STARTING, "started by an earlier spillway (PID %d)",
			    (int)c->pid);
			uv_timer_start(&c->timer, on_timer, 0, 0);
			continue;
		}
		probe_health(c);
	}
}

struct copy *
copy_find(const struct locals *l, const char *component)
{
	for (struct copy *c = l->copies; c != NULL; c = c->next)
		if (strcmp(c->info.component, component) == 0)
			return c;
	return NULL;
}

const struct local_info *
locals_get(const struct locals *l, const char *component)
{
	const struct copy *c = copy_find(l, component);

	return c != NULL ? &c->info : NULL;
}

size_t
locals_list(const struct locals *l, const struct local_info **out, size_t max)
{
	size_t n = 0;

	for (const struct copy *c = l->copies; c != NULL; c = c->next)
		if (n < max)
			out[n++] = &c->info;
	return n;
}

static void
on_notify_closed(uv_handle_t *h)
{
	struct locals *l = h->data;

	if (--l->handles == 0)
		free(l);
}

void
locals_free(struct locals *l)
{
	struct copy *c, *next;

	if (l == NULL)
		return;
	l->freed = true;
	for (c = l->copies; c != NULL; c = next) {
		next = c->next;
		copy_free(c);
	}
	l->copies = NULL;
	uv_close((uv_handle_t *)&l->notify, on_notify_closed);
}
