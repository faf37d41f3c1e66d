// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-rng: every buffer the driver makes available is filled from the
 * host's getrandom(). Early in host boot the pool may not be ready yet: the
 * request then waits, with /dev/random watched for readiness, instead of
 * being retried in a loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include "virtio/rng.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

static struct virtio_rng *to_rng(struct virtio_mmio_dev *d)
{
	return container_of(d, struct virtio_rng, dev);
}

ssize_t rng_fill(const struct virtq_chain *c, size_t max)
{
	size_t done = 0;

	for (unsigned int i = c->nout; i < c->nout + c->nin && done < max; i++) {
		uint8_t *p = c->iov[i].iov_base;
		size_t len = MIN(c->iov[i].iov_len, max - done), off = 0;

		while (off < len) {
			ssize_t r = getrandom(p + off, len - off, GRND_NONBLOCK);

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				int err = errno;

				virtq_chain_mark_written(c, 0, done);
				return done ? (ssize_t)done : -err;
			}
			off += (size_t)r;
			done += (size_t)r;
		}
	}
	virtq_chain_mark_written(c, 0, done);
	return (ssize_t)done;
}

/*
 * Watches /dev/random (or stops) while a request waits for the host's pool.
 * Without /dev/random the request waits for the guest's next kick instead.
 */
static void rng_wait_for_pool(struct virtio_rng *r, bool wait)
{
	if (!r->random_watched || r->waiting == wait)
		return;
	if (event_loop_modify(r->dev.host->loop, &r->random_src, wait ? EPOLLIN : 0) == 0)
		r->waiting = wait;
}

/* Answers every waiting request. d->lock held. */
static void rng_process(struct virtio_rng *r)
{
	struct virtq *vq = userspace_backend_vq(&r->ub, 0);
	bool pushed = false;

	rng_wait_for_pool(r, false);
	for (;;) {
		ssize_t n;
		int ret = virtq_pop(vq, r->chain);

		if (ret < 0) {
			userspace_backend_error(&r->ub, 0, "malformed request queue");
			break;
		}
		if (ret == 0) {
			virtq_set_notify(vq, true);
			if (virtq_has_work(vq))
				continue;
			break;
		}
		n = rng_fill(r->chain, RNG_CHAIN_MAX);
		if (n == -EAGAIN) {
			virtq_unpop(vq);
			rng_wait_for_pool(r, true);
			break;
		}
		if (n < 0) {
			log_warn("%s: getrandom failed: %s; the request is answered empty",
				 r->dev.name, strerror((int)-n));
			n = 0;
		}
		if (virtq_push(vq, r->chain->head, (uint32_t)n)) {
			userspace_backend_error(&r->ub, 0, "malformed request queue");
			break;
		}
		r->bytes += (uint64_t)n;
		pushed = true;
	}
	if (pushed)
		userspace_backend_signal(&r->ub, 0);
}

/* The userspace back-end's queue handler: the driver added requests. */
static void rng_queue_kick(struct userspace_backend *ub, unsigned int q)
{
	struct virtio_rng *r = container_of(ub, struct virtio_rng, ub);

	if (q == 0 && !r->waiting)
		rng_process(r);
}

static void rng_pool_ready(struct event_source *src, uint32_t events)
{
	struct virtio_rng *r = container_of(src, struct virtio_rng, random_src);

	pthread_mutex_lock(&r->dev.lock);
	if (userspace_backend_running(&r->ub, 0))
		rng_process(r);
	else
		rng_wait_for_pool(r, false);
	pthread_mutex_unlock(&r->dev.lock);
}

static void rng_reset(struct virtio_mmio_dev *d)
{
	rng_wait_for_pool(to_rng(d), false);
}

/* A stopped queue has no request waiting for the pool. */
static void rng_queue_state(struct userspace_backend *ub, unsigned int q, bool running)
{
	if (!running)
		rng_wait_for_pool(container_of(ub, struct virtio_rng, ub), false);
}

static const struct userspace_backend_ops rng_backend_ops = {
	.queue_kick = rng_queue_kick,
	.queue_state = rng_queue_state,
};

void virtio_rng_destroy(struct virtio_rng *r)
{
	if (!r)
		return;
	virtio_mmio_destroy(&r->dev);
	if (r->ub.be.ops)
		r->ub.be.ops->destroy(&r->ub.be);
	if (r->random_watched)
		event_loop_remove_sync(r->dev.host->loop, &r->random_src);
	if (r->random_src.fd >= 0)
		close(r->random_src.fd);
	free(r->chain);
	free(r);
}

static void rng_destroy(struct virtio_mmio_dev *d)
{
	virtio_rng_destroy(to_rng(d));
}

/*
 * Migration: nothing beyond the queue. A request that waited for the host's pool
 * was put back in the ring (virtq_unpop), so the destination pops it again.
 */
#define RNG_STATE_VERSION	1

static int rng_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	sbuf_put_u32(out, RNG_STATE_VERSION);
	return 0;
}

static int rng_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	int ret = virtio_mmio_load_version(d, in, RNG_STATE_VERSION);

	return ret ? ret : sbuf_finish(in);
}

static const struct virtio_dev_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.nqueues = 1,
	.queue_max_size = RNG_QUEUE_SIZE,
	.reset = rng_reset,
	.destroy = rng_destroy,
	.save = rng_save,
	.load = rng_load,
};

int virtio_rng_create(struct virtio_host *host, const char *name, uint64_t base, uint32_t gsi,
		      struct virtio_rng **out)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));
	int ret;

	*out = NULL;
	if (!r || !(r->chain = malloc(sizeof(*r->chain)))) {
		free(r);
		log_error("%s: out of memory — free host memory or drop the device", name);
		return -ENOMEM;
	}
	r->dev.host = host;
	r->random_src.fn = rng_pool_ready;
	r->random_src.fd = open("/dev/random", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (r->random_src.fd >= 0 && event_loop_add(host->loop, &r->random_src, 0) == 0)
		r->random_watched = true;
	else
		log_warn("%s: cannot watch /dev/random (%s); if the host's pool is not ready, "
			 "requests wait for the guest's next one", name, strerror(errno));

	userspace_backend_init(&r->ub, &rng_backend_ops, host->mem, host->loop, &r->dev.lock, 1, 0);
	ret = virtio_mmio_init(&r->dev, &rng_ops, host, name, base, gsi, 0, NULL, 0, &r->ub.be);
	if (ret) {
		log_error("%s: cannot set up the transport: %s — check file and memory limits", name,
			  strerror(-ret));
		virtio_rng_destroy(r);
		return ret;
	}
	*out = r;
	return 0;
}
