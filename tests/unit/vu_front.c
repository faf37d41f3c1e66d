// SPDX-License-Identifier: GPL-2.0-only
/* The test front-end of vu_front.h. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/vu_front.h"

static struct vu_front *current;

static int vf_set_watch(struct vu_dev *dev, int fd, uint32_t events, vu_watch_cb cb, void *data)
{
	struct vf_watch *free_w = NULL;

	for (unsigned int i = 0; i < 40; i++) {
		struct vf_watch *w = &current->w[i];

		if (w->on && w->fd == fd) {
			*w = (struct vf_watch){ fd, events, cb, data, true };
			return 0;
		}
		if (!w->on && !free_w)
			free_w = w;
	}
	if (!free_w)
		return -ENOSPC;
	*free_w = (struct vf_watch){ fd, events, cb, data, true };
	return 0;
}

static void vf_remove_watch(struct vu_dev *dev, int fd)
{
	for (unsigned int i = 0; i < 40; i++)
		if (current->w[i].on && current->w[i].fd == fd)
			current->w[i].on = false;
}

const struct vu_ops vf_ops = {
	.set_watch = vf_set_watch,
	.remove_watch = vf_remove_watch,
};

void vf_init(struct vu_front *f)
{
	int sv[2];

	memset(f, 0, sizeof(*f));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fe = sv[0];
	f->be = sv[1];
	f->memfd = memfd_create("vf-guest", MFD_CLOEXEC);
	cr_assert_geq(f->memfd, 0);
	cr_assert_eq(ftruncate(f->memfd, VF_MEM_SIZE), 0);
	f->mem = mmap(NULL, VF_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	cr_assert_neq(f->mem, MAP_FAILED);
	current = f;
}

void vf_fini(struct vu_front *f)
{
	munmap(f->mem, VF_MEM_SIZE);
	close(f->memfd);
	close(f->fe);
	close(f->be);
}

int vf_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

void *vf_ptr(struct vu_front *f, uint64_t gpa)
{
	cr_assert(gpa >= VF_GPA && gpa < VF_GPA + VF_MEM_SIZE);
	return f->mem + (gpa - VF_GPA);
}

int vf_pump(struct vu_front *f)
{
	int ret = 0;

	current = f;
	if (f->dev) {
		while ((ret = vu_dispatch(f->dev)) == 0)
			;
	}
	for (unsigned int i = 0; i < 40 && f->dev; i++) {
		struct vf_watch *w = &f->w[i];
		struct pollfd p;

		if (!w->on)
			continue;
		p = (struct pollfd){ .fd = w->fd, .events = (short)w->events };
		if (poll(&p, 1, 0) == 1)
			w->cb(f->dev, w->fd, p.revents, w->data);
	}
	return ret;
}

int vf_send(struct vu_front *f, uint32_t req, uint32_t flags, const void *payload,
	    uint32_t size, const int *fds, unsigned int nfds)
{
	struct vhost_user_hdr h = { req, VHOST_USER_VERSION | flags, size };
	int ret = vhost_user_send(f->fe, &h, payload, fds, nfds, 1000);

	return ret ? ret : vf_pump(f);
}

int vf_recv(struct vu_front *f, struct vhost_user_msg *m)
{
	struct pollfd p = { .fd = f->fe, .events = POLLIN };

	if (poll(&p, 1, 1000) != 1)
		return -ETIMEDOUT;
	return vhost_user_recv(f->fe, m, 1000);
}

int vf_call(struct vu_front *f, uint32_t req, uint32_t flags, const void *payload,
	    uint32_t size, const int *fds, unsigned int nfds, struct vhost_user_msg *reply)
{
	vf_send(f, req, flags, payload, size, fds, nfds);
	return vf_recv(f, reply);
}

int vf_set_mem(struct vu_front *f)
{
	struct vhost_user_mem_table t = { .nregions = 1 };

	t.regions[0] = (struct vhost_user_mem_region){ VF_GPA, VF_MEM_SIZE, VF_QVA, 0 };
	return vf_send(f, VHOST_USER_SET_MEM_TABLE, 0, &t, 8 + 32, &f->memfd, 1);
}

void vf_negotiate(struct vu_front *f, uint64_t extra_features, uint64_t protocol_mask)
{
	struct vhost_user_msg m;
	uint64_t feat, prot;

	cr_assert_eq(vf_call(f, VHOST_USER_GET_FEATURES, 0, NULL, 0, NULL, 0, &m), 0);
	cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_GET_FEATURES, 8, 0), 0);
	feat = m.p.u64;
	cr_assert_eq(vf_call(f, VHOST_USER_GET_PROTOCOL_FEATURES, 0, NULL, 0, NULL, 0, &m), 0);
	cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_GET_PROTOCOL_FEATURES, 8, 0), 0);
	prot = m.p.u64 & protocol_mask;
	vf_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, 0, &prot, 8, NULL, 0);
	vf_send(f, VHOST_USER_SET_OWNER, 0, NULL, 0, NULL, 0);
	feat &= ~(1ULL << VHOST_USER_F_LOG_ALL);
	feat |= extra_features;
	cr_assert_eq(vf_call(f, VHOST_USER_SET_FEATURES, VHOST_USER_FLAG_NEED_REPLY, &feat, 8,
			     NULL, 0, &m), 0);
	cr_assert_eq(m.p.u64, 0, "SET_FEATURES refused");
	cr_assert_eq(vf_set_mem(f), -EAGAIN);
}

void vf_ring_layout(struct vf_ring *r, unsigned int q, uint16_t num, uint64_t area)
{
	memset(r, 0, sizeof(*r));
	r->index = q;
	r->num = num;
	r->desc = area;
	r->avail = area + 16ULL * num;
	r->used = (r->avail + 6 + 2ULL * num + 3) & ~3ULL;
	r->kick = r->call = r->err = -1;
}

void vf_ring_send(struct vu_front *f, struct vf_ring *r, uint16_t base)
{
	struct vhost_user_vring_state st = { r->index, r->num };
	struct vhost_user_vring_addr a = {
		.index = r->index,
		.desc = VF_QVA + (r->desc - VF_GPA),
		.avail = VF_QVA + (r->avail - VF_GPA),
		.used = VF_QVA + (r->used - VF_GPA),
		.log = r->used,
	};
	uint64_t v = r->index;

	if (r->kick >= 0)
		close(r->kick);
	if (r->call >= 0)
		close(r->call);
	if (r->err >= 0)
		close(r->err);
	r->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vf_send(f, VHOST_USER_SET_VRING_NUM, 0, &st, sizeof(st), NULL, 0);
	vf_send(f, VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
	st.num = base;
	vf_send(f, VHOST_USER_SET_VRING_BASE, 0, &st, sizeof(st), NULL, 0);
	vf_send(f, VHOST_USER_SET_VRING_CALL, 0, &v, 8, &r->call, 1);
	vf_send(f, VHOST_USER_SET_VRING_ERR, 0, &v, 8, &r->err, 1);
	vf_send(f, VHOST_USER_SET_VRING_KICK, 0, &v, 8, &r->kick, 1);
}

void vf_ring_setup(struct vu_front *f, struct vf_ring *r, unsigned int q, uint16_t num,
		   uint64_t area, uint16_t base)
{
	vf_ring_layout(r, q, num, area);
	r->avail_idx = r->last_used = base;
	memset(vf_ptr(f, area), 0, r->used + 6 + 8ULL * num - area);
	((struct vring_avail *)vf_ptr(f, r->avail))->idx = base;
	((struct vring_used *)vf_ptr(f, r->used))->idx = base;
	vf_ring_send(f, r, base);
}

uint16_t vf_add(struct vu_front *f, struct vf_ring *r, const struct vf_buf *b, unsigned int n)
{
	struct vring_desc *d = vf_ptr(f, r->desc);
	struct vring_avail *a = vf_ptr(f, r->avail);
	uint16_t head = r->next_desc % r->num;

	for (unsigned int i = 0; i < n; i++) {
		uint16_t k = (uint16_t)((head + i) % r->num);

		d[k].addr = b[i].gpa;
		d[k].len = b[i].len;
		d[k].flags = (uint16_t)((b[i].write ? VRING_DESC_F_WRITE : 0) |
					(i + 1 < n ? VRING_DESC_F_NEXT : 0));
		d[k].next = (uint16_t)((head + i + 1) % r->num);
	}
	r->next_desc = (uint16_t)(r->next_desc + n);
	a->ring[r->avail_idx % r->num] = head;
	__atomic_store_n(&a->idx, (uint16_t)(r->avail_idx + 1), __ATOMIC_RELEASE);
	r->avail_idx++;
	eventfd_write(r->kick, 1);
	return head;
}

bool vf_used(struct vu_front *f, struct vf_ring *r, uint32_t *id, uint32_t *len, int timeout_ms)
{
	struct vring_used *u = vf_ptr(f, r->used);
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) != r->last_used) {
			struct vring_used_elem *e = &u->ring[r->last_used % r->num];

			*id = e->id;
			*len = e->len;
			r->last_used++;
			return true;
		}
		vf_pump(f);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
			return false;
		usleep(200);
	}
}
