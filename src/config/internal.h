/*
 * What the configuration's files share, and nobody else sees: the table of
 * settings (config.c), the components (components.c), its validators
 * (checks.c) and its output (output.c).
 */
#ifndef SPILLWAY_CONFIG_INTERNAL_H
#define SPILLWAY_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config/config.h"

enum type { T_BOOL, T_INT, T_DOUBLE, T_STRING };

struct key {
	const char *name; /* section.key, as in the file */
	const char *env;
	enum type type;
	size_t offset;
	const char *def; /* the default, as text: parsed like any other value */
	double min, max;
	/* For strings: NULL when the value is fine, else why it is not. */
	const char *(*check)(const char *, char *buf, size_t size);
	const char *allowed; /* what is allowed, for error messages */
	const char *help;
	bool restart; /* a running daemon takes it at its next start, not at SIGHUP */
};

#define OFF(f) offsetof(struct config, f)

extern const struct key config_keys[];
extern const size_t config_nkeys_all;

/* config.c */
ssize_t find_key(const char *name); /* its index, or -1 */
const char *source_label(enum config_source);

/* components.c */
void components_preset(struct config *);
void components_free(struct config *);
/* A key of a [component "NAME"] section (where: "FILE:LINE"). */
int component_key(struct config *, const char *name, const char *key, const char *value,
    const char *where, char **cause);
int components_check(const struct config *, char **cause);

/* output.c */
char *components_text(const struct config *);

/* checks.c */
int config_matches(const char *, const char *pattern); /* an extended regex */
const char *check_project(const char *, char *buf, size_t size);
const char *check_region(const char *, char *buf, size_t size);
const char *check_zone(const char *, char *buf, size_t size);
const char *check_zones(const char *, char *buf, size_t size);
const char *check_machine_type(const char *, char *buf, size_t size);
/* A URL's port, if it has one, is from 1 to 65535. */
bool check_url_port(const char *url);
const char *check_endpoint(const char *, char *buf, size_t size);
const char *check_token_uri(const char *, char *buf, size_t size);
const char *check_label_value(const char *, char *buf, size_t size);
const char *check_orphan_policy(const char *, char *buf, size_t size);
const char *check_image(const char *, char *buf, size_t size);
const char *check_image_or_baked(const char *, char *buf, size_t size);
const char *check_image_family(const char *, char *buf, size_t size);
const char *check_disk_type(const char *, char *buf, size_t size);
const char *check_tags(const char *, char *buf, size_t size);
const char *check_path_or_empty(const char *, char *buf, size_t size);
const char *check_command(const char *, char *buf, size_t size);
const char *check_path(const char *, char *buf, size_t size);
const char *check_git_url(const char *, char *buf, size_t size);
const char *check_git_ref(const char *, char *buf, size_t size);
const char *check_vm_path(const char *, char *buf, size_t size);
const char *check_vm_path_or_empty(const char *, char *buf, size_t size);
const char *check_shell_text(const char *, char *buf, size_t size);
const char *check_url_path(const char *, char *buf, size_t size);
const char *check_packages(const char *, char *buf, size_t size);
const char *check_env_list(const char *, char *buf, size_t size);
const char *check_cloudsql(const char *, char *buf, size_t size);
const char *check_log_level(const char *, char *buf, size_t size);

#endif
