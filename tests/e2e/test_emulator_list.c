/*
 * instances.list over 1,000 instances: every page of 500 (and of odd sizes),
 * no instance twice or missing, names in order, the filters Google takes,
 * and partial responses (fields=).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"
#include "util/jx.h"
#include "util/xmalloc.h"

#define ZONE  "us-central1-b"
#define COUNT 1000

static struct emu emu;

static int
start(void **state)
{
	/* Nothing boots: the instances stay PROVISIONING for the whole test. */
	const char *args[] = {"--boot-ms", "3600000", NULL};
	char *url;
	CURL *c;
	struct curl_slist *h = NULL;
	char auth[512];

	emu_start(&emu, args);
	url = compute_url(&emu, ZONE, "instances");
	/* One connection, kept alive, for the 1,000 inserts. */
	c = curl_easy_init();
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", emu_token(&emu));
	h = curl_slist_append(h, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwrite);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, fopen("/dev/null", "w"));
	for (int i = 0; i < COUNT; i++) {
		char name[32], team[8];
		json_t *b;
		char *s;
		long status;

		snprintf(name, sizeof name, "inst-%04d", (i * 7919) % COUNT); /* not in order */
		snprintf(team, sizeof team, "t%d", i % 3);
		b = instance_body(ZONE, name, "e2-small", i % 2 == 0, "team", team);
		if (i % 10 == 0)
			json_object_set_new(
			    json_object_get(b, "labels"), "owner", json_string("me"));
		s = jx_dumps(b);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, s);
		assert_int_equal(curl_easy_perform(c), CURLE_OK);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		assert_int_equal(status, 200);
		json_decref(b);
		free(s);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(url);
	return 0;
}

static int
stop(void **state)
{
	emu_stop(&emu);
	return 0;
}

static int
by_text(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* All pages of a listing; returns the names seen, in order. */
static json_t *
list_all(const char *query, int page_size, int *pages)
{
	json_t *names = json_array();
	char *token = NULL;

	*pages = 0;
	for (;;) {
		char *tail =
		    xasprintf("instances?maxResults=%d%s%s%s%s", page_size, query ? "&filter=" : "",
		        query ? query : "", token ? "&pageToken=" : "", token ? token : "");
		char *url = compute_url(&emu, ZONE, tail);
		json_t *v = api(&emu, "GET", url, NULL, 200), *it;
		size_t i;

		expect_schema("InstanceList", v);
		assert_true(json_array_size(json_object_get(v, "items")) <= (size_t)page_size);
		json_array_foreach (json_object_get(v, "items"), i, it)
			json_array_append_new(names, json_string(jx_str(it, "name")));
		(*pages)++;
		free(token);
		token = jx_str(v, "nextPageToken") ? xstrdup(jx_str(v, "nextPageToken")) : NULL;
		json_decref(v);
		free(url);
		free(tail);
		if (token == NULL)
			break;
	}
	return names;
}

static void
expect_sorted_unique(json_t *names, size_t count)
{
	assert_int_equal(json_array_size(names), count);
	for (size_t i = 1; i < json_array_size(names); i++)
		assert_true(strcmp(json_string_value(json_array_get(names, i - 1)),
		                json_string_value(json_array_get(names, i))) < 0);
}

static void
test_pages_of_500(void **state)
{
	int pages;
	json_t *names = list_all(NULL, 500, &pages);

	assert_int_equal(pages, 2);
	expect_sorted_unique(names, COUNT);
	assert_string_equal(json_string_value(json_array_get(names, 0)), "inst-0000");
	assert_string_equal(json_string_value(json_array_get(names, COUNT - 1)), "inst-0999");
	json_decref(names);
}

static void
test_odd_pages(void **state)
{
	int pages;
	json_t *names = list_all(NULL, 333, &pages);

	assert_int_equal(pages, 4);
	expect_sorted_unique(names, COUNT);
	json_decref(names);
	names = list_all("labels.team%20%3D%20t1", 77, &pages);
	expect_sorted_unique(names, 333);
	json_decref(names);
}

static void
test_filters(void **state)
{
	static const struct {
		const char *filter; /* URL-encoded */
		size_t count;
	} cases[] = {
	    {"labels.team%20%3D%20t0", 334},
	    {"labels.owner%3A*", 100},
	    {"(labels.team%20%3D%20t0)%20(labels.owner%3A*)", 34},
	    {"labels.team%20%3D%20t0%20AND%20labels.owner%20%3D%20me", 34},
	    {"labels.team%20%3D%20t0%20OR%20labels.team%20%3D%20t1", 667},
	    {"status%20%3D%20PROVISIONING", COUNT},
	    {"status%20%3D%20RUNNING", 0},
	    {"scheduling.provisioningModel%20%3D%20SPOT", 500},
	    {"name%20eq%20inst-00.*", 100},
	    {"name%20ne%20inst-0.*", 0},
	    {"NOT%20labels.team%20%3D%20t2", 667},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int pages;
		json_t *names = list_all(cases[i].filter, 500, &pages);

		if (json_array_size(names) != cases[i].count)
			fail_msg("%s: %zu, not %zu", cases[i].filter, json_array_size(names),
			    cases[i].count);
		json_decref(names);
	}
}

static void
test_list_errors(void **state)
{
	static const struct {
		const char *query;
		const char *message;
	} cases[] = {
	    {"maxResults=501", "Must be less than or equal to 500"},
	    {"maxResults=-1", "Must be greater than or equal to 0"},
	    {"maxResults=ten", "Must be an integer"},
	    {"pageToken=%21%21", "The page token is invalid"},
	    {"filter=status%20%3D", "Invalid list filter expression"},
	    {"filter=name%20eq%20x%20status%20%3D%20y", "cannot be mixed"},
	    {"orderBy=zone", "Ordering is by name, creationTimestamp or insertTime"},
	    {"orderBy=name%20sideways", "Ordering is by name, creationTimestamp or insertTime"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *tail = xasprintf("instances?%s", cases[i].query);
		char *url = compute_url(&emu, ZONE, tail);
		json_t *v = api(&emu, "GET", url, NULL, 400);

		expect_google_error(v, 400, "invalid");
		if (strstr(jx_str(v, "error.message"), cases[i].message) == NULL)
			fail_msg("%s: %s", cases[i].query, jx_str(v, "error.message"));
		json_decref(v);
		free(url);
		free(tail);
	}
}

/* orderBy=creationTimestamp desc, over pages: every instance once, newest first. */
static void
test_order(void **state)
{
	json_t *seen = json_array();
	char *token = NULL, *last = NULL;
	int pages = 0;

	do {
		char *tail =
		    xasprintf("instances?maxResults=333&orderBy=creationTimestamp%%20desc%s%s",
		        token ? "&pageToken=" : "", token ? token : "");
		char *url = compute_url(&emu, ZONE, tail);
		json_t *v = api(&emu, "GET", url, NULL, 200), *it;
		size_t i;

		json_array_foreach (json_object_get(v, "items"), i, it) {
			const char *t = jx_str(it, "creationTimestamp");

			/* One zone's clock, one offset: the text orders as the time. */
			assert_true(last == NULL || strcmp(last, t) >= 0);
			free(last);
			last = xstrdup(t);
			json_array_append_new(seen, json_string(jx_str(it, "name")));
		}
		free(token);
		token = jx_str(v, "nextPageToken") ? xstrdup(jx_str(v, "nextPageToken")) : NULL;
		json_decref(v);
		free(url);
		free(tail);
		pages++;
	} while (token != NULL);
	assert_int_equal(pages, 4);
	assert_int_equal(json_array_size(seen), COUNT);
	{
		/* Each once: sorted, no two the same. */
		size_t n = json_array_size(seen);
		const char **names = calloc(n, sizeof *names);

		for (size_t i = 0; i < n; i++)
			names[i] = json_string_value(json_array_get(seen, i));
		qsort(names, n, sizeof *names, by_text);
		for (size_t i = 1; i < n; i++)
			assert_true(strcmp(names[i - 1], names[i]) < 0);
		free(names);
	}
	free(last);
	json_decref(seen);
}

/* aggregated/instances over pages: every instance once, its zone's scope; the others warned. */
static void
test_aggregated(void **state)
{
	size_t total = 0;
	char *token = NULL;
	int pages = 0;

	do {
		char *url = xasprintf(
		    "%s/compute/v1/projects/spillway-emulator/aggregated/instances?maxResults=400%s%s",
		    emu.url, token ? "&pageToken=" : "", token ? token : "");
		json_t *v = api(&emu, "GET", url, NULL, 200);

		expect_schema("InstanceAggregatedList", v);
		total += json_array_size(jx_get(v, "items.zones/" ZONE ".instances"));
		assert_string_equal(
		    jx_str(v, "items.zones/us-central1-a.warning.code"), "NO_RESULTS_ON_PAGE");
		free(token);
		token = jx_str(v, "nextPageToken") ? xstrdup(jx_str(v, "nextPageToken")) : NULL;
		json_decref(v);
		free(url);
		pages++;
	} while (token != NULL);
	assert_int_equal(pages, 3);
	assert_int_equal(total, COUNT);
}

/* fields=: each item only what was asked, pages as before; a bad one refused before acting. */
static void
test_partial(void **state)
{
	char *url = compute_url(&emu, ZONE,
	    "instances?maxResults=500&fields=items(name%2Clabels%2Fteam)%2CnextPageToken");
	json_t *v = api(&emu, "GET", url, NULL, 200), *it, *b;
	const char *key;
	char *body;
	size_t i, keys = 0;

	assert_null(json_object_get(v, "kind"));
	assert_non_null(jx_str(v, "nextPageToken"));
	assert_int_equal(json_array_size(json_object_get(v, "items")), 500);
	json_array_foreach (json_object_get(v, "items"), i, it) {
		json_t *m;

		json_object_foreach (it, key, m)
			keys++;
		assert_non_null(jx_str(it, "name"));
		assert_non_null(jx_str(it, "labels.team"));
		assert_int_equal(json_object_size(json_object_get(it, "labels")), 1);
	}
	assert_int_equal(keys, 2 * 500);
	json_decref(v);
	free(url);
	/* An insert with a selection that does not parse: a 400, and no instance. */
	url = compute_url(&emu, ZONE, "instances?fields=name%2C");
	b = instance_body(ZONE, "partial-0", "e2-small", true, "team", "t9");
	body = jx_dumps(b);
	v = api(&emu, "POST", url, body, 400);
	free(body);
	expect_google_error(v, 400, "invalidParameter");
	assert_non_null(strstr(jx_str(v, "error.message"), "Invalid field selection"));
	json_decref(v);
	json_decref(b);
	free(url);
	url = compute_url(&emu, ZONE, "instances/partial-0");
	json_decref(api(&emu, "GET", url, NULL, 404));
	free(url);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pages_of_500),
	    cmocka_unit_test(test_odd_pages),
	    cmocka_unit_test(test_filters),
	    cmocka_unit_test(test_list_errors),
	    cmocka_unit_test(test_order),
	    cmocka_unit_test(test_aggregated),
	    cmocka_unit_test(test_partial),
	};

	jx_init();
	return cmocka_run_group_tests(tests, start, stop);
}
