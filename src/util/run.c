/*
 * A program run on the loop (run.h). A run owns its process handle, its two
 * pipes (none when its output goes to a file) and its timer; it is freed when
 * the last of them is closed, after its done callback or once forgotten.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/run.h"
#include "util/xmalloc.h"

extern char **environ;

struct run {
	struct run_opts o;
	uv_process_t proc;
	uv_pipe_t out, err;
	uv_timer_t timer;
	struct buf line[2];
	int handles; /* open libuv handles */
	bool piped;  /* its output comes through out and err */
	int eofs;    /* of out and err, read to their end */
	bool exited; /* it ended: status and signal are its end */
	bool said;   /* done was called */
	int status, signal;
	bool timed_out; /* killed by its timeout */
	bool forgotten; /* no more callbacks */
};

static void
run_release(uv_handle_t *h)
{
	struct run *r = h->data;

	if (--r->handles > 0)
		return;
	buf_release(&r->line[0]);
	buf_release(&r->line[1]);
	free(r);
}

static void
close_handle(struct run *r, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, run_release);
}

static void
flush_line(struct run *r, int which)
{
	if (r->line[which].len == 0)
		return;
	if (!r->forgotten && r->o.line != NULL)
		r->o.line(r->o.arg, buf_str(&r->line[which]), which == 1);
	buf_reset(&r->line[which]);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char chunk[4096]; /* one loop, one thread: a read is consumed before the next */

	(void)h;
	(void)suggested;
	b->base = chunk;
	b->len = sizeof chunk;
}

/* Once it has ended and all it wrote was read: done, once. */
static void
maybe_done(struct run *r)
{
	if (!r->exited || (r->piped && r->eofs < 2) || r->said)
		return;
	r->said = true;
	if (!r->forgotten && r->o.done != NULL)
		r->o.done(r->o.arg, r->status, r->signal, r->timed_out);
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct run *r = s->data;
	int which = s == (uv_stream_t *)&r->err;

	if (n < 0) {
		flush_line(r, which);
		close_handle(r, (uv_handle_t *)s);
		r->eofs++;
		maybe_done(r);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (b->base[i] == '\n' || r->line[which].len >= RUN_LINE_MAX)
			flush_line(r, which);
		if (b->base[i] != '\n')
			buf_addch(&r->line[which], b->base[i]);
	}
}

static void
on_exit_cb(uv_process_t *p, int64_t status, int signal)
{
	struct run *r = p->data;

	r->exited = true;
	r->status = (int)status;
	r->signal = signal;
	uv_timer_stop(&r->timer);
	close_handle(r, (uv_handle_t *)&r->timer);
	close_handle(r, (uv_handle_t *)p);
	/* What it wrote last is said before its end: done waits for its pipes' end. */
	maybe_done(r);
}

static void
on_timeout(uv_timer_t *t)
{
	struct run *r = t->data;

	r->timed_out = true;
	uv_process_kill(&r->proc, SIGKILL);
}

int
run_start(uv_loop_t *loop, const struct run_opts *o, struct run **out, char **cause)
{
	struct run *r = xcalloc(1, sizeof *r);
	uv_process_options_t po = {0};
	uv_stdio_container_t io[3];
	int error;

	*out = NULL;
	r->o = *o;
	buf_init(&r->line[0], RUN_LINE_MAX + 1);
	buf_init(&r->line[1], RUN_LINE_MAX + 1);
	r->proc.data = r->out.data = r->err.data = r->timer.data = r;
	io[0].flags = UV_IGNORE;
	if (o->out_fd >= 0) {
		io[1].flags = io[2].flags = UV_INHERIT_FD;
		io[1].data.fd = io[2].data.fd = o->out_fd;
	} else {
		uv_pipe_init(loop, &r->out, 0);
		uv_pipe_init(loop, &r->err, 0);
		r->piped = true;
		io[1].flags = io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		io[1].data.stream = (uv_stream_t *)&r->out;
		io[2].data.stream = (uv_stream_t *)&r->err;
	}
	po.file = o->argv[0];
	po.args = (char **)o->argv;
	po.env = (char **)(o->env != NULL ? o->env : environ);
	po.stdio = io;
	po.stdio_count = 3;
	po.exit_cb = on_exit_cb;
	po.flags = o->detached ? UV_PROCESS_DETACHED : 0;
	uv_timer_init(loop, &r->timer);
	r->handles = r->piped ? 4 : 2; /* the process, the timer and the pipes */
	if ((error = uv_spawn(loop, &r->proc, &po)) != 0) {
		*cause = xasprintf("cannot run '%s': %s", o->argv[0], uv_strerror(error));
		/* Nothing runs: its handles close as a forgotten run's, and the last frees it. */
		run_forget(r);
		return error == UV_ENOENT ? -ENOENT : -EINVAL;
	}
	if (r->piped) {
		uv_read_start((uv_stream_t *)&r->out, on_alloc, on_read);
		uv_read_start((uv_stream_t *)&r->err, on_alloc, on_read);
	}
	if (o->timeout_ms > 0)
		uv_timer_start(&r->timer, on_timeout, (uint64_t)o->timeout_ms, 0);
	*out = r;
	return 0;
}

pid_t
run_pid(const struct run *r)
{
	return r->proc.pid;
}

void
run_kill(struct run *r, int sig)
{
	if (!r->exited)
		uv_process_kill(&r->proc, sig);
}

void
run_forget(struct run *r)
{
	if (r == NULL)
		return;
	r->forgotten = true;
	uv_timer_stop(&r->timer);
	close_handle(r, (uv_handle_t *)&r->timer);
	/* Not watched any more: a detached one lives on, and the loop need not wait for it. */
	close_handle(r, (uv_handle_t *)&r->proc);
	if (r->piped) {
		close_handle(r, (uv_handle_t *)&r->out);
		close_handle(r, (uv_handle_t *)&r->err);
	}
}
