/*
 * The components: the built-in presets (the original system's), the
 * [component "NAME"] sections that change them or add others, and their
 * routes' addresses (docs/offload.md).
 */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/internal.h"
#include "net/addr.h"
#include "net/http.h"
#include "util/str.h"
#include "util/xmalloc.h"

/* The original system's presets: the smallest set first, the heaviest last. */
static const struct {
	const char *name;
	int64_t size_mb, priority;
	const char *match;
} presets[] = {
    {"vision", 2048, 1, "vision|yolo|opencv|detectron|clip"},
    {"chatbots", 1536, 2, "chatbot|rasa|botpress|dialogflow"},
    {"ml_models", 4096, 3, "torch|tensorflow|onnx|sklearn|transformers"},
    {"local_llm", 8192, 4, "llama|ollama|vllm|gpt4all|koboldcpp|text-generation"},
};

static struct component_def *
component_add(struct config *cfg, const char *name)
{
	struct component_def *c;

	cfg->components = xreallocarray(cfg->components, cfg->ncomponents + 1, sizeof *c);
	c = &cfg->components[cfg->ncomponents++];
	memset(c, 0, sizeof *c);
	c->name = xstrdup(name);
	c->size_mb = 1024;
	c->priority = 100;
	c->match = xstrdup("");
	c->listen = xstrdup("");
	c->local = xstrdup("");
	c->local_unit = xstrdup("");
	c->local_start = xstrdup("");
	c->local_stop = xstrdup("");
	c->local_health = xstrdup("");
	c->local_start_timeout_s = 120;
	return c;
}

bool
components_include(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; *p != '\0';) {
		size_t len;

		p += strspn(p, ", ");
		len = strcspn(p, ",");
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (len == n && n > 0 && strncasecmp(p, name, n) == 0)
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

bool
component_managed(const struct component_def *c)
{
	return *c->local_unit != '\0' || *c->local_start != '\0';
}

/* A local copy's key (local_unit, local_start, local_stop, local_health): NULL, or why not. */
static const char *
local_value(const char *key, const char *value, char *buf, size_t size)
{
	if (*value == '\0')
		return NULL;
	/* Not starting with '-': systemctl would take it for an option. */
	if (strcmp(key, "local_unit") == 0)
		return config_matches(value, "^[A-Za-z0-9:_.@][A-Za-z0-9:_.@-]{0,249}$")
		    ? NULL
		    : "not a systemd unit name (letters, digits, ':', '_', '.', '@' and '-', not "
		      "first), such as llm.service";
	if (strcmp(key, "local_health") == 0) {
		if (!config_matches(value, "^http://[][A-Za-z0-9.:-]+(/[A-Za-z0-9._~/?&=%-]*)?$"))
			return "not an http:// URL of the local copy's health, such as "
			       "http://127.0.0.1:8101/health";
		if (!check_url_port(value))
			return "its port is not a number from 1 to 65535";
		/* The one plain http spillway speaks (net/http.h): a copy on this machine's. */
		return http_url_is_loopback(value)
		    ? NULL
		    : "not on this machine's loopback (127.0.0.0/8, [::1], localhost), where a local "
		      "copy serves";
	}
	return check_command(value, buf, size);
}

static char **
local_field(struct component_def *c, const char *key)
{
	if (strcmp(key, "local_unit") == 0)
		return &c->local_unit;
	if (strcmp(key, "local_start") == 0)
		return &c->local_start;
	if (strcmp(key, "local_stop") == 0)
		return &c->local_stop;
	if (strcmp(key, "local_health") == 0)
		return &c->local_health;
	return NULL;
}

const struct component_def *
config_component(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ncomponents; i++)
		if (strcasecmp(cfg->components[i].name, name) == 0)
			return &cfg->components[i];
	return NULL;
}

int
component_key(struct config *cfg, const char *name, const char *key, const char *value,
    const char *where, char **cause)
{
	struct component_def *c = (struct component_def *)config_component(cfg, name);
	char **field;
	int64_t n;

	if (!config_matches(name, "^[a-z][a-z0-9_-]{0,31}$")) {
		*cause = xasprintf("%s: component name '%s' is not allowed: 1 to 32 lowercase "
		                   "letters, digits, '_' and '-', starting with a letter",
		    where, name);
		return -EINVAL;
	}
	if (c == NULL)
		c = component_add(cfg, name);
	if (strcmp(key, "size_mb") == 0 || strcmp(key, "priority") == 0) {
		bool size = key[0] == 's';

		if (parse_int64(value, size ? 1 : 0, size ? 1048576 : 1000, &n) != 0) {
			*cause = xasprintf("invalid value '%s' for %s of component '%s' (in %s); "
			                   "allowed: %s",
			    value, key, name, where,
			    size ? "megabytes, from 1 to 1048576"
			         : "a whole number from 0 to 1000");
			return -EINVAL;
		}
		if (size)
			c->size_mb = n;
		else
			c->priority = n;
	} else if (strcmp(key, "match") == 0) {
		regex_t re;

		if (*value == '\0' ||
		    regcomp(&re, value, REG_EXTENDED | REG_ICASE | REG_NOSUB) != 0) {
			*cause =
			    xasprintf("invalid value '%s' for match of component '%s' (in %s); "
			              "allowed: an extended regular expression, such as "
			              "'llama|ollama'",
			        value, name, where);
			return -EINVAL;
		}
		regfree(&re);
		free(c->match);
		c->match = xstrdup(value);
	} else if (strcmp(key, "listen") == 0 || strcmp(key, "local") == 0) {
		bool listen = key[1] == 'i';
		struct sockaddr_storage ss;
		char why[160];

		why[0] = '\0';
		if (*value != '\0' && addr_parse(value, &ss, why, sizeof why) == 0 && listen &&
		    !addr_loopback((struct sockaddr *)&ss))
			snprintf(
			    why, sizeof why, "a route listens on loopback only (127.0.0.1, ::1)");
		if (why[0] != '\0') {
			*cause =
			    xasprintf("invalid value '%s' for %s of component '%s' (in %s): %s; "
			              "allowed: ADDRESS:PORT, such as %s",
			        value, key, name, where, why,
			        listen ? "127.0.0.1:9101" : "127.0.0.1:8101");
			return -EINVAL;
		}
		field = listen ? &c->listen : &c->local;
		free(*field);
		*field = xstrdup(value);
	} else if ((field = local_field(c, key)) != NULL) {
		char buf[256];
		const char *why = local_value(key, value, buf, sizeof buf);

		if (why != NULL) {
			*cause =
			    xasprintf("invalid value '%s' for %s of component '%s' (in %s): %s",
			        value, key, name, where, why);
			return -EINVAL;
		}
		free(*field);
		*field = xstrdup(value);
	} else if (strcmp(key, "local_start_timeout_s") == 0) {
		double t;

		if (parse_double(value, 1, 86400, &t) != 0) {
			*cause =
			    xasprintf("invalid value '%s' for local_start_timeout_s of component "
			              "'%s' (in %s); allowed: seconds, from 1 to 86400",
			        value, name, where);
			return -EINVAL;
		}
		c->local_start_timeout_s = t;
	} else {
		*cause = xasprintf("%s: unknown key '%s' in [component \"%s\"]; known: size_mb, "
		                   "priority, match, listen, local, local_unit, local_start, "
		                   "local_stop, local_health, local_start_timeout_s",
		    where, key, name);
		return -EINVAL;
	}
	free(c->origin.where);
	c->origin.source = CONFIG_FILE;
	c->origin.where = xstrdup(where);
	return 0;
}

/* What holds between a component's keys, and between components, once all are read. */
int
components_check(const struct config *cfg, char **cause)
{
	for (size_t i = 0; i < cfg->ncomponents; i++) {
		const struct component_def *c = &cfg->components[i];
		const char *where = c->origin.where != NULL ? c->origin.where : "";

		if (*c->match == '\0') {
			*cause =
			    xasprintf("component '%s' (%s) has no 'match': give the pattern of its "
			              "processes, such as match = llama|ollama",
			        c->name, where);
			return -EINVAL;
		}
		if (*c->local != '\0' && *c->listen == '\0') {
			*cause =
			    xasprintf("component '%s' (%s) has 'local' but no 'listen': the route "
			              "needs the address the application uses, such as listen = "
			              "127.0.0.1:9101",
			        c->name, where);
			return -EINVAL;
		}
		for (size_t j = 0; j < i && *c->listen != '\0'; j++)
			if (strcmp(c->listen, cfg->components[j].listen) == 0) {
				*cause =
				    xasprintf("components '%s' and '%s' both listen on %s: give "
				              "each route its own address",
				        cfg->components[j].name, c->name, c->listen);
				return -EINVAL;
			}
		if (*c->local_unit != '\0' && *c->local_start != '\0') {
			*cause =
			    xasprintf("component '%s' (%s) has both local_unit and local_start: "
			              "its local copy is run one way, a systemd user unit or "
			              "commands; keep one",
			        c->name, where);
			return -EINVAL;
		}
		if (*c->local_stop != '\0' && *c->local_start == '\0') {
			*cause = xasprintf("component '%s' (%s) has local_stop but no local_start: "
			                   "give the command that starts its local copy too",
			    c->name, where);
			return -EINVAL;
		}
		if (!component_managed(c)) {
			if (*c->local_health != '\0') {
				*cause = xasprintf(
				    "component '%s' (%s) has local_health but spillway does not run "
				    "its local copy: give local_unit or local_start, or remove it",
				    c->name, where);
				return -EINVAL;
			}
			continue;
		}
		/* Stopped only while its traffic is carried to the VM: it needs a route. */
		if (*c->listen == '\0' || *c->local == '\0') {
			*cause = xasprintf(
			    "component '%s' (%s) has %s, but spillway stops a local "
			    "copy only while a route carries its traffic to a VM: give "
			    "it listen (where the application connects) and local (where "
			    "the copy serves)",
			    c->name, where, *c->local_unit != '\0' ? "local_unit" : "local_start");
			return -EINVAL;
		}
	}
	return 0;
}

void
components_preset(struct config *cfg)
{
	for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
		struct component_def *c = component_add(cfg, presets[i].name);

		c->size_mb = presets[i].size_mb;
		c->priority = presets[i].priority;
		free(c->match);
		c->match = xstrdup(presets[i].match);
	}
}

void
components_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->ncomponents; i++) {
		free(cfg->components[i].name);
		free(cfg->components[i].match);
		free(cfg->components[i].listen);
		free(cfg->components[i].local);
		free(cfg->components[i].local_unit);
		free(cfg->components[i].local_start);
		free(cfg->components[i].local_stop);
		free(cfg->components[i].local_health);
		free(cfg->components[i].origin.where);
	}
	free(cfg->components);
	cfg->components = NULL;
	cfg->ncomponents = 0;
}
