/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The architecture hooks: all that the VM assembly (vm.c, vcpu.c, main.c) asks
 * of an architecture. One folder implements them (vmm/x86/; an arm64 port adds
 * vmm/arm64/ and picks it in meson.build). The hooks take plain data — file
 * descriptors, guest memory, buses, a neutral device list, callbacks — and
 * never struct vm, so an arch folder includes only vmm/base/, firmware/ and
 * this header.
 *
 * Errors: a hook that fails has already said what went wrong and what to do
 * (log_error) and returns -errno; the caller maps it to an exit status
 * (-ENOMEM is a resource error, the rest as each hook says).
 */
#ifndef VMM_ARCH_H
#define VMM_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/base/guest_mem.h"
#include "vmm/base/io_bus.h"

struct arch_vm;		/* the arch's part of a VM (x86: supported CPUID, MSR list) */
struct arch_boot;	/* a kernel (and initrd) opened and validated once, loaded at every boot */

/* The architecture's name as a migration stream records it (e.g. "x86_64"). */
const char *arch_name(void);

/* ---- The boot image ---- */

/*
 * Opens and validates the kernel and the initrd (NULL: none) and checks that
 * cmdline fits. 0; -E2BIG when the command line is too long; -ENOMEM; another
 * -errno when a file is missing, unreadable or not bootable.
 */
int arch_boot_open(struct arch_boot **out, const char *kernel, const char *initrd,
		   const char *cmdline);

/* Closes and frees what arch_boot_open() took; NULL is fine. */
void arch_boot_free(struct arch_boot *img);

/* The longest command line, in bytes without the NUL, that this kernel accepts. */
size_t arch_boot_cmdline_max(const struct arch_boot *img);

/* Loads kernel, initrd, cmdline and the boot data into RAM; 0, -ENOSPC (no room) or -errno. */
int arch_load_guest(const struct arch_boot *img, const struct guest_mem *mem, const char *cmdline);

/* ---- The VM ---- */

/* The guest RAM ranges for mem_size bytes (sorted, page-aligned); returns how many. */
unsigned int arch_ram_ranges(uint64_t mem_size, struct guest_mem_range out[GUEST_MEM_MAX_REGIONS]);

/*
 * Checks the arch's KVM capabilities and sets up the VM's arch parts on vm_fd
 * (x86: TSS, identity map, irqchip, PIT, supported CPUID). 0, -ENOMEM, or
 * -ENODEV/-errno when KVM lacks or refuses something. The fds stay the caller's.
 */
int arch_vm_create(struct arch_vm **out, int kvm_fd, int vm_fd, unsigned int ncpus);

/* Frees the VM's arch parts; NULL is fine. */
void arch_vm_destroy(struct arch_vm *avm);

/* ---- Platform devices and their description ---- */

/* Why a platform device stops the machine. */
enum arch_stop {
	ARCH_STOP_POWEROFF = 1,
	ARCH_STOP_RESET,
};

/* Called from a vCPU thread when the guest powers off or resets through a platform device. */
typedef void arch_stop_fn(void *opaque, enum arch_stop why);

/* Registers the platform devices (x86: ACPI PM/reset registers, i8042); 0 or -errno. */
int arch_platform_init(struct arch_vm *avm, struct io_bus *pio, struct io_bus *mmio,
		       arch_stop_fn *stop, void *opaque);

/* Where the platform's 16550 UART lives. */
struct arch_uart {
	bool pio;		/* on the port I/O bus; false: on the MMIO bus */
	uint64_t base;
	uint32_t irq;		/* its interrupt line (KVM_IRQ_LINE) */
};

/* The 16550 UART's place. */
struct arch_uart arch_uart_place(void);

/* How many virtio-mmio devices the platform has room for (address windows and interrupts). */
unsigned int arch_virtio_max(void);

/* Where virtio-mmio device n (0-based, below arch_virtio_max()) goes: its window and interrupt. */
void arch_virtio_place(unsigned int n, uint64_t *base, uint32_t *gsi);

/* A device the guest is told about, in terms every architecture shares. */
enum arch_device_kind {
	ARCH_DEVICE_VIRTIO_MMIO,
};

struct arch_device {
	enum arch_device_kind kind;
	uint64_t mmio_base, mmio_size;
	uint32_t gsi;
};

/*
 * Writes what the guest reads about the machine into RAM (x86: ACPI tables;
 * arm64: a device tree) from the vCPU count and the device list, so the
 * description always matches the devices. 0 or -errno.
 */
int arch_describe_platform(struct arch_vm *avm, const struct guest_mem *mem, unsigned int ncpus,
			   const struct arch_device *devs, size_t ndevs);

/* ---- vCPUs ---- */

/* Sets up vCPU index on vcpu_fd (x86: CPUID, LAPIC; the boot CPU's entry state); 0 or -errno. */
int arch_vcpu_init(struct arch_vm *avm, int vcpu_fd, unsigned int index);

/* Writes one line of the vCPU's state for a crash report into buf; 0 or -errno. */
int arch_vcpu_dump(int vcpu_fd, char *buf, size_t len);

/*
 * For a guest that seems stuck (SIGUSR2), on a vCPU held out of KVM_RUN: writes
 * one line of what decides whether it takes an interrupt (x86: RFLAGS.IF, halted
 * or not, the local APIC's priorities and its vectors in service and requested,
 * what KVM is about to inject); 0 or -errno.
 */
int arch_vcpu_dump_irq(int vcpu_fd, char *buf, size_t len);

/*
 * Writes one line on interrupt line gsi as the VM's interrupt controller has it
 * (x86: its IOAPIC pin: vector, trigger, masked or not, remote IRR, pending);
 * 0, -ERANGE for a line the controller does not have, or -errno.
 */
int arch_vm_dump_irq_line(int vm_fd, uint32_t gsi, char *buf, size_t len);

/* ---- Pause and resume (vm_pause/vm_resume; migration's stop-and-copy reuses them) ---- */

/*
 * The VM's vCPUs are all out of KVM_RUN and held: freezes the guest's clock
 * (x86: kvmclock read with KVM_GET_CLOCK), so the time paused does not show as
 * a jump. 0 or -errno (the pause goes on; the clock then keeps running).
 */
int arch_vm_pause(struct arch_vm *avm);

/* Before the vCPUs run again: the guest's clock resumes from the frozen value; 0 or -errno. */
int arch_vm_resume(struct arch_vm *avm);

/*
 * On a vCPU's own thread, after a pause and before it re-enters KVM_RUN: tells
 * the guest it was stopped by the host (x86: KVM_KVMCLOCK_CTRL, so its soft
 * lockup watchdog does not fire). 0, or -errno when KVM or the guest does not
 * support it (not an error: a guest without kvmclock has no such watchdog hint).
 */
int arch_vcpu_resumed(int vcpu_fd);

/*
 * ---- Saved state (migration): opaque blobs, versioned, for the same arch and build ----
 * Save only a stopped vCPU: one that re-entered KVM_RUN with immediate_exit set after its
 * last exit, so that KVM has completed the exit's port or MMIO access (as vcpu_kick() does).
 */

/* Bytes a vCPU's arch state takes (the same for every vCPU of the VM). */
size_t arch_vcpu_state_size(const struct arch_vm *avm);

/* Saves a stopped vCPU's arch state into buf; returns the bytes written or -errno (-ENOSPC). */
ssize_t arch_vcpu_save(const struct arch_vm *avm, int vcpu_fd, void *buf, size_t len);

/* Restores arch_vcpu_save()'s blob into a vCPU set up by arch_vcpu_init(); 0 or -errno. */
int arch_vcpu_restore(const struct arch_vm *avm, int vcpu_fd, const void *buf, size_t len);

/* Bytes the VM's arch state takes (x86: PIC, IOAPIC, PIT, kvmclock). */
size_t arch_vm_state_size(const struct arch_vm *avm);

/* Saves the VM's arch state (its vCPUs stopped) into buf; returns the bytes written or -errno. */
ssize_t arch_vm_save(const struct arch_vm *avm, void *buf, size_t len);

/*
 * Restores arch_vm_save()'s blob after every vCPU's arch_vcpu_restore() and before the vCPUs
 * run (x86: writing a TSC moves KVM's master clock, so kvmclock is set last, as QEMU does);
 * 0 or -errno (-EINVAL: not ours).
 */
int arch_vm_restore(struct arch_vm *avm, const void *buf, size_t len);

#endif
