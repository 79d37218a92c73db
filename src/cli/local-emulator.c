/* The emulator in this process and the daemon's way to it: local-emulator.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/local-emulator.h"
#include "config/config.h"
#include "emulator/emulator.h"
#include "util/str.h"
#include "util/xmalloc.h"

int
local_emulator_start(uv_loop_t *loop, const struct clock *clock, const struct config *cfg,
    const struct emulator_opts *opts, struct local_emulator *l, char **cause)
{
	struct emulator_opts o;
	char *sa;
	int error;

	memset(l, 0, sizeof *l);
	if (opts != NULL)
		o = *opts;
	else
		emulator_opts_default(&o);
	o.clock = clock;
	o.guest_port = (int)cfg->backend_port;
	o.agent_port = (int)cfg->agent_port;
	if ((error = emulator_new(loop, &o, &l->emu, cause)) != 0)
		return error;
	/* Its key, for the client to authenticate exactly as against Google. */
	l->credentials = xasprintf("%s/emulator-credentials.json", cfg->state_dir);
	sa = emulator_service_account_json(l->emu);
	if ((error = make_dirs(cfg->state_dir, 0700)) == 0)
		error = write_file_atomic(l->credentials, sa, strlen(sa), 0600);
	explicit_bzero(sa, strlen(sa));
	free(sa);
	if (error != 0) {
		*cause = xasprintf("cannot write %s: %s", l->credentials, strerror(-error));
		local_emulator_stop(l);
		return error;
	}
	l->at = (struct daemon_cloud){
	    .compute_endpoint = xasprintf("%s/compute/v1/", emulator_url(l->emu)),
	    .billing_endpoint = xasprintf("%s/v1/", emulator_url(l->emu)),
	    .project = xstrdup(o.project),
	    .credentials = l->credentials,
	};
	return 0;
}

void
local_emulator_stop(struct local_emulator *l)
{
	emulator_free(l->emu);
	if (l->credentials != NULL)
		unlink(l->credentials);
	free(l->credentials);
	free(l->at.compute_endpoint);
	free(l->at.billing_endpoint);
	free(l->at.project);
	memset(l, 0, sizeof *l);
}
