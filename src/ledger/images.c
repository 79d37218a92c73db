/*
 * Images (ledger.h): a row for each image spillway bakes, from the request
 * (BAKING, written with its VM) to its deletion, with what it holds and what
 * its storage costs. Storage is billed per second from READY to deleted, at
 * the price of the day it was made: what today's spend and the per-day costs
 * add to the VMs' runs (money.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ledger/internal.h"
#include "util/compat.h"
#include "util/xmalloc.h"

/* Google bills storage by the month of 730 hours. */
#define MONTH_MS (730.0 * 3600 * 1000)

static const char *image_states[] = {"BAKING", "READY", "FAILED", "DELETED"};

const char *
image_state_name(enum image_state s)
{
	return (unsigned)s < nitems(image_states) ? image_states[s] : "UNKNOWN";
}

static enum image_state
image_state_parse(const char *s)
{
	for (size_t i = 0; i < nitems(image_states); i++)
		if (strcasecmp(s, image_states[i]) == 0)
			return (enum image_state)i;
	return IMAGE_FAILED;
}

double
image_storage_on(const struct image_record *im, const char *day, int64_t now)
{
	int64_t from = im->ready_ms, to = im->deleted_ms > 0 ? im->deleted_ms : now;
	int64_t start, end;

	if (from <= 0 || to <= from)
		return 0;
	/* The day's local midnights: the day of `to` and back, as cost_day names them. */
	for (int64_t t = to;; t = cost_day_start(t) - 1) {
		char d[DAY_LEN];

		cost_day(t, d);
		if (strcmp(d, day) < 0 || cost_day_end(t) <= from)
			return 0;
		if (strcmp(d, day) != 0)
			continue;
		start = cost_day_start(t) > from ? cost_day_start(t) : from;
		end = cost_day_end(t) < to ? cost_day_end(t) : to;
		return end > start
		    ? im->size_gib * im->per_gib_month * (double)(end - start) / MONTH_MS
		    : 0;
	}
}

const struct image_record *
image_newest(const struct image_record *list, size_t n, const char *family)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].state == IMAGE_READY && strcmp(list[i].family, family) == 0)
			return &list[i];
	return NULL;
}

#define IMAGE_COLUMNS                                                                              \
	"name, family, vm, install_hash, backend, request_id, state, requested_ms, ready_ms, "     \
	"deleted_ms, size_gib, per_gib_month, why"

int
ledger_image_save(struct ledger *l, const struct image_record *im)
{
	sqlite3_stmt *st;
	int error, i = 1;

	if ((error = lg_prepare(l,
	         "INSERT INTO images (" IMAGE_COLUMNS
	         ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
	         "state = excluded.state, ready_ms = excluded.ready_ms, "
	         "deleted_ms = excluded.deleted_ms, size_gib = excluded.size_gib, "
	         "per_gib_month = excluded.per_gib_month, why = excluded.why, "
	         "install_hash = excluded.install_hash",
	         &st)) != 0)
		return error;
	sqlite3_bind_text(st, i++, im->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, im->family, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, im->vm, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, im->install_hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, im->backend, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, im->request_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, image_state_name(im->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, i++, im->requested_ms);
	sqlite3_bind_int64(st, i++, im->ready_ms);
	sqlite3_bind_int64(st, i++, im->deleted_ms);
	sqlite3_bind_double(st, i++, im->size_gib);
	sqlite3_bind_double(st, i++, im->per_gib_month);
	sqlite3_bind_text(st, i++, im->why, -1, SQLITE_TRANSIENT);
	return lg_step_done(l, st);
}

static void
read_image(sqlite3_stmt *st, struct image_record *im)
{
	char state[16];
	int i = 0;

	memset(im, 0, sizeof *im);
	lg_copy_text(im->name, sizeof im->name, st, i++);
	lg_copy_text(im->family, sizeof im->family, st, i++);
	lg_copy_text(im->vm, sizeof im->vm, st, i++);
	lg_copy_text(im->install_hash, sizeof im->install_hash, st, i++);
	lg_copy_text(im->backend, sizeof im->backend, st, i++);
	lg_copy_text(im->request_id, sizeof im->request_id, st, i++);
	lg_copy_text(state, sizeof state, st, i++);
	im->state = image_state_parse(state);
	im->requested_ms = sqlite3_column_int64(st, i++);
	im->ready_ms = sqlite3_column_int64(st, i++);
	im->deleted_ms = sqlite3_column_int64(st, i++);
	im->size_gib = sqlite3_column_double(st, i++);
	im->per_gib_month = sqlite3_column_double(st, i++);
	lg_copy_text(im->why, sizeof im->why, st, i++);
}

/* The rows of a query with at most one text argument; caller frees *list. */
static int
query(struct ledger *l, const char *sql, const char *arg, struct image_record **list, size_t *n)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int rc;

	*list = NULL;
	*n = 0;
	if ((rc = lg_prepare(l, sql, &st)) != 0)
		return rc;
	if (arg != NULL)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap)
			*list = xreallocarray(*list, cap = cap ? 2 * cap : 8, sizeof **list);
		read_image(st, &(*list)[(*n)++]);
	}
	rc = rc == SQLITE_DONE ? 0 : lg_failed(l, rc);
	sqlite3_finalize(st);
	if (rc != 0) {
		free(*list);
		*list = NULL;
		*n = 0;
	}
	return rc;
}

static int
one(struct ledger *l, const char *sql, const char *arg, struct image_record *im)
{
	struct image_record *list;
	size_t n;
	int error = query(l, sql, arg, &list, &n);

	if (error == 0 && n == 0)
		error = -ENOENT;
	if (error == 0)
		*im = list[0];
	free(list);
	return error;
}

int
ledger_image_get(struct ledger *l, const char *name, struct image_record *im)
{
	return one(l, "SELECT " IMAGE_COLUMNS " FROM images WHERE name = ?", name, im);
}

int
ledger_image_of(struct ledger *l, const char *vm, struct image_record *im)
{
	return one(l, "SELECT " IMAGE_COLUMNS " FROM images WHERE vm = ?", vm, im);
}

int
ledger_images(struct ledger *l, bool all, struct image_record **list, size_t *n)
{
	return query(l,
	    all ? "SELECT " IMAGE_COLUMNS " FROM images ORDER BY requested_ms DESC, name DESC"
	        : "SELECT " IMAGE_COLUMNS " FROM images WHERE state != 'DELETED'"
	          " ORDER BY requested_ms DESC, name DESC",
	    NULL, list, n);
}
