/*
 * Compute Engine's answers as the client reads them: instances, lists,
 * operations (with their errors), images, Google's error envelopes of any
 * status. The client's own parsers (gce.c and gce-methods.c included whole
 * so their static functions run, gce-json.c);
 * then what the manager keeps of what they pass on (cloud_seen_copy,
 * cloud_preempted_copy), which must take every answer the parsers accept:
 * no remote input may reach an abort.
 */
#include "../src/cloud/gce.c"
#include "../src/cloud/gce-methods.c"

#include <stdlib.h>

#include "fuzz.h"

/* What the manager does with an instance the provider passed on. */
static void
keep_instance(json_t *v)
{
	struct cloud_instance in;
	struct cloud_seen seen;

	if (gce_instance_from_json(v, &in) == NULL && cloud_seen_copy(&in, &seen) != 0)
		abort(); /* the provider passed on what cannot be kept */
	free((void *)in.labels);
	free((void *)in.metadata);
}

/* An image as a listing passes it on: its strings there, its size sane. */
static void
keep_image(json_t *v)
{
	struct cloud_image im;

	if (gce_image_from_json(v, &im) == NULL &&
	    (im.name == NULL || im.family == NULL || im.status == NULL || im.disk_gb <= 0))
		abort();
	free((void *)im.labels);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct call c;
	struct http_response r = {0};
	struct cloud_op op;
	struct cloud_preempted p;
	json_t *v = NULL, *it;
	size_t i;

	if (size < 2)
		return 0;
	/* An error answer: the first two bytes choose the status. */
	memset(&c, 0, sizeof c);
	r.status = 100 + (data[0] << 8 | data[1]) % 500;
	r.body = (const char *)data + 2;
	r.len = size - 2;
	http_error(&c, &r);
	call_clear_error(&c);
	if (jx_parse((const char *)data + 2, size - 2, &v, NULL) != 0)
		return 0;
	/* An instance, a list's items, an operation and its error, a preemption. */
	keep_instance(v);
	keep_image(v);
	json_array_foreach (json_object_get(v, "items"), i, it) {
		keep_instance(it);
		keep_image(it);
		if (gce_preemption_from_json(it, &op) == NULL && cloud_preempted_copy(&op, &p) != 0)
			abort();
	}
	gce_op_from_json(v, &op);
	memset(&c, 0, sizeof c);
	op_failed(&c, v);
	call_clear_error(&c);
	json_decref(v);
	return 0;
}
