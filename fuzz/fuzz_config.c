/*
 * The configuration as a user writes it: an INI file, and values from the
 * environment. The first byte chooses: odd, the rest is the file whole (NUL
 * bytes and all); even, the rest is split at its first NUL: before it the
 * file, after it NAME=VALUE lines taken as the environment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz.h"
#include "util/str.h"
#include "vm/startup.h"

static char dir[64], file[96];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul;
	size_t flen;
	char *envtext, **lines, *env[40], *cause = NULL, why[512];
	struct config_args a = {file, NULL};
	struct config c;
	int n = 0;

	if (size == 0)
		return 0;
	nul = (data[0] & 1) ? NULL : memchr(data + 1, '\0', size - 1);
	data++;
	size--;
	flen = nul != NULL ? (size_t)(nul - data) : size;
	envtext = nul != NULL ? fuzz_text(nul + 1, size - flen - 1) : xstrdup("");
	lines = str_split(envtext, '\n', NULL);
	if (dir[0] == '\0') {
		snprintf(dir, sizeof dir, "/tmp/spillway-fuzz-config-XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(file, sizeof file, "%s/spillway.conf", dir);
	}
	if (write_file_atomic(file, data, flen, 0600) != 0)
		abort();
	env[n++] = "HOME=/nonexistent";
	env[n++] = "XDG_STATE_HOME=/tmp/spillway-fuzz-state";
	for (char **l = lines; *l != NULL && n < 39; l++)
		if (strchr(*l, '=') != NULL)
			env[n++] = *l;
	env[n] = NULL;
	if (config_load(&c, &a, env, &cause) == 0) {
		/* What loads renders into a VM's metadata, within the limits or refused. */
		startup_check(&c, 2048, why, sizeof why);
		config_free(&c);
	} else if (cause == NULL || *cause == '\0') {
		abort(); /* a refusal must say why */
	}
	free(cause);
	str_list_free(lines);
	free(envtext);
	return 0;
}
