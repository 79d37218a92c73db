/* The Cloud Billing catalog's SKUs, as the price lookup reads a page of them. */
#include <stdlib.h>

#include "fuzz.h"
#include "ledger/pricing.h"
#include "util/jx.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *types[] = {"e2-highmem-4", "n2-standard-8", "n2d-highmem-2"};
	json_t *v = NULL;
	char *cause = NULL;

	if (jx_parse((const char *)data, size, &v, NULL) != 0)
		return 0;
	if (price_catalog_check(v, &cause) == 0) {
		for (size_t i = 0; i < 6; i++) {
			struct price_query q = {
			    types[i % 3], "us-central1", i < 3, 4, 32768, 20, "pd-balanced", true};
			struct price p;

			free(cause);
			cause = NULL;
			price_lookup(json_object_get(v, "skus"), &q, &p, &cause);
		}
	}
	free(cause);
	json_decref(v);
	return 0;
}
