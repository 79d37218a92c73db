/*
 * spillway costs [--days N] [--json]: today's spend against the budget, the
 * active VMs' runtime and cost, a table of the last N days, month to date.
 */
#include <stdio.h>

#include "cli/link.h"
#include "cli/report.h"

static void
print_costs(FILE *f, const json_t *doc, bool verbose)
{
	report_costs(f, doc);
}

static int
exec_costs(struct cmd_ctx *ctx, const struct args *a)
{
	long long days = 7;
	char path[64];

	if (args_has(a, 'd') &&
	    cmd_int_arg(&cmd_costs_entry, "--days", args_get(a, 'd'), 1, 366, &days) != 0)
		return EXIT_USAGE;
	snprintf(path, sizeof path, "/v1/costs?days=%lld", days);
	return link_show(ctx, "costs", path, args_has(a, 'j'), print_costs, false);
}

static const struct option costs_options[] = {
    {"days", required_argument, NULL, 'd'},
    {"json", no_argument, NULL, 'j'},
    {0},
};

const struct cmd_entry cmd_costs_entry = {
    .name = "costs",
    .usage = "[--days N] [--json]",
    .summary = "today's spend against the budget, each VM's cost, the last N days (7)",
    .options = costs_options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_costs,
};
