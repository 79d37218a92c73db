/*
 * Routes end to end: `spillway run` with a component's listen and local
 * addresses against `spillway emulator`, connections opened here as an
 * application would. Each one is answered by whoever the route chose: the
 * local copy (a canned server here), or the VM's backend (the emulator's
 * guest, which answers with its instance's name).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

#include "harness.h"
#include "app.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "world.h"

static struct world *shown; /* its daemon's log is shown when an answer is wrong */

static void
expect_answer(int port, const char *want)
{
	char *got = get_through(port, "/work");

	if (strstr(got, want) == NULL) {
		if (shown != NULL)
			dmn_dump(&shown->d);
		fail_msg("through the route: '%s', not '%s'", got, want);
	}
	free(got);
}

/* The route's document once its connections have all ended (they end just after their answer). */
static json_t *
route_idle(struct world *w)
{
	json_t *route = route_doc(w);

	for (int i = 0; i < 200 && jx_int(route, "open") != 0; i++) {
		json_decref(route);
		sleep_ms(25);
		route = route_doc(w);
	}
	assert_int_equal(jx_int(route, "open"), 0);
	return route;
}

/* Connections open through the route now. */
static long long
jx_open(struct world *w)
{
	json_t *route = route_doc(w);
	long long n = jx_int(route, "open");

	json_decref(route);
	return n;
}

static void
write_config(const char *path, int listen, int local)
{
	char *text = local > 0
	    ? xasprintf("[component \"vision\"]\nlisten = 127.0.0.1:%d\n"
	                "local = 127.0.0.1:%d\n",
	          listen, local)
	    : xasprintf("[component \"vision\"]\nlisten = 127.0.0.1:%d\n", listen);

	assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
	free(text);
}

static void
start_with(
    struct world *w, int listen, int local, const char *extra_env, const char *const *emu_args)
{
	char conf[320], env_conf[340];
	const char *env[] = {env_conf, extra_env, NULL};

	world_init(w, SCALE, emu_args);
	shown = w;
	write_trace(w->trace, 0, 3600);
	snprintf(conf, sizeof conf, "%s/spillway.conf", w->d.state);
	snprintf(env_conf, sizeof env_conf, "SPILLWAY_CONFIG=%s", conf);
	write_config(conf, listen, local);
	world_run(w, NULL, env); /* its routes listen before its control socket answers */
	json_decref(route_doc(w));
}

static void
start(struct world *w, int listen, int local, const char *extra_env)
{
	start_with(w, listen, local, extra_env, NULL);
}

/* A connection through the route with a request begun, not finished: it stays open. */
static int
open_begun(int port)
{
	int fd = dial(port);

	dprintf(fd, "GET /long HTTP/1.0\r\nHost: app\r\n");
	return fd;
}

/* Finish the request and read the answer to its end ("" when the connection was cut). */
static char *
finish(int fd)
{
	dprintf(fd, "\r\n");
	return read_all(fd);
}

/*
 * Local, then the VM once it is READY, then local again once it is gone:
 * the application's address never changes, and routes says where and why.
 */
static void
test_local_vm_local(void **state)
{
	struct world w;
	struct canned local;
	struct vm_record v;
	int port = free_port();
	json_t *route;

	canned_start(&local, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n", 10, 0);
	local.text = "from-local";
	start(&w, port, local.port, NULL);
	expect_answer(port, "from-local");
	route = route_doc(&w);
	assert_string_equal(jx_str(route, "to"), "local");
	assert_non_null(strstr(jx_str(route, "why"), "no VM is READY for vision"));
	json_decref(route);

	v = create_vm(&w);
	wait_vm(&w, v.name, VM_READY);
	expect_answer(port, v.name);
	route = route_idle(&w);
	/* The library says the same (examples/monitor, through the daemon's socket). */
	{
		char *cmd =
		    xasprintf("SPILLWAY_SOCKET=%s/control.sock SPILLWAY_CONFIG=%s/spillway.conf "
		              "HOME=%s %s/monitor 0",
		        w.d.state, w.d.state, w.d.state, getenv("SPILLWAY_EXAMPLES"));
		char *want = xasprintf("route: vision 127.0.0.1:%d -> vm %s, 0 open", port, v.name);
		FILE *p = popen(cmd, "r");
		char line[512];
		bool seen = false;

		assert_non_null(p);
		while (fgets(line, sizeof line, p) != NULL)
			seen = seen || strstr(line, want) != NULL;
		assert_int_equal(pclose(p), 0);
		if (!seen)
			fail_msg("examples/monitor did not print '%s'", want);
		free(want);
		free(cmd);
	}
	assert_string_equal(jx_str(route, "to"), "vm");
	assert_string_equal(jx_str(route, "vm"), v.name);
	assert_int_equal(jx_int(route, "connections"), 2);
	assert_true(jx_int(route, "bytes_up") > 0 && jx_int(route, "bytes_down") > 0);
	assert_true(json_is_string(json_object_get(route, "last_use")));
	json_decref(route);

	delete_vm(&w, v.name); /* nothing open: deleted at once, no DRAINING */
	wait_vm(&w, v.name, VM_TERMINATED);
	{
		struct ledger_event *ev;
		size_t n;

		assert_int_equal(ledger_events(w.ledger, v.name, 100, &ev, &n), 0);
		for (size_t i = 0; i < n; i++)
			assert_null(strstr(ev[i].detail, "DRAINING"));
		free(ev);
	}
	expect_answer(port, "from-local");
	world_end(&w);
	canned_stop(&local);
}

/* The emulator's guest of this VM: its agent port behaves so from now on (emulator.md). */
static void
agent_mode(struct world *w, const char *vm, const char *mode)
{
	char *url = xasprintf("%s/emulator/v1/projects/spillway-emulator/zones/us-central1-a/"
	                      "instances/%s/guest",
	    w->e.url, vm);
	char *body = xasprintf("{\"agent\": \"%s\"}", mode);
	json_t *v = api(&w->e, "POST", url, body, 200);

	json_decref(v);
	free(body);
	free(url);
}

/* The daemon's log holds this (it says it once the connection went local). */
static void
expect_logged(struct world *w, const char *text)
{
	char *log = read_text(w->d.log);
	bool seen = log != NULL && strstr(log, text) != NULL;

	free(log);
	if (!seen) {
		dmn_dump(&w->d);
		fail_msg("the daemon's log does not say '%s'", text);
	}
}

/* The VM answers through the route again (its health may have to come back first). */
static void
vm_answers_again(struct world *w, int port, const char *vm)
{
	for (int i = 0; i < 600; i++) {
		char *got = get_through(port, "/work");
		bool ok = strstr(got, vm) != NULL;

		free(got);
		if (ok)
			return;
		sleep_ms(50);
	}
	dmn_dump(&w->d);
	fail_msg("%s never answered through the route again", vm);
}

/*
 * The way to the VM refused: an agent that accepts TCP and never completes
 * TLS, one with another key than it published (a man in the middle), one
 * that resets. Each connection goes to the local copy (nothing was sent),
 * the log says why, and the VM serves again once its agent does.
 */
static void
test_agent_faults(void **state)
{
	const struct {
		const char *mode, *logged;
	} faults[] = {
	    {"other-key", "is not the one the VM published in its guest attributes"},
	    {"stall", "did not complete the TLS handshake in time"},
	    {"reset", "TLS to its agent"},
	};
	struct world w;
	struct canned local;
	struct vm_record v;
	int port = free_port();

	canned_start(&local, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n", 10, 0);
	local.text = "from-local";
	start(&w, port, local.port, NULL);
	v = create_vm(&w);
	wait_vm(&w, v.name, VM_READY);
	expect_answer(port, v.name);
	/* Pinned while it booted, kept with the VM. */
	assert_int_equal(ledger_get(w.ledger, v.name, &v), 0);
	assert_true(str_prefix(v.tls_pin, "sha256//"));
	for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
		agent_mode(&w, v.name, faults[i].mode);
		expect_answer(port, "from-local");
		expect_logged(&w, faults[i].logged);
		agent_mode(&w, v.name, "ok");
		vm_answers_again(&w, port, v.name);
	}
	world_end(&w);
	canned_stop(&local);
}

/*
 * docs/offload.md's example, unchanged: its backend as the local copy and as
 * the VM's (behind the real data/spillway-agent.py, which the emulator runs
 * for the guest), its application asking through the route all along, while
 * a VM comes, serves, drains (a request in flight finishes on it) and goes.
 * Every request is answered; the answers come from local, then the VM, then
 * local again.
 */
static void
test_example_app(void **state)
{
	char *backend = xasprintf("%s/examples/offload/backend.py", getenv("SPILLWAY_SOURCE"));
	char *app = xasprintf("%s/examples/offload/app.py", getenv("SPILLWAY_SOURCE"));
	char *agent = xasprintf("%s/data/spillway-agent.py", getenv("SPILLWAY_SOURCE"));
	char *vm_backend = xasprintf("/usr/bin/python3 %s", backend);
	int port = free_port(), local = free_port(), status, held;
	char lport[16], pport[16], out[320], stop[320], *got;
	const char *bargv[] = {"/usr/bin/python3", backend, lport, "local", NULL};
	const char *aargv[] = {"/usr/bin/python3", app, pport, NULL};
	const char *emu_args[] = {"--guest-agent", agent, "--guest-backend", vm_backend, NULL};
	struct world w;
	struct vm_record v;
	pid_t b, a;
	size_t vm_answers;

	snprintf(lport, sizeof lport, "%d", local);
	snprintf(pport, sizeof pport, "%d", port);
	b = spawn_example(bargv, NULL, NULL);
	for (int i = 0; i < 200 && !tcp_accepts(local); i++)
		sleep_ms(25);
	start_with(&w, port, local, NULL, emu_args);
	snprintf(out, sizeof out, "%s/app.out", w.d.state);
	snprintf(stop, sizeof stop, "%s/app.stop", w.d.state);
	a = spawn_example(aargv, out, stop);
	wait_lines(&w, out, "local", 3);

	v = create_vm(&w);
	wait_vm(&w, v.name, VM_READY);
	wait_lines(&w, out, "vm", 3);
	{
		/* The VM's serial console has what its agent logged, as a console shows it. */
		char *tail = xasprintf("instances/%s/serialPort", v.name);
		char *url = compute_url(&w.e, v.zone, tail);
		json_t *console = api(&w.e, "GET", url, NULL, 200);
		char *want = xasprintf("%s spillway-agent: watching %s", v.name, v.name);

		assert_non_null(strstr(jx_str(console, "contents"), want));
		json_decref(console);
		free(want);
		free(url);
		free(tail);
	}
	/* A request in flight on the VM when it is deleted: it drains, and is answered. */
	held = open_begun(port);
	for (int i = 0; i < 200 && jx_open(&w) < 1; i++)
		sleep_ms(25);
	delete_vm(&w, v.name);
	wait_vm(&w, v.name, VM_DRAINING);
	vm_answers = lines_saying(out, "vm");
	wait_lines(&w, out, "local", lines_saying(out, "local") + 3);
	assert_true(lines_saying(out, "vm") <= vm_answers + 1); /* one may have been on its way */
	got = finish(held);
	assert_non_null(strstr(got, "\"served_by\": \"vm\""));
	free(got);
	wait_vm(&w, v.name, VM_TERMINATED);
	wait_lines(&w, out, "local", lines_saying(out, "local") + 3);

	assert_int_equal(write_file_atomic(stop, "", 0, 0600), 0);
	assert_int_equal(waitpid(a, &status, 0), a);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *text = read_text(out);

		fail_msg("the application saw failures:\n%s", text);
	}
	{
		char *text = read_text(out);
		const char *order[] = {"local\n", "vm\n", "local\n", NULL};

		expect_in_order(text, order);
		free(text);
	}
	kill(b, SIGTERM);
	waitpid(b, NULL, 0);
	world_end(&w);
	free(backend);
	free(app);
	free(agent);
	free(vm_backend);
}

/* Whether Debian's python3 has these modules (the protocols' peers). */
static bool
python_has(const char *modules)
{
	char *cmd = xasprintf("/usr/bin/python3 -c 'import %s' 2>/dev/null", modules);
	int status = system(cmd);

	free(cmd);
	return status == 0;
}

/*
 * Every protocol an application speaks passes unchanged, through the route,
 * TLS to the real agent, and on to a backend on the VM that speaks them all:
 * HTTP/1.1 keep-alive, WebSocket, server-sent events (each event as it comes),
 * HTTP/2 with prior knowledge, gRPC unary and streaming, each by a real client.
 */
static void
test_protocols(void **state)
{
	const char *src = getenv("SPILLWAY_SOURCE");
	char *agent = xasprintf("%s/data/spillway-agent.py", src);
	char *backend = xasprintf("/usr/bin/python3 %s/tests/data/protocol-backend.py", src);
	char *client = xasprintf("%s/tests/data/protocol-client.py", src);
	const char *emu_args[] = {"--guest-agent", agent, "--guest-backend", backend, NULL};
	int port = free_port(), status;
	char pport[16], out[320], *text;
	const char *cargv[] = {"/usr/bin/python3", client, pport, NULL};
	struct world w;
	struct vm_record v;
	json_t *route;
	pid_t c;

	if (!python_has("h2, grpc, websockets")) {
		print_message("no python3-h2, python3-grpcio or python3-websockets: "
		              "run tools/install-deps (make deps)\n");
		skip();
	}
	snprintf(pport, sizeof pport, "%d", port);
	start_with(&w, port, 0, NULL, emu_args);
	v = create_vm(&w);
	wait_vm(&w, v.name, VM_READY);
	snprintf(out, sizeof out, "%s/protocols.out", w.d.state);
	c = spawn_example(cargv, out, NULL);
	assert_int_equal(waitpid(c, &status, 0), c);
	text = read_text(out);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		dmn_dump(&w.d);
		fail_msg("through the route:\n%s", text != NULL ? text : "(nothing)");
	}
	{
		const char *order[] = {"ok http1-keep-alive\n", "ok websocket\n", "ok sse\n",
		    "ok h2c\n", "ok grpc\n", NULL};

		expect_in_order(text, order);
	}
	free(text);
	/* All of it went to the VM, and was counted: a MiB each way for the WebSocket alone. */
	route = route_idle(&w);
	assert_int_equal(jx_int(route, "refused"), 0);
	assert_true(jx_int(route, "connections") >= 5);
	assert_true(jx_int(route, "bytes_up") > 1 << 20);
	assert_true(jx_int(route, "bytes_down") > 1 << 20);
	json_decref(route);
	world_end(&w);
	free(agent);
	free(backend);
	free(client);
}

/* The emulator's arguments for guests that run the real agent and protocol-backend.py. */
struct real_guests {
	char *agent, *backend;
	const char *args[5];
};

static void
real_guests(struct real_guests *g)
{
	const char *src = getenv("SPILLWAY_SOURCE");

	g->agent = xasprintf("%s/data/spillway-agent.py", src);
	g->backend = xasprintf("/usr/bin/python3 %s/tests/data/protocol-backend.py", src);
	g->args[0] = "--guest-agent";
	g->args[1] = g->agent;
	g->args[2] = "--guest-backend";
	g->args[3] = g->backend;
	g->args[4] = NULL;
	if (!python_has("h2")) {
		print_message("no python3-h2: run tools/install-deps (make deps)\n");
		skip();
	}
}

static void
real_guests_free(struct real_guests *g)
{
	free(g->agent);
	free(g->backend);
}

/* A server-sent events stream through the route, its first event read: the stream is held. */
static int
open_events(int port)
{
	int fd = dial(port);
	struct buf b = BUF_INIT(1 << 16);
	char chunk[512];
	ssize_t n;

	dprintf(fd, "GET /events HTTP/1.1\r\nHost: vm\r\n\r\n");
	while (strstr(buf_str(&b), "data: one") == NULL && (n = read(fd, chunk, sizeof chunk)) > 0)
		buf_add(&b, chunk, (size_t)n);
	if (strstr(buf_str(&b), "data: one") == NULL)
		fail_msg("the stream's first event did not come: '%s'", buf_str(&b));
	buf_release(&b);
	return fd;
}

/*
 * A VM preempted with a stream in flight on it: the application's connection
 * ends once the VM is gone (its answer cannot finish anywhere else), and the
 * next connection goes to the local copy.
 */
static void
test_preempted_mid_transfer(void **state)
{
	struct real_guests g;
	struct canned local;
	struct world w;
	struct vm_record v;
	int port = free_port(), fd;
	char chunk[512];
	ssize_t n;

	real_guests(&g);
	canned_start(&local, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n", 10, 0);
	local.text = "from-local";
	start_with(&w, port, local.port, NULL, g.args);
	v = create_vm(&w);
	wait_vm(&w, v.name, VM_READY);
	fd = open_events(port);
	emu_admin(&w, &v, "preempt");
	wait_vm(&w, v.name, VM_PREEMPTED);
	/*
	 * What the stream still gives: never its second event, and an end: the
	 * VM drains through its notice, and ends the stream when it stops (as it
	 * ends it: closed), or the daemon resets it when the VM goes first.
	 */
	errno = 0;
	while ((n = read(fd, chunk, sizeof chunk)) > 0)
		assert_null(memmem(chunk, (size_t)n, "data: two", 9));
	assert_true(n == 0 || (n == -1 && errno == ECONNRESET));
	close(fd);
	expect_answer(port, "from-local");
	world_end(&w);
	canned_stop(&local);
	real_guests_free(&g);
}

/*
 * No local copy: with no VM a connection is closed at once; with one on its
 * way and route.wait_s, it waits and the VM answers it.
 */
static void
test_wait_for_vm(void **state)
{
	struct world w;
	struct vm_record v;
	int port = free_port();
	char *got;

	start(&w, port, 0, "SPILLWAY_ROUTE_WAIT_S=600");
	got = get_through(port, "/work");
	assert_string_equal(got, "");
	free(got);
	v = create_vm(&w);
	expect_answer(port, v.name); /* sent while it boots: answered once READY */
	{
		json_t *route = route_idle(&w);

		assert_int_equal(jx_int(route, "waiting"), 0);
		assert_int_equal(jx_int(route, "connections"), 2);
		json_decref(route);
	}
	world_end(&w);
}

/* A READY VM, a connection through the route open to it, and its delete asked: the connection. */
static int
open_then_delete(struct world *w, int port, struct vm_record *v)
{
	int fd;

	*v = create_vm(w);
	wait_vm(w, v->name, VM_READY);
	fd = open_begun(port);
	while (jx_open(w) != 1)
		sleep_ms(20);
	delete_vm(w, v->name);
	return fd;
}

/*
 * A VM deleted with a connection open drains: new connections go to the
 * local copy at once, the open one finishes on the VM, and the delete goes
 * when it ends, long before route.drain_s.
 */
static void
test_drain_until_done(void **state)
{
	struct world w;
	struct canned local;
	struct vm_record v;
	int port = free_port(), fd;
	char *got;

	canned_start(&local, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n", 10, 0);
	local.text = "from-local";
	start(&w, port, local.port, "SPILLWAY_ROUTE_DRAIN_S=3600");
	fd = open_then_delete(&w, port, &v);
	wait_vm(&w, v.name, VM_DRAINING);
	wait_event(&w, "state", "draining 1 connection for up to 3600 s");
	expect_answer(port, "from-local");
	got = finish(fd);
	if (strstr(got, v.name) == NULL)
		fail_msg("the open connection's answer: '%s'", got);
	free(got);
	wait_vm(&w, v.name, VM_TERMINATED);
	wait_event(&w, "state", "(its connections ended)");
	world_end(&w);
	canned_stop(&local);
}

/* Past route.drain_s the delete goes anyway, and what is still open is reset. */
static void
test_drain_deadline(void **state)
{
	struct world w;
	struct vm_record v;
	int port = free_port(), fd;
	char *got;

	start(&w, port, 0, "SPILLWAY_ROUTE_DRAIN_S=120"); /* 2 s at the test's pace */
	fd = open_then_delete(&w, port, &v);
	wait_vm(&w, v.name, VM_TERMINATED);
	wait_event(&w, "state", "(route.drain_s over with 1 connection open)");
	got = finish(fd);
	assert_string_equal(got, "");
	free(got);
	world_end(&w);
}

/* The daemon's resident memory, kB. */
static long
rss_kb(pid_t pid)
{
	char path[64], *text, *p;
	long kb = -1;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	text = read_text(path);
	if ((p = strstr(text, "VmRSS:")) != NULL)
		kb = strtol(p + 6, NULL, 10);
	free(text);
	return kb;
}

/*
 * An application that asks and never reads: the target is read no more once
 * 256 KiB wait for it, so the daemon holds little whatever the answer's size,
 * and everything else goes on.
 */
static void
test_reader_that_never_reads(void **state)
{
	struct world w;
	struct canned local;
	int port = free_port(), fd;
	long before, after;
	long long down = -1, was;
	json_t *route;

	canned_start(&local, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n", 256 << 20, 'x');
	start(&w, port, local.port, NULL);
	before = rss_kb(w.d.pid);
	fd = open_begun(port);
	dprintf(fd, "\r\n"); /* asked; never read */
	/* Until nothing more moves: the sockets' buffers and the queue are full. */
	for (int still = 0; still < 10;) {
		sleep_ms(100);
		route = route_doc(&w);
		was = down;
		down = jx_int(route, "bytes_down");
		json_decref(route);
		still = down == was && down > 0 ? still + 1 : 0;
	}
	after = rss_kb(w.d.pid);
	print_message("a 256 MiB answer to a reader that never reads: %lld bytes moved, the "
	              "daemon's RSS %ld -> %ld kB\n",
	    down, before, after);
	assert_true(down < 64 << 20);
	assert_true(after - before < 8192);
	/* Meanwhile the daemon answers as ever. */
	route = route_doc(&w);
	assert_int_equal(jx_int(route, "open"), 1);
	json_decref(route);
	close(fd);
	json_decref(route_idle(&w));
	world_end(&w);
	canned_stop(&local);
}

/* 1,000 connections at once, all to the VM, all answered. */
static void
test_thousand_connections(void **state)
{
	enum { N = 1000 };
	struct world w;
	struct vm_record v;
	int port = free_port(), *fds = calloc(N, sizeof *fds), answered = 0;
	json_t *route;

	long limit = raise_fd_limit(4096);

	if (limit >= 0 && limit < N + 64) {
		print_message("skipped: this process may not open %d sockets (ulimit -Hn)\n", N);
		free(fds);
		skip();
	}
	start(&w, port, 0, NULL);
	v = create_vm(&w);
	wait_vm(&w, v.name, VM_READY);
	for (int i = 0; i < N; i++)
		fds[i] = open_begun(port);
	for (int i = 0; i < N; i++) {
		char *got = finish(fds[i]);

		answered += strstr(got, v.name) != NULL;
		free(got);
	}
	if (answered != N) {
		dmn_dump(&w.d);
		fail_msg("%d of %d connections answered", answered, N);
	}
	route = route_idle(&w);
	assert_int_equal(jx_int(route, "connections"), N);
	json_decref(route);
	free(fds);
	world_end(&w);
}

/* The local copy down: the connection is closed, the log says why, the daemon goes on. */
static void
test_local_down(void **state)
{
	struct world w;
	int port = free_port(), local = free_port();
	char *got, *log, *want;

	start(&w, port, local, NULL);
	got = get_through(port, "/work");
	assert_string_equal(got, "");
	free(got);
	json_decref(route_idle(&w));
	log = read_text(w.d.log);
	want = xasprintf("route vision: its local copy at 127.0.0.1:%d cannot be reached "
	                 "(connection refused): connection closed",
	    local);
	if (strstr(log, want) == NULL)
		fail_msg("the log does not say '%s':\n%s", want, log);
	free(want);
	free(log);
	world_end(&w);
}

/* Another user's process at the route: refused, and counted. */
static void
test_other_user_refused(void **state)
{
	struct world w;
	int port = free_port(), status;
	pid_t pid;
	json_t *route;

	if (geteuid() != 0) {
		print_message("skipped: another user's process needs root to be made here\n");
		skip();
	}
	start(&w, port, free_port(), NULL);
	if ((pid = fork()) == 0) {
		char *got;

		if (setuid(65534) != 0)
			_exit(2);
		got = get_through(port, "/work");
		_exit(strcmp(got, "") == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	route = route_doc(&w);
	assert_int_equal(jx_int(route, "refused"), 1);
	json_decref(route);
	{
		char *log = read_text(w.d.log);

		assert_non_null(strstr(log, "belongs to uid 65534"));
		free(log);
	}
	world_end(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_local_vm_local),
	    cmocka_unit_test(test_agent_faults),
	    cmocka_unit_test(test_example_app),
	    cmocka_unit_test(test_protocols),
	    cmocka_unit_test(test_preempted_mid_transfer),
	    cmocka_unit_test(test_wait_for_vm),
	    cmocka_unit_test(test_drain_until_done),
	    cmocka_unit_test(test_drain_deadline),
	    cmocka_unit_test(test_reader_that_never_reads),
	    cmocka_unit_test(test_thousand_connections),
	    cmocka_unit_test(test_local_down),
	    cmocka_unit_test(test_other_user_refused),
	};

	if (getenv("SPILLWAY_TEST") != NULL) /* one test, or a pattern of them */
		cmocka_set_test_filter(getenv("SPILLWAY_TEST"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
