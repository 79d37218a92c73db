/*
 * Chaos: spillway's daemon killed -9 over and over while it works (docs/testing.md).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "harness.h"
#include "ledger/cost.h"
#include "ledger/ledger.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "world.h"

#define GRACE_MS (10 * 60000) /* daemon.orphan_grace_minutes */

/* The ledger file, read as SQLite and as money, beside the daemon that writes it. */
static void
expect_sound(struct world *w, int run)
{
	char *path = xasprintf("%s/ledger.db", w->d.state);
	sqlite3 *db;
	sqlite3_stmt *st;
	struct vm_record *list;
	size_t n = vms(w, &list);
	int64_t now = vnow(w);

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(
	    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
		fail_msg("run %d: the ledger fails integrity_check: %s", run,
		    (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	for (size_t i = 0; i < n; i++) {
		const struct vm_record *v = &list[i];
		bool ended =
		    v->state == VM_TERMINATED || v->state == VM_PREEMPTED || v->state == VM_FAILED;
		double want, days = 0;

		if (v->state == VM_ORPHANED && now - v->state_ms > GRACE_MS + 60000)
			fail_msg("run %d: orphan %s is %lld s old, past its grace", run, v->name,
			    (long long)(now - v->state_ms) / 1000);
		if (!ended && v->billed_ms == 0)
			continue;
		/*
		 * A VM of the pool had parts billed before its end (its warm-up, its
		 * wait): each of those was billed once, the whole within two runs of
		 * its planned length and its wait. Any other: exactly its one run.
		 */
		want = v->started_ms > 0 && ended
		    ? cost_run(v->per_hour, v->started_ms, v->ended_ms, v->spot,
		          v->state == VM_PREEMPTED)
		    : 0;
		if (v->billed_ms == 0 && fabs(v->cost - want) > 1e-9)
			fail_msg("run %d: %s closed at $%.6f, its run bills $%.6f", run, v->name,
			    v->cost, want);
		if (v->billed_ms > 0 && v->cost < want - 1e-9)
			fail_msg(
			    "run %d: %s of the pool closed at $%.6f, below its last run's $%.6f",
			    run, v->name, v->cost, want);
		/* Never billed past its reservation: Compute Engine stops it at maxRunDuration. */
		if (v->cost > (v->billed_ms > 0 ? 2 : 1) * v->per_hour *
		            (double)(v->planned_run_s > 60 ? v->planned_run_s : 60) / 3600.0 +
		        (v->billed_ms > 0 ? 0.01 : 0) + 1e-9)
			fail_msg("run %d: %s cost $%.6f, past its planned run of %lld s", run,
			    v->name, v->cost, (long long)v->planned_run_s);
		assert_int_equal(
		    sqlite3_prepare_v2(db,
		        "SELECT COALESCE(SUM(amount), 0) FROM costs WHERE vm = ?", -1, &st, NULL),
		    SQLITE_OK);
		sqlite3_bind_text(st, 1, v->name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			days = sqlite3_column_double(st, 0);
		sqlite3_finalize(st);
		if (fabs(days - v->cost) > 1e-6)
			fail_msg("run %d: %s's days add up to $%.6f, its cost is $%.6f", run,
			    v->name, days, v->cost);
	}
	sqlite3_close(db);
	free(list);
	free(path);
}

/*
 * The daemon killed with SIGKILL at random points while it creates and
 * deletes VMs as fast as the rules allow, against an emulator that loses 5 %
 * of its answers and adds latency: 200 kills (SPILLWAY_CRASH_RUNS), 5,000
 * with SPILLWAY_CHAOS_LONG=1, each followed by a restart. After each
 * restart: the emulator's instances are the ledger's alive VMs, the ledger
 * passes PRAGMA integrity_check, no orphan outlived its grace, and every
 * ended VM's cost is closed as its recorded run bills, split over days to
 * the cent, never past its reservation. A warm pool of one is made, taken
 * and made again all along (its VMs' warm-ups and waits billed once). At the
 * end: every insert the emulator ever saw named a VM of the ledger with that
 * VM's one requestId (none was created twice), and SIGTERM leaves nothing
 * running but the pool, stopped.
 */
static void
test_crash_loop(void **state)
{
	const char *emu_args[] = {"--faults", "error503=0.05,latency=0-15", NULL};
	const char *busy[] = {"GCP_VM_MAX_CONCURRENT=2", "SPILLWAY_POOL_SIZE=1",
	    "SPILLWAY_COOLDOWN_MINUTES=0", "GCP_VM_IDLE_TIMEOUT_MINUTES=1",
	    "GCP_VM_MAX_LIFETIME_HOURS=0.2", "SPILLWAY_MIN_RUN_MINUTES=1",
	    "SPILLWAY_RETRY_BASE_MS=5", "SPILLWAY_RETRY_CAP_MS=50", NULL};
	const char *quiet[] = {"GCP_VM_ENABLED=false", "GCP_VM_MAX_CONCURRENT=2",
	    "SPILLWAY_POOL_SIZE=1", "GCP_VM_IDLE_TIMEOUT_MINUTES=600", "SPILLWAY_RETRY_BASE_MS=5",
	    "SPILLWAY_RETRY_CAP_MS=50", NULL};
	const char *env_runs = getenv("SPILLWAY_CRASH_RUNS"), *lng = getenv("SPILLWAY_CHAOS_LONG");
	int runs = env_runs != NULL && atoi(env_runs) > 0 ? atoi(env_runs)
	    : lng != NULL && *lng == '1'                  ? 5000
	                                                  : 200;
	unsigned seed = (unsigned)(realtime_ns() / 1000);
	struct world w;
	struct vm_record *list;
	struct insert *ins = xcalloc(4 * (size_t)runs + 64, sizeof *ins);
	char calm[300];
	size_t n, nvm;
	json_t *all;

	printf("crash loop: %d runs, seed %u\n", runs, seed);
	srand(seed);
	world_init(&w, 600, emu_args);
	write_trace(w.trace, 36000, 0);
	snprintf(calm, sizeof calm, "%s/calm.trace", w.d.state);
	write_trace(calm, 0, 600);
	for (int run = 0; run < runs; run++) {
		const char *calm_args[] = {"--replay", calm, NULL};

		world_run(&w, NULL, busy);
		/* Killed once it runs (start-up is slow under sanitizers), at a random moment. */
		wait_started(&w, 2 * run + 1);
		sleep_ms(rand() % 500);
		assert_int_equal(dmn_stop(&w.d, SIGKILL), 128 + SIGKILL);
		/* Restarted: it must finish or undo what the killed one left. */
		world_run(&w, calm_args, quiet);
		wait_started(&w, 2 * run + 2);
		expect_consistent(&w, run);
		expect_sound(&w, run);
		assert_int_equal(dmn_stop(&w.d, SIGKILL), 128 + SIGKILL);
	}
	/* Every insert named a VM of the ledger, with that VM's one requestId. */
	n = inserts(&w, ins, 4 * (size_t)runs + 64);
	nvm = vms(&w, &list);
	assert_true(n > 0);
	for (size_t i = 0; i < n; i++) {
		struct vm_record v;

		if (ledger_get(w.ledger, ins[i].name, &v) != 0)
			fail_msg("insert of %s, unknown to the ledger", ins[i].name);
		if (strcmp(ins[i].request_id, v.request_id) != 0)
			fail_msg("%s inserted with requestId %s, the ledger has %s", v.name,
			    ins[i].request_id, v.request_id);
	}
	{
		/* The pool was part of it: VMs warmed and waited (billed before their end). */
		size_t pooled = 0;

		for (size_t i = 0; i < nvm; i++)
			pooled += list[i].billed_ms > 0;
		printf("crash loop: %zu inserts for %zu VMs, %zu of them through the pool\n", n,
		    nvm, pooled);
		assert_true(pooled > 0);
	}
	free(list);
	free(ins);
	/* The last start, then SIGTERM: nothing left running. A VM of the last run may
	 * already be READY in the ledger, so wait for this daemon to have started. */
	world_run(&w, NULL, busy);
	wait_started(&w, 2 * runs + 1);
	wait_state(&w, VM_READY, 0);
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	/* Nothing runs; what is left is the pool, stopped or suspended, which the ledger has. */
	all = emu_instances(&w.e);
	{
		size_t i;
		json_t *it;

		json_array_foreach (all, i, it) {
			struct vm_record v = {.state = VM_TERMINATED};
			const char *st = jx_str(it, "status");

			ledger_get(w.ledger, jx_str(it, "name"), &v);
			if ((!str_eq(st, "TERMINATED") && !str_eq(st, "SUSPENDED")) ||
			    v.state != VM_POOLED)
				fail_msg("left after SIGTERM: %s, %s, %s in the ledger",
				    jx_str(it, "name"), st, vm_state_name(v.state));
		}
		assert_true(json_array_size(all) <= 1);
	}
	json_decref(all);
	world_end(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crash_loop),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
