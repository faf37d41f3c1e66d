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

/* The stop eventfd's mark in a batch (NULL there is a removed source). */
static struct event_source stop_mark;

int event_loop_init(struct event_loop *loop)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &stop_mark };

	memset(loop, 0, sizeof(*loop));
	pthread_mutex_init(&loop->lock, NULL);
	pthread_cond_init(&loop->idle, NULL);
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

/* Blanks src's entries in the batch in hand; with wait, off the loop thread,
 * also waits for its running callback to return. */
static void event_loop_forget(struct event_loop *loop, struct event_source *src, bool wait)
{
	pthread_mutex_lock(&loop->lock);
	for (int i = 0; i < loop->batch_n; i++)
		if (loop->batch[i].data.ptr == src)
			loop->batch[i].data.ptr = NULL;
	if (wait && loop->started && !pthread_equal(pthread_self(), loop->thread))
		while (loop->running == src)
			pthread_cond_wait(&loop->idle, &loop->lock);
	pthread_mutex_unlock(&loop->lock);
}

static int event_loop_del(struct event_loop *loop, struct event_source *src, bool wait)
{
	int ret = event_loop_ctl(loop, EPOLL_CTL_DEL, src, 0);

	event_loop_forget(loop, src, wait);
	return ret;
}

int event_loop_remove(struct event_loop *loop, struct event_source *src)
{
	return event_loop_del(loop, src, false);
}

int event_loop_remove_sync(struct event_loop *loop, struct event_source *src)
{
	return event_loop_del(loop, src, true);
}

/* Runs the batch in loop->batch; false when it holds the stop eventfd. */
static bool event_loop_dispatch(struct event_loop *loop)
{
	bool go_on = true;

	pthread_mutex_lock(&loop->lock);
	for (int i = 0; i < loop->batch_n; i++) {
		struct event_source *src = loop->batch[i].data.ptr;
		uint32_t events = loop->batch[i].events;

		if (src == &stop_mark) {
			go_on = false;
			break;
		}
		if (!src)
			continue;	/* removed since epoll_wait returned */
		loop->running = src;
		pthread_mutex_unlock(&loop->lock);
		src->fn(src, events);
		pthread_mutex_lock(&loop->lock);
		loop->running = NULL;
		pthread_cond_broadcast(&loop->idle);
	}
	loop->batch_n = 0;
	pthread_mutex_unlock(&loop->lock);
	return go_on;
}

static void *event_loop_thread(void *arg)
{
	struct event_loop *loop = arg;

	for (;;) {
		/* batch_n is 0 here: no remover looks at the batch while the kernel fills it. */
		int n = epoll_wait(loop->epfd, loop->batch, EVENT_LOOP_BATCH, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("event loop: epoll_wait failed: %s", strerror(errno));
			return NULL;
		}
		pthread_mutex_lock(&loop->lock);
		loop->batch_n = n;
		pthread_mutex_unlock(&loop->lock);
		if (!event_loop_dispatch(loop))
			return NULL;
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
	/* Drained, so that a later event_loop_start() runs. */
	if (read(loop->stop_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("event loop: cannot reset the stop signal: %s", strerror(errno));
}

void event_loop_destroy(struct event_loop *loop)
{
	event_loop_stop(loop);
	if (loop->stop_fd >= 0)
		close(loop->stop_fd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	loop->epfd = loop->stop_fd = -1;
	pthread_cond_destroy(&loop->idle);
	pthread_mutex_destroy(&loop->lock);
}
