#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "net/http.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define IDLE_HANDLES 256 /* a pass keeps this many calls to VMs in flight */

struct http_client {
	uv_loop_t *loop;
	CURLM *multi;
	CURL *idle[IDLE_HANDLES]; /* reset easy handles, kept for the next calls */
	int nidle;
	uv_timer_t timer;
	struct http_call *calls; /* in flight */
	long connects;
	long completed;
	int closing;
};

struct http_call {
	struct http_client *client;
	CURL *easy;
	struct curl_slist *headers;
	struct buf body;
	char *retry_after;
	http_cb *cb;
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
	struct http_call *prev, *next;
};

/* One per socket curl asks us to watch. */
struct sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct http_client *client;
};

static int curl_users;

static void check_done(struct http_client *);

static void
on_sock(uv_poll_t *p, int status, int events)
{
	struct sock *s = p->data;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(s->client->multi, s->fd, flags, &running);
	check_done(s->client);
}

static void
free_sock(uv_handle_t *h)
{
	free(h->data);
}

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_client *c = userp;
	struct sock *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, free_sock);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		s->fd = fd;
		s->client = c;
		uv_poll_init_socket(c->loop, &s->poll, fd);
		s->poll.data = s;
		curl_multi_assign(c->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, on_sock);
	return 0;
}

static void
on_timeout(uv_timer_t *t)
{
	struct http_client *c = t->data;
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(c);
}

static int
timer_cb(CURLM *multi, long ms, void *userp)
{
	struct http_client *c = userp;

	/* curl may not be re-entered from here: even "now" goes through the loop. */
	if (ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);
	return 0;
}

struct http_client *
http_client_new(uv_loop_t *loop)
{
	struct http_client *c = xcalloc(1, sizeof *c);

	if (curl_users++ == 0)
		curl_global_init(CURL_GLOBAL_DEFAULT);
	c->loop = loop;
	if ((c->multi = curl_multi_init()) == NULL)
		fatalx("cannot initialise libcurl");
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	/*
	 * Calls past HTTP_HOST_CONNECTIONS to one host wait in libcurl's queue
	 * for a connection to come free: a burst of a thousand calls (a
	 * takeover reading every VM's key) is a thousand requests on a few
	 * connections, not a thousand descriptors here and at the server. Over
	 * HTTP/2 (Google's API) the calls share connections as streams
	 * (PIPEWAIT) and the bound is seldom reached. The cache holds what the
	 * few hosts (the API, OAuth, the metadata server) may keep idle.
	 */
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)HTTP_HOST_CONNECTIONS);
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)(4 * HTTP_HOST_CONNECTIONS));
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	return c;
}

static void
call_free(struct http_call *call)
{
	struct http_client *c = call->client;

	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	curl_multi_remove_handle(c->multi, call->easy);
	if (c->nidle < IDLE_HANDLES) {
		/* Setting a handle up costs more than the request on a warm connection. */
		curl_easy_reset(call->easy);
		c->idle[c->nidle++] = call->easy;
	} else {
		curl_easy_cleanup(call->easy);
	}
	curl_slist_free_all(call->headers);
	buf_release(&call->body);
	free(call->retry_after);
	free(call);
}

static void
on_client_closed(uv_handle_t *h)
{
	struct http_client *c = h->data;

	while (c->nidle > 0)
		curl_easy_cleanup(c->idle[--c->nidle]);
	curl_multi_cleanup(c->multi);
	free(c);
	if (--curl_users == 0)
		curl_global_cleanup();
}

void
http_client_free(struct http_client *c)
{
	if (c == NULL)
		return;
	while (c->calls != NULL)
		call_free(c->calls);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_client_closed);
}

static size_t
on_write(char *p, size_t size, size_t n, void *arg)
{
	struct http_call *call = arg;

	return buf_add(&call->body, p, size * n) == 0 ? size * n : 0;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct http_call *call = arg;
	static const char name[] = "retry-after:";

	if (size * n > sizeof name && strncasecmp(p, name, sizeof name - 1) == 0) {
		char *v = xstrndup(p + sizeof name - 1, size * n - (sizeof name - 1));

		free(call->retry_after);
		call->retry_after = xstrdup(str_trim(v));
		free(v);
	}
	return size * n;
}

static int
curl_errno(CURLcode rc, long status)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return -ECONNREFUSED;
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		return -E2BIG;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTO;
	default:
		return -EIO;
	}
}

static void
check_done(struct http_client *c)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		struct http_call *call;
		struct http_response r;
		long connects = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		memset(&r, 0, sizeof r);
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &r.status);
		curl_easy_getinfo(call->easy, CURLINFO_NUM_CONNECTS, &connects);
		c->connects += connects;
		c->completed++;
		r.error = curl_errno(msg->data.result, r.status);
		if (r.error == -E2BIG)
			r.error_text = "the answer is larger than allowed";
		else if (r.error != 0)
			r.error_text =
			    call->errbuf[0] ? call->errbuf : curl_easy_strerror(msg->data.result);
		else
			r.error_text = "";
		if (r.error != 0)
			r.status = 0;
		r.body = buf_str(&call->body);
		r.len = call->body.len;
		r.retry_after = call->retry_after;
		/* Unlink first: the callback may start new calls. */
		curl_multi_remove_handle(c->multi, call->easy);
		call->cb(&r, call->arg);
		call_free(call);
	}
}

/*
 * The host of a URL after its "://", an IPv6 one with its brackets (and then
 * only before its end, a port or a path). 0, or -1 when there is none that fits.
 */
static int
url_host(const char *url, char *host, size_t size)
{
	const char *p = strstr(url, "://");
	size_t n;

	if (p == NULL)
		return -1;
	p += 3;
	if (*p == '[') {
		const char *end = strchr(p, ']');

		if (end == NULL || (end[1] != '\0' && end[1] != ':' && end[1] != '/'))
			return -1;
		n = (size_t)(end + 1 - p);
	} else {
		n = strcspn(p, ":/?#");
	}
	if (n >= size)
		return -1;
	memcpy(host, p, n);
	host[n] = '\0';
	return 0;
}

int
http_url_is_loopback(const char *url)
{
	char host[64];
	struct in_addr a;

	if (strncasecmp(url, "http://", 7) != 0 || url_host(url, host, sizeof host) != 0)
		return 0;
	if (strcmp(host, "[::1]") == 0 || strcasecmp(host, "localhost") == 0)
		return 1;
	return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Whether the URL's host is an IPv4 or IPv6 address, not a name. */
static bool
url_has_address(const char *url)
{
	char host[64];
	unsigned char a[16];

	return url_host(url, host, sizeof host) == 0 &&
	    (host[0] == '[' || inet_pton(AF_INET, host, a) == 1);
}

int
http_send(struct http_client *c, const struct http_request *req, http_cb *cb, void *arg,
    struct http_call **out)
{
	struct http_call *call;
	CURL *e;

	if (!str_prefix(req->url, "https://") && !http_url_is_loopback(req->url) &&
	    req->unix_socket == NULL)
		return -EPROTONOSUPPORT;
	if (c->nidle > 0)
		e = c->idle[--c->nidle];
	else if ((e = curl_easy_init()) == NULL)
		fatalx("cannot initialise a libcurl handle");
	call = xcalloc(1, sizeof *call);
	call->client = c;
	call->easy = e;
	call->cb = cb;
	call->arg = arg;
	buf_init(&call->body, req->max_response);
	for (const char *const *h = req->headers; h != NULL && *h != NULL; h++)
		call->headers = curl_slist_append(call->headers, *h);
	/* curl adds "Expect: 100-continue" to large POSTs; it costs a round trip. */
	call->headers = curl_slist_append(call->headers, "Expect:");

	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(req->method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	if (req->body != NULL) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body);
	} else if (strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, "");
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(
	    e, CURLOPT_CONNECTTIMEOUT_MS, req->timeout_ms < 10000 ? req->timeout_ms : 10000L);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_response);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, call);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "spillway/" SPILLWAY_VERSION);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	/*
	 * libcurl caches even an address it did not have to look up, and walks
	 * its whole cache to prune it at each lookup: with a VM per address that
	 * is quadratic in the VMs (342 ms a pass at 1,000, 3.1 s at 3,000), and
	 * the cache grows with every VM ever asked. An address needs no cache.
	 */
	curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, url_has_address(req->url) ? 0L : 60L);
	/* Set even when NULL: a reused handle keeps what its last call set. */
	curl_easy_setopt(e, CURLOPT_INTERFACE, req->source_ip);
	curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);

	call->next = c->calls;
	if (c->calls != NULL)
		c->calls->prev = call;
	c->calls = call;
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		call_free(call);
		return -EINVAL;
	}
	if (out != NULL)
		*out = call;
	return 0;
}

void
http_cancel(struct http_call *call)
{
	call_free(call);
}

long
http_client_connects(const struct http_client *c)
{
	return c->connects;
}

long
http_client_calls(const struct http_client *c)
{
	return c->completed;
}
