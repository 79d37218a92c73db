#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ledger/cost.h"
#include "ledger/pricing.h"
#include "util/jx.h"
#include "util/xmalloc.h"

#define HOURS_PER_MONTH 730.0
/* No SKU's unit (an hour, a GiB-hour, a GiB-month) costs more: above is a broken catalog. */
#define PRICE_MAX_PER_UNIT 1000.0

/* Google's display names of the families in SKU descriptions. */
static const struct {
	const char *prefix, *name;
} families[] = {
    {"e2", "E2"},
    {"n2d", "N2D AMD"},
    {"n2", "N2"},
};

/*
 * A tier's price, as Google's Money spells it: whole units (an int64, as a
 * string) and nanos, both of one sign, in US dollars. 0 and the price, or
 * -EINVAL with what is wrong in why.
 */
static int
money(const json_t *m, double *out, char *why, size_t whylen)
{
	const char *currency = jx_str(m, "currencyCode");
	const json_t *nj = json_object_get(m, "nanos");
	int64_t units = 0, nanos = 0;

	if (!json_is_object(m) || jx_int64(json_object_get(m, "units"), &units) != 0 ||
	    (nj != NULL && jx_int64(nj, &nanos) != 0)) {
		snprintf(why, whylen, "a price without whole 'units' and 'nanos'");
		return -EINVAL;
	}
	if (currency != NULL && strcmp(currency, "USD") != 0) {
		snprintf(why, whylen, "a price in %s: spillway's budgets are in USD", currency);
		return -EINVAL;
	}
	if (nanos <= -1000000000 || nanos >= 1000000000 || (units > 0 && nanos < 0) ||
	    (units < 0 && nanos > 0)) {
		snprintf(why, whylen, "units %" PRId64 " and nanos %" PRId64 " are not one price",
		    units, nanos);
		return -EINVAL;
	}
	*out = (double)units + (double)nanos / 1e9;
	if (!isfinite(*out) || *out < 0 || *out > PRICE_MAX_PER_UNIT) {
		snprintf(why, whylen, "the price $%.9f is not from $0 to $%.0f a unit", *out,
		    PRICE_MAX_PER_UNIT);
		return -EINVAL;
	}
	return 0;
}

/* The price of usage beyond the free tiers: the last tier's (checked by price_catalog_check). */
static double
unit_price(const json_t *sku)
{
	const json_t *rates = jx_get(sku, "pricingInfo.0.pricingExpression.tieredRates");
	double price = 0;
	char why[8];

	money(json_object_get(json_array_get(rates, json_array_size(rates) - 1), "unitPrice"),
	    &price, why, sizeof why);
	return price;
}

static bool
serves(const json_t *sku, const char *region)
{
	size_t i;
	json_t *r;

	json_array_foreach (json_object_get(sku, "serviceRegions"), i, r)
		if (strcmp(json_string_value(r), region) == 0)
			return true;
	return false;
}

static const json_t *
find(const json_t *skus, const char *description, const char *region)
{
	size_t i;
	json_t *sku;

	json_array_foreach (skus, i, sku) {
		const char *d = jx_str(sku, "description");

		if (d != NULL && strcmp(d, description) == 0 && serves(sku, region))
			return sku;
	}
	return NULL;
}

static const char *
family_name(const char *machine_type)
{
	for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
		size_t n = strlen(families[i].prefix);

		if (strncmp(machine_type, families[i].prefix, n) == 0 && machine_type[n] == '-')
			return families[i].name;
	}
	return NULL;
}

/* Google names the Americas, Europe and Asia in descriptions; the SKU's regions decide. */
static const char *
geo(const char *region)
{
	if (strncmp(region, "us-", 3) == 0 || strncmp(region, "northamerica-", 13) == 0 ||
	    strncmp(region, "southamerica-", 13) == 0)
		return "Americas";
	if (strncmp(region, "europe-", 7) == 0)
		return "EMEA";
	return "APAC";
}

int
price_disk(const json_t *skus, const char *region, const char *disk_type, double gib,
    double *per_hour, char **cause)
{
	const char *d = disk_type != NULL && strcmp(disk_type, "pd-standard") == 0
	    ? "Storage PD Capacity"
	    : "Balanced PD Capacity";
	const json_t *sku = find(skus, d, region);

	if (sku == NULL) {
		*cause = xasprintf("the price catalog has no SKU '%s' for region %s", d, region);
		return -ENOENT;
	}
	*per_hour = unit_price(sku) * gib / HOURS_PER_MONTH;
	return 0;
}

int
price_lookup(const json_t *skus, const struct price_query *q, struct price *p, char **cause)
{
	const char *fam = family_name(q->machine_type), *where = geo(q->region);
	const json_t *core, *ram, *ip = NULL;
	char core_d[128], ram_d[128];

	memset(p, 0, sizeof *p);
	if (fam == NULL) {
		*cause =
		    xasprintf("no prices for machine type '%s': spillway knows the E2, N2 and N2D "
		              "families",
		        q->machine_type);
		return -ENOENT;
	}
	snprintf(core_d, sizeof core_d, "%s%s Instance Core running in %s",
	    q->spot ? "Spot Preemptible " : "", fam, where);
	snprintf(ram_d, sizeof ram_d, "%s%s Instance Ram running in %s",
	    q->spot ? "Spot Preemptible " : "", fam, where);
	if ((core = find(skus, core_d, q->region)) == NULL ||
	    (ram = find(skus, ram_d, q->region)) == NULL) {
		*cause = xasprintf("the price catalog has no SKU '%s' for region %s",
		    core == NULL ? core_d : ram_d, q->region);
		return -ENOENT;
	}
	if (q->disk_gb > 0 &&
	    price_disk(skus, q->region, q->disk_type, q->disk_gb, &p->disk_per_hour, cause) != 0)
		return -ENOENT;
	if (q->external_ip) {
		const char *d = q->spot ? "External IP Charge on a Spot Preemptible VM"
		                        : "External IP Charge on a Standard VM";

		if ((ip = find(skus, d, q->region)) == NULL) {
			*cause = xasprintf(
			    "the price catalog has no SKU '%s' for region %s", d, q->region);
			return -ENOENT;
		}
	}
	p->core_per_hour = unit_price(core);
	p->ram_per_gib_hour = unit_price(ram);
	p->ip_per_hour = ip != NULL ? unit_price(ip) : 0;
	p->per_hour = q->vcpus * p->core_per_hour + q->memory_mb / 1024.0 * p->ram_per_gib_hour +
	    p->disk_per_hour + p->ip_per_hour;
	if (!(p->per_hour > 0 && p->per_hour <= PRICE_MAX_PER_HOUR)) {
		*cause = xasprintf("the price catalog gives %s in %s $%.4f/h: a VM costs more "
		                   "than $0 and at most $%.0f/h",
		    q->machine_type, q->region, p->per_hour, PRICE_MAX_PER_HOUR);
		return -EINVAL;
	}
	snprintf(p->effective, sizeof p->effective, "%s",
	    jx_str(core, "pricingInfo.0.effectiveTime") != NULL
	        ? jx_str(core, "pricingInfo.0.effectiveTime")
	        : "unknown");
	return 0;
}

int
price_image_storage(const json_t *skus, const char *region, double *per_gib_month, char **cause)
{
	const json_t *sku = find(skus, "Storage Image", region);

	if (sku == NULL) {
		*cause =
		    xasprintf("the price catalog has no SKU 'Storage Image' for region %s", region);
		return -ENOENT;
	}
	*per_gib_month = unit_price(sku);
	return 0;
}

/* The SKUs a VM's price is made of, and an image's: each must cost something. */
static bool
priced_here(const char *description)
{
	static const char *parts[] = {" Instance Core running in ", " Instance Ram running in ",
	    "PD Capacity", "External IP Charge on a ", "Storage Image"};

	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		if (strstr(description, parts[i]) != NULL)
			return true;
	return false;
}

int
price_catalog_check(const json_t *catalog, char **cause)
{
	size_t i;
	json_t *sku;

	if (!json_is_array(catalog) || json_array_size(catalog) == 0) {
		*cause = xstrdup("the price catalog has no SKUs");
		return -EINVAL;
	}
	json_array_foreach (catalog, i, sku) {
		const char *d = jx_str(sku, "description"), *id = jx_str(sku, "skuId");
		const json_t *rates = jx_get(sku, "pricingInfo.0.pricingExpression.tieredRates");
		char why[160] = "";
		double price = 0;
		size_t k;
		json_t *tier;

		if (d == NULL || !json_is_array(rates) || json_array_size(rates) == 0) {
			*cause = xasprintf(
			    "SKU %zu of the price catalog has no description or no price", i);
			return -EINVAL;
		}
		/* Every tier well formed, none negative or absurd; the last one is what we pay. */
		json_array_foreach (rates, k, tier)
			if (money(json_object_get(tier, "unitPrice"), &price, why, sizeof why) != 0)
				break;
		if (why[0] == '\0' && price <= 0 && priced_here(d))
			snprintf(why, sizeof why,
			    "the price $0, but what a VM is made of costs "
			    "something");
		if (why[0] != '\0') {
			*cause = xasprintf("SKU '%s' (%s) of the price catalog: %s; the whole "
			                   "catalog is refused",
			    d, id != NULL ? id : "no skuId", why);
			return -EINVAL;
		}
	}
	return 0;
}

json_t *
price_catalog_compact(const json_t *catalog)
{
	json_t *out = json_array(), *sku;
	size_t i;

	json_array_foreach (catalog, i, sku) {
		const char *d = jx_str(sku, "description");
		json_t *regions = json_object_get(sku, "serviceRegions"),
		       *rates = jx_get(sku, "pricingInfo.0.pricingExpression.tieredRates"),
		       *when = jx_get(sku, "pricingInfo.0.effectiveTime"),
		       *id = json_object_get(sku, "skuId"), *info, *kept;

		/* One no VM is priced from, or that serves no region, is never found. */
		if (d == NULL || !priced_here(d) || !json_is_array(regions) ||
		    json_array_size(rates) == 0)
			continue;
		info = jx_pack("{s:{s:[O]}}", "pricingExpression", "tieredRates",
		    json_array_get(rates, json_array_size(rates) - 1)); /* what we pay */
		if (json_is_string(when))
			json_object_set(info, "effectiveTime", when);
		kept = jx_pack("{s:s, s:O, s:[o]}", "description", d, "serviceRegions", regions,
		    "pricingInfo", info);
		if (json_is_string(id)) /* for what a refusal says */
			json_object_set(kept, "skuId", id);
		json_array_append_new(out, kept);
	}
	return out;
}
