// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/base/event_loop.h"
#include "vmm/base/util.h"
#include "vmm/base/log.h"

#define MAX_EVENTS 16

int event_loop_init(struct event_loop *loop)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	memset(loop, 0, sizeof(*loop));
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		return -errno;
	loop->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->stop_fd < 0 || epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->stop_fd, &ev) < 0) {
		int err = -errno;

		if (loop->stop_fd >= 0)
			close(loop->stop_fd);
		close(loop->epfd);
		loop->epfd = loop->stop_fd = -1;
		return err;
	}
	return 0;
}

static int event_loop_ctl(struct event_loop *loop, int op, struct event_source *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	if (epoll_ctl(loop->epfd, op, src->fd, &ev) < 0)
		return -errno;
	src->events = op == EPOLL_CTL_DEL ? 0 : events;
	return 0;
}

int event_loop_add(struct event_loop *loop, struct event_source *src, uint32_t events)
{
	return event_loop_ctl(loop, EPOLL_CTL_ADD, src, events);
}

int event_loop_modify(struct event_loop *loop, struct event_source *src, uint32_t events)
{
	return event_loop_ctl(loop, EPOLL_CTL_MOD, src, events);
}

int event_loop_watch(struct event_loop *loop, struct event_source *src, uint32_t events)
{
	return src->events == events ? 0 : event_loop_modify(loop, src, events);
}

int event_loop_remove(struct event_loop *loop, struct event_source *src)
{
	return event_loop_ctl(loop, EPOLL_CTL_DEL, src, 0);
}

static void *event_loop_thread(void *arg)
{
	struct event_loop *loop = arg;
	struct epoll_event evs[MAX_EVENTS];

	for (;;) {
		int n = epoll_wait(loop->epfd, evs, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("event loop: epoll_wait failed: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			struct event_source *src = evs[i].data.ptr;

			if (!src)
				return NULL;	/* the stop eventfd */
			src->fn(src, evs[i].events);
		}
	}
}

int event_loop_start(struct event_loop *loop)
{
	int ret = thread_start(&loop->thread, event_loop_thread, loop);

	if (ret)
		return ret;
	pthread_setname_np(loop->thread, "vmm-events");
	loop->started = true;
	return 0;
}

void event_loop_stop(struct event_loop *loop)
{
	uint64_t one = 1;

	if (!loop->started)
		return;
	if (write(loop->stop_fd, &one, sizeof(one)) != sizeof(one))
		log_warn("event loop: cannot signal stop: %s", strerror(errno));
	pthread_join(loop->thread, NULL);
	loop->started = false;
}

void event_loop_destroy(struct event_loop *loop)
{
	event_loop_stop(loop);
	if (loop->stop_fd >= 0)
		close(loop->stop_fd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	loop->epfd = loop->stop_fd = -1;
}
