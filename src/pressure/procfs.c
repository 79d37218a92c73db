#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pressure/procfs.h"
#include "util/xmalloc.h"

/* "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" */
static int
psi_line_parse(const char *line, struct psi_line *out)
{
	if (sscanf(line, "%*s avg10=%lf avg60=%lf avg300=%lf total=%" SCNu64, &out->avg10,
	        &out->avg60, &out->avg300, &out->total_us) != 4)
		return -EINVAL;
	return 0;
}

int
psi_parse(const char *text, struct psi *out)
{
	const char *full = strstr(text, "\nfull ");

	memset(out, 0, sizeof *out);
	if (strncmp(text, "some ", 5) != 0 || psi_line_parse(text, &out->some) != 0)
		return -EINVAL;
	if (full != NULL) {
		if (psi_line_parse(full + 1, &out->full) != 0)
			return -EINVAL;
		out->has_full = true;
	}
	return 0;
}

int64_t
proc_field_kb(const char *text, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, name, n) == 0 && p[n] == ':')
			return strtoll(p + n + 1, NULL, 10);
	}
	return -1;
}

int
meminfo_parse(const char *text, struct meminfo *out)
{
	memset(out, 0, sizeof *out);
	if ((out->total_kb = proc_field_kb(text, "MemTotal")) <= 0 ||
	    (out->free_kb = proc_field_kb(text, "MemFree")) < 0)
		return -EINVAL;
	out->available_kb = proc_field_kb(text, "MemAvailable");
	out->has_available = out->available_kb >= 0;
	if (!out->has_available) {
		/* Before 3.14: free plus what can be dropped from the cache, roughly. */
		int64_t cached = proc_field_kb(text, "Cached"),
		        buffers = proc_field_kb(text, "Buffers");

		/* Saturating: a file that is not the kernel's must not overflow the sum. */
		if (__builtin_add_overflow(
		        out->free_kb, cached > 0 ? cached : 0, &out->available_kb) ||
		    __builtin_add_overflow(
		        out->available_kb, buffers > 0 ? buffers : 0, &out->available_kb))
			out->available_kb = INT64_MAX;
	}
	out->swap_total_kb = proc_field_kb(text, "SwapTotal");
	out->swap_free_kb = proc_field_kb(text, "SwapFree");
	if (out->swap_total_kb < 0)
		out->swap_total_kb = out->swap_free_kb = 0;
	return 0;
}

int
vmstat_parse(const char *text, struct vmstat *out)
{
	static const struct {
		const char *name;
		size_t off;
	} fields[] = {
	    {"pswpin", offsetof(struct vmstat, pswpin)},
	    {"pswpout", offsetof(struct vmstat, pswpout)},
	    {"pgmajfault", offsetof(struct vmstat, pgmajfault)},
	    {"workingset_refault_file", offsetof(struct vmstat, refault_file)},
	    {"workingset_refault_anon", offsetof(struct vmstat, refault_anon)},
	    {"workingset_refault", offsetof(struct vmstat, refault_file)}, /* before 5.9 */
	};
	int seen = 0;

	memset(out, 0, sizeof *out);
	for (const char *p = text; *p != '\0';) {
		const char *sp = strchr(p, ' '), *nl = strchr(p, '\n');

		if (sp != NULL && (nl == NULL || sp < nl)) {
			for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
				size_t n = strlen(fields[i].name);

				if ((size_t)(sp - p) == n && strncmp(p, fields[i].name, n) == 0) {
					*(uint64_t *)((char *)out + fields[i].off) =
					    strtoull(sp + 1, NULL, 10);
					seen++;
				}
			}
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return seen > 0 ? 0 : -EINVAL;
}

int
proc_pread(int fd, char *buf, size_t size)
{
	ssize_t n;

	do
		n = pread(fd, buf, size - 1, 0);
	while (n == -1 && errno == EINTR);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

/* --- processes --- */

static int
read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), n;

	if (fd == -1)
		return -errno;
	n = proc_pread(fd, buf, size);
	close(fd);
	return n;
}

/*
 * A user process's status, and what a component's match is matched against:
 * its name (status's "Name:") and its command line, its arguments spaced.
 * Its RSS in kB; -1 when it is gone or a kernel thread (nothing to match).
 */
static int64_t
process_text(
    const char *procdir, const char *pid, char *status, size_t ssize, char *cmd, size_t size)
{
	const char *name;
	char path[512];
	int64_t rss;
	int pos, n;

	snprintf(path, sizeof path, "%s/%s/status", procdir, pid);
	if (read_small(path, status, ssize) <= 0 || (rss = proc_field_kb(status, "VmRSS")) <= 0)
		return -1;
	name = strstr(status, "Name:");
	snprintf(path, sizeof path, "%s/%s/cmdline", procdir, pid);
	pos = snprintf(
	    cmd, size, "%.*s ", name ? (int)strcspn(name + 5, "\n") : 0, name ? name + 5 : "");
	if ((n = read_small(path, cmd + pos, size - (size_t)pos)) > 0)
		for (int i = pos; i < pos + n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
	return rss;
}

/* A process's proportional set size (smaps_rollup), in kB; -1 when it cannot be read. */
static int64_t
process_pss_kb(const char *procdir, int pid)
{
	char path[512], text[4096];

	snprintf(path, sizeof path, "%s/%d/smaps_rollup", procdir, pid);
	return read_small(path, text, sizeof text) > 0 ? proc_field_kb(text, "Pss") : -1;
}

struct compiled {
	regex_t re;
	bool ok;
};

int
procfs_processes(const char *procdir, const struct component_def *defs, size_t ndefs,
    struct pressure_snapshot *snap)
{
	struct compiled *re = xcalloc(ndefs + 1, sizeof *re);
	DIR *d = opendir(procdir);
	struct dirent *de;
	size_t nc = ndefs < PRESSURE_COMPONENTS ? ndefs : PRESSURE_COMPONENTS;

	if (d == NULL) {
		free(re);
		return -errno;
	}
	snap->ntop = 0;
	snap->ncomponents = (int)nc;
	for (size_t i = 0; i < nc; i++) {
		snap->components[i].name = defs[i].name;
		snap->components[i].rss_kb = 0;
		snap->components[i].processes = 0;
		re[i].ok =
		    regcomp(&re[i].re, defs[i].match, REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0;
	}
	while ((de = readdir(d)) != NULL) {
		char status[4096], cmd[4096], *name;
		const char *component = NULL;
		int64_t rss;

		if (!isdigit((unsigned char)de->d_name[0]) ||
		    (rss = process_text(
		         procdir, de->d_name, status, sizeof status, cmd, sizeof cmd)) < 0)
			continue;
		name = strstr(status, "Name:");
		for (size_t i = 0; i < nc; i++) {
			if (re[i].ok && regexec(&re[i].re, cmd, 0, NULL, 0) == 0) {
				component = defs[i].name;
				snap->components[i].rss_kb += rss;
				snap->components[i].processes++;
				break;
			}
		}
		/* Keep the top by RSS, largest first. */
		if (snap->ntop < PRESSURE_TOP || rss > snap->top[snap->ntop - 1].rss_kb) {
			int at = snap->ntop < PRESSURE_TOP ? snap->ntop++ : PRESSURE_TOP - 1;
			struct process_info *p;

			while (at > 0 && snap->top[at - 1].rss_kb < rss) {
				snap->top[at] = snap->top[at - 1];
				at--;
			}
			p = &snap->top[at];
			memset(p, 0, sizeof *p);
			p->pid = (int)strtol(de->d_name, NULL, 10);
			p->rss_kb = rss;
			p->component = component;
			if (name != NULL) {
				char *start = name + 5;

				while (*start == ' ' || *start == '\t')
					start++;
				snprintf(p->comm, sizeof p->comm, "%.*s", (int)strcspn(start, "\n"),
				    start);
			}
		}
	}
	closedir(d);
	/* PSS is fairer to shared pages, and costly: the top only. */
	for (int i = 0; i < snap->ntop; i++)
		snap->top[i].pss_kb = process_pss_kb(procdir, snap->top[i].pid);
	for (size_t i = 0; i < nc; i++)
		if (re[i].ok)
			regfree(&re[i].re);
	free(re);
	return 0;
}

/* --- a set of processes: a local copy's (local/local.h) --- */

int
proc_stat_parse(const char *text, struct proc_stat *out)
{
	/* The command may hold spaces and parentheses: the fields follow the last ')'. */
	const char *p = strrchr(text, ')');

	memset(out, 0, sizeof *out);
	/* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
	 * cutime cstime priority nice num_threads itrealvalue starttime */
	if (p == NULL ||
	    sscanf(p + 1,
	        " %c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
	        "%*d %*d %*d %llu",
	        &out->state, &out->ppid, &out->pgrp, &out->session, &out->starttime) != 5)
		return -EINVAL;
	return 0;
}

int
procfs_stat(const char *procdir, int pid, struct proc_stat *out)
{
	char path[512], text[2048];

	snprintf(path, sizeof path, "%s/%d/stat", procdir, pid);
	if (read_small(path, text, sizeof text) <= 0)
		return -ESRCH;
	return proc_stat_parse(text, out);
}

size_t
procfs_session(const char *procdir, int sid, int *pids, size_t max)
{
	DIR *d = opendir(procdir);
	struct dirent *de;
	size_t n = 0;

	if (d == NULL || sid <= 0) {
		if (d != NULL)
			closedir(d);
		return 0;
	}
	while ((de = readdir(d)) != NULL && n < max) {
		struct proc_stat st;
		int pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (int)strtol(de->d_name, NULL, 10);
		if (procfs_stat(procdir, pid, &st) == 0 && st.session == sid)
			pids[n++] = pid;
	}
	closedir(d);
	return n;
}

size_t
procfs_matching(const char *procdir, const char *pattern, int *pids, size_t max)
{
	DIR *d = opendir(procdir);
	struct dirent *de;
	regex_t re;
	size_t n = 0;

	if (d == NULL)
		return 0;
	if (regcomp(&re, pattern, REG_EXTENDED | REG_ICASE | REG_NOSUB) != 0) {
		closedir(d);
		return 0;
	}
	while ((de = readdir(d)) != NULL && n < max) {
		char status[4096], cmd[4096];

		if (isdigit((unsigned char)de->d_name[0]) &&
		    process_text(procdir, de->d_name, status, sizeof status, cmd, sizeof cmd) >=
		        0 &&
		    regexec(&re, cmd, 0, NULL, 0) == 0)
			pids[n++] = (int)strtol(de->d_name, NULL, 10);
	}
	regfree(&re);
	closedir(d);
	return n;
}

int64_t
procfs_pss_kb(const char *procdir, const int *pids, size_t n)
{
	int64_t sum = -1;

	for (size_t i = 0; i < n; i++) {
		int64_t pss = process_pss_kb(procdir, pids[i]);

		if (pss >= 0)
			sum = (sum < 0 ? 0 : sum) + pss;
	}
	return sum;
}

int64_t
procfs_available_kb(const char *procdir)
{
	char path[512], text[8192];
	struct meminfo mi;

	snprintf(path, sizeof path, "%s/meminfo", procdir);
	if (read_small(path, text, sizeof text) <= 0 || meminfo_parse(text, &mi) != 0)
		return -1;
	return mi.available_kb;
}
