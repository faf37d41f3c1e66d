// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmm-vhost-user-blk's device (see vhost/vu_blk.h): request checks, the
 * queues' disk-I/O engines, config space and the device's part of the
 * migrated state.
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

#define HDR_SIZE	sizeof(struct virtio_blk_outhdr)
#define DWZ_SIZE	sizeof(struct virtio_blk_discard_write_zeroes)
#define STATE_BYTES	16	/* size (u64), nqueues (u32), readonly (u32) */

/* One request from its pop to its used element. */
struct vu_blk_req {
	struct blk_io_req io;		/* BLK_IO_NOP: answered without I/O */
	uint8_t *status;		/* the status byte in guest memory; NULL: no room */
	uint8_t st;			/* VIRTIO_BLK_S_* if the I/O (if any) succeeds */
	uint32_t type;
	struct virtq_chain chain;	/* as popped (logging and the used element need it) */
	struct iovec iov[VIRTQ_MAX_IOV];	/* the data part, the engine's */
};

static struct vu_blk *dev_to_blk(struct vu_dev *dev)
{
	return container_of(dev, struct vu_blk, dev);
}

/*
 * Copies the byte range [off, off + len) of the n segments at src into dst
 * (at most max segments, none empty). The number of segments, or -EINVAL if
 * the segments end first.
 */
static int iov_range(const struct iovec *src, unsigned int n, size_t off, size_t len,
		     struct iovec *dst, unsigned int max)
{
	unsigned int k = 0;

	for (unsigned int i = 0; i < n && len; i++) {
		size_t seg = src[i].iov_len, take;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		take = MIN(seg - off, len);
		if (k == max)
			return -EINVAL;
		dst[k++] = (struct iovec){ .iov_base = (uint8_t *)src[i].iov_base + off,
					   .iov_len = take };
		len -= take;
		off = 0;
	}
	return len ? -EINVAL : (int)k;
}

/* The last writable byte of the chain (the status byte), or NULL if it has none. */
static uint8_t *last_in_byte(const struct virtq_chain *c)
{
	for (unsigned int i = c->nout + c->nin; i > c->nout; i--) {
		const struct iovec *v = &c->iov[i - 1];

		if (v->iov_len)
			return (uint8_t *)v->iov_base + v->iov_len - 1;
	}
	return NULL;
}

/* Whether [sector, + bytes) is inside the disk; sets *off to its byte offset. */
static bool range_ok(const struct vu_blk *b, uint64_t sector, uint64_t bytes, uint64_t *off)
{
	uint64_t size = atomic_load(&b->size), end;

	if (sector > UINT64_MAX / VU_BLK_SECTOR)
		return false;
	*off = sector * VU_BLK_SECTOR;
	return !__builtin_add_overflow(*off, bytes, &end) && end <= size;
}

static uint8_t prepare_rw(struct vu_blk *b, struct vu_blk_req *r, uint64_t sector)
{
	const struct virtq_chain *c = &r->chain;
	bool read = r->type == VIRTIO_BLK_T_IN;
	uint64_t len = read ? c->in_len - 1 : c->out_len - HDR_SIZE, off;
	int n;

	if (!read && b->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (len % VU_BLK_SECTOR || !range_ok(b, sector, len, &off)) {
		log_warn_ratelimited(&b->rl, "vhost-user-blk: %s of %" PRIu64 " bytes at sector %"
				     PRIu64 " is outside the disk or not whole sectors",
				     read ? "read" : "write", len, sector);
		return VIRTIO_BLK_S_IOERR;
	}
	if (read)
		n = iov_range(c->iov + c->nout, c->nin, 0, len, r->iov, VIRTQ_MAX_IOV);
	else
		n = iov_range(c->iov, c->nout, HDR_SIZE, len, r->iov, VIRTQ_MAX_IOV);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	r->io.op = read ? BLK_IO_READ : BLK_IO_WRITE;
	r->io.offset = off;
	r->io.iov = r->iov;
	r->io.niov = (unsigned int)n;
	return VIRTIO_BLK_S_OK;
}

static uint8_t prepare_dwz(struct vu_blk *b, struct vu_blk_req *r)
{
	struct virtio_blk_discard_write_zeroes seg;
	bool discard = r->type == VIRTIO_BLK_T_DISCARD;
	uint32_t flags, num;
	uint64_t sector, off;

	if (b->readonly)
		return VIRTIO_BLK_S_UNSUPP;
	/* One segment per request (max_discard_seg / max_write_zeroes_seg). */
	if (r->chain.out_len != HDR_SIZE + DWZ_SIZE ||
	    virtq_chain_read(&r->chain, HDR_SIZE, &seg, sizeof(seg)) != sizeof(seg))
		return VIRTIO_BLK_S_IOERR;
	sector = le64toh(seg.sector);
	num = le32toh(seg.num_sectors);
	flags = le32toh(seg.flags);
	if (flags & ~(discard ? 0u : (uint32_t)VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
		return VIRTIO_BLK_S_UNSUPP;
	if (num > (discard ? VU_BLK_MAX_DISCARD : VU_BLK_MAX_ZEROES) ||
	    !range_ok(b, sector, (uint64_t)num * VU_BLK_SECTOR, &off))
		return VIRTIO_BLK_S_IOERR;
	r->io.op = discard ? BLK_IO_DISCARD : BLK_IO_WRITE_ZEROES;
	r->io.flags = (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ? BLK_IO_F_UNMAP : 0;
	r->io.offset = off;
	r->io.len = (uint64_t)num * VU_BLK_SECTOR;
	return VIRTIO_BLK_S_OK;
}

/* Checks the popped chain and makes r's engine request (NOP with a status if there is no I/O). */
static void prepare(struct vu_blk *b, struct vu_blk_req *r)
{
	struct virtio_blk_outhdr hdr;
	uint64_t sector;

	memset(&r->io, 0, sizeof(r->io));
	r->io.op = BLK_IO_NOP;
	r->io.cookie = r;
	r->status = last_in_byte(&r->chain);
	r->type = UINT32_MAX;
	if (!r->status || virtq_chain_read(&r->chain, 0, &hdr, HDR_SIZE) != HDR_SIZE) {
		log_warn_ratelimited(&b->rl, "vhost-user-blk: request without a header or a "
				     "status byte");
		r->st = VIRTIO_BLK_S_IOERR;
		return;
	}
	r->type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		r->st = prepare_rw(b, r, sector);
		break;
	case VIRTIO_BLK_T_FLUSH:
		r->io.op = BLK_IO_FLUSH;
		r->st = VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		struct iovec v[VIRTQ_MAX_IOV];
		size_t n = MIN((size_t)r->chain.in_len - 1, sizeof(b->id));
		int k = iov_range(r->chain.iov + r->chain.nout, r->chain.nin, 0, n, v,
				  VIRTQ_MAX_IOV);
		size_t done = 0;

		for (int i = 0; i < k; i++) {
			memcpy(v[i].iov_base, b->id + done, v[i].iov_len);
			done += v[i].iov_len;
		}
		r->st = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		r->st = prepare_dwz(b, r);
		break;
	default:
		r->st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (r->st != VIRTIO_BLK_S_OK)
		r->io.op = BLK_IO_NOP;
}

/* ---- The engine's callbacks, on the queue's worker ---- */

static struct blk_io_req *queue_next(void *opaque)
{
	struct vu_blk_queue *bq = opaque;
	struct vu_blk *b = bq->b;
	struct vu_blk_req *r;
	int ret;

	if (bq->nfree == 0)
		return NULL;
	r = bq->free_reqs[bq->nfree - 1];
	for (;;) {
		ret = vu_queue_pop(&b->dev, bq->index, &r->chain);
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
	prepare(b, r);
	return &r->io;
}

static void queue_complete(void *opaque, struct blk_io_req **reqs, unsigned int n)
{
	struct vu_blk_queue *bq = opaque;
	struct vu_blk *b = bq->b;

	if (b->hold_ms)
		usleep(b->hold_ms * 1000u);	/* testing: --hold-ms */
	for (unsigned int i = 0; i < n; i++) {
		struct vu_blk_req *r = reqs[i]->cookie;
		uint8_t st = r->st;

		if (reqs[i]->result < 0 && st == VIRTIO_BLK_S_OK) {
			log_warn_ratelimited(&b->rl, "vhost-user-blk: %s at byte %" PRIu64
					     " failed: %s", r->type == VIRTIO_BLK_T_IN ? "read" :
					     r->type == VIRTIO_BLK_T_OUT ? "write" : "request",
					     reqs[i]->offset, strerror((int)-reqs[i]->result));
			st = VIRTIO_BLK_S_IOERR;
		}
		if (r->status)
			*r->status = st;
		/* Every writable byte may have been written (data, then the status). */
		vu_queue_push(&b->dev, bq->index, &r->chain, r->chain.in_len);
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
	cfg->capacity = htole64(atomic_load(&b->size) / VU_BLK_SECTOR);
	cfg->seg_max = htole32(VU_BLK_QUEUE_SIZE - 2);
	cfg->blk_size = htole32(VU_BLK_SECTOR);
	cfg->num_queues = htole16((uint16_t)b->nqueues);
	if (b->readonly)
		return;
	cfg->max_discard_sectors = htole32(VU_BLK_MAX_DISCARD);
	cfg->max_discard_seg = htole32(1);
	cfg->discard_sector_alignment = htole32(8);
	cfg->max_write_zeroes_sectors = htole32(VU_BLK_MAX_ZEROES);
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
	if (size < VU_BLK_SECTOR) {
		log_error("vhost-user-blk: image %s is smaller than one sector — give it a size, "
			  "e.g. truncate -s 1G %s", o->image, o->image);
		err = EINVAL;
		goto fail;
	}
	if (size % VU_BLK_SECTOR)
		log_warn("vhost-user-blk: image %s is %" PRIu64 " bytes; the last %" PRIu64
			 " bytes (less than a sector) are not served", o->image, size,
			 size % VU_BLK_SECTOR);
	atomic_store(&b->size, ALIGN_DOWN(size, (uint64_t)VU_BLK_SECTOR));
	if (o->direct) {
		int lbs = VU_BLK_SECTOR;

		if (b->is_bdev && ioctl(b->fd, BLKSSZGET, &lbs) < 0)
			lbs = VU_BLK_SECTOR;
		b->dio_align = b->is_bdev ? (uint32_t)MAX(lbs, VU_BLK_SECTOR) :
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
	size = ALIGN_DOWN(size, (uint64_t)VU_BLK_SECTOR);
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
