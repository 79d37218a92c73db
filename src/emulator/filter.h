/*
 * Compute Engine list filters, evaluated against a resource's JSON. Both of
 * Google's syntaxes (never mixed in one expression):
 *
 *	AIP-160:  labels.env = prod AND (status = RUNNING OR status = STAGING)
 *	          labels.owner:*   name != x   operationType="compute.instances.preempted"
 *	          insertTime > "2024-01-01T00:00:00Z"   NOT status = TERMINATED
 *	          terms side by side are ANDed: (labels.a = b) (status = RUNNING)
 *	regex:    name eq 'spillway-.*' status ne TERMINATED   (whole-value match)
 *
 * A field is a dotted path; through an array it matches if any element does.
 * Pure: no I/O, no clock.
 */
#ifndef SPILLWAY_FILTER_H
#define SPILLWAY_FILTER_H

#include <stdbool.h>

#include <jansson.h>

struct filter;

/* An empty expression (or a NULL filter) matches everything. 0 or -EINVAL and a cause. */
int filter_parse(const char *, struct filter **, char **cause);
bool filter_match(const struct filter *, const json_t *resource);
void filter_free(struct filter *);

#endif
