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
	return c;
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
		{
			char **field = listen ? &c->listen : &c->local;

			free(*field);
			*field = xstrdup(value);
		}
	} else {
		*cause = xasprintf("%s: unknown key '%s' in [component \"%s\"]; known: size_mb, "
		                   "priority, match, listen, local",
		    where, key, name);
		return -EINVAL;
	}
	free(c->origin.where);
	c->origin.source = CONFIG_FILE;
	c->origin.where = xstrdup(where);
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
		free(cfg->components[i].origin.where);
	}
	free(cfg->components);
	cfg->components = NULL;
	cfg->ncomponents = 0;
}
