/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-rng / entropy device (VIRTIO 1.x §5.4). Private to virtio/rng.c and
 * its unit tests; the VM uses virtio/devices.h. The device model has no
 * config space; its userspace back-end (virtio/userspace.h) fills requests.
 */
#ifndef VIRTIO_RNG_H
#define VIRTIO_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "virtio/mmio.h"
#include "virtio/userspace.h"

#define RNG_QUEUE_SIZE		256
#define RNG_CHAIN_MAX		(64 * 1024)	/* bytes per request; the rest stays unwritten */

struct virtio_rng {
	struct virtio_mmio_dev dev;	/* transport */
	struct userspace_backend ub;	/* the request queue's data path */
	/* /dev/random turns readable once the host's pool is ready: watched only while we wait for it. */
	struct event_source random_src;
	bool random_watched;
	bool waiting;			/* getrandom() said EAGAIN; a chain is kept for later */
	struct virtq_chain *chain;
	uint64_t bytes;			/* handed to the guest */
};

/*
 * Fills c's writable segments, at most max bytes, with random bytes from
 * getrandom(GRND_NONBLOCK). Returns the bytes written (0 for a chain without
 * writable bytes), or -EAGAIN if the host's pool is not ready yet and nothing
 * was written. The bytes written are marked dirty (virtq_chain_mark_written).
 */
ssize_t rng_fill(const struct virtq_chain *c, size_t max);

/* Creates the device (see virtio/devices.h): 0 with *out set, or -errno after log_error(). */
int virtio_rng_create(struct virtio_host *host, const char *name, uint64_t base, uint32_t gsi,
		      struct virtio_rng **out);

/* Tears down the transport and the back-end and frees r; NULL is ignored. */
void virtio_rng_destroy(struct virtio_rng *r);

#endif
