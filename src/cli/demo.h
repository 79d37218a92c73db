/*
 * spillway demo's two stories: the recorded one (cmd-demo.c) and the live
 * one on this machine's kernel (demo-live.c, `--live`).
 */
#ifndef SPILLWAY_DEMO_H
#define SPILLWAY_DEMO_H

#include <stdarg.h>
#include <stdint.h>

#include <uv.h>

#include "cli/cmd.h"
#include "cli/local-emulator.h"
#include "emulator/emulator.h"
#include "vm/daemon.h"

/* The offload's whole loop with real pressure: an exit status. */
int demo_live(struct cmd_ctx *);
/* A line of a demo's story, after its time ("[mm:ss] "), s seconds from its start. */
void demo_vsay(int64_t s, const char *fmt, va_list) PRINTFLIKE(2, 0);
/* A loopback port nobody listens on now (bound, read, let go). */
int demo_free_port(void);
/*
 * A demo's configuration: the defaults, the user's --config file (or the
 * demo's own file), the demo's own settings, the user's --set after them,
 * and its state directory. 0, or an error and its cause.
 */
int demo_config(struct config *, const struct config_args *user, const char *file,
    const char *const *own, size_t nown, const char *state_dir, char **cause);
/*
 * The daemon on an emulator in this process: the emulator started with eo,
 * then the daemon with o (its configuration, clock and cloud set here). 0, or
 * -1 once said why (who: "spillway demo"); what started is stopped again.
 */
int demo_start(uv_loop_t *, const struct clock *, const struct config *,
    const struct emulator_opts *, struct daemon_opts *o, struct local_emulator *, struct daemon **,
    const char *who);

#endif
