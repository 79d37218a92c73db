/*
 * A TCP connection on libuv, plain or TLS (tls.h), and two of them joined:
 * what one reads is written to the other at once (uv_try_write, from one
 * scratch buffer, so a connection that keeps up holds no buffer) and what
 * the other cannot take yet is queued; past a high-water mark the reading
 * side is read no more until the queue drains. An end of file (or a TLS
 * close_notify) is passed on as a shutdown of the other's writing; an error
 * ends both. Or one alone, read and written by its owner. Leaf module:
 * spillway's routes (route/), its calls to agents (hconn.h) and the
 * emulator's agents use it.
 */
#ifndef SPILLWAY_STREAM_H
#define SPILLWAY_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "net/tls.h"

struct stream;

struct stream_events {
	/* TLS: the handshake ended; 0 and the peer's key is the pinned one, or -EPROTO and why. */
	void (*handshake)(struct stream *, int error, const char *why);
	/* Joined: n bytes read from this stream were passed to the other. */
	void (*moved)(struct stream *, size_t n);
	/* Joined: both ways ended (reset false), or one side failed (reset true, why). */
	void (*ended)(struct stream *, bool reset, const char *why);
	/* Closed: its memory goes after this (a connect in flight was told ECANCELED before). */
	void (*closed)(struct stream *);
	/*
	 * A stream its owner reads, never joined (an HTTP client's): what is read
	 * (decrypted), as it comes; its end of file is then ended(s, false, NULL).
	 */
	void (*read)(struct stream *, const char *data, size_t n);
};

/* A stream whose handle the caller connects or accepts (stream_tcp); data is the caller's. */
struct stream *stream_new(uv_loop_t *, const struct stream_events *, void *data);
void *stream_data(const struct stream *);
uv_tcp_t *stream_tcp(struct stream *);
/* TLS on it (owned from here): started by stream_start. */
void stream_tls(struct stream *, struct tls *);
const struct tls *stream_get_tls(const struct stream *);
/* Connected or accepted: TLS starts its handshake (reading begins); plain: nothing yet. */
void stream_start(struct stream *);
/* A stream its owner writes (ready: TLS after its handshake): 0, or a libuv error. */
int stream_write(struct stream *, const char *data, size_t n);
/* Both ready: from now on bytes pass between them both ways. */
void stream_join(struct stream *, struct stream *);
/* Close (reset: the peer sees a reset); freed once libuv lets go. No event but closed after. */
void stream_close(struct stream *, bool reset);

#endif
