// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "firmware/boot_params.h"
#include "firmware/x86_layout.h"
#include "vmm/base/util.h"

#define SETUP_HDR_OFFSET	0x1f1
#define BOOT_FLAG_MAGIC		0xaa55
#define HDRS_MAGIC		0x53726448	/* "HdrS" */
#define MIN_PROTOCOL		0x020c		/* 2.12: XLF_KERNEL_64, 64-bit entry */
#define LOADER_TYPE_UNDEFINED	0xff
#define PAGE_SIZE_4K		0x1000ULL

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

#define HDR_OFF(field) offsetof(struct boot_params, hdr.field)

int bzimage_parse(const void *image, size_t size, struct bzimage_info *info, const char **why)
{
	const uint8_t *b = image;
	unsigned int setup_sects;

	*why = NULL;
	if (size < HDR_OFF(init_size) + 4) {
		*why = "the file is too small to be a bzImage";
		return -EINVAL;
	}
	if (get_le16(b + HDR_OFF(boot_flag)) != BOOT_FLAG_MAGIC ||
	    get_le32(b + HDR_OFF(header)) != HDRS_MAGIC) {
		*why = "no Linux boot header (boot flag 0xaa55 and \"HdrS\" missing): not a bzImage";
		return -EINVAL;
	}
	memset(info, 0, sizeof(*info));
	info->protocol = get_le16(b + HDR_OFF(version));
	if (info->protocol < MIN_PROTOCOL) {
		*why = "boot protocol older than 2.12 (no 64-bit entry point): the kernel is too old";
		return -EINVAL;
	}
	if (!(b[HDR_OFF(loadflags)] & LOADED_HIGH)) {
		*why = "a zImage (loaded low) rather than a bzImage";
		return -EINVAL;
	}
	if (!(get_le16(b + HDR_OFF(xloadflags)) & XLF_KERNEL_64)) {
		*why = "the kernel has no 64-bit entry point (a 32-bit kernel?)";
		return -EINVAL;
	}
	setup_sects = b[HDR_OFF(setup_sects)];
	if (setup_sects == 0)
		setup_sects = 4;
	info->setup_size = (setup_sects + 1ULL) * 512;
	if (info->setup_size >= size) {
		*why = "the setup header claims more sectors than the file has";
		return -EINVAL;
	}
	/* syssize counts the protected-mode kernel in 16-byte units; a signature may follow it. */
	if (info->setup_size + get_le32(b + HDR_OFF(syssize)) * 16ULL > size) {
		*why = "the file is shorter than its setup header says (setup sectors and "
		       "syssize): a truncated or partly copied kernel";
		return -EINVAL;
	}
	info->kernel_size = size - info->setup_size;
	info->pref_address = get_le64(b + HDR_OFF(pref_address));
	info->init_size = get_le32(b + HDR_OFF(init_size));
	info->kernel_alignment = get_le32(b + HDR_OFF(kernel_alignment));
	info->initrd_addr_max = get_le32(b + HDR_OFF(initrd_addr_max));
	info->cmdline_size = get_le32(b + HDR_OFF(cmdline_size));
	info->relocatable = b[HDR_OFF(relocatable_kernel)] != 0;
	if (info->init_size < info->kernel_size)
		info->init_size = (uint32_t)MIN(info->kernel_size, UINT32_MAX);
	return 0;
}

int boot_layout_plan(const struct bzimage_info *info, const struct guest_mem_range *ram,
		     unsigned int nram, uint64_t initrd_size, struct boot_layout *layout,
		     uint64_t *needed)
{
	uint64_t low_end = nram ? ram[0].gpa + ram[0].size : 0;
	uint64_t run_addr, initrd_top, initrd_gpa;

	memset(layout, 0, sizeof(*layout));
	layout->kernel_gpa = X86_HIMEM_GPA;
	layout->cmdline_gpa = X86_CMDLINE_GPA;
	layout->rsdp_gpa = X86_ACPI_GPA;

	/*
	 * The decompressor moves the kernel to its runtime address (at least
	 * pref_address for a relocatable kernel) and needs init_size bytes there.
	 */
	run_addr = MAX(layout->kernel_gpa, info->pref_address);
	layout->kernel_end = MAX(run_addr + info->init_size,
				 layout->kernel_gpa + info->kernel_size);
	layout->kernel_end = ALIGN_UP(layout->kernel_end, PAGE_SIZE_4K);

	*needed = layout->kernel_end + ALIGN_UP(initrd_size, PAGE_SIZE_4K);
	if (!nram || ram[0].gpa != 0 || layout->kernel_end > low_end)
		return -ENOSPC;
	if (!initrd_size)
		return 0;

	/* The initrd goes as high as allowed, page aligned, above the kernel. */
	initrd_top = MIN(low_end, (uint64_t)info->initrd_addr_max + 1);
	if (initrd_size > initrd_top)
		return -ENOSPC;
	initrd_gpa = ALIGN_DOWN(initrd_top - initrd_size, PAGE_SIZE_4K);
	if (initrd_gpa < layout->kernel_end)
		return -ENOSPC;
	layout->initrd_gpa = initrd_gpa;
	layout->initrd_size = initrd_size;
	return 0;
}

static int e820_add(struct boot_e820_entry *t, unsigned int max, unsigned int *n,
		    uint64_t addr, uint64_t size, uint32_t type)
{
	if (!size)
		return 0;
	if (*n >= max)
		return -ENOSPC;
	t[*n] = (struct boot_e820_entry){ .addr = addr, .size = size, .type = type };
	(*n)++;
	return 0;
}

int e820_build(struct boot_e820_entry *table, unsigned int max, const struct guest_mem_range *ram,
	       unsigned int nram)
{
	unsigned int n = 0;
	int ret = 0;

	for (unsigned int i = 0; i < nram && !ret; i++) {
		uint64_t start = ram[i].gpa, end = ram[i].gpa + ram[i].size;

		if (start < X86_HIMEM_GPA) {
			/* Real-mode RAM, then the EBDA/ACPI/BIOS area, then RAM from 1 MiB. */
			if (start < X86_LOW_RAM_END)
				ret = e820_add(table, max, &n, start, MIN(end, X86_LOW_RAM_END) - start,
					       E820_TYPE_RAM);
			if (!ret && end > X86_LOW_RAM_END)
				ret = e820_add(table, max, &n, MAX(start, X86_LOW_RAM_END),
					       MIN(end, X86_HIMEM_GPA) - MAX(start, X86_LOW_RAM_END),
					       E820_TYPE_RESERVED);
			start = X86_HIMEM_GPA;
		}
		if (!ret && end > start)
			ret = e820_add(table, max, &n, start, end - start, E820_TYPE_RAM);
	}
	return ret ? ret : (int)n;
}

int boot_params_build(struct boot_params *bp, const void *image, const struct bzimage_info *info,
		      const struct boot_layout *layout, const struct guest_mem_range *ram,
		      unsigned int nram)
{
	const uint8_t *b = image;
	size_t hdr_end;
	int n;

	memset(bp, 0, sizeof(*bp));
	/* The setup header runs from 0x1f1 to 0x202 + the byte at 0x201. */
	hdr_end = 0x202 + b[0x201];
	if (hdr_end > sizeof(*bp) || hdr_end > info->setup_size)
		return -EINVAL;
	memcpy((uint8_t *)bp + SETUP_HDR_OFFSET, b + SETUP_HDR_OFFSET, hdr_end - SETUP_HDR_OFFSET);

	bp->hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
	bp->hdr.loadflags |= CAN_USE_HEAP | KEEP_SEGMENTS;
	bp->hdr.loadflags &= ~QUIET_FLAG;
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->hdr.ext_loader_ver = 0;
	bp->hdr.cmd_line_ptr = (uint32_t)layout->cmdline_gpa;
	bp->ext_cmd_line_ptr = (uint32_t)(layout->cmdline_gpa >> 32);
	bp->hdr.ramdisk_image = (uint32_t)layout->initrd_gpa;
	bp->hdr.ramdisk_size = (uint32_t)layout->initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(layout->initrd_gpa >> 32);
	bp->ext_ramdisk_size = (uint32_t)(layout->initrd_size >> 32);
	bp->hdr.code32_start = (uint32_t)layout->kernel_gpa;
	bp->acpi_rsdp_addr = layout->rsdp_gpa;

	n = e820_build(bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE, ram, nram);
	if (n < 0)
		return -EINVAL;
	bp->e820_entries = (uint8_t)n;
	return 0;
}
