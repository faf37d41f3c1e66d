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
#include <stdbool.h>
#include <stddef.h>

#include "vmm/base/io_bus.h"

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned int index;	/* also the APIC ID */
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

enum vcpu_exit_action {
	VCPU_EXIT_CONTINUE,	/* handled; enter the guest again */
	VCPU_EXIT_RESET,	/* the guest reset the machine (triple fault, system event) */
	VCPU_EXIT_POWEROFF,	/* the guest powered the machine off (system event) */
	VCPU_EXIT_FAIL,		/* KVM or the guest failed; reported */
};

/* Decodes one exit and dispatches port and MMIO accesses; never touches the vCPU fd. */
enum vcpu_exit_action vcpu_handle_exit(struct kvm_run *run, const struct io_bus *pio,
				       const struct io_bus *mmio, unsigned int index);

/*
 * The CPU state that tells why a guest crashed (a triple fault): instruction
 * and stack pointers, control registers, the segment bases (a broken GS base
 * kills a kernel at its first per-CPU access) and the IDT. Writes one line.
 */
void vcpu_format_state(char *buf, size_t len, const struct kvm_regs *regs,
		       const struct kvm_sregs *sregs);

/* Creates vCPU `index` with its CPUID, LAPIC and (for the boot CPU) entry state; 0 or -errno. */
int vcpu_create(struct vcpu *vcpu, struct vm *vm, unsigned int index);

/* Starts the vCPU thread; 0 or -errno. */
int vcpu_start(struct vcpu *vcpu);

/* Makes a running vCPU leave KVM_RUN soon (the thread then checks the VM's stop reason). */
void vcpu_kick(struct vcpu *vcpu);

/* Joins the thread if started and releases the vCPU. */
void vcpu_destroy(struct vcpu *vcpu);

#endif
