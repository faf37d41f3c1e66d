// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vhost-user back-end library (see vhost/vu_backend.h for the contract).
 *
 * Everything the front-end sends is hostile: each request's payload size and
 * fd count are checked before it is looked at, every index and address is
 * checked, and every fd that came with a message is either kept by exactly
 * one owner or closed before the request returns.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vhost/vu_backend.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

/* What the handlers tell vu_dispatch(). */
#define VU_DONE		0	/* success; ack 0 if asked */
#define VU_FAILED	1	/* refused; ack 1 if asked; the device keeps running */
/* < 0: a protocol violation; the device becomes broken. */

#define STATE_MAGIC	"VMMVUST1"
#define STATE_VERSION	1u

/*
 * One budget for every message a front-end can trigger: one that breaks the
 * protocol in a loop (or a fuzzer) cannot flood the log.
 */
static struct log_ratelimit vu_ratelimit = LOG_RATELIMIT_INIT;
#define vu_report(...)	log_warn_ratelimited(&vu_ratelimit, __VA_ARGS__)

static uint64_t bit(unsigned int n)
{
	return 1ULL << n;
}

static bool has_protocol(const struct vu_dev *dev, unsigned int f)
{
	return dev->protocol_features & bit(f);
}

static bool has_feature(const struct vu_dev *dev, unsigned int f)
{
	return dev->features & bit(f);
}

uint64_t vu_inflight_queue_size(uint16_t queue_size)
{
	return ALIGN_UP(sizeof(struct vu_inflight_queue) +
			(uint64_t)queue_size * sizeof(struct vu_inflight_desc), 64ULL);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Takes msg's fd i out of the message (the caller now owns it). */
static int take_fd(struct vhost_user_msg *msg, unsigned int i)
{
	int fd = msg->fds[i];

	msg->fds[i] = -1;
	return fd;
}

void vu_panic(struct vu_dev *dev, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (!dev->broken)
		vu_report("%s: vhost-user front-end error: %s — the connection is dropped; "
			  "the front-end must reconnect", dev->name, why);
	dev->broken = true;
	for (unsigned int q = 0; q < dev->nqueues; q++) {
		struct vu_queue *vq = &dev->queues[q];

		if (vq->running) {
			dev->iface->queue_stop(dev, q);
			virtq_save(&vq->vq, &vq->pos);
			if (vq->kick_fd >= 0 && dev->iface->queue_kick)
				dev->ops->remove_watch(dev, vq->kick_fd);
			vq->running = false;
		}
	}
}

bool vu_broken(const struct vu_dev *dev)
{
	return dev->broken;
}

/* ---- Memory ---- */

/* Rebuilds the guest_mem view (sorted by gpa) from the region table. */
static void mem_rebuild(struct vu_dev *dev)
{
	struct guest_mem *m = &dev->mem;
	unsigned int n = 0;

	memset(m, 0, sizeof(*m));
	m->fd = -1;
	for (unsigned int i = 0; i < dev->nregions; i++) {
		const struct vu_region *r = &dev->regions[i];
		unsigned int j = n;

		while (j > 0 && m->regions[j - 1].gpa > r->gpa) {
			m->regions[j] = m->regions[j - 1];
			j--;
		}
		m->regions[j] = (struct guest_region){ .gpa = r->gpa, .size = r->size, .hva = r->hva };
		n++;
		m->size += r->size;
	}
	m->nregions = n;
}

/* Front-end virtual address -> guest-physical, if [qva, qva + len) is inside one region. */
static bool qva_to_gpa(const struct vu_dev *dev, uint64_t qva, uint64_t len, uint64_t *gpa)
{
	for (unsigned int i = 0; i < dev->nregions; i++) {
		const struct vu_region *r = &dev->regions[i];
		uint64_t off = qva - r->qva;

		if (qva >= r->qva && off < r->size && len <= r->size - off) {
			*gpa = r->gpa + off;
			return true;
		}
	}
	return false;
}

/* Host address -> guest-physical, with how many bytes are contiguous there. */
static bool hva_to_gpa(const struct vu_dev *dev, const void *hva, uint64_t *gpa, uint64_t *left)
{
	for (unsigned int i = 0; i < dev->nregions; i++) {
		const struct vu_region *r = &dev->regions[i];
		uintptr_t h = (uintptr_t)hva, base = (uintptr_t)r->hva;

		if (h >= base && h - base < r->size) {
			*gpa = r->gpa + (h - base);
			*left = r->size - (h - base);
			return true;
		}
	}
	return false;
}

/*
 * Maps [offset, offset + size) of fd shared, read-write. The fd must be a
 * regular file that long (anything shorter would fault on access). 0 with
 * *map, *map_len and *ptr (the byte at offset), or -errno.
 */
static int map_fd(int fd, uint64_t offset, uint64_t size, void **map, size_t *map_len,
		  uint8_t **ptr)
{
	struct stat st;
	uint64_t align = (uint64_t)sysconf(_SC_PAGESIZE), start, len, end;
	void *p;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* hugetlbfs reports its page size here; mappings must be aligned to it. */
	if (st.st_blksize > 0 && (uint64_t)st.st_blksize > align &&
	    !((uint64_t)st.st_blksize & ((uint64_t)st.st_blksize - 1)))
		align = (uint64_t)st.st_blksize;
	if (size == 0 || __builtin_add_overflow(offset, size, &end) || end > (uint64_t)st.st_size)
		return -EINVAL;
	start = ALIGN_DOWN(offset, align);
	len = end - start;
	if (len > SIZE_MAX)
		return -EINVAL;
	p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
		 (off_t)start);
	if (p == MAP_FAILED)
		return -errno;
	madvise(p, (size_t)len, MADV_DONTDUMP);
	*map = p;
	*map_len = (size_t)len;
	*ptr = (uint8_t *)p + (offset - start);
	return 0;
}

static void region_unmap(struct vu_region *r)
{
	if (r->map)
		munmap(r->map, r->map_len);
	memset(r, 0, sizeof(*r));
}

/* Whether [gpa, gpa + size) overlaps a region of the table other than skip. */
static bool region_overlaps(const struct vu_dev *dev, uint64_t gpa, uint64_t size)
{
	for (unsigned int i = 0; i < dev->nregions; i++) {
		const struct vu_region *r = &dev->regions[i];

		if (gpa < r->gpa + r->size && r->gpa < gpa + size)
			return true;
	}
	return false;
}

/* Maps region d from fd (not closed here) into a new slot of the table. 0 or -errno. */
static int region_add(struct vu_dev *dev, const struct vhost_user_mem_region *d, int fd)
{
	struct vu_region *r;
	int ret;

	if (vhost_user_check_region(d))
		return -EINVAL;
	if (dev->nregions == VU_MAX_MEM_SLOTS)
		return -ENOSPC;
	if (region_overlaps(dev, d->guest_addr, d->size))
		return -EEXIST;
	r = &dev->regions[dev->nregions];
	ret = map_fd(fd, d->mmap_offset, d->size, &r->map, &r->map_len, &r->hva);
	if (ret)
		return ret;
	r->gpa = d->guest_addr;
	r->size = d->size;
	r->qva = d->user_addr;
	r->mmap_offset = d->mmap_offset;
	dev->nregions++;
	return 0;
}

static void regions_clear(struct vu_dev *dev)
{
	for (unsigned int i = 0; i < dev->nregions; i++)
		region_unmap(&dev->regions[i]);
	dev->nregions = 0;
	mem_rebuild(dev);
}

/* ---- Dirty log ---- */

void vu_log_write(struct vu_dev *dev, uint64_t gpa, uint64_t len)
{
	uint64_t first, last;

	if (!dev->log || !has_feature(dev, VHOST_USER_F_LOG_ALL) || len == 0)
		return;
	first = gpa / VHOST_USER_LOG_PAGE;
	if (__builtin_add_overflow(gpa, len - 1, &last))
		last = UINT64_MAX;
	last /= VHOST_USER_LOG_PAGE;
	for (uint64_t page = first; page <= last; page++) {
		if (page / 8 >= dev->log_size) {
			log_warn_ratelimited(&vu_ratelimit,
					     "%s: write at 0x%" PRIx64 " is beyond the dirty log (%" PRIu64
					     " bytes)", dev->name, page * VHOST_USER_LOG_PAGE,
					     dev->log_size);
			return;
		}
		__atomic_fetch_or(&dev->log[page / 8], (uint8_t)(1u << (page % 8)),
				  __ATOMIC_RELAXED);
	}
	if (dev->log_fd >= 0)
		eventfd_write(dev->log_fd, 1);
}

/* Logs bytes [off, off + len) of q's used ring, if the ring asked for it. */
static void log_used(struct vu_dev *dev, struct vu_queue *q, uint64_t off, uint64_t len)
{
	if (q->addr_flags & bit(VHOST_USER_VRING_F_LOG))
		vu_log_write(dev, q->log_gpa + off, len);
}

static void log_unmap(struct vu_dev *dev)
{
	if (dev->log_map)
		munmap(dev->log_map, dev->log_map_len);
	dev->log_map = NULL;
	dev->log = NULL;
	dev->log_size = 0;
}

/* ---- Queues: running and stopping ---- */

static void track_free(struct vu_queue *q)
{
	free(q->track);
	free(q->resubmit);
	free(q->batch);
	q->track = NULL;
	q->resubmit = NULL;
	q->batch = NULL;
	q->nresubmit = q->resubmit_pos = q->nbatch = 0;
	q->counter = 1;
}

static void loaded_free(struct vu_loaded_queue *l)
{
	free(l->heads);
	memset(l, 0, sizeof(*l));
}

/* (Re)allocates q's tracking for its size; the in-flight set is dropped. 0 or -ENOMEM. */
static int track_alloc(struct vu_queue *q)
{
	track_free(q);
	q->track = calloc(q->num, sizeof(*q->track));
	q->resubmit = calloc(q->num, sizeof(*q->resubmit));
	q->batch = calloc(q->num, sizeof(*q->batch));
	if (!q->track || !q->resubmit || !q->batch) {
		track_free(q);
		return -ENOMEM;
	}
	return 0;
}

/* Hands the queue back from the device; its position is kept in q->pos. */
static void queue_halt(struct vu_dev *dev, struct vu_queue *q)
{
	if (!q->running)
		return;
	dev->iface->queue_stop(dev, q->index);
	if (q->kick_fd >= 0 && dev->iface->queue_kick)
		dev->ops->remove_watch(dev, q->kick_fd);
	virtq_save(&q->vq, &q->pos);
	q->running = false;
	close_fd(&q->old_call_fd);
}

static void halt_all(struct vu_dev *dev, bool *was)
{
	for (unsigned int i = 0; i < dev->nqueues; i++) {
		was[i] = dev->queues[i].running;
		queue_halt(dev, &dev->queues[i]);
	}
}

static void kick_cb(struct vu_dev *dev, int fd, uint32_t events, void *data)
{
	struct vu_queue *q = data;
	eventfd_t v;

	if (eventfd_read(fd, &v) < 0 && errno != EAGAIN)
		log_warn_ratelimited(&vu_ratelimit, "%s: queue %u: reading its kick fd: %s",
				     dev->name, q->index, strerror(errno));
	if (q->running && !dev->broken)
		dev->iface->queue_kick(dev, q->index);
}

/* Compares two tracked heads by submission order (for qsort through a context-free wrapper). */
static const struct vu_track *sort_track;

static int cmp_counter(const void *a, const void *b)
{
	uint64_t ca = sort_track[*(const uint16_t *)a].counter;
	uint64_t cb = sort_track[*(const uint16_t *)b].counter;

	return ca < cb ? -1 : ca > cb;
}

/* Builds the resubmit list from q->track, in submission order; sets q->counter past it. */
static void resubmit_from_track(struct vu_queue *q)
{
	unsigned int n = 0;
	uint64_t max = 0;

	for (unsigned int h = 0; h < q->num; h++) {
		if (q->track[h].inflight) {
			q->resubmit[n++] = (uint16_t)h;
			max = MAX(max, q->track[h].counter);
		}
	}
	sort_track = q->track;
	qsort(q->resubmit, n, sizeof(*q->resubmit), cmp_counter);
	sort_track = NULL;
	q->nresubmit = n;
	q->resubmit_pos = 0;
	q->counter = MAX(q->counter, max + 1);
}

/*
 * Reads q's INFLIGHT_SHMFD area after a reconnect (vhost-user.rst "Inflight
 * I/O tracking"): finishes the last batch if the used index moved past it,
 * then takes every in-flight head. The area is the front-end's memory: every
 * value is checked. Returns the number of chains in flight, or -EINVAL if the
 * area cannot be trusted (then it is reset and ignored).
 */
static int inflight_recover(struct vu_dev *dev, struct vu_queue *q, uint16_t used_idx)
{
	struct vu_inflight_queue *s = q->shm;
	uint16_t batch, head;
	unsigned int n = 0;

	if (s->version == 0) {
		/* Never used: a fresh area. */
		s->desc_num = q->num;
		s->used_idx = used_idx;
		s->last_batch_head = 0;
		__atomic_store_n(&s->version, 1, __ATOMIC_RELEASE);
		return 0;
	}
	if (s->version != 1 || s->desc_num != q->num)
		return -EINVAL;
	batch = (uint16_t)(used_idx - s->used_idx);
	if (batch > q->num)
		return -EINVAL;
	/* The used index was published but the batch not yet marked done: finish it. */
	head = s->last_batch_head;
	for (unsigned int i = 0; i < batch; i++) {
		if (head >= q->num)
			return -EINVAL;
		s->desc[head].inflight = 0;
		head = s->desc[head].next;
	}
	s->used_idx = used_idx;
	for (unsigned int h = 0; h < q->num; h++) {
		uint8_t f = s->desc[h].inflight;

		q->track[h].inflight = f == 1;
		q->track[h].counter = s->desc[h].counter;
		if (f > 1)
			return -EINVAL;
		n += f;
	}
	return (int)n;
}

/* Points q->shm at its region of the INFLIGHT_SHMFD area, if it has one that fits. */
static void inflight_attach(struct vu_dev *dev, struct vu_queue *q)
{
	q->shm = NULL;
	if (!dev->inflight || q->index >= dev->inflight_nq || !q->num)
		return;
	if (dev->inflight_stride < vu_inflight_queue_size(q->num)) {
		vu_report("%s: queue %u: the in-flight area has room for %" PRIu64 " entries, the "
			 "ring has %u; in-flight requests of this queue are not kept across "
			 "reconnects", dev->name, q->index,
			 (dev->inflight_stride - sizeof(struct vu_inflight_queue)) /
			 sizeof(struct vu_inflight_desc), q->num);
		return;
	}
	q->shm = (struct vu_inflight_queue *)(dev->inflight + q->index * dev->inflight_stride);
}

/*
 * Maps q's rings in the current memory table and gives it to the device.
 * false if its rings are not (or no longer) in memory: it then waits for the
 * table to change.
 */
static bool queue_run(struct vu_dev *dev, struct vu_queue *q)
{
	struct virtq_state s = q->pos;

	if (q->running || !q->started || dev->broken || !q->num || !q->addr_set)
		return q->running;
	s.size = q->num;
	s.ready = true;
	s.event_idx = has_feature(dev, VIRTIO_RING_F_EVENT_IDX);
	s.indirect = has_feature(dev, VIRTIO_RING_F_INDIRECT_DESC);
	if (!qva_to_gpa(dev, q->desc_qva, 16ULL * q->num, &s.desc_gpa) ||
	    !qva_to_gpa(dev, q->avail_qva, 6 + 2ULL * q->num, &s.avail_gpa) ||
	    !qva_to_gpa(dev, q->used_qva, 6 + 8ULL * q->num, &s.used_gpa))
		return false;
	if (virtq_start_from(&q->vq, &dev->mem, &s))
		return false;
	if (dev->iface->queue_kick && dev->ops->set_watch(dev, q->kick_fd, POLLIN, kick_cb, q)) {
		virtq_reset(&q->vq, &dev->mem);
		return false;
	}
	q->running = true;
	dev->iface->queue_start(dev, q->index);
	return true;
}

static void resume_all(struct vu_dev *dev, const bool *was)
{
	for (unsigned int i = 0; i < dev->nqueues; i++) {
		if (was[i] && !queue_run(dev, &dev->queues[i]))
			vu_report("%s: queue %u: its rings are not in the new memory table; it waits "
				 "until they are", dev->name, i);
	}
}

/*
 * Starts q on SET_VRING_KICK: its positions from SET_VRING_BASE (or, after a
 * reconnect, from the in-flight area; after a state load, with the loaded
 * in-flight chains), then runs it. VU_DONE, VU_FAILED or -errno.
 */
static int queue_start(struct vu_dev *dev, struct vu_queue *q)
{
	uint16_t used_idx;
	uint64_t used_gpa;
	int n;

	if (!q->num || !q->addr_set) {
		vu_report("%s: queue %u: kick fd before the ring's size and addresses — "
			  "a front-end bug", dev->name, q->index);
		return VU_FAILED;
	}
	if (!q->track && track_alloc(q))
		return -ENOMEM;
	if (!qva_to_gpa(dev, q->used_qva, 6 + 8ULL * q->num, &used_gpa) ||
	    guest_mem_read(&dev->mem, used_gpa + 2, &used_idx, sizeof(used_idx)))
		return -EFAULT;
	used_idx = le16toh(used_idx);
	q->pos.used_idx = used_idx;

	inflight_attach(dev, q);
	if (q->loaded.valid) {
		/* A loaded state: its in-flight chains, in order, before anything new. */
		for (unsigned int h = 0; h < q->num; h++)
			q->track[h] = (struct vu_track){ 0 };
		for (unsigned int i = 0; i < q->loaded.ninflight; i++) {
			uint16_t h = q->loaded.heads[i];

			if (h >= q->num || q->track[h].inflight) {
				vu_report("%s: queue %u: the loaded state does not fit a ring of %u",
					  dev->name, q->index, q->num);
				loaded_free(&q->loaded);
				return VU_FAILED;
			}
			q->track[h] = (struct vu_track){ .counter = i + 1, .inflight = true };
		}
		q->pos.signalled_used = q->loaded.signalled_used;
		q->pos.signalled_used_valid = q->loaded.signalled_used_valid;
		loaded_free(&q->loaded);
		if (q->shm) {
			/* The area must describe the same set from now on. */
			memset(q->shm->desc, 0, q->num * sizeof(q->shm->desc[0]));
			q->shm->desc_num = q->num;
			q->shm->used_idx = used_idx;
			for (unsigned int h = 0; h < q->num; h++) {
				q->shm->desc[h].inflight = q->track[h].inflight;
				q->shm->desc[h].counter = q->track[h].counter;
			}
			__atomic_store_n(&q->shm->version, 1, __ATOMIC_RELEASE);
		}
	} else if (q->shm) {
		n = inflight_recover(dev, q, used_idx);
		if (n < 0) {
			vu_report("%s: queue %u: its in-flight area is inconsistent; it is reset and "
				 "requests in flight (if any) are not resubmitted", dev->name, q->index);
			memset(q->shm, 0, dev->inflight_stride);
			q->shm->version = 1;
			q->shm->desc_num = q->num;
			q->shm->used_idx = used_idx;
			for (unsigned int h = 0; h < q->num; h++)
				q->track[h] = (struct vu_track){ 0 };
			n = 0;
		}
		/* Every chain taken is either in the used ring or in flight. */
		q->pos.last_avail_idx = (uint16_t)(used_idx + n);
	}
	resubmit_from_track(q);
	q->started = true;
	q->err_signalled = false;
	if (!queue_run(dev, q))
		return -EFAULT;
	/* Requests to resubmit: make the device look at the queue even without a guest kick. */
	if (q->nresubmit) {
		log_info("%s: queue %u: %u request%s in flight at the last connection's end "
			 "resubmitted", dev->name, q->index, q->nresubmit, q->nresubmit == 1 ? "" : "s");
		eventfd_write(q->kick_fd, 1);
	}
	return VU_DONE;
}

/* Resets q to its state after connection (stopped, disabled, unset); closes its fds. */
static void queue_reset(struct vu_dev *dev, struct vu_queue *q)
{
	queue_halt(dev, q);
	close_fd(&q->kick_fd);
	close_fd(&q->call_fd);
	close_fd(&q->old_call_fd);
	close_fd(&q->err_fd);
	track_free(q);
	loaded_free(&q->loaded);
	q->num = 0;
	q->addr_set = false;
	q->addr_flags = 0;
	q->started = q->enabled = false;
	q->shm = NULL;
	memset(&q->pos, 0, sizeof(q->pos));
	virtq_reset(&q->vq, &dev->mem);
}

/* ---- The queue API for devices ---- */

int vu_queue_kick_fd(const struct vu_dev *dev, unsigned int q)
{
	return dev->queues[q].kick_fd;
}

bool vu_queue_enabled(const struct vu_dev *dev, unsigned int q)
{
	return __atomic_load_n(&dev->queues[q].enabled, __ATOMIC_RELAXED);
}

uint16_t vu_queue_size(const struct vu_dev *dev, unsigned int q)
{
	return dev->queues[q].num;
}

/* The queue is broken (a guest error): tell the front-end once, on its err fd. */
static int queue_failed(struct vu_queue *q)
{
	if (!q->err_signalled && q->err_fd >= 0)
		eventfd_write(q->err_fd, 1);
	q->err_signalled = true;
	return -EIO;
}

int vu_queue_pop(struct vu_dev *dev, unsigned int qi, struct virtq_chain *chain)
{
	struct vu_queue *q = &dev->queues[qi];
	int ret;

	if (dev->broken)
		return -EIO;
	if (!q->running)
		return 0;
	if (q->resubmit_pos < q->nresubmit) {
		ret = virtq_pop_head(&q->vq, q->resubmit[q->resubmit_pos], chain);
		if (ret < 0)
			return queue_failed(q);
		if (ret > 0)
			q->resubmit_pos++;
		return ret;
	}
	ret = virtq_pop(&q->vq, chain);
	if (ret < 0)
		return queue_failed(q);
	if (ret == 0)
		return 0;
	if (q->track[chain->head].inflight) {
		log_warn_ratelimited(&vu_ratelimit,
				     "%s: queue %u: the driver made head %u available while it is in flight",
				     dev->name, qi, chain->head);
		q->vq.broken = true;
		return queue_failed(q);
	}
	q->track[chain->head] = (struct vu_track){ .counter = q->counter++, .inflight = true };
	if (q->shm) {
		q->shm->desc[chain->head].counter = q->track[chain->head].counter;
		__atomic_store_n(&q->shm->desc[chain->head].inflight, 1, __ATOMIC_RELEASE);
	}
	return 1;
}

/* Logs the first `written` bytes of chain's writable segments. */
static void log_chain(struct vu_dev *dev, const struct virtq_chain *c, uint32_t written)
{
	for (unsigned int i = c->nout; i < c->nout + c->nin && written; i++) {
		uint64_t len = MIN((uint64_t)written, c->iov[i].iov_len);
		const uint8_t *p = c->iov[i].iov_base;

		written -= (uint32_t)len;
		while (len) {
			uint64_t gpa, left;

			if (!hva_to_gpa(dev, p, &gpa, &left))
				break;
			left = MIN(left, len);
			vu_log_write(dev, gpa, left);
			p += left;
			len -= left;
		}
	}
}

int vu_queue_push(struct vu_dev *dev, unsigned int qi, const struct virtq_chain *chain,
		  uint32_t written)
{
	struct vu_queue *q = &dev->queues[qi];
	uint16_t slot = q->vq.used_pending;
	uint16_t head = chain->head;

	if (dev->broken || !q->running)
		return -EIO;
	if (written > chain->in_len)
		written = chain->in_len;
	if (dev->log)
		log_chain(dev, chain, written);
	if (virtq_add_used(&q->vq, head, written))
		return queue_failed(q);
	log_used(dev, q, offsetof(struct vring_used, ring) +
		 (uint64_t)(slot & (q->num - 1)) * sizeof(struct vring_used_elem),
		 sizeof(struct vring_used_elem));
	if (q->nbatch < q->num)
		q->batch[q->nbatch++] = head;
	if (q->shm) {
		q->shm->desc[head].next = q->shm->last_batch_head;
		q->shm->last_batch_head = head;
	}
	return 0;
}

void vu_queue_flush(struct vu_dev *dev, unsigned int qi)
{
	struct vu_queue *q = &dev->queues[qi];

	if (dev->broken || !q->running || q->nbatch == 0)
		return;
	virtq_publish_used(&q->vq);
	log_used(dev, q, offsetof(struct vring_used, idx), sizeof(uint16_t));
	for (unsigned int i = 0; i < q->nbatch; i++) {
		uint16_t h = q->batch[i];

		q->track[h].inflight = false;
		if (q->shm)
			__atomic_store_n(&q->shm->desc[h].inflight, 0, __ATOMIC_RELEASE);
	}
	if (q->shm)
		__atomic_store_n(&q->shm->used_idx, q->vq.used_idx, __ATOMIC_RELEASE);
	q->nbatch = 0;
}

bool vu_queue_notify(struct vu_dev *dev, unsigned int qi)
{
	struct vu_queue *q = &dev->queues[qi];
	int fd;

	if (dev->broken || !q->running || !virtq_should_notify(&q->vq))
		return false;
	fd = __atomic_load_n(&q->call_fd, __ATOMIC_ACQUIRE);	/* SET_VRING_CALL may swap it */
	if (fd < 0)
		return true;
	if (__atomic_add_fetch(&dev->interrupts, 1, __ATOMIC_RELAXED) == dev->drop_interrupt) {
		log_notice("%s: interrupt %" PRIu64 " not sent (VMM_DROP_INTERRUPT)", dev->name,
			   dev->drop_interrupt);
		return true;
	}
	eventfd_write(fd, 1);
	return true;
}

void vu_queue_set_notify(struct vu_dev *dev, unsigned int qi, bool enable)
{
	struct vu_queue *q = &dev->queues[qi];

	if (dev->broken || !q->running)
		return;
	virtq_set_notify(&q->vq, enable);
	if (q->vq.event_idx)
		log_used(dev, q, offsetof(struct vring_used, ring) +
			 (uint64_t)q->num * sizeof(struct vring_used_elem), sizeof(uint16_t));
	else
		log_used(dev, q, offsetof(struct vring_used, flags), sizeof(uint16_t));
}

bool vu_queue_has_work(struct vu_dev *dev, unsigned int qi)
{
	struct vu_queue *q = &dev->queues[qi];

	if (dev->broken || !q->running)
		return false;
	return q->resubmit_pos < q->nresubmit || virtq_has_work(&q->vq);
}

void vu_dev_log_queues(struct vu_dev *dev)
{
	unsigned int logged = 0;

	for (unsigned int i = 0; i < dev->nqueues; i++) {
		struct vu_queue *q = &dev->queues[i];
		struct virtq_view v;
		unsigned int inflight = 0;
		char line[256];

		if (!q->started)
			continue;
		logged++;
		if (!q->running || !virtq_view(&q->vq, &v)) {
			log_notice("%s: queue %u: started, not running (%s)", dev->name, i,
				 q->enabled ? "enabled" : "disabled");
			continue;
		}
		for (unsigned int h = 0; h < q->num; h++)
			inflight += __atomic_load_n(&q->track[h].inflight, __ATOMIC_RELAXED);
		virtq_view_format(&v, line, sizeof(line));
		log_notice("%s: queue %u: %s; %u in flight in the back-end%s", dev->name, i, line,
			 inflight, dev->broken ? "; BROKEN" : "");
	}
	if (!logged)
		log_notice("%s: no queue started", dev->name);
}

/* ---- Device state ---- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void put(struct wbuf *w, const void *src, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n > w->cap) {
		size_t cap = MAX(w->cap * 2, w->len + n + 256);
		uint8_t *p = realloc(w->p, cap);

		if (!p) {
			w->oom = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void put8(struct wbuf *w, uint8_t v)
{
	put(w, &v, 1);
}

static void put16(struct wbuf *w, uint16_t v)
{
	v = htole16(v);
	put(w, &v, 2);
}

static void put32(struct wbuf *w, uint32_t v)
{
	v = htole32(v);
	put(w, &v, 4);
}

static void put64(struct wbuf *w, uint64_t v)
{
	v = htole64(v);
	put(w, &v, 8);
}

/* FNV-1a, 32 bits: catches a truncated or damaged stream. */
static uint32_t checksum(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

int vu_state_save(struct vu_dev *dev, uint8_t **out, size_t *out_len)
{
	struct wbuf w = { 0 };
	int dlen = 0;

	put(&w, STATE_MAGIC, 8);
	put32(&w, STATE_VERSION);
	put32(&w, dev->nqueues);
	put64(&w, dev->features);
	for (unsigned int i = 0; i < dev->nqueues; i++) {
		struct vu_queue *q = &dev->queues[i];
		struct virtq_state s = q->pos;
		uint16_t num = q->num;
		uint32_t n = 0;
		uint16_t *heads = NULL;

		if (q->running) {
			free(w.p);
			return -EBUSY;
		}
		if (q->track) {
			heads = calloc(q->num ? q->num : 1, sizeof(*heads));
			if (!heads) {
				free(w.p);
				return -ENOMEM;
			}
			for (unsigned int h = 0; h < q->num; h++)
				if (q->track[h].inflight)
					heads[n++] = (uint16_t)h;
			sort_track = q->track;
			qsort(heads, n, sizeof(*heads), cmp_counter);
			sort_track = NULL;
		} else if (q->loaded.valid) {
			/* Loaded and not started since: pass it on unchanged. */
			heads = calloc(q->loaded.ninflight + 1, sizeof(*heads));
			if (!heads) {
				free(w.p);
				return -ENOMEM;
			}
			n = q->loaded.ninflight;
			memcpy(heads, q->loaded.heads, n * sizeof(*heads));
			s.signalled_used = q->loaded.signalled_used;
			s.signalled_used_valid = q->loaded.signalled_used_valid;
			/* Byte for byte: a destination that becomes a source before it runs. */
			num = q->loaded.num;
			s.last_avail_idx = q->loaded.last_avail_idx;
			s.used_idx = q->loaded.used_idx;
		}
		put16(&w, num);
		put16(&w, s.last_avail_idx);
		put16(&w, s.used_idx);
		put16(&w, s.signalled_used);
		put8(&w, (uint8_t)((s.signalled_used_valid ? 1 : 0) | (q->enabled ? 2 : 0)));
		put32(&w, n);
		for (uint32_t k = 0; k < n; k++)
			put16(&w, heads[k]);
		free(heads);
	}
	if (dev->iface->state_save) {
		dlen = dev->iface->state_save(dev, NULL, 0);
		if (dlen < 0) {
			free(w.p);
			return dlen;
		}
	}
	put32(&w, (uint32_t)dlen);
	if (dlen > 0) {
		uint8_t *d = malloc((size_t)dlen);
		int got;

		if (!d) {
			free(w.p);
			return -ENOMEM;
		}
		got = dev->iface->state_save(dev, d, (size_t)dlen);
		if (got != dlen) {
			free(d);
			free(w.p);
			return got < 0 ? got : -EIO;
		}
		put(&w, d, (size_t)dlen);
		free(d);
	}
	put32(&w, w.oom ? 0 : checksum(w.p, w.len));
	if (w.oom) {
		free(w.p);
		return -ENOMEM;
	}
	*out = w.p;
	*out_len = w.len;
	return 0;
}

struct rbuf {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
};

static const void *get(struct rbuf *r, size_t n)
{
	const void *p;

	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		return NULL;
	}
	p = r->p + r->pos;
	r->pos += n;
	return p;
}

static uint8_t get8(struct rbuf *r)
{
	const uint8_t *p = get(r, 1);

	return p ? *p : 0;
}

static uint16_t get16(struct rbuf *r)
{
	uint16_t v = 0;
	const void *p = get(r, 2);

	if (p)
		memcpy(&v, p, 2);
	return le16toh(v);
}

static uint32_t get32(struct rbuf *r)
{
	uint32_t v = 0;
	const void *p = get(r, 4);

	if (p)
		memcpy(&v, p, 4);
	return le32toh(v);
}

static uint64_t get64(struct rbuf *r)
{
	uint64_t v = 0;
	const void *p = get(r, 8);

	if (p)
		memcpy(&v, p, 8);
	return le64toh(v);
}

int vu_state_load(struct vu_dev *dev, const uint8_t *buf, size_t len)
{
	struct vu_loaded_queue loaded[VU_MAX_QUEUES];
	struct rbuf r = { .p = buf, .len = len };
	uint32_t nq, dlen, sum;
	const void *magic, *dpart;
	int ret = -EINVAL;

	memset(loaded, 0, sizeof(loaded));
	if (len < 12 || checksum(buf, len - 4) != (memcpy(&sum, buf + len - 4, 4), le32toh(sum)))
		return -EINVAL;
	r.len = len - 4;
	magic = get(&r, 8);
	if (!magic || memcmp(magic, STATE_MAGIC, 8) || get32(&r) != STATE_VERSION)
		return -EINVAL;
	nq = get32(&r);
	if (r.bad || nq != dev->nqueues)
		return -EINVAL;
	/* Features are the front-end's to set again; the saved ones must be ones we offer. */
	if (get64(&r) & ~dev->offered_features)
		return -EINVAL;
	for (unsigned int i = 0; i < nq; i++) {
		struct vu_loaded_queue *l = &loaded[i];
		uint16_t num = get16(&r);
		uint32_t n;
		uint8_t flags;

		/* Kept only to be saved again: the front-end sends them again (SET_VRING_NUM,
		 * SET_VRING_BASE) and used_idx is read from the ring when the queue starts. */
		l->num = num;
		l->last_avail_idx = get16(&r);
		l->used_idx = get16(&r);
		l->signalled_used = get16(&r);
		flags = get8(&r);
		n = get32(&r);
		if (r.bad || n > num || n > VIRTQ_MAX_SIZE || (flags & ~3u))
			goto out;
		l->signalled_used_valid = flags & 1;
		l->ninflight = n;
		l->heads = calloc(n + 1, sizeof(*l->heads));
		if (!l->heads) {
			ret = -ENOMEM;
			goto out;
		}
		for (uint32_t k = 0; k < n; k++) {
			l->heads[k] = get16(&r);
			if (l->heads[k] >= num)
				goto out;
			for (uint32_t j = 0; j < k; j++)
				if (l->heads[j] == l->heads[k])
					goto out;
		}
		l->valid = true;
	}
	dlen = get32(&r);
	dpart = get(&r, dlen);
	if (r.bad || r.pos != r.len)
		goto out;
	if (dlen && !dev->iface->state_load)
		goto out;
	if (dev->iface->state_load) {
		ret = dev->iface->state_load(dev, dpart, dlen);
		if (ret)
			goto out;
	}
	for (unsigned int i = 0; i < nq; i++) {
		loaded_free(&dev->queues[i].loaded);
		dev->queues[i].loaded = loaded[i];
		loaded[i].heads = NULL;
		/* What this process tracked before is superseded by the loaded set. */
		track_free(&dev->queues[i]);
	}
	ret = 0;
out:
	for (unsigned int i = 0; i < VU_MAX_QUEUES; i++)
		free(loaded[i].heads);
	return ret;
}

static void xfer_end(struct vu_dev *dev, int result)
{
	struct vu_transfer *x = &dev->xfer;

	if (x->fd >= 0) {
		dev->ops->remove_watch(dev, x->fd);
		close_fd(&x->fd);
	}
	if (x->active && x->load && result == 0)
		result = vu_state_load(dev, x->buf, x->len);
	if (x->active)
		x->result = result;
	x->active = false;
	free(x->buf);
	x->buf = NULL;
	x->len = x->cap = x->pos = 0;
}

/*
 * Moves what the pipe takes or gives now, without blocking. Returns 1 while
 * more is to come, 0 when the transfer is complete, -errno on failure (the
 * transfer is then over, with that result).
 */
static int xfer_step(struct vu_dev *dev)
{
	struct vu_transfer *x = &dev->xfer;

	for (;;) {
		ssize_t n;

		if (!x->load) {
			if (x->pos == x->len) {
				xfer_end(dev, 0);
				return 0;
			}
			/* Any chunk size is allowed; pipe-sized ones keep each write atomic. */
			n = write(x->fd, x->buf + x->pos, MIN(x->len - x->pos, (size_t)4096));
			if (n > 0) {
				x->pos += (size_t)n;
				continue;
			}
		} else {
			if (x->len == x->cap) {
				size_t cap = x->cap ? x->cap * 2 : 4096;
				uint8_t *p;

				if (cap > VU_STATE_MAX + 4096) {
					xfer_end(dev, -EFBIG);
					return -EFBIG;
				}
				p = realloc(x->buf, cap);
				if (!p) {
					xfer_end(dev, -ENOMEM);
					return -ENOMEM;
				}
				x->buf = p;
				x->cap = cap;
			}
			n = read(x->fd, x->buf + x->len, x->cap - x->len);
			if (n > 0) {
				x->len += (size_t)n;
				continue;
			}
			if (n == 0) {
				int ret;

				xfer_end(dev, 0);
				ret = x->result;
				return ret;
			}
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return 1;
		n = -errno;
		xfer_end(dev, (int)n);
		return (int)n;
	}
}

static void xfer_cb(struct vu_dev *dev, int fd, uint32_t events, void *data)
{
	if (dev->xfer.active && dev->xfer.fd == fd)
		xfer_step(dev);
}

/* Finishes a transfer still under way (CHECK_DEVICE_STATE), waiting at most VU_MSG_TIMEOUT_MS. */
static void xfer_finish(struct vu_dev *dev)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (dev->xfer.active) {
		struct pollfd p = { .fd = dev->xfer.fd, .events = dev->xfer.load ? POLLIN : POLLOUT };
		int64_t ms;

		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= VU_MSG_TIMEOUT_MS) {
			xfer_end(dev, -ETIMEDOUT);
			break;
		}
		if (poll(&p, 1, (int)(VU_MSG_TIMEOUT_MS - ms)) < 0 && errno != EINTR) {
			xfer_end(dev, -errno);
			break;
		}
		xfer_step(dev);
	}
}

/* ---- Requests ---- */

static int reply(struct vu_dev *dev, struct vhost_user_msg *msg, uint32_t size, const int *fds,
		 unsigned int nfds)
{
	struct vhost_user_hdr hdr = {
		.request = msg->hdr.request,
		.flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
		.size = size,
	};
	int ret = vhost_user_send(dev->sock, &hdr, size ? &msg->p : NULL, fds, nfds,
				  VU_MSG_TIMEOUT_MS);

	if (ret)
		vu_panic(dev, "sending the reply to %s: %s", vhost_user_request_name(hdr.request),
			 strerror(-ret));
	return ret;
}

static int reply_u64(struct vu_dev *dev, struct vhost_user_msg *msg, uint64_t v)
{
	msg->p.u64 = v;
	return reply(dev, msg, sizeof(uint64_t), NULL, 0);
}

/* The queue a message names, or NULL after vu_panic. */
static struct vu_queue *msg_queue(struct vu_dev *dev, uint32_t index)
{
	if (index >= dev->nqueues) {
		vu_panic(dev, "queue index %" PRIu32 " out of range (%u queues)", index,
			 dev->nqueues);
		return NULL;
	}
	return &dev->queues[index];
}

static int h_set_features(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	uint64_t f = msg->p.u64;
	bool was[VU_MAX_QUEUES];

	if (f & ~dev->offered_features) {
		vu_report("%s: the front-end acked features 0x%" PRIx64 " that were not offered",
			  dev->name, f & ~dev->offered_features);
		return VU_FAILED;
	}
	halt_all(dev, was);
	dev->features = f;
	if (!(f & bit(VHOST_USER_F_PROTOCOL_FEATURES)))
		for (unsigned int i = 0; i < dev->nqueues; i++)
			dev->queues[i].enabled = true;
	resume_all(dev, was);
	return VU_DONE;
}

static int h_set_mem_table(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	const struct vhost_user_mem_table *t = &msg->p.mem;
	bool was[VU_MAX_QUEUES];
	int ret = 0;

	for (unsigned int i = 0; i < t->nregions; i++) {
		if (vhost_user_check_region(&t->regions[i])) {
			vu_panic(dev, "memory region %u wraps around or is empty", i);
			return -EINVAL;
		}
	}
	halt_all(dev, was);
	regions_clear(dev);
	for (unsigned int i = 0; i < t->nregions && !ret; i++) {
		ret = region_add(dev, &t->regions[i], msg->fds[i]);
		if (ret)
			vu_report("%s: memory region %u (guest 0x%" PRIx64 "+0x%" PRIx64
				  ", fd offset 0x%" PRIx64 "): %s — the front-end must share its "
				  "guest memory as a memfd that covers the region", dev->name, i,
				  t->regions[i].guest_addr, t->regions[i].size,
				  t->regions[i].mmap_offset, strerror(-ret));
	}
	if (ret)
		regions_clear(dev);
	mem_rebuild(dev);
	resume_all(dev, was);
	return ret ? VU_FAILED : VU_DONE;
}

static int h_add_mem_reg(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	bool was[VU_MAX_QUEUES];
	int ret;

	halt_all(dev, was);
	ret = region_add(dev, &msg->p.mem_reg.region, msg->fds[0]);
	if (ret)
		vu_report("%s: ADD_MEM_REG guest 0x%" PRIx64 "+0x%" PRIx64 ": %s", dev->name,
			  msg->p.mem_reg.region.guest_addr, msg->p.mem_reg.region.size,
			  strerror(-ret));
	mem_rebuild(dev);
	resume_all(dev, was);
	return ret ? VU_FAILED : VU_DONE;
}

static int h_rem_mem_reg(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	const struct vhost_user_mem_region *d = &msg->p.mem_reg.region;
	bool was[VU_MAX_QUEUES];

	for (unsigned int i = 0; i < dev->nregions; i++) {
		struct vu_region *r = &dev->regions[i];

		if (r->gpa != d->guest_addr || r->size != d->size || r->qva != d->user_addr)
			continue;
		halt_all(dev, was);
		region_unmap(r);
		dev->regions[i] = dev->regions[--dev->nregions];
		memset(&dev->regions[dev->nregions], 0, sizeof(dev->regions[0]));
		mem_rebuild(dev);
		resume_all(dev, was);
		return VU_DONE;
	}
	vu_report("%s: REM_MEM_REG of a region it does not have (guest 0x%" PRIx64 "+0x%" PRIx64 ")",
		  dev->name, d->guest_addr, d->size);
	return VU_FAILED;
}

static int h_set_log_base(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	bool was[VU_MAX_QUEUES];
	void *map;
	size_t map_len;
	uint8_t *log;
	int ret;

	if (!has_protocol(dev, VHOST_USER_PROTOCOL_F_LOG_SHMFD)) {
		vu_panic(dev, "SET_LOG_BASE without LOG_SHMFD");
		return -EINVAL;
	}
	ret = map_fd(msg->fds[0], msg->p.log.mmap_offset, msg->p.log.mmap_size, &map, &map_len,
		     &log);
	if (ret) {
		vu_report("%s: SET_LOG_BASE: the log (0x%" PRIx64 " bytes at 0x%" PRIx64 "): %s",
			  dev->name, msg->p.log.mmap_size, msg->p.log.mmap_offset, strerror(-ret));
		reply_u64(dev, msg, 1);
		return dev->broken ? -EIO : VU_FAILED;
	}
	halt_all(dev, was);
	log_unmap(dev);
	dev->log_map = map;
	dev->log_map_len = map_len;
	dev->log = log;
	dev->log_size = msg->p.log.mmap_size;
	resume_all(dev, was);
	/* LOG_SHMFD's SET_LOG_BASE always has a reply. */
	return reply_u64(dev, msg, 0) ? -EIO : VU_DONE;
}

static int h_vring_num(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	struct vu_queue *q = msg_queue(dev, msg->p.state.index);
	uint32_t n = msg->p.state.num;

	if (!q)
		return -EINVAL;
	if (q->started)
		return VU_FAILED;
	if (n == 0 || n > dev->max_queue_size || (n & (n - 1))) {
		vu_report("%s: queue %u: size %" PRIu32 " is not a power of two in 1..%u",
			  dev->name, q->index, n, dev->max_queue_size);
		return VU_FAILED;
	}
	if (q->num != n) {
		q->num = (uint16_t)n;
		track_free(q);
	}
	return VU_DONE;
}

static int h_vring_addr(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	const struct vhost_user_vring_addr *a = &msg->p.addr;
	struct vu_queue *q = msg_queue(dev, a->index);
	bool was = false;
	uint64_t gpa;

	if (!q)
		return -EINVAL;
	if (a->flags & ~(uint32_t)bit(VHOST_USER_VRING_F_LOG)) {
		vu_panic(dev, "queue %u: unknown ring flags 0x%" PRIx32, q->index, a->flags);
		return -EINVAL;
	}
	/* Size unknown yet: check the first bytes now, the whole rings when the queue starts. */
	if (!qva_to_gpa(dev, a->desc, 16, &gpa) || !qva_to_gpa(dev, a->avail, 6, &gpa) ||
	    !qva_to_gpa(dev, a->used, 6, &gpa)) {
		vu_panic(dev, "queue %u: ring addresses (desc 0x%" PRIx64 ", avail 0x%" PRIx64
			 ", used 0x%" PRIx64 ") are outside the memory table", q->index, a->desc,
			 a->avail, a->used);
		return -EFAULT;
	}
	if (q->running) {
		was = true;
		queue_halt(dev, q);
	}
	q->desc_qva = a->desc;
	q->avail_qva = a->avail;
	q->used_qva = a->used;
	q->log_gpa = a->log;
	q->addr_flags = a->flags;
	q->addr_set = true;
	if (was && !queue_run(dev, q)) {
		vu_panic(dev, "queue %u: its new rings are outside the memory table", q->index);
		return -EFAULT;
	}
	return VU_DONE;
}

static int h_vring_base(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	struct vu_queue *q = msg_queue(dev, msg->p.state.index);

	if (!q)
		return -EINVAL;
	if (q->started || msg->p.state.num > 0xffff)
		return VU_FAILED;
	q->pos.last_avail_idx = (uint16_t)msg->p.state.num;
	q->pos.signalled_used_valid = false;
	return VU_DONE;
}

static int h_get_vring_base(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	struct vu_queue *q = msg_queue(dev, msg->p.state.index);

	if (!q)
		return -EINVAL;
	queue_halt(dev, q);
	q->started = false;
	close_fd(&q->kick_fd);
	close_fd(&q->call_fd);
	msg->p.state.num = q->pos.last_avail_idx;
	return reply(dev, msg, sizeof(msg->p.state), NULL, 0) ? -EIO : VU_DONE;
}

static int h_vring_fd(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	uint64_t v = msg->p.u64;
	struct vu_queue *q;
	bool nofd = v & VHOST_USER_VRING_NOFD;
	int fd = nofd ? -1 : take_fd(msg, 0);
	bool was;

	if (v & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD)) {
		close_fd(&fd);
		vu_panic(dev, "%s: unknown bits in 0x%" PRIx64,
			 vhost_user_request_name(msg->hdr.request), v);
		return -EINVAL;
	}
	q = msg_queue(dev, v & VHOST_USER_VRING_IDX_MASK);
	if (!q) {
		close_fd(&fd);
		return -EINVAL;
	}
	switch (msg->hdr.request) {
	case VHOST_USER_SET_VRING_KICK:
		queue_halt(dev, q);
		q->started = false;
		close_fd(&q->kick_fd);
		q->kick_fd = fd;
		if (fd < 0) {
			vu_report("%s: queue %u: a kick without an fd (polling) is not supported",
				  dev->name, q->index);
			return VU_FAILED;
		}
		return queue_start(dev, q);
	case VHOST_USER_SET_VRING_CALL:
		/*
		 * A running ring takes the new fd as it runs (QEMU sends the call fd after the
		 * kick fd that started it: a halt would stop and restart the device's I/O). Its
		 * completions read call_fd atomically; the old fd stays open until the next halt.
		 */
		if (q->running && q->old_call_fd < 0) {
			q->old_call_fd = __atomic_exchange_n(&q->call_fd, fd, __ATOMIC_ACQ_REL);
			return VU_DONE;
		}
		was = q->running;
		queue_halt(dev, q);
		close_fd(&q->call_fd);
		q->call_fd = fd;
		if (was && !queue_run(dev, q))
			return -EFAULT;
		return VU_DONE;
	default:
		close_fd(&q->err_fd);
		q->err_fd = fd;
		return VU_DONE;
	}
}

static int h_vring_enable(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	struct vu_queue *q = msg_queue(dev, msg->p.state.index);

	if (!q)
		return -EINVAL;
	if (!has_feature(dev, VHOST_USER_F_PROTOCOL_FEATURES) || msg->p.state.num > 1) {
		vu_report("%s: SET_VRING_ENABLE(%" PRIu32 ") %s", dev->name, msg->p.state.num,
			  msg->p.state.num > 1 ? "is not 0 or 1" :
			  "without VHOST_USER_F_PROTOCOL_FEATURES acked");
		return VU_FAILED;
	}
	__atomic_store_n(&q->enabled, msg->p.state.num == 1, __ATOMIC_RELAXED);
	return VU_DONE;
}

static int h_get_config(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	struct vhost_user_config *c = &msg->p.config;
	uint32_t size = c->size;

	if (!dev->iface->get_config || c->size == 0 ||
	    dev->iface->get_config(dev, c->payload, c->offset, c->size))
		size = 0;	/* a zero-length reply is the error */
	return reply(dev, msg, size ? VHOST_USER_CONFIG_HDR_SIZE + size : 0, NULL, 0) ? -EIO
										     : VU_DONE;
}

static int h_set_config(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	const struct vhost_user_config *c = &msg->p.config;

	if (!dev->iface->set_config ||
	    dev->iface->set_config(dev, c->payload, c->offset, c->size, c->flags))
		return VU_FAILED;
	return VU_DONE;
}

static int h_get_inflight(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	struct vhost_user_inflight *in = &msg->p.inflight;
	uint16_t nq = in->num_queues, qs = in->queue_size;
	bool was[VU_MAX_QUEUES];
	uint64_t size, stride;
	void *map;
	size_t map_len;
	uint8_t *p;
	int fd, ret;

	if (nq == 0 || nq > dev->nqueues || qs == 0 || qs > VIRTQ_MAX_SIZE || (qs & (qs - 1))) {
		vu_report("%s: GET_INFLIGHT_FD for %u queues of %u", dev->name, nq, qs);
		in->mmap_size = 0;
		return reply(dev, msg, sizeof(*in), NULL, 0) ? -EIO : VU_DONE;
	}
	/*
	 * Room for the largest ring we accept, whatever queue size the front-end
	 * names: a virtio-mmio driver may pick a larger ring than the front-end's
	 * own queue size (QEMU's mmio offers QueueNumMax 1024 to a 128-entry
	 * vhost-user-blk). The stride is mmap_size / num_queues when it comes back.
	 */
	stride = vu_inflight_queue_size(MAX(qs, dev->max_queue_size));
	size = nq * stride;
	fd = memfd_create("vmm-vu-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
	    (ret = map_fd(fd, 0, size, &map, &map_len, &p)) != 0) {
		vu_report("%s: creating the in-flight area (%" PRIu64 " bytes): %s", dev->name, size,
			  strerror(errno));
		close_fd(&fd);
		in->mmap_size = 0;
		return reply(dev, msg, sizeof(*in), NULL, 0) ? -EIO : VU_DONE;
	}
	/* The front-end keeps it across our restarts; it must not be able to shrink it. */
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	/* Zeroed: version 0, initialised by each queue's first start. */
	halt_all(dev, was);
	if (dev->inflight_map)
		munmap(dev->inflight_map, dev->inflight_map_len);
	dev->inflight_map = map;
	dev->inflight_map_len = map_len;
	dev->inflight = p;
	dev->inflight_nq = nq;
	dev->inflight_stride = stride;
	for (unsigned int i = 0; i < dev->nqueues; i++) {
		struct vu_queue *q = &dev->queues[i];

		inflight_attach(dev, q);
		/* A fresh area mirrors what is in flight now. */
		if (q->shm && q->track) {
			q->shm->version = 1;
			q->shm->desc_num = q->num;
			q->shm->used_idx = q->pos.used_idx;
			for (unsigned int h = 0; h < q->num; h++) {
				q->shm->desc[h].inflight = q->track[h].inflight;
				q->shm->desc[h].counter = q->track[h].counter;
			}
		}
	}
	resume_all(dev, was);
	in->mmap_size = size;
	in->mmap_offset = 0;
	ret = reply(dev, msg, sizeof(*in), &fd, 1);
	close(fd);
	return ret ? -EIO : VU_DONE;
}

static int h_set_inflight(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	const struct vhost_user_inflight *in = &msg->p.inflight;
	uint16_t nq = in->num_queues, qs = in->queue_size;
	bool was[VU_MAX_QUEUES];
	void *map;
	size_t map_len;
	uint8_t *p;
	int ret;

	if (nq == 0 || nq > dev->nqueues || qs == 0 || qs > VIRTQ_MAX_SIZE ||
	    in->mmap_size < nq * vu_inflight_queue_size(qs) ||
	    (in->mmap_size / nq) % 64) {
		vu_report("%s: SET_INFLIGHT_FD: %u queues of %u in 0x%" PRIx64 " bytes do not fit",
			  dev->name, nq, qs, in->mmap_size);
		return VU_FAILED;
	}
	ret = map_fd(msg->fds[0], in->mmap_offset, in->mmap_size, &map, &map_len, &p);
	if (ret) {
		vu_report("%s: SET_INFLIGHT_FD: mapping the area: %s", dev->name, strerror(-ret));
		return VU_FAILED;
	}
	halt_all(dev, was);
	if (dev->inflight_map)
		munmap(dev->inflight_map, dev->inflight_map_len);
	dev->inflight_map = map;
	dev->inflight_map_len = map_len;
	dev->inflight = p;
	dev->inflight_nq = nq;
	dev->inflight_stride = in->mmap_size / nq;
	for (unsigned int i = 0; i < dev->nqueues; i++)
		inflight_attach(dev, &dev->queues[i]);
	resume_all(dev, was);
	return VU_DONE;
}

static int h_set_device_state_fd(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	const struct vhost_user_device_state *st = &msg->p.device_state;
	int fd = take_fd(msg, 0), ret;

	if (dev->xfer.active)
		xfer_end(dev, -ECANCELED);
	dev->xfer.result = 0;
	ret = 0;
	if (st->direction > VHOST_USER_TRANSFER_LOAD || st->phase != VHOST_USER_PHASE_STOPPED) {
		ret = -EINVAL;
	} else {
		for (unsigned int i = 0; i < dev->nqueues; i++)
			if (dev->queues[i].started)
				ret = -EBUSY;
	}
	if (ret) {
		vu_report("%s: SET_DEVICE_STATE_FD(direction %" PRIu32 ", phase %" PRIu32 ") %s",
			  dev->name, st->direction, st->phase,
			  ret == -EBUSY ? "while a ring runs: stop them (GET_VRING_BASE) first" :
			  "is not supported");
		close(fd);
		dev->xfer.result = ret;
		return reply_u64(dev, msg, 1 | VHOST_USER_VRING_NOFD) ? -EIO : VU_DONE;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	dev->xfer = (struct vu_transfer){
		.fd = fd,
		.active = true,
		.load = st->direction == VHOST_USER_TRANSFER_LOAD,
	};
	if (!dev->xfer.load) {
		ret = vu_state_save(dev, &dev->xfer.buf, &dev->xfer.len);
		if (ret) {
			xfer_end(dev, ret);
			return reply_u64(dev, msg, 1 | VHOST_USER_VRING_NOFD) ? -EIO : VU_DONE;
		}
	}
	ret = dev->ops->set_watch(dev, fd, dev->xfer.load ? POLLIN : POLLOUT, xfer_cb, NULL);
	if (ret) {
		xfer_end(dev, ret);
		return reply_u64(dev, msg, 1 | VHOST_USER_VRING_NOFD) ? -EIO : VU_DONE;
	}
	/* Success, and no fd of ours: the front-end uses its own pipe. */
	return reply_u64(dev, msg, VHOST_USER_VRING_NOFD) ? -EIO : VU_DONE;
}

static int h_check_device_state(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	int result;

	xfer_finish(dev);
	result = dev->xfer.result;
	dev->xfer.result = 0;
	if (result)
		vu_report("%s: device state transfer failed: %s", dev->name, strerror(-result));
	return reply_u64(dev, msg, result ? 1 : 0) ? -EIO : VU_DONE;
}

static int h_reset(struct vu_dev *dev)
{
	for (unsigned int i = 0; i < dev->nqueues; i++)
		queue_reset(dev, &dev->queues[i]);
	dev->features = 0;
	return VU_DONE;
}

/* How many fds req must carry: exactly *n, or (REM_MEM_REG) 0 or 1 when *n is -1. */
static int expected_fds(const struct vhost_user_msg *msg)
{
	switch (msg->hdr.request) {
	case VHOST_USER_SET_MEM_TABLE:
		return (int)msg->p.mem.nregions;
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_SET_LOG_BASE:
	case VHOST_USER_SET_LOG_FD:
	case VHOST_USER_SET_BACKEND_REQ_FD:
	case VHOST_USER_SET_INFLIGHT_FD:
	case VHOST_USER_SET_DEVICE_STATE_FD:
		return 1;
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		return (msg->p.u64 & VHOST_USER_VRING_NOFD) ? 0 : 1;
	case VHOST_USER_REM_MEM_REG:
		return -1;
	default:
		return 0;
	}
}

/* Whether the request is allowed given what was negotiated (protocol feature gates). */
static bool request_allowed(const struct vu_dev *dev, uint32_t req)
{
	switch (req) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_SET_FEATURES:
	case VHOST_USER_SET_OWNER:
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_SET_MEM_TABLE:
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_ADDR:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
	case VHOST_USER_SET_LOG_FD:
	case VHOST_USER_SET_VRING_ENABLE:
		return true;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		return dev->offered_features & bit(VHOST_USER_F_PROTOCOL_FEATURES);
	case VHOST_USER_GET_QUEUE_NUM:
		return has_protocol(dev, VHOST_USER_PROTOCOL_F_MQ);
	case VHOST_USER_SET_LOG_BASE:
		return has_protocol(dev, VHOST_USER_PROTOCOL_F_LOG_SHMFD);
	case VHOST_USER_SET_BACKEND_REQ_FD:
		return has_protocol(dev, VHOST_USER_PROTOCOL_F_BACKEND_REQ);
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_SET_CONFIG:
		return has_protocol(dev, VHOST_USER_PROTOCOL_F_CONFIG);
	case VHOST_USER_GET_INFLIGHT_FD:
	case VHOST_USER_SET_INFLIGHT_FD:
		return has_protocol(dev, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD);
	case VHOST_USER_RESET_DEVICE:
		return has_protocol(dev, VHOST_USER_PROTOCOL_F_RESET_DEVICE);
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_REM_MEM_REG:
		return has_protocol(dev, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS);
	case VHOST_USER_SET_DEVICE_STATE_FD:
	case VHOST_USER_CHECK_DEVICE_STATE:
		return has_protocol(dev, VHOST_USER_PROTOCOL_F_DEVICE_STATE);
	default:
		return false;
	}
}

/* Whether the request has a reply of its own (REPLY_ACK then adds none). */
static bool has_own_reply(uint32_t req)
{
	switch (req) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_SET_LOG_BASE:
	case VHOST_USER_GET_INFLIGHT_FD:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_SET_DEVICE_STATE_FD:
	case VHOST_USER_CHECK_DEVICE_STATE:
		return true;
	default:
		return false;
	}
}

/* Checks size and fds, then runs the handler. VU_DONE, VU_FAILED or < 0 (broken). */
static int handle(struct vu_dev *dev, struct vhost_user_msg *msg)
{
	uint32_t req = msg->hdr.request;
	int size = vhost_user_payload_size(req), fds;
	bool ok;

	if (!request_allowed(dev, req)) {
		vu_panic(dev, "request %" PRIu32 " (%s) is not supported or not negotiated", req,
			 vhost_user_request_name(req));
		return -ENOTSUP;
	}
	if (req == VHOST_USER_SET_MEM_TABLE)
		ok = !vhost_user_check_mem_table(msg);
	else if (req == VHOST_USER_GET_CONFIG || req == VHOST_USER_SET_CONFIG)
		ok = !vhost_user_check_config(msg);
	else
		ok = size >= 0 && msg->hdr.size == (uint32_t)size;
	if (!ok) {
		vu_panic(dev, "%s with a payload of %" PRIu32 " bytes", vhost_user_request_name(req),
			 msg->hdr.size);
		return -EINVAL;
	}
	fds = expected_fds(msg);
	if (fds >= 0 ? msg->nfds != (unsigned int)fds : msg->nfds > 1) {
		vu_panic(dev, "%s with %u file descriptors", vhost_user_request_name(req),
			 msg->nfds);
		return -EINVAL;
	}

	switch (req) {
	case VHOST_USER_GET_FEATURES:
		return reply_u64(dev, msg, dev->offered_features) ? -EIO : VU_DONE;
	case VHOST_USER_SET_FEATURES:
		return h_set_features(dev, msg);
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		return reply_u64(dev, msg, dev->offered_protocol) ? -EIO : VU_DONE;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		if (msg->p.u64 & ~dev->offered_protocol) {
			vu_report("%s: the front-end acked protocol features 0x%" PRIx64
				  " that were not offered", dev->name,
				  msg->p.u64 & ~dev->offered_protocol);
			return VU_FAILED;
		}
		dev->protocol_features = msg->p.u64;
		return VU_DONE;
	case VHOST_USER_SET_OWNER:
		return VU_DONE;
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_RESET_DEVICE:
		return h_reset(dev);
	case VHOST_USER_GET_QUEUE_NUM:
		return reply_u64(dev, msg, dev->nqueues) ? -EIO : VU_DONE;
	case VHOST_USER_GET_MAX_MEM_SLOTS:
		return reply_u64(dev, msg, VU_MAX_MEM_SLOTS) ? -EIO : VU_DONE;
	case VHOST_USER_SET_MEM_TABLE:
		return h_set_mem_table(dev, msg);
	case VHOST_USER_ADD_MEM_REG:
		return h_add_mem_reg(dev, msg);
	case VHOST_USER_REM_MEM_REG:
		return h_rem_mem_reg(dev, msg);
	case VHOST_USER_SET_LOG_BASE:
		return h_set_log_base(dev, msg);
	case VHOST_USER_SET_LOG_FD:
		close_fd(&dev->log_fd);
		dev->log_fd = take_fd(msg, 0);
		return VU_DONE;
	case VHOST_USER_SET_VRING_NUM:
		return h_vring_num(dev, msg);
	case VHOST_USER_SET_VRING_ADDR:
		return h_vring_addr(dev, msg);
	case VHOST_USER_SET_VRING_BASE:
		return h_vring_base(dev, msg);
	case VHOST_USER_GET_VRING_BASE:
		return h_get_vring_base(dev, msg);
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		return h_vring_fd(dev, msg);
	case VHOST_USER_SET_VRING_ENABLE:
		return h_vring_enable(dev, msg);
	case VHOST_USER_SET_BACKEND_REQ_FD:
		close_fd(&dev->backend_fd);
		dev->backend_fd = take_fd(msg, 0);
		return VU_DONE;
	case VHOST_USER_GET_CONFIG:
		return h_get_config(dev, msg);
	case VHOST_USER_SET_CONFIG:
		return h_set_config(dev, msg);
	case VHOST_USER_GET_INFLIGHT_FD:
		return h_get_inflight(dev, msg);
	case VHOST_USER_SET_INFLIGHT_FD:
		return h_set_inflight(dev, msg);
	case VHOST_USER_SET_DEVICE_STATE_FD:
		return h_set_device_state_fd(dev, msg);
	case VHOST_USER_CHECK_DEVICE_STATE:
		return h_check_device_state(dev, msg);
	default:
		vu_panic(dev, "request %" PRIu32 " is not handled", req);
		return -ENOTSUP;
	}
}

int vu_dispatch(struct vu_dev *dev)
{
	struct vhost_user_msg msg;
	int ret;

	if (dev->broken)
		return -EIO;
	ret = vhost_user_recv(dev->sock, &msg, VU_MSG_TIMEOUT_MS);
	if (ret == -EAGAIN || ret == -ECONNRESET)
		return ret;
	if (ret) {
		vu_panic(dev, "reading a message: %s", strerror(-ret));
		return -EIO;
	}
	ret = handle(dev, &msg);
	vhost_user_msg_close_fds(&msg);
	if (ret < 0 || dev->broken) {
		if (!dev->broken)
			vu_panic(dev, "%s: %s", vhost_user_request_name(msg.hdr.request),
				 strerror(-ret));
		return -EIO;
	}
	if ((msg.hdr.flags & VHOST_USER_FLAG_NEED_REPLY) && !has_own_reply(msg.hdr.request)) {
		if (reply_u64(dev, &msg, ret == VU_DONE ? 0 : 1))
			return -EIO;
	}
	return 0;
}

int vu_config_changed(struct vu_dev *dev)
{
	struct vhost_user_hdr hdr = {
		.request = VHOST_USER_BACKEND_CONFIG_CHANGE_MSG,
		.flags = VHOST_USER_VERSION,
	};
	int ret;

	if (dev->backend_fd < 0 || !has_protocol(dev, VHOST_USER_PROTOCOL_F_CONFIG) ||
	    !has_protocol(dev, VHOST_USER_PROTOCOL_F_BACKEND_REQ))
		return -ENOTCONN;
	ret = vhost_user_send(dev->backend_fd, &hdr, NULL, NULL, 0, VU_MSG_TIMEOUT_MS);
	if (ret) {
		vu_report("%s: the back-end channel failed (%s); config changes are no longer "
			 "announced", dev->name, strerror(-ret));
		close_fd(&dev->backend_fd);
	}
	return ret;
}

/* ---- Set-up ---- */

int vu_init(struct vu_dev *dev, const struct vu_config *cfg)
{
	uint16_t qs = cfg->max_queue_size;
	int fl;

	memset(dev, 0, sizeof(*dev));
	dev->sock = -1;
	dev->log_fd = dev->backend_fd = -1;
	dev->xfer.fd = -1;
	for (unsigned int i = 0; i < VU_MAX_QUEUES; i++) {
		struct vu_queue *q = &dev->queues[i];

		q->index = i;
		q->kick_fd = q->call_fd = q->err_fd = q->old_call_fd = -1;
		q->counter = 1;
		virtq_reset(&q->vq, &dev->mem);
	}
	mem_rebuild(dev);
	if (cfg->nqueues == 0 || cfg->nqueues > VU_MAX_QUEUES || qs == 0 ||
	    qs > VIRTQ_MAX_SIZE || (qs & (qs - 1)) || !cfg->iface || !cfg->ops ||
	    !cfg->iface->queue_start || !cfg->iface->queue_stop || !cfg->ops->set_watch ||
	    !cfg->ops->remove_watch || cfg->sock < 0)
		return -EINVAL;
	snprintf(dev->name, sizeof(dev->name), "%s", cfg->name ? cfg->name : "vhost-user");
	dev->drop_interrupt = drop_interrupt_for(dev->name);
	dev->sock = cfg->sock;
	dev->nqueues = cfg->nqueues;
	dev->max_queue_size = qs;
	dev->iface = cfg->iface;
	dev->ops = cfg->ops;
	dev->offered_features = cfg->features | bit(VHOST_USER_F_PROTOCOL_FEATURES) |
				bit(VHOST_USER_F_LOG_ALL) | bit(VIRTIO_RING_F_EVENT_IDX) |
				bit(VIRTIO_RING_F_INDIRECT_DESC);
	dev->offered_protocol = cfg->protocol_features | bit(VHOST_USER_PROTOCOL_F_MQ) |
				bit(VHOST_USER_PROTOCOL_F_LOG_SHMFD) |
				bit(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
				bit(VHOST_USER_PROTOCOL_F_BACKEND_REQ) |
				bit(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) |
				bit(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
				bit(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
				bit(VHOST_USER_PROTOCOL_F_DEVICE_STATE);
	if (cfg->iface->get_config)
		dev->offered_protocol |= bit(VHOST_USER_PROTOCOL_F_CONFIG);
	fl = fcntl(dev->sock, F_GETFL);
	if (fl < 0 || fcntl(dev->sock, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

void vu_fini(struct vu_dev *dev)
{
	if (dev->xfer.active || dev->xfer.fd >= 0)
		xfer_end(dev, -ECANCELED);
	for (unsigned int i = 0; i < VU_MAX_QUEUES && dev->iface; i++)
		queue_reset(dev, &dev->queues[i]);
	regions_clear(dev);
	log_unmap(dev);
	close_fd(&dev->log_fd);
	close_fd(&dev->backend_fd);
	if (dev->inflight_map)
		munmap(dev->inflight_map, dev->inflight_map_len);
	dev->inflight_map = NULL;
	dev->inflight = NULL;
	dev->inflight_nq = 0;
}
