#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ledger/pricing.h"
#include "util/jx.h"
#include "util/xmalloc.h"

#define HOURS_PER_MONTH 730.0

/* Google's display names of the families in SKU descriptions. */
static const struct {
	const char *prefix, *name;
} families[] = {
    {"e2", "E2"},
    {"n2d", "N2D AMD"},
    {"n2", "N2"},
};

static double
unit_price(const json_t *sku)
{
	const json_t *money =
	    jx_get(sku, "pricingInfo.0.pricingExpression.tieredRates.0.unitPrice");
	int64_t units = 0;
	json_t *rates = jx_get(sku, "pricingInfo.0.pricingExpression.tieredRates");
	size_t n = json_array_size(rates);

	/* The last tier is the one a VM's usage lands in beyond free tiers. */
	if (n > 1)
		money = jx_get(json_array_get(rates, n - 1), "unitPrice");
	jx_int64(json_object_get(money, "units"), &units);
	return (double)units + (double)json_integer_value(json_object_get(money, "nanos")) / 1e9;
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
price_lookup(const json_t *skus, const struct price_query *q, struct price *p, char **cause)
{
	const char *fam = family_name(q->machine_type), *where = geo(q->region);
	const json_t *core, *ram, *disk = NULL, *ip = NULL;
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
	if (q->disk_gb > 0) {
		const char *d = q->disk_type != NULL && strcmp(q->disk_type, "pd-standard") == 0
		    ? "Storage PD Capacity"
		    : "Balanced PD Capacity";

		if ((disk = find(skus, d, q->region)) == NULL) {
			*cause = xasprintf(
			    "the price catalog has no SKU '%s' for region %s", d, q->region);
			return -ENOENT;
		}
	}
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
	p->disk_per_hour = disk != NULL ? unit_price(disk) * q->disk_gb / HOURS_PER_MONTH : 0;
	p->ip_per_hour = ip != NULL ? unit_price(ip) : 0;
	p->per_hour = q->vcpus * p->core_per_hour + q->memory_mb / 1024.0 * p->ram_per_gib_hour +
	    p->disk_per_hour + p->ip_per_hour;
	snprintf(p->effective, sizeof p->effective, "%s",
	    jx_str(core, "pricingInfo.0.effectiveTime") != NULL
	        ? jx_str(core, "pricingInfo.0.effectiveTime")
	        : "unknown");
	return 0;
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
		if (jx_str(sku, "description") == NULL ||
		    jx_get(sku, "pricingInfo.0.pricingExpression.tieredRates.0.unitPrice") ==
		        NULL) {
			*cause = xasprintf(
			    "SKU %zu of the price catalog has no description or no price", i);
			return -EINVAL;
		}
	}
	return 0;
}
