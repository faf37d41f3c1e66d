// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for virtio-rng (virtio/rng.c): rng_fill() over host buffers,
 * then the device driven through its registers by a small fake driver.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/rng.h"
#include "vmm/util.h"

/* ---- rng_fill over host buffers ---- */

static struct virtq_chain hc;

static void host_chain(struct iovec *out, unsigned int nout, struct iovec *in, unsigned int nin)
{
	memset(&hc, 0, sizeof(hc));
	for (unsigned int i = 0; i < nout; i++) {
		hc.iov[hc.nout++] = out[i];
		hc.out_len += (uint32_t)out[i].iov_len;
	}
	for (unsigned int i = 0; i < nin; i++) {
		hc.iov[hc.nout + hc.nin++] = in[i];
		hc.in_len += (uint32_t)in[i].iov_len;
	}
}

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
	host_chain(NULL, 0, (struct iovec[]){ { buf, sizeof(buf) } }, 1);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 64);
	cr_assert(filled(buf, sizeof(buf)));
}

Test(rng_fill, several_segments_and_empty_ones)
{
	uint8_t a[64], b[64];

	memset(a, 0xaa, sizeof(a));
	memset(b, 0xaa, sizeof(b));
	host_chain(NULL, 0, (struct iovec[]){ { a, 64 }, { NULL, 0 }, { b, 64 } }, 3);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 128);
	cr_assert(filled(a, 64));
	cr_assert(filled(b, 64));
}

Test(rng_fill, readable_segments_are_ignored)
{
	uint8_t ro[64], w[64];

	memset(ro, 0xaa, sizeof(ro));
	memset(w, 0xaa, sizeof(w));
	host_chain((struct iovec[]){ { ro, sizeof(ro) } }, 1, (struct iovec[]){ { w, sizeof(w) } }, 1);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 64);
	cr_assert(untouched(ro, sizeof(ro)));
	cr_assert(filled(w, sizeof(w)));
}

Test(rng_fill, nothing_writable)
{
	uint8_t ro[16];

	host_chain((struct iovec[]){ { ro, sizeof(ro) } }, 1, NULL, 0);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 0);
	host_chain(NULL, 0, NULL, 0);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 0);
	host_chain(NULL, 0, (struct iovec[]){ { ro, 0 } }, 1);
	cr_assert_eq(rng_fill(&hc, RNG_CHAIN_MAX), 0);
}

Test(rng_fill, stops_at_max)
{
	uint8_t a[100], b[100];

	memset(a, 0xaa, sizeof(a));
	memset(b, 0xaa, sizeof(b));
	host_chain(NULL, 0, (struct iovec[]){ { a, sizeof(a) }, { b, sizeof(b) } }, 2);
	cr_assert_eq(rng_fill(&hc, 164), 164);
	cr_assert(filled(b, 64));
	cr_assert(untouched(b + 64, 36), "bytes past max were written");
}

/* ---- the device with a fake driver ---- */

#define RAM_SIZE	(4 << 20)
#define BASE		0xd0000000ULL
#define GSI		6
#define QSIZE		64
#define RING_GPA	0x10000ULL
#define BUF_GPA		0x100000ULL

struct drv_queue {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t next_desc, avail_idx, used_seen;
};

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

static uint8_t *ram;
static struct guest_mem mem;
static struct event_loop loop;
static struct virtio_host host;
static struct virtio_mmio_dev *dev;
static struct drv_queue dq;
static uint64_t buf_next;

static int fake_ioeventfd(struct virtio_host *h, uint64_t addr, uint32_t dm, int fd, bool assign)
{
	return 0;
}

static int fake_irqfd(struct virtio_host *h, uint32_t gsi, int fd, bool assign)
{
	return 0;
}

static void *gpa_ptr(uint64_t gpa)
{
	return ram + gpa;
}

static uint64_t alloc_buf(size_t len)
{
	uint64_t gpa = buf_next;

	buf_next += ALIGN_UP(len, 64);
	cr_assert_leq(buf_next, RAM_SIZE);
	memset(gpa_ptr(gpa), 0xaa, len);
	return gpa;
}

static uint32_t rd(uint64_t off)
{
	uint32_t v = 0;

	virtio_mmio_io(dev, off, (uint8_t *)&v, 4, false);
	return le32toh(v);
}

static void wr(uint64_t off, uint32_t v)
{
	v = htole32(v);
	virtio_mmio_io(dev, off, (uint8_t *)&v, 4, true);
}

static void drv_start(uint64_t features)
{
	uint64_t desc = RING_GPA, avail = desc + 16 * QSIZE, used = desc + 0x8000;
	uint32_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;

	features |= 1ULL << VIRTIO_F_VERSION_1;
	memset(gpa_ptr(desc), 0, 0x10000);
	dq = (struct drv_queue){ .desc = gpa_ptr(desc), .avail = gpa_ptr(avail), .used = gpa_ptr(used) };
	wr(VIRTIO_MMIO_STATUS, s);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	s |= VIRTIO_CONFIG_S_FEATURES_OK;
	wr(VIRTIO_MMIO_STATUS, s);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, "features refused");
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_geq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), QSIZE);
	wr(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	wr(VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(virtio_mmio_is_active(dev));
}

static uint16_t drv_add(const struct seg *segs, unsigned int nsegs)
{
	uint16_t head = dq.next_desc;

	for (unsigned int i = 0; i < nsegs; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);

		dq.desc[idx].addr = htole64(segs[i].gpa);
		dq.desc[idx].len = htole32(segs[i].len);
		dq.desc[idx].flags = htole16((segs[i].writable ? VRING_DESC_F_WRITE : 0) |
					     (i + 1 < nsegs ? VRING_DESC_F_NEXT : 0));
		dq.desc[idx].next = htole16((uint16_t)((idx + 1) % QSIZE));
	}
	dq.next_desc = (uint16_t)((head + nsegs) % QSIZE);
	dq.avail->ring[dq.avail_idx % QSIZE] = htole16(head);
	dq.avail_idx++;
	__atomic_store_n(&dq.avail->idx, htole16(dq.avail_idx), __ATOMIC_RELEASE);
	return head;
}

static void drv_kick(void)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static bool drv_used(uint32_t *id, uint32_t *len)
{
	if (le16toh(__atomic_load_n(&dq.used->idx, __ATOMIC_ACQUIRE)) == dq.used_seen)
		return false;
	*id = le32toh(dq.used->ring[dq.used_seen % QSIZE].id);
	*len = le32toh(dq.used->ring[dq.used_seen % QSIZE].len);
	dq.used_seen++;
	return true;
}

static void setup(void)
{
	ram = aligned_alloc(4096, RAM_SIZE);
	cr_assert_not_null(ram);
	memset(ram, 0, RAM_SIZE);
	guest_mem_init_from_buffer(&mem, ram, 0, RAM_SIZE);
	cr_assert_eq(event_loop_init(&loop), 0);
	host = (struct virtio_host){ .mem = &mem, .loop = &loop, .ioeventfd = fake_ioeventfd,
				     .irqfd = fake_irqfd };
	buf_next = BUF_GPA;
	dev = virtio_rng_create(&host, "virtio-rng0", BASE, GSI);
	cr_assert_not_null(dev);
}

static void teardown(void)
{
	dev->ops->destroy(dev);
	event_loop_destroy(&loop);
	free(ram);
}

TestSuite(virtio_rng, .init = setup, .fini = teardown);

Test(virtio_rng, identity)
{
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), RNG_QUEUE_SIZE);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "one queue only");
}

Test(virtio_rng, fills_requests)
{
	uint64_t a = alloc_buf(64), b = alloc_buf(32), ro = alloc_buf(16);
	uint32_t id, len;
	uint16_t h1, h2;

	drv_start(1ULL << VIRTIO_RING_F_EVENT_IDX);
	h1 = drv_add(&(struct seg){ a, 64, true }, 1);
	h2 = drv_add((struct seg[]){ { ro, 16, false }, { b, 32, true } }, 2);
	drv_kick();
	cr_assert(drv_used(&id, &len));
	cr_assert_eq(id, h1);
	cr_assert_eq(len, 64);
	cr_assert(filled(gpa_ptr(a), 64));
	cr_assert(drv_used(&id, &len));
	cr_assert_eq(id, h2);
	cr_assert_eq(len, 32, "the used length counts written bytes only");
	cr_assert(filled(gpa_ptr(b), 32));
	cr_assert(untouched(gpa_ptr(ro), 16), "a readable buffer was written");
	cr_assert_not(drv_used(&id, &len));
	cr_assert_eq(le16toh(*(uint16_t *)&dq.used->ring[QSIZE]), dq.avail_idx,
		     "avail_event asks for a kick at the next request");
}

Test(virtio_rng, request_without_writable_bytes_is_answered_empty)
{
	uint64_t ro = alloc_buf(16);
	uint32_t id, len;
	uint16_t h;

	drv_start(0);
	h = drv_add(&(struct seg){ ro, 16, false }, 1);
	drv_kick();
	cr_assert(drv_used(&id, &len));
	cr_assert_eq(id, h);
	cr_assert_eq(len, 0);
	cr_assert(untouched(gpa_ptr(ro), 16));
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_rng, huge_request_is_capped)
{
	uint64_t big = alloc_buf(RNG_CHAIN_MAX + 4096);
	uint32_t id, len;

	drv_start(0);
	drv_add(&(struct seg){ big, RNG_CHAIN_MAX + 4096, true }, 1);
	drv_kick();
	cr_assert(drv_used(&id, &len));
	cr_assert_eq(len, RNG_CHAIN_MAX);
	cr_assert(untouched(gpa_ptr(big + RNG_CHAIN_MAX), 4096));
}

Test(virtio_rng, malformed_ring_needs_reset_and_reset_recovers)
{
	uint64_t a = alloc_buf(64);
	uint32_t id, len;

	drv_start(0);
	dq.avail->ring[0] = htole16(QSIZE);	/* head out of range */
	__atomic_store_n(&dq.avail->idx, htole16(1), __ATOMIC_RELEASE);
	drv_kick();
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);

	wr(VIRTIO_MMIO_STATUS, 0);
	drv_start(0);
	drv_add(&(struct seg){ a, 64, true }, 1);
	drv_kick();
	cr_assert(drv_used(&id, &len));
	cr_assert_eq(len, 64);
}

Test(virtio_rng, no_work_before_driver_ok)
{
	uint64_t a = alloc_buf(64);
	uint32_t id, len;

	drv_start(0);
	wr(VIRTIO_MMIO_STATUS, 0);
	drv_add(&(struct seg){ a, 64, true }, 1);
	drv_kick();
	cr_assert_not(drv_used(&id, &len));
	cr_assert(untouched(gpa_ptr(a), 64));
}
