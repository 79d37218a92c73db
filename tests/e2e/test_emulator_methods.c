/*
 * The methods on an instance, and what gcloud relies on besides, over real
 * HTTP: fingerprints (stale, URL-safe), metadata the guest sees at once,
 * stop/start/suspend/resume and what each state refuses, a start that a
 * stockout fails, disks that go or stay with their instance, the serial
 * console's offsets, references in every form, and the batch endpoint.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define ZONE "us-central1-a"

static struct emu emu;

static int
start(void **state)
{
	/* A guest that boots says "starting" for a minute: a resumed one must not. */
	const char *args[] = {
	    "--boot-ms", "200", "--stop-ms", "100", "--guest-boot-ms", "60000", NULL};

	emu_start(&emu, args);
	return 0;
}

static int
stop(void **state)
{
	emu_stop(&emu);
	return 0;
}

static char *
url_of(const char *tail)
{
	return compute_url(&emu, ZONE, tail);
}

/* POST/DELETE tail (body may be NULL): its operation, waited for until DONE. */
static json_t *
call_done(const char *method, const char *tail, const char *body)
{
	char *url = url_of(tail), *wait;
	json_t *op = api(&emu, method, url, body, 200), *done;

	wait = xasprintf("operations/%s/wait", jx_str(op, "name"));
	free(url);
	url = url_of(wait);
	done = api(&emu, "POST", url, NULL, 200);
	assert_string_equal(jx_str(done, "status"), "DONE");
	json_decref(op);
	free(wait);
	free(url);
	return done;
}

static json_t *
get(const char *tail)
{
	char *url = url_of(tail);
	json_t *v = api(&emu, "GET", url, NULL, 200);

	free(url);
	return v;
}

static void
make(const char *name, const char *machine, json_t *extra)
{
	json_t *b = instance_body(ZONE, name, machine, true, "team", "ml");
	char *s;

	if (extra != NULL) {
		json_object_update(b, extra);
		json_decref(extra);
	}
	s = jx_dumps(b);
	json_decref(call_done("POST", "instances", s));
	free(s);
	json_decref(b);
}

static const char *
status_of(const char *name)
{
	static char status[32];
	char *tail = xasprintf("instances/%s", name);
	json_t *v = get(tail);

	snprintf(status, sizeof status, "%s", jx_str(v, "status"));
	json_decref(v);
	free(tail);
	return status;
}

/* The guest's /health status now (0: refused). */
static long
health(const char *name)
{
	char *tail = xasprintf("instances/%s", name), *u;
	json_t *v = get(tail);
	struct resp r;
	long status;

	u = xasprintf(
	    "http://%s:8010/health", jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP"));
	http_call(&r, "GET", u, NULL, NULL, NULL, NULL);
	status = r.status;
	resp_free(&r);
	json_decref(v);
	free(tail);
	free(u);
	return status;
}

static void
test_fingerprints(void **state)
{
	json_t *vm, *v;
	char *body, *url, *urlsafe;

	make("fp-1", "e2-small", NULL);
	vm = get("instances/fp-1");
	/* Stale: 412, and nothing changed. */
	url = url_of("instances/fp-1/setLabels");
	v = api(&emu, "POST", url,
	    "{\"labels\":{\"env\":\"dev\"},\"labelFingerprint\":\"AAAAAAAAAAA=\"}", 412);
	expect_google_error(v, 412, "conditionNotMet");
	json_decref(v);
	/* None: 400. */
	v = api(&emu, "POST", url, "{\"labels\":{\"env\":\"dev\"}}", 400);
	json_decref(v);
	/* The current one, in the URL-safe alphabet as gcloud sends it: taken. */
	urlsafe = xstrdup(jx_str(vm, "labelFingerprint"));
	for (char *p = urlsafe; *p != '\0'; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	body = xasprintf("{\"labels\":{},\"labelFingerprint\":\"%s\"}", urlsafe);
	json_decref(call_done("POST", "instances/fp-1/setLabels", body));
	free(body);
	json_decref(vm);
	vm = get("instances/fp-1");
	assert_null(json_object_get(vm, "labels"));
	/* No labels: Google's empty-set fingerprint. */
	assert_string_equal(jx_str(vm, "labelFingerprint"), "42WmSpB8rSM=");
	/* Metadata changed: the guest's metadata server sees it at once. */
	body =
	    xasprintf("{\"fingerprint\":\"%s\",\"items\":[{\"key\":\"color\",\"value\":\"blue\"}]}",
	        jx_str(vm, "metadata.fingerprint"));
	json_decref(call_done("POST", "instances/fp-1/setMetadata", body));
	free(body);
	{
		char *murl = xasprintf("%s/computeMetadata/v1/instance/attributes/color", emu.url);
		const char *hdrs[] = {
		    "Metadata-Flavor: Google", "X-Emulator-Instance: " ZONE "/fp-1", NULL};
		struct resp r;

		http_call(&r, "GET", murl, NULL, NULL, hdrs, NULL);
		assert_int_equal(r.status, 200);
		assert_string_equal(r.body, "blue");
		resp_free(&r);
		free(murl);
	}
	json_decref(vm);
	free(urlsafe);
	free(url);
}

/* A power change, waited for: the state it leaves the VM in must be want. */
static void
power(const char *name, const char *verb, const char *want)
{
	char *tail = xasprintf("instances/%s/%s", name, verb);

	json_decref(call_done("POST", tail, NULL));
	assert_string_equal(status_of(name), want);
	free(tail);
}

/* A suspend Google refuses: 400 unsupportedOperation, saying why. */
static void
refused(const char *tail, const char *why)
{
	char *url = url_of(tail);
	json_t *v = api(&emu, "POST", url, NULL, 400);

	expect_google_error(v, 400, "unsupportedOperation");
	if (strstr(jx_str(v, "error.message"), why) == NULL)
		fail_msg("%s: '%s' does not say '%s'", tail, jx_str(v, "error.message"), why);
	json_decref(v);
	free(url);
}

static void
test_power(void **state)
{
	json_t *op;

	make("pw-1", "e2-small", NULL);
	/* Suspended: a second suspend is refused. */
	power("pw-1", "suspend", "SUSPENDED");
	refused("instances/pw-1/suspend", "already suspended");
	/* Resumed: its memory was kept, its backend serves at once. */
	power("pw-1", "resume", "RUNNING");
	assert_int_equal(health("pw-1"), 200);
	/* Stopped and started: it boots, and says so. */
	power("pw-1", "stop", "TERMINATED");
	refused("instances/pw-1/suspend", "stopped or terminated");
	power("pw-1", "start", "RUNNING");
	assert_int_equal(health("pw-1"), 503);
	/* A suspended VM stopped: it gives up its saved memory. */
	power("pw-1", "suspend", "SUSPENDED");
	power("pw-1", "stop", "TERMINATED");
	/* A start the zone cannot serve: the operation's error, the VM left stopped. */
	emu_set_faults(&emu, "stockout=" ZONE);
	op = call_done("POST", "instances/pw-1/start", NULL);
	assert_string_equal(jx_str(op, "error.errors.0.code"), "ZONE_RESOURCE_POOL_EXHAUSTED");
	assert_string_equal(status_of("pw-1"), "TERMINATED");
	json_decref(op);
	emu_set_faults(&emu, "");
	/* Over 208 GB of memory: not suspended. */
	make("pw-2", "n2-highmem-32", NULL);
	refused("instances/pw-2/suspend", "208 GB");
}

static void
test_disks_and_console(void **state)
{
	json_t *v, *extra;
	char *url;

	/* A second disk that outlives its instance; a third, named by none, that goes with it. */
	extra = json_pack("{s:[{s:b, s:b, s:{s:s, s:s}}, {s:b, s:{s:s, s:s}}, {s:b, s:{s:s}}]}",
	    "disks", "boot", true, "autoDelete", true, "initializeParams", "sourceImage",
	    "https://compute.googleapis.com/compute/v1/projects/debian-cloud/global/images/family/"
	    "debian-12",
	    "diskSizeGb", "20", "autoDelete", false, "initializeParams", "diskName", "dk-data",
	    "diskSizeGb", "50", "autoDelete", true, "initializeParams", "diskSizeGb", "10");
	make("dk-1", "e2-small", extra);
	/* Listed in the order asked, over the selection asked. */
	v = get("disks?filter=name%20%3D%20dk-*&orderBy=name%20desc");
	assert_int_equal(json_array_size(json_object_get(v, "items")), 3);
	assert_string_equal(jx_str(v, "items.0.name"), "dk-data");
	assert_string_equal(jx_str(v, "items.1.name"), "dk-1-2");
	assert_string_equal(jx_str(v, "items.2.name"), "dk-1");
	json_decref(v);
	v = get("disks/dk-data");
	expect_schema("Disk", v);
	assert_string_equal(jx_str(v, "sizeGb"), "50");
	assert_true(str_suffix(jx_str(v, "users.0"), "/instances/dk-1"));
	json_decref(v);
	/* In use: not deleted. */
	url = url_of("disks/dk-data");
	v = api(&emu, "DELETE", url, NULL, 400);
	expect_google_error(v, 400, "resourceInUseByAnotherResource");
	json_decref(v);
	/* The console of no instance: 404, and the emulator serves on. */
	{
		char *u = url_of("instances/nope/serialPort?port=2&start=3");

		expect_google_error(v = api(&emu, "GET", u, NULL, 404), 404, "notFound");
		json_decref(v);
		free(u);
	}
	/* The console: where a read starts and where the next should. */
	v = get("instances/dk-1/serialPort?start=5");
	expect_schema("SerialPortOutput", v);
	assert_string_equal(jx_str(v, "start"), "5");
	assert_int_equal(strlen(jx_str(v, "contents")) + 5, strtoul(jx_str(v, "next"), NULL, 10));
	assert_true(str_prefix(jx_str(v, "contents"), "OS (version"));
	json_decref(v);
	/* The instance goes: its boot disk with it, the other detached. */
	json_decref(call_done("DELETE", "instances/dk-1", NULL));
	v = api(&emu, "GET", url, NULL, 200);
	assert_null(json_object_get(v, "users"));
	json_decref(v);
	free(url);
	url = url_of("disks/dk-1");
	json_decref(api(&emu, "GET", url, NULL, 404));
	free(url);
	url = url_of("disks/dk-1-2");
	json_decref(api(&emu, "GET", url, NULL, 404));
	free(url);
	json_decref(call_done("DELETE", "disks/dk-data", NULL));
}

static void
test_references(void **state)
{
	char *own = xasprintf("%s/compute/v1/projects/spillway-emulator/zones/" ZONE
	                      "/machineTypes/e2-small",
	    emu.url);
	json_t *v, *b;
	char *s, *url = url_of("instances");

	/* The emulator's own base URL, as gcloud builds it: stored as Google's link. */
	b = instance_body(ZONE, "ref-1", "e2-small", true, NULL, NULL);
	json_object_set_new(b, "machineType", json_string(own));
	s = jx_dumps(b);
	json_decref(call_done("POST", "instances", s));
	free(s);
	v = get("instances/ref-1");
	assert_string_equal(jx_str(v, "machineType"),
	    "https://www.googleapis.com/compute/v1/projects/spillway-emulator/zones/" ZONE
	    "/machineTypes/e2-small");
	json_decref(v);
	/* An image that does not exist: 404; a URL of another server: 400. */
	json_object_set_new(b, "name", json_string("ref-2"));
	json_object_set_new(
	    json_object_get(json_array_get(json_object_get(b, "disks"), 0), "initializeParams"),
	    "sourceImage", json_string("projects/debian-cloud/global/images/family/debian-7"));
	s = jx_dumps(b);
	expect_google_error(v = api(&emu, "POST", url, s, 404), 404, "notFound");
	json_decref(v);
	free(s);
	json_object_set_new(b, "machineType",
	    json_string("https://example.com/compute/v1/projects/spillway-emulator/zones/" ZONE
	                "/machineTypes/e2-small"));
	s = jx_dumps(b);
	expect_google_error(v = api(&emu, "POST", url, s, 400), 400, "invalid");
	json_decref(v);
	free(s);
	json_decref(b);
	free(url);
	free(own);
}

/* A repeated requestId answers the operation it first made, and changes nothing again. */
static void
test_request_ids(void **state)
{
	const char *rid = "7c1d2a3b-4e5f-4a6b-8c9d-0e1f2a3b4c5d";
	char *reset =
	    url_of("instances/ref-1/reset?requestId=7c1d2a3b-4e5f-4a6b-8c9d-0e1f2a3b4c5d");
	char *images = xasprintf("%s/compute/v1/projects/spillway-emulator/global/images"
	                         "?forceCreate=true",
	    emu.url);
	char *del = xasprintf("%s/compute/v1/projects/spillway-emulator/global/images/rid-1"
	                      "?requestId=%s",
	    emu.url, rid);
	json_t *a = api(&emu, "POST", reset, NULL, 200), *b = api(&emu, "POST", reset, NULL, 200),
	       *v;
	const char *console;
	int boots = 0;

	assert_string_equal(jx_str(a, "name"), jx_str(b, "name"));
	v = get("instances/ref-1/serialPort");
	console = jx_str(v, "contents");
	for (const char *p = console; (p = strstr(p, "Booting from Hard Disk")) != NULL; p++)
		boots++;
	assert_int_equal(boots, 2); /* its first boot, and one reset */
	json_decref(v);
	json_decref(a);
	json_decref(b);
	/* An image deleted twice under one requestId: the first delete's operation, not a 404. */
	json_decref(api(&emu, "POST", images,
	    "{\"name\":\"rid-1\",\"sourceDisk\":\"zones/" ZONE "/disks/ref-1\"}", 200));
	a = api(&emu, "DELETE", del, NULL, 200);
	b = api(&emu, "DELETE", del, NULL, 200);
	assert_string_equal(jx_str(a, "name"), jx_str(b, "name"));
	json_decref(a);
	json_decref(b);
	free(reset);
	free(images);
	free(del);
}

/* A firewall rule's network is checked as an instance's: malformed 400, unknown 404. */
static void
test_firewall_network(void **state)
{
	char *url = xasprintf("%s/compute/v1/projects/spillway-emulator/global/firewalls", emu.url);
	char *one = xasprintf("%s/fw-1", url);
	json_t *v;

	v = api(&emu, "POST", url,
	    "{\"name\":\"fw-1\",\"network\":\"global/networks/nope\",\"allowed\":"
	    "[{\"IPProtocol\":\"tcp\"}]}",
	    404);
	expect_google_error(v, 404, "notFound");
	json_decref(v);
	v = api(&emu, "POST", url,
	    "{\"name\":\"fw-1\",\"network\":\"https://example.com/n\",\"allowed\":"
	    "[{\"IPProtocol\":\"tcp\"}]}",
	    400);
	expect_google_error(v, 400, "invalid");
	json_decref(v);
	json_decref(api(
	    &emu, "POST", url, "{\"name\":\"fw-1\",\"allowed\":[{\"IPProtocol\":\"tcp\"}]}", 200));
	/* Patched with a partial reference: stored as Google's link; an unknown one refused. */
	json_decref(api(&emu, "PATCH", one, "{\"network\":\"global/networks/default\"}", 200));
	v = api(&emu, "GET", one, NULL, 200);
	assert_string_equal(jx_str(v, "network"),
	    "https://www.googleapis.com/compute/v1/projects/spillway-emulator/global/networks/"
	    "default");
	json_decref(v);
	json_decref(api(&emu, "PATCH", one, "{\"network\":\"global/networks/nope\"}", 404));
	json_decref(api(&emu, "DELETE", one, NULL, 200));
	free(one);
	free(url);
}

static void
test_batch(void **state)
{
	const char *body =
	    "--XyZ\r\nContent-Type: application/http\r\nContent-ID: <b+0>\r\n\r\n"
	    "GET /compute/v1/projects/spillway-emulator/zones/" ZONE "/instances/ref-1?alt=json "
	    "HTTP/1.1\r\n\r\n\r\n"
	    "--XyZ\r\nContent-Type: application/http\r\nContent-ID: <b+1>\r\n\r\n"
	    "GET /compute/v1/projects/spillway-emulator/zones/" ZONE "/instances/nope HTTP/1.1\r\n"
	    "\r\n\r\n"
	    "--XyZ\r\nContent-Type: application/http\r\nContent-ID: <b+2>\r\n\r\n"
	    "POST /compute/v1/projects/spillway-emulator/zones/" ZONE "/instances/ref-1/stop?alt "
	    "HTTP/1.1\r\nContent-Length: 0\r\n\r\n\r\n"
	    "--XyZ--\r\n";
	char *url = xasprintf("%s/batch/compute/v1", emu.url), *auth;
	const char *hdrs[3] = {"Content-Type: multipart/mixed; boundary=XyZ"};
	const char *a, *b2, *c;
	struct resp r;

	auth = xasprintf("Authorization: Bearer %s", emu_token(&emu));
	hdrs[1] = auth;
	http_call(&r, "POST", url, NULL, body, hdrs, NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "multipart/mixed; boundary=batch_"));
	/* In order, each with its Content-ID and its own status. */
	a = strstr(r.body, "Content-ID: <response-b+0>");
	b2 = strstr(r.body, "Content-ID: <response-b+1>");
	c = strstr(r.body, "Content-ID: <response-b+2>");
	assert_true(a != NULL && b2 > a && c > b2);
	assert_non_null(strstr(a, "HTTP/1.1 200 OK"));
	assert_true(strstr(b2, "HTTP/1.1 404 Not Found") < c);
	assert_non_null(strstr(c, "\"operationType\":\"stop\""));
	resp_free(&r);
	/* Not multipart: a clear 400. */
	hdrs[0] = "Content-Type: application/json";
	http_call(&r, "POST", url, NULL, "{}", hdrs, NULL);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "multipart/mixed"));
	resp_free(&r);
	free(auth);
	free(url);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fingerprints),
	    cmocka_unit_test(test_power),
	    cmocka_unit_test(test_disks_and_console),
	    cmocka_unit_test(test_references),
	    cmocka_unit_test(test_request_ids),
	    cmocka_unit_test(test_firewall_network),
	    cmocka_unit_test(test_batch),
	};

	return cmocka_run_group_tests(tests, start, stop);
}
