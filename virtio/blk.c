// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-blk (VIRTIO 1.x §5.2): a raw image file or a host block device.
 *
 * Every request field comes from the guest and is checked when the request
 * is popped (virtio/blk_req.c, shared with vmm-vhost-user-blk); the I/O itself runs on the queue's disk-I/O engine
 * (virtio/blk_io.h), straight between the image and guest RAM, through an
 * aligned bounce buffer where O_DIRECT needs it. Threads and locks: blk.h.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "virtio/blk.h"
#include "vmm/base/util.h"


/* ---- Requests: virtio/blk_req.c ---- */

/* The engine blk_handle_chain() runs requests on: synchronous, on the caller's thread. */
static int blk_sync_io(struct virtio_blk *b, struct blk_io **out)
{
	struct blk_io_config cfg = {
		.name = b->name, .fd = b->fd, .is_bdev = b->is_bdev,
		.dio_align = b->direct ? b->dio_align : 0, .size = b->size, .depth = 1,
		.kind = BLK_IO_SYNC, .no_fallocate = b->no_fallocate, .no_discard = b->no_discard,
	};

	if (!b->sync_io) {
		int r = blk_io_create(&b->sync_io, &cfg);

		if (r < 0)
			return r;
	}
	*out = b->sync_io;
	return 0;
}

uint8_t blk_handle_chain(struct virtio_blk *b, const struct virtq_chain *c, uint32_t *written)
{
	struct blk_req *r = malloc(sizeof(*r));
	struct blk_io *e;
	uint8_t st;

	*written = 0;
	if (!r)
		return VIRTIO_BLK_S_IOERR;
	r->chain = *c;
	blk_req_prepare(&b->disk, r, r->chain.iov);
	if (r->io.op == BLK_IO_NOP)
		r->io.result = 0;
	else if (blk_sync_io(b, &e) < 0)
		r->io.result = -ENOMEM;
	else
		blk_io_run(e, &r->io);
	st = blk_req_finish(&b->disk, r, written);
	free(r);
	return st;
}

/* ---- Set-up ---- */

static const char *blk_open_hint(int err, const struct blk_options *o)
{
	switch (err) {
	case ENOENT:
	case ENOTDIR:
		return "check the path";
	case EACCES:
	case EPERM:
		return o->readonly ? "check its permissions" :
		       "check its permissions, or add readonly=on";
	case EROFS:
		return "add readonly=on";
	case EISDIR:
		return "give a raw image file or a block device, not a directory";
	case EINVAL:
		return o->direct ? "its filesystem does not support O_DIRECT; use direct=off" :
		       "give a raw image file or a block device";
	case EBUSY:
		return "another program has the device open exclusively";
	default:
		return "give a readable raw image file or block device";
	}
}

/*
 * Takes the image's lock (exclusive, or shared for readonly=on) so that no other vmm
 * writes it meanwhile; 0, -EBUSY when another process holds it (a host that cannot
 * lock: a warning, 0).
 */
static int blk_lock(struct virtio_blk *b)
{
	if (flock(b->fd, (b->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		int err = errno;

		if (err == EWOULDBLOCK) {
			log_error("%s: disk image %s is in use by another process — stop it, or "
				  "use readonly=on in every user", b->name, b->path);
			return -EBUSY;
		}
		log_warn("%s: cannot lock disk image %s: %s; continuing without a lock", b->name,
			 b->path, strerror(err));
	}
	b->locked = true;
	return 0;
}

/* Opens and checks the image; fills fd, size, is_bdev, blk_size, dio_align. */
static int blk_open(struct virtio_blk *b, const struct blk_options *o)
{
	int flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK;
	struct stat st;
	int err;

	if (o->direct)
		flags |= O_DIRECT;
	/* O_NONBLOCK: a FIFO given by mistake must not hang the open; cleared below. */
	b->fd = open(o->path, flags);
	if (b->fd < 0) {
		err = errno;
		log_error("%s: cannot open disk image %s: %s — %s", b->name, o->path,
			  strerror(err), blk_open_hint(err, o));
		return -err;
	}
	if (fstat(b->fd, &st) < 0) {
		err = errno;
		log_error("%s: cannot stat disk image %s: %s — check the path", b->name, o->path,
			  strerror(err));
		return -err;
	}
	if (S_ISDIR(st.st_mode)) {
		log_error("%s: disk image %s is a directory — give a raw image file or a block "
			  "device", b->name, o->path);
		return -EISDIR;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_error("%s: disk image %s is not a regular file or a block device — give a "
			  "raw image file or a block device", b->name, o->path);
		return -EINVAL;
	}
	if (fcntl(b->fd, F_SETFL, fcntl(b->fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		err = errno;
		log_error("%s: cannot configure disk image %s: %s — check the path", b->name,
			  o->path, strerror(err));
		return -err;
	}

	b->blk_size = BLK_SECTOR_SIZE;
	b->dio_align = BLK_SECTOR_SIZE;
	if (S_ISBLK(st.st_mode)) {
		int lbs = 0;

		b->is_bdev = true;
		if (ioctl(b->fd, BLKGETSIZE64, &b->size) < 0 ||
		    ioctl(b->fd, BLKSSZGET, &lbs) < 0) {
			err = errno;
			log_error("%s: cannot read the size of block device %s: %s — check that "
				  "it is a working disk", b->name, o->path, strerror(err));
			return -err;
		}
		if (lbs > BLK_SECTOR_SIZE && lbs <= 4096 && !(lbs & (lbs - 1)))
			b->blk_size = lbs;
		if (o->direct)
			b->dio_align = b->blk_size;
	} else {
		b->size = st.st_size;
		if (o->direct)
			b->dio_align = blk_io_file_dio_align(b->fd);
	}
	if (b->dio_align & (b->dio_align - 1) || b->dio_align > BLK_IO_BOUNCE_SIZE) {
		log_error("%s: disk image %s needs an unusual direct I/O alignment of %u bytes — "
			  "use direct=off", b->name, o->path, b->dio_align);
		return -EINVAL;
	}
	if (b->size == 0) {
		log_error("%s: disk image %s is empty — give it a size, e.g. truncate -s 1G %s",
			  b->name, o->path, o->path);
		return -EINVAL;
	}
	if (b->size % BLK_SECTOR_SIZE) {
		unsigned long long padded = ALIGN_UP(b->size, (uint64_t)BLK_SECTOR_SIZE);

		log_error("%s: disk image %s is %llu bytes, not a multiple of %d — pad it with "
			  "truncate -s %llu %s", b->name, o->path, (unsigned long long)b->size,
			  BLK_SECTOR_SIZE, padded, o->path);
		return -EINVAL;
	}

	/* Two writers corrupt an image: hold a lock that other instances of vmm see. */
	if (!b->lock_deferred)
		return blk_lock(b);
	return 0;
}

static void blk_setup_config(struct virtio_blk *b)
{
	struct virtio_blk_config *cfg = &b->config;

	memset(cfg, 0, sizeof(*cfg));
	b->features = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE |
		      1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_MQ;
	cfg->capacity = htole64(b->size / BLK_SECTOR_SIZE);
	cfg->seg_max = htole32(BLK_SEG_MAX);
	cfg->blk_size = htole32(b->blk_size);
	cfg->num_queues = htole16(BLK_NUM_QUEUES);
	if (b->readonly) {
		b->features |= 1ULL << VIRTIO_BLK_F_RO;
		return;
	}
	b->features |= 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	cfg->max_discard_sectors = htole32(BLK_MAX_DISCARD_SECTORS);
	cfg->max_discard_seg = htole32(BLK_MAX_DWZ_SEG);
	cfg->discard_sector_alignment = htole32(MAX(BLK_DISCARD_ALIGN,
						    b->blk_size / BLK_SECTOR_SIZE));
	cfg->max_write_zeroes_sectors = htole32(BLK_MAX_ZEROES_SECTORS);
	cfg->max_write_zeroes_seg = htole32(BLK_MAX_DWZ_SEG);
	cfg->write_zeroes_may_unmap = 1;
}

int virtio_blk_init(struct virtio_blk *b, const struct blk_options *o, const char *name)
{
	const char *id;
	size_t id_len;
	int r;

	b->fd = -1;
	b->error_src.fd = -1;
	b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	b->readonly = o->readonly;
	b->direct = o->direct;
	b->name = strdup(name ? name : "virtio-blk");
	b->path = o->path ? strdup(o->path) : NULL;
	if (!b->name || (o->path && !b->path)) {
		log_error("virtio-blk: out of memory — free some host memory");
		return -ENOMEM;
	}
	if (!o->path || !o->path[0]) {
		log_error("%s: no disk image given — use --disk path=FILE", b->name);
		r = -EINVAL;
		goto fail;
	}
	if (o->id) {
		id = o->id;
		id_len = strlen(id);
		if (id_len > sizeof(b->id)) {
			log_error("%s: disk id '%s' is %zu bytes long — use at most %zu", b->name,
				  id, id_len, sizeof(b->id));
			r = -EINVAL;
			goto fail;
		}
	} else {
		id = strrchr(o->path, '/');
		id = id ? id + 1 : o->path;
		id_len = MIN(strlen(id), sizeof(b->id));
	}
	memset(b->id, 0, sizeof(b->id));
	memcpy(b->id, id, id_len);

	r = blk_open(b, o);
	if (r < 0)
		goto fail;
	blk_setup_config(b);
	b->disk = (struct blk_req_disk){
		.name = b->name, .size = b->size, .readonly = b->readonly, .id = b->id,
		.einval_hint = b->direct ? " (try direct=off)" : NULL, .rl = &b->rl,
	};
	return 0;

fail:
	virtio_blk_fini(b);
	return r;
}

void virtio_blk_fini(struct virtio_blk *b)
{
	/*
	 * The lock goes with the open file, which an io_uring engine's ring still holds
	 * (a registered file) until the kernel has torn the ring down, some time after
	 * this: unlock now, so a reboot's new disk can take the image at once.
	 */
	if (b->fd >= 0 && b->locked)
		flock(b->fd, LOCK_UN);
	b->locked = false;
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	blk_io_destroy(b->sync_io);
	b->sync_io = NULL;
	free(b->name);
	b->name = NULL;
	free(b->path);
	b->path = NULL;
}

/* ---- The back-end: one disk-I/O engine per queue ---- */

/* What the back-end serves on top of the device's bits: ring layouts and VERSION_1. */
#define BLK_RING_FEATURES \
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
	 (1ULL << VIRTIO_RING_F_EVENT_IDX))

static struct virtio_blk *be_to_blk(struct virtio_backend *be)
{
	return container_of(be, struct virtio_blk, be);
}

/* A worker found queue bq unusable: the event loop tells the transport (see blk.h). */
static void blk_queue_fail(struct blk_queue *bq, const char *why)
{
	uint64_t one = 1;
	const char *none = NULL;

	if (!atomic_compare_exchange_strong(&bq->failed, &none, why))
		return;
	if (write(bq->b->error_src.fd, &one, sizeof(one)) != sizeof(one))
		log_warn("%s: cannot report a broken queue: %s", bq->b->name, strerror(errno));
}

/* The event loop: reports the queues their workers found broken (DEVICE_NEEDS_RESET). */
static void blk_error_event(struct event_source *src, uint32_t events)
{
	struct virtio_blk *b = container_of(src, struct virtio_blk, error_src);
	uint64_t v;

	(void)events;
	if (read(src->fd, &v, sizeof(v)) < 0)
		return;
	pthread_mutex_lock(&b->dev.lock);
	for (unsigned int q = 0; q < BLK_NUM_QUEUES; q++) {
		struct blk_queue *bq = &b->queues[q];
		const char *why = atomic_exchange(&bq->failed, NULL);

		/* A queue stopped since (a reset) has nothing to report any more. */
		if (why && bq->started)
			bq->call->error(bq->call, why);
	}
	pthread_mutex_unlock(&b->dev.lock);
}

/*
 * The used-buffer interrupt from the worker: InterruptStatus is the
 * transport's, so under the device lock, taken only for this. A stop holds
 * the lock while it waits for the worker: then the interrupt is stop()'s.
 */
static void blk_queue_raise(struct blk_queue *bq)
{
	pthread_mutex_t *lock = &bq->b->dev.lock;

	for (;;) {
		struct timespec until;

		if (atomic_load(&bq->stopping)) {
			atomic_store(&bq->raise_owed, true);
			return;
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 1000000;	/* 1 ms, then look at stopping again */
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		if (pthread_mutex_timedlock(lock, &until) == 0)
			break;
	}
	bq->call->raise(bq->call);
	pthread_mutex_unlock(lock);
}

/* Adds the kicks the engine took since the last time to the transport's statistics. */
static void blk_queue_count_kicks(struct blk_queue *bq)
{
	uint64_t k = blk_io_kicks(bq->io);

	if (k != bq->kicks_counted)
		__atomic_fetch_add(&bq->call->kicks, k - bq->kicks_counted, __ATOMIC_RELAXED);
	bq->kicks_counted = k;
}

/*
 * The engine's next(), on the worker: pops a chain into a free slot and
 * checks it. Guest kicks stay off while requests are in flight (the engine
 * asks again after each batch); with none in flight they are turned on and the
 * ring looked at once more before saying there is nothing.
 */
static struct blk_io_req *blk_queue_next(void *opaque)
{
	struct blk_queue *bq = opaque;
	struct virtq *vq = &bq->vq;
	struct blk_req *r;
	int ret;

	blk_queue_count_kicks(bq);
	if (vq->broken || !bq->nfree)
		return NULL;
	r = bq->free_reqs[bq->nfree - 1];
	for (;;) {
		ret = virtq_pop(vq, &r->chain);
		if (ret > 0)
			break;
		if (ret < 0) {
			blk_queue_fail(bq, "malformed descriptor chain");
			return NULL;
		}
		if (bq->nfree < BLK_QUEUE_SIZE) {
			/* In flight: their completion asks again, no kick needed. */
			if (bq->notify) {
				virtq_set_notify(vq, false);
				bq->notify = false;
			}
			return NULL;
		}
		if (bq->notify)
			return NULL;
		virtq_set_notify(vq, true);
		bq->notify = true;
		if (!virtq_has_work(vq))
			return NULL;
	}
	if (bq->notify) {
		virtq_set_notify(vq, false);
		bq->notify = false;
	}
	bq->nfree--;
	/* In place: the chain's segments are not needed once the status byte is found. */
	blk_req_prepare(&bq->b->disk, r, r->chain.iov);
	return &r->io;
}

/* The engine's complete(), on the worker: status bytes, used elements, at most one interrupt. */
static void blk_queue_complete(void *opaque, struct blk_io_req **reqs, unsigned int n)
{
	struct blk_queue *bq = opaque;
	struct virtq *vq = &bq->vq;
	bool failed = false;

	for (unsigned int i = 0; i < n; i++) {
		struct blk_req *r = container_of(reqs[i], struct blk_req, io);
		uint32_t written;

		blk_req_finish(&bq->b->disk, r, &written);
		if (!failed && virtq_add_used(vq, r->chain.head, written) < 0)
			failed = true;
		bq->free_reqs[bq->nfree++] = r;
	}
	if (failed) {
		blk_queue_fail(bq, "cannot complete a request");
		return;
	}
	virtq_publish_used(vq);
	if (virtq_should_notify(vq))
		blk_queue_raise(bq);
}

static const struct blk_io_ops blk_queue_io_ops = {
	.next = blk_queue_next,
	.complete = blk_queue_complete,
};

static uint64_t blk_be_features(struct virtio_backend *be)
{
	return be_to_blk(be)->features | BLK_RING_FEATURES;
}

static int blk_be_start(struct virtio_backend *be, unsigned int q,
			const struct virtq_state *state, int kick_fd, struct virtio_call *call)
{
	struct virtio_blk *b = be_to_blk(be);
	struct blk_queue *bq;
	int ret;

	if (q >= BLK_NUM_QUEUES)
		return -EINVAL;
	bq = &b->queues[q];
	if (bq->started)
		return -EBUSY;
	ret = virtq_start_from(&bq->vq, b->mem, state);
	if (ret)
		return ret;
	/* A previous run may have left kicks off; the engine looks at the ring first. */
	virtq_set_notify(&bq->vq, true);
	bq->notify = true;
	bq->nfree = BLK_QUEUE_SIZE;
	for (unsigned int i = 0; i < BLK_QUEUE_SIZE; i++)
		bq->free_reqs[i] = &bq->reqs[BLK_QUEUE_SIZE - 1 - i];
	atomic_store(&bq->stopping, false);
	atomic_store(&bq->raise_owed, false);
	atomic_store(&bq->failed, NULL);
	bq->call = call;
	bq->kicks_counted = blk_io_kicks(bq->io);
	ret = blk_io_start(bq->io, kick_fd, &blk_queue_io_ops, bq);
	if (ret) {
		bq->call = NULL;
		virtq_reset(&bq->vq, b->mem);
		return ret;
	}
	bq->started = true;
	return 0;
}

static void blk_be_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *state)
{
	struct virtio_blk *b = be_to_blk(be);
	struct blk_queue *bq;

	if (q >= BLK_NUM_QUEUES || !b->queues[q].started)
		return;
	bq = &b->queues[q];
	/* Every request pulled completes (the worker leaves its interrupt to us), then it ends. */
	atomic_store(&bq->stopping, true);
	blk_io_stop(bq->io);
	blk_queue_count_kicks(bq);
	if (atomic_exchange(&bq->raise_owed, false))
		bq->call->raise(bq->call);
	atomic_store(&bq->failed, NULL);
	/* The next owner of the ring gets kicks; complete() published every used element. */
	virtq_set_notify(&bq->vq, true);
	virtq_publish_used(&bq->vq);
	virtq_save(&bq->vq, state);
	virtq_reset(&bq->vq, b->mem);
	bq->started = false;
	bq->call = NULL;
}

/* The queues are stopped (the transport is gone): engines, slots and the error eventfd. */
static void blk_be_destroy(struct virtio_backend *be)
{
	struct virtio_blk *b = be_to_blk(be);

	for (unsigned int q = 0; q < BLK_NUM_QUEUES; q++) {
		struct blk_queue *bq = &b->queues[q];

		blk_io_destroy(bq->io);
		bq->io = NULL;
		free(bq->reqs);
		bq->reqs = NULL;
		free(bq->free_reqs);
		bq->free_reqs = NULL;
	}
	if (b->error_src.fd >= 0) {
		if (b->loop)
			event_loop_remove_sync(b->loop, &b->error_src);
		close(b->error_src.fd);
		b->error_src.fd = -1;
	}
}

static const struct virtio_backend_ops blk_backend_ops = {
	.name = "blk-io",
	.features = blk_be_features,
	.start = blk_be_start,
	.stop = blk_be_stop,
	.destroy = blk_be_destroy,
};

/* Logs once per disk which engine its queues use (all are made alike). */
static void blk_log_engine(const struct virtio_blk *b)
{
	const struct blk_io *e = b->queues[0].io;

	if (blk_io_kind(e) == BLK_IO_URING)
		log_info("%s: disk I/O on io_uring, %d queues of up to %d requests in flight",
			 b->name, BLK_NUM_QUEUES, BLK_QUEUE_SIZE);
	else if (blk_io_uring_error(e))
		log_info("%s: disk I/O on a synchronous worker thread per queue (io_uring: %s)",
			 b->name, strerror(-blk_io_uring_error(e)));
	else
		log_info("%s: disk I/O on a synchronous worker thread per queue", b->name);
}

/* Sets up the back-end over the open disk: an engine and request slots per queue; 0 or -errno. */
static int blk_backend_init(struct virtio_blk *b, struct virtio_host *host)
{
	int r;

	b->be.ops = &blk_backend_ops;
	b->mem = host->mem;
	b->loop = host->loop;
	b->error_src = (struct event_source){ .fd = -1, .fn = blk_error_event };
	for (unsigned int q = 0; q < BLK_NUM_QUEUES; q++) {
		struct blk_queue *bq = &b->queues[q];

		*bq = (struct blk_queue){ .b = b, .index = q };
		virtq_reset(&bq->vq, b->mem);
	}
	b->error_src.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->error_src.fd < 0)
		return -errno;
	r = event_loop_add(b->loop, &b->error_src, EPOLLIN);
	if (r < 0) {
		close(b->error_src.fd);
		b->error_src.fd = -1;
		return r;
	}
	for (unsigned int q = 0; q < BLK_NUM_QUEUES; q++) {
		struct blk_queue *bq = &b->queues[q];
		char name[64];
		struct blk_io_config cfg = {
			.name = name, .fd = b->fd, .is_bdev = b->is_bdev,
			.dio_align = b->direct ? b->dio_align : 0, .size = b->size,
			.depth = BLK_QUEUE_SIZE, .kind = b->io_kind,
			.no_fallocate = b->no_fallocate, .no_discard = b->no_discard,
		};

		snprintf(name, sizeof(name), "%s queue %u", b->name, q);
		bq->reqs = calloc(BLK_QUEUE_SIZE, sizeof(*bq->reqs));
		bq->free_reqs = calloc(BLK_QUEUE_SIZE, sizeof(*bq->free_reqs));
		if (!bq->reqs || !bq->free_reqs)
			return -ENOMEM;
		r = blk_io_create(&bq->io, &cfg);
		if (r < 0)
			return r;
	}
	blk_log_engine(b);
	return 0;
}

/* ---- The transport ---- */

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	virtio_mmio_destroy(&b->dev);
	if (b->be.ops)
		b->be.ops->destroy(&b->be);
	virtio_blk_fini(b);
	free(b);
}

static void blk_destroy(struct virtio_mmio_dev *d)
{
	virtio_blk_destroy(container_of(d, struct virtio_blk, dev));
}

/*
 * Migration: nothing beyond the queues, whose requests all completed when they
 * were paused (blk_be_stop drains them). The destination's disk must look the
 * same to the guest: its config space (capacity, block size, limits) must equal
 * the source's.
 */
#define BLK_STATE_VERSION	1

static int blk_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	sbuf_put_u32(out, BLK_STATE_VERSION);
	return 0;
}

static int blk_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	int ret = virtio_mmio_load_version(d, in, BLK_STATE_VERSION);

	if (!ret)
		ret = sbuf_finish(in);
	if (!ret)
		ret = virtio_mmio_load_config_same(d, "the disk's size or geometry");
	return ret;
}

/* A reset stops the queues first, and a stop drains what is in flight (blk_be_stop). */
/*
 * A migration's switchover: the source lets the image go once its guest is paused for
 * good (the destination, on shared storage, takes it before its guest runs), and takes it
 * back if the migration fails.
 */
static int blk_switchover(struct virtio_mmio_dev *d, bool active)
{
	struct virtio_blk *b = container_of(d, struct virtio_blk, dev);

	if (active)
		return b->locked ? 0 : blk_lock(b);
	if (b->locked && flock(b->fd, LOCK_UN) < 0)
		return -errno;
	b->locked = false;
	return 0;
}

/* SIGUSR2: each queue's own positions (while it runs) and its engine's batching. */
static void blk_log_state(struct virtio_mmio_dev *d)
{
	struct virtio_blk *b = container_of(d, struct virtio_blk, dev);

	for (unsigned int q = 0; q < BLK_NUM_QUEUES; q++) {
		struct blk_queue *bq = &b->queues[q];
		struct blk_io_stats st;
		struct virtq_view v;
		char line[256] = "";

		if (!bq->io)
			continue;
		if (bq->started && virtq_view(&bq->vq, &v)) {
			virtq_view_format(&v, line, sizeof(line));
			log_notice("%s: queue %u, as its worker has it: %s", d->name, q, line);
		}
		blk_io_get_stats(bq->io, &st);
		if (!st.reports)
			continue;
		log_notice("%s: queue %u: %" PRIu64 " requests answered in %" PRIu64 " batches "
			   "(%.2f per batch; %" PRIu64 " with fewer than %u in flight), %" PRIu64
			   " waits with a batch held, %" PRIu64 " ended by their time limit",
			   d->name, q, st.completed, st.reports, (double)st.completed / st.reports,
			   st.reports_shallow, BLK_IO_HOLD_DEPTH, st.holds, st.hold_expiries);
	}
}

static const struct virtio_dev_ops blk_ops = {
	.name = "virtio-blk",
	.log_state = blk_log_state,
	.device_id = VIRTIO_ID_BLOCK,
	.nqueues = BLK_NUM_QUEUES,
	.queue_max_size = BLK_QUEUE_SIZE,
	.destroy = blk_destroy,
	.save = blk_save,
	.load = blk_load,
	.switchover = blk_switchover,
};

int virtio_blk_attach(struct virtio_blk *b, struct virtio_host *host, uint64_t base,
		      uint32_t gsi)
{
	int r = blk_backend_init(b, host);

	if (r < 0) {
		log_error("%s: cannot set up the disk I/O engines: %s — free some host memory "
			  "or raise the open files limit", b->name, strerror(-r));
		return r;
	}
	r = virtio_mmio_init(&b->dev, &blk_ops, host, b->name, base, gsi, b->features,
			     &b->config, sizeof(b->config), &b->be);
	if (r < 0) {
		log_error("%s: cannot set up the virtio-mmio transport: %s — check that KVM "
			  "supports ioeventfd and irqfd", b->name, strerror(-r));
		return r;
	}
	return 0;
}

int virtio_blk_create(struct virtio_host *host, const struct blk_options *o, const char *name,
		      uint64_t base, uint32_t gsi, struct virtio_blk **out)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	int r;

	*out = NULL;
	if (!b) {
		log_error("%s: out of memory — free some host memory",
			  name ? name : "virtio-blk");
		return -ENOMEM;
	}
	/* A destination of a migration takes the image at switchover (blk_switchover). */
	b->lock_deferred = host && host->incoming;
	blk_io_warm_up();	/* not at the first queue start, while a migrated guest waits */
	r = virtio_blk_init(b, o, name);
	if (r < 0) {
		free(b);
		return r;
	}
	r = virtio_blk_attach(b, host, base, gsi);
	if (r < 0) {
		virtio_blk_destroy(b);	/* what init and attach set up before failing */
		return r;
	}
	*out = b;
	return 0;
}
