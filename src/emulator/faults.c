#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/faults.h"
#include "util/buf.h"
#include "util/str.h"
#include "util/xmalloc.h"

void
faults_init(struct faults *f)
{
	memset(f, 0, sizeof *f);
	f->quota_cpus = -1;
	f->stockout = xcalloc(1, sizeof *f->stockout);
	f->stockout_details = xcalloc(1, sizeof *f->stockout_details);
	f->token_lifetime_s = 3599;
	f->catalog_page = 5000;
	f->preempt_within_s = 60;
	f->guest_die_within_s = 600;
}

void
faults_free(struct faults *f)
{
	str_list_free(f->stockout);
	str_list_free(f->stockout_details);
	f->stockout = f->stockout_details = NULL;
}

static int
probability(const char *v, double *out)
{
	return parse_double(v, 0, 1, out);
}

/* "P" or "P@S" */
static int
probability_within(const char *v, double *p, int64_t *within)
{
	char *copy = xstrdup(v), *at = strchr(copy, '@');
	int error;

	if (at != NULL)
		*at++ = '\0';
	error = probability(copy, p);
	if (error == 0 && at != NULL)
		error = parse_int64(at, 1, 86400 * 365, within);
	free(copy);
	return error;
}

static int
latency(const char *v, int64_t *lo, int64_t *hi)
{
	char *copy = xstrdup(v), *dash = strchr(copy, '-');
	int error;

	if (dash != NULL)
		*dash++ = '\0';
	error = parse_int64(copy, 0, 3600000, lo);
	*hi = *lo;
	if (error == 0 && dash != NULL)
		error = parse_int64(dash, *lo, 3600000, hi);
	free(copy);
	return error;
}

int
faults_parse(const char *spec, struct faults *out, char **cause)
{
	struct faults f;
	char **items = str_split(spec != NULL ? spec : "", ',', NULL);
	int error = 0;

	faults_init(&f);
	for (char **it = items; *it != NULL && error == 0; it++) {
		char *item = str_trim(*it), *eq = strchr(item, '='), *v;

		if (eq == NULL) {
			*cause = xasprintf("fault '%s': expected NAME=VALUE", item);
			error = -EINVAL;
			break;
		}
		*eq = '\0';
		v = eq + 1;
		if (strcmp(item, "error500") == 0)
			error = probability(v, &f.error500);
		else if (strcmp(item, "error503") == 0)
			error = probability(v, &f.error503);
		else if (strcmp(item, "rate429") == 0)
			error = probability(v, &f.rate429);
		else if (strcmp(item, "rate403") == 0)
			error = probability(v, &f.rate403);
		else if (strcmp(item, "huge") == 0)
			error = probability(v, &f.huge);
		else if (strcmp(item, "endless") == 0)
			error = probability(v, &f.endless);
		else if (strcmp(item, "latency") == 0)
			error = latency(v, &f.latency_min_ms, &f.latency_max_ms);
		else if (strcmp(item, "quota-cpus") == 0)
			error = parse_int64(v, 0, 1000000, &f.quota_cpus);
		else if (strcmp(item, "stockout") == 0 || strcmp(item, "stockout-details") == 0) {
			char ***list = item[8] == '\0' ? &f.stockout : &f.stockout_details;

			str_list_free(*list);
			*list = str_split(v, '+', NULL);
		} else if (strcmp(item, "token-lifetime") == 0)
			error = parse_int64(v, 1, 86400, &f.token_lifetime_s);
		else if (strcmp(item, "catalog-page") == 0)
			error = parse_int64(v, 1, 5000, &f.catalog_page);
		else if (strcmp(item, "preempt") == 0)
			error = probability_within(v, &f.preempt, &f.preempt_within_s);
		else if (strcmp(item, "guest-unhealthy") == 0)
			error = probability(v, &f.guest_unhealthy);
		else if (strcmp(item, "guest-die") == 0)
			error = probability_within(v, &f.guest_die, &f.guest_die_within_s);
		else {
			*cause = xasprintf(
			    "unknown fault '%s'; known: error500, error503, rate429, "
			    "rate403, huge, endless, latency, quota-cpus, stockout, "
			    "stockout-details, "
			    "token-lifetime, catalog-page, preempt, guest-unhealthy, guest-die",
			    item);
			error = -EINVAL;
			break;
		}
		if (error != 0)
			*cause =
			    xasprintf("fault '%s': invalid value '%s' (probabilities are 0 to 1, "
			              "times whole numbers, latency MS or MIN-MAX)",
			        item, v);
	}
	str_list_free(items);
	if (error != 0) {
		faults_free(&f);
		return -EINVAL;
	}
	faults_free(out);
	*out = f;
	return 0;
}

static void
join(struct buf *b, const char *name, char **list)
{
	if (list[0] == NULL)
		return;
	buf_printf(b, "%s%s=", b->len ? "," : "", name);
	for (char **z = list; *z != NULL; z++)
		buf_printf(b, "%s%s", z == list ? "" : "+", *z);
}

char *
faults_format(const struct faults *f)
{
	struct buf b = BUF_INIT(SIZE_MAX);
	const struct {
		const char *name;
		double p;
	} probs[] = {{"error500", f->error500}, {"error503", f->error503}, {"rate429", f->rate429},
	    {"rate403", f->rate403}, {"huge", f->huge}, {"endless", f->endless},
	    {"guest-unhealthy", f->guest_unhealthy}};

	for (size_t i = 0; i < nitems(probs); i++)
		if (probs[i].p > 0)
			buf_printf(&b, "%s%s=%g", b.len ? "," : "", probs[i].name, probs[i].p);
	if (f->latency_max_ms > 0)
		buf_printf(&b, "%slatency=%" PRId64 "-%" PRId64, b.len ? "," : "",
		    f->latency_min_ms, f->latency_max_ms);
	if (f->quota_cpus >= 0)
		buf_printf(&b, "%squota-cpus=%" PRId64, b.len ? "," : "", f->quota_cpus);
	join(&b, "stockout", f->stockout);
	join(&b, "stockout-details", f->stockout_details);
	if (f->token_lifetime_s != 3599)
		buf_printf(&b, "%stoken-lifetime=%" PRId64, b.len ? "," : "", f->token_lifetime_s);
	if (f->catalog_page != 5000)
		buf_printf(&b, "%scatalog-page=%" PRId64, b.len ? "," : "", f->catalog_page);
	if (f->preempt > 0)
		buf_printf(
		    &b, "%spreempt=%g@%" PRId64, b.len ? "," : "", f->preempt, f->preempt_within_s);
	if (f->guest_die > 0)
		buf_printf(&b, "%sguest-die=%g@%" PRId64, b.len ? "," : "", f->guest_die,
		    f->guest_die_within_s);
	return buf_detach(&b, NULL);
}

int
faults_stockout(const struct faults *f, const char *zone)
{
	for (char **z = f->stockout; *z != NULL; z++)
		if (strcmp(*z, zone) == 0)
			return 1;
	for (char **z = f->stockout_details; *z != NULL; z++)
		if (strcmp(*z, zone) == 0)
			return 2;
	return 0;
}
