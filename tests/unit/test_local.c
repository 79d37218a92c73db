/*
 * A component's local copy: when it runs (local/plan.h, case by case), and
 * the service that runs it (local/local.h) with real processes on a real
 * loop: a copy started by local_start and found healthy by a connection to
 * its address, measured and stopped (SIGTERM to its session, or its
 * local_stop), one whose start fails or never turns healthy, and one found
 * again from its pidfile by a service started after the first went away.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "local/local.h"
#include "pressure/procfs.h"
#include "util/str.h"
#include "util/xmalloc.h"

/* --- the plan --- */

static struct plan
step(struct plan_view v, int64_t now)
{
	struct plan p;

	if (v.drain_ms == 0)
		v.drain_ms = 30000;
	if (v.retry_ms == 0)
		v.retry_ms = 120000;
	plan_step(&v, now, &p);
	return p;
}

static void
test_plan_out(void **state)
{
	struct plan p;

	/* A VM serves it: the copy stops at once with nothing open... */
	p = step(
	    (struct plan_view){.copy = LOCAL_RUNNING, .serving = 1, .served_since = 1000}, 1000);
	assert_int_equal(p.action, PLAN_STOP);
	/* ...else its connections get route.drain_s from the VM's taking over. */
	p = step(
	    (struct plan_view){
	        .copy = LOCAL_RUNNING, .serving = 1, .local_open = 2, .served_since = 1000},
	    5000);
	assert_int_equal(p.action, PLAN_NONE);
	assert_int_equal(p.wake_ms, 31000);
	p = step(
	    (struct plan_view){
	        .copy = LOCAL_RUNNING, .serving = 1, .local_open = 2, .served_since = 1000},
	    31000);
	assert_int_equal(p.action, PLAN_STOP);
	/* One that starts finishes first; one that cannot be stopped is left; others wait. */
	assert_int_equal(
	    step((struct plan_view){.copy = LOCAL_STARTING, .serving = 1}, 0).action, PLAN_NONE);
	assert_int_equal(
	    step((struct plan_view){.copy = LOCAL_RUNNING, .serving = 2, .unstoppable = true}, 0)
	        .action,
	    PLAN_NONE);
	assert_int_equal(
	    step((struct plan_view){.copy = LOCAL_STOPPED, .serving = 1}, 0).action, PLAN_NONE);
	assert_int_equal(
	    step((struct plan_view){.copy = LOCAL_UNKNOWN, .serving = 1}, 0).action, PLAN_NONE);
}

static void
test_plan_back(void **state)
{
	struct plan p;

	/* No VM serves it: the copy starts; one failed is tried again after a while. */
	assert_int_equal(step((struct plan_view){.copy = LOCAL_STOPPED}, 0).action, PLAN_START);
	p = step((struct plan_view){.copy = LOCAL_FAILED, .failed_ms = 1000}, 60000);
	assert_int_equal(p.action, PLAN_NONE);
	assert_int_equal(p.wake_ms, 121000);
	assert_int_equal(
	    step((struct plan_view){.copy = LOCAL_FAILED, .failed_ms = 1000}, 121000).action,
	    PLAN_START);
	/* Running, starting, stopping (started once stopped), or not asked yet: nothing now. */
	assert_int_equal(step((struct plan_view){.copy = LOCAL_RUNNING}, 0).action, PLAN_NONE);
	assert_int_equal(step((struct plan_view){.copy = LOCAL_STARTING}, 0).action, PLAN_NONE);
	assert_int_equal(step((struct plan_view){.copy = LOCAL_STOPPING}, 0).action, PLAN_NONE);
	assert_int_equal(step((struct plan_view){.copy = LOCAL_UNKNOWN}, 0).action, PLAN_NONE);
}

static void
test_plan_gate(void **state)
{
	/* Served elsewhere, or by its copy: no gap, it goes. */
	assert_int_equal(plan_gate(LOCAL_STOPPED, 1, false), GATE_GO);
	assert_int_equal(plan_gate(LOCAL_RUNNING, 0, false), GATE_GO);
	/* Its copy on its way: it waits; failed: it stays, unless asked to go whatever. */
	assert_int_equal(plan_gate(LOCAL_STARTING, 0, false), GATE_WAIT);
	assert_int_equal(plan_gate(LOCAL_STOPPED, 0, true), GATE_WAIT);
	assert_int_equal(plan_gate(LOCAL_FAILED, 0, false), GATE_KEEP);
	assert_int_equal(plan_gate(LOCAL_FAILED, 0, true), GATE_GO);
	assert_string_equal(local_state_name(LOCAL_STOPPING), "stopping");
}

static void
test_proc_stat(void **state)
{
	struct proc_stat st;

	/* A command with spaces and parentheses: the fields follow the last ')'. */
	assert_int_equal(proc_stat_parse("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 "
	                                 "0 20 0 1 0 987654 1000 100",
	                     &st),
	    0);
	assert_int_equal(st.state, 'S');
	assert_int_equal(st.ppid, 1);
	assert_int_equal(st.pgrp, 4242);
	assert_int_equal(st.session, 4242);
	assert_true(st.starttime == 987654);
	assert_int_equal(proc_stat_parse("4242 (no end", &st), -EINVAL);
	/* This process, for real. */
	assert_int_equal(procfs_stat("/proc", (int)getpid(), &st), 0);
	assert_int_equal(st.ppid, (int)getppid());
	assert_int_equal(procfs_stat("/proc", 0x7ffffff0, &st), -ESRCH);
}

/* --- the service, with real processes --- */

struct fix {
	char dir[64];
	char conf[128];
	char *env[5];
	struct config cfg;
	struct clock clock;
	uv_loop_t loop;
	struct locals *l;
	struct local_info last; /* the last change heard */
	int changes;
	int port;
};

static void
on_changed(void *arg, const struct local_info *i)
{
	struct fix *f = arg;

	f->last = *i;
	f->changes++;
}

static int
free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* A component "vision" whose copy is run as this section says (local, listen added). */
static struct fix *
fix_new(const char *section)
{
	struct fix *f = xcalloc(1, sizeof *f);
	char *text, *cause = NULL;
	const char *sets[] = {NULL};
	struct config_args a = {f->conf, sets};

	snprintf(f->dir, sizeof f->dir, "/tmp/spillway-local-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf, sizeof f->conf, "%s/c.conf", f->dir);
	f->port = free_port();
	f->env[0] = xasprintf("HOME=%s", f->dir);
	f->env[1] = xasprintf("XDG_CONFIG_HOME=%s/xdg", f->dir);
	f->env[2] = xasprintf("XDG_STATE_HOME=%s/state", f->dir);
	f->env[3] = xasprintf("XDG_RUNTIME_DIR=%s/run", f->dir);
	text = xasprintf("[component \"vision\"]\nlisten = 127.0.0.1:%d\nlocal = 127.0.0.1:%d\n%s",
	    free_port(), f->port, section);
	{
		char *port = xasprintf("%d", f->port), *expanded;
		const struct str_var vars[] = {{"{port}", port}};

		expanded = str_expand(text, vars, 1);
		assert_int_equal(write_file_atomic(f->conf, expanded, strlen(expanded), 0600), 0);
		free(expanded);
		free(port);
	}
	free(text);
	if (config_load(&f->cfg, &a, f->env, &cause) != 0)
		fail_msg("config_load: %s", cause);
	clock_real(&f->clock);
	uv_loop_init(&f->loop);
	return f;
}

static void
open_locals(struct fix *f)
{
	struct locals_opts o = {
	    .clock = &f->clock, .state_dir = f->cfg.state_dir, .changed = on_changed, .arg = f};
	char *cause = NULL;

	if (locals_new(&f->loop, &f->cfg, &o, &f->l, &cause) != 0)
		fail_msg("locals_new: %s", cause);
}

/* Run the loop until the copy is in this state (real time: 30 s at most). */
static void
wait_state(struct fix *f, enum local_state want)
{
	for (int i = 0; i < 3000; i++) {
		const struct local_info *in = locals_get(f->l, "vision");

		if (in->state == want && f->last.state == want)
			return;
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(10000);
	}
	fail_msg("vision's local copy is %s (%s), not %s",
	    local_state_name(locals_get(f->l, "vision")->state), locals_get(f->l, "vision")->why,
	    local_state_name(want));
}

/* The service on a fresh fixture, its copy found not running (nothing answers on its address). */
static struct fix *
fix_stopped(const char *section)
{
	struct fix *f = fix_new(section);

	open_locals(f);
	locals_probe(f->l);
	wait_state(f, LOCAL_STOPPED);
	return f;
}

static void
close_locals(struct fix *f)
{
	locals_free(f->l);
	f->l = NULL;
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void
fix_free(struct fix *f)
{
	char *cmd = xasprintf("rm -rf '%s'", f->dir);

	if (f->l != NULL)
		close_locals(f);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	config_free(&f->cfg);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	for (int i = 0; i < 4; i++)
		free(f->env[i]);
	free(f);
}

/* Its process has ended (a zombie of ours counts: spawned here, it is not reaped here). */
static bool
gone(int pid)
{
	struct proc_stat st;

	return procfs_stat("/proc", pid, &st) != 0 || st.state == 'Z';
}

#define SERVER "local_start = /usr/bin/python3 -m http.server {port} --bind 127.0.0.1\n"

/* Started, healthy, measured, stopped by SIGTERM to its session: its memory is given back. */
static void
test_start_measure_stop(void **state)
{
	struct fix *f = fix_stopped(SERVER);
	const struct local_info *in;
	int pid;

	assert_int_equal(locals_start(f->l, "vision", "spillway-a", "test"), 0);
	assert_int_equal(locals_get(f->l, "vision")->state, LOCAL_STARTING);
	assert_int_equal(locals_start(f->l, "vision", "spillway-a", "test"), -EALREADY);
	wait_state(f, LOCAL_RUNNING);
	assert_string_equal(f->last.why, "it takes connections");
	assert_true(f->last.start_took_ms > 0);
	pid = local_copy_pid(f->cfg.state_dir, "vision");
	assert_true(pid > 1 && !gone(pid));
	/* Python's interpreter alone holds megabytes. */
	assert_true(locals_pss_kb(f->l, "vision") > 2000);

	assert_int_equal(locals_stop(f->l, "vision", "spillway-a", "a VM serves it"), 0);
	assert_int_equal(locals_get(f->l, "vision")->state, LOCAL_STOPPING);
	wait_state(f, LOCAL_STOPPED);
	in = locals_get(f->l, "vision");
	assert_true(in->measured && !in->on_its_own);
	assert_true(in->pss_kb > 2000);
	assert_true(in->avail_before_kb > 0 && in->avail_after_kb > 0);
	assert_non_null(strstr(in->why, "stopped (a VM serves it)"));
	assert_true(gone(pid));
	assert_int_equal(
	    local_copy_pid(f->cfg.state_dir, "vision"), 0); /* its pidfile went with it */
	assert_int_equal(locals_stop(f->l, "vision", NULL, NULL), -EALREADY);
	fix_free(f);
}

/* A start that fails, and one never healthy in time (what it started is stopped). */
static void
test_start_fails(void **state)
{
	struct fix *f = fix_stopped("local_start = /bin/sh -c 'echo no model here; exit 3'\n");
	char *log;

	assert_int_equal(locals_start(f->l, "vision", "", "test"), 0);
	wait_state(f, LOCAL_FAILED);
	assert_non_null(
	    strstr(f->last.why, "local_start exited with status 3: no model here (its output: "));
	assert_non_null(strstr(f->last.why, "before it was healthy"));
	log = xasprintf("%s/local/vision.log", f->cfg.state_dir);
	{
		char *text = NULL;

		assert_int_equal(read_file(log, 1 << 20, &text, NULL), 0);
		assert_non_null(strstr(text, "no model here"));
		free(text);
	}
	free(log);
	fix_free(f);

	f = fix_stopped("local_start = /bin/sleep 60\nlocal_start_timeout_s = 1\n");
	assert_int_equal(locals_start(f->l, "vision", "", "test"), 0);
	{
		int pid = local_copy_pid(f->cfg.state_dir, "vision");

		assert_true(pid > 1);
		wait_state(f, LOCAL_FAILED);
		assert_non_null(
		    strstr(f->last.why, "not healthy within local_start_timeout_s (1 s)"));
		/* What it started is stopped, and it stays FAILED. */
		for (int i = 0; i < 500 && !gone(pid); i++) {
			uv_run(&f->loop, UV_RUN_NOWAIT);
			usleep(10000);
		}
		assert_true(gone(pid));
		assert_int_equal(locals_get(f->l, "vision")->state, LOCAL_FAILED);
	}
	/* A program that is not there: said as the copy's failure. */
	fix_free(f);
	f = fix_stopped("local_start = /nonexistent/llama-server\n");
	assert_int_equal(locals_start(f->l, "vision", "", "test"), 0);
	wait_state(f, LOCAL_FAILED);
	assert_non_null(strstr(f->last.why, "cannot run '/nonexistent/llama-server'"));
	fix_free(f);
}

/*
 * A copy outlives its service (a daemon killed): the next one finds it from
 * its pidfile, and stops it though it is not its child; local_stop, when
 * given, is what stops it.
 */
static void
test_found_again_and_local_stop(void **state)
{
	struct fix *f =
	    fix_stopped(SERVER "local_stop = /usr/bin/pkill -f \"http.server {port}\"\n");
	int pid;

	(void)state;
	locals_start(f->l, "vision", "", "test");
	wait_state(f, LOCAL_RUNNING);
	pid = local_copy_pid(f->cfg.state_dir, "vision");
	close_locals(f);
	assert_false(gone(pid)); /* it serves on */

	f->last.state = LOCAL_UNKNOWN;
	open_locals(f);
	locals_probe(f->l);
	wait_state(f, LOCAL_RUNNING);
	assert_string_equal(locals_get(f->l, "vision")->why, "it takes connections");
	assert_int_equal(locals_stop(f->l, "vision", "spillway-b", "test"), 0);
	wait_state(f, LOCAL_STOPPED);
	assert_true(gone(pid));
	assert_true(f->last.pss_kb > 2000);
	fix_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plan_out),
	    cmocka_unit_test(test_plan_back),
	    cmocka_unit_test(test_plan_gate),
	    cmocka_unit_test(test_proc_stat),
	    cmocka_unit_test(test_start_measure_stop),
	    cmocka_unit_test(test_start_fails),
	    cmocka_unit_test(test_found_again_and_local_stop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
