/*
 * An instance's serial console (port 1), as getSerialPortOutput reads it: the
 * lines a Debian VM writes as it boots and runs its startup script, written
 * at the instance's transitions, and, for a guest that runs the real agent,
 * the agent's own log. The emulator does not run startup scripts (its guest
 * plays what they start), and its console says so where a VM's would show
 * the script's output. The console keeps its last 512 KiB, as Google keeps
 * the last megabyte or so.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emulator/internal.h"
#include "util/clock.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define SERIAL_KEEP (512 * 1024)

/* A console line's time, as syslog writes it: "Dec  8 00:20:36". */
static void
stamp_of(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%b %e %H:%M:%S", &tm);
}

static void PRINTFLIKE(2, 3) serial_line(struct inst *inst, const char *fmt, ...)
{
	char stamp[32], *line;
	va_list ap;

	stamp_of(emu_now_ms(inst->emu), stamp);
	va_start(ap, fmt);
	line = xvasprintf(fmt, ap);
	va_end(ap);
	if (inst->serial.len > SERIAL_KEEP) {
		char *nl = memchr(inst->serial.data + inst->serial.len / 2, '\n',
		    inst->serial.len - inst->serial.len / 2);
		size_t cut = nl != NULL ? (size_t)(nl + 1 - inst->serial.data) : inst->serial.len;

		memmove(inst->serial.data, inst->serial.data + cut, inst->serial.len - cut);
		inst->serial.len -= cut;
		inst->serial_start += cut;
	}
	buf_printf(&inst->serial, "%s %s %s\n", stamp, inst->name, line);
	free(line);
}

void
serial_boot(struct inst *inst)
{
	const char *script = inst_attribute(inst, "startup-script");

	buf_addstr(&inst->serial, "SeaBIOS (version 1.8.2-google)\nBooting from Hard Disk 0...\n");
	serial_line(inst, "kernel: Linux version 6.1.0-41-cloud-amd64 (Debian 6.1.158-1)");
	serial_line(inst,
	    "systemd[1]: Started google-guest-agent.service - Google Compute "
	    "Engine Guest Agent.");
	serial_line(inst, "google_metadata_script_runner[612]: Starting startup scripts.");
	if (script != NULL) {
		serial_line(inst,
		    "google_metadata_script_runner[612]: Found startup-script in "
		    "metadata.");
		serial_line(inst,
		    "google_metadata_script_runner[612]: startup-script: (%zu bytes; "
		    "the emulator does not run it: its guest plays what it starts)",
		    strlen(script));
	}
	serial_line(inst, "google_metadata_script_runner[612]: Finished running startup scripts.");
}

void
serial_stop(struct inst *inst)
{
	serial_line(inst, "systemd-shutdown[1]: Powering off.");
	buf_addstr(&inst->serial, "reboot: Power down\n");
}

/* One line of the agent's log as the console shows it: "Mon DD HH:MM:SS NAME ident: what". */
static void
agent_line(struct buf *out, const struct inst *inst, const char *line, size_t len)
{
	const char *sp = memchr(line, ' ', len);
	char stamp[32] = "", *t = sp != NULL ? xstrndup(line, (size_t)(sp - line)) : NULL;
	int64_t ms;

	if (t != NULL && time_parse_rfc3339(t, &ms) == 0) {
		stamp_of(ms, stamp);
		len -= (size_t)(sp + 1 - line);
		line = sp + 1;
	}
	free(t);
	buf_printf(
	    out, "%s%s%s %.*s\n", stamp, *stamp != '\0' ? " " : "", inst->name, (int)len, line);
}

char *
serial_text(struct inst *inst, size_t *start)
{
	const char *root = guest_root(inst);
	struct buf out = BUF_INIT(SIZE_MAX);
	char *path, *log;

	if (inst->serial.len > 0)
		buf_add(&out, inst->serial.data, inst->serial.len);
	if (root != NULL) {
		path = xasprintf("%s/var/log/spillway/agent.log", root);
		if (read_file(path, SERIAL_KEEP, &log, NULL) == 0) {
			for (char *l = log, *nl; *l != '\0'; l = *nl != '\0' ? nl + 1 : nl) {
				nl = l + strcspn(l, "\n");
				agent_line(&out, inst, l, (size_t)(nl - l));
			}
			free(log);
		}
		free(path);
	}
	*start = inst->serial_start;
	if (out.data == NULL)
		return xstrdup("");
	buf_addch(&out, '\0');
	return out.data;
}
