/*
 * Pressure traces: every sample the monitor takes, one line each, so a run can
 * be replayed through the same code with the injected clock.
 *
 *	# spillway pressure trace 1
 *	# source /sys/fs/cgroup/unified/load/memory.pressure mode trigger
 *	t=1795773972842 ev=1 some=123456 full=23456 sa10=1.20 sa60=0.30 fa10=1.10 fa60=0.28
 *	    mt=24576000 ma=23000000 st=0 sf=0 si=0 so=0 mf=4003 rf=484078 ra=0
 *
 * (one line). t: milliseconds since the epoch; ev: 1 when a PSI trigger fired;
 * some/full: PSI totals in microseconds; sa10..fa60: PSI averages; mt, ma, st,
 * sf: MemTotal, MemAvailable, SwapTotal, SwapFree in kB; si, so, mf, rf, ra:
 * pswpin, pswpout, pgmajfault, workingset_refault_file and _anon counters.
 * Without PSI the some..fa60 fields are absent. t, mt and ma are required,
 * times must not go back, and nothing else may appear.
 */
#ifndef SPILLWAY_TRACE_H
#define SPILLWAY_TRACE_H

#include <stddef.h>
#include <stdio.h>

#include "pressure/pressure.h"

#define TRACE_HEADER "# spillway pressure trace 1"

struct trace {
	struct pressure_sample *samples;
	size_t n;
};

/* Format one sample as a line (with its newline) into buf. */
int trace_format(const struct pressure_sample *, char *buf, size_t size);
int trace_parse_line(const char *line, struct pressure_sample *, char **why);
/* The whole file, or nothing: a bad line is an error naming the file and the line. */
int trace_load(const char *path, struct trace *, char **cause);
void trace_free(struct trace *);

#endif
