/*
 * An HTTP/1.1 server on the libuv loop, over libmicrohttpd in its external
 * epoll mode: no threads, so handlers run on the loop thread that owns all
 * state. Leaf module: it knows nothing of what it serves.
 *
 * The handler is called once per request, after the whole body has arrived
 * (or its bound was passed: see httpd_req_body). It answers with
 * httpd_respond(), now or later from any loop callback; until then the
 * connection is suspended. A request is owned by the server; the handler may
 * keep the pointer only until it responds.
 */
#ifndef SPILLWAY_HTTPD_H
#define SPILLWAY_HTTPD_H

#include <stddef.h>
#include <sys/socket.h>

#include <uv.h>

struct httpd;
struct httpd_req;

typedef void httpd_handler(struct httpd_req *, void *arg);

/*
 * Connections are accepted by the server itself, never more than it can
 * take, so the listening socket cannot stall: past conn_limit (or a peer's
 * conn_per_peer: a process on a Unix socket, an address on TCP) the
 * connection idle longest (of that peer, or of anyone) is let go to make
 * room; with none idle, the newcomer gets a 503 and is closed. A connection
 * is idle between requests, and while its first request's headers have not
 * all arrived; a streamed response keeps it busy.
 */
struct httpd_opts {
	size_t max_body;         /* larger bodies are not kept (see httpd_req_body) */
	unsigned conn_timeout_s; /* idle connections are closed after this */
	unsigned conn_limit;     /* concurrent connections */
	unsigned conn_per_peer;  /* of one peer (0: no share of its own) */
	int same_user; /* Unix sockets: a peer of another uid gets 403 before the handler */
};

/* Listen on host:port (port 0: any). 0, or -errno and a cause. */
int httpd_new(uv_loop_t *, const char *host, int port, const struct httpd_opts *, httpd_handler *,
    void *arg, struct httpd **out, char **cause);
/* A bound, not yet listening, non-blocking TCP socket: the fd, or -errno and a cause. */
int httpd_bind(const char *host, int port, char **cause);
/*
 * The same on a Unix socket at path, created 0600 (a stale socket file that
 * nobody answers on is replaced; a live one is -EADDRINUSE).
 */
int httpd_bind_unix(const char *path, char **cause);
/* Serve on a socket the caller bound (it is put to listen, and owned from now on). */
int httpd_new_fd(uv_loop_t *, int fd, const struct httpd_opts *, httpd_handler *, void *arg,
    struct httpd **out, char **cause);
int httpd_port(const struct httpd *);
/*
 * Serve a connected socket the caller made, as if accepted (the limits
 * apply; the server owns fd either way): one end of a socketpair, say, for
 * requests that reach the server without a port of their own (the
 * emulator's agents, front.c). Its requests' httpd_req_port is 0.
 */
int httpd_adopt(struct httpd *, int fd);
/*
 * Answer every pending request with 503, stop listening, and free the server
 * once libuv is done with its handles.
 */
void httpd_free(struct httpd *);

const char *httpd_req_method(const struct httpd_req *);
/* The local port the request came to; 0 on a socket given by httpd_adopt. */
int httpd_req_port(const struct httpd_req *);
/* The decoded path, without the query. */
const char *httpd_req_path(const struct httpd_req *);
/* A decoded query argument or header; NULL when absent. */
const char *httpd_req_query(const struct httpd_req *, const char *);
const char *httpd_req_header(const struct httpd_req *, const char *);
/* The query as "k=v&k=v" (decoded values), for logs. Caller frees. */
char *httpd_req_query_string(const struct httpd_req *);
/* The body; *too_large is set when it passed max_body (the body is then empty). */
const char *httpd_req_body(const struct httpd_req *, size_t *len, int *too_large);
/* The peer's address as text ("127.0.0.1"), or "" when unknown. */
const char *httpd_req_peer(const struct httpd_req *);
/* The peer's user id on a Unix socket (SO_PEERCRED), or -1. */
long httpd_req_peer_uid(const struct httpd_req *);
struct httpd *httpd_req_server(const struct httpd_req *);

/* Add a header to the response to come. */
void httpd_set_header(struct httpd_req *, const char *name, const char *value);
/* Answer; the body is copied. Exactly once per request. */
void httpd_respond(
    struct httpd_req *, unsigned status, const char *content_type, const char *body, size_t len);

/* A body that never ends (filler bytes): for testing clients that must stop reading. */
void httpd_respond_endless(struct httpd_req *, unsigned status, const char *content_type);

/*
 * A response written over time (Server-Sent Events): opened instead of
 * httpd_respond(), then written to from any loop callback. The connection is
 * suspended while there is nothing to send. closed(arg) is called once, when
 * the stream ends for any reason (the peer left, httpd_stream_close, the
 * server freed); the stream must not be used after it.
 */
struct httpd_stream;
struct httpd_stream *httpd_stream_open(struct httpd_req *, unsigned status, const char *content_type,
    size_t max_buffered, void (*closed)(void *arg), void *arg);
/* Queue data. -ENOBUFS when a slow peer has max_buffered unsent: the stream ends. */
int httpd_stream_write(struct httpd_stream *, const char *data, size_t len);
/* End the stream once what is queued is sent. */
void httpd_stream_close(struct httpd_stream *);

#endif
