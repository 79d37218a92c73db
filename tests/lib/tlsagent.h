/*
 * A VM's agent port for tests and benches, on loopback in the caller's libuv
 * loop: TLS with its own key (the pin a VM would publish), letting in only
 * the client identity it made (the daemon's), answering each HTTP request
 * with `body` or as `next` says. Made of the daemon's own parts (net/stream.h,
 * net/tls.h), so what talks to it talks to a real TLS peer.
 */
#ifndef SPILLWAY_TEST_TLSAGENT_H
#define SPILLWAY_TEST_TLSAGENT_H

#include <uv.h>

#include "net/tls.h"

enum tagent_act {
	TAGENT_ANSWER,       /* 200 with the body, the connection kept */
	TAGENT_ANSWER_CLOSE, /* the same, then the connection closed */
	TAGENT_DROP,         /* the connection closed, no answer */
	TAGENT_SILENT,       /* never an answer */
	TAGENT_NO_LENGTH,    /* an answer without Content-Length */
};

#define TAGENT_SCRIPT 8

struct tagent {
	/* The test's to read. */
	int port;
	char pin[TLS_PIN_MAX];  /* the agent's key */
	struct tls_ctx *client; /* the identity it lets in, for the client's side */
	int requests, accepted;
	/* The test's to set. */
	const char *body;                    /* each answer's; "{}" by default */
	enum tagent_act next[TAGENT_SCRIPT]; /* per request, in order; then ANSWER */
	/* Its own. */
	uv_loop_t *loop;
	uv_tcp_t tcp;
	struct tls_ctx *tls;
	char client_pin[TLS_PIN_MAX];
};

/* Listening on 127.0.0.1, an ephemeral port: 0, or -errno with *cause. */
int tagent_start(struct tagent *, uv_loop_t *, char **cause);
/* Its script and counts back to the start. */
void tagent_reset(struct tagent *);
/* Stops listening; open connections end as their peers close them. */
void tagent_stop(struct tagent *);

#endif
