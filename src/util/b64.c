#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "util/b64.h"
#include "util/xmalloc.h"

char *
b64url_encode(const void *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);

	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *c = out; *c != '\0'; c++) {
		if (*c == '+')
			*c = '-';
		else if (*c == '/')
			*c = '_';
	}
	return out;
}

int
b64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
	size_t padded = (n + 3) / 4 * 4, pad = padded - n;
	char *std;
	unsigned char *bin;
	int len;

	if (n % 4 == 1)
		return -EINVAL;
	std = xmalloc(padded + 1);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '+' || c == '/' || c == '=')
			goto bad;
		std[i] = c;
	}
	memset(std + n, '=', pad);
	std[padded] = '\0';
	bin = xmalloc(padded / 4 * 3 + 1);
	/* EVP_DecodeBlock rejects characters outside the alphabet. */
	if ((len = EVP_DecodeBlock(bin, (unsigned char *)std, (int)padded)) < 0) {
		free(bin);
		goto bad;
	}
	free(std);
	len -= (int)pad; /* it counts the padding as zero bytes */
	bin[len] = '\0';
	*out = bin;
	*outlen = (size_t)len;
	return 0;
bad:
	free(std);
	return -EINVAL;
}
