// SPDX-License-Identifier: GPL-2.0-only
/*
 * The fake virtio driver of the device unit tests (see fake_driver.h): fake
 * guest RAM and host, register accesses through the transport, and the
 * driver's side of split rings.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "fake_driver.h"
#include "vmm/base/event_loop.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/util.h"

#define RING_AREA	0x10000ULL	/* per queue, from FAKE_RING_GPA(q) */
#define USED_OFF	0x8000ULL	/* the used ring's offset in it */

/* The driver's view of one queue: its rings in guest memory and its indexes. */
struct drv_vq {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t next_desc, avail_idx, used_seen;
};

struct virtio_host fake_host;

static uint8_t *ram;
static bool ram_shared;
static struct guest_mem mem;
static struct event_loop loop;
static bool loop_up;
static uint16_t qsize;
static uint64_t buf_next;
static struct drv_vq vqs[VIRTIO_MMIO_MAX_QUEUES];

static int fake_ioeventfd(struct virtio_host *h, uint64_t addr, uint32_t datamatch, int fd,
			  bool assign)
{
	return 0;
}

static int fake_irqfd(struct virtio_host *h, uint32_t gsi, int fd, bool assign)
{
	return 0;
}

void fake_driver_init(uint16_t size)
{
	/* Descriptors and avail ring must fit below the used ring, the used ring in the area. */
	cr_assert(size && !(size & (size - 1)), "queue size %u is not a power of two", size);
	cr_assert_leq(16ULL * size + 6 + 2 * size, USED_OFF);
	cr_assert_leq(USED_OFF + 6 + 8ULL * size, RING_AREA);
	qsize = size;
	if (ram_shared) {
		const struct guest_mem_range r = { 0, FAKE_RAM_SIZE };

		cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_MEMFD), 0);
		ram = mem.regions[0].hva;
	} else {
		ram = aligned_alloc(4096, FAKE_RAM_SIZE);
		cr_assert_not_null(ram);
		memset(ram, 0, FAKE_RAM_SIZE);
		guest_mem_init_from_buffer(&mem, ram, 0, FAKE_RAM_SIZE);
	}
	cr_assert_eq(event_loop_init(&loop), 0);
	loop_up = true;
	fake_host = (struct virtio_host){
		.mem = &mem, .loop = &loop, .ioeventfd = fake_ioeventfd, .irqfd = fake_irqfd,
	};
	buf_next = FAKE_BUF_GPA;
	memset(vqs, 0, sizeof(vqs));
}

void fake_driver_init_shared(uint16_t size)
{
	ram_shared = true;
	fake_driver_init(size);
}

const struct guest_mem *fake_driver_mem(void)
{
	return &mem;
}

struct event_loop *fake_driver_loop(void)
{
	return &loop;
}

void fake_driver_fini(void)
{
	guest_mem_set_dirty_log(&mem, NULL);
	if (loop_up)
		event_loop_destroy(&loop);
	loop_up = false;
	if (ram_shared)
		guest_mem_destroy(&mem);
	else
		free(ram);
	ram_shared = false;
	ram = NULL;
}

/* ---- Guest memory ---- */

void *gpa_ptr(uint64_t gpa)
{
	cr_assert_lt(gpa, FAKE_RAM_SIZE, "gpa %#llx outside the fake RAM", (unsigned long long)gpa);
	return ram + gpa;
}

uint64_t alloc_buf(size_t len)
{
	uint64_t gpa = buf_next;

	buf_next += ALIGN_UP(len, 64);
	cr_assert_leq(buf_next, FAKE_RAM_SIZE);
	memset(ram + gpa, 0, len);
	return gpa;
}

void free_bufs(void)
{
	buf_next = FAKE_BUF_GPA;
}

/* ---- Registers ---- */

uint32_t drv_rd(struct virtio_mmio_dev *d, uint64_t off)
{
	uint32_t v = 0xdeadbeef;	/* shows a register the transport left unwritten */

	virtio_mmio_io(d, off, (uint8_t *)&v, 4, false);
	return le32toh(v);
}

void drv_wr(struct virtio_mmio_dev *d, uint64_t off, uint32_t v)
{
	v = htole32(v);
	virtio_mmio_io(d, off, (uint8_t *)&v, 4, true);
}

uint64_t drv_device_features(struct virtio_mmio_dev *d)
{
	uint64_t f;

	drv_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	f = drv_rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	drv_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	return f | (uint64_t)drv_rd(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

bool drv_negotiate(struct virtio_mmio_dev *d, uint64_t features)
{
	uint32_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;

	drv_wr(d, VIRTIO_MMIO_STATUS, s);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	drv_wr(d, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
	return drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK;
}

void drv_queue_at(struct virtio_mmio_dev *d, unsigned int q, uint32_t size, uint64_t desc,
		  uint64_t avail, uint64_t used)
{
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, q);
	drv_wr(d, VIRTIO_MMIO_QUEUE_NUM, size);
	drv_wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	drv_wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	drv_wr(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	drv_wr(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	drv_wr(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	drv_wr(d, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
	drv_wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
}

/* The driver's state of queue q, which drv_setup_queue() set up. */
static struct drv_vq *vq(unsigned int q)
{
	cr_assert_lt(q, VIRTIO_MMIO_MAX_QUEUES);
	cr_assert_not_null(vqs[q].desc, "queue %u was not set up", q);
	return &vqs[q];
}

void drv_setup_queue(struct virtio_mmio_dev *d, unsigned int q)
{
	uint64_t desc = FAKE_RING_GPA(q), avail = desc + 16 * qsize, used = desc + USED_OFF;
	struct drv_vq *v;

	cr_assert_leq(FAKE_RING_GPA(q + 1), FAKE_BUF_GPA, "no ring area for queue %u", q);
	v = &vqs[q];
	memset(gpa_ptr(desc), 0, RING_AREA);
	*v = (struct drv_vq){
		.desc = gpa_ptr(desc), .avail = gpa_ptr(avail), .used = gpa_ptr(used),
	};
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, q);
	cr_assert_geq(drv_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX), qsize, "queue %u is too small", q);
	drv_queue_at(d, q, qsize, desc, avail, used);
	cr_assert_eq(drv_rd(d, VIRTIO_MMIO_QUEUE_READY), 1, "queue %u refused", q);
}

void drv_start(struct virtio_mmio_dev *d, uint64_t features)
{
	features |= 1ULL << VIRTIO_F_VERSION_1;
	cr_assert(drv_negotiate(d, features), "features refused");
	for (unsigned int q = 0; q < d->ops->nqueues; q++)
		drv_setup_queue(d, q);
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		  VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(virtio_mmio_is_active(d));
	drv_run_kicks(d);
}

void drv_kick(struct virtio_mmio_dev *d, unsigned int q)
{
	drv_wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, q);
	drv_run_kicks(d);
}

/* Whether fd is one of d's kick eventfds. */
static bool is_kick_fd(const struct virtio_mmio_dev *d, int fd)
{
	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		if (fd >= 0 && d->q[q].kick_fd == fd)
			return true;
	return false;
}

void drv_run_kicks(struct virtio_mmio_dev *d)
{
	struct epoll_event evs[32];

	/* Bounded: a handler that kicks itself forever fails the test instead of hanging it. */
	for (int round = 0; round < 64; round++) {
		int n = epoll_wait(loop.epfd, evs, 32, 0), ran = 0;

		cr_assert_geq(n, 0);
		for (int i = 0; i < n; i++) {
			struct event_source *src = evs[i].data.ptr;

			if (src && is_kick_fd(d, src->fd)) {
				src->fn(src, evs[i].events);
				ran++;
			}
		}
		if (!ran)
			return;
	}
	cr_assert_fail("the kick handlers of %s keep finding kicks", d->name);
}

int drv_run_loop(int ms)
{
	struct epoll_event evs[32];
	int n = epoll_wait(loop.epfd, evs, 32, ms);

	cr_assert(n >= 0 || errno == EINTR);
	for (int i = 0; i < n; i++) {
		struct event_source *src = evs[i].data.ptr;

		if (src)
			src->fn(src, evs[i].events);
	}
	return n < 0 ? 0 : n;
}

void drv_loop_start(void)
{
	cr_assert_eq(event_loop_start(&loop), 0);
}

void drv_loop_stop(void)
{
	event_loop_stop(&loop);
}

/* ---- Rings ---- */

void drv_set_desc(unsigned int q, uint16_t i, uint64_t gpa, uint32_t len, uint16_t flags,
		  uint16_t next)
{
	struct vring_desc *desc;

	cr_assert_lt(i, qsize, "descriptor %u of %u", i, qsize);
	desc = &vq(q)->desc[i];
	desc->addr = htole64(gpa);
	desc->len = htole32(len);
	desc->flags = htole16(flags);
	desc->next = htole16(next);
}

void drv_offer(unsigned int q, uint16_t head)
{
	struct drv_vq *v = vq(q);

	v->avail->ring[v->avail_idx % qsize] = htole16(head);
	v->avail_idx++;
	__atomic_store_n(&v->avail->idx, htole16(v->avail_idx), __ATOMIC_RELEASE);
}

uint16_t drv_add(unsigned int q, const struct drv_seg *segs, unsigned int nsegs)
{
	struct drv_vq *v = vq(q);
	uint16_t head = v->next_desc;

	for (unsigned int i = 0; i < nsegs; i++) {
		uint16_t idx = (uint16_t)((head + i) % qsize);

		drv_set_desc(q, idx, segs[i].gpa, segs[i].len,
			     (segs[i].writable ? VRING_DESC_F_WRITE : 0) |
			     (i + 1 < nsegs ? VRING_DESC_F_NEXT : 0),
			     (uint16_t)((idx + 1) % qsize));
	}
	v->next_desc = (uint16_t)((head + nsegs) % qsize);
	drv_offer(q, head);
	return head;
}

bool drv_used(unsigned int q, uint32_t *id, uint32_t *len)
{
	struct drv_vq *v = vq(q);

	if (le16toh(__atomic_load_n(&v->used->idx, __ATOMIC_ACQUIRE)) == v->used_seen)
		return false;
	*id = le32toh(v->used->ring[v->used_seen % qsize].id);
	*len = le32toh(v->used->ring[v->used_seen % qsize].len);
	v->used_seen++;
	return true;
}

bool drv_wait_used(unsigned int q, uint32_t *id, uint32_t *len, int ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (drv_used(q, id, len))
			return true;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >= ms)
			return drv_used(q, id, len);
		nanosleep(&(struct timespec){ .tv_nsec = 100000 }, NULL);
	}
}

uint16_t drv_avail_idx(unsigned int q)
{
	return vq(q)->avail_idx;
}

uint16_t drv_avail_event(unsigned int q)
{
	return le16toh(*(uint16_t *)&vq(q)->used->ring[qsize]);
}

void host_chain(struct virtq_chain *c, const struct iovec *out, unsigned int nout,
		const struct iovec *in, unsigned int nin)
{
	cr_assert_leq(nout + nin, VIRTQ_MAX_IOV);
	memset(c, 0, sizeof(*c));
	for (unsigned int i = 0; i < nout; i++) {
		c->iov[c->nout++] = out[i];
		c->out_len += (uint32_t)out[i].iov_len;
	}
	for (unsigned int i = 0; i < nin; i++) {
		c->iov[c->nout + c->nin++] = in[i];
		c->in_len += (uint32_t)in[i].iov_len;
	}
}

/* ---- Migration ---- */

/* The window's registers at the current selectors. */
static void read_regs(struct virtio_mmio_dev *d, uint32_t *regs)
{
	for (uint64_t off = 0; off < VIRTIO_MMIO_CONFIG; off += 4)
		regs[off / 4] = drv_rd(d, off);
}

void drv_read_all(struct virtio_mmio_dev *d, struct drv_regs *r)
{
	uint32_t qsel = d->queue_sel, fsel = d->device_features_sel;

	memset(r, 0, sizeof(*r));
	r->nqueues = d->ops->nqueues;
	read_regs(d, r->now);
	for (uint32_t sel = 0; sel <= d->ops->nqueues; sel++) {
		drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, sel);
		drv_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
		read_regs(d, r->sel[sel]);
	}
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, qsel);
	drv_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, fsel);
	for (uint32_t i = 0; i < sizeof(r->config); i++)
		virtio_mmio_io(d, VIRTIO_MMIO_CONFIG + i, &r->config[i], 1, false);
	memcpy(r->queues, d->queues, sizeof(r->queues));
}

void drv_expect_same_regs(const struct drv_regs *want, const struct drv_regs *got)
{
	cr_assert_eq(got->nqueues, want->nqueues);
	for (unsigned int i = 0; i < VIRTIO_MMIO_CONFIG / 4; i++)
		cr_assert_eq(got->now[i], want->now[i], "register %#x reads %#x, want %#x", i * 4,
			     got->now[i], want->now[i]);
	for (unsigned int sel = 0; sel <= want->nqueues; sel++)
		for (unsigned int i = 0; i < VIRTIO_MMIO_CONFIG / 4; i++)
			cr_assert_eq(got->sel[sel][i], want->sel[sel][i],
				     "selection %u: register %#x reads %#x, want %#x", sel, i * 4,
				     got->sel[sel][i], want->sel[sel][i]);
	cr_assert_arr_eq(got->config, want->config, sizeof(want->config), "config space");
	for (unsigned int q = 0; q < want->nqueues; q++)
		cr_assert_arr_eq(&got->queues[q], &want->queues[q], sizeof(struct virtq_state),
				 "queue %u's state", q);
}

void drv_pause_save(struct virtio_mmio_dev *d, struct sbuf *w)
{
	int ret;

	sbuf_init_writer(w);
	pthread_mutex_lock(&d->lock);
	virtio_mmio_pause(d);
	ret = virtio_mmio_save(d, w);
	pthread_mutex_unlock(&d->lock);
	cr_assert_eq(ret, 0, "save: %s", strerror(-ret));
}

int drv_load(struct virtio_mmio_dev *d, const void *data, size_t len)
{
	struct sbuf r;
	int ret;

	sbuf_init_reader(&r, data, len);
	pthread_mutex_lock(&d->lock);
	ret = virtio_mmio_load(d, &r);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

void drv_resume(struct virtio_mmio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	virtio_mmio_resume(d);
	pthread_mutex_unlock(&d->lock);
	drv_run_kicks(d);
}

/* d's state as its own save shows it. */
static void save_of(struct virtio_mmio_dev *d, struct sbuf *w)
{
	int ret;

	sbuf_init_writer(w);
	pthread_mutex_lock(&d->lock);
	ret = virtio_mmio_save(d, w);
	pthread_mutex_unlock(&d->lock);
	cr_assert_eq(ret, 0);
}

void drv_expect_truncations_refused(struct virtio_mmio_dev *d, const struct sbuf *state)
{
	struct sbuf before, now;
	uint8_t *longer = malloc(state->len + 1);

	cr_assert_not_null(longer);
	save_of(d, &before);
	for (size_t len = 0; len <= state->len; len++) {
		size_t n = len < state->len ? len : state->len + 1;

		memcpy(longer, state->data, state->len);
		longer[state->len] = 0;
		cr_assert_eq(drv_load(d, longer, n), -EBADMSG, "%zu of %zu bytes", n, state->len);
		save_of(d, &now);
		cr_assert_eq(now.len, before.len);
		cr_assert_arr_eq(now.data, before.data, now.len,
				 "a refused load (%zu bytes) changed the device", n);
		sbuf_free(&now);
		cr_assert_not(d->load_pending);
	}
	sbuf_free(&before);
	free(longer);
}

void fake_driver_log_dirty(struct dirty_log *l)
{
	guest_mem_set_dirty_log(&mem, l);
}

bool drv_page_dirty(const struct dirty_log *l, uint64_t gpa)
{
	uint64_t p = gpa >> DIRTY_PAGE_SHIFT;

	return p < l->pages && (__atomic_load_n(&l->words[p / 64], __ATOMIC_RELAXED) >> (p % 64)) & 1;
}

uint64_t drv_dirty_pages(const struct dirty_log *l)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < (l->pages + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&l->words[w], __ATOMIC_RELAXED));
	return n;
}

uint64_t drv_used_gpa(unsigned int q)
{
	return FAKE_RING_GPA(q) + USED_OFF;
}
