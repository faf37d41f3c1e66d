// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/serial_console.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

static void serial_console_tx(void *opaque, uint8_t byte)
{
	struct serial_console *c = opaque;

	for (;;) {
		ssize_t n = write(c->out_fd, &byte, 1);

		if (n == 1 || (n < 0 && errno != EINTR && errno != EAGAIN))
			return;	/* a closed stdout drops output rather than stopping the guest */
	}
}

static void serial_console_set_irq(void *opaque, bool level)
{
	struct serial_console *c = opaque;

	c->set_irq(c->opaque, level);
}

/* Runs under the UART lock: only signal the event loop. */
static void serial_console_rx_space(void *opaque)
{
	struct serial_console *c = opaque;
	uint64_t one = 1;

	if (write(c->space_src.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("console: cannot signal input space: %s", strerror(errno));
}

static const struct serial_ops console_serial_ops = {
	.set_irq = serial_console_set_irq,
	.tx = serial_console_tx,
	.rx_space = serial_console_rx_space,
};

/* Applies Ctrl-A escapes in place; returns the bytes left for the guest. */
static size_t serial_console_filter_escapes(struct serial_console *c, uint8_t *buf, size_t len)
{
	size_t out = 0;

	for (size_t i = 0; i < len; i++) {
		uint8_t b = buf[i];

		if (c->escape_seen) {
			c->escape_seen = false;
			if (b == 'x' || b == 'X') {
				if (c->quit)
					c->quit(c->opaque);
				continue;
			}
			if (b != SERIAL_CONSOLE_ESCAPE)
				continue;	/* unknown escape: swallowed */
		} else if (b == SERIAL_CONSOLE_ESCAPE) {
			c->escape_seen = true;
			continue;
		}
		buf[out++] = b;
	}
	return out;
}

static void serial_console_pause_input(struct serial_console *c, bool pause)
{
	if (c->in_closed || c->in_paused == pause)
		return;
	if (event_loop_modify(c->loop, &c->in_src, pause ? 0 : EPOLLIN) == 0)
		c->in_paused = pause;
}

static void serial_console_input(struct event_source *src, uint32_t events)
{
	struct serial_console *c = container_of(src, struct serial_console, in_src);
	uint8_t buf[SERIAL_RX_BUF];
	size_t room = serial_rx_room(&c->serial);
	ssize_t n;

	if (!room) {
		serial_console_pause_input(c, true);
		return;
	}
	n = read(src->fd, buf, MIN(room, sizeof(buf)));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* End of input (or an error): stop watching, the guest keeps running. */
		event_loop_remove(c->loop, src);
		c->in_closed = true;
		return;
	}
	if (c->escapes)
		n = (ssize_t)serial_console_filter_escapes(c, buf, (size_t)n);
	/* room was measured before the read, and only this thread adds bytes: all fit. */
	serial_receive(&c->serial, buf, (size_t)n);
	if (!serial_rx_room(&c->serial))
		serial_console_pause_input(c, true);
}

static void serial_console_space(struct event_source *src, uint32_t events)
{
	struct serial_console *c = container_of(src, struct serial_console, space_src);
	uint64_t v;

	if (read(src->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	serial_console_pause_input(c, false);
}

int serial_console_init(struct serial_console *c, struct event_loop *loop, int in_fd, int out_fd, bool escapes,
		 void (*set_irq)(void *opaque, bool level), void (*quit)(void *opaque), void *opaque)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->out_fd = out_fd;
	c->escapes = escapes;
	c->set_irq = set_irq;
	c->quit = quit;
	c->opaque = opaque;
	serial_init(&c->serial, &console_serial_ops, c);

	c->space_src.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->space_src.fn = serial_console_space;
	if (c->space_src.fd < 0)
		return -errno;
	ret = event_loop_add(loop, &c->space_src, EPOLLIN);
	if (ret)
		return ret;

	c->in_src.fd = in_fd;
	c->in_src.fn = serial_console_input;
	ret = event_loop_add(loop, &c->in_src, EPOLLIN);
	if (ret == -EPERM) {
		/* A regular file or /dev/null cannot be polled: there is no input to wait for. */
		c->in_closed = true;
		ret = 0;
	}
	return ret;
}

void serial_console_destroy(struct serial_console *c)
{
	if (c->space_src.fd > 0)
		close(c->space_src.fd);
	c->space_src.fd = -1;
	serial_destroy(&c->serial);
}
