#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "decide/decide.h"
#include "ledger/cost.h"
#include "util/xmalloc.h"

#define BASE_HIGH        0.6
#define BASE_CRITICAL    0.8
#define DURATION_BONUS   0.15
#define DURATION_FULL_MS 60000
#define AGREEMENT_BONUS  0.05

double
decide_confidence(const struct decide_input *in)
{
	const struct pressure_snapshot *s = in->snap;
	double c;
	int64_t held = in->now - in->level_since;

	if (in->level < PRESSURE_HIGH)
		return 0;
	c = in->level == PRESSURE_CRITICAL ? BASE_CRITICAL : BASE_HIGH;
	if (held > 0)
		c += DURATION_BONUS *
		    (held >= DURATION_FULL_MS ? 1.0 : (double)held / DURATION_FULL_MS);
	if (s != NULL) {
		if (s->full_pct >= in->high_pct / 2)
			c += AGREEMENT_BONUS;
		if (s->available_pct >= 0 && s->available_pct < 20)
			c += AGREEMENT_BONUS;
		if (s->refault_rate > 1000 || s->swapin_rate > 100)
			c += AGREEMENT_BONUS;
	}
	return c > 1 ? 1 : c;
}

static int64_t
measured_kb(const struct decide_input *in, const char *name)
{
	if (in->snap == NULL)
		return 0;
	for (int i = 0; i < in->snap->ncomponents; i++)
		if (strcmp(in->snap->components[i].name, name) == 0)
			return in->snap->components[i].rss_kb;
	return 0;
}

void
decide_by_priority(const struct component_def *list, size_t n, const struct component_def **out)
{
	for (size_t i = 0; i < n; i++) {
		size_t at = i;

		for (; at > 0 && out[at - 1]->priority > list[i].priority; at--)
			out[at] = out[at - 1];
		out[at] = &list[i];
	}
}

int64_t
decide_component_kb(const struct component_def *def, const struct component_memory *mem,
    int64_t rss_kb, const char **source)
{
	if (mem != NULL && mem->measured_kb > 0) {
		double ratio = mem->freed_ratio;

		/* What PSS says and what a stop gave back differ (shared pages, caches):
		 * learned, within bounds a single odd stop cannot push it past. */
		if (ratio > 0) {
			*source = "measured, as earlier offloads freed";
			return (int64_t)((double)mem->measured_kb *
			    (ratio < 0.25         ? 0.25
			            : ratio > 1.5 ? 1.5
			                          : ratio));
		}
		*source = "measured";
		return mem->measured_kb;
	}
	if (mem != NULL && mem->freed_kb > 0) {
		*source = "what earlier offloads freed";
		return mem->freed_kb;
	}
	if (rss_kb > 0) {
		*source = "measured";
		return rss_kb;
	}
	*source = "configured";
	return def->size_mb * 1024;
}

int64_t
decide_components(const struct decide_input *in, char *out, size_t size)
{
	const struct component_def **order = xcalloc(in->ncomponents + 1, sizeof *order);
	int64_t need = 0, got = 0;
	size_t n = in->ncomponents, used = 0, chosen = 0;

	out[0] = '\0';
	decide_by_priority(in->components, n, order);
	if (in->snap != NULL && in->snap->mem_total_kb > 0)
		need =
		    (int64_t)(in->target_available_pct / 100.0 * (double)in->snap->mem_total_kb) -
		    in->snap->mem_available_kb;
	for (size_t i = 0; i < n; i++) {
		const struct component_memory *mem =
		    in->memory != NULL ? &in->memory[order[i] - in->components] : NULL;
		const char *source;

		if (mem != NULL && mem->offloaded)
			continue;
		if (need > 0 ? got >= need : chosen >= 2)
			break;
		used += (size_t)snprintf(out + used, used < size ? size - used : 0, "%s%s",
		    chosen ? "," : "", order[i]->name);
		got += decide_component_kb(order[i], mem, measured_kb(in, order[i]->name), &source);
		chosen++;
	}
	free(order);
	return got;
}

void
decision_refuse(struct decision *d, const char *rule, const char *fmt, ...)
{
	va_list ap;
	int n;

	d->create = false;
	snprintf(d->rule, sizeof d->rule, "%s", rule);
	n = snprintf(d->reason, sizeof d->reason, "%s: ", rule);
	va_start(ap, fmt);
	vsnprintf(d->reason + n, sizeof d->reason - (size_t)n, fmt, ap);
	va_end(ap);
}

void
decide(const struct decide_input *in, struct decision *d)
{
	const struct pressure_snapshot *s = in->snap;
	struct budget_ask ask = {.budget = in->budget,
	    .spent = in->spent,
	    .committed = in->committed,
	    .per_hour = in->per_hour,
	    .max_run_s = in->max_run_s,
	    .min_run_s = in->min_run_s};
	struct budget_plan plan;
	char seen[256], size[32] = "";
	int64_t kb;

	memset(d, 0, sizeof *d);
	snprintf(seen, sizeof seen,
	    "pressure %s for %" PRId64 " s (some %.1f%%, full %.1f%%, "
	    "MemAvailable %.1f%%)",
	    pressure_level_name(in->level),
	    in->now > in->level_since ? (in->now - in->level_since) / 1000 : 0,
	    s != NULL ? s->some_pct : 0, s != NULL ? s->full_pct : 0,
	    s != NULL ? s->available_pct : -1);
	d->confidence = in->by_hand ? 1.0 : decide_confidence(in);
#define REFUSE(r, ...)                                                                             \
	do {                                                                                       \
		decision_refuse(d, r, __VA_ARGS__);                                                \
		return;                                                                            \
	} while (0)
	if (in->stopping)
		REFUSE("disabled", "spillway is stopping");
	if (!in->by_hand) {
		if (!in->enabled)
			REFUSE("disabled", "GCP_VM_ENABLED is false (%s)", seen);
		if (in->level < PRESSURE_HIGH)
			REFUSE("level", "%s; a VM is created at HIGH or above", seen);
		if (d->confidence < in->min_confidence)
			REFUSE("confidence", "%.2f is below the minimum %.2f (%s)", d->confidence,
			    in->min_confidence, seen);
		if (in->in_flight > 0)
			REFUSE("in-flight",
			    "%d VM%s already being created or booting; it should "
			    "relieve the pressure first",
			    in->in_flight, in->in_flight > 1 ? "s are" : " is");
	}
	if (in->alive >= in->max_concurrent)
		REFUSE("concurrency", "max concurrent %d reached (%d alive)", in->max_concurrent,
		    in->alive);
	if (in->now < in->backoff_until)
		REFUSE("backoff", "%s; no VM before %" PRId64 " s from now",
		    in->backoff_why != NULL ? in->backoff_why : "recent failures",
		    (in->backoff_until - in->now + 999) / 1000);
	if (in->zones_available == 0)
		REFUSE("stockout", "every zone of %s lacks capacity for now",
		    in->region != NULL ? in->region : "the region");
	if (!in->by_hand && in->now < in->cooldown_until)
		REFUSE("cooldown", "%s; next VM in %" PRId64 " s",
		    in->cooldown_why != NULL ? in->cooldown_why : "a VM changed just now",
		    (in->cooldown_until - in->now + 999) / 1000);
	if (in->price_why != NULL)
		REFUSE("price", "%s", in->price_why);
	if (!(in->per_hour > 0 && in->per_hour <= PRICE_MAX_PER_HOUR))
		REFUSE("price", "$%.4f/h is not a price a VM can have; the price catalog is wrong",
		    in->per_hour);
	if (in->per_hour > in->max_price)
		REFUSE("price", "$%.4f/h is above GCP_VM_MAX_PRICE $%.4f/h", in->per_hour,
		    in->max_price);
	if (in->ledger_why != NULL)
		REFUSE("ledger", "today's spend cannot be read: %s", in->ledger_why);
	budget_plan(&ask, &plan);
	if (!plan.ok)
		REFUSE("budget", "%s", plan.why);
#undef REFUSE
	if (in->by_hand && in->asked != NULL && *in->asked != '\0') {
		snprintf(d->components, sizeof d->components, "%s", in->asked);
		kb = -1;
	} else {
		kb = decide_components(in, d->components, sizeof d->components);
	}
	d->create = true;
	d->run_s = plan.run_s;
	d->cost = plan.cost;
	d->left = plan.left - plan.cost;
	if (in->by_hand)
		snprintf(seen, sizeof seen, "by hand");
	if (kb >= 0)
		snprintf(size, sizeof size, " (%.1f GiB)", (double)kb / 1048576.0);
	snprintf(d->reason, sizeof d->reason,
	    "%s; confidence %.2f; offloading %s%s; $%.4f/h for %.2f h = $%.2f, $%.2f left today",
	    seen, d->confidence, d->components, size, in->per_hour, (double)plan.run_s / 3600.0,
	    plan.cost, d->left);
}
