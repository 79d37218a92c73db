/* The provider's pure parts: error classes and the retry policy's arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cloud/provider.h"

static void
test_classify_http(void **state)
{
	assert_int_equal(cloud_classify_http(200, NULL), CLOUD_OK);
	assert_int_equal(cloud_classify_http(429, NULL), CLOUD_RATE_LIMITED);
	assert_int_equal(cloud_classify_http(403, "rateLimitExceeded"), CLOUD_RATE_LIMITED);
	assert_int_equal(cloud_classify_http(403, "userRateLimitExceeded"), CLOUD_RATE_LIMITED);
	assert_int_equal(cloud_classify_http(403, "quotaExceeded"), CLOUD_QUOTA);
	assert_int_equal(cloud_classify_http(403, "forbidden"), CLOUD_AUTH);
	assert_int_equal(cloud_classify_http(401, "authError"), CLOUD_AUTH);
	assert_int_equal(cloud_classify_http(500, "backendError"), CLOUD_SERVER);
	assert_int_equal(cloud_classify_http(503, NULL), CLOUD_SERVER);
	assert_int_equal(cloud_classify_http(404, "notFound"), CLOUD_NOT_FOUND);
	assert_int_equal(cloud_classify_http(409, "alreadyExists"), CLOUD_EXISTS);
	assert_int_equal(cloud_classify_http(400, "invalid"), CLOUD_INVALID);
	assert_int_equal(cloud_classify_http(413, NULL), CLOUD_INVALID);
}

static void
test_classify_op(void **state)
{
	assert_int_equal(cloud_classify_op("QUOTA_EXCEEDED", 403), CLOUD_QUOTA);
	assert_int_equal(cloud_classify_op("ZONE_RESOURCE_POOL_EXHAUSTED", 503), CLOUD_STOCKOUT);
	assert_int_equal(
	    cloud_classify_op("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", 503), CLOUD_STOCKOUT);
	assert_int_equal(cloud_classify_op("RESOURCE_ALREADY_EXISTS", 409), CLOUD_EXISTS);
	assert_int_equal(cloud_classify_op("RESOURCE_NOT_FOUND", 404), CLOUD_NOT_FOUND);
	assert_int_equal(cloud_classify_op("SOMETHING_NEW", 400), CLOUD_INVALID);
	assert_int_equal(cloud_classify_op("SOMETHING_NEW", 0), CLOUD_SERVER);
}

static void
test_retryable(void **state)
{
	assert_true(cloud_errc_retryable(CLOUD_RATE_LIMITED));
	assert_true(cloud_errc_retryable(CLOUD_SERVER));
	assert_true(cloud_errc_retryable(CLOUD_NETWORK));
	for (int c = CLOUD_AUTH; c <= CLOUD_INVALID; c++)
		assert_false(cloud_errc_retryable(c));
	assert_false(cloud_errc_retryable(CLOUD_DEADLINE));
	assert_string_equal(cloud_errc_name(CLOUD_STOCKOUT), "stockout");
}

static void
test_backoff(void **state)
{
	struct retry_policy p = {500, 32000, 8};

	/* Full jitter: from 0 to min(cap, base * 2^(n-1)), inclusive. */
	assert_int_equal(retry_backoff_ms(&p, 1, 0.0), 0);
	assert_int_equal(retry_backoff_ms(&p, 1, 0.999999), 500);
	assert_int_equal(retry_backoff_ms(&p, 2, 0.999999), 1000);
	assert_int_equal(retry_backoff_ms(&p, 4, 0.999999), 4000);
	assert_int_equal(retry_backoff_ms(&p, 7, 0.999999), 32000);
	assert_int_equal(retry_backoff_ms(&p, 30, 0.999999), 32000);
	assert_int_equal(retry_backoff_ms(&p, 3, 0.5), 1000);
	for (int n = 1; n < 40; n++)
		assert_true(retry_backoff_ms(&p, n, 0.75) <= 32000);
}

static void
test_error_text(void **state)
{
	struct cloud_error e = {
	    CLOUD_QUOTA, 403, "quotaExceeded", "Quota 'CPUS' exceeded.", NULL, "CPUS", 24, 1};
	char *s = cloud_error_text(&e);

	assert_string_equal(s, "quota (HTTP 403, quotaExceeded): Quota 'CPUS' exceeded.");
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify_http),
	    cmocka_unit_test(test_classify_op),
	    cmocka_unit_test(test_retryable),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_error_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
