/*
 * The daemon end to end: `spillway run` against `spillway emulator`, two
 * processes sharing one fast clock (--time-scale, --clock-epoch), pressure
 * from recorded or written traces. What is asserted is read from the two
 * sources of truth the daemon does not control: the emulator (its instances
 * and its request log) and the ledger file (opened by this process).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "world.h"
#include "ledger/cost.h"
#include "ledger/ledger.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/startup.h"

/* --- the tests --- */

/*
 * A recorded sustained episode: exactly one VM, as described; idle after the
 * pressure falls, deleted, billed to the cent for the seconds it ran.
 */
static void
test_sustained_one_vm(void **state)
{
	struct world w;
	struct vm_record v, *list;
	struct insert ins[16];
	json_t *inst, *all;
	int64_t started, deleted;
	double expect;

	world_init(&w, SCALE, NULL);
	recorded_trace(&w, "pressure-sustained.trace");
	world_run(&w, NULL, NULL);
	v = wait_state(&w, VM_READY, 0);
	inst = instance(&w, &v);
	expect_schema("Instance", inst);
	assert_string_equal(label(inst, "managed-by"), "spillway");
	assert_string_equal(label(inst, "spillway-owner"), OWNER);
	assert_string_equal(jx_str(inst, "scheduling.provisioningModel"), "SPOT");
	assert_string_equal(jx_str(inst, "scheduling.instanceTerminationAction"), "DELETE");
	assert_string_equal(jx_str(inst, "scheduling.maxRunDuration.seconds"), "10800");
	assert_int_equal(v.planned_run_s, 10800);
	assert_string_equal(metadata(inst, "spillway-components"), "vision,chatbots");
	assert_string_equal(metadata(inst, "spillway-vm"), v.name);
	assert_non_null(strstr(jx_str(inst, "machineType"), "/machineTypes/e2-highmem-4"));
	assert_true(fabs(v.per_hour - 0.0595) < 0.0005);
	assert_non_null(strstr(v.reason, "pressure CRITICAL"));
	assert_true(v.confidence >= 0.6);
	time_parse_rfc3339(jx_str(inst, "lastStartTimestamp"), &started);
	json_decref(inst);
	/* Idle: the pressure fell, the backend saw nothing for 5 min. */
	v = wait_vm(&w, v.name, VM_TERMINATED);
	assert_non_null(strstr(v.end_reason, "idle"));
	/* Billed: the emulator's start to the delete request, per second, to the cent. */
	deleted = deleted_at(&w, v.name);
	assert_true(deleted > started);
	expect = v.per_hour * (double)(deleted - started) / 3600000.0;
	if (fabs(v.cost - expect) >= 0.005)
		fail_msg("cost $%.6f, expected $%.6f", v.cost, expect);
	/* Exactly one VM, one insert. */
	assert_int_equal(vms(&w, &list), 1);
	free(list);
	assert_int_equal(inserts(&w, ins, 16), 1);
	assert_string_equal(ins[0].request_id, v.request_id);
	all = emu_instances(&w.e);
	assert_int_equal(json_array_size(all), 0);
	json_decref(all);
	world_end(&w);
}

/*
 * The passes as the emulator saw them: 'L' for each list of zone A, 'R' for
 * each lease renewal the agent took, 'X' for one it refused.
 */
static char *
pass_letters(struct world *w)
{
	char *text = read_text(w->e.log), **lines = str_split(text, '\n', NULL);
	struct buf b = BUF_INIT(1 << 20);

	for (char **l = lines; *l != NULL; l++) {
		json_t *j = json_loads(*l, 0, NULL);
		const char *path = j != NULL ? jx_str(j, "path") : NULL;

		if (path != NULL && strcmp(jx_str(j, "method"), "GET") == 0 &&
		    str_suffix(path, "/zones/" ZONE_A "/instances"))
			buf_addch(&b, 'L');
		else if (path != NULL && strcmp(path, "/spillway/lease") == 0)
			buf_addch(&b,
			    json_integer_value(json_object_get(j, "status")) == 200 ? 'R' : 'X');
		json_decref(j);
	}
	str_list_free(lines);
	free(text);
	return buf_detach(&b, NULL);
}

/*
 * What a VM is given, and how it is kept: its metadata carries the startup
 * script, the agent and the settings of the configuration, and a secret that
 * is agent.key's for its name (and in no log and not in the ledger); every
 * pass renews its lease, signed so that the agent takes it.
 */
static void
test_startup_and_lease(void **state)
{
	const char *env[] = {"GCP_VM_IDLE_TIMEOUT_MINUTES=600",
	    "SPILLWAY_BACKEND_GIT=https://example.invalid/app.git",
	    "SPILLWAY_BACKEND_START=exec python3 -m app --port \"$PORT\"",
	    "SPILLWAY_BACKEND_ENV=A=1 \"B=two words\"", "SPILLWAY_LEASE_MINUTES=45", NULL};
	struct world w;
	struct vm_record v;
	unsigned char key[AGENT_KEY_LEN];
	char secret[STARTUP_SECRET_LEN + 1], *path, *text, *letters, *from;
	size_t len = 0;
	struct stat st;
	json_t *inst;

	world_init(&w, SCALE, NULL);
	recorded_trace(&w, "pressure-sustained.trace");
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_READY, 0);
	inst = instance(&w, &v);
	path = xasprintf("%s/data/startup-script.sh", getenv("SPILLWAY_SOURCE"));
	text = read_text(path);
	assert_string_equal(metadata(inst, "startup-script"), text);
	free(text);
	free(path);
	path = xasprintf("%s/data/spillway-agent.py", getenv("SPILLWAY_SOURCE"));
	text = read_text(path);
	assert_string_equal(metadata(inst, "spillway-agent"), text);
	free(text);
	free(path);
	assert_string_equal(
	    metadata(inst, "spillway-backend-git"), "https://example.invalid/app.git");
	assert_string_equal(metadata(inst, "spillway-backend-ref"), "main");
	assert_string_equal(
	    metadata(inst, "spillway-start"), "exec python3 -m app --port \"$PORT\"");
	assert_string_equal(metadata(inst, "spillway-env"), "A=1\nB=two words\n");
	assert_string_equal(metadata(inst, "spillway-port"), "8010");
	assert_string_equal(metadata(inst, "spillway-health-path"), "/health");
	assert_string_equal(metadata(inst, "spillway-agent-port"), "8011");
	assert_string_equal(metadata(inst, "spillway-lease-seconds"), "2700");
	assert_null(metadata(inst, "spillway-cloudsql")); /* unset: not sent */
	/* The secret is agent.key's (0600) for this VM's name. */
	path = xasprintf("%s/agent.key", w.d.state);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(read_file(path, 64, &text, &len), 0);
	assert_int_equal(len, AGENT_KEY_LEN);
	memcpy(key, text, AGENT_KEY_LEN);
	free(text);
	free(path);
	agent_secret(key, v.name, secret);
	assert_string_equal(metadata(inst, "spillway-agent-secret"), secret);
	json_decref(inst);

	/* Three passes after READY, each with its renewal. */
	{
		int64_t deadline = now_ms() + WAIT_MS;

		while (log_count(&w, "guest", "POST", "/spillway/lease") < 4) {
			if (now_ms() > deadline) {
				dmn_dump(&w.d);
				fail_msg("the daemon did not renew %s's lease", v.name);
			}
			sleep_ms(20);
		}
	}
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	letters = pass_letters(&w);
	from = strchr(letters, 'R');
	assert_non_null(from);
	assert_null(strchr(letters, 'X')); /* every renewal taken */
	/* From the first renewal on: one per pass, never two, never none (a last pass may be cut).
	 */
	assert_null(strstr(from, "RR"));
	{
		size_t n = strlen(from);

		while (n > 0 && from[n - 1] == 'L')
			n--;
		from[n] = '\0';
		if (strstr(from, "LL") != NULL)
			fail_msg("a pass without a renewal: %s", letters);
	}
	free(letters);

	/* The secret is in no log and not in the ledger. */
	{
		const char *files[] = {"daemon.log", "ledger.db", "ledger.db-wal"};

		for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
			text = NULL;
			path = xasprintf("%s/%s", w.d.state, files[i]);
			if (read_file(path, 64 << 20, &text, &len) == 0 &&
			    memmem(text, len, secret, strlen(secret)) != NULL)
				fail_msg("the lease secret is in %s", path);
			free(text);
			free(path);
		}
	}
	world_end(&w);
}

/*
 * Recorded bursts, six of 3 s with 2 s of calm between them: ELEVATED, never
 * HIGH; no VM, no insert. (The recorded 3 s spike alone stalls in one second
 * only and changes no level: tests/e2e/test_pressure_cli.c.)
 */
static void
test_bursts_no_vm(void **state)
{
	const char *env[] = {"SPILLWAY_PRESSURE_DWELL_S=5", NULL};
	struct world w;
	struct vm_record *list;
	struct insert ins[4];

	world_init(&w, SCALE, NULL);
	recorded_trace(&w, "pressure-sawtooth.trace");
	world_run(&w, NULL, env); /* calm for 5 s is NORMAL again, inside the trace */
	wait_event(&w, "pressure", "ELEVATED");
	wait_event(&w, "pressure", "NORMAL");
	assert_int_equal(vms(&w, &list), 0);
	free(list);
	assert_int_equal(inserts(&w, ins, 4), 0);
	world_end(&w);
}

/* A closed run of cost today, as if an earlier VM had spent it. */
static void
spend(struct world *w, double amount)
{
	struct reserve_rules rules = {1000, 100, 3600, 60};
	struct vm_record v;
	struct budget_plan plan;
	char why[256];
	double total;
	int64_t now = vnow(w),
	        start = now - 3600000 > cost_day_start(now) ? now - 3600000 : cost_day_start(now);

	memset(&v, 0, sizeof v);
	snprintf(v.name, sizeof v.name, "spillway-earlier");
	snprintf(v.zone, sizeof v.zone, ZONE_A);
	snprintf(v.request_id, sizeof v.request_id, "11111111-1111-4111-8111-111111111111");
	snprintf(v.machine_type, sizeof v.machine_type, "e2-highmem-4");
	v.spot = true;
	v.per_hour = amount * 3600000.0 / (double)(now - start);
	assert_int_equal(ledger_reserve(w->ledger, &v, &rules, start, &plan, why, sizeof why), 0);
	{
		int64_t from = start, to = now;

		assert_int_equal(ledger_close_cost(w->ledger, v.name, v.per_hour, &from, &to, true,
		                     false, &total),
		    0);
	}
	v.state = VM_TERMINATED;
	v.started_ms = start;
	v.ended_ms = now;
	assert_int_equal(ledger_save(w->ledger, &v, VM_REQUESTED, "earlier", now), 0);
	{
		double spent = -1;

		assert_int_equal(ledger_spent(w->ledger, now, &spent), 0);
		assert_true(fabs(spent - amount) < 1e-6);
	}
}

/* $0.05 of $5 left: a VM whose maxRunDuration is what $0.05 buys. */
static void
test_budget_shortens_run(void **state)
{
	struct world w;
	struct vm_record v;
	json_t *inst;
	int64_t run;
	char want[32];

	world_init(&w, SCALE, NULL);
	spend(&w, 4.95);
	recorded_trace(&w, "pressure-sustained.trace");
	world_run(&w, NULL, NULL);
	v = wait_state(&w, VM_BOOTING, 0);
	run = (int64_t)(0.05 / v.per_hour * 3600);
	assert_true(llabs(v.planned_run_s - run) <= 1);
	assert_true(v.planned_run_s < 3600);
	inst = instance(&w, &v);
	snprintf(want, sizeof want, "%lld", (long long)v.planned_run_s);
	assert_string_equal(jx_str(inst, "scheduling.maxRunDuration.seconds"), want);
	json_decref(inst);
	world_end(&w);
}

/* $0.01 left: less than the minimum useful run; refused with the numbers, nothing sent. */
static void
test_budget_refused(void **state)
{
	struct world w;
	struct ledger_event e;
	struct insert ins[4];

	world_init(&w, SCALE, NULL);
	spend(&w, 4.99);
	recorded_trace(&w, "pressure-sustained.trace");
	world_run(&w, NULL, NULL);
	e = wait_event(&w, "refusal", "budget: $0.0100 left of $5.00 today (spent $4.99");
	assert_non_null(strstr(e.detail, "minimum run of 15 min"));
	wait_event(&w, "pressure", "NORMAL");
	assert_int_equal(inserts(&w, ins, 4), 0);
	world_end(&w);
}

/*
 * An intent left in flight by an earlier run (the ledger says CREATING, the
 * insert never arrived) and GCP_VM_MAX_CONCURRENT=1: the daemon re-sends that
 * insert with its requestId and creates nothing else while it is in flight or
 * alive.
 */
static void
test_concurrency_counts_in_flight(void **state)
{
	const char *boot[] = {"--boot-ms", "240000", NULL}; /* 4 min in flight */
	const char *env[] = {"GCP_VM_MAX_CONCURRENT=1", "SPILLWAY_COOLDOWN_MINUTES=0", NULL};
	struct reserve_rules rules = {5, 1, 3600, 60};
	struct world w;
	struct vm_record v, got;
	struct budget_plan plan;
	struct insert ins[16];
	char why[256];
	size_t n;

	world_init(&w, SCALE, boot);
	memset(&v, 0, sizeof v);
	snprintf(v.name, sizeof v.name, "spillway-left-in-flight");
	snprintf(v.zone, sizeof v.zone, ZONE_A);
	snprintf(v.request_id, sizeof v.request_id, "22222222-2222-4222-8222-222222222222");
	snprintf(v.machine_type, sizeof v.machine_type, "e2-highmem-4");
	snprintf(v.components, sizeof v.components, "vision");
	v.spot = true;
	v.per_hour = 0.0595;
	assert_int_equal(ledger_reserve(w.ledger, &v, &rules, vnow(&w), &plan, why, sizeof why), 0);
	v.state = VM_CREATING;
	assert_int_equal(
	    ledger_save(w.ledger, &v, VM_REQUESTED, "sending the insert", vnow(&w)), 0);
	write_trace(w.trace, 1200, 0);
	world_run(&w, NULL, env);
	wait_event(&w, "refusal", "in-flight: 1 VM is already being created or booting");
	got = wait_vm(&w, v.name, VM_READY);
	assert_string_equal(got.request_id, v.request_id);
	wait_event(&w, "refusal", "concurrency: max concurrent 1 reached (1 alive)");
	n = inserts(&w, ins, 16);
	assert_true(n >= 1);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(ins[i].name, v.name);
		assert_string_equal(ins[i].request_id, v.request_id);
	}
	world_end(&w);
}

/* No capacity in the first zone: the VM is created in the second. */
static void
test_stockout_next_zone(void **state)
{
	const char *faults[] = {"--faults", "stockout=" ZONE_A, NULL};
	struct world w;
	struct vm_record v;

	world_init(&w, SCALE, faults);
	recorded_trace(&w, "pressure-sustained.trace");
	world_run(&w, NULL, NULL);
	v = wait_state(&w, VM_READY, 0);
	assert_string_equal(v.zone, ZONE_B);
	assert_int_equal(v.zones_tried, 2);
	wait_event(&w, "stockout", "zone " ZONE_A " has no capacity; trying " ZONE_B);
	world_end(&w);
}

/* Quota: FAILED with Google's message, and a backoff. */
static void
test_quota_fails_and_backs_off(void **state)
{
	const char *faults[] = {"--faults", "quota-cpus=2", NULL};
	struct world w;
	struct vm_record v, *list;
	struct ledger_event e;

	world_init(&w, SCALE, faults);
	write_trace(w.trace, 1200, 0);
	world_run(&w, NULL, NULL);
	v = wait_state(&w, VM_FAILED, 0);
	assert_non_null(strstr(v.end_reason, "QUOTA_EXCEEDED"));
	e = wait_event(&w, "backoff", "QUOTA_EXCEEDED");
	assert_string_equal(e.vm, v.name);
	/* Under pressure still: refused by the backoff, 5 min (at most) from the failure. */
	e = wait_event(&w, "refusal", "backoff:");
	assert_non_null(strstr(e.detail, v.name));
	assert_int_equal(vms(&w, &list), 1);
	free(list);
	world_end(&w);
}

/* Compute Engine preempts it now (the emulator's admin API). */
static void
preempt(struct world *w, const struct vm_record *v)
{
	char *url =
	    xasprintf("%s/emulator/v1/projects/spillway-emulator/zones/%s/instances/%s/preempt",
	        w->e.url, v->zone, v->name);

	json_decref(api(&w->e, "POST", url, "{}", 200));
	free(url);
}

/* Preempted within its first minute: nothing billed, a replacement in another zone. */
static void
test_preemption_replaced(void **state)
{
	const char *env[] = {"SPILLWAY_COOLDOWN_MINUTES=0", NULL};
	struct world w;
	struct vm_record v, gone, next;

	world_init(&w, 10, NULL); /* a slower clock: the preemption lands inside the minute */
	write_trace(w.trace, 1200, 0);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_BOOTING, 0);
	preempt(&w, &v);
	gone = wait_vm(&w, v.name, VM_PREEMPTED);
	if (gone.ended_ms - gone.started_ms < 60000)
		assert_true(gone.cost == 0);
	else
		assert_true(fabs(gone.cost -
		                gone.per_hour * (double)(gone.ended_ms - gone.started_ms) /
		                    3600000.0) < 1e-9);
	next = wait_state(&w, VM_BOOTING, 0);
	assert_string_not_equal(next.name, v.name);
	assert_string_not_equal(next.zone, v.zone);
	world_end(&w);
}

/* Wait for the emulator to have the instance in this status (NULL: gone), without faults. */
static void
wait_emu(struct world *w, const char *name, const char *status)
{
	int64_t deadline = now_ms() + WAIT_MS;

	for (;;) {
		json_t *all = emu_instances(&w->e), *it;
		char now[32] = "gone";
		size_t i;

		json_array_foreach (all, i, it)
			if (strcmp(jx_str(it, "name"), name) == 0)
				snprintf(now, sizeof now, "%s", jx_str(it, "status"));
		json_decref(all);
		if (strcmp(now, status != NULL ? status : "gone") == 0)
			return;
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("%s is %s in the emulator, not %s", name, now,
			    status != NULL ? status : "gone");
		}
		sleep_ms(20);
	}
}

static void
wait_vnow(struct world *w, int64_t t)
{
	while (vnow(w) < t)
		sleep_ms(20);
}

/*
 * A daemon without pressure, and a VM asked for through its control API
 * once it has listed and priced, the emulator's faults set just before.
 */
static struct vm_record
by_hand(struct world *w, const char *const *emu_args, const char *const *env, const char *faults)
{
	struct vm_record v;
	struct resp r;

	world_init(w, SCALE, emu_args);
	write_trace(w->trace, 0, 3600);
	world_run(w, NULL, env);
	/* A create is held until then, and a bad one only then refused. */
	dmn_call(&w->d, &r, "POST", "/v1/vms", "{\"components\": 5}");
	assert_int_equal(r.status, 400);
	resp_free(&r);
	emu_set_faults(&w->e, faults);
	dmn_call(&w->d, &r, "POST", "/v1/vms", "{\"components\": [\"vision\"]}");
	if (r.status != 201)
		fail_msg("POST /v1/vms: %ld %s", r.status, r.body);
	assert_int_equal(ledger_get(w->ledger, jx_str(r.json, "vm.name"), &v), 0);
	resp_free(&r);
	return v;
}

/* What the daemon could not see: no pass has listed anything since the create. */
static void
expect_unseen(struct world *w, const struct vm_record *v)
{
	struct vm_record now;

	assert_int_equal(ledger_get(w->ledger, v->name, &now), 0);
	if (now.state != VM_CREATING) {
		dmn_dump(&w->d);
		fail_msg(
		    "%s is %s, while every Compute call fails", v->name, vm_state_name(now.state));
	}
}

/*
 * Preempted while every Compute call fails (half the inserts take effect,
 * their answers lost), so before any pass saw it run: PREEMPTED once the
 * calls work, billed from its request on (more rather than less), not
 * FAILED or closed at nothing.
 */
static void
test_preempted_unseen(void **state)
{
	struct world w;
	struct vm_record v, gone;
	int64_t before, after;

	v = by_hand(&w, NULL, NULL, "error503=1");
	wait_emu(&w, v.name, "RUNNING");
	wait_vnow(&w, v.requested_ms + 90000); /* past its first minute, wherever it started */
	before = vnow(&w);
	preempt(&w, &v);
	after = vnow(&w);
	wait_emu(&w, v.name, NULL);
	expect_unseen(&w, &v);
	emu_set_faults(&w.e, "");
	gone = wait_vm(&w, v.name, VM_PREEMPTED);
	assert_int_equal(gone.started_ms, v.requested_ms);
	assert_in_range(gone.ended_ms, before - 1000, after + 1000);
	assert_true(gone.cost > 0);
	assert_true(
	    fabs(gone.cost -
	        gone.per_hour * (double)(gone.ended_ms - gone.started_ms) / 3600000.0) < 1e-9);
	world_end(&w);
}

/*
 * Past the create deadline, not listed: its insert is asked again with its
 * requestId, and the first operation, DONE, says it ran (deleted at its
 * maxRunDuration while no call worked): billed its whole planned run.
 */
static void
test_ran_unseen_past_deadline(void **state)
{
	const char *env[] = {
	    "SPILLWAY_CREATE_DEADLINE_MINUTES=1", "GCP_VM_MAX_LIFETIME_HOURS=0.1", NULL};
	struct world w;
	struct vm_record v, gone;

	v = by_hand(&w, NULL, env, "error503=1");
	assert_int_equal(v.planned_run_s, 360);
	wait_emu(&w, v.name, "RUNNING");
	wait_emu(&w, v.name, NULL);
	expect_unseen(&w, &v);
	assert_true(vnow(&w) > v.requested_ms + 60000);
	emu_set_faults(&w.e, "");
	gone = wait_vm(&w, v.name, VM_TERMINATED);
	assert_non_null(strstr(gone.end_reason, "maxRunDuration"));
	assert_int_equal(gone.started_ms, v.requested_ms);
	assert_int_equal(gone.ended_ms, v.requested_ms + 360000);
	assert_true(fabs(gone.cost - gone.per_hour * 0.1) < 1e-9);
	world_end(&w);
}

/*
 * Past the create deadline an insert that never took effect is sent again
 * only to learn so: it takes effect now, too late, and is deleted at once.
 */
static void
test_insert_too_late(void **state)
{
	const char *env[] = {"SPILLWAY_CREATE_DEADLINE_MINUTES=1", NULL};
	struct world w;
	struct vm_record v, gone;

	v = by_hand(&w, NULL, env, "rate429=1"); /* refused before any change */
	wait_vnow(&w, v.requested_ms + 90000);
	wait_emu(&w, v.name, NULL);
	expect_unseen(&w, &v);
	emu_set_faults(&w.e, "");
	gone = wait_vm(&w, v.name, VM_FAILED);
	assert_non_null(strstr(gone.end_reason, "only after the create deadline"));
	assert_true(gone.started_ms == 0 && gone.cost == 0);
	assert_true(deleted_at(&w, v.name) > 0);
	wait_emu(&w, v.name, NULL);
	world_end(&w);
}

/*
 * The same, but the VM boots before its delete comes: given up while it did
 * not run, it ran before the cloud took the delete, and is billed from the
 * moment its insert was DONE (it was FAILED at $0). The insert's answer comes
 * 300 ms after it took effect, so the 1 ms boot is over before the daemon
 * can send the delete, however busy the machine.
 */
static void
test_given_up_but_ran(void **state)
{
	const char *emu[] = {"--boot-ms", "1", NULL};
	const char *env[] = {"SPILLWAY_CREATE_DEADLINE_MINUTES=1", NULL};
	struct world w;
	struct vm_record v, gone;
	int64_t deleted;

	v = by_hand(&w, emu, env, "rate429=1");
	wait_vnow(&w, v.requested_ms + 90000);
	expect_unseen(&w, &v);
	emu_set_faults(&w.e, "latency=300");
	gone = wait_vm(&w, v.name, VM_FAILED);
	assert_non_null(strstr(gone.end_reason, "only after the create deadline"));
	deleted = deleted_at(&w, v.name);
	if (!(gone.started_ms > 0 && gone.started_ms <= deleted && gone.cost > 0)) {
		dmn_dump(&w.d);
		fail_msg("%s ran from %lld to its delete at %lld, billed $%.6f", v.name,
		    (long long)gone.started_ms, (long long)deleted, gone.cost);
	}
	assert_true(
	    fabs(gone.cost - cost_run(gone.per_hour, gone.started_ms, gone.ended_ms, true, false)) <
	    1e-12);
	world_end(&w);
}

/* Listed, but not RUNNING by the create deadline: deleted, FAILED, nothing billed. */
static void
test_not_running_by_deadline(void **state)
{
	const char *emu[] = {"--boot-ms", "600000", NULL};
	const char *env[] = {"SPILLWAY_CREATE_DEADLINE_MINUTES=1", NULL};
	struct world w;
	struct vm_record v, gone;

	v = by_hand(&w, emu, env, "");
	gone = wait_vm(&w, v.name, VM_FAILED);
	assert_non_null(strstr(gone.end_reason, "not running by the create deadline"));
	assert_true(gone.ended_ms >= v.requested_ms + 60000);
	assert_true(gone.started_ms == 0 && gone.cost == 0);
	wait_emu(&w, v.name, NULL);
	(void)wait_event(&w, "backoff", "create deadline");
	world_end(&w);
}

/* The planned run is over: deleted, though busy and under pressure. */
static void
test_lifetime(void **state)
{
	const char *env[] = {
	    "GCP_VM_MAX_LIFETIME_HOURS=0.1", "GCP_VM_IDLE_TIMEOUT_MINUTES=600", NULL};
	struct world w;
	struct vm_record v;
	json_t *inst;

	world_init(&w, SCALE, NULL);
	write_trace(w.trace, 1800, 0);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_READY, 0);
	assert_int_equal(v.planned_run_s, 360);
	inst = instance(&w, &v);
	assert_string_equal(jx_str(inst, "scheduling.maxRunDuration.seconds"), "360");
	json_decref(inst);
	v = wait_vm(&w, v.name, VM_TERMINATED);
	assert_non_null(strstr(v.end_reason, "lifetime"));
	world_end(&w);
}

/* The backend dies: UNHEALTHY, then replaced while the pressure holds. */
static void
test_unhealthy_replaced(void **state)
{
	const char *faults[] = {"--faults", "guest-die=1@30", NULL};
	const char *env[] = {"SPILLWAY_UNHEALTHY_MINUTES=1", "SPILLWAY_COOLDOWN_MINUTES=0",
	    "GCP_VM_IDLE_TIMEOUT_MINUTES=600", NULL};
	struct world w;
	struct vm_record v, next;

	world_init(&w, SCALE, faults);
	write_trace(w.trace, 1800, 0);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_READY, 0);
	wait_vm(&w, v.name, VM_UNHEALTHY);
	v = wait_vm(&w, v.name, VM_TERMINATED);
	assert_non_null(strstr(v.end_reason, "unhealthy"));
	next = wait_state(&w, VM_BOOTING, 0);
	assert_string_not_equal(next.name, v.name);
	world_end(&w);
}

/* The admin API: force the guest's health (-1: leave it) and record activity on its backend. */
static void
guest(struct world *w, const struct vm_record *v, int healthy, bool activity)
{
	char *url =
	    xasprintf("%s/emulator/v1/projects/spillway-emulator/zones/%s/instances/%s/guest",
	        w->e.url, v->zone, v->name);
	char body[64];

	snprintf(body, sizeof body, "{%s\"activity\": %s}",
	    healthy < 0   ? ""
	        : healthy ? "\"healthy\": true, "
	                  : "\"healthy\": false, ",
	    activity ? "true" : "false");
	json_decref(api(&w->e, "POST", url, body, 200));
	free(url);
}

/* Hooks that append "EVENT NAME REASON" to hooks.log in the state directory. */
struct hooks {
	char ready[512], gone[512], path[320];
};

static void
hooks_init(struct hooks *h, const struct world *w)
{
	snprintf(h->path, sizeof h->path, "%s/hooks.log", w->d.state);
	snprintf(h->ready, sizeof h->ready,
	    "SPILLWAY_HOOK_ON_READY=sh -c 'echo \"ready $SPILLWAY_VM_NAME $SPILLWAY_REASON\" >> "
	    "%s'",
	    h->path);
	snprintf(h->gone, sizeof h->gone,
	    "SPILLWAY_HOOK_ON_GONE=sh -c 'echo \"gone $SPILLWAY_VM_NAME $SPILLWAY_REASON\" >> %s'",
	    h->path);
}

/* Wait for the hooks to have said this; returns what they said so far. */
static char *
wait_hook(
    struct world *w, const struct hooks *h, const char *event, const char *name, const char *reason)
{
	char *want = xasprintf("%s %s %s", event, name, reason);
	int64_t deadline = now_ms() + WAIT_MS;

	for (;;) {
		char *text = read_text(h->path);

		if (text != NULL && strstr(text, want) != NULL) {
			free(want);
			return text;
		}
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("no hook line '%s' in %d s; hooks said:\n%s", want, WAIT_MS / 1000,
			    text != NULL ? text : "(nothing)");
		}
		free(text);
		sleep_ms(20);
	}
}

/*
 * A VM whose backend is in use outlives the idle timeout, though the local
 * pressure fell to NORMAL long ago (offloading is what calms it); once
 * nobody uses it, it is deleted as idle.
 */
static void
test_busy_vm_kept(void **state)
{
	const char *env[] = {"GCP_VM_IDLE_TIMEOUT_MINUTES=1", NULL};
	struct world w;
	struct vm_record v, now;
	struct ledger_event calm;

	world_init(&w, SCALE, NULL);
	write_trace(w.trace, 120, 3600);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_READY, 0);
	/* Used every 15 s (virtual) for 6 min: the pressure is NORMAL after 2 min. */
	while (vnow(&w) < v.ready_ms + 6 * 60000) {
		assert_int_equal(ledger_get(w.ledger, v.name, &now), 0);
		if (now.state != VM_READY) {
			dmn_dump(&w.d);
			fail_msg("%s in use, but %s: %s", v.name, vm_state_name(now.state),
			    now.end_reason);
		}
		guest(&w, &v, -1, true);
		sleep_ms(250);
	}
	calm = wait_event(&w, "pressure", "NORMAL");
	assert_true(calm.t_ms < vnow(&w) - 3 * 60000); /* three idle timeouts of calm, kept */
	v = wait_vm(&w, v.name, VM_TERMINATED);
	assert_non_null(strstr(v.end_reason, "idle: its backend unused for 1 min"));
	world_end(&w);
}

/*
 * UNHEALTHY is announced at once: on_gone with the reason, though the VM is
 * kept for daemon.unhealthy_minutes; healthy again, on_ready "recovered".
 */
static void
test_unhealthy_announced(void **state)
{
	const char *env[] = {
	    "SPILLWAY_UNHEALTHY_MINUTES=600", "GCP_VM_IDLE_TIMEOUT_MINUTES=600", NULL, NULL, NULL};
	struct world w;
	struct hooks h;
	struct vm_record v, now;
	char *said;

	world_init(&w, SCALE, NULL);
	hooks_init(&h, &w);
	env[2] = h.ready;
	env[3] = h.gone;
	write_trace(w.trace, 1800, 0);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_READY, 0);
	free(wait_hook(&w, &h, "ready", v.name, "created"));
	guest(&w, &v, 0, false);
	wait_vm(&w, v.name, VM_UNHEALTHY);
	said = wait_hook(&w, &h, "gone", v.name, "unhealthy: the health check failed");
	assert_int_equal(ledger_get(w.ledger, v.name, &now), 0);
	assert_int_equal(now.state, VM_UNHEALTHY); /* still there: said the moment it turned */
	free(said);
	guest(&w, &v, 1, false);
	wait_vm(&w, v.name, VM_READY);
	said = wait_hook(&w, &h, "ready", v.name, "recovered");
	assert_null(strstr(said, "adopted"));
	free(said);
	world_end(&w);
}

/*
 * A long install that moves is no boot to give up: the backend is up after
 * 4 min of installing, past a 1 min boot timeout, and the VM turns READY. A
 * guest whose install never moves is given up at the timeout.
 */
static void
test_long_install_kept(void **state)
{
	const char *slow[] = {"--guest-boot-ms", "240000", NULL};
	const char *stuck[] = {"--faults", "guest-unhealthy=1", NULL};
	const char *env[] = {"SPILLWAY_BOOT_TIMEOUT_MINUTES=1", "GCP_VM_IDLE_TIMEOUT_MINUTES=600",
	    "GCP_VM_HEALTH_CHECK_INTERVAL=15", NULL};
	struct world w;
	struct vm_record v;

	world_init(&w, SCALE, slow);
	write_trace(w.trace, 1800, 0);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_BOOTING, 0);
	v = wait_vm(&w, v.name, VM_READY);
	assert_true(v.ready_ms - v.started_ms >= 4 * 60000);
	world_end(&w);

	world_init(&w, SCALE, stuck);
	write_trace(w.trace, 1800, 0);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_BOOTING, 0);
	v = wait_vm(&w, v.name, VM_FAILED);
	assert_non_null(
	    strstr(v.end_reason, "boot timeout: not healthy, and its install has not moved"));
	world_end(&w);
}

/* SIGTERM: every VM deleted before the daemon exits 0. */
static void
test_sigterm_deletes_all(void **state)
{
	const char *env[] = {"GCP_VM_IDLE_TIMEOUT_MINUTES=600", NULL};
	struct world w;
	struct vm_record v;
	json_t *all;

	world_init(&w, SCALE, NULL);
	write_trace(w.trace, 1800, 0);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_READY, 0);
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	assert_int_equal(ledger_get(w.ledger, v.name, &v), 0);
	assert_int_equal(v.state, VM_TERMINATED);
	assert_non_null(strstr(v.end_reason, "shutdown"));
	all = emu_instances(&w.e);
	assert_int_equal(json_array_size(all), 0);
	json_decref(all);
	world_end(&w);
}

/* --keep leaves the VM; the next start takes it over, READY, without a new insert. */
static void
test_keep_then_adopt(void **state)
{
	const char *keep[] = {"--keep", NULL};
	const char *env[] = {"GCP_VM_IDLE_TIMEOUT_MINUTES=600", NULL, NULL, NULL};
	struct world w;
	struct hooks h;
	struct vm_record v, after;
	struct insert ins[8];
	json_t *inst, *all;
	char *said;

	world_init(&w, SCALE, NULL);
	hooks_init(&h, &w);
	env[1] = h.ready;
	env[2] = h.gone;
	recorded_trace(&w, "pressure-sustained.trace");
	world_run(&w, keep, env);
	v = wait_state(&w, VM_READY, 0);
	free(wait_hook(&w, &h, "ready", v.name, "created"));
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	inst = instance(&w, &v);
	assert_string_equal(jx_str(inst, "status"), "RUNNING");
	json_decref(inst);
	snprintf(w.trace, sizeof w.trace, "%s/calm.trace", w.d.state);
	write_trace(w.trace, 0, 60);
	world_run(&w, NULL, env);
	/* The new daemon's first pass renews the VM's lease: a new POST to its agent. */
	{
		int64_t deadline = now_ms() + WAIT_MS;
		size_t before = log_count(&w, "guest", "POST", "/spillway/lease");

		while (log_count(&w, "guest", "POST", "/spillway/lease") == before) {
			if (now_ms() > deadline) {
				dmn_dump(&w.d);
				fail_msg("the restarted daemon never checked %s", v.name);
			}
			sleep_ms(20);
		}
		assert_int_equal(ledger_get(w.ledger, v.name, &after), 0);
	}
	assert_int_equal(after.state, VM_READY);
	/* Kept, so not gone; taken over, so said again (the application may be new too). */
	said = wait_hook(&w, &h, "ready", v.name, "adopted");
	assert_null(strstr(said, "gone"));
	free(said);
	assert_int_equal(inserts(&w, ins, 8), 1);
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	all = emu_instances(&w.e);
	assert_int_equal(json_array_size(all), 0);
	json_decref(all);
	world_end(&w);
}

/* Our label, unknown to the ledger: ORPHANED, deleted after the grace; others' left alone. */
static void
test_orphan_deleted(void **state)
{
	const char *env[] = {"SPILLWAY_ORPHAN_GRACE_MINUTES=2", NULL};
	struct world w;
	struct vm_record v;
	json_t *body, *r, *all;
	char *url;

	world_init(&w, SCALE, NULL);
	url = compute_url(&w.e, ZONE_A, "instances");
	for (int i = 0; i < 2; i++) {
		char *text;

		body = instance_body(ZONE_A, i == 0 ? "spillway-stray" : "someone-elses",
		    "e2-highmem-4", true, "spillway-owner", i == 0 ? OWNER : "other");
		text = json_dumps(body, 0);
		r = api(&w.e, "POST", url, text, 200);
		json_decref(r);
		json_decref(body);
		free(text);
	}
	free(url);
	write_trace(w.trace, 0, 60);
	world_run(&w, NULL, env);
	v = wait_state(&w, VM_ORPHANED, 0);
	assert_string_equal(v.name, "spillway-stray");
	v = wait_vm(&w, "spillway-stray", VM_TERMINATED);
	assert_non_null(strstr(v.end_reason, "orphan"));
	assert_true(v.state_ms - v.requested_ms >= 2 * 60000);
	all = emu_instances(&w.e);
	assert_int_equal(json_array_size(all), 1);
	assert_string_equal(jx_str(json_array_get(all, 0), "name"), "someone-elses");
	json_decref(all);
	world_end(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sustained_one_vm),
	    cmocka_unit_test(test_startup_and_lease),
	    cmocka_unit_test(test_bursts_no_vm),
	    cmocka_unit_test(test_budget_shortens_run),
	    cmocka_unit_test(test_budget_refused),
	    cmocka_unit_test(test_concurrency_counts_in_flight),
	    cmocka_unit_test(test_stockout_next_zone),
	    cmocka_unit_test(test_quota_fails_and_backs_off),
	    cmocka_unit_test(test_preemption_replaced),
	    cmocka_unit_test(test_preempted_unseen),
	    cmocka_unit_test(test_ran_unseen_past_deadline),
	    cmocka_unit_test(test_insert_too_late),
	    cmocka_unit_test(test_given_up_but_ran),
	    cmocka_unit_test(test_not_running_by_deadline),
	    cmocka_unit_test(test_lifetime),
	    cmocka_unit_test(test_unhealthy_replaced),
	    cmocka_unit_test(test_busy_vm_kept),
	    cmocka_unit_test(test_unhealthy_announced),
	    cmocka_unit_test(test_long_install_kept),
	    cmocka_unit_test(test_sigterm_deletes_all),
	    cmocka_unit_test(test_keep_then_adopt),
	    cmocka_unit_test(test_orphan_deleted),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
