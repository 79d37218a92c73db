/* A memory cgroup of one's own (memcg.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pressure/memcg.h"

static int
put(const char *dir, const char *name, const char *value)
{
	char path[512];
	int fd, ok;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return -errno;
	ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	close(fd);
	return ok ? 0 : -errno;
}

static bool
exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static long long
number_in(const char *dir, const char *name, const char *after)
{
	char path[512], text[1024];
	const char *p = text;
	int fd;
	ssize_t n;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	if (after != NULL && (p = strstr(text, after)) != NULL)
		p += strlen(after);
	return p != NULL ? strtoll(p, NULL, 10) : -1;
}

int
memcg_make(struct memcg *m, const char *name, const char *limit, const char **why)
{
	memset(m, 0, sizeof *m);
	if (!exists("/proc/pressure/memory")) {
		*why = "this kernel has no PSI (/proc/pressure/memory)";
		return -1;
	}
	if (exists("/sys/fs/cgroup/cgroup.controllers") && !exists("/sys/fs/cgroup/memory")) {
		snprintf(m->v2, sizeof m->v2, "/sys/fs/cgroup/%s", name);
		if (mkdir(m->v2, 0755) != 0) {
			m->v2[0] = '\0';
			*why = "cannot create a cgroup under /sys/fs/cgroup (run as root)";
			return -1;
		}
		put("/sys/fs/cgroup", "cgroup.subtree_control", "+memory");
		if (put(m->v2, "memory.high", limit) != 0) {
			memcg_remove(m);
			*why = "the cgroup v2 memory controller is not available";
			return -1;
		}
		return 0;
	}
	if (!exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") ||
	    !exists("/sys/fs/cgroup/unified/cgroup.procs")) {
		*why =
		    "neither a cgroup v2 memory controller nor cgroup v1 memory with a cgroup v2 "
		    "hierarchy at /sys/fs/cgroup/unified";
		return -1;
	}
	snprintf(m->v1, sizeof m->v1, "/sys/fs/cgroup/memory/%s", name);
	snprintf(m->v2, sizeof m->v2, "/sys/fs/cgroup/unified/%s", name);
	if (mkdir(m->v1, 0755) != 0) {
		m->v1[0] = m->v2[0] = '\0';
		*why = "cannot create a memory cgroup (run as root)";
		return -1;
	}
	if (mkdir(m->v2, 0755) != 0) {
		m->v2[0] = '\0';
		memcg_remove(m);
		*why = "cannot create a cgroup v2 directory";
		return -1;
	}
	if (put(m->v1, "memory.limit_in_bytes", limit) != 0) {
		memcg_remove(m);
		*why = "cannot limit the memory of the cgroup";
		return -1;
	}
	return 0;
}

int
memcg_join(const struct memcg *m, pid_t pid)
{
	char self[32];
	int error;

	snprintf(self, sizeof self, "%d", (int)pid);
	if (m->v1[0] != '\0' && (error = put(m->v1, "cgroup.procs", self)) != 0)
		return error;
	return put(m->v2, "cgroup.procs", self);
}

long long
memcg_bytes(const struct memcg *m)
{
	return m->v1[0] != '\0' ? number_in(m->v1, "memory.usage_in_bytes", NULL)
	                        : number_in(m->v2, "memory.current", NULL);
}

long long
memcg_stall_us(const struct memcg *m)
{
	return number_in(m->v2, "memory.pressure", "total=");
}

bool
memcg_remove(struct memcg *m)
{
	/* A cgroup can be removed once its processes are gone. */
	if (m->v1[0] != '\0' && rmdir(m->v1) == 0)
		m->v1[0] = '\0';
	if (m->v2[0] != '\0' && rmdir(m->v2) == 0)
		m->v2[0] = '\0';
	return m->v1[0] == '\0' && m->v2[0] == '\0';
}

int
memcg_file(const char *path, int mb, const char **why)
{
	static char block[1 << 20];
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
		*why = "cannot write a file in /var/tmp";
		return -1;
	}
	for (int i = 0; i < mb; i++) {
		memset(block, i * 7 + 1, sizeof block);
		if (write(fd, block, sizeof block) != (ssize_t)sizeof block) {
			close(fd);
			unlink(path);
			*why = "cannot write the file in /var/tmp (is it full?)";
			return -1;
		}
	}
	fsync(fd);
	/* Out of the page cache: reading it charges whoever reads it, not us. */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	return 0;
}
