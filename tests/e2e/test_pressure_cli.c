/*
 * spillway pressure: traces recorded on a real kernel replayed through the
 * monitor, with the level changes asserted at their exact virtual times; the
 * snapshot's shape; and bad input (malformed traces, bad options).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "pressure/monitor.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

static char home[64];

/* The thresholds the expectations below were worked out with (the defaults of today). */
static const char *levels_env[] = {
    "SPILLWAY_PRESSURE_ELEVATED_PCT=2",
    "SPILLWAY_PRESSURE_HIGH_PCT=10",
    "SPILLWAY_PRESSURE_CRITICAL_PCT=40",
    "SPILLWAY_PRESSURE_CRITICAL_FULL_PCT=20",
    "SPILLWAY_PRESSURE_DISARM_RATIO=0.5",
    "SPILLWAY_PRESSURE_ELEVATED_SUSTAIN_S=2",
    "SPILLWAY_PRESSURE_HIGH_SUSTAIN_S=6",
    "SPILLWAY_PRESSURE_CRITICAL_SUSTAIN_S=2",
    "SPILLWAY_PRESSURE_DWELL_S=30",
    "SPILLWAY_PRESSURE_WINDOW_S=2",
    NULL,
};

struct change {
	int64_t offset_ms;
	const char *level;
};

static char *
trace_path(const char *name)
{
	return xasprintf("%s/tests/data/pressure-%s.trace", getenv("SPILLWAY_SOURCE"), name);
}

/* Replay with --json; the changes must be exactly these. */
static void
expect_changes(const char *name, const char *const *extra, const struct change *want, size_t n)
{
	char *path = trace_path(name);
	const char *args[10] = {"pressure", "--replay", path, "--json"};
	struct cmd_run r;
	char **lines;
	size_t got;

	for (int i = 0; extra != NULL && extra[i] != NULL; i++)
		args[4 + i] = extra[i];
	run_spillway(&r, home, args, levels_env);
	if (r.status != 0)
		fail_msg("replay %s: exit %d: %s", name, r.status, r.err);
	lines = str_split(r.out, '\n', &got);
	if (got != n)
		fail_msg("replay %s: %zu changes, not %zu:\n%s", name, got, n, r.out);
	for (size_t i = 0; i < n; i++) {
		json_t *v;

		assert_int_equal(jx_parse(lines[i], strlen(lines[i]), &v, NULL), 0);
		assert_int_equal(json_integer_value(json_object_get(v, "schema_version")), 2);
		assert_string_equal(jx_str(v, "mode"), "replay");
		if (json_integer_value(json_object_get(v, "offset_ms")) != want[i].offset_ms ||
		    strcmp(jx_str(v, "level"), want[i].level) != 0)
			fail_msg("replay %s: change %zu is %s at +%lld ms, not %s at +%lld ms",
			    name, i, jx_str(v, "level"),
			    (long long)json_integer_value(json_object_get(v, "offset_ms")),
			    want[i].level, (long long)want[i].offset_ms);
		json_decref(v);
	}
	str_list_free(lines);
	cmd_run_free(&r);
	free(path);
}

/* Sustained stalls: ELEVATED after its 2 s, then past HIGH within HIGH's 6 s; calm after the dwell.
 */
static void
test_replay_sustained(void **state)
{
	static const struct change want[] = {
	    {7025, "ELEVATED"}, {11045, "CRITICAL"}, {49090, "NORMAL"}};

	expect_changes("sustained", NULL, want, 3);
}

/*
 * A 3-second burst whose stall the kernel counted in one second (0.6 s in
 * all): no level change at all, since no second after it stalled.
 */
static void
test_replay_spike(void **state)
{
	expect_changes("spike", NULL, NULL, 0);
}

/* Six bursts with gaps: one rise and one fall, not a dozen. */
static void
test_replay_sawtooth(void **state)
{
	static const struct change want[] = {{10031, "ELEVATED"}, {63139, "NORMAL"}};

	expect_changes("sawtooth", NULL, want, 2);
}

/* Paced through the loop (1,000 times real time): the same changes at the same virtual times. */
static void
test_replay_paced(void **state)
{
	static const struct change want[] = {
	    {7025, "ELEVATED"}, {11045, "CRITICAL"}, {49090, "NORMAL"}};
	static const char *paced[] = {"--speed", "1000", NULL};

	expect_changes("sustained", paced, want, 3);
}

/* --all: one line per sample of the trace, the level and stall of each. */
static void
test_replay_every_sample(void **state)
{
	char *path = trace_path("sustained"), *text = read_text(path);
	const char *args[] = {"pressure", "--replay", path, "--json", "--all", NULL};
	struct cmd_run r;
	size_t lines, samples = 0;
	char **l;
	bool above_high = false;

	for (char *p = text; (p = strstr(p, "\nt=")) != NULL; p++)
		samples++;
	run_spillway(&r, home, args, levels_env);
	assert_int_equal(r.status, 0);
	l = str_split(r.out, '\n', &lines);
	assert_int_equal(lines, samples);
	for (size_t i = 0; i < lines; i++) {
		json_t *v;

		assert_int_equal(jx_parse(l[i], strlen(l[i]), &v, NULL), 0);
		above_high |= json_real_value(json_object_get(v, "some_pct")) >= 10;
		assert_true(json_real_value(json_object_get(v, "available_pct")) > 0);
		json_decref(v);
	}
	/* The recorded stall was real: over HIGH's threshold. */
	assert_true(above_high);
	str_list_free(l);
	cmd_run_free(&r);
	free(text);
	free(path);
}

static void
test_snapshot(void **state)
{
	const char *args[] = {"pressure", "--json", NULL};
	struct cmd_run r;
	json_t *v;

	run_spillway(&r, home, args, NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(jx_parse(r.out, strlen(r.out), &v, NULL), 0);
	assert_int_equal(json_integer_value(json_object_get(v, "schema_version")), 2);
	assert_non_null(jx_str(v, "level"));
	assert_true(json_integer_value(json_object_get(v, "mem_total_kb")) > 0);
	assert_true(json_integer_value(json_object_get(v, "mem_available_kb")) > 0);
	assert_true(json_is_array(json_object_get(v, "top")));
	/* Our own process is among those using memory. */
	assert_true(json_array_size(json_object_get(v, "top")) > 0);
	assert_int_equal(json_array_size(json_object_get(v, "components")), 4);
	assert_string_equal(jx_str(v, "components.3.name"), "local_llm");
	if (access("/proc/pressure/memory", F_OK) == 0)
		assert_string_equal(jx_str(v, "source"), "/proc/pressure/memory");
	else
		assert_string_equal(jx_str(v, "mode"), "meminfo");
	json_decref(v);
	cmd_run_free(&r);
}

static void
expect_exit2(const char *const *args, const char *const *env, const char *message)
{
	struct cmd_run r;

	run_spillway(&r, home, args, env);
	if (r.status != 2 || strstr(r.err, message) == NULL)
		fail_msg(
		    "%s %s: exit %d, stderr: %s", args[0], args[1] ? args[1] : "", r.status, r.err);
	assert_string_equal(r.out, "");
	cmd_run_free(&r);
}

/* A calm trace says so, rather than nothing; the snapshot says how it sampled. */
static void
test_calm_said(void **state)
{
	char *path = xasprintf("%s/calm.trace", home);
	const char *args[] = {"pressure", "--replay", path, NULL}, *snap[] = {"pressure", NULL};
	struct cmd_run r;

	write_trace(path, 0, 20);
	run_spillway(&r, home, args, levels_env);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "the trace's level stayed NORMAL: no change to show"));
	cmd_run_free(&r);
	run_spillway(&r, home, snap, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(
	    strstr(r.out, "a snapshot of two samples a second apart; the daemon and --watch use"));
	cmd_run_free(&r);
	free(path);
}

static void
test_bad_input(void **state)
{
	char *bad = xasprintf("%s/bad.trace", home), *path = trace_path("spike"), *text;
	const char *replay_bad[] = {"pressure", "--replay", bad, NULL};
	const char *missing[] = {"pressure", "--replay", "/nonexistent.trace", NULL};
	const char *relative[] = {"pressure", "--cgroup", "user.slice", NULL};
	const char *mixed[] = {"pressure", "--replay", path, "--watch", NULL};
	const char *snapshot[] = {"pressure", NULL};
	const char *odd_window[] = {"SPILLWAY_PRESSURE_WINDOW_S=3", NULL};
	const char *order[] = {"SPILLWAY_PRESSURE_HIGH_PCT=50", NULL};
	const char *speed[] = {"pressure", "--replay", path, "--speed", "fast", NULL};

	/* A malformed line: the file and the line are named, nothing is replayed. */
	text = read_text(path);
	text[strlen(text) - 2] = 'x';
	assert_int_equal(write_file_atomic(bad, text, strlen(text), 0644), 0);
	expect_exit2(replay_bad, NULL, "bad.trace:19: field 'ra' has the bad value");
	expect_exit2(missing, NULL, "cannot read trace '/nonexistent.trace'");
	expect_exit2(relative, NULL, "expected the absolute path of a cgroup v2 directory");
	expect_exit2(mixed, NULL, "--replay cannot go with --watch");
	expect_exit2(speed, NULL, "invalid value 'fast' for --speed");
	if (!have_cap_sys_resource())
		expect_exit2(snapshot, odd_window, "multiples of 2 seconds");
	expect_exit2(snapshot, order, "pressure thresholds must rise");
	free(text);
	free(bad);
	free(path);
}

/* A cgroup that is not there: a clear message, and the whole system watched instead. */
static void
test_missing_cgroup_falls_back(void **state)
{
	const char *args[] = {
	    "pressure", "--cgroup", "/sys/fs/cgroup/no-such-group", "--json", NULL};
	struct cmd_run r;
	json_t *v;

	run_spillway(&r, home, args, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(
	    strstr(r.err, "/sys/fs/cgroup/no-such-group/memory.pressure does not exist"));
	assert_int_equal(jx_parse(r.out, strlen(r.out), &v, NULL), 0);
	assert_non_null(strstr(jx_str(v, "mode_reason"), "does not exist"));
	assert_string_not_equal(
	    jx_str(v, "source"), "/sys/fs/cgroup/no-such-group/memory.pressure");
	json_decref(v);
	cmd_run_free(&r);
}

static int
setup(void **state)
{
	snprintf(home, sizeof home, "/tmp/spillway-pressure-XXXXXX");
	assert_non_null(mkdtemp(home));
	return 0;
}

static int
teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", home);

	assert_int_equal(system(cmd), 0);
	free(cmd);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_replay_sustained),
	    cmocka_unit_test(test_replay_spike),
	    cmocka_unit_test(test_replay_sawtooth),
	    cmocka_unit_test(test_replay_paced),
	    cmocka_unit_test(test_replay_every_sample),
	    cmocka_unit_test(test_snapshot),
	    cmocka_unit_test(test_calm_said),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_missing_cgroup_falls_back),
	};

	jx_init();
	return cmocka_run_group_tests(tests, setup, teardown);
}
