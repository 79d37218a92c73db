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

int
memload_setup(struct memload *l, const char *limit, int file_mb, const char **why)
{
	char name[64];

	memset(l, 0, sizeof *l);
	snprintf(name, sizeof name, "spillway-load-%d", (int)getpid());
	snprintf(l->file, sizeof l->file, "/var/tmp/spillway-load-%d.data", (int)getpid());
	if (memcg_make(&l->cg, name, limit, why) != 0 || memcg_file(l->file, file_mb, why) != 0) {
		l->file[0] = '\0';
		memload_cleanup(l);
		return -1;
	}
	return 0;
}

const char *
memload_pressure(const struct memload *l, char *buf, size_t size)
{
	snprintf(buf, size, "%s/memory.pressure", l->cg.v2);
	return buf;
}

void
memload_start(struct memload *l, int n)
{
	for (; l->nreaders < n && l->nreaders < MEMLOAD_READERS; l->nreaders++) {
		pid_t pid = fork();

		if (pid == 0) {
			char buf[1 << 16];
			int fd;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (memcg_join(&l->cg, getpid()) != 0 ||
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
	memcg_remove(&l->cg);
	if (l->file[0] != '\0') {
		unlink(l->file);
		l->file[0] = '\0';
	}
}
