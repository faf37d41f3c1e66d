/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The vhost-user wire format (QEMU docs/interop/vhost-user.rst), for both
 * sides of the socket: the VMM's front-end and the project's back-end library
 * (vhost/vu_backend.h).
 *
 * A message is a 12-byte header (request, flags, payload size), the payload
 * and, for some requests, file descriptors in SCM_RIGHTS ancillary data. All
 * fields are in host byte order. vhost_user_send() sends one message with
 * its fds in a single sendmsg(); vhost_user_recv() reads one message and
 * treats the peer as hostile: the version bits must be 1, the payload must
 * fit the payload union, at most VHOST_USER_MAX_FDS fds are accepted (more,
 * or a truncated control message, is an error), and on every error each fd
 * that arrived is closed, so the caller never owns an fd it was not given.
 * A message that fails to parse leaves the stream unsynchronised: the caller
 * must treat the connection as dead.
 *
 * Request sizes: vhost_user_payload_size() gives the exact payload size of
 * every fixed-size request; variable ones (SET_MEM_TABLE, GET/SET_CONFIG)
 * have their own checks (vhost_user_check_mem_table, vhost_user_check_config).
 * The front-end checks each reply with vhost_user_check_reply(): flags exactly
 * REPLY|version, the request id it sent, the size it expects.
 */
#ifndef VHOST_USER_PROTO_H
#define VHOST_USER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header flags. */
#define VHOST_USER_VERSION		0x1u
#define VHOST_USER_VERSION_MASK		0x3u
#define VHOST_USER_FLAG_REPLY		(1u << 2)
#define VHOST_USER_FLAG_NEED_REPLY	(1u << 3)

#define VHOST_USER_HDR_SIZE		12u
#define VHOST_USER_MAX_FDS		8u	/* fds in one message, at most */
#define VHOST_USER_MEM_REGIONS		8u	/* regions in one SET_MEM_TABLE */
#define VHOST_USER_CONFIG_HDR_SIZE	12u	/* offset, size, flags */
#define VHOST_USER_CONFIG_MAX		256u	/* config payload bytes, at most (QEMU's cap) */

/* The u64 of SET_VRING_KICK / CALL / ERR. */
#define VHOST_USER_VRING_IDX_MASK	0xffu
#define VHOST_USER_VRING_NOFD		(1u << 8)	/* no fd attached */

/* Virtio feature bits the protocol itself uses. */
#define VHOST_USER_F_PROTOCOL_FEATURES	30	/* GET/SET_PROTOCOL_FEATURES, SET_VRING_ENABLE */
#define VHOST_USER_F_LOG_ALL		26	/* VHOST_F_LOG_ALL: dirty-log every write */
#define VHOST_USER_VRING_F_LOG		0	/* vring addr flags: log used-ring writes */
#define VHOST_USER_LOG_PAGE		0x1000u

/* Front-end requests (vhost-user.rst "Front-end message types"). */
enum vhost_user_request {
	VHOST_USER_NONE = 0,
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_SEND_RARP = 19,
	VHOST_USER_NET_SET_MTU = 20,
	VHOST_USER_SET_BACKEND_REQ_FD = 21,
	VHOST_USER_IOTLB_MSG = 22,
	VHOST_USER_SET_VRING_ENDIAN = 23,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_CREATE_CRYPTO_SESSION = 26,
	VHOST_USER_CLOSE_CRYPTO_SESSION = 27,
	VHOST_USER_POSTCOPY_ADVISE = 28,
	VHOST_USER_POSTCOPY_LISTEN = 29,
	VHOST_USER_POSTCOPY_END = 30,
	VHOST_USER_GET_INFLIGHT_FD = 31,
	VHOST_USER_SET_INFLIGHT_FD = 32,
	VHOST_USER_GPU_SET_SOCKET = 33,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_VRING_KICK = 35,
	VHOST_USER_GET_MAX_MEM_SLOTS = 36,
	VHOST_USER_ADD_MEM_REG = 37,
	VHOST_USER_REM_MEM_REG = 38,
	VHOST_USER_SET_STATUS = 39,
	VHOST_USER_GET_STATUS = 40,
	VHOST_USER_GET_SHARED_OBJECT = 41,
	VHOST_USER_SET_DEVICE_STATE_FD = 42,
	VHOST_USER_CHECK_DEVICE_STATE = 43,
	VHOST_USER_REQUEST_MAX,
};

/* Back-end requests, sent on the back-end channel (SET_BACKEND_REQ_FD). */
enum vhost_user_backend_request {
	VHOST_USER_BACKEND_IOTLB_MSG = 1,
	VHOST_USER_BACKEND_CONFIG_CHANGE_MSG = 2,
	VHOST_USER_BACKEND_VRING_HOST_NOTIFIER_MSG = 3,
};

/* Protocol feature bits (GET/SET_PROTOCOL_FEATURES). */
enum vhost_user_protocol_feature {
	VHOST_USER_PROTOCOL_F_MQ = 0,
	VHOST_USER_PROTOCOL_F_LOG_SHMFD = 1,
	VHOST_USER_PROTOCOL_F_RARP = 2,
	VHOST_USER_PROTOCOL_F_REPLY_ACK = 3,
	VHOST_USER_PROTOCOL_F_MTU = 4,
	VHOST_USER_PROTOCOL_F_BACKEND_REQ = 5,
	VHOST_USER_PROTOCOL_F_CROSS_ENDIAN = 6,
	VHOST_USER_PROTOCOL_F_CRYPTO_SESSION = 7,
	VHOST_USER_PROTOCOL_F_PAGEFAULT = 8,
	VHOST_USER_PROTOCOL_F_CONFIG = 9,
	VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD = 10,
	VHOST_USER_PROTOCOL_F_HOST_NOTIFIER = 11,
	VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD = 12,
	VHOST_USER_PROTOCOL_F_RESET_DEVICE = 13,
	VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS = 14,
	VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15,
	VHOST_USER_PROTOCOL_F_STATUS = 16,
	VHOST_USER_PROTOCOL_F_XEN_MMAP = 17,
	VHOST_USER_PROTOCOL_F_SHARED_OBJECT = 18,
	VHOST_USER_PROTOCOL_F_DEVICE_STATE = 19,
};

/* SET_DEVICE_STATE_FD. */
#define VHOST_USER_TRANSFER_SAVE	0u
#define VHOST_USER_TRANSFER_LOAD	1u
#define VHOST_USER_PHASE_STOPPED	0u

struct vhost_user_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;		/* payload bytes */
} __attribute__((packed));

struct vhost_user_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vhost_user_vring_addr {
	uint32_t index;
	uint32_t flags;		/* 1 << VHOST_USER_VRING_F_LOG */
	uint64_t desc;		/* front-end virtual addresses */
	uint64_t used;
	uint64_t avail;
	uint64_t log;		/* guest-physical address of the used ring, for the log */
};

struct vhost_user_mem_region {
	uint64_t guest_addr;
	uint64_t size;
	uint64_t user_addr;	/* front-end virtual address */
	uint64_t mmap_offset;	/* where the region starts in its fd */
};

struct vhost_user_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhost_user_mem_region regions[VHOST_USER_MEM_REGIONS];
};

struct vhost_user_mem_single {
	uint64_t padding;
	struct vhost_user_mem_region region;
};

struct vhost_user_log {
	uint64_t mmap_size;
	uint64_t mmap_offset;
};

struct vhost_user_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;		/* 0: front-end write, 1: live migration */
	uint8_t payload[VHOST_USER_CONFIG_MAX];
};

/* Natural alignment, as QEMU and libvhost-user send it: 24 bytes. */
struct vhost_user_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
};

struct vhost_user_device_state {
	uint32_t direction;	/* VHOST_USER_TRANSFER_* */
	uint32_t phase;		/* VHOST_USER_PHASE_* */
};

struct vhost_user_vring_area {
	uint64_t u64;
	uint64_t size;
	uint64_t offset;
};

union vhost_user_payload {
	uint64_t u64;
	struct vhost_user_vring_state state;
	struct vhost_user_vring_addr addr;
	struct vhost_user_mem_table mem;
	struct vhost_user_mem_single mem_reg;
	struct vhost_user_log log;
	struct vhost_user_config config;
	struct vhost_user_inflight inflight;
	struct vhost_user_device_state device_state;
	struct vhost_user_vring_area area;
};

/* One message with the fds that came (or go) with it. */
struct vhost_user_msg {
	struct vhost_user_hdr hdr;
	union vhost_user_payload p;
	int fds[VHOST_USER_MAX_FDS];
	unsigned int nfds;
};

/* The request's name ("SET_MEM_TABLE"), or "unknown". */
const char *vhost_user_request_name(uint32_t request);

/*
 * The exact payload size of a request with a fixed payload: 0 for none, >0
 * for its struct; -1 for variable-size requests (SET_MEM_TABLE, GET/SET_CONFIG)
 * and requests this module does not know.
 */
int vhost_user_payload_size(uint32_t request);

/* Prepares msg as request with flags VERSION (| extra) and the given payload size, no fds. */
void vhost_user_msg_init(struct vhost_user_msg *msg, uint32_t request, uint32_t extra_flags,
			 uint32_t size);

/*
 * Sends hdr, hdr->size bytes of payload and nfds (<= VHOST_USER_MAX_FDS)
 * fds in one sendmsg() (continuing a short send without the fds), retrying
 * EINTR and waiting up to timeout_ms for a non-blocking socket to drain.
 * The fds stay the caller's. 0, -EINVAL (too many fds), -EPIPE/-ECONNRESET
 * (peer gone), -ETIMEDOUT or -errno.
 */
int vhost_user_send(int sock, const struct vhost_user_hdr *hdr, const void *payload,
		    const int *fds, unsigned int nfds, int timeout_ms);

/* vhost_user_send() of msg's header, payload and fds. */
int vhost_user_send_msg(int sock, const struct vhost_user_msg *msg, int timeout_ms);

/*
 * Receives one message into *msg: the header, then hdr.size payload bytes
 * (checked against the payload union first), with the fds that came along
 * (close-on-exec). Once the first byte is in, the rest must follow within
 * timeout_ms. Returns 0 with msg->fds[0..nfds) now the caller's; or, with
 * no fd left open and msg->nfds = 0: -ECONNRESET (clean EOF before a
 * header), -EAGAIN (non-blocking socket, nothing to read), -EPROTO (bad
 * version bits, EOF inside a message, truncated control data, fds of a
 * kind other than SCM_RIGHTS), -EMSGSIZE (payload larger than the union),
 * -E2BIG (more than VHOST_USER_MAX_FDS fds), -ETIMEDOUT or -errno.
 */
int vhost_user_recv(int sock, struct vhost_user_msg *msg, int timeout_ms);

/* Closes msg's fds that are still >= 0 and sets nfds to 0. */
void vhost_user_msg_close_fds(struct vhost_user_msg *msg);

/*
 * Front-end side: checks a reply to `request`: flags exactly REPLY|VERSION,
 * the same request id, size == expected_size, at most max_fds fds. 0 or
 * -EPROTO (the caller closes the fds and drops the connection).
 */
int vhost_user_check_reply(const struct vhost_user_msg *reply, uint32_t request,
			   uint32_t expected_size, unsigned int max_fds);

/*
 * Checks a SET_MEM_TABLE payload of `size` bytes: nregions 1..8 and
 * size == 8 + 32 * nregions. 0 or -EINVAL.
 */
int vhost_user_check_mem_table(const struct vhost_user_msg *msg);

/*
 * Checks a GET/SET_CONFIG payload: size == 12 + config.size,
 * config.size <= VHOST_USER_CONFIG_MAX. 0 or -EINVAL.
 */
int vhost_user_check_config(const struct vhost_user_msg *msg);

/*
 * Checks a region of SET_MEM_TABLE / ADD_MEM_REG: size > 0, and neither
 * guest_addr + size, user_addr + size nor mmap_offset + size wraps. 0 or -EINVAL.
 */
int vhost_user_check_region(const struct vhost_user_mem_region *r);

#endif
