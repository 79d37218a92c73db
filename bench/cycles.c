/*
 * bench/cycles: the daemon's memory over a long life. The lifecycle manager
 * with its real ledger (SQLite, fsync and all) and its real agent channel runs
 * CYCLES create -> READY -> terminate cycles on the scripted cloud
 * (tests/lib/scripted.h), each VM's agent answered in TLS, its key pinned, by
 * a test agent in this process (tests/lib/tlsagent.h). Prints the anonymous
 * memory (RssAnon) after the first 100 cycles and at the end, and the slope
 * between, in kB per cycle.
 *
 *	usage: cycles [CYCLES]   (1,100 by default: 100 to settle, 1,000 measured)
 *	BENCH_DEBUG=1 logs what the manager does
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "scripted.h"
#include "tlsagent.h"
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
static uv_prepare_t prepare;
static enum vm_state last;
static char dir[] = "/tmp/spillway-cycles-XXXXXX";

static void
cleanup(void)
{
	if (strcmp(dir + strlen(dir) - 6, "XXXXXX") != 0)
		remove_tree(dir);
}

static void
on_event(const struct manager_event *e, void *arg)
{
	(void)arg;
	if (e->kind == MEV_STATE && e->vm != NULL)
		last = e->vm->state;
}

/*
 * The cloud's answers are handed over just before the loop would wait, and
 * when there were some the loop does not wait (uv_stop: this turn's poll
 * takes no time): what they set going runs at once, not after the loop
 * slept until its next timer.
 */
static void
on_prepare(uv_prepare_t *p)
{
	if (scripted_deliver(sc) > 0)
		uv_stop(p->loop);
}

/* Run until the VM is in state, or fail. */
static void
until(enum vm_state state)
{
	for (int i = 0; i < 100000 && last != state; i++)
		uv_run(&loop, UV_RUN_ONCE);
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
	unsigned char key[32] = {0};
	char *cause = NULL, *text = NULL, *sets[8], *env[3];
	struct config cfg;
	struct config_args args = {.sets = (const char *const *)sets};
	struct ledger *ledger;
	struct tagent agent; /* every VM's: healthy and used, always */
	struct manager *m;
	json_t *catalog;
	long settled = 0, end;
	int n = 0;

	jx_init();
	log_set_level(getenv("BENCH_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
	if (mkdtemp(dir) == NULL || cycles <= SETTLE)
		return 2;
	atexit(cleanup);
	uv_loop_init(&loop);
	if (tagent_start(&agent, &loop, &cause) != 0) {
		fprintf(stderr, "bench/cycles: %s\n", cause);
		return 1;
	}
	agent.body = "{\"status\": \"ok\", \"idle_seconds\": 0}";
	sets[n++] = xstrdup("gcp.project=spillway-bench");
	sets[n++] = xstrdup("daemon.owner=bench");
	sets[n++] = xstrdup("daemon.cooldown_minutes=0");
	sets[n] = NULL;
	env[0] = xasprintf("HOME=%s", dir);
	env[1] = xasprintf("XDG_CONFIG_HOME=%s/xdg", dir);
	env[2] = NULL;
	if (config_load(&cfg, &args, env, &cause) != 0 || ledger_open(dir, &ledger, &cause) != 0) {
		fprintf(stderr, "bench/cycles: %s\n", cause);
		return 1;
	}
	cfg.agent_port = agent.port;
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
	scripted_insert_ip(sc, "127.0.0.1", agent.pin);
	{
		struct manager_opts o = {.cfg = &cfg,
		    .clock = &clk,
		    .cloud = scripted_cloud(sc),
		    .ledger = ledger,
		    .catalog = json_object_get(catalog, "skus"),
		    .catalog_source = "the shipped prices",
		    .owner = "bench",
		    .zones = zones,
		    .agent_key = key,
		    .tls = agent.client};

		if (manager_new(&loop, &o, &m, &cause) != 0) {
			fprintf(stderr, "bench/cycles: %s\n", cause);
			return 1;
		}
	}
	manager_on_event(m, on_event, NULL);
	uv_prepare_init(&loop, &prepare);
	uv_prepare_start(&prepare, on_prepare);
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
	printf(
	    "bench/cycles: %d create -> READY -> terminate cycles (manager, ledger, TLS to the agent; "
	    "scripted cloud)\n",
	    cycles);
	printf("  RssAnon after %d: %ld kB, after %d: %ld kB: %.3f kB per cycle\n", SETTLE, settled,
	    cycles, end, (double)(end - settled) / (cycles - SETTLE));
	figure(
	    "cycles anonymous memory per cycle", (double)(end - settled) / (cycles - SETTLE), "kB");
	figure("cycles anonymous memory at the end", end / 1024.0, "MB");
	manager_free(m);
	tagent_stop(&agent);
	uv_close((uv_handle_t *)&prepare, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ledger_close(ledger);
	scripted_free(sc);
	json_decref(catalog);
	config_free(&cfg);
	return 0;
}
