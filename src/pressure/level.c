#include <errno.h>
#include <string.h>
#include <strings.h>

#include "pressure/level.h"

static const char *level_names[] = {"NORMAL", "ELEVATED", "HIGH", "CRITICAL"};
static const char *mode_names[] = {"trigger", "poll", "meminfo", "replay", "macos"};

const char *
pressure_level_name(enum pressure_level l)
{
	return level_names[l];
}

int
pressure_level_parse(const char *s, enum pressure_level *out)
{
	for (int i = 0; i < PRESSURE_LEVELS; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum pressure_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *
pressure_mode_name(enum pressure_mode m)
{
	return mode_names[m];
}

void
level_init(struct level_state *s, int64_t now)
{
	s->level = PRESSURE_NORMAL;
	s->since_ms = now;
	for (int i = 0; i < PRESSURE_LEVELS; i++)
		s->candidate_ms[i] = -1;
	s->calm_ms = -1;
}

/* Does the input meet level l's threshold, armed or (with disarm) held? */
static bool
meets(
    const struct level_config *c, const struct level_input *in, enum pressure_level l, bool disarm)
{
	double k = disarm ? c->disarm_ratio : 1.0;

	switch (l) {
	case PRESSURE_ELEVATED:
		return in->some_pct >= c->elevated_pct * k ||
		    (c->low_available_pct > 0 && in->available_pct >= 0 &&
		        in->available_pct < c->low_available_pct / k);
	case PRESSURE_HIGH:
		return in->some_pct >= c->high_pct * k;
	case PRESSURE_CRITICAL:
		return in->some_pct >= c->critical_pct * k ||
		    in->full_pct >= c->critical_full_pct * k;
	default:
		return true;
	}
}

enum pressure_level
level_target(const struct level_config *c, const struct level_input *in, bool disarm)
{
	for (int l = PRESSURE_CRITICAL; l > PRESSURE_NORMAL; l--)
		if (meets(c, in, (enum pressure_level)l, disarm))
			return (enum pressure_level)l;
	return PRESSURE_NORMAL;
}

struct level_state
level_step(
    const struct level_config *c, struct level_state s, const struct level_input *in, int64_t now)
{
	/* The stall alone: it, not MemAvailable, was there over the whole span. */
	struct level_input stall = *in;

	stall.available_pct = -1;
	/* Candidates: armed at the arm threshold, held down to the disarm threshold. */
	for (int l = PRESSURE_ELEVATED; l < PRESSURE_LEVELS; l++) {
		if (s.candidate_ms[l] < 0) {
			if (meets(c, &stall, (enum pressure_level)l, false))
				s.candidate_ms[l] = now - in->span_ms;
			else if (meets(c, in, (enum pressure_level)l, false))
				s.candidate_ms[l] = now;
		} else if (!meets(c, in, (enum pressure_level)l, true)) {
			s.candidate_ms[l] = -1;
		}
	}
	/*
	 * Rise as far as every level on the way has held for its own sustain time:
	 * a burst that would be CRITICAL still waits for HIGH's sustain.
	 */
	{
		int to = (int)s.level;

		while (to + 1 < PRESSURE_LEVELS && s.candidate_ms[to + 1] >= 0 &&
		    now - s.candidate_ms[to + 1] >= c->sustain_ms[to + 1])
			to++;
		if (to > (int)s.level) {
			s.level = (enum pressure_level)to;
			s.since_ms = now;
			s.calm_ms = -1;
			return s;
		}
	}
	if (s.level == PRESSURE_NORMAL)
		return s;
	/* Fall after the dwell below this level's disarm threshold, to what the input justifies. */
	if (meets(c, in, s.level, true)) {
		s.calm_ms = -1;
		return s;
	}
	if (s.calm_ms < 0)
		s.calm_ms = now;
	if (now - s.calm_ms >= c->dwell_ms) {
		enum pressure_level to = level_target(c, in, false);

		s.level = to < s.level ? to : (enum pressure_level)(s.level - 1);
		s.since_ms = now;
		s.calm_ms = -1;
	}
	return s;
}

struct level_input
macos_level_input(
    const struct level_config *c, int vm_level, double compressed_ratio, double available_pct)
{
	struct level_input in = {.available_pct = available_pct};

	/* The kernel's own verdict stands for a stall just over the threshold it matches. */
	if (vm_level >= 4)
		in.some_pct = c->critical_pct;
	else if (vm_level >= 2)
		in.some_pct = c->high_pct;
	else if (compressed_ratio > 0.5)
		in.some_pct = c->elevated_pct;
	return in;
}
