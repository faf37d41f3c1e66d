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

#include "virtio/mmio.h"
#include "vmm/arch.h"
#include "vmm/config.h"
#include "vmm/serial_console.h"
#include "vmm/base/event_loop.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/io_bus.h"
#include "vmm/vcpu.h"

/* Room for virtio devices in struct vm; the arch may have fewer slots (arch_virtio_max()). */
#define VM_MAX_VIRTIO_DEVICES 32

/* Why the VM stopped; the first request wins. */
enum vm_stop_reason {
	VM_RUNNING = 0,
	VM_POWEROFF,	/* ACPI S5 */
	VM_RESET,	/* ACPI reset register, i8042 reset, triple fault */
	VM_FAILED,	/* a vCPU or KVM failed; already reported */
	VM_QUIT,	/* the user asked (Ctrl-A x, SIGTERM ...) */
	VM_SHUTDOWN,	/* the control API asked (PUT /api/v1/vm.shutdown) */
	VM_MIGRATED,	/* the guest now runs on a migration's destination */
};

struct vm {
	const struct vmm_config *cfg;
	int kvm_fd, vm_fd;
	size_t run_size;			/* mmap size of struct kvm_run */
	struct arch_vm *arch;			/* the arch's part (vmm/arch.h) */
	struct guest_mem mem;
	struct io_bus pio, mmio;
	struct arch_uart uart;			/* where the serial console's 16550 lives */
	struct vcpu_ctx vcpu_ctx;		/* what the vCPUs get from the VM */
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
	struct vcpu_hold hold;			/* where the vCPUs wait while paused */
	/* Taken by vm_pause, vm_resume and vm_log_devices: one of them holds the vCPUs at a time. */
	pthread_mutex_t pause_lock;
	bool hold_init;				/* hold's lock and cond, and pause_lock, exist */
	bool paused;				/* vm_pause() succeeded, no vm_resume() since */
	bool incoming;				/* built for an incoming migration (no guest loaded) */
	bool dirty_manual;			/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, initially set */
};

/*
 * Builds the whole machine ready to run, loading the guest from img (opened
 * once with arch_boot_open(), loaded at every boot); img NULL: no guest is
 * loaded, its state will come from a migration or a snapshot
 * (migration_load). 0 or a VMM_EXIT_* status after reporting.
 */
int vm_create(struct vm *vm, const struct vmm_config *cfg, const struct arch_boot *img);

/* Starts the vCPUs and the event loop; 0 or VMM_EXIT_RUNTIME after reporting. */
int vm_start(struct vm *vm);

/*
 * Starts a VM whose state was loaded (migration_load): the event loop, then every
 * device's queues from their loaded positions, then the vCPUs. 0 or
 * VMM_EXIT_RUNTIME after reporting; VMM_EXIT_MIGRATION when a device cannot take
 * what it needs (vm_switchover: the source still holds a disk).
 */
int vm_start_loaded(struct vm *vm);

/*
 * A migration's switchover (every device's ops->switchover): active=false gives up what
 * only one host may hold (disk image locks) on a source paused for good; active=true
 * takes it. 0 or the first -errno (each device is asked anyway).
 */
int vm_switchover(struct vm *vm, bool active);

/*
 * Turns KVM's dirty-page logging of every RAM memslot on or off
 * (KVM_MEM_LOG_DIRTY_PAGES); 0 or -errno.
 */
int vm_dirty_log_enable(struct vm *vm, bool on);

/*
 * Fetches KVM's dirty log of RAM region `slot` (guest_mem's index) into bits (one
 * bit per 4 KiB page of the region, rounded up to 64-bit words); 0 or -errno.
 * Without vm->dirty_manual KVM clears the log and write-protects the pages again
 * as it answers; with it the bits stay set (the first fetch after enabling has
 * every page set) until vm_dirty_log_clear() re-protects them, run by run, just
 * before they are copied — QEMU's way: enabling the log then costs nothing while
 * the guest runs, and huge pages are split only where pages are cleared.
 */
int vm_dirty_log_get(struct vm *vm, unsigned int slot, uint64_t *bits);

/*
 * With vm->dirty_manual: clears (re-protects) the pages set in bits (nwords 64-bit
 * words, bit 0 = page `first`) of RAM region `slot`; first a multiple of 64, the
 * range within the region (a last word past its end is cut short); 0 or -errno.
 * Without it: nothing to do, 0.
 */
int vm_dirty_log_clear(struct vm *vm, unsigned int slot, uint64_t first, const uint64_t *bits,
		       unsigned int nwords);

/*
 * Pauses a started VM: every vCPU out of KVM_RUN and held (its last exit
 * completed, so its state could be saved), the guest's clock frozen, every
 * virtio device's queues taken back from their back-ends with their positions
 * kept (virtio_mmio_pause: blk workers drain, vhost rings read back), held
 * until vm_resume() (a vhost-user back-end that reconnects meanwhile does not
 * restart them). The guest sees nothing but time not passing. Migration's stop-and-copy starts
 * from here. 0; -EALREADY when already paused; -ESHUTDOWN when the VM is
 * stopping; -ETIMEDOUT when a vCPU did not stop within timeout_ms (the VM
 * then runs on as before). Not concurrently with itself, vm_resume() or
 * vm_destroy(); any thread but a vCPU's.
 */
int vm_pause(struct vm *vm, unsigned int timeout_ms);

/*
 * Resumes a paused VM: devices' queues restarted from their positions (each
 * kicked once; a vhost-user device's whose back-end is away, when it returns),
 * the guest's clock from where it stopped, then the vCPUs; each
 * tells the guest it was paused (no soft lockup report). 0, -EALREADY when
 * not paused, -ESHUTDOWN when the VM is stopping. Same rules as vm_pause().
 */
int vm_resume(struct vm *vm);

/* Whether the VM is paused (vm_pause() without vm_resume()); same rules as vm_pause(). */
bool vm_is_paused(const struct vm *vm);

/*
 * For a guest that seems stuck (SIGUSR2): logs (whether verbose or not) each
 * vCPU's registers and interrupt state — its vCPUs held for a moment, out of
 * KVM_RUN, unless the VM is paused already — then where every virtio device's
 * queues stand and its interrupt line as the interrupt controller has it.
 * Any thread but a vCPU's.
 */
void vm_log_devices(struct vm *vm);

/* Asks every vCPU to stop; records reason if it is the first. Any thread. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason);

/* Stops and joins all threads, then frees everything; safe on a partly created VM. */
void vm_destroy(struct vm *vm);

/* Sets a legacy (ISA) interrupt line of the in-kernel irqchip. */
void vm_set_irq_line(struct vm *vm, unsigned int irq, bool level);

#endif
