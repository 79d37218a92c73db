/*
 * Chaos: the daemon soaked in every fault the emulator has, while pressure
 * comes (15 min) and goes (45 min), 6 times (50 with SPILLWAY_CHAOS_LONG=1),
 * on a clock 600 times real time. Each cycle has server errors, 429s, 403
 * rate limits, a CPU quota that fits two VMs, tokens that expire every two
 * minutes, preemptions, guests that never get healthy or die later, a
 * stockout that moves to another zone every cycle, and every third cycle
 * latency past the calls' deadlines. After each calm the daemon has
 * converged (nothing alive in the ledger or the emulator); at the end the
 * ledger's VMs are the emulator's: every insert that took effect is a VM
 * that ended and was billed if it ran (FAILED after a boot timeout is one;
 * a Spot VM preempted in its first minute is free),
 * every other VM is FAILED having cost nothing, and every preemption the
 * emulator made is a PREEMPTED VM, unless spillway deleted it first, within
 * the notice.
 */
#include <errno.h>
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

#include "harness.h"
#include "ledger/ledger.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "world.h"

#define CYCLE_S (60 * 60)
#define HIGH_S  (15 * 60)

static const char *base_faults = "error500=0.03,error503=0.03,rate429=0.05,rate403=0.03,"
                                 "quota-cpus=8,token-lifetime=120,preempt=0.2@900,"
                                 "guest-unhealthy=0.1,guest-die=0.1@600";

static void
set_faults(struct world *w, int cycle)
{
	static const char *zones[] = {"us-central1-a", "us-central1-b", "us-central1-c"};
	char *spec = xasprintf("%s,stockout=%s%s", base_faults, zones[cycle % 3],
	    cycle % 3 == 2 ? ",latency=0-150000" : "");

	emu_set_faults(&w->e, spec);
	free(spec);
}

/* Pressure: cycles of HIGH_S of heavy stall, then calm, a sample a second. */
static void
cycles_trace(const char *path, int cycles)
{
	FILE *f = fopen(path, "w");
	int64_t t = 1700000000000, some = 0, full = 0;

	assert_non_null(f);
	fprintf(f, "# spillway pressure trace 1\n");
	for (int i = 0; i <= cycles * CYCLE_S; i++, t += 1000) {
		bool high = i % CYCLE_S > 0 && i % CYCLE_S <= HIGH_S;

		some += high ? 600000 : 0;
		full += high ? 400000 : 0;
		fprintf(f,
		    "t=%lld ev=%d some=%lld full=%lld sa10=%.2f sa60=%.2f fa10=%.2f fa60=%.2f "
		    "mt=16000000 ma=8000000 st=0 sf=0 si=0 so=0 mf=0 rf=0 ra=0\n",
		    (long long)t, i % CYCLE_S == 1, (long long)some, (long long)full,
		    high ? 60.0 : 0, high ? 60.0 : 0, high ? 40.0 : 0, high ? 40.0 : 0);
	}
	fclose(f);
}

/* Until virtual time reaches t; the daemon must still be running. */
static void
wait_until(struct world *w, int64_t t)
{
	while (vnow(w) < t) {
		if (kill(w->d.pid, 0) != 0) {
			dmn_dump(&w->d);
			fail_msg("the daemon died");
		}
		sleep_ms(20);
	}
}

/* Nothing alive in the ledger, nothing in the emulator. */
static void
expect_converged(struct world *w, int cycle)
{
	int64_t deadline = now_ms() + WAIT_MS;

	for (;;) {
		struct vm_record *list;
		size_t alive;
		json_t *all = emu_instances(&w->e);
		size_t cloud = json_array_size(all);

		assert_int_equal(ledger_list(w->ledger, NULL, 0, &list, &alive), 0);
		free(list);
		json_decref(all);
		if (alive == 0 && cloud == 0)
			return;
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg(
			    "cycle %d: after the calm, %zu VMs alive in the ledger, %zu in the "
			    "emulator",
			    cycle, alive, cloud);
		}
		sleep_ms(50);
	}
}

struct ops {
	json_t *inserted; /* names whose insert took effect: when it was DONE */
	json_t *failed;   /* names whose insert ended in an error */
	json_t *preempted;
	json_t *deleted; /* names spillway deleted: when it asked */
};

/*
 * Whether the VM ran: an insert is DONE when its VM runs, or when a delete
 * overtakes it (then at the delete's own time); a preempted VM ran.
 */
static bool
ran(const struct ops *o, const char *name)
{
	json_t *done = json_object_get(o->inserted, name), *del = json_object_get(o->deleted, name);

	return done != NULL &&
	    (json_object_get(o->preempted, name) != NULL || del == NULL ||
	        json_integer_value(done) < json_integer_value(del));
}

/* A token from the metadata server: the emulator's clock is hours ahead of a JWT's. */
static char *
metadata_token(struct world *w)
{
	const char *headers[] = {"Metadata-Flavor: Google", NULL};
	char *url = xasprintf(
	         "%s/computeMetadata/v1/instance/service-accounts/default/token", w->e.url),
	     *tok;
	struct resp r;

	http_call(&r, "GET", url, NULL, NULL, headers, NULL);
	assert_int_equal(r.status, 200);
	tok = xstrdup(jx_str(r.json, "access_token"));
	resp_free(&r);
	free(url);
	return tok;
}

static void
cloud_ops(struct world *w, struct ops *o)
{
	static const char *zones[] = {"us-central1-a", "us-central1-b", "us-central1-c"};
	char *token = metadata_token(w);

	o->inserted = json_object();
	o->failed = json_object();
	o->preempted = json_object();
	o->deleted = json_object();
	for (size_t z = 0; z < 3; z++) {
		char *url = compute_url(&w->e, zones[z], "operations?maxResults=500"), *next = NULL;

		do {
			char *page =
			    next != NULL ? xasprintf("%s&pageToken=%s", url, next) : xstrdup(url);
			json_t *list = NULL, *op;
			size_t i;
			struct resp r;

			free(next);
			next = NULL;
			/* Through the Compute API: faults are off by now. */
			http_call(&r, "GET", page, token, NULL, NULL, NULL);
			assert_int_equal(r.status, 200);
			list = json_incref(r.json);
			resp_free(&r);
			json_array_foreach (json_object_get(list, "items"), i, op) {
				const char *type = jx_str(op, "operationType");
				const char *target =
				    strrchr(or_default(jx_str(op, "targetLink"), "/"), '/') + 1;

				int64_t end = 0, start = 0;

				time_parse_rfc3339(jx_str(op, "endTime"), &end);
				time_parse_rfc3339(jx_str(op, "insertTime"), &start);
				if (strcmp(type, "insert") == 0 &&
				    strcmp(jx_str(op, "status"), "DONE") == 0)
					json_object_set_new(
					    jx_get(op, "error") != NULL ? o->failed : o->inserted,
					    target, json_integer(end));
				else if (strcmp(type, "compute.instances.preempted") == 0)
					json_object_set_new(o->preempted, target, json_true());
				else if (strcmp(type, "delete") == 0)
					json_object_set_new(
					    o->deleted, target, json_integer(start));
			}
			if (jx_str(list, "nextPageToken") != NULL)
				next = xstrdup(jx_str(list, "nextPageToken"));
			json_decref(list);
			free(page);
		} while (next != NULL);
		free(url);
	}
	free(token);
}

/* Whether spillway decided to delete the VM: its ledger shows it TERMINATING. */
static bool
went_terminating(struct world *w, const char *name)
{
	struct ledger_event *ev;
	size_t n;
	bool yes = false;

	assert_int_equal(ledger_events(w->ledger, name, 1000, &ev, &n), 0);
	for (size_t i = 0; i < n; i++)
		yes |= strstr(ev[i].detail, "-> TERMINATING") != NULL;
	free(ev);
	return yes;
}

static void
test_fault_soak(void **state)
{
	const char *lng = getenv("SPILLWAY_CHAOS_LONG");
	int cycles = lng != NULL && *lng == '1' ? 50 : 6;
	const char *env[] = {"GCP_VM_MAX_CONCURRENT=2", "SPILLWAY_COOLDOWN_MINUTES=1",
	    "GCP_VM_IDLE_TIMEOUT_MINUTES=5", "SPILLWAY_UNHEALTHY_MINUTES=2",
	    "SPILLWAY_BOOT_TIMEOUT_MINUTES=5", "SPILLWAY_RETRY_BASE_MS=5",
	    "SPILLWAY_RETRY_CAP_MS=200", "GCP_VM_DAILY_BUDGET=1000", NULL};
	struct vm_record *list;
	struct world w;
	struct ops o;
	size_t n, created = 0, failed = 0, preempted = 0, terminated = 0;
	int64_t start;

	world_init(&w, 600, NULL);
	cycles_trace(w.trace, cycles);
	set_faults(&w, 0);
	world_run(&w, NULL, env);
	wait_started(&w, 1);
	start = vnow(&w);
	for (int c = 0; c < cycles; c++) {
		set_faults(&w, c);
		wait_until(&w, start + ((int64_t)c + 1) * CYCLE_S * 1000);
		expect_converged(&w, c);
	}
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	/* The counts, the ledger's against the emulator's own operations. */
	emu_set_faults(&w.e, "");
	cloud_ops(&w, &o);
	n = vms(&w, &list);
	for (size_t i = 0; i < n; i++) {
		const struct vm_record *v = &list[i];
		bool in = json_object_get(o.inserted, v->name) != NULL;

		failed += v->state == VM_FAILED;
		terminated += v->state == VM_TERMINATED;
		preempted += v->state == VM_PREEMPTED;
		if (!in) {
			/* Never in the cloud: an insert that failed, billed nothing. */
			if (v->state != VM_FAILED || v->started_ms != 0 || v->cost != 0) {
				dmn_dump(&w.d);
				fail_msg(
				    "%s is %s (started %lld, $%.6f), but no insert of it took effect",
				    v->name, vm_state_name(v->state), (long long)v->started_ms,
				    v->cost);
			}
			continue;
		}
		/* In the cloud: ended (a FAILED one after its boot timeout), and billed if it ran.
		 */
		created++;
		if (vm_state_alive(v->state) ||
		    ((v->started_ms > 0 || ran(&o, v->name)) && v->cost <= 0 &&
		        !(v->state == VM_PREEMPTED && v->ended_ms - v->started_ms < 60000))) {
			dmn_dump(&w.d);
			fail_msg("%s ran, but is %s at $%.6f", v->name, vm_state_name(v->state),
			    v->cost);
		}
		/*
		 * Preempted, unless spillway was deleting it already, within the
		 * notice, or no pass could list the preemptions until its planned
		 * run was over: then it is billed that whole run.
		 */
		if (json_object_get(o.preempted, v->name) != NULL && v->state != VM_PREEMPTED &&
		    json_object_get(o.deleted, v->name) == NULL && !went_terminating(&w, v->name) &&
		    !(strstr(v->end_reason, "maxRunDuration") != NULL &&
		        v->ended_ms - v->started_ms == v->planned_run_s * 1000)) {
			dmn_dump(&w.d);
			fail_msg("%s was preempted, the ledger has it %s", v->name,
			    vm_state_name(v->state));
		}
	}
	assert_int_equal(created, json_object_size(o.inserted));
	assert_true(preempted <= json_object_size(o.preempted));
	printf("fault soak: %d cycles: %zu created (%zu terminated, %zu preempted), %zu failed; "
	       "the emulator: %zu inserted, %zu failed inserts, %zu preempted\n",
	    cycles, created, terminated, preempted, failed, json_object_size(o.inserted),
	    json_object_size(o.failed), json_object_size(o.preempted));
	/* The faults did strike. */
	assert_true(created > 0 && json_object_size(o.failed) + preempted + failed > 0);
	free(list);
	json_decref(o.inserted);
	json_decref(o.failed);
	json_decref(o.preempted);
	json_decref(o.deleted);
	world_end(&w);
	(void)state;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fault_soak),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
