/*
 * The spillway binary as a user runs it: exit statuses, messages, the config
 * command's output in both forms, and the demo.
 */
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/xmalloc.h"

static char home[64];

static void
expect_in(const char *text, const char *part)
{
	if (strstr(text, part) == NULL)
		fail_msg("expected '%s' in:\n%s", part, text);
}

static int
setup(void **state)
{
	snprintf(home, sizeof home, "/tmp/spillway-cli-XXXXXX");
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

static void
test_config_json(void **state)
{
	const char *args[] = {"--zone", "europe-west4-c", "config", "--json", NULL};
	const char *env[] = {"GCP_VM_DAILY_BUDGET=3.5", NULL};
	struct cmd_run r;
	json_t *v, *e;
	size_t i;
	int found = 0;

	run_spillway(&r, home, args, env);
	assert_int_equal(r.status, 0);
	assert_int_equal(jx_parse(r.out, strlen(r.out), &v, NULL), 0);
	assert_int_equal(json_integer_value(json_object_get(v, "schema_version")), 1);
	json_array_foreach (json_object_get(v, "values"), i, e) {
		const char *k = jx_str(e, "key");

		if (strcmp(k, "gcp.daily_budget") == 0) {
			assert_string_equal(jx_str(e, "source"), "environment");
			assert_string_equal(jx_str(e, "origin"), "GCP_VM_DAILY_BUDGET");
			found++;
		} else if (strcmp(k, "gcp.zone") == 0) {
			assert_string_equal(jx_str(e, "value"), "europe-west4-c");
			assert_string_equal(jx_str(e, "source"), "flag");
			found++;
		} else if (strcmp(k, "gcp.region") == 0) {
			assert_string_equal(jx_str(e, "value"), "europe-west4");
			assert_string_equal(jx_str(e, "source"), "derived");
			found++;
		}
	}
	assert_int_equal(found, 3);
	json_decref(v);
	cmd_run_free(&r);
}

static void
test_config_table(void **state)
{
	const char *args[] = {"config", NULL};
	struct cmd_run r;
	FILE *f;
	char *path = xasprintf("%s/spillway/spillway.conf", home),
	     *dir = xasprintf("%s/spillway", home);

	mkdir(dir, 0700);
	assert_non_null(f = fopen(path, "w"));
	fputs("[gcp]\nmax_concurrent = 3\n", f);
	fclose(f);
	run_spillway(&r, home, args, NULL);
	assert_int_equal(r.status, 0);
	expect_in(r.out, "KEY");
	expect_in(r.out, "GCP_VM_MAX_CONCURRENT");
	expect_in(r.out, "gcp.max_concurrent");
	expect_in(r.out, "spillway.conf:2");
	cmd_run_free(&r);
	unlink(path);
	rmdir(dir);
	free(path);
	free(dir);
}

/* A bad value: exit 2, the key, the value and the rule on stderr, nothing on stdout. */
static void
test_bad_config_exits_2(void **state)
{
	static const char *values[] = {"abc", "-3", "1e999"};

	for (size_t i = 0; i < 3; i++) {
		const char *args[] = {"config", NULL};
		char *kv = xasprintf("GCP_VM_DAILY_BUDGET=%s", values[i]);
		const char *env[] = {kv, NULL};
		struct cmd_run r;

		run_spillway(&r, home, args, env);
		assert_int_equal(r.status, 2);
		assert_string_equal(r.out, "");
		expect_in(r.err, "GCP_VM_DAILY_BUDGET");
		expect_in(r.err, values[i]);
		expect_in(r.err, "allowed: US dollars per day, from 0 to 100000");
		cmd_run_free(&r);
		free(kv);
	}
	{
		const char *args[] = {"--config", "/nonexistent.conf", "config", NULL};
		struct cmd_run r;

		run_spillway(&r, home, args, NULL);
		assert_int_equal(r.status, 2);
		expect_in(r.err, "cannot read config file '/nonexistent.conf'");
		cmd_run_free(&r);
	}
}

static void
test_usage_errors(void **state)
{
	static const struct {
		const char *args[6];
		const char *message;
	} cases[] = {
	    {{"frobnicate", NULL}, "unknown command 'frobnicate'"},
	    {{"config", "--bogus", NULL}, "unknown option '--bogus'"},
	    {{"config", "extra", NULL}, "unexpected argument 'extra'"},
	    {{"--log-level", "loud", "config", NULL}, "invalid log level 'loud'"},
	    {{"emulator", "--listen", "0.0.0.0:0", NULL}, "loopback addresses only"},
	    {{"emulator", "--listen", "nonsense", NULL}, "expected HOST:PORT"},
	    {{"emulator", "--boot-ms", "-5", NULL}, "invalid value '-5' for --boot-ms"},
	    {{"emulator", "--zones", "", NULL}, "at least one zone"},
	    {{"emulator", "--time-scale", "0", NULL}, "--time-scale"},
	    {{"emulator", "--faults", "error503=x", NULL}, "fault 'error503'"},
	    {{"emulator", "--port-file", NULL}, "needs a value"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct cmd_run r;

		run_spillway(&r, home, cases[i].args, NULL);
		if (r.status != 2 || strstr(r.err, cases[i].message) == NULL)
			fail_msg("%s: exit %d, stderr: %s", cases[i].args[0], r.status, r.err);
		cmd_run_free(&r);
	}
}

static void
test_help_and_version(void **state)
{
	const char *help[] = {"help", NULL}, *version[] = {"--version", NULL};
	const char *cmd_help[] = {"emulator", "--help", NULL};
	struct cmd_run r;

	run_spillway(&r, home, help, NULL);
	assert_int_equal(r.status, 0);
	expect_in(r.out, "emulator");
	expect_in(r.out, "config");
	expect_in(r.out, "demo");
	cmd_run_free(&r);
	run_spillway(&r, home, version, NULL);
	assert_int_equal(r.status, 0);
	expect_in(r.out, "spillway ");
	cmd_run_free(&r);
	run_spillway(&r, home, cmd_help, NULL);
	assert_int_equal(r.status, 0);
	expect_in(r.out, "--write-credentials");
	cmd_run_free(&r);
}

/* What the demo tells comes in the order things happen, and its arithmetic holds. */
static void
test_demo(void **state)
{
	const char *args[] = {"demo", NULL};
	const char *story[] = {"pressure NORMAL -> ", "decision: create a Spot VM",
	    "components to move: vision,chatbots", ": REQUESTED in us-central1-a", "-> CREATING",
	    "-> PROVISIONING", "-> BOOTING", "-> READY", "is READY at http://127.",
	    "hook on_ready says: spillway-", "READY -> TERMINATING: idle", "is leaving",
	    "hook on_gone says: gone", "TERMINATING -> TERMINATED", " cost $", "$ spillway status",
	    "1 created, 0 failed, 1 terminated", "VMs        none active", "$ spillway costs",
	    "TERMINATED", NULL};
	struct cmd_run r;
	const char *line;
	double cost, minutes, per_hour;

	run_spillway(&r, home, args, NULL);
	if (r.status != 0) {
		fprintf(stderr, "%s\n%s\n", r.out, r.err); /* cmocka's message would cut it */
		fail_msg("demo exit %d", r.status);
	}
	expect_in_order(r.out, story);
	expect_in(r.out, "CRITICAL -> NORMAL"); /* before or after READY: boot time decides */
	/* "NAME cost $C (e2-highmem-4, M min billed at $P/h)": C = P x M / 60. */
	line = strstr(r.out, " cost $");
	assert_int_equal(sscanf(line, " cost $%lf (e2-highmem-4, %lf min billed at $%lf/h)", &cost,
	                     &minutes, &per_hour),
	    3);
	assert_true(per_hour > 0.05 && per_hour < 0.07);
	assert_true(minutes >= 1);
	assert_true(fabs(cost - per_hour * minutes / 60) < 0.0001);
	/* The bearer token never reaches the output. */
	assert_null(strstr(r.out, "ya29."));
	assert_null(strstr(r.err, "ya29."));
	cmd_run_free(&r);
}

/* spillway cloud against the emulator: create, list, delete a Spot VM. */
static void
test_cloud_commands(void **state)
{
	const char *emu_args[] = {"--boot-ms", "200", "--guest-boot-ms", "0", NULL};
	struct emu e;
	struct cmd_run r;
	char *creds, *endpoint;
	json_t *v;

	emu_start(&e, emu_args);
	creds = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", e.creds);
	endpoint = xasprintf("SPILLWAY_COMPUTE_ENDPOINT=%s/compute/v1/", e.url);
	{
		const char *env[] = {creds, endpoint, "GCP_VM_MAX_LIFETIME_HOURS=1.5", NULL};
		const char *no_yes[] = {"cloud", "create", "cli-vm", NULL};
		const char *create[] = {"cloud", "create", "cli-vm", "--yes", NULL};
		const char *list[] = {"cloud", "list", "--json", NULL};
		const char *del[] = {"cloud", "delete", "cli-vm", NULL};
		const char *get[] = {"cloud", "get", "cli-vm", NULL};
		const char *bad[] = {"cloud", "get", "Not_A_Name", NULL};

		run_spillway(&r, home, no_yes, env);
		assert_int_equal(r.status, 2);
		expect_in(r.err, "pass --yes");
		cmd_run_free(&r);
		run_spillway(&r, home, create, env);
		if (r.status != 0)
			fail_msg("create: %s", r.err);
		expect_in(r.out, "created cli-vm in us-central1-a");
		expect_in(r.out, "status       RUNNING");
		expect_in(r.out, "max run      5400 s");
		expect_in(r.out, "machine      e2-highmem-4 (Spot)");
		cmd_run_free(&r);
		run_spillway(&r, home, list, env);
		assert_int_equal(r.status, 0);
		assert_int_equal(jx_parse(r.out, strlen(r.out), &v, NULL), 0);
		assert_int_equal(json_array_size(json_object_get(v, "instances")), 1);
		assert_string_equal(jx_str(v, "instances.0.name"), "cli-vm");
		assert_string_equal(jx_str(v, "instances.0.labels.managed-by"), "spillway");
		json_decref(v);
		cmd_run_free(&r);
		run_spillway(&r, home, del, env);
		assert_int_equal(r.status, 0);
		expect_in(r.out, "deleted cli-vm");
		cmd_run_free(&r);
		run_spillway(&r, home, get, env);
		assert_int_equal(r.status, 1);
		expect_in(r.err, "not-found (HTTP 404, notFound)");
		cmd_run_free(&r);
		run_spillway(&r, home, bad, env);
		assert_int_equal(r.status, 2);
		expect_in(r.err, "invalid name");
		cmd_run_free(&r);
		run_spillway(&r, home, list, env);
		assert_int_equal(jx_parse(r.out, strlen(r.out), &v, NULL), 0);
		assert_int_equal(json_array_size(json_object_get(v, "instances")), 0);
		json_decref(v);
		cmd_run_free(&r);
	}
	/* Credentials that cannot be used: exit 2, the file named, nothing done. */
	{
		const char *env[] = {
		    "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/key.json", endpoint, NULL};
		const char *list[] = {"cloud", "list", NULL};

		run_spillway(&r, home, list, env);
		assert_int_equal(r.status, 2);
		expect_in(r.err, "cannot read credentials '/nonexistent/key.json'");
		cmd_run_free(&r);
	}
	free(creds);
	free(endpoint);
	emu_stop(&e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_json),
	    cmocka_unit_test(test_config_table),
	    cmocka_unit_test(test_bad_config_exits_2),
	    cmocka_unit_test(test_usage_errors),
	    cmocka_unit_test(test_help_and_version),
	    cmocka_unit_test(test_demo),
	    cmocka_unit_test(test_cloud_commands),
	};

	jx_init();
	return cmocka_run_group_tests(tests, setup, teardown);
}
