// SPDX-License-Identifier: GPL-2.0-only
/* The event loop: what each source is watched for, removal against the batch in hand, restart. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/base/event_loop.h"

static struct event_loop loop;
static struct event_source src;

static void setup(void)
{
	cr_assert_eq(event_loop_init(&loop), 0);
	src.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert_geq(src.fd, 0);
}

static void teardown(void)
{
	close(src.fd);
	event_loop_destroy(&loop);
}

TestSuite(event_loop, .init = setup, .fini = teardown);

Test(event_loop, add_modify_remove_keep_the_watched_events)
{
	cr_assert_eq(event_loop_add(&loop, &src, EPOLLIN), 0);
	cr_assert_eq(src.events, EPOLLIN);
	cr_assert_eq(event_loop_modify(&loop, &src, EPOLLIN | EPOLLOUT), 0);
	cr_assert_eq(src.events, EPOLLIN | EPOLLOUT);
	cr_assert_eq(event_loop_remove(&loop, &src), 0);
	cr_assert_eq(src.events, 0);
}

Test(event_loop, a_failed_change_keeps_the_old_events)
{
	cr_assert_eq(event_loop_add(&loop, &src, EPOLLIN), 0);
	cr_assert_eq(event_loop_remove(&loop, &src), 0);
	src.events = EPOLLIN; /* as if still watched: the kernel says it is not */
	cr_assert_eq(event_loop_modify(&loop, &src, EPOLLOUT), -ENOENT);
	cr_assert_eq(src.events, EPOLLIN);
}

Test(event_loop, watch_changes_only_what_differs)
{
	int epfd;

	cr_assert_eq(event_loop_add(&loop, &src, 0), 0);
	/* With the epoll set out of reach, only a call that needs no system call succeeds. */
	epfd = loop.epfd;
	loop.epfd = -1;
	cr_assert_eq(event_loop_watch(&loop, &src, 0), 0);
	cr_assert_eq(event_loop_watch(&loop, &src, EPOLLIN), -EBADF);
	cr_assert_eq(src.events, 0);
	loop.epfd = epfd;
	cr_assert_eq(event_loop_watch(&loop, &src, EPOLLIN), 0);
	cr_assert_eq(src.events, EPOLLIN);
}

/* ---- the loop thread: removal against the batch in hand ---- */
static struct event_source other;
static atomic_int calls;
static atomic_bool entered, finished;

/* Each of the pair removes the other: whichever runs first, the second, already in
 * the same batch, must not be called. */
static void remove_the_other(struct event_source *s, uint32_t events)
{
	uint64_t v;

	(void)events;
	cr_assert_eq(read(s->fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	atomic_fetch_add(&calls, 1);
	event_loop_remove(&loop, s == &src ? &other : &src);
}

Test(event_loop, a_source_removed_during_its_batch_is_not_called)
{
	uint64_t one = 1;

	other.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	src.fn = other.fn = remove_the_other;
	cr_assert_eq(event_loop_add(&loop, &src, EPOLLIN), 0);
	cr_assert_eq(event_loop_add(&loop, &other, EPOLLIN), 0);
	/* Both ready before the thread's first epoll_wait: one batch holds both. */
	cr_assert_eq(write(src.fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	cr_assert_eq(write(other.fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	cr_assert_eq(event_loop_start(&loop), 0);
	for (int i = 0; i < 200 && !atomic_load(&calls); i++)
		usleep(5000);
	usleep(100000);
	event_loop_stop(&loop);
	cr_assert_eq(atomic_load(&calls), 1);
	close(other.fd);
}

static void slow_callback(struct event_source *s, uint32_t events)
{
	uint64_t v;

	(void)events;
	(void)!read(s->fd, &v, sizeof(v));
	atomic_store(&entered, true);
	usleep(200000);
	atomic_store(&finished, true);
}

Test(event_loop, remove_sync_returns_after_the_running_callback)
{
	uint64_t one = 1;

	src.fn = slow_callback;
	cr_assert_eq(event_loop_add(&loop, &src, EPOLLIN), 0);
	cr_assert_eq(event_loop_start(&loop), 0);
	cr_assert_eq(write(src.fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	for (int i = 0; i < 400 && !atomic_load(&entered); i++)
		usleep(5000);
	cr_assert(atomic_load(&entered));
	cr_assert_eq(event_loop_remove_sync(&loop, &src), 0);
	cr_assert(atomic_load(&finished), "remove_sync returned while the callback ran");
	event_loop_stop(&loop);
}

static void count_callback(struct event_source *s, uint32_t events)
{
	uint64_t v;

	(void)events;
	(void)!read(s->fd, &v, sizeof(v));
	atomic_fetch_add(&calls, 1);
}

Test(event_loop, a_stopped_loop_runs_again_when_restarted)
{
	uint64_t one = 1;

	src.fn = count_callback;
	cr_assert_eq(event_loop_add(&loop, &src, EPOLLIN), 0);
	cr_assert_eq(event_loop_start(&loop), 0);
	event_loop_stop(&loop);
	cr_assert_eq(event_loop_start(&loop), 0);
	cr_assert_eq(write(src.fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	for (int i = 0; i < 400 && !atomic_load(&calls); i++)
		usleep(5000);
	event_loop_stop(&loop);
	cr_assert_eq(atomic_load(&calls), 1);
}
