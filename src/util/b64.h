/* base64url without padding (RFC 4648 §5), as JWTs and page tokens use it. */
#ifndef SPILLWAY_B64_H
#define SPILLWAY_B64_H

#include <stddef.h>

/* Returns a new NUL-terminated string. */
char *b64url_encode(const void *, size_t);
/* Returns 0 and a new buffer (NUL-terminated for convenience), or -EINVAL. */
int b64url_decode(const char *, size_t, unsigned char **out, size_t *outlen);

#endif
