/*
 * Every fault the emulator injects, at start (--faults) and at run time
 * (PUT /emulator/v1/faults), and preemption seen from outside (an operation)
 * and from inside (the guest's metadata).
 */
#include <setjmp.h>
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
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define ZONE "us-central1-a"

static struct emu emu;

static int
start(void **state)
{
	const char *args[] = {"--boot-ms", "200", "--stop-ms", "100", "--guest-boot-ms", "0",
	    "--preempt-notice-ms", "400", "--seed", "7", NULL};

	emu_start(&emu, args);
	return 0;
}

static int
stop(void **state)
{
	emu_stop(&emu);
	return 0;
}

static void
set_faults(const char *spec, long expect)
{
	char *url = xasprintf("%s/emulator/v1/faults", emu.url);
	char *body = xasprintf("{\"faults\":\"%s\"}", spec);
	struct resp r;

	http_call(&r, "PUT", url, NULL, body, NULL, NULL);
	if (r.status != expect)
		fail_msg("PUT faults %s: %ld %s", spec, r.status, r.body);
	resp_free(&r);
	free(body);
	free(url);
}

/* Forget every instance, operation and fault (tokens stay valid). */
static void
reset(void)
{
	char *url = xasprintf("%s/emulator/v1/reset", emu.url);
	struct resp r;

	http_call(&r, "POST", url, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	free(url);
}

static json_t *
insert(const char *zone, const char *name, bool spot)
{
	char *url = compute_url(&emu, zone, "instances");
	json_t *b = instance_body(zone, name, "e2-highmem-4", spot, NULL, NULL), *op;
	char *s = jx_dumps(b);

	op = api(&emu, "POST", url, s, 200);
	json_decref(b);
	free(s);
	free(url);
	return op;
}

static json_t *
wait_done(const char *zone, const json_t *op)
{
	char *tail = xasprintf("operations/%s/wait", jx_str(op, "name"));
	char *url = compute_url(&emu, zone, tail);
	json_t *v;

	for (;;) {
		v = api(&emu, "POST", url, NULL, 200);
		expect_schema("Operation", v);
		if (strcmp(jx_str(v, "status"), "DONE") == 0)
			break;
		json_decref(v);
	}
	free(tail);
	free(url);
	return v;
}

static void
test_server_errors(void **state)
{
	static const struct {
		const char *spec;
		long status;
		const char *reason, *domain;
	} cases[] = {
	    {"error500=1", 500, "backendError", "global"},
	    {"error503=1", 503, "backendError", "global"},
	    {"rate429=1", 429, "rateLimitExceeded", "global"},
	    {"rate403=1", 403, "rateLimitExceeded", "usageLimits"},
	};
	char *url = compute_url(&emu, ZONE, "instances");

	emu_token(&emu); /* the token endpoint itself is not faulted */
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct resp r;

		set_faults(cases[i].spec, 200);
		http_call(&r, "GET", url, emu.token, NULL, NULL, NULL);
		assert_int_equal(r.status, cases[i].status);
		expect_google_error(r.json, cases[i].status, cases[i].reason);
		assert_string_equal(jx_str(r.json, "error.errors.0.domain"), cases[i].domain);
		if (cases[i].status == 429)
			assert_string_equal(jx_str(r.json, "error.status"), "RESOURCE_EXHAUSTED");
		resp_free(&r);
	}
	set_faults("", 200);
	free(url);
}

/* A 503 on a mutation may hit after the change: the instance exists though the answer failed. */
static void
test_lost_answers(void **state)
{
	char *url = compute_url(&emu, ZONE, "instances");
	int created_anyway = 0, refused = 0;

	set_faults("error503=1", 200);
	for (int i = 0; i < 16; i++) {
		char name[32], *s, *get;
		json_t *b;
		struct resp r;

		snprintf(name, sizeof name, "lost-%d", i);
		b = instance_body(ZONE, name, "e2-small", false, NULL, NULL);
		s = jx_dumps(b);
		http_call(&r, "POST", url, emu_token(&emu), s, NULL, NULL);
		assert_int_equal(r.status, 503);
		resp_free(&r);
		set_faults("", 200);
		get = xasprintf("%s/%s", url, name);
		http_call(&r, "GET", get, emu.token, NULL, NULL, NULL);
		if (r.status == 200)
			created_anyway++;
		else
			refused++;
		resp_free(&r);
		set_faults("error503=1", 200);
		json_decref(b);
		free(s);
		free(get);
	}
	set_faults("", 200);
	/* With seed 7, both kinds happen among 16 tries (each is a coin toss). */
	assert_true(created_anyway > 0);
	assert_true(refused > 0);
	free(url);
}

static void
test_latency(void **state)
{
	char *url = compute_url(&emu, ZONE, "instances");
	struct resp r;

	set_faults("latency=300", 200);
	http_call(&r, "GET", url, emu_token(&emu), NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	/* A lower bound only: the answer cannot come before the added latency. */
	assert_true(r.seconds >= 0.3);
	resp_free(&r);
	set_faults("", 200);
	free(url);
}

static void
test_quota(void **state)
{
	json_t *a, *b, *done;
	char *url;

	reset();
	set_faults("quota-cpus=6", 200);
	a = insert(ZONE, "quota-1", false); /* 4 of 6 CPUs */
	b = insert(ZONE, "quota-2", false); /* 8 of 6: refused */
	done = wait_done(ZONE, a);
	assert_null(json_object_get(done, "error"));
	json_decref(done);
	done = wait_done(ZONE, b);
	assert_string_equal(jx_str(done, "error.errors.0.code"), "QUOTA_EXCEEDED");
	assert_non_null(strstr(jx_str(done, "error.errors.0.message"), "Quota 'CPUS' exceeded."));
	assert_non_null(
	    strstr(jx_str(done, "error.errors.0.message"), "Limit: 6.0 in region us-central1"));
	assert_string_equal(jx_str(done, "error.errors.0.errorDetails.0.quotaInfo.metricName"),
	    "compute.googleapis.com/cpus");
	assert_int_equal(json_integer_value(json_object_get(done, "httpErrorStatusCode")), 403);
	url = compute_url(&emu, ZONE, "instances/quota-2");
	json_decref(api(&emu, "GET", url, NULL, 404));
	free(url);
	json_decref(done);
	json_decref(a);
	json_decref(b);
	set_faults("", 200);
}

static void
test_stockout(void **state)
{
	json_t *a, *b, *c, *done;

	set_faults("stockout=us-central1-a,stockout-details=us-central1-c", 200);
	a = insert("us-central1-a", "stock-a", true);
	b = insert("us-central1-b", "stock-b", true);
	c = insert("us-central1-c", "stock-c", true);
	done = wait_done("us-central1-a", a);
	assert_string_equal(jx_str(done, "error.errors.0.code"), "ZONE_RESOURCE_POOL_EXHAUSTED");
	assert_non_null(strstr(jx_str(done, "error.errors.0.message"), "zones/us-central1-a"));
	json_decref(done);
	done = wait_done("us-central1-b", b);
	assert_null(json_object_get(done, "error"));
	json_decref(done);
	done = wait_done("us-central1-c", c);
	assert_string_equal(
	    jx_str(done, "error.errors.0.code"), "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS");
	json_decref(done);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	set_faults("", 200);
}

static void
test_token_expiry(void **state)
{
	char *url = compute_url(&emu, ZONE, "instances");
	char *expire = xasprintf("%s/emulator/v1/tokens/expire", emu.url);
	struct resp r;
	int64_t deadline;

	/* Tokens that live one second stop working (polled, not slept on). */
	set_faults("token-lifetime=1", 200);
	free(emu.token);
	emu.token = NULL;
	emu_token(&emu);
	deadline = now_ms() + 10000;
	for (;;) {
		http_call(&r, "GET", url, emu.token, NULL, NULL, NULL);
		if (r.status == 401)
			break;
		assert_int_equal(r.status, 200);
		assert_true(now_ms() < deadline);
		resp_free(&r);
		sleep_ms(100);
	}
	expect_google_error(r.json, 401, "authError");
	resp_free(&r);
	set_faults("", 200);
	free(emu.token);
	emu.token = NULL;
	/* The admin call expires every token at once. */
	http_call(&r, "GET", url, emu_token(&emu), NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	http_call(&r, "POST", expire, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	http_call(&r, "GET", url, emu.token, NULL, NULL, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	free(emu.token);
	emu.token = NULL;
	free(expire);
	free(url);
}

static void
metadata_preempted(struct resp *r, const char *nat, const char *query)
{
	char *url = xasprintf("%s/computeMetadata/v1/instance/preempted%s", emu.url, query);
	const char *hdrs[] = {"Metadata-Flavor: Google", NULL};

	http_call(r, "GET", url, NULL, NULL, hdrs, nat);
	free(url);
}

static void
test_preemption(void **state)
{
	char *url = compute_url(&emu, ZONE, "instances/pre-1"), *admin, *nat, *ops;
	json_t *op = insert(ZONE, "pre-1", true), *v;
	struct resp r;
	pid_t waiter;
	int status;

	json_decref(wait_done(ZONE, op));
	v = wait_for_field(&emu, url, "status", "RUNNING", 10000);
	nat = xstrdup(jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP"));
	json_decref(v);
	metadata_preempted(&r, nat, "");
	assert_string_equal(r.body, "FALSE");
	resp_free(&r);

	/* A guest waiting for the notice, as the agent on a VM does. */
	waiter = fork();
	if (waiter == 0) {
		metadata_preempted(&r, nat, "?wait_for_change=true&timeout_sec=30");
		_exit(r.status == 200 && strcmp(r.body, "TRUE") == 0 ? 0 : 1);
	}
	{
		char *stats = xasprintf("%s/emulator/v1/stats", emu.url);
		int64_t deadline = now_ms() + 10000;

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
	admin = xasprintf("%s/emulator/v1/projects/spillway-emulator/zones/" ZONE
	                  "/instances/pre-1/preempt",
	    emu.url);
	http_call(&r, "POST", admin, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	assert_int_equal(waitpid(waiter, &status, 0), waiter);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* During the notice the guest reads TRUE; outside, an operation says it. */
	metadata_preempted(&r, nat, "");
	assert_int_equal(r.status, 200);
	resp_free(&r);
	ops = compute_url(
	    &emu, ZONE, "operations?filter=operationType%3D%22compute.instances.preempted%22");
	v = api(&emu, "GET", ops, NULL, 200);
	expect_schema("OperationList", v);
	assert_int_equal(json_array_size(json_object_get(v, "items")), 1);
	assert_string_equal(jx_str(v, "items.0.statusMessage"), "Instance was preempted.");
	assert_string_equal(jx_str(v, "items.0.user"), "system");
	assert_string_equal(jx_str(v, "items.0.status"), "DONE");
	assert_true(str_suffix(jx_str(v, "items.0.targetLink"), "/instances/pre-1"));
	json_decref(v);
	/* After the notice: the termination action (DELETE) runs. */
	wait_for_status(&emu, url, 404, 10000);
	http_call(&r, "POST", admin, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	json_decref(op);
	free(ops);
	free(admin);
	free(nat);
	free(url);
}

static void
test_preempt_fault(void **state)
{
	char *url = compute_url(&emu, ZONE, "instances/pre-2");
	char *standard = compute_url(&emu, ZONE, "instances/pre-3");
	json_t *a, *b, *v;

	set_faults("preempt=1@1", 200);
	a = insert(ZONE, "pre-2", true);
	b = insert(ZONE, "pre-3", false); /* standard VMs are never preempted */
	wait_for_status(&emu, url, 404, 15000);
	v = api(&emu, "GET", standard, NULL, 200);
	assert_string_equal(jx_str(v, "status"), "RUNNING");
	json_decref(v);
	set_faults("", 200);
	json_decref(a);
	json_decref(b);
	free(url);
	free(standard);
}

static void
test_guest_faults(void **state)
{
	char *url = compute_url(&emu, ZONE, "instances/sick-1"), *health, *admin;
	json_t *op, *v;
	struct resp r;

	/* Both dice: never healthy wins, and nothing overflows dying later. */
	set_faults("guest-unhealthy=1,guest-die=1", 200);
	op = insert(ZONE, "sick-1", false);
	v = wait_for_field(&emu, url, "status", "RUNNING", 10000);
	health = xasprintf(
	    "http://%s:8010/health", jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP"));
	http_call(&r, "GET", health, NULL, NULL, NULL, NULL);
	/* guest-boot-ms is 0: a healthy guest would answer 200 already. */
	assert_int_equal(r.status, 503);
	resp_free(&r);
	/* The admin API can heal it, or make it sick. */
	admin = xasprintf("%s/emulator/v1/projects/spillway-emulator/zones/" ZONE
	                  "/instances/sick-1/guest",
	    emu.url);
	http_call(&r, "POST", admin, NULL, "{\"healthy\":true,\"activity\":true}", NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	http_call(&r, "GET", health, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	http_call(&r, "POST", admin, NULL, "{\"healthy\":false}", NULL, NULL);
	resp_free(&r);
	http_call(&r, "GET", health, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 500);
	assert_string_equal(jx_str(r.json, "status"), "unhealthy");
	resp_free(&r);
	http_call(&r, "POST", admin, NULL, "[not json", NULL, NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	set_faults("", 200);
	json_decref(v);
	json_decref(op);
	free(admin);
	free(health);
	free(url);
}

static void
test_bad_specs(void **state)
{
	char *url = xasprintf("%s/emulator/v1/faults", emu.url);
	struct resp r;
	const char *argv_bad[] = {"--faults", "error503=7", NULL};
	pid_t pid;
	int status;

	set_faults("teleport=1", 400);
	set_faults("error503=2", 400);
	http_call(&r, "PUT", url, NULL, "faults please", NULL, NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	http_call(&r, "GET", url, NULL, NULL, NULL, NULL);
	assert_string_equal(jx_str(r.json, "faults"), "");
	resp_free(&r);
	/* A bad spec at start: exit 2, with the rule. */
	pid = fork();
	if (pid == 0) {
		execl(getenv("SPILLWAY_BIN"), "spillway", "emulator", argv_bad[0], argv_bad[1],
		    (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
	free(url);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_server_errors),
	    cmocka_unit_test(test_lost_answers),
	    cmocka_unit_test(test_latency),
	    cmocka_unit_test(test_quota),
	    cmocka_unit_test(test_stockout),
	    cmocka_unit_test(test_token_expiry),
	    cmocka_unit_test(test_preemption),
	    cmocka_unit_test(test_preempt_fault),
	    cmocka_unit_test(test_guest_faults),
	    cmocka_unit_test(test_bad_specs),
	};

	jx_init();
	return cmocka_run_group_tests(tests, start, stop);
}
