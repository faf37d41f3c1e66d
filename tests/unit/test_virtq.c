// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for split virtqueues (virtio/virtq.c) against a fake guest: a
 * malloc'd buffer as guest RAM, and a small driver side in this file that
 * writes descriptors and avail entries the way a guest would. Well-formed
 * chains, notification decisions, and hostile rings: each of those must leave
 * the queue broken with -EIO, say why in the log, and never touch host memory
 * outside the fake guest (run under ASan/UBSan to check the last part).
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio/virtq.h"
#include "vmm/base/guest_mem.h"

/* The fake guest: RAM_SIZE bytes at RAM_GPA, laid out as below (offsets into RAM). */
#define RAM_GPA		0x100000ULL
#define RAM_SIZE	0x10000ULL
#define DESC_GPA	(RAM_GPA + 0x0000)	/* up to 256 entries */
#define AVAIL_GPA	(RAM_GPA + 0x1000)
#define USED_GPA	(RAM_GPA + 0x2000)
#define TABLE_GPA	(RAM_GPA + 0x4000)	/* indirect tables, up to 1025 entries */
#define BUF_GPA		(RAM_GPA + 0x9000)	/* data buffers, to the end of RAM */
#define RAM_END		(RAM_GPA + RAM_SIZE)
#define BIG_GPA		(1ULL << 32)
#define BIG_SIZE	(8ULL << 30)

#define R		0			/* device-readable */
#define W		VRING_DESC_F_WRITE	/* device-writable */
#define N		VRING_DESC_F_NEXT
#define I		VRING_DESC_F_INDIRECT

static uint8_t *ram, *ram2;		/* ram2: the second region of two-region guests */
static void *big_ram;			/* an 8 GiB PROT_NONE region for length tests */
static struct guest_mem mem;
static struct virtq vq;
static struct virtq_chain chain;
static uint16_t drv_avail_idx;		/* the driver's next avail index */
static FILE *log_file;			/* stderr goes here during each test */
static int saved_stderr = -1;

static void setup(void)
{
	ram = aligned_alloc(4096, RAM_SIZE);
	cr_assert_not_null(ram);
	memset(ram, 0, RAM_SIZE);
	guest_mem_init_from_buffer(&mem, ram, RAM_GPA, RAM_SIZE);
	virtq_reset(&vq, &mem);
	drv_avail_idx = 0;

	log_file = tmpfile();
	cr_assert_not_null(log_file);
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	dup2(fileno(log_file), STDERR_FILENO);
}

static void teardown(void)
{
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	fclose(log_file);
	free(ram);
	free(ram2);
	ram = ram2 = NULL;
	if (big_ram)
		munmap(big_ram, BIG_SIZE);
	big_ram = NULL;
}

TestSuite(virtq, .init = setup, .fini = teardown);

/* ---- the driver side ---- */

static void *host(uint64_t gpa)
{
	cr_assert(gpa >= RAM_GPA && gpa < RAM_END);
	return ram + (gpa - RAM_GPA);
}

static void desc_at(uint64_t table_gpa, unsigned int i, uint64_t addr, uint32_t len,
		    uint16_t flags, uint16_t next)
{
	struct vring_desc *d = (struct vring_desc *)host(table_gpa) + i;

	d->addr = htole64(addr);
	d->len = htole32(len);
	d->flags = htole16(flags);
	d->next = htole16(next);
}

/* A descriptor in the ring's table / in the indirect table at TABLE_GPA. */
#define DESC(i, addr, len, flags, next)		desc_at(DESC_GPA, i, addr, len, flags, next)
#define IDESC(i, addr, len, flags, next)	desc_at(TABLE_GPA, i, addr, len, flags, next)

static struct vring_avail *avail(void)
{
	return host(AVAIL_GPA);
}

static struct vring_used *used(void)
{
	return host(USED_GPA);
}

static void avail_set_idx(uint16_t idx)
{
	__atomic_store_n(&avail()->idx, htole16(idx), __ATOMIC_RELEASE);
}

/* Makes the chain at head available. */
static void avail_add(uint16_t head)
{
	avail()->ring[drv_avail_idx & (vq.size - 1)] = htole16(head);
	avail_set_idx(++drv_avail_idx);
}

static uint16_t *used_event(void)
{
	return &avail()->ring[vq.size];
}

static uint16_t *avail_event(void)
{
	return (uint16_t *)&used()->ring[vq.size];
}

static void start_queue(uint16_t size, bool event_idx, bool indirect)
{
	vq.size = size;
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = USED_GPA;
	vq.event_idx = event_idx;
	vq.indirect = indirect;
	cr_assert_eq(virtq_start(&vq), 0);
	cr_assert(vq.ready);
}

/*
 * Splits the guest into two regions: [RAM_GPA, +half) backed by ram and
 * [RAM_GPA + half + gap, +half) backed by a separate buffer, ram2.
 */
static void two_regions(uint64_t gap)
{
	uint64_t half = RAM_SIZE / 2;

	ram2 = aligned_alloc(4096, half);
	cr_assert_not_null(ram2);
	memset(ram2, 0, half);
	memset(&mem, 0, sizeof(mem));
	mem.fd = -1;
	mem.regions[0] = (struct guest_region){ .gpa = RAM_GPA, .size = half, .hva = ram };
	mem.regions[1] = (struct guest_region){ .gpa = RAM_GPA + half + gap, .size = half,
						.hva = ram2, .fd_offset = half };
	mem.nregions = 2;
	mem.size = RAM_SIZE;
}

/* Adds an 8 GiB region at BIG_GPA: inaccessible, but pop only maps buffers. */
static void add_big_region(void)
{
	big_ram = mmap(NULL, BIG_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(big_ram, MAP_FAILED);
	mem.regions[1] = (struct guest_region){ .gpa = BIG_GPA, .size = BIG_SIZE, .hva = big_ram };
	mem.nregions = 2;
}

/* ---- checks ---- */

/* Whether the log written so far contains needle. */
static bool log_has(const char *needle)
{
	static char buf[8192];
	size_t n;

	fflush(stderr);
	n = pread(fileno(log_file), buf, sizeof(buf) - 1, 0);
	buf[n == (size_t)-1 ? 0 : n] = '\0';
	return strstr(buf, needle);
}

static const char *log_text(void)
{
	static char buf[8192];
	ssize_t n = pread(fileno(log_file), buf, sizeof(buf) - 1, 0);

	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

static bool iov_inside(const struct iovec *v, const uint8_t *base, size_t size)
{
	const uint8_t *p = v->iov_base;

	return p >= base && v->iov_len <= size && (size_t)(p - base) <= size - v->iov_len;
}

/* Every iovec of chain lies in the fake guest's host memory. */
static void expect_iovs_in_guest(void)
{
	cr_assert_leq(chain.nout + chain.nin, VIRTQ_MAX_IOV);
	for (unsigned int i = 0; i < chain.nout + chain.nin; i++)
		cr_assert(iov_inside(&chain.iov[i], ram, RAM_SIZE) ||
			  (ram2 && iov_inside(&chain.iov[i], ram2, RAM_SIZE / 2)) ||
			  (big_ram && iov_inside(&chain.iov[i], big_ram, BIG_SIZE)),
			  "iov %u outside the guest", i);
}

static void expect_iov(unsigned int i, uint64_t gpa, size_t len)
{
	cr_assert_eq(chain.iov[i].iov_base, host(gpa), "iov %u base", i);
	cr_assert_eq(chain.iov[i].iov_len, len, "iov %u len %zu, want %zu", i,
		     chain.iov[i].iov_len, len);
}

static void expect_pop(uint16_t head, unsigned int nout, unsigned int nin,
		       uint32_t out_len, uint32_t in_len)
{
	int ret = virtq_pop(&vq, &chain);

	cr_assert_eq(ret, 1, "pop returned %d; log: %s", ret, log_text());
	cr_assert_eq(chain.head, head);
	cr_assert_eq(chain.nout, nout, "nout %u, want %u", chain.nout, nout);
	cr_assert_eq(chain.nin, nin, "nin %u, want %u", chain.nin, nin);
	cr_assert_eq(chain.out_len, out_len);
	cr_assert_eq(chain.in_len, in_len);
	expect_iovs_in_guest();
}

/* The queue is broken: every operation fails, and the log says why. */
static void expect_broken(const char *why)
{
	cr_assert(vq.broken);
	cr_assert_eq(virtq_pop(&vq, &chain), -EIO);
	cr_assert_eq(virtq_push(&vq, 0, 0), -EIO);
	cr_assert_not(virtq_has_work(&vq));
	cr_assert_not(virtq_should_notify(&vq));
	cr_assert(log_has(why), "log does not mention '%s': %s", why, log_text());
	cr_assert(log_has("virtqueue: "));
}

static void expect_pop_fails(const char *why)
{
	uint16_t last = vq.last_avail_idx;
	int ret = virtq_pop(&vq, &chain);

	cr_assert_eq(ret, -EIO, "pop returned %d, want -EIO", ret);
	cr_assert_eq(vq.last_avail_idx, last, "a failed pop consumed the entry");
	expect_broken(why);
}

/* ---- virtq_start ---- */

Test(virtq, start_maps_rings)
{
	start_queue(256, false, false);
	cr_assert_eq((void *)vq.desc, host(DESC_GPA));
	cr_assert_eq((void *)vq.avail, host(AVAIL_GPA));
	cr_assert_eq((void *)vq.used, host(USED_GPA));
	cr_assert_eq(vq.last_avail_idx, 0);
	cr_assert_eq(vq.used_idx, 0);
	cr_assert_not(vq.broken);
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
	cr_assert_not(virtq_has_work(&vq));
}

Test(virtq, start_accepts_all_power_of_two_sizes)
{
	static const uint16_t sizes[] = { 1, 2, 4, 64, 256 };

	for (unsigned int i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		virtq_reset(&vq, &mem);
		start_queue(sizes[i], true, true);
	}
}

/* Sets up vq with the given size and addresses and expects virtq_start to refuse it. */
static void expect_start_fails(uint32_t size, uint64_t desc, uint64_t avail_gpa, uint64_t used_gpa)
{
	virtq_reset(&vq, &mem);
	vq.size = (uint16_t)size;
	vq.desc_gpa = desc;
	vq.avail_gpa = avail_gpa;
	vq.used_gpa = used_gpa;
	cr_assert_eq(virtq_start(&vq), -EINVAL, "size %u desc %#lx avail %#lx used %#lx", size,
		     (unsigned long)desc, (unsigned long)avail_gpa, (unsigned long)used_gpa);
	cr_assert_not(vq.ready);
	cr_assert_null(vq.desc);
	cr_assert_null(vq.avail);
	cr_assert_null(vq.used);
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
	cr_assert_eq(virtq_push(&vq, 0, 0), -EIO);
}

Test(virtq, start_rejects_bad_size)
{
	expect_start_fails(0, DESC_GPA, AVAIL_GPA, USED_GPA);
	expect_start_fails(3, DESC_GPA, AVAIL_GPA, USED_GPA);
	expect_start_fails(100, DESC_GPA, AVAIL_GPA, USED_GPA);
	expect_start_fails(0xffff, DESC_GPA, AVAIL_GPA, USED_GPA);
	/* A valid size whose rings do not fit in the fake guest. */
	expect_start_fails(VIRTQ_MAX_SIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
}

Test(virtq, start_rejects_misaligned_rings)
{
	expect_start_fails(8, DESC_GPA + 8, AVAIL_GPA, USED_GPA);
	expect_start_fails(8, DESC_GPA + 1, AVAIL_GPA, USED_GPA);
	expect_start_fails(8, DESC_GPA, AVAIL_GPA + 1, USED_GPA);
	expect_start_fails(8, DESC_GPA, AVAIL_GPA, USED_GPA + 2);
	expect_start_fails(8, DESC_GPA, AVAIL_GPA, USED_GPA + 1);
}

Test(virtq, start_rejects_rings_outside_ram)
{
	/* Entirely outside. */
	expect_start_fails(8, 0, AVAIL_GPA, USED_GPA);
	expect_start_fails(8, DESC_GPA, RAM_END, USED_GPA);
	expect_start_fails(8, DESC_GPA, AVAIL_GPA, UINT64_MAX - 3);
	/* Running past the end of RAM. */
	expect_start_fails(8, RAM_END - 16 * 4, AVAIL_GPA, USED_GPA);
	/* Only the trailing used_event / avail_event field is outside. */
	expect_start_fails(8, DESC_GPA, RAM_END - (4 + 2 * 8), USED_GPA);
	expect_start_fails(8, DESC_GPA, AVAIL_GPA, RAM_END - (4 + 8 * 8));
	/* The same rings fit when those two bytes are there. */
	virtq_reset(&vq, &mem);
	vq.size = 8;
	vq.desc_gpa = RAM_END - 16 * 8;
	vq.avail_gpa = RAM_END - 0x400 - (6 + 2 * 8);
	vq.used_gpa = RAM_END - 0x200 - (6 + 8 * 8) - 2;
	cr_assert_eq(virtq_start(&vq), 0);
}

Test(virtq, start_needs_guest_mem)
{
	virtq_reset(&vq, NULL);
	vq.size = 8;
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = USED_GPA;
	cr_assert_eq(virtq_start(&vq), -EINVAL);
	cr_assert_not(vq.ready);
}

Test(virtq, start_rejects_rings_across_regions)
{
	two_regions(0);
	/* The descriptor table straddles the boundary between two adjacent regions. */
	expect_start_fails(8, RAM_GPA + RAM_SIZE / 2 - 64, AVAIL_GPA, USED_GPA);
}

Test(virtq, not_ready_queue_does_nothing)
{
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
	cr_assert_eq(virtq_push(&vq, 0, 0), -EIO);
	cr_assert_not(virtq_has_work(&vq));
	cr_assert_not(virtq_should_notify(&vq));
	virtq_set_notify(&vq, false);
	virtq_unpop(&vq);
	cr_assert_eq(vq.last_avail_idx, 0);
}

/* ---- well-formed chains ---- */

Test(virtq, pop_readable_only)
{
	start_queue(8, false, false);
	DESC(3, BUF_GPA, 100, R, 0);
	avail_add(3);
	cr_assert(virtq_has_work(&vq));
	expect_pop(3, 1, 0, 100, 0);
	expect_iov(0, BUF_GPA, 100);
	cr_assert_not(virtq_has_work(&vq));
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
}

Test(virtq, pop_writable_only)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA + 0x100, 512, W, 0);
	avail_add(0);
	expect_pop(0, 0, 1, 0, 512);
	expect_iov(0, BUF_GPA + 0x100, 512);
}

Test(virtq, pop_readable_then_writable_chain)
{
	start_queue(8, false, false);
	/* 5 -> 2 -> 7 -> 1: two readable, two writable, in table order that is not sequential. */
	DESC(5, BUF_GPA, 16, R | N, 2);
	DESC(2, BUF_GPA + 0x100, 32, R | N, 7);
	DESC(7, BUF_GPA + 0x200, 64, W | N, 1);
	DESC(1, BUF_GPA + 0x300, 1, W, 6);	/* next is ignored without NEXT */
	avail_add(5);
	expect_pop(5, 2, 2, 48, 65);
	expect_iov(0, BUF_GPA, 16);
	expect_iov(1, BUF_GPA + 0x100, 32);
	expect_iov(2, BUF_GPA + 0x200, 64);
	expect_iov(3, BUF_GPA + 0x300, 1);
}

Test(virtq, pop_chain_as_long_as_the_ring)
{
	start_queue(8, false, false);
	for (unsigned int i = 0; i < 8; i++)
		DESC(i, BUF_GPA + 16 * i, 16, (i < 4 ? R : W) | (i < 7 ? N : 0), i + 1);
	avail_add(0);
	expect_pop(0, 4, 4, 64, 64);
}

Test(virtq, zero_length_descriptors_make_no_iovec)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 0, R | N, 1);
	DESC(1, BUF_GPA, 10, R | N, 2);
	DESC(2, 0, 0, W | N, 3);	/* address irrelevant when empty */
	DESC(3, BUF_GPA + 0x100, 20, W, 0);
	avail_add(0);
	expect_pop(0, 1, 1, 10, 20);
	expect_iov(0, BUF_GPA, 10);
	expect_iov(1, BUF_GPA + 0x100, 20);
}

Test(virtq, pops_in_avail_order)
{
	start_queue(8, false, false);
	DESC(4, BUF_GPA, 1, R, 0);
	DESC(6, BUF_GPA + 1, 2, R, 0);
	DESC(0, BUF_GPA + 3, 3, W, 0);
	avail_add(6);
	avail_add(0);
	avail_add(4);
	expect_pop(6, 1, 0, 2, 0);
	expect_pop(0, 0, 1, 0, 3);
	expect_pop(4, 1, 0, 1, 0);
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
}

Test(virtq, full_ring_is_accepted)
{
	start_queue(4, false, false);
	for (unsigned int i = 0; i < 4; i++) {
		DESC(i, BUF_GPA + i, 1, R, 0);
		avail_add((uint16_t)(3 - i));
	}
	for (unsigned int i = 0; i < 4; i++)
		expect_pop((uint16_t)(3 - i), 1, 0, 1, 0);
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
}

Test(virtq, push_publishes_used_element)
{
	start_queue(8, false, false);
	DESC(2, BUF_GPA, 8, W, 0);
	DESC(5, BUF_GPA + 8, 8, W, 0);
	avail_add(2);
	avail_add(5);
	expect_pop(2, 0, 1, 0, 8);
	expect_pop(5, 0, 1, 0, 8);
	cr_assert_eq(virtq_push(&vq, 5, 7), 0);
	cr_assert_eq(le16toh(used()->idx), 1);
	cr_assert_eq(le32toh(used()->ring[0].id), 5);
	cr_assert_eq(le32toh(used()->ring[0].len), 7);
	cr_assert_eq(virtq_push(&vq, 2, 0), 0);
	cr_assert_eq(le16toh(used()->idx), 2);
	cr_assert_eq(le32toh(used()->ring[1].id), 2);
	cr_assert_eq(le32toh(used()->ring[1].len), 0);
	cr_assert_not(vq.broken);
}

Test(virtq, indices_wrap_around)
{
	start_queue(4, false, false);
	for (unsigned int i = 0; i < 4; i++)
		DESC(i, BUF_GPA + 16 * i, 16, W, 0);
	/* 70000 requests: both 16-bit indices wrap past 0xffff. */
	for (uint32_t n = 0; n < 70000; n++) {
		uint16_t head = n % 4;

		avail_add(head);
		if (n % 3 == 0)
			cr_assert(virtq_has_work(&vq));
		cr_assert_eq(virtq_pop(&vq, &chain), 1, "request %u: %s", n, log_text());
		cr_assert_eq(chain.head, head);
		cr_assert_eq(virtq_push(&vq, head, n & 0xff), 0);
		cr_assert_eq(le16toh(used()->idx), (uint16_t)(n + 1));
		cr_assert_eq(le32toh(used()->ring[n % 4].id), head);
	}
	cr_assert_eq(vq.last_avail_idx, (uint16_t)70000);
	cr_assert_eq(vq.used_idx, (uint16_t)70000);
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
}

Test(virtq, avail_ahead_by_size_across_wrap)
{
	start_queue(8, false, false);
	for (unsigned int i = 0; i < 8; i++)
		DESC(i, BUF_GPA + i, 1, R, 0);
	/* Walk the indices up to just below the wrap. */
	for (uint32_t n = 0; n < 0xfffc; n++) {
		avail_add(n % 8);
		cr_assert_eq(virtq_pop(&vq, &chain), 1);
	}
	/* Now a full ring whose avail index wraps to a small number. */
	for (unsigned int i = 0; i < 8; i++)
		avail_add(i);
	cr_assert_eq(le16toh(avail()->idx), 4);
	for (unsigned int i = 0; i < 8; i++)
		expect_pop(i, 1, 0, 1, 0);
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
}

Test(virtq, unpop_returns_the_chain)
{
	start_queue(8, false, false);
	DESC(1, BUF_GPA, 4, R, 0);
	DESC(2, BUF_GPA, 8, R, 0);
	avail_add(1);
	avail_add(2);
	expect_pop(1, 1, 0, 4, 0);
	virtq_unpop(&vq);
	cr_assert(virtq_has_work(&vq));
	expect_pop(1, 1, 0, 4, 0);
	expect_pop(2, 1, 0, 8, 0);
	virtq_unpop(&vq);
	expect_pop(2, 1, 0, 8, 0);
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
}

Test(virtq, reset_then_start_again)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 4, R, 9);
	avail_add(0);
	expect_pop(0, 1, 0, 4, 0);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	virtq_reset(&vq, &mem);
	cr_assert_not(vq.ready);
	cr_assert_eq(vq.size, 0);
	cr_assert_eq(vq.mem, &mem);
	/* The driver zeroes its rings and starts over. */
	memset(ram, 0, 0x3000);
	drv_avail_idx = 0;
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 4, R, 0);
	avail_add(0);
	expect_pop(0, 1, 0, 4, 0);
}

/* ---- saved state: virtq_save / virtq_start_from ---- */

Test(virtq, saved_mid_stream_restarts_where_it_stopped)
{
	struct virtq_state st;
	struct virtq vq2;

	start_queue(8, true, false);
	for (unsigned int i = 0; i < 8; i++)
		DESC(i, BUF_GPA + 16 * i, 16, W, 0);
	/* 13 chains offered: 9 popped and pushed (indices past one lap of the ring), 4 waiting. */
	for (uint16_t n = 0; n < 9; n++) {
		avail_add(n % 8);
		expect_pop(n % 8, 0, 1, 0, 16);
		cr_assert_eq(virtq_push(&vq, n % 8, n), 0);
	}
	cr_assert(virtq_should_notify(&vq));
	for (uint16_t n = 9; n < 13; n++)
		avail_add(n % 8);
	virtq_save(&vq, &st);
	cr_assert(st.ready && st.event_idx && !st.indirect);
	cr_assert_eq(st.size, 8);
	cr_assert_eq(st.desc_gpa, DESC_GPA);
	cr_assert_eq(st.last_avail_idx, 9);
	cr_assert_eq(st.used_idx, 9);
	cr_assert_eq(st.signalled_used, 9);
	cr_assert(st.signalled_used_valid);

	/* A fresh queue (another back-end, or another host) continues from the state. */
	memset(&vq2, 0xa5, sizeof(vq2));
	cr_assert_eq(virtq_start_from(&vq2, &mem, &st), 0);
	cr_assert(vq2.ready);
	cr_assert(virtq_has_work(&vq2));
	for (uint16_t n = 9; n < 13; n++) {
		cr_assert_eq(virtq_pop(&vq2, &chain), 1, "chain %u: %s", n, log_text());
		cr_assert_eq(chain.head, n % 8, "chain %u is neither lost nor repeated", n);
		cr_assert_eq(virtq_push(&vq2, chain.head, n), 0);
	}
	cr_assert_eq(virtq_pop(&vq2, &chain), 0, "nothing more than what the driver offered");
	cr_assert_eq(le16toh(used()->idx), 13, "used index continues from 9");
	for (uint16_t n = 9; n < 13; n++) {
		cr_assert_eq(le32toh(used()->ring[n % 8].id), n % 8);
		cr_assert_eq(le32toh(used()->ring[n % 8].len), n);
	}
	/* The notification history came along: used_event at 10 was crossed by 13. */
	*used_event() = htole16(10);
	cr_assert(virtq_should_notify(&vq2));
}

Test(virtq, start_from_keeps_signalled_used)
{
	struct virtq_state st;

	start_queue(8, true, false);
	DESC(0, BUF_GPA, 4, W, 0);
	avail_add(0);
	expect_pop(0, 0, 1, 0, 4);
	cr_assert_eq(virtq_push(&vq, 0, 4), 0);
	cr_assert(virtq_should_notify(&vq));	/* signalled_used = 1 */
	virtq_save(&vq, &st);
	cr_assert_eq(virtq_start_from(&vq, &mem, &st), 0);
	/* The driver asked for an interrupt after used index 1: nothing new was pushed. */
	*used_event() = htole16(1);
	cr_assert_not(virtq_should_notify(&vq), "a restart does not invent an interrupt");
}

Test(virtq, start_from_refuses_what_start_refuses)
{
	struct virtq_state st = {
		.size = 8, .desc_gpa = DESC_GPA, .avail_gpa = AVAIL_GPA, .used_gpa = USED_GPA,
		.ready = true, .last_avail_idx = 5, .used_idx = 5,
	};

	cr_assert_eq(virtq_check_rings(&mem, &st), 0);
	cr_assert_eq(virtq_start_from(&vq, &mem, &st), 0);
	cr_assert_eq(vq.last_avail_idx, 5);
	st.avail_gpa = AVAIL_GPA + 1;
	cr_assert_eq(virtq_check_rings(&mem, &st), -EINVAL);
	cr_assert_eq(virtq_start_from(&vq, &mem, &st), -EINVAL);
	cr_assert_not(vq.ready);
	st.avail_gpa = AVAIL_GPA;
	st.size = 6;
	cr_assert_eq(virtq_start_from(&vq, &mem, &st), -EINVAL);
	st.size = 8;
	st.used_gpa = RAM_END - 8;
	cr_assert_eq(virtq_start_from(&vq, &mem, &st), -EINVAL);
	st.used_gpa = USED_GPA;
	st.ready = false;
	cr_assert_eq(virtq_start_from(&vq, &mem, &st), -EINVAL,
		     "a queue the driver did not enable");
}

/* ---- chain_read / chain_write ---- */

Test(virtq, chain_read_and_write_across_segments)
{
	uint8_t out[64], in[64];

	start_queue(8, false, false);
	memcpy(host(BUF_GPA), "hello, ", 7);
	memcpy(host(BUF_GPA + 0x100), "world", 5);
	DESC(0, BUF_GPA, 7, R | N, 1);
	DESC(1, BUF_GPA + 0x100, 5, R | N, 2);
	DESC(2, BUF_GPA + 0x200, 3, W | N, 3);
	DESC(3, BUF_GPA + 0x300, 4, W, 0);
	avail_add(0);
	expect_pop(0, 2, 2, 12, 7);

	memset(out, 0, sizeof(out));
	cr_assert_eq(virtq_chain_read(&chain, 0, out, sizeof(out)), 12);
	cr_assert_arr_eq(out, "hello, world", 12);
	cr_assert_eq(virtq_chain_read(&chain, 5, out, 4), 4);
	cr_assert_arr_eq(out, ", wo", 4);
	cr_assert_eq(virtq_chain_read(&chain, 7, out, 100), 5);
	cr_assert_arr_eq(out, "world", 5);
	cr_assert_eq(virtq_chain_read(&chain, 12, out, 1), 0);
	cr_assert_eq(virtq_chain_read(&chain, 1000, out, 1), 0);
	cr_assert_eq(virtq_chain_read(&chain, 0, out, 0), 0);

	memset(in, 'x', sizeof(in));
	cr_assert_eq(virtq_chain_write(&chain, 0, "ABCDEFGHIJ", 10), 7);
	cr_assert_arr_eq(host(BUF_GPA + 0x200), "ABC", 3);
	cr_assert_arr_eq(host(BUF_GPA + 0x300), "DEFG", 4);
	cr_assert_eq(*(uint8_t *)host(BUF_GPA + 0x304), 0);
	cr_assert_eq(virtq_chain_write(&chain, 2, "xy", 2), 2);
	cr_assert_arr_eq(host(BUF_GPA + 0x200), "ABx", 3);
	cr_assert_arr_eq(host(BUF_GPA + 0x300), "yEFG", 4);
	cr_assert_eq(virtq_chain_write(&chain, 7, in, 1), 0);
	/* Reads never see the writable part, writes never touch the readable part. */
	cr_assert_arr_eq(host(BUF_GPA), "hello, ", 7);
}

/* ---- indirect descriptors ---- */

Test(virtq, indirect_table)
{
	start_queue(8, false, true);
	IDESC(0, BUF_GPA, 10, R | N, 2);
	IDESC(2, BUF_GPA + 0x100, 20, W | N, 1);
	IDESC(1, BUF_GPA + 0x200, 30, W, 0);
	DESC(6, TABLE_GPA, 3 * 16, I | W, 0);	/* WRITE on the pointing descriptor is ignored */
	avail_add(6);
	expect_pop(6, 1, 2, 10, 50);
	expect_iov(0, BUF_GPA, 10);
	expect_iov(1, BUF_GPA + 0x100, 20);
	expect_iov(2, BUF_GPA + 0x200, 30);
}

Test(virtq, indirect_after_direct_descriptors)
{
	/* A chain may end in an indirect table (INDIRECT must not have NEXT, so only at the end). */
	start_queue(8, false, true);
	DESC(0, BUF_GPA, 4, R | N, 1);
	DESC(1, TABLE_GPA, 2 * 16, I, 0);
	IDESC(0, BUF_GPA + 0x10, 5, R | N, 1);
	IDESC(1, BUF_GPA + 0x20, 6, W, 0);
	avail_add(0);
	expect_pop(0, 2, 1, 9, 6);
}

Test(virtq, indirect_table_of_one_entry)
{
	start_queue(1, false, true);
	IDESC(0, BUF_GPA, 10, W, 0);
	DESC(0, TABLE_GPA, 16, I, 0);
	avail_add(0);
	expect_pop(0, 0, 1, 0, 10);
}

Test(virtq, indirect_table_across_adjacent_regions)
{
	uint64_t boundary = RAM_GPA + RAM_SIZE / 2;
	struct vring_desc t[4];

	two_regions(0);
	start_queue(8, false, true);
	/* 4 entries: the first two in region 0, the last two in region 1. */
	for (unsigned int i = 0; i < 4; i++)
		t[i] = (struct vring_desc){ .addr = htole64(BUF_GPA + i), .len = htole32(1),
					    .flags = htole16(R | (i < 3 ? N : 0)),
					    .next = htole16(i + 1) };
	cr_assert_eq(guest_mem_write(&mem, boundary - 32, t, sizeof(t)), 0);
	DESC(0, boundary - 32, sizeof(t), I, 0);
	avail_add(0);
	expect_pop(0, 4, 0, 4, 0);
}

Test(virtq, chain_with_max_iov_segments)
{
	start_queue(8, false, true);
	for (unsigned int i = 0; i < VIRTQ_MAX_IOV; i++)
		IDESC(i, BUF_GPA + i, 1, R | (i + 1 < VIRTQ_MAX_IOV ? N : 0), i + 1);
	DESC(0, TABLE_GPA, 16 * VIRTQ_MAX_IOV, I, 0);
	avail_add(0);
	expect_pop(0, VIRTQ_MAX_IOV, 0, VIRTQ_MAX_IOV, 0);
}

/* ---- buffers and regions ---- */

Test(virtq, buffer_spanning_two_regions_gives_two_iovecs)
{
	uint64_t boundary = RAM_GPA + RAM_SIZE / 2;
	uint8_t buf[300];

	two_regions(0);
	start_queue(8, false, false);
	DESC(0, RAM_GPA + 0x5000, 8, R | N, 1);
	DESC(1, boundary - 100, 300, W, 0);
	avail_add(0);
	expect_pop(0, 1, 2, 8, 300);
	expect_iov(0, RAM_GPA + 0x5000, 8);
	cr_assert_eq(chain.iov[1].iov_base, ram + RAM_SIZE / 2 - 100);
	cr_assert_eq(chain.iov[1].iov_len, 100);
	cr_assert_eq(chain.iov[2].iov_base, ram2);
	cr_assert_eq(chain.iov[2].iov_len, 200);
	memset(buf, 0x5a, sizeof(buf));
	cr_assert_eq(virtq_chain_write(&chain, 0, buf, sizeof(buf)), 300);
	cr_assert_eq(ram[RAM_SIZE / 2 - 1], 0x5a);
	cr_assert_eq(ram2[199], 0x5a);
	cr_assert_eq(ram2[200], 0);
}

Test(virtq, large_buffer_in_large_region)
{
	/* A 4 GiB - 1 buffer is fine when RAM has it. */
	add_big_region();
	start_queue(8, false, false);
	DESC(0, BIG_GPA, 0xffffffff, R | N, 1);
	DESC(1, BIG_GPA, 0, R, 0);
	avail_add(0);
	expect_pop(0, 1, 0, 0xffffffff, 0);
	cr_assert_eq(chain.iov[0].iov_base, big_ram);
}

/* ---- notifications ---- */

Test(virtq, no_interrupt_flag_without_event_idx)
{
	start_queue(8, false, false);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert(virtq_should_notify(&vq));
	avail()->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	cr_assert_eq(virtq_push(&vq, 1, 0), 0);
	cr_assert_not(virtq_should_notify(&vq));
	avail()->flags = 0;
	cr_assert(virtq_should_notify(&vq));
	/* used_event is ignored without EVENT_IDX. */
	*used_event() = htole16(100);
	cr_assert(virtq_should_notify(&vq));
}

Test(virtq, event_idx_decisions)
{
	start_queue(8, true, false);
	/* NO_INTERRUPT is ignored with EVENT_IDX. */
	avail()->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	*used_event() = htole16(100);

	/* The first decision after start always notifies. */
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert(virtq_should_notify(&vq));
	cr_assert_eq(vq.signalled_used, 1);
	cr_assert(vq.signalled_used_valid);

	/* Nothing pushed since: no interrupt. */
	cr_assert_not(virtq_should_notify(&vq));

	/* used_event = 1: wants one once entry 1 is used (used idx goes 1 -> 2). */
	*used_event() = htole16(1);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert(virtq_should_notify(&vq));

	/* used_event = 5: not for used idx 3, 4, 5, but for 6. */
	*used_event() = htole16(5);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert_not(virtq_should_notify(&vq));
	cr_assert_eq(vq.signalled_used, 3);	/* recorded even when false */
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert_not(virtq_should_notify(&vq));
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert(virtq_should_notify(&vq));

	/* A batch that passes used_event notifies once. */
	*used_event() = htole16(7);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert(virtq_should_notify(&vq));
	cr_assert_not(virtq_should_notify(&vq));

	/* used_event already behind the batch: no interrupt. */
	*used_event() = htole16(2);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert_not(virtq_should_notify(&vq));
}

Test(virtq, event_idx_across_wrap)
{
	start_queue(8, true, false);
	for (uint32_t n = 0; n < 0xfffe; n++)
		cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert(virtq_should_notify(&vq));		/* first decision */
	*used_event() = htole16(0x0001);		/* just past the wrap */
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);	/* 0xffff */
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);	/* 0x0000 */
	cr_assert_not(virtq_should_notify(&vq));
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);	/* 0x0001 */
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);	/* 0x0002: entry 1 now used */
	cr_assert(virtq_should_notify(&vq));
}

Test(virtq, event_idx_long_silence_forces_a_notification)
{
	start_queue(8, true, false);
	cr_assert(virtq_should_notify(&vq));
	*used_event() = htole16(0);
	/* Half the index space without a decision: the old mark cannot be trusted. */
	for (uint32_t n = 0; n < 0x8000; n++)
		cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert_not(vq.signalled_used_valid);
	cr_assert(virtq_should_notify(&vq));
}

Test(virtq, set_notify_flags)
{
	start_queue(8, false, false);
	*avail_event() = htole16(0x1234);
	virtq_set_notify(&vq, false);
	cr_assert_eq(le16toh(used()->flags), VRING_USED_F_NO_NOTIFY);
	virtq_set_notify(&vq, true);
	cr_assert_eq(le16toh(used()->flags), 0);
	cr_assert_eq(le16toh(*avail_event()), 0x1234);	/* untouched without EVENT_IDX */
}

/* An EVENT_IDX queue of 8 with the same one-descriptor chain offered three times. */
static void start_with_three_offered(void)
{
	start_queue(8, true, false);
	DESC(0, BUF_GPA, 1, R, 0);
	for (int i = 0; i < 3; i++)
		avail_add(0);
}

Test(virtq, set_notify_event_idx)
{
	start_with_three_offered();
	expect_pop(0, 1, 0, 1, 0);
	expect_pop(0, 1, 0, 1, 0);
	virtq_set_notify(&vq, true);
	cr_assert_eq(le16toh(*avail_event()), 2);
	cr_assert_eq(le16toh(used()->flags), 0);	/* flags unused with EVENT_IDX */
	/* Work already waiting: the caller's re-check after enabling sees it. */
	cr_assert(virtq_has_work(&vq));
	expect_pop(0, 1, 0, 1, 0);
	virtq_set_notify(&vq, false);
	cr_assert_eq(le16toh(*avail_event()), 2);	/* disabling leaves it behind */
	cr_assert_eq(le16toh(used()->flags), 0);
	virtq_set_notify(&vq, true);
	cr_assert_eq(le16toh(*avail_event()), 3);
	cr_assert_not(virtq_has_work(&vq));
}

Test(virtq, view_shows_both_sides)
{
	struct virtq_view v;
	char line[256];

	cr_assert_not(virtq_view(&vq, &v), "a queue not started has no view");
	start_with_three_offered();
	expect_pop(0, 1, 0, 1, 0);
	cr_assert_eq(virtq_push(&vq, 0, 0), 0);
	cr_assert(virtq_should_notify(&vq));
	virtq_set_notify(&vq, true);
	*used_event() = htole16(4);
	cr_assert(virtq_view(&vq, &v));
	cr_assert_eq(v.avail_idx, 3);
	cr_assert_eq(v.last_avail_idx, 1);
	cr_assert_eq(v.used_idx, 1);
	cr_assert_eq(v.signalled_used, 1);
	cr_assert_eq(v.used_event, 4);
	cr_assert_eq(v.avail_event, 1);
	virtq_view_format(&v, line, sizeof(line));
	cr_assert_str_eq(line, "offered 3, taken 1 (2 waiting), used 1, last interrupt at 1, "
			 "driver wants one at 4, kicks wanted at 1");

	v.event_idx = false;
	v.avail_flags = VRING_AVAIL_F_NO_INTERRUPT;
	v.used_flags = 0;
	virtq_view_format(&v, line, sizeof(line));
	cr_assert_str_eq(line, "offered 3, taken 1 (2 waiting), used 1, interrupts off, kicks on");

	/* Seen from outside the server (vmm's view of a vhost back-end's ring). */
	v.device_side = false;
	virtq_view_format(&v, line, sizeof(line));
	cr_assert_str_eq(line, "offered 3, used 1 (2 not answered), interrupts off, kicks on");
	v.event_idx = true;
	virtq_view_format(&v, line, sizeof(line));
	cr_assert_str_eq(line, "offered 3, used 1 (2 not answered), driver wants an interrupt at 4, "
			 "kicks wanted at 1");
}

/* ---- hostile rings: each breaks the queue ---- */

Test(virtq, descriptor_loop)
{
	start_queue(8, false, false);
	DESC(3, BUF_GPA, 1, R | N, 5);
	DESC(5, BUF_GPA, 1, R | N, 3);
	avail_add(3);
	expect_pop_fails("descriptor loop at head 3");
}

Test(virtq, self_loop)
{
	start_queue(8, false, false);
	DESC(2, BUF_GPA, 0, W | N, 2);
	avail_add(2);
	expect_pop_fails("descriptor loop at head 2");
}

Test(virtq, chain_longer_than_the_ring)
{
	start_queue(4, false, false);
	for (unsigned int i = 0; i < 4; i++)
		DESC(i, BUF_GPA, 1, R | N, (i + 1) % 4);
	avail_add(0);
	expect_pop_fails("chain longer than 4");
}

Test(virtq, next_index_out_of_range)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 1, R | N, 8);
	avail_add(0);
	expect_pop_fails("next index 8 out of range");
}

Test(virtq, head_index_out_of_range)
{
	start_queue(8, false, false);
	avail()->ring[0] = htole16(8);
	avail_set_idx(1);
	expect_pop_fails("holds head 8");
}

Test(virtq, head_index_out_of_range_after_good_ones)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 1, R, 0);
	avail_add(0);
	avail_add(0xffff);
	expect_pop(0, 1, 0, 1, 0);
	expect_pop_fails("holds head 65535");
}

Test(virtq, avail_index_jumps_ahead)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 1, R, 0);
	avail_set_idx(9);
	expect_pop_fails("avail index 9 is 9 ahead of 0");
}

Test(virtq, avail_index_goes_backwards)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 1, R, 0);
	avail_add(0);
	expect_pop(0, 1, 0, 1, 0);
	avail_set_idx(0);	/* 0xffff entries "ahead" of 1 */
	expect_pop_fails("avail index 0 is 65535 ahead of 1");
}

Test(virtq, buffer_outside_ram)
{
	start_queue(8, false, false);
	DESC(0, 0, 16, R, 0);
	avail_add(0);
	expect_pop_fails("buffer 0x0+16 is not in guest RAM");
}

Test(virtq, buffer_far_outside_ram)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 16, R | N, 1);
	DESC(1, 0xfffffffff000ULL, 16, W, 0);
	avail_add(0);
	expect_pop_fails("not in guest RAM");
}

Test(virtq, buffer_straddles_end_of_ram)
{
	start_queue(8, false, false);
	DESC(0, RAM_END - 8, 16, W, 0);
	avail_add(0);
	expect_pop_fails("is not in guest RAM at 0x110000");
}

Test(virtq, buffer_wraps_address_space)
{
	start_queue(8, false, false);
	DESC(0, UINT64_MAX - 4, 16, R, 0);
	avail_add(0);
	expect_pop_fails("wraps around");
}

Test(virtq, buffer_across_hole_between_regions)
{
	uint64_t boundary = RAM_GPA + RAM_SIZE / 2;

	two_regions(0x1000);
	start_queue(8, false, false);
	DESC(0, boundary - 100, 300, W, 0);
	avail_add(0);
	expect_pop_fails("not in guest RAM at 0x108000");
}

Test(virtq, buffer_in_hole_between_regions)
{
	two_regions(0x1000);
	start_queue(8, false, false);
	DESC(0, RAM_GPA + RAM_SIZE / 2 + 0x10, 16, R, 0);
	avail_add(0);
	expect_pop_fails("not in guest RAM");
}

Test(virtq, length_overflow)
{
	/* Two descriptors of 0xffffffff, both inside RAM: the 32-bit total overflows. */
	add_big_region();
	start_queue(8, false, false);
	DESC(0, BIG_GPA, 0xffffffff, W | N, 1);
	DESC(1, BIG_GPA + 0x100000000ULL, 0xffffffff, W, 0);
	avail_add(0);
	expect_pop_fails("writable length overflows 32 bits");
}

Test(virtq, length_overflow_outside_ram)
{
	/* The same chain in a small guest fails too (the first buffer is not RAM). */
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 0xffffffff, R | N, 1);
	DESC(1, BUF_GPA, 0xffffffff, R, 0);
	avail_add(0);
	expect_pop_fails("virtqueue");
}

Test(virtq, readable_after_writable)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 4, R | N, 1);
	DESC(1, BUF_GPA, 4, W | N, 2);
	DESC(2, BUF_GPA, 4, R, 0);
	avail_add(0);
	expect_pop_fails("readable descriptor 2 after a writable one in chain at head 0");
}

Test(virtq, readable_after_empty_writable)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 0, W | N, 1);
	DESC(1, BUF_GPA, 4, R, 0);
	avail_add(0);
	expect_pop_fails("after a writable one");
}

Test(virtq, readable_after_writable_in_indirect_table)
{
	start_queue(8, false, true);
	IDESC(0, BUF_GPA, 4, W | N, 1);
	IDESC(1, BUF_GPA, 4, R, 0);
	DESC(0, TABLE_GPA, 32, I, 0);
	avail_add(0);
	expect_pop_fails("readable indirect descriptor 1 after a writable one");
}

Test(virtq, readable_indirect_after_writable_direct)
{
	start_queue(8, false, true);
	DESC(0, BUF_GPA, 4, W | N, 1);
	DESC(1, TABLE_GPA, 16, I, 0);
	IDESC(0, BUF_GPA, 4, R, 0);
	avail_add(0);
	expect_pop_fails("after a writable one");
}

Test(virtq, too_many_segments)
{
	start_queue(8, false, true);
	for (unsigned int i = 0; i <= VIRTQ_MAX_IOV; i++)
		IDESC(i, BUF_GPA + i, 1, R | (i < VIRTQ_MAX_IOV ? N : 0), i + 1);
	DESC(0, TABLE_GPA, 16 * (VIRTQ_MAX_IOV + 1), I, 0);
	avail_add(0);
	expect_pop_fails("needs more than 1024 segments");
}

Test(virtq, too_many_segments_from_region_splits)
{
	/* 600 buffers that each span the two regions: 1200 segments. */
	uint64_t boundary = RAM_GPA + RAM_SIZE / 2;

	two_regions(0);
	start_queue(8, false, true);
	for (unsigned int i = 0; i < 600; i++)
		IDESC(i, boundary - 1, 2, W | (i < 599 ? N : 0), i + 1);
	DESC(0, TABLE_GPA, 16 * 600, I, 0);
	avail_add(0);
	expect_pop_fails("needs more than 1024 segments");
}

Test(virtq, indirect_not_negotiated)
{
	start_queue(8, false, false);
	IDESC(0, BUF_GPA, 4, R, 0);
	DESC(0, TABLE_GPA, 16, I, 0);
	avail_add(0);
	expect_pop_fails("INDIRECT_DESC not negotiated");
}

Test(virtq, indirect_with_next)
{
	start_queue(8, false, true);
	IDESC(0, BUF_GPA, 4, R, 0);
	DESC(0, TABLE_GPA, 16, I | N, 1);
	DESC(1, BUF_GPA, 4, R, 0);
	avail_add(0);
	expect_pop_fails("has NEXT set");
}

Test(virtq, nested_indirect)
{
	start_queue(8, false, true);
	IDESC(0, BUF_GPA, 4, R | N, 1);
	IDESC(1, TABLE_GPA + 0x100, 16, I, 0);
	desc_at(TABLE_GPA + 0x100, 0, BUF_GPA, 4, R, 0);
	DESC(0, TABLE_GPA, 32, I, 0);
	avail_add(0);
	expect_pop_fails("nested indirect descriptor 1 in chain at head 0");
}

Test(virtq, indirect_length_zero)
{
	start_queue(8, false, true);
	DESC(0, TABLE_GPA, 0, I, 0);
	avail_add(0);
	expect_pop_fails("indirect table length 0");
}

Test(virtq, indirect_length_not_multiple_of_16)
{
	start_queue(8, false, true);
	IDESC(0, BUF_GPA, 4, R, 0);
	DESC(0, TABLE_GPA, 24, I, 0);
	avail_add(0);
	expect_pop_fails("indirect table length 24");
}

Test(virtq, indirect_length_too_large)
{
	start_queue(8, false, true);
	DESC(0, TABLE_GPA, 16 * (VIRTQ_MAX_INDIRECT + 1), I, 0);
	avail_add(0);
	expect_pop_fails("indirect table length");
}

Test(virtq, indirect_length_huge)
{
	start_queue(8, false, true);
	DESC(0, TABLE_GPA, 0xfffffff0, I, 0);
	avail_add(0);
	expect_pop_fails("indirect table length");
}

Test(virtq, indirect_table_outside_ram)
{
	start_queue(8, false, true);
	DESC(0, 0x1000, 16, I, 0);
	avail_add(0);
	expect_pop_fails("indirect table 0x1000+16 at head 0 is not in guest RAM");
}

Test(virtq, indirect_table_straddles_end_of_ram)
{
	start_queue(8, false, true);
	DESC(0, RAM_END - 32, 64, I, 0);
	avail_add(0);
	expect_pop_fails("is not in guest RAM");
}

Test(virtq, indirect_table_across_hole)
{
	two_regions(0x1000);
	start_queue(8, false, true);
	DESC(0, RAM_GPA + RAM_SIZE / 2 - 32, 64, I, 0);
	avail_add(0);
	expect_pop_fails("is not in guest RAM");
}

Test(virtq, indirect_loop)
{
	start_queue(8, false, true);
	IDESC(0, BUF_GPA, 4, R | N, 1);
	IDESC(1, BUF_GPA, 4, R | N, 0);
	DESC(4, TABLE_GPA, 4 * 16, I, 0);
	avail_add(4);
	expect_pop_fails("indirect descriptor loop at head 4 (chain longer than 4)");
}

Test(virtq, indirect_next_out_of_table)
{
	start_queue(8, false, true);
	IDESC(0, BUF_GPA, 4, R | N, 2);
	DESC(0, TABLE_GPA, 2 * 16, I, 0);
	avail_add(0);
	expect_pop_fails("indirect descriptor 0 at head 0: next index 2 out of range (table of 2)");
}

Test(virtq, indirect_buffer_outside_ram)
{
	start_queue(8, false, true);
	IDESC(0, BUF_GPA, 4, R | N, 1);
	IDESC(1, RAM_END, 4, W, 0);
	DESC(0, TABLE_GPA, 2 * 16, I, 0);
	avail_add(0);
	expect_pop_fails("indirect descriptor 1: buffer 0x110000+4 is not in guest RAM");
}

Test(virtq, used_ring_over_descriptor_table)
{
	/*
	 * virtq_start accepts overlapping rings (the addresses are valid RAM).
	 * Our used-ring writes then land on the driver's descriptors: used->idx
	 * on bytes 2-3 of desc[0].addr, used element 0 on the rest of addr and on
	 * len. Here the next pop finds desc[0].addr = 0x19000, outside RAM, and
	 * breaks the queue. Whatever the bytes, nothing outside the guest is
	 * touched: the rings are only ever accessed inside their mapped sizes.
	 */
	virtq_reset(&vq, &mem);
	vq.size = 8;
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = DESC_GPA;
	cr_assert_eq(virtq_start(&vq), 0);
	DESC(0, BUF_GPA, 16, W, 0);
	avail_add(0);
	expect_pop(0, 0, 1, 0, 16);
	cr_assert_eq(virtq_push(&vq, 0, 16), 0);
	cr_assert_eq(le64toh(((struct vring_desc *)host(DESC_GPA))->addr), 0x19000);
	avail_add(0);
	expect_pop_fails("buffer 0x19000+16 is not in guest RAM");
}

Test(virtq, used_ring_over_avail_ring)
{
	/* The same with the avail ring: used->idx lands on avail->idx. */
	int ret;

	virtq_reset(&vq, &mem);
	vq.size = 8;
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = AVAIL_GPA;
	cr_assert_eq(virtq_start(&vq), 0);
	for (unsigned int i = 0; i < 8; i++)
		DESC(i, BUF_GPA + i, 1, R, 0);
	avail_add(3);
	expect_pop(3, 1, 0, 1, 0);
	for (unsigned int n = 0; n < 20; n++) {
		cr_assert_eq(virtq_push(&vq, n % 8, 0), 0);
		ret = virtq_pop(&vq, &chain);
		cr_assert(ret == 0 || ret == 1 || ret == -EIO);
		if (ret == 1)
			expect_iovs_in_guest();
		if (ret < 0)
			break;
	}
}

/* ---- push ---- */

Test(virtq, push_on_broken_queue)
{
	start_queue(8, false, false);
	DESC(0, BUF_GPA, 4, R, 0);
	avail_add(0);
	avail_add(9);
	expect_pop(0, 1, 0, 4, 0);
	cr_assert_eq(virtq_pop(&vq, &chain), -EIO);
	cr_assert_eq(virtq_push(&vq, 0, 4), -EIO);
	cr_assert_eq(le16toh(used()->idx), 0);
	cr_assert_eq(vq.used_idx, 0);
}

Test(virtq, push_head_out_of_range)
{
	start_queue(8, false, false);
	cr_assert_eq(virtq_push(&vq, 8, 0), -EIO);
	cr_assert_eq(le16toh(used()->idx), 0);
	cr_assert_eq(le32toh(used()->ring[0].id), 0);
	expect_broken("device pushed head 8");
}

Test(virtq, broken_until_reset)
{
	start_queue(8, false, false);
	avail_set_idx(100);
	cr_assert_eq(virtq_pop(&vq, &chain), -EIO);
	/* Starting again does not clear it; only a reset does. */
	cr_assert_eq(virtq_start(&vq), 0);
	cr_assert(vq.broken);
	cr_assert_eq(virtq_pop(&vq, &chain), -EIO);
	virtq_reset(&vq, &mem);
	cr_assert_not(vq.broken);
	memset(ram, 0, 0x3000);
	drv_avail_idx = 0;
	start_queue(8, false, false);
	cr_assert_eq(virtq_pop(&vq, &chain), 0);
}

Test(virtq, add_used_publishes_together)
{
	start_queue(4, false, false);
	for (unsigned int i = 0; i < 3; i++) {
		DESC(i, BUF_GPA + 16 * i, 16, W, 0);
		avail_add((uint16_t)i);
	}
	for (unsigned int i = 0; i < 3; i++)
		cr_assert_eq(virtq_pop(&vq, &chain), 1);
	cr_assert_eq(virtq_add_used(&vq, 0, 16), 0);
	cr_assert_eq(virtq_add_used(&vq, 1, 8), 0);
	/* Nothing is visible to the driver until the batch is published. */
	cr_assert_eq(le16toh(used()->idx), 0);
	virtq_publish_used(&vq);
	cr_assert_eq(le16toh(used()->idx), 2);
	cr_assert_eq(le32toh(used()->ring[1].len), 8);
	cr_assert_eq(virtq_push(&vq, 2, 4), 0);
	cr_assert_eq(le16toh(used()->idx), 3);
}

Test(virtq, add_used_beyond_queue_size_breaks)
{
	start_queue(2, false, false);
	cr_assert_eq(virtq_add_used(&vq, 0, 0), 0);
	cr_assert_eq(virtq_add_used(&vq, 1, 0), 0);
	cr_assert_eq(virtq_add_used(&vq, 0, 0), -EIO, "a third unpublished element overwrites the first");
	cr_assert(vq.broken);
}
