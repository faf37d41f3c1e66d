// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the migration stream (vmm/base/mig_stream.c): CRC-32C, round trips
 * of every section kind plain and chunked, over a memfd, a pipe and a socket pair;
 * a stream with any one byte changed or cut at any length is refused; bad magic,
 * newer versions, oversized chunks and sections; a silent peer times out, a closed
 * one is -EPIPE without SIGPIPE; misuse by a caller is a sticky -EINVAL; and no test
 * leaves an fd open.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vmm/base/mig_stream.h"

TestSuite(mig_crc);
TestSuite(mig_stream);
TestSuite(mig_bad);
TestSuite(mig_io);

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

/* Deterministic test bytes: pattern(seed, i). */
static void fill(void *p, size_t len, uint32_t seed)
{
	uint8_t *b = p;
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (uint8_t)x;
	}
}

static int new_memfd(void)
{
	int fd = memfd_create("mig-test", MFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	return fd;
}

/* A memfd holding data[0, len), positioned at 0. */
static int memfd_with(const void *data, size_t len)
{
	int fd = new_memfd();

	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* The whole content of fd (malloc'ed, *len bytes); fd's position is left at 0. */
static uint8_t *slurp(int fd, size_t *len)
{
	struct stat st;
	uint8_t *p;

	cr_assert_eq(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	p = malloc(*len ? *len : 1);
	cr_assert_not_null(p);
	cr_assert_eq(pread(fd, p, *len, 0), (ssize_t)*len);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	return p;
}

/* ---- CRC-32C ---- */

static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

Test(mig_crc, known_values)
{
	uint8_t b[32];

	cr_assert_eq(mig_crc32c(0, "123456789", 9), 0xe3069283u);
	cr_assert_eq(mig_crc32c(0, "", 0), 0);
	cr_assert_eq(mig_crc32c(0x1234, NULL, 0), 0x1234);
	/* RFC 3720 (iSCSI), B.4. */
	memset(b, 0, sizeof(b));
	cr_assert_eq(mig_crc32c(0, b, 32), 0x8a9136aau);
	memset(b, 0xff, sizeof(b));
	cr_assert_eq(mig_crc32c(0, b, 32), 0x62a8ab43u);
	for (int i = 0; i < 32; i++)
		b[i] = (uint8_t)i;
	cr_assert_eq(mig_crc32c(0, b, 32), 0x46dd794eu);
}

/* Checksumming while copying: the same CRC, the same bytes, at every alignment and length. */
Test(mig_crc, copy_checksums_what_it_stores)
{
	static uint8_t src[4096 + 16], dst[4096 + 16];

	fill(src, sizeof(src), 11);
	for (int soft = 0; soft < 2; soft++)
		for (size_t off = 0; off < 9; off++)
			for (size_t len = 0; len < 4096; len += len < 40 ? 1 : 509) {
				uint32_t want = crc_bitwise(0x5a5a, src + off, len), got;

				memset(dst, 0xcc, sizeof(dst));
				got = soft ? mig_crc32c_copy_soft(0x5a5a, dst + 3, src + off, len) :
					     mig_crc32c_copy(0x5a5a, dst + 3, src + off, len);
				cr_assert_eq(got, want, "%s, off %zu len %zu", soft ? "soft" : "picked",
					     off, len);
				cr_assert_arr_eq(dst + 3, src + off, len);
				cr_assert_eq(dst[2], 0xcc);
				cr_assert_eq(dst[3 + len], 0xcc, "wrote past the end, len %zu", len);
			}
}

/* The sliced version agrees with the bitwise definition at every alignment and split. */
Test(mig_crc, matches_bitwise)
{
	static uint8_t buf[4096 + 16];

	fill(buf, sizeof(buf), 7);
	for (size_t off = 0; off < 16; off++)
		for (size_t len = 0; len < 300; len += 7) {
			uint32_t want = crc_bitwise(0, buf + off, len);
			size_t cut = len / 3;

			cr_assert_eq(mig_crc32c(0, buf + off, len), want, "off %zu len %zu", off, len);
			cr_assert_eq(mig_crc32c(mig_crc32c(0, buf + off, cut), buf + off + cut,
						len - cut), want, "continued, off %zu len %zu", off, len);
			/* The tables, whichever one mig_crc32c() picked on this CPU. */
			cr_assert_eq(mig_crc32c_soft(0, buf + off, len), want, "soft, off %zu", off);
			cr_assert_eq(mig_crc32c_soft(mig_crc32c(0, buf + off, cut), buf + off + cut,
						     len - cut), want, "mixed, off %zu len %zu", off, len);
		}
	cr_assert_eq(mig_crc32c(0, buf, 4096), crc_bitwise(0, buf, 4096));
}

/* ---- a stream with every kind of section ---- */

#define RAM_LEN		300
#define BIG_RAM		(3u * MIG_BUF_SIZE + 123)

static const struct {
	uint16_t kind;
	bool chunked;
	uint32_t instance, version;
	size_t len;
	size_t chunks[3];	/* chunked: the chunk lengths written */
} small[] = {
	{ MIG_KIND_CONFIG, false, 0, 3, 7, { 0 } },
	{ MIG_KIND_VCPU, false, 1, 2, 16, { 0 } },
	{ MIG_KIND_BACKEND, true, 2, 1, 0, { 3, 5 } },
	{ MIG_KIND_RAM, false, 0, 1, RAM_LEN, { 0 } },
	{ MIG_KIND_SERIAL, false, 0, 1, 0, { 0 } },
	{ MIG_KIND_SYNC, false, 0, 1, 0, { 0 } },
	{ MIG_KIND_VERIFY, true, 0, 1, 0, { 8, 4 } },
	{ MIG_KIND_DEVICE, true, 4, 9, 0, { 0 } },
	{ MIG_KIND_VM_ARCH, true, 0, 1, 0, { 1 } },
	{ MIG_KIND_DEVICE, false, 5, 1, 33, { 0 } },
};

static void write_small(struct mig_stream *w)
{
	uint8_t data[RAM_LEN];

	cr_assert_eq(mig_write_header(w, MIG_F_LIVE, "x86_64"), 0);
	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		fill(data, sizeof(data), (uint32_t)i);
		if (!small[i].chunked) {
			cr_assert_eq(mig_write_section(w, small[i].kind, small[i].instance,
						       small[i].version, data, small[i].len), 0);
			continue;
		}
		cr_assert_eq(mig_chunked_begin(w, small[i].kind, small[i].instance,
					       small[i].version), 0);
		for (size_t c = 0, off = 0; c < 3 && small[i].chunks[c]; c++) {
			cr_assert_eq(mig_chunk_write(w, data + off, small[i].chunks[c]), 0);
			off += small[i].chunks[c];
		}
		cr_assert_eq(mig_chunked_end(w), 0);
	}
	cr_assert_eq(mig_write_end(w), 0);
}

/* The small stream's bytes (malloc'ed). */
static uint8_t *small_stream(size_t *len)
{
	struct mig_stream w;
	uint8_t *p;
	int fd = new_memfd();

	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	write_small(&w);
	cr_assert_eq(w.bytes, (uint64_t)lseek(fd, 0, SEEK_CUR));
	mig_stream_fini(&w);
	p = slurp(fd, len);
	close(fd);
	return p;
}

/*
 * Reads a stream the way a destination does: the header, then each section (plain ones
 * whole, RAM in pieces of 100 bytes, chunked ones chunk by chunk) until END. Returns 0
 * with *digest the crc of every section's identity and bytes, or the first error.
 */
static int consume(int fd, uint32_t *digest)
{
	static uint8_t chunk[MIG_CHUNK_MAX];
	struct mig_stream s;
	struct mig_section sec;
	uint32_t d = 0;
	int r;

	cr_assert_eq(mig_stream_init(&s, fd, false, 5000), 0);
	r = mig_read_header(&s);
	while (!r) {
		r = mig_section_next(&s, &sec);
		if (r)
			break;
		{
			uint64_t id[] = { sec.kind, sec.flags, sec.instance, sec.version, sec.len };

			d = mig_crc32c(d, id, sizeof(id));
		}
		if (sec.kind == MIG_KIND_END)
			break;
		if (sec.flags & MIG_SECTION_CHUNKED) {
			ssize_t n;

			while ((n = mig_chunk_read(&s, chunk, sizeof(chunk))) > 0)
				d = mig_crc32c(d, chunk, (size_t)n);
			r = (int)n;
		} else if (sec.kind == MIG_KIND_RAM) {
			uint8_t piece[100];

			for (uint64_t left = sec.len; left && !r; ) {
				size_t n = left < sizeof(piece) ? (size_t)left : sizeof(piece);

				r = mig_section_read(&s, piece, n);
				d = mig_crc32c(d, piece, n);
				left -= n;
			}
			if (!r)
				r = mig_section_finish(&s);
		} else {
			void *body;

			r = mig_section_read_all(&s, &body);
			if (!r)
				d = mig_crc32c(d, body, sec.len);
			free(body);
		}
	}
	if (r)
		cr_assert_str_not_empty(mig_stream_why(&s), "an error (%d) has a reason", r);
	cr_assert_eq(mig_section_next(&s, &sec), r ? r : -EINVAL, "sticky / nothing after END");
	mig_stream_fini(&s);
	mig_stream_fini(&s);
	*digest = d;
	return r;
}

Test(mig_stream, round_trip_every_kind)
{
	static uint8_t chunk[MIG_CHUNK_MAX];
	uint8_t want[RAM_LEN], got[RAM_LEN];
	int fds = count_fds(), fd = new_memfd();
	struct mig_stream w, s;
	struct mig_section sec;

	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	write_small(&w);
	mig_stream_fini(&w);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);

	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_str_eq(s.arch, "x86_64");
	cr_assert_eq(s.flags, MIG_F_LIVE);
	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		size_t total = 0;

		fill(want, sizeof(want), (uint32_t)i);
		cr_assert_eq(mig_section_next(&s, &sec), 0, "section %zu", i);
		cr_assert_eq(sec.kind, small[i].kind);
		cr_assert_eq(sec.instance, small[i].instance);
		cr_assert_eq(sec.version, small[i].version);
		cr_assert_eq(!!(sec.flags & MIG_SECTION_CHUNKED), small[i].chunked);
		if (!small[i].chunked) {
			cr_assert_eq(sec.len, small[i].len);
			cr_assert_eq(mig_section_read(&s, got, small[i].len), 0);
			cr_assert_arr_eq(got, want, small[i].len);
			cr_assert_eq(mig_section_finish(&s), 0);
			continue;
		}
		cr_assert_eq(sec.len, 0);
		for (size_t c = 0; c < 3 && small[i].chunks[c]; c++) {
			cr_assert_eq(mig_chunk_read(&s, chunk, sizeof(chunk)),
				     (ssize_t)small[i].chunks[c], "section %zu chunk %zu", i, c);
			cr_assert_arr_eq(chunk, want + total, small[i].chunks[c]);
			total += small[i].chunks[c];
		}
		cr_assert_eq(mig_chunk_read(&s, chunk, sizeof(chunk)), 0, "the 0-length frame");
		cr_assert_eq(mig_chunk_read(&s, chunk, sizeof(chunk)), -EINVAL, "closed");
		s.err = 0;	/* the misuse above is sticky; go on reading */
		s.why[0] = '\0';
	}
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_END);
	cr_assert_eq(sec.len, 0);
	cr_assert_eq(s.bytes, (uint64_t)lseek(fd, 0, SEEK_END), "every byte read, nothing after");
	cr_assert_eq(mig_section_next(&s, &sec), -EINVAL, "nothing follows END");
	mig_stream_fini(&s);
	close(fd);
	cr_assert_eq(count_fds(), fds);
}

Test(mig_stream, zero_length_chunked_and_plain)
{
	int fds = count_fds(), fd = new_memfd();
	struct mig_stream w, s;
	struct mig_section sec;
	uint8_t b[8];
	void *body;

	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, 0, "aarch64"), 0);
	cr_assert_eq(mig_chunked_begin(&w, MIG_KIND_BACKEND, 7, 1), 0);
	cr_assert_eq(mig_chunk_write(&w, b, 0), 0, "a no-op");
	cr_assert_eq(mig_section_end(&w), 0, "section_end closes a chunked section too");
	cr_assert_eq(mig_write_section(&w, MIG_KIND_CONFIG, 0, 1, NULL, 0), 0);
	cr_assert_eq(mig_write_end(&w), 0);
	mig_stream_fini(&w);
	/* 36 + (28 + 4 + 4) + (28 + 4) + 28 */
	cr_assert_eq(lseek(fd, 0, SEEK_CUR), 36 + 36 + 32 + 28);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);

	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_str_eq(s.arch, "aarch64");
	cr_assert_eq(s.flags, 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_BACKEND);
	cr_assert_eq(mig_chunk_read(&s, b, sizeof(b)), 0, "no state at all");
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_CONFIG);
	cr_assert_eq(mig_section_read_all(&s, &body), 0);
	cr_assert_not_null(body, "a zero-length body is still a buffer to free");
	free(body);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_END);
	mig_stream_fini(&s);
	close(fd);
	cr_assert_eq(count_fds(), fds);
}

/*
 * A back-end state of many chunks, MIG_CHUNK_MAX ones included and far more than the
 * stream's buffer, written as a back-end delivers it (odd sizes, one write longer than
 * a chunk, which goes out as several) and read back a chunk at a time.
 */
Test(mig_stream, many_chunks_larger_than_the_buffer)
{
	static const size_t sizes[] = { 1, MIG_CHUNK_MAX, 4095, MIG_CHUNK_MAX, 65536, 3,
					 2 * MIG_CHUNK_MAX + 17, 100000, MIG_CHUNK_MAX - 1 };
	static uint8_t chunk[MIG_CHUNK_MAX];
	size_t total = 0, got = 0, nchunks = 0;
	int fds = count_fds(), fd = new_memfd();
	struct mig_stream w, s;
	struct mig_section sec;
	uint8_t *state;
	ssize_t n;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		total += sizes[i];
	cr_assert_gt(total, 8 * MIG_BUF_SIZE);
	state = malloc(total);
	cr_assert_not_null(state);
	fill(state, total, 99);

	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, 0, "x86_64"), 0);
	cr_assert_eq(mig_chunked_begin(&w, MIG_KIND_BACKEND, 0, 1), 0);
	for (size_t i = 0, off = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		cr_assert_eq(mig_chunk_write(&w, state + off, sizes[i]), 0);
		off += sizes[i];
	}
	cr_assert_eq(mig_chunked_end(&w), 0);
	cr_assert_eq(mig_write_end(&w), 0);
	mig_stream_fini(&w);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);

	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	while ((n = mig_chunk_read(&s, chunk, sizeof(chunk))) > 0) {
		cr_assert_leq(got + (size_t)n, total);
		cr_assert_arr_eq(chunk, state + got, (size_t)n, "chunk %zu", nchunks);
		got += (size_t)n;
		nchunks++;
	}
	cr_assert_eq(n, 0, "%zd: %s", n, mig_stream_why(&s));
	cr_assert_eq(got, total);
	cr_assert_eq(nchunks, sizeof(sizes) / sizeof(sizes[0]) + 2, "the long write was split");
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_END);
	mig_stream_fini(&s);
	free(state);
	close(fd);
	cr_assert_eq(count_fds(), fds);
}

/*
 * RAM sections may be longer than MIG_SECTION_MAX and are read in pieces; written in
 * pieces of every size, large ones bypassing the buffer.
 */
Test(mig_stream, ram_larger_than_section_max)
{
	const size_t len = MIG_SECTION_MAX + 4096 + 5;
	int fds = count_fds(), fd = new_memfd();
	struct mig_stream w, s;
	struct mig_section sec;
	uint8_t *ram, *back;
	size_t off, piece;
	void *body;

	ram = malloc(len);
	back = malloc(len);
	cr_assert(ram && back);
	fill(ram, len, 5);
	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, MIG_F_LIVE, "x86_64"), 0);
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_RAM, 0, 1, len), 0);
	for (off = 0, piece = 1; off < len; off += piece, piece = piece * 3 + 1) {
		piece = piece < len - off ? piece : len - off;
		cr_assert_eq(mig_section_write(&w, ram + off, piece), 0);
	}
	cr_assert_eq(mig_section_end(&w), 0);
	cr_assert_eq(mig_write_end(&w), 0);
	mig_stream_fini(&w);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);

	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_RAM);
	cr_assert_eq(sec.len, len);
	for (off = 0, piece = 7; off < len; off += piece, piece = piece * 2 + 3) {
		piece = piece < len - off ? piece : len - off;
		cr_assert_eq(mig_section_read(&s, back + off, piece), 0);
	}
	cr_assert_arr_eq(back, ram, len);
	cr_assert_eq(mig_section_finish(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_END);
	mig_stream_fini(&s);

	/* read_all refuses it: a whole body is at most MIG_SECTION_MAX. */
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_section_read_all(&s, &body), -EBADMSG);
	cr_assert_null(body);
	mig_stream_fini(&s);

	free(ram);
	free(back);
	close(fd);
	cr_assert_eq(count_fds(), fds);
}

/*
 * mig_section_write_live (guest RAM that may change while it is sent) interleaved with
 * plain writes, in pieces smaller and larger than the stream's buffer: the same bytes and
 * a checksum that agrees; outside a section or past its length it is refused.
 */
Test(mig_stream, live_writes_copy_then_checksum)
{
	const size_t len = 3 * MIG_BUF_SIZE + 12345;
	int fd = new_memfd();
	struct mig_stream w, s;
	struct mig_section sec;
	uint8_t *ram, *back;
	size_t off, piece;
	unsigned int i = 0;

	ram = malloc(len);
	back = malloc(len);
	cr_assert(ram && back);
	fill(ram, len, 9);
	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, MIG_F_LIVE, "x86_64"), 0);
	cr_assert_eq(mig_section_write_live(&w, ram, 1), -EINVAL, "outside a section");
	mig_stream_fini(&w);
	cr_assert_eq(ftruncate(fd, 0), 0);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);

	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, MIG_F_LIVE, "x86_64"), 0);
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_RAM, 0, 1, len), 0);
	for (off = 0, piece = 4096; off < len; off += piece, piece = piece * 2 + 4096, i++) {
		piece = piece < len - off ? piece : len - off;
		if (i % 2)
			cr_assert_eq(mig_section_write(&w, ram + off, piece), 0);
		else
			cr_assert_eq(mig_section_write_live(&w, ram + off, piece), 0);
	}
	cr_assert_eq(mig_section_end(&w), 0);
	cr_assert_eq(mig_write_end(&w), 0);
	mig_stream_fini(&w);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);

	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.len, len);
	cr_assert_eq(mig_section_read(&s, back, len), 0);
	cr_assert_arr_eq(back, ram, len);
	cr_assert_eq(mig_section_finish(&s), 0, "the checksum agrees");
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_END);
	mig_stream_fini(&s);

	/* Past the section's length. */
	cr_assert_eq(ftruncate(fd, 0), 0);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, MIG_F_LIVE, "x86_64"), 0);
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_RAM, 0, 1, 4096), 0);
	cr_assert_eq(mig_section_write_live(&w, ram, 4097), -EINVAL);
	mig_stream_fini(&w);
	free(ram);
	free(back);
	close(fd);
}

/* A non-RAM section of MIG_SECTION_MAX is fine, one byte more is refused on both sides. */
Test(mig_stream, section_max_for_other_kinds)
{
	int fds = count_fds(), fd = new_memfd();
	struct mig_stream w, s;
	struct mig_section sec;
	uint8_t *body, *p, h[28];
	uint64_t len;

	body = malloc(MIG_SECTION_MAX);
	cr_assert_not_null(body);
	fill(body, MIG_SECTION_MAX, 3);
	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, 0, "x86_64"), 0);
	cr_assert_eq(mig_write_section(&w, MIG_KIND_DEVICE, 0, 1, body, MIG_SECTION_MAX), 0);
	cr_assert_eq(mig_write_end(&w), 0);
	mig_stream_fini(&w);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(consume(fd, &(uint32_t){ 0 }), 0);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_section_read_all(&s, (void **)&p), 0);
	cr_assert_arr_eq(p, body, MIG_SECTION_MAX);
	free(p);
	mig_stream_fini(&s);
	close(fd);

	fd = new_memfd();
	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, 0, "x86_64"), 0);
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_CONFIG, 0, 1, MIG_SECTION_MAX + 1ULL), -EFBIG);
	cr_assert_str_not_empty(mig_stream_why(&w));
	mig_stream_fini(&w);
	close(fd);

	/* A hand-made header of a 16 MiB + 1 device section with a correct crc. */
	len = MIG_SECTION_MAX + 1ULL;
	fd = new_memfd();
	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, 0, "x86_64"), 0);
	cr_assert_eq(mig_write_end(&w), 0);
	mig_stream_fini(&w);
	cr_assert_eq(pread(fd, h, sizeof(h), 36), (ssize_t)sizeof(h));
	h[4] = MIG_KIND_DEVICE;
	h[5] = 0;
	len = htole64(len);
	memcpy(h + 16, &len, 8);
	*(uint32_t *)(h + 24) = htole32(mig_crc32c(0, h, 24));
	cr_assert_eq(pwrite(fd, h, sizeof(h), 36), (ssize_t)sizeof(h));
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), -EBADMSG);
	mig_stream_fini(&s);
	/* The same length as RAM is a section like any other. */
	h[4] = MIG_KIND_RAM;
	*(uint32_t *)(h + 24) = htole32(mig_crc32c(0, h, 24));
	cr_assert_eq(pwrite(fd, h, sizeof(h), 36), (ssize_t)sizeof(h));
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.len, MIG_SECTION_MAX + 1ULL);
	cr_assert_eq(mig_section_skip(&s), -EBADMSG, "the body is not there");
	mig_stream_fini(&s);

	free(body);
	close(fd);
	cr_assert_eq(count_fds(), fds);
}

/* ---- skipping ---- */

Test(mig_stream, skip_plain_and_chunked)
{
	uint8_t a[5000], c[2000], b[100];
	int fds = count_fds(), fd = new_memfd();
	struct mig_stream w, s;
	struct mig_section sec;
	void *body;

	fill(a, sizeof(a), 1);
	fill(c, sizeof(c), 2);
	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, 0, "x86_64"), 0);
	cr_assert_eq(mig_write_section(&w, MIG_KIND_DEVICE, 0, 1, a, sizeof(a)), 0);
	cr_assert_eq(mig_chunked_begin(&w, MIG_KIND_BACKEND, 0, 1), 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(mig_chunk_write(&w, a, 100 + i * 300), 0);
	cr_assert_eq(mig_chunked_end(&w), 0);
	cr_assert_eq(mig_write_section(&w, MIG_KIND_RAM, 0, 1, a, sizeof(a)), 0);
	cr_assert_eq(mig_chunked_begin(&w, MIG_KIND_BACKEND, 1, 1), 0);
	cr_assert_eq(mig_chunk_write(&w, a, 10), 0);
	cr_assert_eq(mig_chunk_write(&w, a, 20), 0);
	cr_assert_eq(mig_chunked_end(&w), 0);
	cr_assert_eq(mig_write_section(&w, MIG_KIND_SERIAL, 0, 1, c, sizeof(c)), 0);
	cr_assert_eq(mig_write_end(&w), 0);
	mig_stream_fini(&w);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);

	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_section_skip(&s), 0, "a whole plain section");
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_section_skip(&s), 0, "a whole chunked section");
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_section_read(&s, b, sizeof(b)), 0);
	cr_assert_arr_eq(b, a, sizeof(b));
	cr_assert_eq(mig_section_skip(&s), 0, "the rest of a plain section");
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_chunk_read(&s, b, sizeof(b)), 10);
	cr_assert_eq(mig_section_skip(&s), 0, "the rest of a chunked section");
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_SERIAL);
	cr_assert_eq(mig_section_read_all(&s, &body), 0);
	cr_assert_arr_eq(body, c, sizeof(c));
	free(body);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_END);
	cr_assert_eq(mig_section_skip(&s), -EINVAL, "nothing open");
	mig_stream_fini(&s);
	close(fd);
	cr_assert_eq(count_fds(), fds);
}

/* Skipping still checks the body: a changed byte in a skipped section is refused. */
Test(mig_stream, skip_checks_crc)
{
	size_t len;
	uint8_t *p = small_stream(&len);

	/* The first chunked section (BACKEND): its first chunk's first byte. */
	for (int chunked = 0; chunked < 2; chunked++) {
		size_t at = chunked ? 36 + (28 + 7 + 4) + (28 + 16 + 4) + 28 + 4 : 36 + 28;
		struct mig_stream s;
		struct mig_section sec;
		int fd, r = 0;

		p[at] ^= 0x40;
		fd = memfd_with(p, len);
		p[at] ^= 0x40;
		cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
		cr_assert_eq(mig_read_header(&s), 0);
		while (!(r = mig_section_next(&s, &sec)) && sec.kind != MIG_KIND_END)
			if ((r = mig_section_skip(&s)))
				break;
		cr_assert_eq(r, -EBADMSG, "%s", chunked ? "chunked" : "plain");
		mig_stream_fini(&s);
		close(fd);
	}
	free(p);
}

/* ---- hostile streams ---- */

Test(mig_bad, the_small_stream_reads)
{
	size_t len;
	uint8_t *p = small_stream(&len);
	uint32_t d;
	int fd = memfd_with(p, len);

	cr_assert_eq(consume(fd, &d), 0);
	close(fd);
	free(p);
}

/* Any one byte changed, at every position and in three ways: refused, never accepted. */
Test(mig_bad, every_byte_flipped)
{
	static const uint8_t xors[] = { 0x01, 0x80, 0xff };
	int fds = count_fds();
	size_t len;
	uint8_t *p = small_stream(&len);
	int fd = new_memfd();

	for (size_t i = 0; i < len; i++)
		for (size_t x = 0; x < sizeof(xors); x++) {
			uint32_t d;
			int r;

			p[i] ^= xors[x];
			cr_assert_eq(ftruncate(fd, 0), 0);
			cr_assert_eq(pwrite(fd, p, len, 0), (ssize_t)len);
			cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
			p[i] ^= xors[x];
			r = consume(fd, &d);
			cr_assert(r == -EBADMSG || r == -EPROTO,
				  "byte %zu of %zu ^ %#x: %d", i, len, xors[x], r);
		}
	close(fd);
	free(p);
	cr_assert_eq(count_fds(), fds);
}

/* Cut at every length: -EBADMSG (truncated), whatever the cut falls into. */
Test(mig_bad, every_truncation)
{
	int fds = count_fds();
	size_t len;
	uint8_t *p = small_stream(&len);
	int fd = new_memfd();

	for (size_t cut = 0; cut < len; cut++) {
		uint32_t d;
		int r;

		cr_assert_eq(ftruncate(fd, 0), 0);
		cr_assert_eq(pwrite(fd, p, cut, 0), (ssize_t)cut);
		cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
		r = consume(fd, &d);
		cr_assert_eq(r, -EBADMSG, "cut at %zu of %zu: %d", cut, len, r);
	}
	close(fd);
	free(p);
	cr_assert_eq(count_fds(), fds);
}

/* Reads the header of p (len bytes) from a memfd; returns mig_read_header's result. */
static int header_of(const uint8_t *p, size_t len, struct mig_stream *out)
{
	struct mig_stream s;
	int fd = memfd_with(p, len), r;

	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	r = mig_read_header(&s);
	if (out)
		*out = s;
	else
		mig_stream_fini(&s);
	close(fd);
	return r;
}

static void reseal_header(uint8_t *p)
{
	uint32_t crc = htole32(mig_crc32c(0, p, 32));

	memcpy(p + 32, &crc, 4);
}

Test(mig_bad, header)
{
	size_t len;
	uint8_t *p = small_stream(&len);
	uint8_t h[36];
	struct mig_stream s;

	memcpy(h, p, sizeof(h));
	cr_assert_eq(header_of(h, sizeof(h), NULL), 0);

	memcpy(h, "QEVM", 4);	/* some other format, however well-sealed */
	reseal_header(h);
	cr_assert_eq(header_of(h, sizeof(h), &s), -EPROTO);
	cr_assert(strstr(mig_stream_why(&s), "magic"), "%s", mig_stream_why(&s));
	mig_stream_fini(&s);
	memcpy(h, p, sizeof(h));

	h[8] = MIG_VERSION + 1;		/* a newer vmm's stream */
	reseal_header(h);
	cr_assert_eq(header_of(h, sizeof(h), &s), -EPROTONOSUPPORT);
	cr_assert(strstr(mig_stream_why(&s), "version"), "%s", mig_stream_why(&s));
	mig_stream_fini(&s);
	h[8] = 0;
	reseal_header(h);
	cr_assert_eq(header_of(h, sizeof(h), NULL), -EPROTONOSUPPORT);
	h[8] = MIG_VERSION_MIN;		/* an older vmm's snapshot still loads */
	reseal_header(h);
	cr_assert_eq(header_of(h, sizeof(h), NULL), 0);
	memcpy(h, p, sizeof(h));

	h[13] = 1;			/* a flag this build does not know */
	reseal_header(h);
	cr_assert_eq(header_of(h, sizeof(h), NULL), -EPROTONOSUPPORT);
	memcpy(h, p, sizeof(h));

	memset(h + 16, 'x', 16);	/* an arch name without its NUL */
	reseal_header(h);
	cr_assert_eq(header_of(h, sizeof(h), NULL), -EPROTO);
	memcpy(h, p, sizeof(h));

	h[8] = MIG_VERSION + 1;		/* unsealed: a damaged header, not a newer one */
	cr_assert_eq(header_of(h, sizeof(h), NULL), -EBADMSG);

	cr_assert_eq(header_of(p, 35, NULL), -EBADMSG);
	cr_assert_eq(header_of(p, 0, NULL), -EBADMSG);
	free(p);
}

/* Patches the stream's first BACKEND chunk frame (after CONFIG and VCPU) to len. */
static size_t first_frame(void)
{
	return 36 + (28 + 7 + 4) + (28 + 16 + 4) + 28;
}

Test(mig_bad, chunk_longer_than_cap_or_max)
{
	size_t len;
	uint8_t *p = small_stream(&len), *big;
	uint8_t b[4];
	struct mig_stream s;
	struct mig_section sec;
	uint32_t be;
	int fd;

	/* The first chunk is 3 bytes: a 2-byte buffer does not take it. */
	fd = memfd_with(p, len);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_section_skip(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_section_skip(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.kind, MIG_KIND_BACKEND);
	cr_assert_eq(mig_chunk_read(&s, b, 2), -EBADMSG);
	cr_assert_eq(mig_chunk_read(&s, b, sizeof(b)), -EBADMSG, "sticky");
	mig_stream_fini(&s);
	close(fd);

	/* A frame announcing MIG_CHUNK_MAX + 1 bytes, followed by that many. */
	big = calloc(1, len + MIG_CHUNK_MAX + 8);
	cr_assert_not_null(big);
	memcpy(big, p, first_frame());
	be = htobe32(MIG_CHUNK_MAX + 1);
	memcpy(big + first_frame(), &be, 4);
	fd = memfd_with(big, len + MIG_CHUNK_MAX + 8);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(mig_section_next(&s, &sec), 0);
		cr_assert_eq(mig_section_skip(&s), 0);
	}
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_chunk_read(&s, big, MIG_CHUNK_MAX + 8), -EBADMSG,
		     "over MIG_CHUNK_MAX even with room");
	cr_assert(strstr(mig_stream_why(&s), "limit"), "%s", mig_stream_why(&s));
	mig_stream_fini(&s);
	close(fd);
	free(big);
	free(p);
}

/* Reading past a section's end, finishing early: -EBADMSG, and sticky. */
Test(mig_bad, past_the_end_and_early_finish)
{
	size_t len;
	uint8_t *p = small_stream(&len);
	uint8_t b[64];
	struct mig_stream s;
	struct mig_section sec;
	int fd = memfd_with(p, len);

	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(sec.len, 7);
	cr_assert_eq(mig_section_read(&s, b, 5), 0);
	cr_assert_eq(mig_section_read(&s, b, 3), -EBADMSG, "5 + 3 > 7");
	cr_assert_eq(mig_section_read(&s, b, 2), -EBADMSG, "sticky");
	cr_assert_eq(mig_section_finish(&s), -EBADMSG);
	mig_stream_fini(&s);

	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_section_read(&s, b, 6), 0);
	cr_assert_eq(mig_section_finish(&s), -EBADMSG, "one byte unread");
	cr_assert_eq(mig_section_next(&s, &sec), -EBADMSG, "sticky");
	mig_stream_fini(&s);

	/* A chunked section finished before its 0-length frame. */
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(mig_section_next(&s, &sec), 0);
		cr_assert_eq(mig_section_skip(&s), 0);
	}
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_chunk_read(&s, b, sizeof(b)), 3);
	cr_assert_eq(mig_section_finish(&s), -EBADMSG);
	mig_stream_fini(&s);

	/* Reading a plain section as chunks and a chunked one as plain is misuse. */
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
	cr_assert_eq(mig_read_header(&s), 0);
	cr_assert_eq(mig_section_next(&s, &sec), 0);
	cr_assert_eq(mig_chunk_read(&s, b, sizeof(b)), -EINVAL);
	mig_stream_fini(&s);
	close(fd);
	free(p);
}

/* Section headers that are sealed but wrong: unknown kind or flags, bodies where none may be. */
Test(mig_bad, sealed_but_wrong_section_headers)
{
	static const struct {
		uint16_t kind, flags;
		uint64_t len;
		int want;
	} cases[] = {
		{ 0, 0, 0, -EPROTO },
		{ MIG_KIND_VERIFY + 1, 0, 0, -EPROTO },
		{ 0xfffe, 0, 0, -EPROTO },
		{ MIG_KIND_DEVICE, 2, 0, -EPROTO },
		{ MIG_KIND_DEVICE, MIG_SECTION_CHUNKED, 1, -EBADMSG },
		{ MIG_KIND_END, 0, 4, -EBADMSG },
		{ MIG_KIND_END, MIG_SECTION_CHUNKED, 0, -EBADMSG },
		{ MIG_KIND_DEVICE, 0, UINT64_MAX, -EBADMSG },
	};
	size_t len;
	uint8_t *p = small_stream(&len);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t h[28];
		uint16_t v16;
		uint64_t v64 = htole64(cases[i].len);
		uint32_t crc;
		struct mig_stream s;
		struct mig_section sec;
		int fd = memfd_with(p, len);

		cr_assert_eq(pread(fd, h, sizeof(h), 36), (ssize_t)sizeof(h));
		v16 = htole16(cases[i].kind);
		memcpy(h + 4, &v16, 2);
		v16 = htole16(cases[i].flags);
		memcpy(h + 6, &v16, 2);
		memcpy(h + 16, &v64, 8);
		crc = htole32(mig_crc32c(0, h, 24));
		memcpy(h + 24, &crc, 4);
		cr_assert_eq(pwrite(fd, h, sizeof(h), 36), (ssize_t)sizeof(h));
		cr_assert_eq(mig_stream_init(&s, fd, false, 1000), 0);
		cr_assert_eq(mig_read_header(&s), 0);
		cr_assert_eq(mig_section_next(&s, &sec), cases[i].want, "case %zu", i);
		mig_stream_fini(&s);
		close(fd);
	}
	free(p);
}

/* ---- the writer's rules ---- */

Test(mig_stream, writer_misuse_is_sticky_einval)
{
	uint8_t b[16] = { 0 };
	struct mig_stream w;
	int fd = new_memfd();

	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_section(&w, MIG_KIND_CONFIG, 0, 1, b, 4), -EINVAL, "no header");
	cr_assert_eq(mig_write_header(&w, 0, "x86_64"), -EINVAL, "sticky");
	mig_stream_fini(&w);


	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, 0, "0123456789abcdef"), -EINVAL, "16 chars, no NUL");
	mig_stream_fini(&w);
	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&w, 0x80, "x86_64"), -EINVAL, "unknown flag");
	mig_stream_fini(&w);

#define FRESH()	do { cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0); \
		     cr_assert_eq(mig_write_header(&w, 0, "x86_64"), 0); } while (0)
	FRESH();
	cr_assert_eq(mig_write_header(&w, 0, "x86_64"), -EINVAL, "header twice");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_END, 0, 1, 0), -EINVAL, "END by hand");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_section_begin(&w, 99, 0, 1, 0), -EINVAL, "unknown kind");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_DEVICE, 0, 1, 8), 0);
	cr_assert_eq(mig_section_write(&w, b, 4), 0);
	cr_assert_eq(mig_section_write(&w, b, 5), -EINVAL, "past the length");
	cr_assert_eq(mig_section_write(&w, b, 4), -EINVAL, "sticky");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_DEVICE, 0, 1, 8), 0);
	cr_assert_eq(mig_section_write(&w, b, 4), 0);
	cr_assert_eq(mig_section_end(&w), -EINVAL, "4 of 8 bytes");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_DEVICE, 0, 1, 8), 0);
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_DEVICE, 1, 1, 8), -EINVAL, "nested");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_DEVICE, 0, 1, 8), 0);
	cr_assert_eq(mig_chunk_write(&w, b, 4), -EINVAL, "a chunk in a plain section");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_chunked_begin(&w, MIG_KIND_BACKEND, 0, 1), 0);
	cr_assert_eq(mig_section_write(&w, b, 4), -EINVAL, "plain bytes in a chunked section");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_section_begin(&w, MIG_KIND_DEVICE, 0, 1, 0), 0);
	cr_assert_eq(mig_chunked_end(&w), -EINVAL, "chunked_end on a plain section");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_chunked_begin(&w, MIG_KIND_BACKEND, 0, 1), 0);
	cr_assert_eq(mig_write_end(&w), -EINVAL, "END with a section open");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_write_end(&w), 0);
	cr_assert_eq(mig_write_section(&w, MIG_KIND_CONFIG, 0, 1, b, 4), -EINVAL, "after END");
	mig_stream_fini(&w);
	FRESH();
	cr_assert_eq(mig_read_header(&w), -EINVAL, "a writer does not read");
	mig_stream_fini(&w);
#undef FRESH
	close(fd);
}

/* ---- over pipes and sockets ---- */

/* The small stream, a RAM section of several buffers and a back-end state of 3 MiB. */
static int write_mixed(struct mig_stream *w)
{
	uint8_t *big = malloc(3 * MIG_CHUNK_MAX);
	int r;

	if (!big)
		return -ENOMEM;
	fill(big, 3 * MIG_CHUNK_MAX, 11);
	r = mig_write_header(w, MIG_F_LIVE, "x86_64");
	if (!r)
		r = mig_write_section(w, MIG_KIND_CONFIG, 0, 1, "cfg", 3);
	if (!r)
		r = mig_write_section(w, MIG_KIND_RAM, 0, 1, big, BIG_RAM);
	if (!r)
		r = mig_chunked_begin(w, MIG_KIND_BACKEND, 0, 1);
	for (size_t off = 0; !r && off < 3 * MIG_CHUNK_MAX; off += 300000)
		r = mig_chunk_write(w, big + off, off + 300000 > 3 * MIG_CHUNK_MAX ?
				    3 * MIG_CHUNK_MAX - off : 300000);
	if (!r)
		r = mig_chunked_end(w);
	if (!r)
		r = mig_write_section(w, MIG_KIND_DEVICE, 3, 1, big + 5, 5000);
	if (!r)
		r = mig_write_end(w);
	free(big);
	return r;
}

struct writer {
	int fd, timeout_ms, delay_ms, r;
};

static void *writer_thread(void *arg)
{
	struct writer *wr = arg;
	struct mig_stream w;

	if (wr->delay_ms)
		usleep((useconds_t)wr->delay_ms * 1000);
	wr->r = mig_stream_init(&w, wr->fd, true, wr->timeout_ms);
	if (!wr->r)
		wr->r = write_mixed(&w);
	mig_stream_fini(&w);
	return NULL;
}

/* The digest consume() gives the mixed stream, from a memfd. */
static uint32_t mixed_digest(void)
{
	struct mig_stream w;
	uint32_t d;
	int fd = new_memfd();

	cr_assert_eq(mig_stream_init(&w, fd, true, 1000), 0);
	cr_assert_eq(write_mixed(&w), 0);
	mig_stream_fini(&w);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(consume(fd, &d), 0);
	close(fd);
	return d;
}

/* Streams the mixed stream from a thread over wfd into a reader on rfd. */
static void stream_across(int rfd, int wfd, int delay_ms)
{
	struct writer wr = { .fd = wfd, .timeout_ms = 5000, .delay_ms = delay_ms };
	uint32_t want = mixed_digest(), got;
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, writer_thread, &wr), 0);
	cr_assert_eq(consume(rfd, &got), 0);
	pthread_join(t, NULL);
	cr_assert_eq(wr.r, 0, "writer: %d", wr.r);
	cr_assert_eq(got, want);
}

Test(mig_io, pipe_round_trip)
{
	int fds = count_fds(), p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	stream_across(p[0], p[1], 0);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(count_fds(), fds);
}

Test(mig_io, nonblocking_pipe_round_trip)
{
	int fds = count_fds(), p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	stream_across(p[0], p[1], 0);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(count_fds(), fds);
}

Test(mig_io, socket_round_trip)
{
	int fds = count_fds(), sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	stream_across(sv[0], sv[1], 0);
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
	stream_across(sv[0], sv[1], 0);
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(count_fds(), fds);
}

static void on_alarm(int sig)
{
}

/* Signals every 5 ms (no SA_RESTART) while the reader waits and reads: EINTR is retried. */
Test(mig_io, eintr_is_retried)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval it = { { 0, 5000 }, { 0, 5000 } }, off = { 0 };
	int fds = count_fds(), p[2];

	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
	cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	stream_across(p[0], p[1], 200);
	cr_assert_eq(setitimer(ITIMER_REAL, &off, NULL), 0);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(count_fds(), fds);
}

/* A reader whose peer says nothing: -ETIMEDOUT after about timeout_ms. */
static void expect_silence_times_out(int rfd, int wfd, size_t sent_first)
{
	struct mig_stream s;
	int64_t t0;
	int r;

	if (sent_first)
		cr_assert_eq(write(wfd, MIG_MAGIC, sent_first), (ssize_t)sent_first);
	cr_assert_eq(mig_stream_init(&s, rfd, false, 300), 0);
	t0 = now_ms();
	r = mig_read_header(&s);
	t0 = now_ms() - t0;
	cr_assert_eq(r, -ETIMEDOUT, "%d: %s", r, mig_stream_why(&s));
	cr_assert_geq(t0, 290, "waited %lld ms", (long long)t0);
	cr_assert_leq(t0, 3000, "waited %lld ms", (long long)t0);
	cr_assert_eq(mig_read_header(&s), -ETIMEDOUT, "sticky, at once");
	mig_stream_fini(&s);
}

Test(mig_io, silent_peer_times_out)
{
	int fds = count_fds(), p[2], sv[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	expect_silence_times_out(p[0], p[1], 0);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	expect_silence_times_out(p[0], p[1], 5);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	expect_silence_times_out(sv[0], sv[1], 0);
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(count_fds(), fds);
}

/* A writer whose peer stops reading: -ETIMEDOUT, never a write blocked for ever. */
static void expect_full_times_out(int wfd)
{
	const size_t len = 8u << 20;
	uint8_t *big = calloc(1, len);
	struct mig_stream w;
	int64_t t0;
	int r;

	cr_assert_not_null(big);
	cr_assert_eq(mig_stream_init(&w, wfd, true, 300), 0);
	t0 = now_ms();
	r = mig_write_header(&w, 0, "x86_64");
	if (!r)
		r = mig_write_section(&w, MIG_KIND_RAM, 0, 1, big, len);
	t0 = now_ms() - t0;
	cr_assert_eq(r, -ETIMEDOUT, "%d: %s", r, mig_stream_why(&w));
	cr_assert_leq(t0, 3000, "waited %lld ms", (long long)t0);
	mig_stream_fini(&w);
	free(big);
}

Test(mig_io, stalled_reader_times_out_the_writer)
{
	int fds = count_fds(), p[2], sv[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	expect_full_times_out(p[1]);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	expect_full_times_out(sv[1]);
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(count_fds(), fds);
}

/* A reader that went away: -EPIPE for the writer, and the process lives (no SIGPIPE). */
static void expect_epipe(int wfd)
{
	struct mig_stream w;
	sigset_t mask, pending;
	int r;

	cr_assert_eq(mig_stream_init(&w, wfd, true, 1000), 0);
	r = mig_write_header(&w, 0, "x86_64");
	if (!r)
		r = mig_flush(&w);
	cr_assert_eq(r, -EPIPE, "%d: %s", r, mig_stream_why(&w));
	cr_assert_eq(mig_flush(&w), -EPIPE, "sticky");
	mig_stream_fini(&w);
	cr_assert_eq(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
	cr_assert_not(sigismember(&mask, SIGPIPE), "the signal mask is restored");
	cr_assert_eq(sigpending(&pending), 0);
	cr_assert_not(sigismember(&pending, SIGPIPE), "no SIGPIPE left pending");
}

Test(mig_io, closed_reader_is_epipe)
{
	int fds = count_fds(), p[2], sv[2];

	cr_assert_neq(signal(SIGPIPE, SIG_DFL), SIG_ERR);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	expect_epipe(p[1]);
	close(p[1]);
	cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	close(p[0]);
	expect_epipe(p[1]);
	close(p[1]);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[0]);
	expect_epipe(sv[1]);
	close(sv[1]);
	cr_assert_eq(count_fds(), fds);
}

/* A peer that hangs up mid-stream: the reader sees a truncated stream, -EBADMSG. */
Test(mig_io, writer_gone_mid_stream)
{
	int fds = count_fds(), p[2];
	size_t len;
	uint8_t *s = small_stream(&len);
	uint32_t d;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(write(p[1], s, len / 2), (ssize_t)(len / 2));
	close(p[1]);
	cr_assert_eq(consume(p[0], &d), -EBADMSG);
	close(p[0]);
	free(s);
	cr_assert_eq(count_fds(), fds);
}

Test(mig_io, init_on_a_bad_fd)
{
	struct mig_stream s;

	cr_assert_eq(mig_stream_init(&s, -1, false, 100), -EBADF);
	mig_stream_fini(&s);
}
