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

#endif
