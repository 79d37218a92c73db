/*
 * The arithmetic of money, pure: what a run is billed, how it splits over
 * local calendar days, and how long a VM the rest of today's budget buys.
 *
 * Compute Engine bills per second with a one-minute minimum; a Spot VM
 * preempted within its first minute is not billed. Days are local (TZ is
 * respected); a run across midnight is split at midnight, each day taking its
 * share of the run's time (and of its minimum, if any).
 */
#ifndef SPILLWAY_COST_H
#define SPILLWAY_COST_H

#include <stdbool.h>
#include <stdint.h>

#define DAY_LEN 11 /* "YYYY-MM-DD" */

/*
 * No VM costs nothing, and none costs more than this per hour (gcp.max_price's
 * own bound): a price outside (0, PRICE_MAX_PER_HOUR] is a broken catalog, and
 * nothing is planned, reserved or billed at it.
 */
#define PRICE_MAX_PER_HOUR 1000.0

/* Billed cost of a run from start to end at this price. */
double cost_run(double per_hour, int64_t start_ms, int64_t end_ms, bool spot, bool preempted);

struct day_cost {
	char day[DAY_LEN];
	double amount;
};

/* Split a run's billed cost over local days; returns how many (at most max). */
int cost_split_days(double per_hour, int64_t start_ms, int64_t end_ms, bool spot, bool preempted,
    struct day_cost *out, int max);
/* The same for storage (a stopped VM's disk): per second, no minimum. */
int cost_split_storage(
    double per_hour, int64_t start_ms, int64_t end_ms, struct day_cost *out, int max);

/* The local day of a time, and the local midnights that begin and end it. */
void cost_day(int64_t ms, char out[DAY_LEN]);
int64_t cost_day_start(int64_t ms);
int64_t cost_day_end(int64_t ms);

struct budget_ask {
	double budget;     /* today's, US$ */
	double spent;      /* billed today so far, closed runs and running ones */
	double committed;  /* what VMs alive or in flight can still cost until their hard stop */
	double per_hour;   /* the new VM's price */
	int64_t max_run_s; /* gcp.max_lifetime_hours */
	int64_t min_run_s; /* shorter is not worth a VM */
};

struct budget_plan {
	bool ok;       /* never at a price outside (0, PRICE_MAX_PER_HOUR] */
	int64_t run_s; /* the planned run: the VM's maxRunDuration */
	double cost;   /* what that run costs at most */
	double left;   /* budget - spent - committed */
	char why[256]; /* when not ok: the rule and its numbers */
};

void budget_plan(const struct budget_ask *, struct budget_plan *);

#endif
