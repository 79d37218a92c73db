/*
 * Guests: the backend that the startup script would start on a real VM,
 * simulated. Each instance gets its own loopback address as natIP when it is
 * STAGING (the socket is bound then, so the address is reserved, but refuses
 * connections until the instance is RUNNING, as a booting VM does). From
 * RUNNING, GET /health answers 503 "starting" for guest_boot_ms, then 200 with
 * the components from the instance's "spillway-components" metadata and the
 * time of its last activity (any other request counts as activity).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emulator/internal.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define ADDRESS_TRIES 512

struct guest {
	struct inst *inst;
	int fd;             /* reserved, not yet serving */
	struct httpd *http; /* serving */
	char host[32];      /* "127.a.b.c:port", for the request log */
	int64_t running_ms;
	int64_t healthy_ms;
	int64_t dies_ms; /* 0: never */
	int64_t activity_ms;
	int forced; /* -1 none, 0 unhealthy, 1 healthy */
};

int
guest_reserve(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	struct guest *g;
	char ip[16], *cause = NULL;
	int fd = -EADDRINUSE;

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
		fd = httpd_bind(ip, emu->opts.guest_port, &cause);
	}
	if (fd < 0) {
		log_warnx("emulator: no address for the guest of %s: %s", inst->name,
		    cause ? cause : "all tried addresses are in use");
		free(cause);
		return fd;
	}
	g = xcalloc(1, sizeof *g);
	g->inst = inst;
	g->fd = fd;
	g->forced = -1;
	snprintf(g->host, sizeof g->host, "%s:%d", ip, emu->opts.guest_port);
	snprintf(inst->nat_ip, sizeof inst->nat_ip, "%s", ip);
	inst->guest = g;
	return 0;
}

static json_t *
components(const struct inst *inst)
{
	json_t *items = jx_get(inst->res, "metadata.items"), *it, *list = json_array();
	size_t i;

	json_array_foreach (items, i, it) {
		if (strcmp(jx_str(it, "key"), "spillway-components") == 0) {
			char **names = str_split(or_default(jx_str(it, "value"), ""), ',', NULL);

			for (char **c = names; *c != NULL; c++)
				json_array_append_new(list, json_string(str_trim(*c)));
			str_list_free(names);
		}
	}
	return list;
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
		emu_reply_json(rq, 200, jx_pack("{s:b, s:s}", "ok", true, "instance", inst->name));
		return;
	}
	if (g->forced == 0 || (g->forced < 0 && g->dies_ms > 0 && now >= g->dies_ms)) {
		state = "unhealthy";
		status = 500;
	} else if (g->forced == 1 || now >= g->healthy_ms) {
		state = "ok";
		status = 200;
	} else {
		state = "starting";
		status = 503;
	}
	emu_time(emu, g->activity_ms, last);
	emu_reply_json(rq, status,
	    jx_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:I, s:b}", "status", state, "instance",
	        inst->name, "zone", inst->zone->name, "components", components(inst),
	        "last_activity", last, "idle_seconds", (json_int_t)((now - g->activity_ms) / 1000),
	        "uptime_seconds", (json_int_t)((now - g->running_ms) / 1000), "preempted",
	        inst->preempted));
}

void
guest_start(struct inst *inst)
{
	struct emulator *emu = inst->emu;
	struct guest *g = inst->guest;
	struct httpd_opts ho = {.max_body = 64 * 1024, .conn_timeout_s = 30, .conn_limit = 256};
	char *cause = NULL;
	int fd;

	if (g == NULL)
		return;
	fd = g->fd;
	g->fd = -1;
	if (httpd_new_fd(emu->loop, fd, &ho, on_guest_request, g, &g->http, &cause) != 0) {
		log_warnx(
		    "emulator: the guest of %s cannot serve on %s: %s", inst->name, g->host, cause);
		free(cause);
		return;
	}
	g->running_ms = g->activity_ms = emu_now_ms(emu);
	g->healthy_ms =
	    emu->faults.guest_unhealthy > 0 && emu_rand(emu) < emu->faults.guest_unhealthy
	    ? INT64_MAX
	    : g->running_ms + emu->opts.guest_boot_ms;
	if (emu->faults.guest_die > 0 && emu_rand(emu) < emu->faults.guest_die)
		g->dies_ms = g->healthy_ms + 1 +
		    (int64_t)(emu_rand(emu) * (double)emu->faults.guest_die_within_s * 1000);
}

void
guest_stop(struct inst *inst)
{
	struct guest *g = inst->guest;
	json_t *ac;

	if (g == NULL)
		return;
	if (g->fd >= 0)
		close(g->fd);
	httpd_free(g->http);
	free(g);
	inst->guest = NULL;
	/* An ephemeral external address goes with the running VM. */
	inst->nat_ip[0] = '\0';
	if ((ac = jx_get(inst->res, "networkInterfaces.0.accessConfigs.0")) != NULL)
		json_object_del(ac, "natIP");
	inst_changed(inst);
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
