#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/str.h"
#include "util/xmalloc.h"

int
parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	long long v;
	char *end;

	if (*s == '\0' || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* strtod within bounds; s already holds only what the caller allows. */
static int
to_double(const char *s, double min, double max, double *out)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(s, &end);
	if (*end != '\0' || end == s)
		return -EINVAL;
	if (errno == ERANGE || !isfinite(v) || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int
parse_double(const char *s, double min, double max, double *out)
{
	const char *p = s;
	size_t digits = 0;

	/* A plain decimal: [+-]digits[.digits]; no exponent, nan, inf or hex. */
	if (*p == '+' || *p == '-')
		p++;
	for (; isdigit((unsigned char)*p); p++)
		digits++;
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++)
			digits++;
	if (digits == 0 || *p != '\0')
		return -EINVAL;
	return to_double(s, min, max, out);
}

int
parse_number(const char *s, double min, double max, double *out)
{
	if (*s == '\0' || isspace((unsigned char)*s))
		return -EINVAL;
	/* strtod takes "nan", "inf" and hex floats; none is a number in JSON. */
	for (const char *p = s; *p != '\0'; p++)
		if (!isdigit((unsigned char)*p) && strchr("+-.eE", *p) == NULL)
			return -EINVAL;
	return to_double(s, min, max, out);
}

int
parse_bool(const char *s, bool *out)
{
	static const char *yes[] = {"true", "1", "yes", "on"};
	static const char *no[] = {"false", "0", "no", "off"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

bool
str_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool
str_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

char *
str_trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

char **
str_split(const char *s, char sep, size_t *np)
{
	char **list = xcalloc(1, sizeof *list);
	size_t n = 0;

	while (*s != '\0') {
		const char *end = strchr(s, sep);
		size_t len = end != NULL ? (size_t)(end - s) : strlen(s);

		if (len > 0) {
			list = xreallocarray(list, n + 2, sizeof *list);
			list[n++] = xstrndup(s, len);
			list[n] = NULL;
		}
		s += len;
		if (*s == sep)
			s++;
	}
	if (np != NULL)
		*np = n;
	return list;
}

void
str_list_free(char **list)
{
	for (char **p = list; p != NULL && *p != NULL; p++)
		free(*p);
	free(list);
}

size_t
str_list_len(char *const *list)
{
	size_t n = 0;

	while (list != NULL && list[n] != NULL)
		n++;
	return n;
}

size_t
str_distance(const char *a, const char *b)
{
	size_t n = strlen(b), *row = xcalloc(n + 1, sizeof *row), d;

	for (size_t j = 0; j <= n; j++)
		row[j] = j;
	for (size_t i = 1; a[i - 1] != '\0'; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= n; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	d = row[n];
	free(row);
	return d;
}

int
read_file(const char *path, size_t max, char **out, size_t *lenp)
{
	struct buf b = BUF_INIT(max);
	char chunk[8192];
	int fd, error = 0;
	ssize_t n;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -errno;
	while ((n = read(fd, chunk, sizeof chunk)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			error = -errno;
			goto out;
		}
		if ((error = buf_add(&b, chunk, (size_t)n)) != 0)
			goto out;
	}
	*out = buf_detach(&b, lenp);
out:
	close(fd);
	buf_release(&b);
	return error;
}

int
write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	const char *p = data;
	int fd, error = 0;

	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) == -1) {
		error = -errno;
		goto out;
	}
	/* The umask may have widened nothing, but an existing file keeps its mode. */
	if (fchmod(fd, mode) == -1)
		error = -errno;
	while (error == 0 && len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			error = -errno;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (error == 0 && fsync(fd) == -1)
		error = -errno;
	if (close(fd) == -1 && error == 0)
		error = -errno;
	if (error == 0 && rename(tmp, path) == -1)
		error = -errno;
	if (error != 0)
		unlink(tmp);
out:
	free(tmp);
	return error;
}

char *
url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(strlen(s) * 3 + 1), *w = out;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (isalnum(*p) || strchr("-._~", *p) != NULL) {
			*w++ = (char)*p;
		} else {
			*w++ = '%';
			*w++ = hex[*p >> 4];
			*w++ = hex[*p & 15];
		}
	}
	*w = '\0';
	return out;
}

int
str_ptr_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int
hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	    : c >= 'a' && c <= 'f'  ? c - 'a' + 10
	    : c >= 'A' && c <= 'F'  ? c - 'A' + 10
	                            : -1;
}

char *
url_decode(const char *s)
{
	char *out = xmalloc(strlen(s) + 1), *w = out;

	for (; *s != '\0'; s++) {
		if (*s == '%' && hex_digit(s[1]) >= 0 && hex_digit(s[2]) >= 0) {
			*w++ = (char)(hex_digit(s[1]) * 16 + hex_digit(s[2]));
			s += 2;
		} else {
			*w++ = *s == '+' ? ' ' : *s;
		}
	}
	*w = '\0';
	return out;
}

char *
str_expand(const char *word, const struct str_var *vars, size_t n)
{
	struct buf b = BUF_INIT(1 << 20);

	for (const char *p = word; *p != '\0';) {
		size_t i = 0;

		for (; i < n; i++)
			if (str_prefix(p, vars[i].name))
				break;
		if (i == n) {
			buf_addch(&b, *p++);
			continue;
		}
		buf_addstr(&b, vars[i].value != NULL ? vars[i].value : "");
		p += strlen(vars[i].name);
	}
	return buf_detach(&b, NULL);
}

int
str_command(const char *command, const struct str_var *vars, size_t n, char ***argv, char **cause)
{
	*argv = NULL;
	if (str_argv(command, argv, cause) != 0)
		return -EINVAL;
	if ((*argv)[0] == NULL) {
		str_list_free(*argv);
		*argv = NULL;
		*cause = xstrdup("the command is empty");
		return -EINVAL;
	}
	for (char **w = *argv; *w != NULL; w++) {
		char *expanded = str_expand(*w, vars, n);

		free(*w);
		*w = expanded;
	}
	return 0;
}

int
str_argv(const char *s, char ***out, char **cause)
{
	char **argv = xcalloc(1, sizeof *argv);
	size_t n = 0;
	struct buf arg = BUF_INIT(SIZE_MAX);
	bool in_arg = false;
	char quote = 0;

	for (const char *p = s;; p++) {
		if (*p == '\0' || (!quote && isspace((unsigned char)*p))) {
			if (quote) {
				*cause = xasprintf("unbalanced %c in '%s'", quote, s);
				buf_release(&arg);
				str_list_free(argv);
				return -EINVAL;
			}
			if (in_arg) {
				argv = xreallocarray(argv, n + 2, sizeof *argv);
				argv[n++] = buf_detach(&arg, NULL);
				argv[n] = NULL;
				in_arg = false;
			}
			if (*p == '\0')
				break;
			continue;
		}
		in_arg = true;
		if (quote != 0 && *p == quote) {
			quote = 0;
		} else if (quote == 0 && (*p == '\'' || *p == '"')) {
			quote = *p;
		} else if (*p == '\\' && quote != '\'' && p[1] != '\0') {
			buf_addch(&arg, *++p);
		} else {
			buf_addch(&arg, *p);
		}
	}
	buf_release(&arg);
	*out = argv;
	return 0;
}

static int
remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : -errno;
}

char **
env_dup(char *const *from)
{
	char **env = xcalloc(1, sizeof *env);
	size_t n = 0;

	for (char *const *p = from; p != NULL && *p != NULL; p++) {
		env = xreallocarray(env, n + 2, sizeof *env);
		env[n++] = xstrdup(*p);
		env[n] = NULL;
	}
	return env;
}

void
env_put(char ***env, const char *name, const char *value)
{
	size_t len = strlen(name), n = 0;

	if (value == NULL)
		return;
	for (; (*env)[n] != NULL; n++) {
		if (strncmp((*env)[n], name, len) == 0 && (*env)[n][len] == '=') {
			free((*env)[n]);
			(*env)[n] = xasprintf("%s=%s", name, value);
			return;
		}
	}
	*env = xreallocarray(*env, n + 2, sizeof **env);
	(*env)[n] = xasprintf("%s=%s", name, value);
	(*env)[n + 1] = NULL;
}

int
make_temp_dir(const char *prefix, char **path, char **cause)
{
	const char *tmp = getenv("TMPDIR");
	char *dir;
	int error;

	if (tmp == NULL || tmp[0] != '/')
		tmp = "/tmp";
	dir = xasprintf("%s/%s-XXXXXX", tmp, prefix);
	if (mkdtemp(dir) == NULL) {
		error = -errno;
		*cause = xasprintf("cannot make a directory in %s: %s (TMPDIR says where; it must be "
		                   "a directory this user can write)",
		    tmp, strerror(errno));
		free(dir);
		return error;
	}
	*path = dir;
	return 0;
}

int
remove_tree(const char *path)
{
	return nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
make_dirs(const char *path, unsigned mode)
{
	char *p = xstrdup(path);
	int error = 0;

	for (char *slash = strchr(p + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST)
			error = -errno;
		*slash = '/';
		if (error != 0)
			break;
	}
	if (error == 0 && mkdir(p, (mode_t)mode) != 0 && errno != EEXIST)
		error = -errno;
	free(p);
	return error;
}

/* The length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n;
	unsigned min;
	unsigned c;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, min = 0x80, c = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, min = 0x800, c = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, min = 0x10000, c = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n;
}

void
str_scrub_utf8(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p != '\0') {
		size_t n = utf8_len(p);

		if (n == 0)
			*p++ = '?';
		else
			p += n;
	}
}

long
raise_fd_limit(long want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want) {
		struct rlimit more = {(rlim_t)want, (rlim_t)want};

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			rl = more;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}
