/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-vsock (VIRTIO 1.x §5.10) with its data path in the host kernel
 * (vhost-vsock): the guest talks AF_VSOCK to host processes. Private to
 * virtio/vsock.c and its unit tests; the VM uses virtio/devices.h.
 *
 * The device model owns the config space (guest_cid) and the features; the
 * receive (0) and transmit (1) queues go to the vhost-vsock back-end that
 * host->offload creates, and the event queue (2) stays in the VMM on a
 * userspace back-end. It keeps the buffers the driver gives it for the one
 * event the VMM sends: TRANSPORT_RESET, after a migration's load (VIRTIO 1.2
 * §5.10.6.6; the driver then drops its connections and reads guest_cid). A
 * small back-end in vsock.c routes each queue to its owner, so the transport
 * sees one back-end; it signals the irqfd itself (the transport's direct
 * interrupt mode), and the event queue's raise() still works in that mode.
 * There is no userspace data path: without vhost-vsock the device is refused.
 */
#ifndef VIRTIO_VSOCK_H
#define VIRTIO_VSOCK_H

#include <linux/virtio_vsock.h>
#include <stdint.h>

#include "virtio/mmio.h"
#include "virtio/options.h"
#include "virtio/userspace.h"

#define VSOCK_RXQ		0
#define VSOCK_TXQ		1
#define VSOCK_EVENTQ		2
#define VSOCK_QUEUE_SIZE	128
#define VSOCK_CID_MIN		3		/* 0-2 are the hypervisor, local and host */
#define VSOCK_CID_MAX		0xfffffffeULL	/* U32_MAX is VMADDR_CID_ANY */

struct virtio_vsock {
	struct virtio_mmio_dev dev;		/* transport: registers, config, features */
	struct virtio_backend be;		/* routes each queue to its owner (below) */
	struct virtio_backend *offload;		/* vhost-vsock: queues 0 and 1; owned */
	struct userspace_backend ub;		/* the event queue */
	struct virtio_vsock_config config;
	bool reset_pending;			/* a load owes the driver TRANSPORT_RESET */
};

/*
 * Creates the device over offload (the back-end for queues 0 and 1, owned
 * from now on, even on failure): 0 with *out set, or -errno (not logged).
 */
int virtio_vsock_create_with(struct virtio_host *host, const struct vsock_options *o,
			     const char *name, uint64_t base, uint32_t gsi,
			     struct virtio_backend *offload, struct virtio_vsock **out);

/*
 * Creates the device with host->offload's vhost-vsock (see virtio/devices.h):
 * 0 with *out set, or -errno after log_error().
 */
int virtio_vsock_create(struct virtio_host *host, const struct vsock_options *o, const char *name,
			uint64_t base, uint32_t gsi, struct virtio_vsock **out);

/* Tears down the transport and both back-ends and frees v; NULL is ignored. */
void virtio_vsock_destroy(struct virtio_vsock *v);

#endif
