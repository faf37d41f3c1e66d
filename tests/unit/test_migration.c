// SPDX-License-Identifier: GPL-2.0-only
/* When pre-copy hands over to stop-and-copy (mig_precopy_done). */
#include <criterion/criterion.h>
#include <stdint.h>
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
