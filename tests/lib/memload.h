/*
 * Real, bounded memory pressure for tests and benchmarks: a memory cgroup
 * (pressure/memcg.h), a file several times larger than its limit, and reader
 * processes inside it re-reading the file. Everything it makes is removed by
 * memload_cleanup(), which is safe to call more than once.
 */
#ifndef SPILLWAY_MEMLOAD_H
#define SPILLWAY_MEMLOAD_H

#include <sys/types.h>

#include "pressure/memcg.h"

#define MEMLOAD_READERS 4

struct memload {
	struct memcg cg;
	char file[256];
	pid_t readers[MEMLOAD_READERS];
	int nreaders;
};

/* 0, or -1 with *why saying what this machine lacks (the caller skips). */
int memload_setup(struct memload *, const char *limit, int file_mb, const char **why);
/* The pressure file to watch: v2/memory.pressure. */
const char *memload_pressure(const struct memload *, char *buf, size_t size);
void memload_start(struct memload *, int readers);
void memload_stop(struct memload *);
/* Drop the file from the page cache, so the next reads stall again. */
void memload_drop(struct memload *);
void memload_cleanup(struct memload *);

#endif
