// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "vhost/offload.h"
#include "virtio/devices.h"
#include "vmm/arch.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"
#include "vmm/exit_status.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define KVM_DEFAULT_DEVICE "/dev/kvm"
#define KVM_EXPECTED_API 12

static int kvm_open(struct vm *vm)
{
	const char *path = getenv("VMM_KVM_DEVICE");
	int api;

	if (!path || !*path)
		path = KVM_DEFAULT_DEVICE;
	vm->kvm_fd = open(path, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int err = errno;

		if (err == ENOENT)
			log_error("cannot open %s: no such device — this host has no KVM: enable "
				  "virtualization in the firmware and load kvm_intel or kvm_amd "
				  "(modprobe kvm_amd), or run inside a VM with nested virtualization "
				  "(scripts/with-kvm does that for the tests)", path);
		else if (err == EACCES || err == EPERM)
			log_error("cannot open %s: permission denied — add the user to the kvm group "
				  "(usermod -aG kvm $USER, then log in again)", path);
		else
			log_error("cannot open %s: %s — check that KVM works on this host", path,
				  strerror(err));
		return VMM_EXIT_NO_KVM;
	}
	api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_EXPECTED_API) {
		log_error("%s speaks KVM API %d, not %d — this is not a usable KVM device", path, api,
			  KVM_EXPECTED_API);
		return VMM_EXIT_NO_KVM;
	}
	return 0;
}

static int kvm_check_caps(struct vm *vm)
{
	/* What every architecture needs; arch_vm_create() checks the arch's own. */
	static const struct { int cap; const char *name; } required[] = {
		{ KVM_CAP_USER_MEMORY, "user memory slots" },
		{ KVM_CAP_IOEVENTFD, "ioeventfd" },
		{ KVM_CAP_IRQFD, "irqfd" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate_exit" },
	};
	int max_vcpus;

	for (size_t i = 0; i < ARRAY_SIZE(required); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
			log_error("KVM on this host lacks %s — use a Linux 4.11 or newer host kernel",
				  required[i].name);
			return VMM_EXIT_NO_KVM;
		}
	}
	max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus <= 0)
		max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max_vcpus > 0 && vm->ncpus > (unsigned int)max_vcpus) {
		log_error("--cpus %u is more than KVM allows here (%d) — ask for fewer vCPUs",
			  vm->ncpus, max_vcpus);
		return VMM_EXIT_USAGE;
	}
	return 0;
}

/*
 * Manual dirty-log protection with every bit initially set (KVM 5.8+): enabling
 * the log on a memslot then neither write-protects nor splits the guest's RAM
 * while its vCPUs run; the migration clears (re-protects) pages run by run.
 */
static void vm_dirty_log_init(struct vm *vm)
{
	uint64_t want = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = { want } };
	int have = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

	if (have > 0 && ((uint64_t)have & want) == want && !ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap))
		vm->dirty_manual = true;
	else
		log_info("KVM has no manual dirty-log protection with the log initially set: a "
			  "migration write-protects all guest RAM at its start");
}

static int vm_create_kvm_vm(struct vm *vm)
{
	int ret;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		log_error("cannot create a KVM virtual machine: %s — check the host's dmesg",
			  strerror(errno));
		return VMM_EXIT_NO_KVM;
	}
	ret = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret < (int)sizeof(struct kvm_run)) {
		log_error("KVM reports a bad vCPU mmap size (%d)", ret);
		return VMM_EXIT_NO_KVM;
	}
	vm->run_size = (size_t)ret;
	vm_dirty_log_init(vm);
	ret = arch_vm_create(&vm->arch, vm->kvm_fd, vm->vm_fd, vm->ncpus);
	if (ret)
		return exit_status_for(EXIT_STEP_ARCH_VM, ret);
	return 0;
}

/* Gives guest RAM region i to KVM as memslot i, with flags (KVM_MEM_LOG_DIRTY_PAGES or 0). */
static int vm_set_memslot(struct vm *vm, unsigned int i, uint32_t flags)
{
	const struct guest_region *r = &vm->mem.regions[i];
	struct kvm_userspace_memory_region slot = {
		.slot = i,
		.flags = flags,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0 ? -errno : 0;
}

int vm_dirty_log_enable(struct vm *vm, bool on)
{
	int ret = 0;

	for (unsigned int i = 0; i < vm->mem.nregions; i++) {
		int r = vm_set_memslot(vm, i, on ? KVM_MEM_LOG_DIRTY_PAGES : 0);

		if (r && !ret)
			ret = r;
	}
	return ret;
}

int vm_dirty_log_get(struct vm *vm, unsigned int slot, uint64_t *bits)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bits };

	if (slot >= vm->mem.nregions)
		return -EINVAL;
	return ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0;
}

int vm_dirty_log_clear(struct vm *vm, unsigned int slot, uint64_t first, const uint64_t *bits,
		       unsigned int nwords)
{
	struct kvm_clear_dirty_log clear = { .slot = slot, .first_page = first,
					     .dirty_bitmap = (void *)bits };
	uint64_t pages;

	if (!vm->dirty_manual || !nwords)
		return 0;
	if (slot >= vm->mem.nregions || first % 64)
		return -EINVAL;
	pages = vm->mem.regions[slot].size / 4096;
	if (first >= pages || nwords > (pages - first + 63) / 64)
		return -EINVAL;
	/*
	 * KVM takes a count that is not a multiple of 64 only where it ends the slot (and
	 * ignores the bits past it).
	 */
	clear.num_pages = (uint32_t)MIN((uint64_t)nwords * 64, pages - first);
	return ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0 ? -errno : 0;
}

static int vm_create_memory(struct vm *vm)
{
	struct guest_mem_range ranges[GUEST_MEM_MAX_REGIONS];
	unsigned int n = arch_ram_ranges(vm->cfg->memory, ranges);
	uint64_t limit = guest_mem_host_limit();
	char want[32], have[32];
	int ret;

	if (vm->cfg->memory > limit) {
		log_error("--memory %s is more than this host has (%s of RAM and swap) — ask for less",
			  format_size_round(vm->cfg->memory, want, sizeof(want)),
			  format_size_round(limit, have, sizeof(have)));
		return VMM_EXIT_RESOURCE;
	}
	ret = guest_mem_init(&vm->mem, ranges, n,
			     guest_mem_backing_for(vm->cfg->mem_shared, vm->cfg->hugepages));
	if (ret) {
		log_error("cannot allocate %s of guest memory: %s — ask for less memory%s",
			  format_size(vm->cfg->memory, want, sizeof(want)), strerror(-ret),
			  vm->cfg->hugepages ? " or reserve more huge pages (/proc/sys/vm/nr_hugepages)" : "");
		return VMM_EXIT_RESOURCE;
	}
	for (unsigned int i = 0; i < vm->mem.nregions; i++) {
		ret = vm_set_memslot(vm, i, 0);
		if (ret) {
			log_error("cannot give guest memory to KVM: %s", strerror(-ret));
			return VMM_EXIT_RESOURCE;
		}
	}
	return 0;
}

static int vm_load_guest(struct vm *vm, const struct arch_boot *img)
{
	int ret;

	if (!img)	/* the guest's state comes from a migration or a snapshot */
		return 0;
	ret = arch_load_guest(img, &vm->mem, vm->cmdline);

	return exit_status_for(EXIT_STEP_LOAD_GUEST, ret);
}

/* Tells the guest about the machine (x86: ACPI) from the device list, so the two agree. */
static int vm_describe_platform(struct vm *vm)
{
	struct arch_device devs[VM_MAX_VIRTIO_DEVICES];

	for (unsigned int i = 0; i < vm->nvdevs; i++)
		devs[i] = (struct arch_device){
			.kind = ARCH_DEVICE_VIRTIO_MMIO,
			.mmio_base = vm->vdevs[i]->base,
			.mmio_size = VIRTIO_MMIO_WINDOW,
			.gsi = vm->vdevs[i]->gsi,
		};
	if (arch_describe_platform(vm->arch, &vm->mem, vm->ncpus, devs, vm->nvdevs))
		return VMM_EXIT_RUNTIME;
	return 0;
}

static struct vm *host_to_vm(struct virtio_host *h)
{
	return container_of(h, struct vm, virtio_host);
}

static int vm_ioeventfd(struct virtio_host *h, uint64_t addr, uint32_t datamatch, int fd, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = datamatch,
		.addr = addr,
		.len = 4,
		.fd = fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	return ioctl(host_to_vm(h)->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

static int vm_irqfd(struct virtio_host *h, uint32_t gsi, int fd, bool assign)
{
	struct kvm_irqfd irq = {
		.fd = (uint32_t)fd,
		.gsi = gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	return ioctl(host_to_vm(h)->vm_fd, KVM_IRQFD, &irq) < 0 ? -errno : 0;
}

/* Creates the virtio devices in a fixed order (disks, nets, rng, console, vsock, fs), slot by slot. */
static int vm_create_virtio_devices(struct vm *vm)
{
	const struct vmm_config *cfg = vm->cfg;
	unsigned int total = cfg->ndisks + cfg->nnets + cfg->rng + cfg->console_set + cfg->vsock_set +
			     cfg->nfs;

	vm->virtio_host = (struct virtio_host){
		.mem = &vm->mem,
		.loop = &vm->loop,
		.ioeventfd = vm_ioeventfd,
		.irqfd = vm_irqfd,
		.offload = &vhost_offload,
		.incoming = vm->incoming,
	};
	if (total > MIN(arch_virtio_max(), VM_MAX_VIRTIO_DEVICES)) {
		log_error("%u virtio devices asked for; at most %u fit — give fewer devices", total,
			  MIN(arch_virtio_max(), VM_MAX_VIRTIO_DEVICES));
		return VMM_EXIT_USAGE;
	}
	for (unsigned int i = 0; i < total; i++) {
		char *name = vm->vdev_names[i];
		struct virtio_device_args args = { .host = &vm->virtio_host, .name = name };
		struct virtio_mmio_dev *d;
		const char *kind;
		unsigned int k = i;
		int ret;

		arch_virtio_place(i, &args.base, &args.gsi);
		if (k < cfg->ndisks) {
			kind = "blk";
			args.options = &cfg->disks[k];
			snprintf(name, sizeof(vm->vdev_names[i]), "virtio-blk%u", k);
		} else if ((k -= cfg->ndisks) < cfg->nnets) {
			kind = "net";
			args.options = &cfg->nets[k];
			snprintf(name, sizeof(vm->vdev_names[i]), "virtio-net%u", k);
		} else if ((k -= cfg->nnets) < (unsigned int)cfg->rng) {
			kind = "rng";
			snprintf(name, sizeof(vm->vdev_names[i]), "virtio-rng0");
		} else if ((k -= (unsigned int)cfg->rng) < (unsigned int)cfg->console_set) {
			kind = "console";
			args.options = &cfg->console;
			snprintf(name, sizeof(vm->vdev_names[i]), "virtio-console0");
		} else if ((k -= (unsigned int)cfg->console_set) < (unsigned int)cfg->vsock_set) {
			kind = "vsock";
			args.options = &cfg->vsock;
			snprintf(name, sizeof(vm->vdev_names[i]), "virtio-vsock0");
		} else {
			k -= (unsigned int)cfg->vsock_set;
			kind = "fs";
			args.options = &cfg->fs[k];
			snprintf(name, sizeof(vm->vdev_names[i]), "virtio-fs%u", k);
		}
		ret = virtio_device_create(kind, &args, &d);
		if (ret)
			return exit_status_for(EXIT_STEP_DEVICE, ret);
		vm->vdevs[vm->nvdevs++] = d;
		ret = io_bus_register(&vm->mmio, args.base, VIRTIO_MMIO_WINDOW, virtio_mmio_io, d, name);
		if (ret) {
			log_error("%s: cannot register its MMIO window: %s", name, strerror(-ret));
			return VMM_EXIT_RUNTIME;
		}
	}
	return 0;
}

/* The guest's command line: the user's, plus virtio_mmio.device= entries if asked. */
static int vm_build_cmdline(struct vm *vm, const struct arch_boot *img)
{
	size_t max = img ? arch_boot_cmdline_max(img) : SIZE_MAX;
	size_t len = strlen(vm->cfg->cmdline), cap = len + 1 + vm->nvdevs * 64;
	char *p;

	vm->cmdline = p = malloc(cap);
	if (!p) {
		log_error("cannot allocate the kernel command line");
		return VMM_EXIT_RESOURCE;
	}
	memcpy(p, vm->cfg->cmdline, len + 1);
	for (unsigned int i = 0; vm->cfg->virtio_cmdline && i < vm->nvdevs; i++)
		len += (size_t)snprintf(p + len, cap - len, " virtio_mmio.device=0x%x@0x%llx:%u",
					VIRTIO_MMIO_WINDOW, (unsigned long long)vm->vdevs[i]->base,
					vm->vdevs[i]->gsi);
	if (len > max) {
		log_error("the kernel command line with the device announcements is %zu bytes; this "
			  "kernel accepts at most %zu — shorten --cmdline", len, max);
		return VMM_EXIT_USAGE;
	}
	return 0;
}

static void vm_console_irq(void *opaque, bool level)
{
	struct vm *vm = opaque;

	vm_set_irq_line(vm, vm->uart.irq, level);
}

static void vm_console_quit(void *opaque)
{
	vm_request_stop(opaque, VM_QUIT);
}

/* A platform device (ACPI, i8042 ...) powered the machine off or reset it. */
static void vm_platform_stop(void *opaque, enum arch_stop why)
{
	vm_request_stop(opaque, why == ARCH_STOP_POWEROFF ? VM_POWEROFF : VM_RESET);
}

/* A vCPU saw the guest reset, power off or fail. */
static void vm_vcpu_stop(void *opaque, enum vcpu_exit_action why)
{
	vm_request_stop(opaque, why == VCPU_EXIT_RESET ? VM_RESET :
				why == VCPU_EXIT_POWEROFF ? VM_POWEROFF : VM_FAILED);
}

static int vm_create_devices(struct vm *vm)
{
	int ret = event_loop_init(&vm->loop);

	if (!ret)
		ret = serial_console_init(&vm->console, &vm->loop, STDIN_FILENO, STDOUT_FILENO,
				   isatty(STDIN_FILENO), vm_console_irq, vm_console_quit, vm);
	vm->uart = arch_uart_place();
	if (!ret)
		ret = io_bus_register(vm->uart.pio ? &vm->pio : &vm->mmio, vm->uart.base,
				      SERIAL_NREGS, serial_io, &vm->console.serial, "serial");
	if (!ret)
		ret = arch_platform_init(vm->arch, &vm->pio, &vm->mmio, vm_platform_stop, vm);
	if (ret) {
		log_error("cannot set up the devices: %s", strerror(-ret));
		return VMM_EXIT_RUNTIME;
	}
	return 0;
}

static int vm_create_vcpus(struct vm *vm)
{
	vm->vcpu_ctx = (struct vcpu_ctx){
		.vm_fd = vm->vm_fd,
		.run_size = vm->run_size,
		.pio = &vm->pio,
		.mmio = &vm->mmio,
		.arch = vm->arch,
		.stopping = &vm->stop_reason,
		.hold = &vm->hold,
		.stop = vm_vcpu_stop,
		.opaque = vm,
	};
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		log_error("cannot allocate %u vCPUs", vm->ncpus);
		return VMM_EXIT_RESOURCE;
	}
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		int ret = vcpu_create(&vm->vcpus[i], &vm->vcpu_ctx, i);

		vm->vcpus_created = i + 1;	/* how many need destroying */
		if (ret) {
			log_error("cannot create vCPU %u: %s", i, strerror(-ret));
			return exit_status_for(EXIT_STEP_VCPU, ret);
		}
	}
	return 0;
}

/* The pause's lock and condition (timed waits on CLOCK_MONOTONIC); 0 or -errno. */
static int vm_hold_init(struct vcpu_hold *h)
{
	pthread_condattr_t attr;
	int ret = pthread_mutex_init(&h->lock, NULL);

	if (ret)
		return -ret;
	ret = pthread_condattr_init(&attr);
	if (!ret) {
		ret = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		if (!ret)
			ret = pthread_cond_init(&h->cond, &attr);
		pthread_condattr_destroy(&attr);
	}
	if (ret)
		pthread_mutex_destroy(&h->lock);
	return -ret;
}

int vm_create(struct vm *vm, const struct vmm_config *cfg, const struct arch_boot *img)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->incoming = !img && cfg->incoming;
	vm->ncpus = cfg->ncpus;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem.fd = -1;
	vm->loop.epfd = vm->loop.stop_fd = -1;
	vm->console.space_src.fd = -1;
	ret = vm_hold_init(&vm->hold);
	if (ret) {
		log_error("cannot create the VM's pause lock: %s", strerror(-ret));
		return VMM_EXIT_RESOURCE;
	}
	pthread_mutex_init(&vm->pause_lock, NULL);
	vm->hold_init = true;
	vm->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (vm->stop_fd < 0) {
		log_error("cannot create an eventfd: %s", strerror(errno));
		return VMM_EXIT_RESOURCE;
	}
	ret = kvm_open(vm);
	if (!ret)
		ret = kvm_check_caps(vm);
	if (!ret)
		ret = vm_create_kvm_vm(vm);
	if (!ret)
		ret = vm_create_memory(vm);
	if (!ret)
		ret = vm_create_devices(vm);
	if (!ret)
		ret = vm_create_virtio_devices(vm);
	if (!ret)
		ret = vm_build_cmdline(vm, img);
	if (!ret)
		ret = vm_load_guest(vm, img);
	if (!ret)
		ret = vm_describe_platform(vm);
	if (!ret)
		ret = vm_create_vcpus(vm);
	return ret;
}

int vm_start(struct vm *vm)
{
	int ret = event_loop_start(&vm->loop);

	for (unsigned int i = 0; !ret && i < vm->ncpus; i++)
		ret = vcpu_start(&vm->vcpus[i]);
	if (ret) {
		log_error("cannot start the VM's threads: %s", strerror(-ret));
		return VMM_EXIT_RUNTIME;
	}
	return 0;
}

int vm_switchover(struct vm *vm, bool active)
{
	int ret = 0;

	for (unsigned int i = 0; i < vm->nvdevs; i++) {
		struct virtio_mmio_dev *d = vm->vdevs[i];
		int r = 0;

		if (!d->ops->switchover)
			continue;
		pthread_mutex_lock(&d->lock);
		r = d->ops->switchover(d, active);
		pthread_mutex_unlock(&d->lock);
		if (r && !ret)
			ret = r;
	}
	return ret;
}

int vm_start_loaded(struct vm *vm)
{
	int ret = vm_switchover(vm, true);

	if (ret) {
		log_error("the migrated guest cannot take its devices here (%s) — is the source "
			  "still using them?", strerror(-ret));
		return VMM_EXIT_MIGRATION;
	}
	ret = event_loop_start(&vm->loop);

	if (ret) {
		log_error("cannot start the VM's event loop: %s", strerror(-ret));
		return VMM_EXIT_RUNTIME;
	}
	for (unsigned int i = 0; i < vm->nvdevs; i++) {
		struct virtio_mmio_dev *d = vm->vdevs[i];
		uint64_t t0 = monotonic_ms(), ms;

		pthread_mutex_lock(&d->lock);
		virtio_mmio_resume(d);
		pthread_mutex_unlock(&d->lock);
		ms = monotonic_ms() - t0;
		if (ms >= 5)
			log_info("%s: its queues took %llu ms to start here", vm->vdev_names[i],
				 (unsigned long long)ms);
	}
	for (unsigned int i = 0; !ret && i < vm->ncpus; i++)
		ret = vcpu_start(&vm->vcpus[i]);
	if (ret) {
		log_error("cannot start the VM's vCPU threads: %s", strerror(-ret));
		return VMM_EXIT_RUNTIME;
	}
	return 0;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason)
{
	int expected = VM_RUNNING;
	uint64_t one = 1;

	if (!atomic_compare_exchange_strong(&vm->stop_reason, &expected, (int)reason))
		return;
	if (vm->stop_fd >= 0 && write(vm->stop_fd, &one, sizeof(one)) != sizeof(one))
		log_warn("cannot signal the VM's stop: %s", strerror(errno));
	/* Held vCPUs (a pause) wake up and see the stop; a pause in progress gives up. */
	if (vm->hold_init) {
		pthread_mutex_lock(&vm->hold.lock);
		pthread_cond_broadcast(&vm->hold.cond);
		pthread_mutex_unlock(&vm->hold.lock);
	}
	for (unsigned int i = 0; i < vm->vcpus_created && vm->vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

/* Releases held vCPUs (the end of a pause, or a pause given up). */
static void vm_release_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->hold.lock);
	__atomic_store_n(&vm->hold.held, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->hold.cond);
	pthread_mutex_unlock(&vm->hold.lock);
}

/* Holds every vCPU; 0, -ESHUTDOWN (the VM is stopping) or -ETIMEDOUT (then released). */
static int vm_hold_vcpus(struct vm *vm, unsigned int timeout_ms)
{
	struct timespec deadline = monotonic_deadline_ms(timeout_ms);
	int ret = 0;

	pthread_mutex_lock(&vm->hold.lock);
	__atomic_store_n(&vm->hold.held, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->hold.lock);
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);

	pthread_mutex_lock(&vm->hold.lock);
	while (vm->hold.parked < vm->ncpus && !ret) {
		if (atomic_load(&vm->stop_reason))
			ret = -ESHUTDOWN;
		else if (pthread_cond_timedwait(&vm->hold.cond, &vm->hold.lock, &deadline) == ETIMEDOUT &&
			 vm->hold.parked < vm->ncpus)
			ret = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&vm->hold.lock);
	if (ret == -ETIMEDOUT) {
		log_warn("pause: only %u of %u vCPUs stopped within %u ms; the VM runs on",
			 vm->hold.parked, vm->ncpus, timeout_ms);
		vm_release_vcpus(vm);
	}
	return ret;
}

static int vm_pause_locked(struct vm *vm, unsigned int timeout_ms)
{
	int ret;

	if (vm->paused)
		return -EALREADY;
	if (atomic_load(&vm->stop_reason))
		return -ESHUTDOWN;
	ret = vm_hold_vcpus(vm, timeout_ms);
	if (ret)
		return ret;
	ret = arch_vm_pause(vm->arch);
	if (ret)
		log_warn("pause: cannot freeze the guest's clock (%s); its time will jump at resume",
			 strerror(-ret));
	for (unsigned int i = 0; i < vm->nvdevs; i++) {
		struct virtio_mmio_dev *d = vm->vdevs[i];

		pthread_mutex_lock(&d->lock);
		virtio_mmio_pause(d);
		pthread_mutex_unlock(&d->lock);
	}
	vm->paused = true;
	log_info("the VM is paused (%u vCPUs held, %u devices' queues stopped)", vm->ncpus,
		 vm->nvdevs);
	return 0;
}

int vm_pause(struct vm *vm, unsigned int timeout_ms)
{
	int ret;

	pthread_mutex_lock(&vm->pause_lock);
	ret = vm_pause_locked(vm, timeout_ms);
	pthread_mutex_unlock(&vm->pause_lock);
	return ret;
}

static int vm_resume_locked(struct vm *vm)
{
	int ret;

	if (!vm->paused)
		return -EALREADY;
	if (atomic_load(&vm->stop_reason))
		return -ESHUTDOWN;
	for (unsigned int i = 0; i < vm->nvdevs; i++) {
		struct virtio_mmio_dev *d = vm->vdevs[i];

		pthread_mutex_lock(&d->lock);
		virtio_mmio_resume(d);
		pthread_mutex_unlock(&d->lock);
	}
	ret = arch_vm_resume(vm->arch);
	if (ret)
		log_warn("resume: cannot set the guest's clock back (%s); its time jumps by the "
			 "time paused", strerror(-ret));
	vm->paused = false;
	vm_release_vcpus(vm);
	log_info("the VM runs again");
	return 0;
}

int vm_resume(struct vm *vm)
{
	int ret;

	pthread_mutex_lock(&vm->pause_lock);
	ret = vm_resume_locked(vm);
	pthread_mutex_unlock(&vm->pause_lock);
	return ret;
}

bool vm_is_paused(const struct vm *vm)
{
	return vm->paused;
}

/* How long vm_log_devices() waits for the vCPUs to stop before it logs without them. */
#define VM_DUMP_HOLD_MS	1000

/* Each vCPU's registers and interrupt state; the vCPUs are out of KVM_RUN. */
static void vm_log_vcpus(struct vm *vm)
{
	for (unsigned int i = 0; vm->vcpus && i < vm->vcpus_created; i++) {
		char line[512];
		int fd = vm->vcpus[i].fd, ret = arch_vcpu_dump(fd, line, sizeof(line));

		log_notice("vCPU %u: %s", i, ret ? strerror(-ret) : line);
		ret = arch_vcpu_dump_irq(fd, line, sizeof(line));
		log_notice("vCPU %u: %s", i, ret ? strerror(-ret) : line);
	}
}

void vm_log_devices(struct vm *vm)
{
	int held = 0;

	pthread_mutex_lock(&vm->pause_lock);
	if (!vm->paused)
		held = vm_hold_vcpus(vm, VM_DUMP_HOLD_MS);
	if (held)
		log_notice("the vCPUs did not stop within %u ms (%s): their state is not shown",
			   VM_DUMP_HOLD_MS, strerror(-held));
	else
		vm_log_vcpus(vm);
	if (!vm->paused && !held)
		vm_release_vcpus(vm);
	log_notice("%u virtio device%s%s", vm->nvdevs, vm->nvdevs == 1 ? "" : "s",
		   vm->paused ? " (the VM is paused)" : "");
	for (unsigned int i = 0; i < vm->nvdevs; i++) {
		struct virtio_mmio_dev *d = vm->vdevs[i];
		char line[256];
		int ret;

		virtio_mmio_log_queues(d);
		ret = arch_vm_dump_irq_line(vm->vm_fd, d->gsi, line, sizeof(line));
		log_notice("%s: its interrupt: %s", d->name, ret ? strerror(-ret) : line);
	}
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_set_irq_line(struct vm *vm, unsigned int irq, bool level)
{
	struct kvm_irq_level line = { .irq = irq, .level = level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &line) < 0)
		log_warn("cannot set interrupt line %u: %s", irq, strerror(errno));
}

void vm_destroy(struct vm *vm)
{
	vm_request_stop(vm, VM_QUIT);
	for (unsigned int i = 0; vm->vcpus && i < vm->vcpus_created; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	event_loop_stop(&vm->loop);
	for (unsigned int i = 0; i < vm->nvdevs; i++) {
		struct virtio_mmio_dev *d = vm->vdevs[i];

		log_info("%s: %llu queue notifications by ioeventfd, %llu by MMIO exit, %llu interrupts "
			 "(%llu more causes merged into pending ones, %llu sent again as lost)",
			 vm->vdev_names[i], (unsigned long long)virtio_mmio_eventfd_notifies(d),
			 (unsigned long long)d->mmio_notifies, (unsigned long long)d->interrupts,
			 (unsigned long long)d->interrupts_merged,
			 (unsigned long long)d->interrupts_resent);
		virtio_device_destroy(d);
	}
	vm->nvdevs = 0;
	if (vm->loop.epfd >= 0)
		event_loop_destroy(&vm->loop);
	if (vm->console.space_src.fd >= 0)
		serial_console_destroy(&vm->console);
	io_bus_destroy(&vm->pio);
	io_bus_destroy(&vm->mmio);
	guest_mem_destroy(&vm->mem);
	arch_vm_destroy(vm->arch);
	vm->arch = NULL;
	free(vm->cmdline);
	vm->cmdline = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	vm->vm_fd = vm->kvm_fd = vm->stop_fd = -1;
	if (vm->hold_init) {
		pthread_cond_destroy(&vm->hold.cond);
		pthread_mutex_destroy(&vm->hold.lock);
		pthread_mutex_destroy(&vm->pause_lock);
		vm->hold_init = false;
	}
}
