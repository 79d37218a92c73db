/*
 * spillway create [--components A,B] [--reason TEXT] [--yes] [--no-wait]
 * [--json]: a VM by hand, under the daemon's rules of money and limits. On a
 * terminal without --components, the original menu of four choices; then
 * live progress until READY or failure. Without a terminal it never asks.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "api/view.h"
#include "decide/decide.h"
#include "cli/link.h"
#include "cli/report.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

enum { OPT_NO_WAIT = 256 };

struct create {
	struct cmd_ctx *ctx;
	char components[256];
	char metadata[sizeof((struct vm_record *)0)->metadata];
	const char *reason;
	bool json, wait;
	bool ask; /* on a terminal without --yes: the plan is shown and confirmed first */
	int64_t t0_ns;
	char name[64];
	char last[160];       /* the last progress line's state and zone */
	struct link_local *l; /* without a daemon: ours */
	struct daemon *d;
};

static void
join(const struct component_def **list, size_t n, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(
		    out + used, used < size ? size - used : 0, "%s%s", i ? "," : "", list[i]->name);
}

/* Each name configured; the list normalised. 0, or a usage error printed. */
static int
check_components(const struct config *cfg, const char *csv, char *out, size_t size)
{
	char why[512];

	if (config_components(cfg, csv, out, size, why, sizeof why) != 0)
		return cmd_usage_error(&cmd_create_entry, "%s", why);
	return 0;
}

static bool
ask(const char *question, char *answer, size_t size)
{
	printf("%s", question);
	fflush(stdout);
	if (fgets(answer, (int)size, stdin) == NULL)
		return false;
	answer[strcspn(answer, "\n")] = '\0';
	return true;
}

/* The original system's four choices. 0, or an exit status. */
static int
menu(struct create *c)
{
	const struct config *cfg = &c->ctx->cfg;
	size_t n = cfg->ncomponents;
	const struct component_def **sorted = xcalloc(n + 1, sizeof *sorted);
	/* 1: the two first by priority (VISION + CHATBOTS), 2: + the third, 3: all. */
	const size_t take[3] = {n < 2 ? n : 2, n < 3 ? n : 3, n};
	char answer[256], names[3][256], custom[256];
	int status = EXIT_FAIL;

	decide_by_priority(cfg->components, n, sorted);
	for (int i = 0; i < 3; i++) {
		join(sorted, take[i], names[i], sizeof names[i]);
		for (char *p = names[i]; *p; p++)
			*p = *p == ',' ? '+' : (char)toupper((unsigned char)*p);
	}
	printf("Which components should run on the VM?\n"
	       "  1) %s (recommended)\n  2) %s\n  3) all heavy components: %s\n"
	       "  4) a custom selection\n",
	    names[0], names[1], names[2]);
	for (;;) {
		if (!ask("choice [1]: ", answer, sizeof answer))
			goto out;
		if (*answer == '\0' || strcmp(answer, "1") == 0 || strcmp(answer, "2") == 0 ||
		    strcmp(answer, "3") == 0) {
			join(sorted, take[*answer ? *answer - '1' : 0], c->components,
			    sizeof c->components);
			status = 0;
			goto out;
		}
		if (strcmp(answer, "4") == 0)
			break;
		printf("please answer 1, 2, 3 or 4\n");
	}
	join(sorted, n, custom, sizeof custom);
	for (;;) {
		char *q = xasprintf("components, comma-separated (from %s): ", custom);
		bool got = ask(q, answer, sizeof answer);

		free(q);
		if (!got)
			goto out;
		if (*answer != '\0') {
			char why[512];

			if (config_components(cfg, answer, c->components, sizeof c->components, why,
			        sizeof why) == 0) {
				status = 0;
				goto out;
			}
			printf("%s\n", why); /* one line: the question comes again */
		}
	}
out:
	free(sorted);
	return status;
}

/* The plan (POST /v1/vms, dry_run) as a question: where, what it costs, what is left. */
static int
confirm(struct create *c, const json_t *plan)
{
	const struct config *cfg = &c->ctx->cfg;
	char q[768], answer[16];

	char what[160];

	/* One of the warm pool's, when there is one to take: it is ready in seconds. */
	if (jx_str(plan, "pooled.name") != NULL)
		snprintf(what, sizeof what, "%s the warm pool's %s VM %s",
		    str_eq(jx_str(plan, "pooled.waits"), "suspended") ? "resume" : "start",
		    jx_str(plan, "machine_type"), jx_str(plan, "pooled.name"));
	else
		snprintf(what, sizeof what, "create a %sVM (%s)",
		    json_is_true(json_object_get(plan, "spot")) ? "Spot " : "",
		    jx_str(plan, "machine_type"));
	snprintf(q, sizeof q,
	    "%s in %s for %s: $%.4f/h for at most %.2f h = $%.4f, leaving $%.4f of "
	    "today's $%.2f? [y/N] ",
	    what, jx_str(plan, "zone"), jx_str(plan, "components"),
	    json_number_value(json_object_get(plan, "per_hour")),
	    (double)json_integer_value(json_object_get(plan, "run_s")) / 3600.0,
	    json_number_value(json_object_get(plan, "cost")),
	    json_number_value(json_object_get(plan, "left")), cfg->daily_budget);
	if (!ask(q, answer, sizeof answer) ||
	    (strcasecmp(answer, "y") != 0 && strcasecmp(answer, "yes") != 0)) {
		printf("nothing created\n");
		return EXIT_FAIL;
	}
	return 0;
}

static double
elapsed(const struct create *c)
{
	return (double)(monotonic_ns() - c->t0_ns) / 1e9;
}

/* One line per change of state or zone: what a person watches. */
static void
progress(struct create *c, const char *state, const char *zone, const char *detail)
{
	if (!c->json)
		report_progress(stdout, c->t0_ns, state, zone, detail, c->last, sizeof c->last);
}

static int
finish(struct create *c, const json_t *vm)
{
	const char *state = jx_str(vm, "state");

	if (c->json)
		report_json_field(stdout, "vm", vm);
	else if (strcmp(state, "READY") == 0) {
		printf("%s is READY at %s after %.1f s; it stops in %lld min at the latest\n",
		    c->name, jx_str(vm, "endpoint") ? jx_str(vm, "endpoint") : "-", elapsed(c),
		    (long long)json_integer_value(json_object_get(vm, "stops_in_s")) / 60);
	} else if (!c->wait) {
		printf("%s is %s in %s; spillway status follows it\n", c->name, state,
		    jx_str(vm, "zone"));
	} else {
		printf("%s: %s%s%s\n", c->name, state, jx_str(vm, "end_reason") ? ": " : "",
		    jx_str(vm, "end_reason") ? jx_str(vm, "end_reason") : "");
	}
	return strcmp(state, "READY") == 0 || !c->wait ? EXIT_OK : EXIT_FAIL;
}

/* --- with the daemon --- */

static bool
settled_state(const char *state)
{
	return strcmp(state, "READY") == 0 || strcmp(state, "FAILED") == 0 ||
	    strcmp(state, "TERMINATED") == 0 || strcmp(state, "PREEMPTED") == 0;
}

/* How long READY is waited for: the daemon gives a VM up by then (create deadline, boot). */
static int64_t
wait_ms(const struct create *c)
{
	const struct config *cfg = &c->ctx->cfg;

	return (int64_t)((cfg->create_deadline_minutes + cfg->boot_timeout_minutes) * 60000.0) +
	    2 * cfg->health_check_interval * 1000;
}

static void
not_yet(const struct create *c, const char *state)
{
	fprintf(stderr,
	    "spillway create: %s is still %s after %.0f s, past the create deadline and the boot "
	    "timeout; spillway status follows it\n",
	    c->name, state, elapsed(c));
}

static bool
followed(const json_t *vm, void *arg)
{
	struct create *c = arg;

	progress(c, jx_str(vm, "state"), jx_str(vm, "zone"), NULL);
	return !c->wait || settled_state(jx_str(vm, "state"));
}

static int
via_daemon(struct create *c, json_t *vm)
{
	json_t *now = NULL;
	int error;

	snprintf(c->name, sizeof c->name, "%s", jx_str(vm, "name"));
	if (followed(vm, c)) {
		error = finish(c, vm);
		json_decref(vm);
		return error;
	}
	json_decref(vm);
	error = link_follow(c->ctx, "create", c->name, wait_ms(c), followed, c, &now);
	if (error == 0)
		error = finish(c, now);
	else if (error == -ETIMEDOUT) {
		not_yet(c, jx_str(now, "state"));
		error = EXIT_FAIL;
	}
	json_decref(now);
	return error;
}

/* --- without: a daemon of our own --- */

static void
local_event(const struct manager_event *e, void *arg)
{
	struct create *c = arg;
	const struct vm_record *v = e->vm;

	if (e->kind != MEV_STATE || v == NULL || strcmp(v->name, c->name) != 0)
		return;
	progress(c, vm_state_name(v->state), v->zone, NULL);
	if (v->state == VM_READY || !vm_state_alive(v->state) ||
	    (!c->wait && v->state >= VM_PROVISIONING)) {
		struct view_src s;
		json_t *vm;

		control_view(c->d, &s);
		vm = view_vm(&s, v);
		link_local_done(c->l, finish(c, vm));
		json_decref(vm);
	}
}

static void
local_expired(struct link_local *l, void *arg)
{
	struct create *c = arg;
	struct vm_record v;

	not_yet(c,
	    ledger_get(daemon_ledger(c->d), c->name, &v) == 0 ? vm_state_name(v.state) : "unknown");
	link_local_done(l, EXIT_FAIL);
}

static void
local_ready(struct link_local *l, struct daemon *d, void *arg)
{
	struct create *c = arg;
	struct decision no;

	c->l = l;
	c->d = d;
	if (c->ask) {
		struct manager_plan p;
		json_t *plan;
		int error;

		if (manager_plan(daemon_manager(d), c->components, &p) != 0) {
			fprintf(stderr, "spillway create: refused: %s\n", p.d.reason);
			link_local_done(l, EXIT_REFUSED);
			return;
		}
		error = confirm(c, plan = control_plan(&p));
		json_decref(plan);
		if (error != 0) {
			link_local_done(l, error);
			return;
		}
	}
	/* Its states come as events. */
	if (link_local_answer(l, "create",
	        manager_create(daemon_manager(d), c->components, c->reason, c->metadata, c->name,
	            sizeof c->name, &no),
	        no.reason) == 0)
		link_local_deadline(l, wait_ms(c), local_expired);
}

static int
exec_create(struct cmd_ctx *ctx, const struct args *a)
{
	struct create c = {
	    .ctx = ctx, .reason = args_get(a, 'r'), .wait = !args_has(a, OPT_NO_WAIT)};
	bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	json_t *body, *doc = NULL;
	long status;
	char *cause = NULL;
	int error;

	c.json = args_has(a, 'j');
	c.t0_ns = monotonic_ns();
	{
		/* --metadata KEY=VALUE, repeated: checked as the daemon checks it. */
		json_t *md = json_object();
		char why[256];

		for (const char *const *kv = args_all(a, 'm'); *kv != NULL; kv++) {
			const char *eq = strchr(*kv, '=');
			char *key;

			if (eq == NULL) {
				json_decref(md);
				return cmd_usage_error(
				    &cmd_create_entry, "--metadata '%s': expected KEY=VALUE", *kv);
			}
			key = xstrndup(*kv, (size_t)(eq - *kv));
			json_object_set_new(md, key, json_string(eq + 1));
			free(key);
		}
		error = vm_metadata_check(json_object_size(md) ? md : NULL, c.metadata,
		    sizeof c.metadata, why, sizeof why);
		json_decref(md);
		if (error != 0)
			return cmd_usage_error(&cmd_create_entry, "--metadata: %s", why);
	}
	if (args_has(a, 'c')) {
		if (check_components(
		        &ctx->cfg, args_get(a, 'c'), c.components, sizeof c.components))
			return EXIT_USAGE;
	} else if (tty && !c.json) {
		if ((error = menu(&c)) != 0)
			return error;
	}
	c.ask = tty && !c.json && !args_has(a, 'y');
	body = json_pack(
	    "{s:s?, s:s?}", "components", *c.components ? c.components : NULL, "reason", c.reason);
	if (*c.metadata)
		json_object_set_new(body, "metadata", json_loads(c.metadata, 0, NULL));
	if (c.ask) {
		/* The daemon's plan first; without one, ours asks once it knows (local_ready). */
		json_object_set_new(body, "dry_run", json_true());
		error = link_call(ctx, "POST", "/v1/vms", body, &status, &doc, &cause);
		json_object_del(body, "dry_run");
		if (error == 0 && status != 200) {
			json_decref(body);
			error = link_error("create", status, doc);
			json_decref(doc);
			return error;
		}
		if (error == 0 && (error = confirm(&c, json_object_get(doc, "plan"))) != 0) {
			json_decref(body);
			json_decref(doc);
			return error;
		}
		json_decref(doc);
		doc = NULL;
		if (error == 0)
			c.ask = false;
		free(cause);
		cause = NULL;
	}
	error = link_call(ctx, "POST", "/v1/vms", body, &status, &doc, &cause);
	json_decref(body);
	if (error == -ENOENT) {
		free(cause);
		return link_local(ctx, local_ready, local_event, &c);
	}
	if (error != 0) {
		fprintf(stderr, "spillway create: %s\n", cause);
		free(cause);
		return EXIT_FAIL;
	}
	if (status != 201) {
		error = link_error("create", status, doc);
		json_decref(doc);
		return error;
	}
	error = via_daemon(&c, json_incref(json_object_get(doc, "vm")));
	json_decref(doc);
	return error;
}

static const struct option options[] = {
    {"components", required_argument, NULL, 'c'},
    {"reason", required_argument, NULL, 'r'},
    {"metadata", required_argument, NULL, 'm'},
    {"yes", no_argument, NULL, 'y'},
    {"no-wait", no_argument, NULL, OPT_NO_WAIT},
    {"json", no_argument, NULL, 'j'},
    {0},
};

const struct cmd_entry cmd_create_entry = {
    .name = "create",
    .usage = "[--components A,B] [--reason TEXT] [--metadata KEY=VALUE]... [--yes] [--no-wait]\n"
             "        [--json]",
    .summary = "create a VM now, under the budget and limits, and follow it to READY",
    .options = options,
    .min_args = 0,
    .max_args = 0,
    .flags = CMD_CONFIG,
    .exec = exec_create,
};
