/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The queues of a device whose vhost-user back-end is gone for good: the VMM
 * takes them over and answers every request the guest has outstanding with
 * an error, in the device's own terms (a block status byte, a FUSE reply),
 * so that guest programs get EIO instead of waiting for ever. Used by
 * vhost-user-blk (virtio/blk_user.c) and virtio-fs (virtio/fs.c).
 *
 * failq_take_all() finishes, per ready queue, first the chains the dead
 * back-end held (its in-flight area names them, in order, where it has one;
 * else the avail entries after the used index, exact for a back-end that
 * completes in order), then everything not yet taken; it then turns the
 * driver's kicks back on (the back-end may have left them off) and watches
 * them, so each new request fails too. Interrupts go through the transport's
 * raise(). A driver reset stops the watching (failq_release); a restarted
 * device is taken over again (failq_take).
 *
 * Threads: every call with the device lock held, but failq_fini (no lock:
 * it waits for a kick being served on the event loop). Kicks are served on
 * the event loop thread, which takes the device lock.
 */
#ifndef VIRTIO_FAILQ_H
#define VIRTIO_FAILQ_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/mmio.h"
#include "virtio/virtq.h"

/*
 * Writes the device's error answer into chain c (marking what it writes dirty
 * in c->mem) and returns the bytes written into its writable part.
 */
typedef uint32_t (*failq_chain_fn)(const struct virtq_chain *c);

struct failq_set;

/* One queue served by the VMM after the back-end died. */
struct failq {
	struct failq_set *set;
	unsigned int q;
	struct event_source kick;
	bool watched;
	struct virtq vq;
};

struct failq_set {
	struct virtio_mmio_dev *dev;
	failq_chain_fn fail_chain;
	unsigned int nqueues;
	struct failq *q;		/* nqueues */
	struct virtq_chain *chain;	/* scratch */
	uint16_t *lost;			/* VIRTQ_MAX_SIZE heads, scratch */
};

/* Sets s up for dev's first nqueues queues; 0 or -ENOMEM. */
int failq_init(struct failq_set *s, struct virtio_mmio_dev *dev, unsigned int nqueues,
	       failq_chain_fn fail_chain);

/* Stops watching kicks (waiting for one being served) and frees s's memory. */
void failq_fini(struct failq_set *s);

/* Takes every ready queue over from the dead back-end be (see above). */
void failq_take_all(struct failq_set *s, struct virtio_backend *be);

/* Takes queue q over, failing the nlost chains at lost first, then the rest. */
void failq_take(struct failq_set *s, unsigned int q, const uint16_t *lost, unsigned int nlost);

/* Stops watching every queue's kicks (a driver reset). */
void failq_release(struct failq_set *s);

#endif
