#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "api/client.h"
#include "net/http.h"
#include "util/jx.h"
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
		c->cause = xasprintf("no daemon answers on %s (a socket left by one that died)",
		    c->socket);
	} else if (r->error != 0) {
		c->error = r->error;
		c->cause = xasprintf("the daemon on %s: %s", c->socket, r->error_text);
	} else if (jx_parse(r->body, r->len, &c->doc, &why) != 0) {
		c->error = -EPROTO;
		c->cause = xasprintf("the daemon on %s answered %ld with something that is not JSON: %s",
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
		*cause = xasprintf("the socket %s belongs to user %ld, not to you (%ld): it is another "
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
