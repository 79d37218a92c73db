/*
 * The scripted cloud (scripted.h). It owns its world (instances, operations,
 * preemptions) and the answers not delivered yet, each a copy of what the
 * world was when its call was made; a wait's answer is read when it is
 * delivered, as a real wait returns once the operation is DONE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scripted.h"
#include "util/xmalloc.h"

struct sc_inst {
	char name[CLOUD_NAME_LEN], zone[CLOUD_NAME_LEN], status[CLOUD_STATUS_LEN];
	char nat_ip[CLOUD_NAME_LEN];
	char pin[64]; /* "" not published */
	int64_t started_ms, max_run_s;
	bool spot;
};

struct sc_op {
	char name[CLOUD_OP_LEN], zone[CLOUD_NAME_LEN], type[16], target[CLOUD_NAME_LEN];
	char request_id[48];
	bool done;
	int64_t inserted_ms, ended_ms;
};

struct sc_image {
	char name[CLOUD_NAME_LEN], family[CLOUD_NAME_LEN], install[40], request_id[48];
};

struct sc_pre {
	char target[CLOUD_NAME_LEN], zone[CLOUD_NAME_LEN];
	int64_t t_ms;
};

/* Whichever callback the call's kind has. */
union sc_cb {
	cloud_op_cb *op;
	cloud_instance_cb *inst;
	cloud_list_cb *list;
	cloud_ops_cb *ops;
	cloud_machine_cb *mt;
	cloud_zones_cb *zones;
	cloud_value_cb *value;
	cloud_images_cb *images;
};

struct answer {
	enum sc_call kind;
	long seq;
	int64_t due, deadline;
	enum cloud_errc code;
	union sc_cb cb;
	void *arg;
	struct sc_inst *insts; /* list, get */
	size_t ninsts;
	struct sc_op op; /* create, destroy; wait: op.name is the one waited for */
	bool no_op;      /* destroy of an instance already gone */
	struct sc_pre *pres;
	size_t npres;
	char value[64]; /* guest attribute */
	struct sc_image *images; /* images */
	size_t nimages;
	struct answer *next;
};

struct scripted {
	struct cloud cloud; /* first: the seam's pointer is ours */
	const struct clock *clock;
	struct sc_inst *insts;
	size_t ninsts;
	struct sc_op *ops;
	size_t nops;
	struct sc_pre *pres;
	size_t npres;
	struct sc_image *images;
	size_t nimages;
	int images_made;
	char insert_status[CLOUD_STATUS_LEN], insert_ip[CLOUD_NAME_LEN], insert_pin[64];
	bool ops_pending;
	int fail[SC_NCALLS], lose[SC_NCALLS], calls[SC_NCALLS];
	enum cloud_errc fail_code[SC_NCALLS];
	int64_t latency[SC_NCALLS];
	int made;
	long seq;
	struct answer *answers;
};

static int64_t
now(const struct scripted *s)
{
	return clock_now_ms(s->clock);
}

static struct sc_inst *
inst(const struct scripted *s, const char *name)
{
	for (size_t i = 0; i < s->ninsts; i++)
		if (strcmp(s->insts[i].name, name) == 0)
			return &s->insts[i];
	return NULL;
}

static struct sc_op *
op_by(const struct scripted *s, const char *request_id, const char *name)
{
	for (size_t i = 0; i < s->nops; i++)
		if ((request_id != NULL && strcmp(s->ops[i].request_id, request_id) == 0) ||
		    (name != NULL && strcmp(s->ops[i].name, name) == 0))
			return &s->ops[i];
	return NULL;
}

/* A call: its answer queued, or its scripted error. Returns the answer to fill, or NULL. */
static struct answer *
call(struct scripted *s, enum sc_call kind, union sc_cb cb, void *arg, int64_t deadline,
    bool *effect)
{
	struct answer *a = xcalloc(1, sizeof *a), **tail = &s->answers;

	s->calls[kind]++;
	a->kind = kind;
	a->seq = s->seq++;
	a->due = now(s) + s->latency[kind];
	a->deadline = deadline;
	a->cb = cb;
	a->arg = arg;
	*effect = true;
	if (s->fail[kind] > 0) {
		s->fail[kind]--;
		a->code = s->fail_code[kind];
		*effect = false;
	} else if (s->lose[kind] > 0) {
		s->lose[kind]--;
		a->code = CLOUD_DEADLINE;
	}
	while (*tail != NULL)
		tail = &(*tail)->next;
	*tail = a;
	return a;
}

static struct sc_op *
new_op(struct scripted *s, const char *type, const struct sc_inst *in, const char *request_id)
{
	struct sc_op *o;

	s->ops = xreallocarray(s->ops, s->nops + 1, sizeof *s->ops);
	o = memset(&s->ops[s->nops], 0, sizeof *o);
	snprintf(o->name, sizeof o->name, "operation-%zu-%s", s->nops, type);
	s->nops++;
	snprintf(o->zone, sizeof o->zone, "%s", in->zone);
	snprintf(o->type, sizeof o->type, "%s", type);
	snprintf(o->target, sizeof o->target, "%s", in->name);
	snprintf(o->request_id, sizeof o->request_id, "%s", request_id ? request_id : "");
	o->inserted_ms = now(s);
	o->done = !s->ops_pending;
	o->ended_ms = o->done ? o->inserted_ms : 0;
	return o;
}

static int
sc_create(struct cloud *c, const struct cloud_instance_spec *spec, const char *request_id,
    int64_t deadline, cloud_op_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a = call(s, SC_CREATE, (union sc_cb){.op = cb}, arg, deadline, &effect);
	struct sc_op *o = op_by(s, request_id, NULL);

	if (!effect)
		return 0;
	if (o == NULL) {
		struct sc_inst in = {.started_ms = 0};

		if (inst(s, spec->name) != NULL) {
			a->code = CLOUD_EXISTS;
			return 0;
		}
		snprintf(in.name, sizeof in.name, "%s", spec->name);
		snprintf(in.zone, sizeof in.zone, "%s", spec->zone);
		snprintf(in.status, sizeof in.status, "%s", s->insert_status);
		snprintf(in.nat_ip, sizeof in.nat_ip, "%s", s->insert_ip);
		snprintf(in.pin, sizeof in.pin, "%s", s->insert_pin);
		in.started_ms = strcmp(in.status, "RUNNING") == 0 ? now(s) : 0;
		in.max_run_s = spec->max_run_s;
		in.spot = spec->spot;
		s->insts = xreallocarray(s->insts, s->ninsts + 1, sizeof *s->insts);
		s->insts[s->ninsts++] = in;
		s->made++;
		o = new_op(s, "insert", &in, request_id);
	}
	a->op = *o;
	return 0;
}

static struct sc_inst *
snapshot(const struct scripted *s, const char *only, size_t *n)
{
	struct sc_inst *out = xcalloc(s->ninsts + 1, sizeof *out);

	*n = 0;
	for (size_t i = 0; i < s->ninsts; i++)
		if (only == NULL || strcmp(s->insts[i].name, only) == 0)
			out[(*n)++] = s->insts[i];
	return out;
}

static int
sc_get(struct cloud *c, const char *zone, const char *name, int64_t deadline, cloud_instance_cb *cb,
    void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a = call(s, SC_GET, (union sc_cb){.inst = cb}, arg, deadline, &effect);

	(void)zone;
	if (effect) {
		a->insts = snapshot(s, name, &a->ninsts);
		if (a->ninsts == 0 && a->code == CLOUD_OK)
			a->code = CLOUD_NOT_FOUND;
	}
	return 0;
}

static int
sc_list(struct cloud *c, const char *const *zones, const char *key, const char *value,
    int64_t deadline, cloud_list_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a = call(s, SC_LIST, (union sc_cb){.list = cb}, arg, deadline, &effect);

	(void)zones, (void)key, (void)value;
	if (effect)
		a->insts = snapshot(s, NULL, &a->ninsts);
	return 0;
}

static void
drop(struct scripted *s, const char *name)
{
	struct sc_inst *in = inst(s, name);

	if (in != NULL)
		*in = s->insts[--s->ninsts];
}

static int
sc_destroy(struct cloud *c, const char *zone, const char *name, const char *request_id,
    int64_t deadline, cloud_op_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a = call(s, SC_DESTROY, (union sc_cb){.op = cb}, arg, deadline, &effect);
	struct sc_op *o = op_by(s, request_id, NULL);
	struct sc_inst *in = inst(s, name);

	(void)zone;
	if (!effect)
		return 0;
	if (o == NULL && in == NULL) {
		a->no_op = true;
		return 0;
	}
	if (o == NULL) {
		/* An insert still running ends with the delete, as Compute Engine's does. */
		for (size_t i = 0; i < s->nops; i++)
			if (strcmp(s->ops[i].target, name) == 0 && !s->ops[i].done) {
				s->ops[i].done = true;
				s->ops[i].ended_ms = now(s);
			}
		o = new_op(s, "delete", in, request_id);
		if (o->done)
			drop(s, name);
		else
			snprintf(in->status, sizeof in->status, "STOPPING");
	}
	a->op = *o;
	return 0;
}

static int
sc_wait(
    struct cloud *c, const char *zone, const char *op, int64_t deadline, cloud_op_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a = call(s, SC_WAIT, (union sc_cb){.op = cb}, arg, deadline, &effect);

	(void)zone;
	snprintf(a->op.name, sizeof a->op.name, "%s", op);
	return 0;
}

/* What a power call leaves an instance in once its operation is DONE. */
static const char *
powered(const char *type)
{
	return strcmp(type, "stop") == 0   ? "TERMINATED"
	    : strcmp(type, "suspend") == 0 ? "SUSPENDED"
	                                   : "RUNNING";
}

static int
sc_power(struct cloud *c, const char *zone, const char *name, enum cloud_power how,
    const char *request_id, int64_t deadline, cloud_op_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a = call(s, SC_POWER, (union sc_cb){.op = cb}, arg, deadline, &effect);
	struct sc_op *o = op_by(s, request_id, NULL);
	struct sc_inst *in = inst(s, name);

	(void)zone;
	if (!effect)
		return 0;
	if (o == NULL && in == NULL) {
		a->code = CLOUD_NOT_FOUND;
		return 0;
	}
	if (o == NULL) {
		o = new_op(s, cloud_power_name(how), in, request_id);
		if (o->done) {
			snprintf(in->status, sizeof in->status, "%s", powered(o->type));
			if (strcmp(in->status, "RUNNING") == 0)
				in->started_ms = now(s);
		}
	}
	a->op = *o;
	return 0;
}

static struct sc_image *
image(const struct scripted *s, const char *name)
{
	for (size_t i = 0; i < s->nimages; i++)
		if (strcmp(s->images[i].name, name) == 0)
			return &s->images[i];
	return NULL;
}

static int
sc_image_create(struct cloud *c, const struct cloud_image_spec *spec, const char *request_id,
    int64_t deadline, cloud_op_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a =
	    call(s, SC_IMAGE_CREATE, (union sc_cb){.op = cb}, arg, deadline, &effect);
	struct sc_op *o = op_by(s, request_id, NULL);
	struct sc_inst target = {.zone = ""};

	if (!effect)
		return 0;
	if (o == NULL) {
		const char *install = cloud_kv_get(spec->labels, spec->nlabels, "spillway-install");

		if (image(s, spec->name) != NULL) {
			a->code = CLOUD_EXISTS;
			return 0;
		}
		scripted_put_image(
		    s, spec->name, spec->family != NULL ? spec->family : "", install);
		snprintf(image(s, spec->name)->request_id, sizeof image(s, spec->name)->request_id,
		    "%s", request_id);
		s->images_made++;
		snprintf(target.name, sizeof target.name, "%s", spec->name);
		o = new_op(s, "insert", &target, request_id);
		o->done = true; /* an image is READY once made: nothing waits on it */
		o->ended_ms = o->inserted_ms;
	}
	a->op = *o;
	return 0;
}

static int
sc_images(struct cloud *c, const char *key, const char *value, int64_t deadline,
    cloud_images_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a = call(s, SC_IMAGES, (union sc_cb){.images = cb}, arg, deadline, &effect);

	(void)key, (void)value;
	if (effect) {
		a->images = xcalloc(s->nimages + 1, sizeof *a->images);
		for (size_t i = 0; i < s->nimages; i++)
			a->images[i] = s->images[i];
		a->nimages = s->nimages;
	}
	return 0;
}

static int
sc_image_delete(struct cloud *c, const char *name, const char *request_id, int64_t deadline,
    cloud_op_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a =
	    call(s, SC_IMAGE_DELETE, (union sc_cb){.op = cb}, arg, deadline, &effect);
	struct sc_image *im = image(s, name);

	(void)request_id;
	if (!effect)
		return 0;
	if (im == NULL) {
		a->no_op = true;
		return 0;
	}
	*im = s->images[--s->nimages];
	snprintf(a->op.name, sizeof a->op.name, "operation-image-delete");
	a->op.done = true;
	return 0;
}

static int
sc_preemptions(struct cloud *c, const char *const *zones, int64_t since, int64_t deadline,
    cloud_ops_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;
	struct answer *a =
	    call(s, SC_PREEMPTIONS, (union sc_cb){.ops = cb}, arg, deadline, &effect);

	(void)zones;
	if (!effect)
		return 0;
	a->pres = xcalloc(s->npres + 1, sizeof *a->pres);
	for (size_t i = 0; i < s->npres; i++)
		if (s->pres[i].t_ms >= since)
			a->pres[a->npres++] = s->pres[i];
	return 0;
}

static int
sc_machine(struct cloud *c, const char *zone, const char *type, int64_t deadline,
    cloud_machine_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;

	(void)zone, (void)type;
	call(s, SC_MACHINE, (union sc_cb){.mt = cb}, arg, deadline, &effect);
	return 0;
}

static int
sc_zones(struct cloud *c, const char *region, int64_t deadline, cloud_zones_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	bool effect;

	(void)region;
	call(s, SC_ZONES, (union sc_cb){.zones = cb}, arg, deadline, &effect);
	return 0;
}

static int
sc_guest(struct cloud *c, const char *zone, const char *name, const char *key, int64_t deadline,
    cloud_value_cb *cb, void *arg)
{
	struct scripted *s = (struct scripted *)c;
	struct sc_inst *in = inst(s, name);
	bool effect;
	struct answer *a = call(s, SC_GUEST, (union sc_cb){.value = cb}, arg, deadline, &effect);

	(void)zone, (void)key;
	if (a->code == CLOUD_OK && (in == NULL || in->pin[0] == '\0'))
		a->code = CLOUD_NOT_FOUND;
	else if (in != NULL)
		snprintf(a->value, sizeof a->value, "%s", in->pin);
	return 0;
}

static void
sc_free(struct cloud *c)
{
	(void)c; /* scripted_free frees it: the test outlives the manager */
}

static const struct cloud_ops scripted_ops = {
    .name = "scripted",
    .create = sc_create,
    .get = sc_get,
    .list = sc_list,
    .destroy = sc_destroy,
    .wait = sc_wait,
    .preemptions = sc_preemptions,
    .machine_type = sc_machine,
    .zones = sc_zones,
    .guest_attribute = sc_guest,
    .power = sc_power,
    .image_create = sc_image_create,
    .images = sc_images,
    .image_delete = sc_image_delete,
    .free = sc_free,
};

static struct cloud_instance
view(const struct sc_inst *in)
{
	return (struct cloud_instance){.name = in->name,
	    .zone = in->zone,
	    .id = in->name,
	    .status = in->status,
	    .machine_type = "e2-highmem-4",
	    .nat_ip = in->nat_ip[0] ? in->nat_ip : NULL,
	    .internal_ip = "10.0.0.2",
	    .started_ms = in->started_ms,
	    .spot = in->spot,
	    .max_run_s = in->max_run_s};
}

static struct cloud_op
op_view(const struct sc_op *o)
{
	return (struct cloud_op){.name = o->name,
	    .zone = o->zone,
	    .type = o->type,
	    .target = o->target,
	    .done = o->done,
	    .inserted_ms = o->inserted_ms,
	    .ended_ms = o->ended_ms};
}

/* A wait not DONE yet, before its deadline, is not due: it waits on. */
static bool
due(const struct scripted *s, const struct answer *a)
{
	const struct sc_op *o;

	if (a->due > now(s))
		return false;
	if (a->kind != SC_WAIT || a->code != CLOUD_OK)
		return true;
	o = op_by(s, NULL, a->op.name);
	return o == NULL || o->done || now(s) >= a->deadline;
}

static void
answer(struct scripted *s, struct answer *a)
{
	struct cloud_error e = {.code = a->code,
	    .message = a->code == CLOUD_OK ? NULL : "scripted",
	    .zone = a->code == CLOUD_STOCKOUT ? "us-central1-a" : NULL,
	    .attempts = 1};
	struct cloud_instance *list = xcalloc(a->ninsts + 1, sizeof *list);
	struct cloud_op *pre = xcalloc(a->npres + 1, sizeof *pre);
	struct cloud_op o = op_view(&a->op);

	for (size_t i = 0; i < a->ninsts; i++)
		list[i] = view(&a->insts[i]);
	for (size_t i = 0; i < a->npres; i++)
		pre[i] = (struct cloud_op){.name = "preempted",
		    .zone = a->pres[i].zone,
		    .type = "compute.instances.preempted",
		    .target = a->pres[i].target,
		    .done = true,
		    .inserted_ms = a->pres[i].t_ms,
		    .ended_ms = a->pres[i].t_ms};
	switch (a->kind) {
	case SC_CREATE:
	case SC_DESTROY:
	case SC_POWER:
	case SC_IMAGE_CREATE:
	case SC_IMAGE_DELETE:
		a->cb.op(&e, a->no_op ? &(struct cloud_op){.name = NULL} : &o, a->arg);
		break;
	case SC_WAIT: {
		const struct sc_op *now_op = op_by(s, NULL, a->op.name);

		if (e.code == CLOUD_OK && now_op == NULL)
			e.code = CLOUD_NOT_FOUND;
		else if (e.code == CLOUD_OK && !now_op->done)
			e.code = CLOUD_DEADLINE;
		if (now_op != NULL)
			o = op_view(now_op);
		a->cb.op(&e, &o, a->arg);
		break;
	}
	case SC_GET:
		a->cb.inst(&e, a->ninsts > 0 ? &list[0] : NULL, a->arg);
		break;
	case SC_LIST:
		a->cb.list(&e, list, a->ninsts, a->arg);
		break;
	case SC_PREEMPTIONS:
		a->cb.ops(&e, pre, a->npres, a->arg);
		break;
	case SC_MACHINE:
		a->cb.mt(&e,
		    &(struct cloud_machine_type){
		        .name = "e2-highmem-4", .vcpus = 4, .memory_mb = 32768},
		    a->arg);
		break;
	case SC_ZONES: {
		const char *const zones[] = {"us-central1-a", "us-central1-b", "us-central1-c"};

		a->cb.zones(&e, zones, 3, a->arg);
		break;
	}
	case SC_GUEST:
		a->cb.value(&e, e.code == CLOUD_OK ? a->value : NULL, a->arg);
		break;
	case SC_IMAGES: {
		struct cloud_image *v = xcalloc(a->nimages + 1, sizeof *v);
		struct cloud_kv *kv = xcalloc(a->nimages + 1, sizeof *kv);

		for (size_t i = 0; i < a->nimages; i++) {
			kv[i] = (struct cloud_kv){"spillway-install", a->images[i].install};
			v[i] = (struct cloud_image){.name = a->images[i].name,
			    .family = a->images[i].family,
			    .status = "READY",
			    .disk_gb = 20,
			    .archive_bytes = 2147483648LL,
			    .labels = &kv[i],
			    .nlabels = a->images[i].install[0] != '\0'};
		}
		a->cb.images(&e, v, a->nimages, a->arg);
		free(v);
		free(kv);
		break;
	}
	default:
		break;
	}
	free(list);
	free(pre);
}

static void
unlink_answer(struct scripted *s, struct answer *a)
{
	for (struct answer **p = &s->answers; *p != NULL; p = &(*p)->next)
		if (*p == a) {
			*p = a->next;
			return;
		}
}

static void
release(struct answer *a)
{
	free(a->insts);
	free(a->pres);
	free(a->images);
	free(a);
}

static void
deliver(struct scripted *s, struct answer *a)
{
	unlink_answer(s, a);
	answer(s, a);
	release(a);
}

int
scripted_deliver(struct scripted *s)
{
	int n = 0;

	for (;;) {
		struct answer *first = NULL;

		for (struct answer *a = s->answers; a != NULL; a = a->next)
			if (due(s, a) && (first == NULL || a->due < first->due))
				first = a;
		if (first == NULL)
			return n;
		deliver(s, first);
		n++;
	}
}

int
scripted_deliver_one(struct scripted *s, enum sc_call kind)
{
	for (struct answer *a = s->answers; a != NULL; a = a->next)
		if (a->kind == kind) {
			deliver(s, a);
			return 1;
		}
	return 0;
}

int
scripted_pending(const struct scripted *s, enum sc_call kind)
{
	int n = 0;

	for (const struct answer *a = s->answers; a != NULL; a = a->next)
		n += a->kind == kind;
	return n;
}

int
scripted_calls(const struct scripted *s, enum sc_call kind)
{
	return s->calls[kind];
}

int
scripted_made(const struct scripted *s)
{
	return s->made;
}

bool
scripted_image_exists(const struct scripted *s, const char *name)
{
	return image(s, name) != NULL;
}

int
scripted_images_made(const struct scripted *s)
{
	return s->images_made;
}

void
scripted_put_image(struct scripted *s, const char *name, const char *family, const char *install)
{
	struct sc_image *im;

	s->images = xreallocarray(s->images, s->nimages + 1, sizeof *s->images);
	im = memset(&s->images[s->nimages++], 0, sizeof *im);
	snprintf(im->name, sizeof im->name, "%s", name);
	snprintf(im->family, sizeof im->family, "%s", family);
	snprintf(im->install, sizeof im->install, "%s", install != NULL ? install : "");
}

struct scripted *
scripted_new(const struct clock *clock)
{
	struct scripted *s = xcalloc(1, sizeof *s);

	s->cloud.ops = &scripted_ops;
	s->clock = clock;
	snprintf(s->insert_status, sizeof s->insert_status, "RUNNING");
	return s;
}

struct cloud *
scripted_cloud(struct scripted *s)
{
	return &s->cloud;
}

void
scripted_free(struct scripted *s)
{
	if (s == NULL)
		return;
	while (s->answers != NULL) {
		struct answer *a = s->answers;

		s->answers = a->next;
		release(a);
	}
	free(s->insts);
	free(s->ops);
	free(s->pres);
	free(s->images);
	free(s);
}

void
scripted_put(struct scripted *s, const char *name, const char *zone, const char *status,
    const char *nat_ip, int64_t started_ms)
{
	struct sc_inst *in = inst(s, name);

	if (in == NULL) {
		s->insts = xreallocarray(s->insts, s->ninsts + 1, sizeof *s->insts);
		in = memset(&s->insts[s->ninsts++], 0, sizeof *in);
	}
	snprintf(in->name, sizeof in->name, "%s", name);
	snprintf(in->zone, sizeof in->zone, "%s", zone);
	snprintf(in->status, sizeof in->status, "%s", status);
	snprintf(in->nat_ip, sizeof in->nat_ip, "%s", nat_ip != NULL ? nat_ip : "");
	in->started_ms = started_ms;
	in->max_run_s = 3 * 3600;
	in->spot = true;
}

void
scripted_set_status(struct scripted *s, const char *name, const char *status)
{
	struct sc_inst *in = inst(s, name);

	if (in != NULL)
		snprintf(in->status, sizeof in->status, "%s", status);
}

void
scripted_remove(struct scripted *s, const char *name)
{
	drop(s, name);
}

void
scripted_set_pin(struct scripted *s, const char *name, const char *pin)
{
	struct sc_inst *in = inst(s, name);

	if (in != NULL)
		snprintf(in->pin, sizeof in->pin, "%s", pin);
}

void
scripted_preempt(struct scripted *s, const char *name, int64_t t_ms)
{
	struct sc_inst *in = inst(s, name);
	struct sc_pre *p;

	s->pres = xreallocarray(s->pres, s->npres + 1, sizeof *s->pres);
	p = memset(&s->pres[s->npres++], 0, sizeof *p);
	snprintf(p->target, sizeof p->target, "%s", name);
	snprintf(p->zone, sizeof p->zone, "%s", in != NULL ? in->zone : "us-central1-a");
	p->t_ms = t_ms;
	drop(s, name);
}

bool
scripted_exists(const struct scripted *s, const char *name)
{
	return inst(s, name) != NULL;
}

const char *
scripted_status(const struct scripted *s, const char *name)
{
	const struct sc_inst *in = inst(s, name);

	return in != NULL ? in->status : NULL;
}

void
scripted_insert_status(struct scripted *s, const char *status)
{
	snprintf(s->insert_status, sizeof s->insert_status, "%s", status);
}

void
scripted_insert_ip(struct scripted *s, const char *nat_ip, const char *pin)
{
	snprintf(s->insert_ip, sizeof s->insert_ip, "%s", nat_ip);
	snprintf(s->insert_pin, sizeof s->insert_pin, "%s", pin != NULL ? pin : "");
}

void
scripted_ops_pending(struct scripted *s, bool pending)
{
	s->ops_pending = pending;
}

void
scripted_finish(struct scripted *s, const char *name, int64_t t_ms)
{
	for (size_t i = 0; i < s->nops; i++) {
		struct sc_op *o = &s->ops[i];

		if (strcmp(o->target, name) != 0 || o->done)
			continue;
		o->done = true;
		o->ended_ms = t_ms;
		if (strcmp(o->type, "delete") == 0)
			drop(s, name);
		else if (inst(s, name) != NULL) {
			scripted_set_status(s, name, powered(o->type));
			if (strcmp(powered(o->type), "RUNNING") == 0)
				inst(s, name)->started_ms = t_ms;
		}
	}
}

void
scripted_forget_done(struct scripted *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nops; i++)
		if (!s->ops[i].done)
			s->ops[n++] = s->ops[i];
	s->nops = n;
}

void
scripted_fail(struct scripted *s, enum sc_call kind, enum cloud_errc code, int n)
{
	s->fail[kind] = n;
	s->fail_code[kind] = code;
}

void
scripted_lose(struct scripted *s, enum sc_call kind, int n)
{
	s->lose[kind] = n;
}

void
scripted_latency(struct scripted *s, enum sc_call kind, int64_t ms)
{
	s->latency[kind] = ms;
}
