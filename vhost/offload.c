// SPDX-License-Identifier: GPL-2.0-only
/* The device models' way to vhost (see vhost/offload.h). */
#include "vhost/net.h"
#include "vhost/offload.h"
#include "vhost/user.h"
#include "vhost/vsock.h"

static int offload_net(const struct virtio_offload *o, const struct guest_mem *mem,
		       const char *name, int tap_fd, struct virtio_backend **out, char *why,
		       size_t whylen)
{
	return vhost_net_create(mem, name, tap_fd, out, why, whylen);
}

static int offload_vsock(const struct virtio_offload *o, const struct guest_mem *mem,
			 const char *name, uint64_t cid, struct virtio_backend **out, char *why,
			 size_t whylen)
{
	return vhost_vsock_create(mem, name, cid, out, why, whylen);
}

static int offload_user(const struct virtio_offload *o, const struct guest_mem *mem,
			const char *name, struct event_loop *loop, struct virtio_offload_user *u,
			struct virtio_backend **out, char *why, size_t whylen)
{
	return vhost_user_create(mem, name, loop, u, out, why, whylen);
}

const struct virtio_offload vhost_offload = {
	.net = offload_net,
	.vsock = offload_vsock,
	.user = offload_user,
};
