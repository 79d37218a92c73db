/*
 * The level: a pure function step(config, state, input, now) -> state.
 *
 * For each level there is an arm threshold and a disarm threshold (arm times
 * disarm_ratio). A level is a candidate from the start of the span in which
 * the stall reaches its arm threshold (from now, for MemAvailable, read only
 * now), and stays one while the input stays above its disarm threshold; the
 * level rises as far as every level on the way has been a candidate for its
 * own sustain time (so a burst fit for CRITICAL still waits for HIGH's
 * sustain). The level falls only after the input has stayed below the
 * current level's disarm threshold for the dwell time, and then to what the
 * input justifies. So a short spike never reaches HIGH, a sawtooth around a
 * threshold causes one transition, and recovery waits for calm.
 *
 *	ELEVATED  some >= elevated_pct, or MemAvailable < low_available_pct
 *	HIGH      some >= high_pct
 *	CRITICAL  some >= critical_pct, or full >= critical_full_pct
 */
#ifndef SPILLWAY_LEVEL_H
#define SPILLWAY_LEVEL_H

#include <stdint.h>

#include "pressure/pressure.h"

struct level_config {
	double elevated_pct, high_pct, critical_pct, critical_full_pct;
	double disarm_ratio;
	double low_available_pct;            /* 0: not used */
	int64_t sustain_ms[PRESSURE_LEVELS]; /* index by level; [0] unused */
	int64_t dwell_ms;
};

/*
 * What the level is decided from: the stall shares measured over the span_ms
 * before now (0: an instant), and MemAvailable now. A level the shares meet
 * is a candidate from the start of that span, since the stall was there then.
 */
struct level_input {
	double some_pct;
	double full_pct;
	double available_pct; /* < 0: unknown */
	int64_t span_ms;
};

struct level_state {
	enum pressure_level level;
	int64_t since_ms;
	int64_t candidate_ms[PRESSURE_LEVELS]; /* since when each level is a candidate; -1: not */
	int64_t calm_ms;                       /* since when below the disarm threshold; -1: not */
};

void level_init(struct level_state *, int64_t now_ms);
struct level_state level_step(
    const struct level_config *, struct level_state, const struct level_input *, int64_t now_ms);
/* The highest level whose arm threshold (or, with disarm, disarm threshold) the input meets. */
enum pressure_level level_target(
    const struct level_config *, const struct level_input *, bool disarm);

/*
 * macOS, mapped to the same input: kern.memorystatus_vm_pressure_level 4 is
 * critical, 2 high; at 1 (normal), a compressor holding more than half of the
 * memory in use is elevated. Pure, so it is tested on Linux too.
 */
struct level_input macos_level_input(const struct level_config *, int vm_pressure_level,
    double compressed_ratio, double available_pct);

#endif
