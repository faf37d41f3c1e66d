// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmm-vhost-user-blk: the project's vhost-user-blk back-end program.
 *
 *   vmm-vhost-user-blk --socket PATH --image FILE [--readonly] [--direct] [--queues N] [-v]
 *
 * Listens on PATH and serves one front-end at a time; when it disconnects
 * (or breaks the protocol) the next connection is accepted, so a VMM can
 * reconnect. The device is vhost/vu_blk.c; this file is the event loop
 * (epoll over the connection, the library's watched fds and a signalfd).
 * SIGHUP re-reads the image's size; SIGUSR1 logs where each queue stands;
 * SIGTERM and SIGINT end the program.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vhost/vu_blk.h"
#include "vmm/base/util.h"

enum {
	EXIT_OK = 0,		/* stopped by SIGTERM or SIGINT */
	EXIT_RUNTIME = 1,	/* the event loop or the listening socket failed */
	EXIT_USAGE = 2,
	EXIT_IMAGE = 3,		/* the image cannot be opened or used */
	EXIT_SOCKET = 4,	/* the socket cannot be created at PATH */
};

#define MAX_WATCHES	(VU_MAX_QUEUES + 4)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vmm-vhost-user-blk --socket PATH --image FILE [--readonly] [--direct]\n"
		"                          [--queues N] [--incoming] [--hold-ms MS] [-v]\n"
		"\n"
		"Serves FILE (a raw image or a block device) as a virtio-blk device to a\n"
		"vhost-user front-end (a VMM) connecting to the Unix socket PATH, one at a\n"
		"time; after a front-end disconnects the next one is served, so a VMM can\n"
		"reconnect. I/O runs on io_uring (or worker threads where io_uring is\n"
		"unavailable), one engine per queue.\n"
		"\n"
		"  --socket PATH   the Unix socket to listen on (a stale socket there is replaced)\n"
		"  --image FILE    the disk: a raw image file or a block device\n"
		"  --readonly      serve it read-only (VIRTIO_BLK_F_RO)\n"
		"  --direct        open it with O_DIRECT, bypassing the host's page cache\n"
		"                  (as vmm's direct=on, QEMU's cache.direct=on)\n"
		"  --queues N      request queues, 1..%d (default 1)\n"
		"  --incoming      a live migration's destination: lock the image when the\n"
		"                  guest's queues start here, not at start-up, so this\n"
		"                  back-end can wait beside the source's on shared storage\n"
		"                  (the source's lets the image go when its state is saved)\n"
		"  --hold-ms MS    testing: hold each batch of finished requests MS ms before\n"
		"                  answering it, so that requests are in flight if the\n"
		"                  back-end is killed (a reconnect then resubmits them)\n"
		"  -v, --verbose   report progress (connections, resizes, the I/O engine)\n"
		"  -h, --help      this text\n"
		"\n"
		"Signals: SIGHUP re-reads the image's size and tells the front-end\n"
		"(CONFIG_CHANGE_MSG), so a grown image shows its new capacity in the guest;\n"
		"SIGUSR1 logs where each queue stands (requests the guest offered, took\n"
		"back, and that are in flight: for a guest that seems stuck);\n"
		"SIGTERM and SIGINT stop the program.\n"
		"\n"
		"Environment: VMM_DROP_INTERRUPT=vhost-user-blk:N (testing) drops the Nth\n"
		"interrupt of each connection, as if lost on the way to the guest.\n"
		"\n"
		"Exit status:\n"
		"  0  stopped by SIGTERM or SIGINT\n"
		"  1  runtime failure (the event loop or the listening socket failed)\n"
		"  2  usage error\n"
		"  3  the image cannot be opened or used\n"
		"  4  the socket cannot be created at PATH\n",
		VU_BLK_MAX_QUEUES);
}

/* One fd the library asked to watch. */
struct watch {
	int fd;
	uint32_t gen;
	vu_watch_cb cb;
	void *data;
};

struct loop {
	int ep;
	struct vu_blk *b;
	struct watch watches[MAX_WATCHES];
	uint32_t gen;
};

static struct loop loop;

static uint32_t poll_to_epoll(uint32_t events)
{
	return (events & POLLIN ? EPOLLIN : 0) | (events & POLLOUT ? EPOLLOUT : 0);
}

static int set_watch(struct vu_dev *dev, int fd, uint32_t events, vu_watch_cb cb, void *data)
{
	struct watch *w = NULL;
	struct epoll_event ev;
	bool add = true;

	for (unsigned int i = 0; i < MAX_WATCHES; i++) {
		if (loop.watches[i].cb && loop.watches[i].fd == fd) {
			w = &loop.watches[i];
			add = false;
			break;
		}
	}
	for (unsigned int i = 0; !w && i < MAX_WATCHES; i++)
		if (!loop.watches[i].cb)
			w = &loop.watches[i];
	if (!w)
		return -ENOSPC;
	*w = (struct watch){ .fd = fd, .gen = ++loop.gen, .cb = cb, .data = data };
	ev.events = poll_to_epoll(events);
	/* Slot and generation: an event of a watch removed meanwhile is recognised. */
	ev.data.u64 = (uint64_t)(w - loop.watches) | (uint64_t)w->gen << 32;
	if (epoll_ctl(loop.ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0) {
		int err = errno;

		w->cb = NULL;
		return -err;
	}
	return 0;
}

static void remove_watch(struct vu_dev *dev, int fd)
{
	for (unsigned int i = 0; i < MAX_WATCHES; i++) {
		if (loop.watches[i].cb && loop.watches[i].fd == fd) {
			epoll_ctl(loop.ep, EPOLL_CTL_DEL, fd, NULL);
			loop.watches[i].cb = NULL;
		}
	}
}

static const struct vu_ops ops = {
	.set_watch = set_watch,
	.remove_watch = remove_watch,
};

/* Tags of the two fds the loop itself watches. */
#define TAG_SOCK	(1ULL << 62)
#define TAG_SIGNAL	(1ULL << 63)

static int listen_on(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_error("socket path %s is longer than %zu bytes — use a shorter path", path,
			  sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error("%s exists and is not a socket — give another path", path);
			return -EEXIST;
		}
		unlink(path);	/* a stale socket of an earlier run */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0) {
		int err = errno;

		log_error("cannot listen on %s: %s — check that its directory exists and is "
			  "writable", path, strerror(err));
		if (fd >= 0)
			close(fd);
		return -err;
	}
	return fd;
}

/* Serves one connection until it ends or a stop signal arrives; 1 on a stop signal, 0, or -errno. */
static int serve(struct vu_blk *b, int conn, int sfd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_SOCK };
	int ret;

	ret = vu_blk_connect(b, conn, &ops);
	if (ret) {
		log_error("cannot serve the connection: %s", strerror(-ret));
		return 0;
	}
	if (epoll_ctl(loop.ep, EPOLL_CTL_ADD, conn, &ev) < 0) {
		ret = -errno;
		vu_blk_disconnect(b);
		return ret;
	}
	log_info("vhost-user-blk: a front-end connected");
	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(loop.ep, evs, ARRAY_SIZE(evs), -1);
		bool done = false;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		for (int i = 0; i < n && !done; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si;

				while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						vu_blk_resize(b);
					} else if (si.ssi_signo == SIGUSR1) {
						vu_dev_log_queues(&b->dev);
					} else {
						ret = 1;
						done = true;
					}
				}
			} else if (tag == TAG_SOCK) {
				int r;

				while ((r = vu_dispatch(&b->dev)) == 0)
					;
				if (r != -EAGAIN) {
					if (r == -ECONNRESET)
						log_info("vhost-user-blk: the front-end disconnected");
					ret = 0;
					done = true;
				}
			} else {
				struct watch *w = &loop.watches[tag & 0xffffffffu];

				if ((tag & 0xffffffffu) < MAX_WATCHES && w->cb &&
				    w->gen == (uint32_t)(tag >> 32))
					w->cb(&b->dev, w->fd, evs[i].events, w->data);
			}
		}
		if (done)
			break;
	}
	epoll_ctl(loop.ep, EPOLL_CTL_DEL, conn, NULL);
	vu_blk_disconnect(b);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "image", required_argument, NULL, 'i' },
		{ "readonly", no_argument, NULL, 'r' },
		{ "direct", no_argument, NULL, 'd' },
		{ "queues", required_argument, NULL, 'q' },
		{ "hold-ms", required_argument, NULL, 'H' },
		{ "incoming", no_argument, NULL, 'I' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vu_blk_options o = { .nqueues = 1, .io_kind = BLK_IO_AUTO };
	const char *path = NULL;
	static struct vu_blk b;
	struct epoll_event ev;
	sigset_t sigs;
	int opt, lfd, sfd, status = EXIT_RUNTIME;
	unsigned long n;

	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			path = optarg;
			break;
		case 'i':
			o.image = optarg;
			break;
		case 'r':
			o.readonly = true;
			break;
		case 'd':
			o.direct = true;
			break;
		case 'q':
			if (parse_uint(optarg, 1, VU_BLK_MAX_QUEUES, &n)) {
				log_error("--queues %s: give a number in 1..%d", optarg,
					  VU_BLK_MAX_QUEUES);
				return EXIT_USAGE;
			}
			o.nqueues = (unsigned int)n;
			break;
		case 'H':
			if (parse_uint(optarg, 0, 10000, &n)) {
				log_error("--hold-ms %s: give a number of milliseconds in 0..10000",
					  optarg);
				return EXIT_USAGE;
			}
			o.hold_ms = (unsigned int)n;
			break;
		case 'I':
			o.incoming = true;
			break;
		case 'v':
			log_set_verbose(true);
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc || !path || !o.image) {
		log_error("%s — see vmm-vhost-user-blk --help",
			  optind < argc ? "unexpected argument" : "--socket and --image are required");
		return EXIT_USAGE;
	}

	/* The library writes to pipes and sockets the peer may have closed. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);

	if (vu_blk_open(&b, &o))
		return EXIT_IMAGE;
	lfd = listen_on(path);
	if (lfd < 0) {
		vu_blk_close(&b);
		return EXIT_SOCKET;
	}
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	loop.ep = epoll_create1(EPOLL_CLOEXEC);
	loop.b = &b;
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_SIGNAL };
	if (sfd < 0 || loop.ep < 0 || epoll_ctl(loop.ep, EPOLL_CTL_ADD, sfd, &ev) < 0) {
		log_error("cannot set up the event loop: %s", strerror(errno));
		goto out;
	}
	log_info("vhost-user-blk: serving %s on %s (%u queue%s%s%s)", o.image, path, o.nqueues,
		 o.nqueues > 1 ? "s" : "", o.readonly ? ", read-only" : "",
		 o.direct ? ", O_DIRECT" : "");
	for (;;) {
		struct pollfd p[2] = { { .fd = lfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
		struct signalfd_siginfo si;
		int conn, r;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("waiting for a front-end: %s", strerror(errno));
			break;
		}
		if (p[1].revents) {
			bool stop = false;

			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGHUP)
					vu_blk_resize(&b);
				else if (si.ssi_signo == SIGUSR1)
					log_notice("vhost-user-blk: no front-end connected");
				else
					stop = true;
			}
			if (stop) {
				status = EXIT_OK;
				break;
			}
		}
		if (!p[0].revents)
			continue;
		conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
				continue;
			log_error("accepting a front-end on %s: %s", path, strerror(errno));
			break;
		}
		r = serve(&b, conn, sfd);
		close(conn);
		if (r == 1) {
			status = EXIT_OK;
			break;
		}
		if (r < 0) {
			log_error("the event loop failed: %s", strerror(-r));
			break;
		}
	}
out:
	if (loop.ep >= 0)
		close(loop.ep);
	if (sfd >= 0)
		close(sfd);
	close(lfd);
	unlink(path);
	vu_blk_close(&b);
	return status;
}
