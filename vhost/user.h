/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The vhost-user front-end: the vhost_ops of vhost/vhost.h as messages on a
 * unix socket to a back-end in another process (QEMU docs/interop/
 * vhost-user.rst; the sequences of QEMU's vhost_user_backend_init,
 * vhost_dev_start and do_vhost_dev_stop, ../shared/docs/vhost-reference.md A).
 *
 * Set-up (the kind's set_owner, called by vhost_dev_init): GET_FEATURES; with
 * VHOST_USER_F_PROTOCOL_FEATURES, GET_PROTOCOL_FEATURES and SET_PROTOCOL_
 * FEATURES with only what this front-end implements (VHOST_USER_FE_PROTOCOL:
 * MQ, REPLY_ACK, CONFIG, BACKEND_REQ, INFLIGHT_SHMFD, CONFIGURE_MEM_SLOTS,
 * RESET_DEVICE; LOG_SHMFD and DEVICE_STATE are negotiated and recorded for
 * migration); GET_QUEUE_NUM (MQ); GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS);
 * SET_BACKEND_REQ_FD (one end of a socketpair, served on the VMM's event
 * loop); SET_OWNER.
 *
 * Memory: SET_MEM_TABLE with one fd per region (at most 8) and its mmap
 * offset, or, with CONFIGURE_MEM_SLOTS, REM_MEM_REG / ADD_MEM_REG for the
 * regions that changed (at most GET_MAX_MEM_SLOTS). Ring addresses are the
 * VMM's own mappings (front-end virtual addresses), translated by the
 * back-end through the table. Guest RAM must be shared (--memory shared=on).
 *
 * Rings: SET_VRING_NUM, BASE, ADDR, ERR (an eventfd the front-end watches),
 * KICK, CALL; with PROTOCOL_FEATURES acked a ring runs only after
 * SET_VRING_ENABLE 1 (and is disabled before GET_VRING_BASE, which stops it).
 * Without it SET_FEATURES enables every ring and SET_VRING_ENABLE is skipped.
 *
 * Replies: with REPLY_ACK every request without a reply of its own asks for
 * an ack (so an error is seen at the request that caused it). Every reply is
 * hostile input: exact flags, request id, size, ring index and fd count are
 * checked; an fd that is not expected is closed. A reply that fails a check,
 * a timeout (VHOST_USER_TIMEOUT_MS) or a closed socket makes the connection
 * dead: the socket is shut down, every later request fails at once with
 * -ENOTCONN, and the death is reported (vhost_dev_disconnected) from the
 * event loop, where the socket is watched: it hangs up, or sends something
 * nobody asked for.
 *
 * The back-end request channel: CONFIG_CHANGE_MSG is acked first (when asked)
 * and then reported (vhost_dev_config_changed). Any other request is answered
 * with an error when the back-end wants a reply, and otherwise ignored; a
 * channel that breaks its framing is closed, and the device keeps running.
 *
 * In-flight tracking (INFLIGHT_SHMFD, for vhost-user-blk): at the first start
 * GET_INFLIGHT_FD gives the area (kept by the front-end, mapped read-only),
 * and SET_INFLIGHT_FD hands it back at each later start, including after a
 * reconnect, so the back-end resubmits what was in flight when it died. A
 * guest reset drops it (vhost_user_reset_inflight). After a death the area
 * tells which chains the back-end had taken and not returned
 * (vhost_user_lost_chains).
 *
 * Migration, the dirty log (vhost/vhost.h has the order): needs VHOST_F_LOG_ALL
 * offered and LOG_SHMFD negotiated (else log_start is refused, -EOPNOTSUPP,
 * naming the back-end). SET_LOG_BASE carries {mmap_size = the log's size,
 * mmap_offset 0} and the log's memfd; the back-end maps it and sets bit
 * page % 8 of byte page / 8 for each 4 KiB page of guest-physical address it
 * writes (descriptor buffers, and the used ring at log_guest_addr when the
 * ring has VHOST_VRING_F_LOG) — on a little-endian host the bits of
 * vmm/base/dirty.h's 64-bit words. Its reply is read whatever its size (see
 * vu_set_log_base). SET_FEATURES with LOG_ALL and SET_VRING_ADDR with F_LOG
 * are acked (REPLY_ACK) or followed by GET_FEATURES as a barrier, so the
 * back-end logs once log_start returns.
 *
 * Migration, the back-end's own state (VHOST_USER_PROTOCOL_F_DEVICE_STATE,
 * vhost-user.rst "Migrating back-end state"; QEMU's vhost_save_backend_state
 * and vhost_load_backend_state):
 *   migratable  yes with DEVICE_STATE negotiated, or when the device kind keeps
 *               nothing beyond its rings (vhost_user_opts.state NULL: blk, net);
 *               otherwise -EOPNOTSUPP naming what the back-end keeps (virtio-fs
 *               without DEVICE_STATE: QEMU 7.2's C virtiofsd).
 *   has_state   DEVICE_STATE negotiated.
 *   save        SET_DEVICE_STATE_FD {direction 0 SAVE, phase 0 STOPPED} with the
 *               write end of a pipe2(O_CLOEXEC), and our copy closed; the reply
 *               u64: bits 0-7 an error (-EIO, nothing more sent), bit 8 set =
 *               no fd attached; clear = the back-end's own fd comes with it (a
 *               pipe or a socket) and is read instead. Read to EOF, in chunks of
 *               at most min(sink->max, VHOST_USER_STATE_CHUNK) bytes handed to
 *               sink->chunk as they fill (never the whole state), then the fd
 *               closed and CHECK_DEVICE_STATE (reply u64, 0 = success, else
 *               -EIO). Draining to EOF before CHECK matters: virtiofsd answers
 *               CHECK only after its writer finished.
 *   load        the reverse: SET_DEVICE_STATE_FD {1 LOAD, 0 STOPPED} with the
 *               read end; every chunk src->chunk gives is written to the write
 *               end (or the back-end's fd), which is then closed (the end of
 *               the state), then CHECK_DEVICE_STATE (the back-end has applied
 *               it when it answers).
 *   when        with every ring stopped (GET_VRING_BASE after SET_VRING_ENABLE 0,
 *               i.e. virtio_mmio_pause on the source; none started yet on the
 *               destination): vhost.c refuses otherwise (-EBUSY). The spec's
 *               STOPPED phase is "the device suspended"; it asks nothing of the
 *               features or the memory table: QEMU loads before it sends the
 *               destination's SET_FEATURES, and our back-end library
 *               (vu_backend.h) checks only that no ring is started (it answers
 *               0x101 otherwise) and applies loaded queue state when each ring
 *               next starts. So the load may come before or after the
 *               destination's SET_FEATURES and SET_MEM_TABLE; the rings start
 *               afterwards with SET_VRING_BASE at the source's positions.
 *   failures    each fd is closed on every path. A back-end silent for
 *               state_timeout_ms (VHOST_USER_STATE_TIMEOUT_MS) mid-transfer:
 *               -ETIMEDOUT, logged, our end closed and no CHECK (it would not
 *               answer either; the connection stays). A sink or source failure,
 *               or a broken pipe: that -errno, after CHECK (which ends the
 *               back-end's transfer). A reply that breaks the protocol kills
 *               the connection (-ENOTCONN, or -EPROTO for a reply whose fd does
 *               not match its invalid-FD flag). Requests take the connection's
 *               lock one at a time (not across the transfer), so the event loop
 *               is never held up by it; one transfer at a time (-EBUSY).
 *
 * Threads: requests are synchronous and serialised by the connection's lock
 * (they come from vCPU threads under the device lock, or from the event loop
 * thread); the event loop's callbacks take the same lock before they look at
 * the socket, so a reply is never read by the wrong thread.
 */
#ifndef VHOST_USER_H
#define VHOST_USER_H

#include <stdbool.h>
#include <stdint.h>

#include "vhost/user_proto.h"
#include "vhost/vhost.h"
#include "vmm/base/event_loop.h"

#define VHOST_USER_TIMEOUT_MS	10000	/* a reply must come within this */
/* A device-state transfer gives up after this long without a byte (or CHECK's reply). */
#define VHOST_USER_STATE_TIMEOUT_MS	30000
#define VHOST_USER_STATE_CHUNK	(1u << 20)	/* the largest piece of state read or written at once */

/* The protocol features this front-end implements (and so may negotiate). */
#define VHOST_USER_FE_PROTOCOL \
	((1ULL << VHOST_USER_PROTOCOL_F_MQ) | (1ULL << VHOST_USER_PROTOCOL_F_LOG_SHMFD) | \
	 (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK) | (1ULL << VHOST_USER_PROTOCOL_F_BACKEND_REQ) | \
	 (1ULL << VHOST_USER_PROTOCOL_F_CONFIG) | (1ULL << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) | \
	 (1ULL << VHOST_USER_PROTOCOL_F_RESET_DEVICE) | \
	 (1ULL << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | \
	 (1ULL << VHOST_USER_PROTOCOL_F_DEVICE_STATE) | (1ULL << VHOST_USER_PROTOCOL_F_RARP))

extern const struct vhost_ops vhost_user_ops;

/* How to reach a back-end. */
struct vhost_user_opts {
	const char *path;		/* unix socket; NULL with fd >= 0 (tests) */
	int fd;				/* an already connected socket (taken over), or -1 */
	struct event_loop *loop;	/* where the socket and the channel are watched; NULL: none */
	int timeout_ms;			/* 0: VHOST_USER_TIMEOUT_MS */
	/* In-flight area for this many rings of this size at start (0: none). */
	uint16_t inflight_queues, inflight_queue_size;
	/*
	 * Rings a back-end without the MQ protocol feature serves (it cannot say):
	 * the device's fixed set, e.g. a virtio-net pair or virtio-fs's queues. 0: 1.
	 */
	unsigned int base_queues;
	/* Migration: a device-state transfer's silence limit (0: VHOST_USER_STATE_TIMEOUT_MS). */
	int state_timeout_ms;
	/*
	 * What the back-end keeps beyond its rings that a migration must move, for
	 * messages (virtio_offload_user.state), and which back-ends can (state_hint);
	 * NULL: nothing (blk, net). Static strings.
	 */
	const char *state, *state_hint;
};

/*
 * Connects (o->path, or takes o->fd): *conn for vhost_dev_init(), or -errno
 * (-ENOENT, -ECONNREFUSED: nobody listens there). Nothing is sent yet.
 */
int vhost_user_open(const struct vhost_user_opts *o, void **conn);

/* Closes a connection vhost_dev_init() did not take (it failed). */
void vhost_user_close(void *conn);

/*
 * The offload of virtio/backend.h: a vhost device over a vhost-user back-end
 * at u->path for device `name` (its name must outlive it), rings =
 * min(u->max_queues, GET_QUEUE_NUM) into u->queues. 0 with *out (the device
 * owns it), or -errno with a one-line reason in why. Guest RAM must be
 * shareable (mem->fd >= 0: --memory shared=on or hugepages=on): otherwise
 * -EINVAL after log_error, before anything is connected — the device models
 * leave this check to here.
 */
int vhost_user_create(const struct guest_mem *mem, const char *name, struct event_loop *loop,
		      struct virtio_offload_user *u, struct virtio_backend **out, char *why,
		      size_t whylen);

/*
 * After the back-end died: connects again to the same path (one attempt)
 * and repeats the set-up; the in-flight area is kept. 0, or -errno (then
 * the connection is still dead and may be retried).
 */
int vhost_user_reconnect(struct vhost_dev *dev);

/* Whether the connection is alive (not dead, see above). */
bool vhost_user_connected(const struct vhost_dev *dev);

/* What the back-end offered and the front-end negotiated (for tests and messages). */
uint64_t vhost_user_protocol_features(const struct vhost_dev *dev);
unsigned int vhost_user_queue_num(const struct vhost_dev *dev);
unsigned int vhost_user_max_mem_slots(const struct vhost_dev *dev);

/*
 * After a death, ring q's chains the back-end took and did not return, from
 * the in-flight area, in submission order, given the ring's used->idx: their
 * count (<= max) into heads, or -EOPNOTSUPP (no area: the caller assumes the
 * back-end completes in order) or -EINVAL (an area that cannot be trusted).
 */
int vhost_user_lost_chains(struct vhost_dev *dev, unsigned int q, uint16_t used_idx,
			   uint16_t *heads, unsigned int max);

/* The driver reset the device: the in-flight area is dropped (a new one at the next start). */
void vhost_user_reset_inflight(struct vhost_dev *dev);

/*
 * Event-loop work, also called directly by tests and the fuzzer:
 * services one message on the back-end request channel (0, -EAGAIN: none,
 * or -errno: the channel was closed), and looks at the main socket outside
 * a request (true: the back-end is dead; reported through
 * vhost_dev_disconnected once).
 */
int vhost_user_service_channel(struct vhost_dev *dev);
bool vhost_user_check_socket(struct vhost_dev *dev);

#endif
