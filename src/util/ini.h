/*
 * A small INI reader for spillway.conf and gcloud's configuration files:
 *
 *	# comment            ; comment
 *	[section]
 *	key = value
 *	[section "name"]     (a named subsection, as git config has them)
 *	key = "quoted value with \" and \\"
 *
 * Values run to the end of the line (no inline comments: URLs hold '#').
 * A section appears once, a key once in its section, and a NUL byte nowhere:
 * each is an error naming the line (and the first one's), never last-wins or
 * a value cut short. Pure: it reads the text and calls back; the callback
 * decides what a key means. Errors name the line.
 */
#ifndef SPILLWAY_INI_H
#define SPILLWAY_INI_H

#include <stddef.h>

/* Return 0 to go on, or a negative error with *cause set to stop. */
typedef int ini_cb(const char *section, const char *name, const char *key, const char *value,
    int line, void *arg, char **cause);

/* 0, or the callback's error, or -EINVAL for a syntax error; *line is where. */
int ini_parse(const char *text, size_t len, ini_cb *, void *arg, int *line, char **cause);

#endif
