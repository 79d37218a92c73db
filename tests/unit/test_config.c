/* The configuration's layers, sources and errors (src/config). */
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

#include "config/config.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

struct fixture {
	char dir[64];
	char *env[32];
	int nenv;
};

static void
put(const char *dir, const char *rel, const char *text)
{
	char *path = xasprintf("%s/%s", dir, rel),
	     *cmd = xasprintf("mkdir -p \"$(dirname '%s')\"", path);
	FILE *f;

	assert_int_equal(system(cmd), 0);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	free(cmd);
	free(path);
}

static void
setenv_f(struct fixture *f, const char *kv)
{
	f->env[f->nenv++] = xstrdup(kv);
	f->env[f->nenv] = NULL;
}

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);

	snprintf(f->dir, sizeof f->dir, "/tmp/spillway-config-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->env[f->nenv++] = xasprintf("HOME=%s", f->dir);
	f->env[f->nenv++] = xasprintf("XDG_CONFIG_HOME=%s/xdg", f->dir);
	f->env[f->nenv++] = xasprintf("XDG_STATE_HOME=%s/state", f->dir);
	f->env[f->nenv++] = xasprintf("XDG_RUNTIME_DIR=%s/run", f->dir);
	f->env[f->nenv] = NULL;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char *cmd = xasprintf("rm -rf '%s'", f->dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
	for (int i = 0; i < f->nenv; i++)
		free(f->env[i]);
	free(f);
	return 0;
}

static size_t
key(const char *name)
{
	for (size_t i = 0; i < config_nkeys(); i++)
		if (strcmp(config_key_name(i), name) == 0)
			return i;
	fail_msg("no key %s", name);
	return 0;
}

static void
load_ok(struct fixture *f, struct config *c, const char *const *sets)
{
	struct config_args a = {NULL, sets};
	char *cause = NULL;

	if (config_load(c, &a, f->env, &cause) != 0)
		fail_msg("config_load: %s", cause);
}

static char *
load_err(struct fixture *f, const char *file, const char *const *sets)
{
	struct config_args a = {file, sets};
	struct config c;
	char *cause = NULL;

	assert_int_equal(config_load(&c, &a, f->env, &cause), -EINVAL);
	assert_non_null(cause);
	return cause;
}

static void
test_defaults(void **state)
{
	struct fixture *f = *state;
	struct config c;
	char *state_dir = xasprintf("%s/state/spillway", f->dir);

	load_ok(f, &c, NULL);
	assert_true(c.enabled);
	assert_string_equal(c.region, "us-central1");
	assert_string_equal(c.zone, "us-central1-a");
	assert_string_equal(c.machine_type, "e2-highmem-4");
	assert_true(c.use_spot);
	assert_true(fabs(c.daily_budget - 5.0) < 1e-9);
	assert_true(fabs(c.max_price - 0.10) < 1e-9);
	assert_int_equal(c.max_concurrent, 2);
	assert_int_equal(c.health_check_interval, 30);
	assert_string_equal(c.state_dir, state_dir);
	assert_int_equal(c.origins[key("gcp.daily_budget")].source, CONFIG_DEFAULT);
	assert_null(c.file);
	free(state_dir);
	config_free(&c);
}

static void
test_layers(void **state)
{
	struct fixture *f = *state;
	struct config c;
	const char *sets[] = {"GCP_VM_MAX_CONCURRENT=4", NULL};
	char *where;

	put(f->dir, "xdg/spillway/spillway.conf",
	    "# spillway\n[gcp]\ndaily_budget = 7.5\nmax_concurrent = 3\nmachine_type = n2-highmem-8\n"
	    "project = from-the-file\n");
	put(f->dir, ".config/gcloud/active_config", "work\n");
	put(f->dir, ".config/gcloud/configurations/config_work",
	    "[core]\nproject = from-gcloud\naccount = me@example.com\n[compute]\nzone = europe-west4-b\n");
	setenv_f(f, "GCP_VM_DAILY_BUDGET=2.25");
	load_ok(f, &c, sets);
	/* file < gcloud < environment < flags */
	assert_string_equal(c.machine_type, "n2-highmem-8");
	assert_int_equal(c.origins[key("gcp.machine_type")].source, CONFIG_FILE);
	where = xasprintf("%s/xdg/spillway/spillway.conf:5", f->dir);
	assert_string_equal(c.origins[key("gcp.machine_type")].where, where);
	free(where);
	assert_string_equal(c.project, "from-gcloud");
	assert_int_equal(c.origins[key("gcp.project")].source, CONFIG_GCLOUD);
	assert_true(fabs(c.daily_budget - 2.25) < 1e-9);
	assert_int_equal(c.origins[key("gcp.daily_budget")].source, CONFIG_ENV);
	assert_int_equal(c.max_concurrent, 4);
	assert_int_equal(c.origins[key("gcp.max_concurrent")].source, CONFIG_FLAG);
	/* A zone without a region names its region. */
	assert_string_equal(c.zone, "europe-west4-b");
	assert_string_equal(c.region, "europe-west4");
	assert_int_equal(c.origins[key("gcp.region")].source, CONFIG_DERIVED);
	config_free(&c);
}

static void
test_gcloud_env(void **state)
{
	struct fixture *f = *state;
	struct config c;

	put(f->dir, "gc/configurations/config_default", "[core]\nproject = file-project\n");
	{
		char *kv = xasprintf("CLOUDSDK_CONFIG=%s/gc", f->dir);

		setenv_f(f, kv);
		free(kv);
	}
	setenv_f(f, "CLOUDSDK_CORE_PROJECT=env-project");
	load_ok(f, &c, NULL);
	assert_string_equal(c.project, "env-project");
	assert_int_equal(c.origins[key("gcp.project")].source, CONFIG_GCLOUD);
	config_free(&c);
	setenv_f(f, "GCP_PROJECT_ID=spillway-own");
	load_ok(f, &c, NULL);
	assert_string_equal(c.project, "spillway-own");
	config_free(&c);
}

/* No project given: the key file's project_id, for every command; any other source beats it. */
static void
test_project_from_credentials(void **state)
{
	struct fixture *f = *state;
	struct config c;
	char *kv, *where;

	put(f->dir, "key.json",
	    "{\"type\": \"service_account\", \"project_id\": \"key-project\", "
	    "\"private_key\": \"-----BEGIN PRIVATE KEY-----\"}");
	kv = xasprintf("GOOGLE_APPLICATION_CREDENTIALS=%s/key.json", f->dir);
	setenv_f(f, kv);
	free(kv);
	load_ok(f, &c, NULL);
	assert_string_equal(c.project, "key-project");
	assert_int_equal(c.origins[key("gcp.project")].source, CONFIG_DERIVED);
	where = xasprintf("the credentials file %s/key.json", f->dir);
	assert_string_equal(c.origins[key("gcp.project")].where, where);
	free(where);
	config_free(&c);
	/* gcloud's ADC file, where no key file is named. */
	free(f->env[--f->nenv]);
	f->env[f->nenv] = NULL;
	put(f->dir, ".config/gcloud/application_default_credentials.json",
	    "{\"type\": \"service_account\", \"project_id\": \"adc-project\"}");
	load_ok(f, &c, NULL);
	assert_string_equal(c.project, "adc-project");
	config_free(&c);
	setenv_f(f, "GCP_PROJECT_ID=spillway-own");
	load_ok(f, &c, NULL);
	assert_string_equal(c.project, "spillway-own");
	assert_int_equal(c.origins[key("gcp.project")].source, CONFIG_ENV);
	config_free(&c);
}

static void
expect_in(const char *cause, const char *part)
{
	if (strstr(cause, part) == NULL)
		fail_msg("expected '%s' in: %s", part, cause);
}

static void
test_bad_values(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *set, *value, *problem;
	} cases[] = {
	    {"GCP_VM_DAILY_BUDGET=abc", "'abc'", "not a number"},
	    {"GCP_VM_DAILY_BUDGET=-3", "'-3'", "out of range"},
	    {"GCP_VM_DAILY_BUDGET=1e999", "'1e999'", "not a number"},
	    /* Plain decimals, as the docs say, and no more. */
	    {"GCP_VM_DAILY_BUDGET=1e3", "'1e3'", "not a number"},
	    {"GCP_VM_MAX_PRICE=0x1p-3", "'0x1p-3'", "not a number"},
	    {"GCP_VM_DAILY_BUDGET=100001", "'100001'", "out of range"},
	    {"GCP_VM_DAILY_BUDGET=nan", "'nan'", "not a number"},
	    {"GCP_VM_MAX_CONCURRENT=2.5", "'2.5'", "not a whole number"},
	    {"GCP_VM_USE_SPOT=perhaps", "'perhaps'", "not a boolean"},
	    {"GCP_ZONE=Mars", "'Mars'", "not a zone name"},
	    {"SPILLWAY_COMPUTE_ENDPOINT=http://example.com/", "'http://example.com/'",
	        "only allowed to a loopback address"},
	    {"SPILLWAY_COMPUTE_ENDPOINT=http://127.0.0.1:99999/", "'http://127.0.0.1:99999/'",
	        "its port is not a number from 1 to 65535"},
	    {"SPILLWAY_BILLING_ENDPOINT=https://[::1]:0/v1/", "'https://[::1]:0/v1/'",
	        "its port is not a number from 1 to 65535"},
	    {"SPILLWAY_STATE_DIR=relative/dir", "'relative/dir'", "not an absolute path"},
	    /* What the VM reads: data there, refused here when malformed. */
	    {"SPILLWAY_BACKEND_GIT=https://x.invalid/a.git;touch PWNED",
	        "'https://x.invalid/a.git;touch PWNED'", "not a git URL"},
	    {"SPILLWAY_BACKEND_GIT=$(touch PWNED)", "'$(touch PWNED)'", "not a git URL"},
	    {"SPILLWAY_BACKEND_GIT=http://example.com/a.git", "'http://example.com/a.git'",
	        "not a git URL"},
	    {"SPILLWAY_BACKEND_REF=main;rm", "'main;rm'", "not a branch or tag name"},
	    {"SPILLWAY_BACKEND_REF=-x", "'-x'", "not a branch or tag name"},
	    {"SPILLWAY_BACKEND_REF=a..b", "'a..b'", "not a branch or tag name"},
	    {"SPILLWAY_BACKEND_DIR=/opt/$(id)", "'/opt/$(id)'", "not a plain absolute path"},
	    {"SPILLWAY_BACKEND_START=run\nrm -rf /", "'run\nrm -rf /'", "control character"},
	    {"SPILLWAY_HEALTH_PATH=health", "'health'", "not a URL path"},
	    {"SPILLWAY_HEALTH_PATH=/h'x", "'/h'x'", "not a URL path"},
	    {"SPILLWAY_BACKEND_ENV=1A=x", "'1A=x'", "is not KEY=VALUE"},
	    {"SPILLWAY_BACKEND_ENV=A=1 \"B=2", "'A=1 \"B=2'", "unbalanced"},
	    {"SPILLWAY_CLOUDSQL_INSTANCE=db", "'db'", "not an instance connection name"},
	    {"SPILLWAY_VM_LOG_DIR=/var/log/../../etc", "'/var/log/../../etc'",
	        "not a plain absolute path"},
	    {"SPILLWAY_AGENT_PORT=70000", "'70000'", "out of range"},
	    {"SPILLWAY_LEASE_MINUTES=-1", "'-1'", "out of range"},
	    {"SPILLWAY_IMAGE=bakd", "'bakd'", "not an image path"},
	    {"SPILLWAY_IMAGE_FAMILY=Spillway", "'Spillway'", "not an image family name"},
	    {"SPILLWAY_IMAGE_FAMILY=spillway-", "'spillway-'", "not an image family name"},
	    {"SPILLWAY_IMAGE_FAMILY=a23456789012345678901234567890123456789012",
	        "'a23456789012345678901234567890123456789012'", "not an image family name"},
	    {"SPILLWAY_IMAGE_BASE=baked", "'baked'", "not an image path"},
	    {"SPILLWAY_BACKEND_PREFETCH=get\nrm -rf /", "'get\nrm -rf /'", "control character"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *sets[] = {cases[i].set, NULL};
		char *env_name = xstrndup(cases[i].set, strcspn(cases[i].set, "="));
		char *cause;

		/* As a flag... */
		cause = load_err(f, NULL, sets);
		expect_in(cause, cases[i].value);
		expect_in(cause, cases[i].problem);
		expect_in(cause, "allowed: ");
		free(cause);
		/* ...and from the environment, which is named. */
		setenv_f(f, cases[i].set);
		cause = load_err(f, NULL, NULL);
		expect_in(cause, cases[i].value);
		expect_in(cause, env_name);
		free(cause);
		free(f->env[--f->nenv]);
		f->env[f->nenv] = NULL;
		free(env_name);
	}
}

/* A route: listen on loopback only, one address each, local only beside a listen. */
static void
test_routes(void **state)
{
	struct fixture *f = *state;
	char *cause, *path = xasprintf("%s/r.conf", f->dir);
	struct config c;
	struct config_args a = {path, NULL};

	put(f->dir, "r.conf",
	    "[component \"vision\"]\nlisten = 127.0.0.1:9101\nlocal = 127.0.0.1:8101\n"
	    "[component \"asr\"]\nmatch = whisper\nlisten = [::1]:9102\n");
	assert_int_equal(config_load(&c, &a, f->env, &cause), 0);
	assert_string_equal(config_component(&c, "vision")->listen, "127.0.0.1:9101");
	assert_string_equal(config_component(&c, "vision")->local, "127.0.0.1:8101");
	assert_string_equal(config_component(&c, "asr")->local, "");
	assert_string_equal(config_component(&c, "chatbots")->listen, "");
	assert_true(c.route_drain_s == 30 && c.route_wait_s == 0 && !c.route_allow_other_users);
	config_free(&c);
	put(f->dir, "r.conf", "[component \"vision\"]\nlisten = 0.0.0.0:9101\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "invalid value '0.0.0.0:9101' for listen of component 'vision'");
	expect_in(cause, "loopback only");
	free(cause);
	put(f->dir, "r.conf", "[component \"vision\"]\nlocal = localhost:80\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "'localhost' is not an IP address");
	free(cause);
	put(f->dir, "r.conf", "[component \"vision\"]\nlisten = 127.0.0.1:99999\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "the port is not a number from 1 to 65535");
	free(cause);
	put(f->dir, "r.conf", "[component \"vision\"]\nlocal = 127.0.0.1:8101\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "has 'local' but no 'listen'");
	free(cause);
	put(f->dir, "r.conf",
	    "[component \"vision\"]\nlisten = 127.0.0.1:9101\n[component \"chatbots\"]\n"
	    "listen = 127.0.0.1:9101\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "components 'vision' and 'chatbots' both listen on 127.0.0.1:9101");
	free(cause);
	free(path);
}

/* A local copy: run one way, with a route, a health URL and a start timeout that make sense. */
static void
test_local_copies(void **state)
{
	struct fixture *f = *state;
	char *cause, *path = xasprintf("%s/l.conf", f->dir);
	struct config c;
	struct config_args a = {path, NULL};
	const struct component_def *v;
	const struct {
		const char *text, *want;
	} bad[] = {
	    {"local_unit = llm.service\nlocal_start = llama-server\n",
	        "both local_unit and local_start"},
	    {"local_stop = pkill llama\n", "local_stop but no local_start"},
	    {"local_health = http://127.0.0.1:8101/health\n",
	        "spillway does not run its local copy"},
	    {"local_unit = 'llm service'\n", "not a systemd unit name"},
	    {"local_unit = -H.service\n", "not a systemd unit name"},
	    {"local_start = x\nlocal_health = http://10.1.2.3:8101/health\n",
	        "not on this machine's loopback"},
	    {"local_start = llama-server\nlocal_health = https://x/health\n", "not an http:// URL"},
	    {"local_start = x\nlocal_health = http://127.0.0.1:99999/health\n",
	        "its port is not a number from 1 to 65535"},
	    {"local_start = x\nlocal_health = http://[::1]:/health\n",
	        "its port is not a number from 1 to 65535"},
	    {"local_start = llama-server\nlocal_start_timeout_s = 0\n", "from 1 to 86400"},
	    {"local_unit = llm.service\n#\n", "only while a route carries its traffic"},
	};

	put(f->dir, "l.conf",
	    "[component \"local_llm\"]\nlisten = 127.0.0.1:9104\nlocal = 127.0.0.1:8104\n"
	    "local_unit = llm.service\n"
	    "[component \"vision\"]\nlisten = 127.0.0.1:9101\nlocal = 127.0.0.1:8101\n"
	    "local_start = /usr/bin/python3 vision.py --port 8101 {component}\n"
	    "local_stop = /usr/bin/pkill -f vision.py\n"
	    "local_health = http://127.0.0.1:8101/health\nlocal_start_timeout_s = 30\n");
	assert_int_equal(config_load(&c, &a, f->env, &cause), 0);
	v = config_component(&c, "local_llm");
	assert_string_equal(v->local_unit, "llm.service");
	assert_true(component_managed(v) && v->local_start_timeout_s == 120);
	v = config_component(&c, "vision");
	assert_string_equal(v->local_start, "/usr/bin/python3 vision.py --port 8101 {component}");
	assert_string_equal(v->local_stop, "/usr/bin/pkill -f vision.py");
	assert_string_equal(v->local_health, "http://127.0.0.1:8101/health");
	assert_true(component_managed(v) && v->local_start_timeout_s == 30);
	assert_false(component_managed(config_component(&c, "chatbots")));
	config_free(&c);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *text = xasprintf("[component \"vision\"]\n%s%s", bad[i].text,
		    strstr(bad[i].want, "route") != NULL
		        ? ""
		        : "listen = 127.0.0.1:9101\nlocal = 127.0.0.1:8101\n");

		put(f->dir, "l.conf", text);
		cause = load_err(f, path, NULL);
		expect_in(cause, bad[i].want);
		expect_in(cause, "vision");
		free(cause);
		free(text);
	}
	free(path);
}

static void
test_file_errors(void **state)
{
	struct fixture *f = *state;
	char *cause, *path = xasprintf("%s/c.conf", f->dir);

	put(f->dir, "c.conf", "[gcp]\ndaily_budgt = 3\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "c.conf:2: unknown key 'gcp.daily_budgt'");
	expect_in(cause, "did you mean 'gcp.daily_budget'");
	free(cause);
	put(f->dir, "c.conf", "[gcp]\ndaily_budget = lots\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "invalid value 'lots' for gcp.daily_budget");
	expect_in(cause, "c.conf:2");
	free(cause);
	put(f->dir, "c.conf", "[gcp\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "c.conf:1: a section header");
	free(cause);
	/* A NUL byte is refused with its line, not read as the end of the value. */
	{
		char *p2 = xasprintf("%s/nul.conf", f->dir);
		FILE *w = fopen(p2, "w");

		assert_non_null(w);
		fwrite("[gcp]\nzone = us-central1-a\ndaily_budget = 1\0000\n", 1, 47, w);
		fclose(w);
		cause = load_err(f, p2, NULL);
		expect_in(cause, "nul.conf:3: a NUL byte");
		free(cause);
		free(p2);
	}
	/* A key twice in its section, or a section twice: both lines named, nothing wins. */
	put(f->dir, "c.conf", "[gcp]\ndaily_budget = 3\nzone = us-central1-b\ndaily_budget = 50\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "c.conf:4: 'daily_budget' again in [gcp]: it was set at line 2");
	free(cause);
	put(f->dir, "c.conf",
	    "[gcp]\ndaily_budget = 3\n[spillway]\nlog_level = debug\n[gcp]\n"
	    "max_price = 9\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "c.conf:5: [gcp] again: it was opened at line 1");
	free(cause);
	put(f->dir, "c.conf", "[gcp]\ndaily_budget = 1e3\n");
	cause = load_err(f, path, NULL);
	expect_in(cause, "invalid value '1e3' for gcp.daily_budget (in ");
	expect_in(cause, "c.conf:2): not a number");
	free(cause);
	/* --config names a file that must exist. */
	cause = load_err(f, "/nonexistent/spillway.conf", NULL);
	expect_in(cause, "cannot read config file '/nonexistent/spillway.conf'");
	free(cause);
	/* A file that cannot be read: a directory here, as root reads any file. */
	cause = load_err(f, f->dir, NULL);
	expect_in(cause, "Is a directory");
	free(cause);
	if (geteuid() != 0) {
		chmod(path, 0);
		cause = load_err(f, path, NULL);
		expect_in(cause, "Permission denied");
		free(cause);
	}
	free(path);
}

static void
test_placement_errors(void **state)
{
	struct fixture *f = *state;
	const char *mismatch[] = {"GCP_REGION=us-east1", "GCP_ZONE=us-central1-b", NULL};
	const char *fallback[] = {"SPILLWAY_FALLBACK_ZONES=us-central1-b,europe-west1-b", NULL};
	const char *unknown[] = {"gcp.nonsense=1", NULL};
	const char *novalue[] = {"gcp.zone", NULL};
	char *cause;

	cause = load_err(f, NULL, mismatch);
	expect_in(cause, "zone 'us-central1-b' is not in region 'us-east1'");
	free(cause);
	cause = load_err(f, NULL, fallback);
	expect_in(cause, "fallback zone 'europe-west1-b'");
	free(cause);
	cause = load_err(f, NULL, unknown);
	expect_in(cause, "unknown key");
	free(cause);
	cause = load_err(f, NULL, novalue);
	expect_in(cause, "expected KEY=VALUE");
	free(cause);
}

/* The VM's backend: a source needs a start command; the agent a port of its own. */
static void
test_backend_rules(void **state)
{
	struct fixture *f = *state;
	const char *no_start[] = {"SPILLWAY_BACKEND_GIT=https://example.invalid/app.git", NULL};
	const char *same_port[] = {"SPILLWAY_AGENT_PORT=8010", NULL};
	const char *short_lease[] = {"SPILLWAY_LEASE_MINUTES=0.5", NULL};
	const char *good[] = {"SPILLWAY_BACKEND_GIT=git@github.com:you/app.git",
	    "SPILLWAY_BACKEND_REF=release/1.2", "SPILLWAY_BACKEND_START=exec python3 -m app",
	    "SPILLWAY_BACKEND_ENV=A=1 \"B=two words\" C='$(not run)'",
	    "SPILLWAY_CLOUDSQL_INSTANCE=my-project:us-central1:db", NULL};
	struct config c;
	char *cause;

	cause = load_err(f, NULL, no_start);
	expect_in(cause, "backend.start");
	expect_in(cause, "backend.git");
	free(cause);
	cause = load_err(f, NULL, same_port);
	expect_in(cause, "agent.port");
	expect_in(cause, "8010");
	free(cause);
	cause = load_err(f, NULL, short_lease);
	expect_in(cause, "agent.lease_minutes");
	free(cause);
	load_ok(f, &c, good);
	assert_string_equal(c.backend_git, "git@github.com:you/app.git");
	assert_string_equal(c.backend_ref, "release/1.2");
	assert_string_equal(c.backend_env, "A=1 \"B=two words\" C='$(not run)'");
	assert_string_equal(c.health_path, "/health");
	assert_int_equal(c.agent_port, 8011);
	config_free(&c);
}

static void
test_json(void **state)
{
	struct fixture *f = *state;
	struct config c;
	const char *sets[] = {"gcp.daily_budget=4", NULL};
	json_t *v, *e;
	size_t i;
	bool seen = false;

	load_ok(f, &c, sets);
	v = config_to_json(&c);
	assert_int_equal(json_integer_value(json_object_get(v, "schema_version")), 1);
	assert_int_equal(json_array_size(json_object_get(v, "values")), config_nkeys());
	json_array_foreach (json_object_get(v, "values"), i, e) {
		if (strcmp(jx_str(e, "key"), "gcp.daily_budget") == 0) {
			assert_string_equal(jx_str(e, "env"), "GCP_VM_DAILY_BUDGET");
			assert_string_equal(jx_str(e, "source"), "flag");
			assert_true(
			    fabs(json_real_value(json_object_get(e, "value")) - 4.0) < 1e-9);
			seen = true;
		}
		if (strcmp(jx_str(e, "key"), "gcp.use_spot") == 0)
			assert_true(json_is_true(json_object_get(e, "value")));
	}
	assert_true(seen);
	json_decref(v);
	config_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_layers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gcloud_env, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_project_from_credentials, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backend_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_local_copies, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_placement_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json, setup, teardown),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
