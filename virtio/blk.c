// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-blk (VIRTIO 1.x §5.2): a raw image file or a host block device.
 *
 * Requests run synchronously on the event loop thread: preadv/pwritev go
 * straight between the image and guest RAM. With direct=on (O_DIRECT) a
 * request whose offset, length or guest buffers are not aligned for direct
 * I/O goes through an aligned bounce buffer instead, reading first where it
 * covers a block only in part. Every request field comes from the guest and
 * is checked before use.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtio/blk.h"
#include "vmm/base/util.h"

#define BLK_HDR_SIZE		sizeof(struct virtio_blk_outhdr)
#define BLK_DWZ_SIZE		sizeof(struct virtio_blk_discard_write_zeroes)
#define BLK_SIGNAL_BATCH	32	/* completions between interrupts while draining */

#ifndef IOV_MAX
#define IOV_MAX			1024
#endif

/* ---- Back-end I/O ---- */

/*
 * Fills dst with the byte range [off, off + len) of the n segments at src,
 * skipping empty ones. Returns the number of segments, or -EINVAL if the
 * segments end before the range does.
 */
static int iov_slice(const struct iovec *src, unsigned int n, size_t off, size_t len,
		     struct iovec *dst, unsigned int max)
{
	unsigned int cnt = 0;

	for (unsigned int i = 0; i < n && len; i++) {
		size_t seg = src[i].iov_len;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		seg = MIN(seg - off, len);
		if (cnt == max)
			return -EINVAL;
		dst[cnt].iov_base = (uint8_t *)src[i].iov_base + off;
		dst[cnt].iov_len = seg;
		cnt++;
		len -= seg;
		off = 0;
	}
	return len ? -EINVAL : (int)cnt;
}

/* Drops the first `bytes` bytes from the segment array *iov of *n entries. */
static void iov_advance(struct iovec **iov, unsigned int *n, size_t bytes)
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

/* Whether O_DIRECT can take this transfer as is: offset, length and every segment aligned. */
static bool blk_dio_aligned(const struct virtio_blk *b, const struct iovec *iov, unsigned int n,
			    uint64_t off, uint64_t len)
{
	uint64_t mask = b->dio_align - 1;

	if ((off | len) & mask)
		return false;
	for (unsigned int i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & mask)
			return false;
	return true;
}

/* preadv/pwritev of exactly len bytes at off, resuming after short transfers; 0 or -errno. */
static int blk_rw_iov(struct virtio_blk *b, bool write, struct iovec *iov, unsigned int n,
		      uint64_t off, size_t len)
{
	while (len) {
		int cnt = MIN(n, IOV_MAX);
		ssize_t r;

		if (write)
			r = pwritev(b->fd, iov, cnt, (off_t)off);
		else
			r = preadv(b->fd, iov, cnt, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;	/* end of file: the image shrank under us */
		off += r;
		len -= MIN((size_t)r, len);
		iov_advance(&iov, &n, r);
	}
	return 0;
}

/* pread() until len bytes or the end of the file; the bytes read or -errno. */
static ssize_t blk_pread_full(struct virtio_blk *b, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(b->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

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

/* pwrite() of exactly len bytes; 0 or -errno. */
static int blk_pwrite_full(struct virtio_blk *b, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(b->fd, (const uint8_t *)buf + done, len - done,
				   (off_t)(off + done));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		done += r;
	}
	return 0;
}

/*
 * Transfers disk bytes [off, off + len) through the bounce buffer in whole
 * dio_align blocks, reading a block first when the transfer covers it only in
 * part. The guest side is the chain's writable segments from offset 0 (reads),
 * its readable segments from `data` (writes), or zeros (writes with c NULL).
 * The caller has checked the range against the disk size. 0 or -errno.
 */
static int blk_bounce_io(struct virtio_blk *b, bool write, const struct virtq_chain *c,
			 size_t data, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	uint64_t aend = ALIGN_UP(end, (uint64_t)b->dio_align);

	for (uint64_t cs = ALIGN_DOWN(off, (uint64_t)b->dio_align); cs < aend;
	     cs += BLK_BOUNCE_SIZE) {
		uint64_t ce = MIN(cs + BLK_BOUNCE_SIZE, aend);
		uint64_t ds = MAX(cs, off), de = MIN(ce, end);
		size_t clen = ce - cs, dlen = de - ds;
		uint8_t *p = b->bounce + (ds - cs);
		int r;

		if (!write || ds > cs || de < ce) {
			ssize_t got = blk_pread_full(b, b->bounce, clen, cs);

			if (got < 0)
				return got;
			memset(b->bounce + got, 0, clen - got);	/* past the end of the file */
		}
		if (!write) {
			if (virtq_chain_write(c, ds - off, p, dlen) != dlen)
				return -EFAULT;
			continue;
		}
		/* A last block that sticks out of an unaligned file cannot be written whole. */
		if (ce > b->size)
			return -EINVAL;
		if (!c)
			memset(p, 0, dlen);
		else if (virtq_chain_read(c, data + (ds - off), p, dlen) != dlen)
			return -EFAULT;
		r = blk_pwrite_full(b, b->bounce, clen, cs);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Moves len bytes between disk offset off and the request's data: the
 * writable segments for reads, the readable ones after the header for writes.
 */
static int blk_data_io(struct virtio_blk *b, bool write, const struct virtq_chain *c,
		       uint64_t off, size_t len)
{
	const struct iovec *src = write ? c->iov : c->iov + c->nout;
	unsigned int nsrc = write ? c->nout : c->nin;
	size_t data = write ? BLK_HDR_SIZE : 0;
	int n;

	if (!len)
		return 0;
	n = iov_slice(src, nsrc, data, len, b->iov, ARRAY_SIZE(b->iov));
	if (n < 0)
		return n;
	if (b->direct && !blk_dio_aligned(b, b->iov, n, off, len))
		return blk_bounce_io(b, write, c, data, off, len);
	return blk_rw_iov(b, write, b->iov, n, off, len);
}

static int blk_discard(struct virtio_blk *b, uint64_t off, uint64_t len)
{
	int r;

	if (b->no_discard || !len)
		return 0;
	if (b->is_bdev) {
		uint64_t range[2] = { off, len };

		r = ioctl(b->fd, BLKDISCARD, range) < 0 ? -errno : 0;
	} else {
		r = fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len) < 0 ? -errno : 0;
	}
	/* Discard is a hint: where the host cannot do it, it is a no-op. */
	if (r == -EOPNOTSUPP || r == -ENOTTY || r == -ENOSYS) {
		b->no_discard = true;
		return 0;
	}
	return r;
}

/* Zeroes [off, off + len): deallocating if unmap, else ZERO_RANGE, else by writing zeros. */
static int blk_write_zeroes(struct virtio_blk *b, uint64_t off, uint64_t len, bool unmap)
{
	if (!len)
		return 0;
	if (!b->no_fallocate) {
		if (unmap && fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)off, (off_t)len) == 0)
			return 0;
		if (fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len) == 0)
			return 0;
		if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
			return -errno;
		b->no_fallocate = true;
	}
	return blk_bounce_io(b, true, NULL, 0, off, len);
}

/* ---- Requests ---- */

/* Disk byte offset of [sector, sector + len bytes) in *off if it lies on the disk (no overflow). */
static bool blk_range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t len, uint64_t *off)
{
	uint64_t end;

	if (__builtin_mul_overflow(sector, (uint64_t)BLK_SECTOR_SIZE, off))
		return false;
	if (__builtin_add_overflow(*off, len, &end))
		return false;
	return end <= b->size;
}

static const char *blk_type_name(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN:
		return "read";
	case VIRTIO_BLK_T_OUT:
		return "write";
	case VIRTIO_BLK_T_DISCARD:
		return "discard";
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return "write-zeroes";
	default:
		return "request";
	}
}

/* VIRTIO_BLK_T_IN / T_OUT. */
static uint8_t blk_read_write(struct virtio_blk *b, const struct virtq_chain *c, uint32_t type,
			      uint64_t sector, uint32_t *data_written)
{
	bool write = type == VIRTIO_BLK_T_OUT;
	size_t len = write ? c->out_len - BLK_HDR_SIZE : c->in_len - 1;
	uint64_t off;
	int r;

	if (write && b->readonly) {
		log_warn_ratelimited(&b->rl, "%s: write to a read-only disk refused", b->name);
		return VIRTIO_BLK_S_IOERR;
	}
	if (len % BLK_SECTOR_SIZE) {
		log_warn_ratelimited(&b->rl, "%s: %s of %zu bytes is not a multiple of %d bytes",
				     b->name, blk_type_name(type), len, BLK_SECTOR_SIZE);
		return VIRTIO_BLK_S_IOERR;
	}
	if (!blk_range_ok(b, sector, len, &off)) {
		log_warn_ratelimited(&b->rl, "%s: %s of %zu bytes at sector %llu is beyond the "
				     "end of the disk (%llu sectors)", b->name,
				     blk_type_name(type), len, (unsigned long long)sector,
				     (unsigned long long)(b->size / BLK_SECTOR_SIZE));
		return VIRTIO_BLK_S_IOERR;
	}
	r = blk_data_io(b, write, c, off, len);
	if (r < 0) {
		log_warn_ratelimited(&b->rl, "%s: %s of %zu bytes at sector %llu failed: %s%s",
				     b->name, blk_type_name(type), len,
				     (unsigned long long)sector, strerror(-r),
				     r == -EINVAL && b->direct ? " (try direct=off)" : "");
		return VIRTIO_BLK_S_IOERR;
	}
	if (!write)
		*data_written = len;
	return VIRTIO_BLK_S_OK;
}

/* VIRTIO_BLK_T_DISCARD / T_WRITE_ZEROES: segments of struct virtio_blk_discard_write_zeroes. */
static uint8_t blk_discard_write_zeroes(struct virtio_blk *b, const struct virtq_chain *c,
					uint32_t type)
{
	bool zeroes = type == VIRTIO_BLK_T_WRITE_ZEROES;
	uint32_t allowed_flags = zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
	uint32_t max_sectors = zeroes ? BLK_MAX_ZEROES_SECTORS : BLK_MAX_DISCARD_SECTORS;
	size_t len = c->out_len - BLK_HDR_SIZE;

	if (b->readonly)
		return VIRTIO_BLK_S_UNSUPP;	/* not offered on read-only disks */
	if (!len || len % BLK_DWZ_SIZE) {
		log_warn_ratelimited(&b->rl, "%s: %s payload of %zu bytes is not a whole number "
				     "of %zu-byte segments", b->name, blk_type_name(type), len,
				     BLK_DWZ_SIZE);
		return VIRTIO_BLK_S_IOERR;
	}
	if (len / BLK_DWZ_SIZE > BLK_MAX_DWZ_SEG) {
		log_warn_ratelimited(&b->rl, "%s: %s with %zu segments (at most %d)", b->name,
				     blk_type_name(type), len / BLK_DWZ_SIZE, BLK_MAX_DWZ_SEG);
		return VIRTIO_BLK_S_UNSUPP;
	}
	for (size_t pos = BLK_HDR_SIZE; pos < c->out_len; pos += BLK_DWZ_SIZE) {
		struct virtio_blk_discard_write_zeroes seg;
		uint64_t sector, off, bytes;
		uint32_t nsectors, flags;
		int r;

		if (virtq_chain_read(c, pos, &seg, sizeof(seg)) != sizeof(seg))
			return VIRTIO_BLK_S_IOERR;
		sector = le64toh(seg.sector);
		nsectors = le32toh(seg.num_sectors);
		flags = le32toh(seg.flags);
		bytes = (uint64_t)nsectors * BLK_SECTOR_SIZE;
		if (flags & ~allowed_flags) {
			log_warn_ratelimited(&b->rl, "%s: %s with unsupported flags %#x", b->name,
					     blk_type_name(type), flags);
			return VIRTIO_BLK_S_UNSUPP;
		}
		if (nsectors > max_sectors || !blk_range_ok(b, sector, bytes, &off)) {
			log_warn_ratelimited(&b->rl, "%s: %s of %u sectors at sector %llu is too "
					     "big or beyond the end of the disk", b->name,
					     blk_type_name(type), nsectors,
					     (unsigned long long)sector);
			return VIRTIO_BLK_S_IOERR;
		}
		if (zeroes)
			r = blk_write_zeroes(b, off, bytes,
					     flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
		else
			r = blk_discard(b, off, bytes);
		if (r < 0) {
			log_warn_ratelimited(&b->rl, "%s: %s of %u sectors at sector %llu "
					     "failed: %s", b->name, blk_type_name(type),
					     nsectors, (unsigned long long)sector, strerror(-r));
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_flush(struct virtio_blk *b)
{
	if (b->readonly)
		return VIRTIO_BLK_S_OK;	/* nothing of ours to write back */
	if (fdatasync(b->fd) < 0) {
		log_warn_ratelimited(&b->rl, "%s: flush failed: %s", b->name, strerror(errno));
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* The id string, NUL-padded to the 20 bytes the driver's buffer holds (or fewer if it is short). */
static uint8_t blk_get_id(struct virtio_blk *b, const struct virtq_chain *c, uint32_t *data_written)
{
	size_t n = MIN(sizeof(b->id), (size_t)c->in_len - 1);

	if (virtq_chain_write(c, 0, b->id, n) != n)
		return VIRTIO_BLK_S_IOERR;
	*data_written = n;
	return VIRTIO_BLK_S_OK;
}

uint8_t blk_handle_chain(struct virtio_blk *b, const struct virtq_chain *c, uint32_t *written)
{
	struct virtio_blk_outhdr hdr;
	uint32_t data_written = 0;
	uint8_t status;

	*written = 0;
	if (c->in_len < 1) {
		log_warn_ratelimited(&b->rl, "%s: request without a writable status byte", b->name);
		return VIRTIO_BLK_S_IOERR;
	}
	if (c->out_len < BLK_HDR_SIZE ||
	    virtq_chain_read(c, 0, &hdr, sizeof(hdr)) != sizeof(hdr)) {
		log_warn_ratelimited(&b->rl, "%s: request with a %u-byte header (want %zu)",
				     b->name, c->out_len, BLK_HDR_SIZE);
		status = VIRTIO_BLK_S_IOERR;
	} else {
		uint32_t type = le32toh(hdr.type);

		switch (type) {
		case VIRTIO_BLK_T_IN:
		case VIRTIO_BLK_T_OUT:
			status = blk_read_write(b, c, type, le64toh(hdr.sector), &data_written);
			break;
		case VIRTIO_BLK_T_FLUSH:
			status = blk_flush(b);
			break;
		case VIRTIO_BLK_T_GET_ID:
			status = blk_get_id(b, c, &data_written);
			break;
		case VIRTIO_BLK_T_DISCARD:
		case VIRTIO_BLK_T_WRITE_ZEROES:
			status = blk_discard_write_zeroes(b, c, type);
			break;
		default:
			status = VIRTIO_BLK_S_UNSUPP;
			break;
		}
	}
	if (status != VIRTIO_BLK_S_OK)
		data_written = 0;
	if (virtq_chain_write(c, c->in_len - 1, &status, 1) != 1)
		return VIRTIO_BLK_S_IOERR;
	*written = data_written + 1;
	return status;
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

/* The direct I/O alignment of the open file: its filesystem's if the kernel says, else 512. */
static uint32_t blk_file_dio_align(int fd)
{
	uint32_t align = BLK_SECTOR_SIZE;
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
			b->dio_align = blk_file_dio_align(b->fd);
	}
	if (b->dio_align & (b->dio_align - 1) || b->dio_align > BLK_BOUNCE_SIZE) {
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
	if (flock(b->fd, (o->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		err = errno;
		if (err == EWOULDBLOCK) {
			log_error("%s: disk image %s is in use by another process — stop it, or "
				  "use readonly=on in every user", b->name, o->path);
			return -EBUSY;
		}
		log_warn("%s: cannot lock disk image %s: %s; continuing without a lock", b->name,
			 o->path, strerror(err));
	}
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
	b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	b->readonly = o->readonly;
	b->direct = o->direct;
	b->name = strdup(name ? name : "virtio-blk");
	if (!b->name) {
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
	b->bounce = aligned_alloc(MAX(b->dio_align, 4096u), BLK_BOUNCE_SIZE);
	if (!b->bounce) {
		log_error("%s: out of memory for the I/O buffer — free some host memory",
			  b->name);
		r = -ENOMEM;
		goto fail;
	}
	blk_setup_config(b);
	return 0;

fail:
	virtio_blk_fini(b);
	return r;
}

void virtio_blk_fini(struct virtio_blk *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	free(b->bounce);
	b->bounce = NULL;
	free(b->name);
	b->name = NULL;
}

/* ---- The userspace back-end and the transport ---- */

/*
 * The queue handler: every available request, synchronously, on the event
 * loop thread with the device lock held. An asynchronous I/O engine would
 * take the popped chains here and push them as they complete.
 */
static void blk_queue_kick(struct userspace_backend *ub, unsigned int q)
{
	struct virtio_blk *b = container_of(ub, struct virtio_blk, ub);
	struct virtq *vq = userspace_backend_vq(ub, q);
	unsigned int done = 0;
	int r;

	do {
		virtq_set_notify(vq, false);
		while ((r = virtq_pop(vq, &b->chain)) > 0) {
			uint32_t written;

			blk_handle_chain(b, &b->chain, &written);
			if (virtq_push(vq, b->chain.head, written) < 0) {
				userspace_backend_error(ub, q, "cannot complete a request");
				return;
			}
			/* Long batches: let the guest see completions as they come. */
			if (++done % BLK_SIGNAL_BATCH == 0)
				userspace_backend_signal(ub, q);
		}
		if (r < 0) {
			userspace_backend_error(ub, q, "malformed descriptor chain");
			return;
		}
		virtq_set_notify(vq, true);
	} while (virtq_has_work(vq));
	if (done % BLK_SIGNAL_BATCH)
		userspace_backend_signal(ub, q);
}

static const struct userspace_backend_ops blk_backend_ops = {
	.queue_kick = blk_queue_kick,
};

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	virtio_mmio_destroy(&b->dev);
	b->ub.be.ops->destroy(&b->ub.be);
	virtio_blk_fini(b);
	free(b);
}

static void blk_destroy(struct virtio_mmio_dev *d)
{
	virtio_blk_destroy(container_of(d, struct virtio_blk, dev));
}

/* Requests complete before the handler returns, so a reset has nothing in flight to drop. */
static const struct virtio_dev_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.nqueues = BLK_NUM_QUEUES,
	.queue_max_size = BLK_QUEUE_SIZE,
	.destroy = blk_destroy,
};

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
	r = virtio_blk_init(b, o, name);
	if (r < 0) {
		free(b);
		return r;
	}
	userspace_backend_init(&b->ub, &blk_backend_ops, host->mem, host->loop, &b->dev.lock,
			       BLK_NUM_QUEUES, b->features);
	r = virtio_mmio_init(&b->dev, &blk_ops, host, b->name, base, gsi, b->features,
			     &b->config, sizeof(b->config), &b->ub.be);
	if (r < 0) {
		log_error("%s: cannot set up the virtio-mmio transport: %s — check that KVM "
			  "supports ioeventfd and irqfd", b->name, strerror(-r));
		virtio_blk_destroy(b);	/* what init set up before failing */
		return r;
	}
	*out = b;
	return 0;
}
