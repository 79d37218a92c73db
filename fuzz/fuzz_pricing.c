/*
 * The Cloud Billing catalog's SKUs, as the price lookup reads a page of them:
 * a catalog the check takes never prices a VM at $0 or less, nor past the
 * bound (the budget's first rule rests on it), and any page compacts.
 */
#include <stdlib.h>

#include "fuzz.h"
#include "ledger/cost.h"
#include "ledger/pricing.h"
#include "util/jx.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *types[] = {"e2-highmem-4", "n2-standard-8", "n2d-highmem-2"};
	json_t *v = NULL;
	const json_t *skus;
	char *cause = NULL;

	if (jx_parse((const char *)data, size, &v, NULL) != 0)
		return 0;
	/* A page ({"skus": [...]}) or the list itself. */
	skus = json_is_array(v) ? v : json_object_get(v, "skus");
	/* Any page is compacted, checked or not (the daemon checks what it keeps of them). */
	json_decref(price_catalog_compact(skus));
	if (price_catalog_check(skus, &cause) == 0) {
		for (size_t i = 0; i < 6; i++) {
			struct price_query q = {
			    types[i % 3], "us-central1", i < 3, 4, 32768, 20, "pd-balanced", true};
			struct price p;

			free(cause);
			cause = NULL;
			if (price_lookup(skus, &q, &p, &cause) == 0 &&
			    !(p.per_hour > 0 && p.per_hour <= PRICE_MAX_PER_HOUR))
				abort(); /* a price that is no price got through */
		}
	}
	free(cause);
	json_decref(v);
	return 0;
}
