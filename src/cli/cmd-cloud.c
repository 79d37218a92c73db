/*
 * spillway cloud VERB: Compute Engine directly, through spillway's client and
 * credentials, for checking a setup. It keeps no record and consults no
 * budget; creating a VM asks for --yes.
 *
 *	cloud list [--zones Z,...]        instances labelled managed-by=spillway
 *	cloud get NAME                     one instance
 *	cloud create NAME --yes [--no-wait] a VM as the configuration describes it: its
 *	                                   machine, image, disk, network tags and lifetime;
 *	                                   not its startup script (no backend is deployed) nor
 *	                                   spillway's owner label (no daemon takes it over)
 *	cloud delete NAME [--no-wait]
 *	cloud machine-type [TYPE]          vCPUs and memory
 *	cloud zones                        the zones of the configured region
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "cli/cmd.h"
#include "cloud/connect.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define DEFAULT_TIMEOUT_S 300
#define OWNER_KEY         "managed-by"
#define OWNER_VALUE       "spillway"

enum { OPT_ZONES = 256, OPT_NO_WAIT, OPT_TIMEOUT };

struct run {
	uv_loop_t loop;
	struct clock clock;
	struct cloud_conn conn;
	const struct config *cfg;
	const struct args *args;
	const char *verb;
	const char *name;
	const char *zone;
	bool json;
	bool wait;
	int64_t deadline;
	int status;
	char **zones;
	char *op_name;
};

static void
report(struct run *r, const struct cloud_error *e, const char *what)
{
	char *text = cloud_error_text(e);

	fprintf(stderr, "spillway cloud: %s: %s\n", what, text);
	free(text);
	r->status = EXIT_FAIL;
}

static void
print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2));

	puts(s);
	free(s);
	json_decref(v);
}

static json_t *
instance_json(const struct cloud_instance *in)
{
	json_t *labels = json_object();
	char created[RFC3339_LEN] = "";

	for (size_t i = 0; i < in->nlabels; i++)
		json_object_set_new(labels, in->labels[i].key, json_string(in->labels[i].value));
	if (in->created_ms > 0)
		time_rfc3339(in->created_ms, 0, created);
	return jx_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:b, s:I, s:s, s:o}", "name", in->name,
	    "zone", in->zone, "status", in->status, "machine_type", in->machine_type, "nat_ip",
	    in->nat_ip, "internal_ip", in->internal_ip, "spot", in->spot, "max_run_seconds",
	    (json_int_t)in->max_run_s, "created", created, "labels", labels);
}

/* --- list --- */

static void
on_list(const struct cloud_error *e, const struct cloud_instance *list, size_t n, void *arg)
{
	struct run *r = arg;

	if (e->code != CLOUD_OK) {
		report(r, e, "cannot list instances");
		return;
	}
	if (r->json) {
		json_t *items = json_array();

		for (size_t i = 0; i < n; i++)
			json_array_append_new(items, instance_json(&list[i]));
		print_json(jx_pack("{s:i, s:o}", "schema_version", 1, "instances", items));
		return;
	}
	if (n == 0) {
		printf("no instances labelled %s=%s in %zu zone(s)\n", OWNER_KEY, OWNER_VALUE,
		    str_list_len(r->zones));
		return;
	}
	printf("%-40s %-16s %-13s %-16s %s\n", "NAME", "ZONE", "STATUS", "MACHINE", "EXTERNAL IP");
	for (size_t i = 0; i < n; i++)
		printf("%-40s %-16s %-13s %-16s %s\n", list[i].name, list[i].zone, list[i].status,
		    list[i].machine_type ? list[i].machine_type : "-",
		    list[i].nat_ip ? list[i].nat_ip : "-");
}

static void
on_zones_then_list(const struct cloud_error *e, const char *const *zones, size_t n, void *arg)
{
	struct run *r = arg;
	struct cloud *c = r->conn.cloud;

	if (e->code != CLOUD_OK) {
		report(r, e, "cannot list the zones of the region");
		return;
	}
	if (strcmp(r->verb, "zones") == 0) {
		if (r->json) {
			json_t *list = json_array();

			for (size_t i = 0; i < n; i++)
				json_array_append_new(list, json_string(zones[i]));
			print_json(jx_pack("{s:i, s:s, s:o}", "schema_version", 1, "region",
			    r->cfg->region, "zones", list));
		} else {
			for (size_t i = 0; i < n; i++)
				printf("%s\n", zones[i]);
		}
		return;
	}
	str_list_free(r->zones);
	r->zones = xcalloc(n + 1, sizeof *r->zones);
	for (size_t i = 0; i < n; i++)
		r->zones[i] = xstrdup(zones[i]);
	if (c->ops->list(c, (const char *const *)r->zones, OWNER_KEY, OWNER_VALUE, r->deadline,
	        on_list, r) != 0)
		r->status = EXIT_USAGE;
}

/* --- get, create, delete --- */

static void
on_get(const struct cloud_error *e, const struct cloud_instance *in, void *arg)
{
	struct run *r = arg;

	if (e->code != CLOUD_OK) {
		report(r, e, "cannot get the instance");
		return;
	}
	if (r->json) {
		print_json(instance_json(in));
		return;
	}
	printf("name         %s\nzone         %s\nstatus       %s\nmachine      %s (%s)\n"
	       "external IP  %s\ninternal IP  %s\nmax run      %" PRId64 " s\n",
	    in->name, in->zone, in->status, in->machine_type, in->spot ? "Spot" : "standard",
	    in->nat_ip ? in->nat_ip : "-", in->internal_ip ? in->internal_ip : "-", in->max_run_s);
	for (size_t i = 0; i < in->nlabels; i++)
		printf("label        %s=%s\n", in->labels[i].key, in->labels[i].value);
}

static void
on_done(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct run *r = arg;
	struct cloud *c = r->conn.cloud;

	if (e->code != CLOUD_OK) {
		report(r, e,
		    strcmp(r->verb, "create") == 0 ? "the instance was not created"
		                                   : "the instance was not deleted");
		return;
	}
	if (strcmp(r->verb, "create") == 0) {
		if (!r->json)
			printf("created %s in %s\n", r->name, r->zone);
		c->ops->get(c, r->zone, r->name, r->deadline, on_get, r);
	} else if (r->json) {
		print_json(jx_pack("{s:i, s:s, s:s, s:s}", "schema_version", 1, "deleted", r->name,
		    "zone", r->zone, "operation", r->op_name != NULL ? r->op_name : ""));
	} else {
		printf("deleted %s in %s\n", r->name, r->zone);
	}
}

static void
on_started(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct run *r = arg;
	struct cloud *c = r->conn.cloud;
	bool create = strcmp(r->verb, "create") == 0;

	if (e->code != CLOUD_OK) {
		report(r, e, create ? "cannot create the instance" : "cannot delete the instance");
		return;
	}
	if (op->name == NULL) {
		printf("%s was already gone\n", r->name);
		return;
	}
	r->op_name = xstrdup(op->name);
	if (!r->wait) {
		if (r->json)
			print_json(jx_pack("{s:i, s:s, s:s, s:b}", "schema_version", 1, "operation",
			    op->name, "zone", op->zone, "done", op->done));
		else
			printf("%s %s: operation %s started\n", create ? "creating" : "deleting",
			    r->name, op->name);
		return;
	}
	if (!r->json)
		printf("%s %s in %s (operation %s)...\n", create ? "creating" : "deleting", r->name,
		    r->zone, op->name);
	c->ops->wait(c, op->zone, op->name, r->deadline, on_done, r);
}

/*
 * As the daemon's VMs are made, for checking a setup (the firewall by the network tags,
 * the image, quota for the machine and disk), without what makes one of them: the startup
 * script (no backend is deployed) and the owner label (no daemon takes it over or deletes
 * it as an orphan).
 */
static int
start_create(struct run *r)
{
	const struct config *cfg = r->cfg;
	static const struct cloud_kv labels[] = {{OWNER_KEY, OWNER_VALUE}};
	static const char *scopes[] = {"https://www.googleapis.com/auth/cloud-platform", NULL};
	char **tags = str_split(cfg->network_tags, ',', NULL);
	struct cloud_instance_spec s = {
	    .name = r->name,
	    .zone = r->zone,
	    .machine_type = cfg->machine_type,
	    .spot = cfg->use_spot,
	    .image = cfg->image,
	    .disk_gb = (int)cfg->disk_gb,
	    .disk_type = cfg->disk_type,
	    .tags = (const char *const *)tags,
	    .labels = labels,
	    .nlabels = 1,
	    .service_account = "default",
	    .scopes = scopes,
	    .max_run_s = (int64_t)(cfg->max_lifetime_hours * 3600),
	    .termination_action = "DELETE",
	    .external_ip = true,
	};
	char request_id[UUID_LEN];
	int error;

	if (!args_has(r->args, 'y')) {
		fprintf(stderr,
		    "spillway cloud: 'cloud create' makes a VM outside spillway's budget "
		    "and records (it is deleted by Compute Engine after %.2f h); pass --yes "
		    "to go ahead\n",
		    cfg->max_lifetime_hours);
		str_list_free(tags);
		return -EPERM;
	}
	uuid_v4(request_id);
	error = r->conn.cloud->ops->create(
	    r->conn.cloud, &s, request_id, r->deadline, on_started, r);
	str_list_free(tags);
	return error;
}

static void
on_machine(const struct cloud_error *e, const struct cloud_machine_type *mt, void *arg)
{
	struct run *r = arg;

	if (e->code != CLOUD_OK) {
		report(r, e, "cannot get the machine type");
		return;
	}
	if (r->json)
		print_json(jx_pack("{s:i, s:s, s:i, s:i, s:b}", "schema_version", 1, "name",
		    mt->name, "vcpus", mt->vcpus, "memory_mb", mt->memory_mb, "shared_core",
		    mt->shared_core));
	else
		printf("%s: %d vCPUs, %d MiB%s\n", mt->name, mt->vcpus, mt->memory_mb,
		    mt->shared_core ? " (shared core)" : "");
}

static int
start(struct run *r)
{
	struct cloud *c = r->conn.cloud;
	const char *v = r->verb;

	if (strcmp(v, "list") == 0) {
		const char *z = args_get(r->args, OPT_ZONES);
		struct buf b = BUF_INIT(4096);

		if (z != NULL) {
			r->zones = str_split(z, ',', NULL);
		} else if (*r->cfg->fallback_zones != '\0') {
			buf_printf(&b, "%s,%s", r->cfg->zone, r->cfg->fallback_zones);
			r->zones = str_split(buf_str(&b), ',', NULL);
		} else {
			buf_release(&b);
			return c->ops->zones(c, r->cfg->region, r->deadline, on_zones_then_list, r);
		}
		buf_release(&b);
		return c->ops->list(c, (const char *const *)r->zones, OWNER_KEY, OWNER_VALUE,
		    r->deadline, on_list, r);
	}
	if (strcmp(v, "zones") == 0)
		return c->ops->zones(c, r->cfg->region, r->deadline, on_zones_then_list, r);
	if (strcmp(v, "machine-type") == 0)
		return c->ops->machine_type(c, r->zone,
		    r->name != NULL ? r->name : r->cfg->machine_type, r->deadline, on_machine, r);
	if (strcmp(v, "get") == 0)
		return c->ops->get(c, r->zone, r->name, r->deadline, on_get, r);
	if (strcmp(v, "create") == 0)
		return start_create(r);
	if (strcmp(v, "delete") == 0) {
		char request_id[UUID_LEN];

		uuid_v4(request_id);
		return c->ops->destroy(c, r->zone, r->name, request_id, r->deadline, on_started, r);
	}
	return -ENOENT;
}

static int
exec_cloud(struct cmd_ctx *ctx, const struct args *a)
{
	const struct cmd_entry *e = &cmd_cloud_entry;
	static const char *verbs[] = {"list", "get", "create", "delete", "machine-type", "zones"};
	static const int needs_name[] = {0, 1, 1, 1, -1, 0}; /* -1: optional */
	struct run r = {0};
	long long timeout = DEFAULT_TIMEOUT_S;
	char *cause = NULL;
	size_t i;
	int error;

	r.cfg = &ctx->cfg;
	r.args = a;
	r.verb = a->pos[0];
	for (i = 0; i < nitems(verbs) && strcmp(verbs[i], r.verb) != 0; i++)
		;
	if (i == nitems(verbs))
		return cmd_usage_error(e, "unknown verb '%s'", r.verb);
	if ((needs_name[i] == 1 && a->npos != 2) || (needs_name[i] == 0 && a->npos != 1) ||
	    a->npos > 2)
		return cmd_usage_error(e, "'%s' takes %s", r.verb,
		    needs_name[i] == 1  ? "an instance name"
		        : needs_name[i] ? "at most a type"
		                        : "no argument");
	r.name = a->npos == 2 ? a->pos[1] : NULL;
	r.zone = ctx->cfg.zone;
	r.json = args_has(a, 'j');
	r.wait = !args_has(a, OPT_NO_WAIT);
	if (args_has(a, OPT_TIMEOUT) &&
	    cmd_int_arg(e, "--timeout", args_get(a, OPT_TIMEOUT), 1, 86400, &timeout) != 0)
		return EXIT_USAGE;
	clock_real(&r.clock);
	r.deadline = clock_now_ms(&r.clock) + timeout * 1000;
	uv_loop_init(&r.loop);
	if (cloud_connect(&r.loop, &r.clock, &ctx->cfg, NULL, &r.conn, &cause) != 0) {
		fprintf(stderr, "spillway cloud: %s\n", cause);
		free(cause);
		r.status = EXIT_USAGE;
	} else if ((error = start(&r)) != 0) {
		if (error != -EPERM)
			fprintf(stderr,
			    "spillway cloud: invalid name or zone: names are 1 to 63 "
			    "lowercase letters, digits and hyphens, starting with a letter\n");
		r.status = EXIT_USAGE;
	} else {
		uv_run(&r.loop, UV_RUN_DEFAULT);
	}
	cloud_disconnect(&r.conn);
	uv_run(&r.loop, UV_RUN_DEFAULT);
	uv_loop_close(&r.loop);
	str_list_free(r.zones);
	free(r.op_name);
	return r.status;
}

static const struct option options[] = {
    {"json", no_argument, NULL, 'j'},
    {"yes", no_argument, NULL, 'y'},
    {"zones", required_argument, NULL, OPT_ZONES},
    {"no-wait", no_argument, NULL, OPT_NO_WAIT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {0},
};

const struct cmd_entry cmd_cloud_entry = {
    .name = "cloud",
    .usage = "list [--zones Z,...] | get NAME | create NAME --yes [--no-wait] |\n"
             "        delete NAME [--no-wait] | machine-type [TYPE] | zones\n"
             "        [--json] [--timeout SECONDS]",
    .summary = "Compute Engine directly, through spillway's client (no budget, no records)",
    .options = options,
    .min_args = 1,
    .max_args = 2,
    .flags = CMD_CONFIG,
    .exec = exec_cloud,
};
