/*
 * The ledger's money: what was billed today and what is committed, the
 * reservation that checks the budget and the limit in one transaction, the
 * closing of a run's cost split over days, and the sums the views show.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "ledger/internal.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define MAX_DAYS 64

/* One number from a query; a query that fails is an error, never $0. */
static int
sum(struct ledger *l, const char *sql, const char *arg, double *out)
{
	sqlite3_stmt *st;
	int rc;

	*out = 0;
	if ((rc = lg_prepare(l, sql, &st)) != 0)
		return rc;
	if (arg != NULL)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*out = sqlite3_column_double(st, 0);
		rc = 0;
	} else {
		rc = lg_failed(l, rc);
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * What one record accrued on `day` by `now` and is not billed yet: its run,
 * if it runs, or its wait in the pool.
 */
static double
accrued_on(const struct vm_record *v, const char *day, int64_t now)
{
	struct day_cost days[MAX_DAYS];
	int64_t from = v->state == VM_POOLED ? v->pool_since_ms : v->started_ms;
	int n;

	if (from < v->billed_ms)
		from = v->billed_ms;
	if (from <= 0 || !vm_state_alive(v->state) || now <= from)
		return 0;
	if (v->state == VM_POOLED)
		n = cost_split_storage(v->wait_per_hour, from, now, days, MAX_DAYS);
	else
		n = cost_split_days(v->per_hour, from, now, v->spot, false, days, MAX_DAYS);
	for (int i = 0; i < n; i++)
		if (strcmp(days[i].day, day) == 0)
			return days[i].amount;
	return 0;
}

/*
 * Billed on a day: its closed costs, what the alive VMs of `list` accrued on
 * it by now, and the images' storage.
 */
static int
spent_on(struct ledger *l, const char *day, const struct vm_record *list, size_t n, int64_t now,
    double *out)
{
	int error = sum(l,
	    "SELECT COALESCE((SELECT SUM(amount) FROM costs WHERE day = ?1), 0) +"
	    " COALESCE((SELECT amount FROM archive WHERE day = ?1), 0)",
	    day, out);

	struct image_record *images = NULL;
	size_t nimages = 0;

	for (size_t i = 0; error == 0 && i < n; i++)
		*out += accrued_on(&list[i], day, now);
	/* And the storage of the images baked (deleted ones too: they were billed). */
	if (error == 0 && (error = ledger_images(l, true, &images, &nimages)) == 0)
		for (size_t i = 0; i < nimages; i++)
			*out += image_storage_on(&images[i], day, now);
	free(images);
	return error;
}

int
ledger_spent(struct ledger *l, int64_t now, double *out)
{
	char day[DAY_LEN];
	struct vm_record *list;
	size_t n;
	int error;

	*out = 0;
	cost_day(now, day);
	if ((error = ledger_list(l, NULL, 0, &list, &n)) != 0)
		return error;
	error = spent_on(l, day, list, n, now, out);
	free(list);
	return error;
}

/*
 * What a VM of the pool will cost waiting, committed to the end of tomorrow:
 * the runs a day reserves may go on into the next one, which the pool waits
 * through too; counted today, both fit in a day's budget.
 */
static double
wait_committed(const struct vm_record *v, int64_t now)
{
	return v->wait_per_hour * (double)(cost_day_end(cost_day_end(now)) - now) / 3600000.0;
}

/* What its run can still cost until its hard stop (in flight: all of its reservation). */
static double
run_committed(const struct vm_record *v, int64_t now)
{
	int64_t stop;

	if (v->started_ms <= 0)
		return v->reserved;
	stop = v->started_ms + v->planned_run_s * 1000;
	return stop > now && v->per_hour > 0 ? v->per_hour * (double)(stop - now) / 3600000.0 : 0;
}

static double
committed_of(const struct vm_record *v, int64_t now)
{
	if (!vm_state_alive(v->state))
		return 0;
	if (v->state == VM_POOLED)
		return wait_committed(v, now);
	/* Warming for the pool: its run, then its wait. */
	return run_committed(v, now) + (vm_pooled(v) ? wait_committed(v, now) : 0);
}

int
ledger_committed(struct ledger *l, int64_t now, double *out)
{
	struct vm_record *list;
	size_t n;
	int error;

	*out = 0;
	if ((error = ledger_list(l, NULL, 0, &list, &n)) != 0)
		return error;
	for (size_t i = 0; i < n; i++)
		*out += committed_of(&list[i], now);
	free(list);
	return 0;
}

/* The budget a day was held to (the last one it was checked against). */
static int
note_budget(struct ledger *l, double budget, int64_t now)
{
	sqlite3_stmt *st;
	char day[DAY_LEN];
	int error;

	cost_day(now, day);
	if ((error = lg_prepare(l,
	         "INSERT INTO budget_days (day, budget) VALUES (?, ?) ON CONFLICT (day) "
	         "DO UPDATE SET budget = excluded.budget",
	         &st)) != 0)
		return error;
	sqlite3_bind_text(st, 1, day, -1, SQLITE_TRANSIENT);
	sqlite3_bind_double(st, 2, budget);
	return lg_step_done(l, st);
}

/*
 * The reservation: v's run (a new VM's, or a pooled one's start) checked
 * against the limit and the budget and written, in one transaction.
 */
static int
reserve(struct ledger *l, struct vm_record *v, const struct reserve_rules *r, int64_t now,
    struct budget_plan *plan, char *why, size_t whylen)
{
	struct vm_record *list = NULL;
	size_t n = 0, running = 0, flight = 0;
	struct budget_ask ask;
	char day[DAY_LEN];
	bool start = v->state == VM_POOLED;
	int error;

	memset(plan, 0, sizeof *plan);
	/* IMMEDIATE: the write lock now, so no one else checks against the same money. */
	if ((error = lg_exec(l, "BEGIN IMMEDIATE")) != 0)
		goto fail;
	if ((error = ledger_list(l, NULL, 0, &list, &n)) != 0)
		goto fail;
	/* The pool's waiting VMs run nothing: they take no slot. */
	for (size_t i = 0; i < n; i++) {
		running += list[i].state != VM_POOLED;
		flight += list[i].state != VM_POOLED && list[i].started_ms <= 0;
	}
	if ((int)running >= r->max_concurrent) {
		snprintf(why, whylen,
		    "max concurrent %d reached (%zu alive, %zu of them in flight)",
		    r->max_concurrent, running, flight);
		error = -EBUSY;
		goto fail;
	}
	ask.budget = r->budget;
	/* A VM for the pool commits its wait too, from the day it is made. */
	ask.committed = !start && vm_pooled(v) ? wait_committed(v, now) : 0;
	for (size_t i = 0; i < n; i++)
		if (!start || strcmp(list[i].name, v->name) != 0) /* its wait ends as it starts */
			ask.committed += committed_of(&list[i], now);
	cost_day(now, day);
	/* Today's spend unreadable is no spend known: refused, never taken as $0. */
	if ((error = spent_on(l, day, list, n, now, &ask.spent)) != 0)
		goto fail;
	ask.per_hour = v->per_hour;
	ask.max_run_s = r->max_run_s;
	ask.min_run_s = r->min_run_s;
	budget_plan(&ask, plan);
	if ((error = note_budget(l, r->budget, now)) != 0)
		goto fail;
	/* A pooled VM runs for the maxRunDuration it was made with: all of it, or not at all. */
	if (plan->ok && start && plan->run_s < v->planned_run_s) {
		snprintf(plan->why, sizeof plan->why,
		    "$%.4f left today buys %lld min of a VM at $%.4f/h; the pool's VMs run %lld min",
		    plan->left > 0 ? plan->left : 0, (long long)(plan->run_s / 60), v->per_hour,
		    (long long)(v->planned_run_s / 60));
		plan->ok = false;
	}
	if (!plan->ok) {
		snprintf(why, whylen, "%s", plan->why);
		error = -EAGAIN;
		goto fail;
	}
	if (start) {
		plan->run_s = v->planned_run_s;
		plan->cost = cost_run(v->per_hour, 0, plan->run_s * 1000, false, false);
	}
	v->state = start ? VM_STARTING : VM_REQUESTED;
	v->planned_run_s = plan->run_s;
	v->reserved = plan->cost;
	v->state_ms = now;
	if (!start)
		v->requested_ms = now;
	if ((error = lg_upsert(l, v)) != 0)
		goto fail;
	{
		char *detail = xasprintf("%s: %s (confidence %.2f; planned run %lld s, "
		                         "$%.4f reserved; $%.2f left today)",
		    start ? "POOLED -> STARTING" : "NEW -> REQUESTED", v->reason, v->confidence,
		    (long long)plan->run_s, plan->cost, plan->left - plan->cost);

		error = ledger_event(l, v->name, "state", detail, now);
		free(detail);
		if (error != 0)
			goto fail;
	}
	if ((error = lg_exec(l, "COMMIT")) != 0)
		goto fail;
	free(list);
	return 0;
fail:
	free(list);
	if (error != -EBUSY && error != -EAGAIN)
		snprintf(why, whylen, "%s", l->error);
	return lg_rollback(l, error);
}

int
ledger_reserve(struct ledger *l, struct vm_record *v, const struct reserve_rules *r, int64_t now,
    struct budget_plan *plan, char *why, size_t whylen)
{
	v->state = VM_REQUESTED;
	return reserve(l, v, r, now, plan, why, whylen);
}

int
ledger_reserve_start(struct ledger *l, struct vm_record *v, const struct reserve_rules *r,
    int64_t now, struct budget_plan *plan, char *why, size_t whylen)
{
	if (v->state != VM_POOLED) {
		snprintf(why, whylen, "%s is %s, not POOLED", v->name, vm_state_name(v->state));
		return -EINVAL;
	}
	return reserve(l, v, r, now, plan, why, whylen);
}

/* Add days of cost to a VM's (the table's amounts and the row's sum), in the transaction open. */
static int
add_days(struct ledger *l, const char *vm, const struct day_cost *days, int n, double *total)
{
	sqlite3_stmt *st;
	int error = 0;

	*total = 0;
	for (int i = 0; i < n && error == 0; i++) {
		if ((error = lg_prepare(l,
		         "INSERT INTO costs (vm, day, amount) VALUES (?, ?, ?) ON CONFLICT (vm, day) "
		         "DO UPDATE SET amount = amount + excluded.amount",
		         &st)) != 0)
			break;
		sqlite3_bind_text(st, 1, vm, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, days[i].day, -1, SQLITE_TRANSIENT);
		sqlite3_bind_double(st, 3, days[i].amount);
		error = lg_step_done(l, st);
		*total += days[i].amount;
	}
	return error;
}

int
ledger_bill(struct ledger *l, struct vm_record *v, int64_t from, int64_t to, double per_hour,
    bool storage, double *amount)
{
	struct day_cost days[MAX_DAYS];
	sqlite3_stmt *st;
	int64_t billed = 0;
	int n = 0, error, rc;

	*amount = 0;
	if ((error = lg_exec(l, "BEGIN IMMEDIATE")) != 0)
		return lg_rollback(l, error);
	if ((error = lg_prepare(l, "SELECT billed_ms, cost FROM vms WHERE name = ?", &st)) != 0)
		return lg_rollback(l, error);
	sqlite3_bind_text(st, 1, v->name, -1, SQLITE_TRANSIENT);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		billed = sqlite3_column_int64(st, 0);
		v->cost = sqlite3_column_double(st, 1);
	}
	error = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : lg_failed(l, rc);
	sqlite3_finalize(st);
	/* Billed once: what a bill before a crash covered is not billed again. */
	if (from < billed)
		from = billed;
	if (error == 0 && to > from && from > 0) {
		n = storage ? cost_split_storage(per_hour, from, to, days, MAX_DAYS)
		            : cost_split_days(per_hour, from, to, v->spot, false, days, MAX_DAYS);
		error = add_days(l, v->name, days, n, amount);
		if (error == 0 &&
		    (error = lg_prepare(
		         l, "UPDATE vms SET cost = cost + ?, billed_ms = ? WHERE name = ?", &st)) ==
		        0) {
			sqlite3_bind_double(st, 1, *amount);
			sqlite3_bind_int64(st, 2, to);
			sqlite3_bind_text(st, 3, v->name, -1, SQLITE_TRANSIENT);
			error = lg_step_done(l, st);
		}
	}
	if (error == 0)
		error = lg_exec(l, "COMMIT");
	if (error != 0) {
		*amount = 0;
		return lg_rollback(l, error);
	}
	if (to > billed) {
		v->billed_ms = to;
		v->cost += *amount;
	}
	return 0;
}

int
ledger_close_cost(struct ledger *l, const char *vm, double per_hour, int64_t *start, int64_t *end,
    bool spot, bool preempted, double *total)
{
	struct day_cost days[MAX_DAYS];
	sqlite3_stmt *st;
	int64_t from = *start;
	double added = 0;
	int n = 0, error, rc;

	*total = 0;
	if ((error = lg_exec(l, "BEGIN IMMEDIATE")) != 0)
		return lg_rollback(l, error);
	/* Closed once: a second close (after a restart, say) changes nothing. */
	if ((error = lg_prepare(l,
	         "SELECT cost_closed, cost, started_ms, ended_ms, billed_ms FROM vms WHERE name = ?",
	         &st)) != 0)
		return lg_rollback(l, error);
	sqlite3_bind_text(st, 1, vm, -1, SQLITE_TRANSIENT);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW && sqlite3_column_int(st, 0) != 0) {
		*total = sqlite3_column_double(st, 1);
		*start = sqlite3_column_int64(st, 2);
		*end = sqlite3_column_int64(st, 3);
		sqlite3_finalize(st);
		return (error = lg_exec(l, "COMMIT")) != 0 ? lg_rollback(l, error) : 0;
	}
	/* What was billed before (a pooled VM's warm-up and wait) is not billed again. */
	if (rc == SQLITE_ROW && from > 0 && from < sqlite3_column_int64(st, 4))
		from = sqlite3_column_int64(st, 4);
	error = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : lg_failed(l, rc);
	sqlite3_finalize(st);
	if (from > 0 && (from < *end || from == *start))
		n = cost_split_days(per_hour, from, *end, spot, preempted, days, MAX_DAYS);
	if (error == 0)
		error = add_days(l, vm, days, n, &added);
	/* The run beside its cost: a crash before the record is saved cannot part them. */
	if (error == 0 &&
	    (error = lg_prepare(l,
	         "UPDATE vms SET cost = cost + ?, cost_closed = 1, reserved = 0, started_ms = ?, "
	         "ended_ms = ? WHERE name = ? RETURNING cost",
	         &st)) == 0) {
		sqlite3_bind_double(st, 1, added);
		sqlite3_bind_int64(st, 2, *start);
		sqlite3_bind_int64(st, 3, *end);
		sqlite3_bind_text(st, 4, vm, -1, SQLITE_TRANSIENT);
		if ((rc = sqlite3_step(st)) == SQLITE_ROW)
			*total = sqlite3_column_double(st, 0);
		else if (rc == SQLITE_DONE)
			*total = added; /* no row: nothing to add to */
		else
			error = lg_failed(l, rc);
		sqlite3_finalize(st);
	}
	if (error == 0)
		error = lg_exec(l, "COMMIT");
	if (error != 0) {
		*total = 0;
		return lg_rollback(l, error);
	}
	return 0;
}

int
ledger_stats(struct ledger *l, struct vm_stats *s)
{
	sqlite3_stmt *st;
	int rc;

	memset(s, 0, sizeof *s);
	if ((rc = lg_prepare(
	         l, "SELECT state, COUNT(*), SUM(cost) FROM vms GROUP BY state", &st)) != 0)
		return rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		enum vm_state state;
		long count = sqlite3_column_int(st, 1);
		const unsigned char *name = sqlite3_column_text(st, 0);

		if (name == NULL || vm_state_parse((const char *)name, &state) != 0)
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
	rc = rc == SQLITE_DONE ? 0 : lg_failed(l, rc);
	sqlite3_finalize(st);
	if (rc != 0)
		return rc;
	/* What retention summarised: its money and its outcomes, per day. */
	if ((rc = lg_prepare(l,
	         "SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(terminated), 0),"
	         " COALESCE(SUM(failed), 0), COALESCE(SUM(preempted), 0) FROM archive",
	         &st)) != 0)
		return rc;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		s->total_cost += sqlite3_column_double(st, 0);
		s->terminated += sqlite3_column_int(st, 1);
		s->failed += sqlite3_column_int(st, 2);
		s->preempted += sqlite3_column_int(st, 3);
		s->created += sqlite3_column_int(st, 1) + sqlite3_column_int(st, 3);
		rc = 0;
	} else {
		rc = lg_failed(l, rc);
	}
	sqlite3_finalize(st);
	return rc;
}

/* One VM past retention into the day's summary, then gone: its costs, its events, its row. */
static int
archive_vm(struct ledger *l, const char *name, enum vm_state state, int64_t requested_ms)
{
	char day[DAY_LEN];
	sqlite3_stmt *st;
	int rc;

	if ((rc = lg_prepare(l,
	         "INSERT INTO archive (day, amount) SELECT day, SUM(amount) FROM costs WHERE vm = ?"
	         " GROUP BY day ON CONFLICT (day) DO UPDATE SET amount = amount + excluded.amount",
	         &st)) != 0)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	if ((rc = lg_step_done(l, st)) != 0)
		return rc;
	cost_day(requested_ms, day);
	if ((rc = lg_prepare(l,
	         "INSERT INTO archive (day, terminated, failed, preempted) VALUES (?, ?, ?, ?)"
	         " ON CONFLICT (day) DO UPDATE SET terminated = terminated + excluded.terminated,"
	         " failed = failed + excluded.failed, preempted = preempted + excluded.preempted",
	         &st)) != 0)
		return rc;
	sqlite3_bind_text(st, 1, day, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 2, state == VM_TERMINATED);
	sqlite3_bind_int(st, 3, state == VM_FAILED);
	sqlite3_bind_int(st, 4, state == VM_PREEMPTED);
	if ((rc = lg_step_done(l, st)) != 0)
		return rc;
	static const char *const sql[] = {"DELETE FROM costs WHERE vm = ?",
	    "DELETE FROM events WHERE vm = ?", "DELETE FROM offloads WHERE vm = ?",
	    "DELETE FROM vms WHERE name = ?"};

	for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
		if ((rc = lg_prepare(l, sql[i], &st)) != 0)
			return rc;
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		if ((rc = lg_step_done(l, st)) != 0)
			return rc;
	}
	return 0;
}

int
ledger_prune(struct ledger *l, int64_t now, int days, int *pruned)
{
	int64_t cutoff = now - (int64_t)days * 86400000;
	sqlite3_stmt *st;
	struct {
		char name[64];
		enum vm_state state;
		int64_t requested_ms;
	} *old = NULL;
	size_t n = 0, cap = 0;
	int rc;

	*pruned = 0;
	if ((rc = lg_exec(l, "BEGIN IMMEDIATE")) != 0)
		return rc;
	/* Ended, its cost closed, and nothing about it since the cutoff. */
	if ((rc = lg_prepare(l,
	         "SELECT name, state, requested_ms FROM vms WHERE state IN"
	         " ('TERMINATED', 'FAILED', 'PREEMPTED') AND (cost_closed = 1 OR state = 'FAILED')"
	         " AND state_ms < ?1 AND ended_ms < ?1",
	         &st)) != 0)
		return lg_rollback(l, rc);
	sqlite3_bind_int64(st, 1, cutoff);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *name = sqlite3_column_text(st, 0);

		if (n == cap)
			old = xreallocarray(old, cap = cap ? 2 * cap : 64, sizeof *old);
		snprintf(old[n].name, sizeof old[n].name, "%s", name ? (const char *)name : "");
		if (vm_state_parse((const char *)sqlite3_column_text(st, 1), &old[n].state) != 0)
			continue;
		old[n++].requested_ms = sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	rc = rc == SQLITE_DONE ? 0 : lg_failed(l, rc);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = archive_vm(l, old[i].name, old[i].state, old[i].requested_ms);
	/* The daemon's own events and prices as old go too; the money stays, summarised. */
	if (rc == 0 && (rc = lg_prepare(l,
	                    "DELETE FROM events WHERE vm = '-' AND t_ms < ?1;", &st)) == 0) {
		sqlite3_bind_int64(st, 1, cutoff);
		rc = lg_step_done(l, st);
	}
	free(old);
	if (rc != 0)
		return lg_rollback(l, rc);
	if ((rc = lg_exec(l, "COMMIT")) != 0)
		return lg_rollback(l, rc);
	*pruned = (int)n;
	return 0;
}

int
ledger_price(struct ledger *l, const char *type, const char *region, bool spot, double per_hour,
    const char *effective, const char *source, int64_t now)
{
	sqlite3_stmt *st;
	int error;

	if ((error = lg_prepare(l,
	         "INSERT INTO prices (t_ms, machine_type, region, spot, per_hour, effective, "
	         "source) VALUES (?, ?, ?, ?, ?, ?, ?)",
	         &st)) != 0)
		return error;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, region, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 4, spot);
	sqlite3_bind_double(st, 5, per_hour);
	sqlite3_bind_text(st, 6, effective, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 7, source, -1, SQLITE_TRANSIENT);
	return lg_step_done(l, st);
}

int
ledger_days(struct ledger *l, int64_t now, int n, struct day_cost **out, int *count)
{
	struct day_cost *days = xcalloc((size_t)n + 1, sizeof *days);
	struct vm_record *list = NULL;
	size_t nvm = 0;
	int64_t t = now;
	int error;

	*out = NULL;
	*count = 0;
	if ((error = ledger_list(l, NULL, 0, &list, &nvm)) != 0)
		goto out;
	for (int i = 0; i < n && error == 0; i++) {
		cost_day(t, days[i].day);
		error = spent_on(l, days[i].day, list, nvm, now, &days[i].amount);
		t = cost_day_start(t) - 1; /* the last instant of the day before (DST-proof) */
	}
out:
	free(list);
	if (error != 0) {
		free(days);
		return error;
	}
	*out = days;
	*count = n;
	return 0;
}
