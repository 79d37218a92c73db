/*
 * The Compute Engine client (src/cloud) against the emulator over real HTTP:
 * every call, pagination, label filters, each error class, retries proven by
 * the emulator's request log, 401 recovery, the three credential sources,
 * bad credentials, and bad answers from a server that misbehaves on purpose.
 * Every request body the client sends is validated against the schemas.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "cloud/auth.h"
#include "cloud/gce.h"
#include "harness.h"
#include "net/http.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define ZONE "us-central1-a"

static struct emu emu;
static uv_loop_t loop;
static struct clock clk;

/* One client: HTTP, credentials, provider. */
struct client {
	struct http_client *http;
	struct auth *auth;
	struct cloud *cloud;
};

/* What a callback saw, copied. */
struct res {
	bool done;
	enum cloud_errc code;
	int http_status;
	int attempts;
	char *message;
	char *reason;
	char *zone;
	char *metric;
	double limit;
	char *op;
	char *op_zone;
	bool op_done;
	char *status;
	char *nat_ip;
	size_t n;
	char **names;
	int vcpus, memory_mb;
	size_t nlabels, nmetadata; /* a listing's first instance's */
};

static void
res_free(struct res *r)
{
	free(r->message);
	free(r->reason);
	free(r->zone);
	free(r->metric);
	free(r->op);
	free(r->op_zone);
	free(r->status);
	free(r->nat_ip);
	str_list_free(r->names);
	memset(r, 0, sizeof *r);
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
take_error(struct res *r, const struct cloud_error *e)
{
	assert_false(r->done); /* exactly one callback */
	r->done = true;
	r->code = e->code;
	r->http_status = e->http_status;
	r->attempts = e->attempts;
	r->message = dup_or_null(e->message);
	r->reason = dup_or_null(e->reason);
	r->zone = dup_or_null(e->zone);
	r->metric = dup_or_null(e->quota_metric);
	r->limit = e->quota_limit;
}

static void
on_op(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct res *r = arg;

	take_error(r, e);
	if (op != NULL) {
		r->op = dup_or_null(op->name);
		r->op_zone = dup_or_null(op->zone);
		r->op_done = op->done;
	}
}

static void
on_instance(const struct cloud_error *e, const struct cloud_instance *in, void *arg)
{
	struct res *r = arg;

	take_error(r, e);
	if (in != NULL) {
		r->status = xstrdup(in->status);
		r->nat_ip = dup_or_null(in->nat_ip);
		r->names = xcalloc(2 + in->nlabels + in->nmetadata, sizeof *r->names);
		r->names[0] = xstrdup(in->name);
		for (size_t i = 0; i < in->nlabels; i++)
			r->names[1 + i] =
			    xasprintf("label:%s=%s", in->labels[i].key, in->labels[i].value);
		for (size_t i = 0; i < in->nmetadata; i++)
			r->names[1 + in->nlabels + i] = xasprintf("meta:%s", in->metadata[i].key);
	}
}

static void
on_list(const struct cloud_error *e, const struct cloud_instance *list, size_t n, void *arg)
{
	struct res *r = arg;

	take_error(r, e);
	r->n = n;
	r->names = xcalloc(n + 1, sizeof *r->names);
	for (size_t i = 0; i < n; i++)
		r->names[i] = xstrdup(list[i].name);
	if (n > 0) {
		r->status = xstrdup(list[0].status);
		r->nat_ip = dup_or_null(list[0].nat_ip);
		r->nlabels = list[0].nlabels;
		r->nmetadata = list[0].nmetadata;
	}
}

static void
on_ops(const struct cloud_error *e, const struct cloud_op *ops, size_t n, void *arg)
{
	struct res *r = arg;

	take_error(r, e);
	r->n = n;
	r->names = xcalloc(n + 1, sizeof *r->names);
	for (size_t i = 0; i < n; i++)
		r->names[i] = xstrdup(ops[i].target);
}

/* An image listing: each as "name family status disk_gb label:k=v..." */
static void
on_images(const struct cloud_error *e, const struct cloud_image *list, size_t n, void *arg)
{
	struct res *r = arg;

	take_error(r, e);
	r->n = n;
	r->names = xcalloc(n + 1, sizeof *r->names);
	for (size_t i = 0; i < n; i++) {
		struct buf b = BUF_INIT(SIZE_MAX);

		buf_printf(&b, "%s %s %s %" PRId64, list[i].name, list[i].family, list[i].status,
		    list[i].disk_gb);
		for (size_t j = 0; j < list[i].nlabels; j++)
			buf_printf(
			    &b, " label:%s=%s", list[i].labels[j].key, list[i].labels[j].value);
		r->names[i] = buf_detach(&b, NULL);
	}
}

static void
on_machine(const struct cloud_error *e, const struct cloud_machine_type *mt, void *arg)
{
	struct res *r = arg;

	take_error(r, e);
	if (mt != NULL) {
		r->vcpus = mt->vcpus;
		r->memory_mb = mt->memory_mb;
	}
}

static void
on_zones(const struct cloud_error *e, const char *const *zones, size_t n, void *arg)
{
	struct res *r = arg;

	take_error(r, e);
	r->n = n;
	r->names = xcalloc(n + 1, sizeof *r->names);
	for (size_t i = 0; i < n; i++)
		r->names[i] = xstrdup(zones[i]);
}

static void
run(struct res *r)
{
	int64_t deadline = now_ms() + 60000;

	while (!r->done) {
		uv_run(&loop, UV_RUN_ONCE);
		if (now_ms() > deadline)
			fail_msg("no callback within a minute");
	}
}

static int64_t
in_ms(int64_t ms)
{
	return clock_now_ms(&clk) + ms;
}

/* A client on an endpoint with these credentials; retries are quick in tests. */
static void
client_open(
    struct client *c, const char *endpoint, const struct auth_sources *src, size_t max_response)
{
	struct gce_opts o;
	char *cause = NULL;

	memset(c, 0, sizeof *c);
	c->http = http_client_new(&loop);
	if (auth_new(&loop, c->http, &clk, src, &c->auth, &cause) != 0)
		fail_msg("auth_new: %s", cause);
	gce_opts_default(&o);
	o.endpoint = endpoint;
	o.project = "spillway-emulator"; /* as the configuration gives it */
	o.retry.base_ms = 5;
	o.retry.cap_ms = 40;
	o.retry.attempts = 5;
	o.seed = 11;
	if (max_response > 0)
		o.max_response = max_response;
	if (gce_new(&loop, &clk, c->http, c->auth, &o, &c->cloud, &cause) != 0)
		fail_msg("gce_new: %s", cause);
}

static void
client_close(struct client *c)
{
	c->cloud->ops->free(c->cloud);
	auth_free(c->auth);
	http_client_free(c->http);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static char *
endpoint(struct emu *e)
{
	return xasprintf("%s/compute/v1/", e->url);
}

static void
default_client(struct client *c)
{
	struct auth_sources src = {.credentials_file = emu.creds, .gcloud_dir = "/nonexistent"};
	char *ep = endpoint(&emu);

	client_open(c, ep, &src, 0);
	free(ep);
}

static json_t *
requests(struct emu *e)
{
	char *url = xasprintf("%s/emulator/v1/requests", e->url);
	struct resp r;
	json_t *v;

	http_call(&r, "GET", url, NULL, NULL, NULL, NULL);
	v = json_incref(json_object_get(r.json, "requests"));
	resp_free(&r);
	free(url);
	return v;
}

/* Requests whose method is m and whose path ends with suffix (and query has q). */
static int
count_requests(struct emu *e, const char *m, const char *suffix, const char *q)
{
	json_t *all = requests(e), *it;
	size_t i;
	int n = 0;

	json_array_foreach (all, i, it)
		if (strcmp(jx_str(it, "method"), m) == 0 &&
		    str_suffix(jx_str(it, "path"), suffix) &&
		    (q == NULL || strstr(jx_str(it, "query"), q) != NULL))
			n++;
	json_decref(all);
	return n;
}

/* Every instance the client inserted was sent exactly as the discovery schema says. */
static void
validate_insert_bodies(struct emu *e)
{
	json_t *all = requests(e), *it;
	size_t i;
	int n = 0;

	json_array_foreach (all, i, it) {
		json_t *body;

		if (strcmp(jx_str(it, "method"), "POST") != 0 ||
		    !str_suffix(jx_str(it, "path"), "/instances"))
			continue;
		assert_int_equal(
		    jx_parse(jx_str(it, "body"), strlen(jx_str(it, "body")), &body, NULL), 0);
		expect_schema("Instance", body);
		json_decref(body);
		n++;
	}
	assert_true(n > 0);
	json_decref(all);
}

static struct cloud_instance_spec
spec(const char *name, const char *zone, const struct cloud_kv *labels, size_t nlabels)
{
	static const struct cloud_kv meta[] = {
	    {"startup-script", "#!/bin/sh\necho hello\n"}, {"spillway-components", "vision"}};
	static const char *tags[] = {"spillway", NULL};
	static const char *scopes[] = {"https://www.googleapis.com/auth/cloud-platform", NULL};
	struct cloud_instance_spec s = {
	    .name = name,
	    .zone = zone,
	    .machine_type = "e2-highmem-4",
	    .spot = true,
	    .image = "projects/debian-cloud/global/images/family/debian-12",
	    .disk_gb = 30,
	    .disk_type = "pd-balanced",
	    .labels = labels,
	    .nlabels = nlabels,
	    .tags = tags,
	    .metadata = meta,
	    .nmetadata = 2,
	    .service_account = "default",
	    .scopes = scopes,
	    .max_run_s = 10800,
	    .termination_action = "DELETE",
	    .external_ip = true,
	};
	return s;
}

static void
create(struct client *c, const char *name, const char *zone, const char *owner, struct res *r)
{
	const struct cloud_kv labels[] = {{"managed-by", "spillway"}, {"spillway-owner", owner}};
	struct cloud_instance_spec s = spec(name, zone, labels, 2);
	char id[UUID_LEN];

	uuid_v4(id);
	assert_int_equal(c->cloud->ops->create(c->cloud, &s, id, in_ms(30000), on_op, r), 0);
	run(r);
}

static void
wait_op(struct client *c, const char *zone, const char *op, struct res *r)
{
	assert_int_equal(c->cloud->ops->wait(c->cloud, zone, op, in_ms(30000), on_op, r), 0);
	run(r);
}

static int
start(void **state)
{
	const char *args[] = {"--boot-ms", "200", "--stop-ms", "100", "--guest-boot-ms", "0",
	    "--seed", "5", "--preempt-notice-ms", "100", NULL};

	uv_loop_init(&loop);
	clock_real(&clk);
	emu_start(&emu, args);
	return 0;
}

static int
stop(void **state)
{
	emu_stop(&emu);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	return 0;
}

static void
test_lifecycle(void **state)
{
	struct client c;
	struct res r = {0};
	const char *zones[] = {"us-central1-a", "us-central1-b", "us-central1-c", NULL};
	char id[UUID_LEN];

	default_client(&c);
	create(&c, "life-1", ZONE, "t1", &r);
	assert_int_equal(r.code, CLOUD_OK);
	assert_non_null(r.op);
	assert_string_equal(r.op_zone, ZONE);
	{
		char *op = xstrdup(r.op);

		res_free(&r);
		wait_op(&c, ZONE, op, &r);
		free(op);
	}
	assert_int_equal(r.code, CLOUD_OK);
	assert_true(r.op_done);
	res_free(&r);

	assert_int_equal(
	    c.cloud->ops->get(c.cloud, ZONE, "life-1", in_ms(10000), on_instance, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_OK);
	assert_string_equal(r.status, "RUNNING");
	assert_non_null(r.nat_ip);
	assert_string_equal(r.names[0], "life-1");
	assert_string_equal(r.names[1], "label:managed-by=spillway");
	assert_string_equal(r.names[2], "label:spillway-owner=t1");
	assert_string_equal(r.names[3], "meta:startup-script");
	res_free(&r);

	assert_int_equal(
	    c.cloud->ops->machine_type(c.cloud, ZONE, "e2-highmem-4", in_ms(10000), on_machine, &r),
	    0);
	run(&r);
	assert_int_equal(r.vcpus, 4);
	assert_int_equal(r.memory_mb, 32768);
	res_free(&r);

	assert_int_equal(
	    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
	run(&r);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.names[0], "us-central1-a");
	res_free(&r);

	assert_int_equal(
	    c.cloud->ops->list(c.cloud, zones, "spillway-owner", "t1", in_ms(10000), on_list, &r),
	    0);
	run(&r);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.names[0], "life-1");
	/* A partial response: what the manager reads, no metadata (provider.h). */
	assert_non_null(r.status);
	assert_non_null(r.nat_ip);
	assert_int_equal(r.nlabels, 2);
	assert_int_equal(r.nmetadata, 0);
	res_free(&r);

	uuid_v4(id);
	assert_int_equal(
	    c.cloud->ops->destroy(c.cloud, ZONE, "life-1", id, in_ms(10000), on_op, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_OK);
	{
		char *op = xstrdup(r.op);

		res_free(&r);
		wait_op(&c, ZONE, op, &r);
		free(op);
	}
	res_free(&r);
	assert_int_equal(
	    c.cloud->ops->get(c.cloud, ZONE, "life-1", in_ms(10000), on_instance, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_NOT_FOUND);
	assert_int_equal(r.http_status, 404);
	assert_non_null(strstr(r.message, "was not found"));
	res_free(&r);
	/* Deleting what is gone is success: op NULL, done. */
	uuid_v4(id);
	assert_int_equal(
	    c.cloud->ops->destroy(c.cloud, ZONE, "life-1", id, in_ms(10000), on_op, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_OK);
	assert_null(r.op);
	assert_true(r.op_done);
	res_free(&r);
	/* Names that are no names never start a call. */
	assert_int_equal(
	    c.cloud->ops->get(c.cloud, ZONE, "../etc", in_ms(1000), on_instance, &r), -EINVAL);
	validate_insert_bodies(&emu);
	client_close(&c);
}

/* A power change: its operation, waited for; the VM's status after. */
static const char *
power(struct client *c, const char *name, enum cloud_power p)
{
	static char status[CLOUD_STATUS_LEN];
	struct res r = {0};
	char id[UUID_LEN], *op;

	uuid_v4(id);
	assert_int_equal(
	    c->cloud->ops->power(c->cloud, ZONE, name, p, id, in_ms(30000), on_op, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_OK);
	op = xstrdup(r.op);
	res_free(&r);
	wait_op(c, ZONE, op, &r);
	assert_int_equal(r.code, CLOUD_OK);
	free(op);
	res_free(&r);
	assert_int_equal(
	    c->cloud->ops->get(c->cloud, ZONE, name, in_ms(10000), on_instance, &r), 0);
	run(&r);
	snprintf(status, sizeof status, "%s", r.status);
	res_free(&r);
	return status;
}

/* Stop, start, suspend and resume: the calls a warm pool of stopped VMs makes. */
static void
test_power(void **state)
{
	struct client c;
	struct res r = {0};
	char id[UUID_LEN];

	default_client(&c);
	create(&c, "power-1", ZONE, "t-power", &r);
	{
		char *op = xstrdup(r.op);

		res_free(&r);
		wait_op(&c, ZONE, op, &r);
		free(op);
		res_free(&r);
	}
	assert_string_equal(power(&c, "power-1", CLOUD_SUSPEND), "SUSPENDED");
	assert_string_equal(power(&c, "power-1", CLOUD_RESUME), "RUNNING");
	assert_string_equal(power(&c, "power-1", CLOUD_STOP), "TERMINATED");
	assert_string_equal(power(&c, "power-1", CLOUD_START), "RUNNING");
	assert_int_equal(
	    count_requests(&emu, "POST", "/instances/power-1/resume", "requestId="), 1);
	/* What a state refuses is the cloud's answer, typed; one that is gone, not found. */
	uuid_v4(id);
	assert_int_equal(c.cloud->ops->power(
	                     c.cloud, ZONE, "power-1", CLOUD_RESUME, id, in_ms(10000), on_op, &r),
	    0);
	run(&r);
	assert_int_equal(r.code, CLOUD_INVALID);
	assert_int_equal(r.http_status, 400);
	res_free(&r);
	uuid_v4(id);
	assert_int_equal(
	    c.cloud->ops->power(c.cloud, ZONE, "gone-1", CLOUD_STOP, id, in_ms(10000), on_op, &r),
	    0);
	run(&r);
	assert_int_equal(r.code, CLOUD_NOT_FOUND);
	res_free(&r);
	/* No requestId, no call: a retry must never be a second change. */
	assert_int_equal(c.cloud->ops->power(
	                     c.cloud, ZONE, "power-1", CLOUD_STOP, NULL, in_ms(10000), on_op, &r),
	    -EINVAL);
	uuid_v4(id);
	assert_int_equal(
	    c.cloud->ops->destroy(c.cloud, ZONE, "power-1", id, in_ms(10000), on_op, &r), 0);
	run(&r);
	res_free(&r);
	client_close(&c);
}

/* An image from a stopped VM's boot disk, listed by its label, then deleted: baking an image. */
static void
test_images(void **state)
{
	const struct cloud_kv labels[] = {
	    {"managed-by", "spillway"}, {"spillway-backend", "abc123"}};
	struct cloud_image_spec is = {.name = "baked-1",
	    .family = "spillway-backend",
	    .zone = ZONE,
	    .disk = "bake-1",
	    .labels = labels,
	    .nlabels = 2};
	struct client c;
	struct res r = {0};
	char id[UUID_LEN], *op;

	default_client(&c);
	create(&c, "bake-1", ZONE, "t-bake", &r);
	op = xstrdup(r.op);
	res_free(&r);
	wait_op(&c, ZONE, op, &r);
	free(op);
	res_free(&r);
	assert_string_equal(power(&c, "bake-1", CLOUD_STOP), "TERMINATED");
	uuid_v4(id);
	assert_int_equal(c.cloud->ops->image_create(c.cloud, &is, id, in_ms(30000), on_op, &r), 0);
	run(&r);
	if (r.code != CLOUD_OK)
		fail_msg("image_create: %s", r.message);
	assert_null(r.op_zone); /* a global operation */
	op = xstrdup(r.op);
	res_free(&r);
	wait_op(&c, NULL, op, &r);
	assert_int_equal(r.code, CLOUD_OK);
	assert_true(r.op_done);
	free(op);
	res_free(&r);
	assert_int_equal(
	    c.cloud->ops->images(c.cloud, "managed-by", "spillway", in_ms(10000), on_images, &r),
	    0);
	run(&r);
	assert_int_equal(r.code, CLOUD_OK);
	assert_int_equal(r.n, 1);
	/* The disk's size (spec(): 30 GB), its family and labels. */
	assert_string_equal(r.names[0],
	    "baked-1 spillway-backend READY 30 label:managed-by=spillway label:spillway-backend=abc123");
	res_free(&r);
	/* Another label: none. */
	assert_int_equal(
	    c.cloud->ops->images(c.cloud, "managed-by", "else", in_ms(10000), on_images, &r), 0);
	run(&r);
	assert_int_equal(r.n, 0);
	res_free(&r);
	/* A name taken: CLOUD_EXISTS. */
	uuid_v4(id);
	assert_int_equal(c.cloud->ops->image_create(c.cloud, &is, id, in_ms(30000), on_op, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_EXISTS);
	res_free(&r);
	/* Deleted, then deleted again: both success, the second with no operation. */
	for (int i = 0; i < 2; i++) {
		uuid_v4(id);
		assert_int_equal(
		    c.cloud->ops->image_delete(c.cloud, "baked-1", id, in_ms(10000), on_op, &r), 0);
		run(&r);
		assert_int_equal(r.code, CLOUD_OK);
		if (i == 1)
			assert_null(r.op);
		res_free(&r);
	}
	uuid_v4(id);
	assert_int_equal(
	    c.cloud->ops->destroy(c.cloud, ZONE, "bake-1", id, in_ms(10000), on_op, &r), 0);
	run(&r);
	res_free(&r);
	client_close(&c);
}

static void
test_pagination_and_labels(void **state)
{
	const char *args[] = {"--boot-ms", "3600000", NULL};
	struct emu many;
	struct client c;
	struct auth_sources src = {.gcloud_dir = "/nonexistent"};
	const char *zones[] = {"us-central1-b", "us-central1-c", NULL};
	char *ep;
	struct res r = {0};

	emu_start(&many, args);
	src.credentials_file = many.creds;
	ep = endpoint(&many);
	client_open(&c, ep, &src, 0);
	for (int i = 0; i < 620; i++) {
		char name[32];

		snprintf(name, sizeof name, "page-%04d", i);
		create(&c, name, i < 600 ? "us-central1-b" : "us-central1-c",
		    i % 31 == 0 ? "other" : "me", &r);
		assert_int_equal(r.code, CLOUD_OK);
		res_free(&r);
	}
	assert_int_equal(
	    c.cloud->ops->list(c.cloud, zones, "spillway-owner", "me", in_ms(30000), on_list, &r),
	    0);
	run(&r);
	assert_int_equal(r.code, CLOUD_OK);
	/* 620 made, every 31st labelled "other" (20 of them). */
	assert_int_equal(r.n, 600);
	for (size_t i = 1; i < r.n; i++)
		assert_true(strcmp(r.names[i - 1], r.names[i]) < 0);
	res_free(&r);
	/* Zone b needed two pages; the filter was sent. */
	assert_int_equal(
	    count_requests(&many, "GET", "/zones/us-central1-b/instances", "pageToken="), 1);
	assert_int_equal(count_requests(&many, "GET", "/zones/us-central1-b/instances",
	                     "filter=labels.spillway-owner = \"me\""),
	    2);
	validate_insert_bodies(&many);
	client_close(&c);
	free(ep);
	emu_stop(&many);
}

static void
test_error_classes(void **state)
{
	struct client c;
	struct res r = {0};
	char id[UUID_LEN];

	default_client(&c);
	/* exists */
	create(&c, "dup-1", ZONE, "t2", &r);
	res_free(&r);
	create(&c, "dup-1", ZONE, "t2", &r);
	assert_int_equal(r.code, CLOUD_EXISTS);
	assert_int_equal(r.http_status, 409);
	assert_string_equal(r.reason, "alreadyExists");
	assert_int_equal(r.attempts, 1);
	res_free(&r);
	/* invalid: Google's message is kept for the user */
	{
		const struct cloud_kv labels[] = {{"managed-by", "spillway"}};
		struct cloud_instance_spec s = spec("bad-type", ZONE, labels, 1);

		s.machine_type = "e2-hugemem-4";
		uuid_v4(id);
		assert_int_equal(c.cloud->ops->create(c.cloud, &s, id, in_ms(10000), on_op, &r), 0);
		run(&r);
		assert_int_equal(r.code, CLOUD_INVALID);
		assert_non_null(
		    strstr(r.message, "Machine type with name 'e2-hugemem-4' does not exist"));
		assert_int_equal(r.attempts, 1);
		res_free(&r);
	}
	/* quota and stockout arrive on the DONE operation */
	emu_set_faults(&emu, "quota-cpus=5");
	create(&c, "quota-1", ZONE, "t2", &r);
	assert_int_equal(r.code, CLOUD_OK);
	{
		char *op = xstrdup(r.op);

		res_free(&r);
		wait_op(&c, ZONE, op, &r);
		free(op);
	}
	assert_int_equal(r.code, CLOUD_QUOTA);
	assert_string_equal(r.metric, "CPUS");
	assert_true(r.limit == 5.0);
	assert_non_null(strstr(r.message, "Quota 'CPUS' exceeded"));
	res_free(&r);
	emu_set_faults(&emu, "stockout=us-central1-b");
	create(&c, "stock-1", "us-central1-b", "t2", &r);
	{
		char *op = xstrdup(r.op);

		res_free(&r);
		wait_op(&c, "us-central1-b", op, &r);
		free(op);
	}
	assert_int_equal(r.code, CLOUD_STOCKOUT);
	assert_string_equal(r.zone, "us-central1-b");
	assert_string_equal(r.reason, "ZONE_RESOURCE_POOL_EXHAUSTED");
	res_free(&r);
	/* Neither was retried: one insert each. */
	assert_int_equal(
	    count_requests(&emu, "POST", "/zones/us-central1-a/instances", NULL) >= 1, 1);
	{
		json_t *all = requests(&emu), *it;
		size_t i;
		int quota = 0, stock = 0;

		json_array_foreach (all, i, it) {
			const char *b = jx_str(it, "body");

			if (strcmp(jx_str(it, "method"), "POST") != 0)
				continue;
			quota += strstr(b, "\"quota-1\"") != NULL;
			stock += strstr(b, "\"stock-1\"") != NULL;
		}
		assert_int_equal(quota, 1);
		assert_int_equal(stock, 1);
		json_decref(all);
	}
	emu_set_faults(&emu, "");
	client_close(&c);
}

static void
test_retries(void **state)
{
	static const struct {
		const char *spec;
		enum cloud_errc code;
		int status;
	} cases[] = {
	    {"error503=1", CLOUD_SERVER, 503},
	    {"error500=1", CLOUD_SERVER, 500},
	    {"rate429=1", CLOUD_RATE_LIMITED, 429},
	    {"rate403=1", CLOUD_RATE_LIMITED, 403},
	};
	struct client c;
	struct res r = {0};

	default_client(&c);
	/* Take the token before the faults (the token endpoint is not faulted, but be plain). */
	assert_int_equal(
	    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
	run(&r);
	res_free(&r);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int before = count_requests(&emu, "GET", "/instances/retry-me", NULL);

		emu_set_faults(&emu, cases[i].spec);
		assert_int_equal(
		    c.cloud->ops->get(c.cloud, ZONE, "retry-me", in_ms(20000), on_instance, &r), 0);
		run(&r);
		assert_int_equal(r.code, cases[i].code);
		assert_int_equal(r.http_status, cases[i].status);
		/* Every attempt of the policy was made, and the log saw each. */
		assert_int_equal(r.attempts, 5);
		assert_int_equal(
		    count_requests(&emu, "GET", "/instances/retry-me", NULL) - before, 5);
		res_free(&r);
	}
	emu_set_faults(&emu, "");
	client_close(&c);
}

/* Inserts through lost answers: the same requestId is sent again, and one VM is made. */
static void
test_retried_inserts_make_one_vm(void **state)
{
	const char *zones[] = {ZONE, NULL};
	struct client c;
	struct res r = {0};
	json_t *all, *it;
	size_t i;
	int resent = 0;

	default_client(&c);
	emu_set_faults(&emu, "error503=0.4,rate429=0.1");
	for (int k = 0; k < 20; k++) {
		char name[32];

		snprintf(name, sizeof name, "again-%02d", k);
		create(&c, name, ZONE, "again", &r);
		assert_int_equal(r.code, CLOUD_OK);
		res_free(&r);
	}
	emu_set_faults(&emu, "");
	assert_int_equal(c.cloud->ops->list(
	                     c.cloud, zones, "spillway-owner", "again", in_ms(10000), on_list, &r),
	    0);
	run(&r);
	assert_int_equal(r.n, 20);
	res_free(&r);
	/* Per name: every POST carried the same requestId, none got 409. */
	all = requests(&emu);
	for (int k = 0; k < 20; k++) {
		char name[40], *rid = NULL;
		int posts = 0;

		snprintf(name, sizeof name, "\"name\":\"again-%02d\"", k);
		json_array_foreach (all, i, it) {
			if (strcmp(jx_str(it, "method"), "POST") != 0 ||
			    strstr(jx_str(it, "body"), name) == NULL)
				continue;
			assert_true(str_prefix(jx_str(it, "query"), "requestId="));
			if (rid == NULL)
				rid = xstrdup(jx_str(it, "query"));
			assert_string_equal(rid, jx_str(it, "query"));
			assert_int_not_equal(
			    json_integer_value(json_object_get(it, "status")), 409);
			posts++;
		}
		resent += posts > 1;
		free(rid);
	}
	/* With these faults and this seed, retries did happen. */
	assert_true(resent > 0);
	json_decref(all);
	validate_insert_bodies(&emu);
	client_close(&c);
}

/* Ten calls before any token: one refresh serves them all. */
static void
test_concurrent_calls_share_a_refresh(void **state)
{
	struct client c;
	struct res r[10];

	memset(r, 0, sizeof r);
	default_client(&c);
	for (int i = 0; i < 10; i++)
		assert_int_equal(
		    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r[i]), 0);
	for (int i = 0; i < 10; i++) {
		run(&r[i]);
		assert_int_equal(r[i].code, CLOUD_OK);
		res_free(&r[i]);
	}
	assert_int_equal(auth_refreshes(c.auth), 1);
	client_close(&c);
}

/*
 * A burst of calls (a takeover reads every VM's key at once) queues for a
 * few connections: it used to open one per call, at both ends.
 */
static void
test_burst_shares_connections(void **state)
{
	enum { CALLS = 3 * HTTP_HOST_CONNECTIONS };
	struct client c;
	struct res r[CALLS];

	memset(r, 0, sizeof r);
	default_client(&c);
	for (int i = 0; i < CALLS; i++)
		assert_int_equal(
		    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(30000), on_zones, &r[i]), 0);
	for (int i = 0; i < CALLS; i++) {
		run(&r[i]);
		assert_int_equal(r[i].code, CLOUD_OK);
		res_free(&r[i]);
	}
	assert_int_equal(http_client_calls(c.http), CALLS + 1); /* and the token */
	assert_true(http_client_connects(c.http) <= HTTP_HOST_CONNECTIONS);
	client_close(&c);
}

static void
test_deadline(void **state)
{
	struct client c;
	struct res r = {0};
	int64_t t0;

	default_client(&c);
	assert_int_equal(
	    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
	run(&r);
	res_free(&r);
	emu_set_faults(&emu, "latency=3000");
	t0 = now_ms();
	assert_int_equal(c.cloud->ops->get(c.cloud, ZONE, "slow", in_ms(300), on_instance, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_DEADLINE);
	/* It gave up at its deadline, not after the server's latency. */
	assert_true(now_ms() - t0 < 2500);
	res_free(&r);
	emu_set_faults(&emu, "");
	client_close(&c);
}

static void
test_401_refreshes_once(void **state)
{
	struct client c;
	struct res r = {0};
	char *expire = xasprintf("%s/emulator/v1/tokens/expire", emu.url);
	struct resp h;
	int unauth_before;

	default_client(&c);
	assert_int_equal(
	    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
	run(&r);
	res_free(&r);
	assert_int_equal(auth_refreshes(c.auth), 1);
	http_call(&h, "POST", expire, NULL, NULL, NULL, NULL);
	resp_free(&h);
	unauth_before = 0;
	{
		json_t *all = requests(&emu), *it;
		size_t i;

		json_array_foreach (all, i, it)
			unauth_before += json_integer_value(json_object_get(it, "status")) == 401;
		json_decref(all);
	}
	assert_int_equal(
	    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_OK);
	assert_int_equal(r.attempts, 2);
	res_free(&r);
	assert_int_equal(auth_refreshes(c.auth), 2);
	{
		json_t *all = requests(&emu), *it;
		size_t i;
		int unauth = 0;

		json_array_foreach (all, i, it)
			unauth += json_integer_value(json_object_get(it, "status")) == 401;
		assert_int_equal(unauth - unauth_before, 1);
		json_decref(all);
	}
	/* Short-lived tokens: calls keep working across expiries (refreshed ahead, or on 401). */
	emu_set_faults(&emu, "token-lifetime=1");
	http_call(&h, "POST", expire, NULL, NULL, NULL, NULL);
	resp_free(&h);
	for (int64_t end = now_ms() + 2500; now_ms() < end;) {
		assert_int_equal(
		    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
		run(&r);
		assert_int_equal(r.code, CLOUD_OK);
		res_free(&r);
		sleep_ms(100);
	}
	assert_true(auth_refreshes(c.auth) >= 4);
	emu_set_faults(&emu, "");
	free(expire);
	client_close(&c);
}

static void
list_zones_with(const struct auth_sources *src, const char *expect_source)
{
	struct client c;
	struct res r = {0};
	char *ep = endpoint(&emu);

	client_open(&c, ep, src, 0);
	assert_non_null(strstr(auth_source(c.auth), expect_source));
	assert_int_equal(
	    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
	run(&r);
	if (r.code != CLOUD_OK)
		fail_msg("%s: %s", expect_source, r.message);
	assert_int_equal(r.n, 3);
	res_free(&r);
	client_close(&c);
	free(ep);
}

static void
test_credential_sources(void **state)
{
	char *gc = xasprintf("%s/gcloud", emu.dir), *adc, *text, *cmd, *token_uri, *host;
	struct auth_sources sa = {.credentials_file = emu.creds, .gcloud_dir = "/nonexistent"};
	struct auth_sources user = {0}, meta = {.gcloud_dir = "/nonexistent"};

	/* 1. GOOGLE_APPLICATION_CREDENTIALS: a service-account key. */
	list_zones_with(&sa, "GOOGLE_APPLICATION_CREDENTIALS");
	/* 2. gcloud's application-default file: user credentials. */
	cmd = xasprintf("mkdir -p '%s'", gc);
	assert_int_equal(system(cmd), 0);
	adc = xasprintf("%s/application_default_credentials.json", gc);
	text = read_text(emu.user_creds);
	assert_int_equal(write_file_atomic(adc, text, strlen(text), 0600), 0);
	token_uri = xasprintf("%s/token", emu.url);
	user.gcloud_dir = gc;
	user.user_token_uri = token_uri;
	list_zones_with(&user, "gcloud application-default");
	/* 3. The metadata server (GCE_METADATA_HOST). */
	host = xasprintf("127.0.0.1:%d", emu.port);
	meta.metadata_host = host;
	list_zones_with(&meta, "metadata server");
	free(gc);
	free(adc);
	free(text);
	free(cmd);
	free(token_uri);
	free(host);
}

static void
expect_bad_file(const char *content, unsigned mode, const char *message)
{
	char *path = xasprintf("%s/bad.json", emu.dir), *cause = NULL;
	struct auth_sources src = {.credentials_file = path, .gcloud_dir = "/nonexistent"};
	struct http_client *http = http_client_new(&loop);
	struct auth *a = NULL;

	unlink(path);
	assert_int_equal(write_file_atomic(path, content, strlen(content), mode), 0);
	assert_true(auth_new(&loop, http, &clk, &src, &a, &cause) != 0);
	if (strstr(cause, message) == NULL)
		fail_msg("expected '%s' in: %s", message, cause);
	assert_non_null(strstr(cause, path));
	/* A private key never reaches a message. */
	assert_null(strstr(cause, "MIIE"));
	assert_null(strstr(cause, "sekrit"));
	free(cause);
	http_client_free(http);
	free(path);
}

static void
test_bad_credentials(void **state)
{
	char *sa = read_text(emu.creds);
	json_t *v;

	expect_bad_file("{not json", 0600, "are not a JSON object");
	expect_bad_file("[1, 2]", 0600, "are not a JSON object");
	expect_bad_file("{\"type\":\"external_account\"}", 0600, "have type 'external_account'");
	expect_bad_file("{\"type\":\"service_account\",\"client_email\":\"a@b\"}", 0600,
	    "has no 'private_key'");
	expect_bad_file("{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":"
	                "\"-----BEGIN PRIVATE KEY-----\\nsekrit\\n-----END PRIVATE KEY-----\\n\"}",
	    0600, "not a PEM-encoded RSA key");
	expect_bad_file(
	    "{\"type\":\"authorized_user\",\"client_id\":\"x\",\"client_secret\":\"sekrit\"}", 0600,
	    "has no 'refresh_token'");
	/* Found by fuzz_credentials: an empty field is a missing one, and named first. */
	expect_bad_file("{\"type\":\"authorized_user\",\"client_id\":\"\",\"client_secret\":"
	                "\"sekrit\"}",
	    0600, "has no 'client_id'");
	assert_int_equal(jx_parse(sa, strlen(sa), &v, NULL), 0);
	json_object_set_new(v, "token_uri", json_string("http://example.com/token"));
	{
		char *s = jx_dumps(v);

		expect_bad_file(s, 0600, "must be https://");
		free(s);
	}
	json_decref(v);
	expect_bad_file(sa, 0644, "can be read by other users (mode 0644); run: chmod 600");
	free(sa);
	/* No credentials anywhere, off Compute Engine: said plainly, with where it looked. */
	{
		char *dmi = xasprintf("%s/product_name", emu.dir);
		struct auth_sources src = {.gcloud_dir = "/nonexistent", .dmi_product = dmi};
		struct http_client *http = http_client_new(&loop);
		struct auth *a = NULL;
		char *cause = NULL;

		assert_int_equal(
		    write_file_atomic(dmi, "Standard PC (Q35 + ICH9, 2009)\n", 31, 0644), 0);
		assert_int_equal(auth_new(&loop, http, &clk, &src, &a, &cause), -ENOENT);
		assert_non_null(strstr(cause,
		    "no Google credentials found; spillway looked, in order, at "
		    "GOOGLE_APPLICATION_CREDENTIALS (not set), gcloud's "
		    "application default credentials "
		    "/nonexistent/application_default_credentials.json (none) "
		    "and the metadata server (not a Compute Engine VM"));
		assert_non_null(strstr(cause, "Run: gcloud auth application-default login"));
		free(cause);
		cause = NULL;
		src.no_gce_check = true;
		assert_int_equal(auth_new(&loop, http, &clk, &src, &a, &cause), -ENOENT);
		assert_non_null(strstr(cause, "NO_GCE_CHECK is set"));
		free(cause);
		cause = NULL;
		/* On Compute Engine, the metadata server is where they are. */
		src.no_gce_check = false;
		assert_int_equal(write_file_atomic(dmi, "Google Compute Engine\n", 22, 0644), 0);
		assert_int_equal(auth_new(&loop, http, &clk, &src, &a, &cause), 0);
		assert_int_equal(auth_kind(a), AUTH_METADATA);
		auth_free(a);
		http_client_free(http);
		free(dmi);
	}
	/* GOOGLE_APPLICATION_CREDENTIALS naming nothing is an error, not a fallback. */
	{
		struct auth_sources src = {
		    .credentials_file = "/nonexistent/key.json", .gcloud_dir = "/nonexistent"};
		struct http_client *http = http_client_new(&loop);
		struct auth *a = NULL;
		char *cause = NULL;

		assert_int_equal(auth_new(&loop, http, &clk, &src, &a, &cause), -ENOENT);
		assert_non_null(strstr(cause,
		    "cannot read credentials '/nonexistent/key.json' "
		    "(GOOGLE_APPLICATION_CREDENTIALS)"));
		assert_non_null(strstr(cause, "gcloud auth application-default login"));
		free(cause);
		http_client_free(http);
	}
}

/* Credentials that parse but that the token endpoint refuses; a metadata server that is not there.
 */
static void
test_refused_credentials(void **state)
{
	char *path = xasprintf("%s/revoked.json", emu.dir), *text = read_text(emu.user_creds), *s;
	char *token_uri = xasprintf("%s/token", emu.url), *ep = endpoint(&emu);
	struct auth_sources src = {
	    .credentials_file = path, .gcloud_dir = "/nonexistent", .user_token_uri = token_uri};
	struct auth_sources none = {
	    .gcloud_dir = "/nonexistent", .metadata_host = "127.0.0.1:9", .metadata_probe_ms = 300};
	struct client c;
	struct res r = {0};
	json_t *v;

	assert_int_equal(jx_parse(text, strlen(text), &v, NULL), 0);
	json_object_set_new(v, "refresh_token", json_string("1//revoked-token-value"));
	s = jx_dumps(v);
	assert_int_equal(write_file_atomic(path, s, strlen(s), 0600), 0);
	client_open(&c, ep, &src, 0);
	assert_int_equal(
	    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_AUTH);
	assert_non_null(strstr(r.message, "invalid_grant"));
	assert_non_null(strstr(r.message, "gcloud auth application-default login"));
	assert_null(strstr(r.message, "revoked-token-value"));
	res_free(&r);
	client_close(&c);

	client_open(&c, ep, &none, 0);
	assert_int_equal(
	    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(10000), on_zones, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_AUTH);
	assert_non_null(strstr(r.message, "no credentials found"));
	res_free(&r);
	client_close(&c);
	json_decref(v);
	free(s);
	free(text);
	free(path);
	free(token_uri);
	free(ep);
}

/* --- a server that answers badly on purpose (the harness's canned server) --- */

static void
bad_call(struct canned *s, size_t max_response, struct res *r)
{
	struct auth_sources src = {.credentials_file = emu.creds, .gcloud_dir = "/nonexistent"};
	char *ep = xasprintf("http://127.0.0.1:%d/compute/v1/", s->port);
	struct client c;

	client_open(&c, ep, &src, max_response);
	assert_int_equal(c.cloud->ops->get(c.cloud, ZONE, "x", in_ms(10000), on_instance, r), 0);
	run(r);
	client_close(&c);
	free(ep);
}

static void
test_bad_answers(void **state)
{
	struct canned s;
	struct res r = {0};

	canned_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", 64, '{');
	bad_call(&s, 0, &r);
	assert_int_equal(r.code, CLOUD_NETWORK);
	assert_non_null(strstr(r.message, "is not a JSON object"));
	res_free(&r);
	canned_stop(&s);
	/* 10 MB against a bound of 1 MiB: an error, once (it would be as large next time). */
	canned_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", 10 << 20, ' ');
	bad_call(&s, 1 << 20, &r);
	assert_int_equal(r.code, CLOUD_NETWORK);
	assert_non_null(strstr(r.message, "larger than allowed"));
	assert_int_equal(r.attempts, 1);
	res_free(&r);
	canned_stop(&s);
	/* An HTML 502 from a proxy: a server error, retried, with a message that says so. */
	canned_start(&s, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n", 100, '<');
	bad_call(&s, 0, &r);
	assert_int_equal(r.code, CLOUD_SERVER);
	assert_int_equal(r.attempts, 5);
	assert_int_equal(s.served, 5);
	assert_non_null(strstr(r.message, "without a Google error body"));
	res_free(&r);
	canned_stop(&s);
	/* Nobody listening: a network error after the retries. */
	{
		struct canned gone = {.port = s.port};

		bad_call(&gone, 0, &r);
		assert_true(r.code == CLOUD_NETWORK || r.code == CLOUD_DEADLINE);
		assert_int_equal(r.attempts, 5);
		res_free(&r);
	}
}

/* A 200 whose JSON is this text. */
static void
json_start(struct canned *s, const char *text)
{
	canned_start(s, CANNED_JSON, strlen(text), 0);
	s->text = text;
}

/*
 * Answers that are JSON but not what Compute Engine sends (an instance without
 * a zone, a preemption without a target): errors naming the field, never a
 * result with a hole in it, and a list is never passed on without the item.
 */
static void
test_malformed_answers(void **state)
{
	struct auth_sources src = {.credentials_file = emu.creds, .gcloud_dir = "/nonexistent"};
	static const struct {
		const char *body, *why;
	} lists[] = {
	    {"{\"items\": [{\"name\": \"spillway-a\", \"status\": \"RUNNING\", "
	     "\"machineType\": \"zones/us-central1-a/machineTypes/e2-highmem-4\"}]}",
	        "without a valid 'zone'"},
	    {"{\"items\": [{\"name\": \"spillway-a\", \"zone\": \"zones/us-central1-a\", "
	     "\"status\": \"RUNNING\", \"machineType\": 7}]}",
	        "without a valid 'machineType'"},
	    {"{\"items\": [{\"name\": \"Not A Name\", \"zone\": \"us-central1-a\"}]}",
	        "without a valid 'name'"},
	};
	const char *op_body =
	    "{\"items\": [{\"name\": \"op-1\", \"zone\": \"zones/us-central1-a\", "
	    "\"operationType\": \"compute.instances.preempted\", \"status\": \"DONE\", "
	    "\"insertTime\": \"2026-11-27T10:00:00Z\"}]}";
	const char *const zones[] = {ZONE, NULL};
	struct canned s;
	struct client c;
	struct res r = {0};
	char *ep;

	for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
		json_start(&s, lists[i].body);
		ep = xasprintf("http://127.0.0.1:%d/compute/v1/", s.port);
		client_open(&c, ep, &src, 0);
		assert_int_equal(c.cloud->ops->list(c.cloud, zones, "spillway-owner", "x",
		                     in_ms(10000), on_list, &r),
		    0);
		run(&r);
		assert_int_equal(r.code, CLOUD_NETWORK);
		if (strstr(r.message, lists[i].why) == NULL)
			fail_msg("'%s' lacks '%s'", r.message, lists[i].why);
		res_free(&r);
		/* The same answer to a get: not an instance, naming what is missing. */
		assert_int_equal(
		    c.cloud->ops->get(c.cloud, ZONE, "spillway-a", in_ms(10000), on_instance, &r),
		    0);
		run(&r);
		assert_int_equal(r.code, CLOUD_NETWORK);
		res_free(&r);
		client_close(&c);
		free(ep);
		canned_stop(&s);
	}
	json_start(&s, op_body);
	ep = xasprintf("http://127.0.0.1:%d/compute/v1/", s.port);
	client_open(&c, ep, &src, 0);
	assert_int_equal(c.cloud->ops->preemptions(c.cloud, zones, 0, in_ms(10000), on_ops, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_NETWORK);
	assert_non_null(strstr(r.message, "without a valid 'targetLink'"));
	res_free(&r);
	client_close(&c);
	free(ep);
	canned_stop(&s);
}

/*
 * A token endpoint that answers 200 with a token of the wrong shape: an auth
 * error naming the endpoint, at once (one token request, no retries until
 * the deadline), and a well-formed answer then works.
 */
static void
test_garbage_token(void **state)
{
	static const char *answers[] = {
	    "{\"access_token\": 12, \"expires_in\": -99999999999999999999}",
	    "{\"access_token\": 12, \"expires_in\": 3600}",
	    "{\"access_token\": \"ya29.a b\", \"expires_in\": 3600}",
	    "{\"access_token\": \"ya29.ok\", \"expires_in\": -5}",
	    "{\"access_token\": \"ya29.ok\", \"expires_in\": \"3600\", \"token_type\": \"MAC\"}",
	    "[1, 2]",
	};
	char *ep = endpoint(&emu);

	for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
		struct canned s;
		char *token_uri;
		struct auth_sources src = {
		    .credentials_file = emu.user_creds, .gcloud_dir = "/nonexistent"};
		struct client c;
		struct res r = {0};

		json_start(&s, answers[i]);
		token_uri = xasprintf("http://127.0.0.1:%d/token", s.port);
		src.user_token_uri = token_uri;
		client_open(&c, ep, &src, 0);
		assert_int_equal(
		    c.cloud->ops->zones(c.cloud, "us-central1", in_ms(60000), on_zones, &r), 0);
		run(&r);
		assert_int_equal(r.code, CLOUD_AUTH);
		if (strstr(r.message, token_uri) == NULL ||
		    strstr(r.message, "without a usable token") == NULL)
			fail_msg("'%s' does not name %s", r.message, token_uri);
		/* Once: it would answer the same again. */
		assert_int_equal(s.served, 1);
		res_free(&r);
		client_close(&c);
		canned_stop(&s);
		free(token_uri);
	}
	free(ep);
}

static void
test_plain_http_refused(void **state)
{
	struct auth_sources src = {.credentials_file = emu.creds, .gcloud_dir = "/nonexistent"};
	struct http_client *http = http_client_new(&loop);
	struct auth *a;
	struct cloud *cl;
	struct gce_opts o;
	char *cause = NULL;

	assert_int_equal(auth_new(&loop, http, &clk, &src, &a, &cause), 0);
	gce_opts_default(&o);
	o.endpoint = "http://compute.example.com/compute/v1/";
	assert_int_equal(gce_new(&loop, &clk, http, a, &o, &cl, &cause), -EINVAL);
	assert_non_null(strstr(cause, "plain http only to a loopback address"));
	free(cause);
	auth_free(a);
	http_client_free(http);
}

static void
test_preemptions(void **state)
{
	struct client c;
	struct res r = {0};
	const char *zones[] = {ZONE, "us-central1-b", NULL};
	int64_t since = clock_now_ms(&clk) - 1000;
	char *admin = xasprintf("%s/emulator/v1/projects/spillway-emulator/zones/" ZONE
	                        "/instances/pre-1/preempt",
	    emu.url);
	struct resp h;

	default_client(&c);
	create(&c, "pre-1", ZONE, "pre", &r);
	{
		char *op = xstrdup(r.op);

		res_free(&r);
		wait_op(&c, ZONE, op, &r);
		free(op);
	}
	res_free(&r);
	http_call(&h, "POST", admin, NULL, NULL, NULL, NULL);
	assert_int_equal(h.status, 200);
	resp_free(&h);
	assert_int_equal(
	    c.cloud->ops->preemptions(c.cloud, zones, since, in_ms(10000), on_ops, &r), 0);
	run(&r);
	assert_int_equal(r.code, CLOUD_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.names[0], "pre-1");
	res_free(&r);
	/* None since after it. */
	assert_int_equal(c.cloud->ops->preemptions(
	                     c.cloud, zones, clock_now_ms(&clk) + 60000, in_ms(10000), on_ops, &r),
	    0);
	run(&r);
	assert_int_equal(r.n, 0);
	res_free(&r);
	free(admin);
	client_close(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lifecycle),
	    cmocka_unit_test(test_power),
	    cmocka_unit_test(test_images),
	    cmocka_unit_test(test_pagination_and_labels),
	    cmocka_unit_test(test_error_classes),
	    cmocka_unit_test(test_retries),
	    cmocka_unit_test(test_retried_inserts_make_one_vm),
	    cmocka_unit_test(test_concurrent_calls_share_a_refresh),
	    cmocka_unit_test(test_burst_shares_connections),
	    cmocka_unit_test(test_deadline),
	    cmocka_unit_test(test_401_refreshes_once),
	    cmocka_unit_test(test_credential_sources),
	    cmocka_unit_test(test_bad_credentials),
	    cmocka_unit_test(test_refused_credentials),
	    cmocka_unit_test(test_bad_answers),
	    cmocka_unit_test(test_malformed_answers),
	    cmocka_unit_test(test_garbage_token),
	    cmocka_unit_test(test_plain_http_refused),
	    cmocka_unit_test(test_preemptions),
	};

	jx_init();
	return cmocka_run_group_tests(tests, start, stop);
}
