/*
 * UUIDs and random bytes from OpenSSL's CSPRNG. A requestId is a version 4
 * UUID: Google rejects anything else, and the zero UUID, with a 400.
 */
#ifndef SPILLWAY_UUID_H
#define SPILLWAY_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_LEN 37 /* 36 characters and the NUL */

/* Fill with cryptographically strong random bytes; aborts if none can be had. */
void random_bytes(void *, size_t);
void uuid_v4(char out[UUID_LEN]);
/*
 * The same UUID, version 4 in form, every time for the same seed and purpose
 * (its bits are SHA-256's of them): a requestId that a crash or a lost write
 * cannot change, as a delete's derived from its VM's insert.
 */
void uuid_derived(const char *seed, const char *purpose, char out[UUID_LEN]);
/*
 * A repeatable generator (splitmix64) for dice that need no secrecy: jitter,
 * injected faults. Returns a uniform double in [0, 1) and advances *state.
 */
double prng_next(uint64_t *state);
/* A canonical 8-4-4-4-12 hex UUID other than the zero UUID. */
bool uuid_valid(const char *);

#endif
