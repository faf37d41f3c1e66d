/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-blk internals (VIRTIO 1.x §5.2), visible so the request handling can
 * be unit-tested without KVM. The VM creates disks through virtio/devices.h.
 *
 * The device model (config space, features) and its userspace back-end (the
 * data path of its queues, virtio/userspace.h) live in struct virtio_blk.
 * Requests are handled synchronously on the event loop thread with the
 * device lock held, so one scratch chain and iovec array per device are
 * enough, and there is never more than one request in flight. An
 * asynchronous I/O engine plugs in at the queue handler (blk_queue_kick in
 * blk.c): it takes popped chains and completes them later with virtq_push()
 * and userspace_backend_signal() under the device lock (ub.lock), and must
 * finish what is in flight before a stopping queue's position is saved (a
 * saved struct virtq_state holds no request in flight): that needs a drain
 * step in userspace_stop() before virtq_save(), which today's synchronous
 * handler does not need.
 */
#ifndef VIRTIO_BLK_H
#define VIRTIO_BLK_H

#include <linux/virtio_blk.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/mmio.h"
#include "virtio/options.h"
#include "virtio/userspace.h"
#include "virtio/virtq.h"
#include "vmm/base/log.h"

#define BLK_SECTOR_SIZE		512
#define BLK_NUM_QUEUES		4		/* VIRTIO_BLK_F_MQ: num_queues */
#define BLK_QUEUE_SIZE		256		/* QueueNumMax */
#define BLK_SEG_MAX		(BLK_QUEUE_SIZE - 2)	/* ring minus header and status */
#define BLK_MAX_DISCARD_SECTORS	(1u << 22)	/* 2 GiB per discard segment */
#define BLK_MAX_ZEROES_SECTORS	(1u << 16)	/* 32 MiB per write-zeroes segment */
#define BLK_MAX_DWZ_SEG		1		/* segments per discard / write-zeroes request */
#define BLK_DISCARD_ALIGN	8		/* discard_sector_alignment hint: 4 KiB */
#define BLK_BOUNCE_SIZE		(256u << 10)	/* aligned bounce buffer and zero-fill chunk */

struct virtio_blk {
	struct virtio_mmio_dev dev;		/* transport: registers, config, features */
	struct userspace_backend ub;		/* the queues' data path */
	struct virtio_blk_config config;	/* little-endian, as the guest reads it */
	uint64_t features;			/* VIRTIO_BLK_F_* offered */
	char *name;				/* instance name for messages */

	/* Back-end. */
	int fd;
	bool readonly;
	bool direct;				/* opened O_DIRECT */
	bool is_bdev;				/* a block device rather than a regular file */
	bool no_fallocate;			/* no fallocate(): write zeros by hand */
	bool no_discard;			/* no hole punching: discard is a no-op */
	uint64_t size;				/* bytes, a multiple of BLK_SECTOR_SIZE */
	uint32_t blk_size;			/* logical block size offered to the guest */
	uint32_t dio_align;			/* O_DIRECT offset/length/buffer alignment */
	char id[VIRTIO_BLK_ID_BYTES];		/* GET_ID answer, zero-padded */
	uint8_t *bounce;			/* BLK_BOUNCE_SIZE bytes aligned to dio_align */

	struct log_ratelimit rl;		/* guest-triggered warnings */

	/* Scratch for the request being handled (too big for the stack). */
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_IOV];
};

/*
 * Opens o->path, checks it and fills b's back-end fields, config space and
 * features (everything but the transport). On failure logs the error (what
 * went wrong — what to do) and returns -errno with nothing left open.
 */
int virtio_blk_init(struct virtio_blk *b, const struct blk_options *o, const char *name);

/* Closes the image and frees what virtio_blk_init allocated; safe after a failed init. */
void virtio_blk_fini(struct virtio_blk *b);

/*
 * Handles one request chain: header and data from its readable segments, data
 * and the status byte (the last writable byte) into its writable ones. Never
 * trusts the chain's contents. Returns the VIRTIO_BLK_S_* status it wrote and
 * sets *written to the bytes written into writable segments (0 if the chain
 * has no room for a status byte, otherwise data + 1).
 */
uint8_t blk_handle_chain(struct virtio_blk *b, const struct virtq_chain *c, uint32_t *written);

/*
 * Creates a disk over o->path with its transport at base/gsi (see
 * virtio/devices.h): 0 with *out set, or -errno after log_error().
 */
int virtio_blk_create(struct virtio_host *host, const struct blk_options *o, const char *name,
		      uint64_t base, uint32_t gsi, struct virtio_blk **out);

/* Tears down the transport and the back-end, closes the image and frees b; NULL is ignored. */
void virtio_blk_destroy(struct virtio_blk *b);

#endif
