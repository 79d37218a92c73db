/*
 * The cloud, as the lifecycle manager sees it: an asynchronous interface with
 * typed results and typed errors, whichever cloud is behind it (gce.c today).
 *
 * Every call takes an absolute deadline (ms on the provider's clock) and a
 * callback. A call that cannot start returns -errno and never calls back; one
 * that starts returns 0 and calls back exactly once, on the loop, unless the
 * provider is freed first. Results passed to a callback belong to the
 * provider and live until the callback returns: copy what you keep.
 *
 * Retries (rate limits, server errors, lost connections, timeouts) happen
 * inside a call, within its deadline; what reaches the callback is final.
 */
#ifndef SPILLWAY_PROVIDER_H
#define SPILLWAY_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cloud_errc {
	CLOUD_OK,
	CLOUD_RATE_LIMITED, /* 429, 403 rateLimitExceeded: retried until the deadline */
	CLOUD_SERVER,       /* 5xx: retried until the deadline */
	CLOUD_AUTH,         /* 401 after one refresh, 403 forbidden, no usable credentials */
	CLOUD_QUOTA,        /* quotaExceeded, QUOTA_EXCEEDED: back off minutes */
	CLOUD_STOCKOUT,     /* ZONE_RESOURCE_POOL_EXHAUSTED: try another zone */
	CLOUD_EXISTS,       /* 409 alreadyExists */
	CLOUD_NOT_FOUND,    /* 404 */
	CLOUD_INVALID,      /* 400: a bug or bad configuration */
	CLOUD_NETWORK,      /* no answer: refused, reset, TLS, too large, malformed */
	CLOUD_DEADLINE,     /* the call's deadline passed (the last error is in message) */
};

struct cloud_error {
	enum cloud_errc code;
	int http_status; /* 0 when there was no HTTP answer */
	const char
	    *reason; /* Google's reason or error code: "rateLimitExceeded", "QUOTA_EXCEEDED" */
	const char *message;      /* Google's words (or ours for network errors), for the user */
	const char *zone;         /* CLOUD_STOCKOUT: the zone that has no capacity */
	const char *quota_metric; /* CLOUD_QUOTA: "CPUS" */
	double quota_limit;       /* CLOUD_QUOTA: the limit, when Google said it */
	int attempts;             /* HTTP requests the call made */
};

struct cloud_kv {
	const char *key;
	const char *value;
};

/* What to create. Strings are borrowed for the duration of the create call. */
struct cloud_instance_spec {
	const char *name;
	const char *zone;
	const char *machine_type; /* "e2-highmem-4" */
	bool spot;
	const char *image; /* "projects/debian-cloud/global/images/family/debian-12" */
	int disk_gb;
	const char *disk_type; /* "pd-balanced", or NULL for the default */
	const struct cloud_kv *labels;
	size_t nlabels;
	const char *const *tags;         /* network tags, NULL-terminated, may be NULL */
	const struct cloud_kv *metadata; /* startup-script and the rest */
	size_t nmetadata;
	const char *service_account;    /* e-mail or "default"; NULL: none */
	const char *const *scopes;      /* NULL-terminated */
	int64_t max_run_s;              /* 0: none */
	const char *termination_action; /* "DELETE" or "STOP"; NULL: Google's default */
	bool external_ip;               /* an ephemeral external address (ONE_TO_ONE_NAT) */
};

/* What can be done to a VM's power: Compute Engine's methods of these names. */
enum cloud_power { CLOUD_STOP, CLOUD_START, CLOUD_SUSPEND, CLOUD_RESUME };

/* An image to make from a zone's disk (a stopped VM's boot disk). Strings borrowed. */
struct cloud_image_spec {
	const char *name;
	const char *family; /* NULL: none */
	const char *zone;   /* the disk's */
	const char *disk;
	const struct cloud_kv *labels;
	size_t nlabels;
};

/*
 * Bounds of what a provider passes on: it refuses an answer whose names,
 * zones, statuses or operation names do not fit (CLOUD_NETWORK, "malformed"),
 * so copies of them into these sizes never cut anything.
 */
#define CLOUD_NAME_LEN   64 /* names, zones, machine types, addresses: Compute Engine's 63 */
#define CLOUD_STATUS_LEN 24
#define CLOUD_OP_LEN     128

/* What a provider passes to a list callback; every string non-NULL but nat_ip. */
struct cloud_instance {
	const char *name;
	const char *zone;
	const char *id;
	const char *status;       /* PROVISIONING, STAGING, RUNNING, STOPPING, TERMINATED, ... */
	const char *machine_type; /* short name */
	const char *nat_ip;       /* NULL when none */
	const char *internal_ip;
	int64_t created_ms;
	int64_t started_ms; /* lastStartTimestamp; 0 when never started */
	bool spot;
	int64_t max_run_s;
	const struct cloud_kv *labels;
	size_t nlabels;
	const struct cloud_kv *metadata;
	size_t nmetadata;
};

/* A preemption's name, zone and target are always there. */
struct cloud_op {
	const char *name; /* NULL for a delete of something already gone */
	const char *zone;
	const char *type;   /* "insert", "delete", "compute.instances.preempted" */
	const char *target; /* the instance's name */
	bool done;
	int64_t inserted_ms;
	int64_t ended_ms; /* endTime: when it was DONE; 0 when not (or not said) */
};

/* One of the project's images, as listed; every string non-NULL ("" for no family). */
struct cloud_image {
	const char *name;
	const char *family;
	const char *status; /* PENDING, READY, FAILED, DELETING */
	int64_t disk_gb;
	int64_t archive_bytes; /* what its storage is billed on; 0 when not said */
	int64_t created_ms;
	const struct cloud_kv *labels;
	size_t nlabels;
};

struct cloud_machine_type {
	const char *name;
	int vcpus;
	int memory_mb;
	bool shared_core;
};

struct cloud;

typedef void cloud_op_cb(const struct cloud_error *, const struct cloud_op *, void *arg);
typedef void cloud_instance_cb(
    const struct cloud_error *, const struct cloud_instance *, void *arg);
typedef void cloud_list_cb(
    const struct cloud_error *, const struct cloud_instance *, size_t n, void *arg);
typedef void cloud_ops_cb(const struct cloud_error *, const struct cloud_op *, size_t n, void *arg);
typedef void cloud_machine_cb(
    const struct cloud_error *, const struct cloud_machine_type *, void *arg);
typedef void cloud_value_cb(const struct cloud_error *, const char *value, void *arg);
typedef void cloud_images_cb(
    const struct cloud_error *, const struct cloud_image *, size_t n, void *arg);
typedef void cloud_zones_cb(
    const struct cloud_error *, const char *const *zones, size_t n, void *arg);

struct cloud_ops {
	const char *name;
	/* Start an insert; the callback gets the operation (not DONE yet, usually). */
	int (*create)(struct cloud *, const struct cloud_instance_spec *, const char *request_id,
	    int64_t deadline_ms, cloud_op_cb *, void *);
	int (*get)(struct cloud *, const char *zone, const char *name, int64_t deadline_ms,
	    cloud_instance_cb *, void *);
	/*
	 * Every instance with label key=value in these zones, all pages; any zone
	 * failing fails it. A listing carries no metadata (nmetadata 0): it is most
	 * of an instance's size, and a pass over thousands needs none of it.
	 */
	int (*list)(struct cloud *, const char *const *zones, const char *label_key,
	    const char *label_value, int64_t deadline_ms, cloud_list_cb *, void *);
	/* Start a delete; an instance already gone is success with op->name NULL. */
	int (*destroy)(struct cloud *, const char *zone, const char *name, const char *request_id,
	    int64_t deadline_ms, cloud_op_cb *, void *);
	/*
	 * Until the operation is DONE; a DONE operation that failed is the matching
	 * error. zone NULL: a global operation (an image's).
	 */
	int (*wait)(struct cloud *, const char *zone, const char *op, int64_t deadline_ms,
	    cloud_op_cb *, void *);
	/* Stop, start, suspend or resume a VM: its operation, as create's. */
	int (*power)(struct cloud *, const char *zone, const char *name, enum cloud_power,
	    const char *request_id, int64_t deadline_ms, cloud_op_cb *, void *);
	/* An image from a zone's disk: a global operation (op->zone NULL). */
	int (*image_create)(struct cloud *, const struct cloud_image_spec *, const char *request_id,
	    int64_t deadline_ms, cloud_op_cb *, void *);
	/* The project's own images with label key=value, all pages. */
	int (*images)(struct cloud *, const char *label_key, const char *label_value,
	    int64_t deadline_ms, cloud_images_cb *, void *);
	/* Delete an image; one already gone is success with op->name NULL. */
	int (*image_delete)(struct cloud *, const char *name, const char *request_id,
	    int64_t deadline_ms, cloud_op_cb *, void *);
	/* Preemptions (compute.instances.preempted operations) since a time, in these zones. */
	int (*preemptions)(struct cloud *, const char *const *zones, int64_t since_ms,
	    int64_t deadline_ms, cloud_ops_cb *, void *);
	int (*machine_type)(struct cloud *, const char *zone, const char *type, int64_t deadline_ms,
	    cloud_machine_cb *, void *);
	/* The zones of a region that are UP, sorted. */
	int (*zones)(
	    struct cloud *, const char *region, int64_t deadline_ms, cloud_zones_cb *, void *);
	/*
	 * A guest attribute the VM itself published ("spillway/tls-key"), read
	 * through the API (what the VM's own network cannot forge);
	 * CLOUD_NOT_FOUND until it is published.
	 */
	int (*guest_attribute)(struct cloud *, const char *zone, const char *name, const char *key,
	    int64_t deadline_ms, cloud_value_cb *, void *);
	/* Cancel what is in flight (no callbacks) and free. */
	void (*free)(struct cloud *);
};

struct cloud {
	const struct cloud_ops *ops;
};

/*
 * What a caller keeps of a listed instance past its callback: a typed copy.
 * -EINVAL (nothing copied) for one that a provider should not have passed.
 */
struct cloud_seen {
	char name[CLOUD_NAME_LEN];
	char zone[CLOUD_NAME_LEN];
	char status[CLOUD_STATUS_LEN];
	char machine_type[CLOUD_NAME_LEN];
	char nat_ip[CLOUD_NAME_LEN]; /* "" when none */
	int64_t started_ms;
	int64_t max_run_s;
	bool spot;
};
int cloud_seen_copy(const struct cloud_instance *, struct cloud_seen *);

/* The same of a preemption operation: what was preempted, and when. */
struct cloud_preempted {
	char target[CLOUD_NAME_LEN];
	int64_t t_ms;
};
int cloud_preempted_copy(const struct cloud_op *, struct cloud_preempted *);

const char *cloud_errc_name(enum cloud_errc);
/* "stop", "start", "suspend", "resume": the method's name. */
const char *cloud_power_name(enum cloud_power);
/* Worth retrying within the same call? */
bool cloud_errc_retryable(enum cloud_errc);
/* An error's one-line description for people: "quota: Quota 'CPUS' exceeded ..." */
char *cloud_error_text(const struct cloud_error *);
const char *cloud_kv_get(const struct cloud_kv *, size_t n, const char *key);

/* Map an HTTP answer to an error class: status and Google's errors[0].reason. */
enum cloud_errc cloud_classify_http(long status, const char *reason);
/* Map a DONE operation's error code (QUOTA_EXCEEDED, ...) to an error class. */
enum cloud_errc cloud_classify_op(const char *code, int http_status);

/* Retries with exponential backoff and full jitter, as Google's clients do. */
struct retry_policy {
	int64_t base_ms;
	int64_t cap_ms;
	int attempts; /* the most HTTP requests one call makes */
};

/* The wait before retry number `attempt` (1 = after the first failure); u in [0, 1). */
int64_t retry_backoff_ms(const struct retry_policy *, int attempt, double u);

#endif
