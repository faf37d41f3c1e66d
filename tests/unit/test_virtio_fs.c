// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-fs (virtio/fs.h) whose vhost-user back-end dies, with the VMM's
 * front-end, the fake driver and a scripted back-end that takes requests and
 * never answers (as a virtiofsd killed mid-request): the guest's outstanding
 * FUSE requests and every new one get a -EIO reply carrying their unique, a
 * FORGET (no reply buffer) is just returned, the device needs a reset and a
 * save is refused.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <linux/fuse.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <sys/socket.h>

#include "tests/unit/fake_driver.h"
#include "tests/unit/vu_server.h"
#include "vhost/offload.h"
#include "virtio/fs.h"
#include "vmm/base/sbuf.h"

static struct virtio_fs *fs;

/* ve_start_listen's create: the share on the hostile back-end's socket. */
static int create_on(const char *path, void *arg)
{
	struct fs_options *o = arg;

	o->vhost_user = path;
	return virtio_fs_create(&fake_host, o, "virtio-fs0", 0x1000, 5, &fs);
}

/* Queues a FUSE request (opcode, unique) with a reply buffer of reply bytes (0: none). */
static uint64_t submit(unsigned int q, uint32_t opcode, uint64_t unique, uint32_t reply)
{
	uint64_t in = alloc_buf(sizeof(struct fuse_in_header)), out = reply ? alloc_buf(reply) : 0;
	struct fuse_in_header *h = gpa_ptr(in);
	struct drv_seg segs[2] = { { in, sizeof(*h), false }, { out, reply, true } };

	*h = (struct fuse_in_header){ .len = htole32(sizeof(*h)), .opcode = htole32(opcode),
				      .unique = htole64(unique) };
	if (reply)
		memset(gpa_ptr(out), 0xee, reply);
	drv_add(q, segs, reply ? 2 : 1);
	drv_kick(&fs->dev, q);
	return out;
}

static void expect_eio(uint64_t out, uint64_t unique, uint32_t len)
{
	const struct fuse_out_header *r = gpa_ptr(out);

	cr_expect_eq(len, sizeof(*r));
	cr_expect_eq(le32toh(r->len), sizeof(*r));
	cr_expect_eq((int32_t)le32toh((uint32_t)r->error), -EIO);
	cr_expect_eq(le64toh(r->unique), unique);
	cr_expect_eq(((uint8_t *)gpa_ptr(out))[sizeof(*r)], 0xee, "nothing past the header");
}

Test(virtio_fs, a_dead_back_end_fails_outstanding_and_new_requests_with_eio)
{
	struct fs_options o = { .tag = "share", .queues = 1 };
	struct vu_evil evil;
	uint64_t r1, r2, r3;
	uint32_t id, len, got[2] = { 0 };
	struct sbuf sb;

	fake_driver_init_shared(64);
	fake_host.offload = &vhost_offload;
	cr_assert_eq(ve_start_listen(&evil, VS_OK, create_on, &o), 0);
	drv_loop_start();
	drv_start(&fs->dev, 0);
	r1 = submit(1, FUSE_LOOKUP, 0x1111, 256);
	r2 = submit(1, FUSE_READ, 0x2222, 4096 + 16);
	submit(0, FUSE_FORGET, 0x3333, 0);
	cr_expect_not(drv_wait_used(1, &id, &len, 100), "the back-end answers nothing");

	/* It dies: both requests get -EIO, the FORGET comes back with nothing written. */
	shutdown(evil.sock, SHUT_RDWR);
	ve_join(&evil);
	for (int i = 0; i < 2; i++) {
		cr_assert(drv_wait_used(1, &id, &len, 5000), "request %d not answered", i + 1);
		got[i] = len;
	}
	cr_expect_eq(got[0], sizeof(struct fuse_out_header));
	cr_expect_eq(got[1], sizeof(struct fuse_out_header));
	expect_eio(r1, 0x1111, got[0]);
	expect_eio(r2, 0x2222, got[1]);
	cr_assert(drv_wait_used(0, &id, &len, 5000), "the FORGET was not returned");
	cr_expect_eq(len, 0);
	cr_expect(drv_rd(&fs->dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);

	/* A new request fails at once too. */
	r3 = submit(1, FUSE_GETATTR, 0x4444, 128);
	cr_assert(drv_wait_used(1, &id, &len, 5000), "a new request hangs");
	expect_eio(r3, 0x4444, len);

	/* The guest's open files died with the back-end: no migration. */
	sbuf_init_writer(&sb);
	pthread_mutex_lock(&fs->dev.lock);
	cr_expect_eq(fs->dev.ops->save(&fs->dev, &sb), -EBUSY);
	pthread_mutex_unlock(&fs->dev.lock);
	sbuf_free(&sb);
	drv_loop_stop();
	virtio_fs_destroy(fs);
	fs = NULL;
	fake_driver_fini();
}

/* The reply's shape, on its own: a FORGET (no reply buffer) and a reply buffer too short. */
Test(virtio_fs, the_eio_reply_needs_a_reply_buffer)
{
	struct fuse_in_header in = { .unique = htole64(7) };
	uint8_t small[8], big[32];
	struct virtq_chain c;

	host_chain(&c, (struct iovec[]){ { &in, sizeof(in) } }, 1, NULL, 0);
	cr_expect_eq(virtio_fs_fail_chain(&c), 0);
	host_chain(&c, (struct iovec[]){ { &in, sizeof(in) } }, 1,
		   (struct iovec[]){ { small, sizeof(small) } }, 1);
	cr_expect_eq(virtio_fs_fail_chain(&c), 0);
	host_chain(&c, (struct iovec[]){ { &in, sizeof(in) } }, 1,
		   (struct iovec[]){ { big, 10 }, { big + 10, 22 } }, 2);
	cr_expect_eq(virtio_fs_fail_chain(&c), sizeof(struct fuse_out_header));
	cr_expect_eq(((struct fuse_out_header *)big)->unique, htole64(7));
	cr_expect_eq((int32_t)le32toh((uint32_t)((struct fuse_out_header *)big)->error), -EIO);
}
