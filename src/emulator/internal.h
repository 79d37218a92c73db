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
#include "util/clock.h"
#include "util/compat.h"

/* Self links are Google's, whatever address the emulator listens on. */
#define GCE_LINK "https://www.googleapis.com/compute/v1/"
#define MAX_BODY (1024 * 1024)

enum inst_status { ST_PROVISIONING, ST_STAGING, ST_RUNNING, ST_STOPPING, ST_TERMINATED };

/* What an instance's timer will do when it fires. */
enum inst_event { EV_NONE, EV_STAGE, EV_RUN, EV_EXPIRE, EV_PREEMPT, EV_PREEMPT_STOP, EV_STOPPED };

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
	const char *fail_code; /* the insert will end in this error */
	struct op *op;         /* the insert or delete waiting on a transition */
	char nat_ip[16];
	struct guest *guest;
	json_t *guest_attrs; /* "NAMESPACE/KEY" -> value, as the guest wrote them */
	uv_timer_t timer;
	enum inst_event next;
};

struct zone {
	struct emulator *emu;
	char *name;
	char *region;
	struct inst **insts;
	size_t ninsts, capinsts;
	struct op **ops;
	size_t nops, capops;
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
	struct emulator_opts opts;
	struct faults faults;
	uint64_t rng;
	uint64_t next_id;
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
double emu_rand(struct emulator *);
int64_t emu_now_ms(const struct emulator *);
void emu_time(const struct emulator *, int64_t ms, char out[RFC3339_LEN]);
uint64_t emu_new_id(struct emulator *);
struct zone *emu_zone(struct emulator *, const char *name);
struct inst *emu_find_inst(struct emulator *, const char *zone, const char *name);
struct inst *emu_inst_by_ip(struct emulator *, const char *ip);
void emu_split_path(const char *path, char ***parts, size_t *n);

/* compute.c */
void compute_route(struct rq *, char **parts, size_t n);
/* admin.c: /emulator/v1/... */
void emu_admin_route(struct rq *, char **parts, size_t n);
void compute_free_zone(struct zone *);
void compute_preempt(struct inst *);
/* The guest shut itself down: STOPPING, then TERMINATED, whatever its termination action. */
void compute_poweroff(struct inst *);
json_t *compute_op_json(struct op *);
/* Shared by compute.c and insert.c (instances.insert). */
void compute_bad_field(struct rq *, const char *field, const char *value, const char *fmt, ...)
    PRINTFLIKE(4, 5);
bool compute_valid_name(const char *);
json_t *compute_schemas(void);
json_t *compute_now_json(struct emulator *);
char *compute_zone_link(struct emulator *, const struct zone *);
size_t compute_inst_index(const struct zone *, const char *name, bool *found);
struct op *compute_find_op(
    struct emulator *, const char *zone, const char *name, const char *request_id);
struct op *compute_op_new(struct zone *, const char *type, const char *target_name,
    const char *target_id, const char *request_id, const char *user);
void compute_op_start(struct op *);
int64_t compute_quota_limit(struct emulator *);
int64_t compute_region_cpus(struct emulator *, const char *region);
int compute_check_request_id(struct rq *, const char **out, struct op **existing);
void compute_inst_insert(struct rq *, struct zone *);
void inst_timer_start(struct inst *, enum inst_event, int64_t virtual_ms);
/* Call after every change to inst->res: lists serialise each instance once. */
void inst_changed(struct inst *);
int pacific_offset_min(int64_t ms);

/* machines.c */
int machine_lookup(const char *name, int *vcpus, int *memory_mb, bool *shared);
json_t *machine_json(struct emulator *, struct zone *, const char *name);

/* oauth.c */
void oauth_token(struct rq *);
/* 0 when the request carries a valid bearer token; otherwise answers 401 itself. */
int oauth_check(struct rq *);
json_t *oauth_issue(struct emulator *);
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
