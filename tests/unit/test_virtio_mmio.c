// SPDX-License-Identifier: GPL-2.0-only
/*
 * The virtio-mmio transport's register semantics, against a test device in
 * the fake guest of fake_driver.c, whose host records what it is asked, and
 * whose back-end only records what the transport hands it (the seam's own
 * tests are in test_virtio_backend.c).
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fake_driver.h"
#include "stderr_capture.h"
#include "virtio/mmio.h"
#include "vmm/base/util.h"

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
	struct virtq_state started_from[VIRTIO_MMIO_MAX_QUEUES];
	int set_features_calls, set_features_ret;
	uint64_t features_set;
	/* The model's migration state (ops->save/load/loaded). */
	uint32_t model_value;
	int saves, loads, loaded_calls, load_ret;
};

static struct host_calls fh;
static struct test_dev dev;
static struct test_dev dst;	/* a migration's destination */

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
	struct test_dev *t = container_of(be, struct test_dev, be);

	t->starts[q]++;
	t->kick_fd[q] = kick_fd;
	t->call[q] = call;
	t->started_from[q] = *state;
	return 0;
}

static void t_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *state)
{
	struct test_dev *t = container_of(be, struct test_dev, be);

	t->stops[q]++;
	t->call[q] = NULL;
}

static int t_set_features(struct virtio_backend *be, uint64_t features)
{
	struct test_dev *t = container_of(be, struct test_dev, be);

	t->set_features_calls++;
	t->features_set = features;
	return t->set_features_ret;
}

static const struct virtio_backend_ops test_backend_ops = {
	.name = "test",
	.features = t_features,
	.set_features = t_set_features,
	.start = t_start,
	.stop = t_stop,
};

/* The same back-end in the direct interrupt mode (it would write the irqfd itself). */
static const struct virtio_backend_ops test_direct_backend_ops = {
	.name = "test-direct",
	.signals_irqfd = true,
	.features = t_features,
	.set_features = t_set_features,
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
	memset(&dst, 0, sizeof(dst));
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
	virtio_mmio_destroy(&dst.vdev);
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

static void log_queues(void *d)
{
	virtio_mmio_log_queues(d);
}

Test(virtio_mmio, queue_positions_are_logged_on_request)
{
	const char *out;

	init_dev();
	go_live();
	/* Queue 0: the driver offered 5, 3 came back; it wants an interrupt at 4. */
	*(uint16_t *)gpa_ptr(0x2000 + 2) = htole16(5);
	*(uint16_t *)gpa_ptr(0x2000 + 4 + 2 * 64) = htole16(4);
	*(uint16_t *)gpa_ptr(0x3000 + 2) = htole16(3);
	*(uint16_t *)gpa_ptr(0x3000 + 4 + 8 * 64) = htole16(3);
	out = capture_stderr(log_queues, &dev.vdev);
	cr_assert(strstr(out, "virtio-test0: queue 0: offered 5, used 3 (2 not answered), driver "
			 "wants an interrupt at 4, kicks wanted at 3; served\r\n"), "%s", out);
	cr_assert(strstr(out, "virtio-test0: queue 1: offered 0, used 0 (0 not answered)"), "%s", out);
	cr_assert(strstr(out, "virtio-test0: status 0xf, InterruptStatus 0x0, 0 interrupts sent "
			 "by the transport (0 of them again, lost), transport interrupts\r\n"),
		  "%s", out);
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

/* ---- The interrupt watchdog: a lost interrupt is sent again ---- */

/* One look by the watchdog, as its timer would take it (d->lock held). */
static bool watch(void)
{
	bool sent;

	pthread_mutex_lock(&dev.vdev.lock);
	sent = virtio_mmio_irq_watch(&dev.vdev);
	pthread_mutex_unlock(&dev.vdev.lock);
	return sent;
}

Test(virtio_mmio, unread_interrupt_is_sent_again)
{
	init_dev();
	go_live();
	raise_used(0);
	cr_assert_eq(irq_edges(), 1);
	cr_assert(dev.vdev.irq_watch_armed, "an edge arms the watchdog");
	cr_assert(watch(), "InterruptStatus was not read since the edge: it was lost");
	cr_assert_eq(irq_edges(), 1, "the edge is sent again");
	cr_assert_eq(dev.vdev.interrupts_resent, 1);
	cr_assert_eq(dev.vdev.interrupts, 2, "a resent edge is counted as one sent");
	cr_assert(dev.vdev.irq_watch_armed, "still owed: it looks again");
	cr_assert(watch(), "and again, while the driver does not read");
	cr_assert_eq(irq_edges(), 1);
}

Test(virtio_mmio, interrupt_the_driver_read_is_not_sent_again)
{
	init_dev();
	go_live();
	raise_used(0);
	cr_assert_eq(irq_edges(), 1);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	cr_assert_not(watch(), "the driver took it (it is in its handler)");
	cr_assert_eq(irq_edges(), 0);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	cr_assert_not(watch());
	cr_assert_eq(irq_edges(), 0);
	cr_assert_not(dev.vdev.irq_watch_armed, "nothing owed: the timer stays off");
	cr_assert_eq(dev.vdev.interrupts_resent, 0);
}

Test(virtio_mmio, no_resend_while_the_vm_is_paused)
{
	init_dev();
	go_live();
	raise_used(0);
	cr_assert_eq(irq_edges(), 1);
	pthread_mutex_lock(&dev.vdev.lock);
	virtio_mmio_pause(&dev.vdev);
	pthread_mutex_unlock(&dev.vdev.lock);
	cr_assert_not(watch(), "the vCPUs do not run: nothing can read it");
	cr_assert_not(dev.vdev.irq_watch_armed);
	pthread_mutex_lock(&dev.vdev.lock);
	virtio_mmio_resume(&dev.vdev);
	pthread_mutex_unlock(&dev.vdev.lock);
	cr_assert(dev.vdev.irq_watch_armed, "the resume looks again at what is pending");
	cr_assert(watch());
	cr_assert_eq(irq_edges(), 1);
}

Test(virtio_mmio, the_timer_resends_a_lost_interrupt)
{
	init_dev();
	go_live();
	raise_used(0);
	cr_assert_eq(irq_edges(), 1);
	/* The event loop's own run of the timer (fake_host has a loop). */
	for (int waited = 0; waited < 4 * VIRTIO_MMIO_RESEND_MS && !dev.vdev.interrupts_resent;
	     waited += 50)
		drv_run_loop(50);
	cr_assert_eq(dev.vdev.interrupts_resent, 1, "resent within a few watchdog periods");
	cr_assert_eq(irq_edges(), 1);
}

Test(virtio_mmio, dropped_interrupt_is_recovered)
{
	cr_assert_eq(setenv("VMM_DROP_INTERRUPT", "virtio-test0:2", 1), 0);
	cr_assert_eq(drop_interrupt_for("virtio-test0"), 2);
	cr_assert_eq(drop_interrupt_for("virtio-test"), 0, "names must match whole");
	cr_assert_eq(drop_interrupt_for("virtio-test01"), 0);
	init_dev();
	go_live();
	raise_used(0);
	cr_assert_eq(irq_edges(), 1);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, rd(VIRTIO_MMIO_INTERRUPT_STATUS));
	raise_used(0);
	cr_assert_eq(irq_edges(), 0, "the second edge is dropped (VMM_DROP_INTERRUPT)");
	cr_assert_eq(dev.vdev.interrupts, 2);
	cr_assert_not(watch(), "the driver read InterruptStatus since the watchdog was armed");
	cr_assert(watch(), "but not since the look before: a whole period without a read");
	cr_assert_eq(irq_edges(), 1, "the watchdog sends it");
	unsetenv("VMM_DROP_INTERRUPT");
}

/* go_live()'s queue 0 (64 entries): the driver's used_event and the device's used index. */
#define Q0_USED_EVENT	(0x2000 + 4 + 64 * 2)
#define Q0_USED_IDX	(0x3000 + 2)

static void ring16(uint64_t gpa, uint16_t v)
{
	uint16_t le = htole16(v);

	memcpy(gpa_ptr(gpa), &le, sizeof(le));
}

Test(virtio_mmio, direct_mode_resends_for_a_ring_left_owed)
{
	dev.be.ops = &test_direct_backend_ops;
	init_dev();
	go_live();
	cr_assert(dev.vdev.irq_watch_armed, "a running device in direct mode is watched");
	/* The back-end answered 5 requests; the driver asked to hear at 2 and never did. */
	ring16(Q0_USED_IDX, 5);
	ring16(Q0_USED_EVENT, 2);
	cr_assert_not(watch(), "a first look only notes where the ring stands");
	cr_assert_eq(irq_edges(), 0);
	cr_assert(watch(), "nothing moved for a whole period: the interrupt was lost");
	cr_assert_eq(irq_edges(), 1);
	cr_assert_eq(dev.vdev.interrupts_resent, 1);
	/* The driver took it: used_event follows the used index. */
	ring16(Q0_USED_EVENT, 5);
	cr_assert_not(watch());
	cr_assert_not(watch(), "used == used_event: nothing owed");
	cr_assert(dev.vdev.irq_watch_armed, "it keeps watching while the device runs");
}

Test(virtio_mmio, direct_mode_leaves_a_moving_ring_alone)
{
	dev.be.ops = &test_direct_backend_ops;
	init_dev();
	go_live();
	ring16(Q0_USED_EVENT, 2);
	for (uint16_t used = 5; used < 10; used++) {
		ring16(Q0_USED_IDX, used);	/* the back-end keeps answering */
		cr_assert_not(watch());
	}
	cr_assert_eq(irq_edges(), 0);
	wr(VIRTIO_MMIO_STATUS, 0);	/* reset: not running, not watched */
	cr_assert_not(watch());
	cr_assert_not(dev.vdev.irq_watch_armed);
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

/* ---- migration: virtio_mmio_save / virtio_mmio_load ---- */

#define BASE2		0xd0001000ULL
#define MODEL_VERSION	7

/* The test model's state: a version and one value; load_ret makes its load refuse. */
static int m_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	struct test_dev *t = (struct test_dev *)d;

	t->saves++;
	sbuf_put_u32(out, MODEL_VERSION);
	sbuf_put_u32(out, t->model_value);
	return 0;
}

/* What the model saw while it loaded. */
static uint8_t seen_config[8], seen_before[8];
static bool seen_before_set;

static int m_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	struct test_dev *t = (struct test_dev *)d;
	uint32_t v;
	int ret = virtio_mmio_load_version(d, in, MODEL_VERSION);

	t->loads++;
	if (ret)
		return ret;
	v = sbuf_get_u32(in);
	ret = sbuf_finish(in);
	if (ret)
		return ret;
	memcpy(seen_config, d->config, sizeof(seen_config));
	seen_before_set = d->config_before_load != NULL;
	if (seen_before_set)
		memcpy(seen_before, d->config_before_load, sizeof(seen_before));
	if (t->load_ret)
		return t->load_ret;
	t->model_value = v;
	return 0;
}

static void m_loaded(struct virtio_mmio_dev *d)
{
	((struct test_dev *)d)->loaded_calls++;
}

static const struct virtio_dev_ops mig_ops = {
	.name = "virtio-test",
	.device_id = TEST_DEVICE_ID,
	.nqueues = 2,
	.queue_max_size = 64,
	.reset = t_reset,
	.activate = t_activate,
	.config_write = t_config_write,
	.save = m_save,
	.load = m_load,
	.loaded = m_loaded,
};

static void init_mig(struct test_dev *t, const struct virtio_dev_ops *ops, uint64_t base,
		     const struct virtio_backend_ops *be_ops, uint32_t config_size)
{
	t->be.ops = be_ops;
	memcpy(t->config, "ABCDEFGH", 8);
	cr_assert_eq(virtio_mmio_init(&t->vdev, ops, &fake_host, t == &dst ? "dst" : "src", base,
				      GSI, 1ULL << DEV_FEATURE, t->config, config_size, &t->be), 0);
}

/* Saves d (paused or not live) into a new writer. */
static void save(struct test_dev *t, struct sbuf *w)
{
	sbuf_init_writer(w);
	cr_assert_eq(virtio_mmio_save(&t->vdev, w), 0);
}

static int load(struct test_dev *t, const void *data, size_t len)
{
	struct sbuf r;

	sbuf_init_reader(&r, data, len);
	return virtio_mmio_load(&t->vdev, &r);
}

/* The register window of d as the driver reads it now, at the current selectors. */
static void read_window(struct virtio_mmio_dev *d, uint32_t *regs, uint8_t *config)
{
	for (uint64_t off = 0; off < VIRTIO_MMIO_CONFIG; off += 4)
		regs[off / 4] = drv_rd(d, off);
	for (uint32_t i = 0; i < VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG; i++)
		virtio_mmio_io(d, VIRTIO_MMIO_CONFIG + i, &config[i], 1, false);
}

/*
 * Every register of a and b reads the same: first at the selectors as they are,
 * then for every queue selection and both feature words (the same writes to both).
 */
static void expect_same_registers(struct virtio_mmio_dev *a, struct virtio_mmio_dev *b)
{
	static uint32_t ra[VIRTIO_MMIO_CONFIG / 4], rb[VIRTIO_MMIO_CONFIG / 4];
	static uint8_t ca[VIRTIO_MMIO_WINDOW], cb[VIRTIO_MMIO_WINDOW];

	read_window(a, ra, ca);
	read_window(b, rb, cb);
	for (unsigned int i = 0; i < VIRTIO_MMIO_CONFIG / 4; i++)
		cr_assert_eq(rb[i], ra[i], "register %#x reads %#x, want %#x", i * 4, rb[i], ra[i]);
	cr_assert_arr_eq(cb, ca, VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG, "config space");
	for (uint32_t sel = 0; sel < a->ops->nqueues + 1; sel++) {
		drv_wr(a, VIRTIO_MMIO_QUEUE_SEL, sel);
		drv_wr(b, VIRTIO_MMIO_QUEUE_SEL, sel);
		drv_wr(a, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
		drv_wr(b, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
		read_window(a, ra, ca);
		read_window(b, rb, cb);
		for (unsigned int i = 0; i < VIRTIO_MMIO_CONFIG / 4; i++)
			cr_assert_eq(rb[i], ra[i], "queue %u: register %#x reads %#x, want %#x", sel,
				     i * 4, rb[i], ra[i]);
	}
	/* The queue registers the driver cannot read back: the states behind them. */
	for (unsigned int q = 0; q < a->ops->nqueues; q++)
		cr_assert_arr_eq(&b->queues[q], &a->queues[q], sizeof(a->queues[q]), "queue %u", q);
}

/* Kicks waiting on t's queue q (reading clears them). */
static uint64_t kicks_of(struct test_dev *t, unsigned int q)
{
	uint64_t v = 0;

	if (read(t->vdev.q[q].kick_fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static uint64_t edges_of(struct test_dev *t)
{
	uint64_t v = 0;

	if (read(t->vdev.irq_fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* The source mid-stream: live, selectors moved, a config write, causes pending, queues advanced. */
static void busy_source(const struct virtio_backend_ops *be_ops)
{
	init_mig(&dev, &mig_ops, BASE, be_ops, sizeof(dev.config));
	go_live();
	wr(VIRTIO_MMIO_CONFIG + 2, 0x7a7a7a7a);		/* the driver wrote config space */
	virtio_mmio_signal_config(&dev.vdev);		/* generation 1, CONFIG pending */
	raise_used(0);					/* VRING pending too */
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	dev.model_value = 0x1234;
	virtio_mmio_pause(&dev.vdev);
	/* How far the back-end got before the pause (a real one writes these on stop). */
	dev.vdev.queues[0].last_avail_idx = 7;
	dev.vdev.queues[0].used_idx = 5;
	dev.vdev.queues[0].signalled_used = 4;
	dev.vdev.queues[0].signalled_used_valid = true;
	dev.vdev.queues[1].last_avail_idx = 0xfffe;
	dev.vdev.queues[1].used_idx = 0xfffd;
}

Test(virtio_mmio, save_refused_while_the_queues_run)
{
	struct sbuf w;

	init_mig(&dev, &mig_ops, BASE, &test_backend_ops, sizeof(dev.config));
	go_live();
	sbuf_init_writer(&w);
	cr_assert_eq(virtio_mmio_save(&dev.vdev, &w), -EBUSY);
	virtio_mmio_pause(&dev.vdev);
	cr_assert_eq(virtio_mmio_save(&dev.vdev, &w), 0);
	cr_assert_eq(dev.saves, 1);
	sbuf_free(&w);
}

Test(virtio_mmio, save_load_round_trip)
{
	struct sbuf w, w2;

	busy_source(&test_backend_ops);
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	cr_assert_eq(dst.model_value, 0x1234, "the model's state");
	cr_assert(seen_before_set, "the model sees the config space as created here");
	cr_assert_arr_eq(seen_before, "ABCDEFGH", 8);
	cr_assert_arr_eq(seen_config, dev.config, 8, "and the source's, in d->config");
	cr_assert_eq(dst.set_features_calls, 1, "the back-end gets the driver's features");
	cr_assert_eq(dst.features_set, dev.vdev.driver_features);
	cr_assert_not(dst.vdev.running, "the destination stays paused");
	cr_assert_eq(dst.starts[0] + dst.starts[1], 0);
	cr_assert_eq(dst.loaded_calls, 0, "loaded runs at the resume");
	cr_assert_null(dst.vdev.config_before_load);

	/* A loaded device saves as its source (but for its model's counters). */
	save(&dst, &w2);
	cr_assert_eq(w2.len, w.len);
	cr_assert_arr_eq(w2.data, w.data, w.len);
	sbuf_free(&w2);

	expect_same_registers(&dev.vdev, &dst.vdev);

	/* The resume starts every queue from the loaded positions, kicked once, one edge. */
	edges_of(&dst);
	virtio_mmio_resume(&dst.vdev);
	cr_assert(dst.vdev.running);
	for (unsigned int q = 0; q < 2; q++) {
		cr_assert_eq(dst.starts[q], 1);
		cr_assert_arr_eq(&dst.started_from[q], &dev.vdev.queues[q], sizeof(struct virtq_state),
				 "queue %u starts where the source stopped", q);
		cr_assert_eq(kicks_of(&dst, q), 1, "queue %u is kicked once", q);
	}
	cr_assert_eq(edges_of(&dst), 1, "the causes the source left pending get an edge");
	cr_assert_eq(dst.loaded_calls, 1);
	cr_assert_eq(dst.set_features_calls, 2, "and once more at the start, as always");
	/* The driver acknowledges on the destination as it would have on the source. */
	drv_wr(&dst.vdev, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG | VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(drv_rd(&dst.vdev, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* Later pauses and resumes are plain ones. */
	virtio_mmio_pause(&dst.vdev);
	virtio_mmio_resume(&dst.vdev);
	cr_assert_eq(dst.loaded_calls, 1);
	cr_assert_eq(edges_of(&dst), 0);
	sbuf_free(&w);
}

Test(virtio_mmio, load_of_a_device_the_driver_never_started)
{
	struct sbuf w;

	init_mig(&dev, &mig_ops, BASE, &test_backend_ops, sizeof(dev.config));
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	cr_assert_eq(dst.set_features_calls, 0, "not live: the back-end has nothing to set");
	expect_same_registers(&dev.vdev, &dst.vdev);
	virtio_mmio_resume(&dst.vdev);
	cr_assert_eq(dst.starts[0] + dst.starts[1], 0);
	cr_assert_eq(edges_of(&dst), 0);
	cr_assert_eq(dst.loaded_calls, 1, "loaded runs, live or not");
	/* The driver can bring it up on the destination. */
	drv_negotiate(&dst.vdev, 1ULL << VIRTIO_F_VERSION_1);
	cr_assert(drv_rd(&dst.vdev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
	sbuf_free(&w);
}

Test(virtio_mmio, load_of_a_device_that_needs_a_reset)
{
	struct sbuf w;

	init_mig(&dev, &mig_ops, BASE, &test_backend_ops, sizeof(dev.config));
	go_live();
	virtio_mmio_set_needs_reset(&dev.vdev, "test");
	edges_of(&dev);
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	expect_same_registers(&dev.vdev, &dst.vdev);
	virtio_mmio_resume(&dst.vdev);
	cr_assert_not(dst.vdev.running, "a broken device's queues stay stopped");
	cr_assert_eq(edges_of(&dst), 1, "its unacknowledged config cause gets an edge");
	cr_assert(drv_rd(&dst.vdev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* A driver reset clears it as on the source. */
	drv_wr(&dst.vdev, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(drv_rd(&dst.vdev, VIRTIO_MMIO_STATUS), 0);
	sbuf_free(&w);
}

Test(virtio_mmio, direct_mode_source_into_a_level_mode_destination)
{
	struct sbuf w;

	init_mig(&dev, &mig_ops, BASE, &test_direct_backend_ops, sizeof(dev.config));
	go_live();
	virtio_mmio_pause(&dev.vdev);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING,
		     "direct mode: a live device reports a used buffer");
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_not(dst.vdev.irq_direct, "the mode is the destination's back-end's");
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	cr_assert_not(dst.vdev.irq_direct);
	cr_assert_eq(drv_rd(&dst.vdev, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING,
		     "the used buffers the source's back-end may have signalled are reported");
	virtio_mmio_resume(&dst.vdev);
	cr_assert_eq(edges_of(&dst), 1);
	cr_assert_eq(dst.call[0]->irq_fd, -1, "the level mode's back-end never gets the irqfd");
	drv_wr(&dst.vdev, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(drv_rd(&dst.vdev, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* The level mode works as ever afterwards. */
	dst.call[0]->raise(dst.call[0]);
	cr_assert_eq(edges_of(&dst), 1);
	sbuf_free(&w);
}

Test(virtio_mmio, level_mode_source_into_a_direct_mode_destination)
{
	struct sbuf w;

	init_mig(&dev, &mig_ops, BASE, &test_backend_ops, sizeof(dev.config));
	go_live();
	virtio_mmio_pause(&dev.vdev);
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_direct_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	cr_assert(dst.vdev.irq_direct);
	cr_assert_eq(drv_rd(&dst.vdev, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	virtio_mmio_resume(&dst.vdev);
	cr_assert_eq(dst.call[0]->irq_fd, dst.vdev.irq_fd, "its back-end signals the irqfd");
	cr_assert_eq(edges_of(&dst), 1, "one edge: the driver reaps what the back-end left");
	sbuf_free(&w);
}

/* dst's whole state as a save shows it, and its registers, to see a refused load changed nothing. */
struct dst_view {
	struct sbuf saved;
	struct virtio_mmio_dev regs;
	uint8_t config[8];
};

static void dst_view(struct dst_view *v)
{
	save(&dst, &v->saved);
	v->regs = dst.vdev;
	memcpy(v->config, dst.config, sizeof(v->config));
}

static void expect_dst_unchanged(const struct dst_view *before)
{
	struct dst_view now;

	dst_view(&now);
	cr_assert_eq(now.saved.len, before->saved.len);
	cr_assert_arr_eq(now.saved.data, before->saved.data, now.saved.len,
			 "a refused load changed the device");
	cr_assert_arr_eq(now.config, before->config, sizeof(now.config));
	cr_assert_not(dst.vdev.load_pending, "a refused load leaves nothing to finish");
	cr_assert_null(dst.vdev.config_before_load);
	sbuf_free(&now.saved);
}

Test(virtio_mmio, load_refuses_every_truncation)
{
	struct dst_view before;
	struct sbuf w;
	uint8_t *longer;

	busy_source(&test_backend_ops);
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	dst_view(&before);
	for (size_t len = 0; len < w.len; len++) {
		cr_assert_eq(load(&dst, w.data, len), -EBADMSG, "%zu of %zu bytes", len, w.len);
		expect_dst_unchanged(&before);
	}
	longer = malloc(w.len + 1);
	memcpy(longer, w.data, w.len);
	longer[w.len] = 0;
	cr_assert_eq(load(&dst, longer, w.len + 1), -EBADMSG, "a trailing byte");
	expect_dst_unchanged(&before);
	cr_assert_eq(dst.set_features_calls, 0);
	cr_assert_eq(dst.loads, 0, "the model is not asked about a malformed state");
	free(longer);
	sbuf_free(&before.saved);
	sbuf_free(&w);
}

/*
 * Offsets in the saved state of the test device (mmio.h's layout): the header
 * (u32 version, id, queues, config size, u16 QueueNumMax, u8 direct), the
 * registers, 8 bytes of config, then 36 bytes per queue and the model's length.
 */
enum {
	OFF_VERSION = 0, OFF_ID = 4, OFF_NQ = 8, OFF_CSIZE = 12, OFF_QMAX = 16, OFF_DIRECT = 18,
	OFF_DEVFEAT = 19, OFF_DRVFEAT = 27, OFF_STATUS = 47, OFF_ISR = 51, OFF_CONFIG = 59,
	OFF_Q0 = 67, Q_SIZE = 0, Q_DESC = 2, Q_READY = 26, Q_EVENT_IDX = 27, Q_LEN = 36,
	OFF_MODEL_LEN = OFF_Q0 + 2 * Q_LEN, OFF_MODEL = OFF_MODEL_LEN + 4,
};

static void put_le(uint8_t *p, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

Test(virtio_mmio, load_refuses_corrupted_values)
{
	static const struct {
		const char *what;
		size_t off;
		uint64_t val;
		unsigned int n;
		int err;
	} bad[] = {
		{ "format version", OFF_VERSION, 2, 4, -EPROTONOSUPPORT },
		{ "device id", OFF_ID, TEST_DEVICE_ID + 1, 4, -EINVAL },
		{ "queue count", OFF_NQ, 3, 4, -EINVAL },
		{ "config size", OFF_CSIZE, 4, 4, -EINVAL },
		{ "QueueNumMax", OFF_QMAX, 128, 2, -EINVAL },
		{ "direct flag not a bool", OFF_DIRECT, 2, 1, -EBADMSG },
		{ "unknown status bit", OFF_STATUS, 0x1f, 4, -EINVAL },
		{ "live without FEATURES_OK", OFF_STATUS, 0x07, 4, -EINVAL },
		{ "unknown InterruptStatus bit", OFF_ISR, 4, 4, -EINVAL },
		{ "driver features not offered", OFF_DRVFEAT, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 20, 8,
		  -EINVAL },
		{ "driver features without VERSION_1", OFF_DRVFEAT, 1ULL << DEV_FEATURE, 8, -EINVAL },
		{ "queue larger than QueueNumMax", OFF_Q0 + Q_SIZE, 128, 2, -EINVAL },
		{ "ready queue not a power of two", OFF_Q0 + Q_SIZE, 48, 2, -EINVAL },
		{ "ready queue of size 0", OFF_Q0 + Q_SIZE, 0, 2, -EINVAL },
		{ "ring outside guest RAM", OFF_Q0 + Q_DESC, FAKE_RAM_SIZE, 8, -EINVAL },
		{ "ring misaligned", OFF_Q0 + Q_DESC, 0x1008, 8, -EINVAL },
		{ "ring wrapping around", OFF_Q0 + Q_LEN + Q_DESC, ~0ULL - 15, 8, -EINVAL },
		{ "ready not a bool", OFF_Q0 + Q_READY, 2, 1, -EBADMSG },
		{ "event_idx not a bool", OFF_Q0 + Q_LEN + Q_EVENT_IDX, 3, 1, -EBADMSG },
		{ "model length past the end", OFF_MODEL_LEN, 9, 4, -EBADMSG },
		{ "model length short", OFF_MODEL_LEN, 7, 4, -EBADMSG },
		{ "model version", OFF_MODEL, MODEL_VERSION + 1, 4, -EPROTONOSUPPORT },
	};
	struct dst_view before;
	struct sbuf w;

	busy_source(&test_backend_ops);
	save(&dev, &w);
	cr_assert_eq(w.len, OFF_MODEL + 8, "the layout the offsets describe");
	cr_assert_eq(w.data[OFF_Q0 + Q_READY], 1);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	dst_view(&before);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *copy = malloc(w.len);

		memcpy(copy, w.data, w.len);
		put_le(copy + bad[i].off, bad[i].val, bad[i].n);
		cr_assert_eq(load(&dst, copy, w.len), bad[i].err, "%s", bad[i].what);
		expect_dst_unchanged(&before);
		free(copy);
	}
	/* Only the model's refusal comes after the back-end got the features (harmless: not started). */
	cr_assert_eq(dst.set_features_calls, 1);
	cr_assert_eq(dst.starts[0] + dst.starts[1], 0);
	cr_assert_eq(load(&dst, w.data, w.len), 0, "the state itself loads");
	sbuf_free(&before.saved);
	sbuf_free(&w);
}

Test(virtio_mmio, load_refuses_a_device_of_another_shape)
{
	struct virtio_dev_ops other_id = mig_ops, three_queues = mig_ops, bigger_queues = mig_ops;
	struct sbuf w;

	other_id.device_id = TEST_DEVICE_ID + 1;
	three_queues.nqueues = 3;
	bigger_queues.queue_max_size = 128;
	busy_source(&test_backend_ops);
	save(&dev, &w);
	init_mig(&dst, &other_id, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), -EINVAL, "another kind of device");
	virtio_mmio_destroy(&dst.vdev);
	init_mig(&dst, &three_queues, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), -EINVAL, "another queue count");
	virtio_mmio_destroy(&dst.vdev);
	init_mig(&dst, &bigger_queues, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), -EINVAL, "another QueueNumMax");
	virtio_mmio_destroy(&dst.vdev);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, 4);
	cr_assert_eq(load(&dst, w.data, w.len), -EINVAL, "another config size");
	cr_assert_eq(dst.vdev.status, 0);
	cr_assert_eq(dst.loads, 0);
	sbuf_free(&w);
}

Test(virtio_mmio, a_refusing_model_or_back_end_leaves_the_device_unchanged)
{
	struct dst_view before;
	struct sbuf w;

	busy_source(&test_backend_ops);
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	dst_view(&before);
	dst.load_ret = -EINVAL;
	cr_assert_eq(load(&dst, w.data, w.len), -EINVAL);
	cr_assert_eq(dst.loads, 1);
	cr_assert_arr_eq(seen_config, dev.config, 8, "the model saw the loaded config...");
	expect_dst_unchanged(&before);	/* ...which was put back */
	cr_assert_arr_eq(dst.config, "ABCDEFGH", 8);
	dst.load_ret = 0;
	dst.set_features_ret = -EIO;
	cr_assert_eq(load(&dst, w.data, w.len), -EIO, "the back-end refuses the features");
	expect_dst_unchanged(&before);
	cr_assert_eq(dst.model_value, 0);
	dst.set_features_ret = 0;
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	sbuf_free(&before.saved);
	sbuf_free(&w);
}

/*
 * A device without config space (as virtio-rng) has d->config NULL: a load, and the
 * rollback of a refused one, copy no config bytes from or to it (memcpy with a NULL
 * pointer is undefined even for 0 bytes; clang's UBSan, as in tests/fuzz, stops there).
 */
Test(virtio_mmio, a_device_without_config_space_loads_and_rolls_back)
{
	struct sbuf w;

	dev.be.ops = &test_backend_ops;
	cr_assert_eq(virtio_mmio_init(&dev.vdev, &test_ops, &fake_host, "src", BASE, GSI,
				      1ULL << DEV_FEATURE, NULL, 0, &dev.be), 0);
	go_live();
	cr_assert(virtio_mmio_is_active(&dev.vdev));
	virtio_mmio_pause(&dev.vdev);
	save(&dev, &w);
	dst.be.ops = &test_backend_ops;
	cr_assert_eq(virtio_mmio_init(&dst.vdev, &test_ops, &fake_host, "dst", BASE2, GSI,
				      1ULL << DEV_FEATURE, NULL, 0, &dst.be), 0);
	dst.set_features_ret = -EIO;
	cr_assert_eq(load(&dst, w.data, w.len), -EIO, "the back-end refuses: a rollback");
	cr_assert_eq(dst.vdev.status, 0);
	cr_assert_not(dst.vdev.load_pending);
	dst.set_features_ret = 0;
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	cr_assert_eq(dst.vdev.status, dev.vdev.status);
	cr_assert_null(dst.vdev.config);
	sbuf_free(&w);
}

Test(virtio_mmio, load_refuses_model_state_for_a_model_without_load)
{
	struct sbuf w;

	busy_source(&test_backend_ops);
	save(&dev, &w);
	init_mig(&dst, &test_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), -EINVAL);
	cr_assert_eq(dst.vdev.status, 0);
	sbuf_free(&w);
	/* A model without save or load: the transport's state alone. */
	virtio_mmio_destroy(&dev.vdev);
	memset(&dev, 0, sizeof(dev));
	init_mig(&dev, &test_ops, BASE, &test_backend_ops, sizeof(dev.config));
	go_live();
	virtio_mmio_pause(&dev.vdev);
	save(&dev, &w);
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	expect_same_registers(&dev.vdev, &dst.vdev);
	sbuf_free(&w);
}

/* Brings d live with one queue. */
static void negotiate_on(struct virtio_mmio_dev *d)
{
	drv_negotiate(d, 1ULL << VIRTIO_F_VERSION_1);
	drv_queue_at(d, 0, 64, 0x1000, 0x2000, 0x3000);
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(d->running);
}

Test(virtio_mmio, load_into_running_queues_is_refused)
{
	struct sbuf w;

	init_mig(&dev, &mig_ops, BASE, &test_backend_ops, sizeof(dev.config));
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	negotiate_on(&dst.vdev);
	cr_assert_eq(load(&dst, w.data, w.len), -EBUSY);
	sbuf_free(&w);
}

/*
 * ---- What holds the queues: the VM's pause and an absent back-end ----
 * vhost-user-blk's reconnect= holds the queues while its back-end is away
 * (virtio_mmio_backend_away) and restarts them when it is back; the VM's pause
 * (vm_pause, a migration's stop-and-copy) holds them too. The queues run only
 * when neither holds them.
 */

Test(virtio_mmio, a_back_end_back_while_the_vm_is_paused_waits_for_the_resume)
{
	init_dev();
	go_live();
	cr_assert_eq(dev.starts[0] + dev.starts[1], 2);
	virtio_mmio_pause(&dev.vdev);
	virtio_mmio_backend_away(&dev.vdev);
	edges_of(&dev);
	/* The back-end is back, the VM still paused: nothing starts, no interrupt. */
	virtio_mmio_backend_returned(&dev.vdev);
	cr_assert_not(dev.vdev.running);
	cr_assert_eq(dev.starts[0] + dev.starts[1], 2, "no queue started while the VM is paused");
	cr_assert_eq(edges_of(&dev), 0);
	cr_assert_eq(kicks_of(&dev, 0) + kicks_of(&dev, 1), 0);
	/* The VM's resume starts each queue once, kicked once, with the interrupt owed. */
	virtio_mmio_resume(&dev.vdev);
	cr_assert(dev.vdev.running);
	for (unsigned int q = 0; q < 2; q++) {
		cr_assert_eq(dev.starts[q], 2, "queue %u started once more", q);
		cr_assert_eq(kicks_of(&dev, q), 1);
	}
	cr_assert_eq(edges_of(&dev), 1, "one interrupt for what the dead back-end left");
	cr_assert(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
	/* That interrupt is owed once: later pauses and resumes are plain ones. */
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	virtio_mmio_pause(&dev.vdev);
	virtio_mmio_resume(&dev.vdev);
	cr_assert_eq(dev.starts[0] + dev.starts[1], 6);
	cr_assert_eq(edges_of(&dev), 0);
}

Test(virtio_mmio, the_vms_resume_leaves_the_queues_to_an_absent_back_end)
{
	init_dev();
	go_live();
	virtio_mmio_backend_away(&dev.vdev);
	cr_assert_not(dev.vdev.running);
	cr_assert_eq(dev.stops[0] + dev.stops[1], 2);
	virtio_mmio_pause(&dev.vdev);
	virtio_mmio_resume(&dev.vdev);
	cr_assert_not(dev.vdev.running, "the back-end is still away");
	cr_assert_eq(dev.starts[0] + dev.starts[1], 2);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	edges_of(&dev);
	/* Back, with the VM running: started now, once, with one interrupt. */
	virtio_mmio_backend_returned(&dev.vdev);
	cr_assert(dev.vdev.running);
	cr_assert_eq(dev.starts[0], 2);
	cr_assert_eq(dev.starts[1], 2);
	cr_assert_eq(edges_of(&dev), 1);
	/* A return without an absence changes nothing. */
	virtio_mmio_backend_returned(&dev.vdev);
	cr_assert_eq(dev.starts[0] + dev.starts[1], 4);
	cr_assert_eq(edges_of(&dev), 0);
}

Test(virtio_mmio, driver_ok_waits_for_an_absent_back_end)
{
	init_dev();
	virtio_mmio_backend_away(&dev.vdev);
	go_live();
	cr_assert_eq(dev.activations, 1);
	cr_assert_not(dev.vdev.running);
	cr_assert_eq(dev.starts[0] + dev.starts[1], 0);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
	virtio_mmio_backend_returned(&dev.vdev);
	cr_assert(dev.vdev.running);
	cr_assert_eq(dev.starts[0], 1);
	cr_assert_eq(dev.starts[1], 1);
	cr_assert_eq(kicks_of(&dev, 0), 1, "kicks the driver sent meanwhile are looked at");
}

/* A destination's device stays paused from its load to its resume, back-end or not. */
Test(virtio_mmio, a_loaded_device_waits_for_the_resume_whatever_its_back_end_does)
{
	struct sbuf w;

	busy_source(&test_backend_ops);
	save(&dev, &w);
	init_mig(&dst, &mig_ops, BASE2, &test_backend_ops, sizeof(dst.config));
	cr_assert_eq(load(&dst, w.data, w.len), 0);
	virtio_mmio_backend_away(&dst.vdev);
	virtio_mmio_backend_returned(&dst.vdev);
	cr_assert_not(dst.vdev.running);
	cr_assert_eq(dst.starts[0] + dst.starts[1], 0);
	cr_assert_eq(dst.loaded_calls, 0);
	virtio_mmio_resume(&dst.vdev);
	cr_assert(dst.vdev.running);
	cr_assert_eq(dst.starts[0], 1);
	cr_assert_eq(dst.starts[1], 1);
	cr_assert_eq(dst.loaded_calls, 1);
	sbuf_free(&w);
}
