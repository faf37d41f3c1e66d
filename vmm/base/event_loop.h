/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The device event loop: one epoll thread that runs device work (console
 * input now; virtqueue and vhost events later), never on vCPU threads.
 * Sources are embedded in their owners; callbacks run on the loop thread.
 */
#ifndef VMM_EVENT_LOOP_H
#define VMM_EVENT_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct event_source;
typedef void event_fn(struct event_source *src, uint32_t events);

struct event_source {
	int fd;
	event_fn *fn;
	uint32_t events;	/* what fd is watched for; kept by the functions below */
};

struct event_loop {
	int epfd;
	int stop_fd;		/* eventfd: wakes the thread to stop */
	pthread_t thread;
	bool started;
};

/* Creates the epoll set; 0 or -errno. */
int event_loop_init(struct event_loop *loop);

/* Watches src->fd for events (EPOLLIN ...); 0 or -errno. */
int event_loop_add(struct event_loop *loop, struct event_source *src, uint32_t events);

/* Changes the watched events (0 pauses the source); 0 or -errno. */
int event_loop_modify(struct event_loop *loop, struct event_source *src, uint32_t events);

/* Like event_loop_modify(), without a system call when src is watched for events already. */
int event_loop_watch(struct event_loop *loop, struct event_source *src, uint32_t events);

/* Stops watching src; 0 or -errno. */
int event_loop_remove(struct event_loop *loop, struct event_source *src);

/* Starts the loop thread; 0 or -errno. */
int event_loop_start(struct event_loop *loop);

/* Stops and joins the loop thread if started; sources stay registered. */
void event_loop_stop(struct event_loop *loop);

/* Stops and joins the loop thread (if started) and closes the epoll set. */
void event_loop_destroy(struct event_loop *loop);

#endif
