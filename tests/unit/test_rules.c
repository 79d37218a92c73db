/* The rules that end a VM (vm/rules.h), case by case, on either side of each limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "vm/rules.h"

#define NOW INT64_C(1796119200000)
#define MIN INT64_C(60000)

static struct config cfg;

static int
setup(void **state)
{
	(void)state;
	memset(&cfg, 0, sizeof cfg);
	cfg.boot_timeout_minutes = 10;
	cfg.unhealthy_minutes = 3;
	cfg.idle_timeout_minutes = 30;
	cfg.orphan_grace_minutes = 10;
	cfg.create_deadline_minutes = 10;
	cfg.health_check_interval = 30;
	cfg.orphan_policy = (char *)"delete";
	return 0;
}

static struct vm_record
vm(enum vm_state st)
{
	struct vm_record r = {.state = st, .planned_run_s = 3 * 3600};

	r.requested_ms = NOW - 60 * MIN;
	r.started_ms = NOW - 59 * MIN;
	r.ready_ms = NOW - 50 * MIN;
	r.state_ms = NOW - MIN;
	return r;
}

static struct verdict
judge(const struct vm_record *r, const struct rules_seen *s)
{
	struct rules_seen none = {0};
	struct verdict v;

	rules_judge(&cfg, r, s != NULL ? s : &none, NOW, &v);
	return v;
}

static void
test_create_deadline(void **state)
{
	struct vm_record r = vm(VM_PROVISIONING);
	struct rules_seen listed = {.status = "PROVISIONING"}, running = {.status = "RUNNING"};

	(void)state;
	r.requested_ms = NOW - 10 * MIN;
	assert_int_equal(judge(&r, &listed).kind, VERDICT_GIVE_UP);
	assert_string_equal(judge(&r, &listed).reason, "not running by the create deadline");
	assert_int_equal(judge(&r, &running).kind, VERDICT_KEEP);
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP); /* absent: its insert tells */
	r.requested_ms = NOW - 10 * MIN + 1;
	assert_int_equal(judge(&r, &listed).kind, VERDICT_KEEP);
	assert_false(rules_past_create_deadline(&cfg, &r, NOW));
}

static void
test_boot_timeout(void **state)
{
	struct vm_record r = vm(VM_BOOTING);
	struct rules_seen moved = {.progress_ms = NOW - 5 * MIN};
	struct verdict v;

	(void)state;
	r.started_ms = NOW - 10 * MIN;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP); /* exactly at it: kept */
	r.started_ms--;
	v = judge(&r, NULL);
	assert_int_equal(v.kind, VERDICT_END);
	assert_int_equal(v.end, VM_FAILED);
	assert_string_equal(v.reason, "boot timeout: not healthy 10 min after it started");
	/* An install that moved 5 min ago is kept; one that stopped 11 min ago is not. */
	assert_int_equal(judge(&r, &moved).kind, VERDICT_KEEP);
	moved.progress_ms = NOW - 11 * MIN;
	r.started_ms = NOW - 20 * MIN;
	v = judge(&r, &moved);
	assert_int_equal(v.kind, VERDICT_END);
	assert_string_equal(
	    v.reason, "boot timeout: not healthy, and its install has not moved for 10 min");
	/* Never seen to start: no clock to run out. */
	r.started_ms = 0;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
}

static void
test_unhealthy(void **state)
{
	struct vm_record r = vm(VM_UNHEALTHY);
	struct verdict v;

	(void)state;
	r.unhealthy_ms = NOW - 3 * MIN;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
	r.unhealthy_ms--;
	v = judge(&r, NULL);
	assert_int_equal(v.kind, VERDICT_END);
	assert_int_equal(v.end, VM_TERMINATED);
	assert_true(v.replace_now);
	/* Unhealthy is never idle: its use is not known. */
	r.unhealthy_ms = NOW;
	r.last_activity_ms = NOW - 600 * MIN;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
}

static void
test_lifetime(void **state)
{
	struct vm_record r = vm(VM_READY);
	struct verdict v;

	(void)state;
	/* Within a pass (30 s) of its planned run's end. */
	r.started_ms = NOW - 3 * 3600000 + 30001;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
	r.started_ms = NOW - 3 * 3600000 + 30000;
	v = judge(&r, NULL);
	assert_int_equal(v.kind, VERDICT_END);
	assert_string_equal(v.reason, "lifetime: its planned run of 3.00 h is over");
	assert_false(v.replace_now);
	r.state = VM_UNHEALTHY;
	r.unhealthy_ms = NOW;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_END);
}

/*
 * A VM whose components' local copies spillway runs is asked to go early
 * enough for them to start: its lead is their longest start timeout.
 */
static void
test_lifetime_lead(void **state)
{
	struct component_def comps[] = {
	    {.name = "vision",
	        .local_start = "serve",
	        .local_unit = "",
	        .local_start_timeout_s = 120},
	    {.name = "local_llm",
	        .local_start = "",
	        .local_unit = "llm.service",
	        .local_start_timeout_s = 300},
	    {.name = "chatbots", .local_start = "", .local_unit = "", .local_start_timeout_s = 900},
	};
	struct vm_record r = vm(VM_READY);
	struct rules_seen seen = {0};

	(void)state;
	cfg.components = comps;
	cfg.ncomponents = 3;
	snprintf(r.components, sizeof r.components, "vision, Local_LLM");
	assert_int_equal(rules_lead_ms(&cfg, &r), 300000);
	snprintf(r.components, sizeof r.components, "vision,chatbots");
	assert_int_equal(rules_lead_ms(&cfg, &r), 120000); /* chatbots' copy is not spillway's */
	snprintf(r.components, sizeof r.components, "chatbots");
	assert_int_equal(rules_lead_ms(&cfg, &r), 0);
	/* 2.5 min before its end: within a pass and vision's 2 min start. */
	snprintf(r.components, sizeof r.components, "vision");
	seen.lead_ms = rules_lead_ms(&cfg, &r);
	r.started_ms = NOW - 3 * 3600000 + 150000;
	assert_int_equal(judge(&r, &seen).kind, VERDICT_END);
	r.started_ms = NOW - 3 * 3600000 + 150001;
	assert_int_equal(judge(&r, &seen).kind, VERDICT_KEEP);
	cfg.components = NULL;
	cfg.ncomponents = 0;
}

static void
test_idle(void **state)
{
	struct vm_record r = vm(VM_READY);
	struct verdict v;

	(void)state;
	/* Never reported: not idle. */
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
	r.last_activity_ms = NOW - 30 * MIN + 1;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
	r.last_activity_ms = NOW - 30 * MIN;
	v = judge(&r, NULL);
	assert_int_equal(v.kind, VERDICT_END);
	assert_string_equal(v.reason, "idle: its backend unused for 30 min");
	/* Counted from READY: a VM READY 10 min ago, unused since long before, is not idle. */
	r.ready_ms = NOW - 10 * MIN;
	r.last_activity_ms = NOW - 600 * MIN;
	assert_int_equal(rules_last_used(&r), NOW - 10 * MIN);
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
}

/* The routes' traffic comes first: a connection open is use, and so is their last byte. */
static void
test_idle_from_routes(void **state)
{
	struct vm_record r = vm(VM_READY);
	struct rules_seen seen = {.routed_ms = NOW - 30 * MIN};

	(void)state;
	/* Never reported by the agent, but idle through the routes. */
	assert_int_equal(judge(&r, &seen).kind, VERDICT_END);
	/* The agent saw use the routes did not carry. */
	r.last_activity_ms = NOW - 5 * MIN;
	assert_int_equal(judge(&r, &seen).kind, VERDICT_KEEP);
	/* The routes carried what the agent's report is too old to show. */
	r.last_activity_ms = NOW - 90 * MIN;
	seen.routed_ms = NOW - 29 * MIN;
	assert_int_equal(judge(&r, &seen).kind, VERDICT_KEEP);
	/* A long connection, quiet but open (a WebSocket), is use. */
	seen.routed_ms = NOW - 600 * MIN;
	seen.routed_open = 1;
	assert_int_equal(judge(&r, &seen).kind, VERDICT_KEEP);
	seen.routed_open = 0;
	assert_int_equal(judge(&r, &seen).kind, VERDICT_END);
}

static void
test_orphan_grace(void **state)
{
	struct vm_record r = vm(VM_ORPHANED);

	(void)state;
	r.state_ms = NOW - 10 * MIN + 1;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
	r.state_ms = NOW - 10 * MIN;
	assert_int_equal(judge(&r, NULL).kind, VERDICT_END);
	cfg.orphan_policy = (char *)"report";
	assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
	cfg.orphan_policy = (char *)"delete";
}

static void
test_ended_states_kept(void **state)
{
	enum vm_state st[] = {VM_TERMINATING, VM_TERMINATED, VM_FAILED, VM_PREEMPTED};

	(void)state;
	for (size_t i = 0; i < sizeof st / sizeof *st; i++) {
		struct vm_record r = vm(st[i]);

		r.last_activity_ms = NOW - 600 * MIN;
		r.started_ms = NOW - 10 * 3600000;
		assert_int_equal(judge(&r, NULL).kind, VERDICT_KEEP);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_create_deadline, setup),
	    cmocka_unit_test_setup(test_boot_timeout, setup),
	    cmocka_unit_test_setup(test_unhealthy, setup),
	    cmocka_unit_test_setup(test_lifetime, setup),
	    cmocka_unit_test_setup(test_lifetime_lead, setup),
	    cmocka_unit_test_setup(test_idle, setup),
	    cmocka_unit_test_setup(test_idle_from_routes, setup),
	    cmocka_unit_test_setup(test_orphan_grace, setup),
	    cmocka_unit_test_setup(test_ended_states_kept, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
