/* What the kernel's pressure files hold, as the monitor parses them: PSI, meminfo, vmstat. */
#include "fuzz.h"
#include "pressure/procfs.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_text(data, size);
	struct psi psi;
	struct meminfo mem;
	struct vmstat vm;

	psi_parse(text, &psi);
	meminfo_parse(text, &mem);
	vmstat_parse(text, &vm);
	free(text);
	return 0;
}
