#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"

int64_t
realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

int64_t
monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

void
clock_real(struct clock *c)
{
	clock_scaled(c, 1.0, 0);
}

void
clock_scaled(struct clock *c, double scale, int64_t epoch_ns)
{
	memset(c, 0, sizeof *c);
	c->scale = scale;
	c->epoch_ns = epoch_ns;
}

void
clock_manual(struct clock *c, int64_t start_ns)
{
	clock_scaled(c, 1.0, 0);
	c->manual = true;
	c->manual_ns = start_ns;
}

void
clock_advance(struct clock *c, int64_t ns)
{
	c->manual_ns += ns;
}

int64_t
clock_now_ns(const struct clock *c)
{
	int64_t real;

	if (c->manual)
		return c->manual_ns;
	real = realtime_ns();
	if (c->scale == 1.0)
		return real;
	return c->epoch_ns + (int64_t)((double)(real - c->epoch_ns) * c->scale);
}

int64_t
clock_now_ms(const struct clock *c)
{
	return clock_now_ns(c) / NS_PER_MS;
}

uint64_t
clock_timer_ms(const struct clock *c, int64_t virtual_ms)
{
	if (virtual_ms <= 0)
		return 0;
	if (c->manual || c->scale == 1.0)
		return (uint64_t)virtual_ms;
	return (uint64_t)ceil((double)virtual_ms / c->scale);
}

void
time_rfc3339(int64_t ms, int offset_min, char out[RFC3339_LEN])
{
	int64_t local = ms + (int64_t)offset_min * 60000;
	int64_t frac = ((local % 1000) + 1000) % 1000;
	time_t secs = (time_t)((local - frac) / 1000);
	int off = offset_min < 0 ? -offset_min : offset_min;
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(out, RFC3339_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%c%02d:%02d",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (int)frac, offset_min < 0 ? '-' : '+', off / 60, off % 60);
}

static int
digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -EINVAL;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

static int
expect(const char **p, const char *one_of)
{
	if (**p == '\0' || strchr(one_of, **p) == NULL)
		return -EINVAL;
	(*p)++;
	return 0;
}

int
time_parse_rfc3339(const char *s, int64_t *ms)
{
	int y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0, sign = 0;
	const char *p = s;
	struct tm tm;

	if (digits(&p, 4, &y) || expect(&p, "-") || digits(&p, 2, &mo) || expect(&p, "-") ||
	    digits(&p, 2, &d) || expect(&p, "Tt") || digits(&p, 2, &h) || expect(&p, ":") ||
	    digits(&p, 2, &mi) || expect(&p, ":") || digits(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.') {
		int scale = 100, n = 0;

		for (p++; *p >= '0' && *p <= '9'; p++, n++) {
			frac += (*p - '0') * scale;
			scale /= 10;
		}
		if (n == 0)
			return -EINVAL;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (digits(&p, 2, &oh) || expect(&p, ":") || digits(&p, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
	    oh > 23 || om > 59)
		return -EINVAL;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*ms = ((int64_t)timegm(&tm) - sign * (oh * 3600 + om * 60)) * 1000 + frac;
	return 0;
}
