/*
 * A program run without a shell, on the loop: argv as given, its output read
 * line by line (or sent to a file), killed after a timeout if it has one, and
 * its end told exactly once. The hooks and the components' local copies run
 * their commands through it.
 *
 * It is done once it has ended and what it wrote was read to the end (a
 * child of its that keeps its output open delays that; one whose output goes
 * to a file does not).
 *
 * Ownership: the caller holds a run until its done callback, or until
 * run_forget, after which nothing is called back and the memory goes once
 * libuv lets go. A detached run (its own session) outlives the caller's
 * process; the others are killed by no one but the caller.
 */
#ifndef SPILLWAY_RUN_H
#define SPILLWAY_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#define RUN_LINE_MAX 4096 /* a longer line is passed on in pieces */

struct run_opts {
	char *const *argv;  /* argv[0] is the program, a path or a name looked up in PATH */
	char *const *env;   /* NULL: this process's */
	int64_t timeout_ms; /* killed (SIGKILL) after this; 0: never */
	bool detached;      /* in its own session, so it outlives us (a local copy) */
	int out_fd;         /* >= 0: its stdout and stderr go to this file, not to line */
	/* Each line it writes (err: on stderr), without its newline. */
	void (*line)(void *arg, const char *line, bool err);
	/* It ended: its exit status, or the signal that killed it (timed_out: ours). */
	void (*done)(void *arg, int status, int signal, bool timed_out);
	void *arg;
};

struct run;

/* Started: 0 and *out; else -errno and *cause saying why it could not start (nothing runs). */
int run_start(uv_loop_t *, const struct run_opts *, struct run **out, char **cause);
pid_t run_pid(const struct run *);
void run_kill(struct run *, int sig);
/* No more callbacks; the run goes on (a detached one) or is reaped when it ends. */
void run_forget(struct run *);

#endif
