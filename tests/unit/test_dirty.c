// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the shared dirty-page log (vmm/base/dirty.c): marking ranges that
 * cross 64-page words, clipping at the log's end, collection that clears and counts,
 * the memfd shared with a back-end, and marks from several threads while the log is
 * collected, none of them lost.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/base/dirty.h"

#define PAGE	DIRTY_PAGE_SIZE

static struct dirty_log log_;
static int fds_before;

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static void setup(void)
{
	fds_before = count_fds();
}

static void teardown(void)
{
	dirty_log_destroy(&log_);
}

TestSuite(dirty, .init = setup, .fini = teardown);

static bool bit(const uint64_t *w, uint64_t page)
{
	return w[page / 64] >> (page % 64) & 1;
}

/* The pages set in w[0, nwords), as a count. */
static uint64_t popcount(const uint64_t *w, size_t nwords)
{
	uint64_t n = 0;

	for (size_t i = 0; i < nwords; i++)
		n += (uint64_t)__builtin_popcountll(w[i]);
	return n;
}

Test(dirty, init_sizes_and_destroy)
{
	cr_assert_eq(dirty_log_init(&log_, 64 * 1024 * PAGE), 0);
	cr_assert_eq(log_.pages, 64 * 1024);
	cr_assert_eq(log_.size, 64 * 1024 / 8, "one bit per page, 8 KiB");
	cr_assert_geq(log_.fd, 0);
	cr_assert_eq(count_fds(), fds_before + 1);
	for (size_t i = 0; i < log_.size / 8; i++)
		cr_assert_eq(log_.words[i], 0, "starts clear");
	dirty_log_destroy(&log_);
	cr_assert_eq(log_.fd, -1);
	cr_assert_null(log_.words);
	cr_assert_eq(count_fds(), fds_before, "the memfd is closed");
	dirty_log_destroy(&log_);

	/* A partial last page counts; the mapping is whole pages. */
	cr_assert_eq(dirty_log_init(&log_, 10 * PAGE + 1), 0);
	cr_assert_eq(log_.pages, 11);
	cr_assert_eq(log_.size, 4096);
	dirty_log_destroy(&log_);

	cr_assert_eq(dirty_log_init(&log_, 0), 0);
	cr_assert_eq(log_.pages, 0);
	dirty_log_mark(&log_, 0, PAGE);
	dirty_log_mark_all(&log_);
	cr_assert_eq(log_.words[0], 0, "a log of no pages takes no marks");
	dirty_log_destroy(&log_);
	cr_assert_eq(count_fds(), fds_before);
}

Test(dirty, destroy_a_zeroed_log)
{
	struct dirty_log l = { .fd = -1 };

	dirty_log_destroy(&l);
	dirty_log_mark(&l, 0, PAGE);	/* no words: ignored */
	cr_assert_eq(dirty_log_collect(&l, 0, (uint64_t[1]){ 0 }, 1), 0);
	cr_assert_eq(count_fds(), fds_before);
}

Test(dirty, ranges_crossing_words)
{
	uint64_t out[4] = { 0 };

	cr_assert_eq(dirty_log_init(&log_, 256 * PAGE), 0);
	/* The last byte of page 63 to the first of page 65: three pages over two words. */
	dirty_log_mark(&log_, 63 * PAGE + 4095, PAGE + 2);
	cr_assert_eq(log_.words[0], 1ULL << 63);
	cr_assert_eq(log_.words[1], 3);
	/* Exactly page 127, ending on the page boundary: one page. */
	dirty_log_mark(&log_, 127 * PAGE, PAGE);
	cr_assert_eq(log_.words[1], 3 | 1ULL << 63);
	cr_assert_eq(log_.words[2], 0, "an end on a boundary marks no further page");
	/* Pages 130 to 250: whole words and parts. */
	dirty_log_mark(&log_, 130 * PAGE, 121 * PAGE);
	cr_assert_eq(dirty_log_collect(&log_, 0, out, 4), 3 + 1 + 121);
	for (uint64_t p = 0; p < 256; p++) {
		bool want = (p >= 63 && p <= 65) || p == 127 || (p >= 130 && p <= 250);

		cr_assert_eq(bit(out, p), want, "page %llu", (unsigned long long)p);
	}
	/* A zero-length mark is nothing. */
	dirty_log_mark(&log_, 5 * PAGE, 0);
	cr_assert_eq(log_.words[0], 0);
}

Test(dirty, clipped_at_the_end)
{
	uint64_t out[2] = { 0, 0xdead };

	cr_assert_eq(dirty_log_init(&log_, 11 * PAGE), 0);
	dirty_log_mark(&log_, 8 * PAGE, 1000 * PAGE);
	cr_assert_eq(log_.words[0], 0x700, "pages 8 to 10 only");
	dirty_log_mark(&log_, 11 * PAGE, PAGE);
	dirty_log_mark(&log_, UINT64_MAX - 100, 50);
	cr_assert_eq(log_.words[0], 0x700, "past the end: nothing");
	/* gpa + len overflows: clipped to the end, not wrapped round to page 0. */
	dirty_log_mark(&log_, 2 * PAGE, UINT64_MAX);
	cr_assert_eq(log_.words[0], 0x7fc);
	cr_assert_eq(log_.words[1], 0, "nothing past the log's last page");
	/* A collection past the log's words leaves the rest of out alone. */
	cr_assert_eq(dirty_log_collect(&log_, 0, out, 2), 9);
	cr_assert_eq(out[0], 0x7fc);
	cr_assert_eq(out[1], 0xdead);
	cr_assert_eq(dirty_log_collect(&log_, 64, out, 1), 0, "first word beyond the log");
	cr_assert_eq(out[0], 0x7fc);
}

Test(dirty, collect_clears_ors_and_counts)
{
	const uint64_t pages = 1000;
	uint64_t *out = calloc((pages + 63) / 64, 8);

	cr_assert_not_null(out);
	cr_assert_eq(dirty_log_init(&log_, pages * PAGE), 0);
	dirty_log_mark_all(&log_);
	cr_assert_eq(dirty_log_collect(&log_, 0, out, 8), 512, "the first 8 words");
	cr_assert_eq(dirty_log_collect(&log_, 512, out + 8, 100), pages - 512, "the rest");
	cr_assert_eq(popcount(out, (pages + 63) / 64), pages);
	cr_assert_eq(out[(pages - 1) / 64], (1ULL << (pages % 64)) - 1, "no bit past the last page");
	cr_assert_eq(dirty_log_collect(&log_, 0, out, (pages + 63) / 64), 0, "cleared");
	cr_assert_eq(popcount(out, (pages + 63) / 64), pages, "out is or'ed into, not cleared");

	memset(out, 0, (pages + 63) / 64 * 8);
	out[1] = 1;
	dirty_log_mark(&log_, 64 * PAGE, PAGE);
	dirty_log_mark(&log_, 65 * PAGE, PAGE);
	cr_assert_eq(dirty_log_collect(&log_, 64, out + 1, 1), 2, "counts the log's bits");
	cr_assert_eq(out[1], 3);
	dirty_log_mark(&log_, 70 * PAGE, PAGE);
	cr_assert_eq(dirty_log_collect(&log_, 65, out, 1), 0, "first not a multiple of 64");
	cr_assert(bit(log_.words, 70), "and nothing taken");
	free(out);
}

/* What a vhost-user back-end does: map the fd and set bits; the VMM collects them. */
Test(dirty, shared_through_the_fd)
{
	uint64_t out[2] = { 0 };
	uint64_t *peer;

	cr_assert_eq(dirty_log_init(&log_, 128 * PAGE), 0);
	peer = mmap(NULL, log_.size, PROT_READ | PROT_WRITE, MAP_SHARED, log_.fd, 0);
	cr_assert_neq(peer, MAP_FAILED);
	__atomic_fetch_or(&peer[1], 1ULL << 5, __ATOMIC_RELAXED);
	cr_assert_eq(dirty_log_collect(&log_, 0, out, 2), 1);
	cr_assert_eq(out[1], 1ULL << 5);
	dirty_log_mark(&log_, 3 * PAGE, 1);
	cr_assert_eq(peer[0], 8, "and the back-end sees the VMM's marks");
	munmap(peer, log_.size);
}

#define THREADS		4
#define PER_THREAD	40000
#define LOG_PAGES	(THREADS * PER_THREAD * 2)

struct marker {
	struct dirty_log *l;
	unsigned int id;
	atomic_bool *go;
};

/* Marks each even page p with p / 2 % THREADS == id, once each. */
static void *marker_thread(void *arg)
{
	struct marker *m = arg;

	while (!atomic_load(m->go))
		sched_yield();
	for (uint64_t i = 0; i < PER_THREAD; i++) {
		/* Pages interleaved with the other threads', so they share every word. */
		uint64_t page = (i * THREADS + m->id) * 2;

		dirty_log_mark(m->l, page * PAGE, 1);
	}
	return NULL;
}

Test(dirty, concurrent_marks_while_collecting_lose_nothing)
{
	const size_t nwords = (LOG_PAGES + 63) / 64;
	uint64_t *seen = calloc(nwords, 8), count = 0;
	struct marker m[THREADS];
	pthread_t t[THREADS];
	bool joined[THREADS] = { false };
	atomic_bool go = false;
	int rounds = 0;

	cr_assert_not_null(seen);
	cr_assert_eq(dirty_log_init(&log_, (uint64_t)LOG_PAGES * PAGE), 0);
	for (unsigned int i = 0; i < THREADS; i++) {
		m[i] = (struct marker){ &log_, i, &go };
		cr_assert_eq(pthread_create(&t[i], NULL, marker_thread, &m[i]), 0);
	}
	atomic_store(&go, true);
	/* Collect in small pieces over and over while the threads mark. */
	for (int busy = THREADS; busy; rounds++) {
		for (size_t w = 0; w < nwords; w += 16)
			count += dirty_log_collect(&log_, w * 64, seen + w,
						   nwords - w < 16 ? nwords - w : 16);
		busy = 0;
		for (unsigned int i = 0; i < THREADS; i++) {
			if (!joined[i])
				joined[i] = pthread_tryjoin_np(t[i], NULL) == 0;
			busy += !joined[i];
		}
	}
	count += dirty_log_collect(&log_, 0, seen, nwords);
	cr_assert_eq(count, (uint64_t)THREADS * PER_THREAD,
		     "each page marked once is collected once (%d rounds)", rounds);
	for (uint64_t p = 0; p < LOG_PAGES; p++)
		cr_assert_eq(bit(seen, p), p % 2 == 0, "page %llu", (unsigned long long)p);
	free(seen);
}
