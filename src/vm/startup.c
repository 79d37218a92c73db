#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/buf.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"
#include "vm/startup.h"

/* data/, embedded by tools/embed.py */
extern const char startup_script_sh[];
extern const char spillway_agent_py[];

static void
hex(const unsigned char *md, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int
agent_key_load(const char *state_dir, unsigned char key[AGENT_KEY_LEN], char **cause)
{
	char *path = xasprintf("%s/agent.key", state_dir), *text = NULL;
	size_t len = 0;
	struct stat st;
	int error;

	if ((error = read_file(path, 4096, &text, &len)) == -ENOENT) {
		unsigned char fresh[AGENT_KEY_LEN];

		random_bytes(fresh, sizeof fresh);
		make_dirs(state_dir, 0700);
		if ((error = write_file_atomic(path, fresh, sizeof fresh, 0600)) != 0) {
			*cause = xasprintf("cannot write %s: %s", path, strerror(-error));
			goto out;
		}
		memcpy(key, fresh, sizeof fresh);
		goto out;
	}
	if (error != 0 || len != AGENT_KEY_LEN) {
		*cause = xasprintf("%s is %s: remove it and a new key is made (VMs created "
		                   "with the old one can no longer have their lease renewed)",
		    path, error != 0 ? strerror(-error) : "not a key of 32 bytes");
		error = -EINVAL;
		goto out;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077) != 0) {
		*cause = xasprintf("%s can be read by others (mode %03o): chmod 600 it, it holds "
		                   "the key of the VMs' lease secrets",
		    path, (unsigned)(st.st_mode & 0777));
		error = -EPERM;
		goto out;
	}
	memcpy(key, text, AGENT_KEY_LEN);
out:
	if (text != NULL)
		explicit_bzero(text, len);
	free(text);
	free(path);
	return error;
}

void
agent_secret(
    const unsigned char key[AGENT_KEY_LEN], const char *vm, char out[STARTUP_SECRET_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	HMAC(EVP_sha256(), key, AGENT_KEY_LEN, (const unsigned char *)vm, strlen(vm), md, &n);
	hex(md, 32, out);
	explicit_bzero(md, sizeof md);
}

void
lease_authorization(const char *secret, const char *vm, int64_t t, char *out, size_t size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	char *msg = xasprintf("%s\n%" PRId64, vm, t), mac[65];
	unsigned n = 0;

	HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, strlen(msg), md,
	    &n);
	hex(md, 32, mac);
	snprintf(out, size, "Authorization: SpillwayLease %" PRId64 ":%s", t, mac);
	free(msg);
}

int64_t
startup_lease_s(const struct config *cfg)
{
	double minutes =
	    cfg->lease_minutes > 0 ? cfg->lease_minutes : 2 * cfg->idle_timeout_minutes;

	return (int64_t)(minutes * 60);
}

static void
add(struct startup *s, const char *key, const char *value)
{
	if (*value == '\0')
		return; /* unset: the script's default */
	if (s->n == STARTUP_ITEMS_MAX)
		abort(); /* the table below is longer than the array: a build mistake */
	s->items[s->n++] = (struct cloud_kv){key, value};
	s->bytes += strlen(key) + strlen(value);
}

void
startup_render(struct startup *s, const struct config *cfg, const char *vm, const char *components,
    const char *secret)
{
	char **words = NULL, *cause = NULL;
	struct buf env = BUF_INIT(SIZE_MAX);

	memset(s, 0, sizeof *s);
	/* Checked at load (check_env_list): it splits. */
	if (str_argv(cfg->backend_env, &words, &cause) == 0)
		for (char **w = words; *w != NULL; w++)
			buf_printf(&env, "%s\n", *w);
	str_list_free(words);
	free(cause);
	s->env = buf_detach(&env, NULL);
	snprintf(s->port, sizeof s->port, "%" PRId64, cfg->backend_port);
	snprintf(s->agent_port, sizeof s->agent_port, "%" PRId64, cfg->agent_port);
	snprintf(s->lease, sizeof s->lease, "%" PRId64, startup_lease_s(cfg));
	add(s, "startup-script", startup_script_sh);
	add(s, "spillway-agent", spillway_agent_py);
	add(s, "spillway-vm", vm);
	add(s, "spillway-components", components);
	add(s, "spillway-backend-git", cfg->backend_git);
	add(s, "spillway-backend-ref", cfg->backend_ref);
	add(s, "spillway-backend-dir", cfg->backend_dir);
	add(s, "spillway-packages", cfg->backend_packages);
	add(s, "spillway-install", cfg->backend_install);
	add(s, "spillway-start", cfg->backend_start);
	add(s, "spillway-port", s->port);
	add(s, "spillway-health-path", cfg->health_path);
	add(s, "spillway-env", s->env);
	add(s, "spillway-cloudsql", cfg->cloudsql);
	add(s, "spillway-log-dir", cfg->vm_log_dir);
	add(s, "spillway-agent-port", s->agent_port);
	add(s, "spillway-lease-seconds", s->lease);
	add(s, "spillway-agent-secret", secret);
}

void
startup_release(struct startup *s)
{
	free(s->env);
	s->env = NULL;
}

int
startup_check(const struct config *cfg, size_t extra, char *why, size_t len)
{
	char name[64], secret[STARTUP_SECRET_LEN + 1], components[1024];
	struct startup s;
	size_t total;
	int error = 0;

	/* The longest name and components a VM can have. */
	memset(name, 'x', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	memset(secret, '0', STARTUP_SECRET_LEN);
	secret[STARTUP_SECRET_LEN] = '\0';
	components[0] = '\0';
	for (size_t i = 0; i < cfg->ncomponents; i++)
		snprintf(components + strlen(components), sizeof components - strlen(components),
		    "%s%s", i ? "," : "", cfg->components[i].name);
	startup_render(&s, cfg, name, components, secret);
	total = s.bytes + extra;
	for (size_t i = 0; i < s.n && error == 0; i++) {
		if (strlen(s.items[i].value) > GCE_METADATA_VALUE_MAX) {
			snprintf(why, len,
			    "metadata '%s' would be %zu bytes, over Compute Engine's %d for a "
			    "value: shorten the setting it comes from",
			    s.items[i].key, strlen(s.items[i].value), GCE_METADATA_VALUE_MAX);
			error = -E2BIG;
		}
	}
	if (error == 0 && total > GCE_METADATA_MAX) {
		snprintf(why, len,
		    "a VM's metadata would be %zu bytes, over Compute Engine's %d: shorten "
		    "backend.install, backend.start or backend.env, or bake the backend into "
		    "the image (backend.dir)",
		    total, GCE_METADATA_MAX);
		error = -E2BIG;
	}
	startup_release(&s);
	return error;
}
