// SPDX-License-Identifier: GPL-2.0-only
/*
 * The device models whose queues a vhost-user back-end serves: virtio-fs
 * (virtio/fs.c) and virtio-net with vhost-user= (virtio/net.c), driven by the
 * fake driver through the virtio-mmio transport. The back-end is a fake
 * vhost_ops under a real struct vhost_dev (vhost/vhost.c), handed over by a
 * fake struct virtio_offload that records what the device asked for: the
 * config space, the queues, each feature bit's fate, and the refusals (no
 * back-end, a back-end that cannot be reached; private guest RAM is the
 * offload's to refuse, vhost/user.c, and the models pass its refusal on).
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_driver.h"
#include "vhost/vhost.h"
#include "virtio/fs.h"
#include "virtio/net.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/util.h"

#define BASE	0xd0000000ULL
#define GSI	5
#define BIT(n)	(1ULL << (n))

/* ---- the fake back-end kind: records requests ---- */

static struct {
	uint64_t offer;
	uint64_t features;
	unsigned int started[VHOST_MAX_RINGS];	/* kick bound per ring */
	unsigned int nkick, ncall_bound;
	bool cleaned;
	char log[8192];
} fk;

static void rlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void rlog(const char *fmt, ...)
{
	size_t len = strlen(fk.log);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fk.log + len, sizeof(fk.log) - len, fmt, ap);
	va_end(ap);
	strncat(fk.log, ";", sizeof(fk.log) - strlen(fk.log) - 1);
}

static int fk_ok(struct vhost_dev *dev)
{
	return 0;
}

static int fk_get_features(struct vhost_dev *dev, uint64_t *f)
{
	*f = fk.offer;
	return 0;
}

static int fk_set_features(struct vhost_dev *dev, uint64_t f)
{
	rlog("SET_FEATURES");
	fk.features = f;
	return 0;
}

static int fk_set_mem_table(struct vhost_dev *dev, const struct vhost_mem_table *t)
{
	rlog("MEM_TABLE");
	return 0;
}

static int fk_set_vring_num(struct vhost_dev *dev, unsigned int r, unsigned int num)
{
	rlog("NUM %u %u", r, num);
	return 0;
}

static int fk_set_vring_base(struct vhost_dev *dev, unsigned int r, uint16_t base)
{
	return 0;
}

static int fk_get_vring_base(struct vhost_dev *dev, unsigned int r, uint16_t *base)
{
	rlog("GET_BASE %u", r);
	*base = 0;
	return 0;
}

static int fk_set_vring_addr(struct vhost_dev *dev, unsigned int r, const struct vhost_ring_addrs *a)
{
	return 0;
}

static int fk_set_vring_kick(struct vhost_dev *dev, unsigned int r, int fd)
{
	if (fd >= 0)
		fk.nkick++;
	return 0;
}

static int fk_set_vring_call(struct vhost_dev *dev, unsigned int r, int fd)
{
	if (fd >= 0)
		fk.ncall_bound++;
	return 0;
}

static void fk_cleanup(struct vhost_dev *dev)
{
	fk.cleaned = true;
}

static const struct vhost_ops fk_ops = {
	.name = "fake-user",
	.set_owner = fk_ok,
	.get_features = fk_get_features,
	.set_features = fk_set_features,
	.set_mem_table = fk_set_mem_table,
	.set_vring_num = fk_set_vring_num,
	.set_vring_base = fk_set_vring_base,
	.get_vring_base = fk_get_vring_base,
	.set_vring_addr = fk_set_vring_addr,
	.set_vring_kick = fk_set_vring_kick,
	.set_vring_call = fk_set_vring_call,
	.cleanup = fk_cleanup,
};

/* ---- the fake offload: what the device asked for, a vhost_dev on the fake kind ---- */

static struct {
	int calls;
	int fail;			/* -errno to answer with */
	const struct guest_mem *mem;	/* the guest RAM the device handed over */
	unsigned int serves;		/* queues the back-end serves; 0: as many as asked */
	struct virtio_offload_user ou;
	char path[108];
	int destroyed;
	struct vhost_device_ops dev_ops;
} off;

static void fk_dev_destroy(struct vhost_dev *dev)
{
	off.destroyed++;
	free(dev);
}

static int fk_user(const struct virtio_offload *o, const struct guest_mem *mem, const char *name,
		   struct event_loop *loop, struct virtio_offload_user *u,
		   struct virtio_backend **out, char *why, size_t whylen)
{
	struct vhost_dev *vd;
	int ret;

	off.calls++;
	off.mem = mem;
	off.ou = *u;
	snprintf(off.path, sizeof(off.path), "%s", u->path);
	off.ou.path = off.path;
	cr_assert_eq(loop, fake_host.loop, "the connection is watched on the VM's event loop");
	if (off.fail) {
		snprintf(why, whylen, "nothing listens there");
		return off.fail;
	}
	u->queues = off.serves && off.serves < u->max_queues ? off.serves : u->max_queues;
	vd = calloc(1, sizeof(*vd));
	cr_assert_not_null(vd);
	off.dev_ops = (struct vhost_device_ops){
		.name = "fake-user", .backend_bits = u->backend_bits, .destroy = fk_dev_destroy,
	};
	ret = vhost_dev_init(vd, &fk_ops, NULL, &off.dev_ops, mem, name, u->queues);
	if (ret) {
		free(vd);
		return ret;
	}
	*out = &vd->be;
	return 0;
}

static const struct virtio_offload fake_offload = { .user = fk_user };

/* What virtiofsd 1.13 offers (peers.md), plus bits that must never reach a guest. */
static const uint64_t virtiofsd_offer =
	BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_INDIRECT_DESC) | BIT(VIRTIO_RING_F_EVENT_IDX) |
	BIT(30) /* PROTOCOL_FEATURES */ | BIT(26) /* LOG_ALL */ | BIT(0) /* FS NOTIFICATION */;

/* What DPDK 22.11's vhost PMD offers by default (no TSO), plus private bits. */
static const uint64_t dpdk_offer =
	BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_INDIRECT_DESC) | BIT(VIRTIO_RING_F_EVENT_IDX) |
	BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) |
	BIT(VIRTIO_NET_F_CTRL_VQ) | BIT(VIRTIO_NET_F_MQ) | BIT(VIRTIO_NET_F_GUEST_ANNOUNCE) |
	BIT(30) | BIT(26) | BIT(VIRTIO_F_ANY_LAYOUT);

static struct virtio_fs *fs;
static struct virtio_net *net;
static struct virtio_mmio_dev *d;

static void setup(void)
{
	fake_driver_init(FS_QUEUE_SIZE);
	memset(&fk, 0, sizeof(fk));
	memset(&off, 0, sizeof(off));
	fake_host.offload = &fake_offload;
	fk.offer = virtiofsd_offer;
}

static void teardown(void)
{
	virtio_fs_destroy(fs);
	fs = NULL;
	virtio_net_destroy(net);
	net = NULL;
	fake_driver_fini();
}

TestSuite(vhost_user_devices, .init = setup, .fini = teardown);

/* The config space as the guest reads it, 4 bytes at a time. */
static void read_config(void *buf, size_t len)
{
	for (size_t off4 = 0; off4 < len; off4 += 4) {
		uint32_t v = htole32(drv_rd(d, 0x100 + off4));

		memcpy((uint8_t *)buf + off4, &v, len - off4 < 4 ? len - off4 : 4);
	}
}

static int create_fs(const char *tag, unsigned int queues)
{
	struct fs_options o = { .vhost_user = "/run/fs.sock", .tag = tag, .queues = queues };
	int ret = virtio_fs_create(&fake_host, &o, "virtio-fs0", BASE, GSI, &fs);

	d = fs ? &fs->dev : NULL;
	return ret;
}

static int create_net(const struct net_options *o)
{
	int ret = virtio_net_create(&fake_host, o, "virtio-net0", BASE, GSI, &net);

	d = net ? &net->dev : NULL;
	return ret;
}

/* ---- virtio-fs ---- */

Test(vhost_user_devices, fs_check_accepts_and_refuses_options)
{
	char tag37[38];

	memset(tag37, 'x', 37);
	tag37[37] = 0;
	cr_assert_null(virtio_fs_check(&(struct fs_options){ .vhost_user = "s", .tag = "share" }));
	cr_assert_null(virtio_fs_check(&(struct fs_options){ .vhost_user = "s", .tag = tag37 + 1 }),
		       "36 bytes is the limit, inclusive");
	cr_assert_not_null(virtio_fs_check(&(struct fs_options){ .vhost_user = "s", .tag = tag37 }));
	cr_assert_not_null(virtio_fs_check(&(struct fs_options){ .vhost_user = "s", .tag = "" }));
	cr_assert_not_null(virtio_fs_check(&(struct fs_options){ .vhost_user = "s" }));
	cr_assert_not_null(virtio_fs_check(&(struct fs_options){ .tag = "share" }));
	cr_assert_not_null(virtio_fs_check(&(struct fs_options){ .vhost_user = "", .tag = "t" }));
	cr_assert_not_null(virtio_fs_check(&(struct fs_options){ .vhost_user = "s", .tag = "t",
								  .queues = FS_REQUEST_QUEUES_MAX + 1 }));
	cr_assert_eq(virtio_fs_nqueues(&(struct fs_options){ .queues = 0 }), 2);
	cr_assert_eq(virtio_fs_nqueues(&(struct fs_options){ .queues = 4 }), 5);
}

Test(vhost_user_devices, fs_config_space_holds_the_padded_tag_and_the_request_queues)
{
	struct virtio_fs_config c;

	cr_assert_eq(create_fs("share", 0), 0);
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_FS);
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_DEVICE_ID), 26);
	read_config(&c, sizeof(c));
	cr_assert_eq(memcmp(c.tag, "share", 5), 0);
	for (size_t i = 5; i < sizeof(c.tag); i++)
		cr_assert_eq(c.tag[i], 0, "tag byte %zu is NUL padding", i);
	cr_assert_eq(le32toh(c.num_request_queues), 1);
}

Test(vhost_user_devices, fs_a_36_byte_tag_fills_the_field_without_a_terminator)
{
	const char *tag = "abcdefghijklmnopqrstuvwxyz0123456789";	/* 36 bytes */
	struct virtio_fs_config c;

	cr_assert_eq(strlen(tag), 36);
	cr_assert_eq(create_fs(tag, 3), 0);
	read_config(&c, sizeof(c));
	cr_assert_eq(memcmp(c.tag, tag, 36), 0);
	cr_assert_eq(le32toh(c.num_request_queues), 3, "right after the tag, not overwritten");
}

Test(vhost_user_devices, fs_has_the_hiprio_queue_and_each_request_queue)
{
	cr_assert_eq(create_fs("share", 2), 0);
	for (unsigned int q = 0; q < 3; q++) {
		drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, q);
		cr_assert_eq(drv_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX), FS_QUEUE_SIZE, "queue %u", q);
	}
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, 3);
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "no queue 3");
}

Test(vhost_user_devices, fs_asks_the_offload_for_a_vhost_user_back_end_for_every_queue)
{
	cr_assert_eq(create_fs("share", 2), 0);
	cr_assert_eq(off.calls, 1);
	cr_assert_str_eq(off.ou.path, "/run/fs.sock");
	cr_assert_eq(off.ou.max_queues, 3);
	cr_assert_eq(off.ou.queue_size, 0, "no in-flight area");
	cr_assert_eq(off.ou.backend_bits, 0);
	cr_assert(d->irq_direct, "the back-end writes the irqfd: direct interrupt mode");
	virtio_fs_destroy(fs);
	fs = NULL;
	cr_assert_eq(off.destroyed, 1, "the device owns its back-end");
	cr_assert(fk.cleaned);
}

Test(vhost_user_devices, fs_offers_version_1_and_the_back_ends_ring_bits_only)
{
	uint64_t f;

	cr_assert_eq(create_fs("share", 0), 0);
	f = drv_device_features(d);
	cr_assert(f & BIT(VIRTIO_F_VERSION_1));
	cr_assert(f & BIT(VIRTIO_RING_F_EVENT_IDX));
	cr_assert(f & BIT(VIRTIO_RING_F_INDIRECT_DESC));
	cr_assert_not(f & BIT(0), "NOTIFICATION: no notification queue here");
	cr_assert_not(f & BIT(30), "PROTOCOL_FEATURES is the front-end's business");
	cr_assert_not(f & BIT(26), "LOG_ALL is migration's business");
}

Test(vhost_user_devices, fs_without_event_idx_from_the_back_end_offers_none)
{
	fk.offer = BIT(VIRTIO_F_VERSION_1);
	cr_assert_eq(create_fs("share", 0), 0);
	cr_assert_not(drv_device_features(d) & BIT(VIRTIO_RING_F_EVENT_IDX));
}

Test(vhost_user_devices, fs_driver_ok_hands_every_queue_to_the_back_end)
{
	cr_assert_eq(create_fs("share", 1), 0);
	drv_start(d, BIT(VIRTIO_RING_F_EVENT_IDX));
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert_not(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_str_eq(fk.log, "SET_FEATURES;MEM_TABLE;NUM 0 128;NUM 1 128;");
	cr_assert_eq(fk.features, BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_EVENT_IDX));
	cr_assert_eq(fk.nkick, 2);
	cr_assert_eq(fk.ncall_bound, 2);
	fk.log[0] = 0;
	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	cr_assert_str_eq(fk.log, "GET_BASE 0;GET_BASE 1;", "a reset takes every queue back");
}

/*
 * Whether guest RAM can be mapped by a back-end is the offload's check (and the
 * command line's rule before it): the model hands over the VM's RAM and passes a
 * refusal on.
 */
Test(vhost_user_devices, fs_leaves_private_guest_ram_to_the_offload)
{
	off.fail = -EINVAL;
	cr_assert_eq(create_fs("share", 0), -EINVAL);
	cr_assert_null(fs);
	cr_assert_eq(off.calls, 1);
	cr_assert_eq(off.mem, fake_host.mem, "the VM's guest RAM, as it is");
}

Test(vhost_user_devices, fs_without_a_vhost_user_offload_is_refused)
{
	fake_host.offload = NULL;
	cr_assert_eq(create_fs("share", 0), -EOPNOTSUPP);
	cr_assert_null(fs);
}

Test(vhost_user_devices, fs_passes_on_the_offloads_error)
{
	off.fail = -ECONNREFUSED;
	cr_assert_eq(create_fs("share", 0), -ECONNREFUSED);
	cr_assert_null(fs);
	cr_assert_eq(off.calls, 1);
}

Test(vhost_user_devices, fs_bad_options_are_refused_before_asking_a_back_end)
{
	cr_assert_eq(create_fs("", 0), -EINVAL);
	cr_assert_eq(create_fs("share", FS_REQUEST_QUEUES_MAX + 1), -EINVAL);
	cr_assert_eq(off.calls, 0);
}

Test(vhost_user_devices, fs_a_back_end_with_fewer_queues_than_asked_is_refused)
{
	off.serves = 2;		/* virtiofsd: the hiprio queue and one request queue */
	cr_assert_eq(create_fs("share", 2), -EOPNOTSUPP);
	cr_assert_null(fs);
	cr_assert_eq(off.destroyed, 1, "the back-end is let go");
	cr_assert_eq(create_fs("share", 1), 0);
}

Test(vhost_user_devices, net_a_back_end_with_one_queue_is_refused)
{
	struct net_options o = { .vhost_user = "/run/net.sock" };

	fk.offer = dpdk_offer;
	off.serves = 1;
	cr_assert_eq(create_net(&o), -EOPNOTSUPP);
	cr_assert_null(net);
	cr_assert_eq(off.destroyed, 1);
}

Test(vhost_user_devices, fs_a_back_end_without_version_1_is_refused)
{
	fk.offer = virtiofsd_offer & ~BIT(VIRTIO_F_VERSION_1);
	cr_assert_eq(create_fs("share", 0), -EOPNOTSUPP);
	cr_assert_null(fs);
}

/* ---- virtio-net on vhost-user ---- */


Test(vhost_user_devices, net_asks_for_both_queues_and_keeps_mac_and_status)
{
	struct net_options o = { .vhost_user = "/run/net.sock", .mac_set = true,
				 .mac = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc } };
	struct virtio_net_config c;

	fk.offer = dpdk_offer;
	cr_assert_eq(create_net(&o), 0);
	cr_assert_eq(off.calls, 1);
	cr_assert_str_eq(off.ou.path, "/run/net.sock");
	cr_assert_eq(off.ou.max_queues, 2);
	cr_assert_eq(off.ou.backend_bits, NET_VHOST_USER_BACKEND_BITS);
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
	read_config(&c, 8);
	cr_assert_eq(memcmp(c.mac, o.mac, 6), 0, "config mac is the model's");
	cr_assert_eq(le16toh(c.status), VIRTIO_NET_S_LINK_UP);
	cr_assert(d->irq_direct);
}

Test(vhost_user_devices, net_features_are_the_intersection_with_the_back_ends_offer)
{
	struct net_options o = { .vhost_user = "/run/net.sock" };
	uint64_t f;

	fk.offer = dpdk_offer;
	cr_assert_eq(create_net(&o), 0);
	f = drv_device_features(d);
	/* The model's own config features: offered whatever the back-end says. */
	cr_assert(f & BIT(VIRTIO_NET_F_MAC));
	cr_assert(f & BIT(VIRTIO_NET_F_STATUS));
	/* The back-end's, offered by it: offered. */
	cr_assert(f & BIT(VIRTIO_NET_F_MRG_RXBUF));
	cr_assert(f & BIT(VIRTIO_NET_F_CSUM));
	cr_assert(f & BIT(VIRTIO_NET_F_GUEST_CSUM));
	cr_assert(f & BIT(VIRTIO_F_VERSION_1));
	/* The back-end's, not offered by it: not offered. */
	cr_assert_not(f & BIT(VIRTIO_NET_F_HOST_TSO4));
	cr_assert_not(f & BIT(VIRTIO_NET_F_GUEST_TSO6));
	/* Offered by the back-end but not the model's (no control queue, one pair): not offered. */
	cr_assert_not(f & BIT(VIRTIO_NET_F_CTRL_VQ));
	cr_assert_not(f & BIT(VIRTIO_NET_F_MQ));
	cr_assert_not(f & BIT(VIRTIO_NET_F_GUEST_ANNOUNCE));
	/* vhost's private bits: never. */
	cr_assert_not(f & BIT(30));
	cr_assert_not(f & BIT(26));
	cr_assert_not(f & BIT(VIRTIO_F_ANY_LAYOUT));
}

Test(vhost_user_devices, net_sends_the_back_end_only_its_own_acked_bits)
{
	struct net_options o = { .vhost_user = "/run/net.sock" };

	fk.offer = dpdk_offer;
	cr_assert_eq(create_net(&o), 0);
	drv_start(d, BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS) | BIT(VIRTIO_NET_F_MRG_RXBUF) |
		     BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_RING_F_EVENT_IDX));
	cr_assert_not(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(fk.features, BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_NET_F_MRG_RXBUF) |
				  BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_RING_F_EVENT_IDX),
		     "MAC and STATUS are the model's, not sent: %#llx",
		     (unsigned long long)fk.features);
	cr_assert_eq(fk.nkick, 2);
}

Test(vhost_user_devices, net_passes_on_the_offloads_refusals)
{
	struct net_options o = { .vhost_user = "/run/net.sock" };

	/* Private guest RAM: the offload refuses (vhost/user.c), the model passes it on. */
	off.fail = -EINVAL;
	cr_assert_eq(create_net(&o), -EINVAL);
	cr_assert_null(net);
	cr_assert_eq(off.calls, 1);
	cr_assert_eq(off.mem, fake_host.mem);
	off.fail = -ENOENT;
	cr_assert_eq(create_net(&o), -ENOENT);
	cr_assert_null(net);
	fake_host.offload = NULL;
	cr_assert_eq(create_net(&o), -EOPNOTSUPP);
	o.tap = "tap0";
	cr_assert_eq(create_net(&o), -EINVAL, "tap and vhost-user together");
}

Test(vhost_user_devices, net_create_fd_without_a_tap_needs_an_offload)
{
	struct net_options o = { .vhost_user = "/run/net.sock" };

	cr_assert_eq(virtio_net_create_fd(&fake_host, &o, "virtio-net0", BASE, GSI, -1, false, NULL,
					  &net), -EINVAL);
	cr_assert_null(net);
}

/* ---- a back-end that dies ---- */

Test(vhost_user_devices, fs_a_dead_back_end_sets_needs_reset_on_that_device_only)
{
	struct fs_options o2 = { .vhost_user = "/run/fs2.sock", .tag = "other" };
	struct virtio_fs *other;

	cr_assert_eq(create_fs("share", 0), 0);
	cr_assert_eq(virtio_fs_create(&fake_host, &o2, "virtio-fs1", BASE + 0x1000, GSI + 1, &other), 0);
	drv_start(d, 0);
	drv_start(&other->dev, 0);
	vhost_dev_disconnected(container_of(fs->offload, struct vhost_dev, be), "hung up");
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_not(drv_rd(&other->dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET,
		      "the other device keeps running");
	virtio_fs_destroy(other);
}

Test(vhost_user_devices, net_a_dead_back_end_sets_needs_reset)
{
	struct net_options o = { .vhost_user = "/run/net.sock" };

	fk.offer = dpdk_offer;
	cr_assert_eq(create_net(&o), 0);
	drv_start(d, 0);
	vhost_dev_disconnected(container_of(net->offload, struct vhost_dev, be), "hung up");
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}
