/*
 * Offloads (ledger.h): a row each time a component's local copy stopped
 * because a VM served it, with what that gave back, closed when the copy
 * serves again. What decide() learns component sizes from, and what status
 * shows of each VM.
 */
#include <stdlib.h>

#include "ledger/internal.h"
#include "util/xmalloc.h"

int
ledger_offload_stopped(struct ledger *l, const struct offload_record *o)
{
	sqlite3_stmt *st;
	int error;

	if ((error = lg_prepare(l,
	         "INSERT INTO offloads (vm, component, stopped_ms, pss_kb, avail_before_kb,"
	         " avail_after_kb) VALUES (?, ?, ?, ?, ?, ?)",
	         &st)) != 0)
		return error;
	sqlite3_bind_text(st, 1, o->vm, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, o->component, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, o->stopped_ms);
	sqlite3_bind_int64(st, 4, o->pss_kb);
	sqlite3_bind_int64(st, 5, o->avail_before_kb);
	sqlite3_bind_int64(st, 6, o->avail_after_kb);
	return lg_step_done(l, st);
}

int
ledger_offload_back(struct ledger *l, const char *component, int64_t back_ms, int64_t took_ms)
{
	sqlite3_stmt *st;
	int error;

	if ((error = lg_prepare(l,
	         "UPDATE offloads SET back_ms = ?, start_took_ms = ? WHERE component = ?"
	         " AND back_ms = 0",
	         &st)) != 0)
		return error;
	sqlite3_bind_int64(st, 1, back_ms);
	sqlite3_bind_int64(st, 2, took_ms);
	sqlite3_bind_text(st, 3, component, -1, SQLITE_TRANSIENT);
	return lg_step_done(l, st);
}

int
ledger_offloads(struct ledger *l, const char *vm, const char *component, int limit,
    struct offload_record **out, size_t *n)
{
	sqlite3_stmt *st;
	int rc;

	*out = xcalloc((size_t)limit + 1, sizeof **out);
	*n = 0;
	if ((rc = lg_prepare(l,
	         "SELECT vm, component, stopped_ms, pss_kb, avail_before_kb, avail_after_kb,"
	         " back_ms, start_took_ms FROM offloads WHERE (?1 IS NULL OR vm = ?1)"
	         " AND (?2 IS NULL OR component = ?2) ORDER BY id DESC LIMIT ?3",
	         &st)) != 0) {
		free(*out);
		*out = NULL;
		return rc;
	}
	if (vm != NULL)
		sqlite3_bind_text(st, 1, vm, -1, SQLITE_TRANSIENT);
	if (component != NULL)
		sqlite3_bind_text(st, 2, component, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 3, limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct offload_record *o = &(*out)[(*n)++];

		lg_copy_text(o->vm, sizeof o->vm, st, 0);
		lg_copy_text(o->component, sizeof o->component, st, 1);
		o->stopped_ms = sqlite3_column_int64(st, 2);
		o->pss_kb = sqlite3_column_int64(st, 3);
		o->avail_before_kb = sqlite3_column_int64(st, 4);
		o->avail_after_kb = sqlite3_column_int64(st, 5);
		o->back_ms = sqlite3_column_int64(st, 6);
		o->start_took_ms = sqlite3_column_int64(st, 7);
	}
	rc = rc == SQLITE_DONE ? 0 : lg_failed(l, rc);
	sqlite3_finalize(st);
	if (rc != 0) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}
