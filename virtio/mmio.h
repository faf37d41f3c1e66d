/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The virtio-mmio version 2 transport (VIRTIO 1.x §4.2), shared by every
 * device. A device model embeds struct virtio_mmio_dev, supplies a const ops
 * table, its config space and a back-end for its queues' data path, and gets
 * back to itself with container_of(). Who owns what between the transport
 * and the back-end is in virtio/backend.h: the transport keeps each queue's
 * configuration (struct virtq_state), starts the back-end's queues at
 * DRIVER_OK and stops them on reset, DEVICE_NEEDS_RESET and teardown.
 *
 * Hot paths stay off the VMM's MMIO exit path: each queue's QueueNotify is a
 * KVM ioeventfd (datamatch = queue index) that the back-end waits on, and the
 * device's interrupt is an eventfd bound to its GSI with KVM irqfd.
 *
 * The interrupt acts as a level-triggered line driven by InterruptStatus (for
 * used-buffer, config and NEEDS_RESET causes alike): one irqfd edge when
 * InterruptStatus becomes non-zero, none while the driver has not
 * acknowledged, another when its acknowledgement leaves bits set.
 *
 * Direct interrupt mode, for back-ends that signal the irqfd themselves
 * (ops->signals_irqfd: kernel vhost and vhost-user, whose call fd for every
 * ring is the device's irqfd, so no interrupt wakes the VMM):
 *   - InterruptStatus reads VIRTIO_MMIO_INT_VRING whenever the device is live
 *     (DRIVER_OK without NEEDS_RESET), or'ed with the bits the transport keeps
 *     (CONFIG, and VRING from a raise()). The transport cannot know when the
 *     back-end wrote the irqfd, and Linux's vm_interrupt() looks at its
 *     queues only if it reads VRING: reading 0 it would return IRQ_NONE and
 *     drop the used buffers on the floor until some later interrupt.
 *   - So every interrupt makes the driver run vring_interrupt() on each queue;
 *     a queue with nothing new costs one check of its used index. No
 *     interrupt is lost: the back-end publishes used->idx before it writes
 *     the irqfd, and an edge that arrives while the handler runs is latched
 *     by the (edge-triggered, see the DSDT) interrupt controller and runs the
 *     handler again.
 *   - Spurious interrupts stay rare: vhost writes the call fd only after it
 *     published used buffers the driver asked to hear about, so nearly every
 *     interrupt finds work (an edge latched behind one whose handler already
 *     reaped everything finds none). Linux disables an IRQ only when about
 *     99.9% of 100000 interrupts go unhandled (kernel/irq/spurious.c); an IRQ
 *     of its own per device (no sharing) keeps other devices out of the count.
 *   - Config changes and NEEDS_RESET work as in the level mode: the CONFIG bit
 *     is set, the irqfd written if nothing was pending, and the driver's
 *     acknowledgement clears it. The VRING bit reported for the back-end's
 *     interrupts is not stored: acknowledging it changes nothing.
 *   - VRING is reported while the device is live even if its queues are paused
 *     (migration), so an interrupt the back-end sent just before the pause is
 *     still handled when the guest gets to it.
 * This is Firecracker's choice for its vhost-user devices; QEMU's and
 * kvmtool's virtio-mmio instead service every call fd in the VMM, which puts
 * a VMM wake-up on every interrupt.
 *
 * Lost interrupts are sent again (virtio_mmio_irq_watch). An edge is all the
 * guest gets: if it is lost on the way (seen under nested KVM: a userspace net
 * queue with InterruptStatus set that the driver never read again, and a
 * vhost-user-blk ring answered past the driver's used_event with no interrupt
 * taken), a line that stays high is not there to deliver it again, as QEMU's
 * level-triggered one is after the guest's EOI. So a timer, armed only while
 * something may be owed, looks again:
 *   - InterruptStatus non-zero and not read by the driver for a whole period
 *     (VIRTIO_MMIO_RESEND_MS): the edge is sent again. The level mode arms it
 *     with every edge it sends, so it runs only while interrupts flow.
 *   - Direct mode, while the device runs, every VIRTIO_MMIO_DIRECT_WATCH_MS: a
 *     queue (with EVENT_IDX, which Linux always takes) whose used index is past
 *     the driver's used_event, with neither index nor the driver's offer moved
 *     since the previous look, gets an edge. That costs the VMM one wake-up per
 *     period per vhost device, not one per I/O.
 * A resend the guest did not need reads InterruptStatus as usual and finds the
 * queues with nothing new: one unhandled interrupt, far from Linux's limit.
 *
 * Threads: register accesses come from vCPU threads; the userspace back-end's
 * queue handlers run on the event loop thread. Both hold d->lock, so a reset
 * never races with I/O. A back-end with threads of its own (virtio-blk's disk
 * workers) does its I/O without d->lock, takes it only around call->raise(),
 * and finishes its I/O in stop(), which the transport calls with d->lock held.
 */
#ifndef VIRTIO_MMIO_H
#define VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/backend.h"
#include "virtio/virtq.h"
#include "vmm/base/event_loop.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/sbuf.h"

#define VIRTIO_MMIO_WINDOW	0x200	/* registers 0x000-0x0ff, config space from 0x100 */
#define VIRTIO_MMIO_CONFIG	0x100
#define VIRTIO_MMIO_MAX_QUEUES	VIRTIO_BACKEND_MAX_QUEUES

/* What the transport needs from the VMM: guest RAM, the event loop and KVM's eventfd wiring. */
struct virtio_host {
	const struct guest_mem *mem;
	struct event_loop *loop;
	/* Binds fd to 4-byte writes of `datamatch` at addr (KVM_IOEVENTFD); 0 or -errno. */
	int (*ioeventfd)(struct virtio_host *h, uint64_t addr, uint32_t datamatch, int fd, bool assign);
	/* Binds fd to interrupt gsi (KVM_IRQFD); 0 or -errno. */
	int (*irqfd)(struct virtio_host *h, uint32_t gsi, int fd, bool assign);
	/* Data paths outside the VMM (kernel vhost ...) devices may use; NULL: none. */
	const struct virtio_offload *offload;
	/*
	 * The VM waits for an incoming migration: devices take nothing only one host may
	 * hold (a disk image's lock) until their switchover(true).
	 */
	bool incoming;
};

struct virtio_mmio_dev;

/* The transport's side of one queue. */
struct virtio_mmio_queue {
	struct virtio_call call;	/* lent to the back-end while the queue is started */
	struct virtio_mmio_dev *dev;
	int kick_fd;			/* eventfd: KVM's QueueNotify ioeventfd, MMIO kicks */
	bool kick_bound;		/* KVM delivers QueueNotify writes to kick_fd */
	bool started;			/* the back-end has the queue */
	/* Direct mode's watchdog: the ring as its last look saw it, and whether an interrupt was owed. */
	uint16_t watch_avail, watch_used, watch_event;
	bool watch_owed;
};

struct virtio_dev_ops {
	const char *name;		/* e.g. "virtio-blk" */
	uint32_t device_id;		/* VIRTIO_ID_* */
	unsigned int nqueues;		/* 1..VIRTIO_MMIO_MAX_QUEUES */
	uint16_t queue_max_size;	/* QueueNumMax, a power of two */
	/* Optional: the driver wrote config space (offset/len are inside config_size). */
	void (*config_write)(struct virtio_mmio_dev *d, uint32_t offset, const void *data, uint32_t len);
	/*
	 * Optional: DRIVER_OK was set (features final, queues ready), before the back-end
	 * starts the queues; 0 or -errno (→ NEEDS_RESET). d->lock held.
	 */
	int (*activate)(struct virtio_mmio_dev *d);
	/* Optional: the driver reset the device (queues already stopped). d->lock held. */
	void (*reset)(struct virtio_mmio_dev *d);
	/*
	 * Optional: logs (log_notice) the model's own view of its queues, after the
	 * transport's lines in virtio_mmio_log_queues(). d->lock held.
	 */
	void (*log_state)(struct virtio_mmio_dev *d);
	/* Tears down the transport (virtio_mmio_destroy) and frees the device and its back-end. */
	void (*destroy)(struct virtio_mmio_dev *d);
	/*
	 * Optional, migration: the model's own state beyond the transport's (e.g. a
	 * frame held for a slow guest, a console's pending input). save runs with the
	 * queues paused and d->lock held; load runs on a device created with the same
	 * options, after the transport's state was loaded and before its queues resume.
	 * 0 or -errno (-EINVAL: the saved state does not fit this device).
	 */
	int (*save)(struct virtio_mmio_dev *d, struct sbuf *out);
	int (*load)(struct virtio_mmio_dev *d, struct sbuf *in);
	/*
	 * Optional, migration: active=false: the source's guest is paused for good, give up
	 * what only one host may hold (blk: the image's lock) for the destination to take;
	 * active=true: take it (the destination before its guest runs, or the source again
	 * after a failed migration). 0 or -errno (-EBUSY: someone else holds it).
	 */
	int (*switchover)(struct virtio_mmio_dev *d, bool active);
	/*
	 * Optional: after a load, at the first virtio_mmio_resume() that follows it, once the
	 * queues of a live device run again (vsock: the transport-reset event). Runs whether or
	 * not the device is live. d->lock held.
	 */
	void (*loaded)(struct virtio_mmio_dev *d);
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

	uint64_t device_features;	/* offered: (device bits | transport bits) & back-end's */
	uint64_t driver_features;	/* accepted by the driver */
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint32_t status;
	uint32_t isr;			/* InterruptStatus: bit 0 used buffer, bit 1 config change */

	/* What the driver configured; while started, the back-end has the position. */
	struct virtq_state queues[VIRTIO_MMIO_MAX_QUEUES];
	struct virtio_mmio_queue q[VIRTIO_MMIO_MAX_QUEUES];
	struct virtio_backend *backend;	/* the data path of the queues; owned by the device */
	bool running;			/* the back-end's queues are started (live device) */
	/*
	 * What holds a live device's queues stopped; they run only when neither does:
	 * vm_paused, the VM (virtio_mmio_pause, and a load until the resume after it);
	 * backend_away, its back-end is gone and awaited (virtio_mmio_backend_away).
	 * backend_returned: it came back while the VM held the device; the interrupt it
	 * owes goes out with the VM's resume.
	 */
	bool vm_paused, backend_away, backend_returned;
	bool irq_direct;		/* direct interrupt mode (above): backend->ops->signals_irqfd */
	int irq_fd;			/* eventfd bound to gsi with irqfd */

	/* Migration: a load happened and the resume that follows it has not yet run. */
	bool load_pending;
	/* Only while ops->load runs: the config space as created here (see virtio_mmio_load). */
	const void *config_before_load;

	/* The interrupt watchdog (above, and virtio_mmio_irq_watch). */
	struct event_source irq_watch_src;	/* timerfd; fd -1 without an event loop */
	bool irq_watch_armed;
	uint64_t isr_reads;		/* InterruptStatus reads by the driver */
	uint64_t isr_reads_armed;	/* isr_reads when the watchdog was armed */
	/* Testing: the transport's edge number drop_interrupt is not sent (VMM_DROP_INTERRUPT). */
	uint64_t drop_interrupt;

	/* Statistics (kicks by ioeventfd: virtio_mmio_eventfd_notifies()). */
	uint64_t mmio_notifies;		/* QueueNotify writes that took the MMIO exit path */
	uint64_t interrupts;		/* edges the transport sent on irq_fd (not a back-end's own) */
	uint64_t interrupts_merged;	/* causes folded into an interrupt the driver had not acknowledged */
	uint64_t interrupts_resent;	/* edges the watchdog sent again (counted in interrupts too) */
};

/*
 * Sets up the transport for a device at [base, base + VIRTIO_MMIO_WINDOW)
 * with interrupt gsi, offering device_features plus VERSION_1, INDIRECT_DESC
 * and EVENT_IDX, less what backend cannot do. Creates the eventfds and binds
 * them through host; if KVM cannot bind an ioeventfd, notifications fall back
 * to the MMIO exit path (onto the same eventfd). 0 or -errno.
 */
int virtio_mmio_init(struct virtio_mmio_dev *d, const struct virtio_dev_ops *ops,
		     struct virtio_host *host, const char *name, uint64_t base, uint32_t gsi,
		     uint64_t device_features, void *config, uint32_t config_size,
		     struct virtio_backend *backend);

/* Stops the back-end's queues, unbinds and closes the eventfds; safe to call twice. */
void virtio_mmio_destroy(struct virtio_mmio_dev *d);

/* MMIO handler for the register window (an io_handler_fn; opaque is the virtio_mmio_dev). */
void virtio_mmio_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/*
 * Statistics: kick wake-ups an in-process back-end handled on the queues KVM
 * delivers QueueNotify to by ioeventfd (with the transport's own kick at each
 * resume; MMIO-path kicks are counted in mmio_notifies).
 */
uint64_t virtio_mmio_eventfd_notifies(const struct virtio_mmio_dev *d);

/*
 * Logs (whether verbose or not) where each ready queue stands as guest memory
 * shows it — the driver's offered index and interrupt wish, the used index
 * published by whoever serves the queue (this VMM or a vhost back-end) — with
 * the device status and InterruptStatus: for a guest that seems stuck.
 */
void virtio_mmio_log_queues(struct virtio_mmio_dev *d);

/*
 * The interrupt watchdog's look (see the top of this file), run by its timer on
 * the event loop thread; sends the device's interrupt again if the driver has
 * missed one, and re-arms the timer while something may still be owed.
 * Returns whether it sent one. d->lock held.
 *
 * For tests, VMM_DROP_INTERRUPT=NAME:N in the environment makes device NAME's
 * transport skip its Nth interrupt edge (drop_interrupt_for), as if it were lost.
 */
bool virtio_mmio_irq_watch(struct virtio_mmio_dev *d);

#define VIRTIO_MMIO_RESEND_MS		250	/* InterruptStatus unread this long: sent again */
#define VIRTIO_MMIO_DIRECT_WATCH_MS	1000	/* direct mode: how often the rings are looked at */

/* Announces a config space change (generation bump, config interrupt). d->lock held. */
void virtio_mmio_signal_config(struct virtio_mmio_dev *d);

/*
 * The VM pauses the device (vm_pause, a migration's stop-and-copy): takes the
 * back-end's queues back, their positions kept in d->queues (for a save); the
 * driver sees no change. Until virtio_mmio_resume() nothing restarts them — not
 * a back-end that comes back (virtio_mmio_backend_returned), nor DRIVER_OK.
 * d->lock held.
 */
void virtio_mmio_pause(struct virtio_mmio_dev *d);

/*
 * The VM resumes the device: restarts a live device's queues from d->queues
 * (their saved or migrated positions), each kicked once — unless its back-end
 * is away (virtio_mmio_backend_away): then they start when it comes back. Does
 * nothing to queues that run. A queue the back-end cannot start sets
 * DEVICE_NEEDS_RESET. The first call after virtio_mmio_load() also finishes the
 * load (see there: an interrupt edge if one may be owed, then ops->loaded),
 * live or not. d->lock held.
 */
void virtio_mmio_resume(struct virtio_mmio_dev *d);

/*
 * The device's back-end is gone and its model waits for it to come back
 * (vhost-user-blk's reconnect=): takes the queues back as virtio_mmio_pause()
 * does, and holds them for the back-end: neither the VM's resume nor DRIVER_OK
 * restarts them until virtio_mmio_backend_returned(). d->lock held.
 */
void virtio_mmio_backend_away(struct virtio_mmio_dev *d);

/*
 * The back-end is back: restarts a live device's queues as virtio_mmio_resume()
 * does and sends one used-buffer interrupt (the dead back-end may have
 * published used buffers it never signalled, and the driver, waiting for them,
 * would send nothing more) — unless the VM has paused the device: then both
 * wait for the VM's virtio_mmio_resume(). d->lock held.
 */
void virtio_mmio_backend_returned(struct virtio_mmio_dev *d);

/*
 * ---- Migration ----
 * A device's saved state (all integers little-endian; docs/migration.md, "Device
 * state", has every model's part):
 *
 *   u32 VIRTIO_MMIO_STATE_VERSION
 *   u32 device id, u32 queue count, u32 config size, u16 QueueNumMax   (the device's shape)
 *   u8  direct interrupt mode of the source (0/1)
 *   u64 device features (the source's offer), u64 driver features
 *   u32 DeviceFeaturesSel, DriverFeaturesSel, QueueSel, Status, InterruptStatus,
 *       ConfigGeneration
 *   config space (config size bytes, as the driver reads it)
 *   per queue: u16 size, u64 desc, u64 avail, u64 used, u8 ready, u8 event_idx,
 *       u8 indirect, u16 last_avail_idx, u16 used_idx, u16 signalled_used,
 *       u8 signalled_used_valid   (struct virtq_state)
 *   u32 length, then that many bytes of the model's own state (ops->save; 0 without)
 */
#define VIRTIO_MMIO_STATE_VERSION	1

/*
 * Saves the transport's registers, config space, every queue's struct virtq_state
 * and, through ops->save, the model's own state into out (layout above). The
 * device must be paused (virtio_mmio_pause) or not live: -EBUSY while its queues
 * run. 0 or -errno (logged). d->lock held.
 */
int virtio_mmio_save(struct virtio_mmio_dev *d, struct sbuf *out);

/*
 * Loads virtio_mmio_save()'s output into d, a device created with the same options
 * on the destination whose queues do not run (-EBUSY otherwise). Refuses, with
 * nothing changed and the reason logged:
 *   -EPROTONOSUPPORT  another format version;
 *   -EBADMSG          truncated, trailing bytes, a bool that is not 0/1;
 *   -EINVAL           another device id, queue count, config size or QueueNumMax; values
 *                     that fail the checks the driver's writes get (a queue larger than
 *                     QueueNumMax, a ready queue whose size is not a power of two or whose
 *                     rings are not in guest RAM, ring features or driver features this
 *                     device does not offer, unknown status or InterruptStatus bits, a
 *                     live device without FEATURES_OK); model bytes for a model without
 *                     ops->load; or the model's own refusal (ops->load's -errno);
 *   the back-end's -errno  its set_features() refused the driver's features.
 * On success the registers read as the driver left them on the source, except the
 * device features, which stay this device's own (the driver's must be a subset);
 * the config space is the source's (the model's load may check it against
 * config_before_load or put parts of that back); a live device has its back-end's
 * features set (set_features, so a back-end can take its internal state next) and
 * stays paused, as by virtio_mmio_pause() (a back-end that reconnects meanwhile
 * does not start it). The caller then calls virtio_mmio_resume() once, live or not: it
 * starts the queues from the loaded positions, each kicked once, sends one
 * interrupt edge if the source left a cause pending (or, in direct interrupt mode,
 * whenever the device is live), then runs ops->loaded.
 *
 * Direct interrupt mode is this device's own (its back-end's signals_irqfd), never
 * the source's: a live device saved in direct mode and loaded into one in the
 * level mode gets the used-buffer bit in InterruptStatus, since the source's
 * back-end may have signalled used buffers the transport never saw.
 *
 * ops->load runs after the transport's registers and config space are in place,
 * with d->config_before_load pointing at this device's config space as it was
 * created; it must check everything before it changes anything (sbuf_finish()
 * included). If it fails, the transport puts its registers and config space back.
 * d->lock held.
 */
int virtio_mmio_load(struct virtio_mmio_dev *d, struct sbuf *in);

/*
 * For the models' ops->save/load, so every model's state has one shape: a u32
 * format version of the model's own, then its fields.
 * virtio_mmio_load_version() reads that version: 0 if it is `version`,
 * -EBADMSG if the state is truncated, -EPROTONOSUPPORT for another version
 * (logged).
 */
int virtio_mmio_load_version(const struct virtio_mmio_dev *d, struct sbuf *in, uint32_t version);

/*
 * During ops->load: 0 if the config space loaded from the source equals the one
 * this device was created with (config_before_load), else -EINVAL after logging
 * that `what` differs (e.g. "the disk's size") — for models whose config space
 * is fixed by the options and the host's resources.
 */
int virtio_mmio_load_config_same(const struct virtio_mmio_dev *d, const char *what);

/* Marks the device broken (DEVICE_NEEDS_RESET) after a guest error, stops its queues. Lock held. */
void virtio_mmio_set_needs_reset(struct virtio_mmio_dev *d, const char *why);

/*
 * A device's only back-end died (why) and nothing else can serve its queues:
 * logs it with what that means for the guest (effect) and sets
 * DEVICE_NEEDS_RESET. Takes d->lock (call it without).
 */
void virtio_mmio_backend_gone(struct virtio_mmio_dev *d, const char *why, const char *effect);

/* Whether the driver accepted feature bit `bit`. */
static inline bool virtio_has_feature(const struct virtio_mmio_dev *d, unsigned int bit)
{
	return d->driver_features & (1ULL << bit);
}

/* Whether the device is live: DRIVER_OK set and not DEVICE_NEEDS_RESET. */
bool virtio_mmio_is_active(const struct virtio_mmio_dev *d);

#endif
