/*
 * spillway emulator: a local Compute Engine until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cli/cmd.h"
#include "emulator/emulator.h"
#include "net/http.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

enum {
	OPT_PORT_FILE = 256,
	OPT_PROJECT,
	OPT_ZONES,
	OPT_BOOT_MS,
	OPT_STOP_MS,
	OPT_GUEST_BOOT_MS,
	OPT_GUEST_PORT,
	OPT_AGENT_PORT,
	OPT_WAIT_MS,
	OPT_NOTICE_MS,
	OPT_FAULTS,
	OPT_REQUEST_LOG,
	OPT_WRITE_CREDS,
	OPT_WRITE_USER_CREDS,
	OPT_SEED,
	OPT_TIME_SCALE,
	OPT_CLOCK_EPOCH,
	OPT_FIREWALL_SOURCE,
	OPT_DENY,
};

static const struct option options[] = {
    {"listen", required_argument, NULL, 'l'},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"project", required_argument, NULL, OPT_PROJECT},
    {"zones", required_argument, NULL, OPT_ZONES},
    {"boot-ms", required_argument, NULL, OPT_BOOT_MS},
    {"stop-ms", required_argument, NULL, OPT_STOP_MS},
    {"guest-boot-ms", required_argument, NULL, OPT_GUEST_BOOT_MS},
    {"guest-port", required_argument, NULL, OPT_GUEST_PORT},
    {"agent-port", required_argument, NULL, OPT_AGENT_PORT},
    {"wait-ms", required_argument, NULL, OPT_WAIT_MS},
    {"preempt-notice-ms", required_argument, NULL, OPT_NOTICE_MS},
    {"faults", required_argument, NULL, OPT_FAULTS},
    {"request-log", required_argument, NULL, OPT_REQUEST_LOG},
    {"write-credentials", required_argument, NULL, OPT_WRITE_CREDS},
    {"write-user-credentials", required_argument, NULL, OPT_WRITE_USER_CREDS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"time-scale", required_argument, NULL, OPT_TIME_SCALE},
    {"clock-epoch", required_argument, NULL, OPT_CLOCK_EPOCH},
    {"firewall-source", required_argument, NULL, OPT_FIREWALL_SOURCE},
    {"deny-permissions", required_argument, NULL, OPT_DENY},
    {0},
};

struct run {
	struct emulator *emu;
	uv_signal_t sigterm, sigint;
};

static void
on_signal(uv_signal_t *s, int signum)
{
	struct run *r = s->data;

	log_info("emulator: %s, shutting down", strsignal(signum));
	emulator_free(r->emu);
	r->emu = NULL;
	uv_close((uv_handle_t *)&r->sigterm, NULL);
	uv_close((uv_handle_t *)&r->sigint, NULL);
}

/* Credentials hold a private key or a refresh token: 0600 from the first byte. */
static int
write_secret(const struct cmd_entry *e, const char *path, char *json)
{
	int error = write_file_atomic(path, json, strlen(json), 0600);

	explicit_bzero(json, strlen(json));
	free(json);
	if (error != 0)
		fprintf(
		    stderr, "spillway emulator: cannot write '%s': %s\n", path, strerror(-error));
	return error;
}

static int
parse_listen(const struct cmd_entry *e, const char *listen, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(listen, ':');
	long long p;
	char probe[80];

	if (colon == NULL || (size_t)(colon - listen) >= hostlen) {
		cmd_usage_error(
		    e, "--listen '%s': expected HOST:PORT, such as 127.0.0.1:0", listen);
		return -EINVAL;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (cmd_int_arg(e, "--listen", colon + 1, 0, 65535, &p) != 0)
		return -EINVAL;
	*port = (int)p;
	/* It hands out tokens that a real client would trust: keep it off the network. */
	snprintf(probe, sizeof probe, strchr(host, ':') ? "http://[%s]/" : "http://%s/", host);
	if (!http_url_is_loopback(probe)) {
		cmd_usage_error(e,
		    "--listen '%s': the emulator listens on loopback addresses only "
		    "(127.0.0.0/8 or ::1)",
		    listen);
		return -EINVAL;
	}
	return 0;
}

static int
exec_emulator(struct cmd_ctx *ctx, const struct args *a)
{
	const struct cmd_entry *e = &cmd_emulator_entry;
	struct emulator_opts o;
	struct clock clock;
	struct run r = {0};
	uv_loop_t loop;
	char host[64], *cause = NULL, line[96];
	const char *v;
	long long n;
	int port, status = EXIT_FAIL;
	static const struct {
		int opt;
		const char *name;
		long long max;
	} durations[] = {{OPT_BOOT_MS, "--boot-ms", 3600000}, {OPT_STOP_MS, "--stop-ms", 3600000},
	    {OPT_GUEST_BOOT_MS, "--guest-boot-ms", 3600000}, {OPT_WAIT_MS, "--wait-ms", 3600000},
	    {OPT_NOTICE_MS, "--preempt-notice-ms", 3600000}};

	emulator_opts_default(&o);
	if (parse_listen(e, args_get(a, 'l') != NULL ? args_get(a, 'l') : "127.0.0.1:0", host,
	        sizeof host, &port) != 0)
		return EXIT_USAGE;
	o.host = host;
	o.port = port;
	if ((v = args_get(a, OPT_PROJECT)) != NULL)
		o.project = v;
	if ((v = args_get(a, OPT_ZONES)) != NULL)
		o.zones = v;
	for (size_t i = 0; i < nitems(durations); i++) {
		if ((v = args_get(a, durations[i].opt)) == NULL)
			continue;
		if (cmd_int_arg(e, durations[i].name, v, 0, durations[i].max, &n) != 0)
			return EXIT_USAGE;
		switch (durations[i].opt) {
		case OPT_BOOT_MS:
			o.boot_ms = n;
			break;
		case OPT_STOP_MS:
			o.stop_ms = n;
			break;
		case OPT_GUEST_BOOT_MS:
			o.guest_boot_ms = n;
			break;
		case OPT_WAIT_MS:
			o.wait_ms = n;
			break;
		default:
			o.preempt_notice_ms = n;
			break;
		}
	}
	if ((v = args_get(a, OPT_GUEST_PORT)) != NULL) {
		if (cmd_int_arg(e, "--guest-port", v, 1, 65535, &n) != 0)
			return EXIT_USAGE;
		o.guest_port = (int)n;
	}
	if ((v = args_get(a, OPT_AGENT_PORT)) != NULL) {
		if (cmd_int_arg(e, "--agent-port", v, 1, 65535, &n) != 0)
			return EXIT_USAGE;
		o.agent_port = (int)n;
	}
	o.firewall_source = args_get(a, OPT_FIREWALL_SOURCE);
	o.denied = args_get(a, OPT_DENY);
	if ((v = args_get(a, OPT_SEED)) != NULL) {
		if (cmd_int_arg(e, "--seed", v, 1, INT64_MAX, &n) != 0)
			return EXIT_USAGE;
		o.seed = (uint64_t)n;
	}
	clock_real(&clock);
	if ((v = args_get(a, OPT_TIME_SCALE)) != NULL) {
		double scale;
		long long epoch = realtime_ns() / NS_PER_S;

		if (parse_double(v, 0.001, 100000, &scale) != 0)
			return cmd_usage_error(e,
			    "invalid value '%s' for --time-scale: expected a number "
			    "from 0.001 to 100000",
			    v);
		if ((v = args_get(a, OPT_CLOCK_EPOCH)) != NULL &&
		    cmd_int_arg(e, "--clock-epoch", v, 0, INT32_MAX, &epoch) != 0)
			return EXIT_USAGE;
		clock_scaled(&clock, scale, epoch * NS_PER_S);
	}
	o.clock = &clock;
	o.faults = args_get(a, OPT_FAULTS);
	o.request_log = args_get(a, OPT_REQUEST_LOG);

	uv_loop_init(&loop);
	if (emulator_new(&loop, &o, &r.emu, &cause) != 0) {
		fprintf(stderr, "spillway emulator: %s\n", cause);
		free(cause);
		status = EXIT_USAGE;
		goto out;
	}
	if ((v = args_get(a, OPT_WRITE_CREDS)) != NULL &&
	    write_secret(e, v, emulator_service_account_json(r.emu)) != 0)
		goto fail;
	if ((v = args_get(a, OPT_WRITE_USER_CREDS)) != NULL &&
	    write_secret(e, v, emulator_user_credentials_json(r.emu)) != 0)
		goto fail;
	if ((v = args_get(a, OPT_PORT_FILE)) != NULL) {
		snprintf(line, sizeof line, "%d\n", emulator_port(r.emu));
		if (write_file_atomic(v, line, strlen(line), 0644) != 0) {
			fprintf(stderr, "spillway emulator: cannot write '%s'\n", v);
			goto fail;
		}
	}
	uv_signal_init(&loop, &r.sigterm);
	uv_signal_init(&loop, &r.sigint);
	r.sigterm.data = r.sigint.data = &r;
	uv_signal_start(&r.sigterm, on_signal, SIGTERM);
	uv_signal_start(&r.sigint, on_signal, SIGINT);
	printf("listening on %s\n", emulator_url(r.emu));
	fflush(stdout);
	uv_run(&loop, UV_RUN_DEFAULT);
	status = EXIT_OK;
	goto out;
fail:
	emulator_free(r.emu);
	uv_run(&loop, UV_RUN_DEFAULT);
out:
	uv_loop_close(&loop);
	return status;
}

const struct cmd_entry cmd_emulator_entry = {
    .name = "emulator",
    .usage =
        "[--listen HOST:PORT] [--port-file F] [--project P] [--zones Z1,Z2]\n"
        "        [--boot-ms N] [--stop-ms N] [--guest-boot-ms N] [--guest-port N] [--agent-port N]\n"
        "        [--wait-ms N] [--preempt-notice-ms N] [--faults SPEC] "
        "[--request-log F]\n"
        "        [--write-credentials F] [--write-user-credentials F] [--seed N]\n"
        "        [--time-scale X [--clock-epoch UNIX-SECONDS]]\n"
        "        [--firewall-source CIDR] [--deny-permissions P1,P2]",
    .summary = "run a local Compute Engine (API, OAuth, metadata server, guests)",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = 0,
    .exec = exec_emulator,
};
