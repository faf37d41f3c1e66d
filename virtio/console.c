// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-console, one port (hvc0), over a host pseudo-terminal or a log
 * file (see virtio/console.h).
 *
 * A pty master reports a hang-up whenever nobody has the slave open, and
 * epoll reports hang-ups whatever it is asked for, so while nobody has it
 * open the master leaves the event loop and a timer looks for a reader every
 * CONSOLE_RECONNECT_MS instead. To make "never opened" look like "closed",
 * the device opens and closes the slave once at creation.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "virtio/console.h"
#include "vmm/base/util.h"

static struct virtio_console *to_console(struct virtio_mmio_dev *d)
{
	return container_of(d, struct virtio_console, dev);
}

ssize_t virtio_console_rx_chain(int fd, const struct virtq_chain *c)
{
	if (!c->in_len)
		return 0;
	for (;;) {
		ssize_t n = readv(fd, c->iov + c->nout, (int)c->nin);

		if (n > 0) {
			virtq_chain_mark_written(c, 0, (size_t)n);
			return n;
		}
		if (n == 0)
			return -EAGAIN;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EIO ? -EAGAIN : -errno;
	}
}

int virtio_console_tx_chain(int fd, const struct virtq_chain *c, size_t *done)
{
	size_t skip = *done;

	for (unsigned int i = 0; i < c->nout; i++) {
		const uint8_t *p = c->iov[i].iov_base;
		size_t len = c->iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		p += skip;
		len -= skip;
		skip = 0;
		while (len) {
			ssize_t n = write(fd, p, len);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0)
				return -EIO;
			p += n;
			len -= (size_t)n;
			*done += (size_t)n;
		}
	}
	return 0;
}

bool virtio_console_pty_has_reader(int fd)
{
	struct pollfd p = { .fd = fd, .events = 0 };

	return poll(&p, 1, 0) >= 0 && !(p.revents & POLLHUP);
}

/* Watches the pty master for what the device needs now; nothing while the driver is not running. */
static void console_update_events(struct virtio_console *c)
{
	uint32_t want = 0;
	int ret;

	if (!c->pty_watched)
		return;
	if (userspace_backend_running(&c->ub, CONSOLE_RXQ) && !c->rx_waiting)
		want |= EPOLLIN;
	if (userspace_backend_running(&c->ub, CONSOLE_TXQ) && c->tx_blocked)
		want |= EPOLLOUT;
	ret = event_loop_watch(c->dev.host->loop, &c->pty_src, want);
	if (ret)
		log_warn_ratelimited(&c->rl, "%s: cannot change the events watched on %s: %s",
				     c->dev.name, c->pty_path, strerror(-ret));
}

static void console_arm_timer(struct virtio_console *c, bool on)
{
	struct itimerspec its = { 0 };

	if (on) {
		its.it_value = timespec_from_ms(CONSOLE_RECONNECT_MS);
		its.it_interval = its.it_value;
	}
	if (timerfd_settime(c->timer_src.fd, 0, &its, NULL) < 0)
		log_warn_ratelimited(&c->rl, "%s: cannot set the reconnect timer: %s", c->dev.name,
				     strerror(errno));
}

/* Moves the master into the event loop when a reader came, out of it when the reader left. */
static void console_set_connected(struct virtio_console *c, bool connected)
{
	if (c->connected == connected)
		return;
	c->connected = connected;
	if (connected) {
		console_arm_timer(c, false);
		if (event_loop_add(c->dev.host->loop, &c->pty_src, 0) == 0) {
			c->pty_watched = true;
			console_update_events(c);
		} else {
			log_warn_ratelimited(&c->rl, "%s: cannot watch %s: %s", c->dev.name,
					     c->pty_path, strerror(errno));
		}
	} else {
		if (c->pty_watched)
			event_loop_remove(c->dev.host->loop, &c->pty_src);
		c->pty_watched = false;
		console_arm_timer(c, true);
	}
}

/* Whether a transmit the output cannot take now should wait (true) or be dropped (false). */
static bool console_tx_should_wait(struct virtio_console *c)
{
	if (c->backend != CONSOLE_BACKEND_PTY || !virtio_console_pty_has_reader(c->fd))
		return false;
	console_set_connected(c, true);
	return true;
}

/* Moves pty input into the receive queue while both have some. d->lock held. */
static void console_rx(struct virtio_console *c)
{
	struct virtq *vq = userspace_backend_vq(&c->ub, CONSOLE_RXQ);
	uint16_t used_before = vq->used_idx;

	for (unsigned int i = 0; i < CONSOLE_RX_BURST; i++) {
		ssize_t n;
		int ret = virtq_pop(vq, c->chain);

		if (ret < 0) {
			userspace_backend_error(&c->ub, CONSOLE_RXQ, "malformed receive queue");
			break;
		}
		if (ret == 0) {
			virtq_set_notify(vq, true);
			if (virtq_has_work(vq))
				continue;
			c->rx_waiting = true;
			break;
		}
		n = virtio_console_rx_chain(c->fd, c->chain);
		if (n < 0) {
			virtq_unpop(vq);
			if (n != -EAGAIN)
				log_warn_ratelimited(&c->rl, "%s: cannot read %s: %s", c->dev.name,
						     c->pty_path, strerror((int)-n));
			break;
		}
		if (virtq_push(vq, c->chain->head, (uint32_t)n)) {
			userspace_backend_error(&c->ub, CONSOLE_RXQ, "malformed receive queue");
			break;
		}
		c->rx_bytes += (uint64_t)n;
	}
	if (vq->used_idx != used_before)
		userspace_backend_signal(&c->ub, CONSOLE_RXQ);
	console_update_events(c);
}

/* Writes the transmit queue out until it is empty or a reader's pty is full. d->lock held. */
static void console_tx(struct virtio_console *c)
{
	struct virtq *vq = userspace_backend_vq(&c->ub, CONSOLE_TXQ);
	struct virtq_chain *ch = c->chain;
	bool pushed = false;

	c->tx_blocked = false;
	for (;;) {
		size_t before;
		int ret = virtq_pop(vq, ch);

		if (ret < 0) {
			userspace_backend_error(&c->ub, CONSOLE_TXQ, "malformed transmit queue");
			break;
		}
		if (ret == 0) {
			virtq_set_notify(vq, true);
			if (virtq_has_work(vq))
				continue;
			break;
		}
		/* Resume a chain the pty took part of; the driver cannot change it while it is ours. */
		if (!c->tx_partial || c->tx_head != ch->head || c->tx_done > ch->out_len)
			c->tx_done = 0;
		c->tx_partial = false;
		before = c->tx_done;
		ret = virtio_console_tx_chain(c->fd, ch, &c->tx_done);
		c->tx_bytes += c->tx_done - before;
		if (ret == -EAGAIN && console_tx_should_wait(c)) {
			c->tx_partial = true;
			c->tx_head = ch->head;
			c->tx_blocked = true;
			virtq_unpop(vq);
			break;
		}
		if (ret) {
			c->tx_dropped += ch->out_len - c->tx_done;
			if (ret != -EAGAIN)
				log_warn_ratelimited(&c->rl, "%s: cannot write the guest's output: %s; "
						     "dropped", c->dev.name, strerror(-ret));
		}
		if (virtq_push(vq, ch->head, 0)) {
			userspace_backend_error(&c->ub, CONSOLE_TXQ, "malformed transmit queue");
			break;
		}
		pushed = true;
	}
	if (pushed)
		userspace_backend_signal(&c->ub, CONSOLE_TXQ);
	console_update_events(c);
}

/* The userspace back-end's queue handler: the driver added input buffers or output. */
static void console_queue_kick(struct userspace_backend *ub, unsigned int q)
{
	struct virtio_console *c = container_of(ub, struct virtio_console, ub);

	if (q == CONSOLE_RXQ && c->backend == CONSOLE_BACKEND_PTY) {
		c->rx_waiting = false;
		console_rx(c);
	} else if (q == CONSOLE_TXQ && !c->tx_blocked) {
		console_tx(c);
	}
}

static void console_pty_ready(struct event_source *src, uint32_t events)
{
	struct virtio_console *c = container_of(src, struct virtio_console, pty_src);
	bool rx_running, tx_running;

	pthread_mutex_lock(&c->dev.lock);
	rx_running = userspace_backend_running(&c->ub, CONSOLE_RXQ);
	tx_running = userspace_backend_running(&c->ub, CONSOLE_TXQ);
	/* Input still in the pty after a hang-up is delivered too. */
	if (rx_running && (events & EPOLLIN) && !c->rx_waiting)
		console_rx(c);
	if (events & (EPOLLHUP | EPOLLERR)) {
		console_set_connected(c, false);
		if (tx_running && c->tx_blocked)
			console_tx(c);	/* drops what waited for the reader that left */
	} else if (tx_running && (events & EPOLLOUT) && c->tx_blocked) {
		console_tx(c);
	}
	console_update_events(c);
	pthread_mutex_unlock(&c->dev.lock);
}

static void console_reconnect_tick(struct event_source *src, uint32_t events)
{
	struct virtio_console *c = container_of(src, struct virtio_console, timer_src);
	uint64_t ticks;

	/* Only clears the expirations: what matters is the pty's state now. */
	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_warn_ratelimited(&c->rl, "%s: cannot read the reconnect timer: %s", c->dev.name,
				     strerror(errno));
	pthread_mutex_lock(&c->dev.lock);
	if (!c->connected && virtio_console_pty_has_reader(c->fd))
		console_set_connected(c, true);
	pthread_mutex_unlock(&c->dev.lock);
}

static int console_activate(struct virtio_mmio_dev *d)
{
	struct virtio_console *c = to_console(d);

	c->rx_waiting = false;
	c->tx_blocked = false;
	console_update_events(c);
	return 0;
}

static void console_reset(struct virtio_mmio_dev *d)
{
	struct virtio_console *c = to_console(d);

	c->rx_waiting = false;
	c->tx_blocked = false;
	c->tx_partial = false;
	c->tx_done = 0;
	console_update_events(c);
}

/* The back-end started or stopped a queue: the pty is watched for what running queues need. */
static void console_queue_state(struct userspace_backend *ub, unsigned int q, bool running)
{
	console_update_events(container_of(ub, struct virtio_console, ub));
}

static const struct userspace_backend_ops console_backend_ops = {
	.queue_kick = console_queue_kick,
	.queue_state = console_queue_state,
};

void virtio_console_destroy(struct virtio_console *c)
{
	if (!c)
		return;
	virtio_mmio_destroy(&c->dev);
	if (c->ub.be.ops)
		c->ub.be.ops->destroy(&c->ub.be);
	if (c->pty_watched)
		event_loop_remove_sync(c->dev.host->loop, &c->pty_src);
	if (c->timer_watched)
		event_loop_remove_sync(c->dev.host->loop, &c->timer_src);
	if (c->timer_src.fd >= 0)
		close(c->timer_src.fd);
	if (c->fd >= 0)
		close(c->fd);
	free(c->chain);
	free(c);
}

static void console_destroy(struct virtio_mmio_dev *d)
{
	virtio_console_destroy(to_console(d));
}

/*
 * Migration: how far the pty got in a transmit chain it took only part of (the
 * chain itself went back to the ring, so the destination pops it again and
 * writes only the rest). Input not yet read stays in the source's pty: it is
 * the host side's, like bytes still on a wire. Whether the queues waited for
 * the pty is not kept: the destination's resume kicks every queue, and a
 * console on a file or without a reader writes (or drops) at once.
 */
#define CONSOLE_STATE_VERSION	1

static int console_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	struct virtio_console *c = to_console(d);

	sbuf_put_u32(out, CONSOLE_STATE_VERSION);
	sbuf_put_u8(out, c->tx_partial);
	sbuf_put_u16(out, c->tx_partial ? c->tx_head : 0);
	sbuf_put_u32(out, c->tx_partial ? (uint32_t)MIN(c->tx_done, (size_t)UINT32_MAX) : 0);
	return 0;
}

static int console_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	struct virtio_console *c = to_console(d);
	const struct virtq_state *txq = &d->queues[CONSOLE_TXQ];
	bool partial;
	uint16_t head;
	uint32_t done;
	int ret = virtio_mmio_load_version(d, in, CONSOLE_STATE_VERSION);

	if (ret)
		return ret;
	partial = sbuf_get_bool(in);
	head = sbuf_get_u16(in);
	done = sbuf_get_u32(in);
	ret = sbuf_finish(in);
	if (ret)
		return ret;
	ret = virtio_mmio_load_config_same(d, "the console's config space");
	if (ret)
		return ret;
	if (partial && (!txq->ready || head >= txq->size)) {
		log_error("%s: the incoming console state names transmit chain %u of a queue of "
			  "%u", d->name, head, txq->ready ? txq->size : 0);
		return -EINVAL;
	}
	c->tx_partial = partial;
	c->tx_head = partial ? head : 0;
	c->tx_done = partial ? done : 0;
	c->tx_blocked = false;
	c->rx_waiting = false;
	return 0;
}

static const struct virtio_dev_ops console_ops = {
	.name = "virtio-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.nqueues = 2,
	.queue_max_size = CONSOLE_QUEUE_SIZE,
	.activate = console_activate,
	.reset = console_reset,
	.destroy = console_destroy,
	.save = console_save,
	.load = console_load,
};

/* Opens a pty in raw mode, in the hung-up state; 0 or -errno with what failed in *what. */
static int console_open_pty(struct virtio_console *c, const char **what)
{
	struct termios t;
	int slave;

	*what = "open /dev/ptmx";
	c->fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (c->fd < 0)
		return -errno;
	*what = "set up the pty";
	if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0 || grantpt(c->fd) || unlockpt(c->fd) ||
	    ptsname_r(c->fd, c->pty_path, sizeof(c->pty_path)))
		return -errno;
	/* Settings made through the master apply to the slave: no echo, no line editing, 8 bits. */
	*what = "make the pty raw";
	if (tcgetattr(c->fd, &t))
		return -errno;
	cfmakeraw(&t);
	if (tcsetattr(c->fd, TCSANOW, &t))
		return -errno;
	*what = "open the pty's slave";
	slave = open(c->pty_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		return -errno;
	close(slave);

	*what = "create the reconnect timer";
	c->timer_src.fn = console_reconnect_tick;
	c->timer_src.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (c->timer_src.fd < 0)
		return -errno;
	*what = "watch the reconnect timer";
	if (event_loop_add(c->dev.host->loop, &c->timer_src, EPOLLIN) < 0)
		return -errno;
	c->timer_watched = true;
	c->pty_src.fd = c->fd;
	c->pty_src.fn = console_pty_ready;
	console_arm_timer(c, true);
	return 0;
}

int virtio_console_create(struct virtio_host *host, const struct console_options *o,
			  const char *name, uint64_t base, uint32_t gsi,
			  struct virtio_console **out)
{
	struct virtio_console *c = calloc(1, sizeof(*c));
	const char *what;
	int ret;

	*out = NULL;
	if (!c || !(c->chain = malloc(sizeof(*c->chain)))) {
		free(c);
		log_error("%s: out of memory — free host memory or drop the device", name);
		return -ENOMEM;
	}
	c->dev.host = host;
	c->backend = o->backend;
	c->fd = -1;
	c->timer_src.fd = -1;
	c->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	c->config.max_nr_ports = htole32(1);

	switch (o->backend) {
	case CONSOLE_BACKEND_PTY:
		ret = console_open_pty(c, &what);
		if (ret) {
			log_error("%s: cannot %s: %s — check that /dev/pts is mounted and "
				  "file limits", name, what, strerror(-ret));
			goto fail;
		}
		break;
	case CONSOLE_BACKEND_FILE:
		if (!o->path || !o->path[0]) {
			log_error("%s: no output file given — name a file for the console log", name);
			ret = -EINVAL;
			goto fail;
		}
		c->fd = open(o->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (c->fd < 0) {
			ret = -errno;
			log_error("%s: cannot open %s: %s — check the path and its permissions", name,
				  o->path, strerror(-ret));
			goto fail;
		}
		break;
	default:
		log_error("%s: unknown console back-end %d — use pty or a file", name, o->backend);
		ret = -EINVAL;
		goto fail;
	}

	userspace_backend_init(&c->ub, &console_backend_ops, host->mem, host->loop, &c->dev.lock, 2,
			       0);
	ret = virtio_mmio_init(&c->dev, &console_ops, host, name, base, gsi, 0, &c->config,
			       sizeof(c->config), &c->ub.be);
	if (ret) {
		log_error("%s: cannot set up the transport: %s — check file and memory limits", name,
			  strerror(-ret));
		goto fail;
	}
	if (o->backend == CONSOLE_BACKEND_PTY)
		fprintf(stderr, "vmm: virtio-console: %s is on %s\n", name, c->pty_path);
	*out = c;
	return 0;

fail:
	virtio_console_destroy(c);
	return ret;
}
