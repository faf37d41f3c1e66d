/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The userspace (in-process) back-end: the data path of a device's queues run
 * by the VMM itself, on its event loop thread. Each device (blk, net, rng,
 * console) embeds one and supplies its queue handler; this helper does what
 * is the same for all of them behind the seam of virtio/backend.h: it starts
 * a struct virtq from the transport's queue state and gives the position back
 * on stop, watches the queue's kick eventfd on the event loop while the queue
 * runs, takes the device lock around the device's handler, and turns "used
 * buffers pushed" into a call when the driver wants one.
 *
 * Threads: queue handlers run on the event loop thread with the device lock
 * held; start/stop come from the transport with the same lock held.
 */
#ifndef VIRTIO_USERSPACE_H
#define VIRTIO_USERSPACE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/backend.h"
#include "virtio/virtq.h"
#include "vmm/base/event_loop.h"
#include "vmm/base/guest_mem.h"

struct userspace_backend;

struct userspace_backend_ops {
	/* Queue q may have work (a kick): pop, process, push, userspace_backend_signal(). */
	void (*queue_kick)(struct userspace_backend *ub, unsigned int q);
	/* Optional: queue q started (running) or stopped, e.g. to watch or forget a tap. */
	void (*queue_state)(struct userspace_backend *ub, unsigned int q, bool running);
};

/* One queue while the back-end has it. */
struct userspace_queue {
	struct virtq vq;		/* ready only while started */
	struct event_source kick;	/* the transport's kick eventfd, watched while started */
	struct virtio_call *call;	/* the transport's, while started */
	struct userspace_backend *ub;
	unsigned int index;
	bool started;
};

struct userspace_backend {
	struct virtio_backend be;	/* the seam's generic part */
	const struct userspace_backend_ops *ops;
	const struct guest_mem *mem;
	struct event_loop *loop;
	pthread_mutex_t *lock;		/* the device's lock (struct virtio_mmio_dev's) */
	uint64_t features;		/* what the data path can serve */
	uint64_t driver_features;	/* what the driver accepted (set at DRIVER_OK) */
	unsigned int nqueues;
	struct userspace_queue queues[VIRTIO_BACKEND_MAX_QUEUES];
};

/*
 * Sets up ub for nqueues queues (at most VIRTIO_BACKEND_MAX_QUEUES) whose data
 * path is ops; features are the device bits the data path serves (the ring
 * bits and VERSION_1 are added); lock is the device's lock.
 */
void userspace_backend_init(struct userspace_backend *ub, const struct userspace_backend_ops *ops,
			    const struct guest_mem *mem, struct event_loop *loop,
			    pthread_mutex_t *lock, unsigned int nqueues, uint64_t features);

/* Stops watching whatever is still watched; ub can be freed afterwards. */
void userspace_backend_fini(struct userspace_backend *ub);

/* The running queue q's ring (not ready while the queue is stopped). */
static inline struct virtq *userspace_backend_vq(struct userspace_backend *ub, unsigned int q)
{
	return &ub->queues[q].vq;
}

/* Whether the transport has started queue q (the device is live and the queue ready). */
bool userspace_backend_running(const struct userspace_backend *ub, unsigned int q);

/* Whether the driver accepted feature bit `bit` (valid from DRIVER_OK on). */
bool userspace_backend_has_feature(const struct userspace_backend *ub, unsigned int bit);

/* After pushes on queue q: raises the used-buffer interrupt if the driver wants one. */
void userspace_backend_signal(struct userspace_backend *ub, unsigned int q);

/*
 * Reports queue q unusable (a guest error): the device needs a reset and every
 * queue is stopped, this one included, before this returns.
 */
void userspace_backend_error(struct userspace_backend *ub, unsigned int q, const char *why);

#endif
