// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: the VMM's vhost-user front-end (vhost/user.c) reading
 * what a hostile back-end sends. The first byte picks the scenario, the rest
 * is the byte stream from the back-end:
 *   0 (even): the replies to the whole set-up (vhost_dev_init), then to
 *     GET_CONFIG, SET_FEATURES with GET_INFLIGHT_FD, SET_MEM_TABLE and
 *     GET_VRING_BASE, then the lost-chains walk of any in-flight area, then
 *     migration: the dirty log's start and stop (SET_LOG_BASE, SET_FEATURES,
 *     the barrier), a save and a load of the back-end's state
 *     (SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE; the pipe given to the
 *     back-end stays unread in the socket, so a save that is not refused
 *     times out after 20 ms) and migratable;
 *   1 (odd): a well-formed set-up with a back-end request channel, then the
 *     stream on that channel (vhost_user_service_channel until it stops).
 * Nothing may crash, hang or leak memory or an fd (checked: the process's
 * fd count is the same after each input).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vhost/user.h"
#include "vmm/base/log.h"

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

static void destroy(struct vhost_dev *dev)
{
}

static const struct vhost_device_ops ops = {
	.name = "fuzz",
	.backend_bits = ~0ULL,
	.destroy = destroy,
};

static void put_reply(int s, uint32_t req, uint64_t v)
{
	struct vhost_user_hdr h = { req, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, 8 };

	vhost_user_send(s, &h, &v, NULL, 0, 100);
}

static int discard_chunk(void *opaque, const void *buf, size_t len)
{
	return len > 64 ? -1 : 0;	/* the sink's max is 64 */
}

struct bytes {
	const uint8_t *p;
	size_t left;
};

static ssize_t bytes_chunk(void *opaque, void *buf, size_t cap)
{
	struct bytes *b = opaque;
	size_t n = b->left < cap ? b->left : cap;

	n = n < 100 ? n : 100;
	memcpy(buf, b->p, n);
	b->p += n;
	b->left -= n;
	return (ssize_t)n;
}

/* The migration ops, on whatever replies are left in the stream. */
static void fuzz_migration(struct vhost_dev *dev, const uint8_t *data, size_t size)
{
	struct virtio_state_sink sink = { discard_chunk, NULL, 64 };
	struct bytes b = { data, size < 300 ? size : 300 };
	struct virtio_state_source src = { bytes_chunk, &b };
	struct dirty_log log;
	char why[256];

	if (!dirty_log_init(&log, 1 << 16)) {
		if (!dev->be.ops->log_start(&dev->be, &log))
			dev->be.ops->log_stop(&dev->be);
		dirty_log_destroy(&log);
	}
	dev->be.ops->migratable(&dev->be, why, sizeof(why));
	if (dev->be.ops->has_state(&dev->be)) {
		dev->be.ops->save_state(&dev->be, &sink);
		dev->be.ops->load_state(&dev->be, &src);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
	static int memfd = -1;
	struct guest_mem mem;
	struct vhost_dev dev;
	struct vhost_user_opts o = { .fd = -1, .timeout_ms = 20, .inflight_queues = 2,
				     .inflight_queue_size = 64, .state_timeout_ms = 20,
				     .state = "fuzzed state" };
	int sv[2], fds, ch = -1;
	void *conn;

	if (size < 1 || size > 60000)
		return 0;
	if (memfd < 0) {
		memfd = memfd_create("fuzz-ram", MFD_CLOEXEC);
		if (memfd < 0 || ftruncate(memfd, sizeof(ram)))
			abort();
	}
	fds = count_fds();
	guest_mem_init_from_buffer(&mem, ram, 0, sizeof(ram));
	mem.fd = memfd;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	o.fd = sv[0];
	if (vhost_user_open(&o, &conn))
		abort();
	if (data[0] & 1) {
		/* A sane set-up with REPLY_ACK and a channel; the channel gets the input. */
		put_reply(sv[1], VHOST_USER_GET_FEATURES, (1ULL << 32) | (1ULL << 30));
		put_reply(sv[1], VHOST_USER_GET_PROTOCOL_FEATURES,
			  (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
			  (1ULL << VHOST_USER_PROTOCOL_F_BACKEND_REQ) |
			  (1ULL << VHOST_USER_PROTOCOL_F_CONFIG));
		put_reply(sv[1], VHOST_USER_SET_BACKEND_REQ_FD, 0);
		put_reply(sv[1], VHOST_USER_SET_OWNER, 0);
	} else {
		if (write(sv[1], data + 1, size - 1) < 0)
			abort();
		shutdown(sv[1], SHUT_WR);
	}
	if (vhost_dev_init(&dev, &vhost_user_ops, conn, &ops, &mem, "fuzz", 2)) {
		vhost_user_close(conn);
		goto out;
	}
	if (data[0] & 1) {
		struct vhost_user_msg m;

		/* The front-end's requests: find the channel's other end. */
		while (ch < 0 && vhost_user_recv(sv[1], &m, 20) == 0) {
			if (m.hdr.request == VHOST_USER_SET_BACKEND_REQ_FD && m.nfds == 1) {
				ch = m.fds[0];
				m.fds[0] = -1;
			}
			vhost_user_msg_close_fds(&m);
		}
		if (ch >= 0) {
			if (write(ch, data + 1, size - 1) < 0) {
				/* the channel's buffer is smaller than the input: fine */
			}
			shutdown(ch, SHUT_WR);
			for (int i = 0; i < 1000 && vhost_user_service_channel(&dev) == 0; i++)
				;
		}
	} else {
		uint8_t cfg[64];
		uint16_t base, heads[64];
		struct vhost_mem_table t;

		vhost_dev_get_config(&dev, 0, cfg, sizeof(cfg));
		dev.be.ops->set_features(&dev.be, 1ULL << 32);
		if (!vhost_mem_table_build(&mem, &t))
			vhost_user_ops.set_mem_table(&dev, &t);
		vhost_user_ops.get_vring_base(&dev, 1, &base);
		vhost_user_lost_chains(&dev, 0, 0, heads, 64);
		vhost_user_lost_chains(&dev, 1, 3, heads, 64);
		/* Before check_socket: replies still waiting would read as unasked-for messages. */
		fuzz_migration(&dev, data + 1, size - 1);
		vhost_user_check_socket(&dev);
	}
	vhost_dev_fini(&dev);
out:
	if (ch >= 0)
		close(ch);
	close(sv[1]);
	if (count_fds() != fds)
		abort();	/* an fd leaked */
	return 0;
}
