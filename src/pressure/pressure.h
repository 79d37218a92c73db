/*
 * Memory pressure: the data every part of the monitor shares. Plain values.
 *
 * A sample is one raw reading of the sources (PSI totals and averages,
 * /proc/meminfo, /proc/vmstat counters) at a time; a snapshot is what the
 * monitor makes of the samples: stall percentages and rates over the last second,
 * the level, the top processes and the memory of each component.
 */
#ifndef SPILLWAY_PRESSURE_H
#define SPILLWAY_PRESSURE_H

#include <stdbool.h>
#include <stdint.h>

enum pressure_level {
	PRESSURE_NORMAL,
	PRESSURE_ELEVATED,
	PRESSURE_HIGH,
	PRESSURE_CRITICAL,
};

#define PRESSURE_LEVELS 4

enum pressure_mode {
	MODE_TRIGGER, /* PSI triggers on the loop; samples follow an event */
	MODE_POLL,    /* PSI totals sampled on a timer: triggers were refused */
	MODE_MEMINFO, /* no PSI at all: MemAvailable only */
	MODE_REPLAY,  /* a recorded trace */
	MODE_MACOS,   /* kern.memorystatus_vm_pressure_level and the compressor */
};

struct psi_line {
	double avg10, avg60, avg300;
	uint64_t total_us;
};

struct psi {
	struct psi_line some, full;
	bool has_full; /* kernels before 5.x and the system file of some have no "full" */
};

struct meminfo {
	int64_t total_kb;
	int64_t available_kb;
	int64_t free_kb;
	int64_t swap_total_kb;
	int64_t swap_free_kb;
	bool has_available; /* MemAvailable: kernel 3.14 and later */
};

struct vmstat {
	uint64_t pswpin, pswpout, pgmajfault;
	uint64_t refault_file, refault_anon; /* workingset_refault before 5.9: all in file */
};

struct pressure_sample {
	int64_t t_ms;
	bool event; /* taken because a PSI trigger fired */
	bool has_psi;
	struct psi psi;
	struct meminfo mem;
	struct vmstat vm;
	int macos_level; /* kern.memorystatus_vm_pressure_level: 1, 2, 4; 0 elsewhere */
	double macos_compressed_ratio;
};

#define PRESSURE_TOP        10
#define PRESSURE_COMPONENTS 16

struct process_info {
	int pid;
	char comm[32];
	int64_t rss_kb;
	int64_t pss_kb;        /* -1 when smaps_rollup could not be read */
	const char *component; /* the configured component it belongs to, or NULL */
};

struct component_usage {
	const char *name;
	int64_t rss_kb; /* measured over its processes */
	int processes;
};

struct pressure_snapshot {
	int64_t t_ms;
	int64_t woke_ns; /* CLOCK_MONOTONIC when the trigger woke the loop; 0: not an event */
	enum pressure_level level;
	int64_t since_ms;
	double some_pct, full_pct; /* stalled share of the window, from PSI totals */
	double some_avg10, some_avg60, full_avg10, full_avg60;
	int64_t mem_total_kb, mem_available_kb, swap_used_kb;
	double available_pct;
	double refault_rate, swapin_rate, majfault_rate; /* per second over the last second */
	enum pressure_mode mode;
	const char *source;   /* the pressure file, or "trace FILE" */
	int64_t processes_ms; /* when the processes below were read; 0: never */
	struct process_info top[PRESSURE_TOP];
	int ntop;
	struct component_usage components[PRESSURE_COMPONENTS];
	int ncomponents;
};

const char *pressure_level_name(enum pressure_level);
int pressure_level_parse(const char *, enum pressure_level *);
const char *pressure_mode_name(enum pressure_mode);

#endif
