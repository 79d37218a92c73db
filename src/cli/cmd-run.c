/*
 * spillway run [--provider gce|emulator] [--keep] [--foreground]
 *              [--replay TRACE [--speed X]] [--time-scale X [--clock-epoch SECONDS]]
 *
 * The daemon. SIGTERM or SIGINT: delete the VMs (unless --keep) and exit;
 * a second one exits at once, leaving them for the next start. SIGHUP:
 * reload the configuration. One daemon per state directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "api/control.h"
#include "cli/cmd.h"
#include "cli/local-emulator.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/daemon.h"

enum {
	OPT_PROVIDER = 256,
	OPT_KEEP,
	OPT_DRAIN_POOL,
	OPT_FOREGROUND,
	OPT_REPLAY,
	OPT_SPEED,
	OPT_SCALE,
	OPT_EPOCH
};

struct run {
	uv_loop_t loop;
	struct clock clock;
	struct daemon *d;
	struct control *ctl;
	struct cmd_ctx *ctx;
	struct config
	    reloaded[2]; /* the live one and the one before (the daemon may still read it) */
	int nreload;
	uv_signal_t sig[3];
	int signals;
	int status;
	bool emulator;             /* --provider emulator */
	struct local_emulator emu; /* its Compute Engine, then */
};

static void
close_signals(struct run *r)
{
	for (int i = 0; i < 3; i++)
		if (!uv_is_closing((uv_handle_t *)&r->sig[i]))
			uv_close((uv_handle_t *)&r->sig[i], NULL);
}

static void
on_stopped(void *arg)
{
	struct run *r = arg;

	log_info("stopped");
	close_signals(r);
	control_free(r->ctl); /* after the daemon: its last events reach the streams */
	r->ctl = NULL;
	daemon_free(r->d);
	r->d = NULL;
	local_emulator_stop(&r->emu);
}

/*
 * Against the emulator, fake VMs and spend stay out of the user's ledger: a
 * state directory (and socket) of its own, unless one was given.
 */
static void
emulator_state(struct config *cfg, bool emulator)
{
	if (!emulator || config_source_of(cfg, "spillway.state_dir") != CONFIG_DEFAULT)
		return;
	{
		char *dir = xasprintf("%s/emulator", cfg->state_dir);

		free(cfg->state_dir);
		cfg->state_dir = dir;
	}
	if (config_source_of(cfg, "spillway.socket") == CONFIG_DEFAULT) {
		free(cfg->socket_path);
		cfg->socket_path = xasprintf("%s/control.sock", cfg->state_dir);
	}
}

static void
reload(struct run *r)
{
	struct config *next = &r->reloaded[r->nreload % 2];
	char *cause = NULL;

	if (r->nreload >= 2)
		config_free(next);
	if (config_load(next, r->ctx->config_args, NULL, &cause) != 0) {
		log_warnx("the new configuration is refused, keeping the old one: %s", cause);
		free(cause);
		memset(next, 0, sizeof *next);
		return;
	}
	emulator_state(next, r->emulator);
	if (daemon_reload(r->d, next, &cause) != 0) {
		log_warnx("the new configuration is refused, keeping the old one: %s", cause);
		free(cause);
		config_free(next);
		memset(next, 0, sizeof *next);
		return;
	}
	r->nreload++;
}

static void
on_signal(uv_signal_t *h, int signum)
{
	struct run *r = h->data;

	if (signum == SIGHUP) {
		reload(r);
		return;
	}
	if (++r->signals > 1) {
		log_warnx("%s again: exiting now; the next start finds the VMs", strsignal(signum));
		exit(EXIT_FAIL);
	}
	log_info("%s: shutting down", strsignal(signum));
	daemon_stop(r->d, on_stopped, r);
}

/* spillway stop (POST /v1/stop): as SIGTERM, or as SIGTERM after run --keep. */
static void
on_stop_asked(void *arg, bool keep, bool drain_pool)
{
	struct run *r = arg;

	if (r->signals++ > 0)
		return; /* stopping already */
	log_info("asked to stop%s: shutting down",
	    keep             ? ", keeping the VMs"
	        : drain_pool ? ", the warm pool too"
	                     : "");
	if (keep)
		daemon_set_keep(r->d, true);
	if (drain_pool)
		daemon_set_drain_pool(r->d, true);
	daemon_stop(r->d, on_stopped, r);
}

static void
on_started(void *arg, int error, const char *cause)
{
	struct run *r = arg;

	/* What keeps it from starting is the user's to fix, as a bad configuration is. */
	if (error != 0) {
		log_warnx("cannot start: %s", cause);
		r->status = EXIT_USAGE;
		r->signals = 1;
		daemon_stop(r->d, on_stopped, r);
	}
}

static int
daemonize(const struct config *cfg)
{
	char *log = *cfg->log_file != '\0' ? xstrdup(cfg->log_file)
	                                   : xasprintf("%s/spillway.log", cfg->state_dir);
	pid_t pid;
	int fd;

	mkdir(cfg->state_dir, 0700);
	if ((pid = fork()) < 0) {
		fprintf(stderr, "spillway: cannot fork: %s\n", strerror(errno));
		free(log);
		return -1;
	}
	if (pid > 0) {
		printf("spillway: running as PID %d; log: %s\n", (int)pid, log);
		free(log);
		exit(EXIT_OK);
	}
	setsid();
	if ((fd = open("/dev/null", O_RDWR)) >= 0)
		dup2(fd, STDIN_FILENO);
	if ((fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	free(log);
	return 0;
}

/* The options checked, and the clock they ask for: 0, or the exit status of a usage error. */
static int
run_options(const struct args *a, const char *provider, struct clock *clock, double *speed)
{
	const struct cmd_entry *e = &cmd_run_entry;
	double scale = 1;
	long long epoch = 0;

	if (strcmp(provider, "gce") != 0 && strcmp(provider, "emulator") != 0)
		return cmd_usage_error(e, "--provider '%s': expected gce or emulator", provider);
	if (args_has(a, OPT_SCALE) &&
	    parse_double(args_get(a, OPT_SCALE), 0.001, 100000, &scale) != 0)
		return cmd_usage_error(e,
		    "invalid value '%s' for --time-scale: expected a number from "
		    "0.001 to 100000",
		    args_get(a, OPT_SCALE));
	if (args_has(a, OPT_EPOCH) &&
	    cmd_int_arg(e, "--clock-epoch", args_get(a, OPT_EPOCH), 0, INT32_MAX, &epoch) != 0)
		return EXIT_USAGE;
	if (args_has(a, OPT_SPEED) && parse_double(args_get(a, OPT_SPEED), 0.001, 1e6, speed) != 0)
		return cmd_usage_error(e, "invalid value '%s' for --speed", args_get(a, OPT_SPEED));
	if (args_has(a, OPT_SPEED) && !args_has(a, OPT_REPLAY))
		return cmd_usage_error(e, "--speed goes with --replay");
	if (scale != 1 || args_has(a, OPT_EPOCH))
		clock_scaled(
		    clock, scale, args_has(a, OPT_EPOCH) ? epoch * NS_PER_S : realtime_ns());
	else
		clock_real(clock);
	return 0;
}

static int
exec_run(struct cmd_ctx *ctx, const struct args *a)
{
	const char *provider = args_get(a, OPT_PROVIDER) ? args_get(a, OPT_PROVIDER) : "gce";
	struct daemon_opts o = {0};
	struct run r = {0};
	FILE *logf = NULL;
	char *cause = NULL;
	double speed = 0;
	int lock;
	const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};

	int status;

	if ((status = run_options(a, provider, &r.clock, &speed)) != 0)
		return status;
	emulator_state(&ctx->cfg, strcmp(provider, "emulator") == 0);
	if ((lock = daemon_lock(&ctx->cfg, &cause)) < 0) {
		fprintf(stderr, "spillway: %s\n", cause);
		free(cause);
		return EXIT_USAGE;
	}
	if (!args_has(a, OPT_FOREGROUND)) {
		if (daemonize(&ctx->cfg) != 0)
			return EXIT_FAIL;
		daemon_lock_claim(lock); /* the lock is the child's: kill -TERM names it */
	}
	log_set_timestamps(1);
	if (*ctx->cfg.log_file != '\0' && args_has(a, OPT_FOREGROUND)) {
		if ((logf = fopen(ctx->cfg.log_file, "a")) == NULL) {
			fprintf(stderr, "spillway: cannot write the log file '%s': %s\n",
			    ctx->cfg.log_file, strerror(errno));
			return EXIT_USAGE;
		}
		log_set_file(logf);
	}
	uv_loop_init(&r.loop);
	r.ctx = ctx;
	r.status = EXIT_OK;
	r.emulator = strcmp(provider, "emulator") == 0;
	o.cfg = &ctx->cfg;
	o.clock = &r.clock;
	if (r.emulator)
		o.cloud_at = &r.emu.at;
	o.keep = args_has(a, OPT_KEEP);
	o.drain_pool = args_has(a, OPT_DRAIN_POOL);
	o.replay = args_get(a, OPT_REPLAY);
	o.replay_speed = speed;
	o.event_arg = &r;
	o.on_started = on_started;
	o.on_stop_asked = on_stop_asked;
	/* First: a signal during start-up waits for the loop, and the daemon, to take it. */
	signal(SIGPIPE, SIG_IGN); /* a hook or a peer gone: an error, not death */
	for (int i = 0; i < 3; i++) {
		uv_signal_init(&r.loop, &r.sig[i]);
		r.sig[i].data = &r;
		uv_signal_start(&r.sig[i], on_signal, sigs[i]);
	}
	if ((r.emulator &&
	        local_emulator_start(&r.loop, &r.clock, &ctx->cfg, NULL, &r.emu, &cause) != 0) ||
	    daemon_new(&r.loop, &o, &r.d, &cause) != 0) {
		fprintf(stderr, "spillway: %s\n", cause);
		free(cause);
		local_emulator_stop(&r.emu);
		close_signals(&r);
		r.status = EXIT_USAGE;
		goto out;
	}
	if (control_new(&r.loop, r.d, ctx->cfg.socket_path, &r.ctl, &cause) != 0) {
		log_warnx("the control socket: %s", cause);
		free(cause);
		r.status = EXIT_FAIL;
		r.signals = 1;
		daemon_stop(r.d, on_stopped, &r);
	}
	log_info("spillway %s: running (provider %s, state %s, socket %s)", SPILLWAY_VERSION,
	    provider, ctx->cfg.state_dir, ctx->cfg.socket_path);
	uv_run(&r.loop, UV_RUN_DEFAULT);
out:
	uv_run(&r.loop, UV_RUN_DEFAULT);
	uv_loop_close(&r.loop);
	for (int i = 0; i < 2 && i < r.nreload; i++)
		config_free(&r.reloaded[i]);
	if (logf != NULL)
		fclose(logf);
	daemon_unlock(lock);
	return r.status;
}

static const struct option options[] = {
    {"provider", required_argument, NULL, OPT_PROVIDER},
    {"keep", no_argument, NULL, OPT_KEEP},
    {"drain-pool", no_argument, NULL, OPT_DRAIN_POOL},
    {"foreground", no_argument, NULL, OPT_FOREGROUND},
    {"replay", required_argument, NULL, OPT_REPLAY},
    {"speed", required_argument, NULL, OPT_SPEED},
    {"time-scale", required_argument, NULL, OPT_SCALE},
    {"clock-epoch", required_argument, NULL, OPT_EPOCH},
    {0},
};

const struct cmd_entry cmd_run_entry = {
    .name = "run",
    .usage = "[--provider gce|emulator] [--keep] [--drain-pool] [--foreground]\n"
             "        [--replay TRACE [--speed X]] [--time-scale X [--clock-epoch SECONDS]]",
    .summary = "the daemon: watch pressure, create and delete VMs, keep the ledger",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_run,
};
