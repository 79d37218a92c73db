/*
 * From spillway's configuration and the environment to a working provider:
 * the HTTP client, the credentials (GOOGLE_APPLICATION_CREDENTIALS,
 * CLOUDSDK_CONFIG, GCE_METADATA_HOST, as Google's tools read them) and the
 * Compute Engine client. The one place that ties config/ to cloud/.
 */
#ifndef SPILLWAY_CONNECT_H
#define SPILLWAY_CONNECT_H

#include <uv.h>

#include "cloud/auth.h"
#include "cloud/provider.h"
#include "config/config.h"
#include "net/http.h"
#include "util/clock.h"

struct cloud_conn {
	struct http_client *http;
	struct auth *auth;
	struct cloud *cloud;
	char *project;
};

/* env: the environment to read (NULL: the process's). 0, or -errno and a cause. */
int cloud_connect(uv_loop_t *, const struct clock *, const struct config *, char *const *env,
    struct cloud_conn *, char **cause);
/* A reloaded configuration's endpoint, project and retries, for calls from now on. */
int cloud_reconfigure(struct cloud_conn *, const struct config *, char **cause);
/* Free in order; callbacks of calls in flight do not run. */
void cloud_disconnect(struct cloud_conn *);

#endif
