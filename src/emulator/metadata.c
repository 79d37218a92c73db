/*
 * The metadata server, /computeMetadata/v1/..., as a VM sees it: every
 * request needs "Metadata-Flavor: Google"; directories list their entries
 * (or are JSON with ?recursive=true); ?wait_for_change=true holds the answer
 * until the value changes (ETag and last_etag as Google's), for as long as
 * ?timeout_sec says. The instance asking is the one whose natIP the request
 * comes from; a process that cannot bind that address names the instance in
 * an "X-Emulator-Instance: ZONE/NAME" header. Without an instance, the
 * project and the default service account's token are still served.
 *
 * Guest attributes: the guest PUTs instance/guest-attributes/NAMESPACE/KEY
 * (when the instance's enable-guest-attributes is TRUE, as Google asks) and
 * the API reads them (instances.getGuestAttributes): what a VM publishes
 * about itself through a way its network cannot forge.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emulator/internal.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define WAIT_DEFAULT_S 60
#define WAIT_MAX_S     3600

static const char *scopes[] = {"https://www.googleapis.com/auth/cloud-platform"};

static json_t *
service_accounts(struct emulator *emu, struct inst *inst)
{
	const char *email = inst != NULL ? jx_str(inst->res, "serviceAccounts.0.email") : NULL;

	if (email == NULL)
		email = emu->client_email;
	return jx_pack("{s:{s:s, s:[s], s:[s]}}", "default", "email", email, "aliases", "default",
	    "scopes", scopes[0]);
}

static json_t *
instance_tree(struct emulator *emu, struct inst *inst)
{
	json_t *attrs = json_object(), *items = jx_get(inst->res, "metadata.items"), *it;
	const char *mt = strrchr(jx_str(inst->res, "machineType"), '/');
	char *zone = xasprintf("projects/%s/zones/%s", emu->project_number, inst->zone->name);
	char *mtype = xasprintf("projects/%s/machineTypes/%s", emu->project_number, mt + 1);
	char *host = xasprintf("%s.%s.c.%s.internal", inst->name, inst->zone->name, emu->project);
	char *net = xasprintf("projects/%s/networks/default", emu->project_number);
	const char *spot = jx_str(inst->res, "scheduling.provisioningModel");
	json_t *v, *nic;
	size_t i;

	json_array_foreach (items, i, it)
		json_object_set_new(
		    attrs, jx_str(it, "key"), json_string(or_default(jx_str(it, "value"), "")));
	nic = jx_pack("{s:s, s:s, s:[]}", "ip", jx_str(inst->res, "networkInterfaces.0.networkIP"),
	    "network", net, "access-configs");
	if (inst->nat_ip[0] != '\0')
		json_array_append_new(json_object_get(nic, "access-configs"),
		    jx_pack("{s:s, s:s}", "external-ip", inst->nat_ip, "type", "ONE_TO_ONE_NAT"));
	v = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:[o], s:o, s:{s:s, s:s, s:s}}", "id",
	    jx_str(inst->res, "id"), "name", inst->name, "hostname", host, "zone", zone,
	    "machine-type", mtype, "attributes", attrs, "preempted",
	    inst->preempted ? "TRUE" : "FALSE", "maintenance-event",
	    inst->preempted ? "TERMINATE_ON_HOST_MAINTENANCE" : "NONE", "network-interfaces", nic,
	    "service-accounts", service_accounts(emu, inst), "scheduling", "preemptible",
	    spot != NULL && strcmp(spot, "SPOT") == 0 ? "TRUE" : "FALSE", "automatic-restart",
	    json_is_true(jx_get(inst->res, "scheduling.automaticRestart")) ? "TRUE" : "FALSE",
	    "on-host-maintenance",
	    or_default(jx_str(inst->res, "scheduling.onHostMaintenance"), "MIGRATE"));
	free(zone);
	free(mtype);
	free(host);
	free(net);
	return v;
}

void
guest_attribute_set(struct inst *inst, const char *key, const char *value)
{
	if (inst->guest_attrs == NULL)
		inst->guest_attrs = json_object();
	json_object_set_new(inst->guest_attrs, key, json_string(value));
}

static bool
guest_attributes_enabled(const struct inst *inst)
{
	const char *on = inst_attribute(inst, "enable-guest-attributes");

	return on != NULL && strcasecmp(on, "true") == 0;
}

/* The API's read: ?variableKey=NS/KEY, or ?queryPath=NS/ (every key of a namespace). */
void
metadata_guest_attributes(struct rq *rq, struct inst *inst)
{
	const char *key = rq_query(rq, "variableKey");
	const char *path = rq_query(rq, "queryPath");
	char *self = xasprintf(GCE_LINK "projects/%s/zones/%s/instances/%s/guestAttributes",
	    rq->emu->project, inst->zone->name, inst->name);
	json_t *v, *items;
	const char *k;

	if (key != NULL && guest_attributes_enabled(inst) &&
	    (v = json_object_get(inst->guest_attrs, key)) != NULL) {
		emu_reply_json(rq, 200,
		    jx_pack("{s:s, s:s, s:s, s:O}", "kind", "compute#guestAttributes", "selfLink",
		        self, "variableKey", key, "variableValue", v));
	} else if (key == NULL && path != NULL && guest_attributes_enabled(inst)) {
		items = json_array();
		json_object_foreach (inst->guest_attrs, k, v) {
			const char *slash = strchr(k, '/');

			if (slash != NULL && (*path == '\0' || str_prefix(k, path)))
				json_array_append_new(items,
				    jx_pack("{s:s%, s:s, s:O}", "namespace", k, (size_t)(slash - k),
				        "key", slash + 1, "value", v));
		}
		emu_reply_json(rq, 200,
		    jx_pack("{s:s, s:s, s:s, s:{s:o}}", "kind", "compute#guestAttributes",
		        "selfLink", self, "queryPath", path, "queryValue", "items", items));
	} else {
		emu_error(rq, 404, "notFound",
		    "The resource 'projects/%s/zones/%s/instances/%s/guestAttributes/%s' was not "
		    "found",
		    rq->emu->project, inst->zone->name, inst->name,
		    key != NULL ? key : or_default(path, ""));
	}
	free(self);
}

/* The guest's write: PUT instance/guest-attributes/NAMESPACE/KEY, the value as the body. */
static void
guest_put(struct rq *rq, struct inst *inst, char **parts, size_t n)
{
	const char *body;
	size_t len;
	int big = 0;
	char *key, *value;

	httpd_set_header(rq->req, "Metadata-Flavor", "Google");
	if (inst == NULL || n != 6 || strcmp(parts[2], "instance") != 0 ||
	    strcmp(parts[3], "guest-attributes") != 0) {
		emu_reply_text(rq, 404, "404 page not found\n");
		return;
	}
	if (!guest_attributes_enabled(inst)) {
		emu_reply_text(rq, 403, "Guest attributes endpoint access is disabled.\n");
		return;
	}
	body = httpd_req_body(rq->req, &len, &big);
	if (big || len > 256 * 1024) {
		emu_reply_text(rq, 413, "a guest attribute's value is at most 256 KiB\n");
		return;
	}
	key = xasprintf("%s/%s", parts[4], parts[5]);
	value = xstrndup(body != NULL ? body : "", len);
	guest_attribute_set(inst, key, value);
	free(key);
	free(value);
	metadata_changed(rq->emu, inst); /* before the answer, which frees rq */
	emu_reply_text(rq, 200, "");
}

/* As instance/guest-attributes/NS/KEY reads them, from the guest. */
static json_t *
guest_tree(const struct inst *inst)
{
	json_t *root = json_object(), *v;
	const char *k;

	json_object_foreach (inst->guest_attrs, k, v) {
		const char *slash = strchr(k, '/');
		char *ns;
		json_t *dir;

		if (slash == NULL)
			continue;
		ns = xstrndup(k, (size_t)(slash - k));
		if ((dir = json_object_get(root, ns)) == NULL)
			json_object_set_new(root, ns, dir = json_object());
		json_object_set(dir, slash + 1, v);
		free(ns);
	}
	return root;
}

static json_t *
tree(struct emulator *emu, struct inst *inst)
{
	json_t *instance = inst != NULL
	    ? instance_tree(emu, inst)
	    : jx_pack("{s:o}", "service-accounts", service_accounts(emu, NULL));

	if (inst != NULL && guest_attributes_enabled(inst))
		json_object_set_new(instance, "guest-attributes", guest_tree(inst));

	return jx_pack("{s:{s:s, s:s, s:{}}, s:o}", "project", "project-id", emu->project,
	    "numeric-project-id", emu->project_number, "attributes", "instance", instance);
}

static struct inst *
asking_inst(struct rq *rq)
{
	struct emulator *emu = rq->emu;
	const char *named = httpd_req_header(rq->req, "X-Emulator-Instance");

	if (named != NULL) {
		const char *slash = strchr(named, '/');
		struct inst *inst = NULL;

		if (slash != NULL) {
			char *zone = xstrndup(named, (size_t)(slash - named));

			inst = emu_find_inst(emu, zone, slash + 1);
			free(zone);
		} else {
			for (size_t i = 0; i < emu->nzones && inst == NULL; i++)
				inst = emu_find_inst(emu, emu->zones[i].name, named);
		}
		return inst;
	}
	return emu_inst_by_ip(emu, httpd_req_peer(rq->req));
}

static char *
etag_of(const char *body)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (const char *p = body; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
	return xasprintf("%016llx", (unsigned long long)h);
}

static bool
query_true(struct rq *rq, const char *key)
{
	const char *v = httpd_req_query(rq->req, key);

	return v != NULL &&
	    (strcmp(v, "true") == 0 || strcmp(v, "TRUE") == 0 || strcmp(v, "1") == 0);
}

/*
 * Render the value at the request's path. Returns the HTTP status, with *body
 * and *json set; a token request gets a fresh token.
 */
static unsigned
render(struct rq *rq, struct inst *inst, char **body, bool *json)
{
	struct emulator *emu = rq->emu;
	const char *path = httpd_req_path(rq->req);
	bool recursive = query_true(rq, "recursive");
	const char *alt = httpd_req_query(rq->req, "alt");
	char **parts;
	size_t n;
	json_t *root = tree(emu, inst), *cur = root;
	unsigned status = 200;

	emu_split_path(path, &parts, &n);
	*json = false;
	/* computeMetadata v1 ... */
	if (n >= 6 && strcmp(parts[2], "instance") == 0 &&
	    strcmp(parts[3], "service-accounts") == 0 && strcmp(parts[5], "token") == 0) {
		char *account =
		    xasprintf("%s-compute@developer.gserviceaccount.com", emu->project_number);
		json_t *tok = oauth_issue(emu, account);

		free(account);

		*body = jx_dumps(tok);
		*json = true;
		json_decref(tok);
		goto out;
	}
	if (n >= 3 && strcmp(parts[2], "instance") == 0 && inst == NULL && n > 3 &&
	    strcmp(parts[3], "service-accounts") != 0) {
		*body = xstrdup("the metadata server does not know which instance is asking: "
		                "connect from the instance's natIP or send X-Emulator-Instance\n");
		status = 404;
		goto out;
	}
	for (size_t i = 2; i < n && cur != NULL; i++) {
		if (json_is_object(cur)) {
			cur = json_object_get(cur, parts[i]);
		} else if (json_is_array(cur)) {
			int64_t k;

			cur = parse_int64(parts[i], 0, 1000, &k) == 0
			    ? json_array_get(cur, (size_t)k)
			    : NULL;
		} else {
			cur = NULL;
		}
	}
	if (cur == NULL) {
		*body = xstrdup("404 page not found\n");
		status = 404;
	} else if (json_is_string(cur)) {
		*json = alt != NULL && strcmp(alt, "json") == 0;
		*body = *json ? jx_dumps(cur) : xstrdup(json_string_value(cur));
	} else if (recursive || (alt != NULL && strcmp(alt, "json") == 0)) {
		*json = true;
		*body = jx_dumps(cur);
	} else {
		struct buf b = BUF_INIT(SIZE_MAX);

		if (json_is_object(cur)) {
			const char *k;
			json_t *v;

			json_object_foreach (cur, k, v)
				buf_printf(&b, "%s%s\n", k, json_is_string(v) ? "" : "/");
		} else {
			for (size_t i = 0; i < json_array_size(cur); i++)
				buf_printf(&b, "%zu/\n", i);
		}
		*body = buf_detach(&b, NULL);
	}
out:
	json_decref(root);
	str_list_free(parts);
	return status;
}

static void
answer(struct rq *rq, struct inst *inst)
{
	char *body, *etag;
	bool json;
	unsigned status = render(rq, inst, &body, &json);

	etag = etag_of(body);
	httpd_set_header(rq->req, "Metadata-Flavor", "Google");
	httpd_set_header(rq->req, "ETag", etag);
	emu_reply(rq, status, json ? "application/json" : "application/text", body, strlen(body));
	free(etag);
	free(body);
}

static struct inst *
waiter_inst(struct rq *rq)
{
	const char *slash;
	struct inst *inst;
	char *zone;

	if (rq->meta_inst == NULL)
		return NULL;
	slash = strchr(rq->meta_inst, '/');
	zone = xstrndup(rq->meta_inst, (size_t)(slash - rq->meta_inst));
	inst = emu_find_inst(rq->emu, zone, slash + 1);
	free(zone);
	return inst;
}

void
metadata_answer(struct rq *rq)
{
	struct inst *inst = waiter_inst(rq);

	if (rq->meta_inst != NULL && inst == NULL) {
		emu_reply_text(rq, 503, "the instance is gone\n");
		return;
	}
	answer(rq, inst);
}

void
metadata_changed(struct emulator *emu, struct inst *inst)
{
	char *key = inst != NULL
	    ? xasprintf("%s/%s", inst->zone != NULL ? inst->zone->name : "", inst->name)
	    : NULL;
	struct rq *rq, *next;

	for (rq = emu->pending; rq != NULL; rq = next) {
		struct inst *now;
		char *body, *etag;
		bool json;

		next = rq->next;
		if (rq->wait != RQ_META || rq->meta_inst == NULL ||
		    (key != NULL && inst->zone != NULL && strcmp(rq->meta_inst, key) != 0))
			continue;
		if ((now = waiter_inst(rq)) == NULL) {
			rq->wait = RQ_NOW;
			emu_reply_text(rq, 503, "the instance is gone\n");
			continue;
		}
		render(rq, now, &body, &json);
		etag = etag_of(body);
		free(body);
		if (strcmp(etag, rq->meta_etag) != 0) {
			rq->wait = RQ_NOW;
			answer(rq, now);
		}
		free(etag);
	}
	free(key);
}

void
metadata_route(struct rq *rq, char **parts, size_t n)
{
	const char *flavor = httpd_req_header(rq->req, "Metadata-Flavor");
	const char *last = httpd_req_query(rq->req, "last_etag");
	const char *timeout = httpd_req_query(rq->req, "timeout_sec");
	struct inst *inst;
	char *body, *etag;
	bool json;
	int64_t secs = WAIT_DEFAULT_S;

	if (strcmp(parts[1], "v1") != 0) {
		emu_reply_text(rq, 404, "404 page not found\n");
		return;
	}
	if (flavor == NULL || strcmp(flavor, "Google") != 0 ||
	    httpd_req_header(rq->req, "X-Forwarded-For") != NULL) {
		httpd_set_header(rq->req, "Metadata-Flavor", "Google");
		emu_reply_text(
		    rq, 403, "Missing required header: \"Metadata-Flavor\": \"Google\"\n");
		return;
	}
	inst = asking_inst(rq);
	if (strcmp(httpd_req_method(rq->req), "PUT") == 0) {
		guest_put(rq, inst, parts, n);
		return;
	}
	if (!query_true(rq, "wait_for_change")) {
		answer(rq, inst);
		return;
	}
	if (timeout != NULL && parse_int64(timeout, 1, WAIT_MAX_S, &secs) != 0) {
		emu_reply_text(rq, 400,
		    "timeout_sec must be a whole number of seconds from 1 to "
		    "3600\n");
		return;
	}
	render(rq, inst, &body, &json);
	etag = etag_of(body);
	free(body);
	if (last != NULL && strcmp(last, etag) != 0) {
		free(etag);
		answer(rq, inst);
		return;
	}
	rq->meta_etag = etag;
	if (inst != NULL)
		rq->meta_inst = xasprintf("%s/%s", inst->zone->name, inst->name);
	rq_defer(rq, RQ_META);
	rq_defer_timer(rq, secs * 1000);
}
