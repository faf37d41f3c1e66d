// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for the migration stream's reader (vmm/base/mig_stream.c): the
 * input is what an incoming migration or a snapshot file brings, read the way a
 * destination reads it: the header, then sections until END or an error, plain
 * sections whole (mig_section_read_all), RAM sections in pieces into a fixed
 * "guest RAM" buffer, chunked ones chunk by chunk (mig_chunk_read), and sections
 * of odd instance skipped (mig_section_skip).
 *
 * The first byte is a mode, the rest is the stream:
 *   bit 0: reseal: before reading, the target walks the stream as the format lays
 *          it out and writes the right crc32c wherever one goes (header, section
 *          headers, bodies, chunked bodies), so mutations reach the lengths, frames
 *          and kinds behind the checksums instead of stopping at the first crc;
 *   bit 1: through a pipe (poll() before each read) instead of a memfd.
 *
 * Nothing may crash, leak memory or an fd (the fd count is checked after every
 * input), or end with an error other than those the header documents for a bad
 * stream (-EBADMSG, -EPROTO, -EPROTONOSUPPORT) or without mig_stream_why() saying why.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/base/mig_stream.h"

#define GUEST_RAM	(64u << 10)
#define RAM_PIECE	4096u

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

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void seal(uint8_t *at, const uint8_t *from, size_t len, uint32_t crc)
{
	crc = htole32(crc ? crc : mig_crc32c(0, from, len));
	memcpy(at, &crc, 4);
}

/* Writes the crcs where the layout puts them, as far as the bytes go. */
static void reseal(uint8_t *p, size_t len)
{
	size_t pos = 36;

	if (len < 36)
		return;
	seal(p + 32, p, 32, 0);
	while (len - pos >= 28) {
		uint8_t *h = p + pos;
		uint16_t kind = le16toh(rd16(h + 4)), flags = le16toh(rd16(h + 6));
		uint64_t body = le64toh(rd64(h + 16));
		uint32_t crc = 0;

		seal(h + 24, h, 24, 0);
		pos += 28;
		if (kind == MIG_KIND_END)
			return;
		if (flags & MIG_SECTION_CHUNKED) {
			for (;;) {
				uint32_t n;

				if (len - pos < 4)
					return;
				n = be32toh(rd32(p + pos));
				pos += 4;
				if (!n)
					break;
				if (n > len - pos)
					return;
				crc = mig_crc32c(crc, p + pos, n);
				pos += n;
			}
		} else {
			if (body > len - pos)
				return;
			crc = mig_crc32c(0, p + pos, (size_t)body);
			pos += (size_t)body;
		}
		if (len - pos < 4)
			return;
		crc = htole32(crc);
		memcpy(p + pos, &crc, 4);
		pos += 4;
	}
}

/* Reads the stream on fd as a destination does; returns the first error or 0 at END. */
static int destination(int fd)
{
	static uint8_t ram[GUEST_RAM], chunk[MIG_CHUNK_MAX];
	struct mig_stream s;
	struct mig_section sec;
	int r;

	if (mig_stream_init(&s, fd, false, 1000))
		abort();
	r = mig_read_header(&s);
	while (!r) {
		r = mig_section_next(&s, &sec);
		if (r || sec.kind == MIG_KIND_END)
			break;
		if (sec.instance & 1) {
			r = mig_section_skip(&s);
		} else if (sec.flags & MIG_SECTION_CHUNKED) {
			ssize_t n;

			while ((n = mig_chunk_read(&s, chunk, sizeof(chunk))) > 0)
				if ((size_t)n > sizeof(chunk))
					__builtin_trap();
			r = (int)n;
		} else if (sec.kind == MIG_KIND_RAM) {
			uint64_t off = (uint64_t)sec.version * RAM_PIECE;

			for (uint64_t left = sec.len; left && !r; ) {
				size_t n = left < RAM_PIECE ? (size_t)left : RAM_PIECE;

				off %= GUEST_RAM;
				r = mig_section_read(&s, ram + off, n);
				off += RAM_PIECE;
				left -= n;
			}
			if (!r)
				r = mig_section_finish(&s);
		} else {
			uint8_t *body;

			r = mig_section_read_all(&s, (void **)&body);
			if (!r) {
				if (sec.len > MIG_SECTION_MAX)
					__builtin_trap();
				/* Touch every byte the buffer is said to hold. */
				if (sec.len && mig_crc32c(0, body, sec.len) == 0x5a5a5a5a)
					ram[0]++;
				free(body);
			} else if (body) {
				__builtin_trap();	/* no buffer on failure */
			}
		}
	}
	if (r && !mig_stream_why(&s)[0])
		__builtin_trap();	/* an error says why */
	if (mig_section_next(&s, &sec) != (r ? r : -EINVAL))
		__builtin_trap();	/* sticky; nothing after END */
	mig_stream_fini(&s);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int memfd = -1;
	uint8_t *stream;
	size_t len;
	int fds, fd, p[2] = { -1, -1 }, r;

	if (size < 1 || size > 60000)
		return 0;
	if (memfd < 0) {
		memfd = memfd_create("fuzz-stream", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
	}
	fds = count_fds();
	len = size - 1;
	stream = malloc(len ? len : 1);
	if (!stream)
		abort();
	memcpy(stream, data + 1, len);
	if (data[0] & 1)
		reseal(stream, len);

	fd = -1;
	if (data[0] & 2) {
		/* Through a pipe when the whole input fits it (64 KiB unless pipes are scarce). */
		if (pipe2(p, O_CLOEXEC) || fcntl(p[1], F_SETFL, O_NONBLOCK))
			abort();
		if (!len || write(p[1], stream, len) == (ssize_t)len) {
			fd = p[0];
		} else {
			close(p[0]);
			p[0] = -1;
		}
		close(p[1]);
	}
	if (fd < 0) {
		if (ftruncate(memfd, 0) || (len && pwrite(memfd, stream, len, 0) != (ssize_t)len) ||
		    lseek(memfd, 0, SEEK_SET))
			abort();
		fd = memfd;
	}
	r = destination(fd);
	if (r && r != -EBADMSG && r != -EPROTO && r != -EPROTONOSUPPORT)
		__builtin_trap();	/* not an error a bad stream may give */
	if (p[0] >= 0)
		close(p[0]);
	free(stream);
	if (count_fds() != fds)
		abort();	/* an fd leaked */
	return 0;
}
