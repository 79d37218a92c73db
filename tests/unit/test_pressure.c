/* The pressure monitor's pure parts: parsers, the level step, traces, process attribution. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pressure/level.h"
#include "pressure/procfs.h"
#include "pressure/trace.h"
#include "util/str.h"
#include "util/xmalloc.h"

static void
test_psi_parse(void **state)
{
	struct psi p;

	assert_int_equal(psi_parse("some avg10=1.50 avg60=0.25 avg300=0.05 total=123456\n"
	                           "full avg10=0.75 avg60=0.10 avg300=0.01 total=65432\n",
	                     &p),
	    0);
	assert_true(p.has_full);
	assert_true(p.some.avg10 == 1.5 && p.some.avg60 == 0.25);
	assert_int_equal(p.some.total_us, 123456);
	assert_int_equal(p.full.total_us, 65432);
	/* Some kernels' system file has no "full" line. */
	assert_int_equal(psi_parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n", &p), 0);
	assert_false(p.has_full);
	assert_int_equal(psi_parse("", &p), -EINVAL);
	assert_int_equal(
	    psi_parse("full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n", &p), -EINVAL);
	assert_int_equal(psi_parse("some avg10=x\n", &p), -EINVAL);
}

static void
test_meminfo_parse(void **state)
{
	struct meminfo m;

	assert_int_equal(meminfo_parse("MemTotal:       24684096 kB\nMemFree:        23000000 kB\n"
	                               "MemAvailable:   24375012 kB\nBuffers: 10 kB\n"
	                               "SwapTotal:       2097148 kB\nSwapFree:        1048576 kB\n",
	                     &m),
	    0);
	assert_int_equal(m.total_kb, 24684096);
	assert_int_equal(m.available_kb, 24375012);
	assert_true(m.has_available);
	assert_int_equal(m.swap_total_kb - m.swap_free_kb, 1048572);
	/* Before 3.14: no MemAvailable; free + cached + buffers stands in. */
	assert_int_equal(meminfo_parse("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\n"
	                               "Cached: 300 kB\n",
	                     &m),
	    0);
	assert_false(m.has_available);
	assert_int_equal(m.available_kb, 420);
	assert_int_equal(m.swap_total_kb, 0);
	assert_int_equal(meminfo_parse("MemFree: 100 kB\n", &m), -EINVAL);
	/* Found by fuzz_procfs: a file that is not the kernel's cannot overflow the sum. */
	assert_int_equal(meminfo_parse("MemTotal: 100 kB\nMemFree: 9223372036854775807 kB\n"
	                               "Cached: 545408 kB\n",
	                     &m),
	    0);
	assert_true(m.available_kb == INT64_MAX);
	/* A field that merely starts with another's name is not it. */
	assert_int_equal(meminfo_parse("MemTotalX: 5 kB\nMemTotal: 8 kB\nMemFree: 1 kB\n", &m), 0);
	assert_int_equal(m.total_kb, 8);
}

static void
test_vmstat_parse(void **state)
{
	struct vmstat v;

	assert_int_equal(vmstat_parse("nr_free_pages 12\npswpin 5\npswpout 6\npgmajfault 7\n"
	                              "workingset_refault_anon 8\nworkingset_refault_file 9\n",
	                     &v),
	    0);
	assert_int_equal(v.pswpin, 5);
	assert_int_equal(v.pswpout, 6);
	assert_int_equal(v.pgmajfault, 7);
	assert_int_equal(v.refault_anon, 8);
	assert_int_equal(v.refault_file, 9);
	/* Before 5.9 there was one workingset_refault. */
	assert_int_equal(vmstat_parse("workingset_refault 42\npgmajfault 1\n", &v), 0);
	assert_int_equal(v.refault_file, 42);
	assert_int_equal(v.refault_anon, 0);
	assert_int_equal(vmstat_parse("nothing 1\n", &v), -EINVAL);
}

/* --- the level step --- */

static struct level_config
config(void)
{
	struct level_config c = {2, 10, 40, 20, 0.5, 5, {0, 2000, 6000, 2000}, 30000};

	return c;
}

/*
 * Run a signal (some%, one sample a second, each measured over the span_ms
 * before it) through the step; record the level at each second.
 */
static void
run_spans(const double *some, const double *full, int n, int64_t span_ms,
    enum pressure_level *levels, int64_t *changes, int *nchanges)
{
	struct level_config c = config();
	struct level_state s;

	level_init(&s, 0);
	*nchanges = 0;
	for (int i = 0; i < n; i++) {
		struct level_input in = {.some_pct = some[i],
		    .full_pct = full != NULL ? full[i] : 0,
		    .available_pct = 50,
		    .span_ms = span_ms};
		enum pressure_level before = s.level;

		s = level_step(&c, s, &in, (int64_t)i * 1000);
		levels[i] = s.level;
		if (s.level != before)
			changes[(*nchanges)++] = (int64_t)i * 1000;
	}
}

/* Instants: each sample stands for its own moment only. */
static void
run(const double *some, const double *full, int n, enum pressure_level *levels, int64_t *changes,
    int *nchanges)
{
	run_spans(some, full, n, 0, levels, changes, nchanges);
}

static void
test_spike(void **state)
{
	double some[60] = {0};
	enum pressure_level l[60];
	int64_t ch[60];
	int n;

	/* Three seconds at 50 %: ELEVATED after 2 s, never HIGH, calm again after the dwell. */
	some[10] = some[11] = some[12] = 50;
	run(some, NULL, 60, l, ch, &n);
	for (int i = 0; i < 60; i++)
		assert_true(l[i] <= PRESSURE_ELEVATED);
	assert_int_equal(n, 2);
	assert_int_equal(ch[0], 12000);
	assert_int_equal(l[12], PRESSURE_ELEVATED);
	assert_int_equal(ch[1], 43000); /* calm from 13 s, plus 30 s */
	assert_int_equal(l[59], PRESSURE_NORMAL);
}

static void
test_sustained_and_recovery(void **state)
{
	double some[80] = {0};
	enum pressure_level l[80];
	int64_t ch[80];
	int n;

	for (int i = 5; i < 25; i++)
		some[i] = 20;
	run(some, NULL, 80, l, ch, &n);
	assert_int_equal(n, 3);
	assert_int_equal(ch[0], 7000); /* ELEVATED: 2 s after the start at 5 s */
	assert_int_equal(l[7], PRESSURE_ELEVATED);
	assert_int_equal(ch[1], 11000); /* HIGH: 6 s after */
	assert_int_equal(l[11], PRESSURE_HIGH);
	assert_int_equal(ch[2], 55000); /* calm from 25 s; back to NORMAL after 30 s */
	assert_int_equal(l[55], PRESSURE_NORMAL);
}

/*
 * Shares measured over the second before each sample: the stall was there
 * from the start of the first second that met a threshold, so the sustain
 * counts from there (HIGH 6 s after the stall began at 4 s, not 7 s).
 */
static void
test_candidate_from_span_start(void **state)
{
	double some[40] = {0};
	enum pressure_level l[40];
	int64_t ch[40];
	int n;

	for (int i = 5; i < 25; i++)
		some[i] = 20;
	run_spans(some, NULL, 40, 1000, l, ch, &n);
	assert_true(n >= 2);
	assert_int_equal(ch[0], 6000);  /* ELEVATED: 2 s after 4 s */
	assert_int_equal(ch[1], 10000); /* HIGH: 6 s after 4 s */
	assert_int_equal(l[9], PRESSURE_ELEVATED);
	assert_int_equal(l[10], PRESSURE_HIGH);
}

static void
test_sawtooth_one_transition(void **state)
{
	double some[90];
	enum pressure_level l[90];
	int64_t ch[90];
	int n;

	/* 15 % and 7 % in turn: never below HIGH's disarm (5 %), so one rise and no flapping. */
	for (int i = 0; i < 90; i++)
		some[i] = i % 2 ? 7 : 15;
	run(some, NULL, 90, l, ch, &n);
	assert_int_equal(n, 2);
	assert_int_equal(ch[0], 2000);
	assert_int_equal(ch[1], 6000);
	for (int i = 6; i < 90; i++)
		assert_int_equal(l[i], PRESSURE_HIGH);
}

static void
test_partial_recovery(void **state)
{
	double some[60];
	enum pressure_level l[60];
	int64_t ch[60];
	int n;

	/* HIGH, then 3 %: below HIGH's disarm but above ELEVATED's arm: fall to ELEVATED. */
	for (int i = 0; i < 60; i++)
		some[i] = i < 10 ? 30 : 3;
	run(some, NULL, 60, l, ch, &n);
	assert_int_equal(l[9], PRESSURE_HIGH);
	assert_int_equal(l[39], PRESSURE_HIGH);
	assert_int_equal(l[40], PRESSURE_ELEVATED);
	assert_int_equal(l[59], PRESSURE_ELEVATED);
}

static void
test_critical(void **state)
{
	double some[20], full[20];
	enum pressure_level l[20];
	int64_t ch[20];
	int n;

	/* "full" at 25 % is critical, but only after HIGH's sustain has passed too. */
	for (int i = 0; i < 20; i++) {
		some[i] = 30;
		full[i] = 25;
	}
	run(some, full, 20, l, ch, &n);
	assert_int_equal(l[5], PRESSURE_ELEVATED);
	assert_int_equal(l[6], PRESSURE_CRITICAL);
	assert_int_equal(ch[0], 2000);
	assert_int_equal(ch[1], 6000);
}

static void
test_low_memory_alone(void **state)
{
	struct level_config c = config();
	struct level_state s;
	struct level_input in = {.available_pct = 3}; /* 3 % available, below 5 % */

	level_init(&s, 0);
	s = level_step(&c, s, &in, 0);
	s = level_step(&c, s, &in, 1000);
	assert_int_equal(s.level, PRESSURE_NORMAL);
	s = level_step(&c, s, &in, 2000);
	assert_int_equal(s.level, PRESSURE_ELEVATED);
	assert_int_equal(level_target(&c, &in, false), PRESSURE_ELEVATED);

	/* MemAvailable is read at the sample: a share's span does not date it back. */
	in.span_ms = 1000;
	level_init(&s, 0);
	s = level_step(&c, s, &in, 1000);
	s = level_step(&c, s, &in, 2000);
	assert_int_equal(s.level, PRESSURE_NORMAL);
	s = level_step(&c, s, &in, 3000);
	assert_int_equal(s.level, PRESSURE_ELEVATED);
}

static void
test_macos_mapping(void **state)
{
	struct level_config c = config();

	assert_int_equal(
	    level_target(&c, &(struct level_input){.available_pct = -1}, false), PRESSURE_NORMAL);
	{
		struct level_input in = macos_level_input(&c, 4, 0, 50);

		assert_int_equal(level_target(&c, &in, false), PRESSURE_CRITICAL);
		in = macos_level_input(&c, 2, 0, 50);
		assert_int_equal(level_target(&c, &in, false), PRESSURE_HIGH);
		in = macos_level_input(&c, 1, 0.6, 50);
		assert_int_equal(level_target(&c, &in, false), PRESSURE_ELEVATED);
		in = macos_level_input(&c, 1, 0.2, 50);
		assert_int_equal(level_target(&c, &in, false), PRESSURE_NORMAL);
	}
}

/* --- traces --- */

static char *
write_trace(const char *text)
{
	char *path = xstrdup("/tmp/spillway-trace-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void
expect_trace_error(const char *text, const char *message)
{
	char *path = write_trace(text), *cause = NULL;
	struct trace t = {NULL, 0};

	assert_int_equal(trace_load(path, &t, &cause), -EINVAL);
	if (strstr(cause, message) == NULL || strstr(cause, path) == NULL)
		fail_msg("expected '%s' naming the file in: %s", message, cause);
	assert_null(t.samples);
	assert_int_equal(t.n, 0);
	free(cause);
	unlink(path);
	free(path);
}

static void
test_trace_round_trip(void **state)
{
	struct pressure_sample s = {0}, back;
	char line[512], *why = NULL, *path, *text, *cause = NULL;
	struct trace t;

	s.t_ms = 1795778686280;
	s.event = true;
	s.has_psi = true;
	s.psi.some.total_us = 2475094;
	s.psi.full.total_us = 2387043;
	s.psi.some.avg10 = 8.87;
	s.mem.total_kb = 24684096;
	s.mem.available_kb = 24467408;
	s.vm.refault_file = 5378485;
	trace_format(&s, line, sizeof line);
	assert_int_equal(trace_parse_line(line, &back, &why), 0);
	assert_int_equal(back.t_ms, s.t_ms);
	assert_true(back.event);
	assert_int_equal(back.psi.some.total_us, 2475094);
	assert_int_equal(back.vm.refault_file, 5378485);
	assert_true(back.psi.some.avg10 == 8.87);
	text = xasprintf("%s\n# a comment\n%s%s", TRACE_HEADER, line, line);
	path = write_trace(text);
	assert_int_equal(trace_load(path, &t, &cause), 0);
	assert_int_equal(t.n, 2);
	trace_free(&t);
	unlink(path);
	free(path);
	free(text);
}

static void
test_trace_errors(void **state)
{
	expect_trace_error("t=1 mt=2 ma=1\n", ":1: not a spillway pressure trace");
	expect_trace_error(TRACE_HEADER "\nt=1 mt=2 ma=1\nt=2 mt=2 ma=1 colour=red\n",
	    ":3: field 'colour' is unknown");
	expect_trace_error(TRACE_HEADER "\nt=1 mt=2 ma=1\nt=2 mt=2 ma=x\n",
	    ":3: field 'ma' has the bad value 'x'");
	expect_trace_error(TRACE_HEADER "\nmt=2 ma=1\n", ":2: fields t, mt and ma are required");
	expect_trace_error(TRACE_HEADER "\nt=5 mt=2 ma=1\nt=4 mt=2 ma=1\n", ":3: time goes back");
	expect_trace_error(TRACE_HEADER "\nt=5 mt=2 ma=1 t=6\n", "given twice");
	expect_trace_error(TRACE_HEADER "\nt=5 mt=2 ma=1 some=1\n", "needs both 'some' and 'full'");
	expect_trace_error(TRACE_HEADER "\nt=5 junk\n", "'junk' is not key=value");
	expect_trace_error(TRACE_HEADER "\n", "the trace has no samples");
}

/* --- processes, on a /proc of our own --- */

static void
fake_process(const char *dir, int pid, const char *name, long rss_kb, const char *cmdline,
    size_t cmdlen, long pss_kb)
{
	char path[256], *text;

	snprintf(path, sizeof path, "%s/%d", dir, pid);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/%d/status", dir, pid);
	text = rss_kb > 0 ? xasprintf("Name:\t%s\nState:\tS\nVmRSS:\t%ld kB\n", name, rss_kb)
	                  : xasprintf("Name:\t%s\nState:\tS\n", name);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
	free(text);
	snprintf(path, sizeof path, "%s/%d/cmdline", dir, pid);
	assert_int_equal(write_file_atomic(path, cmdline, cmdlen, 0644), 0);
	if (pss_kb >= 0) {
		text = xasprintf("55c0000-7ffe0000 ---p 00000000 00:00 0 [rollup]\nRss: %ld kB\n"
		                 "Pss: %ld kB\n",
		    rss_kb, pss_kb);
		snprintf(path, sizeof path, "%s/%d/smaps_rollup", dir, pid);
		assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
		free(text);
	}
}

static void
test_processes(void **state)
{
	char dir[] = "/tmp/spillway-proc-XXXXXX", *cmd;
	struct component_def defs[] = {
	    {.name = "vision", .size_mb = 2048, .priority = 1, .match = "vision|yolo"},
	    {.name = "local_llm", .size_mb = 8192, .priority = 4, .match = "llama|ollama"},
	};
	struct pressure_snapshot snap;

	assert_non_null(mkdtemp(dir));
	fake_process(dir, 123, "ollama", 2048000, "ollama\0serve\0", 13, 1800000);
	fake_process(dir, 456, "python3", 500000, "python3\0-m\0vision.server\0", 25, -1);
	fake_process(dir, 789, "bash", 4000, "bash\0", 5, 3000);
	fake_process(dir, 2, "kthreadd", 0, "", 0, -1); /* no VmRSS: a kernel thread */
	fake_process(dir, 999, "python3", 100000, "python3\0-m\0Vision.worker\0", 25, -1);
	memset(&snap, 0, sizeof snap);
	assert_int_equal(procfs_processes(dir, defs, 2, &snap), 0);
	assert_int_equal(snap.ntop, 4);
	assert_int_equal(snap.top[0].pid, 123);
	assert_string_equal(snap.top[0].comm, "ollama");
	assert_int_equal(snap.top[0].pss_kb, 1800000);
	assert_string_equal(snap.top[0].component, "local_llm");
	assert_int_equal(snap.top[1].pid, 456);
	assert_int_equal(snap.top[1].pss_kb, -1);
	assert_string_equal(snap.top[1].component, "vision");
	assert_null(snap.top[3].component);
	assert_int_equal(snap.ncomponents, 2);
	assert_string_equal(snap.components[0].name, "vision");
	/* Matching ignores case: "Vision.worker" is vision too. */
	assert_int_equal(snap.components[0].rss_kb, 600000);
	assert_int_equal(snap.components[0].processes, 2);
	assert_int_equal(snap.components[1].rss_kb, 2048000);
	assert_int_equal(procfs_processes("/nonexistent", defs, 2, &snap), -ENOENT);
	/* A local copy found by its match: the same processes, kernel threads left out. */
	{
		int pids[8];
		size_t n = procfs_matching(dir, "vision|yolo", pids, 8);

		assert_int_equal(n, 2);
		assert_true(
		    (pids[0] == 456 && pids[1] == 999) || (pids[0] == 999 && pids[1] == 456));
		/* By its name too, as a component's match is: its command line does not say it. */
		fake_process(dir, 321, "llama-server", 9000, "/opt/bin/server\0", 16, 8000);
		assert_int_equal(procfs_matching(dir, "llama-server", pids, 8), 1);
		assert_int_equal(pids[0], 321);
		assert_int_equal(procfs_pss_kb(dir, pids, 1), 8000);
		assert_int_equal(procfs_matching(dir, "kthreadd", pids, 8), 0);
	}
	cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_psi_parse),
	    cmocka_unit_test(test_meminfo_parse),
	    cmocka_unit_test(test_vmstat_parse),
	    cmocka_unit_test(test_spike),
	    cmocka_unit_test(test_sustained_and_recovery),
	    cmocka_unit_test(test_candidate_from_span_start),
	    cmocka_unit_test(test_sawtooth_one_transition),
	    cmocka_unit_test(test_partial_recovery),
	    cmocka_unit_test(test_critical),
	    cmocka_unit_test(test_low_memory_alone),
	    cmocka_unit_test(test_macos_mapping),
	    cmocka_unit_test(test_trace_round_trip),
	    cmocka_unit_test(test_trace_errors),
	    cmocka_unit_test(test_processes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
