// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vhost device (vhost/vhost.c) and kernel vhost-net's hooks (vhost/net.c)
 * over a fake back-end kind that records every request, under a real
 * virtio-net device model and the virtio-mmio transport driven by the fake
 * driver: what each feature bit becomes, the start and stop sequences, the
 * memory table, and a queue that stops and restarts at its position.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/vhost.h>
#include <linux/vhost_types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <endian.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake_driver.h"
#include "vhost/kernel.h"
#include "vhost/net.h"
#include "vhost/vsock.h"
#include "vhost/vhost.h"
#include "virtio/net.h"
#include "virtio/vsock.h"

#define BASE	0xd0000000ULL
#define GSI	5
#define QSIZE	256
#define BIT(n)	(1ULL << (n))

/* The fake back-end: what it offers, what it got, and a log of every request. */
static struct {
	uint64_t offer;
	uint64_t features;		/* SET_FEATURES */
	bool features_set;
	struct vhost_mem_table table;	/* SET_MEM_TABLE */
	unsigned int num[2];
	uint16_t base[2];		/* SET_VRING_BASE, and what GET_VRING_BASE answers */
	struct vhost_ring_addrs addrs[2];
	int kick[2], call[2], tap[2];
	int fail_addr;			/* SET_VRING_ADDR's answer */
	const struct dirty_log *log_base;	/* SET_LOG_BASE */
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

static int fk_set_owner(struct vhost_dev *dev)
{
	rlog("OWNER");
	return 0;
}

static int fk_get_features(struct vhost_dev *dev, uint64_t *f)
{
	rlog("GET_FEATURES");
	*f = fk.offer;
	return 0;
}

static int fk_set_features(struct vhost_dev *dev, uint64_t f)
{
	rlog("SET_FEATURES");
	fk.features = f;
	fk.features_set = true;
	return 0;
}

static int fk_set_mem_table(struct vhost_dev *dev, const struct vhost_mem_table *t)
{
	rlog("MEM_TABLE %u", t->nregions);
	fk.table = *t;
	return 0;
}

static int fk_set_vring_num(struct vhost_dev *dev, unsigned int r, unsigned int num)
{
	rlog("NUM %u %u", r, num);
	fk.num[r] = num;
	return 0;
}

static int fk_set_vring_base(struct vhost_dev *dev, unsigned int r, uint16_t base)
{
	rlog("BASE %u %u", r, base);
	fk.base[r] = base;
	return 0;
}

static int fk_get_vring_base(struct vhost_dev *dev, unsigned int r, uint16_t *base)
{
	rlog("GET_BASE %u", r);
	*base = fk.base[r];
	return 0;
}

static int fk_set_vring_addr(struct vhost_dev *dev, unsigned int r, const struct vhost_ring_addrs *a)
{
	rlog("ADDR %u%s", r, a->log ? " log" : "");
	fk.addrs[r] = *a;
	return fk.fail_addr;
}

static int fk_set_vring_kick(struct vhost_dev *dev, unsigned int r, int fd)
{
	rlog("KICK %u %s", r, fd < 0 ? "-1" : "fd");
	fk.kick[r] = fd;
	return 0;
}

static int fk_set_vring_call(struct vhost_dev *dev, unsigned int r, int fd)
{
	rlog("CALL %u %s", r, fd < 0 ? "-1" : "fd");
	fk.call[r] = fd;
	return 0;
}

static void fk_cleanup(struct vhost_dev *dev)
{
	fk.cleaned = true;
}

static int fk_set_log_base(struct vhost_dev *dev, const struct dirty_log *log)
{
	rlog("LOG_BASE");
	fk.log_base = log;
	return 0;
}

static const struct vhost_ops fk_ops = {
	.name = "fake",
	.set_owner = fk_set_owner,
	.get_features = fk_get_features,
	.set_features = fk_set_features,
	.set_mem_table = fk_set_mem_table,
	.set_vring_num = fk_set_vring_num,
	.set_vring_base = fk_set_vring_base,
	.get_vring_base = fk_get_vring_base,
	.set_vring_addr = fk_set_vring_addr,
	.set_vring_kick = fk_set_vring_kick,
	.set_vring_call = fk_set_vring_call,
	.set_log_base = fk_set_log_base,
	.cleanup = fk_cleanup,
};

static int fk_set_backend(struct vhost_net *vn, unsigned int ring, int fd)
{
	rlog("NET_BACKEND %u %s", ring, fd < 0 ? "-1" : "tap");
	fk.tap[ring] = fd;
	return 0;
}

/* What kernel vhost-net offers on Linux 6.1 (VHOST_NET_FEATURES), plus bits to see refused. */
static const uint64_t vhost_net_offer =
	BIT(VIRTIO_F_NOTIFY_ON_EMPTY) | BIT(VIRTIO_RING_F_INDIRECT_DESC) |
	BIT(VIRTIO_RING_F_EVENT_IDX) | BIT(VHOST_F_LOG_ALL) | BIT(VHOST_NET_F_VIRTIO_NET_HDR) |
	BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_F_ACCESS_PLATFORM) |
	BIT(VIRTIO_F_RING_RESET);

static struct virtio_net *net;
static struct virtio_mmio_dev *d;
static struct vhost_net *vn;
static int peer = -1;

/* A virtio-net device over a socketpair whose data path is vhost-net on the fake back-end. */
static int create(uint64_t offer)
{
	struct net_options o = { .tap = "fake", .vhost = NET_VHOST_ON };
	int sv[2], ret;

	fk.offer = offer;
	vn = calloc(1, sizeof(*vn));
	vn->set_backend = fk_set_backend;
	ret = vhost_net_init(vn, &fk_ops, (void *)&fk, fake_host.mem, "virtio-net0", 99);
	if (ret) {
		free(vn);
		return ret;
	}
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	peer = sv[1];
	cr_assert_eq(virtio_net_create_fd(&fake_host, &o, "virtio-net0", BASE, GSI, sv[0], false,
					  &vn->dev.be, &net), 0);
	d = &net->dev;
	return 0;
}

static void setup(void)
{
	fake_driver_init(QSIZE);
	memset(&fk, 0, sizeof(fk));
	fk.kick[0] = fk.kick[1] = fk.call[0] = fk.call[1] = -2;
}

static void teardown(void)
{
	virtio_net_destroy(net);
	net = NULL;
	if (peer >= 0)
		close(peer);
	peer = -1;
	fake_driver_fini();
}

TestSuite(vhost, .init = setup, .fini = teardown);

/* Clears the request log. */
static void log_reset(void)
{
	fk.log[0] = 0;
}

Test(vhost, init_takes_ownership_and_reads_the_offer)
{
	cr_assert_eq(create(vhost_net_offer), 0);
	cr_assert_str_eq(fk.log, "OWNER;GET_FEATURES;");
	cr_assert(d->irq_direct, "the transport runs in its direct interrupt mode for vhost");
}

Test(vhost, a_back_end_without_version_1_is_refused)
{
	cr_assert_eq(create(vhost_net_offer & ~BIT(VIRTIO_F_VERSION_1)), -EOPNOTSUPP);
}

/* Each feature bit's fate: offered to the guest? sent to the back-end once the guest took it? */
Test(vhost, each_feature_bits_fate)
{
	static const struct {
		unsigned int bit;
		bool offered, sent;
		const char *why;
	} fate[] = {
		{ VIRTIO_F_VERSION_1, true, true, "ring bit, the back-end offers it" },
		{ VIRTIO_RING_F_INDIRECT_DESC, true, true, "ring bit, the back-end offers it" },
		{ VIRTIO_RING_F_EVENT_IDX, true, true, "ring bit, the back-end offers it" },
		{ VIRTIO_NET_F_MRG_RXBUF, true, true, "vhost-net's charge, offered by it" },
		{ VIRTIO_NET_F_CSUM, true, false, "the device model's (tap offload): not vhost's" },
		{ VIRTIO_NET_F_GUEST_CSUM, true, false, "the device model's (tap offload)" },
		{ VIRTIO_NET_F_HOST_TSO4, true, false, "the device model's (tap offload)" },
		{ VIRTIO_NET_F_GUEST_TSO6, true, false, "the device model's (tap offload)" },
		{ VIRTIO_NET_F_MAC, true, false, "config space: the device model's" },
		{ VIRTIO_NET_F_STATUS, true, false, "config space: the device model's" },
		{ VHOST_NET_F_VIRTIO_NET_HDR, false, false, "bit 27: vhost would add its own header" },
		{ VHOST_F_LOG_ALL, false, false, "dirty logging is the VMM's (migration)" },
		{ VIRTIO_F_NOTIFY_ON_EMPTY, false, false, "legacy only" },
		{ VIRTIO_F_ACCESS_PLATFORM, false, false, "no IOMMU: vhost would want IOTLB messages" },
		{ VIRTIO_F_RING_RESET, false, false, "offered by vhost, not by the device model" },
		{ 30, false, false, "vhost-user's protocol-features bit" },
		{ VIRTIO_NET_F_CTRL_VQ, false, false, "offered by neither" },
	};
	uint64_t offered, want = 0;

	cr_assert_eq(create(vhost_net_offer | BIT(30)), 0);
	offered = drv_device_features(d);
	for (size_t i = 0; i < sizeof(fate) / sizeof(fate[0]); i++) {
		cr_assert_eq(!!(offered & BIT(fate[i].bit)), fate[i].offered,
			     "bit %u offered: want %d (%s)", fate[i].bit, fate[i].offered, fate[i].why);
		if (fate[i].offered)
			want |= BIT(fate[i].bit);
	}
	/* The guest takes everything offered; the back-end gets only its own bits. */
	drv_start(d, want);
	cr_assert(fk.features_set);
	for (size_t i = 0; i < sizeof(fate) / sizeof(fate[0]); i++)
		cr_assert_eq(!!(fk.features & BIT(fate[i].bit)), fate[i].sent,
			     "bit %u sent to vhost: want %d (%s)", fate[i].bit, fate[i].sent,
			     fate[i].why);
	cr_assert_eq(fk.features, BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_INDIRECT_DESC) |
				  BIT(VIRTIO_RING_F_EVENT_IDX) | BIT(VIRTIO_NET_F_MRG_RXBUF));
}

Test(vhost, bits_the_back_end_lacks_are_not_offered_and_unacked_bits_not_sent)
{
	uint64_t offered;

	cr_assert_eq(create(vhost_net_offer & ~(BIT(VIRTIO_NET_F_MRG_RXBUF) |
						BIT(VIRTIO_RING_F_EVENT_IDX))), 0);
	offered = drv_device_features(d);
	cr_assert_not(offered & BIT(VIRTIO_NET_F_MRG_RXBUF), "vhost-net's charge, not offered by it");
	cr_assert_not(offered & BIT(VIRTIO_RING_F_EVENT_IDX), "a ring bit the back-end lacks");
	cr_assert(offered & BIT(VIRTIO_NET_F_GUEST_CSUM), "the tap's business, still offered");
	/* A guest that takes only VERSION_1 and INDIRECT_DESC. */
	drv_start(d, BIT(VIRTIO_RING_F_INDIRECT_DESC) | BIT(VIRTIO_NET_F_GUEST_CSUM));
	cr_assert_eq(fk.features, BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_INDIRECT_DESC));
}

Test(vhost, driver_ok_starts_each_ring_then_attaches_the_tap)
{
	cr_assert_eq(create(vhost_net_offer), 0);
	log_reset();
	drv_start(d, BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_RING_F_EVENT_IDX));
	cr_assert_str_eq(fk.log,
			 "SET_FEATURES;MEM_TABLE 1;"
			 "NUM 0 256;BASE 0 0;ADDR 0;CALL 0 fd;KICK 0 fd;NET_BACKEND 0 tap;"
			 "NUM 1 256;BASE 1 0;ADDR 1;CALL 1 fd;KICK 1 fd;NET_BACKEND 1 tap;");
	for (unsigned int q = 0; q < 2; q++) {
		cr_assert_eq(fk.kick[q], d->q[q].kick_fd, "kick = the queue's KVM ioeventfd");
		cr_assert_eq(fk.call[q], d->irq_fd, "call = the device's KVM irqfd");
		cr_assert_eq(fk.tap[q], 99);
		/* Ring addresses are the VMM's mappings of the guest's rings. */
		cr_assert_eq(fk.addrs[q].desc, (uint64_t)(uintptr_t)gpa_ptr(d->queues[q].desc_gpa));
		cr_assert_eq(fk.addrs[q].avail, (uint64_t)(uintptr_t)gpa_ptr(d->queues[q].avail_gpa));
		cr_assert_eq(fk.addrs[q].used, (uint64_t)(uintptr_t)gpa_ptr(d->queues[q].used_gpa));
		cr_assert_eq(fk.addrs[q].used_gpa, d->queues[q].used_gpa);
	}
	cr_assert_eq(fk.table.nregions, 1);
	cr_assert_eq(fk.table.regions[0].gpa, 0);
	cr_assert_eq(fk.table.regions[0].size, FAKE_RAM_SIZE);
	cr_assert_eq(fk.table.regions[0].hva, (uint64_t)(uintptr_t)gpa_ptr(0));
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
}

/* Where vhost stopped: GET_VRING_BASE's answer; the used index it published is in guest RAM. */
static void backend_progress(unsigned int q, uint16_t avail, uint16_t used)
{
	uint16_t le = htole16(used);

	fk.base[q] = avail;
	memcpy(gpa_ptr(d->queues[q].used_gpa + 2), &le, sizeof(le));
}

Test(vhost, reset_detaches_the_tap_before_reading_the_position)
{
	cr_assert_eq(create(vhost_net_offer), 0);
	drv_start(d, 0);
	backend_progress(1, 7, 7);
	log_reset();
	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	cr_assert_str_eq(fk.log,
			 "NET_BACKEND 0 -1;GET_BASE 0;KICK 0 -1;CALL 0 -1;"
			 "NET_BACKEND 1 -1;GET_BASE 1;KICK 1 -1;CALL 1 -1;");
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

Test(vhost, a_queue_stopped_at_avail_7_restarts_at_7)
{
	cr_assert_eq(create(vhost_net_offer), 0);
	drv_start(d, BIT(VIRTIO_RING_F_EVENT_IDX));
	backend_progress(1, 7, 5);	/* 7 chains taken, 5 completed and published */
	pthread_mutex_lock(&d->lock);
	virtio_mmio_pause(d);
	pthread_mutex_unlock(&d->lock);
	cr_assert_eq(d->queues[1].last_avail_idx, 7);
	cr_assert_eq(d->queues[1].used_idx, 5, "read from the guest's used ring");
	cr_assert_not(d->queues[1].signalled_used_valid, "the next interrupt check says yes");
	cr_assert_eq(d->queues[0].last_avail_idx, 0);

	log_reset();
	pthread_mutex_lock(&d->lock);
	virtio_mmio_resume(d);
	pthread_mutex_unlock(&d->lock);
	cr_assert(strstr(fk.log, "BASE 1 7;"), "restarted at 7: %s", fk.log);
	cr_assert(strstr(fk.log, "BASE 0 0;"), "%s", fk.log);
	cr_assert(strstr(fk.log, "NET_BACKEND 1 tap;"), "%s", fk.log);
}

Test(vhost, a_ring_the_back_end_cannot_start_needs_reset_and_is_unbound)
{
	cr_assert_eq(create(vhost_net_offer), 0);
	fk.fail_addr = -EFAULT;
	drv_negotiate(d, BIT(VIRTIO_F_VERSION_1));
	drv_setup_queue(d, 0);
	drv_setup_queue(d, 1);
	log_reset();
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert(strstr(fk.log, "ADDR 0;KICK 0 -1;CALL 0 -1;"), "%s", fk.log);
	cr_assert_null(strstr(fk.log, "NET_BACKEND 0 tap"), "never attached: %s", fk.log);
}

Test(vhost, destroy_closes_the_connection)
{
	cr_assert_eq(create(vhost_net_offer), 0);
	drv_start(d, 0);
	virtio_net_destroy(net);
	net = NULL;
	cr_assert(fk.cleaned);
	cr_assert_eq(fk.tap[0], -1, "the tap was detached");
	cr_assert_eq(fk.tap[1], -1);
}

/* ---- the memory table ---- */

Test(vhost, memory_table_has_every_region_of_ram_split_around_the_hole)
{
	static uint8_t low[64 << 10], high[32 << 10];
	struct guest_mem m = {
		.regions = {
			{ .gpa = 0, .size = sizeof(low), .hva = low, .fd_offset = 0 },
			{ .gpa = 0x100000000ULL, .size = sizeof(high), .hva = high,
			  .fd_offset = sizeof(low) },
		},
		.nregions = 2,
		.fd = 42,
	};
	struct vhost_mem_table t;

	cr_assert_eq(vhost_mem_table_build(&m, &t), 0);
	cr_assert_eq(t.nregions, 2);
	cr_assert_eq(t.regions[0].gpa, 0);
	cr_assert_eq(t.regions[0].size, sizeof(low));
	cr_assert_eq(t.regions[0].hva, (uint64_t)(uintptr_t)low);
	cr_assert_eq(t.regions[1].gpa, 0x100000000ULL);
	cr_assert_eq(t.regions[1].size, sizeof(high));
	cr_assert_eq(t.regions[1].hva, (uint64_t)(uintptr_t)high);
	cr_assert_eq(t.regions[1].fd, 42, "a back-end in another process maps the memfd");
	cr_assert_eq(t.regions[1].fd_offset, sizeof(low));
}

/* ---- config space and the config-change notifier ---- */

static int fk_get_config(struct vhost_dev *dev, uint32_t off, void *buf, uint32_t len)
{
	memset(buf, 0xab, len);
	return off < 64 ? 0 : -EINVAL;
}

static int notified;

static void on_config(void *opaque)
{
	notified += *(int *)opaque;
}

static int fk_destroyed;

static void fk_dev_destroy(struct vhost_dev *dev)
{
	fk_destroyed++;
}

Test(vhost, config_hooks_reach_the_back_end_kind)
{
	struct vhost_ops ops = fk_ops;
	static const struct vhost_device_ops dops = { .name = "fake-blk", .destroy = fk_dev_destroy };
	struct vhost_dev dev;
	uint8_t buf[8];
	int one = 1;

	fk.offer = BIT(VIRTIO_F_VERSION_1);
	cr_assert_eq(vhost_dev_init(&dev, &ops, NULL, &dops, fake_host.mem, "blk", 1), 0);
	cr_assert_eq(vhost_dev_get_config(&dev, 0, buf, sizeof(buf)), -EOPNOTSUPP,
		     "kernel-like kind: no config space");
	vhost_dev_fini(&dev);

	ops.get_config = fk_get_config;
	cr_assert_eq(vhost_dev_init(&dev, &ops, NULL, &dops, fake_host.mem, "blk", 1), 0);
	cr_assert_eq(vhost_dev_get_config(&dev, 0, buf, sizeof(buf)), 0);
	cr_assert_eq(buf[7], 0xab);
	cr_assert_eq(vhost_dev_set_config(&dev, 0, buf, sizeof(buf)), -EOPNOTSUPP);
	vhost_dev_config_changed(&dev);
	cr_assert_eq(notified, 0, "no notifier yet");
	vhost_dev_set_config_notifier(&dev, on_config, &one);
	vhost_dev_config_changed(&dev);
	cr_assert_eq(notified, 1);
	dev.be.ops->destroy(&dev.be);
	cr_assert_eq(fk_destroyed, 1);
	cr_assert(fk.cleaned);
}

/* ---- virtio-vsock: rings 0 and 1 on vhost, the event queue in the VMM ---- */

static int fk_vsock_destroyed;

static void fk_vsock_destroy(struct vhost_dev *dev)
{
	fk_vsock_destroyed++;
	free(dev);
}

static const struct vhost_device_ops fk_vsock_ops = { .name = "fake-vsock", .destroy = fk_vsock_destroy };

Test(vhost, vsock_routes_rx_and_tx_to_vhost_and_keeps_the_event_queue)
{
	struct vhost_dev *vd = calloc(1, sizeof(*vd));
	struct virtio_vsock *v;
	uint32_t lo, hi;

	fake_driver_fini();
	fake_driver_init(VSOCK_QUEUE_SIZE);
	fk.offer = vhost_net_offer;
	cr_assert_eq(vhost_dev_init(vd, &fk_ops, NULL, &fk_vsock_ops, fake_host.mem, "vsock", 2), 0);
	cr_assert_eq(virtio_vsock_create_with(&fake_host, &(struct vsock_options){ .cid = 0x123456789ULL },
					      "virtio-vsock0", BASE, GSI, &vd->be, &v), 0);
	d = &v->dev;
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_DEVICE_ID), 19);
	lo = drv_rd(d, 0x100);
	hi = drv_rd(d, 0x104);
	cr_assert_eq(((uint64_t)hi << 32) | lo, 0x123456789ULL, "config: guest_cid");
	cr_assert(d->irq_direct);
	log_reset();
	drv_start(d, BIT(VIRTIO_RING_F_EVENT_IDX));
	cr_assert_str_eq(fk.log,
			 "SET_FEATURES;MEM_TABLE 1;"
			 "NUM 0 128;BASE 0 0;ADDR 0;CALL 0 fd;KICK 0 fd;"
			 "NUM 1 128;BASE 1 0;ADDR 1;CALL 1 fd;KICK 1 fd;");
	cr_assert(userspace_backend_running(&v->ub, VSOCK_EVENTQ), "the event queue is the VMM's");
	cr_assert_not(userspace_backend_running(&v->ub, VSOCK_RXQ));
	cr_assert_eq(fk.features, BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_EVENT_IDX));
	log_reset();
	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	cr_assert_str_eq(fk.log, "GET_BASE 0;KICK 0 -1;CALL 0 -1;GET_BASE 1;KICK 1 -1;CALL 1 -1;");
	cr_assert_not(userspace_backend_running(&v->ub, VSOCK_EVENTQ));
	virtio_vsock_destroy(v);
	cr_assert_eq(fk_vsock_destroyed, 1);
	cr_assert(fk.cleaned);
}

/* ---- the kernel constructors' errors (no vhost device needed) ---- */

Test(vhost, vhost_net_refuses_an_fd_that_is_not_a_tap)
{
	struct virtio_backend *be = (void *)1;
	char why[160] = "";
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhost_net_create(fake_host.mem, "virtio-net0", sv[0], &be, why, sizeof(why)),
		     -EINVAL);
	cr_assert_null(be);
	cr_assert(strstr(why, "not a tap"), "why: %s", why);
	close(sv[0]);
	close(sv[1]);
}

Test(vhost, vhost_vsock_names_a_missing_device)
{
	struct virtio_backend *be = (void *)1;
	char why[160] = "";

	setenv("VMM_VHOST_VSOCK_DEVICE", "/nonexistent/vhost-vsock", 1);
	cr_assert_eq(vhost_vsock_create(fake_host.mem, "virtio-vsock0", 3, &be, why, sizeof(why)),
		     -ENOENT);
	cr_assert_null(be);
	cr_assert(strstr(why, "/nonexistent/vhost-vsock"), "why: %s", why);
}

/* ---- migration: dirty logging and state (kernel vhost keeps none beyond positions) ---- */

#define GUEST_BITS	(BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_EVENT_IDX) | \
			 BIT(VIRTIO_NET_F_MRG_RXBUF))

Test(vhost, log_start_on_running_rings_resends_features_and_addresses)
{
	struct virtio_backend *be;
	struct dirty_log log;

	cr_assert_eq(create(vhost_net_offer), 0);
	be = &vn->dev.be;
	drv_start(d, BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_RING_F_EVENT_IDX));
	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	log_reset();
	cr_assert_eq(be->ops->log_start(be, &log), 0);
	/* QEMU's vhost_dev_set_log order: the base, the features, then each ring. */
	cr_assert_str_eq(fk.log, "LOG_BASE;SET_FEATURES;ADDR 0 log;ADDR 1 log;");
	cr_assert_eq(fk.log_base, &log);
	cr_assert_eq(fk.features, GUEST_BITS | BIT(VHOST_F_LOG_ALL));
	for (unsigned int q = 0; q < 2; q++) {
		cr_assert_eq(fk.addrs[q].used_gpa, d->queues[q].used_gpa, "logged at the used ring");
		cr_assert_eq(fk.addrs[q].used, (uint64_t)(uintptr_t)gpa_ptr(d->queues[q].used_gpa));
	}
	cr_assert_eq(be->ops->log_start(be, &log), 0, "the same log again: nothing to do");
	cr_assert_str_eq(fk.log, "LOG_BASE;SET_FEATURES;ADDR 0 log;ADDR 1 log;");

	/* A ring restarted while logging comes back logged; so do the features. */
	log_reset();
	pthread_mutex_lock(&d->lock);
	virtio_mmio_pause(d);
	virtio_mmio_resume(d);
	pthread_mutex_unlock(&d->lock);
	cr_assert(strstr(fk.log, "ADDR 0 log;"), "%s", fk.log);
	cr_assert(strstr(fk.log, "ADDR 1 log;"), "%s", fk.log);

	log_reset();
	be->ops->log_stop(be);
	cr_assert_str_eq(fk.log, "SET_FEATURES;ADDR 0;ADDR 1;");
	cr_assert_eq(fk.features, GUEST_BITS, "LOG_ALL off again, the guest's bits kept");
	dirty_log_destroy(&log);
	log_reset();
	be->ops->log_stop(be);
	cr_assert_str_eq(fk.log, "", "a second stop sends nothing");
}

Test(vhost, log_started_before_driver_ok_reaches_the_first_start)
{
	struct virtio_backend *be;
	struct dirty_log log;

	cr_assert_eq(create(vhost_net_offer), 0);
	be = &vn->dev.be;
	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	log_reset();
	cr_assert_eq(be->ops->log_start(be, &log), 0);
	cr_assert_str_eq(fk.log, "LOG_BASE;", "no features were sent yet, no ring runs");
	log_reset();
	drv_start(d, BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_RING_F_EVENT_IDX));
	cr_assert(strstr(fk.log, "SET_FEATURES;MEM_TABLE 1;"), "%s", fk.log);
	cr_assert(strstr(fk.log, "ADDR 0 log;") && strstr(fk.log, "ADDR 1 log;"), "%s", fk.log);
	cr_assert_eq(fk.features, GUEST_BITS | BIT(VHOST_F_LOG_ALL));
	be->ops->log_stop(be);
	dirty_log_destroy(&log);
}

Test(vhost, log_start_is_refused_without_log_all_or_with_a_short_log)
{
	struct virtio_backend *be;
	struct dirty_log small, log;

	cr_assert_eq(create(vhost_net_offer & ~BIT(VHOST_F_LOG_ALL)), 0);
	be = &vn->dev.be;
	drv_start(d, 0);
	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	log_reset();
	cr_assert_eq(be->ops->log_start(be, &log), -EOPNOTSUPP);
	cr_assert_str_eq(fk.log, "", "nothing sent");
	teardown();
	setup();

	cr_assert_eq(create(vhost_net_offer), 0);
	be = &vn->dev.be;
	drv_start(d, 0);
	cr_assert_eq(dirty_log_init(&small, FAKE_RAM_SIZE / 2), 0);
	log_reset();
	cr_assert_eq(be->ops->log_start(be, &small), -EINVAL, "the kernel would write past it");
	cr_assert_str_eq(fk.log, "");
	cr_assert_eq(be->ops->log_start(be, &log), 0);
	cr_assert_eq(be->ops->log_start(be, &small), -EBUSY, "one log at a time");
	be->ops->log_stop(be);
	dirty_log_destroy(&small);
	dirty_log_destroy(&log);
}

Test(vhost, kernel_vhost_is_migratable_and_has_no_state_of_its_own)
{
	struct virtio_backend *be;
	struct virtio_state_sink sink = { .max = 4096 };
	struct virtio_state_source src = { 0 };
	char why[64] = "";

	cr_assert_eq(create(vhost_net_offer), 0);
	be = &vn->dev.be;
	cr_assert_eq(be->ops->migratable(be, why, sizeof(why)), 0);
	cr_assert_not(be->ops->has_state(be));
	cr_assert_eq(be->ops->save_state(be, &sink), -EOPNOTSUPP);
	cr_assert_eq(be->ops->load_state(be, &src), -EOPNOTSUPP);
}

/* ---- kernel.c's ioctls for logging, through a fake ioctl ---- */

static struct {
	uint64_t log_base, features;
	struct vhost_vring_addr addr[2];
	unsigned int nlog_base;
} ki;

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	switch (req) {
	case VHOST_GET_FEATURES:
		*(uint64_t *)arg = vhost_net_offer;
		return 0;
	case VHOST_SET_FEATURES:
		ki.features = *(uint64_t *)arg;
		return 0;
	case VHOST_SET_LOG_BASE:
		ki.log_base = *(uint64_t *)arg;
		ki.nlog_base++;
		return 0;
	case VHOST_SET_VRING_ADDR: {
		const struct vhost_vring_addr *a = arg;

		if (a->index > 1)
			return -EINVAL;
		ki.addr[a->index] = *a;
		return 0;
	}
	case VHOST_GET_VRING_BASE:
		((struct vhost_vring_state *)arg)->num = 0;
		return 0;
	default:
		return 0;
	}
}

static void kdev_destroy(struct vhost_dev *dev)
{
}

Test(vhost, kernel_log_ioctls_carry_the_log_address_log_all_and_f_log)
{
	static const struct vhost_device_ops dops = { .name = "vhost-net", .destroy = kdev_destroy };
	struct virtio_call call = { .irq_fd = 3 };
	struct vhost_dev dev;
	struct dirty_log log;
	struct virtq_state st = { .size = 64, .desc_gpa = 0x10000, .avail_gpa = 0x10400,
				  .used_gpa = 0x10800, .ready = true };
	void *conn;

	cr_assert_eq(vhost_kernel_wrap(-1, fake_ioctl, &conn), 0);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_kernel_ops, conn, &dops, fake_host.mem, "k", 2), 0);
	cr_assert_eq(dev.be.ops->set_features(&dev.be, BIT(VIRTIO_F_VERSION_1)), 0);
	cr_assert_eq(dev.be.ops->start(&dev.be, 0, &st, 4, &call), 0);
	cr_assert_eq(ki.addr[0].flags, 0, "no logging yet");
	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	cr_assert_eq(dev.be.ops->log_start(&dev.be, &log), 0);
	cr_assert_eq(ki.nlog_base, 1);
	cr_assert_eq(ki.log_base, (uint64_t)(uintptr_t)log.words, "the log's address in the VMM");
	cr_assert_eq(ki.features, BIT(VIRTIO_F_VERSION_1) | BIT(VHOST_F_LOG_ALL));
	cr_assert_eq(ki.addr[0].flags, 1u << VHOST_VRING_F_LOG);
	cr_assert_eq(ki.addr[0].log_guest_addr, 0x10800, "the used ring's guest-physical address");
	cr_assert_eq(ki.addr[0].used_user_addr, (uint64_t)(uintptr_t)gpa_ptr(0x10800));
	cr_assert_eq(ki.addr[1].flags, 0, "ring 1 never started: nothing sent for it");
	dev.be.ops->log_stop(&dev.be);
	cr_assert_eq(ki.features, BIT(VIRTIO_F_VERSION_1));
	cr_assert_eq(ki.addr[0].flags, 0);
	dirty_log_destroy(&log);
	vhost_dev_fini(&dev);
}

/* ---- vhost-vsock: the receive buffers its kernel does not log ---- */

static struct virtq_state stopped_at;
static int stopped_calls;

static void rec_queue_stopped(struct vhost_dev *dev, unsigned int q, const struct virtq_state *s)
{
	stopped_calls++;
	stopped_at = *s;
}

Test(vhost, a_ring_stopped_while_logging_is_reported_to_the_device_kind)
{
	static const struct vhost_device_ops dops = { .name = "fake-vsock", .destroy = kdev_destroy,
						      .queue_stopped = rec_queue_stopped };
	struct virtio_call call = { .irq_fd = 3 };
	struct virtq_state st = { .size = 64, .desc_gpa = 0x10000, .avail_gpa = 0x10400,
				  .used_gpa = 0x10800, .ready = true };
	struct vhost_dev dev;
	struct dirty_log log;
	uint16_t used = htole16(9);

	fk.offer = vhost_net_offer;
	cr_assert_eq(vhost_dev_init(&dev, &fk_ops, NULL, &dops, fake_host.mem, "v", 2), 0);
	cr_assert_eq(dev.be.ops->set_features(&dev.be, BIT(VIRTIO_F_VERSION_1)), 0);
	cr_assert_eq(dev.be.ops->start(&dev.be, 0, &st, 4, &call), 0);
	dev.be.ops->stop(&dev.be, 0, &st);
	cr_assert_eq(stopped_calls, 0, "not while no migration logs");
	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	cr_assert_eq(dev.be.ops->log_start(&dev.be, &log), 0);
	cr_assert_eq(dev.be.ops->start(&dev.be, 0, &st, 4, &call), 0);
	memcpy(gpa_ptr(0x10802), &used, 2);
	dev.be.ops->stop(&dev.be, 0, &st);
	cr_assert_eq(stopped_calls, 1);
	cr_assert_eq(stopped_at.used_idx, 9, "where the kernel stopped, read from the used ring");
	cr_assert_eq(stopped_at.size, 64);
	cr_assert_eq(stopped_at.desc_gpa, 0x10000);
	cr_assert_eq(stopped_at.used_gpa, 0x10800);
	dev.be.ops->log_stop(&dev.be);
	dirty_log_destroy(&log);
	vhost_dev_fini(&dev);
}

static void put_desc(uint64_t table, unsigned int i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct vring_desc v = { htole64(addr), htole32(len), htole16(flags), htole16(next) };

	memcpy(gpa_ptr(table + 16ULL * i), &v, sizeof(v));
}

static void put_used(uint64_t used, unsigned int slot, uint32_t id, uint32_t len)
{
	struct vring_used_elem e = { htole32(id), htole32(len) };

	memcpy(gpa_ptr(used + 4 + 8ULL * slot), &e, sizeof(e));
}

static bool dirty(struct dirty_log *l, uint64_t a)
{
	uint64_t p = a >> DIRTY_PAGE_SHIFT;

	return l->words[p / 64] & (1ULL << (p % 64));
}

Test(vhost, vsock_receive_buffers_of_used_entries_are_marked_dirty)
{
	static const struct vhost_device_ops dops = { .name = "v", .destroy = kdev_destroy };
	const uint64_t desc = 0x10000, used = 0x18000, itab = 0x20000;
	struct virtq_state s = { .size = 8, .desc_gpa = desc, .used_gpa = used, .used_idx = 6 };
	struct vhost_dev dev;
	struct dirty_log log;

	fk.offer = vhost_net_offer;
	cr_assert_eq(vhost_dev_init(&dev, &fk_ops, NULL, &dops, fake_host.mem, "v", 2), 0);
	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	/* Chain 2: two writable buffers; 3000 bytes written: 100 in the first, 2900 in the second. */
	put_desc(desc, 2, 0x100000, 100, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 5);
	put_desc(desc, 5, 0x200000, 4096, VRING_DESC_F_WRITE, 0);
	put_used(used, 0, 2, 3000);
	/* Chain 4: an indirect table of two; 5000 bytes: 64, then 4936 across two pages. */
	put_desc(desc, 4, itab, 32, VRING_DESC_F_INDIRECT, 0);
	put_desc(itab, 0, 0x300000, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	put_desc(itab, 1, 0x301000, 8192, VRING_DESC_F_WRITE, 0);
	put_used(used, 1, 4, 5000);
	/* Chain 6 loops onto itself: bounded by the ring size. */
	put_desc(desc, 6, 0x340000, 10, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 6);
	put_used(used, 2, 6, 100);
	/* A head past the ring: ignored. */
	put_used(used, 3, 200, 100);
	/* Chain 0: a readable buffer, then a writable one: only the latter. */
	put_desc(desc, 0, 0x360000, 16, VRING_DESC_F_NEXT, 1);
	put_desc(desc, 1, 0x361000, 16, VRING_DESC_F_WRITE, 0);
	put_used(used, 4, 0, 16);
	/* Chain 7 with nothing written. */
	put_desc(desc, 7, 0x370000, 4096, VRING_DESC_F_WRITE, 0);
	put_used(used, 5, 7, 0);

	vhost_vsock_log_rx(&dev, &s);
	cr_assert_not(dirty(&log, 0x100000), "no log given yet: nothing marked");
	dev.log = &log;
	vhost_vsock_log_rx(&dev, &s);
	dev.log = NULL;
	cr_assert(dirty(&log, 0x100000));
	cr_assert(dirty(&log, 0x200000));
	cr_assert(dirty(&log, 0x300000));
	cr_assert(dirty(&log, 0x301000));
	cr_assert(dirty(&log, 0x302000), "4936 bytes from 0x301000 reach the next page");
	cr_assert_not(dirty(&log, 0x303000));
	cr_assert(dirty(&log, 0x340000));
	cr_assert_not(dirty(&log, 0x360000), "a readable buffer is not written");
	cr_assert(dirty(&log, 0x361000));
	cr_assert_not(dirty(&log, 0x370000), "nothing written there");
	cr_assert_not(dirty(&log, desc), "the descriptors are only read");
	{
		uint64_t n = 0;

		for (size_t i = 0; i < log.size / 8; i++)
			n += (uint64_t)__builtin_popcountll(log.words[i]);
		cr_assert_eq(n, 7, "exactly the pages written");
	}
	dirty_log_destroy(&log);
	vhost_dev_fini(&dev);
}
