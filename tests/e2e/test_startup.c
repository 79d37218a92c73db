/*
 * data/startup-script.sh and data/spillway-agent.py, run for real: bash in a
 * temporary root, the emulator as the metadata server and Compute API of an
 * instance that carries the settings as attributes, and stubs on PATH for
 * what a test machine must not do (git over the network, systemctl, apt-get).
 * The steps run in order, a second run skips what is done, the backend is
 * started with its components and environment, hostile values stay data; the
 * agent reports health, takes only leases signed with the VM's secret,
 * deletes its instance once the lease is lost and the backend idle (powers
 * off when it cannot), and stops the backend on a preemption notice.
 */
#include <arpa/inet.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "harness.h"
#include "net/tls.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/startup.h"

#define ZONE  "us-central1-a"
#define NAME  "startup-test"
#define NAME2 "startup-test-preempted"
#define NAME3 "startup-test-cut-off"
/* Real time for what the script and the agent do: generous, for sanitizers and a busy machine. */
#define PATIENCE_MS 90000
/* The VM's secret, as the daemon would derive it: 64 hex digits. */
#define SECRET "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7"

/* The daemon's side of TLS to the agents: made once; a stranger's, for the refusals. */
static struct agent_identity me, stranger;

static void
identities(void)
{
	char *cause = NULL;

	if (me.cert_pem != NULL)
		return;
	if (tls_identity_make("test", &me.cert_pem, &me.key_pem, &cause) != 0 ||
	    tls_identity_make("stranger", &stranger.cert_pem, &stranger.key_pem, &cause) != 0)
		fail_msg("%s", cause);
}

static const char *hostile_components = "vision,$(touch PWNED);chatbots`touch PWNED2`";
static const char *hostile_url = "https://example.invalid/app.git; touch PWNED3";

static void
write_stub(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
	free(path);
}

static void
make_stubs(const char *stubs)
{
	mkdir(stubs, 0755);
	/* The metadata server is asked as the instance the test names. */
	write_stub(stubs, "curl",
	    "#!/bin/sh\nexec /usr/bin/curl -H \"X-Emulator-Instance: $SPILLWAY_METADATA_INSTANCE\" "
	    "\"$@\"\n");
	/* git: every argument on a line of its own; a clone makes a backend with a health file. */
	write_stub(stubs, "git",
	    "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >>\"$SPILLWAY_ROOT/git.args\"\n"
	    "echo -- >>\"$SPILLWAY_ROOT/git.args\"\n"
	    "if [ \"$1\" = clone ]; then\n"
	    "  for last; do :; done\n"
	    "  mkdir -p \"$last/.git\" && printf '{\"status\": \"ok\"}' >\"$last/health\"\n"
	    "fi\n");
	write_stub(stubs, "apt-get", "#!/bin/sh\necho \"$*\" >>\"$SPILLWAY_ROOT/apt.args\"\n");
	write_stub(stubs, "dpkg-query", "#!/bin/sh\nexit 1\n"); /* nothing is installed */
	/* systemctl: recorded; the units it starts and stops run as systemd would run them. */
	write_stub(stubs, "systemctl",
	    "#!/bin/sh\necho \"$*\" >>\"$SPILLWAY_ROOT/systemctl.args\"\n"
	    "case \"$*\" in\n"
	    "'enable --now spillway-backend.service')\n"
	    "  cd \"$SPILLWAY_ROOT/opt/spillway/backend\" || exit 1\n"
	    /* as systemd reads an EnvironmentFile: KEY=VALUE taken literally, never run */
	    "  while IFS= read -r kv; do export \"$kv\"; done <\"$SPILLWAY_ROOT/etc/spillway/backend.env\"\n"
	    "  nohup bash \"$SPILLWAY_ROOT/etc/spillway/start\" >\"$SPILLWAY_ROOT/backend.log\" 2>&1 &\n"
	    "  echo $! >\"$SPILLWAY_ROOT/backend.pid\" ;;\n"
	    "'enable --now spillway-agent.service')\n"
	    "  nohup timeout 300 python3 \"$SPILLWAY_ROOT/opt/spillway/agent.py\" "
	    ">>\"$SPILLWAY_ROOT/agent.out\" 2>&1 &\n"
	    "  echo $! >\"$SPILLWAY_ROOT/agent.pid\" ;;\n"
	    "'stop spillway-backend.service')\n"
	    "  kill \"$(cat \"$SPILLWAY_ROOT/backend.pid\")\" ;;\n"
	    "esac\n");
}

/* The environment of the script and the agents: the temporary root, the emulator. */
static void
vm_env(const char *root, const char *stubs, struct emu *e, const char *name, const char *compute)
{
	char *md = xasprintf("%s/computeMetadata/v1", e->url);
	char *path = xasprintf("%s:%s", stubs, getenv("PATH"));
	char *inst = xasprintf("%s/%s", ZONE, name);
	char *api = compute != NULL ? xstrdup(compute) : xasprintf("%s/compute/v1", e->url);

	setenv("SPILLWAY_ROOT", root, 1);
	setenv("SPILLWAY_METADATA_URL", md, 1);
	setenv("SPILLWAY_METADATA_INSTANCE", inst, 1);
	setenv("SPILLWAY_COMPUTE_URL", api, 1);
	setenv("SPILLWAY_AGENT_ADDRESS", "127.0.0.1", 1);
	setenv("SPILLWAY_HEALTH_TRIES", "30", 1);
	setenv("PATH", path, 1);
	free(md);
	free(path);
	free(inst);
	free(api);
}

/* Run the script as an instance; its exit status and what it printed. */
static int
run_script_as(const char *root, const char *stubs, struct emu *e, const char *name, char **out)
{
	char *script = xasprintf("%s/data/startup-script.sh", getenv("SPILLWAY_SOURCE"));
	int fds[2], status;
	struct buf b = BUF_INIT(1 << 20);
	char chunk[4096];
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]); /* or the backend the script starts would hold the pipe open */
		vm_env(root, stubs, e, name, NULL);
		assert_int_equal(chdir(root), 0);
		execl("/bin/bash", "bash", script, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], chunk, sizeof chunk)) > 0)
		buf_add(&b, chunk, (size_t)n);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	free(script);
	*out = buf_detach(&b, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int
run_script(const char *root, const char *stubs, struct emu *e, char **out)
{
	return run_script_as(root, stubs, e, NAME, out);
}

static char *
file(const char *root, const char *name)
{
	char *path = xasprintf("%s/%s", root, name), *text = read_text(path);

	free(path);
	return text != NULL ? text : xstrdup("");
}

static void
set_attr(json_t *items, const char *key, const char *value)
{
	json_array_append_new(items, jx_pack("{s:s, s:s}", "key", key, "value", value));
}

/* An instance whose metadata carries the agent's settings, and the rest given. */
static void
insert(struct emu *e, const char *name, int port, int agent_port, const char *lease,
    const char *const *more)
{
	json_t *body = instance_body(ZONE, name, "e2-highmem-4", true, NULL, NULL), *op;
	json_t *items = jx_get(body, "metadata.items");
	char *agent = file(getenv("SPILLWAY_SOURCE"), "data/spillway-agent.py"), text[16];
	char *url = compute_url(e, ZONE, "instances"), *json;

	json_array_clear(items);
	snprintf(text, sizeof text, "%d", port);
	set_attr(items, "spillway-port", text);
	snprintf(text, sizeof text, "%d", agent_port);
	set_attr(items, "spillway-agent-port", text);
	set_attr(items, "spillway-agent", agent);
	set_attr(items, "spillway-agent-secret", SECRET);
	set_attr(items, "spillway-lease-seconds", lease);
	identities();
	set_attr(items, "spillway-client-cert", me.cert_pem);
	set_attr(items, "enable-guest-attributes", "TRUE");
	for (; more != NULL && *more != NULL; more += 2)
		set_attr(items, more[0], more[1]);
	json = jx_dumps(body);
	op = api(e, "POST", url, json, 200);
	json_decref(op);
	free(json);
	free(url);
	free(agent);
	json_decref(body);
}

/* The key the agent published in its guest attributes, through the API; NULL: not yet. */
static char *
agent_pin(struct emu *e, const char *name)
{
	char *url = compute_url(e, ZONE, "instances"), *full, *pin = NULL;
	struct resp r;

	full = xasprintf("%s/%s/getGuestAttributes?variableKey=spillway/tls-key", url, name);
	http_call(&r, "GET", full, emu_token(e), NULL, NULL, NULL);
	if (r.status == 200 && jx_str(r.json, "variableValue") != NULL)
		pin = xstrdup(jx_str(r.json, "variableValue"));
	resp_free(&r);
	free(full);
	free(url);
	return pin;
}

/* A call to the agent in TLS, as the daemon makes it (or as `who` when not NULL). */
static void
agent_call(struct resp *r, struct emu *e, const char *name, int port, const char *method,
    const char *path, const char *const *headers, const struct agent_identity *who)
{
	char url[96], *pin = NULL;
	int64_t until = now_ms() + PATIENCE_MS;
	struct tls_peer peer;

	while ((pin = agent_pin(e, name)) == NULL && now_ms() < until)
		sleep_ms(100);
	if (pin == NULL)
		fail_msg("%s's agent never published its key", name);
	peer = (struct tls_peer){pin, (who ? who : &me)->cert_pem, (who ? who : &me)->key_pem};
	snprintf(url, sizeof url, "https://127.0.0.1:%d%s", port, path);
	https_call(r, method, url, strcmp(method, "POST") == 0 ? "" : NULL, headers, &peer);
	free(pin);
}

/* The agent's status (once it listens), or NULL when it does not say 200. */
static json_t *
agent_status(struct emu *e, const char *name, int port)
{
	struct resp r;
	json_t *v;

	agent_call(&r, e, name, port, "GET", "/spillway/status", NULL, NULL);
	v = r.status == 200 ? json_incref(r.json) : NULL;
	resp_free(&r);
	return v;
}

/* Poll the status until field is value (a JSON literal: true, 0); the status then. */
static json_t *
wait_status(struct emu *e, const char *name, int port, const char *field, const char *value)
{
	int64_t until = now_ms() + PATIENCE_MS;

	while (!tcp_accepts(port) && now_ms() < until)
		sleep_ms(50);
	while (now_ms() < until) {
		json_t *v = agent_status(e, name, port);
		char *text =
		    v != NULL ? json_dumps(json_object_get(v, field), JSON_ENCODE_ANY) : NULL;
		bool match = text != NULL && strcmp(text, value) == 0;

		free(text);
		if (match)
			return v;
		json_decref(v);
		sleep_ms(100);
	}
	fail_msg("the agent on port %d never said %s = %s", port, field, value);
	return NULL;
}

/* A connection through the agent to the backend, as a route opens it. */
struct fwd {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
};

/* TLS with ALPN spillway-fwd/1, the agent's key checked against the pin it published. */
static void
fwd_open(struct fwd *f, struct emu *e, const char *name, int port)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	BIO *cb = BIO_new_mem_buf(me.cert_pem, -1), *kb = BIO_new_mem_buf(me.key_pem, -1);
	X509 *cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	static const unsigned char alpn[] = "\x0espillway-fwd/1";
	char *pin = agent_pin(e, name), got[TLS_PIN_MAX], *text;
	X509 *peer;

	f->ctx = SSL_CTX_new(TLS_client_method());
	f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	assert_int_equal(connect(f->fd, (struct sockaddr *)&to, sizeof to), 0);
	SSL_CTX_use_certificate(f->ctx, cert);
	SSL_CTX_use_PrivateKey(f->ctx, key);
	f->ssl = SSL_new(f->ctx);
	SSL_set_alpn_protos(f->ssl, alpn, sizeof alpn - 1);
	SSL_set_fd(f->ssl, f->fd);
	assert_int_equal(SSL_connect(f->ssl), 1);
	/* The key it shows is the one it published. */
	peer = SSL_get1_peer_certificate(f->ssl);
	{
		BIO *pb = BIO_new(BIO_s_mem());
		char *pem;
		long len;

		PEM_write_bio_X509(pb, peer);
		len = BIO_get_mem_data(pb, &pem);
		text = xstrndup(pem, (size_t)len);
		BIO_free(pb);
	}
	assert_int_equal(tls_cert_pin(text, got), 0);
	assert_string_equal(got, pin);
	free(text);
	X509_free(peer);
	X509_free(cert);
	EVP_PKEY_free(key);
	BIO_free(cb);
	BIO_free(kb);
	free(pin);
}

static void
fwd_send(struct fwd *f, const char *text)
{
	assert_int_equal(SSL_write(f->ssl, text, (int)strlen(text)), (int)strlen(text));
}

/* What came back until the end; the connection closed. */
static char *
fwd_finish(struct fwd *f)
{
	struct buf answer = BUF_INIT(1 << 20);
	char chunk[4096];
	int n;

	while ((n = SSL_read(f->ssl, chunk, sizeof chunk)) > 0)
		buf_add(&answer, chunk, (size_t)n);
	SSL_free(f->ssl);
	close(f->fd);
	SSL_CTX_free(f->ctx);
	return buf_detach(&answer, NULL);
}

/* A request to the backend through the agent, as a route sends it. The answer. */
static char *
through_agent(struct emu *e, const char *name, int port, const char *request)
{
	struct fwd f;

	fwd_open(&f, e, name, port);
	fwd_send(&f, request);
	return fwd_finish(&f);
}

/* POST /spillway/lease with this Authorization header line; the HTTP status. */
static long
renew(struct emu *e, int port, const char *authorization)
{
	const char *headers[] = {authorization, NULL};
	struct resp r;
	long status;

	agent_call(&r, e, NAME, port, "POST", "/spillway/lease", headers, NULL);
	status = r.status;
	resp_free(&r);
	return status;
}

/* A client of the backend from another address than the VM's own: activity. */
static int
hold_connection(int port)
{
	struct sockaddr_in from = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, "127.0.0.5", &from.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	to.sin_port = htons((uint16_t)port);
	assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof from), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
	return fd;
}

/* Whether a process runs (not gone, not a zombie). */
static bool
alive(pid_t pid)
{
	char path[64], *stat = NULL, *paren;
	size_t len = 0;
	bool up;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (read_file(path, 4096, &stat, &len) != 0)
		return false;
	paren = strrchr(stat, ')');
	up = paren != NULL && paren[1] == ' ' && paren[2] != 'Z';
	free(stat);
	return up;
}

static void
wait_gone(pid_t pid, const char *what)
{
	int64_t until = now_ms() + PATIENCE_MS;

	while (alive(pid) && now_ms() < until)
		sleep_ms(50);
	if (alive(pid))
		fail_msg("%s (PID %d) still runs", what, (int)pid);
}

/* The emulator's request log: a DELETE of the instance, with its status; 0 if none. */
static long
deleted(struct emu *e, const char *name)
{
	char *log = read_text(e->log), *tail = xasprintf("/instances/%s", name);
	char **lines = str_split(log != NULL ? log : "", '\n', NULL);
	long status = 0;

	for (char **l = lines; *l != NULL && status == 0; l++) {
		json_t *v = NULL;

		if (jx_parse(*l, strlen(*l), &v, NULL) == 0 &&
		    strcmp(or_default(jx_str(v, "method"), ""), "DELETE") == 0 &&
		    str_suffix(or_default(jx_str(v, "path"), ""), tail))
			status = (long)json_integer_value(json_object_get(v, "status"));
		json_decref(v);
	}
	str_list_free(lines);
	free(tail);
	free(log);
	return status;
}

static pid_t
start_agent(
    const char *root, const char *stubs, struct emu *e, const char *name, const char *compute)
{
	char *agent = xasprintf("%s/opt/spillway/agent.py", root), *out;
	pid_t pid = fork();

	if (pid == 0) {
		int fd;

		out = xasprintf("%s/%s.out", root, name);
		fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		vm_env(root, stubs, e, name, compute);
		execlp("timeout", "timeout", "120", "python3", agent, (char *)NULL);
		_exit(127);
	}
	free(agent);
	return pid;
}

static void
test_startup_script(void **state)
{
	/* The agent first: it reports the install's progress while it runs. */
	const char *first[] = {"starting (components: vision,$(touch PWNED)", "packages: start",
	    "installing python3-venv libgl1", "packages: done", "agent: start", "agent: done",
	    "fetch: start", "fetch: done", "dependencies: start", "dependencies: done",
	    "cloudsql: done", "service: start", "service: done",
	    "the backend answers on http://127.0.0.1:", "ready", NULL};
	const char *second[] = {"packages: done before, skipped", "agent: done before, skipped",
	    "fetch: done before, skipped", "dependencies: done before, skipped",
	    "service: done before, skipped", "the backend answers", "ready", NULL};
	const char *emu_args[] = {"--preempt-notice-ms", "60000", NULL};
	char root[] = "/tmp/spillway-startup-XXXXXX", stubs[300], start[128], auth[160], *out;
	char *text, *before;
	int port = 20000 + (int)(getpid() % 20000), aport = port + 1, hold;
	pid_t agent2, agent3, backend;
	struct fwd held;
	int64_t up;
	struct emu e;
	json_t *st;

	assert_non_null(mkdtemp(root));
	snprintf(stubs, sizeof stubs, "%s/stubs", root);
	make_stubs(stubs);
	/* Bounded, so a failed test leaves no server behind. */
	snprintf(start, sizeof start,
	    "exec timeout 120 python3 -m http.server \"$PORT\" --bind 127.0.0.1");
	emu_start(&e, emu_args);
	/* The settings, hostile ones among them; a lease of 5 s. */
	{
		const char *more[] = {"spillway-components", hostile_components,
		    "spillway-backend-git", hostile_url, "spillway-backend-ref", "release-1",
		    "spillway-install", "echo installed >installed", "spillway-start", start,
		    "spillway-packages", "python3-venv libgl1", "spillway-env",
		    "A=1\nnot a pair\nB=two words", NULL};

		insert(&e, NAME, port, aport, "5", more);
	}

	/* The first boot: every step, in order, and the backend answers. */
	if (run_script(root, stubs, &e, &out) != 0)
		fail_msg("the script failed:\n%s", out);
	expect_in_order(out, first);
	free(out);
	/* From now on someone uses the backend: the agent must see it. */
	hold = hold_connection(port);
	text = file(root, "git.args");
	assert_non_null(strstr(text, "clone\n"));
	assert_non_null(strstr(text, "\n--branch\nrelease-1\n--\n"));
	assert_non_null(
	    strstr(text, "\nhttps://example.invalid/app.git; touch PWNED3\n")); /* one argument */
	free(text);
	text = file(root, "opt/spillway/backend/installed");
	assert_string_equal(text, "installed\n");
	free(text);
	/* The backend's packages, after the index; the boot's progress, for the agent. */
	text = file(root, "apt.args");
	assert_non_null(
	    strstr(text, "update -q\ninstall -y -q --no-install-recommends python3-venv libgl1\n"));
	free(text);
	text = file(root, "var/lib/spillway/progress");
	assert_true(str_prefix(text, "ready "));
	free(text);
	text = file(root, "etc/spillway/backend.env");
	assert_non_null(
	    strstr(text, "SPILLWAY_COMPONENTS=vision,$(touch PWNED);chatbots`touch PWNED2`\n"));
	assert_non_null(strstr(text, "A=1\nB=two words\n"));
	assert_null(strstr(text, "not a pair"));
	free(text);
	text = file(root, "systemctl.args");
	assert_string_equal(text,
	    "daemon-reload\nenable --now spillway-agent.service\n"
	    "daemon-reload\nenable --now spillway-backend.service\n");
	free(text);
	text = file(root, "var/log/spillway/startup.log");
	assert_non_null(strstr(text, "spillway-startup: ready"));
	free(text);

	/* The backend runs with its components, exactly as configured. */
	text = file(root, "backend.pid");
	backend = (pid_t)strtol(text, NULL, 10);
	free(text);
	{
		char *path = xasprintf("/proc/%d/environ", (int)backend), *env;
		size_t len = 0;

		assert_int_equal(read_file(path, 1 << 20, &env, &len), 0);
		for (size_t i = 0; i < len; i++)
			env[i] = env[i] == '\0' ? '\n' : env[i];
		assert_non_null(strstr(
		    env, "\nSPILLWAY_COMPONENTS=vision,$(touch PWNED);chatbots`touch PWNED2`\n"));
		assert_non_null(strstr(env, "\nB=two words\n"));
		free(env);
		free(path);
	}

	/* The second boot: nothing redone, the backend awaited again. */
	before = file(root, "systemctl.args");
	if (run_script(root, stubs, &e, &out) != 0)
		fail_msg("the second run failed:\n%s", out);
	expect_in_order(out, second);
	free(out);
	text = file(root, "systemctl.args");
	assert_string_equal(text, before);
	free(text);
	free(before);

	/* No hostile value ran, anywhere. */
	{
		const char *marks[] = {"PWNED", "PWNED2", "PWNED3", "opt/spillway/backend/PWNED",
		    "opt/spillway/backend/PWNED2", "opt/spillway/backend/PWNED3"};
		struct stat sb;

		for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
			char *p = xasprintf("%s/%s", root, marks[i]);

			if (stat(p, &sb) == 0)
				fail_msg("%s exists: a value ran as code", p);
			free(p);
		}
	}

	/* The agent reports the backend's health. */
	st = wait_status(&e, NAME, aport, "backend_healthy", "true");
	assert_string_equal(jx_str(st, "status"), "ok");
	assert_string_equal(jx_str(st, "instance"), NAME);
	assert_string_equal(jx_str(st, "boot.step"), "ready"); /* the script's progress */
	assert_true(json_integer_value(jx_get(st, "boot.updated")) > 1700000000);
	assert_false(json_is_true(json_object_get(st, "preempted")));
	assert_int_equal(json_integer_value(json_object_get(st, "lease_seconds")), 5);
	json_decref(st);

	/* Only the VM's secret renews the lease, at a time near the VM's. */
	lease_authorization(SECRET, NAME, (int64_t)time(NULL), auth, sizeof auth);
	assert_int_equal(renew(&e, aport, auth), 200);
	lease_authorization(SECRET, NAME2, (int64_t)time(NULL), auth, sizeof auth);
	assert_int_equal(renew(&e, aport, auth), 401); /* another VM's signature */
	lease_authorization("0" SECRET, NAME, (int64_t)time(NULL), auth, sizeof auth);
	assert_int_equal(renew(&e, aport, auth), 401);
	lease_authorization(SECRET, NAME, (int64_t)time(NULL) - 1000, auth, sizeof auth);
	assert_int_equal(renew(&e, aport, auth), 401); /* too old: a replay */
	assert_int_equal(renew(&e, aport, "Authorization: Bearer " SECRET), 401);

	/* Only this daemon's certificate gets in; a client that pins another key gets nothing. */
	{
		struct resp r;
		char url[96], *pin = agent_pin(&e, NAME);
		struct tls_peer wrong = {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		    me.cert_pem, me.key_pem};

		agent_call(&r, &e, NAME, aport, "GET", "/spillway/status", NULL, &stranger);
		assert_int_equal(r.status, 0);
		resp_free(&r);
		snprintf(url, sizeof url, "https://127.0.0.1:%d/spillway/status", aport);
		https_call(&r, "GET", url, NULL, NULL, &wrong);
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.body, "public key"));
		resp_free(&r);
		text = file(root, "var/log/spillway/agent.log");
		assert_non_null(strstr(text, "refused"));
		free(text);
		free(pin);
	}

	/* What a route sends goes to the backend on the VM's loopback, and back. */
	text = through_agent(&e, NAME, aport, "GET / HTTP/1.0\r\nHost: vm\r\n\r\n");
	if (!str_prefix(text, "HTTP/1.0 200"))
		fail_msg("through the agent: '%.200s'", text);
	free(text);

	/* The lease runs out while someone uses the backend: the VM stays. */
	st = wait_status(&e, NAME, aport, "lease_left_seconds", "0");
	up = json_integer_value(json_object_get(st, "uptime_seconds"));
	json_decref(st);
	for (;;) { /* two of the agent's 1 s checks since the lease ran out */
		st = wait_status(&e, NAME, aport, "lease_left_seconds", "0");
		if (json_integer_value(json_object_get(st, "uptime_seconds")) >= up + 2)
			break;
		json_decref(st);
		sleep_ms(100);
	}
	assert_true(json_integer_value(json_object_get(st, "idle_seconds")) < 5);
	json_decref(st);
	assert_int_equal(deleted(&e, NAME), 0);

	/* Nobody uses it any more: the agent deletes its own instance. */
	close(hold);
	{
		int64_t until = now_ms() + PATIENCE_MS;

		while (deleted(&e, NAME) == 0 && now_ms() < until)
			sleep_ms(100);
	}
	assert_int_equal(deleted(&e, NAME), 200);
	text = file(root, "var/log/spillway/agent.log");
	assert_non_null(strstr(text, "deleting this VM: no lease renewal for"));
	assert_non_null(strstr(text, "the delete was accepted"));
	free(text);
	text = file(root, "agent.pid");
	wait_gone((pid_t)strtol(text, NULL, 10), "the agent after deleting its VM");
	free(text);

	/* A preemption notice: reported at once, the backend stopped once its connections ended. */
	insert(&e, NAME2, port, aport + 1, "600", NULL);
	{
		char *url = compute_url(&e, ZONE, "instances/" NAME2);
		json_t *v = wait_for_field(&e, url, "status", "RUNNING", PATIENCE_MS);

		json_decref(v);
		free(url);
	}
	agent2 = start_agent(root, stubs, &e, NAME2, NULL);
	st = wait_status(&e, NAME2, aport + 1, "backend_healthy", "true");
	json_decref(st);
	/* A request in flight through the agent: the backend is kept for it. */
	fwd_open(&held, &e, NAME2, aport + 1);
	fwd_send(&held, "GET / HTTP/1.0\r\nHost: vm\r\n");
	json_decref(wait_status(&e, NAME2, aport + 1, "connections", "1"));
	{
		char *url = xasprintf("%s/emulator/v1/projects/spillway-emulator/zones/" ZONE
		                      "/instances/" NAME2 "/preempt",
		    e.url);
		json_t *v = api(&e, "POST", url, "{}", 200);

		json_decref(v);
		free(url);
	}
	st = wait_status(&e, NAME2, aport + 1, "preempted", "true");
	assert_string_equal(jx_str(st, "status"), "preempted");
	json_decref(st);
	fwd_send(&held, "\r\n");
	text = fwd_finish(&held);
	if (!str_prefix(text, "HTTP/1.0 200"))
		fail_msg("the request in flight at the notice: '%.200s'", text);
	free(text);
	/* Its connection ended: now the backend stops. */
	wait_gone(backend, "the backend after the preemption notice");
	text = file(root, "systemctl.args");
	assert_non_null(strstr(text, "stop spillway-backend.service\n"));
	free(text);
	kill(agent2, SIGTERM);
	waitpid(agent2, NULL, 0);

	/* No Compute API: the agent powers the VM off instead. */
	insert(&e, NAME3, port, aport + 2, "1", NULL);
	agent3 = start_agent(root, stubs, &e, NAME3, "http://127.0.0.1:1/compute/v1");
	{
		int status;

		assert_int_equal(waitpid(agent3, &status, 0), agent3);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	text = file(root, "systemctl.args");
	assert_non_null(strstr(text, "\npoweroff\n"));
	free(text);
	text = file(root, "var/log/spillway/agent.log");
	assert_non_null(strstr(text, "powering off instead"));
	free(text);
	assert_int_equal(deleted(&e, NAME3), 0);

	/* The secret never reached a log. */
	{
		const char *logs[] = {"var/log/spillway/agent.log", "agent.out", NAME2 ".out",
		    NAME3 ".out", "var/log/spillway/startup.log"};

		for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
			text = file(root, logs[i]);
			if (strstr(text, SECRET) != NULL)
				fail_msg("the lease secret is in %s", logs[i]);
			free(text);
		}
	}
	emu_stop(&e);
	remove_tree(root);
	(void)state;
}

/* Whether a file is there under the root. */
static bool
exists(const char *root, const char *name)
{
	char *path = xasprintf("%s/%s", root, name);
	struct stat sb;
	bool there = lstat(path, &sb) == 0;

	free(path);
	return there;
}

/* Stop what the stub systemctl started under a root (its agent, its backend). */
static void
stop_units(const char *root)
{
	const char *pids[] = {"agent.pid", "backend.pid"};

	for (size_t i = 0; i < sizeof pids / sizeof pids[0]; i++) {
		char *text = file(root, pids[i]);
		pid_t pid = (pid_t)strtol(text, NULL, 10);

		if (pid > 0 && kill(pid, SIGTERM) == 0)
			wait_gone(pid, pids[i]);
		free(text);
	}
}

/* A copy of a root: the disk of a VM made from an image of it. */
static void
copy_root(const char *from, const char *to)
{
	char *cmd = xasprintf("cp -a '%s/.' '%s/' && rm -f '%s/git.args' '%s/apt.args' "
	                      "'%s/systemctl.args' '%s/agent.pid' '%s/backend.pid'",
	    from, to, to, to, to, to, to);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

/*
 * A bake (docs/images.md): the install and the prefetch, what the disk holds
 * written down, nothing of this VM's own left in the image, no backend
 * started, and the agent saying "baked". Then a VM from that disk with the
 * same install hash skips the install; one with another installs over it.
 */
static void
test_bake_script(void **state)
{
	const char *bake[] = {"packages: start", "agent: done", "fetch: start", "fetch: done",
	    "dependencies: done", "prefetch: start", "prefetch: done", "baked: the install is done",
	    NULL};
	const char *from_image[] = {"the image holds this install (1111)",
	    "packages: done before, skipped", "agent: start", "fetch: done before, skipped",
	    "dependencies: done before, skipped", "prefetch: done before, skipped",
	    "service: start", "ready", NULL};
	const char *stale[] = {"the image holds another install (1111, not 2222)",
	    "packages: start", "fetch: start", "dependencies: start", "prefetch: start",
	    "service: start", "ready", NULL};
	char root[] = "/tmp/spillway-bake-XXXXXX", vm2[] = "/tmp/spillway-bake2-XXXXXX",
	     vm3[] = "/tmp/spillway-bake3-XXXXXX", stubs[300], start[128], *out, *text;
	int port = 20000 + (int)((getpid() + 7919) % 20000), aport = port + 1;
	struct emu e;
	json_t *st;

	assert_non_null(mkdtemp(root));
	assert_non_null(mkdtemp(vm2));
	assert_non_null(mkdtemp(vm3));
	snprintf(stubs, sizeof stubs, "%s/stubs", root);
	make_stubs(stubs);
	snprintf(start, sizeof start,
	    "exec timeout 120 python3 -m http.server \"$PORT\" --bind 127.0.0.1");
	emu_start(&e, NULL);
	{
		const char *baking[] = {"spillway-backend-git", "https://example.invalid/app.git",
		    "spillway-install", "echo installed >installed", "spillway-prefetch",
		    "echo weights >weights", "spillway-start", start, "spillway-install-hash",
		    "1111", "spillway-mode", "bake", NULL};
		const char *same[] = {"spillway-backend-git", "https://example.invalid/app.git",
		    "spillway-install", "echo installed >installed", "spillway-start", start,
		    "spillway-install-hash", "1111", NULL};
		const char *other[] = {"spillway-backend-git", "https://example.invalid/app.git",
		    "spillway-install", "echo installed >installed", "spillway-start", start,
		    "spillway-install-hash", "2222", NULL};

		insert(&e, NAME "-bake", port, aport, "60", baking);
		insert(&e, NAME "-from-image", port + 2, aport + 2, "60", same);
		insert(&e, NAME "-stale", port + 4, aport + 4, "60", other);
	}

	if (run_script_as(root, stubs, &e, NAME "-bake", &out) != 0)
		fail_msg("the bake failed:\n%s", out);
	expect_in_order(out, bake);
	assert_null(strstr(out, "service: start"));
	free(out);
	text = file(root, "var/lib/spillway/installed");
	assert_string_equal(text, "1111\n");
	free(text);
	text = file(root, "opt/spillway/backend/weights");
	assert_string_equal(text, "weights\n");
	free(text);
	text = file(root, "var/lib/spillway/progress");
	assert_true(str_prefix(text, "baked "));
	free(text);
	/* The install's marks stay in the image; this VM's own do not. */
	assert_true(exists(root, "var/lib/spillway/done/packages"));
	assert_true(exists(root, "var/lib/spillway/done/prefetch"));
	assert_false(exists(root, "var/lib/spillway/done/agent"));
	assert_false(exists(root, "var/lib/spillway/agent-tls"));
	text = file(root, "systemctl.args");
	assert_non_null(strstr(text, "disable spillway-agent.service\n"));
	assert_null(strstr(text, "spillway-backend"));
	free(text);
	/* Its agent says so, with what the disk holds. */
	st = wait_status(&e, NAME "-bake", aport, "installed", "\"1111\"");
	assert_string_equal(jx_str(st, "boot.step"), "baked");
	json_decref(st);
	stop_units(root);

	/* A VM from that disk, the same install asked: only its own steps run. */
	copy_root(root, vm2);
	if (run_script_as(vm2, stubs, &e, NAME "-from-image", &out) != 0)
		fail_msg("the VM from the image failed:\n%s", out);
	expect_in_order(out, from_image);
	free(out);
	assert_false(exists(vm2, "git.args"));
	assert_false(exists(vm2, "apt.args"));
	stop_units(vm2);

	/* Another install asked: the image's is installed over. */
	copy_root(root, vm3);
	if (run_script_as(vm3, stubs, &e, NAME "-stale", &out) != 0)
		fail_msg("the VM from a stale image failed:\n%s", out);
	expect_in_order(out, stale);
	free(out);
	text = file(vm3, "git.args");
	assert_non_null(strstr(text, "fetch\n")); /* the clone is there: fetched, not cloned */
	free(text);
	text = file(vm3, "var/lib/spillway/installed");
	assert_string_equal(text, "2222\n");
	free(text);
	stop_units(vm3);

	emu_stop(&e);
	remove_tree(root);
	remove_tree(vm2);
	remove_tree(vm3);
	(void)state;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_startup_script),
	    cmocka_unit_test(test_bake_script),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
