// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for virtio-rng (virtio/rng.c): rng_fill() over host buffers,
 * then the device driven through its registers by the fake driver
 * (fake_driver.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <string.h>

#include "fake_driver.h"
#include "virtio/rng.h"

/* ---- rng_fill over host buffers ---- */

static struct virtq_chain hc;

/* Whether buf changed from its 0xaa fill: 64 random bytes all 0xaa is a 2^-512 chance. */
static bool filled(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != 0xaa)
			return true;
	return false;
}

static bool untouched(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != 0xaa)
			return false;
	return true;
}

Test(rng_fill, one_segment)
{
	uint8_t buf[64];

	memset(buf, 0xaa, sizeof(buf));
	host_chain(&hc, NULL, 0, (struct iovec[]){ { buf, sizeof(buf) } }, 1);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 64);
	cr_assert(filled(buf, sizeof(buf)));
}

Test(rng_fill, several_segments_and_empty_ones)
{
	uint8_t a[64], b[64];

	memset(a, 0xaa, sizeof(a));
	memset(b, 0xaa, sizeof(b));
	host_chain(&hc, NULL, 0, (struct iovec[]){ { a, 64 }, { NULL, 0 }, { b, 64 } }, 3);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 128);
	cr_assert(filled(a, 64));
	cr_assert(filled(b, 64));
}

Test(rng_fill, readable_segments_are_ignored)
{
	uint8_t ro[64], w[64];

	memset(ro, 0xaa, sizeof(ro));
	memset(w, 0xaa, sizeof(w));
	host_chain(&hc, (struct iovec[]){ { ro, sizeof(ro) } }, 1, (struct iovec[]){ { w, sizeof(w) } }, 1);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 64);
	cr_assert(untouched(ro, sizeof(ro)));
	cr_assert(filled(w, sizeof(w)));
}

Test(rng_fill, nothing_writable)
{
	uint8_t ro[16];

	host_chain(&hc, (struct iovec[]){ { ro, sizeof(ro) } }, 1, NULL, 0);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 0);
	host_chain(&hc, NULL, 0, NULL, 0);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 0);
	host_chain(&hc, NULL, 0, (struct iovec[]){ { ro, 0 } }, 1);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 0);
}

Test(rng_fill, stops_at_max)
{
	uint8_t a[100], b[100];

	memset(a, 0xaa, sizeof(a));
	memset(b, 0xaa, sizeof(b));
	host_chain(&hc, NULL, 0, (struct iovec[]){ { a, sizeof(a) }, { b, sizeof(b) } }, 2);
	cr_assert_eq(rng_fill(&hc, 164), 164);
	cr_assert(filled(b, 64));
	cr_assert(untouched(b + 64, 36), "bytes past max were written");
}

/* ---- the device with a fake driver ---- */

#define BASE		0xd0000000ULL
#define GSI		6
#define QSIZE		64

static struct virtio_rng *rng;
static struct virtio_mmio_dev *dev;

/* A guest buffer filled with 0xaa, for filled() and untouched(). */
static uint64_t alloc_aa(size_t len)
{
	uint64_t gpa = alloc_buf(len);

	memset(gpa_ptr(gpa), 0xaa, len);
	return gpa;
}

static void setup(void)
{
	fake_driver_init(QSIZE);
	cr_assert_eq(virtio_rng_create(&fake_host, "virtio-rng0", BASE, GSI, &rng), 0);
	dev = &rng->dev;
}

static void teardown(void)
{
	virtio_rng_destroy(rng);
	rng = NULL;
	fake_driver_fini();
}

TestSuite(virtio_rng, .init = setup, .fini = teardown);

Test(virtio_rng, identity)
{
	cr_assert_eq(drv_rd(dev, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	drv_wr(dev, VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(drv_rd(dev, VIRTIO_MMIO_QUEUE_NUM_MAX), RNG_QUEUE_SIZE);
	drv_wr(dev, VIRTIO_MMIO_QUEUE_SEL, 1);
	cr_assert_eq(drv_rd(dev, VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "one queue only");
}

Test(virtio_rng, fills_requests)
{
	uint64_t a = alloc_aa(64), b = alloc_aa(32), ro = alloc_aa(16);
	uint32_t id, len;
	uint16_t h1, h2;

	drv_start(dev, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	h1 = drv_add(0, &(struct drv_seg){ a, 64, true }, 1);
	h2 = drv_add(0, (struct drv_seg[]){ { ro, 16, false }, { b, 32, true } }, 2);
	drv_kick(dev, 0);
	cr_assert(drv_used(0, &id, &len));
	cr_assert_eq(id, h1);
	cr_assert_eq(len, 64);
	cr_assert(filled(gpa_ptr(a), 64));
	cr_assert(drv_used(0, &id, &len));
	cr_assert_eq(id, h2);
	cr_assert_eq(len, 32, "the used length counts written bytes only");
	cr_assert(filled(gpa_ptr(b), 32));
	cr_assert(untouched(gpa_ptr(ro), 16), "a readable buffer was written");
	cr_assert_not(drv_used(0, &id, &len));
	cr_assert_eq(drv_avail_event(0), drv_avail_idx(0),
		     "avail_event asks for a kick at the next request");
}

Test(virtio_rng, request_without_writable_bytes_is_answered_empty)
{
	uint64_t ro = alloc_aa(16);
	uint32_t id, len;
	uint16_t h;

	drv_start(dev, 0);
	h = drv_add(0, &(struct drv_seg){ ro, 16, false }, 1);
	drv_kick(dev, 0);
	cr_assert(drv_used(0, &id, &len));
	cr_assert_eq(id, h);
	cr_assert_eq(len, 0);
	cr_assert(untouched(gpa_ptr(ro), 16));
	cr_assert_not(drv_rd(dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_rng, huge_request_is_capped)
{
	uint64_t big = alloc_aa(RNG_CHAIN_MAX + 4096);
	uint32_t id, len;

	drv_start(dev, 0);
	drv_add(0, &(struct drv_seg){ big, RNG_CHAIN_MAX + 4096, true }, 1);
	drv_kick(dev, 0);
	cr_assert(drv_used(0, &id, &len));
	cr_assert_eq(len, RNG_CHAIN_MAX);
	cr_assert(untouched(gpa_ptr(big + RNG_CHAIN_MAX), 4096));
}

Test(virtio_rng, malformed_ring_needs_reset_and_reset_recovers)
{
	uint64_t a = alloc_aa(64);
	uint32_t id, len;

	drv_start(dev, 0);
	drv_offer(0, QSIZE);	/* head out of range */
	drv_kick(dev, 0);
	cr_assert(drv_rd(dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);

	drv_wr(dev, VIRTIO_MMIO_STATUS, 0);
	drv_start(dev, 0);
	drv_add(0, &(struct drv_seg){ a, 64, true }, 1);
	drv_kick(dev, 0);
	cr_assert(drv_used(0, &id, &len));
	cr_assert_eq(len, 64);
}

Test(virtio_rng, no_work_before_driver_ok)
{
	uint64_t a = alloc_aa(64);
	uint32_t id, len;

	drv_start(dev, 0);
	drv_wr(dev, VIRTIO_MMIO_STATUS, 0);
	drv_add(0, &(struct drv_seg){ a, 64, true }, 1);
	drv_kick(dev, 0);
	cr_assert_not(drv_used(0, &id, &len));
	cr_assert(untouched(gpa_ptr(a), 64));
}

/* ---- migration ---- */

#define BASE2	(BASE + 0x1000)

/* A second device, the migration's destination. */
static struct virtio_rng *create_dst(void)
{
	struct virtio_rng *r;

	cr_assert_eq(virtio_rng_create(&fake_host, "virtio-rng1", BASE2, GSI + 1, &r), 0);
	return r;
}

Test(virtio_rng, migrates_mid_stream_without_loss_or_duplicate)
{
	uint64_t bufs[5];
	uint16_t heads[5];
	struct drv_regs src_regs, dst_regs;
	struct virtio_rng *to;
	struct sbuf w;
	uint32_t id, len;

	drv_start(dev, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	for (int i = 0; i < 5; i++) {
		bufs[i] = alloc_aa(32 + i);
		heads[i] = drv_add(0, &(struct drv_seg){ bufs[i], 32 + i, true }, 1);
		if (i == 1)
			drv_kick(dev, 0);	/* two done; three available, not popped */
	}
	for (int i = 0; i < 2; i++) {
		cr_assert(drv_used(0, &id, &len));
		cr_assert_eq(id, heads[i]);
	}
	cr_assert_not(drv_used(0, &id, &len));

	drv_pause_save(dev, &w);
	drv_read_all(dev, &src_regs);
	to = create_dst();
	drv_expect_truncations_refused(&to->dev, &w);
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	drv_read_all(&to->dev, &dst_regs);
	drv_expect_same_regs(&src_regs, &dst_regs);
	cr_assert_not(drv_used(0, &id, &len), "nothing happens before the resume");
	virtio_rng_destroy(rng);	/* the source is gone */
	rng = to;
	dev = &to->dev;

	drv_resume(dev);
	for (int i = 2; i < 5; i++) {
		cr_assert(drv_used(0, &id, &len), "request %d was lost", i);
		cr_assert_eq(id, heads[i]);
		cr_assert_eq(len, 32 + (uint32_t)i);
		cr_assert(filled(gpa_ptr(bufs[i]), 32 + i));
	}
	cr_assert_not(drv_used(0, &id, &len), "a request was served twice");
	/* And the destination goes on. */
	heads[0] = drv_add(0, &(struct drv_seg){ bufs[0], 16, true }, 1);
	drv_kick(dev, 0);
	cr_assert(drv_used(0, &id, &len));
	cr_assert_eq(id, heads[0]);
	cr_assert_not(drv_used(0, &id, &len));
	sbuf_free(&w);
}

Test(virtio_rng, load_refuses_another_kind_of_device)
{
	struct virtio_rng *to = create_dst();
	struct sbuf w;

	drv_start(dev, 0);
	drv_pause_save(dev, &w);
	/* A device id of another kind: byte 4 of the transport's header. */
	w.data[4] ^= 1;
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), -EINVAL);
	w.data[4] ^= 1;
	/* The model's own version (its bytes end the state). */
	w.data[w.len - 4] ^= 1;
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), -EPROTONOSUPPORT);
	cr_assert_eq(to->dev.status, 0);
	w.data[w.len - 4] ^= 1;
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	virtio_rng_destroy(to);
	sbuf_free(&w);
}

Test(virtio_rng, completion_marks_its_pages_dirty)
{
	struct dirty_log log;
	uint64_t buf = alloc_aa(8192), other = alloc_aa(4096);
	uint32_t id, len;

	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	drv_start(dev, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	fake_driver_log_dirty(&log);
	/* 300 bytes across buf's first two pages. */
	drv_add(0, &(struct drv_seg){ buf + 4000, 300, true }, 1);
	drv_kick(dev, 0);
	cr_assert(drv_used(0, &id, &len));
	cr_assert(drv_page_dirty(&log, drv_used_gpa(0)), "the used ring's page");
	cr_assert(drv_page_dirty(&log, buf + 4000), "the buffer's first page");
	cr_assert(drv_page_dirty(&log, buf + 4300 - 1), "the buffer's last page");
	cr_assert_not(drv_page_dirty(&log, other), "a page nobody wrote");
	cr_assert_eq(drv_dirty_pages(&log), 3, "the used ring's page (avail_event's too) and the "
		     "buffer's two");
	fake_driver_log_dirty(NULL);
	dirty_log_destroy(&log);
}
