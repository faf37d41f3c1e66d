// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vhost-user wire format (see vhost/user_proto.h for the contract).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vhost/user_proto.h"
#include "vmm/base/util.h"

_Static_assert(sizeof(struct vhost_user_hdr) == VHOST_USER_HDR_SIZE, "header is 12 bytes");
_Static_assert(sizeof(struct vhost_user_vring_addr) == 40, "vring addr is 40 bytes");
_Static_assert(sizeof(struct vhost_user_mem_region) == 32, "region is 32 bytes");
_Static_assert(sizeof(struct vhost_user_mem_single) == 40, "single region is 40 bytes");
_Static_assert(sizeof(struct vhost_user_inflight) == 24, "inflight is 24 bytes");
_Static_assert(offsetof(struct vhost_user_config, payload) == VHOST_USER_CONFIG_HDR_SIZE,
	       "config header is 12 bytes");

/* More than this many fds in one control message is refused; sized to see them all. */
#define RECV_FDS_ROOM	64

static const char *const request_names[VHOST_USER_REQUEST_MAX] = {
	[VHOST_USER_NONE] = "NONE",
	[VHOST_USER_GET_FEATURES] = "GET_FEATURES",
	[VHOST_USER_SET_FEATURES] = "SET_FEATURES",
	[VHOST_USER_SET_OWNER] = "SET_OWNER",
	[VHOST_USER_RESET_OWNER] = "RESET_OWNER",
	[VHOST_USER_SET_MEM_TABLE] = "SET_MEM_TABLE",
	[VHOST_USER_SET_LOG_BASE] = "SET_LOG_BASE",
	[VHOST_USER_SET_LOG_FD] = "SET_LOG_FD",
	[VHOST_USER_SET_VRING_NUM] = "SET_VRING_NUM",
	[VHOST_USER_SET_VRING_ADDR] = "SET_VRING_ADDR",
	[VHOST_USER_SET_VRING_BASE] = "SET_VRING_BASE",
	[VHOST_USER_GET_VRING_BASE] = "GET_VRING_BASE",
	[VHOST_USER_SET_VRING_KICK] = "SET_VRING_KICK",
	[VHOST_USER_SET_VRING_CALL] = "SET_VRING_CALL",
	[VHOST_USER_SET_VRING_ERR] = "SET_VRING_ERR",
	[VHOST_USER_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
	[VHOST_USER_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
	[VHOST_USER_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
	[VHOST_USER_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
	[VHOST_USER_SEND_RARP] = "SEND_RARP",
	[VHOST_USER_NET_SET_MTU] = "NET_SET_MTU",
	[VHOST_USER_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD",
	[VHOST_USER_IOTLB_MSG] = "IOTLB_MSG",
	[VHOST_USER_SET_VRING_ENDIAN] = "SET_VRING_ENDIAN",
	[VHOST_USER_GET_CONFIG] = "GET_CONFIG",
	[VHOST_USER_SET_CONFIG] = "SET_CONFIG",
	[VHOST_USER_CREATE_CRYPTO_SESSION] = "CREATE_CRYPTO_SESSION",
	[VHOST_USER_CLOSE_CRYPTO_SESSION] = "CLOSE_CRYPTO_SESSION",
	[VHOST_USER_POSTCOPY_ADVISE] = "POSTCOPY_ADVISE",
	[VHOST_USER_POSTCOPY_LISTEN] = "POSTCOPY_LISTEN",
	[VHOST_USER_POSTCOPY_END] = "POSTCOPY_END",
	[VHOST_USER_GET_INFLIGHT_FD] = "GET_INFLIGHT_FD",
	[VHOST_USER_SET_INFLIGHT_FD] = "SET_INFLIGHT_FD",
	[VHOST_USER_GPU_SET_SOCKET] = "GPU_SET_SOCKET",
	[VHOST_USER_RESET_DEVICE] = "RESET_DEVICE",
	[VHOST_USER_VRING_KICK] = "VRING_KICK",
	[VHOST_USER_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
	[VHOST_USER_ADD_MEM_REG] = "ADD_MEM_REG",
	[VHOST_USER_REM_MEM_REG] = "REM_MEM_REG",
	[VHOST_USER_SET_STATUS] = "SET_STATUS",
	[VHOST_USER_GET_STATUS] = "GET_STATUS",
	[VHOST_USER_GET_SHARED_OBJECT] = "GET_SHARED_OBJECT",
	[VHOST_USER_SET_DEVICE_STATE_FD] = "SET_DEVICE_STATE_FD",
	[VHOST_USER_CHECK_DEVICE_STATE] = "CHECK_DEVICE_STATE",
};

const char *vhost_user_request_name(uint32_t request)
{
	if (request < ARRAY_SIZE(request_names) && request_names[request])
		return request_names[request];
	return "unknown";
}

int vhost_user_payload_size(uint32_t request)
{
	switch (request) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_SET_OWNER:
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_RESET_DEVICE:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_GET_STATUS:
	case VHOST_USER_CHECK_DEVICE_STATE:
	case VHOST_USER_SET_LOG_FD:
	case VHOST_USER_SET_BACKEND_REQ_FD:
		return 0;
	case VHOST_USER_SET_FEATURES:
	case VHOST_USER_SET_PROTOCOL_FEATURES:
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
	case VHOST_USER_SET_STATUS:
	case VHOST_USER_SEND_RARP:
	case VHOST_USER_NET_SET_MTU:
		return sizeof(uint64_t);
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_SET_VRING_ENABLE:
	case VHOST_USER_VRING_KICK:
		return sizeof(struct vhost_user_vring_state);
	case VHOST_USER_SET_VRING_ADDR:
		return sizeof(struct vhost_user_vring_addr);
	case VHOST_USER_SET_LOG_BASE:
		return sizeof(struct vhost_user_log);
	case VHOST_USER_GET_INFLIGHT_FD:
	case VHOST_USER_SET_INFLIGHT_FD:
		return sizeof(struct vhost_user_inflight);
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_REM_MEM_REG:
		return sizeof(struct vhost_user_mem_single);
	case VHOST_USER_SET_DEVICE_STATE_FD:
		return sizeof(struct vhost_user_device_state);
	default:
		return -1;
	}
}

void vhost_user_msg_init(struct vhost_user_msg *msg, uint32_t request, uint32_t extra_flags,
			 uint32_t size)
{
	memset(&msg->hdr, 0, sizeof(msg->hdr));
	msg->hdr.request = request;
	msg->hdr.flags = VHOST_USER_VERSION | extra_flags;
	msg->hdr.size = size;
	msg->nfds = 0;
	for (unsigned int i = 0; i < VHOST_USER_MAX_FDS; i++)
		msg->fds[i] = -1;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until sock is ready for events or deadline (ms, CLOCK_MONOTONIC) passes; 0 or -errno. */
static int wait_ready(int sock, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = sock, .events = events };
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)MIN(left, 60000));
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int vhost_user_send(int sock, const struct vhost_user_hdr *hdr, const void *payload,
		    const int *fds, unsigned int nfds, int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
		struct cmsghdr align;
	} control;
	struct iovec iov[2] = {
		{ .iov_base = (void *)hdr, .iov_len = VHOST_USER_HDR_SIZE },
		{ .iov_base = (void *)payload, .iov_len = payload ? hdr->size : 0 },
	};
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	int64_t deadline = now_ms() + timeout_ms;
	bool fds_sent = false;

	if (nfds > VHOST_USER_MAX_FDS || (hdr->size && !payload))
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *c;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}

	while (iov[0].iov_len + iov[1].iov_len) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (n < 0) {
			int err = errno;

			if (err == EINTR)
				continue;
			if (err == EAGAIN || err == EWOULDBLOCK) {
				int r = wait_ready(sock, POLLOUT, deadline);

				if (r)
					return r;
				continue;
			}
			return -err;
		}
		if (n > 0 && !fds_sent) {
			/* The fds went with the first byte; never send them twice. */
			fds_sent = true;
			mh.msg_control = NULL;
			mh.msg_controllen = 0;
		}
		for (unsigned int i = 0; i < 2 && n > 0; i++) {
			size_t k = MIN((size_t)n, iov[i].iov_len);

			iov[i].iov_base = (char *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			n -= (ssize_t)k;
		}
		/* Skip emptied entries so sendmsg never sees a zero-length first iovec only. */
		if (iov[0].iov_len == 0) {
			mh.msg_iov = &iov[1];
			mh.msg_iovlen = 1;
		}
	}
	return 0;
}

int vhost_user_send_msg(int sock, const struct vhost_user_msg *msg, int timeout_ms)
{
	return vhost_user_send(sock, &msg->hdr, msg->hdr.size ? &msg->p : NULL, msg->fds,
			       msg->nfds, timeout_ms);
}

void vhost_user_msg_close_fds(struct vhost_user_msg *msg)
{
	for (unsigned int i = 0; i < msg->nfds && i < VHOST_USER_MAX_FDS; i++) {
		if (msg->fds[i] >= 0)
			close(msg->fds[i]);
		msg->fds[i] = -1;
	}
	msg->nfds = 0;
}

/* The number of fds an SCM_RIGHTS control message carries. */
static size_t cmsg_nfds(const struct cmsghdr *c)
{
	if (c->cmsg_len < CMSG_LEN(0))
		return 0;
	return (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
}

/* Closes every fd of every SCM_RIGHTS control message in mh. */
static void close_control_fds(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n = cmsg_nfds(c);

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (fd >= 0)
				close(fd);
		}
	}
}

/*
 * Takes the fds of mh's control data into msg. On an error every fd of mh
 * (and none of msg's earlier ones) is closed; the caller closes msg's.
 */
static int take_fds(struct msghdr *mh, struct vhost_user_msg *msg)
{
	int ret = 0;

	if (mh->msg_flags & MSG_CTRUNC) {
		close_control_fds(mh);
		return -EPROTO;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			ret = -EPROTO;
	}
	if (ret) {
		close_control_fds(mh);
		return ret;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n = cmsg_nfds(c);

		if (msg->nfds + n > VHOST_USER_MAX_FDS) {
			close_control_fds(mh);
			return -E2BIG;
		}
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n = cmsg_nfds(c);

		for (size_t i = 0; i < n; i++)
			memcpy(&msg->fds[msg->nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	return 0;
}

/*
 * Reads exactly len bytes into buf, collecting fds into msg. first: this is
 * the start of a message (EOF before any byte is a clean -ECONNRESET, and a
 * non-blocking socket with nothing to read is -EAGAIN). 0 or -errno.
 */
static int recv_exact(int sock, void *buf, size_t len, struct vhost_user_msg *msg, bool first,
		      int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * RECV_FDS_ROOM)];
		struct cmsghdr align;
	} control;
	size_t got = 0;
	int64_t deadline = 0;

	while (got < len) {
		struct iovec iov = { .iov_base = (char *)buf + got, .iov_len = len - got };
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = control.buf,
			.msg_controllen = sizeof(control.buf),
		};
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		int ret;

		if (n < 0) {
			int err = errno;

			if (err == EINTR)
				continue;
			if (err == EAGAIN || err == EWOULDBLOCK) {
				if (first && got == 0)
					return -EAGAIN;
				if (!deadline)
					deadline = now_ms() + timeout_ms;
				ret = wait_ready(sock, POLLIN, deadline);
				if (ret)
					return ret;
				continue;
			}
			return -err;
		}
		ret = take_fds(&mh, msg);
		if (ret)
			return ret;
		if (n == 0)
			return first && got == 0 ? -ECONNRESET : -EPROTO;
		got += (size_t)n;
		if (!deadline)
			deadline = now_ms() + timeout_ms;
	}
	return 0;
}

int vhost_user_recv(int sock, struct vhost_user_msg *msg, int timeout_ms)
{
	int ret;

	vhost_user_msg_init(msg, 0, 0, 0);
	msg->hdr.flags = 0;
	ret = recv_exact(sock, &msg->hdr, VHOST_USER_HDR_SIZE, msg, true, timeout_ms);
	if (ret)
		goto fail;
	if ((msg->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION) {
		ret = -EPROTO;
		goto fail;
	}
	if (msg->hdr.size > sizeof(msg->p)) {
		ret = -EMSGSIZE;
		goto fail;
	}
	if (msg->hdr.size) {
		ret = recv_exact(sock, &msg->p, msg->hdr.size, msg, false, timeout_ms);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	vhost_user_msg_close_fds(msg);
	return ret;
}

int vhost_user_check_reply(const struct vhost_user_msg *reply, uint32_t request,
			   uint32_t expected_size, unsigned int max_fds)
{
	if (reply->hdr.flags != (VHOST_USER_FLAG_REPLY | VHOST_USER_VERSION))
		return -EPROTO;
	if (reply->hdr.request != request)
		return -EPROTO;
	if (reply->hdr.size != expected_size)
		return -EPROTO;
	if (reply->nfds > max_fds)
		return -EPROTO;
	return 0;
}

int vhost_user_check_mem_table(const struct vhost_user_msg *msg)
{
	const uint32_t head = offsetof(struct vhost_user_mem_table, regions);

	if (msg->hdr.size < head)
		return -EINVAL;
	if (msg->p.mem.nregions == 0 || msg->p.mem.nregions > VHOST_USER_MEM_REGIONS)
		return -EINVAL;
	if (msg->hdr.size != head + msg->p.mem.nregions * sizeof(struct vhost_user_mem_region))
		return -EINVAL;
	return 0;
}

int vhost_user_check_config(const struct vhost_user_msg *msg)
{
	if (msg->hdr.size < VHOST_USER_CONFIG_HDR_SIZE)
		return -EINVAL;
	if (msg->p.config.size > VHOST_USER_CONFIG_MAX ||
	    msg->hdr.size != VHOST_USER_CONFIG_HDR_SIZE + msg->p.config.size)
		return -EINVAL;
	return 0;
}

int vhost_user_check_region(const struct vhost_user_mem_region *r)
{
	uint64_t end;

	if (r->size == 0)
		return -EINVAL;
	if (__builtin_add_overflow(r->guest_addr, r->size - 1, &end) ||
	    __builtin_add_overflow(r->user_addr, r->size - 1, &end) ||
	    __builtin_add_overflow(r->mmap_offset, r->size, &end))
		return -EINVAL;
	return 0;
}
