#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli/report.h"
#include "ledger/cost.h"

static void
duration(int64_t ms, char *out, size_t size)
{
	int64_t s = ms / 1000;

	if (s >= 3600)
		snprintf(out, size, "%" PRId64 "h%02" PRId64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(out, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
}

/* What a record has cost by now: closed, or accrued since it started. */
static double
cost_so_far(const struct vm_record *v, int64_t now)
{
	if (!vm_state_alive(v->state) || v->started_ms <= 0)
		return v->cost;
	return cost_run(v->per_hour, v->started_ms, now, v->spot, false);
}

static void
today(FILE *f, const struct config *cfg, struct ledger *l, int64_t now)
{
	double spent = ledger_spent(l, now), committed = ledger_committed(l, now);

	fprintf(f,
	    "today:      $%.4f spent, $%.4f committed to running VMs, $%.2f budget, $%.4f left\n",
	    spent, committed, cfg->daily_budget, cfg->daily_budget - spent - committed);
}

static void
vm_table(FILE *f, const struct vm_record *vms, size_t n, int64_t now)
{
	fprintf(f, "  %-32s %-14s %-12s %-9s %-10s %s\n", "NAME", "ZONE", "STATE", "RUNTIME",
	    "COST", "COMPONENTS");
	for (size_t i = 0; i < n; i++) {
		const struct vm_record *v = &vms[i];
		int64_t end = vm_state_alive(v->state) ? now : v->ended_ms;
		char run[32] = "-";

		if (v->started_ms > 0 && end >= v->started_ms)
			duration(end - v->started_ms, run, sizeof run);
		fprintf(f, "  %-32s %-14s %-12s %-9s $%-9.4f %s\n", v->name, v->zone,
		    vm_state_name(v->state), run, cost_so_far(v, now), v->components);
	}
}

void
report_status(FILE *f, const struct config *cfg, struct ledger *l, int64_t now)
{
	struct vm_record *vms = NULL;
	struct vm_stats s;
	size_t n = 0;

	fprintf(f, "cloud:      project %s, zone %s, %s%s, at most %lld at once for %.4g h each\n",
	    *cfg->project ? cfg->project : "(unset)", cfg->zone, cfg->machine_type,
	    cfg->use_spot ? " Spot" : "", (long long)cfg->max_concurrent, cfg->max_lifetime_hours);
	today(f, cfg, l, now);
	if (ledger_stats(l, &s) == 0)
		fprintf(f,
		    "statistics: %ld created, %ld failed, %ld terminated, %ld preempted, "
		    "%ld orphaned; $%.4f in all\n",
		    s.created, s.failed, s.terminated, s.preempted, s.orphaned, s.total_cost);
	if (ledger_list(l, NULL, 0, &vms, &n) != 0 || n == 0) {
		fprintf(f, "active VMs: none\n");
	} else {
		fprintf(f, "active VMs: %zu\n", n);
		vm_table(f, vms, n, now);
	}
	free(vms);
}

void
report_costs(FILE *f, const struct config *cfg, struct ledger *l, int64_t now, int ndays)
{
	static const enum vm_state all[] = {VM_REQUESTED, VM_CREATING, VM_PROVISIONING, VM_BOOTING,
	    VM_READY, VM_UNHEALTHY, VM_TERMINATING, VM_TERMINATED, VM_FAILED, VM_PREEMPTED,
	    VM_ORPHANED};
	struct vm_record *vms = NULL, *shown;
	struct day_cost *days = NULL;
	size_t n = 0, m = 0;
	int count = 0;
	int64_t since;

	today(f, cfg, l, now);
	if (ledger_days(l, now, ndays, &days, &count) != 0)
		return;
	since = cost_day_start(now);
	for (int i = 1; i < count; i++)
		since = cost_day_start(since - 1);
	if (ledger_list(l, all, sizeof all / sizeof all[0], &vms, &n) == 0) {
		shown = vms;
		for (size_t i = 0; i < n; i++)
			if (vms[i].requested_ms >= since && vms[i].state != VM_FAILED)
				shown[m++] = vms[i];
		fprintf(f, "VMs of the last %d day%s: %s\n", ndays, ndays == 1 ? "" : "s",
		    m == 0 ? "none" : "");
		if (m > 0)
			vm_table(f, shown, m, now);
	}
	fprintf(f, "  %-10s  %s\n", "DAY", "COST");
	for (int i = 0; i < count; i++)
		fprintf(f, "  %-10s  $%.4f\n", days[i].day, days[i].amount);
	free(vms);
	free(days);
}
