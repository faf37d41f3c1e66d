// SPDX-License-Identifier: GPL-2.0-only
/* Kernel vhost-vsock (see vhost/vsock.h). */
#include <endian.h>
#include <errno.h>
#include <linux/vhost.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vhost/kernel.h"
#include "vhost/vsock.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

#define VHOST_VSOCK_RINGS	2

static struct vhost_vsock *to_vhost_vsock(struct vhost_dev *dev)
{
	return container_of(dev, struct vhost_vsock, dev);
}

static int vhost_vsock_set_running(struct vhost_vsock *vv, int on)
{
	return ioctl(vhost_kernel_fd(&vv->dev), VHOST_VSOCK_SET_RUNNING, &on) < 0 ? -errno : 0;
}

/* Runs the device once both rings are set up (vhost-vsock checks every ring when it starts). */
static int vhost_vsock_queue_started(struct vhost_dev *dev, unsigned int q)
{
	struct vhost_vsock *vv = to_vhost_vsock(dev);
	int ret;

	if (vv->running || !dev->rings[q ^ 1].started)
		return 0;
	ret = vhost_vsock_set_running(vv, 1);
	vv->running = ret == 0;
	return ret;
}

static void vhost_vsock_queue_stopping(struct vhost_dev *dev, unsigned int q)
{
	struct vhost_vsock *vv = to_vhost_vsock(dev);
	int ret;

	if (!vv->running)
		return;
	vv->running = false;
	ret = vhost_vsock_set_running(vv, 0);
	if (ret)
		log_warn("%s: cannot stop vhost-vsock: %s", dev->name, strerror(-ret));
}

/* Marks the writable buffers of the chain at head (a descriptor table of n at table) up to len. */
static void vsock_log_chain(struct vhost_dev *dev, uint64_t table, unsigned int n, uint16_t head,
			    uint32_t len, bool indirect_ok)
{
	uint16_t i = head;

	/* At most n descriptors: a loop in the guest's table ends here. */
	for (unsigned int steps = 0; steps < n && len; steps++) {
		struct vring_desc d;

		if (i >= n || guest_mem_read(dev->mem, table + 16ULL * i, &d, sizeof(d)))
			return;
		if ((le16toh(d.flags) & VRING_DESC_F_INDIRECT) && indirect_ok) {
			uint32_t ilen = le32toh(d.len);

			if (ilen % 16 == 0 && ilen / 16 <= VIRTQ_MAX_SIZE)
				vsock_log_chain(dev, le64toh(d.addr), ilen / 16, 0, len, false);
			return;
		}
		if (le16toh(d.flags) & VRING_DESC_F_WRITE) {
			uint32_t k = MIN(len, le32toh(d.len));

			dirty_log_mark(dev->log, le64toh(d.addr), k);
			len -= k;
		}
		if (!(le16toh(d.flags) & VRING_DESC_F_NEXT))
			return;
		i = le16toh(d.next);
	}
}

void vhost_vsock_log_rx(struct vhost_dev *dev, const struct virtq_state *s)
{
	if (!dev->log || !s->size || s->size > VIRTQ_MAX_SIZE)
		return;
	for (unsigned int k = 1; k <= s->size; k++) {
		uint16_t slot = (uint16_t)(s->used_idx - k) % s->size;
		struct vring_used_elem e;

		if (guest_mem_read(dev->mem, s->used_gpa + 4 + 8ULL * slot, &e, sizeof(e)))
			return;
		if (le32toh(e.id) < s->size)
			vsock_log_chain(dev, s->desc_gpa, s->size, (uint16_t)le32toh(e.id),
					le32toh(e.len), true);
	}
}

static void vhost_vsock_queue_stopped(struct vhost_dev *dev, unsigned int q,
				      const struct virtq_state *s)
{
	if (q == 0)	/* receive: the kernel's writes it did not log */
		vhost_vsock_log_rx(dev, s);
}

static void vhost_vsock_destroy(struct vhost_dev *dev)
{
	free(to_vhost_vsock(dev));
}

static const struct vhost_device_ops vhost_vsock_dev_ops = {
	.name = "vhost-vsock",
	.backend_bits = 0,
	.queue_started = vhost_vsock_queue_started,
	.queue_stopping = vhost_vsock_queue_stopping,
	.queue_stopped = vhost_vsock_queue_stopped,
	.destroy = vhost_vsock_destroy,
};

int vhost_vsock_create(const struct guest_mem *mem, const char *name, uint64_t cid,
		       struct virtio_backend **out, char *why, size_t whylen)
{
	const char *path = getenv("VMM_VHOST_VSOCK_DEVICE");
	struct vhost_vsock *vv;
	void *conn;
	int ret;

	*out = NULL;
	if (!path || !*path)
		path = VHOST_VSOCK_DEVICE;
	ret = vhost_kernel_open(path, &conn);
	if (ret) {
		snprintf(why, whylen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	vv = calloc(1, sizeof(*vv));
	if (!vv) {
		vhost_kernel_close(conn);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	ret = vhost_dev_init(&vv->dev, &vhost_kernel_ops, conn, &vhost_vsock_dev_ops, mem, name,
			     VHOST_VSOCK_RINGS);
	if (ret) {
		snprintf(why, whylen, "%s: %s", path, strerror(-ret));
		vhost_kernel_close(conn);
		free(vv);
		return ret;
	}
	if (ioctl(vhost_kernel_fd(&vv->dev), VHOST_VSOCK_SET_GUEST_CID, &cid) < 0) {
		ret = -errno;
		snprintf(why, whylen, "cid %llu: %s", (unsigned long long)cid, strerror(-ret));
		vhost_dev_fini(&vv->dev);
		free(vv);
		return ret;
	}
	*out = &vv->dev.be;
	return 0;
}
