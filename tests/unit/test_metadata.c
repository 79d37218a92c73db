/*
 * What a VM is given (src/vm/startup.c): the metadata rendered from the
 * configuration, the limits of Compute Engine, the agent key's file and the
 * secrets and signatures derived from it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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
#include "vm/startup.h"

static const char *
item(const struct startup *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->items[i].key, key) == 0)
			return s->items[i].value;
	return NULL;
}

static void
load(struct config *c, const char *const *sets)
{
	char *env[] = {"HOME=/nonexistent", "XDG_STATE_HOME=/tmp/spillway-metadata-state", NULL};
	struct config_args a = {NULL, sets};
	char *cause = NULL;

	if (config_load(c, &a, env, &cause) != 0)
		fail_msg("config_load: %s", cause);
}

static void
test_render(void **state)
{
	const char *sets[] = {"SPILLWAY_BACKEND_GIT=https://example.invalid/app.git",
	    "SPILLWAY_BACKEND_START=exec python3 -m app",
	    "SPILLWAY_BACKEND_ENV=A=1 \"B=two words\"", "GCP_VM_IDLE_TIMEOUT_MINUTES=20", NULL};
	struct config c;
	struct startup s;
	size_t bytes = 0;

	load(&c, sets);
	startup_render(&s, &c, "vm-1", "vision,chatbots", "ab12", "-----BEGIN CERTIFICATE-----");
	assert_non_null(strstr(item(&s, "startup-script"), "spillway's startup script"));
	assert_non_null(strstr(item(&s, "spillway-agent"), "spillway's watchdog on the VM"));
	assert_string_equal(item(&s, "spillway-vm"), "vm-1");
	assert_string_equal(item(&s, "spillway-components"), "vision,chatbots");
	assert_string_equal(item(&s, "spillway-backend-git"), "https://example.invalid/app.git");
	assert_string_equal(item(&s, "spillway-backend-ref"), "main");
	assert_string_equal(item(&s, "spillway-start"), "exec python3 -m app");
	assert_string_equal(item(&s, "spillway-env"), "A=1\nB=two words\n");
	assert_string_equal(item(&s, "spillway-port"), "8010");
	assert_string_equal(item(&s, "spillway-agent-port"), "8011");
	assert_string_equal(item(&s, "spillway-lease-seconds"), "2400"); /* two idle timeouts */
	assert_string_equal(item(&s, "spillway-agent-secret"), "ab12");
	assert_string_equal(item(&s, "spillway-client-cert"), "-----BEGIN CERTIFICATE-----");
	assert_string_equal(item(&s, "enable-guest-attributes"), "TRUE");
	/* What the install is made of: 32 hex digits, the same for the same settings. */
	assert_int_equal(strlen(item(&s, "spillway-install-hash")), CONFIG_INSTALL_HASH_LEN);
	assert_null(item(&s, "spillway-mode"));
	{
		char same[CONFIG_INSTALL_HASH_LEN + 1];

		config_install_hash(&c, same);
		assert_string_equal(item(&s, "spillway-install-hash"), same);
	}
	/* Unset settings are not sent: the script's defaults hold. */
	assert_null(item(&s, "spillway-install"));
	assert_null(item(&s, "spillway-prefetch"));
	assert_null(item(&s, "spillway-cloudsql"));
	assert_null(item(&s, "spillway-backend-dir"));
	for (size_t i = 0; i < s.n; i++)
		bytes += strlen(s.items[i].key) + strlen(s.items[i].value);
	assert_int_equal(s.bytes, bytes);
	/* The script and the agent leave room for everything else. */
	assert_true(s.bytes < GCE_METADATA_MAX / 8);
	startup_release(&s);
	config_free(&c);
}

/*
 * The install hash changes with each setting that goes into the install, and
 * with none that does not; a bake's metadata says so; without backend.git
 * there is no install to name.
 */
static void
test_install_hash(void **state)
{
	static const char *const changes[] = {"SPILLWAY_BACKEND_REF=v2",
	    "SPILLWAY_BACKEND_PACKAGES=libgl1", "SPILLWAY_BACKEND_INSTALL=pip3 install torch",
	    "SPILLWAY_BACKEND_PREFETCH=python3 fetch.py",
	    "SPILLWAY_IMAGE_BASE=projects/debian-cloud/global/images/family/debian-13",
	    "SPILLWAY_BACKEND_GIT=https://example.invalid/other.git"};
	static const char *const unrelated[] = {"SPILLWAY_BACKEND_START=exec python3 -m other",
	    "GCP_VM_MACHINE_TYPE=e2-highmem-8", "SPILLWAY_BACKEND_ENV=A=2"};
	const char *sets[4] = {"SPILLWAY_BACKEND_GIT=https://example.invalid/app.git",
	    "SPILLWAY_BACKEND_START=exec python3 -m app", NULL, NULL};
	char base[CONFIG_INSTALL_HASH_LEN + 1], other[CONFIG_INSTALL_HASH_LEN + 1];
	struct config c;
	struct startup s;

	load(&c, sets);
	config_install_hash(&c, base);
	startup_render(&s, &c, "vm-1", "", "ab12", "cert");
	startup_bake(&s);
	assert_string_equal(item(&s, "spillway-mode"), "bake");
	startup_release(&s);
	config_free(&c);
	for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
		sets[2] = changes[i];
		load(&c, sets);
		config_install_hash(&c, other);
		assert_string_not_equal(base, other);
		config_free(&c);
	}
	for (size_t i = 0; i < sizeof unrelated / sizeof unrelated[0]; i++) {
		sets[2] = unrelated[i];
		load(&c, sets);
		config_install_hash(&c, other);
		assert_string_equal(base, other);
		config_free(&c);
	}
	load(&c, (const char *[]){NULL});
	startup_render(&s, &c, "vm-1", "", "ab12", "cert");
	assert_null(item(&s, "spillway-install-hash"));
	startup_release(&s);
	config_free(&c);
}

static void
test_limits(void **state)
{
	char *big = xmalloc(300 * 1024 + 64), *mid = xmalloc(200 * 1024 + 64);
	const char *one[] = {big, NULL}, *three[4];
	struct config c;
	char why[512];

	/* One value past 256 KiB: named. */
	snprintf(big, 64, "SPILLWAY_BACKEND_INSTALL=");
	memset(big + strlen(big), 'x', 300 * 1024);
	big[strlen("SPILLWAY_BACKEND_INSTALL=") + 300 * 1024] = '\0';
	load(&c, one);
	assert_int_equal(startup_check(&c, 2048, why, sizeof why), -E2BIG);
	assert_non_null(strstr(why, "spillway-install"));
	config_free(&c);
	/* Each value fits, all of them do not. */
	snprintf(mid, 64, "SPILLWAY_BACKEND_INSTALL=");
	memset(mid + strlen(mid), 'y', 200 * 1024);
	mid[strlen("SPILLWAY_BACKEND_INSTALL=") + 200 * 1024] = '\0';
	three[0] = mid;
	three[1] =
	    xasprintf("SPILLWAY_BACKEND_START=%s", mid + strlen("SPILLWAY_BACKEND_INSTALL="));
	three[2] =
	    xasprintf("SPILLWAY_BACKEND_ENV=A=%s", mid + strlen("SPILLWAY_BACKEND_INSTALL="));
	three[3] = NULL;
	load(&c, three);
	assert_int_equal(startup_check(&c, 2048, why, sizeof why), -E2BIG);
	assert_non_null(strstr(why, "over Compute Engine's 524288"));
	config_free(&c);
	/* The defaults fit, with the most a program may add. */
	load(&c, NULL);
	assert_int_equal(startup_check(&c, 2048, why, sizeof why), 0);
	config_free(&c);
	free((void *)three[1]);
	free((void *)three[2]);
	free(big);
	free(mid);
}

static void
test_key_and_secrets(void **state)
{
	char dir[] = "/tmp/spillway-key-XXXXXX", *path, *cause = NULL;
	unsigned char key[AGENT_KEY_LEN], again[AGENT_KEY_LEN];
	char a[STARTUP_SECRET_LEN + 1], b[STARTUP_SECRET_LEN + 1], auth[160], auth2[160];
	struct stat st;

	assert_non_null(mkdtemp(dir));
	path = xasprintf("%s/state/agent.key", dir);
	/* Made once, 0600, and the same after. */
	{
		char *state_dir = xasprintf("%s/state", dir);

		assert_int_equal(agent_key_load(state_dir, key, &cause), 0);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
		assert_int_equal(st.st_size, AGENT_KEY_LEN);
		assert_int_equal(agent_key_load(state_dir, again, &cause), 0);
		assert_memory_equal(key, again, AGENT_KEY_LEN);
		/* Readable by others: refused, saying how to fix it. */
		chmod(path, 0644);
		assert_int_equal(agent_key_load(state_dir, again, &cause), -EPERM);
		assert_non_null(strstr(cause, "chmod 600"));
		free(cause);
		/* Not a key: refused, saying what removing it costs. */
		assert_int_equal(truncate(path, 5), 0);
		chmod(path, 0600);
		assert_int_equal(agent_key_load(state_dir, again, &cause), -EINVAL);
		assert_non_null(strstr(cause, "not a key of 32 bytes"));
		free(cause);
		free(state_dir);
	}
	/* One secret per VM, from the key alone. */
	agent_secret(key, "vm-1", a);
	agent_secret(key, "vm-2", b);
	assert_int_equal(strlen(a), STARTUP_SECRET_LEN);
	assert_string_not_equal(a, b);
	agent_secret(key, "vm-1", b);
	assert_string_equal(a, b);
	key[0] ^= 1;
	agent_secret(key, "vm-1", b);
	assert_string_not_equal(a, b);
	/* A signature names its time, and changes with the time, the VM and the secret. */
	lease_authorization(a, "vm-1", 1800000000, auth, sizeof auth);
	assert_true(str_prefix(auth, "Authorization: SpillwayLease 1800000000:"));
	assert_int_equal(strlen(auth), strlen("Authorization: SpillwayLease 1800000000:") + 64);
	assert_null(strstr(auth, a)); /* the secret itself never travels */
	lease_authorization(a, "vm-1", 1800000001, auth2, sizeof auth2);
	assert_string_not_equal(auth + 40, auth2 + 40);
	lease_authorization(a, "vm-2", 1800000000, auth2, sizeof auth2);
	assert_string_not_equal(auth, auth2);
	lease_authorization(b, "vm-1", 1800000000, auth2, sizeof auth2);
	assert_string_not_equal(auth, auth2);
	free(path);
	path = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
	free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render),
	    cmocka_unit_test(test_install_hash),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_key_and_secrets),
	};

	jx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
