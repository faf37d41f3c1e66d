/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The device event loop: one epoll thread that runs device work (console
 * input, userspace virtqueue kicks, vhost-user sockets, timers), never on
 * vCPU threads. Sources are embedded in their owners; callbacks run on the
 * loop thread.
 *
 * Removal is safe against the batch in hand: once event_loop_remove()
 * returns, the loop thread does not call the source again, even for an
 * event it had already read. A callback already running when another thread
 * removes its source may still be finishing; event_loop_remove_sync() waits
 * for it, for an owner about to free the source.
 */
#ifndef VMM_EVENT_LOOP_H
#define VMM_EVENT_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct event_source;
typedef void event_fn(struct event_source *src, uint32_t events);

struct event_source {
	int fd;
	event_fn *fn;
	uint32_t events;	/* what fd is watched for; kept by the functions below */
};

#define EVENT_LOOP_BATCH 16

struct event_loop {
	int epfd;
	int stop_fd;		/* eventfd: wakes the thread to stop */
	pthread_t thread;
	bool started;
	/* The batch being dispatched, guarded by lock; removal blanks its entries. */
	pthread_mutex_t lock;
	pthread_cond_t idle;	/* signalled when a callback returns */
	struct epoll_event batch[EVENT_LOOP_BATCH];	/* written by epoll_wait while batch_n is 0 */
	int batch_n;
	struct event_source *running;	/* whose callback runs now, or NULL */
};

/* Creates the epoll set; 0 or -errno. */
int event_loop_init(struct event_loop *loop);

/* Watches src->fd for events (EPOLLIN ...); 0 or -errno. */
int event_loop_add(struct event_loop *loop, struct event_source *src, uint32_t events);

/* Changes the watched events (0 pauses the source); 0 or -errno. */
int event_loop_modify(struct event_loop *loop, struct event_source *src, uint32_t events);

/* Like event_loop_modify(), without a system call when src is watched for events already. */
int event_loop_watch(struct event_loop *loop, struct event_source *src, uint32_t events);

/* Stops watching src; the loop does not call it again once this returns (a
 * callback already running on the loop thread may still finish); 0 or -errno. */
int event_loop_remove(struct event_loop *loop, struct event_source *src);

/* event_loop_remove(), then, off the loop thread, waits until a running
 * callback of src has returned: for an owner that frees src next. The
 * caller must hold no lock that the callback takes. */
int event_loop_remove_sync(struct event_loop *loop, struct event_source *src);

/* Starts the loop thread; 0 or -errno. */
int event_loop_start(struct event_loop *loop);

/* Stops and joins the loop thread if started; sources stay registered. */
void event_loop_stop(struct event_loop *loop);

/* Stops and joins the loop thread (if started) and closes the epoll set. */
void event_loop_destroy(struct event_loop *loop);

#endif
