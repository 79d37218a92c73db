/*
 * One kept HTTP/1.1 connection to one server, in TLS with its key pinned and
 * our certificate shown: what the daemon uses to talk to a VM's agent, so a
 * lease renewal every pass is a request on an open channel, not a new TCP
 * connection and TLS handshake. One request at a time; an answer must have
 * a Content-Length (the agent's always do). A kept connection the server
 * closed while idle is made again, and a request that found it closed before
 * any answer is sent once more on the new one. Leaf module, on libuv, over
 * stream.h; answers as http.h's.
 */
#ifndef SPILLWAY_HCONN_H
#define SPILLWAY_HCONN_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "net/http.h"
#include "net/tls.h"

struct hconn;

/* To host:port (an address), its key pin; tls is a client's context with our identity. */
struct hconn *hconn_new(uv_loop_t *, struct tls_ctx *, const char *host, int port, const char *pin);
/* Whether it goes there, with that pin. */
bool hconn_is(const struct hconn *, const char *host, int port, const char *pin);
/*
 * Send a request without a body (headers: "Name: value" lines, NULL-ended);
 * cb has the answer, or the error (-ETIMEDOUT past timeout_ms, -EPROTO for
 * TLS, -E2BIG past max bytes, -EIO), on a later turn of the loop. -EBUSY
 * while a request is in flight.
 */
int hconn_request(struct hconn *, const char *method, const char *path, const char *const *headers,
    long timeout_ms, size_t max, http_cb *, void *arg);
bool hconn_busy(const struct hconn *);
/* Close it; the request in flight, if any, is never answered. Freed once libuv lets go. */
void hconn_free(struct hconn *);
/* New connections made so far (for benches and tests: how often the channel was kept). */
long hconn_connects(const struct hconn *);

#endif
