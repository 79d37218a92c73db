/*
 * net/tls.h in memory: two ends whose bytes the test carries, so every
 * handshake is real OpenSSL and nothing waits on a socket. Pins, ALPN, the
 * client's certificate, and resumption: the next connection to the same
 * agent resumes, its pin checked all the same, and a ticket is never a way
 * past another key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/tls.h"
#include "util/buf.h"

struct side {
	char *cert, *key;
	char pin[TLS_PIN_MAX];
	struct tls_ctx *ctx;
};

static struct side agent, other, client;

static void
side_make(struct side *s, const char *name, bool server)
{
	char *cause = NULL;

	assert_int_equal(tls_identity_make(name, &s->cert, &s->key, &cause), 0);
	assert_int_equal(tls_cert_pin(s->cert, s->pin), 0);
	assert_int_equal(
	    tls_ctx_new(server, s->cert, s->key, server ? TLS_ALPN_FORWARD : NULL, &s->ctx, &cause),
	    0);
}

static int
setup(void **state)
{
	side_make(&agent, "agent", true);
	side_make(&other, "other", true);
	side_make(&client, "spillway", false);
	return 0;
}

static int
teardown(void **state)
{
	struct side *all[] = {&agent, &other, &client};

	for (size_t i = 0; i < 3; i++) {
		tls_ctx_free(all[i]->ctx);
		free(all[i]->cert);
		free(all[i]->key);
	}
	return 0;
}

static void
keep(void *arg, const char *data, size_t n)
{
	buf_add(arg, data, n);
}

/* Carry what each end has to send to the other until neither has more. */
static void
pump(struct tls *c, struct tls *s, struct buf *at_c, struct buf *at_s, enum tls_result rc[2])
{
	char wire[1 << 16];
	size_t n;
	bool moved = true;

	rc[0] = tls_handshake(c);
	while (moved) {
		moved = false;
		while ((n = tls_output(c, wire, sizeof wire)) > 0) {
			rc[1] = tls_input(s, wire, n, keep, at_s);
			moved = true;
		}
		while ((n = tls_output(s, wire, sizeof wire)) > 0) {
			rc[0] = tls_input(c, wire, n, keep, at_c);
			moved = true;
		}
	}
}

/* A connection from the client to srv, pinned to pin, resuming with sess; a message each way. */
static struct tls *
connect_to(struct side *srv, const char *pin, const struct tls_session *sess, bool *ok)
{
	struct tls *c = tls_new(client.ctx, pin, TLS_ALPN_FORWARD),
	           *s = tls_new(srv->ctx, NULL, NULL);
	struct buf at_c = BUF_INIT(1 << 20), at_s = BUF_INIT(1 << 20);
	enum tls_result rc[2] = {TLS_AGAIN, TLS_AGAIN};

	tls_resume(c, sess);
	pump(c, s, &at_c, &at_s, rc);
	*ok = rc[0] == TLS_READY && tls_ready(c);
	if (*ok) {
		assert_string_equal(tls_alpn(c), TLS_ALPN_FORWARD);
		assert_int_equal(tls_write(c, "ping", 4), 0);
		assert_int_equal(tls_write(s, "pong", 4), 0);
		pump(c, s, &at_c, &at_s, rc);
		assert_string_equal(buf_str(&at_s), "ping");
		assert_string_equal(buf_str(&at_c), "pong");
	}
	tls_free(s);
	buf_release(&at_c);
	buf_release(&at_s);
	return c;
}

static void
test_pinned(void **state)
{
	bool ok;
	struct tls *c = connect_to(&agent, agent.pin, NULL, &ok);

	assert_true(ok);
	assert_false(tls_resumed(c));
	tls_free(c);
	/* Another key than the pinned one: refused, and said to be a mismatch. */
	c = connect_to(&other, agent.pin, NULL, &ok);
	assert_false(ok);
	assert_true(tls_mismatch(c));
	tls_free(c);
}

static void
test_resumed(void **state)
{
	bool ok;
	struct tls *c = connect_to(&agent, agent.pin, NULL, &ok);
	struct tls_session *sess = NULL;

	tls_session_keep(&sess, c);
	assert_true(ok);
	assert_non_null(sess); /* the agent's ticket came with its first answer */
	tls_free(c);
	/* The next connection resumes: no key exchange, the same pinned key. */
	c = connect_to(&agent, agent.pin, sess, &ok);
	assert_true(ok);
	assert_true(tls_resumed(c));
	tls_free(c);
	/* A ticket is no way past the pin: pinned to another key, refused. */
	c = connect_to(&agent, other.pin, sess, &ok);
	assert_false(ok);
	assert_true(tls_mismatch(c));
	tls_free(c);
	/* Another agent cannot use it: a full handshake, with its own key. */
	c = connect_to(&other, other.pin, sess, &ok);
	assert_true(ok);
	assert_false(tls_resumed(c));
	tls_free(c);
	tls_session_free(sess);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pinned),
	    cmocka_unit_test(test_resumed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
