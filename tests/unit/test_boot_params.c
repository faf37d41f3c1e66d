// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the Linux x86 boot protocol code (firmware/boot_params.c):
 * bzImage header parsing on synthetic images and the real Debian kernel,
 * the e820 table, kernel/initrd placement and the zero page.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firmware/boot_params.h"
#include "firmware/x86_layout.h"
#include "vmm/base/util.h"

#define SECTOR		512
#define HDR_END_215	0x26c		/* end of the setup header of protocol 2.15 */

/*
 * The x86 RAM map vmm uses (vmm/x86: arch_ram_ranges, tested in test_x86.c):
 * RAM up to the MMIO hole at 3 GiB, the rest from 4 GiB.
 */
static unsigned int x86_ram(uint64_t mem_size, struct guest_mem_range out[2])
{
	out[0] = (struct guest_mem_range){ 0, MIN(mem_size, X86_MMIO_HOLE_GPA) };
	if (mem_size <= X86_MMIO_HOLE_GPA)
		return 1;
	out[1] = (struct guest_mem_range){ X86_HIGH_RAM_GPA, mem_size - X86_MMIO_HOLE_GPA };
	return 2;
}

/* ---- synthetic bzImages ---- */

struct fake_image {
	uint8_t *buf;
	size_t size;
};

/*
 * A bzImage of `size` bytes: a valid 2.15 setup header with setup_sects
 * sectors of setup code, followed by the protected-mode kernel (filled with
 * a pattern so copies of it are visible).
 */
static void fake_bzimage(struct fake_image *img, size_t size, uint8_t setup_sects)
{
	size_t hdr_end = MIN(size, (size_t)HDR_END_215);
	struct boot_params bp;
	size_t setup;

	img->buf = malloc(size ? size : 1);
	cr_assert_not_null(img->buf);
	img->size = size;
	for (size_t i = 0; i < size; i++)
		img->buf[i] = (uint8_t)(i * 7 + 3);

	memset(&bp, 0, sizeof(bp));
	bp.hdr.setup_sects = setup_sects;
	bp.hdr.boot_flag = 0xaa55;
	bp.hdr.jump = 0xeb | (HDR_END_215 - 0x202) << 8;
	bp.hdr.header = 0x53726448;	/* "HdrS" */
	bp.hdr.version = 0x020f;
	bp.hdr.loadflags = LOADED_HIGH;
	bp.hdr.kernel_alignment = 0x200000;
	bp.hdr.relocatable_kernel = 1;
	bp.hdr.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
	bp.hdr.cmdline_size = 2047;
	bp.hdr.initrd_addr_max = 0x7fffffff;
	bp.hdr.pref_address = 0x1000000;
	bp.hdr.init_size = 0x2000000;
	/* As the kernel's build does: the protected-mode kernel's size in 16-byte units. */
	setup = ((setup_sects ? setup_sects : 4) + 1u) * SECTOR;
	bp.hdr.syssize = size > setup ? (uint32_t)((size - setup) / 16) : 0;
	/* Only the header part: the setup code before it keeps its pattern. */
	if (hdr_end > 0x1f1)
		memcpy(img->buf + 0x1f1, (uint8_t *)&bp + 0x1f1, hdr_end - 0x1f1);
}

static struct boot_params *hdr_of(struct fake_image *img)
{
	/* The setup header lives at the same offsets in the file and the zero page. */
	return (struct boot_params *)img->buf;
}

static void fake_free(struct fake_image *img)
{
	free(img->buf);
	img->buf = NULL;
}

static int parse(struct fake_image *img, struct bzimage_info *info, const char **why)
{
	return bzimage_parse(img->buf, img->size, info, why);
}

Test(bzimage_parse, valid)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why = "stale";

	fake_bzimage(&img, 5 * SECTOR + 8192, 4);
	cr_assert_eq(parse(&img, &info, &why), 0, "%s", why ? why : "");
	cr_assert_null(why);
	cr_assert_eq(info.protocol, 0x020f);
	cr_assert_eq(info.setup_size, 5 * SECTOR);
	cr_assert_eq(info.kernel_size, 8192);
	cr_assert_eq(info.pref_address, 0x1000000);
	cr_assert_eq(info.init_size, 0x2000000);
	cr_assert_eq(info.kernel_alignment, 0x200000);
	cr_assert_eq(info.initrd_addr_max, 0x7fffffff);
	cr_assert_eq(info.cmdline_size, 2047);
	cr_assert(info.relocatable);
	fake_free(&img);
}

Test(bzimage_parse, setup_sects_zero_means_four)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why;

	fake_bzimage(&img, 8192, 0);
	cr_assert_eq(parse(&img, &info, &why), 0, "%s", why ? why : "");
	cr_assert_eq(info.setup_size, 5 * SECTOR);
	cr_assert_eq(info.kernel_size, 8192 - 5 * SECTOR);
	fake_free(&img);
}

Test(bzimage_parse, big_setup)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why;

	fake_bzimage(&img, 40 * SECTOR + 100, 39);
	cr_assert_eq(parse(&img, &info, &why), 0, "%s", why ? why : "");
	cr_assert_eq(info.setup_size, 40 * SECTOR);
	cr_assert_eq(info.kernel_size, 100);
	fake_free(&img);
}

Test(bzimage_parse, not_relocatable)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why;

	fake_bzimage(&img, 8192, 4);
	hdr_of(&img)->hdr.relocatable_kernel = 0;
	cr_assert_eq(parse(&img, &info, &why), 0);
	cr_assert_not(info.relocatable);
	fake_free(&img);
}

Test(bzimage_parse, init_size_at_least_kernel_size)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why;

	fake_bzimage(&img, 5 * SECTOR + 65536, 4);
	hdr_of(&img)->hdr.init_size = 4096;
	cr_assert_eq(parse(&img, &info, &why), 0);
	cr_assert_eq(info.init_size, 65536);
	fake_free(&img);
}

Test(bzimage_parse, oldest_supported_protocol)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why;

	fake_bzimage(&img, 8192, 4);
	hdr_of(&img)->hdr.version = 0x020c;
	cr_assert_eq(parse(&img, &info, &why), 0);
	cr_assert_eq(info.protocol, 0x020c);
	fake_free(&img);
}

static void expect_invalid(struct fake_image *img)
{
	struct bzimage_info info;
	const char *why = NULL;

	cr_assert_eq(parse(img, &info, &why), -EINVAL);
	cr_assert_not_null(why, "no reason given");
	cr_assert_gt(strlen(why), 10);
}

Test(bzimage_parse, too_small)
{
	struct fake_image img;

	fake_bzimage(&img, 0x263, 4);
	expect_invalid(&img);
	img.size = 0;
	expect_invalid(&img);
	fake_free(&img);
}

Test(bzimage_parse, no_boot_flag)
{
	struct fake_image img;

	fake_bzimage(&img, 8192, 4);
	hdr_of(&img)->hdr.boot_flag = 0x55aa;
	expect_invalid(&img);
	fake_free(&img);
}

Test(bzimage_parse, no_hdrs_magic)
{
	struct fake_image img;

	fake_bzimage(&img, 8192, 4);
	hdr_of(&img)->hdr.header = 0x53726449;
	expect_invalid(&img);
	fake_free(&img);
}

Test(bzimage_parse, all_zero_file)
{
	struct fake_image img;

	fake_bzimage(&img, 8192, 4);
	memset(img.buf, 0, img.size);
	expect_invalid(&img);
	fake_free(&img);
}

Test(bzimage_parse, old_protocol)
{
	struct fake_image img;

	fake_bzimage(&img, 8192, 4);
	hdr_of(&img)->hdr.version = 0x020b;
	expect_invalid(&img);
	hdr_of(&img)->hdr.version = 0x0200;
	expect_invalid(&img);
	fake_free(&img);
}

Test(bzimage_parse, not_loaded_high)
{
	struct fake_image img;

	fake_bzimage(&img, 8192, 4);
	hdr_of(&img)->hdr.loadflags = CAN_USE_HEAP;
	expect_invalid(&img);
	fake_free(&img);
}

Test(bzimage_parse, no_64bit_entry)
{
	struct fake_image img;

	fake_bzimage(&img, 8192, 4);
	hdr_of(&img)->hdr.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G;
	expect_invalid(&img);
	fake_free(&img);
}

Test(bzimage_parse, setup_sects_beyond_file)
{
	struct fake_image img;

	fake_bzimage(&img, 4096, 10);
	expect_invalid(&img);
	fake_free(&img);
	/* Exactly the setup and no kernel at all. */
	fake_bzimage(&img, 11 * SECTOR, 10);
	expect_invalid(&img);
	fake_free(&img);
}

/* The file ends before (setup_sects + 1) * 512 + syssize * 16 bytes: refused. */
Test(bzimage_parse, truncated_kernel)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why;

	fake_bzimage(&img, 5 * SECTOR + 8192, 4);
	img.size--;	/* one byte missing */
	cr_assert_eq(parse(&img, &info, &why), -EINVAL);
	cr_assert_not_null(why);
	cr_assert(strstr(why, "shorter than its setup header says"), "%s", why);
	img.size = 5 * SECTOR + 16;	/* most of the kernel missing */
	cr_assert_eq(parse(&img, &info, &why), -EINVAL);
	fake_free(&img);
}

/* setup_sects 0 means 4 in the expected size too. */
Test(bzimage_parse, truncated_kernel_setup_sects_zero)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why;

	fake_bzimage(&img, 8192, 0);
	hdr_of(&img)->hdr.syssize = (8192 - 5 * SECTOR) / 16 + 1;
	cr_assert_eq(parse(&img, &info, &why), -EINVAL);
	hdr_of(&img)->hdr.syssize = (8192 - 5 * SECTOR) / 16;
	cr_assert_eq(parse(&img, &info, &why), 0, "%s", why ? why : "");
	fake_free(&img);
}

/* Bytes after syssize (a signed kernel's signature) are allowed and loaded with the kernel. */
Test(bzimage_parse, bytes_after_syssize)
{
	struct fake_image img;
	struct bzimage_info info;
	const char *why;

	fake_bzimage(&img, 5 * SECTOR + 8192, 4);
	hdr_of(&img)->hdr.syssize = 4096 / 16;
	cr_assert_eq(parse(&img, &info, &why), 0, "%s", why ? why : "");
	cr_assert_eq(info.kernel_size, 8192);
	fake_free(&img);
}

/* ---- the real Debian kernel ---- */

static char found_kernel[4096];

static int find_kernel_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	const char *base = path + ftw->base;

	if (flag == FTW_F && !strcmp(base, "vmlinuz-6.1.0-56-amd64")) {
		snprintf(found_kernel, sizeof(found_kernel), "%s", path);
		return 1;
	}
	return 0;
}

static const char *find_real_kernel(void)
{
	static const char *const cache_dirs[] = { "/work/main/.cache" };
	glob_t g;

	found_kernel[0] = '\0';
	for (size_t i = 0; i < sizeof(cache_dirs) / sizeof(cache_dirs[0]); i++)
		if (nftw(cache_dirs[i], find_kernel_cb, 16, FTW_PHYS) == 1)
			return found_kernel;
	if (glob("/boot/vmlinuz-*", 0, NULL, &g) == 0) {
		snprintf(found_kernel, sizeof(found_kernel), "%s", g.gl_pathv[0]);
		globfree(&g);
		return found_kernel;
	}
	return NULL;
}

static void *read_file(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	void *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*size = (size_t)n;
	return buf;
}

Test(bzimage_parse, real_debian_kernel)
{
	const char *path = find_real_kernel();
	struct guest_mem_range ram[2];
	struct bzimage_info info;
	struct boot_layout layout;
	struct boot_params *bp;
	const char *why;
	uint64_t needed;
	unsigned int nram;
	size_t size;
	void *image;

	if (!path) {
		cr_skip_test("no Debian kernel found (run scripts/fetch-kernel)");
		return;
	}
	image = read_file(path, &size);
	cr_assert_not_null(image, "cannot read %s", path);
	cr_assert_eq(bzimage_parse(image, size, &info, &why), 0, "%s: %s", path, why ? why : "");
	cr_assert_geq(info.protocol, 0x020f);
	cr_assert_eq(info.setup_size % SECTOR, 0);
	cr_assert_eq(info.setup_size + info.kernel_size, size);
	cr_assert_gt(info.kernel_size, 1 * MIB);
	cr_assert_geq(info.init_size, info.kernel_size);
	cr_assert_eq(info.pref_address, 0x1000000);
	cr_assert_eq(info.kernel_alignment, 0x200000);
	cr_assert(info.relocatable);
	cr_assert_geq(info.cmdline_size, 255);
	cr_assert_geq(info.initrd_addr_max, 0x37ffffff);

	/* It fits in the default 512 MiB with a 32 MiB initrd, and the zero page is sane. */
	nram = x86_ram(512 * MIB, ram);
	cr_assert_eq(boot_layout_plan(&info, ram, nram, 32 * MIB, &layout, &needed), 0);
	cr_assert_geq(layout.initrd_gpa, layout.kernel_end);
	bp = malloc(sizeof(*bp));
	cr_assert_not_null(bp);
	cr_assert_eq(boot_params_build(bp, image, &info, &layout, ram, nram), 0);
	cr_assert_eq(bp->hdr.boot_flag, 0xaa55);
	cr_assert_eq(bp->hdr.header, 0x53726448);
	cr_assert_eq(bp->hdr.version, info.protocol);
	cr_assert_eq(bp->hdr.type_of_loader, 0xff);
	cr_assert_eq(bp->hdr.init_size, info.init_size);
	cr_assert_eq(bp->e820_entries, 3);
	free(bp);
	free(image);
}

/* The first 100,000 bytes of the real kernel (issue 8): refused, not booted into a hang. */
Test(bzimage_parse, real_debian_kernel_truncated)
{
	const char *path = find_real_kernel();
	struct bzimage_info info;
	const char *why = NULL;
	size_t size;
	void *image;

	if (!path) {
		cr_skip_test("no Debian kernel found (run scripts/fetch-kernel)");
		return;
	}
	image = read_file(path, &size);
	cr_assert_not_null(image, "cannot read %s", path);
	cr_assert_gt(size, 100000);
	cr_assert_eq(bzimage_parse(image, 100000, &info, &why), -EINVAL);
	cr_assert(why && strstr(why, "truncated"), "%s", why ? why : "(no reason)");
	free(image);
}

/* ---- e820_build ---- */

static void expect_e820(const struct boot_e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
	cr_assert_eq(e->addr, addr, "addr 0x%llx, want 0x%llx", (unsigned long long)e->addr,
		     (unsigned long long)addr);
	cr_assert_eq(e->size, size, "size 0x%llx, want 0x%llx (addr 0x%llx)",
		     (unsigned long long)e->size, (unsigned long long)size,
		     (unsigned long long)addr);
	cr_assert_eq(e->type, type);
}

Test(e820_build, low_ram_only)
{
	struct guest_mem_range ram[] = { { 0, 512 * MIB } };
	struct boot_e820_entry t[8];

	cr_assert_eq(e820_build(t, 8, ram, 1), 3);
	expect_e820(&t[0], 0, 0x9fc00, E820_TYPE_RAM);
	expect_e820(&t[1], 0x9fc00, 0x100000 - 0x9fc00, E820_TYPE_RESERVED);
	expect_e820(&t[2], 0x100000, 512 * MIB - 0x100000, E820_TYPE_RAM);
}

Test(e820_build, ram_above_4g)
{
	struct guest_mem_range ram[2];
	struct boot_e820_entry t[8];
	unsigned int n = x86_ram(6 * GIB, ram);

	cr_assert_eq(e820_build(t, 8, ram, n), 4);
	expect_e820(&t[0], 0, 0x9fc00, E820_TYPE_RAM);
	expect_e820(&t[1], 0x9fc00, 0x60400, E820_TYPE_RESERVED);
	expect_e820(&t[2], 0x100000, 3 * GIB - 0x100000, E820_TYPE_RAM);
	expect_e820(&t[3], 4 * GIB, 3 * GIB, E820_TYPE_RAM);
}

Test(e820_build, nothing_overlaps_and_sorted)
{
	struct guest_mem_range ram[2];
	struct boot_e820_entry t[8];
	unsigned int n = x86_ram(5 * GIB, ram);
	int cnt = e820_build(t, 8, ram, n);

	cr_assert_gt(cnt, 0);
	for (int i = 1; i < cnt; i++)
		cr_assert_leq(t[i - 1].addr + t[i - 1].size, t[i].addr);
	for (int i = 0; i < cnt; i++) {
		/* No RAM is reported in the EBDA/BIOS area or the MMIO hole. */
		if (t[i].type != E820_TYPE_RAM)
			continue;
		cr_assert(t[i].addr + t[i].size <= X86_EBDA_GPA || t[i].addr >= X86_HIMEM_GPA);
		cr_assert(t[i].addr + t[i].size <= X86_MMIO_HOLE_GPA ||
			  t[i].addr >= X86_MMIO_HOLE_END);
	}
}

Test(e820_build, tiny_ram_below_ebda)
{
	struct guest_mem_range ram[] = { { 0, 0x80000 } };
	struct boot_e820_entry t[8];

	cr_assert_eq(e820_build(t, 8, ram, 1), 1);
	expect_e820(&t[0], 0, 0x80000, E820_TYPE_RAM);
}

Test(e820_build, ram_ending_inside_bios_area)
{
	struct guest_mem_range ram[] = { { 0, 0xc0000 } };
	struct boot_e820_entry t[8];

	cr_assert_eq(e820_build(t, 8, ram, 1), 2);
	expect_e820(&t[0], 0, 0x9fc00, E820_TYPE_RAM);
	expect_e820(&t[1], 0x9fc00, 0xc0000 - 0x9fc00, E820_TYPE_RESERVED);
}

Test(e820_build, ram_ending_at_1m)
{
	struct guest_mem_range ram[] = { { 0, 0x100000 } };
	struct boot_e820_entry t[8];

	/* No empty entry after the reserved area. */
	cr_assert_eq(e820_build(t, 8, ram, 1), 2);
	expect_e820(&t[1], 0x9fc00, 0x60400, E820_TYPE_RESERVED);
}

Test(e820_build, range_above_1m)
{
	struct guest_mem_range ram[] = { { 0x200000, 0x400000 } };
	struct boot_e820_entry t[8];

	cr_assert_eq(e820_build(t, 8, ram, 1), 1);
	expect_e820(&t[0], 0x200000, 0x400000, E820_TYPE_RAM);
}

Test(e820_build, range_starting_in_bios_area)
{
	struct guest_mem_range ram[] = { { 0xa0000, 0x200000 } };
	struct boot_e820_entry t[8];
	int n = e820_build(t, 8, ram, 1);

	/* Whatever is reported stays inside the range, and no RAM in the BIOS area. */
	cr_assert_geq(n, 1);
	for (int i = 0; i < n; i++) {
		cr_assert_leq(t[i].size, ram[0].size, "entry %d: size 0x%llx", i,
			      (unsigned long long)t[i].size);
		cr_assert_geq(t[i].addr, ram[0].gpa);
		cr_assert_leq(t[i].addr + t[i].size, ram[0].gpa + ram[0].size);
		if (t[i].type == E820_TYPE_RAM)
			cr_assert(t[i].addr >= X86_HIMEM_GPA, "RAM at 0x%llx in the BIOS area",
				  (unsigned long long)t[i].addr);
	}
}

Test(e820_build, no_space)
{
	struct guest_mem_range ram[2];
	struct boot_e820_entry t[8];
	unsigned int n = x86_ram(6 * GIB, ram);

	cr_assert_eq(e820_build(t, 0, ram, n), -ENOSPC);
	cr_assert_eq(e820_build(t, 1, ram, n), -ENOSPC);
	cr_assert_eq(e820_build(t, 2, ram, n), -ENOSPC);
	cr_assert_eq(e820_build(t, 3, ram, n), -ENOSPC);
	cr_assert_eq(e820_build(t, 4, ram, n), 4);
	cr_assert_eq(e820_build(t, 2, ram, 1), -ENOSPC);
	cr_assert_eq(e820_build(t, 3, ram, 1), 3);
}

Test(e820_build, no_space_does_not_write_past_max)
{
	struct guest_mem_range ram[] = { { 0, 512 * MIB } };
	struct boot_e820_entry t[4];

	memset(t, 0xcc, sizeof(t));
	cr_assert_eq(e820_build(t, 2, ram, 1), -ENOSPC);
	for (size_t i = 0; i < sizeof(t[2]) * 2; i++)
		cr_assert_eq(((uint8_t *)&t[2])[i], 0xcc);
}

Test(e820_build, no_ranges)
{
	struct boot_e820_entry t[1];

	cr_assert_eq(e820_build(t, 1, NULL, 0), 0);
}

/* ---- boot_layout_plan ---- */

static struct bzimage_info typical_info(void)
{
	return (struct bzimage_info){
		.protocol = 0x020f,
		.setup_size = 40 * SECTOR,
		.kernel_size = 8 * MIB,
		.pref_address = 0x1000000,
		.init_size = 32 * MIB,
		.kernel_alignment = 0x200000,
		.initrd_addr_max = 0x7fffffff,
		.cmdline_size = 2047,
		.relocatable = true,
	};
}

Test(boot_layout_plan, fixed_addresses_no_initrd)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[] = { { 0, 512 * MIB } };
	struct boot_layout l;
	uint64_t needed = 0;

	cr_assert_eq(boot_layout_plan(&info, ram, 1, 0, &l, &needed), 0);
	cr_assert_eq(l.kernel_gpa, X86_HIMEM_GPA);
	cr_assert_eq(l.kernel_end, 0x1000000 + 32 * MIB);	/* pref_address + init_size */
	cr_assert_eq(l.cmdline_gpa, X86_CMDLINE_GPA);
	cr_assert_eq(l.rsdp_gpa, X86_ACPI_GPA);
	cr_assert_eq(l.initrd_gpa, 0);
	cr_assert_eq(l.initrd_size, 0);
	cr_assert_eq(needed, l.kernel_end);
}

Test(boot_layout_plan, kernel_end_page_aligned_and_covers_image)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[] = { { 0, 512 * MIB } };
	struct boot_layout l;
	uint64_t needed;

	info.pref_address = 0;
	info.init_size = 0x123456;
	info.kernel_size = 0x100001;
	cr_assert_eq(boot_layout_plan(&info, ram, 1, 0, &l, &needed), 0);
	cr_assert_eq(l.kernel_end, 0x224000);	/* 1 MiB + init_size, rounded up */

	/* A kernel file bigger than init_size still fits from 1 MiB. */
	info.init_size = 0x1000;
	info.kernel_size = 0x300000;
	cr_assert_eq(boot_layout_plan(&info, ram, 1, 0, &l, &needed), 0);
	cr_assert_eq(l.kernel_end, X86_HIMEM_GPA + 0x300000);
}

Test(boot_layout_plan, initrd_at_top)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[] = { { 0, 512 * MIB } };
	uint64_t size = 10 * MIB + 123;
	struct boot_layout l;
	uint64_t needed;

	cr_assert_eq(boot_layout_plan(&info, ram, 1, size, &l, &needed), 0);
	cr_assert_eq(l.initrd_size, size);
	cr_assert_eq(l.initrd_gpa % 4096, 0);
	cr_assert_leq(l.initrd_gpa + size, 512 * MIB);
	cr_assert_gt(l.initrd_gpa + size + 4096, 512 * MIB, "not at the top");
	cr_assert_geq(l.initrd_gpa, l.kernel_end);
	cr_assert_eq(needed, l.kernel_end + 10 * MIB + 4096);
}

Test(boot_layout_plan, initrd_below_initrd_addr_max)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[] = { { 0, 1 * GIB } };
	uint64_t size = 3 * MIB;
	struct boot_layout l;
	uint64_t needed;

	info.initrd_addr_max = 0x0fffffff;	/* ends at 256 MiB at most */
	cr_assert_eq(boot_layout_plan(&info, ram, 1, size, &l, &needed), 0);
	cr_assert_eq(l.initrd_gpa, 256 * MIB - size);
	cr_assert_leq(l.initrd_gpa + size - 1, info.initrd_addr_max);

	/* An unaligned limit: the initrd ends at or below it, page aligned. */
	info.initrd_addr_max = 0x0ffff7ff;
	cr_assert_eq(boot_layout_plan(&info, ram, 1, size, &l, &needed), 0);
	cr_assert_eq(l.initrd_gpa % 4096, 0);
	cr_assert_leq(l.initrd_gpa + size - 1, info.initrd_addr_max);
	cr_assert_eq(l.initrd_gpa, 256 * MIB - size - 4096);
}

Test(boot_layout_plan, initrd_stays_below_4g_with_high_ram)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[2];
	unsigned int n = x86_ram(8 * GIB, ram);
	struct boot_layout l;
	uint64_t needed;

	cr_assert_eq(boot_layout_plan(&info, ram, n, 64 * MIB, &l, &needed), 0);
	cr_assert_eq(l.initrd_gpa + 64 * MIB, 2 * GIB);	/* initrd_addr_max 0x7fffffff */

	info.initrd_addr_max = 0xffffffff;
	cr_assert_eq(boot_layout_plan(&info, ram, n, 64 * MIB, &l, &needed), 0);
	cr_assert_eq(l.initrd_gpa + 64 * MIB, 3 * GIB, "initrd placed in the MMIO hole");
}

Test(boot_layout_plan, kernel_does_not_fit)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[] = { { 0, 32 * MIB } };
	struct boot_layout l;
	uint64_t needed = 0;

	cr_assert_eq(boot_layout_plan(&info, ram, 1, 0, &l, &needed), -ENOSPC);
	cr_assert_eq(needed, 48 * MIB);
	cr_assert_eq(boot_layout_plan(&info, ram, 1, 5 * MIB, &l, &needed), -ENOSPC);
	cr_assert_eq(needed, 53 * MIB);
}

Test(boot_layout_plan, kernel_and_initrd_do_not_fit)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[] = { { 0, 64 * MIB } };
	struct boot_layout l;
	uint64_t needed = 0;

	cr_assert_eq(boot_layout_plan(&info, ram, 1, 20 * MIB, &l, &needed), -ENOSPC);
	cr_assert_eq(needed, 68 * MIB);
	/* initrd bigger than the whole RAM. */
	cr_assert_eq(boot_layout_plan(&info, ram, 1, 128 * MIB, &l, &needed), -ENOSPC);
	cr_assert_eq(needed, 176 * MIB);
}

Test(boot_layout_plan, needed_is_enough)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[] = { { 0, 40 * MIB } };
	uint64_t size = 7 * MIB + 5;
	struct boot_layout l;
	uint64_t needed;

	cr_assert_eq(boot_layout_plan(&info, ram, 1, size, &l, &needed), -ENOSPC);
	ram[0].size = needed;
	cr_assert_eq(boot_layout_plan(&info, ram, 1, size, &l, &needed), 0);
	cr_assert_eq(l.initrd_gpa, l.kernel_end, "exact fit: initrd right above the kernel");
	ram[0].size -= 4096;
	cr_assert_eq(boot_layout_plan(&info, ram, 1, size, &l, &needed), -ENOSPC);
}

Test(boot_layout_plan, bad_ram)
{
	struct bzimage_info info = typical_info();
	struct guest_mem_range ram[] = { { 1 * MIB, 512 * MIB } };
	struct boot_layout l;
	uint64_t needed;

	cr_assert_eq(boot_layout_plan(&info, ram, 1, 0, &l, &needed), -ENOSPC);
	cr_assert_eq(boot_layout_plan(&info, ram, 0, 0, &l, &needed), -ENOSPC);
}

/* ---- boot_params_build ---- */

struct built {
	struct fake_image img;
	struct bzimage_info info;
	struct boot_layout layout;
	struct guest_mem_range ram[2];
	unsigned int nram;
	struct boot_params *bp;
};

static void build(struct built *b, uint64_t mem, uint64_t initrd_size)
{
	const char *why;
	uint64_t needed;

	fake_bzimage(&b->img, 5 * SECTOR + 4 * MIB, 4);
	cr_assert_eq(parse(&b->img, &b->info, &why), 0);
	b->nram = x86_ram(mem, b->ram);
	cr_assert_eq(boot_layout_plan(&b->info, b->ram, b->nram, initrd_size, &b->layout, &needed), 0);
	b->bp = malloc(sizeof(*b->bp));
	cr_assert_not_null(b->bp);
	memset(b->bp, 0xcc, sizeof(*b->bp));
}

static void built_free(struct built *b)
{
	fake_free(&b->img);
	free(b->bp);
}

Test(boot_params_build, fields)
{
	struct built b;
	struct boot_params *bp;

	build(&b, 512 * MIB, 5 * MIB);
	bp = b.bp;
	cr_assert_eq(boot_params_build(bp, b.img.buf, &b.info, &b.layout, b.ram, b.nram), 0);
	cr_assert_eq(bp->hdr.type_of_loader, 0xff);
	cr_assert_eq(bp->hdr.cmd_line_ptr, X86_CMDLINE_GPA);
	cr_assert_eq(bp->ext_cmd_line_ptr, 0);
	cr_assert_eq(bp->hdr.ramdisk_image, b.layout.initrd_gpa);
	cr_assert_eq(bp->hdr.ramdisk_size, 5 * MIB);
	cr_assert_eq(bp->ext_ramdisk_image, 0);
	cr_assert_eq(bp->ext_ramdisk_size, 0);
	cr_assert_eq(bp->hdr.code32_start, X86_HIMEM_GPA);
	cr_assert_eq(bp->acpi_rsdp_addr, X86_ACPI_GPA);
	cr_assert(bp->hdr.loadflags & LOADED_HIGH);
	cr_assert(bp->hdr.loadflags & CAN_USE_HEAP);
	cr_assert_not(bp->hdr.loadflags & QUIET_FLAG);
	cr_assert_eq(bp->hdr.heap_end_ptr, 0xfe00);
	/* The image's header is carried over. */
	cr_assert_eq(bp->hdr.boot_flag, 0xaa55);
	cr_assert_eq(bp->hdr.header, 0x53726448);
	cr_assert_eq(bp->hdr.version, 0x020f);
	cr_assert_eq(bp->hdr.setup_sects, 4);
	cr_assert_eq(bp->hdr.init_size, 0x2000000);
	cr_assert_eq(bp->hdr.pref_address, 0x1000000);
	cr_assert_eq(bp->hdr.cmdline_size, 2047);
	cr_assert_eq(bp->hdr.xloadflags, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
	built_free(&b);
}

Test(boot_params_build, e820_in_zero_page)
{
	struct built b;

	build(&b, 6 * GIB, 0);
	cr_assert_eq(boot_params_build(b.bp, b.img.buf, &b.info, &b.layout, b.ram, b.nram), 0);
	cr_assert_eq(b.bp->e820_entries, 4);
	expect_e820(&b.bp->e820_table[0], 0, 0x9fc00, E820_TYPE_RAM);
	expect_e820(&b.bp->e820_table[1], 0x9fc00, 0x60400, E820_TYPE_RESERVED);
	expect_e820(&b.bp->e820_table[2], 0x100000, 3 * GIB - 0x100000, E820_TYPE_RAM);
	expect_e820(&b.bp->e820_table[3], 4 * GIB, 3 * GIB, E820_TYPE_RAM);
	cr_assert_eq(b.bp->hdr.ramdisk_image, 0);
	cr_assert_eq(b.bp->hdr.ramdisk_size, 0);
	built_free(&b);
}

Test(boot_params_build, only_header_copied)
{
	struct built b;
	const uint8_t *z;

	build(&b, 512 * MIB, 0);
	cr_assert_eq(boot_params_build(b.bp, b.img.buf, &b.info, &b.layout, b.ram, b.nram), 0);
	z = (const uint8_t *)b.bp;
	/* The image has a non-zero pattern before and after its header: none of it leaks in. */
	for (size_t i = 0; i < 0x1f1; i++) {
		if (i >= offsetof(struct boot_params, acpi_rsdp_addr) &&
		    i < offsetof(struct boot_params, acpi_rsdp_addr) + 8)
			continue;
		if (i == offsetof(struct boot_params, e820_entries))
			continue;
		cr_assert_eq(z[i], 0, "byte 0x%zx is 0x%x", i, z[i]);
	}
	for (size_t i = HDR_END_215; i < offsetof(struct boot_params, e820_table); i++)
		cr_assert_eq(z[i], 0, "byte 0x%zx is 0x%x", i, z[i]);
	built_free(&b);
}

Test(boot_params_build, high_initrd_uses_ext_fields)
{
	struct built b;

	build(&b, 512 * MIB, 0);
	b.layout.initrd_gpa = 0x123456000ULL;
	b.layout.initrd_size = 0x100001000ULL;
	b.layout.cmdline_gpa = 0x200020000ULL;
	cr_assert_eq(boot_params_build(b.bp, b.img.buf, &b.info, &b.layout, b.ram, b.nram), 0);
	cr_assert_eq(b.bp->hdr.ramdisk_image, 0x23456000);
	cr_assert_eq(b.bp->ext_ramdisk_image, 0x1);
	cr_assert_eq(b.bp->hdr.ramdisk_size, 0x00001000);
	cr_assert_eq(b.bp->ext_ramdisk_size, 0x1);
	cr_assert_eq(b.bp->hdr.cmd_line_ptr, 0x00020000);
	cr_assert_eq(b.bp->ext_cmd_line_ptr, 0x2);
	built_free(&b);
}

Test(boot_params_build, header_longer_than_setup)
{
	struct built b;

	build(&b, 512 * MIB, 0);
	b.info.setup_size = 0x240;	/* shorter than the header the jump says */
	cr_assert_eq(boot_params_build(b.bp, b.img.buf, &b.info, &b.layout, b.ram, b.nram), -EINVAL);
	built_free(&b);
}

Test(boot_params_build, e820_overflow)
{
	struct built b;
	struct guest_mem_range many[E820_MAX_ENTRIES_ZEROPAGE + 1];

	build(&b, 512 * MIB, 0);
	for (unsigned int i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = (struct guest_mem_range){ 4 * GIB + i * 2 * MIB, MIB };
	cr_assert_eq(boot_params_build(b.bp, b.img.buf, &b.info, &b.layout, many,
				       ARRAY_SIZE(many)), -EINVAL);
	cr_assert_eq(boot_params_build(b.bp, b.img.buf, &b.info, &b.layout, many,
				       ARRAY_SIZE(many) - 1), 0);
	cr_assert_eq(b.bp->e820_entries, E820_MAX_ENTRIES_ZEROPAGE);
	built_free(&b);
}
