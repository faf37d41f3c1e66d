// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "firmware/x86_layout.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"
#include "vmm/x86/boot.h"

/* The setup code is at most 1 + 255 sectors; the header fits in the first of them. */
#define BZIMAGE_SETUP_MAX (256 * 512)

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

static int open_boot_file(const char *what, const char *path, int *fd, uint64_t *size)
{
	struct stat st;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		int err = errno;

		log_error("cannot open the %s %s: %s — check the path and its permissions",
			  what, path, strerror(err));
		return -err;
	}
	if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("the %s %s is not a regular file — give the path of %s", what, path,
			  strcmp(what, "kernel") ? "an initramfs image" : "a bzImage file");
		return -EINVAL;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

static int boot_open(struct arch_boot *img, const char *kernel, const char *initrd,
		     const char *cmdline)
{
	uint64_t kernel_size;
	const char *why;
	ssize_t n;
	int ret;

	ret = open_boot_file("kernel", kernel, &img->kernel_fd, &kernel_size);
	if (ret)
		return ret;
	img->setup_len = (size_t)MIN(kernel_size, BZIMAGE_SETUP_MAX);
	img->setup = malloc(img->setup_len ? img->setup_len : 1);
	if (!img->setup) {
		log_error("cannot allocate memory for the kernel header");
		return -ENOMEM;
	}
	n = pread(img->kernel_fd, img->setup, img->setup_len, 0);
	if (n != (ssize_t)img->setup_len) {
		log_error("cannot read the kernel %s: %s", kernel,
			  n < 0 ? strerror(errno) : "short read");
		return -EIO;
	}
	if (bzimage_parse(img->setup, kernel_size, &img->info, &why)) {
		log_error("the kernel %s cannot be booted: %s — give a bzImage such as /boot/vmlinuz-*",
			  kernel, why);
		return -EINVAL;
	}
	if (strlen(cmdline) > arch_boot_cmdline_max(img)) {
		log_error("the kernel command line is %zu bytes; this kernel accepts at most %zu — shorten --cmdline",
			  strlen(cmdline), arch_boot_cmdline_max(img));
		return -E2BIG;
	}
	if (!initrd)
		return 0;
	return open_boot_file("initrd", initrd, &img->initrd_fd, &img->initrd_size);
}

int arch_boot_open(struct arch_boot **out, const char *kernel, const char *initrd,
		   const char *cmdline)
{
	struct arch_boot *img = calloc(1, sizeof(*img));
	int ret;

	*out = NULL;
	if (!img) {
		log_error("cannot allocate memory for the boot image");
		return -ENOMEM;
	}
	img->kernel_fd = img->initrd_fd = -1;
	ret = boot_open(img, kernel, initrd, cmdline);
	if (ret) {
		arch_boot_free(img);
		return ret;
	}
	*out = img;
	return 0;
}

void arch_boot_free(struct arch_boot *img)
{
	if (!img)
		return;
	free(img->setup);
	if (img->kernel_fd >= 0)
		close(img->kernel_fd);
	if (img->initrd_fd >= 0)
		close(img->initrd_fd);
	free(img);
}

size_t arch_boot_cmdline_max(const struct arch_boot *img)
{
	return MIN((size_t)img->info.cmdline_size, (size_t)X86_CMDLINE_MAX - 1);
}

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

int x86_boot_load(const struct guest_mem *mem, const struct arch_boot *img,
		  const struct boot_layout *layout, const char *cmdline)
{
	const struct bzimage_info *info = &img->info;
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

int arch_load_guest(const struct arch_boot *img, const struct guest_mem *mem, const char *cmdline)
{
	struct guest_mem_range ram[GUEST_MEM_MAX_REGIONS];
	struct boot_layout layout;
	uint64_t needed;
	char have[32], need[32];
	int ret;

	for (unsigned int i = 0; i < mem->nregions; i++)
		ram[i] = (struct guest_mem_range){ mem->regions[i].gpa, mem->regions[i].size };
	if (boot_layout_plan(&img->info, ram, mem->nregions, img->initrd_size, &layout, &needed)) {
		log_error("the kernel and initrd do not fit in %s of guest memory (about %s needed "
			  "below 3 GiB) — give more --memory or a smaller initrd",
			  format_size(mem->size, have, sizeof(have)),
			  format_size(ALIGN_UP(needed, MIB), need, sizeof(need)));
		return -ENOSPC;
	}
	ret = x86_boot_load(mem, img, &layout, cmdline);
	if (ret) {
		log_error("cannot load the kernel and initrd into guest memory: %s", strerror(-ret));
		return ret;
	}
	return 0;
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
