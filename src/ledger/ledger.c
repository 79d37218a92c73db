/*
 * The ledger (ledger.h): the SQLite file (made 0600 in a 0700 directory,
 * migrated, checked, opened again when it is replaced under us), the VMs'
 * rows and their events. The money it keeps is money.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ledger/internal.h"
#include "util/buf.h"
#include "util/compat.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define BUSY_MS        10000
#define WAL_PAGES      "32"    /* 128 KiB of 4 KiB pages */
#define WAL_KEEP       "65536" /* bytes */
#define CACHE_KIB      "256"

static const char *state_names[] = {"REQUESTED", "CREATING", "PROVISIONING", "BOOTING", "READY",
    "UNHEALTHY", "DRAINING", "IMAGING", "TERMINATING", "TERMINATED", "FAILED", "PREEMPTED",
    "ORPHANED", "POOLING", "POOLED", "STARTING"};
_Static_assert(sizeof state_names / sizeof state_names[0] == VM_STATES, "a name for every state");

const char *
vm_state_name(enum vm_state s)
{
	return (unsigned)s < VM_STATES ? state_names[s] : "UNKNOWN";
}

int
vm_state_parse(const char *s, enum vm_state *out)
{
	for (int i = 0; i < VM_STATES; i++) {
		if (strcasecmp(s, state_names[i]) == 0) {
			*out = (enum vm_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool
vm_state_alive(enum vm_state s)
{
	return s != VM_TERMINATED && s != VM_FAILED && s != VM_PREEMPTED;
}

/* --- schema --- */

static const char *migrations[] = {
    /* 1: the first schema */
    "CREATE TABLE vms ("
    " name TEXT PRIMARY KEY, zone TEXT NOT NULL, request_id TEXT NOT NULL,"
    " delete_request_id TEXT NOT NULL DEFAULT '', state TEXT NOT NULL,"
    " machine_type TEXT NOT NULL, spot INTEGER NOT NULL, per_hour REAL NOT NULL,"
    " planned_run_s INTEGER NOT NULL, reserved REAL NOT NULL, components TEXT NOT NULL,"
    " reason TEXT NOT NULL, confidence REAL NOT NULL, op TEXT NOT NULL DEFAULT '',"
    " nat_ip TEXT NOT NULL DEFAULT '', requested_ms INTEGER NOT NULL,"
    " started_ms INTEGER NOT NULL DEFAULT 0, ready_ms INTEGER NOT NULL DEFAULT 0,"
    " ended_ms INTEGER NOT NULL DEFAULT 0, state_ms INTEGER NOT NULL,"
    " last_activity_ms INTEGER NOT NULL DEFAULT 0, health_failures INTEGER NOT NULL DEFAULT 0,"
    " unhealthy_ms INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,"
    " cost_closed INTEGER NOT NULL DEFAULT 0, end_reason TEXT NOT NULL DEFAULT '',"
    " zones_tried INTEGER NOT NULL DEFAULT 1);"
    "CREATE TABLE events (id INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, vm TEXT NOT NULL,"
    " kind TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE INDEX events_vm ON events (vm, t_ms);"
    "CREATE TABLE costs (vm TEXT NOT NULL, day TEXT NOT NULL, amount REAL NOT NULL,"
    " PRIMARY KEY (vm, day));"
    "CREATE TABLE prices (t_ms INTEGER NOT NULL, machine_type TEXT NOT NULL,"
    " region TEXT NOT NULL, spot INTEGER NOT NULL, per_hour REAL NOT NULL,"
    " effective TEXT NOT NULL, source TEXT NOT NULL);"
    "CREATE TABLE budget_days (day TEXT PRIMARY KEY, budget REAL NOT NULL);",
    /* 2: the instance metadata a program asked for (a JSON object) */
    "ALTER TABLE vms ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';",
    /* 3: a reservation reads the alive VMs and today's costs, not the whole history */
    "CREATE INDEX vms_state ON vms (state); CREATE INDEX costs_day ON costs (day);",
    /*
     * 4: no price, reservation, cost or budget below $0 (nor a price above
     * PRICE_MAX_PER_HOUR), ever: the tables again with CHECKs. What an older
     * spillway stored below $0 (a broken catalog) is kept at $0, and said.
     */
    "INSERT INTO events (t_ms, vm, kind, detail) SELECT CAST(strftime('%s', 'now') AS INTEGER)"
    " * 1000, name, 'repair', 'a price, reservation or cost below $0 (from a broken price "
    "catalog) is kept as $0' FROM vms WHERE per_hour < 0 OR reserved < 0 OR cost < 0"
    " OR per_hour > 1000;"
    "CREATE TABLE vms4 ("
    " name TEXT PRIMARY KEY, zone TEXT NOT NULL, request_id TEXT NOT NULL,"
    " delete_request_id TEXT NOT NULL DEFAULT '', state TEXT NOT NULL,"
    " machine_type TEXT NOT NULL, spot INTEGER NOT NULL,"
    " per_hour REAL NOT NULL CHECK (per_hour >= 0 AND per_hour <= 1000),"
    " planned_run_s INTEGER NOT NULL CHECK (planned_run_s >= 0),"
    " reserved REAL NOT NULL CHECK (reserved >= 0), components TEXT NOT NULL,"
    " reason TEXT NOT NULL, confidence REAL NOT NULL, op TEXT NOT NULL DEFAULT '',"
    " nat_ip TEXT NOT NULL DEFAULT '', requested_ms INTEGER NOT NULL,"
    " started_ms INTEGER NOT NULL DEFAULT 0, ready_ms INTEGER NOT NULL DEFAULT 0,"
    " ended_ms INTEGER NOT NULL DEFAULT 0, state_ms INTEGER NOT NULL,"
    " last_activity_ms INTEGER NOT NULL DEFAULT 0, health_failures INTEGER NOT NULL DEFAULT 0,"
    " unhealthy_ms INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0 CHECK (cost >= 0),"
    " cost_closed INTEGER NOT NULL DEFAULT 0, end_reason TEXT NOT NULL DEFAULT '',"
    " zones_tried INTEGER NOT NULL DEFAULT 1, metadata TEXT NOT NULL DEFAULT '{}');"
    "INSERT INTO vms4 SELECT name, zone, request_id, delete_request_id, state, machine_type,"
    " spot, MIN(MAX(per_hour, 0), 1000), MAX(planned_run_s, 0), MAX(reserved, 0), components,"
    " reason, confidence, op, nat_ip, requested_ms, started_ms, ready_ms, ended_ms, state_ms,"
    " last_activity_ms, health_failures, unhealthy_ms, MAX(cost, 0), cost_closed, end_reason,"
    " zones_tried, metadata FROM vms;"
    "DROP TABLE vms; ALTER TABLE vms4 RENAME TO vms; CREATE INDEX vms_state ON vms (state);"
    "CREATE TABLE costs4 (vm TEXT NOT NULL, day TEXT NOT NULL,"
    " amount REAL NOT NULL CHECK (amount >= 0), PRIMARY KEY (vm, day));"
    "INSERT INTO costs4 SELECT vm, day, MAX(amount, 0) FROM costs;"
    "DROP TABLE costs; ALTER TABLE costs4 RENAME TO costs; CREATE INDEX costs_day ON costs (day);"
    "CREATE TABLE prices4 (t_ms INTEGER NOT NULL, machine_type TEXT NOT NULL,"
    " region TEXT NOT NULL, spot INTEGER NOT NULL,"
    " per_hour REAL NOT NULL CHECK (per_hour > 0 AND per_hour <= 1000),"
    " effective TEXT NOT NULL, source TEXT NOT NULL);"
    "INSERT INTO prices4 SELECT * FROM prices WHERE per_hour > 0 AND per_hour <= 1000;"
    "DROP TABLE prices; ALTER TABLE prices4 RENAME TO prices;"
    "CREATE TABLE budget_days4 (day TEXT PRIMARY KEY, budget REAL NOT NULL CHECK (budget >= 0));"
    "INSERT INTO budget_days4 SELECT day, MAX(budget, 0) FROM budget_days;"
    "DROP TABLE budget_days; ALTER TABLE budget_days4 RENAME TO budget_days;",
    /* 5: VMs past ledger.retention_days, summarised per day: their money and their outcomes */
    "CREATE TABLE archive (day TEXT PRIMARY KEY,"
    " amount REAL NOT NULL DEFAULT 0 CHECK (amount >= 0),"
    " terminated INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
    " preempted INTEGER NOT NULL DEFAULT 0);",
    /* 6: the key each VM's agent published, pinned (a public key's hash: no secret) */
    "ALTER TABLE vms ADD COLUMN tls_pin TEXT NOT NULL DEFAULT '';",
    /* 7: each time a component's local copy was stopped for a VM: what it gave back */
    "CREATE TABLE offloads (id INTEGER PRIMARY KEY, vm TEXT NOT NULL, component TEXT NOT NULL,"
    " stopped_ms INTEGER NOT NULL, pss_kb INTEGER NOT NULL, avail_before_kb INTEGER NOT NULL,"
    " avail_after_kb INTEGER NOT NULL, back_ms INTEGER NOT NULL DEFAULT 0,"
    " start_took_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX offloads_component ON offloads (component, id);"
    "CREATE INDEX offloads_vm ON offloads (vm);",
    /* 8: VMs that bake an image, and the images */
    "ALTER TABLE vms ADD COLUMN purpose TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE images (name TEXT PRIMARY KEY, family TEXT NOT NULL, vm TEXT NOT NULL,"
    " install_hash TEXT NOT NULL, backend TEXT NOT NULL, request_id TEXT NOT NULL,"
    " state TEXT NOT NULL, requested_ms INTEGER NOT NULL, ready_ms INTEGER NOT NULL DEFAULT 0,"
    " deleted_ms INTEGER NOT NULL DEFAULT 0,"
    " size_gib REAL NOT NULL DEFAULT 0 CHECK (size_gib >= 0),"
    " per_gib_month REAL NOT NULL DEFAULT 0 CHECK (per_gib_month >= 0),"
    " why TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX images_vm ON images (vm);",
    /* 9: the warm pool's VMs: how they wait, what waiting costs, what is billed already */
    "ALTER TABLE vms ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE vms ADD COLUMN pool_since_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE vms ADD COLUMN wait_per_hour REAL NOT NULL DEFAULT 0"
    " CHECK (wait_per_hour >= 0 AND wait_per_hour <= 1000);"
    "ALTER TABLE vms ADD COLUMN billed_ms INTEGER NOT NULL DEFAULT 0;",
};

#define SCHEMA_VERSION ((int)nitems(migrations))

/*
 * A failed SQLite call: its errno (-ENOSPC for a full disk, -EUCLEAN for a
 * damaged file, -EROFS, -ETIMEDOUT for a lock held too long, -EIO else)
 * and, in l->error, what it means to the user.
 */
int
lg_failed(struct ledger *l, int rc)
{
	const char *msg = sqlite3_errmsg(l->db);

	switch (rc & 0xff) {
	case SQLITE_FULL:
		snprintf(l->error, sizeof l->error,
		    "the state directory '%s' is full: the ledger cannot grow (%s)", l->dir, msg);
		rc = -ENOSPC;
		break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		snprintf(l->error, sizeof l->error, "the ledger '%s' is damaged: %s", l->path, msg);
		rc = -EUCLEAN;
		break;
	case SQLITE_READONLY:
		snprintf(l->error, sizeof l->error, "the ledger '%s' cannot be written: %s",
		    l->path, msg);
		rc = -EROFS;
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		snprintf(l->error, sizeof l->error,
		    "the ledger '%s' stayed locked by another process for %d s", l->path,
		    BUSY_MS / 1000);
		rc = -ETIMEDOUT;
		break;
	default:
		snprintf(l->error, sizeof l->error, "the ledger '%s' failed: %s", l->path, msg);
		rc = -EIO;
		break;
	}
	/* The caller says it, once, where it matters (records.c, the views): here, debug. */
	log_debug("%s", l->error);
	return rc;
}

const char *
ledger_error(const struct ledger *l)
{
	return l->error[0] != '\0' ? l->error : "no error";
}

static int connect_file(struct ledger *, char **cause);

/* The file at the ledger's path is the one it opened. */
static bool
same_file(const struct ledger *l)
{
	struct stat st;

	return stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino;
}

/*
 * A resting ledger (ledger_rest) opens its file again at its next use, if it
 * is still the one it had; one deleted or replaced meanwhile is left to
 * ledger_refresh, which tells its caller to write what it knows into the new one.
 */
static void
wake_up(struct ledger *l)
{
	char *cause = NULL;

	if (!l->resting || !same_file(l))
		return;
	l->resting = false;
	if (connect_file(l, &cause) != 0) {
		snprintf(l->error, sizeof l->error, "%s", cause);
		sqlite3_close(l->db);
		l->db = NULL;
	}
	free(cause);
}

/* A ledger whose file could not be opened again (ledger_refresh) answers every call so. */
static int
closed(struct ledger *l)
{
	if (l->error[0] == '\0')
		snprintf(l->error, sizeof l->error, "the ledger '%s' is not open", l->path);
	return -EIO;
}

int
lg_exec(struct ledger *l, const char *sql)
{
	int rc;

	wake_up(l);
	if (l->db == NULL)
		return closed(l);
	rc = sqlite3_exec(l->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : lg_failed(l, rc);
}

static int
migrate(struct ledger *l, char **cause)
{
	sqlite3_stmt *st;
	int version = 0;

	if (sqlite3_prepare_v2(l->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > SCHEMA_VERSION) {
		*cause =
		    xasprintf("ledger '%s' has schema %d, newer than this spillway knows (%d): "
		              "use a newer spillway",
		        l->path, version, SCHEMA_VERSION);
		return -EINVAL;
	}
	for (; version < SCHEMA_VERSION; version++) {
		char *sql = xasprintf("BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;",
		    migrations[version], version + 1);
		int error = lg_exec(l, sql);

		free(sql);
		if (error != 0) {
			*cause = xasprintf("cannot migrate ledger '%s' to schema %d: %s", l->path,
			    version + 1, l->error);
			sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
			return error;
		}
	}
	return 0;
}

/* What to do with a damaged ledger, for every message that finds one. */
static char *
damaged(const struct ledger *l, const char *what)
{
	return xasprintf("the ledger '%s' is damaged (%s): move it aside (mv '%s' '%s.damaged') "
	                 "and start again; spillway then finds its VMs in the cloud by their "
	                 "label (daemon.orphan_policy decides what becomes of them), but today's "
	                 "spend starts again from $0",
	    l->path, what, l->path, l->path);
}

/* Open the file at l->path (creating it 0600), as WAL, migrated. */
static int
connect_file(struct ledger *l, char **cause)
{
	struct stat st;
	int fd, error;

	/* Created 0600 by us, not by SQLite under whatever umask. */
	if ((fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		error = -errno;
		*cause = xasprintf("cannot open the ledger '%s': %s", l->path, strerror(errno));
		return error;
	}
	/* Which file it is: one deleted or put in its place shows (ledger_refresh). */
	if (fstat(fd, &st) == 0) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	close(fd);
	if (sqlite3_open_v2(l->path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		*cause =
		    xasprintf("cannot open the ledger '%s': %s", l->path, sqlite3_errmsg(l->db));
		return -EIO;
	}
	sqlite3_busy_timeout(l->db, BUSY_MS);
	/*
	 * A daemon that runs for months: SQLite's memory bounded, whatever the
	 * ledger's size (its page cache at CACHE_KIB, a small lookaside).
	 */
	sqlite3_db_config(l->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 128, 32);
	/*
	 * The WAL is bounded: checkpointed every WAL_PAGES pages (and at each pass,
	 * ledger_checkpoint) and cut back to WAL_KEEP bytes after, so a small or
	 * full state directory is not eaten by it.
	 */
	if ((error = lg_exec(l,
	         "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
	         "PRAGMA cache_size = -" CACHE_KIB ";"
	         "PRAGMA journal_size_limit = " WAL_KEEP ";"
	         "PRAGMA wal_autocheckpoint = " WAL_PAGES ";")) != 0) {
		*cause = error == -EUCLEAN
		    ? damaged(l, sqlite3_errmsg(l->db))
		    : xasprintf("the ledger '%s' cannot be used: %s", l->path, l->error);
		return error;
	}
	return migrate(l, cause);
}

int
ledger_open(const char *dir, struct ledger **out, char **cause)
{
	struct ledger *l = xcalloc(1, sizeof *l);
	int error;

	if ((error = make_dirs(dir, 0700)) != 0) {
		*cause =
		    xasprintf("cannot create the state directory '%s': %s", dir, strerror(-error));
		free(l);
		return error;
	}
	l->dir = xstrdup(dir);
	l->path = xasprintf("%s/ledger.db", dir);
	if ((error = connect_file(l, cause)) != 0) {
		ledger_close(l);
		return error;
	}
	*out = l;
	return 0;
}

int
ledger_refresh(struct ledger *l, bool *reopened, char **cause)
{
	int error;

	*reopened = false;
	if (same_file(l))
		return 0;
	/*
	 * Deleted (or another file put there) under us: what we write would go to
	 * a file nobody finds. Closing lets SQLite fold and remove its WAL; then
	 * the file at the path is opened, or a new one made.
	 */
	sqlite3_close(l->db);
	l->db = NULL;
	l->resting = false;
	if ((error = make_dirs(l->dir, 0700)) != 0 || (error = connect_file(l, cause)) != 0) {
		if (*cause == NULL)
			*cause = xasprintf("cannot make the state directory '%s' again: %s", l->dir,
			    strerror(-error));
		snprintf(l->error, sizeof l->error, "%s", *cause);
		sqlite3_close(l->db);
		l->db = NULL;
		return error;
	}
	*reopened = true;
	return 0;
}

int
ledger_check(struct ledger *l, char **cause)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *first = NULL;
	int rc;

	wake_up(l);
	rc = l->db != NULL ? sqlite3_prepare_v2(l->db, "PRAGMA quick_check", -1, &st, NULL)
	                   : SQLITE_MISUSE;

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		first = sqlite3_column_text(st, 0);
	if (first != NULL && strcmp((const char *)first, "ok") == 0) {
		sqlite3_finalize(st);
		return 0;
	}
	{
		const char *text = first != NULL ? (const char *)first
		    : l->db != NULL              ? sqlite3_errmsg(l->db)
		                                 : l->error;
		char *what = xasprintf("integrity check: %.*s", (int)strcspn(text, "\n"), text);

		*cause = damaged(l, what);
		free(what);
	}
	sqlite3_finalize(st);
	return -EUCLEAN;
}

int
ledger_checkpoint(struct ledger *l)
{
	int rc;

	if (l->resting)
		return 0; /* closing folded the WAL into the file */
	if (l->db == NULL)
		return closed(l);
	rc = sqlite3_wal_checkpoint_v2(l->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);

	/* A reader in the way (a CLI reading) is no error: the next one gets there. */
	return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : lg_failed(l, rc);
}

void
ledger_rest(struct ledger *l)
{
	/* Not in a transaction, nor with a statement open: then it stays open. */
	if (l->db == NULL || !sqlite3_get_autocommit(l->db) || sqlite3_close(l->db) != SQLITE_OK)
		return;
	l->db = NULL;
	l->resting = true;
}

void
ledger_close(struct ledger *l)
{
	if (l == NULL)
		return;
	sqlite3_close(l->db);
	free(l->path);
	free(l->dir);
	free(l);
}

const char *
ledger_path(const struct ledger *l)
{
	return l->path;
}

/* --- rows --- */

#define VM_COLUMNS                                                                                 \
	"name, zone, request_id, delete_request_id, state, machine_type, spot, per_hour, "         \
	"planned_run_s, reserved, components, reason, confidence, op, nat_ip, requested_ms, "      \
	"started_ms, ready_ms, ended_ms, state_ms, last_activity_ms, health_failures, "            \
	"unhealthy_ms, cost, end_reason, zones_tried, metadata, tls_pin, purpose, suspended, "     \
	"pool_since_ms, wait_per_hour, billed_ms"

static void
bind_vm(sqlite3_stmt *st, const struct vm_record *v)
{
	int i = 1;

	sqlite3_bind_text(st, i++, v->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, v->zone, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, v->request_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, v->delete_request_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, vm_state_name(v->state), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i++, v->machine_type, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, i++, v->spot);
	sqlite3_bind_double(st, i++, v->per_hour);
	sqlite3_bind_int64(st, i++, v->planned_run_s);
	sqlite3_bind_double(st, i++, v->reserved);
	sqlite3_bind_text(st, i++, v->components, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, v->reason, -1, SQLITE_TRANSIENT);
	sqlite3_bind_double(st, i++, v->confidence);
	sqlite3_bind_text(st, i++, v->op, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, v->nat_ip, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, i++, v->requested_ms);
	sqlite3_bind_int64(st, i++, v->started_ms);
	sqlite3_bind_int64(st, i++, v->ready_ms);
	sqlite3_bind_int64(st, i++, v->ended_ms);
	sqlite3_bind_int64(st, i++, v->state_ms);
	sqlite3_bind_int64(st, i++, v->last_activity_ms);
	sqlite3_bind_int(st, i++, v->health_failures);
	sqlite3_bind_int64(st, i++, v->unhealthy_ms);
	sqlite3_bind_double(st, i++, v->cost);
	sqlite3_bind_text(st, i++, v->end_reason, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, i++, v->zones_tried);
	sqlite3_bind_text(st, i++, v->metadata[0] ? v->metadata : "{}", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, v->tls_pin, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, i++, v->purpose, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, i++, v->suspended);
	sqlite3_bind_int64(st, i++, v->pool_since_ms);
	sqlite3_bind_double(st, i++, v->wait_per_hour);
	sqlite3_bind_int64(st, i++, v->billed_ms);
}

void
lg_copy_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	snprintf(dst, size, "%s", s != NULL ? (const char *)s : "");
}

static void
read_vm(sqlite3_stmt *st, struct vm_record *v)
{
	int i = 0;
	char state[32];

	memset(v, 0, sizeof *v);
	lg_copy_text(v->name, sizeof v->name, st, i++);
	lg_copy_text(v->zone, sizeof v->zone, st, i++);
	lg_copy_text(v->request_id, sizeof v->request_id, st, i++);
	lg_copy_text(v->delete_request_id, sizeof v->delete_request_id, st, i++);
	lg_copy_text(state, sizeof state, st, i++);
	vm_state_parse(state, &v->state);
	lg_copy_text(v->machine_type, sizeof v->machine_type, st, i++);
	v->spot = sqlite3_column_int(st, i++) != 0;
	v->per_hour = sqlite3_column_double(st, i++);
	v->planned_run_s = sqlite3_column_int64(st, i++);
	v->reserved = sqlite3_column_double(st, i++);
	lg_copy_text(v->components, sizeof v->components, st, i++);
	lg_copy_text(v->reason, sizeof v->reason, st, i++);
	v->confidence = sqlite3_column_double(st, i++);
	lg_copy_text(v->op, sizeof v->op, st, i++);
	lg_copy_text(v->nat_ip, sizeof v->nat_ip, st, i++);
	v->requested_ms = sqlite3_column_int64(st, i++);
	v->started_ms = sqlite3_column_int64(st, i++);
	v->ready_ms = sqlite3_column_int64(st, i++);
	v->ended_ms = sqlite3_column_int64(st, i++);
	v->state_ms = sqlite3_column_int64(st, i++);
	v->last_activity_ms = sqlite3_column_int64(st, i++);
	v->health_failures = sqlite3_column_int(st, i++);
	v->unhealthy_ms = sqlite3_column_int64(st, i++);
	v->cost = sqlite3_column_double(st, i++);
	lg_copy_text(v->end_reason, sizeof v->end_reason, st, i++);
	v->zones_tried = sqlite3_column_int(st, i++);
	lg_copy_text(v->metadata, sizeof v->metadata, st, i++);
	lg_copy_text(v->tls_pin, sizeof v->tls_pin, st, i++);
	lg_copy_text(v->purpose, sizeof v->purpose, st, i++);
	v->suspended = sqlite3_column_int(st, i++) != 0;
	v->pool_since_ms = sqlite3_column_int64(st, i++);
	v->wait_per_hour = sqlite3_column_double(st, i++);
	v->billed_ms = sqlite3_column_int64(st, i++);
}

int
lg_step_done(struct ledger *l, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		rc = lg_failed(l, rc);
		sqlite3_finalize(st);
		return rc;
	}
	sqlite3_finalize(st);
	return 0;
}

int
lg_prepare(struct ledger *l, const char *sql, sqlite3_stmt **st)
{
	int rc;

	wake_up(l);
	if (l->db == NULL)
		return closed(l);
	rc = sqlite3_prepare_v2(l->db, sql, -1, st, NULL);

	return rc == SQLITE_OK ? 0 : lg_failed(l, rc);
}

/* A transaction that failed: undone, its error kept (ROLLBACK's own says nothing new). */
int
lg_rollback(struct ledger *l, int error)
{
	if (l->db != NULL)
		sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
	return error;
}

int
ledger_event(struct ledger *l, const char *vm, const char *kind, const char *detail, int64_t now)
{
	sqlite3_stmt *st;
	int error;

	if ((error = lg_prepare(
	         l, "INSERT INTO events (t_ms, vm, kind, detail) VALUES (?, ?, ?, ?)", &st)) != 0)
		return error;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, vm, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, detail != NULL ? detail : "", -1, SQLITE_TRANSIENT);
	return lg_step_done(l, st);
}

int
lg_upsert(struct ledger *l, const struct vm_record *v)
{
	sqlite3_stmt *st;
	int error;

	if ((error = lg_prepare(l,
	         "INSERT INTO vms (" VM_COLUMNS
	         ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
	         "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
	         "zone = excluded.zone, request_id = excluded.request_id, "
	         "delete_request_id = excluded.delete_request_id, state = excluded.state, "
	         "machine_type = excluded.machine_type, spot = excluded.spot, "
	         "per_hour = excluded.per_hour, planned_run_s = excluded.planned_run_s, "
	         "reserved = excluded.reserved, components = excluded.components, "
	         "reason = excluded.reason, confidence = excluded.confidence, op = excluded.op, "
	         "nat_ip = excluded.nat_ip, requested_ms = excluded.requested_ms, "
	         "started_ms = excluded.started_ms, ready_ms = excluded.ready_ms, "
	         "ended_ms = excluded.ended_ms, state_ms = excluded.state_ms, "
	         "last_activity_ms = excluded.last_activity_ms, "
	         "health_failures = excluded.health_failures, unhealthy_ms = excluded.unhealthy_ms, "
	         "end_reason = excluded.end_reason, zones_tried = excluded.zones_tried, "
	         "metadata = excluded.metadata, tls_pin = excluded.tls_pin, "
	         "purpose = excluded.purpose, suspended = excluded.suspended, "
	         "pool_since_ms = excluded.pool_since_ms, wait_per_hour = excluded.wait_per_hour",
	         &st)) != 0)
		return error;
	bind_vm(st, v);
	return lg_step_done(l, st);
}

int
ledger_save(struct ledger *l, const struct vm_record *v, int from, const char *reason, int64_t now)
{
	int error;

	if ((error = lg_exec(l, "BEGIN IMMEDIATE")) != 0)
		return error;
	if ((error = lg_upsert(l, v)) == 0 && from != (int)v->state) {
		char *detail = xasprintf("%s -> %s%s%s", from >= 0 ? vm_state_name(from) : "NEW",
		    vm_state_name(v->state), reason != NULL ? ": " : "",
		    reason != NULL ? reason : "");

		error = ledger_event(l, v->name, "state", detail, now);
		free(detail);
	}
	if (error == 0)
		error = lg_exec(l, "COMMIT");
	return error != 0 ? lg_rollback(l, error) : 0;
}

int
ledger_get(struct ledger *l, const char *name, struct vm_record *v)
{
	sqlite3_stmt *st;
	int rc;

	if ((rc = lg_prepare(l, "SELECT " VM_COLUMNS " FROM vms WHERE name = ?", &st)) != 0)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		read_vm(st, v);
	rc = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : lg_failed(l, rc);
	sqlite3_finalize(st);
	return rc;
}

int
ledger_list(struct ledger *l, const enum vm_state *states, size_t nstates, struct vm_record **list,
    size_t *n)
{
	enum vm_state alive[VM_STATES];
	struct buf sql = BUF_INIT(4096);
	sqlite3_stmt *st;
	size_t cap = 16;
	int rc;

	*list = NULL;
	*n = 0;
	if (states == NULL) {
		nstates = 0;
		for (int s = 0; s < VM_STATES; s++)
			if (vm_state_alive((enum vm_state)s))
				alive[nstates++] = (enum vm_state)s;
		states = alive;
	}
	/* IN, by the index on state: the history can be long, the alive are few. */
	buf_addstr(&sql, "SELECT " VM_COLUMNS " FROM vms WHERE state IN (''");
	for (size_t i = 0; i < nstates; i++)
		buf_printf(&sql, ", '%s'", vm_state_name(states[i]));
	buf_addstr(&sql, ") ORDER BY requested_ms, name");
	rc = lg_prepare(l, buf_str(&sql), &st);
	buf_release(&sql);
	if (rc != 0)
		return rc;
	*list = xcalloc(cap, sizeof **list);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct vm_record v;

		read_vm(st, &v);
		if (*n == cap) {
			cap *= 2;
			*list = xreallocarray(*list, cap, sizeof **list);
		}
		(*list)[(*n)++] = v;
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

int
ledger_events(struct ledger *l, const char *vm, int limit, struct ledger_event **out, size_t *n)
{
	sqlite3_stmt *st;
	size_t cap = (size_t)limit;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = lg_prepare(l,
	         vm != NULL
	             ? "SELECT t_ms, vm, kind, detail FROM events WHERE vm = ? ORDER BY id DESC "
	               "LIMIT ?"
	             : "SELECT t_ms, vm, kind, detail FROM events WHERE ? IS NULL ORDER BY id "
	               "DESC LIMIT ?",
	         &st)) != 0)
		return rc;
	if (vm != NULL)
		sqlite3_bind_text(st, 1, vm, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 1);
	sqlite3_bind_int(st, 2, limit);
	*out = xcalloc(cap + 1, sizeof **out);
	while (*n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct ledger_event *e = &(*out)[(*n)++];

		e->t_ms = sqlite3_column_int64(st, 0);
		lg_copy_text(e->vm, sizeof e->vm, st, 1);
		lg_copy_text(e->kind, sizeof e->kind, st, 2);
		lg_copy_text(e->detail, sizeof e->detail, st, 3);
	}
	rc = rc == SQLITE_DONE || rc == SQLITE_ROW || *n == cap ? 0 : lg_failed(l, rc);
	sqlite3_finalize(st);
	if (rc != 0) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}
