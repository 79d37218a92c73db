/*
 * The application's side of a route, for the end-to-end tests: connections
 * through a component's listen address as an application opens them, the
 * route as the control API shows it, VMs asked for and deleted through it,
 * and the programs of examples/offload run beside. Include after cmocka.h,
 * harness.h and world.h; every helper fails the test on error.
 */
#ifndef SPILLWAY_TEST_APP_H
#define SPILLWAY_TEST_APP_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "ledger/ledger.h"

struct world;

/* A port nobody listens on now. */
int free_port(void);
/* A connection to 127.0.0.1:port, as an application opens it (reads time out after 60 s). */
int dial(int port);
/* What came back until the other end closed ("" when it closed without a word); fd closed. */
char *read_all(int fd);
/* An HTTP/1.0 GET through the route, sent whole, and its answer. */
char *get_through(int port, const char *path);
long long jx_int(const json_t *, const char *key);
/* The daemon's one route, as GET /v1/routes has it. */
json_t *route_doc(struct world *);
/* A VM for vision by hand (POST /v1/vms), once the daemon takes such requests. */
struct vm_record create_vm(struct world *);
/* DELETE /v1/vms/NAME: 200 or 202. */
void delete_vm(struct world *, const char *name);
/* A program of examples/offload, its output in out (NULL: /dev/null); stop: its $APP_STOP. */
pid_t spawn_example(const char *const *argv, const char *out, const char *stop);
/* Lines of the file that say exactly this (an application prints one per answer). */
size_t lines_saying(const char *path, const char *what);
/* Until the file has n such lines (60 s at most; the daemon's log shown on failure). */
void wait_lines(struct world *, const char *path, const char *what, size_t n);
/* examples/offload/app.py asking through the route on port; $APP_STOP is stop. */
pid_t app_start(int port, const char *out, const char *stop);
/* It stops (stop made) and every one of its requests was answered, or the test fails. */
void app_stop_clean(struct world *, pid_t app, const char *out, const char *stop);
/* The route's local copy, as GET /v1/routes says it ("running", "stopped"...; "" none). */
char *route_copy(struct world *);
/* Until it is in this state, for at most ms (real time). */
void wait_route_copy(struct world *, const char *want, int ms);
/* POST an admin verb of the emulator for this VM ("preempt", ...; docs/emulator.md). */
void emu_admin(struct world *, const struct vm_record *, const char *verb);

#endif
