/*
 * spillway emulator: a local Compute Engine until SIGTERM or SIGINT.
 *
 * --print-env says, as shell exports, all that points spillway at it: its
 * endpoints, a key file of its own, its project, and a state directory and
 * socket of their own (a temporary directory, removed when it stops), so that
 * a user's own ledger never sees its VMs; and the same for Google's gcloud,
 * whose compute commands then work against it. --detach returns once it
 * listens.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "cli/cmd.h"
#include "emulator/emulator.h"
#include "net/http.h"
#include "util/buf.h"
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
	OPT_INSTALL_MS,
	OPT_START_MS,
	OPT_RESUME_MS,
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
	OPT_FIREWALL_PORTS,
	OPT_DENY,
	OPT_GUEST_AGENT,
	OPT_GUEST_BACKEND,
	OPT_PRINT_ENV,
	OPT_DETACH,
};

static const struct option options[] = {
    {"listen", required_argument, NULL, 'l'},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"project", required_argument, NULL, OPT_PROJECT},
    {"zones", required_argument, NULL, OPT_ZONES},
    {"boot-ms", required_argument, NULL, OPT_BOOT_MS},
    {"stop-ms", required_argument, NULL, OPT_STOP_MS},
    {"guest-boot-ms", required_argument, NULL, OPT_GUEST_BOOT_MS},
    {"install-ms", required_argument, NULL, OPT_INSTALL_MS},
    {"start-ms", required_argument, NULL, OPT_START_MS},
    {"resume-ms", required_argument, NULL, OPT_RESUME_MS},
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
    {"firewall-ports", required_argument, NULL, OPT_FIREWALL_PORTS},
    {"deny-permissions", required_argument, NULL, OPT_DENY},
    {"guest-agent", required_argument, NULL, OPT_GUEST_AGENT},
    {"guest-backend", required_argument, NULL, OPT_GUEST_BACKEND},
    {"print-env", no_argument, NULL, OPT_PRINT_ENV},
    {"detach", no_argument, NULL, OPT_DETACH},
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

/* One `export NAME='VALUE'` line, the value (a format) quoted for sh. */
static void PRINTFLIKE(3, 4) put_export(struct buf *b, const char *name, const char *fmt, ...)
{
	va_list ap;
	char *value;

	va_start(ap, fmt);
	value = xvasprintf(fmt, ap);
	va_end(ap);
	buf_printf(b, "export %s='", name);
	for (const char *p = value; *p != '\0'; p++)
		if (*p == '\'')
			buf_addstr(b, "'\\''");
		else
			buf_addch(b, *p);
	buf_addstr(b, "'\n");
	free(value);
}

/* What the user is told once it listens: the exports (dir: their directory), or the URL. */
static char *
announcement(
    struct emulator *emu, const char *project, const char *dir, const char *creds, bool detached)
{
	struct buf b = BUF_INIT(1 << 16);
	const char *url = emulator_url(emu);

	if (dir == NULL) {
		buf_printf(&b, "listening on %s\n", url);
		if (detached)
			buf_printf(&b, "PID %d\n", (int)getpid());
		return buf_detach(&b, NULL);
	}
	buf_printf(&b, "# spillway emulator: listening on %s; its state is under %s\n", url, dir);
	put_export(&b, "SPILLWAY_COMPUTE_ENDPOINT", "%s/compute/v1/", url);
	put_export(&b, "SPILLWAY_BILLING_ENDPOINT", "%s/v1/", url);
	put_export(&b, "GOOGLE_APPLICATION_CREDENTIALS", "%s", creds);
	put_export(&b, "GCP_PROJECT_ID", "%s", project);
	put_export(&b, "SPILLWAY_STATE_DIR", "%s/state", dir);
	put_export(&b, "SPILLWAY_SOCKET", "%s/state/control.sock", dir);
	/* Google's gcloud too: its compute commands, its tokens from the same key, a config of its
	 * own. */
	put_export(&b, "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", "%s/compute/v1/", url);
	put_export(&b, "CLOUDSDK_AUTH_TOKEN_HOST", "%s/token", url);
	put_export(&b, "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", "%s", creds);
	put_export(&b, "CLOUDSDK_CORE_PROJECT", "%s", project);
	put_export(&b, "CLOUDSDK_CONFIG", "%s/gcloud", dir);
	if (detached)
		buf_printf(&b, "export SPILLWAY_EMULATOR_PID=%d\n", (int)getpid());
	return buf_detach(&b, NULL);
}

/*
 * --detach: the parent waits for the child to listen, prints what it says and
 * exits 0 (or the child's status, if it could not start); the child goes on
 * with *ready, where it says it once it listens.
 */
static void
detach(int *ready)
{
	int fds[2];
	pid_t pid;

	if (pipe(fds) != 0 || (pid = fork()) < 0) {
		fprintf(stderr, "spillway emulator: cannot detach: %s\n", strerror(errno));
		exit(EXIT_FAIL);
	}
	if (pid == 0) {
		close(fds[0]);
		setsid();
		*ready = fds[1];
		return;
	}
	close(fds[1]);
	{
		struct buf said = BUF_INIT(1 << 16);
		char chunk[4096];
		ssize_t n;
		int status = 0;

		while ((n = read(fds[0], chunk, sizeof chunk)) > 0)
			buf_add(&said, chunk, (size_t)n);
		if (said.len == 0) {
			waitpid(pid, &status, 0);
			exit(WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status)
			                                                   : EXIT_FAIL);
		}
		fwrite(buf_str(&said), 1, said.len, stdout);
		exit(EXIT_OK);
	}
}

/* Once it listens, in the background: the terminal is not its (its log in dir, if any). */
static void
let_go(int ready, const char *text, const char *dir)
{
	char *log = dir != NULL ? xasprintf("%s/emulator.log", dir) : xstrdup("/dev/null");
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600), null;

	if ((null = open("/dev/null", O_RDONLY)) >= 0)
		dup2(null, STDIN_FILENO);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	if (write(ready, text, strlen(text)) < 0)
		log_warnx("emulator: cannot say that it listens: %s", strerror(errno));
	close(ready);
	free(log);
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

#define HOST_LEN 64

/* The command line as the emulator's options: 0, or the exit status of a usage error. */
static int
emulator_options(const struct cmd_entry *e, const struct args *a, struct emulator_opts *o,
    struct clock *clock, char host[HOST_LEN])
{
	static const struct {
		int opt;
		const char *name;
		long long max;
	} durations[] = {{OPT_BOOT_MS, "--boot-ms", 3600000}, {OPT_STOP_MS, "--stop-ms", 3600000},
	    {OPT_GUEST_BOOT_MS, "--guest-boot-ms", 3600000},
	    {OPT_INSTALL_MS, "--install-ms", 3600000}, {OPT_START_MS, "--start-ms", 3600000},
	    {OPT_RESUME_MS, "--resume-ms", 3600000}, {OPT_WAIT_MS, "--wait-ms", 3600000},
	    {OPT_NOTICE_MS, "--preempt-notice-ms", 3600000}};

	const char *v;
	long long n;
	int port;

	emulator_opts_default(o);
	if (parse_listen(e, args_get(a, 'l') != NULL ? args_get(a, 'l') : "127.0.0.1:0", host,
	        HOST_LEN, &port) != 0)
		return EXIT_USAGE;
	o->host = host;
	o->port = port;
	if ((v = args_get(a, OPT_PROJECT)) != NULL)
		o->project = v;
	if ((v = args_get(a, OPT_ZONES)) != NULL)
		o->zones = v;
	for (size_t i = 0; i < nitems(durations); i++) {
		if ((v = args_get(a, durations[i].opt)) == NULL)
			continue;
		if (cmd_int_arg(e, durations[i].name, v, 0, durations[i].max, &n) != 0)
			return EXIT_USAGE;
		switch (durations[i].opt) {
		case OPT_BOOT_MS:
			o->boot_ms = n;
			break;
		case OPT_STOP_MS:
			o->stop_ms = n;
			break;
		case OPT_GUEST_BOOT_MS:
			o->guest_boot_ms = n;
			break;
		case OPT_INSTALL_MS:
			o->install_ms = n;
			break;
		case OPT_START_MS:
			o->start_ms = n;
			break;
		case OPT_RESUME_MS:
			o->resume_ms = n;
			break;
		case OPT_WAIT_MS:
			o->wait_ms = n;
			break;
		default:
			o->preempt_notice_ms = n;
			break;
		}
	}
	if ((v = args_get(a, OPT_GUEST_PORT)) != NULL) {
		if (cmd_int_arg(e, "--guest-port", v, 1, 65535, &n) != 0)
			return EXIT_USAGE;
		o->guest_port = (int)n;
	}
	if ((v = args_get(a, OPT_AGENT_PORT)) != NULL) {
		if (cmd_int_arg(e, "--agent-port", v, 1, 65535, &n) != 0)
			return EXIT_USAGE;
		o->agent_port = (int)n;
	}
	o->firewall_source = args_get(a, OPT_FIREWALL_SOURCE);
	if ((v = args_get(a, OPT_FIREWALL_PORTS)) != NULL) {
		if (strspn(v, "0123456789,") != strlen(v) || *v == '\0' || *v == ',') {
			cmd_usage_error(e,
			    "--firewall-ports: '%s' is not ports separated by commas (8011,8010)",
			    v);
			return EXIT_USAGE;
		}
		o->firewall_ports = v;
	}
	o->denied = args_get(a, OPT_DENY);
	if ((v = args_get(a, OPT_GUEST_AGENT)) != NULL && access(v, R_OK) != 0)
		return cmd_usage_error(e,
		    "--guest-agent '%s': %s (give the path of data/spillway-agent.py)", v,
		    strerror(errno));
	o->guest_agent = v;
	o->guest_backend = args_get(a, OPT_GUEST_BACKEND);
	if (o->guest_backend != NULL && o->guest_agent == NULL)
		return cmd_usage_error(e,
		    "--guest-backend runs behind the real agent: give "
		    "--guest-agent too");
	if (o->guest_backend != NULL) {
		/* Split here as each guest will: a bad command is said now, not at its first VM. */
		char **argv = NULL, *cause = NULL;

		if (str_argv(o->guest_backend, &argv, &cause) != 0 || argv[0] == NULL) {
			cmd_usage_error(e,
			    "--guest-backend: %s (one command, quoted as for a shell)",
			    cause != NULL ? cause : "no command in it");
			free(cause);
			str_list_free(argv);
			return EXIT_USAGE;
		}
		str_list_free(argv);
	}
	if ((v = args_get(a, OPT_SEED)) != NULL) {
		if (cmd_int_arg(e, "--seed", v, 1, INT64_MAX, &n) != 0)
			return EXIT_USAGE;
		o->seed = (uint64_t)n;
	}
	clock_real(clock);
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
		clock_scaled(clock, scale, epoch * NS_PER_S);
	}
	o->clock = clock;
	o->faults = args_get(a, OPT_FAULTS);
	o->request_log = args_get(a, OPT_REQUEST_LOG);
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
	char host[HOST_LEN], *cause = NULL, line[96], *dir = NULL, *creds = NULL, *said;
	const char *v;
	int status, ready = -1;
	if ((status = emulator_options(e, a, &o, &clock, host)) != 0)
		return status;
	status = EXIT_FAIL;
	if (args_has(a, OPT_DETACH))
		detach(&ready);
	if (args_has(a, OPT_PRINT_ENV)) {
		if (make_temp_dir("spillway-emulator", &dir, &cause) != 0) {
			fprintf(stderr, "spillway emulator: %s\n", cause);
			free(cause);
			return EXIT_FAIL;
		}
	}
	if ((v = args_get(a, OPT_WRITE_CREDS)) != NULL)
		creds = xstrdup(v);
	else if (dir != NULL)
		creds = xasprintf("%s/credentials.json", dir);

	uv_loop_init(&loop);
	if (emulator_new(&loop, &o, &r.emu, &cause) != 0) {
		fprintf(stderr, "spillway emulator: %s\n", cause);
		free(cause);
		status = EXIT_USAGE;
		goto out;
	}
	if (creds != NULL && write_secret(e, creds, emulator_service_account_json(r.emu)) != 0)
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
	said = announcement(r.emu, o.project, dir, creds, ready >= 0);
	if (ready >= 0) {
		let_go(ready, said, dir);
	} else {
		fputs(said, stdout);
		fflush(stdout);
	}
	free(said);
	uv_run(&loop, UV_RUN_DEFAULT);
	status = EXIT_OK;
	goto out;
fail:
	emulator_free(r.emu);
	uv_run(&loop, UV_RUN_DEFAULT);
out:
	uv_loop_close(&loop);
	if (dir != NULL && remove_tree(dir) != 0)
		log_warnx("emulator: cannot remove %s", dir);
	free(dir);
	free(creds);
	return status;
}

const struct cmd_entry cmd_emulator_entry = {
    .name = "emulator",
    .usage =
        "[--listen HOST:PORT] [--port-file F] [--project P] [--zones Z1,Z2]\n"
        "        [--boot-ms N] [--stop-ms N] [--start-ms N] [--resume-ms N] [--guest-boot-ms N]\n"
        "        [--install-ms N] [--guest-port N] [--agent-port N]\n"
        "        [--wait-ms N] [--preempt-notice-ms N] [--faults SPEC] "
        "[--request-log F]\n"
        "        [--write-credentials F] [--write-user-credentials F] [--seed N]\n"
        "        [--time-scale X [--clock-epoch UNIX-SECONDS]]\n"
        "        [--firewall-source CIDR [--firewall-ports P1,P2]] [--deny-permissions P1,P2]\n"
        "        [--guest-agent FILE [--guest-backend COMMAND]] [--print-env] [--detach]",
    .summary = "run a local Compute Engine (API, OAuth, metadata server, guests)",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = 0,
    .exec = exec_emulator,
};
