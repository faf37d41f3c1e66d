// SPDX-License-Identifier: GPL-2.0-only
/* Test back-ends on threads (see vu_server.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <poll.h>
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

static int vs_set_watch(struct vu_dev *dev, int fd, uint32_t events, vu_watch_cb cb, void *data)
{
	struct vu_server *s = to_server(dev);
	struct vs_watch *free_w = NULL;

	for (unsigned int i = 0; i < ARRAY_SIZE(s->w); i++) {
		if (s->w[i].on && s->w[i].fd == fd) {
			s->w[i] = (struct vs_watch){ fd, events, cb, data, true };
			return 0;
		}
		if (!s->w[i].on && !free_w)
			free_w = &s->w[i];
	}
	if (!free_w)
		return -ENOSPC;
	*free_w = (struct vs_watch){ fd, events, cb, data, true };
	return 0;
}

static void vs_remove_watch(struct vu_dev *dev, int fd)
{
	struct vu_server *s = to_server(dev);

	for (unsigned int i = 0; i < ARRAY_SIZE(s->w); i++)
		if (s->w[i].on && s->w[i].fd == fd)
			s->w[i].on = false;
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

static void *ve_thread(void *arg)
{
	struct vu_evil *e = arg;
	struct vhost_user_msg m;

	while (vhost_user_recv(e->sock, &m, 5000) == 0) {
		uint64_t v = 0;
		bool has_reply = true;
		struct vhost_user_hdr h = { .request = m.hdr.request,
					    .flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
					    .size = 8 };

		if (m.hdr.request == VHOST_USER_SET_BACKEND_REQ_FD && m.nfds == 1) {
			e->channel = m.fds[0];
			m.fds[0] = -1;
			atomic_store(&e->channel_ready, true);
		}
		vhost_user_msg_close_fds(&m);
		switch (m.hdr.request) {
		case VHOST_USER_GET_FEATURES:
			if (e->fault == VS_HANGUP)
				return NULL;
			v = (1ULL << 32) | (1ULL << 30) | (1ULL << VIRTIO_RING_F_EVENT_IDX);
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
		if (vhost_user_send(e->sock, &h, &v, NULL, 0, 1000))
			return NULL;
	}
	return NULL;
}

void ve_start(struct vu_evil *e, int sock, enum vs_fault fault)
{
	signal(SIGPIPE, SIG_IGN);
	e->sock = sock;
	e->fault = fault;
	e->channel = -1;
	atomic_store(&e->channel_ready, false);
	cr_assert_eq(pthread_create(&e->thread, NULL, ve_thread, e), 0);
}

void ve_join(struct vu_evil *e)
{
	pthread_join(e->thread, NULL);
	close(e->sock);
	if (e->channel >= 0)
		close(e->channel);
	e->channel = -1;
}
