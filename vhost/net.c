// SPDX-License-Identifier: GPL-2.0-only
/* Kernel vhost-net (see vhost/net.h). */
#include <errno.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <linux/virtio_net.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vhost/kernel.h"
#include "vhost/net.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

#define VHOST_NET_RINGS		2
#define VHOST_NET_HDR_LEN	12	/* struct virtio_net_hdr_mrg_rxbuf */

static struct vhost_net *to_vhost_net(struct vhost_dev *dev)
{
	return container_of(dev, struct vhost_net, dev);
}

static int vhost_net_set_backend_ioctl(struct vhost_net *vn, unsigned int ring, int fd)
{
	struct vhost_vring_file f = { .index = ring, .fd = fd };

	return ioctl(vhost_kernel_fd(&vn->dev), VHOST_NET_SET_BACKEND, &f) < 0 ? -errno : 0;
}

static int vhost_net_queue_started(struct vhost_dev *dev, unsigned int q)
{
	struct vhost_net *vn = to_vhost_net(dev);

	return vn->set_backend(vn, q, vn->tap_fd);
}

static void vhost_net_queue_stopping(struct vhost_dev *dev, unsigned int q)
{
	struct vhost_net *vn = to_vhost_net(dev);
	int ret = vn->set_backend(vn, q, -1);

	if (ret)
		log_warn("%s: cannot detach the tap from vhost-net ring %u: %s", dev->name, q,
			 strerror(-ret));
}

static void vhost_net_destroy(struct vhost_dev *dev)
{
	free(to_vhost_net(dev));
}

static const struct vhost_device_ops vhost_net_dev_ops = {
	.name = "vhost-net",
	.backend_bits = 1ULL << VIRTIO_NET_F_MRG_RXBUF,
	.queue_started = vhost_net_queue_started,
	.queue_stopping = vhost_net_queue_stopping,
	.destroy = vhost_net_destroy,
};

int vhost_net_init(struct vhost_net *vn, const struct vhost_ops *ops, void *conn,
		   const struct guest_mem *mem, const char *name, int tap_fd)
{
	vn->tap_fd = tap_fd;
	if (!vn->set_backend)
		vn->set_backend = vhost_net_set_backend_ioctl;
	return vhost_dev_init(&vn->dev, ops, conn, &vhost_net_dev_ops, mem, name, VHOST_NET_RINGS);
}

/* Whether the tap frames packets as vhost-net (and the device model) expect. */
static const char *vhost_net_check_tap(int tap_fd)
{
	struct ifreq ifr = { 0 };
	int hdr = 0;

	if (ioctl(tap_fd, TUNGETIFF, &ifr) < 0)
		return "the device's fd is not a tap";
	if (!(ifr.ifr_flags & IFF_VNET_HDR) || !(ifr.ifr_flags & IFF_NO_PI))
		return "the tap has no virtio-net header (IFF_VNET_HDR)";
	if (ioctl(tap_fd, TUNGETVNETHDRSZ, &hdr) < 0 || hdr != VHOST_NET_HDR_LEN)
		return "the tap's virtio-net header is not 12 bytes";
	return NULL;
}

int vhost_net_create(const struct guest_mem *mem, const char *name, int tap_fd,
		     struct virtio_backend **out, char *why, size_t whylen)
{
	const char *path = getenv("VMM_VHOST_NET_DEVICE");
	const char *bad = vhost_net_check_tap(tap_fd);
	struct vhost_net *vn;
	void *conn;
	int ret;

	*out = NULL;
	if (!path || !*path)
		path = VHOST_NET_DEVICE;
	if (bad) {
		snprintf(why, whylen, "%s", bad);
		return -EINVAL;
	}
	ret = vhost_kernel_open(path, &conn);
	if (ret) {
		snprintf(why, whylen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	vn = calloc(1, sizeof(*vn));
	if (!vn) {
		vhost_kernel_close(conn);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	ret = vhost_net_init(vn, &vhost_kernel_ops, conn, mem, name, tap_fd);
	if (ret) {
		snprintf(why, whylen, "%s: %s", path,
			 ret == -EOPNOTSUPP ? "no VIRTIO_F_VERSION_1 (a kernel older than 4.0)"
					    : strerror(-ret));
		vhost_kernel_close(conn);
		free(vn);
		return ret;
	}
	*out = &vn->dev.be;
	return 0;
}
