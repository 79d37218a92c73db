/*
 * The lifecycle manager on the scripted cloud (tests/lib/scripted.h), a real
 * ledger in a temporary directory and a manual clock: reconciliation for each
 * state and listing, vanished VMs, preemptions, orphans by policy, deadlines,
 * shutdown with and without keep, and answers that arrive out of order.
 * VMs here have no address, so no health call is made: health is
 * test_daemon's, and the rules that follow it are test_rules'.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "scripted.h"
#include "util/jx.h"
#include "util/xmalloc.h"
#include "vm/manager.h"

#define T0 INT64_C(1796119200000) /* 2026-12-01T10:00:00Z */

struct world {
	char dir[64];
	char *env[5];
	struct config cfg;
	struct clock clock;
	uv_loop_t loop;
	struct scripted *sc;
	struct ledger *ledger;
	json_t *catalog;
	struct manager *m;
	unsigned char key[32];
	const char *zones[4];
	bool keep, stopped;
	long open; /* the routes' connections to every VM, as the manager asks */
	int64_t last_use;
	bool gated;             /* a gate is given to the manager */
	enum manager_gate gate; /* what it answers */
	int asked, cancelled;   /* how often it was asked, and told a VM stays */
	bool insisted;          /* the last ask insisted */
	char events[4096]; /* "name STATE;" as the manager sent them */
};

static long
traffic(void *arg, const char *vm, int64_t *last_use_ms)
{
	struct world *w = arg;

	*last_use_ms = w->last_use;
	return w->open;
}

static enum manager_gate
gate(void *arg, const struct vm_record *v, bool insist, bool cancel, char *why, size_t whylen)
{
	struct world *w = arg;

	if (cancel) {
		w->cancelled++;
		return MANAGER_GO;
	}
	w->asked++;
	w->insisted = insist;
	snprintf(why, whylen, "vision's local copy cannot start: out of memory");
	return w->gate;
}

static void
on_event(const struct manager_event *e, void *arg)
{
	struct world *w = arg;
	size_t n = strlen(w->events);

	if (e->kind == MEV_STATE && e->vm != NULL)
		snprintf(w->events + n, sizeof w->events - n, "%s;", vm_state_name(e->vm->state));
}

/* Deliver what is due and run the loop until nothing moves. */
static void
settle(struct world *w)
{
	for (int i = 0; i < 1000; i++) {
		int n = scripted_deliver(w->sc);

		n += uv_run(&w->loop, UV_RUN_NOWAIT) != 0 && n > 0;
		if (n == 0)
			return;
	}
	fail_msg("the manager does not settle");
}

static void
advance(struct world *w, int64_t ms)
{
	clock_advance(&w->clock, ms * NS_PER_MS);
	settle(w);
}

static void
pass_now(struct world *w)
{
	manager_pass_now(w->m);
	settle(w);
}

static void
load(struct world *w, const char *const *sets)
{
	const char *base[24] = {
	    "gcp.project=spillway-test", "gcp.zone=us-central1-a", "daemon.owner=test", NULL};
	struct config_args a = {NULL, base};
	size_t n = 3;
	char *cause = NULL;

	for (size_t i = 0; sets != NULL && sets[i] != NULL && n < 23; i++)
		base[n++] = sets[i];
	base[n] = NULL;
	if (config_load(&w->cfg, &a, w->env, &cause) != 0)
		fail_msg("config_load: %s", cause);
}

static void
start(struct world *w)
{
	struct manager_opts o = {
	    .cfg = &w->cfg,
	    .clock = &w->clock,
	    .cloud = scripted_cloud(w->sc),
	    .ledger = w->ledger,
	    .catalog = json_object_get(w->catalog, "skus"),
	    .catalog_source = "the shipped prices",
	    .owner = "test",
	    .zones = w->zones,
	    .agent_key = w->key,
	    .keep = w->keep,
	    .traffic = traffic,
	    .traffic_arg = w,
	    .gate = w->gated ? gate : NULL,
	    .gate_arg = w,
	};
	char *cause = NULL;

	if (manager_new(&w->loop, &o, &w->m, &cause) != 0)
		fail_msg("manager_new: %s", cause);
	manager_on_event(w->m, on_event, w);
	manager_start(w->m);
	settle(w);
	assert_true(manager_settled(w->m));
}

static struct world *
world_new(const char *const *sets)
{
	struct world *w = xcalloc(1, sizeof *w);
	const char *src = getenv("SPILLWAY_SOURCE");
	char *path, *cause = NULL, *text;
	FILE *f;
	long len;

	snprintf(w->dir, sizeof w->dir, "/tmp/spillway-manager-XXXXXX");
	assert_non_null(mkdtemp(w->dir));
	w->env[0] = xasprintf("HOME=%s", w->dir);
	w->env[1] = xasprintf("XDG_CONFIG_HOME=%s/xdg", w->dir);
	w->env[2] = xasprintf("XDG_STATE_HOME=%s/state", w->dir);
	w->env[3] = xasprintf("XDG_RUNTIME_DIR=%s/run", w->dir);
	load(w, sets);
	clock_manual(&w->clock, T0 * NS_PER_MS);
	uv_loop_init(&w->loop);
	w->sc = scripted_new(&w->clock);
	w->zones[0] = "us-central1-a";
	w->zones[1] = "us-central1-b";
	w->zones[2] = "us-central1-c";
	if (ledger_open(w->dir, &w->ledger, &cause) != 0)
		fail_msg("ledger_open: %s", cause);
	path = xasprintf("%s/data/gce-prices.json", src != NULL ? src : ".");
	assert_non_null(f = fopen(path, "r"));
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = xmalloc((size_t)len + 1);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	if (jx_parse(text, (size_t)len, &w->catalog, &cause) != 0)
		fail_msg("%s: %s", path, cause);
	free(text);
	free(path);
	return w;
}

static void
on_stopped(void *arg)
{
	((struct world *)arg)->stopped = true;
}

static void
stop(struct world *w)
{
	manager_shutdown(w->m, on_stopped, w);
	for (int i = 0; i < 200 && !w->stopped; i++) {
		settle(w);
		if (!w->stopped)
			uv_run(&w->loop, UV_RUN_ONCE);
	}
	assert_true(w->stopped);
}

static void
world_free(struct world *w)
{
	char *cmd = xasprintf("rm -rf '%s'", w->dir);

	if (w->m != NULL) {
		if (!w->stopped)
			stop(w);
		manager_free(w->m);
	}
	uv_run(&w->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&w->loop), 0);
	ledger_close(w->ledger);
	scripted_free(w->sc);
	json_decref(w->catalog);
	config_free(&w->cfg);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	for (int i = 0; i < 4; i++)
		free(w->env[i]);
	free(w);
}

static struct vm_record
record(struct world *w, const char *name)
{
	struct vm_record r;

	assert_int_equal(ledger_get(w->ledger, name, &r), 0);
	return r;
}

static enum vm_state
state(struct world *w, const char *name)
{
	return record(w, name).state;
}

static void
by_hand(struct world *w, char *name, size_t size)
{
	struct decision d;

	if (manager_create(w->m, NULL, "test", NULL, name, size, &d) != 0)
		fail_msg("manager_create: %s", d.reason);
	settle(w);
}

/* A VM of a daemon before this one, as its ledger left it. */
static void
seed(struct world *w, const char *name, enum vm_state st, int64_t requested_ms)
{
	struct vm_record r = {.state = st, .spot = true, .per_hour = 0.0595};

	snprintf(r.name, sizeof r.name, "%s", name);
	snprintf(r.zone, sizeof r.zone, "us-central1-a");
	snprintf(r.request_id, sizeof r.request_id, "11111111-2222-4333-8444-%012d",
	    (int)(requested_ms % 1000000));
	snprintf(r.machine_type, sizeof r.machine_type, "e2-highmem-4");
	snprintf(r.components, sizeof r.components, "vision");
	r.planned_run_s = 3 * 3600;
	r.requested_ms = r.state_ms = requested_ms;
	if (st >= VM_BOOTING)
		r.started_ms = requested_ms + 30000;
	assert_int_equal(ledger_save(w->ledger, &r, -1, "seeded", requested_ms), 0);
}

/* --- creation --- */

static void
test_create_by_hand(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	start(w);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_BOOTING);
	assert_int_equal(scripted_made(w->sc), 1);
	assert_string_equal(w->events, "REQUESTED;CREATING;PROVISIONING;BOOTING;");
	pass_now(w);
	assert_int_equal(state(w, name), VM_BOOTING);
	world_free(w);
}

/* The insert took effect, its answer was lost: the next pass finds it; never a second VM. */
static void
test_lost_insert_answer(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	start(w);
	scripted_lose(w->sc, SC_CREATE, 1);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_CREATING);
	pass_now(w);
	assert_int_equal(state(w, name), VM_BOOTING);
	assert_int_equal(scripted_made(w->sc), 1);
	world_free(w);
}

/* Creating and absent from the list: the same requestId again, one VM. */
static void
test_absent_creating_sends_again(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	seed(w, "spillway-a", VM_CREATING, T0 - 60000);
	start(w);
	assert_int_equal(scripted_calls(w->sc, SC_CREATE), 1);
	assert_int_equal(state(w, "spillway-a"), VM_BOOTING);
	pass_now(w);
	assert_int_equal(scripted_made(w->sc), 1);
	world_free(w);
}

/* A stockout moves the insert to the next zone with a new requestId. */
static void
test_stockout_next_zone(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	start(w);
	scripted_fail(w->sc, SC_CREATE, CLOUD_STOCKOUT, 1);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_BOOTING);
	assert_string_equal(record(w, name).zone, "us-central1-b");
	assert_int_equal(record(w, name).zones_tried, 2);
	world_free(w);
}

/* --- listings --- */

static void
test_present_provisioning_runs(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	seed(w, "spillway-a", VM_PROVISIONING, T0 - 60000);
	scripted_put(w->sc, "spillway-a", "us-central1-a", "PROVISIONING", "", 0);
	start(w);
	assert_int_equal(state(w, "spillway-a"), VM_PROVISIONING);
	scripted_set_status(w->sc, "spillway-a", "RUNNING");
	pass_now(w);
	assert_int_equal(state(w, "spillway-a"), VM_BOOTING);
	world_free(w);
}

/* A list asked before a VM changed state is older news: it does not close the VM. */
static void
test_list_older_than_state(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	start(w);
	scripted_latency(w->sc, SC_LIST, 5000);
	manager_pass_now(w->m); /* the list is taken now, without the VM, and answered later */
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_BOOTING);
	advance(w, 5000);
	assert_int_equal(scripted_pending(w->sc, SC_LIST), 0);
	assert_int_equal(state(w, name), VM_BOOTING);
	/* The next list has it: still there. */
	scripted_latency(w->sc, SC_LIST, 0);
	pass_now(w);
	assert_int_equal(state(w, name), VM_BOOTING);
	world_free(w);
}

/* Deleted outside spillway: closed, and billed from its start. */
static void
test_vanished_booting(void **state_)
{
	struct world *w = world_new(NULL);
	struct vm_record r;

	(void)state_;
	seed(w, "spillway-a", VM_BOOTING, T0 - 600000);
	start(w); /* not listed: it is gone */
	r = record(w, "spillway-a");
	assert_int_equal(r.state, VM_TERMINATED);
	assert_string_equal(r.end_reason, "gone: deleted outside spillway");
	assert_true(r.cost > 0);
	world_free(w);
}

/* Preempted: PREEMPTED from the operation's time, and its zone is skipped. */
static void
test_preempted(void **state_)
{
	struct world *w = world_new(NULL);
	struct backoff b[8];
	size_t n;
	bool skipped = false;

	(void)state_;
	seed(w, "spillway-a", VM_BOOTING, T0 - 600000);
	scripted_put(w->sc, "spillway-a", "us-central1-a", "RUNNING", "", T0 - 570000);
	start(w);
	assert_int_equal(state(w, "spillway-a"), VM_BOOTING);
	advance(w, 30000);
	scripted_preempt(w->sc, "spillway-a", T0 + 10000);
	pass_now(w);
	assert_int_equal(state(w, "spillway-a"), VM_PREEMPTED);
	assert_int_equal(record(w, "spillway-a").ended_ms, T0 + 10000);
	n = manager_backoffs(w->m, b, 8);
	for (size_t i = 0; i < n; i++)
		skipped |=
		    strcmp(b[i].rule, "stockout") == 0 && strcmp(b[i].zone, "us-central1-a") == 0;
	assert_true(skipped);
	world_free(w);
}

/*
 * A Spot VM gone while the preemptions cannot be listed waits for a pass
 * that can list them; at the end of its planned run it is closed, billed the
 * run in full.
 */
static void
test_vanished_without_preemptions(void **state_)
{
	struct world *w = world_new(NULL);
	struct vm_record r;

	(void)state_;
	seed(w, "spillway-a", VM_BOOTING, T0 - 600000);
	scripted_fail(w->sc, SC_PREEMPTIONS, CLOUD_SERVER, 1000);
	start(w);
	assert_int_equal(state(w, "spillway-a"), VM_BOOTING);
	advance(w, 3 * 3600000);
	pass_now(w);
	r = record(w, "spillway-a");
	assert_int_equal(r.state, VM_TERMINATED);
	assert_string_equal(r.end_reason, "maxRunDuration reached: Compute Engine deleted it");
	assert_int_equal(r.ended_ms - r.started_ms, 3 * 3600000);
	world_free(w);
}

/* --- deadlines --- */

/* Past the deadline, listed and still not RUNNING: deleted, FAILED, and a backoff. */
static void
test_not_running_by_deadline(void **state_)
{
	struct world *w = world_new(NULL);
	struct backoff b[8];
	char name[64];
	bool failure = false;
	size_t n;

	(void)state_;
	start(w);
	scripted_insert_status(w->sc, "PROVISIONING");
	scripted_ops_pending(w->sc, true);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_PROVISIONING);
	scripted_ops_pending(w->sc, false); /* the delete is DONE at once */
	advance(w, 10 * 60000);
	pass_now(w);
	assert_int_equal(state(w, name), VM_FAILED);
	assert_false(scripted_exists(w->sc, name));
	n = manager_backoffs(w->m, b, 8);
	for (size_t i = 0; i < n; i++)
		failure |= strcmp(b[i].rule, "failure") == 0;
	assert_true(failure);
	world_free(w);
}

/* Past the deadline and not listed, its insert DONE long ago: it ran unseen, and is billed. */
static void
test_insert_done_past_deadline(void **state_)
{
	struct world *w = world_new(NULL);
	struct vm_record r;
	char name[64];

	(void)state_;
	start(w);
	scripted_lose(w->sc, SC_CREATE, 1);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_CREATING);
	scripted_remove(w->sc, name); /* it ran, and is gone */
	scripted_fail(w->sc, SC_LIST, CLOUD_SERVER, 1);
	advance(w, 10 * 60000);
	pass_now(w); /* no list */
	advance(w, 30000);
	pass_now(w); /* absent: its insert again, DONE long ago: it ran */
	advance(w, 30000);
	pass_now(w); /* BOOTING and absent: gone */
	r = record(w, name);
	assert_false(vm_state_alive(r.state));
	assert_int_equal(r.started_ms, r.requested_ms);
	assert_true(r.cost > 0);
	assert_int_equal(scripted_made(w->sc), 1);
	world_free(w);
}

/* Past the deadline, the insert sent again is not DONE: it takes effect too late. */
static void
test_insert_too_late(void **state_)
{
	struct world *w = world_new(NULL);
	struct vm_record r;
	char name[64];

	(void)state_;
	start(w);
	scripted_fail(w->sc, SC_CREATE, CLOUD_SERVER, 1);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_CREATING);
	assert_int_equal(scripted_made(w->sc), 0);
	advance(w, 10 * 60000);
	scripted_insert_status(w->sc, "PROVISIONING");
	scripted_ops_pending(w->sc, true);
	pass_now(w); /* absent: the insert again, which takes effect only now */
	scripted_finish(w->sc, name, T0 + 10 * 60000);
	pass_now(w);
	r = record(w, name);
	assert_int_equal(r.state, VM_FAILED);
	assert_false(scripted_exists(w->sc, name));
	world_free(w);
}

/* --- orphans --- */

static void
test_orphan_deleted_after_grace(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	scripted_put(w->sc, "spillway-stray", "us-central1-b", "RUNNING", "", T0 - 60000);
	start(w);
	assert_int_equal(state(w, "spillway-stray"), VM_ORPHANED);
	advance(w, 10 * 60000);
	pass_now(w);
	assert_int_equal(state(w, "spillway-stray"), VM_TERMINATED);
	assert_false(scripted_exists(w->sc, "spillway-stray"));
	world_free(w);
}

static void
test_orphan_adopted(void **state_)
{
	const char *sets[] = {"daemon.orphan_policy=adopt", NULL};
	struct world *w = world_new(sets);

	(void)state_;
	scripted_put(w->sc, "spillway-stray", "us-central1-b", "RUNNING", "", T0 - 60000);
	start(w);
	assert_int_equal(state(w, "spillway-stray"), VM_BOOTING);
	assert_true(scripted_exists(w->sc, "spillway-stray"));
	world_free(w);
}

static void
test_orphan_reported(void **state_)
{
	const char *sets[] = {"daemon.orphan_policy=report", NULL};
	struct world *w = world_new(sets);

	(void)state_;
	scripted_put(w->sc, "spillway-stray", "us-central1-b", "RUNNING", "", T0 - 60000);
	start(w);
	advance(w, 60 * 60000);
	pass_now(w);
	assert_int_equal(state(w, "spillway-stray"), VM_ORPHANED);
	assert_true(scripted_exists(w->sc, "spillway-stray"));
	world_free(w);
}

/* --- shutdown --- */

static void
test_shutdown_deletes(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	start(w);
	by_hand(w, name, sizeof name);
	stop(w);
	assert_int_equal(state(w, name), VM_TERMINATED);
	assert_false(scripted_exists(w->sc, name));
	world_free(w);
}

static void
test_shutdown_keeps(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	w->keep = true;
	start(w);
	by_hand(w, name, sizeof name);
	stop(w);
	assert_int_equal(state(w, name), VM_BOOTING);
	assert_true(scripted_exists(w->sc, name));
	world_free(w);
}

/* --- at rest --- */

/*
 * Nothing alive and calm: the next pass is the rest's sweep, minutes away;
 * a VM asked for brings it back to the interval, and pressure rising passes
 * at once.
 */
static void
test_rest(void **state_)
{
	struct world *w = world_new(NULL);
	struct pressure_snapshot snap = {.t_ms = T0, .level = PRESSURE_ELEVATED, .since_ms = T0};
	char name[64];
	int lists;

	(void)state_;
	start(w);
	assert_true(uv_backend_timeout(&w->loop) > 5 * 60000);
	/* At rest the ledger's connection is closed: its WAL is folded into the file. */
	{
		char *wal = xasprintf("%s-wal", ledger_path(w->ledger));

		assert_int_equal(access(wal, F_OK), -1);
		free(wal);
	}
	lists = scripted_calls(w->sc, SC_LIST);
	manager_pressure(w->m, &snap, PRESSURE_NORMAL);
	settle(w);
	assert_int_equal(scripted_calls(w->sc, SC_LIST), lists + 1);
	assert_true(uv_backend_timeout(&w->loop) <= 30000);
	snap.level = PRESSURE_NORMAL;
	manager_pressure(w->m, &snap, PRESSURE_ELEVATED);
	pass_now(w);
	assert_true(uv_backend_timeout(&w->loop) > 5 * 60000);
	/* Provisioning: no boot probe, so the next timer is the pass's. */
	scripted_insert_status(w->sc, "PROVISIONING");
	scripted_ops_pending(w->sc, true);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_PROVISIONING);
	assert_true(uv_backend_timeout(&w->loop) <= 30000);
	pass_now(w);
	assert_true(uv_backend_timeout(&w->loop) <= 30000);
	scripted_ops_pending(w->sc, false);
	scripted_finish(w->sc, name, T0); /* its insert DONE: the shutdown can delete it */
	world_free(w);
}

/* --- draining --- */

/* A READY VM of the last daemon, running, with the routes' connections open to it. */
static void
ready_vm(struct world *w, const char *name)
{
	seed(w, name, VM_READY, T0 - 600000);
	scripted_put(w->sc, name, "us-central1-a", "RUNNING", "", T0 - 570000);
	start(w);
	assert_int_equal(state(w, name), VM_READY);
}

/* Deleted with connections open: DRAINING until the last ends, then the delete. */
static void
test_drain_then_delete(void **state_)
{
	const char *sets[] = {"route.drain_s=3600", NULL};
	struct world *w = world_new(sets);
	struct vm_record r;

	(void)state_;
	w->open = 2;
	ready_vm(w, "spillway-a");
	assert_int_equal(manager_terminate(w->m, "spillway-a", "by hand"), 0);
	settle(w);
	assert_int_equal(state(w, "spillway-a"), VM_DRAINING);
	assert_int_equal(scripted_calls(w->sc, SC_DESTROY), 0);
	/* Still open: nothing yet, passes and all. */
	manager_drained(w->m, "spillway-a");
	pass_now(w);
	assert_int_equal(state(w, "spillway-a"), VM_DRAINING);
	w->open = 0;
	manager_drained(w->m, "spillway-a");
	settle(w);
	r = record(w, "spillway-a");
	assert_int_equal(r.state, VM_TERMINATED);
	assert_string_equal(r.end_reason, "by hand (its connections ended)");
	assert_non_null(strstr(w->events, "DRAINING;TERMINATING;TERMINATED;"));
	world_free(w);
}

/* Past route.drain_s the delete goes anyway; with nothing open there is no DRAINING. */
static void
test_drain_deadline(void **state_)
{
	const char *sets[] = {"route.drain_s=0.2", NULL};
	struct world *w = world_new(sets);

	(void)state_;
	w->open = 1;
	ready_vm(w, "spillway-a");
	assert_int_equal(manager_terminate(w->m, "spillway-a", "by hand"), 0);
	settle(w);
	assert_int_equal(state(w, "spillway-a"), VM_DRAINING);
	usleep(250000); /* the drain timer, in real time as the manual clock has it */
	advance(w, 250);
	settle(w); /* the delete the timer sent, answered */
	assert_int_equal(state(w, "spillway-a"), VM_TERMINATED);
	assert_string_equal(record(w, "spillway-a").end_reason,
	    "by hand (route.drain_s over with 1 connection open)");
	world_free(w);

	w = world_new(sets);
	ready_vm(w, "spillway-b");
	assert_int_equal(manager_terminate(w->m, "spillway-b", "by hand"), 0);
	settle(w);
	assert_int_equal(state(w, "spillway-b"), VM_TERMINATED);
	assert_null(strstr(w->events, "DRAINING"));
	world_free(w);
}

/* Draining when the last daemon stopped: its connections went with it, so it is deleted now. */
static void
test_draining_taken_over(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	seed(w, "spillway-a", VM_DRAINING, T0 - 600000);
	scripted_put(w->sc, "spillway-a", "us-central1-a", "RUNNING", "", T0 - 570000);
	start(w);
	settle(w);
	assert_int_equal(state(w, "spillway-a"), VM_TERMINATED);
	assert_string_equal(record(w, "spillway-a").end_reason,
	    "it was draining when spillway stopped (its connections ended)");
	world_free(w);
}

/* --- out of order --- */

/* Terminated while its insert is unanswered: the delete follows the answer, never before. */
static void
test_terminate_during_insert(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	start(w);
	scripted_latency(w->sc, SC_CREATE, 3000);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, name), VM_CREATING);
	assert_int_equal(manager_terminate(w->m, name, "by hand"), 0);
	assert_int_equal(scripted_calls(w->sc, SC_DESTROY), 0);
	advance(w, 3000);
	assert_int_equal(state(w, name), VM_TERMINATED);
	assert_false(scripted_exists(w->sc, name));
	world_free(w);
}

/* The delete is answered before an older list that still has the VM: no orphan. */
static void
test_delete_before_older_list(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	start(w);
	by_hand(w, name, sizeof name);
	scripted_latency(w->sc, SC_LIST, 5000);
	manager_pass_now(w->m); /* this list has the VM */
	assert_int_equal(manager_terminate(w->m, name, "by hand"), 0);
	settle(w);
	assert_int_equal(state(w, name), VM_TERMINATED);
	advance(w, 5000);
	assert_int_equal(state(w, name), VM_TERMINATED);
	assert_string_equal(record(w, name).end_reason, "by hand");
	assert_null(strstr(w->events, "ORPHANED"));
	world_free(w);
}

/* Two answers for one VM out of their order: the get's (older) after the pass's list. */
static void
test_get_after_list(void **state_)
{
	struct world *w = world_new(NULL);
	char name[64];

	(void)state_;
	start(w);
	scripted_insert_ip(w->sc, "", NULL);
	scripted_latency(w->sc, SC_GET, 10000);
	by_hand(w, name, sizeof name);
	assert_int_equal(scripted_pending(w->sc, SC_GET), 1);
	pass_now(w); /* busy with its get: left alone */
	assert_int_equal(state(w, name), VM_BOOTING);
	assert_int_equal(scripted_deliver_one(w->sc, SC_GET), 1);
	settle(w);
	pass_now(w);
	assert_int_equal(state(w, name), VM_BOOTING);
	world_free(w);
}

/* --- the gate: a READY VM goes once its components are served elsewhere --- */

static size_t
events_of(struct world *w, const char *vm, const char *kind)
{
	struct ledger_event *list;
	size_t n, k = 0;

	assert_int_equal(ledger_events(w->ledger, vm, 100, &list, &n), 0);
	for (size_t i = 0; i < n; i++)
		k += strcmp(list[i].kind, kind) == 0;
	free(list);
	return k;
}

/* By hand: the gate is asked (insisting); the VM stays READY until it opens. */
static void
test_gate_by_hand(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	w->gated = true;
	w->gate = MANAGER_WAIT;
	ready_vm(w, "spillway-a");
	assert_int_equal(manager_terminate(w->m, "spillway-a", "by hand"), 0);
	settle(w);
	assert_true(w->asked == 1 && w->insisted);
	assert_int_equal(state(w, "spillway-a"), VM_READY);
	assert_int_equal(scripted_calls(w->sc, SC_DESTROY), 0);
	/* A pass does not cancel what was asked by hand. */
	pass_now(w);
	assert_int_equal(state(w, "spillway-a"), VM_READY);
	assert_int_equal(w->cancelled, 0);
	w->gate = MANAGER_GO;
	manager_gate_open(w->m, "spillway-a");
	settle(w);
	assert_int_equal(record(w, "spillway-a").state, VM_TERMINATED);
	assert_string_equal(record(w, "spillway-a").end_reason, "by hand");
	world_free(w);
}

/*
 * Idle, and the gate keeps it: the VM stays, said once however many passes
 * ask; used again, the rule no longer asks and the gate hears it stays.
 */
static void
test_gate_keeps_idle(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	w->gated = true;
	w->gate = MANAGER_KEEP;
	w->last_use = T0 - 2 * 3600000;
	ready_vm(w, "spillway-a");
	pass_now(w);
	pass_now(w);
	assert_true(w->asked >= 2 && !w->insisted);
	assert_int_equal(state(w, "spillway-a"), VM_READY);
	assert_int_equal(events_of(w, "spillway-a", "kept"), 1);
	{
		struct ledger_event *list;
		size_t n;

		assert_int_equal(ledger_events(w->ledger, "spillway-a", 1, &list, &n), 0);
		assert_string_equal(list[0].detail,
		    "kept though idle: its backend unused for 30 min: vision's local copy "
		    "cannot start: out of memory");
		free(list);
	}
	w->open = 1;
	pass_now(w);
	assert_int_equal(w->cancelled, 1);
	assert_int_equal(state(w, "spillway-a"), VM_READY);
	/* Idle again, and now its copy serves: it goes. */
	w->open = 0;
	w->gate = MANAGER_GO;
	pass_now(w);
	assert_int_equal(state(w, "spillway-a"), VM_TERMINATED);
	world_free(w);
}

/* Shutdown waits for the gate, within the shutdown timeout; a preemption never does. */
static void
test_gate_shutdown_and_preemption(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	w->gated = true;
	w->gate = MANAGER_WAIT;
	ready_vm(w, "spillway-a");
	manager_shutdown(w->m, on_stopped, w);
	settle(w);
	assert_true(w->asked == 1 && w->insisted);
	assert_false(w->stopped);
	assert_int_equal(state(w, "spillway-a"), VM_READY);
	w->gate = MANAGER_GO;
	manager_gate_open(w->m, "spillway-a");
	for (int i = 0; i < 200 && !w->stopped; i++) {
		settle(w);
		if (!w->stopped)
			uv_run(&w->loop, UV_RUN_ONCE);
	}
	assert_true(w->stopped);
	assert_int_equal(state(w, "spillway-a"), VM_TERMINATED);
	world_free(w);

	w = world_new(NULL);
	w->gated = true;
	w->gate = MANAGER_KEEP;
	ready_vm(w, "spillway-b");
	scripted_preempt(w->sc, "spillway-b", T0);
	pass_now(w);
	assert_int_equal(w->asked, 0);
	assert_int_equal(state(w, "spillway-b"), VM_PREEMPTED);
	world_free(w);
}

/* --- baking (docs/images.md) --- */

#define BAKE_RID "99999999-2222-4333-8444-000000000001"

/* A bake's VM as a daemon killed while it was IMAGING left it, with its image BAKING. */
static void
seed_bake(struct world *w, const char *vm, const char *image)
{
	struct vm_record r;
	struct image_record im = {.state = IMAGE_BAKING, .requested_ms = T0 - 600000};

	seed(w, vm, VM_IMAGING, T0 - 600000);
	r = record(w, vm);
	snprintf(r.purpose, sizeof r.purpose, "bake");
	r.components[0] = '\0';
	assert_int_equal(ledger_save(w->ledger, &r, (int)r.state, NULL, T0 - 60000), 0);
	snprintf(im.name, sizeof im.name, "%s", image);
	snprintf(im.family, sizeof im.family, "spillway-backend");
	snprintf(im.vm, sizeof im.vm, "%s", vm);
	snprintf(im.install_hash, sizeof im.install_hash, "0123456789abcdef0123456789abcdef");
	snprintf(im.request_id, sizeof im.request_id, BAKE_RID);
	assert_int_equal(ledger_image_save(w->ledger, &im), 0);
}

static struct image_record
image_rec(struct world *w, const char *name)
{
	struct image_record im;

	assert_int_equal(ledger_image_get(w->ledger, name, &im), 0);
	return im;
}

/* Killed while IMAGING, the VM still running: stopped, imaged once, recorded, deleted. */
static void
test_bake_resumes_imaging(void **state_)
{
	struct world *w = world_new(NULL);
	struct image_record im;
	struct vm_record r;

	(void)state_;
	seed_bake(w, "spillway-bake", "spillway-backend-bake");
	scripted_put(w->sc, "spillway-bake", "us-central1-a", "RUNNING", "", T0 - 570000);
	/* The image's insert takes effect and its answer is lost: the next one is the same. */
	scripted_lose(w->sc, SC_IMAGE_CREATE, 1);
	start(w);
	assert_int_equal(scripted_calls(w->sc, SC_POWER), 1);
	assert_string_equal(scripted_status(w->sc, "spillway-bake"), "TERMINATED");
	assert_int_equal(state(w, "spillway-bake"), VM_IMAGING);
	assert_int_equal(image_rec(w, "spillway-backend-bake").state, IMAGE_BAKING);
	pass_now(w);
	assert_int_equal(scripted_calls(w->sc, SC_IMAGE_CREATE), 2);
	assert_int_equal(scripted_images_made(w->sc), 1);
	im = image_rec(w, "spillway-backend-bake");
	assert_int_equal(im.state, IMAGE_READY);
	assert_true(im.ready_ms >= T0);
	/* Its size is the listing's archive size, its price the catalog's Storage Image. */
	assert_true(im.size_gib > 1.99 && im.size_gib < 2.01);
	assert_true(im.per_gib_month > 0.049 && im.per_gib_month < 0.051);
	r = record(w, "spillway-bake");
	assert_int_equal(r.state, VM_TERMINATED);
	assert_non_null(strstr(r.end_reason, "baked: image spillway-backend-bake"));
	assert_false(scripted_exists(w->sc, "spillway-bake"));
	assert_true(scripted_image_exists(w->sc, "spillway-backend-bake"));
	/* Its storage counts in the day's spend from READY on. */
	{
		double before, after;

		assert_int_equal(ledger_spent(w->ledger, clock_now_ms(&w->clock), &before), 0);
		advance(w, 3600000);
		assert_int_equal(ledger_spent(w->ledger, clock_now_ms(&w->clock), &after), 0);
		assert_true(
		    after - before > 0.9 * 2 * 0.05 / 730 && after - before < 1.1 * 2 * 0.05 / 730);
	}
	world_free(w);
}

/* Stopped before the crash: the image is asked at once, no second stop. */
static void
test_bake_stopped_is_imaged(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	seed_bake(w, "spillway-bake", "spillway-backend-bake");
	scripted_put(w->sc, "spillway-bake", "us-central1-a", "TERMINATED", "", T0 - 570000);
	start(w);
	assert_int_equal(scripted_calls(w->sc, SC_POWER), 0);
	assert_int_equal(image_rec(w, "spillway-backend-bake").state, IMAGE_READY);
	assert_int_equal(state(w, "spillway-bake"), VM_TERMINATED);
	world_free(w);
}

/* An image Compute Engine refuses: FAILED with why, deleted in case, and the VM deleted. */
static void
test_bake_fails_cleanly(void **state_)
{
	struct world *w = world_new(NULL);
	struct image_record im;

	(void)state_;
	seed_bake(w, "spillway-bake", "spillway-backend-bake");
	scripted_put(w->sc, "spillway-bake", "us-central1-a", "TERMINATED", "", T0 - 570000);
	scripted_fail(w->sc, SC_IMAGE_CREATE, CLOUD_INVALID, 1);
	start(w);
	im = image_rec(w, "spillway-backend-bake");
	assert_int_equal(im.state, IMAGE_FAILED);
	assert_non_null(strstr(im.why, "scripted"));
	assert_int_equal(scripted_calls(w->sc, SC_IMAGE_DELETE), 1);
	assert_int_equal(state(w, "spillway-bake"), VM_TERMINATED);
	assert_non_null(strstr(record(w, "spillway-bake").end_reason, "bake failed"));
	assert_false(scripted_exists(w->sc, "spillway-bake"));
	world_free(w);
}

/* The bake's VM gone (deleted outside, preempted): its image failed, nothing left behind. */
static void
test_bake_vm_vanished(void **state_)
{
	struct world *w = world_new(NULL);

	(void)state_;
	seed_bake(w, "spillway-bake", "spillway-backend-bake");
	start(w);
	assert_int_equal(state(w, "spillway-bake"), VM_TERMINATED);
	assert_int_equal(image_rec(w, "spillway-backend-bake").state, IMAGE_FAILED);
	assert_int_equal(scripted_images_made(w->sc), 0);
	world_free(w);
}

/* At start: a failed bake's image deleted, an unknown one taken in, a vanished one DELETED. */
static void
test_bake_sweep(void **state_)
{
	struct world *w = world_new(NULL);
	struct image_record failed = {.state = IMAGE_FAILED, .requested_ms = T0 - 7200000},
	                    gone = {.state = IMAGE_READY,
	                        .requested_ms = T0 - 7200000,
	                        .ready_ms = T0 - 7000000,
	                        .size_gib = 2,
	                        .per_gib_month = 0.05};
	struct image_record found;

	(void)state_;
	snprintf(failed.name, sizeof failed.name, "spillway-backend-failed");
	snprintf(gone.name, sizeof gone.name, "spillway-backend-gone");
	assert_int_equal(ledger_image_save(w->ledger, &failed), 0);
	assert_int_equal(ledger_image_save(w->ledger, &gone), 0);
	scripted_put_image(w->sc, "spillway-backend-failed", "spillway-backend", "aa");
	scripted_put_image(w->sc, "spillway-backend-found", "spillway-backend", "bb");
	start(w);
	assert_false(scripted_image_exists(w->sc, "spillway-backend-failed"));
	assert_true(scripted_image_exists(w->sc, "spillway-backend-found"));
	found = image_rec(w, "spillway-backend-found");
	assert_int_equal(found.state, IMAGE_READY);
	assert_string_equal(found.install_hash, "bb");
	assert_int_equal(image_rec(w, "spillway-backend-gone").state, IMAGE_DELETED);
	assert_true(image_rec(w, "spillway-backend-gone").deleted_ms >= T0);
	world_free(w);
}

/* Under the money rules; one at a time; nothing to bake without a backend to install. */
static void
test_bake_rules(void **state_)
{
	const char *git[] = {
	    "backend.git=https://example.com/app.git", "backend.start=python3 -m app", NULL};
	const char *poor[] = {"backend.git=https://example.com/app.git",
	    "backend.start=python3 -m app", "gcp.daily_budget=0", NULL};
	struct world *w = world_new(NULL);
	struct decision d;
	char name[64], again[64], buf[128];
	struct image_record im;

	(void)state_;
	start(w);
	assert_int_equal(manager_bake(w->m, "spillway-backend", name, sizeof name, &d), -EINVAL);
	assert_non_null(strstr(d.reason, "backend.git"));
	world_free(w);

	w = world_new(poor);
	start(w);
	assert_int_equal(manager_bake(w->m, "spillway-backend", name, sizeof name, &d), -EAGAIN);
	assert_string_equal(d.rule, "budget");
	world_free(w);

	w = world_new(git);
	start(w);
	assert_string_equal(manager_boot_image(w->m, buf, sizeof buf),
	    "projects/debian-cloud/global/images/family/debian-12");
	assert_int_equal(manager_bake(w->m, "spillway-backend", name, sizeof name, &d), 0);
	settle(w);
	assert_int_equal(scripted_made(w->sc), 1);
	assert_string_equal(record(w, name).purpose, "bake");
	assert_int_equal(ledger_image_of(w->ledger, name, &im), 0);
	assert_int_equal(im.state, IMAGE_BAKING);
	assert_int_equal(strlen(im.install_hash), 32);
	assert_int_equal(manager_bake(w->m, "spillway-backend", again, sizeof again, &d), -EBUSY);
	/* A bake's VM is no reason for pressure to wait: nothing in flight for decide(). */
	{
		struct decision now;

		manager_decide(w->m, &now);
		assert_string_not_equal(now.rule, "in-flight");
	}
	world_free(w);
}

/* daemon.image = baked: the family once one is READY, the base until then. */
static void
test_boot_image(void **state_)
{
	const char *baked[] = {"daemon.image=baked", NULL};
	struct world *w = world_new(baked);
	struct image_record im = {.state = IMAGE_READY, .requested_ms = T0, .ready_ms = T0};
	char buf[128];

	(void)state_;
	start(w);
	assert_string_equal(manager_boot_image(w->m, buf, sizeof buf),
	    "projects/debian-cloud/global/images/family/debian-12");
	snprintf(im.name, sizeof im.name, "other-1");
	snprintf(im.family, sizeof im.family, "other");
	assert_int_equal(ledger_image_save(w->ledger, &im), 0);
	assert_string_equal(manager_boot_image(w->m, buf, sizeof buf),
	    "projects/debian-cloud/global/images/family/debian-12");
	snprintf(im.name, sizeof im.name, "spillway-backend-1");
	snprintf(im.family, sizeof im.family, "spillway-backend");
	assert_int_equal(ledger_image_save(w->ledger, &im), 0);
	assert_string_equal(
	    manager_boot_image(w->m, buf, sizeof buf), "global/images/family/spillway-backend");
	world_free(w);
}

/* --- the warm pool (docs/pool.md) --- */

/* The VMs the ledger has alive. */
static size_t
vms_of(struct world *w, struct vm_record **list)
{
	size_t n;

	assert_int_equal(ledger_list(w->ledger, NULL, 0, list, &n), 0);
	return n;
}

/* A VM of the pool as a daemon before this one left it: warm, stopped or suspended. */
static void
seed_pooled(struct world *w, const char *name, bool suspended, int64_t since)
{
	struct vm_record r;

	seed(w, name, VM_POOLED, since - 600000);
	r = record(w, name);
	snprintf(r.purpose, sizeof r.purpose, "pool");
	r.components[0] = '\0';
	r.started_ms = 0;
	r.suspended = suspended;
	r.pool_since_ms = since;
	r.wait_per_hour = 0.0027;
	assert_int_equal(ledger_save(w->ledger, &r, (int)r.state, NULL, since), 0);
	scripted_put(w->sc, name, "us-central1-a", suspended ? "SUSPENDED" : "TERMINATED", "", 0);
}

/* Asked for a VM: the pooled one resumed (no insert), its run reserved, its wait billed. */
static void
test_pool_taken(void **state_)
{
	const char *pool[] = {"pool.size=1", NULL};
	struct world *w = world_new(pool);
	struct vm_record r;
	char name[64];

	(void)state_;
	seed_pooled(w, "spillway-pooled", true, T0 - 3600000);
	start(w);
	assert_int_equal(state(w, "spillway-pooled"), VM_POOLED);
	assert_int_equal(scripted_made(w->sc), 0); /* the pool is full: nothing made */
	by_hand(w, name, sizeof name);
	assert_string_equal(name, "spillway-pooled");
	assert_int_equal(scripted_calls(w->sc, SC_POWER), 1);
	assert_string_equal(scripted_status(w->sc, name), "RUNNING");
	r = record(w, name);
	assert_int_equal(r.state, VM_BOOTING);
	assert_string_equal(r.purpose, "");
	assert_string_equal(r.components, "vision,chatbots");
	assert_true(r.reserved > 0);
	/* An hour in the pool at $0.0027/h, billed once. */
	assert_true(r.cost > 0.0026 && r.cost < 0.0028);
	assert_true(r.billed_ms == T0);
	assert_non_null(strstr(w->events, "STARTING;BOOTING;"));
	/* The pass after: one more made, to fill the pool again. */
	pass_now(w);
	assert_int_equal(scripted_made(w->sc), 1);
	{
		struct vm_record *list;
		size_t n = vms_of(w, &list), pooled = 0;

		for (size_t i = 0; i < n; i++)
			pooled +=
			    strcmp(list[i].purpose, "pool") == 0 && vm_state_alive(list[i].state);
		assert_int_equal(pooled, 1);
		free(list);
	}
	world_free(w);
}

/* Its start fails (no capacity): back in the pool, and a VM inserted instead, elsewhere. */
static void
test_pool_start_fails(void **state_)
{
	struct world *w = world_new((const char *[]){"pool.size=1", NULL});
	char name[64];

	(void)state_;
	seed_pooled(w, "spillway-pooled", false, T0 - 60000);
	start(w);
	scripted_fail(w->sc, SC_POWER, CLOUD_STOCKOUT, 1);
	by_hand(w, name, sizeof name);
	assert_int_equal(state(w, "spillway-pooled"), VM_POOLED);
	assert_int_equal(scripted_made(w->sc), 0);
	pass_now(w); /* the pressure is by hand here: asked again */
	by_hand(w, name, sizeof name);
	assert_string_not_equal(name, "spillway-pooled");
	assert_int_equal(scripted_made(w->sc), 1);
	assert_string_equal(record(w, name).zone, "us-central1-b");
	world_free(w);
}

/* Killed while taking it: the same start again (one requestId), then BOOTING. */
static void
test_pool_starting_resumed(void **state_)
{
	struct world *w = world_new((const char *[]){"pool.size=1", NULL});
	struct vm_record r;

	(void)state_;
	seed_pooled(w, "spillway-pooled", false, T0 - 60000);
	r = record(w, "spillway-pooled");
	r.state = VM_STARTING;
	r.purpose[0] = '\0';
	assert_int_equal(ledger_save(w->ledger, &r, VM_POOLED, "taken", T0 - 1000), 0);
	start(w);
	assert_int_equal(scripted_calls(w->sc, SC_POWER), 1);
	assert_int_equal(state(w, "spillway-pooled"), VM_BOOTING);
	/* Killed while stopping it for the pool: stopped, it is POOLED; its warm-up billed. */
	world_free(w);
	w = world_new((const char *[]){"pool.size=1", NULL});
	seed(w, "spillway-warm", VM_POOLING, T0 - 600000);
	r = record(w, "spillway-warm");
	snprintf(r.purpose, sizeof r.purpose, "pool");
	assert_int_equal(ledger_save(w->ledger, &r, VM_POOLING, NULL, T0 - 60000), 0);
	scripted_put(w->sc, "spillway-warm", "us-central1-a", "TERMINATED", "", 0);
	start(w);
	r = record(w, "spillway-warm");
	assert_int_equal(r.state, VM_POOLED);
	assert_true(r.cost > 0); /* its warm-up, from its start to now */
	assert_int_equal(r.started_ms, 0);
	assert_true(r.wait_per_hour > 0);
	world_free(w);
}

/* Gone from the pool (deleted outside): its wait billed, and another made. */
static void
test_pool_vanished_replaced(void **state_)
{
	const char *pool[] = {"pool.size=1", NULL};
	struct world *w = world_new(pool);
	struct vm_record r;

	(void)state_;
	seed_pooled(w, "spillway-pooled", false, T0 - 7200000);
	scripted_remove(w->sc, "spillway-pooled");
	start(w);
	r = record(w, "spillway-pooled");
	assert_int_equal(r.state, VM_TERMINATED);
	assert_non_null(strstr(r.end_reason, "gone from the pool"));
	assert_true(r.cost > 2 * 0.0027 * 0.99 && r.cost < 2 * 0.0027 * 1.01);
	assert_int_equal(scripted_made(w->sc), 1);
	world_free(w);
}

/* Shutdown keeps the pool stopped; --drain-pool deletes it, its wait billed. */
static void
test_pool_shutdown(void **state_)
{
	struct world *w = world_new((const char *[]){"pool.size=1", NULL});

	(void)state_;
	seed_pooled(w, "spillway-pooled", true, T0 - 60000);
	start(w);
	stop(w);
	assert_int_equal(state(w, "spillway-pooled"), VM_POOLED);
	assert_true(scripted_exists(w->sc, "spillway-pooled"));
	world_free(w);

	w = world_new((const char *[]){"pool.size=1", NULL});
	seed_pooled(w, "spillway-pooled", true, T0 - 3600000);
	start(w);
	manager_set_drain_pool(w->m, true);
	stop(w);
	assert_int_equal(state(w, "spillway-pooled"), VM_TERMINATED);
	assert_false(scripted_exists(w->sc, "spillway-pooled"));
	assert_true(record(w, "spillway-pooled").cost > 0.0026);
	world_free(w);
}

/* pool.size lowered (SIGHUP): the pooled VMs beyond it are deleted, their waits billed. */
static void
test_pool_shrinks(void **state_)
{
	const char *two[] = {"pool.size=2", NULL};
	struct world *w = world_new(two);
	struct config smaller;

	(void)state_;
	seed_pooled(w, "spillway-a", true, T0 - 3600000);
	seed_pooled(w, "spillway-b", true, T0 - 3600000);
	start(w);
	pass_now(w);
	assert_int_equal(state(w, "spillway-a"), VM_POOLED);
	assert_int_equal(state(w, "spillway-b"), VM_POOLED);
	memset(&smaller, 0, sizeof smaller);
	{
		const char *one[] = {"gcp.project=spillway-test", "gcp.zone=us-central1-a",
		    "daemon.owner=test", "pool.size=1", NULL};
		struct config_args a = {NULL, one};
		char *cause = NULL;

		if (config_load(&smaller, &a, w->env, &cause) != 0)
			fail_msg("config_load: %s", cause);
	}
	manager_set_config(w->m, &smaller);
	pass_now(w);
	assert_int_equal(state(w, "spillway-a"), VM_POOLED);
	assert_int_equal(state(w, "spillway-b"), VM_TERMINATED);
	assert_non_null(strstr(record(w, "spillway-b").end_reason, "pool.size 1"));
	assert_true(record(w, "spillway-b").cost > 0.0026); /* its hour of waiting */
	assert_false(scripted_exists(w->sc, "spillway-b"));
	stop(w);
	manager_free(w->m);
	w->m = NULL;
	config_free(&smaller);
	world_free(w);
}

/*
 * The budget counts the pool: what its wait costs until midnight is committed;
 * it takes no slot of max_concurrent; and a day that cannot pay for a pooled
 * VM's whole run does not make one.
 */
static void
test_pool_money(void **state_)
{
	const char *one[] = {"gcp.max_concurrent=1", "pool.size=2", NULL};
	const char *poor[] = {"pool.size=1", "gcp.daily_budget=0.05", NULL};
	struct world *w = world_new(one);
	double committed;
	char name[64];

	(void)state_;
	seed_pooled(w, "spillway-a", false, T0 - 60000);
	seed_pooled(w, "spillway-b", false, T0 - 60000);
	start(w);
	assert_int_equal(ledger_committed(w->ledger, T0, &committed), 0);
	{
		/* What is left of today and all of tomorrow, for each: runs reserved today go on.
		 */
		double want =
		    2 * 0.0027 * (double)(cost_day_end(cost_day_end(T0)) - T0) / 3600000.0;

		assert_true(committed > want * 0.999 && committed < want * 1.001);
	}
	by_hand(w, name, sizeof name); /* two pooled, max 1 running: one started */
	assert_int_equal(scripted_calls(w->sc, SC_POWER), 1);
	world_free(w);

	w = world_new(poor);
	start(w);
	pass_now(w);
	assert_int_equal(scripted_made(w->sc), 0);
	world_free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_by_hand),
	    cmocka_unit_test(test_lost_insert_answer),
	    cmocka_unit_test(test_absent_creating_sends_again),
	    cmocka_unit_test(test_stockout_next_zone),
	    cmocka_unit_test(test_present_provisioning_runs),
	    cmocka_unit_test(test_list_older_than_state),
	    cmocka_unit_test(test_vanished_booting),
	    cmocka_unit_test(test_preempted),
	    cmocka_unit_test(test_vanished_without_preemptions),
	    cmocka_unit_test(test_not_running_by_deadline),
	    cmocka_unit_test(test_insert_done_past_deadline),
	    cmocka_unit_test(test_insert_too_late),
	    cmocka_unit_test(test_orphan_deleted_after_grace),
	    cmocka_unit_test(test_orphan_adopted),
	    cmocka_unit_test(test_orphan_reported),
	    cmocka_unit_test(test_shutdown_deletes),
	    cmocka_unit_test(test_shutdown_keeps),
	    cmocka_unit_test(test_rest),
	    cmocka_unit_test(test_drain_then_delete),
	    cmocka_unit_test(test_drain_deadline),
	    cmocka_unit_test(test_draining_taken_over),
	    cmocka_unit_test(test_terminate_during_insert),
	    cmocka_unit_test(test_delete_before_older_list),
	    cmocka_unit_test(test_get_after_list),
	    cmocka_unit_test(test_gate_by_hand),
	    cmocka_unit_test(test_gate_keeps_idle),
	    cmocka_unit_test(test_gate_shutdown_and_preemption),
	    cmocka_unit_test(test_bake_resumes_imaging),
	    cmocka_unit_test(test_bake_stopped_is_imaged),
	    cmocka_unit_test(test_bake_fails_cleanly),
	    cmocka_unit_test(test_bake_vm_vanished),
	    cmocka_unit_test(test_bake_sweep),
	    cmocka_unit_test(test_bake_rules),
	    cmocka_unit_test(test_boot_image),
	    cmocka_unit_test(test_pool_taken),
	    cmocka_unit_test(test_pool_start_fails),
	    cmocka_unit_test(test_pool_starting_resumed),
	    cmocka_unit_test(test_pool_vanished_replaced),
	    cmocka_unit_test(test_pool_shutdown),
	    cmocka_unit_test(test_pool_money),
	    cmocka_unit_test(test_pool_shrinks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
