/*
 * What the lifecycle manager writes to the ledger goes through this one
 * door: a VM's record with the event of its state change, the closing of its
 * cost, and the other events (decisions, refusals, backoffs). When the ledger
 * cannot take a write (the state directory is full, the file is locked or
 * gone bad), the write is kept here, in order, and tried again at each
 * flush (the manager's passes): nothing that happened is lost while the
 * daemon runs, and nothing is written out of order. Meanwhile the views see
 * the records as the manager knows them (records_waiting_vms).
 *
 * The first failure is said once, in the log, with what to do; so is the
 * moment the ledger takes records again. The service is opaque; the records
 * it hands out are copies.
 */
#ifndef SPILLWAY_RECORDS_H
#define SPILLWAY_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/ledger.h"

struct records;

struct records *records_new(struct ledger *);
void records_free(struct records *);

/*
 * Save a VM's record, with the event "FROM -> TO: reason" when its state is
 * not `from` (-1: NEW). 0 when the ledger has it; else it waits, and the
 * ledger's errno is returned.
 */
int records_save(
    struct records *, const struct vm_record *, int from, const char *reason, int64_t t);
/* An event of a VM ("-": of the daemon). The same: written, or waiting. */
int records_event(
    struct records *, const char *vm, const char *kind, const char *detail, int64_t t);
/*
 * Close a run's cost once (ledger_close_cost): v's cost, start, end and
 * reservation are set to what is billed, from the ledger's first closing if
 * there was one, else worked out here (and written when the ledger can).
 */
int records_close_cost(struct records *, struct vm_record *v, bool preempted);
/* Write what waits, in order. 0 when nothing waits any more. */
int records_flush(struct records *, int64_t now);

/* Whether this VM has something waiting (the manager keeps it in memory until not). */
bool records_waiting(const struct records *, const char *vm);
/* Why writes wait ("the state directory '/x' is full ..."), and how many; NULL when none. */
const char *records_problem(const struct records *, size_t *waiting);
/* Copies of the VM records the ledger has not taken yet: what views overlay. Caller frees. */
size_t records_waiting_vms(const struct records *, struct vm_record **out);
/* Say in the log what still waits (the daemon stops): the last place it can go. */
void records_say_lost(const struct records *);

#endif
