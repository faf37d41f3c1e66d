/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Constructors of the userspace virtio devices. Each creates its state and its
 * virtio-mmio transport (virtio_mmio_init) at base/gsi and returns the
 * embedded transport, which the VM registers on its MMIO bus and announces in
 * the DSDT; ops->destroy frees it. On failure they report the error with
 * log_error() (what went wrong — what to do) and return NULL.
 */
#ifndef VIRTIO_DEVICES_H
#define VIRTIO_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/mmio.h"

/* --disk path=FILE[,readonly=on][,direct=on][,id=SERIAL] */
struct blk_options {
	const char *path;	/* raw image file or block device */
	bool readonly;
	bool direct;		/* O_DIRECT */
	const char *id;		/* VIRTIO_BLK_T_GET_ID answer (at most 20 bytes); NULL: derived from path */
};

/* --net tap=NAME[,mac=52:54:00:12:34:56][,vhost=off] */
struct net_options {
	const char *tap;	/* existing or new tap interface name */
	uint8_t mac[6];
	bool mac_set;		/* false: a locally administered MAC is generated */
	bool vhost;		/* kernel vhost-net offload (the vhost issue); false: userspace */
};

/* --console pty|stdio|off : virtio-console (hvc0) */
enum console_backend {
	CONSOLE_BACKEND_PTY,	/* a host pseudo-terminal; its path is printed */
	CONSOLE_BACKEND_FILE,	/* output appended to a file, no input (for tests and logs) */
};

struct console_options {
	enum console_backend backend;
	const char *path;	/* CONSOLE_BACKEND_FILE: the file */
};

struct virtio_mmio_dev *virtio_blk_create(struct virtio_host *host, const struct blk_options *o,
					  const char *name, uint64_t base, uint32_t gsi);
struct virtio_mmio_dev *virtio_net_create(struct virtio_host *host, const struct net_options *o,
					  const char *name, uint64_t base, uint32_t gsi);
struct virtio_mmio_dev *virtio_rng_create(struct virtio_host *host, const char *name, uint64_t base,
					  uint32_t gsi);
struct virtio_mmio_dev *virtio_console_create(struct virtio_host *host,
					      const struct console_options *o, const char *name,
					      uint64_t base, uint32_t gsi);

#endif
