/*
 * The project's firewall rules, as firewalls.get, list, insert, patch and
 * delete serve them, with Google's fields (id, network, selfLink,
 * creationTimestamp) and defaults (INGRESS, priority 1000, the default
 * network, from anywhere when no source is named). A new project has
 * default-allow-ssh (tcp:22 from anywhere); with --firewall-source the
 * emulator also has spillway-backend, opening the agent's port (or
 * --firewall-ports) to that range for instances tagged spillway-backend, as
 * docs/offload.md asks a user to make. Changes are global operations, done
 * at once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

/* Fill in what Google fills in, and store the rule under its name. */
static void
store(struct emulator *emu, json_t *fw)
{
	const char *name = jx_str(fw, "name"), *net = jx_str(fw, "network");
	char *self = xasprintf(GCE_LINK "projects/%s/global/firewalls/%s", emu->project, name);
	char *link = ref_link(emu, net != NULL ? net : "global/networks/default"), id[24];

	snprintf(id, sizeof id, "%" PRIu64, emu_new_id(emu));
	json_object_set_new(fw, "kind", json_string("compute#firewall"));
	json_object_set_new(fw, "id", json_string(id));
	json_object_set_new(fw, "creationTimestamp", compute_now_json(emu));
	json_object_set_new(fw, "selfLink", json_string(self));
	json_object_set_new(fw, "network", json_string(link));
	if (json_object_get(fw, "direction") == NULL)
		json_object_set_new(fw, "direction", json_string("INGRESS"));
	if (json_object_get(fw, "priority") == NULL)
		json_object_set_new(fw, "priority", json_integer(1000));
	if (json_object_get(fw, "disabled") == NULL)
		json_object_set_new(fw, "disabled", json_false());
	if (strcmp(jx_str(fw, "direction"), "INGRESS") == 0 &&
	    json_object_get(fw, "sourceRanges") == NULL &&
	    json_object_get(fw, "sourceTags") == NULL &&
	    json_object_get(fw, "sourceServiceAccounts") == NULL)
		json_object_set_new(fw, "sourceRanges", jx_pack("[s]", "0.0.0.0/0"));
	if (json_object_get(fw, "logConfig") == NULL)
		json_object_set_new(fw, "logConfig", jx_pack("{s:b}", "enable", false));
	json_object_set_new(emu->firewalls, name, fw);
	free(self);
	free(link);
}

void
firewalls_default(struct emulator *emu)
{
	char agent[16];

	json_object_clear(emu->firewalls);
	store(emu,
	    jx_pack("{s:s, s:s, s:[{s:s, s:[s]}], s:[s], s:i, s:s}", "name", "default-allow-ssh",
	        "direction", "INGRESS", "allowed", "IPProtocol", "tcp", "ports", "22",
	        "sourceRanges", "0.0.0.0/0", "priority", 65534, "description",
	        "Allow SSH from anywhere"));
	/* The agent's port only, as docs/offload.md asks: the agent carries the backend's. */
	snprintf(agent, sizeof agent, "%d", emu->opts.agent_port);
	if (emu->opts.firewall_source != NULL) {
		char **list = str_split(or_default(emu->opts.firewall_ports, agent), ',', NULL);
		json_t *ports = json_array();

		for (char **p = list; *p != NULL; p++)
			json_array_append_new(ports, json_string(*p));
		str_list_free(list);
		store(emu,
		    jx_pack("{s:s, s:s, s:[{s:s, s:o}], s:[s], s:[s], s:i}", "name",
		        "spillway-backend", "direction", "INGRESS", "allowed", "IPProtocol", "tcp",
		        "ports", ports, "sourceRanges", emu->opts.firewall_source, "targetTags",
		        "spillway-backend", "priority", 1000));
	}
}

static json_t *
find(struct call *c)
{
	json_t *fw = json_object_get(c->rq->emu->firewalls, c->name);

	if (fw == NULL)
		compute_not_found(c->rq, "firewalls", NULL, c->name);
	return fw;
}

void
firewall_get(struct call *c)
{
	json_t *fw = find(c);

	if (fw != NULL)
		emu_reply_json(c->rq, 200, json_incref(fw));
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(jx_str(*(json_t *const *)a, "name"), jx_str(*(json_t *const *)b, "name"));
}

void
firewall_list(struct call *c)
{
	struct emulator *emu = c->rq->emu;
	size_t n = json_object_size(emu->firewalls), i = 0;
	json_t **all = xcalloc(n + 1, sizeof *all), *items = json_array(), *fw, *v;
	char *self = xasprintf(GCE_LINK "projects/%s/global/firewalls", emu->project);
	const char *k;

	json_object_foreach (emu->firewalls, k, fw)
		all[i++] = fw;
	qsort(all, n, sizeof *all, by_name);
	for (i = 0; i < n; i++)
		json_array_append(items, all[i]);
	v = jx_pack("{s:s, s:s, s:s}", "kind", "compute#firewallList", "id",
	    "projects/global/firewalls", "selfLink", self);
	if (n > 0)
		json_object_set(v, "items", items);
	json_decref(items);
	emu_reply_json(c->rq, 200, v);
	free(all);
	free(self);
}

/* A rule as Google checks it: its name, exactly one of allowed and denied, a priority. */
static bool
valid(struct call *c, json_t *fw)
{
	const char *name = jx_str(fw, "name");
	json_t *prio = json_object_get(fw, "priority");
	bool allowed = json_array_size(json_object_get(fw, "allowed")) > 0;
	bool denied = json_array_size(json_object_get(fw, "denied")) > 0;

	if (!compute_name_ok(c->rq, "resource.name", name))
		return false;
	if (allowed == denied) {
		compute_bad_field(c->rq, "resource", "",
		    "Exactly one of 'allowed' or 'denied' must be specified.");
		return false;
	}
	if (prio != NULL && (json_integer_value(prio) < 0 || json_integer_value(prio) > 65535)) {
		compute_bad_field(c->rq, "resource.priority", "", "Must be from 0 to 65535.");
		return false;
	}
	return jx_str(fw, "network") == NULL ||
	    compute_network_ok(c->rq, "resource.network", jx_str(fw, "network"));
}

/* The change made: a global operation, DONE. */
static void
answer(struct call *c, const char *type, json_t *fw, const char *request_id)
{
	struct emulator *emu = c->rq->emu;
	struct op *op = compute_op_new(&emu->global, type, "firewalls", jx_str(fw, "name"),
	    jx_str(fw, "id"), request_id, rq_user(c->rq));

	compute_op_done(op, NULL, 0, NULL);
	emu_reply_json(c->rq, 200, compute_op_json(op));
}

void
firewall_insert(struct call *c)
{
	struct emulator *emu = c->rq->emu;
	const char *request_id;
	json_t *fw;

	if (!compute_request_id(c->rq, &request_id) ||
	    (fw = compute_read_body(c->rq, "Firewall")) == NULL)
		return;
	if (!valid(c, fw)) {
		json_decref(fw);
		return;
	}
	if (json_object_get(emu->firewalls, jx_str(fw, "name")) != NULL) {
		emu_error(c->rq, 409, "alreadyExists",
		    "The resource 'projects/%s/global/firewalls/%s' already exists", emu->project,
		    jx_str(fw, "name"));
		json_decref(fw);
		return;
	}
	store(emu, fw);
	answer(c, "insert", fw, request_id);
}

/* firewalls.patch: the fields given replace the rule's; its name and id stay. */
void
firewall_patch(struct call *c)
{
	const char *request_id, *k;
	json_t *fw, *change, *merged, *v;

	if (!compute_request_id(c->rq, &request_id) || (fw = find(c)) == NULL ||
	    (change = compute_read_body(c->rq, "Firewall")) == NULL)
		return;
	merged = json_deep_copy(fw);
	json_object_foreach (change, k, v)
		if (strcmp(k, "name") != 0 && strcmp(k, "id") != 0)
			json_object_set(merged, k, v);
	if (json_object_get(change, "allowed") != NULL)
		json_object_del(merged, "denied");
	if (json_object_get(change, "denied") != NULL)
		json_object_del(merged, "allowed");
	if (valid(c, merged)) {
		char *link = ref_link(c->rq->emu, jx_str(merged, "network"));

		json_object_set_new(merged, "network", json_string(link));
		json_object_clear(fw);
		json_object_update(fw, merged);
		answer(c, "patch", fw, request_id);
		free(link);
	}
	json_decref(merged);
	json_decref(change);
}

void
firewall_delete(struct call *c)
{
	const char *request_id;
	json_t *fw;

	if (!compute_request_id(c->rq, &request_id) || (fw = find(c)) == NULL)
		return;
	json_incref(fw);
	json_object_del(c->rq->emu->firewalls, c->name);
	answer(c, "delete", fw, request_id);
	json_decref(fw);
}
