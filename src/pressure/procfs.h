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

#endif
