/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guest RAM: one abstraction used by the vCPU/boot code, virtio, vhost and
 * migration. RAM is one memfd (MAP_SHARED, optionally hugetlbfs) so it can be
 * handed to KVM, to kernel vhost and, as file descriptors, to vhost-user
 * back-ends. Regions are consecutive slices of that memfd placed at
 * guest-physical addresses. Every guest address is translated through the
 * checked functions below; nothing computes "base + gpa" by hand.
 */
#ifndef VMM_GUEST_MEM_H
#define VMM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 8

struct guest_region {
	uint64_t gpa;		/* first guest-physical address */
	uint64_t size;		/* bytes */
	uint8_t *hva;		/* host mapping */
	uint64_t fd_offset;	/* offset of this region in guest_mem.fd */
};

struct guest_mem {
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned int nregions;	/* sorted by gpa, non-overlapping */
	int fd;			/* memfd backing all regions, or -1 */
	uint8_t *base;		/* mapping of the whole memfd */
	uint64_t size;		/* total RAM bytes */
	bool hugepages;
	bool owned;		/* fd and base were created by guest_mem_init() */
};

struct guest_mem_range {
	uint64_t gpa, size;
};

/*
 * Creates RAM for the given ranges (sorted, non-overlapping, page-aligned).
 * Returns 0 or -errno (-EINVAL bad ranges, -ENOMEM/-ENOSPC host cannot provide it).
 */
int guest_mem_init(struct guest_mem *m, const struct guest_mem_range *ranges,
		   unsigned int nranges, bool hugepages);

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

/* Copies between guest RAM and host memory, across regions; 0 or -EFAULT (nothing partial is reported as done). */
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);

/* Whether the host gives memfd (shmem) mappings transparent huge pages. */
enum guest_mem_thp {
	GUEST_MEM_THP_UNKNOWN,
	GUEST_MEM_THP_OFF,
	GUEST_MEM_THP_ON,
};

/* The default path of the host's shmem THP setting. */
#define GUEST_MEM_SHMEM_THP_SYSFS "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

/* Reads the shmem THP mode from sysfs_path (GUEST_MEM_SHMEM_THP_SYSFS, or a test file). */
enum guest_mem_thp guest_mem_thp_status(const char *sysfs_path);

/* Host RAM in bytes the machine can provide (physical RAM plus swap). */
uint64_t guest_mem_host_limit(void);

#endif
