/*
 * The decision, pure: every rule refuses with its name and numbers; confidence;
 * components. And what a health answer says, the rule READY rests on.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "decide/decide.h"
#include "vm/health.h"

#define NOW 1800000000000LL

static struct component_def presets[] = {
    {.name = "chatbots", .size_mb = 1536, .priority = 2, .match = "chatbot"},
    {.name = "vision", .size_mb = 2048, .priority = 1, .match = "vision"},
    {.name = "local_llm", .size_mb = 8192, .priority = 4, .match = "llama"},
    {.name = "ml_models", .size_mb = 4096, .priority = 3, .match = "torch"},
};

static struct pressure_snapshot snap;

/* HIGH for 90 s, nothing alive, money enough: a VM. */
static struct decide_input
base(void)
{
	struct decide_input in = {0};

	memset(&snap, 0, sizeof snap);
	snap.t_ms = NOW;
	snap.some_pct = 25;
	snap.full_pct = 2;
	snap.mem_total_kb = 32 << 20;
	snap.mem_available_kb = 8 << 20; /* 25 %: above the 20 % target */
	snap.available_pct = 25;
	in.now = NOW;
	in.enabled = true;
	in.level = PRESSURE_HIGH;
	in.level_since = NOW - 90000;
	in.snap = &snap;
	in.high_pct = 10;
	in.max_concurrent = 2;
	in.per_hour = 0.0595;
	in.max_price = 0.10;
	in.budget = 5;
	in.max_run_s = 3 * 3600;
	in.min_run_s = 15 * 60;
	in.zones_available = 3;
	in.region = "us-central1";
	in.min_confidence = 0.6;
	in.target_available_pct = 20;
	in.components = presets;
	in.ncomponents = 4;
	return in;
}

static void
refused(const struct decide_input *in, const char *rule, const char *text)
{
	struct decision d;

	decide(in, &d);
	assert_false(d.create);
	assert_string_equal(d.rule, rule);
	if (strstr(d.reason, text) == NULL)
		fail_msg("reason '%s' lacks '%s'", d.reason, text);
	/* The reason begins with its rule, once: nobody who prints it adds it again. */
	{
		char twice[64];

		snprintf(twice, sizeof twice, "%s: %s:", rule, rule);
		assert_true(
		    strncmp(d.reason, rule, strlen(rule)) == 0 && d.reason[strlen(rule)] == ':');
		if (strstr(d.reason, twice) != NULL)
			fail_msg("reason '%s' says its rule twice", d.reason);
	}
}

static void
test_create(void **state)
{
	struct decide_input in = base();
	struct decision d;

	decide(&in, &d);
	assert_true(d.create);
	assert_int_equal(d.run_s, 3 * 3600);
	assert_true(fabs(d.cost - 0.1785) < 1e-9);
	assert_true(fabs(d.left - (5 - 0.1785)) < 1e-9);
	/* Memory is not short (25 % > 20 %): the original default pair, by priority. */
	assert_string_equal(d.components, "vision,chatbots");
	assert_non_null(strstr(d.reason, "pressure HIGH for 90 s"));
	assert_non_null(strstr(d.reason, "$4.82 left today"));
}

static void
test_each_rule(void **state)
{
	struct decide_input in;

	in = base();
	in.enabled = false;
	refused(&in, "disabled", "GCP_VM_ENABLED is false");
	in = base();
	in.level = PRESSURE_ELEVATED;
	refused(&in, "level", "level: pressure ELEVATED");
	in = base();
	in.min_confidence = 0.9;
	in.level_since = NOW;
	refused(&in, "confidence", "0.60 is below the minimum 0.90");
	in = base();
	in.alive = in.in_flight = 1;
	refused(&in, "in-flight", "1 VM is already being created or booting");
	in = base();
	in.alive = 2;
	refused(&in, "concurrency", "max concurrent 2 reached (2 alive)");
	in = base();
	in.backoff_until = NOW + 299500;
	in.backoff_why = "quota CPUS exceeded in us-central1";
	refused(&in, "backoff", "quota CPUS exceeded in us-central1; no VM before 300 s from now");
	in = base();
	in.zones_available = 0;
	refused(&in, "stockout", "every zone of us-central1 lacks capacity");
	in = base();
	in.cooldown_until = NOW + 60000;
	in.cooldown_why = "a VM ended just now";
	refused(&in, "cooldown", "a VM ended just now; next VM in 60 s");
	in = base();
	in.per_hour = 0.181;
	refused(&in, "price", "$0.1810/h is above GCP_VM_MAX_PRICE $0.1000/h");
	in = base();
	in.spent = 4.99;
	refused(&in, "budget",
	    "budget: $0.0100 left of $5.00 today (spent $4.9900, committed $0.0000); a VM at "
	    "$0.0595/h needs $0.0149 for its minimum run of 15 min");
	in = base();
	in.spent = 4.0;
	in.committed = 0.99;
	refused(&in, "budget", "committed $0.99");
}

/*
 * A price of $0 or below (a broken catalog), or none known yet, buys nothing,
 * whatever the budget; and a ledger that cannot say what today cost is no
 * licence to spend.
 */
static void
test_no_price_no_ledger(void **state)
{
	const double bad[] = {0, -37.03, -1e-9, NAN, 1e6};
	struct decide_input in;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		in = base();
		in.per_hour = bad[i];
		in.budget = 0;
		refused(&in, "price", "is not a price a VM can have");
	}
	in = base();
	in.price_why = "cannot get machine type e2-highmem-4: auth: refused";
	refused(&in, "price", "price: cannot get machine type e2-highmem-4");
	in = base();
	in.ledger_why = "the state directory '/x' is full";
	refused(&in, "ledger",
	    "ledger: today's spend cannot be read: the state directory '/x' is full");
	/* And decision_refuse says the rule once, whatever the caller passed. */
	{
		struct decision d = {.create = true};

		decision_refuse(&d, "concurrency", "max concurrent %d reached", 2);
		assert_false(d.create);
		assert_string_equal(d.reason, "concurrency: max concurrent 2 reached");
	}
}

static void
test_budget_shortens_the_run(void **state)
{
	struct decide_input in = base();
	struct decision d;

	in.spent = 4.9;
	decide(&in, &d);
	assert_true(d.create);
	/* $0.10 buys 6050 s at $0.0595/h. */
	assert_int_equal(d.run_s, 6050);
	assert_true(d.cost <= 0.1 + 1e-12);
	assert_true(d.left >= 0);
}

static void
test_confidence(void **state)
{
	struct decide_input in = base();

	/* HIGH just now, no agreeing signal. */
	in.level_since = NOW;
	assert_true(fabs(decide_confidence(&in) - 0.6) < 1e-9);
	/* Half a minute: half the duration bonus. */
	in.level_since = NOW - 30000;
	assert_true(fabs(decide_confidence(&in) - 0.675) < 1e-9);
	/* CRITICAL, a minute, all three signals agree: capped at 1. */
	in.level = PRESSURE_CRITICAL;
	in.level_since = NOW - 120000;
	snap.full_pct = 6;
	snap.available_pct = 10;
	snap.refault_rate = 5000;
	assert_true(fabs(decide_confidence(&in) - 1.0) < 1e-9);
	snap.refault_rate = 0;
	assert_true(fabs(decide_confidence(&in) - 1.0) < 1e-9);
	snap.full_pct = 0;
	assert_true(fabs(decide_confidence(&in) - 1.0) < 1e-9);
	snap.available_pct = 50;
	assert_true(fabs(decide_confidence(&in) - 0.95) < 1e-9);
	in.level = PRESSURE_NORMAL;
	assert_true(decide_confidence(&in) == 0);
}

static void
test_components(void **state)
{
	struct decide_input in = base();
	char out[128];
	int64_t kb;

	/* 2 GiB short of the target (20 % of 32 GiB = 6.4 GiB; 4.4 available): vision alone. */
	snap.mem_available_kb = (int64_t)(4.4 * 1048576);
	kb = decide_components(&in, out, sizeof out);
	assert_string_equal(out, "vision");
	assert_int_equal(kb, 2048 * 1024);
	/* 5 GiB short: vision, chatbots, ml_models (by priority), not the LLM. */
	snap.mem_available_kb = (int64_t)(1.4 * 1048576);
	decide_components(&in, out, sizeof out);
	assert_string_equal(out, "vision,chatbots,ml_models");
	/* Measured memory beats the configured size: a 6 GiB vision process is enough. */
	snap.components[0] = (struct component_usage){.name = "vision", .rss_kb = 6 << 20};
	snap.ncomponents = 1;
	decide_components(&in, out, sizeof out);
	assert_string_equal(out, "vision");
	/* No snapshot: the default pair. */
	in.snap = NULL;
	decide_components(&in, out, sizeof out);
	assert_string_equal(out, "vision,chatbots");
}

/*
 * What is known of a component's memory: a copy's PSS now, scaled by what its
 * earlier offloads freed; else what they freed; else RSS; else its size. One
 * already offloaded is not chosen again: a second VM takes what is left.
 */
static void
test_components_measured(void **state)
{
	struct decide_input in = base();
	struct component_memory mem[4] = {{0}};
	const char *source;
	char out[128];
	int64_t kb;

	in.memory = mem;
	/* presets: chatbots, vision, local_llm, ml_models; memory is in the same order. */
	/* vision's copy holds 3 GiB now, and stops gave back 0.8 kB per kB of PSS: 2.4 GiB. */
	mem[1] = (struct component_memory){.measured_kb = 3 << 20, .freed_ratio = 0.8};
	assert_int_equal(decide_component_kb(&presets[1], &mem[1], 0, &source), 2516582);
	assert_string_equal(source, "measured, as earlier offloads freed");
	/* A ratio far off (one odd stop) is bounded. */
	mem[1].freed_ratio = 9;
	assert_int_equal(decide_component_kb(&presets[1], &mem[1], 0, &source), (3 << 20) * 3 / 2);
	mem[1].freed_ratio = 0.8;
	/* Its copy does not run: what its offloads freed; nothing learned: RSS, then size_mb. */
	mem[0] = (struct component_memory){.freed_kb = 700 << 10};
	assert_int_equal(decide_component_kb(&presets[0], &mem[0], 5 << 20, &source), 700 << 10);
	assert_string_equal(source, "what earlier offloads freed");
	assert_int_equal(decide_component_kb(&presets[3], &mem[3], 5 << 20, &source), 5 << 20);
	assert_int_equal(decide_component_kb(&presets[3], &mem[3], 0, &source), 4096 << 10);
	assert_string_equal(source, "configured");

	/* 2 GiB short: vision's 2.4 GiB measured is enough. */
	snap.mem_available_kb = (int64_t)(4.4 * 1048576);
	kb = decide_components(&in, out, sizeof out);
	assert_string_equal(out, "vision");
	assert_int_equal(kb, 2516582);
	/* 2.5 GiB short: vision and chatbots' learned 700 MB. */
	snap.mem_available_kb = (int64_t)(3.9 * 1048576);
	decide_components(&in, out, sizeof out);
	assert_string_equal(out, "vision,chatbots");
	/* vision offloaded already: the next VM takes chatbots, then ml_models. */
	mem[1].offloaded = true;
	kb = decide_components(&in, out, sizeof out);
	assert_string_equal(out, "chatbots,ml_models");
	assert_int_equal(kb, (700 << 10) + (4096 << 10));
	/* Memory not short: the two first by priority that are not offloaded. */
	in.snap = NULL;
	decide_components(&in, out, sizeof out);
	assert_string_equal(out, "chatbots,ml_models");
}

#define IDLE_42  "{\"status\":\"ok\",\"idle_seconds\":42}"
#define IDLE_NEG "{\"status\":\"ok\",\"idle_seconds\":-5}"
#define DOWN     "{\"status\":\"DOWN\"}"

/* Health answers as backends give them: any 2xx unless its status says not. */
static void
test_health_answers(void **state)
{
	static const struct {
		long status;
		const char *body;
		enum health_verdict want;
	} cases[] = {
	    {200, "{\"status\":\"ok\"}", HEALTH_OK},
	    {200, "{\"status\":\"healthy\"}", HEALTH_OK},
	    {200, "{\"status\":\"UP\"}", HEALTH_OK},
	    {200, "{\"status\":\"pass\"}", HEALTH_OK},
	    {200, "", HEALTH_OK},
	    {204, "", HEALTH_OK},
	    {200, "OK", HEALTH_OK},
	    {200, "[1,2]", HEALTH_OK},
	    {200, "{\"status\":3}", HEALTH_OK},
	    {200, "{\"status\":\"DOWN\"}", HEALTH_BAD},
	    {200, "{\"status\":\"starting\"}", HEALTH_BAD},
	    {200, "{\"status\":\"unhealthy\"}", HEALTH_BAD},
	    {200, "{\"status\":\"Fail\"}", HEALTH_BAD},
	    {200, "{\"status\":\"out_of_service\"}", HEALTH_BAD},
	    {503, "{\"status\":\"ok\"}", HEALTH_BAD},
	    {301, "", HEALTH_BAD},
	    {0, "", HEALTH_BAD},
	    {200, "{\"status\":\"preempted\"}", HEALTH_PREEMPTED},
	    {503, "{\"status\":\"ok\",\"preempted\":true}", HEALTH_PREEMPTED},
	};
	struct health_answer h;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		health_read(cases[i].status, cases[i].body, strlen(cases[i].body), &h);
		if (h.verdict != cases[i].want)
			fail_msg("HTTP %ld %s: verdict %d, not %d", cases[i].status, cases[i].body,
			    h.verdict, cases[i].want);
		assert_true(h.verdict != HEALTH_BAD || h.why[0] != '\0');
	}
	health_read(200, IDLE_42, strlen(IDLE_42), &h);
	assert_int_equal(h.idle_s, 42);
	health_read(200, IDLE_NEG, strlen(IDLE_NEG), &h);
	assert_int_equal(h.idle_s, -1);
	health_read(200, DOWN, strlen(DOWN), &h);
	assert_string_equal(h.why, "it answered status \"DOWN\"");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create),
	    cmocka_unit_test(test_each_rule),
	    cmocka_unit_test(test_no_price_no_ledger),
	    cmocka_unit_test(test_budget_shortens_the_run),
	    cmocka_unit_test(test_confidence),
	    cmocka_unit_test(test_components),
	    cmocka_unit_test(test_components_measured),
	    cmocka_unit_test(test_health_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
