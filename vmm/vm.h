/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The virtual machine: KVM VM, guest RAM, address-trap buses, vCPUs,
 * devices and the event loop, created from a vmm_config, run until the guest
 * powers off or resets, then destroyed. No globals: everything hangs off
 * struct vm.
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "firmware/boot_params.h"
#include "virtio/mmio.h"
#include "vmm/config.h"
#include "vmm/serial_console.h"
#include "vmm/base/event_loop.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/io_bus.h"

/* virtio-mmio devices get GSIs 5..23 of the IOAPIC: 19 at most. */
#define VM_MAX_VIRTIO_DEVICES 19

struct vcpu;
struct kvm_cpuid2;

/* Why the VM stopped; the first request wins. */
enum vm_stop_reason {
	VM_RUNNING = 0,
	VM_POWEROFF,	/* ACPI S5 */
	VM_RESET,	/* ACPI reset register, i8042 reset, triple fault */
	VM_FAILED,	/* a vCPU or KVM failed; already reported */
	VM_QUIT,	/* the user asked (Ctrl-A x, SIGTERM ...) */
};

struct vm {
	const struct vmm_config *cfg;
	int kvm_fd, vm_fd;
	size_t run_size;			/* mmap size of struct kvm_run */
	struct kvm_cpuid2 *cpuid;		/* KVM_GET_SUPPORTED_CPUID */
	struct guest_mem mem;
	struct io_bus pio, mmio;
	struct vcpu *vcpus;
	unsigned int ncpus, vcpus_created;
	struct event_loop loop;
	struct serial_console console;
	struct virtio_host virtio_host;		/* what virtio devices get from the VM */
	struct virtio_mmio_dev *vdevs[VM_MAX_VIRTIO_DEVICES];
	char vdev_names[VM_MAX_VIRTIO_DEVICES][24];
	unsigned int nvdevs;
	char *cmdline;				/* the command line the guest gets */
	_Atomic int stop_reason;
	int stop_fd;				/* eventfd signalled on the first stop request */
};

/*
 * A kernel (and initrd) opened and validated once, loaded into guest RAM
 * straight from the files at every boot (nothing large stays in VMM memory).
 */
struct boot_image {
	struct bzimage_info info;
	uint8_t *setup;		/* the bzImage's first bytes: boot sector and setup header */
	size_t setup_len;
	int kernel_fd;
	int initrd_fd;		/* -1 without initrd */
	uint64_t initrd_size;
};

/* Reads and validates the boot files; 0 or VMM_EXIT_IMAGE after reporting. */
int boot_image_load(struct boot_image *img, const struct vmm_config *cfg);
/* Frees what boot_image_load() took. */
void boot_image_free(struct boot_image *img);

/* Builds the whole machine ready to run; 0 or a VMM_EXIT_* status after reporting. */
int vm_create(struct vm *vm, const struct vmm_config *cfg, const struct boot_image *img);

/* Starts the vCPUs and the event loop; 0 or VMM_EXIT_RUNTIME after reporting. */
int vm_start(struct vm *vm);

/* Asks every vCPU to stop; records reason if it is the first. Any thread. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason);

/* Stops and joins all threads, then frees everything; safe on a partly created VM. */
void vm_destroy(struct vm *vm);

/* Sets a legacy (ISA) interrupt line of the in-kernel irqchip. */
void vm_set_irq_line(struct vm *vm, unsigned int irq, bool level);

#endif
