/*
 * What gce.c (the life of a call: its token, its request, its retries) and
 * gce-methods.c (what each call sends, and what its answer is to the
 * caller) share, and nobody else sees.
 *
 * A call is owned by its provider's list from call_new until call_free;
 * exactly one of answered() or fail() ends it, and calls its callback.
 */
#ifndef SPILLWAY_GCE_CALL_H
#define SPILLWAY_GCE_CALL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "cloud/gce-json.h"
#include "cloud/gce.h"
#include "util/compat.h"

#define WAIT_TIMEOUT_MS 130000 /* zoneOperations.wait returns within about 2 minutes */
#define PAGE_SIZE       500

enum kind {
	K_CREATE,
	K_GET,
	K_LIST,
	K_DELETE,
	K_WAIT,
	K_PREEMPT,
	K_MACHINE,
	K_ZONES,
	K_GUEST,
	K_POWER,
	K_IMAGE_CREATE,
	K_IMAGES,
	K_IMAGE_DELETE,
};

struct gce {
	struct cloud base;
	uv_loop_t *loop;
	const struct clock *clock;
	struct http_client *http;
	struct auth *auth;
	char *endpoint;
	char *project;
	struct gce_opts opts;
	uint64_t rng;
	struct call *calls;
	long requests;
	long retries;
};

/* The caller's callback, by kind of call. */
union callback {
	cloud_op_cb *op;
	cloud_instance_cb *instance;
	cloud_list_cb *list;
	cloud_ops_cb *ops;
	cloud_machine_cb *machine;
	cloud_zones_cb *zones;
	cloud_value_cb *value;
	cloud_images_cb *images;
};

struct call {
	struct gce *g;
	enum kind kind;
	union callback cb;
	void *arg;
	int64_t deadline_ms;
	int attempts;
	bool refreshed; /* a 401 has been answered with a refresh already */
	bool waiting_token;
	struct http_call *http;
	uv_timer_t timer;
	char *token; /* the token the request in flight carries */
	/* the request */
	const char *method;
	char *path; /* after the endpoint, without the page token */
	char *body;
	/* the last error, and what its strings point into */
	struct gce_error e; /* e.err: what the caller hears */
	/* listings: zones to go, the page within one, what has been gathered */
	char **zones;
	size_t zone;
	char *page_token;
	char *filter;
	char *region;
	json_t *items;
	int64_t since_ms;
	char *target_zone; /* for create/delete/wait/get/power; NULL for what is global */
	struct call *prev, *next;
};

/* gce.c */
struct call *call_new(struct gce *, enum kind, union callback, void *arg, int64_t deadline_ms);
/* Send it (again): with the cached token, or once one comes; fails past the deadline. */
void call_start(struct call *);
/* Unlink, stop what runs, and free once libuv lets go of the timer. */
void call_free(struct call *);
void call_set_error(struct call *, enum cloud_errc, const char *, ...) PRINTFLIKE(3, 4);
void call_clear_error(struct call *);

/* gce-methods.c */
/* A 2xx answer's JSON object: the call's next step, or its callback. */
void call_answered(struct call *, json_t *);
/* Finish with the error in c->e.err: the callback, then call_free. */
void call_fail(struct call *);
extern const struct cloud_ops gce_ops;

#endif
