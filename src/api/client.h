/*
 * The control API from the other side: one call to the daemon's socket, for
 * the CLI and the library, on a loop of its own (the call blocks the caller).
 */
#ifndef SPILLWAY_CLIENT_H
#define SPILLWAY_CLIENT_H

#include <jansson.h>

/*
 * 0 with the HTTP status and the answer's JSON (caller frees); -ENOENT when
 * no daemon listens there (no socket, or a stale one); -EACCES when the
 * socket is another user's; -EPROTO for an answer that is not JSON; other
 * -errno. *cause says what, for people.
 */
int client_call(const char *socket, const char *method, const char *path, const json_t *body,
    long timeout_ms, long *status, json_t **doc, char **cause);

/*
 * The event stream (GET /v1/events), read from the caller's own poll loop:
 * client_events_read takes what has arrived without blocking, decodes HTTP
 * chunks and Server-Sent Events, and calls cb for each whole event.
 */
struct client_events;
typedef void client_event_cb(const char *event, const json_t *data, void *arg);
int client_events_open(const char *socket, struct client_events **, char **cause);
int client_events_fd(const struct client_events *);
/* 0; -EPIPE once the daemon ended the stream; -EPROTO for what is not a stream. */
int client_events_read(struct client_events *, client_event_cb *, void *arg);
void client_events_close(struct client_events *);

#endif
