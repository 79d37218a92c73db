#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pressure/macos.h"
#include "pressure/monitor.h"
#include "pressure/procfs.h"
#include "util/jx.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define SYSTEM_PSI           "/proc/pressure/memory"
#define HISTORY              64
#define SHARE_MS             1000 /* the stretch a stall share is measured over */
#define CAP_SYS_RESOURCE_BIT 24

struct listener {
	monitor_cb *cb;
	void *arg;
	bool level; /* level changes, or every sample */
};

struct monitor {
	uv_loop_t *loop;
	struct monitor_opts opts;
	char *psi_path;
	char *procdir;
	int psi_fd, meminfo_fd, vmstat_fd;
	enum pressure_mode mode;
	char *reason;
	double trigger_pct; /* the share of the window a trigger event stands for */
	uv_poll_t poll;
	bool poll_init; /* the handle exists (and must be closed) */
	bool polling;   /* and watches psi_fd */
	uv_timer_t timer;
	bool following; /* sampling on the timer after a trigger event */
	int64_t last_event_ms;
	FILE *record;
	struct pressure_sample history[HISTORY];
	size_t nhistory, head; /* a ring: head is the next slot */
	struct level_state state;
	struct pressure_snapshot snap;
	struct listener *consumers;
	size_t nconsumers;
	long samples, events;
	/* replay */
	const struct trace *trace;
	size_t next;
	double scale;
	void (*done)(void *);
	void *done_arg;
	int handles;
};

bool
have_cap_sys_resource(void)
{
	char text[4096], *p;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	bool yes = false;

	if (fd == -1)
		return false;
	if (proc_pread(fd, text, sizeof text) > 0 && (p = strstr(text, "\nCapEff:")) != NULL)
		yes = (strtoull(p + 8, NULL, 16) >> CAP_SYS_RESOURCE_BIT) & 1;
	close(fd);
	return yes;
}

int
monitor_check(const struct config *cfg, bool cap, char **cause)
{
	if (!cap && cfg->window_s % 2 != 0) {
		*cause =
		    xasprintf("pressure.window_s = %lld: without CAP_SYS_RESOURCE the kernel takes "
		              "PSI trigger windows in multiples of 2 seconds only; use 2, 4, 6, 8 "
		              "or 10, or run with CAP_SYS_RESOURCE",
		        (long long)cfg->window_s);
		return -EINVAL;
	}
	return 0;
}

void
monitor_opts_from_config(struct monitor_opts *o, const struct config *cfg)
{
	memset(o, 0, sizeof *o);
	o->procdir = "/proc";
	o->level.elevated_pct = cfg->elevated_pct;
	o->level.high_pct = cfg->high_pct;
	o->level.critical_pct = cfg->critical_pct;
	o->level.critical_full_pct = cfg->critical_full_pct;
	o->level.disarm_ratio = cfg->disarm_ratio;
	o->level.low_available_pct = cfg->low_available_pct;
	o->level.sustain_ms[PRESSURE_ELEVATED] = (int64_t)(cfg->elevated_sustain_s * 1000);
	o->level.sustain_ms[PRESSURE_HIGH] = (int64_t)(cfg->high_sustain_s * 1000);
	o->level.sustain_ms[PRESSURE_CRITICAL] = (int64_t)(cfg->critical_sustain_s * 1000);
	o->level.dwell_ms = (int64_t)(cfg->dwell_s * 1000);
	o->window_ms = cfg->window_s * 1000;
	o->sample_ms = cfg->sample_ms;
	o->components = cfg->components;
	o->ncomponents = cfg->ncomponents;
	o->processes = true;
}

/* --- processing, shared by live and replay --- */

static const struct pressure_sample *
history_at(const struct monitor *m, size_t back)
{
	return &m->history[(m->head + HISTORY - 1 - back) % HISTORY];
}

static void
history_push(struct monitor *m, const struct pressure_sample *s)
{
	m->history[m->head] = *s;
	m->head = (m->head + 1) % HISTORY;
	if (m->nhistory < HISTORY)
		m->nhistory++;
}

/*
 * The sample to measure from: the newest at least a second old, else the
 * oldest kept. A second, not the trigger's window: a longer stretch would
 * blur when the stall began, and the sustain times are the smoothing.
 */
static const struct pressure_sample *
share_base(const struct monitor *m, int64_t now)
{
	const struct pressure_sample *base = NULL;

	for (size_t back = 1; back < m->nhistory; back++) {
		base = history_at(m, back);
		if (base->t_ms <= now - SHARE_MS)
			break;
	}
	return base;
}

static double
rate(uint64_t now, uint64_t then, int64_t ms)
{
	return now >= then && ms > 0 ? (double)(now - then) * 1000.0 / (double)ms : 0;
}

static void
notify(struct monitor *m, enum pressure_level previous, bool level_changed)
{
	for (size_t i = 0; i < m->nconsumers; i++)
		if (!m->consumers[i].level || level_changed)
			m->consumers[i].cb(&m->snap, previous, m->consumers[i].arg);
}

static void
process(struct monitor *m, const struct pressure_sample *s)
{
	const struct pressure_sample *base;
	struct pressure_snapshot *snap = &m->snap;
	struct level_input in = {.available_pct = -1};
	enum pressure_level previous = m->state.level;
	int64_t dt;

	m->samples++;
	if (m->record != NULL) {
		char line[512];

		trace_format(s, line, sizeof line);
		fputs(line, m->record);
		fflush(m->record);
	}
	history_push(m, s);
	base = share_base(m, s->t_ms);
	dt = base != NULL ? s->t_ms - base->t_ms : 0;
	if (s->has_psi && base != NULL && base->has_psi && dt > 0) {
		in.some_pct = rate(s->psi.some.total_us, base->psi.some.total_us, dt) / 1e4;
		in.full_pct = rate(s->psi.full.total_us, base->psi.full.total_us, dt) / 1e4;
		/* Over a longer gap (asleep between episodes), the share says not when. */
		in.span_ms = dt <= 2 * SHARE_MS ? dt : 0;
	}
	/* The kernel said the stall passed the trigger's share of the window. */
	if (s->event && in.some_pct < m->trigger_pct)
		in.some_pct = m->trigger_pct;
	if (in.some_pct > 100)
		in.some_pct = 100;
	if (in.full_pct > 100)
		in.full_pct = 100;
	if (s->mem.total_kb > 0)
		in.available_pct = 100.0 * (double)s->mem.available_kb / (double)s->mem.total_kb;
	if (s->macos_level > 0)
		in = macos_level_input(
		    &m->opts.level, s->macos_level, s->macos_compressed_ratio, in.available_pct);

	m->state = level_step(&m->opts.level, m->state, &in, s->t_ms);

	snap->t_ms = s->t_ms;
	snap->level = m->state.level;
	snap->since_ms = m->state.since_ms;
	snap->some_pct = in.some_pct;
	snap->full_pct = in.full_pct;
	snap->some_avg10 = s->psi.some.avg10;
	snap->some_avg60 = s->psi.some.avg60;
	snap->full_avg10 = s->psi.full.avg10;
	snap->full_avg60 = s->psi.full.avg60;
	snap->mem_total_kb = s->mem.total_kb;
	snap->mem_available_kb = s->mem.available_kb;
	snap->available_pct = in.available_pct;
	snap->swap_used_kb = s->mem.swap_total_kb - s->mem.swap_free_kb;
	snap->refault_rate = base != NULL ? rate(s->vm.refault_file + s->vm.refault_anon,
	                                        base->vm.refault_file + base->vm.refault_anon, dt)
	                                  : 0;
	snap->swapin_rate = base != NULL ? rate(s->vm.pswpin, base->vm.pswpin, dt) : 0;
	snap->majfault_rate = base != NULL ? rate(s->vm.pgmajfault, base->vm.pgmajfault, dt) : 0;
	/* Who uses the memory: read when the level rises, not on every sample. */
	if (snap->level > previous && m->opts.processes && m->mode != MODE_REPLAY &&
	    procfs_processes(m->procdir, m->opts.components, m->opts.ncomponents, snap) == 0)
		snap->processes_ms = s->t_ms;
	notify(m, previous, snap->level != previous);
}

/* --- live sources --- */

static int
read_sample(struct monitor *m, struct pressure_sample *s, bool event)
{
	char buf[16384];
	int n;

	memset(s, 0, sizeof *s);
	s->t_ms = clock_now_ms(m->opts.clock);
	s->event = event;
#ifdef __APPLE__
	return macos_sample(s);
#endif
	if (m->psi_fd >= 0) {
		if ((n = proc_pread(m->psi_fd, buf, 4096)) < 0)
			return n;
		s->has_psi = psi_parse(buf, &s->psi) == 0;
	}
	if ((n = proc_pread(m->meminfo_fd, buf, sizeof buf)) < 0 ||
	    meminfo_parse(buf, &s->mem) != 0)
		return n < 0 ? n : -EINVAL;
	if (m->vmstat_fd >= 0 && proc_pread(m->vmstat_fd, buf, sizeof buf) > 0)
		vmstat_parse(buf, &s->vm);
	return 0;
}

static void set_mode(struct monitor *, enum pressure_mode, const char *fmt, ...) PRINTFLIKE(3, 4);

static void
set_mode(struct monitor *m, enum pressure_mode mode, const char *fmt, ...)
{
	va_list ap;

	free(m->reason);
	va_start(ap, fmt);
	m->reason = xvasprintf(fmt, ap);
	va_end(ap);
	m->mode = mode;
	m->snap.mode = mode;
	log_debug("pressure: %s mode: %s", pressure_mode_name(mode), m->reason);
}

static void on_timer(uv_timer_t *);
static void fall_back(struct monitor *, const char *why);

static void
take(struct monitor *m, bool event, int64_t woke_ns)
{
	struct pressure_sample s;
	int error;

	m->snap.woke_ns = woke_ns;
	if ((error = read_sample(m, &s, event)) != 0) {
		char *why = xasprintf("cannot read %s: %s",
		    m->psi_path ? m->psi_path : "/proc/meminfo", strerror(-error));

		fall_back(m, why);
		free(why);
		return;
	}
	process(m, &s);
}

/* While an episode lasts after a trigger, sample on the timer; then sleep again. */
static bool
episode_over(const struct monitor *m, int64_t now)
{
	if (m->state.level != PRESSURE_NORMAL || now - m->last_event_ms < 2 * m->opts.window_ms)
		return false;
	for (int l = PRESSURE_ELEVATED; l < PRESSURE_LEVELS; l++)
		if (m->state.candidate_ms[l] >= 0)
			return false;
	return true;
}

static void
on_timer(uv_timer_t *t)
{
	struct monitor *m = t->data;

	take(m, false, 0);
	if (m->mode == MODE_TRIGGER && episode_over(m, clock_now_ms(m->opts.clock))) {
		uv_timer_stop(&m->timer);
		m->following = false;
	}
}

static void
on_poll(uv_poll_t *p, int status, int events)
{
	struct monitor *m = p->data;
	int64_t woke = monotonic_ns();

	if (status < 0) {
		char *why = xasprintf("%s went away (%s)", m->psi_path, uv_strerror(status));

		fall_back(m, why);
		free(why);
		return;
	}
	m->events++;
	m->last_event_ms = clock_now_ms(m->opts.clock);
	take(m, true, woke);
	if (m->mode == MODE_TRIGGER && !m->following) {
		m->following = true;
		uv_timer_start(
		    &m->timer, on_timer, (uint64_t)m->opts.sample_ms, (uint64_t)m->opts.sample_ms);
	}
}

static void
stop_poll(struct monitor *m)
{
	if (m->polling) {
		uv_poll_stop(&m->poll);
		m->polling = false;
	}
	if (m->psi_fd >= 0) {
		close(m->psi_fd);
		m->psi_fd = -1;
	}
}

static void
start_sampling(struct monitor *m)
{
	uv_timer_start(&m->timer, on_timer, 0, (uint64_t)m->opts.sample_ms);
}

/* The watched file failed: the whole system's PSI if that is another file, else MemAvailable. */
static void
fall_back(struct monitor *m, const char *why)
{
	stop_poll(m);
	if (m->psi_path != NULL && strcmp(m->psi_path, SYSTEM_PSI) != 0 &&
	    (m->psi_fd = open(SYSTEM_PSI, O_RDONLY | O_CLOEXEC)) >= 0) {
		free(m->psi_path);
		m->psi_path = xstrdup(SYSTEM_PSI);
		m->snap.source = m->psi_path;
		set_mode(m, MODE_POLL, "%s; sampling the whole system's %s every %" PRId64 " ms",
		    why, SYSTEM_PSI, m->opts.sample_ms);
	} else {
		free(m->psi_path);
		m->psi_path = NULL;
		m->snap.source = "/proc/meminfo";
		set_mode(m, MODE_MEMINFO, "%s; watching MemAvailable only", why);
	}
	log_warnx("pressure: %s", m->reason);
	start_sampling(m);
}

static int
open_proc(const struct monitor *m, const char *name, bool required, int *fd, char **cause)
{
	char *path = xasprintf("%s/%s", m->procdir, name);

	if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 && required) {
		*cause = xasprintf("cannot read %s: %s", path, strerror(errno));
		free(path);
		return -errno;
	}
	if (*fd == -1)
		log_warnx("pressure: cannot read %s (%s); swap and refault rates will read 0", path,
		    strerror(errno));
	free(path);
	return 0;
}

int
monitor_new(uv_loop_t *loop, const struct monitor_opts *o, struct monitor **out, char **cause)
{
	struct monitor *m = xcalloc(1, sizeof *m);

	m->loop = loop;
	m->opts = *o;
	m->psi_fd = m->meminfo_fd = m->vmstat_fd = -1;
	m->procdir = xstrdup(o->procdir != NULL ? o->procdir : "/proc");
	m->psi_path = o->psi_path != NULL ? xstrdup(o->psi_path) : NULL;
	m->snap.source = m->psi_path;
	m->trigger_pct = o->level.elevated_pct;
	level_init(&m->state, clock_now_ms(o->clock));
	m->snap.since_ms = m->state.since_ms;
	if (o->record != NULL) {
		/* Before any handle exists, so that failing here frees at once. */
		if ((m->record = fopen(o->record, "w")) == NULL) {
			*cause =
			    xasprintf("cannot write trace '%s': %s", o->record, strerror(errno));
			monitor_free(m);
			return -EINVAL;
		}
		fprintf(m->record, "%s\n# source %s\n", TRACE_HEADER,
		    m->psi_path != NULL ? m->psi_path : "meminfo");
	}
	uv_timer_init(loop, &m->timer);
	m->timer.data = m;
	m->handles = 1;
	*out = m;
	return 0;
}

int
monitor_start(struct monitor *m, char **cause)
{
	int64_t stall_us =
	    (int64_t)(m->opts.level.elevated_pct / 100.0 * (double)m->opts.window_ms * 1000);
	char trig[64];
	int error;

#ifdef __APPLE__
	m->snap.source = "kern.memorystatus_vm_pressure_level";
	set_mode(m, MODE_MACOS, "polling kern.memorystatus_vm_pressure_level every %" PRId64 " ms",
	    m->opts.sample_ms);
	start_sampling(m);
	return 0;
#endif
	if ((error = open_proc(m, "meminfo", true, &m->meminfo_fd, cause)) != 0 ||
	    (error = open_proc(m, "vmstat", false, &m->vmstat_fd, cause)) != 0)
		return error;
	if (m->psi_path == NULL) {
		m->snap.source = "/proc/meminfo";
		set_mode(m, MODE_MEMINFO, "no PSI file: watching MemAvailable only");
		start_sampling(m);
		return 0;
	}
	if (access(m->psi_path, F_OK) != 0) {
		char *why = xasprintf("%s does not exist (%s)", m->psi_path, strerror(errno));

		fall_back(m, why);
		free(why);
		return 0;
	}
	snprintf(
	    trig, sizeof trig, "some %" PRId64 " %" PRId64, stall_us, m->opts.window_ms * 1000);
	if (!m->opts.poll &&
	    (m->psi_fd = open(m->psi_path, O_RDWR | O_NONBLOCK | O_CLOEXEC)) >= 0) {
		/* The NUL goes too: without it the kernel overwrites the last digit with one. */
		if (write(m->psi_fd, trig, strlen(trig) + 1) == (ssize_t)strlen(trig) + 1) {
			uv_poll_init(m->loop, &m->poll, m->psi_fd);
			m->poll.data = m;
			m->handles++;
			m->poll_init = m->polling = true;
			uv_poll_start(&m->poll, UV_PRIORITIZED, on_poll);
			set_mode(m, MODE_TRIGGER, "PSI trigger '%s' on %s", trig, m->psi_path);
			/* One sample now, so the snapshot is not empty until the first event. */
			take(m, false, 0);
			return 0;
		}
		error = errno;
		close(m->psi_fd);
		m->psi_fd = -1;
	} else {
		error = m->opts.poll ? 0 : errno;
	}
	if ((m->psi_fd = open(m->psi_path, O_RDONLY | O_CLOEXEC)) < 0) {
		char *why = xasprintf("cannot read %s (%s)", m->psi_path, strerror(errno));

		fall_back(m, why);
		free(why);
		return 0;
	}
	if (error != 0)
		set_mode(m, MODE_POLL,
		    "the kernel refused the trigger '%s' on %s (%s); sampling every "
		    "%" PRId64 " ms",
		    trig, m->psi_path, strerror(error), m->opts.sample_ms);
	else
		set_mode(m, MODE_POLL, "sampling %s every %" PRId64 " ms", m->psi_path,
		    m->opts.sample_ms);
	start_sampling(m);
	return 0;
}

void
monitor_reconfigure(struct monitor *m, const struct monitor_opts *o)
{
	bool rearm = m->mode == MODE_TRIGGER && o->level.elevated_pct != m->opts.level.elevated_pct;
	bool resample = o->sample_ms != m->opts.sample_ms;
	double was = m->opts.level.elevated_pct;

	m->opts.level = o->level;
	m->opts.sample_ms = o->sample_ms;
	m->opts.components = o->components;
	m->opts.ncomponents = o->ncomponents;
	if (rearm && m->psi_path != NULL) {
		/* A trigger fd takes one trigger: the one armed wakes at the old threshold. */
		stop_poll(m);
		if ((m->psi_fd = open(m->psi_path, O_RDONLY | O_CLOEXEC)) < 0) {
			char *why = xasprintf("cannot read %s (%s)", m->psi_path, strerror(errno));

			fall_back(m, why);
			free(why);
			return;
		}
		set_mode(m, MODE_POLL,
		    "the PSI trigger was armed for pressure.elevated_pct %g; sampling %s every "
		    "%" PRId64 " ms until a restart arms it for %g",
		    was, m->psi_path, m->opts.sample_ms, o->level.elevated_pct);
		m->following = false;
		start_sampling(m);
	} else if (resample && (m->mode == MODE_POLL || m->mode == MODE_MEMINFO)) {
		start_sampling(m);
	}
}

/* --- replay --- */

static void
replay_next(uv_timer_t *t)
{
	struct monitor *m = t->data;
	const struct trace *tr = m->trace;

	process(m, &tr->samples[m->next++]);
	if (m->next < tr->n) {
		double gap =
		    (double)(tr->samples[m->next].t_ms - tr->samples[m->next - 1].t_ms) / m->scale;

		uv_timer_start(&m->timer, replay_next, (uint64_t)gap, 0);
	} else if (m->done != NULL) {
		m->done(m->done_arg);
	}
}

void
monitor_replay(
    struct monitor *m, const struct trace *t, double scale, void (*done)(void *), void *arg)
{
	m->mode = MODE_REPLAY;
	m->snap.mode = MODE_REPLAY;
	m->trace = t;
	m->next = 0;
	m->scale = scale;
	m->done = done;
	m->done_arg = arg;
	level_init(&m->state, t->samples[0].t_ms);
	if (scale > 0) {
		uv_timer_start(&m->timer, replay_next, 0, 0);
		return;
	}
	while (m->next < t->n)
		process(m, &t->samples[m->next++]);
	if (done != NULL)
		done(arg);
}

/* --- the rest --- */

void
monitor_on_level(struct monitor *m, monitor_cb *cb, void *arg)
{
	m->consumers = xreallocarray(m->consumers, m->nconsumers + 1, sizeof *m->consumers);
	m->consumers[m->nconsumers++] = (struct listener){.cb = cb, .arg = arg, .level = true};
}

void
monitor_on_sample(struct monitor *m, monitor_cb *cb, void *arg)
{
	m->consumers = xreallocarray(m->consumers, m->nconsumers + 1, sizeof *m->consumers);
	m->consumers[m->nconsumers++] = (struct listener){.cb = cb, .arg = arg, .level = false};
}

const struct pressure_snapshot *
monitor_snapshot(const struct monitor *m)
{
	return &m->snap;
}

const char *
monitor_mode_reason(const struct monitor *m)
{
	return m->reason != NULL ? m->reason : "not started";
}

void
monitor_counts(const struct monitor *m, long *samples, long *events)
{
	*samples = m->samples;
	*events = m->events;
}

static void
monitor_release(uv_handle_t *h)
{
	struct monitor *m = h->data;

	if (--m->handles > 0)
		return;
	free(m->consumers);
	free(m->reason);
	free(m->psi_path);
	free(m->procdir);
	free(m);
}

void
monitor_free(struct monitor *m)
{
	if (m == NULL)
		return;
	if (m->record != NULL)
		fclose(m->record);
	if (m->meminfo_fd >= 0)
		close(m->meminfo_fd);
	if (m->vmstat_fd >= 0)
		close(m->vmstat_fd);
	if (m->handles == 0) { /* monitor_new failed before the timer */
		free(m->procdir);
		free(m->psi_path);
		free(m);
		return;
	}
	stop_poll(m);
	if (m->poll_init)
		uv_close((uv_handle_t *)&m->poll, monitor_release);
	uv_timer_stop(&m->timer);
	uv_close((uv_handle_t *)&m->timer, monitor_release);
}

json_t *
pressure_snapshot_json(const struct pressure_snapshot *s, const char *reason)
{
	char t[RFC3339_LEN], since[RFC3339_LEN], ptime[RFC3339_LEN] = "";
	json_t *top = json_array(), *comps = json_array(), *v;

	time_rfc3339(s->t_ms, 0, t);
	time_rfc3339(s->since_ms, 0, since);
	if (s->processes_ms > 0)
		time_rfc3339(s->processes_ms, 0, ptime);
	for (int i = 0; i < s->ntop; i++)
		json_array_append_new(top,
		    jx_pack("{s:i, s:s, s:I, s:I, s:s?}", "pid", s->top[i].pid, "comm",
		        s->top[i].comm, "rss_kb", (json_int_t)s->top[i].rss_kb, "pss_kb",
		        (json_int_t)s->top[i].pss_kb, "component", s->top[i].component));
	for (int i = 0; i < s->ncomponents; i++)
		json_array_append_new(comps,
		    jx_pack("{s:s, s:I, s:i}", "name", s->components[i].name, "rss_kb",
		        (json_int_t)s->components[i].rss_kb, "processes",
		        s->components[i].processes));
	v = jx_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, "
	            "s:f, s:I, s:f, s:f, s:f, s:s?, s:o, s:o}",
	    "time", t, "level", pressure_level_name(s->level), "since", since,
	    "mode", pressure_mode_name(s->mode), "mode_reason", reason, "source", s->source,
	    "some_pct", s->some_pct, "full_pct", s->full_pct, "some_avg10", s->some_avg10,
	    "some_avg60", s->some_avg60, "full_avg10", s->full_avg10, "full_avg60", s->full_avg60,
	    "mem_total_kb", (json_int_t)s->mem_total_kb, "mem_available_kb",
	    (json_int_t)s->mem_available_kb, "available_pct", s->available_pct, "swap_used_kb",
	    (json_int_t)s->swap_used_kb, "refault_per_s", s->refault_rate, "swapin_per_s",
	    s->swapin_rate, "majfault_per_s", s->majfault_rate, "processes_time",
	    s->processes_ms > 0 ? ptime : NULL, "top", top, "components", comps);
	return v;
}

int
pressure_glance(const struct config *cfg, struct pressure_snapshot *s)
{
	struct monitor_opts o;
	struct psi psi = {0};
	struct meminfo mi = {0};
	char *text = NULL, *path;
	int error;

	memset(s, 0, sizeof *s);
	s->t_ms = s->since_ms = realtime_ns() / 1000000;
	s->mode = MODE_POLL;
	s->source = "a glance at /proc (no daemon)";
	if (read_file("/proc/meminfo", 1 << 16, &text, NULL) == 0 && meminfo_parse(text, &mi) == 0) {
		s->mem_total_kb = mi.total_kb;
		s->mem_available_kb = mi.has_available ? mi.available_kb : mi.free_kb;
		s->available_pct =
		    mi.total_kb > 0 ? 100.0 * (double)s->mem_available_kb / (double)mi.total_kb : -1;
		s->swap_used_kb = mi.swap_total_kb - mi.swap_free_kb;
	}
	free(text);
	text = NULL;
	path = *cfg->pressure_cgroup != '\0'
	    ? xasprintf("%s/memory.pressure", cfg->pressure_cgroup)
	    : xstrdup("/proc/pressure/memory");
	if ((error = read_file(path, 1 << 12, &text, NULL)) == 0 &&
	    (error = psi_parse(text, &psi)) == 0) {
		struct level_input in = {
		    .some_pct = psi.some.avg10, .full_pct = psi.full.avg10, .available_pct = s->available_pct};

		s->some_pct = s->some_avg10 = psi.some.avg10;
		s->full_pct = s->full_avg10 = psi.full.avg10;
		s->some_avg60 = psi.some.avg60;
		s->full_avg60 = psi.full.avg60;
		monitor_opts_from_config(&o, cfg);
		s->level = level_target(&o.level, &in, false);
	}
	free(text);
	free(path);
	return error;
}
