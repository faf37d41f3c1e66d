/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The x86-64 side of vmm/arch.h, internal to vmm/x86/: the state behind the
 * opaque arch types. Read vmm/arch.h first; the files here are
 *   vm.c        KVM VM setup (TSS, identity map, irqchip, PIT, CPUID), VM state save/restore
 *   vcpu.c      vCPU setup (CPUID, LAPIC), crash dump, vCPU state save/restore
 *   cpuid.c     per-vCPU CPUID patching (pure)
 *   boot.c      the Linux 64-bit boot protocol: bzImage, initrd, zero page, entry state
 *   platform.c  RAM layout, ACPI PM/reset registers, i8042, 16550 and virtio-mmio
 *               placement, ACPI tables
 */
#ifndef VMM_X86_X86_H
#define VMM_X86_X86_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firmware/boot_params.h"
#include "vmm/arch.h"

struct arch_vm {
	int kvm_fd, vm_fd;		/* the caller's */
	unsigned int ncpus;
	struct kvm_cpuid2 *cpuid;	/* KVM_GET_SUPPORTED_CPUID */
	uint32_t *msrs;			/* the MSRs a vCPU's saved state holds: ours that KVM has */
	unsigned int nmsrs;
	size_t xsave_size;		/* bytes of KVM_GET_XSAVE(2) state; 0: KVM_GET_FPU */
	arch_stop_fn *stop;		/* platform devices stop the machine through this */
	void *stop_opaque;
	struct kvm_clock_data paused_clock;	/* kvmclock at arch_vm_pause() */
	bool clock_frozen;		/* paused_clock is valid */
};

struct arch_boot {
	struct bzimage_info info;
	uint8_t *setup;		/* the bzImage's first bytes: boot sector and setup header */
	size_t setup_len;
	int kernel_fd;
	int initrd_fd;		/* -1 without initrd */
	uint64_t initrd_size;
};

#endif
