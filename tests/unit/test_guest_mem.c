// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for guest RAM (vmm/base/guest_mem.c): private and shared (memfd) regions,
 * range validation, the checked translators and the cross-region copies.
 * Sizes are tiny (16 MiB, MAP_NORESERVE) so the tests are cheap.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/base/dirty.h"
#include "vmm/base/guest_mem.h"

#define MIB	(1ULL << 20)
#define GIB	(1ULL << 30)
#define PAGE	4096ULL

static struct guest_mem mem;

static void teardown(void)
{
	guest_mem_destroy(&mem);
}

TestSuite(guest_mem, .fini = teardown);
TestSuite(guest_mem_copy, .fini = teardown);

/* 0..16M and 4G..4G+16M, the x86 shape in miniature. */
static const struct guest_mem_range two[] = { { 0, 16 * MIB }, { 4 * GIB, 16 * MIB } };

static void init_two(void)
{
	cr_assert_eq(guest_mem_init(&mem, two, 2, GUEST_MEM_ANON), 0);
}

/* ---- init ---- */

/*
 * The VmFlags line of the /proc/self/smaps entry that starts at addr, in buf;
 * false if there is no mapping starting there.
 */
static bool vm_flags(const void *addr, char *buf, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false, found = false;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo;
		char *end;

		lo = strtoul(line, &end, 16);
		if (end != line && *end == '-') {
			in = lo == (uintptr_t)addr;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(buf, len, "%s", line + 8);
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Whether the smaps VmFlags of the mapping at addr has the two-letter flag. */
static bool has_vm_flag(const void *addr, const char *flag)
{
	char flags[512], *tok, *save;

	cr_assert(vm_flags(addr, flags, sizeof(flags)), "no mapping at %p in smaps", addr);
	for (tok = strtok_r(flags, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
		if (!strcmp(tok, flag))
			return true;
	return false;
}

/* The default: anonymous private memory, advised for THP, no fd. */
Test(guest_mem, private_is_anonymous_and_advised)
{
	struct guest_mem_range r = { 0, 16 * MIB };

	cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_ANON), 0);
	cr_assert_eq(mem.nregions, 1);
	cr_assert_eq(mem.size, 16 * MIB);
	cr_assert_eq(mem.backing, GUEST_MEM_ANON);
	cr_assert_eq(mem.fd, -1);
	cr_assert_not(mem.shared);
	cr_assert_not_null(mem.base);
	cr_assert_eq(mem.regions[0].gpa, 0);
	cr_assert_eq(mem.regions[0].size, 16 * MIB);
	cr_assert_eq(mem.regions[0].hva, mem.base);
	cr_assert_eq(mem.regions[0].fd_offset, 0);
	/* madvise(MADV_HUGEPAGE) reached the kernel ("hg"), and so did MADV_DONTDUMP ("dd"). */
	cr_assert(mem.thp_advised);
	cr_assert(has_vm_flag(mem.base, "hg"), "guest RAM not advised for huge pages");
	cr_assert(has_vm_flag(mem.base, "dd"), "guest RAM would be in core dumps");
	cr_assert_not(has_vm_flag(mem.base, "sh"), "private guest RAM is mapped shared");
	/* Fresh RAM reads as zeros and is writable at both ends. */
	cr_assert_eq(mem.base[0], 0);
	cr_assert_eq(mem.base[16 * MIB - 1], 0);
	mem.base[0] = 1;
	mem.base[16 * MIB - 1] = 2;
}

Test(guest_mem, private_two_ranges)
{
	init_two();
	cr_assert_eq(mem.nregions, 2);
	cr_assert_eq(mem.size, 32 * MIB);
	cr_assert_eq(mem.fd, -1);
	cr_assert_eq(mem.regions[0].gpa, 0);
	cr_assert_eq(mem.regions[0].hva, mem.base);
	cr_assert_eq(mem.regions[1].gpa, 4 * GIB);
	cr_assert_eq(mem.regions[1].size, 16 * MIB);
	cr_assert_eq(mem.regions[1].hva, mem.base + 16 * MIB);
	*(uint8_t *)guest_mem_ptr(&mem, 4 * GIB + 7, 1) = 0x3c;
	cr_assert_eq(mem.base[16 * MIB + 7], 0x3c);
}

/* The memory of a forked child is a copy: private RAM is not shared with anyone. */
Test(guest_mem, private_is_not_shared_with_a_child)
{
	int st;
	pid_t pid;

	init_two();
	mem.base[5] = 1;
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		mem.base[5] = 2;
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert_eq(mem.base[5], 1);
}

static void init_shared_two(void)
{
	cr_assert_eq(guest_mem_init(&mem, two, 2, GUEST_MEM_MEMFD), 0);
}

Test(guest_mem, shared_is_a_memfd)
{
	char link[64], target[256];
	struct stat st;
	ssize_t n;

	init_shared_two();
	cr_assert_eq(mem.backing, GUEST_MEM_MEMFD);
	cr_assert(mem.shared);
	cr_assert_geq(mem.fd, 0);
	cr_assert_eq(mem.regions[0].fd_offset, 0);
	cr_assert_eq(mem.regions[1].fd_offset, 16 * MIB);
	cr_assert_eq(mem.regions[1].hva, mem.base + 16 * MIB);
	cr_assert_eq(fstat(mem.fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, 32 * MIB, "memfd size %lld, want the total",
		     (long long)st.st_size);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", mem.fd);
	n = readlink(link, target, sizeof(target) - 1);
	cr_assert_gt(n, 0);
	target[n] = '\0';
	cr_assert(strstr(target, "memfd:vmm-guest-ram"), "fd is %s, not the RAM memfd", target);
	cr_assert(fcntl(mem.fd, F_GETFD) & FD_CLOEXEC, "memfd not close-on-exec");
	cr_assert(mem.thp_advised);
	cr_assert(has_vm_flag(mem.base, "hg"));
	cr_assert(has_vm_flag(mem.base, "sh"), "shared guest RAM is not mapped shared");
}

/*
 * What a vhost-user back-end does: map each region's slice of the fd (at its
 * fd_offset) in another mapping, and see the guest's bytes, both ways. The
 * regions sit on either side of the 32-bit hole; the second one's offset is the
 * first one's size, not its guest address.
 */
Test(guest_mem, shared_fd_maps_the_same_bytes)
{
	uint8_t *peer[2];

	init_shared_two();
	for (unsigned int i = 0; i < 2; i++) {
		peer[i] = mmap(NULL, mem.regions[i].size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       mem.fd, (off_t)mem.regions[i].fd_offset);
		cr_assert_neq(peer[i], MAP_FAILED);
	}
	*(uint8_t *)guest_mem_ptr(&mem, 0x1234, 1) = 0x5c;
	*(uint8_t *)guest_mem_ptr(&mem, 4 * GIB + 0x1234, 1) = 0xa7;
	cr_assert_eq(peer[0][0x1234], 0x5c);
	cr_assert_eq(peer[1][0x1234], 0xa7);
	peer[1][16 * MIB - 1] = 0xe7;
	peer[0][0] = 0x11;
	cr_assert_eq(*(uint8_t *)guest_mem_ptr(&mem, 4 * GIB + 16 * MIB - 1, 1), 0xe7);
	cr_assert_eq(*(uint8_t *)guest_mem_ptr(&mem, 0, 1), 0x11);
	for (unsigned int i = 0; i < 2; i++)
		munmap(peer[i], mem.regions[i].size);
}

/* Another process (a back-end) that gets the fd sees the guest's writes. */
Test(guest_mem, shared_fd_works_in_another_process)
{
	int st;
	pid_t pid;

	init_shared_two();
	*(uint8_t *)guest_mem_ptr(&mem, 4 * GIB + 99, 1) = 0x42;
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* A fresh mapping of the fd, as a back-end that received it would make. */
		uint8_t *p = mmap(NULL, mem.regions[1].size, PROT_READ | PROT_WRITE, MAP_SHARED,
				  mem.fd, (off_t)mem.regions[1].fd_offset);

		if (p == MAP_FAILED || p[99] != 0x42)
			_exit(1);
		p[100] = 0x43;
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child did not see the guest's byte");
	cr_assert_eq(*(uint8_t *)guest_mem_ptr(&mem, 4 * GIB + 100, 1), 0x43);
}

Test(guest_mem, backing_for_the_options)
{
	cr_assert_eq(guest_mem_backing_for(false, false), GUEST_MEM_ANON);
	cr_assert_eq(guest_mem_backing_for(true, false), GUEST_MEM_MEMFD);
	cr_assert_eq(guest_mem_backing_for(false, true), GUEST_MEM_HUGETLB);
	cr_assert_eq(guest_mem_backing_for(true, true), GUEST_MEM_HUGETLB);
	cr_assert_str_eq(guest_mem_thp_sysfs(GUEST_MEM_ANON),
			 "/sys/kernel/mm/transparent_hugepage/enabled");
	cr_assert_str_eq(guest_mem_thp_sysfs(GUEST_MEM_MEMFD),
			 "/sys/kernel/mm/transparent_hugepage/shmem_enabled");
	cr_assert_null(guest_mem_thp_sysfs(GUEST_MEM_HUGETLB));
}

Test(guest_mem, bad_backing)
{
	struct guest_mem_range r = { 0, MIB };

	cr_assert_eq(guest_mem_init(&mem, &r, 1, (enum guest_mem_backing)7), -EINVAL);
	cr_assert_eq(mem.fd, -1);
	cr_assert_null(mem.base);
}

Test(guest_mem, eight_ranges_allowed)
{
	struct guest_mem_range r[GUEST_MEM_MAX_REGIONS];

	for (unsigned int i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		r[i] = (struct guest_mem_range){ i * 0x100000ULL, PAGE * (i + 1) };
	cr_assert_eq(guest_mem_init(&mem, r, GUEST_MEM_MAX_REGIONS, GUEST_MEM_ANON), 0);
	cr_assert_eq(mem.nregions, GUEST_MEM_MAX_REGIONS);
	cr_assert_eq(mem.regions[7].fd_offset, PAGE * (1 + 2 + 3 + 4 + 5 + 6 + 7));
	cr_assert_not_null(guest_mem_ptr(&mem, 7 * 0x100000ULL, 8 * PAGE));
	cr_assert_null(guest_mem_ptr(&mem, 7 * 0x100000ULL, 8 * PAGE + 1));
}

static void expect_bad(const struct guest_mem_range *r, unsigned int n,
		       enum guest_mem_backing backing)
{
	int ret = guest_mem_init(&mem, r, n, backing);

	cr_assert_eq(ret, -EINVAL, "got %d", ret);
	cr_assert_eq(mem.fd, -1, "fd left after a failed init");
	cr_assert_eq(mem.nregions, 0);
	guest_mem_destroy(&mem);
}

Test(guest_mem, bad_ranges)
{
	struct guest_mem_range nine[GUEST_MEM_MAX_REGIONS + 1];

	for (unsigned int i = 0; i < GUEST_MEM_MAX_REGIONS + 1; i++)
		nine[i] = (struct guest_mem_range){ i * MIB, PAGE };

	expect_bad(two, 0, GUEST_MEM_ANON);
	expect_bad(nine, GUEST_MEM_MAX_REGIONS + 1, GUEST_MEM_ANON);
	/* zero size */
	expect_bad((struct guest_mem_range[]){ { 0, 0 } }, 1, GUEST_MEM_ANON);
	expect_bad((struct guest_mem_range[]){ { 0, MIB }, { 2 * MIB, 0 } }, 2, GUEST_MEM_ANON);
	/* unaligned start or size */
	expect_bad((struct guest_mem_range[]){ { 0x800, MIB } }, 1, GUEST_MEM_ANON);
	expect_bad((struct guest_mem_range[]){ { 0, MIB + 1 } }, 1, GUEST_MEM_ANON);
	expect_bad((struct guest_mem_range[]){ { 0, MIB }, { 2 * MIB + 0x10, PAGE } }, 2, GUEST_MEM_ANON);
	/* overlapping, identical, unsorted */
	expect_bad((struct guest_mem_range[]){ { 0, 16 * MIB }, { 8 * MIB, 16 * MIB } }, 2, GUEST_MEM_ANON);
	expect_bad((struct guest_mem_range[]){ { 0, MIB }, { 0, MIB } }, 2, GUEST_MEM_ANON);
	expect_bad((struct guest_mem_range[]){ { 4 * GIB, MIB }, { 0, MIB } }, 2, GUEST_MEM_ANON);
	/* end beyond 2^64 */
	expect_bad((struct guest_mem_range[]){ { 0xfffffffffffff000ULL, 2 * PAGE } }, 1, GUEST_MEM_ANON);
	/* with hugepages, 2 MiB alignment is required (checked before any hugetlbfs use) */
	expect_bad((struct guest_mem_range[]){ { 0, MIB } }, 1, GUEST_MEM_HUGETLB);
	expect_bad((struct guest_mem_range[]){ { PAGE, 2 * MIB } }, 1, GUEST_MEM_HUGETLB);
}

Test(guest_mem, adjacent_ranges_allowed)
{
	const struct guest_mem_range r[] = { { 0, MIB }, { MIB, MIB } };

	cr_assert_eq(guest_mem_init(&mem, r, 2, GUEST_MEM_ANON), 0);
	cr_assert_eq(mem.nregions, 2);
}

Test(guest_mem, range_ending_at_top)
{
	const struct guest_mem_range r[] = { { 0xfffffffffff00000ULL, MIB } };

	/* gpa + size == 2^64 wraps to 0: rejected, as an end cannot be represented. */
	cr_assert_eq(guest_mem_init(&mem, r, 1, GUEST_MEM_ANON), -EINVAL);
}

/* ---- translation ---- */

Test(guest_mem, region_lookup)
{
	init_two();
	cr_assert_eq(guest_mem_region(&mem, 0), &mem.regions[0]);
	cr_assert_eq(guest_mem_region(&mem, 16 * MIB - 1), &mem.regions[0]);
	cr_assert_null(guest_mem_region(&mem, 16 * MIB));
	cr_assert_null(guest_mem_region(&mem, 4 * GIB - 1));
	cr_assert_eq(guest_mem_region(&mem, 4 * GIB), &mem.regions[1]);
	cr_assert_eq(guest_mem_region(&mem, 4 * GIB + 16 * MIB - 1), &mem.regions[1]);
	cr_assert_null(guest_mem_region(&mem, 4 * GIB + 16 * MIB));
	cr_assert_null(guest_mem_region(&mem, UINT64_MAX));
}

Test(guest_mem, ptr_bounds)
{
	init_two();
	cr_assert_eq(guest_mem_ptr(&mem, 0, 1), mem.base);
	cr_assert_eq(guest_mem_ptr(&mem, 0x1000, 16), mem.base + 0x1000);
	cr_assert_eq(guest_mem_ptr(&mem, 0, 16 * MIB), mem.base);
	cr_assert_eq(guest_mem_ptr(&mem, 16 * MIB - 16, 16), mem.base + 16 * MIB - 16);
	cr_assert_eq(guest_mem_ptr(&mem, 4 * GIB + 8, 8), mem.base + 16 * MIB + 8);
	cr_assert_eq(guest_mem_ptr(&mem, 4 * GIB + 16 * MIB - 1, 1), mem.base + 32 * MIB - 1);
	/* straddling the end of a region */
	cr_assert_null(guest_mem_ptr(&mem, 16 * MIB - 8, 16));
	cr_assert_null(guest_mem_ptr(&mem, 0, 16 * MIB + 1));
	cr_assert_null(guest_mem_ptr(&mem, 4 * GIB + 16 * MIB - 1, 2));
	/* in the gap, or starting before a region and ending inside */
	cr_assert_null(guest_mem_ptr(&mem, 16 * MIB, 1));
	cr_assert_null(guest_mem_ptr(&mem, 2 * GIB, 4096));
	cr_assert_null(guest_mem_ptr(&mem, 4 * GIB - 4, 8));
	/* zero length */
	cr_assert_null(guest_mem_ptr(&mem, 0x1000, 0));
	/* gpa + len overflows */
	cr_assert_null(guest_mem_ptr(&mem, UINT64_MAX, 2));
	cr_assert_null(guest_mem_ptr(&mem, 0x1000, UINT64_MAX));
	cr_assert_null(guest_mem_ptr(&mem, 4 * GIB, UINT64_MAX - 4 * GIB + 1));
	cr_assert_null(guest_mem_ptr(&mem, 0, UINT64_MAX));
}

Test(guest_mem, ptr_straddling_adjacent_regions)
{
	const struct guest_mem_range r[] = { { 0, MIB }, { MIB, MIB } };

	cr_assert_eq(guest_mem_init(&mem, r, 2, GUEST_MEM_ANON), 0);
	cr_assert_not_null(guest_mem_ptr(&mem, MIB - 4, 4));
	cr_assert_not_null(guest_mem_ptr(&mem, MIB, 4));
	cr_assert_null(guest_mem_ptr(&mem, MIB - 4, 8), "one pointer for two regions");
}

Test(guest_mem, ptr_partial_shortens)
{
	uint64_t len;

	init_two();
	len = 4096;
	cr_assert_eq(guest_mem_ptr_partial(&mem, 16 * MIB - 100, &len), mem.base + 16 * MIB - 100);
	cr_assert_eq(len, 100);
	len = 64;
	cr_assert_eq(guest_mem_ptr_partial(&mem, 0x2000, &len), mem.base + 0x2000);
	cr_assert_eq(len, 64, "length changed inside a region");
	len = UINT64_MAX;
	cr_assert_eq(guest_mem_ptr_partial(&mem, 4 * GIB + 1, &len), mem.base + 16 * MIB + 1);
	cr_assert_eq(len, 16 * MIB - 1);
	len = 16;
	cr_assert_null(guest_mem_ptr_partial(&mem, 16 * MIB, &len));
	len = 0;
	cr_assert_null(guest_mem_ptr_partial(&mem, 0x1000, &len));
}

/* ---- copies ---- */

Test(guest_mem_copy, read_write_inside)
{
	uint8_t out[300], in[300];

	init_two();
	for (unsigned int i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 13);
	cr_assert_eq(guest_mem_write(&mem, 4 * GIB + 0x100, out, sizeof(out)), 0);
	cr_assert_arr_eq(mem.regions[1].hva + 0x100, out, sizeof(out));
	memset(in, 0, sizeof(in));
	cr_assert_eq(guest_mem_read(&mem, 4 * GIB + 0x100, in, sizeof(in)), 0);
	cr_assert_arr_eq(in, out, sizeof(out));
	cr_assert_eq(guest_mem_read(&mem, 0, in, 0), 0);
	cr_assert_eq(guest_mem_write(&mem, 0, out, 0), 0);
}

Test(guest_mem_copy, across_adjacent_regions)
{
	const struct guest_mem_range r[] = { { 0, MIB }, { MIB, MIB } };
	uint8_t out[64], in[64];

	cr_assert_eq(guest_mem_init(&mem, r, 2, GUEST_MEM_ANON), 0);
	for (unsigned int i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(0x80 + i);
	cr_assert_eq(guest_mem_write(&mem, MIB - 20, out, sizeof(out)), 0);
	cr_assert_arr_eq(mem.regions[0].hva + MIB - 20, out, 20);
	cr_assert_arr_eq(mem.regions[1].hva, out + 20, 44);
	cr_assert_eq(guest_mem_read(&mem, MIB - 20, in, sizeof(in)), 0);
	cr_assert_arr_eq(in, out, sizeof(out));
}

/* Regions whose host memory is not contiguous: each piece must be translated on its own. */
Test(guest_mem_copy, across_regions_with_separate_host_buffers)
{
	static uint8_t a[PAGE], b[PAGE], c[PAGE];
	struct guest_mem m;
	uint8_t out[2 * PAGE], in[sizeof(out)];

	memset(&m, 0, sizeof(m));
	m.fd = -1;
	m.regions[0] = (struct guest_region){ .gpa = 0x10000, .size = PAGE, .hva = a };
	m.regions[1] = (struct guest_region){ .gpa = 0x11000, .size = PAGE, .hva = c };
	m.regions[2] = (struct guest_region){ .gpa = 0x12000, .size = PAGE, .hva = b };
	m.nregions = 3;
	m.size = 3 * PAGE;
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i ^ (i >> 8));
	cr_assert_eq(guest_mem_write(&m, 0x10000 + PAGE - 100, out, sizeof(out)), 0);
	cr_assert_arr_eq(a + PAGE - 100, out, 100);
	cr_assert_arr_eq(c, out + 100, PAGE);
	cr_assert_arr_eq(b, out + 100 + PAGE, PAGE - 100);
	/* Running one byte off the last region: nothing is copied. */
	memset(c, 0, PAGE);
	cr_assert_eq(guest_mem_write(&m, 0x11001, out, sizeof(out)), -EFAULT);
	cr_assert_eq(c[1], 0);
	memcpy(c, out + 100, PAGE);
	cr_assert_eq(guest_mem_read(&m, 0x10000 + PAGE - 100, in, sizeof(in)), 0);
	cr_assert_arr_eq(in, out, sizeof(out));
}

Test(guest_mem_copy, write_across_gap_fails_whole)
{
	uint8_t out[64], in[64];

	init_two();
	memset(mem.regions[0].hva + 16 * MIB - 32, 0x11, 32);
	memset(out, 0xee, sizeof(out));
	cr_assert_eq(guest_mem_write(&mem, 16 * MIB - 32, out, sizeof(out)), -EFAULT);
	for (unsigned int i = 0; i < 32; i++)
		cr_assert_eq(mem.regions[0].hva[16 * MIB - 32 + i], 0x11,
			     "byte %u written by a failed copy", i);

	memset(in, 0x22, sizeof(in));
	mem.regions[0].hva[16 * MIB - 1] = 0x33;
	cr_assert_eq(guest_mem_read(&mem, 16 * MIB - 32, in, sizeof(in)), -EFAULT);
	for (unsigned int i = 0; i < sizeof(in); i++)
		cr_assert_eq(in[i], 0x22, "byte %u read by a failed copy", i);

	/* Starting in the gap, ending in RAM. */
	cr_assert_eq(guest_mem_write(&mem, 4 * GIB - 8, out, 16), -EFAULT);
	cr_assert_eq(mem.regions[1].hva[0], 0);
	cr_assert_eq(guest_mem_read(&mem, 32 * MIB, in, 1), -EFAULT);
}

Test(guest_mem_copy, overflow)
{
	uint8_t buf[4] = { 0 };

	init_two();
	cr_assert_eq(guest_mem_read(&mem, UINT64_MAX, buf, 2), -EFAULT);
	cr_assert_eq(guest_mem_write(&mem, UINT64_MAX - 1, buf, 4), -EFAULT);
}

/* ---- caller-owned buffer, destroy ---- */

Test(guest_mem, init_from_buffer)
{
	static uint8_t buf[8192];
	struct guest_mem m;
	uint8_t v = 0x99;

	guest_mem_init_from_buffer(&m, buf, 0x10000, sizeof(buf));
	cr_assert_eq(m.nregions, 1);
	cr_assert_eq(m.size, sizeof(buf));
	cr_assert_eq(m.fd, -1);
	cr_assert_eq(guest_mem_ptr(&m, 0x10000, sizeof(buf)), buf);
	cr_assert_eq(guest_mem_ptr(&m, 0x10000 + 8191, 1), buf + 8191);
	cr_assert_null(guest_mem_ptr(&m, 0xffff, 1));
	cr_assert_null(guest_mem_ptr(&m, 0x10000 + 8192, 1));
	cr_assert_null(guest_mem_ptr(&m, 0x10000 + 8000, 200));
	cr_assert_eq(guest_mem_write(&m, 0x10010, &v, 1), 0);
	cr_assert_eq(buf[0x10], 0x99);
	/* Destroying it leaves the caller's buffer alone. */
	guest_mem_destroy(&m);
	cr_assert_eq(m.nregions, 0);
	cr_assert_eq(m.fd, -1);
	buf[0] = 1;
	cr_assert_eq(buf[0x10], 0x99);
}

Test(guest_mem, destroy_twice)
{
	struct guest_mem_range r = { 0, MIB };
	int fd;

	cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_MEMFD), 0);
	fd = mem.fd;
	guest_mem_destroy(&mem);
	cr_assert_eq(mem.fd, -1);
	cr_assert_null(mem.base);
	cr_assert_eq(mem.nregions, 0);
	cr_assert_eq(mem.size, 0);
	cr_assert_eq(fcntl(fd, F_GETFD), -1, "memfd not closed");
	cr_assert_null(guest_mem_ptr(&mem, 0, 1));
	guest_mem_destroy(&mem);
	cr_assert_eq(mem.fd, -1);
}

Test(guest_mem, destroy_zeroed_object)
{
	struct guest_mem m;

	/* Make sure descriptor 0 is open, as stdin is in the real program. */
	if (fcntl(0, F_GETFD) < 0)
		cr_assert_eq(open("/dev/null", O_RDONLY), 0);
	memset(&m, 0, sizeof(m));
	guest_mem_destroy(&m);
	cr_assert_neq(fcntl(0, F_GETFD), -1,
		      "guest_mem_destroy on a zeroed object closed fd 0 (stdin)");
	cr_assert_eq(m.fd, -1);
}

Test(guest_mem, host_limit)
{
	uint64_t lim = guest_mem_host_limit();

	cr_assert_gt(lim, 16 * MIB);
}

/* ---- huge page friendliness ---- */

/* KVM maps a 2 MiB nested page only when the host mapping is 2 MiB-aligned too. */
Test(guest_mem, mapping_is_2mib_aligned)
{
	for (int i = 0; i < 8; i++) {
		struct guest_mem_range r = { 0, (uint64_t)(i / 2 + 1) * 2 * MIB };

		cr_assert_eq(guest_mem_init(&mem, &r, 1, i % 2 ? GUEST_MEM_MEMFD : GUEST_MEM_ANON), 0);
		cr_assert_eq((uintptr_t)mem.base % (2 * MIB), 0, "base %p", (void *)mem.base);
		mem.base[r.size - 1] = 1;
		guest_mem_destroy(&mem);
	}
}

static int count_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;

	cr_assert_not_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* The alignment slack around the mapping is given back: nothing is left after destroy. */
Test(guest_mem, alignment_slack_is_not_leaked)
{
	struct guest_mem_range r = { 0, 6 * MIB };
	int before;

	cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_ANON), 0);
	guest_mem_destroy(&mem);
	before = count_mappings();
	for (int i = 0; i < 32; i++) {
		cr_assert_eq(guest_mem_init(&mem, &r, 1, i % 2 ? GUEST_MEM_MEMFD : GUEST_MEM_ANON), 0);
		guest_mem_destroy(&mem);
	}
	cr_assert_eq(count_mappings(), before);
}

static enum guest_mem_thp thp_from(const char *text)
{
	char path[] = "/tmp/vmm-thp-XXXXXX";
	int fd = mkstemp(path);
	enum guest_mem_thp t;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	t = guest_mem_thp_status(path);
	unlink(path);
	return t;
}

Test(guest_mem, thp_status_parses_the_selected_mode)
{
	cr_assert_eq(thp_from("always within_size advise [never] deny force\n"), GUEST_MEM_THP_OFF);
	cr_assert_eq(thp_from("always within_size advise never [deny] force\n"), GUEST_MEM_THP_OFF);
	cr_assert_eq(thp_from("always within_size [advise] never deny force\n"), GUEST_MEM_THP_ON);
	cr_assert_eq(thp_from("[always] within_size advise never deny force\n"), GUEST_MEM_THP_ON);
	cr_assert_eq(thp_from("always [within_size] advise never deny force\n"), GUEST_MEM_THP_ON);
	cr_assert_eq(thp_from("always within_size advise never deny [force]\n"), GUEST_MEM_THP_ON);
	/* /sys/kernel/mm/transparent_hugepage/enabled, for anonymous memory */
	cr_assert_eq(thp_from("[always] madvise never\n"), GUEST_MEM_THP_ON);
	cr_assert_eq(thp_from("always [madvise] never\n"), GUEST_MEM_THP_ON);
	cr_assert_eq(thp_from("always madvise [never]\n"), GUEST_MEM_THP_OFF);
	/* Unreadable, empty or unexpected contents are "unknown", never a crash. */
	cr_assert_eq(thp_from(""), GUEST_MEM_THP_UNKNOWN);
	cr_assert_eq(thp_from("always advise never"), GUEST_MEM_THP_UNKNOWN);
	cr_assert_eq(thp_from("[sometimes]"), GUEST_MEM_THP_UNKNOWN);
	cr_assert_eq(thp_from("["), GUEST_MEM_THP_UNKNOWN);
	cr_assert_eq(guest_mem_thp_status("/nonexistent/shmem_enabled"), GUEST_MEM_THP_UNKNOWN);
}

/* ---- holes: RAM no page backs yet ---- */

/* Whether the page at hva is in the process's memory (mincore). */
static bool resident(const void *hva)
{
	unsigned char v = 0;

	cr_assert_eq(mincore((void *)((uintptr_t)hva & ~(PAGE - 1)), PAGE, &v), 0);
	return v & 1;
}

Test(guest_mem, extent_of_a_fresh_memfd_is_one_hole_per_region_and_asking_allocates_nothing)
{
	uint64_t ext = 0;

	cr_assert_eq(guest_mem_init(&mem, two, 2, GUEST_MEM_MEMFD), 0);
	cr_assert(guest_mem_extent(&mem, 0, &ext));
	cr_assert_eq(ext, 16 * MIB, "the whole first region: %llu", (unsigned long long)ext);
	cr_assert(guest_mem_extent(&mem, 4 * GIB + 8 * MIB, &ext));
	cr_assert_eq(ext, 8 * MIB, "to the second region's end: %llu", (unsigned long long)ext);
	cr_assert_not(resident(mem.regions[0].hva));
}

Test(guest_mem, extent_splits_a_memfd_at_written_pages)
{
	uint64_t ext = 0;
	uint8_t *r0;

	cr_assert_eq(guest_mem_init(&mem, two, 2, GUEST_MEM_MEMFD), 0);
	r0 = mem.regions[0].hva;
	/* MADV_HUGEPAGE may back a write with a 2 MiB page: write one whole huge page. */
	memset(r0 + 4 * MIB, 0x5a, 2 * MIB);
	cr_assert(guest_mem_extent(&mem, 0, &ext));
	cr_assert_eq(ext, 4 * MIB, "hole up to the written data: %llu", (unsigned long long)ext);
	cr_assert_not(guest_mem_extent(&mem, 4 * MIB, &ext));
	cr_assert_eq(ext, 2 * MIB, "data up to the next hole: %llu", (unsigned long long)ext);
	cr_assert_not(guest_mem_extent(&mem, 5 * MIB, &ext));
	cr_assert_eq(ext, MIB);
	cr_assert(guest_mem_extent(&mem, 6 * MIB, &ext));
	cr_assert_eq(ext, 10 * MIB);
	/* The other region is its own hole: the data before it does not leak over. */
	cr_assert(guest_mem_extent(&mem, 4 * GIB, &ext));
	cr_assert_eq(ext, 16 * MIB);
}

Test(guest_mem, extent_of_anonymous_memory_follows_the_touched_pages)
{
	uint64_t ext = 0;
	uint8_t *r0;

	init_two();
	r0 = mem.regions[0].hva;
	/* Never touched: a hole, reported 2 MiB (one page-map read) at a time. */
	cr_assert(guest_mem_extent(&mem, 3 * MIB, &ext));
	cr_assert_eq(ext, 2 * MIB, "%llu", (unsigned long long)ext);
	/* Near the region's end: cut there. */
	cr_assert(guest_mem_extent(&mem, 4 * GIB + 16 * MIB - PAGE, &ext));
	cr_assert_eq(ext, PAGE);
	/* A write (a whole huge page, as THP may back it) is data; a read counts too. */
	memset(r0 + 8 * MIB, 1, 2 * MIB);
	cr_assert_not(guest_mem_extent(&mem, 8 * MIB, &ext));
	cr_assert_eq(ext, 2 * MIB);
	cr_assert(guest_mem_extent(&mem, 6 * MIB, &ext));
	cr_assert_eq(ext, 2 * MIB, "the hole stops at the data: %llu", (unsigned long long)ext);
	cr_assert_eq(*(volatile uint8_t *)(r0 + 12 * MIB), 0);
	cr_assert_not(guest_mem_extent(&mem, 12 * MIB, &ext));
}

Test(guest_mem, extent_of_a_wrapped_buffer_is_data)
{
	static uint8_t buf[64 * 1024];
	uint64_t ext = 0;

	guest_mem_init_from_buffer(&mem, buf, 0x10000, sizeof(buf));
	cr_assert_not(guest_mem_extent(&mem, 0x10000 + PAGE, &ext));
	cr_assert_eq(ext, sizeof(buf) - PAGE);
}

/* ---- the log of the VMM's own writes ---- */

struct marker {
	atomic_bool stop;
	atomic_ullong marks;
};

static void *mark_loop(void *arg)
{
	struct marker *mk = arg;
	uint8_t byte = 1;

	while (!atomic_load(&mk->stop)) {
		cr_assert_eq(guest_mem_write(&mem, 5 * PAGE, &byte, 1), 0);
		atomic_fetch_add(&mk->marks, 1);
	}
	return NULL;
}

Test(guest_mem, a_removed_dirty_log_is_never_touched_again)
{
	struct marker mk = { 0 };
	pthread_t th[3];

	init_two();
	for (unsigned int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, mark_loop, &mk), 0);
	/*
	 * Each round installs a fresh log, lets the writers mark it, removes it and frees it
	 * at once: a writer still inside would write to unmapped memory (SIGSEGV) or to a log
	 * that is gone. (The window is a few instructions: this rarely meets it; the next
	 * test holds it open.)
	 */
	for (unsigned int round = 0; round < 300; round++) {
		struct dirty_log l;
		uint64_t bits = 0, seen;

		cr_assert_eq(dirty_log_init(&l, 16 * MIB), 0);
		guest_mem_set_dirty_log(&mem, &l);
		/* Each writer may count one write that looked before the log was there. */
		seen = atomic_load(&mk.marks);
		while (atomic_load(&mk.marks) < seen + 4)
			sched_yield();
		guest_mem_set_dirty_log(&mem, NULL);
		cr_assert_eq(dirty_log_collect(&l, 0, &bits, 1), 1, "round %u", round);
		cr_assert_eq(bits, 1ULL << 5);
		dirty_log_destroy(&l);
	}
	atomic_store(&mk.stop, true);
	for (unsigned int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	/* No log: writes mark nothing and cost nothing. */
	cr_assert_null(atomic_load(&mem.dirty));
	cr_assert_eq(atomic_load(&mem.dirty_writers), 0);
}

static atomic_bool removed;

static void *remove_log(void *arg)
{
	(void)arg;
	guest_mem_set_dirty_log(&mem, NULL);
	atomic_store(&removed, true);
	return NULL;
}

Test(guest_mem, removing_the_dirty_log_waits_for_a_writer_inside)
{
	struct dirty_log l;
	pthread_t th;

	init_two();
	cr_assert_eq(dirty_log_init(&l, 16 * MIB), 0);
	guest_mem_set_dirty_log(&mem, &l);
	/* A writer between its look at the log and its mark, held there. */
	atomic_fetch_add(&mem.dirty_writers, 1);
	atomic_store(&removed, false);
	cr_assert_eq(pthread_create(&th, NULL, remove_log, NULL), 0);
	/* (a loaded machine may start the thread late: wait for it, up to 5 s) */
	for (int waited = 0; atomic_load(&mem.dirty) && waited < 5000; waited += 10)
		usleep(10 * 1000);
	cr_assert_null(atomic_load(&mem.dirty), "new writers see no log at once");
	usleep(50 * 1000);
	cr_assert_not(atomic_load(&removed), "the removal returned with a writer inside");
	atomic_fetch_sub(&mem.dirty_writers, 1);
	pthread_join(th, NULL);
	cr_assert(atomic_load(&removed));
	dirty_log_destroy(&l);
}
