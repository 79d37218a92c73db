/*
 * spillway demo --live: the offload's whole loop on this machine, in real
 * time, with real memory pressure (docs/offload.md). A memory cgroup limited
 * to 200 MiB holds a component's local copy (examples/offload/heavy.py,
 * embedded: it holds 150 MiB and reads 256 MiB of a 384 MiB weights file for
 * each request), which the daemon runs; an application
 * (examples/offload/app.py, embedded) uses it through its route without a
 * pause. The cgroup stalls; the daemon, watching that cgroup's PSI, creates a
 * VM on the emulator in this process (whose guest runs the real agent and
 * the same component), the route moves, the copy stops, and the cgroup's
 * memory and stall fall. The application pauses; the VM, unused for a
 * minute, goes, once the copy serves again. The application again: served
 * locally. What it freed, the stall before and after, the times and the
 * failed requests (none) are said at the end.
 *
 * It needs what a memory cgroup needs (root, or a delegated hierarchy) and
 * PSI; where the machine cannot, it says so and `spillway demo` remains.
 * Everything it makes (the cgroup, the weights file, the copy, its
 * directory) goes when it ends, by Ctrl-C too.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "cli/demo.h"
#include "cli/local-emulator.h"
#include "emulator/emulator.h"
#include "local/local.h"
#include "pressure/memcg.h"
#include "util/log.h"
#include "util/run.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/daemon.h"
#include "vm/offload.h"

#define LIMIT       "200M"
#define WEIGHTS_MB  384
#define HOLD_MB     150
#define READ_MB     256
#define TICK_MS     250    /* phases are noticed this quickly */
#define SAY_EVERY   8      /* ticks: the figures every 2 s */
#define ON_VM_MS    15000  /* the application on the VM this long, then it pauses */
#define AGAIN_MS    5000   /* and locally again this long at the end */
#define DEADLINE_MS 420000 /* the story takes about two minutes */

extern char **environ;
extern const char heavy_py[], app_py[], spillway_agent_py[];
extern const size_t heavy_py_len, app_py_len, spillway_agent_py_len;

enum phase { P_START, P_LOCAL, P_VM, P_PAUSED, P_BACK, P_AGAIN };

struct live {
	uv_loop_t loop;
	struct clock clock;
	struct config cfg;
	struct daemon *d;
	struct local_emulator emu;
	struct memcg cg;
	char *dir, *weights, *app_path, *stop_file;
	struct run *app;
	long local, vm, failed; /* the application's answers, by who served them, and failures */
	enum phase phase;
	uv_timer_t tick;
	long ticks;
	uv_signal_t sigint, sigterm;
	int64_t t0, t_phase, t_ready, t_stopped, t_back, t_gone;
	long long stall_prev; /* the cgroup's stall (µs) at stall_at */
	int64_t stall_at;
	double share;         /* the stall's share of the last tick, in % */
	long long mem_before; /* the cgroup's memory as the VM turned READY */
	double stall_before;  /* and its stall then */
	long long mem_after;  /* once the copy stopped */
	double stall_after;
	int status;
	bool stopping;
};

static int64_t
now_ms(void)
{
	return monotonic_ns() / NS_PER_MS;
}

static void say(struct live *, const char *, ...) PRINTFLIKE(2, 3);

static void
say(struct live *l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	demo_vsay((now_ms() - l->t0) / 1000, fmt, ap);
	va_end(ap);
}

/* --- the application --- */

static void
on_app_line(void *arg, const char *line, bool err)
{
	struct live *l = arg;

	if (err)
		return;
	if (strcmp(line, "local") == 0)
		l->local++;
	else if (strcmp(line, "vm") == 0)
		l->vm++;
	else if (str_prefix(line, "failed")) {
		l->failed++;
		say(l, "the application: %s", line);
	}
}

static void
on_app_done(void *arg, int status, int signal, bool timed_out)
{
	struct live *l = arg;

	(void)status;
	(void)signal;
	(void)timed_out;
	l->app = NULL;
}

static void
app_start(struct live *l)
{
	char port[16], *cause = NULL;
	char *argv[] = {"python3", l->app_path, port, NULL};
	char **env = env_dup(environ);
	const struct component_def *c = config_component(&l->cfg, "vision");
	struct run_opts o = {
	    .argv = argv, .out_fd = -1, .line = on_app_line, .done = on_app_done, .arg = l};

	snprintf(port, sizeof port, "%s", strrchr(c->listen, ':') + 1);
	unlink(l->stop_file);
	env_put(&env, "APP_STOP", l->stop_file);
	o.env = env;
	if (run_start(&l->loop, &o, &l->app, &cause) != 0) {
		say(l, "the application cannot start: %s", cause);
		free(cause);
	}
	str_list_free(env);
}

/* It stops after its request in flight (as a person would close it). */
static void
app_pause(struct live *l)
{
	if (write_file_atomic(l->stop_file, "", 0, 0600) != 0)
		run_kill(l->app, SIGTERM);
}

/* --- what the daemon hears --- */

static void finish(struct live *, int status);

static enum local_state
copy_state(struct live *l)
{
	const struct local_info *copies[4];
	struct offload *o = l->d != NULL ? daemon_offload(l->d) : NULL;

	if (o == NULL || offload_copies(o, copies, 4) == 0)
		return LOCAL_UNKNOWN;
	return copies[0]->state;
}

static void
on_event(const struct manager_event *e, void *arg)
{
	struct live *l = arg;
	const struct vm_record *v = e->vm;

	switch (e->kind) {
	case MEV_PRESSURE:
		say(l, "pressure %s: the cgroup's tasks stall on memory %.1f%% of the time",
		    pressure_level_name(e->snap->level), e->snap->some_pct);
		break;
	case MEV_DECISION:
		if (e->decision->create)
			say(l, "decision: create a VM: %s", e->decision->reason);
		break;
	case MEV_STATE:
		if (e->from < 0)
			say(l, "%s: %s", v->name, vm_state_name(v->state));
		else
			say(l, "%s: %s -> %s", v->name, vm_state_name((enum vm_state)e->from),
			    vm_state_name(v->state));
		if (v->state == VM_READY && l->phase == P_LOCAL) {
			l->phase = P_VM;
			l->t_ready = now_ms();
			l->mem_before = memcg_bytes(&l->cg);
			l->stall_before = l->share;
			say(l,
			    "the route sends new connections to %s; the local copy's connections "
			    "drain, then it stops",
			    v->name);
		}
		if (v->state == VM_TERMINATED && l->phase == P_BACK) {
			l->t_gone = now_ms();
			l->phase = P_AGAIN;
			l->t_phase = now_ms();
			say(l, "%s is gone: it cost $%.4f; the application again, served locally",
			    v->name, v->cost);
			app_start(l);
		}
		break;
	case MEV_NOTE:
		say(l, "%s", e->reason);
		/* The copy's stop is said as it happens: what it freed, with the VM. */
		if (l->phase == P_VM && l->t_stopped == 0 && copy_state(l) == LOCAL_STOPPED)
			l->t_stopped = now_ms();
		break;
	default:
		break;
	}
}

static void
on_tick(uv_timer_t *t)
{
	struct live *l = t->data;
	long long us = memcg_stall_us(&l->cg);
	int64_t ms = now_ms();
	enum local_state copy = copy_state(l);

	/* The stall's share over the last 2 s, said with the figures. */
	if (l->ticks++ % SAY_EVERY == 0) {
		if (l->stall_at > 0 && ms > l->stall_at)
			l->share = (double)(us - l->stall_prev) / 10.0 / (double)(ms - l->stall_at);
		l->stall_prev = us;
		l->stall_at = ms;
		say(l,
		    "  cgroup %lld MiB, stalled %.0f%% | local copy %s | answers: %ld local, %ld vm, "
		    "%ld failed",
		    memcg_bytes(&l->cg) >> 20, l->share, local_state_name(copy), l->local, l->vm,
		    l->failed);
	}
	switch (l->phase) {
	case P_START:
		if (copy == LOCAL_RUNNING) {
			l->phase = P_LOCAL;
			say(l,
			    "the local copy serves (in the cgroup); the application starts using it");
			app_start(l);
		}
		break;
	case P_VM:
		if (l->t_stopped > 0 && ms - l->t_stopped > ON_VM_MS) {
			l->mem_after = memcg_bytes(&l->cg);
			l->stall_after = l->share;
			l->phase = P_PAUSED;
			say(l,
			    "the application pauses: the VM is idle once unused for a minute "
			    "(gcp.idle_timeout_minutes, 1 here)");
			app_pause(l);
		}
		break;
	case P_PAUSED:
		if (copy == LOCAL_STARTING || copy == LOCAL_RUNNING) {
			l->phase = P_BACK;
			l->t_back = ms;
			say(l,
			    "idle: before the VM goes, its component's local copy starts and must "
			    "serve");
		}
		break;
	case P_AGAIN:
		if (ms - l->t_phase > AGAIN_MS) {
			app_pause(l);
			finish(l, l->failed == 0 ? EXIT_OK : EXIT_FAIL);
		}
		break;
	default:
		break;
	}
	if (ms - l->t0 > DEADLINE_MS) {
		say(l, "demo failed: the story did not end within %d s", DEADLINE_MS / 1000);
		finish(l, EXIT_FAIL);
	}
}

/* --- the end --- */

static void
summary(struct live *l)
{
	printf("\nWhat happened, by the kernel's own figures:\n");
	printf("  the cgroup's memory: %lld MiB with the local copy, %lld MiB without it\n",
	    l->mem_before >> 20, l->mem_after >> 20);
	printf("  its stall: %.0f%% of the time with it, %.0f%% without\n", l->stall_before,
	    l->stall_after);
	printf("  local -> VM: READY to the copy stopped %.1f s; VM -> local: the copy started to "
	       "the VM gone %.1f s\n",
	    (double)(l->t_stopped - l->t_ready) / 1000, (double)(l->t_gone - l->t_back) / 1000);
	printf("  the application's requests: %ld served locally, %ld on the VM, %ld failed\n",
	    l->local, l->vm, l->failed);
}

/* The copy goes with the demo: it is the demo's, not the user's. */
static void
kill_copy(struct live *l)
{
	pid_t pid = local_copy_pid(l->cfg.state_dir, "vision");

	if (pid > 1)
		kill(-pid, SIGKILL);
}

static void
on_stopped(void *arg)
{
	struct live *l = arg;

	kill_copy(l);
	daemon_free(l->d);
	l->d = NULL;
	local_emulator_stop(&l->emu);
	uv_close((uv_handle_t *)&l->tick, NULL);
	uv_close((uv_handle_t *)&l->sigint, NULL);
	uv_close((uv_handle_t *)&l->sigterm, NULL);
	if (l->app != NULL) {
		run_kill(l->app, SIGKILL);
		run_forget(l->app);
		l->app = NULL;
	}
}

static void
finish(struct live *l, int status)
{
	if (l->stopping)
		return;
	l->stopping = true;
	l->status = status;
	uv_timer_stop(&l->tick);
	if (status == EXIT_OK)
		summary(l);
	daemon_stop(l->d, on_stopped, l);
}

static void
on_signal(uv_signal_t *s, int sig)
{
	struct live *l = s->data;

	say(l, "interrupted: cleaning up");
	finish(l, 128 + sig);
}

static void
on_started(void *arg, int error, const char *cause)
{
	struct live *l = arg;

	if (error != 0) {
		say(l, "demo failed: %s", cause);
		finish(l, EXIT_FAIL);
		return;
	}
	say(l, "the daemon watches %s/memory.pressure; it starts the component's local copy",
	    l->cg.v2);
}

/* --- set-up --- */

static int
write_program(struct live *l, const char *name, const char *text, size_t len, char **path)
{
	*path = xasprintf("%s/%s", l->dir, name);
	return write_file_atomic(*path, text, len, 0700);
}

/* The demo's own configuration file: its component, its cgroup, its short times. */
static int
load_config(struct live *l, const struct config_args *user, char **cause)
{
	char *heavy = NULL, *conf = NULL, *text = NULL, *state;
	const char *own[] = {"gcp.idle_timeout_minutes=1", "gcp.health_check_interval=2",
	    "route.drain_s=5", "route.wait_s=60"};
	int error;

	if (write_program(l, "heavy.py", heavy_py, heavy_py_len, &heavy) != 0) {
		*cause = xasprintf("cannot write %s/heavy.py", l->dir);
		free(heavy);
		return -EIO;
	}
	{
		int local = demo_free_port(), listen = demo_free_port();

		text = xasprintf(
		    "[component \"vision\"]\nlisten = 127.0.0.1:%d\nlocal = 127.0.0.1:%d\n"
		    "match = heavy.py\n"
		    "local_start = /usr/bin/python3 %s %d local --hold-mb %d --weights %s "
		    "--read-mb %d --cgroup %s%s%s\n"
		    "local_start_timeout_s = 60\n[pressure]\ncgroup = %s\n",
		    listen, local, heavy, local, HOLD_MB, l->weights, READ_MB, l->cg.v2,
		    l->cg.v1[0] != '\0' ? " --cgroup " : "", l->cg.v1, l->cg.v2);
	}
	conf = xasprintf("%s/spillway.conf", l->dir);
	error = write_file_atomic(conf, text, strlen(text), 0600);
	free(text);
	free(heavy);
	if (error != 0) {
		*cause = xasprintf("cannot write %s: %s", conf, strerror(-error));
		free(conf);
		return error;
	}
	state = xasprintf("%s/state", l->dir);
	error = demo_config(&l->cfg, user, conf, own, sizeof own / sizeof own[0], state, cause);
	free(state);
	free(conf);
	return error;
}

static void
cleanup(struct live *l)
{
	/* The copy was killed; the cgroup can be removed once the kernel has let it go. */
	for (int i = 0; i < 200 && !memcg_remove(&l->cg); i++)
		usleep(10000);
	if (l->cg.v1[0] != '\0' || l->cg.v2[0] != '\0')
		fprintf(stderr,
		    "spillway demo: cannot remove the cgroup %s%s%s: remove it by hand\n", l->cg.v1,
		    l->cg.v1[0] ? " and " : "", l->cg.v2);
	if (l->weights != NULL)
		unlink(l->weights);
	if (l->dir != NULL && remove_tree(l->dir) != 0)
		fprintf(stderr, "spillway demo: cannot remove %s\n", l->dir);
	config_free(&l->cfg);
	free(l->weights);
	free(l->app_path);
	free(l->stop_file);
	free(l->dir);
}

int
demo_live(struct cmd_ctx *ctx)
{
	struct live l = {.status = EXIT_FAIL};
	struct daemon_opts o = {0};
	struct emulator_opts eo;
	char name[64], *agent = NULL, *backend = NULL, *cause = NULL;
	const char *why = NULL;

	l.t0 = now_ms();
	snprintf(name, sizeof name, "spillway-demo-%d", (int)getpid());
	if (memcg_make(&l.cg, name, LIMIT, &why) != 0) {
		fprintf(stderr,
		    "spillway demo --live: cannot make real memory pressure here: %s; `spillway "
		    "demo` tells the same story on a recorded trace\n",
		    why);
		return EXIT_FAIL;
	}
	l.weights = xasprintf("/var/tmp/spillway-demo-%d.weights", (int)getpid());
	printf("spillway demo --live: real memory pressure on this machine, in real time.\n"
	       "A memory cgroup limited to %s holds a component's local copy (it holds %d MiB and\n"
	       "reads %d MiB of a %d MiB weights file for each request); an application uses it\n"
	       "through its route. Writing the weights to %s...\n\n",
	    LIMIT, HOLD_MB, READ_MB, WEIGHTS_MB, l.weights);
	if (memcg_file(l.weights, WEIGHTS_MB, &why) != 0) {
		fprintf(stderr, "spillway demo --live: %s\n", why);
		free(l.weights);
		l.weights = NULL;
		goto out;
	}
	if (make_temp_dir("spillway-demo", &l.dir, &cause) != 0) {
		fprintf(stderr, "spillway demo --live: %s\n", cause);
		goto out;
	}
	l.stop_file = xasprintf("%s/app.stop", l.dir);
	if (load_config(&l, ctx->config_args, &cause) != 0 ||
	    write_program(&l, "app.py", app_py, app_py_len, &l.app_path) != 0 ||
	    write_program(
	        &l, "spillway-agent.py", spillway_agent_py, spillway_agent_py_len, &agent) != 0) {
		fprintf(
		    stderr, "spillway demo --live: %s\n", cause != NULL ? cause : "cannot write");
		goto out;
	}
	backend = xasprintf("/usr/bin/python3 %s/heavy.py", l.dir);
	emulator_opts_default(&eo);
	eo.project = "spillway-demo";
	eo.boot_ms = 3000;
	eo.guest_boot_ms = 2000;
	eo.guest_agent = agent;
	eo.guest_backend = backend;
	clock_real(&l.clock);
	uv_loop_init(&l.loop);
	o.on_event = on_event;
	o.on_started = on_started;
	o.event_arg = &l;
	log_set_level(LOG_LEVEL_WARN);
	if (demo_start(&l.loop, &l.clock, &l.cfg, &eo, &o, &l.emu, &l.d, "spillway demo --live") !=
	    0)
		goto loop;
	uv_timer_init(&l.loop, &l.tick);
	l.tick.data = &l;
	uv_timer_start(&l.tick, on_tick, TICK_MS, TICK_MS);
	uv_signal_init(&l.loop, &l.sigint);
	uv_signal_init(&l.loop, &l.sigterm);
	l.sigint.data = l.sigterm.data = &l;
	uv_signal_start(&l.sigint, on_signal, SIGINT);
	uv_signal_start(&l.sigterm, on_signal, SIGTERM);
loop:
	uv_run(&l.loop, UV_RUN_DEFAULT);
	uv_loop_close(&l.loop);
out:
	cleanup(&l);
	free(agent);
	free(backend);
	free(cause);
	return l.status;
}
