// SPDX-License-Identifier: GPL-2.0-only
#include <stddef.h>

#include "vmm/x86/cpuid.h"

#define LEAF1_EDX_HTT		(1u << 28)
#define LEAF1_ECX_HYPERVISOR	(1u << 31)
#define TOPO_LEVEL_SMT		1
#define TOPO_LEVEL_CORE		2

unsigned int cpuid_topology_shift(unsigned int n)
{
	unsigned int s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		if (e->function != function)
			continue;
		if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index)
			return e;
	}
	return NULL;
}

static void patch_extended_topology(struct kvm_cpuid_entry2 *e, unsigned int apic_id,
				    unsigned int ncpus)
{
	switch (e->index) {
	case 0:	/* SMT level: one thread per core */
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (TOPO_LEVEL_SMT << 8) | 0;
		break;
	case 1:	/* core level: all vCPUs in one package */
		e->eax = cpuid_topology_shift(ncpus);
		e->ebx = ncpus;
		e->ecx = (TOPO_LEVEL_CORE << 8) | 1;
		break;
	default:
		e->eax = 0;
		e->ebx = 0;
		e->ecx = e->index;
		break;
	}
	e->edx = apic_id;
}

void cpuid_patch(struct kvm_cpuid2 *cpuid, unsigned int index, unsigned int ncpus)
{
	unsigned int apic_id = index, shift = cpuid_topology_shift(ncpus);

	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			e->ebx &= 0x0000ffff;
			e->ebx |= (apic_id & 0xff) << 24;
			e->ebx |= (ncpus > 255 ? 255 : ncpus) << 16;
			if (ncpus > 1)
				e->edx |= LEAF1_EDX_HTT;
			else
				e->edx &= ~LEAF1_EDX_HTT;
			e->ecx |= LEAF1_ECX_HYPERVISOR;
			break;
		case 4:
			/* Cores per package minus one, in bits 31:26; keep the cache data. */
			if (e->eax & 0x1f) {
				e->eax &= ~(0x3fu << 26);
				e->eax |= (ncpus - 1 > 63 ? 63 : ncpus - 1) << 26;
				/* Threads sharing this cache minus one, bits 25:14: L3 is shared. */
				e->eax &= ~(0xfffu << 14);
				if (((e->eax >> 5) & 7) >= 3)
					e->eax |= (ncpus - 1) << 14;	/* ncpus <= 255 fits 12 bits */
			}
			break;
		case 0xb:
		case 0x1f:
			patch_extended_topology(e, apic_id, ncpus);
			break;
		case 0x80000008:
			e->ecx &= ~0xf0ffu;
			e->ecx |= (ncpus - 1) & 0xff;
			e->ecx |= (shift & 0xf) << 12;
			break;
		case 0x8000001e:
			e->eax = apic_id;
			e->ebx = apic_id & 0xff;	/* core id; threads per core - 1 = 0 */
			e->ecx = 0;			/* node 0, one node per package */
			break;
		}
	}
}
