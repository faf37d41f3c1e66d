/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The Linux x86 boot protocol (Documentation/arch/x86/boot.rst): reading a
 * bzImage's setup header, choosing where kernel and initrd go, and filling the
 * "zero page" (struct boot_params) with the e820 memory map. Pure functions:
 * no I/O, no guest memory access, so they are unit-tested directly.
 */
#ifndef FIRMWARE_BOOT_PARAMS_H
#define FIRMWARE_BOOT_PARAMS_H

#include <asm/bootparam.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/base/guest_mem.h"

#define E820_TYPE_RAM		1
#define E820_TYPE_RESERVED	2

/* What the bzImage setup header says, validated. */
struct bzimage_info {
	uint16_t protocol;		/* boot protocol version, e.g. 0x020f */
	uint64_t setup_size;		/* bytes before the protected-mode kernel in the file */
	uint64_t kernel_size;		/* bytes of protected-mode kernel in the file */
	uint64_t pref_address;		/* preferred runtime address */
	uint32_t init_size;		/* bytes the kernel needs from its runtime address */
	uint32_t kernel_alignment;
	uint32_t initrd_addr_max;	/* highest address the initrd may end at, inclusive */
	uint32_t cmdline_size;		/* maximum command line length, excluding the NUL */
	bool relocatable;
};

/*
 * Validates a bzImage (boot signature, "HdrS", protocol >= 2.12, loaded high,
 * 64-bit entry point, a file at least as long as (setup_sects + 1) * 512 +
 * syssize * 16) and fills *info. image holds the file's first bytes (at least
 * the setup header), size is the whole file's. 0, or -EINVAL with *why set to
 * a static reason.
 */
int bzimage_parse(const void *image, size_t size, struct bzimage_info *info, const char **why);

/* Where things go in guest memory, chosen by boot_layout_plan(). */
struct boot_layout {
	uint64_t kernel_gpa;		/* protected-mode kernel load address (64-bit entry = +0x200) */
	uint64_t kernel_end;		/* end of the area the kernel needs to decompress */
	uint64_t initrd_gpa;		/* 0 when there is no initrd */
	uint64_t initrd_size;
	uint64_t cmdline_gpa;
	uint64_t rsdp_gpa;
};

/*
 * Plans kernel and initrd placement inside the RAM ranges (the first must
 * start at 0, the second, if any, at 4 GiB). 0, or -ENOSPC when they do not fit,
 * with *needed set to the low RAM that would be enough.
 */
int boot_layout_plan(const struct bzimage_info *info, const struct guest_mem_range *ram,
		     unsigned int nram, uint64_t initrd_size, struct boot_layout *layout,
		     uint64_t *needed);

/*
 * Fills the e820 table: RAM from `ram`, the EBDA/BIOS area below 1 MiB reserved.
 * Returns the number of entries, or -ENOSPC if max is too small.
 */
int e820_build(struct boot_e820_entry *table, unsigned int max, const struct guest_mem_range *ram,
	       unsigned int nram);

/*
 * Fills the zero page: the image's setup header, loader type, command line,
 * initrd, ACPI RSDP pointer and the e820 map. image is the start of the bzImage
 * (at least info->setup_size bytes). 0 or -EINVAL.
 */
int boot_params_build(struct boot_params *bp, const void *image, const struct bzimage_info *info,
		      const struct boot_layout *layout, const struct guest_mem_range *ram,
		      unsigned int nram);

#endif
