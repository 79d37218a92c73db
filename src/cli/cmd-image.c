/*
 * spillway image bake [--family NAME] [--yes] [--json]
 * spillway image list [--json]
 * spillway image delete NAME [--json]
 *
 * Baked images (docs/images.md): bake makes one under the daemon's rules of
 * money and limits, with its progress and elapsed time until the image is
 * READY (or why not); list shows them, what VMs boot from and whether it is
 * stale; delete deletes one. Through the daemon when one runs, else with a
 * daemon of this process, as create does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/control.h"
#include "api/view.h"
#include "cli/link.h"
#include "cli/report.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

enum { OPT_FAMILY = 256 };

struct image_cmd {
	struct cmd_ctx *ctx;
	const char *action; /* bake, list, delete */
	const char *family;
	const char *name; /* delete: the image; bake: its VM's, once known */
	bool json, ask;
	int64_t t0_ns;
	char vm[64];
	char last[160]; /* the last state and zone said */
	struct link_local *l;
	struct daemon *d;
};

static double
elapsed(const struct image_cmd *c)
{
	return (double)(monotonic_ns() - c->t0_ns) / 1e9;
}

/* How long a bake is followed: its VM's create and boot, then the stop and the image. */
static int64_t
bake_wait_ms(const struct image_cmd *c)
{
	const struct config *cfg = &c->ctx->cfg;

	return (int64_t)((cfg->create_deadline_minutes + cfg->boot_timeout_minutes + 30) * 60000.0);
}

static void
progress(struct image_cmd *c, const char *state, const char *zone)
{
	static const struct {
		const char *state, *doing;
	} doing[] = {{"REQUESTED", "reserved under the budget"},
	    {"CREATING", "asking Compute Engine"}, {"PROVISIONING", "the VM is being made"},
	    {"BOOTING", "installing the backend"},
	    {"IMAGING", "installed: stopping it and making the image"},
	    {"TERMINATING", "deleting the VM"}};
	const char *what = NULL;

	for (size_t i = 0; i < nitems(doing); i++)
		if (strcmp(doing[i].state, state) == 0)
			what = doing[i].doing;
	if (!c->json)
		report_progress(stdout, c->t0_ns, state, zone, what, c->last, sizeof c->last);
}

/* The image's document, as it ended: READY is done, else why not. */
static int
finish(struct image_cmd *c, const json_t *image)
{
	const char *state = jx_str(image, "state");

	if (c->json)
		report_json_field(stdout, "image", image);
	else if (state != NULL && strcmp(state, "READY") == 0) {
		printf("image %s is READY after %.1f s, baked on %s (%.2f GiB, $%.4f a month); "
		       "VMs boot from it with daemon.image = baked\n",
		    jx_str(image, "name"), elapsed(c), jx_str(image, "vm"),
		    json_number_value(json_object_get(image, "size_gib")),
		    json_number_value(json_object_get(image, "per_month")));
	} else {
		fprintf(stderr, "spillway image bake: image %s is %s: %s\n",
		    or_default(jx_str(image, "name"), "?"), or_default(state, "unknown"),
		    or_default(jx_str(image, "why"), "no reason recorded"));
	}
	return state != NULL && strcmp(state, "READY") == 0 ? EXIT_OK : EXIT_FAIL;
}

/* The image a bake's VM made, from the ledger (local) or the daemon. */
static int
finish_from(struct image_cmd *c, const json_t *doc)
{
	return finish(c, json_object_get(doc, "image"));
}

/* --- with the daemon --- */

static bool
followed(const json_t *vm, void *arg)
{
	struct image_cmd *c = arg;
	const char *state = jx_str(vm, "state");

	progress(c, state, jx_str(vm, "zone"));
	return strcmp(state, "TERMINATED") == 0 || strcmp(state, "FAILED") == 0 ||
	    strcmp(state, "PREEMPTED") == 0;
}

static int
bake_via_daemon(struct image_cmd *c, json_t *doc)
{
	const json_t *vm = json_object_get(doc, "vm");
	char path[128];
	json_t *now = NULL, *image = NULL;
	long status;
	int error;

	snprintf(c->vm, sizeof c->vm, "%s", jx_str(vm, "name"));
	snprintf(path, sizeof path, "/v1/images/%s", jx_str(doc, "image.name"));
	if (!c->json)
		printf("baking an image of family %s\n", c->family);
	if (!followed(vm, c)) {
		error =
		    link_follow(c->ctx, "image bake", c->vm, bake_wait_ms(c), followed, c, &now);
		json_decref(now);
		if (error == -ETIMEDOUT) {
			fprintf(stderr,
			    "spillway image bake: %s is still baking after %.0f s; spillway image "
			    "list follows it\n",
			    c->vm, elapsed(c));
			return EXIT_FAIL;
		}
		if (error != 0)
			return error;
	}
	if ((error = link_get(c->ctx, path, &status, &image)) != 0)
		return error;
	error = status == 200 ? finish_from(c, image) : link_error("image bake", status, image);
	json_decref(image);
	return error;
}

/* --- without: a daemon of our own --- */

static void
local_event(const struct manager_event *e, void *arg)
{
	struct image_cmd *c = arg;
	const struct vm_record *v = e->vm;
	struct view_src s;
	struct image_record im;
	json_t *doc;

	if (strcmp(c->action, "delete") == 0) {
		if (e->kind == MEV_NOTE && str_prefix(e->note, "image-") &&
		    strcmp(e->reason, c->name) == 0) {
			bool gone = strcmp(e->note, "image-deleted") == 0;

			if (!c->json)
				printf(gone ? "image %s deleted\n"
				            : "image %s: not deleted (see the log)\n",
				    c->name);
			link_local_done(c->l, gone ? EXIT_OK : EXIT_FAIL);
		}
		return;
	}
	if (e->kind != MEV_STATE || v == NULL || strcmp(v->name, c->vm) != 0)
		return;
	progress(c, vm_state_name(v->state), v->zone);
	if (vm_state_alive(v->state))
		return;
	control_view(c->d, &s);
	if (ledger_image_of(s.ledger, c->vm, &im) == 0 && (doc = view_image(&s, im.name)) != NULL) {
		link_local_done(c->l, finish_from(c, doc));
		json_decref(doc);
	} else {
		fprintf(stderr, "spillway image bake: %s ended (%s) with no image recorded\n",
		    c->vm, v->end_reason);
		link_local_done(c->l, EXIT_FAIL);
	}
}

static void
local_expired(struct link_local *l, void *arg)
{
	struct image_cmd *c = arg;

	fprintf(stderr,
	    "spillway image %s: not done after %.0f s; spillway image list follows it\n", c->action,
	    elapsed(c));
	link_local_done(l, EXIT_FAIL);
}

/* On a terminal without --yes: what a bake would cost (a plan, control_plan's), and a yes. */
static int
confirm(struct image_cmd *c, const json_t *plan)
{
	char answer[16];

	printf("bake an image of family %s: a %s%s VM in %s at $%.4f/h, installing %s at %s;\n"
	       "its run is bounded to %.2f h ($%.2f at most) of today's budget. Go on? [y/N] ",
	    c->family, jx_str(plan, "machine_type"),
	    json_is_true(json_object_get(plan, "spot")) ? " Spot" : "", jx_str(plan, "zone"),
	    json_number_value(json_object_get(plan, "per_hour")), c->ctx->cfg.backend_git,
	    c->ctx->cfg.backend_ref,
	    (double)json_integer_value(json_object_get(plan, "run_s")) / 3600.0,
	    json_number_value(json_object_get(plan, "cost")));
	fflush(stdout);
	if (fgets(answer, sizeof answer, stdin) == NULL)
		answer[0] = '\0';
	answer[strcspn(answer, "\n")] = '\0';
	if (strcasecmp(answer, "y") != 0 && strcasecmp(answer, "yes") != 0) {
		printf("nothing baked\n");
		return EXIT_FAIL;
	}
	return 0;
}

static void
local_ready(struct link_local *l, struct daemon *d, void *arg)
{
	struct image_cmd *c = arg;
	struct manager *m = daemon_manager(d);
	struct decision no;
	char why[256];
	int error;

	c->l = l;
	c->d = d;
	if (strcmp(c->action, "delete") == 0) {
		if ((error = manager_image_delete(m, c->name, why, sizeof why)) != 0) {
			fprintf(stderr, "spillway image delete: %s\n", why);
			link_local_done(l, error == -ENOENT ? EXIT_USAGE : EXIT_FAIL);
			return;
		}
		link_local_deadline(l, 180000, local_expired);
		return;
	}
	if (c->ask) {
		struct manager_plan p;
		json_t *plan;

		if (manager_plan(m, NULL, &p) != 0) {
			fprintf(stderr, "spillway image bake: refused: %s\n", p.d.reason);
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
	if (!c->json)
		printf("baking an image of family %s\n", c->family);
	/* Its states come as events. */
	if (link_local_answer(l, "image bake", manager_bake(m, c->family, c->vm, sizeof c->vm, &no),
	        no.reason) == 0)
		link_local_deadline(l, bake_wait_ms(c), local_expired);
}

/* --- the actions --- */

static void
print_images(FILE *f, const json_t *doc, bool verbose)
{
	report_images(f, doc);
}

/* POST or DELETE through the daemon; without one, ours. */
static int
call(struct image_cmd *c, const char *method, const char *path, json_t *body,
    int (*then)(struct image_cmd *, json_t *))
{
	json_t *doc = NULL;
	long status;
	char *cause = NULL;
	int error = link_call(c->ctx, method, path, body, &status, &doc, &cause);

	if (error == -ENOENT) {
		free(cause);
		return link_local(c->ctx, local_ready, local_event, c);
	}
	if (error != 0) {
		fprintf(stderr, "spillway image %s: %s\n", c->action, cause);
		free(cause);
		return EXIT_FAIL;
	}
	error = status == 202 ? then(c, doc) : link_error(c->action, status, doc);
	json_decref(doc);
	return error;
}

/* A delete the daemon took: followed until the ledger has the image DELETED. */
static int
deleted_via_daemon(struct image_cmd *c, json_t *doc)
{
	char path[128];
	int64_t until = monotonic_ns() + (int64_t)180 * 1000000000;

	snprintf(path, sizeof path, "/v1/images/%s", c->name);
	for (;;) {
		json_t *now = NULL;
		long status;
		int error = link_get(c->ctx, path, &status, &now);
		bool gone =
		    error == 0 && status == 200 && str_eq(jx_str(now, "image.state"), "DELETED");

		json_decref(now);
		if (error != 0)
			return error;
		if (gone) {
			if (!c->json)
				printf("image %s deleted\n", c->name);
			return EXIT_OK;
		}
		if (monotonic_ns() > until) {
			fprintf(stderr,
			    "spillway image delete: %s is not deleted after 180 s (the daemon's log "
			    "says why)\n",
			    c->name);
			return EXIT_FAIL;
		}
		usleep(250000);
	}
}

/*
 * The running daemon's plan for a VM by hand, confirmed: -1 to go on (c->ask
 * then off), or an exit status; without a daemon, ours asks (local_ready).
 */
static int
daemon_plan(struct image_cmd *c)
{
	json_t *body = json_pack("{s:b}", "dry_run", true), *doc = NULL;
	char *cause = NULL;
	long status;
	int error = link_call(c->ctx, "POST", "/v1/vms", body, &status, &doc, &cause);

	json_decref(body);
	free(cause);
	if (error != 0) /* no daemon, or none answering: ours plans */
		error = -1;
	else if (status != 200)
		error = link_error("image bake", status, doc);
	else if ((error = confirm(c, json_object_get(doc, "plan"))) == 0) {
		c->ask = false;
		error = -1;
	}
	json_decref(doc);
	return error;
}

static int
exec_image(struct cmd_ctx *ctx, const struct args *a)
{
	struct image_cmd c = {
	    .ctx = ctx, .action = a->pos[0], .json = args_has(a, 'j'), .t0_ns = monotonic_ns()};
	const char *family = args_get(a, OPT_FAMILY);

	c.family = family != NULL ? family : ctx->cfg.image_family;
	if (strcmp(c.action, "list") == 0) {
		if (a->npos != 1 || family != NULL || args_has(a, 'y'))
			return cmd_usage_error(&cmd_image_entry, "list takes --json only");
		return link_show(ctx, "image list", "/v1/images", c.json, print_images, false);
	}
	if (strcmp(c.action, "delete") == 0) {
		char path[128];

		if (a->npos != 2 || family != NULL)
			return cmd_usage_error(&cmd_image_entry, "delete takes an image's name");
		c.name = a->pos[1];
		snprintf(path, sizeof path, "/v1/images/%s", c.name);
		return call(&c, "DELETE", path, NULL, deleted_via_daemon);
	}
	if (strcmp(c.action, "bake") == 0) {
		json_t *body;
		int error;

		if (a->npos != 1)
			return cmd_usage_error(
			    &cmd_image_entry, "bake takes no name: --family NAME");
		if (!config_family_valid(c.family))
			return cmd_usage_error(&cmd_image_entry,
			    "--family %s: 1 to 40 lowercase letters, digits and '-', starting with a "
			    "letter and not ending with '-'",
			    c.family);
		c.ask =
		    isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) && !c.json && !args_has(a, 'y');
		if (c.ask && (error = daemon_plan(&c)) >= 0)
			return error;
		body = json_pack("{s:s}", "family", c.family);
		error = call(&c, "POST", "/v1/images", body, bake_via_daemon);
		json_decref(body);
		return error;
	}
	return cmd_usage_error(&cmd_image_entry, "'%s': expected bake, list or delete", c.action);
}

static const struct option image_options[] = {
    {"family", required_argument, NULL, OPT_FAMILY},
    {"yes", no_argument, NULL, 'y'},
    {"json", no_argument, NULL, 'j'},
    {0},
};

const struct cmd_entry cmd_image_entry = {
    .name = "image",
    .usage = "bake [--family NAME] [--yes] [--json] | list [--json] | delete NAME [--json]",
    .summary = "bake the backend into an image VMs boot from in seconds; list or delete them",
    .options = image_options,
    .min_args = 1,
    .max_args = 2,
    .flags = CMD_CONFIG,
    .exec = exec_image,
};
