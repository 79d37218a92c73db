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
#include <sqlite3.h>

#include "api/view.h"
#include "config/config.h"
#include "ledger/cost.h"
#include "ledger/ledger.h"
#include "ledger/pricing.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/records.h"

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
	assert_non_null(strstr(p.why, "$0.0100 left of $5.00"));
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

/* The catalog a daemon keeps prices every VM as the whole one does, in far less. */
static void
test_price_catalog_compact(void **state)
{
	json_t *doc, *skus = shipped_skus(&doc), *small = price_catalog_compact(skus);
	const char *types[] = {
	    "e2-highmem-4", "e2-standard-2", "n2-standard-8", "n2d-highmem-2", "m3-ultramem-32"};
	const char *regions[] = {"us-central1", "europe-west4", "asia-east1", "nowhere-1"};
	char *text_big = json_dumps(skus, JSON_COMPACT),
	     *text_small = json_dumps(small, JSON_COMPACT);

	assert_int_equal(price_catalog_check(small, &(char *){NULL}), 0);
	assert_true(json_array_size(small) > 0 && json_array_size(small) <= json_array_size(skus));
	assert_true(strlen(text_small) * 2 < strlen(text_big));
	for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
		for (size_t r = 0; r < sizeof regions / sizeof regions[0]; r++)
			for (int k = 0; k < 8; k++) {
				struct price_query q = {types[t], regions[r], k & 1, 4, 32768,
				    k & 2 ? 20 : 0, k & 4 ? "pd-standard" : "pd-balanced", k & 2};
				struct price a, b;
				char *ca = NULL, *cb = NULL;
				int ea = price_lookup(skus, &q, &a, &ca),
				    eb = price_lookup(small, &q, &b, &cb);

				assert_int_equal(ea, eb);
				assert_string_equal(ca != NULL ? ca : "", cb != NULL ? cb : "");
				assert_memory_equal(&a, &b, sizeof a);
				free(ca);
				free(cb);
			}
	free(text_big);
	free(text_small);
	json_decref(small);
	json_decref(doc);
}

/* The shipped catalog with one tier of one SKU's price changed. */
static json_t *
tampered(json_t **doc, const char *description, const char *units, json_int_t nanos,
    const char *currency)
{
	json_t *skus = shipped_skus(doc), *sku;
	size_t i;

	json_array_foreach (skus, i, sku) {
		json_t *money;

		if (strcmp(json_string_value(json_object_get(sku, "description")), description) !=
		    0)
			continue;
		money = json_object_get(
		    json_array_get(
		        json_object_get(
		            json_object_get(json_array_get(json_object_get(sku, "pricingInfo"), 0),
		                "pricingExpression"),
		            "tieredRates"),
		        0),
		    "unitPrice");
		json_object_set_new(money, "units", json_string(units));
		json_object_set_new(money, "nanos", json_integer(nanos));
		if (currency != NULL)
			json_object_set_new(money, "currencyCode", json_string(currency));
		return skus;
	}
	fail_msg("no SKU '%s' in the shipped catalog", description);
	return NULL;
}

static void
expect_catalog_refused(const char *description, const char *units, json_int_t nanos,
    const char *currency, const char *why)
{
	json_t *doc, *skus = tampered(&doc, description, units, nanos, currency);
	char *cause = NULL;

	assert_int_equal(price_catalog_check(skus, &cause), -EINVAL);
	/* It names the SKU and what is wrong with it. */
	if (strstr(cause, description) == NULL || strstr(cause, why) == NULL)
		fail_msg("cause '%s' lacks '%s' or '%s'", cause, description, why);
	free(cause);
	json_decref(doc);
}

/*
 * A catalog whose prices are negative, free where a VM is made of, out of
 * bounds, of two signs or not in dollars is refused whole; a price of $0
 * elsewhere (a free licence, a free tier) is Google's own and is kept.
 */
static void
test_price_catalog_refused(void **state)
{
	const char *core = "Spot Preemptible E2 Instance Core running in Americas";
	json_t *doc, *skus;
	char *cause = NULL;

	expect_catalog_refused(core, "-1", 0, NULL, "$-1.000000000 is not from $0 to $1000");
	expect_catalog_refused(core, "0", -999999999, NULL, "is not from $0 to $1000");
	expect_catalog_refused(core, "-1", 21811590, NULL, "are not one price");
	expect_catalog_refused(core, "0", 0, NULL, "the price $0, but what a VM is made of");
	expect_catalog_refused(core, "5000", 0, NULL, "is not from $0 to $1000");
	expect_catalog_refused(core, "0", 1000000000, NULL, "are not one price");
	expect_catalog_refused(core, "1e3", 0, NULL, "without whole 'units' and 'nanos'");
	expect_catalog_refused(core, "0", 6543477, "EUR", "a price in EUR");
	expect_catalog_refused("Balanced PD Capacity", "0", 0, NULL, "costs something");
	/* The shipped catalog itself passes, and a free SKU that no VM price uses is fine. */
	skus = shipped_skus(&doc);
	assert_int_equal(price_catalog_check(skus, &cause), 0);
	json_array_append_new(skus,
	    json_pack("{s:s, s:s, s:[{s:{s:[{s:i, s:{s:s, s:s, s:i}}]}}]}", "skuId", "FREE-0000",
	        "description", "Licensing Fee for Debian 12 (CPU cost)", "pricingInfo",
	        "pricingExpression", "tieredRates", "startUsageAmount", 0, "unitPrice",
	        "currencyCode", "USD", "units", "0", "nanos", 0));
	assert_int_equal(price_catalog_check(skus, &cause), 0);
	json_decref(doc);
}

/* A price that is no price plans nothing, whatever is left. */
static void
test_budget_plan_no_price(void **state)
{
	const double bad[] = {0, -37.0, -1e-12, NAN, INFINITY, 1001};
	struct budget_plan p;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct budget_ask a = {5.0, 0, 0, bad[i], 3 * 3600, 15 * 60};

		budget_plan(&a, &p);
		assert_false(p.ok);
		assert_int_equal(p.run_s, 0);
		assert_true(p.cost == 0);
		assert_non_null(strstr(p.why, "is not a price a VM can have"));
	}
	/* Nor is anything billed at one. */
	assert_true(cost_run(-37.03, 0, 2 * H, true, false) == 0);
	assert_true(cost_run(NAN, 0, 2 * H, true, false) == 0);
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

static double
spent(struct ledger *l, int64_t now)
{
	double v = -1;

	assert_int_equal(ledger_spent(l, now, &v), 0);
	return v;
}

static double
committed(struct ledger *l, int64_t now)
{
	double v = -1;

	assert_int_equal(ledger_committed(l, now, &v), 0);
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

/*
 * At rest the connection is closed (its WAL folded into the file, SQLite's
 * memory given back) and the next call opens the file again; a file deleted
 * meanwhile is not made again behind the caller's back: ledger_refresh says so.
 */
static void
test_ledger_rest(void **state)
{
	char *dir = temp_dir(), *cause = NULL, why[256], *wal;
	struct reserve_rules rules = {1.0, 2, 3600, 15 * 60};
	struct vm_record a = intent("spillway-a", 0.06), got;
	struct budget_plan plan;
	struct ledger *l;
	int64_t t0 = local_ms(2026, 11, 27, 10, 0, 0);
	bool reopened = true;

	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	wal = xasprintf("%s-wal", ledger_path(l));
	assert_int_equal(ledger_reserve(l, &a, &rules, t0, &plan, why, sizeof why), 0);
	assert_int_equal(access(wal, F_OK), 0);
	ledger_rest(l);
	assert_int_equal(access(wal, F_OK), -1);
	assert_int_equal(ledger_checkpoint(l), 0);
	assert_int_equal(ledger_refresh(l, &reopened, &cause), 0);
	assert_false(reopened);
	/* The next call opens it again and finds what was written. */
	assert_int_equal(ledger_get(l, "spillway-a", &got), 0);
	assert_int_equal(got.state, VM_REQUESTED);
	assert_int_equal(ledger_check(l, &cause), 0);
	/* Deleted while at rest: calls fail until the refresh makes a new file and says so. */
	ledger_rest(l);
	assert_int_equal(unlink(ledger_path(l)), 0);
	assert_int_equal(ledger_get(l, "spillway-a", &got), -EIO);
	assert_int_equal(access(ledger_path(l), F_OK), -1);
	assert_int_equal(ledger_refresh(l, &reopened, &cause), 0);
	assert_true(reopened);
	assert_int_equal(ledger_get(l, "spillway-a", &got), -ENOENT);
	ledger_close(l);
	remove_tree(dir);
	free(wal);
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
	assert_true(fabs(committed(l, t0) - 0.18) < 1e-9);
	assert_int_equal(ledger_reserve(l, &b, &rules, t0, &plan, why, sizeof why), 0);
	/* The third: max concurrent counts VMs still in flight. */
	assert_int_equal(ledger_reserve(l, &c, &rules, t0, &plan, why, sizeof why), -EBUSY);
	assert_non_null(strstr(why, "max concurrent 2 reached (2 alive, 2 of them in flight)"));
	/* a runs from t0 + 1 min; at t0 + 31 min it has accrued 30 min, and may cost 2.5 h more. */
	assert_int_equal(ledger_get(l, "spillway-a", &got), 0);
	got.state = VM_READY;
	got.started_ms = t0 + MN;
	assert_int_equal(ledger_save(l, &got, VM_REQUESTED, "up", t0 + MN), 0);
	assert_true(fabs(spent(l, t0 + 31 * MN) - 0.03) < 1e-9);
	assert_true(fabs(committed(l, t0 + 31 * MN) - (0.15 + 0.18)) < 1e-9);
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
	assert_true(fabs(spent(l, t0 + 40 * MN) - 0.0305) < 1e-9);
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
	assert_non_null(strstr(why, "left of $0.10 today"));
	assert_int_equal(ledger_get(l, "spillway-bb", &a), -ENOENT);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

/* SQL on the ledger's file from another connection, as another program (or damage) would. */
static void
raw_sql(const char *dir, const char *sql)
{
	char *path = xasprintf("%s/ledger.db", dir), *err = NULL;
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
	sqlite3_close(db);
	free(path);
}

/* No price, reservation, cost or budget below $0 can be written, whoever writes. */
static void
test_ledger_never_negative(void **state)
{
	char *dir = temp_dir(), *cause = NULL, why[256];
	struct reserve_rules rules = {5.0, 2, 3 * 3600, 15 * 60};
	struct vm_record a = intent("spillway-a", -37.03);
	struct budget_plan plan;
	struct ledger *l;
	int64_t t0 = local_ms(2026, 11, 27, 10, 0, 0);

	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	/* A reservation at a price below $0 is refused by the plan... */
	assert_int_equal(ledger_reserve(l, &a, &rules, t0, &plan, why, sizeof why), -EAGAIN);
	assert_non_null(strstr(why, "is not a price a VM can have"));
	assert_int_equal(ledger_get(l, "spillway-a", &a), -ENOENT);
	/* ...and the schema refuses the record, should anything try to save it. */
	a = intent("spillway-a", -37.03);
	a.state = VM_READY;
	assert_int_not_equal(ledger_save(l, &a, -1, "by hand", t0), 0);
	assert_non_null(strstr(ledger_error(l), "CHECK constraint failed"));
	a.per_hour = 0.06;
	a.cost = -1;
	assert_int_not_equal(ledger_save(l, &a, -1, "by hand", t0), 0);
	assert_int_equal(ledger_get(l, "spillway-a", &a), -ENOENT);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

/*
 * A ledger an older spillway wrote with a broken catalog (prices, costs and
 * reservations below $0): migrated, it holds $0 for them, says so, and
 * refuses them from then on.
 */
static void
test_ledger_migration_repairs(void **state)
{
	char *dir = temp_dir(), *cause = NULL;
	struct ledger *l;
	struct vm_record a = intent("spillway-a", 0.06), got;
	struct ledger_event *ev;
	double total = -1;
	size_t n;

	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	a.state = VM_TERMINATED;
	assert_int_equal(ledger_save(l, &a, -1, "by hand", 1000), 0);
	ledger_close(l);
	/* Schema 3's tables had no CHECKs: copies without them, holding what 3 let in. */
	raw_sql(dir,
	    "CREATE TABLE v3 AS SELECT * FROM vms; DROP TABLE vms;"
	    "ALTER TABLE v3 RENAME TO vms; CREATE TABLE c3 AS SELECT * FROM costs;"
	    "DROP TABLE costs; ALTER TABLE c3 RENAME TO costs;"
	    "UPDATE vms SET per_hour = -36.97, cost = -30.84;"
	    "INSERT INTO costs VALUES ('spillway-a', '2026-11-27', -30.84);"
	    "DROP TABLE archive; DROP TABLE offloads; DROP TABLE images; PRAGMA user_version = 3;");
	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	assert_int_equal(ledger_get(l, "spillway-a", &got), 0);
	assert_true(got.per_hour == 0 && got.cost == 0);
	{
		struct day_cost *days;
		int count;

		assert_int_equal(
		    ledger_days(l, local_ms(2026, 11, 27, 12, 0, 0), 1, &days, &count), 0);
		assert_true(days[0].amount == 0);
		free(days);
	}
	assert_int_equal(ledger_spent(l, local_ms(2026, 11, 27, 12, 0, 0), &total), 0);
	assert_true(total == 0);
	assert_int_equal(ledger_events(l, "spillway-a", 10, &ev, &n), 0);
	assert_true(n >= 1);
	assert_string_equal(ev[0].kind, "repair");
	free(ev);
	got.cost = -1;
	assert_int_not_equal(ledger_save(l, &got, VM_TERMINATED, NULL, 2000), 0);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

/*
 * A ledger that cannot be read is no spend: the sums are errors, and a
 * reservation is refused naming the ledger's error, with nothing written.
 */
static void
test_ledger_fails_closed(void **state)
{
	char *dir = temp_dir(), *cause = NULL, why[256];
	struct reserve_rules rules = {5.0, 5, 3 * 3600, 15 * 60};
	struct vm_record a = intent("spillway-a", 0.06), b = intent("spillway-bb", 0.06);
	struct budget_plan plan;
	struct ledger *l;
	int64_t t0 = local_ms(2026, 11, 27, 10, 0, 0);
	double v = -1;
	int error;

	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	assert_int_equal(ledger_reserve(l, &a, &rules, t0, &plan, why, sizeof why), 0);
	raw_sql(dir, "DROP TABLE costs");
	assert_int_not_equal(ledger_spent(l, t0, &v), 0);
	assert_non_null(strstr(ledger_error(l), "no such table: costs"));
	error = ledger_reserve(l, &b, &rules, t0, &plan, why, sizeof why);
	assert_true(error < 0 && error != -EAGAIN && error != -EBUSY);
	assert_false(plan.ok);
	assert_non_null(strstr(why, "no such table: costs"));
	assert_int_equal(ledger_get(l, "spillway-bb", &b), -ENOENT);
	/* The committed sum reads the VMs alone: it holds; the days need the costs. */
	assert_int_equal(ledger_committed(l, t0, &v), 0);
	assert_int_not_equal(ledger_days(l, t0, 3, &(struct day_cost *){0}, &(int){0}), 0);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

/*
 * `costs --days 1` just after midnight: a VM that ran across it is one of
 * today's (part of today's spend), one that ended yesterday is not.
 */
static void
test_costs_list_vms_across_midnight(void **state)
{
	char *dir = temp_dir(), *cause = NULL, why[256];
	struct reserve_rules rules = {5.0, 5, 3 * 3600, 15 * 60};
	struct vm_record across = intent("spillway-across", 0.06),
	                 before = intent("spillway-before", 0.06);
	struct config cfg = {.daily_budget = 5.0};
	struct budget_plan plan;
	struct ledger *l;
	struct vm_record *runs[] = {&across, &before};
	int64_t t0, now, ends[2];
	struct view_src src;
	json_t *doc, *vms;

	set_tz("UTC");
	t0 = local_ms(2026, 11, 27, 23, 50, 0);
	now = local_ms(2026, 11, 28, 0, 10, 0);
	ends[0] = now - 5 * MN; /* ran across midnight */
	ends[1] = t0 + 5 * MN;  /* ended before it */
	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	for (size_t i = 0; i < 2; i++) {
		struct vm_record *v = runs[i];

		assert_int_equal(ledger_reserve(l, v, &rules, t0, &plan, why, sizeof why), 0);
		v->state = VM_TERMINATED;
		v->started_ms = t0 + MN;
		v->ended_ms = ends[i];
		assert_int_equal(ledger_save(l, v, VM_REQUESTED, "deleted", v->ended_ms), 0);
	}
	memset(&src, 0, sizeof src);
	src.cfg = &cfg;
	src.ledger = l;
	src.now = now;
	doc = view_costs(&src, 1);
	vms = json_object_get(doc, "vms");
	assert_int_equal(json_array_size(vms), 1);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(vms, 0), "name")), "spillway-across");
	json_decref(doc);
	doc = view_costs(&src, 2);
	assert_int_equal(json_array_size(json_object_get(doc, "vms")), 2);
	json_decref(doc);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

/*
 * The manager's door to the ledger (src/vm/records.c): what the ledger cannot
 * take waits, in order, is seen in place of the ledger's rows, and is written
 * once it can be; a cost closed meanwhile is the run's true cost.
 */
static void
test_records_wait(void **state)
{
	char *dir = temp_dir(), *cause = NULL;
	struct ledger *l;
	struct records *r;
	struct vm_record a = intent("spillway-a", 0.06), got, *waiting;
	struct ledger_event *ev;
	size_t n;
	int64_t t0 = local_ms(2026, 11, 27, 10, 0, 0);

	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	r = records_new(l);
	a.state = VM_READY;
	a.started_ms = t0;
	assert_int_equal(records_save(r, &a, -1, "up", t0), 0);
	assert_null(records_problem(r, NULL));
	/* The ledger stops taking writes: events cannot be written, nor records. */
	raw_sql(dir, "ALTER TABLE events RENAME TO events_away");
	a.state = VM_TERMINATING;
	assert_int_not_equal(records_save(r, &a, VM_READY, "idle", t0 + 10 * MN), 0);
	assert_non_null(records_problem(r, &n));
	assert_int_equal(n, 1);
	assert_true(records_waiting(r, "spillway-a"));
	a.state = VM_TERMINATED;
	a.ended_ms = t0 + 30 * MN;
	assert_int_not_equal(records_close_cost(r, &a, false), 0);
	assert_true(fabs(a.cost - 0.03) < 1e-12); /* what it will be billed, worked out now */
	assert_int_not_equal(records_save(r, &a, VM_TERMINATING, "deleted", a.ended_ms), 0);
	assert_int_not_equal(records_event(r, "-", "refusal", "ledger: full", a.ended_ms), 0);
	/* The views see the latest record, not the ledger's. */
	assert_int_equal(records_waiting_vms(r, &waiting), 1);
	assert_int_equal(waiting[0].state, VM_TERMINATED);
	free(waiting);
	assert_int_equal(ledger_get(l, "spillway-a", &got), 0);
	assert_int_equal(got.state, VM_READY);
	/* It takes writes again: everything, in the order it happened. */
	raw_sql(dir, "ALTER TABLE events_away RENAME TO events");
	assert_int_equal(records_flush(r, t0 + 40 * MN), 0);
	assert_null(records_problem(r, &n));
	assert_int_equal(n, 0);
	assert_false(records_waiting(r, "spillway-a"));
	assert_int_equal(ledger_get(l, "spillway-a", &got), 0);
	assert_int_equal(got.state, VM_TERMINATED);
	assert_true(fabs(got.cost - 0.03) < 1e-12);
	assert_int_equal(ledger_events(l, NULL, 10, &ev, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(ev[0].detail, "ledger: full");
	assert_string_equal(ev[1].detail, "TERMINATING -> TERMINATED: deleted");
	assert_string_equal(ev[2].detail, "READY -> TERMINATING: idle");
	assert_string_equal(ev[3].detail, "NEW -> READY: up");
	free(ev);
	records_free(r);
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

			/* The child's copy of what the parent holds goes too: valgrind checks it.
			 */
			if (ledger_open(dir, &l, &cause) != 0) {
				free(dir);
				_exit(100);
			}
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
			free(dir);
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

/* A VM that ran from `start` for `run_ms`, ended (TERMINATED, its cost closed) with an event. */
static void
ran(struct ledger *l, const char *name, int64_t start, int64_t run_ms)
{
	struct vm_record v = intent(name, 0.06);
	int64_t s = start, e = start + run_ms;
	double total;

	v.state = VM_READY;
	v.requested_ms = v.state_ms = start - 60000;
	v.started_ms = start;
	assert_int_equal(ledger_save(l, &v, -1, "created", start - 60000), 0);
	assert_int_equal(ledger_close_cost(l, name, 0.06, &s, &e, true, false, &total), 0);
	assert_int_equal(ledger_get(l, name, &v), 0);
	v.state = VM_TERMINATED;
	v.ended_ms = v.state_ms = start + run_ms;
	assert_int_equal(ledger_save(l, &v, VM_READY, "idle", start + run_ms), 0);
}

/*
 * Retention: a VM ended 100 days ago is summarised (its row and events go),
 * one ended yesterday stays, and the totals and the days' costs are what
 * they were.
 */
static void
test_ledger_retention(void **state)
{
	char *dir = temp_dir(), *cause = NULL;
	int64_t now = local_ms(2026, 11, 27, 12, 0, 0), old = now - 100 * 24 * H;
	struct vm_stats before, after;
	struct day_cost *d0, *d1;
	struct ledger_event *ev;
	struct vm_record got;
	struct ledger *l;
	int n0, n1, pruned;
	size_t nev;

	(void)state;
	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	ran(l, "spillway-old", old, 2 * H);
	ran(l, "spillway-new", now - 24 * H, 3 * H);
	assert_int_equal(ledger_stats(l, &before), 0);
	assert_int_equal(ledger_days(l, now, 120, &d0, &n0), 0);
	assert_int_equal(ledger_prune(l, now, 90, &pruned), 0);
	assert_int_equal(pruned, 1);
	assert_int_equal(ledger_get(l, "spillway-old", &got), -ENOENT);
	assert_int_equal(ledger_events(l, "spillway-old", 100, &ev, &nev), 0);
	assert_int_equal(nev, 0);
	free(ev);
	assert_int_equal(ledger_get(l, "spillway-new", &got), 0);
	assert_int_equal(ledger_stats(l, &after), 0);
	assert_true(fabs(after.total_cost - before.total_cost) < 1e-9);
	assert_true(before.total_cost > 0.1);
	assert_int_equal(after.terminated, before.terminated);
	assert_int_equal(after.created, before.created);
	assert_int_equal(ledger_days(l, now, 120, &d1, &n1), 0);
	assert_int_equal(n0, n1);
	for (int i = 0; i < n0; i++) {
		assert_string_equal(d0[i].day, d1[i].day);
		assert_true(fabs(d0[i].amount - d1[i].amount) < 1e-9);
	}
	free(d0);
	free(d1);
	/* Again: nothing more to summarise, nothing counted twice. */
	assert_int_equal(ledger_prune(l, now, 90, &pruned), 0);
	assert_int_equal(pruned, 0);
	assert_int_equal(ledger_stats(l, &after), 0);
	assert_true(fabs(after.total_cost - before.total_cost) < 1e-9);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

/*
 * Images: saved and read back, listed newest first (the deleted ones only
 * when asked), and their storage billed per second from READY to deleted,
 * split at local midnight, in the day's spend and the per-day costs.
 */
static void
test_ledger_images(void **state)
{
	char *dir = temp_dir(), *cause = NULL;
	struct ledger *l;
	struct image_record a = {.state = IMAGE_READY, .size_gib = 10, .per_gib_month = 0.05},
	                    b = {.state = IMAGE_BAKING}, got, *list;
	int64_t ready = local_ms(2026, 11, 27, 12, 0, 0), now = local_ms(2026, 11, 28, 12, 0, 0);
	double per_hour = 10 * 0.05 / 730, spent;
	struct day_cost *days;
	int count;
	size_t n;

	(void)state;
	set_tz("UTC");
	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	snprintf(a.name, sizeof a.name, "spillway-backend-a");
	snprintf(a.vm, sizeof a.vm, "spillway-a");
	a.requested_ms = ready - 10 * MN;
	a.ready_ms = ready;
	snprintf(b.name, sizeof b.name, "spillway-backend-b");
	snprintf(b.vm, sizeof b.vm, "spillway-b");
	b.requested_ms = ready + MN;
	assert_int_equal(ledger_image_save(l, &a), 0);
	assert_int_equal(ledger_image_save(l, &b), 0);
	assert_int_equal(ledger_image_of(l, "spillway-b", &got), 0);
	assert_string_equal(got.name, "spillway-backend-b");
	assert_int_equal(got.state, IMAGE_BAKING);
	assert_int_equal(ledger_image_get(l, "nothing", &got), -ENOENT);
	assert_int_equal(ledger_images(l, false, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "spillway-backend-b");
	free(list);
	/* 12 h on the 27th, 12 h on the 28th by now. */
	assert_true(fabs(image_storage_on(&a, "2026-11-27", now) - 12 * per_hour) < 1e-9);
	assert_true(fabs(image_storage_on(&a, "2026-11-28", now) - 12 * per_hour) < 1e-9);
	assert_true(image_storage_on(&a, "2026-11-26", now) == 0);
	assert_true(image_storage_on(&b, "2026-11-28", now) == 0); /* not READY: nothing stored */
	assert_int_equal(ledger_spent(l, now, &spent), 0);
	assert_true(fabs(spent - 12 * per_hour) < 1e-9);
	/* Deleted at 18:00 on the 28th: no more after, and listed only with all. */
	a.state = IMAGE_DELETED;
	a.deleted_ms = local_ms(2026, 11, 28, 18, 0, 0);
	assert_int_equal(ledger_image_save(l, &a), 0);
	assert_int_equal(ledger_days(l, local_ms(2026, 11, 29, 12, 0, 0), 3, &days, &count), 0);
	assert_true(days[0].amount == 0);
	assert_true(fabs(days[1].amount - 18 * per_hour) < 1e-9);
	assert_true(fabs(days[2].amount - 12 * per_hour) < 1e-9);
	free(days);
	assert_int_equal(ledger_images(l, false, &list, &n), 0);
	assert_int_equal(n, 1);
	free(list);
	assert_int_equal(ledger_images(l, true, &list, &n), 0);
	assert_int_equal(n, 2);
	free(list);
	ledger_close(l);
	remove_tree(dir);
	free(dir);
}

/*
 * Offloads: what each stop of a local copy gave back, by VM and by component,
 * newest first; closed once the copy serves again; gone with their VM's rows.
 */
static void
test_ledger_offloads(void **state)
{
	char *dir = temp_dir(), *cause = NULL;
	int64_t now = local_ms(2026, 11, 27, 12, 0, 0), old = now - 100 * 24 * H;
	struct offload_record a = {.vm = "spillway-old",
	    .component = "vision",
	    .stopped_ms = old,
	    .pss_kb = 800000,
	    .avail_before_kb = 1000000,
	    .avail_after_kb = 1790000};
	struct offload_record b = {.vm = "spillway-new",
	    .component = "vision",
	    .stopped_ms = now - H,
	    .pss_kb = -1,
	    .avail_before_kb = 500000,
	    .avail_after_kb = 480000};
	struct offload_record c = {.vm = "spillway-new",
	    .component = "chatbots",
	    .stopped_ms = now - H,
	    .pss_kb = 300000,
	    .avail_before_kb = 480000,
	    .avail_after_kb = 760000};
	struct offload_record *list;
	struct ledger *l;
	size_t n;
	int pruned;

	(void)state;
	assert_int_equal(ledger_open(dir, &l, &cause), 0);
	ran(l, "spillway-old", old, 2 * H);
	ran(l, "spillway-new", now - 2 * H, H);
	assert_int_equal(ledger_offload_stopped(l, &a), 0);
	assert_int_equal(ledger_offload_back(l, "vision", old + H, 4000), 0);
	assert_int_equal(ledger_offload_stopped(l, &b), 0);
	assert_int_equal(ledger_offload_stopped(l, &c), 0);
	assert_int_equal(offload_freed_kb(&a), 790000);
	assert_int_equal(offload_freed_kb(&b), -20000); /* noise is kept as it was seen */

	assert_int_equal(ledger_offloads(l, NULL, "vision", 10, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].vm, "spillway-new"); /* newest first */
	assert_int_equal(list[0].back_ms, 0);
	assert_int_equal(list[0].pss_kb, -1);
	assert_string_equal(list[1].vm, "spillway-old");
	assert_int_equal(list[1].back_ms, old + H);
	assert_int_equal(list[1].start_took_ms, 4000);
	assert_int_equal(list[1].avail_after_kb, 1790000);
	free(list);
	assert_int_equal(ledger_offloads(l, "spillway-new", NULL, 10, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].component, "chatbots");
	free(list);
	assert_int_equal(ledger_offloads(l, NULL, NULL, 1, &list, &n), 0);
	assert_int_equal(n, 1);
	free(list);
	/* Back again: only what was still open is closed. */
	assert_int_equal(ledger_offload_back(l, "vision", now, 2500), 0);
	assert_int_equal(ledger_offloads(l, NULL, "vision", 10, &list, &n), 0);
	assert_true(n == 2 && list[0].back_ms == now && list[1].back_ms == old + H);
	free(list);
	/* Retention takes a VM's offloads with it. */
	assert_int_equal(ledger_prune(l, now, 90, &pruned), 0);
	assert_int_equal(pruned, 1);
	assert_int_equal(ledger_offloads(l, "spillway-old", NULL, 10, &list, &n), 0);
	assert_int_equal(n, 0);
	free(list);
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
	    cmocka_unit_test(test_price_catalog_compact),
	    cmocka_unit_test(test_price_catalog_refused),
	    cmocka_unit_test(test_budget_plan_no_price),
	    cmocka_unit_test(test_ledger_file),
	    cmocka_unit_test(test_ledger_rest),
	    cmocka_unit_test(test_ledger_reserve_and_close),
	    cmocka_unit_test(test_ledger_budget_refusal),
	    cmocka_unit_test(test_ledger_never_negative),
	    cmocka_unit_test(test_ledger_migration_repairs),
	    cmocka_unit_test(test_ledger_fails_closed),
	    cmocka_unit_test(test_costs_list_vms_across_midnight),
	    cmocka_unit_test(test_ledger_retention),
	    cmocka_unit_test(test_ledger_offloads),
	    cmocka_unit_test(test_ledger_images),
	    cmocka_unit_test(test_records_wait),
	    cmocka_unit_test(test_ledger_two_processes),
	};

	set_tz("UTC");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
