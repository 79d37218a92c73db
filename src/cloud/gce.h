/*
 * Google Compute Engine behind the provider interface: REST v1 over the
 * libcurl-on-libuv client, authenticated with Application Default Credentials.
 */
#ifndef SPILLWAY_GCE_H
#define SPILLWAY_GCE_H

#include <stdint.h>

#include <uv.h>

#include "cloud/auth.h"
#include "cloud/provider.h"
#include "net/http.h"
#include "util/clock.h"

struct gce_opts {
	const char *endpoint; /* "https://compute.googleapis.com/compute/v1/" */
	const char *project;
	struct retry_policy retry;
	int64_t request_timeout_ms; /* one HTTP request, at most (waits get 130 s) */
	size_t max_response;        /* a larger answer is an error, not an allocation */
	uint64_t seed;              /* for the jitter; 0: random */
};

/* Defaults: Google's endpoint, retries from 500 ms doubling to 32 s, 8 attempts. */
void gce_opts_default(struct gce_opts *);
/* The provider uses (does not own) the loop, clock, HTTP client and credentials. */
int gce_new(uv_loop_t *, const struct clock *, struct http_client *, struct auth *,
    const struct gce_opts *, struct cloud **, char **cause);
/*
 * Another endpoint, project or retry policy (a reloaded configuration), for
 * the calls started from now on. 0, or -EINVAL and a cause (nothing changed).
 */
int gce_reconfigure(struct cloud *, const struct gce_opts *, char **cause);
/* HTTP requests made and retries among them, since the start. */
void gce_stats(const struct cloud *, long *requests, long *retries);

#endif
