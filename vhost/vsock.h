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
 *
 * Migration: Linux's vhost-vsock logs the used ring it writes (VHOST_VRING_F_LOG)
 * but not the packets it copies into the guest's receive buffers (its
 * vhost_transport_do_send_pkt takes descriptors without a log and never calls
 * vhost_log_write; seen on Linux 6.1 in the nested L1: the used ring's page set
 * in the log, the buffer's not). So when the receive ring stops while a
 * migration logs — the pause before the last copy — the buffers named by the
 * used ring's entries are marked dirty here (vhost_vsock_log_rx): the packets
 * the guest has not taken yet are among them (their descriptors are not
 * reused before the guest takes them); an entry whose descriptor was reused
 * since marks the newer buffer too, which only costs a page more. Packets the
 * guest took earlier and still holds may be stale on the destination, in
 * connections that the transport reset after the load ends anyway.
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

/*
 * Marks dirty in dev->log the writable buffers of the chains named by the last
 * s->size entries of the used ring at s->used_gpa (up to s->used_idx), each up
 * to its used length; descriptors are read from guest memory at s->desc_gpa
 * with every bound checked (guest input). Nothing without a log.
 */
void vhost_vsock_log_rx(struct vhost_dev *dev, const struct virtq_state *s);

#endif
