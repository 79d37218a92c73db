#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/jschema.h"
#include "util/str.h"
#include "util/xmalloc.h"

struct ctx {
	const json_t *schemas;
	int flags;
	struct buf path;
	char **cause;
};

static const char *
kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

static int fail(struct ctx *, const char *, ...) PRINTFLIKE(2, 3);

static int
fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	char *what;

	va_start(ap, fmt);
	what = xvasprintf(fmt, ap);
	va_end(ap);

	*c->cause = xasprintf("'%s': %s", buf_str(&c->path), what);
	free(what);
	return -EINVAL;
}

static int check(struct ctx *, const json_t *schema, const json_t *v);

static int
check_integer(struct ctx *c, const char *format, const json_t *v)
{
	bool wide = format != NULL && strstr(format, "64") != NULL;
	bool strict = c->flags & JSCHEMA_STRICT;
	bool is_unsigned = format != NULL && format[0] == 'u';
	int64_t n;

	if (json_is_integer(v)) {
		if (strict && wide)
			return fail(c, "a %s must be sent as a string, not %s", format, kind(v));
		n = json_integer_value(v);
	} else if (json_is_string(v)) {
		if (strict && !wide)
			return fail(c, "expected a number (%s), got %s",
			    format ? format : "integer", kind(v));
		/* uint64 beyond INT64_MAX is legal; check its digits only. */
		const char *s = json_string_value(v);
		if (is_unsigned && wide && *s != '\0' && strspn(s, "0123456789") == strlen(s))
			return 0;
		if (parse_int64(s, INT64_MIN, INT64_MAX, &n) != 0)
			return fail(c, "'%s' is not an integer", s);
	} else {
		return fail(c, "expected an integer, got %s", kind(v));
	}
	if (is_unsigned && n < 0)
		return fail(c, "expected a non-negative integer (%s)", format);
	if (!wide && format != NULL &&
	    (is_unsigned ? n > UINT32_MAX : (n < INT32_MIN || n > INT32_MAX)))
		return fail(c, "the value does not fit in %s", format);
	return 0;
}

static int
check_string(struct ctx *c, const json_t *schema, const json_t *v)
{
	const char *format = json_string_value(json_object_get(schema, "format"));
	const json_t *en = json_object_get(schema, "enum");
	const char *s;

	if (format != NULL && strstr(format, "int") != NULL)
		return check_integer(c, format, v);
	if (!json_is_string(v))
		return fail(c, "expected a string, got %s", kind(v));
	s = json_string_value(v);
	if (json_is_array(en)) {
		size_t i;
		json_t *e;
		struct buf all = BUF_INIT(SIZE_MAX);
		int error;

		json_array_foreach (en, i, e) {
			if (strcmp(json_string_value(e), s) == 0) {
				buf_release(&all);
				return 0;
			}
			buf_printf(&all, "%s%s", i ? ", " : "", json_string_value(e));
		}
		error = fail(c, "'%s' is not one of %s", s, buf_str(&all));
		buf_release(&all);
		return error;
	}
	if (format != NULL && strcmp(format, "byte") == 0) {
		for (const char *p = s; *p != '\0'; p++)
			if (!isalnum((unsigned char)*p) && strchr("+/=-_", *p) == NULL)
				return fail(c, "'%s' is not base64 (format byte)", s);
	}
	if (format != NULL && strcmp(format, "google-datetime") == 0) {
		int64_t ms;

		if (time_parse_rfc3339(s, &ms) != 0)
			return fail(c, "'%s' is not an RFC 3339 time", s);
	}
	return 0;
}

static int
check_object(struct ctx *c, const json_t *schema, const json_t *v)
{
	const json_t *props = json_object_get(schema, "properties");
	const json_t *extra = json_object_get(schema, "additionalProperties");
	size_t mark = c->path.len;
	const char *key;
	json_t *member;

	if (!json_is_object(v))
		return fail(c, "expected an object, got %s", kind(v));
	json_object_foreach ((json_t *)v, key, member) {
		const json_t *sub = props != NULL ? json_object_get(props, key) : NULL;
		int error;

		if (sub == NULL)
			sub = extra;
		if (sub == NULL) {
			return fail(c, "unknown field '%s'", key);
		}
		buf_printf(&c->path, ".%s", key);
		error = check(c, sub, member);
		c->path.len = mark;
		c->path.data[mark] = '\0';
		if (error != 0)
			return error;
	}
	return 0;
}

static int
check_array(struct ctx *c, const json_t *schema, const json_t *v)
{
	const json_t *items = json_object_get(schema, "items");
	size_t mark = c->path.len, i;
	json_t *e;

	if (!json_is_array(v))
		return fail(c, "expected an array, got %s", kind(v));
	json_array_foreach (v, i, e) {
		int error;

		buf_printf(&c->path, "[%zu]", i);
		error = items != NULL ? check(c, items, e) : 0;
		c->path.len = mark;
		c->path.data[mark] = '\0';
		if (error != 0)
			return error;
	}
	return 0;
}

static int
check(struct ctx *c, const json_t *schema, const json_t *v)
{
	const char *ref = json_string_value(json_object_get(schema, "$ref"));
	const char *type;

	if (ref != NULL) {
		schema = json_object_get(c->schemas, ref);
		if (schema == NULL)
			return fail(c, "the schema names an unknown type '%s'", ref);
	}
	if (json_is_null(v)) {
		if (c->flags & JSCHEMA_STRICT)
			return fail(c, "null is not a value of this field");
		return 0;
	}
	type = json_string_value(json_object_get(schema, "type"));
	if (type == NULL || strcmp(type, "any") == 0)
		return 0;
	if (strcmp(type, "object") == 0)
		return check_object(c, schema, v);
	if (strcmp(type, "array") == 0)
		return check_array(c, schema, v);
	if (strcmp(type, "string") == 0)
		return check_string(c, schema, v);
	if (strcmp(type, "integer") == 0)
		return check_integer(c, json_string_value(json_object_get(schema, "format")), v);
	if (strcmp(type, "number") == 0) {
		if (json_is_number(v))
			return 0;
		if (!(c->flags & JSCHEMA_STRICT) && json_is_string(v)) {
			double d;

			if (parse_number(json_string_value(v), -1e308, 1e308, &d) == 0)
				return 0;
		}
		return fail(c, "expected a number, got %s", kind(v));
	}
	if (strcmp(type, "boolean") == 0) {
		if (json_is_boolean(v))
			return 0;
		return fail(c, "expected a boolean, got %s", kind(v));
	}
	return fail(c, "the schema has an unknown type '%s'", type);
}

int
jschema_validate(const json_t *schemas, const char *type, const json_t *value, const char *root,
    int flags, char **cause)
{
	struct ctx c = {.schemas = schemas, .flags = flags, .path = BUF_INIT(4096), .cause = cause};
	json_t *ref = json_pack("{s:s}", "$ref", type);
	int error;

	buf_addstr(&c.path, root);
	error = check(&c, ref, value);
	json_decref(ref);
	buf_release(&c.path);
	return error;
}
