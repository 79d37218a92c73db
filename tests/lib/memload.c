#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memload.h"

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

static int
exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static int
make_cgroups(struct memload *l, const char *limit, const char **why)
{
	char name[64];

	snprintf(name, sizeof name, "spillway-load-%d", (int)getpid());
	if (!exists("/proc/pressure/memory")) {
		*why = "this kernel has no PSI (/proc/pressure/memory)";
		return -1;
	}
	if (exists("/sys/fs/cgroup/cgroup.controllers") && !exists("/sys/fs/cgroup/memory")) {
		snprintf(l->v2, sizeof l->v2, "/sys/fs/cgroup/%s", name);
		if (mkdir(l->v2, 0755) != 0) {
			l->v2[0] = '\0';
			*why = "cannot create a cgroup under /sys/fs/cgroup (run as root)";
			return -1;
		}
		put("/sys/fs/cgroup", "cgroup.subtree_control", "+memory");
		if (put(l->v2, "memory.high", limit) != 0) {
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
	snprintf(l->v1, sizeof l->v1, "/sys/fs/cgroup/memory/%s", name);
	snprintf(l->v2, sizeof l->v2, "/sys/fs/cgroup/unified/%s", name);
	if (mkdir(l->v1, 0755) != 0) {
		l->v1[0] = l->v2[0] = '\0';
		*why = "cannot create a memory cgroup (run as root)";
		return -1;
	}
	if (mkdir(l->v2, 0755) != 0) {
		l->v2[0] = '\0';
		*why = "cannot create a cgroup v2 directory";
		return -1;
	}
	if (put(l->v1, "memory.limit_in_bytes", limit) != 0) {
		*why = "cannot limit the memory of the cgroup";
		return -1;
	}
	return 0;
}

/* Written outside the cgroup, then dropped from the cache: reading it charges the cgroup. */
static int
make_file(struct memload *l, int mb, const char **why)
{
	static char block[1 << 20];
	int fd;

	snprintf(l->file, sizeof l->file, "/var/tmp/spillway-load-%d.data", (int)getpid());
	if ((fd = open(l->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
		l->file[0] = '\0';
		*why = "cannot write a file in /var/tmp";
		return -1;
	}
	for (int i = 0; i < mb; i++) {
		memset(block, i * 7 + 1, sizeof block);
		if (write(fd, block, sizeof block) != (ssize_t)sizeof block) {
			close(fd);
			*why = "cannot write the load's file in /var/tmp";
			return -1;
		}
	}
	fsync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	return 0;
}

int
memload_setup(struct memload *l, const char *limit, int file_mb, const char **why)
{
	memset(l, 0, sizeof *l);
	if (make_cgroups(l, limit, why) != 0 || make_file(l, file_mb, why) != 0) {
		memload_cleanup(l);
		return -1;
	}
	return 0;
}

const char *
memload_pressure(const struct memload *l, char *buf, size_t size)
{
	snprintf(buf, size, "%s/memory.pressure", l->v2);
	return buf;
}

void
memload_start(struct memload *l, int n)
{
	for (; l->nreaders < n && l->nreaders < MEMLOAD_READERS; l->nreaders++) {
		pid_t pid = fork();

		if (pid == 0) {
			char buf[1 << 16], self[32];
			int fd;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			snprintf(self, sizeof self, "%d", (int)getpid());
			if ((l->v1[0] != '\0' && put(l->v1, "cgroup.procs", self) != 0) ||
			    put(l->v2, "cgroup.procs", self) != 0 ||
			    (fd = open(l->file, O_RDONLY)) == -1)
				_exit(3);
			for (;;)
				if (read(fd, buf, sizeof buf) <= 0)
					lseek(fd, 0, SEEK_SET);
		}
		l->readers[l->nreaders] = pid;
	}
}

void
memload_stop(struct memload *l)
{
	for (int i = 0; i < l->nreaders; i++) {
		kill(l->readers[i], SIGKILL);
		waitpid(l->readers[i], NULL, 0);
	}
	l->nreaders = 0;
}

void
memload_drop(struct memload *l)
{
	int fd = open(l->file, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

void
memload_cleanup(struct memload *l)
{
	memload_stop(l);
	/* A cgroup can be removed once its processes are gone. */
	if (l->v1[0] != '\0' && rmdir(l->v1) == 0)
		l->v1[0] = '\0';
	if (l->v2[0] != '\0' && rmdir(l->v2) == 0)
		l->v2[0] = '\0';
	if (l->file[0] != '\0') {
		unlink(l->file);
		l->file[0] = '\0';
	}
}
