/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Per-vCPU CPUID: KVM's supported table patched with this vCPU's APIC ID and
 * the topology of N vCPUs as cores of one socket, one thread per core.
 */
#ifndef VMM_X86_CPUID_H
#define VMM_X86_CPUID_H

#include <linux/kvm.h>
#include <stdint.h>

/* Smallest s with (1 << s) >= n. */
unsigned int cpuid_topology_shift(unsigned int n);

/*
 * Rewrites the entries in place for vCPU `index` (APIC ID = index) of `ncpus`:
 * leaf 1 (APIC ID, logical count, HTT, hypervisor bit), leaf 4 (cores),
 * leaves 0xb/0x1f (x2APIC topology), 0x80000008 (AMD core count) and
 * 0x8000001e (AMD topology extension).
 */
void cpuid_patch(struct kvm_cpuid2 *cpuid, unsigned int index, unsigned int ncpus);

/* Returns the entry for function/index, or NULL. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function, uint32_t index);

#endif
