/*
 * net/hconn.h against a server on loopback made of the same parts
 * (tests/lib/tlsagent.h), on one libuv loop: the channel is kept from one request to the
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

#include <cmocka.h>

#include "net/hconn.h"
#include "tlsagent.h"

static uv_loop_t loop;
static struct tagent agent;

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
		uv_run(&loop, UV_RUN_ONCE);
	assert_false(hconn_busy(c));
	return a;
}

static int
setup(void **state)
{
	char *cause = NULL;

	uv_loop_init(&loop);
	if (tagent_start(&agent, &loop, &cause) != 0)
		fail_msg("%s", cause);
	agent.body = "{\"n\": 1}";
	return 0;
}

static int
teardown(void **state)
{
	tagent_stop(&agent);
	while (uv_run(&loop, UV_RUN_NOWAIT) != 0)
		;
	uv_loop_close(&loop);
	return 0;
}

static void
done(struct hconn *c)
{
	hconn_free(c);
	for (int i = 0; i < 100; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
}

static void
test_kept(void **state)
{
	struct hconn *c;
	struct answer a;

	tagent_reset(&agent);
	c = hconn_new(&loop, agent.client, "127.0.0.1", agent.port, agent.pin);
	assert_true(hconn_is(c, "127.0.0.1", agent.port, agent.pin));
	assert_false(hconn_is(c, "127.0.0.2", agent.port, agent.pin));
	for (int i = 1; i <= 5; i++) {
		a = ask(c, 5000);
		assert_int_equal(a.r.error, 0);
		assert_int_equal(a.r.status, 200);
		assert_int_equal(a.r.len, 8);
	}
	/* Five requests, one connection, one handshake. */
	assert_int_equal(agent.requests, 5);
	assert_int_equal(agent.accepted, 1);
	assert_int_equal(hconn_connects(c), 1);
	done(c);
}

static void
test_made_again(void **state)
{
	struct hconn *c;
	struct answer a;

	tagent_reset(&agent);
	c = hconn_new(&loop, agent.client, "127.0.0.1", agent.port, agent.pin);
	/* The server closes after its answer: the next request connects again. */
	agent.next[0] = TAGENT_ANSWER_CLOSE;
	a = ask(c, 5000);
	assert_int_equal(a.r.status, 200);
	a = ask(c, 5000);
	assert_int_equal(a.r.status, 200);
	assert_int_equal(agent.accepted, 2);
	/* A kept connection dropped under a request: it is sent once more, on a new one. */
	agent.next[2] = TAGENT_DROP;
	a = ask(c, 5000);
	assert_int_equal(a.r.error, 0);
	assert_int_equal(a.r.status, 200);
	assert_int_equal(agent.requests, 4);
	assert_int_equal(agent.accepted, 3);
	/* Twice: that is an answer (an error), not a loop. */
	agent.next[4] = TAGENT_DROP;
	agent.next[5] = TAGENT_DROP;
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

	tagent_reset(&agent);
	/* Another key than the pinned one. */
	c = hconn_new(&loop, agent.client, "127.0.0.1", agent.port, other);
	a = ask(c, 5000);
	assert_int_equal(a.r.error, -EPROTO);
	assert_non_null(strstr(a.why, "not the pinned"));
	done(c);
	/* No answer in time. */
	c = hconn_new(&loop, agent.client, "127.0.0.1", agent.port, agent.pin);
	agent.next[0] = TAGENT_SILENT;
	a = ask(c, 300);
	assert_int_equal(a.r.error, -ETIMEDOUT);
	/* An answer it cannot take the length of. */
	agent.next[1] = TAGENT_NO_LENGTH;
	a = ask(c, 5000);
	assert_int_equal(a.r.error, -EPROTO);
	/* And after all that, the channel serves. */
	a = ask(c, 5000);
	assert_int_equal(a.r.status, 200);
	done(c);
	/* Nobody there. */
	c = hconn_new(&loop, agent.client, "127.0.0.1", 1, agent.pin);
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
