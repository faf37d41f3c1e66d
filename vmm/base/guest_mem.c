// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "vmm/base/dirty.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/util.h"

#define HUGEPAGE_SIZE (2ULL << 20)
#define GM_PAGE 4096ULL

static int check_ranges(const struct guest_mem_range *r, unsigned int n, uint64_t align)
{
	uint64_t end, prev_end = 0;

	if (n == 0 || n > GUEST_MEM_MAX_REGIONS)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++) {
		if (!r[i].size || r[i].gpa % align || r[i].size % align)
			return -EINVAL;
		if (__builtin_add_overflow(r[i].gpa, r[i].size, &end))
			return -EINVAL;
		if (i && r[i].gpa < prev_end)
			return -EINVAL;
		prev_end = end;
	}
	return 0;
}

/*
 * Maps size bytes at a 2 MiB-aligned address: of fd shared, or anonymous
 * private memory when fd is -1. Aligned so that huge pages of the memory line
 * up with huge pages of the host mapping (KVM needs both aligned alike to use
 * a 2 MiB nested page, and THP needs an aligned 2 MiB of the mapping). Returns
 * NULL with errno set on failure.
 */
static uint8_t *map_aligned(int fd, uint64_t size)
{
	uint64_t span = size + HUGEPAGE_SIZE;
	uint8_t *resv, *base, *end;
	int flags = fd >= 0 ? MAP_SHARED | MAP_NORESERVE : MAP_PRIVATE | MAP_ANONYMOUS;

	resv = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (resv == MAP_FAILED)
		return NULL;
	base = (uint8_t *)ALIGN_UP((uintptr_t)resv, HUGEPAGE_SIZE);
	if (mmap(base, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, 0) == MAP_FAILED) {
		int err = errno;

		munmap(resv, span);
		errno = err;
		return NULL;
	}
	end = resv + span;
	if (base > resv)
		munmap(resv, (size_t)(base - resv));
	if (end > base + size)
		munmap(base + size, (size_t)(end - (base + size)));
	return base;
}

enum guest_mem_backing guest_mem_backing_for(bool shared, bool hugepages)
{
	if (hugepages)
		return GUEST_MEM_HUGETLB;
	return shared ? GUEST_MEM_MEMFD : GUEST_MEM_ANON;
}

/* Creates and sizes the memfd of a shared backing; the fd or -errno. */
static int create_memfd(enum guest_mem_backing backing, uint64_t size)
{
	int fd = memfd_create("vmm-guest-ram",
			      MFD_CLOEXEC | (backing == GUEST_MEM_HUGETLB ? MFD_HUGETLB : 0));

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

int guest_mem_init(struct guest_mem *m, const struct guest_mem_range *ranges,
		   unsigned int nranges, enum guest_mem_backing backing)
{
	bool huge = backing == GUEST_MEM_HUGETLB;
	uint64_t align = huge ? HUGEPAGE_SIZE : (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t total = 0, off = 0;
	int ret;

	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->pagemap_fd = -1;
	if (backing != GUEST_MEM_ANON && backing != GUEST_MEM_MEMFD && !huge)
		return -EINVAL;
	ret = check_ranges(ranges, nranges, align);
	if (ret)
		return ret;
	for (unsigned int i = 0; i < nranges; i++)
		if (__builtin_add_overflow(total, ranges[i].size, &total))
			return -EINVAL;
	/* The mapping spans total plus 2 MiB of alignment slack. */
	if (total > SIZE_MAX - HUGEPAGE_SIZE)
		return -ENOMEM;

	m->owned = true;
	m->size = total;
	m->backing = backing;
	if (backing != GUEST_MEM_ANON) {
		m->fd = create_memfd(backing, total);
		if (m->fd < 0) {
			ret = m->fd;
			m->fd = -1;
			goto fail;
		}
	}
	m->base = map_aligned(m->fd, total);
	if (!m->base) {
		ret = -errno;
		goto fail;
	}
	m->shared = m->fd >= 0;
	/* Where anonymous RAM was never touched (guest_mem_extent); optional. */
	if (backing == GUEST_MEM_ANON)
		m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	/* Guest RAM is never part of a core dump; it may be gigabytes and holds guest secrets. */
	madvise(m->base, total, MADV_DONTDUMP);
	/*
	 * Ask for transparent huge pages: KVM then maps guest RAM with 2 MiB
	 * nested pages, which saves most of the page faults of a boot. Whether the
	 * host grants them depends on guest_mem_thp_sysfs(backing).
	 */
	if (!huge)
		m->thp_advised = madvise(m->base, total, MADV_HUGEPAGE) == 0;

	for (unsigned int i = 0; i < nranges; i++) {
		m->regions[i] = (struct guest_region){
			.gpa = ranges[i].gpa,
			.size = ranges[i].size,
			.hva = m->base + off,
			.fd_offset = off,
		};
		off += ranges[i].size;
	}
	m->nregions = nranges;
	return 0;
fail:
	guest_mem_destroy(m);
	return ret;
}

void guest_mem_destroy(struct guest_mem *m)
{
	if (m->owned && m->base)
		munmap(m->base, m->size);
	if (m->owned && m->fd >= 0)
		close(m->fd);
	if (m->owned && m->pagemap_fd >= 0)
		close(m->pagemap_fd);
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->pagemap_fd = -1;
}

void guest_mem_init_from_buffer(struct guest_mem *m, void *buf, uint64_t gpa, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->pagemap_fd = -1;
	m->regions[0] = (struct guest_region){ .gpa = gpa, .size = size, .hva = buf };
	m->nregions = 1;
	m->size = size;
}

const struct guest_region *guest_mem_region(const struct guest_mem *m, uint64_t gpa)
{
	for (unsigned int i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

void *guest_mem_ptr_partial(const struct guest_mem *m, uint64_t gpa, uint64_t *len)
{
	const struct guest_region *r = guest_mem_region(m, gpa);
	uint64_t off, avail;

	if (!r || *len == 0)
		return NULL;
	off = gpa - r->gpa;
	avail = r->size - off;
	if (*len > avail)
		*len = avail;
	return r->hva + off;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t got = len, end;

	if (len == 0 || __builtin_add_overflow(gpa, len, &end))
		return NULL;
	void *p = guest_mem_ptr_partial(m, gpa, &got);

	return p && got == len ? p : NULL;
}

/* /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PRESENT	(1ULL << 63)
#define PM_SWAPPED	(1ULL << 62)
#define PM_BATCH	512u	/* entries read at once: 2 MiB of RAM */

/*
 * guest_mem_extent for anonymous memory at hva, *extent (the rest of the region) on
 * entry: a run of never-touched pages (true) or of touched ones, at most PM_BATCH pages.
 * An unreadable page map says data.
 */
static bool anon_extent(int pagemap_fd, const uint8_t *hva, uint64_t *extent)
{
	uint64_t e[PM_BATCH], want = MIN(*extent / GM_PAGE, (uint64_t)PM_BATCH), n;
	ssize_t got;
	bool hole;

	if (!want) {
		*extent = GM_PAGE;
		return false;
	}
	got = pread(pagemap_fd, e, want * 8, (off_t)((uintptr_t)hva / GM_PAGE * 8));
	if (got < 8) {
		*extent = MIN(*extent, want * GM_PAGE);
		return false;
	}
	n = (uint64_t)got / 8;
	hole = !(e[0] & (PM_PRESENT | PM_SWAPPED));
	for (uint64_t i = 1; i < n; i++)
		if (!(e[i] & (PM_PRESENT | PM_SWAPPED)) != hole) {
			n = i;
			break;
		}
	*extent = n * GM_PAGE;
	return hole;
}

bool guest_mem_extent(const struct guest_mem *m, uint64_t gpa, uint64_t *extent)
{
	const struct guest_region *r = guest_mem_region(m, gpa);
	uint64_t rest, off;
	off_t at;

	if (!r) {
		*extent = GM_PAGE;
		return false;
	}
	rest = r->size - (gpa - r->gpa);
	*extent = rest;
	if (m->owned && m->backing == GUEST_MEM_ANON && m->pagemap_fd >= 0)
		return anon_extent(m->pagemap_fd, r->hva + (gpa - r->gpa), extent);
	if (m->fd < 0 || m->backing != GUEST_MEM_MEMFD)
		return false;
	off = r->fd_offset + (gpa - r->gpa);
	at = lseek(m->fd, (off_t)off, SEEK_DATA);
	if (at < 0)	/* ENXIO: a hole up to the end of the file; anything else: unknown */
		return errno == ENXIO;
	if ((uint64_t)at > off) {
		*extent = MIN(((uint64_t)at - off) & ~(uint64_t)(GM_PAGE - 1), rest);
		if (*extent)
			return true;
		*extent = rest;
		return false;
	}
	at = lseek(m->fd, (off_t)off, SEEK_HOLE);
	if (at > 0 && (uint64_t)at > off)
		*extent = MAX(MIN((uint64_t)at - off, rest) & ~(uint64_t)(GM_PAGE - 1),
			      MIN((uint64_t)GM_PAGE, rest));
	return false;
}

static int guest_mem_copy(const struct guest_mem *m, uint64_t gpa, void *host,
			  uint64_t len, bool to_guest)
{
	uint64_t end;

	if (__builtin_add_overflow(gpa, len, &end))
		return -EFAULT;
	/* Check the whole span first, so a failed copy leaves nothing half-done. */
	for (uint64_t g = gpa, left = len; left;) {
		uint64_t n = left;

		if (!guest_mem_ptr_partial(m, g, &n))
			return -EFAULT;
		g += n;
		left -= n;
	}
	while (len) {
		uint64_t n = len;
		uint8_t *p = guest_mem_ptr_partial(m, gpa, &n);

		if (to_guest)
			memcpy(p, host, n);
		else
			memcpy(host, p, n);
		host = (uint8_t *)host + n;
		gpa += n;
		len -= n;
	}
	return 0;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
	return guest_mem_copy(m, gpa, dst, len, false);
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	int r = guest_mem_copy(m, gpa, (void *)src, len, true);

	if (!r)
		guest_mem_mark_dirty(m, gpa, len);
	return r;
}

/*
 * A writer counts itself in before it looks at the log, and out once it is done with it;
 * guest_mem_set_dirty_log(NULL) clears the pointer, then waits for the count to drop.
 * Both sides are sequentially consistent: either the writer sees NULL, or the remover
 * sees the writer counted (store-then-load on each side, the other's order).
 */
void guest_mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	struct guest_mem *mm = (struct guest_mem *)m;
	struct dirty_log *l;

	if (!len || !atomic_load_explicit(&mm->dirty, memory_order_relaxed))
		return;		/* not logging: the common case costs one load */
	atomic_fetch_add(&mm->dirty_writers, 1);
	l = atomic_load(&mm->dirty);
	if (l)
		dirty_log_mark(l, gpa, len);
	atomic_fetch_sub_explicit(&mm->dirty_writers, 1, memory_order_release);
}

void guest_mem_set_dirty_log(struct guest_mem *m, struct dirty_log *log)
{
	atomic_store(&m->dirty, log);
	if (log)
		return;
	/* A writer holds the log for a few instructions: wait them out. */
	while (atomic_load_explicit(&m->dirty_writers, memory_order_acquire))
		sched_yield();
}

uint64_t guest_mem_host_limit(void)
{
	struct sysinfo si;

	if (sysinfo(&si) < 0)
		return UINT64_MAX;
	return ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
}

const char *guest_mem_thp_sysfs(enum guest_mem_backing backing)
{
	switch (backing) {
	case GUEST_MEM_ANON:
		return GUEST_MEM_ANON_THP_SYSFS;
	case GUEST_MEM_MEMFD:
		return GUEST_MEM_SHMEM_THP_SYSFS;
	default:
		return NULL;
	}
}

enum guest_mem_thp guest_mem_thp_status(const char *sysfs_path)
{
	char buf[128];
	const char *sel;
	ssize_t n;
	int fd = open(sysfs_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return GUEST_MEM_THP_UNKNOWN;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return GUEST_MEM_THP_UNKNOWN;
	buf[n] = '\0';
	/*
	 * The file lists every mode and brackets the selected one: "always [madvise]
	 * never" (anonymous memory), "always within_size [advise] never deny force"
	 * (shmem). Guest RAM is advised, so madvise/advise count as on.
	 */
	sel = strchr(buf, '[');
	if (!sel)
		return GUEST_MEM_THP_UNKNOWN;
	sel++;
	if (!strncmp(sel, "never]", 6) || !strncmp(sel, "deny]", 5))
		return GUEST_MEM_THP_OFF;
	if (!strncmp(sel, "always]", 7) || !strncmp(sel, "within_size]", 12) ||
	    !strncmp(sel, "advise]", 7) || !strncmp(sel, "madvise]", 8) ||
	    !strncmp(sel, "force]", 6))
		return GUEST_MEM_THP_ON;
	return GUEST_MEM_THP_UNKNOWN;
}
