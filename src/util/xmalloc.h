/*
 * Allocation that cannot fail: a failed allocation aborts in one place, so no
 * caller carries an out-of-memory branch it could never test. Bounds on what
 * outside input may make us allocate live with the buffers (buf.h), not here.
 */
#ifndef SPILLWAY_XMALLOC_H
#define SPILLWAY_XMALLOC_H

#include <stdarg.h>
#include <stddef.h>

#include "util/compat.h"

void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xrealloc(void *, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
char *xasprintf(const char *, ...) PRINTFLIKE(1, 2);
char *xvasprintf(const char *, va_list) PRINTFLIKE(1, 0);

#endif
