/*
 * HTTP client on the libuv loop, over libcurl's multi interface: many calls at
 * once on one thread, connections kept alive and reused (HTTP/2 where the
 * server offers it), every answer bounded in size, every call bounded in time,
 * TLS always verified. Leaf module: it knows nothing of clouds.
 *
 * http_send() either fails (no callback ever) or succeeds, and then the
 * callback runs exactly once, from the loop, unless the call is cancelled.
 */
#ifndef SPILLWAY_HTTP_H
#define SPILLWAY_HTTP_H

#include <stddef.h>

#include <stdbool.h>

#include <uv.h>

struct http_client;
struct http_call;

/* Connections to one host at most; more calls at once queue for them (http_client_new). */
#define HTTP_HOST_CONNECTIONS 32

struct http_request {
	const char *method; /* "GET", "POST", ... */
	const char *url;
	const char *const *headers; /* "Name: value", NULL-terminated; may be NULL */
	const char *body;           /* NULL: no body */
	size_t len;
	long timeout_ms;         /* the whole call: its wait for a connection and the connect too */
	size_t max_response;     /* larger answers fail with -E2BIG */
	const char *source_ip;   /* bind the connection to this local address, or NULL */
	const char *unix_socket; /* connect to this Unix socket (the URL's host is then a name) */
};

struct http_response {
	long status;            /* the HTTP status, or 0 when none arrived */
	int error;              /* 0, -ETIMEDOUT, -ECONNREFUSED, -E2BIG, -EPROTO, -EIO */
	const char *error_text; /* what went wrong, for people; "" when nothing did */
	const char *body;
	size_t len;
	const char *retry_after; /* the Retry-After header, or NULL */
};

typedef void http_cb(const struct http_response *, void *arg);

struct http_client *http_client_new(uv_loop_t *);
/* Cancel every call (no callbacks) and free the client once its handles are closed. */
void http_client_free(struct http_client *);
/* 0 and *call (may be NULL), or -EINVAL for a request curl will not take. */
int http_send(struct http_client *, const struct http_request *, http_cb *, void *arg,
    struct http_call **call);
/* The callback will not run. The call must not have completed. */
void http_cancel(struct http_call *);
/* Connections opened and calls completed so far: reuse shows as connects << calls. */
long http_client_connects(const struct http_client *);
long http_client_calls(const struct http_client *);
/*
 * True for http://127.x.y.z, http://localhost and http://[::1]: plain http is
 * for these (and Unix sockets) only.
 */
int http_url_is_loopback(const char *url);

#endif
