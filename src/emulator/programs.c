/*
 * A guest's programs run for real, when the emulator is told where they are
 * (--guest-agent, --guest-backend; docs/emulator.md): data/spillway-agent.py
 * as the startup script starts it, on the guest's address, with this
 * emulator as its metadata server and Compute API; and behind it the backend
 * command, or the built-in backend (guest.c) when there is none. Each guest
 * has a root directory, the VM's disk: the agent's key and log, the
 * backend's pid, and a systemctl that does what the agent asks of systemd
 * (stop the backend, power off).
 *
 * The programs die with their VM: their process groups are killed, as a VM
 * that stops takes everything with it; and with the emulator (setpriv
 * --pdeathsig, where there is one). `struct programs` owns its processes and
 * the root, and frees itself once both processes were reaped.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emulator/internal.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define SETPRIV "/usr/bin/setpriv"

struct proc {
	uv_process_t h;
	struct programs *owner;
	const char *what; /* "agent", "backend": for the log */
	bool spawned, exited;
};

struct programs {
	char *root;
	char name[64];
	struct proc agent, backend;
	int live; /* processes spawned and not yet closed */
	bool stopped;
};

/* What the agent asks of systemd, done to this guest. */
static const char systemctl_sh[] =
    "#!/bin/sh\n"
    "# This guest's systemd, as far as its agent asks: the backend stops, the VM powers off.\n"
    "echo \"$*\" >>\"$SPILLWAY_ROOT/systemctl.log\"\n"
    "case \"$*\" in\n"
    "'stop spillway-backend.service')\n"
    "\tif [ -s \"$SPILLWAY_ROOT/backend.pid\" ]; then\n"
    "\t\tkill -TERM \"-$(cat \"$SPILLWAY_ROOT/backend.pid\")\"\n"
    "\telse\n"
    "\t\tcurl -fsS -o /dev/null -X POST -d '{\"healthy\": false}' \"$SPILLWAY_EMULATOR_VM/guest\"\n"
    "\tfi ;;\n"
    "poweroff) exec curl -fsS -o /dev/null -X POST \"$SPILLWAY_EMULATOR_VM/poweroff\" ;;\n"
    "esac\n";

static void
programs_free(struct programs *p)
{
	if (p->root != NULL && remove_tree(p->root) != 0)
		log_warnx("emulator: cannot remove %s", p->root);
	free(p->root);
	free(p);
}

static void
on_closed(uv_handle_t *h)
{
	struct proc *pr = h->data;
	struct programs *p = pr->owner;

	if (--p->live == 0 && p->stopped)
		programs_free(p);
}

static void
on_proc_exit(uv_process_t *h, int64_t status, int signal)
{
	struct proc *pr = h->data;
	struct programs *p = pr->owner;

	pr->exited = true;
	if (!p->stopped)
		log_warnx("emulator: the %s of %s ended (%s %" PRId64 ") while its VM runs",
		    pr->what, p->name, signal != 0 ? "signal" : "status",
		    signal != 0 ? signal : status);
	uv_close((uv_handle_t *)h, on_closed);
}

/* A program of the guest, in a session of its own (its group dies with the VM). */
static int
spawn(uv_loop_t *loop, struct programs *p, struct proc *pr, char **argv, char **env, char **cause)
{
	uv_process_options_t o = {0};
	uv_stdio_container_t io[3] = {{.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 2},
	    {.flags = UV_INHERIT_FD, .data.fd = 2}};
	char **args = argv;
	int error;

	/* Nothing outlives the emulator, not even when it is killed. */
	if (access(SETPRIV, X_OK) == 0) {
		size_t n = 0;

		while (argv[n] != NULL)
			n++;
		args = xcalloc(n + 5, sizeof *args);
		args[0] = SETPRIV;
		args[1] = "--pdeathsig";
		args[2] = "KILL";
		args[3] = "--";
		memcpy(args + 4, argv, n * sizeof *argv);
	}
	pr->owner = p;
	pr->h.data = pr;
	o.file = args[0];
	o.args = args;
	o.env = env;
	o.stdio = io;
	o.stdio_count = 3;
	o.flags = UV_PROCESS_DETACHED;
	o.exit_cb = on_proc_exit;
	error = uv_spawn(loop, &pr->h, &o);
	if (args != argv)
		free(args);
	if (error != 0) {
		*cause = xasprintf("cannot run %s '%s': %s", pr->what, argv[0], uv_strerror(error));
		pr->exited = true;
	}
	/* Spawned or not, the handle is closed once (on_proc_exit, or here). */
	pr->spawned = true;
	p->live++;
	if (error != 0)
		uv_close((uv_handle_t *)&pr->h, on_closed);
	return error != 0 ? -EINVAL : 0;
}

/* The lines KEY=VALUE of the instance's spillway-env, as the startup script passes them. */
static void
backend_env(const struct inst *inst, char ***env)
{
	char **lines = str_split(or_default(inst_attribute(inst, "spillway-env"), ""), '\n', NULL);

	for (char **l = lines; *l != NULL; l++) {
		size_t name = 0;

		while (isalnum((unsigned char)(*l)[name]) || (*l)[name] == '_')
			name++;
		if (name > 0 && (*l)[name] == '=') {
			(*l)[name] = '\0';
			env_put(env, *l, *l + name + 1);
		}
	}
	str_list_free(lines);
}

static int
write_text(const char *root, const char *name, const char *text, unsigned mode)
{
	char *path = xasprintf("%s/%s", root, name);
	int error = write_file_atomic(path, text, strlen(text), mode);

	free(path);
	return error;
}

static int
start_backend(struct inst *inst, struct programs *p, char **env, char **cause)
{
	struct emulator *emu = inst->emu;
	char **argv = NULL, **benv = NULL, port[16], pid[32];
	int error;

	if ((error = str_argv(emu->opts.guest_backend, &argv, cause)) != 0)
		goto out;
	if (argv[0] == NULL) {
		*cause = xstrdup("the backend command is empty");
		error = -EINVAL;
		goto out;
	}
	snprintf(port, sizeof port, "%d", emu->opts.guest_port);
	benv = env_dup(env);
	backend_env(inst, &benv);
	env_put(&benv, "PORT", port);
	env_put(&benv, "SPILLWAY_COMPONENTS",
	    or_default(inst_attribute(inst, "spillway-components"), ""));
	p->backend.what = "backend";
	if ((error = spawn(emu->loop, p, &p->backend, argv, benv, cause)) != 0)
		goto out;
	snprintf(pid, sizeof pid, "%d\n", p->backend.h.pid);
	error = write_text(p->root, "backend.pid", pid, 0644);
out:
	str_list_free(argv);
	str_list_free(benv);
	return error;
}

int
programs_start(struct inst *inst, struct programs **out, char **cause)
{
	struct emulator *emu = inst->emu;
	struct programs *p = xcalloc(1, sizeof *p);
	char **env = NULL, *path = NULL, *s;
	char *argv[] = {"python3", (char *)emu->opts.guest_agent, NULL};
	int error;

	snprintf(p->name, sizeof p->name, "%s", inst->name);
	if ((error = make_temp_dir("spillway-guest", &p->root, cause)) != 0)
		goto fail;
	s = xasprintf("%s/bin", p->root);
	error = make_dirs(s, 0755);
	free(s);
	if (error == 0)
		error = write_text(p->root, "bin/systemctl", systemctl_sh, 0755);
	if (error != 0) {
		*cause =
		    xasprintf("cannot write the guest's root %s: %s", p->root, strerror(-error));
		goto fail;
	}
	env = env_dup(environ);
	path = xasprintf("%s/bin:%s", p->root, or_default(getenv("PATH"), "/usr/bin:/bin"));
	env_put(&env, "PATH", path);
	free(path);
	env_put(&env, "SPILLWAY_ROOT", p->root);
	env_put(&env, "SPILLWAY_BACKEND_ADDRESS", inst->nat_ip);
	s = xasprintf("%s/computeMetadata/v1", emulator_url(emu));
	env_put(&env, "SPILLWAY_METADATA_URL", s);
	free(s);
	s = xasprintf("%s/compute/v1", emulator_url(emu));
	env_put(&env, "SPILLWAY_COMPUTE_URL", s);
	free(s);
	s = xasprintf("%s/%s", inst->zone->name, inst->name);
	env_put(&env, "SPILLWAY_METADATA_INSTANCE", s);
	free(s);
	s = xasprintf("%s/emulator/v1/projects/%s/zones/%s/instances/%s", emulator_url(emu),
	    emu->opts.project, inst->zone->name, inst->name);
	env_put(&env, "SPILLWAY_EMULATOR_VM", s);
	free(s);
	env_put(&env, "SPILLWAY_AGENT_ADDRESS", inst->nat_ip);
	if (emu->opts.guest_backend != NULL && (error = start_backend(inst, p, env, cause)) != 0)
		goto fail;
	p->agent.what = "agent";
	if ((error = spawn(emu->loop, p, &p->agent, argv, env, cause)) != 0)
		goto fail;
	str_list_free(env);
	log_debug("emulator: %s runs its agent%s in %s", inst->name,
	    emu->opts.guest_backend != NULL ? " and backend" : "", p->root);
	*out = p;
	return 0;
fail:
	str_list_free(env);
	programs_stop(p);
	return error;
}

const char *
programs_root(const struct programs *p)
{
	return p != NULL ? p->root : NULL;
}

void
programs_stop(struct programs *p)
{
	if (p == NULL)
		return;
	p->stopped = true;
	for (struct proc *pr = &p->agent; pr <= &p->backend; pr++)
		if (pr->spawned && !pr->exited)
			kill(-pr->h.pid, SIGKILL);
	if (p->live == 0)
		programs_free(p);
}
