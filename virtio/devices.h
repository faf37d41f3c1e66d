/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The virtio devices the VM can have, created from one table (kind → create).
 * Each constructor creates the device model, its back-end (the userspace one
 * on the event loop; blk's own, with a disk-I/O engine per queue) and its
 * virtio-mmio transport at base/gsi, and hands back the embedded transport,
 * which the VM registers on its MMIO bus and announces to the guest;
 * virtio_device_destroy() frees it. On failure a constructor reports the
 * error with log_error() (what went wrong — what to do) and returns -errno:
 * -ENOMEM when the host is short of memory, -EINVAL, -ENOENT, -EACCES, ...
 * for an option value that cannot work, so the VMM can choose its exit status.
 */
#ifndef VIRTIO_DEVICES_H
#define VIRTIO_DEVICES_H

#include <stdint.h>

#include "virtio/mmio.h"
#include "virtio/options.h"

/* Where one device goes, what it is called and how the user configured it. */
struct virtio_device_args {
	struct virtio_host *host;
	const char *name;	/* for messages, e.g. "virtio-blk0"; must outlive the device */
	uint64_t base;		/* guest-physical address of its register window */
	uint32_t gsi;
	/* The kind's options: struct blk_options, net_options, console_options, vsock_options,
	 * fs_options; NULL for rng. */
	const void *options;
};

struct virtio_device_kind {
	const char *kind;	/* "blk", "net", "rng", "console", "vsock", "fs" */
	/* Creates a device of this kind: 0 with *out set, or -errno after log_error(). */
	int (*create)(const struct virtio_device_args *a, struct virtio_mmio_dev **out);
};

/* The table of device kinds; *n gets its length. */
const struct virtio_device_kind *virtio_device_kinds(unsigned int *n);

/* The entry for `kind`, or NULL if there is no such kind. */
const struct virtio_device_kind *virtio_device_kind_find(const char *kind);

/* Creates a device of `kind`: 0 with *out set, -EINVAL for an unknown kind, or create's -errno. */
int virtio_device_create(const char *kind, const struct virtio_device_args *a,
			 struct virtio_mmio_dev **out);

/* Tears a device down (transport, back-end, device model) and frees it; NULL is ignored. */
void virtio_device_destroy(struct virtio_mmio_dev *d);

#endif
