/*
 * Money and its record: billing arithmetic, days in local time, the budget's
 * plan, prices from the catalog, and the SQLite ledger (two processes at once
 * included).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "ledger/cost.h"
#include "ledger/ledger.h"
#include "ledger/pricing.h"
#include "util/str.h"
#include "util/xmalloc.h"

extern const char gce_prices_json[];
extern const size_t gce_prices_json_len;

#define H  3600000LL
#define MN 60000LL

static void
set_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

/* Milliseconds of a local time in the current TZ. */
static int64_t
local_ms(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = {.tm_year = y - 1900,
	    .tm_mon = mo - 1,
	    .tm_mday = d,
	    .tm_hour = h,
	    .tm_min = mi,
	    .tm_sec = s,
	    .tm_isdst = -1};

	return (int64_t)mktime(&tm) * 1000;
}

static void
test_cost_run(void **state)
{
	/* Per second. */
	assert_true(fabs(cost_run(0.0595, 0, 2 * H, true, false) - 0.119) < 1e-12);
	assert_true(fabs(cost_run(3.6, 0, 61000, true, false) - 0.061) < 1e-12);
	/* A one-minute minimum... */
	assert_true(fabs(cost_run(0.6, 0, 10000, true, false) - 0.01) < 1e-12);
	assert_true(fabs(cost_run(0.6, 0, 10000, false, true) - 0.01) < 1e-12);
	/* ...except a Spot VM preempted in its first minute, which costs nothing. */
	assert_true(cost_run(0.6, 0, 59999, true, true) == 0);
	assert_true(fabs(cost_run(0.6, 0, 60000, true, true) - 0.01) < 1e-12);
}

static void
test_cost_days_across_midnight(void **state)
{
	struct day_cost days[4];
	int64_t start, end;
	int n;

	set_tz("Europe/Berlin");
	start = local_ms(2026, 3, 10, 23, 0, 0);
	end = local_ms(2026, 3, 11, 2, 0, 0);
	n = cost_split_days(0.3, start, end, true, false, days, 4);
	assert_int_equal(n, 2);
	assert_string_equal(days[0].day, "2026-03-10");
	assert_string_equal(days[1].day, "2026-03-11");
	assert_true(fabs(days[0].amount - 0.3) < 1e-9);
	assert_true(fabs(days[1].amount - 0.6) < 1e-9);
	/* The same instants are one day in another zone. */
	set_tz("America/Los_Angeles");
	n = cost_split_days(0.3, start, end, true, false, days, 4);
	assert_int_equal(n, 1);
	assert_string_equal(days[0].day, "2026-03-10");
	/* A day of 23 hours (DST starts in Berlin on 2026-03-29): midnight to midnight. */
	set_tz("Europe/Berlin");
	start = local_ms(2026, 3, 29, 12, 0, 0);
	assert_int_equal(cost_day_end(start) - cost_day_start(start), 23 * H);
	/* Three days. */
	n = cost_split_days(1, local_ms(2026, 5, 1, 12, 0, 0), local_ms(2026, 5, 3, 12, 0, 0),
	    false, false, days, 4);
	assert_int_equal(n, 3);
	assert_true(fabs(days[0].amount - 12) < 1e-9 && fabs(days[1].amount - 24) < 1e-9 &&
	    fabs(days[2].amount - 12) < 1e-9);
	set_tz("UTC");
}

static void
test_budget_plan(void **state)
{
	struct budget_ask a = {5.0, 1.0, 0.5, 0.0595, 3 * 3600, 15 * 60};
	struct budget_plan p;

	/* Plenty left: the whole lifetime. */
	budget_plan(&a, &p);
	assert_true(p.ok);
	assert_int_equal(p.run_s, 3 * 3600);
	assert_true(fabs(p.cost - 0.1785) < 1e-9);
	assert_true(fabs(p.left - 3.5) < 1e-9);
	/* Nearly spent: the run is what is left buys, to the second. */
	a.spent = 4.45;
	a.committed = 0.5;
	budget_plan(&a, &p);
	assert_true(p.ok);
	assert_int_equal(p.run_s, (int64_t)(0.05 / 0.0595 * 3600));
	assert_true(p.cost <= 0.05 + 1e-12);
	/* Less than the minimum useful run: refused, with the numbers. */
	a.spent = 4.49;
	budget_plan(&a, &p);
	assert_false(p.ok);
	assert_non_null(strstr(p.why, "budget: $0.01 left of $5.00"));
	assert_non_null(strstr(p.why, "15 min"));
	/* A lifetime shorter than the minimum run: the lifetime is the minimum. */
	a = (struct budget_ask){5.0, 0, 0, 0.0595, 360, 15 * 60};
	budget_plan(&a, &p);
	assert_true(p.ok);
	assert_int_equal(p.run_s, 360);
	a.spent = 4.5;
	/* Over budget already. */
	a.spent = 6;
	budget_plan(&a, &p);
	assert_false(p.ok);
	assert_int_equal(p.run_s, 0);
}

static json_t *
shipped_skus(json_t **doc)
{
	json_error_t err;

	*doc = json_loadb(gce_prices_json, gce_prices_json_len, 0, &err);
	assert_non_null(*doc);
	return json_object_get(*doc, "skus");
}

static void
test_price_lookup(void **state)
{
	json_t *doc, *skus = shipped_skus(&doc);
	struct price_query q = {
	    "e2-highmem-4", "us-central1", true, 4, 32768, 20, "pd-balanced", true};
	struct price p;
	char *cause = NULL;

	assert_int_equal(price_catalog_check(skus, &cause), 0);
	assert_int_equal(price_lookup(skus, &q, &p, &cause), 0);
	/* Google's Spot E2 prices of 2024-03 (reference NOTES): core and RAM. */
	assert_true(fabs(p.core_per_hour - 0.006543477) < 1e-12);
	assert_true(fabs(p.ram_per_gib_hour - 0.000877059) < 1e-12);
	assert_true(fabs(4 * p.core_per_hour + 32 * p.ram_per_gib_hour - 0.054239796) < 1e-9);
	/* The disk and the address are billed too. */
	assert_true(fabs(p.disk_per_hour - 20 * 0.1 / 730) < 1e-9);
	assert_true(p.ip_per_hour > 0);
	assert_true(fabs(p.per_hour - (0.054239796 + p.disk_per_hour + p.ip_per_hour)) < 1e-9);
	assert_true(fabs(p.per_hour - 0.0595) < 0.0005);
	/* On demand is dearer. */
	q.spot = false;
	assert_int_equal(price_lookup(skus, &q, &p, &cause), 0);
	assert_true(fabs(4 * p.core_per_hour + 32 * p.ram_per_gib_hour - 0.181) < 0.001);
	/* A family the catalog does not price: an error naming what is missing. */
	q.machine_type = "m3-ultramem-32";
	assert_int_equal(price_lookup(skus, &q, &p, &cause), -ENOENT);
	assert_non_null(strstr(cause, "m3-ultramem-32"));
	free(cause);
	cause = NULL;
	/* Not a SKU list. */
	assert_int_equal(price_catalog_check(json_object_get(doc, "nope"), &cause), -EINVAL);
	assert_non_null(cause);
	free(cause);
	json_decref(doc);
}

/* --- the ledger --- */

static char *
temp_dir(void)
{
	char *d = xstrdup("/tmp/spillway-ledger-XXXXXX");

	assert_non_null(mkdtemp(d));
	return d;
}

static struct vm_record
intent(const char *name, double per_hour)
{
	struct vm_record v;

	memset(&v, 0, sizeof v);
	snprintf(v.name, sizeof v.name, "%s", name);
	snprintf(v.zone, sizeof v.zone, "us-central1-a");
	snprintf(
	    v.request_id, sizeof v.request_id, "00000000-0000-4000-8000-%012d", (int)strlen(name));
	snprintf(v.machine_type, sizeof v.machine_type, "e2-highmem-4");
	snprintf(v.components, sizeof v.components, "vision,chatbots");
	snprintf(v.reason, sizeof v.reason, "test");
	v.spot = true;
	v.per_hour = per_hour;
	return v;
}

static void
test_ledger_file(void **state)
{
	char *dir = temp_dir(), *path = xasprintf("%s/state", dir), *cause = NULL;
	struct ledger *l;
	struct stat st;

	assert_int_equal(ledger_open(path, &l, &cause), 0);
	assert_int_equal(stat(ledger_path(l), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	ledger_close(l);
	/* Reopening migrates nothing and keeps what was there. */
	assert_int_equal(ledger_open(path, &l, &cause), 0);
	ledger_close(l);
	/* Not a database: a clear error, the file untouched. */
	free(path);
	path = xasprintf("%s/bad", dir);
	mkdir(path, 0700);
	{
		char *db = xasprintf("%s/ledger.db", path);

		assert_int_equal(
		    write_file_atomic(db, "not sqlite at all, not at all......", 35, 0600), 0);
		assert_int_not_equal(ledger_open(path, &l, &cause), 0);
		assert_non_null(strstr(cause, db));
		free(cause);
		free(db);
	}
	remove_tree(dir);
	free(path);
	free(dir);
}

static void
test_ledger_reserve_and_close(void **state)
{
	char *dir = temp_dir(), *cause = NULL, why[256];
	struct reserve_rules rules = {1.0, 2, 3 * 3600, 15 * 60};
	struct vm_record a = intent("spillway-a", 0.06), b = intent("spillway-bb", 0.06),
	                 c = intent("spillway-ccc", 0.06), got;
	struct budget_plan plan;
	struct ledger *l;
	int64_t t0 = local_ms(2026, 11, 27, 10, 0, 0);
	double total;

	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	assert_int_equal(ledger_reserve(l, &a, &rules, t0, &plan, why, sizeof why), 0);
	assert_int_equal(a.state, VM_REQUESTED);
	assert_int_equal(a.planned_run_s, 3 * 3600);
	/* In flight, its whole planned run is committed. */
	assert_true(fabs(ledger_committed(l, t0) - 0.18) < 1e-9);
	assert_int_equal(ledger_reserve(l, &b, &rules, t0, &plan, why, sizeof why), 0);
	/* The third: max concurrent counts VMs still in flight. */
	assert_int_equal(ledger_reserve(l, &c, &rules, t0, &plan, why, sizeof why), -EBUSY);
	assert_non_null(strstr(why, "max concurrent 2 reached (2 alive, 2 of them in flight)"));
	/* a runs from t0 + 1 min; at t0 + 31 min it has accrued 30 min, and may cost 2.5 h more. */
	assert_int_equal(ledger_get(l, "spillway-a", &got), 0);
	got.state = VM_READY;
	got.started_ms = t0 + MN;
	assert_int_equal(ledger_save(l, &got, VM_REQUESTED, "up", t0 + MN), 0);
	assert_true(fabs(ledger_spent(l, t0 + 31 * MN) - 0.03) < 1e-9);
	assert_true(fabs(ledger_committed(l, t0 + 31 * MN) - (0.15 + 0.18)) < 1e-9);
	/* Closed: billed seconds x price, once. */
	{
		int64_t start = t0 + MN, end = t0 + 31 * MN + 30000;

		assert_int_equal(
		    ledger_close_cost(l, "spillway-a", 0.06, &start, &end, true, false, &total), 0);
		assert_true(fabs(total - 0.06 * 1830 / 3600) < 1e-12);
		/* Again, after a crash, with another end: the first close holds, run and all. */
		start = t0;
		end = t0 + 9 * H;
		assert_int_equal(
		    ledger_close_cost(l, "spillway-a", 0.06, &start, &end, true, false, &total), 0);
		assert_true(fabs(total - 0.06 * 1830 / 3600) < 1e-12);
		assert_true(start == t0 + MN && end == t0 + 31 * MN + 30000);
	}
	got.state = VM_TERMINATED;
	got.ended_ms = t0 + 31 * MN + 30000;
	assert_int_equal(ledger_save(l, &got, VM_READY, "idle", got.ended_ms), 0);
	assert_true(fabs(ledger_spent(l, t0 + 40 * MN) - 0.0305) < 1e-9);
	/* Now c fits, but the budget is what is left: 1 - 0.0305 - 0.18 (b's reservation). */
	assert_int_equal(ledger_reserve(l, &c, &rules, t0 + 40 * MN, &plan, why, sizeof why), 0);
	assert_true(fabs(plan.left - (1 - 0.0305 - 0.18)) < 1e-9);
	{
		struct vm_stats s;
		struct ledger_event *ev;
		size_t n;

		assert_int_equal(ledger_stats(l, &s), 0);
		assert_int_equal(s.terminated, 1);
		assert_int_equal(s.alive, 2);
		assert_true(fabs(s.total_cost - 0.0305) < 1e-9);
		assert_int_equal(ledger_events(l, "spillway-a", 10, &ev, &n), 0);
		assert_int_equal(n, 3); /* NEW -> REQUESTED, -> READY, -> TERMINATED */
		assert_non_null(strstr(ev[0].detail, "READY -> TERMINATED: idle"));
		free(ev);
	}
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

static void
test_ledger_budget_refusal(void **state)
{
	char *dir = temp_dir(), *cause = NULL, why[256];
	struct reserve_rules rules = {0.10, 5, 3 * 3600, 15 * 60};
	struct vm_record a = intent("spillway-a", 0.0595), b = intent("spillway-bb", 0.0595);
	struct budget_plan plan;
	struct ledger *l;
	int64_t t0 = local_ms(2026, 11, 27, 10, 0, 0);

	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	/* $0.10 buys 1 h 40 min 50 s of $0.0595/h: the run is shortened to that. */
	assert_int_equal(ledger_reserve(l, &a, &rules, t0, &plan, why, sizeof why), 0);
	assert_int_equal(a.planned_run_s, (int64_t)(0.10 / 0.0595 * 3600));
	/* Nothing left for another. */
	assert_int_equal(ledger_reserve(l, &b, &rules, t0, &plan, why, sizeof why), -EAGAIN);
	assert_non_null(strstr(why, "budget:"));
	assert_int_equal(ledger_get(l, "spillway-bb", &a), -ENOENT);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

/*
 * Two processes reserving against one budget that holds exactly N VMs: exactly
 * N reservations in all, whatever the interleaving.
 */
static void
test_ledger_two_processes(void **state)
{
	char *dir = temp_dir(), *cause = NULL;
	struct ledger *l;
	const int per_child = 40, fits = 25;
	pid_t pid[2];
	struct vm_stats s;

	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	ledger_close(l);
	for (int c = 0; c < 2; c++) {
		if ((pid[c] = fork()) == 0) {
			struct reserve_rules rules = {fits * 0.25 + 0.001, 1000, 3600, 60};
			int ok = 0;

			if (ledger_open(dir, &l, &cause) != 0)
				_exit(100);
			for (int i = 0; i < per_child; i++) {
				char name[32], why[256];
				struct vm_record v;
				struct budget_plan plan;

				snprintf(name, sizeof name, "spillway-%d-%d", c, i);
				v = intent(name, 0.25);
				ok += ledger_reserve(l, &v, &rules, local_ms(2026, 11, 27, 9, 0, 0),
				          &plan, why, sizeof why) == 0;
			}
			ledger_close(l);
			_exit(ok);
		}
	}
	{
		int total = 0, status;

		for (int c = 0; c < 2; c++) {
			assert_int_equal(waitpid(pid[c], &status, 0), pid[c]);
			assert_true(WIFEXITED(status) && WEXITSTATUS(status) < 100);
			total += WEXITSTATUS(status);
		}
		assert_int_equal(total, fits);
	}
	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	assert_int_equal(ledger_stats(l, &s), 0);
	assert_int_equal(s.alive, fits);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cost_run),
	    cmocka_unit_test(test_cost_days_across_midnight),
	    cmocka_unit_test(test_budget_plan),
	    cmocka_unit_test(test_price_lookup),
	    cmocka_unit_test(test_ledger_file),
	    cmocka_unit_test(test_ledger_reserve_and_close),
	    cmocka_unit_test(test_ledger_budget_refusal),
	    cmocka_unit_test(test_ledger_two_processes),
	};

	set_tz("UTC");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
