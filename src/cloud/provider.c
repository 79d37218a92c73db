/*
 * What every provider shares: error classes and their names, the retry
 * policy's arithmetic, and the typed copies callers keep of results. Pure
 * functions, unit-tested.
 */
#include <errno.h>
#include <string.h>

#include "cloud/provider.h"
#include "util/xmalloc.h"

static const char *names[] = {
    [CLOUD_OK] = "ok",
    [CLOUD_RATE_LIMITED] = "rate-limited",
    [CLOUD_SERVER] = "server",
    [CLOUD_AUTH] = "auth",
    [CLOUD_QUOTA] = "quota",
    [CLOUD_STOCKOUT] = "stockout",
    [CLOUD_EXISTS] = "exists",
    [CLOUD_NOT_FOUND] = "not-found",
    [CLOUD_INVALID] = "invalid",
    [CLOUD_NETWORK] = "network",
    [CLOUD_DEADLINE] = "deadline",
};

const char *
cloud_errc_name(enum cloud_errc c)
{
	return c < sizeof names / sizeof names[0] ? names[c] : "unknown";
}

bool
cloud_errc_retryable(enum cloud_errc c)
{
	return c == CLOUD_RATE_LIMITED || c == CLOUD_SERVER || c == CLOUD_NETWORK;
}

char *
cloud_error_text(const struct cloud_error *e)
{
	if (e->http_status != 0)
		return xasprintf("%s (HTTP %d%s%s): %s", cloud_errc_name(e->code), e->http_status,
		    e->reason != NULL ? ", " : "", e->reason != NULL ? e->reason : "",
		    e->message != NULL ? e->message : "no message");
	return xasprintf(
	    "%s: %s", cloud_errc_name(e->code), e->message != NULL ? e->message : "no message");
}

const char *
cloud_kv_get(const struct cloud_kv *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0)
			return kv[i].value;
	return NULL;
}

static bool
is(const char *a, const char *b)
{
	return a != NULL && strcmp(a, b) == 0;
}

enum cloud_errc
cloud_classify_http(long status, const char *reason)
{
	if (status >= 200 && status < 300)
		return CLOUD_OK;
	if (status == 429 || is(reason, "rateLimitExceeded") || is(reason, "userRateLimitExceeded"))
		return CLOUD_RATE_LIMITED;
	if (is(reason, "quotaExceeded"))
		return CLOUD_QUOTA;
	if (status >= 500)
		return CLOUD_SERVER;
	switch (status) {
	case 401:
	case 403:
		return CLOUD_AUTH;
	case 404:
		return CLOUD_NOT_FOUND;
	case 409:
		return CLOUD_EXISTS;
	default:
		return CLOUD_INVALID;
	}
}

enum cloud_errc
cloud_classify_op(const char *code, int http_status)
{
	if (is(code, "QUOTA_EXCEEDED"))
		return CLOUD_QUOTA;
	if (is(code, "ZONE_RESOURCE_POOL_EXHAUSTED") ||
	    is(code, "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"))
		return CLOUD_STOCKOUT;
	if (is(code, "RESOURCE_ALREADY_EXISTS"))
		return CLOUD_EXISTS;
	if (is(code, "RESOURCE_NOT_FOUND"))
		return CLOUD_NOT_FOUND;
	if (http_status != 0)
		return cloud_classify_http(http_status, NULL);
	return CLOUD_SERVER;
}

int64_t
retry_backoff_ms(const struct retry_policy *p, int attempt, double u)
{
	int64_t ceiling = p->base_ms;

	/* Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]. */
	for (int i = 1; i < attempt && ceiling < p->cap_ms; i++)
		ceiling *= 2;
	if (ceiling > p->cap_ms)
		ceiling = p->cap_ms;
	return (int64_t)(u * (double)(ceiling + 1));
}

/* A field copied whole, or -EINVAL: a provider's answers fit (CLOUD_NAME_LEN). */
static int
copy_field(char *dst, size_t size, const char *src, bool optional)
{
	size_t n = src != NULL ? strlen(src) : 0;

	if ((src == NULL && !optional) || n >= size)
		return -EINVAL;
	memcpy(dst, src != NULL ? src : "", n + 1);
	return 0;
}

int
cloud_seen_copy(const struct cloud_instance *in, struct cloud_seen *out)
{
	memset(out, 0, sizeof *out);
	if (copy_field(out->name, sizeof out->name, in->name, false) != 0 ||
	    copy_field(out->zone, sizeof out->zone, in->zone, false) != 0 ||
	    copy_field(out->status, sizeof out->status, in->status, false) != 0 ||
	    copy_field(out->machine_type, sizeof out->machine_type, in->machine_type, false) != 0 ||
	    copy_field(out->nat_ip, sizeof out->nat_ip, in->nat_ip, true) != 0) {
		memset(out, 0, sizeof *out);
		return -EINVAL;
	}
	out->started_ms = in->started_ms;
	out->max_run_s = in->max_run_s;
	out->spot = in->spot;
	return 0;
}

int
cloud_preempted_copy(const struct cloud_op *op, struct cloud_preempted *out)
{
	memset(out, 0, sizeof *out);
	if (copy_field(out->target, sizeof out->target, op->target, false) != 0)
		return -EINVAL;
	out->t_ms = op->inserted_ms;
	return 0;
}

const char *
cloud_power_name(enum cloud_power p)
{
	static const char *const methods[] = {
	    [CLOUD_STOP] = "stop",
	    [CLOUD_START] = "start",
	    [CLOUD_SUSPEND] = "suspend",
	    [CLOUD_RESUME] = "resume",
	};

	return (size_t)p < sizeof methods / sizeof methods[0] ? methods[p] : "?";
}
