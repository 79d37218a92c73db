/*
 * The local copy given back and taken again (docs/offload.md): `spillway run`
 * runs a component's local copy (examples/offload/backend.py, by local_start)
 * beside the emulator, whose VMs run the real agent and the same backend.
 * The application (examples/offload/app.py) asks through the route all
 * along. A VM READY: the route moves, the copy stops, and what it gave back
 * is recorded; the VM asked to go: the copy starts, serves, and only then
 * does the VM drain and go. Not one request fails. Also: a copy that cannot
 * start keeps an idle VM; a preemption starts the copy at once; a daemon
 * killed mid-way finds where things stand.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "local/local.h"
#include "app.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "world.h"

struct loop {
	struct world w;
	int port, local;  /* the route's listen, the copy's address */
	char *backend;    /* examples/offload/backend.py */
	char *agent;      /* data/spillway-agent.py */
	char *vm_backend; /* the VM's: python3 backend.py */
	char conf[320];
	char flag[320]; /* while it exists, the copy's start fails */
	char slow[320]; /* while it exists, the copy takes 2 s to start */
	const char *emu_args[5];
	pid_t app;
	char out[320], stop[320];
	int starts; /* of the daemon, so far */
};

static struct loop *current; /* the test's, for its teardown when it fails */

static void
write_conf(struct loop *l, const char *extra)
{
	char *text = extra != NULL && str_prefix(extra, "local_unit")
	    ? xasprintf("[component \"vision\"]\nlisten = 127.0.0.1:%d\nlocal = 127.0.0.1:%d\n%s",
	          l->port, l->local, extra)
	    : xasprintf("[component \"vision\"]\nlisten = 127.0.0.1:%d\n"
	                "local = 127.0.0.1:%d\n"
	                "local_start = /bin/sh -c 'if [ -e %s ]; then echo cannot map the "
	                "model: out of memory; exit 1; fi; if [ -e %s ]; then sleep 2; fi; "
	                "exec /usr/bin/python3 %s %d local'\n"
	                "local_start_timeout_s = 20\n%s",
	          l->port, l->local, l->flag, l->slow, l->backend, l->local,
	          extra != NULL ? extra : "");

	assert_int_equal(write_file_atomic(l->conf, text, strlen(text), 0600), 0);
	free(text);
}

static void
run_daemon(struct loop *l, const char *extra_env)
{
	char env_conf[340];
	const char *env[] = {env_conf, "SPILLWAY_ROUTE_WAIT_S=600", extra_env, NULL};

	snprintf(env_conf, sizeof env_conf, "SPILLWAY_CONFIG=%s", l->conf);
	world_run(&l->w, NULL, env);
	wait_started(&l->w, ++l->starts);
}

static void loop_start_at(struct loop *, int local, const char *extra_conf, const char *extra_env);

static void
loop_start(struct loop *l, const char *extra_conf, const char *extra_env)
{
	loop_start_at(l, free_port(), extra_conf, extra_env);
}

static void
loop_start_at(struct loop *l, int local, const char *extra_conf, const char *extra_env)
{
	const char *src = getenv("SPILLWAY_SOURCE");

	memset(l, 0, sizeof *l);
	current = l;
	l->backend = xasprintf("%s/examples/offload/backend.py", src);
	l->agent = xasprintf("%s/data/spillway-agent.py", src);
	l->vm_backend = xasprintf("/usr/bin/python3 %s", l->backend);
	l->emu_args[0] = "--guest-agent";
	l->emu_args[1] = l->agent;
	l->emu_args[2] = "--guest-backend";
	l->emu_args[3] = l->vm_backend;
	l->port = free_port();
	l->local = local;
	world_init(&l->w, SCALE, l->emu_args);
	write_trace(l->w.trace, 0, 3600);
	snprintf(l->conf, sizeof l->conf, "%s/spillway.conf", l->w.d.state);
	snprintf(l->flag, sizeof l->flag, "%s/broken", l->w.d.state);
	snprintf(l->slow, sizeof l->slow, "%s/slow", l->w.d.state);
	snprintf(l->out, sizeof l->out, "%s/app.out", l->w.d.state);
	snprintf(l->stop, sizeof l->stop, "%s/app.stop", l->w.d.state);
	write_conf(l, extra_conf);
	run_daemon(l, extra_env);
}

/* The copy is in this state now. */
static void
expect_copy(struct loop *l, const char *want)
{
	char *got = route_copy(&l->w);

	if (strcmp(got, want) != 0) {
		dmn_dump(&l->w.d);
		fail_msg("vision's local copy is '%s', not '%s'", got, want);
	}
	free(got);
}

static void
wait_copy(struct loop *l, const char *want)
{
	wait_route_copy(&l->w, want, 60000);
}

static void
app_begin(struct loop *l)
{
	l->app = app_start(l->port, l->out, l->stop);
}

/* The application stops; every one of its requests was answered. */
static void
app_end(struct loop *l)
{
	app_stop_clean(&l->w, l->app, l->out, l->stop);
	l->app = 0;
}

static void
loop_end(struct loop *l)
{
	int pid = local_copy_pid(l->w.d.state, "vision");

	if (l->app > 0) {
		kill(l->app, SIGKILL);
		waitpid(l->app, NULL, 0);
	}
	world_end(&l->w);
	/* The copy outlives the daemon, as it should: the test ends it. */
	if (pid > 1)
		kill(-pid, SIGKILL);
	free(l->backend);
	free(l->agent);
	free(l->vm_backend);
	current = NULL;
}

/* A test that failed midway: its application and its copy end here (the daemon with the test). */
static int
teardown(void **state)
{
	int pid;

	if (current == NULL)
		return 0;
	if (current->app > 0)
		kill(current->app, SIGKILL);
	if ((pid = local_copy_pid(current->w.d.state, "vision")) > 1)
		kill(-pid, SIGKILL);
	current = NULL;
	return 0;
}

static enum vm_state
record_state(struct world *w, const char *name)
{
	struct vm_record r;

	assert_int_equal(ledger_get(w->ledger, name, &r), 0);
	return r.state;
}

static size_t
offloads(struct loop *l, const char *vm, struct offload_record **list)
{
	size_t n = 0;

	assert_int_equal(ledger_offloads(l->w.ledger, vm, NULL, 10, list, &n), 0);
	return n;
}

/* A note of this kind on the VM whose detail holds text. */
static bool
noted(struct loop *l, const char *vm, const char *kind, const char *text)
{
	struct ledger_event *ev;
	size_t n;
	bool seen = false;

	assert_int_equal(ledger_events(l->w.ledger, vm, 100, &ev, &n), 0);
	for (size_t i = 0; i < n; i++)
		seen =
		    seen || (strcmp(ev[i].kind, kind) == 0 && strstr(ev[i].detail, text) != NULL);
	free(ev);
	return seen;
}

/* Until a note of this kind on the VM says text, for at most s seconds (real time). */
static void
wait_noted(struct loop *l, const char *vm, const char *kind, const char *text, int s)
{
	for (int i = 0; i < s * 20 && !noted(l, vm, kind, text); i++)
		sleep_ms(50);
	if (!noted(l, vm, kind, text)) {
		dmn_dump(&l->w.d);
		fail_msg("no '%s' event on %s saying '%s'", kind, vm, text);
	}
}

/*
 * Out and back with the application asking all along: local, then the VM
 * (its copy stopped, what it freed recorded and shown), then local again
 * (the copy healthy before the VM drains). Not one request fails.
 */
static void
test_out_and_back(void **state)
{
	struct loop l;
	struct vm_record v;
	struct offload_record *list;
	int pid;

	loop_start(&l, NULL, NULL);
	/* No VM serves it: spillway starts its copy. */
	wait_copy(&l, "running");
	assert_true(tcp_accepts(l.local));
	pid = local_copy_pid(l.w.d.state, "vision");
	assert_true(pid > 1);
	app_begin(&l);
	wait_lines(&l.w, l.out, "local", 3);

	v = create_vm(&l.w);
	wait_vm(&l.w, v.name, VM_READY);
	wait_lines(&l.w, l.out, "vm", 3);
	wait_copy(&l, "stopped");
	assert_false(tcp_accepts(l.local));
	assert_int_equal(kill(pid, 0), -1);
	wait_noted(&l, v.name, "local", "vision's local copy stopped while", 60);
	assert_int_equal(offloads(&l, v.name, &list), 1);
	assert_string_equal(list[0].component, "vision");
	assert_true(list[0].pss_kb > 2000); /* a Python interpreter, at least */
	assert_true(list[0].avail_before_kb > 0 && list[0].avail_after_kb > 0);
	assert_int_equal(list[0].back_ms, 0);
	free(list);
	/* status shows it, with the VM and for the copy. */
	{
		struct resp r;
		json_t *vm, *copy;

		dmn_call(&l.w.d, &r, "GET", "/v1/status", NULL);
		assert_int_equal(r.status, 200);
		vm = json_array_get(json_object_get(r.json, "vms"), 0);
		assert_string_equal(jx_str(vm, "name"), v.name);
		assert_string_equal(
		    jx_str(json_array_get(json_object_get(vm, "offloads"), 0), "component"),
		    "vision");
		copy = json_array_get(json_object_get(r.json, "local_copies"), 0);
		assert_string_equal(jx_str(copy, "state"), "stopped");
		assert_string_equal(jx_str(copy, "last_offload.vm"), v.name);
		assert_true(json_is_integer(jx_get(copy, "last_offload.pss_mb")));
		resp_free(&r);
	}

	/* Asked to go: the copy first, then the VM drains and goes. */
	delete_vm(&l.w, v.name);
	wait_copy(&l, "running");
	wait_vm(&l.w, v.name, VM_TERMINATED);
	wait_lines(&l.w, l.out, "local", lines_saying(l.out, "local") + 3);
	app_end(&l);
	{
		char *text = read_text(l.out);
		const char *order[] = {"local\n", "vm\n", "local\n", NULL};

		expect_in_order(text, order);
		free(text);
	}
	assert_int_equal(offloads(&l, v.name, &list), 1);
	assert_true(list[0].back_ms > 0 && list[0].start_took_ms > 0);
	free(list);
	/* Its history has one beginning: saving what it published is no state change. */
	{
		struct ledger_event *ev;
		size_t n, news = 0;

		assert_int_equal(ledger_events(l.w.ledger, v.name, 100, &ev, &n), 0);
		for (size_t i = 0; i < n; i++)
			news += str_prefix(ev[i].detail, "NEW -> ");
		free(ev);
		assert_int_equal(news, 1);
	}
	/* The copy was healthy before the VM began to go. */
	{
		struct ledger_event *ev;
		size_t n;
		int64_t back = 0, going = 0;

		assert_int_equal(ledger_events(l.w.ledger, v.name, 100, &ev, &n), 0);
		for (size_t i = 0; i < n; i++) {
			if (strstr(ev[i].detail, "serves again") != NULL)
				back = ev[i].t_ms;
			if (strstr(ev[i].detail, "-> TERMINATING") != NULL ||
			    strstr(ev[i].detail, "-> DRAINING") != NULL)
				going = going == 0 || ev[i].t_ms < going ? ev[i].t_ms : going;
		}
		free(ev);
		assert_true(back > 0 && going >= back);
	}
	loop_end(&l);
}

/*
 * Idle, but its copy cannot start (out of memory, says the copy): the VM is
 * kept and says why; once the copy can start, the VM goes.
 */
static void
test_copy_cannot_start_keeps_vm(void **state)
{
	struct loop l;
	struct vm_record v;

	loop_start(&l, NULL, "GCP_VM_IDLE_TIMEOUT_MINUTES=1");
	wait_copy(&l, "running");
	v = create_vm(&l.w);
	wait_vm(&l.w, v.name, VM_READY);
	wait_copy(&l, "stopped");
	assert_int_equal(write_file_atomic(l.flag, "", 0, 0600), 0);
	/*
	 * Idle for a minute, and then asked to go: kept. The backend's idleness
	 * is counted by the VM's agent in real seconds (this daemon's clock runs
	 * 60 times faster, not the agent's): a real minute, then.
	 */
	wait_noted(&l, v.name, "kept", "cannot map the model: out of memory", 150);
	assert_true(noted(&l, v.name, "kept", "kept though idle"));
	assert_int_equal(record_state(&l.w, v.name), VM_READY);
	expect_copy(&l, "failed");
	{
		struct resp r;

		dmn_call(&l.w.d, &r, "GET", "/v1/status", NULL);
		assert_non_null(strstr(
		    jx_str(json_array_get(json_object_get(r.json, "local_copies"), 0), "why"),
		    "out of memory"));
		resp_free(&r);
	}
	/* Memory comes back: its next try serves, and the idle VM goes. */
	unlink(l.flag);
	wait_copy(&l, "running");
	wait_vm(&l.w, v.name, VM_TERMINATED);
	loop_end(&l);
}

/*
 * A preemption: the copy starts at once, and a connection that comes before
 * it serves (it takes 2 s here) waits for it (route.wait_s) and is answered.
 */
static void
test_preempted(void **state)
{
	struct loop l;
	struct vm_record v;
	char *got;

	loop_start(&l, NULL, NULL);
	wait_copy(&l, "running");
	v = create_vm(&l.w);
	wait_vm(&l.w, v.name, VM_READY);
	wait_copy(&l, "stopped");
	got = get_through(l.port, "/work");
	assert_non_null(strstr(got, "\"served_by\": \"vm\""));
	free(got);
	assert_int_equal(write_file_atomic(l.slow, "", 0, 0600), 0);
	emu_admin(&l.w, &v, "preempt");
	wait_copy(&l, "starting");
	got = get_through(l.port, "/work");
	if (strstr(got, "\"served_by\": \"local\"") == NULL) {
		dmn_dump(&l.w.d);
		fail_msg("a connection while the copy started: '%s'", got);
	}
	free(got);
	expect_copy(&l, "running");
	wait_vm(&l.w, v.name, VM_PREEMPTED);
	loop_end(&l);
}

/*
 * kill -9 of the daemon mid-way: with the VM serving and the copy stopped,
 * the next daemon routes to the VM and leaves the copy stopped; killed again
 * once the copy serves again, the next one finds the copy running (the same
 * process) and starts no second one.
 */
static void
test_killed_midway(void **state)
{
	struct loop l;
	struct vm_record v;
	int pid;

	loop_start(&l, NULL, NULL);
	wait_copy(&l, "running");
	v = create_vm(&l.w);
	wait_vm(&l.w, v.name, VM_READY);
	wait_copy(&l, "stopped");
	assert_int_equal(dmn_stop(&l.w.d, SIGKILL), 128 + SIGKILL);
	run_daemon(&l, NULL);
	/* Where things stand: the VM serves (once it answers its first check), the copy stays. */
	for (int i = 0; i < 600; i++) {
		json_t *route = route_doc(&l.w);
		bool vm = jx_str(route, "vm") != NULL && strcmp(jx_str(route, "vm"), v.name) == 0;

		json_decref(route);
		if (vm)
			break;
		sleep_ms(50);
	}
	{
		char *got = get_through(l.port, "/work");

		assert_non_null(strstr(got, "\"served_by\": \"vm\""));
		free(got);
	}
	expect_copy(&l, "stopped");
	assert_false(tcp_accepts(l.local));

	delete_vm(&l.w, v.name);
	wait_copy(&l, "running");
	wait_vm(&l.w, v.name, VM_TERMINATED);
	pid = local_copy_pid(l.w.d.state, "vision");
	assert_int_equal(dmn_stop(&l.w.d, SIGKILL), 128 + SIGKILL);
	assert_int_equal(kill(pid, 0), 0); /* the copy serves on without spillway */
	run_daemon(&l, NULL);
	wait_copy(&l, "running");
	assert_int_equal(local_copy_pid(l.w.d.state, "vision"), pid);
	{
		char *got = get_through(l.port, "/work");

		assert_non_null(strstr(got, "\"served_by\": \"local\""));
		free(got);
	}
	loop_end(&l);
}

/* --- a copy run as a systemd user unit, by a real systemd user manager --- */

struct manager_run {
	char dir[64]; /* its XDG_RUNTIME_DIR (run/) and XDG_CONFIG_HOME (xdg/) */
	char runtime[128], env_runtime[160];
	char cgroups[3][128]; /* its own cgroup in each hierarchy there is; "" none */
	pid_t pid;
};

/*
 * The manager's own cgroup, in each hierarchy this machine has: it manages
 * (and, as it ends, trims) what is below its cgroup, which must not be the
 * root, where other programs' cgroups are.
 */
static void
manager_cgroups(struct manager_run *m)
{
	static const char *const roots[] = {
	    "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
	bool hybrid = access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0;

	for (size_t i = 0; i < 3; i++) {
		m->cgroups[i][0] = '\0';
		if (hybrid == (i == 2))
			continue; /* hybrid: systemd's and unified; pure v2: the root's */
		if (access(roots[i], F_OK) != 0)
			continue;
		snprintf(m->cgroups[i], sizeof m->cgroups[i], "%s/spillway-test-%d", roots[i],
		    (int)getpid());
		if (mkdir(m->cgroups[i], 0755) != 0 && errno != EEXIST) {
			print_message(
			    "skipped: cannot make a cgroup for a systemd user manager (%s)\n",
			    strerror(errno));
			skip();
		}
	}
}

/* In the child, before exec: into the manager's cgroups. */
static void
manager_join(const struct manager_run *m)
{
	for (size_t i = 0; i < 3; i++) {
		char *path, pid[32];
		FILE *f;

		if (m->cgroups[i][0] == '\0')
			continue;
		path = xasprintf("%s/cgroup.procs", m->cgroups[i]);
		snprintf(pid, sizeof pid, "%d", (int)getpid());
		if ((f = fopen(path, "w")) == NULL || fputs(pid, f) < 0 || fclose(f) != 0)
			_exit(126);
		free(path);
	}
}

/* What the manager left in its cgroups, deepest first. */
static int
rmdir_tree(const char *dir)
{
	char *cmd = xasprintf("find '%s' -depth -type d -exec rmdir {} + 2>/dev/null", dir);
	int status = system(cmd);

	free(cmd);
	return status;
}

/* Skipped, saying why, where a systemd user manager cannot be run here. */
static void
manager_possible(void)
{
	if (access("/lib/systemd/systemd", X_OK) != 0 || access("/usr/bin/unshare", X_OK) != 0 ||
	    geteuid() != 0) {
		print_message(
		    "skipped: a systemd user manager needs systemd, unshare and root here "
		    "(a mount namespace of its own)\n");
		skip();
	}
}

/*
 * systemd --user, as a login would start it, in a mount namespace of its own
 * where /run/systemd/system exists (it runs only on a system booted with
 * systemd, which a test machine need not be). Skips when this machine cannot.
 */
static void
manager_start(struct manager_run *m, const char *unit, const char *exec)
{
	char *path, *text, *sock;

	manager_cgroups(m);
	snprintf(m->dir, sizeof m->dir, "/tmp/spillway-systemd-XXXXXX");
	assert_non_null(mkdtemp(m->dir));
	snprintf(m->runtime, sizeof m->runtime, "%s/run", m->dir);
	snprintf(m->env_runtime, sizeof m->env_runtime, "XDG_RUNTIME_DIR=%s", m->runtime);
	path = xasprintf("%s/xdg/systemd/user", m->dir);
	assert_int_equal(make_dirs(path, 0700), 0);
	assert_int_equal(make_dirs(m->runtime, 0700), 0);
	free(path);
	path = xasprintf("%s/xdg/systemd/user/%s", m->dir, unit);
	text = xasprintf(
	    "[Unit]\nDescription=vision, the local copy\n[Service]\nExecStart=%s\n", exec);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
	free(text);
	free(path);
	m->pid = fork();
	assert_true(m->pid >= 0);
	if (m->pid == 0) {
		char *xdg = xasprintf("XDG_CONFIG_HOME=%s/xdg", m->dir);
		int fd = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGTERM); /* it ends with the test, whatever happens */
		manager_join(m);
		dup2(fd, 1);
		dup2(fd, 2);
		putenv(m->env_runtime);
		putenv(xdg);
		execl("/usr/bin/unshare", "unshare", "-m", "--propagation", "private", "/bin/sh",
		    "-c",
		    "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/system && "
		    "exec /lib/systemd/systemd --user",
		    (char *)NULL);
		_exit(127);
	}
	sock = xasprintf("%s/systemd/private", m->runtime);
	for (int i = 0; i < 400 && access(sock, F_OK) != 0; i++) {
		if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
			m->pid = 0;
			print_message(
			    "skipped: systemd --user would not start in a mount namespace\n");
			free(sock);
			skip();
		}
		sleep_ms(25);
	}
	assert_int_equal(access(sock, F_OK), 0);
	free(sock);
}

/* `systemctl --user is-active UNIT`, as the user would ask: "active", "inactive"... */
static char *
unit_state(struct manager_run *m, const char *unit)
{
	char *cmd = xasprintf("XDG_RUNTIME_DIR=%s systemctl --user is-active %s", m->runtime, unit);
	FILE *p = popen(cmd, "r");
	char line[64] = "";

	assert_non_null(p);
	if (fgets(line, sizeof line, p) == NULL)
		line[0] = '\0';
	pclose(p);
	free(cmd);
	return xstrdup(str_trim(line));
}

static void
manager_stop(struct manager_run *m)
{
	if (m->pid > 0) {
		kill(m->pid, SIGTERM);
		waitpid(m->pid, NULL, 0);
	}
	for (size_t i = 0; i < 3; i++)
		if (m->cgroups[i][0] != '\0')
			rmdir_tree(m->cgroups[i]);
	remove_tree(m->dir);
}

/*
 * local_unit: the daemon starts the unit when no VM serves the component,
 * stops it (systemctl --user stop) while one does, having measured the
 * unit's cgroup, and starts it again before the VM goes.
 */
static void
test_local_unit(void **state)
{
	struct manager_run m;
	struct loop l;
	struct vm_record v;
	struct offload_record *list;
	char exec[512], *unit;
	const char *extra = "local_unit = vision-local.service\n";
	int local = free_port();

	/* Nothing on the heap until the manager runs: a skip leaks nothing. */
	manager_possible();
	snprintf(exec, sizeof exec, "/usr/bin/python3 %s/examples/offload/backend.py %d local",
	    getenv("SPILLWAY_SOURCE"), local);
	manager_start(&m, "vision-local.service", exec);
	unit = unit_state(&m, "vision-local.service");
	assert_string_equal(unit, "inactive");
	free(unit);
	/* The copy's address is the unit's; the loop's own is not used. */
	loop_start_at(&l, local, extra, m.env_runtime);
	wait_copy(&l, "running");
	unit = unit_state(&m, "vision-local.service");
	assert_string_equal(unit, "active");
	free(unit);

	v = create_vm(&l.w);
	wait_vm(&l.w, v.name, VM_READY);
	wait_copy(&l, "stopped");
	unit = unit_state(&m, "vision-local.service");
	assert_string_equal(unit, "inactive");
	free(unit);
	assert_false(tcp_accepts(local));
	assert_int_equal(offloads(&l, v.name, &list), 1);
	assert_true(list[0].pss_kb > 2000); /* measured from the unit's cgroup */
	free(list);

	delete_vm(&l.w, v.name);
	wait_copy(&l, "running");
	wait_vm(&l.w, v.name, VM_TERMINATED);
	unit = unit_state(&m, "vision-local.service");
	assert_string_equal(unit, "active");
	free(unit);
	loop_end(&l);
	manager_stop(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_out_and_back, teardown),
	    cmocka_unit_test_teardown(test_copy_cannot_start_keeps_vm, teardown),
	    cmocka_unit_test_teardown(test_preempted, teardown),
	    cmocka_unit_test_teardown(test_killed_midway, teardown),
	    cmocka_unit_test_teardown(test_local_unit, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
