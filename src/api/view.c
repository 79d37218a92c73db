#include <stdlib.h>
#include <string.h>

#include "api/view.h"
#include "ledger/cost.h"
#include "pressure/monitor.h"
#include "util/clock.h"
#include "util/str.h"
#include "util/xmalloc.h"

static const enum vm_state every_state[] = {VM_REQUESTED, VM_CREATING, VM_PROVISIONING, VM_BOOTING,
    VM_READY, VM_UNHEALTHY, VM_DRAINING, VM_IMAGING, VM_TERMINATING, VM_TERMINATED, VM_FAILED,
    VM_PREEMPTED, VM_ORPHANED, VM_POOLING, VM_POOLED, VM_STARTING};
_Static_assert(sizeof every_state / sizeof every_state[0] == VM_STATES, "every state");

static json_t *
when(int64_t ms)
{
	char t[RFC3339_LEN];

	if (ms <= 0)
		return json_null();
	time_rfc3339(ms, 0, t);
	return json_string(t);
}

static json_t *
list_of(const char *csv)
{
	json_t *a = json_array();
	char *copy = xstrdup(csv), *save = NULL;

	for (char *p = strtok_r(copy, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save))
		if (*p != '\0')
			json_array_append_new(a, json_string(p));
	free(copy);
	return a;
}

/* What a record has cost by now: closed, or accrued since it started. */
static double
cost_so_far(const struct vm_record *v, int64_t now)
{
	if (!vm_state_alive(v->state) || v->started_ms <= 0)
		return v->cost;
	return cost_run(v->per_hour, v->started_ms, now, v->spot, false);
}

static json_t *
mb(int64_t kb)
{
	return kb >= 0 ? json_integer((json_int_t)(kb / 1024)) : json_null();
}

/* What stopping a component's local copy gave back (docs/offload.md). */
static json_t *
offload_json(const struct offload_record *o)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "vm", o->vm, "component",
	    o->component, "stopped_at", when(o->stopped_ms), "freed_mb",
	    offload_measured(o) ? mb(offload_freed_kb(o)) : json_null(), "pss_mb", mb(o->pss_kb),
	    "mem_available_before_mb", mb(o->avail_before_kb), "mem_available_after_mb",
	    mb(o->avail_after_kb), "back_at", when(o->back_ms), "start_took_s",
	    o->back_ms > 0 ? json_real((double)o->start_took_ms / 1000) : json_null());
}

#define OFFLOADS_SHOWN 16

/* A VM's offloads, and all they freed (kB; 0 when none or not known). */
static json_t *
vm_offloads(const struct view_src *s, const char *vm, int64_t *freed)
{
	struct offload_record *list = NULL;
	size_t n = 0;
	json_t *a = json_array();

	*freed = 0;
	if (ledger_offloads(s->ledger, vm, NULL, OFFLOADS_SHOWN, &list, &n) == 0)
		for (size_t i = 0; i < n; i++) {
			json_array_append_new(a, offload_json(&list[i]));
			if (offload_measured(&list[i]) && offload_freed_kb(&list[i]) > 0)
				*freed += offload_freed_kb(&list[i]);
		}
	free(list);
	return a;
}

json_t *
view_vm(const struct view_src *s, const struct vm_record *v)
{
	bool alive = vm_state_alive(v->state);
	int64_t end = alive ? s->now : v->ended_ms;
	json_t *o, *endpoint = json_null(), *stops = json_null();

	if (v->nat_ip[0] != '\0') {
		char *url = xasprintf("http://%s:%lld", v->nat_ip, (long long)s->cfg->backend_port);

		endpoint = json_string(url);
		free(url);
	}
	/* The hard stop: maxRunDuration from its start (the budget planned it). */
	if (alive && v->started_ms > 0 && v->planned_run_s > 0)
		stops = json_integer(
		    (json_int_t)((v->started_ms + v->planned_run_s * 1000 - s->now) / 1000));
	o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:f, s:f, "
	              "s:I, s:o, s:s, s:f, s:s, s:o, s:{s:s, s:s}}",
	    "name", v->name, "zone", v->zone, "state", vm_state_name(v->state), "machine_type",
	    v->machine_type, "spot", v->spot, "ip",
	    v->nat_ip[0] ? json_string(v->nat_ip) : json_null(), "endpoint", endpoint, "components",
	    list_of(v->components), "requested_at", when(v->requested_ms), "started_at",
	    when(v->started_ms), "ready_at", when(v->ready_ms), "ended_at", when(v->ended_ms),
	    "uptime_s",
	    (json_int_t)(v->started_ms > 0 && end > v->started_ms ? (end - v->started_ms) / 1000
	                                                          : 0),
	    "cost", cost_so_far(v, s->now), "per_hour", v->per_hour, "planned_run_s",
	    (json_int_t)v->planned_run_s, "stops_in_s", stops, "reason", v->reason, "confidence",
	    v->confidence, "request_id", v->request_id, "end_reason",
	    v->end_reason[0] ? json_string(v->end_reason) : json_null(), "labels", "managed-by",
	    "spillway", "spillway-owner", s->owner != NULL ? s->owner : "");
	if (o == NULL)
		abort();
	json_object_set_new(o, "purpose",
	    json_string(vm_bakes(v) ? "bake"
	            : vm_pooled(v)  ? "pool"
	                            : "serve"));
	{
		json_t *md = json_loads(v->metadata[0] ? v->metadata : "{}", 0, NULL);

		json_object_set_new(o, "metadata", json_is_object(md) ? md : json_object());
		if (md != NULL && !json_is_object(md))
			json_decref(md);
	}
	{
		int64_t freed;

		json_object_set_new(o, "offloads", vm_offloads(s, v->name, &freed));
		json_object_set_new(o, "freed_mb", json_integer((json_int_t)(freed / 1024)));
	}
	return o;
}

/* The local copies spillway runs: as the daemon has them, and each one's last offload. */
static json_t *
copies_array(const struct view_src *s)
{
	json_t *a = json_array();

	for (size_t i = 0; i < s->cfg->ncomponents; i++) {
		const struct component_def *c = &s->cfg->components[i];
		const struct local_info *info = NULL;
		struct offload_record *last = NULL;
		size_t n = 0;
		json_t *o;

		if (!component_managed(c))
			continue;
		for (size_t k = 0; k < s->ncopies && info == NULL; k++)
			if (strcmp(s->copies[k]->component, c->name) == 0)
				info = s->copies[k];
		o = json_pack("{s:s, s:s, s:o, s:o, s:o}", "component", c->name, "run_by",
		    *c->local_unit != '\0' ? "unit" : "commands", "state",
		    info != NULL ? json_string(local_state_name(info->state)) : json_null(),
		    "since", info != NULL ? when(info->since_ms) : json_null(), "why",
		    info != NULL ? json_string(info->why)
		                 : json_string("spillway is not running: it neither starts nor "
		                               "stops it"));
		if (ledger_offloads(s->ledger, NULL, c->name, 1, &last, &n) == 0 && n == 1)
			json_object_set_new(o, "last_offload", offload_json(&last[0]));
		else
			json_object_set_new(o, "last_offload", json_null());
		free(last);
		json_array_append_new(a, o);
	}
	return a;
}

/* The record as the daemon knows it: one the ledger has not taken yet stands for its own. */
static const struct vm_record *
overlaid(const struct view_src *s, const struct vm_record *v)
{
	for (size_t i = 0; i < s->nwaiting; i++)
		if (strcmp(s->waiting[i].name, v->name) == 0)
			return &s->waiting[i];
	return v;
}

static bool
in_states(enum vm_state st, const enum vm_state *states, size_t n)
{
	if (states == NULL)
		return vm_state_alive(st);
	for (size_t i = 0; i < n; i++)
		if (states[i] == st)
			return true;
	return false;
}

/*
 * A VM of the days since `since`: requested in them, alive in them, or ended
 * in them (one that ran across midnight is part of both days' spend).
 */
static bool
ran_since(const struct vm_record *v, int64_t since)
{
	return v->requested_ms >= since || vm_state_alive(v->state) ||
	    (v->ended_ms > 0 ? v->ended_ms : v->state_ms) >= since;
}

static json_t *
vm_array(const struct view_src *s, const enum vm_state *states, size_t n, int64_t since)
{
	struct vm_record *list = NULL;
	size_t count = 0;
	json_t *a = json_array();

	/*
	 * By the states asked for (the index on state: the history can be long);
	 * every state while records wait, which may have left or entered them.
	 */
	if ((s->nwaiting > 0 ? ledger_list(s->ledger, every_state, VM_STATES, &list, &count)
	                     : ledger_list(s->ledger, states, n, &list, &count)) == 0)
		for (size_t i = 0; i < count; i++) {
			const struct vm_record *v = overlaid(s, &list[i]);

			if (ran_since(v, since) && in_states(v->state, states, n))
				json_array_append_new(a, view_vm(s, v));
		}
	/* Waiting records the ledger has no row for at all. */
	for (size_t w = 0; w < s->nwaiting; w++) {
		bool there = false;

		for (size_t i = 0; i < count && !there; i++)
			there = strcmp(list[i].name, s->waiting[w].name) == 0;
		if (!there && ran_since(&s->waiting[w], since) &&
		    in_states(s->waiting[w].state, states, n))
			json_array_append_new(a, view_vm(s, &s->waiting[w]));
	}
	free(list);
	return a;
}

json_t *
view_vms(const struct view_src *s)
{
	return json_pack(
	    "{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "vms", vm_array(s, NULL, 0, 0));
}

static json_t *
events(const struct view_src *s, const char *vm, int limit)
{
	struct ledger_event *list = NULL;
	size_t n = 0;
	json_t *a = json_array();

	if (ledger_events(s->ledger, vm, limit, &list, &n) == 0)
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a,
			    json_pack("{s:o, s:s, s:s, s:s}", "time", when(list[i].t_ms), "vm",
			        list[i].vm, "kind", list[i].kind, "detail", list[i].detail));
	free(list);
	return a;
}

json_t *
view_vm_detail(const struct view_src *s, const char *name)
{
	struct vm_record v;
	const struct vm_record *shown = NULL;

	for (size_t i = 0; i < s->nwaiting && shown == NULL; i++)
		if (strcmp(s->waiting[i].name, name) == 0)
			shown = &s->waiting[i];
	if (shown == NULL && ledger_get(s->ledger, name, &v) == 0)
		shown = &v;
	if (shown == NULL)
		return NULL;
	return json_pack("{s:i, s:o, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "vm",
	    view_vm(s, shown), "events", events(s, name, 100));
}

/* Today's money; what the ledger cannot say is null, with its error beside. */
static json_t *
today(const struct view_src *s)
{
	double spent = 0, committed = 0;
	char day[DAY_LEN];
	bool known = ledger_spent(s->ledger, s->now, &spent) == 0 &&
	    ledger_committed(s->ledger, s->now, &committed) == 0;

	cost_day(s->now, day);
	return json_pack("{s:s, s:o, s:o, s:f, s:o, s:o}", "date", day, "spent",
	    known ? json_real(spent) : json_null(), "committed",
	    known ? json_real(committed) : json_null(), "budget", s->cfg->daily_budget, "left",
	    known ? json_real(s->cfg->daily_budget - spent - committed) : json_null(), "error",
	    known ? json_null() : json_string(ledger_error(s->ledger)));
}

json_t *
view_pressure(const struct pressure_snapshot *p)
{
	/* One shape everywhere: spillway pressure --json prints the same. */
	if (p == NULL || p->t_ms <= 0)
		return json_null();
	return pressure_snapshot_json(p, NULL);
}

static json_t *
route_array(const struct view_src *s)
{
	json_t *list = json_array();

	if (s->routes != NULL) {
		for (size_t i = 0; i < s->nroutes; i++) {
			const struct route_stats *r = &s->routes[i];

			json_array_append_new(list,
			    json_pack(
			        "{s:s, s:s, s:o, s:s, s:o, s:s, s:I, s:I, s:I, s:I, s:I, s:I, "
			        "s:o, s:I, s:o}",
			        "component", r->component, "listen", r->listen, "local",
			        r->local[0] ? json_string(r->local) : json_null(), "to", r->to,
			        "vm", r->vm[0] ? json_string(r->vm) : json_null(), "why", r->why,
			        "open", (json_int_t)r->open, "waiting", (json_int_t)r->waiting,
			        "connections", (json_int_t)r->total, "refused",
			        (json_int_t)r->refused, "bytes_up", (json_int_t)r->bytes_up,
			        "bytes_down", (json_int_t)r->bytes_down, "last_use",
			        when(r->last_use_ms), "local_open", (json_int_t)r->local_open,
			        "local_copy",
			        r->local_copy[0] ? json_string(r->local_copy) : json_null()));
		}
		return list;
	}
	/* No daemon: what is configured, and that nothing listens. */
	for (size_t i = 0; i < s->cfg->ncomponents; i++) {
		const struct component_def *c = &s->cfg->components[i];

		if (*c->listen == '\0')
			continue;
		json_array_append_new(list,
		    json_pack("{s:s, s:s, s:o, s:s, s:n, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:n}",
		        "component", c->name, "listen", c->listen, "local",
		        *c->local ? json_string(c->local) : json_null(), "to", "none", "vm", "why",
		        "spillway is not running: nothing listens here (spillway run)", "open", 0,
		        "waiting", 0, "connections", 0, "refused", 0, "bytes_up", 0, "bytes_down",
		        0, "last_use"));
	}
	return list;
}

json_t *
view_routes(const struct view_src *s)
{
	return json_pack(
	    "{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "routes", route_array(s));
}

/* --- images (docs/images.md) --- */

static json_t *
image_json(const struct view_src *s, const struct image_record *im, const char *current)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:f, s:f, s:o}",
	    "name", im->name, "family", im->family, "state", image_state_name(im->state), "vm",
	    im->vm, "backend", im->backend, "install_hash", im->install_hash, "stale",
	    im->state == IMAGE_READY && strcmp(im->install_hash, current) != 0, "requested_at",
	    when(im->requested_ms), "ready_at", when(im->ready_ms), "deleted_at",
	    when(im->deleted_ms), "size_gib", im->size_gib, "per_month",
	    im->size_gib * im->per_gib_month, "why",
	    im->why[0] ? json_string(im->why) : json_null());
}

/*
 * What VMs boot from: daemon.image, or with "baked" the newest image of the
 * family (else image.base), and whether it holds the install the settings
 * make now.
 */
static json_t *
boot_image(const struct view_src *s, const struct image_record *list, size_t n, const char *current)
{
	const struct config *c = s->cfg;
	const char *image = or_default(c->image, ""), *family = or_default(c->image_family, "");
	const struct image_record *newest = image_newest(list, n, family);
	bool baked = strcmp(image, "baked") == 0;
	char *path;
	json_t *o;

	path = !baked        ? xstrdup(image)
	    : newest != NULL ? xasprintf("global/images/family/%s", family)
	                     : xstrdup(or_default(c->image_base, ""));
	o = json_pack("{s:s, s:s, s:o, s:b, s:s}", "image", path, "family", family, "newest",
	    newest != NULL ? json_string(newest->name) : json_null(), "stale",
	    newest != NULL && strcmp(newest->install_hash, current) != 0, "install_hash", current);
	free(path);
	return o;
}

json_t *
view_images(const struct view_src *s)
{
	struct image_record *list = NULL;
	size_t n = 0;
	char current[CONFIG_INSTALL_HASH_LEN + 1];
	double month = 0;
	json_t *images = json_array(), *doc;

	config_install_hash(s->cfg, current);
	if (ledger_images(s->ledger, false, &list, &n) != 0)
		return view_error(500, "ledger", ledger_error(s->ledger));
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(images, image_json(s, &list[i], current));
		if (list[i].state == IMAGE_READY)
			month += list[i].size_gib * list[i].per_gib_month;
	}
	doc = json_pack("{s:i, s:o, s:o, s:f}", "schema_version", VIEW_SCHEMA_VERSION, "images",
	    images, "boot", boot_image(s, list, n, current), "storage_per_month", month);
	free(list);
	return doc;
}

json_t *
view_image(const struct view_src *s, const char *name)
{
	struct image_record im;
	char current[CONFIG_INSTALL_HASH_LEN + 1];

	if (ledger_image_get(s->ledger, name, &im) != 0)
		return NULL;
	config_install_hash(s->cfg, current);
	return json_pack("{s:i, s:o}", "schema_version", VIEW_SCHEMA_VERSION, "image",
	    image_json(s, &im, current));
}

/*
 * The warm pool (docs/pool.md): its size, and each of its VMs not taken yet
 * (warming or waiting): state, how it waits, since when, what a day of it
 * costs.
 */
static json_t *
pool_json(const struct view_src *s)
{
	struct vm_record *list = NULL;
	size_t n = 0;
	double per_day = 0;
	json_t *vms = json_array();

	if (ledger_list(s->ledger, NULL, 0, &list, &n) == 0)
		for (size_t i = 0; i < n; i++) {
			const struct vm_record *v = overlaid(s, &list[i]);
			bool waits = v->state == VM_POOLED;

			if (!vm_pooled(v))
				continue;
			per_day += waits ? v->wait_per_hour * 24 : 0;
			json_array_append_new(vms,
			    json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:f}", "name", v->name,
			        "zone", v->zone, "state", vm_state_name(v->state), "waits",
			        waits ? json_string(v->suspended ? "suspended" : "stopped")
			              : json_null(),
			        "since", when(waits ? v->pool_since_ms : v->requested_ms), "age_s",
			        (json_int_t)((s->now - v->requested_ms) / 1000), "per_day",
			        waits ? v->wait_per_hour * 24 : 0.0));
		}
	free(list);
	return json_pack("{s:I, s:b, s:o, s:f}", "size", (json_int_t)s->cfg->pool_size, "suspend",
	    s->cfg->pool_suspend, "vms", vms, "per_day", per_day);
}

/* The status's line on images: what VMs boot from, and whether it is stale. */
static json_t *
status_images(const struct view_src *s)
{
	struct image_record *list = NULL;
	size_t n = 0;
	char current[CONFIG_INSTALL_HASH_LEN + 1];
	json_t *o;

	config_install_hash(s->cfg, current);
	ledger_images(s->ledger, false, &list, &n); /* unreadable: none newer than the base */
	o = boot_image(s, list, n, current);
	free(list);
	return o;
}

json_t *
view_status(const struct view_src *s)
{
	const struct config *c = s->cfg;
	struct vm_stats st = {0};
	json_t *backoffs = json_array(), *vms, *doc;

	ledger_stats(s->ledger, &st);
	for (size_t i = 0; i < s->nbackoffs; i++) {
		const struct backoff *b = &s->backoffs[i];

		json_array_append_new(backoffs,
		    json_pack("{s:s, s:o, s:o, s:s}", "rule", b->rule, "zone",
		        b->zone[0] ? json_string(b->zone) : json_null(), "until", when(b->until_ms),
		        "why", b->why));
	}
	/* In all: what ended, and what the VMs still running have cost so far. */
	{
		size_t i;
		json_t *vm;

		vms = vm_array(s, NULL, 0, 0);
		json_array_foreach (vms, i, vm)
			st.total_cost += json_number_value(json_object_get(vm, "cost"));
	}
	doc = json_pack("{s:i, s:{s:b, s:o}, s:{s:s, s:s, s:s, s:s, s:b, s:I, s:f, s:f, s:f, s:f, "
	                "s:b}, s:o, s:o, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:f}, s:o, s:o, s:o, "
	                "s:{s:s, s:o, s:I}, s:o, s:o, s:o}",
	    "schema_version", VIEW_SCHEMA_VERSION, "daemon", "running", s->daemon_pid > 0, "pid",
	    s->daemon_pid > 0 ? json_integer(s->daemon_pid) : json_null(), "config", "project",
	    c->project, "region", c->region, "zone", c->zone, "machine_type", c->machine_type,
	    "spot", c->use_spot, "max_concurrent", (json_int_t)c->max_concurrent,
	    "max_lifetime_hours", c->max_lifetime_hours, "daily_budget", c->daily_budget,
	    "max_price", c->max_price, "idle_timeout_minutes", c->idle_timeout_minutes, "enabled",
	    c->enabled, "pressure", view_pressure(s->snap), "vms", vms, "statistics", "created",
	    (int)st.created, "failed", (int)st.failed, "terminated", (int)st.terminated,
	    "preempted", (int)st.preempted, "orphaned", (int)st.orphaned, "active", (int)st.alive,
	    "total_cost", st.total_cost, "today", today(s), "backoffs", backoffs, "events",
	    events(s, NULL, VIEW_EVENTS), "ledger", "path", ledger_path(s->ledger), "problem",
	    s->ledger_problem != NULL ? json_string(s->ledger_problem) : json_null(), "waiting",
	    (json_int_t)s->ledger_waiting, "routes", route_array(s), "local_copies",
	    copies_array(s), "boot", status_images(s));
	json_object_set_new(doc, "pool", pool_json(s));
	return doc;
}

/* The images whose storage counts in the days shown: alive, or deleted since. */
static json_t *
cost_images(const struct view_src *s, int64_t since)
{
	struct image_record *list = NULL;
	size_t n = 0;
	char current[CONFIG_INSTALL_HASH_LEN + 1];
	json_t *a = json_array();

	config_install_hash(s->cfg, current);
	if (ledger_images(s->ledger, true, &list, &n) == 0)
		for (size_t i = 0; i < n; i++)
			if (list[i].ready_ms > 0 &&
			    (list[i].deleted_ms == 0 || list[i].deleted_ms >= since))
				json_array_append_new(a, image_json(s, &list[i], current));
	free(list);
	return a;
}

json_t *
view_costs(const struct view_src *s, int ndays)
{
	struct day_cost *days = NULL;
	int count = 0, mday;
	int64_t since = cost_day_start(s->now);
	double month = 0;
	json_t *daylist = json_array();
	char today_s[DAY_LEN];

	ledger_days(s->ledger, s->now, ndays, &days, &count);
	for (int i = 0; i < count; i++)
		json_array_append_new(
		    daylist, json_pack("{s:s, s:f}", "day", days[i].day, "cost", days[i].amount));
	for (int i = 1; i < ndays; i++)
		since = cost_day_start(since - 1);
	free(days);
	/* Month to date: the days of this month, today included. */
	cost_day(s->now, today_s);
	mday = (int)strtol(today_s + 8, NULL, 10);
	days = NULL;
	if (ledger_days(s->ledger, s->now, mday, &days, &count) == 0)
		for (int i = 0; i < count; i++)
			month += days[i].amount;
	free(days);
	return json_pack("{s:i, s:o, s:o, s:i, s:o, s:o, s:f, s:o, s:o}", "schema_version",
	    VIEW_SCHEMA_VERSION, "today", today(s), "active", vm_array(s, NULL, 0, 0), "days_shown",
	    ndays, "vms",
	    vm_array(s, every_state, sizeof every_state / sizeof every_state[0], since), "days",
	    daylist, "month_to_date", month, "images", cost_images(s, since), "pool", pool_json(s));
}

json_t *
view_error(int code, const char *rule, const char *message)
{
	return json_pack("{s:{s:i, s:o, s:s}}", "error", "code", code, "rule",
	    rule != NULL ? json_string(rule) : json_null(), "message", message);
}

json_t *
view_decision(const struct decision *d)
{
	return json_pack("{s:b, s:f, s:s, s:s, s:s}", "create", d->create, "confidence",
	    d->confidence, "rule", d->rule, "reason", d->reason, "components", d->components);
}
