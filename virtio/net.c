// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-net over tap, userspace data path (see virtio/net.h).
 *
 * The tap fd is one event source: EPOLLIN while the receive queue may take
 * frames, EPOLLOUT while a transmit waits for room. A frame read from the tap
 * stays in rx_buf until the guest has buffers for it, so nothing the tap
 * handed us is lost while the guest is slow; frames still in the tap wait
 * there (and the kernel drops what overflows its queue, as for any NIC).
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_ids.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "virtio/net.h"
#include "vmm/base/util.h"

/* One byte more than the largest frame, so an oversized one shows. */
#define NET_RX_BUF_SIZE		(NET_HDR_LEN + NET_FRAME_MAX + 1)

static const uint64_t net_features =
	(1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM) |
	(1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_GUEST_TSO4) |
	(1ULL << VIRTIO_NET_F_GUEST_TSO6) | (1ULL << VIRTIO_NET_F_HOST_TSO4) |
	(1ULL << VIRTIO_NET_F_HOST_TSO6) | (1ULL << VIRTIO_NET_F_MRG_RXBUF) |
	(1ULL << VIRTIO_NET_F_STATUS);

static struct virtio_net *to_net(struct virtio_mmio_dev *d)
{
	return container_of(d, struct virtio_net, dev);
}

uint32_t net_rx_fill_chain(struct net_rx_frame *f, const struct virtq_chain *c)
{
	size_t n = virtq_chain_write(c, 0, f->data + f->off, f->len - f->off);

	f->off += n;
	return (uint32_t)n;
}

void net_rx_set_num_buffers(const struct virtq_chain *c, uint16_t num_buffers)
{
	uint16_t v = htole16(num_buffers);

	virtq_chain_write(c, NET_HDR_NUM_BUFFERS, &v, sizeof(v));
}

const char *net_tx_check(const struct virtq_chain *c)
{
	if (c->nin)
		return "transmit chain has writable segments";
	if (c->out_len < NET_HDR_LEN)
		return "transmit chain shorter than the 12-byte header";
	if (c->out_len > NET_HDR_LEN + NET_FRAME_MAX)
		return "transmit chain longer than a 64 KiB frame";
	return NULL;
}

ssize_t net_tx_write(int fd, const struct virtq_chain *c)
{
	for (;;) {
		ssize_t n = writev(fd, c->iov, (int)c->nout);

		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

/* Watches the tap for what the device needs now; nothing while the driver is not running. */
static void net_update_events(struct virtio_net *n)
{
	uint32_t want = 0;
	int ret;

	if (!n->tap_watched)
		return;
	if (userspace_backend_running(&n->ub, NET_RXQ) && !n->rx_waiting)
		want |= EPOLLIN;
	if (userspace_backend_running(&n->ub, NET_TXQ) && n->tx_blocked)
		want |= EPOLLOUT;
	ret = event_loop_watch(n->dev.host->loop, &n->tap_src, want);
	if (ret)
		log_warn_ratelimited(&n->rl, "%s: cannot change the events watched on %s: %s",
				     n->dev.name, n->ifname, strerror(-ret));
}

/*
 * Waits for the driver to add buffers: asks for a kick, then returns true if
 * buffers arrived in the meantime (the caller pops again).
 */
static bool net_rx_recheck(struct virtq *vq)
{
	virtq_set_notify(vq, true);
	return virtq_has_work(vq);
}

/*
 * Places the frame in rx_buf into the receive queue. Returns 1 when the
 * frame is done with (delivered or dropped), 0 when the queue has too few
 * buffers (nothing was consumed; a kick will bring more), -EIO if the ring
 * is broken.
 */
static int net_rx_deliver(struct virtio_net *n)
{
	struct virtq *vq = userspace_backend_vq(&n->ub, NET_RXQ);
	bool mrg = userspace_backend_has_feature(&n->ub, VIRTIO_NET_F_MRG_RXBUF);
	struct net_rx_frame f = { .data = n->rx_buf, .len = n->rx_len };
	unsigned int count = 0;

	/* Without MRG_RXBUF num_buffers must still read 1 (VERSION_1 always has the field). */
	if (!mrg)
		memcpy(n->rx_buf + NET_HDR_NUM_BUFFERS, &(uint16_t){ htole16(1) }, sizeof(uint16_t));

	while (f.off < f.len) {
		struct virtq_chain *c = n->rx_chain[count ? 1 : 0];
		int ret;

		if (count == ARRAY_SIZE(n->rx_heads)) {
			/* Tiny buffers, or heads reused in flight: the buffers stay for smaller frames. */
			log_warn_ratelimited(&n->rl, "%s: frame of %zu bytes needs more than %u receive "
					     "buffers; dropped", n->dev.name, f.len, count);
			goto drop;
		}
		ret = virtq_pop(vq, c);
		if (ret < 0)
			return ret;
		if (ret == 0) {
			/* Enable kicks while every chain is still popped, so avail_event covers them. */
			if (net_rx_recheck(vq))
				continue;
			while (count--)
				virtq_unpop(vq);
			return 0;
		}
		if (!count && c->in_len < NET_HDR_LEN) {
			log_warn_ratelimited(&n->rl, "%s: receive buffer of %u bytes cannot hold "
					     "the header; returned unused", n->dev.name, c->in_len);
			if (virtq_push(vq, c->head, 0))
				return -EIO;
			continue;
		}
		if (!mrg && c->in_len < f.len) {
			virtq_unpop(vq);
			goto drop;
		}
		n->rx_heads[count] = c->head;
		n->rx_used[count] = net_rx_fill_chain(&f, c);
		count++;
	}
	if (mrg)
		net_rx_set_num_buffers(n->rx_chain[0], (uint16_t)count);
	/* All buffers of a frame become visible to the driver at once. */
	for (unsigned int i = 0; i < count; i++)
		if (virtq_add_used(vq, n->rx_heads[i], n->rx_used[i]))
			return -EIO;
	virtq_publish_used(vq);
	n->rx_frames++;
	n->rx_bytes += f.len - NET_HDR_LEN;
	return 1;

drop:
	while (count--)
		virtq_unpop(vq);
	n->rx_dropped++;
	return 1;
}

/* Reads one frame from the tap into rx_buf; 1, 0 when the tap is empty, or -errno. */
static int net_rx_read(struct virtio_net *n)
{
	for (;;) {
		ssize_t r = read(n->tap_fd, n->rx_buf, NET_RX_BUF_SIZE);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (r < (ssize_t)NET_HDR_LEN || r > (ssize_t)(NET_HDR_LEN + NET_FRAME_MAX)) {
			n->rx_dropped++;
			continue;
		}
		n->rx_len = (size_t)r;
		return 1;
	}
}

/* Moves frames from the tap to the guest until either runs dry or the burst ends. d->lock held. */
static void net_rx(struct virtio_net *n)
{
	struct virtq *vq = userspace_backend_vq(&n->ub, NET_RXQ);
	uint16_t used_before = vq->used_idx;

	for (unsigned int i = 0; i < NET_RX_BURST; i++) {
		int ret;

		if (!n->rx_len) {
			ret = net_rx_read(n);
			if (ret < 0)
				log_warn_ratelimited(&n->rl, "%s: cannot read from %s: %s", n->dev.name,
						     n->ifname, strerror(-ret));
			if (ret <= 0)
				break;
		}
		ret = net_rx_deliver(n);
		if (ret < 0) {
			userspace_backend_error(&n->ub, NET_RXQ, "malformed receive queue");
			break;
		}
		if (ret == 0) {
			n->rx_waiting = true;
			break;
		}
		n->rx_len = 0;
	}
	if (vq->used_idx != used_before)
		userspace_backend_signal(&n->ub, NET_RXQ);
	net_update_events(n);
}

/* Sends the transmit queue to the tap until it is empty or the tap is full. d->lock held. */
static void net_tx(struct virtio_net *n)
{
	struct virtq *vq = userspace_backend_vq(&n->ub, NET_TXQ);
	struct virtq_chain *c = n->tx_chain;
	bool pushed = false;

	n->tx_blocked = false;
	for (;;) {
		const char *bad;
		ssize_t w;
		int ret = virtq_pop(vq, c);

		if (ret < 0) {
			userspace_backend_error(&n->ub, NET_TXQ, "malformed transmit queue");
			break;
		}
		if (ret == 0) {
			virtq_set_notify(vq, true);
			if (virtq_has_work(vq))
				continue;
			break;
		}
		bad = net_tx_check(c);
		if (bad) {
			log_warn_ratelimited(&n->rl, "%s: %s (%u bytes); dropped", n->dev.name, bad,
					     c->out_len);
			n->tx_dropped++;
		} else {
			w = net_tx_write(n->tap_fd, c);
			if (w == -EAGAIN) {
				virtq_unpop(vq);
				n->tx_blocked = true;
				break;
			}
			if (w < 0) {
				/* EIO: the interface is down; EINVAL: the guest's header is bad. */
				log_warn_ratelimited(&n->rl, "%s: cannot send a frame to %s: %s%s; dropped",
						     n->dev.name, n->ifname, strerror((int)-w),
						     w == -EIO ? " (is the interface up?)" : "");
				n->tx_dropped++;
			} else {
				n->tx_frames++;
				n->tx_bytes += c->out_len - NET_HDR_LEN;
			}
		}
		if (virtq_push(vq, c->head, 0)) {
			userspace_backend_error(&n->ub, NET_TXQ, "malformed transmit queue");
			break;
		}
		pushed = true;
	}
	if (pushed)
		userspace_backend_signal(&n->ub, NET_TXQ);
	net_update_events(n);
}

/* The userspace back-end's queue handler: the driver added receive buffers or frames to send. */
static void net_queue_kick(struct userspace_backend *ub, unsigned int q)
{
	struct virtio_net *n = container_of(ub, struct virtio_net, ub);

	if (q == NET_RXQ) {
		n->rx_waiting = false;
		net_rx(n);
	} else if (q == NET_TXQ && !n->tx_blocked) {
		net_tx(n);
	}
}

/*
 * The tap reports an error when its interface was deleted under us. It would
 * report it forever, so stop watching it and tell the guest the link is down.
 */
static void net_tap_gone(struct virtio_net *n)
{
	log_warn("%s: tap %s went away; the guest's link is down", n->dev.name, n->ifname);
	event_loop_remove(n->dev.host->loop, &n->tap_src);
	n->tap_watched = false;
	n->tx_blocked = false;
	n->config.status = 0;
	virtio_mmio_signal_config(&n->dev);
}

static void net_tap_ready(struct event_source *src, uint32_t events)
{
	struct virtio_net *n = container_of(src, struct virtio_net, tap_src);

	pthread_mutex_lock(&n->dev.lock);
	if (events & (EPOLLERR | EPOLLHUP)) {
		net_tap_gone(n);
	} else {
		if ((events & EPOLLOUT) && n->tx_blocked &&
		    userspace_backend_running(&n->ub, NET_TXQ))
			net_tx(n);
		if ((events & EPOLLIN) && !n->rx_waiting &&
		    userspace_backend_running(&n->ub, NET_RXQ))
			net_rx(n);
	}
	net_update_events(n);
	pthread_mutex_unlock(&n->dev.lock);
}

unsigned int net_tap_offloads(const struct virtio_mmio_dev *d)
{
	unsigned int off = 0;

	/* Segmentation offloads are only meaningful with checksum offload (the tap agrees). */
	if (!virtio_has_feature(d, VIRTIO_NET_F_GUEST_CSUM))
		return 0;
	off |= TUN_F_CSUM;
	if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_TSO4))
		off |= TUN_F_TSO4;
	if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_TSO6))
		off |= TUN_F_TSO6;
	if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_ECN))
		off |= TUN_F_TSO_ECN;
	if (virtio_has_feature(d, VIRTIO_NET_F_GUEST_UFO))
		off |= TUN_F_UFO;
	return off;
}

/* Tells the tap which offloads the guest accepts, so it never sends it a frame it cannot take. */
static int net_set_offloads(struct virtio_net *n, unsigned int off)
{
	if (ioctl(n->tap_fd, TUNSETOFFLOAD, off) == 0)
		return 0;
	/* Older kernels refuse UFO-like flags: retry without them. */
	if (errno == EINVAL && (off & TUN_F_UFO) &&
	    ioctl(n->tap_fd, TUNSETOFFLOAD, off & ~TUN_F_UFO) == 0)
		return 0;
	return -errno;
}

/* Gives the tap the offloads the guest accepted (at DRIVER_OK, and after a load). */
static int net_tap_setup(struct virtio_mmio_dev *d)
{
	struct virtio_net *n = to_net(d);
	unsigned int off = net_tap_offloads(d);
	int ret = net_set_offloads(n, off);

	/* Without offloads the tap sends plain, checksummed frames: slower but correct. */
	if (ret && net_set_offloads(n, 0) == 0) {
		log_warn("%s: %s refuses offloads %#x (%s); the guest gets plain frames",
			 d->name, n->ifname, off, strerror(-ret));
		ret = 0;
	}
	return ret;
}

static int net_activate(struct virtio_mmio_dev *d)
{
	struct virtio_net *n = to_net(d);
	int ret;

	if (n->is_tap) {
		ret = net_tap_setup(d);
		if (ret)
			return ret;
	}
	n->rx_waiting = false;
	n->tx_blocked = false;
	net_update_events(n);
	return 0;
}

static void net_reset(struct virtio_mmio_dev *d)
{
	struct virtio_net *n = to_net(d);

	n->rx_len = 0;
	n->rx_waiting = false;
	n->tx_blocked = false;
	net_update_events(n);
}

/* The back-end started or stopped a queue: the tap is watched for what running queues need. */
static void net_queue_state(struct userspace_backend *ub, unsigned int q, bool running)
{
	net_update_events(container_of(ub, struct virtio_net, ub));
}

static const struct userspace_backend_ops net_backend_ops = {
	.queue_kick = net_queue_kick,
	.queue_state = net_queue_state,
};

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	virtio_mmio_destroy(&n->dev);
	if (n->ub.be.ops)
		n->ub.be.ops->destroy(&n->ub.be);
	if (n->offload)
		n->offload->ops->destroy(n->offload);
	if (n->tap_watched)
		event_loop_remove_sync(n->dev.host->loop, &n->tap_src);
	if (n->announce_watched)
		event_loop_remove_sync(n->dev.host->loop, &n->announce_src);
	if (n->announce_src.fd >= 0)
		close(n->announce_src.fd);
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	free(n->rx_chain[0]);
	free(n->rx_chain[1]);
	free(n->tx_chain);
	free(n->rx_buf);
	free(n);
}

static void net_destroy(struct virtio_mmio_dev *d)
{
	virtio_net_destroy(to_net(d));
}

/*
 * Migration: the frame read from the tap and not yet delivered (the guest had no
 * buffer for it) travels with the device, so it is not lost; frames still in the
 * source's tap are the host network's, as on a wire. The config space is the
 * guest's view: the MAC it knows moves with it (also a random one); the link
 * status is this host's, announced with a config interrupt after the resume if
 * it differs from what the guest saw. A destination whose frames move outside
 * the VMM (vhost-net, vhost-user) cannot hand a frame to the ring itself: it
 * drops it (logged), like a lost packet.
 */
#define NET_STATE_VERSION	1

static int net_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	struct virtio_net *n = to_net(d);

	sbuf_put_u32(out, NET_STATE_VERSION);
	sbuf_put_u32(out, (uint32_t)n->rx_len);
	sbuf_put_bytes(out, n->rx_buf, n->rx_len);
	return 0;
}

static int net_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	struct virtio_net *n = to_net(d);
	const struct virtio_net_config *local = d->config_before_load;
	const void *frame;
	uint16_t status;
	uint32_t len;
	int ret = virtio_mmio_load_version(d, in, NET_STATE_VERSION);

	if (ret)
		return ret;
	len = sbuf_get_u32(in);
	if (len && (len < NET_HDR_LEN || len > NET_HDR_LEN + NET_FRAME_MAX)) {
		log_error("%s: the incoming held frame has %u bytes (at most %zu)", d->name, len,
			  NET_HDR_LEN + NET_FRAME_MAX);
		return -EINVAL;
	}
	frame = sbuf_get_ptr(in, len);
	ret = sbuf_finish(in);
	if (ret)
		return ret;
	if (local && local->max_virtqueue_pairs != n->config.max_virtqueue_pairs) {
		log_error("%s: the source's device has another number of queue pairs", d->name);
		return -EINVAL;
	}
	if (len && n->offload) {
		log_info("%s: a frame the source held for the guest is dropped: this host's data "
			 "path is %s", d->name, n->offload->ops->name);
		len = 0;
	}
	memcpy(n->rx_buf, frame ? frame : n->rx_buf, len);
	n->rx_len = len;
	n->rx_waiting = false;
	n->tx_blocked = false;
	/* The link is this host's. */
	status = local ? local->status : n->config.status;
	n->link_changed = status != n->config.status;
	n->config.status = status;
	return 0;
}

void net_announce_frame(const uint8_t mac[6], uint8_t out[NET_ANNOUNCE_LEN])
{
	static const uint8_t rarp[] = {
		0x80, 0x35,		/* ethertype: RARP */
		0x00, 0x01,		/* hardware: Ethernet */
		0x08, 0x00,		/* protocol: IPv4 */
		6, 4,			/* address lengths */
		0x00, 0x03,		/* reverse request */
	};
	uint8_t *f = out + NET_HDR_LEN;

	memset(out, 0, NET_ANNOUNCE_LEN);
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	memcpy(f + 12, rarp, sizeof(rarp));
	memcpy(f + 22, mac, 6);		/* sender: mac, IP 0.0.0.0 */
	memcpy(f + 32, mac, 6);		/* target: mac, IP 0.0.0.0 */
}

/* One RARP on the tap, and the timer for the next while rounds are left. d->lock held. */
static void net_announce(struct virtio_net *n)
{
	struct itimerspec next = { 0 };
	uint8_t frame[NET_ANNOUNCE_LEN];

	if (!n->announce_left)
		return;
	net_announce_frame(n->config.mac, frame);
	if (write(n->tap_fd, frame, sizeof(frame)) == (ssize_t)sizeof(frame))
		n->announced++;
	else
		log_warn_ratelimited(&n->rl, "%s: cannot announce the migrated guest on %s: %s",
				     n->dev.name, n->ifname, strerror(errno));
	if (--n->announce_left) {
		next.it_value = timespec_from_ms(n->announce_gap_ms);
		n->announce_gap_ms += NET_ANNOUNCE_STEP_MS;
	}
	if (timerfd_settime(n->announce_src.fd, 0, &next, NULL) < 0)
		n->announce_left = 0;
}

static void net_announce_timer(struct event_source *src, uint32_t events)
{
	struct virtio_net *n = container_of(src, struct virtio_net, announce_src);
	uint64_t expirations;

	(void)events;
	if (read(src->fd, &expirations, sizeof(expirations)) != sizeof(expirations))
		return;
	pthread_mutex_lock(&n->dev.lock);
	net_announce(n);
	pthread_mutex_unlock(&n->dev.lock);
}

/*
 * After a load: the guest learns of a link status that differs from the source's,
 * and the network learns where the guest's MAC is now — the tap gets RARPs from it
 * (NET_ANNOUNCE_ROUNDS, 50, 150, 250 ... ms apart), as QEMU sends after a migration,
 * so that switches forward the guest's traffic to this host before it sends anything.
 */
static void net_loaded(struct virtio_mmio_dev *d)
{
	struct virtio_net *n = to_net(d);
	int ret;

	/* This tap never saw the driver's DRIVER_OK: it learns the guest's offloads now. */
	if (n->is_tap && (d->status & VIRTIO_CONFIG_S_DRIVER_OK) && (ret = net_tap_setup(d)))
		log_warn("%s: %s takes no offloads at all (%s); frames to the guest may be "
			 "refused by its driver", d->name, n->ifname, strerror(-ret));
	if (n->link_changed)
		virtio_mmio_signal_config(d);
	n->link_changed = false;
	if (n->announce_watched) {
		n->announce_left = NET_ANNOUNCE_ROUNDS;
		n->announce_gap_ms = NET_ANNOUNCE_FIRST_GAP_MS;
		net_announce(n);
	} else if (n->offload && n->offload->ops->announce) {
		/* No tap here (vhost-user): the back-end owns the port and announces on it. */
		int r = n->offload->ops->announce(n->offload, n->config.mac);

		if (r == -EOPNOTSUPP)
			log_info("%s: its vhost-user back-end cannot announce the migrated guest "
				 "(no VHOST_USER_PROTOCOL_F_RARP); the network learns its MAC from "
				 "its next frame", d->name);
		else if (r)
			log_warn("%s: the back-end refused to announce the migrated guest: %s",
				 d->name, strerror(-r));
	}
}

static const struct virtio_dev_ops net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.nqueues = 2,
	.queue_max_size = NET_QUEUE_SIZE,
	.activate = net_activate,
	.reset = net_reset,
	.destroy = net_destroy,
	.save = net_save,
	.load = net_load,
	.loaded = net_loaded,
};

/* A locally administered unicast address in QEMU's 52:54:00 range. */
static void net_random_mac(uint8_t mac[6])
{
	uint8_t r[3];

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != sizeof(r)) {
		uint32_t x = (uint32_t)getpid() * 2654435761u;

		memcpy(r, &x, sizeof(r));
	}
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	memcpy(mac + 3, r, sizeof(r));
}

int virtio_net_create_fd(struct virtio_host *host, const struct net_options *o, const char *name,
			 uint64_t base, uint32_t gsi, int fd, bool is_tap,
			 struct virtio_backend *offload, struct virtio_net **out)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	uint64_t features = net_features;
	int ret = -ENOMEM;

	*out = NULL;
	if (!n) {
		close(fd);
		if (offload)
			offload->ops->destroy(offload);
		return -ENOMEM;
	}
	n->tap_fd = fd;
	n->is_tap = is_tap;
	n->offload = offload;
	snprintf(n->ifname, sizeof(n->ifname), "%s", o->tap ? o->tap : "tap");
	if (fd < 0 && !offload) {
		free(n);
		return -EINVAL;	/* without a tap only a back-end of its own can move frames */
	}
	n->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	n->announce_src.fd = -1;
	n->dev.host = host;	/* virtio_net_destroy() needs the loop before virtio_mmio_init() */
	n->rx_buf = malloc(NET_RX_BUF_SIZE);
	n->rx_chain[0] = malloc(sizeof(struct virtq_chain));
	n->rx_chain[1] = malloc(sizeof(struct virtq_chain));
	n->tx_chain = malloc(sizeof(struct virtq_chain));
	if (!n->rx_buf || !n->rx_chain[0] || !n->rx_chain[1] || !n->tx_chain)
		goto fail;

	if (o->mac_set)
		memcpy(n->config.mac, o->mac, sizeof(n->config.mac));
	else
		net_random_mac(n->config.mac);
	n->config.status = htole16(VIRTIO_NET_S_LINK_UP);
	n->config.max_virtqueue_pairs = htole16(1);

	/* The guest may take only the offloads the tap can hand it (either data path). */
	if (is_tap)
		features &= ~net_tap_refused_features(fd);
	/* Either data path: the announcement after a migration goes out on the tap. */
	if (fd >= 0) {
		n->announce_src.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		n->announce_src.fn = net_announce_timer;
		if (n->announce_src.fd < 0) {
			ret = -errno;
			goto fail;
		}
		ret = event_loop_add(host->loop, &n->announce_src, EPOLLIN);
		if (ret)
			goto fail;
		n->announce_watched = true;
	}

	if (offload) {
		/* The back-end reads and writes the tap itself; the VMM never watches it. */
		ret = virtio_mmio_init(&n->dev, &net_ops, host, name, base, gsi, features,
				       &n->config, sizeof(n->config), offload);
		if (ret)
			goto fail;
		*out = n;
		return 0;
	}
	n->tap_src.fd = fd;
	n->tap_src.fn = net_tap_ready;
	ret = event_loop_add(host->loop, &n->tap_src, 0);
	if (ret)
		goto fail;
	n->tap_watched = true;

	userspace_backend_init(&n->ub, &net_backend_ops, host->mem, host->loop, &n->dev.lock, 2,
			       features);
	ret = virtio_mmio_init(&n->dev, &net_ops, host, name, base, gsi, features, &n->config,
			       sizeof(n->config), &n->ub.be);
	if (ret)
		goto fail;
	*out = n;
	return 0;

fail:
	virtio_net_destroy(n);
	return ret;
}

int net_tap_open(const char *ifname)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int hdr_len = NET_HDR_LEN;
	int fd, err;

	if (strlen(ifname) >= sizeof(ifr.ifr_name))
		return -ENAMETOOLONG;
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, 0) < 0)
		goto fail;
	return fd;

fail:
	err = -errno;
	close(fd);
	return err;
}

uint64_t net_tap_refused_features(int tap_fd)
{
	static const struct {
		unsigned int offloads;
		uint64_t features;
	} probes[] = {
		{ TUN_F_CSUM, 1ULL << VIRTIO_NET_F_GUEST_CSUM | 1ULL << VIRTIO_NET_F_GUEST_TSO4 |
			      1ULL << VIRTIO_NET_F_GUEST_TSO6 },
		{ TUN_F_CSUM | TUN_F_TSO4, 1ULL << VIRTIO_NET_F_GUEST_TSO4 },
		{ TUN_F_CSUM | TUN_F_TSO6, 1ULL << VIRTIO_NET_F_GUEST_TSO6 },
	};
	uint64_t refused = 0;

	for (size_t i = 0; i < ARRAY_SIZE(probes); i++)
		if (ioctl(tap_fd, TUNSETOFFLOAD, probes[i].offloads) < 0)
			refused |= probes[i].features;
	/* Until the driver says what it takes, the tap sends plain frames. */
	if (ioctl(tap_fd, TUNSETOFFLOAD, 0) < 0)
		refused |= probes[0].features;
	return refused;
}

/* Why the vhost-net offload cannot be used, for the user (the offload filled `why`). */
static int net_create_offload(struct virtio_host *host, const struct net_options *o,
			      const char *name, int fd, struct virtio_backend **be)
{
	char why[160] = "";
	int ret;

	*be = NULL;
	if (o->vhost == NET_VHOST_OFF)
		return 0;
	if (!host->offload || !host->offload->net) {
		ret = -EOPNOTSUPP;
		snprintf(why, sizeof(why), "this VMM has no vhost support");
	} else {
		ret = host->offload->net(host->offload, host->mem, name, fd, be, why, sizeof(why));
	}
	if (!ret)
		return 0;
	if (o->vhost == NET_VHOST_ON) {
		log_error("%s: vhost=on, but kernel vhost-net is not usable: %s — load it (modprobe "
			  "vhost_net), give access to /dev/vhost-net, or use vhost=off", name, why);
		return ret;
	}
	log_warn("%s: kernel vhost-net is not usable (%s); the data path runs in vmm", name, why);
	return 0;
}

/* What to suggest when the tap cannot be opened. */
static const char *net_tap_hint(int err)
{
	switch (err) {
	case -ENOENT:
	case -ENODEV:
		return "load the tun module (modprobe tun)";
	case -EPERM:
	case -EACCES:
		return "run as root, or create the tap for this user first "
		       "(ip tuntap add NAME mode tap user USER)";
	case -EBUSY:
		return "another program uses this tap; pick another name";
	case -EINVAL:
		return "an existing interface of that name is not a single-queue tap; pick another name";
	case -ENAMETOOLONG:
		return "use a name of at most 15 characters";
	default:
		return "check the tap name and /dev/net/tun";
	}
}

/* The vhost-user back-end died (event loop thread, lock not held): the device needs a reset. */
static void net_backend_gone(void *opaque, const char *why)
{
	struct virtio_net *n = opaque;

	virtio_mmio_backend_gone(&n->dev, why, "the interface is down until the back-end and "
				 "the VM are restarted");
}

static const struct virtio_backend_events net_backend_events = {
	.disconnected = net_backend_gone,
};

/*
 * virtio-net on a vhost-user back-end: no tap, the back-end moves every frame;
 * the device model keeps the config (mac, status) and its config feature bits.
 */
static int net_create_vhost_user(struct virtio_host *host, const struct net_options *o,
				 const char *name, uint64_t base, uint32_t gsi,
				 struct virtio_net **out)
{
	struct virtio_offload_user ou = {
		.path = o->vhost_user,
		.max_queues = 2,
		.base_queues = 2,	/* one receive/transmit pair, with or without MQ */
		.queue_size = 0,	/* no in-flight area: a lost frame is only a lost frame */
		.backend_bits = NET_VHOST_USER_BACKEND_BITS,
	};
	struct virtio_backend *be = NULL;
	char why[200] = "this VMM has no vhost-user support";
	int ret;

	ret = -EOPNOTSUPP;
	if (host->offload && host->offload->user)
		ret = host->offload->user(host->offload, host->mem, name, host->loop, &ou, &be, why,
					  sizeof(why));
	if (ret) {
		log_error("%s: cannot use the vhost-user back-end at %s: %s — start it first and "
			  "check the socket path", name, o->vhost_user, why);
		return ret;
	}
	if (ou.queues < 2) {
		log_error("%s: the vhost-user back-end at %s serves %u queue; virtio-net needs a "
			  "receive and a transmit queue", name, o->vhost_user, ou.queues);
		be->ops->destroy(be);
		return -EOPNOTSUPP;
	}
	ret = virtio_net_create_fd(host, o, name, base, gsi, -1, false, be, out);
	if (ret) {
		log_error("%s: cannot set up the device: %s — check memory and file limits", name,
			  strerror(-ret));
		return ret;
	}
	if (be->ops->set_events)
		be->ops->set_events(be, &net_backend_events, *out);
	log_info("%s: data path in the vhost-user back-end at %s", name, o->vhost_user);
	return 0;
}

int virtio_net_create(struct virtio_host *host, const struct net_options *o, const char *name,
		      uint64_t base, uint32_t gsi, struct virtio_net **out)
{
	struct virtio_backend *be;
	int fd, ret;

	*out = NULL;
	if (o->vhost_user) {
		if (o->tap) {
			log_error("%s: both tap= and vhost-user= given — choose one", name);
			return -EINVAL;
		}
		return net_create_vhost_user(host, o, name, base, gsi, out);
	}
	if (o->vhost == NET_VHOST_ON && (!host->offload || !host->offload->net)) {
		log_error("%s: vhost=on, but this VMM has no vhost support here — use vhost=off", name);
		return -EOPNOTSUPP;
	}
	if (!o->tap || !o->tap[0]) {
		log_error("%s: no tap interface given — use --net tap=NAME", name);
		return -EINVAL;
	}
	fd = net_tap_open(o->tap);
	if (fd < 0) {
		log_error("%s: cannot open tap %s: %s — %s", name, o->tap, strerror(-fd),
			  net_tap_hint(fd));
		return fd;
	}
	ret = net_create_offload(host, o, name, fd, &be);
	if (ret) {
		close(fd);
		return ret;
	}
	if (be)
		log_info("%s: data path in kernel vhost-net on tap %s", name, o->tap);
	ret = virtio_net_create_fd(host, o, name, base, gsi, fd, true, be, out);
	if (ret) {
		log_error("%s: cannot set up the device on tap %s: %s — check memory and file limits",
			  name, o->tap, strerror(-ret));
		return ret;
	}
	return 0;
}
