// SPDX-License-Identifier: GPL-2.0-only
/*
 * A virtio-blk request's checks and status (see virtio/blk_req.h), shared by
 * the in-process device and the vhost-user back-end.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "virtio/blk_req.h"
#include "vmm/base/util.h"

/*
 * Fills dst with the byte range [off, off + len) of the n segments at src,
 * skipping empty ones; dst may be src itself (it never gets ahead of it).
 * Returns the number of segments, or -EINVAL if the segments end before the
 * range does.
 */
static int iov_slice(const struct iovec *src, unsigned int n, size_t off, size_t len,
		     struct iovec *dst, unsigned int max)
{
	unsigned int cnt = 0;

	for (unsigned int i = 0; i < n && len; i++) {
		struct iovec s = src[i];

		if (off >= s.iov_len) {
			off -= s.iov_len;
			continue;
		}
		if (cnt == max)
			return -EINVAL;
		s.iov_base = (uint8_t *)s.iov_base + off;
		s.iov_len = MIN(s.iov_len - off, len);
		dst[cnt++] = s;
		len -= s.iov_len;
		off = 0;
	}
	return len ? -EINVAL : (int)cnt;
}

/* The host address of writable byte `off` of the chain, or NULL past its end. */
static uint8_t *chain_in_byte(const struct virtq_chain *c, size_t off)
{
	for (unsigned int i = c->nout; i < c->nout + c->nin; i++) {
		if (off < c->iov[i].iov_len)
			return (uint8_t *)c->iov[i].iov_base + off;
		off -= c->iov[i].iov_len;
	}
	return NULL;
}

/* Disk byte offset of [sector, sector + len bytes) in *off if it lies on the disk (no overflow). */
static bool blk_range_ok(const struct blk_req_disk *d, uint64_t sector, uint64_t len, uint64_t *off)
{
	uint64_t end;

	if (__builtin_mul_overflow(sector, (uint64_t)BLK_SECTOR_SIZE, off))
		return false;
	if (__builtin_add_overflow(*off, len, &end))
		return false;
	return end <= d->size;
}

static const char *blk_type_name(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN:
		return "read";
	case VIRTIO_BLK_T_OUT:
		return "write";
	case VIRTIO_BLK_T_FLUSH:
		return "flush";
	case VIRTIO_BLK_T_DISCARD:
		return "discard";
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return "write-zeroes";
	default:
		return "request";
	}
}

/* VIRTIO_BLK_T_IN / T_OUT: the data segments become the engine's iovecs. */
static uint8_t blk_prepare_rw(const struct blk_req_disk *d, struct blk_req *r,
			      struct iovec *data_iov)
{
	struct virtq_chain *c = &r->chain;
	bool write = r->type == VIRTIO_BLK_T_OUT;
	size_t len = write ? c->out_len - BLK_HDR_SIZE : c->in_len - 1;
	uint64_t off;
	int n;

	if (write && d->readonly) {
		log_warn_ratelimited(d->rl, "%s: write to a read-only disk refused", d->name);
		return VIRTIO_BLK_S_IOERR;
	}
	if (len % BLK_SECTOR_SIZE) {
		log_warn_ratelimited(d->rl, "%s: %s of %zu bytes is not a multiple of %d bytes",
				     d->name, blk_type_name(r->type), len, BLK_SECTOR_SIZE);
		return VIRTIO_BLK_S_IOERR;
	}
	if (!blk_range_ok(d, r->sector, len, &off)) {
		log_warn_ratelimited(d->rl, "%s: %s of %zu bytes at sector %llu is beyond the "
				     "end of the disk (%llu sectors)", d->name,
				     blk_type_name(r->type), len, (unsigned long long)r->sector,
				     (unsigned long long)(d->size / BLK_SECTOR_SIZE));
		return VIRTIO_BLK_S_IOERR;
	}
	if (!len)
		return VIRTIO_BLK_S_OK;	/* nothing to move: a NOP */
	if (write)
		n = iov_slice(c->iov, c->nout, BLK_HDR_SIZE, len, data_iov, VIRTQ_MAX_IOV);
	else
		n = iov_slice(c->iov + c->nout, c->nin, 0, len, data_iov, VIRTQ_MAX_IOV);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	r->io.op = write ? BLK_IO_WRITE : BLK_IO_READ;
	r->io.offset = off;
	r->io.iov = data_iov;
	r->io.niov = n;
	r->len = len;
	r->data_written = write ? 0 : len;
	return VIRTIO_BLK_S_OK;
}

/* VIRTIO_BLK_T_DISCARD / T_WRITE_ZEROES: one struct virtio_blk_discard_write_zeroes. */
static uint8_t blk_prepare_dwz(const struct blk_req_disk *d, struct blk_req *r)
{
	const struct virtq_chain *c = &r->chain;
	bool zeroes = r->type == VIRTIO_BLK_T_WRITE_ZEROES;
	uint32_t allowed_flags = zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
	uint32_t max_sectors = zeroes ? BLK_MAX_ZEROES_SECTORS : BLK_MAX_DISCARD_SECTORS;
	size_t len = c->out_len - BLK_HDR_SIZE;
	struct virtio_blk_discard_write_zeroes seg;
	uint64_t sector, off, bytes;
	uint32_t nsectors, flags;

	_Static_assert(BLK_MAX_DWZ_SEG == 1, "one segment per discard / write-zeroes request");
	if (d->readonly)
		return VIRTIO_BLK_S_UNSUPP;	/* not offered on read-only disks */
	if (!len || len % BLK_DWZ_SIZE) {
		log_warn_ratelimited(d->rl, "%s: %s payload of %zu bytes is not a whole number "
				     "of %zu-byte segments", d->name, blk_type_name(r->type), len,
				     BLK_DWZ_SIZE);
		return VIRTIO_BLK_S_IOERR;
	}
	if (len / BLK_DWZ_SIZE > BLK_MAX_DWZ_SEG) {
		log_warn_ratelimited(d->rl, "%s: %s with %zu segments (at most %d)", d->name,
				     blk_type_name(r->type), len / BLK_DWZ_SIZE, BLK_MAX_DWZ_SEG);
		return VIRTIO_BLK_S_UNSUPP;
	}
	if (virtq_chain_read(c, BLK_HDR_SIZE, &seg, sizeof(seg)) != sizeof(seg))
		return VIRTIO_BLK_S_IOERR;
	sector = le64toh(seg.sector);
	nsectors = le32toh(seg.num_sectors);
	flags = le32toh(seg.flags);
	bytes = (uint64_t)nsectors * BLK_SECTOR_SIZE;
	if (flags & ~allowed_flags) {
		log_warn_ratelimited(d->rl, "%s: %s with unsupported flags %#x", d->name,
				     blk_type_name(r->type), flags);
		return VIRTIO_BLK_S_UNSUPP;
	}
	if (nsectors > max_sectors || !blk_range_ok(d, sector, bytes, &off)) {
		log_warn_ratelimited(d->rl, "%s: %s of %u sectors at sector %llu is too big or "
				     "beyond the end of the disk", d->name, blk_type_name(r->type),
				     nsectors, (unsigned long long)sector);
		return VIRTIO_BLK_S_IOERR;
	}
	r->io.op = zeroes ? BLK_IO_WRITE_ZEROES : BLK_IO_DISCARD;
	r->io.flags = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ? BLK_IO_F_UNMAP : 0;
	r->io.offset = off;
	r->io.len = bytes;
	r->sector = sector;
	r->len = nsectors;
	return VIRTIO_BLK_S_OK;
}

/* The id string, NUL-padded to the 20 bytes the driver's buffer holds (or fewer if it is short). */
static uint8_t blk_get_id(const struct blk_req_disk *d, struct blk_req *r)
{
	const struct virtq_chain *c = &r->chain;
	size_t n = MIN((size_t)VIRTIO_BLK_ID_BYTES, (size_t)c->in_len - 1);

	if (virtq_chain_write(c, 0, d->id, n) != n)
		return VIRTIO_BLK_S_IOERR;
	r->data_written = n;
	return VIRTIO_BLK_S_OK;
}

/* See virtio/blk_req.h. Reads the guest's header and segments once. */
void blk_req_prepare(const struct blk_req_disk *d, struct blk_req *r, struct iovec *data_iov)
{
	const struct virtq_chain *c = &r->chain;
	struct virtio_blk_outhdr hdr;

	r->io = (struct blk_io_req){ .op = BLK_IO_NOP };
	r->status = NULL;
	r->st = VIRTIO_BLK_S_IOERR;
	r->type = 0;
	r->sector = 0;
	r->len = 0;
	r->data_written = 0;
	if (c->in_len < 1) {
		log_warn_ratelimited(d->rl, "%s: request without a writable status byte", d->name);
		return;
	}
	r->status = chain_in_byte(c, c->in_len - 1);
	if (!r->status)
		return;
	if (c->out_len < BLK_HDR_SIZE ||
	    virtq_chain_read(c, 0, &hdr, sizeof(hdr)) != sizeof(hdr)) {
		log_warn_ratelimited(d->rl, "%s: request with a %u-byte header (want %zu)",
				     d->name, c->out_len, BLK_HDR_SIZE);
		return;
	}
	r->type = le32toh(hdr.type);
	r->sector = le64toh(hdr.sector);
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		r->st = blk_prepare_rw(d, r, data_iov);
		break;
	case VIRTIO_BLK_T_FLUSH:
		r->st = VIRTIO_BLK_S_OK;
		if (!d->readonly)	/* else nothing of ours to write back */
			r->io.op = BLK_IO_FLUSH;
		break;
	case VIRTIO_BLK_T_GET_ID:
		r->st = blk_get_id(d, r);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		r->st = blk_prepare_dwz(d, r);
		break;
	default:
		r->st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (r->st != VIRTIO_BLK_S_OK)
		r->io.op = BLK_IO_NOP;
}

uint8_t blk_req_finish(const struct blk_req_disk *d, struct blk_req *r, uint32_t *written)
{
	uint8_t st = r->st;
	ssize_t res = r->io.result;

	*written = 0;
	if (!r->status)
		return VIRTIO_BLK_S_IOERR;
	if (r->io.op == BLK_IO_FLUSH && res < 0) {
		log_warn_ratelimited(d->rl, "%s: flush failed: %s", d->name, strerror((int)-res));
		st = VIRTIO_BLK_S_IOERR;
	} else if (r->io.op != BLK_IO_NOP && res < 0) {
		log_warn_ratelimited(d->rl, "%s: %s of %u %s at sector %llu failed: %s%s",
				     d->name, blk_type_name(r->type), r->len,
				     r->io.op == BLK_IO_READ || r->io.op == BLK_IO_WRITE ?
				     "bytes" : "sectors", (unsigned long long)r->sector,
				     strerror((int)-res),
				     res == -EINVAL && d->einval_hint ? d->einval_hint : "");
		st = VIRTIO_BLK_S_IOERR;
	}
	*r->status = st;
	*written = (st == VIRTIO_BLK_S_OK ? r->data_written : 0) + 1;
	/* Dirty logging: what a read brought in (GET_ID's copy was marked as it was written). */
	if (st == VIRTIO_BLK_S_OK && r->io.op == BLK_IO_READ)
		virtq_mark_dirty_iov(r->chain.mem, r->io.iov, (unsigned int)r->io.niov,
				     r->data_written);
	virtq_mark_dirty_host(r->chain.mem, r->status, 1);
	return st;
}

