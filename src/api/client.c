#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "api/client.h"
#include "net/http.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define ANSWER_MAX (16 << 20)

struct call {
	bool done;
	int error;
	long status;
	json_t *doc;
	char *cause;
	const char *socket;
};

static void
on_answer(const struct http_response *r, void *arg)
{
	struct call *c = arg;
	char *why = NULL;

	c->done = true;
	c->status = r->status;
	if (r->error == -ECONNREFUSED) {
		c->error = -ENOENT;
		c->cause = xasprintf(
		    "no daemon answers on %s (a socket left by one that died)", c->socket);
	} else if (r->error != 0) {
		c->error = r->error;
		c->cause = xasprintf("the daemon on %s: %s", c->socket, r->error_text);
	} else if (jx_parse(r->body, r->len, &c->doc, &why) != 0) {
		c->error = -EPROTO;
		c->cause =
		    xasprintf("the daemon on %s answered %ld with something that is not JSON: %s",
		        c->socket, r->status, why);
		free(why);
	}
}

int
client_call(const char *socket, const char *method, const char *path, const json_t *body,
    long timeout_ms, long *status, json_t **doc, char **cause)
{
	struct stat st;
	struct call c = {.socket = socket};
	char *url, *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	const char *headers[] = {"Content-Type: application/json", NULL};
	struct http_request req = {.method = method,
	    .headers = headers,
	    .body = text,
	    .len = text != NULL ? strlen(text) : 0,
	    .timeout_ms = timeout_ms,
	    .max_response = ANSWER_MAX,
	    .unix_socket = socket};
	struct http_client *h;
	uv_loop_t loop;

	*doc = NULL;
	if (stat(socket, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		free(text);
		*cause = xasprintf("no daemon: %s is not there", socket);
		return -ENOENT;
	}
	if (st.st_uid != geteuid()) {
		free(text);
		*cause =
		    xasprintf("the socket %s belongs to user %ld, not to you (%ld): it is another "
		              "user's daemon",
		        socket, (long)st.st_uid, (long)geteuid());
		return -EACCES;
	}
	url = xasprintf("http://spillway%s", path);
	req.url = url;
	uv_loop_init(&loop);
	h = http_client_new(&loop);
	if (http_send(h, &req, on_answer, &c, NULL) != 0) {
		c.error = -EINVAL;
		c.cause = xasprintf("cannot send %s %s", method, path);
	}
	while (!c.done && c.error == 0)
		uv_run(&loop, UV_RUN_ONCE);
	http_client_free(h);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	free(url);
	free(text);
	if (c.error != 0) {
		*cause = c.cause;
		return c.error;
	}
	*status = c.status;
	*doc = c.doc;
	return 0;
}

/* --- the event stream --- */

#define STREAM_MAX (4 << 20) /* undelivered bytes; a daemon sends far less */

struct client_events {
	int fd;
	bool headers_done, chunked;
	size_t chunk_left; /* bytes of the current chunk still to come */
	struct buf raw;    /* as read */
	struct buf sse;    /* the body, chunks decoded */
};

int
client_events_open(const char *socket_path, struct client_events **out, char **cause)
{
	static const char req[] = "GET /v1/events HTTP/1.1\r\nHost: spillway\r\n"
	                          "Accept: text/event-stream\r\n\r\n";
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct client_events *ev;
	int fd;

	if (strlen(socket_path) >= sizeof sun.sun_path) {
		*cause = xasprintf("the socket path %s is too long", socket_path);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, socket_path, strlen(socket_path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0 ||
	    write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
		int error = errno;

		*cause = xasprintf("no daemon answers on %s: %s", socket_path, strerror(error));
		if (fd >= 0)
			close(fd);
		return error == ENOENT || error == ECONNREFUSED ? -ENOENT : -error;
	}
	shutdown(fd, SHUT_WR);
	ev = xcalloc(1, sizeof *ev);
	ev->fd = fd;
	buf_init(&ev->raw, STREAM_MAX);
	buf_init(&ev->sse, STREAM_MAX);
	*out = ev;
	return 0;
}

int
client_events_fd(const struct client_events *ev)
{
	return ev->fd;
}

/* Whole events out of the decoded body. */
static void
deliver(struct client_events *ev, client_event_cb *cb, void *arg)
{
	char *end;

	while ((end = strstr(buf_str(&ev->sse), "\n\n")) != NULL) {
		char *block = xstrndup(buf_str(&ev->sse), (size_t)(end - buf_str(&ev->sse)));
		char name[32] = "message", *save = NULL;
		struct buf data = BUF_INIT(STREAM_MAX);

		for (char *l = strtok_r(block, "\n", &save); l != NULL;
		     l = strtok_r(NULL, "\n", &save)) {
			if (str_prefix(l, "event: "))
				snprintf(name, sizeof name, "%s", l + 7);
			else if (str_prefix(l, "data: "))
				buf_printf(&data, "%s%s", data.len ? "\n" : "", l + 6);
		}
		if (data.len > 0) {
			json_t *doc = NULL;

			if (jx_parse(buf_str(&data), data.len, &doc, NULL) == 0)
				cb(name, doc, arg);
			json_decref(doc);
		}
		buf_release(&data);
		free(block);
		buf_consume(&ev->sse, (size_t)(end - buf_str(&ev->sse)) + 2);
	}
}

/* HTTP chunks to body bytes, as far as they have arrived. */
static int
dechunk(struct client_events *ev)
{
	for (;;) {
		const char *p = buf_str(&ev->raw), *eol;
		size_t take;

		if (!ev->chunked) {
			buf_add(&ev->sse, p, ev->raw.len);
			buf_reset(&ev->raw);
			return 0;
		}
		if (ev->chunk_left > 0) {
			take = ev->raw.len < ev->chunk_left ? ev->raw.len : ev->chunk_left;
			if (take == 0)
				return 0;
			buf_add(&ev->sse, p, take);
			buf_consume(&ev->raw, take);
			ev->chunk_left -= take;
			continue;
		}
		/* The CRLF after a chunk, then the next size line. */
		if (str_prefix(p, "\r\n")) {
			buf_consume(&ev->raw, 2);
			continue;
		}
		if ((eol = strstr(p, "\r\n")) == NULL)
			return 0;
		ev->chunk_left = (size_t)strtoul(p, NULL, 16);
		if (ev->chunk_left == 0)
			return -EPIPE; /* the last chunk: the daemon ended the stream */
		buf_consume(&ev->raw, (size_t)(eol - p) + 2);
	}
}

int
client_events_read(struct client_events *ev, client_event_cb *cb, void *arg)
{
	char chunk[16384];
	ssize_t n;
	int error = 0;

	for (;;) {
		n = recv(ev->fd, chunk, sizeof chunk, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			error = -EPIPE;
			break;
		}
		if (buf_add(&ev->raw, chunk, (size_t)n) != 0)
			return -E2BIG;
	}
	if (!ev->headers_done) {
		const char *end = strstr(buf_str(&ev->raw), "\r\n\r\n");

		if (end == NULL)
			return error;
		if (!str_prefix(buf_str(&ev->raw), "HTTP/1.1 200"))
			return -EPROTO;
		ev->chunked = strcasestr(buf_str(&ev->raw), "transfer-encoding: chunked") != NULL;
		buf_consume(&ev->raw, (size_t)(end - buf_str(&ev->raw)) + 4);
		ev->headers_done = true;
	}
	if (dechunk(ev) != 0)
		error = -EPIPE;
	deliver(ev, cb, arg);
	return error;
}

void
client_events_close(struct client_events *ev)
{
	if (ev == NULL)
		return;
	close(ev->fd);
	buf_release(&ev->raw);
	buf_release(&ev->sse);
	free(ev);
}
