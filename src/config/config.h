/*
 * spillway's configuration: one table of every key (config.c), and one load
 * that layers, lowest first:
 *
 *	built-in defaults
 *	< the config file ($XDG_CONFIG_HOME/spillway/spillway.conf, INI)
 *	< gcloud's active configuration (project, region, zone)
 *	< the environment (GCP_VM_DAILY_BUDGET and the original system's names)
 *	< command-line flags (--set KEY=VALUE, --project, --region, --zone)
 *
 * and remembers where each value came from. A bad value anywhere is an error
 * that names the key, the value, where it came from and what is allowed; the
 * caller exits 2 before doing anything. struct config is plain data.
 */
#ifndef SPILLWAY_CONFIG_H
#define SPILLWAY_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

enum config_source {
	CONFIG_DEFAULT,
	CONFIG_FILE,
	CONFIG_GCLOUD,
	CONFIG_ENV,
	CONFIG_FLAG,
	CONFIG_DERIVED,
};

struct config_origin {
	enum config_source source;
	char *where; /* "path:line", "GCP_VM_DAILY_BUDGET", "--zone"; NULL for defaults */
};

/*
 * A heavy component of the user's application: what runs on the VM when it is
 * offloaded. Built-in presets (vision, chatbots, ml_models, local_llm) can be
 * changed and others added with [component "NAME"] sections.
 */
struct component_def {
	char *name;
	int64_t size_mb;  /* estimated memory, used when none can be measured */
	int64_t priority; /* lower goes first */
	char *match;      /* extended regex, case-insensitive, against comm and cmdline */
	char *listen;     /* the route: where the application reaches it (loopback); "" none */
	char *local;      /* where its local copy serves, the route's fallback; "" none */
	/*
	 * How its local copy is run, when spillway runs it (docs/offload.md): a
	 * systemd user unit, or commands (no shell, the hooks' placeholders);
	 * "" none. With either, spillway stops the copy while a VM serves the
	 * component and starts it again before the VM goes.
	 */
	char *local_unit;
	char *local_start;
	char *local_stop;
	char *local_health; /* http://... answering 2xx when it serves; "" the route's local */
	double local_start_timeout_s; /* from its start to healthy, at most */
	struct config_origin origin;
};

/* Every setting, typed. Strings are never NULL (empty means unset). */
struct config {
	bool enabled;
	char *project;
	char *region;
	char *zone;
	char *fallback_zones; /* comma-separated; empty: the region's other zones */
	char *machine_type;
	bool use_spot;
	double max_price;
	double daily_budget;
	int64_t max_concurrent;
	double max_lifetime_hours;
	double idle_timeout_minutes;
	int64_t health_check_interval;
	bool enable_monitoring;
	int64_t backend_port;
	/* what the VM runs (data/startup-script.sh) */
	char *backend_git;
	char *backend_ref;
	char *backend_dir;
	char *backend_packages; /* Debian package names, space-separated */
	char *backend_install;
	char *backend_prefetch;
	char *backend_start;
	char *health_path;
	char *backend_env; /* KEY=VALUE words, quoted as str_argv() splits them */
	char *cloudsql;
	char *vm_log_dir;
	int64_t agent_port;
	double lease_minutes; /* 0: two idle timeouts */
	char *compute_endpoint;
	char *token_uri;
	int64_t retry_base_ms;
	int64_t retry_cap_ms;
	int64_t retry_attempts;
	char *state_dir;
	int64_t retention_days; /* 0: keep every record */
	char *socket_path;
	char *log_level;
	/* pressure */
	char *pressure_cgroup;
	double elevated_pct;
	double high_pct;
	double critical_pct;
	double critical_full_pct;
	double disarm_ratio;
	double elevated_sustain_s;
	double high_sustain_s;
	double critical_sustain_s;
	double dwell_s;
	int64_t window_s;
	int64_t sample_ms;
	double low_available_pct;
	/* the daemon */
	char *owner;
	double min_confidence;
	double cooldown_minutes;
	double min_run_minutes;
	double boot_timeout_minutes;
	double unhealthy_minutes;
	int64_t health_failures;
	double health_timeout_s;
	char *orphan_policy;
	double orphan_grace_minutes;
	double create_deadline_minutes;
	double shutdown_timeout_s;
	double target_available_pct;
	double stockout_skip_minutes;
	char *image; /* "baked": the newest of image_family, else image_base */
	char *image_family;
	int64_t pool_size;
	bool pool_suspend;
	char *image_base;
	int64_t disk_gb;
	char *disk_type;
	char *network_tags;
	char *log_file;
	char *hook_on_ready;
	char *hook_on_gone;
	char *hook_on_pressure;
	double hook_timeout_s;
	char *price_catalog;
	char *billing_endpoint;
	/* routes (docs/offload.md) */
	double route_wait_s;
	double route_drain_s;
	bool route_allow_other_users;

	struct component_def *components;
	size_t ncomponents;

	char *file;                    /* the config file read, or NULL */
	struct config_origin *origins; /* one per key, in table order */
};

/* What the command line adds. */
struct config_args {
	const char *file;        /* --config FILE: must exist */
	const char *const *sets; /* "KEY=VALUE" or "ENV_NAME=VALUE", NULL-terminated */
};

/*
 * env: the environment to read (NULL: the process's). 0, or -EINVAL with
 * *cause the whole message for the user.
 */
int config_load(struct config *, const struct config_args *, char *const *env, char **cause);
void config_free(struct config *);
/*
 * "a,b": each a configured component (any case). 0 and the list with the
 * names as typed, spaces trimmed; -EINVAL and why, naming the configured
 * ones. What create asks for, from the CLI or the control API.
 */
int config_components(
    const struct config *, const char *csv, char *out, size_t size, char *why, size_t whylen);

/*
 * What an install is made of, as a label value: the first 32 hex digits of
 * SHA-256 over the settings that go into it (image.base, backend.packages,
 * .git, .ref, .install, .prefetch). A VM whose image holds the same install
 * skips it; an image that holds another is stale (docs/images.md).
 */
#define CONFIG_INSTALL_HASH_LEN 32
/* An image family's name as image.family takes it (what spillway image bake --family takes). */
bool config_family_valid(const char *);
void config_install_hash(const struct config *, char out[CONFIG_INSTALL_HASH_LEN + 1]);

/* A variable of env (NULL: the process's environment), or NULL. */
const char *config_getenv(char *const *env, const char *name);

size_t config_nkeys(void);
const char *config_key_name(size_t);
const char *config_key_env(size_t);
const char *config_key_help(size_t);
/* Whether a running daemon takes the key only at its next start (SIGHUP leaves it). */
bool config_key_restart(size_t);
/* Where a key's value came from (CONFIG_DEFAULT: nobody gave it). */
enum config_source config_source_of(const struct config *, const char *key);
/*
 * The keys (table indexes, at most max) whose values differ between a and b;
 * *components: whether the components differ.
 */
size_t config_diff(
    const struct config *a, const struct config *b, size_t *out, size_t max, bool *components);
/* The value as text, as a file would hold it. Caller frees. */
char *config_value_text(const struct config *, size_t);
const char *config_source_name(enum config_source);

const struct component_def *config_component(const struct config *, const char *name);
/* Whether spillway runs this component's local copy (local_unit or local_start). */
bool component_managed(const struct component_def *);
/* Whether a comma-separated list of components ("vision, chatbots") names this one (any case). */
bool components_include(const char *list, const char *name);
json_t *config_to_json(const struct config *);
void config_print(const struct config *, FILE *);

#endif
