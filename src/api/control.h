/*
 * The control API: HTTP/1.1 + JSON on the daemon's Unix socket (directory
 * 0700, socket 0600, and peers of another user refused by SO_PEERCRED). The
 * routes and the documents are in docs/api.md; the documents are view.h's.
 *
 *	GET /v1/status  /v1/vms  /v1/vms/{name}  /v1/costs?days=N  /v1/pressure
 *	POST /v1/vms  DELETE /v1/vms/{name}  POST /v1/stop
 *	GET /v1/events  (Server-Sent Events)
 */
#ifndef SPILLWAY_CONTROL_H
#define SPILLWAY_CONTROL_H

#include <uv.h>

#include "api/view.h"
#include "vm/daemon.h"

#define CONTROL_MAX_BODY (64 * 1024)

struct control;

/* Listen at path (its directory is created 0700). 0, or -errno and a cause. */
int control_new(uv_loop_t *, struct daemon *, const char *path, struct control **, char **cause);
/* Ends the event streams, closes the socket and removes its file. */
void control_free(struct control *);

/*
 * One request, without the socket (the library in a program uses this): the
 * document and its HTTP status. days is the costs query's value, or NULL.
 */
json_t *control_answer(struct daemon *, const char *method, const char *path, const char *days,
    const char *body, size_t len, unsigned *status);
/* A daemon's facts for api/view's documents (no PID, no backoffs: see control_answer). */
void control_view(struct daemon *, struct view_src *);
/* A create's plan (POST /v1/vms with "dry_run": true). */
json_t *control_plan(const struct manager_plan *);
/* An event as the stream carries it (its "type" is the SSE event name). */
json_t *control_event(const struct manager_event *);

#endif
