#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "cloud/connect.h"
#include "ledger/ledger.h"
#include "ledger/pricing.h"
#include "net/tls.h"
#include "pressure/monitor.h"
#include "route/route.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "vm/daemon.h"
#include "vm/hooks.h"
#include "vm/offload.h"
#include "vm/startup.h"

#define CATALOG_MAX        (32 << 20)
#define CATALOG_TIMEOUT_MS 15000
#define CATALOG_PAGES      40 /* of up to 5,000 SKUs: Compute Engine has tens of thousands */
#define COMPUTE_SERVICE    "6F81-5844-456A"
#define DAEMON_FDS         65536 /* descriptors wanted (a channel per VM), where allowed */

extern char **environ;
extern const char gce_prices_json[];
extern const size_t gce_prices_json_len;

struct daemon {
	uv_loop_t *loop;
	struct daemon_opts o;
	const struct config *cfg;
	struct config at_cfg;      /* the configuration, pointed at o.cloud_at */
	struct config at_cfg_next; /* a reload's, until it is taken */
	struct ledger *ledger;
	char **env;
	struct cloud_conn conn;
	json_t *catalog;
	char *catalog_source;
	json_t *fetched;  /* a refresh's pages so far: what pricing reads of them */
	char *page_token; /* the next page's, URL-encoded */
	int pages;
	char **zones;
	char owner[64];
	unsigned char agent_key[AGENT_KEY_LEN];
	struct agent_identity identity; /* TLS to the agents */
	struct tls_ctx *tls;            /* the routes' client context, with it */
	struct monitor *monitor;
	struct trace trace;
	struct manager *manager;
	struct hooks *hooks;
	struct router *router;              /* the components' routes */
	struct offload *offload;            /* the local copies spillway runs, with the routes */
	struct manager_listeners listeners; /* besides o.on_event: the control API's */
	bool started;
	/*
	 * What start-up and stop say to the caller is said from this timer, at
	 * the loop's top: never from inside a callback of the cloud's or the
	 * ledger's, so the caller may stop and free the daemon when it hears.
	 */
	uv_timer_t notify;
	int start_error; /* 1: none to say yet */
	char *start_cause;
	bool stopped;
	void (*done)(void *);
	void *done_arg;
};

void
daemon_owner_label(const char *state_dir, char out[64])
{
	char host[256] = "", *text;
	unsigned char md[SHA256_DIGEST_LENGTH];

	gethostname(host, sizeof host - 1);
	/* The same host and state directory give the same owner, run after run. */
	text = xasprintf("%s:%s", host, state_dir);
	SHA256((const unsigned char *)text, strlen(text), md);
	snprintf(out, 64, "h%02x%02x%02x%02x%02x%02x", md[0], md[1], md[2], md[3], md[4], md[5]);
	free(text);
}

/* One daemon per state directory: a lock held for the daemon's life. */
int
daemon_lock(const struct config *cfg, char **cause)
{
	char *path = xasprintf("%s/daemon.lock", cfg->state_dir);
	int fd;

	make_dirs(cfg->state_dir, 0700);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		*cause = xasprintf("cannot open %s: %s", path, strerror(errno));
		free(path);
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		char other[32] = "";

		if (read(fd, other, sizeof other - 1) < 0)
			other[0] = '\0';
		*cause =
		    xasprintf("another spillway daemon runs with the state directory %s (PID %s)",
		        cfg->state_dir, str_trim(other));
		close(fd);
		free(path);
		return -EBUSY;
	}
	free(path);
	daemon_lock_claim(fd);
	return fd; /* kept open: the lock lives as long as the process */
}

void
daemon_lock_claim(int fd)
{
	char pid[32];

	snprintf(pid, sizeof pid, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
		log_warnx("cannot write the PID to daemon.lock: %s", strerror(errno));
}

void
daemon_unlock(int fd)
{
	if (fd < 0)
		return;
	if (ftruncate(fd, 0) != 0)
		log_warnx("cannot clear daemon.lock: %s", strerror(errno));
	close(fd);
}

/* --- events: hooks and the log --- */

static void
on_event(const struct manager_event *e, void *arg)
{
	struct daemon *d = arg;
	const struct config *cfg = d->cfg;
	struct hook_env env = {0};
	char endpoint[128] = "", *cause = NULL;
	const char *name = NULL, *command = NULL;

	if (e->vm != NULL) {
		env.vm_name = e->vm->name;
		env.vm_ip = e->vm->nat_ip;
		env.components = e->vm->components;
		if (e->vm->nat_ip[0] != '\0')
			snprintf(endpoint, sizeof endpoint, "http://%s:%lld", e->vm->nat_ip,
			    (long long)cfg->backend_port);
		env.endpoint = endpoint;
	}
	env.reason = e->reason;
	if (e->vm != NULL && d->router != NULL)
		router_vm(d->router, e->vm);
	if (d->offload != NULL)
		offload_event(d->offload, e);
	switch (e->kind) {
	case MEV_READY:
		name = env.event = "ready";
		command = cfg->hook_on_ready;
		break;
	case MEV_GONE:
		name = env.event = "gone";
		command = cfg->hook_on_gone;
		break;
	case MEV_PRESSURE:
		name = env.event = "pressure";
		env.level = pressure_level_name(e->snap->level);
		command = cfg->hook_on_pressure;
		break;
	default:
		break;
	}
	if (command != NULL && hook_run(d->hooks, name, command, &env, &cause) != 0) {
		log_warnx("%s", cause);
		free(cause);
	}
	if (d->o.on_event != NULL)
		d->o.on_event(e, d->o.event_arg);
	manager_listeners_emit(&d->listeners, e);
}

/* A draining VM's last routed connection ended: its delete goes now. */
static void
on_drained(void *arg, const char *vm)
{
	struct daemon *d = arg;

	if (d->manager != NULL)
		manager_drained(d->manager, vm);
}

/* A route's last connection to its local copy ended: the copy may stop now. */
static void
on_local_drained(void *arg, const char *component)
{
	struct daemon *d = arg;

	if (d->offload != NULL)
		offload_local_drained(d->offload, component);
}

/* The routes' count for the manager's rules (manager_opts.traffic). */
static long
traffic(void *arg, const char *vm, int64_t *last_use_ms)
{
	struct daemon *d = arg;

	return d->router != NULL ? router_vm_open(d->router, vm, last_use_ms) : 0;
}

/* A route could not reach a VM: its health is checked now, not at the next pass. */
static void
on_unreachable(void *arg, const char *vm, const char *why)
{
	struct daemon *d = arg;

	if (d->manager != NULL)
		manager_check_vm(d->manager, vm);
}

void
daemon_set_keep(struct daemon *d, bool keep)
{
	d->o.keep = keep;
	if (d->manager != NULL)
		manager_set_keep(d->manager, keep);
}

void
daemon_set_drain_pool(struct daemon *d, bool drain)
{
	d->o.drain_pool = drain;
	if (d->manager != NULL)
		manager_set_drain_pool(d->manager, drain);
}

int
daemon_ask_stop(struct daemon *d, bool keep, bool drain_pool, bool *kept)
{
	if (d->o.on_stop_asked == NULL)
		return -ENOTSUP;
	d->o.on_stop_asked(d->o.event_arg, keep, drain_pool);
	*kept = d->o.keep;
	return 0;
}

void
daemon_on_event(struct daemon *d, manager_event_cb *cb, void *arg)
{
	manager_listeners_add(&d->listeners, cb, arg);
}

const struct pressure_snapshot *
daemon_snapshot(const struct daemon *d)
{
	return d->monitor != NULL ? monitor_snapshot(d->monitor) : NULL;
}

const struct config *
daemon_config(const struct daemon *d)
{
	return d->cfg;
}

const struct clock *
daemon_clock(const struct daemon *d)
{
	return d->o.clock;
}

static void
on_pressure(const struct pressure_snapshot *s, enum pressure_level prev, void *arg)
{
	struct daemon *d = arg;

	if (d->manager != NULL)
		manager_pressure(d->manager, s, prev);
}

/* --- start-up, in steps: catalog, zones, manager, monitor --- */

static void
on_notify(uv_timer_t *t)
{
	struct daemon *d = t->data;

	if (d->start_error != 1) {
		int error = d->start_error;
		char *cause = d->start_cause;

		d->start_error = 1;
		d->start_cause = NULL;
		if (d->o.on_started != NULL)
			d->o.on_started(d->o.event_arg, error, cause);
		free(cause);
		/* The caller may have stopped (or, once stopped, freed) us: nothing more here. */
		return;
	}
	if (d->stopped) {
		d->stopped = false;
		if (d->done != NULL)
			d->done(d->done_arg);
	}
}

static void
started(struct daemon *d, int error, const char *cause)
{
	d->start_error = error;
	free(d->start_cause);
	d->start_cause = cause != NULL ? xstrdup(cause) : NULL;
	uv_timer_start(&d->notify, on_notify, 0, 0);
}

static int
start_monitor(struct daemon *d, char **cause)
{
	struct monitor_opts o;
	char *psi = NULL;
	int error;

	monitor_opts_from_config(&o, d->cfg);
	o.clock = d->o.clock;
	if (d->o.replay == NULL) {
		if (*d->cfg->pressure_cgroup != '\0')
			psi = xasprintf("%s/memory.pressure", d->cfg->pressure_cgroup);
		else if (access("/proc/pressure/memory", F_OK) == 0)
			psi = xstrdup("/proc/pressure/memory");
		o.psi_path = psi;
	}
	error = monitor_new(d->loop, &o, &d->monitor, cause);
	free(psi);
	if (error != 0)
		return error;
	monitor_on_sample(d->monitor, on_pressure, d);
	if (d->o.replay != NULL) {
		double speed = d->o.replay_speed > 0 ? d->o.replay_speed : d->o.clock->scale;
		int64_t shift = clock_now_ms(d->o.clock) - d->trace.samples[0].t_ms;

		/* The trace happens from now on, on this clock. */
		for (size_t i = 0; i < d->trace.n; i++)
			d->trace.samples[i].t_ms += shift;
		monitor_replay(d->monitor, &d->trace, speed, NULL, NULL);
		return 0;
	}
	return monitor_start(d->monitor, cause);
}

static void
start_manager(struct daemon *d)
{
	struct manager_opts o = {
	    .cfg = d->cfg,
	    .clock = d->o.clock,
	    .cloud = d->conn.cloud,
	    .ledger = d->ledger,
	    .catalog = json_object_get(d->catalog, "skus"),
	    .catalog_source = d->catalog_source,
	    .owner = d->owner,
	    .agent_key = d->agent_key,
	    .identity = &d->identity,
	    .tls = d->tls,
	    .zones = (const char *const *)d->zones,
	    .keep = d->o.keep || d->o.passive,
	    .passive = d->o.passive,
	    .traffic = traffic,
	    .traffic_arg = d,
	    .gate = d->offload != NULL ? offload_gate : NULL,
	    .gate_arg = d->offload,
	    .memory = d->offload != NULL ? offload_memory : NULL,
	    .memory_arg = d->offload,
	};
	char *cause = NULL;

	if (manager_new(d->loop, &o, &d->manager, &cause) == 0)
		manager_set_drain_pool(d->manager, d->o.drain_pool);
	if (d->manager == NULL || start_monitor(d, &cause) != 0) {
		started(d, -EINVAL, cause);
		free(cause);
		return;
	}
	if (d->offload != NULL)
		offload_attach(d->offload, d->manager);
	manager_on_event(d->manager, on_event, d);
	d->started = true;
	{
		struct buf zones = BUF_INIT(4096);

		for (char **z = d->zones; *z != NULL; z++)
			buf_printf(&zones, "%s%s", z != d->zones ? " then " : "", *z);
		log_info("owner %s, zones %s, %s", d->owner, buf_str(&zones), d->catalog_source);
		buf_release(&zones);
	}
	manager_start(d->manager);
	started(d, 0, NULL);
}

/* The zones to use: gcp.zone, then gcp.fallback_zones, else the region's others. */
static char **
zones_of(const struct config *cfg, const char *const *region, size_t n)
{
	char **z;
	size_t k = 1;

	if (*cfg->fallback_zones != '\0') {
		char *all = xasprintf("%s,%s", cfg->zone, cfg->fallback_zones);

		z = str_split(all, ',', NULL);
		free(all);
		for (char **p = z; *p != NULL; p++) {
			char *t = xstrdup(str_trim(*p));

			free(*p);
			*p = t;
		}
		return z;
	}
	z = xcalloc(n + 2, sizeof *z);
	z[0] = xstrdup(cfg->zone);
	for (size_t i = 0; i < n; i++)
		if (strcmp(region[i], cfg->zone) != 0)
			z[k++] = xstrdup(region[i]);
	return z;
}

/* The region's zones, listed: the zones from now on (at start, or after a reload). */
static void
on_zones(const struct cloud_error *e, const char *const *zones, size_t n, void *arg)
{
	struct daemon *d = arg;

	if (e->code != CLOUD_OK) {
		char *t = cloud_error_text(e);

		log_warnx("cannot list the zones of %s (%s); using %s alone", d->cfg->region, t,
		    d->cfg->zone);
		free(t);
		n = 0;
	}
	str_list_free(d->zones);
	d->zones = zones_of(d->cfg, zones, n);
	if (d->manager == NULL) {
		start_manager(d);
		return;
	}
	manager_set_zones(d->manager, (const char *const *)d->zones);
	log_info("zones now %s%s%s", d->zones[0], d->zones[1] ? " then " : "",
	    d->zones[1] ? d->zones[1] : "");
}

static void
resolve_zones(struct daemon *d)
{
	if (*d->cfg->fallback_zones != '\0') {
		on_zones(&(struct cloud_error){.code = CLOUD_OK}, NULL, 0, d);
		return;
	}
	if (d->conn.cloud->ops->zones(
	        d->conn.cloud, d->cfg->region, clock_now_ms(d->o.clock) + 60000, on_zones, d) != 0)
		on_zones(&(struct cloud_error){.code = CLOUD_INVALID, .message = "not a region"},
		    NULL, 0, d);
}

static int
catalog_take(struct daemon *d, json_t *doc, const char *source, char **cause)
{
	json_t *skus = json_object_get(doc, "skus");

	if (price_catalog_check(skus, cause) != 0) {
		json_decref(doc);
		return -EINVAL;
	}
	json_decref(d->catalog);
	/* Kept for as long as the daemon runs: what pricing reads of it. */
	d->catalog = jx_pack("{s:o}", "skus", price_catalog_compact(skus));
	json_decref(doc);
	free(d->catalog_source);
	d->catalog_source = xstrdup(source);
	return 0;
}

/* The catalog the configuration names, else the last refreshed, else the one we ship. */
static int
catalog_load(struct daemon *d, const struct config *cfg, char **cause)
{
	const char *file = cfg->price_catalog;
	char *path = *file != '\0' ? xstrdup(file) : xasprintf("%s/prices.json", cfg->state_dir);
	char *text = NULL, *why = NULL, *source;
	json_t *doc;
	int error = read_file(path, CATALOG_MAX, &text, NULL);

	if (error == 0 && jx_parse(text, strlen(text), &doc, &why) == 0) {
		source = xasprintf("prices from %s", path);
		error = catalog_take(d, doc, source, &why);
		free(source);
	} else if (error == 0) {
		error = -EINVAL;
	}
	if (error != 0 && *file != '\0') {
		*cause = xasprintf("pricing.catalog '%s' cannot be used: %s", path,
		    why != NULL ? why : strerror(-error));
		free(why);
		free(text);
		free(path);
		return -EINVAL;
	}
	if (error != 0 && error != -ENOENT)
		log_warnx(
		    "the prices last refreshed, in %s, cannot be used (%s); using the shipped "
		    "ones",
		    path, why != NULL ? why : strerror(-error));
	free(why);
	why = NULL;
	if (error != 0) {
		if (jx_parse(gce_prices_json, gce_prices_json_len, &doc, &why) != 0 ||
		    catalog_take(d, doc, "the shipped prices", &why) != 0)
			fatalx("the shipped price catalog is broken: %s", why);
	}
	free(text);
	free(path);
	return 0;
}

/*
 * The refresh is over: every page in hand (why NULL) is the catalog from now
 * on, and kept for the next start; else the catalog in hand goes on.
 */
static void
catalog_fetched(struct daemon *d, const char *why)
{
	char *cause = NULL, *path = xasprintf("%s/prices.json", d->cfg->state_dir);
	json_t *doc = jx_pack("{s:o}", "skus", d->fetched);

	d->fetched = NULL;
	if (why == NULL &&
	    catalog_take(d, json_incref(doc), "prices from the Cloud Billing API", &cause) == 0) {
		char *text = json_dumps(doc, JSON_INDENT(1));

		if (write_file_atomic(path, text, strlen(text), 0644) != 0)
			log_warnx("cannot keep the prices in %s", path);
		log_info("prices refreshed from the Cloud Billing API (%zu SKUs priced from, in %d "
		         "pages)",
		    json_array_size(json_object_get(doc, "skus")), d->pages);
		free(text);
	} else {
		log_warnx("cannot refresh prices from the Cloud Billing API (%s); using %s",
		    why != NULL ? why : cause, d->catalog_source);
	}
	json_decref(doc);
	free(cause);
	free(path);
	free(d->page_token);
	d->page_token = NULL;
	d->pages = 0;
	resolve_zones(d);
}

static void ask_catalog(struct daemon *);

/* A page of the catalog: of its SKUs, those a VM is priced from are kept; then the next. */
static void
on_catalog(const struct http_response *r, void *arg)
{
	struct daemon *d = arg;
	json_t *doc = NULL, *page;
	const char *next;
	char *cause = NULL;

	if (r->error != 0 || r->status != 200 || jx_parse(r->body, r->len, &doc, &cause) != 0 ||
	    !json_is_array(json_object_get(doc, "skus"))) {
		catalog_fetched(d,
		    r->error               ? r->error_text
		        : cause != NULL    ? cause
		        : r->status != 200 ? "an answer that is not 200 OK"
		                           : "an answer without a list of SKUs");
		goto out;
	}
	page = price_catalog_compact(json_object_get(doc, "skus"));
	json_array_extend(d->fetched, page);
	json_decref(page);
	d->pages++;
	next = jx_str(doc, "nextPageToken");
	if (next == NULL || *next == '\0') {
		catalog_fetched(d, NULL);
	} else if (d->pages == CATALOG_PAGES) {
		char *why = xasprintf("the catalog has more than %d pages", CATALOG_PAGES);

		catalog_fetched(d, why);
		free(why);
	} else {
		free(d->page_token);
		d->page_token = url_encode(next); /* the server's text, in our URL */
		ask_catalog(d);
	}
out:
	json_decref(doc);
	free(cause);
}

static void
on_catalog_token(int error, const char *token, const char *cause, void *arg)
{
	struct daemon *d = arg;
	char *url, auth[AUTH_HEADER_SIZE];
	const char *headers[] = {auth, NULL};
	struct http_request req = {.method = "GET",
	    .headers = headers,
	    .timeout_ms = CATALOG_TIMEOUT_MS,
	    .max_response = CATALOG_MAX};

	if (error != 0) {
		char *why = xasprintf("no token: %s", cause);

		catalog_fetched(d, why);
		free(why);
		return;
	}
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
	url = xasprintf("%sservices/%s/skus?pageSize=5000%s%s", d->cfg->billing_endpoint,
	    COMPUTE_SERVICE, d->page_token != NULL ? "&pageToken=" : "",
	    d->page_token != NULL ? d->page_token : "");
	req.url = url;
	if (http_send(d->conn.http, &req, on_catalog, d, NULL) != 0)
		catalog_fetched(d, "the billing endpoint is not a URL spillway can call");
	explicit_bzero(auth, sizeof auth);
	free(url);
}

/* The next page, with a token as fresh as the last (a refresh of many pages may outlive one). */
static void
ask_catalog(struct daemon *d)
{
	const char *token;

	if ((token = auth_cached(d->conn.auth)) != NULL)
		on_catalog_token(0, token, NULL, d);
	else
		auth_refresh(d->conn.auth, clock_now_ms(d->o.clock) + CATALOG_TIMEOUT_MS,
		    on_catalog_token, d);
}

static void
refresh_catalog(struct daemon *d)
{
	if (*d->cfg->price_catalog != '\0') {
		resolve_zones(d);
		return;
	}
	d->fetched = json_array();
	ask_catalog(d);
}

/* --- a Compute Engine other than the configured one --- */

static void
aim(struct config *cfg, const struct daemon_cloud *at)
{
	cfg->compute_endpoint = at->compute_endpoint;
	cfg->billing_endpoint = at->billing_endpoint;
	cfg->project = at->project;
}

/* The configuration and the environment, but with its endpoints and its key. */
static void
point_at(struct daemon *d)
{
	char *const *src = d->o.env != NULL ? d->o.env : environ;
	size_t n = 0;

	for (; src[n] != NULL; n++)
		;
	d->env = xcalloc(n + 2, sizeof *d->env);
	n = 0;
	for (char *const *p = src; *p != NULL; p++)
		if (strncmp(*p, "GOOGLE_APPLICATION_CREDENTIALS=", 31) != 0)
			d->env[n++] = xstrdup(*p);
	d->env[n] = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s", d->o.cloud_at->credentials);
	d->at_cfg = *d->cfg;
	aim(&d->at_cfg, d->o.cloud_at);
	d->cfg = &d->at_cfg;
}

/* --- life --- */

/* What a VM is given must fit Compute Engine's metadata, with what a program may add. */
static int
metadata_fits(const struct config *cfg, char **cause)
{
	char why[512];
	int error;

	/* the most a program may add: what the ledger keeps of it */
	if ((error = startup_check(
	         cfg, sizeof((struct vm_record *)NULL)->metadata, why, sizeof why)) != 0)
		*cause = xstrdup(why);
	return error;
}

int
daemon_new(uv_loop_t *loop, const struct daemon_opts *o, struct daemon **out, char **cause)
{
	struct daemon *d = xcalloc(1, sizeof *d);
	int error;

	d->loop = loop;
	d->o = *o;
	d->cfg = o->cfg;
	d->start_error = 1;
	uv_timer_init(loop, &d->notify);
	d->notify.data = d;
	if ((error = ledger_open(d->cfg->state_dir, &d->ledger, cause)) != 0 ||
	    (error = ledger_check(d->ledger, cause)) != 0)
		goto fail;
	if ((error = agent_key_load(d->cfg->state_dir, d->agent_key, cause)) != 0 ||
	    (error = agent_identity_load(d->cfg->state_dir, &d->identity, cause)) != 0 ||
	    (error = tls_ctx_new(
	         false, d->identity.cert_pem, d->identity.key_pem, NULL, &d->tls, cause)) != 0 ||
	    (error = metadata_fits(d->cfg, cause)) != 0)
		goto fail;
	/* A channel kept to each VM's agent holds a descriptor: 1,024 would be too few for some. */
	raise_fd_limit(DAEMON_FDS);
	if (*d->cfg->owner != '\0')
		snprintf(d->owner, sizeof d->owner, "%s", d->cfg->owner);
	else
		daemon_owner_label(d->cfg->state_dir, d->owner);
	if (o->replay != NULL && (error = trace_load(o->replay, &d->trace, cause)) != 0)
		goto fail;
	if ((error = catalog_load(d, d->cfg, cause)) != 0)
		goto fail;
	if (o->cloud_at != NULL)
		point_at(d);
	if ((error = cloud_connect(
	         loop, o->clock, d->cfg, d->env != NULL ? d->env : o->env, &d->conn, cause)) != 0)
		goto fail;
	{
		struct router_opts ro = {.clock = o->clock,
		    .tls = d->tls,
		    .unreachable = on_unreachable,
		    .drained = on_drained,
		    .local_drained = on_local_drained,
		    .arg = d};
		struct offload_opts oo = {.clock = o->clock,
		    .state_dir = d->cfg->state_dir,
		    .ledger = d->ledger,
		    .http = d->conn.http};

		/* Not for a CLI without a daemon: it only does what it is asked. */
		if (!o->passive && (error = router_new(loop, d->cfg, &ro, &d->router, cause)) != 0)
			goto fail;
		oo.router = d->router;
		if (!o->passive &&
		    (error = offload_new(loop, d->cfg, &oo, &d->offload, cause)) != 0)
			goto fail;
	}
	d->hooks = hooks_new(loop, (int64_t)(d->cfg->hook_timeout_s * 1000));
	if (o->hook_output != NULL)
		hooks_on_output(d->hooks, o->hook_output, o->event_arg);
	refresh_catalog(d);
	*out = d;
	return 0;
fail:
	daemon_free(d);
	return error;
}

static void
on_stopped(void *arg)
{
	struct daemon *d = arg;

	d->stopped = true;
	uv_timer_start(&d->notify, on_notify, 0, 0);
}

void
daemon_stop(struct daemon *d, void (*done)(void *), void *arg)
{
	d->done = done;
	d->done_arg = arg;
	if (d->monitor != NULL) {
		monitor_free(d->monitor);
		d->monitor = NULL;
	}
	if (d->manager != NULL)
		manager_shutdown(d->manager, on_stopped, d);
	else
		on_stopped(d);
}

/*
 * A reload must not lose sight of a VM: another project or endpoint, or
 * zones that leave one out, would make it look deleted. Refused while so.
 */
static int
keeps_sight(struct daemon *d, const struct config *old, const struct config *cfg, char **cause)
{
	char vm[160];
	char **zones = NULL;
	int error = 0;

	if (d->manager == NULL)
		return 0;
	if (strcmp(old->project, cfg->project) != 0 ||
	    strcmp(old->compute_endpoint, cfg->compute_endpoint) != 0 ||
	    strcmp(old->region, cfg->region) != 0) {
		if (manager_alive_outside(d->manager, NULL, vm, sizeof vm))
			*cause =
			    xasprintf("%s cannot change while VMs run where it points now, such as "
			              "%s: terminate them first (spillway terminate --all)",
			        strcmp(old->project, cfg->project) != 0 ? "gcp.project"
			            : strcmp(old->region, cfg->region) != 0
			            ? "gcp.region"
			            : "spillway.compute_endpoint",
			        vm);
	} else if (*cfg->fallback_zones != '\0' &&
	    manager_alive_outside(
	        d->manager, (const char *const *)(zones = zones_of(cfg, NULL, 0)), vm, sizeof vm)) {
		*cause = xasprintf("the new zones leave out %s, which runs: keep its zone in "
		                   "gcp.fallback_zones, or terminate it first",
		    vm);
	}
	str_list_free(zones);
	if (*cause != NULL)
		error = -EBUSY;
	return error;
}

int
daemon_reload(struct daemon *d, const struct config *cfg, char **cause)
{
	struct config old = *d->cfg; /* its strings live on: the caller keeps the one before */
	size_t changed[256], n, k;
	bool components;
	struct buf now = BUF_INIT(8192), later = BUF_INIT(8192);
	int error;

	*cause = NULL;
	if ((error = metadata_fits(cfg, cause)) != 0)
		return error;
	if (d->o.cloud_at != NULL) {
		/* The cloud it was pointed at stays where it is. */
		d->at_cfg_next = *cfg;
		aim(&d->at_cfg_next, d->o.cloud_at);
		cfg = &d->at_cfg_next;
	}
	if ((error = keeps_sight(d, &old, cfg, cause)) != 0)
		return error;
	n = config_diff(&old, cfg, changed, sizeof changed / sizeof changed[0], &components);
	for (size_t i = 0; i < n; i++)
		buf_printf(config_key_restart(changed[i]) ? &later : &now, "%s%s",
		    (config_key_restart(changed[i]) ? later.len : now.len) ? ", " : "",
		    config_key_name(changed[i]));
	/* A catalog named anew is loaded before anything changes: one that cannot be is refused. */
	if (strcmp(old.price_catalog, cfg->price_catalog) != 0 &&
	    (error = catalog_load(d, cfg, cause)) != 0)
		goto out;
	if (d->o.cloud_at != NULL) {
		d->at_cfg = d->at_cfg_next;
		cfg = &d->at_cfg;
	}
	d->cfg = cfg;
	if (d->manager != NULL) {
		manager_set_config(d->manager, cfg);
		if (strcmp(old.price_catalog, cfg->price_catalog) != 0)
			manager_set_catalog(
			    d->manager, json_object_get(d->catalog, "skus"), d->catalog_source);
	}
	/* The cloud: endpoint, project, retries. */
	if ((error = cloud_reconfigure(&d->conn, cfg, cause)) != 0)
		log_warnx("the cloud's settings stay as they were: %s", *cause);
	free(*cause);
	*cause = NULL;
	error = 0;
	if (d->started &&
	    (strcmp(old.zone, cfg->zone) != 0 ||
	        strcmp(old.fallback_zones, cfg->fallback_zones) != 0 ||
	        strcmp(old.region, cfg->region) != 0))
		resolve_zones(d);
	hooks_set_timeout(d->hooks, (int64_t)(cfg->hook_timeout_s * 1000));
	if (d->router != NULL && router_set_config(d->router, cfg, cause) != 0) {
		log_warnx("the routes: %s (the others apply)", *cause);
		free(*cause);
		*cause = NULL;
	}
	if (d->offload != NULL)
		offload_set_config(d->offload, cfg);
	if (d->monitor != NULL) {
		struct monitor_opts o;

		monitor_opts_from_config(&o, cfg);
		monitor_reconfigure(d->monitor, &o);
	}
	for (k = 0; k < n; k++)
		if (strcmp(config_key_name(changed[k]), "spillway.log_level") == 0) {
			enum log_level level;

			if (log_parse_level(cfg->log_level, &level) == 0)
				log_set_level(level);
		}
	if (components)
		buf_printf(&now, "%sthe components", now.len ? ", " : "");
	if (now.len == 0 && later.len == 0)
		log_info("configuration reloaded: nothing changed");
	else if (now.len > 0)
		log_info("configuration reloaded: %s apply now", buf_str(&now));
	if (later.len > 0)
		log_warnx(
		    "configuration reloaded, but these wait for a restart (spillway run reads "
		    "them at start only): %s",
		    buf_str(&later));
out:
	buf_release(&now);
	buf_release(&later);
	return error;
}

static void
daemon_release(uv_handle_t *h)
{
	free(h->data);
}

/* Everything now; the memory once libuv lets go of the timer (the loop runs on). */
void
daemon_free(struct daemon *d)
{
	if (d == NULL)
		return;
	uv_timer_stop(&d->notify);
	free(d->start_cause);
	monitor_free(d->monitor);
	/*
	 * The copies first: their health calls are the cloud's client's. What
	 * they run is let be (a copy serves with or without spillway).
	 */
	offload_free(d->offload);
	/* The provider next: its calls in flight are cancelled, so the manager hears none. */
	cloud_disconnect(&d->conn);
	manager_free(d->manager);
	router_free(d->router);
	hooks_free(d->hooks);
	ledger_close(d->ledger);
	trace_free(&d->trace);
	explicit_bzero(d->agent_key, sizeof d->agent_key);
	agent_identity_release(&d->identity);
	tls_ctx_free(d->tls);
	json_decref(d->catalog);
	free(d->catalog_source);
	json_decref(d->fetched); /* a refresh cut short */
	free(d->page_token);
	str_list_free(d->zones);
	str_list_free(d->env);
	manager_listeners_free(&d->listeners);
	uv_close((uv_handle_t *)&d->notify, daemon_release);
}

struct manager *
daemon_manager(struct daemon *d)
{
	return d->manager;
}

struct router *
daemon_router(struct daemon *d)
{
	return d->router;
}

struct offload *
daemon_offload(struct daemon *d)
{
	return d->offload;
}

struct ledger *
daemon_ledger(struct daemon *d)
{
	return d->ledger;
}

const char *
daemon_owner(const struct daemon *d)
{
	return d->owner;
}
