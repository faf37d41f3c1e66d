// SPDX-License-Identifier: GPL-2.0-only
/* The shared dirty-page log (dirty.h). */
#include <errno.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/base/dirty.h"

int dirty_log_init(struct dirty_log *l, uint64_t gpa_end)
{
	uint64_t pages = (gpa_end + DIRTY_PAGE_SIZE - 1) >> DIRTY_PAGE_SHIFT;
	size_t size = (size_t)(((pages + 63) / 64) * 8);

	*l = (struct dirty_log){ .fd = -1 };
	size = (size + 4095) & ~(size_t)4095;
	if (!size)
		size = 4096;
	l->fd = memfd_create("vmm-dirty-log", MFD_CLOEXEC);
	if (l->fd < 0)
		return -errno;
	if (ftruncate(l->fd, (off_t)size) < 0) {
		int e = -errno;

		close(l->fd);
		l->fd = -1;
		return e == -EFBIG ? -ENOMEM : e;
	}
	l->words = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, l->fd, 0);
	if (l->words == MAP_FAILED) {
		int e = -errno;

		l->words = NULL;
		close(l->fd);
		l->fd = -1;
		return e;
	}
	l->size = size;
	l->pages = pages;
	return 0;
}

void dirty_log_destroy(struct dirty_log *l)
{
	if (l->words)
		munmap(l->words, l->size);
	if (l->fd >= 0)
		close(l->fd);
	*l = (struct dirty_log){ .fd = -1 };
}

void dirty_log_mark(struct dirty_log *l, uint64_t gpa, uint64_t len)
{
	uint64_t first, last;

	if (!l->words || !len || gpa >> DIRTY_PAGE_SHIFT >= l->pages)
		return;
	first = gpa >> DIRTY_PAGE_SHIFT;
	last = (len - 1 > UINT64_MAX - gpa) ? l->pages - 1 : (gpa + len - 1) >> DIRTY_PAGE_SHIFT;
	if (last >= l->pages)
		last = l->pages - 1;
	for (uint64_t p = first; p <= last; p++)
		atomic_fetch_or_explicit((_Atomic uint64_t *)&l->words[p / 64], 1ULL << (p % 64),
					 memory_order_relaxed);
}

void dirty_log_mark_all(struct dirty_log *l)
{
	if (l->words)
		dirty_log_mark(l, 0, l->pages << DIRTY_PAGE_SHIFT);
}

uint64_t dirty_log_collect(struct dirty_log *l, uint64_t first, uint64_t *out, size_t nwords)
{
	uint64_t count = 0, w0 = first / 64, total = (l->pages + 63) / 64;

	if (!l->words || first % 64)
		return 0;
	for (size_t i = 0; i < nwords && w0 + i < total; i++) {
		uint64_t w = atomic_exchange_explicit((_Atomic uint64_t *)&l->words[w0 + i], 0,
						      memory_order_acq_rel);

		out[i] |= w;
		count += (uint64_t)__builtin_popcountll(w);
	}
	return count;
}
