/*
 * One logging vocabulary for the whole tree, after OpenBSD's log.h:
 * log_warn appends strerror(errno), log_warnx does not, fatal/fatalx exit and
 * are for start-up errors and broken invariants only.
 *
 * Secrets: any module that holds a token, a private key or a lease secret
 * registers it with log_secret(); every line is scrubbed of registered secrets
 * before it is written, so a secret that slips into a message (a URL, an error
 * text from a server) is printed as "[redacted]". The logger keeps its own copy
 * and forgets it on log_forget_secret() or log_close().
 */
#ifndef SPILLWAY_LOG_H
#define SPILLWAY_LOG_H

#include <stdarg.h>
#include <stdio.h>

#include "util/compat.h"

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void log_init(const char *ident, enum log_level level);
void log_set_level(enum log_level);
enum log_level log_get_level(void);
int log_parse_level(const char *, enum log_level *);
const char *log_level_name(enum log_level);
/* Prefix each line with the local time (daemons logging to a file or tty). */
void log_set_timestamps(int on);
/* Also append every line to this file (opened by the caller, not closed here). */
void log_set_file(FILE *);
void log_close(void);

void log_secret(const char *secret);
void log_forget_secret(const char *secret);
/* Scrub registered secrets from s in place of a copy; returns a new string. */
char *log_redact(const char *s);

void log_warn(const char *, ...) PRINTFLIKE(1, 2);
void log_warnx(const char *, ...) PRINTFLIKE(1, 2);
void log_info(const char *, ...) PRINTFLIKE(1, 2);
void log_debug(const char *, ...) PRINTFLIKE(1, 2);
NORETURN void fatal(const char *, ...) PRINTFLIKE(1, 2);
NORETURN void fatalx(const char *, ...) PRINTFLIKE(1, 2);

#endif
