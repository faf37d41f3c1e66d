// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/arch.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"
#include "vmm/vcpu.h"

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

int vcpu_create(struct vcpu *vcpu, const struct vcpu_ctx *ctx, unsigned int index)
{
	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->ctx = ctx;
	vcpu->index = index;
	vcpu->fd = ioctl(ctx->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0)
		return -errno;
	vcpu->run = mmap(NULL, ctx->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		vcpu->run = NULL;
		return -errno;
	}
	return arch_vcpu_init(ctx->arch, vcpu->fd, index);
}

/* After a triple fault or a failure: the vCPU's state, for the bug report (vmm -v). */
static void vcpu_log_state(struct vcpu *vcpu)
{
	char line[512];
	int ret = arch_vcpu_dump(vcpu->fd, line, sizeof(line));

	if (ret)
		log_info("vCPU %u: cannot read its registers: %s", vcpu->index, strerror(-ret));
	else
		log_info("vCPU %u: %s", vcpu->index, line);
}

/* Whether the vCPU should stop and wait (the VM is pausing or paused). */
static bool vcpu_held(const struct vcpu_ctx *ctx)
{
	return ctx->hold && __atomic_load_n(&ctx->hold->held, __ATOMIC_ACQUIRE);
}

/*
 * The VM is pausing: completes the last exit inside KVM, then waits until the
 * pause ends or the VM stops (struct vcpu_hold). After a pause, tells the
 * guest it was stopped (arch_vcpu_resumed) before it runs again.
 */
static void vcpu_park(struct vcpu *vcpu)
{
	const struct vcpu_ctx *ctx = vcpu->ctx;
	struct vcpu_hold *h = ctx->hold;
	bool stopped;

	/* With immediate_exit KVM finishes a pending port or MMIO access and returns EINTR. */
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (ioctl(vcpu->fd, KVM_RUN, 0) < 0 && errno != EINTR && errno != EAGAIN)
		log_warn("vCPU %u: KVM_RUN to complete its last exit before the pause failed: %s",
			 vcpu->index, strerror(errno));
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);

	pthread_mutex_lock(&h->lock);
	h->parked++;
	pthread_cond_broadcast(&h->cond);
	while (h->held && !atomic_load(ctx->stopping))
		pthread_cond_wait(&h->cond, &h->lock);
	h->parked--;
	stopped = atomic_load(ctx->stopping);
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);

	if (!stopped) {
		int ret = arch_vcpu_resumed(vcpu->fd);

		if (ret && ret != -EINVAL)
			log_info("vCPU %u: cannot tell the guest it was paused: %s", vcpu->index,
				 strerror(-ret));
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	const struct vcpu_ctx *ctx = vcpu->ctx;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (!atomic_load(ctx->stopping)) {
		enum vcpu_exit_action action;

		if (vcpu_held(ctx)) {
			vcpu_park(vcpu);
			continue;
		}
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu->run->immediate_exit = 0;
				continue;
			}
			log_error("vCPU %u: KVM_RUN failed: %s", vcpu->index, strerror(errno));
			ctx->stop(ctx->opaque, VCPU_EXIT_FAIL);
			break;
		}
		action = vcpu_handle_exit(vcpu->run, ctx->pio, ctx->mmio, vcpu->index);
		switch (action) {
		case VCPU_EXIT_CONTINUE:
			break;
		case VCPU_EXIT_RESET:
			if (vcpu->run->exit_reason == KVM_EXIT_SHUTDOWN)
				vcpu_log_state(vcpu);
			ctx->stop(ctx->opaque, action);
			break;
		case VCPU_EXIT_POWEROFF:
			ctx->stop(ctx->opaque, action);
			break;
		case VCPU_EXIT_FAIL:
			vcpu_log_state(vcpu);
			ctx->stop(ctx->opaque, action);
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
		munmap(vcpu->run, vcpu->ctx->run_size);
	if (vcpu->fd > 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}
