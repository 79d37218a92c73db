#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/hooks.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define LINE_MAX_BYTES 4096

struct hook {
	struct hooks *hooks;
	char *name;
	uv_process_t proc;
	uv_pipe_t out, err;
	uv_timer_t timer;
	struct buf line[2];
	int handles; /* open libuv handles */
	struct hook *prev, *next;
};

struct hooks {
	uv_loop_t *loop;
	int64_t timeout_ms;
	struct hook *running;
	long started, failed;
	hook_output_cb *output;
	void *output_arg;
	bool freeing;
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
hook_release(uv_handle_t *handle)
{
	struct hook *k = handle->data;
	struct hooks *h = k->hooks;

	if (--k->handles > 0)
		return;
	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		h->running = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	buf_release(&k->line[0]);
	buf_release(&k->line[1]);
	free(k->name);
	free(k);
	if (h->freeing && h->running == NULL)
		free(h);
}

static void
close_handle(uv_handle_t *handle)
{
	if (!uv_is_closing(handle))
		uv_close(handle, hook_release);
}

static void
flush_line(struct hook *k, int which)
{
	if (k->line[which].len == 0)
		return;
	log_info("hook %s: %s", k->name, buf_str(&k->line[which]));
	if (k->hooks->output != NULL)
		k->hooks->output(k->name, buf_str(&k->line[which]), k->hooks->output_arg);
	buf_reset(&k->line[which]);
}

static void
on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
	static char chunk[4096];

	b->base = chunk;
	b->len = sizeof chunk;
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct hook *k = s->data;
	int which = s == (uv_stream_t *)&k->err;

	if (n < 0) {
		flush_line(k, which);
		close_handle((uv_handle_t *)s);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (b->base[i] == '\n' || k->line[which].len >= LINE_MAX_BYTES)
			flush_line(k, which);
		if (b->base[i] != '\n')
			buf_addch(&k->line[which], b->base[i]);
	}
}

static void
on_hook_exit(uv_process_t *p, int64_t status, int signal)
{
	struct hook *k = p->data;

	if (signal != 0 || status != 0) {
		k->hooks->failed++;
		log_warnx("hook %s: %s %d", k->name, signal ? "killed by signal" : "exited with",
		    signal ? signal : (int)status);
	} else {
		log_debug("hook %s: done", k->name);
	}
	uv_timer_stop(&k->timer);
	close_handle((uv_handle_t *)&k->timer);
	close_handle((uv_handle_t *)p);
}

static void
on_timeout(uv_timer_t *t)
{
	struct hook *k = t->data;

	log_warnx("hook %s: still running after %.1f s; killing it", k->name,
	    (double)k->hooks->timeout_ms / 1000);
	uv_process_kill(&k->proc, SIGKILL);
}

char *
hook_expand(const char *word, const struct hook_env *e)
{
	const struct {
		const char *name, *value;
	} known[] = {{"{event}", e->event}, {"{name}", e->vm_name}, {"{ip}", e->vm_ip},
	    {"{endpoint}", e->endpoint}, {"{components}", e->components}, {"{reason}", e->reason},
	    {"{level}", e->level}};
	struct buf b = BUF_INIT(1 << 20);

	for (const char *p = word; *p != '\0';) {
		size_t i = 0;

		for (; i < sizeof known / sizeof known[0]; i++)
			if (str_prefix(p, known[i].name))
				break;
		if (i == sizeof known / sizeof known[0]) {
			buf_addch(&b, *p++);
			continue;
		}
		buf_addstr(&b, known[i].value != NULL ? known[i].value : "");
		p += strlen(known[i].name);
	}
	return buf_detach(&b, NULL);
}

int
hook_run(
    struct hooks *h, const char *name, const char *command, const struct hook_env *e, char **cause)
{
	uv_process_options_t o;
	uv_stdio_container_t io[3];
	struct hook *k;
	char **argv = NULL, **env;
	int error;

	if (command == NULL || *command == '\0')
		return 0;
	if (str_argv(command, &argv, cause) != 0 || argv[0] == NULL) {
		if (argv != NULL && argv[0] == NULL)
			*cause = xasprintf("hook %s: the command is empty", name);
		str_list_free(argv);
		return -EINVAL;
	}
	for (char **w = argv; *w != NULL; w++) {
		char *expanded = hook_expand(*w, e);

		free(*w);
		*w = expanded;
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
	buf_init(&k->line[0], LINE_MAX_BYTES);
	buf_init(&k->line[1], LINE_MAX_BYTES);
	uv_pipe_init(h->loop, &k->out, 0);
	uv_pipe_init(h->loop, &k->err, 0);
	k->out.data = k->err.data = k->proc.data = k->timer.data = k;
	memset(&o, 0, sizeof o);
	io[0].flags = UV_IGNORE;
	io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	io[1].data.stream = (uv_stream_t *)&k->out;
	io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	io[2].data.stream = (uv_stream_t *)&k->err;
	o.file = argv[0];
	o.args = argv;
	o.env = env;
	o.stdio = io;
	o.stdio_count = 3;
	o.exit_cb = on_hook_exit;
	k->next = h->running;
	if (h->running != NULL)
		h->running->prev = k;
	h->running = k;
	if ((error = uv_spawn(h->loop, &k->proc, &o)) != 0) {
		*cause =
		    xasprintf("hook %s: cannot run '%s': %s", name, argv[0], uv_strerror(error));
		h->failed++;
		/* Nothing runs: close what exists and let the release free it. */
		k->handles = 3;
		uv_close((uv_handle_t *)&k->out, hook_release);
		uv_close((uv_handle_t *)&k->err, hook_release);
		uv_close((uv_handle_t *)&k->proc, hook_release);
	} else {
		h->started++;
		k->handles = 4;
		uv_timer_init(h->loop, &k->timer);
		uv_timer_start(&k->timer, on_timeout, (uint64_t)h->timeout_ms, 0);
		uv_read_start((uv_stream_t *)&k->out, on_alloc, on_read);
		uv_read_start((uv_stream_t *)&k->err, on_alloc, on_read);
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
	h->freeing = true;
	if (h->running == NULL) {
		free(h);
		return;
	}
	for (struct hook *k = h->running; k != NULL; k = k->next)
		if (!uv_is_closing((uv_handle_t *)&k->proc))
			uv_process_kill(&k->proc, SIGKILL);
}
