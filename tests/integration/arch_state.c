// SPDX-License-Identifier: GPL-2.0-only
/*
 * Saved arch state on real KVM (the arch_*_save/restore hooks of vmm/arch.h):
 * a guest sets registers, an XMM register, an MSR, the PIT and an IOAPIC
 * route, then stops at a port write. Its VM and vCPU state are saved and
 * restored into a second VM with a copy of its RAM; the second vCPU must read
 * back the same state (through KVM, not through the blobs) and, run on, compute
 * what the first computes. Exit 0: pass, 1: fail, 77: skipped (no usable
 * /dev/kvm). Run it through scripts/with-kvm like the other integration tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "firmware/x86_layout.h"
#include "vmm/arch.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/util.h"

#define RAM_SIZE	(4 * MIB)
#define CODE_GPA	(X86_HIMEM_GPA + 0x200)	/* where the boot CPU starts (64-bit entry) */
#define EXIT_PORT	0x99
#define RAX_VALUE	0x1122334455667788ULL
#define RBX_VALUE	0x0102030405060708ULL
#define LSTAR_VALUE	0xffffffff81234560ULL
#define MSR_IA32_TSC	0x10
#define MSR_LSTAR	0xc0000082
#define X86_CR4_OSFXSR	(1ULL << 9)
#define PIT_COUNT	0x2e9c
#define IOAPIC_ROUTE0	0x00010030u	/* masked, vector 0x30 */
#define XMM1_VALUE	"vmm arch state!"	/* 16 bytes with the NUL */
#define XSAVE_XMM1	176		/* byte offsets in the XSAVE area */
#define XSAVE_XSTATE_BV	512
#define XFEATURE_SSE	(1u << 1)

/* 64-bit code: set registers, XMM0, LSTAR, PIT channel 0 and IOAPIC pin 0; exit; add; exit. */
static const uint8_t guest_code[] = {
	0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,	/* mov rax, RAX_VALUE */
	0x48, 0xbb, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,	/* mov rbx, RBX_VALUE */
	0x66, 0x48, 0x0f, 0x6e, 0xc0,					/* movq xmm0, rax */
	0xb9, 0x82, 0x00, 0x00, 0xc0,					/* mov ecx, MSR_LSTAR */
	0xb8, 0x60, 0x45, 0x23, 0x81,					/* mov eax, lo */
	0xba, 0xff, 0xff, 0xff, 0xff,					/* mov edx, hi */
	0x0f, 0x30,							/* wrmsr */
	0xb0, 0x34, 0xe6, 0x43,			/* PIT: channel 0, lo/hi, rate generator */
	0xb0, 0x9c, 0xe6, 0x40,			/* count low */
	0xb0, 0x2e, 0xe6, 0x40,			/* count high */
	0xb8, 0x00, 0x00, 0xc0, 0xfe,					/* mov eax, IOAPIC */
	0xc7, 0x00, 0x10, 0x00, 0x00, 0x00,				/* IOREGSEL = pin 0 low */
	0xc7, 0x40, 0x10, 0x30, 0x00, 0x01, 0x00,			/* IOWIN = IOAPIC_ROUTE0 */
	0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,	/* mov rax, RAX_VALUE */
	0xe6, EXIT_PORT,						/* out: save here */
	0x48, 0x01, 0xd8,						/* add rax, rbx */
	0xe6, EXIT_PORT,						/* out: compare */
	0xf4, 0xeb, 0xfd,						/* hlt; jmp hlt */
};

struct machine {
	int vm_fd, vcpu_fd;
	struct kvm_run *run;
	struct arch_vm *arch;
	struct guest_mem mem;
};

static int kvm_fd = -1;
static size_t run_size;
static int failures;

static void __attribute__((format(printf, 2, 3))) check(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
		failures++;
}

static void die(const char *what)
{
	fprintf(stderr, "arch_state: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Identity-maps the first 4 GiB with 2 MiB pages where the boot CPU's CR3 points. */
static void write_page_tables(const struct guest_mem *mem)
{
	uint64_t *pml4 = guest_mem_ptr(mem, X86_PML4_GPA, 4096);
	uint64_t *pdpt = guest_mem_ptr(mem, X86_PDPT_GPA, 4096);
	uint64_t *pd = guest_mem_ptr(mem, X86_PD_GPA, 4 * 4096);

	pml4[0] = X86_PDPT_GPA | 3;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (X86_PD_GPA + i * 4096) | 3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83;
}

/* A VM with RAM and one vCPU set up by the arch hooks (boot CPU state, CPUID, LAPIC). */
static void machine_create(struct machine *m)
{
	struct guest_mem_range ranges[GUEST_MEM_MAX_REGIONS];
	unsigned int n = arch_ram_ranges(RAM_SIZE, ranges);

	memset(m, 0, sizeof(*m));
	m->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (m->vm_fd < 0)
		die("KVM_CREATE_VM");
	if (arch_vm_create(&m->arch, kvm_fd, m->vm_fd, 1))
		die("arch_vm_create");
	if (guest_mem_init(&m->mem, ranges, n, GUEST_MEM_ANON))
		die("guest_mem_init");
	for (unsigned int i = 0; i < m->mem.nregions; i++) {
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.guest_phys_addr = m->mem.regions[i].gpa,
			.memory_size = m->mem.regions[i].size,
			.userspace_addr = (uintptr_t)m->mem.regions[i].hva,
		};

		if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
			die("KVM_SET_USER_MEMORY_REGION");
	}
	m->vcpu_fd = ioctl(m->vm_fd, KVM_CREATE_VCPU, 0UL);
	if (m->vcpu_fd < 0)
		die("KVM_CREATE_VCPU");
	m->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu_fd, 0);
	if (m->run == MAP_FAILED)
		die("mmap kvm_run");
	if (arch_vcpu_init(m->arch, m->vcpu_fd, 0))
		die("arch_vcpu_init");
}

static void machine_destroy(struct machine *m)
{
	munmap(m->run, run_size);
	close(m->vcpu_fd);
	arch_vm_destroy(m->arch);
	close(m->vm_fd);
	guest_mem_destroy(&m->mem);
}

/* Runs to the next write to EXIT_PORT, then completes it as a stop does (immediate_exit). */
static int run_to_exit(struct machine *m, const char *who)
{
	for (int i = 0; i < 100; i++) {
		if (ioctl(m->vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			die("KVM_RUN");
		}
		if (m->run->exit_reason == KVM_EXIT_IO && m->run->io.port == EXIT_PORT) {
			m->run->immediate_exit = 1;
			if (ioctl(m->vcpu_fd, KVM_RUN, 0) == 0 || errno != EINTR)
				die("KVM_RUN with immediate_exit");
			m->run->immediate_exit = 0;
			return 0;
		}
		if (m->run->exit_reason != KVM_EXIT_IO) {
			struct kvm_regs r = { 0 };

			ioctl(m->vcpu_fd, KVM_GET_REGS, &r);
			/* kvm_pvm, for one, emulates guest code and cannot run its SSE move. */
			printf("FAIL: %s: unexpected exit %u (suberror %u, rip %#llx) — run this "
			       "on kvm_intel or kvm_amd\n", who, m->run->exit_reason,
			       m->run->internal.suberror, (unsigned long long)r.rip);
			failures++;
			return -1;
		}
	}
	printf("FAIL: %s: never reached port %#x\n", who, EXIT_PORT);
	failures++;
	return -1;
}

static uint64_t get_msr(int fd, uint32_t index)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + sizeof(m->entries[0]));
	uint64_t data;

	if (!m)
		die("malloc");
	m->nmsrs = 1;
	m->entries[0].index = index;
	if (ioctl(fd, KVM_GET_MSRS, m) != 1)
		die("KVM_GET_MSRS");
	data = m->entries[0].data;
	free(m);
	return data;
}

/* Reads both vCPUs and VMs through KVM and compares what the guest set. */
static void compare(struct machine *a, struct machine *b, uint64_t tsc_a, uint64_t clock_a)
{
	struct kvm_regs ra, rb;
	struct kvm_sregs sa, sb;
	struct kvm_fpu fa, fb;
	struct kvm_lapic_state la, lb;
	struct kvm_pit_state2 pa, pb;
	struct kvm_irqchip ia = { .chip_id = KVM_IRQCHIP_IOAPIC }, ib = ia;
	struct kvm_clock_data cb;
	struct kvm_mp_state ma, mb;
	long khz = ioctl(b->vcpu_fd, KVM_GET_TSC_KHZ, 0);
	uint64_t tsc_b = get_msr(b->vcpu_fd, MSR_IA32_TSC);

	if (ioctl(a->vcpu_fd, KVM_GET_REGS, &ra) < 0 || ioctl(b->vcpu_fd, KVM_GET_REGS, &rb) < 0 ||
	    ioctl(a->vcpu_fd, KVM_GET_SREGS, &sa) < 0 ||
	    ioctl(b->vcpu_fd, KVM_GET_SREGS, &sb) < 0 ||
	    ioctl(a->vcpu_fd, KVM_GET_FPU, &fa) < 0 || ioctl(b->vcpu_fd, KVM_GET_FPU, &fb) < 0 ||
	    ioctl(a->vcpu_fd, KVM_GET_LAPIC, &la) < 0 ||
	    ioctl(b->vcpu_fd, KVM_GET_LAPIC, &lb) < 0 ||
	    ioctl(a->vcpu_fd, KVM_GET_MP_STATE, &ma) < 0 ||
	    ioctl(b->vcpu_fd, KVM_GET_MP_STATE, &mb) < 0 ||
	    ioctl(a->vm_fd, KVM_GET_PIT2, &pa) < 0 || ioctl(b->vm_fd, KVM_GET_PIT2, &pb) < 0 ||
	    ioctl(a->vm_fd, KVM_GET_IRQCHIP, &ia) < 0 ||
	    ioctl(b->vm_fd, KVM_GET_IRQCHIP, &ib) < 0 ||
	    ioctl(b->vm_fd, KVM_GET_CLOCK, &cb) < 0)
		die("reading the state back");

	check(!memcmp(&ra, &rb, sizeof(ra)), "general registers (rip %#llx, rax %#llx)",
	      (unsigned long long)rb.rip, (unsigned long long)rb.rax);
	check(rb.rax == RAX_VALUE && rb.rbx == RBX_VALUE, "rax and rbx hold what the guest set");
	/* The interrupt bitmap is KVM's view of pending injections; compare the rest. */
	memset(sa.interrupt_bitmap, 0, sizeof(sa.interrupt_bitmap));
	memset(sb.interrupt_bitmap, 0, sizeof(sb.interrupt_bitmap));
	check(!memcmp(&sa, &sb, sizeof(sa)),
	      "segment and control registers (cr0 %#llx, efer %#llx)",
	      (unsigned long long)sb.cr0, (unsigned long long)sb.efer);
	check(!memcmp(fb.xmm[1], XMM1_VALUE, 16), "XMM1, set by the host");
	check(!memcmp(fb.xmm[0], &(uint64_t){ RAX_VALUE }, 8) && !memcmp(fa.xmm, fb.xmm,
	      sizeof(fa.xmm)), "XMM0, set by the guest, and the other XMM registers");
	check(get_msr(b->vcpu_fd, MSR_LSTAR) == LSTAR_VALUE, "LSTAR is what the guest wrote");
	check(khz > 0 && tsc_b >= tsc_a && tsc_b - tsc_a < (uint64_t)khz * 1000 * 10,
	      "the TSC continues from the saved value (%llu -> %llu)", (unsigned long long)tsc_a,
	      (unsigned long long)tsc_b);
	check(cb.clock >= clock_a && cb.clock - clock_a < 10ULL * 1000000000,
	      "kvmclock continues from the saved value (%llu -> %llu ns)",
	      (unsigned long long)clock_a, (unsigned long long)cb.clock);
	check(!memcmp(la.regs, lb.regs, 0x390) && !memcmp(la.regs + 0x3a0, lb.regs + 0x3a0,
	      sizeof(la.regs) - 0x3a0), "LAPIC registers (but the timer's current count)");
	check(ma.mp_state == mb.mp_state, "MP state %u", mb.mp_state);
	check(pb.channels[0].count == PIT_COUNT && pa.channels[0].count == pb.channels[0].count &&
	      pa.channels[0].mode == pb.channels[0].mode, "PIT channel 0 (count %#x, mode %u)",
	      pb.channels[0].count, pb.channels[0].mode);
	check((uint32_t)ib.chip.ioapic.redirtbl[0].bits == IOAPIC_ROUTE0 &&
	      !memcmp(&ia.chip.ioapic, &ib.chip.ioapic, sizeof(ia.chip.ioapic)),
	      "IOAPIC routes (pin 0 %#x)", (uint32_t)ib.chip.ioapic.redirtbl[0].bits);
}

/* Saves a's state, restores it into a second machine, compares, and runs both on. */
static void save_and_restore(struct machine *a)
{
	void *vcpu_blob = malloc(arch_vcpu_state_size(a->arch));
	void *vm_blob = malloc(arch_vm_state_size(a->arch));
	struct kvm_clock_data clock_a;
	ssize_t vcpu_len, vm_len;
	struct machine b;
	uint64_t tsc_a;

	if (!vcpu_blob || !vm_blob)
		die("malloc");
	/* Read before the save: lower bounds of what the blobs hold (the clocks run on). */
	tsc_a = get_msr(a->vcpu_fd, MSR_IA32_TSC);
	if (ioctl(a->vm_fd, KVM_GET_CLOCK, &clock_a) < 0)
		die("KVM_GET_CLOCK");
	vm_len = arch_vm_save(a->arch, vm_blob, arch_vm_state_size(a->arch));
	vcpu_len = arch_vcpu_save(a->arch, a->vcpu_fd, vcpu_blob, arch_vcpu_state_size(a->arch));
	check(vm_len > 0 && vcpu_len > 0, "saved: VM %zd bytes, vCPU %zd bytes", vm_len, vcpu_len);
	if (vm_len <= 0 || vcpu_len <= 0)
		goto out;

	/* The second VM: a copy of the RAM (as migration sends it), then the arch state. */
	machine_create(&b);
	memcpy(b.mem.base, a->mem.base, a->mem.size);
	check(arch_vcpu_restore(b.arch, b.vcpu_fd, vcpu_blob, 16) == -EINVAL,
	      "a cut vCPU blob is refused");
	/* vCPUs first: the VM's kvmclock is set after their TSCs (see vmm/arch.h). */
	check(arch_vcpu_restore(b.arch, b.vcpu_fd, vcpu_blob, (size_t)vcpu_len) == 0,
	      "vCPU state restored");
	check(arch_vm_restore(b.arch, vm_blob, (size_t)vm_len) == 0, "VM state restored");
	compare(a, &b, tsc_a, clock_a.clock);

	/* Both run on from the same point and must compute the same. */
	if (!run_to_exit(a, "the first VM") && !run_to_exit(&b, "the restored VM")) {
		struct kvm_regs ra, rb;

		if (ioctl(a->vcpu_fd, KVM_GET_REGS, &ra) < 0 ||
		    ioctl(b.vcpu_fd, KVM_GET_REGS, &rb) < 0)
			die("KVM_GET_REGS");
		check(rb.rax == RAX_VALUE + RBX_VALUE && ra.rax == rb.rax && ra.rip == rb.rip,
		      "run on, the restored vCPU computes what the first one does (rax %#llx)",
		      (unsigned long long)rb.rax);
	}
	machine_destroy(&b);
out:
	free(vcpu_blob);
	free(vm_blob);
}

int main(void)
{
	struct machine a;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	int ret;

	kvm_fd = open(getenv("VMM_KVM_DEVICE") ? getenv("VMM_KVM_DEVICE") : "/dev/kvm",
		      O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		printf("skip: cannot open /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	ret = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret <= 0)
		die("KVM_GET_VCPU_MMAP_SIZE");
	run_size = (size_t)ret;

	machine_create(&a);
	write_page_tables(&a.mem);
	if (guest_mem_write(&a.mem, CODE_GPA, guest_code, sizeof(guest_code)))
		die("writing the guest code");
	/* SSE for movq: the boot state leaves CR4.OSFXSR to the kernel. */
	if (ioctl(a.vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		die("KVM_GET_SREGS");
	sregs.cr4 |= X86_CR4_OSFXSR;
	if (ioctl(a.vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		die("KVM_SET_SREGS");
	/*
	 * XMM1 from the host, XMM0 from the guest. Through the XSAVE area with its SSE bit
	 * set: KVM_SET_FPU leaves XSTATE_BV alone, so an XRSTOR would drop what it set.
	 */
	if (ioctl(a.vcpu_fd, KVM_GET_XSAVE, &xsave) < 0)
		die("KVM_GET_XSAVE");
	memcpy((uint8_t *)xsave.region + XSAVE_XMM1, XMM1_VALUE, 16);
	((uint8_t *)xsave.region)[XSAVE_XSTATE_BV] |= XFEATURE_SSE;
	if (ioctl(a.vcpu_fd, KVM_SET_XSAVE, &xsave) < 0)
		die("KVM_SET_XSAVE");
	if (!run_to_exit(&a, "the first VM"))
		save_and_restore(&a);
	machine_destroy(&a);
	close(kvm_fd);
	printf("%s\n", failures ? "arch_state: FAILED" : "arch_state: passed");
	return failures ? 1 : 0;
}
