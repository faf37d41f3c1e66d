// SPDX-License-Identifier: GPL-2.0-only
/*
 * Migration through the VMM's vhost-user front-end (vhost/user.c under
 * vhost/vhost.c's seam): the dirty log shared with a back-end (end to end with
 * vmm-vhost-user-blk's device: the pages a request wrote, the used ring's
 * among them, are set in the VMM's log), migratable and has_state, and the
 * back-end's state moved chunk by chunk (DEVICE_STATE): from a back-end with
 * requests in flight into a fresh one that resubmits them, and against a
 * hostile back-end: its own fd, a failing CHECK_DEVICE_STATE, zero-length and
 * 10 MiB states (never held whole, chunks never larger than the sink's max), a
 * back-end that stalls mid-state, replies that break the protocol. Every test
 * checks that no fd is left open.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/vu_server.h"
#include "vhost/user.h"
#include "vmm/base/dirty.h"

#define BIT(n)		(1ULL << (n))
#define MIB		(1u << 20)

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void no_destroy(struct vhost_dev *dev)
{
}

static const struct vhost_device_ops blk_ops = {
	.name = "vhost-user-blk",
	.backend_bits = ~0ULL,
	.destroy = no_destroy,
};

/* Guest RAM: two regions (0..1 MiB, 4..5 MiB) in one memfd, as the VMM's shared=on. */
static struct guest_mem mem;
static const struct guest_mem_range ranges[2] = { { 0, MIB }, { 4 * MIB, MIB } };
#define RAM_END		(5ULL * MIB)

/* A front-end over a socketpair; the other end (*be) is for whatever back-end the test runs. */
static void fe_open(struct vhost_user_opts *o, int *be, void **conn)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	o->fd = sv[0];
	o->path = NULL;
	if (!o->timeout_ms)
		o->timeout_ms = 2000;
	*be = sv[1];
	cr_assert_eq(vhost_user_open(o, conn), 0);
}

static void mem_up(void)
{
	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(guest_mem_init(&mem, ranges, 2, GUEST_MEM_MEMFD), 0);
}

/* ---- a ring in guest RAM (region 0), as a driver lays it out ---- */

#define DESC	0x1000ULL
#define AVAIL	0x2000ULL
#define USED	0x3000ULL
#define QSIZE	64

static struct virtq_state ring_state(void)
{
	return (struct virtq_state){ .size = QSIZE, .desc_gpa = DESC, .avail_gpa = AVAIL,
				     .used_gpa = USED, .ready = true };
}

static void *gpa(uint64_t a)
{
	return guest_mem_ptr(&mem, a, 1);
}

/* Puts descriptor `head` (one buffer) in the avail ring and publishes it; no kick. */
static void add_chain(uint16_t head, uint64_t buf, uint32_t len, bool write)
{
	struct vring_desc *d = gpa(DESC);
	struct vring_avail *av = gpa(AVAIL);
	uint16_t idx = av->idx;

	d[head] = (struct vring_desc){ buf, len, write ? VRING_DESC_F_WRITE : 0, 0 };
	av->ring[idx % QSIZE] = head;
	__atomic_store_n(&av->idx, (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

static uint16_t used_idx(void)
{
	return __atomic_load_n(&((struct vring_used *)gpa(USED))->idx, __ATOMIC_ACQUIRE);
}

static bool wait_used(uint16_t n, int timeout_ms)
{
	for (int i = 0; i <= timeout_ms / 5; i++) {
		if (used_idx() == n)
			return true;
		usleep(5000);
	}
	return false;
}

/* ---- sinks and sources ---- */

struct mem_sink {
	uint8_t *buf;
	size_t len, cap, max_seen;
	unsigned int calls;
};

static int mem_sink_chunk(void *opaque, const void *buf, size_t len)
{
	struct mem_sink *m = opaque;

	cr_assert(len > 0, "a sink never gets an empty chunk");
	if (m->len + len > m->cap) {
		m->cap = (m->len + len) * 2;
		m->buf = realloc(m->buf, m->cap);
		cr_assert_not_null(m->buf);
	}
	memcpy(m->buf + m->len, buf, len);
	m->len += len;
	m->max_seen = len > m->max_seen ? len : m->max_seen;
	m->calls++;
	return 0;
}

/* Gives buf[0, len) back in pieces of at most step bytes. */
struct mem_source {
	const uint8_t *buf;
	size_t len, pos, step;
};

static ssize_t mem_source_chunk(void *opaque, void *buf, size_t cap)
{
	struct mem_source *m = opaque;
	size_t n = m->len - m->pos;

	n = n < cap ? n : cap;
	n = n < m->step ? n : m->step;
	memcpy(buf, m->buf + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

/* ---- the dirty log, end to end with vmm-vhost-user-blk's device ---- */

static struct vu_server srv;
static struct vhost_dev dev;

/* Reads sector `sector` into buf (gpa) through ring 0: header at 0x4000, status at 0x5000. */
static void blk_read(uint16_t head, uint64_t sector, uint64_t buf)
{
	struct vring_desc *d = gpa(DESC);
	struct vring_avail *av = gpa(AVAIL);
	struct virtio_blk_outhdr *h = gpa(0x4000);
	uint16_t idx = av->idx;

	*h = (struct virtio_blk_outhdr){ .type = VIRTIO_BLK_T_IN, .sector = sector };
	*(uint8_t *)gpa(0x5000) = 0xff;
	d[head] = (struct vring_desc){ 0x4000, sizeof(*h), VRING_DESC_F_NEXT, (uint16_t)(head + 1) };
	d[head + 1] = (struct vring_desc){ buf, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE,
					   (uint16_t)(head + 2) };
	d[head + 2] = (struct vring_desc){ 0x5000, 1, VRING_DESC_F_WRITE, 0 };
	av->ring[idx % QSIZE] = head;
	__atomic_store_n(&av->idx, (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

/* The log's bits for pages [0, RAM_END), collected (and cleared). */
static void collect(struct dirty_log *log, uint64_t *bits)
{
	memset(bits, 0, RAM_END / DIRTY_PAGE_SIZE / 8);
	dirty_log_collect(log, 0, bits, RAM_END / DIRTY_PAGE_SIZE / 64);
}

static bool page_set(const uint64_t *bits, uint64_t gpa_)
{
	uint64_t p = gpa_ >> DIRTY_PAGE_SHIFT;

	return bits[p / 64] & (1ULL << (p % 64));
}

static unsigned int pages_set(const uint64_t *bits)
{
	unsigned int n = 0;

	for (size_t i = 0; i < RAM_END / DIRTY_PAGE_SIZE / 64; i++)
		n += (unsigned int)__builtin_popcountll(bits[i]);
	return n;
}

Test(vhost_user_state, dirty_log_end_to_end_with_our_back_end)
{
	struct vhost_user_opts o = { .fd = -1 };
	struct virtq_state s = ring_state();
	struct virtio_call call = { .irq_fd = eventfd(0, EFD_CLOEXEC) };
	int kick = eventfd(0, EFD_CLOEXEC), fds, be;
	uint64_t bits[RAM_END / DIRTY_PAGE_SIZE / 64];
	const uint64_t data = 4 * MIB + 0x3000;	/* in the second region */
	struct dirty_log log;
	void *conn;

	mem_up();
	cr_assert_eq(dirty_log_init(&log, RAM_END), 0);
	fds = count_fds();
	vs_init(&srv, 1);
	fe_open(&o, &be, &conn);
	vs_start_fd(&srv, be);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_ops, &mem, "vub0", 1), 0);
	cr_assert(vhost_user_protocol_features(&dev) & BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD));
	cr_assert_eq(dev.be.ops->set_features(&dev.be, BIT(32)), 0);
	cr_assert_eq(dev.be.ops->start(&dev.be, 0, &s, kick, &call), 0);

	/* Logging switched on while the ring runs. */
	cr_assert_eq(dev.be.ops->log_start(&dev.be, &log), 0);
	collect(&log, bits);
	/* The back-end may have turned kicks on (used->flags / avail_event): the used ring only. */
	cr_assert_eq(pages_set(bits) - page_set(bits, USED), 0, "nothing else written yet");
	blk_read(0, 9, data);
	eventfd_write(kick, 1);
	cr_assert(wait_used(1, 5000), "the request completes");
	cr_assert_eq(*(uint8_t *)gpa(data), 9, "sector 9 read");
	cr_assert_eq(*(uint8_t *)gpa(0x5000), VIRTIO_BLK_S_OK);
	collect(&log, bits);
	cr_assert(page_set(bits, USED), "the used ring's page");
	cr_assert(page_set(bits, data), "the data buffer's page (second region)");
	cr_assert(page_set(bits, 0x5000), "the status byte's page");
	cr_assert_not(page_set(bits, 0x4000), "the header is only read");
	cr_assert_not(page_set(bits, DESC), "descriptors are only read");
	cr_assert_not(page_set(bits, AVAIL), "the avail ring is only read");
	cr_assert_eq(pages_set(bits), 3, "exactly those three pages");

	/* After log_stop nothing more is logged. */
	dev.be.ops->log_stop(&dev.be);
	blk_read(3, 10, data);
	eventfd_write(kick, 1);
	cr_assert(wait_used(2, 5000));
	cr_assert_eq(*(uint8_t *)gpa(data), 10);
	collect(&log, bits);
	cr_assert_eq(pages_set(bits), 0, "no logging after log_stop (%u pages)", pages_set(bits));

	dev.be.ops->stop(&dev.be, 0, &s);
	cr_assert_eq(s.last_avail_idx, 2);
	vhost_dev_fini(&dev);
	vs_fini(&srv);
	dirty_log_destroy(&log);
	cr_assert_eq(count_fds(), fds - 1, "no fd left open (the log's memfd closed)");
	close(kick);
	close(call.irq_fd);
	guest_mem_destroy(&mem);
}

/* ---- against a scripted back-end ---- */

static struct vu_evil evil;

/* The front-end over a hostile back-end with migration options eo; timeout for transfers. */
static void ev_up(const struct vu_evil_opts *eo, int state_timeout_ms)
{
	struct vhost_user_opts o = { .fd = -1, .state_timeout_ms = state_timeout_ms,
				     .state = "a test's state", .state_hint = "use another" };
	void *conn;
	int be;

	fe_open(&o, &be, &conn);
	ve_start_with(&evil, be, VS_OK, eo);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_ops, &mem, "evil", 2), 0);
}

static void ev_down(void)
{
	vhost_dev_fini(&dev);
	ve_join(&evil);
}

static const struct vu_evil_opts migrating = {
	.extra_features = BIT(VHOST_USER_F_LOG_ALL),
	.extra_protocol = BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD) |
			  BIT(VHOST_USER_PROTOCOL_F_DEVICE_STATE),
};

Test(vhost_user_state, log_base_replies_of_each_implementation)
{
	static const struct { enum vs_log_reply r; int want; bool alive; } cases[] = {
		{ VS_LOG_ZERO, 0, true },	/* vmm-vhost-user-blk */
		{ VS_LOG_SIZE, 0, true },	/* libvhost-user: its payload union's mmap_size */
		{ VS_LOG_ECHO, 0, true },	/* rust-vmm: the request echoed */
		{ VS_LOG_EMPTY, 0, true },	/* DPDK: no payload */
		{ VS_LOG_REFUSED, -EIO, true },
		{ VS_LOG_ODD_SIZE, -ENOTCONN, false },
	};
	struct dirty_log log;
	int fds;

	mem_up();
	cr_assert_eq(dirty_log_init(&log, RAM_END), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vu_evil_opts eo = migrating;

		fds = count_fds();
		eo.log_reply = cases[i].r;
		ev_up(&eo, 0);
		cr_expect_eq(dev.be.ops->log_start(&dev.be, &log), cases[i].want, "reply %d",
			     cases[i].r);
		cr_expect_eq(atomic_load(&evil.log_size), log.size, "mmap_size is the log's size");
		cr_expect_eq(vhost_user_connected(&dev), cases[i].alive, "reply %d", cases[i].r);
		if (!cases[i].want)
			dev.be.ops->log_stop(&dev.be);
		ev_down();
		cr_expect_eq(count_fds(), fds, "reply %d leaves an fd open", cases[i].r);
	}
	dirty_log_destroy(&log);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, log_all_and_f_log_follow_the_log)
{
	struct virtq_state s = ring_state();
	struct virtio_call call = { .irq_fd = eventfd(0, EFD_CLOEXEC) };
	int kick = eventfd(0, EFD_CLOEXEC);
	struct vu_evil_opts eo = migrating;
	struct dirty_log log;
	unsigned int gets;

	mem_up();
	cr_assert_eq(dirty_log_init(&log, RAM_END), 0);
	/* Without REPLY_ACK: GET_FEATURES is the barrier after the changes. */
	eo.drop_protocol = BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK);
	ev_up(&eo, 0);
	/* Before DRIVER_OK: only the base; the first SET_FEATURES and ring carry the rest. */
	cr_assert_eq(dev.be.ops->log_start(&dev.be, &log), 0);
	cr_assert_eq(ve_count(&evil, VHOST_USER_SET_LOG_BASE), 1);
	cr_assert_eq(ve_count(&evil, VHOST_USER_SET_FEATURES), 0);
	cr_assert_eq(dev.be.ops->set_features(&dev.be, BIT(32)), 0);
	cr_assert_eq(dev.be.ops->start(&dev.be, 1, &s, kick, &call), 0);
	{
		uint8_t cfg[4];

		/* A request with a reply: everything before it was handled. */
		cr_assert_eq(vhost_dev_get_config(&dev, 0, cfg, sizeof(cfg)), 0);
	}
	gets = ve_count(&evil, VHOST_USER_GET_FEATURES);
	cr_assert_eq(atomic_load(&evil.features),
		     BIT(32) | BIT(VHOST_USER_F_LOG_ALL) | BIT(VHOST_USER_F_PROTOCOL_FEATURES));
	cr_assert_eq(atomic_load(&evil.addr_flags[1]), 1u << VHOST_USER_VRING_F_LOG);
	/* Stopping: features and the running ring again, without; then the barrier. */
	dev.be.ops->log_stop(&dev.be);
	cr_assert_eq(ve_count(&evil, VHOST_USER_GET_FEATURES), gets + 1);
	cr_assert_eq(atomic_load(&evil.features), BIT(32) | BIT(VHOST_USER_F_PROTOCOL_FEATURES));
	cr_assert_eq(atomic_load(&evil.addr_flags[1]), 0);
	/* Starting on a running ring: base, features, ring, barrier. */
	cr_assert_eq(dev.be.ops->log_start(&dev.be, &log), 0);
	cr_assert_eq(ve_count(&evil, VHOST_USER_SET_LOG_BASE), 2);
	cr_assert_eq(ve_count(&evil, VHOST_USER_GET_FEATURES), gets + 2);
	cr_assert_eq(atomic_load(&evil.addr_flags[1]), 1u << VHOST_USER_VRING_F_LOG);
	cr_assert_eq(ve_count(&evil, VHOST_USER_GET_INFLIGHT_FD), 0,
		     "switching LOG_ALL is SET_FEATURES alone");
	dev.be.ops->stop(&dev.be, 1, &s);
	dev.be.ops->log_stop(&dev.be);
	ev_down();
	dirty_log_destroy(&log);
	close(kick);
	close(call.irq_fd);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, a_back_end_that_cannot_log_is_refused_before_anything_is_sent)
{
	struct vu_evil_opts no_shmfd = migrating, no_log_all = migrating;
	struct dirty_log log;

	mem_up();
	cr_assert_eq(dirty_log_init(&log, RAM_END), 0);
	no_shmfd.extra_protocol &= ~BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD);
	ev_up(&no_shmfd, 0);
	cr_assert_eq(dev.be.ops->log_start(&dev.be, &log), -EOPNOTSUPP);
	cr_assert_eq(ve_count(&evil, VHOST_USER_SET_LOG_BASE), 0);
	ev_down();
	no_log_all.extra_features = 0;
	ev_up(&no_log_all, 0);
	cr_assert_eq(dev.be.ops->log_start(&dev.be, &log), -EOPNOTSUPP);
	cr_assert_eq(ve_count(&evil, VHOST_USER_SET_LOG_BASE), 0);
	cr_assert(vhost_user_connected(&dev));
	ev_down();
	dirty_log_destroy(&log);
	guest_mem_destroy(&mem);
}

/* ---- migratable, has_state ---- */

Test(vhost_user_state, a_stateful_back_end_without_device_state_is_not_migratable)
{
	struct vu_evil_opts no_state = migrating;
	char why[300] = "";

	mem_up();
	no_state.extra_protocol &= ~BIT(VHOST_USER_PROTOCOL_F_DEVICE_STATE);
	ev_up(&no_state, 0);	/* the device says its back-end keeps "a test's state" */
	cr_assert_eq(dev.be.ops->migratable(&dev.be, why, sizeof(why)), -EOPNOTSUPP);
	cr_assert(strstr(why, "a test's state"), "why: %s", why);
	cr_assert(strstr(why, "DEVICE_STATE"), "why: %s", why);
	cr_assert(strstr(why, "use another"), "the hint: %s", why);
	cr_assert_not(dev.be.ops->has_state(&dev.be));
	ev_down();

	ev_up(&migrating, 0);
	cr_assert_eq(dev.be.ops->migratable(&dev.be, why, sizeof(why)), 0);
	cr_assert(dev.be.ops->has_state(&dev.be));
	ev_down();
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, a_stateless_device_migrates_without_device_state)
{
	struct vhost_user_opts o = { .fd = -1 };	/* no .state: blk, net */
	char why[300] = "";
	void *conn;
	int be;

	mem_up();
	fe_open(&o, &be, &conn);
	ve_start(&evil, be, VS_OK);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_ops, &mem, "net", 2), 0);
	cr_assert_eq(dev.be.ops->migratable(&dev.be, why, sizeof(why)), 0);
	cr_assert_not(dev.be.ops->has_state(&dev.be));
	{
		struct mem_sink m = { 0 };
		struct virtio_state_sink sink = { mem_sink_chunk, &m, 4096 };

		cr_assert_eq(dev.be.ops->save_state(&dev.be, &sink), -EOPNOTSUPP);
	}
	ev_down();
	guest_mem_destroy(&mem);
}

/* ---- the state, against the scripted back-end ---- */

/* A sink that checks each byte is vs_state_byte(offset) and the chunk sizes. */
struct check_sink {
	size_t got, max_seen;
	unsigned int calls;
	bool ok;
	size_t written_at_first;	/* how far the back-end had written at the first chunk */
	int fail_after;			/* > 0: the n-th call fails with -ENOSPC */
};

static int check_sink_chunk(void *opaque, const void *buf, size_t len)
{
	struct check_sink *c = opaque;
	const uint8_t *b = buf;

	if (!c->calls)
		c->written_at_first = atomic_load(&evil.state_written);
	c->calls++;
	if (c->fail_after && (int)c->calls >= c->fail_after)
		return -ENOSPC;
	for (size_t i = 0; i < len; i++)
		c->ok &= b[i] == vs_state_byte(c->got + i);
	c->got += len;
	c->max_seen = len > c->max_seen ? len : c->max_seen;
	return 0;
}

/* A source of `total` bytes of vs_state_byte(), step bytes at a time. */
struct gen_source {
	size_t total, pos, step;
	size_t max_lag;		/* the most given but not yet read by the back-end */
	int fail_at;		/* > 0: fails with -EBADMSG once pos >= fail_at */
};

static ssize_t gen_source_chunk(void *opaque, void *buf, size_t cap)
{
	struct gen_source *g = opaque;
	size_t n = g->total - g->pos, lag = g->pos - atomic_load(&evil.loaded);
	uint8_t *b = buf;

	if (g->fail_at && g->pos >= (size_t)g->fail_at)
		return -EBADMSG;
	g->max_lag = lag > g->max_lag ? lag : g->max_lag;
	n = n < cap ? n : cap;
	n = n < g->step ? n : g->step;
	for (size_t i = 0; i < n; i++)
		b[i] = vs_state_byte(g->pos + i);
	g->pos += n;
	return (ssize_t)n;
}

/* The requests it got from SET_DEVICE_STATE_FD on, as a string ("42,43"). */
static void tail_from_state_fd(char *out, size_t len)
{
	unsigned int n = atomic_load(&evil.nreqs);
	size_t k = 0;
	bool on = false;

	out[0] = 0;
	for (unsigned int i = 0; i < n && i < VE_MAX_REQS; i++) {
		on |= evil.reqs[i] == VHOST_USER_SET_DEVICE_STATE_FD;
		if (on)
			k += (size_t)snprintf(out + k, len - k, "%s%u", k ? "," : "", evil.reqs[i]);
	}
}

static int save_with(enum vs_state_fault f, size_t len, size_t max, struct check_sink *c,
		     int timeout_ms)
{
	struct vu_evil_opts eo = migrating;
	struct virtio_state_sink sink = { check_sink_chunk, c, max };

	eo.state = f;
	eo.state_len = len;
	eo.stall_after = 100000;
	ev_up(&eo, timeout_ms);
	c->ok = true;
	return dev.be.ops->save_state(&dev.be, &sink);
}

static int load_with(enum vs_state_fault f, struct gen_source *g, int timeout_ms)
{
	struct vu_evil_opts eo = migrating;
	struct virtio_state_source src = { gen_source_chunk, g };

	eo.state = f;
	eo.stall_after = 1000;
	ev_up(&eo, timeout_ms);
	return dev.be.ops->load_state(&dev.be, &src);
}

Test(vhost_user_state, save_and_load_through_our_pipe_in_the_spec_order)
{
	struct check_sink c = { 0 };
	struct gen_source g = { .total = 10000, .step = 3000 };
	char tail[64];
	int fds;

	mem_up();
	fds = count_fds();
	cr_assert_eq(save_with(VS_STATE_OK, 10000, 4096, &c, 0), 0);
	cr_assert(c.ok, "the bytes the back-end wrote, in order");
	cr_assert_eq(c.got, 10000);
	cr_assert_leq(c.max_seen, 4096);
	tail_from_state_fd(tail, sizeof(tail));
	cr_assert_str_eq(tail, "42,43", "SET_DEVICE_STATE_FD, then CHECK_DEVICE_STATE after EOF");
	ev_down();
	cr_assert_eq(count_fds(), fds);

	cr_assert_eq(load_with(VS_STATE_OK, &g, 0), 0);
	cr_assert_eq(atomic_load(&evil.loaded), 10000);
	cr_assert(atomic_load(&evil.loaded_ok));
	tail_from_state_fd(tail, sizeof(tail));
	cr_assert_str_eq(tail, "42,43");
	ev_down();
	cr_assert_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, a_back_end_replying_with_its_own_fd)
{
	struct check_sink c = { 0 };
	struct gen_source g = { .total = 200000, .step = 65536 };
	int fds;

	mem_up();
	fds = count_fds();
	cr_assert_eq(save_with(VS_STATE_OWN_FD, 200000, 65536, &c, 0), 0);
	cr_assert(c.ok);
	cr_assert_eq(c.got, 200000, "read from the back-end's fd, not ours");
	cr_assert_eq(atomic_load(&evil.checks), 1);
	ev_down();
	cr_assert_eq(count_fds(), fds);

	cr_assert_eq(load_with(VS_STATE_OWN_FD, &g, 0), 0);
	cr_assert_eq(atomic_load(&evil.loaded), 200000, "written to the back-end's fd");
	cr_assert(atomic_load(&evil.loaded_ok));
	ev_down();
	cr_assert_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, a_failing_check_device_state_fails_the_transfer)
{
	struct check_sink c = { 0 };
	struct gen_source g = { .total = 5000, .step = 5000 };
	int fds;

	mem_up();
	fds = count_fds();
	cr_assert_eq(save_with(VS_STATE_CHECK_FAILS, 5000, 4096, &c, 0), -EIO);
	cr_assert_eq(c.got, 5000, "drained to EOF first");
	cr_assert(vhost_user_connected(&dev), "a refusal, not a broken connection");
	ev_down();
	cr_assert_eq(load_with(VS_STATE_CHECK_FAILS, &g, 0), -EIO);
	cr_assert_eq(atomic_load(&evil.loaded), 5000);
	ev_down();
	cr_assert_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, a_zero_length_state)
{
	struct check_sink c = { 0 };
	struct gen_source g = { .total = 0, .step = 1 };
	int fds;

	mem_up();
	fds = count_fds();
	cr_assert_eq(save_with(VS_STATE_OK, 0, 4096, &c, 0), 0);
	cr_assert_eq(c.calls, 0, "no chunk: the sink writes only the end marker");
	cr_assert_eq(atomic_load(&evil.checks), 1);
	ev_down();
	cr_assert_eq(load_with(VS_STATE_OK, &g, 0), 0);
	cr_assert_eq(atomic_load(&evil.loaded), 0);
	cr_assert(atomic_load(&evil.transfer_done), "the back-end saw EOF at once");
	cr_assert_eq(atomic_load(&evil.checks), 1);
	ev_down();
	cr_assert_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, ten_mib_move_in_chunks_never_held_whole)
{
	const size_t total = 10 * MIB;
	struct check_sink c = { 0 };
	struct gen_source g = { .total = total, .step = 65536 };
	int fds;

	mem_up();
	fds = count_fds();
	cr_assert_eq(save_with(VS_STATE_OK, total, 4096, &c, 0), 0);
	cr_assert(c.ok);
	cr_assert_eq(c.got, total);
	cr_assert_leq(c.max_seen, 4096, "never larger than the sink's max");
	cr_assert_geq(c.calls, total / 4096, "many chunks");
	cr_assert_lt(c.written_at_first, MIB,
		     "the first chunk reached the sink while the back-end was still writing "
		     "(%zu of %zu bytes): streamed, not buffered", c.written_at_first, total);
	ev_down();
	cr_assert_eq(count_fds(), fds);

	cr_assert_eq(load_with(VS_STATE_OK, &g, 0), 0);
	cr_assert_eq(atomic_load(&evil.loaded), total);
	cr_assert(atomic_load(&evil.loaded_ok));
	/* Each chunk given is written before the next is asked for: a pipe's worth behind at most. */
	cr_assert_leq(g.max_lag, 65536 + 65536 + 4096, "at most %zu bytes given and not yet read",
		      g.max_lag);
	ev_down();
	cr_assert_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, a_back_end_that_stalls_mid_state_times_out)
{
	struct check_sink c = { 0 };
	struct gen_source g = { .total = 4 * MIB, .step = 65536 };
	int64_t t0;
	int fds;

	mem_up();
	fds = count_fds();
	t0 = now_ms();
	cr_assert_eq(save_with(VS_STATE_STALL, 0, 65536, &c, 200), -ETIMEDOUT);
	cr_assert_lt(now_ms() - t0, 2000, "given up after ~200 ms of silence");
	cr_assert_eq(c.got, 65536, "the whole chunk before the stall reached the sink");
	cr_assert_eq(atomic_load(&evil.checks), 0, "no CHECK to a stuck back-end");
	ev_down();
	cr_assert_eq(count_fds(), fds);

	t0 = now_ms();
	cr_assert_eq(load_with(VS_STATE_STALL, &g, 200), -ETIMEDOUT);
	cr_assert_lt(now_ms() - t0, 2000);
	cr_assert_eq(atomic_load(&evil.checks), 0);
	ev_down();
	cr_assert_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, a_refused_transfer_sends_nothing_more)
{
	struct check_sink c = { 0 };
	struct gen_source g = { .total = 100, .step = 100 };
	int fds;

	mem_up();
	fds = count_fds();
	cr_assert_eq(save_with(VS_STATE_REFUSE, 100, 4096, &c, 0), -EIO);
	cr_assert_eq(c.calls, 0);
	cr_assert_eq(atomic_load(&evil.checks), 0);
	cr_assert(vhost_user_connected(&dev));
	ev_down();
	cr_assert_eq(load_with(VS_STATE_REFUSE, &g, 0), -EIO);
	cr_assert_eq(g.pos, 0, "nothing asked of the source");
	ev_down();
	cr_assert_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, garbage_replies_fail_without_leaks_or_hangs)
{
	static const struct { enum vs_state_fault f; int err; bool alive; } cases[] = {
		{ VS_STATE_SHORT_REPLY, -ENOTCONN, false },
		{ VS_STATE_NO_FD, -EPROTO, false },
		{ VS_STATE_ERROR_AND_FD, -EIO, true },
		{ VS_STATE_NOT_A_PIPE, -EPROTO, true },
		{ VS_STATE_BAD_CHECK, -ENOTCONN, false },
	};

	mem_up();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct check_sink c = { 0 };
		struct gen_source g = { .total = 100, .step = 100 };
		int fds = count_fds();
		int64_t t0 = now_ms();

		cr_expect_eq(save_with(cases[i].f, 100, 4096, &c, 0), cases[i].err, "save, fault %d",
			     cases[i].f);
		cr_expect_eq(vhost_user_connected(&dev), cases[i].alive, "fault %d", cases[i].f);
		ev_down();
		cr_expect_eq(count_fds(), fds, "save, fault %d leaves an fd open", cases[i].f);
		cr_expect_eq(load_with(cases[i].f, &g, 0), cases[i].err, "load, fault %d",
			     cases[i].f);
		ev_down();
		cr_expect_eq(count_fds(), fds, "load, fault %d leaves an fd open", cases[i].f);
		cr_expect_lt(now_ms() - t0, 3000, "fault %d: no waiting for a timeout", cases[i].f);
	}
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, a_failing_sink_or_source_still_ends_the_transfer)
{
	struct check_sink c = { .fail_after = 3 };
	struct gen_source g = { .total = MIB, .step = 4096, .fail_at = 20000 };
	int fds;

	mem_up();
	fds = count_fds();
	cr_assert_eq(save_with(VS_STATE_OK, MIB, 4096, &c, 0), -ENOSPC, "the sink's error");
	cr_assert_eq(atomic_load(&evil.checks), 1, "CHECK ends the back-end's transfer");
	cr_assert(atomic_load(&evil.transfer_done), "the back-end's writer saw the pipe close");
	ev_down();
	cr_assert_eq(load_with(VS_STATE_OK, &g, 0), -EBADMSG, "the source's error");
	cr_assert_eq(atomic_load(&evil.checks), 1);
	cr_assert_lt(atomic_load(&evil.loaded), MIB);
	ev_down();
	cr_assert_eq(count_fds(), fds);
	guest_mem_destroy(&mem);
}

Test(vhost_user_state, no_transfer_while_a_ring_runs_or_the_back_end_is_gone)
{
	struct virtq_state s = ring_state();
	struct virtio_call call = { .irq_fd = eventfd(0, EFD_CLOEXEC) };
	int kick = eventfd(0, EFD_CLOEXEC);
	struct mem_sink m = { 0 };
	struct virtio_state_sink sink = { mem_sink_chunk, &m, 4096 };
	struct mem_source ms = { (const uint8_t *)"x", 1, 0, 1 };
	struct virtio_state_source src = { mem_source_chunk, &ms };

	mem_up();
	ev_up(&migrating, 0);
	cr_assert_eq(dev.be.ops->set_features(&dev.be, BIT(32)), 0);
	cr_assert_eq(dev.be.ops->start(&dev.be, 0, &s, kick, &call), 0);
	cr_assert_eq(dev.be.ops->save_state(&dev.be, &sink), -EBUSY);
	cr_assert_eq(dev.be.ops->load_state(&dev.be, &src), -EBUSY);
	cr_assert_eq(ve_count(&evil, VHOST_USER_SET_DEVICE_STATE_FD), 0);
	dev.be.ops->stop(&dev.be, 0, &s);
	/* The back-end goes away: the transfer fails at once. */
	shutdown(evil.sock, SHUT_RDWR);
	for (int i = 0; i < 100 && !vhost_user_check_socket(&dev); i++)
		usleep(10000);
	cr_assert_eq(dev.be.ops->save_state(&dev.be, &sink), -ENOTCONN);
	cr_assert_eq(dev.be.ops->load_state(&dev.be, &src), -ENOTCONN);
	ev_down();
	close(kick);
	close(call.irq_fd);
	guest_mem_destroy(&mem);
}

/* ---- from a back-end with requests in flight into a fresh one ---- */

static struct vu_toy src_toy, dst_toy;

/* A device on the toy back-end: INFLIGHT_SHMFD area for 2 rings of QSIZE, as blk's. */
static void toy_dev(struct vhost_dev *d, struct vu_toy *t, const char *name)
{
	struct vhost_user_opts o = { .fd = -1, .inflight_queues = 2, .inflight_queue_size = QSIZE };
	void *conn;
	int be;

	fe_open(&o, &be, &conn);
	vt_start(t, be, 2);
	cr_assert_eq(vhost_dev_init(d, &vhost_user_ops, conn, &blk_ops, &mem, name, 2), 0);
	cr_assert(vhost_user_protocol_features(d) & BIT(VHOST_USER_PROTOCOL_F_DEVICE_STATE));
	cr_assert(vhost_user_protocol_features(d) & BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD));
}

Test(vhost_user_state, in_flight_requests_move_to_a_fresh_back_end)
{
	struct vhost_dev src, dst;
	struct virtq_state s = ring_state();
	struct virtio_call call = { .irq_fd = eventfd(0, EFD_CLOEXEC) };
	int kick = eventfd(0, EFD_CLOEXEC), fds;
	struct mem_sink saved = { 0 }, again = { 0 };
	struct virtio_state_sink sink = { mem_sink_chunk, &saved, 16 };
	struct vring_used *used;
	struct mem_source ms;
	struct virtio_state_source source = { mem_source_chunk, &ms };
	char why[128];

	mem_up();
	used = gpa(USED);
	fds = count_fds();
	toy_dev(&src, &src_toy, "source");
	pthread_mutex_lock(&src_toy.lock);
	src_toy.hold = 2;			/* the first two requests stay in flight */
	memcpy(src_toy.part, "device part", 11);
	src_toy.part_len = 11;
	pthread_mutex_unlock(&src_toy.lock);
	cr_assert_eq(src.be.ops->set_features(&src.be, BIT(32)), 0);
	cr_assert_eq(src.be.ops->start(&src.be, 0, &s, kick, &call), 0);
	add_chain(0, 0x10000, 64, true);
	add_chain(1, 0x11000, 64, true);
	add_chain(2, 0x12000, 64, true);
	eventfd_write(kick, 1);
	cr_assert(vt_wait_popped(&src_toy, 3, 5000));
	cr_assert(wait_used(1, 5000), "the third is answered");
	cr_assert_eq(used->ring[0].id, 2);

	/* The source pauses (GET_VRING_BASE), then saves. */
	src.be.ops->stop(&src.be, 0, &s);
	cr_assert_eq(s.last_avail_idx, 3, "three taken");
	cr_assert_eq(s.used_idx, 1, "one answered");
	cr_assert_eq(src.be.ops->migratable(&src.be, why, sizeof(why)), 0);
	cr_assert(src.be.ops->has_state(&src.be));
	cr_assert_eq(src.be.ops->save_state(&src.be, &sink), 0);
	cr_assert_gt(saved.len, 16, "the state came in several chunks");
	cr_assert_leq(saved.max_seen, 16);
	vhost_dev_fini(&src);
	vt_stop(&src_toy);

	/* The destination: a fresh back-end, the same guest RAM (migrated), features set. */
	toy_dev(&dst, &dst_toy, "destination");
	cr_assert_eq(dst.be.ops->set_features(&dst.be, BIT(32)), 0);
	ms = (struct mem_source){ saved.buf, saved.len, 0, 7 };
	cr_assert_eq(dst.be.ops->load_state(&dst.be, &source), 0);
	pthread_mutex_lock(&dst_toy.lock);
	cr_assert_eq(dst_toy.loaded_len, 11);
	cr_assert_eq(memcmp(dst_toy.loaded, "device part", 11), 0, "the device's own part");
	pthread_mutex_unlock(&dst_toy.lock);

	/* Loaded and not started: it saves exactly what it got (positions, in-flight heads). */
	sink.opaque = &again;
	sink.max = 4096;
	cr_assert_eq(dst.be.ops->save_state(&dst.be, &sink), 0);
	cr_assert_eq(again.len, saved.len);
	cr_assert_eq(memcmp(again.buf, saved.buf, saved.len), 0, "the same state on both sides");

	/* Started at the source's position, it answers the two in flight first, in order. */
	cr_assert_eq(dst.be.ops->start(&dst.be, 0, &s, kick, &call), 0);
	eventfd_write(kick, 1);
	cr_assert(vt_wait_popped(&dst_toy, 2, 5000));
	cr_assert(wait_used(3, 5000), "both resubmitted and answered (used %u)", used_idx());
	cr_assert_eq(used->ring[1].id, 0);
	cr_assert_eq(used->ring[2].id, 1);
	pthread_mutex_lock(&dst_toy.lock);
	cr_assert_eq(dst_toy.npopped, 2, "nothing else was in the ring");
	cr_assert_eq(dst_toy.popped[0], 0);
	cr_assert_eq(dst_toy.popped[1], 1);
	pthread_mutex_unlock(&dst_toy.lock);
	cr_assert_eq(*(uint8_t *)gpa(0x10000), 0xab, "the destination did the work");
	dst.be.ops->stop(&dst.be, 0, &s);
	cr_assert_eq(s.last_avail_idx, 3);
	vhost_dev_fini(&dst);
	vt_stop(&dst_toy);
	free(saved.buf);
	free(again.buf);
	cr_assert_eq(count_fds(), fds, "no fd left open");
	close(kick);
	close(call.irq_fd);
	guest_mem_destroy(&mem);
}

/* vmm-vhost-user-blk's device: its positions and its disk's identity move; another disk refuses. */
Test(vhost_user_state, blk_state_moves_and_a_different_disk_refuses_it)
{
	struct vhost_user_opts o = { .fd = -1, .inflight_queues = 1, .inflight_queue_size = QSIZE };
	struct virtq_state s = ring_state();
	struct virtio_call call = { .irq_fd = eventfd(0, EFD_CLOEXEC) };
	int kick = eventfd(0, EFD_CLOEXEC), be, fds;
	struct mem_sink saved = { 0 }, again = { 0 };
	struct virtio_state_sink sink = { mem_sink_chunk, &saved, 4096 };
	struct mem_source ms;
	struct virtio_state_source source = { mem_source_chunk, &ms };
	const uint64_t data = 4 * MIB;
	void *conn;

	mem_up();
	fds = count_fds();
	vs_init(&srv, 1);
	fe_open(&o, &be, &conn);
	vs_start_fd(&srv, be);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_ops, &mem, "src", 1), 0);
	cr_assert_eq(dev.be.ops->set_features(&dev.be, BIT(32)), 0);
	cr_assert_eq(dev.be.ops->start(&dev.be, 0, &s, kick, &call), 0);
	blk_read(0, 4, data);
	eventfd_write(kick, 1);
	cr_assert(wait_used(1, 5000));
	blk_read(3, 6, data + 512);	/* published, never kicked: waits for the destination */
	dev.be.ops->stop(&dev.be, 0, &s);
	cr_assert_eq(s.last_avail_idx, 1);
	cr_assert_eq(dev.be.ops->save_state(&dev.be, &sink), 0);
	vhost_dev_fini(&dev);
	vs_fini(&srv);

	/* A destination whose disk has two queues: the state is not for it. */
	vs_init(&srv, 2);
	fe_open(&o, &be, &conn);
	vs_start_fd(&srv, be);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_ops, &mem, "dst", 1), 0);
	ms = (struct mem_source){ saved.buf, saved.len, 0, 4096 };
	cr_assert_eq(dev.be.ops->load_state(&dev.be, &source), -EIO, "CHECK_DEVICE_STATE fails");
	vhost_dev_fini(&dev);
	vs_fini(&srv);

	/* The same disk: loaded (before SET_FEATURES, as QEMU does), then the queue resumes. */
	vs_init(&srv, 1);
	fe_open(&o, &be, &conn);
	vs_start_fd(&srv, be);
	cr_assert_eq(vhost_dev_init(&dev, &vhost_user_ops, conn, &blk_ops, &mem, "dst", 1), 0);
	ms = (struct mem_source){ saved.buf, saved.len, 0, 100 };
	cr_assert_eq(dev.be.ops->load_state(&dev.be, &source), 0);
	cr_assert_eq(dev.be.ops->set_features(&dev.be, BIT(32)), 0);
	sink.opaque = &again;
	cr_assert_eq(dev.be.ops->save_state(&dev.be, &sink), 0);
	cr_assert_eq(again.len, saved.len);
	cr_assert_eq(memcmp(again.buf, saved.buf, saved.len), 0, "the same state on both sides");
	cr_assert_eq(dev.be.ops->start(&dev.be, 0, &s, kick, &call), 0);
	eventfd_write(kick, 1);
	cr_assert(wait_used(2, 5000), "the request left for the destination is served");
	cr_assert_eq(*(uint8_t *)gpa(data + 512), 6);
	dev.be.ops->stop(&dev.be, 0, &s);
	cr_assert_eq(s.last_avail_idx, 2);
	vhost_dev_fini(&dev);
	vs_fini(&srv);
	free(saved.buf);
	free(again.buf);
	cr_assert_eq(count_fds(), fds, "no fd left open");
	close(kick);
	close(call.irq_fd);
	guest_mem_destroy(&mem);
}

/* ---- the announcement after a migration (vhost-user net) ---- */

static bool evil_saw(uint32_t request)
{
	unsigned int n = atomic_load(&evil.nreqs);

	if (n > VE_MAX_REQS)
		n = VE_MAX_REQS;

	for (unsigned int i = 0; i < n; i++)
		if (evil.reqs[i] == request)
			return true;
	return false;
}

Test(vhost_user_state, send_rarp_only_to_a_back_end_that_offers_it)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	struct vu_evil_opts rarp = { .extra_protocol = BIT(VHOST_USER_PROTOCOL_F_RARP) };

	mem_up();
	ev_up(NULL, 0);
	cr_assert_eq(dev.be.ops->announce(&dev.be, mac), -EOPNOTSUPP);
	ev_down();	/* the back-end has read every request once it is joined */
	cr_assert_not(evil_saw(VHOST_USER_SEND_RARP));

	ev_up(&rarp, 0);
	cr_assert(vhost_user_protocol_features(&dev) & BIT(VHOST_USER_PROTOCOL_F_RARP));
	cr_assert_eq(dev.be.ops->announce(&dev.be, mac), 0);
	ev_down();
	cr_assert(evil_saw(VHOST_USER_SEND_RARP));
	guest_mem_destroy(&mem);
}
