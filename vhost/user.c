// SPDX-License-Identifier: GPL-2.0-only
/* The vhost-user front-end (see vhost/user.h). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vhost/user.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

#define BIT(n)		(1ULL << (n))

/* One slot the back-end has mapped (CONFIGURE_MEM_SLOTS). */
struct vu_slot {
	struct vhost_user_mem_region r;
	bool used;
};

/* The INFLIGHT_SHMFD area's split-ring layout (vhost-user.rst "Inflight I/O tracking"). */
struct vu_fe_inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};

struct vu_fe_inflight_queue {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct vu_fe_inflight_desc desc[];
};

#define VU_MAX_PENDING_ACKS	32

struct vhost_user {
	pthread_mutex_t lock;		/* one request at a time; the socket's reader */
	struct vhost_dev *dev;		/* set by set_owner */
	char *path;			/* NULL: a socket given by the caller */
	int sock;
	bool dead;
	bool reported;			/* the death went to vhost_dev_disconnected */
	int timeout_ms;
	struct event_loop *loop;
	struct event_source sock_src;	/* the socket, watched between requests */
	bool sock_watched;

	uint64_t features;		/* GET_FEATURES */
	uint64_t protocol;		/* negotiated protocol features */
	/*
	 * REPLY_ACK acks not read yet, oldest first: a ring's setup messages are sent
	 * back to back and their acks read before the next reply (vu_collect_acks), so a
	 * ring starts in one round trip instead of seven. acks_err: the first refusal
	 * among them, returned by the next flush.
	 */
	uint32_t acks[VU_MAX_PENDING_ACKS];
	unsigned int nacks;
	int acks_err;
	/* Migration (vhost_user_opts): what the back-end keeps, a transfer's silence limit. */
	const char *state, *state_hint;
	int state_timeout_ms;
	bool transferring;		/* a device-state transfer runs (lock held to change) */
	unsigned int queue_num;		/* GET_QUEUE_NUM, or base_queues without MQ */
	unsigned int base_queues;	/* vhost_user_opts.base_queues, at least 1 */
	unsigned int max_slots;		/* GET_MAX_MEM_SLOTS, or 8 */
	struct vu_slot slots[VHOST_USER_MEM_REGIONS > GUEST_MEM_MAX_REGIONS ?
			     VHOST_USER_MEM_REGIONS : GUEST_MEM_MAX_REGIONS];

	int req_fd;			/* our end of the back-end request channel, or -1 */
	struct event_source req_src;
	bool req_watched;

	int err_fd[VHOST_MAX_RINGS];	/* SET_VRING_ERR eventfds, or -1 */
	struct vu_err_watch {
		struct event_source src;
		struct vhost_user *u;
		unsigned int ring;
		bool watched;
	} err_w[VHOST_MAX_RINGS];

	/* INFLIGHT_SHMFD */
	uint16_t inflight_nq, inflight_qs;
	int inflight_fd;		/* -1: none yet */
	void *inflight_map;
	uint64_t inflight_size, inflight_offset;
};

static struct log_ratelimit vu_rl = LOG_RATELIMIT_INIT;

static int vu_collect_acks(struct vhost_user *u, bool wait);

static struct vhost_user *conn_of(const struct vhost_dev *dev)
{
	return dev->conn;
}

static bool has_proto(const struct vhost_user *u, unsigned int bit)
{
	return u->protocol & BIT(bit);
}

static const char *vu_name(const struct vhost_user *u)
{
	return u->dev && u->dev->name ? u->dev->name : "vhost-user";
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ---- connection death ---- */

/* Marks the connection dead (lock held): later requests fail; the event loop reports it. */
static void vu_kill(struct vhost_user *u, const char *what, int err)
{
	if (u->dead)
		return;
	u->dead = true;
	u->nacks = 0;	/* never coming */
	log_warn("%s: the vhost-user back-end%s%s is gone (%s: %s)", vu_name(u),
		 u->path ? " at " : "", u->path ? u->path : "", what, strerror(-err));
	if (u->sock >= 0)
		shutdown(u->sock, SHUT_RDWR);	/* the event loop sees the hang-up */
}

/* ---- requests ---- */

/* Sends msg (lock held); 0 or -errno (the connection is then dead). */
static int vu_send(struct vhost_user *u, const struct vhost_user_msg *msg)
{
	int ret;

	if (u->dead)
		return -ENOTCONN;
	ret = vhost_user_send_msg(u->sock, msg, u->timeout_ms);
	if (ret)
		vu_kill(u, vhost_user_request_name(msg->hdr.request), ret);
	return ret ? -ENOTCONN : 0;
}

/* A reply of any size (the caller checks it): vu_recv_reply_wait's size. */
#define VU_ANY_SIZE	UINT32_MAX

/*
 * Receives the reply to `request` of exactly `size` bytes (or VU_ANY_SIZE)
 * with at most max_fds fds, waiting up to wait_ms for it to begin (lock
 * held); 0 or -ENOTCONN (the connection is dead, no fd kept).
 */
static int vu_recv_reply_wait(struct vhost_user *u, uint32_t request, uint32_t size,
			      unsigned int max_fds, struct vhost_user_msg *reply, int wait_ms)
{
	struct pollfd p = { .fd = u->sock, .events = POLLIN };
	int ret;

	/* vhost_user_recv's timeout starts at the first byte: a silent back-end is timed here. */
	do
		ret = poll(&p, 1, wait_ms);
	while (ret < 0 && errno == EINTR);
	if (ret == 0)
		ret = -ETIMEDOUT;
	else if (ret < 0)
		ret = -errno;
	else
		ret = vhost_user_recv(u->sock, reply, u->timeout_ms);
	if (ret == -EAGAIN)
		ret = -ETIMEDOUT;
	if (!ret && vhost_user_check_reply(reply, request,
					   size == VU_ANY_SIZE ? reply->hdr.size : size, max_fds)) {
		log_warn_ratelimited(&vu_rl, "%s: bad reply to %s: request %u, flags %#x, %u bytes, "
				     "%u fds", vu_name(u), vhost_user_request_name(request),
				     reply->hdr.request, reply->hdr.flags, reply->hdr.size,
				     reply->nfds);
		vhost_user_msg_close_fds(reply);
		ret = -EPROTO;
	}
	if (ret) {
		vu_kill(u, vhost_user_request_name(request), ret);
		return -ENOTCONN;
	}
	return 0;
}

static int vu_recv_reply(struct vhost_user *u, uint32_t request, uint32_t size,
			 unsigned int max_fds, struct vhost_user_msg *reply)
{
	uint64_t t0 = monotonic_ms(), ms;
	int ret;

	ret = vu_recv_reply_wait(u, request, size, max_fds, reply, u->timeout_ms);
	ms = monotonic_ms() - t0;
	/* A slow answer stalls a start or a stop (the guest paused meanwhile): say which. */
	if (ms >= 10)
		log_info("%s: the back-end took %llu ms to answer %s", vu_name(u),
			 (unsigned long long)ms, vhost_user_request_name(request));
	return ret;
}

/*
 * Sends a request with its own reply and receives it (lock held), after the
 * acks still owed (a refusal among them stays in acks_err); 0 or -ENOTCONN.
 */
static int vu_call_locked(struct vhost_user *u, struct vhost_user_msg *msg, uint32_t reply_size,
			  unsigned int max_fds, struct vhost_user_msg *reply)
{
	int ret = vu_send(u, msg);

	if (!ret)
		ret = vu_collect_acks(u, true);
	return ret ? ret : vu_recv_reply(u, msg->hdr.request, reply_size, max_fds, reply);
}

/* A ring's setup: its ack may wait (see struct vhost_user's acks). */
static bool vu_ack_can_wait(uint32_t request)
{
	switch (request) {
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_SET_VRING_ADDR:
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
	case VHOST_USER_SET_VRING_ENABLE:
		return true;
	default:
		return false;
	}
}

/* Reads one REPLY_ACK ack (lock held): 0 (refusals go to acks_err) or -ENOTCONN. */
static int vu_read_ack(struct vhost_user *u, uint32_t request)
{
	struct vhost_user_msg reply;
	int ret = vu_recv_reply(u, request, sizeof(uint64_t), 0, &reply);

	if (ret)
		return ret;
	if (reply.p.u64) {
		log_warn_ratelimited(&vu_rl, "%s: the back-end refuses %s (%#llx)", vu_name(u),
				     vhost_user_request_name(request),
				     (unsigned long long)reply.p.u64);
		if (!u->acks_err)
			u->acks_err = -EIO;
	}
	return 0;
}

/*
 * Reads the acks still owed, oldest first (lock held); without wait, only those
 * that have arrived (the event loop's part). 0 or -ENOTCONN (vu_kill dropped them).
 */
static int vu_collect_acks(struct vhost_user *u, bool wait)
{
	unsigned int n = 0;

	while (n < u->nacks) {
		struct pollfd p = { .fd = u->sock, .events = POLLIN };
		int ret;

		if (!wait && (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN)))
			break;
		ret = vu_read_ack(u, u->acks[n]);
		if (ret)
			return ret;
		n++;
	}
	memmove(u->acks, u->acks + n, (u->nacks - n) * sizeof(u->acks[0]));
	u->nacks -= n;
	return 0;
}

/* Every ack read (lock held): 0, the first refusal since the last flush (-EIO) or -ENOTCONN. */
static int vu_flush_locked(struct vhost_user *u)
{
	int ret = vu_collect_acks(u, true);

	if (!ret)
		ret = u->acks_err;
	u->acks_err = 0;
	return ret;
}

/*
 * Sends a request without a reply of its own (lock held); with REPLY_ACK asks
 * for one: 0, -EIO (the back-end refused it) or -ENOTCONN.
 */
static int vu_request_locked(struct vhost_user *u, struct vhost_user_msg *msg)
{
	bool ack = has_proto(u, VHOST_USER_PROTOCOL_F_REPLY_ACK);
	uint32_t request = msg->hdr.request;
	int ret;

	if (ack)
		msg->hdr.flags |= VHOST_USER_FLAG_NEED_REPLY;
	ret = vu_send(u, msg);
	if (ret || !ack)
		return ret;
	if (u->nacks == VU_MAX_PENDING_ACKS) {
		ret = vu_collect_acks(u, true);
		if (ret)
			return ret;
	}
	u->acks[u->nacks++] = request;
	return vu_ack_can_wait(request) ? 0 : vu_flush_locked(u);
}

static int vu_request(struct vhost_user *u, struct vhost_user_msg *msg)
{
	int ret;

	pthread_mutex_lock(&u->lock);
	ret = vu_request_locked(u, msg);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

/* GET_FEATURES-like: a request with a u64 reply (lock held). */
static int vu_get_u64_locked(struct vhost_user *u, uint32_t request, uint64_t *val)
{
	struct vhost_user_msg msg, reply;
	int ret;

	vhost_user_msg_init(&msg, request, 0, 0);
	ret = vu_call_locked(u, &msg, sizeof(uint64_t), 0, &reply);
	if (!ret)
		*val = reply.p.u64;
	return ret;
}

static int vu_set_u64_locked(struct vhost_user *u, uint32_t request, uint64_t val)
{
	struct vhost_user_msg msg;

	vhost_user_msg_init(&msg, request, 0, sizeof(uint64_t));
	msg.p.u64 = val;
	return vu_request_locked(u, &msg);
}

/* ---- event loop ---- */

static void vu_unwatch_socket(struct vhost_user *u)
{
	if (u->sock_watched) {
		event_loop_remove(u->loop, &u->sock_src);
		u->sock_watched = false;
	}
}

static void vu_close_channel(struct vhost_user *u)
{
	if (u->req_watched) {
		event_loop_remove(u->loop, &u->req_src);
		u->req_watched = false;
	}
	close_fd(&u->req_fd);
}

static void vu_sock_event(struct event_source *src, uint32_t events)
{
	struct vhost_user *u = container_of(src, struct vhost_user, sock_src);

	vhost_user_check_socket(u->dev);
}

static void vu_req_event(struct event_source *src, uint32_t events)
{
	struct vhost_user *u = container_of(src, struct vhost_user, req_src);

	while (vhost_user_service_channel(u->dev) == 0)
		;
}

static void vu_err_event(struct event_source *src, uint32_t events)
{
	struct vu_err_watch *w = container_of(src, struct vu_err_watch, src);
	uint64_t v;

	if (read(src->fd, &v, sizeof(v)) == sizeof(v))
		log_warn_ratelimited(&vu_rl, "%s: the vhost-user back-end reports an error on "
				     "ring %u", vu_name(w->u), w->ring);
}

bool vhost_user_check_socket(struct vhost_dev *dev)
{
	struct vhost_user *u = conn_of(dev);
	bool report = false;

	if (!u)
		return true;
	pthread_mutex_lock(&u->lock);
	/* Acks still owed are what may arrive now (a refusal is kept for the next flush). */
	if (!u->dead && u->nacks)
		vu_collect_acks(u, false);
	if (!u->dead && !u->nacks) {
		/* Between requests nothing else may arrive: data is a protocol error, HUP the end. */
		struct pollfd p = { .fd = u->sock, .events = POLLIN | POLLRDHUP };

		if (poll(&p, 1, 0) > 0 && p.revents)
			vu_kill(u, p.revents & (POLLHUP | POLLRDHUP | POLLERR) ?
				"hang-up" : "a message nobody asked for", -ECONNRESET);
	}
	if (u->dead && !u->reported) {
		u->reported = true;
		report = true;
		vu_unwatch_socket(u);
		vu_close_channel(u);
	}
	pthread_mutex_unlock(&u->lock);
	if (report)
		vhost_dev_disconnected(dev, "its vhost-user back-end closed the connection");
	return u->dead;
}

/* Answers a back-end request with an error / success u64 if it asked for a reply. */
static void vu_channel_reply(struct vhost_user *u, const struct vhost_user_msg *req, uint64_t val)
{
	struct vhost_user_msg r;

	if (!(req->hdr.flags & VHOST_USER_FLAG_NEED_REPLY))
		return;
	vhost_user_msg_init(&r, req->hdr.request, VHOST_USER_FLAG_REPLY, sizeof(uint64_t));
	r.p.u64 = val;
	if (vhost_user_send_msg(u->req_fd, &r, u->timeout_ms))
		log_warn_ratelimited(&vu_rl, "%s: cannot answer the back-end's request %u",
				     vu_name(u), req->hdr.request);
}

int vhost_user_service_channel(struct vhost_dev *dev)
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg;
	uint32_t flags_ok;
	int ret;

	if (!u || u->req_fd < 0)
		return -ENOTCONN;
	ret = vhost_user_recv(u->req_fd, &msg, u->timeout_ms);
	if (ret == -EAGAIN)
		return ret;
	if (ret) {
		if (ret != -ECONNRESET)
			log_warn("%s: the vhost-user back-end request channel failed (%s); it is "
				 "closed, config changes are no longer announced", vu_name(u),
				 strerror(-ret));
		vu_close_channel(u);
		return ret;
	}
	/* A request: version 1, no REPLY flag; NEED_REPLY allowed. */
	flags_ok = (msg.hdr.flags & ~VHOST_USER_FLAG_NEED_REPLY) == VHOST_USER_VERSION;
	if (flags_ok && msg.hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG &&
	    msg.nfds == 0 && msg.hdr.size == 0) {
		/* Ack first: a back-end waiting for it could not answer our GET_CONFIG. */
		vu_channel_reply(u, &msg, 0);
		if (has_proto(u, VHOST_USER_PROTOCOL_F_CONFIG))
			vhost_dev_config_changed(dev);
		return 0;
	}
	log_warn_ratelimited(&vu_rl, "%s: the vhost-user back-end sent request %u (flags %#x, %u "
			     "bytes, %u fds) on its channel; refused", vu_name(u), msg.hdr.request,
			     msg.hdr.flags, msg.hdr.size, msg.nfds);
	vhost_user_msg_close_fds(&msg);
	if (flags_ok)
		vu_channel_reply(u, &msg, 1);
	return 0;
}

/* ---- the set-up sequence ---- */

/* The back-end request channel: a socketpair, the other end sent with SET_BACKEND_REQ_FD. */
static int vu_setup_channel(struct vhost_user *u)
{
	struct vhost_user_msg msg;
	int sv[2], ret;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		return -errno;
	vhost_user_msg_init(&msg, VHOST_USER_SET_BACKEND_REQ_FD, 0, 0);
	msg.fds[0] = sv[1];
	msg.nfds = 1;
	ret = vu_request_locked(u, &msg);
	close(sv[1]);
	if (ret) {
		close(sv[0]);
		return ret;
	}
	u->req_fd = sv[0];
	if (u->loop) {
		u->req_src = (struct event_source){ .fd = u->req_fd, .fn = vu_req_event };
		if (event_loop_add(u->loop, &u->req_src, EPOLLIN) == 0)
			u->req_watched = true;
	}
	return 0;
}

/* GET_FEATURES ... SET_OWNER (lock held); 0 or -errno. */
static int vu_handshake(struct vhost_user *u)
{
	uint64_t v;
	int ret;

	u->protocol = 0;
	u->queue_num = u->base_queues;
	u->max_slots = VHOST_USER_MEM_REGIONS;
	memset(u->slots, 0, sizeof(u->slots));
	ret = vu_get_u64_locked(u, VHOST_USER_GET_FEATURES, &u->features);
	if (ret)
		return ret;
	if (u->features & BIT(VHOST_USER_F_PROTOCOL_FEATURES)) {
		ret = vu_get_u64_locked(u, VHOST_USER_GET_PROTOCOL_FEATURES, &v);
		if (ret)
			return ret;
		v &= VHOST_USER_FE_PROTOCOL;
		/* Sent without REPLY_ACK (not negotiated until the back-end has it). */
		ret = vu_set_u64_locked(u, VHOST_USER_SET_PROTOCOL_FEATURES, v);
		if (ret)
			return ret;
		u->protocol = v;
	}
	if (has_proto(u, VHOST_USER_PROTOCOL_F_MQ)) {
		ret = vu_get_u64_locked(u, VHOST_USER_GET_QUEUE_NUM, &v);
		if (ret)
			return ret;
		if (v == 0 || v > 0xffff) {
			log_error("%s: the vhost-user back-end has %llu queues — a back-end bug",
				  vu_name(u), (unsigned long long)v);
			return -EPROTO;
		}
		/*
		 * The answer is in the back-end's unit (a virtio-net back-end counts
		 * queue pairs): the device's fixed set is served in any case.
		 */
		u->queue_num = MAX((unsigned int)v, u->base_queues);
	}
	if (has_proto(u, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
		ret = vu_get_u64_locked(u, VHOST_USER_GET_MAX_MEM_SLOTS, &v);
		if (ret)
			return ret;
		if (v == 0) {
			log_error("%s: the vhost-user back-end takes no memory slots", vu_name(u));
			return -EPROTO;
		}
		u->max_slots = (unsigned int)MIN(v, (uint64_t)ARRAY_SIZE(u->slots));
	}
	if (has_proto(u, VHOST_USER_PROTOCOL_F_BACKEND_REQ)) {
		ret = vu_setup_channel(u);
		if (ret)
			return ret;
	}
	{
		struct vhost_user_msg msg;

		vhost_user_msg_init(&msg, VHOST_USER_SET_OWNER, 0, 0);
		ret = vu_request_locked(u, &msg);
	}
	if (!ret && u->loop && !u->sock_watched) {
		u->sock_src = (struct event_source){ .fd = u->sock, .fn = vu_sock_event };
		if (event_loop_add(u->loop, &u->sock_src, EPOLLIN | EPOLLRDHUP) == 0)
			u->sock_watched = true;
	}
	return ret;
}

static int vu_set_owner(struct vhost_dev *dev)
{
	struct vhost_user *u = conn_of(dev);
	int ret;

	u->dev = dev;
	pthread_mutex_lock(&u->lock);
	ret = vu_handshake(u);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

static int vu_get_features(struct vhost_dev *dev, uint64_t *features)
{
	*features = conn_of(dev)->features;
	return 0;
}

/* The in-flight area at a start: fetched the first time, handed back later (lock held). */
static int vu_inflight_locked(struct vhost_user *u)
{
	struct vhost_user_msg msg, reply;
	void *map;
	int ret;

	if (!has_proto(u, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) || !u->inflight_nq)
		return 0;
	if (u->inflight_fd >= 0) {
		vhost_user_msg_init(&msg, VHOST_USER_SET_INFLIGHT_FD, 0, sizeof(msg.p.inflight));
		msg.p.inflight = (struct vhost_user_inflight){
			.mmap_size = u->inflight_size,
			.mmap_offset = u->inflight_offset,
			.num_queues = u->inflight_nq,
			.queue_size = u->inflight_qs,
		};
		msg.fds[0] = u->inflight_fd;
		msg.nfds = 1;
		return vu_request_locked(u, &msg);
	}
	vhost_user_msg_init(&msg, VHOST_USER_GET_INFLIGHT_FD, 0, sizeof(msg.p.inflight));
	msg.p.inflight = (struct vhost_user_inflight){
		.num_queues = u->inflight_nq,
		.queue_size = u->inflight_qs,
	};
	ret = vu_call_locked(u, &msg, sizeof(reply.p.inflight), 1, &reply);
	if (ret)
		return ret;
	if (reply.p.inflight.mmap_size == 0) {
		/* The back-end could not make one: run without. */
		vhost_user_msg_close_fds(&reply);
		log_warn("%s: the vhost-user back-end gives no in-flight area; requests in flight "
			 "when it dies are not resubmitted", vu_name(u));
		return 0;
	}
	{
		const struct vhost_user_inflight *in = &reply.p.inflight;
		uint64_t need = (uint64_t)u->inflight_nq *
				(sizeof(struct vu_fe_inflight_queue) +
				 (uint64_t)u->inflight_qs * sizeof(struct vu_fe_inflight_desc));
		struct stat st;

		if (reply.nfds != 1 || in->mmap_size < need || in->mmap_size > (1ULL << 30) ||
		    in->mmap_offset > (1ULL << 40) || (in->mmap_offset & 4095) ||
		    fstat(reply.fds[0], &st) < 0 || !S_ISREG(st.st_mode) ||
		    (uint64_t)st.st_size < in->mmap_offset + in->mmap_size) {
			log_warn("%s: the vhost-user back-end's in-flight area does not fit (%u fds, "
				 "%llu bytes); running without", vu_name(u), reply.nfds,
				 (unsigned long long)in->mmap_size);
			vhost_user_msg_close_fds(&reply);
			return 0;
		}
		map = mmap(NULL, in->mmap_size, PROT_READ, MAP_SHARED, reply.fds[0],
			   (off_t)in->mmap_offset);
		if (map == MAP_FAILED) {
			vhost_user_msg_close_fds(&reply);
			return 0;
		}
		u->inflight_fd = reply.fds[0];
		u->inflight_map = map;
		u->inflight_size = in->mmap_size;
		u->inflight_offset = in->mmap_offset;
	}
	return 0;
}

static void vu_drop_inflight(struct vhost_user *u)
{
	if (u->inflight_map)
		munmap(u->inflight_map, u->inflight_size);
	u->inflight_map = NULL;
	close_fd(&u->inflight_fd);
}

static int vu_set_features(struct vhost_dev *dev, uint64_t features)
{
	struct vhost_user *u = conn_of(dev);
	int ret;

	/* The back-end keeps its protocol features only while bit 30 is set. */
	if (u->features & BIT(VHOST_USER_F_PROTOCOL_FEATURES))
		features |= BIT(VHOST_USER_F_PROTOCOL_FEATURES);
	pthread_mutex_lock(&u->lock);
	ret = vu_set_u64_locked(u, VHOST_USER_SET_FEATURES, features);
	if (!ret)
		ret = vu_inflight_locked(u);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

static struct vhost_user_mem_region vu_region(const struct vhost_mem_region *r)
{
	return (struct vhost_user_mem_region){
		.guest_addr = r->gpa,
		.size = r->size,
		.user_addr = r->hva,
		.mmap_offset = r->fd_offset,
	};
}

static bool same_region(const struct vhost_user_mem_region *a,
			const struct vhost_user_mem_region *b)
{
	return a->guest_addr == b->guest_addr && a->size == b->size &&
	       a->user_addr == b->user_addr && a->mmap_offset == b->mmap_offset;
}

/* CONFIGURE_MEM_SLOTS: removes the slots not in t, adds t's new regions (lock held). */
static int vu_update_slots_locked(struct vhost_user *u, const struct vhost_mem_table *t)
{
	struct vhost_user_msg msg;
	int ret;

	for (unsigned int s = 0; s < ARRAY_SIZE(u->slots); s++) {
		bool keep = false;

		if (!u->slots[s].used)
			continue;
		for (unsigned int i = 0; i < t->nregions; i++) {
			struct vhost_user_mem_region r = vu_region(&t->regions[i]);

			keep |= same_region(&r, &u->slots[s].r);
		}
		if (keep)
			continue;
		vhost_user_msg_init(&msg, VHOST_USER_REM_MEM_REG, 0, sizeof(msg.p.mem_reg));
		msg.p.mem_reg.region = u->slots[s].r;
		ret = vu_request_locked(u, &msg);
		if (ret)
			return ret;
		u->slots[s].used = false;
	}
	for (unsigned int i = 0; i < t->nregions; i++) {
		struct vhost_user_mem_region r = vu_region(&t->regions[i]);
		unsigned int free_slot = ARRAY_SIZE(u->slots), nused = 0;
		bool have = false;

		for (unsigned int s = 0; s < ARRAY_SIZE(u->slots); s++) {
			if (u->slots[s].used) {
				nused++;
				have |= same_region(&r, &u->slots[s].r);
			} else if (free_slot == ARRAY_SIZE(u->slots)) {
				free_slot = s;
			}
		}
		if (have)
			continue;
		if (nused >= u->max_slots || free_slot == ARRAY_SIZE(u->slots))
			return -E2BIG;
		vhost_user_msg_init(&msg, VHOST_USER_ADD_MEM_REG, 0, sizeof(msg.p.mem_reg));
		msg.p.mem_reg.region = r;
		msg.fds[0] = t->regions[i].fd;
		msg.nfds = 1;
		ret = vu_request_locked(u, &msg);
		if (ret)
			return ret;
		u->slots[free_slot] = (struct vu_slot){ .r = r, .used = true };
	}
	return 0;
}

static int vu_set_mem_table(struct vhost_dev *dev, const struct vhost_mem_table *t)
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg;
	int ret;

	if (!t->nregions)
		return -EINVAL;
	for (unsigned int i = 0; i < t->nregions; i++)
		if (t->regions[i].fd < 0)
			return -EINVAL;	/* guest RAM is not shared (--memory shared=on) */
	pthread_mutex_lock(&u->lock);
	if (has_proto(u, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
		ret = t->nregions > u->max_slots ? -E2BIG : vu_update_slots_locked(u, t);
	} else if (t->nregions > VHOST_USER_MEM_REGIONS) {
		ret = -E2BIG;
	} else {
		vhost_user_msg_init(&msg, VHOST_USER_SET_MEM_TABLE, 0,
				    offsetof(struct vhost_user_mem_table, regions) +
				    t->nregions * sizeof(struct vhost_user_mem_region));
		msg.p.mem.nregions = t->nregions;
		for (unsigned int i = 0; i < t->nregions; i++) {
			msg.p.mem.regions[i] = vu_region(&t->regions[i]);
			msg.fds[i] = t->regions[i].fd;
		}
		msg.nfds = t->nregions;
		ret = vu_request_locked(u, &msg);
	}
	pthread_mutex_unlock(&u->lock);
	return ret;
}

static int vu_check_ring(const struct vhost_user *u, unsigned int ring)
{
	return ring < u->queue_num && ring < VHOST_MAX_RINGS ? 0 : -EINVAL;
}

static int vu_vring_state(struct vhost_dev *dev, uint32_t request, unsigned int ring,
			  unsigned int num)
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg;

	if (vu_check_ring(u, ring))
		return -EINVAL;
	vhost_user_msg_init(&msg, request, 0, sizeof(msg.p.state));
	msg.p.state = (struct vhost_user_vring_state){ .index = ring, .num = num };
	return vu_request(u, &msg);
}

static int vu_set_vring_num(struct vhost_dev *dev, unsigned int ring, unsigned int num)
{
	return vu_vring_state(dev, VHOST_USER_SET_VRING_NUM, ring, num);
}

static int vu_set_vring_base(struct vhost_dev *dev, unsigned int ring, uint16_t base)
{
	return vu_vring_state(dev, VHOST_USER_SET_VRING_BASE, ring, base);
}

static int vu_get_vring_base(struct vhost_dev *dev, unsigned int ring, uint16_t *base)
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg, reply;
	int ret;

	if (vu_check_ring(u, ring))
		return -EINVAL;
	vhost_user_msg_init(&msg, VHOST_USER_GET_VRING_BASE, 0, sizeof(msg.p.state));
	msg.p.state = (struct vhost_user_vring_state){ .index = ring };
	pthread_mutex_lock(&u->lock);
	ret = vu_call_locked(u, &msg, sizeof(reply.p.state), 0, &reply);
	if (!ret && (reply.p.state.index != ring || reply.p.state.num > 0xffff)) {
		vu_kill(u, "GET_VRING_BASE's reply names another ring or a packed-ring base",
			-EPROTO);
		ret = -ENOTCONN;
	}
	pthread_mutex_unlock(&u->lock);
	if (!ret)
		*base = (uint16_t)reply.p.state.num;
	return ret;
}

static int vu_set_vring_addr(struct vhost_dev *dev, unsigned int ring,
			     const struct vhost_ring_addrs *a)
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg;

	if (vu_check_ring(u, ring))
		return -EINVAL;
	vhost_user_msg_init(&msg, VHOST_USER_SET_VRING_ADDR, 0, sizeof(msg.p.addr));
	msg.p.addr = (struct vhost_user_vring_addr){
		.index = ring,
		.desc = a->desc,
		.used = a->used,
		.avail = a->avail,
		.log = a->used_gpa,
		.flags = a->log ? 1u << VHOST_USER_VRING_F_LOG : 0,
	};
	return vu_request(u, &msg);
}

/*
 * SET_VRING_KICK / CALL / ERR with fd (lock held). fd -1 (vhost.c unbinding a
 * stopped ring) sends nothing: GET_VRING_BASE stopped the ring already, and
 * to a vhost-user back-end "no fd" means polling, which few implement.
 */
static int vu_vring_fd(struct vhost_user *u, uint32_t request, unsigned int ring, int fd)
{
	struct vhost_user_msg msg;

	if (fd < 0)
		return 0;
	vhost_user_msg_init(&msg, request, 0, sizeof(uint64_t));
	msg.p.u64 = ring & VHOST_USER_VRING_IDX_MASK;
	msg.fds[0] = fd;
	msg.nfds = 1;
	return vu_request_locked(u, &msg);
}

/* The ring's error eventfd: made once, watched on the loop, sent before each kick. */
static int vu_err_fd_locked(struct vhost_user *u, unsigned int ring)
{
	if (u->err_fd[ring] < 0) {
		u->err_fd[ring] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (u->err_fd[ring] < 0)
			return -errno;
		if (u->loop) {
			struct vu_err_watch *w = &u->err_w[ring];

			*w = (struct vu_err_watch){
				.src = { .fd = u->err_fd[ring], .fn = vu_err_event },
				.u = u,
				.ring = ring,
			};
			w->watched = event_loop_add(u->loop, &w->src, EPOLLIN) == 0;
		}
	}
	return vu_vring_fd(u, VHOST_USER_SET_VRING_ERR, ring, u->err_fd[ring]);
}

static int vu_set_vring_kick(struct vhost_dev *dev, unsigned int ring, int fd)
{
	struct vhost_user *u = conn_of(dev);
	int ret = 0;

	if (vu_check_ring(u, ring))
		return -EINVAL;
	pthread_mutex_lock(&u->lock);
	if (fd >= 0)
		ret = vu_err_fd_locked(u, ring);
	if (!ret)
		ret = vu_vring_fd(u, VHOST_USER_SET_VRING_KICK, ring, fd);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

static int vu_set_vring_call(struct vhost_dev *dev, unsigned int ring, int fd)
{
	struct vhost_user *u = conn_of(dev);
	int ret;

	if (vu_check_ring(u, ring))
		return -EINVAL;
	pthread_mutex_lock(&u->lock);
	ret = vu_vring_fd(u, VHOST_USER_SET_VRING_CALL, ring, fd);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

static int vu_set_vring_enable(struct vhost_dev *dev, unsigned int ring, bool enable)
{
	struct vhost_user *u = conn_of(dev);

	/* Without PROTOCOL_FEATURES the rings are enabled by SET_FEATURES. */
	if (!(u->features & BIT(VHOST_USER_F_PROTOCOL_FEATURES)))
		return 0;
	return vu_vring_state(dev, VHOST_USER_SET_VRING_ENABLE, ring, enable ? 1 : 0);
}

static int vu_get_config(struct vhost_dev *dev, uint32_t offset, void *buf, uint32_t len)
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg, reply;
	int ret;

	if (!has_proto(u, VHOST_USER_PROTOCOL_F_CONFIG))
		return -EOPNOTSUPP;
	if (!len || len > VHOST_USER_CONFIG_MAX)
		return -EINVAL;
	vhost_user_msg_init(&msg, VHOST_USER_GET_CONFIG, 0, VHOST_USER_CONFIG_HDR_SIZE + len);
	memset(&msg.p.config, 0, sizeof(msg.p.config));
	msg.p.config.offset = offset;
	msg.p.config.size = len;
	pthread_mutex_lock(&u->lock);
	ret = vu_call_locked(u, &msg, VHOST_USER_CONFIG_HDR_SIZE + len, 0, &reply);
	if (!ret && (reply.p.config.offset != offset || reply.p.config.size != len)) {
		vu_kill(u, "GET_CONFIG's reply is for another range", -EPROTO);
		ret = -ENOTCONN;
	}
	pthread_mutex_unlock(&u->lock);
	if (!ret)
		memcpy(buf, reply.p.config.payload, len);
	return ret;
}

static int vu_set_config(struct vhost_dev *dev, uint32_t offset, const void *buf, uint32_t len)
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg;

	if (!has_proto(u, VHOST_USER_PROTOCOL_F_CONFIG))
		return -EOPNOTSUPP;
	if (!len || len > VHOST_USER_CONFIG_MAX)
		return -EINVAL;
	vhost_user_msg_init(&msg, VHOST_USER_SET_CONFIG, 0, VHOST_USER_CONFIG_HDR_SIZE + len);
	msg.p.config.offset = offset;
	msg.p.config.size = len;
	msg.p.config.flags = 0;	/* a front-end write */
	memcpy(msg.p.config.payload, buf, len);
	return vu_request(u, &msg);
}

/* ---- connection life ---- */

static int vu_connect_path(const char *path, int *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

int vhost_user_open(const struct vhost_user_opts *o, void **conn)
{
	struct vhost_user *u;
	int ret;

	*conn = NULL;
	if ((!o->path) == (o->fd < 0))
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	pthread_mutex_init(&u->lock, NULL);
	u->sock = u->req_fd = u->inflight_fd = -1;
	for (unsigned int i = 0; i < VHOST_MAX_RINGS; i++)
		u->err_fd[i] = -1;
	u->loop = o->loop;
	u->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : VHOST_USER_TIMEOUT_MS;
	u->inflight_nq = o->inflight_queues;
	u->inflight_qs = o->inflight_queue_size;
	u->base_queues = MAX(o->base_queues, 1u);
	u->state = o->state;
	u->state_hint = o->state_hint;
	u->state_timeout_ms = o->state_timeout_ms > 0 ? o->state_timeout_ms
						      : VHOST_USER_STATE_TIMEOUT_MS;
	if (o->path) {
		u->path = strdup(o->path);
		ret = u->path ? vu_connect_path(o->path, &u->sock) : -ENOMEM;
		if (ret) {
			vhost_user_close(u);
			return ret;
		}
	} else {
		u->sock = o->fd;
	}
	*conn = u;
	return 0;
}

void vhost_user_close(void *conn)
{
	struct vhost_user *u = conn;

	if (!u)
		return;
	/* u is freed below: its callbacks in flight on the loop thread finish first. */
	if (u->sock_watched)
		event_loop_remove_sync(u->loop, &u->sock_src);
	u->sock_watched = false;
	if (u->req_watched)
		event_loop_remove_sync(u->loop, &u->req_src);
	u->req_watched = false;
	vu_close_channel(u);
	for (unsigned int i = 0; i < VHOST_MAX_RINGS; i++) {
		if (u->err_w[i].watched)
			event_loop_remove_sync(u->loop, &u->err_w[i].src);
		close_fd(&u->err_fd[i]);
	}
	vu_drop_inflight(u);
	close_fd(&u->sock);
	pthread_mutex_destroy(&u->lock);
	free(u->path);
	free(u);
}

static void vu_cleanup(struct vhost_dev *dev)
{
	vhost_user_close(dev->conn);
	dev->conn = NULL;
}

int vhost_user_reconnect(struct vhost_dev *dev)
{
	struct vhost_user *u = conn_of(dev);
	int sock, ret;

	if (!u->path)
		return -EOPNOTSUPP;
	ret = vu_connect_path(u->path, &sock);
	if (ret)
		return ret;
	pthread_mutex_lock(&u->lock);
	vu_unwatch_socket(u);
	vu_close_channel(u);
	close_fd(&u->sock);
	u->sock = sock;
	u->dead = false;
	u->reported = false;
	u->nacks = 0;		/* the old connection's */
	u->acks_err = 0;
	ret = vu_handshake(u);
	if (ret) {
		vu_kill(u, "the set-up after reconnecting", ret);
		u->reported = true;	/* the caller retries; no second report */
		vu_unwatch_socket(u);
		vu_close_channel(u);
	}
	pthread_mutex_unlock(&u->lock);
	return ret;
}

bool vhost_user_connected(const struct vhost_dev *dev)
{
	const struct vhost_user *u = conn_of(dev);

	return u && !__atomic_load_n(&u->dead, __ATOMIC_RELAXED);
}

uint64_t vhost_user_protocol_features(const struct vhost_dev *dev)
{
	return conn_of(dev)->protocol;
}

unsigned int vhost_user_queue_num(const struct vhost_dev *dev)
{
	return conn_of(dev)->queue_num;
}

unsigned int vhost_user_max_mem_slots(const struct vhost_dev *dev)
{
	return conn_of(dev)->max_slots;
}

void vhost_user_reset_inflight(struct vhost_dev *dev)
{
	struct vhost_user *u = conn_of(dev);

	if (!u)
		return;
	pthread_mutex_lock(&u->lock);
	vu_drop_inflight(u);
	pthread_mutex_unlock(&u->lock);
}

static int vu_lost_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int vhost_user_lost_chains(struct vhost_dev *dev, unsigned int q, uint16_t used_idx,
			   uint16_t *heads, unsigned int max)
{
	struct vhost_user *u = conn_of(dev);
	const struct vu_fe_inflight_queue *s;
	uint64_t stride, qs;
	unsigned int n = 0;
	uint16_t batch, head;
	uint8_t done[VIRTQ_MAX_SIZE / 8] = { 0 };

	if (!u || !u->inflight_map)
		return -EOPNOTSUPP;
	if (q >= u->inflight_nq)
		return -EINVAL;
	stride = u->inflight_size / u->inflight_nq;
	s = (const void *)((const uint8_t *)u->inflight_map + q * stride);
	/* The back-end's memory: every value is checked, and read once. */
	qs = __atomic_load_n(&s->desc_num, __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&s->version, __ATOMIC_ACQUIRE) == 0)
		return 0;	/* never used */
	if (s->version != 1 || qs == 0 || qs > VIRTQ_MAX_SIZE ||
	    sizeof(*s) + qs * sizeof(s->desc[0]) > stride)
		return -EINVAL;
	/* Used elements published but not yet marked done in the area: that batch is not lost. */
	batch = (uint16_t)(used_idx - s->used_idx);
	if (batch > qs)
		return -EINVAL;
	head = s->last_batch_head;
	for (unsigned int i = 0; i < batch; i++) {
		if (head >= qs)
			return -EINVAL;
		done[head / 8] |= 1u << (head % 8);
		head = s->desc[head].next;
	}
	{
		struct vu_lost { uint64_t counter; uint16_t head; } *lost;

		lost = malloc(qs * sizeof(*lost));
		if (!lost)
			return -ENOMEM;
		for (unsigned int h = 0; h < qs; h++) {
			uint8_t f = s->desc[h].inflight;

			if (f > 1) {
				free(lost);
				return -EINVAL;
			}
			if (f && !(done[h / 8] & (1u << (h % 8))))
				lost[n++] = (struct vu_lost){ s->desc[h].counter, (uint16_t)h };
		}
		if (n > max) {
			free(lost);
			return -EINVAL;
		}
		qsort(lost, n, sizeof(*lost), vu_lost_cmp);
		for (unsigned int i = 0; i < n; i++)
			heads[i] = lost[i].head;
		free(lost);
	}
	return (int)n;
}

/* ---- migration: the dirty log ---- */

static const char *vu_where(const struct vhost_user *u)
{
	return u->path ? u->path : "(a socket given by the caller)";
}

static int vu_log_check(struct vhost_dev *dev, char *why, size_t whylen)
{
	struct vhost_user *u = conn_of(dev);

	if (!(u->features & BIT(VHOST_USER_F_LOG_ALL))) {
		snprintf(why, whylen, "the vhost-user back-end at %s does not offer VHOST_F_LOG_ALL "
			 "(it does not log its writes to guest memory)", vu_where(u));
		return -EOPNOTSUPP;
	}
	if (!has_proto(u, VHOST_USER_PROTOCOL_F_LOG_SHMFD)) {
		snprintf(why, whylen, "the vhost-user back-end at %s does not offer the LOG_SHMFD "
			 "protocol feature (it cannot map a shared dirty log)", vu_where(u));
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * SET_LOG_BASE {mmap_size, mmap_offset 0} with the log's memfd. It always has
 * a reply with LOG_SHMFD, whose payload implementations disagree on:
 * libvhost-user answers a u64 holding the request's mmap_size (what is left of
 * its payload union), rust-vmm's vhost echoes the 16-byte request, ours
 * answers a u64 0 (or 1 when it cannot map the log), QEMU reads any size and
 * checks only the request id. So: no payload, a u64 0 or equal to mmap_size,
 * or the request echoed means success; another u64 means the back-end refused
 * (-EIO); any other size breaks the protocol (the connection dies).
 */
static int vu_set_log_base(struct vhost_dev *dev, const struct dirty_log *log)
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg, reply;
	int ret;

	if (!has_proto(u, VHOST_USER_PROTOCOL_F_LOG_SHMFD) || log->fd < 0)
		return -EOPNOTSUPP;
	vhost_user_msg_init(&msg, VHOST_USER_SET_LOG_BASE, 0, sizeof(msg.p.log));
	msg.p.log = (struct vhost_user_log){ .mmap_size = log->size, .mmap_offset = 0 };
	msg.fds[0] = log->fd;
	msg.nfds = 1;
	pthread_mutex_lock(&u->lock);
	ret = vu_call_locked(u, &msg, VU_ANY_SIZE, 0, &reply);
	if (!ret) {
		uint32_t n = reply.hdr.size;

		if (n == sizeof(uint64_t) && reply.p.u64 != 0 && reply.p.u64 != log->size) {
			log_warn("%s: the vhost-user back-end cannot map the dirty log (SET_LOG_BASE "
				 "answered %#llx)", vu_name(u), (unsigned long long)reply.p.u64);
			ret = -EIO;
		} else if (n != 0 && n != sizeof(uint64_t) && n != sizeof(reply.p.log)) {
			vu_kill(u, "SET_LOG_BASE's reply has a size of its own", -EPROTO);
			ret = -ENOTCONN;
		}
	}
	pthread_mutex_unlock(&u->lock);
	return ret;
}

/* SET_FEATURES alone (LOG_ALL switched on a running device): no in-flight area again. */
static int vu_update_features(struct vhost_dev *dev, uint64_t features)
{
	struct vhost_user *u = conn_of(dev);
	int ret;

	if (u->features & BIT(VHOST_USER_F_PROTOCOL_FEATURES))
		features |= BIT(VHOST_USER_F_PROTOCOL_FEATURES);
	pthread_mutex_lock(&u->lock);
	ret = vu_set_u64_locked(u, VHOST_USER_SET_FEATURES, features);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

/* The acks owed read; 0, the first refusal since the last flush (-EIO) or -ENOTCONN. */
static int vu_flush(struct vhost_dev *dev)
{
	struct vhost_user *u = conn_of(dev);
	int ret;

	pthread_mutex_lock(&u->lock);
	ret = vu_flush_locked(u);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

/*
 * With REPLY_ACK every request is acked once done (the acks owed are read here);
 * without it a back-end handles requests in order, so GET_FEATURES's reply means
 * the earlier ones are done (QEMU's barrier when it switches logging on).
 */
static int vu_sync(struct vhost_dev *dev)
{
	struct vhost_user *u = conn_of(dev);
	uint64_t v;
	int ret;

	if (has_proto(u, VHOST_USER_PROTOCOL_F_REPLY_ACK))
		return vu_flush(dev);
	pthread_mutex_lock(&u->lock);
	ret = vu_get_u64_locked(u, VHOST_USER_GET_FEATURES, &v);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

/* ---- migration: the back-end's own state ---- */

static int vu_migratable(struct vhost_dev *dev, char *why, size_t whylen)
{
	struct vhost_user *u = conn_of(dev);

	if (!u->state || has_proto(u, VHOST_USER_PROTOCOL_F_DEVICE_STATE))
		return 0;
	snprintf(why, whylen, "its vhost-user back-end at %s keeps %s and cannot hand that over "
		 "(it does not offer the DEVICE_STATE protocol feature)%s%s", vu_where(u),
		 u->state, u->state_hint ? "; " : "", u->state_hint ? u->state_hint : "");
	return -EOPNOTSUPP;
}

static bool vu_has_state(struct vhost_dev *dev)
{
	return has_proto(conn_of(dev), VHOST_USER_PROTOCOL_F_DEVICE_STATE);
}

/* Starts (true) or ends a transfer; -EBUSY when one runs already. */
static int vu_transfer_claim(struct vhost_user *u, bool claim)
{
	int ret = 0;

	pthread_mutex_lock(&u->lock);
	if (claim && u->transferring)
		ret = -EBUSY;
	else
		u->transferring = claim;
	pthread_mutex_unlock(&u->lock);
	return ret;
}

/*
 * SET_DEVICE_STATE_FD(direction, STOPPED) with fd (which stays the caller's).
 * The reply: bits 0-7 an error (0: none), bit 8 set when no fd is attached;
 * when clear, the back-end's own fd comes with it and replaces the caller's:
 * *own gets it (else -1). 0; -EIO (refused); -EPROTO (a reply that says an fd
 * and has none, or the reverse: the connection dies); -ENOTCONN.
 */
static int vu_state_fd(struct vhost_user *u, uint32_t direction, int fd, int *own)
{
	struct vhost_user_msg msg, reply;
	uint64_t v;
	int ret;

	*own = -1;
	vhost_user_msg_init(&msg, VHOST_USER_SET_DEVICE_STATE_FD, 0, sizeof(msg.p.device_state));
	msg.p.device_state = (struct vhost_user_device_state){
		.direction = direction,
		.phase = VHOST_USER_PHASE_STOPPED,
	};
	msg.fds[0] = fd;
	msg.nfds = 1;
	pthread_mutex_lock(&u->lock);
	ret = vu_call_locked(u, &msg, sizeof(uint64_t), 1, &reply);
	if (ret) {
		pthread_mutex_unlock(&u->lock);
		return ret;
	}
	v = reply.p.u64;
	if (v & 0xff) {
		vhost_user_msg_close_fds(&reply);
		pthread_mutex_unlock(&u->lock);
		log_error("%s: the vhost-user back-end at %s refuses to %s its state "
			  "(SET_DEVICE_STATE_FD answered %#llx) — see its own log", vu_name(u),
			  vu_where(u), direction == VHOST_USER_TRANSFER_SAVE ? "save" : "load",
			  (unsigned long long)v);
		return -EIO;
	}
	if (!(v & VHOST_USER_VRING_NOFD) != (reply.nfds == 1)) {
		vhost_user_msg_close_fds(&reply);
		vu_kill(u, "SET_DEVICE_STATE_FD's reply says an fd comes and none does, or the reverse",
			-EPROTO);
		pthread_mutex_unlock(&u->lock);
		return -EPROTO;
	}
	if (reply.nfds == 1) {
		*own = reply.fds[0];
		reply.fds[0] = -1;
		reply.nfds = 0;
	}
	pthread_mutex_unlock(&u->lock);
	return 0;
}

/* CHECK_DEVICE_STATE after the transfer fd was closed: 0, -EIO (the back-end failed) or -ENOTCONN. */
static int vu_check_state(struct vhost_user *u, uint32_t direction)
{
	struct vhost_user_msg msg, reply;
	int ret;

	vhost_user_msg_init(&msg, VHOST_USER_CHECK_DEVICE_STATE, 0, 0);
	pthread_mutex_lock(&u->lock);
	ret = vu_send(u, &msg);
	/* The back-end may finish applying the state first (virtiofsd does): the transfer's limit. */
	if (!ret)
		ret = vu_recv_reply_wait(u, VHOST_USER_CHECK_DEVICE_STATE, sizeof(uint64_t), 0,
					 &reply, MAX(u->state_timeout_ms, u->timeout_ms));
	pthread_mutex_unlock(&u->lock);
	if (ret)
		return ret;
	if (reply.p.u64) {
		log_error("%s: the vhost-user back-end at %s says its state %s failed "
			  "(CHECK_DEVICE_STATE answered %#llx) — see its own log", vu_name(u),
			  vu_where(u), direction == VHOST_USER_TRANSFER_SAVE ? "save" : "load",
			  (unsigned long long)reply.p.u64);
		return -EIO;
	}
	return 0;
}

/* An fd the back-end gave must be a pipe or a socket (something that behaves like a pipe). */
static int vu_transfer_fd_ok(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		return -EPROTO;
	return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ? -errno : 0;
}

/* Waits up to timeout_ms for fd to be ready for events: 0, -ETIMEDOUT or -errno. */
static int vu_transfer_wait(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

/*
 * Reads fd to EOF into sink, in chunks of at most cap bytes (buf). 0, the
 * sink's -errno (*sink_err set), -ETIMEDOUT (nothing for the transfer's limit)
 * or the read's -errno.
 */
static int vu_save_loop(struct vhost_user *u, int fd, uint8_t *buf, size_t cap,
			const struct virtio_state_sink *sink, bool *sink_err, uint64_t *total)
{
	size_t len = 0;
	int ret;

	for (;;) {
		ssize_t n = read(fd, buf + len, cap - len);

		if (n > 0) {
			len += (size_t)n;
			*total += (uint64_t)n;
			if (len == cap) {
				ret = sink->chunk(sink->opaque, buf, len);
				len = 0;
				if (ret) {
					*sink_err = true;
					return ret;
				}
			}
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		ret = vu_transfer_wait(fd, POLLIN, u->state_timeout_ms);
		if (ret)
			return ret;
	}
	if (len) {
		ret = sink->chunk(sink->opaque, buf, len);
		if (ret)
			*sink_err = true;
		return ret;
	}
	return 0;
}

static int vu_save_state(struct vhost_dev *dev, const struct virtio_state_sink *sink)
{
	struct vhost_user *u = conn_of(dev);
	size_t cap = MIN(sink->max, (size_t)VHOST_USER_STATE_CHUNK);
	bool sink_err = false;
	uint64_t total = 0;
	uint8_t *buf = NULL;
	int p[2] = { -1, -1 }, own, ret, check;

	if (!has_proto(u, VHOST_USER_PROTOCOL_F_DEVICE_STATE))
		return -EOPNOTSUPP;
	if (!cap || !sink->chunk)
		return -EINVAL;
	if (!vhost_user_connected(dev))
		return -ENOTCONN;
	ret = vu_transfer_claim(u, true);
	if (ret)
		return ret;
	buf = malloc(cap);
	if (!buf || pipe2(p, O_CLOEXEC) < 0) {
		ret = buf ? -errno : -ENOMEM;
		free(buf);
		vu_transfer_claim(u, false);
		return ret;
	}
	ret = vu_state_fd(u, VHOST_USER_TRANSFER_SAVE, p[1], &own);
	close_fd(&p[1]);	/* the back-end's copy is the writer; ours would hide the EOF */
	if (ret) {
		close_fd(&p[0]);
		free(buf);
		vu_transfer_claim(u, false);
		return ret;
	}
	if (own >= 0) {
		close_fd(&p[0]);
		p[0] = own;
		ret = vu_transfer_fd_ok(p[0]);
		if (ret)
			log_error("%s: the vhost-user back-end at %s gave an fd for its state that is "
				  "neither a pipe nor a socket — a back-end bug", vu_name(u),
				  vu_where(u));
	} else if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0) {
		ret = -errno;
	}
	/* To EOF before CHECK_DEVICE_STATE: virtiofsd answers CHECK only once its writer ended. */
	if (!ret)
		ret = vu_save_loop(u, p[0], buf, cap, sink, &sink_err, &total);
	close_fd(&p[0]);
	free(buf);
	if (ret == -ETIMEDOUT) {
		/* A stalled back-end would not answer CHECK either: the connection stays as it is. */
		log_error("%s: the vhost-user back-end at %s sent %llu bytes of its state and then "
			  "nothing for %d ms; the save is given up — check the back-end (it may be "
			  "stuck)", vu_name(u), vu_where(u), (unsigned long long)total,
			  u->state_timeout_ms);
		vu_transfer_claim(u, false);
		return ret;
	}
	if (ret && !sink_err && ret != -EPROTO)
		log_error("%s: reading the state of the vhost-user back-end at %s failed after %llu "
			  "bytes: %s", vu_name(u), vu_where(u), (unsigned long long)total,
			  strerror(-ret));
	/* The back-end started a transfer: CHECK ends it, whatever happened here. */
	check = vu_check_state(u, VHOST_USER_TRANSFER_SAVE);
	vu_transfer_claim(u, false);
	return ret ? ret : check;
}

/* Writes all of buf[0, n) to fd (non-blocking; a socket without SIGPIPE). 0 or -errno. */
static int vu_load_write(struct vhost_user *u, int fd, const uint8_t *buf, size_t n)
{
	size_t off = 0;
	int ret;

	while (off < n) {
		ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, buf + off, n - off);	/* a pipe: SIGPIPE is ignored */
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		ret = vu_transfer_wait(fd, POLLOUT, u->state_timeout_ms);
		if (ret)
			return ret;
	}
	return 0;
}

static int vu_load_state(struct vhost_dev *dev, const struct virtio_state_source *src)
{
	struct vhost_user *u = conn_of(dev);
	bool src_err = false;
	uint64_t total = 0;
	uint8_t *buf;
	int p[2] = { -1, -1 }, own, ret, check;

	if (!has_proto(u, VHOST_USER_PROTOCOL_F_DEVICE_STATE))
		return -EOPNOTSUPP;
	if (!src->chunk)
		return -EINVAL;
	if (!vhost_user_connected(dev))
		return -ENOTCONN;
	ret = vu_transfer_claim(u, true);
	if (ret)
		return ret;
	buf = malloc(VHOST_USER_STATE_CHUNK);
	if (!buf || pipe2(p, O_CLOEXEC) < 0) {
		ret = buf ? -errno : -ENOMEM;
		free(buf);
		vu_transfer_claim(u, false);
		return ret;
	}
	ret = vu_state_fd(u, VHOST_USER_TRANSFER_LOAD, p[0], &own);
	close_fd(&p[0]);
	if (ret) {
		close_fd(&p[1]);
		free(buf);
		vu_transfer_claim(u, false);
		return ret;
	}
	if (own >= 0) {
		close_fd(&p[1]);
		p[1] = own;
		ret = vu_transfer_fd_ok(p[1]);
		if (ret)
			log_error("%s: the vhost-user back-end at %s gave an fd for its state that is "
				  "neither a pipe nor a socket — a back-end bug", vu_name(u),
				  vu_where(u));
	} else if (fcntl(p[1], F_SETFL, O_NONBLOCK) < 0) {
		ret = -errno;
	}
	while (!ret) {
		ssize_t n = src->chunk(src->opaque, buf, VHOST_USER_STATE_CHUNK);

		if (n == 0)
			break;
		if (n < 0 || n > (ssize_t)VHOST_USER_STATE_CHUNK) {
			ret = n < 0 ? (int)n : -EINVAL;
			src_err = true;
			break;
		}
		ret = vu_load_write(u, p[1], buf, (size_t)n);
		if (!ret)
			total += (uint64_t)n;
	}
	/* Closing is the end of the state for the back-end. */
	close_fd(&p[1]);
	free(buf);
	if (ret == -ETIMEDOUT) {
		log_error("%s: the vhost-user back-end at %s took %llu bytes of the state and then "
			  "no more for %d ms; the load is given up — check the back-end (it may be "
			  "stuck)", vu_name(u), vu_where(u), (unsigned long long)total,
			  u->state_timeout_ms);
		vu_transfer_claim(u, false);
		return ret;
	}
	if (ret && !src_err && ret != -EPROTO)
		log_error("%s: writing the state to the vhost-user back-end at %s failed after %llu "
			  "bytes: %s", vu_name(u), vu_where(u), (unsigned long long)total,
			  strerror(-ret));
	check = vu_check_state(u, VHOST_USER_TRANSFER_LOAD);
	vu_transfer_claim(u, false);
	return ret ? ret : check;
}

/*
 * SEND_RARP (with VHOST_USER_PROTOCOL_F_RARP): the back-end broadcasts a RARP from mac
 * on its port, as after a migration; the MAC in the first 6 bytes of the u64 payload.
 */
static int vu_send_rarp(struct vhost_dev *dev, const uint8_t mac[6])
{
	struct vhost_user *u = conn_of(dev);
	struct vhost_user_msg msg;
	int ret;

	if (!has_proto(u, VHOST_USER_PROTOCOL_F_RARP))
		return -EOPNOTSUPP;
	vhost_user_msg_init(&msg, VHOST_USER_SEND_RARP, 0, sizeof(uint64_t));
	msg.p.u64 = 0;
	memcpy(&msg.p.u64, mac, 6);
	pthread_mutex_lock(&u->lock);
	ret = vu_request_locked(u, &msg);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

const struct vhost_ops vhost_user_ops = {
	.name = "vhost-user",
	.set_owner = vu_set_owner,
	.get_features = vu_get_features,
	.set_features = vu_set_features,
	.set_mem_table = vu_set_mem_table,
	.set_vring_num = vu_set_vring_num,
	.set_vring_base = vu_set_vring_base,
	.get_vring_base = vu_get_vring_base,
	.set_vring_addr = vu_set_vring_addr,
	.set_vring_kick = vu_set_vring_kick,
	.set_vring_call = vu_set_vring_call,
	.set_vring_enable = vu_set_vring_enable,
	.get_config = vu_get_config,
	.set_config = vu_set_config,
	.reconnect = vhost_user_reconnect,
	.connected = vhost_user_connected,
	.lost_chains = vhost_user_lost_chains,
	.reset = vhost_user_reset_inflight,
	.set_log_base = vu_set_log_base,
	.log_check = vu_log_check,
	.update_features = vu_update_features,
	.sync = vu_sync,
	.flush = vu_flush,
	.migratable = vu_migratable,
	.has_state = vu_has_state,
	.save_state = vu_save_state,
	.load_state = vu_load_state,
	.send_rarp = vu_send_rarp,
	.cleanup = vu_cleanup,
};

/* ---- a vhost device over a vhost-user back-end, for the device models ---- */

struct vhost_user_dev {
	struct vhost_dev dev;
	struct vhost_device_ops ops;	/* per device: its backend_bits */
};

static void vhost_user_dev_destroy(struct vhost_dev *dev)
{
	free(container_of(dev, struct vhost_user_dev, dev));
}

int vhost_user_create(const struct guest_mem *mem, const char *name, struct event_loop *loop,
		      struct virtio_offload_user *ou, struct virtio_backend **out, char *why,
		      size_t whylen)
{
	struct vhost_user_opts o = { .path = ou->path, .fd = -1, .loop = loop,
				     .inflight_queues = (uint16_t)MIN(ou->max_queues, 0xffffu),
				     .inflight_queue_size = ou->queue_size,
				     .base_queues = MIN(ou->base_queues, ou->max_queues),
				     .state = ou->state, .state_hint = ou->state_hint };
	struct vhost_user_dev *vd;
	struct vhost_user *u;
	void *conn;
	int ret;

	*out = NULL;
	/*
	 * The one defensive check of the rule the command line enforces (vmm/cli.c):
	 * a back-end in another process maps guest RAM through its fd, which private
	 * (anonymous) RAM does not have. Checked here, where the RAM is handed to
	 * another process, rather than in each device model.
	 */
	if (mem->fd < 0) {
		log_error("%s: the vhost-user back-end at %s must map guest RAM, which is private "
			  "to this process — add shared=on to --memory (e.g. --memory 1G,shared=on)",
			  name, ou->path);
		snprintf(why, whylen, "guest RAM is not shared with other processes (--memory "
			 "without shared=on)");
		return -EINVAL;
	}
	if (!ou->max_queues || ou->max_queues > VHOST_MAX_RINGS) {
		snprintf(why, whylen, "%u queues asked for", ou->max_queues);
		return -EINVAL;
	}
	ret = vhost_user_open(&o, &conn);
	if (ret) {
		snprintf(why, whylen, "cannot connect to %s: %s", ou->path, strerror(-ret));
		return ret;
	}
	vd = calloc(1, sizeof(*vd));
	if (!vd) {
		vhost_user_close(conn);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	vd->ops = (struct vhost_device_ops){
		.name = "vhost-user",
		.backend_bits = ou->backend_bits,
		.destroy = vhost_user_dev_destroy,
	};
	u = conn;
	u->dev = &vd->dev;
	/* The rings exist only after the set-up says how many the back-end has. */
	ret = vhost_dev_init(&vd->dev, &vhost_user_ops, conn, &vd->ops, mem, name,
			     ou->max_queues);
	if (ret) {
		snprintf(why, whylen, "%s: the set-up failed: %s", ou->path,
			 ret == -EOPNOTSUPP ? "no VIRTIO_F_VERSION_1" : strerror(-ret));
		vhost_user_close(conn);
		free(vd);
		return ret;
	}
	ou->queues = MIN(ou->max_queues, u->queue_num);
	vd->dev.nrings = ou->queues;
	u->inflight_nq = (uint16_t)MIN(u->inflight_nq, ou->queues);
	*out = &vd->dev.be;
	return 0;
}
