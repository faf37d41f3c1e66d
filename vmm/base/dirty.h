/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A dirty-page log of guest RAM for live migration: one bit per 4 KiB page of
 * guest-physical address space, in 64-bit little-endian words, in a shared
 * memfd mapping. It is the log that every writer of guest RAM outside the
 * guest's vCPUs shares, as vhost defines it (VHOST_SET_LOG_BASE; vhost-user
 * SET_LOG_BASE with LOG_SHMFD: bit n set = page n written):
 *   - kernel vhost (net, vsock) gets its address (the VMM's mapping);
 *   - a vhost-user back-end maps its fd;
 *   - the VMM's own in-process back-ends set bits through guest_mem_mark_dirty().
 * Writes by vCPUs come from KVM's own dirty log, which the migration core
 * merges with this one. Setting is atomic (fetch-or); the migration core
 * collects and clears it a word at a time (atomic exchange), so a bit set
 * concurrently is never lost.
 */
#ifndef VMM_BASE_DIRTY_H
#define VMM_BASE_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIRTY_PAGE_SHIFT	12
#define DIRTY_PAGE_SIZE		(1ULL << DIRTY_PAGE_SHIFT)

struct dirty_log {
	uint64_t *words;	/* shared mapping of fd */
	size_t size;		/* bytes mapped (a multiple of 4096) */
	uint64_t pages;		/* pages covered: guest-physical [0, pages * 4 KiB) */
	int fd;			/* memfd */
};

/* A log covering guest-physical [0, gpa_end), all clear; 0 or -errno (-ENOMEM). */
int dirty_log_init(struct dirty_log *l, uint64_t gpa_end);

/* Unmaps and closes; safe on a zeroed or destroyed log. */
void dirty_log_destroy(struct dirty_log *l);

/* Marks [gpa, gpa + len) dirty (clipped to the log); atomic, any thread. */
void dirty_log_mark(struct dirty_log *l, uint64_t gpa, uint64_t len);

/* Sets every bit (a full pass): the next collection returns every page. */
void dirty_log_mark_all(struct dirty_log *l);

/*
 * Moves the log's bits for pages [first, first + 64 * nwords) into out (or'ed in),
 * clearing them in the log atomically; first must be a multiple of 64. Returns
 * how many bits were set.
 */
uint64_t dirty_log_collect(struct dirty_log *l, uint64_t first, uint64_t *out, size_t nwords);

#endif
