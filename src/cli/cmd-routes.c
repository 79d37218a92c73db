/*
 * spillway routes [--json]: each component's route, where a new connection
 * goes now and why, and its traffic. From the daemon when one runs; else what
 * is configured, with nothing listening.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/link.h"
#include "cli/report.h"

static void
print_routes(FILE *f, const json_t *doc, bool verbose)
{
	report_routes(f, json_object_get(doc, "routes"));
}

static int
exec_routes(struct cmd_ctx *ctx, const struct args *a)
{
	return link_show(ctx, "routes", "/v1/routes", args_has(a, 'j'), print_routes, false);
}

static const struct option routes_options[] = {
    {"json", no_argument, NULL, 'j'},
    {0},
};

const struct cmd_entry cmd_routes_entry = {
    .name = "routes",
    .usage = "[--json]",
    .summary = "each component's route: where connections go now and why, and their traffic",
    .options = routes_options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_routes,
};
