// SPDX-License-Identifier: GPL-2.0-only
/*
 * When pre-copy hands over to stop-and-copy (mig_precopy_done); the page checksums a
 * verified migration compares (mig_ram_crc_batch).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "vmm/base/guest_mem.h"
#include "vmm/base/mig_stream.h"
#include "vmm/migration.h"

static struct mig_params params(void)
{
	struct mig_params p;

	mig_params_default(&p);
	return p;
}

Test(precopy, defaults)
{
	struct mig_params p = params();

	cr_expect_eq(p.max_downtime_ms, 300);
	cr_expect_eq(p.max_iterations, 30);
	cr_expect_eq(p.small_dirty_pages, 256);
}

Test(precopy, goes_on_while_the_rest_does_not_fit)
{
	struct mig_params p = params();

	/* Even a set that stopped shrinking: not converging is said, not decided, here. */
	cr_expect_not(mig_precopy_done(&p, 1, 50000, UINT64_MAX, 301));
	cr_expect_not(mig_precopy_done(&p, 5, 50000, 50000, 1000));
	cr_expect_not(mig_precopy_done(&p, 30, 50000, 50000, 1000));
	cr_expect_not(mig_precopy_done(&p, 100, 10, 10, 301));
}

Test(precopy, one_more_pass_while_the_set_halves)
{
	struct mig_params p = params();

	/* After pass 1 the rest fits, but pass 1 took long: another short pass pays. */
	cr_expect_not(mig_precopy_done(&p, 1, 4000, UINT64_MAX, 80));
	cr_expect_not(mig_precopy_done(&p, 2, 1000, 4000, 20));
	cr_expect_not(mig_precopy_done(&p, 2, 2000, 4000, 40));	/* exactly half */
	/* It stopped halving: go. */
	cr_expect(mig_precopy_done(&p, 3, 600, 1000, 12));
	cr_expect(mig_precopy_done(&p, 3, 1200, 1000, 24));
}

Test(precopy, small_sets_end_it)
{
	struct mig_params p = params();

	cr_expect(mig_precopy_done(&p, 1, 256, UINT64_MAX, 5));
	cr_expect(mig_precopy_done(&p, 1, 0, UINT64_MAX, 0));
	cr_expect_not(mig_precopy_done(&p, 1, 257, UINT64_MAX, 5));
	p.small_dirty_pages = 0;
	cr_expect(mig_precopy_done(&p, 4, 0, 10, 0));
}

Test(precopy, a_max_downtime_of_0_waits_for_finish)
{
	struct mig_params p = params();

	p.max_downtime_ms = 0;
	/* Nothing left, a tiny set, the pass limit: none of them switches over on its own. */
	cr_expect_not(mig_precopy_done(&p, 1, 0, UINT64_MAX, 0));
	cr_expect_not(mig_precopy_done(&p, 3, 10, 1000, 0));
	cr_expect_not(mig_precopy_done(&p, 1000, 0, 0, 0));
}

Test(precopy, the_pass_limit_ends_it_once_it_fits)
{
	struct mig_params p = params();

	p.max_iterations = 3;
	cr_expect_not(mig_precopy_done(&p, 2, 1000, 4000, 10));
	cr_expect(mig_precopy_done(&p, 3, 300, 1000, 10));
	cr_expect(mig_precopy_done(&p, 4, 300, 1000, 10));
}

Test(precopy, max_downtime_boundary)
{
	struct mig_params p = params();

	p.max_downtime_ms = 50;
	cr_expect(mig_precopy_done(&p, 2, 3000, 4000, 50));
	cr_expect_not(mig_precopy_done(&p, 2, 3000, 4000, 51));
}

/* ---- page checksums for --verify ---- */

#define MIB	(1ULL << 20)
#define PAGES	(32 * MIB / 4096)	/* two 16 MiB regions */

static const struct guest_mem_range two[] = { { 0, 16 * MIB }, { 1ULL << 32, 16 * MIB } };

/* Every page's CRC of m, batch by batch; returns a new array of PAGES. */
static uint32_t *all_crcs(const struct guest_mem *m)
{
	uint32_t *crc = calloc(PAGES + MIG_VERIFY_BATCH, 4);
	uint64_t next = 0, got = 0;
	unsigned int n;

	cr_assert_not_null(crc);
	while ((n = mig_ram_crc_batch(m, &next, crc + got))) {
		cr_assert_leq(n, MIG_VERIFY_BATCH);
		got += n;
		cr_assert_eq(next, got);
	}
	cr_assert_eq(got, PAGES, "every page once: %llu", (unsigned long long)got);
	return crc;
}

Test(verify, crcs_match_across_backings_and_holes_count_as_zero_pages)
{
	struct guest_mem anon, shm;
	static uint8_t zero[4096];
	uint32_t *a, *b, zcrc = htole32(mig_crc32c(0, zero, sizeof(zero)));

	cr_assert_eq(guest_mem_init(&anon, two, 2, GUEST_MEM_ANON), 0);
	cr_assert_eq(guest_mem_init(&shm, two, 2, GUEST_MEM_MEMFD), 0);
	/* The same data in both; a page written with zeros on one side is a hole on the other. */
	for (unsigned int i = 0; i < 2; i++) {
		memset(anon.regions[i].hva + 3 * MIB, 0x11 + i, 2 * MIB);
		memset(shm.regions[i].hva + 3 * MIB, 0x11 + i, 2 * MIB);
	}
	memset(anon.regions[1].hva + 9 * MIB, 0, 2 * MIB);
	a = all_crcs(&anon);
	b = all_crcs(&shm);
	cr_assert_arr_eq(a, b, PAGES * 4);
	cr_assert_eq(a[0], zcrc, "a hole is a zero page");
	cr_assert_eq(a[4096 + 9 * MIB / 4096], zcrc, "so is a page written with zeros");
	cr_assert_neq(a[3 * MIB / 4096], zcrc);
	cr_assert_neq(a[3 * MIB / 4096], a[4096 + 3 * MIB / 4096], "the regions' data differ");
	free(b);

	/* One byte of one page differs: exactly that page's CRC does. */
	shm.regions[1].hva[4 * MIB + 123] ^= 1;
	b = all_crcs(&shm);
	for (unsigned int i = 0; i < PAGES; i++)
		if (i == 4096 + 4 * MIB / 4096)
			cr_assert_neq(a[i], b[i]);
		else
			cr_assert_eq(a[i], b[i], "page %u", i);
	free(a);
	free(b);
	guest_mem_destroy(&anon);
	guest_mem_destroy(&shm);
}
