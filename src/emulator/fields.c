/*
 * The selection (fields.h) as a tree of names: a leaf keeps the member
 * whole, an inner node keeps what its children select. The same name twice
 * (`items(name),items(zone)`) is one node with both children; a leaf wins
 * over a sub-selection (`items,items(name)` keeps items whole).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/fields.h"
#include "util/xmalloc.h"

#define FIELDS_DEPTH 16

struct fields {
	char *name; /* NULL at the root */
	bool whole; /* the member as it is */
	struct fields **kids;
	size_t nkids;
};

struct parser {
	const char *text, *p;
	int depth;
};

void
fields_free(struct fields *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->nkids; i++)
		fields_free(f->kids[i]);
	free(f->kids);
	free(f->name);
	free(f);
}

static struct fields *
kid(struct fields *f, const char *name, size_t len)
{
	struct fields *k;

	for (size_t i = 0; i < f->nkids; i++)
		if (strlen(f->kids[i]->name) == len && strncmp(f->kids[i]->name, name, len) == 0)
			return f->kids[i];
	k = xcalloc(1, sizeof *k);
	k->name = xstrndup(name, len);
	f->kids = xreallocarray(f->kids, f->nkids + 1, sizeof *f->kids);
	f->kids[f->nkids++] = k;
	return k;
}

static bool
name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '_' || c == '*' || c == '.' || c == '-';
}

static int list(struct parser *, struct fields *);

/* One item: a path of names, then a sub-selection or nothing (the member whole). */
static int
item(struct parser *ps, struct fields *into)
{
	struct fields *at = into;

	for (;;) {
		const char *start = ps->p;

		while (name_char(*ps->p))
			ps->p++;
		if (ps->p == start)
			return -EINVAL;
		at = kid(at, start, (size_t)(ps->p - start));
		if (*ps->p != '/')
			break;
		ps->p++;
	}
	if (*ps->p == '(') {
		ps->p++;
		if (++ps->depth > FIELDS_DEPTH || list(ps, at) != 0 || *ps->p != ')')
			return -EINVAL;
		ps->p++;
		ps->depth--;
		return 0;
	}
	at->whole = true;
	return 0;
}

static int
list(struct parser *ps, struct fields *into)
{
	for (;;) {
		while (*ps->p == ' ')
			ps->p++;
		if (item(ps, into) != 0)
			return -EINVAL;
		while (*ps->p == ' ')
			ps->p++;
		if (*ps->p != ',')
			return 0;
		ps->p++;
	}
}

int
fields_parse(const char *text, struct fields **out, char **cause)
{
	struct parser ps = {.text = text, .p = text};
	struct fields *root = xcalloc(1, sizeof *root);

	if (list(&ps, root) != 0 || *ps.p != '\0') {
		/* Google names the selection from where it stopped making sense. */
		*cause = xasprintf("Invalid field selection %s", *ps.p != '\0' ? ps.p : text);
		fields_free(root);
		return -EINVAL;
	}
	*out = root;
	return 0;
}

static json_t *select_in(const struct fields *, json_t *);

/* A member kept: whole, or what the node's children select in it. */
static json_t *
keep(const struct fields *k, json_t *v)
{
	return k->whole ? json_incref(v) : select_in(k, v);
}

static json_t *
select_in(const struct fields *f, json_t *v)
{
	json_t *out;

	if (json_is_array(v)) {
		size_t i;
		json_t *e;

		out = json_array();
		json_array_foreach (v, i, e)
			json_array_append_new(out, select_in(f, e));
		return out;
	}
	if (!json_is_object(v))
		return json_incref(v); /* a scalar under a sub-selection: as it is */
	out = json_object();
	for (size_t i = 0; i < f->nkids; i++) {
		const struct fields *k = f->kids[i];
		const char *key;
		json_t *m;

		if (strcmp(k->name, "*") == 0) {
			json_object_foreach (v, key, m)
				if (json_object_get(out, key) == NULL)
					json_object_set_new(out, key, keep(k, m));
		} else if ((m = json_object_get(v, k->name)) != NULL) {
			json_object_set_new(out, k->name, keep(k, m));
		}
	}
	return out;
}

json_t *
fields_select(const struct fields *f, json_t *v)
{
	return select_in(f, v);
}
