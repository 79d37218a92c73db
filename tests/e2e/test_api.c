/*
 * The CLI and the control API end to end, against `spillway emulator` and
 * `spillway run` processes in real time: every command with a daemon and
 * without one, as tables and as JSON; the interactive create and terminate
 * on a pseudo-terminal; refusals and their exit codes; the event stream of a
 * whole VM life; bad requests; another user at the socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "api/client.h"
#include "harness.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define OWNER "test-api"

struct world {
	struct emu e;
	struct dmn d;
	char sock[300], calm[300];
	char *env[12];
	bool daemon;
};

static void
world_init_emu(
    struct world *w, bool daemon, const char *const *extra_env, const char *const *emu_extra)
{
	const char *emu_args[12] = {"--boot-ms", "300", "--guest-boot-ms", "300"};
	const char *const *extra = extra_env;
	int n = 0;

	memset(w, 0, sizeof *w);
	for (int k = 4; emu_extra != NULL && *emu_extra != NULL && k < 11; emu_extra++)
		emu_args[k++] = *emu_extra;
	emu_start(&w->e, emu_args);
	dmn_init(&w->d);
	snprintf(w->sock, sizeof w->sock, "%s/control.sock", w->d.state);
	snprintf(w->calm, sizeof w->calm, "%s/calm.trace", w->d.state);
	/* A calm trace: the daemon creates nothing by itself, whatever the machine does. */
	write_trace(w->calm, 0, 4000);
	w->env[n++] = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", w->e.creds);
	w->env[n++] = xasprintf("SPILLWAY_COMPUTE_ENDPOINT=%s/compute/v1/", w->e.url);
	w->env[n++] = xasprintf("SPILLWAY_BILLING_ENDPOINT=%s/v1/", w->e.url);
	w->env[n++] = xasprintf("SPILLWAY_STATE_DIR=%s", w->d.state);
	w->env[n++] = xasprintf("SPILLWAY_SOCKET=%s", w->sock);
	w->env[n++] = xstrdup("GCP_PROJECT_ID=spillway-emulator");
	w->env[n++] = xstrdup("SPILLWAY_OWNER=" OWNER);
	w->env[n++] = xstrdup("SPILLWAY_FALLBACK_ZONES=us-central1-b");
	for (; extra != NULL && *extra != NULL && n < 11; extra++)
		w->env[n++] = xstrdup(*extra);
	w->env[n] = NULL;
	w->daemon = daemon;
	if (daemon) {
		const char *args[] = {"--replay", w->calm, NULL};
		const char *env[8] = {
		    "SPILLWAY_OWNER=" OWNER, "SPILLWAY_FALLBACK_ZONES=us-central1-b"};
		int64_t deadline = now_ms() + 60000;
		struct stat st;
		int k = 2;

		for (; extra_env != NULL && *extra_env != NULL && k < 7; extra_env++)
			env[k++] = *extra_env;
		env[k] = NULL;
		dmn_start(&w->d, &w->e, args, env);
		/* Ready for requests once it has its socket and has started its manager. */
		for (;;) {
			char *log = read_text(w->d.log);
			bool up = log != NULL && strstr(log, "owner " OWNER) != NULL;

			free(log);
			if (up && stat(w->sock, &st) == 0)
				break;
			if (now_ms() > deadline) {
				dmn_dump(&w->d);
				fail_msg("the daemon did not open its socket");
			}
			sleep_ms(10);
		}
	}
}

static void
world_init(struct world *w, bool daemon, const char *const *extra_env)
{
	world_init_emu(w, daemon, extra_env, NULL);
}

static void
world_end(struct world *w)
{
	if (w->d.pid > 0)
		assert_int_equal(dmn_stop(&w->d, SIGTERM), 0);
	dmn_cleanup(&w->d);
	emu_stop(&w->e);
	for (int i = 0; w->env[i] != NULL; i++)
		free(w->env[i]);
}

static void
cli(struct world *w, struct cmd_run *r, const char *const *args)
{
	run_spillway(r, w->d.state, args, (const char *const *)w->env);
}

static json_t *
cli_json(struct world *w, const char *const *args, int expect_status)
{
	struct cmd_run r;
	json_t *doc = NULL;
	char *why = NULL;

	cli(w, &r, args);
	if (r.status != expect_status)
		fail_msg("spillway %s: exit %d, expected %d\nout: %s\nerr: %s", args[0], r.status,
		    expect_status, r.out, r.err);
	if (jx_parse(r.out, strlen(r.out), &doc, &why) != 0)
		fail_msg("spillway %s --json: not JSON (%s):\n%s", args[0], why, r.out);
	cmd_run_free(&r);
	return doc;
}

/* The emulator's instances, by name, space-separated. */
static char *
cloud_names(struct world *w)
{
	json_t *all = emu_instances(&w->e), *it;
	struct buf b = BUF_INIT(1 << 20);
	size_t i;

	json_array_foreach (all, i, it)
		buf_printf(&b, "%s ", jx_str(it, "name"));
	json_decref(all);
	buf_addch(&b, '\0');
	return buf_detach(&b, NULL);
}

/* An instance's metadata items as "k=v k=v". */
static char *
instance_metadata(struct world *w, const char *name)
{
	json_t *all = emu_instances(&w->e), *it, *item;
	struct buf b = BUF_INIT(1 << 20);
	size_t i, k;

	json_array_foreach (all, i, it)
		if (strcmp(jx_str(it, "name"), name) == 0)
			json_array_foreach (jx_get(it, "metadata.items"), k, item)
				buf_printf(
				    &b, "%s=%s ", jx_str(item, "key"), jx_str(item, "value"));
	json_decref(all);
	buf_addch(&b, '\0');
	return buf_detach(&b, NULL);
}

/* --- the control socket, spoken to directly --- */

struct answer {
	long status;
	json_t *doc;
	char *text;
};

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	buf_add(arg, p, size * n);
	return size * n;
}

static void
sock_call(struct world *w, struct answer *a, const char *method, const char *path, const char *body,
    size_t len)
{
	CURL *c = curl_easy_init();
	struct buf b = BUF_INIT(1 << 24);
	char *url = xasprintf("http://spillway%s", path);

	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, w->sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	a->status = 0;
	a->doc = NULL;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	buf_addch(&b, '\0');
	a->text = buf_detach(&b, NULL);
	jx_parse(a->text, strlen(a->text), &a->doc, NULL);
	curl_easy_cleanup(c);
	free(url);
}

static void
answer_free(struct answer *a)
{
	json_decref(a->doc);
	free(a->text);
}

static int
sock_connect(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		int error = errno;

		close(fd);
		return -error;
	}
	return fd;
}

/* --- every command, with a daemon and without --- */

static void
expect_keys(const json_t *doc, const char *const *keys)
{
	for (; *keys != NULL; keys++)
		if (json_object_get(doc, *keys) == NULL)
			fail_msg("the document has no '%s'", *keys);
}

static void
every_command(bool daemon)
{
	static const char *const status_keys[] = {"schema_version", "daemon", "config", "pressure",
	    "vms", "statistics", "today", "backoffs", "events", NULL};
	static const char *const vm_keys[] = {"name", "zone", "state", "machine_type", "spot", "ip",
	    "endpoint", "components", "requested_at", "started_at", "uptime_s", "cost", "per_hour",
	    "planned_run_s", "stops_in_s", "reason", "request_id", "labels", NULL};
	static const char *const costs_keys[] = {
	    "schema_version", "today", "active", "days", "month_to_date", "vms", NULL};
	const char *status_json[] = {"status", "--json", NULL};
	const char *create[] = {"create", "--components", "vision,chatbots", "--reason", "a test",
	    "--metadata", "team=vision", "--metadata", "build=42", "--yes", "--json", NULL};
	const char *costs[] = {"costs", "--days", "3", "--json", NULL};
	struct world w;
	struct cmd_run r;
	json_t *doc, *vm;
	char name[64], *names;

	world_init(&w, daemon, NULL);
	doc = cli_json(&w, status_json, 0);
	expect_keys(doc, status_keys);
	assert_int_equal(json_integer_value(json_object_get(doc, "schema_version")), 2);
	assert_int_equal(json_is_true(jx_get(doc, "daemon.running")), daemon);
	/* The pressure as spillway pressure --json has it: one shape, one set of names. */
	{
		const char *pressure[] = {"pressure", "--json", NULL};
		json_t *alone = cli_json(&w, pressure, 0), *in = json_object_get(doc, "pressure");
		const char *key;
		json_t *v;

		assert_non_null(json_object_get(in, "refault_per_s"));
		assert_null(json_object_get(in, "refault_rate"));
		json_object_foreach (alone, key, v)
			if (strcmp(key, "schema_version") != 0 && strcmp(key, "mode_reason") != 0 &&
			    json_object_get(in, key) == NULL)
				fail_msg(
				    "pressure --json has '%s', the status' pressure has not", key);
		json_decref(alone);
	}
	assert_int_equal(json_array_size(json_object_get(doc, "vms")), 0);
	json_decref(doc);

	/* create: READY, with what was asked. */
	doc = cli_json(&w, create, 0);
	vm = json_object_get(doc, "vm");
	expect_keys(vm, vm_keys);
	assert_string_equal(jx_str(vm, "state"), "READY");
	assert_string_equal(jx_str(vm, "reason"), "a test");
	assert_int_equal(json_array_size(json_object_get(vm, "components")), 2);
	assert_string_equal(jx_str(jx_get(vm, "labels"), "spillway-owner"), OWNER);
	assert_true(json_integer_value(json_object_get(vm, "stops_in_s")) > 3 * 3600 - 60);
	snprintf(name, sizeof name, "%s", jx_str(vm, "name"));
	json_decref(doc);
	names = cloud_names(&w);
	assert_non_null(strstr(names, name));
	free(names);
	/* The metadata asked for is on the instance, beside spillway's own. */
	{
		char *items = instance_metadata(&w, name);

		assert_non_null(strstr(items, "team=vision"));
		assert_non_null(strstr(items, "build=42"));
		assert_non_null(strstr(items, "spillway-components=vision,chatbots"));
		free(items);
	}

	/* status as a table and as JSON say the same. */
	{
		const char *args[] = {"status", NULL}, *verbose[] = {"status", "-v", NULL};

		cli(&w, &r, args);
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.out, name));
		assert_non_null(strstr(r.out, "READY"));
		assert_non_null(strstr(r.out, "vision,chatbots"));
		assert_null(strstr(r.out, "requestId")); /* -v only */
		assert_null(strstr(r.out, "\033["));     /* not a terminal: no colour */
		cmd_run_free(&r);
		cli(&w, &r, verbose);
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.out, "requestId"));
		assert_non_null(strstr(r.out, "spillway-owner=" OWNER));
		assert_non_null(strstr(r.out, "reason: a test"));
		assert_non_null(strstr(r.out, "BOOTING -> READY"));
		cmd_run_free(&r);
	}
	doc = cli_json(&w, status_json, 0);
	assert_int_equal(json_array_size(json_object_get(doc, "vms")), 1);
	assert_int_equal(json_integer_value(jx_get(doc, "statistics.created")), 1);
	json_decref(doc);

	/* costs: the VM, three days, month to date. */
	doc = cli_json(&w, costs, 0);
	expect_keys(doc, costs_keys);
	assert_int_equal(json_array_size(json_object_get(doc, "days")), 3);
	assert_int_equal(json_array_size(json_object_get(doc, "active")), 1);
	assert_true(json_number_value(json_object_get(doc, "month_to_date")) >= 0);
	json_decref(doc);

	/* terminate: gone from the cloud, its cost closed. */
	{
		const char *term[] = {"terminate", name, "--yes", "--json", NULL};

		doc = cli_json(&w, term, 0);
		vm = json_array_get(json_object_get(doc, "vms"), 0);
		assert_string_equal(jx_str(vm, "state"), "TERMINATED");
		assert_true(json_number_value(json_object_get(vm, "cost")) > 0);
		json_decref(doc);
	}
	names = cloud_names(&w);
	assert_null(strstr(names, name));
	free(names);
	doc = cli_json(&w, status_json, 0);
	assert_int_equal(json_array_size(json_object_get(doc, "vms")), 0);
	assert_int_equal(json_integer_value(jx_get(doc, "statistics.terminated")), 1);
	json_decref(doc);
	world_end(&w);
}

static void
test_commands_with_daemon(void **state)
{
	every_command(true);
}

static void
test_commands_without_daemon(void **state)
{
	every_command(false);
}

/* --- refusals --- */

static void
refusals(bool daemon)
{
	const char *env[] = {"GCP_VM_MAX_CONCURRENT=1", NULL};
	const char *create[] = {"create", "--components", "vision", "--yes", NULL};
	struct world w;
	struct cmd_run r;

	world_init(&w, daemon, env);
	cli(&w, &r, create);
	assert_int_equal(r.status, 0);
	cmd_run_free(&r);
	/* The second: max concurrent 1, exit 3, the rule and its numbers. */
	cli(&w, &r, create);
	assert_int_equal(r.status, 3);
	assert_non_null(strstr(r.err, "concurrency"));
	assert_non_null(strstr(r.err, "max concurrent 1 reached"));
	cmd_run_free(&r);
	if (daemon) {
		struct answer a;

		sock_call(&w, &a, "POST", "/v1/vms", "{\"components\": [\"vision\"]}", 26);
		assert_int_equal(a.status, 409);
		assert_string_equal(jx_str(jx_get(a.doc, "error"), "rule"), "concurrency");
		answer_free(&a);
	}
	{
		const char *term[] = {"terminate", "--all", "--yes", NULL};

		cli(&w, &r, term);
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.out, "TERMINATED"));
		cmd_run_free(&r);
	}
	world_end(&w);
	/* No cloud to reach: said at once, not waited for. */
	if (!daemon) {
		const char *none[] = {
		    "GOOGLE_APPLICATION_CREDENTIALS=", "GCE_METADATA_HOST=127.0.0.1:9", NULL};

		world_init(&w, false, none);
		cli(&w, &r, create);
		assert_int_equal(r.status, 3);
		assert_non_null(strstr(r.err, "refused: price: "));
		assert_non_null(strstr(r.err, "no credentials found"));
		cmd_run_free(&r);
		world_end(&w);
	}
	/* A budget that buys less than the minimum run. */
	{
		const char *poor[] = {"GCP_VM_DAILY_BUDGET=0.001", NULL};

		world_init(&w, daemon, poor);
		cli(&w, &r, create);
		assert_int_equal(r.status, 3);
		assert_non_null(strstr(r.err, "budget"));
		assert_non_null(strstr(r.err, "$0.00"));
		cmd_run_free(&r);
		world_end(&w);
	}
}

static void
test_refusals(void **state)
{
	refusals(true);
	refusals(false);
}

/* --- bad input --- */

static void
test_bad_input(void **state)
{
	struct world w;
	struct cmd_run r;
	struct answer a;
	char *big = xcalloc(1, 10 << 20);
	const struct {
		const char *args[6];
		const char *says;
	} usage[] = {
	    {{"costs", "--days", "-1", NULL}, "--days"},
	    {{"costs", "--days", "abc", NULL}, "--days"},
	    {{"create", "--components", "vision,nope", "--yes", NULL},
	        "'nope' is not a configured"},
	    {{"create", "--metadata", "startup-script=rm", "--yes", NULL},
	        "spillway's or the guest's"},
	    {{"create", "--metadata", "novalue", "--yes", NULL}, "expected KEY=VALUE"},
	    {{"terminate", NULL}, "name the VMs to delete, or --all"},
	    {{"terminate", "no-such-vm", "--yes", NULL}, "no active VM named 'no-such-vm'"},
	    {{"status", "--bogus", NULL}, "--bogus"},
	};
	int fd;

	world_init(&w, true, NULL);
	for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
		cli(&w, &r, usage[i].args);
		if (r.status != 2 || strstr(r.err, usage[i].says) == NULL)
			fail_msg(
			    "spillway %s: exit %d, stderr: %s", usage[i].args[0], r.status, r.err);
		cmd_run_free(&r);
	}
	sock_call(&w, &a, "GET", "/v1/nothing", NULL, 0);
	assert_int_equal(a.status, 404);
	answer_free(&a);
	sock_call(&w, &a, "PUT", "/v1/status", NULL, 0);
	assert_int_equal(a.status, 405);
	answer_free(&a);
	sock_call(&w, &a, "POST", "/v1/vms", "{\"components\": ", 15);
	assert_int_equal(a.status, 400);
	assert_non_null(strstr(jx_str(jx_get(a.doc, "error"), "message"), "not JSON"));
	answer_free(&a);
	sock_call(&w, &a, "POST", "/v1/vms", "[1, 2]", 6);
	assert_int_equal(a.status, 400);
	answer_free(&a);
	sock_call(&w, &a, "GET", "/v1/costs?days=-1", NULL, 0);
	assert_int_equal(a.status, 400);
	answer_free(&a);
	sock_call(&w, &a, "GET", "/v1/vms/nope", NULL, 0);
	assert_int_equal(a.status, 404);
	answer_free(&a);
	sock_call(&w, &a, "DELETE", "/v1/vms/nope", NULL, 0);
	assert_int_equal(a.status, 404);
	answer_free(&a);
	/* Found by fuzz_control: a path that is not UTF-8 is a 404 like any other. */
	{
		const char *req = "GET /v1/\xff\xfe HTTP/1.1\r\nHost: spillway\r\n"
		                  "Connection: close\r\n\r\n";
		char got[4096];
		size_t len = 0;
		ssize_t n;

		assert_true((fd = sock_connect(w.sock)) >= 0);
		assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
		while (len < sizeof got - 1 && (n = read(fd, got + len, sizeof got - 1 - len)) > 0)
			len += (size_t)n;
		got[len] = '\0';
		close(fd);
		assert_true(str_prefix(got, "HTTP/1.1 404"));
		assert_non_null(strstr(got, "/v1/?? is not part of the API"));
	}
	sock_call(&w, &a, "GET", "/v1/status", NULL, 0); /* and the daemon lives on */
	assert_int_equal(a.status, 200);
	answer_free(&a);
	/* 10 MB of body: refused, not kept. */
	memset(big, 'x', (10 << 20) - 1);
	sock_call(&w, &a, "POST", "/v1/vms", big, (10 << 20) - 1);
	assert_true(a.status == 413 || a.status == 0); /* 0: closed while curl still sent */
	answer_free(&a);
	free(big);
	/* A slow client holding a connection with half a request does not stall others. */
	assert_true((fd = sock_connect(w.sock)) >= 0);
	assert_int_equal(write(fd, "GET /v1/sta", 11), 11);
	sock_call(&w, &a, "GET", "/v1/status", NULL, 0);
	assert_int_equal(a.status, 200);
	answer_free(&a);
	close(fd);
	/* A daemon that stops answering: the CLI says so and gives up (after 10 s). */
	kill(w.d.pid, SIGSTOP);
	{
		const char *status[] = {"status", NULL};

		cli(&w, &r, status);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, w.sock));
		cmd_run_free(&r);
	}
	kill(w.d.pid, SIGCONT);
	sock_call(&w, &a, "GET", "/v1/status", NULL, 0);
	assert_int_equal(a.status, 200);
	answer_free(&a);
	world_end(&w);
}

/* --- the event stream of a whole life --- */

static void
test_events(void **state)
{
	struct world w;
	struct answer a;
	struct buf got = BUF_INIT(1 << 20);
	const char *order[] = {"event: state", "\"state\":\"REQUESTED\"", "\"state\":\"CREATING\"",
	    "\"state\":\"PROVISIONING\"", "\"state\":\"BOOTING\"", "\"state\":\"READY\"",
	    "event: offload", "\"state\":\"TERMINATING\"", "event: return",
	    "\"state\":\"TERMINATED\"", NULL};
	const char *req = "GET /v1/events HTTP/1.1\r\nHost: spillway\r\n\r\n";
	char name[64], chunk[4096];
	int fd;
	int64_t deadline;
	bool deleted = false;

	world_init(&w, true, NULL);
	assert_true((fd = sock_connect(w.sock)) >= 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	/* The stream is open once its first comment arrives. */
	while (strstr(buf_str(&got), ": spillway events") == NULL) {
		ssize_t n = read(fd, chunk, sizeof chunk);

		assert_true(n > 0);
		buf_add(&got, chunk, (size_t)n);
	}
	assert_non_null(strstr(buf_str(&got), "text/event-stream"));
	sock_call(&w, &a, "POST", "/v1/vms", "{\"components\": \"vision\"}", 24);
	if (a.status != 201)
		fail_msg("POST /v1/vms: %ld %s", a.status, a.text);
	snprintf(name, sizeof name, "%s", jx_str(jx_get(a.doc, "vm"), "name"));
	answer_free(&a);
	deadline = now_ms() + 60000;
	while (strstr(buf_str(&got), "\"state\":\"TERMINATED\"") == NULL) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;

		if (now_ms() > deadline)
			fail_msg("the stream so far:\n%s", buf_str(&got));
		if (!deleted && strstr(buf_str(&got), "event: offload") != NULL) {
			char *path = xasprintf("/v1/vms/%s", name);

			sock_call(&w, &a, "DELETE", path, NULL, 0);
			assert_int_equal(a.status, 202);
			answer_free(&a);
			free(path);
			deleted = true;
		}
		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = read(fd, chunk, sizeof chunk);
		assert_true(n > 0);
		buf_add(&got, chunk, (size_t)n);
	}
	expect_in_order(buf_str(&got), order); /* in the order they happened */
	/* The daemon's shutdown ends the stream properly: the last chunk, then EOF. */
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	for (ssize_t n; (n = read(fd, chunk, sizeof chunk)) > 0;)
		buf_add(&got, chunk, (size_t)n);
	assert_true(str_suffix(buf_str(&got), "\r\n0\r\n\r\n"));
	close(fd);
	buf_release(&got);
	world_end(&w);
}

/* --- another user --- */

static void
test_other_user_refused(void **state)
{
	struct passwd *nobody = getpwnam("nobody");
	struct world w;
	pid_t pid;
	int status;
	char dir[300];

	if (geteuid() != 0 || nobody == NULL) {
		printf("skipped: needs root and the user nobody, to be someone else\n");
		skip();
	}
	world_init(&w, true, NULL);
	/* The directory is 0700: another user cannot even reach the socket. */
	pid = fork();
	if (pid == 0) {
		if (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0)
			_exit(10);
		_exit(sock_connect(w.sock) == -EACCES ? 0 : 11);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Opened up by mistake: SO_PEERCRED still refuses, with 403, before anything is read. */
	snprintf(dir, sizeof dir, "%s", w.d.state);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(w.sock, 0666), 0);
	pid = fork();
	if (pid == 0) {
		const char *req = "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n";
		char answer[4096] = "";
		int fd;
		ssize_t n, got = 0;

		if (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0)
			_exit(10);
		if ((fd = sock_connect(w.sock)) < 0)
			_exit(12);
		if (write(fd, req, strlen(req)) < 0)
			_exit(13);
		while ((n = read(fd, answer + got, sizeof answer - 1 - (size_t)got)) > 0)
			got += n;
		answer[got] = '\0';
		_exit(strstr(answer, " 403 ") != NULL && strstr(answer, "only the user") != NULL
		        ? 0
		        : 14);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	chmod(dir, 0700);
	/* A socket that belongs to someone else: the CLI will not talk to it, and says why. */
	{
		const char *args[] = {"status", NULL};
		struct cmd_run r;

		assert_int_equal(chown(w.sock, nobody->pw_uid, nobody->pw_gid), 0);
		cli(&w, &r, args);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "belongs to user"));
		assert_non_null(strstr(r.err, "not to you"));
		cmd_run_free(&r);
		assert_int_equal(chown(w.sock, 0, 0), 0);
	}
	/* The daemon's own user is still served. */
	{
		struct answer a;

		sock_call(&w, &a, "GET", "/v1/status", NULL, 0);
		assert_int_equal(a.status, 200);
		answer_free(&a);
	}
	world_end(&w);
}

/* --- the interactive create and terminate, on a pseudo-terminal --- */

struct pty {
	pid_t pid;
	int fd;
	struct buf out;
};

static void
pty_start(struct pty *p, struct world *w, const char *const *args)
{
	const char *argv[16] = {"spillway"};
	int n = 1;

	for (; *args != NULL; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	buf_init(&p->out, 1 << 20);
	p->pid = forkpty(&p->fd, NULL, NULL, NULL);
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		for (int i = 0; w->env[i] != NULL; i++)
			putenv(w->env[i]);
		setenv("HOME", w->d.state, 1);
		setenv("XDG_CONFIG_HOME", w->d.state, 1);
		unsetenv("NO_COLOR");
		execv(getenv("SPILLWAY_BIN"), (char **)argv);
		_exit(127);
	}
}

/* Read until text appears (after what was already matched), then answer. */
static void
pty_expect(struct pty *p, const char *text, const char *reply)
{
	int64_t deadline = now_ms() + 60000;
	char chunk[4096];

	while (strstr(buf_str(&p->out), text) == NULL) {
		struct pollfd pf = {p->fd, POLLIN, 0};
		ssize_t n = 0;

		if (now_ms() < deadline && poll(&pf, 1, 500) <= 0)
			continue;
		if (now_ms() > deadline || (n = read(p->fd, chunk, sizeof chunk)) <= 0)
			fail_msg(
			    "waited for '%s'; the terminal shows:\n%s", text, buf_str(&p->out));
		buf_add(&p->out, chunk, (size_t)n);
	}
	if (reply != NULL)
		assert_int_equal(write(p->fd, reply, strlen(reply)), (ssize_t)strlen(reply));
}

static int
pty_end(struct pty *p)
{
	char chunk[4096];
	int status;
	ssize_t n;

	while ((n = read(p->fd, chunk, sizeof chunk)) > 0)
		buf_add(&p->out, chunk, (size_t)n);
	assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
	close(p->fd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
interactive(bool daemon)
{
	const char *create[] = {"create", NULL}, *terminate[] = {"terminate", "--all", NULL};
	const char *status_json[] = {"status", "--json", NULL};
	struct world w;
	struct pty p;
	json_t *doc;

	world_init(&w, daemon, NULL);
	/* The menu; choice 2 is VISION + CHATBOTS + ML_MODELS; a "no" creates nothing. */
	pty_start(&p, &w, create);
	pty_expect(&p, "1) VISION+CHATBOTS (recommended)", NULL);
	pty_expect(&p, "3) all heavy components: VISION+CHATBOTS+ML_MODELS+LOCAL_LLM", NULL);
	pty_expect(&p, "choice [1]: ", "7\n");
	pty_expect(&p, "please answer 1, 2, 3 or 4", NULL);
	pty_expect(&p, "choice [1]: ", "2\n");
	pty_expect(&p, "[y/N] ", "n\n");
	pty_expect(&p, "nothing created", NULL);
	assert_int_equal(pty_end(&p), 1);
	buf_release(&p.out);
	/* Again, and yes: live progress to READY. */
	pty_start(&p, &w, create);
	pty_expect(&p, "choice [1]: ", "4\n");
	pty_expect(&p, "components, comma-separated", "vision,nope\n");
	pty_expect(&p, "'nope' is not a configured component", NULL);
	pty_expect(&p, "components, comma-separated", "ml_models,local_llm\n");
	assert_null(strstr(buf_str(&p.out), "usage:")); /* a typo is one line, not the usage */
	/* The zone it goes to, the price and the run's cost, before anything is made. */
	pty_expect(&p,
	    "create a Spot VM (e2-highmem-4) in us-central1-a for ml_models,local_llm: $0.0595/h "
	    "for at most 3.00 h = $0.178",
	    NULL);
	pty_expect(&p, "[y/N] ", "y\n");
	pty_expect(&p, "PROVISIONING", NULL);
	pty_expect(&p, "is READY at http://127.", NULL);
	assert_int_equal(pty_end(&p), 0);
	buf_release(&p.out);
	doc = cli_json(&w, status_json, 0);
	assert_string_equal(
	    json_string_value(json_array_get(
	        jx_get(json_array_get(json_object_get(doc, "vms"), 0), "components"), 1)),
	    "local_llm");
	json_decref(doc);
	/* terminate: the list with its cost, a "no", then a "yes". */
	pty_start(&p, &w, terminate);
	pty_expect(&p, "to delete:", NULL);
	pty_expect(&p, "ml_models,local_llm", NULL);
	pty_expect(&p, "delete 1 VM? [y/N] ", "\n");
	pty_expect(&p, "nothing deleted", NULL);
	assert_int_equal(pty_end(&p), 1);
	buf_release(&p.out);
	pty_start(&p, &w, terminate);
	pty_expect(&p, "delete 1 VM? [y/N] ", "y\n");
	pty_expect(&p, "TERMINATED after", NULL);
	assert_int_equal(pty_end(&p), 0);
	buf_release(&p.out);
	doc = cli_json(&w, status_json, 0);
	assert_int_equal(json_array_size(json_object_get(doc, "vms")), 0);
	json_decref(doc);
	world_end(&w);
}

static void
test_interactive(void **state)
{
	interactive(true);
	interactive(false);
}

/* --- the original system's flags --- */

static void
test_seed_flags(void **state)
{
	const char *create[] = {"--create", "--components", "vision", "--yes", "--json", NULL};
	const char *costs[] = {"--costs", "--days", "2", "--json", NULL};
	const char *verbose[] = {"--verbose", NULL};
	const char *terminate[] = {"--terminate", "--all", "--yes", NULL};
	const char *off[] = {"GCP_VM_ENABLED=false", NULL}; /* automatic creation only */
	struct world w;
	struct cmd_run r;
	json_t *doc;

	world_init(&w, true, off);
	doc = cli_json(&w, create, 0);
	assert_string_equal(jx_str(jx_get(doc, "vm"), "state"), "READY");
	json_decref(doc);
	doc = cli_json(&w, costs, 0);
	assert_int_equal(json_array_size(json_object_get(doc, "days")), 2);
	json_decref(doc);
	cli(&w, &r, verbose);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "requestId"));
	assert_non_null(strstr(r.out, "events"));
	cmd_run_free(&r);
	cli(&w, &r, terminate);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "TERMINATED"));
	cmd_run_free(&r);
	world_end(&w);
}

/* --- doctor --- */

static const json_t *
check(const json_t *doc, const char *name)
{
	size_t i;
	json_t *c;

	json_array_foreach (json_object_get(doc, "checks"), i, c)
		if (strcmp(jx_str(c, "check"), name) == 0)
			return c;
	fail_msg("doctor has no '%s' check", name);
	return NULL;
}

static size_t
count(const char *text, const char *part)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, part)) != NULL; p += strlen(part))
		n++;
	return n;
}

static void
test_doctor(void **state)
{
	const char *bad[] = {"--firewall-source", "0.0.0.0/0", "--deny-permissions",
	    "compute.instances.delete,compute.zones.get", NULL};
	const char *good[] = {"--firewall-source", "203.0.113.7/32", NULL};
	const char *doctor[] = {"doctor", "--json", NULL}, *table[] = {"doctor", NULL};
	struct world w;
	struct cmd_run r;
	json_t *doc;

	/* Two permissions missing and the backend open to the world. */
	world_init_emu(&w, false, NULL, bad);
	doc = cli_json(&w, doctor, 1);
	assert_int_equal(json_integer_value(json_object_get(doc, "fails")), 1);
	assert_string_equal(jx_str(check(doc, "permissions"), "verdict"), "fail");
	assert_non_null(strstr(jx_str(check(doc, "permissions"), "detail"),
	    "missing compute.instances.delete, compute.zones.get"));
	assert_string_equal(jx_str(check(doc, "firewall"), "verdict"), "warn");
	assert_non_null(strstr(jx_str(check(doc, "firewall"), "detail"), "0.0.0.0/0"));
	assert_string_equal(jx_str(check(doc, "token"), "verdict"), "ok");
	assert_string_equal(jx_str(check(doc, "quota"), "verdict"), "ok");
	assert_string_equal(jx_str(check(doc, "state"), "verdict"), "ok");
	json_decref(doc);
	world_end(&w);
	/* The backend's port open too: nothing needs it (the agent passes its traffic). */
	{
		const char *both[] = {
		    "--firewall-source", "203.0.113.7/32", "--firewall-ports", "8011,8010", NULL};

		world_init_emu(&w, false, NULL, both);
		doc = cli_json(&w, doctor, 0);
		assert_string_equal(jx_str(check(doc, "firewall"), "verdict"), "warn");
		assert_non_null(strstr(
		    jx_str(check(doc, "firewall"), "detail"), "opens the backend's port tcp:8010"));
		json_decref(doc);
		world_end(&w);
	}
	/* All well; the table says so line by line. */
	world_init_emu(&w, true, NULL, good);
	doc = cli_json(&w, doctor, 0);
	assert_int_equal(json_integer_value(json_object_get(doc, "fails")), 0);
	assert_string_equal(jx_str(check(doc, "firewall"), "verdict"), "ok");
	assert_non_null(strstr(jx_str(check(doc, "socket"), "detail"), "the daemon answers"));
	json_decref(doc);
	cli(&w, &r, table);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "ok    permissions"));
	assert_non_null(strstr(r.out, "0 failed"));
	cmd_run_free(&r);
	world_end(&w);
	/* No project given: the key file's, as create and run take it, and status shows it. */
	world_init_emu(&w, false, NULL, good);
	for (int i = 0; w.env[i] != NULL; i++)
		if (str_prefix(w.env[i], "GCP_PROJECT_ID=")) {
			free(w.env[i]);
			w.env[i] = xstrdup("SPILLWAY_TEST_NO_PROJECT=1");
		}
	doc = cli_json(&w, doctor, 0);
	assert_string_equal(jx_str(check(doc, "project"), "verdict"), "ok");
	assert_non_null(
	    strstr(jx_str(check(doc, "project"), "detail"), "project spillway-emulator"));
	json_decref(doc);
	{
		const char *status[] = {"status", "--json", NULL};

		doc = cli_json(&w, status, 0);
		assert_string_equal(jx_str(doc, "config.project"), "spillway-emulator");
		json_decref(doc);
	}
	world_end(&w);
	/* No credentials: it says so and what to do, and skips what needs a token. */
	{
		const char *none[] = {"GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/key.json", NULL};

		world_init(&w, false, none);
		cli(&w, &r, table);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.out, "fail  credentials"));
		assert_non_null(strstr(r.out, "/nonexistent/key.json"));
		assert_non_null(strstr(r.out, "skip  cloud"));
		assert_int_equal(count(r.out, "gcloud auth application-default login"), 1);
		cmd_run_free(&r);
		world_end(&w);
	}
	/* None at all: said plainly, where it looked, and the one command; create the same. */
	{
		const char *none[] = {"NO_GCE_CHECK=true", NULL};
		const char *create[] = {"create", "--yes", "--components", "vision", NULL};

		world_init(&w, false, none);
		for (int i = 0; w.env[i] != NULL; i++)
			if (str_prefix(w.env[i], "GOOGLE_APPLICATION_CREDENTIALS=")) {
				free(w.env[i]);
				w.env[i] = xstrdup("SPILLWAY_TEST_NO_CREDENTIALS=1");
			}
		cli(&w, &r, table);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.out, "fail  credentials  no Google credentials found"));
		assert_non_null(strstr(r.out, "GOOGLE_APPLICATION_CREDENTIALS (not set)"));
		assert_int_equal(count(r.out, "gcloud auth application-default login"), 1);
		cmd_run_free(&r);
		cli(&w, &r, create);
		assert_int_equal(r.status, 2);
		assert_non_null(strstr(r.err, "no Google credentials found"));
		assert_null(strstr(r.err, "price"));
		cmd_run_free(&r);
		world_end(&w);
	}
}

/* --- the library, through its examples --- */

struct prog {
	pid_t pid;
	int out;
	struct buf text;
};

static void
prog_start(struct prog *p, struct world *w, const char *name, const char *const *args)
{
	char *path = xasprintf("%s/%s", getenv("SPILLWAY_EXAMPLES"), name);
	const char *argv[8] = {name};
	int fds[2], n = 1;

	for (; *args != NULL && n < 7; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	assert_int_equal(pipe(fds), 0);
	buf_init(&p->text, 1 << 20);
	p->pid = fork();
	if (p->pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		for (int i = 0; w->env[i] != NULL; i++)
			putenv(w->env[i]);
		setenv("HOME", w->d.state, 1);
		setenv("XDG_CONFIG_HOME", w->d.state, 1);
		execv(path, (char **)argv);
		_exit(127);
	}
	close(fds[1]);
	p->out = fds[0];
	free(path);
}

/* Read what the program prints until it has said this. */
static void
wait_said(struct prog *p, const char *text)
{
	char chunk[4096];
	ssize_t n;

	while (
	    strstr(buf_str(&p->text), text) == NULL && (n = read(p->out, chunk, sizeof chunk)) > 0)
		buf_add(&p->text, chunk, (size_t)n);
}

static int
prog_end(struct prog *p)
{
	char chunk[4096];
	ssize_t n;
	int status;

	while ((n = read(p->out, chunk, sizeof chunk)) > 0)
		buf_add(&p->text, chunk, (size_t)n);
	close(p->out);
	assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The PID daemon.lock names, or 0 when it names nobody. */
static pid_t
lock_pid(const struct world *w)
{
	char *path = xasprintf("%s/daemon.lock", w->d.state), *text = read_text(path);
	pid_t pid = text != NULL ? (pid_t)atoi(text) : 0;

	free(text);
	free(path);
	return pid;
}

static void
dump_detached(const struct world *w)
{
	char *path = xasprintf("%s/spillway.log", w->d.state), *text = read_text(path);

	fprintf(stderr, "--- %s ---\n%s--- end ---\n", path, text != NULL ? text : "(none)\n");
	free(text);
	free(path);
}

/* `spillway run` as users start it, detached: the PID it printed, once it answers. */
static pid_t
run_detached(struct world *w)
{
	const char *args[] = {"run", "--replay", w->calm, NULL};
	struct cmd_run r;
	int64_t deadline = now_ms() + 60000;
	const char *said;
	int pid = 0;

	cli(w, &r, args);
	said = strstr(r.out, "running as PID ");
	if (r.status != 0 || said == NULL || sscanf(said, "running as PID %d", &pid) != 1)
		fail_msg("spillway run: exit %d\n%s%s", r.status, r.out, r.err);
	cmd_run_free(&r);
	for (;;) {
		json_t *doc = NULL;
		char *cause = NULL;
		long status = 0;
		/* A socket file is not yet a socket that listens: ask it. */
		bool up = client_call(w->sock, "GET", "/v1/status", NULL, 2000, &status, &doc,
		              &cause) == 0 &&
		    status == 200;

		json_decref(doc);
		free(cause);
		if (up)
			return pid;
		if (now_ms() > deadline) {
			dump_detached(w);
			fail_msg("the detached daemon (PID %d) does not answer", pid);
		}
		sleep_ms(20);
	}
}

/* Its exit status: this test is the subreaper of what spillway detaches. */
static int
reap(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *
create_vm(struct world *w)
{
	struct resp q;
	char *name;

	dmn_call(&w->d, &q, "POST", "/v1/vms", "{\"components\": [\"vision\"]}");
	if (q.status != 201)
		fail_msg("POST /v1/vms: %ld %s", q.status, q.body);
	name = xstrdup(jx_str(q.json, "vm.name"));
	resp_free(&q);
	return name;
}

static void
test_library(void **state)
{
	const char *trigger_args[] = {"vision", "60", NULL}, *monitor_args[] = {"15", NULL};
	const char *alone[] = {"spillway: in this process", "advice: wait", "created: spillway-",
	    "event: READY", "ready: spillway-", " at http://127.", "event: TERMINATED",
	    "stats: 1 created, 0 active, 1 terminated", NULL};
	const char *watched[] = {"watching for 15 s (the daemon's events)", "state ", "REQUESTED",
	    "CREATING -> PROVISIONING", "BOOTING -> READY", "offload ", "return ",
	    "TERMINATING -> TERMINATED", "stats: 1 created, 0 active", NULL};
	struct world w;
	struct prog trig, mon;
	char *names;

	/* No daemon: spillway runs inside the program, and cleans up after it. */
	world_init(&w, false, NULL);
	prog_start(&trig, &w, "manual_trigger", trigger_args);
	assert_int_equal(prog_end(&trig), 0);
	expect_in_order(buf_str(&trig.text), alone);
	names = cloud_names(&w);
	assert_string_equal(names, "");
	free(names);
	buf_release(&trig.text);
	world_end(&w);

	/* In a program, spillway serves the daemon's socket: the CLI works beside it. */
	world_init(&w, false, NULL);
	prog_start(&mon, &w, "monitor", monitor_args);
	wait_said(&mon, "watching");
	{
		const char *status[] = {"status", "--json", NULL}, *stop[] = {"stop", NULL};
		struct cmd_run r;
		json_t *doc;

		doc = cli_json(&w, status, 0);
		assert_true(json_is_true(jx_get(doc, "daemon.running")));
		assert_int_equal(json_integer_value(jx_get(doc, "daemon.pid")), mon.pid);
		json_decref(doc);
		names = create_vm(&w); /* a create from the CLI, made by the program's spillway */
		free(names);
		cli(&w, &r, stop);
		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "spillway runs inside a program here"));
		cmd_run_free(&r);
	}
	assert_int_equal(prog_end(&mon), 0);
	assert_non_null(strstr(buf_str(&mon.text), "stats: 1 created"));
	buf_release(&mon.text);
	world_end(&w);

	/* A daemon: the program asks it, and another program watches the events. */
	world_init(&w, true, NULL);
	prog_start(&mon, &w, "monitor", monitor_args);
	wait_said(&mon, "watching"); /* the monitor is subscribed once it says so */
	prog_start(&trig, &w, "manual_trigger", trigger_args);
	assert_int_equal(prog_end(&trig), 0);
	assert_non_null(strstr(buf_str(&trig.text), "spillway: the daemon"));
	assert_non_null(strstr(buf_str(&trig.text), "ready: spillway-"));
	assert_int_equal(prog_end(&mon), 0);
	expect_in_order(buf_str(&mon.text), watched);
	buf_release(&trig.text);
	buf_release(&mon.text);
	world_end(&w);

	/* A rule's refusal reaches the program. */
	{
		const char *poor[] = {"GCP_VM_DAILY_BUDGET=0.001", NULL};

		world_init(&w, true, poor);
		prog_start(&trig, &w, "manual_trigger", trigger_args);
		assert_int_equal(prog_end(&trig), 3);
		assert_non_null(strstr(buf_str(&trig.text), "refused: budget"));
		buf_release(&trig.text);
		world_end(&w);
	}
}

/*
 * The detached daemon: daemon.lock names it (the README's kill -TERM works)
 * and names nobody once it is gone; spillway stop shows its VMs deleted (or
 * kept) and returns once it has exited; with none running it says so.
 */
static void
test_stop(void **state)
{
	const char *stop[] = {"stop", NULL}, *stop_keep[] = {"stop", "--keep", NULL};
	struct world w;
	struct cmd_run r;
	pid_t pid;
	char *name, *names;

	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	world_init(&w, false, NULL);
	pid = run_detached(&w);
	assert_int_equal(lock_pid(&w), pid);
	assert_int_equal(kill(lock_pid(&w), SIGTERM), 0);
	assert_int_equal(reap(pid), 0);
	assert_int_equal(lock_pid(&w), 0);

	pid = run_detached(&w);
	name = create_vm(&w);
	cli(&w, &r, stop);
	if (r.status != 0) {
		dump_detached(&w);
		fail_msg("spillway stop: exit %d\n%s%s", r.status, r.out, r.err);
	}
	{
		const char *story[] = {"is stopping; it deletes its VMs first", name,
		    "-> TERMINATING", name, "-> TERMINATED", "the daemon has stopped", NULL};

		expect_in_order(r.out, story);
	}
	cmd_run_free(&r);
	assert_int_equal(reap(pid), 0);
	assert_int_equal(lock_pid(&w), 0);
	names = cloud_names(&w);
	assert_string_equal(names, "");
	free(names);
	free(name);
	cli(&w, &r, stop);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "no spillway daemon runs"));
	cmd_run_free(&r);

	/* --keep: the VM stays, for the next start to take over. */
	pid = run_detached(&w);
	name = create_vm(&w);
	cli(&w, &r, stop_keep);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "leaves its VMs running"));
	assert_null(strstr(r.out, "TERMINATING"));
	cmd_run_free(&r);
	assert_int_equal(reap(pid), 0);
	names = cloud_names(&w);
	assert_non_null(strstr(names, name));
	free(names);
	pid = run_detached(&w);
	cli(&w, &r, stop);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "-> TERMINATED"));
	cmd_run_free(&r);
	assert_int_equal(reap(pid), 0);
	free(name);
	world_end(&w);
}

/* --- baked images (docs/images.md) --- */

#define INSTALL_MS 6000

/* The emulator's answer at a Compute path of its project ("global/images/X"); NULL on 404. */
static json_t *
emu_get(struct world *w, const char *tail)
{
	char *url = xasprintf("%s/compute/v1/projects/spillway-emulator/%s", w->e.url, tail);
	struct resp r;
	json_t *doc = NULL;

	http_call(&r, "GET", url, emu_token(&w->e), NULL, NULL, NULL);
	if (r.status == 200)
		doc = json_incref(r.json);
	else if (r.status != 404)
		fail_msg("GET %s: HTTP %ld", url, r.status);
	resp_free(&r);
	free(url);
	return doc;
}

static int64_t
at(const json_t *doc, const char *field)
{
	int64_t ms = 0;

	if (jx_str(doc, field) == NULL || time_parse_rfc3339(jx_str(doc, field), &ms) != 0)
		fail_msg("%s is not a time", field);
	return ms;
}

/*
 * A bake, with a daemon or without: an image made from the install (the VM
 * stopped, imaged, deleted), a VM booting from it without installing, the
 * image stale once the settings change, its storage in the costs, and its
 * delete.
 */
static void
images(bool daemon)
{
	const char *env[] = {"SPILLWAY_BACKEND_GIT=https://example.invalid/app.git",
	    "SPILLWAY_BACKEND_START=python3 -m app", "SPILLWAY_IMAGE=baked", NULL};
	const char *emu_extra[] = {"--install-ms", "6000", NULL}; /* INSTALL_MS */
	const char *list[] = {"image", "list", "--json", NULL};
	const char *bake[] = {"image", "bake", "--yes", "--json", NULL};
	const char *create[] = {"create", "--yes", "--json", NULL};
	const char *costs[] = {"costs", "--json", NULL};
	const char *term[] = {"terminate", "--all", "--yes", NULL};
	char name[64], vm[64], path[160];
	struct world w;
	struct cmd_run r;
	json_t *doc, *v;
	size_t i;
	bool stopped = false;

	world_init_emu(&w, daemon, env, emu_extra);
	doc = cli_json(&w, list, 0);
	assert_int_equal(json_array_size(json_object_get(doc, "images")), 0);
	assert_string_equal(
	    jx_str(doc, "boot.image"), "projects/debian-cloud/global/images/family/debian-12");
	json_decref(doc);

	/* The bake: READY, its VM stopped before the image and gone after. */
	doc = cli_json(&w, bake, 0);
	assert_string_equal(jx_str(doc, "image.state"), "READY");
	assert_string_equal(jx_str(doc, "image.family"), "spillway-backend");
	assert_false(json_is_true(jx_get(doc, "image.stale")));
	snprintf(name, sizeof name, "%s", jx_str(doc, "image.name"));
	snprintf(vm, sizeof vm, "%s", jx_str(doc, "image.vm"));
	json_decref(doc);
	snprintf(path, sizeof path, "global/images/%s", name);
	assert_non_null(v = emu_get(&w, path));
	assert_string_equal(jx_str(v, "family"), "spillway-backend");
	assert_string_equal(jx_str(v, "labels.spillway-owner"), OWNER);
	assert_int_equal(strlen(jx_str(v, "labels.spillway-install")), 32);
	json_decref(v);
	snprintf(path, sizeof path, "zones/us-central1-a/instances/%s", vm);
	assert_null(emu_get(&w, path));
	v = emu_get(&w, "zones/us-central1-a/operations");
	json_array_foreach (json_object_get(v, "items"), i, doc)
		stopped |= str_eq(jx_str(doc, "operationType"), "stop") &&
		    str_suffix(jx_str(doc, "targetLink"), vm);
	assert_true(stopped);
	json_decref(v);
	doc = cli_json(&w, list, 0);
	assert_string_equal(jx_str(doc, "images.0.name"), name);
	assert_string_equal(jx_str(doc, "boot.image"), "global/images/family/spillway-backend");
	assert_string_equal(jx_str(doc, "boot.newest"), name);
	json_decref(doc);

	/* A VM from it: its disk from the image, READY without the install's time. */
	doc = cli_json(&w, create, 0);
	assert_string_equal(jx_str(doc, "vm.state"), "READY");
	assert_string_equal(jx_str(doc, "vm.purpose"), "serve");
	if (at(doc, "vm.ready_at") - at(doc, "vm.started_at") >= INSTALL_MS)
		fail_msg("a VM from the baked image took %lld ms to be READY: it installed",
		    (long long)(at(doc, "vm.ready_at") - at(doc, "vm.started_at")));
	snprintf(path, sizeof path, "zones/us-central1-a/disks/%s", jx_str(doc, "vm.name"));
	json_decref(doc);
	assert_non_null(v = emu_get(&w, path));
	assert_true(str_suffix(jx_str(v, "sourceImage"), name));
	json_decref(v);

	/* Its storage, in the costs. */
	doc = cli_json(&w, costs, 0);
	assert_string_equal(jx_str(doc, "images.0.name"), name);
	assert_true(json_number_value(jx_get(doc, "images.0.per_month")) > 0);
	json_decref(doc);
	if (!daemon) {
		/* Settings that change the install: the image is stale, and status says so. */
		const char *status[] = {"--set", "backend.ref=v2", "status", "--json", NULL};
		const char *doctor[] = {"--set", "backend.ref=v2", "doctor", "--json", NULL};

		doc = cli_json(&w, status, 0);
		assert_true(json_is_true(jx_get(doc, "boot.stale")));
		json_decref(doc);
		doc = cli_json(&w, doctor, 1); /* no firewall rule for the agent in this emulator */
		assert_string_equal(jx_str(check(doc, "image"), "verdict"), "warn");
		assert_non_null(strstr(jx_str(check(doc, "image"), "detail"), "is stale"));
		json_decref(doc);
	}
	cli(&w, &r, term);
	assert_int_equal(r.status, 0);
	cmd_run_free(&r);

	/* Deleted: gone from the project and the list, its days still in the costs. */
	{
		const char *del[] = {"image", "delete", name, NULL};

		cli(&w, &r, del);
		if (r.status != 0)
			fail_msg("image delete: %s%s", r.out, r.err);
		assert_non_null(strstr(r.out, "deleted"));
		cmd_run_free(&r);
		snprintf(path, sizeof path, "global/images/%s", name);
		assert_null(emu_get(&w, path));
		doc = cli_json(&w, list, 0);
		assert_int_equal(json_array_size(json_object_get(doc, "images")), 0);
		json_decref(doc);
		doc = cli_json(&w, costs, 0);
		assert_string_equal(jx_str(doc, "images.0.name"), name);
		assert_non_null(jx_str(doc, "images.0.deleted_at"));
		json_decref(doc);
		cli(&w, &r, del);
		assert_int_not_equal(r.status, 0);
		assert_non_null(strstr(r.err, "no image named"));
		cmd_run_free(&r);
	}
	world_end(&w);
}

static void
test_images_with_daemon(void **state)
{
	images(true);
}

static void
test_images_without_daemon(void **state)
{
	images(false);
}

/* Nothing to bake, and a bad family: said, exit 2, nothing created. */
static void
test_image_usage(void **state)
{
	const char *bad_family[] = {"image", "bake", "--family", "Not-A-Family", "--yes", NULL};
	const char *nothing[] = {"image", "bake", "--yes", NULL};
	const char *what[] = {"image", "polish", NULL};
	struct world w;
	struct cmd_run r;

	world_init(&w, false, NULL);
	cli(&w, &r, bad_family);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--family Not-A-Family"));
	cmd_run_free(&r);
	cli(&w, &r, nothing);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "backend.git is not set"));
	cmd_run_free(&r);
	cli(&w, &r, what);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "expected bake, list or delete"));
	cmd_run_free(&r);
	{
		json_t *insts = emu_instances(&w.e);

		assert_int_equal(json_array_size(insts), 0);
		json_decref(insts);
	}
	world_end(&w);
}

/* --- the warm pool (docs/pool.md) --- */

/* The status until its pool has a VM POOLED other than `not` (NULL: any); its name. */
static void
wait_pooled(struct world *w, const char * not, char *name, size_t size)
{
	const char *status[] = {"status", "--json", NULL};
	int64_t deadline = now_ms() + 90000;

	for (;;) {
		json_t *doc = cli_json(w, status, 0), *v;
		size_t i;

		json_array_foreach (jx_get(doc, "pool.vms"), i, v)
			if (str_eq(jx_str(v, "state"), "POOLED") &&
			    (not == NULL || strcmp(jx_str(v, "name"), not ) != 0)) {
				snprintf(name, size, "%s", jx_str(v, "name"));
				json_decref(doc);
				return;
			}
		json_decref(doc);
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("the pool never had a VM waiting");
		}
		sleep_ms(100);
	}
}

/*
 * A daemon with a pool of one: the pool fills (a VM made, READY once,
 * suspended, labelled), a VM asked for is that one resumed (no insert of
 * it), the pool fills again, and SIGTERM leaves it suspended.
 */
static void
test_pool_with_daemon(void **state)
{
	const char *env[] = {"SPILLWAY_POOL_SIZE=1", "GCP_VM_HEALTH_CHECK_INTERVAL=1", NULL};
	const char *create[] = {"create", "--yes", "--json", NULL};
	char pooled[64], again[64], path[160];
	struct world w;
	json_t *doc, *v, *it;
	size_t i;
	int inserts = 0, resumes = 0;

	world_init(&w, true, env);
	wait_pooled(&w, NULL, pooled, sizeof pooled);
	snprintf(path, sizeof path, "zones/us-central1-a/instances/%s", pooled);
	assert_non_null(v = emu_get(&w, path));
	assert_string_equal(jx_str(v, "status"), "SUSPENDED");
	assert_string_equal(jx_str(v, "labels.spillway-pool"), "true");
	json_decref(v);

	/* The plan a terminal is shown: that VM, resumed. */
	{
		struct answer a;

		sock_call(&w, &a, "POST", "/v1/vms", "{\"dry_run\": true}", 17);
		assert_int_equal(a.status, 200);
		assert_string_equal(jx_str(a.doc, "plan.pooled.name"), pooled);
		assert_string_equal(jx_str(a.doc, "plan.pooled.waits"), "suspended");
		answer_free(&a);
	}
	doc = cli_json(&w, create, 0);
	assert_string_equal(jx_str(doc, "vm.name"), pooled);
	assert_string_equal(jx_str(doc, "vm.state"), "READY");
	assert_string_equal(jx_str(doc, "vm.purpose"), "serve");
	json_decref(doc);
	v = emu_get(&w, "zones/us-central1-a/operations");
	json_array_foreach (json_object_get(v, "items"), i, it) {
		if (!str_suffix(jx_str(it, "targetLink"), pooled))
			continue;
		inserts += str_eq(jx_str(it, "operationType"), "insert");
		resumes += str_eq(jx_str(it, "operationType"), "resume");
	}
	json_decref(v);
	assert_int_equal(inserts, 1); /* made once, for the pool; resumed when asked for */
	assert_int_equal(resumes, 1);

	/* Made whole again; what it costs a day while it waits is in the costs. */
	wait_pooled(&w, pooled, again, sizeof again);
	{
		const char *costs[] = {"costs", "--json", NULL};

		doc = cli_json(&w, costs, 0);
		assert_true(json_number_value(jx_get(doc, "pool.per_day")) > 0);
		assert_true(json_number_value(jx_get(doc, "today.committed")) > 0);
		json_decref(doc);
	}
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	snprintf(path, sizeof path, "zones/us-central1-a/instances/%s", again);
	assert_non_null(v = emu_get(&w, path));
	assert_string_equal(jx_str(v, "status"), "SUSPENDED");
	json_decref(v);
	snprintf(path, sizeof path, "zones/us-central1-a/instances/%s", pooled);
	assert_null(emu_get(&w, path)); /* the one that served is deleted */
	world_end(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_commands_with_daemon),
	    cmocka_unit_test(test_commands_without_daemon),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_events),
	    cmocka_unit_test(test_other_user_refused),
	    cmocka_unit_test(test_interactive),
	    cmocka_unit_test(test_seed_flags),
	    cmocka_unit_test(test_doctor),
	    cmocka_unit_test(test_library),
	    cmocka_unit_test(test_stop),
	    cmocka_unit_test(test_images_with_daemon),
	    cmocka_unit_test(test_images_without_daemon),
	    cmocka_unit_test(test_image_usage),
	    cmocka_unit_test(test_pool_with_daemon),
	};

	jx_init();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
