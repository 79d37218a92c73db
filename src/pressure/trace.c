#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pressure/trace.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define TRACE_MAX (256 << 20)

int
trace_format(const struct pressure_sample *s, char *buf, size_t size)
{
	int n = snprintf(buf, size, "t=%" PRId64 " ev=%d", s->t_ms, s->event ? 1 : 0);

	if (s->has_psi)
		n += snprintf(buf + n, size - (size_t)n,
		    " some=%" PRIu64 " full=%" PRIu64 " sa10=%.2f sa60=%.2f fa10=%.2f fa60=%.2f",
		    s->psi.some.total_us, s->psi.full.total_us, s->psi.some.avg10,
		    s->psi.some.avg60, s->psi.full.avg10, s->psi.full.avg60);
	n += snprintf(buf + n, size - (size_t)n,
	    " mt=%" PRId64 " ma=%" PRId64 " st=%" PRId64 " sf=%" PRId64 " si=%" PRIu64
	    " so=%" PRIu64 " mf=%" PRIu64 " rf=%" PRIu64 " ra=%" PRIu64 "\n",
	    s->mem.total_kb, s->mem.available_kb, s->mem.swap_total_kb, s->mem.swap_free_kb,
	    s->vm.pswpin, s->vm.pswpout, s->vm.pgmajfault, s->vm.refault_file, s->vm.refault_anon);
	return n;
}

enum kind { K_I64, K_U64, K_DBL, K_BOOL };

int
trace_parse_line(const char *line, struct pressure_sample *s, char **why)
{
	const struct {
		const char *key;
		enum kind kind;
		void *to;
		bool psi;
	} fields[] = {
	    {"t", K_I64, &s->t_ms, false},
	    {"ev", K_BOOL, &s->event, false},
	    {"some", K_U64, &s->psi.some.total_us, true},
	    {"full", K_U64, &s->psi.full.total_us, true},
	    {"sa10", K_DBL, &s->psi.some.avg10, true},
	    {"sa60", K_DBL, &s->psi.some.avg60, true},
	    {"fa10", K_DBL, &s->psi.full.avg10, true},
	    {"fa60", K_DBL, &s->psi.full.avg60, true},
	    {"mt", K_I64, &s->mem.total_kb, false},
	    {"ma", K_I64, &s->mem.available_kb, false},
	    {"st", K_I64, &s->mem.swap_total_kb, false},
	    {"sf", K_I64, &s->mem.swap_free_kb, false},
	    {"si", K_U64, &s->vm.pswpin, false},
	    {"so", K_U64, &s->vm.pswpout, false},
	    {"mf", K_U64, &s->vm.pgmajfault, false},
	    {"rf", K_U64, &s->vm.refault_file, false},
	    {"ra", K_U64, &s->vm.refault_anon, false},
	};
	enum { NFIELDS = sizeof fields / sizeof fields[0] };
	bool seen[NFIELDS] = {false};
	char *copy = xstrdup(line), **tokens = str_split(str_trim(copy), ' ', NULL);
	int error = 0;

	memset(s, 0, sizeof *s);
	for (char **t = tokens; *t != NULL && error == 0; t++) {
		char *eq = strchr(*t, '=');
		size_t i;

		if (eq == NULL) {
			*why = xasprintf("'%s' is not key=value", *t);
			error = -EINVAL;
			break;
		}
		*eq = '\0';
		for (i = 0; i < NFIELDS && strcmp(fields[i].key, *t) != 0; i++)
			;
		if (i == NFIELDS || seen[i]) {
			*why = xasprintf(
			    "field '%s' is %s", *t, i == NFIELDS ? "unknown" : "given twice");
			error = -EINVAL;
			break;
		}
		seen[i] = true;
		switch (fields[i].kind) {
		case K_I64:
			error = parse_int64(eq + 1, 0, INT64_MAX, fields[i].to);
			break;
		case K_U64: {
			int64_t v;

			if ((error = parse_int64(eq + 1, 0, INT64_MAX, &v)) == 0)
				*(uint64_t *)fields[i].to = (uint64_t)v;
			break;
		}
		case K_DBL:
			error = parse_double(eq + 1, 0, 100, fields[i].to);
			break;
		case K_BOOL: {
			int64_t v;

			if ((error = parse_int64(eq + 1, 0, 1, &v)) == 0)
				*(bool *)fields[i].to = v == 1;
			break;
		}
		}
		if (error != 0)
			*why = xasprintf("field '%s' has the bad value '%s'", *t, eq + 1);
		if (fields[i].psi)
			s->has_psi = true;
	}
	if (error == 0 && (!seen[0] || !seen[8] || !seen[9])) {
		*why = xstrdup("fields t, mt and ma are required");
		error = -EINVAL;
	}
	if (error == 0 && s->has_psi && (!seen[2] || !seen[3])) {
		*why = xstrdup("a PSI sample needs both 'some' and 'full'");
		error = -EINVAL;
	}
	s->psi.has_full = s->has_psi;
	s->mem.has_available = true;
	str_list_free(tokens);
	free(copy);
	return error != 0 ? -EINVAL : 0;
}

int
trace_load(const char *path, struct trace *out, char **cause)
{
	char *text = NULL, *line, *next, *why = NULL;
	struct trace t = {NULL, 0};
	size_t cap = 0;
	int error, lineno = 0;

	if ((error = read_file(path, TRACE_MAX, &text, NULL)) != 0) {
		*cause = xasprintf("cannot read trace '%s': %s", path,
		    error == -E2BIG ? "larger than 256 MiB" : strerror(-error));
		return error;
	}
	for (line = text; line != NULL && *line != '\0'; line = next) {
		struct pressure_sample s;

		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (lineno == 1 && strcmp(line, TRACE_HEADER) != 0) {
			*cause =
			    xasprintf("%s:1: not a spillway pressure trace (the first line must be "
			              "'%s')",
			        path, TRACE_HEADER);
			error = -EINVAL;
			break;
		}
		if (*line == '#' || *str_trim(line) == '\0')
			continue;
		if (trace_parse_line(line, &s, &why) != 0) {
			*cause = xasprintf("%s:%d: %s", path, lineno, why);
			error = -EINVAL;
			break;
		}
		if (t.n > 0 && s.t_ms < t.samples[t.n - 1].t_ms) {
			*cause = xasprintf("%s:%d: time goes back (%" PRId64 " after %" PRId64 ")",
			    path, lineno, s.t_ms, t.samples[t.n - 1].t_ms);
			error = -EINVAL;
			break;
		}
		if (t.n == cap) {
			cap = cap ? cap * 2 : 256;
			t.samples = xreallocarray(t.samples, cap, sizeof *t.samples);
		}
		t.samples[t.n++] = s;
	}
	if (error == 0 && t.n == 0) {
		*cause = xasprintf("%s: the trace has no samples", path);
		error = -EINVAL;
	}
	free(why);
	free(text);
	if (error != 0) {
		free(t.samples);
		return error;
	}
	*out = t;
	return 0;
}

void
trace_free(struct trace *t)
{
	free(t->samples);
	t->samples = NULL;
	t->n = 0;
}
