/*
 * JSON Web Tokens signed with RS256 (RSASSA-PKCS1-v1_5 over SHA-256), as
 * Google's service-account flows use them, and the RSA keys behind them.
 * Leaf module: OpenSSL and jansson only. Private keys never leave through an
 * error message.
 */
#ifndef SPILLWAY_JWT_H
#define SPILLWAY_JWT_H

#include <jansson.h>
#include <openssl/evp.h>

EVP_PKEY *rsa_generate(int bits);
/* Parse a PEM private key (PKCS#8 or PKCS#1). NULL and a cause that names no key bytes. */
EVP_PKEY *pem_read_private(const char *pem, char **cause);
char *pem_write_private(EVP_PKEY *);
char *pem_write_public(EVP_PKEY *);

int jwt_sign_rs256(EVP_PKEY *, const json_t *header, const json_t *claims, char **out);
/* Split and decode without verifying. 0 or -EINVAL with a cause. */
int jwt_decode(const char *, json_t **header, json_t **claims, char **cause);
/* 0 when the signature is RS256 and valid for this key, else -EPERM. */
int jwt_verify_rs256(const char *, EVP_PKEY *);

#endif
