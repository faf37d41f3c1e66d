// SPDX-License-Identifier: GPL-2.0-only
/*
 * The fake host, devices and driver of fuzz_device_state and its seed
 * generator (see device_state_host.h).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "device_state_host.h"
#include "virtio/blk.h"
#include "virtio/blk_user.h"
#include "virtio/console.h"
#include "virtio/fs.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "vmm/base/dirty.h"
#include "vmm/base/event_loop.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/util.h"

#define BASE		0xd0000000ULL
#define GSI		5
#define DISK_SIZE	(1u << 20)
#define STUB_QUEUES	2	/* vhost-user-blk's queues on the stand-in */

static bool host_up;
static uint8_t *ram;
static struct guest_mem mem;
static struct event_loop loop;
static struct dirty_log dlog;
static struct virtio_host host;
static char disk_path[64];

/* ---- The stand-in for data paths outside the VMM (kernel vhost, vhost-user) ---- */

struct ds_stub {
	struct virtio_backend be;
	uint64_t features;
	bool refuse;		/* set_features fails (a back-end that cannot take the driver's) */
	bool started[VIRTIO_BACKEND_MAX_QUEUES];
	struct virtq_state st[VIRTIO_BACKEND_MAX_QUEUES];
	const struct virtio_backend_events *ev;
	void *opaque;
	struct virtio_blk_config config;	/* vhost-user-blk's GET_CONFIG */
};

static struct ds_stub *to_stub(struct virtio_backend *be)
{
	return container_of(be, struct ds_stub, be);
}

static uint64_t stub_features(struct virtio_backend *be)
{
	return to_stub(be)->features;
}

static int stub_set_features(struct virtio_backend *be, uint64_t features)
{
	return to_stub(be)->refuse ? -EOPNOTSUPP : 0;
}

static int stub_start(struct virtio_backend *be, unsigned int q, const struct virtq_state *state,
		      int kick_fd, struct virtio_call *call)
{
	struct ds_stub *s = to_stub(be);

	if (q >= VIRTIO_BACKEND_MAX_QUEUES || s->started[q])
		return -EBUSY;
	/* The transport hands over only ready queues whose rings are guest RAM. */
	if (!state->ready || virtq_check_rings(&mem, state) || kick_fd < 0 || !call)
		__builtin_trap();
	s->st[q] = *state;
	s->started[q] = true;
	return 0;
}

/*
 * Gives the position back as a back-end that served every chain the driver made
 * available would (GET_VRING_BASE after it published them): the avail index as
 * the ring holds it, whatever that is (a guest may have written anything there).
 */
static void stub_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *state)
{
	struct ds_stub *s = to_stub(be);
	struct virtq_state *st;
	struct vring_avail *avail;
	struct vring_used *used;

	if (q >= VIRTIO_BACKEND_MAX_QUEUES || !s->started[q])
		return;
	st = &s->st[q];
	avail = guest_mem_ptr(&mem, st->avail_gpa, 4);
	used = guest_mem_ptr(&mem, st->used_gpa, 4);
	if (avail && used) {
		uint16_t idx = le16toh(__atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE));

		st->used_idx = (uint16_t)(st->used_idx + (uint16_t)(idx - st->last_avail_idx));
		st->last_avail_idx = idx;
		__atomic_store_n(&used->idx, htole16(st->used_idx), __ATOMIC_RELEASE);
	}
	*state = *st;
	s->started[q] = false;
}

static void stub_destroy(struct virtio_backend *be)
{
	free(to_stub(be));
}

static int stub_get_config(struct virtio_backend *be, uint32_t offset, void *buf, uint32_t len)
{
	struct ds_stub *s = to_stub(be);

	if (offset > sizeof(s->config) || len > sizeof(s->config) - offset)
		return -EINVAL;
	memcpy(buf, (uint8_t *)&s->config + offset, len);
	return 0;
}

static int stub_set_config(struct virtio_backend *be, uint32_t offset, const void *buf,
			   uint32_t len)
{
	return 0;
}

static void stub_set_events(struct virtio_backend *be, const struct virtio_backend_events *ev,
			    void *opaque)
{
	to_stub(be)->ev = ev;
	to_stub(be)->opaque = opaque;
}

static const struct virtio_backend_ops stub_ops = {
	.name = "stand-in",
	.signals_irqfd = true,	/* as kernel vhost and vhost-user */
	.features = stub_features,
	.set_features = stub_set_features,
	.start = stub_start,
	.stop = stub_stop,
	.destroy = stub_destroy,
	.get_config = stub_get_config,
	.set_config = stub_set_config,
	.set_events = stub_set_events,
};

#define RING_FEATURES \
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
	 (1ULL << VIRTIO_RING_F_EVENT_IDX))

static struct ds_stub *stub_new(uint64_t device_bits, bool refuse)
{
	struct ds_stub *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->be.ops = &stub_ops;
	s->features = device_bits | RING_FEATURES;
	s->refuse = refuse;
	return s;
}

/* host->offload.user: a vhost-user-blk back-end with a 1 MiB disk and two queues. */
static int stub_offload_user(const struct virtio_offload *o, const struct guest_mem *m,
			     const char *name, struct event_loop *l, struct virtio_offload_user *u,
			     struct virtio_backend **out, char *why, size_t whylen)
{
	struct ds_stub *s = stub_new((1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
				     (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_MQ) |
				     (1ULL << VIRTIO_BLK_F_CONFIG_WCE), false);

	if (!s)
		return -ENOMEM;
	s->config.capacity = htole64(DISK_SIZE / 512);
	s->config.seg_max = htole32(126);
	s->config.blk_size = htole32(512);
	s->config.num_queues = htole16(STUB_QUEUES);
	u->queues = MIN((unsigned int)STUB_QUEUES, u->max_queues);
	*out = &s->be;
	return 0;
}

static const struct virtio_offload stub_offload = { .user = stub_offload_user };

/* ---- The host ---- */

static int fake_ioeventfd(struct virtio_host *h, uint64_t addr, uint32_t datamatch, int fd,
			  bool assign)
{
	return 0;
}

static int fake_irqfd(struct virtio_host *h, uint32_t gsi, int fd, bool assign)
{
	return 0;
}

void ds_host_init(void)
{
	int fd;

	if (host_up)
		return;
	ram = aligned_alloc(4096, DS_RAM_SIZE);
	if (!ram || event_loop_init(&loop) || dirty_log_init(&dlog, DS_RAM_SIZE))
		abort();
	memset(ram, 0, DS_RAM_SIZE);
	guest_mem_init_from_buffer(&mem, ram, 0, DS_RAM_SIZE);
	/*
	 * vhost-user-blk asks for RAM another process could map (mem.fd >= 0); the
	 * stand-in maps nothing, so any fd will do.
	 */
	mem.fd = memfd_create("ds-ram", MFD_CLOEXEC);
	if (mem.fd < 0)
		abort();
	host = (struct virtio_host){
		.mem = &mem, .loop = &loop, .ioeventfd = fake_ioeventfd, .irqfd = fake_irqfd,
		.offload = &stub_offload,
	};

	/* The disk: an unlinked file, opened by the devices through /proc (nothing left behind). */
	fd = open(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		char tmpl[] = "/tmp/vmm-fuzz-disk-XXXXXX";

		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd < 0)
			abort();
		unlink(tmpl);
	}
	if (ftruncate(fd, DISK_SIZE))
		abort();
	snprintf(disk_path, sizeof(disk_path), "/proc/self/fd/%d", fd);
	host_up = true;
}

void ds_ram_clear(void)
{
	memset(ram, 0, DS_RAM_SIZE);
}

void *ds_gpa(uint64_t gpa, uint64_t len)
{
	return guest_mem_ptr(&mem, gpa, len);
}

void ds_log_dirty(bool on)
{
	guest_mem_set_dirty_log(&mem, on ? &dlog : NULL);
}

/* ---- Devices ---- */

static void serial_set_irq(void *opaque, bool level)
{
}

static void serial_tx(void *opaque, uint8_t byte)
{
}

static void serial_rx_space(void *opaque)
{
}

static const struct serial_ops ds_serial_ops = {
	.set_irq = serial_set_irq,
	.tx = serial_tx,
	.rx_space = serial_rx_space,
};

static int create_net(struct ds_dev *x)
{
	struct net_options o = { .mac = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }, .mac_set = true,
				 .vhost = NET_VHOST_OFF };
	struct virtio_net *n;
	int sv[2], ret;

	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		return -errno;
	ret = virtio_net_create_fd(&host, &o, "virtio-net0", BASE, GSI, sv[0], false, NULL, &n);
	if (ret) {
		close(sv[1]);
		return ret;
	}
	x->peer = sv[1];
	x->d = &n->dev;
	return 0;
}

static int create_blk(struct ds_dev *x)
{
	bool alt = x->flags & DS_F_ALT;
	struct blk_options o = { .path = disk_path, .readonly = alt, .id = "fuzz-disk" };
	struct virtio_blk *b = calloc(1, sizeof(*b));
	int ret;

	if (!b)
		return -ENOMEM;
	ret = virtio_blk_init(b, &o, "virtio-blk0");
	if (ret) {
		free(b);
		return ret;
	}
	b->io_kind = alt ? BLK_IO_SYNC : BLK_IO_AUTO;
	ret = virtio_blk_attach(b, &host, BASE, GSI);
	if (ret) {
		virtio_blk_destroy(b);
		return ret;
	}
	x->d = &b->dev;
	return 0;
}

int ds_create(struct ds_dev *x, uint8_t first)
{
	bool alt = first & DS_F_ALT;
	int ret = 0;

	ds_host_init();
	*x = (struct ds_dev){ .kind = ds_kind_of(first), .flags = first & ~7, .peer = -1 };
	switch (x->kind) {
	case DS_RNG: {
		struct virtio_rng *r;

		ret = virtio_rng_create(&host, "virtio-rng0", BASE, GSI, &r);
		if (!ret)
			x->d = &r->dev;
		break;
	}
	case DS_NET:
		ret = create_net(x);
		break;
	case DS_CONSOLE: {
		struct console_options o = { .backend = CONSOLE_BACKEND_FILE, .path = "/dev/null" };
		struct virtio_console *c;

		ret = virtio_console_create(&host, &o, "virtio-console0", BASE, GSI, &c);
		if (!ret)
			x->d = &c->dev;
		break;
	}
	case DS_BLK:
		ret = create_blk(x);
		break;
	case DS_VSOCK: {
		struct vsock_options o = { .cid = 3 };
		struct virtio_vsock *v;

		x->stub = stub_new(0, alt);
		if (!x->stub)
			return -ENOMEM;
		ret = virtio_vsock_create_with(&host, &o, "virtio-vsock0", BASE, GSI, &x->stub->be, &v);
		if (!ret)
			x->d = &v->dev;
		break;
	}
	case DS_FS: {
		struct fs_options o = { .vhost_user = "/nonexistent", .tag = "fuzzfs", .queues = 2 };
		struct virtio_fs *f;

		x->stub = stub_new(0, alt);
		if (!x->stub)
			return -ENOMEM;
		ret = virtio_fs_create_with(&host, &o, "virtio-fs0", BASE, GSI, &x->stub->be, &f);
		if (!ret)
			x->d = &f->dev;
		break;
	}
	case DS_BLK_USER: {
		struct blk_options o = { .vhost_user = "/nonexistent" };

		ret = blk_user_create(&host, &o, "vhost-user-blk0", BASE, GSI, &x->d);
		if (!ret)
			x->stub = to_stub(x->d->backend);
		break;
	}
	case DS_SERIAL:
		serial_init(&x->serial, &ds_serial_ops, x);
		break;
	default:
		return -EINVAL;
	}
	if (ret)
		x->stub = NULL;	/* the device freed it */
	return ret;
}

void ds_destroy(struct ds_dev *x)
{
	if (x->kind == DS_SERIAL)
		serial_destroy(&x->serial);
	else if (x->d)
		x->d->ops->destroy(x->d);
	if (x->peer >= 0)
		close(x->peer);
	x->d = NULL;
	x->stub = NULL;
	x->peer = -1;
}

int ds_save(struct ds_dev *x, struct sbuf *w)
{
	int ret;

	if (x->kind == DS_SERIAL)
		return serial_save(&x->serial, w);
	pthread_mutex_lock(&x->d->lock);
	virtio_mmio_pause(x->d);
	ret = virtio_mmio_save(x->d, w);
	pthread_mutex_unlock(&x->d->lock);
	return ret;
}

int ds_load(struct ds_dev *x, const void *data, size_t len)
{
	struct sbuf r;
	int ret;

	sbuf_init_reader(&r, data, len);
	if (x->kind == DS_SERIAL)
		return serial_load(&x->serial, &r);
	pthread_mutex_lock(&x->d->lock);
	ret = virtio_mmio_load(x->d, &r);
	pthread_mutex_unlock(&x->d->lock);
	return ret;
}

void ds_resume(struct ds_dev *x)
{
	if (x->kind == DS_SERIAL)
		return;
	pthread_mutex_lock(&x->d->lock);
	virtio_mmio_resume(x->d);
	pthread_mutex_unlock(&x->d->lock);
}

void ds_backend_gone(struct ds_dev *x)
{
	if (x->stub && x->stub->ev && x->stub->ev->disconnected)
		x->stub->ev->disconnected(x->stub->opaque, "the stand-in back-end went away");
}

void ds_run_loop(int rounds)
{
	struct epoll_event evs[32];

	while (rounds-- > 0) {
		int n = epoll_wait(loop.epfd, evs, 32, 0);

		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			struct event_source *src = evs[i].data.ptr;

			if (src)
				src->fn(src, evs[i].events);
		}
	}
}

/* ---- The driver ---- */

uint32_t ds_rd(struct virtio_mmio_dev *d, uint64_t off)
{
	uint32_t v = 0;

	virtio_mmio_io(d, off, (uint8_t *)&v, 4, false);
	return le32toh(v);
}

void ds_wr(struct virtio_mmio_dev *d, uint64_t off, uint32_t v)
{
	v = htole32(v);
	virtio_mmio_io(d, off, (uint8_t *)&v, 4, true);
}

bool ds_driver_start(struct virtio_mmio_dev *d, uint64_t features)
{
	uint32_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	uint64_t offered;

	ds_wr(d, VIRTIO_MMIO_STATUS, 0);
	ds_wr(d, VIRTIO_MMIO_STATUS, s);
	ds_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	offered = ds_rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	ds_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered |= (uint64_t)ds_rd(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	features = (features | (1ULL << VIRTIO_F_VERSION_1)) & offered;
	ds_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	ds_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	ds_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	ds_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	s |= VIRTIO_CONFIG_S_FEATURES_OK;
	ds_wr(d, VIRTIO_MMIO_STATUS, s);
	for (unsigned int q = 0; q < d->ops->nqueues; q++) {
		uint64_t desc = DS_RING_GPA(q), avail, used = desc + DS_USED_OFF;
		uint32_t size;

		ds_wr(d, VIRTIO_MMIO_QUEUE_SEL, q);
		size = ds_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
		avail = desc + 16ULL * size;
		memset(ds_gpa(desc, 0x10000), 0, 0x10000);
		ds_wr(d, VIRTIO_MMIO_QUEUE_NUM, size);
		ds_wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
		ds_wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		ds_wr(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
		ds_wr(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
		ds_wr(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
		ds_wr(d, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
		ds_wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	ds_wr(d, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
	ds_run_loop(8);
	return virtio_mmio_is_active(d);
}

/* The rings of d->queues[q] in guest RAM; false if they are not usable. */
static bool rings_of(struct virtio_mmio_dev *d, unsigned int q, struct vring_desc **desc,
		     struct vring_avail **avail, struct vring_used **used)
{
	const struct virtq_state *s = &d->queues[q];

	if (q >= d->ops->nqueues || !s->size || (s->size & (s->size - 1)))
		return false;
	*desc = ds_gpa(s->desc_gpa, 16ULL * s->size);
	*avail = ds_gpa(s->avail_gpa, 6 + 2ULL * s->size);
	*used = ds_gpa(s->used_gpa, 6 + 8ULL * s->size);
	return *desc && *avail && *used && !((uintptr_t)*desc % 16) && !((uintptr_t)*avail % 2) &&
	       !((uintptr_t)*used % 4);
}

void ds_offer(struct virtio_mmio_dev *d, unsigned int q, unsigned int n, uint32_t type)
{
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t size = d->queues[q].size, idx;

	if (!rings_of(d, q, &desc, &avail, &used))
		return;
	idx = le16toh(__atomic_load_n(&avail->idx, __ATOMIC_RELAXED));
	for (unsigned int i = 0; i < n; i++, idx++) {
		uint64_t buf = DS_BUF_GPA(q, idx);
		struct virtio_blk_outhdr hdr = { .type = htole32(type), .sector = htole64(idx % 2048) };
		uint16_t head = (uint16_t)((idx * 2u) % size), next = (uint16_t)((head + 1) % size);

		memcpy(ds_gpa(buf, sizeof(hdr)), &hdr, sizeof(hdr));
		if (size == 1) {
			/* No room for two descriptors: a writable buffer alone. */
			desc[0] = (struct vring_desc){ .addr = htole64(buf + 16),
						       .len = htole32(DS_CHAIN_IN),
						       .flags = htole16(VRING_DESC_F_WRITE) };
		} else {
			desc[head] = (struct vring_desc){ .addr = htole64(buf), .len = htole32(16),
							  .flags = htole16(VRING_DESC_F_NEXT),
							  .next = htole16(next) };
			desc[next] = (struct vring_desc){ .addr = htole64(buf + 16),
							  .len = htole32(DS_CHAIN_IN),
							  .flags = htole16(VRING_DESC_F_WRITE) };
		}
		avail->ring[idx % size] = htole16(head);
	}
	__atomic_store_n(&avail->idx, htole16(idx), __ATOMIC_RELEASE);
}

void ds_set_ring_idx(struct virtio_mmio_dev *d, unsigned int q, uint16_t avail_idx,
		     uint16_t used_idx)
{
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;

	if (!rings_of(d, q, &desc, &avail, &used))
		return;
	__atomic_store_n(&avail->idx, htole16(avail_idx), __ATOMIC_RELEASE);
	__atomic_store_n(&used->idx, htole16(used_idx), __ATOMIC_RELEASE);
}

void ds_kick(struct virtio_mmio_dev *d, unsigned int q)
{
	ds_wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, q);
	ds_run_loop(8);
}

bool ds_wait_used(struct virtio_mmio_dev *d, unsigned int q, uint16_t want, int ms)
{
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;

	if (!rings_of(d, q, &desc, &avail, &used))
		return false;
	for (int t = 0; t <= ms; t++) {
		ds_run_loop(4);
		if (le16toh(__atomic_load_n(&used->idx, __ATOMIC_ACQUIRE)) == want)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return false;
}

bool ds_settle(struct virtio_mmio_dev *d, int ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		bool settled = true;

		ds_run_loop(4);
		if (!virtio_mmio_is_active(d))
			return true;
		for (unsigned int q = 0; q < d->ops->nqueues && settled; q++) {
			struct vring_desc *desc;
			struct vring_avail *avail;
			struct vring_used *used;

			if (d->queues[q].ready && rings_of(d, q, &desc, &avail, &used))
				settled = __atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE) ==
					  __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE);
		}
		if (settled)
			return true;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >= ms)
			return false;
		nanosleep(&(struct timespec){ .tv_nsec = 100000 }, NULL);
	}
}
