/*
 * Persistent disks. An instance's disks exist as resources of their zone
 * from its insert: made from their initializeParams (a boot disk from its
 * image), or attached by `source`. When the instance goes, the disks it
 * would auto-delete go with it and the others stay, detached, as on Google.
 * disks.get, disks.delete (refused while a VM uses the disk), and the
 * listings (lists.c) serve them. A zone keeps its disks by name
 * (zone->disks); a disk is its JSON. What a disk's files hold is known
 * only as the install a guest made on it (holds_get).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

const char *
holds_get(struct emulator *emu, const char *self)
{
	return self != NULL ? json_string_value(json_object_get(emu->holds, self)) : NULL;
}

void
holds_set(struct emulator *emu, const char *self, const char *install)
{
	if (self == NULL)
		return;
	if (install != NULL)
		json_object_set_new(emu->holds, self, json_string(install));
	else
		json_object_del(emu->holds, self);
}

/* The disk an attached disk names (its source), or NULL. */
static json_t *
source_disk(struct emulator *emu, struct zone *z, const char *source)
{
	char *path = ref_path(emu, source), *want = xasprintf("zones/%s/disks/", z->name);
	const char *name = path != NULL ? ref_in_project(emu, path, want) : NULL;
	json_t *d = name != NULL ? json_object_get(z->disks, name) : NULL;

	free(path);
	free(want);
	return d;
}

const char *
disk_name(json_t *attached, const char *inst, size_t i, char *buf, size_t size)
{
	const char *name = jx_str(json_object_get(attached, "initializeParams"), "diskName");

	if (name == NULL)
		name = jx_str(attached, "deviceName");
	if (name == NULL && i == 0)
		name = inst;
	if (name == NULL) {
		snprintf(buf, size, "%s-%zu", inst, i);
		name = buf;
	}
	return name;
}

int
disks_check(struct rq *rq, struct zone *z, json_t *body)
{
	json_t *disks = json_object_get(body, "disks"), *d;
	const char *inst = jx_str(body, "name");
	size_t i;

	json_array_foreach (disks, i, d) {
		const char *source = jx_str(d, "source"), *type;
		char buf[96];

		if (source != NULL) {
			json_t *disk = source_disk(rq->emu, z, source);

			if (disk == NULL) {
				emu_error(
				    rq, 404, "notFound", "The resource '%s' was not found", source);
				return -ENOENT;
			}
			/* A disk in use may be attached again only read-only. */
			if (json_array_size(json_object_get(disk, "users")) > 0 &&
			    strcmp(or_default(jx_str(d, "mode"), "READ_WRITE"), "READ_ONLY") != 0) {
				emu_error(rq, 400, "resourceInUseByAnotherResource",
				    "The disk resource '%s' is already being used by '%s'", source,
				    json_string_value(
				        json_array_get(json_object_get(disk, "users"), 0)));
				return -EBUSY;
			}
			continue;
		}
		type = jx_str(json_object_get(d, "initializeParams"), "diskType");
		if (type != NULL && !ref_valid(rq->emu, type)) {
			compute_bad_field(rq, "resource.disks[].initializeParams.diskType", type,
			    "The URL is malformed.");
			return -EINVAL;
		}
		if (json_object_get(z->disks, disk_name(d, inst, i, buf, sizeof buf)) != NULL) {
			emu_error(rq, 409, "alreadyExists",
			    "The resource 'projects/%s/zones/%s/disks/%s' already exists",
			    rq->emu->project, z->name, disk_name(d, inst, i, buf, sizeof buf));
			return -EEXIST;
		}
	}
	return 0;
}

void
disks_create(struct inst *inst, json_t *body)
{
	struct emulator *emu = inst->emu;
	struct zone *z = inst->zone;
	json_t *disks = json_object_get(body, "disks"), *d;
	char *user = xasprintf(
	    GCE_LINK "projects/%s/zones/%s/instances/%s", emu->project, z->name, inst->name);
	size_t i;

	json_array_foreach (disks, i, d) {
		json_t *ip = json_object_get(d, "initializeParams"), *disk, *image = NULL;
		const char *source = jx_str(d, "source"), *type;
		char buf[96], *self, *path, *type_link, id[24];
		int64_t gb = 10;

		if (source != NULL) {
			if ((disk = source_disk(emu, z, source)) != NULL)
				json_array_append_new(
				    json_object_get(disk, "users"), json_string(user));
			continue;
		}
		jx_int64(json_object_get(ip, "diskSizeGb"), &gb);
		if ((path = jx_str(ip, "sourceImage") != NULL
		            ? ref_path(emu, jx_str(ip, "sourceImage"))
		            : NULL) != NULL)
			image = image_resolve(emu, path);
		free(path);
		type = jx_str(ip, "diskType");
		type_link = type != NULL ? ref_link(emu, type)
		                         : xasprintf(GCE_LINK "projects/%s/zones/%s/diskTypes/"
		                                              "pd-standard",
		                               emu->project, z->name);
		self = xasprintf(GCE_LINK "projects/%s/zones/%s/disks/%s", emu->project, z->name,
		    disk_name(d, inst->name, i, buf, sizeof buf));
		snprintf(id, sizeof id, "%" PRIu64, emu_new_id(emu));
		disk = jx_pack(
		    "{s:s, s:s, s:o, s:s, s:o, s:s, s:s, s:s, s:s, s:[s], s:s, s:s, s:o}", "kind",
		    "compute#disk", "id", id, "creationTimestamp", compute_now_json(emu), "name",
		    disk_name(d, inst->name, i, buf, sizeof buf), "sizeGb", jx_int64_string(gb),
		    "zone", jx_str(inst->res, "zone"), "status", "READY", "selfLink", self, "type",
		    type_link != NULL ? type_link : "", "users", user, "labelFingerprint",
		    EMPTY_FINGERPRINT, "physicalBlockSizeBytes", "4096", "lastAttachTimestamp",
		    compute_now_json(emu));
		if (image != NULL) {
			json_object_set(disk, "sourceImage", json_object_get(image, "selfLink"));
			json_object_set(disk, "sourceImageId", json_object_get(image, "id"));
			json_object_set(disk, "licenses", json_object_get(image, "licenses"));
			json_object_set(
			    disk, "architecture", json_object_get(image, "architecture"));
			holds_set(emu, self, holds_get(emu, jx_str(image, "selfLink")));
		}
		json_object_set_new(z->disks, jx_str(disk, "name"), disk);
		json_decref(image);
		free(type_link);
		free(self);
	}
	free(user);
}

void
disks_release(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	struct zone *z = inst->zone;
	json_t *disks = json_object_get(inst->res, "disks"), *d;
	char *user = xasprintf(
	    GCE_LINK "projects/%s/zones/%s/instances/%s", emu->project, z->name, inst->name);
	size_t i;

	json_array_foreach (disks, i, d) {
		json_t *disk = source_disk(emu, z, jx_str(d, "source")), *users, *u;
		size_t j;

		if (disk == NULL)
			continue;
		if (json_is_true(json_object_get(d, "autoDelete"))) {
			holds_set(emu, jx_str(disk, "selfLink"), NULL);
			json_object_del(z->disks, jx_str(disk, "name"));
			continue;
		}
		users = json_object_get(disk, "users");
		json_array_foreach (users, j, u) {
			if (strcmp(json_string_value(u), user) == 0) {
				json_array_remove(users, j);
				break;
			}
		}
		if (json_array_size(users) == 0)
			json_object_del(disk, "users"); /* Google leaves out what is empty */
		json_object_set_new(disk, "lastDetachTimestamp", compute_now_json(emu));
	}
	free(user);
}

void
disk_get(struct call *c)
{
	json_t *d = json_object_get(c->zone->disks, c->name);

	if (d == NULL)
		compute_not_found(c->rq, "disks", c->zone->name, c->name);
	else
		emu_reply_json(c->rq, 200, json_incref(d));
}

void
disk_delete(struct call *c)
{
	const char *request_id;
	json_t *d = json_object_get(c->zone->disks, c->name);
	struct op *op;

	if (!compute_request_id(c->rq, &request_id))
		return;
	if (d == NULL) {
		compute_not_found(c->rq, "disks", c->zone->name, c->name);
		return;
	}
	if (json_array_size(json_object_get(d, "users")) > 0) {
		emu_error(c->rq, 400, "resourceInUseByAnotherResource",
		    "The disk resource 'projects/%s/zones/%s/disks/%s' is already being used by "
		    "'%s'",
		    c->rq->emu->project, c->zone->name, c->name,
		    json_string_value(json_array_get(json_object_get(d, "users"), 0)));
		return;
	}
	op = compute_op_new(
	    c->zone, "delete", "disks", c->name, jx_str(d, "id"), request_id, rq_user(c->rq));
	holds_set(c->rq->emu, jx_str(d, "selfLink"), NULL);
	json_object_del(c->zone->disks, c->name);
	compute_op_done(op, NULL, 0, NULL);
	emu_reply_json(c->rq, 200, compute_op_json(op));
}
