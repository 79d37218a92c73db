/*
 * The money rules as a property: over 10,000 simulated days (100,000 with
 * SPILLWAY_CHAOS_LONG=1) of random pressure, prices, boot delays, early
 * deletes, failed inserts, preemptions and crashes (the ledger closed and
 * opened again), with the real ledger file and its reservation, no local
 * day is billed more than the daily budget, and never are more VMs alive
 * or in flight than the limit. Some VMs go to the warm pool after a short
 * warm-up (billed then), wait there (their disk billed per second, and
 * committed to the end of each day), and are taken later under the same
 * rules (ledger_reserve_start) or deleted while they wait.
 *
 * The bill is this test's own, as Compute Engine (and the emulator) bills:
 * per second from RUNNING to the stop, a minute at least, nothing for a
 * Spot VM preempted within its first minute, a run across midnight split
 * in proportion; and a VM never runs past its maxRunDuration, which
 * Compute Engine enforces.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ledger/ledger.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define DAY_MS   86400000LL
#define MIN_MS   60000LL
#define BUDGET   5.0
#define MAX_VMS  2
#define MAX_RUN  (3 * 3600)
#define EPOCH_MS 1767225600000LL /* 2026-01-01T00:00:00Z */

struct sim_vm {
	struct vm_record rec;
	int64_t start, end; /* 0: not yet known */
	bool fails, preempted;
	bool live;
	bool pool;    /* warmed, then to the pool at `end` (its warm-up's end) */
	bool waiting; /* in the pool: no slot, its disk billed */
};

static double *billed; /* per day since EPOCH_MS */
static int ndays;

static double
urand(void)
{
	return (double)rand() / ((double)RAND_MAX + 1.0);
}

/* Compute Engine's bill of one run, into the days it touched. */
static void
bill(double per_hour, int64_t start, int64_t end, bool spot, bool preempted)
{
	int64_t run = end - start, billed_ms = run < MIN_MS ? MIN_MS : run;

	if (run <= 0 || (spot && preempted && run < MIN_MS))
		return;
	for (int64_t t = start; t < end;) {
		int64_t day = (t - EPOCH_MS) / DAY_MS, midnight = EPOCH_MS + (day + 1) * DAY_MS;
		int64_t upto = end < midnight ? end : midnight;

		assert_true(day >= 0 && day < ndays);
		billed[day] +=
		    per_hour * (double)billed_ms / 3600000.0 * (double)(upto - t) / (double)run;
		t = upto;
	}
}

/* Storage: per second, no minimum, into the days it touched. */
static void
bill_storage(double per_hour, int64_t start, int64_t end)
{
	for (int64_t t = start; t < end;) {
		int64_t day = (t - EPOCH_MS) / DAY_MS, midnight = EPOCH_MS + (day + 1) * DAY_MS;
		int64_t upto = end < midnight ? end : midnight;

		assert_true(day >= 0 && day < ndays);
		billed[day] += per_hour * (double)(upto - t) / 3600000.0;
		t = upto;
	}
}

/* Its wait in the pool is over (taken, deleted): billed by both, once. */
static void
waited(struct ledger *l, struct sim_vm *v, int64_t now)
{
	double amount;

	assert_int_equal(
	    ledger_bill(l, &v->rec, v->rec.pool_since_ms, now, v->rec.wait_per_hour, true, &amount),
	    0);
	bill_storage(v->rec.wait_per_hour, v->rec.pool_since_ms, now);
	v->rec.pool_since_ms = 0;
}

static int
alive(const struct sim_vm *vms, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		k += vms[i].live;
	return k;
}

static void
save(struct ledger *l, struct sim_vm *v, enum vm_state to, int64_t now)
{
	enum vm_state from = v->rec.state;

	v->rec.state = to;
	v->rec.state_ms = now;
	assert_int_equal(ledger_save(l, &v->rec, (int)from, "simulated", now), 0);
}

/* What happened up to now: starts, failures, ends. */
static void
advance(struct ledger *l, struct sim_vm *vms, int n, int64_t now)
{
	for (int i = 0; i < n; i++) {
		struct sim_vm *v = &vms[i];
		double total;

		if (!v->live)
			continue;
		if (v->rec.state == VM_REQUESTED && v->fails && now >= v->start) {
			/* The insert failed: nothing billed, the reservation released. */
			int64_t zero = 0, none = 0;

			assert_int_equal(ledger_close_cost(l, v->rec.name, v->rec.per_hour, &zero,
			                     &none, v->rec.spot, false, &total),
			    0);
			v->rec.reserved = 0;
			save(l, v, VM_FAILED, now);
			v->live = false;
			continue;
		}
		if (v->rec.state == VM_REQUESTED && now >= v->start) {
			v->rec.started_ms = v->start;
			save(l, v, VM_READY, now);
		}
		if (v->rec.state == VM_READY && now >= v->end && v->pool) {
			/* Warm: stopped, its warm-up billed; it waits in the pool. */
			double amount;

			assert_int_equal(ledger_bill(l, &v->rec, v->start, v->end, v->rec.per_hour,
			                     false, &amount),
			    0);
			bill(v->rec.per_hour, v->start, v->end, v->rec.spot, false);
			v->rec.started_ms = 0;
			v->rec.reserved = 0;
			v->rec.pool_since_ms = v->end;
			save(l, v, VM_POOLED, now);
			v->pool = false;
			v->live = false;
			v->waiting = true;
			continue;
		}
		if (v->rec.state == VM_READY && now >= v->end) {
			int64_t start = v->start, end = v->end;

			assert_int_equal(ledger_close_cost(l, v->rec.name, v->rec.per_hour, &start,
			                     &end, v->rec.spot, v->preempted, &total),
			    0);
			bill(v->rec.per_hour, v->start, v->end, v->rec.spot, v->preempted);
			v->rec.ended_ms = v->end;
			v->rec.reserved = 0;
			save(l, v, v->preempted ? VM_PREEMPTED : VM_TERMINATED, now);
			v->live = false;
		}
	}
}

static void
test_budget_property(void **state)
{
	const char *lng = getenv("SPILLWAY_CHAOS_LONG");
	char dir[64], *cause = NULL;
	unsigned seed = (unsigned)time(NULL);
	struct reserve_rules rules = {BUDGET, MAX_VMS, MAX_RUN, 60};
	struct sim_vm *vms = xcalloc(64, sizeof *vms);
	int nvms = 0, created = 0, refused = 0, crashes = 0, worst_day = 0, taken = 0;
	struct ledger *l;
	int64_t now = EPOCH_MS;

	ndays = lng != NULL && *lng == '1' ? 100000 : 10000;
	if (getenv("SPILLWAY_CHAOS_DAYS") != NULL)
		ndays = atoi(getenv("SPILLWAY_CHAOS_DAYS"));
	billed = xcalloc((size_t)ndays + 2, sizeof *billed);
	setenv("TZ", "UTC", 1);
	tzset();
	srand(seed);
	/* In memory where there is a tmpfs: the ledger syncs every transaction, as it should. */
	snprintf(dir, sizeof dir, "%s/spillway-budget-XXXXXX",
	    access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	assert_non_null(mkdtemp(dir));
	if (ledger_open(dir, &l, &cause) != 0)
		fail_msg("%s", cause);
	while (now < EPOCH_MS + (int64_t)(ndays - 1) * DAY_MS) {
		/* Some days are busy, some calm: pressure comes in the day's own measure. */
		double pressure = sin((double)(now - EPOCH_MS) / DAY_MS * 0.7) * 0.5 + 0.5;

		now += MIN_MS * (1 + rand() % 40);
		advance(l, vms, nvms, now);
		if (urand() < 0.002) {
			/* A crash: all the daemon knew is in the ledger. */
			ledger_close(l);
			if (ledger_open(dir, &l, &cause) != 0)
				fail_msg("%s", cause);
			crashes++;
		}
		/* The pool: a waiting VM deleted now and then, taken under pressure. */
		for (int i = 0; i < nvms; i++) {
			struct sim_vm *p = &vms[i];
			struct budget_plan plan;
			char why[256];
			double total;
			int error;

			if (!p->waiting)
				continue;
			if (urand() < 0.002) {
				int64_t zero = 0, none = 0;

				waited(l, p, now);
				assert_int_equal(ledger_close_cost(l, p->rec.name, p->rec.per_hour,
				                     &zero, &none, p->rec.spot, false, &total),
				    0);
				save(l, p, VM_TERMINATED, now);
				p->waiting = false;
			} else if (urand() < pressure * 0.2) {
				waited(l, p, now);
				p->rec.purpose[0] = '\0';
				error = ledger_reserve_start(
				    l, &p->rec, &rules, now, &plan, why, sizeof why);
				if (error != 0) {
					assert_true(error == -EAGAIN || error == -EBUSY);
					p->rec.pool_since_ms = now; /* it waits on */
					snprintf(p->rec.purpose, sizeof p->rec.purpose, "pool");
					save(l, p, VM_POOLED, now);
					refused++;
					continue;
				}
				if (alive(vms, nvms) + 1 > MAX_VMS)
					fail_msg(
					    "seed %u: a pooled VM started with %d alive (limit %d)",
					    seed, alive(vms, nvms), MAX_VMS);
				p->waiting = false;
				p->live = true;
				p->start = now + (int64_t)(urand() * 30000); /* a start: seconds */
				p->rec.started_ms = 0;
				p->end = p->start + 1000 +
				    (int64_t)(urand() * (double)(plan.run_s - 1) * 1000);
				p->rec.state = VM_REQUESTED; /* advance() starts it */
				taken++;
			}
		}
		if (urand() < pressure * 0.4) {
			struct budget_plan plan;
			struct sim_vm v = {0};
			char why[256];
			int error;

			snprintf(v.rec.name, sizeof v.rec.name, "vm-%d", created + refused);
			uuid_v4(v.rec.request_id);
			snprintf(v.rec.zone, sizeof v.rec.zone, "us-central1-a");
			snprintf(v.rec.machine_type, sizeof v.rec.machine_type, "e2-highmem-4");
			v.rec.spot = urand() < 0.8;
			v.rec.per_hour = 0.02 + urand() * 1.5; /* prices move, and some are dear */
			v.pool = urand() < 0.2;
			if (v.pool) { /* made for the pool: its wait is part of its reservation */
				snprintf(v.rec.purpose, sizeof v.rec.purpose, "pool");
				v.rec.wait_per_hour = 0.002 + urand() * 0.02;
			}
			error = ledger_reserve(l, &v.rec, &rules, now, &plan, why, sizeof why);
			if (error != 0) {
				assert_true(error == -EAGAIN || error == -EBUSY);
				refused++;
				continue;
			}
			/* Never more alive or in flight than the limit. */
			if (alive(vms, nvms) + 1 > MAX_VMS)
				fail_msg("seed %u: a VM reserved with %d alive (limit %d)", seed,
				    alive(vms, nvms), MAX_VMS);
			v.live = true;
			v.fails = urand() < 0.05;
			if (v.pool)
				v.fails = false;
			v.start = now + (int64_t)(urand() * 180000); /* booting up to 3 min */
			/* Deleted early, preempted, or stopped by maxRunDuration. */
			v.preempted = v.rec.spot && urand() < 0.15;
			v.end = v.start +
			    (urand() < 0.5 ? (int64_t)(urand() * (double)plan.run_s * 1000)
			                   : plan.run_s * 1000);
			if (v.pool) { /* its warm-up: minutes, within its run; no preemption in them
				       */
				v.end = v.start + MIN_MS * (1 + rand() % 5);
				if (v.end > v.start + plan.run_s * 1000)
					v.end = v.start + plan.run_s * 1000;
				v.preempted = false;
			}
			if (v.end - v.start < 1000)
				v.end = v.start + 1000;
			created++;
			/* Reuse a slot of a VM that is over. */
			{
				int slot = nvms;

				for (int i = 0; i < nvms; i++)
					if (!vms[i].live && !vms[i].waiting) {
						slot = i;
						break;
					}
				assert_true(slot < 64);
				vms[slot] = v;
				if (slot == nvms)
					nvms++;
			}
		}
	}
	advance(l, vms, nvms, now + DAY_MS); /* let the last runs end */
	for (int i = 0; i < nvms; i++)       /* and the pool's last waits be billed */
		if (vms[i].waiting)
			waited(l, &vms[i], now);
	for (int d = 0; d < ndays; d++) {
		if (billed[d] > billed[worst_day])
			worst_day = d;
		if (billed[d] > BUDGET + 1e-9)
			fail_msg("seed %u: day %d billed $%.6f, over the budget of $%.2f", seed, d,
			    billed[d], BUDGET);
	}
	printf("budget property: %d days, seed %u: %d VMs, %d taken from the pool, %d refused, %d "
	       "crashes; the dearest day $%.4f of $%.2f\n",
	    ndays, seed, created, taken, refused, crashes, billed[worst_day], BUDGET);
	assert_true(created > ndays); /* the budget was really tested: VMs every day */
	assert_true(taken > ndays / 10); /* and the pool with it */
	ledger_close(l);
	remove_tree(dir);
	free(vms);
	free(billed);
	(void)state;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_budget_property),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
