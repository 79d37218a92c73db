/*
 * The batch endpoint, POST /batch/compute/v1, which gcloud uses for a command
 * on several resources at once (`instances delete a b c`, `list --zones
 * a,b`): a multipart/mixed body whose parts are HTTP requests
 * (application/http), each answered as if it came alone, and answered
 * together in the same order, each part carrying its request's Content-ID
 * as "response-ID".
 *
 * Each part is a `struct rq` of its own whose method, path, query and body
 * are the part's (the rq_* accessors below read them, and the connection's
 * for every other request); its answer is kept here until the last part is
 * answered (a part may wait: an operation's wait), then the batch answers.
 * The batch is one HTTP exchange: its token is checked and its faults strike
 * once, for the whole.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define BATCH_MAX_PARTS 1000 /* Google's limit for a batch */

struct part {
	struct batch *batch;
	char *content_id;
	char *method;
	char *path;
	char *query;  /* the raw query string, "" if none */
	json_t *args; /* the query's parameters, decoded */
	char *body;
	size_t len;
	/* the answer */
	unsigned status;
	char *ctype;
	char *answer;
	size_t alen;
};

struct batch {
	struct rq *rq; /* the batch's own request */
	struct part *parts;
	size_t n, left;
};

/* --- what a request asks --- */

const char *
rq_method(const struct rq *rq)
{
	return rq->part != NULL ? rq->part->method : httpd_req_method(rq->req);
}

const char *
rq_path(const struct rq *rq)
{
	return rq->part != NULL ? rq->part->path : httpd_req_path(rq->req);
}

char *
rq_query_string(const struct rq *rq)
{
	return rq->part != NULL ? xstrdup(rq->part->query) : httpd_req_query_string(rq->req);
}

const char *
rq_body(const struct rq *rq, size_t *len, int *too_large)
{
	if (rq->part == NULL)
		return httpd_req_body(rq->req, len, too_large);
	if (len != NULL)
		*len = rq->part->len;
	if (too_large != NULL)
		*too_large = 0;
	return rq->part->body;
}

const char *
rq_query(const struct rq *rq, const char *key)
{
	if (rq->part == NULL)
		return httpd_req_query(rq->req, key);
	return json_string_value(json_object_get(rq->part->args, key));
}

/* --- reading the batch --- */

/* The value of a header in the lines [p, end), or NULL; malloc'd. */
static char *
header(const char *p, const char *end, const char *name)
{
	size_t n = strlen(name);

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *ve = eol;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			return xstrndup(v, (size_t)(ve - v));
		}
		p = eol + 1;
	}
	return NULL;
}

/* The blank line ending headers at p: where the rest begins, or NULL. */
static const char *
after_headers(const char *p, const char *end)
{
	for (const char *s = p; s < end; s++) {
		if (s[0] == '\n' && s + 1 < end && s[1] == '\n')
			return s + 2;
		if (s[0] == '\n' && s + 2 < end && s[1] == '\r' && s[2] == '\n')
			return s + 3;
	}
	return NULL;
}

/* One part: its MIME headers, then an HTTP request line, headers and body. */
static int
parse_part(const char *p, const char *end, struct part *out, char **cause)
{
	const char *req = after_headers(p, end), *body, *eol, *sp1, *sp2;
	char *ctype = NULL, *clen;

	if (req == NULL || (ctype = header(p, req, "Content-Type")) == NULL ||
	    strncasecmp(ctype, "application/http", 16) != 0) {
		free(ctype);
		*cause = xstrdup("each part must be application/http");
		return -EINVAL;
	}
	free(ctype);
	out->content_id = header(p, req, "Content-ID");
	if ((eol = memchr(req, '\n', (size_t)(end - req))) == NULL ||
	    (sp1 = memchr(req, ' ', (size_t)(eol - req))) == NULL ||
	    (sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1))) == NULL || sp2 == sp1 + 1) {
		*cause = xstrdup("a part's request line must be \"METHOD PATH HTTP/1.1\"");
		return -EINVAL;
	}
	out->method = xstrndup(req, (size_t)(sp1 - req));
	out->path = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
	if (str_prefix(out->path, "http://") || str_prefix(out->path, "https://")) {
		char *slash = strchr(strstr(out->path, "://") + 3, '/');
		char *rest = xstrdup(slash != NULL ? slash : "/");

		free(out->path);
		out->path = rest;
	}
	{
		char *q = strchr(out->path, '?');

		out->query = xstrdup(q != NULL ? q + 1 : "");
		out->args = emu_form(out->query);
		if (q != NULL)
			*q = '\0';
	}
	if ((body = after_headers(eol, end)) == NULL)
		body = end;
	/* Content-Length, when given, bounds the body; the boundary's CRLF is not in it. */
	clen = header(eol + 1, body, "Content-Length");
	out->len = (size_t)(end - body);
	while (out->len > 0 && (body[out->len - 1] == '\n' || body[out->len - 1] == '\r'))
		out->len--;
	if (clen != NULL) {
		int64_t n;

		if (parse_int64(clen, 0, (int64_t)out->len, &n) == 0)
			out->len = (size_t)n;
		free(clen);
	}
	out->body = xstrndup(body, out->len);
	return 0;
}

/* The boundary of a multipart/mixed Content-Type, or NULL. */
static char *
boundary_of(const char *ctype)
{
	const char *b;
	size_t n;

	if (ctype == NULL || strncasecmp(ctype, "multipart/mixed", 15) != 0 ||
	    (b = strstr(ctype, "boundary=")) == NULL)
		return NULL;
	b += strlen("boundary=");
	if (*b == '"')
		return (n = strcspn(b + 1, "\"")) > 0 ? xstrndup(b + 1, n) : NULL;
	return (n = strcspn(b, "; \t")) > 0 ? xstrndup(b, n) : NULL;
}

static int
parse_parts(const char *body, size_t len, const char *boundary, struct batch *b, char **cause)
{
	char *delim = xasprintf("--%s", boundary);
	size_t dl = strlen(delim);
	const char *end = body + len, *p = memmem(body, len, delim, dl);
	int error = 0;

	while (p != NULL && error == 0) {
		const char *start = p + dl, *next;

		if (start + 1 < end && start[0] == '-' && start[1] == '-')
			break; /* the closing delimiter */
		next = memmem(start, (size_t)(end - start), delim, dl);
		if (next == NULL) {
			*cause = xstrdup("the body ends before its closing boundary");
			error = -EINVAL;
			break;
		}
		if (b->n == BATCH_MAX_PARTS) {
			*cause = xasprintf("a batch may hold at most %d requests", BATCH_MAX_PARTS);
			error = -EINVAL;
			break;
		}
		b->parts = xreallocarray(b->parts, b->n + 1, sizeof *b->parts);
		b->parts[b->n] = (struct part){.batch = b};
		error = parse_part(start, next, &b->parts[b->n], cause);
		b->n++;
		p = next;
	}
	if (error == 0 && b->n == 0) {
		*cause = xstrdup("the batch holds no request");
		error = -EINVAL;
	}
	free(delim);
	return error;
}

int
batch_parse(const char *body, size_t len, const char *boundary, struct batch **out, char **cause)
{
	struct batch *b = xcalloc(1, sizeof *b);
	int error;

	if ((error = parse_parts(body, len, boundary, b, cause)) != 0) {
		batch_free(b);
		return error;
	}
	b->left = b->n;
	*out = b;
	return 0;
}

void
batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct part *pt = &b->parts[i];

		free(pt->content_id);
		free(pt->method);
		free(pt->path);
		free(pt->query);
		json_decref(pt->args);
		free(pt->body);
		free(pt->ctype);
		free(pt->answer);
	}
	free(b->parts);
	free(b);
}

/* --- answering --- */

static const char *
reason_phrase(unsigned status)
{
	static const struct {
		unsigned status;
		const char *phrase;
	} phrases[] = {{200, "OK"}, {204, "No Content"}, {400, "Bad Request"},
	    {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"}, {409, "Conflict"},
	    {412, "Precondition Failed"}, {413, "Payload Too Large"}, {429, "Too Many Requests"},
	    {500, "Internal Server Error"}, {503, "Service Unavailable"}};

	for (size_t i = 0; i < nitems(phrases); i++)
		if (phrases[i].status == status)
			return phrases[i].phrase;
	return "Unknown";
}

static void
batch_answer(struct batch *b)
{
	struct buf out = BUF_INIT(SIZE_MAX);
	unsigned char r[12];
	char boundary[40], *ctype;

	random_bytes(r, sizeof r);
	snprintf(boundary, sizeof boundary,
	    "batch_%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4],
	    r[5], r[6], r[7], r[8], r[9], r[10], r[11]);
	for (size_t i = 0; i < b->n; i++) {
		struct part *pt = &b->parts[i];
		const char *id = pt->content_id != NULL ? pt->content_id : "";

		buf_printf(&out, "--%s\r\nContent-Type: application/http\r\n", boundary);
		if (*id != '\0')
			buf_printf(&out, "Content-ID: <response-%.*s>\r\n",
			    (int)strcspn(id + (*id == '<'), ">"), id + (*id == '<'));
		buf_printf(&out, "\r\nHTTP/1.1 %u %s\r\n", pt->status, reason_phrase(pt->status));
		if (pt->ctype != NULL)
			buf_printf(&out, "Content-Type: %s\r\n", pt->ctype);
		buf_printf(&out, "Content-Length: %zu\r\n\r\n", pt->alen);
		buf_add(&out, pt->answer, pt->alen);
		buf_addstr(&out, "\r\n");
	}
	buf_printf(&out, "--%s--\r\n", boundary);
	ctype = xasprintf("multipart/mixed; boundary=%s", boundary);
	emu_reply(b->rq, 200, ctype, out.data, out.len);
	free(ctype);
	buf_release(&out);
	batch_free(b);
}

void
batch_part_answered(struct rq *rq, unsigned status, const char *ctype, const char *body, size_t len)
{
	struct part *pt = rq->part;
	struct batch *b = pt->batch;

	pt->status = status;
	pt->ctype = ctype != NULL ? xstrdup(ctype) : NULL;
	pt->answer = xmalloc(len + 1);
	memcpy(pt->answer, body, len);
	pt->alen = len;
	if (--b->left == 0)
		batch_answer(b);
}

void
batch_route(struct rq *rq)
{
	struct batch *b;
	char *boundary = boundary_of(httpd_req_header(rq->req, "Content-Type")), *cause = NULL;
	const char *body;
	size_t len;

	if (strcmp(httpd_req_method(rq->req), "POST") != 0) {
		emu_error(rq, 404, "notFound", "The requested URL %s was not found on this server.",
		    httpd_req_path(rq->req));
		goto out;
	}
	if (boundary == NULL) {
		emu_error_status(rq, 400, "badRequest", "INVALID_ARGUMENT",
		    "A batch request must be multipart/mixed with a boundary.");
		goto out;
	}
	body = httpd_req_body(rq->req, &len, NULL);
	if (batch_parse(body, len, boundary, &b, &cause) != 0) {
		emu_error_status(rq, 400, "badRequest", "INVALID_ARGUMENT",
		    "Failed to parse batch request: %s.", cause);
		goto out;
	}
	b->rq = rq;
	/* Each part as if it came alone; the last to be answered answers the batch. */
	for (size_t i = 0, n = b->n; i < n; i++) {
		struct rq *sub = rq_new(rq->emu, rq->req, "api");

		sub->part = &b->parts[i];
		sub->user = rq->user != NULL ? xstrdup(rq->user) : NULL;
		compute_call(sub);
	}
out:
	free(boundary);
	free(cause);
}
