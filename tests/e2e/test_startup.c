/*
 * data/startup-script.sh, run for real: bash in a temporary root, the
 * emulator as the metadata server of an instance that carries the settings
 * as attributes, and stubs on PATH for what a test machine must not do
 * (git over the network, systemctl, apt-get). The steps run in order, a
 * second run skips what is done, the backend is started with its components
 * and environment, and hostile values stay data.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
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

#define ZONE "us-central1-a"
#define NAME "startup-test"

static const char *hostile_components = "vision,$(touch PWNED);chatbots`touch PWNED2`";
static const char *hostile_url = "https://example.invalid/app.git; touch PWNED3";

static void
write_stub(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
	free(path);
}

static void
make_stubs(const char *root, const char *stubs)
{
	char *curl =
	    xasprintf("#!/bin/sh\n# The metadata server is asked as the instance " NAME ".\n"
	              "exec /usr/bin/curl -H 'X-Emulator-Instance: " ZONE "/" NAME "' \"$@\"\n");

	mkdir(stubs, 0755);
	write_stub(stubs, "curl", curl);
	free(curl);
	/* git: every argument on a line of its own; a clone makes a backend with a health file. */
	write_stub(stubs, "git",
	    "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >>\"$SPILLWAY_ROOT/git.args\"\n"
	    "echo -- >>\"$SPILLWAY_ROOT/git.args\"\n"
	    "if [ \"$1\" = clone ]; then\n"
	    "  for last; do :; done\n"
	    "  mkdir -p \"$last/.git\" && printf '{\"status\": \"ok\"}' >\"$last/health\"\n"
	    "fi\n");
	write_stub(stubs, "apt-get", "#!/bin/sh\necho \"$*\" >>\"$SPILLWAY_ROOT/apt.args\"\n");
	/* systemctl: recorded; starting the backend runs its start file as the unit would. */
	write_stub(stubs, "systemctl",
	    "#!/bin/sh\necho \"$*\" >>\"$SPILLWAY_ROOT/systemctl.args\"\n"
	    "if [ \"$*\" = 'enable --now spillway-backend.service' ]; then\n"
	    "  cd \"$SPILLWAY_ROOT/opt/spillway/backend\" || exit 1\n"
	    /* as systemd reads an EnvironmentFile: KEY=VALUE taken literally, never run */
	    "  while IFS= read -r kv; do export \"$kv\"; done <\"$SPILLWAY_ROOT/etc/spillway/backend.env\"\n"
	    "  nohup bash \"$SPILLWAY_ROOT/etc/spillway/start\" >\"$SPILLWAY_ROOT/backend.log\" 2>&1 &\n"
	    "  echo $! >\"$SPILLWAY_ROOT/backend.pid\"\n"
	    "fi\n");
	(void)root;
}

/* Run the script; its exit status and what it printed. */
static int
run_script(const char *root, const char *stubs, struct emu *e, char **out)
{
	char *script = xasprintf("%s/data/startup-script.sh", getenv("SPILLWAY_SOURCE"));
	char *md = xasprintf("%s/computeMetadata/v1", e->url);
	char *path = xasprintf("%s:%s", stubs, getenv("PATH"));
	int fds[2], status;
	struct buf b = BUF_INIT(1 << 20);
	char chunk[4096];
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]); /* or the backend the script starts would hold the pipe open */
		setenv("SPILLWAY_ROOT", root, 1);
		setenv("SPILLWAY_METADATA_URL", md, 1);
		setenv("SPILLWAY_HEALTH_TRIES", "30", 1);
		setenv("PATH", path, 1);
		assert_int_equal(chdir(root), 0);
		execl("/bin/bash", "bash", script, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], chunk, sizeof chunk)) > 0)
		buf_add(&b, chunk, (size_t)n);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	free(script);
	free(md);
	free(path);
	*out = buf_detach(&b, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *
file(const char *root, const char *name)
{
	char *path = xasprintf("%s/%s", root, name), *text = read_text(path);

	free(path);
	return text != NULL ? text : xstrdup("");
}

static void
test_startup_script(void **state)
{
	const char *first[] = {"starting (components: vision,$(touch PWNED)", "packages: start",
	    "packages: done", "fetch: start", "fetch: done", "dependencies: start",
	    "dependencies: done", "cloudsql: done", "service: start", "service: done",
	    "the backend answers on http://127.0.0.1:", "ready", NULL};
	const char *second[] = {"packages: done before, skipped", "fetch: done before, skipped",
	    "dependencies: done before, skipped", "service: done before, skipped",
	    "the backend answers", "ready", NULL};
	char root[] = "/tmp/spillway-startup-XXXXXX", stubs[300], port[16], start[128], *url, *out;
	char *text, *before;
	struct emu e;
	json_t *body, *items, *op;

	assert_non_null(mkdtemp(root));
	snprintf(stubs, sizeof stubs, "%s/stubs", root);
	make_stubs(root, stubs);
	snprintf(port, sizeof port, "%d", 20000 + (int)(getpid() % 20000));
	/* Bounded, so a failed test leaves no server behind. */
	snprintf(start, sizeof start,
	    "exec timeout 120 python3 -m http.server \"$PORT\" --bind 127.0.0.1");
	emu_start(&e, NULL);
	/* An instance whose metadata carries the settings, hostile ones among them. */
	body = instance_body(ZONE, NAME, "e2-highmem-4", true, NULL, NULL);
	items = jx_get(body, "metadata.items");
	json_array_clear(items);
	json_array_append_new(items,
	    jx_pack("{s:s, s:s}", "key", "spillway-components", "value", hostile_components));
	json_array_append_new(
	    items, jx_pack("{s:s, s:s}", "key", "spillway-backend-git", "value", hostile_url));
	json_array_append_new(
	    items, jx_pack("{s:s, s:s}", "key", "spillway-backend-ref", "value", "release-1"));
	json_array_append_new(items,
	    jx_pack("{s:s, s:s}", "key", "spillway-install", "value", "echo installed >installed"));
	json_array_append_new(
	    items, jx_pack("{s:s, s:s}", "key", "spillway-start", "value", start));
	json_array_append_new(items, jx_pack("{s:s, s:s}", "key", "spillway-port", "value", port));
	json_array_append_new(items,
	    jx_pack("{s:s, s:s}", "key", "spillway-env", "value", "A=1\nnot a pair\nB=two words"));
	url = compute_url(&e, ZONE, "instances");
	text = jx_dumps(body);
	op = api(&e, "POST", url, text, 200);
	json_decref(op);
	free(text);
	free(url);
	json_decref(body);

	/* The first boot: every step, in order, and the backend answers. */
	if (run_script(root, stubs, &e, &out) != 0)
		fail_msg("the script failed:\n%s", out);
	expect_in_order(out, first);
	free(out);
	text = file(root, "git.args");
	assert_non_null(strstr(text, "clone\n"));
	assert_non_null(strstr(text, "\n--branch\nrelease-1\n--\n"));
	assert_non_null(
	    strstr(text, "\nhttps://example.invalid/app.git; touch PWNED3\n")); /* one argument */
	free(text);
	text = file(root, "opt/spillway/backend/installed");
	assert_string_equal(text, "installed\n");
	free(text);
	text = file(root, "etc/spillway/backend.env");
	assert_non_null(
	    strstr(text, "SPILLWAY_COMPONENTS=vision,$(touch PWNED);chatbots`touch PWNED2`\n"));
	assert_non_null(strstr(text, "A=1\nB=two words\n"));
	assert_null(strstr(text, "not a pair"));
	free(text);
	text = file(root, "systemctl.args");
	assert_string_equal(text, "daemon-reload\nenable --now spillway-backend.service\n");
	free(text);
	text = file(root, "var/log/spillway/startup.log");
	assert_non_null(strstr(text, "spillway-startup: ready"));
	free(text);

	/* The backend runs with its components, exactly as configured. */
	text = file(root, "backend.pid");
	{
		char *path = xasprintf("/proc/%ld/environ", strtol(text, NULL, 10)), *env;
		size_t len = 0;

		assert_int_equal(read_file(path, 1 << 20, &env, &len), 0);
		for (size_t i = 0; i < len; i++)
			env[i] = env[i] == '\0' ? '\n' : env[i];
		assert_non_null(strstr(
		    env, "\nSPILLWAY_COMPONENTS=vision,$(touch PWNED);chatbots`touch PWNED2`\n"));
		assert_non_null(strstr(env, "\nB=two words\n"));
		free(env);
		free(path);
	}
	free(text);

	/* The second boot: nothing redone, the backend awaited again. */
	before = file(root, "systemctl.args");
	if (run_script(root, stubs, &e, &out) != 0)
		fail_msg("the second run failed:\n%s", out);
	expect_in_order(out, second);
	free(out);
	text = file(root, "systemctl.args");
	assert_string_equal(text, before);
	free(text);
	free(before);

	/* No hostile value ran, anywhere. */
	{
		const char *marks[] = {"PWNED", "PWNED2", "PWNED3", "opt/spillway/backend/PWNED",
		    "opt/spillway/backend/PWNED2", "opt/spillway/backend/PWNED3"};
		struct stat st;

		for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
			char *p = xasprintf("%s/%s", root, marks[i]);

			if (stat(p, &st) == 0)
				fail_msg("%s exists: a value ran as code", p);
			free(p);
		}
	}
	text = file(root, "backend.pid");
	if (*text != '\0')
		kill((pid_t)strtol(text, NULL, 10), SIGTERM);
	free(text);
	emu_stop(&e);
	remove_tree(root);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_startup_script),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
