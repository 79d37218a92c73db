#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ledger/ledger.h"
#include "util/buf.h"
#include "util/compat.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define SCHEMA_VERSION 3
#define BUSY_MS        10000
#define MAX_DAYS       64

struct ledger {
	sqlite3 *db;
	char *path;
};

static const char *state_names[VM_STATES] = {"REQUESTED", "CREATING", "PROVISIONING", "BOOTING",
    "READY", "UNHEALTHY", "TERMINATING", "TERMINATED", "FAILED", "PREEMPTED", "ORPHANED"};

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
};

static int
exec(struct ledger *l, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(l->db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_warnx("ledger %s: %s", l->path, err != NULL ? err : sqlite3_errmsg(l->db));
		sqlite3_free(err);
		return -EIO;
	}
	return 0;
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
		int error = exec(l, sql);

		free(sql);
		if (error != 0) {
			exec(l, "ROLLBACK");
			*cause = xasprintf("cannot migrate ledger '%s' to schema %d: %s", l->path,
			    version + 1, sqlite3_errmsg(l->db));
			return error;
		}
	}
	return 0;
}

int
ledger_open(const char *dir, struct ledger **out, char **cause)
{
	struct ledger *l = xcalloc(1, sizeof *l);
	int fd, error;

	if ((error = make_dirs(dir, 0700)) != 0) {
		*cause =
		    xasprintf("cannot create the state directory '%s': %s", dir, strerror(-error));
		free(l);
		return error;
	}
	l->path = xasprintf("%s/ledger.db", dir);
	/* Created 0600 by us, not by SQLite under whatever umask. */
	if ((fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		error = -errno;
		*cause = xasprintf("cannot open the ledger '%s': %s", l->path, strerror(errno));
		goto fail;
	}
	close(fd);
	if (sqlite3_open_v2(l->path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		*cause =
		    xasprintf("cannot open the ledger '%s': %s", l->path, sqlite3_errmsg(l->db));
		error = -EIO;
		goto fail;
	}
	sqlite3_busy_timeout(l->db, BUSY_MS);
	if ((error = exec(l, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")) != 0) {
		*cause = xasprintf("ledger '%s' is not a usable SQLite database: %s", l->path,
		    sqlite3_errmsg(l->db));
		goto fail;
	}
	if ((error = migrate(l, cause)) != 0)
		goto fail;
	*out = l;
	return 0;
fail:
	ledger_close(l);
	return error;
}

void
ledger_close(struct ledger *l)
{
	if (l == NULL)
		return;
	sqlite3_close(l->db);
	free(l->path);
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
	"unhealthy_ms, cost, end_reason, zones_tried, metadata"

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
}

static void
copy_text(char *dst, size_t size, sqlite3_stmt *st, int col)
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
	copy_text(v->name, sizeof v->name, st, i++);
	copy_text(v->zone, sizeof v->zone, st, i++);
	copy_text(v->request_id, sizeof v->request_id, st, i++);
	copy_text(v->delete_request_id, sizeof v->delete_request_id, st, i++);
	copy_text(state, sizeof state, st, i++);
	vm_state_parse(state, &v->state);
	copy_text(v->machine_type, sizeof v->machine_type, st, i++);
	v->spot = sqlite3_column_int(st, i++) != 0;
	v->per_hour = sqlite3_column_double(st, i++);
	v->planned_run_s = sqlite3_column_int64(st, i++);
	v->reserved = sqlite3_column_double(st, i++);
	copy_text(v->components, sizeof v->components, st, i++);
	copy_text(v->reason, sizeof v->reason, st, i++);
	v->confidence = sqlite3_column_double(st, i++);
	copy_text(v->op, sizeof v->op, st, i++);
	copy_text(v->nat_ip, sizeof v->nat_ip, st, i++);
	v->requested_ms = sqlite3_column_int64(st, i++);
	v->started_ms = sqlite3_column_int64(st, i++);
	v->ready_ms = sqlite3_column_int64(st, i++);
	v->ended_ms = sqlite3_column_int64(st, i++);
	v->state_ms = sqlite3_column_int64(st, i++);
	v->last_activity_ms = sqlite3_column_int64(st, i++);
	v->health_failures = sqlite3_column_int(st, i++);
	v->unhealthy_ms = sqlite3_column_int64(st, i++);
	v->cost = sqlite3_column_double(st, i++);
	copy_text(v->end_reason, sizeof v->end_reason, st, i++);
	v->zones_tried = sqlite3_column_int(st, i++);
	copy_text(v->metadata, sizeof v->metadata, st, i++);
}

static int
step_done(struct ledger *l, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_finalize(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warnx("ledger %s: %s", l->path, sqlite3_errmsg(l->db));
		return -EIO;
	}
	return 0;
}

static int
prepare(struct ledger *l, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v2(l->db, sql, -1, st, NULL) != SQLITE_OK) {
		log_warnx("ledger %s: %s: %s", l->path, sqlite3_errmsg(l->db), sql);
		return -EIO;
	}
	return 0;
}

int
ledger_event(struct ledger *l, const char *vm, const char *kind, const char *detail, int64_t now)
{
	sqlite3_stmt *st;

	if (prepare(l, "INSERT INTO events (t_ms, vm, kind, detail) VALUES (?, ?, ?, ?)", &st) != 0)
		return -EIO;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, vm, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, detail != NULL ? detail : "", -1, SQLITE_TRANSIENT);
	return step_done(l, st);
}

static int
upsert(struct ledger *l, const struct vm_record *v)
{
	sqlite3_stmt *st;

	if (prepare(l,
	        "INSERT INTO vms (" VM_COLUMNS
	        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
	        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
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
	        "metadata = excluded.metadata",
	        &st) != 0)
		return -EIO;
	bind_vm(st, v);
	return step_done(l, st);
}

int
ledger_save(struct ledger *l, const struct vm_record *v, int from, const char *reason, int64_t now)
{
	int error;

	if ((error = exec(l, "BEGIN IMMEDIATE")) != 0)
		return error;
	if ((error = upsert(l, v)) == 0 && from != (int)v->state) {
		char *detail = xasprintf("%s -> %s%s%s", from >= 0 ? vm_state_name(from) : "NEW",
		    vm_state_name(v->state), reason != NULL ? ": " : "",
		    reason != NULL ? reason : "");

		error = ledger_event(l, v->name, "state", detail, now);
		free(detail);
	}
	if (error != 0) {
		exec(l, "ROLLBACK");
		return error;
	}
	return exec(l, "COMMIT");
}

int
ledger_get(struct ledger *l, const char *name, struct vm_record *v)
{
	sqlite3_stmt *st;
	int rc;

	if (prepare(l, "SELECT " VM_COLUMNS " FROM vms WHERE name = ?", &st) != 0)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		read_vm(st, v);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
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
	rc = prepare(l, buf_str(&sql), &st);
	buf_release(&sql);
	if (rc != 0)
		return -EIO;
	*list = xcalloc(cap, sizeof **list);
	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct vm_record v;

		read_vm(st, &v);
		if (*n == cap) {
			cap *= 2;
			*list = xreallocarray(*list, cap, sizeof **list);
		}
		(*list)[(*n)++] = v;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(*list);
		*list = NULL;
		return -EIO;
	}
	return 0;
}

/* --- money --- */

static double
sum(struct ledger *l, const char *sql, const char *arg)
{
	sqlite3_stmt *st;
	double total = 0;

	if (prepare(l, sql, &st) != 0)
		return 0;
	if (arg != NULL)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) == SQLITE_ROW)
		total = sqlite3_column_double(st, 0);
	sqlite3_finalize(st);
	return total;
}

/* What one record accrued on `day` by `now`, if it runs and its cost is not closed. */
static double
accrued_on(const struct vm_record *v, const char *day, int64_t now)
{
	struct day_cost days[MAX_DAYS];
	int n;

	if (v->started_ms <= 0 || !vm_state_alive(v->state) || now <= v->started_ms)
		return 0;
	n = cost_split_days(v->per_hour, v->started_ms, now, v->spot, false, days, MAX_DAYS);
	for (int i = 0; i < n; i++)
		if (strcmp(days[i].day, day) == 0)
			return days[i].amount;
	return 0;
}

double
ledger_spent(struct ledger *l, int64_t now)
{
	char day[DAY_LEN];
	struct vm_record *list;
	size_t n;
	double total;

	cost_day(now, day);
	total = sum(l, "SELECT COALESCE(SUM(amount), 0) FROM costs WHERE day = ?", day);
	if (ledger_list(l, NULL, 0, &list, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			total += accrued_on(&list[i], day, now);
		free(list);
	}
	return total;
}

static double
committed_of(const struct vm_record *v, int64_t now)
{
	int64_t stop;

	if (!vm_state_alive(v->state))
		return 0;
	if (v->started_ms <= 0)
		return v->reserved; /* in flight: all of it may yet be spent */
	stop = v->started_ms + v->planned_run_s * 1000;
	return stop > now ? v->per_hour * (double)(stop - now) / 3600000.0 : 0;
}

double
ledger_committed(struct ledger *l, int64_t now)
{
	struct vm_record *list;
	size_t n;
	double total = 0;

	if (ledger_list(l, NULL, 0, &list, &n) != 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		total += committed_of(&list[i], now);
	free(list);
	return total;
}

/* The budget a day was held to (the last one it was checked against). */
static int
note_budget(struct ledger *l, double budget, int64_t now)
{
	sqlite3_stmt *st;
	char day[DAY_LEN];

	cost_day(now, day);
	if (prepare(l,
	        "INSERT INTO budget_days (day, budget) VALUES (?, ?) ON CONFLICT (day) "
	        "DO UPDATE SET budget = excluded.budget",
	        &st) != 0)
		return -EIO;
	sqlite3_bind_text(st, 1, day, -1, SQLITE_TRANSIENT);
	sqlite3_bind_double(st, 2, budget);
	return step_done(l, st);
}

int
ledger_reserve(struct ledger *l, struct vm_record *v, const struct reserve_rules *r, int64_t now,
    struct budget_plan *plan, char *why, size_t whylen)
{
	struct vm_record *list = NULL;
	size_t n = 0, flight = 0;
	struct budget_ask ask;
	int error;

	/* IMMEDIATE: the write lock now, so no one else checks against the same money. */
	if ((error = exec(l, "BEGIN IMMEDIATE")) != 0)
		return error;
	if ((error = ledger_list(l, NULL, 0, &list, &n)) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		flight += list[i].started_ms <= 0;
	free(list);
	if ((int)n >= r->max_concurrent) {
		snprintf(why, whylen,
		    "max concurrent %d reached (%zu alive, %zu of them in flight)",
		    r->max_concurrent, n, flight);
		error = -EBUSY;
		goto fail;
	}
	ask.budget = r->budget;
	ask.spent = ledger_spent(l, now);
	ask.committed = ledger_committed(l, now);
	ask.per_hour = v->per_hour;
	ask.max_run_s = r->max_run_s;
	ask.min_run_s = r->min_run_s;
	budget_plan(&ask, plan);
	if ((error = note_budget(l, r->budget, now)) != 0)
		goto fail;
	if (!plan->ok) {
		snprintf(why, whylen, "%s", plan->why);
		error = -EAGAIN;
		goto fail;
	}
	v->state = VM_REQUESTED;
	v->planned_run_s = plan->run_s;
	v->reserved = plan->cost;
	v->requested_ms = v->state_ms = now;
	if ((error = upsert(l, v)) != 0)
		goto fail;
	{
		char *detail =
		    xasprintf("NEW -> REQUESTED: %s (confidence %.2f; planned run %lld s, "
		              "$%.4f reserved; $%.2f left today)",
		        v->reason, v->confidence, (long long)plan->run_s, plan->cost,
		        plan->left - plan->cost);

		error = ledger_event(l, v->name, "state", detail, now);
		free(detail);
		if (error != 0)
			goto fail;
	}
	return exec(l, "COMMIT");
fail:
	exec(l, "ROLLBACK");
	return error;
}

int
ledger_close_cost(struct ledger *l, const char *vm, double per_hour, int64_t *start, int64_t *end,
    bool spot, bool preempted, double *total)
{
	struct day_cost days[MAX_DAYS];
	sqlite3_stmt *st;
	int n = *start > 0
	    ? cost_split_days(per_hour, *start, *end, spot, preempted, days, MAX_DAYS)
	    : 0;
	int error;

	*total = 0;
	if ((error = exec(l, "BEGIN IMMEDIATE")) != 0)
		return error;
	/* Closed once: a second close (after a restart, say) changes nothing. */
	if (prepare(l, "SELECT cost_closed, cost, started_ms, ended_ms FROM vms WHERE name = ?",
	        &st) != 0) {
		error = -EIO;
		goto fail;
	}
	sqlite3_bind_text(st, 1, vm, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) != 0) {
		*total = sqlite3_column_double(st, 1);
		*start = sqlite3_column_int64(st, 2);
		*end = sqlite3_column_int64(st, 3);
		sqlite3_finalize(st);
		return exec(l, "COMMIT");
	}
	sqlite3_finalize(st);
	for (int i = 0; i < n && error == 0; i++) {
		if ((error = prepare(
		         l, "INSERT INTO costs (vm, day, amount) VALUES (?, ?, ?)", &st)) != 0)
			break;
		sqlite3_bind_text(st, 1, vm, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, days[i].day, -1, SQLITE_TRANSIENT);
		sqlite3_bind_double(st, 3, days[i].amount);
		error = step_done(l, st);
		*total += days[i].amount;
	}
	/* The run beside its cost: a crash before the record is saved cannot part them. */
	if (error == 0 &&
	    (error = prepare(l,
	         "UPDATE vms SET cost = ?, cost_closed = 1, reserved = 0, started_ms = ?, "
	         "ended_ms = ? WHERE name = ?",
	         &st)) == 0) {
		sqlite3_bind_double(st, 1, *total);
		sqlite3_bind_int64(st, 2, *start);
		sqlite3_bind_int64(st, 3, *end);
		sqlite3_bind_text(st, 4, vm, -1, SQLITE_TRANSIENT);
		error = step_done(l, st);
	}
	if (error != 0)
		goto fail;
	return exec(l, "COMMIT");
fail:
	exec(l, "ROLLBACK");
	return error;
}

int
ledger_stats(struct ledger *l, struct vm_stats *s)
{
	sqlite3_stmt *st;

	memset(s, 0, sizeof *s);
	if (prepare(l, "SELECT state, COUNT(*), SUM(cost) FROM vms GROUP BY state", &st) != 0)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		enum vm_state state;
		long count = sqlite3_column_int(st, 1);

		if (vm_state_parse((const char *)sqlite3_column_text(st, 0), &state) != 0)
			continue;
		s->total_cost += sqlite3_column_double(st, 2);
		if (state == VM_FAILED)
			s->failed += count;
		else if (state == VM_TERMINATED)
			s->terminated += count;
		else if (state == VM_PREEMPTED)
			s->preempted += count;
		else if (state == VM_ORPHANED)
			s->orphaned += count;
		if (vm_state_alive(state))
			s->alive += count;
		if (state != VM_FAILED && state != VM_ORPHANED && state != VM_REQUESTED)
			s->created += count;
	}
	sqlite3_finalize(st);
	return 0;
}

int
ledger_price(struct ledger *l, const char *type, const char *region, bool spot, double per_hour,
    const char *effective, const char *source, int64_t now)
{
	sqlite3_stmt *st;

	if (prepare(l,
	        "INSERT INTO prices (t_ms, machine_type, region, spot, per_hour, effective, "
	        "source) VALUES (?, ?, ?, ?, ?, ?, ?)",
	        &st) != 0)
		return -EIO;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, region, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 4, spot);
	sqlite3_bind_double(st, 5, per_hour);
	sqlite3_bind_text(st, 6, effective, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 7, source, -1, SQLITE_TRANSIENT);
	return step_done(l, st);
}

int
ledger_days(struct ledger *l, int64_t now, int n, struct day_cost **out, int *count)
{
	struct day_cost *days = xcalloc((size_t)n + 1, sizeof *days);
	struct vm_record *list = NULL;
	size_t nvm = 0;
	int64_t t = now;

	ledger_list(l, NULL, 0, &list, &nvm);
	for (int i = 0; i < n; i++) {
		cost_day(t, days[i].day);
		days[i].amount =
		    sum(l, "SELECT COALESCE(SUM(amount), 0) FROM costs WHERE day = ?", days[i].day);
		for (size_t k = 0; k < nvm; k++)
			days[i].amount += accrued_on(&list[k], days[i].day, now);
		t = cost_day_start(t) - 1; /* the last instant of the day before (DST-proof) */
	}
	free(list);
	*out = days;
	*count = n;
	return 0;
}

int
ledger_events(struct ledger *l, const char *vm, int limit, struct ledger_event **out, size_t *n)
{
	sqlite3_stmt *st;
	size_t cap = (size_t)limit;

	if (prepare(l,
	        vm != NULL
	            ? "SELECT t_ms, vm, kind, detail FROM events WHERE vm = ? ORDER BY id DESC "
	              "LIMIT ?"
	            : "SELECT t_ms, vm, kind, detail FROM events WHERE ? IS NULL ORDER BY id "
	              "DESC LIMIT ?",
	        &st) != 0)
		return -EIO;
	if (vm != NULL)
		sqlite3_bind_text(st, 1, vm, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 1);
	sqlite3_bind_int(st, 2, limit);
	*out = xcalloc(cap + 1, sizeof **out);
	*n = 0;
	while (*n < cap && sqlite3_step(st) == SQLITE_ROW) {
		struct ledger_event *e = &(*out)[(*n)++];

		e->t_ms = sqlite3_column_int64(st, 0);
		copy_text(e->vm, sizeof e->vm, st, 1);
		copy_text(e->kind, sizeof e->kind, st, 2);
		copy_text(e->detail, sizeof e->detail, st, 3);
	}
	sqlite3_finalize(st);
	return 0;
}
