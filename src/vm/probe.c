/*
 * Health and leases: between passes a BOOTING VM's agent is asked every
 * quarter second for its status (READY in seconds), and each pass renews every
 * running VM's lease with its agent, signed with the VM's secret. Every call
 * to an agent is HTTP in TLS to its port, its key pinned to the one the VM
 * published in its guest attributes (read through the Compute API first,
 * mvm.asking_pin), with this daemon's certificate (startup.h); the backend's
 * own port is not reached from outside. An answer (health.h) moves a VM
 * between BOOTING, READY and UNHEALTHY, records its use and its install's
 * progress, and passes on a preemption notice. A VM has one channel to its
 * agent (mvm.agent, hconn.h), kept open from pass to pass, with at most one
 * call in flight; it is closed when the VM is forgotten or the manager freed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/tls.h"
#include "util/log.h"
#include "util/xmalloc.h"
#include "vm/health.h"
#include "vm/internal.h"
#include "vm/startup.h"

#define HEALTH_ANSWER_MAX 65536
/*
 * A booting VM is READY within this of its backend: a quarter second while
 * few boot (a workstation's VMs, a pooled one resumed in seconds), a second
 * when thousands do (each probe is a request to an agent).
 */
#define BOOT_PROBE_MS      250
#define BOOT_PROBE_MANY_MS 1000
#define BOOT_PROBE_FEW     32
#define HEALTH_IN_FLIGHT  128   /* a pass's lease calls out at once */

static void renew_more(struct manager *);

/* Up, and so checked each pass: its backend's health and use. */
static bool
up(enum vm_state s)
{
	return s == VM_BOOTING || s == VM_READY || s == VM_UNHEALTHY || s == VM_DRAINING;
}

/*
 * A boot probe's answer (the backend's health) or a pass's (the agent's, to
 * the lease: the backend's health as the VM sees it, its idleness, and a
 * preemption notice, docs/startup.md).
 */
static void
on_health(const struct http_response *r, void *arg)
{
	struct mvm *v = arg;
	struct manager *m = v->m;
	int64_t now = now_ms(m);
	struct health_answer h;
	bool probe = v->probe;

	v->probe = false;
	health_read(r->error == 0 ? r->status : 0, r->body, r->len, &h);
	/* An install that moves is no boot to give up on. */
	if (v->rec.state == VM_BOOTING && h.boot_s > v->boot_moved_s) {
		v->boot_moved_s = h.boot_s;
		v->progress_ms = now;
	}
	if (vm_bakes(&v->rec) && h.verdict != HEALTH_PREEMPTED) {
		bake_answer(v, &h); /* its backend never starts: only the install is asked */
	} else if (h.verdict == HEALTH_PREEMPTED) {
		mark_preempted(v, now, "its agent passed on Compute Engine's preemption notice");
		/* Its connections get what is left of the 30 s Compute Engine gives. */
		leave(v, "preempted by Compute Engine", VM_PREEMPTED, preempt_drain_ms(m));
	} else if (h.verdict == HEALTH_OK) {
		v->rec.health_failures = 0;
		v->rec.last_activity_ms = h.idle_s >= 0 ? now - h.idle_s * 1000 : now;
		if (v->rec.state == VM_BOOTING && vm_pooled(&v->rec)) {
			pool_warm(v); /* warm: it waits for a VM to be asked for */
		} else if (v->rec.state == VM_BOOTING) {
			cool_down(m, "a VM turned READY just now");
			set_state(v, VM_READY, "the backend answers its health check");
		} else if (v->rec.state == VM_UNHEALTHY) {
			set_state(v, VM_READY, "healthy again");
		} else if (v->rec.state == VM_READY) {
			announce(v, VM_READY, NULL); /* taken over: said once it answers */
		}
	} else if (v->rec.state != VM_BOOTING &&
	    ++v->rec.health_failures >= m->cfg->health_failures && v->rec.state == VM_READY) {
		char why[256];

		if (r->error)
			snprintf(why, sizeof why, "%s", r->error_text);
		else if (r->status == 401)
			snprintf(why, sizeof why,
			    "its agent refuses our lease: the VM's secret is not from this daemon's "
			    "agent.key");
		else
			snprintf(why, sizeof why, "the health check failed: %s", h.why);
		v->rec.unhealthy_ms = now;
		set_state(v, VM_UNHEALTHY, why);
	}
	if (!probe) {
		m->health_pending--;
		renew_more(m);
	}
}

static void
on_pin(const struct cloud_error *e, const char *value, void *arg)
{
	struct mvm *v = arg;
	struct manager *m = v->m;

	v->asking_pin = false;
	if (e->code == CLOUD_NOT_FOUND)
		return; /* not published yet: its agent is starting */
	if (e->code != CLOUD_OK) {
		char *text = cloud_error_text(e);

		log_warnx("%s: cannot read the key its agent published: %s", v->rec.name, text);
		free(text);
		return;
	}
	if (!agent_pin_valid(value)) {
		log_warnx("%s: its agent published %s as its key, which is not a key's "
		          "\"sha256//BASE64\": its agent cannot be reached",
		    v->rec.name, AGENT_PIN_KEY);
		return;
	}
	snprintf(v->rec.tls_pin, sizeof v->rec.tls_pin, "%s", value);
	/* The same state: no event (from -1 would write a second beginning, NEW -> BOOTING). */
	records_save(m->records, &v->rec, (int)v->rec.state, NULL, now_ms(m));
	if (v->rec.state == VM_BOOTING)
		probe_soon(m);
}

/* Its agent's key, from its guest attributes: asked when not known, one call at a time. */
static bool
pinned(struct manager *m, struct mvm *v)
{
	if (v->rec.tls_pin[0] != '\0')
		return true;
	if (!v->asking_pin && !m->stopping && m->o.cloud->ops->guest_attribute != NULL) {
		v->asking_pin = true;
		m->counts.api_calls++;
		if (m->o.cloud->ops->guest_attribute(m->o.cloud, v->rec.zone, v->rec.name,
		        AGENT_PIN_KEY, now_ms(m) + CALL_DEADLINE_MS, on_pin, v) != 0)
			v->asking_pin = false;
	}
	return false;
}

/*
 * A call to a VM's agent on its channel: TLS, its key pinned, our
 * certificate shown, the connection kept from one call to the next (a new
 * channel when its address or key changed).
 */
static int
agent_call(struct manager *m, struct mvm *v, const char *method, const char *path,
    const char *const *headers)
{
	int port = (int)m->cfg->agent_port;

	if (m->o.tls == NULL)
		return -ENOTCONN;
	if (!hconn_is(v->agent, v->rec.nat_ip, port, v->rec.tls_pin)) {
		hconn_free(v->agent);
		v->agent = hconn_new(m->loop, m->o.tls, v->rec.nat_ip, port, v->rec.tls_pin);
	}
	m->counts.health_checks++;
	return hconn_request(v->agent, method, path, headers,
	    (long)(m->cfg->health_timeout_s * 1000), HEALTH_ANSWER_MAX, on_health, v);
}

/* Between passes, a booting VM's agent is asked often: READY is noticed in seconds. */
static void
on_probe(uv_timer_t *t)
{
	struct manager *m = t->data;
	int booting = 0;

	for (struct mvm *v = m->vms; v != NULL; v = v->next) {
		if (v->rec.state != VM_BOOTING)
			continue;
		booting++;
		if (v->rec.nat_ip[0] == '\0' || hconn_busy(v->agent) || m->stopping || !pinned(m, v))
			continue;
		if (agent_call(m, v, "GET", "/spillway/status", NULL) == 0)
			v->probe = true;
	}
	if (booting > 0 && !m->stopping)
		uv_timer_start(&m->probe, on_probe,
		    clock_timer_ms(
		        m->o.clock, booting <= BOOT_PROBE_FEW ? BOOT_PROBE_MS : BOOT_PROBE_MANY_MS),
		    0);
}

/* A VM turned BOOTING: its backend is asked now, not at the next round of the others'. */
void
probe_soon(struct manager *m)
{
	uv_timer_start(&m->probe, on_probe, 0, 0);
}

/*
 * The pass's call to a VM's agent: the lease renewed, signed with the VM's
 * secret and the wall time (the agent checks it against its own clock).
 */
static int
renew_lease(struct manager *m, struct mvm *v)
{
	char auth[160], secret[STARTUP_SECRET_LEN + 1];
	const char *headers[] = {auth, NULL};
	int error;

	if (!pinned(m, v))
		return -EAGAIN;
	agent_secret(m->o.agent_key, v->rec.name, secret);
	lease_authorization(secret, v->rec.name, (int64_t)time(NULL), auth, sizeof auth);
	error = agent_call(m, v, "POST", "/spillway/lease", headers);
	explicit_bzero(secret, sizeof secret);
	explicit_bzero(auth, sizeof auth);
	return error;
}

void
manager_check_vm(struct manager *m, const char *name)
{
	struct mvm *v = find_vm(m, name);

	if (v == NULL || !up(v->rec.state) || v->rec.nat_ip[0] == '\0' || hconn_busy(v->agent) ||
	    m->stopping)
		return;
	/* Out of the pass's count: its answer does not move the pass's cursor. */
	if (renew_lease(m, v) == 0)
		v->probe = true;
}

/* Leases from the cursor on, at most HEALTH_IN_FLIGHT out; the pass is done with the last. */
static void
renew_more(struct manager *m)
{
	while (m->health_next != NULL && m->health_pending < HEALTH_IN_FLIGHT) {
		struct mvm *v = m->health_next;

		m->health_next = v->next;
		if (!up(v->rec.state) || v->rec.nat_ip[0] == '\0' || hconn_busy(v->agent))
			continue;
		if (renew_lease(m, v) == 0)
			m->health_pending++;
	}
	if (m->renewing && m->health_pending == 0 && m->health_next == NULL) {
		m->renewing = false;
		pass_done(m);
	}
}

/*
 * Every VM up, a bounded number at a time: a pass over thousands keeps as
 * many calls (easy handles, sockets) as HEALTH_IN_FLIGHT, not thousands.
 */
void
check_health(struct manager *m)
{
	m->renewing = true;
	m->health_pending = 0;
	m->health_next = m->vms;
	renew_more(m);
}
