/*
 * libFuzzer harnesses for every parser of outside input (docs/testing.md).
 * Each file is one harness: LLVMFuzzerTestOneInput takes bytes as the
 * outside world would send them. Built by `meson setup -Dfuzz=true` with
 * clang (make fuzz); seed corpora and crashes found live in fuzz/corpus/NAME.
 */
#ifndef SPILLWAY_FUZZ_H
#define SPILLWAY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The input as a C string (what a reader of text would see: up to a NUL). */
static inline char *
fuzz_text(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);

	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif
