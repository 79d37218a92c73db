#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/hooks.h"
#include "util/log.h"
#include "util/run.h"
#include "util/str.h"
#include "util/xmalloc.h"

struct hook {
	struct hooks *hooks;
	char *name;
	struct run *run;
	struct hook *prev, *next;
};

struct hooks {
	uv_loop_t *loop;
	int64_t timeout_ms;
	struct hook *running;
	long started, failed;
	hook_output_cb *output;
	void *output_arg;
};

void
hooks_set_timeout(struct hooks *h, int64_t timeout_ms)
{
	h->timeout_ms = timeout_ms;
}

struct hooks *
hooks_new(uv_loop_t *loop, int64_t timeout_ms)
{
	struct hooks *h = xcalloc(1, sizeof *h);

	h->loop = loop;
	h->timeout_ms = timeout_ms;
	return h;
}

void
hooks_on_output(struct hooks *h, hook_output_cb *cb, void *arg)
{
	h->output = cb;
	h->output_arg = arg;
}

static void
hook_free(struct hook *k)
{
	struct hooks *h = k->hooks;

	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		h->running = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	free(k->name);
	free(k);
}

static void
on_line(void *arg, const char *line, bool err)
{
	struct hook *k = arg;

	(void)err;
	log_info("hook %s: %s", k->name, line);
	if (k->hooks->output != NULL)
		k->hooks->output(k->name, line, k->hooks->output_arg);
}

static void
on_done(void *arg, int status, int signal, bool timed_out)
{
	struct hook *k = arg;

	if (timed_out)
		log_warnx("hook %s: still running after %.1f s; killed", k->name,
		    (double)k->hooks->timeout_ms / 1000);
	if (signal != 0 || status != 0) {
		k->hooks->failed++;
		log_warnx("hook %s: %s %d", k->name, signal ? "killed by signal" : "exited with",
		    signal ? signal : status);
	} else {
		log_debug("hook %s: done", k->name);
	}
	hook_free(k);
}

/* The placeholders of a hook's arguments, and their values. */
#define HOOK_VARS(e)                                                                               \
	{                                                                                          \
		{"{event}", (e)->event}, {"{name}", (e)->vm_name}, {"{ip}", (e)->vm_ip},           \
		    {"{endpoint}", (e)->endpoint}, {"{components}", (e)->components},              \
		    {"{reason}", (e)->reason}, {"{level}", (e)->level},                            \
	}

char *
hook_expand(const char *word, const struct hook_env *e)
{
	const struct str_var vars[] = HOOK_VARS(e);

	return str_expand(word, vars, sizeof vars / sizeof vars[0]);
}

int
hook_run(
    struct hooks *h, const char *name, const char *command, const struct hook_env *e, char **cause)
{
	struct hook *k;
	char **argv = NULL, **env, *why = NULL;
	int error;

	if (command == NULL || *command == '\0')
		return 0;
	{
		const struct str_var vars[] = HOOK_VARS(e);

		if (str_command(command, vars, sizeof vars / sizeof vars[0], &argv, &why) != 0) {
			*cause = xasprintf("hook %s: %s", name, why);
			free(why);
			return -EINVAL;
		}
	}
	env = env_dup(environ);
	env_put(&env, "SPILLWAY_EVENT", e->event);
	env_put(&env, "SPILLWAY_VM_NAME", e->vm_name);
	env_put(&env, "SPILLWAY_VM_IP", e->vm_ip);
	env_put(&env, "SPILLWAY_ENDPOINT", e->endpoint);
	env_put(&env, "SPILLWAY_COMPONENTS", e->components);
	env_put(&env, "SPILLWAY_REASON", e->reason);
	env_put(&env, "SPILLWAY_LEVEL", e->level);

	k = xcalloc(1, sizeof *k);
	k->hooks = h;
	k->name = xstrdup(name);
	k->next = h->running;
	if (h->running != NULL)
		h->running->prev = k;
	h->running = k;
	{
		struct run_opts o = {.argv = argv,
		    .env = env,
		    .timeout_ms = h->timeout_ms,
		    .out_fd = -1,
		    .line = on_line,
		    .done = on_done,
		    .arg = k};

		error = run_start(h->loop, &o, &k->run, &why);
	}
	if (error != 0) {
		*cause = xasprintf("hook %s: %s", name, why);
		free(why);
		h->failed++;
		hook_free(k);
	} else {
		h->started++;
		log_info("hook %s: started %s", name, argv[0]);
	}
	str_list_free(argv);
	str_list_free(env);
	return error != 0 ? -EINVAL : 0;
}

void
hooks_counts(const struct hooks *h, long *started, long *failed)
{
	*started = h->started;
	*failed = h->failed;
}

void
hooks_free(struct hooks *h)
{
	if (h == NULL)
		return;
	/* What still runs is killed; its end is no longer ours to hear. */
	while (h->running != NULL) {
		struct hook *k = h->running;

		run_kill(k->run, SIGKILL);
		run_forget(k->run);
		hook_free(k);
	}
	free(h);
}
