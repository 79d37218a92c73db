/*
 * Faults the emulator injects, from a spec such as
 *
 *	error503=0.2,rate429=0.1,latency=50-400,quota-cpus=8,stockout=us-central1-a
 *
 *	error500=P error503=P   a compute or billing call fails with 500/503 (for a
 *	                        mutation, half of these hit after it took effect:
 *	                        the answer is lost, not the change)
 *	rate429=P rate403=P     429, or 403 rateLimitExceeded
 *	huge=P                  200 with 12 MB that is no JSON
 *	endless=P               200 with a body that never ends
 *	latency=MS[-MS]         added before each compute answer
 *	quota-cpus=N            the region's CPUS quota: inserts past it fail
 *	stockout=Z[+Z...]       inserts there end in ZONE_RESOURCE_POOL_EXHAUSTED
 *	stockout-details=Z[+Z]  ... in ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS
 *	token-lifetime=S        issued access tokens live S seconds (default 3599)
 *	preempt=P[@S]           each Spot instance is preempted with probability P,
 *	                        at a random time within S seconds of RUNNING (60)
 *	guest-unhealthy=P       the guest never becomes healthy
 *	guest-die=P[@S]         the guest turns unhealthy within S seconds (600)
 *
 * Pure parsing; the emulator rolls the dice.
 */
#ifndef SPILLWAY_FAULTS_H
#define SPILLWAY_FAULTS_H

#include <stdbool.h>
#include <stdint.h>

struct faults {
	double error500, error503, rate429, rate403, huge, endless;
	int64_t latency_min_ms, latency_max_ms;
	int64_t quota_cpus; /* -1: no quota */
	char **stockout;
	char **stockout_details;
	int64_t token_lifetime_s;
	int64_t catalog_page; /* the billing catalog's SKUs a page at most (Google: 5,000) */
	double preempt;
	int64_t preempt_within_s;
	double guest_unhealthy;
	double guest_die;
	int64_t guest_die_within_s;
};

void faults_init(struct faults *);
void faults_free(struct faults *);
/* Parse into a fresh struct; on error *f is left as it was. */
int faults_parse(const char *spec, struct faults *f, char **cause);
/* The spec back, normalised ("" when nothing is injected). Caller frees. */
char *faults_format(const struct faults *);
/* 0: no stockout; 1: plain; 2: with details. */
int faults_stockout(const struct faults *, const char *zone);

#endif
