/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guest RAM: one abstraction used by the vCPU/boot code, virtio, vhost and
 * migration. Regions are consecutive slices of one 2 MiB-aligned host mapping,
 * placed at guest-physical addresses. The mapping is one of:
 *  - anonymous private memory (the default): advised for transparent huge
 *    pages, which a stock host gives (THP "always" or "madvise" in
 *    /sys/kernel/mm/transparent_hugepage/enabled). KVM and kernel vhost see it
 *    through the VMM's own address space; no other process can map it.
 *  - a shared memfd (shared=on): the same RAM can be mapped by another process,
 *    as vhost-user back-ends must. Each region is then the slice
 *    [fd_offset, fd_offset + size) of guest_mem.fd. Huge pages only where the
 *    host's shmem THP allows it (shmem_enabled).
 *  - a hugetlbfs memfd (hugepages=on): reserved 2 MiB pages, mapped shared, so
 *    it is shareable as well.
 * Every guest address is translated through the checked functions below;
 * nothing computes "base + gpa" by hand.
 */
#ifndef VMM_GUEST_MEM_H
#define VMM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 8

struct dirty_log;

/* What backs guest RAM (see the top of this file). */
enum guest_mem_backing {
	GUEST_MEM_ANON,		/* anonymous private memory, THP advised; fd -1 */
	GUEST_MEM_MEMFD,	/* shared memfd (shmem), THP advised */
	GUEST_MEM_HUGETLB,	/* shared hugetlbfs memfd, 2 MiB pages */
};

/*
 * One region: what KVM memslots and kernel vhost need (gpa, size, hva) and, when
 * the RAM is shareable (guest_mem.fd >= 0), what a vhost-user memory table needs
 * (guest_mem.fd and fd_offset).
 */
struct guest_region {
	uint64_t gpa;		/* first guest-physical address */
	uint64_t size;		/* bytes */
	uint8_t *hva;		/* host mapping */
	uint64_t fd_offset;	/* offset of this region in guest_mem.fd (and in the mapping) */
};

struct guest_mem {
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned int nregions;	/* sorted by gpa, non-overlapping */
	int fd;			/* memfd backing all regions, or -1 (anonymous or hand-made) */
	uint8_t *base;		/* mapping of all regions, consecutive */
	uint64_t size;		/* total RAM bytes */
	enum guest_mem_backing backing;
	bool shared;		/* another process can map it: fd >= 0, mapped MAP_SHARED */
	bool thp_advised;	/* madvise(MADV_HUGEPAGE) succeeded on the mapping */
	bool owned;		/* fd and base were created by guest_mem_init() */
	int pagemap_fd;		/* /proc/self/pagemap for GUEST_MEM_ANON when owned, or -1 */
	/*
	 * While a migration logs dirty pages: the log the VMM's own writers of guest RAM
	 * mark (guest_mem_mark_dirty); NULL otherwise. Set and cleared with
	 * guest_mem_set_dirty_log(), which counts on dirty_writers: the writers inside
	 * guest_mem_mark_dirty() at this moment.
	 */
	struct dirty_log *_Atomic dirty;
	_Atomic unsigned int dirty_writers;
};

struct guest_mem_range {
	uint64_t gpa, size;
};

/* The backing for the --memory options: hugepages=on wins (hugetlbfs is shareable too). */
enum guest_mem_backing guest_mem_backing_for(bool shared, bool hugepages);

/*
 * Creates RAM of the given backing for the given ranges (sorted, non-overlapping,
 * page-aligned; 2 MiB-aligned for GUEST_MEM_HUGETLB). Returns 0 or -errno (-EINVAL
 * bad ranges or backing, -ENOMEM/-ENOSPC host cannot provide it).
 */
int guest_mem_init(struct guest_mem *m, const struct guest_mem_range *ranges,
		   unsigned int nranges, enum guest_mem_backing backing);

/* Unmaps and closes everything; safe on a zeroed or already destroyed object. */
void guest_mem_destroy(struct guest_mem *m);

/* Wraps caller-owned host memory as guest RAM (unit tests, fuzzers): one region at gpa. */
void guest_mem_init_from_buffer(struct guest_mem *m, void *buf, uint64_t gpa, uint64_t size);

/* Returns the region containing gpa, or NULL. */
const struct guest_region *guest_mem_region(const struct guest_mem *m, uint64_t gpa);

/* Host pointer for [gpa, gpa+len) if it lies inside one region, else NULL (also on overflow). */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/*
 * Host pointer for gpa and, in *len, how many of the requested bytes are contiguous there
 * (shortened at the end of a region). NULL if gpa is not RAM or *len is 0.
 */
void *guest_mem_ptr_partial(const struct guest_mem *m, uint64_t gpa, uint64_t *len);

/*
 * Whether guest RAM from gpa on is a hole: memory no page backs yet, never written, which
 * reads as zero — and which reading through the mapping would allocate (a shmem read fault
 * allocates a page; anonymous memory maps the shared zero page). Sets *extent to how many
 * bytes from gpa on are all hole or all data (at least one page, at most to the end of
 * gpa's region). A memfd is asked with SEEK_DATA/SEEK_HOLE, anonymous memory the
 * process's page map (a page neither present nor swapped out was never touched);
 * hugetlbfs and unknown answers count as data, so a caller that reads "data" is always
 * correct.
 * A hole can become data at any moment (the guest writes): whoever relies on "hole" must
 * have a dirty log catching writes from before the call. gpa must be RAM.
 */
bool guest_mem_extent(const struct guest_mem *m, uint64_t gpa, uint64_t *extent);

/*
 * Records that the VMM (not a vCPU: KVM logs those) wrote [gpa, gpa + len) of guest RAM,
 * when a migration is logging (m->dirty); a no-op otherwise. Any thread. Every in-process
 * writer of guest RAM calls it after writing (a device's used ring and the buffers it
 * filled), so a page written while RAM is being sent is sent again.
 */
void guest_mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/*
 * Makes log (NULL: none) the log guest_mem_mark_dirty() marks. Removing a log returns
 * once no writer can touch it any more: the caller may then free it.
 */
void guest_mem_set_dirty_log(struct guest_mem *m, struct dirty_log *log);

/* Copies between guest RAM and host memory, across regions; 0 or -EFAULT (nothing partial is reported as done). */
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);

/* Whether the host gives RAM advised with MADV_HUGEPAGE transparent huge pages. */
enum guest_mem_thp {
	GUEST_MEM_THP_UNKNOWN,
	GUEST_MEM_THP_OFF,
	GUEST_MEM_THP_ON,
};

/* The host's THP settings: for anonymous memory, and for shmem (memfd) memory. */
#define GUEST_MEM_ANON_THP_SYSFS "/sys/kernel/mm/transparent_hugepage/enabled"
#define GUEST_MEM_SHMEM_THP_SYSFS "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

/*
 * The sysfs file that decides whether RAM of this backing gets transparent huge
 * pages: GUEST_MEM_ANON_THP_SYSFS or GUEST_MEM_SHMEM_THP_SYSFS; NULL for
 * GUEST_MEM_HUGETLB (reserved huge pages, no THP involved).
 */
const char *guest_mem_thp_sysfs(enum guest_mem_backing backing);

/*
 * Reads a THP mode file (either of the above, or a test file) and says whether
 * advised memory gets huge pages: on for always, madvise, advise, within_size,
 * force; off for never, deny; unknown when unreadable or unexpected.
 */
enum guest_mem_thp guest_mem_thp_status(const char *sysfs_path);

/* Host RAM in bytes the machine can provide (physical RAM plus swap). */
uint64_t guest_mem_host_limit(void);

#endif
