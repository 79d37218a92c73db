#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/ini.h"
#include "util/str.h"
#include "util/xmalloc.h"

static int
valid_name(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return 0;
	return 1;
}

/* Unquote "..." in place; 0 or -EINVAL. */
static int
unquote(char *v)
{
	size_t n = strlen(v);
	char *w = v;

	if (n < 2 || v[0] != '"' || v[n - 1] != '"')
		return v[0] == '"' ? -EINVAL : 0;
	v[n - 1] = '\0';
	for (char *r = v + 1; *r != '\0'; r++) {
		if (*r == '\\') {
			r++;
			if (*r != '"' && *r != '\\')
				return -EINVAL;
		} else if (*r == '"') {
			return -EINVAL;
		}
		*w++ = *r;
	}
	*w = '\0';
	return 0;
}

static int
parse_section(char *s, char **section, char **name, char **cause)
{
	char *end = strchr(s, ']'), *sp;

	if (end == NULL || *str_trim(end + 1) != '\0') {
		*cause = xstrdup("a section header must look like [section] or [section \"name\"]");
		return -EINVAL;
	}
	*end = '\0';
	s = str_trim(s + 1);
	free(*section);
	free(*name);
	*section = *name = NULL;
	if ((sp = strpbrk(s, " \t")) != NULL) {
		char *q = str_trim(sp);

		*sp = '\0';
		if (unquote(q) != 0 || q[0] == '\0') {
			*cause = xstrdup("a subsection name must be in double quotes");
			return -EINVAL;
		}
		*name = xstrdup(q);
	}
	if (!valid_name(s)) {
		*cause = xasprintf("'%s' is not a valid section name", s);
		return -EINVAL;
	}
	*section = xstrdup(s);
	return 0;
}

int
ini_parse(const char *text, ini_cb *cb, void *arg, int *linep, char **cause)
{
	char *copy = xstrdup(text), *next = copy, *section = NULL, *name = NULL;
	int line = 0, error = 0;

	while (next != NULL && error == 0) {
		char *s = next, *eq, *key, *value;

		if ((next = strchr(s, '\n')) != NULL)
			*next++ = '\0';
		line++;
		s = str_trim(s);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			error = parse_section(s, &section, &name, cause);
			continue;
		}
		if ((eq = strchr(s, '=')) == NULL) {
			*cause = xasprintf("expected 'key = value', not '%s'", s);
			error = -EINVAL;
			break;
		}
		*eq = '\0';
		key = str_trim(s);
		value = str_trim(eq + 1);
		if (!valid_name(key)) {
			*cause = xasprintf("'%s' is not a valid key name", key);
			error = -EINVAL;
		} else if (section == NULL) {
			*cause = xasprintf("key '%s' is outside any [section]", key);
			error = -EINVAL;
		} else if (unquote(value) != 0) {
			*cause = xasprintf("the value of '%s' has unbalanced quotes", key);
			error = -EINVAL;
		} else {
			error = cb(section, name, key, value, line, arg, cause);
		}
	}
	*linep = line;
	free(section);
	free(name);
	free(copy);
	return error;
}
