/*
 * What a client sends the emulator, as it parses it: a batch's multipart
 * body (its first line is the boundary), a list filter (matched against a
 * resource) and a partial response's field selection.
 */
#include <jansson.h>

#include "emulator/fields.h"
#include "emulator/filter.h"
#include "emulator/internal.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_text(data, size), *nl = memchr(text, '\n', size), *cause = NULL;
	json_t *res = json_pack("{s:s, s:s, s:{s:s}, s:[{s:s}], s:i}", "name", "spillway-1",
	    "status", "RUNNING", "labels", "team", "ml", "networkInterfaces", "networkIP",
	    "10.0.0.1", "cpus", 4);
	struct batch *b = NULL;
	struct filter *f = NULL;
	struct fields *sel = NULL;

	if (nl != NULL) {
		*nl = '\0';
		if (batch_parse(nl + 1, size - (size_t)(nl + 1 - text), text, &b, &cause) == 0)
			batch_free(b);
		free(cause);
		cause = NULL;
	}
	if (filter_parse(text, &f, &cause) == 0) {
		filter_match(f, res);
		filter_free(f);
	}
	free(cause);
	cause = NULL;
	if (fields_parse(text, &sel, &cause) == 0) {
		json_decref(fields_select(sel, res));
		fields_free(sel);
	}
	free(cause);
	json_decref(res);
	free(text);
	return 0;
}
