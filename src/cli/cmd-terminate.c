/*
 * spillway terminate [NAME... | --all] [--yes] [--json]: delete VMs. Lists
 * what will be deleted with its cost so far, asks on a terminal (elsewhere
 * --yes is needed), waits for each to be gone and prints its final cost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/control.h"
#include "api/view.h"
#include "cli/link.h"
#include "cli/report.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

static bool
alive(const char *state)
{
	enum vm_state s;

	return state != NULL && vm_state_parse(state, &s) == 0 && vm_state_alive(s);
}

struct terminate {
	struct cmd_ctx *ctx;
	json_t *chosen; /* the VM documents to delete */
	json_t *done;   /* their documents once gone */
	bool json;
	struct link_local *l;
	struct daemon *d;
};

/* The active VMs named (or all): 0, or a usage error printed. */
static int
choose(struct terminate *t, const json_t *vms, const struct args *a)
{
	size_t i;
	json_t *vm;

	t->chosen = json_array();
	if (args_has(a, 'a')) {
		json_array_foreach (vms, i, vm)
			json_array_append(t->chosen, vm);
		return 0;
	}
	for (int k = 0; k < a->npos; k++) {
		bool found = false;

		json_array_foreach (vms, i, vm)
			if (strcmp(jx_str(vm, "name"), a->pos[k]) == 0) {
				json_array_append(t->chosen, vm);
				found = true;
			}
		if (!found)
			return cmd_usage_error(&cmd_terminate_entry,
			    "no active VM named '%s' (spillway status lists them)", a->pos[k]);
	}
	return 0;
}

static void
said(struct terminate *t, const json_t *vm)
{
	json_array_append(t->done, (json_t *)vm);
	if (!t->json)
		printf("%s: %s after %lld s, $%.4f in all\n", jx_str(vm, "name"),
		    jx_str(vm, "state"),
		    (long long)json_integer_value(json_object_get(vm, "uptime_s")),
		    json_real_value(json_object_get(vm, "cost")));
}

static int
report(struct terminate *t)
{
	if (t->json)
		report_json_field(stdout, "vms", t->done);
	return json_array_size(t->done) == json_array_size(t->chosen) ? EXIT_OK : EXIT_FAIL;
}

/* --- with the daemon: DELETE each, then follow each to its end --- */

static bool
gone(const json_t *vm, void *arg)
{
	return !alive(jx_str(vm, "state"));
}

/* How long a delete is waited for: what the daemon's shutdown waits, too. */
static int64_t
wait_ms(const struct terminate *t)
{
	return (int64_t)(t->ctx->cfg.shutdown_timeout_s * 1000);
}

static void
still_going(const struct terminate *t, const char *name, const char *state, const char *then)
{
	fprintf(stderr,
	    "spillway terminate: %s is still %s after %.0f s (daemon.shutdown_timeout_s); %s\n",
	    name, state, t->ctx->cfg.shutdown_timeout_s, then);
}

static int
via_daemon(struct terminate *t)
{
	size_t i;
	json_t *vm, *doc;
	long status;
	char *cause = NULL, path[128];
	int error;

	json_array_foreach (t->chosen, i, vm) {
		snprintf(path, sizeof path, "/v1/vms/%s", jx_str(vm, "name"));
		if (link_call(t->ctx, "DELETE", path, NULL, &status, &doc, &cause) != 0) {
			fprintf(stderr, "spillway terminate: %s\n", cause);
			free(cause);
			return EXIT_FAIL;
		}
		if (status != 202)
			link_error("terminate", status, doc);
		json_decref(doc);
	}
	json_array_foreach (t->chosen, i, vm) {
		json_t *now = NULL;

		error = link_follow(
		    t->ctx, "terminate", jx_str(vm, "name"), wait_ms(t), gone, NULL, &now);
		if (error == 0)
			said(t, now);
		else if (error == -ETIMEDOUT)
			still_going(t, jx_str(vm, "name"), jx_str(now, "state"),
			    "the daemon goes on deleting it: spillway status follows it");
		json_decref(now);
		if (error > 0)
			return error;
	}
	return report(t);
}

/* --- without: a daemon of our own deletes them --- */

/* Whether a list of VM documents holds this name. */
static bool
holds(const json_t *list, const char *name)
{
	size_t i;
	json_t *vm;

	json_array_foreach (list, i, vm)
		if (strcmp(jx_str(vm, "name"), name) == 0)
			return true;
	return false;
}

static void
local_event(const struct manager_event *e, void *arg)
{
	struct terminate *t = arg;
	struct view_src s;
	json_t *vm;

	if (e->kind != MEV_STATE || e->vm == NULL || vm_state_alive(e->vm->state) ||
	    !holds(t->chosen, e->vm->name) || holds(t->done, e->vm->name))
		return;
	control_view(t->d, &s);
	said(t, vm = view_vm(&s, e->vm));
	json_decref(vm);
	if (json_array_size(t->done) == json_array_size(t->chosen))
		link_local_done(t->l, report(t));
}

/* The deletes are not done in time: say which, keep them (the next start goes on). */
static void
local_expired(struct link_local *l, void *arg)
{
	struct terminate *t = arg;
	size_t i;
	json_t *vm;

	json_array_foreach (t->chosen, i, vm) {
		if (!holds(t->done, jx_str(vm, "name")))
			still_going(t, jx_str(vm, "name"), "TERMINATING",
			    "its delete is in the ledger: the next spillway run or terminate goes on");
	}
	link_local_done(l, report(t));
}

static void
local_ready(struct link_local *l, struct daemon *d, void *arg)
{
	struct terminate *t = arg;
	size_t i;
	json_t *vm;

	t->l = l;
	t->d = d;
	json_array_foreach (t->chosen, i, vm) {
		const char *name = jx_str(vm, "name");
		struct vm_record rec;

		if (manager_terminate(daemon_manager(d), name, "terminated by hand") == 0)
			continue;
		/* Ended before we could ask (the first look at the cloud found it gone): said. */
		if (ledger_get(daemon_ledger(d), name, &rec) == 0 && !vm_state_alive(rec.state))
			local_event(&(struct manager_event){.kind = MEV_STATE, .vm = &rec}, t);
		else
			fprintf(stderr, "spillway terminate: %s is no longer running\n", name);
	}
	/* All of them may have ended already (local_event said so and stopped). */
	if (json_array_size(t->done) < json_array_size(t->chosen))
		link_local_deadline(l, wait_ms(t), local_expired);
}

static int
exec_terminate(struct cmd_ctx *ctx, const struct args *a)
{
	const struct cmd_entry *e = &cmd_terminate_entry;
	struct terminate t = {.ctx = ctx, .json = args_has(a, 'j'), .done = json_array()};
	bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	json_t *list = NULL, *ping = NULL;
	long status;
	char answer[16], *cause = NULL;
	int error;

	if (args_has(a, 'a') == (a->npos > 0)) {
		json_decref(t.done);
		return cmd_usage_error(e, "name the VMs to delete, or --all");
	}
	if (!tty && !args_has(a, 'y')) {
		json_decref(t.done);
		return cmd_usage_error(e, "not on a terminal, so nobody can confirm: add --yes");
	}
	if ((error = link_get(ctx, "/v1/vms", &status, &list)) != 0)
		goto out;
	{
		/* Only what is alive can be deleted. */
		json_t *active = json_array(), *vm;
		size_t i;

		json_array_foreach (json_object_get(list, "vms"), i, vm)
			if (alive(jx_str(vm, "state")))
				json_array_append(active, vm);
		json_decref(list);
		list = active;
	}
	if ((error = choose(&t, list, a)) != 0)
		goto out;
	if (json_array_size(t.chosen) == 0) {
		if (!t.json)
			printf("no active VM: nothing to delete\n");
		error = report(&t);
		goto out;
	}
	if (!t.json || !args_has(a, 'y')) {
		printf("to delete:\n");
		report_vms(stdout, t.chosen, false);
	}
	if (!args_has(a, 'y')) {
		printf("delete %zu VM%s? [y/N] ", json_array_size(t.chosen),
		    json_array_size(t.chosen) == 1 ? "" : "s");
		fflush(stdout);
		if (fgets(answer, sizeof answer, stdin) == NULL ||
		    (strcasecmp(str_trim(answer), "y") != 0 &&
		        strcasecmp(str_trim(answer), "yes") != 0)) {
			printf("nothing deleted\n");
			error = EXIT_FAIL;
			goto out;
		}
	}
	/* The daemon, if one runs, deletes them; else a daemon of ours. */
	error = link_call(ctx, "GET", "/v1/vms", NULL, &status, &ping, &cause);
	json_decref(ping);
	if (error == 0) {
		error = via_daemon(&t);
	} else if (error == -ENOENT) {
		error = link_local(ctx, local_ready, local_event, &t);
	} else {
		fprintf(stderr, "spillway terminate: %s\n", cause);
		error = EXIT_FAIL;
	}
	free(cause);
out:
	json_decref(list);
	json_decref(t.chosen);
	json_decref(t.done);
	return error;
}

static const struct option options[] = {
    {"all", no_argument, NULL, 'a'},
    {"yes", no_argument, NULL, 'y'},
    {"json", no_argument, NULL, 'j'},
    {0},
};

const struct cmd_entry cmd_terminate_entry = {
    .name = "terminate",
    .usage = "[NAME... | --all] [--yes] [--json]",
    .summary = "delete VMs (after asking, on a terminal) and record their final cost",
    .options = options,
    .min_args = 0,
    .max_args = 64,
    .flags = CMD_CONFIG,
    .exec = exec_terminate,
};
