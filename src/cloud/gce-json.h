/* Compute Engine's JSON to results and back (gce-json.c), for gce.c. */
#ifndef SPILLWAY_GCE_JSON_H
#define SPILLWAY_GCE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cloud/provider.h"

/* The last segment of a URL: a zone or machine type from its link. */
const char *gce_last_segment(const char *link);
/* A short text field of an answer: present, a string, and shorter than size. */
bool gce_fits(const char *, size_t size);
void gce_op_from_json(json_t *v, struct cloud_op *op);
const char *gce_instance_from_json(json_t *v, struct cloud_instance *in);
const char *gce_preemption_from_json(json_t *v, struct cloud_op *op);
void gce_instances_free(struct cloud_instance *list, size_t n);
bool gce_valid_name(const char *s);
json_t *gce_instance_body(const struct cloud_instance_spec *s);
/* An image: NULL, or the field that makes it none we can keep (its labels are allocated). */
const char *gce_image_from_json(json_t *v, struct cloud_image *);
json_t *gce_image_body(const struct cloud_image_spec *);

/* A typed error and what its strings point into (gce_error_release frees it). */
struct gce_error {
	struct cloud_error err;
	json_t *json;
	char *text, *zone, *metric;
};
/* From an HTTP answer that is not 2xx: Google's envelope, or whatever came instead. */
void gce_error_from_http(long status, const char *body, size_t len, struct gce_error *);
/* From an operation: false when it carries no error; a stockout's zone else target_zone. */
bool gce_error_from_op(json_t *op, const char *target_zone, struct gce_error *);
void gce_error_release(struct gce_error *);

#endif
