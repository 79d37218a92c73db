/*
 * A local Compute Engine: an HTTP server on the libuv loop that speaks the
 * v1 paths and JSON of instances, zone operations and machine types, an OAuth
 * token endpoint, a metadata server, a billing-catalog page, and a simulated
 * backend ("guest") on its own loopback address for every running instance.
 * See docs/emulator.md for what it does and how faults are injected.
 *
 * It runs inside `spillway emulator` and inside `spillway demo`; it owns its
 * state and answers on the loop thread only.
 */
#ifndef SPILLWAY_EMULATOR_H
#define SPILLWAY_EMULATOR_H

#include <stdint.h>

#include <uv.h>

#include "util/clock.h"

struct emulator;

struct emulator_opts {
	const char *host; /* listen address, "127.0.0.1" */
	int port;         /* 0: any free port */
	const char *project;
	const char *zones;         /* comma-separated */
	int64_t boot_ms;           /* insert -> RUNNING (half PROVISIONING, half STAGING) */
	int64_t stop_ms;           /* STOPPING -> gone or TERMINATED */
	int64_t start_ms;          /* a stopped VM's start -> RUNNING; < 0: as boot_ms */
	int64_t resume_ms;         /* a suspended VM's resume -> RUNNING; < 0: as boot_ms */
	int64_t guest_boot_ms;     /* RUNNING -> the guest's /health answers 200, installed */
	int64_t install_ms; /* more, to install the backend on a disk that does not hold it */
	int64_t wait_ms;           /* the longest zoneOperations.wait holds (Google: 2 min) */
	int64_t preempt_notice_ms; /* preemption notice before the stop (Google: 30 s) */
	int guest_port;            /* the backend port of every guest */
	int agent_port;            /* the watchdog agent's port of every guest */
	const char *faults;        /* fault spec (see faults.h), or NULL */
	const char *request_log;   /* append every request as a JSON line, or NULL */
	const char *firewall_source; /* a rule opens the agent port to this range; NULL: none */
	const char *firewall_ports;  /* the ports it opens instead ("8011,8010"); NULL: the agent's */
	const char *denied;          /* permissions testIamPermissions leaves out (comma-separated) */
	const char *guest_agent;     /* data/spillway-agent.py run for each guest; NULL: built in */
	const char *guest_backend;   /* the command of each guest's backend; NULL: built in */
	uint64_t seed;             /* 0: random */
	const struct clock *clock; /* NULL: real time */
};

/* Defaults for every option; the caller overrides what it wants. */
void emulator_opts_default(struct emulator_opts *);
int emulator_new(uv_loop_t *, const struct emulator_opts *, struct emulator **, char **cause);
/* Answer what is pending, stop every server and free once the loop lets go. */
void emulator_free(struct emulator *);
int emulator_port(const struct emulator *);
/* "http://127.0.0.1:PORT" */
const char *emulator_url(const struct emulator *);
/* A service_account key file (JSON) that this emulator trusts; the caller frees it. */
char *emulator_service_account_json(const struct emulator *);
/* An authorized_user file (JSON) with a refresh token this emulator accepts. */
char *emulator_user_credentials_json(const struct emulator *);
/* Change the faults at run time; 0 or -EINVAL and a cause. */
int emulator_set_faults(struct emulator *, const char *spec, char **cause);

#endif
