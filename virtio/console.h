/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-console with one port, hvc0 in the guest (VIRTIO 1.x §5.3, no
 * MULTIPORT). Private to virtio/console.c and its unit tests; the VM uses
 * virtio/devices.h. The device model (config space) and its userspace
 * back-end (the queues, virtio/userspace.h) share struct virtio_console.
 *
 * Queue 0 (receiveq) carries host input to the guest, queue 1 (transmitq)
 * the guest's output. With a pty, input is read only when the guest has
 * buffers for it, so nothing typed is lost; output waits while the pty is
 * full and someone has it open, and is dropped while nobody does, so the
 * guest (whose hvc driver spins until its buffer comes back) never stalls
 * for a missing reader.
 */
#ifndef VIRTIO_CONSOLE_H
#define VIRTIO_CONSOLE_H

#include <linux/virtio_console.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "virtio/mmio.h"
#include "virtio/options.h"
#include "virtio/userspace.h"
#include "vmm/base/log.h"

#define CONSOLE_RXQ		0
#define CONSOLE_TXQ		1
#define CONSOLE_QUEUE_SIZE	64
#define CONSOLE_RX_BURST	64	/* input chains per wake-up, then other sources get a turn */
#define CONSOLE_RECONNECT_MS	250	/* how often to look for a reader while nobody has the pty */

struct virtio_console {
	struct virtio_mmio_dev dev;	/* transport: registers, config */
	struct userspace_backend ub;	/* the queues' data path */
	struct virtio_console_config config;
	enum console_backend backend;
	int fd;				/* pty master, or the output file; owned */
	char pty_path[64];		/* /dev/pts/N */

	/* PTY back-end. */
	struct event_source pty_src;	/* the master: in the loop only while someone has the pty open */
	struct event_source timer_src;	/* timerfd: while nobody has it open, looks for a reader */
	bool pty_watched, timer_watched;
	bool connected;			/* someone has the pty open */
	bool rx_waiting;		/* receiveq has no buffers: input waits in the pty */
	bool tx_blocked;		/* the pty is full: waiting for EPOLLOUT */
	/* Progress in the transmit chain at tx_head when the pty took only part of it. */
	bool tx_partial;
	uint16_t tx_head;
	size_t tx_done;

	struct virtq_chain *chain;
	struct log_ratelimit rl;
	uint64_t rx_bytes, tx_bytes, tx_dropped;	/* dropped: nobody reading, or write errors */
};

/*
 * Reads from fd straight into c's writable segments. Returns the bytes read,
 * 0 for a chain without writable bytes, -EAGAIN when fd has nothing now
 * (also for a pty nobody has open, which reads as EIO, or end of file), or
 * another -errno. The bytes read are marked dirty (virtq_chain_mark_written).
 */
ssize_t virtio_console_rx_chain(int fd, const struct virtq_chain *c);

/*
 * Writes c's readable segments to fd from byte *done on, advancing *done.
 * Returns 0 once everything is written, -EAGAIN when fd is full (*done says
 * how far it got), or another -errno.
 */
int virtio_console_tx_chain(int fd, const struct virtq_chain *c, size_t *done);

/* Whether someone has the pty whose master is fd open (the master reports a hang-up otherwise). */
bool virtio_console_pty_has_reader(int fd);

/*
 * Creates the device over a pty or a file (see virtio/devices.h): 0 with *out
 * set, or -errno after log_error().
 */
int virtio_console_create(struct virtio_host *host, const struct console_options *o,
			  const char *name, uint64_t base, uint32_t gsi,
			  struct virtio_console **out);

/* Tears down the transport and the back-end, closes the pty or file, frees c; NULL is ignored. */
void virtio_console_destroy(struct virtio_console *c);

#endif
