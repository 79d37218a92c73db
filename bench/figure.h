/*
 * A figure for bench/run's table, beside the bench's own lines: "= NAME\tVALUE\tUNIT".
 * NAME is stable across runs (bench/run takes the median and spread of each).
 */
#ifndef SPILLWAY_BENCH_FIGURE_H
#define SPILLWAY_BENCH_FIGURE_H

#include <stdio.h>

static inline void
figure(const char *name, double value, const char *unit)
{
	printf("= %s\t%.6g\t%s\n", name, value, unit);
	fflush(stdout);
}

#endif
