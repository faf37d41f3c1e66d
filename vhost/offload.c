// SPDX-License-Identifier: GPL-2.0-only
/* The device models' way to vhost (see vhost/offload.h). */
#include "vhost/net.h"
#include "vhost/offload.h"

static int offload_net(const struct virtio_offload *o, const struct guest_mem *mem,
		       const char *name, int tap_fd, struct virtio_backend **out, char *why,
		       size_t whylen)
{
	return vhost_net_create(mem, name, tap_fd, out, why, whylen);
}

const struct virtio_offload vhost_offload = {
	.net = offload_net,
};
