/*
 * instances.insert: the body checked as Google checks it (names, disks,
 * labels, metadata, scheduling, the machine type, quotas and capacity), the
 * instance built as Google answers it, and its operation, idempotent by
 * requestId.
 */
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/b64.h"
#include "util/jschema.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define METADATA_MAX (512 * 1024)

/* --- instances.insert --- */

/* The machine type a reference names in this zone; NULL when it names none. */
static char *
machine_type_name(struct emulator *emu, const char *ref, const char *zone)
{
	char *path = ref_path(emu, ref), *want = xasprintf("zones/%s/machineTypes/", zone);
	const char *t = path != NULL ? ref_in_project(emu, path, want) : NULL;
	char *name = t != NULL && *t != '\0' && strchr(t, '/') == NULL ? xstrdup(t) : NULL;

	free(path);
	free(want);
	return name;
}

static bool
label_ok(const char *s, bool key)
{
	size_t n = strlen(s);

	if (n > 63 || (key && (n == 0 || s[0] < 'a' || s[0] > 'z')))
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		        *s == '-' || (unsigned char)*s >= 0x80))
			return false;
	return true;
}

static bool
metadata_key_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		        (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

struct spec {
	char *machine;
	int vcpus;
	bool spot;
	bool delete_on_stop;
	int64_t max_run_ms;
	int64_t stop_at_ms;
};

/* A disk's source image: a reference in one of Google's forms, to an image that exists. */
static int
check_image(struct rq *rq, const char *ref, size_t i)
{
	char *path = ref_path(rq->emu, ref), field[96];
	json_t *image = path != NULL ? image_resolve(rq->emu, path) : NULL;
	int error = 0;

	snprintf(field, sizeof field, "resource.disks[%zu].initializeParams.sourceImage", i);
	if (path == NULL) {
		compute_bad_field(rq, field, ref, "The URL is malformed.");
		error = -EINVAL;
	} else if (image == NULL) {
		emu_error(rq, 404, "notFound", "The resource '%s' was not found", path);
		error = -ENOENT;
	}
	json_decref(image);
	free(path);
	return error;
}

bool
compute_network_ok(struct rq *rq, const char *field, const char *ref)
{
	char *path = ref_path(rq->emu, ref);
	const char *name = path != NULL ? ref_in_project(rq->emu, path, "global/networks/") : NULL;
	bool ok = name != NULL && strcmp(name, "default") == 0;

	if (name == NULL)
		compute_bad_field(rq, field, ref, "The URL is malformed.");
	else if (!ok)
		emu_error(rq, 404, "notFound", "The resource '%s' was not found", path);
	free(path);
	return ok;
}

static int
check_disks(struct rq *rq, json_t *body)
{
	json_t *disks = json_object_get(body, "disks"), *d;
	size_t i, boots = 0;

	if (json_array_size(disks) == 0) {
		compute_bad_field(rq, "resource.disks", "", "At least one disk must be specified.");
		return -EINVAL;
	}
	json_array_foreach (disks, i, d) {
		json_t *ip = json_object_get(d, "initializeParams");
		char field[96];
		int64_t gb;

		boots += json_is_true(json_object_get(d, "boot"));
		if (ip == NULL && json_object_get(d, "source") == NULL) {
			snprintf(field, sizeof field, "resource.disks[%zu]", i);
			compute_bad_field(
			    rq, field, "", "A disk must have either a source or initializeParams.");
			return -EINVAL;
		}
		if (ip != NULL && jx_str(ip, "sourceImage") == NULL &&
		    jx_str(ip, "sourceSnapshot") == NULL &&
		    json_is_true(json_object_get(d, "boot"))) {
			snprintf(field, sizeof field,
			    "resource.disks[%zu].initializeParams.sourceImage", i);
			compute_bad_field(rq, field, "", "A boot disk needs a source image.");
			return -EINVAL;
		}
		if (ip != NULL && jx_str(ip, "sourceImage") != NULL &&
		    check_image(rq, jx_str(ip, "sourceImage"), i) != 0)
			return -EINVAL;
		if (json_object_get(ip, "diskSizeGb") != NULL &&
		    (jx_int64(json_object_get(ip, "diskSizeGb"), &gb) != 0 || gb < 10 ||
		        gb > 65536)) {
			snprintf(field, sizeof field,
			    "resource.disks[%zu].initializeParams.diskSizeGb", i);
			compute_bad_field(rq, field, or_default(jx_str(ip, "diskSizeGb"), "?"),
			    "Requested disk size cannot be smaller than the image size (10 GB) or "
			    "larger than 65536 GB.");
			return -EINVAL;
		}
	}
	if (boots != 1) {
		compute_bad_field(
		    rq, "resource.disks", "", "Exactly one boot disk must be specified.");
		return -EINVAL;
	}
	return 0;
}

int
compute_check_labels_metadata(struct rq *rq, json_t *body)
{
	json_t *labels = json_object_get(body, "labels"), *items, *it, *v;
	const char *k;
	size_t i, total = 0;

	if (json_object_size(labels) > 64) {
		compute_bad_field(rq, "resource.labels", "", "At most 64 labels are allowed.");
		return -EINVAL;
	}
	json_object_foreach (labels, k, v) {
		if (!label_ok(k, true)) {
			compute_bad_field(rq, "resource.labels", "",
			    "Label key '%s' violates format constraints. The key must start with a "
			    "lowercase character, can only contain lowercase letters, numeric "
			    "characters, underscores and dashes. The key can be at most 63 characters "
			    "long. International characters are allowed.",
			    k);
			return -EINVAL;
		}
		if (!json_is_string(v) || !label_ok(json_string_value(v), false)) {
			compute_bad_field(rq, "resource.labels", "",
			    "Label value '%s' violates format constraints. The value can only contain "
			    "lowercase letters, numeric characters, underscores and dashes. The value "
			    "can be at most 63 characters long. International characters are allowed.",
			    json_is_string(v) ? json_string_value(v) : "");
			return -EINVAL;
		}
	}
	items = jx_get(body, "metadata.items");
	json_array_foreach (items, i, it) {
		const char *key = jx_str(it, "key"), *val = jx_str(it, "value");
		char field[64];

		snprintf(field, sizeof field, "resource.metadata.items[%zu].key", i);
		if (key == NULL || !metadata_key_ok(key)) {
			compute_bad_field(rq, field, key ? key : "",
			    "Must be a match of regex '[a-zA-Z0-9-_]{1,128}'");
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(jx_str(json_array_get(items, j), "key"), key) == 0) {
				compute_bad_field(rq, "resource.metadata", "",
				    "Duplicate metadata key '%s'.", key);
				return -EINVAL;
			}
		}
		total += strlen(key) + (val != NULL ? strlen(val) : 0);
	}
	if (total > METADATA_MAX) {
		compute_bad_field(rq, "resource.metadata", "",
		    "Metadata total size (%zu bytes) exceeds the limit of 524288 bytes.", total);
		return -EINVAL;
	}
	return 0;
}

static int
check_scheduling(struct rq *rq, json_t *body, struct spec *sp)
{
	json_t *s = json_object_get(body, "scheduling");
	const char *model = jx_str(s, "provisioningModel"), *action, *term;
	json_t *mrd = json_object_get(s, "maxRunDuration");
	int64_t now = emu_now_ms(rq->emu);

	sp->spot = (model != NULL && strcmp(model, "SPOT") == 0) ||
	    json_is_true(json_object_get(s, "preemptible"));
	if (sp->spot && json_is_true(json_object_get(s, "automaticRestart"))) {
		compute_bad_field(rq, "resource.scheduling.automaticRestart", "true",
		    "Preemptible instances cannot be automatically restarted.");
		return -EINVAL;
	}
	if (sp->spot && jx_str(s, "onHostMaintenance") != NULL &&
	    strcmp(jx_str(s, "onHostMaintenance"), "TERMINATE") != 0) {
		compute_bad_field(rq, "resource.scheduling.onHostMaintenance",
		    jx_str(s, "onHostMaintenance"),
		    "Scheduling must have preemptible be false when OnHostMaintenance isn't "
		    "TERMINATE.");
		return -EINVAL;
	}
	if (mrd != NULL) {
		int64_t secs = 0;

		if (jx_int64(json_object_get(mrd, "seconds"), &secs) != 0 || secs < 30 ||
		    secs > 120 * 86400) {
			compute_bad_field(rq, "resource.scheduling.maxRunDuration.seconds",
			    or_default(jx_str(mrd, "seconds"), "?"),
			    "Must be between 30 seconds and 120 days.");
			return -EINVAL;
		}
		sp->max_run_ms = secs * 1000;
	}
	if ((term = jx_str(s, "terminationTime")) != NULL) {
		if (time_parse_rfc3339(term, &sp->stop_at_ms) != 0 || sp->stop_at_ms <= now) {
			compute_bad_field(rq, "resource.scheduling.terminationTime", term,
			    "Must be an RFC 3339 time in the future.");
			return -EINVAL;
		}
	}
	action = jx_str(s, "instanceTerminationAction");
	if ((sp->max_run_ms > 0 || sp->stop_at_ms > 0) &&
	    (action == NULL || strcmp(action, "INSTANCE_TERMINATION_ACTION_UNSPECIFIED") == 0)) {
		compute_bad_field(rq, "resource.scheduling.instanceTerminationAction", "",
		    "Instance termination action must be specified when maxRunDuration or "
		    "terminationTime is set.");
		return -EINVAL;
	}
	sp->delete_on_stop = action != NULL && strcmp(action, "DELETE") == 0;
	return 0;
}

static int
check_instance(struct rq *rq, struct zone *z, json_t *body, struct spec *sp)
{
	struct emulator *emu = rq->emu;
	const char *name = jx_str(body, "name"), *mt = jx_str(body, "machineType");
	int mb;
	bool shared;
	json_t *nics = json_object_get(body, "networkInterfaces"), *nic, *sas;
	size_t i;

	if (!compute_name_ok(rq, "resource.name", name))
		return -EINVAL;
	if (mt == NULL) {
		compute_bad_field(
		    rq, "resource.machineType", "", "Machine type must be specified.");
		return -EINVAL;
	}
	if ((sp->machine = machine_type_name(emu, mt, z->name)) == NULL) {
		compute_bad_field(rq, "resource.machineType", mt,
		    "The URL is malformed: expected zones/%s/machineTypes/TYPE.", z->name);
		return -EINVAL;
	}
	if (machine_lookup(sp->machine, &sp->vcpus, &mb, &shared) != 0) {
		compute_bad_field(rq, "resource.machineType", mt,
		    "Machine type with name '%s' does not exist in zone '%s'.", sp->machine,
		    z->name);
		return -EINVAL;
	}
	if (check_disks(rq, body) != 0 || disks_check(rq, z, body) != 0 ||
	    compute_check_labels_metadata(rq, body) != 0 || check_scheduling(rq, body, sp) != 0)
		return -EINVAL;
	if (json_array_size(nics) == 0) {
		compute_bad_field(rq, "resource.networkInterfaces", "",
		    "At least one network interface must be specified.");
		return -EINVAL;
	}
	json_array_foreach (nics, i, nic) {
		json_t *ac = json_object_get(nic, "accessConfigs"), *a;
		const char *net = jx_str(nic, "network"), *sub = jx_str(nic, "subnetwork");
		char field[64];
		size_t j;

		snprintf(field, sizeof field, "resource.networkInterfaces[%zu].network", i);
		if (net != NULL && !compute_network_ok(rq, field, net))
			return -EINVAL;
		if (sub != NULL && !ref_valid(emu, sub)) {
			compute_bad_field(rq, "resource.networkInterfaces[].subnetwork", sub,
			    "The URL is malformed.");
			return -EINVAL;
		}

		json_array_foreach (ac, j, a) {
			const char *type = jx_str(a, "type");

			if (type != NULL && strcmp(type, "ONE_TO_ONE_NAT") != 0 &&
			    strcmp(type, "DIRECT_IPV6") != 0) {
				compute_bad_field(rq,
				    "resource.networkInterfaces[0].accessConfigs[0].type", type,
				    "Must be ONE_TO_ONE_NAT.");
				return -EINVAL;
			}
		}
	}
	sas = json_object_get(body, "serviceAccounts");
	if (json_array_size(sas) > 1) {
		compute_bad_field(rq, "resource.serviceAccounts", "",
		    "At most one service account may be "
		    "attached.");
		return -EINVAL;
	}
	return 0;
}

/* The Instance as Google returns it, from the Instance as the client sent it. */
/* The disks as Google answers them: a source, a device name, defaults filled. */
static void
build_disks(json_t *res, const struct inst *inst, const char *zl)
{
	json_t *disks, *d;
	char *link;
	size_t i;

	disks = json_object_get(res, "disks");
	json_array_foreach (disks, i, d) {
		json_t *ip = json_object_get(d, "initializeParams");
		const char *dev = jx_str(d, "deviceName");
		char *devname = dev != NULL ? xstrdup(dev)
		    : i == 0                ? xstrdup(inst->name)
		                            : xasprintf("persistent-disk-%zu", i);
		char buf[96];
		int64_t gb = 10;

		if (ip != NULL)
			jx_int64(json_object_get(ip, "diskSizeGb"), &gb);
		/* The disk disks_create makes for it: the one name both use. */
		if (json_object_get(d, "source") == NULL) {
			link = xasprintf(
			    "%s/disks/%s", zl, disk_name(d, inst->name, i, buf, sizeof buf));
			json_object_set_new(d, "source", json_string(link));
			free(link);
		}
		json_object_set_new(d, "diskSizeGb", jx_int64_string(gb));
		json_object_del(d, "initializeParams");
		json_object_set_new(d, "kind", json_string("compute#attachedDisk"));
		json_object_set_new(d, "deviceName", json_string(devname));
		json_object_set_new(d, "index", json_integer((json_int_t)i));
		if (json_object_get(d, "type") == NULL)
			json_object_set_new(d, "type", json_string("PERSISTENT"));
		if (json_object_get(d, "mode") == NULL)
			json_object_set_new(d, "mode", json_string("READ_WRITE"));
		if (json_object_get(d, "interface") == NULL)
			json_object_set_new(d, "interface", json_string("SCSI"));
		if (json_object_get(d, "autoDelete") == NULL)
			json_object_set_new(d, "autoDelete", json_false());
		if (json_object_get(d, "boot") == NULL)
			json_object_set_new(d, "boot", json_false());
		json_object_set_new(d, "architecture", json_string("X86_64"));
		free(devname);
	}
}

/* Each network interface: its links, an internal address, its access configs' defaults. */
static void
build_nics(json_t *res, struct emulator *emu, const struct zone *z)
{
	json_t *nics, *nic;
	char *link;
	size_t i;

	nics = json_object_get(res, "networkInterfaces");
	json_array_foreach (nics, i, nic) {
		json_t *acs = json_object_get(nic, "accessConfigs"), *ac;
		const char *net = jx_str(nic, "network"), *sub = jx_str(nic, "subnetwork");
		unsigned n = emu->next_internal++;
		char ip[16], name[24];
		size_t j;

		link = ref_link(emu, net != NULL ? net : "global/networks/default");
		json_object_set_new(nic, "network", json_string(link));
		free(link);
		if (sub != NULL)
			link = ref_link(emu, sub);
		else
			link = xasprintf(GCE_LINK "projects/%s/regions/%s/subnetworks/default",
			    emu->project, z->region);
		json_object_set_new(nic, "subnetwork", json_string(link));
		free(link);
		snprintf(ip, sizeof ip, "10.128.%u.%u", (n >> 8) & 255, n & 255);
		snprintf(name, sizeof name, "nic%zu", i);
		json_object_set_new(nic, "kind", json_string("compute#networkInterface"));
		json_object_set_new(nic, "name", json_string(name));
		json_object_set_new(nic, "networkIP", json_string(ip));
		json_object_set_new(nic, "stackType", json_string("IPV4_ONLY"));
		compute_fingerprint(nic, "fingerprint", false);
		json_array_foreach (acs, j, ac) {
			json_object_set_new(ac, "kind", json_string("compute#accessConfig"));
			if (json_object_get(ac, "type") == NULL)
				json_object_set_new(ac, "type", json_string("ONE_TO_ONE_NAT"));
			if (json_object_get(ac, "name") == NULL)
				json_object_set_new(ac, "name", json_string("External NAT"));
			if (json_object_get(ac, "networkTier") == NULL)
				json_object_set_new(ac, "networkTier", json_string("PREMIUM"));
		}
	}
}

/* Scheduling as Google fills it in for Spot and standard VMs. */
static void
build_scheduling(json_t *res, const struct spec *sp)
{
	json_t *sched;

	sched = json_object_get(res, "scheduling");
	if (sched == NULL) {
		sched = json_object();
		json_object_set_new(res, "scheduling", sched);
	}
	if (json_object_get(sched, "provisioningModel") == NULL)
		json_object_set_new(
		    sched, "provisioningModel", json_string(sp->spot ? "SPOT" : "STANDARD"));
	if (json_object_get(sched, "onHostMaintenance") == NULL)
		json_object_set_new(
		    sched, "onHostMaintenance", json_string(sp->spot ? "TERMINATE" : "MIGRATE"));
	if (json_object_get(sched, "automaticRestart") == NULL)
		json_object_set_new(sched, "automaticRestart", json_boolean(!sp->spot));
	if (json_object_get(sched, "preemptible") == NULL)
		json_object_set_new(sched, "preemptible", json_false());
	if (sp->spot && json_object_get(sched, "instanceTerminationAction") == NULL)
		json_object_set_new(sched, "instanceTerminationAction", json_string("STOP"));
}

/* "default" service accounts as the project's compute account. */
static void
build_accounts(json_t *res, struct emulator *emu)
{
	json_t *sas, *sa;
	char *link;
	size_t i;

	sas = json_object_get(res, "serviceAccounts");
	json_array_foreach (sas, i, sa) {
		const char *email = jx_str(sa, "email");

		if (email == NULL || strcmp(email, "default") == 0) {
			link = xasprintf(
			    "%s-compute@developer.gserviceaccount.com", emu->project_number);
			json_object_set_new(sa, "email", json_string(link));
			free(link);
		}
	}
}

static json_t *
build_instance(struct inst *inst, json_t *body, const struct spec *sp, const char *id)
{
	struct emulator *emu = inst->emu;
	struct zone *z = inst->zone;
	json_t *res = json_deep_copy(body), *md, *tags;
	char *zl = compute_zone_link(emu, z), *link;

	json_object_set_new(res, "kind", json_string("compute#instance"));
	json_object_set_new(res, "id", json_string(id));
	json_object_set_new(res, "creationTimestamp", compute_now_json(emu));
	json_object_set_new(res, "zone", json_string(zl));
	link = xasprintf("%s/machineTypes/%s", zl, sp->machine);
	json_object_set_new(res, "machineType", json_string(link));
	free(link);
	link = xasprintf("%s/instances/%s", zl, inst->name);
	json_object_set_new(res, "selfLink", json_string(link));
	free(link);
	json_object_set_new(res, "status", json_string("PROVISIONING"));
	json_object_set_new(res, "cpuPlatform",
	    json_string(str_prefix(sp->machine, "n2d") ? "AMD Rome"
	            : str_prefix(sp->machine, "n2")    ? "Intel Cascade Lake"
	                                               : "Intel Broadwell"));
	if (json_object_get(res, "canIpForward") == NULL)
		json_object_set_new(res, "canIpForward", json_false());
	if (json_object_get(res, "deletionProtection") == NULL)
		json_object_set_new(res, "deletionProtection", json_false());
	json_object_set_new(res, "startRestricted", json_false());
	compute_fingerprint(res, "fingerprint", false);
	compute_fingerprint(
	    res, "labelFingerprint", json_object_size(json_object_get(res, "labels")) == 0);

	build_disks(res, inst, zl);
	build_nics(res, emu, z);
	build_scheduling(res, sp);
	build_accounts(res, emu);
	md = json_object_get(res, "metadata");
	if (md == NULL) {
		md = json_object();
		json_object_set_new(res, "metadata", md);
	}
	json_object_set_new(md, "kind", json_string("compute#metadata"));
	compute_fingerprint(md, "fingerprint", json_array_size(json_object_get(md, "items")) == 0);
	/* Google gives every instance its tags' fingerprint, tags or none. */
	tags = json_object_get(res, "tags");
	if (tags == NULL) {
		tags = json_object();
		json_object_set_new(res, "tags", tags);
	}
	compute_fingerprint(
	    tags, "fingerprint", json_array_size(json_object_get(tags, "items")) == 0);
	free(zl);
	return res;
}

int64_t
compute_region_cpus(struct emulator *emu, const char *region)
{
	int64_t used = 0;

	for (size_t i = 0; i < emu->nzones; i++) {
		struct zone *z = &emu->zones[i];

		if (strcmp(z->region, region) != 0)
			continue;
		for (size_t j = 0; j < z->ninsts; j++)
			used += compute_cpus_held(z->insts[j]);
	}
	return used;
}

/*
 * A mutation's requestId: none, or a UUID but the zero one. A repeated one
 * answers with the operation it first made. False when that answered the
 * request (400, or the first operation); *out the id, or NULL.
 */
bool
compute_request_id(struct rq *rq, const char **out)
{
	const char *id = rq_query(rq, "requestId");
	struct op *op;

	*out = NULL;
	if (id == NULL || *id == '\0')
		return true;
	if (!uuid_valid(id)) {
		compute_bad_field(rq, "requestId", id,
		    "The request ID must be a valid UUID with the exception that zero UUID is not "
		    "supported (00000000-0000-0000-0000-000000000000).");
		return false;
	}
	if ((op = compute_find_op(rq->emu, NULL, NULL, id)) != NULL) {
		emu_reply_json(rq, 200, compute_op_json(op));
		return false;
	}
	*out = id;
	return true;
}

/* A request's body as the schema's type says; NULL when it answered 400. */
json_t *
compute_read_body(struct rq *rq, const char *schema)
{
	const char *raw;
	size_t len;
	json_t *body = NULL;
	char *cause = NULL;

	raw = rq_body(rq, &len, NULL);
	if (jx_parse(raw, len, &body, &cause) != 0 ||
	    jschema_validate(compute_schemas(), schema, body, "resource", 0, &cause) != 0) {
		emu_error_status(rq, 400, "invalid", "INVALID_ARGUMENT",
		    "Invalid JSON payload received. %s", cause);
		free(cause);
		json_decref(body);
		return NULL;
	}
	return body;
}

bool
compute_name_ok(struct rq *rq, const char *field, const char *name)
{
	if (name != NULL && compute_valid_name(name))
		return true;
	compute_bad_field(rq, field, or_default(name, ""),
	    "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'");
	return false;
}

void
compute_inst_insert(struct call *c)
{
	struct rq *rq = c->rq;
	struct zone *z = c->zone;
	struct emulator *emu = rq->emu;
	struct spec sp = {0};
	struct inst *inst;
	struct op *op;
	const char *request_id;
	json_t *body;
	char id[24];
	size_t at;
	bool found;

	if (!compute_request_id(rq, &request_id) ||
	    (body = compute_read_body(rq, "Instance")) == NULL)
		return;
	if (check_instance(rq, z, body, &sp) != 0)
		goto out;
	compute_inst_index(z, jx_str(body, "name"), &found);
	if (found) {
		emu_error(rq, 409, "alreadyExists",
		    "The resource 'projects/%s/zones/%s/instances/%s' already exists", emu->project,
		    z->name, jx_str(body, "name"));
		goto out;
	}

	inst = xcalloc(1, sizeof *inst);
	inst->emu = emu;
	inst->zone = z;
	inst->name = xstrdup(jx_str(body, "name"));
	inst->serial = (struct buf)BUF_INIT(SIZE_MAX);
	inst->vcpus = sp.vcpus;
	inst->spot = sp.spot;
	inst->delete_on_stop = sp.delete_on_stop;
	inst->max_run_ms = sp.max_run_ms;
	inst->stop_at_ms = sp.stop_at_ms;
	snprintf(id, sizeof id, "%" PRIu64, emu_new_id(emu));
	inst->res = build_instance(inst, body, &sp, id);
	uv_timer_init(emu->loop, &inst->timer);
	inst->timer.data = inst;

	at = compute_inst_index(z, inst->name, &found);
	if (z->ninsts == z->capinsts) {
		z->capinsts = z->capinsts ? z->capinsts * 2 : 64;
		z->insts = xreallocarray(z->insts, z->capinsts, sizeof *z->insts);
	}
	memmove(&z->insts[at + 1], &z->insts[at], (z->ninsts - at) * sizeof *z->insts);
	z->insts[at] = inst;
	z->ninsts++;

	disks_create(inst, body);
	op = compute_op_new(z, "insert", "instances", inst->name, id, request_id, rq_user(rq));
	compute_op_start(op);
	inst->op = op;
	compute_boot(inst);
	emu_reply_json(rq, 200, compute_op_json(op));
out:
	free(sp.machine);
	json_decref(body);
}
