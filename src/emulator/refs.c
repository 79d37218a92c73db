/*
 * Resource references in every form Google takes: full URLs on either of
 * Google's hosts (www.googleapis.com, compute.googleapis.com) or on the
 * emulator's own base URL (where a client pointed at it builds its links,
 * as gcloud does), and partial ones ("projects/P/zones/Z/machineTypes/T",
 * "zones/Z/machineTypes/T", "global/networks/default"). Each reduces to one
 * form, its path from "projects/", which is what the emulator stores and
 * links on www.googleapis.com (GCE_LINK), as Google does.
 */
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/str.h"
#include "util/xmalloc.h"

static const char *const google_bases[] = {
    "https://www.googleapis.com/compute/v1/",
    "https://compute.googleapis.com/compute/v1/",
};

char *
ref_path(const struct emulator *emu, const char *ref)
{
	const char *p = ref;
	size_t own = strlen(emu->url);

	for (size_t i = 0; i < nitems(google_bases); i++)
		if (str_prefix(p, google_bases[i]))
			p += strlen(google_bases[i]);
	if (strncmp(p, emu->url, own) == 0 && str_prefix(p + own, "/compute/v1/"))
		p += own + strlen("/compute/v1/");
	/* Any other URL is another API's, or another server's. */
	if (strstr(p, "://") != NULL || *p == '\0' || *p == '/' || strstr(p, "//") != NULL ||
	    str_suffix(p, "/") || strpbrk(p, "?#") != NULL)
		return NULL;
	for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2)
		if ((s == p || s[-1] == '/') && (s[2] == '/' || s[2] == '\0'))
			return NULL;
	if (str_prefix(p, "projects/"))
		return xstrdup(p);
	return xasprintf("projects/%s/%s", emu->project, p);
}

bool
ref_valid(const struct emulator *emu, const char *ref)
{
	char *path = ref_path(emu, ref);
	bool ok = path != NULL;

	free(path);
	return ok;
}

char *
ref_link(const struct emulator *emu, const char *ref)
{
	char *path = ref_path(emu, ref), *link;

	if (path == NULL)
		return NULL;
	link = xasprintf(GCE_LINK "%s", path);
	free(path);
	return link;
}

const char *
ref_in_project(const struct emulator *emu, const char *path, const char *prefix)
{
	size_t n = strlen(emu->project);

	if (!str_prefix(path, "projects/") || strncmp(path + 9, emu->project, n) != 0 ||
	    path[9 + n] != '/' || !str_prefix(path + 10 + n, prefix))
		return NULL;
	return path + 10 + n + strlen(prefix);
}
