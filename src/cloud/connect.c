#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cloud/connect.h"
#include "cloud/gce.h"
#include "util/xmalloc.h"

static void
gce_opts_from(struct gce_opts *o, const struct config *cfg)
{
	gce_opts_default(o);
	o->endpoint = cfg->compute_endpoint;
	o->project = cfg->project;
	o->retry.base_ms = cfg->retry_base_ms;
	o->retry.cap_ms = cfg->retry_cap_ms;
	o->retry.attempts = (int)cfg->retry_attempts;
}

int
cloud_reconfigure(struct cloud_conn *conn, const struct config *cfg, char **cause)
{
	struct gce_opts o;
	int error;

	gce_opts_from(&o, cfg);
	if ((error = gce_reconfigure(conn->cloud, &o, cause)) != 0)
		return error;
	free(conn->project);
	conn->project = xstrdup(*cfg->project != '\0' ? cfg->project : auth_project(conn->auth));
	return 0;
}

int
cloud_connect(uv_loop_t *loop, const struct clock *clock, const struct config *cfg,
    char *const *env, struct cloud_conn *conn, char **cause)
{
	const char *sdk = config_getenv(env, "CLOUDSDK_CONFIG"), *home = config_getenv(env, "HOME");
	char *gcloud = sdk != NULL && *sdk != '\0'
	    ? xstrdup(sdk)
	    : xasprintf("%s/.config/gcloud", home != NULL ? home : "");
	struct auth_sources src = {
	    .credentials_file = config_getenv(env, "GOOGLE_APPLICATION_CREDENTIALS"),
	    .gcloud_dir = gcloud,
	    .metadata_host = config_getenv(env, "GCE_METADATA_HOST"),
	    .user_token_uri = *cfg->token_uri != '\0' ? cfg->token_uri : NULL,
	    .no_gce_check = config_getenv(env, "NO_GCE_CHECK") != NULL &&
	        strcasecmp(config_getenv(env, "NO_GCE_CHECK"), "true") == 0,
	};
	struct gce_opts o;
	int error;

	memset(conn, 0, sizeof *conn);
	conn->http = http_client_new(loop);
	error = auth_new(loop, conn->http, clock, &src, &conn->auth, cause);
	free(gcloud);
	if (error != 0)
		goto fail;
	gce_opts_from(&o, cfg);
	if ((error = gce_new(loop, clock, conn->http, conn->auth, &o, &conn->cloud, cause)) != 0)
		goto fail;
	conn->project = xstrdup(*cfg->project != '\0' ? cfg->project : auth_project(conn->auth));
	return 0;
fail:
	cloud_disconnect(conn);
	return error;
}

void
cloud_disconnect(struct cloud_conn *conn)
{
	if (conn->cloud != NULL)
		conn->cloud->ops->free(conn->cloud);
	auth_free(conn->auth);
	http_client_free(conn->http);
	free(conn->project);
	memset(conn, 0, sizeof *conn);
}
