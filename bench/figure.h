/*
 * A figure for bench/run's table, beside the bench's own lines: "= NAME\tVALUE\tUNIT".
 * NAME is stable across runs (bench/run takes the median and spread of each).
 */
#ifndef SPILLWAY_BENCH_FIGURE_H
#define SPILLWAY_BENCH_FIGURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "util/str.h"

static inline void
figure(const char *name, double value, const char *unit)
{
	printf("= %s\t%.6g\t%s\n", name, value, unit);
	fflush(stdout);
}

/* A number field of /proc/PID/status ("VmRSS:", "voluntary_ctxt_switches:"), or -1. */
static inline long
proc_status(pid_t pid, const char *field)
{
	char path[64], *text = NULL, *p;
	long v = -1;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (read_file(path, 1 << 16, &text, NULL) == 0 && (p = strstr(text, field)) != NULL)
		v = strtol(p + strlen(field), NULL, 10);
	free(text);
	return v;
}

#endif
