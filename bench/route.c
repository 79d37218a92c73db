/*
 * bench/route: a component's route against its peers, side by side in one
 * run on loopback. A backend here (a thread per connection) answers
 * GET /small with 16 bytes, keep-alive, and GET /big with 1 GiB; it is
 * reached three ways: directly; through spillway's router (in this process,
 * on its own thread and loop, so its CPU is that thread's) to a READY VM,
 * that is TLS to the VM's agent, its key pinned, the router's certificate
 * shown, ALPN spillway-fwd/1; and through HAProxy (Debian's haproxy, its own
 * process) originating the same TLS (`server ... ssl crt client.pem alpn
 * spillway-fwd/1 verify none`). The agent both reach is the same: a second
 * HAProxy that ends the TLS, lets in only the router's certificate and
 * passes the bytes to the backend, as data/spillway-agent.py does on a VM.
 * For each: small requests on one kept connection (p50/p99), new
 * connections each with one request (p50/p99: a TLS handshake each), the
 * 1 GiB stream (MB/s) and the proxy's CPU per MB. And route_choose's cost
 * per connection.
 *
 *	usage: route [SMALL_REQUESTS] [NEW_CONNECTIONS] [STREAM_MIB]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "config/config.h"
#include "net/tls.h"
#include "route/route.h"
#include "util/clock.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "figure.h"

#define SMALL_BODY "0123456789abcdef"
#define CHUNK      (256 * 1024)

static long long stream_bytes;
static char dir[] = "/tmp/spillway-route-XXXXXX";
static pid_t haproxy = -1, agent = -1; /* the proxy measured, the agent both reach */

/* The agent's key and the router's: made once, written where HAProxy reads them. */
static char *agent_cert, *agent_key, *client_cert, *client_key, agent_pin[TLS_PIN_MAX];

static int64_t
now_ns(void)
{
	return monotonic_ns();
}

static int
listen_any(int *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, 1024) != 0)
		return -1;
	getsockname(fd, (struct sockaddr *)&sin, &len);
	*port = ntohs(sin.sin_port);
	return fd;
}

static int
free_port(void)
{
	int port, fd = listen_any(&port);

	close(fd);
	return port;
}

static int
dial(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* --- the backend --- */

static void *
serve(void *arg)
{
	int fd = (int)(intptr_t)arg, one = 1;
	char req[4096], *big = NULL;
	size_t have = 0;
	ssize_t n;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	while ((n = read(fd, req + have, sizeof req - have - 1)) > 0) {
		char *end;

		have += (size_t)n;
		req[have] = '\0';
		while ((end = strstr(req, "\r\n\r\n")) != NULL) {
			if (strncmp(req, "GET /big", 8) == 0) {
				dprintf(fd, "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\n\r\n",
				    stream_bytes);
				if (big == NULL)
					big = xcalloc(1, CHUNK);
				for (long long left = stream_bytes; left > 0;) {
					ssize_t w =
					    write(fd, big, left < CHUNK ? (size_t)left : CHUNK);

					if (w <= 0)
						goto out;
					left -= w;
				}
			} else {
				static const char small[] =
				    "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" SMALL_BODY;

				if (write(fd, small, sizeof small - 1) != (ssize_t)sizeof small - 1)
					goto out;
			}
			have -= (size_t)(end + 4 - req);
			memmove(req, end + 4, have + 1);
		}
	}
out:
	free(big);
	close(fd);
	return NULL;
}

static void *
backend(void *arg)
{
	int lfd = (int)(intptr_t)arg, fd;

	while ((fd = accept(lfd, NULL, NULL)) >= 0) {
		pthread_t t;

		pthread_create(&t, NULL, serve, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
	return NULL;
}

/* --- spillway's router, on its own thread --- */

struct router_thread {
	uv_loop_t loop;
	uv_async_t stop;
	struct config cfg;
	struct clock clock;
	struct router *r;
	struct tls_ctx *tls;
	pthread_t thread;
	volatile double cpu_s; /* the thread's CPU so far, kept fresh by a timer */
	uv_timer_t tick;
};

static double
thread_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	    ru.ru_stime.tv_usec / 1e6;
}

static void
on_tick(uv_timer_t *t)
{
	struct router_thread *rt = t->data;

	rt->cpu_s = thread_cpu();
}

static void
on_stop(uv_async_t *a)
{
	struct router_thread *rt = a->data;

	router_free(rt->r);
	uv_close((uv_handle_t *)&rt->stop, NULL);
	uv_close((uv_handle_t *)&rt->tick, NULL);
}

static void *
run_router(void *arg)
{
	struct router_thread *rt = arg;

	uv_run(&rt->loop, UV_RUN_DEFAULT);
	return NULL;
}

static int
router_start(struct router_thread *rt, int listen, int agent_port)
{
	char *path = xasprintf("%s/spillway.conf", dir), *text, *cause = NULL, *home;
	char *env[2];
	struct config_args a = {.file = path};
	struct router_opts o = {.clock = &rt->clock};
	struct vm_record vm = {.name = "spillway-bench",
	    .state = VM_READY,
	    .components = "bench",
	    .nat_ip = "127.0.0.1"};

	text = xasprintf("[agent]\nport = %d\n[component \"bench\"]\nmatch = bench\n"
	                 "listen = 127.0.0.1:%d\n",
	    agent_port, listen);
	write_file_atomic(path, text, strlen(text), 0600);
	env[0] = home = xasprintf("HOME=%s", dir);
	env[1] = NULL;
	if (config_load(&rt->cfg, &a, env, &cause) != 0 ||
	    tls_ctx_new(false, client_cert, client_key, NULL, &rt->tls, &cause) != 0) {
		fprintf(stderr, "bench/route: %s\n", cause);
		return -1;
	}
	clock_real(&rt->clock);
	uv_loop_init(&rt->loop);
	o.tls = rt->tls;
	if (router_new(&rt->loop, &rt->cfg, &o, &rt->r, &cause) != 0) {
		fprintf(stderr, "bench/route: %s\n", cause);
		return -1;
	}
	/* No local copy: a connection that does not reach the agent fails the bench. */
	snprintf(vm.tls_pin, sizeof vm.tls_pin, "%s", agent_pin);
	router_vm(rt->r, &vm);
	uv_async_init(&rt->loop, &rt->stop, on_stop);
	rt->stop.data = rt;
	uv_timer_init(&rt->loop, &rt->tick);
	rt->tick.data = rt;
	uv_timer_start(&rt->tick, on_tick, 50, 50);
	pthread_create(&rt->thread, NULL, run_router, rt);
	free(path);
	free(text);
	free(home);
	return 0;
}

/* --- HAProxy --- */

static double
process_cpu(pid_t pid)
{
	char path[64], *text = NULL, *p;
	unsigned long ut = 0, st = 0;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (read_file(path, 1 << 16, &text, NULL) == 0 && (p = strrchr(text, ')')) != NULL)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	free(text);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* HAProxy with this configuration's proxies after the defaults, until it listens there. */
static pid_t
haproxy_run(const char *name, int listen, const char *proxies)
{
	char *cfg = xasprintf("%s/%s.cfg", dir, name),
	     *text =
	         xasprintf("global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n"
	                   "  timeout client 60s\n  timeout server 60s\n%s",
	             proxies);
	int fd = -1;
	pid_t pid;

	write_file_atomic(cfg, text, strlen(text), 0600);
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("haproxy", "haproxy", "-db", "-q", "-f", cfg, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && (fd = dial(listen)) < 0; i++)
		usleep(50000);
	if (fd >= 0)
		close(fd);
	free(cfg);
	free(text);
	return fd >= 0 ? pid : -1;
}

/* A PEM file HAProxy reads: these texts one after the other. */
static char *
pem_file(const char *name, const char *a, const char *b)
{
	char *path = xasprintf("%s/%s", dir, name), *text = xasprintf("%s%s", a, b ? b : "");

	write_file_atomic(path, text, strlen(text), 0600);
	free(text);
	return path;
}

/* The VM's agent: TLS ended, only the router's certificate let in, bytes to the backend. */
static int
agent_start(int listen, int backend_port)
{
	char *crt = pem_file("agent.pem", agent_cert, agent_key),
	     *ca = pem_file("client-cert.pem", client_cert, NULL),
	     *text = xasprintf("frontend agent\n  bind 127.0.0.1:%d ssl crt %s ca-file %s verify "
	                       "required alpn spillway-fwd/1\n  default_backend backend\n"
	                       "backend backend\n  server s 127.0.0.1:%d\n",
	         listen, crt, ca, backend_port);

	agent = haproxy_run("agent", listen, text);
	free(crt);
	free(ca);
	free(text);
	return agent > 0 ? 0 : -1;
}

/* The peer measured: HAProxy originating the same TLS to the agent. */
static int
haproxy_start(int listen, int agent_port)
{
	char *crt = pem_file("client.pem", client_cert, client_key),
	     *text =
	         xasprintf("frontend f\n  bind 127.0.0.1:%d\n  default_backend b\nbackend b\n"
	                   "  server s 127.0.0.1:%d ssl crt %s alpn spillway-fwd/1 verify none\n",
	             listen, agent_port, crt);

	haproxy = haproxy_run("haproxy", listen, text);
	free(crt);
	free(text);
	return haproxy > 0 ? 0 : -1;
}

/* --- the client --- */

static int
cmp_ns(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* One request, its whole answer read (Content-Length). */
static int
ask(int fd, const char *path, char *buf, size_t size, long long *body)
{
	size_t have = 0;
	char *end;
	long long len;

	dprintf(fd, "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", path);
	for (;;) {
		ssize_t n = read(fd, buf + have, size - have - 1);

		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
		if ((end = strstr(buf, "\r\n\r\n")) != NULL)
			break;
	}
	len = strtoll(strstr(buf, "Content-Length: ") + 16, NULL, 10);
	for (long long got = (long long)(buf + have - end - 4); got < len;) {
		ssize_t n = read(fd, buf, size);

		if (n <= 0)
			return -1;
		got += n;
	}
	*body = len;
	return 0;
}

struct figures {
	double small_p50, small_p99, conn_p50, conn_p99, mb_s, cpu_per_mb;
};

static void
percentiles(int64_t *ns, int n, double *p50, double *p99)
{
	qsort(ns, (size_t)n, sizeof *ns, cmp_ns);
	*p50 = ns[n / 2] / 1000.0;
	*p99 = ns[n * 99 / 100] / 1000.0;
}

static int
measure(int port, int small, int conns, double (*cpu)(void *), void *arg, struct figures *f)
{
	int64_t *ns = xcalloc((size_t)(small > conns ? small : conns), sizeof *ns);
	char *buf = xmalloc(CHUNK);
	long long body;
	int fd;
	double cpu0;
	int64_t t0;

	if ((fd = dial(port)) < 0)
		return -1;
	for (int i = 0; i < small; i++) {
		t0 = now_ns();
		if (ask(fd, "/small", buf, CHUNK, &body) != 0)
			return -1;
		ns[i] = now_ns() - t0;
	}
	close(fd);
	percentiles(ns, small, &f->small_p50, &f->small_p99);
	for (int i = 0; i < conns; i++) {
		t0 = now_ns();
		if ((fd = dial(port)) < 0 || ask(fd, "/small", buf, CHUNK, &body) != 0)
			return -1;
		close(fd);
		ns[i] = now_ns() - t0;
	}
	percentiles(ns, conns, &f->conn_p50, &f->conn_p99);
	if ((fd = dial(port)) < 0)
		return -1;
	cpu0 = cpu != NULL ? cpu(arg) : 0;
	t0 = now_ns();
	if (ask(fd, "/big", buf, CHUNK, &body) != 0)
		return -1;
	f->mb_s = (double)body / (1 << 20) / ((double)(now_ns() - t0) / 1e9);
	usleep(150000); /* the router's CPU figure is refreshed every 50 ms */
	f->cpu_per_mb = cpu != NULL ? (cpu(arg) - cpu0) * 1e6 / ((double)body / (1 << 20)) : 0;
	close(fd);
	free(ns);
	free(buf);
	return 0;
}

static double
router_cpu(void *arg)
{
	return ((struct router_thread *)arg)->cpu_s;
}

static double
haproxy_cpu(void *arg)
{
	return process_cpu(haproxy);
}

static void
report(const char *who, const struct figures *f)
{
	char name[96];

	printf("  %-9s small p50 %6.1f µs  p99 %6.1f µs | new conn p50 %6.1f µs  p99 %6.1f µs | "
	       "stream %7.0f MB/s, proxy CPU %5.1f µs/MB\n",
	    who, f->small_p50, f->small_p99, f->conn_p50, f->conn_p99, f->mb_s, f->cpu_per_mb);
	snprintf(name, sizeof name, "route %s small p50", who);
	figure(name, f->small_p50, "us");
	snprintf(name, sizeof name, "route %s small p99", who);
	figure(name, f->small_p99, "us");
	snprintf(name, sizeof name, "route %s new connection p99", who);
	figure(name, f->conn_p99, "us");
	snprintf(name, sizeof name, "route %s stream", who);
	figure(name, f->mb_s, "MB/s");
	if (f->cpu_per_mb > 0) {
		snprintf(name, sizeof name, "route %s CPU per MB", who);
		figure(name, f->cpu_per_mb, "us");
	}
}

/* route_choose's cost for a connection, among a few VMs as a workstation has them. */
static double
choose_ns(void)
{
	struct route_vm_view vms[] = {
	    {.name = "spillway-a", .state = VM_READY, .serves = true, .open = 3},
	    {.name = "spillway-b", .state = VM_BOOTING, .serves = true},
	    {.name = "spillway-c", .state = VM_READY, .serves = true, .open = 1},
	};
	struct route_choice c;
	int64_t t0 = now_ns();
	int n = 1000000;
	volatile size_t sink = 0;

	for (int i = 0; i < n; i++) {
		vms[0].open = i & 7;
		route_choose("vision", vms, 3, ROUTE_LOCAL_UP, 0, &c);
		sink += c.vm;
	}
	return (double)(now_ns() - t0) / n;
}

int
main(int argc, char **argv)
{
	int small = argc > 1 ? atoi(argv[1]) : 20000, conns = argc > 2 ? atoi(argv[2]) : 2000;
	int bport, lfd, rport = free_port(), hport = free_port(), aport = free_port();
	struct router_thread rt = {0};
	struct figures direct, routed, proxied;
	char *cause = NULL;
	pthread_t bt;

	stream_bytes = (argc > 3 ? atoll(argv[3]) : 1024) << 20;
	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(dir) == NULL || (lfd = listen_any(&bport)) < 0)
		return 1;
	if (tls_identity_make("agent", &agent_cert, &agent_key, &cause) != 0 ||
	    tls_identity_make("spillway", &client_cert, &client_key, &cause) != 0 ||
	    tls_cert_pin(agent_cert, agent_pin) != 0) {
		fprintf(stderr, "bench/route: %s\n", cause);
		return 1;
	}
	pthread_create(&bt, NULL, backend, (void *)(intptr_t)lfd);
	if (agent_start(aport, bport) != 0) {
		printf("bench/route: not measured: HAProxy, the agent both proxies reach, did not "
		       "start (apt-get install haproxy)\n");
		remove_tree(dir);
		return 0;
	}
	if (router_start(&rt, rport, aport) != 0)
		goto fail;
	printf("bench/route: %d small requests on one connection, %d new connections, a %lld MiB "
	       "stream; loopback, TLS to the agent (HAProxy) in both proxies\n",
	    small, conns, stream_bytes >> 20);
	if (measure(bport, small, conns, NULL, NULL, &direct) != 0 ||
	    measure(rport, small, conns, router_cpu, &rt, &routed) != 0)
		goto fail;
	report("direct", &direct);
	report("spillway", &routed);
	if (haproxy_start(hport, aport) != 0) {
		printf("  haproxy   not measured: it did not start\n");
	} else if (measure(hport, small, conns, haproxy_cpu, NULL, &proxied) == 0) {
		report("haproxy", &proxied);
		printf(
		    "  spillway/haproxy: small p99 %.2f, new connection p99 %.2f, stream %.0f %%\n",
		    routed.small_p99 / proxied.small_p99, routed.conn_p99 / proxied.conn_p99,
		    100 * routed.mb_s / proxied.mb_s);
	}
	{
		double ns = choose_ns();

		printf("  routing decision (route_choose, 3 VMs): %.0f ns per connection\n", ns);
		figure("route decision", ns / 1000, "us");
	}
	if (haproxy > 0)
		kill(haproxy, SIGTERM), waitpid(haproxy, NULL, 0);
	kill(agent, SIGTERM), waitpid(agent, NULL, 0);
	uv_async_send(&rt.stop);
	pthread_join(rt.thread, NULL);
	tls_ctx_free(rt.tls);
	config_free(&rt.cfg);
	remove_tree(dir);
	return 0;
fail:
	fprintf(stderr, "bench/route: a measurement failed\n");
	if (haproxy > 0)
		kill(haproxy, SIGKILL);
	if (agent > 0)
		kill(agent, SIGKILL);
	remove_tree(dir);
	return 1;
}
