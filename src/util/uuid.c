#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "util/log.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

void
random_bytes(void *p, size_t n)
{
	if (RAND_bytes(p, (int)n) != 1)
		fatalx("the system random number generator failed");
}

static void
format_v4(uint8_t b[16], char out[UUID_LEN])
{
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, UUID_LEN,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	    b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	    b[15]);
}

void
uuid_v4(char out[UUID_LEN])
{
	uint8_t b[16];

	random_bytes(b, sizeof b);
	format_v4(b, out);
}

void
uuid_derived(const char *seed, const char *purpose, char out[UUID_LEN])
{
	size_t np = strlen(purpose) + 1, ns = strlen(seed); /* the NUL keeps the two apart */
	unsigned char md[SHA256_DIGEST_LENGTH], *text = xmalloc(np + ns);

	memcpy(text, purpose, np);
	memcpy(text + np, seed, ns);
	SHA256(text, np + ns, md);
	free(text);
	format_v4(md, out);
}

bool
uuid_valid(const char *s)
{
	bool zero = true;

	if (strlen(s) != UUID_LEN - 1)
		return false;
	for (int i = 0; i < UUID_LEN - 1; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		} else if (s[i] != '0') {
			zero = false;
		}
	}
	return !zero;
}

double
prng_next(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	z ^= z >> 31;
	return (double)(z >> 11) / (double)(UINT64_C(1) << 53);
}
