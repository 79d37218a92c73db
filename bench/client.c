/*
 * bench/client: the Compute Engine client against the emulator, no added
 * latency. Prints calls/s for get, list of 1 and list of 500 instances; the
 * client's own added time per call (its median and p99 minus those of a bare
 * libcurl call of the same request on a kept-alive connection); connections
 * opened and token refreshes per 1,000 calls.
 *
 *	usage: client [SPILLWAY_BINARY] [CALLS]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <uv.h>

#include "cloud/auth.h"
#include "cloud/gce.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"
#include "figure.h"

static uv_loop_t loop;
static struct clock clk;
static struct cloud *cloud;
static bool done;
static int failures;

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
percentile(double *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[(int)(p * (n - 1))];
}

static void
on_op(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	failures += e->code != CLOUD_OK;
	done = true;
}

static void
on_get(const struct cloud_error *e, const struct cloud_instance *in, void *arg)
{
	failures += e->code != CLOUD_OK;
	done = true;
}

static void
on_list(const struct cloud_error *e, const struct cloud_instance *l, size_t n, void *arg)
{
	failures += e->code != CLOUD_OK || n != *(size_t *)arg;
	done = true;
}

static void
wait_done(void)
{
	while (!done)
		uv_run(&loop, UV_RUN_ONCE);
	done = false;
}

static size_t
discard(char *p, size_t s, size_t n, void *arg)
{
	return s * n;
}

/* The same GET with bare libcurl, one kept-alive connection: the emulator's own time. */
static void
baseline(const char *url, const char *token, double *us, int n)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char auth[4096];

	snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
	h = curl_slist_append(h, auth);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_perform(c);
	for (int i = 0; i < n; i++) {
		double t0 = now_us();

		curl_easy_perform(c);
		us[i] = now_us() - t0;
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
}

int
main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : "build/spillway";
	int calls = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 2000;
	char dir[] = "/tmp/spillway-bench-XXXXXX", creds[256], line[128] = "", *ep, *cause = NULL;
	struct http_client *http;
	struct auth *auth;
	struct gce_opts o;
	struct auth_sources src = {.gcloud_dir = "/nonexistent"};
	double *t = xcalloc((size_t)calls, sizeof *t), *b = xcalloc((size_t)calls, sizeof *b);
	const char *zone_b[] = {"us-central1-b", NULL}, *zone_c[] = {"us-central1-c", NULL};
	size_t want1 = 1, want500 = 500;
	int out[2], port, status;
	long total = 0, requests, retries;
	pid_t pid;

	jx_init();
	if (mkdtemp(dir) == NULL || pipe(out) != 0)
		return 1;
	snprintf(creds, sizeof creds, "%s/sa.json", dir);
	if ((pid = fork()) == 0) {
		dup2(out[1], 1);
		execl(bin, "spillway", "emulator", "--boot-ms", "3600000", "--write-credentials",
		    creds, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	if (read(out[0], line, sizeof line - 1) <= 0 || strrchr(line, ':') == NULL)
		return 1;
	port = (int)strtol(strrchr(line, ':') + 1, NULL, 10);
	ep = xasprintf("http://127.0.0.1:%d/compute/v1/", port);

	uv_loop_init(&loop);
	clock_real(&clk);
	http = http_client_new(&loop);
	src.credentials_file = creds;
	if (auth_new(&loop, http, &clk, &src, &auth, &cause) != 0) {
		fprintf(stderr, "bench: %s\n", cause);
		return 1;
	}
	gce_opts_default(&o);
	o.endpoint = ep;
	if (gce_new(&loop, &clk, http, auth, &o, &cloud, &cause) != 0) {
		fprintf(stderr, "bench: %s\n", cause);
		return 1;
	}
	/* 500 instances in zone b, one in zone c. */
	for (int i = 0; i < 501; i++) {
		static const struct cloud_kv labels[] = {{"spillway-owner", "bench"}};
		char name[32], id[UUID_LEN];
		struct cloud_instance_spec s = {.zone = i < 500 ? "us-central1-b" : "us-central1-c",
		    .machine_type = "e2-small",
		    .spot = true,
		    .image = "projects/debian-cloud/global/images/family/debian-12",
		    .labels = labels,
		    .nlabels = 1,
		    .external_ip = true};

		snprintf(name, sizeof name, "bench-%04d", i);
		s.name = name;
		uuid_v4(id);
		cloud->ops->create(cloud, &s, id, clock_now_ms(&clk) + 30000, on_op, NULL);
		wait_done();
		total++;
	}

	printf("bench/client: spillway's Compute Engine client against the emulator, no added "
	       "latency\n");
	{
		double t0 = now_us();

		for (int i = 0; i < calls; i++) {
			double s = now_us();

			cloud->ops->get(cloud, "us-central1-b", "bench-0042",
			    clock_now_ms(&clk) + 30000, on_get, NULL);
			wait_done();
			t[i] = now_us() - s;
		}
		total += calls;
		printf("  get              %8.0f calls/s\n", calls / ((now_us() - t0) / 1e6));
		figure("client gets", calls / ((now_us() - t0) / 1e6), "/s");
	}
	{
		char *url = xasprintf("%sprojects/spillway-emulator/zones/us-central1-b/instances/"
		                      "bench-0042",
		    ep);
		double tm = percentile(t, calls, 0.5), tp = percentile(t, calls, 0.99);

		baseline(url, auth_cached(auth), b, calls);
		printf("  added per get    median %.0f us (%.0f vs %.0f bare libcurl), p99 %.0f us "
		       "(%.0f vs %.0f)\n",
		    tm - percentile(b, calls, 0.5), tm, percentile(b, calls, 0.5),
		    tp - percentile(b, calls, 0.99), tp, percentile(b, calls, 0.99));
		figure("client time added per get (median)", tm - percentile(b, calls, 0.5), "us");
		free(url);
	}
	{
		int n = calls / 2;
		double t0 = now_us();

		for (int i = 0; i < n; i++) {
			cloud->ops->list(cloud, zone_c, "spillway-owner", "bench",
			    clock_now_ms(&clk) + 30000, on_list, &want1);
			wait_done();
		}
		total += n;
		printf("  list of 1        %8.0f calls/s\n", n / ((now_us() - t0) / 1e6));
	}
	{
		int n = calls / 20;
		double t0 = now_us();

		for (int i = 0; i < n; i++) {
			cloud->ops->list(cloud, zone_b, "spillway-owner", "bench",
			    clock_now_ms(&clk) + 30000, on_list, &want500);
			wait_done();
		}
		total += n;
		printf("  list of 500      %8.1f calls/s  (one page of 500)\n",
		    n / ((now_us() - t0) / 1e6));
		figure("client lists of 500", n / ((now_us() - t0) / 1e6), "/s");
	}
	gce_stats(cloud, &requests, &retries);
	printf("  connections      %8.2f per 1,000 calls (%ld for %ld HTTP requests)\n",
	    1000.0 * http_client_connects(http) / (double)requests, http_client_connects(http),
	    requests);
	printf("  token refreshes  %8.2f per 1,000 calls (%ld)\n",
	    1000.0 * auth_refreshes(auth) / (double)total, auth_refreshes(auth));
	printf("  failures %d, retries %ld\n", failures, retries);

	cloud->ops->free(cloud);
	auth_free(auth);
	http_client_free(http);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	{
		char *cmd = xasprintf("rm -rf '%s'", dir);

		if (system(cmd) != 0)
			failures++;
		free(cmd);
	}
	free(ep);
	free(t);
	free(b);
	return failures == 0 ? 0 : 1;
}
