/*
 * The Compute API's routes: one table of (method, path pattern, handler),
 * matched part by part, so an unknown path or method is the table's 404 and
 * every handler is given its project, zone and name already checked
 * (docs/emulator.md's table is this one: tools/check-docs). Also the
 * project-wide resources that are a few lines each: the project, zones,
 * regions and machine types.
 *
 * In patterns, {project} is the emulator's project ({images} also a public
 * image project's), {zone} one of its zones ({anyzone} also "-"), {name}
 * any name: the handler's struct call holds what they were.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

/*
 * A fixed resource's id, stable by name: Google's zones and regions have
 * small ones (2000 is us-central1-a, 1000 us-central1), from base up.
 */
static const char *
stable_id(const char *name, unsigned base, char id[24])
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *p = name; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	snprintf(id, 24, "%u", base + (unsigned)(h % 1000));
	return id;
}

/* --- zones and regions --- */

static json_t *
zone_json(struct emulator *emu, struct zone *z)
{
	char *self = compute_zone_link(emu, z);
	char *region = xasprintf(GCE_LINK "projects/%s/regions/%s", emu->project, z->region);
	char id[24];
	json_t *v;

	v = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[s,s,s], s:b}", "kind",
	    "compute#zone", "id", stable_id(z->name, 2000, id), "creationTimestamp",
	    "1969-12-31T16:00:00.000-08:00", "name", z->name, "description", z->name, "status",
	    "UP", "region", region, "selfLink", self, "availableCpuPlatforms", "Intel Cascade Lake",
	    "Intel Broadwell", "AMD Rome", "supportsPzs", false);
	free(self);
	free(region);
	return v;
}

static json_t *
region_json(struct emulator *emu, const char *name)
{
	json_t *zones = json_array(), *v;
	char *self, id[24];

	for (size_t i = 0; i < emu->nzones; i++) {
		if (strcmp(emu->zones[i].region, name) == 0) {
			char *zl = compute_zone_link(emu, &emu->zones[i]);

			json_array_append_new(zones, json_string(zl));
			free(zl);
		}
	}
	if (json_array_size(zones) == 0) {
		json_decref(zones);
		return NULL;
	}
	self = xasprintf(GCE_LINK "projects/%s/regions/%s", emu->project, name);
	v = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:[{s:s, s:f, s:f}], s:b}", "kind",
	    "compute#region", "id", stable_id(name, 1000, id), "creationTimestamp",
	    "1969-12-31T16:00:00.000-08:00", "name", name, "description", name, "status", "UP",
	    "selfLink", self, "zones", zones, "quotas", "metric", "CPUS", "limit",
	    (double)compute_quota_limit(emu), "usage", (double)compute_region_cpus(emu, name),
	    "supportsPzs", false);
	free(self);
	return v;
}

static void
region_get(struct call *c)
{
	json_t *v = region_json(c->rq->emu, c->name);

	if (v == NULL)
		emu_error(c->rq, 404, "notFound",
		    "The resource 'projects/%s/regions/%s' was not found", c->rq->emu->project,
		    c->name);
	else
		emu_reply_json(c->rq, 200, v);
}

static void
region_list(struct call *c)
{
	struct emulator *emu = c->rq->emu;
	json_t *items = json_array();
	char *self = xasprintf(GCE_LINK "projects/%s/regions", emu->project);

	for (size_t i = 0; i < emu->nzones; i++) {
		bool seen = false;

		for (size_t j = 0; j < i; j++)
			seen |= strcmp(emu->zones[j].region, emu->zones[i].region) == 0;
		if (!seen)
			json_array_append_new(items, region_json(emu, emu->zones[i].region));
	}
	emu_reply_json(c->rq, 200,
	    jx_pack("{s:s, s:s, s:o, s:s}", "kind", "compute#regionList", "id", "projects/regions",
	        "items", items, "selfLink", self));
	free(self);
}

static void
zone_get(struct call *c)
{
	emu_reply_json(c->rq, 200, zone_json(c->rq->emu, c->zone));
}

static void
zone_list(struct call *c)
{
	struct emulator *emu = c->rq->emu;
	json_t *items = json_array();
	char *self = xasprintf(GCE_LINK "projects/%s/zones", emu->project);

	for (size_t i = 0; i < emu->nzones; i++)
		json_array_append_new(items, zone_json(emu, &emu->zones[i]));
	emu_reply_json(c->rq, 200,
	    jx_pack("{s:s, s:s, s:o, s:s}", "kind", "compute#zoneList", "id", "projects/zones",
	        "items", items, "selfLink", self));
	free(self);
}

static void
machine_type_get(struct call *c)
{
	json_t *mt = machine_json(c->rq->emu, c->zone, c->name);

	if (mt == NULL)
		compute_not_found(c->rq, "machineTypes", c->zone->name, c->name);
	else
		emu_reply_json(c->rq, 200, mt);
}

/* projects.get: the project, its common metadata, quotas and default service account. */
static void
project_get(struct call *c)
{
	struct emulator *emu = c->rq->emu;
	char *self = xasprintf(GCE_LINK "projects/%s", emu->project);
	char *account = xasprintf("%s-compute@developer.gserviceaccount.com", emu->project_number);
	int64_t cpus = 0;

	for (size_t i = 0; i < emu->nzones; i++)
		for (size_t j = 0; j < emu->zones[i].ninsts; j++)
			cpus += compute_cpus_held(emu->zones[i].insts[j]);
	emu_reply_json(c->rq, 200,
	    jx_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:[{s:s, s:f, s:f}], s:s, s:s, s:s, "
	            "s:s, s:s}",
	        "kind", "compute#project", "id", emu->project_number, "creationTimestamp",
	        "2024-03-01T09:00:00.000-08:00", "name", emu->project, "commonInstanceMetadata",
	        "kind", "compute#metadata", "fingerprint", EMPTY_FINGERPRINT, "quotas", "metric",
	        "CPUS_ALL_REGIONS", "limit", (double)compute_quota_limit(emu), "usage",
	        (double)cpus, "selfLink", self, "defaultServiceAccount", account,
	        "xpnProjectStatus", "UNSPECIFIED_XPN_PROJECT_STATUS", "defaultNetworkTier",
	        "PREMIUM", "vmDnsSetting", "ZONAL_ONLY"));
	free(self);
	free(account);
}

/* --- the table --- */

typedef void route_fn(struct call *);

static const struct route {
	const char *method;
	const char *pattern; /* from compute/v1/ */
	route_fn *fn;
} routes[] = {
    {"GET", "projects/{project}", project_get},
    {"GET", "projects/{project}/aggregated/{name}", list_aggregated},
    {"GET", "projects/{project}/global/firewalls", firewall_list},
    {"POST", "projects/{project}/global/firewalls", firewall_insert},
    {"GET", "projects/{project}/global/firewalls/{name}", firewall_get},
    {"PATCH", "projects/{project}/global/firewalls/{name}", firewall_patch},
    {"DELETE", "projects/{project}/global/firewalls/{name}", firewall_delete},
    {"GET", "projects/{project}/global/operations", list_operations},
    {"GET", "projects/{project}/global/operations/{name}", op_get},
    {"DELETE", "projects/{project}/global/operations/{name}", op_delete},
    {"POST", "projects/{project}/global/operations/{name}/wait", op_wait},
    {"GET", "projects/{images}/global/images", image_list},
    {"POST", "projects/{project}/global/images", image_insert},
    {"DELETE", "projects/{project}/global/images/{name}", image_delete},
    {"GET", "projects/{images}/global/images/{name}", image_get},
    {"GET", "projects/{images}/global/images/family/{name}", image_from_family},
    {"GET", "projects/{images}/zones/{anyzone}/imageFamilyViews/{name}", image_family_view},
    {"GET", "projects/{project}/regions", region_list},
    {"GET", "projects/{project}/regions/{name}", region_get},
    {"GET", "projects/{project}/zones", zone_list},
    {"GET", "projects/{project}/zones/{zone}", zone_get},
    {"GET", "projects/{project}/zones/{zone}/disks", list_disks},
    {"GET", "projects/{project}/zones/{zone}/disks/{name}", disk_get},
    {"DELETE", "projects/{project}/zones/{zone}/disks/{name}", disk_delete},
    {"GET", "projects/{project}/zones/{zone}/instances", list_instances},
    {"POST", "projects/{project}/zones/{zone}/instances", compute_inst_insert},
    {"GET", "projects/{project}/zones/{zone}/instances/{name}", inst_get},
    {"DELETE", "projects/{project}/zones/{zone}/instances/{name}", inst_delete},
    {"GET", "projects/{project}/zones/{zone}/instances/{name}/getGuestAttributes",
        inst_guest_attributes},
    {"GET", "projects/{project}/zones/{zone}/instances/{name}/serialPort", inst_serial_port},
    {"POST", "projects/{project}/zones/{zone}/instances/{name}/setLabels", inst_set_labels},
    {"POST", "projects/{project}/zones/{zone}/instances/{name}/setMetadata", inst_set_metadata},
    {"POST", "projects/{project}/zones/{zone}/instances/{name}/setTags", inst_set_tags},
    {"POST", "projects/{project}/zones/{zone}/instances/{name}/stop", inst_stop},
    {"POST", "projects/{project}/zones/{zone}/instances/{name}/start", inst_start},
    {"POST", "projects/{project}/zones/{zone}/instances/{name}/reset", inst_reset},
    {"POST", "projects/{project}/zones/{zone}/instances/{name}/suspend", inst_suspend},
    {"POST", "projects/{project}/zones/{zone}/instances/{name}/resume", inst_resume},
    {"GET", "projects/{project}/zones/{zone}/machineTypes", list_machine_types},
    {"GET", "projects/{project}/zones/{zone}/machineTypes/{name}", machine_type_get},
    {"GET", "projects/{project}/zones/{zone}/operations", list_operations},
    {"GET", "projects/{project}/zones/{zone}/operations/{name}", op_get},
    {"DELETE", "projects/{project}/zones/{zone}/operations/{name}", op_delete},
    {"POST", "projects/{project}/zones/{zone}/operations/{name}/wait", op_wait},
};

/* The pattern's i-th part is this word (or any word, for a {part}); no allocation. */
static bool
part_is(const char *pattern, size_t i, const char *word, const char **placeholder)
{
	const char *p = pattern, *end;
	size_t len;

	for (; i > 0 && p != NULL; i--)
		if ((p = strchr(p, '/')) != NULL)
			p++;
	if (p == NULL)
		return false;
	end = strchr(p, '/');
	len = end != NULL ? (size_t)(end - p) : strlen(p);
	*placeholder = *p == '{' ? p : NULL;
	return *p == '{' || (strlen(word) == len && strncmp(p, word, len) == 0);
}

static size_t
pattern_parts(const char *pattern)
{
	size_t n = 1;

	for (const char *p = pattern; (p = strchr(p, '/')) != NULL; p++)
		n++;
	return n;
}

/* Whether the path's parts have the pattern's shape: its words where it has words. */
static bool
shape_matches(const char *pattern, char **parts, size_t n)
{
	const char *ph;

	if (pattern_parts(pattern) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!part_is(pattern, i, parts[i], &ph))
			return false;
	return true;
}

static bool
is(const char *placeholder, const char *name)
{
	return placeholder != NULL && strncmp(placeholder, name, strlen(name)) == 0;
}

/* Bind the pattern's {parts}, answering the first that is wrong; false when answered. */
static bool
bind_parts(struct call *c, const char *pattern, char **parts, size_t n)
{
	struct emulator *emu = c->rq->emu;

	for (size_t i = 0; i < n; i++) {
		const char *w, *p = parts[i];

		part_is(pattern, i, p, &w);
		if (is(w, "{project}") || is(w, "{images}")) {
			c->project = p;
			if (strcmp(p, emu->project) != 0 &&
			    !(is(w, "{images}") && image_project(p))) {
				emu_error(c->rq, 404, "notFound",
				    "The resource 'projects/%s' was not found", p);
				return false;
			}
		} else if ((is(w, "{zone}") || is(w, "{anyzone}")) &&
		    !(is(w, "{anyzone}") && strcmp(p, "-") == 0)) {
			if (!compute_valid_name(p)) {
				emu_error(c->rq, 400, "invalidParameter",
				    "Invalid value '%s'. Values must match the following regular "
				    "expression: '[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'",
				    p);
				return false;
			}
			if ((c->zone = emu_zone(emu, p)) == NULL) {
				compute_bad_field(c->rq, "zone", p, "Unknown zone.");
				return false;
			}
		} else if (is(w, "{name}")) {
			c->name = p;
		}
	}
	return true;
}

void
compute_route(struct rq *rq, char **parts, size_t n)
{
	const char *method = rq_method(rq);

	/* compute v1 ... */
	for (size_t i = 0; i < nitems(routes); i++) {
		struct call c = {.rq = rq};

		if (strcmp(routes[i].method, method) != 0 ||
		    !shape_matches(routes[i].pattern, parts + 2, n - 2))
			continue;
		if (bind_parts(&c, routes[i].pattern, parts + 2, n - 2))
			routes[i].fn(&c);
		return;
	}
	emu_error(
	    rq, 404, "notFound", "The requested URL %s was not found on this server.", rq_path(rq));
}
