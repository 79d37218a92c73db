/*
 * Linux's pressure sources: PSI files, /proc/meminfo, /proc/vmstat and the
 * processes under /proc. The parsers are pure (text in, values out) and
 * accept kernels that lack fields; the readers pread() into stack buffers on
 * file descriptors kept open, because opening a file allocates kernel memory,
 * which is exactly what a system under memory pressure cannot do quickly.
 * The /proc directory is a parameter, so tests hand in a tree of their own.
 */
#ifndef SPILLWAY_PROCFS_H
#define SPILLWAY_PROCFS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "pressure/pressure.h"

int psi_parse(const char *text, struct psi *);
int meminfo_parse(const char *text, struct meminfo *);
int vmstat_parse(const char *text, struct vmstat *);

/* Read a whole small proc file from the start on a kept-open fd. */
int proc_pread(int fd, char *buf, size_t size);

/*
 * The top processes by RSS (their PSS too, from smaps_rollup) and the memory
 * of each component (processes whose comm or command line matches its
 * pattern) into the snapshot. Costs a directory walk: call when the level rises.
 */
int procfs_processes(const char *procdir, const struct component_def *, size_t ncomponents,
    struct pressure_snapshot *);

/* "Name:   N kB" on a line of a status, meminfo or smaps_rollup text: N, or -1. */
int64_t proc_field_kb(const char *text, const char *name);

/* What /proc/PID/stat says of a process's place: its parent, group, session, start. */
struct proc_stat {
	char state; /* 'R', 'S'... 'Z' once it ended and nobody reaped it yet */
	int ppid, pgrp, session;
	unsigned long long starttime; /* clock ticks after boot: a PID reused has another */
};
int proc_stat_parse(const char *text, struct proc_stat *);
int procfs_stat(const char *procdir, int pid, struct proc_stat *); /* -ESRCH: no such process */

/*
 * A set of processes, as a component's local copy is found (local/local.h):
 * those of a session, or whose command line matches a pattern; at most max
 * PIDs into pids, and how many.
 */
size_t procfs_session(const char *procdir, int sid, int *pids, size_t max);
size_t procfs_matching(const char *procdir, const char *pattern, int *pids, size_t max);
/* Their proportional set size, summed (smaps_rollup), in kB; -1 when none could be read. */
int64_t procfs_pss_kb(const char *procdir, const int *pids, size_t n);
/* MemAvailable in kB, or -1. */
int64_t procfs_available_kb(const char *procdir);

#endif
