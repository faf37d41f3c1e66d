/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-fs (VIRTIO 1.2 §5.11): a host directory the guest mounts by tag
 * (`mount -t virtiofs TAG /mnt`), served by a vhost-user back-end such as
 * virtiofsd. Private to virtio/fs.c and its unit tests; the VM uses
 * virtio/devices.h.
 *
 * The device model owns the config space (the tag, NUL-padded, and the
 * number of request queues) and the features (none of its own: virtio-fs's
 * only feature, NOTIFICATION, needs a notification queue no back-end here
 * has). Every queue — the high-priority queue (0, FUSE_INTERRUPT and
 * FUSE_FORGET) and the request queues (1..N) — belongs to the back-end, which
 * writes the device's irqfd itself (the transport's direct interrupt mode).
 * There is no userspace data path: a device without a vhost-user back-end is
 * refused; so is guest RAM the back-end cannot map (the offload refuses it,
 * and the command line asks for --memory shared=on first).
 *
 * A back-end that dies (virtiofsd killed, or breaking the protocol): the
 * device gets DEVICE_NEEDS_RESET, which Linux's virtiofs driver does not act
 * on, so the VMM answers every request the guest has outstanding, and every
 * new one, with a FUSE reply of -EIO (virtio/failq.h): programs using the
 * share get EIO instead of hanging for ever, and the guest can unmount it.
 * There is no reconnect: virtiofsd serves one connection, and the guest's
 * open files and inodes died with it.
 */
#ifndef VIRTIO_FS_H
#define VIRTIO_FS_H

#include <linux/virtio_fs.h>
#include <stdint.h>

#include "virtio/failq.h"
#include "virtio/mmio.h"
#include "virtio/options.h"

#define FS_HIPRIO_QUEUE		0
#define FS_QUEUE_SIZE		128	/* QEMU's vhost-user-fs default */

struct virtio_fs {
	struct virtio_mmio_dev dev;		/* transport: registers, config, features */
	struct virtio_backend *offload;		/* the vhost-user back-end: every queue; owned */
	struct virtio_fs_config config;
	struct virtio_dev_ops ops;		/* nqueues depends on the options */
	bool failed;				/* the back-end is gone: requests fail */
	struct failq_set fq;			/* its queues then */
};

/*
 * Checks o: a socket, a tag of 1..FS_TAG_MAX bytes, 0..FS_REQUEST_QUEUES_MAX
 * request queues. NULL if it is usable, else what is wrong with it.
 */
const char *virtio_fs_check(const struct fs_options *o);

/* The device's queue count for o: the high-priority queue plus its request queues. */
unsigned int virtio_fs_nqueues(const struct fs_options *o);

/*
 * Creates the device over offload (its back-end for every queue, owned from
 * now on, even on failure); o must pass virtio_fs_check(). 0 with *out set,
 * or -errno (not logged).
 */
int virtio_fs_create_with(struct virtio_host *host, const struct fs_options *o, const char *name,
			  uint64_t base, uint32_t gsi, struct virtio_backend *offload,
			  struct virtio_fs **out);

/*
 * Creates the device on host->offload's vhost-user back-end at o->vhost_user
 * (see virtio/devices.h): 0 with *out set, or -errno after log_error():
 * -EINVAL for bad options or guest RAM that is not shared, the offload's
 * -errno when the back-end cannot be reached or used.
 */
int virtio_fs_create(struct virtio_host *host, const struct fs_options *o, const char *name,
		     uint64_t base, uint32_t gsi, struct virtio_fs **out);

/*
 * Answers the FUSE request on chain c with -EIO (a struct fuse_out_header with
 * the request's unique, marked dirty); returns the bytes written: 16, or 0 for
 * a request that takes no reply (FORGET) or has no room for one.
 */
uint32_t virtio_fs_fail_chain(const struct virtq_chain *c);

/* Tears down the transport and the back-end and frees f; NULL is ignored. */
void virtio_fs_destroy(struct virtio_fs *f);

#endif
