// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the address-trap registry (vmm/io_bus.c): registration and
 * overlap rules, lookups, and dispatch of accesses to handlers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "vmm/base/io_bus.h"

/* What a handler saw. */
struct rec {
	unsigned int calls;
	uint64_t offset;
	uint32_t len;
	bool is_write;
	uint8_t written[8];
};

/* Records the access; reads return bytes 0xa0 + offset + i. */
static void rec_handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct rec *r = opaque;

	r->calls++;
	r->offset = offset;
	r->len = len;
	r->is_write = is_write;
	if (is_write) {
		memcpy(r->written, data, len < 8 ? len : 8);
	} else {
		for (uint32_t i = 0; i < len; i++)
			data[i] = (uint8_t)(0xa0 + offset + i);
	}
}

static struct io_bus bus;

static void bus_setup(void)
{
	memset(&bus, 0, sizeof(bus));
}

static void bus_teardown(void)
{
	io_bus_destroy(&bus);
}

TestSuite(io_bus, .init = bus_setup, .fini = bus_teardown);

/* ---- registration and lookup ---- */

Test(io_bus, register_and_find)
{
	struct rec r = { 0 };
	const struct io_range *found;

	cr_assert_eq(io_bus_register(&bus, 0x3f8, 8, rec_handler, &r, "serial"), 0);
	cr_assert_eq(bus.nranges, 1);
	found = io_bus_find(&bus, 0x3f8, 1);
	cr_assert_not_null(found);
	cr_assert_eq(found->base, 0x3f8);
	cr_assert_eq(found->size, 8);
	cr_assert_eq(found->handler, rec_handler);
	cr_assert_eq(found->opaque, &r);
	cr_assert_str_eq(found->name, "serial");
	cr_assert_eq(io_bus_find(&bus, 0x3ff, 1), found);
	cr_assert_eq(io_bus_find(&bus, 0x3fc, 4), found);
	cr_assert_eq(io_bus_find(&bus, 0x3f8, 8), found);
	cr_assert_null(io_bus_find(&bus, 0x3f7, 1));
	cr_assert_null(io_bus_find(&bus, 0x400, 1));
	cr_assert_null(io_bus_find(&bus, 0, 1));
	cr_assert_null(io_bus_find(&bus, UINT64_MAX, 1));
}

Test(io_bus, find_on_empty_bus)
{
	cr_assert_null(io_bus_find(&bus, 0, 1));
	cr_assert_null(io_bus_find(&bus, 0x1234, 4));
}

Test(io_bus, find_len_zero)
{
	struct rec r = { 0 };

	cr_assert_eq(io_bus_register(&bus, 0x100, 0x10, rec_handler, &r, "a"), 0);
	cr_assert_null(io_bus_find(&bus, 0x100, 0));
}

static void expect_overlap(uint64_t base, uint64_t size)
{
	struct rec other = { 0 };
	unsigned int n = bus.nranges;

	cr_assert_eq(io_bus_register(&bus, base, size, rec_handler, &other, "overlap"), -EEXIST,
		     "[0x%llx, +0x%llx) accepted", (unsigned long long)base,
		     (unsigned long long)size);
	cr_assert_eq(bus.nranges, n, "a rejected range was added");
}

Test(io_bus, overlap_rejected_every_arrangement)
{
	struct rec r = { 0 };

	/* Existing: [0x100, 0x200). */
	cr_assert_eq(io_bus_register(&bus, 0x100, 0x100, rec_handler, &r, "a"), 0);
	expect_overlap(0x100, 0x100);	/* identical */
	expect_overlap(0x120, 0x10);	/* inside */
	expect_overlap(0x100, 1);	/* first byte */
	expect_overlap(0x1ff, 1);	/* last byte */
	expect_overlap(0xf0, 0x20);	/* straddles the start */
	expect_overlap(0xff, 2);	/* straddles the start by one byte */
	expect_overlap(0x1f0, 0x20);	/* straddles the end */
	expect_overlap(0x1ff, 2);	/* straddles the end by one byte */
	expect_overlap(0x80, 0x200);	/* covers it */
	expect_overlap(0, UINT64_MAX);	/* covers everything */
	expect_overlap(0x100, 0x200);	/* same start, longer */
	expect_overlap(0x80, 0x180);	/* same end, earlier start */
}

Test(io_bus, overlap_with_second_of_several)
{
	struct rec r = { 0 };

	cr_assert_eq(io_bus_register(&bus, 0x1000, 0x10, rec_handler, &r, "a"), 0);
	cr_assert_eq(io_bus_register(&bus, 0x3000, 0x10, rec_handler, &r, "c"), 0);
	cr_assert_eq(io_bus_register(&bus, 0x2000, 0x10, rec_handler, &r, "b"), 0);
	expect_overlap(0x2008, 0x1000);		/* straddles b's end, ends in the gap */
	expect_overlap(0x1800, 0x1000);		/* covers b only */
	expect_overlap(0x0, 0x4000);		/* covers all */
	expect_overlap(0x300f, 1);
}

Test(io_bus, adjacent_ranges_allowed)
{
	struct rec a = { 0 }, b = { 0 }, c = { 0 };

	cr_assert_eq(io_bus_register(&bus, 0x100, 0x100, rec_handler, &a, "a"), 0);
	cr_assert_eq(io_bus_register(&bus, 0x200, 0x100, rec_handler, &b, "b"), 0);
	cr_assert_eq(io_bus_register(&bus, 0x80, 0x80, rec_handler, &c, "c"), 0);
	cr_assert_eq(bus.nranges, 3);
	cr_assert_eq(io_bus_find(&bus, 0xff, 1)->opaque, &c);
	cr_assert_eq(io_bus_find(&bus, 0x100, 1)->opaque, &a);
	cr_assert_eq(io_bus_find(&bus, 0x1ff, 1)->opaque, &a);
	cr_assert_eq(io_bus_find(&bus, 0x200, 1)->opaque, &b);
	cr_assert_eq(io_bus_find(&bus, 0x2ff, 1)->opaque, &b);
	cr_assert_null(io_bus_find(&bus, 0x300, 1));
	cr_assert_null(io_bus_find(&bus, 0x7f, 1));
}

Test(io_bus, bad_arguments)
{
	struct rec r = { 0 };

	cr_assert_eq(io_bus_register(&bus, 0x100, 0, rec_handler, &r, "zero"), -EINVAL);
	cr_assert_eq(io_bus_register(&bus, UINT64_MAX, 2, rec_handler, &r, "wraps"), -EINVAL);
	cr_assert_eq(io_bus_register(&bus, 2, UINT64_MAX, rec_handler, &r, "wraps"), -EINVAL);
	cr_assert_eq(io_bus_register(&bus, UINT64_MAX - 7, 9, rec_handler, &r, "wraps"), -EINVAL);
	cr_assert_eq(io_bus_register(&bus, 0x100, 8, NULL, &r, "no handler"), -EINVAL);
	cr_assert_eq(bus.nranges, 0);
}

Test(io_bus, range_at_top_of_address_space)
{
	struct rec r = { 0 };
	uint8_t d[8];

	cr_assert_eq(io_bus_register(&bus, UINT64_MAX - 15, 16, rec_handler, &r, "top"), 0);
	cr_assert_not_null(io_bus_find(&bus, UINT64_MAX, 1));
	cr_assert_not_null(io_bus_find(&bus, UINT64_MAX - 7, 8));
	cr_assert_null(io_bus_find(&bus, UINT64_MAX, 2), "access wrapping around accepted");
	cr_assert_null(io_bus_find(&bus, UINT64_MAX - 3, 8));
	cr_assert(io_bus_access(&bus, UINT64_MAX, d, 1, false));
	cr_assert_eq(r.offset, 15);
	cr_assert_eq(d[0], (uint8_t)(0xa0 + 15));
	/* The last byte alone is fine too, and the whole space minus one byte. */
	io_bus_destroy(&bus);
	cr_assert_eq(io_bus_register(&bus, UINT64_MAX, 1, rec_handler, &r, "last"), 0);
	cr_assert_eq(io_bus_register(&bus, 0, UINT64_MAX, rec_handler, &r, "rest"), 0);
	cr_assert_eq(io_bus_find(&bus, UINT64_MAX, 1)->size, 1);
	cr_assert_eq(io_bus_find(&bus, UINT64_MAX - 1, 1)->size, UINT64_MAX);
	cr_assert_null(io_bus_find(&bus, UINT64_MAX - 1, 2), "access across two ranges");
}

/* ---- dispatch ---- */

Test(io_bus, offsets_and_data_passed)
{
	struct rec r = { 0 };
	uint8_t d[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };

	cr_assert_eq(io_bus_register(&bus, 0xd0000000, 0x1000, rec_handler, &r, "mmio"), 0);
	cr_assert(io_bus_access(&bus, 0xd0000070, d, 4, true));
	cr_assert_eq(r.calls, 1);
	cr_assert_eq(r.offset, 0x70);
	cr_assert_eq(r.len, 4);
	cr_assert(r.is_write);
	cr_assert_arr_eq(r.written, d, 4);

	memset(d, 0, sizeof(d));
	cr_assert(io_bus_access(&bus, 0xd0000005, d, 2, false));
	cr_assert_eq(r.calls, 2);
	cr_assert_eq(r.offset, 5);
	cr_assert_eq(r.len, 2);
	cr_assert_not(r.is_write);
	cr_assert_eq(d[0], 0xa5);
	cr_assert_eq(d[1], 0xa6);
	cr_assert_eq(d[2], 0, "handler read beyond len");

	cr_assert(io_bus_access(&bus, 0xd0000ff8, d, 8, false));
	cr_assert_eq(r.offset, 0xff8);
	cr_assert_eq(r.len, 8);
	cr_assert(io_bus_access(&bus, 0xd0000000, d, 1, true));
	cr_assert_eq(r.offset, 0);
}

Test(io_bus, straddling_access_not_dispatched)
{
	struct rec r = { 0 }, next = { 0 };
	uint8_t d[8];

	cr_assert_eq(io_bus_register(&bus, 0x100, 4, rec_handler, &r, "a"), 0);
	memset(d, 0, sizeof(d));
	cr_assert_not(io_bus_access(&bus, 0x102, d, 4, false));
	cr_assert_eq(r.calls, 0);
	cr_assert_eq(d[0], 0xff);
	cr_assert_eq(d[3], 0xff);
	cr_assert_not(io_bus_access(&bus, 0xff, d, 2, true));
	cr_assert_not(io_bus_access(&bus, 0x100, d, 8, false));
	cr_assert_eq(r.calls, 0);

	/* Not across two adjacent ranges either. */
	cr_assert_eq(io_bus_register(&bus, 0x104, 4, rec_handler, &next, "b"), 0);
	cr_assert_not(io_bus_access(&bus, 0x102, d, 4, true));
	cr_assert_eq(r.calls, 0);
	cr_assert_eq(next.calls, 0);
	cr_assert(io_bus_access(&bus, 0x104, d, 4, false));
	cr_assert_eq(next.calls, 1);
	cr_assert_eq(next.offset, 0);
}

Test(io_bus, unclaimed_read_returns_ones)
{
	struct rec r = { 0 };
	uint8_t d[8];

	cr_assert_eq(io_bus_register(&bus, 0x100, 4, rec_handler, &r, "a"), 0);
	for (uint32_t len = 1; len <= 8; len *= 2) {
		memset(d, 0x5a, sizeof(d));
		cr_assert_not(io_bus_access(&bus, 0x200, d, len, false), "len %u", len);
		for (uint32_t i = 0; i < 8; i++)
			cr_assert_eq(d[i], i < len ? 0xff : 0x5a, "len %u byte %u: 0x%x", len, i, d[i]);
	}
	cr_assert_eq(r.calls, 0);
}

Test(io_bus, unclaimed_write_dropped)
{
	uint8_t d[4] = { 1, 2, 3, 4 };

	cr_assert_not(io_bus_access(&bus, 0x80, d, 4, true));
	cr_assert_eq(d[0], 1, "unclaimed write modified the data");
	cr_assert_eq(d[3], 4);
}

Test(io_bus, len_zero_access)
{
	struct rec r = { 0 };
	uint8_t d[1] = { 0x42 };

	cr_assert_eq(io_bus_register(&bus, 0x100, 4, rec_handler, &r, "a"), 0);
	cr_assert_not(io_bus_access(&bus, 0x100, d, 0, false));
	cr_assert_eq(r.calls, 0);
	cr_assert_eq(d[0], 0x42);
}

/* ---- many ranges: sorted, binary search ---- */

#define MANY 300

Test(io_bus, many_ranges_sorted)
{
	static struct rec recs[MANY];
	uint8_t d[4];

	/* 0x10-byte ranges every 0x20, registered in a scrambled order. */
	for (unsigned int i = 0; i < MANY; i++) {
		unsigned int k = (i * 7919u) % MANY;

		cr_assert_eq(io_bus_register(&bus, 0x10000 + k * 0x20ULL, 0x10, rec_handler, &recs[k],
					     "r"), 0, "range %u", k);
	}
	cr_assert_eq(bus.nranges, MANY);
	cr_assert_geq(bus.capacity, MANY);
	for (unsigned int i = 1; i < bus.nranges; i++)
		cr_assert_lt(bus.ranges[i - 1].base, bus.ranges[i].base, "not sorted at %u", i);

	for (unsigned int k = 0; k < MANY; k++) {
		uint64_t base = 0x10000 + k * 0x20ULL;
		const struct io_range *r = io_bus_find(&bus, base + 0xc, 4);

		cr_assert_not_null(r, "range %u not found", k);
		cr_assert_eq(r->base, base);
		cr_assert_eq(r->opaque, &recs[k]);
		cr_assert_null(io_bus_find(&bus, base + 0x10, 1), "gap after %u claimed", k);
		cr_assert_null(io_bus_find(&bus, base + 0x1f, 1));
		cr_assert(io_bus_access(&bus, base + 3, d, 2, true));
		cr_assert_eq(recs[k].calls, 1);
		cr_assert_eq(recs[k].offset, 3);
	}
	cr_assert_null(io_bus_find(&bus, 0xffff, 1));
	cr_assert_null(io_bus_find(&bus, 0x10000 + MANY * 0x20ULL, 1));
	/* Every overlap is still caught with many ranges. */
	expect_overlap(0x10000 + 150 * 0x20ULL + 0xf, 0x11);
	expect_overlap(0x10000 + 149 * 0x20ULL + 0x10, 0x20);
	cr_assert_eq(io_bus_register(&bus, 0x10000 + 150 * 0x20ULL + 0x10, 0x10, rec_handler,
				     &recs[0], "gap"), 0);
	cr_assert_eq(bus.nranges, MANY + 1);
	for (unsigned int i = 1; i < bus.nranges; i++)
		cr_assert_lt(bus.ranges[i - 1].base, bus.ranges[i].base, "not sorted at %u", i);
}

Test(io_bus, destroy_then_reuse)
{
	struct rec r = { 0 };

	cr_assert_eq(io_bus_register(&bus, 0x100, 4, rec_handler, &r, "a"), 0);
	io_bus_destroy(&bus);
	cr_assert_eq(bus.nranges, 0);
	cr_assert_null(bus.ranges);
	cr_assert_null(io_bus_find(&bus, 0x100, 1));
	cr_assert_eq(io_bus_register(&bus, 0x100, 4, rec_handler, &r, "a"), 0);
	cr_assert_not_null(io_bus_find(&bus, 0x100, 1));
	io_bus_destroy(&bus);
	io_bus_destroy(&bus);	/* twice is harmless */
	cr_assert_eq(bus.nranges, 0);
}

Test(io_bus, separate_buses_independent)
{
	struct io_bus other = { 0 };
	struct rec a = { 0 }, b = { 0 };
	uint8_t d[1] = { 0 };

	cr_assert_eq(io_bus_register(&bus, 0x60, 1, rec_handler, &a, "pio"), 0);
	cr_assert_eq(io_bus_register(&other, 0x60, 1, rec_handler, &b, "mmio"), 0);
	cr_assert(io_bus_access(&other, 0x60, d, 1, true));
	cr_assert_eq(a.calls, 0);
	cr_assert_eq(b.calls, 1);
	io_bus_destroy(&other);
}
