#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "net/httpd.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/xmalloc.h"

/*
 * A request walks READING (headers and body arrive) -> WAITING (the handler
 * has it; the connection is suspended if it did not answer at once) ->
 * ANSWERED (a response is ready; queued on MHD's next call for it) -> QUEUED.
 */
enum req_state { REQ_READING, REQ_WAITING, REQ_ANSWERED, REQ_QUEUED };

/* Past max_body we read and drop this much more, then close the connection. */
#define DRAIN_FACTOR    4
#define ACCEPT_BATCH    64  /* connections taken per turn of the loop */
#define ACCEPT_PAUSE_MS 100 /* out of descriptors: accepting waits this long */

struct httpd_req {
	struct httpd *srv;
	struct MHD_Connection *conn;
	char *method;
	char *path;
	struct buf body;
	size_t dropped;
	int too_large;
	enum req_state state;
	bool suspended;
	struct MHD_Response *resp;
	unsigned status;
	char **hdrs;
	size_t nhdrs;
	char peer[INET6_ADDRSTRLEN];
	long uid; /* the peer's, on a Unix socket; -1 elsewhere */
	int port; /* the local port it came to */
	struct httpd_stream *stream;
	struct httpd_req *prev, *next; /* the server's list of suspended requests */
};

/*
 * A streamed body: MHD reads it through stream_read; while nothing is queued
 * the connection is suspended (MHD would otherwise poll the reader in a busy
 * loop). The request and the stream point at each other until one ends.
 */
struct httpd_stream {
	struct httpd_req *r; /* NULL once the request is over */
	struct buf out;
	size_t sent; /* what of out MHD has taken */
	bool closing, failed, ended;
	void (*closed)(void *);
	void *arg;
};

/*
 * A connection, as the accept path sees it: who it is from (a process on a
 * Unix socket, an address on TCP), whether a request is in progress, and
 * since when it is idle. Owned by the server from accept until MHD says it
 * is closed (NOTIFY_CONNECTION); MHD owns the socket.
 */
struct hconn {
	int fd;
	int port;                         /* the listener's that took it */
	char peer[INET6_ADDRSTRLEN + 16]; /* "pid 1234" or "127.0.0.1" */
	struct MHD_Connection *mc;        /* once MHD has it */
	bool busy;                        /* a request is being read or answered */
	bool evicted;                     /* shut down to make room; MHD closes it next */
	int64_t idle_since_ns;
	struct hconn *prev, *next; /* oldest first */
};

/* A listening socket, ours: accept cannot stall. */
struct listener {
	struct httpd *h;
	int fd;
	int port;
	uv_poll_t poll;
	uv_timer_t pause; /* out of descriptors: accepting waits a little */
};

struct httpd {
	uv_loop_t *loop;
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;
	struct listener listener;
	bool fd_warned;
	size_t max_body;
	unsigned conn_limit, per_peer;
	struct hconn *conns, *conns_tail;
	httpd_handler *handler;
	void *arg;
	struct httpd_req *suspended;
	bool unix_socket;
	int same_user;
	int handles;  /* libuv handles not yet closed */
	bool closing; /* httpd_free runs: the owner may be half gone, no request reaches it */
};

static void mhd_log(void *, const char *, va_list) PRINTFLIKE(2, 0);

static void
mhd_log(void *arg, const char *fmt, va_list ap)
{
	char line[512];

	vsnprintf(line, sizeof line, fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("httpd: %s", line);
}

static void
unlink_suspended(struct httpd_req *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else if (r->srv->suspended == r)
		r->srv->suspended = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

static void on_timer(uv_timer_t *);
static void run(struct httpd *);

static void
suspend(struct httpd_req *r)
{
	struct httpd *h = r->srv;

	MHD_suspend_connection(r->conn);
	r->suspended = true;
	r->next = h->suspended;
	if (h->suspended != NULL)
		h->suspended->prev = r;
	h->suspended = r;
}

static void
resume(struct httpd_req *r)
{
	if (!r->suspended)
		return;
	unlink_suspended(r);
	r->suspended = false;
	MHD_resume_connection(r->conn);
	/* MHD picks a resumed connection up on its next run: make that soon. */
	uv_timer_start(&r->srv->timer, on_timer, 0, 0);
}

static enum MHD_Result
queue(struct httpd_req *r)
{
	enum MHD_Result ret = MHD_queue_response(r->conn, r->status, r->resp);

	MHD_destroy_response(r->resp);
	r->resp = NULL;
	r->state = REQ_QUEUED;
	return ret;
}

/* Hand the request to the handler; suspend the connection if it did not answer. */
static enum MHD_Result
dispatch(struct httpd_req *r)
{
	struct httpd *h = r->srv;

	r->state = REQ_WAITING;
	if (h->closing) {
		httpd_respond(r, 503, "text/plain", "shutting down\n", 14);
		return queue(r);
	}
	h->handler(r, h->arg);
	if (r->state == REQ_ANSWERED)
		return queue(r);
	suspend(r);
	return MHD_YES;
}

/* Who is on the other end of a Unix socket. */
static long
peer_uid(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct ucred cred;
	socklen_t len = sizeof cred;

	if (ci == NULL || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return -1;
	return (long)cred.uid;
}

/* --- connections: the accept path, the limits, eviction --- */

static struct hconn *
conn_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

/* A request begins (busy) or is over: the connection is idle from now. */
static void
conn_busy(struct MHD_Connection *conn, bool busy)
{
	struct hconn *c = conn_of(conn);

	if (c == NULL)
		return;
	c->busy = busy;
	if (!busy)
		c->idle_since_ns = monotonic_ns();
}

static void
conn_unlink(struct httpd *h, struct hconn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		h->conns_tail = c->prev;
	free(c);
}

/* MHD took a connection we handed it (by its socket), or is done with one. */
static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode code)
{
	struct httpd *h = cls;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		for (struct hconn *c = h->conns_tail; c != NULL && ci != NULL; c = c->prev)
			if (c->fd == ci->connect_fd && c->mc == NULL) {
				c->mc = conn;
				*socket_context = c;
				return;
			}
	} else if (*socket_context != NULL) {
		conn_unlink(h, *socket_context);
		*socket_context = NULL;
	}
}

/* The connection idle longest, of this peer (or of anyone): the one to let go. */
static struct hconn *
oldest_idle(struct httpd *h, const char *peer)
{
	struct hconn *best = NULL;

	for (struct hconn *c = h->conns; c != NULL; c = c->next)
		if (!c->busy && !c->evicted && c->mc != NULL &&
		    (peer == NULL || strcmp(c->peer, peer) == 0) &&
		    (best == NULL || c->idle_since_ns < best->idle_since_ns))
			best = c;
	return best;
}

/* Make room: the socket is shut down, MHD sees its end and closes it. */
static void
evict(struct hconn *c)
{
	c->evicted = true;
	shutdown(c->fd, SHUT_RDWR);
}

/* Connections that count: those not already on their way out. */
static unsigned
live(const struct httpd *h, const char *peer)
{
	unsigned n = 0;

	for (const struct hconn *c = h->conns; c != NULL; c = c->next)
		n += !c->evicted && (peer == NULL || strcmp(c->peer, peer) == 0);
	return n;
}

/* No room: a short answer, written as far as the socket takes it, and closed. */
static void
turn_away(int fd, const char *why)
{
	char body[256], msg[512];
	int n =
	    snprintf(body, sizeof body, "{\"error\": {\"code\": 503, \"message\": \"%s\"}}\n", why);
	int m = snprintf(msg, sizeof msg,
	    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
	    "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
	    n, body);

	/* Best effort: a peer that reads nothing is not waited for. */
	if (m > 0 && (size_t)m < sizeof msg &&
	    send(fd, msg, (size_t)m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("httpd: a connection turned away went before its answer");
	close(fd);
}

/* Who is on the other end: a process on a Unix socket, an address on TCP. */
static void
peer_key(int fd, const struct sockaddr_storage *ss, char *out, size_t size)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	char ip[INET6_ADDRSTRLEN] = "";

	if (ss->ss_family == AF_UNIX) {
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			snprintf(out, size, "pid %ld", (long)cred.pid);
		else
			snprintf(out, size, "unknown");
		return;
	}
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, ip,
		    sizeof ip);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, ip,
		    sizeof ip);
	snprintf(out, size, "%s", ip);
}

/*
 * A new connection: room is made by letting go of the connection idle
 * longest (of its peer, past the peer's share; of anyone, past the limit).
 * With nothing idle to let go it is turned away: busy peers keep what they
 * have, and nobody holds the server by connecting and sending nothing.
 */
static void
admit(struct httpd *h, int fd, int port, const struct sockaddr_storage *ss, socklen_t sslen)
{
	struct hconn *c;
	char peer[sizeof c->peer];

	peer_key(fd, ss, peer, sizeof peer);
	if (h->per_peer > 0 && live(h, peer) >= h->per_peer) {
		struct hconn *old = oldest_idle(h, peer);

		if (old == NULL) {
			turn_away(fd, "too many connections of this peer are busy; try again");
			return;
		}
		evict(old);
	}
	if (live(h, NULL) >= h->conn_limit) {
		struct hconn *old = oldest_idle(h, NULL);

		if (old == NULL) {
			turn_away(fd, "every connection is busy; try again");
			return;
		}
		evict(old);
	}
	c = xcalloc(1, sizeof *c);
	c->fd = fd;
	c->port = port;
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	c->idle_since_ns = monotonic_ns();
	c->prev = h->conns_tail;
	if (h->conns_tail != NULL)
		h->conns_tail->next = c;
	else
		h->conns = c;
	h->conns_tail = c;
	/* MHD owns the socket from here, and closes it even when it refuses it. */
	if (MHD_add_connection(h->mhd, fd, (const struct sockaddr *)ss, sslen) != MHD_YES) {
		if (c->mc == NULL)
			conn_unlink(h, c);
	}
}

static void on_accept(uv_poll_t *, int, int);

static void
on_accept_pause(uv_timer_t *t)
{
	struct listener *l = t->data;

	uv_poll_start(&l->poll, UV_READABLE, on_accept);
}

/* Take what waits, a bounded number per turn so the loop goes on; never block. */
static void
on_accept(uv_poll_t *p, int status, int events)
{
	struct listener *l = p->data;
	struct httpd *h = l->h;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			admit(h, fd, l->port, &ss, len);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Out of descriptors: let an idle one go, and wait before trying again. */
			struct hconn *old = oldest_idle(h, NULL);

			if (!h->fd_warned)
				log_warnx(
				    "httpd: cannot accept: %s; waiting a little", strerror(errno));
			h->fd_warned = true;
			if (old != NULL)
				evict(old);
			uv_poll_stop(&l->poll);
			uv_timer_start(&l->pause, on_accept_pause, ACCEPT_PAUSE_MS, 0);
		}
		break;
	}
	run(h);
}

/* Refused before anything is read: the connection ends with this answer. */
static enum MHD_Result
refuse(struct httpd_req *r, unsigned status, const char *text)
{
	r->resp = MHD_create_response_from_buffer(
	    strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_MUST_COPY);
	if (r->resp == NULL)
		return MHD_NO;
	MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	r->status = status;
	return queue(r);
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct httpd *h = cls;
	struct httpd_req *r = *con_cls;

	if (r == NULL) {
		const union MHD_ConnectionInfo *ci;

		r = xcalloc(1, sizeof *r);
		r->srv = h;
		r->conn = conn;
		r->method = xstrdup(method);
		r->path = xstrdup(url);
		buf_init(&r->body, h->max_body);
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (ci != NULL && ci->client_addr != NULL) {
			const struct sockaddr *sa = ci->client_addr;

			if (sa->sa_family == AF_INET)
				inet_ntop(AF_INET,
				    &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
				    r->peer, sizeof r->peer);
			else if (sa->sa_family == AF_INET6)
				inet_ntop(AF_INET6,
				    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
				    r->peer, sizeof r->peer);
		}
		*con_cls = r;
		conn_busy(conn, true);
		r->uid = h->unix_socket ? peer_uid(conn) : -1;
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		r->port = ci != NULL && ci->socket_context != NULL
		    ? ((const struct hconn *)ci->socket_context)->port
		    : h->listener.port;
		if (h->unix_socket && h->same_user && r->uid != (long)geteuid())
			return refuse(r, 403,
			    "{\"error\": {\"code\": 403, \"message\": \"this socket serves only the "
			    "user who runs the daemon\"}}\n");
		return MHD_YES;
	}
	if (*upload_size != 0) {
		size_t n = *upload_size;

		*upload_size = 0;
		if (r->too_large) {
			/* Do not read an endless body forever. */
			r->dropped += n;
			return r->dropped > DRAIN_FACTOR * h->max_body ? MHD_NO : MHD_YES;
		}
		if (buf_add(&r->body, upload, n) != 0) {
			r->too_large = 1;
			r->dropped = r->body.len + n;
			buf_release(&r->body);
		}
		return MHD_YES;
	}
	switch (r->state) {
	case REQ_READING:
		return dispatch(r);
	case REQ_QUEUED:
		return MHD_YES;
	case REQ_ANSWERED:
		return queue(r);
	default:
		return MHD_YES;
	}
}

static void
end_stream(struct httpd_stream *st)
{
	if (st->ended)
		return;
	st->ended = true;
	if (st->closed != NULL)
		st->closed(st->arg);
}

static void
on_completed(
    void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct httpd_req *r = *con_cls;

	if (r == NULL)
		return;
	conn_busy(conn, false);
	unlink_suspended(r);
	if (r->stream != NULL) {
		r->stream->r = NULL;
		end_stream(r->stream);
	}
	if (r->resp != NULL)
		MHD_destroy_response(r->resp);
	for (size_t i = 0; i < r->nhdrs; i++)
		free(r->hdrs[i]);
	free(r->hdrs);
	buf_release(&r->body);
	free(r->method);
	free(r->path);
	free(r);
	*con_cls = NULL;
}

/* Let MHD do its work, then wake up again when it says it must. */
static void
run(struct httpd *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	MHD_run(h->mhd);
	if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
		uv_timer_start(&h->timer, on_timer, ms, 0);
	else
		uv_timer_stop(&h->timer);
}

static void
on_timer(uv_timer_t *t)
{
	run(t->data);
}

static void
on_poll(uv_poll_t *p, int status, int events)
{
	run(p->data);
}

static void
add_listener(struct httpd *h, int fd, const struct sockaddr_storage *ss)
{
	struct listener *l = &h->listener;

	l->h = h;
	l->fd = fd;
	l->port = ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
	    : ss->ss_family == AF_INET      ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
	                                    : 0;
	uv_poll_init(h->loop, &l->poll, fd);
	uv_timer_init(h->loop, &l->pause);
	l->poll.data = l->pause.data = l;
	h->handles += 2;
	uv_poll_start(&l->poll, UV_READABLE, on_accept);
}

int
httpd_new_fd(uv_loop_t *loop, int fd, const struct httpd_opts *o, httpd_handler *handler, void *arg,
    struct httpd **out, char **cause)
{
	struct httpd *h;
	const union MHD_DaemonInfo *info;
	/* The listening socket is ours (on_accept): MHD only serves what it is given. */
	unsigned flags =
	    MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (listen(fd, 512) == -1 || getsockname(fd, (struct sockaddr *)&ss, &len) == -1) {
		int error = errno;

		*cause = xasprintf("cannot listen: %s", strerror(error));
		close(fd);
		return -error;
	}
	h = xcalloc(1, sizeof *h);
	h->loop = loop;
	h->max_body = o->max_body;
	h->unix_socket = ss.ss_family == AF_UNIX;
	h->same_user = o->same_user;
	h->handler = handler;
	h->arg = arg;
	h->conn_limit = o->conn_limit > 0 ? o->conn_limit : 1;
	h->per_peer = o->conn_per_peer < h->conn_limit ? o->conn_per_peer : 0;
	/* MHD's own limit only backs ours up: evicted connections linger until it closes them. */
	errno = 0;
	h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER,
	    mhd_log, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_CONNECTION_TIMEOUT,
	    o->conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT, 2 * h->conn_limit + ACCEPT_BATCH,
	    MHD_OPTION_END);
	if (h->mhd == NULL) {
		/* Out of descriptors, mostly: its epoll set and event fd. */
		int error = errno == EMFILE || errno == ENFILE ? errno : EIO;

		close(fd);
		free(h);
		*cause = xasprintf("cannot start an HTTP server: %s", strerror(error));
		return -error;
	}
	info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	uv_poll_init(loop, &h->poll, info->epoll_fd);
	uv_timer_init(loop, &h->timer);
	h->poll.data = h->timer.data = h;
	h->handles = 2;
	uv_poll_start(&h->poll, UV_READABLE, on_poll);
	add_listener(h, fd, &ss);
	run(h);
	*out = h;
	return 0;
}

int
httpd_adopt(struct httpd *h, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1) {
		int error = -errno;

		close(fd);
		return error;
	}
	admit(h, fd, 0, &ss, len);
	run(h);
	return 0;
}

int
httpd_new(uv_loop_t *loop, const char *host, int port, const struct httpd_opts *o,
    httpd_handler *handler, void *arg, struct httpd **out, char **cause)
{
	int fd;

	if ((fd = httpd_bind(host, port, cause)) < 0)
		return fd;
	return httpd_new_fd(loop, fd, o, handler, arg, out, cause);
}

int
httpd_port(const struct httpd *h)
{
	return h->listener.port;
}

static void
on_closed(uv_handle_t *handle)
{
	struct httpd *h = handle->data;

	if (--h->handles == 0)
		free(h);
}

/* libuv no longer watches the listening socket: it can be closed. */
static void
on_listen_closed(uv_handle_t *handle)
{
	struct listener *l = handle->data;

	close(l->fd);
	if (--l->h->handles == 0)
		free(l->h);
}

static void
on_pause_closed(uv_handle_t *handle)
{
	struct listener *l = handle->data;

	if (--l->h->handles == 0)
		free(l->h);
}

void
httpd_free(struct httpd *h)
{
	if (h == NULL)
		return;
	h->closing = true;
	while (h->suspended != NULL) {
		struct httpd_req *r = h->suspended;

		if (r->stream != NULL) {
			r->stream->closing = true;
			resume(r);
		} else {
			httpd_respond(r, 503, "text/plain", "shutting down\n", 14);
		}
	}
	/* Resumed, then written: a few turns so the answers and the streams' last chunks go out. */
	for (int i = 0; i < 3; i++)
		MHD_run(h->mhd);
	/* libuv must stop watching the epoll fd before MHD closes it. */
	uv_poll_stop(&h->poll);
	uv_timer_stop(&h->timer);
	uv_poll_stop(&h->listener.poll);
	uv_timer_stop(&h->listener.pause);
	MHD_stop_daemon(h->mhd);
	/* MHD said CLOSED for each connection it had; what it never took goes now. */
	while (h->conns != NULL)
		conn_unlink(h, h->conns);
	uv_close((uv_handle_t *)&h->poll, on_closed);
	uv_close((uv_handle_t *)&h->timer, on_closed);
	uv_close((uv_handle_t *)&h->listener.pause, on_pause_closed);
	uv_close((uv_handle_t *)&h->listener.poll, on_listen_closed);
}

int
httpd_req_port(const struct httpd_req *r)
{
	return r->port;
}

const char *
httpd_req_method(const struct httpd_req *r)
{
	return r->method;
}

const char *
httpd_req_path(const struct httpd_req *r)
{
	return r->path;
}

const char *
httpd_req_query(const struct httpd_req *r, const char *key)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *
httpd_req_header(const struct httpd_req *r, const char *key)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

static enum MHD_Result
add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct buf *b = cls;

	buf_printf(b, "%s%s=%s", b->len ? "&" : "", key, value != NULL ? value : "");
	return MHD_YES;
}

char *
httpd_req_query_string(const struct httpd_req *r)
{
	struct buf b = BUF_INIT(64 * 1024);

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_arg, &b);
	return buf_detach(&b, NULL);
}

const char *
httpd_req_body(const struct httpd_req *r, size_t *len, int *too_large)
{
	if (len != NULL)
		*len = r->body.len;
	if (too_large != NULL)
		*too_large = r->too_large;
	return buf_str(&r->body);
}

const char *
httpd_req_peer(const struct httpd_req *r)
{
	return r->peer;
}

struct httpd *
httpd_req_server(const struct httpd_req *r)
{
	return r->srv;
}

void
httpd_set_header(struct httpd_req *r, const char *name, const char *value)
{
	r->hdrs = xreallocarray(r->hdrs, r->nhdrs + 2, sizeof *r->hdrs);
	r->hdrs[r->nhdrs++] = xstrdup(name);
	r->hdrs[r->nhdrs++] = xstrdup(value);
}

static void
check_waiting(const struct httpd_req *r)
{
	if (r->state != REQ_WAITING)
		fatalx("httpd: a request was answered twice or before it was read");
}

/* The response becomes the request's answer, with its headers; MHD queues it next. */
static void
answer_with(struct httpd_req *r, unsigned status, const char *ctype, struct MHD_Response *resp)
{
	if ((r->resp = resp) == NULL)
		fatalx("httpd: cannot create a response");
	if (ctype != NULL)
		MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	for (size_t i = 0; i + 1 < r->nhdrs; i += 2)
		MHD_add_response_header(r->resp, r->hdrs[i], r->hdrs[i + 1]);
	r->status = status;
	r->state = REQ_ANSWERED;
	resume(r);
}

void
httpd_respond(struct httpd_req *r, unsigned status, const char *ctype, const char *body, size_t len)
{
	check_waiting(r);
	answer_with(r, status, ctype,
	    MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY));
}

static ssize_t
endless_read(void *cls, uint64_t pos, char *out, size_t max)
{
	memset(out, ' ', max);
	if (pos == 0 && max > 0)
		out[0] = '[';
	return (ssize_t)max;
}

void
httpd_respond_endless(struct httpd_req *r, unsigned status, const char *ctype)
{
	check_waiting(r);
	answer_with(r, status, ctype,
	    MHD_create_response_from_callback(
	        MHD_SIZE_UNKNOWN, 64 * 1024, endless_read, NULL, NULL));
}

static ssize_t
stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct httpd_stream *st = cls;
	size_t n;

	if (st->r == NULL || st->failed)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (st->sent == st->out.len) {
		if (st->closing)
			return MHD_CONTENT_READER_END_OF_STREAM;
		buf_reset(&st->out);
		st->sent = 0;
		suspend(st->r); /* until there is more: see httpd_stream_write */
		return 0;
	}
	n = st->out.len - st->sent < max ? st->out.len - st->sent : max;
	memcpy(out, st->out.data + st->sent, n);
	st->sent += n;
	return (ssize_t)n;
}

/* MHD is done with the response: the connection is over. */
static void
stream_free(void *cls)
{
	struct httpd_stream *st = cls;

	if (st->r != NULL)
		st->r->stream = NULL;
	end_stream(st);
	buf_release(&st->out);
	free(st);
}

struct httpd_stream *
httpd_stream_open(struct httpd_req *r, unsigned status, const char *ctype, size_t max_buffered,
    void (*closed)(void *), void *arg)
{
	struct httpd_stream *st;

	check_waiting(r);
	st = xcalloc(1, sizeof *st);
	st->r = r;
	buf_init(&st->out, max_buffered);
	st->closed = closed;
	st->arg = arg;
	r->stream = st;
	answer_with(r, status, ctype,
	    MHD_create_response_from_callback(
	        MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free));
	return st;
}

int
httpd_stream_write(struct httpd_stream *st, const char *data, size_t len)
{
	if (st->r == NULL || st->closing || st->failed)
		return -EPIPE;
	if (buf_add(&st->out, data, len) != 0) {
		/* A peer that does not read is not waited for: it is dropped. */
		st->failed = true;
		resume(st->r);
		return -ENOBUFS;
	}
	resume(st->r);
	return 0;
}

void
httpd_stream_close(struct httpd_stream *st)
{
	st->closing = true;
	if (st->r != NULL)
		resume(st->r);
}
