/*
 * bench/daemon: the daemon (in this process, so its CPU and memory are this
 * process's) against `spillway emulator` (another process), real time.
 *
 *  1. decision to insert sent: from the decision to the insert handed to the
 *     HTTP client (the ledger's reservation committed first), and to
 *     Compute Engine's answer; create to READY beyond the emulator's own
 *     boot delays (1 s to RUNNING, 1.3 s more for the backend).
 *  2. a monitoring pass over 100, 1,000 and 3,000 instances in 3 zones, all
 *     READY: API calls, CPU per VM (the pass must be linear), wall ms,
 *     health checks (in parallel), RSS.
 *  3. RSS idle (no VM).
 *
 *	usage: daemon [SPILLWAY_BINARY] [VMS,VMS...]
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cloud/connect.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"
#include "vm/daemon.h"
#include "vm/startup.h"
#include "figure.h"

#define SAMPLES  5
#define BOOT_MS  1000
#define GUEST_MS 1300

static uv_loop_t loop;
static char dir[] = "/tmp/spillway-bench-XXXXXX";
static struct clock clk;
static struct daemon *dmn;
static int64_t t_decision, t_sent, t_accepted, t_ready;
static int ready, ended, created;

/*
 * Profiling the passes alone: perf record -D -1 --control fifo:F, and
 * BENCH_PERF_CTL=F here; the measured passes enable it, nothing else.
 */
static void
perf_ctl(const char *cmd)
{
	static int fd = -2;

	if (fd == -2)
		fd = getenv("BENCH_PERF_CTL") != NULL ? open(getenv("BENCH_PERF_CTL"), O_WRONLY)
		                                      : -1;
	if (fd >= 0 && write(fd, cmd, strlen(cmd)) < 0)
		fd = -1;
}

static void
remove_dir(void)
{
	if (strcmp(dir + strlen(dir) - 6, "XXXXXX") != 0)
		remove_tree(dir);
}

static double
ms(int64_t ns)
{
	return (double)ns / 1e6;
}

static double
cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void
on_event(const struct manager_event *e, void *arg)
{
	int64_t now = monotonic_ns();

	if (e->kind == MEV_DECISION && e->decision->create && t_decision == 0)
		t_decision = now;
	if (e->kind != MEV_STATE)
		return;
	if (e->vm->state == VM_CREATING && t_sent == 0)
		t_sent = now;
	if (e->vm->state == VM_PROVISIONING && t_accepted == 0)
		t_accepted = now;
	/* READY now, each VM once: one may say READY again, or leave it. */
	if (e->vm->state == VM_READY && e->from != VM_READY) {
		if (t_ready == 0)
			t_ready = now;
		ready++;
	} else if (e->from == VM_READY && e->vm->state != VM_READY) {
		ready--;
	}
	if (e->vm->state == VM_BOOTING || e->vm->state == VM_PROVISIONING)
		return;
	if (e->vm->state == VM_TERMINATED)
		ended++;
}

/* Run the loop until cond() or a deadline (seconds). */
static bool
run_until(bool (*cond)(void), int seconds)
{
	int64_t deadline = monotonic_ns() + (int64_t)seconds * 1000000000;

	while (!cond() && monotonic_ns() < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	return cond();
}

static bool
is_ready(void)
{
	return t_ready != 0;
}
static bool
is_ended(void)
{
	return ended > 0;
}

static int want;
static bool
all_created(void)
{
	return created >= want;
}
static bool
all_ready(void)
{
	return ready >= want;
}

static void
on_inserted(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	created += e->code == CLOUD_OK;
}

static long passes_seen;
static bool
pass_over(void)
{
	struct manager_counts c;

	manager_counts(daemon_manager(dmn), &c);
	return c.passes > passes_seen;
}

static void
pass(void)
{
	struct manager_counts c;

	manager_counts(daemon_manager(dmn), &c);
	passes_seen = c.passes;
	manager_pass_now(daemon_manager(dmn));
	run_until(pass_over, 120);
}

/*
 * Passes until every VM is READY: one the emulator had not booted yet when
 * a pass listed it (a busy emulator runs its timers late) is taken over as
 * PROVISIONING and seen RUNNING only by a later pass.
 */
static bool
adopt_all(void)
{
	int64_t until = monotonic_ns() + 300 * 1000000000LL;

	do
		pass();
	while (!run_until(all_ready, 2) && monotonic_ns() < until);
	return all_ready();
}

static void
started(void *arg, int error, const char *cause)
{
	if (error != 0) {
		fprintf(stderr, "bench/daemon: %s\n", cause);
		exit(1);
	}
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : "build/spillway";
	char **asked = str_split(argc > 2 ? argv[2] : "100,1000,3000", ',', NULL);
	int sizes[8], nsizes = 0;
	char line[256], creds[300], trace[300], *cause = NULL;
	char *sets[16], bms[16], gms[16];
	const char *zones[] = {"us-central1-a", "us-central1-b", "us-central1-c"};
	double to_sent[SAMPLES], to_answer[SAMPLES], overhead[SAMPLES];
	struct config cfg;
	struct config_args args = {NULL, (const char *const *)sets};
	struct daemon_opts o = {0};
	struct agent_identity identity = {0};
	unsigned char agent_key[AGENT_KEY_LEN];
	struct cloud_conn conn;
	struct manager_counts before, after;
	struct rlimit rl;
	int out[2], port, status, n = 0;
	double cpu0;
	long rss_idle;
	pid_t pid;
	FILE *f;

	jx_init();
	log_set_level(getenv("BENCH_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (char **v = asked; *v != NULL && nsizes < 8; v++) {
		int64_t size;

		if (parse_int64(*v, 1, 5000, &size) != 0 ||
		    (nsizes > 0 && size <= sizes[nsizes - 1])) {
			fprintf(
			    stderr, "bench/daemon: VMS is rising sizes from 1 to 5000: 100,1000\n");
			return 2;
		}
		sizes[nsizes++] = (int)size;
	}
	str_list_free(asked);
	if (mkdtemp(dir) == NULL || pipe(out) != 0)
		return 1;
	atexit(remove_dir); /* a bench that fails leaves nothing behind */
	snprintf(creds, sizeof creds, "%s/sa.json", dir);
	snprintf(bms, sizeof bms, "%d", BOOT_MS);
	snprintf(gms, sizeof gms, "%d", GUEST_MS);
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* no emulator left behind, whatever happens */
		dup2(out[1], 1);
		execl(bin, "spillway", "emulator", "--boot-ms", bms, "--guest-boot-ms", gms,
		    "--write-credentials", creds, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	if (read(out[0], line, sizeof line - 1) <= 0 || strrchr(line, ':') == NULL)
		return 1;
	port = (int)strtol(strrchr(line, ':') + 1, NULL, 10);
	/* Pressure that holds: a VM is wanted all along. */
	snprintf(trace, sizeof trace, "%s/high.trace", dir);
	f = fopen(trace, "w");
	fprintf(f, "# spillway pressure trace 1\n");
	for (int i = 0; i < 7200; i++)
		fprintf(f,
		    "t=%lld ev=%d some=%lld full=%lld sa10=60 sa60=60 fa10=40 fa60=40 mt=16000000 "
		    "ma=8000000 st=0 sf=0 si=0 so=0 mf=0 rf=0 ra=0\n",
		    1700000000000LL + i * 1000LL, i == 1, i * 600000LL, i * 400000LL);
	fclose(f);
	sets[n++] = xasprintf("spillway.compute_endpoint=http://127.0.0.1:%d/compute/v1/", port);
	sets[n++] = xasprintf("pricing.billing_endpoint=http://127.0.0.1:%d/v1/", port);
	sets[n++] = xasprintf("spillway.state_dir=%s/state", dir);
	sets[n++] = xstrdup("gcp.project=spillway-emulator");
	sets[n++] = xstrdup("gcp.fallback_zones=us-central1-b,us-central1-c");
	sets[n++] = xstrdup("gcp.health_check_interval=3600"); /* passes when asked */
	sets[n++] = xstrdup("gcp.max_concurrent=1");
	sets[n++] = xstrdup("daemon.cooldown_minutes=0");
	sets[n++] = xstrdup("daemon.owner=bench");
	sets[n++] = xstrdup("daemon.orphan_policy=adopt");
	sets[n++] = xstrdup("gcp.idle_timeout_minutes=600");
	sets[n] = NULL;
	{
		char *env_creds = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", creds);
		char *const env[] = {env_creds, NULL};

		if (config_load(&cfg, &args, env, &cause) != 0) {
			fprintf(stderr, "bench/daemon: %s\n", cause);
			return 1;
		}
		uv_loop_init(&loop);
		clock_real(&clk);
		o.cfg = &cfg;
		o.clock = &clk;
		o.replay = trace;
		o.env = env;
		o.on_event = on_event;
		o.on_started = started;
		rss_idle = proc_status(getpid(), "VmRSS:");
		if (daemon_new(&loop, &o, &dmn, &cause) != 0 ||
		    cloud_connect(&loop, &clk, &cfg, env, &conn, &cause) != 0) {
			fprintf(stderr, "bench/daemon: %s\n", cause);
			return 1;
		}
		free(env_creds);
	}

	printf("bench/daemon: the daemon in this process against spillway emulator (real time, "
	       "boot %d ms + backend %d ms)\n",
	    BOOT_MS, GUEST_MS);
	/* 1. decision -> insert, and create -> READY, SAMPLES times. */
	for (int i = 0; i < SAMPLES; i++) {
		t_decision = t_sent = t_accepted = t_ready = 0;
		ended = 0;
		if (i > 0)
			manager_pass_now(daemon_manager(dmn)); /* decide again */
		if (!run_until(is_ready, 30)) {
			fprintf(stderr, "bench/daemon: no VM became READY\n");
			return 1;
		}
		to_sent[i] = ms(t_sent - t_decision);
		to_answer[i] = ms(t_accepted - t_decision);
		overhead[i] = ms(t_ready - t_sent) - BOOT_MS - GUEST_MS;
		{
			struct vm_record *list;
			size_t nvm;

			ledger_list(daemon_ledger(dmn), NULL, 0, &list, &nvm);
			manager_terminate(daemon_manager(dmn), list[0].name, "bench");
			free(list);
		}
		run_until(is_ended, 30);
	}
	qsort(to_sent, SAMPLES, sizeof *to_sent, cmp);
	qsort(to_answer, SAMPLES, sizeof *to_answer, cmp);
	qsort(overhead, SAMPLES, sizeof *overhead, cmp);
	printf("  decision -> insert sent:        median %.2f ms, max %.2f ms (the ledger's "
	       "reservation, fsync included)\n",
	    to_sent[SAMPLES / 2], to_sent[SAMPLES - 1]);
	printf("  decision -> insert answered:    median %.2f ms, max %.2f ms\n",
	    to_answer[SAMPLES / 2], to_answer[SAMPLES - 1]);
	printf("  create -> READY beyond the emulator's %d ms: median %.0f ms, max %.0f ms "
	       "(boot probes every second)\n",
	    BOOT_MS + GUEST_MS, overhead[SAMPLES / 2], overhead[SAMPLES - 1]);
	printf("  RSS idle (no VM):               %.1f MB\n",
	    (double)proc_status(getpid(), "VmRSS:") / 1024);
	figure("daemon decision to insert sent (median)", to_sent[SAMPLES / 2], "ms");
	figure("daemon create to READY beyond the emulator's boot (median)", overhead[SAMPLES / 2],
	    "ms");
	figure("daemon RSS idle", (double)proc_status(getpid(), "VmRSS:") / 1024, "MB");
	(void)rss_idle;

	/*
	 * 2. instances with our owner label, adopted, READY: a pass at each size.
	 * Each carries what a VM this daemon made carries for its agent: the
	 * daemon's certificate (who may talk to it) and the VM's secret.
	 */
	{
		char *sd = xasprintf("%s/state", dir);

		if (agent_identity_load(sd, &identity, &cause) != 0 ||
		    agent_key_load(sd, agent_key, &cause) != 0) {
			fprintf(stderr, "bench/daemon: %s\n", cause);
			return 1;
		}
		free(sd);
	}
	for (int k = 0; k < nsizes; k++) {
		const struct cloud_kv labels[] = {
		    {"managed-by", "spillway"}, {"spillway-owner", "bench"}};
		int size = sizes[k], have = k > 0 ? sizes[k - 1] : 0;
		double per_vm;

		want = size - have;
		created = 0;
		for (int i = have; i < size; i++) {
			char name[64], rid[40], secret[STARTUP_SECRET_LEN + 1];
			const struct cloud_kv metadata[] = {
			    {"spillway-client-cert", identity.cert_pem},
			    {"spillway-agent-secret", secret}, {"enable-guest-attributes", "TRUE"}};
			struct cloud_instance_spec s = {.name = name,
			    .metadata = metadata,
			    .nmetadata = nitems(metadata),
			    .zone = zones[i % 3],
			    .machine_type = "e2-highmem-4",
			    .spot = true,
			    .image = "projects/debian-cloud/global/images/family/debian-12",
			    .disk_gb = 20,
			    .labels = labels,
			    .nlabels = 2,
			    .max_run_s = 10800,
			    .termination_action = "DELETE",
			    .external_ip = true};

			snprintf(name, sizeof name, "bench-%04d", i);
			agent_secret(agent_key, name, secret);
			uuid_v4(rid);
			conn.cloud->ops->create(
			    conn.cloud, &s, rid, clock_now_ms(&clk) + 120000, on_inserted, NULL);
		}
		if (!run_until(all_created, 300)) {
			fprintf(stderr, "bench/daemon: %d of %d inserts\n", created, want);
			return 1;
		}
		/* RUNNING (the emulator boots them in BOOT_MS), then one pass adopts them. */
		{
			int64_t until = monotonic_ns() + (BOOT_MS + 500) * 1000000LL;

			while (monotonic_ns() < until)
				uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
		}
		want = size;
		if (!adopt_all()) {
			fprintf(stderr, "bench/daemon: %d of %d READY\n", ready, want);
			return 1;
		}
		manager_counts(daemon_manager(dmn), &before);
		perf_ctl("enable\n");
		cpu0 = cpu_ms();
		pass();
		perf_ctl("disable\n");
		manager_counts(daemon_manager(dmn), &after);
		per_vm = (cpu_ms() - cpu0) * 1000 / size;
		printf("  a pass over %d READY VMs in 3 zones: %ld API calls, %ld health checks, "
		       "%.0f ms CPU (%.1f us per VM), %lld ms wall; RSS %.1f MB\n",
		    size, after.api_calls - before.api_calls,
		    after.health_checks - before.health_checks, cpu_ms() - cpu0, per_vm,
		    (long long)after.last_pass_ms, (double)proc_status(getpid(), "VmRSS:") / 1024);
		snprintf(line, sizeof line, "daemon pass CPU per VM at %d VMs", size);
		figure(line, per_vm, "us");
		snprintf(line, sizeof line, "daemon pass wall at %d VMs", size);
		figure(line, (double)after.last_pass_ms, "ms");
		snprintf(line, sizeof line, "daemon RSS with %d VMs", size);
		figure(line, (double)proc_status(getpid(), "VmRSS:") / 1024, "MB");
	}

	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	cloud_disconnect(&conn);
	daemon_free(dmn);
	uv_run(&loop, UV_RUN_DEFAULT);
	config_free(&cfg);
	agent_identity_release(&identity);
	for (int i = 0; i < n; i++)
		free(sets[i]);
	return 0;
}
