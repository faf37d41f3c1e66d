/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A virtio-blk request (VIRTIO 1.x §5.2.6) from its descriptor chain to its
 * status byte: the checks and the translation into a disk-I/O engine request
 * (virtio/blk_io.h), shared by vmm's in-process virtio-blk (virtio/blk.c) and
 * the vmm-vhost-user-blk back-end (vhost/vu_blk.c), so that both answer the
 * same guest the same way.
 *
 * blk_req_prepare() reads the guest's header and segments once and checks
 * every field: a header and a status byte present, data in whole sectors and
 * on the disk (no overflow), discard / write-zeroes as one segment within the
 * limits and with known flags, nothing written to a read-only disk. What it
 * cannot do becomes BLK_IO_NOP with the status to answer; GET_ID is answered
 * there (its bytes copied). blk_req_finish() writes the status byte after the
 * engine ran the request. Guest errors are logged rate-limited, never fatal.
 */
#ifndef VIRTIO_BLK_REQ_H
#define VIRTIO_BLK_REQ_H

#include <linux/virtio_blk.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/blk_io.h"
#include "virtio/virtq.h"
#include "vmm/base/log.h"

#define BLK_SECTOR_SIZE		512
#define BLK_HDR_SIZE		sizeof(struct virtio_blk_outhdr)
#define BLK_DWZ_SIZE		sizeof(struct virtio_blk_discard_write_zeroes)
#define BLK_MAX_DISCARD_SECTORS	(1u << 22)	/* 2 GiB per discard segment */
#define BLK_MAX_ZEROES_SECTORS	(1u << 16)	/* 32 MiB per write-zeroes segment */
#define BLK_MAX_DWZ_SEG		1		/* segments per discard / write-zeroes request */

/* The disk the requests are checked against. */
struct blk_req_disk {
	const char *name;		/* for messages, e.g. "virtio-blk0" */
	uint64_t size;			/* bytes, whole sectors */
	bool readonly;
	const char *id;			/* GET_ID: VIRTIO_BLK_ID_BYTES, NUL-padded */
	const char *einval_hint;	/* appended to an I/O's EINVAL (O_DIRECT), or NULL */
	struct log_ratelimit *rl;
};

/* One request, from the pop to the used element. */
struct blk_req {
	struct blk_io_req io;	/* BLK_IO_NOP: answered without I/O, status in st */
	uint8_t *status;	/* the chain's status byte in guest memory; NULL: no room */
	uint8_t st;		/* VIRTIO_BLK_S_* if the I/O (if any) succeeds */
	uint32_t type;		/* VIRTIO_BLK_T_*, for messages */
	uint64_t sector;
	uint32_t len;		/* data bytes moved (read/write) or sectors covered (discard/zeroes) */
	uint32_t data_written;	/* bytes a success writes before the status byte */
	struct virtq_chain chain;	/* as popped */
};

/*
 * Checks r->chain and fills r (see above). A read's or write's data segments
 * become r->io.iov in data_iov (VIRTQ_MAX_IOV entries), which may be
 * r->chain.iov itself when nothing needs the chain's segments afterwards.
 */
void blk_req_prepare(const struct blk_req_disk *d, struct blk_req *r, struct iovec *data_iov);

/*
 * After the engine ran r->io (result set): writes the status byte and marks
 * what a read brought in dirty in r->chain.mem (a no-op without one). Returns
 * the status; *written is the bytes written into the writable segments (0
 * without a status byte, else data + 1).
 */
uint8_t blk_req_finish(const struct blk_req_disk *d, struct blk_req *r, uint32_t *written);

#endif
