// SPDX-License-Identifier: GPL-2.0-only
/*
 * The device back-end seam (virtio/backend.h) through the transport, driven
 * by the fake driver (fake_driver.c): a fake back-end that runs a real split
 * queue takes a device's queues over at DRIVER_OK, serves them from the
 * transport's kick eventfd and call, and hands them back with their position;
 * a queue paused mid-stream resumes from its saved state without losing or
 * repeating a chain, with the fake back-end and with the userspace one.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <string.h>
#include <unistd.h>

#include "fake_driver.h"
#include "virtio/backend.h"
#include "virtio/mmio.h"
#include "virtio/rng.h"
#include "virtio/virtq.h"

#define BASE		0xd0000000ULL
#define GSI		5
#define QSIZE		16
#define DEV_FEATURE	3
#define DEV_FEATURE2	5	/* offered by the device model, not served by the back-end */

/* A back-end with a real virtq per queue, run by hand (fake_run) instead of by an event loop. */
struct fake_backend {
	struct virtio_backend be;
	uint64_t features;
	int start_ret;
	uint64_t acked;				/* what set_features got */
	struct {
		struct virtq vq;
		struct virtq_state started_from, stopped_at;
		int kick_fd;
		struct virtio_call *call;
		int starts, stops;
		bool running;
	} q[2];
};

struct fake_dev {
	struct virtio_mmio_dev dev;
	struct fake_backend fb;
};

static struct fake_dev fd_;
static struct virtio_mmio_dev *d = &fd_.dev;
static struct fake_backend *fb = &fd_.fb;
static struct virtq_chain chain;

static uint64_t fb_features(struct virtio_backend *be)
{
	return fb->features;
}

static int fb_set_features(struct virtio_backend *be, uint64_t features)
{
	fb->acked = features;
	return 0;
}

static int fb_start(struct virtio_backend *be, unsigned int q, const struct virtq_state *state,
		    int kick_fd, struct virtio_call *call)
{
	if (fb->start_ret)
		return fb->start_ret;
	cr_assert_lt(q, 2);
	cr_assert_not(fb->q[q].running, "queue %u started twice", q);
	fb->q[q].started_from = *state;
	cr_assert_eq(virtq_start_from(&fb->q[q].vq, d->host->mem, state), 0);
	fb->q[q].kick_fd = kick_fd;
	fb->q[q].call = call;
	fb->q[q].starts++;
	fb->q[q].running = true;
	return 0;
}

static void fb_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *state)
{
	cr_assert(fb->q[q].running, "queue %u stopped while not started", q);
	virtq_save(&fb->q[q].vq, state);
	fb->q[q].stopped_at = *state;
	fb->q[q].stops++;
	fb->q[q].running = false;
	fb->q[q].call = NULL;
}

static const struct virtio_backend_ops fb_ops = {
	.name = "fake",
	.features = fb_features,
	.set_features = fb_set_features,
	.start = fb_start,
	.stop = fb_stop,
};

static const struct virtio_dev_ops fake_dev_ops = {
	.name = "virtio-fake",
	.device_id = 42,
	.nqueues = 2,
	.queue_max_size = QSIZE,
};

/* Kicks waiting on the kick eventfd the back-end was given for queue q (reading clears them). */
static uint64_t fb_kicks(unsigned int q)
{
	uint64_t v = 0;

	if (read(fb->q[q].kick_fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/*
 * What the back-end does on a kick: pops up to max chains, completes each
 * (used length = its head + 100) and calls the driver if it wants to hear.
 * Returns the chains completed.
 */
static unsigned int fb_run(unsigned int q, unsigned int max)
{
	struct virtq *vq = &fb->q[q].vq;
	unsigned int n = 0;

	cr_assert(fb->q[q].running);
	while (n < max && virtq_pop(vq, &chain) == 1) {
		cr_assert_eq(virtq_push(vq, chain.head, chain.head + 100u), 0);
		n++;
	}
	if (n && virtq_should_notify(vq))
		fb->q[q].call->raise(fb->q[q].call);
	return n;
}

/* How many edges the device's irqfd got since the last call. */
static uint64_t irq_edges(void)
{
	uint64_t v = 0;

	if (read(d->irq_fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* Offers n one-segment chains on queue q; returns the first head (heads follow in order). */
static uint16_t offer(unsigned int q, unsigned int n)
{
	uint16_t first = 0;

	for (unsigned int i = 0; i < n; i++) {
		uint16_t h = drv_add(q, &(struct drv_seg){ alloc_buf(64), 64, true }, 1);

		if (!i)
			first = h;
	}
	return first;
}

/* Takes every used element of queue q, checking they are heads first.. in order. */
static unsigned int expect_used(unsigned int q, uint16_t first, unsigned int n)
{
	uint32_t id, len;
	unsigned int got = 0;

	while (drv_used(q, &id, &len)) {
		cr_assert_lt(got, n, "more used elements than chains offered");
		cr_assert_eq(id, (uint16_t)((first + got) % QSIZE), "chain %u: head %u", got, id);
		cr_assert_eq(len, id + 100u);
		got++;
	}
	return got;
}

static void setup(void)
{
	fake_driver_init(QSIZE);
	memset(&fd_, 0, sizeof(fd_));
	fb->be.ops = &fb_ops;
	fb->features = ~(1ULL << DEV_FEATURE2);
	cr_assert_eq(virtio_mmio_init(d, &fake_dev_ops, &fake_host, "virtio-fake0", BASE, GSI,
				      1ULL << DEV_FEATURE | 1ULL << DEV_FEATURE2, NULL, 0, &fb->be),
		     0);
}

static void teardown(void)
{
	virtio_mmio_destroy(d);
	fake_driver_fini();
}

static void pause_device(void)
{
	pthread_mutex_lock(&d->lock);
	virtio_mmio_pause(d);
	pthread_mutex_unlock(&d->lock);
}

static void resume_device(void)
{
	pthread_mutex_lock(&d->lock);
	virtio_mmio_resume(d);
	pthread_mutex_unlock(&d->lock);
}

TestSuite(backend_seam, .init = setup, .fini = teardown);

Test(backend_seam, offers_what_the_device_and_the_back_end_can_do)
{
	uint64_t f = drv_device_features(d);

	cr_assert(f & (1ULL << DEV_FEATURE));
	cr_assert_not(f & (1ULL << DEV_FEATURE2), "the back-end cannot serve it: not offered");
	cr_assert(f & (1ULL << VIRTIO_RING_F_EVENT_IDX));
	cr_assert(f & (1ULL << VIRTIO_F_VERSION_1));
}

Test(backend_seam, ring_bits_the_back_end_lacks_are_not_offered)
{
	virtio_mmio_destroy(d);
	fb->features = ~(1ULL << VIRTIO_RING_F_EVENT_IDX);
	cr_assert_eq(virtio_mmio_init(d, &fake_dev_ops, &fake_host, "virtio-fake0", BASE, GSI, 0,
				      NULL, 0, &fb->be), 0);
	cr_assert_not(drv_device_features(d) & (1ULL << VIRTIO_RING_F_EVENT_IDX));
}

Test(backend_seam, takes_over_queues_at_driver_ok_and_hands_them_back_with_the_index)
{
	uint16_t first;

	drv_start(d, 1ULL << DEV_FEATURE | 1ULL << VIRTIO_RING_F_EVENT_IDX);
	cr_assert_eq(fb->acked, 1ULL << DEV_FEATURE | 1ULL << VIRTIO_RING_F_EVENT_IDX |
			       1ULL << VIRTIO_F_VERSION_1, "set_features got what the driver took");
	for (unsigned int q = 0; q < 2; q++) {
		const struct virtq_state *s = &fb->q[q].started_from;

		cr_assert_eq(fb->q[q].starts, 1);
		cr_assert(s->ready && s->event_idx && !s->indirect);
		cr_assert_eq(s->size, QSIZE);
		cr_assert_eq(s->desc_gpa, FAKE_RING_GPA(q));
		cr_assert_eq(s->last_avail_idx, 0);
		cr_assert_eq(s->used_idx, 0);
		cr_assert_eq(fb->q[q].kick_fd, d->q[q].kick_fd);
	}

	/* The driver's QueueNotify (MMIO path here) lands on the back-end's kick fd. */
	first = offer(0, 3);
	drv_kick(d, 0);
	cr_assert_eq(fb_kicks(0), 1);
	cr_assert_eq(fb_run(0, 16), 3);
	cr_assert_eq(expect_used(0, first, 3), 3);
	/* The call goes through InterruptStatus: one edge, VRING set until acknowledged. */
	cr_assert_eq(irq_edges(), 1);
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	drv_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);

	/* Handed back with its index: the transport keeps the position. */
	pause_device();
	cr_assert_eq(fb->q[0].stops, 1);
	cr_assert_eq(fb->q[1].stops, 1);
	cr_assert_eq(d->queues[0].last_avail_idx, 3);
	cr_assert_eq(d->queues[0].used_idx, 3);
	cr_assert(d->queues[0].ready);
	cr_assert(virtio_mmio_is_active(d), "the driver sees no change");

	/* A reset while paused stops nothing twice; after it the queues start from zero. */
	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(fb->q[0].stops, 1);
	cr_assert_eq(d->queues[0].last_avail_idx, 0);
	cr_assert_not(d->queues[0].ready);
}

Test(backend_seam, reset_hands_queues_back)
{
	drv_start(d, 0);
	offer(1, 2);
	drv_kick(d, 1);
	cr_assert_eq(fb_run(1, 16), 2);
	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(fb->q[1].stops, 1);
	cr_assert_eq(fb->q[1].stopped_at.last_avail_idx, 2);
	cr_assert_eq(fb->q[1].stopped_at.used_idx, 2);
	cr_assert_not(fb->q[0].running || fb->q[1].running);
}

Test(backend_seam, paused_mid_stream_resumes_without_losing_or_repeating_a_chain)
{
	uint16_t first;

	drv_start(d, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	first = offer(0, 5);
	drv_kick(d, 0);
	cr_assert_eq(fb_run(0, 2), 2, "the back-end got through 2 of 5 chains");
	pause_device();
	cr_assert_eq(d->queues[0].last_avail_idx, 2);
	cr_assert_eq(d->queues[0].used_idx, 2);

	/* More work arrives while nobody runs the queue: the kick waits in the eventfd. */
	offer(0, 2);
	drv_kick(d, 0);
	fb_kicks(0);

	resume_device();
	cr_assert_eq(fb->q[0].starts, 2);
	cr_assert_eq(fb->q[0].started_from.last_avail_idx, 2, "restarted from the saved state");
	cr_assert_eq(fb->q[0].started_from.used_idx, 2);
	cr_assert(fb->q[0].started_from.signalled_used_valid, "with its notification history");
	cr_assert_eq(fb_kicks(0), 1, "a resumed queue is kicked once");
	cr_assert_eq(fb_run(0, 16), 5, "the 3 left and the 2 new, each once");
	cr_assert_eq(expect_used(0, first, 7), 7);
	cr_assert_eq(fb_run(0, 16), 0);
}

Test(backend_seam, resume_does_nothing_unless_paused_and_live)
{
	resume_device();
	cr_assert_eq(fb->q[0].starts, 0, "not live");
	drv_start(d, 0);
	resume_device();
	cr_assert_eq(fb->q[0].starts, 1, "not paused");
	pause_device();
	virtio_mmio_set_needs_reset(d, "test");
	resume_device();
	cr_assert_eq(fb->q[0].starts, 1, "a broken device stays stopped");
}

Test(backend_seam, back_end_error_needs_reset_and_stops_every_queue)
{
	drv_start(d, 0);
	fb->q[0].call->error(fb->q[0].call, "test");
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(fb->q[0].stops, 1);
	cr_assert_eq(fb->q[1].stops, 1);
	cr_assert(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
}

Test(backend_seam, back_end_that_cannot_start_needs_reset)
{
	fb->start_ret = -EIO;
	drv_negotiate(d, 1ULL << VIRTIO_F_VERSION_1);
	drv_setup_queue(d, 0);
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_not(virtio_mmio_is_active(d));
}

Test(backend_seam, bad_ring_is_still_reported_at_queue_ready)
{
	drv_negotiate(d, 1ULL << VIRTIO_F_VERSION_1);
	drv_queue_at(d, 0, QSIZE, FAKE_RAM_SIZE + 0x1000, 0x2000, 0x3000);
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(fb->q[0].starts, 0);
}

/* ---- direct interrupt mode: a back-end that writes the irqfd itself (vhost) ---- */

static const struct virtio_backend_ops fb_direct_ops = {
	.name = "fake-vhost",
	.signals_irqfd = true,
	.features = fb_features,
	.set_features = fb_set_features,
	.start = fb_start,
	.stop = fb_stop,
};

static void direct_setup(void)
{
	fake_driver_init(QSIZE);
	memset(&fd_, 0, sizeof(fd_));
	fb->be.ops = &fb_direct_ops;
	fb->features = ~0ULL;
	cr_assert_eq(virtio_mmio_init(d, &fake_dev_ops, &fake_host, "virtio-fake0", BASE, GSI, 0,
				      NULL, 0, &fb->be), 0);
}

/* What vhost does after publishing used buffers: one write to the call fd (the irqfd). */
static void backend_signals(unsigned int q)
{
	uint64_t one = 1;

	cr_assert_geq(fb->q[q].call->irq_fd, 0, "the back-end was given the irqfd");
	cr_assert_eq(write(fb->q[q].call->irq_fd, &one, sizeof(one)), sizeof(one));
}

static uint32_t isr_read(void)
{
	return drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS);
}

TestSuite(irq_direct, .init = direct_setup, .fini = teardown);

Test(irq_direct, only_a_back_end_that_signals_the_irqfd_gets_it)
{
	cr_assert(d->irq_direct);
	drv_start(d, 0);
	for (unsigned int q = 0; q < 2; q++)
		cr_assert_eq(fb->q[q].call->irq_fd, d->irq_fd);
	teardown();
	setup();	/* the level mode's fake back-end */
	cr_assert_not(d->irq_direct);
	drv_start(d, 0);
	cr_assert_eq(fb->q[0].call->irq_fd, -1, "a raise() back-end never sees the irqfd");
}

Test(irq_direct, status_reads_vring_only_while_the_device_is_live)
{
	cr_assert_eq(isr_read(), 0, "before DRIVER_OK");
	drv_negotiate(d, 1ULL << VIRTIO_F_VERSION_1);
	drv_setup_queue(d, 0);
	drv_setup_queue(d, 1);
	cr_assert_eq(isr_read(), 0, "FEATURES_OK, not yet DRIVER_OK");
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert_eq(isr_read(), VIRTIO_MMIO_INT_VRING, "live: the driver always looks at its queues");
	pause_device();
	cr_assert_eq(isr_read(), VIRTIO_MMIO_INT_VRING,
		     "paused (migration): an interrupt sent before the pause is still handled");
	resume_device();
	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(isr_read(), 0, "after a reset");
}

Test(irq_direct, back_end_interrupts_never_wake_the_transport)
{
	drv_start(d, 0);
	irq_edges();
	for (int i = 0; i < 1000; i++) {
		backend_signals(i & 1);
		/* The guest's vm_interrupt(): read, acknowledge what it read, reap every queue. */
		uint32_t st = isr_read();

		cr_assert_eq(st, VIRTIO_MMIO_INT_VRING, "interrupt %d: the driver reads a used buffer", i);
		drv_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, st);
	}
	cr_assert_eq(irq_edges(), 1000, "the back-end's writes only: the acks added none");
	cr_assert_eq(d->interrupts, 0, "the transport sent no interrupt of its own");
	cr_assert_eq(d->isr, 0, "the reported VRING bit is not stored");
}

Test(irq_direct, config_change_still_interrupts_and_is_acknowledged)
{
	drv_start(d, 0);
	irq_edges();
	pthread_mutex_lock(&d->lock);
	virtio_mmio_signal_config(d);
	pthread_mutex_unlock(&d->lock);
	cr_assert_eq(irq_edges(), 1, "the config change writes the irqfd");
	cr_assert_eq(isr_read(), VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG,
		     "CONFIG, and VRING so a vring interrupt merged with it is not hidden");
	/* A second change and a back-end interrupt before the acknowledgement. */
	pthread_mutex_lock(&d->lock);
	virtio_mmio_signal_config(d);
	pthread_mutex_unlock(&d->lock);
	cr_assert_eq(irq_edges(), 0, "merged into the pending config interrupt");
	backend_signals(0);
	cr_assert_eq(irq_edges(), 1);
	drv_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(isr_read(), VIRTIO_MMIO_INT_VRING, "CONFIG acknowledged");
	cr_assert_eq(irq_edges(), 0, "nothing left pending: no new edge");
	cr_assert_eq(d->config_generation, 2);
}

Test(irq_direct, config_acknowledged_alone_leaves_nothing_behind)
{
	drv_start(d, 0);
	irq_edges();
	pthread_mutex_lock(&d->lock);
	virtio_mmio_signal_config(d);
	pthread_mutex_unlock(&d->lock);
	drv_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(isr_read(), VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(irq_edges(), 1, "one edge for the change, none for the acknowledgement");
}

Test(irq_direct, raise_from_a_queue_the_vmm_keeps_works_too)
{
	drv_start(d, 0);
	irq_edges();
	offer(0, 2);
	drv_kick(d, 0);
	fb_kicks(0);
	cr_assert_eq(fb_run(0, 16), 2, "raise() as an in-process queue does");
	cr_assert_eq(irq_edges(), 1);
	cr_assert_eq(isr_read(), VIRTIO_MMIO_INT_VRING);
	drv_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(d->isr, 0);
	cr_assert_eq(irq_edges(), 0);
}

Test(irq_direct, needs_reset_reports_config_not_vring)
{
	drv_start(d, 0);
	irq_edges();
	fb->q[0].call->error(fb->q[0].call, "test");
	cr_assert_eq(irq_edges(), 1);
	cr_assert_eq(isr_read(), VIRTIO_MMIO_INT_CONFIG,
		     "the queues are gone: only the config change (NEEDS_RESET) is reported");
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* ---- the userspace back-end, through a real device ---- */

static struct virtio_rng *rng;

static void rng_setup(void)
{
	fake_driver_init(QSIZE);
	cr_assert_eq(virtio_rng_create(&fake_host, "virtio-rng0", BASE, GSI, &rng), 0);
	d = &rng->dev;
}

static void rng_teardown(void)
{
	virtio_rng_destroy(rng);
	rng = NULL;
	d = &fd_.dev;
	fake_driver_fini();
}

/* Takes every used element of the rng's queue, checking heads first.. in order; returns count. */
static unsigned int rng_used(uint16_t first)
{
	uint32_t id, len;
	unsigned int got = 0;

	while (drv_used(0, &id, &len)) {
		cr_assert_eq(id, (uint16_t)((first + got) % QSIZE), "chain %u: head %u", got, id);
		cr_assert_eq(len, 64);
		got++;
	}
	return got;
}

TestSuite(userspace_backend, .init = rng_setup, .fini = rng_teardown);

Test(userspace_backend, paused_mid_stream_resumes_where_it_stopped)
{
	uint16_t first;

	drv_start(d, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	cr_assert(userspace_backend_running(&rng->ub, 0));
	first = offer(0, 3);
	drv_kick(d, 0);
	cr_assert_eq(rng_used(first), 3);

	pause_device();
	cr_assert_not(userspace_backend_running(&rng->ub, 0));
	cr_assert_eq(d->queues[0].last_avail_idx, 3);
	cr_assert_eq(d->queues[0].used_idx, 3);
	offer(0, 2);
	drv_kick(d, 0);
	cr_assert_eq(rng_used(first + 3), 0, "nobody serves a paused queue");

	resume_device();
	cr_assert(userspace_backend_running(&rng->ub, 0));
	drv_run_kicks(d);
	cr_assert_eq(rng_used(first + 3), 2, "the new chains, each once");
	cr_assert_eq(rng->bytes, 5 * 64);
}

Test(userspace_backend, kick_by_ioeventfd_runs_the_handler_on_the_loop)
{
	uint64_t one = 1;
	uint16_t first;

	drv_start(d, 0);
	first = offer(0, 1);
	/* What KVM does for a guest's QueueNotify write: the eventfd, no MMIO exit. */
	cr_assert_eq(write(d->q[0].kick_fd, &one, sizeof(one)), sizeof(one));
	drv_run_kicks(d);
	cr_assert_eq(rng_used(first), 1);
	cr_assert_eq(d->mmio_notifies, 0);
	cr_assert_eq(virtio_mmio_eventfd_notifies(d), 1);
	cr_assert(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
}

Test(userspace_backend, malformed_ring_stops_every_queue)
{
	drv_start(d, 0);
	drv_offer(0, QSIZE + 1);	/* head out of range */
	drv_kick(d, 0);
	cr_assert(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_not(userspace_backend_running(&rng->ub, 0));
	cr_assert_not(d->running);
}
