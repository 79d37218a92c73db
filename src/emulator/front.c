/*
 * A guest's agent port as data/spillway-agent.py serves it (docs/offload.md):
 * TLS with a key made when the guest starts, published in the instance's
 * guest attributes (spillway/tls-key); only the client whose certificate is
 * the instance's "spillway-client-cert" gets in; ALPN "spillway-fwd/1"
 * passes the bytes to the backend, anything else to the agent's own API
 * (the guest's server, handed one end of a socketpair: as the real agent's
 * loopback, with no port or descriptor a guest holds while unused). Faults
 * for tests (emulator.h): a front that never answers TLS, one with another
 * key, one that resets.
 *
 * The front owns its connections; it lives on, closed, until the last one
 * and its listener have let go (front_free).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "emulator/internal.h"
#include "net/stream.h"
#include "net/tls.h"
#include "util/log.h"
#include "util/xmalloc.h"

struct fconn {
	struct front *f;
	struct stream *down, *up; /* the client's (TLS), the target's */
	uv_connect_t connect;
	int handles;
	bool forwarding; /* passed to the backend, and counted */
	struct fconn *next, *prev;
};

struct front {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	char name[64];                /* the instance's, for the log */
	struct tls_ctx *tls, *other;  /* other: the key of FRONT_OTHER_KEY, made when it is set */
	char client_pin[TLS_PIN_MAX]; /* "" no client is let in */
	struct sockaddr_in backend;
	struct httpd *api;
	enum front_mode mode;
	struct fconn *conns;
	long forwarding; /* connections passed to the backend, open now */
	bool closing;
	int handles; /* the listener, and one per connection */
};

static void
front_gone(struct front *f)
{
	if (--f->handles > 0)
		return;
	tls_ctx_free(f->tls);
	tls_ctx_free(f->other);
	free(f);
}

static void
fconn_close(struct fconn *c, bool reset)
{
	struct front *f = c->f;

	if (c->down == NULL)
		return;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		f->conns = c->next;
	f->forwarding -= c->forwarding;
	c->forwarding = false;
	stream_close(c->up, reset);
	stream_close(c->down, reset);
	c->up = c->down = NULL;
}

static void
on_stream_closed(struct stream *s)
{
	struct fconn *c = stream_data(s);
	struct front *f = c->f;

	if (--c->handles > 0)
		return;
	free(c);
	front_gone(f);
}

static void
on_ended(struct stream *s, bool reset, const char *why)
{
	fconn_close(stream_data(s), reset);
}

static void
on_moved(struct stream *s, size_t n)
{
}

static void
on_connect(uv_connect_t *req, int status)
{
	struct fconn *c = req->data;

	if (c->down == NULL)
		return;
	if (status != 0) {
		log_debug("emulator: %s's agent cannot reach its target: %s", c->f->name,
		    uv_strerror(status));
		fconn_close(c, true);
		return;
	}
	if (strcmp(tls_alpn(stream_get_tls(c->down)), TLS_ALPN_FORWARD) == 0) {
		c->forwarding = true;
		c->f->forwarding++;
	}
	stream_join(c->down, c->up);
}

static void on_handshake(struct stream *, int error, const char *why);

/* A connection to the agent's API: a socketpair, one end the server's. */
static int
to_api(struct front *f, uv_tcp_t *up)
{
	int sv[2], error;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return uv_translate_sys_error(errno);
	if ((error = uv_tcp_open(up, sv[0])) != 0) {
		close(sv[0]);
		close(sv[1]);
		return error;
	}
	return httpd_adopt(f->api, sv[1]);
}

static const struct stream_events events = {
    .handshake = on_handshake,
    .moved = on_moved,
    .ended = on_ended,
    .closed = on_stream_closed,
};

/* The client is who the instance's metadata says: to the backend, or to the agent's API. */
static void
on_handshake(struct stream *s, int error, const char *why)
{
	struct fconn *c = stream_data(s);
	struct front *f = c->f;
	const char *alpn = tls_alpn(stream_get_tls(s));
	bool forward = strcmp(alpn, TLS_ALPN_FORWARD) == 0;

	if (error != 0 || f->client_pin[0] == '\0') {
		log_debug("emulator: %s's agent refused a client: %s", f->name,
		    error != 0 ? why : "the instance has no spillway-client-cert");
		fconn_close(c, false);
		return;
	}
	c->up = stream_new(f->loop, &events, c);
	c->handles++;
	c->connect.data = c;
	if (forward) {
		if (uv_tcp_connect(&c->connect, stream_tcp(c->up),
		        (const struct sockaddr *)&f->backend, on_connect) != 0)
			fconn_close(c, true);
	} else {
		on_connect(&c->connect, to_api(f, stream_tcp(c->up)));
	}
}

static void
on_accept(uv_stream_t *server, int status)
{
	struct front *f = server->data;
	struct fconn *c;

	if (status != 0)
		return;
	c = xcalloc(1, sizeof *c);
	c->f = f;
	f->handles++;
	c->down = stream_new(f->loop, &events, c);
	c->handles++;
	c->next = f->conns;
	if (f->conns != NULL)
		f->conns->prev = c;
	f->conns = c;
	if (uv_accept(server, (uv_stream_t *)stream_tcp(c->down)) != 0 || f->mode == FRONT_RESET) {
		fconn_close(c, true);
		return;
	}
	if (f->mode == FRONT_STALL)
		return; /* connected, and never a byte of TLS */
	stream_tls(
	    c->down, tls_new(f->mode == FRONT_OTHER_KEY ? f->other : f->tls, f->client_pin, NULL));
	stream_start(c->down);
}

/* The server's context for a key and certificate, and the key's pin. */
static int
serve_as(
    const char *cert, const char *key, struct tls_ctx **ctx, char pin[TLS_PIN_MAX], char **cause)
{
	int error = tls_cert_pin(cert, pin);

	if (error == 0)
		error =
		    tls_ctx_new(true, cert, key, TLS_ALPN_FORWARD "," TLS_ALPN_HTTP, ctx, cause);
	return error;
}

/* A key of its own (another agent's, for FRONT_OTHER_KEY). */
static int
identity(struct tls_ctx **ctx, char pin[TLS_PIN_MAX], char **cause)
{
	char *cert = NULL, *key = NULL;
	int error;

	if ((error = tls_identity_make("spillway-agent", &cert, &key, cause)) == 0)
		error = serve_as(cert, key, ctx, pin, cause);
	free(cert);
	if (key != NULL)
		explicit_bzero(key, strlen(key));
	free(key);
	return error;
}

/*
 * The instance's agent's key, made the first time, as the real agent keeps
 * its key on the VM's disk: a VM stopped and started again (the warm pool)
 * answers with the key it published.
 */
static int
own_identity(struct inst *inst, struct tls_ctx **ctx, char pin[TLS_PIN_MAX], char **cause)
{
	int error;

	if (inst->agent_cert == NULL &&
	    (error = tls_identity_make(
	         "spillway-agent", &inst->agent_cert, &inst->agent_key, cause)) != 0)
		return error;
	return serve_as(inst->agent_cert, inst->agent_key, ctx, pin, cause);
}

int
front_new(struct inst *inst, int fd, int backend_port, struct httpd *api, struct front **out,
    char **cause)
{
	struct front *f = xcalloc(1, sizeof *f);
	const char *client = inst_attribute(inst, "spillway-client-cert");
	char pin[TLS_PIN_MAX];
	int error;

	f->loop = inst->emu->loop;
	snprintf(f->name, sizeof f->name, "%s", inst->name);
	f->backend = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(backend_port)};
	inet_pton(AF_INET, inst->nat_ip, &f->backend.sin_addr);
	f->api = api;
	if (client == NULL || tls_cert_pin(client, f->client_pin) != 0)
		f->client_pin[0] = '\0';
	if ((error = own_identity(inst, &f->tls, pin, cause)) != 0) {
		free(f);
		close(fd);
		return error;
	}
	uv_tcp_init(f->loop, &f->tcp);
	f->tcp.data = f;
	f->handles = 1;
	*out = f;
	if ((error = uv_tcp_open(&f->tcp, fd)) != 0)
		close(fd);
	if (error != 0 || (error = uv_listen((uv_stream_t *)&f->tcp, 511, on_accept)) != 0) {
		*cause = xasprintf("cannot serve the agent's port: %s", uv_strerror(error));
		front_free(f);
		*out = NULL;
		return error;
	}
	/*
	 * What the real agent does once it made its key; a real agent run for
	 * this instance (it PUTs its own, later or before) has the last word.
	 */
	if (json_object_get(inst->guest_attrs, "spillway/tls-key") == NULL)
		guest_attribute_set(inst, "spillway/tls-key", pin);
	return 0;
}

long
front_forwarding(const struct front *f)
{
	return f != NULL ? f->forwarding : 0;
}

void
front_set_mode(struct front *f, enum front_mode mode)
{
	char pin[TLS_PIN_MAX], *cause = NULL;

	if (f == NULL)
		return;
	if (mode == FRONT_OTHER_KEY && f->other == NULL && identity(&f->other, pin, &cause) != 0) {
		log_warnx("emulator: %s's agent cannot make another key: %s", f->name, cause);
		free(cause);
		return;
	}
	f->mode = mode;
}

static void
on_listener_closed(uv_handle_t *h)
{
	front_gone(h->data);
}

void
front_free(struct front *f)
{
	if (f == NULL || f->closing)
		return;
	f->closing = true;
	while (f->conns != NULL)
		fconn_close(f->conns, true);
	uv_close((uv_handle_t *)&f->tcp, on_listener_closed);
}
