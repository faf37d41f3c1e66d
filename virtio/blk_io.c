// SPDX-License-Identifier: GPL-2.0-only
/*
 * The disk-I/O engine of virtio-blk (see blk_io.h): a worker thread per
 * engine, on io_uring or synchronous system calls.
 *
 * The worker owns everything below "worker only": the slots of requests in
 * flight, the batch of finished ones, the bounce buffer and the ring. Other
 * threads touch only `stopping` and `kicked`, and wake the worker through
 * wake_fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtio/blk_io.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

#ifndef IOV_MAX
#define IOV_MAX			1024
#endif

#define BLK_IO_SYNC_BATCH	32		/* sync engine: completions per report */
#define BLK_IO_TAG_WAKE		UINT64_MAX	/* user_data of the read armed on wake_fd */
#define BLK_IO_TAG_KICK		(UINT64_MAX - 1)	/* ... and on the kick fd */

/* What remains of one request handed to io_uring. */
struct blk_io_slot {
	struct blk_io_req *req;
	struct iovec *iov;		/* READ / WRITE: the segments not moved yet */
	unsigned int niov;
	uint64_t off;			/* disk offset of iov[0] */
	uint64_t left;			/* bytes still to move */
};

struct blk_io {
	char *name;
	int fd;
	bool is_bdev;
	bool stream;			/* not seekable: read and written in order */
	bool has_fallocate;		/* io_uring can fallocate */
	uint32_t dio_align;		/* 1: no alignment needed */
	uint64_t size;
	unsigned int depth;
	atomic_int kind;		/* BLK_IO_URING or BLK_IO_SYNC */
	int uring_err;			/* why AUTO chose sync (-errno), or 0 */

	/* Set by blk_io_start(), read by the worker. */
	const struct blk_io_ops *ops;
	void *opaque;
	int kick_fd;
	int wake_fd;			/* eventfd: blk_io_kick() and blk_io_stop() */
	pthread_t thread;
	bool started;			/* control thread only */
	atomic_bool stopping, kicked;

	/* Worker only. */
	bool want_pull;			/* next() may have work */
	bool no_discard;		/* the host cannot discard: a no-op */
	bool no_fallocate;		/* the host cannot fallocate: zeros are written */
	unsigned int inflight;		/* pulled and not yet reported */
	unsigned int inflight_other;	/* of those, in the ring and not a read or write */
	bool hold_expired;		/* the batch held back waited its longest */
	unsigned int hold_us;		/* how long that is */
	uint64_t kicks;			/* wake-ups by the kick fd (statistics) */
	uint64_t window_ns;		/* how long a streaming guest's next request is waited for */
	uint64_t batch_t0;		/* when the batch in hand got its first request (ns) */
	unsigned int pulls, busy_pulls;	/* requests taken, and of those with others in flight */
	bool streaming;			/* the guest sends while requests are in flight */
	struct blk_io_stats stats;	/* bumped here, read anywhere (relaxed atomics) */
	struct blk_io_slot *slots;
	unsigned int *free_slots, nfree;
	struct blk_io_req **batch;	/* finished, to report */
	unsigned int nbatch;
	uint8_t *bounce;		/* BLK_IO_BOUNCE_SIZE bytes, allocated when first needed */
	struct io_uring ring;
	bool fixed_file;		/* the disk's fd is registered with the ring as file 0 */
	uint64_t wake_buf, kick_buf;	/* the eventfd counters the ring reads into */
	struct log_ratelimit rl;
};

/* ---- Segments ---- */

static uint64_t iov_total(const struct iovec *iov, unsigned int n)
{
	uint64_t len = 0;

	for (unsigned int i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}

/* Drops the first `bytes` bytes from the segment array *iov of *n entries. */
static void iov_advance(struct iovec **iov, unsigned int *n, uint64_t bytes)
{
	while (*n && bytes >= (*iov)->iov_len) {
		bytes -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n && bytes) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + bytes;
		(*iov)->iov_len -= bytes;
	}
}

/* Copies len bytes between buf and the segments' bytes from off on (into them if to_iov). */
static void iov_copy(const struct iovec *iov, unsigned int n, uint64_t off, uint8_t *buf,
		     uint64_t len, bool to_iov)
{
	for (unsigned int i = 0; i < n && len; i++) {
		uint64_t seg = iov[i].iov_len;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		seg = MIN(seg - off, len);
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + off, buf, seg);
		else
			memcpy(buf, (uint8_t *)iov[i].iov_base + off, seg);
		buf += seg;
		len -= seg;
		off = 0;
	}
}

/* Whether O_DIRECT can take this transfer as is: offset, length and every segment aligned. */
static bool blk_io_aligned(const struct blk_io *e, const struct iovec *iov, unsigned int n,
			   uint64_t off, uint64_t len)
{
	uint64_t mask = e->dio_align - 1;

	if ((off | len) & mask)
		return false;
	for (unsigned int i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & mask)
			return false;
	return true;
}

/* ---- Synchronous I/O (the sync engine, and what io_uring cannot do) ---- */

/* Waits until fd is ready after EAGAIN (a non-blocking fd). */
static void blk_io_wait_fd(int fd, bool write)
{
	struct pollfd p = { .fd = fd, .events = write ? POLLOUT : POLLIN };

	poll(&p, 1, -1);
}

/* Moves exactly len bytes between the segments and disk offset off; 0 or -errno. */
static int blk_io_sync_rw(struct blk_io *e, bool write, struct iovec *iov, unsigned int n,
			  uint64_t off, uint64_t len)
{
	while (len) {
		int cnt = MIN(n, IOV_MAX);
		ssize_t r;

		if (e->stream)
			r = write ? writev(e->fd, iov, cnt) : readv(e->fd, iov, cnt);
		else if (write)
			r = pwritev(e->fd, iov, cnt, (off_t)off);
		else
			r = preadv(e->fd, iov, cnt, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				blk_io_wait_fd(e->fd, write);
				continue;
			}
			return -errno;
		}
		if (r == 0)
			return -EIO;	/* end of file: the image shrank under us */
		off += r;
		len -= MIN((uint64_t)r, len);
		iov_advance(&iov, &n, r);
	}
	return 0;
}

/* pread() until len bytes or the end of the file; the bytes read or -errno. */
static ssize_t blk_io_pread_upto(struct blk_io *e, uint8_t *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(e->fd, buf + done, len - done, (off_t)(off + done));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += r;
	}
	return done;
}

static int blk_io_get_bounce(struct blk_io *e)
{
	if (!e->bounce)
		e->bounce = aligned_alloc(MAX(e->dio_align, 4096u), BLK_IO_BOUNCE_SIZE);
	return e->bounce ? 0 : -ENOMEM;
}

/*
 * Moves disk bytes [off, off + len) through the bounce buffer in whole
 * dio_align blocks, reading a block first when the transfer covers it only in
 * part. The other side is the n segments at iov, or zeros (a write with iov
 * NULL). 0 or -errno.
 */
static int blk_io_bounce(struct blk_io *e, bool write, const struct iovec *iov, unsigned int n,
			 uint64_t off, uint64_t len)
{
	uint64_t align = e->dio_align, end = off + len, aend = ALIGN_UP(end, align);
	int r = blk_io_get_bounce(e);

	if (r < 0)
		return r;
	for (uint64_t cs = ALIGN_DOWN(off, align); cs < aend; cs += BLK_IO_BOUNCE_SIZE) {
		uint64_t ce = MIN(cs + BLK_IO_BOUNCE_SIZE, aend);
		uint64_t ds = MAX(cs, off), de = MIN(ce, end);
		size_t clen = ce - cs, dlen = de - ds;
		uint8_t *p = e->bounce + (ds - cs);
		struct iovec one = { e->bounce, clen };

		if (!write || ds > cs || de < ce) {
			ssize_t got = blk_io_pread_upto(e, e->bounce, clen, cs);

			if (got < 0)
				return got;
			memset(e->bounce + got, 0, clen - got);	/* past the end of the file */
		}
		if (!write) {
			iov_copy(iov, n, ds - off, p, dlen, true);
			continue;
		}
		/* A last block that sticks out of an unaligned file cannot be written whole. */
		if (align > 1 && ce > e->size)
			return -EINVAL;
		if (iov)
			iov_copy(iov, n, ds - off, p, dlen, false);
		else
			memset(p, 0, dlen);
		r = blk_io_sync_rw(e, true, &one, 1, cs, clen);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Discard's answer: where the host cannot discard, discard is a no-op from now on. */
static int blk_io_discard_result(struct blk_io *e, int r)
{
	if (r == -EOPNOTSUPP || r == -ENOTTY || r == -ENOSYS) {
		e->no_discard = true;
		return 0;
	}
	return r;
}

static int blk_io_sync_discard(struct blk_io *e, uint64_t off, uint64_t len)
{
	int r;

	if (e->no_discard || !len)
		return 0;
	if (e->is_bdev) {
		uint64_t range[2] = { off, len };

		r = ioctl(e->fd, BLKDISCARD, range) < 0 ? -errno : 0;
	} else {
		r = fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len) < 0 ? -errno : 0;
	}
	return blk_io_discard_result(e, r);
}

/* Zeroes [off, off + len): deallocating if unmap, else ZERO_RANGE, else by writing zeros. */
static int blk_io_sync_write_zeroes(struct blk_io *e, uint64_t off, uint64_t len, bool unmap)
{
	if (!len)
		return 0;
	if (!e->no_fallocate) {
		if (unmap && fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)off, (off_t)len) == 0)
			return 0;
		if (fallocate(e->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len) == 0)
			return 0;
		if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
			return -errno;
		e->no_fallocate = true;
	}
	return blk_io_bounce(e, true, NULL, 0, off, len);
}

/* Whether a READ / WRITE of len bytes must go through the bounce buffer. */
static bool blk_io_needs_bounce(const struct blk_io *e, const struct blk_io_req *req,
				uint64_t len)
{
	return e->dio_align > 1 && !blk_io_aligned(e, req->iov, req->niov, req->offset, len);
}

/* Does a request synchronously; its result. */
static ssize_t blk_io_sync_exec(struct blk_io *e, struct blk_io_req *req)
{
	bool write = req->op == BLK_IO_WRITE;
	uint64_t len;
	int r;

	switch (req->op) {
	case BLK_IO_READ:
	case BLK_IO_WRITE:
		len = iov_total(req->iov, req->niov);
		if (!len)
			return 0;
		if (blk_io_needs_bounce(e, req, len))
			r = blk_io_bounce(e, write, req->iov, req->niov, req->offset, len);
		else
			r = blk_io_sync_rw(e, write, req->iov, req->niov, req->offset, len);
		return r < 0 ? r : (ssize_t)len;
	case BLK_IO_FLUSH:
		return fdatasync(e->fd) < 0 ? -errno : 0;
	case BLK_IO_DISCARD:
		return blk_io_sync_discard(e, req->offset, req->len);
	case BLK_IO_WRITE_ZEROES:
		return blk_io_sync_write_zeroes(e, req->offset, req->len,
						req->flags & BLK_IO_F_UNMAP);
	case BLK_IO_NOP:
		return 0;
	}
	return -EINVAL;
}

/* ---- Batches ---- */

static void blk_io_finish(struct blk_io *e, struct blk_io_req *req, ssize_t result)
{
	req->result = result;
	if (!e->nbatch)
		e->batch_t0 = monotonic_ns();
	e->batch[e->nbatch++] = req;
}

/* Adds n to an engine statistic (read by other threads). */
static inline void stat_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/*
 * Hands the finished requests to the owner in one call, then asks next()
 * again: the owner may have left guest notifications off while they were in
 * flight (see blk_io.h).
 */
static void blk_io_report(struct blk_io *e)
{
	if (!e->nbatch)
		return;
	stat_add(&e->stats.completed, e->nbatch);
	stat_add(&e->stats.reports, 1);
	if (e->inflight < BLK_IO_HOLD_DEPTH)
		stat_add(&e->stats.reports_shallow, 1);
	e->ops->complete(e->opaque, e->batch, e->nbatch);
	e->inflight -= e->nbatch;
	e->nbatch = 0;
	e->want_pull = true;
}

static void blk_io_take_kick(struct blk_io *e)
{
	if (atomic_exchange(&e->kicked, false))
		e->want_pull = true;
}

/* Empties an eventfd without blocking (ours is non-blocking; a kick fd is polled first). */
static void blk_io_drain_eventfd(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing to take. */
	}
}

/* ---- Sync engine ---- */

/* Sleeps until a kick, blk_io_kick() or blk_io_stop(). */
static void blk_io_sync_wait(struct blk_io *e)
{
	struct pollfd p[2] = {
		{ .fd = e->wake_fd, .events = POLLIN },
		{ .fd = e->kick_fd, .events = POLLIN },
	};
	nfds_t nfds = e->kick_fd >= 0 ? 2 : 1;

	if (poll(p, nfds, -1) < 0)
		return;		/* EINTR: the caller looks again */
	if (p[0].revents & POLLIN)
		blk_io_drain_eventfd(e->wake_fd);
	if (nfds < 2)
		return;
	if (p[1].revents & POLLIN) {
		blk_io_drain_eventfd(e->kick_fd);
		e->kicks++;
		e->want_pull = true;
	} else if (p[1].revents & (POLLERR | POLLNVAL)) {
		log_warn("%s: the queue's kick eventfd failed; only blk_io_kick() wakes it now",
			 e->name);
		e->kick_fd = -1;
	}
}

static void blk_io_sync_worker(struct blk_io *e)
{
	unsigned int batch_max = MIN(e->depth, (unsigned int)BLK_IO_SYNC_BATCH);

	for (;;) {
		struct blk_io_req *req;

		blk_io_take_kick(e);
		if (atomic_load(&e->stopping))
			break;
		if (!e->want_pull) {
			blk_io_sync_wait(e);
			continue;
		}
		req = e->ops->next(e->opaque);
		if (!req) {
			e->want_pull = false;
			blk_io_report(e);	/* if it reports, next() is asked again */
			continue;
		}
		e->inflight++;
		blk_io_finish(e, req, blk_io_sync_exec(e, req));
		if (e->nbatch == batch_max)
			blk_io_report(e);
	}
	blk_io_report(e);
}

/* ---- io_uring engine ---- */

static struct io_uring_sqe *blk_io_get_sqe(struct blk_io *e)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&e->ring)))
		io_uring_submit(&e->ring);
	return sqe;
}

/* Arms a read of the eventfd fd's counter into *buf, completing with tag. */
static void blk_io_arm_eventfd(struct blk_io *e, int fd, uint64_t *buf, uint64_t tag)
{
	struct io_uring_sqe *sqe = blk_io_get_sqe(e);

	io_uring_prep_read(sqe, fd, buf, sizeof(*buf), 0);
	io_uring_sqe_set_data64(sqe, tag);
}

/* Queues (what remains of) slot idx's request. */
static void blk_io_uring_queue(struct blk_io *e, unsigned int idx)
{
	struct blk_io_slot *s = &e->slots[idx];
	struct blk_io_req *req = s->req;
	struct io_uring_sqe *sqe = blk_io_get_sqe(e);
	uint64_t off = e->stream ? (uint64_t)-1 : s->off;	/* -1: in order, as read(2) */
	unsigned int cnt = MIN(s->niov, (unsigned int)IOV_MAX);
	int mode;

	switch (req->op) {
	case BLK_IO_READ:
		io_uring_prep_readv(sqe, e->fd, s->iov, cnt, off);
		break;
	case BLK_IO_WRITE:
		io_uring_prep_writev(sqe, e->fd, s->iov, cnt, off);
		break;
	case BLK_IO_FLUSH:
		io_uring_prep_fsync(sqe, e->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLK_IO_DISCARD:
		io_uring_prep_fallocate(sqe, e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)req->offset, (off_t)req->len);
		break;
	default:	/* BLK_IO_WRITE_ZEROES */
		mode = req->flags & BLK_IO_F_UNMAP ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE;
		io_uring_prep_fallocate(sqe, e->fd, mode | FALLOC_FL_KEEP_SIZE,
					(off_t)req->offset, (off_t)req->len);
		break;
	}
	if (e->fixed_file) {
		sqe->fd = 0;
		sqe->flags |= IOSQE_FIXED_FILE;
	}
	io_uring_sqe_set_data64(sqe, idx);
}

/* Whether io_uring can take the request, or the worker must do it synchronously. */
static bool blk_io_uring_can(struct blk_io *e, struct blk_io_req *req)
{
	switch (req->op) {
	case BLK_IO_READ:
	case BLK_IO_WRITE:
		return !blk_io_needs_bounce(e, req, iov_total(req->iov, req->niov));
	case BLK_IO_FLUSH:
		return true;
	case BLK_IO_DISCARD:
		return req->len && !e->no_discard && !e->is_bdev && e->has_fallocate;
	case BLK_IO_WRITE_ZEROES:
		return req->len && !e->no_fallocate && e->has_fallocate;
	default:
		return false;
	}
}

/* Takes a request from next(): into a slot for io_uring, or done here. */
static void blk_io_uring_dispatch(struct blk_io *e, struct blk_io_req *req)
{
	struct blk_io_slot *s;
	unsigned int idx;

	e->inflight++;
	if (!blk_io_uring_can(e, req)) {
		blk_io_finish(e, req, blk_io_sync_exec(e, req));
		return;
	}
	idx = e->free_slots[--e->nfree];
	s = &e->slots[idx];
	s->req = req;
	if (req->op != BLK_IO_READ && req->op != BLK_IO_WRITE)
		e->inflight_other++;
	s->iov = req->iov;
	s->niov = req->niov;
	s->off = req->offset;
	s->left = req->op == BLK_IO_READ || req->op == BLK_IO_WRITE ?
		  iov_total(req->iov, req->niov) : 0;
	if ((req->op == BLK_IO_READ || req->op == BLK_IO_WRITE) && !s->left) {
		e->free_slots[e->nfree++] = idx;
		blk_io_finish(e, req, 0);
		return;
	}
	blk_io_uring_queue(e, idx);
}

/* A completion of the ring's: an eventfd read, or part or all of a request. */
static void blk_io_uring_complete(struct blk_io *e, const struct io_uring_cqe *cqe)
{
	uint64_t tag = io_uring_cqe_get_data64(cqe);
	int res = cqe->res;
	struct blk_io_slot *s;
	struct blk_io_req *req;
	ssize_t result = res;

	if (tag == BLK_IO_TAG_WAKE || tag == BLK_IO_TAG_KICK) {
		bool kick = tag == BLK_IO_TAG_KICK;

		if (res < 0 && res != -EINTR && res != -EAGAIN) {
			log_warn("%s: reading the %s eventfd failed: %s", e->name,
				 kick ? "queue's kick" : "engine's wake", strerror(-res));
			return;	/* not re-armed: blk_io_kick() and the other fd still work */
		}
		if (kick) {
			e->kicks++;
			e->want_pull = true;
			blk_io_arm_eventfd(e, e->kick_fd, &e->kick_buf, tag);
		} else {
			blk_io_arm_eventfd(e, e->wake_fd, &e->wake_buf, tag);
		}
		return;
	}

	s = &e->slots[tag];
	req = s->req;
	if (res == -EINTR || res == -EAGAIN) {
		blk_io_uring_queue(e, tag);	/* again, as it was */
		return;
	}
	switch (req->op) {
	case BLK_IO_READ:
	case BLK_IO_WRITE:
		if (res == 0) {
			result = -EIO;	/* end of file: the image shrank under us */
			break;
		}
		if (res < 0)
			break;
		s->off += res;
		s->left -= MIN((uint64_t)res, s->left);
		iov_advance(&s->iov, &s->niov, res);
		if (s->left) {
			blk_io_uring_queue(e, tag);	/* short: the rest */
			return;
		}
		result = s->off - req->offset;	/* for a stream too: off counts bytes */
		break;
	case BLK_IO_DISCARD:
		result = blk_io_discard_result(e, res);
		break;
	case BLK_IO_WRITE_ZEROES:
		if (res < 0)	/* the whole fallback chain, ending with written zeros */
			result = blk_io_sync_write_zeroes(e, req->offset, req->len,
							  req->flags & BLK_IO_F_UNMAP);
		break;
	default:
		break;
	}
	if (req->op != BLK_IO_READ && req->op != BLK_IO_WRITE)
		e->inflight_other--;
	e->free_slots[e->nfree++] = tag;
	blk_io_finish(e, req, result);
	/*
	 * Look at the ring again before deciding to hold the batch: requests the guest
	 * queued since (without a kick: kicks are off while requests are in flight) go
	 * in flight now, and count towards the batch's company.
	 */
	e->want_pull = true;
}

static int blk_io_uring_init(struct blk_io *e)
{
	unsigned int entries = e->depth + 2;	/* requests and the two eventfd reads */
	int r;

	/* One thread submits and reaps: let the kernel skip what that makes unneeded. */
	r = io_uring_queue_init(entries, &e->ring,
				IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
	if (r == -EINVAL)
		r = io_uring_queue_init(entries, &e->ring, 0);
	if (r < 0)
		return r;
	/* A registered file saves a reference count round trip per request. */
	e->fixed_file = !e->stream && io_uring_register_files(&e->ring, &e->fd, 1) == 0;
	return 0;
}

/*
 * Completion coalescing, by count and not by time: whether the finished batch
 * waits for the next completion instead of being reported now. At queue depth
 * 16 a 4 KiB read finishes every few microseconds and reporting each at once
 * costs the guest an interrupt per request (with virtio-mmio, an interrupt is
 * four VM exits: the injection, InterruptStatus, InterruptACK and the EOI).
 * A batch is held while it is smaller than a quarter of the requests in flight
 * and at least two others are still in the ring, all of them reads or writes:
 * the wait then ends with the next of those completions, which is never far
 * behind at that depth.
 *
 * Below eight in flight only a streaming guest's answers wait (see
 * blk_io_note_pull): the guest keeps sending while answers come back, but so
 * slowly that the disk has one request at a time, and answering each at once
 * costs an interrupt per request — the guest then spends its time taking
 * interrupts instead of sending (measured: half the IOPS and twice the exits
 * of the waiting below). A lone answer with the disk idle waits up to
 * window_us (200 µs) for the guest's next request; once that is at the disk,
 * the answer waits for it to finish, and the two go out with one interrupt.
 * A guest that sends one request at a time and waits never streams, so its
 * answers are never delayed.
 *
 * A flush or discard in the ring (it may take long) and a stop report at once;
 * a held batch is reported after hold_us (1 ms) with no completion (a disk that
 * stalled) — a safety net, not the rule.
 */

static bool blk_io_hold(const struct blk_io *e)
{
	unsigned int left = e->inflight - e->nbatch;

	if (!e->nbatch || e->hold_expired || atomic_load(&e->stopping) || e->inflight_other)
		return false;
	if (e->inflight < BLK_IO_HOLD_DEPTH) {
		if (!e->streaming)
			return false;
		if (left)
			return e->nbatch == 1;
		return monotonic_ns() - e->batch_t0 < e->window_ns;
	}
	return left >= 2 && e->nbatch < e->inflight / 4;
}

/*
 * Whether the guest streams: of every 32 requests taken, at least 4 arrived
 * while others were in flight. A guest that waits for each answer before it
 * sends the next (queue depth 1) never does, and never meets the window.
 */
static void blk_io_note_pull(struct blk_io *e)
{
	if (e->inflight)
		e->busy_pulls++;
	if (++e->pulls == 32) {
		e->streaming = e->busy_pulls >= 4;
		e->pulls = e->busy_pulls = 0;
	}
}

/* Reports the batch, unless blk_io_hold() keeps it for company. */
static void blk_io_report_or_hold(struct blk_io *e)
{
	if (blk_io_hold(e))
		return;
	e->hold_expired = false;
	blk_io_report(e);
}

static void blk_io_uring_worker(struct blk_io *e)
{
	blk_io_arm_eventfd(e, e->wake_fd, &e->wake_buf, BLK_IO_TAG_WAKE);
	if (e->kick_fd >= 0)
		blk_io_arm_eventfd(e, e->kick_fd, &e->kick_buf, BLK_IO_TAG_KICK);
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		bool stopping, more;
		int r;

		blk_io_take_kick(e);
		stopping = atomic_load(&e->stopping);
		while (!stopping && e->want_pull && e->inflight < e->depth) {
			struct blk_io_req *req = e->ops->next(e->opaque);

			if (!req) {
				e->want_pull = false;
				break;
			}
			blk_io_note_pull(e);
			blk_io_uring_dispatch(e, req);
		}
		blk_io_report_or_hold(e);	/* with those done synchronously */
		if (stopping && !e->inflight)
			break;
		/* Room freed by that report and work left: look again without sleeping. */
		more = !stopping && e->want_pull && e->inflight < e->depth;
		if (e->nbatch && !more) {
			/* A batch held: wait for company, or for its time limit (window, safety net). */
			uint64_t wait = (uint64_t)e->hold_us * 1000;
			struct __kernel_timespec ts;

			if (e->inflight == e->nbatch) {	/* the window: the guest's next request */
				uint64_t gone = monotonic_ns() - e->batch_t0;

				wait = gone < e->window_ns ? e->window_ns - gone : 1;
			}
			ts.tv_sec = (long long)(wait / 1000000000ull);
			ts.tv_nsec = (long long)(wait % 1000000000ull);

			stat_add(&e->stats.holds, 1);
			r = io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, &ts, NULL);
			if (r == -ETIME) {
				stat_add(&e->stats.hold_expiries, 1);
				e->hold_expired = true;
				r = 0;
			}
		} else {
			r = io_uring_submit_and_wait(&e->ring, more ? 0 : 1);
		}
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			log_warn_ratelimited(&e->rl, "%s: io_uring_enter failed: %s", e->name,
					     strerror(-r));
		io_uring_for_each_cqe(&e->ring, head, cqe) {
			blk_io_uring_complete(e, cqe);
			seen++;
		}
		io_uring_cq_advance(&e->ring, seen);
		blk_io_report_or_hold(e);
	}
}

/* Whether io_uring works here and does what the engine needs; 0 or -errno. */
static int blk_io_uring_probe_once(bool *has_fallocate)
{
	static const int needed[] = { IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
				      IORING_OP_READ };
	struct io_uring_probe *p;
	struct io_uring ring;
	int r = io_uring_queue_init(4, &ring, 0);

	if (r < 0)
		return r;
	p = io_uring_get_probe_ring(&ring);
	if (!p)
		r = -EOPNOTSUPP;
	for (unsigned int i = 0; p && i < ARRAY_SIZE(needed); i++)
		if (!io_uring_opcode_supported(p, needed[i]))
			r = -EOPNOTSUPP;
	*has_fallocate = p && io_uring_opcode_supported(p, IORING_OP_FALLOCATE);
	io_uring_free_probe(p);
	io_uring_queue_exit(&ring);
	return r;
}

static int probe_result;
static bool probe_fallocate;

static void blk_io_uring_probe_run(void)
{
	probe_result = blk_io_uring_probe_once(&probe_fallocate);
}

/*
 * The probe, once per process: the kernel does not change under it, and a ring set up
 * and torn down costs milliseconds (tens nested) at every queue start — on a
 * migration's destination, while the guest waits.
 */
static int blk_io_uring_probe(bool *has_fallocate)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, blk_io_uring_probe_run);
	*has_fallocate = probe_fallocate;
	return probe_result;
}

uint32_t blk_io_file_dio_align(int fd)
{
	uint32_t align = 512;
#ifdef STATX_DIOALIGN
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		align = MAX(align, stx.stx_dio_offset_align);
		align = MAX(align, stx.stx_dio_mem_align);
	}
#endif
	return align;
}

void blk_io_warm_up(void)
{
	bool has_fallocate;

	(void)blk_io_uring_probe(&has_fallocate);
}

/* ---- Control ---- */

static void *blk_io_thread(void *arg)
{
	struct blk_io *e = arg;
	int r;

	if (atomic_load(&e->kind) == BLK_IO_URING) {
		r = blk_io_uring_init(e);
		if (r == 0) {
			blk_io_uring_worker(e);
			io_uring_queue_exit(&e->ring);
			return NULL;
		}
		log_warn("%s: cannot set up io_uring: %s; disk I/O continues on a synchronous "
			 "worker thread", e->name, strerror(-r));
		atomic_store(&e->kind, BLK_IO_SYNC);
	}
	blk_io_sync_worker(e);
	return NULL;
}

int blk_io_create(struct blk_io **out, const struct blk_io_config *cfg)
{
	enum blk_io_kind kind = cfg->kind;
	struct blk_io *e;
	int r = 0;

	*out = NULL;
	if (!cfg->depth || cfg->depth > BLK_IO_MAX_DEPTH ||
	    cfg->dio_align & (cfg->dio_align - 1) || cfg->dio_align > BLK_IO_BOUNCE_SIZE ||
	    kind > BLK_IO_SYNC)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->fd = cfg->fd;
	e->kick_fd = -1;
	e->wake_fd = -1;
	e->is_bdev = cfg->is_bdev;
	e->dio_align = MAX(cfg->dio_align, 1u);
	e->size = cfg->size;
	e->depth = cfg->depth;
	e->no_fallocate = cfg->no_fallocate;
	e->no_discard = cfg->no_discard;
	e->hold_us = cfg->hold_us ? cfg->hold_us : 1000;
	e->window_ns = (uint64_t)(cfg->window_us ? cfg->window_us : BLK_IO_WINDOW_US) * 1000;
	e->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	e->stream = lseek(cfg->fd, 0, SEEK_CUR) < 0 && errno == ESPIPE;
	if (e->stream)
		e->dio_align = 1;
	e->name = strdup(cfg->name ? cfg->name : "virtio-blk");
	e->slots = calloc(e->depth, sizeof(*e->slots));
	e->free_slots = calloc(e->depth, sizeof(*e->free_slots));
	e->batch = calloc(e->depth, sizeof(*e->batch));
	e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!e->name || !e->slots || !e->free_slots || !e->batch) {
		r = -ENOMEM;
		goto fail;
	}
	if (e->wake_fd < 0) {
		r = -errno;
		goto fail;
	}

	if (kind != BLK_IO_SYNC) {
		r = blk_io_uring_probe(&e->has_fallocate);
		if (r < 0 && kind == BLK_IO_URING)
			goto fail;
		kind = r < 0 ? BLK_IO_SYNC : BLK_IO_URING;
	}
	atomic_init(&e->kind, kind);
	e->uring_err = r < 0 ? r : 0;
	*out = e;
	return 0;

fail:
	blk_io_destroy(e);
	return r;
}

enum blk_io_kind blk_io_kind(const struct blk_io *e)
{
	return atomic_load(&((struct blk_io *)e)->kind);
}

uint64_t blk_io_kicks(const struct blk_io *e)
{
	return e->kicks;
}

void blk_io_get_stats(const struct blk_io *e, struct blk_io_stats *s)
{
	*s = (struct blk_io_stats){
		.completed = __atomic_load_n(&e->stats.completed, __ATOMIC_RELAXED),
		.reports = __atomic_load_n(&e->stats.reports, __ATOMIC_RELAXED),
		.reports_shallow = __atomic_load_n(&e->stats.reports_shallow, __ATOMIC_RELAXED),
		.holds = __atomic_load_n(&e->stats.holds, __ATOMIC_RELAXED),
		.hold_expiries = __atomic_load_n(&e->stats.hold_expiries, __ATOMIC_RELAXED),
	};
}

int blk_io_uring_error(const struct blk_io *e)
{
	return e->uring_err;
}

ssize_t blk_io_run(struct blk_io *e, struct blk_io_req *req)
{
	if (e->started)
		return req->result = -EBUSY;
	return req->result = blk_io_sync_exec(e, req);
}

int blk_io_start(struct blk_io *e, int kick_fd, const struct blk_io_ops *ops, void *opaque)
{
	int r;

	if (e->started)
		return -EBUSY;
	if (!ops || !ops->next || !ops->complete)
		return -EINVAL;
	e->ops = ops;
	e->opaque = opaque;
	e->kick_fd = kick_fd;
	atomic_store(&e->stopping, false);
	atomic_store(&e->kicked, false);
	blk_io_drain_eventfd(e->wake_fd);
	e->want_pull = true;	/* the queue may hold requests already (a restart) */
	e->inflight = 0;
	e->nbatch = 0;
	e->pulls = e->busy_pulls = 0;
	e->streaming = false;
	e->nfree = e->depth;
	for (unsigned int i = 0; i < e->depth; i++)
		e->free_slots[i] = e->depth - 1 - i;
	r = thread_start(&e->thread, blk_io_thread, e);
	if (r < 0)
		return r;
	pthread_setname_np(e->thread, "vmm-blk-io");	/* in ps, top and gdb */
	e->started = true;
	return 0;
}

/* Wakes the worker; an eventfd write cannot fail short of a full counter (then it is awake). */
static void blk_io_wake(struct blk_io *e)
{
	uint64_t one = 1;

	if (write(e->wake_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is full, so the worker has a wake-up pending anyway. */
	}
}

void blk_io_kick(struct blk_io *e)
{
	atomic_store(&e->kicked, true);
	blk_io_wake(e);
}

void blk_io_stop(struct blk_io *e)
{
	if (!e->started)
		return;
	atomic_store(&e->stopping, true);
	blk_io_wake(e);
	pthread_join(e->thread, NULL);
	e->started = false;
}

void blk_io_destroy(struct blk_io *e)
{
	if (!e)
		return;
	blk_io_stop(e);
	if (e->wake_fd >= 0)
		close(e->wake_fd);
	free(e->bounce);
	free(e->batch);
	free(e->free_slots);
	free(e->slots);
	free(e->name);
	free(e);
}
