// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for the vhost-user back-end library's request parsing
 * (vhost/vu_backend.c, vhost/user_proto.c): the input is a front-end. It is
 * a sequence of messages, each
 *   u8     fd spec: bits 0-1 how many fds (0..3), bits 2-7 their kinds, two
 *          bits each: 0 the guest-memory memfd (GUEST_MEM bytes, also mapped
 *          here), 1 a fresh eventfd, 2 a pipe's write end (the harness
 *          drains the read end), 3 a pipe's read end holding the next 32
 *          input bytes (a device state to load)
 *   12     header bytes as they go on the wire (request, flags, size)
 *   n      payload: min(size, what is left of the input) bytes
 * A spec byte of 0xff ends the messages (the rest only shapes guest memory).
 * All messages go into the socket at once, then the write side is shut so a
 * size that promises more than was sent ends in EOF, not a wait. The
 * back-end (two queues, a device that answers each chain by writing its
 * writable bytes) dispatches until it stops; every eventfd the harness made
 * is then written (kicks) and the watches run, so queues the input started
 * pop chains from guest memory: the guest memory is the input itself,
 * repeated. Then everything is torn down and the process must have exactly
 * the fds it had before: a leaked or double-closed fd traps.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vhost/vu_backend.h"
#include "vmm/base/log.h"

#define GUEST_MEM	0x10000
#define MAX_FDS_MADE	64

struct watch {
	int fd;
	uint32_t events;
	vu_watch_cb cb;
	void *data;
	bool on;
};

static struct watch watches[40];
static struct virtq_chain chain;

static int set_watch(struct vu_dev *dev, int fd, uint32_t events, vu_watch_cb cb, void *data)
{
	struct watch *free_w = NULL;

	for (unsigned int i = 0; i < 40; i++) {
		if (watches[i].on && watches[i].fd == fd) {
			watches[i] = (struct watch){ fd, events, cb, data, true };
			return 0;
		}
		if (!watches[i].on && !free_w)
			free_w = &watches[i];
	}
	if (!free_w)
		return -1;
	*free_w = (struct watch){ fd, events, cb, data, true };
	return 0;
}

static void remove_watch(struct vu_dev *dev, int fd)
{
	for (unsigned int i = 0; i < 40; i++)
		if (watches[i].on && watches[i].fd == fd)
			watches[i].on = false;
}

static const struct vu_ops ops = { set_watch, remove_watch };

static void q_start(struct vu_dev *dev, unsigned int q)
{
}

static void q_stop(struct vu_dev *dev, unsigned int q)
{
}

static void q_kick(struct vu_dev *dev, unsigned int q)
{
	int n = 0;

	while (n++ < 64 && vu_queue_pop(dev, q, &chain) == 1) {
		if (chain.nin + chain.nout > VIRTQ_MAX_IOV)
			__builtin_trap();
		for (unsigned int i = chain.nout; i < chain.nout + chain.nin; i++)
			memset(chain.iov[i].iov_base, 0xab, chain.iov[i].iov_len);
		vu_queue_push(dev, q, &chain, chain.in_len);
	}
	vu_queue_flush(dev, q);
	vu_queue_notify(dev, q);
	vu_queue_set_notify(dev, q, true);
}

static int get_config(struct vu_dev *dev, uint8_t *buf, uint32_t off, uint32_t len)
{
	if (off > 64 || len > 64 - off)
		return -1;
	memset(buf, 0x5a, len);
	return 0;
}

static const struct vu_iface iface = {
	.get_config = get_config,
	.queue_start = q_start,
	.queue_stop = q_stop,
	.queue_kick = q_kick,
};

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	int made[MAX_FDS_MADE], nmade = 0, drain[MAX_FDS_MADE], ndrain = 0;
	int sv[2], memfd, before;
	struct vu_dev dev;
	struct vu_config cfg = {
		.name = "fuzz", .nqueues = 2, .max_queue_size = 256,
		.features = 1ULL << 32, .iface = &iface, .ops = &ops,
	};
	uint8_t *mem;
	size_t pos = 0;

	if (!once) {
		signal(SIGPIPE, SIG_IGN);
		once = true;
	}
	if (size == 0)
		return 0;
	before = count_fds();
	memset(watches, 0, sizeof(watches));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	memfd = memfd_create("fuzz-guest", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, GUEST_MEM))
		__builtin_trap();
	mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED)
		__builtin_trap();
	for (size_t i = 0; i < GUEST_MEM; i++)
		mem[i] = data[i % size];

	/* The messages, each with the fds its spec asks for. */
	while (pos + 13 <= size && nmade + 3 < MAX_FDS_MADE) {
		uint8_t spec = data[pos++];
		struct vhost_user_hdr h;
		int fds[3];
		unsigned int nfds = spec & 3;
		size_t n;

		if (spec == 0xff)
			break;

		memcpy(&h, data + pos, sizeof(h));
		pos += sizeof(h);
		n = h.size < size - pos ? h.size : size - pos;
		for (unsigned int i = 0; i < nfds; i++) {
			int kind = (spec >> (2 + 2 * i)) & 3, p[2];

			if (kind == 0) {
				fds[i] = dup(memfd);
			} else if (kind == 1) {
				fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			} else if (pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0) {
				if (kind == 2) {
					fds[i] = p[1];
					drain[ndrain++] = p[0];
				} else {
					size_t k = size - pos < 32 ? size - pos : 32;

					if (write(p[1], data + pos, k) < 0)
						__builtin_trap();
					close(p[1]);
					fds[i] = p[0];
				}
			} else {
				fds[i] = -1;
			}
			if (fds[i] < 0)
				__builtin_trap();
			made[nmade++] = fds[i];
		}
		{
			char ctl[CMSG_SPACE(3 * sizeof(int))];
			struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)(data + pos), n } };
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

			if (nfds) {
				struct cmsghdr *c;

				mh.msg_control = ctl;
				mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
				c = CMSG_FIRSTHDR(&mh);
				c->cmsg_level = SOL_SOCKET;
				c->cmsg_type = SCM_RIGHTS;
				c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
				memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
			}
			if (sendmsg(sv[0], &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				break;
		}
		pos += n;
	}
	shutdown(sv[0], SHUT_WR);

	cfg.sock = sv[1];
	if (vu_init(&dev, &cfg))
		__builtin_trap();
	for (int round = 0; round < 4096; round++) {
		char sink[4096];
		int r = vu_dispatch(&dev);

		/* Replies go to the front-end's side: keep it from filling up. */
		while (recv(sv[0], sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
		for (int i = 0; i < ndrain; i++)
			while (read(drain[i], sink, sizeof(sink)) > 0)
				;
		for (unsigned int i = 0; i < 40; i++) {
			struct pollfd p = { .fd = watches[i].fd, .events = (short)watches[i].events };

			if (watches[i].on && poll(&p, 1, 0) == 1)
				watches[i].cb(&dev, watches[i].fd, p.revents, watches[i].data);
		}
		if (r != 0)
			break;
	}
	/* Kick every eventfd made (the queues' kick fds are among them), then run the watches. */
	for (int i = 0; i < nmade; i++)
		eventfd_write(made[i], 1);
	for (unsigned int i = 0; i < 40; i++) {
		struct pollfd p = { .fd = watches[i].fd, .events = (short)watches[i].events };

		if (watches[i].on && poll(&p, 1, 0) == 1)
			watches[i].cb(&dev, watches[i].fd, p.revents, watches[i].data);
	}
	vu_fini(&dev);

	for (int i = 0; i < nmade; i++)
		close(made[i]);
	for (int i = 0; i < ndrain; i++)
		close(drain[i]);
	munmap(mem, GUEST_MEM);
	close(memfd);
	close(sv[0]);
	close(sv[1]);
	if (count_fds() != before)
		__builtin_trap();	/* the library leaked an fd */
	return 0;
}
