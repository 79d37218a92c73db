/*
 * The emulator's OAuth endpoint, bearer checks, metadata server, billing
 * catalog, request log and admin API, over real HTTP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define ZONE "us-central1-a"

static struct emu emu;

static int
start(void **state)
{
	const char *args[] = {"--boot-ms", "200", "--guest-boot-ms", "0", NULL};

	emu_start(&emu, args);
	return 0;
}

static int
stop(void **state)
{
	emu_stop(&emu);
	return 0;
}

static json_t *
key_file(void)
{
	char *text = read_text(emu.creds);
	json_t *v;

	assert_non_null(text);
	assert_int_equal(jx_parse(text, strlen(text), &v, NULL), 0);
	free(text);
	return v;
}

/* A JWT with these claims changed (NULL: as a client should send it). */
static char *
jwt(EVP_PKEY *signer, const char *aud, int64_t iat, int64_t life, const char *iss)
{
	json_t *key = key_file();
	EVP_PKEY *own = NULL;
	char *cause = NULL, *tok = NULL;
	json_t *h = jx_pack(
	    "{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", jx_str(key, "private_key_id"));
	json_t *c = jx_pack("{s:s, s:s, s:s, s:I, s:I}", "iss",
	    iss ? iss : jx_str(key, "client_email"), "scope",
	    "https://www.googleapis.com/auth/compute", "aud", aud ? aud : jx_str(key, "token_uri"),
	    "iat", (json_int_t)iat, "exp", (json_int_t)(iat + life));

	if (signer == NULL)
		signer = own = pem_read_private(jx_str(key, "private_key"), &cause);
	assert_int_equal(jwt_sign_rs256(signer, h, c, &tok), 0);
	EVP_PKEY_free(own);
	json_decref(h);
	json_decref(c);
	json_decref(key);
	return tok;
}

static void
token_call(struct resp *r, const char *form)
{
	char *url = xasprintf("%s/token", emu.url);

	http_call(r, "POST", url, NULL, form, NULL, NULL);
	free(url);
}

static void
expect_grant_error(const char *form, long status, const char *error, const char *description)
{
	struct resp r;

	token_call(&r, form);
	if (r.status != status || r.json == NULL || strcmp(jx_str(r.json, "error"), error) != 0 ||
	    (description && strstr(jx_str(r.json, "error_description"), description) == NULL))
		fail_msg("%s: %ld %s", form, r.status, r.body);
	expect_schema("OAuthError", r.json);
	resp_free(&r);
}

static void
test_credentials_file(void **state)
{
	json_t *k = key_file();
	struct stat st;
	char *want = xasprintf("%s/token", emu.url);

	assert_int_equal(stat(emu.creds, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(emu.user_creds, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_string_equal(jx_str(k, "type"), "service_account");
	assert_string_equal(jx_str(k, "token_uri"), want);
	assert_string_equal(jx_str(k, "project_id"), "spillway-emulator");
	assert_true(str_prefix(jx_str(k, "private_key"), "-----BEGIN PRIVATE KEY-----"));
	json_decref(k);
	free(want);
}

static void
test_jwt_grant(void **state)
{
	int64_t now = time(NULL);
	EVP_PKEY *stranger = rsa_generate(2048);
	char *t, *form;
	struct resp r;

	t = jwt(NULL, NULL, now, 3600, NULL);
	form = xasprintf("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer&"
	                 "assertion=%s",
	    t);
	token_call(&r, form);
	assert_int_equal(r.status, 200);
	expect_schema("OAuthToken", r.json);
	assert_true(str_prefix(jx_str(r.json, "access_token"), "ya29."));
	assert_int_equal(json_integer_value(json_object_get(r.json, "expires_in")), 3599);
	resp_free(&r);
	free(form);
	free(t);

#define GRANT "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion="
	t = jwt(stranger, NULL, now, 3600, NULL);
	form = xasprintf(GRANT "%s", t);
	expect_grant_error(form, 400, "invalid_grant", "Invalid JWT Signature.");
	free(form);
	free(t);
	t = jwt(NULL, NULL, now - 7200, 3600, NULL);
	form = xasprintf(GRANT "%s", t);
	expect_grant_error(form, 400, "invalid_grant", "short-lived token");
	free(form);
	free(t);
	t = jwt(NULL, NULL, now, 7200, NULL);
	form = xasprintf(GRANT "%s", t);
	expect_grant_error(form, 400, "invalid_grant", "short-lived token");
	free(form);
	free(t);
	t = jwt(NULL, "https://example.com/token", now, 3600, NULL);
	form = xasprintf(GRANT "%s", t);
	expect_grant_error(form, 400, "invalid_grant", "audience");
	free(form);
	free(t);
	t = jwt(NULL, NULL, now, 3600, "someone@else.iam.gserviceaccount.com");
	form = xasprintf(GRANT "%s", t);
	expect_grant_error(form, 400, "invalid_grant", "account not found");
	free(form);
	free(t);
	expect_grant_error(GRANT "not.a.jwt", 400, "invalid_grant", "Invalid JWT");
	expect_grant_error("grant_type=password", 400, "unsupported_grant_type", "password");
	EVP_PKEY_free(stranger);
}

static void
test_refresh_grant(void **state)
{
	char *text = read_text(emu.user_creds), *form;
	json_t *u;
	struct resp r;

	assert_int_equal(jx_parse(text, strlen(text), &u, NULL), 0);
	assert_string_equal(jx_str(u, "type"), "authorized_user");
	form = xasprintf("grant_type=refresh_token&client_id=%s&client_secret=%s&refresh_token=%s",
	    jx_str(u, "client_id"), jx_str(u, "client_secret"), jx_str(u, "refresh_token"));
	token_call(&r, form);
	assert_int_equal(r.status, 200);
	expect_schema("OAuthToken", r.json);
	resp_free(&r);
	free(form);
	form = xasprintf("grant_type=refresh_token&client_id=%s&client_secret=%s&refresh_token=1//"
	                 "revoked",
	    jx_str(u, "client_id"), jx_str(u, "client_secret"));
	expect_grant_error(form, 400, "invalid_grant", NULL);
	free(form);
	form =
	    xasprintf("grant_type=refresh_token&client_id=nobody&client_secret=x&refresh_token=%s",
	        jx_str(u, "refresh_token"));
	expect_grant_error(form, 401, "invalid_client", NULL);
	free(form);
	json_decref(u);
	free(text);
}

/* Google's client libraries may send a self-signed JWT as the bearer token. */
static void
test_self_signed_jwt(void **state)
{
	int64_t now = time(NULL);
	char *t = jwt(NULL, "https://compute.googleapis.com/", now, 3600, NULL);
	char *url = compute_url(&emu, ZONE, "instances");
	EVP_PKEY *stranger = rsa_generate(2048);
	struct resp r;

	http_call(&r, "GET", url, t, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	expect_schema("InstanceList", r.json);
	resp_free(&r);
	free(t);
	t = jwt(stranger, "https://compute.googleapis.com/", now, 3600, NULL);
	http_call(&r, "GET", url, t, NULL, NULL, NULL);
	assert_int_equal(r.status, 401);
	expect_google_error(r.json, 401, "authError");
	resp_free(&r);
	free(t);
	free(url);
	EVP_PKEY_free(stranger);
}

static void
metadata(struct resp *r, const char *path, const char *instance, const char *source)
{
	char *url = xasprintf("%s/computeMetadata/v1/%s", emu.url, path);
	char *named = instance ? xasprintf("X-Emulator-Instance: %s", instance) : NULL;
	const char *hdrs[] = {"Metadata-Flavor: Google", named, NULL};

	http_call(r, "GET", url, NULL, NULL, hdrs, source);
	free(named);
	free(url);
}

static void
test_metadata_server(void **state)
{
	char *ins = compute_url(&emu, ZONE, "instances"),
	     *url = compute_url(&emu, ZONE, "instances/meta-1");
	json_t *b = instance_body(ZONE, "meta-1", "e2-highmem-4", true, NULL, NULL), *v;
	char *s = jx_dumps(b), *nat;
	struct resp r;

	json_decref(api(&emu, "POST", ins, s, 200));
	v = wait_for_field(&emu, url, "status", "RUNNING", 10000);
	nat = xstrdup(jx_str(v, "networkInterfaces.0.accessConfigs.0.natIP"));
	json_decref(v);

	/* Without the header: 403. */
	{
		char *u = xasprintf("%s/computeMetadata/v1/project/project-id", emu.url);

		http_call(&r, "GET", u, NULL, NULL, NULL, NULL);
		assert_int_equal(r.status, 403);
		resp_free(&r);
		free(u);
	}
	metadata(&r, "project/project-id", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "spillway-emulator");
	assert_non_null(strstr(r.headers, "Metadata-Flavor: Google"));
	resp_free(&r);
	/* The instance asking is the one whose natIP the request comes from. */
	metadata(&r, "instance/name", NULL, nat);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "meta-1");
	resp_free(&r);
	metadata(&r, "instance/attributes/spillway-components", ZONE "/meta-1", NULL);
	assert_string_equal(r.body, "vision,chatbots");
	resp_free(&r);
	metadata(&r, "instance/attributes/", "meta-1", NULL);
	assert_string_equal(r.body, "spillway-components\n");
	resp_free(&r);
	metadata(&r, "instance/?recursive=true", "meta-1", NULL);
	assert_non_null(r.json);
	assert_string_equal(jx_str(r.json, "attributes.spillway-components"), "vision,chatbots");
	assert_string_equal(jx_str(r.json, "preempted"), "FALSE");
	assert_string_equal(
	    jx_str(r.json, "network-interfaces.0.access-configs.0.external-ip"), nat);
	resp_free(&r);
	metadata(&r, "instance/preempted", NULL, nat);
	assert_string_equal(r.body, "FALSE");
	resp_free(&r);
	metadata(&r, "instance/no-such-thing", NULL, nat);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	/* A token from the metadata server works on the Compute API. */
	metadata(&r, "instance/service-accounts/default/token", NULL, NULL);
	assert_int_equal(r.status, 200);
	expect_schema("OAuthToken", r.json);
	{
		struct resp l;

		http_call(&l, "GET", ins, jx_str(r.json, "access_token"), NULL, NULL, NULL);
		assert_int_equal(l.status, 200);
		resp_free(&l);
	}
	resp_free(&r);
	json_decref(b);
	free(s);
	free(nat);
	free(ins);
	free(url);
}

static void
test_billing_catalog(void **state)
{
	char *url = xasprintf("%s/v1/services/6F81-5844-456A/skus", emu.url), *page;
	json_t *v = api(&emu, "GET", url, NULL, 200), *sku;
	size_t i, total;
	bool found = false;
	const char *token;
	int pages = 0;

	expect_schema("ListSkusResponse", v);
	total = json_array_size(json_object_get(v, "skus"));
	assert_true(total >= 12);
	json_array_foreach (json_object_get(v, "skus"), i, sku) {
		if (strcmp(jx_str(sku, "description"),
		        "Spot Preemptible E2 Instance Core running in "
		        "Americas") == 0) {
			assert_string_equal(jx_str(sku, "category.usageType"), "Preemptible");
			assert_string_equal(
			    jx_str(sku, "pricingInfo.0.pricingExpression.usageUnit"), "h");
			assert_int_equal(
			    json_integer_value(jx_get(sku,
			        "pricingInfo.0.pricingExpression.tieredRates.0.unitPrice.nanos")),
			    6543477);
			found = true;
		}
	}
	assert_true(found);
	json_decref(v);
	/* Pages of 5, all of them once. */
	page = xasprintf("%s?pageSize=5", url);
	for (size_t seen = 0;;) {
		v = api(&emu, "GET", page, NULL, 200);
		expect_schema("ListSkusResponse", v);
		seen += json_array_size(json_object_get(v, "skus"));
		pages++;
		token = jx_str(v, "nextPageToken");
		free(page);
		if (token == NULL || *token == '\0') {
			assert_int_equal(seen, total);
			json_decref(v);
			break;
		}
		page = xasprintf("%s?pageSize=5&pageToken=%s", url, token);
		json_decref(v);
	}
	assert_int_equal(pages, (int)((total + 4) / 5));
	free(url);
	url = xasprintf("%s/v1/services/0000-0000-0000/skus", emu.url);
	v = api(&emu, "GET", url, NULL, 404);
	assert_string_equal(jx_str(v, "error.status"), "NOT_FOUND");
	json_decref(v);
	free(url);
}

static void
test_request_log(void **state)
{
	char *url = xasprintf("%s/emulator/v1/requests", emu.url), *file;
	struct resp r;
	json_t *e;
	size_t i;
	bool saw_token = false, saw_list = false;

	http_call(&r, "GET", url, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_array_foreach (json_object_get(r.json, "requests"), i, e) {
		const char *path = jx_str(e, "path");

		assert_non_null(jx_str(e, "method"));
		assert_true(json_is_integer(json_object_get(e, "status")));
		if (strcmp(path, "/token") == 0 && strstr(jx_str(e, "body"), "jwt-bearer")) {
			/* The assertion is a credential: it is not kept. */
			assert_non_null(strstr(jx_str(e, "body"), "assertion=[redacted]"));
			saw_token = true;
		}
		if (str_suffix(path, "/instances") && strcmp(jx_str(e, "method"), "GET") == 0)
			saw_list = true;
		assert_null(strstr(path, "/emulator/v1/"));
	}
	assert_true(saw_token);
	assert_true(saw_list);
	resp_free(&r);
	/* The same log, as JSON lines in --request-log; no secret in it. */
	file = read_text(emu.log);
	assert_non_null(file);
	assert_non_null(strstr(file, "\"path\":\"/token\""));
	assert_null(strstr(file, "eyJ"));
	assert_null(strstr(file, "ya29."));
	assert_null(strstr(file, "1//0g"));
	free(file);
	free(url);
}

static void
test_admin_reset(void **state)
{
	char *reset = xasprintf("%s/emulator/v1/reset", emu.url);
	char *stats = xasprintf("%s/emulator/v1/stats", emu.url);
	struct resp r;

	http_call(&r, "GET", stats, NULL, NULL, NULL, NULL);
	assert_true(json_integer_value(json_object_get(r.json, "instances")) >= 1);
	resp_free(&r);
	http_call(&r, "POST", reset, NULL, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	http_call(&r, "GET", stats, NULL, NULL, NULL, NULL);
	assert_int_equal(json_integer_value(json_object_get(r.json, "instances")), 0);
	assert_int_equal(json_integer_value(json_object_get(r.json, "operations")), 0);
	assert_int_equal(json_integer_value(json_object_get(r.json, "guests")), 0);
	resp_free(&r);
	free(reset);
	free(stats);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_credentials_file),
	    cmocka_unit_test(test_jwt_grant),
	    cmocka_unit_test(test_refresh_grant),
	    cmocka_unit_test(test_self_signed_jwt),
	    cmocka_unit_test(test_metadata_server),
	    cmocka_unit_test(test_billing_catalog),
	    cmocka_unit_test(test_request_log),
	    cmocka_unit_test(test_admin_reset),
	};

	jx_init();
	return cmocka_run_group_tests(tests, start, stop);
}
