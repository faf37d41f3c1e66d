/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The virtio-mmio version 2 transport (VIRTIO 1.x §4.2), shared by every
 * device. A device embeds struct virtio_mmio_dev, supplies a const ops table
 * and its config space, and gets back to itself with container_of().
 *
 * Hot paths stay off the VMM's MMIO exit path: each queue's QueueNotify is a
 * KVM ioeventfd (datamatch = queue index) watched by the event loop, and the
 * device's interrupt is an eventfd bound to its GSI with KVM irqfd.
 *
 * The interrupt acts as a level-triggered line driven by InterruptStatus (for
 * used-buffer, config and NEEDS_RESET causes alike): one irqfd edge when
 * InterruptStatus becomes non-zero, none while the driver has not
 * acknowledged, another when its acknowledgement leaves bits set.
 *
 * Threads: register accesses come from vCPU threads; queue_notify runs on the
 * event loop thread. Both hold d->lock, so a reset never races with I/O.
 */
#ifndef VIRTIO_MMIO_H
#define VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtq.h"
#include "vmm/base/event_loop.h"
#include "vmm/base/guest_mem.h"

#define VIRTIO_MMIO_WINDOW	0x200	/* registers 0x000-0x0ff, config space from 0x100 */
#define VIRTIO_MMIO_CONFIG	0x100
#define VIRTIO_MMIO_MAX_QUEUES	16

/* What the transport needs from the VMM: guest RAM, the event loop and KVM's eventfd wiring. */
struct virtio_host {
	const struct guest_mem *mem;
	struct event_loop *loop;
	/* Binds fd to 4-byte writes of `datamatch` at addr (KVM_IOEVENTFD); 0 or -errno. */
	int (*ioeventfd)(struct virtio_host *h, uint64_t addr, uint32_t datamatch, int fd, bool assign);
	/* Binds fd to interrupt gsi (KVM_IRQFD); 0 or -errno. */
	int (*irqfd)(struct virtio_host *h, uint32_t gsi, int fd, bool assign);
};

struct virtio_mmio_dev;

/* A queue's notification eventfd (KVM ioeventfd) as an event loop source. */
struct virtio_mmio_kick {
	struct event_source src;
	struct virtio_mmio_dev *dev;
	unsigned int queue;
	bool bound;		/* KVM delivers QueueNotify writes to src.fd */
};

struct virtio_dev_ops {
	const char *name;		/* e.g. "virtio-blk" */
	uint32_t device_id;		/* VIRTIO_ID_* */
	unsigned int nqueues;		/* 1..VIRTIO_MMIO_MAX_QUEUES */
	uint16_t queue_max_size;	/* QueueNumMax, a power of two */
	/* Optional: the driver wrote config space (offset/len are inside config_size). */
	void (*config_write)(struct virtio_mmio_dev *d, uint32_t offset, const void *data, uint32_t len);
	/* The driver kicked queue q; runs on the event loop with d->lock held. */
	void (*queue_notify)(struct virtio_mmio_dev *d, unsigned int q);
	/* Optional: DRIVER_OK was set (features final, queues ready); 0 or -errno (→ NEEDS_RESET). */
	int (*activate)(struct virtio_mmio_dev *d);
	/* Optional: the driver reset the device; drop in-flight state. d->lock held. */
	void (*reset)(struct virtio_mmio_dev *d);
	/* Frees the device (after virtio_mmio_destroy of its transport); the VM calls it last. */
	void (*destroy)(struct virtio_mmio_dev *d);
};

struct virtio_mmio_dev {
	const struct virtio_dev_ops *ops;
	struct virtio_host *host;
	const char *name;		/* instance name for messages, e.g. "virtio-blk0" */
	pthread_mutex_t lock;
	uint64_t base;			/* guest-physical address of the register window */
	uint32_t gsi;

	/* Config space, little-endian as the guest reads it; owned by the device. */
	void *config;
	uint32_t config_size;
	uint32_t config_generation;

	uint64_t device_features;	/* offered: device bits | transport bits */
	uint64_t driver_features;	/* accepted by the driver */
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint32_t status;
	uint32_t isr;			/* InterruptStatus: bit 0 used buffer, bit 1 config change */

	struct virtq queues[VIRTIO_MMIO_MAX_QUEUES];
	struct virtio_mmio_kick kick[VIRTIO_MMIO_MAX_QUEUES];
	int irq_fd;			/* eventfd bound to gsi with irqfd */

	/* Statistics. */
	uint64_t mmio_notifies;		/* QueueNotify writes that took the MMIO exit path */
	uint64_t eventfd_notifies;	/* kicks that arrived through ioeventfds */
	uint64_t interrupts;		/* edges sent on irq_fd */
	uint64_t interrupts_merged;	/* causes folded into an interrupt the driver had not acknowledged */
};

/*
 * Sets up the transport for a device at [base, base + VIRTIO_MMIO_WINDOW)
 * with interrupt gsi, offering device_features plus VERSION_1, INDIRECT_DESC
 * and EVENT_IDX. Creates the eventfds and binds them through host; if KVM
 * cannot bind an ioeventfd, notifications fall back to the MMIO exit path.
 * 0 or -errno.
 */
int virtio_mmio_init(struct virtio_mmio_dev *d, const struct virtio_dev_ops *ops,
		     struct virtio_host *host, const char *name, uint64_t base, uint32_t gsi,
		     uint64_t device_features, void *config, uint32_t config_size);

/* Unbinds and closes the eventfds. The event loop must be stopped or the sources removed first. */
void virtio_mmio_destroy(struct virtio_mmio_dev *d);

/* MMIO handler for the register window (an io_handler_fn; opaque is the virtio_mmio_dev). */
void virtio_mmio_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* After virtq_push(): raises the used-buffer interrupt if the driver wants one. d->lock held. */
void virtio_mmio_signal_used(struct virtio_mmio_dev *d, unsigned int q);

/* Announces a config space change (generation bump, config interrupt). d->lock held. */
void virtio_mmio_signal_config(struct virtio_mmio_dev *d);

/* Marks the device broken (DEVICE_NEEDS_RESET) after a guest error. d->lock held. */
void virtio_mmio_set_needs_reset(struct virtio_mmio_dev *d, const char *why);

/* Whether the driver accepted feature bit `bit`. */
static inline bool virtio_has_feature(const struct virtio_mmio_dev *d, unsigned int bit)
{
	return d->driver_features & (1ULL << bit);
}

/* Whether the device is live: DRIVER_OK set and not DEVICE_NEEDS_RESET. */
bool virtio_mmio_is_active(const struct virtio_mmio_dev *d);

#endif
