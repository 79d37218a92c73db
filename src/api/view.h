/*
 * What spillway shows, as JSON documents: the control API answers them, and
 * the CLI prints them (as they are with --json, as tables otherwise) whether
 * they came from a running daemon or were built here from the ledger. One
 * builder, so both ways give the same output. Their shapes are documented in
 * docs/api.md; schema_version changes when a field changes meaning or goes.
 */
#ifndef SPILLWAY_VIEW_H
#define SPILLWAY_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "decide/decide.h"
#include "ledger/ledger.h"
#include "local/local.h"
#include "pressure/pressure.h"
#include "route/route.h"

#define VIEW_SCHEMA_VERSION 2
#define VIEW_EVENTS         20 /* recent events in a status */

/* Where a document's facts come from. */
struct view_src {
	const struct config *cfg;
	struct ledger *ledger;
	int64_t now;
	const char *owner;                    /* the owner label */
	const struct pressure_snapshot *snap; /* NULL: not known */
	const struct backoff *backoffs;
	size_t nbackoffs;
	long daemon_pid; /* 0: no daemon; these facts are the ledger's */
	/* What the ledger has not taken yet (a full disk): these records stand for its own. */
	const struct vm_record *waiting;
	size_t nwaiting;
	const char *ledger_problem; /* why they wait, or NULL */
	size_t ledger_waiting;      /* writes waiting: records, costs and events */
	const struct route_stats *routes; /* the daemon's routes; NULL: none listens */
	size_t nroutes;
	/* The local copies the daemon runs (docs/offload.md); none without a daemon. */
	const struct local_info *const *copies;
	size_t ncopies;
};

json_t *view_vm(const struct view_src *, const struct vm_record *);
json_t *view_status(const struct view_src *);
json_t *view_vms(const struct view_src *);
/* One VM and its events; NULL when the ledger has no such VM. */
json_t *view_vm_detail(const struct view_src *, const char *name);
json_t *view_costs(const struct view_src *, int days);
json_t *view_pressure(const struct pressure_snapshot *);
/* The images baked (docs/images.md), what VMs boot from, and whether it is stale. */
json_t *view_images(const struct view_src *);
/* One image; NULL when the ledger has none of that name. */
json_t *view_image(const struct view_src *, const char *name);
json_t *view_decision(const struct decision *);
/* The components' routes: the daemon's counts, or the configuration's with nothing listening. */
json_t *view_routes(const struct view_src *);
/* An error document: {"error": {"code", "rule", "message"}}. */
json_t *view_error(int code, const char *rule, const char *message);

#endif
