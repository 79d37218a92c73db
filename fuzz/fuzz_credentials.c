/*
 * Credentials files (service-account keys with their PEM, authorized_user
 * files) as read from disk, and the token endpoint's answers. The reader's
 * own functions, included whole so their static parts run.
 */
#include "../src/cloud/auth.c"

#include "fuzz.h"

static char path[64];
static uv_loop_t loop;
static struct clock clk;

static void
once(void)
{
	int fd;

	if (path[0] != '\0')
		return;
	snprintf(path, sizeof path, "/tmp/spillway-fuzz-creds-XXXXXX");
	if ((fd = mkstemp(path)) == -1)
		abort();
	close(fd);
	uv_loop_init(&loop);
	clock_real(&clk);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_sources src = {0};
	struct auth *a;
	char *cause = NULL;

	once();
	if (size < 1)
		return 0;
	/* The first byte: a file, or a token answer. */
	a = xcalloc(1, sizeof *a);
	a->loop = &loop;
	a->clock = &clk;
	if (data[0] & 1) {
		if (write_file_atomic(path, data + 1, size - 1, 0600) != 0)
			abort();
		read_file_credentials(a, path, "fuzz", &src, &cause);
	} else {
		a->source = xstrdup("fuzz");
		uv_timer_init(&loop, &a->timer);
		a->timer.data = a;
		take_token(a, "https://oauth2.googleapis.com/token", (const char *)data + 1,
		    size - 1, &cause);
	}
	free(cause);
	auth_free(a);
	uv_run(&loop, UV_RUN_NOWAIT);
	return 0;
}
