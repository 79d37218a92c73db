/*
 * TLS over memory BIOs (tls.h). The owner of the socket moves bytes: what it
 * read goes into rbio, what OpenSSL wrote to wbio it sends. A peer is
 * trusted by its key alone (the pin), checked once the handshake is done and
 * before a byte of application data passes either way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/tls.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define IDENTITY_DAYS 3650

struct tls_ctx {
	SSL_CTX *ctx;
	unsigned char alpn[64]; /* a server's choices, in ALPN's wire form */
	unsigned alpn_len;
};

struct tls {
	SSL *ssl;
	BIO *rbio, *wbio;
	SSL_SESSION *ticket; /* a client's: the last the server gave, to resume with */
	bool ready, failed, mismatch;
	char pin[TLS_PIN_MAX]; /* "" any */
	char alpn[32];
	char err[256];
};

/* OpenSSL's last error, for people; the queue emptied. */
static void
ssl_error(char *out, size_t size, const char *what)
{
	unsigned long e = ERR_get_error();
	char text[160];

	ERR_error_string_n(e, text, sizeof text);
	snprintf(out, size, "%s: %s", what, e != 0 ? text : "the peer closed the connection");
	ERR_clear_error();
}

/* "a,b" to ALPN's wire form (each name after its length); -EINVAL when it does not fit. */
static int
alpn_wire(const char *names, unsigned char *out, size_t cap, unsigned *len)
{
	size_t n = 0;

	for (const char *p = names; *p != '\0';) {
		size_t l = strcspn(p, ",");

		if (l == 0 || l > 255 || n + 1 + l > cap)
			return -EINVAL;
		out[n++] = (unsigned char)l;
		memcpy(out + n, p, l);
		n += l;
		p += l + (p[l] == ',');
	}
	*len = (unsigned)n;
	return 0;
}

int
tls_identity_make(const char *cn, char **cert_pem, char **key_pem, char **cause)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	char *p;
	long n;
	int error = -EIO;

	*cert_pem = *key_pem = NULL;
	if (key == NULL || x == NULL || cb == NULL || kb == NULL ||
	    RAND_bytes(serial, sizeof serial) != 1)
		goto out;
	serial[0] &= 0x7f; /* positive */
	if ((bn = BN_bin2bn(serial, sizeof serial, NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_set_version(x, 2) != 1 || X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), (long)IDENTITY_DAYS * 86400) == NULL ||
	    X509_set_pubkey(x, key) != 1)
		goto out;
	name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(
	        name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 || X509_sign(x, key, EVP_sha256()) == 0 ||
	    PEM_write_bio_X509(cb, x) != 1 ||
	    PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) != 1)
		goto out;
	n = BIO_get_mem_data(cb, &p);
	*cert_pem = xstrndup(p, (size_t)n);
	n = BIO_get_mem_data(kb, &p);
	*key_pem = xstrndup(p, (size_t)n);
	error = 0;
out:
	if (error != 0) {
		char why[200];

		ssl_error(why, sizeof why, "cannot make a TLS identity");
		*cause = xstrdup(why);
	}
	BN_free(bn);
	/* The key's PEM went through kb: wiped with it. */
	if (kb != NULL && BIO_get_mem_data(kb, &p) > 0)
		OPENSSL_cleanse(p, (size_t)BIO_get_mem_data(kb, &p));
	BIO_free(cb);
	BIO_free(kb);
	X509_free(x);
	EVP_PKEY_free(key);
	return error;
}

/* The pin of a certificate's key. */
static int
x509_pin(X509 *x, char pin[TLS_PIN_MAX])
{
	unsigned char *der = NULL, md[32];
	unsigned char b64[48];
	int n;

	if (x == NULL || (n = i2d_PUBKEY(X509_get0_pubkey(x), &der)) <= 0)
		return -EINVAL;
	SHA256(der, (size_t)n, md);
	OPENSSL_free(der);
	EVP_EncodeBlock(b64, md, sizeof md);
	snprintf(pin, TLS_PIN_MAX, "sha256//%s", (const char *)b64);
	return 0;
}

int
tls_cert_pin(const char *cert_pem, char pin[TLS_PIN_MAX])
{
	BIO *b = BIO_new_mem_buf(cert_pem, -1);
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	int error = x509_pin(x, pin);

	X509_free(x);
	BIO_free(b);
	ERR_clear_error();
	return error;
}

/* Every client certificate gets through the handshake: its key is checked against the pin. */
static int
accept_any(int ok, X509_STORE_CTX *store)
{
	return 1;
}

static int
select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
    unsigned inlen, void *arg)
{
	struct tls_ctx *t = arg;
	unsigned char *chosen;

	/* Ours first, in our order: the first of ours the client offers. */
	if (SSL_select_next_proto(&chosen, outlen, t->alpn, t->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = chosen;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * A client's new ticket: a copy kept by its connection, the one before let
 * go. A copy, because OpenSSL marks the connection's own session not
 * resumable when the connection ends without close_notify (a reset), and
 * the ticket is good all the same.
 */
static int
on_ticket(SSL *ssl, SSL_SESSION *sess)
{
	struct tls *t = SSL_get_app_data(ssl);
	SSL_SESSION *copy = SSL_SESSION_dup(sess);

	if (copy != NULL) {
		SSL_SESSION_free(t->ticket);
		t->ticket = copy;
	}
	return 0; /* sess stays OpenSSL's */
}

int
tls_ctx_new(bool server, const char *cert_pem, const char *key_pem, const char *alpn,
    struct tls_ctx **out, char **cause)
{
	struct tls_ctx *t = xcalloc(1, sizeof *t);
	BIO *cb = NULL, *kb = NULL;
	X509 *x = NULL;
	EVP_PKEY *key = NULL;
	int error = -EINVAL;

	if ((t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())) == NULL)
		goto out;
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	/* Idle connections hold no buffers. */
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	if (server) {
		/* One ticket: the client resumes with its newest (a server that asks for
		 * certificates resumes only within its own context's name). */
		SSL_CTX_set_num_tickets(t->ctx, 1);
		SSL_CTX_set_session_id_context(t->ctx, (const unsigned char *)"spillway", 8);
	} else {
		/* Each connection keeps its own tickets, for its owner to resume with
		 * (tls_session_keep). */
		SSL_CTX_set_session_cache_mode(
		    t->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(t->ctx, on_ticket);
	}
	if (cert_pem != NULL) {
		if ((cb = BIO_new_mem_buf(cert_pem, -1)) == NULL ||
		    (kb = BIO_new_mem_buf(key_pem, -1)) == NULL ||
		    (x = PEM_read_bio_X509(cb, NULL, NULL, NULL)) == NULL ||
		    (key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL)) == NULL ||
		    SSL_CTX_use_certificate(t->ctx, x) != 1 ||
		    SSL_CTX_use_PrivateKey(t->ctx, key) != 1)
			goto out;
	}
	if (server) {
		SSL_CTX_set_verify(
		    t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
		if (alpn != NULL && alpn_wire(alpn, t->alpn, sizeof t->alpn, &t->alpn_len) == 0)
			SSL_CTX_set_alpn_select_cb(t->ctx, select_alpn, t);
	} else {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
	}
	error = 0;
out:
	if (error != 0) {
		char why[200];

		ssl_error(why, sizeof why, "cannot set up TLS");
		*cause = xstrdup(why);
		tls_ctx_free(t);
		t = NULL;
	}
	EVP_PKEY_free(key);
	X509_free(x);
	BIO_free(cb);
	BIO_free(kb);
	*out = t;
	return error;
}

void
tls_ctx_free(struct tls_ctx *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx); /* counted: connections still open keep it */
	free(t);
}

#define TLS_RECORD_MAX 16384
#define PLAIN_MAX      (4 * TLS_RECORD_MAX)

/*
 * One loop, one thread: what is decrypted, before the callback has it; held
 * while the thread has a connection (static storage would be resident in
 * every process: the loader zeroes a thread's whole TLS block).
 */
static _Thread_local char *plain_buf;
static _Thread_local long conns;

struct tls *
tls_new(struct tls_ctx *ctx, const char *pin, const char *alpn)
{
	struct tls *t = xcalloc(1, sizeof *t);
	unsigned char wire[64];
	unsigned len;

	if (conns++ == 0)
		plain_buf = xmalloc(PLAIN_MAX);

	if ((t->ssl = SSL_new(ctx->ctx)) == NULL || (t->rbio = BIO_new(BIO_s_mem())) == NULL ||
	    (t->wbio = BIO_new(BIO_s_mem())) == NULL)
		abort(); /* out of memory, as xmalloc */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	SSL_set_app_data(t->ssl, t);
	snprintf(t->pin, sizeof t->pin, "%s", pin != NULL ? pin : "");
	if (SSL_is_server(t->ssl)) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (alpn != NULL && alpn_wire(alpn, wire, sizeof wire, &len) == 0)
			SSL_set_alpn_protos(t->ssl, wire, len);
	}
	return t;
}

void
tls_free(struct tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl); /* and its BIOs */
	SSL_SESSION_free(t->ticket);
	free(t);
	if (--conns == 0) {
		free(plain_buf);
		plain_buf = NULL;
	}
}

void
tls_resume(struct tls *t, const struct tls_session *s)
{
	if (s != NULL && !SSL_is_server(t->ssl))
		SSL_set_session(t->ssl, (SSL_SESSION *)s);
}

void
tls_session_keep(struct tls_session **kept, const struct tls *t)
{
	if (t == NULL || t->ticket == NULL || !t->ready || SSL_SESSION_is_resumable(t->ticket) != 1)
		return;
	SSL_SESSION_up_ref(t->ticket);
	SSL_SESSION_free((SSL_SESSION *)*kept);
	*kept = (struct tls_session *)t->ticket;
}

bool
tls_resumed(const struct tls *t)
{
	return t->ready && SSL_session_reused(t->ssl) == 1;
}

void
tls_session_free(struct tls_session *s)
{
	SSL_SESSION_free((SSL_SESSION *)s);
}

static enum tls_result
fail(struct tls *t, const char *what)
{
	if (!t->failed)
		ssl_error(t->err, sizeof t->err, what);
	t->failed = true;
	return TLS_FAILED;
}

/* The handshake is done: the peer's key must be the pinned one. */
static enum tls_result
verify(struct tls *t)
{
	X509 *peer = SSL_get1_peer_certificate(t->ssl);
	char got[TLS_PIN_MAX];
	const unsigned char *name;
	unsigned len;
	int error = x509_pin(peer, got);

	X509_free(peer);
	if (*t->pin != '\0' &&
	    (error != 0 || strlen(got) != strlen(t->pin) ||
	        CRYPTO_memcmp(got, t->pin, strlen(got)) != 0)) {
		snprintf(t->err, sizeof t->err, "its key is %s, not the pinned %s",
		    error == 0 ? got : "missing", t->pin);
		t->failed = t->mismatch = true;
		return TLS_FAILED;
	}
	SSL_get0_alpn_selected(t->ssl, &name, &len);
	snprintf(t->alpn, sizeof t->alpn, "%.*s", (int)len, name != NULL ? (const char *)name : "");
	t->ready = true;
	return TLS_READY;
}

enum tls_result
tls_handshake(struct tls *t)
{
	int r, e;

	if (t->failed)
		return TLS_FAILED;
	if (t->ready)
		return TLS_READY;
	if ((r = SSL_do_handshake(t->ssl)) == 1)
		return verify(t);
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return TLS_AGAIN;
	return fail(t, "TLS handshake");
}

enum tls_result
tls_input(struct tls *t, const char *cipher, size_t n, tls_plain_cb *plain, void *arg)
{
	enum tls_result r;
	size_t have = 0;
	int got, e;

	if (t->failed)
		return TLS_FAILED;
	if (n > 0 && BIO_write(t->rbio, cipher, (int)n) != (int)n)
		return fail(t, "TLS input");
	if (!t->ready && (r = tls_handshake(t)) != TLS_READY)
		return r;
	/*
	 * Everything that can be decrypted now, records gathered into one piece
	 * for the callback (one write for the owner, not one per 16 KiB record).
	 * The callback may close the owner: it says so.
	 */
	for (;;) {
		got = SSL_read(t->ssl, plain_buf + have, (int)(PLAIN_MAX - have));
		if (got > 0) {
			have += (size_t)got;
			if (PLAIN_MAX - have < TLS_RECORD_MAX) {
				plain(arg, plain_buf, have);
				have = 0;
			}
			continue;
		}
		/* Asked now: the callback may write on this connection, which resets it. */
		e = SSL_get_error(t->ssl, got);
		if (have > 0)
			plain(arg, plain_buf, have);
		break;
	}
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return TLS_READY;
	if (e == SSL_ERROR_ZERO_RETURN)
		return TLS_CLOSED;
	return fail(t, "TLS");
}

int
tls_write(struct tls *t, const char *plain, size_t n)
{
	if (t->failed || !t->ready)
		return -EPROTO;
	/* Into memory: all of it, always. */
	if (n > 0 && SSL_write(t->ssl, plain, (int)n) != (int)n) {
		fail(t, "TLS output");
		return -EPROTO;
	}
	return 0;
}

void
tls_close_notify(struct tls *t)
{
	if (t->ready && !t->failed)
		SSL_shutdown(t->ssl);
	ERR_clear_error();
}

size_t
tls_output(struct tls *t, char *buf, size_t cap)
{
	int n = BIO_read(t->wbio, buf, (int)(cap > INT32_MAX ? INT32_MAX : cap));

	return n > 0 ? (size_t)n : 0;
}

bool
tls_ready(const struct tls *t)
{
	return t->ready;
}

const char *
tls_alpn(const struct tls *t)
{
	return t->alpn;
}

bool
tls_mismatch(const struct tls *t)
{
	return t->mismatch;
}

const char *
tls_error(const struct tls *t)
{
	return t->err;
}
