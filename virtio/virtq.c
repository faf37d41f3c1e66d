// SPDX-License-Identifier: GPL-2.0-only
/*
 * Split virtqueues, device side (see virtio/virtq.h for the contract).
 *
 * The driver runs on other CPUs and may rewrite its parts of the rings at any
 * moment, so:
 *  - avail->idx is read with acquire ordering: the ring entries and the
 *    descriptors it publishes are then visible; used->idx is written with
 *    release ordering, after the used element it publishes;
 *  - every value the driver owns is read once into a local and only the local
 *    is checked and used (no double fetch): 16-bit fields with relaxed atomic
 *    loads, descriptors with desc_load();
 *  - notification decisions put a full fence between our store (used->idx,
 *    or the kick suppression fields) and our load of the driver's field.
 * Nothing the driver writes is trusted: on the first violation the queue is
 * marked broken and every later operation fails until virtq_reset().
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/virtio_ring.h>

#include "virtio/virtq.h"
#include "vmm/base/log.h"

/* One budget for all queues: a guest that breaks queues in a loop cannot flood the log. */
static struct log_ratelimit virtq_ratelimit = LOG_RATELIMIT_INIT;

static int virtq_fail(struct virtq *vq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Marks the queue broken and says why; returns -EIO for the caller to pass on. */
static int virtq_fail(struct virtq *vq, const char *fmt, ...)
{
	char msg[192];
	va_list ap;

	vq->broken = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn_ratelimited(&virtq_ratelimit, "virtqueue: %s", msg);
	return -EIO;
}

static inline uint16_t load_le16(const uint16_t *p, int order)
{
	return le16toh(__atomic_load_n(p, order));
}

static inline void store_le16(uint16_t *p, uint16_t v, int order)
{
	__atomic_store_n(p, htole16(v), order);
}

/* Whether a migration logs the VMM's writes to mem (one atomic load). */
static inline bool virtq_logging(const struct guest_mem *mem)
{
	return mem && atomic_load_explicit(&((struct guest_mem *)mem)->dirty, memory_order_acquire);
}

/* The region whose host mapping holds address a, or NULL. */
static const struct guest_region *region_of_host(const struct guest_mem *mem, uintptr_t a)
{
	for (unsigned int i = 0; i < mem->nregions; i++) {
		const struct guest_region *r = &mem->regions[i];

		if (a >= (uintptr_t)r->hva && a - (uintptr_t)r->hva < r->size)
			return r;
	}
	return NULL;
}

void virtq_mark_dirty_host(const struct guest_mem *mem, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;

	if (!len || !virtq_logging(mem))
		return;
	/* A range past a region's end continues in the next one (consecutive mappings). */
	while (len) {
		const struct guest_region *r = region_of_host(mem, a);
		uint64_t off, n;

		if (!r)
			return;
		off = a - (uintptr_t)r->hva;
		n = len < r->size - off ? len : r->size - off;
		guest_mem_mark_dirty(mem, r->gpa + off, n);
		a += n;
		len -= n;
	}
}

void virtq_mark_dirty_iov(const struct guest_mem *mem, const struct iovec *iov, unsigned int n,
			  size_t len)
{
	if (!virtq_logging(mem))
		return;
	for (unsigned int i = 0; i < n && len; i++) {
		size_t k = iov[i].iov_len < len ? iov[i].iov_len : len;

		virtq_mark_dirty_host(mem, iov[i].iov_base, k);
		len -= k;
	}
}

void virtq_chain_mark_written(const struct virtq_chain *c, size_t offset, size_t len)
{
	if (!len || !virtq_logging(c->mem))
		return;
	for (unsigned int i = c->nout; i < c->nout + c->nin && len; i++) {
		size_t seg = c->iov[i].iov_len, k;

		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		k = seg - offset < len ? seg - offset : len;
		virtq_mark_dirty_host(c->mem, (uint8_t *)c->iov[i].iov_base + offset, k);
		len -= k;
		offset = 0;
	}
}

/* The device wrote [off, off + len) of the used ring. */
static void mark_used(const struct virtq *vq, uint64_t off, uint64_t len)
{
	guest_mem_mark_dirty(vq->mem, vq->used_gpa + off, len);
}

/* used_event lives after the avail ring, avail_event after the used ring. */
static inline uint16_t *used_event_ptr(const struct virtq *vq)
{
	return &vq->avail->ring[vq->size];
}

static inline uint16_t *avail_event_ptr(const struct virtq *vq)
{
	return (uint16_t *)&vq->used->ring[vq->size];
}

void virtq_reset(struct virtq *vq, const struct guest_mem *mem)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
}

/* Maps [gpa, gpa+len) of one region, with gpa and the host pointer both aligned. */
static void *map_ring(const struct guest_mem *mem, uint64_t gpa, uint64_t len, uint64_t align)
{
	void *p;

	if (gpa % align)
		return NULL;
	p = guest_mem_ptr(mem, gpa, len);
	/* Only a hand-made guest_mem can misalign the host side; atomics need it aligned. */
	if (p && (uintptr_t)p % align)
		return NULL;
	return p;
}

/* Maps the three rings of a size-n queue at the given addresses; false if any is unusable. */
static bool map_rings(const struct guest_mem *mem, uint64_t n, uint64_t desc_gpa,
		      uint64_t avail_gpa, uint64_t used_gpa, void **desc, void **avail, void **used)
{
	if (!mem || n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return false;
	/* Sizes as in VIRTIO 1.x §2.7: the event fields belong to the rings, negotiated or not. */
	*desc = map_ring(mem, desc_gpa, 16 * n, VRING_DESC_ALIGN_SIZE);
	*avail = map_ring(mem, avail_gpa, 6 + 2 * n, VRING_AVAIL_ALIGN_SIZE);
	*used = map_ring(mem, used_gpa, 6 + 8 * n, VRING_USED_ALIGN_SIZE);
	return *desc && *avail && *used;
}

int virtq_check_rings(const struct guest_mem *mem, const struct virtq_state *s)
{
	void *desc, *avail, *used;

	return map_rings(mem, s->size, s->desc_gpa, s->avail_gpa, s->used_gpa, &desc, &avail,
			 &used) ? 0 : -EINVAL;
}

/*
 * Maps the rings *s describes and makes vq run from its configuration and indices; 0, or
 * -EINVAL with vq unchanged. The broken flag is left as it is.
 */
static int virtq_run_from(struct virtq *vq, const struct virtq_state *s)
{
	void *desc, *avail, *used;

	if (!map_rings(vq->mem, s->size, s->desc_gpa, s->avail_gpa, s->used_gpa, &desc, &avail,
		       &used))
		return -EINVAL;
	vq->size = s->size;
	vq->desc_gpa = s->desc_gpa;
	vq->avail_gpa = s->avail_gpa;
	vq->used_gpa = s->used_gpa;
	vq->event_idx = s->event_idx;
	vq->indirect = s->indirect;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->last_avail_idx = s->last_avail_idx;
	vq->used_idx = s->used_idx;
	vq->used_pending = s->used_idx;
	vq->signalled_used = s->signalled_used;
	vq->signalled_used_valid = s->signalled_used_valid;
	vq->ready = true;
	return 0;
}

int virtq_start(struct virtq *vq)
{
	struct virtq_state s;

	/* The configuration the driver wrote, from indices 0. */
	virtq_save(vq, &s);
	s.last_avail_idx = s.used_idx = s.signalled_used = 0;
	s.signalled_used_valid = false;
	return virtq_run_from(vq, &s);
}

int virtq_start_from(struct virtq *vq, const struct guest_mem *mem, const struct virtq_state *s)
{
	virtq_reset(vq, mem);
	if (!s->ready)
		return -EINVAL;
	return virtq_run_from(vq, s);
}

void virtq_save(const struct virtq *vq, struct virtq_state *s)
{
	*s = (struct virtq_state){
		.size = vq->size,
		.desc_gpa = vq->desc_gpa,
		.avail_gpa = vq->avail_gpa,
		.used_gpa = vq->used_gpa,
		.ready = vq->ready,
		.event_idx = vq->event_idx,
		.indirect = vq->indirect,
		.last_avail_idx = vq->last_avail_idx,
		.used_idx = vq->used_idx,
		.signalled_used = vq->signalled_used,
		.signalled_used_valid = vq->signalled_used_valid,
	};
}

/* Where the walker reads descriptors from: the ring's table or an indirect one. */
struct desc_table {
	const uint8_t *host;		/* contiguous mapping (any alignment), or NULL: use gpa */
	uint64_t gpa;			/* an indirect table spanning adjacent regions */
	unsigned int num;		/* entries */
	bool indirect;
};

/*
 * Copies descriptor i into *d. The compiler barrier makes every later use read
 * the copy: it may no longer assume guest memory still equals it, so it cannot
 * re-load a field from the guest after it was checked.
 */
static bool desc_load(const struct virtq *vq, const struct desc_table *t, unsigned int i,
		      struct vring_desc *d)
{
	if (t->host)
		memcpy(d, t->host + sizeof(*d) * i, sizeof(*d));
	else if (guest_mem_read(vq->mem, t->gpa + sizeof(*d) * i, d, sizeof(*d)))
		return false;
	__asm__ __volatile__("" : : "r"(d) : "memory");
	return true;
}

/* Whether [gpa, gpa+len) is all guest RAM, possibly across adjacent regions. */
static bool range_is_ram(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint64_t end;

	if (__builtin_add_overflow(gpa, len, &end))
		return false;
	while (len) {
		uint64_t n = len;

		if (!guest_mem_ptr_partial(mem, gpa, &n))
			return false;
		gpa += n;
		len -= n;
	}
	return true;
}

/* State of one chain walk. */
struct walk {
	struct virtq *vq;
	struct virtq_chain *c;
	bool seen_writable;
};

/* Checks one buffer descriptor and appends its iovecs (one per region it touches). */
static int walk_buffer(struct walk *w, const struct desc_table *t, unsigned int i,
		       const struct vring_desc *d)
{
	struct virtq_chain *c = w->c;
	uint64_t addr = le64toh(d->addr), end;
	uint32_t len = le32toh(d->len);
	bool writable = le16toh(d->flags) & VRING_DESC_F_WRITE;
	const char *where = t->indirect ? "indirect descriptor" : "descriptor";

	if (writable)
		w->seen_writable = true;
	else if (w->seen_writable)
		return virtq_fail(w->vq, "readable %s %u after a writable one in chain at head %u",
				  where, i, c->head);
	if (__builtin_add_overflow(writable ? c->in_len : c->out_len, len,
				   writable ? &c->in_len : &c->out_len))
		return virtq_fail(w->vq, "chain at head %u: %s length overflows 32 bits",
				  c->head, writable ? "writable" : "readable");
	if (__builtin_add_overflow(addr, (uint64_t)len, &end))
		return virtq_fail(w->vq, "%s %u: buffer 0x%" PRIx64 "+%" PRIu32 " wraps around",
				  where, i, addr, len);

	/* Zero-length buffers are legal and need no iovec. */
	while (len) {
		unsigned int niov = c->nout + c->nin;
		uint64_t n = len;
		void *p;

		if (niov == VIRTQ_MAX_IOV)
			return virtq_fail(w->vq, "chain at head %u needs more than %u segments",
					  c->head, VIRTQ_MAX_IOV);
		p = guest_mem_ptr_partial(w->vq->mem, addr, &n);
		if (!p)
			return virtq_fail(w->vq, "%s %u: buffer 0x%" PRIx64 "+%" PRIu32
					  " is not in guest RAM at 0x%" PRIx64,
					  where, i, le64toh(d->addr), le32toh(d->len), addr);
		c->iov[niov] = (struct iovec){ .iov_base = p, .iov_len = n };
		if (writable)
			c->nin++;
		else
			c->nout++;
		addr += n;
		len -= (uint32_t)n;
	}
	return 0;
}

/* Switches the walk to the indirect table that d points to. */
static int walk_enter_indirect(struct walk *w, struct desc_table *t, unsigned int i,
			       const struct vring_desc *d)
{
	struct virtq *vq = w->vq;
	uint64_t addr = le64toh(d->addr);
	uint32_t len = le32toh(d->len);
	uint16_t flags = le16toh(d->flags);
	uint16_t head = w->c->head;

	if (t->indirect)
		return virtq_fail(vq, "nested indirect descriptor %u in chain at head %u", i, head);
	if (!vq->indirect)
		return virtq_fail(vq,
				  "indirect descriptor %u at head %u but INDIRECT_DESC not negotiated",
				  i, head);
	if (flags & VRING_DESC_F_NEXT)
		return virtq_fail(vq, "indirect descriptor %u at head %u has NEXT set", i, head);
	if (len == 0 || len % sizeof(struct vring_desc) ||
	    len / sizeof(struct vring_desc) > VIRTQ_MAX_INDIRECT)
		return virtq_fail(vq,
				  "indirect table length %" PRIu32 " at head %u is not a multiple of 16 in 16..%u",
				  len, head, 16 * VIRTQ_MAX_INDIRECT);

	t->host = map_ring(vq->mem, addr, len, 1);
	t->gpa = addr;
	if (!t->host && !range_is_ram(vq->mem, addr, len))
		return virtq_fail(vq,
				  "indirect table 0x%" PRIx64 "+%" PRIu32 " at head %u is not in guest RAM",
				  addr, len, head);
	t->num = len / sizeof(struct vring_desc);
	t->indirect = true;
	return 0;
}

/* Follows the chain starting at head (already checked < size) and fills w->c. */
static int walk_chain(struct walk *w, uint16_t head)
{
	struct virtq *vq = w->vq;
	struct desc_table t = { .host = (const uint8_t *)vq->desc, .num = vq->size };
	unsigned int i = head, count = 0;
	struct vring_desc d;
	uint16_t flags;
	int ret;

	for (;;) {
		/* A chain visits each entry of its table at most once; more means a loop. */
		if (++count > t.num)
			return virtq_fail(vq, "%s loop at head %u (chain longer than %u)",
					  t.indirect ? "indirect descriptor" : "descriptor",
					  head, t.num);
		if (!desc_load(vq, &t, i, &d))
			return virtq_fail(vq, "indirect table at head %u vanished", head);
		flags = le16toh(d.flags);

		if (flags & VRING_DESC_F_INDIRECT) {
			ret = walk_enter_indirect(w, &t, i, &d);
			if (ret)
				return ret;
			i = 0;
			count = 0;
			continue;
		}
		ret = walk_buffer(w, &t, i, &d);
		if (ret)
			return ret;
		if (!(flags & VRING_DESC_F_NEXT))
			return 0;
		if (le16toh(d.next) >= t.num)
			return virtq_fail(vq, "%s %u at head %u: next index %u out of range (table of %u)",
					  t.indirect ? "indirect descriptor" : "descriptor",
					  i, head, le16toh(d.next), t.num);
		i = le16toh(d.next);
	}
}

int virtq_pop(struct virtq *vq, struct virtq_chain *chain)
{
	struct walk w = { .vq = vq, .c = chain };
	uint16_t avail_idx, pending, head;
	int ret;

	if (vq->broken)
		return -EIO;
	if (!vq->ready)
		return 0;

	avail_idx = load_le16(&vq->avail->idx, __ATOMIC_ACQUIRE);
	pending = (uint16_t)(avail_idx - vq->last_avail_idx);
	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return virtq_fail(vq, "avail index %u is %u ahead of %u (queue size %u)",
				  avail_idx, pending, vq->last_avail_idx, vq->size);

	head = load_le16(&vq->avail->ring[vq->last_avail_idx & (vq->size - 1)], __ATOMIC_RELAXED);
	if (head >= vq->size)
		return virtq_fail(vq, "avail ring entry %u holds head %u (queue size %u)",
				  vq->last_avail_idx, head, vq->size);

	chain->head = head;
	chain->nout = chain->nin = 0;
	chain->out_len = chain->in_len = 0;
	chain->mem = vq->mem;
	ret = walk_chain(&w, head);
	if (ret)
		return ret;
	vq->last_avail_idx++;
	return 1;
}

int virtq_pop_head(struct virtq *vq, uint16_t head, struct virtq_chain *chain)
{
	struct walk w = { .vq = vq, .c = chain };
	int ret;

	if (vq->broken)
		return -EIO;
	if (!vq->ready)
		return 0;
	if (head >= vq->size)
		return virtq_fail(vq, "resubmitted head %u (queue size %u)", head, vq->size);
	chain->head = head;
	chain->nout = chain->nin = 0;
	chain->out_len = chain->in_len = 0;
	chain->mem = vq->mem;
	ret = walk_chain(&w, head);
	return ret ? ret : 1;
}

void virtq_unpop(struct virtq *vq)
{
	if (vq->ready && !vq->broken)
		vq->last_avail_idx--;
}

int virtq_add_used(struct virtq *vq, uint16_t head, uint32_t written)
{
	struct vring_used_elem *e;

	if (vq->broken || !vq->ready)
		return -EIO;
	if (head >= vq->size)
		return virtq_fail(vq, "device pushed head %u (queue size %u)", head, vq->size);
	if ((uint16_t)(vq->used_pending - vq->used_idx) >= vq->size)
		return virtq_fail(vq, "device added more used elements than the queue size %u", vq->size);

	e = &vq->used->ring[vq->used_pending & (vq->size - 1)];
	__atomic_store_n(&e->id, htole32(head), __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, htole32(written), __ATOMIC_RELAXED);
	vq->used_pending++;
	return 0;
}

void virtq_publish_used(struct virtq *vq)
{
	if (vq->broken || !vq->ready || vq->used_pending == vq->used_idx)
		return;
	if (virtq_logging(vq->mem)) {
		/* The elements [used_idx, used_pending), which may wrap, and used->idx. */
		uint16_t first = vq->used_idx & (vq->size - 1);
		uint16_t n = (uint16_t)(vq->used_pending - vq->used_idx);
		uint16_t tail = n < vq->size - first ? n : (uint16_t)(vq->size - first);

		mark_used(vq, offsetof(struct vring_used, ring) + 8ULL * first, 8ULL * tail);
		if (n > tail)
			mark_used(vq, offsetof(struct vring_used, ring), 8ULL * (n - tail));
	}
	vq->used_idx = vq->used_pending;
	store_le16(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
	if (virtq_logging(vq->mem))
		mark_used(vq, offsetof(struct vring_used, idx), sizeof(uint16_t));

	/*
	 * vring_need_event() compares 16-bit distances: once used_idx is half the
	 * index space past the last check, that check no longer tells old from new.
	 */
	if ((uint16_t)(vq->used_idx - vq->signalled_used) >= 0x8000)
		vq->signalled_used_valid = false;
}

int virtq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
	int ret = virtq_add_used(vq, head, written);

	if (!ret)
		virtq_publish_used(vq);
	return ret;
}

bool virtq_should_notify(struct virtq *vq)
{
	uint16_t old, new, event;
	bool valid;

	if (vq->broken || !vq->ready)
		return false;
	/* Our used->idx store must be visible before we read what the driver asked for. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	if (!vq->event_idx) {
		uint16_t flags = load_le16(&vq->avail->flags, __ATOMIC_RELAXED);

		return !(flags & VRING_AVAIL_F_NO_INTERRUPT);
	}

	old = vq->signalled_used;
	new = vq->used_idx;
	valid = vq->signalled_used_valid;
	vq->signalled_used = new;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;
	event = load_le16(used_event_ptr(vq), __ATOMIC_RELAXED);
	return vring_need_event(event, new, old);
}

void virtq_set_notify(struct virtq *vq, bool enable)
{
	if (vq->broken || !vq->ready)
		return;
	if (vq->event_idx) {
		/* Disabling needs no write: avail_event stays behind and no kick crosses it. */
		if (enable) {
			store_le16(avail_event_ptr(vq), vq->last_avail_idx, __ATOMIC_RELAXED);
			if (virtq_logging(vq->mem))
				mark_used(vq, offsetof(struct vring_used, ring) + 8ULL * vq->size,
					  sizeof(uint16_t));
		}
	} else {
		store_le16(&vq->used->flags, enable ? 0 : VRING_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
		if (virtq_logging(vq->mem))
			mark_used(vq, offsetof(struct vring_used, flags), sizeof(uint16_t));
	}
	/* Make the request visible before the caller re-reads avail->idx (virtq_has_work). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool virtq_has_work(struct virtq *vq)
{
	if (vq->broken || !vq->ready)
		return false;
	return load_le16(&vq->avail->idx, __ATOMIC_ACQUIRE) != vq->last_avail_idx;
}

bool virtq_view(const struct virtq *vq, struct virtq_view *v)
{
	if (!vq->ready || !vq->avail || !vq->used)
		return false;
	*v = (struct virtq_view){
		.avail_idx = load_le16(&vq->avail->idx, __ATOMIC_ACQUIRE),
		.avail_flags = load_le16(&vq->avail->flags, __ATOMIC_RELAXED),
		.used_event = load_le16(used_event_ptr(vq), __ATOMIC_RELAXED),
		.used_idx = load_le16(&vq->used->idx, __ATOMIC_ACQUIRE),
		.avail_event = load_le16(avail_event_ptr(vq), __ATOMIC_RELAXED),
		.used_flags = load_le16(&vq->used->flags, __ATOMIC_RELAXED),
		.last_avail_idx = __atomic_load_n(&vq->last_avail_idx, __ATOMIC_RELAXED),
		.signalled_used = __atomic_load_n(&vq->signalled_used, __ATOMIC_RELAXED),
		.event_idx = vq->event_idx,
		.device_side = true,
	};
	return true;
}

void virtq_view_format(const struct virtq_view *v, char *buf, size_t len)
{
	int n;

	/*
	 * Seen by the ring's owner: what it took and when it last interrupted.
	 * From outside (a vhost back-end's ring): only what guest memory shows.
	 */
	if (v->device_side)
		n = snprintf(buf, len, "offered %u, taken %u (%u waiting), used %u, ", v->avail_idx,
			     v->last_avail_idx, (uint16_t)(v->avail_idx - v->last_avail_idx),
			     v->used_idx);
	else
		n = snprintf(buf, len, "offered %u, used %u (%u not answered), ", v->avail_idx,
			     v->used_idx, (uint16_t)(v->avail_idx - v->used_idx));
	if (n < 0 || (size_t)n >= len)
		return;
	buf += n;
	len -= (size_t)n;
	if (!v->event_idx)
		snprintf(buf, len, "interrupts %s, kicks %s",
			 v->avail_flags & VRING_AVAIL_F_NO_INTERRUPT ? "off" : "on",
			 v->used_flags & VRING_USED_F_NO_NOTIFY ? "off" : "on");
	else if (v->device_side)
		snprintf(buf, len, "last interrupt at %u, driver wants one at %u, kicks wanted at %u",
			 v->signalled_used, v->used_event, v->avail_event);
	else
		snprintf(buf, len, "driver wants an interrupt at %u, kicks wanted at %u",
			 v->used_event, v->avail_event);
}

/* Copies between iov[0..n), from byte offset on, and buf; returns bytes copied. */
static size_t iov_copy(const struct iovec *iov, unsigned int n, size_t offset,
		       void *buf, size_t len, bool to_iov)
{
	uint8_t *b = buf;
	size_t done = 0;

	for (unsigned int i = 0; i < n && done < len; i++) {
		size_t seg = iov[i].iov_len, chunk;

		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		chunk = seg - offset;
		if (chunk > len - done)
			chunk = len - done;
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + offset, b + done, chunk);
		else
			memcpy(b + done, (uint8_t *)iov[i].iov_base + offset, chunk);
		done += chunk;
		offset = 0;
	}
	return done;
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *dst, size_t len)
{
	return iov_copy(c->iov, c->nout, offset, dst, len, false);
}

size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *src, size_t len)
{
	size_t n = iov_copy(c->iov + c->nout, c->nin, offset, (void *)src, len, true);

	virtq_chain_mark_written(c, offset, n);
	return n;
}
