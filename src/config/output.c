/* The settings shown: their names and help, their values as text and JSON, what changed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/internal.h"
#include "util/buf.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define keys  config_keys
#define NKEYS config_nkeys_all

size_t
config_nkeys(void)
{
	return NKEYS;
}

const char *
config_key_name(size_t i)
{
	return keys[i].name;
}

const char *
config_key_env(size_t i)
{
	return keys[i].env;
}

const char *
config_key_help(size_t i)
{
	return keys[i].help;
}

bool
config_key_restart(size_t i)
{
	return keys[i].restart;
}

enum config_source
config_source_of(const struct config *cfg, const char *key)
{
	ssize_t i = find_key(key);

	return i >= 0 ? cfg->origins[i].source : CONFIG_DEFAULT;
}

/* Components as text, to compare two configurations' sets at once. */
char *
components_text(const struct config *c)
{
	struct buf b = BUF_INIT(1 << 20);

	for (size_t i = 0; i < c->ncomponents; i++) {
		const struct component_def *d = &c->components[i];

		buf_printf(&b, "%s %lld %lld %s %s %s\n %s\n %s\n %s\n %s\n %g\n", d->name,
		    (long long)d->size_mb, (long long)d->priority, d->match, d->listen, d->local,
		    d->local_unit, d->local_start, d->local_stop, d->local_health,
		    d->local_start_timeout_s);
	}
	return buf_detach(&b, NULL);
}

size_t
config_diff(
    const struct config *a, const struct config *b, size_t *out, size_t max, bool *components)
{
	size_t n = 0;
	char *ca = components_text(a), *cb = components_text(b);

	for (size_t i = 0; i < NKEYS; i++) {
		char *va = config_value_text(a, i), *vb = config_value_text(b, i);

		if (strcmp(va, vb) != 0 && n < max)
			out[n++] = i;
		free(va);
		free(vb);
	}
	*components = strcmp(ca, cb) != 0;
	free(ca);
	free(cb);
	return n;
}

char *
config_value_text(const struct config *cfg, size_t i)
{
	const void *field = (const char *)cfg + keys[i].offset;

	switch (keys[i].type) {
	case T_BOOL:
		return xstrdup(*(const bool *)field ? "true" : "false");
	case T_INT:
		return xasprintf("%lld", (long long)*(const int64_t *)field);
	case T_DOUBLE:
		return xasprintf("%g", *(const double *)field);
	default:
		return xstrdup(*(char *const *)field);
	}
}

static json_t *
value_json(const struct config *cfg, size_t i)
{
	const void *field = (const char *)cfg + keys[i].offset;

	switch (keys[i].type) {
	case T_BOOL:
		return json_boolean(*(const bool *)field);
	case T_INT:
		return json_integer(*(const int64_t *)field);
	case T_DOUBLE:
		return json_real(*(const double *)field);
	default:
		return json_string(*(char *const *)field);
	}
}

json_t *
config_to_json(const struct config *cfg)
{
	json_t *values = json_array();

	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_origin *o = &cfg->origins[i];

		json_array_append_new(values,
		    jx_pack("{s:s, s:s, s:o, s:s, s:o, s:s, s:b}", "key", keys[i].name, "env",
		        keys[i].env, "value", value_json(cfg, i), "source", source_label(o->source),
		        "origin", o->where != NULL ? json_string(o->where) : json_null(), "help",
		        keys[i].help, "restart_only", keys[i].restart));
	}
	json_t *comps = json_array();

	for (size_t i = 0; i < cfg->ncomponents; i++) {
		const struct component_def *c = &cfg->components[i];

		json_array_append_new(comps,
		    jx_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:s, s:o}",
		        "name", c->name, "size_mb", (json_int_t)c->size_mb, "priority",
		        (json_int_t)c->priority, "match", c->match, "listen", c->listen, "local",
		        c->local, "local_unit", c->local_unit, "local_start", c->local_start,
		        "local_stop", c->local_stop, "local_health", c->local_health,
		        "local_start_timeout_s", c->local_start_timeout_s, "source",
		        source_label(c->origin.source), "origin",
		        c->origin.where ? json_string(c->origin.where) : json_null()));
	}
	return jx_pack("{s:i, s:o, s:o, s:o}", "schema_version", 1, "file",
	    cfg->file != NULL ? json_string(cfg->file) : json_null(), "values", values,
	    "components", comps);
}

void
config_print(const struct config *cfg, FILE *f)
{
	size_t wk = 3, we = 3, wv = 5;
	char **vals = xcalloc(NKEYS, sizeof *vals);

	for (size_t i = 0; i < NKEYS; i++) {
		vals[i] = config_value_text(cfg, i);
		if (*vals[i] == '\0') {
			free(vals[i]);
			vals[i] = xstrdup("(unset)");
		}
		/* A 0 that means something else says what it is now. */
		if (keys[i].offset == OFF(lease_minutes) && cfg->lease_minutes == 0) {
			free(vals[i]);
			vals[i] =
			    xasprintf("0 (two idle timeouts: %g)", 2 * cfg->idle_timeout_minutes);
		}
		wk = strlen(keys[i].name) > wk ? strlen(keys[i].name) : wk;
		we = strlen(keys[i].env) > we ? strlen(keys[i].env) : we;
		wv = strlen(vals[i]) > wv ? strlen(vals[i]) : wv;
	}
	if (cfg->file != NULL)
		fprintf(f, "config file: %s\n\n", cfg->file);
	else
		fprintf(f,
		    "config file: none read (--config, $SPILLWAY_CONFIG, else "
		    "$XDG_CONFIG_HOME/spillway/spillway.conf)\n\n");
	fprintf(f, "%-*s  %-*s  %-*s  %s\n", (int)wk, "KEY", (int)we, "ENV", (int)wv, "VALUE",
	    "SOURCE");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_origin *o = &cfg->origins[i];

		fprintf(f, "%-*s  %-*s  %-*s  %s%s%s%s\n", (int)wk, keys[i].name, (int)we,
		    keys[i].env, (int)wv, vals[i], source_label(o->source), o->where ? " (" : "",
		    o->where ? o->where : "", o->where ? ")" : "");
		free(vals[i]);
	}
	free(vals);
	fprintf(f, "\n%-12s %8s  %8s  %-48s %s\n", "COMPONENT", "SIZE MB", "PRIORITY", "MATCH",
	    "SOURCE");
	for (size_t i = 0; i < cfg->ncomponents; i++) {
		const struct component_def *c = &cfg->components[i];

		fprintf(f, "%-12s %8lld  %8lld  %-48s %s%s%s%s\n", c->name, (long long)c->size_mb,
		    (long long)c->priority, c->match, source_label(c->origin.source),
		    c->origin.where ? " (" : "", c->origin.where ? c->origin.where : "",
		    c->origin.where ? ")" : "");
		if (*c->listen != '\0')
			fprintf(f, "%-12s route: listen %s, local %s\n", "", c->listen,
			    *c->local != '\0' ? c->local : "none");
		if (*c->local_unit != '\0')
			fprintf(f, "%-12s local copy: systemd user unit %s\n", "", c->local_unit);
		else if (*c->local_start != '\0')
			fprintf(f, "%-12s local copy: start %s; stop %s\n", "", c->local_start,
			    *c->local_stop != '\0' ? c->local_stop : "(SIGTERM)");
		if (component_managed(c))
			fprintf(f, "%-12s healthy when %s answers%s, within %g s of its start\n",
			    "", *c->local_health != '\0' ? c->local_health : c->local,
			    *c->local_health != '\0' ? " 2xx" : " a connection",
			    c->local_start_timeout_s);
	}
}

int
config_components(
    const struct config *cfg, const char *csv, char *out, size_t size, char *why, size_t whylen)
{
	char **names = str_split(csv, ',', NULL);
	size_t used = 0;
	int error = 0;

	out[0] = '\0';
	for (char **p = names; *p != NULL && error == 0; p++) {
		const char *name = str_trim(*p);
		bool known = false;

		for (size_t k = 0; k < cfg->ncomponents && !known; k++)
			known = strcasecmp(cfg->components[k].name, name) == 0;
		if (!known) {
			struct buf all = BUF_INIT(1024);

			for (size_t k = 0; k < cfg->ncomponents; k++)
				buf_printf(&all, "%s%s", k ? ", " : "", cfg->components[k].name);
			snprintf(why, whylen, "'%s' is not a configured component (configured: %s)",
			    name, buf_str(&all));
			buf_release(&all);
			error = -EINVAL;
		}
		used += (size_t)snprintf(
		    out + used, used < size ? size - used : 0, "%s%s", used ? "," : "", name);
	}
	str_list_free(names);
	return error;
}
