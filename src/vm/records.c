#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/cost.h"
#include "util/log.h"
#include "util/xmalloc.h"
#include "vm/records.h"

/* Writes kept at most; past it the oldest plain event goes (said in the log), never a VM's. */
#define MAX_WAITING 1024

enum kind { W_SAVE, W_EVENT, W_COST };

/* A write the ledger has not taken yet. */
struct wait {
	enum kind kind;
	struct vm_record *rec; /* W_SAVE: the record then; W_COST: the run to bill */
	int from;              /* W_SAVE */
	bool preempted;        /* W_COST */
	char vm[64];           /* W_EVENT */
	char what[32];         /* W_EVENT: its kind */
	char *text;            /* W_SAVE: the reason (or NULL); W_EVENT: the detail */
	int64_t t;
};

struct records {
	struct ledger *l;
	struct wait *w;
	size_t n, cap;
	size_t dropped;
	char problem[512];
};

struct records *
records_new(struct ledger *l)
{
	struct records *r = xcalloc(1, sizeof *r);

	r->l = l;
	return r;
}

static void
wait_release(struct wait *w)
{
	free(w->rec);
	free(w->text);
}

void
records_free(struct records *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		wait_release(&r->w[i]);
	free(r->w);
	free(r);
}

/* The ledger refused a write: said once, with what to do, until it takes them again. */
static void
failed(struct records *r, int error)
{
	if (r->problem[0] != '\0')
		return;
	snprintf(r->problem, sizeof r->problem, "%s", ledger_error(r->l));
	log_warnx("%s; what happens is kept in memory and written once the ledger takes it: %s",
	    r->problem,
	    error == -ENOSPC        ? "free space in the state directory"
	        : error == -EUCLEAN ? "stop spillway (its VMs go on and are found again), move "
	                              "the file aside and start again"
	                            : "see the ledger's error above");
}

static struct wait *
push(struct records *r, enum kind kind, int64_t t)
{
	struct wait *w;

	if (r->n == MAX_WAITING) {
		/* Room is made by the oldest plain event: a VM's record and cost stay. */
		for (size_t i = 0; i < r->n; i++) {
			if (r->w[i].kind != W_EVENT)
				continue;
			log_warnx("not written to the ledger (too much waits): %s %s %s",
			    r->w[i].vm, r->w[i].what, r->w[i].text);
			wait_release(&r->w[i]);
			memmove(&r->w[i], &r->w[i + 1], (r->n - i - 1) * sizeof *r->w);
			r->n--;
			r->dropped++;
			break;
		}
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->w = xreallocarray(r->w, r->cap, sizeof *r->w);
	}
	w = &r->w[r->n++];
	memset(w, 0, sizeof *w);
	w->kind = kind;
	w->t = t;
	return w;
}

static struct vm_record *
copy_of(const struct vm_record *v)
{
	struct vm_record *c = xmalloc(sizeof *c);

	*c = *v;
	return c;
}

static int
close_now(struct records *r, struct vm_record *v, bool preempted)
{
	int64_t start = v->started_ms, end = v->ended_ms;
	double total = 0;
	int error =
	    ledger_close_cost(r->l, v->name, v->per_hour, &start, &end, v->spot, preempted, &total);

	if (error == 0) {
		/* Closed before a crash: the run billed then is the record's. */
		v->cost = total;
		v->started_ms = start;
		v->ended_ms = end;
		v->reserved = 0;
	}
	return error;
}

static int
perform(struct records *r, struct wait *w)
{
	switch (w->kind) {
	case W_SAVE:
		return ledger_save(r->l, w->rec, w->from, w->text, w->t);
	case W_EVENT:
		return ledger_event(r->l, w->vm, w->what, w->text, w->t);
	case W_COST:
		return close_now(r, w->rec, w->preempted);
	}
	return -EINVAL;
}

int
records_flush(struct records *r, int64_t now)
{
	size_t done = 0, was = r->n;
	int error = 0;

	while (done < r->n && (error = perform(r, &r->w[done])) == 0)
		wait_release(&r->w[done++]);
	if (done > 0) {
		memmove(r->w, r->w + done, (r->n - done) * sizeof *r->w);
		r->n -= done;
	}
	if (error != 0) {
		failed(r, error);
		return error;
	}
	if (r->problem[0] != '\0') {
		log_info("the ledger takes records again: %zu that waited are written%s", was,
		    r->dropped > 0 ? " (some events could not wait: see above)" : "");
		r->problem[0] = '\0';
		r->dropped = 0;
	}
	return 0;
}

/*
 * Every write goes here: after what waits (so the ledger's events stay in the
 * order they happened), or it waits too. The wait is the caller's until then,
 * the queue's after. 0 when written (a run's billing, as the ledger holds it,
 * in *billed), else the ledger's errno (-EAGAIN: behind others that wait).
 */
static int
submit(struct records *r, struct wait *w, struct vm_record *billed)
{
	int error = -EAGAIN;
	struct wait *kept;

	if ((r->n == 0 || records_flush(r, w->t) == 0) && (error = perform(r, w)) == 0) {
		if (billed != NULL) {
			billed->cost = w->rec->cost;
			billed->started_ms = w->rec->started_ms;
			billed->ended_ms = w->rec->ended_ms;
			billed->reserved = 0;
		}
		wait_release(w);
		return 0;
	}
	if (error != -EAGAIN)
		failed(r, error);
	kept = push(r, w->kind, w->t);
	*kept = *w;
	return error;
}

int
records_save(struct records *r, const struct vm_record *v, int from, const char *reason, int64_t t)
{
	struct wait w = {.kind = W_SAVE, .rec = copy_of(v), .from = from, .t = t};

	w.text = reason != NULL ? xstrdup(reason) : NULL;
	return submit(r, &w, NULL);
}

int
records_event(struct records *r, const char *vm, const char *kind, const char *detail, int64_t t)
{
	struct wait w = {.kind = W_EVENT, .t = t};

	snprintf(w.vm, sizeof w.vm, "%s", vm);
	snprintf(w.what, sizeof w.what, "%s", kind);
	w.text = xstrdup(detail != NULL ? detail : "");
	return submit(r, &w, NULL);
}

int
records_close_cost(struct records *r, struct vm_record *v, bool preempted)
{
	struct wait w = {
	    .kind = W_COST, .rec = copy_of(v), .preempted = preempted, .t = v->ended_ms};

	/*
	 * Billed as the ledger bills it (its days add up to the run) while it
	 * waits; once written, as the ledger holds it (a run closed before a
	 * crash keeps that closing).
	 */
	v->cost = v->started_ms > 0
	    ? cost_run(v->per_hour, v->started_ms, v->ended_ms, v->spot, preempted)
	    : 0;
	v->reserved = 0;
	return submit(r, &w, v);
}

bool
records_waiting(const struct records *r, const char *vm)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->w[i].rec != NULL && strcmp(r->w[i].rec->name, vm) == 0)
			return true;
	return false;
}

const char *
records_problem(const struct records *r, size_t *waiting)
{
	if (waiting != NULL)
		*waiting = r->n;
	return r->n > 0 && r->problem[0] != '\0' ? r->problem : NULL;
}

size_t
records_waiting_vms(const struct records *r, struct vm_record **out)
{
	size_t n = 0;

	*out = NULL;
	/* The latest of each VM: later waits hold later records. */
	for (size_t i = r->n; i-- > 0;) {
		const struct vm_record *v = r->w[i].rec;
		bool seen = false;

		if (v == NULL)
			continue;
		for (size_t k = 0; k < n && !seen; k++)
			seen = strcmp((*out)[k].name, v->name) == 0;
		if (seen)
			continue;
		*out = xreallocarray(*out, n + 1, sizeof **out);
		(*out)[n++] = *v;
	}
	return n;
}

void
records_say_lost(const struct records *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct wait *w = &r->w[i];

		if (w->kind == W_EVENT)
			log_warnx("not written to the ledger: %s %s %s", w->vm, w->what, w->text);
		else
			log_warnx("not written to the ledger: %s %s, $%.4f (%s)", w->rec->name,
			    vm_state_name(w->rec->state), w->rec->cost,
			    w->kind == W_COST     ? "its cost"
			        : w->text != NULL ? w->text
			                          : "its record");
	}
}
