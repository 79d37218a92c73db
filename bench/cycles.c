/*
 * bench/cycles: the daemon's memory over a long life. The lifecycle manager
 * with its real ledger (SQLite, fsync and all) and its real HTTP client runs
 * CYCLES create -> READY -> terminate cycles on the scripted cloud
 * (tests/lib/scripted.h), each VM's backend and agent answered by an HTTP
 * server in this process. Prints the anonymous memory (RssAnon) after the
 * first 100 cycles and at the end, and the slope between, in kB per cycle.
 *
 *	usage: cycles [CYCLES]   (1,100 by default: 100 to settle, 1,000 measured)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "net/httpd.h"
#include "scripted.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/manager.h"
#include "figure.h"

#define SETTLE 100

static uv_loop_t loop;
static struct clock clk;
static struct scripted *sc;
static enum vm_state last;
static char dir[] = "/tmp/spillway-cycles-XXXXXX";

static void
cleanup(void)
{
	if (strcmp(dir + strlen(dir) - 6, "XXXXXX") != 0)
		remove_tree(dir);
}

/* The VM's backend and agent: healthy and used, always. */
static void
on_guest(struct httpd_req *r, void *arg)
{
	static const char ok[] = "{\"status\": \"ok\", \"idle_seconds\": 0}";

	(void)arg;
	httpd_respond(r, 200, "application/json", ok, sizeof ok - 1);
}

static void
on_event(const struct manager_event *e, void *arg)
{
	(void)arg;
	if (e->kind == MEV_STATE && e->vm != NULL)
		last = e->vm->state;
}

/* Run until the VM is in state, or fail. */
static void
until(enum vm_state state)
{
	for (int i = 0; i < 100000 && last != state; i++) {
		scripted_deliver(sc);
		uv_run(&loop, UV_RUN_ONCE);
	}
	if (last != state) {
		fprintf(stderr, "bench/cycles: the VM never reached %s\n", vm_state_name(state));
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	int cycles = argc > 1 ? (int)strtol(argv[1], NULL, 10) : SETTLE + 1000;
	const char *src = getenv("SPILLWAY_SOURCE") != NULL ? getenv("SPILLWAY_SOURCE") : ".";
	const char *zones[] = {"us-central1-a", "us-central1-b", NULL};
	struct httpd_opts ho = {.max_body = 4096, .conn_timeout_s = 30, .conn_limit = 64};
	unsigned char key[32] = {0};
	char *cause = NULL, *text = NULL, *sets[8], *env[3];
	struct config cfg;
	struct config_args args = {.sets = (const char *const *)sets};
	struct ledger *ledger;
	struct httpd *guest;
	struct manager *m;
	json_t *catalog;
	long settled = 0, end;
	int backend, agent, n = 0;

	jx_init();
	log_set_level(LOG_LEVEL_WARN);
	if (mkdtemp(dir) == NULL || cycles <= SETTLE)
		return 2;
	atexit(cleanup);
	uv_loop_init(&loop);
	if ((backend = httpd_bind("127.0.0.1", 0, &cause)) < 0 ||
	    httpd_new_fd(&loop, backend, &ho, on_guest, NULL, &guest, &cause) != 0 ||
	    (agent = httpd_bind("127.0.0.1", 0, &cause)) < 0 ||
	    httpd_listen(guest, agent, &cause) != 0) {
		fprintf(stderr, "bench/cycles: %s\n", cause);
		return 1;
	}
	sets[n++] = xstrdup("gcp.project=spillway-bench");
	sets[n++] = xstrdup("daemon.owner=bench");
	sets[n++] = xstrdup("daemon.cooldown_minutes=0");
	sets[n++] = xasprintf("spillway.backend_port=%d", httpd_port(guest));
	sets[n] = NULL;
	env[0] = xasprintf("HOME=%s", dir);
	env[1] = xasprintf("XDG_CONFIG_HOME=%s/xdg", dir);
	env[2] = NULL;
	if (config_load(&cfg, &args, env, &cause) != 0 || ledger_open(dir, &ledger, &cause) != 0) {
		fprintf(stderr, "bench/cycles: %s\n", cause);
		return 1;
	}
	{
		/* The agent on the second port: the one the manager renews leases on. */
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;

		getsockname(agent, (struct sockaddr *)&ss, &len);
		cfg.agent_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	{
		char *path = xasprintf("%s/data/gce-prices.json", src);

		if (read_file(path, 1 << 20, &text, NULL) != 0 ||
		    jx_parse(text, strlen(text), &catalog, &cause) != 0) {
			fprintf(stderr, "bench/cycles: %s: run from the source tree\n", path);
			return 1;
		}
		free(path);
		free(text);
	}
	clock_manual(&clk, INT64_C(1796119200000) * NS_PER_MS);
	sc = scripted_new(&clk);
	scripted_insert_ip(sc, "127.0.0.1");
	{
		struct manager_opts o = {.cfg = &cfg,
		    .clock = &clk,
		    .cloud = scripted_cloud(sc),
		    .ledger = ledger,
		    .catalog = json_object_get(catalog, "skus"),
		    .catalog_source = "the shipped prices",
		    .owner = "bench",
		    .zones = zones,
		    .agent_key = key};

		if (manager_new(&loop, &o, &m, &cause) != 0) {
			fprintf(stderr, "bench/cycles: %s\n", cause);
			return 1;
		}
	}
	manager_on_event(m, on_event, NULL);
	manager_start(m);
	for (int i = 0; i < 100 && !manager_settled(m); i++) {
		scripted_deliver(sc);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	for (int i = 0; i < cycles; i++) {
		char name[64];
		struct decision d;

		if (manager_create(m, NULL, "bench", NULL, name, sizeof name, &d) != 0) {
			fprintf(stderr, "bench/cycles: cycle %d: %s\n", i, d.reason);
			return 1;
		}
		until(VM_READY);
		clock_advance(&clk, 60 * NS_PER_S); /* a minute's run, billed */
		manager_terminate(m, name, "bench");
		until(VM_TERMINATED);
		manager_pass_now(m); /* what is over leaves memory; the ledger keeps it */
		scripted_forget_done(sc);
		scripted_deliver(sc);
		uv_run(&loop, UV_RUN_NOWAIT);
		if (i + 1 == SETTLE)
			settled = proc_status(getpid(), "RssAnon:");
	}
	end = proc_status(getpid(), "RssAnon:");
	printf("bench/cycles: %d create -> READY -> terminate cycles (manager, ledger, HTTP; "
	       "scripted cloud)\n",
	    cycles);
	printf("  RssAnon after %d: %ld kB, after %d: %ld kB: %.3f kB per cycle\n", SETTLE, settled,
	    cycles, end, (double)(end - settled) / (cycles - SETTLE));
	figure(
	    "cycles anonymous memory per cycle", (double)(end - settled) / (cycles - SETTLE), "kB");
	figure("cycles anonymous memory at the end", end / 1024.0, "MB");
	manager_free(m);
	httpd_free(guest);
	uv_run(&loop, UV_RUN_DEFAULT);
	ledger_close(ledger);
	scripted_free(sc);
	json_decref(catalog);
	config_free(&cfg);
	return 0;
}
