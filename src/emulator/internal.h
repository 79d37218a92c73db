/*
 * What the emulator's files share, and nobody else sees.
 *
 * Ownership: the emulator owns zones; a zone owns its instances (sorted by
 * name) and its operations (in insertion order). An instance owns its timer
 * and its guest. Every request being answered is a `struct rq`, owned by the
 * emulator's pending list from the moment it is deferred until it is answered.
 */
#ifndef SPILLWAY_EMULATOR_INTERNAL_H
#define SPILLWAY_EMULATOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>

#include "emulator/emulator.h"
#include "emulator/faults.h"
#include "net/httpd.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/compat.h"

/* Self links are Google's, whatever address the emulator listens on. */
#define GCE_LINK "https://www.googleapis.com/compute/v1/"
#define MAX_BODY (1024 * 1024)
/* The fingerprint Google gives an empty set (no labels, no tags, no metadata items). */
#define EMPTY_FINGERPRINT "42WmSpB8rSM="
/* The identity of --write-user-credentials' refresh token (an authorized_user has no email). */
#define EMULATOR_USER "developer@spillway-emulator.example"

enum inst_status {
	ST_PROVISIONING,
	ST_STAGING,
	ST_RUNNING,
	ST_STOPPING,
	ST_TERMINATED,
	ST_SUSPENDING,
	ST_SUSPENDED,
};

/* What an instance's timer will do when it fires. */
enum inst_event {
	EV_NONE,
	EV_STAGE,
	EV_RUN,
	EV_EXPIRE,
	EV_PREEMPT,
	EV_PREEMPT_STOP,
	EV_STOPPED,
	EV_SUSPENDED,
};

struct op {
	struct zone *zone;
	char *name;
	char *request_id; /* NULL when the call had none */
	json_t *res;      /* the Operation as answered */
	bool done;
};

struct inst {
	struct emulator *emu;
	struct zone *zone;
	char *name;
	json_t *res; /* the Instance as answered; status and times kept current */
	char *text;  /* res serialised, until res changes (see inst_changed) */
	enum inst_status status;
	int vcpus;
	bool spot;
	bool delete_on_stop; /* instanceTerminationAction DELETE */
	bool deleting;       /* STOPPING towards removal */
	int64_t max_run_ms;  /* 0: none */
	int64_t stop_at_ms;  /* terminationTime; 0: none */
	int64_t started_ms;
	int64_t preempt_at_ms; /* 0: not to be preempted */
	bool preempted;
	bool resuming;         /* booting from SUSPENDED: memory kept, no boot */
	const char *fail_code; /* the insert will end in this error */
	struct op *op;         /* the insert or delete waiting on a transition */
	char nat_ip[16];
	struct guest *guest;
	json_t *guest_attrs; /* "NAMESPACE/KEY" -> value, as the guest wrote them */
	char *agent_cert, *agent_key; /* its agent's TLS identity, kept on its disk (front.c) */
	uv_timer_t timer;
	enum inst_event next;
	struct buf serial;   /* its console (serial.c) */
	size_t serial_start; /* the console's offset of serial's first byte */
};

struct zone {
	struct emulator *emu;
	char *name;
	char *region;
	struct inst **insts;
	size_t ninsts, capinsts;
	struct op **ops;
	size_t nops, capops;
	json_t *disks; /* name -> Disk (disks.c) */
};

enum rq_wait { RQ_NOW, RQ_DELAY, RQ_OP, RQ_META };

/* One request being answered. */
struct rq {
	struct emulator *emu;
	struct httpd_req *req;
	const char *server; /* "api" or "guest" */
	const char *host;   /* the guest's address, for the log */
	bool log;
	int64_t latency_ms;
	unsigned lost_status; /* the answer is replaced by this fault after the fact */
	enum rq_wait wait;
	struct op *op;   /* RQ_OP */
	char *meta_inst; /* RQ_META: zone/name */
	char *meta_path;
	char *meta_etag;
	bool meta_json;
	struct fields *fields; /* the answer's partial response (fields.h), or NULL */
	/* a delayed answer */
	unsigned status;
	char *ctype;
	char *body;
	size_t len;
	bool has_timer;
	uv_timer_t timer;
	struct part *part; /* a request inside a batch (batch.c), or NULL */
	char *user;        /* the caller, once its token was checked */
	struct rq *prev, *next;
};

struct emulator {
	uv_loop_t *loop;
	long fd_limit;     /* RLIMIT_NOFILE, raised to its hard limit at start */
	bool fds_out_said; /* guests past it: said once */
	struct clock real_clock;
	const struct clock *clock;
	struct httpd *http;
	char *url;
	char *project;
	char *project_number;
	struct zone *zones;
	size_t nzones;
	struct zone global; /* the global scope: its operations (name NULL) */
	json_t *firewalls;  /* name -> Firewall (firewalls.c) */
	json_t *images;     /* name -> Image: the project's own (images.c) */
	json_t *holds;      /* a disk's or image's selfLink -> the install its files hold */
	struct emulator_opts opts;
	struct faults faults;
	uint64_t rng;
	unsigned next_ip; /* guest addresses: 127.net.(next_ip>>8).(next_ip&255) */
	unsigned ip_net;
	unsigned next_internal;
	/* auth */
	EVP_PKEY *key;
	char *key_id;
	char *client_email;
	char *user_client_id;
	char *user_client_secret;
	char *user_refresh_token;
	json_t *tokens; /* access token -> expiry (ms, virtual) */
	/* requests */
	json_t *requests;
	uint64_t seq;
	FILE *request_log;
	struct rq *pending;
	bool closing;
};

/* emulator.c */
struct rq *rq_new(struct emulator *, struct httpd_req *, const char *server);
void emu_reply(struct rq *, unsigned status, const char *ctype, const char *body, size_t len);
void emu_reply_json(struct rq *, unsigned status, json_t *); /* steals the reference */
void emu_reply_text(struct rq *, unsigned status, const char *text);
/* Google's error envelope: {"error":{"code","message","errors":[{...}]}}. */
void emu_error(struct rq *, unsigned code, const char *reason, const char *fmt, ...)
    PRINTFLIKE(4, 5);
/* The same with the "status" of newer front ends (UNAUTHENTICATED, INVALID_ARGUMENT). */
void emu_error_status(struct rq *, unsigned code, const char *reason, const char *status,
    const char *fmt, ...) PRINTFLIKE(5, 6);
/* Keep the request open; rq_defer_timer() bounds how long. */
void rq_defer(struct rq *, enum rq_wait);
void rq_defer_timer(struct rq *, int64_t virtual_ms);
/*
 * A form or a query ("k=v&k2=v2") as {k: v}, decoded: the first value of each
 * key, pairs without '=' left out (as libmicrohttpd reads a query).
 */
json_t *emu_form(const char *);
double emu_rand(struct emulator *);
int64_t emu_now_ms(const struct emulator *);
void emu_time(const struct emulator *, int64_t ms, char out[RFC3339_LEN]);
uint64_t emu_new_id(struct emulator *);
struct zone *emu_zone(struct emulator *, const char *name);
struct inst *emu_find_inst(struct emulator *, const char *zone, const char *name);
struct inst *emu_inst_by_ip(struct emulator *, const char *ip);
void emu_split_path(const char *path, char ***parts, size_t *n);

/*
 * What a request asks: its own, or its part's inside a batch (batch.c). Every
 * Compute API handler reads its request through these.
 */
const char *rq_method(const struct rq *);
const char *rq_path(const struct rq *);
const char *rq_query(const struct rq *, const char *key);
char *rq_query_string(const struct rq *);
const char *rq_body(const struct rq *, size_t *len, int *too_large);
/* batch.c: POST /batch/compute/v1 */
void batch_route(struct rq *);
/* A batch's parts (pure: the fuzzer's too); 0, or -EINVAL and why. */
struct batch;
int batch_parse(const char *body, size_t len, const char *boundary, struct batch **, char **cause);
void batch_free(struct batch *);
void batch_part_answered(
    struct rq *, unsigned status, const char *ctype, const char *body, size_t len);
/* emulator.c: a Compute API request (or a batch's part) whose token was checked */
void compute_call(struct rq *);

/*
 * One Compute API call, as routes.c's table matched it: the path's
 * {project}, {zone} and {name} (the last named part), checked and found.
 */
struct call {
	struct rq *rq;
	const char *project; /* ours, or a public image project's */
	struct zone *zone;   /* NULL when the path names none (or "-") */
	const char *name;
};

/* routes.c: /compute/v1/... through the table */
void compute_route(struct rq *, char **parts, size_t n);
/* 404 for a zone's resource (what: "instances"), or a global one (zone NULL). */
void compute_not_found(struct rq *, const char *what, const char *zone, const char *name);

/* lists.c */
void list_instances(struct call *);
void list_operations(struct call *);
void list_machine_types(struct call *);
void list_disks(struct call *);
void list_aggregated(struct call *);

/* methods.c: instances.get, delete and the methods on an instance */
void inst_get(struct call *);
void inst_delete(struct call *);
void inst_set_labels(struct call *);
void inst_set_metadata(struct call *);
void inst_set_tags(struct call *);
void inst_stop(struct call *);
void inst_start(struct call *);
void inst_reset(struct call *);
void inst_suspend(struct call *);
void inst_resume(struct call *);
void inst_serial_port(struct call *);
void inst_guest_attributes(struct call *);
void op_get(struct call *);
void op_delete(struct call *);
void op_wait(struct call *);

/* refs.c: a reference in any of Google's forms, as its path from "projects/"; NULL if none */
char *ref_path(const struct emulator *, const char *ref);
bool ref_valid(const struct emulator *, const char *ref);
/* The same on GCE_LINK; NULL if none. */
char *ref_link(const struct emulator *, const char *ref);
/* What follows "projects/OURS/" + prefix in path, or NULL. */
const char *ref_in_project(const struct emulator *, const char *path, const char *prefix);

/* images.c */
bool image_project(const char *project);
/* The Image a path names (an image, a family, a family view), or NULL. */
json_t *image_resolve(struct emulator *, const char *path);
void image_insert(struct call *);
void image_delete(struct call *);
void image_get(struct call *);
void image_from_family(struct call *);
void image_family_view(struct call *);
void image_list(struct call *);

/* compute.c */
/* admin.c: /emulator/v1/... */
void emu_admin_route(struct rq *, char **parts, size_t n);
void compute_free_zone(struct zone *);
/* The project's state as a new emulator has it: no instance, disk or operation, default firewalls.
 */
void compute_reset_all(struct emulator *);
void compute_preempt(struct inst *);
/* The guest shut itself down: STOPPING, then TERMINATED, whatever its termination action. */
void compute_poweroff(struct inst *);
json_t *compute_op_json(struct op *);
void compute_op_done(struct op *, json_t *error, int http_status, const char *http_message);
/* Forget an operation (zoneOperations.delete). */
void compute_op_remove(struct op *);
/* STOPPING, then gone (remove) or TERMINATED. */
void compute_stop(struct inst *, bool remove);
/* PROVISIONING, STAGING, RUNNING; or the stockout or quota its boot ends in. */
void compute_boot(struct inst *);
/* A TERMINATED instance boots again (or its start fails). */
void compute_start(struct inst *);
void compute_reset(struct inst *);
/* RUNNING -> SUSPENDING -> SUSPENDED; resumed like a start, with its memory (no boot). */
void compute_suspend(struct inst *);
void compute_resume(struct inst *);
/* The vCPUs an instance holds of its region's quota (none while stopped or suspended). */
int compute_cpus_held(const struct inst *);
/* A new fingerprint in obj[key]: Google's own for an empty set. */
void compute_fingerprint(json_t *obj, const char *key, bool empty);
/* The instance's JSON, serialised once until it changes. */
const char *inst_text(struct inst *);
/* insert.c: labels and metadata.items of body, checked as Google checks them */
int compute_check_labels_metadata(struct rq *, json_t *body);

/* serial.c: the instance's console */
void serial_boot(struct inst *);
void serial_stop(struct inst *);
/* Its text now (malloc'd), and the console's offset of its first byte. */
char *serial_text(struct inst *, size_t *start);
/* Shared by compute.c and insert.c (instances.insert). */
void compute_bad_field(struct rq *, const char *field, const char *value, const char *fmt, ...)
    PRINTFLIKE(4, 5);
bool compute_valid_name(const char *);
json_t *compute_schemas(void);
json_t *compute_now_json(struct emulator *);
char *compute_zone_link(struct emulator *, const struct zone *);
size_t compute_inst_index(const struct zone *, const char *name, bool *found);
/* An operation of one scope (NULL: any) by name or requestId. */
struct op *compute_find_op(
    struct emulator *, const struct zone *, const char *name, const char *request_id);
/* An operation in a zone, or global (&emu->global), on the resource collection/name. */
struct op *compute_op_new(struct zone *, const char *type, const char *collection,
    const char *target_name, const char *target_id, const char *request_id, const char *user);
void compute_op_start(struct op *);
int64_t compute_quota_limit(struct emulator *);
int64_t compute_region_cpus(struct emulator *, const char *region);
/*
 * A mutation's requestId (*out, or NULL without one); false when that
 * answered the request: 400, or the operation a repeat first made.
 */
bool compute_request_id(struct rq *, const char **out);
/* A request's body checked against its schema type; NULL when it answered 400. */
json_t *compute_read_body(struct rq *, const char *schema);
/* A network in one of Google's forms, and the project's: "default"; false when it answered. */
bool compute_network_ok(struct rq *, const char *field, const char *ref);
/* A resource's name as Compute Engine spells them; false when it answered 400. */
bool compute_name_ok(struct rq *, const char *field, const char *name);
void compute_inst_insert(struct call *);
void inst_timer_start(struct inst *, enum inst_event, int64_t virtual_ms);
/* Call after every change to inst->res: lists serialise each instance once. */
void inst_changed(struct inst *);
int pacific_offset_min(int64_t ms);

/* disks.c */
/*
 * The name of the disk the i-th attached disk of an insert makes: its
 * diskName, else its deviceName, else the instance's (the boot disk), else
 * INSTANCE-i; buf holds the last.
 */
const char *disk_name(json_t *attached, const char *inst, size_t i, char *buf, size_t size);
int disks_check(struct rq *, struct zone *, json_t *body);
/* The instance's disks made (or attached), from the body of its insert. */
void disks_create(struct inst *, json_t *body);
/* The instance is gone: its auto-deleted disks go, the others are detached. */
void disks_release(struct inst *);
void disk_get(struct call *);
void disk_delete(struct call *);

/* firewalls.c */
void firewalls_default(struct emulator *);
void firewall_get(struct call *);
void firewall_list(struct call *);
void firewall_insert(struct call *);
void firewall_patch(struct call *);
void firewall_delete(struct call *);

/* machines.c */
int machine_lookup(const char *name, int *vcpus, int *memory_mb, bool *shared);
/* The i-th machine type's name, in order; NULL past the last. */
const char *machine_name(size_t i);
json_t *machine_json(struct emulator *, struct zone *, const char *name);

/* oauth.c */
void oauth_token(struct rq *);
/* 0 when the request carries a valid bearer token; otherwise answers 401 itself. */
int oauth_check(struct rq *);
/* A new access token, for this identity (an email). */
json_t *oauth_issue(struct emulator *, const char *user);
/* The caller's identity (what its token was issued to): an operation's `user`. */
const char *rq_user(const struct rq *);
void oauth_expire_all(struct emulator *);

/* metadata.c */
void metadata_route(struct rq *, char **parts, size_t n);
/* An instance's metadata changed: answer the waiters whose value did. */
void metadata_changed(struct emulator *, struct inst *);
/* Answer a waiter with the value as it is now. */
void metadata_answer(struct rq *);
/* front.c: a guest's agent port, in TLS (faults: never answer TLS, another key, reset) */
enum front_mode { FRONT_OK, FRONT_STALL, FRONT_OTHER_KEY, FRONT_RESET };
struct front;
/* Serve the agent's port on fd (taken); the backend's port and the agent API's server behind. */
int front_new(
    struct inst *, int fd, int backend_port, struct httpd *api, struct front **, char **cause);
void front_set_mode(struct front *, enum front_mode);
/* Connections passed to the backend, open now (the agent's status says them). */
long front_forwarding(const struct front *);
void front_free(struct front *);

/* An attribute of the instance's metadata, or NULL. */
const char *inst_attribute(const struct inst *, const char *key);
/*
 * What a disk's or an image's files hold (disks.c): the install a guest made
 * there (its spillway-install-hash), carried from a disk to the image made
 * of it and from an image to the disks made of it. Not served: it is the
 * files, not the resource. NULL: nothing installed; set NULL to forget.
 */
const char *holds_get(struct emulator *, const char *self);
void holds_set(struct emulator *, const char *self, const char *install);
/* Guest attributes: what the guest writes ("spillway/tls-key"), and the API's read of them. */
void guest_attribute_set(struct inst *, const char *key, const char *value);
void metadata_guest_attributes(struct rq *, struct inst *);

/* programs.c: a guest's agent and backend run for real (opts.guest_agent). */
struct programs;
int programs_start(struct inst *, struct programs **, char **cause);
/* Killed with their VM; the rest goes once they were reaped. NULL: nothing. */
void programs_stop(struct programs *);
/* The guest's root directory (its disk: the agent's log, the backend's pid), or NULL. */
const char *programs_root(const struct programs *);

/* guest.c */
struct guest;
/* At STAGING: reserve an address (bound, not listening: connections are refused). */
int guest_reserve(struct inst *);
/* At RUNNING: answer on the reserved address. */
void guest_start(struct inst *);
void guest_stop(struct inst *);
void guest_set(struct inst *, int healthy, bool touch);
/*
 * The agent port's behaviour (front.c), for tests: "ok", "stall", "other-key", "reset";
 * -ENOTSUP for a guest that runs the real agent.
 */
int guest_set_agent(struct inst *, const char *mode);
/* The agent's lease renewals: {renewals, last}, or null without a guest. */
json_t *guest_lease(const struct inst *);
/* Where a guest that runs the real agent keeps its files, or NULL. */
const char *guest_root(const struct inst *);

/* catalog.c */
void catalog_route(struct rq *, char **parts, size_t n);

#endif
