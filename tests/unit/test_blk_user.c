// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-blk over a vhost-user back-end (virtio/blk_user.h) with the VMM's
 * front-end and the fake driver: I/O through vmm-vhost-user-blk's device on a
 * thread, config space from the back-end and its resize, guest RAM that is
 * not shared refused (by the vhost-user offload), a back-end that dies (the guest's outstanding and new
 * requests fail with IOERR, DEVICE_NEEDS_RESET), one that comes back
 * (reconnect=: the device resumes, requests succeed), and the model's part of
 * a migration (the same disk on the destination's back-end, or a refusal).
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/unit/fake_driver.h"
#include "tests/unit/vu_server.h"
#include "vhost/offload.h"
#include "virtio/blk_user.h"

static struct vu_server srv;
static struct virtio_mmio_dev *d;

static uint32_t status(void)
{
	return drv_rd(d, VIRTIO_MMIO_STATUS);
}

/* Submits a read of sector into a fresh buffer; returns the status byte's gpa. */
static uint64_t submit_read(uint64_t sector, uint64_t *data)
{
	uint64_t hdr = alloc_buf(16), st = alloc_buf(1);
	struct virtio_blk_outhdr *h = gpa_ptr(hdr);

	*data = alloc_buf(512);
	h->type = htole32(VIRTIO_BLK_T_IN);
	h->sector = htole64(sector);
	*(uint8_t *)gpa_ptr(st) = 0xff;
	drv_add(0, (struct drv_seg[]){ { hdr, 16, false }, { *data, 512, true }, { st, 1, true } },
		3);
	drv_kick(d, 0);
	return st;
}

static void setup(struct blk_options *o)
{
	signal(SIGPIPE, SIG_IGN);
	fake_driver_init_shared(64);
	fake_host.offload = &vhost_offload;
	cr_assert_eq(blk_user_create(&fake_host, o, "vublk0", 0x1000, 5, &d), 0);
}

Test(blk_user, reads_through_the_back_end_with_its_config)
{
	struct blk_options o = { 0 };
	uint64_t st, data;
	uint32_t id, len;

	vs_init(&srv, 2);
	vs_start_listen(&srv);
	o.vhost_user = srv.path;
	setup(&o);
	drv_loop_start();
	/* Capacity from GET_CONFIG; two queues (MQ). */
	cr_expect_eq(drv_rd(d, VIRTIO_MMIO_CONFIG) |
		     ((uint64_t)drv_rd(d, VIRTIO_MMIO_CONFIG + 4) << 32), VS_IMG_SIZE / 512);
	cr_expect_eq(d->ops->nqueues, 2);
	cr_expect(drv_device_features(d) & (1ULL << VIRTIO_BLK_F_FLUSH));
	drv_start(d, 1ULL << VIRTIO_BLK_F_FLUSH);
	st = submit_read(9, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	cr_expect_eq(*(uint8_t *)gpa_ptr(data + 100), 9);
	/* A resize of the image reaches the guest's config space. */
	uint32_t gen = drv_rd(d, VIRTIO_MMIO_CONFIG_GENERATION);

	cr_assert_eq(truncate(srv.img, 2 * VS_IMG_SIZE), 0);
	cr_assert_eq(vu_blk_resize(&srv.b), 1);
	for (int i = 0; i < 200 && drv_rd(d, VIRTIO_MMIO_CONFIG_GENERATION) == gen; i++)
		usleep(10000);
	cr_expect_eq(drv_rd(d, VIRTIO_MMIO_CONFIG), 2 * VS_IMG_SIZE / 512);
	cr_expect(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	drv_loop_stop();
	d->ops->destroy(d);
	vs_fini(&srv);
	fake_driver_fini();
}

/* The offload (vhost/user.c) refuses private RAM before it connects to a listening back-end. */
Test(blk_user, guest_ram_not_shared_is_refused)
{
	struct blk_options o = { 0 };

	signal(SIGPIPE, SIG_IGN);
	vs_init(&srv, 1);
	vs_start_listen(&srv);
	o.vhost_user = srv.path;
	fake_driver_init(64);
	fake_host.offload = &vhost_offload;
	cr_expect_eq(blk_user_create(&fake_host, &o, "vublk0", 0x1000, 5, &d), -EINVAL);
	cr_expect_null(d);
	usleep(20000);
	cr_expect_eq(atomic_load(&srv.connections), 0, "nothing was connected");
	vs_fini(&srv);
	fake_driver_fini();
}

Test(blk_user, nobody_listening_is_an_error)
{
	struct blk_options o = { .vhost_user = "/nonexistent/vu.sock" };

	fake_driver_init_shared(64);
	fake_host.offload = &vhost_offload;
	cr_expect_eq(blk_user_create(&fake_host, &o, "vublk0", 0x1000, 5, &d), -ENOENT);
	fake_driver_fini();
}

/* ve_start_listen's create: the disk on the hostile back-end's socket. */
static int create_on(const char *path, void *arg)
{
	struct blk_options *o = arg;

	o->vhost_user = path;
	return blk_user_create(&fake_host, o, "vublk0", 0x1000, 5, &d);
}

/* The hostile back-end on a listening socket acks the set-up and then serves nothing. */
static void evil_setup(struct vu_evil *evil, struct blk_options *o)
{
	fake_driver_init_shared(64);
	fake_host.offload = &vhost_offload;
	cr_assert_eq(ve_start_listen(evil, VS_OK, create_on, o), 0);
}

Test(blk_user, a_dead_back_end_fails_outstanding_and_new_requests)
{
	struct blk_options o = { 0 };
	struct vu_evil evil;
	uint64_t st1, st2, st3, data;
	uint32_t id, len;

	/* The hostile back-end acks everything and serves nothing: requests stay outstanding. */
	evil_setup(&evil, &o);
	drv_loop_start();
	drv_start(d, 0);
	st1 = submit_read(1, &data);
	st2 = submit_read(2, &data);
	cr_expect_not(drv_wait_used(0, &id, &len, 100));
	/* The back-end dies: the VMM finishes both with IOERR and marks the device. */
	shutdown(evil.sock, SHUT_RDWR);
	ve_join(&evil);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st1), VIRTIO_BLK_S_IOERR);
	cr_expect_eq(*(uint8_t *)gpa_ptr(st2), VIRTIO_BLK_S_IOERR);
	cr_expect(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* A new request fails too, instead of hanging. */
	st3 = submit_read(3, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st3), VIRTIO_BLK_S_IOERR);
	drv_loop_stop();
	d->ops->destroy(d);
	fake_driver_fini();
}

Test(blk_user, reconnect_resumes_the_device)
{
	struct blk_options o = { .reconnect = 5 };
	uint64_t st, data, irqs_before;
	uint32_t id, len;

	vs_init(&srv, 1);
	vs_start_listen(&srv);
	o.vhost_user = srv.path;
	setup(&o);
	drv_loop_start();
	drv_start(d, 0);
	st = submit_read(4, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	/* The back-end drops the connection and takes the next one. */
	irqs_before = d->interrupts;
	atomic_store(&srv.die, true);
	for (int i = 0; i < 300 && atomic_load(&srv.connections) < 2; i++)
		usleep(10000);
	cr_assert_eq(atomic_load(&srv.connections), 2);
	/*
	 * The driver hears from the device once it is back, in case the dead back-end
	 * published completions without signalling them.
	 */
	for (int i = 0; i < 300 && !(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING) ; i++)
		usleep(10000);
	cr_expect_gt(d->interrupts, irqs_before);
	usleep(100000);
	st = submit_read(6, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	cr_expect_eq(*(uint8_t *)gpa_ptr(data), 6);
	cr_expect_not(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
	drv_loop_stop();
	d->ops->destroy(d);
	vs_fini(&srv);
	fake_driver_fini();
}

/*
 * A spy on the device's back-end (the vhost-user front-end's ops, forwarded):
 * counts the queues it is handed, and lets a test keep the back-end "away"
 * (reconnect attempts fail) while the VM is paused or resumed.
 */
static struct virtio_backend_ops spy_ops;
static const struct virtio_backend_ops *real_ops;
static atomic_int spy_starts, spy_reconnect_tries, spy_reconnects;
static atomic_bool spy_hold_reconnect;

static int spy_start(struct virtio_backend *be, unsigned int q, const struct virtq_state *state,
		     int kick_fd, struct virtio_call *call)
{
	atomic_fetch_add(&spy_starts, 1);
	return real_ops->start(be, q, state, kick_fd, call);
}

static int spy_reconnect(struct virtio_backend *be)
{
	int ret;

	atomic_fetch_add(&spy_reconnect_tries, 1);
	if (atomic_load(&spy_hold_reconnect))
		return -ECONNREFUSED;
	ret = real_ops->reconnect(be);
	if (!ret)
		atomic_fetch_add(&spy_reconnects, 1);
	return ret;
}

static void spy_install(void)
{
	real_ops = d->backend->ops;
	spy_ops = *real_ops;
	spy_ops.start = spy_start;
	spy_ops.reconnect = spy_reconnect;
	atomic_store(&spy_starts, 0);
	atomic_store(&spy_reconnect_tries, 0);
	atomic_store(&spy_reconnects, 0);
	atomic_store(&spy_hold_reconnect, false);
	d->backend->ops = &spy_ops;
}

/* What vm_pause / vm_resume do to each device. */
static void vm_pause_dev(void)
{
	pthread_mutex_lock(&d->lock);
	virtio_mmio_pause(d);
	pthread_mutex_unlock(&d->lock);
}

static void vm_resume_dev(void)
{
	pthread_mutex_lock(&d->lock);
	virtio_mmio_resume(d);
	pthread_mutex_unlock(&d->lock);
}

static bool dev_running(void)
{
	bool r;

	pthread_mutex_lock(&d->lock);
	r = d->running;
	pthread_mutex_unlock(&d->lock);
	return r;
}

static uint64_t dev_interrupts(void)
{
	uint64_t n;

	pthread_mutex_lock(&d->lock);
	n = d->interrupts;
	pthread_mutex_unlock(&d->lock);
	return n;
}

static bool wait_for(atomic_int *v, int at_least)
{
	for (int i = 0; i < 500 && atomic_load(v) < at_least; i++)
		usleep(10000);
	return atomic_load(v) >= at_least;
}

/*
 * The back-end reconnects while the VM is paused (vm.pause, a migration's
 * stop-and-copy): the queues stay stopped — nothing is started, a request the
 * guest made available is not served, no interrupt — until the VM resumes;
 * then the queue starts exactly once and the request completes.
 */
Test(blk_user, a_reconnect_while_the_vm_is_paused_waits_for_the_resume)
{
	struct blk_options o = { .reconnect = 5 };
	uint64_t st, data, irqs;
	uint32_t id, len;

	vs_init(&srv, 1);
	vs_start_listen(&srv);
	o.vhost_user = srv.path;
	setup(&o);
	drv_loop_start();
	drv_start(d, 0);
	st = submit_read(4, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	spy_install();

	vm_pause_dev();
	cr_assert_not(dev_running());
	irqs = dev_interrupts();
	/* The back-end drops the connection and takes the next one: the VMM reconnects. */
	atomic_store(&srv.die, true);
	cr_assert(wait_for(&srv.connections, 2));
	cr_assert(wait_for(&spy_reconnects, 1), "the VMM reconnected");
	/* A request the guest left before the pause is not served while the VM is paused. */
	st = submit_read(6, &data);
	cr_expect_not(drv_wait_used(0, &id, &len, 500), "served while the VM is paused");
	cr_expect_eq(atomic_load(&spy_starts), 0, "a queue started while the VM is paused");
	cr_expect_not(dev_running());
	cr_expect_eq(dev_interrupts(), irqs, "an interrupt while the VM is paused");

	/* The VM's resume starts the queue, once, and the request is served. */
	vm_resume_dev();
	cr_expect(dev_running());
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	cr_expect_eq(*(uint8_t *)gpa_ptr(data), 6);
	cr_expect_gt(dev_interrupts(), irqs, "the interrupt owed after a reconnect, at the resume");
	usleep(500000);	/* two more reconnect timer periods: nothing more happens */
	cr_expect_eq(atomic_load(&spy_starts), 1, "the queue starts exactly once");
	cr_expect_eq(atomic_load(&spy_reconnects), 1);
	cr_expect_not(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
	drv_loop_stop();
	d->ops->destroy(d);
	vs_fini(&srv);
	fake_driver_fini();
}

/*
 * The converse: the VM is resumed while the back-end is still away. The queues
 * stay with the absent back-end (not started on a dead connection, which would
 * break the device) and start once it is back.
 */
Test(blk_user, a_vm_resumed_while_the_back_end_is_away_waits_for_it)
{
	struct blk_options o = { .reconnect = 5 };
	uint64_t st, data;
	uint32_t id, len;
	int tries;

	vs_init(&srv, 1);
	vs_start_listen(&srv);
	o.vhost_user = srv.path;
	setup(&o);
	drv_loop_start();
	drv_start(d, 0);
	spy_install();
	atomic_store(&spy_hold_reconnect, true);

	vm_pause_dev();
	atomic_store(&srv.die, true);
	cr_assert(wait_for(&spy_reconnect_tries, 1), "the VMM noticed the death");
	vm_resume_dev();
	st = submit_read(7, &data);
	tries = atomic_load(&spy_reconnect_tries);
	cr_assert(wait_for(&spy_reconnect_tries, tries + 2));
	cr_expect_not(drv_used(0, &id, &len));
	cr_expect_eq(atomic_load(&spy_starts), 0, "a queue started on a dead connection");
	cr_expect_not(dev_running());
	cr_expect_not(status() & VIRTIO_CONFIG_S_NEEDS_RESET);

	/* The back-end is back: the queue starts once and the request is served. */
	atomic_store(&spy_hold_reconnect, false);
	cr_assert(wait_for(&spy_reconnects, 1));
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	cr_expect_eq(*(uint8_t *)gpa_ptr(data), 7);
	cr_expect_eq(atomic_load(&spy_starts), 1);
	cr_expect_not(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
	drv_loop_stop();
	d->ops->destroy(d);
	vs_fini(&srv);
	fake_driver_fini();
}

Test(blk_user, config_space_read_is_as_long_as_the_offered_features_need)
{
	const uint64_t dz = (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);

	cr_expect_eq(blk_user_config_len(0), 36);	/* through num_queues */
	cr_expect_eq(blk_user_config_len(1ULL << VIRTIO_BLK_F_FLUSH), 36);
	cr_expect_eq(blk_user_config_len(1ULL << VIRTIO_BLK_F_DISCARD), 48);
	cr_expect_eq(blk_user_config_len(1ULL << VIRTIO_BLK_F_WRITE_ZEROES), 60);
	cr_expect_eq(blk_user_config_len(dz), 60);
	/* Secure erase and zoned are not the model's: their fields are never asked for. */
	cr_expect_eq(blk_user_config_len(~0ULL), 60);
}

/*
 * A back-end built with an older struct virtio_blk_config (QEMU 7.2's
 * qemu-storage-daemon: 60 bytes) fails a GET_CONFIG for this machine's
 * 72-byte struct: the disk still comes up, with its capacity and resizes.
 */
Test(blk_user, a_back_end_with_a_shorter_config_struct_is_served)
{
	struct blk_options o = { 0 };
	uint64_t st, data;
	uint32_t id, len, gen;

	vs_init(&srv, 1);
	srv.config_max = 60;
	vs_start_listen(&srv);
	o.vhost_user = srv.path;
	setup(&o);
	drv_loop_start();
	cr_expect_eq(drv_rd(d, VIRTIO_MMIO_CONFIG), VS_IMG_SIZE / 512);
	/* Fields past what was read (secure erase) read as zero. */
	cr_expect_eq(drv_rd(d, VIRTIO_MMIO_CONFIG + 60), 0);
	drv_start(d, 0);
	st = submit_read(3, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	cr_expect_eq(*(uint8_t *)gpa_ptr(data), 3);
	gen = drv_rd(d, VIRTIO_MMIO_CONFIG_GENERATION);
	cr_assert_eq(truncate(srv.img, 3 * VS_IMG_SIZE), 0);
	cr_assert_eq(vu_blk_resize(&srv.b), 1);
	for (int i = 0; i < 200 && drv_rd(d, VIRTIO_MMIO_CONFIG_GENERATION) == gen; i++)
		usleep(10000);
	cr_expect_eq(drv_rd(d, VIRTIO_MMIO_CONFIG), 3 * VS_IMG_SIZE / 512);
	cr_expect(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	drv_loop_stop();
	d->ops->destroy(d);
	vs_fini(&srv);
	fake_driver_fini();
}

/*
 * A back-end killed while busy leaves the driver's kicks off: with EVENT_IDX
 * an avail_event behind what it took, without it VRING_USED_F_NO_NOTIFY. Once
 * the VMM has failed what was outstanding it must ask for kicks again, or the
 * guest's next request is never seen and hangs (seen on nested KVM: dd's
 * fsync stuck after the first I/O errors).
 */
static void kicks_back_on(bool event_idx)
{
	struct blk_options o = { 0 };
	struct vu_evil evil;
	uint16_t *used_flags;
	uint64_t st, data;
	uint32_t id, len;

	evil_setup(&evil, &o);
	used_flags = gpa_ptr(FAKE_RING_GPA(0) + 0x8000);	/* the used ring's flags */
	drv_loop_start();
	drv_start(d, event_idx ? 1ULL << VIRTIO_RING_F_EVENT_IDX : 0);
	submit_read(1, &data);
	submit_read(2, &data);
	/* What the busy back-end left: no kicks wanted (avail_event stays 0 with EVENT_IDX). */
	if (!event_idx)
		*used_flags = htole16(VRING_USED_F_NO_NOTIFY);
	cr_expect_not(drv_wait_used(0, &id, &len, 100));
	shutdown(evil.sock, SHUT_RDWR);
	ve_join(&evil);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	/* Kicks are wanted again for the next request... */
	if (event_idx)
		cr_expect_eq(drv_avail_event(0), drv_avail_idx(0));
	else
		cr_expect_eq(le16toh(*used_flags) & VRING_USED_F_NO_NOTIFY, 0);
	/* ...which fails at once instead of hanging. */
	st = submit_read(3, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_IOERR);
	drv_loop_stop();
	d->ops->destroy(d);
	fake_driver_fini();
}

Test(blk_user, a_dead_back_ends_kick_suppression_is_lifted)
{
	kicks_back_on(false);
}

Test(blk_user, a_dead_back_ends_stale_avail_event_is_moved_on)
{
	kicks_back_on(true);
}

/* Migration: the model's part (the back-end's DEVICE_STATE is the vhost library's). */
Test(blk_user, migrates_to_a_back_end_with_the_same_disk_only)
{
	static struct vu_server bigger;
	struct blk_options o = { 0 }, ob = { 0 };
	struct virtio_mmio_dev *to;
	struct drv_regs src_regs, dst_regs;
	uint64_t st, data;
	uint32_t id, len;
	struct sbuf w;

	vs_init(&srv, 1);
	vs_start_listen(&srv);
	o.vhost_user = srv.path;
	setup(&o);
	drv_loop_start();
	drv_start(d, 0);
	st = submit_read(3, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000));
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	drv_pause_save(d, &w);
	drv_read_all(d, &src_regs);
	d->ops->destroy(d);
	d = NULL;

	/* A back-end whose image is twice as large is another disk. */
	vs_init(&bigger, 1);
	cr_assert_eq(truncate(bigger.img, 2 * VS_IMG_SIZE), 0);
	cr_assert_eq(vu_blk_resize(&bigger.b), 1);
	vs_start_listen(&bigger);
	ob.vhost_user = bigger.path;
	cr_assert_eq(blk_user_create(&fake_host, &ob, "vublk1", 0x2000, 6, &to), 0);
	cr_assert_eq(drv_load(to, w.data, w.len), -EINVAL);
	cr_assert_eq(drv_rd(to, VIRTIO_MMIO_STATUS), 0, "nothing changed");
	to->ops->destroy(to);
	vs_fini(&bigger);

	/* The same disk (the back-end serves the next front-end). */
	cr_assert_eq(blk_user_create(&fake_host, &o, "vublk1", 0x2000, 6, &d), 0);
	drv_expect_truncations_refused(d, &w);
	cr_assert_eq(drv_load(d, w.data, w.len), 0);
	drv_read_all(d, &dst_regs);
	drv_expect_same_regs(&src_regs, &dst_regs);
	pthread_mutex_lock(&d->lock);
	virtio_mmio_resume(d);
	pthread_mutex_unlock(&d->lock);
	cr_assert(d->running);
	st = submit_read(5, &data);
	cr_assert(drv_wait_used(0, &id, &len, 5000), "the destination serves the guest");
	cr_expect_eq(*(uint8_t *)gpa_ptr(st), VIRTIO_BLK_S_OK);
	cr_expect_eq(*(uint8_t *)gpa_ptr(data), 5);
	cr_assert_not(drv_used(0, &id, &len));
	drv_loop_stop();
	d->ops->destroy(d);
	vs_fini(&srv);
	fake_driver_fini();
	sbuf_free(&w);
}

Test(blk_user, a_disk_whose_back_end_died_refuses_the_save)
{
	struct blk_options o = { 0 };
	struct sbuf w;
	int ret;

	vs_init(&srv, 1);
	vs_start_listen(&srv);
	o.vhost_user = srv.path;
	setup(&o);
	drv_loop_start();
	drv_start(d, 0);
	vs_kill(&srv);
	for (int i = 0; i < 300 && !(status() & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
		usleep(10000);
	cr_assert(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
	sbuf_init_writer(&w);
	pthread_mutex_lock(&d->lock);
	ret = virtio_mmio_save(d, &w);
	pthread_mutex_unlock(&d->lock);
	cr_assert_eq(ret, -EBUSY);
	sbuf_free(&w);
	drv_loop_stop();
	d->ops->destroy(d);
	vs_fini(&srv);
	fake_driver_fini();
}
