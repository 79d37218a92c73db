/*
 * spillway config [--json]: every effective setting and where it came from.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cmd.h"
#include "util/jx.h"

static int
exec_config(struct cmd_ctx *ctx, const struct args *a)
{
	if (args_has(a, 'j')) {
		json_t *v = config_to_json(&ctx->cfg);
		char *s = json_dumps(v, JSON_INDENT(2));

		puts(s);
		free(s);
		json_decref(v);
	} else {
		if (ctx->cfg.file != NULL)
			printf("config file: %s\n\n", ctx->cfg.file);
		config_print(&ctx->cfg, stdout);
	}
	return EXIT_OK;
}

static const struct option options[] = {
    {"json", no_argument, NULL, 'j'},
    {0},
};

const struct cmd_entry cmd_config_entry = {
    .name = "config",
    .usage = "[--json]",
    .summary = "print every effective setting and where it came from",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_config,
};
