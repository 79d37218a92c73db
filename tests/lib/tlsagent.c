/*
 * The test agent (tlsagent.h): one stream per connection, the request's head
 * gathered until its blank line (its body, if any, is not read: the lease
 * and status calls have none that matters here), the script consulted per
 * request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "net/stream.h"
#include "tlsagent.h"
#include "util/buf.h"
#include "util/xmalloc.h"

struct conn {
	struct tagent *a;
	struct buf in;
};

static void
closed(struct stream *s)
{
	struct conn *c = stream_data(s);

	buf_release(&c->in);
	free(c);
}

static void
ended(struct stream *s, bool reset, const char *why)
{
	(void)reset;
	(void)why;
	stream_close(s, false);
}

static void
on_read(struct stream *s, const char *data, size_t n)
{
	struct conn *c = stream_data(s);
	struct tagent *a = c->a;
	const char *body = a->body != NULL ? a->body : "{}";
	char *end;

	buf_add(&c->in, data, n);
	while ((end = strstr(buf_str(&c->in), "\r\n\r\n")) != NULL) {
		enum tagent_act act =
		    a->requests < TAGENT_SCRIPT ? a->next[a->requests] : TAGENT_ANSWER;
		char *answer;

		a->requests++;
		buf_consume(&c->in, (size_t)(end + 4 - c->in.data));
		if (act == TAGENT_SILENT)
			continue;
		if (act == TAGENT_DROP) {
			stream_close(s, true);
			return;
		}
		if (act == TAGENT_NO_LENGTH)
			answer = xasprintf("HTTP/1.1 200 OK\r\n\r\n%s", body);
		else
			answer = xasprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			                   "Content-Length: %zu\r\n\r\n%s",
			    strlen(body), body);
		stream_write(s, answer, strlen(answer));
		free(answer);
		if (act == TAGENT_ANSWER_CLOSE) {
			stream_close(s, false);
			return;
		}
	}
}

static void
handshake(struct stream *s, int error, const char *why)
{
	(void)why;
	if (error != 0)
		stream_close(s, false);
}

static void
moved(struct stream *s, size_t n)
{
	(void)s;
	(void)n;
}

static const struct stream_events events = {
    .handshake = handshake,
    .moved = moved,
    .ended = ended,
    .closed = closed,
    .read = on_read,
};

static void
on_accept(uv_stream_t *server, int status)
{
	struct tagent *a = server->data;
	struct conn *c;
	struct stream *s;

	if (status != 0)
		return;
	c = xcalloc(1, sizeof *c);
	c->a = a;
	buf_init(&c->in, 1 << 16);
	s = stream_new(a->loop, &events, c);
	if (uv_accept(server, (uv_stream_t *)stream_tcp(s)) != 0) {
		stream_close(s, true);
		return;
	}
	a->accepted++;
	stream_tls(s, tls_new(a->tls, a->client_pin, NULL));
	stream_start(s);
}

int
tagent_start(struct tagent *a, uv_loop_t *loop, char **cause)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int len = sizeof sin, error;
	char *cert = NULL, *key = NULL, *ccert = NULL, *ckey = NULL;

	memset(a, 0, sizeof *a);
	a->loop = loop;
	if ((error = tls_identity_make("agent", &cert, &key, cause)) != 0 ||
	    (error = tls_identity_make("spillway", &ccert, &ckey, cause)) != 0 ||
	    (error = tls_cert_pin(cert, a->pin)) != 0 ||
	    (error = tls_cert_pin(ccert, a->client_pin)) != 0 ||
	    (error = tls_ctx_new(true, cert, key, TLS_ALPN_HTTP, &a->tls, cause)) != 0 ||
	    (error = tls_ctx_new(false, ccert, ckey, NULL, &a->client, cause)) != 0)
		goto out;
	uv_tcp_init(loop, &a->tcp);
	a->tcp.data = a;
	if ((error = uv_tcp_bind(&a->tcp, (struct sockaddr *)&sin, 0)) != 0 ||
	    (error = uv_listen((uv_stream_t *)&a->tcp, 128, on_accept)) != 0) {
		*cause = xasprintf("the test agent cannot listen: %s", uv_strerror(error));
		uv_close((uv_handle_t *)&a->tcp, NULL);
		goto out;
	}
	uv_tcp_getsockname(&a->tcp, (struct sockaddr *)&sin, &len);
	a->port = ntohs(sin.sin_port);
out:
	free(cert);
	free(key);
	free(ccert);
	free(ckey);
	return error;
}

void
tagent_reset(struct tagent *a)
{
	memset(a->next, 0, sizeof a->next);
	a->requests = a->accepted = 0;
}

void
tagent_stop(struct tagent *a)
{
	if (a->loop != NULL && a->port != 0)
		uv_close((uv_handle_t *)&a->tcp, NULL);
	tls_ctx_free(a->tls);
	tls_ctx_free(a->client);
	a->tls = a->client = NULL;
}
