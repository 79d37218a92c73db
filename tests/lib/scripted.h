/*
 * A scripted cloud: the provider seam (cloud/provider.h) with a world a test
 * sets up and answers it scripts, on the test's clock, so that the lifecycle
 * manager runs without an emulator, in milliseconds.
 *
 * The world is a set of instances (all carrying our owner label) and the
 * operations made on them. A call's answer is computed when the call is made
 * (what the cloud knew then) and delivered no earlier than its latency later
 * on the test's clock, by scripted_deliver(); scripted_deliver_one() hands
 * over one answer out of turn. Errors and lost answers are scripted per kind
 * of call: an error has no effect; a lost answer took effect (an insert made
 * the VM) and its caller hears CLOUD_DEADLINE.
 *
 * Inserts follow Compute Engine: a repeated requestId answers with the first
 * operation and makes nothing new; so do power calls (stop: TERMINATED,
 * start and resume: RUNNING, suspend: SUSPENDED) and images.insert (an image
 * of the project, READY, carrying its labels). A new instance is RUNNING at once (or
 * PROVISIONING, scripted_insert_status) and its insert DONE at once, unless
 * scripted_ops_pending() holds operations until scripted_finish().
 */
#ifndef SPILLWAY_TEST_SCRIPTED_H
#define SPILLWAY_TEST_SCRIPTED_H

#include <stdbool.h>
#include <stdint.h>

#include "cloud/provider.h"
#include "util/clock.h"

enum sc_call {
	SC_CREATE,
	SC_GET,
	SC_LIST,
	SC_DESTROY,
	SC_WAIT,
	SC_PREEMPTIONS,
	SC_MACHINE,
	SC_ZONES,
	SC_GUEST,
	SC_POWER,
	SC_IMAGE_CREATE,
	SC_IMAGES,
	SC_IMAGE_DELETE,
	SC_NCALLS
};

struct scripted;

/* The clock is the test's (a manual clock); the answers wait on it. */
struct scripted *scripted_new(const struct clock *);
/* The seam to give the manager; freed with scripted_free, not by its user. */
struct cloud *scripted_cloud(struct scripted *);
void scripted_free(struct scripted *);

/* The world. An instance's nat_ip may be "" (none). */
void scripted_put(struct scripted *, const char *name, const char *zone, const char *status,
    const char *nat_ip, int64_t started_ms);
void scripted_set_status(struct scripted *, const char *name, const char *status);
void scripted_remove(struct scripted *, const char *name);
/* The key its agent published in its guest attributes (spillway/tls-key); unset: not found. */
void scripted_set_pin(struct scripted *, const char *name, const char *pin);
/* Compute Engine takes it back at t: a preemption operation, and the instance goes. */
void scripted_preempt(struct scripted *, const char *name, int64_t t_ms);
bool scripted_exists(const struct scripted *, const char *name);
const char *scripted_status(const struct scripted *, const char *name);
void scripted_insert_status(struct scripted *, const char *status);
/* New instances' address and the pin their agent publishes (NULL: none). */
void scripted_insert_ip(struct scripted *, const char *nat_ip, const char *pin);
/* Operations stay RUNNING (not DONE) until scripted_finish(). */
void scripted_ops_pending(struct scripted *, bool);
/* Every operation on this instance DONE now (its insert ended at t_ms). */
void scripted_finish(struct scripted *, const char *name, int64_t t_ms);

/* Forget the operations that are DONE (the cloud's memory is not the caller's: benches). */
void scripted_forget_done(struct scripted *);
/* The next n calls of a kind fail with code (no effect), or take effect and are lost. */
void scripted_fail(struct scripted *, enum sc_call, enum cloud_errc code, int n);
void scripted_lose(struct scripted *, enum sc_call, int n);
/* Answers of a kind arrive this long after their call, on the test's clock. */
void scripted_latency(struct scripted *, enum sc_call, int64_t ms);

/* Deliver every answer due by now, as long as more come due; how many. */
int scripted_deliver(struct scripted *);
/* Deliver the oldest answer of this kind now, whatever its latency: 1, or 0 when none. */
int scripted_deliver_one(struct scripted *, enum sc_call);
int scripted_pending(const struct scripted *, enum sc_call);
/* Calls made of a kind, answered or not; and how many distinct instances an insert made. */
int scripted_calls(const struct scripted *, enum sc_call);
int scripted_made(const struct scripted *);
/* The project's images: whether one of this name is there, and how many inserts made one. */
bool scripted_image_exists(const struct scripted *, const char *name);
int scripted_images_made(const struct scripted *);
/* An image of the project, as if made before (labels: spillway-install=install, or none). */
void scripted_put_image(
    struct scripted *, const char *name, const char *family, const char *install);

#endif
