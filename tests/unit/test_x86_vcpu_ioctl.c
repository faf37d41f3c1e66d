// SPDX-License-Identifier: GPL-2.0-only
/*
 * The order of the KVM calls that save and restore a vCPU (vmm/x86/vcpu.c), against a fake
 * KVM: this test links with -Wl,--wrap=ioctl, so every ioctl vcpu.c makes lands in
 * __wrap_ioctl below, which records it and answers like KVM.
 *
 * Why the order matters (KVM's Documentation/virt/kvm/api.rst and arch/x86/kvm/x86.c):
 * reading the vCPU events delivers a pending exception's payload into CR2 or DR6 when
 * KVM_CAP_EXCEPTION_PAYLOAD is off, so the registers are read after them; reading the MP
 * state takes a pending INIT or SIPI, which changes the registers. On restore the LAPIC
 * needs the APIC base (in kvm_sregs) and resets the timer, so the TSC deadline MSR comes
 * after it, and after the TSC it is measured against.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/arch.h"
#include "vmm/base/util.h"
#include "vmm/x86/x86.h"

#define FAKE_FD	 77
#define MAX_CALLS 64

static unsigned long calls[MAX_CALLS];
static unsigned int ncalls;
static uint32_t msr_order[16];	/* the MSRs of the last KVM_SET_MSRS, in order */
static unsigned int nmsr_order;

int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fd != FAKE_FD)
		return __real_ioctl(fd, req, arg);
	if (ncalls < MAX_CALLS)
		calls[ncalls++] = req;
	if (req == KVM_GET_MSRS || req == KVM_SET_MSRS) {
		struct kvm_msrs *m = arg;

		if (req == KVM_SET_MSRS) {
			nmsr_order = MIN(m->nmsrs, (uint32_t)ARRAY_SIZE(msr_order));
			for (unsigned int i = 0; i < nmsr_order; i++)
				msr_order[i] = m->entries[i].index;
		}
		return (int)m->nmsrs;	/* all of them */
	}
	return 0;
}

/* Where req first appears in the recorded calls; fails the test if it does not. */
static unsigned int pos(unsigned long req)
{
	for (unsigned int i = 0; i < ncalls; i++)
		if (calls[i] == req)
			return i;
	cr_assert_fail("ioctl %#lx was never made", req);
	return 0;
}

static unsigned int msr_pos(uint32_t msr)
{
	for (unsigned int i = 0; i < nmsr_order; i++)
		if (msr_order[i] == msr)
			return i;
	cr_assert_fail("MSR %#x was not restored", msr);
	return 0;
}

static uint32_t avm_msrs[] = { 0x10, 0x4b564d01, 0x6e0 };	/* TSC, kvmclock, TSC deadline */

static struct arch_vm fake_vm(void)
{
	return (struct arch_vm){ .msrs = avm_msrs, .nmsrs = ARRAY_SIZE(avm_msrs),
				 .xsave_size = sizeof(struct kvm_xsave) };
}

Test(x86_vcpu_ioctl, save_reads_the_mp_state_then_the_events_then_the_registers)
{
	struct arch_vm avm = fake_vm();
	size_t len = arch_vcpu_state_size(&avm);
	void *buf = malloc(len);

	cr_assert_not_null(buf);
	ncalls = 0;
	cr_assert_gt(arch_vcpu_save(&avm, FAKE_FD, buf, len), 0);
	cr_assert_eq(pos(KVM_GET_MP_STATE), 0, "the MP state first (it takes a pending INIT/SIPI)");
	cr_assert_lt(pos(KVM_GET_VCPU_EVENTS), pos(KVM_GET_REGS));
	cr_assert_lt(pos(KVM_GET_VCPU_EVENTS), pos(KVM_GET_SREGS),
		     "CR2 is read after the events deliver a pending #PF's payload into it");
	cr_assert_lt(pos(KVM_GET_VCPU_EVENTS), pos(KVM_GET_DEBUGREGS),
		     "DR6 is read after the events deliver a pending #DB's payload into it");
	free(buf);
}

Test(x86_vcpu_ioctl, restore_puts_the_lapic_after_the_sregs_and_the_deadline_after_both)
{
	struct arch_vm avm = fake_vm();
	size_t len = arch_vcpu_state_size(&avm);
	void *buf = malloc(len);
	ssize_t n;

	cr_assert_not_null(buf);
	n = arch_vcpu_save(&avm, FAKE_FD, buf, len);
	cr_assert_gt(n, 0);
	ncalls = 0;
	cr_assert_eq(arch_vcpu_restore(&avm, FAKE_FD, buf, (size_t)n), 0);
	cr_assert_lt(pos(KVM_SET_SREGS), pos(KVM_SET_LAPIC), "the APIC base before the LAPIC");
	cr_assert_lt(pos(KVM_SET_LAPIC), pos(KVM_SET_MSRS),
		     "KVM_SET_LAPIC resets the timer: the TSC deadline after it");
	cr_assert_lt(msr_pos(0x10), msr_pos(0x6e0), "the TSC before the deadline measured on it");
	cr_assert_lt(pos(KVM_SET_MP_STATE), pos(KVM_SET_VCPU_EVENTS));
	free(buf);
}

Test(x86_vcpu_ioctl, a_blob_of_another_shape_is_refused_before_any_call)
{
	struct arch_vm avm = fake_vm();
	size_t len = arch_vcpu_state_size(&avm);
	uint8_t *buf = calloc(1, len);

	cr_assert_not_null(buf);
	ncalls = 0;
	cr_assert_eq(arch_vcpu_restore(&avm, FAKE_FD, buf, len), -EINVAL, "no magic");
	cr_assert_eq(arch_vcpu_restore(&avm, FAKE_FD, buf, 3), -EINVAL, "too short");
	cr_assert_eq(ncalls, 0);
	free(buf);
}
