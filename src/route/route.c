/*
 * The router (route.h): the listeners, the VMs as the manager reports them,
 * and the connections. A connection is two streams (net/stream.h), the
 * application's (down) and its target's (up): the local copy in plain TCP,
 * or a VM's agent in TLS, its key pinned to the one the VM published
 * (docs/offload.md). Until the target is connected (and, for a VM, its key
 * checked) nothing is read from the application, so a VM that cannot be
 * reached gives the connection to the local copy with nothing lost. The
 * router owns its routes, VMs and connections; a route removed by a reload
 * lives on until its last connection ends.
 */
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/addr.h"
#include "net/peer.h"
#include "net/stream.h"
#include "route/route.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define CONNECT_MS 5000 /* a target that does not answer (and finish TLS) by then is given up */
#define BACKLOG    511
#define ROUTE_FDS  65536 /* wanted for connections, where the hard limit allows */

struct rvm {
	char name[64];
	char host[64];               /* its address (natIP) */
	char pin[TLS_PIN_MAX];       /* its agent's key, as it published it */
	struct tls_session *session; /* the agent's newest ticket: the next handshake resumes */
	enum vm_state state;
	char components[256];
	long open;
	int64_t last_use_ms;
	struct rvm *next;
};

struct route {
	struct router *r;
	char *component, *listen, *local;
	struct sockaddr_storage local_addr;
	uv_tcp_t server;
	bool gone;  /* removed by a reload: freed once closed and unused */
	long conns; /* connections that point here */
	enum route_local copy; /* its local copy, for new connections (router_local) */
	long local_open;       /* connections to the local copy now */
	bool local_drained;    /* the last of them ended: to say (on_later) */
	struct route_stats st;
	struct route *next;
};

enum conn_state { C_WAITING, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSING };

/*
 * Its streams are allocated apart: a target given up is still closing while
 * the next one is tried. Freed when its last handle (streams, timer) closed.
 */
struct conn {
	struct route *route;
	char vm[64]; /* the VM it goes to; "" local */
	bool local;  /* it goes to the local copy (counted in route.local_open) */
	bool moved;  /* its VM left while it connected: it goes where the route says now */
	enum conn_state state;
	struct stream *down, *up;
	uv_connect_t connect;
	uv_timer_t timer; /* waiting for a VM, or for a target to answer */
	int handles;
	struct conn *next, *prev;
};

struct router {
	uv_loop_t *loop;
	struct router_opts o;
	const struct config *cfg;
	struct route *routes;
	struct rvm *vms; /* in the order they came; byname: the same, by name */
	void *byname;
	struct conn *conns;
	uv_timer_t later; /* says drained VMs on the loop's next turn */
	bool freed;
	int handles; /* listeners and the timer, not yet closed */
};

static void route_conn(struct conn *);
static void to_local(struct conn *);
static void conn_close(struct conn *, bool reset);
static void connect_to(struct conn *, const struct sockaddr *);

static int64_t
now_ms(const struct router *r)
{
	return clock_now_ms(r->o.clock);
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct rvm *)a)->name, ((const struct rvm *)b)->name);
}

/*
 * By name, in a tree: the manager's pass asks for every VM (router_vm_open),
 * so a scan of the list would make the pass quadratic in the VMs.
 */
static struct rvm *
find_vm(const struct router *r, const char *name)
{
	struct rvm key;
	void *const *found;

	snprintf(key.name, sizeof key.name, "%s", name);
	found = tfind(&key, &r->byname, by_name);
	return found != NULL ? *(struct rvm *const *)found : NULL;
}

/* Where a new connection to this route goes now; *vm the chosen VM. */
static void
choose(const struct route *rt, struct route_choice *c, struct rvm **vm)
{
	const struct router *r = rt->r;
	struct route_vm_view *views;
	struct rvm **which;
	size_t n = 0;

	for (struct rvm *v = r->vms; v != NULL; v = v->next)
		n++;
	views = xcalloc(n + 1, sizeof *views);
	which = xcalloc(n + 1, sizeof *which);
	n = 0;
	for (struct rvm *v = r->vms; v != NULL; v = v->next) {
		views[n] = (struct route_vm_view){.name = v->name,
		    .state = v->state,
		    .serves = components_include(v->components, rt->component),
		    .open = v->open};
		which[n++] = v;
	}
	route_choose(rt->component, views, n, rt->copy, r->cfg->route_wait_s, c);
	*vm = c->to == ROUTE_TO_VM ? which[c->vm] : NULL;
	free(views);
	free(which);
}

/* --- closing --- */

static void
route_free(struct route *rt)
{
	free(rt->component);
	free(rt->listen);
	free(rt->local);
	free(rt);
}

static void
conn_handle_gone(struct conn *c)
{
	struct route *rt = c->route;

	if (--c->handles > 0)
		return;
	if (--rt->conns == 0 && rt->gone && rt->server.data == NULL)
		route_free(rt);
	free(c);
}

static void
on_stream_closed(struct stream *s)
{
	conn_handle_gone(stream_data(s));
}

static void
on_timer_closed(uv_handle_t *h)
{
	conn_handle_gone(h->data);
}

/* Draining VMs with no connection left: the manager hears it (it deletes them). */
static void
on_later(uv_timer_t *t)
{
	struct router *r = t->data;
	char(*names)[64];
	size_t n = 0;

	for (struct rvm *v = r->vms; v != NULL; v = v->next)
		n += v->state == VM_DRAINING && v->open == 0;
	/* Collected first: what the manager does changes the list. */
	names = xcalloc(n + 1, sizeof *names);
	n = 0;
	for (struct rvm *v = r->vms; v != NULL; v = v->next)
		if (v->state == VM_DRAINING && v->open == 0)
			snprintf(names[n++], sizeof names[0], "%s", v->name);
	for (size_t i = 0; i < n && r->o.drained != NULL; i++)
		r->o.drained(r->o.arg, names[i]);
	free(names);
	/* Routes whose local copy has no connection left; the same care for the list. */
	n = 0;
	for (struct route *rt = r->routes; rt != NULL; rt = rt->next)
		n += rt->local_drained;
	names = xcalloc(n + 1, sizeof *names);
	n = 0;
	for (struct route *rt = r->routes; rt != NULL; rt = rt->next)
		if (rt->local_drained) {
			rt->local_drained = false;
			snprintf(names[n++], sizeof names[0], "%s", rt->component);
		}
	for (size_t i = 0; i < n && r->o.local_drained != NULL; i++)
		r->o.local_drained(r->o.arg, names[i]);
	free(names);
}

/* A connection no longer the local copy's: the offload may be waiting for its last. */
static void
local_release(struct conn *c)
{
	struct route *rt = c->route;

	if (!c->local)
		return;
	c->local = false;
	if (--rt->local_open == 0 && !rt->r->freed) {
		rt->local_drained = true;
		uv_timer_start(&rt->r->later, on_later, 0, 0);
	}
}

/* A connection no longer the VM's (it ends, or goes local): a draining VM may be done. */
static void
vm_release(struct conn *c)
{
	struct router *r = c->route->r;
	struct rvm *v;

	if (c->vm[0] != '\0' && (v = find_vm(r, c->vm)) != NULL) {
		if (c->up != NULL)
			tls_session_keep(&v->session, stream_get_tls(c->up));
		v->open--;
		v->last_use_ms = now_ms(r);
		/* Not from here: the manager's answer (the delete) closes connections too. */
		if (v->state == VM_DRAINING && v->open == 0 && !r->freed)
			uv_timer_start(&r->later, on_later, 0, 0);
	}
	c->vm[0] = '\0';
}

static void
conn_close(struct conn *c, bool reset)
{
	struct route *rt = c->route;

	if (c->state == C_CLOSING)
		return;
	vm_release(c);
	local_release(c);
	c->state = C_CLOSING;
	rt->st.open--;
	rt->st.last_use_ms = now_ms(rt->r);
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		rt->r->conns = c->next;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
	stream_close(c->up, reset);
	stream_close(c->down, reset);
	c->up = c->down = NULL;
}

/* --- moving bytes: the streams do it; the route counts --- */

static void
on_moved(struct stream *s, size_t n)
{
	struct conn *c = stream_data(s);
	struct route *rt = c->route;
	struct rvm *v;

	*(s == c->down ? &rt->st.bytes_up : &rt->st.bytes_down) += (uint64_t)n;
	rt->st.last_use_ms = now_ms(rt->r);
	if (c->vm[0] != '\0' && (v = find_vm(rt->r, c->vm)) != NULL)
		v->last_use_ms = rt->st.last_use_ms;
}

static void
on_ended(struct stream *s, bool reset, const char *why)
{
	struct conn *c = stream_data(s);

	if (reset)
		log_debug("route %s: the %s's side: %s", c->route->component,
		    s == c->down ? "application" : "target", why);
	conn_close(c, reset);
}

static void on_handshake(struct stream *, int error, const char *why);

static const struct stream_events events = {
    .handshake = on_handshake,
    .moved = on_moved,
    .ended = on_ended,
    .closed = on_stream_closed,
};

static struct stream *
stream_for(struct conn *c)
{
	struct stream *s = stream_new(c->route->r->loop, &events, c);

	c->handles++;
	return s;
}

/* The target is there (and a VM's key is the pinned one): bytes pass. */
static void
open_conn(struct conn *c)
{
	struct router *r = c->route->r;
	struct rvm *v;

	uv_timer_stop(&c->timer);
	c->state = C_OPEN;
	if (c->vm[0] != '\0' && (v = find_vm(r, c->vm)) != NULL)
		v->last_use_ms = now_ms(r);
	stream_join(c->down, c->up);
}

/* --- connecting --- */

static void
on_wait_over(uv_timer_t *t)
{
	struct conn *c = t->data;

	log_info("route %s: no VM READY within route.wait_s (%g s): connection closed",
	    c->route->component, c->route->r->cfg->route_wait_s);
	conn_close(c, false);
}

/*
 * A VM that could not be reached: nothing was sent, so the local copy takes
 * the connection; one that is stopped or starts (the VM may be gone before
 * spillway knew) is waited for, up to route.wait_s, else it is closed.
 */
static void
vm_unreachable(struct conn *c, const char *why)
{
	struct route *rt = c->route;
	struct router *r = rt->r;
	bool wait =
	    rt->copy != ROUTE_LOCAL_UP && rt->copy != ROUTE_LOCAL_NONE && r->cfg->route_wait_s > 0;
	char vm[64];

	snprintf(vm, sizeof vm, "%s", c->vm);
	log_warnx("route %s: %s cannot be reached (%s): the connection %s", rt->component, vm, why,
	    rt->copy == ROUTE_LOCAL_UP ? "goes to the local copy"
	        : wait                 ? "waits for its local copy (route.wait_s)"
	                               : "goes nowhere");
	if (r->o.unreachable != NULL)
		r->o.unreachable(r->o.arg, vm, why);
	if (c->state == C_CLOSING)
		return;
	if (rt->copy != ROUTE_LOCAL_UP && !wait) {
		conn_close(c, false);
		return;
	}
	vm_release(c);
	if (rt->copy == ROUTE_LOCAL_UP) {
		to_local(c);
		return;
	}
	c->state = C_WAITING;
	uv_timer_start(&c->timer, on_wait_over,
	    clock_timer_ms(r->o.clock, (int64_t)(r->cfg->route_wait_s * 1000)), 0);
}

/* The target did not answer, or not finish TLS: given up (a connect in flight hears it). */
static void
on_connect_timeout(uv_timer_t *t)
{
	struct conn *c = t->data;
	enum conn_state was = c->state;

	stream_close(c->up, false);
	c->up = NULL;
	if (was == C_HANDSHAKE)
		vm_unreachable(c, "its agent did not complete the TLS handshake in time");
}

static void
on_handshake(struct stream *s, int error, const char *why)
{
	struct conn *c = stream_data(s);
	char text[320];

	if (c->state != C_HANDSHAKE || s != c->up)
		return;
	if (error == 0) {
		open_conn(c);
		return;
	}
	if (tls_mismatch(stream_get_tls(s)))
		log_warnx("route %s: %s's agent presented a key that is not the one the VM "
		          "published in its guest attributes (%s): refused; someone may be "
		          "between this machine and the VM",
		    c->route->component, c->vm, why);
	snprintf(text, sizeof text, "TLS to its agent: %s", why);
	stream_close(c->up, false);
	c->up = NULL;
	vm_unreachable(c, text);
}

static void
on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	struct router *r = c->route->r;
	struct rvm *v;
	struct tls *t;

	if (c->state != C_CONNECTING)
		return;
	uv_timer_stop(&c->timer);
	if (c->moved) {
		c->moved = false;
		c->state = C_WAITING;
		route_conn(c);
		return;
	}
	if (status != 0) {
		const char *why =
		    status == UV_ECANCELED ? "it did not answer in time" : uv_strerror(status);

		stream_close(c->up, false);
		c->up = NULL;
		if (c->vm[0] != '\0') {
			vm_unreachable(c, why);
		} else {
			log_warnx(
			    "route %s: its local copy at %s cannot be reached (%s): connection "
			    "closed",
			    c->route->component, c->route->local, why);
			conn_close(c, false);
		}
		return;
	}
	if (c->vm[0] == '\0') {
		open_conn(c);
		return;
	}
	/* To a VM: TLS to its agent, which passes the bytes to the backend on the VM. */
	if ((v = find_vm(r, c->vm)) == NULL || *v->pin == '\0') {
		stream_close(c->up, false);
		c->up = NULL;
		vm_unreachable(c, "no key of its agent is known yet");
		return;
	}
	c->state = C_HANDSHAKE;
	t = tls_new(r->o.tls, v->pin, TLS_ALPN_FORWARD);
	tls_resume(t, v->session);
	stream_tls(c->up, t);
	uv_timer_start(&c->timer, on_connect_timeout, CONNECT_MS, 0);
	stream_start(c->up);
}

static void
connect_to(struct conn *c, const struct sockaddr *to)
{
	c->state = C_CONNECTING;
	c->up = stream_for(c);
	c->connect.data = c;
	if (uv_tcp_connect(&c->connect, stream_tcp(c->up), to, on_connect) != 0) {
		conn_close(c, false);
		return;
	}
	uv_timer_start(&c->timer, on_connect_timeout, CONNECT_MS, 0);
}

/* To the local copy, counted there until it ends. */
static void
to_local(struct conn *c)
{
	c->local = true;
	c->route->local_open++;
	connect_to(c, (struct sockaddr *)&c->route->local_addr);
}

/* A connection with no target yet (new, waiting, or refused by a VM): where it goes now. */
static void
route_conn(struct conn *c)
{
	struct route *rt = c->route;
	struct router *r = rt->r;
	struct route_choice ch;
	struct sockaddr_storage ss;
	char text[ADDR_TEXT_MAX + 8], why[128];
	struct rvm *v;

	choose(rt, &ch, &v);
	switch (ch.to) {
	case ROUTE_TO_WAIT:
		if (!uv_is_active((uv_handle_t *)&c->timer))
			uv_timer_start(&c->timer, on_wait_over,
			    clock_timer_ms(r->o.clock, (int64_t)(r->cfg->route_wait_s * 1000)), 0);
		break;
	case ROUTE_TO_NONE:
		log_info("route %s: connection closed: %s", rt->component, ch.why);
		conn_close(c, false);
		break;
	case ROUTE_TO_LOCAL:
		uv_timer_stop(&c->timer);
		c->vm[0] = '\0';
		to_local(c);
		break;
	case ROUTE_TO_VM:
		uv_timer_stop(&c->timer);
		/* Counted from now: a connection on its way to a VM keeps it from draining away. */
		snprintf(c->vm, sizeof c->vm, "%s", v->name);
		v->open++;
		snprintf(text, sizeof text, "%s:%lld", v->host, (long long)r->cfg->agent_port);
		if (addr_parse(text, &ss, why, sizeof why) != 0) {
			vm_unreachable(c, why);
			break;
		}
		connect_to(c, (struct sockaddr *)&ss);
		break;
	}
}

/* --- accepting --- */

/* Another user's process at a route: refused unless route.allow_other_users. */
static bool
peer_allowed(struct route *rt, uv_tcp_t *tcp)
{
	struct sockaddr_storage peer, mine;
	int n = sizeof peer, m = sizeof mine, error;
	uid_t uid;
	char who[ADDR_TEXT_MAX];

	if (rt->r->cfg->route_allow_other_users)
		return true;
	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&peer, &n) != 0 ||
	    uv_tcp_getsockname(tcp, (struct sockaddr *)&mine, &m) != 0)
		return false;
	addr_text((struct sockaddr *)&peer, who, sizeof who);
	if ((error = peer_uid((struct sockaddr *)&peer, (struct sockaddr *)&mine, &uid)) != 0) {
		log_warnx(
		    "route %s: a connection from %s refused: whose it is cannot be told (%s); "
		    "route.allow_other_users = true lets every local user in",
		    rt->component, who, strerror(-error));
		return false;
	}
	if (uid == getuid())
		return true;
	log_warnx("route %s: a connection from %s refused: it belongs to uid %u, not this user "
	          "(route.allow_other_users = true lets other users in)",
	    rt->component, who, (unsigned)uid);
	return false;
}

static void
on_accept(uv_stream_t *server, int status)
{
	struct route *rt = server->data;
	struct router *r = rt->r;
	struct conn *c;

	if (status != 0) {
		log_warnx("route %s: accept: %s", rt->component, uv_strerror(status));
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->route = rt;
	rt->conns++;
	rt->st.open++;
	rt->st.last_use_ms = now_ms(r);
	c->down = stream_for(c);
	uv_timer_init(r->loop, &c->timer);
	c->timer.data = c;
	c->handles++;
	c->state = C_WAITING;
	c->next = r->conns;
	if (r->conns != NULL)
		r->conns->prev = c;
	r->conns = c;
	if (uv_accept(server, (uv_stream_t *)stream_tcp(c->down)) != 0) {
		conn_close(c, false);
		return;
	}
	rt->st.total++;
	if (!peer_allowed(rt, stream_tcp(c->down))) {
		rt->st.refused++;
		conn_close(c, false);
		return;
	}
	route_conn(c);
}

/* --- routes and VMs --- */

static void
on_later_closed(uv_handle_t *h)
{
	struct router *r = h->data;

	if (--r->handles == 0)
		free(r);
}

static void
on_server_closed(uv_handle_t *h)
{
	struct route *rt = h->data;
	struct router *r = rt->r;

	rt->server.data = NULL;
	if (rt->conns == 0)
		route_free(rt);
	if (--r->handles == 0 && r->freed)
		free(r);
}

/* Its listener closed; it is freed with its last connection. */
static void
route_drop(struct route *rt)
{
	rt->gone = true;
	uv_close((uv_handle_t *)&rt->server, on_server_closed);
}

static int
route_add(struct router *r, const struct component_def *def, struct route **out, char **cause)
{
	struct route *rt = xcalloc(1, sizeof *rt);
	struct sockaddr_storage ss;
	char why[128];
	int error;

	rt->r = r;
	rt->component = xstrdup(def->name);
	rt->listen = xstrdup(def->listen);
	rt->local = xstrdup(def->local);
	rt->copy = *def->local != '\0' ? ROUTE_LOCAL_UP : ROUTE_LOCAL_NONE;
	if (addr_parse(def->listen, &ss, why, sizeof why) != 0 ||
	    (*def->local != '\0' &&
	        addr_parse(def->local, &rt->local_addr, why, sizeof why) != 0)) {
		*cause = xasprintf("component '%s': %s", def->name, why); /* checked at load */
		route_free(rt);
		return -EINVAL;
	}
	uv_tcp_init(r->loop, &rt->server);
	rt->server.data = rt;
	r->handles++;
	if ((error = uv_tcp_bind(&rt->server, (struct sockaddr *)&ss, 0)) != 0 ||
	    (error = uv_listen((uv_stream_t *)&rt->server, BACKLOG, on_accept)) != 0) {
		*cause = xasprintf("component '%s' cannot listen on %s: %s%s", def->name,
		    def->listen, uv_strerror(error),
		    error == UV_EADDRINUSE ? " (another program, or another spillway, has it: give "
		                             "the component another listen address)"
		                           : "");
		route_drop(rt);
		return error;
	}
	snprintf(rt->st.component, sizeof rt->st.component, "%s", def->name);
	snprintf(rt->st.listen, sizeof rt->st.listen, "%s", def->listen);
	snprintf(rt->st.local, sizeof rt->st.local, "%s", def->local);
	*out = rt;
	return 0;
}

static struct route *
find_route(struct router *r, const char *listen)
{
	for (struct route *rt = r->routes; rt != NULL; rt = rt->next)
		if (strcmp(rt->listen, listen) == 0)
			return rt;
	return NULL;
}

int
router_set_config(struct router *r, const struct config *cfg, char **cause)
{
	struct route *kept = NULL, **tail = &kept, *rt, *next;
	int error = 0;

	/* Routes whose address stays are kept (and take the new local and component). */
	for (size_t i = 0; i < cfg->ncomponents && error == 0; i++) {
		const struct component_def *def = &cfg->components[i];

		if (*def->listen == '\0')
			continue;
		if ((rt = find_route(r, def->listen)) != NULL) {
			/* Out of the old list, into the new. */
			struct route **pp = &r->routes;

			while (*pp != rt)
				pp = &(*pp)->next;
			*pp = rt->next;
			free(rt->component);
			free(rt->local);
			rt->component = xstrdup(def->name);
			rt->local = xstrdup(def->local);
			/* A copy spillway runs keeps what it said of it (router_local). */
			if (*def->local == '\0')
				rt->copy = ROUTE_LOCAL_NONE;
			else if (rt->copy == ROUTE_LOCAL_NONE || !component_managed(def))
				rt->copy = ROUTE_LOCAL_UP;
			memset(&rt->local_addr, 0, sizeof rt->local_addr);
			if (*def->local != '\0') {
				char why[128];

				addr_parse(def->local, &rt->local_addr, why, sizeof why);
			}
			snprintf(rt->st.component, sizeof rt->st.component, "%s", def->name);
			snprintf(rt->st.local, sizeof rt->st.local, "%s", def->local);
		} else if ((error = route_add(r, def, &rt, cause)) != 0) {
			break;
		}
		rt->next = NULL;
		*tail = rt;
		tail = &rt->next;
	}
	/*
	 * What is left of the old list is no longer configured, and closed; after
	 * a failure it stays, beside what could be set up.
	 */
	for (rt = r->routes; rt != NULL; rt = next) {
		next = rt->next;
		if (error == 0) {
			route_drop(rt);
		} else {
			rt->next = NULL;
			*tail = rt;
			tail = &rt->next;
		}
	}
	r->routes = kept;
	r->cfg = cfg;
	return error;
}

int
router_new(uv_loop_t *loop, const struct config *cfg, const struct router_opts *o,
    struct router **out, char **cause)
{
	struct router *r = xcalloc(1, sizeof *r);
	int error;

	r->loop = loop;
	r->o = *o;
	r->cfg = cfg;
	uv_timer_init(loop, &r->later);
	r->later.data = r;
	r->handles++;
	if ((error = router_set_config(r, cfg, cause)) != 0) {
		router_free(r);
		return error;
	}
	/* Each connection holds two descriptors: a soft limit of 1,024 is 500 connections. */
	if (r->routes != NULL)
		raise_fd_limit(ROUTE_FDS);
	*out = r;
	return 0;
}

/* Connections waiting for a VM: one may be READY now. */
static void
serve_waiting(struct router *r)
{
	struct conn *c, *next;

	for (c = r->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == C_WAITING)
			route_conn(c);
	}
}

/*
 * A VM that leaves: its open connections are reset (the application's next
 * one goes elsewhere); those still on their way to it had nothing read from
 * the application, and go where the route says now (its local copy, or wait).
 */
static void
vm_leaves(struct router *r, struct rvm *v)
{
	struct conn *c, *next;

	for (c = r->conns; c != NULL; c = next) {
		next = c->next;
		if (strcmp(c->vm, v->name) != 0)
			continue;
		if (c->state == C_OPEN) {
			conn_close(c, true);
			continue;
		}
		uv_timer_stop(&c->timer);
		stream_close(c->up, false);
		c->up = NULL;
		vm_release(c);
		if (c->state == C_CONNECTING) {
			c->moved = true; /* its connect's end (cancelled) routes it */
			continue;
		}
		c->state = C_WAITING;
		route_conn(c);
	}
}

void
router_vm(struct router *r, const struct vm_record *rec)
{
	struct rvm *v = find_vm(r, rec->name), **pp;
	bool leaves = !vm_state_alive(rec->state) || rec->state == VM_TERMINATING;

	if (v == NULL && leaves)
		return;
	if (v == NULL) {
		v = xcalloc(1, sizeof *v);
		snprintf(v->name, sizeof v->name, "%s", rec->name);
		v->next = r->vms;
		r->vms = v;
		tsearch(v, &r->byname, by_name);
	}
	v->state = rec->state;
	/* Another address or key (a new agent): what its predecessor gave is not resumed. */
	if (strcmp(v->pin, rec->tls_pin) != 0 || strcmp(v->host, rec->nat_ip) != 0) {
		tls_session_free(v->session);
		v->session = NULL;
	}
	snprintf(v->host, sizeof v->host, "%s", rec->nat_ip);
	snprintf(v->pin, sizeof v->pin, "%s", rec->tls_pin);
	snprintf(v->components, sizeof v->components, "%s", rec->components);
	if (leaves) {
		vm_leaves(r, v);
		for (pp = &r->vms; *pp != v; pp = &(*pp)->next)
			;
		*pp = v->next;
		tdelete(v, &r->byname, by_name);
		tls_session_free(v->session);
		free(v);
		serve_waiting(r);
		return;
	}
	if (rec->state == VM_READY)
		serve_waiting(r);
}

static struct route *
route_of(const struct router *r, const char *component)
{
	for (struct route *rt = r->routes; rt != NULL; rt = rt->next)
		if (strcmp(rt->component, component) == 0)
			return rt;
	return NULL;
}

void
router_local(struct router *r, const char *component, enum route_local copy, const char *state)
{
	struct route *rt = route_of(r, component);

	if (rt == NULL || *rt->local == '\0')
		return;
	snprintf(rt->st.local_copy, sizeof rt->st.local_copy, "%s", state != NULL ? state : "");
	if (rt->copy == copy)
		return;
	rt->copy = copy;
	/* Waiting connections: one may go to the copy now, or has nothing left to wait for. */
	serve_waiting(r);
}

long
router_local_open(const struct router *r, const char *component)
{
	const struct route *rt = route_of(r, component);

	return rt != NULL ? rt->local_open : 0;
}

long
router_vm_open(const struct router *r, const char *vm, int64_t *last_use_ms)
{
	const struct rvm *v = find_vm(r, vm);

	*last_use_ms = v != NULL ? v->last_use_ms : 0;
	return v != NULL ? v->open : 0;
}

size_t
router_stats(const struct router *r, struct route_stats **out)
{
	size_t n = 0, i = 0;

	for (const struct route *rt = r->routes; rt != NULL; rt = rt->next)
		n++;
	*out = xcalloc(n + 1, sizeof **out);
	for (const struct route *rt = r->routes; rt != NULL; rt = rt->next, i++) {
		struct route_choice ch;
		struct rvm *v;

		(*out)[i] = rt->st;
		(*out)[i].local_open = rt->local_open;
		for (const struct conn *c = r->conns; c != NULL; c = c->next)
			(*out)[i].waiting += c->route == rt && c->state == C_WAITING;
		choose(rt, &ch, &v);
		snprintf((*out)[i].to, sizeof(*out)[i].to, "%s", route_to_name(ch.to));
		snprintf((*out)[i].vm, sizeof(*out)[i].vm, "%s", v != NULL ? v->name : "");
		snprintf((*out)[i].why, sizeof(*out)[i].why, "%s", ch.why);
	}
	return n;
}

void
router_free(struct router *r)
{
	struct route *rt, *next;
	struct rvm *v, *vnext;

	if (r == NULL)
		return;
	r->freed = true;
	while (r->conns != NULL)
		conn_close(r->conns, false);
	for (rt = r->routes; rt != NULL; rt = next) {
		next = rt->next;
		route_drop(rt);
	}
	r->routes = NULL;
	for (v = r->vms; v != NULL; v = vnext) {
		vnext = v->next;
		tdelete(v, &r->byname, by_name);
		tls_session_free(v->session);
		free(v);
	}
	r->vms = NULL;
	uv_close((uv_handle_t *)&r->later, on_later_closed);
}
