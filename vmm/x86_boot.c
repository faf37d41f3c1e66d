// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "firmware/x86_layout.h"
#include "vmm/base/util.h"
#include "vmm/vm.h"
#include "vmm/x86_boot.h"

/* Segment selectors the boot protocol asks for: __BOOT_CS and __BOOT_DS. */
#define BOOT_CS		0x10
#define BOOT_DS		0x18
#define BOOT_TSS	0x20

#define X86_CR0_PE	(1ULL << 0)
#define X86_CR0_ET	(1ULL << 4)
#define X86_CR0_PG	(1ULL << 31)
#define X86_CR4_PAE	(1ULL << 5)
#define EFER_LME	(1ULL << 8)
#define EFER_LMA	(1ULL << 10)

#define PTE_PRESENT	(1ULL << 0)
#define PTE_RW		(1ULL << 1)
#define PTE_PS		(1ULL << 7)

#define MSR_IA32_MISC_ENABLE		0x1a0
#define MSR_IA32_MISC_ENABLE_FAST_STRING 1ULL

#define APIC_LVT0	0x350
#define APIC_LVT1	0x360
#define APIC_MODE_NMI	0x4
#define APIC_MODE_EXTINT 0x7

/* A GDT entry from flags (access byte | flags nibble << 12), base and limit. */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000) << 32) | ((uint64_t)(flags & 0xf0ff) << 40) |
	       ((uint64_t)(limit & 0x000f0000) << 32) | ((uint64_t)(base & 0x00ffffff) << 16) |
	       (uint64_t)(limit & 0x0000ffff);
}

static int write_page_tables(const struct guest_mem *mem)
{
	uint64_t *pml4 = guest_mem_ptr(mem, X86_PML4_GPA, 4096);
	uint64_t *pdpt = guest_mem_ptr(mem, X86_PDPT_GPA, 4096);
	uint64_t *pd = guest_mem_ptr(mem, X86_PD_GPA, 4 * 4096);

	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	/* Identity-map the first 4 GiB with 2 MiB pages; the kernel builds its own tables. */
	pml4[0] = X86_PDPT_GPA | PTE_PRESENT | PTE_RW;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (X86_PD_GPA + i * 4096) | PTE_PRESENT | PTE_RW;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PTE_PRESENT | PTE_RW | PTE_PS;
	return 0;
}

static int write_gdt(const struct guest_mem *mem)
{
	const uint64_t gdt[] = {
		[0] = 0,
		[1] = 0,
		[BOOT_CS / 8] = gdt_entry(0xa09b, 0, 0xfffff),	/* 64-bit code */
		[BOOT_DS / 8] = gdt_entry(0xc093, 0, 0xfffff),	/* data */
		[BOOT_TSS / 8] = gdt_entry(0x808b, 0, 0xfffff),	/* busy TSS */
	};

	return guest_mem_write(mem, X86_GDT_GPA, gdt, sizeof(gdt));
}

/* The code at the reset vector: write the ACPI reset value to the reset register, then halt. */
static int write_reset_vector(const struct guest_mem *mem)
{
	const uint8_t code[] = {
		0xb0, X86_ACPI_RESET_VALUE,				/* mov al, value */
		0xba, X86_ACPI_RESET_PORT & 0xff, X86_ACPI_RESET_PORT >> 8,	/* mov dx, port */
		0xee,							/* out dx, al */
		0xf4,							/* 1: hlt */
		0xeb, 0xfd,						/* jmp 1b */
	};

	return guest_mem_write(mem, X86_RESET_VECTOR_GPA, code, sizeof(code));
}

/* Reads size bytes at file offset off straight into guest RAM at gpa. */
static int read_file_to_guest(const struct guest_mem *mem, int fd, uint64_t off, uint64_t size,
			      uint64_t gpa)
{
	uint8_t *dst = guest_mem_ptr(mem, gpa, size);
	uint64_t done = 0;

	if (!dst)
		return -EFAULT;
	while (done < size) {
		ssize_t n = pread(fd, dst + done, size - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (uint64_t)n;
	}
	return 0;
}

int x86_boot_load(const struct guest_mem *mem, const struct boot_image *img,
		  const struct bzimage_info *info, const struct boot_layout *layout,
		  const char *cmdline)
{
	struct boot_params *bp;
	unsigned int nram = mem->nregions;
	struct guest_mem_range ram[GUEST_MEM_MAX_REGIONS];
	int ret;

	for (unsigned int i = 0; i < nram; i++)
		ram[i] = (struct guest_mem_range){ mem->regions[i].gpa, mem->regions[i].size };

	ret = write_page_tables(mem);
	if (!ret)
		ret = write_gdt(mem);
	if (!ret)
		ret = write_reset_vector(mem);
	if (!ret)
		ret = read_file_to_guest(mem, img->kernel_fd, info->setup_size, info->kernel_size,
					 layout->kernel_gpa);
	if (!ret)
		ret = guest_mem_write(mem, layout->cmdline_gpa, cmdline, strlen(cmdline) + 1);
	if (!ret && img->initrd_size)
		ret = read_file_to_guest(mem, img->initrd_fd, 0, img->initrd_size, layout->initrd_gpa);
	if (ret)
		return ret;

	bp = guest_mem_ptr(mem, X86_BOOT_PARAMS_GPA, sizeof(*bp));
	if (!bp)
		return -EFAULT;
	return boot_params_build(bp, img->setup, info, layout, ram, nram);
}

static void set_segment(struct kvm_segment *seg, uint16_t selector, uint8_t type, bool code)
{
	*seg = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = selector,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code ? 0 : 1,
		.s = 1,
		.l = code ? 1 : 0,
		.g = 1,
	};
}

int x86_vcpu_init_boot_state(int fd)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_fpu fpu;
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[1];
	} msrs;

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	set_segment(&sregs.cs, BOOT_CS, 0xb, true);
	set_segment(&sregs.ds, BOOT_DS, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){
		.base = 0, .limit = 0xfffff, .selector = BOOT_TSS, .type = 0xb,
		.present = 1, .s = 0, .g = 1,
	};
	sregs.gdt.base = X86_GDT_GPA;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.idt.base = X86_IDT_GPA;
	sregs.idt.limit = 0;	/* no IDT until the kernel sets one */
	sregs.cr3 = X86_PML4_GPA;
	sregs.cr4 |= X86_CR4_PAE;
	sregs.cr0 |= X86_CR0_PE | X86_CR0_PG | X86_CR0_ET;
	sregs.efer |= EFER_LME | EFER_LMA;
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = X86_HIMEM_GPA + 0x200;	/* 64-bit entry: startup_64 */
	regs.rsi = X86_BOOT_PARAMS_GPA;
	regs.rsp = X86_BOOT_STACK_GPA;
	regs.rbp = X86_BOOT_STACK_GPA;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;

	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = 1;
	msrs.entries[0].index = MSR_IA32_MISC_ENABLE;
	msrs.entries[0].data = MSR_IA32_MISC_ENABLE_FAST_STRING;
	if (ioctl(fd, KVM_SET_MSRS, &msrs) < 0)
		return -errno;
	return 0;
}

static void lapic_set_lvt_mode(struct kvm_lapic_state *lapic, unsigned int reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, &lapic->regs[reg], sizeof(v));
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&lapic->regs[reg], &v, sizeof(v));
}

int x86_vcpu_init_lapic(int fd)
{
	struct kvm_lapic_state lapic;

	if (ioctl(fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	lapic_set_lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
	lapic_set_lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
	return ioctl(fd, KVM_SET_LAPIC, &lapic) < 0 ? -errno : 0;
}
