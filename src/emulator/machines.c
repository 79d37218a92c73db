/*
 * Machine types of the E2, N2 and N2D families, as machineTypes.get answers
 * them: vCPUs and memory are Google's published shapes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/internal.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

struct family {
	const char *prefix; /* "e2-highmem-" */
	int mb_per_vcpu;
	const int *sizes;  /* vCPU counts, 0-terminated */
	const char *label; /* for the description */
};

static const int e2_sizes[] = {2, 4, 8, 16, 32, 0};
static const int e2_highmem[] = {2, 4, 8, 16, 0};
static const int n2_sizes[] = {2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 0};
static const int n2_highcpu[] = {2, 4, 8, 16, 32, 48, 64, 80, 96, 0};
static const int n2d_sizes[] = {2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224, 0};
static const int n2d_highmem[] = {2, 4, 8, 16, 32, 48, 64, 80, 96, 0};

static const struct family families[] = {
    {"e2-standard-", 4096, e2_sizes, "Efficient Instance"},
    {"e2-highmem-", 8192, e2_highmem, "Efficient Instance"},
    {"e2-highcpu-", 1024, e2_sizes, "Efficient Instance"},
    {"n2-standard-", 4096, n2_sizes, "N2"},
    {"n2-highmem-", 8192, n2_sizes, "N2"},
    {"n2-highcpu-", 1024, n2_highcpu, "N2"},
    {"n2d-standard-", 4096, n2d_sizes, "N2D AMD"},
    {"n2d-highmem-", 8192, n2d_highmem, "N2D AMD"},
    {"n2d-highcpu-", 1024, n2d_sizes, "N2D AMD"},
};

/* Shared-core E2 types: two vCPUs time-shared. */
static const struct {
	const char *name;
	int memory_mb;
} shared_core[] = {{"e2-micro", 1024}, {"e2-small", 2048}, {"e2-medium", 4096}};

int
machine_lookup(const char *name, int *vcpus, int *memory_mb, bool *shared)
{
	*shared = false;
	for (size_t i = 0; i < nitems(shared_core); i++) {
		if (strcmp(name, shared_core[i].name) == 0) {
			*vcpus = 2;
			*memory_mb = shared_core[i].memory_mb;
			*shared = true;
			return 0;
		}
	}
	for (size_t i = 0; i < nitems(families); i++) {
		const struct family *f = &families[i];
		int64_t n;

		if (!str_prefix(name, f->prefix) ||
		    parse_int64(name + strlen(f->prefix), 1, 1024, &n) != 0)
			continue;
		for (const int *s = f->sizes; *s != 0; s++) {
			if (*s == n) {
				*vcpus = (int)n;
				*memory_mb = (int)n * f->mb_per_vcpu;
				return 0;
			}
		}
	}
	return -ENOENT;
}

static const char *
family_label(const char *name)
{
	for (size_t i = 0; i < nitems(families); i++)
		if (strncmp(name, families[i].prefix, strcspn(families[i].prefix, "-")) == 0)
			return families[i].label;
	return "Efficient Instance";
}

json_t *
machine_json(struct emulator *emu, struct zone *z, const char *name)
{
	int vcpus, mb;
	bool shared;
	char *desc, *link, id[24];
	unsigned long h = 5381;
	json_t *v;

	if (machine_lookup(name, &vcpus, &mb, &shared) != 0)
		return NULL;
	/* A stable id per type, as Google's are. */
	for (const char *p = name; *p != '\0'; p++)
		h = h * 33 + (unsigned char)*p;
	snprintf(id, sizeof id, "%lu", 800000000000UL + h % 100000000000UL);
	if (shared)
		desc = xasprintf("%s, 2 vCPU (%s shared physical core) and %d GB RAM",
		    family_label(name),
		    mb == 1024       ? "0.25"
		        : mb == 2048 ? "0.5"
		                     : "1",
		    mb / 1024);
	else
		desc = xasprintf("%s, %d vCPUs, %d GB RAM", family_label(name), vcpus, mb / 1024);
	link =
	    xasprintf(GCE_LINK "projects/%s/zones/%s/machineTypes/%s", emu->project, z->name, name);
	v = jx_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:s, s:s, s:s, s:b}", "kind",
	    "compute#machineType", "id", id, "creationTimestamp", "1969-12-31T16:00:00.000-08:00",
	    "name", name, "description", desc, "guestCpus", vcpus, "memoryMb", mb, "imageSpaceGb",
	    0, "maximumPersistentDisks", 128, "maximumPersistentDisksSizeGb", "263168", "zone",
	    z->name, "selfLink", link, "isSharedCpu", shared);
	free(desc);
	free(link);
	return v;
}

/* Every type's name, sorted: built once, kept for the process's life. */
const char *
machine_name(size_t i)
{
	static char **names;
	static size_t n;

	if (names == NULL) {
		size_t cap = nitems(shared_core);

		for (size_t f = 0; f < nitems(families); f++)
			for (const int *s = families[f].sizes; *s != 0; s++)
				cap++;
		names = xcalloc(cap, sizeof *names);
		for (size_t k = 0; k < nitems(shared_core); k++)
			names[n++] = xstrdup(shared_core[k].name);
		for (size_t f = 0; f < nitems(families); f++)
			for (const int *s = families[f].sizes; *s != 0; s++)
				names[n++] = xasprintf("%s%d", families[f].prefix, *s);
		qsort(names, n, sizeof *names, str_ptr_cmp);
	}
	return i < n ? names[i] : NULL;
}
