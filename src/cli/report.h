/*
 * The documents of api/view.h for people: aligned tables, colour only on a
 * terminal and never with NO_COLOR. status, costs, create, terminate and the
 * demo print through here, from a daemon's answer or one built locally.
 */
#ifndef SPILLWAY_REPORT_H
#define SPILLWAY_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* Whether f gets colour: a terminal, and NO_COLOR unset. */
bool report_color(FILE *f);
void report_status(FILE *, const json_t *status, bool verbose);
void report_costs(FILE *, const json_t *costs);
void report_routes(FILE *, const json_t *routes);
void report_images(FILE *, const json_t *images);
/* A table of VM documents; verbose adds labels, requestId and reason under each. */
void report_vms(FILE *, const json_t *vms, bool verbose);
/* A VM's offloads (what stopping each local copy freed), a line each, indented. */
void report_offloads(FILE *, const json_t *offloads, int indent);
/* A document as the --json output: indented, one trailing newline. */
void report_json(FILE *, const json_t *);
/* The same of one field: {"schema_version": VIEW_SCHEMA_VERSION, key: value}. */
void report_json_field(FILE *, const char *key, const json_t *value);
/*
 * The line of a command that follows a VM, "[  12.3s] STATE  ZONE: detail"
 * (the time since t0_ns), when its state or zone is not the one in last
 * (the caller's, kept between calls); detail may be NULL.
 */
void report_progress(FILE *, int64_t t0_ns, const char *state, const char *zone, const char *detail,
    char *last, size_t lastlen);
/* "1h02m" or "3m05s". */
void report_duration(long long seconds, char *out, size_t size);

#endif
