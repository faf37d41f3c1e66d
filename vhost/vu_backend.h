/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The project's vhost-user back-end library (modelled on QEMU's
 * libvhost-user): it speaks the protocol on one connected socket and gives a
 * device its virtqueues in the back-end's own address space.
 *
 * Shape:
 * - No event loop of its own. The caller calls vu_dispatch() when the
 *   socket is readable; the library asks the caller (struct vu_ops) to watch
 *   the fds it needs (kick fds when the device wants kicks delivered, the
 *   device-state pipe) and the caller runs the callback when they are ready.
 * - Functions return 0 or -errno. A protocol violation (bad framing, wrong
 *   size or fd count, bad queue index, unknown request, addresses outside the
 *   memory table) makes the device `broken`: every queue is stopped, every
 *   later call fails with -EIO, and the caller should close the connection.
 *   A request that is well-formed but cannot be honoured is answered with an
 *   error (REPLY_ACK) and leaves the device running.
 * - The device embeds struct vu_dev and gets back with container_of from the
 *   callbacks (struct vu_iface).
 *
 * Memory: SET_MEM_TABLE (one fd per region, with mmap offsets) or
 * ADD_MEM_REG / REM_MEM_REG (CONFIGURE_MEM_SLOTS, GET_MAX_MEM_SLOTS =
 * VU_MAX_MEM_SLOTS). Each region's fd must be a regular file (a memfd) at
 * least mmap_offset + size long; it is mapped shared and closed. Every guest
 * address goes through the checked translation of vmm/base/guest_mem.h over
 * those mappings, which shortens at region ends; ring addresses (front-end
 * virtual addresses) are translated to guest-physical ones through the table.
 * A front-end that later truncates its memfd can still make an access fault
 * (as in every vhost-user back-end).
 *
 * Queues: split rings only, with VIRTIO_RING_F_EVENT_IDX and INDIRECT_DESC.
 * A ring starts on SET_VRING_KICK (with an fd) once its size and addresses
 * are set, and stops on GET_VRING_BASE, whose reply is the next avail index.
 * Chains are popped through virtio/virtq.h's walker (loops, bounds, indirect
 * tables, readable-before-writable, zero lengths, region ends). Enabled state
 * (SET_VRING_ENABLE, only with VHOST_USER_F_PROTOCOL_FEATURES; without it
 * every ring is enabled) is reported by vu_queue_enabled(); as in
 * libvhost-user, the library runs started rings whether enabled or not and a
 * device with side effects to avoid checks it.
 *
 * Threads: vu_dispatch() and the watch callbacks run on the caller's control
 * thread. A started queue belongs to the device between iface->queue_start()
 * and iface->queue_stop(): the vu_queue_* functions may run on any one
 * thread of the device's choosing for that queue (blk: its I/O worker).
 * Before the library changes anything a running queue uses (memory table,
 * log, inflight area, call fd, features, ring addresses), it calls
 * queue_stop(), which must return only when the device no longer touches the
 * queue, and queue_start() again afterwards.
 *
 * In-flight requests: every chain popped and not yet pushed is tracked
 * (in the INFLIGHT_SHMFD area as vhost-user.rst's split layout describes,
 * when the front-end gave one, and in the library). A device's queue_stop()
 * may leave chains unfinished: they stay in flight and are popped again
 * first when the queue starts (after a reconnect, from the shared area, with
 * the avail index recomputed as used->idx + in-flight count).
 *
 * Migration: VHOST_F_LOG_ALL with LOG_SHMFD logs every page the back-end
 * writes (descriptor buffers up to the bytes written, and the used ring at
 * log_guest_addr when the ring has VHOST_VRING_F_LOG). DEVICE_STATE
 * (SET_DEVICE_STATE_FD in phase STOPPED, CHECK_DEVICE_STATE) saves and loads
 * each queue's position, EVENT_IDX notification state, enabled state and
 * in-flight chains (in submission order), the acked features and the
 * device's own part (iface->state_save/load) in a versioned, checksummed
 * little-endian stream, written and read through the front-end's pipe (the
 * reply always has the invalid-FD flag), in chunks, without blocking the
 * control thread.
 */
#ifndef VHOST_VU_BACKEND_H
#define VHOST_VU_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhost/user_proto.h"
#include "virtio/virtq.h"
#include "vmm/base/guest_mem.h"

#define VU_MAX_QUEUES		64
#define VU_MAX_MEM_SLOTS	GUEST_MEM_MAX_REGIONS
#define VU_MSG_TIMEOUT_MS	5000	/* the rest of a message, a reply to send, a transfer to end */
#define VU_STATE_MAX		(16u << 20)	/* a loaded device state, at most */

struct vu_dev;

/* A watched fd is ready (events: POLLIN / POLLOUT as asked, or POLLERR / POLLHUP). */
typedef void (*vu_watch_cb)(struct vu_dev *dev, int fd, uint32_t events, void *data);

/* The caller's event loop, as the library sees it. */
struct vu_ops {
	/* Watch fd for events (POLLIN or POLLOUT); replaces an earlier watch of fd. 0 or -errno. */
	int (*set_watch)(struct vu_dev *dev, int fd, uint32_t events, vu_watch_cb cb, void *data);
	/* Stop watching fd (before the library closes it). */
	void (*remove_watch)(struct vu_dev *dev, int fd);
};

/* The device. Only queue_start and queue_stop are required. */
struct vu_iface {
	/* Config space: copy [offset, offset + len) into buf; 0 or -errno (NULL: no CONFIG). */
	int (*get_config)(struct vu_dev *dev, uint8_t *buf, uint32_t offset, uint32_t len);
	/* A SET_CONFIG write (flags as in the message); 0 or -errno (NULL: refused). */
	int (*set_config)(struct vu_dev *dev, const uint8_t *buf, uint32_t offset, uint32_t len,
			  uint32_t flags);
	/* Queue q may run now (rings mapped; vu_queue_kick_fd() is its kick eventfd). */
	void (*queue_start)(struct vu_dev *dev, unsigned int q);
	/* Queue q must stop; return only when nothing touches it (unfinished chains stay in flight). */
	void (*queue_stop)(struct vu_dev *dev, unsigned int q);
	/* Optional: the library watches each running queue's kick fd and calls this on a kick. */
	void (*queue_kick)(struct vu_dev *dev, unsigned int q);
	/* Optional: the device's part of the state: writes up to len bytes, returns the size it needs, or -errno. */
	int (*state_save)(struct vu_dev *dev, uint8_t *buf, size_t len);
	/* Optional: takes a saved device part; 0 or -errno (-EINVAL: it does not fit this device). */
	int (*state_load)(struct vu_dev *dev, const uint8_t *buf, size_t len);
};

struct vu_config {
	const char *name;		/* for messages */
	int sock;			/* connected AF_UNIX stream socket, still the caller's */
	unsigned int nqueues;		/* 1..VU_MAX_QUEUES */
	uint16_t max_queue_size;	/* power of two, up to VIRTQ_MAX_SIZE */
	uint64_t features;		/* the device's virtio features (VERSION_1, device bits) */
	uint64_t protocol_features;	/* extra protocol features the device wants offered (MQ...) */
	const struct vu_iface *iface;
	const struct vu_ops *ops;
};

struct vu_region {
	uint64_t gpa, size, qva, mmap_offset;
	void *map;			/* the mmap() */
	size_t map_len;
	uint8_t *hva;			/* host address of gpa */
};

struct vu_inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};

struct vu_inflight_queue {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct vu_inflight_desc desc[];
};

/* What the library knows of one chain it handed out and did not get back. */
struct vu_track {
	uint64_t counter;		/* submission order, from 1 */
	bool inflight;
};

/* A queue's part of a loaded device state, applied when the queue starts. */
struct vu_loaded_queue {
	bool valid;
	uint16_t num, last_avail_idx, used_idx;	/* as saved (passed on by a save before a start) */
	uint16_t signalled_used;
	bool signalled_used_valid;
	unsigned int ninflight;
	uint16_t *heads;		/* in submission order */
};

struct vu_queue {
	unsigned int index;
	uint16_t num;			/* SET_VRING_NUM, 0: unset */
	bool addr_set;
	uint32_t addr_flags;
	uint64_t desc_qva, avail_qva, used_qva, log_gpa;
	int kick_fd, call_fd, err_fd;
	/* A call fd replaced while the ring ran: a completion thread may still signal it, so
	 * it is closed at the ring's next halt (when no such thread runs). */
	int old_call_fd;
	bool started;			/* SET_VRING_KICK .. GET_VRING_BASE */
	bool enabled;
	bool running;			/* the device has it (queue_start called) */
	bool err_signalled;
	struct virtq_state pos;		/* position while not running */
	struct virtq vq;		/* while running */

	struct vu_track *track;		/* num entries */
	uint64_t counter;		/* the next submission's */
	uint16_t *resubmit;		/* heads to pop again first, in order */
	unsigned int nresubmit, resubmit_pos;
	uint16_t *batch;		/* heads pushed since the last flush */
	unsigned int nbatch;
	struct vu_inflight_queue *shm;	/* this queue's INFLIGHT_SHMFD area, or NULL */
	struct vu_loaded_queue loaded;
};

/* A device-state transfer in progress. */
struct vu_transfer {
	int fd;				/* the front-end's pipe end, or -1 */
	bool active, load;
	uint8_t *buf;
	size_t len, cap, pos;
	int result;			/* 0, or -errno once known */
};

struct vu_dev {
	char name[64];
	int sock;
	unsigned int nqueues;
	uint16_t max_queue_size;
	uint64_t offered_features, offered_protocol;
	uint64_t features, protocol_features;	/* acked */
	const struct vu_iface *iface;
	const struct vu_ops *ops;
	bool broken;

	struct vu_region regions[VU_MAX_MEM_SLOTS];
	unsigned int nregions;
	struct guest_mem mem;		/* the same regions, for the chain walker */

	uint8_t *log;			/* dirty bitmap, log_size bytes */
	uint64_t log_size;
	void *log_map;
	size_t log_map_len;
	int log_fd;			/* SET_LOG_FD eventfd, or -1 */

	void *inflight_map;		/* INFLIGHT_SHMFD mapping */
	size_t inflight_map_len;
	uint8_t *inflight;		/* start of the queue regions */
	uint16_t inflight_nq;
	uint64_t inflight_stride;	/* bytes per queue region */

	int backend_fd;			/* back-end request channel, or -1 */
	struct vu_transfer xfer;
	struct vu_queue queues[VU_MAX_QUEUES];

	uint64_t interrupts;		/* call fd writes, every queue (atomic) */
	uint64_t drop_interrupt;	/* tests: this one is not sent (drop_interrupt_for(name)) */
};

/* Size of one queue's INFLIGHT_SHMFD region for a queue of queue_size (64-byte aligned). */
uint64_t vu_inflight_queue_size(uint16_t queue_size);

/*
 * Sets dev up for a fresh connection (the socket is made non-blocking).
 * 0, or -EINVAL for a bad configuration.
 */
int vu_init(struct vu_dev *dev, const struct vu_config *cfg);

/*
 * Stops every queue (queue_stop), unmaps everything and closes every fd the
 * library holds (not the socket). Safe after a failed vu_init and twice.
 */
void vu_fini(struct vu_dev *dev);

/*
 * Reads and handles one message, sending its reply. 0 (handled; call again
 * while it returns 0), -EAGAIN (nothing to read), -ECONNRESET (the front-end
 * closed the connection), -EIO (broken: close the connection).
 */
int vu_dispatch(struct vu_dev *dev);

/* Whether a protocol error made the device unusable. */
bool vu_broken(const struct vu_dev *dev);

/* Marks dev broken (the reason is logged), stopping every queue. */
void vu_panic(struct vu_dev *dev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Tells the front-end the config space changed (CONFIG_CHANGE_MSG): 0, -ENOTCONN (no channel) or -errno. */
int vu_config_changed(struct vu_dev *dev);

/* Queue accessors; q must be < nqueues. */
int vu_queue_kick_fd(const struct vu_dev *dev, unsigned int q);
bool vu_queue_enabled(const struct vu_dev *dev, unsigned int q);
uint16_t vu_queue_size(const struct vu_dev *dev, unsigned int q);

/*
 * The next chain: in-flight chains to resubmit first, then the avail ring.
 * 1 with *chain filled (and tracked in flight), 0 if none, -EIO if the queue
 * or the device is broken (the queue's err fd is signalled).
 */
int vu_queue_pop(struct vu_dev *dev, unsigned int q, struct virtq_chain *chain);

/*
 * Adds chain's used element (written bytes in its writable segments), logging
 * the pages written when logging is on; visible to the driver at the next
 * vu_queue_flush(). 0 or -EIO.
 */
int vu_queue_push(struct vu_dev *dev, unsigned int q, const struct virtq_chain *chain,
		  uint32_t written);

/* Publishes the pushed elements (used->idx) and ends their in-flight tracking. */
void vu_queue_flush(struct vu_dev *dev, unsigned int q);

/* Signals the call fd if the driver wants an interrupt now (EVENT_IDX / NO_INTERRUPT); whether it did. */
bool vu_queue_notify(struct vu_dev *dev, unsigned int q);

/* Enables or disables guest kicks (see virtq_set_notify); logged like used-ring writes. */
void vu_queue_set_notify(struct vu_dev *dev, unsigned int q, bool enable);

/* Whether chains wait: to resubmit, or in the avail ring. */
bool vu_queue_has_work(struct vu_dev *dev, unsigned int q);

/*
 * Logs (whether verbose or not) where each started queue stands: the driver's and the
 * device's ring indices (virtq_view) and the requests taken and not yet
 * returned. For a guest that seems stuck; callable while the queues run.
 */
void vu_dev_log_queues(struct vu_dev *dev);

/* Marks [gpa, gpa + len) dirty in the log (no-op unless LOG_ALL and a log are set). */
void vu_log_write(struct vu_dev *dev, uint64_t gpa, uint64_t len);

/*
 * Serialises the state a destination needs (see the header comment) into a
 * new buffer: 0 with *buf (malloc'd) and *len, or -errno. The queues must be
 * stopped. Used by SET_DEVICE_STATE_FD(SAVE); exposed for tests.
 */
int vu_state_save(struct vu_dev *dev, uint8_t **buf, size_t *len);

/*
 * Checks and takes a state from vu_state_save(); applied to each queue when
 * it next starts. 0, or -EINVAL (malformed, wrong version or queue count,
 * checksum, the device refused its part) with nothing changed.
 */
int vu_state_load(struct vu_dev *dev, const uint8_t *buf, size_t len);

#endif
