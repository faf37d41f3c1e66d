// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vhost-user wire format and back-end library, driven over a socketpair
 * by the test front-end (vu_front.h) with a test device that answers each
 * chain by filling its writable bytes with 0xab (or keeps chains in flight).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/stderr_capture.h"
#include "tests/unit/vu_front.h"
#include "vmm/base/util.h"

#define RING_AREA	(VF_GPA + 0x1000)
#define BUF_AREA	(VF_GPA + 0x100000)

struct tdev {
	struct vu_dev dev;
	bool hold;			/* keep popped chains in flight */
	struct virtq_chain held[8];
	unsigned int nheld;
	uint16_t popped[32];		/* heads in pop order */
	unsigned int npopped;
	unsigned int starts, stops;
	int state_part;			/* the device's part of the state */
	int loaded_part;
};

static struct tdev td;
static struct virtq_chain chain;

static void t_start(struct vu_dev *dev, unsigned int q)
{
	td.starts++;
}

static void t_stop(struct vu_dev *dev, unsigned int q)
{
	td.stops++;
	td.nheld = 0;	/* abandoned: they stay in flight in the library */
}

static void t_kick(struct vu_dev *dev, unsigned int q)
{
	while (vu_queue_pop(dev, q, &chain) == 1) {
		if (td.npopped < 32)
			td.popped[td.npopped++] = chain.head;
		if (td.hold && td.nheld < 8) {
			td.held[td.nheld++] = chain;
			continue;
		}
		for (unsigned int i = chain.nout; i < chain.nout + chain.nin; i++)
			memset(chain.iov[i].iov_base, 0xab, chain.iov[i].iov_len);
		vu_queue_push(dev, q, &chain, chain.in_len);
	}
	vu_queue_flush(dev, q);
	vu_queue_notify(dev, q);
}

static int t_get_config(struct vu_dev *dev, uint8_t *buf, uint32_t off, uint32_t len)
{
	if (off + len > 16)
		return -EINVAL;
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(off + i);
	return 0;
}

static int t_save(struct vu_dev *dev, uint8_t *buf, size_t len)
{
	if (len >= 4)
		memcpy(buf, &td.state_part, 4);
	return 4;
}

static int t_load(struct vu_dev *dev, const uint8_t *buf, size_t len)
{
	if (len != 4)
		return -EINVAL;
	memcpy(&td.loaded_part, buf, 4);
	return 0;
}

static const struct vu_iface t_iface = {
	.get_config = t_get_config,
	.queue_start = t_start,
	.queue_stop = t_stop,
	.queue_kick = t_kick,
	.state_save = t_save,
	.state_load = t_load,
};

static struct vu_front f;
static int fds_before;

static void dev_up(struct vu_front *fr, struct vu_dev *dev, unsigned int nq)
{
	struct vu_config cfg = {
		.name = "test",
		.sock = fr->be,
		.nqueues = nq,
		.max_queue_size = 256,
		.features = 1ULL << VIRTIO_F_VERSION_1,
		.iface = &t_iface,
		.ops = &vf_ops,
	};

	cr_assert_eq(vu_init(dev, &cfg), 0);
	fr->dev = dev;
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	fds_before = vf_count_fds();
	memset(&td, 0, sizeof(td));
	vf_init(&f);
	dev_up(&f, &td.dev, 2);
}

static void teardown(void)
{
	vu_fini(&td.dev);
	vf_fini(&f);
}

/* Every fd the test and the library opened is closed again. */
static void assert_no_fd_leak(struct vf_ring *r, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		close(r[i].kick);
		close(r[i].call);
		close(r[i].err);
		r[i].kick = r[i].call = r[i].err = -1;
	}
	vu_fini(&td.dev);
	vf_fini(&f);
	cr_assert_eq(vf_count_fds(), fds_before, "fds leaked: %d before, %d after", fds_before,
		     vf_count_fds());
	/* teardown() runs again on closed fds: harmless, but keep it from double-closing ours. */
	vf_init(&f);
	dev_up(&f, &td.dev, 2);
}

static const uint64_t all_protocol = ~0ULL;

TestSuite(vu_backend, .init = setup, .fini = teardown);

Test(vu_backend, wire_send_recv_fds_and_reply_checks)
{
	struct vhost_user_msg m, r;
	int efd = eventfd(0, EFD_CLOEXEC), before = vf_count_fds();
	uint64_t v = 3;

	vhost_user_msg_init(&m, VHOST_USER_SET_VRING_CALL, 0, 8);
	m.p.u64 = v;
	m.fds[0] = efd;
	m.nfds = 1;
	cr_assert_eq(vhost_user_send_msg(f.fe, &m, 1000), 0);
	cr_assert_eq(vhost_user_recv(f.be, &r, 1000), 0);
	cr_assert_eq(r.hdr.request, VHOST_USER_SET_VRING_CALL);
	cr_assert_eq(r.p.u64, 3);
	cr_assert_eq(r.nfds, 1);
	cr_assert_neq(r.fds[0], efd);
	vhost_user_msg_close_fds(&r);
	cr_assert_eq(vf_count_fds(), before);
	close(efd);

	/* Reply checks: exact flags, the same request, the expected size. */
	r.hdr = (struct vhost_user_hdr){ VHOST_USER_GET_FEATURES, 0x5, 8 };
	r.nfds = 0;
	cr_assert_eq(vhost_user_check_reply(&r, VHOST_USER_GET_FEATURES, 8, 0), 0);
	r.hdr.flags = 0x1;
	cr_assert_eq(vhost_user_check_reply(&r, VHOST_USER_GET_FEATURES, 8, 0), -EPROTO);
	r.hdr.flags = 0xd;
	cr_assert_eq(vhost_user_check_reply(&r, VHOST_USER_GET_FEATURES, 8, 0), -EPROTO);
	r.hdr.flags = 0x5;
	cr_assert_eq(vhost_user_check_reply(&r, VHOST_USER_GET_PROTOCOL_FEATURES, 8, 0), -EPROTO);
	cr_assert_eq(vhost_user_check_reply(&r, VHOST_USER_GET_FEATURES, 0, 0), -EPROTO);
	r.nfds = 1;
	cr_assert_eq(vhost_user_check_reply(&r, VHOST_USER_GET_FEATURES, 8, 0), -EPROTO);
}

Test(vu_backend, wire_recv_rejects_bad_frames_and_closes_fds)
{
	struct vhost_user_hdr h = { VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 4096 };
	struct vhost_user_msg r;
	int efd = eventfd(0, EFD_CLOEXEC), before;
	int many[12];

	/* Oversized payload: refused before it is read, its fd closed. */
	before = vf_count_fds();
	cr_assert_eq(write(f.fe, &h, sizeof(h)), (ssize_t)sizeof(h));
	cr_assert_eq(vhost_user_recv(f.be, &r, 1000), -EMSGSIZE);

	/* Wrong version bits. */
	h = (struct vhost_user_hdr){ VHOST_USER_GET_FEATURES, 0x2, 0 };
	cr_assert_eq(vhost_user_send(f.fe, &h, NULL, &efd, 1, 1000), 0);
	cr_assert_eq(vhost_user_recv(f.be, &r, 1000), -EPROTO);
	cr_assert_eq(vf_count_fds(), before);

	/* More fds than a message may carry: all of them closed. */
	for (int i = 0; i < 12; i++)
		many[i] = efd;
	{
		char ctl[CMSG_SPACE(sizeof(many))];
		struct iovec iov = { &h, sizeof(h) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				     .msg_controllen = sizeof(ctl) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		h = (struct vhost_user_hdr){ VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0 };
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(many));
		memcpy(CMSG_DATA(c), many, sizeof(many));
		cr_assert_eq(sendmsg(f.fe, &mh, 0), (ssize_t)sizeof(h));
	}
	cr_assert_eq(vhost_user_recv(f.be, &r, 1000), -E2BIG);
	cr_assert_eq(vf_count_fds(), before);

	/* EOF in the middle of a payload. */
	{
		char ctl[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { &h, sizeof(h) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				     .msg_controllen = sizeof(ctl) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		h = (struct vhost_user_hdr){ VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 8 };
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &efd, sizeof(int));
		cr_assert_eq(sendmsg(f.fe, &mh, 0), (ssize_t)sizeof(h));
	}
	shutdown(f.fe, SHUT_WR);
	cr_assert_eq(vhost_user_recv(f.be, &r, 1000), -EPROTO);
	cr_assert_eq(vf_count_fds(), before);
	cr_assert_eq(vhost_user_recv(f.be, &r, 1000), -ECONNRESET);
	close(efd);
}

Test(vu_backend, negotiation)
{
	struct vhost_user_msg m;
	uint64_t bad = 1ULL << 60, p;

	cr_assert_eq(vf_call(&f, VHOST_USER_GET_FEATURES, 0, NULL, 0, NULL, 0, &m), 0);
	cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_GET_FEATURES, 8, 0), 0);
	cr_assert(m.p.u64 & (1ULL << VHOST_USER_F_PROTOCOL_FEATURES));
	cr_assert(m.p.u64 & (1ULL << VIRTIO_RING_F_EVENT_IDX));
	cr_assert(m.p.u64 & (1ULL << VHOST_USER_F_LOG_ALL));
	cr_assert(m.p.u64 & (1ULL << VIRTIO_F_VERSION_1));
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_PROTOCOL_FEATURES, 0, NULL, 0, NULL, 0, &m), 0);
	p = m.p.u64;
	for (unsigned int b = 0; b < 20; b++) {
		bool want = b == VHOST_USER_PROTOCOL_F_MQ || b == VHOST_USER_PROTOCOL_F_LOG_SHMFD ||
			    b == VHOST_USER_PROTOCOL_F_REPLY_ACK ||
			    b == VHOST_USER_PROTOCOL_F_BACKEND_REQ ||
			    b == VHOST_USER_PROTOCOL_F_CONFIG ||
			    b == VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD ||
			    b == VHOST_USER_PROTOCOL_F_RESET_DEVICE ||
			    b == VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS ||
			    b == VHOST_USER_PROTOCOL_F_DEVICE_STATE;

		cr_assert_eq(!!(p & (1ULL << b)), want, "protocol feature %u", b);
	}
	vf_send(&f, VHOST_USER_SET_PROTOCOL_FEATURES, 0, &p, 8, NULL, 0);
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_QUEUE_NUM, 0, NULL, 0, NULL, 0, &m), 0);
	cr_assert_eq(m.p.u64, 2);
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_MAX_MEM_SLOTS, 0, NULL, 0, NULL, 0, &m), 0);
	cr_assert_eq(m.p.u64, VU_MAX_MEM_SLOTS);

	/* A feature never offered: refused with an ack, the device keeps going. */
	cr_assert_eq(vf_call(&f, VHOST_USER_SET_FEATURES, VHOST_USER_FLAG_NEED_REPLY, &bad, 8,
			     NULL, 0, &m), 0);
	cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_SET_FEATURES, 8, 0), 0);
	cr_assert_eq(m.p.u64, 1);
	cr_assert_not(vu_broken(&td.dev));

	/* GET_CONFIG: the device's bytes; out of range: an empty reply. */
	{
		struct vhost_user_config c = { .offset = 4, .size = 8 };

		cr_assert_eq(vf_call(&f, VHOST_USER_GET_CONFIG, 0, &c, 12 + 8, NULL, 0, &m), 0);
		cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_GET_CONFIG, 20, 0), 0);
		cr_assert_eq(m.p.config.payload[0], 4);
		cr_assert_eq(m.p.config.payload[7], 11);
		c.offset = 12;
		cr_assert_eq(vf_call(&f, VHOST_USER_GET_CONFIG, 0, &c, 12 + 8, NULL, 0, &m), 0);
		cr_assert_eq(m.hdr.size, 0);
	}
	cr_assert_not(vu_broken(&td.dev));
}

Test(vu_backend, read_and_write_request_end_to_end)
{
	struct vf_ring r;
	struct vf_buf b[2] = { { BUF_AREA, 5, false }, { BUF_AREA + 0x2ff0, 0x20, true } };
	uint32_t id, len;
	eventfd_t v;
	uint8_t *in;

	vf_negotiate(&f, 0, all_protocol);
	vf_ring_setup(&f, &r, 0, 16, RING_AREA, 0);
	cr_assert_eq(td.starts, 1);
	memcpy(vf_ptr(&f, BUF_AREA), "hello", 5);
	/* The writable buffer crosses a page: both parts are written. */
	cr_assert_eq(vf_add(&f, &r, b, 2), 0);
	cr_assert(vf_used(&f, &r, &id, &len, 1000));
	cr_assert_eq(id, 0);
	cr_assert_eq(len, 0x20);
	in = vf_ptr(&f, BUF_AREA + 0x2ff0);
	for (int i = 0; i < 0x20; i++)
		cr_assert_eq(in[i], 0xab);
	cr_assert_eq(eventfd_read(r.call, &v), 0, "the call fd was not signalled");

	/* GET_VRING_BASE stops the ring and returns the next avail index. */
	{
		struct vhost_user_vring_state st = { 0, 0 };
		struct vhost_user_msg m;

		cr_assert_eq(vf_call(&f, VHOST_USER_GET_VRING_BASE, 0, &st, 8, NULL, 0, &m), 0);
		cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_GET_VRING_BASE, 8, 0), 0);
		cr_assert_eq(m.p.state.num, 1);
		cr_assert_eq(td.stops, 1);
	}
	assert_no_fd_leak(&r, 1);
}

Test(vu_backend, a_call_fd_after_the_kick_does_not_restart_the_ring)
{
	struct vf_ring r;
	struct vf_buf b[2] = { { BUF_AREA, 5, false }, { BUF_AREA + 0x100, 0x20, true } };
	uint64_t v = 0;
	uint32_t id, len;
	eventfd_t got;
	int call2, call3;

	vf_negotiate(&f, 0, all_protocol);
	vf_ring_setup(&f, &r, 0, 16, RING_AREA, 0);
	cr_assert_eq(td.starts, 1);
	/* QEMU's order: the kick fd started the ring, the call fd comes after. */
	call2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vf_send(&f, VHOST_USER_SET_VRING_CALL, 0, &v, 8, &call2, 1);
	cr_assert_eq(vf_add(&f, &r, b, 2), 0);
	cr_assert(vf_used(&f, &r, &id, &len, 1000));
	cr_assert_eq(td.starts, 1, "the ring was restarted for a call fd");
	cr_assert_eq(td.stops, 0);
	cr_assert_eq(eventfd_read(call2, &got), 0, "the new call fd was not signalled");
	cr_assert_neq(eventfd_read(r.call, &got), 0, "the old call fd was signalled");
	/* A second one while the first replaced fd may still be in use: a stop and a start. */
	call3 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vf_send(&f, VHOST_USER_SET_VRING_CALL, 0, &v, 8, &call3, 1);
	/* used_event: the driver wants an interrupt for the next one (EVENT_IDX). */
	((struct vring_avail *)vf_ptr(&f, r.avail))->ring[r.num] = 1;
	cr_assert_eq(vf_add(&f, &r, b, 2), 2);
	cr_assert(vf_used(&f, &r, &id, &len, 1000));
	cr_assert_eq(td.stops, 1);
	cr_assert_eq(td.starts, 2);
	cr_assert_eq(eventfd_read(call3, &got), 0, "the newest call fd was not signalled");
	close(call2);
	close(call3);
	assert_no_fd_leak(&r, 1);
}

Test(vu_backend, reply_ack_and_enable_rules)
{
	struct vhost_user_msg m;
	struct vhost_user_vring_state st = { 1, 1 };

	vf_negotiate(&f, 0, all_protocol);
	cr_assert_eq(vf_call(&f, VHOST_USER_SET_VRING_ENABLE, VHOST_USER_FLAG_NEED_REPLY, &st, 8,
			     NULL, 0, &m), 0);
	cr_assert_eq(m.p.u64, 0);
	cr_assert(vu_queue_enabled(&td.dev, 1));
	st.num = 2;
	cr_assert_eq(vf_call(&f, VHOST_USER_SET_VRING_ENABLE, VHOST_USER_FLAG_NEED_REPLY, &st, 8,
			     NULL, 0, &m), 0);
	cr_assert_eq(m.p.u64, 1);
	st = (struct vhost_user_vring_state){ 0, 3 };	/* not a power of two */
	cr_assert_eq(vf_call(&f, VHOST_USER_SET_VRING_NUM, VHOST_USER_FLAG_NEED_REPLY, &st, 8,
			     NULL, 0, &m), 0);
	cr_assert_eq(m.p.u64, 1);
	cr_assert_not(vu_broken(&td.dev));
}

Test(vu_backend, enable_needs_protocol_features)
{
	struct vhost_user_msg m;
	struct vhost_user_vring_state st = { 0, 1 };
	uint64_t feat = 1ULL << VIRTIO_F_VERSION_1;

	vf_send(&f, VHOST_USER_SET_FEATURES, 0, &feat, 8, NULL, 0);
	/* Without PROTOCOL_FEATURES every ring is enabled and SET_VRING_ENABLE is refused. */
	cr_assert(vu_queue_enabled(&td.dev, 0));
	cr_assert(vu_queue_enabled(&td.dev, 1));
	cr_assert_eq(vf_call(&f, VHOST_USER_SET_VRING_ENABLE, VHOST_USER_FLAG_NEED_REPLY, &st, 8,
			     NULL, 0, &m), 0);
	cr_assert_eq(m.p.u64, 1);
}

/* Each bad message in a fresh device: broken, nothing leaked. */
static void expect_broken(uint32_t req, const void *payload, uint32_t size, const int *fds,
			  unsigned int nfds)
{
	struct vf_ring none[1] = { { .kick = -1, .call = -1, .err = -1 } };

	vf_negotiate(&f, 0, all_protocol);
	cr_assert_eq(vf_send(&f, req, 0, payload, size, fds, nfds), -EIO, "%s not refused",
		     vhost_user_request_name(req));
	for (unsigned int i = 0; i < nfds; i++)
		close(fds[i]);
	cr_assert(vu_broken(&td.dev));
	cr_assert_eq(vu_dispatch(&td.dev), -EIO, "broken is sticky");
	assert_no_fd_leak(none, 0);
}

Test(vu_backend, bad_size_is_broken)
{
	uint64_t v = 0;

	expect_broken(VHOST_USER_SET_FEATURES, &v, 4, NULL, 0);
}

Test(vu_backend, bad_fd_count_is_broken)
{
	struct vhost_user_mem_table t = { .nregions = 2 };
	int memfd = memfd_create("x", MFD_CLOEXEC);

	t.regions[0] = (struct vhost_user_mem_region){ VF_GPA, 4096, VF_QVA, 0 };
	t.regions[1] = (struct vhost_user_mem_region){ 0, 4096, 0x1000, 0 };
	cr_assert_eq(ftruncate(memfd, 8192), 0);
	expect_broken(VHOST_USER_SET_MEM_TABLE, &t, 8 + 64, &memfd, 1);
}

Test(vu_backend, fd_where_none_belongs_is_broken)
{
	int efd = eventfd(0, EFD_CLOEXEC);

	expect_broken(VHOST_USER_GET_QUEUE_NUM, NULL, 0, &efd, 1);
}

Test(vu_backend, bad_queue_index_is_broken)
{
	struct vhost_user_vring_state st = { 200, 16 };

	expect_broken(VHOST_USER_SET_VRING_NUM, &st, 8, NULL, 0);
}

Test(vu_backend, kick_for_bad_index_is_broken)
{
	uint64_t v = 7;
	int efd = eventfd(0, EFD_CLOEXEC);

	expect_broken(VHOST_USER_SET_VRING_KICK, &v, 8, &efd, 1);
}

Test(vu_backend, ring_outside_memory_is_broken)
{
	struct vhost_user_vring_addr a = { .index = 0, .desc = 0x1000, .avail = VF_QVA,
					   .used = VF_QVA + 0x1000 };

	expect_broken(VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
}

Test(vu_backend, unknown_request_is_broken)
{
	expect_broken(99, NULL, 0, NULL, 0);
}

Test(vu_backend, region_larger_than_its_fd_is_refused)
{
	struct vhost_user_mem_table t = { .nregions = 1 };
	struct vhost_user_msg m;
	int small = memfd_create("small", MFD_CLOEXEC), before = vf_count_fds();

	cr_assert_eq(ftruncate(small, 4096), 0);
	vf_negotiate(&f, 0, all_protocol);
	t.regions[0] = (struct vhost_user_mem_region){ VF_GPA, 1 << 20, VF_QVA, 0 };
	cr_assert_eq(vf_call(&f, VHOST_USER_SET_MEM_TABLE, VHOST_USER_FLAG_NEED_REPLY, &t, 40,
			     &small, 1, &m), 0);
	cr_assert_eq(m.p.u64, 1);
	cr_assert_not(vu_broken(&td.dev));
	cr_assert_eq(td.dev.nregions, 0);
	cr_assert_eq(vf_count_fds(), before);
	close(small);
}

Test(vu_backend, add_and_remove_regions)
{
	struct vhost_user_mem_single s = { 0 };
	struct vhost_user_msg m;
	struct vf_ring r;
	uint32_t id, len;

	vf_negotiate(&f, 0, all_protocol);
	/* Replace the single region by two halves added one by one. */
	s.region = (struct vhost_user_mem_region){ VF_GPA, VF_MEM_SIZE, VF_QVA, 0 };
	cr_assert_eq(vf_call(&f, VHOST_USER_REM_MEM_REG, VHOST_USER_FLAG_NEED_REPLY, &s,
			     sizeof(s), NULL, 0, &m), 0);
	cr_assert_eq(m.p.u64, 0);
	cr_assert_eq(td.dev.nregions, 0);
	s.region = (struct vhost_user_mem_region){ VF_GPA, VF_MEM_SIZE / 2, VF_QVA, 0 };
	cr_assert_eq(vf_call(&f, VHOST_USER_ADD_MEM_REG, VHOST_USER_FLAG_NEED_REPLY, &s,
			     sizeof(s), &f.memfd, 1, &m), 0);
	cr_assert_eq(m.p.u64, 0);
	s.region = (struct vhost_user_mem_region){ VF_GPA + VF_MEM_SIZE / 2, VF_MEM_SIZE / 2,
						   VF_QVA + VF_MEM_SIZE / 2, VF_MEM_SIZE / 2 };
	cr_assert_eq(vf_call(&f, VHOST_USER_ADD_MEM_REG, VHOST_USER_FLAG_NEED_REPLY, &s,
			     sizeof(s), &f.memfd, 1, &m), 0);
	cr_assert_eq(m.p.u64, 0);
	/* Overlapping: refused. */
	cr_assert_eq(vf_call(&f, VHOST_USER_ADD_MEM_REG, VHOST_USER_FLAG_NEED_REPLY, &s,
			     sizeof(s), &f.memfd, 1, &m), 0);
	cr_assert_eq(m.p.u64, 1);
	cr_assert_eq(td.dev.nregions, 2);

	/* A buffer spanning both regions works (two segments). */
	vf_ring_setup(&f, &r, 0, 16, RING_AREA, 0);
	{
		struct vf_buf b = { VF_GPA + VF_MEM_SIZE / 2 - 8, 16, true };

		vf_add(&f, &r, &b, 1);
		cr_assert(vf_used(&f, &r, &id, &len, 1000));
		cr_assert_eq(len, 16);
		cr_assert_eq(*(uint8_t *)vf_ptr(&f, VF_GPA + VF_MEM_SIZE / 2 + 7), 0xab);
	}
	assert_no_fd_leak(&r, 1);
}

Test(vu_backend, descriptor_outside_memory_breaks_the_queue_only)
{
	struct vf_ring r;
	struct vf_buf b = { VF_GPA + VF_MEM_SIZE - 4, 64, true };
	uint32_t id, len;
	eventfd_t v;

	vf_negotiate(&f, 0, all_protocol);
	vf_ring_setup(&f, &r, 0, 16, RING_AREA, 0);
	vf_add(&f, &r, &b, 1);
	cr_assert_not(vf_used(&f, &r, &id, &len, 100));
	cr_assert_eq(eventfd_read(r.err, &v), 0, "the err fd was not signalled");
	cr_assert_not(vu_broken(&td.dev));
	assert_no_fd_leak(&r, 1);
}

Test(vu_backend, indirect_and_event_idx)
{
	struct vf_ring r;
	struct vring_desc *table;
	struct vring_desc *d;
	struct vring_avail *a;
	uint32_t id, len;
	eventfd_t v;

	vf_negotiate(&f, 0, all_protocol);
	vf_ring_setup(&f, &r, 0, 16, RING_AREA, 0);
	/* One indirect descriptor with a table of two: readable then writable. */
	table = vf_ptr(&f, BUF_AREA);
	table[0] = (struct vring_desc){ BUF_AREA + 0x1000, 4, VRING_DESC_F_NEXT, 1 };
	table[1] = (struct vring_desc){ BUF_AREA + 0x2000, 8, VRING_DESC_F_WRITE, 0 };
	d = vf_ptr(&f, r.desc);
	d[0] = (struct vring_desc){ BUF_AREA, 32, VRING_DESC_F_INDIRECT, 0 };
	a = vf_ptr(&f, r.avail);
	a->ring[0] = 0;
	__atomic_store_n(&a->idx, 1, __ATOMIC_RELEASE);
	r.avail_idx = 1;
	r.next_desc = 1;
	eventfd_write(r.kick, 1);
	cr_assert(vf_used(&f, &r, &id, &len, 1000));
	cr_assert_eq(len, 8);
	cr_assert_eq(*(uint8_t *)vf_ptr(&f, BUF_AREA + 0x2007), 0xab);
	/* The first completion after a start always interrupts. */
	cr_assert_eq(eventfd_read(r.call, &v), 0);
	/* EVENT_IDX: used_event = 5, so the second completion does not interrupt... */
	a->ring[16] = 5;
	{
		struct vf_buf b = { BUF_AREA + 0x3000, 4, true };

		vf_add(&f, &r, &b, 1);
		cr_assert(vf_used(&f, &r, &id, &len, 1000));
		cr_assert_neq(eventfd_read(r.call, &v), 0, "interrupted although used_event said no");
		/* ...and with used_event = 2 the third does. */
		a->ring[16] = 2;
		vf_add(&f, &r, &b, 1);
		cr_assert(vf_used(&f, &r, &id, &len, 1000));
		cr_assert_eq(eventfd_read(r.call, &v), 0, "no interrupt at used_event");
	}
	assert_no_fd_leak(&r, 1);
}

Test(vu_backend, dirty_log)
{
	int logfd = memfd_create("log", MFD_CLOEXEC);
	struct vhost_user_log lg = { .mmap_size = 4096, .mmap_offset = 0 };
	struct vhost_user_msg m;
	struct vf_ring r;
	struct vf_buf b = { BUF_AREA + 0x5000, 16, true };
	uint64_t feat;
	uint32_t id, len;
	uint8_t *log;

	cr_assert_eq(ftruncate(logfd, 4096), 0);
	log = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, logfd, 0);
	vf_negotiate(&f, 1ULL << VHOST_USER_F_LOG_ALL, all_protocol);
	cr_assert_eq(vf_call(&f, VHOST_USER_SET_LOG_BASE, 0, &lg, sizeof(lg), &logfd, 1, &m), 0);
	cr_assert_eq(m.hdr.request, VHOST_USER_SET_LOG_BASE);
	close(logfd);
	vf_ring_layout(&r, 0, 16, RING_AREA);
	memset(vf_ptr(&f, RING_AREA), 0, 0x1000);
	{
		struct vhost_user_vring_state st = { 0, 16 };
		struct vhost_user_vring_addr a = {
			.index = 0, .flags = 1,
			.desc = VF_QVA + (r.desc - VF_GPA), .avail = VF_QVA + (r.avail - VF_GPA),
			.used = VF_QVA + (r.used - VF_GPA), .log = r.used,
		};
		uint64_t v = 0;

		r.kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		r.call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		r.err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		vf_send(&f, VHOST_USER_SET_VRING_NUM, 0, &st, 8, NULL, 0);
		vf_send(&f, VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
		vf_send(&f, VHOST_USER_SET_VRING_CALL, 0, &v, 8, &r.call, 1);
		vf_send(&f, VHOST_USER_SET_VRING_KICK, 0, &v, 8, &r.kick, 1);
	}
	feat = td.dev.features;
	cr_assert(feat & (1ULL << VHOST_USER_F_LOG_ALL));
	vf_add(&f, &r, &b, 1);
	cr_assert(vf_used(&f, &r, &id, &len, 1000));
	{
		uint64_t page = (BUF_AREA + 0x5000) / 4096, used_page = r.used / 4096;
		uint64_t other = (BUF_AREA + 0x9000) / 4096;

		cr_assert(log[page / 8] & (1u << (page % 8)), "the written buffer's page is not dirty");
		cr_assert(log[used_page / 8] & (1u << (used_page % 8)), "the used ring is not dirty");
		cr_assert_not(log[other / 8] & (1u << (other % 8)), "an untouched page is dirty");
	}
	munmap(log, 4096);
	assert_no_fd_leak(&r, 1);
}

Test(vu_backend, backend_channel_config_change)
{
	int sv[2];
	struct vhost_user_msg m;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vu_config_changed(&td.dev), -ENOTCONN);
	vf_negotiate(&f, 0, all_protocol);
	vf_send(&f, VHOST_USER_SET_BACKEND_REQ_FD, 0, NULL, 0, &sv[1], 1);
	close(sv[1]);
	cr_assert_eq(vu_config_changed(&td.dev), 0);
	cr_assert_eq(vhost_user_recv(sv[0], &m, 1000), 0);
	cr_assert_eq(m.hdr.request, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG);
	cr_assert_eq(m.hdr.flags, VHOST_USER_VERSION);
	close(sv[0]);
}

/* Sends SET_DEVICE_STATE_FD(direction) with one end of a pipe; returns the other end. */
static int state_fd(struct vu_front *fr, uint32_t direction, uint64_t *reply)
{
	struct vhost_user_device_state ds = { direction, VHOST_USER_PHASE_STOPPED };
	struct vhost_user_msg m;
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(vf_call(fr, VHOST_USER_SET_DEVICE_STATE_FD, 0, &ds, sizeof(ds),
			     &p[direction == VHOST_USER_TRANSFER_SAVE ? 1 : 0], 1, &m), 0);
	cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_SET_DEVICE_STATE_FD, 8, 0), 0);
	*reply = m.p.u64;
	close(p[direction == VHOST_USER_TRANSFER_SAVE ? 1 : 0]);
	return p[direction == VHOST_USER_TRANSFER_SAVE ? 0 : 1];
}

static uint64_t check_state(struct vu_front *fr)
{
	struct vhost_user_msg m;

	cr_assert_eq(vf_call(fr, VHOST_USER_CHECK_DEVICE_STATE, 0, NULL, 0, NULL, 0, &m), 0);
	cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_CHECK_DEVICE_STATE, 8, 0), 0);
	return m.p.u64;
}

Test(vu_backend, device_state_save_load_resubmits_in_flight)
{
	struct vf_ring r;
	struct vf_buf b = { BUF_AREA, 8, true };
	struct vhost_user_vring_state st = { 0, 0 };
	struct vhost_user_msg m;
	uint8_t state[65536];
	size_t n = 0;
	uint64_t rep;
	uint32_t id, len;
	int rd, wr;

	vf_negotiate(&f, 0, all_protocol);
	vf_ring_setup(&f, &r, 0, 16, RING_AREA, 0);
	/* Three requests: the device finishes the first, keeps two in flight. */
	vf_add(&f, &r, &b, 1);
	cr_assert(vf_used(&f, &r, &id, &len, 1000));
	td.hold = true;
	b.gpa = BUF_AREA + 0x100;
	vf_add(&f, &r, &b, 1);
	b.gpa = BUF_AREA + 0x200;
	vf_add(&f, &r, &b, 1);
	vf_pump(&f);
	cr_assert_eq(td.nheld, 2);
	cr_assert_eq(td.popped[1], 1);
	cr_assert_eq(td.popped[2], 2);

	/* Refused while the ring runs. */
	rd = state_fd(&f, VHOST_USER_TRANSFER_SAVE, &rep);
	cr_assert_eq(rep, 0x101);
	close(rd);
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_VRING_BASE, 0, &st, 8, NULL, 0, &m), 0);
	cr_assert_eq(m.p.state.num, 3);

	td.state_part = 0x1234;
	rd = state_fd(&f, VHOST_USER_TRANSFER_SAVE, &rep);
	cr_assert_eq(rep, VHOST_USER_VRING_NOFD, "success with the invalid-FD flag");
	for (int i = 0; i < 1000; i++) {
		ssize_t k;

		vf_pump(&f);
		k = read(rd, state + n, sizeof(state) - n);
		if (k == 0)
			break;
		if (k > 0)
			n += (size_t)k;
	}
	close(rd);
	cr_assert_gt(n, 16);
	cr_assert_eq(check_state(&f), 0);

	/* A fresh back-end (a migration destination) on the same guest memory. */
	vu_fini(&td.dev);
	{
		struct vu_front g;
		struct vf_ring r2;
		uint8_t bad[16] = "VMMVUST1 broken";

		vf_init(&g);
		munmap(g.mem, VF_MEM_SIZE);
		close(g.memfd);
		g.memfd = dup(f.memfd);
		g.mem = mmap(NULL, VF_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g.memfd, 0);
		memset(&td, 0, sizeof(td));
		dev_up(&g, &td.dev, 2);
		vf_negotiate(&g, 0, all_protocol);

		/* A damaged stream fails CHECK and changes nothing. */
		wr = state_fd(&g, VHOST_USER_TRANSFER_LOAD, &rep);
		cr_assert_eq(rep, VHOST_USER_VRING_NOFD);
		cr_assert_eq(write(wr, bad, sizeof(bad)), (ssize_t)sizeof(bad));
		close(wr);
		cr_assert_eq(check_state(&g), 1);

		wr = state_fd(&g, VHOST_USER_TRANSFER_LOAD, &rep);
		/* Written in odd chunks: any chunking must do. */
		for (size_t off = 0; off < n; off += 7) {
			cr_assert_eq(write(wr, state + off, MIN((size_t)7, n - off)),
				     (ssize_t)MIN((size_t)7, n - off));
			vf_pump(&g);
		}
		close(wr);
		cr_assert_eq(check_state(&g), 0);
		cr_assert_eq(td.loaded_part, 0x1234);

		/* The destination's front-end starts the ring at the source's position. */
		vf_ring_layout(&r2, 0, 16, RING_AREA);
		r2.avail_idx = 3;
		r2.last_used = 1;
		r2.next_desc = 3;
		vf_ring_send(&g, &r2, 3);
		/* The two in-flight chains come first, in order, then the new one. */
		b.gpa = BUF_AREA + 0x300;
		vf_add(&g, &r2, &b, 1);
		for (int i = 0; i < 3; i++) {
			cr_assert(vf_used(&g, &r2, &id, &len, 1000), "completion %d", i);
			cr_assert_eq(id, (uint32_t)(i + 1));
		}
		cr_assert_eq(td.npopped, 3);
		cr_assert_eq(td.popped[0], 1);
		cr_assert_eq(td.popped[1], 2);
		cr_assert_eq(td.popped[2], 3);
		cr_assert_eq(*(uint8_t *)vf_ptr(&g, BUF_AREA + 0x100), 0xab);
		cr_assert_eq(*(uint8_t *)vf_ptr(&g, BUF_AREA + 0x300), 0xab);
		close(r2.kick);
		close(r2.call);
		close(r2.err);
		vu_fini(&td.dev);
		vf_fini(&g);
	}
	close(r.kick);
	close(r.call);
	close(r.err);
	memset(&td, 0, sizeof(td));
	dev_up(&f, &td.dev, 2);
}

static void log_queues(void *dev)
{
	vu_dev_log_queues(dev);
}

Test(vu_backend, queue_positions_are_logged_on_request)
{
	struct vf_ring r;
	struct vf_buf b = { BUF_AREA, 8, true };
	uint32_t id, len;
	const char *out;

	out = capture_stderr(log_queues, &td.dev);
	cr_assert(strstr(out, "test: no queue started"), "%s", out);
	vf_negotiate(&f, 0, all_protocol);
	vf_ring_setup(&f, &r, 0, 16, RING_AREA, 0);
	/* One answered, two taken and held, one more offered and not yet taken. */
	vf_add(&f, &r, &b, 1);
	cr_assert(vf_used(&f, &r, &id, &len, 1000));
	td.hold = true;
	vf_add(&f, &r, &b, 1);
	vf_add(&f, &r, &b, 1);
	vf_pump(&f);
	cr_assert_eq(td.nheld, 2);
	vf_add(&f, &r, &b, 1);		/* its kick is not pumped */

	out = capture_stderr(log_queues, &td.dev);
	/* (EVENT_IDX is negotiated; the fake driver leaves used_event at 0) */
	cr_assert(strstr(out, "test: queue 0: offered 4, taken 3 (1 waiting), used 1, last "
			 "interrupt at 1, driver wants one at 0, kicks wanted at 0; 2 in flight "
			 "in the back-end\r\n"), "%s", out);
	cr_assert_not(strstr(out, "queue 1"), "queue 1 was never started: %s", out);
}

Test(vu_backend, device_state_for_another_device_is_refused)
{
	uint8_t *buf;
	size_t n;
	struct vu_dev other;
	struct vu_front g;

	cr_assert_eq(vu_state_save(&td.dev, &buf, &n), 0);
	cr_assert_eq(vu_state_load(&td.dev, buf, n), 0);
	/* Another queue count: refused. */
	vf_init(&g);
	dev_up(&g, &other, 1);
	cr_assert_eq(vu_state_load(&other, buf, n), -EINVAL);
	/* Any single flipped byte: refused. */
	for (size_t i = 0; i < n; i++) {
		buf[i] ^= 0x40;
		cr_assert_eq(vu_state_load(&td.dev, buf, n), -EINVAL, "byte %zu", i);
		buf[i] ^= 0x40;
	}
	cr_assert_eq(vu_state_load(&td.dev, buf, n - 1), -EINVAL);
	free(buf);
	vu_fini(&other);
	vf_fini(&g);
	f.dev = &td.dev;
}

Test(vu_backend, inflight_area_resubmits_after_reconnect)
{
	struct vhost_user_inflight in = { .num_queues = 2, .queue_size = 16 };
	struct vhost_user_msg m;
	struct vf_ring r;
	struct vf_buf b = { BUF_AREA, 8, true };
	uint32_t id, len;
	int shm;

	vf_negotiate(&f, 0, all_protocol);
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_INFLIGHT_FD, 0, &in, sizeof(in), NULL, 0, &m), 0);
	cr_assert_eq(vhost_user_check_reply(&m, VHOST_USER_GET_INFLIGHT_FD, sizeof(in), 1), 0);
	cr_assert_eq(m.nfds, 1);
	cr_assert_geq(m.p.inflight.mmap_size, 2 * vu_inflight_queue_size(16));
	shm = m.fds[0];
	in = m.p.inflight;
	vf_send(&f, VHOST_USER_SET_INFLIGHT_FD, 0, &in, sizeof(in), &shm, 1);
	vf_ring_setup(&f, &r, 0, 16, RING_AREA, 0);

	/* One completed, then two in flight when the back-end dies. */
	vf_add(&f, &r, &b, 1);
	cr_assert(vf_used(&f, &r, &id, &len, 1000));
	td.hold = true;
	b.gpa = BUF_AREA + 0x100;
	vf_add(&f, &r, &b, 1);
	b.gpa = BUF_AREA + 0x200;
	vf_add(&f, &r, &b, 1);
	vf_pump(&f);
	cr_assert_eq(td.nheld, 2);

	/* The crash: no GET_VRING_BASE; a new back-end on a new connection. */
	vu_fini(&td.dev);
	close(f.be);
	close(f.fe);
	{
		int sv[2];

		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		f.fe = sv[0];
		f.be = sv[1];
	}
	memset(&td, 0, sizeof(td));
	dev_up(&f, &td.dev, 2);
	vf_negotiate(&f, 0, all_protocol);
	vf_send(&f, VHOST_USER_SET_INFLIGHT_FD, 0, &in, sizeof(in), &shm, 1);
	close(shm);
	/* The front-end no longer knows the avail position: it sends the used index. */
	{
		uint16_t a = r.avail_idx, u = r.last_used, nd = r.next_desc;

		close(r.kick);
		close(r.call);
		close(r.err);
		vf_ring_layout(&r, 0, 16, RING_AREA);
		r.avail_idx = a;
		r.last_used = u;
		r.next_desc = nd;
		vf_ring_send(&f, &r, u);
	}
	b.gpa = BUF_AREA + 0x300;
	vf_add(&f, &r, &b, 1);
	for (int i = 0; i < 3; i++) {
		cr_assert(vf_used(&f, &r, &id, &len, 1000), "completion %d", i);
		cr_assert_eq(id, (uint32_t)(i + 1));
	}
	cr_assert_eq(td.popped[0], 1);
	cr_assert_eq(td.popped[1], 2);
	cr_assert_eq(td.popped[2], 3);
	assert_no_fd_leak(&r, 1);
}
