/*
 * spillway demo's two stories: the recorded one (cmd-demo.c) and the live
 * one on this machine's kernel (demo-live.c, `--live`).
 */
#ifndef SPILLWAY_DEMO_H
#define SPILLWAY_DEMO_H

#include "cli/cmd.h"

/* The offload's whole loop with real pressure: an exit status. */
int demo_live(struct cmd_ctx *);
/* A loopback port nobody listens on now (bound, read, let go). */
int demo_free_port(void);

#endif
