// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmm-vhost-user-blk's device (see vhost/vu_blk.h): the queues' disk-I/O
 * engines, config space and the device's part of the migrated state. A
 * request's checks are virtio/blk_req.c's, the same as vmm's own virtio-blk.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/virtio_config.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhost/vu_blk.h"
#include "vmm/base/util.h"

#define STATE_BYTES	16	/* size (u64), nqueues (u32), readonly (u32) */

/* One request from its pop to its used element. */
struct vu_blk_req {
	struct blk_req req;		/* the chain as popped, checked (virtio/blk_req.h) */
	/*
	 * The data segments, the engine's: the chain's own stay as they are, for the
	 * library's dirty log of what the request wrote (vu_queue_push).
	 */
	struct iovec iov[VIRTQ_MAX_IOV];
};

static struct vu_blk *dev_to_blk(struct vu_dev *dev)
{
	return container_of(dev, struct vu_blk, dev);
}

/* The disk as requests are checked against it (its size may grow: SIGHUP). */
static struct blk_req_disk blk_disk(struct vu_blk *b)
{
	return (struct blk_req_disk){
		.name = "vhost-user-blk", .size = atomic_load(&b->size), .readonly = b->readonly,
		.id = b->id, .einval_hint = b->dio_align ? " (try without --direct)" : NULL,
		.rl = &b->rl,
	};
}

/* ---- The engine's callbacks, on the queue's worker ---- */

static struct blk_io_req *queue_next(void *opaque)
{
	struct vu_blk_queue *bq = opaque;
	struct vu_blk *b = bq->b;
	struct blk_req_disk disk;
	struct vu_blk_req *r;
	int ret;

	if (bq->nfree == 0)
		return NULL;
	r = bq->free_reqs[bq->nfree - 1];
	for (;;) {
		ret = vu_queue_pop(&b->dev, bq->index, &r->req.chain);
		if (ret < 0)
			return NULL;	/* broken: the library signalled the err fd */
		if (ret > 0)
			break;
		if (bq->notify)
			return NULL;
		/* Empty: kicks back on, then look once more to close the race. */
		vu_queue_set_notify(&b->dev, bq->index, true);
		bq->notify = true;
		if (!vu_queue_has_work(&b->dev, bq->index))
			return NULL;
	}
	if (bq->notify) {
		/* Requests flow: the engine asks again after each batch, no kicks needed. */
		vu_queue_set_notify(&b->dev, bq->index, false);
		bq->notify = false;
	}
	bq->nfree--;
	disk = blk_disk(b);
	blk_req_prepare(&disk, &r->req, r->iov);
	r->req.io.cookie = r;
	return &r->req.io;
}

static void queue_complete(void *opaque, struct blk_io_req **reqs, unsigned int n)
{
	struct vu_blk_queue *bq = opaque;
	struct vu_blk *b = bq->b;
	struct blk_req_disk disk = blk_disk(b);

	if (b->hold_ms)
		usleep(b->hold_ms * 1000u);	/* testing: --hold-ms */
	for (unsigned int i = 0; i < n; i++) {
		struct vu_blk_req *r = reqs[i]->cookie;
		uint32_t written;

		blk_req_finish(&disk, &r->req, &written);
		/*
		 * The used length covers every writable byte: the library logs that
		 * much of the chain as dirty, and the status byte is its last.
		 */
		vu_queue_push(&b->dev, bq->index, &r->req.chain, r->req.chain.in_len);
		bq->free_reqs[bq->nfree++] = r;
	}
	vu_queue_flush(&b->dev, bq->index);
	vu_queue_notify(&b->dev, bq->index);
}

static const struct blk_io_ops queue_io_ops = {
	.next = queue_next,
	.complete = queue_complete,
};

/* ---- The library's callbacks ---- */

static void queue_free(struct vu_blk_queue *bq)
{
	blk_io_destroy(bq->io);
	bq->io = NULL;
	free(bq->reqs);
	free(bq->free_reqs);
	bq->reqs = NULL;
	bq->free_reqs = NULL;
	bq->nslots = bq->nfree = 0;
}

/*
 * Takes the image's lock (shared when read-only); 0, or -EBUSY after log_error when
 * another process holds it. A host that cannot lock at all is let through.
 */
static int blk_lock(struct vu_blk *b, const char *image)
{
	if (b->locked)
		return 0;
	if (flock(b->fd, (b->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		log_error("vhost-user-blk: image %s is in use by another process — stop it, or "
			  "use --readonly in every user", image);
		return -EBUSY;
	}
	b->locked = true;
	return 0;
}

static void blk_queue_start(struct vu_dev *dev, unsigned int q)
{
	struct vu_blk *b = dev_to_blk(dev);
	struct vu_blk_queue *bq = &b->queues[q];
	unsigned int n = vu_queue_size(dev, q);
	char name[48];
	struct blk_io_config cfg = {
		.name = name,
		.fd = b->fd,
		.is_bdev = b->is_bdev,
		.dio_align = b->dio_align,
		.size = atomic_load(&b->size),
		.depth = MIN(n, (unsigned int)BLK_IO_MAX_DEPTH),
		.kind = b->io_kind,
	};
	uint64_t t0 = monotonic_ms(), t_lock, t_engine;
	int ret;

	snprintf(name, sizeof(name), "vhost-user-blk queue %u", q);
	/* A destination (--incoming), or a source whose state was saved: the disk is ours now. */
	if (blk_lock(b, b->path)) {
		vu_panic(dev, "the image is in use by another process");
		return;
	}
	if (q >= b->nqueues) {
		/* More queues than offered: nothing to serve them with. */
		log_warn("vhost-user-blk: the front-end started queue %u of %u", q, b->nqueues);
		return;
	}
	t_lock = monotonic_ms();
	queue_free(bq);
	bq->reqs = calloc(cfg.depth, sizeof(*bq->reqs));
	bq->free_reqs = calloc(cfg.depth, sizeof(*bq->free_reqs));
	ret = bq->reqs && bq->free_reqs ? blk_io_create(&bq->io, &cfg) : -ENOMEM;
	if (!ret) {
		bq->nslots = bq->nfree = cfg.depth;
		for (unsigned int i = 0; i < cfg.depth; i++)
			bq->free_reqs[i] = &bq->reqs[i];
		/*
		 * Whether kicks are on is unknown: a predecessor killed while busy may
		 * have left them off (NO_NOTIFY, or a stale avail_event). The first
		 * empty look turns them on.
		 */
		bq->notify = false;
		t_engine = monotonic_ms();
		ret = blk_io_start(bq->io, vu_queue_kick_fd(dev, q), &queue_io_ops, bq);
	}
	if (ret) {
		log_error("vhost-user-blk: queue %u cannot start its I/O engine: %s — the host is "
			  "short of memory or threads", q, strerror(-ret));
		queue_free(bq);
		vu_panic(dev, "queue %u has no I/O engine", q);
		return;
	}
	if (q == 0)
		log_info("vhost-user-blk: queues use %s", blk_io_kind(bq->io) == BLK_IO_URING ?
			 "io_uring" : "synchronous I/O threads");
	if (monotonic_ms() - t0 >= 10)
		log_info("vhost-user-blk: queue %u took %llu ms to start (image lock %llu, I/O "
			 "engine set-up %llu, its start %llu)", q,
			 (unsigned long long)(monotonic_ms() - t0),
			 (unsigned long long)(t_lock - t0), (unsigned long long)(t_engine - t_lock),
			 (unsigned long long)(monotonic_ms() - t_engine));
}

static void blk_queue_stop(struct vu_dev *dev, unsigned int q)
{
	struct vu_blk *b = dev_to_blk(dev);

	if (q >= b->nqueues)
		return;
	/* Drains: every request the engine took is completed and pushed before it returns. */
	if (b->queues[q].io)
		blk_io_stop(b->queues[q].io);
	queue_free(&b->queues[q]);
}

void vu_blk_config(const struct vu_blk *b, struct virtio_blk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->capacity = htole64(atomic_load(&b->size) / BLK_SECTOR_SIZE);
	cfg->seg_max = htole32(VU_BLK_QUEUE_SIZE - 2);
	cfg->blk_size = htole32(BLK_SECTOR_SIZE);
	cfg->num_queues = htole16((uint16_t)b->nqueues);
	if (b->readonly)
		return;
	cfg->max_discard_sectors = htole32(BLK_MAX_DISCARD_SECTORS);
	cfg->max_discard_seg = htole32(1);
	cfg->discard_sector_alignment = htole32(8);
	cfg->max_write_zeroes_sectors = htole32(BLK_MAX_ZEROES_SECTORS);
	cfg->max_write_zeroes_seg = htole32(1);
	cfg->write_zeroes_may_unmap = 1;
}

static int blk_get_config(struct vu_dev *dev, uint8_t *buf, uint32_t offset, uint32_t len)
{
	struct virtio_blk_config cfg;

	vu_blk_config(dev_to_blk(dev), &cfg);
	if (offset > sizeof(cfg) || len > sizeof(cfg) - offset)
		return -EINVAL;
	memcpy(buf, (uint8_t *)&cfg + offset, len);
	return 0;
}

static int blk_set_config(struct vu_dev *dev, const uint8_t *buf, uint32_t offset, uint32_t len,
			  uint32_t flags)
{
	/* Nothing is writable (no CONFIG_WCE); a migration write must match what we have. */
	struct virtio_blk_config cfg;

	vu_blk_config(dev_to_blk(dev), &cfg);
	if (flags == 1 && offset <= sizeof(cfg) && len <= sizeof(cfg) - offset &&
	    !memcmp((uint8_t *)&cfg + offset, buf, len))
		return 0;
	return -EPERM;
}

/* The device's part of the state: a destination must serve the same disk. */
static int blk_state_save(struct vu_dev *dev, uint8_t *buf, size_t len)
{
	struct vu_blk *b = dev_to_blk(dev);
	uint64_t size = htole64(atomic_load(&b->size));
	uint32_t nq = htole32(b->nqueues), ro = htole32(b->readonly);

	if (len >= STATE_BYTES) {
		memcpy(buf, &size, 8);
		memcpy(buf + 8, &nq, 4);
		memcpy(buf + 12, &ro, 4);
		/*
		 * The state leaves for a destination (its rings are stopped): let the image go, so
		 * that the destination's back-end can take it when its queues start; a queue
		 * started here again (the migration failed) takes it back.
		 */
		if (b->locked && flock(b->fd, LOCK_UN) == 0)
			b->locked = false;
	}
	return STATE_BYTES;
}

static int blk_state_load(struct vu_dev *dev, const uint8_t *buf, size_t len)
{
	struct vu_blk *b = dev_to_blk(dev);
	uint64_t size;
	uint32_t nq, ro;

	if (len != STATE_BYTES)
		return -EINVAL;
	memcpy(&size, buf, 8);
	memcpy(&nq, buf + 8, 4);
	memcpy(&ro, buf + 12, 4);
	if (le64toh(size) != atomic_load(&b->size) || le32toh(nq) != b->nqueues ||
	    le32toh(ro) != (uint32_t)b->readonly) {
		log_error("vhost-user-blk: the incoming state is for a disk of %" PRIu64 " bytes, %"
			  PRIu32 " queues%s; this one has %" PRIu64 " bytes, %u queues%s — give "
			  "the destination the same image and options", le64toh(size), le32toh(nq),
			  le32toh(ro) ? ", read-only" : "", atomic_load(&b->size), b->nqueues,
			  b->readonly ? ", read-only" : "");
		return -EINVAL;
	}
	return 0;
}

static const struct vu_iface blk_iface = {
	.get_config = blk_get_config,
	.set_config = blk_set_config,
	.queue_start = blk_queue_start,
	.queue_stop = blk_queue_stop,
	.state_save = blk_state_save,
	.state_load = blk_state_load,
};

/* ---- The image ---- */

/* The image's size in bytes; 0 or -errno. */
static int image_size(struct vu_blk *b, uint64_t *size)
{
	struct stat st;

	if (fstat(b->fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(b->fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	*size = (uint64_t)st.st_size;
	return 0;
}

int vu_blk_open(struct vu_blk *b, const struct vu_blk_options *o)
{
	struct stat st;
	uint64_t size;
	const char *base;
	int err;

	memset(b, 0, sizeof(*b));
	b->fd = -1;
	b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	b->readonly = o->readonly;
	b->hold_ms = o->hold_ms;
	b->nqueues = o->nqueues;
	b->io_kind = o->io_kind;
	if (o->nqueues == 0 || o->nqueues > VU_BLK_MAX_QUEUES) {
		log_error("vhost-user-blk: %u queues — give 1..%d", o->nqueues, VU_BLK_MAX_QUEUES);
		return -EINVAL;
	}
	/* O_NONBLOCK: a FIFO given by mistake must not hang the open; cleared below. */
	b->fd = open(o->image, (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK |
		     (o->direct ? O_DIRECT : 0));
	if (b->fd < 0) {
		err = errno;
		log_error("vhost-user-blk: cannot open image %s: %s — %s", o->image, strerror(err),
			  err == EACCES || err == EPERM || err == EROFS ?
			  "check its permissions, or add --readonly" :
			  err == EINVAL && o->direct ? "its file system has no O_DIRECT: drop "
			  "--direct" : "check the path");
		return -err;
	}
	if (fstat(b->fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		log_error("vhost-user-blk: image %s is not a regular file or a block device — give "
			  "a raw image or a block device", o->image);
		err = EINVAL;
		goto fail;
	}
	fcntl(b->fd, F_SETFL, fcntl(b->fd, F_GETFL) & ~O_NONBLOCK);
	b->is_bdev = S_ISBLK(st.st_mode);
	err = -image_size(b, &size);
	if (err) {
		log_error("vhost-user-blk: cannot read the size of %s: %s — check that it is a "
			  "working disk", o->image, strerror(err));
		goto fail;
	}
	if (size < BLK_SECTOR_SIZE) {
		log_error("vhost-user-blk: image %s is smaller than one sector — give it a size, "
			  "e.g. truncate -s 1G %s", o->image, o->image);
		err = EINVAL;
		goto fail;
	}
	if (size % BLK_SECTOR_SIZE)
		log_warn("vhost-user-blk: image %s is %" PRIu64 " bytes; the last %" PRIu64
			 " bytes (less than a sector) are not served", o->image, size,
			 size % BLK_SECTOR_SIZE);
	atomic_store(&b->size, ALIGN_DOWN(size, (uint64_t)BLK_SECTOR_SIZE));
	if (o->direct) {
		int lbs = BLK_SECTOR_SIZE;

		if (b->is_bdev && ioctl(b->fd, BLKSSZGET, &lbs) < 0)
			lbs = BLK_SECTOR_SIZE;
		b->dio_align = b->is_bdev ? (uint32_t)MAX(lbs, BLK_SECTOR_SIZE) :
			       blk_io_file_dio_align(b->fd);
		if (b->dio_align & (b->dio_align - 1) || b->dio_align > BLK_IO_BOUNCE_SIZE) {
			log_error("vhost-user-blk: image %s needs an unusual direct I/O alignment "
				  "of %u bytes — drop --direct", o->image, b->dio_align);
			err = EINVAL;
			goto fail;
		}
	}
	if (o->io_kind != BLK_IO_SYNC)
		blk_io_warm_up();
	/* Two writers corrupt an image: the same lock vmm takes on its disks. */
	b->readonly = o->readonly;
	if (!o->incoming && blk_lock(b, o->image)) {
		err = EBUSY;
		goto fail;
	}
	b->path = strdup(o->image);
	if (!b->path) {
		err = ENOMEM;
		goto fail;
	}
	base = strrchr(o->image, '/');
	base = base ? base + 1 : o->image;
	memcpy(b->id, base, MIN(strlen(base), sizeof(b->id)));
	b->features = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_BLK_F_SEG_MAX |
		      1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH |
		      1ULL << VIRTIO_BLK_F_MQ;
	if (b->readonly)
		b->features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		b->features |= 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	return 0;
fail:
	close(b->fd);
	b->fd = -1;
	return -err;
}

void vu_blk_close(struct vu_blk *b)
{
	if (b->connected)
		vu_blk_disconnect(b);
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	free(b->path);
	b->path = NULL;
}

int vu_blk_connect(struct vu_blk *b, int sock, const struct vu_ops *ops)
{
	struct vu_config cfg = {
		.name = "vhost-user-blk",
		.sock = sock,
		.nqueues = b->nqueues,
		.max_queue_size = VU_BLK_QUEUE_SIZE,
		.features = b->features,
		.iface = &blk_iface,
		.ops = ops,
	};
	int ret = vu_init(&b->dev, &cfg);

	if (ret) {
		vu_fini(&b->dev);
		return ret;
	}
	for (unsigned int i = 0; i < VU_BLK_MAX_QUEUES; i++)
		b->queues[i] = (struct vu_blk_queue){ .b = b, .index = i };
	b->connected = true;
	return 0;
}

void vu_blk_disconnect(struct vu_blk *b)
{
	if (!b->connected)
		return;
	vu_fini(&b->dev);
	for (unsigned int i = 0; i < VU_BLK_MAX_QUEUES; i++)
		queue_free(&b->queues[i]);
	b->connected = false;
}

int vu_blk_resize(struct vu_blk *b)
{
	uint64_t size;
	int ret = image_size(b, &size);

	if (ret) {
		log_error("vhost-user-blk: cannot read the size of %s again: %s — the capacity "
			  "stays %" PRIu64 " bytes", b->path, strerror(-ret), atomic_load(&b->size));
		return ret;
	}
	size = ALIGN_DOWN(size, (uint64_t)BLK_SECTOR_SIZE);
	if (size == atomic_load(&b->size) || size == 0)
		return 0;
	log_info("vhost-user-blk: %s is now %" PRIu64 " bytes (was %" PRIu64 ")", b->path, size,
		 atomic_load(&b->size));
	atomic_store(&b->size, size);
	if (b->connected && !vu_broken(&b->dev)) {
		ret = vu_config_changed(&b->dev);
		if (ret == -ENOTCONN)
			log_warn("vhost-user-blk: the front-end has no back-end channel with "
				 "CONFIG; it sees the new size only when it reads the config again");
	}
	return 1;
}
