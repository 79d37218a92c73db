/*
 * The validators of string settings: NULL when a value is fine, else what is
 * wrong with it, one line, a literal or written into buf.
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/internal.h"
#include "net/http.h"
#include "util/log.h"
#include "util/str.h"

int
config_matches(const char *s, const char *pattern)
{
	regex_t re;
	int ok;

	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
		fatalx("bad built-in pattern %s", pattern);
	ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

const char *
check_project(const char *s, char *buf, size_t size)
{
	if (*s == '\0' || config_matches(s, "^([a-z0-9.-]+:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$"))
		return NULL;
	return "not a project ID";
}

const char *
check_region(const char *s, char *buf, size_t size)
{
	return config_matches(s, "^[a-z]+-[a-z]+[0-9]+$") ? NULL : "not a region name";
}

const char *
check_zone(const char *s, char *buf, size_t size)
{
	return config_matches(s, "^[a-z]+-[a-z]+[0-9]+-[a-z]$") ? NULL : "not a zone name";
}

const char *
check_zones(const char *s, char *buf, size_t size)
{
	char **list = str_split(s, ',', NULL);
	const char *why = NULL;

	for (char **z = list; *z != NULL && why == NULL; z++)
		if (check_zone(str_trim(*z), buf, size) != NULL)
			why = "one of the zones is not a zone name";
	str_list_free(list);
	return why;
}

const char *
check_machine_type(const char *s, char *buf, size_t size)
{
	return config_matches(s, "^[a-z][a-z0-9]*(-[a-z0-9]+)+$") ? NULL
	                                                          : "not a machine type name";
}

/*
 * A URL's port, when it gives one, is from 1 to 65535: a typo such as :99999
 * is refused here rather than as a call that fails each time it is made.
 */
bool
check_url_port(const char *url)
{
	const char *p = strstr(url, "://");
	char *end;
	long n;

	if (p == NULL)
		return true;
	p += 3;
	p += *p == '[' ? strcspn(p, "]/") : strcspn(p, ":/?#");
	if (*p == ']')
		p++;
	if (*p != ':')
		return true;
	if (!isdigit((unsigned char)p[1]))
		return false;
	n = strtol(p + 1, &end, 10);
	return n >= 1 && n <= 65535 && (*end == '\0' || strchr("/?#", *end) != NULL);
}

const char *
check_endpoint(const char *s, char *buf, size_t size)
{
	if (!config_matches(s, "^https?://[^/?#]+(/[^?#]*)?$"))
		return "not an http(s) URL without query";
	if (!check_url_port(s))
		return "its port is not a number from 1 to 65535";
	if (str_prefix(s, "http://") && !http_url_is_loopback(s))
		return "plain http is only allowed to a loopback address";
	return NULL;
}

const char *
check_token_uri(const char *s, char *buf, size_t size)
{
	return *s == '\0' ? NULL : check_endpoint(s, buf, size);
}

const char *
check_label_value(const char *s, char *buf, size_t size)
{
	return *s == '\0' || config_matches(s, "^[a-z0-9_-]{1,63}$") ? NULL : "not a label value";
}

const char *
check_orphan_policy(const char *s, char *buf, size_t size)
{
	return strcmp(s, "delete") == 0 || strcmp(s, "adopt") == 0 || strcmp(s, "report") == 0
	    ? NULL
	    : "not a policy";
}

const char *
check_image(const char *s, char *buf, size_t size)
{
	return config_matches(
	           s, "^(projects/[a-z][-a-z0-9.:]*/)?global/images/(family/)?[a-z][-a-z0-9]*$")
	    ? NULL
	    : "not an image path";
}

const char *
check_image_or_baked(const char *s, char *buf, size_t size)
{
	return strcmp(s, "baked") == 0 ? NULL : check_image(s, buf, size);
}

/* An image's name is the family's and a 21-character stamp: within Compute Engine's 63. */
const char *
check_image_family(const char *s, char *buf, size_t size)
{
	return config_matches(s, "^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$") ? NULL
	                                                              : "not an image family name";
}

bool
config_family_valid(const char *s)
{
	return check_image_family(s, NULL, 0) == NULL;
}

const char *
check_disk_type(const char *s, char *buf, size_t size)
{
	return strcmp(s, "pd-balanced") == 0 || strcmp(s, "pd-standard") == 0 ? NULL
	                                                                      : "not a disk type";
}

const char *
check_tags(const char *s, char *buf, size_t size)
{
	return *s == '\0' || config_matches(s, "^[a-z][-a-z0-9]{0,62}(,[a-z][-a-z0-9]{0,62})*$")
	    ? NULL
	    : "not a list of network tags";
}

const char *
check_path_or_empty(const char *s, char *buf, size_t size)
{
	return *s == '\0' || s[0] == '/' ? NULL : "not an absolute path";
}

/* A hook must split into arguments now, not fail when it first runs. */
const char *
check_command(const char *s, char *buf, size_t size)
{
	char **argv = NULL, *cause = NULL;

	if (*s == '\0')
		return NULL;
	if (str_argv(s, &argv, &cause) != 0) {
		snprintf(buf, size, "%s", cause);
		free(cause);
		return buf;
	}
	str_list_free(argv);
	return NULL;
}

const char *
check_path(const char *s, char *buf, size_t size)
{
	return s[0] == '/' ? NULL : "not an absolute path";
}

/* Values the VM reads (docs/startup.md): data there, but refused here when malformed. */
const char *
check_git_url(const char *s, char *buf, size_t size)
{
	return *s == '\0' ||
	        config_matches(s,
	            "^(https://|ssh://|file:///|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)"
	            "[A-Za-z0-9._~:/?#@!&+=%,-]*$")
	    ? NULL
	    : "not a git URL";
}

const char *
check_git_ref(const char *s, char *buf, size_t size)
{
	if (!config_matches(s, "^[A-Za-z0-9_][A-Za-z0-9._/-]*$") || strstr(s, "..") != NULL ||
	    strstr(s, "//") != NULL || str_suffix(s, "/") || str_suffix(s, ".lock"))
		return "not a branch or tag name";
	return NULL;
}

const char *
check_vm_path(const char *s, char *buf, size_t size)
{
	return config_matches(s, "^(/[A-Za-z0-9._-]+)+/?$") && strstr(s, "/..") == NULL
	    ? NULL
	    : "not a plain absolute path";
}

const char *
check_vm_path_or_empty(const char *s, char *buf, size_t size)
{
	return *s == '\0' ? NULL : check_vm_path(s, buf, size);
}

/* A command the VM's shell runs: any text, but no control characters but tabs. */
const char *
check_shell_text(const char *s, char *buf, size_t size)
{
	for (; *s != '\0'; s++)
		if (iscntrl((unsigned char)*s) && *s != '\t')
			return "it holds a control character";
	return NULL;
}

const char *
check_url_path(const char *s, char *buf, size_t size)
{
	return config_matches(s, "^/[A-Za-z0-9._~/?&=%-]*$") ? NULL : "not a URL path";
}

const char *
check_packages(const char *s, char *buf, size_t size)
{
	char **names = str_split(s, ' ', NULL);
	const char *bad = NULL;

	for (char **n = names; *n != NULL && bad == NULL; n++)
		if (**n != '\0' && !config_matches(*n, "^[a-z0-9][a-z0-9+.-]+$")) {
			snprintf(buf, size,
			    "'%.60s' is not a Debian package name (lowercase letters, digits, '+', '-' "
			    "and '.', at least two)",
			    *n);
			bad = buf;
		}
	str_list_free(names);
	return bad;
}

const char *
check_env_list(const char *s, char *buf, size_t size)
{
	char **argv = NULL, *cause = NULL;
	const char *bad = NULL;

	if (str_argv(s, &argv, &cause) != 0) {
		snprintf(buf, size, "%s", cause);
		free(cause);
		return buf;
	}
	for (char **a = argv; *a != NULL && bad == NULL; a++) {
		const char *eq = strchr(*a, '=');

		if (eq == NULL || !config_matches(*a, "^[A-Za-z_][A-Za-z0-9_]*=") ||
		    check_shell_text(eq + 1, buf, size) != NULL) {
			snprintf(buf, size,
			    "'%.80s' is not KEY=VALUE (a name of letters, digits and '_', "
			    "a value without control characters)",
			    *a);
			bad = buf;
		}
	}
	str_list_free(argv);
	return bad;
}

const char *
check_cloudsql(const char *s, char *buf, size_t size)
{
	return *s == '\0' ||
	        config_matches(
	            s, "^([a-z0-9.-]+:)?[a-z][-a-z0-9]*:[a-z]+-[a-z]+[0-9]+:[a-z][-a-z0-9]*$")
	    ? NULL
	    : "not an instance connection name";
}

const char *
check_log_level(const char *s, char *buf, size_t size)
{
	enum log_level l;

	return log_parse_level(s, &l) == 0 ? NULL : "not a log level";
}
