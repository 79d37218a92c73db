/*
 * Growable byte buffers with a hard maximum, after curl's dynbuf: whatever
 * outside input fills one (an HTTP body, a cloud answer, a file) is bounded, and
 * going past the bound is an error (-E2BIG), not an allocation of whatever the
 * peer chose to send. The contents are always NUL-terminated, so a buffer of
 * text can be used as a C string.
 */
#ifndef SPILLWAY_BUF_H
#define SPILLWAY_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "util/compat.h"

struct buf {
	char *data; /* NULL until the first append */
	size_t len;
	size_t cap;
	size_t max; /* the most len may ever be */
};

#define BUF_INIT(max)                                                                              \
	{                                                                                          \
		NULL, 0, 0, (max)                                                                  \
	}

void buf_init(struct buf *, size_t max);
void buf_release(struct buf *);
void buf_reset(struct buf *);
/* Drop the first n bytes (all, if fewer). */
void buf_consume(struct buf *, size_t n);
int buf_add(struct buf *, const void *, size_t);
int buf_addstr(struct buf *, const char *);
int buf_addch(struct buf *, char);
int buf_printf(struct buf *, const char *, ...) PRINTFLIKE(2, 3);
int buf_vprintf(struct buf *, const char *, va_list) PRINTFLIKE(2, 0);
/* The contents as a string; "" for an empty buffer, never NULL. */
const char *buf_str(const struct buf *);
/* Hand the contents over to the caller (free() them); the buffer is reset. */
char *buf_detach(struct buf *, size_t *len);

#endif
