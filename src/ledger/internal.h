/*
 * What the ledger's files share, and nobody else sees: the open database
 * (ledger.c: the schema, the file, the rows) and the helpers money.c uses.
 * Every helper returns 0 or -errno, with the failure in l->error.
 */
#ifndef SPILLWAY_LEDGER_INTERNAL_H
#define SPILLWAY_LEDGER_INTERNAL_H

#include <sys/types.h>

#include <sqlite3.h>

#include "ledger/ledger.h"

struct ledger {
	sqlite3 *db;
	char *path;
	char *dir;
	dev_t dev; /* the file opened */
	ino_t ino;
	char error[512]; /* the last failure, for people (ledger_error) */
	bool resting;    /* closed by ledger_rest: opened again at its next use */
};

/* SQLite's rc as -errno, said in l->error. */
int lg_failed(struct ledger *, int rc);
int lg_exec(struct ledger *, const char *sql);
int lg_prepare(struct ledger *, const char *sql, sqlite3_stmt **);
/* Step a statement that returns no row, and finalize it. */
int lg_step_done(struct ledger *, sqlite3_stmt *);
/* Roll the transaction back; returns error. */
int lg_rollback(struct ledger *, int error);
int lg_upsert(struct ledger *, const struct vm_record *);
/* A text column into a fixed buffer ("" for NULL). */
void lg_copy_text(char *dst, size_t size, sqlite3_stmt *, int col);

#endif
