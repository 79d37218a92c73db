/*
 * The lifecycle manager (manager.h): its VMs' states and the events they
 * send, the decision to create one (decide.h, from pressure or by hand), the
 * settings a reload changes, and its life from the ledger's VMs at start to
 * the shutdown that deletes them (or keeps them). The rest is in create.c,
 * reconcile.c and probe.c (internal.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/xmalloc.h"
#include "vm/internal.h"

#define SHUTDOWN_POLL_MS 100

void
manager_listeners_add(struct manager_listeners *l, manager_event_cb *cb, void *arg)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
	l->v[l->n++] = (struct manager_listener){.cb = cb, .arg = arg};
}

void
manager_listeners_emit(const struct manager_listeners *l, const struct manager_event *e)
{
	for (size_t i = 0; i < l->n; i++)
		l->v[i].cb(e, l->v[i].arg);
}

void
manager_listeners_free(struct manager_listeners *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void
emit(struct manager *m, const struct manager_event *e)
{
	manager_listeners_emit(&m->listeners, e);
}

void
manager_on_event(struct manager *m, manager_event_cb *cb, void *arg)
{
	manager_listeners_add(&m->listeners, cb, arg);
}

/* --- states --- */

/*
 * The components are on a VM exactly while it is READY: the application hears
 * "offload" when it turns READY (created, recovered, adopted) and "return" the
 * moment it stops being READY, with why, whatever comes next.
 */
void
announce(struct mvm *v, enum vm_state from, const char *reason)
{
	bool ready = v->rec.state == VM_READY;
	struct manager_event e = {.kind = ready ? MEV_READY : MEV_GONE,
	    .t_ms = now_ms(v->m),
	    .vm = &v->rec,
	    .from = (int)from,
	    .reason = reason};
	char why[sizeof v->rec.end_reason + 16];

	if (ready == v->announced)
		return;
	if (ready) {
		e.reason = v->adopted ? "adopted" : from == VM_UNHEALTHY ? "recovered" : "created";
		v->adopted = false;
	} else if (v->rec.state == VM_UNHEALTHY) {
		snprintf(why, sizeof why, "unhealthy: %s", reason != NULL ? reason : "");
		e.reason = why;
	}
	v->announced = ready;
	emit(v->m, &e);
}

void
set_state(struct mvm *v, enum vm_state to, const char *reason)
{
	struct manager *m = v->m;
	enum vm_state from = v->rec.state;
	struct manager_event e = {.kind = MEV_STATE,
	    .t_ms = now_ms(m),
	    .vm = &v->rec,
	    .from = (int)from,
	    .reason = reason};

	if (from == to)
		return;
	v->rec.state = to;
	v->rec.state_ms = e.t_ms;
	if (to == VM_READY && v->rec.ready_ms == 0)
		v->rec.ready_ms = e.t_ms;
	/* Why it ends is said when it starts to end (terminate), or here. */
	if ((to == VM_TERMINATING || !vm_state_alive(to)) && reason != NULL &&
	    v->rec.end_reason[0] == '\0')
		snprintf(v->rec.end_reason, sizeof v->rec.end_reason, "%s", reason);
	records_save(m->records, &v->rec, (int)from, reason, e.t_ms);
	log_info("%s: %s -> %s%s%s", v->rec.name, vm_state_name(from), vm_state_name(to),
	    reason ? ": " : "", reason ? reason : "");
	emit(m, &e);
	if (to == VM_BOOTING)
		probe_soon(m);
	announce(v, from, reason);
}

struct mvm *
find_vm(struct manager *m, const char *name)
{
	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if (strcmp(v->rec.name, name) == 0)
			return v;
	return NULL;
}

struct mvm *
add_vm(struct manager *m, const struct vm_record *rec)
{
	struct mvm *v = xcalloc(1, sizeof *v);

	v->m = m;
	v->rec = *rec;
	v->end_state = VM_TERMINATED;
	/* A READY VM from the ledger is announced again once it answers: the application may
	 * have restarted too. */
	v->adopted = rec->state == VM_READY;
	/* Draining when the last daemon ended: its connections ended with it. */
	if (rec->state == VM_DRAINING) {
		v->drain_until_ms = 1;
		v->drain_why = xstrdup("it was draining when spillway stopped");
	}
	*m->tail = v;
	m->tail = &v->next;
	m->nvms++;
	wake(m);
	return v;
}

/* A VM's memory: what it owns goes with it (its agent's channel, its reasons). */
static void
mvm_free(struct mvm *v)
{
	hconn_free(v->agent);
	free(v->image);
	free(v->terminate_after);
	free(v->drain_why);
	free(v->going_why);
	free(v);
}

/* Forget what is over and idle in memory; the ledger keeps it. */
void
prune(struct manager *m)
{
	struct mvm **p = &m->vms;

	while (*p != NULL) {
		struct mvm *v = *p;

		if (!vm_state_alive(v->rec.state) && !v->busy && !v->asking_pin &&
		    !hconn_busy(v->agent) && !records_waiting(m->records, v->rec.name)) {
			*p = v->next;
			m->nvms--;
			mvm_free(v);
		} else {
			p = &v->next;
		}
	}
	m->tail = p;
}

/* decide_input's memory: one per component, freed by the caller. */
static struct component_memory *
memory_of(struct manager *m)
{
	const struct config *cfg = m->cfg;
	struct component_memory *mem;

	if (m->o.memory == NULL)
		return NULL;
	mem = xcalloc(cfg->ncomponents + 1, sizeof *mem);
	for (size_t i = 0; i < cfg->ncomponents; i++)
		m->o.memory(m->o.memory_arg, cfg->components[i].name, &mem[i]);
	return mem;
}

static void
decide_input(struct manager *m, struct decide_input *in)
{
	const struct config *cfg = m->cfg;
	int64_t now = now_ms(m);

	memset(in, 0, sizeof *in);
	in->now = now;
	in->stopping = m->stopping;
	in->enabled = cfg->enabled;
	in->level = m->level;
	in->level_since = m->level_since;
	in->snap = m->snap.t_ms > 0 ? &m->snap : NULL;
	in->high_pct = cfg->high_pct;
	/* What the reservation counts, orphans included: they run, and they cost. */
	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		if (!vm_state_alive(v->rec.state) || v->rec.state == VM_POOLED)
			continue; /* the pool's waiting VMs run nothing: no slot */
		in->alive++;
		/* A bake's VM, or a pool's warming, relieves no pressure: no reason to wait. */
		if ((v->rec.state <= VM_BOOTING || v->rec.state == VM_STARTING) &&
		    !vm_bakes(&v->rec) && !vm_pooled(&v->rec))
			in->in_flight++;
	}
	in->max_concurrent = (int)cfg->max_concurrent;
	in->per_hour = m->per_hour;
	if (!m->price_known)
		in->price_why = m->price_why[0] ? m->price_why : "not known yet";
	in->max_price = cfg->max_price;
	in->budget = cfg->daily_budget;
	if (ledger_spent(m->o.ledger, now, &in->spent) != 0 ||
	    ledger_committed(m->o.ledger, now, &in->committed) != 0)
		in->ledger_why = ledger_error(m->o.ledger);
	/* While records wait for the ledger, no VM is added to them. */
	if (in->ledger_why == NULL)
		in->ledger_why = records_problem(m->records, NULL);
	in->max_run_s = (int64_t)(cfg->max_lifetime_hours * 3600);
	in->min_run_s = (int64_t)(cfg->min_run_minutes * 60);
	in->cooldown_until = m->cooldown_until;
	in->cooldown_why = m->cooldown_why;
	in->backoff_until = m->backoff_until;
	in->backoff_why = m->backoff_why;
	in->zones_available = zones_available(m);
	in->region = cfg->region;
	in->min_confidence = cfg->min_confidence;
	in->target_available_pct = cfg->target_available_pct;
	in->components = cfg->components;
	in->ncomponents = cfg->ncomponents;
	in->memory = memory_of(m);
}

void
manager_decide(struct manager *m, struct decision *d)
{
	struct decide_input in;

	decide_input(m, &in);
	decide(&in, d);
	free((void *)in.memory);
}

/* Under pressure: decide, say so, and act. */
void
consider(struct manager *m)
{
	struct decision d;
	struct manager_event e = {.kind = MEV_DECISION, .t_ms = now_ms(m), .decision = &d};
	char name[64];

	if (m->stopping || m->o.passive || m->level < PRESSURE_HIGH)
		return;
	manager_decide(m, &d);
	e.reason = d.reason;
	/* A refusal is said once per rule, not once a second. */
	if (d.create || strcmp(d.rule, m->last_rule) != 0) {
		emit(m, &e);
		records_event(m->records, "-", d.create ? "decision" : "refusal", d.reason, e.t_ms);
		log_info("decision: %s%s", d.create ? "create: " : "no: ", d.reason);
	}
	snprintf(m->last_rule, sizeof m->last_rule, "%s", d.create ? "" : d.rule);
	if (!d.create)
		return;
	if (create_vm(m,
	        &(struct vm_intent){
	            .components = d.components, .reason = d.reason, .confidence = d.confidence},
	        name, sizeof name, &d) != 0) {
		log_info("decision: refused: %s", d.reason);
		records_event(m->records, "-", "refusal", d.reason, now_ms(m));
	}
}

/* A person asked: decide.h says which rules apply. */
bool
manager_by_hand(struct manager *m, const char *components, struct decision *d)
{
	struct decide_input in;

	decide_input(m, &in);
	in.by_hand = true;
	in.asked = components;
	decide(&in, d);
	free((void *)in.memory);
	return d->create;
}

int
manager_create(struct manager *m, const char *components, const char *reason, const char *metadata,
    char *name, size_t namelen, struct decision *d)
{
	if (!manager_by_hand(m, components, d))
		return -EAGAIN;
	return create_vm(m,
	    &(struct vm_intent){.components = d->components,
	        .reason = reason != NULL && *reason ? reason : "requested by hand",
	        .metadata = metadata,
	        .confidence = d->confidence},
	    name, namelen, d);
}

int
manager_plan(struct manager *m, const char *components, struct manager_plan *p)
{
	memset(p, 0, sizeof *p);
	snprintf(p->machine_type, sizeof p->machine_type, "%s", m->cfg->machine_type);
	p->spot = m->cfg->use_spot;
	p->per_hour = m->per_hour;
	if (!manager_by_hand(m, components, &p->d))
		return -EAGAIN;
	/* The zone create_vm goes to: decide() saw that one is available. */
	snprintf(p->zone, sizeof p->zone, "%s", next_zone(m, NULL));
	/* Or one of the pool's, for the run it was made with. */
	{
		struct mvm *v = pool_next(m);
		double left = p->d.left + p->d.cost;

		if (v != NULL && v->rec.planned_run_s <= p->d.run_s) {
			snprintf(p->pooled, sizeof p->pooled, "%s", v->rec.name);
			snprintf(p->zone, sizeof p->zone, "%s", v->rec.zone);
			p->suspended = v->rec.suspended;
			p->per_hour = v->rec.per_hour;
			p->d.run_s = v->rec.planned_run_s;
			p->d.cost =
			    cost_run(v->rec.per_hour, 0, v->rec.planned_run_s * 1000, false, false);
			p->d.left = left - p->d.cost;
		}
	}
	return 0;
}

int
manager_terminate(struct manager *m, const char *name, const char *reason)
{
	struct mvm *v = find_vm(m, name);

	if (v == NULL || !vm_state_alive(v->rec.state))
		return -ENOENT;
	go(v, reason, VM_TERMINATED, true);
	return 0;
}

void
manager_note(struct manager *m, const char *vm, const char *kind, const char *detail)
{
	struct manager_event e = {
	    .kind = MEV_NOTE, .t_ms = now_ms(m), .reason = detail, .note = kind, .note_vm = vm};

	records_event(m->records, vm, kind, detail, e.t_ms);
	log_info("%s: %s", strcmp(vm, "-") != 0 ? vm : kind, detail);
	emit(m, &e);
}

static bool
priced_alike(const struct config *a, const struct config *b)
{
	return strcmp(a->machine_type, b->machine_type) == 0 && strcmp(a->region, b->region) == 0 &&
	    a->use_spot == b->use_spot && a->disk_gb == b->disk_gb &&
	    strcmp(a->disk_type, b->disk_type) == 0;
}

void
manager_set_config(struct manager *m, const struct config *cfg)
{
	bool same = priced_alike(m->cfg, cfg);

	m->cfg = cfg;
	m->o.cfg = cfg;
	if (!same) {
		m->price_known = false;
		m->price_why[0] = '\0';
		ask_price(m);
	}
}

void
manager_set_zones(struct manager *m, const char *const *zones)
{
	m->o.zones = zones;
}

void
manager_set_catalog(struct manager *m, const json_t *catalog, const char *source)
{
	m->o.catalog = catalog;
	m->o.catalog_source = source;
	m->price_known = false; /* asked again now, from this catalog */
	m->price_why[0] = '\0';
	ask_price(m);
}

bool
manager_alive_outside(const struct manager *m, const char *const *zones, char *vm, size_t size)
{
	for (const struct mvm *v = m->vms; v != NULL; v = v->next) {
		bool in = false;

		if (!vm_state_alive(v->rec.state))
			continue;
		for (const char *const *z = zones; z != NULL && *z != NULL && !in; z++)
			in = strcmp(*z, v->rec.zone) == 0;
		if (!in) {
			snprintf(vm, size, "%s (in %s)", v->rec.name, v->rec.zone);
			return true;
		}
	}
	return false;
}

void
manager_set_drain_pool(struct manager *m, bool drain)
{
	m->drain_pool = drain;
}

void
manager_set_keep(struct manager *m, bool keep)
{
	m->o.keep = keep || m->o.passive;
}

void
manager_pass_now(struct manager *m)
{
	uv_timer_stop(&m->timer);
	pass(m);
}

void
manager_pressure(struct manager *m, const struct pressure_snapshot *s, enum pressure_level prev)
{
	int64_t now = now_ms(m);

	m->snap = *s;
	if (s->level != m->level) {
		struct manager_event e = {
		    .kind = MEV_PRESSURE, .t_ms = now, .snap = &m->snap, .previous = prev};

		/* From rest: the sweep now, before a VM may be wanted. */
		if (m->level == PRESSURE_NORMAL && s->level > PRESSURE_NORMAL && !m->passing &&
		    !m->stopping && m->counts.passes > 0 && !m->o.passive) {
			uv_timer_stop(&m->timer);
			pass(m);
		}
		m->level = s->level;
		m->level_since = s->since_ms > 0 ? s->since_ms : now;
		m->last_rule[0] = '\0';
		emit(m, &e);
		records_event(m->records, "-", "pressure", pressure_level_name(s->level), now);
		consider(m);
	}
}

/* --- life --- */

int
manager_new(uv_loop_t *loop, const struct manager_opts *o, struct manager **out, char **cause)
{
	struct manager *m = xcalloc(1, sizeof *m);
	struct vm_record *list;
	size_t n;

	m->loop = loop;
	m->o = *o;
	m->cfg = o->cfg;
	m->records = records_new(o->ledger);
	m->tail = &m->vms;
	m->level = PRESSURE_NORMAL;
	m->level_since = now_ms(m);
	if (ledger_list(o->ledger, NULL, 0, &list, &n) != 0) {
		*cause =
		    xasprintf("cannot read the VMs from the ledger: %s", ledger_error(o->ledger));
		records_free(m->records);
		free(m);
		return -EIO;
	}
	/* What the ledger has alive is ours to look after from the first pass. */
	for (size_t i = 0; i < n; i++)
		add_vm(m, &list[i]);
	free(list);
	uv_timer_init(loop, &m->timer);
	uv_timer_init(loop, &m->probe);
	uv_timer_init(loop, &m->drain);
	m->timer.data = m->probe.data = m->drain.data = m;
	m->handles = 3;
	*out = m;
	return 0;
}

void
manager_start(struct manager *m)
{
	drain_timer(m); /* a VM that was draining when the last daemon ended */
	pass(m);
	bake_sweep(m);
}

/* What shutdown leaves: the pool, stopped (docs/pool.md), unless it drains it. */
static bool
kept_in_pool(const struct manager *m, const struct mvm *v)
{
	return v->rec.state == VM_POOLED && !m->drain_pool;
}

static bool
all_ended(struct manager *m)
{
	for (struct mvm *v = m->vms; v != NULL; v = v->next)
		if ((vm_state_alive(v->rec.state) && !kept_in_pool(m, v)) || v->busy)
			return false;
	return true;
}

static void
on_shutdown_tick(uv_timer_t *t)
{
	struct manager *m = t->data;

	if (all_ended(m) || monotonic_ns() > m->stop_deadline_ns) {
		if (!all_ended(m) && !m->o.keep)
			log_warnx(
			    "manager: shutdown timed out with VMs still alive; the next start will "
			    "find them");
		/* The last chance for what waits; else the log is where it goes. */
		if (records_flush(m->records, now_ms(m)) != 0)
			records_say_lost(m->records);
		uv_timer_stop(&m->timer);
		if (m->done != NULL)
			m->done(m->done_arg);
		return;
	}
	uv_timer_start(&m->timer, on_shutdown_tick, SHUTDOWN_POLL_MS, 0);
}

void
manager_shutdown(struct manager *m, void (*done)(void *), void *arg)
{
	m->stopping = true;
	m->done = done;
	m->done_arg = arg;
	uv_timer_stop(&m->timer);
	if (!m->o.keep)
		for (struct mvm *v = m->vms; v != NULL; v = v->next)
			/* A pooled VM stopping now is kept too, once stopped. */
			if (vm_state_alive(v->rec.state) && !kept_in_pool(m, v) &&
			    !(v->rec.state == VM_POOLING && !m->drain_pool))
				go(v, "shutdown: spillway is stopping", VM_TERMINATED, true);
	m->stop_deadline_ns = monotonic_ns() + (int64_t)(m->cfg->shutdown_timeout_s * 1e9);
	if (m->o.keep)
		m->stop_deadline_ns = monotonic_ns();
	uv_timer_start(&m->timer, on_shutdown_tick, 0, 0);
}

bool
manager_settled(const struct manager *m)
{
	return (m->counts.passes > 0 || m->list_failed) && !m->passing && !m->price_asked &&
	    (m->price_known || m->price_why[0] != '\0');
}

size_t
manager_backoffs(struct manager *m, struct backoff *out, size_t max)
{
	int64_t now = now_ms(m);
	size_t n = 0;

	if (m->backoff_until > now && n < max) {
		out[n] = (struct backoff){.until_ms = m->backoff_until};
		snprintf(
		    out[n].rule, sizeof out[n].rule, "%s", m->backoff_quota ? "quota" : "failure");
		snprintf(out[n++].why, sizeof out->why, "%s", m->backoff_why);
	}
	if (m->cooldown_until > now && n < max) {
		out[n] = (struct backoff){.rule = "cooldown", .until_ms = m->cooldown_until};
		snprintf(out[n++].why, sizeof out->why, "%s", m->cooldown_why);
	}
	for (int i = 0; i < m->nskips && n < max; i++) {
		if (m->skips[i].until <= now)
			continue;
		out[n] = (struct backoff){.rule = "stockout", .until_ms = m->skips[i].until};
		snprintf(out[n].zone, sizeof out->zone, "%s", m->skips[i].zone);
		snprintf(
		    out[n++].why, sizeof out->why, "no capacity in %s lately", m->skips[i].zone);
	}
	return n;
}

void
manager_counts(const struct manager *m, struct manager_counts *c)
{
	*c = m->counts;
}

size_t
manager_waiting(const struct manager *m, struct vm_record **out)
{
	return records_waiting_vms(m->records, out);
}

const char *
manager_ledger_problem(const struct manager *m, size_t *waiting)
{
	return records_problem(m->records, waiting);
}

static void
manager_release(uv_handle_t *h)
{
	struct manager *m = h->data;

	if (--m->handles > 0)
		return;
	while (m->vms != NULL) {
		struct mvm *v = m->vms;

		m->vms = v->next;
		mvm_free(v); /* its agent's channel went with manager_free */
	}
	forget_pass(m);
	bake_forget(m);
	records_free(m->records);
	manager_listeners_free(&m->listeners);
	free(m);
}

void
manager_free(struct manager *m)
{
	if (m == NULL)
		return;
	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		hconn_free(v->agent);
		v->agent = NULL;
	}
	uv_timer_stop(&m->timer);
	uv_close((uv_handle_t *)&m->timer, manager_release);
	uv_close((uv_handle_t *)&m->probe, manager_release);
	uv_close((uv_handle_t *)&m->drain, manager_release);
}
