/*
 * Who can steer spillway and what it gives away, tested from outside:
 * secrets (the private key, the refresh token and client secret, every
 * access token the emulator issued, the VMs' lease secrets) appear in none
 * of spillway's outputs, logs, ledger or command lines; plain http off
 * loopback and a TLS endpoint with a certificate nobody vouches for are
 * refused; a huge or endless cloud answer is cut off without stalling the
 * daemon; slow clients of the control socket are closed and do not lock
 * others out. (The socket's refusal of other users is in test_api.c, a
 * hostile startup-script value in test_startup.c.)
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/startup.h"

#define WAIT_MS 60000

struct secrets {
	char *value[256];
	const char *kind[256];
	size_t n;
};

static void
secret(struct secrets *s, const char *kind, const char *value)
{
	if (value == NULL || strlen(value) < 12 || s->n == 256)
		return;
	s->value[s->n] = xstrdup(value);
	s->kind[s->n++] = kind;
}

static void
secrets_free(struct secrets *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->value[i]);
	s->n = 0;
}

/* No secret in these bytes; the failure names the kind, never the value. */
static void
expect_clean(const struct secrets *s, const char *where, const char *bytes, size_t len)
{
	for (size_t i = 0; i < s->n; i++)
		if (bytes != NULL && memmem(bytes, len, s->value[i], strlen(s->value[i])) != NULL)
			fail_msg("%s holds a secret: %s", where, s->kind[i]);
}

static void
expect_clean_file(const struct secrets *s, const char *path)
{
	char *text = NULL;
	size_t len = 0;

	if (read_file(path, 256 << 20, &text, &len) == 0)
		expect_clean(s, path, text, len);
	free(text);
}

/* Every file spillway wrote in its state directory, but the keys (lease secrets, TLS). */
static void
expect_clean_dir(const struct secrets *s, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		char *path;

		if (e->d_name[0] == '.' || strcmp(e->d_name, "agent.key") == 0 ||
		    strcmp(e->d_name, "agent-tls.pem") == 0)
			continue;
		path = xasprintf("%s/%s", dir, e->d_name);
		expect_clean_file(s, path);
		free(path);
	}
	closedir(d);
}

/* Every process's command line and environment, as `ps e` would show them. */
static void
expect_clean_processes(const struct secrets *s)
{
	DIR *d = opendir("/proc");
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		const char *what[] = {"cmdline", "environ"};

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		for (size_t i = 0; i < 2; i++) {
			char *path = xasprintf("/proc/%s/%s", e->d_name, what[i]);

			expect_clean_file(s, path);
			free(path);
		}
	}
	closedir(d);
}

/* The base64 lines of the PEM in a key file: each would give the key away. */
static void
key_secrets(struct secrets *s, const char *creds)
{
	char *text = read_text(creds), **lines;
	json_t *v = NULL;

	assert_int_equal(jx_parse(text, strlen(text), &v, NULL), 0);
	lines = str_split(jx_str(v, "private_key"), '\n', NULL);
	for (char **l = lines; *l != NULL; l++)
		if (strlen(*l) >= 40 && strchr(*l, '-') == NULL)
			secret(s, "a line of the private key", *l);
	str_list_free(lines);
	json_decref(v);
	free(text);
}

static void
user_secrets(struct secrets *s, const char *creds)
{
	char *text = read_text(creds);
	json_t *v = NULL;

	assert_int_equal(jx_parse(text, strlen(text), &v, NULL), 0);
	secret(s, "the refresh token", jx_str(v, "refresh_token"));
	secret(s, "the client secret", jx_str(v, "client_secret"));
	json_decref(v);
	free(text);
}

static void
token_secrets(struct secrets *s, struct emu *e)
{
	char *url = xasprintf("%s/emulator/v1/tokens", e->url);
	struct resp r;
	json_t *t;
	size_t i;

	http_call(&r, "GET", url, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_array_foreach (json_object_get(r.json, "tokens"), i, t)
		secret(s, "an access token", json_string_value(t));
	resp_free(&r);
	free(url);
}

/* The CLI as a user runs it beside the daemon; everything it printed is kept in all. */
static void
cli(struct dmn *d, struct emu *e, struct buf *all, struct cmd_run *r, const char *const *args,
    const char *const *more)
{
	char *vars[12];
	int n = 0;

	vars[n++] = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", e->creds);
	vars[n++] = xasprintf("SPILLWAY_COMPUTE_ENDPOINT=%s/compute/v1/", e->url);
	vars[n++] = xasprintf("SPILLWAY_BILLING_ENDPOINT=%s/v1/", e->url);
	vars[n++] = xasprintf("SPILLWAY_STATE_DIR=%s", d->state);
	vars[n++] = xasprintf("SPILLWAY_SOCKET=%s/control.sock", d->state);
	vars[n++] = xstrdup("GCP_PROJECT_ID=spillway-emulator");
	vars[n++] = xstrdup("SPILLWAY_LOG_LEVEL=debug");
	for (; more != NULL && *more != NULL; more++)
		vars[n++] = xstrdup(*more);
	vars[n] = NULL;
	run_spillway(r, d->state, args, (const char *const *)vars);
	buf_printf(all, "%s\n%s\n", r->out, r->err);
	for (int i = 0; i < n; i++)
		free(vars[i]);
}

static void
wait_log(struct dmn *d, const char *text)
{
	int64_t until = now_ms() + WAIT_MS;

	for (;;) {
		char *log = read_text(d->log);
		bool found = log != NULL && strstr(log, text) != NULL;

		free(log);
		if (found)
			return;
		if (now_ms() > until) {
			dmn_dump(d);
			fail_msg("the daemon never logged '%s'", text);
		}
		sleep_ms(50);
	}
}

static void
test_secrets_stay_secret(void **state)
{
	const char *run_env[] = {"SPILLWAY_LOG_LEVEL=debug", "GCP_VM_ENABLED=false", NULL};
	const char *create[] = {"create", "--components", "vision", "--yes", NULL};
	const char *status[] = {"status", "-v", "--json", NULL};
	const char *costs[] = {"costs", "--json", NULL};
	const char *doctor[] = {"doctor", NULL};
	const char *zones[] = {"cloud", "zones", NULL};
	const char *terminate[] = {"terminate", "--all", "--yes", NULL};
	struct buf all = BUF_INIT(64 << 20);
	struct secrets s = {0};
	struct cmd_run r;
	struct emu e;
	struct dmn d;
	char name[64] = "";

	emu_start(&e, NULL);
	dmn_init(&d);
	dmn_start(&d, &e, NULL, run_env);
	wait_log(&d, "prices refreshed");
	/* A VM's whole life through the CLI and the daemon, logging at debug. */
	cli(&d, &e, &all, &r, create, NULL);
	if (r.status != 0)
		fail_msg("create: %s", r.err);
	cmd_run_free(&r);
	cli(&d, &e, &all, &r, status, NULL);
	assert_int_equal(r.status, 0);
	{
		json_t *v = NULL;

		assert_int_equal(jx_parse(r.out, strlen(r.out), &v, NULL), 0);
		snprintf(name, sizeof name, "%s", jx_str(v, "vms.0.name"));
		json_decref(v);
	}
	cmd_run_free(&r);
	/* Its lease secret, derived as the daemon derives it. */
	{
		char *path = xasprintf("%s/agent.key", d.state), *key = NULL;
		char lease[STARTUP_SECRET_LEN + 1];
		size_t len = 0;

		assert_int_equal(read_file(path, 64, &key, &len), 0);
		assert_int_equal(len, AGENT_KEY_LEN);
		agent_secret((unsigned char *)key, name, lease);
		secret(&s, "a VM's lease secret", lease);
		/* It is the one the VM got: the search below looks for the right thing. */
		{
			json_t *inst = emu_instances(&e);
			char *dump = jx_dumps(inst);

			assert_non_null(strstr(dump, lease));
			free(dump);
			json_decref(inst);
		}
		free(key);
		free(path);
	}
	/* Every file spillway wrote with a secret in it is its owner's alone. */
	{
		char *key = xasprintf("%s/agent.key", d.state);
		char *tls = xasprintf("%s/agent-tls.pem", d.state), *pem, **lines;
		const char *files[] = {key, tls, e.creds, e.user_creds};
		struct stat st;

		for (size_t i = 0; i < 4; i++) {
			assert_int_equal(stat(files[i], &st), 0);
			if ((st.st_mode & 0777) != 0600)
				fail_msg("%s has mode %03o, not 0600", files[i], st.st_mode & 0777);
		}
		/* The TLS key's lines (it comes first, before the certificate) are secrets too. */
		pem = read_text(tls);
		lines = str_split(pem, '\n', NULL);
		assert_true(str_prefix(lines[0], "-----BEGIN PRIVATE KEY-----"));
		for (char **l = lines + 1; *l != NULL && !str_prefix(*l, "-----END"); l++)
			secret(&s, "the daemon's TLS key", *l);
		str_list_free(lines);
		free(pem);
		free(tls);
		free(key);
	}
	key_secrets(&s, e.creds);
	user_secrets(&s, e.user_creds);
	token_secrets(&s, &e);
	/* While all of it runs: no secret on any command line or in any environment. */
	expect_clean_processes(&s);
	cli(&d, &e, &all, &r, costs, NULL);
	cmd_run_free(&r);
	cli(&d, &e, &all, &r, doctor, NULL);
	cmd_run_free(&r);
	/* User credentials, good and with a token endpoint that is not there. */
	{
		char *creds = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", e.user_creds);
		char *uri = xasprintf("SPILLWAY_TOKEN_URI=%s/token", e.url);
		const char *good[] = {creds, uri, NULL};
		const char *gone[] = {creds, "SPILLWAY_TOKEN_URI=http://127.0.0.1:1/token", NULL};

		cli(&d, &e, &all, &r, zones, good);
		if (r.status != 0)
			fail_msg("cloud zones with user credentials: %s", r.err);
		cmd_run_free(&r);
		cli(&d, &e, &all, &r, zones, gone);
		assert_int_equal(r.status, 1); /* an error, which must not quote the secrets */
		cmd_run_free(&r);
		free(creds);
		free(uri);
	}
	cli(&d, &e, &all, &r, terminate, NULL);
	assert_int_equal(r.status, 0);
	cmd_run_free(&r);
	assert_int_equal(dmn_stop(&d, SIGTERM), 0);
	/* Now every token issued, and every output. */
	token_secrets(&s, &e);
	assert_true(s.n >= 5);
	expect_clean(&s, "the CLI's output", all.data, all.len);
	expect_clean_dir(&s, d.state); /* the daemon's log, the ledger and its journal */
	secrets_free(&s);
	buf_release(&all);
	dmn_cleanup(&d);
	emu_stop(&e);
}

static char *
replace(const char *text, const char *old, const char *new)
{
	const char *at = strstr(text, old);

	assert_non_null(at);
	return xasprintf("%.*s%s%s", (int)(at - text), text, new, at + strlen(old));
}

/* Plain http only to loopback: a config, a key file or a token endpoint elsewhere is refused. */
static void
test_plain_http_refused(void **state)
{
	char home[] = "/tmp/spillway-sec-XXXXXX";
	const char *zones[] = {"cloud", "zones", NULL};
	const char *compute[] = {"SPILLWAY_COMPUTE_ENDPOINT=http://192.0.2.1/compute/v1/", NULL};
	const char *billing[] = {"SPILLWAY_BILLING_ENDPOINT=http://192.0.2.1/v1/", NULL};
	const char *token[] = {"SPILLWAY_TOKEN_URI=http://192.0.2.1/token", NULL};
	struct cmd_run r;
	char *creds, *var;

	assert_non_null(mkdtemp(home));
	run_spillway(&r, home, zones, compute);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "plain http is only allowed to a loopback address"));
	cmd_run_free(&r);
	run_spillway(&r, home, zones, billing);
	assert_int_equal(r.status, 2);
	cmd_run_free(&r);
	run_spillway(&r, home, zones, token);
	assert_int_equal(r.status, 2);
	cmd_run_free(&r);
	/* A key file whose token_uri is plain http elsewhere. */
	creds = xasprintf("%s/key.json", home);
	{
		struct emu e;
		char *text, *bad;

		emu_start(&e, NULL);
		text = read_text(e.creds);
		bad = replace(text, e.url, "http://192.0.2.1");
		assert_int_equal(write_file_atomic(creds, bad, strlen(bad), 0600), 0);
		free(text);
		free(bad);
		emu_stop(&e);
	}
	var = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", creds);
	{
		const char *env[] = {var, "GCP_PROJECT_ID=spillway-emulator", NULL};

		run_spillway(&r, home, zones, env);
		assert_int_equal(r.status, 2);
		assert_non_null(strstr(r.err, "must be https://"));
		cmd_run_free(&r);
	}
	free(var);
	free(creds);
	remove_tree(home);
}

static int
free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static pid_t
start_s_server(const char *dir, int port)
{
	pid_t pid = fork();

	if (pid == 0) {
		char *cert = xasprintf("%s/cert.pem", dir), *key = xasprintf("%s/key.pem", dir);
		char *at = xasprintf("127.0.0.1:%d", port);
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execlp("timeout", "timeout", "60", "openssl", "s_server", "-accept", at, "-cert",
		    cert, "-key", key, "-www", "-quiet", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* A TLS server with a self-signed certificate: the handshake fails, nothing is sent. */
static void
test_tls_unverified_refused(void **state)
{
	char dir[] = "/tmp/spillway-tls-XXXXXX", *cmd, *ep, *port_s;
	const char *zones[] = {"cloud", "zones", NULL};
	struct cmd_run r;
	struct emu e;
	int port = 0;
	pid_t server = -1;

	assert_non_null(mkdtemp(dir));
	cmd = xasprintf("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 "
	                "-addext subjectAltName=IP:127.0.0.1 -days 1 -keyout %s/key.pem "
	                "-out %s/cert.pem 2>/dev/null",
	    dir, dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	/* A port the kernel just gave out, for s_server; another if it was taken meanwhile. */
	for (int tries = 0; tries < 5 && server < 0; tries++) {
		int64_t until = now_ms() + 10000;

		port = free_port();
		server = start_s_server(dir, port);
		while (
		    !tcp_accepts(port) && now_ms() < until && waitpid(server, NULL, WNOHANG) == 0)
			sleep_ms(50);
		if (!tcp_accepts(port)) {
			kill(server, SIGTERM);
			waitpid(server, NULL, 0);
			server = -1;
		}
	}
	assert_true(server > 0);
	port_s = xasprintf("127.0.0.1:%d", port);
	emu_start(&e, NULL);
	ep = xasprintf("SPILLWAY_COMPUTE_ENDPOINT=https://%s/compute/v1/", port_s);
	{
		char *creds = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", e.creds);
		const char *env[] = {ep, creds, "GCP_PROJECT_ID=spillway-emulator", NULL};

		run_spillway(&r, dir, zones, env);
		assert_int_equal(r.status, 1);
		if (strstr(r.err, "certificate") == NULL)
			fail_msg("not refused for its certificate: %s", r.err);
		cmd_run_free(&r);
		free(creds);
	}
	free(ep);
	emu_stop(&e);
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	free(port_s);
	remove_tree(dir);
}

/* The pressure sample time the daemon reports, through its socket; "" if it did not answer. */
static char *
pressure_time(struct dmn *d, struct emu *e, struct buf *all)
{
	const char *status[] = {"status", "--json", NULL};
	struct cmd_run r;
	json_t *v = NULL;
	char *t;

	cli(d, e, all, &r, status, NULL);
	if (r.status != 0 || jx_parse(r.out, strlen(r.out), &v, NULL) != 0)
		fail_msg("status did not answer (exit %d): %s", r.status, r.err);
	t = xstrdup(jx_str(v, "pressure.time") != NULL ? jx_str(v, "pressure.time") : "");
	json_decref(v);
	cmd_run_free(&r);
	return t;
}

/*
 * Answers of 12 MB that are not JSON, and answers that never end: the
 * daemon cuts them off (32 MB at most), says so, keeps monitoring and
 * answering, and recovers when the cloud does.
 */
static void
test_huge_and_endless_answers(void **state)
{
	char *trace = xasprintf("%s/tests/data/pressure-sawtooth.trace", getenv("SPILLWAY_SOURCE"));
	const char *args[] = {"--replay", trace, NULL};
	const char *env[] = {"GCP_VM_ENABLED=false", "GCP_VM_HEALTH_CHECK_INTERVAL=1", NULL};
	const char *faults[] = {"endless=1", "huge=1"};
	const char *says[] = {"the answer is larger than allowed", "is not a JSON object"};
	struct buf all = BUF_INIT(64 << 20);
	struct emu e;
	struct dmn d;

	emu_start(&e, NULL);
	dmn_init(&d);
	dmn_start(&d, &e, args, env);
	wait_log(&d, "prices refreshed");
	for (size_t i = 0; i < 2; i++) {
		char *before, *after;
		int64_t until = now_ms() + WAIT_MS;

		emu_set_faults(&e, faults[i]);
		wait_log(&d, says[i]);
		/* Meanwhile the socket answers and the pressure samples go on. */
		before = pressure_time(&d, &e, &all);
		do {
			sleep_ms(200);
			after = pressure_time(&d, &e, &all);
			if (strcmp(after, before) != 0)
				break;
			free(after);
			after = NULL;
		} while (now_ms() < until);
		if (after == NULL)
			fail_msg("with %s, the pressure stopped at %s", faults[i], before);
		free(before);
		free(after);
	}
	emu_set_faults(&e, "");
	/* Recovered: the next passes list again, with answers that end. */
	{
		char *log = read_text(e.log);
		size_t before = log != NULL ? strlen(log) : 0;
		int64_t until = now_ms() + WAIT_MS;
		bool listed = false;

		free(log);
		while (!listed && now_ms() < until) {
			char **lines;

			log = read_text(e.log);
			lines = str_split(
			    log != NULL && strlen(log) > before ? log + before : "", '\n', NULL);
			for (char **l = lines; *l != NULL && !listed; l++) {
				json_t *v = NULL;

				listed = jx_parse(*l, strlen(*l), &v, NULL) == 0 &&
				    str_suffix(or_default(jx_str(v, "path"), ""), "/instances") &&
				    json_integer_value(json_object_get(v, "status")) == 200;
				json_decref(v);
			}
			str_list_free(lines);
			free(log);
			sleep_ms(100);
		}
		assert_true(listed);
	}
	assert_int_equal(dmn_stop(&d, SIGTERM), 0);
	buf_release(&all);
	dmn_cleanup(&d);
	emu_stop(&e);
	free(trace);
}

static int
sock_connect(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Slow-loris on the control socket: clients that send half a request and
 * wait. The daemon answers others meanwhile, and lets the oldest of the
 * slow ones go as their process passes its share of 16 connections.
 */
static void
test_slow_clients(void **state)
{
	const char *env[] = {"GCP_VM_ENABLED=false", NULL};
	const char *status[] = {"status", "--json", NULL};
	struct buf all = BUF_INIT(1 << 20);
	char *sock;
	int fds[40], n = 0;
	struct cmd_run r;
	struct emu e;
	struct dmn d;

	emu_start(&e, NULL);
	dmn_init(&d);
	dmn_start(&d, &e, NULL, env);
	wait_log(&d, "prices refreshed");
	sock = xasprintf("%s/control.sock", d.state);
	for (; n < 40; n++) {
		assert_true((fds[n] = sock_connect(sock)) >= 0);
		assert_int_equal(write(fds[n], "GET /v1/sta", 11), 11);
	}
	cli(&d, &e, &all, &r, status, NULL);
	assert_int_equal(r.status, 0);
	cmd_run_free(&r);
	/* The first of them was let go to make room: read sees the end. */
	{
		char c;

		assert_int_equal(read(fds[0], &c, 1), 0);
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
	cli(&d, &e, &all, &r, status, NULL);
	assert_int_equal(r.status, 0);
	cmd_run_free(&r);
	free(sock);
	assert_int_equal(dmn_stop(&d, SIGTERM), 0);
	buf_release(&all);
	dmn_cleanup(&d);
	emu_stop(&e);
}

/*
 * Google's catalog for Compute Engine is many pages: the refresh reads them
 * all (it once gave up on any second page, and priced from the shipped
 * catalog for ever), and keeps what pricing reads of them.
 */
static void
test_catalog_pages(void **state)
{
	const char *faults[] = {"--faults", "catalog-page=5", NULL};
	const char *env[] = {"GCP_VM_ENABLED=false", NULL};
	struct emu e;
	struct dmn d;
	json_t *kept;
	char *path;

	emu_start(&e, faults);
	dmn_init(&d);
	dmn_start(&d, &e, NULL, env);
	wait_log(
	    &d, "prices refreshed from the Cloud Billing API (17 SKUs priced from, in 4 pages)");
	path = xasprintf("%s/prices.json", d.state);
	assert_non_null(kept = json_load_file(path, 0, NULL));
	assert_int_equal(json_array_size(json_object_get(kept, "skus")), 17);
	json_decref(kept);
	free(path);
	assert_int_equal(dmn_stop(&d, SIGTERM), 0);
	dmn_cleanup(&d);
	emu_stop(&e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_secrets_stay_secret),
	    cmocka_unit_test(test_plain_http_refused),
	    cmocka_unit_test(test_tls_unverified_refused),
	    cmocka_unit_test(test_huge_and_endless_answers),
	    cmocka_unit_test(test_slow_clients),
	    cmocka_unit_test(test_catalog_pages),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
