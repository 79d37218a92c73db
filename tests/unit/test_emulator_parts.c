/*
 * The emulator's pure parts: list filters, partial responses, fault specs,
 * machine types, Pacific time.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emulator/faults.h"
#include "emulator/fields.h"
#include "emulator/filter.h"
#include "emulator/internal.h"
#include "util/jx.h"

static json_t *
resource(void)
{
	const char *s =
	    "{\"name\":\"spillway-1\",\"status\":\"RUNNING\",\"labels\":{\"managed-by\":"
	    "\"spillway\",\"team\":\"ml\"},\"scheduling\":{\"automaticRestart\":false},"
	    "\"networkInterfaces\":[{\"networkIP\":\"10.0.0.1\"},{\"networkIP\":"
	    "\"10.0.0.2\"}],\"insertTime\":\"2024-03-01T10:00:00.000-08:00\",\"cpus\":4,"
	    "\"operationType\":\"compute.instances.preempted\"}";
	json_t *v;

	assert_int_equal(jx_parse(s, strlen(s), &v, NULL), 0);
	return v;
}

static void
expect(const char *expr, bool want)
{
	struct filter *f;
	char *cause = NULL;
	json_t *v = resource();

	if (filter_parse(expr, &f, &cause) != 0)
		fail_msg("'%s' does not parse: %s", expr, cause);
	if (filter_match(f, v) != want)
		fail_msg("'%s' should %smatch", expr, want ? "" : "not ");
	filter_free(f);
	json_decref(v);
}

static void
test_filter_aip160(void **state)
{
	expect("", true);
	expect("status = RUNNING", true);
	expect("status=RUNNING", true);
	expect("status = TERMINATED", false);
	expect("status != TERMINATED", true);
	expect("labels.managed-by = spillway", true);
	expect("labels.managed-by = \"spillway\"", true);
	expect("labels.owner:*", false);
	expect("labels.team:*", true);
	expect("labels.missing != x", true);
	expect("(labels.managed-by = spillway) (status = RUNNING)", true);
	expect("(labels.managed-by = spillway) (status = STAGING)", false);
	expect("labels.team = ml AND status = RUNNING", true);
	expect("status = STAGING OR labels.team = ml", true);
	expect("NOT status = RUNNING", false);
	expect("-status = RUNNING", false);
	expect("(status = STAGING OR status = RUNNING) AND labels.team = ml", true);
	expect("name = spillway-*", true);
	expect("name : way", true);
	expect("networkInterfaces.networkIP = 10.0.0.2", true);
	expect("scheduling.automaticRestart = false", true);
	expect("cpus > 2", true);
	expect("cpus >= 5", false);
	expect("insertTime > \"2024-03-01T17:59:59Z\"", true);
	expect("insertTime < \"2024-03-01T18:00:00Z\"", false);
	expect("operationType=\"compute.instances.preempted\"", true);
}

static void
test_filter_regex(void **state)
{
	expect("name eq spillway-.*", true);
	expect("name eq 'spillway'", false);
	expect("name ne 'other-.*' status eq RUN.*", true);
	expect("name eq \"spillway-[0-9]+\"", true);
	/* As gcloud sends them: RE2, word boundaries, escaped dashes, terms in parentheses. */
	expect("name eq \".*\\bspillway\\-1\\b.*\"", true);
	expect("name eq \".*\\bway\\b.*\"", false);
	expect("operationType eq \".*\\bpreempted\\b.*\"", true);
	expect("(status eq RUNNING)(name eq \"spillway\\-\\d\")", true);
	expect("(status eq RUNNING) (name eq \"spillway\\-\\d\\d\")", false);
	expect("name eq \"(?:spill|fill)way-1\"", true);
	expect("name eq \"spil{2}way-.*?\"", true);
	expect("name eq \"spillway-[0-9]{1,3}\"", true);
	expect("name eq \"spillway-[^a-z]\"", true);
	expect("name eq \"spillway{-1\"", false);
}

static void
test_filter_errors(void **state)
{
	static const char *bad[] = {"status", "status =", "(status = RUNNING", "status = RUNNING)",
	    "= x", "name eq a status = b", "status = a name eq b", "name eq '('", "status ~ x",
	    /* RE2 that POSIX cannot evaluate: refused, never matched as something else */
	    "name eq \"(?i)SPILLWAY-1\"", "name eq \"\\pL+\"", "(name eq a",
	    /* what would make regcomp's memory run away: RE2 refuses it too */
	    "name eq \"e++++++++\"", "name eq \"e*?+\"", "name eq \"((a{100}){100})\"",
	    "name eq \"a{1001}\"", "name eq \"[\\d]\"", "name eq \"[a-z\""};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct filter *f = NULL;
		char *cause = NULL;

		if (filter_parse(bad[i], &f, &cause) == 0)
			fail_msg("'%s' should not parse", bad[i]);
		assert_non_null(strstr(cause, "invalid filter"));
		free(cause);
	}
}

/* What a selection keeps of resource(), as compact JSON with sorted keys. */
static void
expect_fields(const char *spec, const char *want)
{
	struct fields *f;
	char *cause = NULL, *got;
	json_t *v = resource(), *part;

	if (fields_parse(spec, &f, &cause) != 0)
		fail_msg("'%s' does not parse: %s", spec, cause);
	part = fields_select(f, v);
	got = json_dumps(part, JSON_COMPACT | JSON_SORT_KEYS);
	if (strcmp(got, want) != 0)
		fail_msg("fields=%s: %s, not %s", spec, got, want);
	free(got);
	json_decref(part);
	json_decref(v);
	fields_free(f);
}

static void
test_fields(void **state)
{
	static const char *bad[] = {
	    "", "name,", "(name)", "labels(", "labels()", "a//b", "labels)x", "name status"};

	expect_fields("name", "{\"name\":\"spillway-1\"}");
	expect_fields("name,status,absent", "{\"name\":\"spillway-1\",\"status\":\"RUNNING\"}");
	expect_fields("labels/team", "{\"labels\":{\"team\":\"ml\"}}");
	expect_fields("labels(team,absent)", "{\"labels\":{\"team\":\"ml\"}}");
	/* Through an array, each element; the same name twice is both selections. */
	expect_fields("networkInterfaces/networkIP",
	    "{\"networkInterfaces\":[{\"networkIP\":\"10.0.0.1\"},{\"networkIP\":\"10.0.0.2\"}]}");
	expect_fields("labels(team),labels/managed-by",
	    "{\"labels\":{\"managed-by\":\"spillway\",\"team\":\"ml\"}}");
	/* Whole wins over a part of it; a wildcard is every member. */
	expect_fields(
	    "labels,labels(team)", "{\"labels\":{\"managed-by\":\"spillway\",\"team\":\"ml\"}}");
	expect_fields("scheduling/*", "{\"scheduling\":{\"automaticRestart\":false}}");
	expect_fields("name, cpus", "{\"cpus\":4,\"name\":\"spillway-1\"}");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct fields *f = NULL;
		char *cause = NULL;

		if (fields_parse(bad[i], &f, &cause) == 0)
			fail_msg("'%s' should not parse", bad[i]);
		assert_non_null(strstr(cause, "Invalid field selection"));
		free(cause);
	}
}

static void
test_faults(void **state)
{
	struct faults f;
	char *cause = NULL, *s;

	faults_init(&f);
	assert_int_equal(faults_parse("error503=0.25,rate403=1,latency=10-50,quota-cpus=8,"
	                              "stockout=us-central1-a+us-central1-b,stockout-details=z-c,"
	                              "token-lifetime=5,preempt=0.5@30,guest-die=1",
	                     &f, &cause),
	    0);
	assert_true(f.error503 == 0.25 && f.rate403 == 1.0);
	assert_int_equal(f.latency_min_ms, 10);
	assert_int_equal(f.latency_max_ms, 50);
	assert_int_equal(f.quota_cpus, 8);
	assert_int_equal(faults_stockout(&f, "us-central1-b"), 1);
	assert_int_equal(faults_stockout(&f, "z-c"), 2);
	assert_int_equal(faults_stockout(&f, "us-central1-c"), 0);
	assert_int_equal(f.token_lifetime_s, 5);
	assert_int_equal(f.preempt_within_s, 30);
	s = faults_format(&f);
	assert_string_equal(s,
	    "error503=0.25,rate403=1,latency=10-50,quota-cpus=8,"
	    "stockout=us-central1-a+us-central1-b,stockout-details=z-c,"
	    "token-lifetime=5,preempt=0.5@30,guest-die=1@600");
	free(s);
	/* A bad spec changes nothing. */
	assert_int_equal(faults_parse("error503=2", &f, &cause), -EINVAL);
	assert_non_null(strstr(cause, "error503"));
	free(cause);
	assert_int_equal(faults_parse("teleport=1", &f, &cause), -EINVAL);
	assert_non_null(strstr(cause, "unknown fault 'teleport'"));
	free(cause);
	assert_int_equal(faults_parse("latency", &f, &cause), -EINVAL);
	free(cause);
	assert_int_equal(f.quota_cpus, 8);
	assert_int_equal(faults_parse("", &f, &cause), 0);
	s = faults_format(&f);
	assert_string_equal(s, "");
	free(s);
	faults_free(&f);
}

static void
test_machines(void **state)
{
	int cpus, mb;
	bool shared;

	assert_int_equal(machine_lookup("e2-highmem-4", &cpus, &mb, &shared), 0);
	assert_int_equal(cpus, 4);
	assert_int_equal(mb, 32768);
	assert_false(shared);
	assert_int_equal(machine_lookup("n2-standard-8", &cpus, &mb, &shared), 0);
	assert_int_equal(mb, 32768);
	assert_int_equal(machine_lookup("n2d-highcpu-224", &cpus, &mb, &shared), 0);
	assert_int_equal(cpus, 224);
	assert_int_equal(mb, 229376);
	assert_int_equal(machine_lookup("e2-small", &cpus, &mb, &shared), 0);
	assert_true(shared);
	assert_int_equal(mb, 2048);
	assert_int_equal(machine_lookup("e2-highmem-32", &cpus, &mb, &shared), -ENOENT);
	assert_int_equal(machine_lookup("n2-highcpu-128", &cpus, &mb, &shared), -ENOENT);
	assert_int_equal(machine_lookup("e2-standard-x", &cpus, &mb, &shared), -ENOENT);
}

static void
test_pacific_time(void **state)
{
	/* 2024: PDT from 10 March 10:00 UTC to 3 November 09:00 UTC. */
	assert_int_equal(pacific_offset_min(INT64_C(1710064799) * 1000), -480);
	assert_int_equal(pacific_offset_min(INT64_C(1710064800) * 1000), -420);
	assert_int_equal(pacific_offset_min(INT64_C(1730624399) * 1000), -420);
	assert_int_equal(pacific_offset_min(INT64_C(1730624400) * 1000), -480);
	assert_int_equal(pacific_offset_min(INT64_C(1704067200) * 1000), -480);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_filter_aip160),
	    cmocka_unit_test(test_filter_regex),
	    cmocka_unit_test(test_filter_errors),
	    cmocka_unit_test(test_fields),
	    cmocka_unit_test(test_faults),
	    cmocka_unit_test(test_machines),
	    cmocka_unit_test(test_pacific_time),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
