/*
 * A world for the daemon's end-to-end and chaos tests: `spillway emulator`
 * and `spillway run` as real processes sharing one fast clock
 * (--time-scale, --clock-epoch), pressure from written or recorded traces,
 * and the two sources of truth the daemon does not control: the emulator
 * (its instances and request log) and the ledger file, opened here.
 * Include after cmocka.h and harness.h; every helper fails the test on error.
 */
#ifndef SPILLWAY_TEST_WORLD_H
#define SPILLWAY_TEST_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ledger/ledger.h"
#include "util/clock.h"

#define SCALE   60
#define WAIT_MS 90000 /* real time: generous, for sanitizers and valgrind */
#define OWNER   "test-owner"
#define ZONE_A  "us-central1-a"
#define ZONE_B  "us-central1-b"

struct world {
	struct emu e;
	struct dmn d;
	struct clock clock;
	char scale[16], epoch[32], trace[300];
	struct ledger *ledger;
};

/* The emulator's request log: inserts (POST .../instances) and their requestIds. */
struct insert {
	char name[64];
	char request_id[64];
	long status;
};

void recorded_trace(struct world *w, const char *name);
void world_emulator(struct world *w, const char *const *extra);
void world_init(struct world *w, int scale, const char *const *emu_args);
void world_run(struct world *w, const char *const *args, const char *const *env);
void world_end(struct world *w);
int64_t vnow(const struct world *w);
size_t vms(struct world *w, struct vm_record **list);
struct vm_record wait_state(struct world *w, enum vm_state state, int index);
struct vm_record wait_vm(struct world *w, const char *name, enum vm_state state);
struct ledger_event wait_event(struct world *w, const char *kind, const char *text);
json_t *instance(struct world *w, const struct vm_record *v);
size_t inserts(struct world *w, struct insert *out, size_t max);
int64_t deleted_at(struct world *w, const char *name);
size_t log_count(struct world *w, const char *server, const char *method, const char *suffix);
const char *label(const json_t *inst, const char *key);
const char *metadata(const json_t *inst, const char *key);
bool settled(struct world *w, char *alive, size_t size);
void cloud_names(struct world *w, const char *ledger_order, char *out, size_t size);
void wait_started(struct world *w, int n);
void expect_consistent(struct world *w, int run);

#endif
