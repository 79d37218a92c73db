/*
 * Application Default Credentials, found where Google's own tools look:
 *
 *	1. $GOOGLE_APPLICATION_CREDENTIALS (a file; it must exist when set),
 *	2. $CLOUDSDK_CONFIG/application_default_credentials.json, else
 *	   ~/.config/gcloud/application_default_credentials.json
 *	   (gcloud auth application-default login),
 *	3. the metadata server ($GCE_METADATA_HOST, else metadata.google.internal),
 *	   probed with a short timeout so a laptop does not hang.
 *
 * Files may be service_account keys (an RS256 JWT traded at the key's
 * token_uri) or authorized_user credentials (a refresh token traded at
 * Google's token endpoint, or user_token_uri). Files readable by others are
 * refused, as ssh refuses such keys.
 *
 * Tokens live in memory only. One is refreshed ahead of its expiry by a timer,
 * so calls rarely wait; calls that do wait share one refresh. Every token,
 * refresh token and client secret is registered with log_secret().
 */
#ifndef SPILLWAY_AUTH_H
#define SPILLWAY_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "net/http.h"
#include "util/clock.h"

enum auth_kind { AUTH_SERVICE_ACCOUNT, AUTH_USER, AUTH_METADATA };

struct auth_sources {
	const char *credentials_file; /* $GOOGLE_APPLICATION_CREDENTIALS, or NULL */
	const char *gcloud_dir;       /* $CLOUDSDK_CONFIG, else ~/.config/gcloud */
	const char *metadata_host;    /* $GCE_METADATA_HOST, or NULL */
	const char *user_token_uri;   /* for authorized_user; NULL: Google's */
	const char *scope;            /* NULL: https://www.googleapis.com/auth/compute */
	int64_t metadata_probe_ms;    /* 0: 1000 */
	/*
	 * Whether this is a Compute Engine VM, where a metadata server answers: the
	 * DMI product name (NULL: /sys/class/dmi/id/product_name) says "Google",
	 * unless no_gce_check ($NO_GCE_CHECK=true, as Google's libraries read it).
	 * A metadata_host given is asked whatever they say.
	 */
	const char *dmi_product;
	bool no_gce_check;
};

struct auth;

/* The longest access token taken (Google's are about 250 bytes); a header holds it. */
#define AUTH_TOKEN_MAX   4096
#define AUTH_HEADER_SIZE (AUTH_TOKEN_MAX + 32) /* "Authorization: Bearer " and the token */

/* Find and read the credentials (files are read now, the metadata server later). */
int auth_new(uv_loop_t *, struct http_client *, const struct clock *, const struct auth_sources *,
    struct auth **, char **cause);
/* Cancel the refresh and every waiter (no callbacks) and free. */
void auth_free(struct auth *);

enum auth_kind auth_kind(const struct auth *);
/* Where the credentials came from, for people: "/path (GOOGLE_APPLICATION_CREDENTIALS)". */
const char *auth_source(const struct auth *);
/* The project of a service-account key, or NULL. */
const char *auth_project(const struct auth *);
/* The account: a service account's e-mail, "user credentials", or "metadata server". */
const char *auth_account(const struct auth *);

/* A token that is valid now and for a while yet, or NULL: then call auth_refresh. */
const char *auth_cached(struct auth *);

/*
 * error is 0 with a token, or -EACCES (the credentials were refused, or the
 * endpoint answered without a usable token: not worth retrying) or -EAGAIN
 * (no answer, or a server error: worth retrying) with a cause naming the
 * endpoint.
 */
typedef void auth_cb(int error, const char *token, const char *cause, void *arg);
/* Get a fresh token; joins the refresh in flight, if any. Calls back exactly once. */
void auth_refresh(struct auth *, int64_t deadline_ms, auth_cb *, void *arg);
/* Forget a waiter (by its arg) that no longer wants its callback. */
void auth_cancel(struct auth *, void *arg);
/* The server said 401 to this token: drop it, so the next call refreshes. */
void auth_invalidate(struct auth *, const char *token);
/* Tokens obtained so far. */
long auth_refreshes(const struct auth *);

#endif
