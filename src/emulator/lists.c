/*
 * Listings: a zone's instances, operations, disks and machine types, and the
 * aggregated lists that gcloud asks first (`aggregated/instances`,
 * `operations`, `machineTypes`, `disks`), each with Google's paging (maxResults,
 * pageToken), filters and shapes: an aggregated list's `items` keyed by
 * scope ("zones/Z"), a scope with nothing to show carrying the warning
 * Google gives it.
 *
 * A page token is a cursor after the last item sent (a name, or a position
 * in a zone's operations), prefixed by its zone in aggregated lists: what is
 * created or deleted between pages is never listed twice or skipped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/filter.h"
#include "emulator/internal.h"
#include "util/b64.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define LIST_MAX 500

struct page {
	size_t max;
	char *cursor; /* after this; NULL: from the start */
	struct filter *filter;
	char order[32]; /* orderBy's field; "" or "name": by name, the lists' own order */
	bool desc;
};

static void
page_free(struct page *pg)
{
	free(pg->cursor);
	filter_free(pg->filter);
}

static char *
page_token(const char *cursor)
{
	return b64url_encode(cursor, strlen(cursor));
}

/* A list's envelope: its kind, id and selfLink, its items (when any), the next page's token. */
static json_t *
list_json(struct rq *rq, const char *scope, const char *kind, const char *what, json_t *items,
    const char *next)
{
	char *id = xasprintf("projects/%s/%s%s", rq->emu->project, scope, what);
	char *self = xasprintf(GCE_LINK "%s", id);
	json_t *v = jx_pack("{s:s, s:s, s:s}", "kind", kind, "id", id, "selfLink", self);

	if (json_array_size(items) > 0)
		json_object_set(v, "items", items);
	if (next != NULL)
		json_object_set_new(v, "nextPageToken", json_string(next));
	json_decref(items);
	free(id);
	free(self);
	return v;
}

/* maxResults, pageToken, filter and orderBy as Google checks them. */
static int
parse_page(struct rq *rq, struct page *pg)
{
	const char *m = rq_query(rq, "maxResults");
	const char *tok = rq_query(rq, "pageToken");
	const char *f = rq_query(rq, "filter");
	const char *order = rq_query(rq, "orderBy");
	char *cause = NULL;
	int64_t n = LIST_MAX;

	*pg = (struct page){.max = LIST_MAX};
	if (m != NULL && parse_int64(m, INT64_MIN, INT64_MAX, &n) != 0) {
		compute_bad_field(rq, "maxResults", m, "Must be an integer.");
		return -EINVAL;
	}
	if (n < 0 || n > LIST_MAX) {
		compute_bad_field(rq, "maxResults", m,
		    n < 0 ? "Must be greater than or equal to 0"
		          : "Must be less than or equal to 500");
		return -EINVAL;
	}
	pg->max = n == 0 ? LIST_MAX : (size_t)n;
	if (order != NULL && *order != '\0') {
		char dir[8] = "", extra;
		int got = sscanf(order, "%31s %7s %c", pg->order, dir, &extra);

		if ((strcmp(pg->order, "name") != 0 &&
		        strcmp(pg->order, "creationTimestamp") != 0 &&
		        strcmp(pg->order, "insertTime") != 0) ||
		    got > 2 || (got == 2 && strcmp(dir, "asc") != 0 && strcmp(dir, "desc") != 0)) {
			compute_bad_field(rq, "orderBy", order,
			    "Ordering is by name, creationTimestamp or insertTime, then asc or desc.");
			return -EINVAL;
		}
		pg->desc = strcmp(dir, "desc") == 0;
	}
	if (tok != NULL && *tok != '\0') {
		unsigned char *raw;
		size_t len;

		if (b64url_decode(tok, strlen(tok), &raw, &len) != 0 || len == 0 ||
		    memchr(raw, '\0', len) != NULL) {
			compute_bad_field(rq, "pageToken", tok, "The page token is invalid.");
			return -EINVAL;
		}
		pg->cursor = (char *)raw;
	}
	if (f != NULL && filter_parse(f, &pg->filter, &cause) != 0) {
		compute_bad_field(rq, "filter", f, "Invalid list filter expression (%s).", cause);
		free(cause);
		page_free(pg);
		return -EINVAL;
	}
	return 0;
}

/* Whether a page is in the listing's own order (by name, or as operations came). */
static bool
natural_order(const struct page *pg)
{
	return !pg->desc && (pg->order[0] == '\0' || strcmp(pg->order, "name") == 0);
}

/* By the orderBy field: times as times (their offsets differ), else as text. */
static int
by_field(const void *a, const void *b, void *field)
{
	const char *x = jx_str(*(json_t *const *)a, field);
	const char *y = jx_str(*(json_t *const *)b, field);
	int64_t tx, ty;

	int c;

	if (x == NULL || y == NULL)
		c = (x != NULL) - (y != NULL);
	else if (time_parse_rfc3339(x, &tx) == 0 && time_parse_rfc3339(y, &ty) == 0)
		c = (tx > ty) - (tx < ty);
	else
		c = strcmp(x, y);
	/* Ties by name: the same order on every page. */
	return c != 0 ? c
	              : strcmp(or_default(jx_str(*(json_t *const *)a, "name"), ""),
	                    or_default(jx_str(*(json_t *const *)b, "name"), ""));
}

/* The same selection, every page of it: what an ordered listing gathers first. */
static struct page
whole(const struct page *pg)
{
	struct page all = *pg;

	all.max = SIZE_MAX;
	all.cursor = NULL;
	return all;
}

/*
 * A page of all (matching, in the listing's own order) in the orderBy order:
 * the cursor is a position then, "@N".
 */
static json_t *
ordered_page(json_t *all, const struct page *pg, char **next)
{
	size_t n = json_array_size(all), from = 0;
	json_t **v = xcalloc(n + 1, sizeof *v), *items = json_array();
	int64_t at;

	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(all, i);
	qsort_r(v, n, sizeof *v, by_field, (void *)pg->order);
	if (pg->desc)
		for (size_t i = 0; i < n / 2; i++) {
			json_t *t = v[i];

			v[i] = v[n - 1 - i];
			v[n - 1 - i] = t;
		}
	if (pg->cursor != NULL && pg->cursor[0] == '@' &&
	    parse_int64(pg->cursor + 1, 0, INT64_MAX, &at) == 0)
		from = (size_t)at;
	for (size_t i = from; i < n && json_array_size(items) < pg->max; i++)
		json_array_append(items, v[i]);
	*next = NULL;
	if (from + json_array_size(items) < n) {
		char pos[24];

		snprintf(pos, sizeof pos, "@%zu", from + json_array_size(items));
		*next = page_token(pos);
	}
	free(v);
	json_decref(all);
	return items;
}

/* --- one zone --- */

/*
 * A zone's matching instances after the cursor, added to arr, or serialised
 * to out as its "items" member (none when there are none); false when the
 * page is full first.
 */
static bool
add_instances(struct buf *out, json_t *arr, struct zone *z, const struct page *pg,
    const char *after, size_t *n, const char **last)
{
	size_t i = 0;
	bool found, first = true, room = true;

	if (after != NULL) {
		i = compute_inst_index(z, after, &found);
		i += found;
	}
	for (; i < z->ninsts; i++) {
		if (!filter_match(pg->filter, z->insts[i]->res))
			continue;
		if (*n == pg->max) {
			room = false;
			break;
		}
		if (arr != NULL) {
			json_array_append(arr, z->insts[i]->res);
		} else {
			buf_addstr(out, first ? ",\"items\":[" : ",");
			buf_addstr(out, inst_text(z->insts[i]));
		}
		first = false;
		(*n)++;
		*last = z->insts[i]->name;
	}
	if (!first && arr == NULL)
		buf_addch(out, ']');
	return room;
}

void
list_instances(struct call *c)
{
	struct rq *rq = c->rq;
	struct zone *z = c->zone;
	struct page pg;
	struct buf out = BUF_INIT(SIZE_MAX);
	const char *last = NULL;
	char *next = NULL, *scope;
	size_t n = 0;
	json_t *v;

	if (parse_page(rq, &pg) != 0)
		return;
	if (!natural_order(&pg)) {
		json_t *all = json_array();
		struct page every = whole(&pg);

		add_instances(NULL, all, z, &every, NULL, &n, &last);
		all = ordered_page(all, &pg, &next);
		v = list_json(rq, scope = xasprintf("zones/%s/", z->name), "compute#instanceList",
		    "instances", all, next);
		emu_reply_json(rq, 200, v);
		free(scope);
		free(next);
		page_free(&pg);
		return;
	}
	/* Each instance's JSON is kept serialised: a page is mostly memcpy. */
	buf_printf(&out,
	    "{\"kind\":\"compute#instanceList\",\"id\":\"projects/%s/zones/%s/instances\","
	    "\"selfLink\":\"" GCE_LINK "projects/%s/zones/%s/instances\"",
	    rq->emu->project, z->name, rq->emu->project, z->name);
	if (!add_instances(&out, NULL, z, &pg, pg.cursor, &n, &last))
		next = page_token(last);
	if (next != NULL)
		buf_printf(&out, ",\"nextPageToken\":\"%s\"", next);
	buf_addch(&out, '}');
	emu_reply(rq, 200, "application/json; charset=UTF-8", out.data, out.len);
	buf_release(&out);
	free(next);
	page_free(&pg);
}

/* A zone's matching operations from position i; false when the page is full first. */
static bool
add_operations(
    json_t *items, struct zone *z, const struct page *pg, size_t i, size_t *n, size_t *last)
{
	for (; i < z->nops; i++) {
		if (!filter_match(pg->filter, z->ops[i]->res))
			continue;
		if (*n == pg->max)
			return false;
		json_array_append(items, z->ops[i]->res);
		(*n)++;
		*last = i;
	}
	return true;
}

/* A zone's matching machine types (by name) after the cursor; false when the page is full first. */
static bool
add_machine_types(struct emulator *emu, json_t *items, struct zone *z, const struct page *pg,
    const char *after, size_t *n, const char **last)
{
	for (size_t i = 0; machine_name(i) != NULL; i++) {
		json_t *mt;

		if (after != NULL && strcmp(machine_name(i), after) <= 0)
			continue;
		mt = machine_json(emu, z, machine_name(i));
		if (!filter_match(pg->filter, mt)) {
			json_decref(mt);
			continue;
		}
		if (*n == pg->max) {
			json_decref(mt);
			return false;
		}
		json_array_append_new(items, mt);
		(*n)++;
		*last = machine_name(i);
	}
	return true;
}

/* A zone's matching disks (by name) after the cursor; false when the page is full first. */
static bool
add_disks(struct emulator *emu, json_t *items, struct zone *z, const struct page *pg,
    const char *after, size_t *n, const char **last)
{
	size_t count = json_object_size(z->disks), k = 0;
	const char **names = xcalloc(count + 1, sizeof *names), *name;
	json_t *d;
	bool room = true;

	json_object_foreach (z->disks, name, d)
		names[k++] = name;
	qsort(names, count, sizeof *names, str_ptr_cmp);
	for (k = 0; k < count; k++) {
		d = json_object_get(z->disks, names[k]);
		if ((after != NULL && strcmp(names[k], after) <= 0) || !filter_match(pg->filter, d))
			continue;
		if (*n == pg->max) {
			room = false;
			break;
		}
		json_array_append(items, d);
		(*n)++;
		*last = jx_str(d, "name");
	}
	free(names);
	return room;
}

void
list_operations(struct call *c)
{
	struct rq *rq = c->rq;
	struct zone *z = c->zone != NULL ? c->zone : &rq->emu->global;
	struct page pg;
	char *next = NULL, *scope, pos[24];
	size_t n = 0, last = 0, from = 0;
	int64_t at;
	json_t *items;

	if (parse_page(rq, &pg) != 0)
		return;
	if (pg.cursor != NULL && parse_int64(pg.cursor, 0, INT64_MAX, &at) == 0)
		from = (size_t)at + 1;
	items = json_array();
	if (!natural_order(&pg)) {
		struct page every = whole(&pg);

		add_operations(items, z, &every, 0, &n, &last);
		items = ordered_page(items, &pg, &next);
	} else if (!add_operations(items, z, &pg, from, &n, &last)) {
		snprintf(pos, sizeof pos, "%zu", last);
		next = page_token(pos);
	}
	scope = c->zone != NULL ? xasprintf("zones/%s/", c->zone->name) : xstrdup("global/");
	emu_reply_json(
	    rq, 200, list_json(rq, scope, "compute#operationList", "operations", items, next));
	free(scope);
	free(next);
	page_free(&pg);
}

/* --- aggregated lists --- */

/* What Google puts in a scope that has nothing on this page. */
static json_t *
empty_scope(const char *scope)
{
	char *msg = xasprintf("There are no results for scope '%s' on this page.", scope);
	json_t *w = jx_pack("{s:{s:s, s:s, s:[{s:s, s:s}]}}", "warning", "code",
	    "NO_RESULTS_ON_PAGE", "message", msg, "data", "key", "scope", "value", scope);

	free(msg);
	return w;
}

/* An aggregated list's scopes: the zones, then (for operations) the global scope. */
static struct zone *
scope_at(struct emulator *emu, size_t i)
{
	return i < emu->nzones ? &emu->zones[i] : &emu->global;
}

static const char *
scope_name(const struct zone *z)
{
	return z->name != NULL ? z->name : "global";
}

/* The scope a cursor "SCOPE/REST" is in (its index), REST after it; -1 when it names none. */
static long
cursor_scope(struct emulator *emu, size_t nscopes, const char *cursor, const char **rest)
{
	const char *slash = cursor != NULL ? strchr(cursor, '/') : NULL;

	*rest = NULL;
	if (cursor == NULL)
		return 0;
	for (size_t i = 0; slash != NULL && i < nscopes; i++) {
		const char *name = scope_name(scope_at(emu, i));

		if (strlen(name) == (size_t)(slash - cursor) &&
		    strncmp(name, cursor, (size_t)(slash - cursor)) == 0) {
			*rest = slash + 1;
			return (long)i;
		}
	}
	return -1;
}

enum agg_kind { AGG_INSTANCES, AGG_OPERATIONS, AGG_MACHINE_TYPES, AGG_DISKS };

static const struct {
	const char *kind, *what;
} agg_names[] = {
    [AGG_INSTANCES] = {"compute#instanceAggregatedList", "instances"},
    [AGG_OPERATIONS] = {"compute#operationAggregatedList", "operations"},
    [AGG_MACHINE_TYPES] = {"compute#machineTypeAggregatedList", "machineTypes"},
    [AGG_DISKS] = {"compute#diskAggregatedList", "disks"},
};

/* One zone's part of an aggregated page; false when the page filled up within it. */
static bool
agg_zone(struct rq *rq, enum agg_kind k, struct zone *z, const struct page *pg, const char *after,
    size_t *n, char **next, json_t *scope)
{
	json_t *items = json_array();
	bool done = true;

	if (k == AGG_OPERATIONS) {
		size_t last = 0, from = 0;
		int64_t at;

		if (after != NULL && parse_int64(after, 0, INT64_MAX, &at) == 0)
			from = (size_t)at + 1;
		if (!(done = add_operations(items, z, pg, from, n, &last)))
			*next = xasprintf("%s/%zu", scope_name(z), last);
	} else {
		const char *last = NULL;

		if (k == AGG_INSTANCES)
			done = add_instances(NULL, items, z, pg, after, n, &last);
		else
			done = (k == AGG_DISKS ? add_disks : add_machine_types)(
			    rq->emu, items, z, pg, after, n, &last);
		if (!done)
			*next = xasprintf("%s/%s", scope_name(z), last);
	}
	if (json_array_size(items) > 0)
		json_object_set(scope, agg_names[k].what, items);
	json_decref(items);
	return done;
}

static void
aggregated(struct rq *rq, enum agg_kind k)
{
	struct emulator *emu = rq->emu;
	struct page pg;
	const char *after;
	char *next = NULL, *token = NULL, *id, *self;
	size_t n = 0, nscopes = emu->nzones + (k == AGG_OPERATIONS);
	long at;
	json_t *items, *v;

	if (parse_page(rq, &pg) != 0)
		return;
	if (!natural_order(&pg)) {
		compute_bad_field(rq, "orderBy", rq_query(rq, "orderBy"),
		    "Aggregated lists are ordered by name only.");
		page_free(&pg);
		return;
	}
	if ((at = cursor_scope(emu, nscopes, pg.cursor, &after)) < 0) {
		compute_bad_field(
		    rq, "pageToken", rq_query(rq, "pageToken"), "The page token is invalid.");
		page_free(&pg);
		return;
	}
	items = json_object();
	for (size_t i = 0; i < nscopes; i++) {
		struct zone *z = scope_at(emu, i);
		char *key = z->name != NULL ? xasprintf("zones/%s", z->name) : xstrdup("global");
		json_t *scope = json_object();

		if ((long)i >= at && next == NULL)
			agg_zone(rq, k, z, &pg, (long)i == at ? after : NULL, &n, &next, scope);
		if (json_object_size(scope) == 0) {
			json_decref(scope);
			scope = empty_scope(key);
		}
		json_object_set_new(items, key, scope);
		free(key);
	}
	id = xasprintf("projects/%s/aggregated/%s", emu->project, agg_names[k].what);
	self = xasprintf(GCE_LINK "%s", id);
	v = jx_pack("{s:s, s:s, s:o, s:s}", "kind", agg_names[k].kind, "id", id, "items", items,
	    "selfLink", self);
	if (next != NULL) {
		token = page_token(next);
		json_object_set_new(v, "nextPageToken", json_string(token));
	}
	emu_reply_json(rq, 200, v);
	free(id);
	free(self);
	free(next);
	free(token);
	page_free(&pg);
}

void
list_aggregated(struct call *c)
{
	for (size_t k = 0; k < nitems(agg_names); k++) {
		if (strcmp(c->name, agg_names[k].what) == 0) {
			aggregated(c->rq, (enum agg_kind)k);
			return;
		}
	}
	emu_error(c->rq, 404, "notFound", "The requested URL %s was not found on this server.",
	    rq_path(c->rq));
}

/* Resources of a zone kept by name (disks, machine types): a page of them. */
typedef bool add_fn(struct emulator *, json_t *items, struct zone *, const struct page *,
    const char *after, size_t *n, const char **last);

static void
by_name_list(struct call *c, const char *kind, const char *what, add_fn *add)
{
	struct page pg;
	const char *last = NULL;
	json_t *items;
	char *scope, *next = NULL;
	size_t n = 0;

	if (parse_page(c->rq, &pg) != 0)
		return;
	items = json_array();
	if (!natural_order(&pg)) {
		struct page every = whole(&pg);

		add(c->rq->emu, items, c->zone, &every, NULL, &n, &last);
		items = ordered_page(items, &pg, &next);
	} else if (!add(c->rq->emu, items, c->zone, &pg, pg.cursor, &n, &last)) {
		next = page_token(last);
	}
	scope = xasprintf("zones/%s/", c->zone->name);
	emu_reply_json(c->rq, 200, list_json(c->rq, scope, kind, what, items, next));
	free(scope);
	free(next);
	page_free(&pg);
}

void
list_machine_types(struct call *c)
{
	by_name_list(c, "compute#machineTypeList", "machineTypes", add_machine_types);
}

void
list_disks(struct call *c)
{
	by_name_list(c, "compute#diskList", "disks", add_disks);
}
