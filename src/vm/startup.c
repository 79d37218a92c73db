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

#include "net/tls.h"
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

/*
 * A secret of the state directory (0600): its contents, made and written
 * the first time by make; refused when others can read it (what says what
 * it holds). The caller wipes and frees *text.
 */
static int
state_secret(const char *state_dir, const char *name, size_t max,
    int (*make)(char **text, size_t *len, char **cause), const char *what, char **text, size_t *len,
    char **cause)
{
	char *path = xasprintf("%s/%s", state_dir, name);
	struct stat st;
	int error;

	*text = NULL;
	if ((error = read_file(path, max, text, len)) == -ENOENT) {
		if ((error = make(text, len, cause)) != 0)
			goto out;
		make_dirs(state_dir, 0700);
		if ((error = write_file_atomic(path, *text, *len, 0600)) != 0)
			*cause = xasprintf("cannot write %s: %s", path, strerror(-error));
	} else if (error != 0) {
		*cause = xasprintf("cannot read %s: %s", path, strerror(-error));
	} else if (stat(path, &st) == 0 && (st.st_mode & 077) != 0) {
		*cause =
		    xasprintf("%s can be read by others (mode %03o): chmod 600 it, it holds %s",
		        path, (unsigned)(st.st_mode & 0777), what);
		error = -EPERM;
	}
out:
	if (error != 0 && *text != NULL) {
		explicit_bzero(*text, *len);
		free(*text);
		*text = NULL;
	}
	free(path);
	return error;
}

static int
make_key(char **text, size_t *len, char **cause)
{
	*text = xmalloc(AGENT_KEY_LEN);
	*len = AGENT_KEY_LEN;
	random_bytes(*text, AGENT_KEY_LEN);
	return 0;
}

int
agent_key_load(const char *state_dir, unsigned char key[AGENT_KEY_LEN], char **cause)
{
	char *text;
	size_t len = 0;
	int error = state_secret(state_dir, "agent.key", 4096, make_key,
	    "the key of the VMs' lease secrets", &text, &len, cause);

	if (error != 0)
		return error;
	if (len != AGENT_KEY_LEN) {
		*cause =
		    xasprintf("%s/agent.key is not a key of 32 bytes: remove it and a new key is "
		              "made (VMs created with the old one can no longer have their lease "
		              "renewed)",
		        state_dir);
		error = -EINVAL;
	} else {
		memcpy(key, text, AGENT_KEY_LEN);
	}
	explicit_bzero(text, len);
	free(text);
	return error;
}

bool
agent_pin_valid(const char *pin)
{
	const char *b;

	if (pin == NULL || !str_prefix(pin, "sha256//"))
		return false;
	b = pin + strlen("sha256//");
	return strlen(b) == 44 && b[43] == '=' &&
	    strspn(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") == 43;
}

/* The certificate and key PEMs of one file, key first. */
static int
split_identity(const char *text, struct agent_identity *id)
{
	const char *cert = strstr(text, "-----BEGIN CERTIFICATE-----");

	if (cert == NULL || strstr(text, "PRIVATE KEY-----") == NULL ||
	    strstr(text, "PRIVATE KEY-----") > cert || strlen(cert) >= IDENTITY_CERT_MAX ||
	    tls_cert_pin(cert, id->pin) != 0)
		return -EINVAL;
	id->key_pem = xstrndup(text, (size_t)(cert - text));
	id->cert_pem = xstrdup(cert);
	return 0;
}

static int
make_identity(char **text, size_t *len, char **cause)
{
	char *cert, *key;
	int error;

	if ((error = tls_identity_make("spillway", &cert, &key, cause)) != 0)
		return error;
	*text = xasprintf("%s%s", key, cert);
	*len = strlen(*text);
	explicit_bzero(key, strlen(key));
	free(key);
	free(cert);
	return 0;
}

int
agent_identity_load(const char *state_dir, struct agent_identity *id, char **cause)
{
	char *text;
	size_t len = 0;
	int error = state_secret(state_dir, "agent-tls.pem", 64 * 1024, make_identity,
	    "the key this daemon proves itself with to its VMs", &text, &len, cause);

	memset(id, 0, sizeof *id);
	if (error != 0)
		return error;
	if ((error = split_identity(text, id)) != 0)
		*cause =
		    xasprintf("%s/agent-tls.pem is not a key and a certificate: remove it and a "
		              "new one is made (VMs created with the old one no longer let this "
		              "daemon in)",
		        state_dir);
	explicit_bzero(text, len);
	free(text);
	return error;
}

void
agent_identity_release(struct agent_identity *id)
{
	if (id->key_pem != NULL)
		explicit_bzero(id->key_pem, strlen(id->key_pem));
	free(id->key_pem);
	free(id->cert_pem);
	memset(id, 0, sizeof *id);
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
    const char *secret, const char *client_cert)
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
	add(s, "spillway-prefetch", cfg->backend_prefetch);
	if (cfg->backend_git[0] != '\0') {
		config_install_hash(cfg, s->install_hash);
		add(s, "spillway-install-hash", s->install_hash);
	}
	add(s, "spillway-start", cfg->backend_start);
	add(s, "spillway-port", s->port);
	add(s, "spillway-health-path", cfg->health_path);
	add(s, "spillway-env", s->env);
	add(s, "spillway-cloudsql", cfg->cloudsql);
	add(s, "spillway-log-dir", cfg->vm_log_dir);
	add(s, "spillway-agent-port", s->agent_port);
	add(s, "spillway-lease-seconds", s->lease);
	add(s, "spillway-agent-secret", secret);
	/* Who may talk to the agent (its TLS client), and where the agent says its own key. */
	add(s, "spillway-client-cert", client_cert);
	add(s, "enable-guest-attributes", "TRUE");
}

void
startup_bake(struct startup *s)
{
	add(s, "spillway-mode", "bake");
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
	char name[64], secret[STARTUP_SECRET_LEN + 1], components[1024], cert[IDENTITY_CERT_MAX];
	struct startup s;
	size_t total;
	int error = 0;

	/* The longest name and components a VM can have. */
	memset(name, 'x', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	memset(secret, '0', STARTUP_SECRET_LEN);
	secret[STARTUP_SECRET_LEN] = '\0';
	memset(cert, 'c', sizeof cert - 1); /* as long as an identity's certificate can be */
	cert[sizeof cert - 1] = '\0';
	components[0] = '\0';
	for (size_t i = 0; i < cfg->ncomponents; i++)
		snprintf(components + strlen(components), sizeof components - strlen(components),
		    "%s%s", i ? "," : "", cfg->components[i].name);
	startup_render(&s, cfg, name, components, secret, cert);
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
