// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/cpuid.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/x86_boot.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static struct log_ratelimit unclaimed_rl = LOG_RATELIMIT_INIT;

static const char *exit_reason_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_FAIL_ENTRY:	return "entry failure";
	case KVM_EXIT_INTERNAL_ERROR:	return "KVM internal error";
	case KVM_EXIT_EXCEPTION:	return "unhandled exception";
	case KVM_EXIT_DEBUG:		return "debug exit";
	default:			return "unexpected exit";
	}
}

enum vcpu_exit_action vcpu_handle_exit(struct kvm_run *run, const struct io_bus *pio,
				       const struct io_bus *mmio, unsigned int index)
{
	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

		if (run->io.size != 1 && run->io.size != 2 && run->io.size != 4)
			return VCPU_EXIT_CONTINUE;
		/* String I/O repeats on the same port; the data pointer advances. */
		for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
			io_bus_access(pio, run->io.port, data, run->io.size, is_write);
		return VCPU_EXIT_CONTINUE;
	}
	case KVM_EXIT_MMIO:
		if (run->mmio.len == 0 || run->mmio.len > sizeof(run->mmio.data))
			return VCPU_EXIT_CONTINUE;
		if (!io_bus_access(mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
				   run->mmio.is_write))
			log_warn_ratelimited(&unclaimed_rl,
					     "vCPU %u: %s of %u bytes at unclaimed MMIO address 0x%llx ignored",
					     index, run->mmio.is_write ? "write" : "read", run->mmio.len,
					     (unsigned long long)run->mmio.phys_addr);
		return VCPU_EXIT_CONTINUE;
	case KVM_EXIT_HLT:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_INTR:
		return VCPU_EXIT_CONTINUE;
	case KVM_EXIT_SHUTDOWN:
		/* A triple fault: what a PC does is reset (Linux's reboot=t does it on purpose). */
		log_info("vCPU %u: the guest triple-faulted; resetting it", index);
		return VCPU_EXIT_RESET;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			return VCPU_EXIT_POWEROFF;
		case KVM_SYSTEM_EVENT_RESET:
			return VCPU_EXIT_RESET;
		default:
			log_error("vCPU %u: the guest crashed (system event %u)", index,
				  run->system_event.type);
			return VCPU_EXIT_FAIL;
		}
	case KVM_EXIT_FAIL_ENTRY:
		log_error("vCPU %u: KVM could not enter the guest (hardware entry failure reason 0x%llx) "
			  "— the guest state is invalid; report this with the kernel and options used",
			  index, (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return VCPU_EXIT_FAIL;
	case KVM_EXIT_INTERNAL_ERROR:
		log_error("vCPU %u: KVM internal error (suberror %u) — the guest did something KVM "
			  "cannot emulate; see the host's dmesg", index, run->internal.suberror);
		return VCPU_EXIT_FAIL;
	default:
		log_error("vCPU %u: %s (KVM exit reason %u)", index, exit_reason_name(run->exit_reason),
			  run->exit_reason);
		return VCPU_EXIT_FAIL;
	}
}

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

static void vcpu_install_kick_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = vcpu_kick_handler;
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

int vcpu_create(struct vcpu *vcpu, struct vm *vm, unsigned int index)
{
	struct kvm_cpuid2 *cpuid;
	size_t cpuid_bytes;
	int ret;

	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->index = index;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0)
		return -errno;
	vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		vcpu->run = NULL;
		return -errno;
	}

	cpuid_bytes = sizeof(*cpuid) + vm->cpuid->nent * sizeof(cpuid->entries[0]);
	cpuid = malloc(cpuid_bytes);
	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid, vm->cpuid, cpuid_bytes);
	cpuid_patch(cpuid, index, vm->ncpus);
	ret = ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	free(cpuid);
	if (ret)
		return ret;

	ret = x86_vcpu_init_lapic(vcpu->fd);
	if (!ret && index == 0)
		ret = x86_vcpu_init_boot_state(vcpu->fd);
	return ret;
}

void vcpu_format_state(char *buf, size_t len, const struct kvm_regs *r, const struct kvm_sregs *s)
{
	snprintf(buf, len,
		 "rip=%#llx rsp=%#llx rflags=%#llx cr0=%#llx cr2=%#llx cr3=%#llx cr4=%#llx "
		 "efer=%#llx cs=%#x ss=%#x fs.base=%#llx gs.base=%#llx idt=%#llx/%#x gdt=%#llx/%#x",
		 (unsigned long long)r->rip, (unsigned long long)r->rsp,
		 (unsigned long long)r->rflags, (unsigned long long)s->cr0,
		 (unsigned long long)s->cr2, (unsigned long long)s->cr3,
		 (unsigned long long)s->cr4, (unsigned long long)s->efer, s->cs.selector,
		 s->ss.selector, (unsigned long long)s->fs.base, (unsigned long long)s->gs.base,
		 (unsigned long long)s->idt.base, s->idt.limit, (unsigned long long)s->gdt.base,
		 s->gdt.limit);
}

/* After a triple fault or a failure: the vCPU's state, for the bug report (vmm -v). */
static void vcpu_log_state(struct vcpu *vcpu)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char line[512];

	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0) {
		log_info("vCPU %u: cannot read its registers: %s", vcpu->index, strerror(errno));
		return;
	}
	vcpu_format_state(line, sizeof(line), &regs, &sregs);
	/* KVM on AMD reinitializes the vCPU at a shutdown (its VMCB is undefined after one). */
	log_info("vCPU %u: %s%s", vcpu->index, line,
		 regs.rip == 0xfff0 && sregs.cs.selector == 0xf000 ?
		 " (the reset state: KVM on AMD reinitializes the vCPU at a triple fault, so the "
		 "state at the fault is lost)" : "");
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (atomic_load(&vm->stop_reason) == VM_RUNNING) {
		enum vcpu_exit_action action;

		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu->run->immediate_exit = 0;
				continue;
			}
			log_error("vCPU %u: KVM_RUN failed: %s", vcpu->index, strerror(errno));
			vm_request_stop(vm, VM_FAILED);
			break;
		}
		action = vcpu_handle_exit(vcpu->run, &vm->pio, &vm->mmio, vcpu->index);
		switch (action) {
		case VCPU_EXIT_CONTINUE:
			break;
		case VCPU_EXIT_RESET:
			if (vcpu->run->exit_reason == KVM_EXIT_SHUTDOWN)
				vcpu_log_state(vcpu);
			vm_request_stop(vm, VM_RESET);
			break;
		case VCPU_EXIT_POWEROFF:
			vm_request_stop(vm, VM_POWEROFF);
			break;
		case VCPU_EXIT_FAIL:
			vcpu_log_state(vcpu);
			vm_request_stop(vm, VM_FAILED);
			break;
		}
	}
	return NULL;
}

int vcpu_start(struct vcpu *vcpu)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	char name[16];
	int ret;

	pthread_once(&once, vcpu_install_kick_handler);

	ret = thread_start(&vcpu->thread, vcpu_thread, vcpu);
	if (ret)
		return ret;
	snprintf(name, sizeof(name), "vmm-vcpu%u", vcpu->index);
	pthread_setname_np(vcpu->thread, name);
	vcpu->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *vcpu)
{
	if (!vcpu->started)
		return;
	/* immediate_exit covers the window just before the thread enters KVM_RUN. */
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->started) {
		pthread_join(vcpu->thread, NULL);
		vcpu->started = false;
	}
	if (vcpu->run)
		munmap(vcpu->run, vcpu->vm->run_size);
	if (vcpu->fd > 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}
