#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "util/b64.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/xmalloc.h"

EVP_PKEY *
rsa_generate(int bits)
{
	return EVP_RSA_gen((unsigned)bits);
}

EVP_PKEY *
pem_read_private(const char *pem, char **cause)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *key = NULL;

	if (bio != NULL)
		key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (key == NULL) {
		*cause = xstrdup("the private key is not a PEM-encoded RSA key");
		return NULL;
	}
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
		EVP_PKEY_free(key);
		*cause = xstrdup("the private key is not an RSA key");
		return NULL;
	}
	return key;
}

static char *
bio_string(BIO *bio)
{
	char *p;
	long n = BIO_get_mem_data(bio, &p);
	char *s = xstrndup(p, (size_t)n);

	BIO_free(bio);
	return s;
}

char *
pem_write_private(EVP_PKEY *key)
{
	BIO *bio = BIO_new(BIO_s_mem());

	PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
	return bio_string(bio);
}

char *
pem_write_public(EVP_PKEY *key)
{
	BIO *bio = BIO_new(BIO_s_mem());

	PEM_write_bio_PUBKEY(bio, key);
	return bio_string(bio);
}

static char *
b64_json(const json_t *v)
{
	char *s = jx_dumps(v), *out = b64url_encode(s, strlen(s));

	free(s);
	return out;
}

int
jwt_sign_rs256(EVP_PKEY *key, const json_t *header, const json_t *claims, char **out)
{
	char *h = b64_json(header), *c = b64_json(claims), *input = xasprintf("%s.%s", h, c);
	unsigned char *sig = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t siglen = 0;
	int error = -EINVAL;

	if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(ctx, NULL, &siglen, (unsigned char *)input, strlen(input)) != 1)
		goto out;
	sig = xmalloc(siglen);
	if (EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)input, strlen(input)) != 1)
		goto out;
	{
		char *s = b64url_encode(sig, siglen);

		*out = xasprintf("%s.%s", input, s);
		free(s);
	}
	error = 0;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	free(sig);
	free(input);
	free(h);
	free(c);
	return error;
}

static int
decode_part(const char *p, size_t n, json_t **out)
{
	unsigned char *bin;
	size_t len;
	int error;

	if (b64url_decode(p, n, &bin, &len) != 0)
		return -EINVAL;
	error = jx_parse((char *)bin, len, out, NULL);
	free(bin);
	if (error == 0 && !json_is_object(*out)) {
		json_decref(*out);
		error = -EINVAL;
	}
	return error;
}

int
jwt_decode(const char *tok, json_t **header, json_t **claims, char **cause)
{
	const char *d1 = strchr(tok, '.'), *d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;

	*header = *claims = NULL;
	if (d2 == NULL || strchr(d2 + 1, '.') != NULL) {
		*cause = xstrdup("not a JWT: it must have three dot-separated parts");
		return -EINVAL;
	}
	if (decode_part(tok, (size_t)(d1 - tok), header) != 0) {
		*cause = xstrdup("the JWT header is not base64url-encoded JSON");
		return -EINVAL;
	}
	if (decode_part(d1 + 1, (size_t)(d2 - d1 - 1), claims) != 0) {
		json_decref(*header);
		*header = NULL;
		*cause = xstrdup("the JWT claims are not base64url-encoded JSON");
		return -EINVAL;
	}
	return 0;
}

int
jwt_verify_rs256(const char *tok, EVP_PKEY *key)
{
	const char *dot = strrchr(tok, '.');
	EVP_MD_CTX *ctx = NULL;
	unsigned char *sig = NULL;
	size_t siglen;
	int error = -EPERM;

	if (dot == NULL || b64url_decode(dot + 1, strlen(dot + 1), &sig, &siglen) != 0)
		return -EPERM;
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) != 1)
		goto out;
	if (EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)tok, (size_t)(dot - tok)) ==
	    1)
		error = 0;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	free(sig);
	return error;
}
