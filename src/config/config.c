#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "config/config.h"
#include "config/internal.h"
#include "net/http.h"
#include "util/buf.h"
#include "util/ini.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define CONFIG_FILE_MAX (1024 * 1024)

#define BOOL_ALLOWED    "true or false (also yes/no, on/off, 1/0)"

/* The one table of defaults. ${VAR:-fallback} in a default is expanded at load. */
const struct key config_keys[] = {
    {"gcp.enabled", "GCP_VM_ENABLED", T_BOOL, OFF(enabled), "true", 0, 0, NULL, BOOL_ALLOWED,
        "create VMs automatically when memory pressure persists", false},
    {"gcp.project", "GCP_PROJECT_ID", T_STRING, OFF(project), "", 0, 0, check_project,
        "a project ID: 6 to 30 lowercase letters, digits and hyphens, starting with a letter",
        "Google Cloud project (empty: from the credentials or gcloud)", false},
    {"gcp.region", "GCP_REGION", T_STRING, OFF(region), "us-central1", 0, 0, check_region,
        "a region name such as us-central1", "region of the VMs", false},
    {"gcp.zone", "GCP_ZONE", T_STRING, OFF(zone), "us-central1-a", 0, 0, check_zone,
        "a zone name such as us-central1-a", "primary zone", false},
    {"gcp.fallback_zones", "SPILLWAY_FALLBACK_ZONES", T_STRING, OFF(fallback_zones), "", 0, 0,
        check_zones, "comma-separated zones of the same region",
        "zones tried on a stockout (empty: the region's other zones)", false},
    {"gcp.machine_type", "GCP_VM_MACHINE_TYPE", T_STRING, OFF(machine_type), "e2-highmem-4", 0, 0,
        check_machine_type, "a machine type name such as e2-highmem-4", "machine type", false},
    {"gcp.use_spot", "GCP_VM_USE_SPOT", T_BOOL, OFF(use_spot), "true", 0, 0, NULL, BOOL_ALLOWED,
        "Spot VMs (true) or standard ones", false},
    {"gcp.max_price", "GCP_VM_MAX_PRICE", T_DOUBLE, OFF(max_price), "0.10", 0, 1000, NULL,
        "US dollars per hour, from 0 to 1000", "no VM is created above this price per hour", false},
    {"gcp.daily_budget", "GCP_VM_DAILY_BUDGET", T_DOUBLE, OFF(daily_budget), "5.0", 0, 100000, NULL,
        "US dollars per day, from 0 to 100000", "spend per local calendar day, never exceeded",
        false},
    {"gcp.max_concurrent", "GCP_VM_MAX_CONCURRENT", T_INT, OFF(max_concurrent), "2", 0, 1000, NULL,
        "a whole number from 0 to 1000", "VMs alive or in flight at once", false},
    {"gcp.max_lifetime_hours", "GCP_VM_MAX_LIFETIME_HOURS", T_DOUBLE, OFF(max_lifetime_hours),
        "3.0", 0.01, 2880, NULL, "hours, from 0.01 to 2880 (Compute Engine's 120 days)",
        "hard stop per VM, also sent as its maxRunDuration", false},
    {"gcp.idle_timeout_minutes", "GCP_VM_IDLE_TIMEOUT_MINUTES", T_DOUBLE, OFF(idle_timeout_minutes),
        "30", 1, 10080, NULL, "minutes, from 1 to 10080", "delete a VM after this long idle",
        false},
    {"gcp.health_check_interval", "GCP_VM_HEALTH_CHECK_INTERVAL", T_INT, OFF(health_check_interval),
        "30", 1, 3600, NULL, "seconds, from 1 to 3600", "seconds between monitoring passes", false},
    {"gcp.enable_monitoring", "GCP_VM_ENABLE_MONITORING", T_BOOL, OFF(enable_monitoring), "true", 0,
        0, NULL, BOOL_ALLOWED, "background monitoring of VMs", false},
    {"spillway.backend_port", "SPILLWAY_BACKEND_PORT", T_INT, OFF(backend_port), "8010", 1, 65535,
        NULL, "a TCP port from 1 to 65535", "port of the backend on the VM", false},
    {"backend.git", "SPILLWAY_BACKEND_GIT", T_STRING, OFF(backend_git), "", 0, 0, check_git_url,
        "an https:// or ssh:// URL, user@host:path, file:///path, or empty",
        "git repository of the backend the VM runs (empty: the image runs it)", false},
    {"backend.ref", "SPILLWAY_BACKEND_REF", T_STRING, OFF(backend_ref), "main", 0, 0, check_git_ref,
        "a branch or tag name", "branch or tag of backend.git", false},
    {"backend.dir", "SPILLWAY_BACKEND_DIR", T_STRING, OFF(backend_dir), "", 0, 0,
        check_vm_path_or_empty,
        "an absolute path of letters, digits, '.', '_', '-' and '/', or empty",
        "a backend already in the image: fetch and install are skipped", false},
    {"backend.packages", "SPILLWAY_BACKEND_PACKAGES", T_STRING, OFF(backend_packages), "", 0, 0,
        check_packages, "Debian package names separated by spaces, such as python3-venv libgl1",
        "Debian packages installed on the VM before backend.install", false},
    {"backend.install", "SPILLWAY_BACKEND_INSTALL", T_STRING, OFF(backend_install), "", 0, 0,
        check_shell_text, "a shell command, or empty",
        "run once in the backend's directory, such as pip3 install -r requirements.txt", false},
    {"backend.start", "SPILLWAY_BACKEND_START", T_STRING, OFF(backend_start), "", 0, 0,
        check_shell_text, "a shell command, or empty",
        "starts the backend (as a systemd unit), such as python3 -m app", false},
    {"backend.prefetch", "SPILLWAY_BACKEND_PREFETCH", T_STRING, OFF(backend_prefetch), "", 0, 0,
        check_shell_text, "a shell command, or empty",
        "run once after backend.install to download what the backend loads (model weights)", false},
    {"backend.health_path", "SPILLWAY_HEALTH_PATH", T_STRING, OFF(health_path), "/health", 0, 0,
        check_url_path, "a URL path such as /health", "the backend's health check", false},
    {"backend.env", "SPILLWAY_BACKEND_ENV", T_STRING, OFF(backend_env), "", 0, 0, check_env_list,
        "KEY=VALUE words, quoted like a shell's: A=1 \"B=two words\"",
        "environment of the backend (instance metadata: no secrets)", false},
    {"backend.cloudsql", "SPILLWAY_CLOUDSQL_INSTANCE", T_STRING, OFF(cloudsql), "", 0, 0,
        check_cloudsql, "PROJECT:REGION:INSTANCE, or empty",
        "a Cloud SQL instance the VM reaches through the Cloud SQL Auth Proxy", false},
    {"backend.log_dir", "SPILLWAY_VM_LOG_DIR", T_STRING, OFF(vm_log_dir), "/var/log/spillway", 0, 0,
        check_vm_path, "an absolute path of letters, digits, '.', '_', '-' and '/'",
        "where the VM's startup script and agent log", false},
    {"agent.port", "SPILLWAY_AGENT_PORT", T_INT, OFF(agent_port), "8011", 1, 65535, NULL,
        "a TCP port from 1 to 65535, not the backend's", "port of the watchdog agent on the VM",
        false},
    {"agent.lease_minutes", "SPILLWAY_LEASE_MINUTES", T_DOUBLE, OFF(lease_minutes), "0", 0, 10080,
        NULL, "minutes, from 1 to 10080, or 0",
        "a VM not renewed and idle this long deletes itself (0: two idle timeouts)", false},
    {"spillway.compute_endpoint", "SPILLWAY_COMPUTE_ENDPOINT", T_STRING, OFF(compute_endpoint),
        "https://compute.googleapis.com/compute/v1/", 0, 0, check_endpoint,
        "an https:// URL, or http:// to a loopback address", "Compute Engine API base URL", false},
    {"spillway.token_uri", "SPILLWAY_TOKEN_URI", T_STRING, OFF(token_uri), "", 0, 0,
        check_token_uri, "an https:// URL, or http:// to a loopback address",
        "token endpoint for authorized_user credentials (empty: Google's)", true},
    {"spillway.retry_base_ms", "SPILLWAY_RETRY_BASE_MS", T_INT, OFF(retry_base_ms), "500", 1, 60000,
        NULL, "milliseconds, from 1 to 60000", "first backoff of a retried cloud call", false},
    {"spillway.retry_cap_ms", "SPILLWAY_RETRY_CAP_MS", T_INT, OFF(retry_cap_ms), "32000", 1, 600000,
        NULL, "milliseconds, from 1 to 600000", "longest backoff between retries", false},
    {"spillway.retry_attempts", "SPILLWAY_RETRY_ATTEMPTS", T_INT, OFF(retry_attempts), "8", 1, 100,
        NULL, "a whole number from 1 to 100", "most HTTP requests of one cloud call", false},
    {"daemon.owner", "SPILLWAY_OWNER", T_STRING, OFF(owner), "", 0, 0, check_label_value,
        "1 to 63 lowercase letters, digits, '_' and '-', or empty",
        "the spillway-owner label of this host's VMs (empty: from the host and state directory)",
        true},
    {"daemon.min_confidence", "SPILLWAY_MIN_CONFIDENCE", T_DOUBLE, OFF(min_confidence), "0.6", 0, 1,
        NULL, "a number from 0 to 1", "no VM is created with less confidence than this", false},
    {"daemon.cooldown_minutes", "SPILLWAY_COOLDOWN_MINUTES", T_DOUBLE, OFF(cooldown_minutes), "2",
        0, 1440, NULL, "minutes, from 0 to 1440",
        "after a VM turns READY or ends, wait this long before another", false},
    {"daemon.min_run_minutes", "SPILLWAY_MIN_RUN_MINUTES", T_DOUBLE, OFF(min_run_minutes), "15", 1,
        1440, NULL, "minutes, from 1 to 1440",
        "a VM the budget can keep for less than this is not created", false},
    {"daemon.boot_timeout_minutes", "SPILLWAY_BOOT_TIMEOUT_MINUTES", T_DOUBLE,
        OFF(boot_timeout_minutes), "10", 0.1, 1440, NULL, "minutes, from 0.1 to 1440",
        "a VM not healthy this long after it runs is deleted", false},
    {"daemon.unhealthy_minutes", "SPILLWAY_UNHEALTHY_MINUTES", T_DOUBLE, OFF(unhealthy_minutes),
        "3", 0.1, 1440, NULL, "minutes, from 0.1 to 1440", "a VM unhealthy this long is replaced",
        false},
    {"daemon.health_failures", "SPILLWAY_HEALTH_FAILURES", T_INT, OFF(health_failures), "3", 1, 100,
        NULL, "a whole number from 1 to 100",
        "failed health checks in a row that make a VM UNHEALTHY", false},
    {"daemon.health_timeout_s", "SPILLWAY_HEALTH_TIMEOUT_S", T_DOUBLE, OFF(health_timeout_s), "5",
        0.1, 60, NULL, "seconds, from 0.1 to 60", "how long a health check may take", false},
    {"daemon.orphan_policy", "SPILLWAY_ORPHAN_POLICY", T_STRING, OFF(orphan_policy), "delete", 0, 0,
        check_orphan_policy, "delete, adopt or report",
        "what to do with a VM carrying our label that the ledger does not know", false},
    {"daemon.orphan_grace_minutes", "SPILLWAY_ORPHAN_GRACE_MINUTES", T_DOUBLE,
        OFF(orphan_grace_minutes), "10", 0, 1440, NULL, "minutes, from 0 to 1440",
        "how long an orphan lives before it is deleted", false},
    {"daemon.create_deadline_minutes", "SPILLWAY_CREATE_DEADLINE_MINUTES", T_DOUBLE,
        OFF(create_deadline_minutes), "10", 0.1, 1440, NULL, "minutes, from 0.1 to 1440",
        "how long an insert is retried (same requestId) before it counts as failed", false},
    {"daemon.shutdown_timeout_s", "SPILLWAY_SHUTDOWN_TIMEOUT_S", T_DOUBLE, OFF(shutdown_timeout_s),
        "120", 1, 3600, NULL, "seconds, from 1 to 3600",
        "how long shutdown, and spillway terminate, wait for the deletes", false},
    {"daemon.target_available_pct", "SPILLWAY_TARGET_AVAILABLE_PCT", T_DOUBLE,
        OFF(target_available_pct), "20", 0, 100, NULL, "percent of MemTotal, from 0 to 100",
        "offload components until MemAvailable would be back at this", false},
    {"daemon.stockout_skip_minutes", "SPILLWAY_STOCKOUT_SKIP_MINUTES", T_DOUBLE,
        OFF(stockout_skip_minutes), "5", 0, 1440, NULL, "minutes, from 0 to 1440",
        "a zone out of capacity is skipped this long", false},
    {"daemon.image", "SPILLWAY_IMAGE", T_STRING, OFF(image),
        "projects/debian-cloud/global/images/family/debian-12", 0, 0, check_image_or_baked,
        "an image or image family path, such as projects/debian-cloud/global/images/family/debian-12, "
        "or baked",
        "boot image of the VMs (baked: the newest of image.family, else image.base)", false},
    {"pool.size", "SPILLWAY_POOL_SIZE", T_INT, OFF(pool_size), "0", 0, 20, NULL,
        "a whole number from 0 to 20",
        "VMs kept warm, stopped, to be started instead of created (docs/pool.md)", false},
    {"pool.suspend", "SPILLWAY_POOL_SUSPEND", T_BOOL, OFF(pool_suspend), "true", 0, 0, NULL,
        BOOL_ALLOWED,
        "suspend the pool's VMs (their memory kept) where Compute Engine allows it, else stop "
        "them",
        false},
    {"image.family", "SPILLWAY_IMAGE_FAMILY", T_STRING, OFF(image_family), "spillway-backend", 0, 0,
        check_image_family,
        "1 to 40 lowercase letters, digits and '-', starting with a letter and not ending with '-'",
        "the image family spillway image bake makes images in", false},
    {"image.base", "SPILLWAY_IMAGE_BASE", T_STRING, OFF(image_base),
        "projects/debian-cloud/global/images/family/debian-12", 0, 0, check_image,
        "an image or image family path, such as projects/debian-cloud/global/images/family/debian-12",
        "the image a bake starts from", false},
    {"daemon.disk_gb", "SPILLWAY_DISK_GB", T_INT, OFF(disk_gb), "20", 10, 65536, NULL,
        "gigabytes, from 10 to 65536", "boot disk size", false},
    {"daemon.disk_type", "SPILLWAY_DISK_TYPE", T_STRING, OFF(disk_type), "pd-balanced", 0, 0,
        check_disk_type, "pd-balanced or pd-standard", "boot disk type", false},
    {"daemon.network_tags", "SPILLWAY_NETWORK_TAGS", T_STRING, OFF(network_tags),
        "spillway-backend", 0, 0, check_tags,
        "comma-separated names of lowercase letters, digits and '-'",
        "network tags of the VMs (for the firewall rule of the backend port)", false},
    {"daemon.log_file", "SPILLWAY_LOG_FILE", T_STRING, OFF(log_file), "", 0, 0, check_path_or_empty,
        "an absolute path, or empty", "also log to this file", true},
    {"hooks.on_ready", "SPILLWAY_HOOK_ON_READY", T_STRING, OFF(hook_on_ready), "", 0, 0,
        check_command, "a command and its arguments (run without a shell)",
        "run when a VM is READY", false},
    {"hooks.on_gone", "SPILLWAY_HOOK_ON_GONE", T_STRING, OFF(hook_on_gone), "", 0, 0, check_command,
        "a command and its arguments (run without a shell)",
        "run when a VM leaves: its components are local again", false},
    {"hooks.on_pressure", "SPILLWAY_HOOK_ON_PRESSURE", T_STRING, OFF(hook_on_pressure), "", 0, 0,
        check_command, "a command and its arguments (run without a shell)",
        "run when the pressure level changes", false},
    {"hooks.timeout_s", "SPILLWAY_HOOK_TIMEOUT_S", T_DOUBLE, OFF(hook_timeout_s), "30", 0.1, 3600,
        NULL, "seconds, from 0.1 to 3600", "a hook running longer is killed", false},
    {"route.wait_s", "SPILLWAY_ROUTE_WAIT_S", T_DOUBLE, OFF(route_wait_s), "0", 0, 600, NULL,
        "seconds, from 0 to 600",
        "a connection with no VM READY and no local copy waits this long for a booting VM", false},
    {"route.drain_s", "SPILLWAY_ROUTE_DRAIN_S", T_DOUBLE, OFF(route_drain_s), "30", 0, 3600, NULL,
        "seconds, from 0 to 3600",
        "before a VM is deleted, its open connections get this long to finish", false},
    {"route.allow_other_users", "SPILLWAY_ROUTE_ALLOW_OTHER_USERS", T_BOOL,
        OFF(route_allow_other_users), "false", 0, 0, NULL, BOOL_ALLOWED,
        "let other users' processes connect to the routes", false},
    {"pricing.catalog", "SPILLWAY_PRICE_CATALOG", T_STRING, OFF(price_catalog), "", 0, 0,
        check_path_or_empty, "an absolute path, or empty",
        "a price catalog file (Cloud Billing SKU list); empty: the last refreshed, else the shipped one",
        false},
    {"pricing.billing_endpoint", "SPILLWAY_BILLING_ENDPOINT", T_STRING, OFF(billing_endpoint),
        "https://cloudbilling.googleapis.com/v1/", 0, 0, check_endpoint,
        "an https:// URL, or http:// to a loopback address", "Cloud Billing Catalog API base URL",
        true},
    {"pressure.cgroup", "SPILLWAY_PRESSURE_CGROUP", T_STRING, OFF(pressure_cgroup), "", 0, 0,
        check_path_or_empty, "a cgroup v2 directory (absolute path), or empty",
        "watch this cgroup's memory.pressure (empty: the whole system)", true},
    {"pressure.elevated_pct", "SPILLWAY_PRESSURE_ELEVATED_PCT", T_DOUBLE, OFF(elevated_pct), "2",
        0.1, 100, NULL, "percent of time stalled, from 0.1 to 100",
        "stall ('some') that makes the level ELEVATED", false},
    {"pressure.high_pct", "SPILLWAY_PRESSURE_HIGH_PCT", T_DOUBLE, OFF(high_pct), "10", 0.1, 100,
        NULL, "percent of time stalled, from 0.1 to 100", "stall that makes the level HIGH", false},
    {"pressure.critical_pct", "SPILLWAY_PRESSURE_CRITICAL_PCT", T_DOUBLE, OFF(critical_pct), "40",
        0.1, 100, NULL, "percent of time stalled, from 0.1 to 100",
        "stall that makes the level CRITICAL", false},
    {"pressure.critical_full_pct", "SPILLWAY_PRESSURE_CRITICAL_FULL_PCT", T_DOUBLE,
        OFF(critical_full_pct), "20", 0.1, 100, NULL, "percent of time stalled, from 0.1 to 100",
        "'full' stall (every task waiting) that makes the level CRITICAL", false},
    {"pressure.disarm_ratio", "SPILLWAY_PRESSURE_DISARM_RATIO", T_DOUBLE, OFF(disarm_ratio), "0.5",
        0.05, 1, NULL, "a fraction from 0.05 to 1",
        "a level holds until the stall is below this fraction of its threshold", false},
    {"pressure.elevated_sustain_s", "SPILLWAY_PRESSURE_ELEVATED_SUSTAIN_S", T_DOUBLE,
        OFF(elevated_sustain_s), "2", 0, 600, NULL, "seconds, from 0 to 600",
        "how long a stall must last to reach ELEVATED", false},
    {"pressure.high_sustain_s", "SPILLWAY_PRESSURE_HIGH_SUSTAIN_S", T_DOUBLE, OFF(high_sustain_s),
        "6", 0, 600, NULL, "seconds, from 0 to 600", "how long a stall must last to reach HIGH",
        false},
    {"pressure.critical_sustain_s", "SPILLWAY_PRESSURE_CRITICAL_SUSTAIN_S", T_DOUBLE,
        OFF(critical_sustain_s), "2", 0, 600, NULL, "seconds, from 0 to 600",
        "how long a stall must last to reach CRITICAL", false},
    {"pressure.dwell_s", "SPILLWAY_PRESSURE_DWELL_S", T_DOUBLE, OFF(dwell_s), "30", 0, 3600, NULL,
        "seconds, from 0 to 3600", "how long calm must last before the level falls", false},
    {"pressure.window_s", "SPILLWAY_PRESSURE_WINDOW_S", T_INT, OFF(window_s), "2", 1, 10, NULL,
        "whole seconds from 1 to 10 (even without CAP_SYS_RESOURCE)",
        "PSI trigger window, and the window stall is measured over", true},
    {"pressure.sample_ms", "SPILLWAY_PRESSURE_SAMPLE_MS", T_INT, OFF(sample_ms), "1000", 100, 60000,
        NULL, "milliseconds, from 100 to 60000",
        "sampling period while pressure lasts, or always when triggers are refused", false},
    {"pressure.low_available_pct", "SPILLWAY_PRESSURE_LOW_AVAILABLE_PCT", T_DOUBLE,
        OFF(low_available_pct), "5", 0, 100, NULL, "percent of MemTotal, from 0 to 100",
        "MemAvailable below this makes the level at least ELEVATED", false},
    {"spillway.state_dir", "SPILLWAY_STATE_DIR", T_STRING, OFF(state_dir),
        "${XDG_STATE_HOME:-${HOME}/.local/state}/spillway", 0, 0, check_path, "an absolute path",
        "ledger and state", true},
    {"ledger.retention_days", "SPILLWAY_LEDGER_RETENTION_DAYS", T_INT, OFF(retention_days), "90", 0,
        36500, NULL, "days, from 1 to 36500, or 0 to keep every record",
        "VMs ended longer ago are summarised per day in the ledger (the money stays)", false},
    {"spillway.socket", "SPILLWAY_SOCKET", T_STRING, OFF(socket_path),
        "${XDG_RUNTIME_DIR:-/tmp/spillway-${UID}}/spillway/control.sock", 0, 0, check_path,
        "an absolute path", "the daemon's control socket", true},
    {"spillway.log_level", "SPILLWAY_LOG_LEVEL", T_STRING, OFF(log_level), "info", 0, 0,
        check_log_level, "error, warning, info or debug", "how much to log", false},
};

const size_t config_nkeys_all = nitems(config_keys);

#define keys  config_keys
#define NKEYS config_nkeys_all

/* --- the environment seam --- */

struct loader {
	struct config *cfg;
	char *const *env;
	const char *where;  /* the file being read */
	bool callback_said; /* the error message came whole from a callback */
};

const char *
config_getenv(char *const *env, const char *name)
{
	size_t n = strlen(name);

	if (env == NULL)
		return getenv(name);
	for (; *env != NULL; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

static const char *
home_dir(char *const *env)
{
	const char *home = config_getenv(env, "HOME");

	return home != NULL ? home : "";
}

/* A variable for defaults: the environment's, or UID (which shells do not export). */
static const char *
var_get(char *const *env, const char *name, char uid[24])
{
	if (strcmp(name, "UID") == 0) {
		snprintf(uid, 24, "%u", (unsigned)getuid());
		return uid;
	}
	return config_getenv(env, name);
}

/* Expand ${VAR} and ${VAR:-fallback} (nested) in a default. */
static void
expand(struct buf *b, const char *s, char *const *env)
{
	while (*s != '\0') {
		const char *end, *colon, *v;
		int depth = 1;
		char *name, uid[24];

		if (s[0] != '$' || s[1] != '{') {
			buf_addch(b, *s++);
			continue;
		}
		for (end = s + 2; *end != '\0' && depth > 0; end++)
			depth += *end == '{' ? 1 : *end == '}' ? -1 : 0;
		colon = strstr(s, ":-");
		if (colon != NULL && colon < end) {
			name = xstrndup(s + 2, (size_t)(colon - s - 2));
			v = var_get(env, name, uid);
			if (v != NULL && *v != '\0') {
				buf_addstr(b, v);
			} else {
				char *fb = xstrndup(colon + 2, (size_t)(end - 1 - colon - 2));

				expand(b, fb, env);
				free(fb);
			}
		} else {
			name = xstrndup(s + 2, (size_t)(end - 1 - s - 2));
			v = var_get(env, name, uid);
			buf_addstr(b, v != NULL ? v : "");
		}
		free(name);
		s = end;
	}
}

/* --- setting values --- */

const char *
source_label(enum config_source s)
{
	static const char *labels[] = {
	    "default", "file", "gcloud", "environment", "flag", "derived"};

	return labels[s];
}

const char *
config_source_name(enum config_source s)
{
	return source_label(s);
}

static char *
describe_origin(const struct key *k, enum config_source src, const char *where)
{
	switch (src) {
	case CONFIG_FILE:
		return xasprintf("in %s", where);
	case CONFIG_GCLOUD:
		return xasprintf("in gcloud's configuration %s", where);
	case CONFIG_ENV:
		return xasprintf("from environment variable %s", k->env);
	case CONFIG_FLAG:
		return xasprintf("from %s", where);
	case CONFIG_DERIVED:
		return xasprintf("derived from %s", where);
	default:
		return xstrdup("the built-in default");
	}
}

static int
set_value(struct config *cfg, size_t i, const char *value, enum config_source src,
    const char *where, char **cause)
{
	const struct key *k = &keys[i];
	void *field = (char *)cfg + k->offset;
	const char *why = NULL;
	char buf[256]; /* a validator's words; why may point here until the end */
	int error = 0;

	switch (k->type) {
	case T_BOOL: {
		bool b;

		if (parse_bool(value, &b) != 0)
			why = "not a boolean";
		else
			*(bool *)field = b;
		break;
	}
	case T_INT: {
		int64_t n;

		error = parse_int64(value, (int64_t)k->min, (int64_t)k->max, &n);
		if (error == -EINVAL)
			why = "not a whole number";
		else if (error == -ERANGE)
			why = "out of range";
		else
			*(int64_t *)field = n;
		break;
	}
	case T_DOUBLE: {
		double d;

		error = parse_double(value, k->min, k->max, &d);
		if (error == -EINVAL)
			why = "not a number";
		else if (error == -ERANGE)
			why = "out of range";
		else
			*(double *)field = d;
		break;
	}
	case T_STRING: {
		char *copy = xstrdup(value);
		char *v = str_trim(copy);

		if (k->check != NULL && (why = k->check(v, buf, sizeof buf)) != NULL) {
			free(copy);
			break;
		}
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		free(copy);
		break;
	}
	}
	if (why != NULL) {
		char *origin = describe_origin(k, src, where);

		*cause = xasprintf("invalid value '%s' for %s (%s): %s; allowed: %s", value,
		    k->name, origin, why, k->allowed);
		free(origin);
		return -EINVAL;
	}
	free(cfg->origins[i].where);
	cfg->origins[i].source = src;
	cfg->origins[i].where = where != NULL ? xstrdup(where) : NULL;
	return 0;
}

ssize_t
find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0 || strcmp(keys[i].env, name) == 0)
			return (ssize_t)i;
	return -1;
}

static char *
suggest(const char *name)
{
	size_t best = SIZE_MAX, at = 0;

	for (size_t i = 0; i < NKEYS; i++) {
		size_t d = str_distance(name, keys[i].name);

		if (d < best) {
			best = d;
			at = i;
		}
	}
	if (best <= 3)
		return xasprintf(" (did you mean '%s'?)", keys[at].name);
	return xstrdup("; 'spillway config' lists every key");
}

/* --- the file --- */

static int
file_key(const char *section, const char *sub, const char *key, const char *value, int line,
    void *arg, char **cause)
{
	struct loader *ld = arg;
	char *name = xasprintf("%s.%s", section, key), *where;
	ssize_t i = sub == NULL ? find_key(name) : -1;
	int error;

	where = xasprintf("%s:%d", ld->where, line);
	if (sub != NULL && strcmp(section, "component") == 0) {
		error = component_key(ld->cfg, sub, key, value, where, cause);
	} else if (i < 0) {
		char *hint = suggest(name);

		*cause = xasprintf("%s: unknown key '%s'%s", where, name, hint);
		free(hint);
		error = -EINVAL;
	} else {
		error = set_value(ld->cfg, (size_t)i, value, CONFIG_FILE, where, cause);
	}
	/* Its message is whole (the reader's own errors get the file and line added). */
	ld->callback_said = error != 0;
	free(where);
	free(name);
	return error;
}

static int
load_file(struct loader *ld, const char *path, bool must_exist, char **cause)
{
	char *text, *why = NULL;
	size_t len = 0;
	int error, line = 0;

	if ((error = read_file(path, CONFIG_FILE_MAX, &text, &len)) != 0) {
		if (error == -ENOENT && !must_exist)
			return 0;
		if (error == -E2BIG)
			*cause = xasprintf("cannot read config file '%s': larger than 1 MiB", path);
		else
			*cause =
			    xasprintf("cannot read config file '%s': %s", path, strerror(-error));
		return -EINVAL;
	}
	ld->cfg->file = xstrdup(path);
	ld->where = path;
	ld->callback_said = false;
	error = ini_parse(text, len, file_key, ld, &line, &why);
	free(text);
	if (error != 0) {
		*cause = ld->callback_said ? why : xasprintf("%s:%d: %s", path, line, why);
		if (*cause != why)
			free(why);
		return -EINVAL;
	}
	return 0;
}

/* --- gcloud's active configuration --- */

struct gcloud {
	struct loader *ld;
	const char *path;
};

static int
gcloud_key(const char *section, const char *sub, const char *key, const char *value, int line,
    void *arg, char **cause)
{
	struct gcloud *g = arg;
	static const struct {
		const char *section, *key, *ours;
	} map[] = {
	    {"core", "project", "gcp.project"},
	    {"compute", "region", "gcp.region"},
	    {"compute", "zone", "gcp.zone"},
	};

	for (size_t i = 0; i < nitems(map); i++) {
		if (sub == NULL && strcmp(section, map[i].section) == 0 &&
		    strcmp(key, map[i].key) == 0) {
			char *where = xasprintf("%s:%d", g->path, line);
			int error;

			error = set_value(g->ld->cfg, (size_t)find_key(map[i].ours), value,
			    CONFIG_GCLOUD, where, cause);
			g->ld->callback_said = error != 0;

			free(where);
			return error;
		}
	}
	return 0; /* gcloud has many keys that are none of ours */
}

static int
load_gcloud(struct loader *ld, char **cause)
{
	const char *dir = config_getenv(ld->env, "CLOUDSDK_CONFIG"), *name;
	char *base, *active = NULL, *path, *text = NULL, *why = NULL;
	size_t len = 0;
	int error = 0, line;

	base =
	    dir != NULL && *dir ? xstrdup(dir) : xasprintf("%s/.config/gcloud", home_dir(ld->env));
	name = config_getenv(ld->env, "CLOUDSDK_ACTIVE_CONFIG_NAME");
	if (name == NULL || *name == '\0') {
		char *p = xasprintf("%s/active_config", base);

		if (read_file(p, 4096, &active, NULL) == 0)
			name = str_trim(active);
		free(p);
	}
	if (name == NULL || *name == '\0')
		name = "default";
	path = xasprintf("%s/configurations/config_%s", base, name);
	error = read_file(path, CONFIG_FILE_MAX, &text, &len);
	if (error == -ENOENT) {
		error = 0;
	} else if (error != 0) {
		*cause =
		    xasprintf("cannot read gcloud configuration '%s': %s", path, strerror(-error));
		error = -EINVAL;
	} else {
		struct gcloud g = {.ld = ld, .path = path};

		ld->callback_said = false;
		if ((error = ini_parse(text, len, gcloud_key, &g, &line, &why)) != 0) {
			*cause = ld->callback_said ? why : xasprintf("%s:%d: %s", path, line, why);
			if (*cause != why)
				free(why);
		}
	}
	/* gcloud's own environment overrides beat its file, as in gcloud. */
	static const struct {
		const char *env, *ours;
	} envs[] = {
	    {"CLOUDSDK_CORE_PROJECT", "gcp.project"},
	    {"CLOUDSDK_COMPUTE_REGION", "gcp.region"},
	    {"CLOUDSDK_COMPUTE_ZONE", "gcp.zone"},
	};
	for (size_t i = 0; error == 0 && i < nitems(envs); i++) {
		const char *v = config_getenv(ld->env, envs[i].env);

		if (v != NULL && *v != '\0')
			error = set_value(ld->cfg, (size_t)find_key(envs[i].ours), v, CONFIG_GCLOUD,
			    envs[i].env, cause);
	}
	free(text);
	free(path);
	free(active);
	free(base);
	return error;
}

/* --- the project of the credentials --- */

/*
 * No project given anywhere: the credentials' own (a service account key's
 * project_id), as Google's client libraries take it. Resolved here, once, so
 * that every command (status, doctor, create, the daemon) names the same one.
 * The file is the one the credentials come from (docs/configuration.md); one
 * that cannot be read is left for the credentials check to explain.
 */
static int
project_from_credentials(struct config *cfg, char *const *env, char **cause)
{
	const char *file = config_getenv(env, "GOOGLE_APPLICATION_CREDENTIALS");
	const char *sdk = config_getenv(env, "CLOUDSDK_CONFIG");
	char *path, *text = NULL, *where;
	json_t *v = NULL;
	size_t len = 0;
	int error = 0;

	if (*cfg->project != '\0')
		return 0;
	if (file != NULL && *file != '\0')
		path = xstrdup(file);
	else if (sdk != NULL && *sdk != '\0')
		path = xasprintf("%s/application_default_credentials.json", sdk);
	else
		path = xasprintf(
		    "%s/.config/gcloud/application_default_credentials.json", home_dir(env));
	if (read_file(path, 1 << 20, &text, &len) == 0 && jx_parse(text, len, &v, NULL) == 0 &&
	    jx_str(v, "project_id") != NULL && *jx_str(v, "project_id") != '\0') {
		where = xasprintf("the credentials file %s", path);
		error = set_value(cfg, (size_t)find_key("gcp.project"), jx_str(v, "project_id"),
		    CONFIG_DERIVED, where, cause);
		free(where);
	}
	json_decref(v);
	if (text != NULL)
		explicit_bzero(text, len); /* it holds a private key */
	free(text);
	free(path);
	return error;
}

/* --- consistency between keys --- */

static size_t
key_index(size_t offset)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].offset == offset)
			return i;
	fatalx("config: no key at offset %zu", offset);
}

static int
check_placement(struct config *cfg, char **cause)
{
	size_t zi = key_index(OFF(zone)), ri = key_index(OFF(region));
	size_t rlen = strlen(cfg->region);
	char **zones;
	int error = 0;

	/* A zone given without a region names its region. */
	if (cfg->origins[ri].source == CONFIG_DEFAULT &&
	    cfg->origins[zi].source != CONFIG_DEFAULT) {
		char *region = xstrndup(cfg->zone, strlen(cfg->zone) - 2);

		free(cfg->region);
		cfg->region = region;
		cfg->origins[ri].source = CONFIG_DERIVED;
		cfg->origins[ri].where = xstrdup("gcp.zone");
		rlen = strlen(region);
	}
	if (strncmp(cfg->zone, cfg->region, rlen) != 0 || cfg->zone[rlen] != '-') {
		*cause = xasprintf("zone '%s' is not in region '%s'; set gcp.region (GCP_REGION) "
		                   "to the zone's region or pick a zone of '%s'",
		    cfg->zone, cfg->region, cfg->region);
		return -EINVAL;
	}
	zones = str_split(cfg->fallback_zones, ',', NULL);
	for (char **z = zones; *z != NULL && error == 0; z++) {
		char *zone = str_trim(*z);

		if (strncmp(zone, cfg->region, rlen) != 0 || zone[rlen] != '-') {
			*cause =
			    xasprintf("fallback zone '%s' (gcp.fallback_zones) is not in region "
			              "'%s'; fallback zones must share the VM's region",
			        zone, cfg->region);
			error = -EINVAL;
		}
	}
	str_list_free(zones);
	return error;
}

/* The VM's backend: a source needs a start command, and the agent its own port. */
static int
check_backend(const struct config *cfg, char **cause)
{
	if ((*cfg->backend_git != '\0' || *cfg->backend_dir != '\0') &&
	    *cfg->backend_start == '\0') {
		*cause =
		    xasprintf("backend.start (SPILLWAY_BACKEND_START) is empty, but %s is set: "
		              "give the command that starts the backend, such as "
		              "python3 -m app",
		        *cfg->backend_git != '\0' ? "backend.git" : "backend.dir");
		return -EINVAL;
	}
	if (cfg->agent_port == cfg->backend_port) {
		*cause = xasprintf("agent.port (SPILLWAY_AGENT_PORT) and spillway.backend_port are "
		                   "both %lld: the agent needs a port of its own",
		    (long long)cfg->agent_port);
		return -EINVAL;
	}
	if (cfg->lease_minutes > 0 && cfg->lease_minutes < 1) {
		*cause =
		    xasprintf("agent.lease_minutes is %g: at least 1, or 0 for two idle timeouts",
		        cfg->lease_minutes);
		return -EINVAL;
	}
	return 0;
}

/* --- load --- */

static int
load_defaults(struct config *cfg, char *const *env, char **cause)
{
	components_preset(cfg);
	for (size_t i = 0; i < NKEYS; i++) {
		struct buf b = BUF_INIT(4096);
		int error;

		expand(&b, keys[i].def, env);
		error = set_value(cfg, i, buf_str(&b), CONFIG_DEFAULT, NULL, cause);
		buf_release(&b);
		if (error != 0)
			return error; /* e.g. a relative $XDG_STATE_HOME */
	}
	return 0;
}

/* The command line's --set KEY=VALUE, last and strongest. */
static int
load_sets(struct config *cfg, const char *const *sets, char **cause)
{
	int error;

	for (const char *const *s = sets; s != NULL && *s != NULL; s++) {
		const char *eq = strchr(*s, '=');
		char *name = eq != NULL ? xstrndup(*s, (size_t)(eq - *s)) : xstrdup(*s);
		ssize_t i = find_key(name);
		char *where;

		if (eq == NULL || i < 0) {
			char *hint = eq == NULL ? xstrdup("; expected KEY=VALUE") : suggest(name);

			*cause = xasprintf(
			    "--set '%s': %s%s", *s, eq == NULL ? "no value" : "unknown key", hint);
			free(hint);
			free(name);
			return -EINVAL;
		}
		where = xasprintf("--set %s", keys[i].name);
		error = set_value(cfg, (size_t)i, eq + 1, CONFIG_FLAG, where, cause);
		free(where);
		free(name);
		if (error != 0)
			return error;
	}
	return 0;
}

/* What holds between keys once they are all read (the placement's is check_placement). */
static int
check_between(struct config *cfg, char **cause)
{
	int error;

	if ((error = components_check(cfg, cause)) != 0)
		return error;
	if (!(cfg->elevated_pct < cfg->high_pct && cfg->high_pct < cfg->critical_pct)) {
		*cause = xasprintf("pressure thresholds must rise: pressure.elevated_pct (%g) < "
		                   "pressure.high_pct (%g) < pressure.critical_pct (%g)",
		    cfg->elevated_pct, cfg->high_pct, cfg->critical_pct);
		return -EINVAL;
	}
	if ((error = check_backend(cfg, cause)) != 0)
		return error;
	if (cfg->retry_cap_ms < cfg->retry_base_ms) {
		*cause = xasprintf("spillway.retry_cap_ms (%lld) is below spillway.retry_base_ms "
		                   "(%lld); the longest backoff cannot be shorter than the first",
		    (long long)cfg->retry_cap_ms, (long long)cfg->retry_base_ms);
		return -EINVAL;
	}
	return 0;
}

int
config_load(struct config *cfg, const struct config_args *args, char *const *env, char **cause)
{
	struct loader ld = {.cfg = cfg, .env = env};
	const char *file = args != NULL ? args->file : NULL;
	bool must_exist = file != NULL;
	char *path = NULL;
	int error;

	memset(cfg, 0, sizeof *cfg);
	cfg->origins = xcalloc(NKEYS, sizeof *cfg->origins);
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].type == T_STRING)
			*(char **)((char *)cfg + keys[i].offset) = xstrdup("");
	if ((error = load_defaults(cfg, env, cause)) != 0)
		goto out;

	if (file == NULL && (file = config_getenv(env, "SPILLWAY_CONFIG")) != NULL && *file != '\0')
		must_exist = true;
	if (file == NULL || *file == '\0') {
		struct buf b = BUF_INIT(4096);

		expand(&b, "${XDG_CONFIG_HOME:-${HOME}/.config}/spillway/spillway.conf", env);
		path = buf_detach(&b, NULL);
		file = path;
	}
	if ((error = load_file(&ld, file, must_exist, cause)) != 0)
		goto out;
	if ((error = load_gcloud(&ld, cause)) != 0)
		goto out;
	for (size_t i = 0; i < NKEYS; i++) {
		const char *v = config_getenv(env, keys[i].env);

		if (v != NULL &&
		    (error = set_value(cfg, i, v, CONFIG_ENV, keys[i].env, cause)) != 0)
			goto out;
	}
	if ((error = load_sets(cfg, args != NULL ? args->sets : NULL, cause)) != 0)
		goto out;
	if ((error = project_from_credentials(cfg, env, cause)) != 0)
		goto out;
	if ((error = check_placement(cfg, cause)) != 0)
		goto out;
	error = check_between(cfg, cause);
out:
	free(path);
	if (error != 0)
		config_free(cfg);
	return error;
}

void
config_free(struct config *cfg)
{
	if (cfg->origins == NULL)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].type == T_STRING)
			free(*(char **)((char *)cfg + keys[i].offset));
		free(cfg->origins[i].where);
	}
	components_free(cfg);
	free(cfg->origins);
	free(cfg->file);
	memset(cfg, 0, sizeof *cfg);
}

void
config_install_hash(const struct config *cfg, char out[CONFIG_INSTALL_HASH_LEN + 1])
{
	const char *parts[] = {cfg->image_base, cfg->backend_packages, cfg->backend_git,
	    cfg->backend_ref, cfg->backend_install, cfg->backend_prefetch};
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		abort(); /* out of memory: as xmalloc */
	/* Each with its NUL: ("ab", "") and ("a", "b") differ. */
	for (size_t i = 0; i < nitems(parts); i++) {
		const char *p = or_default(parts[i], "");

		EVP_DigestUpdate(ctx, p, strlen(p) + 1);
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	for (size_t i = 0; i < CONFIG_INSTALL_HASH_LEN / 2; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}
