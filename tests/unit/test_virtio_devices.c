// SPDX-License-Identifier: GPL-2.0-only
/*
 * The device table (virtio/devices.c): every kind creates through it and
 * comes back as a working transport, an unknown kind is refused, and each
 * constructor's failure is the -errno the VMM turns into an exit status
 * (-ENOMEM: resource; a bad option value: usage).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_driver.h"
#include "virtio/devices.h"

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
