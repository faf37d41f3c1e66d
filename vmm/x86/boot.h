/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * x86-64 guest boot through the Linux 64-bit boot protocol: the kernel,
 * initrd, command line and zero page go into guest RAM; the boot CPU starts
 * in long mode at the kernel's 64-bit entry with identity-mapped page tables.
 * The arch_boot_* and arch_load_guest hooks of vmm/arch.h live here.
 */
#ifndef VMM_X86_BOOT_H
#define VMM_X86_BOOT_H

#include <stdint.h>

#include "firmware/boot_params.h"
#include "vmm/base/guest_mem.h"
#include "vmm/x86/x86.h"

/*
 * Writes page tables, GDT, kernel, initrd, command line and zero page into
 * mem, following the plan in *layout. 0 or -errno (-EIO reading the initrd).
 */
int x86_boot_load(const struct guest_mem *mem, const struct arch_boot *img,
		  const struct boot_layout *layout, const char *cmdline);

/* Sets the boot CPU's registers for the 64-bit entry point; 0 or -errno. */
int x86_vcpu_init_boot_state(int vcpu_fd);

#endif
