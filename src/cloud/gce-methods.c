/*
 * The Compute Engine provider's methods: what each call sends (its path,
 * body and kind), and what its answer is to the caller: an operation (an
 * insert, a delete, a power change, an image made or deleted), an instance,
 * a listing gathered over zones and pages (instances, preemptions, images),
 * a machine type, zones, a guest attribute. The life of a call (token,
 * retries, HTTP) is gce.c's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud/gce-call.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

/*
 * What a listing asks Compute Engine to send of each item (a partial
 * response): what gce_instance_from_json and gce_op_from_json read, not an
 * instance's metadata, which is most of its size (a startup script, a
 * certificate). URL-encoded once, here.
 */
#define INSTANCE_FIELDS                                                                            \
	"items(name%2Cid%2Czone%2Cstatus%2CmachineType%2CcreationTimestamp%2ClastStartTimestamp"   \
	"%2CnetworkInterfaces(networkIP%2CaccessConfigs%2FnatIP)%2Clabels"                         \
	"%2Cscheduling(provisioningModel%2Cpreemptible%2CmaxRunDuration))%2CnextPageToken"
#define OPERATION_FIELDS                                                                           \
	"items(name%2Czone%2CoperationType%2CtargetLink%2Cstatus%2CinsertTime%2CendTime)"          \
	"%2CnextPageToken"

/* A listing's path in its current zone (its page token is added when it is sent). */
static char *
listing_path(const struct call *c)
{
	bool instances = c->kind == K_LIST;

	return xasprintf("projects/%s/zones/%s/%s?maxResults=%d&filter=%s&fields=%s", c->g->project,
	    c->zones[c->zone], instances ? "instances" : "operations", PAGE_SIZE, c->filter,
	    instances ? INSTANCE_FIELDS : OPERATION_FIELDS);
}

void
call_fail(struct call *c)
{
	c->e.err.attempts = c->attempts;
	switch (c->kind) {
	case K_CREATE:
	case K_DELETE:
	case K_WAIT:
	case K_POWER:
	case K_IMAGE_CREATE:
	case K_IMAGE_DELETE:
		c->cb.op(&c->e.err, NULL, c->arg);
		break;
	case K_IMAGES:
		c->cb.images(&c->e.err, NULL, 0, c->arg);
		break;
	case K_GET:
		c->cb.instance(&c->e.err, NULL, c->arg);
		break;
	case K_LIST:
		c->cb.list(&c->e.err, NULL, 0, c->arg);
		break;
	case K_PREEMPT:
		c->cb.ops(&c->e.err, NULL, 0, c->arg);
		break;
	case K_MACHINE:
		c->cb.machine(&c->e.err, NULL, c->arg);
		break;
	case K_ZONES:
		c->cb.zones(&c->e.err, NULL, 0, c->arg);
		break;
	case K_GUEST:
		c->cb.value(&c->e.err, NULL, c->arg);
		break;
	}
	call_free(c);
}

/* A DONE operation that carries an error: the matching typed error. */
static bool
op_failed(struct call *c, json_t *op)
{
	call_clear_error(c);
	return gce_error_from_op(op, c->target_zone, &c->e);
}

/* --- answers --- */

static void
deliver_op(struct call *c, json_t *v)
{
	struct cloud_op op;

	gce_op_from_json(v, &op);
	if (!gce_fits(op.name, CLOUD_OP_LEN)) {
		call_set_error(c, CLOUD_NETWORK, "the answer is not an operation");
		call_fail(c);
		return;
	}
	/* An operation of ours is in the zone we asked: what we wait on next. */
	if (!gce_valid_name(op.zone))
		op.zone = c->target_zone;
	c->cb.op(&c->e.err, &op, c->arg);
	call_free(c);
}

/*
 * A listing with an item we cannot read fails whole: leaving the item out
 * would make its VM look deleted, and what is kept of it must hold.
 */
static void
deliver_list(struct call *c)
{
	size_t n = json_array_size(c->items), k = 0;
	struct cloud_instance *list = xcalloc(n + 1, sizeof *list);
	const char *bad = NULL;
	json_t *it;
	size_t i;

	json_array_foreach (c->items, i, it) {
		if ((bad = gce_instance_from_json(it, &list[k])) != NULL)
			break;
		k++;
	}
	if (bad != NULL) {
		call_set_error(c, CLOUD_NETWORK,
		    "instances.list answered an item (%zu) without a valid '%s'", i, bad);
		gce_instances_free(list, k);
		call_fail(c);
		return;
	}
	c->cb.list(&c->e.err, list, k, c->arg);
	gce_instances_free(list, k);
	call_free(c);
}

static void
deliver_preemptions(struct call *c)
{
	size_t n = json_array_size(c->items), k = 0;
	struct cloud_op *ops = xcalloc(n + 1, sizeof *ops);
	json_t *it;
	size_t i;

	json_array_foreach (c->items, i, it) {
		const char *bad = gce_preemption_from_json(it, &ops[k]);

		if (bad != NULL) {
			call_set_error(c, CLOUD_NETWORK,
			    "operations.list answered a preemption (%zu) without a valid '%s'", i,
			    bad);
			free(ops);
			call_fail(c);
			return;
		}
		if (ops[k].inserted_ms >= c->since_ms)
			k++;
	}
	c->cb.ops(&c->e.err, ops, k, c->arg);
	free(ops);
	call_free(c);
}

static void
deliver_zones(struct call *c)
{
	size_t n = json_array_size(c->items), k = 0;
	const char **names = xcalloc(n + 1, sizeof *names);
	json_t *it;
	size_t i;

	json_array_foreach (c->items, i, it) {
		const char *name = jx_str(it, "name"),
		           *region = gce_last_segment(jx_str(it, "region"));
		const char *status = jx_str(it, "status");

		if (name != NULL && region != NULL && strcmp(region, c->region) == 0 &&
		    (status == NULL || strcmp(status, "UP") == 0))
			names[k++] = name;
	}
	qsort(names, k, sizeof *names, str_ptr_cmp);
	c->cb.zones(&c->e.err, names, k, c->arg);
	free(names);
	call_free(c);
}

/* As a listing of instances: an image we cannot read fails the whole. */
static void
deliver_images(struct call *c)
{
	size_t n = json_array_size(c->items), k = 0;
	struct cloud_image *list = xcalloc(n + 1, sizeof *list);
	const char *bad = NULL;
	json_t *it;
	size_t i;

	json_array_foreach (c->items, i, it) {
		if ((bad = gce_image_from_json(it, &list[k])) != NULL)
			break;
		k++;
	}
	if (bad == NULL)
		c->cb.images(&c->e.err, list, k, c->arg);
	else
		call_set_error(c, CLOUD_NETWORK,
		    "images.list answered an item (%zu) without a valid '%s'", i, bad);
	for (i = 0; i < k; i++)
		free((void *)list[i].labels);
	free(list);
	if (bad != NULL)
		call_fail(c);
	else
		call_free(c);
}

/* The next page, or the next zone, or the end of a listing. */
static void
next_page(struct call *c, json_t *v)
{
	json_t *items = json_object_get(v, "items");
	const char *next = jx_str(v, "nextPageToken");

	if (json_is_array(items))
		json_array_extend(c->items, items);
	free(c->page_token);
	c->page_token = NULL;
	c->attempts = 0;
	if (next != NULL && *next != '\0') {
		c->page_token = url_encode(next);
		call_start(c);
		return;
	}
	if (c->zones != NULL && c->zones[++c->zone] != NULL) {
		free(c->path);
		c->path = listing_path(c);
		call_start(c);
		return;
	}
	switch (c->kind) {
	case K_LIST:
		deliver_list(c);
		break;
	case K_PREEMPT:
		deliver_preemptions(c);
		break;
	case K_IMAGES:
		deliver_images(c);
		break;
	default:
		deliver_zones(c);
		break;
	}
}

void
call_answered(struct call *c, json_t *v)
{
	c->e.err.attempts = c->attempts;
	switch (c->kind) {
	case K_CREATE:
	case K_DELETE:
	case K_POWER:
	case K_IMAGE_CREATE:
	case K_IMAGE_DELETE:
		if (op_failed(c, v))
			call_fail(c);
		else
			deliver_op(c, v);
		break;
	case K_WAIT:
		if (jx_str(v, "status") == NULL || strcmp(jx_str(v, "status"), "DONE") != 0) {
			/* Google's wait may return early: wait again (not a failure). */
			c->attempts = 0;
			call_start(c);
		} else if (op_failed(c, v)) {
			call_fail(c);
		} else {
			deliver_op(c, v);
		}
		break;
	case K_GET: {
		struct cloud_instance in;
		const char *bad;

		if ((bad = gce_instance_from_json(v, &in)) != NULL) {
			call_set_error(
			    c, CLOUD_NETWORK, "the answer is not an instance: no valid '%s'", bad);
			free((void *)in.labels);
			free((void *)in.metadata);
			call_fail(c);
			break;
		}
		c->cb.instance(&c->e.err, &in, c->arg);
		free((void *)in.labels);
		free((void *)in.metadata);
		call_free(c);
		break;
	}
	case K_MACHINE: {
		struct cloud_machine_type mt = {.name = jx_str(v, "name"),
		    .vcpus = (int)json_integer_value(json_object_get(v, "guestCpus")),
		    .memory_mb = (int)json_integer_value(json_object_get(v, "memoryMb")),
		    .shared_core = json_is_true(json_object_get(v, "isSharedCpu"))};

		if (mt.name == NULL || mt.vcpus <= 0 || mt.memory_mb <= 0) {
			call_set_error(c, CLOUD_NETWORK, "the answer is not a machine type");
			call_fail(c);
			break;
		}
		c->cb.machine(&c->e.err, &mt, c->arg);
		call_free(c);
		break;
	}
	case K_GUEST:
		if (jx_str(v, "variableValue") == NULL) {
			call_set_error(c, CLOUD_NETWORK, "the answer is not a guest attribute");
			call_fail(c);
			break;
		}
		c->cb.value(&c->e.err, jx_str(v, "variableValue"), c->arg);
		call_free(c);
		break;
	case K_LIST:
	case K_PREEMPT:
	case K_ZONES:
	case K_IMAGES:
		next_page(c, v);
		break;
	}
}

/* --- the interface --- */

static int
gce_create(struct cloud *cl, const struct cloud_instance_spec *s, const char *request_id,
    int64_t deadline_ms, cloud_op_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;
	json_t *body;

	if (!gce_valid_name(s->name) || !gce_valid_name(s->zone) ||
	    !gce_valid_name(s->machine_type) || s->image == NULL || request_id == NULL ||
	    !uuid_valid(request_id))
		return -EINVAL;
	c = call_new(g, K_CREATE, (union callback){.op = cb}, arg, deadline_ms);
	body = gce_instance_body(s);
	c->method = "POST";
	c->body = jx_dumps(body);
	c->path = xasprintf(
	    "projects/%s/zones/%s/instances?requestId=%s", g->project, s->zone, request_id);
	c->target_zone = xstrdup(s->zone);
	json_decref(body);
	call_start(c);
	return 0;
}

static int
gce_get(struct cloud *cl, const char *zone, const char *name, int64_t deadline_ms,
    cloud_instance_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(name))
		return -EINVAL;
	c = call_new(g, K_GET, (union callback){.instance = cb}, arg, deadline_ms);
	c->path = xasprintf("projects/%s/zones/%s/instances/%s", g->project, zone, name);
	call_start(c);
	return 0;
}

/* A listing over zones, all pages each; the first zone's path is set here. */
static int
start_listing(struct gce *g, enum kind kind, const char *const *zones, const char *filter,
    int64_t deadline_ms, union callback cb, void *arg, struct call **out)
{
	struct call *c;
	size_t n = 0;

	for (; zones != NULL && zones[n] != NULL; n++)
		if (!gce_valid_name(zones[n]))
			return -EINVAL;
	if (n == 0)
		return -EINVAL;
	c = call_new(g, kind, cb, arg, deadline_ms);
	c->zones = xcalloc(n + 1, sizeof *c->zones);
	for (size_t i = 0; i < n; i++)
		c->zones[i] = xstrdup(zones[i]);
	c->filter = url_encode(filter);
	c->items = json_array();
	c->path = listing_path(c);
	*out = c;
	return 0;
}

/* A listing's filter on one label; NULL when the key or value cannot be put in one. */
static char *
label_filter(const char *key, const char *value)
{
	if (key == NULL || value == NULL || strpbrk(key, " \"()") != NULL || strchr(value, '"'))
		return NULL;
	return xasprintf("labels.%s = \"%s\"", key, value);
}

static int
gce_list(struct cloud *cl, const char *const *zones, const char *key, const char *value,
    int64_t deadline_ms, cloud_list_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;
	char *filter;
	int error;

	if ((filter = label_filter(key, value)) == NULL)
		return -EINVAL;
	error = start_listing(
	    g, K_LIST, zones, filter, deadline_ms, (union callback){.list = cb}, arg, &c);
	free(filter);
	if (error == 0)
		call_start(c);
	return error;
}

static int
gce_destroy(struct cloud *cl, const char *zone, const char *name, const char *request_id,
    int64_t deadline_ms, cloud_op_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(name) || request_id == NULL ||
	    !uuid_valid(request_id))
		return -EINVAL;
	c = call_new(g, K_DELETE, (union callback){.op = cb}, arg, deadline_ms);
	c->method = "DELETE";
	c->path = xasprintf(
	    "projects/%s/zones/%s/instances/%s?requestId=%s", g->project, zone, name, request_id);
	c->target_zone = xstrdup(zone);
	call_start(c);
	return 0;
}

static int
gce_wait(struct cloud *cl, const char *zone, const char *op, int64_t deadline_ms, cloud_op_cb *cb,
    void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if ((zone != NULL && !gce_valid_name(zone)) || !gce_valid_name(op))
		return -EINVAL;
	c = call_new(g, K_WAIT, (union callback){.op = cb}, arg, deadline_ms);
	c->method = "POST";
	if (zone != NULL)
		c->path =
		    xasprintf("projects/%s/zones/%s/operations/%s/wait", g->project, zone, op);
	else
		c->path = xasprintf("projects/%s/global/operations/%s/wait", g->project, op);
	c->target_zone = zone != NULL ? xstrdup(zone) : NULL;
	call_start(c);
	return 0;
}

static int
gce_preemptions(struct cloud *cl, const char *const *zones, int64_t since_ms, int64_t deadline_ms,
    cloud_ops_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;
	int error =
	    start_listing(g, K_PREEMPT, zones, "operationType = \"compute.instances.preempted\"",
	        deadline_ms, (union callback){.ops = cb}, arg, &c);

	if (error == 0) {
		c->since_ms = since_ms;
		call_start(c);
	}
	return error;
}

static int
gce_machine_type(struct cloud *cl, const char *zone, const char *type, int64_t deadline_ms,
    cloud_machine_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(type))
		return -EINVAL;
	c = call_new(g, K_MACHINE, (union callback){.machine = cb}, arg, deadline_ms);
	c->path = xasprintf("projects/%s/zones/%s/machineTypes/%s", g->project, zone, type);
	call_start(c);
	return 0;
}

static int
gce_zones(struct cloud *cl, const char *region, int64_t deadline_ms, cloud_zones_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(region))
		return -EINVAL;
	c = call_new(g, K_ZONES, (union callback){.zones = cb}, arg, deadline_ms);
	c->region = xstrdup(region);
	c->items = json_array();
	c->path = xasprintf("projects/%s/zones?maxResults=%d", g->project, PAGE_SIZE);
	call_start(c);
	return 0;
}

static int
gce_guest_attribute(struct cloud *cl, const char *zone, const char *name, const char *key,
    int64_t deadline_ms, cloud_value_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(name) ||
	    strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/") !=
	        strlen(key))
		return -EINVAL;
	c = call_new(g, K_GUEST, (union callback){.value = cb}, arg, deadline_ms);
	c->path = xasprintf("projects/%s/zones/%s/instances/%s/getGuestAttributes?variableKey=%s",
	    g->project, zone, name, key);
	call_start(c);
	return 0;
}

static int
gce_power(struct cloud *cl, const char *zone, const char *name, enum cloud_power p,
    const char *request_id, int64_t deadline_ms, cloud_op_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(zone) || !gce_valid_name(name) || request_id == NULL ||
	    !uuid_valid(request_id) || (unsigned)p > CLOUD_RESUME)
		return -EINVAL;
	c = call_new(g, K_POWER, (union callback){.op = cb}, arg, deadline_ms);
	c->method = "POST";
	c->path = xasprintf("projects/%s/zones/%s/instances/%s/%s?requestId=%s", g->project, zone,
	    name, cloud_power_name(p), request_id);
	c->target_zone = xstrdup(zone);
	call_start(c);
	return 0;
}

static int
gce_image_create(struct cloud *cl, const struct cloud_image_spec *s, const char *request_id,
    int64_t deadline_ms, cloud_op_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;
	json_t *body;

	if (!gce_valid_name(s->name) || !gce_valid_name(s->zone) || !gce_valid_name(s->disk) ||
	    (s->family != NULL && !gce_valid_name(s->family)) || request_id == NULL ||
	    !uuid_valid(request_id))
		return -EINVAL;
	c = call_new(g, K_IMAGE_CREATE, (union callback){.op = cb}, arg, deadline_ms);
	body = gce_image_body(s);
	c->method = "POST";
	c->body = jx_dumps(body);
	c->path = xasprintf("projects/%s/global/images?requestId=%s", g->project, request_id);
	json_decref(body);
	call_start(c);
	return 0;
}

static int
gce_images(struct cloud *cl, const char *key, const char *value, int64_t deadline_ms,
    cloud_images_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;
	char *filter;

	if ((filter = label_filter(key, value)) == NULL)
		return -EINVAL;
	c = call_new(g, K_IMAGES, (union callback){.images = cb}, arg, deadline_ms);
	c->filter = url_encode(filter);
	c->items = json_array();
	c->path = xasprintf(
	    "projects/%s/global/images?maxResults=%d&filter=%s", g->project, PAGE_SIZE, c->filter);
	free(filter);
	call_start(c);
	return 0;
}

static int
gce_image_delete(struct cloud *cl, const char *name, const char *request_id, int64_t deadline_ms,
    cloud_op_cb *cb, void *arg)
{
	struct gce *g = (struct gce *)cl;
	struct call *c;

	if (!gce_valid_name(name) || request_id == NULL || !uuid_valid(request_id))
		return -EINVAL;
	c = call_new(g, K_IMAGE_DELETE, (union callback){.op = cb}, arg, deadline_ms);
	c->method = "DELETE";
	c->path =
	    xasprintf("projects/%s/global/images/%s?requestId=%s", g->project, name, request_id);
	call_start(c);
	return 0;
}

static void
gce_free(struct cloud *cl)
{
	struct gce *g = (struct gce *)cl;

	while (g->calls != NULL)
		call_free(g->calls);
	free(g->endpoint);
	free(g->project);
	free(g);
}

const struct cloud_ops gce_ops = {
    .name = "gce",
    .create = gce_create,
    .get = gce_get,
    .list = gce_list,
    .destroy = gce_destroy,
    .wait = gce_wait,
    .preemptions = gce_preemptions,
    .machine_type = gce_machine_type,
    .zones = gce_zones,
    .guest_attribute = gce_guest_attribute,
    .power = gce_power,
    .image_create = gce_image_create,
    .images = gce_images,
    .image_delete = gce_image_delete,
    .free = gce_free,
};
