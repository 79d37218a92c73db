/*
 * bench/emulator: how fast and how big the emulator is.
 *
 * Starts `spillway emulator` as its own process, inserts 1,000 (bench/run: 5,000) instances over
 * one kept-alive loopback connection, lets them all reach RUNNING (each with
 * its guest on its own address), then lists them all, 500 per page, again
 * and again. Prints inserts/s, lists/s (a list is both pages) and the
 * emulator's resident memory with 1,000 running instances.
 *
 *	usage: emulator [SPILLWAY_BINARY] [INSTANCES] [LIST_ROUNDS]
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "util/buf.h"
#include "util/jwt.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"
#include "figure.h"

#define ZONE "us-central1-a"

static CURL *curl;
static double http_s; /* time spent in HTTP calls, as curl measures them */
static long connects; /* connections opened */
static double page_bytes;
static struct buf body = BUF_INIT(64 << 20);
static char auth[2048];

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	buf_add(&body, p, size * n);
	return size * n;
}

/* One call on the shared handle: the connection stays open between calls. */
static long
call(const char *method, const char *url, const char *data)
{
	struct curl_slist *h = NULL;
	long status = 0;

	buf_reset(&body);
	h = curl_slist_append(h, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, data);
	if (data == NULL)
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	if (curl_easy_perform(curl) == CURLE_OK) {
		curl_off_t us = 0;
		long n = 0;

		curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &n);
		connects += n;
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME_T, &us);
		http_s += (double)us / 1e6;
	}
	curl_slist_free_all(h);
	return status;
}

static pid_t
start(const char *bin, const char *dir, int *port)
{
	char creds[256], line[128] = "";
	int out[2];
	pid_t pid;
	ssize_t n;

	snprintf(creds, sizeof creds, "%s/sa.json", dir);
	if (pipe(out) != 0)
		exit(1);
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* no emulator left behind, whatever happens */
		dup2(out[1], 1);
		close(out[0]);
		execl(bin, "spillway", "emulator", "--listen", "127.0.0.1:0", "--boot-ms", "2",
		    "--guest-boot-ms", "0", "--write-credentials", creds, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	n = read(out[0], line, sizeof line - 1);
	close(out[0]);
	if (n <= 0 || strrchr(line, ':') == NULL) {
		fprintf(stderr, "bench: the emulator did not start\n");
		exit(1);
	}
	*port = (int)strtol(strrchr(line, ':') + 1, NULL, 10);
	return pid;
}

static void
get_token(const char *dir, const char *base)
{
	char path[256], *text, *cause = NULL, *jwt = NULL, *form, url[128];
	json_t *key, *tok;
	EVP_PKEY *pk;
	long now = (long)time(NULL);

	snprintf(path, sizeof path, "%s/sa.json", dir);
	if (read_file(path, 1 << 16, &text, NULL) != 0 ||
	    jx_parse(text, strlen(text), &key, &cause) != 0 ||
	    (pk = pem_read_private(jx_str(key, "private_key"), &cause)) == NULL) {
		fprintf(stderr, "bench: cannot read the emulator's key\n");
		exit(1);
	}
	json_t *h = jx_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
	json_t *c = jx_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", jx_str(key, "client_email"),
	    "scope", "https://www.googleapis.com/auth/compute", "aud", jx_str(key, "token_uri"),
	    "iat", (json_int_t)now, "exp", (json_int_t)now + 3600);
	jwt_sign_rs256(pk, h, c, &jwt);
	form =
	    xasprintf("grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=%s", jwt);
	snprintf(url, sizeof url, "%s/token", base);
	call("POST", url, form);
	if (jx_parse(body.data, body.len, &tok, &cause) != 0 || !jx_str(tok, "access_token")) {
		fprintf(stderr, "bench: no token\n");
		exit(1);
	}
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", jx_str(tok, "access_token"));
	json_decref(tok);
	json_decref(h);
	json_decref(c);
	json_decref(key);
	EVP_PKEY_free(pk);
	free(jwt);
	free(form);
	free(text);
}

/* All pages of the zone's instances; returns how many there were. */
static size_t served; /* of the last list: instances whose guest has an address */

static size_t
list_all(const char *base, const char *filter, int *pages)
{
	char *token = NULL;
	size_t total = 0, i;
	json_t *it;

	*pages = 0;
	served = 0;
	do {
		char *url = xasprintf("%s/compute/v1/projects/spillway-emulator/zones/" ZONE
		                      "/instances?maxResults=500%s%s%s%s",
		    base, filter ? "&filter=" : "", filter ? filter : "",
		    token ? "&pageToken=" : "", token ? token : "");
		json_t *v = NULL;

		free(token);
		token = NULL;
		if (call("GET", url, NULL) != 200 || jx_parse(body.data, body.len, &v, NULL) != 0) {
			fprintf(stderr, "bench: list failed: %s\n", buf_str(&body));
			exit(1);
		}
		total += json_array_size(json_object_get(v, "items"));
		json_array_foreach (json_object_get(v, "items"), i, it)
			served += jx_str(it, "networkInterfaces.0.accessConfigs.0.natIP") != NULL;
		page_bytes = (double)body.len;
		if (jx_str(v, "nextPageToken") != NULL)
			token = xstrdup(jx_str(v, "nextPageToken"));
		(*pages)++;
		json_decref(v);
		free(url);
	} while (token != NULL);
	return total;
}

int
main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : "build/spillway";
	int count = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 1000;
	int rounds = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 50;
	char dir[] = "/tmp/spillway-bench-XXXXXX", base[64], *url, *cmd;
	double t0, insert_s, list_s, list_http_s;
	long idle_kb, full_kb;
	int port, pages = 0, status;
	pid_t pid;

	jx_init();
	if (mkdtemp(dir) == NULL)
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	curl = curl_easy_init();
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	pid = start(bin, dir, &port);
	snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
	get_token(dir, base);
	idle_kb = proc_status(pid, "VmRSS:");

	url = xasprintf("%s/compute/v1/projects/spillway-emulator/zones/" ZONE "/instances", base);
	t0 = now_s();
	for (int i = 0; i < count; i++) {
		char *b = xasprintf(
		    "{\"name\":\"bench-%05d\",\"machineType\":\"zones/" ZONE
		    "/machineTypes/e2-small\","
		    "\"disks\":[{\"boot\":true,\"initializeParams\":{\"sourceImage\":"
		    "\"projects/debian-cloud/global/images/family/debian-12\"}}],"
		    "\"networkInterfaces\":[{\"accessConfigs\":[{\"type\":\"ONE_TO_ONE_NAT\"}]}],"
		    "\"labels\":{\"managed-by\":\"spillway\"},\"scheduling\":{\"provisioningModel\":"
		    "\"SPOT\",\"instanceTerminationAction\":\"DELETE\"}}",
		    i);

		if (call("POST", url, b) != 200) {
			fprintf(stderr, "bench: insert %d failed: %s\n", i, buf_str(&body));
			return 1;
		}
		free(b);
	}
	insert_s = now_s() - t0;
	/* Wait until every instance runs, with its guest serving. */
	while (list_all(base, "status%20%3D%20RUNNING", &pages) < (size_t)count)
		usleep(20000);
	full_kb = proc_status(pid, "VmRSS:");
	if (served < (size_t)count) {
		fprintf(stderr, "bench/emulator: %zu of %d guests are served\n", served, count);
		return 1;
	}

	t0 = now_s();
	http_s = 0;
	for (int r = 0; r < rounds; r++)
		if (list_all(base, NULL, &pages) != (size_t)count)
			return 1;
	list_s = now_s() - t0;
	list_http_s = http_s;

	printf("bench/emulator: %d instances, %ld connection(s) for %d+ calls (keep-alive)\n",
	    count, connects, count + rounds * pages);
	printf("  inserts/s                 %10.0f  (%d in %.2f s)\n", count / insert_s, count,
	    insert_s);
	printf("  lists/s (all %d, %d/page) %7.1f  (%d pages each, %.2f ms per page over HTTP)\n",
	    count, 500, rounds / list_http_s, pages, list_http_s * 1000.0 / (rounds * pages));
	printf("  ... with the client's JSON parse %5.1f  lists/s, %.0f kB per page\n",
	    rounds / list_s, page_bytes / 1024.0);
	printf("  emulator RSS idle         %10ld kB\n", idle_kb);
	printf("  guests served             %10zu  (each on its own address)\n", served);
	figure("emulator inserts", count / insert_s, "/s");
	figure("emulator lists of every instance", rounds / list_http_s, "/s");
	figure("emulator RSS idle", (double)idle_kb / 1024, "MB");
	figure("emulator RSS with its instances", (double)full_kb / 1024, "MB");
	printf("  emulator RSS, %d running %7ld kB  (%.1f kB per instance with its guest)\n", count,
	    full_kb, (double)(full_kb - idle_kb) / count);

	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	free(cmd);
	free(url);
	buf_release(&body);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
