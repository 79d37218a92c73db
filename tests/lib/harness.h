/*
 * Helpers for the end-to-end tests: start `spillway emulator` as a real
 * process on a private port and directory, talk to it with libcurl (a client
 * that is not the code under test), sign service-account JWTs, and validate
 * every answer against the Compute discovery schemas.
 *
 * Include after cmocka.h. Every helper fails the current test on error.
 */
#ifndef SPILLWAY_TEST_HARNESS_H
#define SPILLWAY_TEST_HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct emu {
	pid_t pid;
	int port;
	char url[64];
	char dir[256];
	char creds[300];      /* service_account key file */
	char user_creds[300]; /* authorized_user file */
	char log[300];        /* --request-log */
	char *token;
};

struct resp {
	long status;
	char *body;
	size_t len;
	json_t *json; /* NULL when the body is not JSON */
	char *headers;
	double seconds;
};

/* Start an emulator with these extra arguments (NULL-terminated, may be NULL). */
void emu_start(struct emu *, const char *const *args);
/* SIGTERM; asserts a clean exit (status 0) and removes its directory. */
void emu_stop(struct emu *);
/* A bearer token through the JWT-bearer grant (cached in emu->token). */
const char *emu_token(struct emu *);
/* "URL/compute/v1/projects/spillway-emulator/zones/ZONE/" + tail */
char *compute_url(const struct emu *, const char *zone, const char *tail);

/* One HTTP call. extra_headers NULL-terminated, may be NULL; source_ip may be NULL. */
void http_call(struct resp *, const char *method, const char *url, const char *token,
    const char *body, const char *const *extra_headers, const char *source_ip);
/* https to a VM's agent: its key pinned ("sha256//..."), our certificate and key (PEM). */
struct tls_peer {
	const char *pin, *cert_pem, *key_pem;
};
/* The same; a refused handshake is status 0 with curl's words as the body. */
void https_call(struct resp *, const char *method, const char *url, const char *body,
    const char *const *extra_headers, const struct tls_peer *);
void resp_free(struct resp *);
/* GET/POST/DELETE with the emulator's token; the answer must be JSON. */
json_t *api(struct emu *, const char *method, const char *url, const char *body, long expect);

/* Strict validation against data/gce-schema.json; fails the test with the reason. */
void expect_schema(const char *type, const json_t *);
/* Google's error envelope with this code and reason. */
void expect_google_error(const json_t *, long code, const char *reason);

/* Poll GET url until its JSON has field == value (or the status is expect_status). */
json_t *wait_for_field(
    struct emu *, const char *url, const char *field, const char *value, int timeout_ms);
long wait_for_status(struct emu *, const char *url, long status, int timeout_ms);

/* An instance body for zone: Spot (action DELETE) or standard, one label key=value. */
json_t *instance_body(const char *zone, const char *name, const char *machine, bool spot,
    const char *label_key, const char *label_value);
/* The spillway binary run as a user would: its exit status and what it printed. */
struct cmd_run {
	int status;
	char *out;
	char *err;
};

/*
 * Run spillway with args, HOME and XDG_CONFIG_HOME set to home, and the extra
 * environment ("K=V", NULL-terminated, may be NULL).
 */
void run_spillway(
    struct cmd_run *, const char *home, const char *const *args, const char *const *env);
/* Any program (found on PATH), with the extra environment ("K=V", NULL-terminated, may be NULL). */
void run_program(struct cmd_run *, const char *const *argv, const char *const *env);
void cmd_run_free(struct cmd_run *);

/*
 * `spillway run --foreground` against an emulator: its credentials and
 * endpoints, a state directory of its own (kept across restarts of the same
 * struct), standard error in STATE/daemon.log. args and env are extra
 * (NULL-terminated, may be NULL); env comes after the emulator's.
 */
struct dmn {
	pid_t pid;
	char state[256];
	char log[300];
};

void dmn_init(struct dmn *);
void dmn_start(struct dmn *, const struct emu *, const char *const *args, const char *const *env);
/* A request to its control API, on its socket (path: "/v1/vms"). */
void dmn_call(struct dmn *, struct resp *, const char *method, const char *path, const char *body);
/* Signal it and wait; returns its exit status (128 + signal if killed). */
int dmn_stop(struct dmn *, int sig);
/* Print its log to stderr (for a failing test) and remove its directory. */
void dmn_dump(const struct dmn *);
void dmn_cleanup(struct dmn *);

char *read_text(const char *path);
/* Each of the NULL-terminated texts appears in text, after the one before it. */
void expect_in_order(const char *text, const char *const *order);
/* A pressure trace: high_s seconds of heavy stall (CRITICAL), then calm_s of none. */
void write_trace(const char *path, int high_s, int calm_s);
/* Replace the emulator's faults (its admin API), "" for none. */
void emu_set_faults(struct emu *, const char *spec);
/* Whether something accepts TCP connections on 127.0.0.1:port. */
bool tcp_accepts(int port);
/* The emulator's instances of every zone, from its admin API: [{name, zone, status, metadata}]. */
json_t *emu_instances(struct emu *);
int64_t now_ms(void);
void sleep_ms(int);

/*
 * A server on 127.0.0.1 (a port of its own) that answers every request the
 * same, then closes: head (status line and headers), then the body, text
 * when set, else body_len fill bytes. For answers no real server sends.
 */
#define CANNED_JSON "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
struct canned {
	int fd;
	int port;
	pthread_t thread;
	const char *head;
	size_t body_len;
	char fill;
	const char *text;
	int served;
};
void canned_start(struct canned *, const char *head, size_t body_len, char fill);
void canned_stop(struct canned *);

#endif
