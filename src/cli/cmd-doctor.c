/*
 * spillway doctor [--json]: the original troubleshooting list as checks that
 * run, each an ok, warn or fail line that says what to do. Exit 1 if any
 * check fails. Read-only: nothing is created, nothing is spent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <uv.h>

#include "api/client.h"
#include "cli/cmd.h"
#include "cli/link.h"
#include "cli/report.h"
#include "cloud/connect.h"
#include "ledger/ledger.h"
#include "pressure/monitor.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define CALL_MS       15000
#define GOOGLE_CRM    "https://cloudresourcemanager.googleapis.com/v1/"
#define GOOGLE_GCE    "https://compute.googleapis.com/compute/v1/"
#define ANSWER_MAX    (4 << 20)
#define STATE_FULL_KB 1024        /* less free is a full state directory */
#define STATE_LOW_KB  (64 * 1024) /* less is worth a warning */

static const char *const permissions[] = {"compute.instances.create", "compute.instances.delete",
    "compute.instances.get", "compute.instances.list", "compute.zones.get",
    "compute.machineTypes.get"};

struct doctor {
	struct cmd_ctx *ctx;
	uv_loop_t loop;
	struct clock clock;
	struct cloud_conn conn;
	bool connected;
	char *token;
	json_t *checks; /* --json */
	bool json, color;
	int fails, warns;
	/* the call in flight */
	bool done;
	int error;
	char *cause;
	json_t *answer;
	long status;
	int vcpus;
	char **zones;
};

static void say(struct doctor *, const char *verdict, const char *check, const char *fmt, ...)
    PRINTFLIKE(4, 5);

static void
say(struct doctor *d, const char *verdict, const char *check, const char *fmt, ...)
{
	static const struct {
		const char *verdict, *color;
	} colors[] = {{"ok", "\033[32m"}, {"warn", "\033[33m"}, {"fail", "\033[31m"}, {"skip", ""}};
	const char *color = "";
	char *text;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) == -1)
		fatalx("out of memory");
	va_end(ap);
	d->fails += strcmp(verdict, "fail") == 0;
	d->warns += strcmp(verdict, "warn") == 0;
	for (size_t i = 0; i < nitems(colors); i++)
		if (strcmp(colors[i].verdict, verdict) == 0 && d->color)
			color = colors[i].color;
	if (d->json)
		json_array_append_new(d->checks,
		    json_pack(
		        "{s:s, s:s, s:s}", "check", check, "verdict", verdict, "detail", text));
	else
		printf(
		    "%s%-4s%s  %-12s %s\n", color, verdict, *color ? "\033[0m" : "", check, text);
	free(text);
}

/* --- waiting for one call at a time: a checklist, not a daemon --- */

static void
wait_done(struct doctor *d)
{
	while (!d->done)
		uv_run(&d->loop, UV_RUN_ONCE);
	d->done = false;
}

static void
on_token(int error, const char *token, const char *cause, void *arg)
{
	struct doctor *d = arg;

	d->error = error;
	d->token = token != NULL ? xstrdup(token) : NULL;
	free(d->cause);
	d->cause = cause != NULL ? xstrdup(cause) : NULL;
	d->done = true;
}

static void
on_http(const struct http_response *r, void *arg)
{
	struct doctor *d = arg;
	char *why = NULL;

	d->status = r->status;
	d->error = r->error;
	if (r->error != 0)
		d->cause = xstrdup(r->error_text);
	else if (jx_parse(r->body, r->len, &d->answer, &why) != 0)
		d->cause = why;
	else if (r->status != 200)
		d->cause = xstrdup(jx_str(d->answer, "error.message") != NULL
		        ? jx_str(d->answer, "error.message")
		        : "an error without a message");
	d->done = true;
}

/* An authenticated call, for what the provider interface has no verb for. */
static int
call(struct doctor *d, const char *method, const char *url, const char *body)
{
	char *auth = xasprintf("Authorization: Bearer %s", d->token);
	const char *headers[] = {auth, "Content-Type: application/json", NULL};
	struct http_request req = {.method = method,
	    .url = url,
	    .headers = headers,
	    .body = body,
	    .len = body != NULL ? strlen(body) : 0,
	    .timeout_ms = CALL_MS,
	    .max_response = ANSWER_MAX};

	json_decref(d->answer);
	d->answer = NULL;
	free(d->cause);
	d->cause = NULL;
	if (http_send(d->conn.http, &req, on_http, d, NULL) != 0) {
		d->error = -EINVAL;
		d->cause = xasprintf("cannot send %s", url);
	} else {
		wait_done(d);
	}
	free(auth);
	return d->error != 0 || d->status != 200 ? -EIO : 0;
}

static void
on_zones(const struct cloud_error *e, const char *const *zones, size_t n, void *arg)
{
	struct doctor *d = arg;

	d->error = e->code == CLOUD_OK ? 0 : -EIO;
	free(d->cause);
	d->cause = e->code != CLOUD_OK ? cloud_error_text(e) : NULL;
	d->zones = xcalloc(n + 1, sizeof *d->zones);
	for (size_t i = 0; i < n; i++)
		d->zones[i] = xstrdup(zones[i]);
	d->done = true;
}

static void
on_machine(const struct cloud_error *e, const struct cloud_machine_type *mt, void *arg)
{
	struct doctor *d = arg;

	d->error = e->code == CLOUD_OK ? 0 : -EIO;
	free(d->cause);
	d->cause = e->code != CLOUD_OK ? cloud_error_text(e) : NULL;
	if (e->code == CLOUD_OK)
		d->vcpus = mt->vcpus;
	d->done = true;
}

/* --- the checks --- */

static bool
credentials(struct doctor *d)
{
	const struct config *cfg = &d->ctx->cfg;
	char *cause = NULL;

	if (cloud_connect(&d->loop, &d->clock, cfg, NULL, &d->conn, &cause) != 0) {
		say(d, "fail", "credentials", "%s", cause); /* it says what to do */
		free(cause);
		return false;
	}
	d->connected = true;
	say(d, "ok", "credentials", "%s, from %s", auth_account(d->conn.auth),
	    auth_source(d->conn.auth));
	auth_refresh(d->conn.auth, clock_now_ms(&d->clock) + CALL_MS, on_token, d);
	wait_done(d);
	if (d->error != 0) {
		say(d, "fail", "token",
		    "%s; check the credentials above (a revoked key, an expired "
		    "login: run 'gcloud auth application-default login' again)",
		    d->cause);
		return false;
	}
	say(d, "ok", "token", "an access token was issued for the compute scope");
	return true;
}

static void
project_and_zone(struct doctor *d)
{
	const struct config *cfg = &d->ctx->cfg;
	bool found = false;

	if (*cfg->project == '\0') {
		say(d, "fail", "project",
		    "no project: set GCP_PROJECT_ID or gcloud config set project");
		return;
	}
	if (d->conn.cloud->ops->zones(
	        d->conn.cloud, cfg->region, clock_now_ms(&d->clock) + CALL_MS, on_zones, d) != 0) {
		say(d, "fail", "project", "gcp.region '%s' cannot be asked for", cfg->region);
		return;
	}
	wait_done(d);
	if (d->error != 0) {
		say(d, "fail", "project",
		    "project %s, region %s: %s; check GCP_PROJECT_ID and GCP_REGION", cfg->project,
		    cfg->region, d->cause);
		return;
	}
	for (char **z = d->zones; *z != NULL; z++)
		found |= strcmp(*z, cfg->zone) == 0;
	if (!found)
		say(d, "fail", "zone",
		    "%s is not a zone of %s that is UP; set GCP_ZONE to one of them", cfg->zone,
		    cfg->region);
	else
		say(d, "ok", "project", "project %s, zone %s (%zu zones UP in %s)", cfg->project,
		    cfg->zone, str_list_len(d->zones), cfg->region);
}

/* Resource Manager beside Google's Compute Engine, or the same server as another endpoint. */
static char *
crm_endpoint(const struct config *cfg)
{
	const char *e = cfg->compute_endpoint;
	const char *host = strstr(e, "://"), *path;

	if (strcmp(e, GOOGLE_GCE) == 0 || host == NULL)
		return xstrdup(GOOGLE_CRM);
	path = strchr(host + 3, '/');
	return xasprintf("%.*s/v1/", (int)(path != NULL ? path - e : (ptrdiff_t)strlen(e)), e);
}

static void
grants(struct doctor *d)
{
	const struct config *cfg = &d->ctx->cfg;
	char *base = crm_endpoint(cfg), *url, *body;
	json_t *asked = json_array(), *granted, *req;
	struct buf missing = BUF_INIT(4096);
	size_t i;

	for (i = 0; i < nitems(permissions); i++)
		json_array_append_new(asked, json_string(permissions[i]));
	req = json_pack("{s:o}", "permissions", asked);
	body = jx_dumps(req);
	json_decref(req);
	url = xasprintf("%sprojects/%s:testIamPermissions", base, cfg->project);
	if (call(d, "POST", url, body) != 0) {
		say(d, "fail", "permissions",
		    "cannot test them: %s (enable the Cloud Resource Manager "
		    "API, or grant resourcemanager.projects.get)",
		    d->cause);
		goto out;
	}
	granted = json_object_get(d->answer, "permissions");
	for (i = 0; i < nitems(permissions); i++) {
		bool has = false;
		size_t k;
		json_t *p;

		json_array_foreach (granted, k, p)
			has |= strcmp(json_string_value(p), permissions[i]) == 0;
		if (!has)
			buf_printf(&missing, "%s%s", missing.len ? ", " : "", permissions[i]);
	}
	if (missing.len > 0)
		say(d, "fail", "permissions",
		    "missing %s; grant roles/compute.instanceAdmin.v1 to %s", buf_str(&missing),
		    auth_account(d->conn.auth));
	else
		say(d, "ok", "permissions", "all %zu that spillway needs are granted",
		    nitems(permissions));
out:
	buf_release(&missing);
	free(body);
	free(url);
	free(base);
}

static void
quota(struct doctor *d)
{
	const struct config *cfg = &d->ctx->cfg;
	char *url;
	size_t i;
	json_t *q, *cpus = NULL;

	if (d->conn.cloud->ops->machine_type(d->conn.cloud, cfg->zone, cfg->machine_type,
	        clock_now_ms(&d->clock) + CALL_MS, on_machine, d) != 0) {
		say(d, "fail", "quota", "machine type '%s' cannot be asked for", cfg->machine_type);
		return;
	}
	wait_done(d);
	if (d->error != 0) {
		say(d, "fail", "machine",
		    "%s in %s: %s; set GCP_VM_MACHINE_TYPE to one the zone has", cfg->machine_type,
		    cfg->zone, d->cause);
		return;
	}
	url =
	    xasprintf("%sprojects/%s/regions/%s", cfg->compute_endpoint, cfg->project, cfg->region);
	if (call(d, "GET", url, NULL) != 0) {
		say(d, "warn", "quota", "cannot read the quotas of %s: %s", cfg->region, d->cause);
		free(url);
		return;
	}
	free(url);
	/* Spot VMs count against PREEMPTIBLE_CPUS where the project has that quota. */
	json_array_foreach (json_object_get(d->answer, "quotas"), i, q) {
		const char *metric = jx_str(q, "metric");

		if (metric != NULL && strcmp(metric, "CPUS") == 0 && cpus == NULL)
			cpus = q;
		if (metric != NULL && strcmp(metric, "PREEMPTIBLE_CPUS") == 0 && cfg->use_spot &&
		    json_number_value(json_object_get(q, "limit")) > 0)
			cpus = q;
	}
	if (cpus == NULL) {
		say(d, "warn", "quota", "%s lists no CPU quota", cfg->region);
		return;
	}
	{
		double limit = json_number_value(json_object_get(cpus, "limit"));
		double usage = json_number_value(json_object_get(cpus, "usage"));
		double need = (double)d->vcpus * (double)cfg->max_concurrent;

		if (limit - usage < d->vcpus)
			say(d, "fail", "quota",
			    "%s in %s: %.0f of %.0f used, a %s needs %d; ask for more "
			    "quota or pick a smaller machine type",
			    jx_str(cpus, "metric"), cfg->region, usage, limit, cfg->machine_type,
			    d->vcpus);
		else if (limit - usage < need)
			say(d, "warn", "quota",
			    "%s in %s: %.0f of %.0f used; room for %d of the %lld VMs "
			    "GCP_VM_MAX_CONCURRENT allows",
			    jx_str(cpus, "metric"), cfg->region, usage, limit,
			    (int)((limit - usage) / d->vcpus), (long long)cfg->max_concurrent);
		else
			say(d, "ok", "quota",
			    "%s in %s: %.0f of %.0f used; %lld %s (%d vCPUs each) fit",
			    jx_str(cpus, "metric"), cfg->region, usage, limit,
			    (long long)cfg->max_concurrent, cfg->machine_type, d->vcpus);
	}
}

static bool
rule_opens_port(const json_t *rule, long long port)
{
	size_t i, k;
	json_t *a, *p;

	json_array_foreach (json_object_get(rule, "allowed"), i, a) {
		const char *proto = jx_str(a, "IPProtocol");
		json_t *ports = json_object_get(a, "ports");

		if (proto == NULL || (strcmp(proto, "tcp") != 0 && strcmp(proto, "all") != 0))
			continue;
		if (json_array_size(ports) == 0)
			return true;
		json_array_foreach (ports, k, p) {
			long long lo = 0, hi = 0;
			const char *s = json_string_value(p);

			if (s != NULL && sscanf(s, "%lld-%lld", &lo, &hi) == 2 && lo <= port &&
			    port <= hi)
				return true;
			if (s != NULL && sscanf(s, "%lld", &lo) == 1 && lo == port)
				return true;
		}
	}
	return false;
}

static bool
rule_targets_us(const json_t *rule, const char *tags)
{
	json_t *targets = json_object_get(rule, "targetTags"), *t;
	char **ours = str_split(tags, ',', NULL);
	bool hit = json_array_size(targets) == 0; /* no target tags: every instance */
	size_t i;

	json_array_foreach (targets, i, t)
		for (char **o = ours; *o != NULL; o++)
			hit |= strcmp(str_trim(*o), json_string_value(t)) == 0;
	str_list_free(ours);
	return hit;
}

/*
 * The agent's port must be open to us, and to us alone; the backend's need
 * not be open at all (the agent passes its traffic, docs/offload.md), and a
 * rule that opens it to everyone exposes a backend without authentication.
 */
static void
firewall(struct doctor *d)
{
	const struct config *cfg = &d->ctx->cfg;
	char *url =
	    xasprintf("%sprojects/%s/global/firewalls", cfg->compute_endpoint, cfg->project);
	const json_t *open = NULL, *world = NULL, *backend = NULL;
	size_t i, k;
	json_t *rule, *src;

	if (call(d, "GET", url, NULL) != 0) {
		say(d, "warn", "firewall", "cannot list the firewall rules: %s", d->cause);
		free(url);
		return;
	}
	free(url);
	json_array_foreach (json_object_get(d->answer, "items"), i, rule) {
		const char *dir = jx_str(rule, "direction");
		bool agent = rule_opens_port(rule, cfg->agent_port);

		if ((dir != NULL && strcmp(dir, "INGRESS") != 0) ||
		    json_is_true(json_object_get(rule, "disabled")) ||
		    !rule_targets_us(rule, cfg->network_tags))
			continue;
		if (rule_opens_port(rule, cfg->backend_port))
			backend = rule;
		if (!agent)
			continue;
		open = rule;
		json_array_foreach (json_object_get(rule, "sourceRanges"), k, src)
			if (strcmp(json_string_value(src), "0.0.0.0/0") == 0)
				world = rule;
	}
	if (open == NULL)
		say(d, "fail", "firewall",
		    "no rule lets this machine reach tcp:%lld (the VMs' agent) on VMs tagged %s: "
		    "gcloud compute firewall-rules create spillway-agent --allow tcp:%lld "
		    "--target-tags %s --source-ranges YOUR_IP/32",
		    (long long)cfg->agent_port, cfg->network_tags, (long long)cfg->agent_port,
		    cfg->network_tags);
	else if (backend != NULL)
		say(d, "warn", "firewall",
		    "rule %s opens the backend's port tcp:%lld, which nothing needs: spillway "
		    "reaches the backend through the agent's TLS port; remove tcp:%lld from it",
		    jx_str(backend, "name"), (long long)cfg->backend_port,
		    (long long)cfg->backend_port);
	else if (world != NULL)
		say(d, "warn", "firewall",
		    "rule %s opens tcp:%lld to 0.0.0.0/0: anyone can try the agent (it lets "
		    "only this daemon in); narrow its --source-ranges to your address",
		    jx_str(world, "name"), (long long)cfg->agent_port);
	else
		say(d, "ok", "firewall",
		    "tcp:%lld (the agent, TLS) is open to VMs tagged %s, not to everyone; the "
		    "backend's port is closed",
		    (long long)cfg->agent_port, cfg->network_tags);
}

/*
 * The state directory: writable, with room for the ledger to grow, and a
 * ledger that is sound; a running daemon says whether its ledger takes what
 * it writes (status.ledger), else the file is checked here.
 */
static void
state(struct doctor *d, const json_t *status)
{
	const struct config *cfg = &d->ctx->cfg;
	const char *problem = jx_str(status, "ledger.problem");
	struct statvfs fs;
	long long free_kb;
	struct ledger *l = NULL;
	char *cause = NULL;

	make_dirs(cfg->state_dir, 0700);
	if (access(cfg->state_dir, W_OK) != 0) {
		say(d, "fail", "state",
		    "%s is not writable (%s): fix its owner or set SPILLWAY_STATE_DIR",
		    cfg->state_dir, strerror(errno));
		return;
	}
	if (statvfs(cfg->state_dir, &fs) == 0) {
		free_kb = (long long)fs.f_bavail * (long long)fs.f_frsize / 1024;
		if (free_kb < STATE_FULL_KB)
			say(d, "fail", "state",
			    "%s has %lld KiB free: the ledger cannot take what happens (the daemon "
			    "keeps it in memory meanwhile); free space there",
			    cfg->state_dir, free_kb);
		else if (free_kb < STATE_LOW_KB)
			say(d, "warn", "state", "%s is writable, but has only %lld MiB free",
			    cfg->state_dir, free_kb / 1024);
		else
			say(d, "ok", "state", "%s is writable, %lld MiB free", cfg->state_dir,
			    free_kb / 1024);
	}
	if (problem != NULL) {
		say(d, "fail", "ledger", "the daemon's ledger: %s (%lld writes wait in memory)",
		    problem, (long long)json_integer_value(jx_get(status, "ledger.waiting")));
	} else if (status != NULL) {
		say(d, "ok", "ledger", "the daemon's ledger takes what it writes");
	} else if (ledger_open(cfg->state_dir, &l, &cause) != 0 || ledger_check(l, &cause) != 0) {
		say(d, "fail", "ledger", "%s", cause);
	} else {
		say(d, "ok", "ledger", "%s passes its integrity check", ledger_path(l));
	}
	free(cause);
	ledger_close(l);
}

static void
local(struct doctor *d)
{
	const struct config *cfg = &d->ctx->cfg;
	char *dir = xstrdup(cfg->socket_path), *slash = strrchr(dir, '/'), *cause = NULL;
	struct monitor_opts o;
	struct monitor *m;
	json_t *doc = NULL;
	long status;
	int answered;

	if (slash != NULL)
		*slash = '\0';
	answered =
	    client_call(cfg->socket_path, "GET", "/v1/status", NULL, 5000, &status, &doc, &cause);
	state(d, answered == 0 ? doc : NULL);
	if (answered == 0)
		say(d, "ok", "socket", "%s: the daemon answers", cfg->socket_path);
	else if (access(dir, W_OK) == 0 || (access(dir, F_OK) != 0 && errno == ENOENT))
		say(d, "ok", "socket",
		    "%s can be created (no daemon runs: spillway run starts one)",
		    cfg->socket_path);
	else
		say(d, "fail", "socket", "%s: %s; set SPILLWAY_SOCKET to a path of yours",
		    cfg->socket_path, cause != NULL ? cause : strerror(errno));
	json_decref(doc);
	free(cause);
	free(dir);
	/* The monitor as the daemon would start it: it says which mode it gets. */
	monitor_opts_from_config(&o, cfg);
	o.clock = &d->clock;
	o.processes = false;
	if (access("/proc/pressure/memory", F_OK) == 0)
		o.psi_path = "/proc/pressure/memory";
	cause = NULL;
	if (monitor_new(&d->loop, &o, &m, &cause) != 0 || monitor_start(m, &cause) != 0) {
		say(d, "fail", "pressure", "%s", cause);
		free(cause);
		return;
	}
	{
		enum pressure_mode mode = monitor_snapshot(m)->mode;

		say(d, mode == MODE_TRIGGER ? "ok" : "warn", "pressure", "%s: %s",
		    pressure_mode_name(mode), monitor_mode_reason(m));
	}
	monitor_free(m);
}

/* What VMs boot from (docs/images.md): with daemon.image = baked, an image that holds the install.
 */
static void
image(struct doctor *d)
{
	const struct config *cfg = &d->ctx->cfg;
	json_t *doc = NULL;
	const json_t *boot;
	long status;

	if (link_get(d->ctx, "/v1/images", &status, &doc) != 0 || status != 200) {
		say(d, "warn", "image", "the images cannot be read: %s",
		    or_default(jx_str(doc, "error.message"), "no answer"));
		json_decref(doc);
		return;
	}
	boot = json_object_get(doc, "boot");
	if (strcmp(cfg->image, "baked") != 0)
		say(d, "ok", "image", "VMs boot from %s and install the backend there",
		    jx_str(boot, "image"));
	else if (jx_str(boot, "newest") == NULL)
		say(d, "warn", "image",
		    "daemon.image is baked, but no image of family %s is: VMs boot from %s and "
		    "install the backend there (spillway image bake makes one)",
		    cfg->image_family, cfg->image_base);
	else if (json_is_true(json_object_get(boot, "stale")))
		say(d, "warn", "image",
		    "%s is stale: the install settings changed since it was baked, and VMs "
		    "install over it (spillway image bake makes a new one)",
		    jx_str(boot, "newest"));
	else
		say(d, "ok", "image", "VMs boot from %s, which holds the install the settings make",
		    jx_str(boot, "newest"));
	json_decref(doc);
}

static int
exec_doctor(struct cmd_ctx *ctx, const struct args *a)
{
	struct doctor d = {.ctx = ctx, .json = args_has(a, 'j'), .checks = json_array()};

	d.color = !d.json && report_color(stdout);
	uv_loop_init(&d.loop);
	clock_real(&d.clock);
	say(&d, "ok", "config", "%s",
	    ctx->cfg.file != NULL ? ctx->cfg.file
	                          : "no config file: defaults, gcloud, environment");
	if (credentials(&d)) {
		project_and_zone(&d);
		grants(&d);
		quota(&d);
		firewall(&d);
	} else {
		say(&d, "skip", "cloud",
		    "project, zone, permissions, quota and firewall need a token");
	}
	local(&d);
	image(&d);
	if (d.connected)
		cloud_disconnect(&d.conn);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	uv_loop_close(&d.loop);
	if (d.json) {
		json_t *doc = json_pack("{s:i, s:o, s:i, s:i}", "schema_version", 1, "checks",
		    d.checks, "fails", d.fails, "warnings", d.warns);

		report_json(stdout, doc);
		json_decref(doc);
	} else {
		json_decref(d.checks);
		printf("%d failed, %d warning%s\n", d.fails, d.warns, d.warns == 1 ? "" : "s");
	}
	json_decref(d.answer);
	free(d.cause);
	free(d.token);
	str_list_free(d.zones);
	return d.fails > 0 ? EXIT_FAIL : EXIT_OK;
}

static const struct option options[] = {
    {"json", no_argument, NULL, 'j'},
    {0},
};

const struct cmd_entry cmd_doctor_entry = {
    .name = "doctor",
    .usage = "[--json]",
    .summary = "check credentials, project, permissions, quota, firewall, state and PSI",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_doctor,
};
