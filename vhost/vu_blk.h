/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm-vhost-user-blk's device: virtio-blk (VIRTIO 1.x §5.2) over a raw image
 * or a host block device, served to one vhost-user front-end at a time
 * through the back-end library (vhost/vu_backend.h). The program's main
 * (vhost/vhost_user_blk.c) owns the socket and the event loop; this file is
 * the device, so unit tests can drive it over a socketpair.
 *
 * With --direct the image is opened O_DIRECT (as vmm's direct=on and QEMU's
 * cache.direct=on): requests whose buffers or ranges are not aligned to what
 * the host's file system or device needs go through the engine's bounce
 * buffer.
 *
 * Each running queue has a disk-I/O engine of virtio/blk_io.h (io_uring, or a
 * synchronous worker thread where io_uring is unavailable) that waits on the
 * queue's kick eventfd itself and pulls requests through vu_queue_pop():
 * every request field is checked when popped, by the same code as vmm's own
 * virtio-blk (virtio/blk_req.h; ranges against the current capacity), the
 * I/O runs on the engine,
 * and completions are pushed and published in batches with at most one call
 * per batch. queue_stop drains the engine, so a stopped queue has nothing in
 * flight and GET_VRING_BASE returns a position with every request done.
 *
 * Capacity changes (vu_blk_resize, on SIGHUP) update the config space and
 * tell the front-end with CONFIG_CHANGE_MSG.
 */
#ifndef VHOST_VU_BLK_H
#define VHOST_VU_BLK_H

#include <linux/virtio_blk.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vhost/vu_backend.h"
#include "virtio/blk_io.h"
#include "virtio/blk_req.h"
#include "vmm/base/log.h"

#define VU_BLK_MAX_QUEUES	16
#define VU_BLK_QUEUE_SIZE	1024	/* largest ring the front-end may set */

struct vu_blk_options {
	const char *image;
	bool readonly;
	bool direct;			/* O_DIRECT: the host's page cache is bypassed */
	unsigned int nqueues;		/* 1..VU_BLK_MAX_QUEUES */
	enum blk_io_kind io_kind;	/* BLK_IO_AUTO unless a test says */
	/*
	 * Testing: each batch of finished requests is held this many ms before it is
	 * answered, so that requests are in flight when the back-end is killed (the
	 * front-end's reconnect then has something to resubmit). 0: none.
	 */
	unsigned int hold_ms;
	/*
	 * A migration's destination: the image is locked when the first queue starts,
	 * not at open, so this back-end can wait beside the source's on shared storage.
	 */
	bool incoming;
};

struct vu_blk;
struct vu_blk_req;

struct vu_blk_queue {
	struct vu_blk *b;
	unsigned int index;
	struct blk_io *io;		/* while running */
	struct vu_blk_req *reqs;	/* one slot per ring entry */
	struct vu_blk_req **free_reqs;
	unsigned int nslots, nfree;
	bool notify;			/* guest kicks enabled */
};

struct vu_blk {
	struct vu_dev dev;		/* the library's part; container_of from callbacks */
	bool connected;
	char *path;
	int fd;
	bool readonly;
	bool is_bdev;
	uint32_t dio_align;		/* O_DIRECT alignment, 0 without --direct */
	bool locked;			/* holds the image's lock (taken again at a queue start) */
	_Atomic uint64_t size;		/* bytes, whole sectors */
	unsigned int nqueues;
	enum blk_io_kind io_kind;
	unsigned int hold_ms;		/* vu_blk_options.hold_ms */
	uint64_t features;
	char id[VIRTIO_BLK_ID_BYTES];
	struct vu_blk_queue queues[VU_BLK_MAX_QUEUES];
	struct log_ratelimit rl;
};

/*
 * Opens o->image (read-write unless o->readonly) and sizes it. 0, or -errno
 * after log_error (what failed — what to do); nothing is left open.
 */
int vu_blk_open(struct vu_blk *b, const struct vu_blk_options *o);

/* Closes the image; after vu_blk_disconnect. Safe on a failed open. */
void vu_blk_close(struct vu_blk *b);

/*
 * Serves a new front-end on the connected socket sock (the caller's): the
 * library is set up with ops as the event loop. 0 or -errno.
 */
int vu_blk_connect(struct vu_blk *b, int sock, const struct vu_ops *ops);

/* Ends the connection's state: stops every queue (drains its I/O) and frees the library's part. */
void vu_blk_disconnect(struct vu_blk *b);

/*
 * Reads the image's size again. 1 if it changed (the config space shows it
 * and, when connected with a back-end channel, the front-end is told), 0 if
 * not, -errno if it could not be read.
 */
int vu_blk_resize(struct vu_blk *b);

/* Fills the config space (little-endian) as the front-end reads it. */
void vu_blk_config(const struct vu_blk *b, struct virtio_blk_config *cfg);

#endif
