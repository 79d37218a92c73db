/*
 * The injectable clock. Every timer and timestamp in spillway reads one of
 * these instead of the system clock, so a test or the demo can run a three-hour
 * VM lifetime in seconds and a replayed trace decides exactly as a live one.
 *
 * A scaled clock runs `scale` virtual seconds per real second, anchored at
 * `epoch_ns` (a real time at which virtual and real agree). Two processes given
 * the same scale and epoch read the same virtual time, which is how the daemon
 * and a separate emulator stay in step. A manual clock moves only when told.
 */
#ifndef SPILLWAY_CLOCK_H
#define SPILLWAY_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

struct clock {
	int64_t epoch_ns;
	double scale;
	bool manual;
	int64_t manual_ns;
};

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S  INT64_C(1000000000)

/* A duration in minutes (a setting's), as milliseconds. */
static inline int64_t
minutes_ms(double minutes)
{
	return (int64_t)(minutes * 60000.0);
}

int64_t realtime_ns(void);
/* CLOCK_MONOTONIC, for measuring intervals (never for timestamps). */
int64_t monotonic_ns(void);
void clock_real(struct clock *);
void clock_scaled(struct clock *, double scale, int64_t epoch_ns);
void clock_manual(struct clock *, int64_t start_ns);
void clock_advance(struct clock *, int64_t ns);
int64_t clock_now_ns(const struct clock *);
int64_t clock_now_ms(const struct clock *);
/* The real delay, in ms (rounded up), for a uv timer to fire after virtual_ms. */
uint64_t clock_timer_ms(const struct clock *, int64_t virtual_ms);

/* "2013-12-13T10:45:23.351-08:00": milliseconds and a numeric offset. */
#define RFC3339_LEN 64
void time_rfc3339(int64_t ms, int offset_min, char out[RFC3339_LEN]);
/* Accepts "Z" or ±hh:mm and any number of fraction digits. 0 or -EINVAL. */
int time_parse_rfc3339(const char *, int64_t *ms);

#endif
