#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/view.h"
#include "cli/report.h"
#include "util/clock.h"
#include "util/jx.h"

#define BOLD  "\033[1m"
#define RED   "\033[31m"
#define GREEN "\033[32m"
#define AMBER "\033[33m"
#define RESET "\033[0m"

bool
report_color(FILE *f)
{
	const char *no = getenv("NO_COLOR");

	return (no == NULL || *no == '\0') && isatty(fileno(f));
}

void
report_duration(long long s, char *out, size_t size)
{
	if (s < 0)
		s = 0;
	if (s >= 3600)
		snprintf(out, size, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else
		snprintf(out, size, "%lldm%02llds", s / 60, s % 60);
}

void
report_json(FILE *f, const json_t *doc)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(10));

	fprintf(f, "%s\n", text);
	free(text);
}

void
report_json_field(FILE *f, const char *key, const json_t *value)
{
	json_t *doc = json_pack("{s:i, s:O}", "schema_version", VIEW_SCHEMA_VERSION, key, value);

	report_json(f, doc);
	json_decref(doc);
}

static const char *
str(const json_t *o, const char *key)
{
	const char *s = jx_str(o, key);

	return s != NULL ? s : "-";
}

static double
num(const json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

/* The colour of a state or level: green is well, amber on its way, red wrong. */
static const char *
tint(bool color, const char *word)
{
	if (!color)
		return "";
	if (strcmp(word, "READY") == 0 || strcmp(word, "NORMAL") == 0)
		return GREEN;
	if (strcmp(word, "FAILED") == 0 || strcmp(word, "UNHEALTHY") == 0 ||
	    strcmp(word, "CRITICAL") == 0 || strcmp(word, "HIGH") == 0 ||
	    strcmp(word, "PREEMPTED") == 0 || strcmp(word, "ORPHANED") == 0)
		return RED;
	return AMBER;
}

static void
components(const json_t *vm, char *out, size_t size)
{
	size_t i, used = 0;
	json_t *c;

	out[0] = '\0';
	json_array_foreach (json_object_get(vm, "components"), i, c)
		used += (size_t)snprintf(out + used, used < size ? size - used : 0, "%s%s",
		    i ? "," : "", json_string_value(c));
	if (used == 0)
		snprintf(out, size, "-");
}

/* A megabyte figure that may be unknown (null). */
static void
mb_text(const json_t *o, const char *key, char *out, size_t size)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		snprintf(out, size, "%lld MB", (long long)json_integer_value(v));
	else
		snprintf(out, size, "?");
}

void
report_offloads(FILE *f, const json_t *offloads, int indent)
{
	size_t i;
	json_t *o;

	json_array_foreach (offloads, i, o) {
		char freed[32], pss[32], before[32], after[32];

		mb_text(o, "freed_mb", freed, sizeof freed);
		mb_text(o, "pss_mb", pss, sizeof pss);
		mb_text(o, "mem_available_before_mb", before, sizeof before);
		mb_text(o, "mem_available_after_mb", after, sizeof after);
		fprintf(f,
		    "  %*s%s's local copy stopped %s: freed %s (PSS %s; MemAvailable %s -> %s)%s%s\n",
		    indent, "", str(o, "component"), str(o, "stopped_at"), freed, pss, before,
		    after, jx_str(o, "back_at") != NULL ? "; back " : "",
		    jx_str(o, "back_at") != NULL ? str(o, "back_at") : "");
	}
}

void
report_vms(FILE *f, const json_t *vms, bool verbose)
{
	bool color = report_color(f);
	size_t i, w = 4;
	json_t *vm;

	json_array_foreach (vms, i, vm)
		if (strlen(str(vm, "name")) > w)
			w = strlen(str(vm, "name"));
	fprintf(f, "  %-*s  %-14s  %-12s  %-26s  %-8s  %-10s  %-9s  %s\n", (int)w, "NAME", "ZONE",
	    "STATE", "ENDPOINT", "UPTIME", "COST", "STOPS IN", "COMPONENTS");
	json_array_foreach (vms, i, vm) {
		char up[32], left[32] = "-", comps[256];
		json_t *stops = json_object_get(vm, "stops_in_s");
		const char *state = str(vm, "state");

		report_duration((long long)num(vm, "uptime_s"), up, sizeof up);
		if (json_is_integer(stops))
			report_duration(json_integer_value(stops), left, sizeof left);
		components(vm, comps, sizeof comps);
		if (num(vm, "freed_mb") > 0)
			snprintf(comps + strlen(comps), sizeof comps - strlen(comps),
			    " (freed %lld MB here)", (long long)num(vm, "freed_mb"));
		fprintf(f, "  %-*s  %-14s  %s%-12s%s  %-26s  %-8s  $%-9.4f  %-9s  %s\n", (int)w,
		    str(vm, "name"), str(vm, "zone"), tint(color, state), state, color ? RESET : "",
		    str(vm, "endpoint"), up, num(vm, "cost"), left, comps);
		if (verbose) {
			json_t *labels = json_object_get(vm, "labels");
			const char *k;
			json_t *v;

			fprintf(f, "  %*s  requestId %s, reason: %s\n", (int)w, "",
			    str(vm, "request_id"), str(vm, "reason"));
			fprintf(f, "  %*s  labels", (int)w, "");
			json_object_foreach (labels, k, v)
				fprintf(f, " %s=%s", k, json_string_value(v));
			fprintf(f, "\n");
			if (jx_str(vm, "end_reason") != NULL)
				fprintf(f, "  %*s  ended: %s\n", (int)w, "", str(vm, "end_reason"));
			report_offloads(f, json_object_get(vm, "offloads"), (int)w + 2);
		}
	}
}

static void
today(FILE *f, const json_t *t)
{
	double budget = num(t, "budget"), left = num(t, "left");
	bool color = report_color(f);

	if (!json_is_number(json_object_get(t, "spent"))) {
		fprintf(f, "today      %s: spend not known (budget $%.2f): %s\n", str(t, "date"),
		    budget, str(t, "error"));
		return;
	}
	fprintf(f,
	    "today      %s: $%.4f spent, $%.4f committed to running VMs, %s$%.4f left%s of "
	    "$%.2f\n",
	    str(t, "date"), num(t, "spent"), num(t, "committed"),
	    color ? (left < budget * 0.1 ? RED : GREEN) : "", left, color ? RESET : "", budget);
}

/* Bytes as people read them: 512 B, 3.2 kB, 41.0 MB. */
static void
bytes_text(double n, char *out, size_t size)
{
	static const char *units[] = {"B", "kB", "MB", "GB", "TB"};
	size_t u = 0;

	while (n >= 1000 && u + 1 < sizeof units / sizeof units[0]) {
		n /= 1000;
		u++;
	}
	snprintf(out, size, u == 0 ? "%.0f %s" : "%.1f %s", n, units[u]);
}

void
report_routes(FILE *f, const json_t *routes)
{
	size_t i;
	json_t *r;

	if (json_array_size(routes) == 0) {
		fprintf(f,
		    "no routes: give a component a listen address ([component \"NAME\"] "
		    "listen = 127.0.0.1:PORT), docs/offload.md\n");
		return;
	}
	fprintf(f, "  %-12s  %-21s  %-21s  %-30s  %5s  %9s  %9s  %s\n", "COMPONENT", "LISTEN",
	    "LOCAL", "NOW", "OPEN", "UP", "DOWN", "LAST USE");
	json_array_foreach (routes, i, r) {
		char up[32], down[32], now[64];

		bytes_text(num(r, "bytes_up"), up, sizeof up);
		bytes_text(num(r, "bytes_down"), down, sizeof down);
		snprintf(now, sizeof now, "%s", jx_str(r, "vm") ? str(r, "vm") : str(r, "to"));
		fprintf(f, "  %-12s  %-21s  %-21s  %-30s  %5lld  %9s  %9s  %s\n",
		    str(r, "component"), str(r, "listen"),
		    jx_str(r, "local") ? str(r, "local") : "-", now, (long long)num(r, "open"), up,
		    down, jx_str(r, "last_use") ? str(r, "last_use") : "never");
		fprintf(f, "  %-12s  %s", "", str(r, "why"));
		if (jx_str(r, "local_copy") != NULL)
			fprintf(f, "; its local copy: %s, %lld open", str(r, "local_copy"),
			    (long long)num(r, "local_open"));
		fprintf(f, "\n");
	}
}

/* The warm pool: its size, and each VM not taken yet, with what a day of it costs. */
static void
pool_lines(FILE *f, const json_t *pool)
{
	const json_t *vms = json_object_get(pool, "vms");
	size_t i;
	json_t *it;

	if (num(pool, "size") == 0 && json_array_size(vms) == 0)
		return;
	fprintf(f, "pool       %zu of %lld ready to start, $%.4f a day while they wait\n",
	    json_array_size(vms), (long long)num(pool, "size"), num(pool, "per_day"));
	json_array_foreach (vms, i, it) {
		char age[32];

		report_duration((long long)num(it, "age_s"), age, sizeof age);
		fprintf(f, "           %s: %s%s%s in %s, made %s ago, $%.4f a day\n",
		    str(it, "name"), str(it, "state"), jx_str(it, "waits") ? ", " : "",
		    jx_str(it, "waits") ? str(it, "waits") : "", str(it, "zone"), age,
		    num(it, "per_day"));
	}
}

void
report_status(FILE *f, const json_t *s, bool verbose)
{
	const json_t *c = json_object_get(s, "config"), *p = json_object_get(s, "pressure");
	const json_t *st = json_object_get(s, "statistics"), *d = json_object_get(s, "daemon");
	const json_t *vms = json_object_get(s, "vms"), *b = json_object_get(s, "backoffs");
	bool color = report_color(f);
	size_t i;
	json_t *it;

	if (json_is_true(json_object_get(d, "running")))
		fprintf(f, "daemon     running, PID %lld\n",
		    (long long)json_integer_value(json_object_get(d, "pid")));
	else
		fprintf(f,
		    "daemon     not running (spillway run starts it); figures from the ledger\n");
	fprintf(f,
	    "cloud      project %s, zone %s, %s%s, at most %lld at once, %.4g h each, "
	    "$%.2f a day%s\n",
	    *str(c, "project") ? str(c, "project") : "(unset)", str(c, "zone"),
	    str(c, "machine_type"), json_is_true(json_object_get(c, "spot")) ? " Spot" : "",
	    (long long)num(c, "max_concurrent"), num(c, "max_lifetime_hours"),
	    num(c, "daily_budget"),
	    json_is_true(json_object_get(c, "enabled")) ? "" : " (automatic creation off)");
	if (json_is_object(p)) {
		const char *level = str(p, "level");

		fprintf(f,
		    "pressure   %s%s%s since %s: stall some %.1f%% full %.1f%% (avg10), "
		    "%.1f%% of memory available, swap used %lld MiB\n",
		    tint(color, level), level, color ? RESET : "", str(p, "since"),
		    num(p, "some_avg10"), num(p, "full_avg10"), num(p, "available_pct"),
		    (long long)num(p, "swap_used_kb") / 1024);
	} else {
		fprintf(f, "pressure   not known yet\n");
	}
	today(f, json_object_get(s, "today"));
	{
		const json_t *l = json_object_get(s, "ledger");

		if (jx_str(l, "problem") != NULL)
			fprintf(f, "%sledger     %s; %lld writes wait in memory for it%s\n",
			    color ? RED : "", str(l, "problem"), (long long)num(l, "waiting"),
			    color ? RESET : "");
	}
	fprintf(f,
	    "statistics %lld created, %lld failed, %lld terminated, %lld preempted, "
	    "%lld orphaned; $%.4f in all\n",
	    (long long)num(st, "created"), (long long)num(st, "failed"),
	    (long long)num(st, "terminated"), (long long)num(st, "preempted"),
	    (long long)num(st, "orphaned"), num(st, "total_cost"));
	if (json_array_size(b) == 0)
		fprintf(f, "backoffs   none\n");
	json_array_foreach (b, i, it)
		fprintf(f, "backoff    %s%s%s until %s: %s\n", str(it, "rule"),
		    jx_str(it, "zone") ? " " : "", jx_str(it, "zone") ? str(it, "zone") : "",
		    str(it, "until"), str(it, "why"));
	{
		const json_t *boot = json_object_get(s, "boot");

		if (json_is_object(boot))
			fprintf(f, "image      %s%s%s\n", str(boot, "image"),
			    json_is_true(json_object_get(boot, "stale"))
			        ? ": stale, the install settings changed since it was baked "
			          "(spillway image bake)"
			        : "",
			    jx_str(boot, "newest") != NULL &&
			            !json_is_true(json_object_get(boot, "stale"))
			        ? " (baked)"
			        : "");
	}
	pool_lines(f, json_object_get(s, "pool"));
	if (json_array_size(vms) == 0) {
		fprintf(f, "VMs        none active\n");
	} else {
		fprintf(f, "VMs        %zu active\n", json_array_size(vms));
		report_vms(f, vms, verbose);
	}
	json_array_foreach (json_object_get(s, "local_copies"), i, it) {
		const json_t *last = json_object_get(it, "last_offload");

		fprintf(f, "local      %s: %s%s%s: %s\n", str(it, "component"),
		    jx_str(it, "state") ? str(it, "state") : "not run now",
		    jx_str(it, "since") ? " since " : "",
		    jx_str(it, "since") ? str(it, "since") : "", str(it, "why"));
		if (json_is_object(last)) {
			char freed[32];

			mb_text(last, "freed_mb", freed, sizeof freed);
			fprintf(f, "           its last offload, to %s at %s, freed %s\n",
			    str(last, "vm"), str(last, "stopped_at"), freed);
		}
	}
	if (verbose && json_array_size(json_object_get(s, "routes")) > 0) {
		fprintf(f, "routes     %zu\n", json_array_size(json_object_get(s, "routes")));
		report_routes(f, json_object_get(s, "routes"));
	}
	if (verbose) {
		size_t nev = json_array_size(json_object_get(s, "events"));

		if (nev == 0)
			fprintf(f, "events     none yet\n");
		else
			fprintf(f, "events     the last %zu\n", nev);
		json_array_foreach (json_object_get(s, "events"), i, it)
			fprintf(f, "  %s  %-30s %-12s %s\n", str(it, "time"), str(it, "vm"),
			    str(it, "kind"), str(it, "detail"));
	}
}

void
report_costs(FILE *f, const json_t *c)
{
	const json_t *active = json_object_get(c, "active"), *vms = json_object_get(c, "vms");
	long long ndays = (long long)num(c, "days_shown");
	size_t i;
	json_t *it;

	today(f, json_object_get(c, "today"));
	fprintf(f, "month      $%.4f so far\n", num(c, "month_to_date"));
	if (json_array_size(active) == 0)
		fprintf(f, "active     none\n");
	json_array_foreach (active, i, it) {
		char up[32];

		report_duration((long long)num(it, "uptime_s"), up, sizeof up);
		fprintf(f, "active     %s: %s, $%.4f so far at $%.4f/h\n", str(it, "name"), up,
		    num(it, "cost"), num(it, "per_hour"));
	}
	fprintf(f, "VMs of the last %lld day%s: %s\n", ndays, ndays == 1 ? "" : "s",
	    json_array_size(vms) == 0 ? "none" : "");
	if (json_array_size(vms) > 0)
		report_vms(f, vms, false);
	pool_lines(f, json_object_get(c, "pool"));
	json_array_foreach (json_object_get(c, "images"), i, it)
		fprintf(f, "image      %s: %.2f GiB, $%.4f a month of storage%s%s\n",
		    str(it, "name"), num(it, "size_gib"), num(it, "per_month"),
		    jx_str(it, "deleted_at") ? ", deleted " : "",
		    jx_str(it, "deleted_at") ? str(it, "deleted_at") : "");
	fprintf(f, "  %-10s  %s\n", "DAY", "COST");
	json_array_foreach (json_object_get(c, "days"), i, it)
		fprintf(f, "  %-10s  $%.4f\n", str(it, "day"), num(it, "cost"));
}

void
report_progress(FILE *f, int64_t t0_ns, const char *state, const char *zone, const char *detail,
    char *last, size_t lastlen)
{
	char now[160];

	snprintf(now, sizeof now, "%s %s", state, zone);
	if (strcmp(now, last) == 0)
		return;
	snprintf(last, lastlen, "%s", now);
	fprintf(f, "[%6.1fs] %-12s %s%s%s\n", (double)(monotonic_ns() - t0_ns) / 1e9, state, zone,
	    detail != NULL && *detail ? ": " : "", detail != NULL ? detail : "");
	fflush(f);
}

void
report_images(FILE *f, const json_t *doc)
{
	const json_t *boot = json_object_get(doc, "boot"), *images = json_object_get(doc, "images");
	size_t i;
	json_t *it;

	fprintf(f, "VMs boot from %s%s\n", str(boot, "image"),
	    json_is_true(json_object_get(boot, "stale"))
	        ? ": stale, the install settings changed since it was baked"
	        : "");
	if (json_array_size(images) == 0) {
		fprintf(f, "no image baked (spillway image bake makes one of family %s)\n",
		    str(boot, "family"));
		return;
	}
	fprintf(f, "%-40s %-8s %-20s %8s %10s  %s\n", "IMAGE", "STATE", "FAMILY", "GiB", "$/MONTH",
	    "HOLDS");
	json_array_foreach (images, i, it)
		fprintf(f, "%-40s %-8s %-20s %8.2f %10.4f  %s%s%s%s\n", str(it, "name"),
		    str(it, "state"), str(it, "family"), num(it, "size_gib"), num(it, "per_month"),
		    str(it, "backend"),
		    json_is_true(json_object_get(it, "stale")) ? " (stale)" : "",
		    jx_str(it, "why") ? ": " : "", jx_str(it, "why") ? str(it, "why") : "");
	fprintf(f, "storage: $%.4f a month\n", num(doc, "storage_per_month"));
}
