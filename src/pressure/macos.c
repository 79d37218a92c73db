#include <errno.h>
#include <string.h>
#include <sys/sysctl.h>

#include <mach/mach.h>
#include <mach/mach_host.h>

#include "pressure/macos.h"

int
macos_sample(struct pressure_sample *s)
{
	int level = 0;
	uint64_t memsize = 0;
	struct xsw_usage swap;
	vm_statistics64_data_t vm;
	mach_msg_type_number_t count = HOST_VM_INFO64_COUNT;
	size_t len = sizeof level;
	vm_size_t page = 0;
	uint64_t used, compressed;

	if (sysctlbyname("kern.memorystatus_vm_pressure_level", &level, &len, NULL, 0) != 0)
		return -errno;
	len = sizeof memsize;
	if (sysctlbyname("hw.memsize", &memsize, &len, NULL, 0) != 0)
		return -errno;
	if (host_statistics64(mach_host_self(), HOST_VM_INFO64, (host_info64_t)&vm, &count) !=
	        KERN_SUCCESS ||
	    host_page_size(mach_host_self(), &page) != KERN_SUCCESS)
		return -EIO;
	s->macos_level = level;
	s->mem.total_kb = (int64_t)(memsize / 1024);
	/* Free, purgeable and file-backed pages can be had back without swapping. */
	s->mem.available_kb =
	    (int64_t)(((uint64_t)vm.free_count + vm.purgeable_count + vm.external_page_count) *
	        page / 1024);
	s->mem.free_kb = (int64_t)((uint64_t)vm.free_count * page / 1024);
	s->mem.has_available = true;
	/* XNU warns when compressed pages outnumber the uncompressed ones in use. */
	compressed = vm.compressor_page_count;
	used = (uint64_t)vm.internal_page_count + vm.wire_count + compressed;
	s->macos_compressed_ratio = used > 0 ? (double)compressed / (double)used : 0;
	s->vm.pswpin = vm.swapins;
	s->vm.pswpout = vm.swapouts;
	s->vm.pgmajfault = vm.pageins;
	s->vm.refault_anon = vm.decompressions;
	len = sizeof swap;
	if (sysctlbyname("vm.swapusage", &swap, &len, NULL, 0) == 0) {
		s->mem.swap_total_kb = (int64_t)(swap.xsu_total / 1024);
		s->mem.swap_free_kb = (int64_t)(swap.xsu_avail / 1024);
	}
	return 0;
}
