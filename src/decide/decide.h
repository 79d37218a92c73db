/*
 * The decision (the original system's "intelligent optimizer"), pure: from
 * the pressure, the VMs alive and in flight, the money and the rules, whether
 * to create a VM now, why or why not in one line, how confident, and which
 * components to move. Every refusal names its rule and its numbers.
 *
 * Confidence: 0.6 at HIGH, 0.8 at CRITICAL; up to +0.15 as the level lasts
 * (full after a minute); +0.05 for each signal that agrees: full stall at
 * least half the HIGH threshold, MemAvailable under 20 %, refaults over
 * 1,000/s or swap-ins over 100/s. At most 1.
 *
 * Components: the smallest set, by priority, whose memory would bring
 * MemAvailable back to the target; when memory is not short (stalls in a
 * cgroup, say), the two first by priority (the original default: vision and
 * chatbots). A component's memory is what moving it would give back: its
 * local copy's PSS now, scaled by what earlier offloads of it actually freed
 * per kB of PSS; else what they freed; else its processes' RSS (its match);
 * else its configured size_mb. One already offloaded (a VM serves it and
 * spillway stopped its local copy) would free nothing more and is not chosen.
 */
#ifndef SPILLWAY_DECIDE_H
#define SPILLWAY_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "pressure/pressure.h"
#include "util/compat.h"

/* What is known of a component's memory now (decide_input.memory). */
struct component_memory {
	bool offloaded;      /* a VM serves it and its local copy does not run: moving it frees
	                        nothing more */
	int64_t measured_kb; /* its local copy's processes' PSS now; 0: not known */
	double freed_ratio;  /* what its earlier offloads freed per kB of PSS; 0: none known */
	int64_t freed_kb;    /* what they freed, on average; 0: none known */
};

/* A component's memory by the rule above, in kB, and where the figure came from. */
int64_t decide_component_kb(const struct component_def *, const struct component_memory *,
    int64_t rss_kb, const char **source);

struct decide_input {
	int64_t now;
	bool stopping; /* spillway is stopping: nothing is created, by hand or not */
	bool enabled;  /* GCP_VM_ENABLED: automatic creation */
	/*
	 * A person asked (manager_create): the pressure, the confidence, the
	 * cooldown, one-at-a-time and GCP_VM_ENABLED do not apply; money, limits,
	 * backoffs, zones and the price do. Its components are `asked`, or chosen
	 * as under pressure when NULL or empty; its confidence is 1.
	 */
	bool by_hand;
	const char *asked;
	enum pressure_level level;
	int64_t level_since;
	const struct pressure_snapshot *snap; /* may be NULL */
	double high_pct;                      /* pressure.high_pct, for the agreement test */
	int alive, in_flight, max_concurrent;
	const char *price_why; /* non-NULL: the price is not known (yet), and why */
	double per_hour, max_price;
	double budget, spent, committed;
	const char *ledger_why; /* non-NULL: spent and committed are not known, and why */
	int64_t max_run_s, min_run_s;
	int64_t cooldown_until;
	const char *cooldown_why;
	int64_t backoff_until;
	const char *backoff_why;
	int zones_available;
	const char *region;
	double min_confidence;
	double target_available_pct;
	const struct component_def *components;
	size_t ncomponents;
	const struct component_memory *memory; /* one per component, or NULL */
};

struct decision {
	bool create;
	double confidence;
	char rule[16];    /* the rule that refused: "disabled", "level", "confidence", "in-flight",
	                     "concurrency", "backoff", "stockout", "cooldown", "price", "budget",
	                     "ledger" */
	char reason[768]; /* a refusal's begins with its rule: "budget: $0.41 left ..." */
	char components[256];
	int64_t run_s;
	double cost;
	double left; /* budget left after this VM */
};

/* A rule holding creation back for a while, as status shows it. */
struct backoff {
	char rule[16]; /* "quota", "failure", "stockout", "cooldown" */
	char zone[64]; /* stockout: the zone skipped */
	int64_t until_ms;
	char why[512];
};

/* The components by priority, lower first; the configuration's order breaks ties. */
void decide_by_priority(const struct component_def *, size_t n, const struct component_def **out);
double decide_confidence(const struct decide_input *);
/* Fills out with comma-separated names; returns how much memory they stand for, in kB. */
int64_t decide_components(const struct decide_input *, char *out, size_t size);
void decide(const struct decide_input *, struct decision *);
/*
 * A refusal by a rule: d->rule set, and d->reason the rule, ": " and the
 * text, so that the reason reads alone in logs and events and nobody who
 * prints it adds the rule again.
 */
void decision_refuse(struct decision *, const char *rule, const char *fmt, ...) PRINTFLIKE(3, 4);

#endif
