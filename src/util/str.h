/*
 * Strict parsing of numbers and booleans from text, and small string helpers.
 * The parsers accept the whole string or nothing: "5x", "", " 5", "nan", "1e3"
 * (where plain decimals are asked for) are errors. They return 0, -EINVAL (not of the type) or
 * -ERANGE (outside [min, max] or not representable).
 */
#ifndef SPILLWAY_STR_H
#define SPILLWAY_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int parse_int64(const char *, int64_t min, int64_t max, int64_t *);
/* A plain decimal ("0.25", "-3", "5."): no exponent, nan, inf or hex. */
int parse_double(const char *, double min, double max, double *);
/* A number as JSON writes it, exponents included ("1e3"). */
int parse_number(const char *, double min, double max, double *);
int parse_bool(const char *, bool *);

/* s, or def when s is NULL. */
static inline const char *
or_default(const char *s, const char *def)
{
	return s != NULL ? s : def;
}

/* Both there and the same (NULL equals nothing). */
static inline bool
str_eq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

bool str_prefix(const char *s, const char *prefix);
bool str_suffix(const char *s, const char *suffix);
/* Strip leading and trailing white space in place. */
char *str_trim(char *);
/* Make s valid UTF-8 in place: each byte of an invalid sequence becomes '?'. */
void str_scrub_utf8(char *s);
/* Split on sep; empty fields are dropped. The list ends with NULL. */
char **str_split(const char *, char sep, size_t *n);
void str_list_free(char **);
size_t str_list_len(char *const *);
/* Levenshtein distance, for "did you mean" hints. */
size_t str_distance(const char *, const char *);
/*
 * Split a command line into arguments, without a shell: white space separates,
 * '...' and "..." quote, a backslash escapes the next character. No variables,
 * globs or redirections are interpreted. 0, or -EINVAL with a cause.
 */
int str_argv(const char *, char ***argv, char **cause);
/* A placeholder and its value (NULL: ""), for str_expand: name with its braces, "{name}". */
struct str_var {
	const char *name, *value;
};
/* word with each known placeholder replaced by its value; an unknown {word} stays. Caller frees. */
char *str_expand(const char *word, const struct str_var *, size_t n);
/*
 * A command line split into arguments as a shell would (str_argv), each
 * argument expanded (str_expand): nothing else is interpreted. 0 and *argv,
 * or -EINVAL and why, also for an empty command.
 */
int str_command(const char *command, const struct str_var *, size_t n, char ***argv, char **cause);
/* A copy of an environment (environ), for a child's (str_list_free). */
char **env_dup(char *const *env);
/* NAME=VALUE in a NULL-ended environment, in place of NAME's value; value NULL: unchanged. */
void env_put(char ***env, const char *name, const char *value);
/* Percent-encode all but RFC 3986's unreserved characters (form values, query values). */
char *url_encode(const char *);
/* qsort's comparator for an array of strings (char *), in strcmp's order. */
int str_ptr_cmp(const void *, const void *);
/* The reverse, as forms and queries are sent: %XX a byte, '+' a space; a stray '%' as it is. */
char *url_decode(const char *);
/* Read a whole file of at most max bytes. 0 or -errno (-E2BIG when larger). */
int read_file(const char *path, size_t max, char **out, size_t *len);
/* Write a file atomically (temporary + rename) with the given mode. */
int write_file_atomic(const char *path, const void *, size_t, unsigned mode);
/* Remove a directory and everything under it (not following links). 0 or -errno. */
int remove_tree(const char *path);
/*
 * A new private directory (0700) "PREFIX-XXXXXX" in $TMPDIR when that is an
 * absolute path, else in /tmp: *path (the caller frees), or -errno with a cause.
 */
int make_temp_dir(const char *prefix, char **path, char **cause);
/*
 * The soft limit of open files raised to the hard one, and the hard one to
 * want where the process may: the limit now (-1: none).
 */
long raise_fd_limit(long want);
/* mkdir -p: each missing directory created with mode. 0, or -errno. */
int make_dirs(const char *path, unsigned mode);

#endif
