/*
 * Compute Engine's JSON, pure: its answers into the provider's results
 * (operations, instances, preemptions, errors), and an instance spec into the body of
 * an insert, exactly as the discovery document spells it. What does not fit
 * the provider's bounds (provider.h) is refused here, not cut.
 */
#include <stdlib.h>
#include <string.h>

#include "cloud/gce-json.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

const char *
gce_last_segment(const char *link)
{
	const char *slash = link != NULL ? strrchr(link, '/') : NULL;

	return slash != NULL ? slash + 1 : link;
}

void
gce_op_from_json(json_t *v, struct cloud_op *op)
{
	int64_t ms = 0;

	memset(op, 0, sizeof *op);
	op->name = jx_str(v, "name");
	op->zone = gce_last_segment(jx_str(v, "zone"));
	op->type = jx_str(v, "operationType");
	op->target = gce_last_segment(jx_str(v, "targetLink"));
	op->done = jx_str(v, "status") != NULL && strcmp(jx_str(v, "status"), "DONE") == 0;
	if (jx_str(v, "insertTime") != NULL &&
	    time_parse_rfc3339(jx_str(v, "insertTime"), &ms) == 0)
		op->inserted_ms = ms;
	if (jx_str(v, "endTime") != NULL && time_parse_rfc3339(jx_str(v, "endTime"), &ms) == 0)
		op->ended_ms = ms;
}

static struct cloud_kv *
kv_from(json_t *obj, size_t *n)
{
	struct cloud_kv *kv = xcalloc(json_object_size(obj) + 1, sizeof *kv);
	const char *k;
	json_t *v;

	*n = 0;
	json_object_foreach (obj, k, v) {
		if (!json_is_string(v))
			continue;
		kv[*n].key = k;
		kv[(*n)++].value = json_string_value(v);
	}
	return kv;
}

static struct cloud_kv *
kv_from_items(json_t *items, size_t *n)
{
	struct cloud_kv *kv = xcalloc(json_array_size(items) + 1, sizeof *kv);
	json_t *it;
	size_t i;

	*n = 0;
	json_array_foreach (items, i, it) {
		if (jx_str(it, "key") == NULL)
			continue;
		kv[*n].key = jx_str(it, "key");
		kv[(*n)++].value = jx_str(it, "value") != NULL ? jx_str(it, "value") : "";
	}
	return kv;
}

/* A short text field of an answer: present, a string, and shorter than size. */
bool
gce_fits(const char *s, size_t size)
{
	return s != NULL && *s != '\0' && strlen(s) < size;
}

/*
 * Fill from JSON; the strings stay in v. NULL, or the field that makes it no
 * instance we can keep: a name and a zone as Compute Engine spells them, a
 * status, a machine type; an address that fits.
 */
const char *
gce_instance_from_json(json_t *v, struct cloud_instance *in)
{
	const char *t;
	int64_t ms;

	memset(in, 0, sizeof *in);
	in->name = jx_str(v, "name");
	in->status = jx_str(v, "status");
	in->zone = gce_last_segment(jx_str(v, "zone"));
	in->machine_type = gce_last_segment(jx_str(v, "machineType"));
	in->nat_ip = jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP");
	if (!gce_valid_name(in->name))
		return "name";
	if (!gce_valid_name(in->zone))
		return "zone";
	if (!gce_fits(in->status, CLOUD_STATUS_LEN))
		return "status";
	if (!gce_valid_name(in->machine_type))
		return "machineType";
	if (in->nat_ip != NULL && !gce_fits(in->nat_ip, CLOUD_NAME_LEN))
		return "natIP";
	in->id = jx_str(v, "id");
	in->internal_ip = jx_str(v, "networkInterfaces.0.networkIP");
	if ((t = jx_str(v, "creationTimestamp")) != NULL && time_parse_rfc3339(t, &ms) == 0)
		in->created_ms = ms;
	if ((t = jx_str(v, "lastStartTimestamp")) != NULL && time_parse_rfc3339(t, &ms) == 0)
		in->started_ms = ms;
	t = jx_str(v, "scheduling.provisioningModel");
	in->spot = (t != NULL && strcmp(t, "SPOT") == 0) ||
	    json_is_true(jx_get(v, "scheduling.preemptible"));
	if (jx_int64(jx_get(v, "scheduling.maxRunDuration.seconds"), &in->max_run_s) != 0 ||
	    in->max_run_s < 0)
		in->max_run_s = 0;
	in->labels = kv_from(json_object_get(v, "labels"), &in->nlabels);
	in->metadata = kv_from_items(jx_get(v, "metadata.items"), &in->nmetadata);
	return NULL;
}

/* A preemption operation: NULL, or the field that is missing or malformed. */
const char *
gce_preemption_from_json(json_t *v, struct cloud_op *op)
{
	gce_op_from_json(v, op);
	if (!gce_fits(op->name, CLOUD_OP_LEN))
		return "name";
	if (!gce_valid_name(op->zone))
		return "zone";
	if (!gce_valid_name(op->target))
		return "targetLink";
	return NULL;
}

void
gce_instances_free(struct cloud_instance *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((void *)list[i].labels);
		free((void *)list[i].metadata);
	}
	free(list);
}

/* --- requests --- */

bool
gce_valid_name(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > 63 || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

static json_t *
kv_object(const struct cloud_kv *kv, size_t n)
{
	json_t *o = json_object();

	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, kv[i].key, json_string(kv[i].value));
	return o;
}

/* The Instance to insert, exactly as the discovery document spells it. */
json_t *
gce_instance_body(const struct cloud_instance_spec *s)
{
	char *mt = xasprintf("zones/%s/machineTypes/%s", s->zone, s->machine_type);
	json_t *init = jx_pack("{s:s, s:o}", "sourceImage", s->image, "diskSizeGb",
	    jx_int64_string(s->disk_gb > 0 ? s->disk_gb : 20));
	json_t *nic = jx_pack("{s:s}", "network", "global/networks/default");
	json_t *sched = json_object(), *items = json_array(), *v;

	if (s->disk_type != NULL) {
		char *dt = xasprintf("zones/%s/diskTypes/%s", s->zone, s->disk_type);

		json_object_set_new(init, "diskType", json_string(dt));
		free(dt);
	}
	if (s->external_ip)
		json_object_set_new(nic, "accessConfigs",
		    jx_pack("[{s:s, s:s}]", "type", "ONE_TO_ONE_NAT", "name", "External NAT"));
	json_object_set_new(sched, "provisioningModel", json_string(s->spot ? "SPOT" : "STANDARD"));
	if (s->spot) {
		json_object_set_new(sched, "onHostMaintenance", json_string("TERMINATE"));
		json_object_set_new(sched, "automaticRestart", json_false());
	}
	if (s->termination_action != NULL)
		json_object_set_new(
		    sched, "instanceTerminationAction", json_string(s->termination_action));
	if (s->max_run_s > 0)
		json_object_set_new(sched, "maxRunDuration",
		    jx_pack("{s:o}", "seconds", jx_int64_string(s->max_run_s)));
	for (size_t i = 0; i < s->nmetadata; i++)
		json_array_append_new(items,
		    jx_pack(
		        "{s:s, s:s}", "key", s->metadata[i].key, "value", s->metadata[i].value));
	v = jx_pack("{s:s, s:s, s:o, s:[{s:b, s:b, s:o}], s:[o], s:{s:o}, s:o}", "name", s->name,
	    "machineType", mt, "labels", kv_object(s->labels, s->nlabels), "disks", "boot", true,
	    "autoDelete", true, "initializeParams", init, "networkInterfaces", nic, "metadata",
	    "items", items, "scheduling", sched);
	if (s->tags != NULL && s->tags[0] != NULL) {
		json_t *t = json_array();

		for (const char *const *tag = s->tags; *tag != NULL; tag++)
			json_array_append_new(t, json_string(*tag));
		json_object_set_new(v, "tags", jx_pack("{s:o}", "items", t));
	}
	if (s->service_account != NULL) {
		json_t *scopes = json_array();

		for (const char *const *sc = s->scopes; sc != NULL && *sc != NULL; sc++)
			json_array_append_new(scopes, json_string(*sc));
		json_object_set_new(v, "serviceAccounts",
		    jx_pack("[{s:s, s:o}]", "email", s->service_account, "scopes", scopes));
	}
	free(mt);
	return v;
}

const char *
gce_image_from_json(json_t *v, struct cloud_image *im)
{
	const char *t;
	int64_t ms;

	memset(im, 0, sizeof *im);
	im->name = jx_str(v, "name");
	im->family = jx_str(v, "family") != NULL ? jx_str(v, "family") : "";
	im->status = jx_str(v, "status");
	if (!gce_valid_name(im->name))
		return "name";
	if (*im->family != '\0' && !gce_valid_name(im->family))
		return "family";
	if (!gce_fits(im->status, CLOUD_STATUS_LEN))
		return "status";
	if (jx_int64(json_object_get(v, "diskSizeGb"), &im->disk_gb) != 0 || im->disk_gb <= 0)
		return "diskSizeGb";
	if (json_object_get(v, "archiveSizeBytes") != NULL &&
	    (jx_int64(json_object_get(v, "archiveSizeBytes"), &im->archive_bytes) != 0 ||
	        im->archive_bytes < 0))
		return "archiveSizeBytes";
	if ((t = jx_str(v, "creationTimestamp")) != NULL && time_parse_rfc3339(t, &ms) == 0)
		im->created_ms = ms;
	im->labels = kv_from(json_object_get(v, "labels"), &im->nlabels);
	return NULL;
}

/* The Image to insert from a disk, as the discovery document spells it. */
json_t *
gce_image_body(const struct cloud_image_spec *s)
{
	char *disk = xasprintf("zones/%s/disks/%s", s->zone, s->disk);
	json_t *v = jx_pack("{s:s, s:s, s:o}", "name", s->name, "sourceDisk", disk, "labels",
	    kv_object(s->labels, s->nlabels));

	if (s->family != NULL)
		json_object_set_new(v, "family", json_string(s->family));
	free(disk);
	return v;
}

/* --- errors --- */

void
gce_error_release(struct gce_error *e)
{
	json_decref(e->json);
	free(e->text);
	free(e->zone);
	free(e->metric);
	memset(e, 0, sizeof *e);
}

/* "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-west1." */
static void
parse_quota(struct gce_error *e, const char *message)
{
	const char *q = message != NULL ? strstr(message, "Quota '") : NULL;
	const char *lim = message != NULL ? strstr(message, "Limit: ") : NULL;

	if (q != NULL) {
		const char *end = strchr(q + 7, '\'');

		if (end != NULL)
			e->metric = xstrndup(q + 7, (size_t)(end - q - 7));
	}
	if (lim != NULL)
		e->err.quota_limit = strtod(lim + 7, NULL);
	e->err.quota_metric = e->metric;
}

void
gce_error_from_http(long status, const char *body, size_t len, struct gce_error *e)
{
	json_t *v = NULL;
	const char *reason = NULL, *message = NULL;

	if (jx_parse(body, len, &v, NULL) == 0) {
		reason = jx_str(v, "error.errors.0.reason");
		message = jx_str(v, "error.message");
		if (reason == NULL)
			reason = jx_str(v, "error.status");
	}
	e->json = v;
	e->err.http_status = (int)status;
	e->err.code = cloud_classify_http(status, reason);
	e->err.reason = reason;
	if (message == NULL) {
		e->text = xasprintf("HTTP %ld without a Google error body", status);
		message = e->text;
	}
	e->err.message = message;
	if (e->err.code == CLOUD_QUOTA)
		parse_quota(e, message);
}

bool
gce_error_from_op(json_t *op, const char *target_zone, struct gce_error *e)
{
	json_t *first = jx_get(op, "error.errors.0");
	const char *code;
	int64_t http = 0;

	if (first == NULL)
		return false;
	jx_int64(json_object_get(op, "httpErrorStatusCode"), &http);
	code = jx_str(first, "code");
	e->json = json_incref(op);
	e->err.code = cloud_classify_op(code, (int)http);
	e->err.http_status = (int)http;
	e->err.reason = code;
	e->err.message = jx_str(first, "message") != NULL ? jx_str(first, "message") : code;
	if (e->err.code == CLOUD_STOCKOUT) {
		/* The zone out of capacity: the operation's, else the one the call went to. */
		const char *zone = gce_last_segment(jx_str(op, "zone"));

		e->zone = xstrdup(zone != NULL ? zone : or_default(target_zone, ""));
		e->err.zone = e->zone;
	}
	if (e->err.code == CLOUD_QUOTA) {
		json_t *qi = jx_get(first, "errorDetails.0.quotaInfo");

		parse_quota(e, e->err.message);
		if (qi != NULL && json_is_number(json_object_get(qi, "limit")))
			e->err.quota_limit = json_number_value(json_object_get(qi, "limit"));
	}
	return true;
}
