/*
 * The offload (offload.h): the components whose local copy spillway runs,
 * the VMs as the manager's events tell them, and the one loop that keeps
 * each such component served by exactly one side: step() asks local/plan.h
 * what each copy should do now and does it; gate() answers the manager for
 * a VM asked to go. Everything here happens on the loop; the copies' changes
 * arrive from the loop's top (locals), so no call here runs inside another.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/compat.h"
#include "util/log.h"
#include "util/xmalloc.h"
#include "vm/offload.h"

#define LEARN_FROM   5     /* the last offloads a component's size is learned from */
#define RETRY_MIN_MS 30000 /* a failed start is tried again after its timeout, at least this */

/* A component whose copy spillway runs. */
struct comp {
	char name[64];
	int64_t served_since; /* a VM serves it since (0: none does) */
	int64_t failed_ms;    /* its copy's last start failed then */
	char vm[64];          /* the VM it was offloaded to last */
	bool unstoppable;     /* its copy cannot be stopped: said once */
	struct component_memory learned;
	struct comp *next;
};

/* A VM as the events tell it. */
struct ovm {
	char name[64];
	enum vm_state state;
	char components[256];
	bool going; /* asked to go, and waiting (the gate) */
	struct ovm *next;
};

struct offload {
	uv_loop_t *loop;
	struct offload_opts o;
	const struct config *cfg;
	struct manager *m;
	struct locals *locals;
	struct comp *comps;
	struct ovm *vms;
	uv_timer_t timer; /* the next plan's wake_ms */
	bool stepping;
};

static void step(struct offload *);

static int64_t
now_ms(const struct offload *o)
{
	return clock_now_ms(o->o.clock);
}

static struct comp *
find_comp(const struct offload *o, const char *name)
{
	for (struct comp *c = o->comps; c != NULL; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static struct ovm *
find_vm(const struct offload *o, const char *name)
{
	for (struct ovm *v = o->vms; v != NULL; v = v->next)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

/* READY VMs that run it and are not asked to go, but `except`; the first in *first. */
static int
serving(const struct offload *o, const char *component, const char *except, const char **first)
{
	int n = 0;

	for (const struct ovm *v = o->vms; v != NULL; v = v->next)
		if (v->state == VM_READY && !v->going &&
		    components_include(v->components, component) &&
		    (except == NULL || strcmp(v->name, except) != 0)) {
			if (n++ == 0 && first != NULL)
				*first = v->name;
		}
	return n;
}

static void note(struct offload *o, const char *vm, const char *fmt, ...) PRINTFLIKE(3, 4);

static void
note(struct offload *o, const char *vm, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (o->m != NULL)
		manager_note(o->m, vm != NULL && *vm != '\0' ? vm : "-", "local", text);
	else
		log_info("%s", text);
}

/* --- what earlier offloads freed --- */

static void
learn(struct offload *o, struct comp *c)
{
	struct offload_record *list = NULL;
	size_t n = 0;
	int64_t freed = 0, pss = 0, freed_with_pss = 0;
	int counted = 0;

	memset(&c->learned, 0, sizeof c->learned);
	if (ledger_offloads(o->o.ledger, NULL, c->name, LEARN_FROM, &list, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		int64_t f = offload_freed_kb(&list[i]);

		if (!offload_measured(&list[i]))
			continue;
		freed += f > 0 ? f : 0;
		counted++;
		if (list[i].pss_kb > 0) {
			pss += list[i].pss_kb;
			freed_with_pss += f > 0 ? f : 0;
		}
	}
	if (counted > 0)
		c->learned.freed_kb = freed / counted;
	if (pss > 0)
		c->learned.freed_ratio = (double)freed_with_pss / (double)pss;
	free(list);
}

/* --- the copies' changes --- */

static enum route_local
route_state(enum local_state s)
{
	switch (s) {
	case LOCAL_UNKNOWN:
	case LOCAL_RUNNING:
		return ROUTE_LOCAL_UP;
	case LOCAL_STARTING:
		return ROUTE_LOCAL_STARTING;
	default:
		return ROUTE_LOCAL_DOWN;
	}
}

static void
mb_text(int64_t kb, char *out, size_t size)
{
	if (kb < 0)
		snprintf(out, size, "?");
	else if (kb >= 1024 * 1024)
		snprintf(out, size, "%.1f GB", (double)kb / (1024.0 * 1024.0));
	else
		snprintf(out, size, "%" PRId64 " MB", kb / 1024);
}

/* A stop is over: what it gave back, with the VM that serves the component now. */
static void
record_stop(struct offload *o, struct comp *c, const struct local_info *i)
{
	struct offload_record r = {.stopped_ms = now_ms(o),
	    .pss_kb = i->pss_kb,
	    .avail_before_kb = i->avail_before_kb,
	    .avail_after_kb = i->avail_after_kb};
	char pss[32], before[32], after[32], freed[32];

	snprintf(r.vm, sizeof r.vm, "%s", c->vm);
	snprintf(r.component, sizeof r.component, "%s", c->name);
	if (ledger_offload_stopped(o->o.ledger, &r) != 0)
		log_warnx("the ledger cannot record what stopping %s's local copy freed: %s",
		    c->name, ledger_error(o->o.ledger));
	mb_text(i->pss_kb, pss, sizeof pss);
	mb_text(i->avail_before_kb, before, sizeof before);
	mb_text(i->avail_after_kb, after, sizeof after);
	mb_text(offload_measured(&r) ? offload_freed_kb(&r) : -1, freed, sizeof freed);
	note(o, c->vm,
	    "%s's local copy stopped while %s serves it: it gave back %s (its processes' PSS %s; "
	    "MemAvailable %s -> %s)",
	    c->name, c->vm[0] ? c->vm : "a VM", freed, pss, before, after);
	learn(o, c);
}

/* The route hears the copy's state at once: a connection must never find it stale. */
static void
tell_router(struct offload *o, const char *component)
{
	const struct local_info *i = locals_get(o->locals, component);

	if (o->o.router != NULL && i != NULL)
		router_local(
		    o->o.router, component, route_state(i->state), local_state_name(i->state));
}

static void
on_copy(void *arg, const struct local_info *i)
{
	struct offload *o = arg;
	struct comp *c = find_comp(o, i->component);

	if (c == NULL)
		return;
	switch (i->state) {
	case LOCAL_STOPPED:
		if (i->measured)
			record_stop(o, c, i);
		else if (i->on_its_own)
			note(o, c->vm, "%s's local copy %s", c->name, i->why);
		break;
	case LOCAL_RUNNING:
		c->failed_ms = 0;
		/* Back from an offload: said, and its record closed. */
		if (c->vm[0] != '\0' && i->start_took_ms > 0) {
			if (ledger_offload_back(
			        o->o.ledger, c->name, now_ms(o), i->start_took_ms) != 0)
				log_warnx("the ledger cannot record %s's local copy back: %s",
				    c->name, ledger_error(o->o.ledger));
			note(o, c->vm,
			    "%s's local copy serves again (healthy %.1f s after its start)",
			    c->name, (double)i->start_took_ms / 1000);
			c->vm[0] = '\0';
		}
		break;
	case LOCAL_FAILED:
		c->failed_ms = now_ms(o);
		note(o, c->vm, "%s's local copy did not start: %s", c->name, i->why);
		break;
	default:
		break;
	}
	step(o); /* which tells the route too */
	/* VMs that waited for it may go now (or hear they stay). */
	if (o->m != NULL && (i->state == LOCAL_RUNNING || i->state == LOCAL_FAILED)) {
		char(*names)[64] = NULL;
		size_t n = 0, k = 0;

		for (struct ovm *v = o->vms; v != NULL; v = v->next)
			n += v->going && components_include(v->components, c->name);
		names = xcalloc(n + 1, sizeof *names);
		for (struct ovm *v = o->vms; v != NULL; v = v->next)
			if (v->going && components_include(v->components, c->name))
				snprintf(names[k++], sizeof names[0], "%s", v->name);
		/* Collected first: the manager's answer changes the list. */
		for (size_t j = 0; j < k; j++)
			manager_gate_open(o->m, names[j]);
		free(names);
	}
}

/* --- the plan, carried out --- */

static void
on_timer(uv_timer_t *t)
{
	step(t->data);
}

static int64_t
retry_ms(const struct offload *o, const char *component)
{
	const struct component_def *def = config_component(o->cfg, component);
	int64_t t = def != NULL ? (int64_t)(def->local_start_timeout_s * 1000) : 0;

	return t > RETRY_MIN_MS ? t : RETRY_MIN_MS;
}

static void
step(struct offload *o)
{
	int64_t now = now_ms(o), wake = 0;

	if (o->stepping || o->m == NULL)
		return;
	o->stepping = true;
	for (struct comp *c = o->comps; c != NULL; c = c->next) {
		const struct local_info *i = locals_get(o->locals, c->name);
		const char *vm = NULL;
		struct plan_view v;
		struct plan p;
		int error;

		if (i == NULL)
			continue;
		v = (struct plan_view){.copy = i->state,
		    .serving = serving(o, c->name, NULL, &vm),
		    .local_open = o->o.router != NULL ? router_local_open(o->o.router, c->name) : 0,
		    .drain_ms = (int64_t)(o->cfg->route_drain_s * 1000),
		    .failed_ms = c->failed_ms,
		    .retry_ms = retry_ms(o, c->name),
		    .unstoppable = c->unstoppable};
		if (v.serving == 0)
			c->served_since = 0;
		else if (c->served_since == 0)
			c->served_since = now;
		v.served_since = c->served_since;
		plan_step(&v, now, &p);
		if (p.action == PLAN_STOP) {
			snprintf(c->vm, sizeof c->vm, "%s", vm);
			error = locals_stop(o->locals, c->name, vm, "a VM serves it");
			if (error == -ENOTSUP && !c->unstoppable) {
				c->unstoppable = true;
				note(o, vm,
				    "%s's local copy cannot be stopped: local_start ended and left it "
				    "running elsewhere, and there is no local_stop",
				    c->name);
			}
		} else if (p.action == PLAN_START) {
			locals_start(o->locals, c->name, c->vm,
			    i->state == LOCAL_FAILED ? "trying again" : "no VM serves it");
		}
		tell_router(o, c->name);
		if (p.wake_ms > 0 && (wake == 0 || p.wake_ms < wake))
			wake = p.wake_ms;
	}
	uv_timer_stop(&o->timer);
	if (wake > 0)
		uv_timer_start(&o->timer, on_timer, clock_timer_ms(o->o.clock, wake - now), 0);
	o->stepping = false;
}

/* --- the VMs --- */

static void
vm_seen(struct offload *o, const struct vm_record *r)
{
	struct ovm *v = find_vm(o, r->name), **pp;

	if (!vm_state_alive(r->state) || r->state == VM_TERMINATING) {
		if (v == NULL)
			return;
		for (pp = &o->vms; *pp != v; pp = &(*pp)->next)
			;
		*pp = v->next;
		free(v);
		return;
	}
	if (v == NULL) {
		v = xcalloc(1, sizeof *v);
		snprintf(v->name, sizeof v->name, "%s", r->name);
		v->next = o->vms;
		o->vms = v;
	}
	if (v->state == VM_READY && r->state != VM_READY)
		v->going = false; /* it left READY: whatever it waited for is moot */
	v->state = r->state;
	snprintf(v->components, sizeof v->components, "%s", r->components);
}

void
offload_event(struct offload *o, const struct manager_event *e)
{
	/* No copy to run, no VM to follow: a pass over thousands of VMs stays linear. */
	if (o->comps == NULL || e->vm == NULL ||
	    (e->kind != MEV_STATE && e->kind != MEV_READY && e->kind != MEV_GONE))
		return;
	vm_seen(o, e->vm);
	step(o);
}

enum manager_gate
offload_gate(
    void *arg, const struct vm_record *r, bool insist, bool cancel, char *why, size_t whylen)
{
	struct offload *o = arg;
	struct ovm *v = find_vm(o, r->name);
	enum manager_gate answer = MANAGER_GO;

	if (v == NULL)
		return MANAGER_GO;
	v->going = !cancel;
	step(o); /* its components' copies start, or (cancelled) stop again */
	if (cancel)
		return MANAGER_GO;
	for (struct comp *c = o->comps; c != NULL; c = c->next) {
		const struct local_info *i = locals_get(o->locals, c->name);
		enum plan_gate g;

		if (i == NULL || !components_include(v->components, c->name))
			continue;
		g = plan_gate(i->state, serving(o, c->name, v->name, NULL), insist);
		if (g == GATE_KEEP) {
			snprintf(why, whylen, "%s's local copy cannot serve: %s", c->name, i->why);
			return MANAGER_KEEP;
		}
		if (g == GATE_WAIT)
			answer = MANAGER_WAIT;
	}
	if (answer == MANAGER_GO)
		v->going = false;
	return answer;
}

void
offload_memory(void *arg, const char *component, struct component_memory *out)
{
	struct offload *o = arg;
	struct comp *c = find_comp(o, component);
	const struct local_info *i;

	memset(out, 0, sizeof *out);
	if (c == NULL || (i = locals_get(o->locals, component)) == NULL)
		return;
	*out = c->learned;
	out->offloaded = serving(o, component, NULL, NULL) > 0 && i->state != LOCAL_RUNNING &&
	    i->state != LOCAL_STARTING;
	if (i->state == LOCAL_RUNNING) {
		int64_t kb = locals_pss_kb(o->locals, component);

		out->measured_kb = kb > 0 ? kb : 0;
	}
}

void
offload_local_drained(void *arg, const char *component)
{
	step(arg);
}

/* --- life --- */

/* The components whose copies spillway runs, in the configuration's order. */
static void
comps_from(struct offload *o, const struct config *cfg)
{
	struct comp *kept = NULL, **tail = &kept, *c, *next;

	for (size_t i = 0; i < cfg->ncomponents; i++) {
		const struct component_def *def = &cfg->components[i];
		struct comp **pp;

		if (!component_managed(def))
			continue;
		for (pp = &o->comps; *pp != NULL && strcmp((*pp)->name, def->name) != 0;
		     pp = &(*pp)->next)
			;
		if ((c = *pp) != NULL) {
			*pp = c->next;
		} else {
			c = xcalloc(1, sizeof *c);
			snprintf(c->name, sizeof c->name, "%s", def->name);
			learn(o, c);
		}
		c->next = NULL;
		*tail = c;
		tail = &c->next;
	}
	for (c = o->comps; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	o->comps = kept;
}

int
offload_new(uv_loop_t *loop, const struct config *cfg, const struct offload_opts *opts,
    struct offload **out, char **cause)
{
	struct offload *o = xcalloc(1, sizeof *o);
	struct locals_opts lo = {.clock = opts->clock,
	    .state_dir = opts->state_dir,
	    .http = opts->http,
	    .changed = on_copy,
	    .arg = o};
	int error;

	o->loop = loop;
	o->o = *opts;
	o->cfg = cfg;
	if ((error = locals_new(loop, cfg, &lo, &o->locals, cause)) != 0) {
		free(o);
		return error;
	}
	uv_timer_init(loop, &o->timer);
	o->timer.data = o;
	comps_from(o, cfg);
	*out = o;
	return 0;
}

static void
vms_free(struct offload *o)
{
	struct ovm *v, *next;

	for (v = o->vms; v != NULL; v = next) {
		next = v->next;
		free(v);
	}
	o->vms = NULL;
}

/*
 * The VMs alive, as the ledger has them (the manager's, at its start); their
 * changes come as events from then on. Followed only while a copy is run.
 */
static void
vms_load(struct offload *o)
{
	struct vm_record *list = NULL;
	size_t n = 0;

	vms_free(o);
	if (o->comps != NULL && ledger_list(o->o.ledger, NULL, 0, &list, &n) == 0)
		for (size_t i = 0; i < n; i++)
			vm_seen(o, &list[i]);
	free(list);
}

void
offload_attach(struct offload *o, struct manager *m)
{
	o->m = m;
	vms_load(o);
	locals_probe(o->locals);
}

void
offload_set_config(struct offload *o, const struct config *cfg)
{
	bool followed = o->comps != NULL;

	o->cfg = cfg;
	locals_set_config(o->locals, cfg);
	comps_from(o, cfg);
	if (o->m != NULL) {
		if (!followed)
			vms_load(o);     /* the first copy to run: its VMs from now on */
		locals_probe(o->locals); /* copies run by spillway from now on */
	}
	step(o);
}

size_t
offload_copies(const struct offload *o, const struct local_info **out, size_t max)
{
	return locals_list(o->locals, out, max);
}

static void
on_closed(uv_handle_t *h)
{
	free(h->data);
}

void
offload_free(struct offload *o)
{
	struct comp *c, *cn;

	if (o == NULL)
		return;
	locals_free(o->locals);
	for (c = o->comps; c != NULL; c = cn) {
		cn = c->next;
		free(c);
	}
	vms_free(o);
	uv_close((uv_handle_t *)&o->timer, on_closed);
}
