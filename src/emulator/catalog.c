/*
 * The Cloud Billing Catalog's SKU page for Compute Engine
 * (GET /v1/services/6F81-5844-456A/skus), served from the price catalog that
 * spillway ships (data/gce-prices.json, in the same format), with Google's
 * pageSize and pageToken.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/b64.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define COMPUTE_SERVICE "6F81-5844-456A"
#define PAGE_MAX        5000

extern const char gce_prices_json[];
extern const size_t gce_prices_json_len;

static json_t *
skus(void)
{
	static json_t *doc;

	if (doc == NULL) {
		char *cause = NULL;

		if (jx_parse(gce_prices_json, gce_prices_json_len, &doc, &cause) != 0)
			fatalx("the built-in price catalog does not parse: %s", cause);
	}
	return json_object_get(doc, "skus");
}

static void
not_found(struct rq *rq, const char *what)
{
	emu_reply_json(rq, 404,
	    jx_pack("{s:{s:i, s:s, s:s}}", "error", "code", 404, "message", what, "status",
	        "NOT_FOUND"));
}

static void
invalid(struct rq *rq, const char *what)
{
	emu_reply_json(rq, 400,
	    jx_pack("{s:{s:i, s:s, s:s}}", "error", "code", 400, "message", what, "status",
	        "INVALID_ARGUMENT"));
}

void
catalog_route(struct rq *rq, char **parts, size_t n)
{
	const char *size = httpd_req_query(rq->req, "pageSize");
	const char *token = httpd_req_query(rq->req, "pageToken");
	json_t *all = skus(), *page;
	int64_t per = PAGE_MAX, from = 0;
	size_t total = json_array_size(all);

	/* v1 services ID skus */
	if (n != 4 || strcmp(parts[3], "skus") != 0 ||
	    strcmp(httpd_req_method(rq->req), "GET") != 0) {
		not_found(rq, "Method not found.");
		return;
	}
	if (strcmp(parts[2], COMPUTE_SERVICE) != 0) {
		char *msg = xasprintf("Service not found: services/%s", parts[2]);

		not_found(rq, msg);
		free(msg);
		return;
	}
	if (size != NULL && (parse_int64(size, 0, PAGE_MAX, &per) != 0)) {
		invalid(rq, "pageSize must be a whole number from 0 to 5000.");
		return;
	}
	/* Google may answer fewer than asked: a client follows nextPageToken. */
	if (per == 0 || per > rq->emu->faults.catalog_page)
		per = rq->emu->faults.catalog_page;
	if (token != NULL && *token != '\0') {
		unsigned char *raw;
		size_t len;
		int bad;

		if (b64url_decode(token, strlen(token), &raw, &len) != 0) {
			invalid(rq, "Invalid page token.");
			return;
		}
		bad = parse_int64((char *)raw, 0, (int64_t)total, &from) != 0;
		free(raw);
		if (bad) {
			invalid(rq, "Invalid page token.");
			return;
		}
	}
	page = json_array();
	for (size_t i = (size_t)from; i < total && json_array_size(page) < (size_t)per; i++)
		json_array_append(page, json_array_get(all, i));
	if ((size_t)(from + per) < total) {
		char pos[24], *tok;

		snprintf(pos, sizeof pos, "%lld", (long long)(from + per));
		tok = b64url_encode(pos, strlen(pos));
		emu_reply_json(rq, 200, jx_pack("{s:o, s:s}", "skus", page, "nextPageToken", tok));
		free(tok);
	} else {
		emu_reply_json(rq, 200, jx_pack("{s:o, s:s}", "skus", page, "nextPageToken", ""));
	}
}
