// SPDX-License-Identifier: GPL-2.0-only
/*
 * The virtio-mmio transport's register semantics, against a test device in
 * the fake guest of fake_driver.c, whose host records what it is asked, and
 * whose back-end only records what the transport hands it (the seam's own
 * tests are in test_virtio_backend.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fake_driver.h"
#include "virtio/mmio.h"

#define BASE		0xd0000000ULL
#define GSI		5
#define TEST_DEVICE_ID	42
#define DEV_FEATURE	3

/* What the transport asked of the host's KVM hooks. */
struct host_calls {
	int ioeventfd_calls, ioeventfd_fail;
	uint64_t last_addr;
	uint32_t datamatch[VIRTIO_MMIO_MAX_QUEUES];
	int irqfd_gsi;
};

struct test_dev {
	struct virtio_mmio_dev vdev;
	struct virtio_backend be;
	uint8_t config[8];
	int resets, activations, config_writes;
	int activate_ret;
	/* What the back-end was handed. */
	int starts[VIRTIO_MMIO_MAX_QUEUES], stops[VIRTIO_MMIO_MAX_QUEUES];
	int kick_fd[VIRTIO_MMIO_MAX_QUEUES];
	struct virtio_call *call[VIRTIO_MMIO_MAX_QUEUES];
};

static struct host_calls fh;
static struct test_dev dev;

static int fake_ioeventfd(struct virtio_host *h, uint64_t addr, uint32_t datamatch, int fd, bool assign)
{
	if (!assign)
		return 0;
	if (fh.ioeventfd_fail)
		return -ENOSYS;
	fh.last_addr = addr;
	fh.datamatch[fh.ioeventfd_calls++] = datamatch;
	return 0;
}

static int fake_irqfd(struct virtio_host *h, uint32_t gsi, int fd, bool assign)
{
	if (assign)
		fh.irqfd_gsi = (int)gsi;
	return 0;
}

static uint64_t t_features(struct virtio_backend *be)
{
	return ~0ULL;
}

static int t_start(struct virtio_backend *be, unsigned int q, const struct virtq_state *state,
		   int kick_fd, struct virtio_call *call)
{
	dev.starts[q]++;
	dev.kick_fd[q] = kick_fd;
	dev.call[q] = call;
	return 0;
}

static void t_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *state)
{
	dev.stops[q]++;
	dev.call[q] = NULL;
}

static const struct virtio_backend_ops test_backend_ops = {
	.name = "test",
	.features = t_features,
	.start = t_start,
	.stop = t_stop,
};

/* Kicks waiting on queue q's eventfd (reading clears them). */
static uint64_t kicks(unsigned int q)
{
	uint64_t v = 0;

	if (read(dev.vdev.q[q].kick_fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* What an in-process back-end does after pushing used buffers the driver wants to hear about. */
static void raise_used(unsigned int q)
{
	cr_assert_not_null(dev.call[q], "queue %u is not started", q);
	dev.call[q]->raise(dev.call[q]);
}

static void t_reset(struct virtio_mmio_dev *d)
{
	((struct test_dev *)d)->resets++;
}

static int t_activate(struct virtio_mmio_dev *d)
{
	struct test_dev *t = (struct test_dev *)d;

	t->activations++;
	return t->activate_ret;
}

static void t_config_write(struct virtio_mmio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	struct test_dev *t = (struct test_dev *)d;

	memcpy(t->config + off, data, len);
	t->config_writes++;
}

static const struct virtio_dev_ops test_ops = {
	.name = "virtio-test",
	.device_id = TEST_DEVICE_ID,
	.nqueues = 2,
	.queue_max_size = 64,
	.reset = t_reset,
	.activate = t_activate,
	.config_write = t_config_write,
};

/* The fake driver's register accesses, to the test device. */
static uint32_t rd(uint64_t off)
{
	return drv_rd(&dev.vdev, off);
}

static void wr(uint64_t off, uint32_t v)
{
	drv_wr(&dev.vdev, off, v);
}

static void setup(void)
{
	fake_driver_init(test_ops.queue_max_size);
	fake_host.ioeventfd = fake_ioeventfd;
	fake_host.irqfd = fake_irqfd;
	memset(&fh, 0, sizeof(fh));
	memset(&dev, 0, sizeof(dev));
	dev.be.ops = &test_backend_ops;
	memcpy(dev.config, "ABCDEFGH", 8);
}

static void init_dev(void)
{
	cr_assert_eq(virtio_mmio_init(&dev.vdev, &test_ops, &fake_host, "virtio-test0", BASE, GSI,
				      1ULL << DEV_FEATURE, dev.config, sizeof(dev.config), &dev.be),
		     0);
}

static void teardown(void)
{
	virtio_mmio_destroy(&dev.vdev);
	fake_driver_fini();
}

/* Drives the device to FEATURES_OK with VERSION_1 (+ EVENT_IDX). */
static void negotiate(void)
{
	drv_negotiate(&dev.vdev, 1ULL << DEV_FEATURE | 1ULL << VIRTIO_RING_F_EVENT_IDX |
		      1ULL << VIRTIO_F_VERSION_1);
}

static void setup_queue(unsigned int q, uint32_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	drv_queue_at(&dev.vdev, q, size, desc, avail, used);
}

static void go_live(void)
{
	negotiate();
	setup_queue(0, 64, 0x1000, 0x2000, 0x3000);
	setup_queue(1, 64, 0x4000, 0x5000, 0x6000);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

TestSuite(virtio_mmio, .init = setup, .fini = teardown);

Test(virtio_mmio, identity_registers)
{
	init_dev();
	cr_assert_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	cr_assert_eq(rd(VIRTIO_MMIO_VERSION), 2);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), TEST_DEVICE_ID);
	cr_assert_neq(rd(VIRTIO_MMIO_VENDOR_ID), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff, "no shared memory regions");
	cr_assert_eq(fh.irqfd_gsi, GSI);
}

Test(virtio_mmio, ioeventfd_per_queue_with_datamatch)
{
	init_dev();
	cr_assert_eq(fh.ioeventfd_calls, 2);
	cr_assert_eq(fh.last_addr, BASE + VIRTIO_MMIO_QUEUE_NOTIFY);
	cr_assert_eq(fh.datamatch[0], 0);
	cr_assert_eq(fh.datamatch[1], 1);
	cr_assert(dev.vdev.q[0].kick_bound && dev.vdev.q[1].kick_bound);
}

Test(virtio_mmio, device_features_include_transport_bits)
{
	init_dev();
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint32_t hi = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	uint32_t beyond = rd(VIRTIO_MMIO_DEVICE_FEATURES);

	cr_assert(lo & (1u << DEV_FEATURE));
	cr_assert(lo & (1u << VIRTIO_RING_F_EVENT_IDX));
	cr_assert(lo & (1u << VIRTIO_RING_F_INDIRECT_DESC));
	cr_assert(hi & (1u << (VIRTIO_F_VERSION_1 - 32)));
	cr_assert_eq(beyond, 0);
}

Test(virtio_mmio, features_ok_accepted_for_modern_driver)
{
	init_dev();
	negotiate();
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert(virtio_has_feature(&dev.vdev, VIRTIO_F_VERSION_1));
	cr_assert(virtio_has_feature(&dev.vdev, DEV_FEATURE));
	cr_assert(dev.vdev.queues[0].event_idx, "EVENT_IDX reaches the queues");
	cr_assert_not(dev.vdev.queues[0].indirect, "INDIRECT_DESC was not accepted");
}

Test(virtio_mmio, features_ok_refused_for_legacy_driver)
{
	init_dev();
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << DEV_FEATURE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
}

Test(virtio_mmio, features_ok_refused_for_unoffered_bits)
{
	init_dev();
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << 7);	/* never offered */
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
}

Test(virtio_mmio, driver_features_frozen_after_features_ok)
{
	init_dev();
	negotiate();
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 0);
	cr_assert(virtio_has_feature(&dev.vdev, DEV_FEATURE));
}

Test(virtio_mmio, queue_setup_and_ready)
{
	init_dev();
	negotiate();
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
	wr(VIRTIO_MMIO_QUEUE_SEL, 2);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "queues beyond nqueues do not exist");
	setup_queue(0, 32, 0x1000, 0x2000, 0x3000);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	cr_assert_eq(dev.vdev.queues[0].size, 32);
	cr_assert_eq(dev.vdev.queues[0].desc_gpa, 0x1000);
	cr_assert_eq(dev.vdev.queues[0].avail_gpa, 0x2000);
	cr_assert_eq(dev.vdev.queues[0].used_gpa, 0x3000);
	/* Address registers are frozen while the queue is ready. */
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x8000);
	wr(VIRTIO_MMIO_QUEUE_NUM, 16);
	cr_assert_eq(dev.vdev.queues[0].desc_gpa, 0x1000);
	cr_assert_eq(dev.vdev.queues[0].size, 32);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
}

Test(virtio_mmio, queue_ready_with_bad_ring_needs_reset)
{
	init_dev();
	negotiate();
	setup_queue(0, 64, FAKE_RAM_SIZE + 0x1000, 0x2000, 0x3000);	/* outside guest RAM */
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_mmio, queue_size_above_max_is_refused)
{
	init_dev();
	negotiate();
	setup_queue(1, 128, 0x1000, 0x2000, 0x3000);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_mmio, queue_ready_before_features_ok_needs_reset)
{
	init_dev();
	setup_queue(0, 64, 0x1000, 0x2000, 0x3000);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_mmio, driver_ok_activates)
{
	init_dev();
	go_live();
	cr_assert_eq(dev.activations, 1);
	cr_assert(virtio_mmio_is_active(&dev.vdev));
}

Test(virtio_mmio, driver_ok_without_features_ok_needs_reset)
{
	init_dev();
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_not(virtio_mmio_is_active(&dev.vdev));
	cr_assert_eq(dev.activations, 0);
}

Test(virtio_mmio, failed_activation_needs_reset)
{
	init_dev();
	dev.activate_ret = -EIO;
	go_live();
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_not(virtio_mmio_is_active(&dev.vdev));
}

Test(virtio_mmio, needs_reset_is_sticky_until_reset)
{
	init_dev();
	go_live();
	virtio_mmio_set_needs_reset(&dev.vdev, "test");
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG, "config interrupt sent");
	wr(VIRTIO_MMIO_STATUS, rd(VIRTIO_MMIO_STATUS) & ~VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, "the driver cannot clear it");
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
}

Test(virtio_mmio, reset_clears_state)
{
	init_dev();
	go_live();
	virtio_mmio_signal_config(&dev.vdev);
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert_eq(dev.vdev.driver_features, 0);
	cr_assert_eq(dev.resets, 1);
}

Test(virtio_mmio, mmio_queue_notify_lands_on_the_kick_eventfd)
{
	init_dev();
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	cr_assert_eq(dev.starts[1], 0, "no back-end runs the queue before DRIVER_OK");
	go_live();
	cr_assert_eq(kicks(1), 1, "a kick before DRIVER_OK waits in the eventfd");
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 7);	/* no such queue: ignored */
	cr_assert_eq(kicks(1), 2, "one path: the same eventfd as KVM's ioeventfd");
	cr_assert_eq(kicks(0), 0);
	cr_assert_eq(dev.vdev.mmio_notifies, 4);
}

Test(virtio_mmio, back_end_gets_each_ready_queue_at_driver_ok)
{
	init_dev();
	negotiate();
	setup_queue(0, 64, 0x1000, 0x2000, 0x3000);
	cr_assert_eq(dev.starts[0], 0, "not before DRIVER_OK");
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert_eq(dev.starts[0], 1);
	cr_assert_eq(dev.starts[1], 0, "queue 1 is not ready");
	cr_assert_eq(dev.kick_fd[0], dev.vdev.q[0].kick_fd, "the queue's ioeventfd is the kick fd");
	cr_assert_eq(dev.call[0]->irq_fd, -1, "the irqfd only for a back-end that signals it itself");
	/* A queue enabled after DRIVER_OK starts then. */
	setup_queue(1, 64, 0x4000, 0x5000, 0x6000);
	cr_assert_eq(dev.starts[1], 1);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	cr_assert_eq(dev.stops[1], 1, "disabling a queue takes it back");
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(dev.stops[0], 1, "a reset takes every started queue back");
	cr_assert_eq(dev.stops[1], 1);
}

Test(virtio_mmio, needs_reset_stops_the_queues)
{
	init_dev();
	go_live();
	virtio_mmio_set_needs_reset(&dev.vdev, "test");
	cr_assert_eq(dev.stops[0], 1);
	cr_assert_eq(dev.stops[1], 1);
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(dev.stops[0], 1, "stopped once");
}

Test(virtio_mmio, ioeventfd_failure_falls_back_to_mmio)
{
	fh.ioeventfd_fail = 1;
	init_dev();
	cr_assert_not(dev.vdev.q[0].kick_bound);
	go_live();
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert_eq(kicks(0), 1);
}

/* How many edges the irqfd got since the last call (0 when none). */
static uint64_t irq_edges(void)
{
	uint64_t v = 0;

	if (read(dev.vdev.irq_fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

Test(virtio_mmio, interrupt_status_and_ack)
{
	init_dev();
	go_live();
	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(irq_edges(), 1, "the irqfd was signalled once");
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

Test(virtio_mmio, causes_before_ack_share_one_interrupt)
{
	init_dev();
	go_live();
	virtio_mmio_signal_config(&dev.vdev);
	raise_used(0);
	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_eq(irq_edges(), 1, "one edge while the driver has not acknowledged");
	cr_assert_eq(dev.vdev.interrupts, 1);
	cr_assert_eq(dev.vdev.interrupts_merged, 2);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG | VIRTIO_MMIO_INT_VRING,
		     "both causes are in InterruptStatus");
}

Test(virtio_mmio, cause_after_ack_raises_again)
{
	init_dev();
	go_live();
	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_eq(irq_edges(), 1);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, rd(VIRTIO_MMIO_INTERRUPT_STATUS));
	cr_assert_eq(irq_edges(), 0, "a full acknowledgement raises nothing");
	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_eq(irq_edges(), 1, "a new cause after the acknowledgement is a new interrupt");
	cr_assert_eq(dev.vdev.interrupts_merged, 0);
}

Test(virtio_mmio, partial_ack_raises_again_for_the_rest)
{
	init_dev();
	go_live();
	raise_used(0);
	cr_assert_eq(irq_edges(), 1);
	/* The driver read VRING only; a config change arrives before its acknowledgement. */
	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_eq(irq_edges(), 0);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(irq_edges(), 1, "the unacknowledged config change raises the interrupt again");
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_eq(irq_edges(), 0);
}

Test(virtio_mmio, ack_of_clear_bits_raises_nothing)
{
	init_dev();
	go_live();
	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_eq(irq_edges(), 1);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(irq_edges(), 0, "acknowledging a bit that is not set changes nothing");
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
}

Test(virtio_mmio, reset_clears_a_pending_interrupt)
{
	init_dev();
	go_live();
	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_eq(irq_edges(), 1);
	wr(VIRTIO_MMIO_STATUS, 0);
	go_live();
	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_eq(irq_edges(), 1, "after a reset the next cause raises the interrupt");
}

Test(virtio_mmio, config_generation_changes)
{
	init_dev();
	uint32_t g = rd(VIRTIO_MMIO_CONFIG_GENERATION);

	virtio_mmio_signal_config(&dev.vdev);
	cr_assert_neq(rd(VIRTIO_MMIO_CONFIG_GENERATION), g);
}

Test(virtio_mmio, config_space_access)
{
	uint8_t b[8];
	uint16_t w = 0x1234;

	init_dev();
	virtio_mmio_io(&dev.vdev, VIRTIO_MMIO_CONFIG + 2, b, 2, false);
	cr_assert_eq(memcmp(b, "CD", 2), 0);
	memset(b, 0xaa, sizeof(b));
	virtio_mmio_io(&dev.vdev, VIRTIO_MMIO_CONFIG + 6, b, 4, false);	/* crosses the end */
	cr_assert_eq(b[0], 0);
	cr_assert_eq(b[3], 0);
	virtio_mmio_io(&dev.vdev, VIRTIO_MMIO_CONFIG + 0x80, b, 4, false);	/* far outside */
	cr_assert_eq(b[0], 0);
	virtio_mmio_io(&dev.vdev, VIRTIO_MMIO_CONFIG + 4, (uint8_t *)&w, 2, true);
	cr_assert_eq(dev.config_writes, 1);
	virtio_mmio_io(&dev.vdev, VIRTIO_MMIO_CONFIG + 7, (uint8_t *)&w, 2, true);	/* crosses */
	cr_assert_eq(dev.config_writes, 1);
}

Test(virtio_mmio, narrow_or_unaligned_register_access_ignored)
{
	uint8_t b[2] = { 0xff, 0xff };
	uint32_t v = 0;

	init_dev();
	virtio_mmio_io(&dev.vdev, VIRTIO_MMIO_MAGIC_VALUE, b, 2, false);
	cr_assert_eq(b[0], 0);
	virtio_mmio_io(&dev.vdev, VIRTIO_MMIO_STATUS + 1, (uint8_t *)&v, 4, false);
	cr_assert_eq(v, 0);
	v = VIRTIO_CONFIG_S_ACKNOWLEDGE;
	virtio_mmio_io(&dev.vdev, VIRTIO_MMIO_STATUS, (uint8_t *)&v, 2, true);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
}

Test(virtio_mmio, init_rejects_bad_ops)
{
	struct virtio_dev_ops bad = test_ops;

	bad.nqueues = 0;
	cr_assert_eq(virtio_mmio_init(&dev.vdev, &bad, &fake_host, "bad", BASE, GSI, 0, NULL, 0,
				      &dev.be), -EINVAL);
	bad.nqueues = VIRTIO_MMIO_MAX_QUEUES + 1;
	cr_assert_eq(virtio_mmio_init(&dev.vdev, &bad, &fake_host, "bad", BASE, GSI, 0, NULL, 0,
				      &dev.be), -EINVAL);
	cr_assert_eq(virtio_mmio_init(&dev.vdev, &test_ops, &fake_host, "bad", BASE, GSI, 0, NULL,
				      0, NULL), -EINVAL, "no back-end");
	memset(&dev.vdev, 0, sizeof(dev.vdev));
}
