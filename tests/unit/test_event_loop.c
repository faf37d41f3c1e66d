// SPDX-License-Identifier: GPL-2.0-only
/* The event loop's bookkeeping of what each source is watched for. */
#include <criterion/criterion.h>
#include <errno.h>
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
