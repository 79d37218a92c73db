/*
 * What the kernel's files hold, as spillway parses them: PSI, meminfo, vmstat
 * (the monitor), a process's stat and a smaps_rollup's Pss (a local copy's
 * measure: a process's name in its stat is anything its program chose).
 */
#include "fuzz.h"
#include "pressure/procfs.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_text(data, size);
	struct psi psi;
	struct meminfo mem;
	struct vmstat vm;
	struct proc_stat st;

	psi_parse(text, &psi);
	meminfo_parse(text, &mem);
	vmstat_parse(text, &vm);
	proc_stat_parse(text, &st);
	proc_field_kb(text, "Pss");
	free(text);
	return 0;
}
