/*
 * The emulator's Compute API over real HTTP: the lifecycle, guests, Google's
 * validation and errors, idempotent requestIds, maxRunDuration, machine
 * types, zones and regions. Every answer is checked against the schemas.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define ZONE "us-central1-a"
#define RID1 "2f1c6a2e-9c1d-4f3e-8a6b-0c1d2e3f4a5b"

static struct emu emu;

static int
start(void **state)
{
	const char *args[] = {
	    "--boot-ms", "300", "--stop-ms", "200", "--guest-boot-ms", "400", NULL};

	emu_start(&emu, args);
	return 0;
}

static int
stop(void **state)
{
	emu_stop(&emu);
	return 0;
}

static json_t *
insert(const char *zone, json_t *body, const char *request_id, long expect)
{
	char *tail =
	    request_id ? xasprintf("instances?requestId=%s", request_id) : xstrdup("instances");
	char *url = compute_url(&emu, zone, tail), *s = jx_dumps(body);
	json_t *v = api(&emu, "POST", url, s, expect);

	json_decref(body);
	free(s);
	free(url);
	free(tail);
	return v;
}

static json_t *
wait_op(const char *zone, const char *op)
{
	char *tail = xasprintf("operations/%s/wait", op), *url = compute_url(&emu, zone, tail);
	json_t *v;

	for (;;) {
		v = api(&emu, "POST", url, NULL, 200);
		expect_schema("Operation", v);
		if (strcmp(jx_str(v, "status"), "DONE") == 0)
			break;
		json_decref(v);
	}
	free(url);
	free(tail);
	return v;
}

static void
test_lifecycle(void **state)
{
	json_t *op, *v, *done;
	char *url = compute_url(&emu, ZONE, "instances/life-1"), *health;
	struct resp r;
	int64_t deadline;
	bool seen_starting = false;

	op = insert(ZONE,
	    instance_body(ZONE, "life-1", "e2-highmem-4", true, "managed-by", "spillway"), NULL,
	    200);
	expect_schema("Operation", op);
	assert_string_equal(jx_str(op, "operationType"), "insert");
	assert_string_equal(jx_str(op, "kind"), "compute#operation");
	assert_true(str_suffix(jx_str(op, "targetLink"), "/zones/" ZONE "/instances/life-1"));
	assert_true(str_suffix(jx_str(op, "user"), ".iam.gserviceaccount.com"));

	v = api(&emu, "GET", url, NULL, 200);
	expect_schema("Instance", v);
	assert_string_equal(jx_str(v, "status"), "PROVISIONING");
	assert_true(
	    str_suffix(jx_str(v, "machineType"), "/zones/" ZONE "/machineTypes/e2-highmem-4"));
	assert_string_equal(jx_str(v, "scheduling.provisioningModel"), "SPOT");
	assert_string_equal(jx_str(v, "scheduling.instanceTerminationAction"), "DELETE");
	assert_string_equal(jx_str(v, "disks.0.diskSizeGb"), "20");
	assert_true(json_is_string(json_object_get(v, "id")));
	assert_null(jx_get(v, "disks.0.initializeParams"));
	assert_string_equal(jx_str(v, "labels.managed-by"), "spillway");
	/* Timestamps: RFC 3339 with milliseconds and a numeric offset. */
	{
		const char *t = jx_str(v, "creationTimestamp");
		int64_t ms;

		assert_int_equal(strlen(t), 29);
		assert_true(t[19] == '.' && (t[23] == '-' || t[23] == '+'));
		assert_int_equal(time_parse_rfc3339(t, &ms), 0);
	}
	json_decref(v);

	done = wait_op(ZONE, jx_str(op, "name"));
	assert_null(json_object_get(done, "error"));
	assert_int_equal(json_integer_value(json_object_get(done, "progress")), 100);
	assert_non_null(jx_str(done, "endTime"));
	json_decref(done);
	v = wait_for_field(&emu, url, "status", "RUNNING", 10000);
	expect_schema("Instance", v);
	assert_non_null(jx_str(v, "lastStartTimestamp"));
	{
		const char *ip = jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP");

		assert_non_null(ip);
		assert_true(str_prefix(ip, "127."));
		assert_false(str_prefix(ip, "127.0.0."));
		health = xasprintf("http://%s:8010/health", ip);
	}
	json_decref(v);

	/* The guest: starting, then healthy with the metadata's components. */
	deadline = now_ms() + 10000;
	for (;;) {
		http_call(&r, "GET", health, NULL, NULL, NULL, NULL);
		if (r.status == 503) {
			assert_string_equal(jx_str(r.json, "status"), "starting");
			seen_starting = true;
		}
		if (r.status == 200)
			break;
		assert_true(now_ms() < deadline);
		resp_free(&r);
		sleep_ms(50);
	}
	assert_true(seen_starting);
	assert_string_equal(jx_str(r.json, "status"), "ok");
	assert_string_equal(jx_str(r.json, "instance"), "life-1");
	assert_string_equal(jx_str(r.json, "components.0"), "vision");
	assert_string_equal(jx_str(r.json, "components.1"), "chatbots");
	assert_non_null(jx_str(r.json, "last_activity"));
	resp_free(&r);

	/* Delete: STOPPING, then gone; the guest stops answering. */
	json_decref(op);
	op = api(&emu, "DELETE", url, NULL, 200);
	expect_schema("Operation", op);
	assert_string_equal(jx_str(op, "operationType"), "delete");
	v = api(&emu, "GET", url, NULL, 200);
	assert_string_equal(jx_str(v, "status"), "STOPPING");
	json_decref(v);
	done = wait_op(ZONE, jx_str(op, "name"));
	json_decref(done);
	v = api(&emu, "GET", url, NULL, 404);
	expect_google_error(v, 404, "notFound");
	assert_string_equal(jx_str(v, "error.message"),
	    "The resource 'projects/spillway-emulator/zones/" ZONE
	    "/instances/life-1' was not found");
	json_decref(v);
	json_decref(op);
	free(health);
	free(url);
}

static void
test_idempotent_insert(void **state)
{
	json_t *a, *b, *list;
	char *url = compute_url(&emu, ZONE, "instances?filter=name%20%3D%20idem-1");

	a = insert(ZONE, instance_body(ZONE, "idem-1", "e2-small", true, NULL, NULL), RID1, 200);
	b = insert(ZONE, instance_body(ZONE, "idem-1", "e2-small", true, NULL, NULL), RID1, 200);
	assert_string_equal(jx_str(a, "name"), jx_str(b, "name"));
	assert_string_equal(jx_str(a, "clientOperationId"), RID1);
	list = api(&emu, "GET", url, NULL, 200);
	expect_schema("InstanceList", list);
	assert_int_equal(json_array_size(json_object_get(list, "items")), 1);
	json_decref(list);
	json_decref(a);
	/* Without the requestId the same name is a conflict. */
	a = insert(ZONE, instance_body(ZONE, "idem-1", "e2-small", true, NULL, NULL), NULL, 409);
	expect_google_error(a, 409, "alreadyExists");
	assert_non_null(strstr(jx_str(a, "error.message"), "already exists"));
	json_decref(a);
	json_decref(b);
	a = insert(ZONE, instance_body(ZONE, "idem-2", "e2-small", true, NULL, NULL),
	    "00000000-0000-0000-0000-000000000000", 400);
	expect_google_error(a, 400, "invalid");
	assert_non_null(strstr(jx_str(a, "error.message"), "requestId"));
	json_decref(a);
	free(url);
}

struct bad {
	const char *what;
	const char *json;
	const char *message;
};

static void
test_validation(void **state)
{
	static const struct bad cases[] = {
	    {"bad name", "{\"name\":\"Bad_Name\"}",
	        "Invalid value for field 'resource.name': 'Bad_Name'"},
	    {"no machine type", "{\"name\":\"v1\"}", "Machine type must be specified"},
	    {"malformed machine type", "{\"name\":\"v1\",\"machineType\":\"e2-small\"}",
	        "The URL is malformed"},
	    {"unknown machine type",
	        "{\"name\":\"v1\",\"machineType\":\"zones/" ZONE "/machineTypes/e9-huge-3\"}",
	        "Machine type with name 'e9-huge-3' does not exist"},
	    {"unknown field", "{\"name\":\"v1\",\"colour\":\"red\"}", "unknown field 'colour'"},
	    {"wrong type", "{\"name\":5}", "'resource.name': expected a string"},
	    {"bad enum", "{\"name\":\"v1\",\"scheduling\":{\"provisioningModel\":\"CHEAP\"}}",
	        "'CHEAP' is not one of SPOT, STANDARD"},
	    {"not JSON", "{\"name\":", "Invalid JSON payload received"},
	};
	char *url = compute_url(&emu, ZONE, "instances");

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct resp r;

		http_call(&r, "POST", url, emu_token(&emu), cases[i].json, NULL, NULL);
		if (r.status != 400 || r.json == NULL ||
		    strstr(jx_str(r.json, "error.message"), cases[i].message) == NULL)
			fail_msg("%s: %ld %s", cases[i].what, r.status, r.body);
		expect_google_error(r.json, 400, NULL);
		resp_free(&r);
	}
	free(url);
}

static void
bad_instance(json_t *body, const char *message)
{
	char *url = compute_url(&emu, ZONE, "instances"), *s = jx_dumps(body);
	struct resp r;

	http_call(&r, "POST", url, emu_token(&emu), s, NULL, NULL);
	if (r.status != 400 || strstr(r.body, message) == NULL)
		fail_msg("expected 400 with '%s', got %ld %s", message, r.status, r.body);
	expect_google_error(r.json, 400, "invalid");
	resp_free(&r);
	json_decref(body);
	free(s);
	free(url);
}

static void
test_validation_rules(void **state)
{
	json_t *b;

	b = instance_body(ZONE, "v2", "e2-small", true, "Bad-Key", "x");
	bad_instance(b, "Label key 'Bad-Key' violates format constraints");
	b = instance_body(ZONE, "v2", "e2-small", true, "k", "UPPER");
	bad_instance(b, "Label value 'UPPER' violates format constraints");
	b = instance_body(ZONE, "v2", "e2-small", true, NULL, NULL);
	json_object_set_new(
	    json_object_get(b, "scheduling"), "maxRunDuration", jx_pack("{s:s}", "seconds", "10"));
	bad_instance(b, "Must be between 30 seconds and 120 days");
	b = instance_body(ZONE, "v2", "e2-small", false, NULL, NULL);
	json_object_set_new(
	    b, "scheduling", jx_pack("{s:{s:s}}", "maxRunDuration", "seconds", "60"));
	bad_instance(b, "Instance termination action must be specified");
	b = instance_body(ZONE, "v2", "e2-small", true, NULL, NULL);
	json_object_set_new(json_object_get(b, "scheduling"), "automaticRestart", json_true());
	bad_instance(b, "cannot be automatically restarted");
	b = instance_body(ZONE, "v2", "e2-small", true, NULL, NULL);
	json_object_set_new(b, "disks", json_array());
	bad_instance(b, "At least one disk");
	b = instance_body(ZONE, "v2", "e2-small", true, NULL, NULL);
	json_object_set_new(jx_get(b, "disks.0.initializeParams"), "diskSizeGb", json_string("5"));
	bad_instance(b, "cannot be smaller than the image size");
	b = instance_body(ZONE, "v2", "e2-small", true, NULL, NULL);
	json_array_append_new(jx_get(b, "metadata.items"),
	    jx_pack("{s:s, s:s}", "key", "spillway-components", "value", "x"));
	bad_instance(b, "Duplicate metadata key");
	b = instance_body(ZONE, "v2", "e2-small", true, NULL, NULL);
	{
		/* 600 KB of metadata: over Google's 512 KB. */
		char *big = xmalloc(600 * 1024 + 1);

		memset(big, 'x', 600 * 1024);
		big[600 * 1024] = '\0';
		json_array_append_new(
		    jx_get(b, "metadata.items"), jx_pack("{s:s, s:s}", "key", "big", "value", big));
		free(big);
	}
	bad_instance(b, "exceeds the limit of 524288 bytes");
}

static void
test_request_errors(void **state)
{
	char *url = compute_url(&emu, ZONE, "instances"), *big;
	struct resp r;

	/* No token, a bad token. */
	http_call(&r, "GET", url, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 401);
	expect_google_error(r.json, 401, "required");
	assert_string_equal(jx_str(r.json, "error.status"), "UNAUTHENTICATED");
	assert_non_null(strstr(r.headers, "WWW-Authenticate: Bearer"));
	resp_free(&r);
	http_call(&r, "GET", url, "ya29.not-a-token", NULL, NULL, NULL);
	assert_int_equal(r.status, 401);
	expect_google_error(r.json, 401, "authError");
	resp_free(&r);
	/* A body past the 1 MiB bound. */
	big = xmalloc(2 * 1024 * 1024 + 3);
	memset(big, ' ', 2 * 1024 * 1024 + 2);
	big[0] = '{';
	big[2 * 1024 * 1024 + 1] = '}';
	big[2 * 1024 * 1024 + 2] = '\0';
	http_call(&r, "POST", url, emu_token(&emu), big, NULL, NULL);
	assert_int_equal(r.status, 413);
	expect_google_error(r.json, 413, NULL);
	resp_free(&r);
	free(big);
	free(url);
	/* Unknown project, unknown zone, bad zone, traversal, unknown path. */
	{
		static const struct {
			const char *path;
			long status;
			const char *reason;
		} cases[] = {
		    {"/compute/v1/projects/other-project/zones/" ZONE "/instances", 404,
		        "notFound"},
		    {"/compute/v1/projects/spillway-emulator/zones/us-east9-z/instances", 400,
		        "invalid"},
		    {"/compute/v1/projects/spillway-emulator/zones/BAD/instances", 400,
		        "invalidParameter"},
		    {"/compute/v1/projects/spillway-emulator/zones/" ZONE "/../../etc/passwd", 400,
		        "invalid"},
		    {"/compute/v1/projects/spillway-emulator/zones/" ZONE "/%2e%2e/x", 400,
		        "invalid"},
		    {"/compute/v1/projects/spillway-emulator/zones/" ZONE "/widgets", 404,
		        "notFound"},
		    {"/nowhere", 404, "notFound"},
		};

		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			char *u = xasprintf("%s%s", emu.url, cases[i].path);
			http_call(&r, "GET", u, emu_token(&emu), NULL, NULL, NULL);
			if (r.status != cases[i].status || r.json == NULL)
				fail_msg("%s: %ld %s", cases[i].path, r.status, r.body);
			expect_google_error(r.json, cases[i].status, cases[i].reason);
			resp_free(&r);
			free(u);
		}
	}
}

static void
test_machine_types_zones_regions(void **state)
{
	char *url = compute_url(&emu, ZONE, "machineTypes/e2-highmem-4");
	json_t *v = api(&emu, "GET", url, NULL, 200);

	expect_schema("MachineType", v);
	assert_int_equal(json_integer_value(json_object_get(v, "guestCpus")), 4);
	assert_int_equal(json_integer_value(json_object_get(v, "memoryMb")), 32768);
	assert_string_equal(jx_str(v, "zone"), ZONE);
	json_decref(v);
	free(url);
	url = compute_url(&emu, ZONE, "machineTypes/n2-highcpu-16");
	v = api(&emu, "GET", url, NULL, 200);
	assert_int_equal(json_integer_value(json_object_get(v, "memoryMb")), 16384);
	json_decref(v);
	free(url);
	url = compute_url(&emu, ZONE, "machineTypes/e2-enormous-2");
	v = api(&emu, "GET", url, NULL, 404);
	expect_google_error(v, 404, "notFound");
	json_decref(v);
	free(url);
	url = xasprintf("%s/compute/v1/projects/spillway-emulator/zones/" ZONE, emu.url);
	v = api(&emu, "GET", url, NULL, 200);
	expect_schema("Zone", v);
	assert_string_equal(jx_str(v, "status"), "UP");
	json_decref(v);
	free(url);
	url = xasprintf("%s/compute/v1/projects/spillway-emulator/zones", emu.url);
	v = api(&emu, "GET", url, NULL, 200);
	expect_schema("ZoneList", v);
	assert_int_equal(json_array_size(json_object_get(v, "items")), 3);
	json_decref(v);
	free(url);
	url = xasprintf("%s/compute/v1/projects/spillway-emulator/regions/us-central1", emu.url);
	v = api(&emu, "GET", url, NULL, 200);
	expect_schema("Region", v);
	assert_string_equal(jx_str(v, "quotas.0.metric"), "CPUS");
	json_decref(v);
	free(url);
}

/* maxRunDuration on a clock running 200 times fast: 60 s pass in 0.3 s. */
static void
test_max_run_duration(void **state)
{
	const char *args[] = {
	    "--boot-ms", "2000", "--stop-ms", "2000", "--time-scale", "200", NULL};
	struct emu fast;
	json_t *b, *op, *v;
	char *url_del, *url_stop, *s, *ins;

	emu_start(&fast, args);
	ins = compute_url(&fast, ZONE, "instances");
	b = instance_body(ZONE, "mrd-delete", "e2-small", true, NULL, NULL);
	json_object_set_new(
	    json_object_get(b, "scheduling"), "maxRunDuration", jx_pack("{s:s}", "seconds", "60"));
	s = jx_dumps(b);
	op = api(&fast, "POST", ins, s, 200);
	json_decref(op);
	json_decref(b);
	free(s);
	b = instance_body(ZONE, "mrd-stop", "e2-small", true, NULL, NULL);
	json_object_set_new(
	    json_object_get(b, "scheduling"), "instanceTerminationAction", json_string("STOP"));
	json_object_set_new(
	    json_object_get(b, "scheduling"), "maxRunDuration", jx_pack("{s:s}", "seconds", "60"));
	s = jx_dumps(b);
	op = api(&fast, "POST", ins, s, 200);
	json_decref(op);
	json_decref(b);
	free(s);

	url_del = compute_url(&fast, ZONE, "instances/mrd-delete");
	url_stop = compute_url(&fast, ZONE, "instances/mrd-stop");
	v = wait_for_field(&fast, url_stop, "status", "RUNNING", 20000);
	json_decref(v);
	/* DELETE removes the instance; STOP leaves it TERMINATED. */
	wait_for_status(&fast, url_del, 404, 20000);
	v = wait_for_field(&fast, url_stop, "status", "TERMINATED", 20000);
	expect_schema("Instance", v);
	assert_non_null(jx_str(v, "lastStopTimestamp"));
	assert_null(jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP"));
	json_decref(v);
	free(url_del);
	free(url_stop);
	free(ins);
	emu_stop(&fast);
}

/* Two emulators at once: their guests get different addresses on the same port. */
static void
test_parallel_emulators(void **state)
{
	const char *args[] = {"--boot-ms", "100", "--guest-boot-ms", "0", NULL};
	struct emu a, b;
	struct emu *both[2] = {&a, &b};
	char *ips[2];

	emu_start(&a, args);
	emu_start(&b, args);
	for (int i = 0; i < 2; i++) {
		char *ins = compute_url(both[i], ZONE, "instances");
		char *url = compute_url(both[i], ZONE, "instances/twin");
		json_t *body = instance_body(ZONE, "twin", "e2-small", false, NULL, NULL), *v;
		char *s = jx_dumps(body), *health;
		struct resp r;

		json_decref(api(both[i], "POST", ins, s, 200));
		v = wait_for_field(both[i], url, "status", "RUNNING", 10000);
		ips[i] = xstrdup(jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP"));
		health = xasprintf("http://%s:8010/health", ips[i]);
		http_call(&r, "GET", health, NULL, NULL, NULL, NULL);
		assert_int_equal(r.status, 200);
		resp_free(&r);
		json_decref(v);
		json_decref(body);
		free(health);
		free(s);
		free(url);
		free(ins);
	}
	assert_string_not_equal(ips[0], ips[1]);
	free(ips[0]);
	free(ips[1]);
	emu_stop(&a);
	emu_stop(&b);
}

/* SIGTERM while a client waits on an operation: it gets an answer, the emulator exits 0. */
static void
test_shutdown_with_waiter(void **state)
{
	const char *args[] = {"--boot-ms", "600000", NULL};
	struct emu e;
	json_t *op;
	char *ins, *s, *wait_url, *tail;
	json_t *body = instance_body(ZONE, "slow", "e2-small", false, NULL, NULL);
	pid_t child;
	int status;

	emu_start(&e, args);
	ins = compute_url(&e, ZONE, "instances");
	s = jx_dumps(body);
	op = api(&e, "POST", ins, s, 200);
	tail = xasprintf("operations/%s/wait", jx_str(op, "name"));
	wait_url = compute_url(&e, ZONE, tail);
	emu_token(&e);
	child = fork();
	if (child == 0) {
		struct resp r;

		http_call(&r, "POST", wait_url, e.token, NULL, NULL, NULL);
		_exit(r.status == 503 ? 0 : 1);
	}
	/* The emulator holds the waiter: the operation cannot finish before shutdown. */
	{
		char *stats = xasprintf("%s/emulator/v1/stats", e.url);
		int64_t deadline = now_ms() + 10000;
		struct resp r;

		for (;;) {
			http_call(&r, "GET", stats, NULL, NULL, NULL, NULL);
			if (json_integer_value(json_object_get(r.json, "pending")) >= 1)
				break;
			assert_true(now_ms() < deadline);
			resp_free(&r);
			sleep_ms(20);
		}
		resp_free(&r);
		free(stats);
	}
	emu_stop(&e);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	json_decref(op);
	json_decref(body);
	free(s);
	free(ins);
	free(tail);
	free(wait_url);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lifecycle),
	    cmocka_unit_test(test_idempotent_insert),
	    cmocka_unit_test(test_validation),
	    cmocka_unit_test(test_validation_rules),
	    cmocka_unit_test(test_request_errors),
	    cmocka_unit_test(test_machine_types_zones_regions),
	    cmocka_unit_test(test_max_run_duration),
	    cmocka_unit_test(test_parallel_emulators),
	    cmocka_unit_test(test_shutdown_with_waiter),
	};

	jx_init();
	return cmocka_run_group_tests(tests, start, stop);
}
