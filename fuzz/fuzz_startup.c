/*
 * The startup-script renderer: settings as a user would give them (each
 * field of the input, split at NULs, a backend.* value), loaded and
 * checked as the daemon loads them, then rendered into a VM's metadata.
 * What is accepted must reach the VM unchanged: as data, every value the
 * setting it came from, the environment one line per word.
 */
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "fuzz.h"
#include "util/compat.h"
#include "util/str.h"
#include "vm/startup.h"

static const struct {
	const char *set, *attr;
	size_t offset;
} fields[] = {
    {"backend.git", "spillway-backend-git", offsetof(struct config, backend_git)},
    {"backend.ref", "spillway-backend-ref", offsetof(struct config, backend_ref)},
    {"backend.dir", "spillway-backend-dir", offsetof(struct config, backend_dir)},
    {"backend.install", "spillway-install", offsetof(struct config, backend_install)},
    {"backend.start", "spillway-start", offsetof(struct config, backend_start)},
    {"backend.health_path", "spillway-health-path", offsetof(struct config, health_path)},
    {"backend.cloudsql", "spillway-cloudsql", offsetof(struct config, cloudsql)},
    {"backend.log_dir", "spillway-log-dir", offsetof(struct config, vm_log_dir)},
    {"backend.env", NULL, offsetof(struct config, backend_env)},
};

static const char *
item(const struct startup *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->items[i].key, key) == 0)
			return s->items[i].value;
	return "";
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *env[] = {"HOME=/nonexistent", "XDG_STATE_HOME=/tmp/spillway-fuzz-state", NULL};
	const char *sets[nitems(fields) + 1] = {0};
	char *owned[nitems(fields)] = {0}, *cause = NULL;
	struct config_args a = {NULL, sets};
	const uint8_t *p = data, *end = data + size;
	struct config c;
	struct startup s;
	size_t n = 0;

	for (size_t i = 0; i < nitems(fields) && p < end; i++) {
		const uint8_t *nul = memchr(p, '\0', (size_t)(end - p));
		size_t len = nul != NULL ? (size_t)(nul - p) : (size_t)(end - p);
		char *v = fuzz_text(p, len);

		owned[n] = xasprintf("%s=%s", fields[i].set, v);
		sets[n] = owned[n];
		n++;
		free(v);
		p += len + 1;
	}
	if (config_load(&c, &a, env, &cause) == 0) {
		startup_render(&s, &c, "vm-1", "vision", "00", "-----BEGIN CERTIFICATE-----\n");
		for (size_t i = 0; i < nitems(fields); i++) {
			const char *want = *(char **)((char *)&c + fields[i].offset);

			if (fields[i].attr != NULL && strcmp(item(&s, fields[i].attr), want) != 0)
				abort(); /* a value changed on its way to the VM */
		}
		/* No environment line but KEY=VALUE, none with a line break inside. */
		{
			char **lines = str_split(item(&s, "spillway-env"), '\n', NULL);

			for (char **l = lines; *l != NULL; l++)
				if (**l != '\0' &&
				    (strchr(*l, '=') == NULL || strchr(*l, '\r') != NULL))
					abort();
			str_list_free(lines);
		}
		startup_release(&s);
		config_free(&c);
	}
	free(cause);
	for (size_t i = 0; i < n; i++)
		free(owned[i]);
	return 0;
}
