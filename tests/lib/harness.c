#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"
#include "util/jschema.h"
#include "util/buf.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define START_TIMEOUT_MS 60000

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

char *
read_text(const char *path)
{
	char *s = NULL;

	if (read_file(path, 64 << 20, &s, NULL) != 0)
		return NULL;
	return s;
}

static const char *
bin(void)
{
	const char *b = getenv("SPILLWAY_BIN");

	if (b == NULL)
		fail_msg("SPILLWAY_BIN is not set: run the tests with meson test");
	return b;
}

void
emu_start(struct emu *e, const char *const *extra)
{
	const char *argv[64];
	int out[2], n = 0;
	char line[256], portfile[300];
	size_t len = 0;
	int64_t deadline = now_ms() + START_TIMEOUT_MS;
	const char *wrapper = getenv("SPILLWAY_WRAPPER");
	char **wrap = str_split(wrapper != NULL ? wrapper : "", ' ', NULL);

	memset(e, 0, sizeof *e);
	snprintf(e->dir, sizeof e->dir, "/tmp/spillway-test-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->creds, sizeof e->creds, "%s/sa.json", e->dir);
	snprintf(e->user_creds, sizeof e->user_creds, "%s/user.json", e->dir);
	snprintf(e->log, sizeof e->log, "%s/requests.jsonl", e->dir);
	snprintf(portfile, sizeof portfile, "%s/port", e->dir);
	/* SPILLWAY_WRAPPER runs the emulator under a tool, e.g. valgrind. */
	for (char **p = wrap; *p != NULL && n < 16; p++)
		argv[n++] = *p;
	argv[n++] = bin();
	argv[n++] = "emulator";
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--write-credentials";
	argv[n++] = e->creds;
	argv[n++] = "--write-user-credentials";
	argv[n++] = e->user_creds;
	argv[n++] = "--request-log";
	argv[n++] = e->log;
	argv[n++] = "--port-file";
	argv[n++] = portfile;
	for (; extra != NULL && *extra != NULL && n < 62; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	assert_int_equal(pipe(out), 0);
	e->pid = fork();
	assert_true(e->pid >= 0);
	if (e->pid == 0) {
		/* A test that crashes must not leave its emulator behind (holding meson's pipe). */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(out[1], STDOUT_FILENO);
		close(out[0]);
		close(out[1]);
		execvp(argv[0], (char **)argv);
		_exit(127);
	}
	close(out[1]);
	str_list_free(wrap);
	/* The first line of stdout says where it listens. */
	while (len < sizeof line - 1 && memchr(line, '\n', len) == NULL) {
		struct pollfd p = {out[0], POLLIN, 0};
		int left = (int)(deadline - now_ms());
		ssize_t r;

		if (left <= 0 || poll(&p, 1, left) <= 0)
			fail_msg("the emulator did not say where it listens");
		if ((r = read(out[0], line + len, sizeof line - 1 - len)) <= 0)
			fail_msg("the emulator exited before listening");
		len += (size_t)r;
		line[len] = '\0';
	}
	close(out[0]);
	assert_true(str_prefix(line, "listening on http://127.0.0.1:"));
	e->port = atoi(strrchr(line, ':') + 1);
	assert_true(e->port > 0);
	snprintf(e->url, sizeof e->url, "http://127.0.0.1:%d", e->port);
	{
		char *pf = read_text(portfile);

		assert_non_null(pf);
		assert_int_equal(atoi(pf), e->port);
		free(pf);
	}
}

void
emu_stop(struct emu *e)
{
	int status = 0;
	char cmd[400];

	if (e->pid <= 0)
		return;
	kill(e->pid, SIGTERM);
	assert_int_equal(waitpid(e->pid, &status, 0), e->pid);
	e->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the emulator did not exit cleanly on SIGTERM (status 0x%x)", status);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
	if (system(cmd) != 0)
		fail_msg("cannot remove %s", e->dir);
	free(e->token);
	e->token = NULL;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;

	r->body = xrealloc(r->body, r->len + size * n + 1);
	memcpy(r->body + r->len, p, size * n);
	r->len += size * n;
	r->body[r->len] = '\0';
	return size * n;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	size_t old = r->headers != NULL ? strlen(r->headers) : 0;

	r->headers = xrealloc(r->headers, old + size * n + 1);
	memcpy(r->headers + old, p, size * n);
	r->headers[old + size * n] = '\0';
	return size * n;
}

static void
call(struct resp *r, const char *method, const char *url, const char *token, const char *body,
    const char *const *extra, const char *source_ip, const char *unix_socket,
    const struct tls_peer *peer)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char auth[2048];
	int64_t t0 = now_ms();
	CURLcode rc;

	memset(r, 0, sizeof *r);
	if (token != NULL) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		h = curl_slist_append(h, auth);
	}
	if (body != NULL && strchr("{[", body[0]) != NULL)
		h = curl_slist_append(h, "Content-Type: application/json");
	for (; extra != NULL && *extra != NULL; extra++)
		h = curl_slist_append(h, *extra);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	/* Send paths as written: the server, not curl, must handle "..". */
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	if (source_ip != NULL)
		curl_easy_setopt(c, CURLOPT_INTERFACE, source_ip);
	if (unix_socket != NULL)
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_socket);
	if (peer != NULL) {
		struct curl_blob cert = {(void *)peer->cert_pem, strlen(peer->cert_pem), 1};
		struct curl_blob key = {(void *)peer->key_pem, strlen(peer->key_pem), 1};

		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
		curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, peer->pin);
		curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key);
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK && peer != NULL) {
		/* A refused handshake is an answer here: status 0, and why. */
		r->body = xstrdup(curl_easy_strerror(rc));
		curl_slist_free_all(h);
		curl_easy_cleanup(c);
		return;
	}
	if (rc != CURLE_OK)
		fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	r->seconds = (double)(now_ms() - t0) / 1000.0;
	if (r->body == NULL)
		r->body = xstrdup("");
	r->json = json_loadb(r->body, r->len, 0, NULL);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
}

void
http_call(struct resp *r, const char *method, const char *url, const char *token, const char *body,
    const char *const *extra, const char *source_ip)
{
	call(r, method, url, token, body, extra, source_ip, NULL, NULL);
}

void
https_call(struct resp *r, const char *method, const char *url, const char *body,
    const char *const *extra, const struct tls_peer *peer)
{
	call(r, method, url, NULL, body, extra, NULL, NULL, peer);
}

void
dmn_call(struct dmn *d, struct resp *r, const char *method, const char *path, const char *body)
{
	char *sock = xasprintf("%s/control.sock", d->state),
	     *url = xasprintf("http://spillway%s", path);
	int64_t deadline = now_ms() + 30000;
	struct stat st;

	/* A daemon just started may not listen yet. */
	while (stat(sock, &st) != 0 && now_ms() < deadline)
		sleep_ms(20);
	call(r, method, url, NULL, body, NULL, NULL, sock, NULL);
	free(url);
	free(sock);
}

void
resp_free(struct resp *r)
{
	free(r->body);
	free(r->headers);
	json_decref(r->json);
	memset(r, 0, sizeof *r);
}

json_t *
api(struct emu *e, const char *method, const char *url, const char *body, long expect)
{
	struct resp r;
	json_t *v;

	http_call(&r, method, url, emu_token(e), body, NULL, NULL);
	if (r.status != expect)
		fail_msg("%s %s: expected %ld, got %ld: %s", method, url, expect, r.status, r.body);
	if (r.json == NULL)
		fail_msg("%s %s: the answer is not JSON: %s", method, url, r.body);
	v = json_incref(r.json);
	resp_free(&r);
	return v;
}

const char *
emu_token(struct emu *e)
{
	char *text, *cause = NULL, *jwt = NULL, *form, url[128];
	json_t *key, *hdr, *claims;
	EVP_PKEY *pk;
	int64_t now = time(NULL);
	struct resp r;

	if (e->token != NULL)
		return e->token;
	assert_non_null(text = read_text(e->creds));
	assert_int_equal(jx_parse(text, strlen(text), &key, &cause), 0);
	assert_non_null(pk = pem_read_private(jx_str(key, "private_key"), &cause));
	hdr = jx_pack(
	    "{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", jx_str(key, "private_key_id"));
	claims = jx_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", jx_str(key, "client_email"), "scope",
	    "https://www.googleapis.com/auth/compute", "aud", jx_str(key, "token_uri"), "iat",
	    (json_int_t)now, "exp", (json_int_t)now + 3600);
	assert_int_equal(jwt_sign_rs256(pk, hdr, claims, &jwt), 0);
	form =
	    xasprintf("grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=%s", jwt);
	snprintf(url, sizeof url, "%s/token", e->url);
	http_call(&r, "POST", url, NULL, form, NULL, NULL);
	if (r.status != 200 || jx_str(r.json, "access_token") == NULL)
		fail_msg("token: %ld %s", r.status, r.body);
	expect_schema("OAuthToken", r.json);
	e->token = xstrdup(jx_str(r.json, "access_token"));
	resp_free(&r);
	EVP_PKEY_free(pk);
	json_decref(hdr);
	json_decref(claims);
	json_decref(key);
	free(jwt);
	free(form);
	free(text);
	return e->token;
}

char *
compute_url(const struct emu *e, const char *zone, const char *tail)
{
	return xasprintf(
	    "%s/compute/v1/projects/spillway-emulator/zones/%s/%s", e->url, zone, tail);
}

static json_t *
schemas(void)
{
	static json_t *doc;

	if (doc == NULL) {
		const char *src = getenv("SPILLWAY_SOURCE");
		char *path, *text, *cause = NULL;

		if (src == NULL)
			fail_msg("SPILLWAY_SOURCE is not set: run the tests with meson test");
		path = xasprintf("%s/data/gce-schema.json", src);
		assert_non_null(text = read_text(path));
		assert_int_equal(jx_parse(text, strlen(text), &doc, &cause), 0);
		free(text);
		free(path);
	}
	return json_object_get(doc, "schemas");
}

void
expect_schema(const char *type, const json_t *v)
{
	char *cause = NULL;

	if (jschema_validate(schemas(), type, v, type, JSCHEMA_STRICT, &cause) != 0) {
		char *s = jx_dumps(v);

		fail_msg("not a valid %s: %s\n%.2000s", type, cause, s);
	}
}

void
expect_google_error(const json_t *v, long code, const char *reason)
{
	expect_schema("GoogleError", v);
	assert_int_equal(json_integer_value(jx_get(v, "error.code")), code);
	assert_non_null(jx_str(v, "error.message"));
	if (reason != NULL)
		assert_string_equal(jx_str(v, "error.errors.0.reason"), reason);
}

json_t *
wait_for_field(struct emu *e, const char *url, const char *field, const char *value, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		json_t *v = api(e, "GET", url, NULL, 200);
		const char *got = jx_str(v, field);

		if (got != NULL && strcmp(got, value) == 0)
			return v;
		if (now_ms() > deadline)
			fail_msg("%s: %s stayed '%s', never '%s'", url, field, got ? got : "(none)",
			    value);
		json_decref(v);
		sleep_ms(50);
	}
}

long
wait_for_status(struct emu *e, const char *url, long status, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		struct resp r;
		long got;

		http_call(&r, "GET", url, emu_token(e), NULL, NULL, NULL);
		got = r.status;
		resp_free(&r);
		if (got == status)
			return got;
		if (now_ms() > deadline)
			fail_msg("%s: status stayed %ld, never %ld", url, got, status);
		sleep_ms(50);
	}
}

json_t *
instance_body(const char *zone, const char *name, const char *machine, bool spot, const char *lk,
    const char *lv)
{
	char *mt = xasprintf("zones/%s/machineTypes/%s", zone, machine);
	json_t *v = jx_pack("{s:s, s:s, s:[{s:b, s:b, s:{s:s, s:s}}], s:[{s:s, s:[{s:s, s:s}]}], "
	                    "s:{s:[{s:s, s:s}]}}",
	    "name", name, "machineType", mt, "disks", "boot", true, "autoDelete", true,
	    "initializeParams", "sourceImage",
	    "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb", "20",
	    "networkInterfaces", "network", "global/networks/default", "accessConfigs", "type",
	    "ONE_TO_ONE_NAT", "name", "External NAT", "metadata", "items", "key",
	    "spillway-components", "value", "vision,chatbots");

	if (spot)
		json_object_set_new(v, "scheduling",
		    jx_pack("{s:s, s:s, s:s, s:b}", "provisioningModel", "SPOT",
		        "instanceTerminationAction", "DELETE", "onHostMaintenance", "TERMINATE",
		        "automaticRestart", false));
	if (lk != NULL)
		json_object_set_new(v, "labels", jx_pack("{s:s}", lk, lv));
	free(mt);
	return v;
}

/*
 * Run path with argv (argv[0] is its name) and its output captured; the child
 * adds env ("K=V") to its environment before it execs, and with home, sets
 * HOME and XDG_CONFIG_HOME to it and unsets what would point elsewhere.
 */
static void
run_captured(struct cmd_run *r, const char *path, const char *const *argv, const char *home,
    const char *const *env)
{
	int out[2], err[2];
	struct buf bo = BUF_INIT(1 << 24), be = BUF_INIT(1 << 22);
	pid_t pid;
	int status;

	assert_int_equal(pipe(out), 0);
	assert_int_equal(pipe(err), 0);
	pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		/* Only 1 and 2: a daemon it detaches must not hold the pipes open. */
		close(out[0]);
		close(err[0]);
		close(out[1]);
		close(err[1]);
		if (home != NULL) {
			setenv("HOME", home, 1);
			setenv("XDG_CONFIG_HOME", home, 1);
			unsetenv("XDG_STATE_HOME");
			unsetenv("CLOUDSDK_CONFIG");
		}
		for (; env != NULL && *env != NULL; env++)
			putenv((char *)*env);
		execvp(path, (char **)argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	{
		/* poll() skips negative fds: a closed pipe drops out of the set. */
		struct pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
		struct buf *into[2] = {&bo, &be};

		while (p[0].fd >= 0 || p[1].fd >= 0) {
			if (poll(p, 2, 300000) <= 0)
				fail_msg("%s %s: no output for five minutes", argv[0], argv[1]);
			for (int i = 0; i < 2; i++) {
				char chunk[4096];
				ssize_t n;

				if (p[i].fd < 0 || p[i].revents == 0)
					continue;
				if ((n = read(p[i].fd, chunk, sizeof chunk)) <= 0) {
					close(p[i].fd);
					p[i].fd = -1;
				} else {
					buf_add(into[i], chunk, (size_t)n);
				}
			}
		}
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	r->out = buf_detach(&bo, NULL);
	r->err = buf_detach(&be, NULL);
}

void
run_spillway(struct cmd_run *r, const char *home, const char *const *args, const char *const *env)
{
	const char *argv[40];
	int n = 0;

	argv[n++] = "spillway";
	for (; *args != NULL && n < 38; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	run_captured(r, bin(), argv, home, env);
}

void
run_program(struct cmd_run *r, const char *const *argv, const char *const *env)
{
	run_captured(r, argv[0], argv, NULL, env);
}

void
cmd_run_free(struct cmd_run *r)
{
	free(r->out);
	free(r->err);
}

/* --- the daemon --- */

void
dmn_init(struct dmn *d)
{
	memset(d, 0, sizeof *d);
	snprintf(d->state, sizeof d->state, "/tmp/spillway-daemon-XXXXXX");
	assert_non_null(mkdtemp(d->state));
	snprintf(d->log, sizeof d->log, "%s/daemon.log", d->state);
}

void
dmn_start(struct dmn *d, const struct emu *e, const char *const *args, const char *const *env)
{
	const char *wrapper = getenv("SPILLWAY_WRAPPER");
	char **wrap = str_split(wrapper != NULL ? wrapper : "", ' ', NULL);
	char *vars[8];
	const char *argv[64];
	int n = 0, fd;

	vars[0] = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", e->creds);
	vars[1] = xasprintf("SPILLWAY_COMPUTE_ENDPOINT=%s/compute/v1/", e->url);
	vars[2] = xasprintf("SPILLWAY_BILLING_ENDPOINT=%s/v1/", e->url);
	vars[3] = xasprintf("SPILLWAY_STATE_DIR=%s", d->state);
	vars[4] = xasprintf("SPILLWAY_SOCKET=%s/control.sock", d->state);
	vars[5] = xasprintf("HOME=%s", d->state);
	vars[6] = xasprintf("XDG_CONFIG_HOME=%s", d->state);
	vars[7] = NULL;
	for (char **p = wrap; *p != NULL && n < 16; p++)
		argv[n++] = *p;
	argv[n++] = bin();
	argv[n++] = "run";
	argv[n++] = "--foreground";
	for (; args != NULL && *args != NULL && n < 62; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	d->pid = fork();
	assert_true(d->pid >= 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		unsetenv("XDG_STATE_HOME");
		unsetenv("CLOUDSDK_CONFIG");
		setenv("GCP_PROJECT_ID", "spillway-emulator", 1);
		for (int i = 0; vars[i] != NULL; i++)
			putenv(vars[i]);
		for (; env != NULL && *env != NULL; env++)
			putenv((char *)*env);
		execvp(argv[0], (char **)argv);
		_exit(127);
	}
	close(fd);
	for (int i = 0; vars[i] != NULL; i++)
		free(vars[i]);
	str_list_free(wrap);
}

int
dmn_stop(struct dmn *d, int sig)
{
	int status;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, sig);
	if (waitpid(d->pid, &status, 0) != d->pid)
		fail_msg("waitpid: %s", strerror(errno));
	d->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void
dmn_dump(const struct dmn *d)
{
	char *text = read_text(d->log);

	fprintf(stderr, "--- %s ---\n%s--- end ---\n", d->log, text != NULL ? text : "(none)\n");
	free(text);
}

void
dmn_cleanup(struct dmn *d)
{
	if (d->pid > 0)
		dmn_stop(d, SIGKILL);
	remove_tree(d->state);
}

/* high_s seconds of heavy stall (CRITICAL), then calm_s of none, a sample a second. */
void
write_trace(const char *path, int high_s, int calm_s)
{
	FILE *f = fopen(path, "w");
	int64_t t = 1700000000000, some = 0, full = 0;

	assert_non_null(f);
	fprintf(f, "# spillway pressure trace 1\n");
	for (int i = 0; i <= high_s + calm_s; i++, t += 1000) {
		bool high = i > 0 && i <= high_s;

		some += high ? 600000 : 0;
		full += high ? 400000 : 0;
		fprintf(f,
		    "t=%lld ev=%d some=%lld full=%lld sa10=%.2f sa60=%.2f fa10=%.2f fa60=%.2f "
		    "mt=16000000 ma=8000000 st=0 sf=0 si=0 so=0 mf=0 rf=0 ra=0\n",
		    (long long)t, i == 1, (long long)some, (long long)full, high ? 60.0 : 0,
		    high ? 60.0 : 0, high ? 40.0 : 0, high ? 40.0 : 0);
	}
	fclose(f);
}

void
expect_in_order(const char *text, const char *const *order)
{
	const char *at = text;

	for (; *order != NULL; order++) {
		const char *next = strstr(at, *order);

		if (next == NULL) {
			fprintf(stderr, "%s\n", text); /* whole: cmocka's message would cut it */
			fail_msg("'%s' missing or out of order in the text above", *order);
		}
		at = next + strlen(*order);
	}
}

json_t *
emu_instances(struct emu *e)
{
	char *url = xasprintf("%s/emulator/v1/instances", e->url);
	struct resp r;
	json_t *all;

	http_call(&r, "GET", url, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	all = json_incref(json_object_get(r.json, "instances"));
	resp_free(&r);
	free(url);
	return all;
}

void
emu_set_faults(struct emu *e, const char *spec)
{
	char *url = xasprintf("%s/emulator/v1/faults", e->url);
	json_t *body = json_pack("{s:s}", "faults", spec);
	char *text = jx_dumps(body);
	struct resp r;

	http_call(&r, "PUT", url, NULL, text, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	free(text);
	json_decref(body);
	free(url);
}

bool
tcp_accepts(int port)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	ok = connect(fd, (struct sockaddr *)&to, sizeof to) == 0;
	close(fd);
	return ok;
}

/* --- a server that answers badly on purpose --- */

static void *
canned_serve(void *arg)
{
	struct canned *s = arg;

	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		char req[8192];
		char *body;

		if (c < 0)
			break;
		if (read(c, req, sizeof req) <= 0) {
			close(c);
			break;
		}
		s->served++;
		body = xmalloc(s->body_len + 1);
		if (s->text != NULL)
			memcpy(body, s->text, s->body_len);
		else
			memset(body, s->fill, s->body_len);
		dprintf(
		    c, "%sContent-Length: %zu\r\nConnection: close\r\n\r\n", s->head, s->body_len);
		for (size_t off = 0; off < s->body_len;) {
			/* The client hangs up early on purpose: no SIGPIPE for that. */
			ssize_t n = send(c, body + off, s->body_len - off, MSG_NOSIGNAL);

			if (n <= 0)
				break;
			off += (size_t)n;
		}
		free(body);
		close(c);
	}
	return NULL;
}

void
canned_start(struct canned *s, const char *head, size_t len, char fill)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sin;

	s->head = head;
	s->body_len = len;
	s->fill = fill;
	s->text = NULL;
	s->served = 0;
	assert_true((s->fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(s->fd, 16), 0);
	getsockname(s->fd, (struct sockaddr *)&sin, &sl);
	s->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, canned_serve, s), 0);
}

void
canned_stop(struct canned *s)
{
	shutdown(s->fd, SHUT_RDWR);
	close(s->fd);
	pthread_join(s->thread, NULL);
}
