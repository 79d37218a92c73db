/*
 * net/hconn.h against a server on loopback made of the same parts (stream.h,
 * tls.h), on one libuv loop: the channel is kept from one request to the
 * next, made again when the server closed it while idle, a request that
 * found it closed is sent once more, and a wrong key, a server that never
 * answers and an answer without a length are each said as such.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "net/hconn.h"
#include "net/stream.h"
#include "util/buf.h"

enum behaviour {
	ANSWER,       /* 200 with a body, the connection kept */
	ANSWER_CLOSE, /* the same, then the connection closed */
	DROP,         /* the connection closed, no answer */
	SILENT,       /* never an answer */
	NO_LENGTH,    /* an answer without Content-Length */
};

static struct server {
	uv_loop_t loop;
	uv_tcp_t tcp;
	int port;
	struct tls_ctx *tls;
	char client_pin[TLS_PIN_MAX];
	enum behaviour next[8]; /* per request, in order; then ANSWER */
	int requests, accepted;
	struct stream *open; /* the last connection accepted */
} srv;

static struct tls_ctx *client_tls;
static char server_pin[TLS_PIN_MAX];

/* --- the server --- */

struct sconn {
	struct stream *s;
	struct buf in;
};

static void
s_closed(struct stream *s)
{
	struct sconn *c = stream_data(s);

	buf_release(&c->in);
	free(c);
}

static void
s_ended(struct stream *s, bool reset, const char *why)
{
	if (srv.open == s)
		srv.open = NULL;
	stream_close(s, false);
}

static void
s_read(struct stream *s, const char *data, size_t n)
{
	struct sconn *c = stream_data(s);
	char *end;

	buf_add(&c->in, data, n);
	while ((end = strstr(buf_str(&c->in), "\r\n\r\n")) != NULL) {
		enum behaviour b = srv.requests < 8 ? srv.next[srv.requests] : ANSWER;
		char answer[256];

		srv.requests++;
		buf_consume(&c->in, (size_t)(end + 4 - c->in.data));
		if (b == SILENT)
			continue;
		if (b == DROP) {
			s_ended(s, true, NULL);
			return;
		}
		snprintf(answer, sizeof answer, "HTTP/1.1 200 OK\r\n%s\r\n{\"n\": %d}",
		    b == NO_LENGTH ? "" : "Content-Length: 8\r\n", srv.requests % 10);
		stream_write(s, answer, strlen(answer));
		if (b == ANSWER_CLOSE) {
			s_ended(s, false, NULL);
			return;
		}
	}
}

static void
s_handshake(struct stream *s, int error, const char *why)
{
	if (error != 0)
		stream_close(s, false);
}

static void
s_moved(struct stream *s, size_t n)
{
}

static const struct stream_events s_events = {
    .handshake = s_handshake,
    .moved = s_moved,
    .ended = s_ended,
    .closed = s_closed,
    .read = s_read,
};

static void
on_accept(uv_stream_t *server, int status)
{
	struct sconn *c = calloc(1, sizeof *c);

	buf_init(&c->in, 1 << 16);
	c->s = stream_new(&srv.loop, &s_events, c);
	assert_int_equal(uv_accept(server, (uv_stream_t *)stream_tcp(c->s)), 0);
	srv.accepted++;
	srv.open = c->s;
	stream_tls(c->s, tls_new(srv.tls, srv.client_pin, NULL));
	stream_start(c->s);
}

/* --- the client's side --- */

struct answer {
	bool done;
	struct http_response r;
	char body[64], why[300];
};

static void
on_answer(const struct http_response *r, void *arg)
{
	struct answer *a = arg;

	a->done = true;
	a->r = *r;
	snprintf(a->body, sizeof a->body, "%.*s", (int)r->len, r->body);
	snprintf(a->why, sizeof a->why, "%s", r->error_text);
}

static struct answer
ask(struct hconn *c, long timeout_ms)
{
	struct answer a = {0};
	const char *headers[] = {"Authorization: SpillwayLease 1:ab", NULL};

	assert_int_equal(
	    hconn_request(c, "POST", "/spillway/lease", headers, timeout_ms, 4096, on_answer, &a),
	    0);
	assert_true(hconn_busy(c));
	while (!a.done)
		uv_run(&srv.loop, UV_RUN_ONCE);
	assert_false(hconn_busy(c));
	return a;
}

static int
setup(void **state)
{
	char *cert, *key, *ccert, *ckey, *cause = NULL;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int len = sizeof sin;

	assert_int_equal(tls_identity_make("agent", &cert, &key, &cause), 0);
	assert_int_equal(tls_identity_make("spillway", &ccert, &ckey, &cause), 0);
	assert_int_equal(tls_cert_pin(cert, server_pin), 0);
	assert_int_equal(tls_cert_pin(ccert, srv.client_pin), 0);
	assert_int_equal(tls_ctx_new(true, cert, key, TLS_ALPN_HTTP, &srv.tls, &cause), 0);
	assert_int_equal(tls_ctx_new(false, ccert, ckey, NULL, &client_tls, &cause), 0);
	free(cert);
	free(key);
	free(ccert);
	free(ckey);
	uv_loop_init(&srv.loop);
	uv_tcp_init(&srv.loop, &srv.tcp);
	assert_int_equal(uv_tcp_bind(&srv.tcp, (struct sockaddr *)&sin, 0), 0);
	uv_tcp_getsockname(&srv.tcp, (struct sockaddr *)&sin, &len);
	srv.port = ntohs(sin.sin_port);
	assert_int_equal(uv_listen((uv_stream_t *)&srv.tcp, 16, on_accept), 0);
	return 0;
}

static int
teardown(void **state)
{
	uv_close((uv_handle_t *)&srv.tcp, NULL);
	while (uv_run(&srv.loop, UV_RUN_NOWAIT) != 0)
		;
	uv_loop_close(&srv.loop);
	tls_ctx_free(srv.tls);
	tls_ctx_free(client_tls);
	return 0;
}

/* Fresh counts and behaviours for a test; the channel's end run out on the loop. */
static void
reset(void)
{
	memset(srv.next, 0, sizeof srv.next);
	srv.requests = srv.accepted = 0;
}

static void
done(struct hconn *c)
{
	hconn_free(c);
	for (int i = 0; i < 100; i++)
		uv_run(&srv.loop, UV_RUN_NOWAIT);
}

static void
test_kept(void **state)
{
	struct hconn *c;
	struct answer a;

	reset();
	c = hconn_new(&srv.loop, client_tls, "127.0.0.1", srv.port, server_pin);
	assert_true(hconn_is(c, "127.0.0.1", srv.port, server_pin));
	assert_false(hconn_is(c, "127.0.0.2", srv.port, server_pin));
	for (int i = 1; i <= 5; i++) {
		a = ask(c, 5000);
		assert_int_equal(a.r.error, 0);
		assert_int_equal(a.r.status, 200);
		assert_int_equal(a.r.len, 8);
	}
	/* Five requests, one connection, one handshake. */
	assert_int_equal(srv.requests, 5);
	assert_int_equal(srv.accepted, 1);
	assert_int_equal(hconn_connects(c), 1);
	done(c);
}

static void
test_made_again(void **state)
{
	struct hconn *c;
	struct answer a;

	reset();
	c = hconn_new(&srv.loop, client_tls, "127.0.0.1", srv.port, server_pin);
	/* The server closes after its answer: the next request connects again. */
	srv.next[0] = ANSWER_CLOSE;
	a = ask(c, 5000);
	assert_int_equal(a.r.status, 200);
	a = ask(c, 5000);
	assert_int_equal(a.r.status, 200);
	assert_int_equal(srv.accepted, 2);
	/* A kept connection dropped under a request: it is sent once more, on a new one. */
	srv.next[2] = DROP;
	a = ask(c, 5000);
	assert_int_equal(a.r.error, 0);
	assert_int_equal(a.r.status, 200);
	assert_int_equal(srv.requests, 4);
	assert_int_equal(srv.accepted, 3);
	/* Twice: that is an answer (an error), not a loop. */
	srv.next[4] = DROP;
	srv.next[5] = DROP;
	a = ask(c, 5000);
	assert_int_equal(a.r.error, -EIO);
	assert_int_equal(a.r.status, 0);
	done(c);
}

static void
test_refusals(void **state)
{
	char other[TLS_PIN_MAX] = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
	struct hconn *c;
	struct answer a;

	reset();
	/* Another key than the pinned one. */
	c = hconn_new(&srv.loop, client_tls, "127.0.0.1", srv.port, other);
	a = ask(c, 5000);
	assert_int_equal(a.r.error, -EPROTO);
	assert_non_null(strstr(a.why, "not the pinned"));
	done(c);
	/* No answer in time. */
	c = hconn_new(&srv.loop, client_tls, "127.0.0.1", srv.port, server_pin);
	srv.next[0] = SILENT;
	a = ask(c, 300);
	assert_int_equal(a.r.error, -ETIMEDOUT);
	/* An answer it cannot take the length of. */
	srv.next[1] = NO_LENGTH;
	a = ask(c, 5000);
	assert_int_equal(a.r.error, -EPROTO);
	/* And after all that, the channel serves. */
	a = ask(c, 5000);
	assert_int_equal(a.r.status, 200);
	done(c);
	/* Nobody there. */
	c = hconn_new(&srv.loop, client_tls, "127.0.0.1", 1, server_pin);
	a = ask(c, 5000);
	assert_int_equal(a.r.error, -ECONNREFUSED);
	done(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kept),
	    cmocka_unit_test(test_made_again),
	    cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
