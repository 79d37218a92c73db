/*
 * Requests to the control API, as control_answer() routes them for the
 * socket and the library: a daemon runs in this process on its built-in
 * emulator, passive (it acts only when asked). The input is
 * "METHOD\nPATH\nDAYS\nBODY"; an empty DAYS is no query.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/control.h"
#include "config/config.h"
#include "cli/local-emulator.h"
#include "fuzz.h"
#include "util/clock.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "vm/daemon.h"

static uv_loop_t loop;
static struct clock clk;
static struct config cfg;
static struct daemon *d;
static bool started;
static char *env[5];
static struct local_emulator emu; /* as `run --provider emulator` has it */

static void
on_started(void *arg, int error, const char *cause)
{
	(void)arg;
	if (error != 0) {
		fprintf(stderr, "fuzz_control: the daemon did not start: %s\n", cause);
		abort();
	}
	started = true;
}

static void
once(void)
{
	char dir[] = "/tmp/spillway-fuzz-control-XXXXXX", *cause = NULL;
	struct daemon_opts o = {0};

	if (d != NULL)
		return;
	if (mkdtemp(dir) == NULL)
		abort();
	env[0] = xasprintf("HOME=%s", dir);
	env[1] = xasprintf("XDG_STATE_HOME=%s/state", dir);
	env[2] = xasprintf("XDG_RUNTIME_DIR=%s/run", dir);
	env[3] = xstrdup("SPILLWAY_LOG_LEVEL=error");
	jx_init();
	log_set_level(LOG_LEVEL_ERROR);
	if (config_load(&cfg, NULL, env, &cause) != 0)
		abort();
	uv_loop_init(&loop);
	clock_real(&clk);
	if (local_emulator_start(&loop, &clk, &cfg, NULL, &emu, &cause) != 0) {
		fprintf(stderr, "fuzz_control: the emulator: %s\n", cause);
		abort();
	}
	o.cfg = &cfg;
	o.clock = &clk;
	o.cloud_at = &emu.at;
	o.passive = true;
	o.env = env;
	o.on_started = on_started;
	if (daemon_new(&loop, &o, &d, &cause) != 0) {
		fprintf(stderr, "fuzz_control: %s\n", cause);
		abort();
	}
	while (!started)
		uv_run(&loop, UV_RUN_ONCE);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *method, *path, *days, *body;
	unsigned status = 0;
	json_t *doc;

	once();
	text = fuzz_text(data, size);
	method = text;
	if ((path = strchr(method, '\n')) == NULL || (days = strchr(path + 1, '\n')) == NULL ||
	    (body = strchr(days + 1, '\n')) == NULL) {
		free(text);
		return 0;
	}
	*path++ = *days++ = *body++ = '\0';
	doc = control_answer(d, method, path, *days != '\0' ? days : NULL, body,
	    size - (size_t)(body - text), &status);
	/* Every request gets a document and a status, whatever it was. */
	if (doc == NULL || status < 200 || status > 599)
		abort();
	json_decref(doc);
	free(text);
	uv_run(&loop, UV_RUN_NOWAIT);
	return 0;
}
