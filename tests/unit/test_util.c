/* Unit tests of the leaf modules in src/util. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "vm/hooks.h"
#include "util/b64.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/ini.h"
#include "util/jschema.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

static void
test_buf_bounded(void **state)
{
	struct buf b = BUF_INIT(10);

	assert_string_equal(buf_str(&b), "");
	assert_int_equal(buf_addstr(&b, "hello"), 0);
	assert_int_equal(buf_printf(&b, "%d", 1234), 0);
	assert_string_equal(buf_str(&b), "hello1234");
	/* One more byte fits (10), two do not; a failed add changes nothing. */
	assert_int_equal(buf_addstr(&b, "xy"), -E2BIG);
	assert_string_equal(buf_str(&b), "hello1234");
	assert_int_equal(buf_addch(&b, '!'), 0);
	assert_int_equal(b.len, 10);
	assert_int_equal(buf_printf(&b, "%s", "z"), -E2BIG);
	{
		size_t len;
		char *s = buf_detach(&b, &len);

		assert_int_equal(len, 10);
		assert_string_equal(s, "hello1234!");
		free(s);
	}
	assert_int_equal(b.len, 0);
	buf_release(&b);
}

static void
test_parse_numbers(void **state)
{
	int64_t i;
	double d;
	bool b;

	assert_int_equal(parse_int64("42", 0, 100, &i), 0);
	assert_int_equal(i, 42);
	assert_int_equal(parse_int64("-3", 0, 100, &i), -ERANGE);
	assert_int_equal(parse_int64("101", 0, 100, &i), -ERANGE);
	assert_int_equal(parse_int64("99999999999999999999", INT64_MIN, INT64_MAX, &i), -ERANGE);
	assert_int_equal(parse_int64("4x", 0, 100, &i), -EINVAL);
	assert_int_equal(parse_int64("", 0, 100, &i), -EINVAL);
	assert_int_equal(parse_int64(" 4", 0, 100, &i), -EINVAL);
	assert_int_equal(parse_double("5.25", 0, 10, &d), 0);
	assert_true(fabs(d - 5.25) < 1e-12);
	assert_int_equal(parse_double("abc", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("-3", 0, 10, &d), -ERANGE);
	/* Plain decimals, as the docs say: no exponent; JSON's numbers are parse_number's. */
	assert_int_equal(parse_double("1e3", 0, 1e300, &d), -EINVAL);
	assert_int_equal(parse_double("1E3", 0, 1e300, &d), -EINVAL);
	assert_int_equal(parse_double("+", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double(".", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("-.", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("5.", 0, 10, &d), 0);
	assert_int_equal(parse_double(".5", 0, 10, &d), 0);
	assert_int_equal(parse_number("1e3", 0, 1e300, &d), 0);
	assert_true(d == 1000);
	assert_int_equal(parse_number("1e999", 0, 1e300, &d), -ERANGE);
	assert_int_equal(parse_number("nan", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("nan", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("inf", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_double("0x10", 0, 100, &d), -EINVAL);
	assert_int_equal(parse_double("1.5.2", 0, 10, &d), -EINVAL);
	assert_int_equal(parse_bool("Yes", &b), 0);
	assert_true(b);
	assert_int_equal(parse_bool("off", &b), 0);
	assert_false(b);
	assert_int_equal(parse_bool("maybe", &b), -EINVAL);
}

static void
test_strings(void **state)
{
	size_t n;
	char **l = str_split(",a,,bc,", ',', &n);
	char s[] = "  x y \t\n";

	assert_int_equal(n, 2);
	assert_string_equal(l[0], "a");
	assert_string_equal(l[1], "bc");
	assert_null(l[2]);
	str_list_free(l);
	assert_string_equal(str_trim(s), "x y");
	assert_int_equal(str_distance("daily_budgt", "daily_budget"), 1);
	assert_int_equal(str_distance("", "abc"), 3);
	assert_true(str_suffix("zone-a", "-a"));
	assert_false(str_suffix("a", "-a"));
}

static void
test_b64url(void **state)
{
	const unsigned char bin[] = {0xfb, 0xff, 0xbf, 0x00, 0x01};
	unsigned char *out;
	size_t len;
	char *s;

	for (size_t n = 0; n <= sizeof bin; n++) {
		s = b64url_encode(bin, n);
		assert_null(strchr(s, '='));
		assert_null(strchr(s, '+'));
		assert_null(strchr(s, '/'));
		assert_int_equal(b64url_decode(s, strlen(s), &out, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(out, bin, n);
		free(out);
		free(s);
	}
	assert_int_equal(b64url_decode("a", 1, &out, &len), -EINVAL);
	assert_int_equal(b64url_decode("ab+c", 4, &out, &len), -EINVAL);
	assert_int_equal(b64url_decode("a*bc", 4, &out, &len), -EINVAL);
}

static void
test_uuid(void **state)
{
	char a[UUID_LEN], b[UUID_LEN];

	uuid_v4(a);
	uuid_v4(b);
	assert_int_equal(strlen(a), 36);
	assert_true(uuid_valid(a));
	assert_string_not_equal(a, b);
	assert_int_equal(a[14], '4');
	assert_non_null(strchr("89ab", a[19]));
	assert_false(uuid_valid("00000000-0000-0000-0000-000000000000"));
	assert_false(uuid_valid("123"));
	assert_false(uuid_valid("zzzzzzzz-0000-4000-8000-000000000000"));
	assert_true(uuid_valid("0f0e0d0c-0000-4000-8000-000000000001"));
}

static void
test_time(void **state)
{
	char s[RFC3339_LEN];
	int64_t ms;

	time_rfc3339(1386960323351, -480, s);
	assert_string_equal(s, "2013-12-13T10:45:23.351-08:00");
	assert_int_equal(time_parse_rfc3339(s, &ms), 0);
	assert_int_equal(ms, 1386960323351);
	assert_int_equal(time_parse_rfc3339("2013-12-13T18:45:23Z", &ms), 0);
	assert_int_equal(ms, 1386960323000);
	assert_int_equal(time_parse_rfc3339("2013-12-13T18:45:23.5+00:00", &ms), 0);
	assert_int_equal(ms, 1386960323500);
	assert_int_equal(time_parse_rfc3339("2013-12-13T18:45:23.123456789Z", &ms), 0);
	assert_int_equal(ms, 1386960323123);
	assert_int_equal(time_parse_rfc3339("2013-12-13 18:45:23Z", &ms), -EINVAL);
	assert_int_equal(time_parse_rfc3339("2013-13-13T18:45:23Z", &ms), -EINVAL);
	assert_int_equal(time_parse_rfc3339("2013-12-13T18:45:23", &ms), -EINVAL);
	assert_int_equal(time_parse_rfc3339("2013-12-13T18:45:23.Z", &ms), -EINVAL);
}

static void
test_clock(void **state)
{
	struct clock c;
	int64_t a, b;

	clock_manual(&c, 1000 * NS_PER_S);
	assert_int_equal(clock_now_ms(&c), 1000000);
	clock_advance(&c, 1500 * NS_PER_MS);
	assert_int_equal(clock_now_ms(&c), 1001500);
	/* A scaled clock anchored now runs ahead of real time by its factor. */
	clock_scaled(&c, 100.0, realtime_ns());
	a = clock_now_ns(&c);
	usleep(20000);
	b = clock_now_ns(&c);
	assert_true(b - a >= 20 * 100 * NS_PER_MS);
	assert_int_equal(clock_timer_ms(&c, 30000), 300);
	assert_int_equal(clock_timer_ms(&c, 1), 1);
	assert_int_equal(clock_timer_ms(&c, -5), 0);
}

static void
test_jx(void **state)
{
	json_t *v;
	char *cause = NULL;
	int64_t n;

	const char *doc = "{\"a\":{\"b\":[1,{\"c\":\"x\"}]},\"n\":\"-12\"}";

	assert_int_equal(jx_parse(doc, strlen(doc), &v, &cause), 0);
	assert_string_equal(jx_str(v, "a.b.1.c"), "x");
	assert_null(jx_get(v, "a.b.5"));
	assert_null(jx_get(v, "a.x.y"));
	assert_int_equal(jx_int64(json_object_get(v, "n"), &n), 0);
	assert_int_equal(n, -12);
	assert_int_equal(jx_int64(jx_get(v, "a.b.0"), &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(jx_int64(jx_get(v, "a"), &n), -EINVAL);
	json_decref(v);
	assert_int_equal(jx_parse("{\"a\":1,\"a\":2}", 13, &v, &cause), -EINVAL);
	assert_non_null(strstr(cause, "duplicate"));
	free(cause);
	assert_int_equal(jx_parse("{", 1, &v, &cause), -EINVAL);
	free(cause);
}

struct ini_seen {
	char text[1024];
};

static int
ini_collect(const char *section, const char *name, const char *key, const char *value, int line,
    void *arg, char **cause)
{
	struct ini_seen *s = arg;
	size_t n = strlen(s->text);

	if (strcmp(key, "boom") == 0) {
		*cause = xstrdup("boom refused");
		return -EPERM;
	}
	snprintf(s->text + n, sizeof s->text - n, "%s|%s|%s=%s@%d;", section, name ? name : "-",
	    key, value, line);
	return 0;
}

/* The reader on a C string (its length is the string's). */
static int
ini_text(const char *text, ini_cb *cb, void *arg, int *line, char **cause)
{
	return ini_parse(text, strlen(text), cb, arg, line, cause);
}

static void
test_ini(void **state)
{
	struct ini_seen s = {""};
	char *cause = NULL;
	int line;

	assert_int_equal(ini_text("# c\n[core]\nproject = p-1\n; x\n[component \"vision\"]\n"
	                          "size = \"2 GiB with \\\"q\\\"\"\nurl=http://x/#y\n",
	                     ini_collect, &s, &line, &cause),
	    0);
	assert_string_equal(s.text,
	    "core|-|project=p-1@3;component|vision|size=2 GiB with \"q\"@6;"
	    "component|vision|url=http://x/#y@7;");
	assert_int_equal(ini_text("key = 1\n", ini_collect, &s, &line, &cause), -EINVAL);
	assert_int_equal(line, 1);
	assert_non_null(strstr(cause, "outside any [section]"));
	free(cause);
	assert_int_equal(ini_text("[a]\n\njunk\n", ini_collect, &s, &line, &cause), -EINVAL);
	assert_int_equal(line, 3);
	free(cause);
	assert_int_equal(ini_text("[a\n", ini_collect, &s, &line, &cause), -EINVAL);
	free(cause);
	assert_int_equal(ini_text("[a]\nv = \"open\n", ini_collect, &s, &line, &cause), -EINVAL);
	free(cause);
	assert_int_equal(ini_text("[a]\nboom = 1\n", ini_collect, &s, &line, &cause), -EPERM);
	assert_string_equal(cause, "boom refused");
	free(cause);
}

/*
 * What would be read otherwise than it was written: a NUL byte (a C string
 * ends there: "1\0000" would be 1), a key set twice in its section, a
 * section opened twice (last-wins, before). Each names its line, and the
 * first one's.
 */
static void
test_ini_refuses_ambiguity(void **state)
{
	static const char nul[] = "[gcp]\nzone = us-central1-a\ndaily_budget = 1\0000\n";
	struct ini_seen s = {""};
	char *cause = NULL;
	int line;

	assert_int_equal(ini_parse(nul, sizeof nul - 1, ini_collect, &s, &line, &cause), -EINVAL);
	assert_int_equal(line, 3);
	assert_non_null(strstr(cause, "NUL byte"));
	assert_string_equal(s.text, ""); /* nothing was taken from the file */
	free(cause);
	assert_int_equal(ini_text("[gcp]\nzone = a\n\ndaily_budget = 1\nzone = b\n", ini_collect,
	                     &s, &line, &cause),
	    -EINVAL);
	assert_int_equal(line, 5);
	assert_non_null(strstr(cause, "'zone' again in [gcp]: it was set at line 2"));
	free(cause);
	assert_int_equal(ini_text("[gcp]\nzone = a\n[spillway]\nlog_level = info\n[gcp]\n",
	                     ini_collect, &s, &line, &cause),
	    -EINVAL);
	assert_int_equal(line, 5);
	assert_non_null(strstr(cause, "[gcp] again: it was opened at line 1"));
	free(cause);
	assert_int_equal(ini_text("[component \"vision\"]\nsize_mb = 1\n[component \"vision\"]\n",
	                     ini_collect, &s, &line, &cause),
	    -EINVAL);
	assert_non_null(strstr(cause, "[component \"vision\"] again"));
	free(cause);
	/* The same key in two sections, or two named subsections, is two settings. */
	s.text[0] = '\0';
	assert_int_equal(ini_text("[a]\nk = 1\n[b]\nk = 2\n[c \"x\"]\nk = 3\n[c \"y\"]\nk = 4\n",
	                     ini_collect, &s, &line, &cause),
	    0);
	assert_string_equal(s.text, "a|-|k=1@2;b|-|k=2@4;c|x|k=3@6;c|y|k=4@8;");
}

static void
test_log_redacts_secrets(void **state)
{
	char *out;

	log_secret("ya29.SECRET-TOKEN-VALUE");
	log_secret("short"); /* too short to be redacted safely */
	out = log_redact("token ya29.SECRET-TOKEN-VALUE in ?t=ya29.SECRET-TOKEN-VALUE, short");
	assert_string_equal(out, "token [redacted] in ?t=[redacted], short");
	free(out);
	log_forget_secret("ya29.SECRET-TOKEN-VALUE");
	out = log_redact("ya29.SECRET-TOKEN-VALUE");
	assert_string_equal(out, "ya29.SECRET-TOKEN-VALUE");
	free(out);
	log_close();
}

static const char *schema_doc =
    "{\"T\":{\"type\":\"object\",\"properties\":{"
    "\"id\":{\"type\":\"string\",\"format\":\"uint64\"},"
    "\"n\":{\"type\":\"integer\",\"format\":\"int32\"},"
    "\"size\":{\"type\":\"string\",\"format\":\"int64\"},"
    "\"state\":{\"type\":\"string\",\"enum\":[\"UP\",\"DOWN\"]},"
    "\"items\":{\"type\":\"array\",\"items\":{\"$ref\":\"U\"}},"
    "\"labels\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}}},"
    "\"U\":{\"type\":\"object\",\"properties\":{\"on\":{\"type\":\"boolean\"}}}}";

static void
expect_invalid(json_t *schemas, const char *json, int flags, const char *why)
{
	json_t *v;
	char *cause = NULL;

	assert_int_equal(jx_parse(json, strlen(json), &v, NULL), 0);
	assert_int_equal(jschema_validate(schemas, "T", v, "r", flags, &cause), -EINVAL);
	if (strstr(cause, why) == NULL)
		fail_msg("'%s': expected '%s' in '%s'", json, why, cause);
	free(cause);
	json_decref(v);
}

static void
expect_valid(json_t *schemas, const char *json, int flags)
{
	json_t *v;
	char *cause = NULL;

	assert_int_equal(jx_parse(json, strlen(json), &v, NULL), 0);
	if (jschema_validate(schemas, "T", v, "r", flags, &cause) != 0)
		fail_msg("'%s': %s", json, cause);
	json_decref(v);
}

static void
test_jschema(void **state)
{
	json_t *s;

	assert_int_equal(jx_parse(schema_doc, strlen(schema_doc), &s, NULL), 0);
	expect_valid(s,
	    "{\"id\":\"18446744073709551615\",\"n\":5,\"size\":\"-20\",\"state\":\"UP\","
	    "\"items\":[{\"on\":true}],\"labels\":{\"a\":\"b\"}}",
	    JSCHEMA_STRICT);
	expect_invalid(
	    s, "{\"size\":20}", JSCHEMA_STRICT, "'r.size': a int64 must be sent as a string");
	expect_valid(s, "{\"size\":20,\"n\":\"7\",\"state\":null}", 0);
	expect_invalid(s, "{\"n\":\"7\"}", JSCHEMA_STRICT, "expected a number");
	expect_invalid(s, "{\"n\":4294967296}", 0, "does not fit in int32");
	expect_invalid(s, "{\"id\":\"-1\"}", 0, "non-negative");
	expect_invalid(s, "{\"state\":\"SIDEWAYS\"}", 0, "'SIDEWAYS' is not one of UP, DOWN");
	expect_invalid(s, "{\"bogus\":1}", 0, "unknown field 'bogus'");
	expect_invalid(
	    s, "{\"items\":[{\"on\":true},{\"on\":1}]}", 0, "'r.items[1].on': expected a boolean");
	expect_invalid(s, "{\"labels\":{\"a\":3}}", 0, "'r.labels.a': expected a string");
	expect_invalid(s, "[]", 0, "expected an object");
	expect_invalid(s, "{\"state\":null}", JSCHEMA_STRICT, "null");
	json_decref(s);
}

/*
 * Known answer: tests/data/jwt-test-expected.txt was made with the openssl
 * command line from tests/data/jwt-test-key.pem (see tests/data/README.md).
 * RS256 (PKCS#1 v1.5) signatures are deterministic, so ours must match it.
 */
static void
test_jwt_known_answer(void **state)
{
	char *path = xasprintf("%s/tests/data/jwt-test-key.pem", getenv("SPILLWAY_SOURCE"));
	char *want_path =
	    xasprintf("%s/tests/data/jwt-test-expected.txt", getenv("SPILLWAY_SOURCE"));
	char *pem = NULL, *want = NULL, *tok = NULL, *cause = NULL;
	EVP_PKEY *key;
	json_t *h = jx_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", "test-key-1");
	json_t *c = jx_pack("{s:s, s:s, s:s, s:i, s:i}", "iss",
	    "tester@spillway-test.iam.gserviceaccount.com", "scope",
	    "https://www.googleapis.com/auth/compute", "aud", "https://oauth2.googleapis.com/token",
	    "iat", 1700000000, "exp", 1700003600);

	assert_int_equal(read_file(path, 1 << 16, &pem, NULL), 0);
	assert_int_equal(read_file(want_path, 1 << 16, &want, NULL), 0);
	assert_non_null(key = pem_read_private(pem, &cause));
	assert_int_equal(jwt_sign_rs256(key, h, c, &tok), 0);
	assert_string_equal(tok, str_trim(want));
	assert_int_equal(jwt_verify_rs256(tok, key), 0);
	EVP_PKEY_free(key);
	json_decref(h);
	json_decref(c);
	free(tok);
	free(pem);
	free(want);
	free(path);
	free(want_path);
}

static void
test_jwt_roundtrip(void **state)
{
	EVP_PKEY *key = rsa_generate(2048), *other = rsa_generate(2048);
	json_t *h = jx_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", "k1");
	json_t *c = jx_pack("{s:s, s:i}", "iss", "a@b", "iat", 5), *h2, *c2;
	char *tok = NULL, *cause = NULL, *pem, *tampered;
	EVP_PKEY *reread;

	assert_int_equal(jwt_sign_rs256(key, h, c, &tok), 0);
	assert_int_equal(jwt_verify_rs256(tok, key), 0);
	assert_int_equal(jwt_verify_rs256(tok, other), -EPERM);
	assert_int_equal(jwt_decode(tok, &h2, &c2, &cause), 0);
	assert_string_equal(jx_str(h2, "kid"), "k1");
	assert_string_equal(jx_str(c2, "iss"), "a@b");
	json_decref(h2);
	json_decref(c2);
	/* Change one character of the claims: the signature no longer holds. */
	tampered = xstrdup(tok);
	tampered[strchr(tok, '.') - tok + 3] ^= 1;
	assert_int_equal(jwt_verify_rs256(tampered, key), -EPERM);
	free(tampered);
	/* A key written and read back signs the same way. */
	pem = pem_write_private(key);
	assert_non_null(reread = pem_read_private(pem, &cause));
	assert_int_equal(jwt_verify_rs256(tok, reread), 0);
	assert_null(pem_read_private("-----BEGIN PRIVATE KEY-----\nnope\n", &cause));
	assert_null(strstr(cause, "nope"));
	free(cause);
	assert_int_equal(jwt_decode("a.b", &h2, &c2, &cause), -EINVAL);
	free(cause);
	EVP_PKEY_free(reread);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
	json_decref(h);
	json_decref(c);
	free(pem);
	free(tok);
}

/* Found by fuzz_control: an error quoting a request's bytes must stay valid UTF-8. */
static void
test_scrub_utf8(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"plain", "plain"},
	    {"caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac"},
	    {"/v\xff\xff"
	     "1/costs",
	        "/v??1/costs"},
	    {"cut short \xc3", "cut short ?"},
	    {"overlong \xc0\xaf", "overlong ??"},
	    {"surrogate \xed\xa0\x80", "surrogate ???"},
	    {"past U+10FFFF \xf4\x90\x80\x80", "past U+10FFFF ????"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *s = xstrdup(cases[i].in);
		json_t *v;

		str_scrub_utf8(s);
		assert_string_equal(s, cases[i].out);
		assert_non_null(v = json_string(s)); /* jansson takes it */
		json_decref(v);
		free(s);
	}
}

static void
test_files(void **state)
{
	char dir[] = "/tmp/spillway-util-XXXXXX", path[64], *s;
	size_t len;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/f", dir);
	assert_int_equal(write_file_atomic(path, "secret", 6, 0600), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(read_file(path, 100, &s, &len), 0);
	assert_string_equal(s, "secret");
	free(s);
	assert_int_equal(read_file(path, 3, &s, &len), -E2BIG);
	assert_int_equal(read_file(dir, 100, &s, &len), -EISDIR);
	unlink(path);
	rmdir(dir);
}

/* mkdir -p: every missing level, private, again without complaint; a file in the way is said. */
static void
test_make_dirs(void **state)
{
	char root[] = "/tmp/spillway-dirs-XXXXXX", deep[128], file[128];
	struct stat st;
	FILE *f;

	assert_non_null(mkdtemp(root));
	snprintf(deep, sizeof deep, "%s/a/b/c", root);
	assert_int_equal(make_dirs(deep, 0700), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(make_dirs(deep, 0700), 0);
	snprintf(file, sizeof file, "%s/f", root);
	assert_non_null(f = fopen(file, "w"));
	fclose(f);
	snprintf(deep, sizeof deep, "%s/f/x", root);
	assert_int_equal(make_dirs(deep, 0700), -ENOTDIR);
	assert_int_equal(remove_tree(root), 0);
}

/* A query's value: RFC 3986's unreserved characters as they are, every other byte %XX. */
static void
test_url_encode(void **state)
{
	char *e = url_encode("aZ09-._~ &=+/%\xc3\xa9");

	assert_string_equal(e, "aZ09-._~%20%26%3D%2B%2F%25%C3%A9");
	free(e);
	e = url_encode("");
	assert_string_equal(e, "");
	free(e);
}

/* Strings sorted through their pointers, in strcmp's order. */
static void
test_str_ptr_cmp(void **state)
{
	const char *v[] = {"b", "a-2", "a", "B"};

	qsort(v, 4, sizeof *v, str_ptr_cmp);
	assert_string_equal(v[0], "B");
	assert_string_equal(v[1], "a");
	assert_string_equal(v[2], "a-2");
	assert_string_equal(v[3], "b");
}

/* Back again; '+' a space as forms send it, a '%' without two hex digits as it is. */
static void
test_url_decode(void **state)
{
	char *e = url_encode("aZ09-._~ &=+/%\xc3\xa9"), *d = url_decode(e);

	assert_string_equal(d, "aZ09-._~ &=+/%\xc3\xa9");
	free(d);
	free(e);
	d = url_decode("a+b%2bc%2Fd%zz%4");
	assert_string_equal(d, "a b+c/d%zz%4");
	free(d);
}

/* Temporary directories: in an absolute $TMPDIR, else /tmp; private; a failure says where. */
static void
test_make_temp_dir(void **state)
{
	char root[] = "/tmp/spillway-tmp-XXXXXX", *dir = NULL, *cause = NULL, *old;
	struct stat st;

	old = getenv("TMPDIR") != NULL ? strdup(getenv("TMPDIR")) : NULL;
	assert_non_null(mkdtemp(root));
	setenv("TMPDIR", root, 1);
	assert_int_equal(make_temp_dir("spillway-x", &dir, &cause), 0);
	assert_int_equal(strncmp(dir, root, strlen(root)), 0);
	assert_non_null(strstr(dir, "/spillway-x-"));
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(dir);
	setenv("TMPDIR", "relative/dir", 1);
	assert_int_equal(make_temp_dir("spillway-x", &dir, &cause), 0);
	assert_int_equal(strncmp(dir, "/tmp/spillway-x-", 16), 0);
	assert_int_equal(remove_tree(dir), 0);
	free(dir);
	setenv("TMPDIR", "/nonexistent/spillway", 1);
	assert_int_equal(make_temp_dir("spillway-x", &dir, &cause), -ENOENT);
	assert_non_null(strstr(cause, "in /nonexistent/spillway: "));
	assert_non_null(strstr(cause, "TMPDIR"));
	free(cause);
	if (old != NULL)
		setenv("TMPDIR", old, 1);
	else
		unsetenv("TMPDIR");
	free(old);
	assert_int_equal(remove_tree(root), 0);
}

/* Hook words: placeholders replaced, no shell, an unknown {word} left as it is. */
static void
test_hook_placeholders(void **state)
{
	struct hook_env e = {.event = "ready",
	    .vm_name = "spillway-1",
	    .endpoint = "http://10.0.0.2:8010",
	    .components = "vision,chatbots",
	    .reason = "created"};
	static const char *const cases[][2] = {
	    {"--backend={endpoint}", "--backend=http://10.0.0.2:8010"},
	    {"{name}:{components}", "spillway-1:vision,chatbots"},
	    {"{reason}", "created"},
	    {"{level}", ""},
	    {"{unknown} {", "{unknown} {"},
	    {"$SPILLWAY_ENDPOINT", "$SPILLWAY_ENDPOINT"},
	    {"", ""},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = hook_expand(cases[i][0], &e);

		assert_string_equal(got, cases[i][1]);
		free(got);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buf_bounded),
	    cmocka_unit_test(test_parse_numbers),
	    cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_make_dirs),
	    cmocka_unit_test(test_make_temp_dir),
	    cmocka_unit_test(test_url_encode),
	    cmocka_unit_test(test_url_decode),
	    cmocka_unit_test(test_str_ptr_cmp),
	    cmocka_unit_test(test_b64url),
	    cmocka_unit_test(test_uuid),
	    cmocka_unit_test(test_time),
	    cmocka_unit_test(test_clock),
	    cmocka_unit_test(test_jx),
	    cmocka_unit_test(test_ini),
	    cmocka_unit_test(test_ini_refuses_ambiguity),
	    cmocka_unit_test(test_log_redacts_secrets),
	    cmocka_unit_test(test_jschema),
	    cmocka_unit_test(test_jwt_roundtrip),
	    cmocka_unit_test(test_jwt_known_answer),
	    cmocka_unit_test(test_files),
	    cmocka_unit_test(test_scrub_utf8),
	    cmocka_unit_test(test_hook_placeholders),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
