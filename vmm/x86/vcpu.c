// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/base/log.h"
#include "vmm/base/util.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/cpuid.h"
#include "vmm/x86/vcpu.h"
#include "vmm/x86/x86.h"

#define APIC_LVT0	0x350
#define APIC_LVT1	0x360
#define APIC_MODE_NMI	0x4
#define APIC_MODE_EXTINT 0x7

#define X86_VCPU_STATE_MAGIC	0x53435658	/* "XVCS" */
#define X86_VCPU_STATE_VERSION	1

/*
 * A vCPU's saved state: this header, then xsave_size bytes of XSAVE area
 * (padded to 16), then nmsrs struct kvm_msr_entry.
 */
struct x86_vcpu_state {
	uint32_t magic, version;
	uint32_t nmsrs, xsave_size;	/* xsave_size 0: fpu holds the FPU/SSE state */
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
};

/*
 * The MSRs that carry guest state beyond the registers, in restore order
 * (the async page fault vector before async PF is enabled; TSC before the
 * kvmclock MSRs). EFER and the APIC base travel in kvm_sregs.
 */
static const uint32_t saved_msrs[] = {
	0x10,		/* IA32_TSC */
	0x3b,		/* IA32_TSC_ADJUST */
	0x3a,		/* IA32_FEATURE_CONTROL */
	0x48,		/* IA32_SPEC_CTRL */
	0x140,		/* MISC_FEATURES_ENABLES */
	0x174, 0x175, 0x176,	/* IA32_SYSENTER_CS, _ESP, _EIP */
	0x17a,		/* IA32_MCG_STATUS */
	0x1a0,		/* IA32_MISC_ENABLE */
	0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207,	/* MTRR phys base/mask 0-3 */
	0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,	/* MTRR phys base/mask 4-7 */
	0x250, 0x258, 0x259,	/* MTRR fixed 64K, 16K */
	0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,	/* MTRR fixed 4K */
	0x277,		/* IA32_PAT */
	0x2ff,		/* MTRR default type */
	0xda0,		/* IA32_XSS */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,	/* STAR, LSTAR, CSTAR, SYSCALL_MASK */
	0xc0000102,	/* KERNEL_GS_BASE */
	0xc0000103,	/* TSC_AUX */
	0xc001011f,	/* AMD64_VIRT_SPEC_CTRL */
	0x11, 0x12,	/* KVM_WALL_CLOCK, KVM_SYSTEM_TIME (old kvmclock) */
	0x4b564d00,	/* KVM_WALL_CLOCK_NEW */
	0x4b564d01,	/* KVM_SYSTEM_TIME_NEW */
	0x4b564d03,	/* KVM_STEAL_TIME */
	0x4b564d04,	/* KVM_PV_EOI_EN */
	0x4b564d05,	/* KVM_POLL_CONTROL */
	0x4b564d06,	/* KVM_ASYNC_PF_INT, before ... */
	0x4b564d02,	/* KVM_ASYNC_PF_EN */
	0x4b564d07,	/* KVM_ASYNC_PF_ACK */
	0x6e0,		/* IA32_TSC_DEADLINE, after the LAPIC (restored before the MSRs) */
};

static void lapic_set_lvt_mode(struct kvm_lapic_state *lapic, unsigned int reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, &lapic->regs[reg], sizeof(v));
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&lapic->regs[reg], &v, sizeof(v));
}

/* Wires LINT0 as ExtINT and LINT1 as NMI on a vCPU's local APIC; 0 or -errno. */
static int init_lapic(int fd)
{
	struct kvm_lapic_state lapic;

	if (ioctl(fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	lapic_set_lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
	lapic_set_lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
	return ioctl(fd, KVM_SET_LAPIC, &lapic) < 0 ? -errno : 0;
}

static int init_cpuid(const struct arch_vm *avm, int fd, unsigned int index)
{
	size_t bytes = sizeof(*avm->cpuid) + avm->cpuid->nent * sizeof(avm->cpuid->entries[0]);
	struct kvm_cpuid2 *cpuid = malloc(bytes);
	int ret;

	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid, avm->cpuid, bytes);
	cpuid_patch(cpuid, index, avm->ncpus);
	ret = ioctl(fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	free(cpuid);
	return ret;
}

int arch_vcpu_init(struct arch_vm *avm, int vcpu_fd, unsigned int index)
{
	int ret = init_cpuid(avm, vcpu_fd, index);

	if (!ret)
		ret = init_lapic(vcpu_fd);
	if (!ret && index == 0)
		ret = x86_vcpu_init_boot_state(vcpu_fd);
	return ret;
}

void x86_vcpu_format_state(char *buf, size_t len, const struct kvm_regs *r,
			   const struct kvm_sregs *s)
{
	/* KVM on AMD reinitializes the vCPU at a shutdown (its VMCB is undefined after one). */
	bool reset_state = r->rip == 0xfff0 && s->cs.selector == 0xf000;

	snprintf(buf, len,
		 "rip=%#llx rsp=%#llx rflags=%#llx cr0=%#llx cr2=%#llx cr3=%#llx cr4=%#llx "
		 "efer=%#llx cs=%#x ss=%#x fs.base=%#llx gs.base=%#llx idt=%#llx/%#x gdt=%#llx/%#x%s",
		 (unsigned long long)r->rip, (unsigned long long)r->rsp,
		 (unsigned long long)r->rflags, (unsigned long long)s->cr0,
		 (unsigned long long)s->cr2, (unsigned long long)s->cr3,
		 (unsigned long long)s->cr4, (unsigned long long)s->efer, s->cs.selector,
		 s->ss.selector, (unsigned long long)s->fs.base, (unsigned long long)s->gs.base,
		 (unsigned long long)s->idt.base, s->idt.limit, (unsigned long long)s->gdt.base,
		 s->gdt.limit, reset_state ? " (the reset state: KVM on AMD reinitializes the vCPU "
		 "at a triple fault, so the state at the fault is lost)" : "");
}

int arch_vcpu_dump(int vcpu_fd, char *buf, size_t len)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	x86_vcpu_format_state(buf, len, &regs, &sregs);
	return 0;
}

/* Local APIC registers (offsets in struct kvm_lapic_state's regs). */
#define APIC_TPR	0x80
#define APIC_PPR	0xa0
#define APIC_ISR	0x100
#define APIC_TMR	0x180
#define APIC_IRR	0x200

static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned int off)
{
	uint32_t v;

	memcpy(&v, &l->regs[off], sizeof(v));
	return v;
}

/* Appends the vectors set in the 256-bit register array at off ("0x22 0xec", or "none"). */
static size_t format_vectors(char *buf, size_t len, const struct kvm_lapic_state *l,
			     unsigned int off)
{
	size_t n = 0;

	for (unsigned int v = 0; v < 256; v++) {
		if (!(lapic_reg(l, off + (v / 32) * 0x10) & (1u << (v % 32))))
			continue;
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%#x", n ? " " : "", v);
	}
	if (!n && len)
		n = (size_t)snprintf(buf, len, "none");
	return n;
}

static const char *mp_state_name(uint32_t s)
{
	switch (s) {
	case KVM_MP_STATE_RUNNABLE:
		return "runnable";
	case KVM_MP_STATE_UNINITIALIZED:
		return "waiting for INIT";
	case KVM_MP_STATE_INIT_RECEIVED:
		return "waiting for SIPI";
	case KVM_MP_STATE_HALTED:
		return "halted";
	default:
		return "in another run state";
	}
}

void x86_format_irq_state(char *buf, size_t len, uint64_t rflags, uint32_t mp_state,
			  const struct kvm_lapic_state *lapic, const struct kvm_vcpu_events *ev)
{
	char isr[128], irr[128], tmr[128], inj[96];

	format_vectors(isr, sizeof(isr), lapic, APIC_ISR);
	format_vectors(irr, sizeof(irr), lapic, APIC_IRR);
	format_vectors(tmr, sizeof(tmr), lapic, APIC_TMR);
	if (ev->interrupt.injected)
		snprintf(inj, sizeof(inj), "interrupt %#x", ev->interrupt.nr);
	else if (ev->nmi.injected || ev->nmi.pending)
		snprintf(inj, sizeof(inj), "an NMI");
	else if (ev->exception.injected)
		snprintf(inj, sizeof(inj), "exception %u", ev->exception.nr);
	else
		snprintf(inj, sizeof(inj), "nothing");
	snprintf(buf, len,
		 "interrupts %s (IF=%u)%s, %s; local APIC TPR %#x, PPR %#x, in service: %s; "
		 "requested: %s; level-triggered: %s; KVM injecting: %s",
		 rflags & (1u << 9) ? "enabled" : "disabled", (unsigned int)(rflags >> 9) & 1,
		 ev->interrupt.shadow ? " in an interrupt shadow" : "", mp_state_name(mp_state),
		 lapic_reg(lapic, APIC_TPR) & 0xff, lapic_reg(lapic, APIC_PPR) & 0xff, isr, irr,
		 tmr, inj);
}

void x86_format_ioapic_pin(char *buf, size_t len, const struct kvm_ioapic_state *io,
			   unsigned int pin)
{
	const __typeof__(io->redirtbl[0].fields) *f = &io->redirtbl[pin].fields;

	snprintf(buf, len,
		 "IOAPIC pin %u: vector %#x, %s-triggered, active %s, %s, remote IRR %u, "
		 "line %s, destination %#x (%s)", pin, f->vector,
		 f->trig_mode ? "level" : "edge", f->polarity ? "low" : "high",
		 f->mask ? "MASKED" : "unmasked", f->remote_irr,
		 io->irr & (1u << pin) ? "asserted" : "not asserted", f->dest_id,
		 f->dest_mode ? "logical" : "physical");
}

int arch_vcpu_dump_irq(int vcpu_fd, char *buf, size_t len)
{
	struct kvm_regs regs;
	struct kvm_mp_state mp;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;

	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu_fd, KVM_GET_MP_STATE, &mp) < 0 ||
	    ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0 ||
	    ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	x86_format_irq_state(buf, len, regs.rflags, mp.mp_state, &lapic, &ev);
	return 0;
}

unsigned int x86_saved_msrs_max(void)
{
	return ARRAY_SIZE(saved_msrs);
}

unsigned int x86_saved_msrs(const uint32_t *kvm_list, unsigned int n, uint32_t *out)
{
	unsigned int count = 0;

	for (size_t i = 0; i < ARRAY_SIZE(saved_msrs); i++) {
		for (unsigned int j = 0; j < n; j++) {
			if (kvm_list[j] == saved_msrs[i]) {
				out[count++] = saved_msrs[i];
				break;
			}
		}
	}
	return count;
}

static size_t xsave_area(const struct arch_vm *avm)
{
	return ALIGN_UP(avm->xsave_size, (size_t)16);
}

size_t arch_vcpu_state_size(const struct arch_vm *avm)
{
	return sizeof(struct x86_vcpu_state) + xsave_area(avm) +
	       avm->nmsrs * sizeof(struct kvm_msr_entry);
}

/*
 * Reads (get) or writes the n MSRs of entries; one that KVM refuses is left
 * out (reads: dropped from entries; writes: reported) rather than ending the
 * batch. Returns how many remain in entries, or -errno.
 */
static int access_msrs(int fd, struct kvm_msr_entry *entries, unsigned int n, bool get)
{
	struct kvm_msrs *msrs = malloc(sizeof(*msrs) + n * sizeof(*entries));
	unsigned int done = 0, kept = 0;

	if (!msrs)
		return -ENOMEM;
	while (done < n) {
		int r;

		msrs->nmsrs = n - done;
		msrs->pad = 0;
		memcpy(msrs->entries, entries + done, (n - done) * sizeof(*entries));
		r = ioctl(fd, get ? KVM_GET_MSRS : KVM_SET_MSRS, msrs);
		if (r < 0) {
			r = -errno;
			free(msrs);
			return r;
		}
		if (get)
			memcpy(entries + kept, msrs->entries, (size_t)r * sizeof(*entries));
		kept += (unsigned int)r;
		done += (unsigned int)r;
		if (done < n) {
			if (!get)
				log_warn("KVM refused the saved value %#llx of MSR %#x; left as "
					 "it was", (unsigned long long)entries[done].data,
					 entries[done].index);
			done++;	/* skip the one KVM refused */
		}
	}
	free(msrs);
	return (int)kept;
}

static int vcpu_get(const struct arch_vm *avm, int fd, struct x86_vcpu_state *s)
{
	void *xsave = (uint8_t *)s + sizeof(*s);
	struct kvm_msr_entry *msrs = (void *)((uint8_t *)xsave + xsave_area(avm));
	int n;

	s->magic = X86_VCPU_STATE_MAGIC;
	s->version = X86_VCPU_STATE_VERSION;
	s->xsave_size = (uint32_t)avm->xsave_size;
	/*
	 * The events before the registers: without KVM_CAP_EXCEPTION_PAYLOAD, reading them
	 * delivers a pending exception's payload into CR2 or DR6, which the registers read
	 * next must include. The MP state first: reading it takes a pending INIT or SIPI.
	 */
	if (ioctl(fd, KVM_GET_MP_STATE, &s->mp) < 0 ||
	    ioctl(fd, KVM_GET_VCPU_EVENTS, &s->events) < 0 ||
	    ioctl(fd, KVM_GET_REGS, &s->regs) < 0 || ioctl(fd, KVM_GET_SREGS, &s->sregs) < 0 ||
	    ioctl(fd, KVM_GET_LAPIC, &s->lapic) < 0 ||
	    ioctl(fd, KVM_GET_DEBUGREGS, &s->debugregs) < 0)
		return -errno;
	if (avm->xsave_size) {
		unsigned long req = avm->xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 :
										 KVM_GET_XSAVE;

		if (ioctl(fd, req, xsave) < 0 || ioctl(fd, KVM_GET_XCRS, &s->xcrs) < 0)
			return -errno;
	} else if (ioctl(fd, KVM_GET_FPU, &s->fpu) < 0) {
		return -errno;
	}
	for (unsigned int i = 0; i < avm->nmsrs; i++)
		msrs[i] = (struct kvm_msr_entry){ .index = avm->msrs[i] };
	n = access_msrs(fd, msrs, avm->nmsrs, true);
	if (n < 0)
		return n;
	s->nmsrs = (uint32_t)n;
	return 0;
}

ssize_t arch_vcpu_save(const struct arch_vm *avm, int vcpu_fd, void *buf, size_t len)
{
	size_t size = arch_vcpu_state_size(avm), used;
	struct x86_vcpu_state *s;
	int ret;

	if (len < size)
		return -ENOSPC;
	s = calloc(1, size);
	if (!s)
		return -ENOMEM;
	ret = vcpu_get(avm, vcpu_fd, s);
	used = sizeof(*s) + xsave_area(avm) + s->nmsrs * sizeof(struct kvm_msr_entry);
	if (!ret)
		memcpy(buf, s, used);
	free(s);
	return ret ? ret : (ssize_t)used;
}

/* Restores in KVM's dependency order: CPU registers, then the LAPIC, MSRs and pending events. */
static int vcpu_put(const struct arch_vm *avm, int fd, struct x86_vcpu_state *s)
{
	void *xsave = (uint8_t *)s + sizeof(*s);
	struct kvm_msr_entry *msrs = (void *)((uint8_t *)xsave + xsave_area(avm));
	int n;

	if (ioctl(fd, KVM_SET_REGS, &s->regs) < 0)
		return -errno;
	if (avm->xsave_size) {
		if (ioctl(fd, KVM_SET_XSAVE, xsave) < 0 || ioctl(fd, KVM_SET_XCRS, &s->xcrs) < 0)
			return -errno;
	} else if (ioctl(fd, KVM_SET_FPU, &s->fpu) < 0) {
		return -errno;
	}
	if (ioctl(fd, KVM_SET_SREGS, &s->sregs) < 0 || ioctl(fd, KVM_SET_LAPIC, &s->lapic) < 0)
		return -errno;
	n = access_msrs(fd, msrs, s->nmsrs, false);
	if (n < 0)
		return n;
	s->events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (ioctl(fd, KVM_SET_MP_STATE, &s->mp) < 0 ||
	    ioctl(fd, KVM_SET_VCPU_EVENTS, &s->events) < 0 ||
	    ioctl(fd, KVM_SET_DEBUGREGS, &s->debugregs) < 0)
		return -errno;
	return 0;
}

int arch_vcpu_restore(const struct arch_vm *avm, int vcpu_fd, const void *buf, size_t len)
{
	struct x86_vcpu_state *s;
	int ret;

	if (len < sizeof(*s) + xsave_area(avm) || len > arch_vcpu_state_size(avm))
		return -EINVAL;
	s = malloc(arch_vcpu_state_size(avm));
	if (!s)
		return -ENOMEM;
	memcpy(s, buf, len);
	if (s->magic != X86_VCPU_STATE_MAGIC || s->version != X86_VCPU_STATE_VERSION ||
	    s->xsave_size != avm->xsave_size ||
	    len != sizeof(*s) + xsave_area(avm) + s->nmsrs * sizeof(struct kvm_msr_entry))
		ret = -EINVAL;
	else
		ret = vcpu_put(avm, vcpu_fd, s);
	free(s);
	return ret;
}

int arch_vcpu_resumed(int vcpu_fd)
{
	/* EINVAL: the guest has not enabled kvmclock on this vCPU. */
	return ioctl(vcpu_fd, KVM_KVMCLOCK_CTRL, 0) < 0 ? -errno : 0;
}
