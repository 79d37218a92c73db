/*
 * spillway status [-v] [--json]: the settings, the pressure, what runs and
 * what it costs, what holds creation back. From the daemon when one runs,
 * else from the ledger; the same document either way (docs/api.md).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/link.h"
#include "cli/report.h"

static int
exec_status(struct cmd_ctx *ctx, const struct args *a)
{
	return link_show(
	    ctx, "status", "/v1/status", args_has(a, 'j'), report_status, args_has(a, 'v'));
}

static const struct option status_options[] = {
    {"verbose", no_argument, NULL, 'v'},
    {"json", no_argument, NULL, 'j'},
    {0},
};

const struct cmd_entry cmd_status_entry = {
    .name = "status",
    .usage = "[-v | --verbose] [--json]",
    .summary = "settings, pressure, active VMs, statistics, today's spend, backoffs",
    .options = status_options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_status,
};
