/*
 * spillway's entry point: global options, the command table, dispatch.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

static const struct cmd_entry *const commands[] = {
    &cmd_cloud_entry,
    &cmd_config_entry,
    &cmd_costs_entry,
    &cmd_create_entry,
    &cmd_demo_entry,
    &cmd_doctor_entry,
    &cmd_emulator_entry,
    &cmd_image_entry,
    &cmd_pressure_entry,
    &cmd_routes_entry,
    &cmd_run_entry,
    &cmd_status_entry,
    &cmd_stop_entry,
    &cmd_terminate_entry,
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: spillway [--config FILE] [--set KEY=VALUE]... [--project P] "
	    "[--region R] [--zone Z]\n"
	    "                [--log-level LEVEL] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < nitems(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(f,
	    "\n'spillway COMMAND --help' shows a command's options; spillway(1) has the "
	    "rest.\n");
}

static void
cmd_help(FILE *f, const struct cmd_entry *e)
{
	fprintf(f,
	    "usage: spillway %s %s\n%s\nexit status: 0 done, 1 failed, 2 bad usage or "
	    "configuration, 3 refused by a rule; see spillway(1)\n",
	    e->name, e->usage, e->summary);
}

int
cmd_usage_error(const struct cmd_entry *e, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "spillway %s: ", e->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: spillway %s %s\n", e->name, e->usage);
	return EXIT_USAGE;
}

int
cmd_int_arg(const struct cmd_entry *e, const char *option, const char *value, long long min,
    long long max, long long *out)
{
	int64_t v;

	if (parse_int64(value, min, max, &v) != 0) {
		cmd_usage_error(e,
		    "invalid value '%s' for %s: expected a whole number from %lld to %lld", value,
		    option, min, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

const char *
args_get(const struct args *a, int opt)
{
	int n = a->count[opt];

	return n > 0 ? a->values[opt][n - 1] : NULL;
}

bool
args_has(const struct args *a, int opt)
{
	return a->count[opt] > 0;
}

const char *const *
args_all(const struct args *a, int opt)
{
	static const char *none[] = {NULL};

	return a->count[opt] > 0 ? a->values[opt] : none;
}

static void
args_add(struct args *a, int opt, const char *value)
{
	int k = opt;

	if (k < 0 || k >= ARGS_MAX)
		fatalx("option code %d out of range", k);
	a->values[k] = xreallocarray(a->values[k], (size_t)a->count[k] + 2, sizeof(char *));
	a->values[k][a->count[k]++] = value != NULL ? value : "";
	a->values[k][a->count[k]] = NULL;
}

static void
args_free(struct args *a)
{
	for (int i = 0; i < ARGS_MAX; i++)
		free(a->values[i]);
}

/* Build getopt's short-option string from the long options' short letters. */
static char *
short_options(const struct option *opts)
{
	char *s = xcalloc(1, 2 + 3 * 64), *p = s;

	/* Options may follow the arguments ("cloud get vm-1 --json"); ':' reports a missing value.
	 */
	*p++ = ':';
	for (const struct option *o = opts; o != NULL && o->name != NULL; o++) {
		if (o->val > ' ' && o->val < 127) {
			*p++ = (char)o->val;
			if (o->has_arg == required_argument)
				*p++ = ':';
		}
	}
	return s;
}

static int
parse_args(const struct cmd_entry *e, int argc, char **argv, struct args *a)
{
	static const struct option help_only[] = {{"help", no_argument, NULL, 'h'}, {0}};
	struct option *opts;
	size_t n = 0;
	char *shorts;
	int c, error = 0;

	for (const struct option *o = e->options; o != NULL && o->name != NULL; o++)
		n++;
	opts = xcalloc(n + 2, sizeof *opts);
	if (n > 0)
		memcpy(opts, e->options, n * sizeof *opts);
	opts[n] = help_only[0];
	shorts = short_options(opts);
	optind = 0; /* 0: glibc starts afresh, forgetting the global parse's "+" */
	opterr = 0;
	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if (c == 'h') {
			cmd_help(stdout, e);
			error = -1;
			break;
		}
		if (c == '?' || c == ':') {
			const char *bad = argv[optind - 1];

			if (c == ':')
				cmd_usage_error(e, "option '%s' needs a value", bad);
			else
				cmd_usage_error(e, "unknown option '%s'", bad);
			error = -EINVAL;
			break;
		}
		args_add(a, c, optarg);
	}
	free(shorts);
	free(opts);
	if (error != 0)
		return error;
	a->pos = argv + optind;
	a->npos = argc - optind;
	if (a->npos < e->min_args || (e->max_args >= 0 && a->npos > e->max_args)) {
		if (a->npos < e->min_args)
			cmd_usage_error(e, "missing argument");
		else
			cmd_usage_error(e, "unexpected argument '%s'", a->pos[e->max_args]);
		return -EINVAL;
	}
	return 0;
}

enum {
	OPT_CONFIG = 256,
	OPT_SET,
	OPT_PROJECT,
	OPT_REGION,
	OPT_ZONE,
	OPT_LOG_LEVEL,
	OPT_VERSION,
	OPT_SEED_VERBOSE,
	OPT_SEED_CREATE,
	OPT_SEED_TERMINATE,
	OPT_SEED_COSTS,
};

/* The command by its name; else why not, with the nearest name when it is a typo. */
static const struct cmd_entry *
find_command(const char *name)
{
	const struct cmd_entry *near = NULL;
	size_t best = 3; /* a typo or two, not another word */

	for (size_t i = 0; i < nitems(commands); i++)
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i];
	for (size_t i = 0; i < nitems(commands); i++) {
		size_t d = str_distance(name, commands[i]->name);

		if (d < best) {
			best = d;
			near = commands[i];
		}
	}
	if (near != NULL)
		fprintf(stderr, "spillway: unknown command '%s'; did you mean '%s'?\n", name,
		    near->name);
	else
		fprintf(
		    stderr, "spillway: unknown command '%s'; 'spillway help' lists them\n", name);
	return NULL;
}

/*
 * The original status tool's flags are commands: "spillway --create ARGS" is
 * "spillway create ARGS", --verbose is "status -v". The new argv (the caller
 * frees it, not its strings) and its length.
 */
static const char **
seeded(const char *seed, int rest, char **args, int *argc)
{
	const char **argv = xcalloc((size_t)rest + 4, sizeof *argv);
	int n = 0;

	argv[n++] = seed;
	if (strcmp(seed, "status") == 0)
		argv[n++] = "-v";
	for (int i = 0; i < rest; i++)
		argv[n++] = args[i];
	*argc = n;
	return argv;
}

/* What comes before the command: the configuration's file and sets, the log level, a seed flag. */
struct globals {
	struct config_args cargs;
	const char **sets; /* NULL-terminated, each the caller's to free */
	size_t nsets;
	enum log_level level;
	bool level_given;
	const char *seed; /* a flag of the original tool that stands for a command */
};

/* Parse them; -1 to go on to the command, else the exit status now. */
static int
parse_globals(int argc, char **argv, struct globals *g)
{
	static const struct option global[] = {
	    {"config", required_argument, NULL, OPT_CONFIG},
	    {"set", required_argument, NULL, OPT_SET},
	    {"project", required_argument, NULL, OPT_PROJECT},
	    {"region", required_argument, NULL, OPT_REGION},
	    {"zone", required_argument, NULL, OPT_ZONE},
	    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	    {"version", no_argument, NULL, OPT_VERSION},
	    /* The original status tool's flags: each is a command. */
	    {"verbose", no_argument, NULL, OPT_SEED_VERBOSE},
	    {"create", no_argument, NULL, OPT_SEED_CREATE},
	    {"terminate", no_argument, NULL, OPT_SEED_TERMINATE},
	    {"costs", no_argument, NULL, OPT_SEED_COSTS},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", global, NULL)) != -1) {
		char *set = NULL;

		switch (c) {
		case OPT_CONFIG:
			g->cargs.file = optarg;
			break;
		case OPT_SET:
			set = xstrdup(optarg);
			break;
		case OPT_PROJECT:
			set = xasprintf("gcp.project=%s", optarg);
			break;
		case OPT_REGION:
			set = xasprintf("gcp.region=%s", optarg);
			break;
		case OPT_ZONE:
			set = xasprintf("gcp.zone=%s", optarg);
			break;
		case OPT_LOG_LEVEL:
			if (log_parse_level(optarg, &g->level) != 0) {
				fprintf(stderr,
				    "spillway: invalid log level '%s'; allowed: error, "
				    "warning, info, debug\n",
				    optarg);
				return EXIT_USAGE;
			}
			log_set_level(g->level);
			g->level_given = true;
			break;
		case OPT_VERSION:
			printf("spillway %s\n", SPILLWAY_VERSION);
			return EXIT_OK;
		case OPT_SEED_VERBOSE:
			g->seed = "status";
			break;
		case OPT_SEED_CREATE:
			g->seed = "create";
			break;
		case OPT_SEED_TERMINATE:
			g->seed = "terminate";
			break;
		case OPT_SEED_COSTS:
			g->seed = "costs";
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			fprintf(stderr, "spillway: unknown or incomplete option '%s'\n",
			    argv[optind - 1]);
			usage(stderr);
			return EXIT_USAGE;
		}
		if (set != NULL) {
			g->sets = xreallocarray(g->sets, g->nsets + 2, sizeof *g->sets);
			g->sets[g->nsets++] = set;
			g->sets[g->nsets] = NULL;
		}
		if (g->seed != NULL)
			break; /* what follows is the command's */
	}
	g->cargs.sets = g->sets;
	return -1;
}

int
main(int argc, char **argv)
{
	struct globals g = {.sets = xcalloc(1, sizeof *g.sets), .level = LOG_LEVEL_INFO};
	const struct cmd_entry *e = NULL;
	struct cmd_ctx ctx;
	struct args a;
	const char **seed_argv = NULL;
	enum log_level level;
	char *cause = NULL;
	int c, status;

	signal(SIGPIPE, SIG_IGN);
	jx_init();
	log_init("spillway", LOG_LEVEL_INFO);
	memset(&ctx, 0, sizeof ctx);
	memset(&a, 0, sizeof a);
	if ((status = parse_globals(argc, argv, &g)) >= 0)
		goto out;
	status = EXIT_USAGE;
	if (g.seed != NULL) {
		argv = (char **)(seed_argv = seeded(g.seed, argc - optind, argv + optind, &argc));
		optind = 0;
	}
	if (optind >= argc) {
		usage(stderr);
		goto out;
	}
	if (strcmp(argv[optind], "help") == 0) {
		usage(stdout);
		status = EXIT_OK;
		goto out;
	}
	if ((e = find_command(argv[optind])) == NULL)
		goto out;
	if ((c = parse_args(e, argc - optind, argv + optind, &a)) != 0) {
		status = c == -1 ? EXIT_OK : EXIT_USAGE;
		goto out;
	}
	ctx.config_args = &g.cargs;
	if (e->flags & CMD_CONFIG) {
		if (config_load(&ctx.cfg, &g.cargs, NULL, &cause) != 0) {
			fprintf(stderr, "spillway: %s\n", cause);
			goto out;
		}
		/* --log-level beats the configured level. */
		if (!g.level_given && log_parse_level(ctx.cfg.log_level, &level) == 0)
			log_set_level(level);
	}
	status = e->exec(&ctx, &a);
out:
	config_free(&ctx.cfg);
	args_free(&a);
	for (size_t i = 0; i < g.nsets; i++)
		free((char *)g.sets[i]);
	free(g.sets);
	free(seed_argv);
	free(cause);
	log_close();
	return status;
}
