// SPDX-License-Identifier: GPL-2.0-only
/*
 * The userspace back-end helper (see virtio/userspace.h): the seam's ops over
 * a device's queue handler.
 */
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "virtio/userspace.h"
#include "vmm/base/util.h"

/* What any userspace data path serves on top of the device's bits: ring layouts and VERSION_1. */
#define USERSPACE_RING_FEATURES \
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
	 (1ULL << VIRTIO_RING_F_EVENT_IDX))

static struct userspace_backend *to_ub(struct virtio_backend *be)
{
	return container_of(be, struct userspace_backend, be);
}

bool userspace_backend_running(const struct userspace_backend *ub, unsigned int q)
{
	return q < ub->nqueues && ub->queues[q].started;
}

bool userspace_backend_has_feature(const struct userspace_backend *ub, unsigned int bit)
{
	return ub->driver_features & (1ULL << bit);
}

void userspace_backend_signal(struct userspace_backend *ub, unsigned int q)
{
	struct userspace_queue *uq = &ub->queues[q];

	if (userspace_backend_running(ub, q) && virtq_should_notify(&uq->vq))
		uq->call->raise(uq->call);
}

void userspace_backend_error(struct userspace_backend *ub, unsigned int q, const char *why)
{
	if (userspace_backend_running(ub, q))
		ub->queues[q].call->error(ub->queues[q].call, why);
}

/* The queue's kick eventfd fired: runs the device's handler under the device lock. */
static void userspace_kick(struct event_source *src, uint32_t events)
{
	struct userspace_queue *uq = container_of(src, struct userspace_queue, kick);
	struct userspace_backend *ub = uq->ub;
	uint64_t v;

	(void)events;
	if (read(src->fd, &v, sizeof(v)) < 0)
		return;
	pthread_mutex_lock(ub->lock);
	if (uq->started) {
		uq->call->kicks++;
		ub->ops->queue_kick(ub, uq->index);
		/* A handler that missed a broken ring still gets the device reset. */
		if (uq->started && uq->vq.broken)
			userspace_backend_error(ub, uq->index, "malformed virtqueue");
	}
	pthread_mutex_unlock(ub->lock);
}

static uint64_t userspace_features(struct virtio_backend *be)
{
	return to_ub(be)->features;
}

static int userspace_set_features(struct virtio_backend *be, uint64_t features)
{
	to_ub(be)->driver_features = features;
	return 0;
}

static int userspace_start(struct virtio_backend *be, unsigned int q,
			   const struct virtq_state *state, int kick_fd, struct virtio_call *call)
{
	struct userspace_backend *ub = to_ub(be);
	struct userspace_queue *uq;
	int ret;

	if (q >= ub->nqueues)
		return -EINVAL;
	uq = &ub->queues[q];
	if (uq->started)
		return -EBUSY;
	ret = virtq_start_from(&uq->vq, ub->mem, state);
	if (ret)
		return ret;
	uq->kick.fd = kick_fd;
	uq->kick.fn = userspace_kick;
	ret = event_loop_add(ub->loop, &uq->kick, EPOLLIN);
	if (ret) {
		virtq_reset(&uq->vq, ub->mem);
		return ret;
	}
	uq->call = call;
	uq->started = true;
	if (ub->ops->queue_state)
		ub->ops->queue_state(ub, q, true);
	return 0;
}

static void userspace_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *state)
{
	struct userspace_backend *ub = to_ub(be);
	struct userspace_queue *uq;

	if (q >= ub->nqueues || !ub->queues[q].started)
		return;
	uq = &ub->queues[q];
	event_loop_remove(ub->loop, &uq->kick);
	uq->kick.fd = -1;
	/* Handlers publish what they add before they return: used_idx is the whole position. */
	virtq_publish_used(&uq->vq);
	virtq_save(&uq->vq, state);
	/* Not ready: a handler still on the stack (stop from error()) pops and pushes nothing. */
	virtq_reset(&uq->vq, ub->mem);
	uq->started = false;
	uq->call = NULL;
	if (ub->ops->queue_state)
		ub->ops->queue_state(ub, q, false);
}

static void userspace_destroy(struct virtio_backend *be)
{
	userspace_backend_fini(to_ub(be));
}

static const struct virtio_backend_ops userspace_backend_ops = {
	.name = "userspace",
	.features = userspace_features,
	.set_features = userspace_set_features,
	.start = userspace_start,
	.stop = userspace_stop,
	.destroy = userspace_destroy,
};

void userspace_backend_init(struct userspace_backend *ub, const struct userspace_backend_ops *ops,
			    const struct guest_mem *mem, struct event_loop *loop,
			    pthread_mutex_t *lock, unsigned int nqueues, uint64_t features)
{
	ub->be.ops = &userspace_backend_ops;
	ub->ops = ops;
	ub->mem = mem;
	ub->loop = loop;
	ub->lock = lock;
	ub->features = features | USERSPACE_RING_FEATURES;
	ub->driver_features = 0;
	ub->nqueues = MIN(nqueues, (unsigned int)VIRTIO_BACKEND_MAX_QUEUES);
	for (unsigned int q = 0; q < VIRTIO_BACKEND_MAX_QUEUES; q++) {
		struct userspace_queue *uq = &ub->queues[q];

		virtq_reset(&uq->vq, mem);
		uq->kick = (struct event_source){ .fd = -1 };
		uq->call = NULL;
		uq->ub = ub;
		uq->index = q;
		uq->started = false;
	}
}

void userspace_backend_fini(struct userspace_backend *ub)
{
	for (unsigned int q = 0; q < ub->nqueues; q++) {
		struct userspace_queue *uq = &ub->queues[q];

		if (uq->started && uq->kick.fd >= 0)
			event_loop_remove_sync(ub->loop, &uq->kick);
		uq->kick.fd = -1;
		uq->started = false;
	}
}
