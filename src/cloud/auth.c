#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloud/auth.h"
#include "util/buf.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define GOOGLE_TOKEN_URI  "https://oauth2.googleapis.com/token"
#define COMPUTE_SCOPE     "https://www.googleapis.com/auth/compute"
#define METADATA_HOST     "metadata.google.internal"
#define CREDENTIALS_MAX   (64 * 1024)
#define TOKEN_ANSWER_MAX  (64 * 1024)
#define TOKEN_TIMEOUT_MS  30000
#define REFRESH_MARGIN_MS (300 * 1000) /* renew this long before expiry, at most */
#define EXPIRY_SKEW_MS    10000        /* a token this close to expiry is not used */
#define JWT_LIFE_S        3600
#define TOKEN_LIFE_MAX_S  86400 /* Google's live an hour; a day is generous */
#define LOGIN_HINT                                                                                 \
	"run 'gcloud auth application-default login', or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"

struct waiter {
	auth_cb *cb;
	void *arg;
	struct waiter *next;
};

struct auth {
	uv_loop_t *loop;
	struct http_client *http;
	const struct clock *clock;
	enum auth_kind kind;
	char *source;
	char *project;
	char *account;
	char *scope;
	/* service_account */
	EVP_PKEY *key;
	char *key_id;
	char *token_uri;
	/* authorized_user */
	char *client_id;
	char *client_secret;
	char *refresh_token;
	/* metadata server */
	char *metadata_url;
	int64_t probe_ms;
	bool metadata_seen;
	/* the token */
	char *token;
	int64_t expires_ms;
	struct http_call *inflight;
	struct waiter *waiters;
	uv_timer_t timer;
	long refreshes;
};

static void
set_secret(char **slot, const char *value)
{
	if (*slot != NULL) {
		log_forget_secret(*slot);
		explicit_bzero(*slot, strlen(*slot));
		free(*slot);
	}
	*slot = value != NULL ? xstrdup(value) : NULL;
	if (*slot != NULL)
		log_secret(*slot);
}

/* --- reading the credentials --- */

static const char *
field(json_t *v, const char *name, const char *path, char **cause)
{
	const char *s = jx_str(v, name);

	if (s != NULL && *s != '\0')
		return s;
	*cause =
	    xasprintf("'%s' has no '%s': download the key again, or %s", path, name, LOGIN_HINT);
	return NULL; /* empty is missing: the caller stops here */
}

static bool
token_uri_ok(const char *uri)
{
	return str_prefix(uri, "https://") || http_url_is_loopback(uri);
}

static int
read_service_account(struct auth *a, json_t *v, const char *path, char **cause)
{
	const char *email, *pem, *uri = jx_str(v, "token_uri");
	char *why = NULL;

	if ((email = field(v, "client_email", path, cause)) == NULL ||
	    (pem = field(v, "private_key", path, cause)) == NULL)
		return -EINVAL;
	if (uri == NULL)
		uri = GOOGLE_TOKEN_URI;
	if (!token_uri_ok(uri)) {
		*cause = xasprintf("'%s': token_uri '%s' must be https:// (plain http only to a "
		                   "loopback address)",
		    path, uri);
		return -EINVAL;
	}
	if ((a->key = pem_read_private(pem, &why)) == NULL) {
		*cause = xasprintf("'%s': %s: download the key again", path, why);
		free(why);
		return -EINVAL;
	}
	a->kind = AUTH_SERVICE_ACCOUNT;
	a->account = xstrdup(email);
	a->token_uri = xstrdup(uri);
	if (jx_str(v, "private_key_id") != NULL)
		a->key_id = xstrdup(jx_str(v, "private_key_id"));
	if (jx_str(v, "project_id") != NULL && *jx_str(v, "project_id") != '\0')
		a->project = xstrdup(jx_str(v, "project_id"));
	return 0;
}

static int
read_user(struct auth *a, json_t *v, const char *path, const char *token_uri, char **cause)
{
	const char *id, *secret, *refresh;

	if ((id = field(v, "client_id", path, cause)) == NULL ||
	    (secret = field(v, "client_secret", path, cause)) == NULL ||
	    (refresh = field(v, "refresh_token", path, cause)) == NULL)
		return -EINVAL;
	if (token_uri != NULL && !token_uri_ok(token_uri)) {
		*cause = xasprintf("token endpoint '%s' must be https:// (plain http only to a "
		                   "loopback address)",
		    token_uri);
		return -EINVAL;
	}
	a->kind = AUTH_USER;
	a->account = xstrdup("user credentials");
	a->client_id = xstrdup(id);
	set_secret(&a->client_secret, secret);
	set_secret(&a->refresh_token, refresh);
	a->token_uri = xstrdup(token_uri != NULL ? token_uri : GOOGLE_TOKEN_URI);
	return 0;
}

static int
read_file_credentials(struct auth *a, const char *path, const char *origin,
    const struct auth_sources *src, char **cause)
{
	char *text = NULL, *why = NULL;
	json_t *v = NULL;
	struct stat st;
	const char *type;
	int fd, error;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 || fstat(fd, &st) == -1) {
		error = -errno;
		*cause = xasprintf("cannot read credentials '%s' (%s): %s; %s", path, origin,
		    strerror(errno), LOGIN_HINT);
		if (fd != -1)
			close(fd);
		return error;
	}
	close(fd);
	if (!S_ISREG(st.st_mode)) {
		*cause = xasprintf("credentials '%s' (%s) are not a regular file", path, origin);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		*cause = xasprintf("credentials '%s' can be read by other users (mode %04o); run: "
		                   "chmod 600 '%s'",
		    path, (unsigned)(st.st_mode & 07777), path);
		return -EPERM;
	}
	if ((error = read_file(path, CREDENTIALS_MAX, &text, NULL)) != 0) {
		*cause = xasprintf("cannot read credentials '%s': %s", path,
		    error == -E2BIG ? "larger than 64 KiB, not a key file" : strerror(-error));
		return error;
	}
	if (jx_parse(text, strlen(text), &v, &why) != 0 || !json_is_object(v)) {
		*cause = xasprintf("credentials '%s' are not a JSON object (%s); %s", path,
		    why != NULL ? why : "another JSON value", LOGIN_HINT);
		error = -EINVAL;
		goto out;
	}
	type = jx_str(v, "type");
	if (type != NULL && strcmp(type, "service_account") == 0)
		error = read_service_account(a, v, path, cause);
	else if (type != NULL && strcmp(type, "authorized_user") == 0)
		error = read_user(a, v, path, src->user_token_uri, cause);
	else {
		*cause =
		    xasprintf("credentials '%s' have type '%s'; spillway takes service_account "
		              "keys and authorized_user credentials (%s)",
		        path, type != NULL ? type : "(none)", LOGIN_HINT);
		error = -EINVAL;
	}
	if (error == 0)
		a->source = xasprintf("%s (%s)", path, origin);
out:
	if (text != NULL)
		explicit_bzero(text, strlen(text));
	free(text);
	free(why);
	json_decref(v);
	return error;
}

/* Whether a metadata server is there to ask; if not, why not. */
static bool
on_gce(const struct auth_sources *src, char *why, size_t size)
{
	const char *path =
	    src->dmi_product != NULL ? src->dmi_product : "/sys/class/dmi/id/product_name";
	char *product = NULL;
	bool gce;

	if (src->metadata_host != NULL && *src->metadata_host != '\0')
		return true;
	if (src->no_gce_check) {
		snprintf(why, size, "NO_GCE_CHECK is set");
		return false;
	}
	if (read_file(path, 4096, &product, NULL) != 0) {
		snprintf(why, size, "not a Compute Engine VM: %s cannot be read", path);
		return false;
	}
	gce = str_prefix(product, "Google");
	snprintf(why, size, "not a Compute Engine VM: %s says '%.64s'", path, str_trim(product));
	free(product);
	return gce;
}

int
auth_new(uv_loop_t *loop, struct http_client *http, const struct clock *clock,
    const struct auth_sources *src, struct auth **out, char **cause)
{
	struct auth *a = xcalloc(1, sizeof *a);
	const char *env = src->credentials_file;
	int error = 0;

	a->loop = loop;
	a->http = http;
	a->clock = clock;
	a->scope = xstrdup(src->scope != NULL ? src->scope : COMPUTE_SCOPE);
	if (env != NULL && *env != '\0') {
		error = read_file_credentials(a, env, "GOOGLE_APPLICATION_CREDENTIALS", src, cause);
	} else {
		char *adc = xasprintf("%s/application_default_credentials.json", src->gcloud_dir);

		char why[256];

		if (access(adc, F_OK) == 0) {
			error =
			    read_file_credentials(a, adc, "gcloud application-default", src, cause);
		} else if (!on_gce(src, why, sizeof why)) {
			*cause = xasprintf(
			    "no Google credentials found; spillway looked, in order, at "
			    "GOOGLE_APPLICATION_CREDENTIALS (not set), gcloud's application default "
			    "credentials %s (none) and the metadata server (%s). Run: gcloud auth "
			    "application-default login",
			    adc, why);
			error = -ENOENT;
		} else {
			const char *host = src->metadata_host != NULL && *src->metadata_host != '\0'
			    ? src->metadata_host
			    : METADATA_HOST;

			a->kind = AUTH_METADATA;
			a->metadata_url = xasprintf("http://%s/computeMetadata/v1/instance/"
			                            "service-accounts/default/token",
			    host);
			a->probe_ms = src->metadata_probe_ms > 0 ? src->metadata_probe_ms : 1000;
			a->account = xstrdup("metadata server");
			a->source = xasprintf("the metadata server at %s", host);
		}
		free(adc);
	}
	if (error != 0) {
		auth_free(a);
		return error;
	}
	uv_timer_init(loop, &a->timer);
	/* Renewing a token ahead of time is no reason for the loop to keep running. */
	uv_unref((uv_handle_t *)&a->timer);
	a->timer.data = a;
	*out = a;
	return 0;
}

static void
auth_release(uv_handle_t *h)
{
	free(h->data);
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	if (a->inflight != NULL)
		http_cancel(a->inflight);
	while (a->waiters != NULL) {
		struct waiter *w = a->waiters;

		a->waiters = w->next;
		free(w);
	}
	set_secret(&a->token, NULL);
	set_secret(&a->client_secret, NULL);
	set_secret(&a->refresh_token, NULL);
	EVP_PKEY_free(a->key);
	free(a->key_id);
	free(a->token_uri);
	free(a->client_id);
	free(a->metadata_url);
	free(a->source);
	free(a->project);
	free(a->account);
	free(a->scope);
	if (a->timer.data == a) {
		uv_timer_stop(&a->timer);
		uv_close((uv_handle_t *)&a->timer, auth_release);
	} else {
		free(a);
	}
}

enum auth_kind
auth_kind(const struct auth *a)
{
	return a->kind;
}

const char *
auth_source(const struct auth *a)
{
	return a->source;
}

const char *
auth_project(const struct auth *a)
{
	return a->project;
}

const char *
auth_account(const struct auth *a)
{
	return a->account;
}

long
auth_refreshes(const struct auth *a)
{
	return a->refreshes;
}

const char *
auth_cached(struct auth *a)
{
	if (a->token != NULL && clock_now_ms(a->clock) < a->expires_ms - EXPIRY_SKEW_MS)
		return a->token;
	return NULL;
}

void
auth_invalidate(struct auth *a, const char *token)
{
	if (a->token != NULL && token != NULL && strcmp(a->token, token) == 0) {
		set_secret(&a->token, NULL);
		a->expires_ms = 0;
	}
}

/* --- refreshing --- */

static void start_refresh(struct auth *, int64_t timeout_ms);

static void
deliver(struct auth *a, int error, const char *cause)
{
	struct waiter *list = a->waiters;

	/* Detached first: a callback may ask for a token again. */
	a->waiters = NULL;
	while (list != NULL) {
		struct waiter *w = list;

		list = w->next;
		w->cb(error, error == 0 ? a->token : NULL, cause, w->arg);
		free(w);
	}
}

static void
on_timer(uv_timer_t *t)
{
	struct auth *a = t->data;

	if (a->inflight == NULL)
		start_refresh(a, TOKEN_TIMEOUT_MS);
}

/* What an access token may hold: RFC 6750's characters, and a bound an HTTP header takes. */
static bool
token_shape(const char *t)
{
	size_t n = strlen(t);

	return n > 0 && n <= AUTH_TOKEN_MAX &&
	    strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/=") == n;
}

/*
 * A 200 answer: a token and its life, or -EACCES (an endpoint that answers
 * so will answer so again: not worth retrying) with a cause naming it.
 */
static int
take_token(struct auth *a, const char *where, const char *body, size_t len, char **cause)
{
	json_t *v = NULL;
	const char *tok, *type, *bad = NULL;
	char *why = NULL;
	int64_t life = 0, now = clock_now_ms(a->clock), margin;

	if (jx_parse(body, len, &v, &why) != 0) {
		*cause = xasprintf(
		    "the token endpoint %s answered without a usable token: not JSON (%s)", where,
		    why);
		free(why);
		return -EACCES;
	}
	if (!json_is_object(v))
		bad = "the answer is not a JSON object";
	else if ((tok = jx_str(v, "access_token")) == NULL || !token_shape(tok))
		bad =
		    "'access_token' is not a token (a string of at most 4096 URL-safe characters)";
	else if (jx_int64(json_object_get(v, "expires_in"), &life) != 0 || life < 1 ||
	    life > TOKEN_LIFE_MAX_S)
		bad = "'expires_in' is not a number of seconds from 1 to 86400";
	else if ((type = jx_str(v, "token_type")) != NULL && strcasecmp(type, "Bearer") != 0)
		bad = "'token_type' is not Bearer";
	if (bad != NULL) {
		*cause = xasprintf(
		    "the token endpoint %s answered without a usable token: %s", where, bad);
		json_decref(v);
		return -EACCES;
	}
	set_secret(&a->token, tok);
	a->expires_ms = now + life * 1000;
	a->refreshes++;
	/* Renew ahead of expiry: five minutes, or a quarter of a short life. */
	margin = life * 1000 / 4 < REFRESH_MARGIN_MS ? life * 1000 / 4 : REFRESH_MARGIN_MS;
	uv_timer_start(&a->timer, on_timer, clock_timer_ms(a->clock, life * 1000 - margin), 0);
	json_decref(v);
	return 0;
}

static void
on_token(const struct http_response *r, void *arg)
{
	struct auth *a = arg;
	const char *where = a->kind == AUTH_METADATA ? a->metadata_url : a->token_uri;
	char *cause = NULL;
	int error = 0;

	a->inflight = NULL;
	if (r->error != 0) {
		if (a->kind == AUTH_METADATA && !a->metadata_seen) {
			/* The probe: nothing answers, so this is not a VM. */
			cause = xasprintf(
			    "no credentials found: GOOGLE_APPLICATION_CREDENTIALS is not "
			    "set, there is no gcloud application-default file, and %s does "
			    "not answer (%s); %s",
			    a->source, r->error_text, LOGIN_HINT);
			error = -EACCES;
		} else {
			cause = xasprintf(
			    "cannot reach the token endpoint %s: %s", where, r->error_text);
			error = -EAGAIN;
		}
	} else if (r->status >= 500 || r->status == 429) {
		cause = xasprintf("the token endpoint %s answered HTTP %ld", where, r->status);
		error = -EAGAIN;
	} else if (r->status != 200) {
		json_t *v = NULL;
		const char *e = NULL, *d = NULL;

		if (jx_parse(r->body, r->len, &v, NULL) == 0) {
			e = jx_str(v, "error");
			d = jx_str(v, "error_description");
		}
		cause = xasprintf("the token endpoint %s refused the credentials of %s (HTTP %ld: "
		                  "%s%s%s); %s",
		    where, a->source, r->status, e != NULL ? e : "no error code",
		    d != NULL ? ": " : "", d != NULL ? d : "", LOGIN_HINT);
		json_decref(v);
		error = -EACCES;
	} else {
		a->metadata_seen = true;
		error = take_token(a, where, r->body, r->len, &cause);
	}
	if (error != 0 && a->waiters == NULL) {
		/* A refresh ahead of time failed: the token still works; try again soon. */
		log_warnx("auth: %s", cause);
		if (a->token != NULL)
			uv_timer_start(&a->timer, on_timer, 30000, 0);
	}
	deliver(a, error, cause);
	free(cause);
}

static char *
jwt_assertion(struct auth *a)
{
	int64_t now = clock_now_ms(a->clock) / 1000;
	json_t *h = jx_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
	json_t *c = jx_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", a->account, "scope", a->scope,
	    "aud", a->token_uri, "iat", (json_int_t)now, "exp", (json_int_t)(now + JWT_LIFE_S));
	char *jwt = NULL;

	if (a->key_id != NULL)
		json_object_set_new(h, "kid", json_string(a->key_id));
	if (jwt_sign_rs256(a->key, h, c, &jwt) != 0)
		fatalx("auth: cannot sign a JWT with the key of %s", a->source);
	json_decref(h);
	json_decref(c);
	return jwt;
}

static void
start_refresh(struct auth *a, int64_t timeout_ms)
{
	static const char *form_hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	static const char *meta_hdr[] = {"Metadata-Flavor: Google", NULL};
	struct http_request req = {0};
	char *body = NULL;

	uv_timer_stop(&a->timer);
	req.timeout_ms = timeout_ms;
	req.max_response = TOKEN_ANSWER_MAX;
	switch (a->kind) {
	case AUTH_SERVICE_ACCOUNT: {
		char *jwt = jwt_assertion(a);

		body = xasprintf(
		    "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer"
		    "&assertion=%s",
		    jwt);
		free(jwt);
		req.method = "POST";
		req.url = a->token_uri;
		req.headers = form_hdr;
		break;
	}
	case AUTH_USER: {
		char *id = url_encode(a->client_id), *secret = url_encode(a->client_secret);
		char *refresh = url_encode(a->refresh_token);

		body = xasprintf("grant_type=refresh_token&client_id=%s&client_secret=%s"
		                 "&refresh_token=%s",
		    id, secret, refresh);
		explicit_bzero(secret, strlen(secret));
		explicit_bzero(refresh, strlen(refresh));
		free(id);
		free(secret);
		free(refresh);
		req.method = "POST";
		req.url = a->token_uri;
		req.headers = form_hdr;
		break;
	}
	case AUTH_METADATA:
		req.method = "GET";
		req.url = a->metadata_url;
		req.headers = meta_hdr;
		if (!a->metadata_seen && timeout_ms > a->probe_ms)
			req.timeout_ms = a->probe_ms;
		break;
	}
	if (body != NULL) {
		req.body = body;
		req.len = strlen(body);
	}
	if (http_send(a->http, &req, on_token, a, &a->inflight) != 0) {
		char *cause = xasprintf("cannot send a token request to %s", req.url);

		a->inflight = NULL;
		deliver(a, -EACCES, cause);
		free(cause);
	}
	if (body != NULL) {
		explicit_bzero(body, strlen(body));
		free(body);
	}
}

void
auth_refresh(struct auth *a, int64_t deadline_ms, auth_cb *cb, void *arg)
{
	struct waiter *w = xcalloc(1, sizeof *w);
	int64_t left = deadline_ms - clock_now_ms(a->clock);

	w->cb = cb;
	w->arg = arg;
	w->next = a->waiters;
	a->waiters = w;
	if (a->inflight == NULL)
		start_refresh(a,
		    left < 1000                   ? 1000
		        : left > TOKEN_TIMEOUT_MS ? TOKEN_TIMEOUT_MS
		                                  : left);
}

void
auth_cancel(struct auth *a, void *arg)
{
	struct waiter **p = &a->waiters;

	while (*p != NULL) {
		if ((*p)->arg == arg) {
			struct waiter *w = *p;

			*p = w->next;
			free(w);
		} else {
			p = &(*p)->next;
		}
	}
}
