/*
 * Partial responses: Google's `fields` parameter, which any method that
 * answers with data takes. A selection is names separated by commas; `a/b`
 * selects b within a, `a(b,c)` b and c within a, `*` every member; through
 * an array the selection applies to each element. A member the resource
 * does not have is left out; a selection that does not parse is the
 * request's 400 ("Invalid field selection ..."). Pure: no I/O.
 *
 *	fields=items(name,status,networkInterfaces/accessConfigs/natIP),nextPageToken
 */
#ifndef SPILLWAY_FIELDS_H
#define SPILLWAY_FIELDS_H

#include <jansson.h>

struct fields;

/* 0, or -EINVAL with the cause Google's message would say. */
int fields_parse(const char *, struct fields **, char **cause);
/* What of v the selection keeps: a new reference (v itself is not changed). */
json_t *fields_select(const struct fields *, json_t *v);
void fields_free(struct fields *);

#endif
