/*
 * The command table, after tmux's cmd_entry: each subcommand is one file with
 * one `const struct cmd_entry`, and main.c parses its options, loads the
 * configuration when the entry asks for it, and calls exec.
 *
 * Exit statuses, the same for every command (see spillway(1)):
 *	0 done, 1 failed, 2 bad usage or configuration (nothing was done),
 *	3 refused by a rule (budget, limits).
 */
#ifndef SPILLWAY_CMD_H
#define SPILLWAY_CMD_H

#include <getopt.h>
#include <stdbool.h>

#include "config/config.h"
#include "util/compat.h"

#define EXIT_OK      0
#define EXIT_FAIL    1
#define EXIT_USAGE   2
#define EXIT_REFUSED 3

/* What the dispatcher parsed: each option by its short letter or code. */
#define ARGS_MAX 512 /* option codes: letters, or 256 and up for long-only options */

struct args {
	const char **values[ARGS_MAX]; /* NULL-terminated lists, in command-line order */
	int count[ARGS_MAX];
	char **pos; /* positional arguments */
	int npos;
};

/* The value given last for an option, or NULL. */
const char *args_get(const struct args *, int opt);
bool args_has(const struct args *, int opt);
/* Every value given for a repeatable option, NULL-terminated (never NULL). */
const char *const *args_all(const struct args *, int opt);

#define CMD_CONFIG 0x1 /* load the configuration first; a bad one exits 2 */

struct cmd_ctx {
	struct config cfg; /* loaded when the entry has CMD_CONFIG */
	const struct config_args *config_args;
};

struct cmd_entry {
	const char *name;
	const char *usage;   /* options and arguments, for help */
	const char *summary; /* one line */
	const struct option *options;
	int min_args, max_args; /* positional arguments */
	int flags;
	int (*exec)(struct cmd_ctx *, const struct args *);
};

/* Print "spillway NAME: message" and return EXIT_USAGE. */
int cmd_usage_error(const struct cmd_entry *, const char *fmt, ...) PRINTFLIKE(2, 3);
/* Parse a whole number option value, or print the error. 0 or -EINVAL. */
int cmd_int_arg(const struct cmd_entry *, const char *option, const char *value, long long min,
    long long max, long long *out);

extern const struct cmd_entry cmd_cloud_entry;
extern const struct cmd_entry cmd_config_entry;
extern const struct cmd_entry cmd_costs_entry;
extern const struct cmd_entry cmd_create_entry;
extern const struct cmd_entry cmd_demo_entry;
extern const struct cmd_entry cmd_doctor_entry;
extern const struct cmd_entry cmd_emulator_entry;
extern const struct cmd_entry cmd_image_entry;
extern const struct cmd_entry cmd_pressure_entry;
extern const struct cmd_entry cmd_run_entry;
extern const struct cmd_entry cmd_status_entry;
extern const struct cmd_entry cmd_routes_entry;
extern const struct cmd_entry cmd_stop_entry;
extern const struct cmd_entry cmd_terminate_entry;

#endif
