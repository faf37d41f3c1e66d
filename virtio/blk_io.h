/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The disk-I/O engine of virtio-blk: one engine per queue, each with its own
 * worker thread, so a slow disk stalls only its own queue and never the event
 * loop, another device or a vCPU.
 *
 * Two kinds, chosen once per engine (its owner logs which, see blk_io_kind()):
 * - io_uring (liburing): the worker submits reads, writes, flushes and
 *   fallocates for every request it holds, and waits in the same ring for
 *   their completions and for the queue's kick eventfd (a read kept armed on
 *   it), so kicks never go through the VMM's event loop;
 * - sync, when io_uring cannot be set up (kernel.io_uring_disabled, seccomp,
 *   an old kernel) or is asked for: the worker does the same requests with
 *   preadv/pwritev/fdatasync/fallocate, one at a time, still off the loop.
 *
 * The engine pulls requests from its owner, which keeps the virtqueue:
 * ops->next() runs on the worker while the engine has a free slot, after
 * start, after each kick and after each batch of completions, until it
 * returns NULL; ops->complete() hands back a batch of finished requests at
 * once, so the owner pushes every used element and raises one interrupt per
 * batch. Because next() is asked again after every batch, an owner whose
 * ring is empty while requests are in flight may leave guest notifications
 * off (a VM exit saved per request at depth > 1); with none in flight it must
 * turn them on and look at the ring once more before returning NULL.
 *
 * Threads:
 * - blk_io_create/start/stop/destroy: the owner's control thread (the
 *   transport's, on a vCPU or the event loop), one call at a time; never from
 *   ops->next() or ops->complete() (stop would wait for itself).
 * - blk_io_kick: any thread, any time.
 * - ops->next and ops->complete: only on the worker, never both at once,
 *   between blk_io_start() and the return of blk_io_stop().
 * - kick_fd: while started, read by the worker alone (the event loop must not
 *   watch it too); it stays the caller's to close, after blk_io_stop().
 *
 * Stop: blk_io_stop() stops pulling, waits until every request that next()
 * returned has completed and been passed to complete(), then returns with the
 * worker gone. The owner's last_avail_idx is then consistent (every chain
 * popped is used) and the queue can be reset, saved or handed to another
 * back-end. blk_io_start() may be called again after stop.
 *
 * Requests: the engine moves bytes only; it never reads guest memory other
 * than through the iovecs it is given, and trusts offsets and lengths (the
 * owner checks them against the disk).
 *
 * Batches: at depth 8 and more, a batch of completed reads and writes may be
 * held until others join it (a quarter of those in flight), so the guest gets
 * one interrupt for several; below that, a guest that streams requests has a
 * lone answer wait up to window_us for its next request and that request's
 * answer; blk_io.c says when. Short reads and writes continue where they
 * stopped; EINTR and EAGAIN are retried; the end of the file in the
 * middle of a read or write is -EIO. With dio_align > 1 (an O_DIRECT fd),
 * a read or write whose offset, length or buffers are not aligned goes
 * through an aligned bounce buffer, synchronously on the worker, reading a
 * block first where it is covered only in part. Discard and write-zeroes are
 * fallocate() (BLKDISCARD on a block device); a discard the host cannot do
 * succeeds as a no-op, write-zeroes falls back to writing zeros. A
 * non-seekable fd (a pipe: tests) is read and written in order, offsets
 * ignored.
 *
 * Wiring into blk's back-end (one engine per queue, sharing the disk's fd):
 *   create:  blk_io_create(&q->io, &cfg) with cfg.fd/is_bdev/dio_align/size
 *            from blk_open() and depth = the queue size;
 *   start(queue, state, kick, call): virtq set up from state, then
 *            blk_io_start(q->io, kick, &blk_io_ops, q) (the transport no
 *            longer watches kick);
 *   next():  virtq_pop() a chain into a free per-request slot of the queue's
 *            (a struct blk_req), and blk_req_prepare() (virtio/blk_req.h)
 *            checks it and fills the slot's blk_io_req (op, offset, data
 *            segments, len for discard / write-zeroes); GET_ID, bad and
 *            unsupported requests become BLK_IO_NOP with their status kept
 *            in the slot; a malformed ring: needs-reset, return NULL. Empty
 *            ring: see notifications above;
 *   complete(reqs, n): for each, blk_req_finish() writes the status byte
 *            (result < 0: IOERR, logged rate-limited), then virtq_add_used()
 *            (written = data + 1),
 *            free the slot; then virtq_publish_used() once and, if
 *            virtq_should_notify(), one write to call;
 *   stop(queue): blk_io_stop(q->io), then return vq->last_avail_idx;
 *   destroy: blk_io_destroy() per queue, then close the fd.
 * The worker needs no device lock for the ring while the queue is started (the
 * back-end owns it); config space and features stay with the transport.
 */
#ifndef VIRTIO_BLK_IO_H
#define VIRTIO_BLK_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define BLK_IO_BOUNCE_SIZE	(256u << 10)	/* aligned bounce buffer and zero-fill chunk */
#define BLK_IO_MAX_DEPTH	4096		/* requests in flight per engine, at most */

enum blk_io_op {
	BLK_IO_READ,		/* disk [offset, +iov total) into iov */
	BLK_IO_WRITE,		/* iov into disk [offset, +iov total) */
	BLK_IO_FLUSH,		/* fdatasync: completed writes reach stable storage */
	BLK_IO_DISCARD,		/* [offset, +len) may be deallocated (a hint) */
	BLK_IO_WRITE_ZEROES,	/* [offset, +len) reads back as zeros; BLK_IO_F_UNMAP may deallocate */
	BLK_IO_NOP,		/* no I/O: completes with 0 in the next batch */
};

#define BLK_IO_F_UNMAP		(1u << 0)	/* BLK_IO_WRITE_ZEROES may punch a hole */

/* One request; the owner's memory, lent to the engine from next() until complete(). */
struct blk_io_req {
	enum blk_io_op op;
	uint32_t flags;			/* BLK_IO_F_* */
	uint64_t offset;		/* disk byte offset */
	uint64_t len;			/* DISCARD / WRITE_ZEROES bytes; READ / WRITE: unused */
	struct iovec *iov;		/* READ / WRITE buffers; the engine may rewrite the array */
	unsigned int niov;
	void *cookie;			/* the owner's, untouched */
	ssize_t result;			/* set by the engine: bytes moved (READ/WRITE), 0, or -errno */
};

/* The owner's callbacks, run on the engine's worker thread only. */
struct blk_io_ops {
	/* The next request to do, or NULL when there is none until the next kick. */
	struct blk_io_req *(*next)(void *opaque);
	/* n (>= 1) finished requests, result set; each is reported exactly once. */
	void (*complete)(void *opaque, struct blk_io_req **reqs, unsigned int n);
};

enum blk_io_kind {
	BLK_IO_AUTO,		/* io_uring if it works here, else sync */
	BLK_IO_URING,
	BLK_IO_SYNC,
};

struct blk_io_config {
	const char *name;		/* for messages, e.g. "virtio-blk0 queue 1" */
	int fd;				/* the disk, still owned (and closed) by the caller */
	bool is_bdev;			/* a block device: discard is BLKDISCARD */
	uint32_t dio_align;		/* O_DIRECT alignment (a power of two), or 0/1 for none */
	uint64_t size;			/* disk bytes: bounce writes never extend the file */
	unsigned int depth;		/* requests in flight at most, 1..BLK_IO_MAX_DEPTH */
	enum blk_io_kind kind;
	bool no_fallocate;		/* write zeros by hand, as where fallocate() fails (tests) */
	bool no_discard;		/* discard is a no-op, as where the host cannot (tests) */
	unsigned int hold_us;		/* a held batch's longest wait (blk_io.c); 0: 1000 */
	unsigned int window_us;		/* a streaming guest's next request is awaited; 0: 200 */
};

struct blk_io;

/* Creates a stopped engine of cfg->kind (AUTO: io_uring if it works here); 0 or -errno. */
int blk_io_create(struct blk_io **out, const struct blk_io_config *cfg);

/*
 * Probes io_uring now (once per process; blk_io_create() uses the answer): a device
 * calls it when it is created, so that its first queue start — on a migration's
 * destination, while the guest is paused — does not set up a ring to probe.
 */
void blk_io_warm_up(void);

/*
 * The O_DIRECT alignment of an open regular file (cfg.dio_align): its file
 * system's offset and memory alignment where the kernel tells (statx
 * STATX_DIOALIGN), else 512. A block device's is its logical block size.
 */
uint32_t blk_io_file_dio_align(int fd);

/* The kind the engine runs: BLK_IO_URING or BLK_IO_SYNC. */
enum blk_io_kind blk_io_kind(const struct blk_io *e);

/*
 * Statistics: how many times the worker woke up for the kick fd, since the
 * engine was created. From ops->next/complete, or while the engine is stopped.
 */
uint64_t blk_io_kicks(const struct blk_io *e);

/*
 * Statistics of completion batching, since the engine was created: what the
 * owner's complete() was called with, and how often the count rule (blk_io.c)
 * held a batch. Readable from any thread (a snapshot of counters the worker
 * bumps), e.g. to tell why a guest takes an interrupt per request.
 */
/*
 * From this many requests in flight a batch is held by count; below it only a
 * streaming guest's answers wait (blk_io.c).
 */
#define BLK_IO_HOLD_DEPTH	8
/* How long a lone answer of a streaming guest waits for its next request (blk_io.c). */
#define BLK_IO_WINDOW_US	200

struct blk_io_stats {
	uint64_t completed;		/* requests reported */
	uint64_t reports;		/* calls of complete() (batches) */
	uint64_t reports_shallow;	/* of those, below BLK_IO_HOLD_DEPTH in flight */
	uint64_t holds;			/* waits for company with a batch held */
	uint64_t hold_expiries;		/* held batches released by their time limit (window or hold_us) */
};

void blk_io_get_stats(const struct blk_io *e, struct blk_io_stats *s);

/* Why an AUTO engine runs sync: io_uring's -errno at create; 0 if it was not tried or works. */
int blk_io_uring_error(const struct blk_io *e);

/*
 * Does req now on the calling thread, as the sync kind's worker would, and
 * sets req->result, which it returns; the engine must be stopped (-EBUSY).
 */
ssize_t blk_io_run(struct blk_io *e, struct blk_io_req *req);

/* Starts the worker, kicked by kick_fd (an eventfd; -1: blk_io_kick only); 0, -EBUSY or -errno. */
int blk_io_start(struct blk_io *e, int kick_fd, const struct blk_io_ops *ops, void *opaque);

/* Makes the worker ask next() again, as a write to kick_fd would; any thread. */
void blk_io_kick(struct blk_io *e);

/* Stops pulling, waits until every pulled request was completed and reported, joins. */
void blk_io_stop(struct blk_io *e);

/* Stops the engine if started and frees it; NULL is a no-op. Does not close cfg->fd. */
void blk_io_destroy(struct blk_io *e);

#endif
