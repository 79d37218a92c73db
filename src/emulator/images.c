/*
 * Images: the public images a VM boots from (debian-cloud's families, and
 * Ubuntu's LTS), and the project's own, made from a disk by images.insert
 * (what `spillway image bake` makes), holding what its disk held
 * (holds_get). images.get, getFromFamily, list,
 * insert and delete, and imageFamilyViews.get answer them, and an instance's
 * boot disk names them (an image, a family, or a family view in any zone,
 * "-"). A public family has one image; a family of the project's own is its
 * newest image.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emulator/filter.h"
#include "emulator/internal.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

static const struct image {
	const char *project, *family, *name, *description;
	const char *id, *license;
} images[] = {
    {"debian-cloud", "debian-11", "debian-11-bullseye-v20261111",
        "Debian, Debian GNU/Linux, 11 (bullseye), amd64 built on 20261111", "4713418398520139219",
        "debian-11-bullseye"},
    {"debian-cloud", "debian-12", "debian-12-bookworm-v20261111",
        "Debian, Debian GNU/Linux, 12 (bookworm), amd64 built on 20261111", "5329467401285946626",
        "debian-12-bookworm"},
    {"debian-cloud", "debian-13", "debian-13-trixie-v20261111",
        "Debian, Debian GNU/Linux, 13 (trixie), amd64 built on 20261111", "1858012316270385419",
        "debian-13-trixie"},
    {"ubuntu-os-cloud", "ubuntu-2404-lts-amd64", "ubuntu-2404-noble-amd64-v20261107",
        "Canonical, Ubuntu, 24.04 LTS, amd64 noble image built on 2026-11-07",
        "7271963342412064517", "ubuntu-2404-lts"},
};

bool
image_project(const char *project)
{
	for (size_t i = 0; i < nitems(images); i++)
		if (strcmp(images[i].project, project) == 0)
			return true;
	return false;
}

static json_t *
image_json(const struct image *im)
{
	char *self = xasprintf(GCE_LINK "projects/%s/global/images/%s", im->project, im->name);
	char *lic = xasprintf(GCE_LINK "projects/%s/global/licenses/%s", im->project, im->license);
	json_t *v = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:s, "
	                    "s:[s], s:s, s:s, s:[{s:s}, {s:s}, {s:s}], s:[s, s]}",
	    "kind", "compute#image", "id", im->id, "creationTimestamp",
	    "2026-11-11T08:12:34.567-08:00", "name", im->name, "description", im->description,
	    "sourceType", "RAW", "status", "READY", "rawDisk", "source", "", "containerType", "TAR",
	    "archiveSizeBytes", "1284356352", "diskSizeGb", "10", "family", im->family, "licenses",
	    lic, "selfLink", self, "labelFingerprint", EMPTY_FINGERPRINT, "guestOsFeatures", "type",
	    "UEFI_COMPATIBLE", "type", "VIRTIO_SCSI_MULTIQUEUE", "type", "GVNIC",
	    "storageLocations", "us", "eu");
	json_object_set_new(v, "architecture", json_string("X86_64"));
	free(self);
	free(lic);
	return v;
}

/* An image of a project by name, or its family's newest; a new reference, or NULL. */
static json_t *
find(struct emulator *emu, const char *project, const char *name, bool family)
{
	json_t *best = NULL, *im;
	const char *k;

	for (size_t i = 0; i < nitems(images); i++)
		if (strcmp(images[i].project, project) == 0 &&
		    strcmp(family ? images[i].family : images[i].name, name) == 0)
			return image_json(&images[i]);
	if (strcmp(project, emu->project) != 0)
		return NULL;
	if (!family)
		return json_incref(json_object_get(emu->images, name));
	json_object_foreach (emu->images, k, im)
		if (strcmp(or_default(jx_str(im, "family"), ""), name) == 0 &&
		    (best == NULL ||
		        strcmp(jx_str(im, "creationTimestamp"), jx_str(best, "creationTimestamp")) >
		            0))
			best = im;
	return json_incref(best);
}

json_t *
image_resolve(struct emulator *emu, const char *path)
{
	char project[64], what[64], name[128], extra;

	if (sscanf(path, "projects/%63[^/]/global/images/family/%127[^/]%c", project, name,
	        &extra) == 2)
		return find(emu, project, name, true);
	if (sscanf(path, "projects/%63[^/]/zones/%63[^/]/imageFamilyViews/%127[^/]%c", project,
	        what, name, &extra) == 3)
		return find(emu, project, name, true);
	if (sscanf(path, "projects/%63[^/]/global/images/%127[^/]%c", project, name, &extra) == 2)
		return find(emu, project, name, false);
	return NULL;
}

static void
answer(struct call *c, const char *what, bool family, bool view)
{
	json_t *im = find(c->rq->emu, c->project, c->name, family);

	if (im == NULL) {
		emu_error(c->rq, 404, "notFound", "The resource 'projects/%s/%s/%s' was not found",
		    c->project, what, c->name);
		return;
	}
	if (view)
		emu_reply_json(c->rq, 200, jx_pack("{s:o}", "image", im));
	else
		emu_reply_json(c->rq, 200, im);
}

void
image_get(struct call *c)
{
	answer(c, "global/images", false, false);
}

void
image_from_family(struct call *c)
{
	answer(c, "global/images/family", true, false);
}

void
image_family_view(struct call *c)
{
	answer(c, "global/images/family", true, true);
}

/* images.list, with a filter (labels, family, status): all in one page, as there are few. */
void
image_list(struct call *c)
{
	const char *expr = rq_query(c->rq, "filter"), *k;
	struct filter *f = NULL;
	char *self, *cause = NULL;
	json_t *items, *v, *im;

	if (expr != NULL && filter_parse(expr, &f, &cause) != 0) {
		compute_bad_field(
		    c->rq, "filter", expr, "Invalid list filter expression (%s).", cause);
		free(cause);
		return;
	}
	items = json_array();
	for (size_t i = 0; i < nitems(images); i++) {
		if (strcmp(images[i].project, c->project) != 0)
			continue;
		im = image_json(&images[i]);
		if (filter_match(f, im))
			json_array_append(items, im);
		json_decref(im);
	}
	if (strcmp(c->project, c->rq->emu->project) == 0)
		json_object_foreach (c->rq->emu->images, k, im)
			if (filter_match(f, im))
				json_array_append(items, im);
	self = xasprintf(GCE_LINK "projects/%s/global/images", c->project);
	v = jx_pack("{s:s, s:s, s:s}", "kind", "compute#imageList", "id", "projects/images",
	    "selfLink", self);
	if (json_array_size(items) > 0)
		json_object_set(v, "items", items);
	json_decref(items);
	filter_free(f);
	emu_reply_json(c->rq, 200, v);
	free(self);
}

/* Whether a VM that is not stopped uses the disk (an image of it then needs forceCreate). */
static bool
running_user(struct emulator *emu, const char *zone, json_t *disk)
{
	json_t *u;
	size_t i;

	json_array_foreach (json_object_get(disk, "users"), i, u) {
		const char *name = strrchr(json_string_value(u), '/');
		struct inst *inst = name != NULL ? emu_find_inst(emu, zone, name + 1) : NULL;

		if (inst != NULL && inst->status != ST_TERMINATED)
			return true;
	}
	return false;
}

/*
 * images.insert from a disk of the project (sourceDisk): the image holds
 * what the disk holds (its size, its licenses), READY at once. Google
 * refuses a disk a VM that is not stopped uses, unless forceCreate=true.
 */
void
image_insert(struct call *c)
{
	struct emulator *emu = c->rq->emu;
	const char *request_id, *name, *src, *force = rq_query(c->rq, "forceCreate");
	json_t *body, *disk = NULL, *im, *made;
	char *path = NULL, *self, id[24], zone[64], dname[128], extra;
	struct op *op;

	if (!compute_request_id(c->rq, &request_id) ||
	    (body = compute_read_body(c->rq, "Image")) == NULL)
		return;
	name = jx_str(body, "name");
	src = jx_str(body, "sourceDisk");
	if (!compute_name_ok(c->rq, "resource.name", name))
		goto out;
	if (json_object_get(emu->images, name) != NULL) {
		emu_error(c->rq, 409, "alreadyExists",
		    "The resource 'projects/%s/global/images/%s' already exists", emu->project,
		    name);
		goto out;
	}
	if (src == NULL || (path = ref_path(emu, src)) == NULL ||
	    sscanf(path, "projects/%*[^/]/zones/%63[^/]/disks/%127[^/]%c", zone, dname, &extra) !=
	        2 ||
	    ref_in_project(emu, path, "zones/") == NULL) {
		compute_bad_field(c->rq, "resource.sourceDisk", or_default(src, ""),
		    "An image is made here from a disk of the project: zones/ZONE/disks/DISK.");
		goto out;
	}
	if (emu_zone(emu, zone) == NULL ||
	    (disk = json_object_get(emu_zone(emu, zone)->disks, dname)) == NULL) {
		emu_error(c->rq, 404, "notFound", "The resource '%s' was not found", path);
		goto out;
	}
	if (running_user(emu, zone, disk) && !(force != NULL && strcasecmp(force, "true") == 0)) {
		emu_error(c->rq, 400, "resourceInUseByAnotherResource",
		    "The disk resource '%s' is already being used by '%s'", path,
		    json_string_value(json_array_get(json_object_get(disk, "users"), 0)));
		goto out;
	}
	snprintf(id, sizeof id, "%" PRIu64, emu_new_id(emu));
	self = xasprintf(GCE_LINK "projects/%s/global/images/%s", emu->project, name);
	im = json_deep_copy(body);
	made = jx_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:O, s:O, s:s, s:s}", "kind",
	    "compute#image", "id", id, "creationTimestamp", compute_now_json(emu), "sourceType",
	    "RAW", "status", "READY", "selfLink", self, "diskSizeGb",
	    json_object_get(disk, "sizeGb"), "sourceDiskId", json_object_get(disk, "id"),
	    "sourceDisk", jx_str(disk, "selfLink"), "archiveSizeBytes", "1073741824");
	json_object_update(im, made);
	json_decref(made);
	compute_fingerprint(
	    im, "labelFingerprint", json_object_size(json_object_get(im, "labels")) == 0);
	if (json_object_get(disk, "licenses") != NULL)
		json_object_set(im, "licenses", json_object_get(disk, "licenses"));
	holds_set(emu, self, holds_get(emu, jx_str(disk, "selfLink")));
	json_object_set_new(emu->images, name, im);
	op = compute_op_new(&emu->global, "insert", "images", name, id, request_id, rq_user(c->rq));
	compute_op_done(op, NULL, 0, NULL);
	emu_reply_json(c->rq, 200, compute_op_json(op));
	free(self);
out:
	free(path);
	json_decref(body);
}

void
image_delete(struct call *c)
{
	struct emulator *emu = c->rq->emu;
	json_t *im = json_object_get(emu->images, c->name);
	const char *request_id;
	struct op *op;

	if (!compute_request_id(c->rq, &request_id))
		return;
	if (im == NULL) {
		compute_not_found(c->rq, "images", NULL, c->name);
		return;
	}
	op = compute_op_new(&emu->global, "delete", "images", c->name, jx_str(im, "id"), request_id,
	    rq_user(c->rq));
	holds_set(emu, jx_str(im, "selfLink"), NULL);
	json_object_del(emu->images, c->name);
	compute_op_done(op, NULL, 0, NULL);
	emu_reply_json(c->rq, 200, compute_op_json(op));
}
