// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for virtio-net (virtio/net.c): the frame helpers over host
 * buffers, then the whole device driven through its registers by the fake
 * driver (fake_driver.c), with one end of a SOCK_DGRAM socketpair standing in
 * for the tap (the other end plays the host network), and last a real tap.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if.h>
#include <linux/if_packet.h>
#include <linux/ethtool.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake_driver.h"
#include "virtio/net.h"
#include "vmm/base/util.h"

/* ---- helpers over host buffers ---- */

static struct virtq_chain hc;

static void pattern(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

Test(net_helpers, rx_fill_splits_a_frame_over_chains)
{
	uint8_t frame[100], a[40], b[30], c[50];
	struct net_rx_frame f = { .data = frame, .len = sizeof(frame) };

	pattern(frame, sizeof(frame), 1);
	host_chain(&hc, NULL, 0, (struct iovec[]){ { a, sizeof(a) } }, 1);
	cr_assert_eq(net_rx_fill_chain(&f, &hc), 40);
	cr_assert_eq(f.off, 40);
	host_chain(&hc, NULL, 0, (struct iovec[]){ { b, sizeof(b) }, { c, sizeof(c) } }, 2);
	cr_assert_eq(net_rx_fill_chain(&f, &hc), 60, "the last chain takes only what is left");
	cr_assert_eq(f.off, 100);
	cr_assert_arr_eq(a, frame, 40);
	cr_assert_arr_eq(b, frame + 40, 30);
	cr_assert_arr_eq(c, frame + 70, 30);
	cr_assert_eq(net_rx_fill_chain(&f, &hc), 0, "nothing left to place");
}

Test(net_helpers, rx_fill_ignores_readable_segments)
{
	uint8_t frame[16], ro[8] = { 0 }, w[32] = { 0 };
	struct net_rx_frame f = { .data = frame, .len = sizeof(frame) };

	pattern(frame, sizeof(frame), 9);
	host_chain(&hc, (struct iovec[]){ { ro, sizeof(ro) } }, 1, (struct iovec[]){ { w, sizeof(w) } }, 1);
	cr_assert_eq(net_rx_fill_chain(&f, &hc), 16);
	cr_assert_arr_eq(w, frame, 16);
	for (size_t i = 0; i < sizeof(ro); i++)
		cr_assert_eq(ro[i], 0);
}

Test(net_helpers, num_buffers_lands_in_the_header_across_segments)
{
	uint8_t a[11], b[5];

	memset(a, 0xee, sizeof(a));
	memset(b, 0xee, sizeof(b));
	host_chain(&hc, NULL, 0, (struct iovec[]){ { a, sizeof(a) }, { b, sizeof(b) } }, 2);
	net_rx_set_num_buffers(&hc, 0x0302);
	cr_assert_eq(NET_HDR_LEN, 12);
	cr_assert_eq(NET_HDR_NUM_BUFFERS, 10);
	cr_assert_eq(a[9], 0xee);
	cr_assert_eq(a[10], 0x02, "low byte first (little-endian)");
	cr_assert_eq(b[0], 0x03);
	cr_assert_eq(b[1], 0xee);
}

Test(net_helpers, tx_check)
{
	static uint8_t big[NET_HDR_LEN + NET_FRAME_MAX + 1];
	uint8_t hdr[NET_HDR_LEN], data[64], w[4];

	host_chain(&hc, (struct iovec[]){ { hdr, sizeof(hdr) }, { data, sizeof(data) } }, 2, NULL, 0);
	cr_assert_null(net_tx_check(&hc));
	host_chain(&hc, (struct iovec[]){ { hdr, sizeof(hdr) } }, 1, NULL, 0);
	cr_assert_null(net_tx_check(&hc), "a bare header is a (useless) valid packet for the tap to judge");
	host_chain(&hc, (struct iovec[]){ { hdr, 11 } }, 1, NULL, 0);
	cr_assert_not_null(net_tx_check(&hc));
	host_chain(&hc, NULL, 0, NULL, 0);
	cr_assert_not_null(net_tx_check(&hc));
	host_chain(&hc, (struct iovec[]){ { hdr, sizeof(hdr) } }, 1, (struct iovec[]){ { w, sizeof(w) } }, 1);
	cr_assert_not_null(net_tx_check(&hc), "writable segments in a transmit chain");
	host_chain(&hc, (struct iovec[]){ { big, sizeof(big) } }, 1, NULL, 0);
	cr_assert_not_null(net_tx_check(&hc), "longer than any frame");
	host_chain(&hc, (struct iovec[]){ { big, sizeof(big) - 1 } }, 1, NULL, 0);
	cr_assert_null(net_tx_check(&hc));
}

Test(net_helpers, tx_write_sends_one_datagram)
{
	uint8_t hdr[NET_HDR_LEN], a[20], b[30], got[128];
	int sv[2];

	pattern(hdr, sizeof(hdr), 3);
	pattern(a, sizeof(a), 4);
	pattern(b, sizeof(b), 5);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv), 0);
	host_chain(&hc, (struct iovec[]){ { hdr, sizeof(hdr) }, { a, sizeof(a) }, { b, sizeof(b) } }, 3,
		   NULL, 0);
	cr_assert_eq(net_tx_write(sv[0], &hc), 62);
	cr_assert_eq(recv(sv[1], got, sizeof(got), 0), 62);
	cr_assert_arr_eq(got, hdr, 12);
	cr_assert_arr_eq(got + 12, a, 20);
	cr_assert_arr_eq(got + 32, b, 30);
	close(sv[0]);
	close(sv[1]);
}

Test(net_helpers, tap_offloads_follow_guest_features)
{
	struct virtio_mmio_dev d = { 0 };

	cr_assert_eq(net_tap_offloads(&d), 0);
	d.driver_features = 1ULL << VIRTIO_NET_F_GUEST_TSO4;
	cr_assert_eq(net_tap_offloads(&d), 0, "TSO without checksum offload is not asked for");
	d.driver_features |= 1ULL << VIRTIO_NET_F_GUEST_CSUM;
	cr_assert_eq(net_tap_offloads(&d), TUN_F_CSUM | TUN_F_TSO4);
	d.driver_features |= 1ULL << VIRTIO_NET_F_GUEST_TSO6;
	cr_assert_eq(net_tap_offloads(&d), TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
	d.driver_features |= 1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_CSUM;
	cr_assert_eq(net_tap_offloads(&d), TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
		     "host-side features do not change what the tap sends us");
}

/* ---- the whole device with a fake driver ---- */

#define BASE		0xd0000000ULL
#define GSI		5
#define QSIZE		64

static struct virtio_net *n;
static int peer = -1;			/* the host network's end of the socketpair */
static const uint8_t test_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

/* One writable buffer of len bytes on the receive queue; returns its gpa. */
static uint64_t drv_add_rx(uint32_t len, uint16_t *head)
{
	uint64_t gpa = alloc_buf(len);
	uint16_t h = drv_add(NET_RXQ, &(struct drv_seg){ gpa, len, true }, 1);

	if (head)
		*head = h;
	return gpa;
}

static bool needs_reset(void)
{
	return drv_rd(&n->dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET;
}

static void setup(void)
{
	struct net_options o = { .tap = "test0", .mac_set = true };
	int sv[2];

	fake_driver_init(QSIZE);
	memcpy(o.mac, test_mac, sizeof(o.mac));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	peer = sv[1];
	cr_assert_eq(virtio_net_create_fd(&fake_host, &o, "virtio-net0", BASE, GSI, sv[0], false,
					  NULL, &n), 0);
}

static void teardown(void)
{
	virtio_net_destroy(n);
	n = NULL;
	if (peer >= 0)
		close(peer);
	fake_driver_fini();
}

/* Sends a frame of len bytes after the header from the host network; returns it in frame. */
static void host_send(uint8_t *frame, size_t len, uint8_t seed)
{
	memset(frame, 0, NET_HDR_LEN);
	frame[0] = VIRTIO_NET_HDR_F_DATA_VALID;
	pattern(frame + NET_HDR_LEN, len, seed);
	cr_assert_eq(send(peer, frame, NET_HDR_LEN + len, 0), (ssize_t)(NET_HDR_LEN + len));
}

/* The event loop telling the device its tap fd is ready. */
static void tap_event(uint32_t events)
{
	n->tap_src.fn(&n->tap_src, events);
}

static uint16_t hdr_num_buffers(uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, gpa_ptr(gpa + NET_HDR_NUM_BUFFERS), sizeof(v));
	return le16toh(v);
}

TestSuite(virtio_net, .init = setup, .fini = teardown);

Test(virtio_net, identity_features_and_config)
{
	uint64_t f;
	uint8_t cfg[12];

	cr_assert_eq(drv_rd(&n->dev, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
	f = drv_device_features(&n->dev);
	for (unsigned int bit = 0; bit < 64; bit++) {
		static const unsigned int want[] = {
			VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF,
			VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4,
			VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
			VIRTIO_F_VERSION_1,
		};
		bool wanted = false;

		for (unsigned int i = 0; i < ARRAY_SIZE(want); i++)
			wanted |= want[i] == bit;
		if (wanted)
			cr_assert(f & (1ULL << bit), "feature %u not offered", bit);
	}
	cr_assert_not(f & (1ULL << VIRTIO_NET_F_CTRL_VQ), "no control queue");
	cr_assert_not(f & (1ULL << VIRTIO_NET_F_MQ));
	for (unsigned int i = 0; i < sizeof(cfg); i++)
		virtio_mmio_io(&n->dev, VIRTIO_MMIO_CONFIG + i, &cfg[i], 1, false);
	cr_assert_arr_eq(cfg, test_mac, 6);
	cr_assert_eq(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
	cr_assert_eq(cfg[8] | cfg[9] << 8, 1, "max_virtqueue_pairs");
}

Test(virtio_net, tap_not_read_before_driver_ok)
{
	cr_assert_eq(n->tap_src.events, 0);
	drv_start(&n->dev, 0);
	cr_assert_eq(n->tap_src.events, EPOLLIN);
}

Test(virtio_net, rx_one_frame_per_chain_without_mrg)
{
	uint8_t frame[NET_HDR_LEN + 60];
	uint32_t id, len;
	uint16_t head;
	uint64_t gpa;

	drv_start(&n->dev, 0);
	gpa = drv_add_rx(1526, &head);
	host_send(frame, 60, 1);
	tap_event(EPOLLIN);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(id, head);
	cr_assert_eq(len, sizeof(frame));
	cr_assert_eq(hdr_num_buffers(gpa), 1, "num_buffers is 1 without MRG_RXBUF");
	cr_assert_eq(*(uint8_t *)gpa_ptr(gpa), VIRTIO_NET_HDR_F_DATA_VALID, "header passes through");
	cr_assert_arr_eq(gpa_ptr(gpa + NET_HDR_LEN), frame + NET_HDR_LEN, 60);
	cr_assert_eq(n->rx_frames, 1);
	cr_assert_eq(n->rx_bytes, 60);
}

Test(virtio_net, rx_frame_spans_chains_with_mrg)
{
	static uint8_t frame[NET_HDR_LEN + 3000];
	uint64_t gpa[3];
	uint16_t head[3];
	uint32_t id, len, want[3] = { 1024, 1024, sizeof(frame) - 2048 };
	size_t off = 0;

	drv_start(&n->dev, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
	for (int i = 0; i < 3; i++)
		gpa[i] = drv_add_rx(1024, &head[i]);
	drv_add_rx(1024, NULL);		/* a spare that must stay unused */
	host_send(frame, 3000, 2);
	tap_event(EPOLLIN);
	for (int i = 0; i < 3; i++) {
		cr_assert(drv_used(NET_RXQ, &id, &len), "buffer %d not used", i);
		cr_assert_eq(id, head[i]);
		cr_assert_eq(len, want[i]);
		if (i == 0) {
			cr_assert_eq(hdr_num_buffers(gpa[0]), 3);
			cr_assert_arr_eq(gpa_ptr(gpa[0] + NET_HDR_LEN), frame + NET_HDR_LEN,
					 1024 - NET_HDR_LEN);
		} else {
			cr_assert_arr_eq(gpa_ptr(gpa[i]), frame + off, len);
		}
		off += len;
	}
	cr_assert_not(drv_used(NET_RXQ, &id, &len), "the spare buffer was used");
}

Test(virtio_net, rx_waits_for_buffers_without_losing_the_frame)
{
	uint8_t f1[NET_HDR_LEN + 100], f2[NET_HDR_LEN + 200];
	uint32_t id, len;
	uint64_t gpa;

	drv_start(&n->dev, 0);
	host_send(f1, 100, 3);
	host_send(f2, 200, 4);
	tap_event(EPOLLIN);
	cr_assert(n->rx_waiting);
	cr_assert_eq(n->tap_src.events & EPOLLIN, 0, "tap still read with no buffers");
	cr_assert_not(drv_used(NET_RXQ, &id, &len));

	gpa = drv_add_rx(1526, NULL);
	drv_kick(&n->dev, NET_RXQ);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(len, sizeof(f1));
	cr_assert_arr_eq(gpa_ptr(gpa + NET_HDR_LEN), f1 + NET_HDR_LEN, 100);
	cr_assert(n->rx_waiting, "out of buffers again for the second frame");

	gpa = drv_add_rx(1526, NULL);
	drv_kick(&n->dev, NET_RXQ);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(len, sizeof(f2));
	cr_assert_arr_eq(gpa_ptr(gpa + NET_HDR_LEN), f2 + NET_HDR_LEN, 200);
	cr_assert_eq(n->rx_dropped, 0);
}

Test(virtio_net, rx_mrg_too_few_buffers_takes_none_until_more_come)
{
	static uint8_t frame[NET_HDR_LEN + 3000];
	uint32_t id, len;
	uint16_t h0, h1, old;
	uint64_t g0;

	drv_start(&n->dev, 1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_RING_F_EVENT_IDX);
	g0 = drv_add_rx(2048, &h0);
	host_send(frame, 3000, 5);
	tap_event(EPOLLIN);
	cr_assert_not(drv_used(NET_RXQ, &id, &len), "part of a frame was delivered");
	cr_assert(n->rx_waiting);
	/* The driver's next buffer must cause a kick (EVENT_IDX): avail_event covers the one we hold. */
	old = drv_avail_idx(NET_RXQ);
	cr_assert(vring_need_event(drv_avail_event(NET_RXQ), (uint16_t)(old + 1), old));

	drv_add_rx(2048, &h1);
	drv_kick(&n->dev, NET_RXQ);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(id, h0);
	cr_assert_eq(len, 2048);
	cr_assert_eq(hdr_num_buffers(g0), 2);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(id, h1);
	cr_assert_eq(len, sizeof(frame) - 2048);
}

Test(virtio_net, rx_without_mrg_drops_frames_that_do_not_fit)
{
	uint8_t big[NET_HDR_LEN + 1000], small[NET_HDR_LEN + 100];
	uint32_t id, len;
	uint16_t head;
	uint64_t gpa;

	drv_start(&n->dev, 0);
	gpa = drv_add_rx(512, &head);
	host_send(big, 1000, 6);
	host_send(small, 100, 7);
	tap_event(EPOLLIN);
	cr_assert_eq(n->rx_dropped, 1);
	cr_assert(drv_used(NET_RXQ, &id, &len), "the buffer serves the next frame");
	cr_assert_eq(id, head);
	cr_assert_eq(len, sizeof(small));
	cr_assert_arr_eq(gpa_ptr(gpa + NET_HDR_LEN), small + NET_HDR_LEN, 100);
}

Test(virtio_net, rx_buffer_smaller_than_header_is_returned_unused)
{
	uint8_t frame[NET_HDR_LEN + 50];
	uint32_t id, len;
	uint16_t bad, good;

	drv_start(&n->dev, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
	drv_add_rx(8, &bad);
	drv_add_rx(1526, &good);
	host_send(frame, 50, 8);
	tap_event(EPOLLIN);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(id, bad);
	cr_assert_eq(len, 0);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(id, good);
	cr_assert_eq(len, sizeof(frame));
	cr_assert_not(needs_reset(), "a small buffer is not a broken ring");
}

Test(virtio_net, rx_malformed_ring_needs_reset)
{
	uint8_t frame[NET_HDR_LEN + 50];

	drv_start(&n->dev, 0);
	drv_offer(NET_RXQ, QSIZE + 3);	/* head out of range */
	host_send(frame, 50, 9);
	tap_event(EPOLLIN);
	cr_assert(needs_reset());
	tap_event(EPOLLIN);
	cr_assert_eq(n->tap_src.events, 0, "a broken device stops reading the tap");
}

Test(virtio_net, tx_frame_reaches_the_tap)
{
	uint64_t hdr = alloc_buf(NET_HDR_LEN), a = alloc_buf(40), b = alloc_buf(60);
	uint8_t got[256];
	uint32_t id, len;
	uint16_t head;

	drv_start(&n->dev, 0);
	pattern(gpa_ptr(hdr), NET_HDR_LEN, 10);
	pattern(gpa_ptr(a), 40, 11);
	pattern(gpa_ptr(b), 60, 12);
	head = drv_add(NET_TXQ, (struct drv_seg[]){ { hdr, NET_HDR_LEN, false }, { a, 40, false },
						    { b, 60, false } }, 3);
	drv_kick(&n->dev, NET_TXQ);
	cr_assert(drv_used(NET_TXQ, &id, &len));
	cr_assert_eq(id, head);
	cr_assert_eq(len, 0, "the device writes nothing into a transmit buffer");
	cr_assert_eq(recv(peer, got, sizeof(got), 0), NET_HDR_LEN + 100);
	cr_assert_arr_eq(got, gpa_ptr(hdr), NET_HDR_LEN);
	cr_assert_arr_eq(got + NET_HDR_LEN, gpa_ptr(a), 40);
	cr_assert_arr_eq(got + NET_HDR_LEN + 40, gpa_ptr(b), 60);
	cr_assert_eq(n->tx_frames, 1);
	cr_assert_eq(n->tx_bytes, 100);
}

Test(virtio_net, tx_bad_chains_are_dropped_not_fatal)
{
	uint64_t buf = alloc_buf(128);
	uint8_t got[256];
	uint32_t id, len;
	uint16_t short_head, rw_head, ok_head;

	drv_start(&n->dev, 0);
	short_head = drv_add(NET_TXQ, &(struct drv_seg){ buf, 8, false }, 1);
	rw_head = drv_add(NET_TXQ, (struct drv_seg[]){ { buf, 64, false }, { buf + 64, 64, true } },
			  2);
	ok_head = drv_add(NET_TXQ, &(struct drv_seg){ buf, 64, false }, 1);
	drv_kick(&n->dev, NET_TXQ);
	cr_assert(drv_used(NET_TXQ, &id, &len));
	cr_assert_eq(id, short_head);
	cr_assert(drv_used(NET_TXQ, &id, &len));
	cr_assert_eq(id, rw_head);
	cr_assert(drv_used(NET_TXQ, &id, &len));
	cr_assert_eq(id, ok_head);
	cr_assert_eq(n->tx_dropped, 2);
	cr_assert_eq(recv(peer, got, sizeof(got), 0), 64, "only the good frame was sent");
	cr_assert_eq(recv(peer, got, sizeof(got), 0), -1);
	cr_assert_not(needs_reset());
}

Test(virtio_net, tx_waits_when_the_tap_is_full)
{
	uint64_t buf = alloc_buf(64);
	uint8_t got[128];
	uint32_t id, len;
	unsigned int sent = 0, used = 0, received = 0;

	drv_start(&n->dev, 0);
	/* With the smallest send buffer a few queued datagrams fill the socket, which then says EAGAIN. */
	cr_assert_eq(setsockopt(n->tap_fd, SOL_SOCKET, SO_SNDBUF, &(int){ 1 }, sizeof(int)), 0);
	for (unsigned int i = 0; i < QSIZE / 2; i++) {
		drv_add(NET_TXQ, &(struct drv_seg){ buf, 64, false }, 1);
		sent++;
	}
	drv_kick(&n->dev, NET_TXQ);
	while (drv_used(NET_TXQ, &id, &len))
		used++;
	cr_assert_lt(used, sent, "the socket never filled up");
	cr_assert(n->tx_blocked);
	cr_assert(n->tap_src.events & EPOLLOUT);

	/* The host network drains; each EPOLLOUT lets more out, and nothing is lost or repeated. */
	for (int rounds = 0; rounds < 100 && used < sent; rounds++) {
		while (recv(peer, got, sizeof(got), 0) == 64)
			received++;
		tap_event(EPOLLOUT);
		while (drv_used(NET_TXQ, &id, &len))
			used++;
	}
	while (recv(peer, got, sizeof(got), 0) == 64)
		received++;
	cr_assert_eq(used, sent);
	cr_assert_eq(received, sent);
	cr_assert_not(n->tx_blocked);
	cr_assert_eq(n->tap_src.events & EPOLLOUT, 0);
}

Test(virtio_net, reset_forgets_the_pending_frame)
{
	uint8_t f1[NET_HDR_LEN + 100], f2[NET_HDR_LEN + 40];
	uint32_t id, len;
	uint64_t gpa;

	drv_start(&n->dev, 0);
	host_send(f1, 100, 13);
	tap_event(EPOLLIN);
	cr_assert_neq(n->rx_len, 0);
	drv_wr(&n->dev, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(n->rx_len, 0);
	cr_assert_eq(n->tap_src.events, 0);
	drv_start(&n->dev, 0);
	gpa = drv_add_rx(1526, NULL);
	host_send(f2, 40, 14);
	drv_kick(&n->dev, NET_RXQ);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(len, sizeof(f2));
	cr_assert_arr_eq(gpa_ptr(gpa + NET_HDR_LEN), f2 + NET_HDR_LEN, 40);
}

Test(virtio_net, tap_going_away_takes_the_link_down)
{
	drv_start(&n->dev, 0);
	close(peer);
	peer = -1;
	tap_event(EPOLLIN | EPOLLHUP);
	cr_assert_not(n->tap_watched);
	cr_assert_eq(n->config.status, 0);
	cr_assert(n->dev.isr & VIRTIO_MMIO_INT_CONFIG, "config change announced");
}

/* ---- constructor errors and a real tap ---- */

static void plain_setup(void)
{
	fake_driver_init(QSIZE);
}

TestSuite(virtio_net_create, .init = plain_setup, .fini = fake_driver_fini);

Test(virtio_net_create, vhost_on_without_an_offload_is_refused)
{
	struct net_options o = { .tap = "vmmt0", .vhost = NET_VHOST_ON };
	struct virtio_net *vn;

	cr_assert_eq(virtio_net_create(&fake_host, &o, "virtio-net0", BASE, GSI, &vn),
		     -EOPNOTSUPP);
	cr_assert_null(vn);
}

Test(virtio_net_create, bad_tap_names_are_refused)
{
	struct net_options o = { .tap = "a-name-much-too-long-for-linux" };
	struct virtio_net *vn;

	cr_assert_eq(virtio_net_create(&fake_host, &o, "virtio-net0", BASE, GSI, &vn),
		     -ENAMETOOLONG);
	o.tap = "";
	cr_assert_eq(virtio_net_create(&fake_host, &o, "virtio-net0", BASE, GSI, &vn), -EINVAL);
	cr_assert_null(vn);
	cr_assert_eq(net_tap_open("a-name-much-too-long-for-linux"), -ENAMETOOLONG);
}

Test(virtio_net_create, real_tap)
{
	struct net_options o = { 0 };
	struct virtio_net *vn;
	struct virtio_mmio_dev *d;
	struct ifreq ifr = { 0 };
	char name[IFNAMSIZ];
	int fd, hdr_len = 0;

	if (access("/dev/net/tun", F_OK))
		cr_skip_test("no /dev/net/tun on this host");
	snprintf(name, sizeof(name), "vmmt%d", (int)(getpid() % 100000));
	fd = net_tap_open(name);
	if (fd == -EPERM || fd == -EACCES)
		cr_skip_test("not allowed to create taps here (needs CAP_NET_ADMIN)");
	cr_assert_geq(fd, 0, "net_tap_open: %s", strerror(-fd));
	cr_assert_eq(ioctl(fd, TUNGETIFF, &ifr), 0);
	cr_assert_str_eq(ifr.ifr_name, name);
	cr_assert_eq(ifr.ifr_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR),
		     IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
	cr_assert_eq(ioctl(fd, TUNGETVNETHDRSZ, &hdr_len), 0);
	cr_assert_eq(hdr_len, 12);
	cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
	close(fd);	/* a non-persistent tap goes away with its last fd */

	o.tap = name;
	o.mac_set = false;
	cr_assert_eq(virtio_net_create(&fake_host, &o, "virtio-net0", BASE, GSI, &vn), 0);
	d = &vn->dev;
	{
		cr_assert_eq(vn->config.mac[0], 0x52, "generated MAC in 52:54:00");
		cr_assert_eq(vn->config.mac[1], 0x54);
		cr_assert_eq(vn->config.mac[2], 0x00);
		/* The offloads a Linux guest would take are accepted by the tap. */
		d->driver_features = 1ULL << VIRTIO_NET_F_GUEST_CSUM | 1ULL << VIRTIO_NET_F_GUEST_TSO4 |
				     1ULL << VIRTIO_NET_F_GUEST_TSO6;
		cr_assert_eq(ioctl(vn->tap_fd, TUNSETOFFLOAD, net_tap_offloads(d)), 0);
	}
	virtio_net_destroy(vn);
}

/* ---- traffic through a real tap ---- */

static char tap_name[IFNAMSIZ];

static void tap_setup(void)
{
	struct net_options o = { .tap = tap_name, .mac_set = true };
	struct ifreq ifr = { 0 };
	int fd;

	fake_driver_init(QSIZE);
	n = NULL;
	if (access("/dev/net/tun", F_OK))
		cr_skip_test("no /dev/net/tun on this host");
	snprintf(tap_name, sizeof(tap_name), "vmmx%d", (int)(getpid() % 100000));
	fd = net_tap_open(tap_name);
	if (fd == -EPERM || fd == -EACCES)
		cr_skip_test("not allowed to create taps here (needs CAP_NET_ADMIN)");
	cr_assert_geq(fd, 0);
	close(fd);
	memcpy(o.mac, test_mac, sizeof(o.mac));
	cr_assert_eq(virtio_net_create(&fake_host, &o, "virtio-net0", BASE, GSI, &n), 0);

	/* ip link set NAME up */
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap_name);
	cr_assert_eq(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	cr_assert_eq(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
	close(fd);
}

static void tap_teardown(void)
{
	virtio_net_destroy(n);
	n = NULL;
	fake_driver_fini();
}

static uint64_t tap_counter(const char *what)
{
	char p[128];
	unsigned long long v = 0;
	FILE *f;

	snprintf(p, sizeof(p), "/sys/class/net/%s/statistics/%s", tap_name, what);
	f = fopen(p, "r");
	cr_assert_not_null(f, "%s", p);
	cr_assert_eq(fscanf(f, "%llu", &v), 1);
	fclose(f);
	return v;
}

/* An Ethernet broadcast frame of len bytes from src with an experimental ethertype. */
static void make_frame(uint8_t *f, size_t len, const uint8_t src[6], uint8_t seed)
{
	memset(f, 0xff, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88;
	f[13] = 0xb5;	/* IEEE 802 local experimental */
	pattern(f + 14, len - 14, seed);
}

TestSuite(virtio_net_tap, .init = tap_setup, .fini = tap_teardown);

Test(virtio_net_tap, frames_both_ways)
{
	uint8_t frame[100], mac[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };
	uint64_t hdr = alloc_buf(NET_HDR_LEN), data = alloc_buf(sizeof(frame)), rx;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	uint64_t before = tap_counter("rx_packets");
	struct ifreq ifr = { 0 };
	uint32_t id, len = 0;
	int ps;

	drv_start(&n->dev, 1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
		  1ULL << VIRTIO_NET_F_GUEST_TSO4 | 1ULL << VIRTIO_NET_F_GUEST_TSO6 |
		  1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_HOST_TSO4 |
		  1ULL << VIRTIO_RING_F_EVENT_IDX);
	cr_assert_not(needs_reset(), "the tap refused the negotiated offloads");

	/* Guest → host: the tap counts what we write as received. */
	make_frame(gpa_ptr(data), sizeof(frame), test_mac, 1);
	drv_add(NET_TXQ, (struct drv_seg[]){ { hdr, NET_HDR_LEN, false },
					     { data, sizeof(frame), false } }, 2);
	drv_kick(&n->dev, NET_TXQ);
	cr_assert(drv_used(NET_TXQ, &id, &len));
	cr_assert_eq(n->tx_frames, 1, "dropped: %" PRIu64, n->tx_dropped);
	cr_assert_eq(tap_counter("rx_packets"), before + 1);

	/* Host → guest: a frame sent out of the interface with a packet socket. */
	ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (ps < 0)
		cr_skip_test("no packet sockets here: %s", strerror(errno));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap_name);
	cr_assert_eq(ioctl(ps, SIOCGIFINDEX, &ifr), 0);
	sll.sll_ifindex = ifr.ifr_ifindex;
	sll.sll_halen = 6;
	memset(sll.sll_addr, 0xff, 6);
	make_frame(frame, sizeof(frame), mac, 2);
	rx = drv_add_rx(2048, NULL);
	cr_assert_eq(sendto(ps, frame, sizeof(frame), 0, (struct sockaddr *)&sll, sizeof(sll)),
		     (ssize_t)sizeof(frame));
	close(ps);
	/* The kernel may send its own frames (IPv6 DAD, MLD) too: look for ours. */
	for (int tries = 0; tries < 100; tries++) {
		tap_event(EPOLLIN);
		if (drv_used(NET_RXQ, &id, &len)) {
			if (len == NET_HDR_LEN + sizeof(frame) &&
			    !memcmp(gpa_ptr(rx + NET_HDR_LEN), frame, sizeof(frame)))
				break;
			rx = drv_add_rx(2048, NULL);
			drv_kick(&n->dev, NET_RXQ);
		}
		usleep(10000);
	}
	cr_assert_eq(len, NET_HDR_LEN + sizeof(frame), "our frame never arrived");
	cr_assert_arr_eq(gpa_ptr(rx + NET_HDR_LEN), frame, sizeof(frame));
	cr_assert_eq(hdr_num_buffers(rx), 1);
}

#define BASE2	(BASE + 0x1000)

/* Whether interface name does TCP segmentation offload (the tap: what TUNSETOFFLOAD allowed). */
static bool if_tso(const char *name)
{
	struct ethtool_value ev = { .cmd = ETHTOOL_GTSO };
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(s, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_data = (void *)&ev;
	cr_assert_eq(ioctl(s, SIOCETHTOOL, &ifr), 0, "SIOCETHTOOL %s: %s", name, strerror(errno));
	close(s);
	return ev.data;
}

Test(virtio_net_tap, a_destination_tap_gets_the_guest_offloads)
{
	struct net_options o = { .mac_set = true };
	char dst_name[IFNAMSIZ];
	struct virtio_net *to;
	struct sbuf w;
	int fd;

	drv_start(&n->dev, 1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
		  1ULL << VIRTIO_NET_F_GUEST_TSO4 | 1ULL << VIRTIO_NET_F_GUEST_TSO6 |
		  1ULL << VIRTIO_RING_F_EVENT_IDX);
	cr_assert(if_tso(tap_name), "DRIVER_OK gave the source's tap the offloads");

	/* The destination: a tap that never had a driver (the driver does not start again). */
	snprintf(dst_name, sizeof(dst_name), "vmmy%d", (int)(getpid() % 100000));
	fd = net_tap_open(dst_name);
	cr_assert_geq(fd, 0);
	close(fd);
	o.tap = dst_name;
	memcpy(o.mac, test_mac, sizeof(o.mac));
	cr_assert_eq(virtio_net_create(&fake_host, &o, "virtio-net1", BASE2, GSI + 1, &to), 0);
	cr_assert_not(if_tso(dst_name));

	drv_pause_save(&n->dev, &w);
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	drv_resume(&to->dev);
	cr_assert(if_tso(dst_name), "the load gave the destination's tap the guest's offloads");
	sbuf_free(&w);
	virtio_net_destroy(to);
}

/* ---- migration ---- */


/* A destination device over a new socketpair (its host network end in *dst_peer), random MAC. */
static struct virtio_net *create_dst(int *dst_peer, struct virtio_backend *offload)
{
	struct net_options o = { .tap = "test1" };
	struct virtio_net *d;
	int sv[2] = { -1, -1 };

	if (!offload) {
		cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
		*dst_peer = sv[1];
	}
	cr_assert_eq(virtio_net_create_fd(&fake_host, &o, "virtio-net1", BASE2, GSI + 1, sv[0], false,
					  offload, &d), 0);
	return d;
}

/* Reads the config space as the driver does. */
static void read_config(struct virtio_mmio_dev *d, uint8_t *cfg, size_t len)
{
	for (unsigned int i = 0; i < len; i++)
		virtio_mmio_io(d, VIRTIO_MMIO_CONFIG + i, &cfg[i], 1, false);
}

/* Replaces the device under test with to (the source is gone) and its network end. */
static void become(struct virtio_net *to, int to_peer)
{
	virtio_net_destroy(n);
	close(peer);
	n = to;
	peer = to_peer;
}

/* A tx chain of one frame (header + len bytes of pattern seed); returns its head. */
static uint16_t drv_add_tx(size_t len, uint8_t seed)
{
	uint64_t gpa = alloc_buf(NET_HDR_LEN + len);

	pattern(gpa_ptr(gpa + NET_HDR_LEN), len, seed);
	return drv_add(NET_TXQ, &(struct drv_seg){ gpa, (uint32_t)(NET_HDR_LEN + len), false }, 1);
}

Test(virtio_net, migrates_a_held_frame_and_pending_transmits_exactly_once)
{
	uint8_t held[NET_HDR_LEN + 300], got[2048], want[102], mac[6];
	struct drv_regs src_regs, dst_regs;
	struct virtio_net *to;
	uint16_t tx[3], head;
	uint32_t id, len;
	struct sbuf w;
	uint64_t gpa;
	int to_peer;

	drv_start(&n->dev, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	/* Two frames sent, a third offered but not popped; a frame held for want of buffers. */
	tx[0] = drv_add_tx(100, 1);
	tx[1] = drv_add_tx(101, 2);
	drv_kick(&n->dev, NET_TXQ);
	for (int i = 0; i < 2; i++) {
		cr_assert(drv_used(NET_TXQ, &id, &len));
		cr_assert_eq(id, tx[i]);
		cr_assert_eq(recv(peer, got, sizeof(got), 0), (ssize_t)(NET_HDR_LEN + 100 + i));
	}
	tx[2] = drv_add_tx(102, 3);
	host_send(held, 300, 9);
	tap_event(EPOLLIN);
	cr_assert(n->rx_waiting);
	cr_assert_eq(n->rx_len, sizeof(held), "the frame is held by the device");

	drv_pause_save(&n->dev, &w);
	drv_read_all(&n->dev, &src_regs);
	to = create_dst(&to_peer, NULL);
	read_config(&to->dev, mac, sizeof(mac));
	cr_assert(memcmp(mac, test_mac, 6), "the destination made up a MAC of its own");
	drv_expect_truncations_refused(&to->dev, &w);
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	drv_read_all(&to->dev, &dst_regs);
	drv_expect_same_regs(&src_regs, &dst_regs);
	read_config(&to->dev, mac, sizeof(mac));
	cr_assert_arr_eq(mac, test_mac, 6, "the guest keeps its MAC");
	become(to, to_peer);

	drv_resume(&n->dev);
	/*
	 * The transmit the source had not taken goes out once, from the destination; and the
	 * destination announces the guest's MAC (the first RARP; the timer sends the others).
	 */
	cr_assert(drv_used(NET_TXQ, &id, &len));
	cr_assert_eq(id, tx[2]);
	cr_assert_not(drv_used(NET_TXQ, &id, &len), "a transmit was repeated");
	pattern(want, 102, 3);
	for (int i = 0, frames = 0, rarps = 0; i < 2; i++) {
		ssize_t r = recv(peer, got, sizeof(got), 0);
		uint8_t rarp[NET_ANNOUNCE_LEN];

		net_announce_frame(test_mac, rarp);
		if (r == NET_ANNOUNCE_LEN) {
			cr_assert_arr_eq(got, rarp, NET_ANNOUNCE_LEN);
			cr_assert_eq(++rarps, 1);
		} else {
			cr_assert_eq(r, NET_HDR_LEN + 102);
			cr_assert_arr_eq(got + NET_HDR_LEN, want, 102);
			cr_assert_eq(++frames, 1);
		}
	}
	cr_assert_eq(n->announced, 1);
	cr_assert_eq(n->announce_left, NET_ANNOUNCE_ROUNDS - 1);
	cr_assert_lt(recv(peer, got, sizeof(got), 0), 0, "one frame only");
	/* The held frame reaches the guest once it gives a buffer. */
	cr_assert(n->rx_waiting);
	gpa = drv_add_rx(1526, &head);
	drv_kick(&n->dev, NET_RXQ);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert_eq(id, head);
	cr_assert_eq(len, sizeof(held));
	cr_assert_arr_eq(gpa_ptr(gpa + NET_HDR_LEN), held + NET_HDR_LEN, 300);
	drv_add_rx(1526, NULL);
	drv_kick(&n->dev, NET_RXQ);
	cr_assert_not(drv_used(NET_RXQ, &id, &len), "the held frame was delivered twice");
	sbuf_free(&w);
}

Test(virtio_net, the_link_status_is_the_destinations)
{
	struct virtio_net *to;
	uint8_t cfg[8];
	struct sbuf w;
	int to_peer;

	drv_start(&n->dev, 0);
	n->config.status = 0;		/* the source's tap went away */
	drv_pause_save(&n->dev, &w);
	to = create_dst(&to_peer, NULL);
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	become(to, to_peer);
	cr_assert_eq(drv_rd(&n->dev, VIRTIO_MMIO_CONFIG_GENERATION), 0);
	drv_resume(&n->dev);
	read_config(&n->dev, cfg, sizeof(cfg));
	cr_assert_eq(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
	cr_assert_eq(drv_rd(&n->dev, VIRTIO_MMIO_CONFIG_GENERATION), 1, "announced");
	cr_assert(drv_rd(&n->dev, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	sbuf_free(&w);
}

/* A back-end standing in for vhost-net: it takes the queues and does nothing. */
static uint64_t off_features(struct virtio_backend *be)
{
	return ~0ULL;
}

static int off_start(struct virtio_backend *be, unsigned int q, const struct virtq_state *s,
		     int kick_fd, struct virtio_call *call)
{
	return 0;
}

static void off_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *s)
{
}

static void off_destroy(struct virtio_backend *be)
{
	free(be);
}

static const struct virtio_backend_ops off_ops = {
	.name = "fake-vhost-net", .signals_irqfd = true, .features = off_features,
	.start = off_start, .stop = off_stop, .destroy = off_destroy,
};

Test(virtio_net, a_held_frame_is_dropped_by_an_offloaded_destination)
{
	uint8_t held[NET_HDR_LEN + 50];
	struct virtio_backend *be = malloc(sizeof(*be));
	struct virtio_net *to;
	struct sbuf w;

	be->ops = &off_ops;
	drv_start(&n->dev, 0);
	host_send(held, 50, 1);
	tap_event(EPOLLIN);
	cr_assert(n->rx_len);
	drv_pause_save(&n->dev, &w);
	to = create_dst(NULL, be);
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	cr_assert_eq(to->rx_len, 0);
	cr_assert(to->dev.irq_direct);
	virtio_net_destroy(to);
	sbuf_free(&w);
}

Test(virtio_net, load_refuses_a_held_frame_of_impossible_length)
{
	uint8_t held[NET_HDR_LEN + 50];
	struct virtio_net *to;
	struct sbuf w;
	size_t model;
	int to_peer;

	drv_start(&n->dev, 0);
	host_send(held, 50, 1);
	tap_event(EPOLLIN);
	drv_pause_save(&n->dev, &w);
	/* The model's part ends the state: u32 version, u32 frame length, the frame. */
	model = w.len - sizeof(held) - 8;
	cr_assert_eq(w.data[model + 4], sizeof(held));
	to = create_dst(&to_peer, NULL);
	w.data[model + 4] = NET_HDR_LEN - 1;
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), -EINVAL, "shorter than a header");
	cr_assert_eq(to->rx_len, 0);
	cr_assert_eq(to->dev.status, 0, "nothing changed");
	w.data[model + 4] = sizeof(held);
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	cr_assert_eq(to->rx_len, sizeof(held));
	virtio_net_destroy(to);
	close(to_peer);
	sbuf_free(&w);
}

Test(virtio_net, receive_marks_the_buffer_and_used_ring_dirty)
{
	uint8_t frame[NET_HDR_LEN + 5000];
	struct dirty_log log;
	uint64_t gpa[2], spare;
	uint32_t id, len;

	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	drv_start(&n->dev, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
	gpa[0] = drv_add_rx(4096, NULL);
	gpa[1] = drv_add_rx(4096, NULL);
	spare = alloc_buf(8192);
	fake_driver_log_dirty(&log);
	host_send(frame, 5000, 7);
	tap_event(EPOLLIN);
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert(drv_used(NET_RXQ, &id, &len));
	cr_assert(drv_page_dirty(&log, drv_used_gpa(NET_RXQ)));
	cr_assert(drv_page_dirty(&log, gpa[0]));
	cr_assert(drv_page_dirty(&log, gpa[1]));
	cr_assert_not(drv_page_dirty(&log, spare));
	cr_assert_not(drv_page_dirty(&log, drv_used_gpa(NET_TXQ)), "the transmit queue did nothing");
	fake_driver_log_dirty(NULL);
	dirty_log_destroy(&log);
}

Test(virtio_net, the_announcement_is_a_broadcast_rarp_from_the_guests_mac)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };
	uint8_t out[NET_ANNOUNCE_LEN], *f = out + NET_HDR_LEN;
	static const uint8_t zero[NET_HDR_LEN];

	memset(out, 0x5a, sizeof(out));
	net_announce_frame(mac, out);
	cr_assert_arr_eq(out, zero, NET_HDR_LEN, "no offload asked of the tap");
	for (int i = 0; i < 6; i++)
		cr_assert_eq(f[i], 0xff, "broadcast");
	cr_assert_arr_eq(f + 6, mac, 6);
	cr_assert_eq(f[12], 0x80);
	cr_assert_eq(f[13], 0x35, "ethertype RARP");
	cr_assert_eq(f[14] << 8 | f[15], 1, "Ethernet");
	cr_assert_eq(f[16] << 8 | f[17], 0x0800, "IPv4");
	cr_assert_eq(f[18], 6);
	cr_assert_eq(f[19], 4);
	cr_assert_eq(f[20] << 8 | f[21], 3, "reverse request");
	cr_assert_arr_eq(f + 22, mac, 6, "sender");
	cr_assert_arr_eq(f + 32, mac, 6, "target");
	for (int i = 28; i < 32; i++)
		cr_assert_eq(f[i], 0);
	for (int i = 38; i < 60; i++)
		cr_assert_eq(f[i], 0, "padding at %d", i);
}
