/*
 * What a VM is given when it is created, and how the daemon proves itself to
 * the VM's watchdog agent.
 *
 * The startup script (data/startup-script.sh) and the agent
 * (data/spillway-agent.py) go into the instance's metadata beside the
 * settings, as attributes the script reads from the metadata server: no
 * value is pasted into the script's text (docs/startup.md).
 *
 * Each VM's lease secret is derived from one key in the state directory
 * (agent.key, 0600) and the VM's name: no secret is stored in the ledger, and
 * a restarted daemon renews the leases of the VMs it had. A renewal carries
 * "Authorization: SpillwayLease TIME:HMAC", never the secret itself.
 */
#ifndef SPILLWAY_STARTUP_H
#define SPILLWAY_STARTUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloud/provider.h"
#include "config/config.h"

#define AGENT_KEY_LEN      32
#define STARTUP_SECRET_LEN 64 /* hex */
#define STARTUP_ITEMS_MAX  26
/* Compute Engine's limit on all of an instance's metadata, keys and values. */
#define GCE_METADATA_MAX       (512 * 1024)
#define GCE_METADATA_VALUE_MAX (256 * 1024)

struct startup {
	struct cloud_kv items[STARTUP_ITEMS_MAX];
	size_t n;
	size_t bytes; /* keys and values, as Compute Engine counts them */
	char port[8], health[8], agent_port[8], lease[24];
	char install_hash[CONFIG_INSTALL_HASH_LEN + 1]; /* config_install_hash */
	char *env; /* owned: the KEY=VALUE lines */
};

/*
 * How the daemon proves itself to its VMs' agents: a TLS client key and
 * self-signed certificate (agent-tls.pem, 0600, made the first time). The
 * certificate goes to each VM (spillway-client-cert); the agent lets in
 * that certificate only. Its own key the agent publishes in the VM's guest
 * attributes (spillway/tls-key), read through the Compute API and pinned.
 */
#define IDENTITY_CERT_MAX 2048
#define AGENT_PIN_KEY     "spillway/tls-key"

struct agent_identity {
	char *cert_pem, *key_pem;
	char pin[64]; /* the certificate's key, "sha256//BASE64" */
};

/* A pin as an agent publishes it: "sha256//" and the base64 of 32 bytes. */
bool agent_pin_valid(const char *);
int agent_identity_load(const char *state_dir, struct agent_identity *, char **cause);
void agent_identity_release(struct agent_identity *);

/* The key, created (0600, from the RNG) the first time. 0, or -errno and why. */
int agent_key_load(const char *state_dir, unsigned char key[AGENT_KEY_LEN], char **cause);
/* The VM's secret: HMAC-SHA256(key, name), in hex. */
void agent_secret(
    const unsigned char key[AGENT_KEY_LEN], const char *vm, char out[STARTUP_SECRET_LEN + 1]);
/* "Authorization: SpillwayLease TIME:HEX" for the VM at unix time t. */
void lease_authorization(const char *secret, const char *vm, int64_t t, char *out, size_t size);
/* How long the agent waits for a renewal: the configured lease, else two idle timeouts. */
int64_t startup_lease_s(const struct config *);

/*
 * The metadata of a VM: the script, the agent, the settings, the VM's name,
 * components and secret. The strings are the config's and the caller's, kept
 * alive while *s is used; startup_release frees what *s owns.
 */
void startup_render(struct startup *s, const struct config *, const char *vm,
    const char *components, const char *secret, const char *client_cert);
void startup_release(struct startup *);
/*
 * A bake's VM (docs/images.md): the script installs, says so, and starts no
 * backend; the VM is then stopped and its disk made an image.
 */
void startup_bake(struct startup *);

/*
 * Whether a VM's metadata fits Compute Engine's limit with the most a
 * program may add (extra bytes). 0, or -E2BIG and why, naming the settings.
 */
int startup_check(const struct config *, size_t extra, char *why, size_t len);

#endif
