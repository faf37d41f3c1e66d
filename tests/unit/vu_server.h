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
	VS_REFUSE_FIRST_ADDR,	/* acks the first SET_VRING_ADDR with an error */
	VS_ACKS_AT_ENABLE,	/* holds a ring's setup acks until its SET_VRING_ENABLE */
};

/* How the hostile back-end takes part in a migration (struct vu_evil_opts.state). */
enum vs_state_fault {
	VS_STATE_OK,		/* our pipe; SAVE writes the whole state, LOAD reads to EOF */
	VS_STATE_OWN_FD,	/* answers with its own pipe end (invalid-FD flag clear) */
	VS_STATE_CHECK_FAILS,	/* CHECK_DEVICE_STATE answers 1 */
	VS_STATE_REFUSE,	/* SET_DEVICE_STATE_FD answers 0x101 */
	VS_STATE_STALL,		/* moves stall_after bytes, then nothing until the front-end gives up */
	VS_STATE_SHORT_REPLY,	/* SET_DEVICE_STATE_FD's reply has 4 bytes */
	VS_STATE_NO_FD,		/* the reply promises an fd (0) and has none */
	VS_STATE_ERROR_AND_FD,	/* the reply is an error (1) with an fd */
	VS_STATE_NOT_A_PIPE,	/* answers with its own fd, a memfd */
	VS_STATE_BAD_CHECK,	/* CHECK_DEVICE_STATE's reply names another request */
};

/* SET_LOG_BASE's reply, as each implementation answers it. */
enum vs_log_reply {
	VS_LOG_ZERO,		/* a u64 0 (vmm-vhost-user-blk's library) */
	VS_LOG_SIZE,		/* a u64 holding mmap_size (libvhost-user) */
	VS_LOG_ECHO,		/* the 16-byte request echoed (rust-vmm's vhost) */
	VS_LOG_EMPTY,		/* no payload (DPDK) */
	VS_LOG_REFUSED,		/* a u64 1 */
	VS_LOG_ODD_SIZE,	/* a 12-byte payload */
};

/* The hostile back-end's part in migrations; all zero: none (ve_start). */
struct vu_evil_opts {
	uint64_t extra_features;	/* offered besides VERSION_1, bit 30, EVENT_IDX */
	uint64_t extra_protocol;	/* offered besides its usual protocol features */
	uint64_t drop_protocol;		/* its usual ones it does not offer */
	enum vs_state_fault state;
	size_t state_len;		/* bytes SAVE writes: byte i is vs_state_byte(i) */
	size_t stall_after;		/* VS_STATE_STALL */
	enum vs_log_reply log_reply;
};

/* Byte i of a test state. */
static inline uint8_t vs_state_byte(size_t i)
{
	return (uint8_t)(i * 7 + (i >> 12));
}

#define VE_MAX_REQS	512

struct vu_evil {
	pthread_t thread;
	int sock;
	enum vs_fault fault;
	struct vu_evil_opts o;
	int channel;			/* the back-end request channel it got, or -1 */
	atomic_bool channel_ready;
	/* What it saw (read by the test after the front-end's call returned). */
	atomic_uint nreqs;		/* requests received; the first VE_MAX_REQS in reqs */
	uint32_t reqs[VE_MAX_REQS];
	atomic_size_t state_written;	/* SAVE: bytes written so far */
	atomic_size_t loaded;		/* LOAD: bytes read so far */
	atomic_bool loaded_ok;		/* LOAD: every byte was vs_state_byte(i) */
	atomic_bool transfer_done;	/* the transfer's fd was closed by the back-end */
	atomic_int checks;		/* CHECK_DEVICE_STATE requests */
	atomic_uint_least64_t features;	/* the last SET_FEATURES */
	atomic_uint_least64_t log_size;	/* the last SET_LOG_BASE's mmap_size */
	atomic_uint addr_flags[4];	/* the last SET_VRING_ADDR's flags, per ring */
	atomic_int addr_refusals;	/* SET_VRING_ADDRs acked with an error */
};

/* Runs the hostile back-end on sock (taken over) with one fault. */
void ve_start(struct vu_evil *e, int sock, enum vs_fault fault);
/* The same, with its part in migrations (o: copied; NULL: none). */
void ve_start_with(struct vu_evil *e, int sock, enum vs_fault fault,
		   const struct vu_evil_opts *o);
/*
 * The hostile back-end with one fault on a fresh unix socket: create(path,
 * arg) runs on a thread (a front-end's set-up waits for answers) while the
 * back-end serves the connection it accepts. Returns what create returned;
 * the socket's path is gone again.
 */
int ve_start_listen(struct vu_evil *e, enum vs_fault fault,
		    int (*create)(const char *path, void *arg), void *arg);
/* How many requests of id req it received. */
unsigned int ve_count(struct vu_evil *e, uint32_t req);
/* Waits for it to end (the front-end closed) and closes what it holds. */
void ve_join(struct vu_evil *e);

/*
 * A device of its own on the back-end library, on a thread (a poll loop as
 * vu_server's): it pops every chain a kick brings; the next `hold` chains
 * stay in flight for ever (as requests a back-end was busy with), the others
 * are answered at once (each writable byte set to 0xab). Its part of the
 * device state (state_save/load) is part[0, part_len). For the migration of
 * in-flight requests from one back-end to a fresh one.
 */
struct vu_toy {
	struct vu_dev dev;		/* first: container_of from the library's callbacks */
	pthread_t thread;
	bool running;
	int sock, stop_fd;
	struct vs_watch w[48];
	pthread_mutex_t lock;		/* the fields below, between its thread and the test */
	unsigned int hold;
	uint16_t popped[64];		/* heads in pop order */
	unsigned int npopped;
	uint8_t part[64];
	size_t part_len;
	uint8_t loaded[64];		/* what state_load got */
	size_t loaded_len;
};

/* Serves sock (taken over) with nqueues queues of up to 256 entries. */
void vt_start(struct vu_toy *t, int sock, unsigned int nqueues);
/* Stops the thread, frees the library's part, closes the socket. */
void vt_stop(struct vu_toy *t);
/* Waits up to timeout_ms until it popped n chains; whether it did. */
bool vt_wait_popped(struct vu_toy *t, unsigned int n, int timeout_ms);

#endif
