// SPDX-License-Identifier: GPL-2.0-only
/* Kernel vhost over ioctls (see vhost/kernel.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vhost/kernel.h"

struct vhost_kernel {
	int fd;
	int (*ioctl)(int fd, unsigned long req, void *arg);	/* NULL: ioctl(2) */
};

int vhost_kernel_fd(const struct vhost_dev *dev)
{
	return ((const struct vhost_kernel *)dev->conn)->fd;
}

static int vk_ioctl(struct vhost_dev *dev, unsigned long req, void *arg)
{
	const struct vhost_kernel *k = dev->conn;

	if (k->ioctl)
		return k->ioctl(k->fd, req, arg);
	return ioctl(k->fd, req, arg) < 0 ? -errno : 0;
}

static int vk_set_owner(struct vhost_dev *dev)
{
	return vk_ioctl(dev, VHOST_SET_OWNER, NULL);
}

static int vk_get_features(struct vhost_dev *dev, uint64_t *features)
{
	return vk_ioctl(dev, VHOST_GET_FEATURES, features);
}

static int vk_set_features(struct vhost_dev *dev, uint64_t features)
{
	return vk_ioctl(dev, VHOST_SET_FEATURES, &features);
}

static int vk_set_mem_table(struct vhost_dev *dev, const struct vhost_mem_table *t)
{
	struct vhost_memory *m = calloc(1, sizeof(*m) + t->nregions * sizeof(m->regions[0]));
	int ret;

	if (!m)
		return -ENOMEM;
	m->nregions = t->nregions;
	for (unsigned int i = 0; i < t->nregions; i++)
		m->regions[i] = (struct vhost_memory_region){
			.guest_phys_addr = t->regions[i].gpa,
			.memory_size = t->regions[i].size,
			.userspace_addr = t->regions[i].hva,
		};
	ret = vk_ioctl(dev, VHOST_SET_MEM_TABLE, m);
	free(m);
	return ret;
}

static int vk_set_vring_num(struct vhost_dev *dev, unsigned int ring, unsigned int num)
{
	struct vhost_vring_state s = { .index = ring, .num = num };

	return vk_ioctl(dev, VHOST_SET_VRING_NUM, &s);
}

static int vk_set_vring_base(struct vhost_dev *dev, unsigned int ring, uint16_t base)
{
	struct vhost_vring_state s = { .index = ring, .num = base };

	return vk_ioctl(dev, VHOST_SET_VRING_BASE, &s);
}

static int vk_get_vring_base(struct vhost_dev *dev, unsigned int ring, uint16_t *base)
{
	struct vhost_vring_state s = { .index = ring };
	int ret = vk_ioctl(dev, VHOST_GET_VRING_BASE, &s);

	if (!ret)
		*base = (uint16_t)s.num;
	return ret;
}

static int vk_set_vring_addr(struct vhost_dev *dev, unsigned int ring,
			     const struct vhost_ring_addrs *a)
{
	struct vhost_vring_addr addr = {
		.index = ring,
		.desc_user_addr = a->desc,
		.used_user_addr = a->used,
		.avail_user_addr = a->avail,
		.log_guest_addr = a->used_gpa,
		.flags = a->log ? 1u << VHOST_VRING_F_LOG : 0,
	};

	return vk_ioctl(dev, VHOST_SET_VRING_ADDR, &addr);
}

static int vk_set_vring_kick(struct vhost_dev *dev, unsigned int ring, int fd)
{
	struct vhost_vring_file f = { .index = ring, .fd = fd };

	return vk_ioctl(dev, VHOST_SET_VRING_KICK, &f);
}

static int vk_set_vring_call(struct vhost_dev *dev, unsigned int ring, int fd)
{
	struct vhost_vring_file f = { .index = ring, .fd = fd };

	return vk_ioctl(dev, VHOST_SET_VRING_CALL, &f);
}

/*
 * The dirty log: its address in the VMM, which the kernel writes through (one
 * bit per 4 KiB page of guest-physical address, bit page % 8 of byte page / 8:
 * on a little-endian host the same bits as vmm/base/dirty.h's 64-bit words).
 * The kernel checks it when LOG_ALL or a ring's F_LOG arrives; it checks only
 * that the range is user memory, so vhost.c checks that the log covers RAM.
 */
static int vk_set_log_base(struct vhost_dev *dev, const struct dirty_log *log)
{
	uint64_t base = (uint64_t)(uintptr_t)log->words;

	return vk_ioctl(dev, VHOST_SET_LOG_BASE, &base);
}

void vhost_kernel_close(void *conn)
{
	struct vhost_kernel *k = conn;

	if (!k)
		return;
	close(k->fd);
	free(k);
}

static void vk_cleanup(struct vhost_dev *dev)
{
	vhost_kernel_close(dev->conn);
	dev->conn = NULL;
}

const struct vhost_ops vhost_kernel_ops = {
	.name = "kernel",
	.set_owner = vk_set_owner,
	.get_features = vk_get_features,
	.set_features = vk_set_features,
	.set_mem_table = vk_set_mem_table,
	.set_vring_num = vk_set_vring_num,
	.set_vring_base = vk_set_vring_base,
	.get_vring_base = vk_get_vring_base,
	.set_vring_addr = vk_set_vring_addr,
	.set_vring_kick = vk_set_vring_kick,
	.set_vring_call = vk_set_vring_call,
	.set_log_base = vk_set_log_base,
	.cleanup = vk_cleanup,
};

int vhost_kernel_wrap(int fd, int (*fn)(int fd, unsigned long req, void *arg), void **conn)
{
	struct vhost_kernel *k = calloc(1, sizeof(*k));

	*conn = NULL;
	if (!k)
		return -ENOMEM;
	k->fd = fd;
	k->ioctl = fn;
	*conn = k;
	return 0;
}

int vhost_kernel_open(const char *path, void **conn)
{
	struct vhost_kernel *k = calloc(1, sizeof(*k));

	*conn = NULL;
	if (!k)
		return -ENOMEM;
	k->fd = open(path, O_RDWR | O_CLOEXEC);
	if (k->fd < 0) {
		int err = -errno;

		free(k);
		return err;
	}
	*conn = k;
	return 0;
}
