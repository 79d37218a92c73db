#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/xmalloc.h"

#define LOG_LINE_MAX 8192
#define SECRET_MIN   8 /* shorter strings would redact ordinary words */

static const char *log_ident = "spillway";
static enum log_level log_level = LOG_LEVEL_INFO;
static int log_timestamps;
static int log_journal; /* stderr is journald: use <N> priority prefixes */
static FILE *log_file;
static char **secrets;
static size_t nsecrets;

static const char *level_names[] = {"error", "warning", "info", "debug"};
static const int level_syslog[] = {3, 4, 6, 7};

/* journald sets JOURNAL_STREAM=dev:ino for the stream it reads. */
static int
stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%lu:%lu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return st.st_dev == dev && st.st_ino == ino;
}

void
log_init(const char *ident, enum log_level level)
{
	log_ident = ident;
	log_level = level;
	log_journal = stderr_is_journal();
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

int
log_parse_level(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < nitems(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0 ||
		    (i == LOG_LEVEL_WARN && strcmp(s, "warn") == 0)) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void
log_set_timestamps(int on)
{
	log_timestamps = on;
}

void
log_set_file(FILE *f)
{
	log_file = f;
}

void
log_secret(const char *s)
{
	if (s == NULL || strlen(s) < SECRET_MIN)
		return;
	for (size_t i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], s) == 0)
			return;
	secrets = xreallocarray(secrets, nsecrets + 1, sizeof *secrets);
	secrets[nsecrets++] = xstrdup(s);
}

static void
secret_free(char *s)
{
	/* The copy is a secret too: do not leave it in freed memory. */
	explicit_bzero(s, strlen(s));
	free(s);
}

void
log_forget_secret(const char *s)
{
	for (size_t i = 0; s != NULL && i < nsecrets; i++) {
		if (strcmp(secrets[i], s) == 0) {
			secret_free(secrets[i]);
			secrets[i] = secrets[--nsecrets];
			return;
		}
	}
}

void
log_close(void)
{
	for (size_t i = 0; i < nsecrets; i++)
		secret_free(secrets[i]);
	free(secrets);
	secrets = NULL;
	nsecrets = 0;
}

char *
log_redact(const char *s)
{
	static const char mark[] = "[redacted]";
	char *out = xstrdup(s);

	for (size_t i = 0; i < nsecrets; i++) {
		size_t n = strlen(secrets[i]);
		char *p;

		while ((p = strstr(out, secrets[i])) != NULL) {
			size_t head = (size_t)(p - out);
			char *next = xasprintf("%.*s%s%s", (int)head, out, mark, p + n);

			free(out);
			out = next;
		}
	}
	return out;
}

static void vlog(enum log_level, int, const char *, va_list) PRINTFLIKE(3, 0);

static void
vlog(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX], stamp[32] = "";
	int saved = errno;
	char *clean;
	size_t len;

	if (level > log_level)
		return;
	vsnprintf(line, sizeof line, fmt, ap);
	len = strlen(line);
	if (with_errno && len < sizeof line)
		snprintf(line + len, sizeof line - len, ": %s", strerror(saved));
	clean = log_redact(line);

	if (log_timestamps && !log_journal) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		len = strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
		snprintf(stamp + len, sizeof stamp - len, ".%03ld ", ts.tv_nsec / 1000000);
	}
	if (log_journal)
		fprintf(stderr, "<%d>%s\n", level_syslog[level], clean);
	else if (level == LOG_LEVEL_INFO)
		fprintf(stderr, "%s%s: %s\n", stamp, log_ident, clean);
	else
		fprintf(stderr, "%s%s: %s: %s\n", stamp, log_ident, level_names[level], clean);
	if (log_file != NULL) {
		fprintf(log_file, "%s%s: %s\n", stamp, level_names[level], clean);
		fflush(log_file);
	}
	free(clean);
	errno = saved;
}

#define LOG_FN(name, level, with_errno)                                                            \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		vlog(level, with_errno, fmt, ap);                                                  \
		va_end(ap);                                                                        \
	}

LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
