// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the per-vCPU CPUID patching (vmm/x86/cpuid.c) on a fabricated
 * KVM_GET_SUPPORTED_CPUID table.
 */
#include <criterion/criterion.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/x86/cpuid.h"

#define SIG	KVM_CPUID_FLAG_SIGNIFCANT_INDEX

#define LEAF1_EAX	0x000906eau
#define LEAF1_EBX	0xabcd0800u	/* APIC ID 0xab, count 0xcd: replaced; brand/CLFLUSH kept */
#define LEAF1_ECX	0x7ffafbffu	/* hypervisor bit (31) clear */
#define LEAF7_EBX	0x029c6fbfu

/* Leaf 4 EAX: garbage in the fields cpuid_patch owns, cache type/level/self-init below. */
#define L4_OWNED	(0x3fu << 26 | 0xfffu << 14)
#define L4_EAX(type, level)	(L4_OWNED | 1u << 8 | (level) << 5 | (type))

static struct kvm_cpuid2 *table_alloc(unsigned int max)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + max * sizeof(c->entries[0]));

	cr_assert_not_null(c);
	return c;
}

static void add(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, uint32_t flags, uint32_t eax,
		uint32_t ebx, uint32_t ecx, uint32_t edx)
{
	c->entries[c->nent++] = (struct kvm_cpuid_entry2){
		.function = fn, .index = idx, .flags = flags,
		.eax = eax, .ebx = ebx, .ecx = ecx, .edx = edx,
	};
}

/* A table shaped like KVM's on a recent Intel/AMD host. */
static struct kvm_cpuid2 *fabricate(uint32_t leaf1_edx)
{
	struct kvm_cpuid2 *c = table_alloc(32);

	add(c, 0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69);
	add(c, 1, 0, 0, LEAF1_EAX, LEAF1_EBX, LEAF1_ECX, leaf1_edx);
	add(c, 4, 0, SIG, L4_EAX(1, 1), 0x01c0003f, 0x3f, 0);		/* L1d */
	add(c, 4, 1, SIG, L4_EAX(2, 1), 0x01c0003f, 0x3f, 0);		/* L1i */
	add(c, 4, 2, SIG, L4_EAX(3, 2), 0x03c0003f, 0x3ff, 0);		/* L2 */
	add(c, 4, 3, SIG, L4_EAX(3, 3), 0x03c0003f, 0x3fff, 6);	/* L3 */
	add(c, 4, 4, SIG, 0xabc00000, 0x11, 0x22, 0x33);		/* no more caches */
	add(c, 7, 0, SIG, 0, LEAF7_EBX, 0x00405f4e, 0xbc000400);
	add(c, 0xb, 0, SIG, 0x11, 0x22, 0x33, 0x44);
	add(c, 0xb, 1, SIG, 0x11, 0x22, 0x33, 0x44);
	add(c, 0xb, 2, SIG, 0x11, 0x22, 0x33, 0x44);
	add(c, 0x1f, 0, SIG, 0x55, 0x66, 0x77, 0x88);
	add(c, 0x1f, 1, SIG, 0x55, 0x66, 0x77, 0x88);
	add(c, 0x1f, 2, SIG, 0x55, 0x66, 0x77, 0x88);
	add(c, 0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
	add(c, 0x80000000, 0, 0, 0x80000008, 0, 0, 0);
	add(c, 0x80000008, 0, 0, 0x3030, 0x12345678, 0xffffffff, 0x9abc);
	add(c, 0x8000001e, 0, 0, 0xdead, 0xbeef, 0xcafe, 0xf00d);
	return c;
}

static struct kvm_cpuid_entry2 *must_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	struct kvm_cpuid_entry2 *e = cpuid_find(c, fn, idx);

	cr_assert_not_null(e, "leaf 0x%x.%u missing", fn, idx);
	return e;
}

/* ---- cpuid_topology_shift ---- */

Test(cpuid, topology_shift)
{
	static const unsigned int want[][2] = {
		{ 0, 0 }, { 1, 0 }, { 2, 1 }, { 3, 2 }, { 4, 2 }, { 5, 3 }, { 8, 3 },
		{ 9, 4 }, { 16, 4 }, { 17, 5 }, { 64, 6 }, { 65, 7 }, { 128, 7 }, { 255, 8 },
		{ 256, 8 }, { 257, 9 },
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_eq(cpuid_topology_shift(want[i][0]), want[i][1], "n=%u: %u, want %u",
			     want[i][0], cpuid_topology_shift(want[i][0]), want[i][1]);
}

Test(cpuid, topology_shift_is_smallest)
{
	for (unsigned int n = 1; n <= 1024; n++) {
		unsigned int s = cpuid_topology_shift(n);

		cr_assert_geq(1u << s, n);
		if (s)
			cr_assert_lt(1u << (s - 1), n);
	}
}

/* ---- cpuid_find ---- */

Test(cpuid, find)
{
	struct kvm_cpuid2 *c = fabricate(0);
	struct kvm_cpuid_entry2 *e;

	e = cpuid_find(c, 1, 0);
	cr_assert_not_null(e);
	cr_assert_eq(e->eax, LEAF1_EAX);
	/* Without KVM_CPUID_FLAG_SIGNIFCANT_INDEX the index does not matter. */
	cr_assert_eq(cpuid_find(c, 1, 7), e);
	e = cpuid_find(c, 4, 3);
	cr_assert_not_null(e);
	cr_assert_eq(e->function, 4);
	cr_assert_eq(e->index, 3);
	cr_assert_eq(cpuid_find(c, 0xb, 2)->index, 2);
	cr_assert_eq(cpuid_find(c, 0xb, 0)->index, 0);
	cr_assert_null(cpuid_find(c, 4, 5));
	cr_assert_null(cpuid_find(c, 0xb, 3));
	cr_assert_null(cpuid_find(c, 0x12345, 0));
	cr_assert_null(cpuid_find(c, 0x80000001, 0));
	free(c);
}

Test(cpuid, find_empty)
{
	struct kvm_cpuid2 *c = table_alloc(0);

	cr_assert_null(cpuid_find(c, 0, 0));
	cr_assert_null(cpuid_find(c, 1, 0));
	free(c);
}

/* ---- cpuid_patch ---- */

static void check_leaf1(struct kvm_cpuid2 *c, unsigned int index, unsigned int ncpus)
{
	struct kvm_cpuid_entry2 *e = must_find(c, 1, 0);

	cr_assert_eq(e->ebx >> 24, index, "leaf 1 APIC ID %u, want %u", e->ebx >> 24, index);
	cr_assert_eq((e->ebx >> 16) & 0xff, ncpus, "leaf 1 logical count %u, want %u",
		     (e->ebx >> 16) & 0xff, ncpus);
	cr_assert_eq(e->ebx & 0xffff, LEAF1_EBX & 0xffff, "leaf 1 EBX low bits changed");
	cr_assert_eq(e->eax, LEAF1_EAX);
	cr_assert(e->ecx & (1u << 31), "hypervisor bit not set");
	cr_assert_eq(e->ecx & ~(1u << 31), LEAF1_ECX, "other ECX bits changed");
	if (ncpus > 1)
		cr_assert(e->edx & (1u << 28), "HTT not set for %u CPUs", ncpus);
	else
		cr_assert_not(e->edx & (1u << 28), "HTT set for 1 CPU");
}

static void check_leaf4(struct kvm_cpuid2 *c, unsigned int ncpus)
{
	for (uint32_t i = 0; i < 4; i++) {
		struct kvm_cpuid_entry2 *e = must_find(c, 4, i);
		unsigned int level = (e->eax >> 5) & 7;
		unsigned int sharing = (e->eax >> 14) & 0xfff;

		cr_assert_eq(e->eax >> 26, ncpus - 1, "leaf 4.%u cores-1 %u, want %u", i,
			     e->eax >> 26, ncpus - 1);
		cr_assert_eq(sharing, level >= 3 ? ncpus - 1 : 0, "leaf 4.%u (L%u) sharing %u", i,
			     level, sharing);
		cr_assert_eq(e->eax & 0x3fff, L4_EAX((i == 1 ? 2 : (i ? 3 : 1)),
						     (i < 2 ? 1 : i)) & 0x3fff,
			     "leaf 4.%u cache description changed", i);
	}
	/* The terminating subleaf (type 0) is left alone. */
	cr_assert_eq(must_find(c, 4, 4)->eax, 0xabc00000);
	cr_assert_eq(must_find(c, 4, 4)->ebx, 0x11);
	cr_assert_eq(must_find(c, 4, 3)->ebx, 0x03c0003f);
	cr_assert_eq(must_find(c, 4, 3)->ecx, 0x3fff);
	cr_assert_eq(must_find(c, 4, 3)->edx, 6);
}

static void check_ext_topology(struct kvm_cpuid2 *c, uint32_t leaf, unsigned int index,
			       unsigned int ncpus)
{
	struct kvm_cpuid_entry2 *smt = must_find(c, leaf, 0);
	struct kvm_cpuid_entry2 *core = must_find(c, leaf, 1);
	struct kvm_cpuid_entry2 *inv = must_find(c, leaf, 2);
	unsigned int shift = cpuid_topology_shift(ncpus);

	/* SMT level: one thread per core. */
	cr_assert_eq(smt->eax, 0, "0x%x.0 shift", leaf);
	cr_assert_eq(smt->ebx, 1, "0x%x.0 count", leaf);
	cr_assert_eq(smt->ecx, 1u << 8 | 0, "0x%x.0 type/level", leaf);
	cr_assert_eq(smt->edx, index, "0x%x.0 x2APIC ID", leaf);
	/* Core level: every vCPU in the package. */
	cr_assert_eq(core->eax, shift, "0x%x.1 shift %u, want %u", leaf, core->eax, shift);
	cr_assert_eq(core->ebx, ncpus, "0x%x.1 count", leaf);
	cr_assert_eq(core->ecx, 2u << 8 | 1, "0x%x.1 type/level", leaf);
	cr_assert_eq(core->edx, index, "0x%x.1 x2APIC ID", leaf);
	/* Then an invalid level that still echoes the subleaf and the ID. */
	cr_assert_eq(inv->eax, 0);
	cr_assert_eq(inv->ebx, 0);
	cr_assert_eq(inv->ecx, 2, "0x%x.2 ECX 0x%x", leaf, inv->ecx);
	cr_assert_eq(inv->edx, index);
	/* Every APIC ID fits in the shift the core level announces. */
	cr_assert_lt(index, 1u << shift);
}

static void check_amd(struct kvm_cpuid2 *c, unsigned int index, unsigned int ncpus)
{
	struct kvm_cpuid_entry2 *e = must_find(c, 0x80000008, 0);
	unsigned int shift = cpuid_topology_shift(ncpus);

	cr_assert_eq(e->ecx & 0xff, ncpus - 1, "0x80000008 NC %u", e->ecx & 0xff);
	cr_assert_eq((e->ecx >> 12) & 0xf, shift, "0x80000008 ApicIdCoreIdSize");
	cr_assert_eq(e->ecx & ~0xf0ffu, 0xffffffffu & ~0xf0ffu, "other ECX bits changed");
	cr_assert_eq(e->eax, 0x3030);
	cr_assert_eq(e->ebx, 0x12345678);
	cr_assert_eq(e->edx, 0x9abc);

	e = must_find(c, 0x8000001e, 0);
	cr_assert_eq(e->eax, index, "0x8000001e extended APIC ID");
	cr_assert_eq(e->ebx & 0xff, index, "0x8000001e core ID");
	cr_assert_eq((e->ebx >> 8) & 0xff, 0, "0x8000001e threads per core - 1");
	cr_assert_eq(e->ecx & 0x7ff, 0, "0x8000001e node");
}

static void check_untouched(struct kvm_cpuid2 *c)
{
	struct kvm_cpuid_entry2 *e = must_find(c, 7, 0);

	cr_assert_eq(e->ebx, LEAF7_EBX);
	cr_assert_eq(e->ecx, 0x00405f4e);
	e = must_find(c, 0x40000000, 0);
	cr_assert_eq(e->ebx, 0x4b4d564b);
	e = must_find(c, 0, 0);
	cr_assert_eq(e->eax, 0x1f);
	cr_assert_eq(e->ebx, 0x756e6547);
}

static void check_all(unsigned int ncpus)
{
	unsigned int indexes[] = { 0, ncpus / 2, ncpus - 1 };

	for (size_t i = 0; i < 3; i++) {
		/* Once with HTT set by the host, once with it clear. */
		for (int htt = 0; htt < 2; htt++) {
			struct kvm_cpuid2 *c = fabricate(htt ? 0xbfebfbff : 0xafebfbff);
			unsigned int nent = c->nent;

			cpuid_patch(c, indexes[i], ncpus);
			cr_assert_eq(c->nent, nent);
			check_leaf1(c, indexes[i], ncpus);
			if (ncpus <= 64)
				check_leaf4(c, ncpus);
			check_ext_topology(c, 0xb, indexes[i], ncpus);
			check_ext_topology(c, 0x1f, indexes[i], ncpus);
			check_amd(c, indexes[i], ncpus);
			check_untouched(c);
			free(c);
		}
	}
}

Test(cpuid_patch, one_cpu)		{ check_all(1); }
Test(cpuid_patch, two_cpus)		{ check_all(2); }
Test(cpuid_patch, three_cpus)		{ check_all(3); }
Test(cpuid_patch, four_cpus)		{ check_all(4); }
Test(cpuid_patch, eight_cpus)		{ check_all(8); }
Test(cpuid_patch, sixty_four_cpus)	{ check_all(64); }
Test(cpuid_patch, max_cpus)		{ check_all(255); }

Test(cpuid_patch, shift_values)
{
	static const unsigned int want[][2] = {
		{ 1, 0 }, { 2, 1 }, { 3, 2 }, { 4, 2 }, { 8, 3 }, { 255, 8 },
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct kvm_cpuid2 *c = fabricate(0);

		cpuid_patch(c, 0, want[i][0]);
		cr_assert_eq(must_find(c, 0xb, 1)->eax, want[i][1], "%u CPUs", want[i][0]);
		cr_assert_eq(must_find(c, 0x1f, 1)->eax, want[i][1], "%u CPUs", want[i][0]);
		cr_assert_eq((must_find(c, 0x80000008, 0)->ecx >> 12) & 0xf, want[i][1]);
		cr_assert_eq(must_find(c, 0xb, 1)->ebx, want[i][0]);
		free(c);
	}
}

Test(cpuid_patch, idempotent)
{
	struct kvm_cpuid2 *a = fabricate(0xbfebfbff), *b = fabricate(0xbfebfbff);
	size_t bytes = sizeof(*a) + a->nent * sizeof(a->entries[0]);

	cpuid_patch(a, 3, 8);
	cpuid_patch(b, 3, 8);
	cpuid_patch(b, 3, 8);
	cr_assert_eq(memcmp(a, b, bytes), 0);
	/* Re-patching for another vCPU leaves no trace of the first. */
	cpuid_patch(b, 200, 255);
	cpuid_patch(b, 3, 8);
	cr_assert_eq(memcmp(a, b, bytes), 0);
	free(a);
	free(b);
}

Test(cpuid_patch, missing_leaves_are_fine)
{
	struct kvm_cpuid2 *c = table_alloc(2);

	add(c, 0, 0, 0, 0xd, 1, 2, 3);
	add(c, 1, 0, 0, LEAF1_EAX, LEAF1_EBX, LEAF1_ECX, 0);
	cpuid_patch(c, 5, 6);
	cr_assert_eq(c->nent, 2);
	check_leaf1(c, 5, 6);
	cr_assert_eq(c->entries[0].eax, 0xd);
	free(c);
}

/*
 * Leaf 4 EAX[31:26] is "addressable core IDs in the package - 1": the next
 * power of two of (field + 1) is the core-ID space. It cannot describe more
 * than 64 cores, but it must never describe fewer than min(64, 2^shift).
 */
static unsigned int pow2ceil(unsigned int n)
{
	return 1u << cpuid_topology_shift(n);
}

Test(cpuid_patch, leaf4_core_ids_cover_all_cpus)
{
	for (unsigned int n = 1; n <= 255; n++) {
		struct kvm_cpuid2 *c = fabricate(0);
		unsigned int want = pow2ceil(n) < 64 ? pow2ceil(n) : 64;
		unsigned int field, sharing;

		cpuid_patch(c, 0, n);
		field = must_find(c, 4, 3)->eax >> 26;
		sharing = (must_find(c, 4, 3)->eax >> 14) & 0xfff;
		free(c);
		cr_assert_eq(pow2ceil(field + 1), want,
			     "%u CPUs: leaf 4 EAX[31:26] = %u announces %u core IDs, want %u",
			     n, field, pow2ceil(field + 1), want);
		/* The L3 sharing field has room for every vCPU. */
		cr_assert_eq(sharing, n - 1);
	}
}
