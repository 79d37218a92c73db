/*
 * A Compute Engine emulator in this process, for the commands that run a
 * daemon on it (run --provider emulator, demo) and the control API's fuzz
 * harness: its service account key in the state directory (0600), and where
 * the daemon finds it (daemon_opts.cloud_at). It knows the emulator and the
 * daemon's cloud endpoints; neither knows it. Stopped after the daemon is
 * freed.
 */
#ifndef SPILLWAY_LOCAL_EMULATOR_H
#define SPILLWAY_LOCAL_EMULATOR_H

#include <uv.h>

#include "vm/daemon.h"

struct clock;
struct config;
struct emulator;
struct emulator_opts;

struct local_emulator {
	struct emulator *emu;
	char *credentials;
	struct daemon_cloud at;
};

/* opts NULL: the defaults. 0, or -errno and a cause. */
int local_emulator_start(uv_loop_t *, const struct clock *, const struct config *,
    const struct emulator_opts *, struct local_emulator *, char **cause);
void local_emulator_stop(struct local_emulator *);

#endif
