/*
 * TLS without sockets: OpenSSL over memory buffers, so that whoever owns the
 * socket (net/stream.c, on libuv) feeds it what arrived and sends what it
 * produced. Identities are self-signed P-256 keys, trusted by pin, never by a
 * certificate authority: a pin is "sha256//BASE64" of the certificate's
 * public key (SubjectPublicKeyInfo), the form libcurl's
 * CURLOPT_PINNEDPUBLICKEY takes. Leaf module: it knows nothing of VMs.
 */
#ifndef SPILLWAY_TLS_H
#define SPILLWAY_TLS_H

#include <stdbool.h>
#include <stddef.h>

#define TLS_PIN_MAX 64 /* "sha256//" and 44 characters of base64 */

/* The application protocols (ALPN) spoken to a VM's agent (docs/offload.md). */
#define TLS_ALPN_FORWARD "spillway-fwd/1" /* the bytes go to the backend */
#define TLS_ALPN_HTTP    "http/1.1"       /* the agent's own API */

/* A P-256 key and a self-signed certificate for it (10 years), both PEM; the caller frees. */
int tls_identity_make(const char *common_name, char **cert_pem, char **key_pem, char **cause);
/* The pin of a PEM certificate's key: 0, or -EINVAL. */
int tls_cert_pin(const char *cert_pem, char pin[TLS_PIN_MAX]);

struct tls_ctx;

/*
 * Our side: our certificate and key (PEM; a server needs them, a client
 * offers them when given). A server asks every client for a certificate and
 * accepts the first of the ALPN names in `alpn` (comma-separated) the
 * client offers.
 */
int tls_ctx_new(bool server, const char *cert_pem, const char *key_pem, const char *alpn,
    struct tls_ctx **, char **cause);
void tls_ctx_free(struct tls_ctx *);

struct tls;

/*
 * One connection. `pin` is the only key the peer may have (NULL: any; a
 * server's client must then have none to check). A client offers `alpn`.
 */
struct tls *tls_new(struct tls_ctx *, const char *pin, const char *alpn);
void tls_free(struct tls *);

/*
 * Resumption, a client's: a session from an earlier connection to the same
 * peer spares the next handshake its key exchange and signatures (TLS 1.3
 * tickets). The pin is checked all the same: a resumed session carries the
 * key of the handshake that made it.
 */
struct tls_session;
/* Resume with it (before the handshake); NULL: a full handshake. */
void tls_resume(struct tls *, const struct tls_session *);
/* The newest ticket the server gave this connection kept in *kept, the one before let go. */
void tls_session_keep(struct tls_session **kept, const struct tls *);
void tls_session_free(struct tls_session *);
/* Whether the handshake resumed a session. */
bool tls_resumed(const struct tls *);

enum tls_result {
	TLS_AGAIN = 0,   /* more from the peer needed */
	TLS_READY = 1,   /* the handshake is done and the peer's key is the pinned one */
	TLS_CLOSED = 2,  /* the peer ended its side (close_notify) */
	TLS_FAILED = -1, /* see tls_error(): nothing more from this connection */
};

typedef void tls_plain_cb(void *arg, const char *data, size_t n);

/*
 * What arrived from the socket. Decrypted data goes to `plain` (only once
 * READY); returns where the connection stands.
 */
enum tls_result tls_input(struct tls *, const char *cipher, size_t n, tls_plain_cb *, void *arg);
/* Start the handshake (a client's first flight) or go on with it. */
enum tls_result tls_handshake(struct tls *);
/* Application data to send (after READY): 0, or -EPROTO. */
int tls_write(struct tls *, const char *plain, size_t n);
/* Say the end of our side (close_notify). */
void tls_close_notify(struct tls *);
/* What is to be sent on the socket: up to cap bytes moved into buf; 0 when none. */
size_t tls_output(struct tls *, char *buf, size_t cap);
bool tls_ready(const struct tls *);
/* The ALPN name agreed, or "" */
const char *tls_alpn(const struct tls *);
/* Whether it failed because the peer's key is not the pinned one. */
bool tls_mismatch(const struct tls *);
/* Why it failed, for people. */
const char *tls_error(const struct tls *);

#endif
