#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ledger/cost.h"

#define MINIMUM_MS 60000

double
cost_run(double per_hour, int64_t start, int64_t end, bool spot, bool preempted)
{
	int64_t ms = end > start ? end - start : 0;

	if (!(per_hour > 0)) /* no price (an orphan of another type), or a broken one: nothing */
		return 0;
	if (spot && preempted && ms < MINIMUM_MS)
		return 0;
	if (ms < MINIMUM_MS)
		ms = MINIMUM_MS;
	return per_hour * (double)ms / 3600000.0;
}

void
cost_day(int64_t ms, char out[DAY_LEN])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(out, DAY_LEN, "%Y-%m-%d", &tm);
}

int64_t
cost_day_start(int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return (int64_t)mktime(&tm) * 1000;
}

int64_t
cost_day_end(int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_mday++;
	tm.tm_isdst = -1; /* mktime works out DST for the next day */
	return (int64_t)mktime(&tm) * 1000;
}

/* A total over [start, end) split over local days by their share of the time. */
static int
split(double total, int64_t start, int64_t end, struct day_cost *out, int max)
{
	double assigned = 0;
	int n = 0;

	if (end <= start) {
		cost_day(start, out[0].day);
		out[0].amount = total;
		return 1;
	}
	/* Each day its share of the time; the minimum, if any, spreads the same way. */
	for (int64_t from = start; n < max;) {
		int64_t to = cost_day_end(from);

		cost_day(from, out[n].day);
		if (to >= end || n == max - 1) {
			out[n++].amount = total - assigned; /* the days add up to the run exactly */
			break;
		}
		out[n].amount = total * (double)(to - from) / (double)(end - start);
		assigned += out[n++].amount;
		from = to;
	}
	return n;
}

int
cost_split_days(double per_hour, int64_t start, int64_t end, bool spot, bool preempted,
    struct day_cost *out, int max)
{
	return split(cost_run(per_hour, start, end, spot, preempted), start, end, out, max);
}

int
cost_split_storage(double per_hour, int64_t start, int64_t end, struct day_cost *out, int max)
{
	double total =
	    end > start && per_hour > 0 ? per_hour * (double)(end - start) / 3600000.0 : 0;

	return split(total, start, end, out, max);
}

void
budget_plan(const struct budget_ask *a, struct budget_plan *p)
{
	double affordable_s;
	/* A lifetime shorter than the minimum run is the user's choice: it is the minimum then. */
	int64_t min_run_s = a->min_run_s < a->max_run_s ? a->min_run_s : a->max_run_s;

	memset(p, 0, sizeof *p);
	p->left = a->budget - a->spent - a->committed;
	/* No price is no licence to spend: a VM that costs nothing is a price not known. */
	if (!(a->per_hour > 0 && a->per_hour <= PRICE_MAX_PER_HOUR)) {
		snprintf(p->why, sizeof p->why,
		    "$%.4f/h is not a price a VM can have; the price catalog is wrong",
		    a->per_hour);
		return;
	}
	affordable_s = p->left > 0 ? p->left / a->per_hour * 3600.0 : 0;
	p->run_s = (int64_t)affordable_s < a->max_run_s ? (int64_t)affordable_s : a->max_run_s;
	p->cost = cost_run(a->per_hour, 0, p->run_s * 1000, false, false);
	if (p->run_s < min_run_s || p->cost > p->left + 1e-9) {
		snprintf(p->why, sizeof p->why,
		    "$%.4f left of $%.2f today (spent $%.4f, committed $%.4f); a VM at $%.4f/h "
		    "needs $%.4f for its minimum run of %lld min",
		    p->left > 0 ? p->left : 0, a->budget, a->spent, a->committed, a->per_hour,
		    cost_run(a->per_hour, 0, min_run_s * 1000, false, false),
		    (long long)(min_run_s / 60));
		p->ok = false;
		return;
	}
	p->ok = true;
}
