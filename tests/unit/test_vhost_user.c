// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VMM's vhost-user front-end (vhost/user.h) against the project's
 * back-end (vmm-vhost-user-blk's device on a thread) and against a hostile
 * back-end: the set-up sequence and what it negotiates, config space, the
 * back-end request channel (config changes, unknown and malformed requests),
 * the memory table and rings through the vhost device, replies that break
 * the protocol (each refused, no fd left open), and a back-end that dies.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <linux/virtio_blk.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/fake_driver.h"
#include "tests/unit/vu_server.h"
#include "vhost/user.h"

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static void dummy_destroy(struct vhost_dev *dev)
{
}

static const struct vhost_device_ops blk_dev_ops = {
	.name = "vhost-user-blk",
	.backend_bits = ~0ULL,
	.destroy = dummy_destroy,
};

static struct vhost_dev dev;
static struct guest_mem mem;

/* Connects a front-end over a socketpair to whatever serve() runs on the other end. */
static int fe_open(int *be_end, void **conn, uint16_t inflight_qs)
{
	int sv[2];
	struct vhost_user_opts o = { .fd = -1, .timeout_ms = 2000, .inflight_queues = 1,
				     .inflight_queue_size = inflight_qs };

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	o.fd = sv[0];
	*be_end = sv[1];
	return vhost_user_open(&o, conn);
}

static struct vu_server srv;

static void blk_setup(void)
{
	const struct guest_mem_range r[2] = { { 0, 1 << 20 }, { 4 << 20, 1 << 20 } };
	void *conn;
	int be;

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(guest_mem_init(&mem, r, 2, GUEST_MEM_MEMFD), 0);
	vs_init(&srv, 2);
	cr_assert_eq(fe_open(&be, &conn, 256), 0);
	vs_start_fd(&srv, be);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_dev_ops, &mem, "vub0", 2), 0);
}

static void blk_teardown(void)
{
	vhost_dev_fini(&dev);
	vs_fini(&srv);
	guest_mem_destroy(&mem);
}

Test(vhost_user, negotiates_what_both_implement, .init = blk_setup, .fini = blk_teardown)
{
	uint64_t p = vhost_user_protocol_features(&dev);

	/* Ours offers MQ, REPLY_ACK, CONFIG, BACKEND_REQ, INFLIGHT, MEM_SLOTS, RESET, LOG, STATE. */
	cr_expect(p & (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK));
	cr_expect(p & (1ULL << VHOST_USER_PROTOCOL_F_CONFIG));
	cr_expect(p & (1ULL << VHOST_USER_PROTOCOL_F_BACKEND_REQ));
	cr_expect(p & (1ULL << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD));
	cr_expect(p & (1ULL << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS));
	cr_expect(p & (1ULL << VHOST_USER_PROTOCOL_F_DEVICE_STATE));
	cr_expect_eq(p & ~VHOST_USER_FE_PROTOCOL, 0);
	cr_expect_eq(vhost_user_queue_num(&dev), 2);
	cr_expect_eq(vhost_user_max_mem_slots(&dev), VU_MAX_MEM_SLOTS);
	cr_expect(dev.backend_features & (1ULL << 32));
	cr_expect(dev.backend_features & (1ULL << VIRTIO_BLK_F_FLUSH));
	/* Bit 30 is the front-end's business, never the guest's. */
	cr_expect_eq(vhost_dev_features(&dev) & (1ULL << 30), 0);
	cr_expect(vhost_user_connected(&dev));
}

Test(vhost_user, reads_the_config_space, .init = blk_setup, .fini = blk_teardown)
{
	struct virtio_blk_config c;

	cr_assert_eq(vhost_dev_get_config(&dev, 0, &c, sizeof(c)), 0);
	cr_expect_eq(le64toh(c.capacity), VS_IMG_SIZE / 512);
	cr_expect_eq(le16toh(c.num_queues), 2);
	cr_expect_eq(vhost_dev_get_config(&dev, 0, &c, 0), -EINVAL);
	cr_expect_eq(vhost_dev_get_config(&dev, 0, &c, 300), -EINVAL);
}

static int config_changes;

static void on_config(void *opaque)
{
	config_changes++;
}

Test(vhost_user, config_change_message_reaches_the_device, .init = blk_setup,
     .fini = blk_teardown)
{
	struct virtio_blk_config c;
	struct pollfd p;
	int ret = -EAGAIN;

	vhost_dev_set_config_notifier(&dev, on_config, NULL);
	cr_assert_eq(truncate(srv.img, 2 * VS_IMG_SIZE), 0);
	cr_assert_eq(vu_blk_resize(&srv.b), 1);
	/* The channel is our end of the socketpair: wait for the message, service it. */
	for (int i = 0; i < 100 && ret == -EAGAIN; i++) {
		p = (struct pollfd){ .fd = -1 };
		usleep(10000);
		ret = vhost_user_service_channel(&dev);
	}
	cr_assert_eq(ret, 0);
	cr_expect_eq(config_changes, 1);
	cr_assert_eq(vhost_dev_get_config(&dev, 0, &c, sizeof(c)), 0);
	cr_expect_eq(le64toh(c.capacity), 2 * VS_IMG_SIZE / 512);
	(void)p;
}

Test(vhost_user, memory_table_and_a_ring, .init = blk_setup, .fini = blk_teardown)
{
	struct virtq_state s = { .size = 64, .desc_gpa = 0x1000, .avail_gpa = 0x2000,
				 .used_gpa = 0x3000, .ready = true, .event_idx = false };
	struct virtio_backend *be = &dev.be;
	struct virtio_call call = { .irq_fd = eventfd(0, EFD_CLOEXEC) };
	int kick = eventfd(0, EFD_CLOEXEC);
	struct virtio_blk_outhdr *hdr = (void *)(mem.regions[0].hva + 0x4000);
	uint8_t *data = mem.regions[1].hva + 0x1000;	/* the second region (gpa 4 MiB) */
	uint8_t *status = mem.regions[0].hva + 0x5000;
	struct vring_desc *d = (void *)(mem.regions[0].hva + 0x1000);
	struct vring_avail *avail = (void *)(mem.regions[0].hva + 0x2000);
	struct vring_used *used = (void *)(mem.regions[0].hva + 0x3000);
	uint64_t v;

	cr_assert_eq(be->ops->set_features(be, (1ULL << 32) | (1ULL << VIRTIO_BLK_F_FLUSH)), 0);
	cr_expect_eq(dev.acked_features, (1ULL << 32) | (1ULL << VIRTIO_BLK_F_FLUSH));
	cr_assert_eq(be->ops->start(be, 0, &s, kick, &call), 0);
	/* Read sector 5 into the second region. */
	*hdr = (struct virtio_blk_outhdr){ .type = VIRTIO_BLK_T_IN, .sector = 5 };
	*status = 0xff;
	d[0] = (struct vring_desc){ 0x4000, sizeof(*hdr), VRING_DESC_F_NEXT, 1 };
	d[1] = (struct vring_desc){ (4 << 20) + 0x1000, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE,
				    2 };
	d[2] = (struct vring_desc){ 0x5000, 1, VRING_DESC_F_WRITE, 0 };
	avail->ring[0] = 0;
	__atomic_store_n(&avail->idx, 1, __ATOMIC_RELEASE);
	eventfd_write(kick, 1);
	/* The back-end signals the "irqfd" itself. */
	struct pollfd p = { .fd = call.irq_fd, .events = POLLIN };

	cr_assert_eq(poll(&p, 1, 5000), 1);
	cr_assert_eq(eventfd_read(call.irq_fd, &v), 0);
	cr_expect_eq(__atomic_load_n(&used->idx, __ATOMIC_ACQUIRE), 1);
	cr_expect_eq(used->ring[0].id, 0);
	cr_expect_eq(*status, VIRTIO_BLK_S_OK);
	cr_expect_eq(data[0], 5);
	cr_expect_eq(data[511], 5);
	/* Stop: GET_VRING_BASE says where it stopped. */
	be->ops->stop(be, 0, &s);
	cr_expect_eq(s.last_avail_idx, 1);
	cr_expect_eq(s.used_idx, 1);
	/* A restart continues there. */
	cr_assert_eq(be->ops->start(be, 0, &s, kick, &call), 0);
	be->ops->stop(be, 0, &s);
	cr_expect_eq(s.last_avail_idx, 1);
	close(kick);
	close(call.irq_fd);
}

Test(vhost_user, memory_without_an_fd_is_refused, .init = blk_setup, .fini = blk_teardown)
{
	struct vhost_mem_table t = { .nregions = 1 };

	t.regions[0] = (struct vhost_mem_region){ .gpa = 0, .size = 4096, .hva = 0x1000, .fd = -1 };
	cr_expect_eq(vhost_user_ops.set_mem_table(&dev, &t), -EINVAL);
	cr_expect(vhost_user_connected(&dev));
}

/*
 * The one defensive check of the shared-RAM rule: vhost_user_create() refuses a
 * guest_mem without an fd (private RAM) with -EINVAL, before it connects to a
 * back-end that listens, and leaves no fd open; shared RAM is taken.
 */
Test(vhost_user, create_refuses_private_guest_ram_before_connecting)
{
	const struct guest_mem_range r = { 0, 1 << 20 };
	struct virtio_offload_user ou = { .max_queues = 1, .backend_bits = ~0ULL };
	struct virtio_backend *be = (void *)1;
	struct event_loop loop;
	char why[200] = "";
	int fds;

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(event_loop_init(&loop), 0);
	vs_init(&srv, 1);
	vs_start_listen(&srv);
	ou.path = srv.path;
	cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_ANON), 0);
	cr_assert_lt(mem.fd, 0);
	fds = count_fds();
	cr_expect_eq(vhost_user_create(&mem, "vub0", &loop, &ou, &be, why, sizeof(why)), -EINVAL);
	cr_expect_null(be);
	cr_expect(strstr(why, "shared"), "why: '%s'", why);
	cr_expect_eq(count_fds(), fds);
	usleep(20000);
	cr_expect_eq(atomic_load(&srv.connections), 0);
	guest_mem_destroy(&mem);

	/* The same back-end with shared RAM: connected and set up. */
	cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_MEMFD), 0);
	cr_assert_eq(vhost_user_create(&mem, "vub0", &loop, &ou, &be, why, sizeof(why)), 0, "%s",
		     why);
	cr_expect_not_null(be);
	cr_expect_eq(ou.queues, 1);
	cr_expect_eq(atomic_load(&srv.connections), 1);
	be->ops->destroy(be);
	vs_fini(&srv);
	guest_mem_destroy(&mem);
	event_loop_destroy(&loop);
}

static int disconnects;

static void on_disconnect(void *opaque, const char *why)
{
	disconnects++;
}

static const struct virtio_backend_events test_events = {
	.disconnected = on_disconnect,
};

Test(vhost_user, a_dead_back_end_is_reported_once, .init = blk_setup, .fini = blk_teardown)
{
	struct virtio_blk_config c;

	dev.be.ops->set_events(&dev.be, &test_events, NULL);
	disconnects = 0;
	cr_expect_not(vhost_user_check_socket(&dev));
	vs_kill(&srv);
	for (int i = 0; i < 100 && !vhost_user_check_socket(&dev); i++)
		usleep(10000);
	cr_expect_eq(disconnects, 1);
	cr_expect_not(vhost_user_connected(&dev));
	cr_expect(vhost_user_check_socket(&dev));
	cr_expect_eq(disconnects, 1);
	/* Later requests fail at once. */
	cr_expect_eq(vhost_dev_get_config(&dev, 0, &c, sizeof(c)), -ENOTCONN);
	/* No path to reconnect to: a socket given by the caller. */
	cr_expect_eq(vhost_dev_reconnect(&dev), -EOPNOTSUPP);
}

Test(vhost_user, reconnects_to_a_restarted_back_end)
{
	const struct guest_mem_range r = { 0, 1 << 20 };
	struct vhost_user_opts o = { .fd = -1, .timeout_ms = 2000 };
	struct virtio_blk_config c;
	void *conn;
	int fds;

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_MEMFD), 0);
	fds = count_fds();
	vs_init(&srv, 1);
	vs_start_listen(&srv);
	o.path = srv.path;
	cr_assert_eq(vhost_user_open(&o, &conn), 0);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_dev_ops, &mem, "vub0", 1), 0);
	cr_assert_eq(dev.be.ops->set_features(&dev.be, 1ULL << 32), 0);
	atomic_store(&srv.die, true);	/* drop this connection, keep listening */
	for (int i = 0; i < 200 && !vhost_user_check_socket(&dev); i++)
		usleep(10000);
	cr_assert_not(vhost_user_connected(&dev));
	cr_assert_eq(vhost_dev_reconnect(&dev), 0);
	cr_expect(vhost_user_connected(&dev));
	cr_expect_eq(atomic_load(&srv.connections), 2);
	cr_expect_eq(dev.be.ops->set_features(&dev.be, 1ULL << 32), 0);
	cr_expect_eq(vhost_dev_get_config(&dev, 0, &c, sizeof(c)), 0);
	cr_expect_eq(le64toh(c.capacity), VS_IMG_SIZE / 512);
	/* Nobody listening: the attempt fails and may be repeated. */
	vs_kill(&srv);
	for (int i = 0; i < 200 && !vhost_user_check_socket(&dev); i++)
		usleep(10000);
	cr_expect_neq(vhost_dev_reconnect(&dev), 0);
	vhost_dev_fini(&dev);
	vs_fini(&srv);
	cr_expect_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

/* ---- hostile back-ends ---- */

static struct vu_evil evil;

/* Runs the set-up against a back-end with fault f; returns vhost_dev_init's result. */
static int evil_init(enum vs_fault f)
{
	const struct guest_mem_range r = { 0, 1 << 20 };
	void *conn;
	int be, ret;

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_MEMFD), 0);
	cr_assert_eq(fe_open(&be, &conn, 0), 0);
	ve_start(&evil, be, f);
	ret = vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_dev_ops, &mem, "evil", 2);
	if (ret)
		vhost_user_close(conn);
	return ret;
}

static void evil_end(void)
{
	vhost_dev_fini(&dev);
	ve_join(&evil);
	guest_mem_destroy(&mem);
}

Test(vhost_user, hostile_replies_fail_the_set_up_without_leaks)
{
	static const struct { enum vs_fault f; int err; } cases[] = {
		{ VS_WRONG_ID, -ENOTCONN },	{ VS_WRONG_SIZE, -ENOTCONN },
		{ VS_WRONG_FLAGS, -ENOTCONN },	{ VS_EXTRA_FD, -ENOTCONN },
		{ VS_HANGUP, -ENOTCONN },	{ VS_NO_VERSION_1, -EOPNOTSUPP },
		{ VS_REFUSE_OWNER, -EIO },	{ VS_ZERO_QUEUES, -EPROTO },
		{ VS_GARBAGE, -ENOTCONN },
	};

	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fds = count_fds();

		cr_expect_eq(evil_init(cases[i].f), cases[i].err, "fault %d", cases[i].f);
		evil_end();
		cr_expect_eq(count_fds(), fds, "fault %d leaves fds open", cases[i].f);
	}
}

/*
 * A ring's setup goes out back to back and its REPLY_ACK acks are read in one
 * go: a back-end that answers them only once SET_VRING_ENABLE came still
 * starts the ring (awaited one by one, the first would time out). A refusal
 * among them fails that start, and only that one.
 */
Test(vhost_user, a_rings_setup_acks_are_read_together)
{
	struct virtq_state s = { .size = 64, .desc_gpa = 0x1000, .avail_gpa = 0x2000,
				 .used_gpa = 0x3000, .ready = true };
	struct virtio_backend *be = &dev.be;
	struct virtio_call call = { .irq_fd = eventfd(0, EFD_CLOEXEC) };
	int kick = eventfd(0, EFD_CLOEXEC);

	cr_assert_eq(evil_init(VS_ACKS_AT_ENABLE), 0);
	cr_assert_eq(be->ops->set_features(be, 1ULL << 32), 0);
	cr_expect_eq(be->ops->start(be, 0, &s, kick, &call), 0);
	be->ops->stop(be, 0, &s);
	cr_expect(vhost_user_connected(&dev));
	evil_end();

	cr_assert_eq(evil_init(VS_REFUSE_FIRST_ADDR), 0);
	cr_assert_eq(be->ops->set_features(be, 1ULL << 32), 0);
	cr_expect_eq(be->ops->start(be, 0, &s, kick, &call), -EIO, "SET_VRING_ADDR refused");
	cr_expect_eq(atomic_load(&evil.addr_refusals), 1);
	cr_expect(vhost_user_connected(&dev), "a refusal is no protocol error");
	/* Not carried over: the next start is judged by its own acks. */
	cr_expect_eq(be->ops->start(be, 0, &s, kick, &call), 0);
	be->ops->stop(be, 0, &s);
	cr_expect_eq(s.last_avail_idx, 7, "GET_VRING_BASE's answer, after the acks before it");
	cr_expect(vhost_user_connected(&dev));
	evil_end();
	close(kick);
	close(call.irq_fd);
}

/*
 * How many rings a back-end serves: GET_QUEUE_NUM with MQ, never fewer than
 * the device's fixed set (base_queues: a virtio-net pair, virtio-fs's queues;
 * a net back-end counts pairs); without MQ, that fixed set.
 */
static unsigned int rings_served(enum vs_fault f, unsigned int base_queues)
{
	const struct guest_mem_range r = { 0, 1 << 20 };
	struct vhost_user_opts o = { .fd = -1, .timeout_ms = 2000, .base_queues = base_queues };
	unsigned int n;
	void *conn;
	int sv[2];

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(guest_mem_init(&mem, &r, 1, GUEST_MEM_MEMFD), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	o.fd = sv[0];
	cr_assert_eq(vhost_user_open(&o, &conn), 0);
	ve_start(&evil, sv[1], f);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_dev_ops, &mem, "q", 4), 0);
	n = vhost_user_queue_num(&dev);
	evil_end();
	return n;
}

Test(vhost_user, rings_served_with_and_without_mq)
{
	cr_expect_eq(rings_served(VS_OK, 0), 2, "MQ: GET_QUEUE_NUM's 2");
	cr_expect_eq(rings_served(VS_ONE_QUEUE, 2), 2, "MQ answering 1 pair: the pair");
	cr_expect_eq(rings_served(VS_ONE_QUEUE, 0), 1, "MQ answering 1: 1");
	cr_expect_eq(rings_served(VS_NO_MQ, 0), 1, "no MQ, nothing fixed: 1");
	cr_expect_eq(rings_served(VS_NO_MQ, 3), 3, "no MQ: the device's fixed set");
}

Test(vhost_user, hostile_config_and_vring_base_replies_kill_the_connection)
{
	uint8_t buf[8];
	uint16_t base;

	cr_assert_eq(evil_init(VS_BAD_CONFIG), 0);
	cr_expect_eq(vhost_dev_get_config(&dev, 0, buf, sizeof(buf)), -ENOTCONN);
	cr_expect_not(vhost_user_connected(&dev));
	evil_end();
	cr_assert_eq(evil_init(VS_BAD_VRING_BASE), 0);
	cr_expect_eq(vhost_user_ops.get_vring_base(&dev, 1, &base), -ENOTCONN);
	cr_expect_eq(vhost_user_ops.get_vring_base(&dev, 5, &base), -EINVAL);
	evil_end();
}

/* Sends raw bytes (and optionally an fd) on the back-end's end of the request channel. */
static void channel_send(int ch, uint32_t req, uint32_t flags, uint32_t size, int fd)
{
	struct vhost_user_hdr h = { .request = req, .flags = flags, .size = size };
	uint8_t payload[16] = { 0 };

	cr_assert_eq(vhost_user_send(ch, &h, payload, fd >= 0 ? &fd : NULL, fd >= 0, 1000), 0);
}

Test(vhost_user, channel_refuses_unknown_requests_and_survives)
{
	struct vhost_user_msg reply;
	int fds, memfd;

	cr_assert_eq(evil_init(VS_OK), 0);
	vhost_dev_set_config_notifier(&dev, on_config, NULL);
	config_changes = 0;
	cr_assert(atomic_load(&evil.channel_ready));
	fds = count_fds();
	/* An unknown request that wants a reply: refused with a non-zero u64. */
	channel_send(evil.channel, 99, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY, 0, -1);
	cr_assert_eq(vhost_user_service_channel(&dev), 0);
	cr_assert_eq(vhost_user_recv(evil.channel, &reply, 1000), 0);
	cr_expect_eq(reply.hdr.flags, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY);
	cr_expect_eq(reply.hdr.request, 99);
	cr_expect_neq(reply.p.u64, 0);
	/* IOTLB with an fd: refused, the fd closed. */
	memfd = memfd_create("x", MFD_CLOEXEC);
	channel_send(evil.channel, VHOST_USER_BACKEND_IOTLB_MSG, VHOST_USER_VERSION, 8, memfd);
	close(memfd);
	cr_assert_eq(vhost_user_service_channel(&dev), 0);
	cr_expect_eq(count_fds(), fds);
	/* CONFIG_CHANGE_MSG with NEED_REPLY: acked with 0, then reported. */
	channel_send(evil.channel, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG,
		     VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY, 0, -1);
	cr_assert_eq(vhost_user_service_channel(&dev), 0);
	cr_assert_eq(vhost_user_recv(evil.channel, &reply, 1000), 0);
	cr_expect_eq(reply.p.u64, 0);
	cr_expect_eq(config_changes, 1);
	/* CONFIG_CHANGE_MSG with a payload: not a config change. */
	channel_send(evil.channel, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, VHOST_USER_VERSION, 8, -1);
	cr_assert_eq(vhost_user_service_channel(&dev), 0);
	cr_expect_eq(config_changes, 1);
	cr_expect_eq(vhost_user_service_channel(&dev), -EAGAIN);
	/* Broken framing: the channel is closed, the device keeps running. */
	cr_assert_eq(write(evil.channel, "\x02\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00", 12), 12);
	cr_expect_lt(vhost_user_service_channel(&dev), 0);
	cr_expect_eq(vhost_user_service_channel(&dev), -ENOTCONN);
	cr_expect(vhost_user_connected(&dev));
	evil_end();
}
