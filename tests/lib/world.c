#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "world.h"

/* --- traces --- */

void
recorded_trace(struct world *w, const char *name)
{
	snprintf(w->trace, sizeof w->trace, "%s/tests/data/%s", getenv("SPILLWAY_SOURCE"), name);
}

/* --- the world: an emulator, a daemon, the ledger --- */

void
world_emulator(struct world *w, const char *const *extra)
{
	const char *args[32] = {"--time-scale", w->scale, "--clock-epoch", w->epoch, "--boot-ms",
	    "20000", "--guest-boot-ms", "20000"};
	int n = 8;

	for (; extra != NULL && *extra != NULL; extra++)
		args[n++] = *extra;
	args[n] = NULL;
	emu_start(&w->e, args);
}

void
world_init(struct world *w, int scale, const char *const *emu_args)
{
	char *cause = NULL;

	memset(w, 0, sizeof *w);
	snprintf(w->scale, sizeof w->scale, "%d", scale);
	snprintf(w->epoch, sizeof w->epoch, "%lld", (long long)(realtime_ns() / NS_PER_S));
	clock_scaled(&w->clock, scale, (int64_t)atoll(w->epoch) * NS_PER_S);
	world_emulator(w, emu_args);
	dmn_init(&w->d);
	snprintf(w->trace, sizeof w->trace, "%s/pressure.trace", w->d.state);
	if (ledger_open(w->d.state, &w->ledger, &cause) != 0)
		fail_msg("%s", cause);
}

static const char *base_env[] = {"SPILLWAY_OWNER=" OWNER, "GCP_VM_IDLE_TIMEOUT_MINUTES=5",
    "SPILLWAY_FALLBACK_ZONES=" ZONE_B ",us-central1-c", NULL};

/* Start (or restart) the daemon with the base environment, then env, then args. */
void
world_run(struct world *w, const char *const *args, const char *const *env)
{
	const char *all_args[16] = {
	    "--time-scale", w->scale, "--clock-epoch", w->epoch, "--replay", w->trace};
	const char *all_env[32];
	int n = 6, k = 0;

	for (; args != NULL && *args != NULL; args++)
		all_args[n++] = *args;
	all_args[n] = NULL;
	for (const char *const *p = base_env; *p != NULL; p++)
		all_env[k++] = *p;
	for (; env != NULL && *env != NULL; env++)
		all_env[k++] = *env;
	all_env[k] = NULL;
	dmn_start(&w->d, &w->e, all_args, all_env);
}

void
world_end(struct world *w)
{
	if (w->d.pid > 0)
		assert_int_equal(dmn_stop(&w->d, SIGTERM), 0);
	ledger_close(w->ledger);
	dmn_cleanup(&w->d);
	emu_stop(&w->e);
}

int64_t
vnow(const struct world *w)
{
	return clock_now_ms(&w->clock);
}

/* --- what the ledger says --- */

size_t
vms(struct world *w, struct vm_record **list)
{
	static const enum vm_state all[] = {VM_REQUESTED, VM_CREATING, VM_PROVISIONING, VM_BOOTING,
	    VM_READY, VM_UNHEALTHY, VM_DRAINING, VM_IMAGING, VM_TERMINATING, VM_TERMINATED,
	    VM_FAILED, VM_PREEMPTED, VM_ORPHANED, VM_POOLING, VM_POOLED, VM_STARTING};
	size_t n = 0;

	_Static_assert(sizeof all / sizeof all[0] == VM_STATES, "every state");
	assert_int_equal(ledger_list(w->ledger, all, VM_STATES, list, &n), 0);
	return n;
}

/* Wait until the ledger has a VM in this state (the index-th such, oldest first). */
struct vm_record
wait_state(struct world *w, enum vm_state state, int index)
{
	int64_t deadline = now_ms() + WAIT_MS;

	for (;;) {
		struct vm_record *list, found;
		size_t n = vms(w, &list);
		int seen = 0;

		for (size_t i = 0; i < n; i++) {
			if (list[i].state == state && seen++ == index) {
				found = list[i];
				free(list);
				return found;
			}
		}
		free(list);
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("no VM reached %s in %d s", vm_state_name(state), WAIT_MS / 1000);
		}
		sleep_ms(20);
	}
}

/* Wait for a VM by name to be in this state. */
struct vm_record
wait_vm(struct world *w, const char *name, enum vm_state state)
{
	int64_t deadline = now_ms() + WAIT_MS;
	struct vm_record v;

	for (;;) {
		if (ledger_get(w->ledger, name, &v) == 0 && v.state == state)
			return v;
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("%s did not reach %s (it is %s)", name, vm_state_name(state),
			    vm_state_name(v.state));
		}
		sleep_ms(20);
	}
}

/* Wait for an event whose detail contains text; returns it. */
struct ledger_event
wait_event(struct world *w, const char *kind, const char *text)
{
	int64_t deadline = now_ms() + WAIT_MS;

	for (;;) {
		struct ledger_event *ev, found;
		size_t n;

		assert_int_equal(ledger_events(w->ledger, NULL, 1000, &ev, &n), 0);
		for (size_t i = 0; i < n; i++) {
			if (strcmp(ev[i].kind, kind) == 0 && strstr(ev[i].detail, text) != NULL) {
				found = ev[i];
				free(ev);
				return found;
			}
		}
		free(ev);
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("no '%s' event with '%s' in %d s", kind, text, WAIT_MS / 1000);
		}
		sleep_ms(20);
	}
}

/* --- what the emulator says --- */

json_t *
instance(struct world *w, const struct vm_record *v)
{
	char *tail = xasprintf("instances/%s", v->name), *url = compute_url(&w->e, v->zone, tail);
	json_t *j = api(&w->e, "GET", url, NULL, 200);

	free(tail);
	free(url);
	return j;
}

/*
 * Each request in the emulator's log with this method and path ending, to
 * fn until it says stop. Line by line: a long chaos run's log is hundreds
 * of megabytes.
 */
static void
requests(struct world *w, const char *method, const char *suffix,
    bool (*fn)(const json_t *, void *), void *arg)
{
	FILE *f = fopen(w->e.log, "r");
	char *line = NULL, *quoted = xasprintf("\"%s\"", method);
	size_t cap = 0, sl = strlen(suffix);
	bool stop = false;

	assert_non_null(f);
	while (!stop && getline(&line, &cap, f) > 0) {
		json_t *j;
		const char *path;

		if (strstr(line, quoted) == NULL || (j = json_loads(line, 0, NULL)) == NULL)
			continue;
		path = jx_str(j, "path");
		if (strcmp(jx_str(j, "method"), method) == 0 && path != NULL &&
		    strlen(path) >= sl && strcmp(path + strlen(path) - sl, suffix) == 0)
			stop = fn(j, arg);
		json_decref(j);
	}
	free(quoted);
	free(line);
	fclose(f);
}

struct inserts {
	struct insert *out;
	size_t max, n;
};

static bool
add_insert(const json_t *j, void *arg)
{
	struct inserts *in = arg;
	struct insert *it = &in->out[in->n++];
	json_t *body = json_loads(jx_str(j, "body"), 0, NULL);
	const char *q = jx_str(j, "query");

	snprintf(it->name, sizeof it->name, "%s", jx_str(body, "name"));
	q = q != NULL ? strstr(q, "requestId=") : NULL;
	snprintf(it->request_id, sizeof it->request_id, "%s", q ? q + 10 : "");
	it->status = (long)json_integer_value(json_object_get(j, "status"));
	json_decref(body);
	return in->n == in->max;
}

size_t
inserts(struct world *w, struct insert *out, size_t max)
{
	struct inserts in = {out, max, 0};

	if (max > 0)
		requests(w, "POST", "/instances", add_insert, &in);
	return in.n;
}

static bool
first_time(const json_t *j, void *arg)
{
	return time_parse_rfc3339(jx_str(j, "time"), arg) == 0;
}

/* When the emulator was asked to delete name (virtual ms), or 0. */
int64_t
deleted_at(struct world *w, const char *name)
{
	char *suffix = xasprintf("/instances/%s", name);
	int64_t at = 0;

	requests(w, "DELETE", suffix, first_time, &at);
	free(suffix);
	return at;
}

struct count {
	const char *server;
	size_t n;
};

static bool
count_server(const json_t *j, void *arg)
{
	struct count *c = arg;

	c->n += strcmp(jx_str(j, "server"), c->server) == 0;
	return false;
}

/* Requests in the emulator's log from this server with this method and path ending. */
size_t
log_count(struct world *w, const char *server, const char *method, const char *suffix)
{
	struct count c = {server, 0};

	requests(w, method, suffix, count_server, &c);
	return c.n;
}

const char *
label(const json_t *inst, const char *key)
{
	return json_string_value(json_object_get(json_object_get(inst, "labels"), key));
}

const char *
metadata(const json_t *inst, const char *key)
{
	size_t i;
	json_t *it;

	json_array_foreach (jx_get(inst, "metadata.items"), i, it)
		if (strcmp(jx_str(it, "key"), key) == 0)
			return jx_str(it, "value");
	return NULL;
}

/* --- kill -9 --- */

/* The ledger's VMs are settled: nothing in flight or being deleted. */
bool
settled(struct world *w, char *alive, size_t size)
{
	struct vm_record *list;
	size_t n = vms(w, &list), used = 0;
	bool ok = true;

	alive[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		enum vm_state s = list[i].state;

		if (s == VM_REQUESTED || s == VM_CREATING || s == VM_PROVISIONING ||
		    s == VM_STARTING || s == VM_TERMINATING)
			ok = false;
		if (vm_state_alive(s))
			used += (size_t)snprintf(alive + used, size - used, "%s ", list[i].name);
	}
	free(list);
	return ok;
}

/* The emulator's instances as "name name ...", in the order the ledger lists them. */
void
cloud_names(struct world *w, const char *ledger_order, char *out, size_t size)
{
	json_t *all = emu_instances(&w->e);
	char *copy = xstrdup(ledger_order), *save = NULL, *name;
	size_t used = 0, found = 0;

	out[0] = '\0';
	for (name = strtok_r(copy, " ", &save); name != NULL; name = strtok_r(NULL, " ", &save)) {
		size_t i;
		json_t *it;

		json_array_foreach (all, i, it) {
			if (strcmp(jx_str(it, "name"), name) == 0) {
				used += (size_t)snprintf(out + used, size - used, "%s ", name);
				found++;
			}
		}
	}
	if (found != json_array_size(all)) { /* an instance the ledger does not have alive */
		size_t i;
		json_t *it;

		json_array_foreach (all, i, it)
			if (strstr(ledger_order, jx_str(it, "name")) == NULL)
				used += (size_t)snprintf(
				    out + used, size - used, "+%s ", jx_str(it, "name"));
	}
	json_decref(all);
	free(copy);
}

/* Wait until the daemon's log says it started for the n-th time. */
void
wait_started(struct world *w, int n)
{
	int64_t deadline = now_ms() + WAIT_MS;

	for (;;) {
		char *log = read_text(w->d.log);
		int seen = 0;

		for (const char *p = log; p != NULL && (p = strstr(p, "owner " OWNER)) != NULL; p++)
			seen++;
		free(log);
		if (seen >= n)
			return;
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("the daemon did not start a %d-th time", n);
		}
		sleep_ms(5);
	}
}

/* After a restart: the emulator's instances are the ledger's alive VMs, once it settles. */
void
expect_consistent(struct world *w, int run)
{
	int64_t deadline = now_ms() + WAIT_MS;
	char alive[8192], again[8192], cloud[8192];

	for (;;) {
		if (settled(w, alive, sizeof alive)) {
			cloud_names(w, alive, cloud, sizeof cloud);
			if (settled(w, again, sizeof again) && strcmp(alive, again) == 0 &&
			    strcmp(alive, cloud) == 0)
				return;
		}
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("run %d: the ledger has alive '%s', the emulator '%s'", run, alive,
			    cloud);
		}
		sleep_ms(10);
	}
}
