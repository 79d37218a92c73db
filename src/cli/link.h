/*
 * How the CLI reaches spillway: through the running daemon's control socket,
 * or, when no daemon runs, directly: documents built from the ledger, and VMs
 * created or deleted by a daemon of this process that only does what it is
 * asked (passive: no decisions, no rules; VMs are kept when it exits). Both
 * ways give the same documents, so the output is the same either way.
 */
#ifndef SPILLWAY_LINK_H
#define SPILLWAY_LINK_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/cmd.h"
#include "ledger/ledger.h"
#include "vm/daemon.h"

#define LINK_TIMEOUT_MS 10000

/*
 * GET a document (a control API path). 0 and the document with the HTTP
 * status; or an exit status after saying why on stderr.
 */
int link_get(struct cmd_ctx *, const char *path, long *status, json_t **doc);
/* GET a document and print it (--json: as it is); the exit status. */
typedef void link_print(FILE *, const json_t *, bool verbose);
int link_show(struct cmd_ctx *, const char *command, const char *path, bool json, link_print *,
    bool verbose);
/* The same for POST and DELETE, with the daemon only: -ENOENT when none runs. */
int link_call(struct cmd_ctx *, const char *method, const char *path, const json_t *body,
    long *status, json_t **doc, char **cause);

/*
 * Follow a VM through the daemon, asking for it every 250 ms, until done()
 * says it is where the command waits for it, or timeout_ms of wall time
 * pass: every command that waits has a deadline. 0 and the VM's last
 * document (caller frees), -ETIMEDOUT and the last document, or an exit
 * status after saying why on stderr.
 */
int link_follow(struct cmd_ctx *, const char *command, const char *name, int64_t timeout_ms,
    bool (*done)(const json_t *vm, void *arg), void *arg, json_t **vm);

/*
 * No daemon: run one in this process (passive, keeping its VMs), call
 * ready(d, arg) once it has reconciled with the cloud, and return when
 * link_local_done() is called; then the exit status it was given.
 */
struct link_local;
int link_local(struct cmd_ctx *, void (*ready)(struct link_local *, struct daemon *, void *arg),
    manager_event_cb *on_event, void *arg);
void link_local_done(struct link_local *, int status);
/*
 * What the manager answered an action asked of it (manager_create,
 * manager_bake): 0 goes on; else it is said ("spillway COMMAND: refused:
 * why") and the command ends: -EAGAIN refused by a rule (exit 3), -EINVAL
 * nothing to do (exit 2), else failed (exit 1). Returns error.
 */
int link_local_answer(struct link_local *, const char *command, int error, const char *why);
/* From ready() on: if link_local_done() is not called within timeout_ms, expired(arg) is. */
void link_local_deadline(
    struct link_local *, int64_t timeout_ms, void (*expired)(struct link_local *, void *arg));

/* Print an error document ({"error": ...}) or the cause; return the exit status it means. */
int link_error(const char *command, long status, const json_t *doc);

#endif
