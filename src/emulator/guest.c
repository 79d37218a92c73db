/*
 * Guests: the backend that the startup script would start on a real VM,
 * simulated. Each instance gets its own loopback address as natIP when it is
 * STAGING (the socket is bound then, so the address is reserved, but refuses
 * connections until the instance is RUNNING, as a booting VM does). From
 * RUNNING, GET /health answers 503 "starting" for guest_boot_ms, then 200 with
 * the components from the instance's "spillway-components" metadata and the
 * time of its last activity (any other request counts as activity).
 *
 * Beside it, on the agent port, the watchdog agent the startup script would
 * start (data/spillway-agent.py), in TLS as the real one (front.c): GET
 * /spillway/status, and POST /spillway/lease signed with the secret in the
 * instance's "spillway-agent-secret" metadata (docs/startup.md), checked
 * here by its own HMAC, and connections passed to the backend. Behind the
 * front, the agent's API is plain HTTP on the guest's address and a port of
 * its own (the real agent's loopback). Renewals are counted for the admin
 * API; the self-deletion of a VM whose lease ran out is the real agent's,
 * tested with it.
 *
 * The install (the script's packages, fetch, dependencies and prefetch)
 * takes install_ms before the backend starts, unless the boot disk holds it
 * already (holds_get: an image baked with the same spillway-install-hash).
 * A bake's guest (spillway-mode "bake") installs, says "baked" and starts
 * no backend. When the guest stops, its disk holds what it installed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "emulator/internal.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define ADDRESS_TRIES 512
#define LEASE_SKEW_S  300

struct guest {
	struct inst *inst;
	int fd, agent_fd;              /* reserved, not yet serving */
	struct httpd *http;            /* serving the backend's port and the agent's API */
	struct front *front;           /* the agent's port: TLS */
	struct programs *programs;     /* or the real agent there (opts.guest_agent) */
	char host[32], agent_host[32]; /* "127.a.b.c:port", for the request log */
	long renewals;
	int64_t renewed_ms;
	int64_t lease_time; /* the last renewal's signed time: never earlier */
	int64_t running_ms;
	int64_t healthy_ms;
	int64_t dies_ms; /* 0: never */
	int64_t activity_ms;
	int64_t installed_ms; /* its install is done then (INT64_MAX: nothing to install) */
	bool bake;            /* a bake's VM: it installs and starts nothing */
	int forced;           /* -1 none, 0 unhealthy, 1 healthy */
};

/* Said once: the guests from here on run without an address. */
static void
fds_out(struct inst *inst)
{
	struct emulator *emu = inst->emu;

	if (emu->fds_out_said)
		return;
	log_warnx("emulator: out of file descriptors (the limit is %ld; each guest holds 3, and 3 "
	          "more per connection to its agent): "
	          "%s and the VMs after it run without a guest, or an address; raise the hard "
	          "limit (ulimit -Hn) to serve more",
	    emu->fd_limit, inst->name);
	emu->fds_out_said = true;
}

int
guest_reserve(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	struct guest *g;
	char ip[16], *cause = NULL;
	int fd = -EADDRINUSE, afd = -1;

	for (int tries = 0; tries < ADDRESS_TRIES && fd == -EADDRINUSE; tries++) {
		unsigned n = emu->next_ip++;

		if ((n & 255) == 0 || (n & 255) == 255 || (n >> 8) > 255) {
			if ((n >> 8) > 255)
				emu->next_ip = 257;
			continue;
		}
		snprintf(ip, sizeof ip, "127.%u.%u.%u", emu->ip_net, (n >> 8) & 255, n & 255);
		free(cause);
		cause = NULL;
		if ((fd = httpd_bind(ip, emu->opts.guest_port, &cause)) < 0)
			continue;
		/* The agent's port on the same address, or the next address. */
		free(cause);
		cause = NULL;
		if ((afd = httpd_bind(ip, emu->opts.agent_port, &cause)) < 0) {
			close(fd);
			fd = afd;
		}
	}
	if (fd == -EMFILE || fd == -ENFILE) {
		fds_out(inst);
	} else if (fd < 0) {
		log_warnx("emulator: no address for the guest of %s: %s", inst->name,
		    cause ? cause : "all tried addresses are in use");
	}
	if (fd < 0) {
		free(cause);
		return fd;
	}
	free(cause);
	g = xcalloc(1, sizeof *g);
	g->inst = inst;
	g->fd = fd;
	g->agent_fd = afd;
	g->forced = -1;
	snprintf(g->host, sizeof g->host, "%s:%d", ip, emu->opts.guest_port);
	snprintf(g->agent_host, sizeof g->agent_host, "%s:%d", ip, emu->opts.agent_port);
	snprintf(inst->nat_ip, sizeof inst->nat_ip, "%s", ip);
	inst->guest = g;
	return 0;
}

const char *
inst_attribute(const struct inst *inst, const char *key)
{
	json_t *items = jx_get(inst->res, "metadata.items"), *it;
	size_t i;

	json_array_foreach (items, i, it)
		if (strcmp(or_default(jx_str(it, "key"), ""), key) == 0)
			return or_default(jx_str(it, "value"), "");
	return NULL;
}

static json_t *
components(const struct inst *inst)
{
	char **names =
	    str_split(or_default(inst_attribute(inst, "spillway-components"), ""), ',', NULL);
	json_t *list = json_array();

	for (char **c = names; *c != NULL; c++)
		if (*str_trim(*c) != '\0')
			json_array_append_new(list, json_string(str_trim(*c)));
	str_list_free(names);
	return list;
}

/* The selfLink of an instance's boot disk, or NULL. */
static const char *
boot_disk(const struct inst *inst)
{
	return jx_str(inst->res, "disks.0.source");
}

/*
 * How long its install takes from RUNNING: nothing when there is nothing to
 * install, or the boot disk holds it (a baked image), or its memory was kept.
 */
static int64_t
install_ms(struct inst *inst)
{
	const char *want = inst_attribute(inst, "spillway-install-hash");

	if (want == NULL || inst->resuming || str_eq(holds_get(inst->emu, boot_disk(inst)), want))
		return 0;
	return inst->emu->opts.install_ms;
}

/* The backend's state now: "ok", "starting" or "unhealthy", with its HTTP status. */
static const char *
backend_state(const struct guest *g, int64_t now, unsigned *status)
{
	if (g->forced == 0 || (g->forced < 0 && g->dies_ms > 0 && now >= g->dies_ms)) {
		*status = 500;
		return "unhealthy";
	}
	if (g->forced == 1 || now >= g->healthy_ms) {
		*status = 200;
		return "ok";
	}
	*status = 503;
	return "starting";
}

static void
on_guest_request(struct httpd_req *req, void *arg)
{
	struct guest *g = arg;
	struct inst *inst = g->inst;
	struct emulator *emu = inst->emu;
	struct rq *rq = rq_new(emu, req, "guest");
	int64_t now = emu_now_ms(emu);
	const char *state;
	unsigned status;
	char last[RFC3339_LEN];

	rq->host = g->host;
	if (strcmp(httpd_req_path(req), "/health") != 0) {
		g->activity_ms = now;
		emu_reply_json(rq, 200,
		    jx_pack(
		        "{s:b, s:s, s:s}", "ok", true, "instance", inst->name, "served_by", "vm"));
		return;
	}
	state = backend_state(g, now, &status);
	emu_time(emu, g->activity_ms, last);
	emu_reply_json(rq, status,
	    jx_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:I, s:b}", "status", state, "instance",
	        inst->name, "zone", inst->zone->name, "components", components(inst),
	        "last_activity", last, "idle_seconds", (json_int_t)((now - g->activity_ms) / 1000),
	        "uptime_seconds", (json_int_t)((now - g->running_ms) / 1000), "preempted",
	        inst->preempted));
}

/* "SpillwayLease TIME:HEX", HEX = HMAC-SHA256(secret, "NAME\nTIME"), TIME near ours. */
static bool
lease_valid(struct guest *g, const char *auth)
{
	const char *secret = inst_attribute(g->inst, "spillway-agent-secret"), *colon;
	unsigned char md[EVP_MAX_MD_SIZE];
	char want[65], *msg;
	unsigned n = 0;
	int64_t t;
	bool ok;

	if (secret == NULL || *secret == '\0' || auth == NULL ||
	    !str_prefix(auth, "SpillwayLease ") || (colon = strchr(auth, ':')) == NULL ||
	    strlen(colon + 1) != 64)
		return false;
	{
		char *stamp = xstrndup(auth + 14, (size_t)(colon - auth - 14));

		ok = parse_int64(stamp, 0, INT64_MAX, &t) == 0;
		free(stamp);
	}
	if (!ok || llabs(t - (int64_t)time(NULL)) > LEASE_SKEW_S || t < g->lease_time)
		return false;
	msg = xasprintf("%s\n%" PRId64, g->inst->name, t);
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, strlen(msg), md,
	    &n);
	free(msg);
	for (unsigned i = 0; i < 32; i++)
		snprintf(want + 2 * i, 3, "%02x", md[i]);
	if (CRYPTO_memcmp(want, colon + 1, 64) != 0)
		return false;
	g->lease_time = t;
	return true;
}

static void
on_agent_request(struct httpd_req *req, void *arg)
{
	struct guest *g = arg;
	struct inst *inst = g->inst;
	struct emulator *emu = inst->emu;
	struct rq *rq = rq_new(emu, req, "guest");
	const char *path = httpd_req_path(req), *method = httpd_req_method(req);
	const char *lease_text = inst_attribute(inst, "spillway-lease-seconds");
	int64_t now = emu_now_ms(emu), lease = 1200;
	unsigned status;

	rq->host = g->agent_host;
	if (lease_text != NULL)
		parse_int64(lease_text, 1, INT64_MAX / 1000, &lease);
	if (strcmp(path, "/spillway/lease") == 0 && strcmp(method, "POST") == 0) {
		if (!lease_valid(g, httpd_req_header(req, "Authorization"))) {
			emu_reply_json(rq, 401,
			    jx_pack(
			        "{s:s}", "error", "the lease is not signed with this VM's secret"));
			return;
		}
		g->renewals++;
		g->renewed_ms = now;
	} else if (strcmp(path, "/spillway/status") != 0 || strcmp(method, "GET") != 0) {
		emu_reply_json(rq, 404, jx_pack("{s:s}", "error", "no such path"));
		return;
	}
	backend_state(g, now, &status);
	{
		int64_t since = g->renewed_ms > 0 ? g->renewed_ms : g->running_ms;
		int64_t left = lease - (now - since) / 1000;
		/* The install moves until the backend is up; a guest never healthy is stuck. */
		bool up = now >= g->healthy_ms, baked = g->bake && now >= g->installed_ms;
		int64_t moved = baked            ? g->installed_ms
		    : g->bake                    ? now
		    : g->healthy_ms == INT64_MAX ? g->running_ms
		    : up                         ? g->healthy_ms
		                                 : now;
		const char *installed = now >= g->installed_ms
		    ? inst_attribute(inst, "spillway-install-hash")
		    : holds_get(emu, boot_disk(inst));

		emu_reply_json(rq, 200,
		    jx_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:b, s:{s:s, s:I}, s:s?}",
		        "status",
		        inst->preempted     ? "preempted"
		            : status == 200 ? "ok"
		                            : "unhealthy",
		        "instance", inst->name, "backend_healthy",
		        status == 200 && !inst->preempted, "connections",
		        (json_int_t)front_forwarding(g->front), "idle_seconds",
		        (json_int_t)((now - g->activity_ms) / 1000), "uptime_seconds",
		        (json_int_t)((now - g->running_ms) / 1000), "lease_seconds",
		        (json_int_t)lease, "lease_left_seconds", (json_int_t)(left > 0 ? left : 0),
		        "preempted", inst->preempted, "boot", "step",
		        baked    ? "baked"
		            : up ? "ready"
		                 : "dependencies",
		        "updated", (json_int_t)(moved / 1000), "installed", installed));
	}
}

json_t *
guest_lease(const struct inst *inst)
{
	const struct guest *g = inst->guest;
	char last[RFC3339_LEN];

	if (g == NULL)
		return json_null();
	if (g->renewed_ms == 0)
		return jx_pack("{s:I, s:n}", "renewals", (json_int_t)g->renewals, "last");
	emu_time(inst->emu, g->renewed_ms, last);
	return jx_pack("{s:I, s:s}", "renewals", (json_int_t)g->renewals, "last", last);
}

const char *
guest_root(const struct inst *inst)
{
	return inst->guest != NULL ? programs_root(inst->guest->programs) : NULL;
}

/* The backend's port or the agent's API: the one server serves both. */
static void
on_request(struct httpd_req *req, void *arg)
{
	if (httpd_req_port(req) == 0) /* from the front (httpd_adopt) */
		on_agent_request(req, arg);
	else
		on_guest_request(req, arg);
}

/*
 * The real agent on the agent's port (the port let go for it to bind), and the
 * backend: the command's, or the built-in one on the reserved port.
 */
static int
programs_ready(
    struct inst *inst, struct guest *g, int fd, int afd, const struct httpd_opts *ho, char **cause)
{
	struct emulator *emu = inst->emu;
	int error = 0;

	close(afd);
	if (emu->opts.guest_backend != NULL)
		close(fd);
	else if ((error = httpd_new_fd(emu->loop, fd, ho, on_request, g, &g->http, cause)) != 0)
		return error;
	return programs_start(inst, &g->programs, cause);
}

void
guest_start(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	struct guest *g = inst->guest;
	/* As many connections as a backend behind spillway's routes is asked to hold (1,000). */
	struct httpd_opts ho = {.max_body = 64 * 1024, .conn_timeout_s = 30, .conn_limit = 1024};
	char *cause = NULL;
	int fd, afd, error;

	if (g == NULL)
		return;
	/* Each fd is the server's, the front's or the programs' now, served or closed. */
	fd = g->fd;
	afd = g->agent_fd;
	g->fd = g->agent_fd = -1;
	if (emu->opts.guest_agent != NULL) {
		error = programs_ready(inst, g, fd, afd, &ho, &cause);
		goto started;
	}
	/*
	 * One server for the backend's port and the agent's API (reached from
	 * the front alone): 3 descriptors a guest, and 3 more while a client
	 * holds a channel to its agent (its connection, and the socketpair behind).
	 */
	if ((error = httpd_new_fd(emu->loop, fd, &ho, on_request, g, &g->http, &cause)) != 0)
		close(afd);
	else
		error = front_new(inst, afd, emu->opts.guest_port, g->http, &g->front, &cause);
started:
	if (error == -EMFILE || error == -ENFILE)
		fds_out(inst);
	else if (error != 0)
		log_warnx(
		    "emulator: the guest of %s cannot serve on %s: %s", inst->name, g->host, cause);
	if (error != 0) {
		free(cause);
		return;
	}
	g->running_ms = g->activity_ms = emu_now_ms(emu);
	g->bake = str_eq(inst_attribute(inst, "spillway-mode"), "bake");
	g->installed_ms = g->running_ms + install_ms(inst);
	g->healthy_ms =
	    (emu->faults.guest_unhealthy > 0 && emu_rand(emu) < emu->faults.guest_unhealthy) ||
	        g->bake
	    ? INT64_MAX
	    /* a resumed VM kept its memory: its backend is up at once */
	    : inst->resuming ? g->running_ms
	                     : g->installed_ms + emu->opts.guest_boot_ms;
	/* One that never turns healthy cannot die later. */
	if (g->healthy_ms != INT64_MAX && emu->faults.guest_die > 0 &&
	    emu_rand(emu) < emu->faults.guest_die)
		g->dies_ms = g->healthy_ms + 1 +
		    (int64_t)(emu_rand(emu) * (double)emu->faults.guest_die_within_s * 1000);
}

void
guest_stop(struct inst *inst)
{
	struct guest *g = inst->guest;
	const char *want = inst_attribute(inst, "spillway-install-hash");
	json_t *ac;

	if (g == NULL)
		return;
	if (want != NULL && emu_now_ms(inst->emu) >= g->installed_ms)
		holds_set(inst->emu, boot_disk(inst), want);
	if (g->fd >= 0)
		close(g->fd);
	if (g->agent_fd >= 0)
		close(g->agent_fd);
	front_free(g->front);
	programs_stop(g->programs);
	httpd_free(g->http);
	free(g);
	inst->guest = NULL;
	/* An ephemeral external address goes with the running VM. */
	inst->nat_ip[0] = '\0';
	if ((ac = jx_get(inst->res, "networkInterfaces.0.accessConfigs.0")) != NULL)
		json_object_del(ac, "natIP");
	inst_changed(inst);
}

int
guest_set_agent(struct inst *inst, const char *mode)
{
	static const char *modes[] = {"ok", "stall", "other-key", "reset"};

	if (inst->guest != NULL && inst->guest->programs != NULL)
		return -ENOTSUP;
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if (strcmp(mode, modes[i]) == 0) {
			if (inst->guest != NULL)
				front_set_mode(inst->guest->front, (enum front_mode)i);
			return 0;
		}
	return -EINVAL;
}

void
guest_set(struct inst *inst, int healthy, bool touch)
{
	struct guest *g = inst->guest;

	if (g == NULL)
		return;
	if (healthy >= 0)
		g->forced = healthy;
	if (touch)
		g->activity_ms = emu_now_ms(inst->emu);
}
