/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-net over a tap interface (VIRTIO 1.x §5.1), userspace data path.
 * Private to virtio/net.c and its unit tests; the VM uses virtio/devices.h.
 * The device model (config space, features, the tap's offloads) and its
 * userspace back-end (the queues, virtio/userspace.h) share struct
 * virtio_net; the tap is watched only while the queue that needs it runs.
 *
 * Queue 0 receives (tap → guest), queue 1 transmits (guest → tap). Every
 * frame starts with the 12-byte struct virtio_net_hdr_mrg_rxbuf, which is
 * what the tap reads and writes too (IFF_VNET_HDR, TUNSETVNETHDRSZ 12), so
 * headers pass through unchanged; the device only sets num_buffers.
 */
#ifndef VIRTIO_NET_H
#define VIRTIO_NET_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/mmio.h"
#include "virtio/options.h"
#include "virtio/userspace.h"
#include "vmm/base/log.h"

#define NET_RXQ			0
#define NET_TXQ			1
#define NET_QUEUE_SIZE		256
#define NET_HDR_LEN		sizeof(struct virtio_net_hdr_mrg_rxbuf)	/* 12 */
#define NET_HDR_NUM_BUFFERS	offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers)
/* Largest frame after the header: a 64 KiB GSO packet plus an Ethernet and a VLAN header. */
#define NET_FRAME_MAX		(65536 + 14 + 4)
#define NET_RX_BURST		64	/* frames per tap wake-up, then other sources get a turn */

/*
 * The device feature bits a vhost-user-net back-end is in charge of (it builds
 * and parses the frames' headers): checksum and segmentation offloads and
 * mergeable receive buffers. MAC and STATUS stay the device model's (its config
 * space). The device offers these only where the back-end offered them.
 */
#define NET_VHOST_USER_BACKEND_BITS \
	((1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM) | \
	 (1ULL << VIRTIO_NET_F_GUEST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_TSO6) | \
	 (1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO6) | \
	 (1ULL << VIRTIO_NET_F_MRG_RXBUF))

struct virtio_net {
	struct virtio_mmio_dev dev;	/* transport: registers, config, features */
	struct userspace_backend ub;	/* the queues' data path, unless offloaded */
	struct virtio_backend *offload;	/* kernel vhost-net's data path instead, or NULL; owned */
	struct virtio_net_config config;
	int tap_fd;			/* owned */
	bool is_tap;			/* false in tests: a socket stands in for the tap */
	char ifname[16];		/* IFNAMSIZ */
	struct event_source tap_src;
	bool tap_watched;		/* tap_src is in the event loop */
	bool rx_waiting;		/* queue 0 ran out of buffers: tap not read until a kick */
	bool tx_blocked;		/* the tap returned EAGAIN: waiting for EPOLLOUT */
	bool link_changed;		/* a load found another link status here: announce it */
	/* After a migration: RARPs from the guest's MAC on the tap, so switches learn its port. */
	struct event_source announce_src;	/* a timerfd; fd -1 without a tap */
	bool announce_watched;
	unsigned int announce_left, announce_gap_ms;
	uint64_t announced;		/* RARP frames written */

	/* A frame read from the tap and not yet delivered (NET_HDR_LEN + NET_FRAME_MAX + 1 bytes). */
	uint8_t *rx_buf;
	size_t rx_len;
	/* rx_chain[0]: the frame's first chain (holds num_buffers); rx_chain[1]: the others. */
	struct virtq_chain *rx_chain[2];
	uint16_t rx_heads[NET_QUEUE_SIZE];
	uint32_t rx_used[NET_QUEUE_SIZE];
	struct virtq_chain *tx_chain;

	struct log_ratelimit rl;	/* guest errors and tap failures */
	uint64_t rx_frames, rx_bytes, rx_dropped;	/* dropped: too big, or no chain fits */
	uint64_t tx_frames, tx_bytes, tx_dropped;	/* dropped: malformed chain or tap error */
};

/* A frame being placed into receive chains: NET_HDR_LEN header bytes then the packet. */
struct net_rx_frame {
	const uint8_t *data;
	size_t len;
	size_t off;			/* bytes already placed */
};

/* Copies the next part of f into c's writable segments; returns the bytes written (its used length). */
uint32_t net_rx_fill_chain(struct net_rx_frame *f, const struct virtq_chain *c);

/* Writes num_buffers (little-endian) into the header at the start of c's writable segments. */
void net_rx_set_num_buffers(const struct virtq_chain *c, uint16_t num_buffers);

/*
 * Checks a transmit chain: readable only, a full header, at most
 * NET_HDR_LEN + NET_FRAME_MAX bytes. Returns NULL if it may go to the tap,
 * else what is wrong with it.
 */
const char *net_tx_check(const struct virtq_chain *c);

/* Bytes of net_announce_frame(): a zeroed virtio-net header, then a 60-byte Ethernet frame. */
#define NET_ANNOUNCE_LEN	(NET_HDR_LEN + 60)

/*
 * The frame a migrated guest's NIC is announced with, as QEMU does: a broadcast
 * RARP request (ethertype 0x8035, op 3) from mac, for mac, padded to the Ethernet
 * minimum, behind the tap's virtio-net header (NET_ANNOUNCE_LEN bytes into out).
 */
void net_announce_frame(const uint8_t mac[6], uint8_t out[NET_ANNOUNCE_LEN]);

/* How many RARPs a migrated guest's NIC gets, the gap before the second, the step. */
#define NET_ANNOUNCE_ROUNDS	5
#define NET_ANNOUNCE_FIRST_GAP_MS	50
#define NET_ANNOUNCE_STEP_MS	100

/* Writes the chain's readable segments (header + frame) to fd as one packet; bytes or -errno. */
ssize_t net_tx_write(int fd, const struct virtq_chain *c);

/*
 * Creates the device over an open, non-blocking fd that speaks the tap's
 * framing (a tap, or in tests one end of a SOCK_DGRAM socketpair); is_tap
 * enables TUNSETOFFLOAD. offload: a back-end that runs the queues instead of
 * the VMM (kernel vhost-net over the same fd, or a vhost-user back-end with
 * fd -1), or NULL for the userspace data path (fd required). Takes ownership of fd and offload, even on failure. 0 with *out set,
 * or -errno (not logged: the caller knows what the fd is).
 */
int virtio_net_create_fd(struct virtio_host *host, const struct net_options *o, const char *name,
			 uint64_t base, uint32_t gsi, int fd, bool is_tap,
			 struct virtio_backend *offload, struct virtio_net **out);

/*
 * Creates the device over tap o->tap (see virtio/devices.h): 0 with *out set,
 * or -errno after log_error(). Its data path: host->offload's vhost-net when
 * o->vhost is auto or on and it is usable (auto falls back to the userspace
 * one with a warning; on fails), the userspace one for off. With
 * o->vhost_user instead of a tap: host->offload's vhost-user back-end at that
 * socket (guest RAM must be shared), or an error.
 */
int virtio_net_create(struct virtio_host *host, const struct net_options *o, const char *name,
		      uint64_t base, uint32_t gsi, struct virtio_net **out);

/* Tears down the transport and the back-end, closes the tap and frees n; NULL is ignored. */
void virtio_net_destroy(struct virtio_net *n);

/* Opens (or creates) tap interface `ifname` for the device: non-blocking fd or -errno. */
int net_tap_open(const char *ifname);

/* The guest offload features (GUEST_CSUM, GUEST_TSO4/6) the tap cannot give; leaves it at none. */
uint64_t net_tap_refused_features(int tap_fd);

/* TUN_F_* offloads for the guest features negotiated on d. */
unsigned int net_tap_offloads(const struct virtio_mmio_dev *d);

#endif
