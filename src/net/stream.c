/*
 * Streams (stream.h). A stream owns its handle, its TLS state and what it
 * read before it was joined (a client's first bytes can arrive in the same
 * packet as the end of its handshake). Writes that the kernel cannot take at
 * once are queued on the stream written to; the stream read from stops while
 * that queue is past HIGH_WATER. A stream is freed when libuv closes its
 * handle; an event is never raised for one being closed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/stream.h"
#include "util/buf.h"
#include "util/xmalloc.h"

#define CHUNK      65536
#define HIGH_WATER (256 * 1024) /* queued to one side before the other is read no more */

struct stream {
	uv_tcp_t tcp;
	const struct stream_events *ev;
	void *data;
	struct tls *tls;
	struct stream *peer; /* joined to */
	struct buf early;    /* read before it was joined */
	size_t queued;       /* written, not yet taken by the kernel */
	bool reading, stopped, eof, early_eof, shut, ended, closing;
};

struct wreq {
	uv_write_t req;
	struct stream *to;
	size_t len;
	char data[];
};

/*
 * One loop, one thread: a buffer for what is read, one for what TLS makes
 * of it, held while the thread has a stream. Not static storage: the loader
 * zeroes a thread's whole TLS block, so 128 KiB would be resident in every
 * process, a daemon at rest (no stream) too.
 */
struct scratch {
	char read[CHUNK], sealed[CHUNK];
};
static _Thread_local struct scratch *scratch;
static _Thread_local long streams;

static void start_reading(struct stream *);

struct stream *
stream_new(uv_loop_t *loop, const struct stream_events *ev, void *data)
{
	struct stream *s = xcalloc(1, sizeof *s);

	if (streams++ == 0)
		scratch = xmalloc(sizeof *scratch);
	uv_tcp_init(loop, &s->tcp);
	s->tcp.data = s;
	s->ev = ev;
	s->data = data;
	buf_init(&s->early, HIGH_WATER + CHUNK);
	return s;
}

void *
stream_data(const struct stream *s)
{
	return s->data;
}

uv_tcp_t *
stream_tcp(struct stream *s)
{
	return &s->tcp;
}

void
stream_tls(struct stream *s, struct tls *t)
{
	s->tls = t;
}

const struct tls *
stream_get_tls(const struct stream *s)
{
	return s->tls;
}

/* The pair is done: said once, to the owner, who closes both. */
static void
end(struct stream *s, bool reset, const char *why)
{
	if (s->closing || s->ended)
		return;
	s->ended = true;
	if (s->peer != NULL)
		s->peer->ended = true;
	s->ev->ended(s, reset, why);
}

static void
on_written(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct stream *to = w->to;

	to->queued -= w->len;
	free(w);
	if (to->closing)
		return;
	if (status < 0)
		end(to, true, uv_strerror(status));
	else if (to->peer != NULL && to->peer->stopped && to->queued < HIGH_WATER / 2)
		start_reading(to->peer);
}

/* Onto the socket: at once what it takes, the rest queued. 0, or a libuv error. */
static int
raw_write(struct stream *s, const char *data, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
	int sent;

	/* EAGAIN also when writes are queued before: order is kept. */
	if ((sent = uv_try_write((uv_stream_t *)&s->tcp, &b, 1)) == UV_EAGAIN)
		sent = 0;
	if (sent < 0)
		return sent;
	if ((size_t)sent < n) {
		size_t rest = n - (size_t)sent;
		struct wreq *w = xmalloc(sizeof *w + rest);
		int error;

		memcpy(w->data, data + sent, rest);
		w->to = s;
		w->len = rest;
		b = uv_buf_init(w->data, (unsigned)rest);
		if ((error = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_written)) != 0) {
			free(w);
			return error;
		}
		s->queued += rest;
	}
	return 0;
}

/* What TLS made to send. */
static int
flush(struct stream *s)
{
	size_t n;
	int error;

	if (s->tls == NULL)
		return 0;
	while ((n = tls_output(s->tls, scratch->sealed, sizeof scratch->sealed)) > 0)
		if ((error = raw_write(s, scratch->sealed, n)) != 0)
			return error;
	return 0;
}

static int
write_plain(struct stream *s, const char *data, size_t n)
{
	if (s->tls == NULL)
		return raw_write(s, data, n);
	if (tls_write(s->tls, data, n) != 0)
		return UV_EPROTO;
	return flush(s);
}

/* Read from s: to its peer, or kept until it is joined. */
static void
on_plain(void *arg, const char *data, size_t n)
{
	struct stream *s = arg, *to = s->peer;
	int error;

	if (s->closing || s->ended)
		return;
	if (to == NULL && s->ev->read != NULL) {
		s->ev->read(s, data, n);
		return;
	}
	if (to == NULL) {
		if (buf_add(&s->early, data, n) != 0 || s->early.len >= HIGH_WATER) {
			s->stopped = true;
			uv_read_stop((uv_stream_t *)&s->tcp);
		}
		return;
	}
	if ((error = write_plain(to, data, n)) != 0) {
		end(s, true, uv_strerror(error));
		return;
	}
	s->ev->moved(s, n);
	if (to->queued >= HIGH_WATER) {
		s->stopped = true;
		uv_read_stop((uv_stream_t *)&s->tcp);
	}
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
	struct stream *s = req->data;

	free(req);
	if (s->closing)
		return;
	s->shut = true;
	/* Both ways ended: the pair is done. */
	if (s->peer != NULL && s->peer->shut)
		end(s, false, NULL);
}

/* No more to s: its writing is shut once its queue is sent (TLS: after a close_notify). */
static void
shut_writing(struct stream *s)
{
	uv_shutdown_t *req = xcalloc(1, sizeof *req);
	int error;

	if (s->tls != NULL) {
		tls_close_notify(s->tls);
		flush(s);
	}
	req->data = s;
	if ((error = uv_shutdown(req, (uv_stream_t *)&s->tcp, on_shutdown)) != 0) {
		free(req);
		end(s, true, uv_strerror(error));
	}
}

static void
got_eof(struct stream *s)
{
	s->eof = true;
	uv_read_stop((uv_stream_t *)&s->tcp);
	if (s->peer == NULL && s->ev->read != NULL)
		end(s, false, NULL);
	else if (s->peer != NULL)
		shut_writing(s->peer);
	else
		s->early_eof = true;
}

/* A failure before the handshake ended is the handshake's; after, the pair's. */
static void
failed(struct stream *s, const char *why)
{
	if (s->tls != NULL && !tls_ready(s->tls) && s->ev->handshake != NULL) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->ended = true;
		s->ev->handshake(s, -EPROTO, why);
	} else {
		end(s, true, why);
	}
}

static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	/* One buffer for all: what is read is written, or copied, before the next read. */
	*buf = uv_buf_init(scratch->read, sizeof scratch->read);
}

static void
on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct stream *s = stream->data;
	enum tls_result r;
	bool was;
	int error;

	if (s->closing || s->ended || n == 0)
		return;
	if (n == UV_EOF && (s->tls == NULL || tls_ready(s->tls))) {
		got_eof(s);
		return;
	}
	if (n < 0) {
		failed(s,
		    n == UV_EOF ? "the peer closed the connection during the TLS handshake"
		                : uv_strerror((int)n));
		return;
	}
	if (s->tls == NULL) {
		on_plain(s, buf->base, (size_t)n);
		return;
	}
	was = tls_ready(s->tls);
	r = tls_input(s->tls, buf->base, (size_t)n, on_plain, s);
	if (s->closing || s->ended)
		return;
	if ((error = flush(s)) != 0) {
		failed(s, uv_strerror(error));
	} else if (r == TLS_FAILED) {
		failed(s, tls_error(s->tls));
	} else if (!was && tls_ready(s->tls) && s->ev->handshake != NULL) {
		s->ev->handshake(s, 0, NULL);
		if (r == TLS_CLOSED && !s->closing && !s->ended)
			got_eof(s);
	} else if (r == TLS_CLOSED) {
		got_eof(s);
	}
}

static void
start_reading(struct stream *s)
{
	s->stopped = false;
	if (!s->eof && !s->closing)
		uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
}

void
stream_start(struct stream *s)
{
	if (s->tls == NULL)
		return;
	uv_tcp_nodelay(&s->tcp, 1);
	start_reading(s);
	if (tls_handshake(s->tls) == TLS_FAILED)
		failed(s, tls_error(s->tls));
	else if (flush(s) != 0)
		failed(s, "cannot send the TLS handshake");
}

/* What s read before the join goes to its peer now, its end of file too. */
static void
pass_early(struct stream *s)
{
	struct buf early = s->early;
	int error;

	if (early.len > 0) {
		buf_init(&s->early, HIGH_WATER + CHUNK);
		error = write_plain(s->peer, early.data, early.len);
		if (error == 0)
			s->ev->moved(s, early.len);
		buf_release(&early);
		if (error != 0) {
			end(s, true, uv_strerror(error));
			return;
		}
	}
	if (s->early_eof)
		shut_writing(s->peer);
	else
		start_reading(s);
}

int
stream_write(struct stream *s, const char *data, size_t n)
{
	return write_plain(s, data, n);
}

void
stream_join(struct stream *a, struct stream *b)
{
	a->peer = b;
	b->peer = a;
	uv_tcp_nodelay(&a->tcp, 1);
	uv_tcp_nodelay(&b->tcp, 1);
	pass_early(a);
	if (!a->ended && !b->ended)
		pass_early(b);
}

static void
on_closed(uv_handle_t *h)
{
	struct stream *s = h->data;

	if (s->ev->closed != NULL)
		s->ev->closed(s);
	tls_free(s->tls);
	buf_release(&s->early);
	free(s);
	if (--streams == 0) {
		free(scratch);
		scratch = NULL;
	}
}

void
stream_close(struct stream *s, bool reset)
{
	if (s == NULL || s->closing)
		return;
	s->closing = true;
	if (s->peer != NULL)
		s->peer->peer = NULL;
	s->peer = NULL;
	if (!reset || uv_tcp_close_reset(&s->tcp, on_closed) != 0)
		uv_close((uv_handle_t *)&s->tcp, on_closed);
}
