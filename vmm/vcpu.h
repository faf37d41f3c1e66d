/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vCPUs: one thread each, running KVM_RUN and dispatching exits to the
 * address-trap buses. The exit decoder is separate from KVM_RUN so unit tests
 * feed it fabricated exits.
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "vmm/base/io_bus.h"

struct arch_vm;

enum vcpu_exit_action {
	VCPU_EXIT_CONTINUE,	/* handled; enter the guest again */
	VCPU_EXIT_RESET,	/* the guest reset the machine (triple fault, system event) */
	VCPU_EXIT_POWEROFF,	/* the guest powered the machine off (system event) */
	VCPU_EXIT_FAIL,		/* KVM or the guest failed; reported */
};

/*
 * Where a VM's vCPUs wait while it is paused; one per VM, shared by its vCPUs.
 * While `held`, each vCPU leaves KVM_RUN at its next exit (vcpu_kick() makes
 * one come), completes that exit inside KVM (KVM_RUN with immediate_exit, so
 * its state is whole and could be saved), counts itself in `parked` and
 * waits on `cond` until `held` is cleared or the VM stops. Whoever changes
 * `held` or stops the VM broadcasts `cond` under `lock`.
 */
struct vcpu_hold {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool held;
	unsigned int parked;	/* vCPUs waiting now */
};

/* What the vCPUs get from their VM, as plain data; shared by all of them. */
struct vcpu_ctx {
	int vm_fd;
	size_t run_size;			/* mmap size of struct kvm_run */
	const struct io_bus *pio, *mmio;
	struct arch_vm *arch;			/* for the arch_vcpu_* hooks */
	const _Atomic int *stopping;		/* non-zero: every vCPU leaves its run loop */
	struct vcpu_hold *hold;			/* pause: where vCPUs wait; NULL: never held */
	/* A vCPU saw the guest reset, power off or fail (a non-CONTINUE action); any thread. */
	void (*stop)(void *opaque, enum vcpu_exit_action why);
	void *opaque;
};

struct vcpu {
	const struct vcpu_ctx *ctx;
	unsigned int index;	/* also the APIC ID */
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

/* Decodes one exit and dispatches port and MMIO accesses; never touches the vCPU fd. */
enum vcpu_exit_action vcpu_handle_exit(struct kvm_run *run, const struct io_bus *pio,
				       const struct io_bus *mmio, unsigned int index);

/* Creates vCPU `index` of ctx's VM, set up by arch_vcpu_init(); 0 or -errno. ctx outlives it. */
int vcpu_create(struct vcpu *vcpu, const struct vcpu_ctx *ctx, unsigned int index);

/* Starts the vCPU thread; 0 or -errno. */
int vcpu_start(struct vcpu *vcpu);

/* Makes a running vCPU leave KVM_RUN soon (the thread then checks ctx->stopping). */
void vcpu_kick(struct vcpu *vcpu);

/* Joins the thread if started and releases the vCPU. */
void vcpu_destroy(struct vcpu *vcpu);

#endif
