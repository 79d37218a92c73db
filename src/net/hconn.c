/*
 * hconn: a kept HTTP/1.1 channel to one server (hconn.h). The channel owns
 * its stream, its connect request and a timer (the request's deadline); it
 * is freed once all three have let go. What one connection's server gave
 * to resume with (tls.h) is kept for the next connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include "net/hconn.h"
#include "net/stream.h"
#include "util/buf.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define REQUEST_MAX 4096
#define HEAD_MAX    16384 /* an answer's status line and headers */

struct hconn {
	uv_loop_t *loop;
	struct tls_ctx *tls;
	char host[64], pin[TLS_PIN_MAX];
	int port;
	struct tls_session *session; /* the server's newest ticket */
	struct stream *s;            /* NULL: no connection open */
	bool ready;                  /* its handshake is done */
	long served;                 /* answers on it */
	long connects;
	uv_timer_t timer;
	int handles; /* the timer, the stream, a connect in flight */
	bool freed;
	/* The request in flight (busy). */
	bool busy, retried;
	char *request; /* sent again on a new connection if the kept one was gone */
	size_t request_len;
	size_t max;
	http_cb *cb;
	void *arg;
	struct buf in;
};

struct pending_connect {
	uv_connect_t req;
	struct hconn *c;
	struct stream *s; /* the stream it connects: still c's? */
};

static int connect_now(struct hconn *);

static void
let_go(struct hconn *c)
{
	if (--c->handles > 0 || !c->freed)
		return;
	tls_session_free(c->session);
	buf_release(&c->in);
	free(c);
}

static void
on_timer_closed(uv_handle_t *h)
{
	let_go(h->data);
}

static void
on_stream_closed(struct stream *s)
{
	let_go(stream_data(s));
}

/* The connection goes (its ticket kept); the next request makes another. */
static void
drop(struct hconn *c, bool reset)
{
	if (c->s == NULL)
		return;
	tls_session_keep(&c->session, stream_get_tls(c->s));
	stream_close(c->s, reset);
	c->s = NULL;
	c->ready = false;
	c->served = 0;
}

/* A lease's signature is in it: wiped, and gone between requests (an idle channel holds none). */
static void
forget_request(struct hconn *c)
{
	if (c->request != NULL)
		explicit_bzero(c->request, c->request_len);
	free(c->request);
	c->request = NULL;
	c->request_len = 0;
}

/* The request is over: its answer, or why there is none. */
static void
finish(struct hconn *c, long status, int error, const char *why, const char *body, size_t len)
{
	struct http_response r = {.status = status,
	    .error = error,
	    .error_text = why != NULL ? why : "",
	    .body = body != NULL ? body : "",
	    .len = len};
	http_cb *cb = c->cb;
	void *arg = c->arg;

	uv_timer_stop(&c->timer);
	c->busy = false;
	c->cb = NULL;
	forget_request(c);
	/* The callback may send the next request, or free the channel: nothing of c after it. */
	cb(&r, arg);
}

static void
fail(struct hconn *c, int error, const char *why)
{
	char text[300];

	snprintf(text, sizeof text, "%s:%d: %s", c->host, c->port, why);
	drop(c, true);
	if (c->busy)
		finish(c, 0, error, text, NULL, 0);
}

static void
send_request(struct hconn *c)
{
	int error;

	buf_reset(&c->in);
	if ((error = stream_write(c->s, c->request, c->request_len)) != 0)
		fail(c, -EIO, uv_strerror(error));
}

/* A connection ended or failed: a kept one that gave no byte of this answer is made again. */
static void
lost(struct hconn *c, int error, const char *why)
{
	if (c->busy && c->served > 0 && c->in.len == 0 && !c->retried) {
		c->retried = true;
		drop(c, true);
		if ((error = connect_now(c)) != 0)
			fail(c, -EIO, uv_strerror(error));
		return;
	}
	fail(c, error, why);
}

/* What the answer's head says: 0 with the status and the body's length, or -EAGAIN / -EPROTO. */
static int
parse_head(const char *text, size_t len, long *status, size_t *head, size_t *body, bool *keep)
{
	const char *end = memmem(text, len, "\r\n\r\n", 4), *line;
	bool have_len = false;
	int minor;

	if (end == NULL)
		return len >= HEAD_MAX ? -EPROTO : -EAGAIN;
	if (sscanf(text, "HTTP/1.%d %ld", &minor, status) != 2 || *status < 100 || *status > 999)
		return -EPROTO;
	*keep = minor >= 1;
	*head = (size_t)(end - text) + 4;
	for (line = strstr(text, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
		if (strncasecmp(line, "Content-Length:", 15) == 0) {
			char *e;
			unsigned long long n = strtoull(line + 15, &e, 10);

			if (e == line + 15 || (*e != '\r' && *e != ' '))
				return -EPROTO;
			*body = (size_t)n;
			have_len = true;
		} else if (strncasecmp(line, "Connection:", 11) == 0) {
			const char *v = line + 11;

			while (*v == ' ')
				v++;
			if (strncasecmp(v, "close", 5) == 0)
				*keep = false;
			else if (strncasecmp(v, "keep-alive", 10) == 0)
				*keep = true;
		}
	}
	return have_len ? 0 : -EPROTO;
}

static void
on_read(struct stream *s, const char *data, size_t n)
{
	struct hconn *c = stream_data(s);
	long status = 0;
	size_t head = 0, body = 0;
	bool keep = false;
	int error;

	if (!c->busy) {
		fail(c, -EPROTO, "the server sent what nobody asked for");
		return;
	}
	if (buf_add(&c->in, data, n) != 0) {
		fail(c, -E2BIG, "the answer is too large");
		return;
	}
	if ((error = parse_head(buf_str(&c->in), c->in.len, &status, &head, &body, &keep)) ==
	    -EAGAIN)
		return;
	if (error != 0) {
		fail(c, -EPROTO, "not an HTTP/1.1 answer with a Content-Length");
		return;
	}
	if (c->in.len < head + body)
		return;
	if (c->in.len > head + body) {
		fail(c, -EPROTO, "more than the answer arrived");
		return;
	}
	c->served++;
	if (!keep)
		drop(c, false);
	{
		/* The body outlives the next request's buffer reset: the callback has it first. */
		struct buf answer = c->in;

		buf_init(&c->in, c->max + HEAD_MAX);
		finish(c, status, 0, NULL, answer.data + head, body);
		buf_release(&answer);
	}
}

static void
on_handshake(struct stream *s, int error, const char *why)
{
	struct hconn *c = stream_data(s);

	if (error != 0) {
		fail(c, -EPROTO, why);
		return;
	}
	c->ready = true;
	if (c->busy)
		send_request(c);
}

static void
on_ended(struct stream *s, bool reset, const char *why)
{
	struct hconn *c = stream_data(s);

	if (s != c->s)
		return;
	if (!c->busy) {
		drop(c, false); /* closed while idle: the next request connects */
		return;
	}
	lost(c, -EIO, why != NULL ? why : "the server closed the connection");
}

static void
on_moved(struct stream *s, size_t n)
{
}

static const struct stream_events events = {
    .handshake = on_handshake,
    .moved = on_moved,
    .ended = on_ended,
    .closed = on_stream_closed,
    .read = on_read,
};

static void
on_connect(uv_connect_t *req, int status)
{
	struct pending_connect *p = (struct pending_connect *)req;
	struct hconn *c = p->c;
	struct stream *s = p->s;

	free(p);
	if (s == c->s && !c->freed) {
		if (status != 0) {
			fail(c, status == UV_ECONNREFUSED ? -ECONNREFUSED : -EIO,
			    uv_strerror(status));
		} else {
			struct tls *t = tls_new(c->tls, c->pin, TLS_ALPN_HTTP);

			tls_resume(t, c->session);
			stream_tls(s, t);
			stream_start(s);
		}
	}
	let_go(c);
}

/* A new connection for the request in flight: 0, or a libuv error (nothing open then). */
static int
connect_now(struct hconn *c)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
	struct pending_connect *p;
	int error;

	inet_pton(AF_INET, c->host, &to.sin_addr); /* checked by hconn_request */
	c->s = stream_new(c->loop, &events, c);
	c->handles++;
	c->connects++;
	p = xcalloc(1, sizeof *p);
	p->c = c;
	p->s = c->s;
	if ((error = uv_tcp_connect(
	         &p->req, stream_tcp(c->s), (const struct sockaddr *)&to, on_connect)) != 0) {
		free(p);
		drop(c, false);
		return error;
	}
	c->handles++;
	return 0;
}

static void
on_timeout(uv_timer_t *t)
{
	struct hconn *c = t->data;
	char why[64];

	snprintf(why, sizeof why, "no answer in time");
	fail(c, -ETIMEDOUT, why);
}

struct hconn *
hconn_new(uv_loop_t *loop, struct tls_ctx *tls, const char *host, int port, const char *pin)
{
	struct hconn *c = xcalloc(1, sizeof *c);

	c->loop = loop;
	c->tls = tls;
	snprintf(c->host, sizeof c->host, "%s", host);
	snprintf(c->pin, sizeof c->pin, "%s", pin);
	c->port = port;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	buf_init(&c->in, 0);
	return c;
}

bool
hconn_is(const struct hconn *c, const char *host, int port, const char *pin)
{
	return c != NULL && c->port == port && strcmp(c->host, host) == 0 &&
	    strcmp(c->pin, pin) == 0;
}

int
hconn_request(struct hconn *c, const char *method, const char *path, const char *const *headers,
    long timeout_ms, size_t max, http_cb *cb, void *arg)
{
	struct buf b = BUF_INIT(REQUEST_MAX);
	struct in_addr a;
	int error;

	if (c->busy)
		return -EBUSY;
	if (inet_pton(AF_INET, c->host, &a) != 1)
		return -EINVAL;
	buf_printf(&b,
	    "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: spillway/" SPILLWAY_VERSION "\r\n",
	    method, path, c->host, c->port);
	for (const char *const *h = headers; h != NULL && *h != NULL; h++)
		buf_printf(&b, "%s\r\n", *h);
	if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
		buf_addstr(&b, "Content-Length: 0\r\n");
	if (buf_addstr(&b, "\r\n") != 0) {
		explicit_bzero(b.data, b.len);
		buf_release(&b);
		return -E2BIG;
	}
	c->request = buf_detach(&b, &c->request_len);
	c->busy = true;
	c->retried = false;
	c->cb = cb;
	c->arg = arg;
	c->max = max;
	buf_release(&c->in);
	buf_init(&c->in, max + HEAD_MAX);
	if (c->s == NULL && (error = connect_now(c)) != 0) {
		c->busy = false;
		forget_request(c);
		return -EIO;
	}
	uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
	if (c->ready)
		send_request(c);
	return 0;
}

bool
hconn_busy(const struct hconn *c)
{
	return c != NULL && c->busy;
}

long
hconn_connects(const struct hconn *c)
{
	return c->connects;
}

void
hconn_free(struct hconn *c)
{
	if (c == NULL)
		return;
	c->freed = true;
	c->busy = false;
	forget_request(c);
	drop(c, false);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
