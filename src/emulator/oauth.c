/*
 * Google's OAuth 2.0 token endpoint, as service-account keys and gcloud's
 * user credentials use it, and the bearer check in front of every Compute
 * call. The emulator trusts one RSA key (its own; written out by
 * --write-credentials) and one refresh token (--write-user-credentials).
 * Times are the emulator's clock, with Google's five minutes of skew.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/b64.h"
#include "util/buf.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"

#define SKEW_S         300
#define JWT_LIFE_MAX_S 3600
#define GOOGLE_REALM   "Bearer realm=\"https://accounts.google.com/\""

static void
oauth_fail(struct rq *rq, unsigned status, const char *error, const char *description)
{
	emu_reply_json(
	    rq, status, jx_pack("{s:s, s:s}", "error", error, "error_description", description));
}

json_t *
oauth_issue(struct emulator *emu, const char *user)
{
	unsigned char r[32];
	char *b, *tok;
	int64_t now = emu_now_ms(emu), life = emu->faults.token_lifetime_s;
	json_t *v;

	/* Forget expired tokens now and then; the map is a hash table. */
	if (json_object_size(emu->tokens) > 256) {
		const char *k;
		json_t *exp;
		void *tmp;

		json_object_foreach_safe (emu->tokens, tmp, k, exp)
			if (json_integer_value(json_object_get(exp, "exp")) <= now)
				json_object_del(emu->tokens, k);
	}
	random_bytes(r, sizeof r);
	b = b64url_encode(r, sizeof r);
	tok = xasprintf("ya29.%s", b);
	/* Who it was issued to: operations name their caller (an operation's `user`). */
	json_object_set_new(emu->tokens, tok,
	    jx_pack("{s:I, s:s}", "exp", (json_int_t)(now + life * 1000), "user", user));
	v = jx_pack("{s:s, s:I, s:s}", "access_token", tok, "expires_in", (json_int_t)life,
	    "token_type", "Bearer");
	free(b);
	free(tok);
	return v;
}

void
oauth_expire_all(struct emulator *emu)
{
	json_object_clear(emu->tokens);
}

/* Verify an RS256 JWT from the trusted key; NULL when good, else why not. */
static const char *
check_jwt(struct emulator *emu, const char *tok, bool grant, json_t **claims_out)
{
	json_t *header, *claims;
	char *cause = NULL;
	const char *why = NULL, *alg, *kid, *iss;
	int64_t now = emu_now_ms(emu) / 1000, iat, exp;

	if (jwt_decode(tok, &header, &claims, &cause) != 0) {
		free(cause);
		return "Invalid JWT: the assertion is not a well-formed JWT.";
	}
	alg = jx_str(header, "alg");
	kid = jx_str(header, "kid");
	iss = jx_str(claims, "iss");
	if (alg == NULL || strcmp(alg, "RS256") != 0)
		why = "Invalid JWT: the algorithm must be RS256.";
	else if ((kid != NULL && strcmp(kid, emu->key_id) != 0) ||
	    jwt_verify_rs256(tok, emu->key) != 0)
		why = "Invalid JWT Signature.";
	else if (iss == NULL || strcmp(iss, emu->client_email) != 0)
		why = "Invalid grant: account not found";
	else if (jx_int64(json_object_get(claims, "iat"), &iat) != 0 ||
	    jx_int64(json_object_get(claims, "exp"), &exp) != 0 || iat > now + SKEW_S ||
	    exp <= now - SKEW_S || exp - iat > JWT_LIFE_MAX_S || exp <= iat)
		why = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
		      "reasonable timeframe. Check your iat and exp values in the JWT claim.";
	else if (grant && jx_str(claims, "scope") == NULL &&
	    jx_str(claims, "target_audience") == NULL)
		why = "Invalid OAuth scope or ID token audience provided.";
	json_decref(header);
	if (why == NULL && claims_out != NULL)
		*claims_out = claims;
	else
		json_decref(claims);
	return why;
}

void
oauth_token(struct rq *rq)
{
	struct emulator *emu = rq->emu;
	const char *grant;
	json_t *form;

	if (strcmp(httpd_req_method(rq->req), "POST") != 0) {
		oauth_fail(rq, 405, "invalid_request", "The token endpoint takes POST requests.");
		return;
	}
	form = emu_form(httpd_req_body(rq->req, NULL, NULL));
	grant = jx_str(form, "grant_type");
	if (grant != NULL && strcmp(grant, "urn:ietf:params:oauth:grant-type:jwt-bearer") == 0) {
		const char *assertion = jx_str(form, "assertion"), *why, *aud;
		json_t *claims = NULL;
		char *ours = xasprintf("%s/token", emu->url);

		if (assertion == NULL)
			why = "Missing required parameter: assertion";
		else if ((why = check_jwt(emu, assertion, true, &claims)) == NULL) {
			aud = jx_str(claims, "aud");
			if (aud == NULL ||
			    (strcmp(aud, ours) != 0 &&
			        strcmp(aud, "https://oauth2.googleapis.com/token") != 0))
				why = "Invalid JWT: Failed audience check.";
		}
		json_decref(claims);
		free(ours);
		if (why != NULL) {
			log_debug("emulator: token refused: %s", why);
			oauth_fail(rq, 400, "invalid_grant", why);
		} else {
			emu_reply_json(rq, 200, oauth_issue(emu, emu->client_email));
		}
	} else if (grant != NULL && strcmp(grant, "refresh_token") == 0) {
		const char *id = jx_str(form, "client_id"), *secret = jx_str(form, "client_secret");
		const char *refresh = jx_str(form, "refresh_token");

		if (id == NULL || secret == NULL || strcmp(id, emu->user_client_id) != 0 ||
		    strcmp(secret, emu->user_client_secret) != 0)
			oauth_fail(rq, 401, "invalid_client", "The OAuth client was not found.");
		else if (refresh == NULL || strcmp(refresh, emu->user_refresh_token) != 0)
			oauth_fail(rq, 400, "invalid_grant", "Token has been expired or revoked.");
		else
			emu_reply_json(rq, 200, oauth_issue(emu, EMULATOR_USER));
	} else {
		char *d = xasprintf("Invalid grant_type: %s", grant != NULL ? grant : "");

		oauth_fail(rq, 400, "unsupported_grant_type", d);
		free(d);
	}
	json_decref(form);
}

int
oauth_check(struct rq *rq)
{
	struct emulator *emu = rq->emu;
	const char *auth = httpd_req_header(rq->req, "Authorization"), *tok;
	json_t *issued;

	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) {
		httpd_set_header(rq->req, "WWW-Authenticate", GOOGLE_REALM);
		emu_error_status(rq, 401, "required", "UNAUTHENTICATED",
		    "Request is missing required authentication credential. Expected OAuth 2 access "
		    "token, login cookie or other valid authentication credential. See "
		    "https://developers.google.com/identity/sign-in/web/devconsole-project.");
		return -EPERM;
	}
	tok = auth + 7;
	issued = json_object_get(emu->tokens, tok);
	if (issued != NULL &&
	    json_integer_value(json_object_get(issued, "exp")) > emu_now_ms(emu)) {
		rq->user = xstrdup(jx_str(issued, "user"));
		return 0;
	}
	/* Google's client libraries may send a self-signed JWT instead of a token. */
	if (issued == NULL && strchr(tok, '.') != NULL && strncmp(tok, "ya29.", 5) != 0 &&
	    check_jwt(emu, tok, false, NULL) == NULL) {
		rq->user = xstrdup(emu->client_email);
		return 0;
	}
	httpd_set_header(rq->req, "WWW-Authenticate", GOOGLE_REALM);
	emu_error_status(rq, 401, "authError", "UNAUTHENTICATED",
	    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
	    "cookie or other valid authentication credential. See "
	    "https://developers.google.com/identity/sign-in/web/devconsole-project.");
	return -EPERM;
}
