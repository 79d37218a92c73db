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

/* What the file has said so far: each section once, each key once in its section. */
struct seen {
	char *section; /* "gcp", or "component\tvision" */
	char *key;     /* NULL for the section header itself */
	int line;
};

static int
seen_before(struct seen **list, size_t *n, const char *section, const char *key, int line)
{
	for (size_t i = 0; i < *n; i++) {
		const struct seen *s = &(*list)[i];

		if (strcmp(s->section, section) == 0 &&
		    (key == NULL ? s->key == NULL : s->key != NULL && strcmp(s->key, key) == 0))
			return s->line;
	}
	*list = xreallocarray(*list, *n + 1, sizeof **list);
	(*list)[*n].section = xstrdup(section);
	(*list)[*n].key = key != NULL ? xstrdup(key) : NULL;
	(*list)[(*n)++].line = line;
	return 0;
}

/* A section as people write it: [gcp] or [component "vision"]. */
static char *
section_text(const char *section, const char *name)
{
	return name != NULL ? xasprintf("[%s \"%s\"]", section, name) : xasprintf("[%s]", section);
}

int
ini_parse(const char *text, size_t len, ini_cb *cb, void *arg, int *linep, char **cause)
{
	char *copy = xmalloc(len + 1), *next = copy, *section = NULL, *name = NULL, *id = NULL;
	const char *nul = memchr(text, '\0', len);
	struct seen *seen = NULL;
	size_t nseen = 0;
	int line = 0, error = 0, first;

	memcpy(copy, text, len);
	copy[len] = '\0';
	if (nul != NULL) {
		/* Read as C strings, the rest of the line would be cut silently. */
		line = 1;
		for (const char *p = text; p < nul; p++)
			line += *p == '\n';
		*cause = xstrdup("a NUL byte: a configuration file is text; remove it");
		error = -EINVAL;
		next = NULL;
	}
	while (next != NULL && error == 0) {
		char *s = next, *eq, *key, *value;

		if ((next = strchr(s, '\n')) != NULL)
			*next++ = '\0';
		line++;
		s = str_trim(s);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			if ((error = parse_section(s, &section, &name, cause)) != 0)
				break;
			free(id);
			id = name != NULL ? xasprintf("%s\t%s", section, name) : xstrdup(section);
			if ((first = seen_before(&seen, &nseen, id, NULL, line)) != 0) {
				char *t = section_text(section, name);

				*cause = xasprintf(
				    "%s again: it was opened at line %d already; a section "
				    "appears once: put its keys together",
				    t, first);
				free(t);
				error = -EINVAL;
			}
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
		} else if ((first = seen_before(&seen, &nseen, id, key, line)) != 0) {
			char *t = section_text(section, name);

			*cause =
			    xasprintf("'%s' again in %s: it was set at line %d already; a key is "
			              "set once in its section",
			        key, t, first);
			free(t);
			error = -EINVAL;
		} else if (unquote(value) != 0) {
			*cause = xasprintf("the value of '%s' has unbalanced quotes", key);
			error = -EINVAL;
		} else {
			error = cb(section, name, key, value, line, arg, cause);
		}
	}
	*linep = line;
	for (size_t i = 0; i < nseen; i++) {
		free(seen[i].section);
		free(seen[i].key);
	}
	free(seen);
	free(section);
	free(name);
	free(id);
	free(copy);
	return error;
}
