#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

void
jx_init(void)
{
	json_set_alloc_funcs(xmalloc, free);
}

int
jx_parse(const char *s, size_t len, json_t **out, char **cause)
{
	json_error_t err;
	json_t *v = json_loadb(s, len, JSON_REJECT_DUPLICATES, &err);

	if (v == NULL) {
		if (cause != NULL)
			*cause =
			    xasprintf("%s at line %d, column %d", err.text, err.line, err.column);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

json_t *
jx_pack(const char *fmt, ...)
{
	json_error_t err;
	va_list ap;
	json_t *v;

	va_start(ap, fmt);
	v = json_vpack_ex(&err, 0, fmt, ap);
	va_end(ap);
	if (v == NULL)
		fatalx("json_pack(\"%s\"): %s", fmt, err.text);
	return v;
}

json_t *
jx_get(const json_t *v, const char *path)
{
	char *copy = xstrdup(path), *save = NULL, *part;
	json_t *cur = (json_t *)v;

	for (part = strtok_r(copy, ".", &save); part != NULL && cur != NULL;
	     part = strtok_r(NULL, ".", &save)) {
		int64_t i;

		if (json_is_object(cur))
			cur = json_object_get(cur, part);
		else if (json_is_array(cur) && parse_int64(part, 0, INT32_MAX, &i) == 0)
			cur = json_array_get(cur, (size_t)i);
		else
			cur = NULL;
	}
	free(copy);
	return cur;
}

const char *
jx_str(const json_t *v, const char *path)
{
	return json_string_value(jx_get(v, path));
}

int
jx_int64(const json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (json_is_string(v))
		return parse_int64(json_string_value(v), INT64_MIN, INT64_MAX, out);
	return -EINVAL;
}

json_t *
jx_int64_string(int64_t v)
{
	char s[24];

	snprintf(s, sizeof s, "%" PRId64, v);
	return json_string(s);
}

char *
jx_dumps(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	if (s == NULL)
		fatalx("cannot serialise a JSON value");
	return s;
}

static int
dump_cb(const char *p, size_t n, void *arg)
{
	return buf_add(arg, p, n) == 0 ? 0 : -1;
}

int
jx_dump_buf(const json_t *v, struct buf *b)
{
	return json_dump_callback(v, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY) == 0 ? 0 : -E2BIG;
}
