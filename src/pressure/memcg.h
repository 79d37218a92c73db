/*
 * A memory cgroup of one's own, to make real memory pressure on this machine
 * (`spillway demo --live`, the tests, bench/pressure): cgroup v2 with
 * memory.high, or cgroup v1's memory controller beside a cgroup v2 directory
 * (whose memory.pressure tells), as hybrid systems have it. Making one needs
 * root or a delegated hierarchy; where it cannot be made, why says what this
 * machine lacks. Leaf module: libc only.
 */
#ifndef SPILLWAY_MEMCG_H
#define SPILLWAY_MEMCG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct memcg {
	char v1[256]; /* the cgroup v1 memory directory, or "" on pure v2 */
	char v2[256]; /* the cgroup v2 directory: memory.pressure, and the limit on pure v2 */
};

/* Made, and limited to limit ("200M"): 0, or -1 and *why (nothing is left made). */
int memcg_make(struct memcg *, const char *name, const char *limit, const char **why);
/* A process into it (both directories on a hybrid system): 0 or -errno. */
int memcg_join(const struct memcg *, pid_t);
/* The memory it holds now, in bytes, as the kernel counts it (v1's usage, else v2's current). */
long long memcg_bytes(const struct memcg *);
/* Its "some" stall so far, in µs (memory.pressure's total); -1 when it cannot be read. */
long long memcg_stall_us(const struct memcg *);
/* Removed once its processes are gone: true when nothing of it is left. */
bool memcg_remove(struct memcg *);

/*
 * A file of mb MiB written outside the cgroup and dropped from the page
 * cache, so that reading it charges whoever reads it: 0, or -1 and *why.
 */
int memcg_file(const char *path, int mb, const char **why);

#endif
