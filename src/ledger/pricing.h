/*
 * What a VM costs: Google's Cloud Billing Catalog (the SKU list of Compute
 * Engine), as shipped in data/gce-prices.json and as refreshed from the
 * billing API, turned into an hourly price for a machine type in a region.
 *
 *	price/h = vCPUs x core + GiB x RAM            (Spot or on-demand SKUs of the family)
 *	        + disk GB x disk per GiB-month / 730  (balanced or standard persistent disk)
 *	        + one in-use external IPv4 address    (the Spot or the standard VM rate)
 *
 * Pure: JSON in, numbers out.
 */
#ifndef SPILLWAY_PRICING_H
#define SPILLWAY_PRICING_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct price_query {
	const char
	    *machine_type;  /* "e2-highmem-4": the family is what comes before the first '-' */
	const char *region; /* "us-central1" */
	bool spot;
	int vcpus;
	int memory_mb;
	int disk_gb;
	const char *disk_type; /* "pd-balanced" or "pd-standard" */
	bool external_ip;
};

struct price {
	double per_hour; /* all of it */
	double core_per_hour, ram_per_gib_hour, disk_per_hour, ip_per_hour;
	char effective[32]; /* when the catalog's prices took effect */
};

/*
 * 0, or -ENOENT with a cause naming the SKU that is missing for this family
 * and region, or -EINVAL when the price is outside (0, PRICE_MAX_PER_HOUR].
 */
int price_lookup(const json_t *skus, const struct price_query *, struct price *, char **cause);
/*
 * What gib GiB of a persistent disk type ("pd-balanced", "pd-standard")
 * costs an hour in a region. 0, or -ENOENT with a cause naming the SKU.
 */
int price_disk(const json_t *skus, const char *region, const char *disk_type, double gib,
    double *per_hour, char **cause);
/*
 * What an image's storage costs a GiB a month in a region: the SKU "Storage
 * Image". 0, or -ENOENT with a cause.
 */
int price_image_storage(
    const json_t *skus, const char *region, double *per_gib_month, char **cause);
/*
 * The SKU list must be an array of SKUs whose every tier is a well-formed
 * price in USD from $0 to $1000 a unit, and the SKUs a VM is priced from
 * (cores, RAM, disk, external IP) must cost more than $0; otherwise the whole
 * catalog is refused: -EINVAL with a cause naming the SKU.
 */
int price_catalog_check(const json_t *catalog, char **cause);
/*
 * Of a catalog (checked, or a page of one: a SKU without a description, a
 * region or a price is left out), what price_lookup reads, of the SKUs it
 * reads (cores, RAM, disk, external IP): the same prices in a fraction of
 * the memory. Google's catalog for Compute Engine holds tens of thousands of
 * SKUs (GPUs, licences, other families), each with more than its price.
 */
json_t *price_catalog_compact(const json_t *catalog);

#endif
