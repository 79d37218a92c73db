/*
 * The spillway binary as a user runs it: exit statuses, messages, the config
 * command's output in both forms, and the demo.
 */
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
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
#include "util/str.h"
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
	/* Which file it read, and what a 0 that means something else is now. */
	assert_true(strncmp(r.out, "config file: ", 13) == 0);
	expect_in(r.out, "spillway/spillway.conf\n");
	expect_in(r.out, "0 (two idle timeouts: 60)");
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
	    {{"frobnicate", NULL}, "unknown command 'frobnicate'; 'spillway help' lists them"},
	    {{"stauts", NULL}, "unknown command 'stauts'; did you mean 'status'?"},
	    {{"--set", "gcp.enabled=maybe", "config", NULL}, "also yes/no, on/off, 1/0"},
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
	    {{"emulator", "--guest-agent", "/nonexistent/agent.py", NULL},
	        "give the path of data/spillway-agent.py"},
	    {{"emulator", "--guest-agent", "/dev/null", "--guest-backend", "python3 'x", NULL},
	        "--guest-backend: unbalanced ' in 'python3 'x'"},
	    {{"emulator", "--guest-agent", "/dev/null", "--guest-backend", " ", NULL},
	        "no command in it"},
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
	/* Each level with the rule it met, in the configuration's numbers. */
	const char *story[] = {"pressure NORMAL -> ELEVATED: ", "ELEVATED arms at 2% some",
	    "holds while the stall stays above 0.5 times its threshold",
	    "-> CRITICAL: ", "CRITICAL arms at 40% some or 20% full", "decision: create a Spot VM",
	    "components to move: vision,chatbots", ": REQUESTED in us-central1-a", "-> CREATING",
	    "the insert: e2-highmem-4, SPOT, maxRunDuration 10800 s then DELETE, labels "
	    "managed-by=spillway",
	    "-> PROVISIONING", "-> BOOTING", "-> READY", "is READY at http://127.",
	    "hook on_ready says: name=spillway-", "reason=created",
	    "READY -> TERMINATING: idle: its backend unused for 10 min", "is leaving",
	    "hook on_gone says: event=gone", "TERMINATING -> TERMINATED", " cost $",
	    "$ spillway status", "1 created, 0 failed, 1 terminated", "VMs        none active",
	    "$ spillway costs", "TERMINATED", NULL};
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
		/* As configured: its network tags (the firewall's); not the daemon's owner label.
		 */
		{
			char *url = compute_url(&e, "us-central1-a", "instances/cli-vm");
			json_t *inst = api(&e, "GET", url, NULL, 200);
			const char *tag = jx_str(inst, "tags.items.0");

			if (tag == NULL || strcmp(tag, "spillway-backend") != 0)
				fail_msg("cli-vm's tags: %s",
				    json_dumps(json_object_get(inst, "tags"), 0));
			assert_string_equal(jx_str(inst, "labels.managed-by"), "spillway");
			assert_null(jx_get(inst, "labels.spillway-owner"));
			json_decref(inst);
			free(url);
		}
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

/* The first ```sh block after this heading of the README, as it is written. */
static char *
readme_block(const char *heading)
{
	char *path = xasprintf("%s/README.md", getenv("SPILLWAY_SOURCE")), *text = read_text(path);
	const char *at, *start = NULL, *end = NULL;
	char *block;

	assert_non_null(text);
	if ((at = strstr(text, heading)) == NULL || (start = strstr(at, "```sh\n")) == NULL ||
	    (end = strstr(start + 6, "```")) == NULL)
		fail_msg("no sh block after '%s' in %s", heading, path);
	block = xstrndup(start + 6, (size_t)(end - start - 6));
	free(text);
	free(path);
	return block;
}

/* An empty directory, or one nobody removed in time. */
static bool
empty_dir(const char *path)
{
	char *cmd = xasprintf("[ -z \"$(ls -A '%s')\" ]", path);
	int64_t deadline = now_ms() + 30000;
	bool empty;

	while (!(empty = system(cmd) == 0) && now_ms() < deadline)
		sleep_ms(50);
	free(cmd);
	return empty;
}

/*
 * The README's emulator steps, run as written by a user whose gcloud has a
 * project of its own: everything works, and the user's ledger is untouched.
 */
static void
test_readme_emulator_steps(void **state)
{
	char *block = readme_block("## The Compute Engine emulator"),
	     *bindir = xstrdup(getenv("SPILLWAY_BIN"));
	char *script = xasprintf("%s/steps.sh", home), *cmd, *out, *err;
	FILE *f;
	int status;

	*strrchr(bindir, '/') = '\0';
	assert_non_null(f = fopen(script, "w"));
	fputs(block, f);
	fclose(f);
	cmd = xasprintf("mkdir -p %s/.config/gcloud/configurations %s/tmp && "
	                "printf '[core]\\nproject = my-proj\\naccount = me@example.com\\n' > "
	                "%s/.config/gcloud/configurations/config_default",
	    home, home, home);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	cmd = xasprintf("cd %s && env -i HOME=%s TMPDIR=%s/tmp PATH=%s:/usr/bin:/bin NO_COLOR=1 "
	                "sh -e %s > %s/steps.out 2> %s/steps.err",
	    home, home, home, bindir, script, home, home);
	status = system(cmd);
	free(cmd);
	cmd = xasprintf("%s/steps.out", home);
	out = read_text(cmd);
	free(cmd);
	cmd = xasprintf("%s/steps.err", home);
	err = read_text(cmd);
	free(cmd);
	if (status != 0)
		fail_msg("the README's emulator steps failed (%d):\n%s\nout:\n%s\nerr:\n%s", status,
		    block, out, err);
	{
		const char *story[] = {"us-central1-a", "is READY at http://127.",
		    "VMs        1 active", "TERMINATED after", NULL};

		expect_in_order(out, story);
	}
	/* Its own state, not the user's; removed once it stopped. */
	cmd = xasprintf("%s/.local/state/spillway/ledger.db", home);
	assert_int_not_equal(access(cmd, F_OK), 0);
	free(cmd);
	cmd = xasprintf("%s/tmp", home);
	assert_true(empty_dir(cmd));
	free(cmd);
	free(out);
	free(err);
	free(script);
	free(bindir);
	free(block);
}

/* run --provider emulator keeps its fake VMs and spend out of the user's ledger. */
static void
test_run_emulator_own_state(void **state)
{
	char *trace = xasprintf("%s/calm.trace", home), *own, *users, *sock;
	int64_t deadline = now_ms() + 60000;
	pid_t pid;
	int status;

	write_trace(trace, 0, 600);
	own = xasprintf("%s/.local/state/spillway/emulator/ledger.db", home);
	sock = xasprintf("%s/.local/state/spillway/emulator/control.sock", home);
	users = xasprintf("%s/.local/state/spillway/ledger.db", home);
	/*
	 * Stopped the moment its socket exists, while it starts, five times: its
	 * emulator once took a request as its server was being freed.
	 */
	for (int run = 0; run < 5; run++) {
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			int null = open("/dev/null", O_WRONLY);

			dup2(null, 1);
			dup2(null, 2);
			setenv("HOME", home, 1);
			unsetenv("XDG_STATE_HOME");
			unsetenv("XDG_CONFIG_HOME");
			unsetenv("SPILLWAY_STATE_DIR");
			unsetenv("SPILLWAY_SOCKET");
			execl(getenv("SPILLWAY_BIN"), "spillway", "run", "--provider", "emulator",
			    "--foreground", "--replay", trace, (char *)NULL);
			_exit(127);
		}
		while (access(sock, F_OK) != 0 && now_ms() < deadline)
			sleep_ms(5);
		assert_int_equal(access(sock, F_OK), 0);
		assert_int_equal(access(own, F_OK), 0);
		assert_int_not_equal(access(users, F_OK), 0);
		kill(pid, SIGTERM);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("run --provider emulator: status %d after SIGTERM (run %d)",
			    status, run);
		assert_int_not_equal(access(sock, F_OK), 0); /* removed as it stopped */
	}
	assert_int_not_equal(access(users, F_OK), 0);
	free(trace);
	free(own);
	free(users);
	free(sock);
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
	    cmocka_unit_test(test_readme_emulator_steps),
	    cmocka_unit_test(test_run_emulator_own_state),
	};

	jx_init();
	return cmocka_run_group_tests(tests, setup, teardown);
}
