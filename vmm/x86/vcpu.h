/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * x86 vCPUs: CPUID and LAPIC setup, the crash dump and the vCPU's saved state
 * (MP state, registers, FPU/XSAVE, XCRs, LAPIC, MSRs, events, debug
 * registers). The vCPU hooks of vmm/arch.h live here; the functions below are
 * the pure parts, unit-tested.
 */
#ifndef VMM_X86_VCPU_H
#define VMM_X86_VCPU_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The CPU state that tells why a guest crashed (a triple fault): instruction
 * and stack pointers, control registers, the segment bases (a broken GS base
 * kills a kernel at its first per-CPU access) and the IDT, and whether it is
 * the reset state (KVM on AMD loses the state at a triple fault). Writes one line.
 */
void x86_vcpu_format_state(char *buf, size_t len, const struct kvm_regs *regs,
			   const struct kvm_sregs *sregs);

/*
 * What decides whether the vCPU takes an interrupt, on one line: RFLAGS.IF, its
 * run state (KVM_MP_STATE_*), the local APIC's TPR and PPR, the vectors in service
 * (ISR: handled, not yet EOIed), requested (IRR) and level-triggered (TMR), and
 * what KVM holds for injection (ev: an interrupt, an NMI, an exception).
 */
void x86_format_irq_state(char *buf, size_t len, uint64_t rflags, uint32_t mp_state,
			  const struct kvm_lapic_state *lapic, const struct kvm_vcpu_events *ev);

/* IOAPIC pin `pin` of io on one line: vector, trigger, polarity, mask, remote IRR, pending. */
void x86_format_ioapic_pin(char *buf, size_t len, const struct kvm_ioapic_state *io,
			   unsigned int pin);

/* The most MSRs x86_saved_msrs() returns. */
unsigned int x86_saved_msrs_max(void);

/*
 * The MSRs a vCPU's saved state holds, in restore order: those of ours (TSC,
 * SYSCALL/SYSENTER, PAT, MTRRs, kvmclock and the other KVM PV MSRs ...) that
 * are in KVM's list (KVM_GET_MSR_INDEX_LIST). Writes them to out (room for
 * x86_saved_msrs_max()) and returns how many.
 */
unsigned int x86_saved_msrs(const uint32_t *kvm_list, unsigned int n, uint32_t *out);

#endif
