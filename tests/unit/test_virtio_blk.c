// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-blk: request handling (blk_handle_chain) over chains built from
 * plain host buffers and a temporary image file, the back-end checks of
 * virtio_blk_init/virtio_blk_create, and requests end to end through the
 * virtio-mmio transport and split rings in fake guest memory, completed by
 * the queues' disk-I/O engines on their own threads: many in flight at once,
 * a disk that blocks (a pipe) next to a device on the event loop, and a stop
 * that drains what is in flight before the queue's position is saved.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_driver.h"
#include "stderr_capture.h"
#include "virtio/blk.h"
#include "virtio/devices.h"
#include "virtio/rng.h"
#include "vmm/base/util.h"

#define SECTOR		512
#define DISK_SECTORS	2048ULL			/* 1 MiB */
#define DISK_SIZE	(DISK_SECTORS * SECTOR)

static char path[64];
static struct virtio_blk *b;
static struct virtq_chain ch;
static struct virtio_blk_outhdr hdr;
static uint8_t status;
static int vfd = -1;			/* a second descriptor to check the image */

/* ---- Image and device ---- */

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 131 + (off >> 9) + 1);
}

static void fill_pattern(uint8_t *buf, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern(off + i);
}

/* Creates the image at `path`, size bytes, filled with pattern() if fill. */
static void make_image(uint64_t size, bool fill)
{
	const char *dir = getenv("TMPDIR");
	int fd;

	snprintf(path, sizeof(path), "%s/vblk-test-XXXXXX", dir && strlen(dir) < 40 ? dir : "/tmp");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	if (fill) {
		static uint8_t buf[64 << 10];

		for (uint64_t off = 0; off < size; off += sizeof(buf)) {
			size_t n = MIN(sizeof(buf), size - off);

			fill_pattern(buf, off, n);
			cr_assert_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
		}
	}
	close(fd);
	vfd = open(path, O_RDONLY);
	cr_assert_geq(vfd, 0);
}

static int open_dev(bool readonly, bool direct, const char *id)
{
	struct blk_options o = { .path = path, .readonly = readonly, .direct = direct, .id = id };
	int r;

	b = calloc(1, sizeof(*b));
	cr_assert_not_null(b);
	r = virtio_blk_init(b, &o, "vblk-test");
	if (r < 0) {
		free(b);
		b = NULL;
	}
	return r;
}

static void setup_rw(void)
{
	make_image(DISK_SIZE, true);
	cr_assert_eq(open_dev(false, false, NULL), 0);
}

static void setup_ro(void)
{
	make_image(DISK_SIZE, true);
	cr_assert_eq(open_dev(true, false, NULL), 0);
}

static void teardown(void)
{
	if (b) {
		virtio_blk_fini(b);
		free(b);
		b = NULL;
	}
	if (vfd >= 0)
		close(vfd);
	vfd = -1;
	if (path[0])
		unlink(path);
	path[0] = '\0';
}

/* Whether the image holds pattern() over [off, off + len). */
static void expect_image_pattern(uint64_t off, size_t len)
{
	uint8_t *got = malloc(len), *want = malloc(len);

	cr_assert_eq(pread(vfd, got, len, (off_t)off), (ssize_t)len);
	fill_pattern(want, off, len);
	cr_assert_arr_eq(got, want, len, "image differs from the pattern in [%llu, +%zu)",
			 (unsigned long long)off, len);
	free(got);
	free(want);
}

static void expect_image_bytes(uint64_t off, const void *want, size_t len)
{
	uint8_t *got = malloc(len);

	cr_assert_eq(pread(vfd, got, len, (off_t)off), (ssize_t)len);
	cr_assert_arr_eq(got, want, len, "image differs in [%llu, +%zu)",
			 (unsigned long long)off, len);
	free(got);
}

static void expect_image_zero(uint64_t off, size_t len)
{
	uint8_t *zero = calloc(1, len);

	expect_image_bytes(off, zero, len);
	free(zero);
}

/* ---- Chains over host buffers ---- */

static void chain_begin(void)
{
	memset(&ch, 0, sizeof(ch));
}

static void add_out(const void *p, size_t n)
{
	cr_assert_eq(ch.nin, 0, "readable segment after a writable one");
	cr_assert_lt(ch.nout, VIRTQ_MAX_IOV);
	ch.iov[ch.nout++] = (struct iovec){ (void *)p, n };
	ch.out_len += n;
}

static void add_in(void *p, size_t n)
{
	cr_assert_lt(ch.nout + ch.nin, VIRTQ_MAX_IOV);
	ch.iov[ch.nout + ch.nin++] = (struct iovec){ p, n };
	ch.in_len += n;
}

static void add_hdr(uint32_t type, uint64_t sector)
{
	hdr.type = htole32(type);
	hdr.ioprio = 0;
	hdr.sector = htole64(sector);
	add_out(&hdr, sizeof(hdr));
}

static void add_status(void)
{
	status = 0xee;
	add_in(&status, 1);
}

/* Handles the chain; checks the returned status is the one written (when there was room). */
static uint8_t run(uint32_t *written)
{
	uint32_t w = 0xdeadbeef;
	uint8_t st = blk_handle_chain(b, &ch, &w);

	if (ch.in_len)
		cr_assert_eq(st, status, "returned %u, wrote %u", st, status);
	if (written)
		*written = w;
	return st;
}

static uint8_t do_read(uint64_t sector, void *buf, size_t len, uint32_t *written)
{
	chain_begin();
	add_hdr(VIRTIO_BLK_T_IN, sector);
	add_in(buf, len);
	add_status();
	return run(written);
}

static uint8_t do_write(uint64_t sector, const void *buf, size_t len, uint32_t *written)
{
	chain_begin();
	add_hdr(VIRTIO_BLK_T_OUT, sector);
	add_out(buf, len);
	add_status();
	return run(written);
}

static uint8_t do_simple(uint32_t type, uint32_t *written)
{
	chain_begin();
	add_hdr(type, 0);
	add_status();
	return run(written);
}

static struct virtio_blk_discard_write_zeroes dwz[2];

static uint8_t do_dwz(uint32_t type, uint64_t sector, uint32_t nsectors, uint32_t flags)
{
	dwz[0].sector = htole64(sector);
	dwz[0].num_sectors = htole32(nsectors);
	dwz[0].flags = htole32(flags);
	chain_begin();
	add_hdr(type, 0);
	add_out(&dwz[0], sizeof(dwz[0]));
	add_status();
	return run(NULL);
}

/* ---- Reads and writes ---- */

TestSuite(blk, .init = setup_rw, .fini = teardown);

Test(blk, read_returns_image_data_and_length)
{
	static uint8_t buf[4096];
	uint32_t written;

	cr_assert_eq(do_read(8, buf, sizeof(buf), &written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, sizeof(buf) + 1);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], pattern(8 * SECTOR + i), "byte %zu", i);
}

Test(blk, write_then_read_round_trip)
{
	static uint8_t data[3 * SECTOR], back[3 * SECTOR];
	uint32_t written;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(0xa5 ^ i);
	cr_assert_eq(do_write(100, data, sizeof(data), &written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, 1, "a write only writes the status byte");
	expect_image_bytes(100 * SECTOR, data, sizeof(data));
	expect_image_pattern(99 * SECTOR, SECTOR);
	expect_image_pattern(103 * SECTOR, SECTOR);

	cr_assert_eq(do_read(100, back, sizeof(back), NULL), VIRTIO_BLK_S_OK);
	cr_assert_arr_eq(back, data, sizeof(data));
}

Test(blk, data_scattered_over_odd_segments)
{
	static uint8_t data[2 * SECTOR], back[2 * SECTOR];
	size_t cuts[] = { 0, 1, 100, 511, 700, 1023, 1024 };

	fill_pattern(data, 12345, sizeof(data));
	chain_begin();
	add_hdr(VIRTIO_BLK_T_OUT, 7);
	for (size_t i = 0; i + 1 < ARRAY_SIZE(cuts); i++)
		add_out(data + cuts[i], cuts[i + 1] - cuts[i]);
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_OK);
	expect_image_bytes(7 * SECTOR, data, sizeof(data));

	chain_begin();
	add_hdr(VIRTIO_BLK_T_IN, 7);
	for (size_t i = 0; i + 1 < ARRAY_SIZE(cuts); i++)
		add_in(back + cuts[i], cuts[i + 1] - cuts[i]);
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_OK);
	cr_assert_arr_eq(back, data, sizeof(data));
}

Test(blk, header_split_across_segments_and_shared_with_data)
{
	static uint8_t buf[sizeof(struct virtio_blk_outhdr) + SECTOR];
	struct virtio_blk_outhdr h = {
		.type = htole32(VIRTIO_BLK_T_OUT), .sector = htole64(33),
	};

	/* Header in three pieces; its last piece and the data share one segment. */
	memcpy(buf, &h, sizeof(h));
	fill_pattern(buf + sizeof(h), 999, SECTOR);
	chain_begin();
	add_out(buf, 5);
	add_out(buf + 5, 7);
	add_out(buf + 12, sizeof(buf) - 12);
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_OK);
	expect_image_bytes(33 * SECTOR, buf + sizeof(h), SECTOR);
}

Test(blk, status_byte_shares_a_segment_with_read_data)
{
	static uint8_t buf[SECTOR + 1];
	uint32_t written;

	memset(buf, 0xcc, sizeof(buf));
	chain_begin();
	add_hdr(VIRTIO_BLK_T_IN, 1);
	add_in(buf, sizeof(buf));
	status = VIRTIO_BLK_S_OK;
	cr_assert_eq(blk_handle_chain(b, &ch, &written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, SECTOR + 1);
	cr_assert_eq(buf[SECTOR], VIRTIO_BLK_S_OK);
	for (size_t i = 0; i < SECTOR; i++)
		cr_assert_eq(buf[i], pattern(SECTOR + i));
}

Test(blk, zero_length_read_is_ok)
{
	uint32_t written;

	cr_assert_eq(do_read(0, NULL, 0, &written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, 1);
}

Test(blk, last_sector_is_reachable)
{
	static uint8_t buf[SECTOR];

	cr_assert_eq(do_read(DISK_SECTORS - 1, buf, sizeof(buf), NULL), VIRTIO_BLK_S_OK);
	cr_assert_eq(buf[0], pattern((DISK_SECTORS - 1) * SECTOR));
	cr_assert_eq(do_write(DISK_SECTORS - 1, buf, sizeof(buf), NULL), VIRTIO_BLK_S_OK);
}

/* ---- Guest errors ---- */

Test(blk, out_of_range_sector)
{
	static uint8_t buf[2 * SECTOR];
	uint32_t written;

	cr_assert_eq(do_read(DISK_SECTORS, buf, SECTOR, &written), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(written, 1, "only the status byte on errors");
	cr_assert_eq(do_read(DISK_SECTORS - 1, buf, 2 * SECTOR, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_write(DISK_SECTORS - 1, buf, 2 * SECTOR, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_write(UINT32_MAX, buf, SECTOR, NULL), VIRTIO_BLK_S_IOERR);
	expect_image_pattern((DISK_SECTORS - 1) * SECTOR, SECTOR);
}

Test(blk, sector_offset_overflow)
{
	static uint8_t buf[2 * SECTOR];

	/* sector * 512 overflows. */
	cr_assert_eq(do_read(UINT64_MAX / SECTOR + 1, buf, SECTOR, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_read(UINT64_MAX, buf, SECTOR, NULL), VIRTIO_BLK_S_IOERR);
	/* sector * 512 fits, + len overflows. */
	cr_assert_eq(do_read(UINT64_MAX / SECTOR, buf, 2 * SECTOR, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_write(UINT64_MAX / SECTOR, buf, 2 * SECTOR, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, UINT64_MAX / SECTOR, 8, 0),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_DISCARD, UINT64_MAX, 1, 0), VIRTIO_BLK_S_IOERR);
}

Test(blk, length_not_a_multiple_of_512)
{
	static uint8_t buf[2 * SECTOR];

	memset(buf, 0x77, sizeof(buf));
	cr_assert_eq(do_read(0, buf, 500, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(buf[0], 0x77, "nothing read on a refused request");
	cr_assert_eq(do_write(0, buf, SECTOR + 1, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_write(0, buf, 1, NULL), VIRTIO_BLK_S_IOERR);
	expect_image_pattern(0, 2 * SECTOR);
}

Test(blk, missing_status_byte)
{
	static uint8_t buf[SECTOR];
	uint32_t written = 0xdeadbeef;

	/* A write with no writable segment at all: nowhere to put the status. */
	chain_begin();
	add_hdr(VIRTIO_BLK_T_OUT, 0);
	add_out(buf, sizeof(buf));
	cr_assert_eq(blk_handle_chain(b, &ch, &written), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(written, 0);
	expect_image_pattern(0, SECTOR);

	/* Only an empty writable segment. */
	chain_begin();
	add_hdr(VIRTIO_BLK_T_IN, 0);
	add_in(buf, 0);
	cr_assert_eq(blk_handle_chain(b, &ch, &written), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(written, 0);
}

Test(blk, short_or_missing_header)
{
	uint32_t written;

	chain_begin();
	add_out(&hdr, 8);
	add_status();
	cr_assert_eq(run(&written), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(written, 1);

	chain_begin();
	add_status();
	cr_assert_eq(run(&written), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(written, 1);
}

Test(blk, unknown_types_are_unsupported)
{
	static const uint32_t types[] = { 2, 3, 5, 10, 14, 99, 0x80000001, UINT32_MAX };
	uint32_t written;

	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		cr_assert_eq(do_simple(types[i], &written), VIRTIO_BLK_S_UNSUPP, "type %#x",
			     types[i]);
		cr_assert_eq(written, 1);
	}
}

/* ---- Flush and GET_ID ---- */

Test(blk, flush)
{
	uint32_t written;

	cr_assert_eq(do_simple(VIRTIO_BLK_T_FLUSH, &written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, 1);
}

Test(blk, get_id_defaults_to_the_basename)
{
	char id[VIRTIO_BLK_ID_BYTES + 1] = { 0 };
	const char *base = strrchr(path, '/') + 1;
	uint32_t written;

	chain_begin();
	add_hdr(VIRTIO_BLK_T_GET_ID, 0);
	add_in(id, VIRTIO_BLK_ID_BYTES);
	add_status();
	cr_assert_eq(run(&written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, VIRTIO_BLK_ID_BYTES + 1);
	cr_assert_str_eq(id, base);
}

Test(blk, get_id_given_and_short_buffer)
{
	char id[VIRTIO_BLK_ID_BYTES];
	uint32_t written;

	virtio_blk_fini(b);
	free(b);
	cr_assert_eq(open_dev(false, false, "serial-0123"), 0);

	memset(id, 'x', sizeof(id));
	chain_begin();
	add_hdr(VIRTIO_BLK_T_GET_ID, 0);
	add_in(id, sizeof(id));
	add_status();
	cr_assert_eq(run(&written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, sizeof(id) + 1);
	cr_assert_str_eq(id, "serial-0123", "NUL-padded");
	cr_assert_eq(id[sizeof(id) - 1], '\0');

	/* A 4-byte buffer gets 4 bytes. */
	memset(id, 'x', sizeof(id));
	chain_begin();
	add_hdr(VIRTIO_BLK_T_GET_ID, 0);
	add_in(id, 4);
	add_status();
	cr_assert_eq(run(&written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, 5);
	cr_assert_arr_eq(id, "serix", 5);
}

Test(blk, id_of_exactly_20_bytes_has_no_terminator)
{
	char id[VIRTIO_BLK_ID_BYTES];

	virtio_blk_fini(b);
	free(b);
	cr_assert_eq(open_dev(false, false, "ABCDEFGHIJKLMNOPQRST"), 0);
	chain_begin();
	add_hdr(VIRTIO_BLK_T_GET_ID, 0);
	add_in(id, sizeof(id));
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_OK);
	cr_assert_arr_eq(id, "ABCDEFGHIJKLMNOPQRST", sizeof(id));
}

Test(blk, id_longer_than_20_bytes_is_refused)
{
	virtio_blk_fini(b);
	free(b);
	cr_assert_eq(open_dev(false, false, "ABCDEFGHIJKLMNOPQRSTU"), -EINVAL);
}

/* ---- Discard and write zeroes ---- */

static blkcnt_t image_blocks(void)
{
	struct stat st;

	cr_assert_eq(fstat(vfd, &st), 0);
	return st.st_blocks;
}

Test(blk, discard_punches_a_hole)
{
	blkcnt_t before = image_blocks();

	cr_assert_eq(do_dwz(VIRTIO_BLK_T_DISCARD, 64, 128, 0), VIRTIO_BLK_S_OK);
	expect_image_zero(64 * SECTOR, 128 * SECTOR);
	expect_image_pattern(0, 64 * SECTOR);
	expect_image_pattern(192 * SECTOR, 64 * SECTOR);
	cr_assert_lt(image_blocks(), before, "no space was freed");
	cr_assert_eq(lseek(vfd, 0, SEEK_END), (off_t)DISK_SIZE, "discard changed the size");
}

Test(blk, write_zeroes_with_and_without_unmap)
{
	blkcnt_t before = image_blocks();

	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 3, 5, 0), VIRTIO_BLK_S_OK);
	expect_image_pattern(0, 3 * SECTOR);
	expect_image_zero(3 * SECTOR, 5 * SECTOR);
	expect_image_pattern(8 * SECTOR, SECTOR);

	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 256, 256,
			    VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP), VIRTIO_BLK_S_OK);
	expect_image_zero(256 * SECTOR, 256 * SECTOR);
	expect_image_pattern(255 * SECTOR, SECTOR);
	expect_image_pattern(512 * SECTOR, SECTOR);
	cr_assert_lt(image_blocks(), before, "unmap freed no space");
	cr_assert_eq(lseek(vfd, 0, SEEK_END), (off_t)DISK_SIZE);
}

Test(blk, write_zeroes_by_hand_when_fallocate_is_unsupported)
{
	/* As after fallocate() said EOPNOTSUPP; spans several bounce buffers. */
	b->no_fallocate = true;
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 1, 1500, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
		     VIRTIO_BLK_S_OK);
	expect_image_pattern(0, SECTOR);
	expect_image_zero(SECTOR, 1500 * SECTOR);
	expect_image_pattern(1501 * SECTOR, (DISK_SECTORS - 1501) * SECTOR);
}

Test(blk, discard_is_a_no_op_where_unsupported)
{
	b->no_discard = true;
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_OK);
	expect_image_pattern(0, 8 * SECTOR);
}

Test(blk, discard_and_write_zeroes_bad_segments)
{
	/* Flags: discard has none, write zeroes only UNMAP. */
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_DISCARD, 0, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
		     VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 2), VIRTIO_BLK_S_UNSUPP);
	/* Too many sectors, beyond the end. */
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_DISCARD, 0, BLK_MAX_DISCARD_SECTORS + 1, 0),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 0, BLK_MAX_ZEROES_SECTORS + 1, 0),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_DISCARD, DISK_SECTORS - 4, 8, 0), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, DISK_SECTORS, 1, 0), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, UINT32_MAX, UINT32_MAX, 0),
		     VIRTIO_BLK_S_IOERR);

	/* No segment, a partial one, two of them. */
	chain_begin();
	add_hdr(VIRTIO_BLK_T_DISCARD, 0);
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_IOERR);
	chain_begin();
	add_hdr(VIRTIO_BLK_T_WRITE_ZEROES, 0);
	add_out(&dwz[0], 8);
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_IOERR);
	memset(dwz, 0, sizeof(dwz));
	dwz[0].num_sectors = dwz[1].num_sectors = htole32(1);
	chain_begin();
	add_hdr(VIRTIO_BLK_T_DISCARD, 0);
	add_out(dwz, sizeof(dwz));
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_UNSUPP);

	expect_image_pattern(0, DISK_SIZE);
}

Test(blk, write_zeroes_segment_split_across_segments)
{
	struct virtio_blk_discard_write_zeroes seg = {
		.sector = htole64(10), .num_sectors = htole32(2), .flags = 0,
	};

	chain_begin();
	add_hdr(VIRTIO_BLK_T_WRITE_ZEROES, 0);
	add_out(&seg, 3);
	add_out((uint8_t *)&seg + 3, sizeof(seg) - 3);
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_OK);
	expect_image_zero(10 * SECTOR, 2 * SECTOR);
	expect_image_pattern(12 * SECTOR, SECTOR);
}

/* ---- Config space and features ---- */

Test(blk, config_and_features)
{
	struct virtio_blk_config *c = &b->config;

	cr_assert_eq(le64toh(c->capacity), DISK_SECTORS);
	cr_assert_eq(le32toh(c->blk_size), 512);
	cr_assert_eq(le32toh(c->seg_max), BLK_SEG_MAX);
	cr_assert_eq(le16toh(c->num_queues), BLK_NUM_QUEUES);
	cr_assert_eq(le32toh(c->max_discard_seg), 1);
	cr_assert_eq(le32toh(c->max_write_zeroes_seg), 1);
	cr_assert_eq(le32toh(c->max_discard_sectors), BLK_MAX_DISCARD_SECTORS);
	cr_assert_eq(le32toh(c->max_write_zeroes_sectors), BLK_MAX_ZEROES_SECTORS);
	cr_assert_neq(le32toh(c->discard_sector_alignment), 0);
	cr_assert_eq(c->write_zeroes_may_unmap, 1);
	for (unsigned int bit = 0; bit < 64; bit++) {
		bool want = bit == VIRTIO_BLK_F_SEG_MAX || bit == VIRTIO_BLK_F_BLK_SIZE ||
			    bit == VIRTIO_BLK_F_FLUSH || bit == VIRTIO_BLK_F_MQ ||
			    bit == VIRTIO_BLK_F_DISCARD || bit == VIRTIO_BLK_F_WRITE_ZEROES;

		cr_assert_eq(!!(b->features & (1ULL << bit)), want, "feature bit %u", bit);
	}
}

/* ---- Read-only disks ---- */

Test(blk_ro, refuses_writes_discard_and_write_zeroes, .init = setup_ro, .fini = teardown)
{
	static uint8_t buf[SECTOR];
	uint32_t written;

	cr_assert(b->features & (1ULL << VIRTIO_BLK_F_RO));
	cr_assert_not(b->features & (1ULL << VIRTIO_BLK_F_DISCARD));
	cr_assert_not(b->features & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES));

	memset(buf, 0, sizeof(buf));
	cr_assert_eq(do_write(0, buf, sizeof(buf), &written), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(written, 1);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
	expect_image_pattern(0, 8 * SECTOR);

	cr_assert_eq(do_read(0, buf, sizeof(buf), &written), VIRTIO_BLK_S_OK);
	cr_assert_eq(written, sizeof(buf) + 1);
	cr_assert_eq(buf[1], pattern(1));
	cr_assert_eq(do_simple(VIRTIO_BLK_T_FLUSH, NULL), VIRTIO_BLK_S_OK);
}

Test(blk_ro, works_on_a_read_only_file, .fini = teardown)
{
	make_image(DISK_SIZE, true);
	cr_assert_eq(chmod(path, 0400), 0);
	if (geteuid() != 0)
		cr_assert_eq(open_dev(false, false, NULL), -EACCES);
	cr_assert_eq(open_dev(true, false, NULL), 0);
}

/* ---- O_DIRECT and the bounce buffer ---- */

static void setup_direct(void)
{
	int r;

	make_image(DISK_SIZE, true);
	r = open_dev(false, true, NULL);
	if (r == -EINVAL)
		cr_skip_test("the filesystem of %s has no O_DIRECT", path);
	cr_assert_eq(r, 0);
}

TestSuite(blk_direct, .init = setup_direct, .fini = teardown);

Test(blk_direct, aligned_buffers_go_straight_through)
{
	uint8_t *buf = aligned_alloc(4096, 8192), *back = aligned_alloc(4096, 8192);

	cr_assert(b->direct);
	fill_pattern(buf, 777, 8192);
	cr_assert_eq(do_write(16, buf, 8192, NULL), VIRTIO_BLK_S_OK);
	expect_image_bytes(16 * SECTOR, buf, 8192);
	cr_assert_eq(do_read(16, back, 8192, NULL), VIRTIO_BLK_S_OK);
	cr_assert_arr_eq(back, buf, 8192);
	free(buf);
	free(back);
}

Test(blk_direct, unaligned_buffers_bounce)
{
	uint8_t *mem = aligned_alloc(4096, 3 * 8192), *back = mem + 8192 + 3;

	/* Data 1 byte off alignment, in segments of odd lengths. */
	fill_pattern(mem + 1, 4242, 2 * SECTOR);
	chain_begin();
	add_hdr(VIRTIO_BLK_T_OUT, 24);
	add_out(mem + 1, 300);
	add_out(mem + 301, 2 * SECTOR - 300);
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_OK);
	expect_image_bytes(24 * SECTOR, mem + 1, 2 * SECTOR);
	expect_image_pattern(23 * SECTOR, SECTOR);
	expect_image_pattern(26 * SECTOR, SECTOR);

	chain_begin();
	add_hdr(VIRTIO_BLK_T_IN, 24);
	add_in(back, 1000);
	add_in(back + 1000, 2 * SECTOR - 1000);
	add_status();
	cr_assert_eq(run(NULL), VIRTIO_BLK_S_OK);
	cr_assert_arr_eq(back, mem + 1, 2 * SECTOR);
	free(mem);
}

/*
 * Read-modify-write for a disk whose direct I/O blocks are bigger than the
 * guest's sectors. Forced on a buffered descriptor: the bounce path does the
 * same I/O either way, and a shadow copy says what the image must hold.
 */
Test(blk_bounce, read_modify_write_with_4k_blocks, .init = setup_rw, .fini = teardown)
{
	static uint8_t shadow[DISK_SIZE], buf[600 << 10];
	static const struct { uint64_t sector; size_t len; } reqs[] = {
		{ 3, SECTOR }, { 7, 2 * SECTOR }, { 1, 600 << 10 }, { 0, 8 * SECTOR },
		{ DISK_SECTORS - 1, SECTOR }, { 510, 4 * SECTOR },
	};

	b->direct = true;
	b->dio_align = 4096;
	fill_pattern(shadow, 0, DISK_SIZE);
	for (size_t i = 0; i < ARRAY_SIZE(reqs); i++) {
		uint64_t off = reqs[i].sector * SECTOR;

		for (size_t j = 0; j < reqs[i].len; j++)
			buf[j] = (uint8_t)(i * 37 + j * 3);
		cr_assert_eq(do_write(reqs[i].sector, buf, reqs[i].len, NULL), VIRTIO_BLK_S_OK,
			     "request %zu", i);
		memcpy(shadow + off, buf, reqs[i].len);
		expect_image_bytes(0, shadow, DISK_SIZE);

		memset(buf, 0, reqs[i].len);
		cr_assert_eq(do_read(reqs[i].sector, buf, reqs[i].len, NULL), VIRTIO_BLK_S_OK);
		cr_assert_arr_eq(buf, shadow + off, reqs[i].len, "read back of request %zu", i);
	}
	/* Write zeroes by hand through the same path. */
	b->no_fallocate = true;
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 5, 11, 0), VIRTIO_BLK_S_OK);
	memset(shadow + 5 * SECTOR, 0, 11 * SECTOR);
	expect_image_bytes(0, shadow, DISK_SIZE);
}

/* ---- A block device back-end (a loop device; skipped where there is none) ---- */

/*
 * Attaches the image at `path` to a free loop device that detaches itself
 * when its last user closes it. Returns an open descriptor of the device and
 * its name in dev, or skips the test.
 */
static int attach_loop(char *dev, size_t len)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);

	if (ctl < 0)
		cr_skip_test("no /dev/loop-control: %s", strerror(errno));
	for (int tries = 0; tries < 8; tries++) {
		struct loop_config cfg = { .info.lo_flags = LO_FLAGS_AUTOCLEAR };
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		int lfd, ffd, r;

		if (n < 0)
			break;
		snprintf(dev, len, "/dev/loop%d", n);
		lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd < 0)
			break;
		ffd = open(path, O_RDWR | O_CLOEXEC);
		cr_assert_geq(ffd, 0);
		cfg.fd = ffd;
		r = ioctl(lfd, LOOP_CONFIGURE, &cfg);
		close(ffd);
		if (r == 0) {
			close(ctl);
			return lfd;
		}
		close(lfd);
		if (errno != EBUSY)
			break;
	}
	close(ctl);
	cr_skip_test("cannot attach a loop device: %s", strerror(errno));
	return -1;
}

Test(blk_bdev, loop_device, .fini = teardown)
{
	struct blk_options o = { 0 };
	static uint8_t buf[4 * SECTOR];
	char dev[32];
	int lfd;

	make_image(DISK_SIZE, true);
	lfd = attach_loop(dev, sizeof(dev));
	o.path = dev;
	b = calloc(1, sizeof(*b));
	cr_assert_not_null(b);
	cr_assert_eq(virtio_blk_init(b, &o, "vblk-loop"), 0);
	close(lfd);
	cr_assert(b->is_bdev);
	cr_assert_eq(le64toh(b->config.capacity), DISK_SECTORS);
	cr_assert_eq(le32toh(b->config.blk_size), 512);

	cr_assert_eq(do_read(10, buf, sizeof(buf), NULL), VIRTIO_BLK_S_OK);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], pattern(10 * SECTOR + i));
	memset(buf, 0x5a, sizeof(buf));
	cr_assert_eq(do_write(20, buf, sizeof(buf), NULL), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_simple(VIRTIO_BLK_T_FLUSH, NULL), VIRTIO_BLK_S_OK);
	expect_image_bytes(20 * SECTOR, buf, sizeof(buf));
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 40, 8, 0), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 48, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
		     VIRTIO_BLK_S_OK);
	cr_assert_eq(do_simple(VIRTIO_BLK_T_FLUSH, NULL), VIRTIO_BLK_S_OK);
	expect_image_zero(40 * SECTOR, 16 * SECTOR);
	expect_image_pattern(56 * SECTOR, SECTOR);
	cr_assert_eq(do_dwz(VIRTIO_BLK_T_DISCARD, 128, 128, 0), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_read(DISK_SECTORS, buf, SECTOR, NULL), VIRTIO_BLK_S_IOERR);
}

/* ---- Set-up errors ---- */

TestSuite(blk_setup, .fini = teardown);

/* virtio_blk_create's -errno; *out stays NULL on failure. */
static int create(const char *p, bool readonly)
{
	struct blk_options o = { .path = p, .readonly = readonly };
	struct virtio_blk *out = (struct virtio_blk *)&o;	/* must be overwritten */
	int r;

	/* These fail before the transport is touched: no host needed. */
	r = virtio_blk_create(NULL, &o, "vblk-test", 0xd0000000, 5, &out);
	cr_assert_null(out);
	return r;
}

Test(blk_setup, missing_file)
{
	cr_assert_eq(create("/nonexistent/disk.img", false), -ENOENT);
	cr_assert_eq(create("/nonexistent/disk.img", true), -ENOENT);
}

Test(blk_setup, directory)
{
	cr_assert_eq(create("/tmp", false), -EISDIR);
	cr_assert_eq(create("/tmp", true), -EISDIR);
}

Test(blk_setup, not_a_file_or_block_device)
{
	cr_assert_eq(create("/dev/null", false), -EINVAL);
}

Test(blk_setup, size_not_a_multiple_of_512)
{
	make_image(1000, false);
	cr_assert_eq(create(path, false), -EINVAL);
	cr_assert_eq(open_dev(true, false, NULL), -EINVAL);
}

Test(blk_setup, empty_image)
{
	make_image(0, false);
	cr_assert_eq(open_dev(false, false, NULL), -EINVAL);
}

Test(blk_setup, no_path)
{
	cr_assert_eq(create(NULL, false), -EINVAL);
	cr_assert_eq(create("", false), -EINVAL);
}

Test(blk_setup, second_writer_is_locked_out)
{
	struct virtio_blk *first;

	make_image(DISK_SIZE, false);
	cr_assert_eq(open_dev(false, false, NULL), 0);
	first = b;
	cr_assert_eq(open_dev(true, false, NULL), -EBUSY);
	cr_assert_eq(open_dev(false, false, NULL), -EBUSY);
	virtio_blk_fini(first);
	free(first);
	cr_assert_eq(open_dev(false, false, NULL), 0);
}

Test(blk_setup, readers_share)
{
	struct virtio_blk *first;

	make_image(DISK_SIZE, false);
	cr_assert_eq(open_dev(true, false, NULL), 0);
	first = b;
	cr_assert_eq(open_dev(true, false, NULL), 0);
	virtio_blk_fini(first);
	free(first);
}

/* ---- End to end through the transport ---- */

#define RING_SIZE	8

static struct virtio_blk *blk;
static struct virtio_mmio_dev *vdev;

static void setup_e2e(void)
{
	struct blk_options o = { .path = path };

	make_image(DISK_SIZE, true);
	fake_driver_init(RING_SIZE);
	cr_assert_eq(virtio_blk_create(&fake_host, &o, "vblk0", 0xd0000000, 5, &blk), 0);
	vdev = &blk->dev;
}

static void teardown_e2e(void)
{
	if (blk) {
		virtio_blk_destroy(blk);
		blk = NULL;
		vdev = NULL;
	}
	fake_driver_fini();
	teardown();
}

/* What Linux's virtio_blk does at probe time, in register writes, with queue q only. */
static void driver_init(unsigned int q)
{
	uint64_t features;

	cr_assert_eq(drv_rd(vdev, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	cr_assert_eq(drv_rd(vdev, VIRTIO_MMIO_VERSION), 2);
	cr_assert_eq(drv_rd(vdev, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
	drv_wr(vdev, VIRTIO_MMIO_STATUS, 0);
	drv_wr(vdev, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	features = drv_device_features(vdev);
	cr_assert(features & (1ULL << VIRTIO_F_VERSION_1));
	cr_assert(features & (1ULL << VIRTIO_BLK_F_FLUSH));
	cr_assert(drv_negotiate(vdev, features));
	drv_wr(vdev, VIRTIO_MMIO_QUEUE_SEL, q);
	cr_assert_eq(drv_rd(vdev, VIRTIO_MMIO_QUEUE_NUM_MAX), BLK_QUEUE_SIZE);
	drv_setup_queue(vdev, q);
	drv_wr(vdev, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

#define WAIT_MS		5000	/* for completions on the queue's worker thread */

/* Waits for InterruptStatus bit `bit` (raised by a worker after it publishes). */
static bool wait_isr(struct virtio_mmio_dev *d, uint32_t bit)
{
	for (int i = 0; i < WAIT_MS * 10; i++) {
		if (drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & bit)
			return true;
		usleep(100);
	}
	return false;
}

/* Runs the event loop (where workers report broken rings) until d's status has `bit`. */
static bool wait_status(struct virtio_mmio_dev *d, uint32_t bit)
{
	for (int i = 0; i < WAIT_MS / 10; i++) {
		if (drv_rd(d, VIRTIO_MMIO_STATUS) & bit)
			return true;
		drv_run_loop(10);
	}
	return drv_rd(d, VIRTIO_MMIO_STATUS) & bit;
}

/* A read or write request: header, data, status byte, in fresh guest buffers. */
struct e2e_req {
	uint64_t hdr, data, status;
};

static struct e2e_req e2e_req(uint32_t type, uint64_t sector, uint32_t len)
{
	struct e2e_req r = { alloc_buf(sizeof(struct virtio_blk_outhdr)), alloc_buf(len),
			     alloc_buf(1) };
	struct virtio_blk_outhdr *h = gpa_ptr(r.hdr);

	h->type = htole32(type);
	h->sector = htole64(sector);
	*(uint8_t *)gpa_ptr(r.status) = 0xee;
	return r;
}

/* Offers r on queue q, a readable header then writable data and status, and kicks q. */
static uint16_t e2e_submit(unsigned int q, const struct e2e_req *r, uint32_t len)
{
	uint16_t head = drv_add(q, (struct drv_seg[]){
		{ r->hdr, sizeof(struct virtio_blk_outhdr), false },
		{ r->data, len, true },
		{ r->status, 1, true },
	}, 3);

	drv_kick(vdev, q);
	return head;
}

static void log_queues(void *d)
{
	virtio_mmio_log_queues(d);
}

static void e2e_read_request(unsigned int q)
{
	struct e2e_req r;
	uint64_t config_capacity;
	uint32_t id, len;
	uint16_t head;
	uint8_t *data;

	driver_init(q);
	virtio_mmio_io(vdev, VIRTIO_MMIO_CONFIG, (uint8_t *)&config_capacity, 8, false);
	cr_assert_eq(le64toh(config_capacity), DISK_SECTORS);

	r = e2e_req(VIRTIO_BLK_T_IN, 4, 1024);
	head = e2e_submit(q, &r, 1024);

	cr_assert(drv_wait_used(q, &id, &len, WAIT_MS));
	cr_assert_not(drv_used(q, &id, &len), "one request, one used element");
	cr_assert_eq(id, head);
	cr_assert_eq(len, 1025);
	cr_assert_eq(*(uint8_t *)gpa_ptr(r.status), VIRTIO_BLK_S_OK);
	data = gpa_ptr(r.data);
	for (size_t i = 0; i < 1024; i++)
		cr_assert_eq(data[i], pattern(4 * SECTOR + i), "byte %zu", i);
	cr_assert(wait_isr(vdev, VIRTIO_MMIO_INT_VRING));
	/*
	 * The worker took the kick from the eventfd, and counted it for vmm -v:
	 * perhaps after the request (it may have found the request on the ring
	 * while it was already awake), so the count is waited for.
	 */
	for (int i = 0; i < WAIT_MS && !virtio_mmio_eventfd_notifies(vdev); i++)
		usleep(1000);
	cr_assert_geq(virtio_mmio_eventfd_notifies(vdev), 1);
	cr_assert_eq(vdev->mmio_notifies, 1, "the fake driver's QueueNotify write");

	/* SIGUSR2's dump: the ring as the guest and the worker see it, and the batch. */
	{
		const char *out = capture_stderr(log_queues, vdev);
		char want[160];

		snprintf(want, sizeof(want), ": queue %u: offered 1, used 1 (0 not answered), ", q);
		cr_assert(strstr(out, want), "%s", out);
		snprintf(want, sizeof(want), ": queue %u, as its worker has it: offered 1, taken 1 "
			 "(0 waiting), used 1, ", q);
		cr_assert(strstr(out, want), "%s", out);
		snprintf(want, sizeof(want), ": queue %u: 1 requests answered in 1 batches (1.00 per "
			 "batch; 1 with fewer than 8 in flight)", q);
		cr_assert(strstr(out, want), "%s", out);
	}
}

Test(blk_e2e, read_through_queue_0, .init = setup_e2e, .fini = teardown_e2e)
{
	e2e_read_request(0);
}

Test(blk_e2e, read_through_last_queue, .init = setup_e2e, .fini = teardown_e2e)
{
	e2e_read_request(BLK_NUM_QUEUES - 1);
}

Test(blk_e2e, malformed_chain_needs_reset, .init = setup_e2e, .fini = teardown_e2e)
{
	uint64_t buf = alloc_buf(32);

	driver_init(0);
	/* A descriptor loop. */
	drv_set_desc(0, 0, buf, 16, VRING_DESC_F_NEXT, 1);
	drv_set_desc(0, 1, buf + 16, 16, VRING_DESC_F_NEXT, 0);
	drv_offer(0, 0);
	drv_kick(vdev, 0);
	cr_assert(wait_status(vdev, VIRTIO_CONFIG_S_NEEDS_RESET));
}

Test(blk_e2e, bad_request_completes_with_an_error, .init = setup_e2e, .fini = teardown_e2e)
{
	struct e2e_req r;
	uint32_t id, len;

	driver_init(0);
	r = e2e_req(VIRTIO_BLK_T_IN, DISK_SECTORS, 512);
	e2e_submit(0, &r, 512);
	cr_assert(drv_wait_used(0, &id, &len, WAIT_MS));
	cr_assert_not(drv_used(0, &id, &len));
	cr_assert_eq(len, 1);
	cr_assert_eq(*(uint8_t *)gpa_ptr(r.status), VIRTIO_BLK_S_IOERR);
	cr_assert_not(drv_rd(vdev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* ---- Asynchronous completion: many in flight, a blocked disk, a draining stop ---- */

#define BIG_RING	BLK_QUEUE_SIZE	/* fake_driver_init(BLK_QUEUE_SIZE): 64 chains of 3 */
#define NREQ		64
#define REQ_LEN		4096

/*
 * A disk on an engine of the given kind (io_uring tests are skipped where the
 * kernel refuses it), the fake driver's rings of ring entries. With pipe, its
 * reads block until the test writes to a pipe: the pipe's read end is put in
 * place of the image's descriptor before the engines are made (an engine
 * reads a pipe in order).
 */
static int pipe_fds[2] = { -1, -1 };

static void setup_disk(enum blk_io_kind kind, uint16_t ring, bool pipe_disk)
{
	struct blk_options o = { .path = path };

	make_image(DISK_SIZE, true);
	fake_driver_init(ring);
	blk = calloc(1, sizeof(*blk));
	cr_assert_not_null(blk);
	cr_assert_eq(virtio_blk_init(blk, &o, "vblk0"), 0);
	blk->io_kind = kind;
	if (pipe_disk) {
		cr_assert_eq(pipe(pipe_fds), 0);
		cr_assert_geq(dup2(pipe_fds[0], blk->fd), 0);
	}
	if (virtio_blk_attach(blk, &fake_host, 0xd0000000, 5) < 0 && kind == BLK_IO_URING)
		cr_skip_test("no io_uring here");
	vdev = &blk->dev;
	cr_assert_not_null(vdev->ops, "the transport is not set up");
}

static void setup_big_uring(void) { setup_disk(BLK_IO_URING, BLK_QUEUE_SIZE, false); }
static void setup_big_sync(void) { setup_disk(BLK_IO_SYNC, BLK_QUEUE_SIZE, false); }
static void setup_pipe_uring(void) { setup_disk(BLK_IO_URING, RING_SIZE, true); }
static void setup_pipe_sync(void) { setup_disk(BLK_IO_SYNC, RING_SIZE, true); }

/* Offers r on queue q as e2e_submit does, without kicking; returns its head. */
static uint16_t e2e_offer(unsigned int q, const struct e2e_req *r, uint32_t type, uint32_t len)
{
	bool write = type == VIRTIO_BLK_T_OUT;

	return drv_add(q, (struct drv_seg[]){
		{ r->hdr, sizeof(struct virtio_blk_outhdr), false },
		{ r->data, len, !write },
		{ r->status, 1, true },
	}, 3);
}

static uint8_t req_byte(unsigned int i, size_t j)
{
	return (uint8_t)(i * 7 + j * 13 + 5);
}

static void many_in_flight(void)
{
	static struct e2e_req r[NREQ];
	static int by_head[BIG_RING];
	unsigned int seen[NREQ] = { 0 };
	uint32_t id, len;

	driver_init(0);
	for (unsigned int i = 0; i < BIG_RING; i++)
		by_head[i] = -1;
	/* Every other request writes its own 4 KiB; the others read theirs; one kick for all. */
	for (unsigned int i = 0; i < NREQ; i++) {
		uint32_t type = i % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
		uint8_t *data;

		r[i] = e2e_req(type, 8ULL * i, REQ_LEN);
		data = gpa_ptr(r[i].data);
		for (size_t j = 0; type == VIRTIO_BLK_T_OUT && j < REQ_LEN; j++)
			data[j] = req_byte(i, j);
		by_head[e2e_offer(0, &r[i], type, REQ_LEN)] = (int)i;
	}
	drv_wr(vdev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);

	for (unsigned int n = 0; n < NREQ; n++) {
		unsigned int i;
		uint8_t *data;

		cr_assert(drv_wait_used(0, &id, &len, WAIT_MS), "%u of %d requests completed", n,
			  NREQ);
		cr_assert_lt(id, BIG_RING);
		cr_assert_geq(by_head[id], 0, "used element for head %u, never offered", id);
		i = (unsigned int)by_head[id];
		cr_assert_eq(seen[i]++, 0, "request %u completed twice", i);
		cr_assert_eq(*(uint8_t *)gpa_ptr(r[i].status), VIRTIO_BLK_S_OK, "request %u", i);
		cr_assert_eq(len, i % 2 ? 1 : REQ_LEN + 1, "request %u", i);
		data = gpa_ptr(r[i].data);
		for (size_t j = 0; i % 2 == 0 && j < REQ_LEN; j++)
			cr_assert_eq(data[j], pattern(8ULL * i * SECTOR + j), "request %u byte %zu",
				     i, j);
	}
	cr_assert_not(drv_wait_used(0, &id, &len, 50), "more used elements than requests");
	/* Idle again: kicks are back on (EVENT_IDX: at the next chain the driver offers). */
	for (int t = 0; t < WAIT_MS && drv_avail_event(0) != NREQ; t++)
		usleep(1000);
	cr_assert_eq(drv_avail_event(0), NREQ);
	for (unsigned int i = 1; i < NREQ; i += 2) {
		uint8_t want[REQ_LEN];

		for (size_t j = 0; j < REQ_LEN; j++)
			want[j] = req_byte(i, j);
		expect_image_bytes(8ULL * i * SECTOR, want, REQ_LEN);
	}
	cr_assert(wait_isr(vdev, VIRTIO_MMIO_INT_VRING));
}

Test(blk_e2e, uring_many_requests_in_flight_complete_once, .init = setup_big_uring,
     .fini = teardown_e2e, .timeout = 30) { many_in_flight(); }
Test(blk_e2e, sync_many_requests_in_flight_complete_once, .init = setup_big_sync,
     .fini = teardown_e2e, .timeout = 30) { many_in_flight(); }

/*
 * A VM's reboot destroys its disks and opens their images again at once. The image's
 * lock must be free by then, though an io_uring engine's ring, which holds the image's
 * descriptor as a registered file, is torn down by the kernel later.
 */
static void image_free_after_destroy(void)
{
	struct blk_options o = { .path = path };
	enum blk_io_kind kind = blk->io_kind;
	struct e2e_req r;
	uint32_t id, len;

	for (int round = 0; round < 20; round++) {
		driver_init(0);
		r = e2e_req(VIRTIO_BLK_T_IN, 4, 512);
		e2e_submit(0, &r, 512);
		cr_assert(drv_wait_used(0, &id, &len, WAIT_MS));
		virtio_blk_destroy(blk);
		vdev = NULL;
		blk = calloc(1, sizeof(*blk));
		cr_assert_not_null(blk);
		cr_assert_eq(virtio_blk_init(blk, &o, "vblk0"), 0,
			     "round %d: the image is still locked after its disk was destroyed",
			     round);
		blk->io_kind = kind;
		fake_driver_fini();
		fake_driver_init(BLK_QUEUE_SIZE);
		cr_assert_eq(virtio_blk_attach(blk, &fake_host, 0xd0000000, 5), 0);
		vdev = &blk->dev;
	}
}

Test(blk_e2e, uring_image_lock_is_released_at_destroy, .init = setup_big_uring,
     .fini = teardown_e2e, .timeout = 30) { image_free_after_destroy(); }
Test(blk_e2e, sync_image_lock_is_released_at_destroy, .init = setup_big_sync,
     .fini = teardown_e2e, .timeout = 30) { image_free_after_destroy(); }

static void teardown_pipe_disk(void)
{
	drv_loop_stop();
	teardown_e2e();
	for (int i = 0; i < 2; i++)
		if (pipe_fds[i] >= 0)
			close(pipe_fds[i]);
	pipe_fds[0] = pipe_fds[1] = -1;
}

static void feed_pipe(size_t len)
{
	uint8_t buf[SECTOR];

	cr_assert_leq(len, sizeof(buf));
	fill_pattern(buf, 0, len);
	cr_assert_eq(write(pipe_fds[1], buf, len), (ssize_t)len);
}

static void blocked_disk(void)
{
	struct virtio_rng *rng;
	struct e2e_req r;
	uint32_t id, len;
	uint16_t head;

	/* blk on queue 1 (ring area 1), rng on its queue 0 (ring area 0), one event loop. */
	driver_init(1);
	cr_assert_eq(virtio_rng_create(&fake_host, "virtio-rng0", 0xd0001000, 6, &rng), 0);
	drv_start(&rng->dev, 0);
	drv_loop_start();

	r = e2e_req(VIRTIO_BLK_T_IN, 0, SECTOR);
	head = e2e_offer(1, &r, VIRTIO_BLK_T_IN, SECTOR);
	drv_wr(vdev, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	cr_assert_not(drv_wait_used(1, &id, &len, 100), "a read of an empty pipe completed");

	/* The loop serves rng, and blk's registers answer, while blk's read is stuck. */
	for (int i = 0; i < 3; i++) {
		uint64_t buf = alloc_buf(64);

		drv_add(0, &(struct drv_seg){ buf, 64, true }, 1);
		drv_wr(&rng->dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
		cr_assert(drv_wait_used(0, &id, &len, WAIT_MS), "rng request %d is stuck", i);
		cr_assert_eq(len, 64);
		cr_assert(drv_rd(vdev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
	}
	cr_assert_not(drv_used(1, &id, &len));

	feed_pipe(SECTOR);
	cr_assert(drv_wait_used(1, &id, &len, WAIT_MS));
	cr_assert_eq(id, head);
	cr_assert_eq(len, SECTOR + 1);
	cr_assert_eq(*(uint8_t *)gpa_ptr(r.status), VIRTIO_BLK_S_OK);
	for (size_t i = 0; i < SECTOR; i++)
		cr_assert_eq(((uint8_t *)gpa_ptr(r.data))[i], pattern(i), "byte %zu", i);

	drv_loop_stop();
	virtio_rng_destroy(rng);
}

Test(blk_e2e, uring_blocked_disk_blocks_no_other_device, .init = setup_pipe_uring,
     .fini = teardown_pipe_disk, .timeout = 30) { blocked_disk(); }
Test(blk_e2e, sync_blocked_disk_blocks_no_other_device, .init = setup_pipe_sync,
     .fini = teardown_pipe_disk, .timeout = 30) { blocked_disk(); }

static atomic_bool paused;

static void *pause_fn(void *arg)
{
	struct virtio_mmio_dev *d = arg;

	pthread_mutex_lock(&d->lock);
	virtio_mmio_pause(d);
	pthread_mutex_unlock(&d->lock);
	atomic_store(&paused, true);
	return NULL;
}

static void stop_drains(void)
{
	struct e2e_req r1, r2;
	pthread_t t;
	uint32_t id, len;
	uint16_t h1, h2;

	driver_init(0);
	r1 = e2e_req(VIRTIO_BLK_T_IN, 0, SECTOR);
	h1 = e2e_offer(0, &r1, VIRTIO_BLK_T_IN, SECTOR);
	drv_wr(vdev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert_not(drv_wait_used(0, &id, &len, 100));

	/* The pause waits for the read in flight. */
	atomic_store(&paused, false);
	cr_assert_eq(pthread_create(&t, NULL, pause_fn, vdev), 0);
	usleep(100 * 1000);
	cr_assert_not(atomic_load(&paused), "the pause did not wait for the request in flight");
	feed_pipe(SECTOR);
	pthread_join(t, NULL);
	cr_assert(drv_used(0, &id, &len), "the request in flight completed before the pause");
	cr_assert_eq(id, h1);
	cr_assert_eq(len, SECTOR + 1);
	cr_assert_eq(vdev->queues[0].last_avail_idx, 1);
	cr_assert_eq(vdev->queues[0].used_idx, 1);

	/* Offered and kicked while paused: nobody serves it until the resume. */
	r2 = e2e_req(VIRTIO_BLK_T_IN, 1, SECTOR);
	h2 = e2e_offer(0, &r2, VIRTIO_BLK_T_IN, SECTOR);
	drv_wr(vdev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	feed_pipe(SECTOR);
	cr_assert_not(drv_wait_used(0, &id, &len, 100));
	pthread_mutex_lock(&vdev->lock);
	virtio_mmio_resume(vdev);
	pthread_mutex_unlock(&vdev->lock);
	cr_assert(drv_wait_used(0, &id, &len, WAIT_MS));
	cr_assert_eq(id, h2);
	cr_assert_eq(*(uint8_t *)gpa_ptr(r2.status), VIRTIO_BLK_S_OK);
	cr_assert_not(drv_wait_used(0, &id, &len, 50), "a request was repeated");
}

Test(blk_e2e, uring_stop_drains_then_resumes_from_the_saved_position, .init = setup_pipe_uring,
     .fini = teardown_pipe_disk, .timeout = 30) { stop_drains(); }
Test(blk_e2e, sync_stop_drains_then_resumes_from_the_saved_position, .init = setup_pipe_sync,
     .fini = teardown_pipe_disk, .timeout = 30) { stop_drains(); }

/* ---- Migration ---- */

/* The destination: the same disk, opened once the source let go of it (its lock). */
static struct virtio_blk *create_dst(void)
{
	struct blk_options o = { .path = path };
	struct virtio_blk *d;
	int r;

	/* An io_uring instance lets go of the image (and its lock) a moment after it is closed. */
	for (int i = 0; i < 200; i++) {
		r = virtio_blk_create(&fake_host, &o, "vblk1", 0xd0001000, 6, &d);
		if (r != -EBUSY)
			break;
		usleep(10000);
	}
	cr_assert_eq(r, 0, "the destination's disk: %s", strerror(-r));
	return d;
}

/* A write request of SECTOR bytes of value v at sector s, offered on queue q (no kick). */
static uint16_t offer_write(unsigned int q, uint64_t s, uint8_t v, struct e2e_req *r)
{
	*r = e2e_req(VIRTIO_BLK_T_OUT, s, SECTOR);
	memset(gpa_ptr(r->data), v, SECTOR);
	return drv_add(q, (struct drv_seg[]){
		{ r->hdr, sizeof(struct virtio_blk_outhdr), false },
		{ r->data, SECTOR, false },
		{ r->status, 1, true },
	}, 3);
}

Test(blk_e2e, migrates_mid_stream_without_loss_or_duplicate, .init = setup_e2e,
     .fini = teardown_e2e)
{
	struct drv_regs src_regs, dst_regs;
	/* A ring of RING_SIZE descriptors holds two chains of three in flight. */
	struct e2e_req done[2], pending[2];
	struct virtio_blk *to;
	uint16_t heads[2];
	uint32_t id, len;
	uint8_t want[SECTOR];
	struct sbuf w;

	driver_init(0);
	for (int i = 0; i < 2; i++) {
		done[i] = e2e_req(VIRTIO_BLK_T_IN, (uint64_t)i, SECTOR);
		e2e_submit(0, &done[i], SECTOR);
		cr_assert(drv_wait_used(0, &id, &len, WAIT_MS));
	}
	cr_assert_not(drv_used(0, &id, &len));
	/* Paused; then two writes the guest had offered and kicked that no worker took. */
	pthread_mutex_lock(&vdev->lock);
	virtio_mmio_pause(vdev);
	pthread_mutex_unlock(&vdev->lock);
	for (int i = 0; i < 2; i++)
		heads[i] = offer_write(0, 100 + (uint64_t)i, (uint8_t)(0xa0 + i), &pending[i]);
	drv_wr(vdev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	drv_pause_save(vdev, &w);
	drv_read_all(vdev, &src_regs);
	cr_assert_not(drv_used(0, &id, &len), "nothing ran while paused");
	virtio_blk_destroy(blk);
	blk = NULL;

	to = create_dst();
	blk = to;
	vdev = &to->dev;
	drv_expect_truncations_refused(vdev, &w);
	cr_assert_eq(drv_load(vdev, w.data, w.len), 0);
	drv_read_all(vdev, &dst_regs);
	drv_expect_same_regs(&src_regs, &dst_regs);
	drv_resume(vdev);
	for (int i = 0; i < 2; i++) {
		cr_assert(drv_wait_used(0, &id, &len, WAIT_MS), "write %d was lost", i);
		cr_assert_eq(id, heads[i]);
		cr_assert_eq(len, 1);
		cr_assert_eq(*(uint8_t *)gpa_ptr(pending[i].status), VIRTIO_BLK_S_OK, "status %d", *(uint8_t *)gpa_ptr(pending[i].status));
		memset(want, 0xa0 + i, sizeof(want));
		expect_image_bytes((100 + (uint64_t)i) * SECTOR, want, SECTOR);
	}
	cr_assert_not(drv_wait_used(0, &id, &len, 100), "a request was served twice");
	/* The destination takes new requests. */
	done[0] = e2e_req(VIRTIO_BLK_T_IN, 100, SECTOR);
	heads[0] = e2e_submit(0, &done[0], SECTOR);
	cr_assert(drv_wait_used(0, &id, &len, WAIT_MS));
	cr_assert_eq(id, heads[0]);
	memset(want, 0xa0, sizeof(want));
	cr_assert_arr_eq(gpa_ptr(done[0].data), want, SECTOR);
	sbuf_free(&w);
}

Test(blk_e2e, load_refuses_a_disk_of_another_size, .init = setup_e2e, .fini = teardown_e2e)
{
	struct sbuf w;

	driver_init(0);
	drv_pause_save(vdev, &w);
	virtio_blk_destroy(blk);
	cr_assert_eq(truncate(path, DISK_SIZE * 2), 0);
	blk = create_dst();
	vdev = &blk->dev;
	cr_assert_eq(drv_load(vdev, w.data, w.len), -EINVAL);
	cr_assert_eq(drv_rd(vdev, VIRTIO_MMIO_STATUS), 0, "nothing changed");
	virtio_blk_destroy(blk);
	cr_assert_eq(truncate(path, DISK_SIZE), 0);
	blk = create_dst();
	vdev = &blk->dev;
	cr_assert_eq(drv_load(vdev, w.data, w.len), 0);
	sbuf_free(&w);
}

Test(blk_e2e, completions_mark_data_status_and_used_ring_dirty, .init = setup_e2e,
     .fini = teardown_e2e)
{
	struct dirty_log log;
	struct e2e_req r, wr_req;
	uint64_t untouched;
	uint32_t id, len;

	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	driver_init(0);
	r = e2e_req(VIRTIO_BLK_T_IN, 8, 8192);
	untouched = alloc_buf(8192) + 4096;	/* a page of its own */
	wr_req = e2e_req(VIRTIO_BLK_T_OUT, 8, 4096);
	fake_driver_log_dirty(&log);
	e2e_submit(0, &r, 8192);
	cr_assert(drv_wait_used(0, &id, &len, WAIT_MS));
	cr_assert(drv_page_dirty(&log, drv_used_gpa(0)), "the used ring");
	cr_assert(drv_page_dirty(&log, r.data), "the data read, first page");
	cr_assert(drv_page_dirty(&log, r.data + 8191), "and last");
	cr_assert(drv_page_dirty(&log, r.status), "the status byte");
	cr_assert_not(drv_page_dirty(&log, untouched));
	/* A write reads guest RAM: only its status byte (and the ring) are written. */
	dirty_log_collect(&log, 0, (uint64_t[64]){ 0 }, 64);
	cr_assert_eq(drv_dirty_pages(&log), 0);
	e2e_submit(0, &wr_req, 4096);
	cr_assert(drv_wait_used(0, &id, &len, WAIT_MS));
	cr_assert(drv_page_dirty(&log, wr_req.status));
	cr_assert_not(drv_page_dirty(&log, wr_req.data + 64) && wr_req.data / 4096 !=
		      wr_req.status / 4096, "a write's data is not dirtied");
	fake_driver_log_dirty(NULL);
	dirty_log_destroy(&log);
}
