/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Back-ends on a thread of their own for unit tests of the VMM's vhost-user
 * front-end (vhost/user.h), whose requests are synchronous:
 * - vmm-vhost-user-blk's device (vhost/vu_blk.h) over one end of a
 *   socketpair or on a listening unix socket (for reconnects), driven by a
 *   poll loop that runs vu_dispatch and the library's watches;
 * - a scripted hostile back-end that answers like a sane one except for the
 *   one fault it is told to make.
 */
#ifndef TESTS_VU_SERVER_H
#define TESTS_VU_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vhost/vu_blk.h"

#define VS_IMG_SIZE	(1u << 20)

struct vs_watch {
	int fd;
	uint32_t events;
	vu_watch_cb cb;
	void *data;
	bool on;
};

struct vu_server {
	struct vu_blk b;		/* first: container_of from the library's callbacks */
	pthread_t thread;
	bool running;
	int sock;			/* the connected socket the thread serves */
	int listen_fd;			/* -1, or a listening socket to accept from (path) */
	int stop_fd;			/* eventfd: the thread ends */
	char img[64];
	char path[108];			/* the listening socket's path, if any */
	struct vs_watch w[48];
	atomic_int connections;		/* front-ends served so far */
	atomic_bool die;		/* close the connection at the next chance */
	unsigned int nqueues;
	/*
	 * Set before starting: GET_CONFIG past this many bytes fails (a zero-length
	 * reply), as with a back-end built against a shorter struct virtio_blk_config
	 * (QEMU 7.2's qemu-storage-daemon: 60 bytes). 0: no limit.
	 */
	uint32_t config_max;
	struct vu_iface iface;		/* the device's, with config_max applied */
	int (*dev_get_config)(struct vu_dev *dev, uint8_t *buf, uint32_t offset, uint32_t len);
};

/* Creates an image (sector i filled with byte i) and opens the device over it. */
void vs_init(struct vu_server *s, unsigned int nqueues);
/* Serves the given connected socket on a thread (taken over). */
void vs_start_fd(struct vu_server *s, int sock);
/* Listens on a fresh unix socket path (s->path) and serves each front-end that connects. */
void vs_start_listen(struct vu_server *s);
/* Stops the thread, closes everything, removes the image and the socket. */
void vs_fini(struct vu_server *s);
/* Ends the thread abruptly, as a killed back-end (the socket closes); the image stays. */
void vs_kill(struct vu_server *s);

/* The hostile back-end's faults. */
enum vs_fault {
	VS_OK,
	VS_WRONG_ID,		/* a reply to GET_FEATURES carries another request id */
	VS_WRONG_SIZE,		/* a 4-byte reply */
	VS_WRONG_FLAGS,		/* a reply without the REPLY flag */
	VS_EXTRA_FD,		/* a reply with an fd nobody asked for */
	VS_HANGUP,		/* closes after reading GET_FEATURES */
	VS_NO_VERSION_1,	/* features without VIRTIO_F_VERSION_1 */
	VS_REFUSE_OWNER,	/* acks SET_OWNER with an error */
	VS_ZERO_QUEUES,		/* GET_QUEUE_NUM 0 */
	VS_NO_MQ,		/* protocol features without MQ (no GET_QUEUE_NUM) */
	VS_ONE_QUEUE,		/* GET_QUEUE_NUM 1 (e.g. one virtio-net queue pair) */
	VS_BAD_CONFIG,		/* GET_CONFIG's reply for another offset */
	VS_BAD_VRING_BASE,	/* GET_VRING_BASE for another ring */
	VS_GARBAGE,		/* bytes that are no message, at GET_PROTOCOL_FEATURES */
};

struct vu_evil {
	pthread_t thread;
	int sock;
	enum vs_fault fault;
	int channel;			/* the back-end request channel it got, or -1 */
	atomic_bool channel_ready;
};

/* Runs the hostile back-end on sock (taken over) with one fault. */
void ve_start(struct vu_evil *e, int sock, enum vs_fault fault);
/* Waits for it to end (the front-end closed) and closes what it holds. */
void ve_join(struct vu_evil *e);

#endif
