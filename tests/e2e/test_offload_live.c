/*
 * The whole loop with real pressure on this machine's kernel (docs/offload.md):
 * a memory cgroup limited to 200 MiB holds a component's local copy
 * (examples/offload/heavy.py: 150 MiB held, and 256 MiB of a 384 MiB
 * weights file read for each request), which spillway runs; an application
 * (examples/offload/app.py) uses it through its route without a pause. The
 * cgroup stalls, its PSI says so, the daemon (live monitor on that cgroup,
 * real time) goes HIGH and creates a VM on the emulator (the real agent and
 * the same component behind it), the route moves, the local copy stops: the
 * cgroup's memory and its stall fall, by the kernel's own figures. The
 * application stops; the VM goes idle; the copy starts, serves, and only then
 * does the VM drain and go. The application again: served locally. Not one
 * request fails. The figures (memory freed, stall before and after, the time
 * each way) are printed for docs/performance.md.
 *
 * Where the machine cannot (no PSI, no memory cgroup it may create), it says
 * why and skips; it never passes silently.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "local/local.h"
#include "app.h"
#include "memload.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "world.h"

#define LIMIT     "200M"
#define WEIGHTS   384 /* MB */
#define HOLD_MB   150
#define READ_MB   256
#define WAIT_LONG 180000 /* ms: HIGH, a VM, an idle minute */

static struct memload load;
static struct world W; /* global: the teardown ends what a failure left */

/* The share of the next 3 s in which some task of the cgroup stalled on memory, in %. */
static double
stall_share(void)
{
	int64_t t0 = now_ms();
	long long s0 = memcg_stall_us(&load.cg);

	sleep_ms(3000);
	return (double)(memcg_stall_us(&load.cg) - s0) / 10.0 / (double)(now_ms() - t0);
}

static void
test_pressure_loop(void **state)
{
	const char *src = getenv("SPILLWAY_SOURCE"), *why = NULL;
	char *heavy, *agent, *vm_backend;
	char conf[320], env_conf[340], out[320], out2[320], stop[320], *text;
	int port = free_port(), local = free_port(), pid;
	struct vm_record v, now;
	struct offload_record *list;
	size_t n;
	long long mem_before, mem_after;
	double stall_before, stall_after;
	int64_t t_app, t_ready, t_stopped, t_back_asked, t_gone;
	pid_t app;

	if (memload_setup(&load, LIMIT, WEIGHTS, &why) != 0) {
		print_message("skipped: %s\n", why);
		skip(); /* before anything is allocated: a skip leaks nothing */
	}
	heavy = xasprintf("%s/examples/offload/heavy.py", src);
	agent = xasprintf("%s/data/spillway-agent.py", src);
	vm_backend = xasprintf("/usr/bin/python3 %s", heavy);
	{
		const char *emu_args[] = {"--guest-agent", agent, "--guest-backend", vm_backend,
		    "--boot-ms", "1500", "--guest-boot-ms", "500", NULL};

		world_init(&W, 1, emu_args);
	}
	snprintf(conf, sizeof conf, "%s/spillway.conf", W.d.state);
	snprintf(out, sizeof out, "%s/app.out", W.d.state);
	snprintf(out2, sizeof out2, "%s/app-again.out", W.d.state);
	snprintf(stop, sizeof stop, "%s/app.stop", W.d.state);
	text = xasprintf("[component \"vision\"]\nlisten = 127.0.0.1:%d\nlocal = 127.0.0.1:%d\n"
	                 "match = heavy.py\n"
	                 "local_start = /usr/bin/python3 %s %d local --hold-mb %d --weights %s "
	                 "--read-mb %d --cgroup %s%s%s\n"
	                 "local_start_timeout_s = 60\n"
	                 "[pressure]\ncgroup = %s\n",
	    port, local, heavy, local, HOLD_MB, load.file, READ_MB, load.cg.v2,
	    load.cg.v1[0] != '\0' ? " --cgroup " : "", load.cg.v1, load.cg.v2);
	assert_int_equal(write_file_atomic(conf, text, strlen(text), 0600), 0);
	free(text);
	snprintf(env_conf, sizeof env_conf, "SPILLWAY_CONFIG=%s", conf);
	{
		const char *env[] = {"SPILLWAY_OWNER=" OWNER, env_conf,
		    "GCP_VM_IDLE_TIMEOUT_MINUTES=1", "GCP_VM_HEALTH_CHECK_INTERVAL=2",
		    "SPILLWAY_ROUTE_DRAIN_S=5", "SPILLWAY_ROUTE_WAIT_S=60",
		    "SPILLWAY_FALLBACK_ZONES=" ZONE_B, NULL};

		dmn_start(&W.d, &W.e, NULL, env); /* the live monitor, in real time */
		wait_started(&W, 1);
	}
	wait_route_copy(&W, "running", 60000);
	pid = local_copy_pid(W.d.state, "vision");
	t_app = now_ms();
	app = app_start(port, out, stop);
	wait_lines(&W, out, "local", 3);

	/* The cgroup stalls: HIGH, a VM, the route moves, the copy stops. */
	stall_before = stall_share();
	mem_before = memcg_bytes(&load.cg);
	v = wait_state(&W, VM_READY, 0);
	t_ready = now_ms();
	wait_route_copy(&W, "stopped", 60000);
	t_stopped = now_ms();
	assert_int_equal(kill(pid, 0), -1);
	wait_lines(&W, out, "vm", 5);
	stall_after = stall_share();
	mem_after = memcg_bytes(&load.cg);
	print_message("cgroup: %lld -> %lld MiB; stall %.1f%% -> %.1f%% of the time\n",
	    mem_before >> 20, mem_after >> 20, stall_before, stall_after);
	/* By the kernel's own figures: what the copy held is given back, and the stall is gone. */
	assert_true(mem_before - mem_after > 100LL << 20);
	assert_true(stall_before >= 5.0);
	assert_true(stall_after < stall_before / 4);
	assert_int_equal(ledger_offloads(W.ledger, v.name, NULL, 10, &list, &n), 0);
	assert_int_equal(n, 1);
	print_message("recorded: its processes' PSS %" PRId64 " MiB; MemAvailable %" PRId64
	              " -> %" PRId64 " MiB (+%" PRId64 ")\n",
	    list[0].pss_kb >> 10, list[0].avail_before_kb >> 10, list[0].avail_after_kb >> 10,
	    offload_freed_kb(&list[0]) >> 10);
	assert_true(list[0].pss_kb > 100 << 10);
	free(list);
	app_stop_clean(&W, app, out, stop);
	{
		char *all = read_text(out);
		const char *order[] = {"local\n", "vm\n", NULL};

		expect_in_order(all, order);
		free(all);
	}

	/* Unused for a minute: the copy first, then the VM goes. */
	wait_route_copy(&W, "starting", WAIT_LONG);
	t_back_asked = now_ms();
	assert_int_equal(ledger_get(W.ledger, v.name, &now), 0);
	assert_int_equal(now.state, VM_READY); /* it serves until the copy does */
	wait_route_copy(&W, "running", 60000);
	wait_vm(&W, v.name, VM_TERMINATED);
	t_gone = now_ms();
	app = app_start(port, out2, stop);
	wait_lines(&W, out2, "local", 3);
	app_stop_clean(&W, app, out2, stop);
	print_message(
	    "times: the application's first request to READY %.1f s, READY to the copy "
	    "stopped %.1f s; the copy started to the VM gone %.1f s; failed requests: 0\n",
	    (double)(t_ready - t_app) / 1000, (double)(t_stopped - t_ready) / 1000,
	    (double)(t_gone - t_back_asked) / 1000);
	assert_int_equal(dmn_stop(&W.d, SIGTERM), 0);
	free(heavy);
	free(agent);
	free(vm_backend);
}

/* The daemon and the copy (which outlives it, as it should), then the cgroup once it is empty. */
static int
teardown(void **state)
{
	int pid = W.d.state[0] != '\0' ? local_copy_pid(W.d.state, "vision") : 0;

	if (W.d.pid > 0)
		dmn_stop(&W.d, SIGKILL);
	if (pid > 1)
		kill(-pid, SIGKILL);
	for (int i = 0; i < 200 && (load.cg.v1[0] != '\0' || load.cg.v2[0] != '\0'); i++) {
		memload_cleanup(&load);
		if (load.cg.v1[0] != '\0' || load.cg.v2[0] != '\0')
			sleep_ms(10);
	}
	if (W.d.state[0] != '\0') {
		ledger_close(W.ledger);
		dmn_cleanup(&W.d);
		emu_stop(&W.e);
	}
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_pressure_loop, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
