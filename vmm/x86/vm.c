// SPDX-License-Identifier: GPL-2.0-only
/* The x86 parts of a KVM VM: TSS, identity map, irqchip, PIT, CPUID; the VM's saved state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "firmware/x86_layout.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"
#include "vmm/x86/vcpu.h"
#include "vmm/x86/x86.h"

#define X86_VM_STATE_MAGIC	0x53564d58	/* "XMVS" */
#define X86_VM_STATE_VERSION	1

/* The VM's saved state: the PICs and the IOAPIC, the PIT, kvmclock. */
struct x86_vm_state {
	uint32_t magic, version;
	struct kvm_irqchip chips[3];	/* KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

static int check_caps(int kvm_fd)
{
	static const struct { int cap; const char *name; } required[] = {
		{ KVM_CAP_IRQCHIP, "an in-kernel irqchip" },
		{ KVM_CAP_PIT2, "an in-kernel PIT" },
		{ KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID" },
		{ KVM_CAP_SET_TSS_ADDR, "KVM_SET_TSS_ADDR" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(required); i++) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
			log_error("KVM on this host lacks %s — use a Linux 4.11 or newer host kernel",
				  required[i].name);
			return -ENODEV;
		}
	}
	return 0;
}

static int get_supported_cpuid(struct arch_vm *avm)
{
	for (unsigned int nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(avm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			avm->cpuid = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return -errno;
	}
	return -E2BIG;
}

/* KVM's MSR list (KVM_GET_MSR_INDEX_LIST) filtered to the ones a vCPU's saved state holds. */
static int get_saved_msrs(struct arch_vm *avm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	int ret = 0;

	if (ioctl(avm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
	avm->msrs = calloc(x86_saved_msrs_max(), sizeof(avm->msrs[0]));
	if (!list || !avm->msrs) {
		free(list);
		return -ENOMEM;
	}
	list->nmsrs = probe.nmsrs;
	if (ioctl(avm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
		ret = -errno;
	else
		avm->nmsrs = x86_saved_msrs(list->indices, list->nmsrs, avm->msrs);
	free(list);
	return ret;
}

static int setup(struct arch_vm *avm)
{
	struct kvm_pit_config pit = { .flags = 0 };
	uint64_t identity_map = X86_IDENTITY_MAP_GPA;
	int ret = check_caps(avm->kvm_fd), xsave2;

	if (ret)
		return ret;
	if (ioctl(avm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_TSS_GPA) < 0 ||
	    ioctl(avm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity_map) < 0 ||
	    ioctl(avm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(avm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		log_error("cannot set up the VM's interrupt controllers and timers: %s",
			  strerror(-ret));
		return ret;
	}
	ret = get_supported_cpuid(avm);
	if (ret) {
		log_error("cannot read KVM's supported CPUID: %s", strerror(-ret));
		return ret;
	}
	ret = get_saved_msrs(avm);
	if (ret) {
		log_error("cannot read KVM's list of MSRs: %s", strerror(-ret));
		return ret;
	}
	/* The XSAVE area: KVM_CAP_XSAVE2 gives its size on the VM (4096 unless AMX is enabled). */
	xsave2 = ioctl(avm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (xsave2 > 0)
		avm->xsave_size = (size_t)MAX(xsave2, (int)sizeof(struct kvm_xsave));
	else if (ioctl(avm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0)
		avm->xsave_size = sizeof(struct kvm_xsave);
	return 0;
}

const char *arch_name(void)
{
	return "x86_64";
}

int arch_vm_create(struct arch_vm **out, int kvm_fd, int vm_fd, unsigned int ncpus)
{
	struct arch_vm *avm = calloc(1, sizeof(*avm));
	int ret;

	*out = NULL;
	if (!avm) {
		log_error("cannot allocate the VM's x86 state");
		return -ENOMEM;
	}
	avm->kvm_fd = kvm_fd;
	avm->vm_fd = vm_fd;
	avm->ncpus = ncpus;
	ret = setup(avm);
	if (ret) {
		arch_vm_destroy(avm);
		return ret;
	}
	*out = avm;
	return 0;
}

void arch_vm_destroy(struct arch_vm *avm)
{
	if (!avm)
		return;
	free(avm->cpuid);
	free(avm->msrs);
	free(avm);
}

size_t arch_vm_state_size(const struct arch_vm *avm)
{
	(void)avm;
	return sizeof(struct x86_vm_state);
}

ssize_t arch_vm_save(const struct arch_vm *avm, void *buf, size_t len)
{
	struct x86_vm_state *s;

	if (len < sizeof(*s))
		return -ENOSPC;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->magic = X86_VM_STATE_MAGIC;
	s->version = X86_VM_STATE_VERSION;
	for (unsigned int i = 0; i < ARRAY_SIZE(s->chips); i++) {
		s->chips[i].chip_id = i;
		if (ioctl(avm->vm_fd, KVM_GET_IRQCHIP, &s->chips[i]) < 0)
			goto fail;
	}
	if (ioctl(avm->vm_fd, KVM_GET_PIT2, &s->pit) < 0 ||
	    ioctl(avm->vm_fd, KVM_GET_CLOCK, &s->clock) < 0)
		goto fail;
	/* A paused VM's clock is the value frozen at the pause (arch_vm_pause). */
	if (avm->clock_frozen)
		s->clock.clock = avm->paused_clock.clock;
	memcpy(buf, s, sizeof(*s));
	free(s);
	return (ssize_t)sizeof(*s);
fail:
	free(s);
	return -errno;
}

int arch_vm_restore(struct arch_vm *avm, const void *buf, size_t len)
{
	struct x86_vm_state *s;
	int ret = 0;

	if (len != sizeof(*s))
		return -EINVAL;
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	memcpy(s, buf, sizeof(*s));
	if (s->magic != X86_VM_STATE_MAGIC || s->version != X86_VM_STATE_VERSION) {
		free(s);
		return -EINVAL;
	}
	/* The clock resumes from the saved value (KVM_CLOCK_REALTIME would add the time away). */
	s->clock.flags = 0;
	for (unsigned int i = 0; !ret && i < ARRAY_SIZE(s->chips); i++)
		if (ioctl(avm->vm_fd, KVM_SET_IRQCHIP, &s->chips[i]) < 0)
			ret = -errno;
	if (!ret && ioctl(avm->vm_fd, KVM_SET_PIT2, &s->pit) < 0)
		ret = -errno;
	if (!ret && ioctl(avm->vm_fd, KVM_SET_CLOCK, &s->clock) < 0)
		ret = -errno;
	free(s);
	return ret;
}

int arch_vm_pause(struct arch_vm *avm)
{
	memset(&avm->paused_clock, 0, sizeof(avm->paused_clock));
	avm->clock_frozen = false;
	if (ioctl(avm->vm_fd, KVM_GET_CLOCK, &avm->paused_clock) < 0)
		return -errno;
	avm->clock_frozen = true;
	return 0;
}

int arch_vm_resume(struct arch_vm *avm)
{
	struct kvm_clock_data clock;

	if (!avm->clock_frozen)
		return 0;
	avm->clock_frozen = false;
	/* flags 0: the clock resumes where it stopped (as QEMU and Cloud Hypervisor do). */
	clock = (struct kvm_clock_data){ .clock = avm->paused_clock.clock };
	return ioctl(avm->vm_fd, KVM_SET_CLOCK, &clock) < 0 ? -errno : 0;
}

int arch_vm_dump_irq_line(int vm_fd, uint32_t gsi, char *buf, size_t len)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };

	if (gsi >= KVM_IOAPIC_NUM_PINS)
		return -ERANGE;
	if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
		return -errno;
	x86_format_ioapic_pin(buf, len, &chip.chip.ioapic, gsi);
	return 0;
}
