/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-blk internals (VIRTIO 1.x §5.2), visible so the request handling can
 * be unit-tested without KVM. The VM creates disks through virtio/devices.h.
 *
 * The device model (config space, features) and its back-end (the data path
 * of its queues) live in struct virtio_blk. The back-end is blk's own, not the
 * event loop's userspace one: each queue has a disk-I/O engine
 * (virtio/blk_io.h, io_uring or a synchronous worker thread) that waits on the
 * queue's kick eventfd itself, pulls requests from the ring, does their I/O and
 * hands them back in batches. So a slow disk stalls only its own queues: not
 * the event loop, other devices, nor a vCPU reading this device's registers.
 * Each batch is pushed as used elements published at once, with at most one
 * interrupt (the driver's EVENT_IDX / NO_INTERRUPT applied). Guest kicks are
 * off while a queue has requests in flight (the engine asks for more after
 * every batch) and turned back on, the ring looked at once more, when it has
 * none. The engine's kind is logged once per disk (vmm -v).
 *
 * Threads and locks:
 * - the transport (vCPU threads, the VM's thread at teardown) starts and stops
 *   the queues with the device lock (dev.lock) held; stop waits for the worker
 *   to finish every request it pulled, then saves the queue's position;
 * - while a queue is started its ring (struct blk_queue's vq and request
 *   slots) is its worker's alone, used without the device lock;
 * - the worker takes the device lock only around call->raise() (InterruptStatus
 *   is the transport's, shared with vCPU register accesses), never during I/O.
 *   While a stop waits for it, the lock is the stopper's: the worker then leaves
 *   the interrupt to stop(), which raises it once the worker is gone;
 * - a malformed ring found by a worker is reported to the transport
 *   (DEVICE_NEEDS_RESET, which stops every queue) from the event loop thread,
 *   as a worker cannot stop itself.
 */
#ifndef VIRTIO_BLK_H
#define VIRTIO_BLK_H

#include <linux/virtio_blk.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/blk_io.h"
#include "virtio/blk_req.h"
#include "virtio/mmio.h"
#include "virtio/options.h"
#include "virtio/virtq.h"
#include "vmm/base/log.h"

#define BLK_NUM_QUEUES		4		/* VIRTIO_BLK_F_MQ: num_queues */
#define BLK_QUEUE_SIZE		256		/* QueueNumMax */
#define BLK_SEG_MAX		(BLK_QUEUE_SIZE - 2)	/* ring minus header and status */
#define BLK_DISCARD_ALIGN	8		/* discard_sector_alignment hint: 4 KiB */

struct virtio_blk;
struct blk_req;

/* One queue of the back-end. */
struct blk_queue {
	struct virtio_blk *b;
	unsigned int index;
	struct blk_io *io;		/* its engine, created with the device */
	bool started;			/* the transport's threads only (device lock) */
	atomic_bool stopping;		/* stop() waits for the worker: the lock is taken */
	atomic_bool raise_owed;		/* an interrupt the worker left to stop() */
	_Atomic(const char *) failed;	/* a guest error for the event loop to report */
	struct virtio_call *call;	/* the transport's, while started */

	/* The worker's while started. */
	struct virtq vq;
	struct blk_req *reqs;		/* BLK_QUEUE_SIZE request slots */
	struct blk_req **free_reqs;
	unsigned int nfree;
	bool notify;			/* guest kicks enabled */
	uint64_t kicks_counted;		/* the engine's kicks added to call->kicks */
};

struct virtio_blk {
	struct virtio_mmio_dev dev;		/* transport: registers, config, features */
	struct virtio_backend be;		/* the queues' data path (blk.c) */
	struct blk_queue queues[BLK_NUM_QUEUES];
	const struct guest_mem *mem;
	struct event_loop *loop;
	struct event_source error_src;		/* eventfd: a worker found a broken ring */
	struct virtio_blk_config config;	/* little-endian, as the guest reads it */
	uint64_t features;			/* VIRTIO_BLK_F_* offered */
	char *name;				/* instance name for messages */

	/* The disk. */
	int fd;
	bool readonly;
	char *path;			/* the image, for messages */
	bool locked;			/* holds the image's lock (blk_lock) */
	bool lock_deferred;		/* a migration's destination: locked at switchover */
	bool direct;				/* opened O_DIRECT */
	bool is_bdev;				/* a block device rather than a regular file */
	bool no_fallocate;			/* write zeros by hand (tests: as without fallocate) */
	bool no_discard;			/* discard is a no-op (tests: as without hole punching) */
	uint64_t size;				/* bytes, a multiple of BLK_SECTOR_SIZE */
	uint32_t blk_size;			/* logical block size offered to the guest */
	uint32_t dio_align;			/* O_DIRECT offset/length/buffer alignment */
	char id[VIRTIO_BLK_ID_BYTES];		/* GET_ID answer, zero-padded */
	enum blk_io_kind io_kind;		/* the queues' engines (AUTO unless a test says) */
	struct blk_io *sync_io;			/* blk_handle_chain's engine, made when first used */

	struct log_ratelimit rl;		/* guest-triggered warnings */
	struct blk_req_disk disk;		/* what requests are checked against */
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
 * Handles one request chain synchronously on the calling thread (tests; the
 * queues use the same checks and completion through their engines): header
 * and data from its readable segments, data and the status byte (the last
 * writable byte) into its writable ones. Never trusts the chain's contents.
 * Returns the VIRTIO_BLK_S_* status it wrote and sets *written to the bytes
 * written into writable segments (0 if the chain has no room for a status
 * byte, otherwise data + 1). What it writes to guest RAM is marked dirty, as
 * for the queues' completions.
 */
uint8_t blk_handle_chain(struct virtio_blk *b, const struct virtq_chain *c, uint32_t *written);

/*
 * The second half of virtio_blk_create over a b that virtio_blk_init set up:
 * the back-end (one engine per queue over b->fd, its kind logged once) and
 * the transport at base/gsi. 0 or -errno after log_error(); on failure b is
 * left for virtio_blk_destroy().
 */
int virtio_blk_attach(struct virtio_blk *b, struct virtio_host *host, uint64_t base,
		      uint32_t gsi);

/*
 * Creates a disk over o->path with its transport at base/gsi (see
 * virtio/devices.h): 0 with *out set, or -errno after log_error().
 */
int virtio_blk_create(struct virtio_host *host, const struct blk_options *o, const char *name,
		      uint64_t base, uint32_t gsi, struct virtio_blk **out);

/* Tears down the transport and the back-end, closes the image and frees b; NULL is ignored. */
void virtio_blk_destroy(struct virtio_blk *b);

#endif
