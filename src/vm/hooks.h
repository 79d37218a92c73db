/*
 * Hooks: the user's commands, run when a VM is READY (its components can move
 * there), when it stops being READY (they are local again) and when the
 * pressure level changes. Run without a shell (the command is split into
 * arguments, nothing is interpreted but the placeholders {event}, {name},
 * {ip}, {endpoint}, {components}, {reason} and {level} in each argument),
 * with SPILLWAY_EVENT, SPILLWAY_VM_NAME, SPILLWAY_VM_IP,
 * SPILLWAY_ENDPOINT, SPILLWAY_COMPONENTS, SPILLWAY_REASON (and SPILLWAY_LEVEL
 * for pressure) in their environment, killed after a timeout, their output
 * logged line by line.
 */
#ifndef SPILLWAY_HOOKS_H
#define SPILLWAY_HOOKS_H

#include <stdint.h>

#include <uv.h>

struct hook_env {
	const char *event; /* "ready", "gone", "pressure" */
	const char *vm_name;
	const char *vm_ip;
	const char *endpoint;
	const char *components;
	const char *reason;
	const char *level;
};

struct hooks;

struct hooks *hooks_new(uv_loop_t *, int64_t timeout_ms);
/* For the hooks started from now on (a reloaded hooks.timeout_s). */
void hooks_set_timeout(struct hooks *, int64_t timeout_ms);
/* Start the command (empty: nothing). 0, or -errno with a cause (it did not start). */
int hook_run(
    struct hooks *, const char *name, const char *command, const struct hook_env *, char **cause);
/* One argument with its placeholders replaced (an unknown {word} stays). Caller frees. */
char *hook_expand(const char *word, const struct hook_env *);
/* Hear each line a hook writes as well (it is logged either way). */
typedef void hook_output_cb(const char *hook, const char *line, void *arg);
void hooks_on_output(struct hooks *, hook_output_cb *, void *arg);
/* Hooks started and how they ended, for tests and status. */
void hooks_counts(const struct hooks *, long *started, long *failed);
/* Kill what still runs and free once the loop lets go. */
void hooks_free(struct hooks *);

#endif
