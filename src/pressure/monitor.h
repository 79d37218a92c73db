/*
 * The pressure monitor: samples in, levels out, on the libuv loop.
 *
 * Live on Linux it arms a PSI trigger ("some STALL WINDOW" on the system's
 * /proc/pressure/memory or a cgroup's memory.pressure) and sleeps until the
 * kernel wakes it; then it samples every sample_ms while the episode lasts
 * and goes back to sleep. Where the kernel refuses the trigger (EINVAL, EPERM,
 * EOPNOTSUPP, EACCES) it samples the totals on a timer; without PSI it watches
 * MemAvailable alone. The mode and why it was chosen are in the snapshot and
 * monitor_mode_reason(). If a watched cgroup goes away (POLLERR), it falls
 * back to the whole system and says so.
 *
 * A recorded trace replays through the same processing: as fast as possible,
 * or paced (scaled) in real time.
 */
#ifndef SPILLWAY_MONITOR_H
#define SPILLWAY_MONITOR_H

#include <stdbool.h>

#include <jansson.h>
#include <uv.h>

#include "config/config.h"
#include "pressure/level.h"
#include "pressure/pressure.h"
#include "pressure/trace.h"
#include "util/clock.h"

struct monitor_opts {
	const char *psi_path; /* NULL: no PSI; else the system's or a cgroup's pressure file */
	const char *procdir;  /* "/proc" */
	struct level_config level;
	int64_t window_ms;
	int64_t sample_ms;
	bool poll;          /* do not try triggers */
	const char *record; /* write every sample to this trace, or NULL */
	const struct clock *clock;
	const struct component_def *components;
	size_t ncomponents;
	bool processes; /* read the top processes when the level rises */
};

struct monitor;

/* previous: the level before (the same as snapshot->level for sample callbacks). */
typedef void monitor_cb(const struct pressure_snapshot *, enum pressure_level previous, void *arg);

/* Options from the configuration: thresholds, window, cgroup, components. */
void monitor_opts_from_config(struct monitor_opts *, const struct config *);
/* The kernel's rule for trigger windows: 0, or -EINVAL with the rule. */
int monitor_check(const struct config *, bool cap_sys_resource, char **cause);
bool have_cap_sys_resource(void);

int monitor_new(uv_loop_t *, const struct monitor_opts *, struct monitor **, char **cause);
/* Start watching live: triggers or sampling, as the kernel allows. */
int monitor_start(struct monitor *, char **cause);
/*
 * Feed a trace through. scale 0: as fast as possible (done is called before
 * this returns); otherwise samples are spaced by their recorded gaps divided
 * by scale, on the loop.
 */
void monitor_replay(
    struct monitor *, const struct trace *, double scale, void (*done)(void *), void *arg);
/*
 * A reloaded configuration: the level's thresholds and times, the sampling
 * period and the components apply from the next sample. The file watched and
 * the trigger's window are the start's; a trigger armed for another elevated
 * threshold gives way to sampling, and the mode's reason says so.
 */
void monitor_reconfigure(struct monitor *, const struct monitor_opts *);
/* Consumers: any number of each; called in registration order. */
void monitor_on_level(struct monitor *, monitor_cb *, void *arg);
void monitor_on_sample(struct monitor *, monitor_cb *, void *arg);
const struct pressure_snapshot *monitor_snapshot(const struct monitor *);
const char *monitor_mode_reason(const struct monitor *);
/* Counters, for benchmarks: samples processed, trigger events. */
void monitor_counts(const struct monitor *, long *samples, long *events);
/* The snapshot as JSON (schema_version 1; see docs/pressure.md). */
json_t *pressure_snapshot_json(const struct pressure_snapshot *, const char *mode_reason);
/*
 * Pressure at a glance, without a monitor (status with no daemon): PSI's
 * avg10 stands for the window and the level is the one those averages reach,
 * without sustain or dwell. 0, or -errno (no PSI file: the snapshot still has
 * the memory figures).
 */
int pressure_glance(const struct config *, struct pressure_snapshot *);
/* Stop and free once the loop lets go of the handles. */
void monitor_free(struct monitor *);

#endif
