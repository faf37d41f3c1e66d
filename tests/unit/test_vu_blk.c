// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmm-vhost-user-blk's device (vhost/vu_blk.h) driven over a socketpair by
 * the test front-end: config space, reads and writes verified against the
 * image file, flush, GET_ID, discard, write-zeroes, bad requests, read-only,
 * resize with CONFIG_CHANGE_MSG, and its part of the device state. Both
 * engine kinds (io_uring where it works here, and synchronous threads).
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/vu_front.h"
#include "vhost/vu_blk.h"

#define RING_AREA	(VF_GPA + 0x1000)
#define HDR		(VF_GPA + 0x10000)
#define DATA		(VF_GPA + 0x20000)
#define STATUS		(VF_GPA + 0x30000)
#define IMG_SIZE	(1 << 20)

static struct vu_front f;
static struct vu_blk b;
static char img[] = "/tmp/vu-blk-test.XXXXXX";
static struct vf_ring r;
static int fds_before;

static unsigned int start_hold_ms;	/* --hold-ms for the next start() */
static bool start_direct;		/* --direct for the next start() */

static void start(bool readonly, enum blk_io_kind kind)
{
	struct vu_blk_options o = { .image = img, .readonly = readonly, .nqueues = 2,
				    .io_kind = kind, .hold_ms = start_hold_ms,
				    .direct = start_direct };
	int fd;

	signal(SIGPIPE, SIG_IGN);
	fds_before = vf_count_fds();
	strcpy(img, "/tmp/vu-blk-test.XXXXXX");
	fd = mkstemp(img);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, IMG_SIZE), 0);
	for (int i = 0; i < IMG_SIZE / 512; i++) {
		uint8_t s[512];

		memset(s, i & 0xff, sizeof(s));
		cr_assert_eq(pwrite(fd, s, 512, i * 512), 512);
	}
	close(fd);
	vf_init(&f);
	cr_assert_eq(vu_blk_open(&b, &o), 0);
	cr_assert_eq(vu_blk_connect(&b, f.be, &vf_ops), 0);
	f.dev = &b.dev;
	vf_negotiate(&f, 0, ~0ULL);
	vf_ring_setup(&f, &r, 0, 64, RING_AREA, 0);
}

static void stop(void)
{
	vu_blk_close(&b);
	close(r.kick);
	close(r.call);
	close(r.err);
	vf_fini(&f);
	unlink(img);
	cr_assert_eq(vf_count_fds(), fds_before, "fds leaked");
}

/* One request: header, optional data (write: readable; read: writable), status. */
static uint8_t request(uint32_t type, uint64_t sector, uint32_t len, bool data_in,
		       uint32_t *used_len)
{
	struct virtio_blk_outhdr *h = vf_ptr(&f, HDR);
	struct vf_buf bufs[3];
	unsigned int n = 0;
	uint32_t id;

	h->type = htole32(type);
	h->ioprio = 0;
	h->sector = htole64(sector);
	*(uint8_t *)vf_ptr(&f, STATUS) = 0xee;
	bufs[n++] = (struct vf_buf){ HDR, sizeof(*h), false };
	if (len)
		bufs[n++] = (struct vf_buf){ DATA, len, data_in };
	bufs[n++] = (struct vf_buf){ STATUS, 1, true };
	vf_add(&f, &r, bufs, n);
	cr_assert(vf_used(&f, &r, &id, used_len, 2000), "no completion");
	return *(uint8_t *)vf_ptr(&f, STATUS);
}

static void file_read(void *buf, size_t len, off_t off)
{
	int fd = open(img, O_RDONLY);

	cr_assert_eq(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void rw_cycle(void)
{
	uint8_t *d = vf_ptr(&f, DATA), back[4096];
	uint32_t len;

	/* Read sector 3: the image's pattern. */
	cr_assert_eq(request(VIRTIO_BLK_T_IN, 3, 1024, true, &len), VIRTIO_BLK_S_OK);
	cr_assert_eq(len, 1025);
	cr_assert_eq(d[0], 3);
	cr_assert_eq(d[1023], 4);
	/* Write 4 KiB at sector 8 and find it in the file. */
	for (int i = 0; i < 4096; i++)
		d[i] = (uint8_t)(i * 7);
	cr_assert_eq(request(VIRTIO_BLK_T_OUT, 8, 4096, false, &len), VIRTIO_BLK_S_OK);
	file_read(back, 4096, 8 * 512);
	cr_assert_eq(memcmp(back, d, 4096), 0);
	/* ...and read it back through the device. */
	memset(d, 0, 4096);
	cr_assert_eq(request(VIRTIO_BLK_T_IN, 8, 4096, true, &len), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(back, d, 4096), 0);
	cr_assert_eq(request(VIRTIO_BLK_T_FLUSH, 0, 0, false, &len), VIRTIO_BLK_S_OK);
	/* Out of range, partial sectors, unknown types. */
	cr_assert_eq(request(VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 1, 1024, true, &len),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(request(VIRTIO_BLK_T_IN, UINT64_MAX / 256, 512, true, &len),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(request(VIRTIO_BLK_T_IN, 0, 100, true, &len), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(request(77, 0, 0, false, &len), VIRTIO_BLK_S_UNSUPP);
	/* GET_ID: the image's file name. */
	cr_assert_eq(request(VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, true, &len),
		     VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(d, "vu-blk-test.", 12), 0);
}

Test(vu_blk, read_write_flush_get_id_uring_or_auto)
{
	start(false, BLK_IO_AUTO);
	rw_cycle();
	stop();
}

Test(vu_blk, read_write_flush_get_id_sync_threads)
{
	start(false, BLK_IO_SYNC);
	rw_cycle();
	stop();
}

/* --direct: the image is open O_DIRECT, and aligned and unaligned buffers both work. */
static void direct_cycle(enum blk_io_kind kind)
{
	uint8_t *d, back[1536];
	uint32_t len;

	/* The image is in /tmp: a file system with O_DIRECT (tmpfs has it from Linux 6.6). */
	start_direct = true;
	start(false, kind);
	start_direct = false;
	cr_assert(fcntl(b.fd, F_GETFL) & O_DIRECT);
	cr_assert_geq(b.dio_align, 512);
	cr_assert_eq(b.dio_align & (b.dio_align - 1), 0);
	rw_cycle();
	/* Data one byte off any alignment, 3 sectors: through the bounce buffer. */
	{
		struct virtio_blk_outhdr *h = vf_ptr(&f, HDR);
		struct vf_buf bufs[3] = {
			{ HDR, sizeof(*h), false }, { DATA + 1, 1536, false }, { STATUS, 1, true },
		};
		uint32_t id;

		d = vf_ptr(&f, DATA + 1);
		for (int i = 0; i < 1536; i++)
			d[i] = (uint8_t)(i * 13 + 5);
		h->type = htole32(VIRTIO_BLK_T_OUT);
		h->sector = htole64(21);
		*(uint8_t *)vf_ptr(&f, STATUS) = 0xee;
		vf_add(&f, &r, bufs, 3);
		cr_assert(vf_used(&f, &r, &id, &len, 2000), "no completion");
		cr_assert_eq(*(uint8_t *)vf_ptr(&f, STATUS), VIRTIO_BLK_S_OK);
		file_read(back, sizeof(back), 21 * 512);
		cr_assert_eq(memcmp(back, d, sizeof(back)), 0);
		/* The sectors around it are untouched: the image's pattern. */
		file_read(back, 512, 20 * 512);
		cr_assert_eq(back[0], 20);
		file_read(back, 512, 24 * 512);
		cr_assert_eq(back[511], 24);
	}
	stop();
}

Test(vu_blk, direct_io_uring_or_auto) { direct_cycle(BLK_IO_AUTO); }
Test(vu_blk, direct_io_sync_threads) { direct_cycle(BLK_IO_SYNC); }

Test(vu_blk, discard_and_write_zeroes)
{
	struct virtio_blk_discard_write_zeroes *seg;
	uint8_t back[2048];
	uint32_t len;

	start(false, BLK_IO_AUTO);
	seg = vf_ptr(&f, DATA);
	seg->sector = htole64(16);
	seg->num_sectors = htole32(4);
	seg->flags = 0;
	cr_assert_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof(*seg), false, &len),
		     VIRTIO_BLK_S_OK);
	file_read(back, 2048, 16 * 512);
	for (int i = 0; i < 2048; i++)
		cr_assert_eq(back[i], 0);
	file_read(back, 1, 20 * 512);
	cr_assert_eq(back[0], 20, "write-zeroes went past its range");
	seg->flags = htole32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	cr_assert_eq(request(VIRTIO_BLK_T_DISCARD, 0, sizeof(*seg), false, &len),
		     VIRTIO_BLK_S_UNSUPP, "discard with the unmap flag");
	seg->flags = 0;
	cr_assert_eq(request(VIRTIO_BLK_T_DISCARD, 0, sizeof(*seg), false, &len),
		     VIRTIO_BLK_S_OK);
	seg->sector = htole64(IMG_SIZE / 512 - 2);
	cr_assert_eq(request(VIRTIO_BLK_T_DISCARD, 0, sizeof(*seg), false, &len),
		     VIRTIO_BLK_S_IOERR);
	stop();
}

Test(vu_blk, readonly_refuses_writes)
{
	struct vhost_user_msg m;
	uint8_t back[512];
	uint32_t len;

	start(true, BLK_IO_AUTO);
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_FEATURES, 0, NULL, 0, NULL, 0, &m), 0);
	cr_assert(m.p.u64 & (1ULL << VIRTIO_BLK_F_RO));
	cr_assert_not(m.p.u64 & (1ULL << VIRTIO_BLK_F_DISCARD));
	memset(vf_ptr(&f, DATA), 0x55, 512);
	cr_assert_eq(request(VIRTIO_BLK_T_OUT, 1, 512, false, &len), VIRTIO_BLK_S_IOERR);
	file_read(back, 512, 512);
	cr_assert_eq(back[0], 1);
	cr_assert_eq(request(VIRTIO_BLK_T_IN, 1, 512, true, &len), VIRTIO_BLK_S_OK);
	stop();
}

Test(vu_blk, config_and_resize_with_config_change)
{
	struct vhost_user_config c = { .offset = 0, .size = sizeof(struct virtio_blk_config) };
	struct virtio_blk_config *cfg;
	struct vhost_user_msg m;
	int sv[2];
	uint32_t len;

	start(false, BLK_IO_AUTO);
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_CONFIG, 0, &c, 12 + c.size, NULL, 0, &m), 0);
	cr_assert_eq(m.hdr.size, 12 + c.size);
	cfg = (struct virtio_blk_config *)m.p.config.payload;
	cr_assert_eq(le64toh(cfg->capacity), IMG_SIZE / 512);
	cr_assert_eq(le16toh(cfg->num_queues), 2);
	cr_assert_eq(le32toh(cfg->blk_size), 512);
	cr_assert_gt(le32toh(cfg->seg_max), 0);

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	vf_send(&f, VHOST_USER_SET_BACKEND_REQ_FD, 0, NULL, 0, &sv[1], 1);
	close(sv[1]);
	cr_assert_eq(truncate(img, 2 * IMG_SIZE), 0);
	cr_assert_eq(vu_blk_resize(&b), 1);
	cr_assert_eq(vhost_user_recv(sv[0], &m, 1000), 0);
	cr_assert_eq(m.hdr.request, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG);
	close(sv[0]);
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_CONFIG, 0, &c, 12 + c.size, NULL, 0, &m), 0);
	cfg = (struct virtio_blk_config *)m.p.config.payload;
	cr_assert_eq(le64toh(cfg->capacity), 2 * IMG_SIZE / 512);
	/* The new sectors are usable at once. */
	cr_assert_eq(request(VIRTIO_BLK_T_IN, IMG_SIZE / 512 + 4, 512, true, &len),
		     VIRTIO_BLK_S_OK);
	cr_assert_eq(vu_blk_resize(&b), 0);
	stop();
}

Test(vu_blk, state_for_another_disk_is_refused)
{
	struct vhost_user_vring_state st = { 0, 0 };
	struct vhost_user_msg m;
	uint8_t *buf;
	size_t n;
	uint32_t len;

	start(false, BLK_IO_AUTO);
	cr_assert_eq(request(VIRTIO_BLK_T_FLUSH, 0, 0, false, &len), VIRTIO_BLK_S_OK);
	cr_assert_eq(vf_call(&f, VHOST_USER_GET_VRING_BASE, 0, &st, 8, NULL, 0, &m), 0);
	cr_assert_eq(m.p.state.num, 1, "stopped after its one request, nothing in flight");
	cr_assert_eq(vu_state_save(&b.dev, &buf, &n), 0);
	cr_assert_eq(vu_state_load(&b.dev, buf, n), 0);
	/* The same state against a disk of another size: refused. */
	cr_assert_eq(truncate(img, 2 * IMG_SIZE), 0);
	cr_assert_eq(vu_blk_resize(&b), 1);
	cr_assert_eq(vu_state_load(&b.dev, buf, n), -EINVAL);
	free(buf);
	stop();
}

/*
 * A queue started on rings where a predecessor (killed while busy) left kicks
 * off turns them back on once it finds the ring empty: otherwise the
 * driver's next request would never be seen after a reconnect.
 */
Test(vu_blk, a_started_queue_turns_kicks_back_on)
{
	struct vu_blk_options o = { .image = img, .nqueues = 1 };
	struct vring_used *used;
	uint16_t *avail_event;
	uint32_t len;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	fds_before = vf_count_fds();
	strcpy(img, "/tmp/vu-blk-test.XXXXXX");
	fd = mkstemp(img);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
	vf_init(&f);
	cr_assert_eq(vu_blk_open(&b, &o), 0);
	cr_assert_eq(vu_blk_connect(&b, f.be, &vf_ops), 0);
	f.dev = &b.dev;
	vf_negotiate(&f, 0, ~0ULL);	/* everything it offers: EVENT_IDX too */
	vf_ring_layout(&r, 0, 64, RING_AREA);
	memset(vf_ptr(&f, RING_AREA), 0, r.used + 6 + 8ULL * 64 - RING_AREA);
	used = vf_ptr(&f, r.used);
	avail_event = (uint16_t *)&used->ring[64];
	/* What the predecessor left: an avail_event far behind (and NO_NOTIFY, for good measure). */
	*avail_event = htole16(0x8000);
	used->flags = htole16(VRING_USED_F_NO_NOTIFY);
	vf_ring_send(&f, &r, 0);
	/* The front-end's kick after a start: the queue looks, finds nothing, wants kicks. */
	cr_assert_eq(eventfd_write(r.kick, 1), 0);
	for (int i = 0; i < 200 && le16toh(*avail_event) != 0; i++)
		usleep(10000);
	cr_expect_eq(le16toh(*avail_event), 0, "avail_event %u", le16toh(*avail_event));
	/* And a request goes through. */
	cr_expect_eq(request(VIRTIO_BLK_T_IN, 3, 512, true, &len), VIRTIO_BLK_S_OK);
	stop();
}

/* --hold-ms: finished requests wait that long before they are answered (testing). */
Test(vu_blk, hold_ms_holds_each_answer)
{
	struct timespec t0, t1;
	uint32_t len;
	long ms;

	start_hold_ms = 150;
	start(false, BLK_IO_AUTO);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_expect_eq(request(VIRTIO_BLK_T_IN, 3, 512, true, &len), VIRTIO_BLK_S_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_expect_geq(ms, 150, "answered after %ld ms", ms);
	cr_expect_eq(*(uint8_t *)vf_ptr(&f, DATA), 3);
	stop();
}
