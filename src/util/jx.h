/*
 * Helpers over jansson. Parsing keeps the parser's own words for the caller's
 * error message; packing a fixed format cannot fail at run time, so jx_pack
 * aborts on a format error (a bug) instead of returning NULL.
 */
#ifndef SPILLWAY_JX_H
#define SPILLWAY_JX_H

#include <stdint.h>

#include <jansson.h>

#include "util/buf.h"

/* Route jansson's allocations through xmalloc. Call once at start-up. */
void jx_init(void);
int jx_parse(const char *, size_t, json_t **out, char **cause);
json_t *jx_pack(const char *fmt, ...);
/* "a.b.0.c": object keys and array indexes. NULL when absent. */
json_t *jx_get(const json_t *, const char *path);
const char *jx_str(const json_t *, const char *path);
/* An integer given as a JSON integer or a decimal string (Google's int64). */
int jx_int64(const json_t *, int64_t *);
json_t *jx_int64_string(int64_t);
/* Compact serialisation; the caller frees. */
char *jx_dumps(const json_t *);
int jx_dump_buf(const json_t *, struct buf *);

#endif
