/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel vhost-net: the data path of a virtio-net device (virtio/net.c, the
 * device model: config, MAC, link, the tap's offloads) served by the host
 * kernel on the device's tap. Ring 0 receives, ring 1 transmits, as the
 * device's queues. Once a ring is set up its tap is attached with
 * VHOST_NET_SET_BACKEND; on stop it is detached (fd -1) before
 * GET_VRING_BASE, so the ring is idle when its position is read.
 *
 * The tap keeps the 12-byte virtio-net header (IFF_VNET_HDR, TUNSETVNETHDRSZ
 * 12, set by virtio/net.c), so vhost-net passes headers through: it is never
 * given VHOST_NET_F_VIRTIO_NET_HDR (vhost/vhost.h). Its feature charge is
 * MRG_RXBUF (it fills num_buffers) beside the ring bits; checksum and
 * segmentation offloads are the tap's, which virtio/net.c checks.
 */
#ifndef VHOST_NET_H
#define VHOST_NET_H

#include <stddef.h>

#include "vhost/vhost.h"

#define VHOST_NET_DEVICE	"/dev/vhost-net"	/* VMM_VHOST_NET_DEVICE overrides it */

struct vhost_net {
	struct vhost_dev dev;
	int tap_fd;		/* not owned: the device model's */
	/* Attaches fd (-1 detaches) to ring: VHOST_NET_SET_BACKEND; tests replace it. */
	int (*set_backend)(struct vhost_net *vn, unsigned int ring, int fd);
};

/*
 * Sets vn up over a connected back-end (ops, conn) for tap_fd: 0 or -errno
 * (the caller then still owns conn). Used by vhost_net_create() and tests.
 */
int vhost_net_init(struct vhost_net *vn, const struct vhost_ops *ops, void *conn,
		   const struct guest_mem *mem, const char *name, int tap_fd);

/*
 * Creates the kernel vhost-net back-end of device `name` over tap_fd (a tap
 * with IFF_VNET_HDR and a 12-byte header): 0 with *out (the device owns it),
 * or -errno with a one-line reason in why.
 */
int vhost_net_create(const struct guest_mem *mem, const char *name, int tap_fd,
		     struct virtio_backend **out, char *why, size_t whylen);

#endif
