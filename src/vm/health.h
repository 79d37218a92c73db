/*
 * What a health answer says, pure: a backend's own health endpoint (the boot
 * probe) or the VM's agent (each pass, docs/startup.md). Any 2xx is healthy
 * unless its JSON "status" is a word that means not (fail, down, unhealthy,
 * starting and the like, in any case); an empty or non-JSON 2xx body is
 * healthy. The agent's "preempted" (status or flag) wins over all.
 */
#ifndef SPILLWAY_HEALTH_H
#define SPILLWAY_HEALTH_H

#include <stddef.h>
#include <stdint.h>

enum health_verdict { HEALTH_BAD, HEALTH_OK, HEALTH_PREEMPTED };

struct health_answer {
	enum health_verdict verdict;
	int64_t idle_s; /* the answer's "idle_seconds", or -1 */
	int64_t boot_s; /* the agent's "boot.updated": when the install last moved, or -1 */
	char step[24];  /* the agent's "boot.step": the startup script's ("baked"), or "" */
	char installed[40]; /* the agent's "installed": what the disk holds (startup.h), or "" */
	char why[128];      /* HEALTH_BAD: what the answer said, one line */
};

/* From an HTTP status (0: no answer) and its body. */
void health_read(long status, const char *body, size_t len, struct health_answer *out);

#endif
