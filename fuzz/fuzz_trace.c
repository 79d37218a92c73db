/* A pressure trace (--record/--replay), line by line as trace_load reads it. */
#include <stdlib.h>

#include "fuzz.h"
#include "pressure/trace.h"
#include "util/str.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_text(data, size), **lines = str_split(text, '\n', NULL), *why = NULL;
	struct pressure_sample s;
	char back[1024];

	for (char **l = lines; *l != NULL; l++) {
		if (trace_parse_line(*l, &s, &why) == 0) {
			/* What parses formats, and reads back the same. */
			struct pressure_sample again;

			if (trace_format(&s, back, sizeof back) < 0)
				abort();
			back[strcspn(back, "\n")] = '\0';
			if (trace_parse_line(back, &again, &why) != 0)
				abort();
		}
		free(why);
		why = NULL;
	}
	str_list_free(lines);
	free(text);
	return 0;
}
