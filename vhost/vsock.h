/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel vhost-vsock: the receive (ring 0) and transmit (ring 1) queues of a
 * virtio-vsock device (virtio/vsock.c keeps the event queue) served by the
 * host kernel, which connects the guest's AF_VSOCK sockets with the host's.
 * At creation the guest's context id is claimed (VHOST_VSOCK_SET_GUEST_CID:
 * one VM per cid on a host); once both rings are set up the device runs
 * (VHOST_VSOCK_SET_RUNNING 1), and it stops (0) before the first ring's
 * position is read back. No device feature is vhost-vsock's charge: it runs
 * the rings (SEQPACKET is not offered).
 */
#ifndef VHOST_VSOCK_H
#define VHOST_VSOCK_H

#include <stddef.h>
#include <stdint.h>

#include "vhost/vhost.h"

#define VHOST_VSOCK_DEVICE	"/dev/vhost-vsock"	/* VMM_VHOST_VSOCK_DEVICE overrides it */

struct vhost_vsock {
	struct vhost_dev dev;
	bool running;
};

/*
 * Creates the kernel vhost-vsock back-end of device `name` for guest context
 * id cid: 0 with *out (the device owns it), or -errno with a one-line reason
 * in why (-EADDRINUSE: another VM has cid).
 */
int vhost_vsock_create(const struct guest_mem *mem, const char *name, uint64_t cid,
		       struct virtio_backend **out, char *why, size_t whylen);

#endif
