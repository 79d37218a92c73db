/*
 * spillway tried as an adversary would: a price catalog that pays for VMs,
 * connections that never speak, a state directory that fills, a damaged or
 * deleted ledger, a token endpoint and a cloud that answer garbage, a reload
 * that changes what cannot change, a VM that ends before it is asked to. Real
 * processes (`spillway emulator`, `spillway run`, the CLI) on private
 * endpoints; what is asserted is read from the emulator, the ledger file and
 * what the commands print.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "harness.h"
#include "world.h"
#include "ledger/cost.h"
#include "ledger/ledger.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

extern const char gce_prices_json[];
extern const size_t gce_prices_json_len;

/* --- the CLI, as a user runs it against the world's emulator and daemon --- */

struct cli_env {
	char *v[24];
	int n;
};

/* The environment of a CLI against this emulator and this daemon's state and socket. */
static void
env_for(struct cli_env *e, const struct emu *emu, const struct dmn *d, const char *state)
{
	memset(e, 0, sizeof *e);
	e->v[e->n++] = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", emu->creds);
	e->v[e->n++] = xasprintf("SPILLWAY_COMPUTE_ENDPOINT=%s/compute/v1/", emu->url);
	e->v[e->n++] = xasprintf("SPILLWAY_BILLING_ENDPOINT=%s/v1/", emu->url);
	e->v[e->n++] = xasprintf("SPILLWAY_STATE_DIR=%s", state != NULL ? state : d->state);
	e->v[e->n++] = xasprintf("SPILLWAY_SOCKET=%s/control.sock", d->state);
	e->v[e->n++] = xstrdup("GCP_PROJECT_ID=spillway-emulator");
	e->v[e->n++] = xstrdup("SPILLWAY_OWNER=" OWNER);
}

static void
env_init(struct cli_env *e, const struct world *w, const char *state)
{
	env_for(e, &w->e, &w->d, state);
}

static void
env_add(struct cli_env *e, const char *kv)
{
	assert_true(e->n < 23);
	e->v[e->n++] = xstrdup(kv);
}

static void
env_free(struct cli_env *e)
{
	for (int i = 0; i < e->n; i++)
		free(e->v[i]);
	memset(e, 0, sizeof *e);
}

static void
cli_in(const struct dmn *d, const struct cli_env *e, struct cmd_run *r, const char *const *args)
{
	run_spillway(r, d->state, args, (const char *const *)e->v);
}

static void
cli(const struct world *w, const struct cli_env *e, struct cmd_run *r, const char *const *args)
{
	cli_in(&w->d, e, r, args);
}

static void
expect_text(const char *text, const char *part)
{
	if (text == NULL || strstr(text, part) == NULL)
		fail_msg("expected '%s' in:\n%s", part, text != NULL ? text : "(nothing)");
}

/* A calm world (nothing created by itself) with this daemon environment. */
static void
calm_world(struct world *w, const char *const *env)
{
	const char *all[16] = {"GCP_VM_ENABLED=false"};
	int n = 1;

	world_init(w, SCALE, NULL);
	write_trace(w->trace, 0, 4000);
	for (; env != NULL && *env != NULL; env++)
		all[n++] = *env;
	all[n] = NULL;
	world_run(w, NULL, all);
	wait_started(w, 1);
}

/* A VM by hand through the daemon, READY: its name. */
static void
create_in(const struct dmn *d, const struct cli_env *e, char *name, size_t size)
{
	const char *create[] = {"create", "--yes", "--json", NULL};
	struct cmd_run r;
	json_t *doc;

	cli_in(d, e, &r, create);
	if (r.status != 0)
		fail_msg("create: exit %d\n%s%s", r.status, r.out, r.err);
	assert_int_equal(jx_parse(r.out, strlen(r.out), &doc, NULL), 0);
	assert_string_equal(jx_str(doc, "vm.state"), "READY");
	snprintf(name, size, "%s", jx_str(doc, "vm.name"));
	json_decref(doc);
	cmd_run_free(&r);
}

static void
create_ready(const struct world *w, const struct cli_env *e, char *name, size_t size)
{
	create_in(&w->d, e, name, size);
}

/* The status document, as `status --json` prints it. */
static json_t *
status_doc(const struct world *w, const struct cli_env *e)
{
	const char *status[] = {"status", "--json", NULL};
	struct cmd_run r;
	json_t *doc;

	cli(w, e, &r, status);
	assert_int_equal(r.status, 0);
	assert_int_equal(jx_parse(r.out, strlen(r.out), &doc, NULL), 0);
	cmd_run_free(&r);
	return doc;
}

/* --- 1. a catalog whose prices pay for VMs --- */

/*
 * A price catalog with negative prices was taken: with a budget of $0 a VM
 * was created at -$37/h. Now the catalog is refused whole, naming a SKU, exit
 * 2, and nothing reaches the cloud.
 */
static void
test_negative_catalog(void **state)
{
	struct world w;
	struct cli_env e;
	struct cmd_run r;
	const char *create[] = {"create", "--yes", "--no-wait", NULL};
	const char *run[] = {"run", "--foreground", "--provider", "emulator", NULL};
	char *path, *text, *set;
	json_t *doc, *sku;
	size_t i;
	struct insert ins[4];

	world_init(&w, SCALE, NULL);
	path = xasprintf("%s/negative.json", w.d.state);
	assert_int_equal(jx_parse(gce_prices_json, gce_prices_json_len, &doc, NULL), 0);
	json_array_foreach (json_object_get(doc, "skus"), i, sku)
		json_object_set_new(
		    jx_get(sku, "pricingInfo.0.pricingExpression.tieredRates.0.unitPrice"), "units",
		    json_string("-1"));
	text = jx_dumps(doc);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
	env_init(&e, &w, NULL);
	set = xasprintf("SPILLWAY_PRICE_CATALOG=%s", path);
	env_add(&e, set);
	env_add(&e, "GCP_VM_DAILY_BUDGET=0");
	cli(&w, &e, &r, create);
	assert_int_equal(r.status, 2);
	expect_text(r.err, "SKU '");
	expect_text(r.err, "the whole catalog is refused");
	cmd_run_free(&r);
	/* The daemon too refuses to start on it. */
	cli(&w, &e, &r, run);
	assert_int_equal(r.status, 2);
	expect_text(r.err, "the whole catalog is refused");
	cmd_run_free(&r);
	assert_int_equal(inserts(&w, ins, 4), 0);
	env_free(&e);
	json_decref(doc);
	free(text);
	free(set);
	free(path);
	world_end(&w);
}

/* --- 3. connections that never speak --- */

static int
sock_open(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

/* GET /v1/status on a new connection; whether 200 came within ms. */
static bool
status_within(const char *sock, int ms)
{
	static const char req[] = "GET /v1/status HTTP/1.1\r\nHost: spillway\r\n"
	                          "Connection: close\r\n\r\n";
	int fd = sock_open(sock);
	int64_t deadline = now_ms() + ms;
	char got[64] = "";
	size_t have = 0;

	assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)sizeof req - 1);
	while (have < 12 && now_ms() < deadline) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;

		if (poll(&p, 1, (int)(deadline - now_ms())) <= 0)
			break;
		if ((n = read(fd, got + have, sizeof got - 1 - have)) <= 0)
			break;
		have += (size_t)n;
	}
	close(fd);
	got[have] = '\0';
	return strncmp(got, "HTTP/1.1 200", 12) == 0;
}

/*
 * 100 connections that said nothing wedged the control socket for good. Now
 * 200 of them, and subscribers to the event stream that never read, leave
 * status answering within a second: while they are open, past the 30 s idle
 * timeout, and after they close.
 */
static void
test_idle_connections(void **state)
{
	static const char sse[] = "GET /v1/events HTTP/1.1\r\nHost: spillway\r\n\r\n";
	struct world w;
	char *sock;
	int idle[200], subs[10];

	calm_world(&w, NULL);
	sock = xasprintf("%s/control.sock", w.d.state);
	assert_true(status_within(sock, 5000)); /* up */
	/* Subscribed for sure (the stream's first bytes came), then never read again. */
	for (int i = 0; i < 10; i++) {
		struct pollfd p;
		char head[16];

		subs[i] = sock_open(sock);
		assert_int_equal(write(subs[i], sse, sizeof sse - 1), (ssize_t)sizeof sse - 1);
		p = (struct pollfd){subs[i], POLLIN, 0};
		assert_int_equal(poll(&p, 1, 10000), 1);
		assert_int_equal(read(subs[i], head, sizeof head), (ssize_t)sizeof head);
		assert_int_equal(strncmp(head, "HTTP/1.1 200", 12), 0);
	}
	for (int i = 0; i < 200; i++)
		idle[i] = sock_open(sock);
	assert_true(status_within(sock, 1000));
	sleep_ms(31000); /* past the 30 s after which idle connections are closed */
	assert_true(status_within(sock, 1000));
	for (int i = 0; i < 200; i++)
		close(idle[i]);
	for (int i = 0; i < 10; i++)
		close(subs[i]);
	assert_true(status_within(sock, 1000));
	assert_true(status_within(sock, 1000));
	free(sock);
	world_end(&w);
}

/* --- 4. a state directory that fills --- */

/* A mount namespace of this process's own, for a small tmpfs; false when the machine cannot. */
static bool
private_mounts(void)
{
	if (unshare(CLONE_NEWNS) != 0) {
		char map[64];
		int fd;
		uid_t uid = getuid();
		gid_t gid = getgid();

		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			return false;
		/* Root inside, the same user outside: what the mount needs. */
		if ((fd = open("/proc/self/setgroups", O_WRONLY)) >= 0) {
			(void)!write(fd, "deny", 4);
			close(fd);
		}
		snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
		if ((fd = open("/proc/self/uid_map", O_WRONLY)) < 0 ||
		    write(fd, map, strlen(map)) < 0)
			return false;
		close(fd);
		snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
		if ((fd = open("/proc/self/gid_map", O_WRONLY)) < 0 ||
		    write(fd, map, strlen(map)) < 0)
			return false;
		close(fd);
	}
	return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
}

/* Fill the file system under dir: the filler's path. */
static char *
fill(const char *dir)
{
	char *path = xasprintf("%s/filler", dir), block[4096];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	memset(block, 0, sizeof block);
	assert_true(fd >= 0);
	while (write(fd, block, sizeof block) > 0)
		;
	assert_int_equal(errno, ENOSPC);
	close(fd);
	return path;
}

static struct vm_record
ledger_wait(struct ledger *l, const struct world *w, const char *name, enum vm_state state)
{
	int64_t deadline = now_ms() + WAIT_MS;
	struct vm_record v = {0};

	for (;;) {
		if (ledger_get(l, name, &v) == 0 && v.state == state)
			return v;
		if (now_ms() > deadline) {
			dmn_dump(&w->d);
			fail_msg("%s did not reach %s in the ledger (it is %s)", name,
			    vm_state_name(state), vm_state_name(v.state));
		}
		sleep_ms(50);
	}
}

/* The requestId of the emulator's first DELETE of a VM. */
static char *
delete_request_id(const struct world *w, const char *name)
{
	char *text = read_text(w->e.log), **lines = str_split(text, '\n', NULL), *id = NULL;
	char *suffix = xasprintf("/instances/%s", name);

	for (char **l = lines; *l != NULL && id == NULL; l++) {
		json_t *j = json_loads(*l, 0, NULL);
		const char *q = jx_str(j, "query");

		if (j != NULL && strcmp(jx_str(j, "method"), "DELETE") == 0 &&
		    str_suffix(jx_str(j, "path"), suffix) && q != NULL &&
		    strstr(q, "requestId=") != NULL)
			id = xstrndup(strstr(q, "requestId=") + 10, 36);
		json_decref(j);
	}
	str_list_free(lines);
	free(suffix);
	free(text);
	return id;
}

/*
 * The state directory on a 256 KiB tmpfs that fills while a VM runs: its end
 * was not written but the delete went, and the ledger kept it READY at $0;
 * `terminate` hung. Now terminate ends, the delete's requestId is the insert's
 * derived, status says the directory is full and no VM is created, and once
 * there is room the VM is closed at its true cost, the WAL small.
 */
static void
test_full_state_dir(void **state)
{
	struct world w;
	struct cli_env e;
	struct cmd_run r;
	char *full, *filler, *set, *wal, name[64], derived[UUID_LEN], *sent;
	const char *env[3];
	struct ledger *l = NULL;
	struct vm_record v;
	struct stat st;
	json_t *doc;
	int64_t started, deleted;
	char *cause = NULL;

	if (!private_mounts()) {
		print_message("skipped: no mount namespace here (unshare: %s); a small tmpfs is "
		              "needed to fill\n",
		    strerror(errno));
		skip();
	}
	world_init(&w, SCALE, NULL);
	full = xasprintf("%s/full", w.d.state);
	assert_int_equal(mkdir(full, 0700), 0);
	assert_int_equal(mount("tmpfs", full, "tmpfs", 0, "size=256k,mode=0700"), 0);
	write_trace(w.trace, 0, 4000);
	set = xasprintf("SPILLWAY_STATE_DIR=%s", full);
	env[0] = "GCP_VM_ENABLED=false";
	env[1] = set;
	env[2] = NULL;
	world_run(&w, NULL, env);
	wait_started(&w, 1);
	env_init(&e, &w, full);
	create_ready(&w, &e, name, sizeof name);
	assert_int_equal(ledger_open(full, &l, &cause), 0);
	v = ledger_wait(l, &w, name, VM_READY);
	/* The disk fills; the VM is deleted by hand. */
	filler = fill(full);
	{
		const char *term[] = {"terminate", name, "--yes", NULL};

		cli(&w, &e, &r, term);
		assert_int_equal(r.status, 0);
		expect_text(r.out, "TERMINATED");
		cmd_run_free(&r);
	}
	doc = emu_instances(&w.e);
	assert_int_equal(json_array_size(doc), 0);
	json_decref(doc);
	uuid_derived(v.request_id, "delete", derived);
	sent = delete_request_id(&w, name);
	assert_non_null(sent);
	assert_string_equal(sent, derived);
	/* Said: status and doctor; and no VM is created meanwhile. */
	doc = status_doc(&w, &e);
	expect_text(jx_str(doc, "ledger.problem"), "is full");
	assert_true(json_integer_value(jx_get(doc, "ledger.waiting")) > 0);
	json_decref(doc);
	{
		const char *doctor[] = {"doctor", NULL};
		const char *create[] = {"create", "--yes", NULL};

		cli(&w, &e, &r, doctor);
		expect_text(r.out, "is full");
		cmd_run_free(&r);
		cli(&w, &e, &r, create);
		assert_int_equal(r.status, 3);
		expect_text(r.err, "refused: ledger: ");
		cmd_run_free(&r);
	}
	/* The file still has it READY: nothing could be written. */
	assert_int_equal(ledger_get(l, name, &v), 0);
	assert_int_equal(v.state, VM_READY);
	/* Room again: the next pass writes what waited, its true cost. */
	assert_int_equal(unlink(filler), 0);
	v = ledger_wait(l, &w, name, VM_TERMINATED);
	deleted = deleted_at(&w, name);
	started = v.started_ms;
	assert_true(deleted > started && started > 0);
	if (fabs(v.cost - cost_run(v.per_hour, v.started_ms, v.ended_ms, true, false)) > 1e-12 ||
	    v.ended_ms < deleted - 1000 || v.ended_ms > deleted + 60000)
		fail_msg("cost $%.6f for %lld ms (deleted at %lld, ended %lld)", v.cost,
		    (long long)(v.ended_ms - v.started_ms), (long long)deleted,
		    (long long)v.ended_ms);
	doc = status_doc(&w, &e);
	assert_true(json_is_null(jx_get(doc, "ledger.problem")));
	json_decref(doc);
	/* The WAL is cut back at each pass. */
	wal = xasprintf("%s/ledger.db-wal", full);
	assert_true(stat(wal, &st) != 0 || st.st_size <= 65536);
	/* And a restart finds it as it was. */
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	world_run(&w, NULL, env);
	wait_started(&w, 2);
	assert_int_equal(ledger_get(l, name, &v), 0);
	assert_int_equal(v.state, VM_TERMINATED);
	ledger_close(l);
	env_free(&e);
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	umount(full);
	free(wal);
	free(sent);
	free(filler);
	free(set);
	free(full);
	world_end(&w);
}

/* --- 5. a damaged ledger --- */

static void
run_on(const char *dir, struct cmd_run *r, const char *const *args)
{
	char *state = xasprintf("SPILLWAY_STATE_DIR=%s", dir);
	char *sock = xasprintf("SPILLWAY_SOCKET=%s/control.sock", dir);
	const char *env[] = {state, sock, NULL};

	run_spillway(r, dir, args, env);
	free(state);
	free(sock);
}

/* A ledger made by a CLI, then damaged by fn. */
static char *
ledger_then(void (*damage)(const char *path))
{
	char *dir = xstrdup("/tmp/spillway-hostile-XXXXXX"), *path;
	const char *status[] = {"status", NULL};
	struct cmd_run r;

	assert_non_null(mkdtemp(dir));
	run_on(dir, &r, status);
	assert_int_equal(r.status, 0);
	cmd_run_free(&r);
	path = xasprintf("%s/ledger.db", dir);
	damage(path);
	free(path);
	return dir;
}

/* The first page sound, the rest of the file garbage. */
static void
garbage_after_first_page(const char *path)
{
	size_t len;
	char *text, *wal = xasprintf("%s-wal", path), *shm = xasprintf("%s-shm", path);

	assert_int_equal(read_file(path, 1 << 24, &text, &len), 0);
	assert_true(len > 8192);
	memset(text + 4096, 0xff, len - 4096);
	assert_int_equal(write_file_atomic(path, text, len, 0600), 0);
	unlink(wal);
	unlink(shm);
	free(text);
	free(wal);
	free(shm);
}

/* A sound file whose vms table is of another shape than spillway's. */
static void
foreign_vms(const char *path)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                     "ALTER TABLE vms RENAME TO old_vms; CREATE TABLE vms (name TEXT, "
	                     "state TEXT)",
	                     NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
}

/*
 * A ledger whose first page is sound and the rest garbage made `spillway run`
 * abort (exit 134, a handle closed twice). Now every start-up failure exits 2
 * with what is wrong and what to do, closing what it opened once.
 */
static void
test_damaged_ledger(void **state)
{
	const char *run[] = {"run", "--foreground", "--provider", "emulator", NULL};
	const char *status[] = {"status", NULL};
	struct cmd_run r;
	char *dir;

	dir = ledger_then(garbage_after_first_page);
	run_on(dir, &r, run);
	if (r.status != 2)
		fail_msg("run: exit %d (expected 2)\n%s", r.status, r.err);
	expect_text(r.err, "is damaged (integrity check: ");
	expect_text(r.err, "move it aside (mv ");
	cmd_run_free(&r);
	run_on(dir, &r, status);
	assert_int_equal(r.status, 1);
	expect_text(r.err, "is damaged");
	cmd_run_free(&r);
	remove_tree(dir);
	free(dir);
	/* Sound, but not ours to read: found once the daemon is under way, said the same. */
	dir = ledger_then(foreign_vms);
	run_on(dir, &r, run);
	if (r.status != 2)
		fail_msg("run: exit %d (expected 2)\n%s", r.status, r.err);
	expect_text(r.err, "cannot start: cannot read the VMs from the ledger: ");
	expect_text(r.err, "no such column");
	cmd_run_free(&r);
	remove_tree(dir);
	free(dir);
}

/* --- 6. garbage from the token endpoint, and commands that wait --- */

/*
 * A token endpoint answering 200 {"access_token": 12, ...} made `create`
 * hang. Now it says at once that the endpoint gave no usable token.
 */
static void
test_garbage_token(void **state)
{
	static const char garbage[] = "{\"access_token\": 12, \"expires_in\": "
	                              "-99999999999999999999}";
	const char *create[] = {"create", "--yes", "--no-wait", NULL};
	struct world w;
	struct cli_env e;
	struct cmd_run r;
	struct canned tok;
	char *uri, *creds;

	world_init(&w, SCALE, NULL);
	canned_start(&tok, CANNED_JSON, sizeof garbage - 1, 0);
	tok.text = garbage;
	env_init(&e, &w, NULL);
	uri = xasprintf("SPILLWAY_TOKEN_URI=http://127.0.0.1:%d/token", tok.port);
	creds = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", w.e.user_creds);
	free(e.v[0]);
	e.v[0] = creds;
	env_add(&e, uri);
	cli(&w, &e, &r, create);
	assert_int_equal(r.status, 3);
	expect_text(r.err, "answered without a usable token");
	expect_text(r.err, uri + strlen("SPILLWAY_TOKEN_URI="));
	cmd_run_free(&r);
	/* Tried as often as calls wanted a token, not retried until each one's deadline. */
	assert_true(tok.served >= 1 && tok.served <= 8);
	canned_stop(&tok);
	env_free(&e);
	free(uri);
	world_end(&w);
}

/*
 * `terminate` followed its VMs forever. With a cloud that fails every call, it
 * now gives up after daemon.shutdown_timeout_s, naming the VM and its state.
 */
static void
test_terminate_deadline(void **state)
{
	struct world w;
	struct cli_env e;
	struct cmd_run r;
	char name[64];

	calm_world(&w, NULL);
	env_init(&e, &w, NULL);
	env_add(&e, "SPILLWAY_SHUTDOWN_TIMEOUT_S=2");
	create_ready(&w, &e, name, sizeof name);
	emu_set_faults(&w.e, "error500=1");
	{
		const char *term[] = {"terminate", name, "--yes", NULL};

		cli(&w, &e, &r, term);
		assert_int_equal(r.status, 1);
		expect_text(r.err, "is still TERMINATING after 2 s");
		cmd_run_free(&r);
	}
	emu_set_faults(&w.e, "");
	wait_vm(&w, name, VM_TERMINATED);
	env_free(&e);
	world_end(&w);
}

/* --- 7. a cloud that answers malformed lists --- */

/*
 * An instance without a zone, or a preemption without a target, reached an
 * abort. Now the daemon says what is missing and runs on; SIGTERM ends it well.
 */
static void
test_malformed_cloud(void **state)
{
	static const char *bodies[][2] = {
	    {"{\"items\": [{\"name\": \"spillway-x\", \"status\": \"RUNNING\", \"machineType\": "
	     "\"zones/us-central1-a/machineTypes/e2-highmem-4\"}]}",
	        "without a valid 'zone'"},
	    {"{\"items\": [{\"name\": \"spillway-x\", \"zone\": \"zones/us-central1-a\", "
	     "\"status\": \"RUNNING\", \"machineType\": "
	     "\"zones/us-central1-a/machineTypes/e2-highmem-4\", \"operationType\": "
	     "\"compute.instances.preempted\", \"insertTime\": \"2030-01-01T00:00:00Z\"}]}",
	        "without a valid 'targetLink'"},
	};

	/* --keep: the orphan listed is reported, and left alone at the end too. */
	const char *keep[] = {"--keep", NULL};

	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		struct emu emu;
		struct dmn d;
		struct canned c;
		char *ep, *log;
		const char *env[6];
		int64_t deadline = now_ms() + WAIT_MS;

		emu_start(&emu, NULL);
		canned_start(&c, CANNED_JSON, strlen(bodies[i][0]), 0);
		c.text = bodies[i][0];
		ep = xasprintf("SPILLWAY_COMPUTE_ENDPOINT=http://127.0.0.1:%d/compute/v1/", c.port);
		env[0] = ep;
		env[1] = "SPILLWAY_FALLBACK_ZONES=us-central1-b";
		env[2] = "GCP_VM_HEALTH_CHECK_INTERVAL=1";
		env[3] = "SPILLWAY_ORPHAN_POLICY=report";
		env[4] = "GCP_VM_ENABLED=false";
		env[5] = NULL;
		dmn_init(&d);
		dmn_start(&d, &emu, keep, env);
		for (;;) {
			bool said;

			log = read_text(d.log);
			said = log != NULL && strstr(log, bodies[i][1]) != NULL;
			free(log);
			if (said)
				break;
			if (now_ms() > deadline || waitpid(d.pid, NULL, WNOHANG) == d.pid) {
				dmn_dump(&d);
				fail_msg("the daemon did not say '%s' (or ended)", bodies[i][1]);
			}
			sleep_ms(50);
		}
		assert_int_equal(dmn_stop(&d, SIGTERM), 0);
		dmn_cleanup(&d);
		canned_stop(&c);
		emu_stop(&emu);
		free(ep);
	}
}

/* --- 9. the ledger deleted while the daemon runs --- */

/*
 * The ledger deleted under a running daemon went unnoticed: it wrote on into
 * the unlinked file, lost at the next start. Now the next pass makes a new
 * one holding the VM alive, says so, and its end is recorded there.
 */
static void
test_ledger_deleted(void **state)
{
	const char *env[] = {"GCP_VM_HEALTH_CHECK_INTERVAL=2", NULL};
	struct world w;
	struct cli_env e;
	struct ledger *l = NULL;
	struct vm_record v;
	char name[64], *path, *cause = NULL;
	struct stat st;
	int64_t deadline;
	struct ledger_event *ev;
	size_t n;
	bool said = false;

	calm_world(&w, env);
	env_init(&e, &w, NULL);
	create_ready(&w, &e, name, sizeof name);
	path = xasprintf("%s/ledger.db", w.d.state);
	for (const char *suffix = ""; suffix != NULL; suffix = *suffix ? NULL : "-wal") {
		char *p = xasprintf("%s%s", path, suffix);

		unlink(p);
		free(p);
	}
	{
		char *shm = xasprintf("%s-shm", path);

		unlink(shm);
		free(shm);
	}
	/* Looked for without opening it: opening would make the file. */
	deadline = now_ms() + WAIT_MS;
	while (stat(path, &st) != 0) {
		if (now_ms() > deadline) {
			dmn_dump(&w.d);
			fail_msg("no new ledger was made");
		}
		sleep_ms(50);
	}
	sleep_ms(500);
	assert_int_equal(ledger_open(w.d.state, &l, &cause), 0);
	v = ledger_wait(l, &w, name, VM_READY);
	assert_int_equal(ledger_events(l, name, 10, &ev, &n), 0);
	for (size_t i = 0; i < n; i++)
		said |= strstr(ev[i].detail, "the ledger was deleted while spillway ran") != NULL;
	free(ev);
	assert_true(said);
	{
		char *log = read_text(w.d.log);

		expect_text(log, "was deleted or replaced while spillway ran");
		free(log);
	}
	/* Its end goes to the new ledger. */
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	assert_int_equal(ledger_get(l, name, &v), 0);
	assert_int_equal(v.state, VM_TERMINATED);
	assert_true(v.cost > 0);
	ledger_close(l);
	env_free(&e);
	free(path);
	world_end(&w);
}

/* --- 10. SIGHUP --- */

static void
write_conf(const struct dmn *d, const char *text)
{
	char *dir = xasprintf("%s/spillway", d->state), *path = xasprintf("%s/spillway.conf", dir);

	mkdir(dir, 0700);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
	free(path);
	free(dir);
}

static void
wait_log(const struct dmn *d, const char *text, int times)
{
	int64_t deadline = now_ms() + WAIT_MS;

	for (;;) {
		char *log = read_text(d->log);
		int seen = 0;

		for (const char *p = log; p != NULL && (p = strstr(p, text)) != NULL; p++)
			seen++;
		free(log);
		if (seen >= times)
			return;
		if (now_ms() > deadline) {
			dmn_dump(d);
			fail_msg("the log does not say '%s' %d times", text, times);
		}
		sleep_ms(50);
	}
}

/*
 * SIGHUP swapped the configuration but kept the zones, the cloud's settings,
 * the hook timeout and the thresholds of the start. Now they apply; the keys
 * read at start only are named as waiting for a restart; and a reload that
 * would lose sight of a running VM is refused.
 */
static void
test_reload(void **state)
{
	const char *env[] = {"SPILLWAY_OWNER=" OWNER, "GCP_VM_ENABLED=false", NULL};
	const char *args[7];
	struct world w;
	struct cli_env e;
	struct insert ins[4];
	char name[64];
	json_t *doc;

	world_init(&w, SCALE, NULL);
	write_trace(w.trace, 0, 4000);
	/* As world_run, but without its fallback zones in the environment: the file says them. */
	args[0] = "--time-scale";
	args[1] = w.scale;
	args[2] = "--clock-epoch";
	args[3] = w.epoch;
	args[4] = "--replay";
	args[5] = w.trace;
	args[6] = NULL;
	write_conf(&w.d, "[gcp]\nzone = us-central1-a\nfallback_zones = us-central1-b\n");
	dmn_start(&w.d, &w.e, args, env);
	wait_log(&w.d, "owner " OWNER, 1);
	write_conf(&w.d,
	    "[gcp]\nzone = us-central1-c\nfallback_zones = us-central1-b\n"
	    "[spillway]\nretry_attempts = 3\n[hooks]\ntimeout_s = 2\n"
	    "[pressure]\nhigh_pct = 20\nwindow_s = 4\n");
	kill(w.d.pid, SIGHUP);
	wait_log(&w.d,
	    "configuration reloaded: gcp.zone, spillway.retry_attempts, "
	    "hooks.timeout_s, pressure.high_pct apply now",
	    1);
	wait_log(&w.d,
	    "these wait for a restart (spillway run reads them at start only): "
	    "pressure.window_s",
	    1);
	wait_log(&w.d, "zones now us-central1-c then us-central1-b", 1);
	/* The zone applies: a VM by hand goes there. */
	env_init(&e, &w, NULL);
	create_ready(&w, &e, name, sizeof name);
	assert_int_equal(inserts(&w, ins, 4), 1);
	doc = status_doc(&w, &e);
	assert_string_equal(jx_str(doc, "config.zone"), "us-central1-c");
	assert_string_equal(jx_str(doc, "vms.0.zone"), "us-central1-c");
	json_decref(doc);
	/* Zones that leave the running VM out: refused, the old ones kept. */
	write_conf(&w.d, "[gcp]\nzone = us-central1-a\nfallback_zones = us-central1-b\n");
	kill(w.d.pid, SIGHUP);
	wait_log(&w.d,
	    "the new configuration is refused, keeping the old one: the new zones "
	    "leave out ",
	    1);
	doc = status_doc(&w, &e);
	assert_string_equal(jx_str(doc, "config.zone"), "us-central1-c");
	json_decref(doc);
	env_free(&e);
	world_end(&w);
}

/* --- 11. a VM that ends before it is asked to --- */

/*
 * `terminate --all --yes` without a daemon crashed (SIGSEGV) when the VMs it
 * chose had already gone: their end, found by the first look at the cloud,
 * reached the command before it was ready. Now each is reported ended, with
 * its cost, and the command succeeds. On the real clock, as a user runs it:
 * the first look must see the VMs' states as older than its list.
 */
static void
test_terminate_gone(void **state)
{
	struct emu emu;
	struct dmn d;
	struct cli_env e;
	struct cmd_run r;
	char a[64], b[64], *trace;
	const char *args[4], *env[] = {"GCP_VM_ENABLED=false", "SPILLWAY_OWNER=" OWNER, NULL};
	json_t *all, *it;
	size_t i;

	emu_start(&emu, NULL);
	dmn_init(&d);
	trace = xasprintf("%s/calm.trace", d.state);
	write_trace(trace, 0, 4000);
	args[0] = "--keep";
	args[1] = "--replay";
	args[2] = trace;
	args[3] = NULL;
	dmn_start(&d, &emu, args, env);
	wait_log(&d, "owner " OWNER, 1);
	env_for(&e, &emu, &d, NULL);
	create_in(&d, &e, a, sizeof a);
	create_in(&d, &e, b, sizeof b);
	assert_int_equal(dmn_stop(&d, SIGTERM), 0); /* --keep: they run on */
	/* Deleted behind spillway's back. */
	all = emu_instances(&emu);
	assert_int_equal(json_array_size(all), 2);
	json_array_foreach (all, i, it) {
		char *tail = xasprintf("instances/%s", jx_str(it, "name"));
		char *url = compute_url(&emu, jx_str(it, "zone"), tail);

		json_decref(api(&emu, "DELETE", url, NULL, 200));
		free(url);
		free(tail);
	}
	json_decref(all);
	/* Gone for good: no longer listed, not even as stopping. */
	{
		int64_t deadline = now_ms() + WAIT_MS;

		while (json_array_size(all = emu_instances(&emu)) > 0) {
			json_decref(all);
			assert_true(now_ms() < deadline);
			sleep_ms(50);
		}
		json_decref(all);
	}
	{
		const char *term[] = {"terminate", "--all", "--yes", NULL};

		cli_in(&d, &e, &r, term);
		if (r.status != 0)
			fail_msg("terminate: exit %d\n%s%s", r.status, r.out, r.err);
		expect_text(r.out, a);
		expect_text(r.out, b);
		expect_text(r.out, "TERMINATED");
		cmd_run_free(&r);
	}
	env_free(&e);
	free(trace);
	dmn_cleanup(&d);
	emu_stop(&emu);
}

/* --- 12. a refusal said once --- */

/* "concurrency: concurrency: max concurrent 2 reached": the rule is said once. */
static void
test_refusal_said_once(void **state)
{
	const char *env[] = {"GCP_VM_MAX_CONCURRENT=0", NULL};
	const char *create[] = {"create", "--yes", NULL};
	struct world w;
	struct cli_env e;
	struct cmd_run r;

	calm_world(&w, env);
	env_init(&e, &w, NULL);
	env_add(&e, "GCP_VM_MAX_CONCURRENT=0");
	cli(&w, &e, &r, create);
	assert_int_equal(r.status, 3);
	expect_text(r.err, "spillway create: refused: concurrency: max concurrent 0 reached");
	assert_null(strstr(r.err, "concurrency: concurrency"));
	cmd_run_free(&r);
	/* The same without a daemon. */
	assert_int_equal(dmn_stop(&w.d, SIGTERM), 0);
	cli(&w, &e, &r, create);
	assert_int_equal(r.status, 3);
	expect_text(r.err, "spillway create: refused: concurrency: max concurrent 0 reached");
	assert_null(strstr(r.err, "concurrency: concurrency"));
	cmd_run_free(&r);
	env_free(&e);
	world_end(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_negative_catalog),
	    cmocka_unit_test(test_idle_connections),
	    cmocka_unit_test(test_damaged_ledger),
	    cmocka_unit_test(test_garbage_token),
	    cmocka_unit_test(test_terminate_deadline),
	    cmocka_unit_test(test_malformed_cloud),
	    cmocka_unit_test(test_ledger_deleted),
	    cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_terminate_gone),
	    cmocka_unit_test(test_refusal_said_once),
	    /* Last: it moves this process into a mount namespace of its own. */
	    cmocka_unit_test(test_full_state_dir),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
