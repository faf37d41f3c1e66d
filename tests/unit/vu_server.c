// SPDX-License-Identifier: GPL-2.0-only
/* Test back-ends on threads (see vu_server.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/unit/vu_server.h"
#include "vmm/base/util.h"

static struct vu_server *to_server(struct vu_dev *dev)
{
	return (struct vu_server *)container_of(dev, struct vu_blk, dev);
}

static int watch_set(struct vs_watch *w, size_t nw, int fd, uint32_t events, vu_watch_cb cb,
		     void *data)
{
	struct vs_watch *free_w = NULL;

	for (size_t i = 0; i < nw; i++) {
		if (w[i].on && w[i].fd == fd) {
			w[i] = (struct vs_watch){ fd, events, cb, data, true };
			return 0;
		}
		if (!w[i].on && !free_w)
			free_w = &w[i];
	}
	if (!free_w)
		return -ENOSPC;
	*free_w = (struct vs_watch){ fd, events, cb, data, true };
	return 0;
}

static void watch_remove(struct vs_watch *w, size_t nw, int fd)
{
	for (size_t i = 0; i < nw; i++)
		if (w[i].on && w[i].fd == fd)
			w[i].on = false;
}

static int vs_set_watch(struct vu_dev *dev, int fd, uint32_t events, vu_watch_cb cb, void *data)
{
	struct vu_server *s = to_server(dev);

	return watch_set(s->w, ARRAY_SIZE(s->w), fd, events, cb, data);
}

static void vs_remove_watch(struct vu_dev *dev, int fd)
{
	struct vu_server *s = to_server(dev);

	watch_remove(s->w, ARRAY_SIZE(s->w), fd);
}

/* The device's config space, refused past config_max bytes. */
static int vs_short_get_config(struct vu_dev *dev, uint8_t *buf, uint32_t offset, uint32_t len)
{
	struct vu_server *s = to_server(dev);

	if (offset > s->config_max || len > s->config_max - offset)
		return -EINVAL;
	return s->dev_get_config(dev, buf, offset, len);
}

static const struct vu_ops vs_ops = {
	.set_watch = vs_set_watch,
	.remove_watch = vs_remove_watch,
};

void vs_init(struct vu_server *s, unsigned int nqueues)
{
	struct vu_blk_options o = { .image = s->img, .nqueues = nqueues };
	int fd;

	memset(s, 0, sizeof(*s));
	signal(SIGPIPE, SIG_IGN);
	s->sock = s->listen_fd = -1;
	s->nqueues = nqueues;
	strcpy(s->img, "/tmp/vs-img.XXXXXX");
	fd = mkstemp(s->img);
	cr_assert_geq(fd, 0);
	for (unsigned int i = 0; i < VS_IMG_SIZE / 512; i++) {
		uint8_t sec[512];

		memset(sec, i & 0xff, sizeof(sec));
		cr_assert_eq(pwrite(fd, sec, 512, i * 512), 512);
	}
	close(fd);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert_geq(s->stop_fd, 0);
	cr_assert_eq(vu_blk_open(&s->b, &o), 0);
}

/* Serves s->sock until it closes, s->die, or the stop eventfd. true: stop the thread. */
static bool vs_serve(struct vu_server *s)
{
	cr_assert_eq(vu_blk_connect(&s->b, s->sock, &vs_ops), 0);
	if (s->config_max) {
		s->iface = *s->b.dev.iface;
		s->dev_get_config = s->iface.get_config;
		s->iface.get_config = vs_short_get_config;
		s->b.dev.iface = &s->iface;
	}
	atomic_fetch_add(&s->connections, 1);
	for (;;) {
		struct pollfd p[2 + ARRAY_SIZE(s->w)];
		struct vs_watch *wp[ARRAY_SIZE(s->w)];
		unsigned int n = 2;
		bool stop = false, drop = false;

		p[0] = (struct pollfd){ .fd = s->sock, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = s->stop_fd, .events = POLLIN };
		for (unsigned int i = 0; i < ARRAY_SIZE(s->w); i++)
			if (s->w[i].on) {
				wp[n - 2] = &s->w[i];
				p[n++] = (struct pollfd){ .fd = s->w[i].fd,
							  .events = (short)s->w[i].events };
			}
		if (poll(p, n, 50) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			stop = true;
		if (atomic_exchange(&s->die, false) || stop)
			drop = true;
		if (!drop && p[0].revents) {
			int r;

			while ((r = vu_dispatch(&s->b.dev)) == 0)
				;
			if (r != -EAGAIN)
				drop = true;
		}
		for (unsigned int i = 2; !drop && i < n; i++)
			if (p[i].revents && wp[i - 2]->on)
				wp[i - 2]->cb(&s->b.dev, p[i].fd, p[i].revents, wp[i - 2]->data);
		if (drop) {
			vu_blk_disconnect(&s->b);
			memset(s->w, 0, sizeof(s->w));
			close(s->sock);
			s->sock = -1;
			return stop;
		}
	}
	vu_blk_disconnect(&s->b);
	close(s->sock);
	s->sock = -1;
	return true;
}

static void *vs_thread(void *arg)
{
	struct vu_server *s = arg;

	for (;;) {
		if (s->listen_fd >= 0) {
			struct pollfd p[2] = { { .fd = s->listen_fd, .events = POLLIN },
					       { .fd = s->stop_fd, .events = POLLIN } };

			if (poll(p, 2, -1) < 0 || p[1].revents)
				return NULL;
			s->sock = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (s->sock < 0)
				continue;
		}
		if (vs_serve(s) || s->listen_fd < 0)
			return NULL;
	}
}

void vs_start_fd(struct vu_server *s, int sock)
{
	s->sock = sock;
	cr_assert_eq(pthread_create(&s->thread, NULL, vs_thread, s), 0);
	s->running = true;
}

void vs_start_listen(struct vu_server *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(s->path, sizeof(s->path), "%s.sock", s->img);
	strcpy(sa.sun_path, s->path);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s->listen_fd, 0);
	cr_assert_eq(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(s->listen_fd, 4), 0);
	cr_assert_eq(pthread_create(&s->thread, NULL, vs_thread, s), 0);
	s->running = true;
}

static void vs_stop_thread(struct vu_server *s)
{
	if (!s->running)
		return;
	eventfd_write(s->stop_fd, 1);
	pthread_join(s->thread, NULL);
	s->running = false;
}

void vs_kill(struct vu_server *s)
{
	vs_stop_thread(s);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		s->listen_fd = -1;
		unlink(s->path);
	}
	eventfd_t v;

	eventfd_read(s->stop_fd, &v);
}

void vs_fini(struct vu_server *s)
{
	vs_kill(s);
	vu_blk_close(&s->b);
	close(s->stop_fd);
	unlink(s->img);
}

/* ---- the hostile back-end ---- */

static int ve_reply(struct vu_evil *e, const struct vhost_user_msg *req, uint32_t size,
		    const void *payload)
{
	struct vhost_user_hdr h = { .request = req->hdr.request,
				    .flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
				    .size = size };

	return vhost_user_send(e->sock, &h, payload, NULL, 0, 1000);
}

/* Writes the state (SAVE) into io, or reads it (LOAD) from io, as e->o says; closes io. */
static void ve_transfer(struct vu_evil *e, uint32_t direction, int io)
{
	bool stall = e->o.state == VS_STATE_STALL;
	static uint8_t buf[65536];
	size_t done = 0;

	if (direction == VHOST_USER_TRANSFER_SAVE) {
		size_t total = stall ? e->o.stall_after : e->o.state_len;

		while (done < total) {
			size_t k = MIN(sizeof(buf), total - done);
			ssize_t n;

			for (size_t i = 0; i < k; i++)
				buf[i] = vs_state_byte(done + i);
			n = write(io, buf, k);
			if (n <= 0)
				break;	/* the front-end gave up (EPIPE) */
			done += (size_t)n;
			atomic_store(&e->state_written, done);
		}
	} else {
		bool ok = true;

		for (;;) {
			ssize_t n;

			if (stall && done >= e->o.stall_after)
				break;
			n = read(io, buf, stall ? MIN(sizeof(buf), e->o.stall_after - done)
						: sizeof(buf));
			if (n <= 0)
				break;
			for (ssize_t i = 0; i < n; i++)
				ok &= buf[i] == vs_state_byte(done + (size_t)i);
			done += (size_t)n;
			atomic_store(&e->loaded, done);
		}
		atomic_store(&e->loaded_ok, ok);
	}
	if (stall) {
		/* Silent until the front-end closes its end (POLLERR / POLLHUP), at most 5 s. */
		struct pollfd p = { .fd = io, .events = 0 };

		poll(&p, 1, 5000);
	}
	close(io);
	atomic_store(&e->transfer_done, true);
}

/* SET_DEVICE_STATE_FD with the front-end's fd, as e->o.state says. */
static void ve_state_fd(struct vu_evil *e, const struct vhost_user_msg *m, int fd)
{
	struct vhost_user_hdr h = { .request = m->hdr.request,
				    .flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
				    .size = 8 };
	uint32_t dir = m->p.device_state.direction;
	uint64_t v = VHOST_USER_VRING_NOFD;
	int own[2] = { -1, -1 }, give = -1, io = fd;

	switch (e->o.state) {
	case VS_STATE_REFUSE:
		v = 0x101;
		io = -1;
		break;
	case VS_STATE_SHORT_REPLY:
		h.size = 4;
		io = -1;
		break;
	case VS_STATE_NO_FD:
		v = 0;
		io = -1;
		break;
	case VS_STATE_ERROR_AND_FD:
	case VS_STATE_NOT_A_PIPE:
		v = e->o.state == VS_STATE_ERROR_AND_FD ? 1 : 0;
		give = memfd_create("evil-state", MFD_CLOEXEC);
		io = -1;
		break;
	case VS_STATE_OWN_FD:
		cr_assert_eq(pipe2(own, O_CLOEXEC), 0);
		v = 0;
		give = dir == VHOST_USER_TRANSFER_SAVE ? own[0] : own[1];
		io = dir == VHOST_USER_TRANSFER_SAVE ? own[1] : own[0];
		break;
	default:
		break;
	}
	if (io != fd)
		close(fd);
	vhost_user_send(e->sock, &h, &v, give >= 0 ? &give : NULL, give >= 0, 1000);
	if (give >= 0)
		close(give);
	if (io >= 0)
		ve_transfer(e, dir, io);
}

unsigned int ve_count(struct vu_evil *e, uint32_t req)
{
	unsigned int n = MIN(atomic_load(&e->nreqs), (unsigned int)VE_MAX_REQS), c = 0;

	for (unsigned int i = 0; i < n; i++)
		c += e->reqs[i] == req;
	return c;
}

static void *ve_thread(void *arg)
{
	struct vu_evil *e = arg;
	struct vhost_user_msg m;
	uint32_t held[8];	/* VS_ACKS_AT_ENABLE: the acks not sent yet */
	uint64_t held_v[8];
	unsigned int nheld = 0;

	while (vhost_user_recv(e->sock, &m, 5000) == 0) {
		uint64_t v = 0;
		bool has_reply = true;
		struct vhost_user_hdr h = { .request = m.hdr.request,
					    .flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
					    .size = 8 };
		unsigned int nr = atomic_load(&e->nreqs);
		int state_fd = -1;

		if (nr < VE_MAX_REQS)
			e->reqs[nr] = m.hdr.request;
		atomic_store(&e->nreqs, nr + 1);
		if (m.hdr.request == VHOST_USER_SET_BACKEND_REQ_FD && m.nfds == 1) {
			e->channel = m.fds[0];
			m.fds[0] = -1;
			atomic_store(&e->channel_ready, true);
		}
		if (m.hdr.request == VHOST_USER_SET_DEVICE_STATE_FD && m.nfds == 1) {
			state_fd = m.fds[0];
			m.fds[0] = -1;
		}
		vhost_user_msg_close_fds(&m);
		switch (m.hdr.request) {
		case VHOST_USER_SET_DEVICE_STATE_FD:
			if (state_fd >= 0)
				ve_state_fd(e, &m, state_fd);
			continue;
		case VHOST_USER_CHECK_DEVICE_STATE:
			atomic_fetch_add(&e->checks, 1);
			if (e->o.state == VS_STATE_CHECK_FAILS)
				v = 1;
			if (e->o.state == VS_STATE_BAD_CHECK)
				h.request = VHOST_USER_GET_FEATURES;
			break;
		case VHOST_USER_SET_LOG_BASE: {
			struct vhost_user_log echo = m.p.log;

			atomic_store(&e->log_size, m.p.log.mmap_size);
			if (e->o.log_reply == VS_LOG_ECHO) {
				ve_reply(e, &m, sizeof(echo), &echo);
				continue;
			}
			if (e->o.log_reply == VS_LOG_EMPTY) {
				ve_reply(e, &m, 0, NULL);
				continue;
			}
			if (e->o.log_reply == VS_LOG_ODD_SIZE) {
				ve_reply(e, &m, 12, &echo);
				continue;
			}
			v = e->o.log_reply == VS_LOG_SIZE ? m.p.log.mmap_size :
			    e->o.log_reply == VS_LOG_REFUSED ? 1 : 0;
			break;
		}
		case VHOST_USER_SET_FEATURES:
			atomic_store(&e->features, m.p.u64);
			has_reply = false;
			break;
		case VHOST_USER_SET_VRING_ADDR:
			if (m.p.addr.index < 4)
				atomic_store(&e->addr_flags[m.p.addr.index], m.p.addr.flags);
			has_reply = false;
			if (e->fault == VS_REFUSE_FIRST_ADDR && !atomic_fetch_add(&e->addr_refusals, 1))
				v = 1;
			break;
		case VHOST_USER_SET_VRING_ENABLE:
			for (unsigned int i = 0; i < nheld; i++) {
				struct vhost_user_hdr hh = h;

				hh.request = held[i];
				if (vhost_user_send(e->sock, &hh, &held_v[i], NULL, 0, 1000))
					return NULL;
			}
			nheld = 0;
			has_reply = false;
			break;
		case VHOST_USER_GET_FEATURES:
			if (e->fault == VS_HANGUP)
				return NULL;
			v = (1ULL << 32) | (1ULL << 30) | (1ULL << VIRTIO_RING_F_EVENT_IDX) |
			    e->o.extra_features;
			if (e->fault == VS_NO_VERSION_1)
				v = 1ULL << 30;
			if (e->fault == VS_WRONG_ID)
				h.request = VHOST_USER_SET_FEATURES;
			if (e->fault == VS_WRONG_SIZE)
				h.size = 4;
			if (e->fault == VS_WRONG_FLAGS)
				h.flags = VHOST_USER_VERSION;
			if (e->fault == VS_EXTRA_FD) {
				int fd = memfd_create("evil", MFD_CLOEXEC);

				vhost_user_send(e->sock, &h, &v, &fd, 1, 1000);
				close(fd);
				continue;
			}
			break;
		case VHOST_USER_GET_PROTOCOL_FEATURES:
			if (e->fault == VS_GARBAGE) {
				static const char junk[] = "\x05\x00\x00\x00\xff\xff\xff\xff garbage";

				if (write(e->sock, junk, sizeof(junk)) < 0)
					return NULL;
				continue;
			}
			v = (1ULL << VHOST_USER_PROTOCOL_F_MQ) |
			    (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
			    (1ULL << VHOST_USER_PROTOCOL_F_CONFIG) |
			    (1ULL << VHOST_USER_PROTOCOL_F_BACKEND_REQ) |
			    (1ULL << VHOST_USER_PROTOCOL_F_PAGEFAULT);
			if (e->fault == VS_NO_MQ)
				v &= ~(1ULL << VHOST_USER_PROTOCOL_F_MQ);
			v = (v | e->o.extra_protocol) & ~e->o.drop_protocol;
			break;
		case VHOST_USER_GET_QUEUE_NUM:
			v = e->fault == VS_ZERO_QUEUES ? 0 : e->fault == VS_ONE_QUEUE ? 1 : 2;
			break;
		case VHOST_USER_GET_CONFIG: {
			struct vhost_user_config c = { .offset = m.p.config.offset,
						       .size = m.p.config.size };

			if (e->fault == VS_BAD_CONFIG)
				c.offset++;
			memset(c.payload, 0x5a, sizeof(c.payload));
			ve_reply(e, &m, VHOST_USER_CONFIG_HDR_SIZE + m.p.config.size, &c);
			continue;
		}
		case VHOST_USER_GET_VRING_BASE: {
			struct vhost_user_vring_state st = { .index = m.p.state.index, .num = 7 };

			if (e->fault == VS_BAD_VRING_BASE)
				st.index++;
			ve_reply(e, &m, sizeof(st), &st);
			continue;
		}
		default:
			has_reply = false;
			if (m.hdr.request == VHOST_USER_SET_OWNER && e->fault == VS_REFUSE_OWNER)
				v = 1;
			break;
		}
		if (!has_reply && !(m.hdr.flags & VHOST_USER_FLAG_NEED_REPLY))
			continue;
		/* Held from a ring's SET_VRING_NUM on; in order. */
		if (e->fault == VS_ACKS_AT_ENABLE && !has_reply && nheld < 8 &&
		    (nheld || m.hdr.request == VHOST_USER_SET_VRING_NUM)) {
			held[nheld] = m.hdr.request;
			held_v[nheld++] = v;
			continue;
		}
		if (vhost_user_send(e->sock, &h, &v, NULL, 0, 1000))
			return NULL;
	}
	return NULL;
}

void ve_start_with(struct vu_evil *e, int sock, enum vs_fault fault,
		   const struct vu_evil_opts *o)
{
	signal(SIGPIPE, SIG_IGN);
	memset(e, 0, sizeof(*e));
	e->sock = sock;
	e->fault = fault;
	e->channel = -1;
	if (o)
		e->o = *o;
	cr_assert_eq(pthread_create(&e->thread, NULL, ve_thread, e), 0);
}

void ve_start(struct vu_evil *e, int sock, enum vs_fault fault)
{
	ve_start_with(e, sock, fault, NULL);
}

void ve_join(struct vu_evil *e)
{
	pthread_join(e->thread, NULL);
	close(e->sock);
	if (e->channel >= 0)
		close(e->channel);
	e->channel = -1;
}

/* ---- a device of its own on the back-end library ---- */

static struct vu_toy *to_toy(struct vu_dev *dev)
{
	return container_of(dev, struct vu_toy, dev);
}

static int vt_set_watch(struct vu_dev *dev, int fd, uint32_t events, vu_watch_cb cb, void *data)
{
	struct vu_toy *t = to_toy(dev);

	return watch_set(t->w, ARRAY_SIZE(t->w), fd, events, cb, data);
}

static void vt_remove_watch(struct vu_dev *dev, int fd)
{
	struct vu_toy *t = to_toy(dev);

	watch_remove(t->w, ARRAY_SIZE(t->w), fd);
}

static const struct vu_ops vt_ops = {
	.set_watch = vt_set_watch,
	.remove_watch = vt_remove_watch,
};

static void vt_queue_start(struct vu_dev *dev, unsigned int q)
{
}

/* Held chains stay in flight in the library: a stop abandons them. */
static void vt_queue_stop(struct vu_dev *dev, unsigned int q)
{
}

static void vt_queue_kick(struct vu_dev *dev, unsigned int q)
{
	struct vu_toy *t = to_toy(dev);
	struct virtq_chain c;

	pthread_mutex_lock(&t->lock);
	while (vu_queue_pop(dev, q, &c) == 1) {
		if (t->npopped < ARRAY_SIZE(t->popped))
			t->popped[t->npopped++] = c.head;
		if (t->hold) {
			t->hold--;
			continue;
		}
		for (unsigned int i = c.nout; i < c.nout + c.nin; i++)
			memset(c.iov[i].iov_base, 0xab, c.iov[i].iov_len);
		vu_queue_push(dev, q, &c, c.in_len);
	}
	pthread_mutex_unlock(&t->lock);
	vu_queue_flush(dev, q);
	vu_queue_notify(dev, q);
}

static int vt_state_save(struct vu_dev *dev, uint8_t *buf, size_t len)
{
	struct vu_toy *t = to_toy(dev);
	int n;

	pthread_mutex_lock(&t->lock);
	if (len >= t->part_len)
		memcpy(buf, t->part, t->part_len);
	n = (int)t->part_len;
	pthread_mutex_unlock(&t->lock);
	return n;
}

static int vt_state_load(struct vu_dev *dev, const uint8_t *buf, size_t len)
{
	struct vu_toy *t = to_toy(dev);

	if (len > sizeof(t->loaded))
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	memcpy(t->loaded, buf, len);
	t->loaded_len = len;
	memcpy(t->part, buf, len);	/* its part from now on, as a real device's */
	t->part_len = len;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static const struct vu_iface vt_iface = {
	.queue_start = vt_queue_start,
	.queue_stop = vt_queue_stop,
	.queue_kick = vt_queue_kick,
	.state_save = vt_state_save,
	.state_load = vt_state_load,
};

static void *vt_thread(void *arg)
{
	struct vu_toy *t = arg;

	for (;;) {
		struct pollfd p[2 + ARRAY_SIZE(t->w)];
		struct vs_watch *wp[ARRAY_SIZE(t->w)];
		unsigned int n = 2;
		int r;

		p[0] = (struct pollfd){ .fd = t->sock, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = t->stop_fd, .events = POLLIN };
		for (unsigned int i = 0; i < ARRAY_SIZE(t->w); i++)
			if (t->w[i].on) {
				wp[n - 2] = &t->w[i];
				p[n++] = (struct pollfd){ .fd = t->w[i].fd,
							  .events = (short)t->w[i].events };
			}
		if (poll(p, n, 50) < 0 && errno != EINTR)
			return NULL;
		if (p[1].revents)
			return NULL;
		if (p[0].revents) {
			while ((r = vu_dispatch(&t->dev)) == 0)
				;
			if (r != -EAGAIN)
				return NULL;	/* the front-end closed, or a protocol error */
		}
		for (unsigned int i = 2; i < n; i++)
			if (p[i].revents && wp[i - 2]->on)
				wp[i - 2]->cb(&t->dev, p[i].fd, p[i].revents, wp[i - 2]->data);
	}
}

void vt_start(struct vu_toy *t, int sock, unsigned int nqueues)
{
	struct vu_config cfg = {
		.name = "toy",
		.sock = sock,
		.nqueues = nqueues,
		.max_queue_size = 256,
		.features = 1ULL << 32,
		.iface = &vt_iface,
		.ops = &vt_ops,
	};

	signal(SIGPIPE, SIG_IGN);
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->sock = sock;
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert_geq(t->stop_fd, 0);
	cr_assert_eq(vu_init(&t->dev, &cfg), 0);
	cr_assert_eq(pthread_create(&t->thread, NULL, vt_thread, t), 0);
	t->running = true;
}

void vt_stop(struct vu_toy *t)
{
	if (t->running) {
		eventfd_write(t->stop_fd, 1);
		pthread_join(t->thread, NULL);
		t->running = false;
	}
	vu_fini(&t->dev);
	close(t->sock);
	close(t->stop_fd);
	pthread_mutex_destroy(&t->lock);
}

bool vt_wait_popped(struct vu_toy *t, unsigned int n, int timeout_ms)
{
	for (int i = 0; i <= timeout_ms / 10; i++) {
		unsigned int k;

		pthread_mutex_lock(&t->lock);
		k = t->npopped;
		pthread_mutex_unlock(&t->lock);
		if (k >= n)
			return true;
		usleep(10000);
	}
	return false;
}

struct ve_creator {
	int (*create)(const char *path, void *arg);
	const char *path;
	void *arg;
	int ret;
};

static void *ve_creator_fn(void *p)
{
	struct ve_creator *c = p;

	c->ret = c->create(c->path, c->arg);
	return NULL;
}

int ve_start_listen(struct vu_evil *e, enum vs_fault fault,
		    int (*create)(const char *path, void *arg), void *arg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ve_creator c = { .create = create, .path = sa.sun_path, .arg = arg };
	pthread_t t;
	int listen_fd, fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/vu-evil.%d.sock", getpid());
	unlink(sa.sun_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(listen_fd, 1), 0);
	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(pthread_create(&t, NULL, ve_creator_fn, &c), 0);
	fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(fd, 0);
	ve_start(e, fd, fault);
	pthread_join(t, NULL);
	close(listen_fd);
	unlink(sa.sun_path);
	return c.ret;
}
