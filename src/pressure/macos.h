/*
 * macOS's pressure sources, compiled only there: kern.memorystatus_vm_pressure_level
 * (1 normal, 2 warn, 4 critical; polled, it costs microseconds), the compressor
 * and swap counters of host_statistics64(HOST_VM_INFO64) and vm.swapusage.
 * What the level makes of them is macos_level_input() in level.c, tested everywhere.
 */
#ifndef SPILLWAY_MACOS_H
#define SPILLWAY_MACOS_H

#include "pressure/pressure.h"

/* Fill the memory, swap and compressor fields of a sample. 0 or -errno. */
int macos_sample(struct pressure_sample *);

#endif
