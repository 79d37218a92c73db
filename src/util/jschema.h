/*
 * Validation of JSON against the schemas of a Google discovery document
 * ({"Name": {"type": "object", "properties": {...}}, ...}): types, formats,
 * enums, nested $refs, arrays, maps (additionalProperties), and no field the
 * schema does not name.
 *
 * Strict mode checks what the discovery document says exactly (int64 and
 * uint64 as JSON strings, int32 as JSON numbers, no nulls): what a faithful
 * client sends and a faithful server answers. Lenient mode accepts what
 * Google's own JSON parser accepts (numbers for int64, numeric strings for
 * int32, null for "unset"): what a server must take from clients.
 */
#ifndef SPILLWAY_JSCHEMA_H
#define SPILLWAY_JSCHEMA_H

#include <jansson.h>

#define JSCHEMA_STRICT 0x1

/* 0, or -EINVAL with *cause naming the field ("at 'root.a[0].b'") and the rule. */
int jschema_validate(const json_t *schemas, const char *type, const json_t *value, const char *root,
    int flags, char **cause);

#endif
