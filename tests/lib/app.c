/*
 * The application's side of a route, for the end-to-end tests (app.h).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "app.h"
#include "harness.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "world.h"

/* A port nobody listens on now. */
int
free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* A connection to the route, as an application opens it (reads time out after 60 s). */
int
dial(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 60};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	return fd;
}

/* What came back until the other end closed ("" when it closed without a word); fd closed. */
char *
read_all(int fd)
{
	struct buf b = BUF_INIT(4096);
	char chunk[4096], *text;
	ssize_t n;

	while ((n = read(fd, chunk, sizeof chunk)) > 0)
		buf_add(&b, chunk, (size_t)n);
	close(fd);
	text = xstrdup(buf_str(&b));
	buf_release(&b);
	return text;
}

/* An HTTP/1.0 GET through the route, sent whole, and its answer. */
char *
get_through(int port, const char *path)
{
	int fd = dial(port);

	dprintf(fd, "GET %s HTTP/1.0\r\nHost: app\r\n\r\n", path);
	return read_all(fd);
}

long long
jx_int(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

json_t *
route_doc(struct world *w)
{
	struct resp r;
	json_t *route;

	dmn_call(&w->d, &r, "GET", "/v1/routes", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "routes")), 1);
	route = json_incref(json_array_get(json_object_get(r.json, "routes"), 0));
	resp_free(&r);
	return route;
}

struct vm_record
create_vm(struct world *w)
{
	struct vm_record v;
	struct resp r;

	for (int i = 0; i < 400; i++) {
		dmn_call(&w->d, &r, "POST", "/v1/vms", "{\"components\": [\"vision\"]}");
		if (r.status != 503)
			break;
		resp_free(&r);
		sleep_ms(50);
	}
	if (r.status != 201)
		fail_msg("POST /v1/vms: %ld %s", r.status, r.body);
	assert_int_equal(ledger_get(w->ledger, jx_str(r.json, "vm.name"), &v), 0);
	resp_free(&r);
	return v;
}

void
delete_vm(struct world *w, const char *name)
{
	struct resp r;
	char *path = xasprintf("/v1/vms/%s", name);

	dmn_call(&w->d, &r, "DELETE", path, NULL);
	if (r.status != 200 && r.status != 202)
		fail_msg("DELETE %s: %ld %s", path, r.status, r.body);
	resp_free(&r);
	free(path);
}

/* A program of examples/offload, its output in out (NULL: /dev/null). */
pid_t
spawn_example(const char *const *argv, const char *out, const char *stop)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(out != NULL ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(fd, 1);
		if (stop != NULL)
			setenv("APP_STOP", stop, 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	assert_true(pid > 0);
	return pid;
}

/* Lines the application printed that say this (each answer is a line). */
size_t
lines_saying(const char *path, const char *what)
{
	char *text = read_text(path), **lines = str_split(text ? text : "", '\n', NULL);
	size_t n = 0;

	for (char **l = lines; *l != NULL; l++)
		n += strcmp(*l, what) == 0;
	str_list_free(lines);
	free(text);
	return n;
}

void
wait_lines(struct world *w, const char *path, const char *what, size_t n)
{
	for (int i = 0; i < 1200 && lines_saying(path, what) < n; i++)
		sleep_ms(50);
	if (lines_saying(path, what) < n) {
		dmn_dump(&w->d);
		fail_msg("the application never had %zu answers from %s", n, what);
	}
}

/* POST an admin verb of the emulator for this VM ("preempt", ...; docs/emulator.md). */
void
emu_admin(struct world *w, const struct vm_record *v, const char *verb)
{
	char *url = xasprintf("%s/emulator/v1/projects/spillway-emulator/zones/%s/instances/%s/%s",
	    w->e.url, v->zone, v->name, verb);

	json_decref(api(&w->e, "POST", url, "{}", 200));
	free(url);
}

pid_t
app_start(int port, const char *out, const char *stop)
{
	char pport[16];
	char *app = xasprintf("%s/examples/offload/app.py", getenv("SPILLWAY_SOURCE"));
	const char *argv[] = {"/usr/bin/python3", app, pport, NULL};
	pid_t pid;

	snprintf(pport, sizeof pport, "%d", port);
	unlink(stop);
	pid = spawn_example(argv, out, stop);
	free(app);
	return pid;
}

void
app_stop_clean(struct world *w, pid_t app, const char *out, const char *stop)
{
	int status;

	assert_int_equal(write_file_atomic(stop, "", 0, 0600), 0);
	assert_int_equal(waitpid(app, &status, 0), app);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *text = read_text(out);

		dmn_dump(&w->d);
		fail_msg("the application saw failures:\n%s", text);
	}
}

char *
route_copy(struct world *w)
{
	json_t *route = route_doc(w);
	char *s = xstrdup(jx_str(route, "local_copy") != NULL ? jx_str(route, "local_copy") : "");

	json_decref(route);
	return s;
}

void
wait_route_copy(struct world *w, const char *want, int ms)
{
	int64_t deadline = now_ms() + ms;
	char *got = NULL;

	for (;;) {
		free(got);
		got = route_copy(w);
		if (strcmp(got, want) == 0)
			break;
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("the local copy is '%s', not '%s'", got, want);
		}
		sleep_ms(50);
	}
	free(got);
}
