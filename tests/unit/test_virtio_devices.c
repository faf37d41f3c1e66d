// SPDX-License-Identifier: GPL-2.0-only
/*
 * The device table (virtio/devices.c): every kind creates through it and
 * comes back as a working transport, an unknown kind is refused, and each
 * constructor's failure is the -errno the VMM turns into an exit status
 * (-ENOMEM: resource; a bad option value: usage). Then the migration of the
 * devices whose queues run outside the VMM (vsock's transport-reset event,
 * virtio-fs's config), over a back-end that stands in for vhost.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <linux/virtio_vsock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_driver.h"
#include "virtio/devices.h"
#include "virtio/fs.h"
#include "virtio/vsock.h"
#include "vmm/base/util.h"

#define BASE	0xd0000000ULL
#define GSI	5

static char dir[64];
static char image[96];
static char log_path[96];

static void setup(void)
{
	int fd;

	fake_driver_init(64);
	snprintf(dir, sizeof(dir), "/tmp/vdev-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(image, sizeof(image), "%s/disk.img", dir);
	snprintf(log_path, sizeof(log_path), "%s/console.log", dir);
	fd = open(image, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
}

static void teardown(void)
{
	unlink(image);
	unlink(log_path);
	rmdir(dir);
	fake_driver_fini();
}

/* Creates a device of kind with options through the table; *out is NULL on failure. */
static int create(const char *kind, const void *options, struct virtio_mmio_dev **out)
{
	struct virtio_device_args a = {
		.host = &fake_host, .name = "virtio-test0", .base = BASE, .gsi = GSI,
		.options = options,
	};
	int ret = virtio_device_create(kind, &a, out);

	if (ret)
		cr_assert_null(*out, "%s: a failed constructor hands back nothing", kind);
	else
		cr_assert_not_null(*out);
	return ret;
}

TestSuite(virtio_devices, .init = setup, .fini = teardown);

Test(virtio_devices, table_lists_every_kind)
{
	static const char *const want[] = { "blk", "net", "rng", "console", "vsock", "fs" };
	const struct virtio_device_kind *k;
	unsigned int n;

	k = virtio_device_kinds(&n);
	cr_assert_eq(n, 6);
	for (unsigned int i = 0; i < n; i++) {
		cr_assert_str_eq(k[i].kind, want[i]);
		cr_assert_not_null(k[i].create);
		cr_assert_eq(virtio_device_kind_find(want[i]), &k[i]);
	}
	cr_assert_null(virtio_device_kind_find("gpu"));
	cr_assert_null(virtio_device_kind_find(NULL));
}

Test(virtio_devices, every_kind_creates_a_working_device)
{
	struct blk_options blk = { .path = image };
	struct console_options con = { .backend = CONSOLE_BACKEND_FILE, .path = log_path };
	struct net_options net = { .tap = "vmmtbl0" };
	static const struct {
		const char *kind;
		uint32_t id;
	} kinds[] = {
		{ "blk", VIRTIO_ID_BLOCK }, { "rng", VIRTIO_ID_RNG },
		{ "console", VIRTIO_ID_CONSOLE }, { "net", VIRTIO_ID_NET },
	};
	const void *opts[] = { &blk, NULL, &con, &net };

	for (unsigned int i = 0; i < 4; i++) {
		struct virtio_mmio_dev *d;
		int ret = create(kinds[i].kind, opts[i], &d);

		/* A tap needs /dev/net/tun and CAP_NET_ADMIN; net's own tests cover the rest. */
		if (i == 3 &&
		    (ret == -EPERM || ret == -EACCES || ret == -ENOENT || ret == -ENODEV)) {
			cr_log_warn("net: no tap here (%s); its constructor was reached",
				    strerror(-ret));
			continue;
		}
		cr_assert_eq(ret, 0, "%s: %s", kinds[i].kind, strerror(-ret));
		cr_assert_eq(drv_rd(d, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
		cr_assert_eq(drv_rd(d, VIRTIO_MMIO_DEVICE_ID), kinds[i].id, "%s", kinds[i].kind);
		cr_assert_eq(d->base, BASE);
		cr_assert_eq(d->gsi, GSI);
		cr_assert_not_null(d->backend, "%s has a back-end", kinds[i].kind);
		drv_start(d, 0);
		virtio_device_destroy(d);
	}
	virtio_device_destroy(NULL);
}

Test(virtio_devices, unknown_kind_is_refused)
{
	struct virtio_mmio_dev *d;

	cr_assert_eq(create("floppy", NULL, &d), -EINVAL);
	cr_assert_eq(create(NULL, NULL, &d), -EINVAL);
	cr_assert_eq(create("blk", NULL, &d), -EINVAL, "blk without its options");
}

Test(virtio_devices, constructor_errors_are_errnos)
{
	struct blk_options blk = { .path = "/nonexistent/disk.img" };
	struct console_options con = { .backend = CONSOLE_BACKEND_FILE, .path = "/nonexistent/x" };
	struct net_options net = { .tap = "" };
	struct virtio_mmio_dev *d;

	cr_assert_eq(create("blk", &blk, &d), -ENOENT, "missing disk file");
	blk.path = dir;
	cr_assert_eq(create("blk", &blk, &d), -EISDIR, "a directory");
	blk.path = image;
	blk.id = "an-id-longer-than-twenty-bytes";
	cr_assert_eq(create("blk", &blk, &d), -EINVAL, "bad id= value");
	blk.path = "";
	blk.id = NULL;
	cr_assert_eq(create("blk", &blk, &d), -EINVAL, "no path");
	cr_assert_eq(create("console", &con, &d), -ENOENT, "console file in a missing directory");
	con.path = NULL;
	cr_assert_eq(create("console", &con, &d), -EINVAL, "console file not named");
	con.backend = (enum console_backend)42;
	cr_assert_eq(create("console", &con, &d), -EINVAL, "unknown console back-end");
	cr_assert_eq(create("net", &net, &d), -EINVAL, "no tap name");
	net.tap = "a-name-much-too-long-for-linux";
	cr_assert_eq(create("net", &net, &d), -ENAMETOOLONG);
	net.tap = "vmmt0";
	net.vhost = NET_VHOST_ON;
	cr_assert_eq(create("net", &net, &d), -EOPNOTSUPP, "vhost=on on a host without an offload");
	cr_assert_eq(create("vsock", &(struct vsock_options){ .cid = 3 }, &d), -EOPNOTSUPP,
		     "vsock has no data path without vhost");
	cr_assert_eq(create("vsock", &(struct vsock_options){ .cid = 2 }, &d), -EINVAL, "the host's cid");
	cr_assert_eq(create("vsock", &(struct vsock_options){ .cid = 0xffffffffULL }, &d), -EINVAL);
}

Test(virtio_devices, second_writer_of_a_disk_is_refused)
{
	struct blk_options blk = { .path = image };
	struct virtio_mmio_dev *first, *d;

	cr_assert_eq(create("blk", &blk, &first), 0);
	cr_assert_eq(create("blk", &blk, &d), -EBUSY);
	virtio_device_destroy(first);
}

/* ---- migration of the devices whose queues a back-end outside the VMM runs ---- */


/* A back-end standing in for vhost-vsock or vhost-user: it takes the queues, does nothing. */
static uint64_t fk_features(struct virtio_backend *be)
{
	return ~0ULL;
}

static int fk_start(struct virtio_backend *be, unsigned int q, const struct virtq_state *s,
		    int kick_fd, struct virtio_call *call)
{
	return 0;
}

static void fk_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *s)
{
}

static void fk_destroy(struct virtio_backend *be)
{
	free(be);
}

static const struct virtio_backend_ops fk_ops = {
	.name = "fake-offload", .signals_irqfd = true, .features = fk_features,
	.start = fk_start, .stop = fk_stop, .destroy = fk_destroy,
};

static struct virtio_backend *fk_backend(void)
{
	struct virtio_backend *be = malloc(sizeof(*be));

	cr_assert_not_null(be);
	be->ops = &fk_ops;
	return be;
}

static struct virtio_vsock *vsock_at(uint64_t base, uint64_t cid)
{
	struct virtio_vsock *v;

	cr_assert_eq(virtio_vsock_create_with(&fake_host, &(struct vsock_options){ .cid = cid },
					      "virtio-vsock", base, GSI, fk_backend(), &v), 0);
	return v;
}

/* An event buffer of len bytes on the event queue, filled with 0xee; its gpa. */
static uint64_t event_buf(uint32_t len, uint16_t *head)
{
	uint64_t gpa = alloc_buf(len);

	memset(gpa_ptr(gpa), 0xee, len);
	*head = drv_add(VSOCK_EVENTQ, &(struct drv_seg){ gpa, len, true }, 1);
	return gpa;
}

static uint64_t config_cid(struct virtio_mmio_dev *d)
{
	uint64_t cid;

	virtio_mmio_io(d, VIRTIO_MMIO_CONFIG, (uint8_t *)&cid, 8, false);
	return le64toh(cid);
}

/* Moves src's state into a new vsock at another address with cid; returns it (src destroyed). */
static struct virtio_vsock *migrate_vsock(struct virtio_vsock *src, uint64_t cid, bool same_regs)
{
	struct drv_regs src_regs, dst_regs;
	struct virtio_vsock *dst = vsock_at(BASE + 0x1000, cid);
	struct sbuf w;

	drv_pause_save(&src->dev, &w);
	drv_read_all(&src->dev, &src_regs);
	drv_expect_truncations_refused(&dst->dev, &w);
	cr_assert_eq(drv_load(&dst->dev, w.data, w.len), 0);
	drv_read_all(&dst->dev, &dst_regs);
	if (same_regs)
		drv_expect_same_regs(&src_regs, &dst_regs);
	virtio_vsock_destroy(src);
	sbuf_free(&w);
	return dst;
}

Test(virtio_devices, vsock_sends_transport_reset_after_a_load)
{
	struct virtio_vsock *v = vsock_at(BASE, 3);
	struct virtio_vsock_event ev;
	uint16_t h[2];
	uint64_t gpa[2];
	uint32_t id, len;

	drv_start(&v->dev, 0);
	gpa[0] = event_buf(sizeof(ev), &h[0]);
	gpa[1] = event_buf(sizeof(ev), &h[1]);
	drv_kick(&v->dev, VSOCK_EVENTQ);
	cr_assert_not(drv_used(VSOCK_EVENTQ, &id, &len), "no event without a migration");

	v = migrate_vsock(v, 3, true);
	cr_assert_not(drv_used(VSOCK_EVENTQ, &id, &len), "not before the resume");
	drv_resume(&v->dev);
	cr_assert(drv_used(VSOCK_EVENTQ, &id, &len), "no transport-reset event");
	cr_assert_eq(id, h[0]);
	cr_assert_eq(len, sizeof(ev));
	memcpy(&ev, gpa_ptr(gpa[0]), sizeof(ev));
	cr_assert_eq(le32toh(ev.id), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	cr_assert_not(drv_used(VSOCK_EVENTQ, &id, &len), "one event only");
	cr_assert(drv_rd(&v->dev, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(*(uint8_t *)gpa_ptr(gpa[1]), 0xee, "the second buffer waits");
	/* A pause and resume later is no migration: no event. */
	pthread_mutex_lock(&v->dev.lock);
	virtio_mmio_pause(&v->dev);
	virtio_mmio_resume(&v->dev);
	pthread_mutex_unlock(&v->dev.lock);
	drv_run_kicks(&v->dev);
	cr_assert_not(drv_used(VSOCK_EVENTQ, &id, &len));
	/* A second migration sends a second one. */
	v = migrate_vsock(v, 3, true);
	drv_resume(&v->dev);
	cr_assert(drv_used(VSOCK_EVENTQ, &id, &len));
	cr_assert_eq(id, h[1]);
	virtio_vsock_destroy(v);
}

Test(virtio_devices, vsock_reset_waits_for_a_buffer_and_skips_short_ones)
{
	struct virtio_vsock *v = vsock_at(BASE, 3);
	struct virtio_vsock_event ev;
	uint16_t h[2];
	uint64_t gpa;
	uint32_t id, len;

	drv_start(&v->dev, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	v = migrate_vsock(v, 3, true);
	drv_resume(&v->dev);
	cr_assert_not(drv_used(VSOCK_EVENTQ, &id, &len));
	cr_assert(v->reset_pending, "owed until the driver gives a buffer");
	event_buf(2, &h[0]);		/* too short for the event */
	gpa = event_buf(64, &h[1]);
	drv_kick(&v->dev, VSOCK_EVENTQ);
	cr_assert(drv_used(VSOCK_EVENTQ, &id, &len));
	cr_assert_eq(id, h[0]);
	cr_assert_eq(len, 0, "a short buffer comes back unused");
	cr_assert(drv_used(VSOCK_EVENTQ, &id, &len));
	cr_assert_eq(id, h[1]);
	cr_assert_eq(len, sizeof(ev));
	memcpy(&ev, gpa_ptr(gpa), sizeof(ev));
	cr_assert_eq(le32toh(ev.id), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	cr_assert_not(v->reset_pending);
	virtio_vsock_destroy(v);
}

Test(virtio_devices, vsock_keeps_the_destinations_cid_and_a_reset_owes_nothing)
{
	struct virtio_vsock *v = vsock_at(BASE, 3);
	uint32_t id, len;
	uint16_t h;

	drv_start(&v->dev, 0);
	cr_assert_eq(config_cid(&v->dev), 3);
	v = migrate_vsock(v, 0x123456789ULL, false);
	cr_assert_eq(config_cid(&v->dev), 0x123456789ULL, "the driver reads this host's cid");
	drv_resume(&v->dev);
	cr_assert(v->reset_pending);
	drv_wr(&v->dev, VIRTIO_MMIO_STATUS, 0);	/* the driver starts over */
	cr_assert_not(v->reset_pending);
	drv_start(&v->dev, 0);
	event_buf(8, &h);
	drv_kick(&v->dev, VSOCK_EVENTQ);
	cr_assert_not(drv_used(VSOCK_EVENTQ, &id, &len));
	virtio_vsock_destroy(v);
}

Test(virtio_devices, vsock_event_marks_its_buffer_dirty)
{
	struct virtio_vsock *v = vsock_at(BASE, 3);
	struct dirty_log log;
	uint32_t id, len;
	uint64_t gpa;
	uint16_t h;

	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	drv_start(&v->dev, 0);
	gpa = event_buf(8, &h);
	v = migrate_vsock(v, 3, true);
	fake_driver_log_dirty(&log);
	drv_resume(&v->dev);
	cr_assert(drv_used(VSOCK_EVENTQ, &id, &len));
	cr_assert(drv_page_dirty(&log, gpa));
	cr_assert(drv_page_dirty(&log, drv_used_gpa(VSOCK_EVENTQ)));
	fake_driver_log_dirty(NULL);
	dirty_log_destroy(&log);
	virtio_vsock_destroy(v);
}

static struct virtio_fs *fs_at(uint64_t base, const char *tag, unsigned int queues)
{
	struct fs_options o = { .vhost_user = "/nonexistent", .tag = tag, .queues = queues };
	struct virtio_fs *f;

	cr_assert_eq(virtio_fs_create_with(&fake_host, &o, "virtio-fs", base, GSI, fk_backend(), &f),
		     0);
	return f;
}

Test(virtio_devices, fs_migrates_its_config_and_refuses_another_share)
{
	struct virtio_fs *src = fs_at(BASE, "share", 1), *other = fs_at(BASE + 0x1000, "other", 1);
	struct virtio_fs *same = fs_at(BASE + 0x2000, "share", 1), *wider = fs_at(BASE + 0x3000, "share", 2);
	struct drv_regs src_regs, dst_regs;
	struct sbuf w;

	drv_start(&src->dev, 0);
	drv_pause_save(&src->dev, &w);
	drv_read_all(&src->dev, &src_regs);
	cr_assert_eq(drv_load(&other->dev, w.data, w.len), -EINVAL, "another tag");
	cr_assert_eq(other->dev.status, 0);
	cr_assert_eq(memcmp(other->config.tag, "other", 5), 0, "its config space is put back");
	cr_assert_eq(drv_load(&wider->dev, w.data, w.len), -EINVAL, "more request queues");
	drv_expect_truncations_refused(&same->dev, &w);
	cr_assert_eq(drv_load(&same->dev, w.data, w.len), 0);
	drv_read_all(&same->dev, &dst_regs);
	drv_expect_same_regs(&src_regs, &dst_regs);
	cr_assert(same->dev.irq_direct);
	virtio_fs_destroy(src);
	virtio_fs_destroy(other);
	virtio_fs_destroy(same);
	virtio_fs_destroy(wider);
	sbuf_free(&w);
}
