// SPDX-License-Identifier: GPL-2.0-only
/* The migration and snapshot stream (mig_stream.h): framing, checksums and buffered I/O. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/base/mig_stream.h"
#include "vmm/base/util.h"

#define HDR_LEN		36	/* the stream header, crc included */
#define SEC_HDR_LEN	28	/* a section header, crc included */

enum { PHASE_START, PHASE_SECTIONS, PHASE_DONE };

/*
 * ---- CRC-32C: the CPU's instruction or slicing by 8, whichever is faster here ----
 *
 * The instruction is 5× faster than the tables on this project's hosts, but an emulated
 * CPU (QEMU's TCG, where the nested test machines run) executes it 3× slower than the
 * tables: so the two are timed once, on 64 KiB, and the faster kept.
 */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static uint32_t crc_soft(uint32_t crc, const void *buf, size_t len);
static uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len) = crc_soft;
static uint32_t crc_copy_soft(uint32_t crc, void *dst, const void *src, size_t len);
/* The same over src while copying it to dst: a page is read once, not twice. */
static uint32_t (*crc_copy_fn)(uint32_t crc, void *dst, const void *src, size_t len) =
	crc_copy_soft;

#if defined(__x86_64__)
/*
 * SSE4.2's crc32 instruction computes exactly CRC-32C: 8 bytes a cycle or so, against
 * about 1 GB/s for the tables — a stream checksums every page of RAM on both sides.
 */
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t c = ~crc;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_copy_sse42(uint32_t crc, void *dst, const void *src, size_t len)
{
	const uint8_t *p = src;
	uint8_t *d = dst;
	uint64_t c = ~crc;

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);	/* once: what is checksummed is what is stored */
		memcpy(d, &w, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		d += 8;
		len -= 8;
	}
	while (len--) {
		*d = *p++;
		c = __builtin_ia32_crc32qi((uint32_t)c, *d++);
	}
	return ~(uint32_t)c;
}
#endif

/* One 8-byte step of slicing by 8 over crc_tab (built by crc_init). */
static inline uint32_t crc_tab_word(uint32_t c, uint64_t w)
{
	w = le64toh(w) ^ c;
	return crc_tab[7][w & 0xff] ^ crc_tab[6][(w >> 8) & 0xff] ^
	       crc_tab[5][(w >> 16) & 0xff] ^ crc_tab[4][(w >> 24) & 0xff] ^
	       crc_tab[3][(w >> 32) & 0xff] ^ crc_tab[2][(w >> 40) & 0xff] ^
	       crc_tab[1][(w >> 48) & 0xff] ^ crc_tab[0][w >> 56];
}

/* Slicing by 8 over crc_tab (built by crc_init). */
static uint32_t crc_soft(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	while (len && ((uintptr_t)p & 7)) {
		c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c = crc_tab_word(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

static uint32_t crc_copy_soft(uint32_t crc, void *dst, const void *src, size_t len)
{
	const uint8_t *p = src;
	uint8_t *d = dst;
	uint32_t c = ~crc;

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);	/* once: what is checksummed is what is stored */
		memcpy(d, &w, 8);
		c = crc_tab_word(c, w);
		p += 8;
		d += 8;
		len -= 8;
	}
	while (len--) {
		*d = *p++;
		c = crc_tab[0][(c ^ *d++) & 0xff] ^ (c >> 8);
	}
	return ~c;
}

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			crc_tab[k][i] = (crc_tab[k - 1][i] >> 8) ^ crc_tab[0][crc_tab[k - 1][i] & 0xff];
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2")) {
		static uint8_t probe[64 << 10];
		uint64_t best[2] = { UINT64_MAX, UINT64_MAX };
		volatile uint32_t sink = 0;

		/* The best of 3 rounds each, interleaved: a scheduler hiccup does not decide. */
		for (int round = 0; round < 3; round++)
			for (int k = 0; k < 2; k++) {
				uint64_t t0 = monotonic_ns();

				sink += k ? crc32c_sse42(0, probe, sizeof(probe)) :
					    crc_soft(0, probe, sizeof(probe));
				best[k] = MIN(best[k], monotonic_ns() - t0);
			}
		(void)sink;
		if (best[1] <= best[0]) {
			crc_fn = crc32c_sse42;
			crc_copy_fn = crc32c_copy_sse42;
		}
	}
#endif
}

uint32_t mig_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return crc_fn(crc, buf, len);
}

uint32_t mig_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return crc_copy_fn(crc, dst, src, len);
}

uint32_t mig_crc32c_soft(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return crc_soft(crc, buf, len);
}

uint32_t mig_crc32c_copy_soft(uint32_t crc, void *dst, const void *src, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return crc_copy_soft(crc, dst, src, len);
}


/* ---- little-endian fields ---- */

static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

/* ---- errors ---- */

static const char *kind_name(uint16_t kind)
{
	switch (kind) {
	case MIG_KIND_CONFIG:	return "config";
	case MIG_KIND_RAM:	return "ram";
	case MIG_KIND_VCPU:	return "vcpu";
	case MIG_KIND_VM_ARCH:	return "vm-arch";
	case MIG_KIND_SERIAL:	return "serial";
	case MIG_KIND_DEVICE:	return "device";
	case MIG_KIND_BACKEND:	return "backend";
	case MIG_KIND_SYNC:	return "sync";
	case MIG_KIND_VERIFY:	return "verify";
	case MIG_KIND_END:	return "end";
	default:		return NULL;
	}
}

/* Where the stream is: bytes written so far, or read and consumed so far. */
static uint64_t stream_pos(const struct mig_stream *s)
{
	return s->writing ? s->bytes + s->fill : s->bytes - (s->fill - s->pos);
}

/* Records the first error (err < 0) with its reason; returns the sticky error. */
static __attribute__((format(printf, 3, 4))) int fail(struct mig_stream *s, int err,
							const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (s->err)
		return s->err;
	s->err = err;
	if (s->in_section)
		n = (size_t)snprintf(s->why, sizeof(s->why), "%s section %u: ",
				     kind_name(s->cur.kind) ?: "?", s->cur.instance);
	else
		n = 0;
	if (n < sizeof(s->why)) {
		va_start(ap, fmt);
		n += (size_t)vsnprintf(s->why + n, sizeof(s->why) - n, fmt, ap);
		va_end(ap);
	}
	if (n < sizeof(s->why))
		snprintf(s->why + n, sizeof(s->why) - n, " at byte %llu",
			 (unsigned long long)stream_pos(s));
	return err;
}

static int fail_errno(struct mig_stream *s, int err, const char *what)
{
	return fail(s, err, "%s: %s", what, strerror(-err));
}

const char *mig_stream_why(const struct mig_stream *s)
{
	return s->why;
}

/* ---- I/O on the fd ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events: 0, -ETIMEDOUT after timeout_ms, or -errno. */
static int io_wait(struct mig_stream *s, short events)
{
	int64_t deadline = s->timeout_ms < 0 ? 0 : now_ms() + s->timeout_ms;
	struct pollfd pfd = { .fd = s->fd, .events = events };

	for (;;) {
		int wait = -1, r;

		if (s->timeout_ms >= 0) {
			int64_t left = deadline - now_ms();

			wait = left < 0 ? 0 : (int)MIN(left, (int64_t)INT_MAX);
		}
		r = poll(&pfd, 1, wait);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		if (pfd.revents & POLLNVAL)
			return -EBADF;
		return 0;	/* ready, or an error/hang-up the next call reports */
	}
}

/* write() on a pipe without SIGPIPE: blocked in this thread, and one it raised consumed. */
static ssize_t write_nosigpipe(int fd, const void *p, size_t len)
{
	sigset_t pipe_set, old, pending;
	bool was_pending;
	ssize_t n;
	int e;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	n = write(fd, p, len);
	e = errno;
	if (n < 0 && e == EPIPE && !was_pending) {
		static const struct timespec zero;

		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return n;
}

/* Writes all of p to the fd; 0 or -errno. */
static int raw_write(struct mig_stream *s, const void *p, size_t len)
{
	const uint8_t *b = p;
	int r;

	while (len) {
		size_t n = MIN(len, s->max_write);
		ssize_t w;

		if (s->poll_first) {
			r = io_wait(s, POLLOUT);
			if (r)
				return fail_errno(s, r, "writing the stream");
		}
		if (s->is_socket)
			w = send(s->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		else if (s->is_fifo)
			w = write_nosigpipe(s->fd, b, n);
		else
			w = write(s->fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = io_wait(s, POLLOUT);
			if (r)
				return fail_errno(s, r, "writing the stream");
			continue;
		}
		if (w < 0)
			return fail_errno(s, -errno, "writing the stream");
		if (w == 0)
			return fail(s, -EIO, "writing the stream: the fd took no bytes");
		b += w;
		len -= (size_t)w;
		s->bytes += (uint64_t)w;
	}
	return 0;
}

/* Reads up to len bytes from the fd: how many (0 at end of stream), or -errno. */
static ssize_t raw_read(struct mig_stream *s, void *p, size_t len)
{
	int r;

	for (;;) {
		ssize_t n;

		if (s->poll_first) {
			r = io_wait(s, POLLIN);
			if (r)
				return fail_errno(s, r, "reading the stream");
		}
		if (s->is_socket)
			n = recv(s->fd, p, len, MSG_DONTWAIT);
		else
			n = read(s->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = io_wait(s, POLLIN);
			if (r)
				return fail_errno(s, r, "reading the stream");
			continue;
		}
		if (n < 0)
			return fail_errno(s, -errno, "reading the stream");
		s->bytes += (uint64_t)n;
		return n;
	}
}

/* ---- buffered writing ---- */

int mig_flush(struct mig_stream *s)
{
	int r;

	if (s->err)
		return s->err;
	if (!s->writing)
		return fail(s, -EINVAL, "mig_flush on a reader");
	if (!s->fill)
		return 0;
	r = raw_write(s, s->buf, s->fill);
	if (r)
		return r;
	s->fill = 0;
	return 0;
}

/* Appends p to the stream (through the buffer, or straight out when large). */
static int out(struct mig_stream *s, const void *p, size_t len)
{
	if (len > MIG_BUF_SIZE - s->fill) {
		int r = mig_flush(s);

		if (r)
			return r;
		if (len >= MIG_BUF_SIZE)
			return raw_write(s, p, len);
	}
	memcpy(s->buf + s->fill, p, len);
	s->fill += len;
	return 0;
}

/* Appends body bytes, adding them to the section's crc. */
static int out_body(struct mig_stream *s, const void *p, size_t len)
{
	s->crc = mig_crc32c(s->crc, p, len);
	return out(s, p, len);
}

/* ---- buffered reading ---- */

/* Refills the buffer when empty: 0, or -EBADMSG at the stream's end, or -errno. */
static int refill(struct mig_stream *s, const char *what)
{
	ssize_t n;

	if (s->pos < s->fill)
		return 0;
	s->pos = s->fill = 0;
	n = raw_read(s, s->buf, MIG_BUF_SIZE);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return fail(s, -EBADMSG, "the stream ends (truncated) in %s", what);
	s->fill = (size_t)n;
	return 0;
}

/* Reads exactly len bytes into p, adding them to the section's crc when crc is set. */
static int in(struct mig_stream *s, void *p, size_t len, bool crc, const char *what)
{
	uint8_t *d = p;

	while (len) {
		size_t n = MIN(len, s->fill - s->pos);
		int r;

		if (n) {
			if (crc)
				s->crc = mig_crc32c_copy(s->crc, d, s->buf + s->pos, n);
			else
				memcpy(d, s->buf + s->pos, n);
			s->pos += n;
		} else if (len >= MIG_BUF_SIZE / 2) {
			/* Large reads (RAM into guest memory) go straight to the caller. */
			ssize_t k = raw_read(s, d, len);

			if (k < 0)
				return (int)k;
			if (k == 0)
				return fail(s, -EBADMSG, "the stream ends (truncated) in %s", what);
			n = (size_t)k;
			if (crc)
				s->crc = mig_crc32c(s->crc, d, n);
		} else {
			r = refill(s, what);
			if (r)
				return r;
			continue;
		}
		d += n;
		len -= n;
	}
	return 0;
}

/* Consumes len bytes, adding them to the section's crc. */
static int in_skip(struct mig_stream *s, uint64_t len, const char *what)
{
	while (len) {
		size_t n;
		int r = refill(s, what);

		if (r)
			return r;
		n = (size_t)MIN(len, (uint64_t)(s->fill - s->pos));
		s->crc = mig_crc32c(s->crc, s->buf + s->pos, n);
		s->pos += n;
		len -= n;
	}
	return 0;
}

/* ---- set-up ---- */

int mig_stream_init(struct mig_stream *s, int fd, bool writing, int timeout_ms)
{
	struct stat st;
	int fl;

	*s = (struct mig_stream){ .fd = fd, .writing = writing, .timeout_ms = timeout_ms,
				  .max_write = SIZE_MAX };
	if (fstat(fd, &st) < 0)
		return -errno;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	s->is_socket = S_ISSOCK(st.st_mode);
	s->is_fifo = S_ISFIFO(st.st_mode);
	/* A blocking fd other than a file or a socket (sent MSG_DONTWAIT) could block for ever. */
	s->poll_first = !s->is_socket && !(fl & O_NONBLOCK) && !S_ISREG(st.st_mode) &&
			!S_ISBLK(st.st_mode);
	if (s->is_fifo && s->poll_first)
		s->max_write = PIPE_BUF;	/* fits once poll() says POLLOUT */
	s->buf = malloc(MIG_BUF_SIZE);
	if (!s->buf)
		return -ENOMEM;
	return 0;
}

void mig_stream_fini(struct mig_stream *s)
{
	free(s->buf);
	s->buf = NULL;
	s->fill = s->pos = 0;
}

/* ---- writing ---- */

int mig_write_header(struct mig_stream *s, uint32_t flags, const char *arch)
{
	uint8_t h[HDR_LEN] = { 0 };

	if (s->err)
		return s->err;
	if (!s->writing || s->phase != PHASE_START)
		return fail(s, -EINVAL, "mig_write_header: not a new writer");
	if (!arch || strlen(arch) >= MIG_ARCH_LEN || flags & ~MIG_F_LIVE)
		return fail(s, -EINVAL, "mig_write_header: bad arch name or flags");
	memcpy(h, MIG_MAGIC, 8);
	put32(h + 8, MIG_VERSION);
	put32(h + 12, flags);
	memcpy(h + 16, arch, strlen(arch));
	put32(h + 32, mig_crc32c(0, h, 32));
	s->phase = PHASE_SECTIONS;
	return out(s, h, sizeof(h));
}

static int write_section_header(struct mig_stream *s, uint16_t kind, uint16_t flags,
				uint32_t instance, uint32_t version, uint64_t len)
{
	uint8_t h[SEC_HDR_LEN];

	put32(h, MIG_SECTION_MAGIC);
	put16(h + 4, kind);
	put16(h + 6, flags);
	put32(h + 8, instance);
	put32(h + 12, version);
	put64(h + 16, len);
	put32(h + 24, mig_crc32c(0, h, 24));
	return out(s, h, sizeof(h));
}

/* Whether a writer may open a section of this kind now. */
static int writer_can_open(struct mig_stream *s, uint16_t kind, const char *fn)
{
	if (s->err)
		return s->err;
	if (!s->writing || s->phase != PHASE_SECTIONS || s->in_section)
		return fail(s, -EINVAL, "%s: no header written, a section open or the stream ended",
			    fn);
	if (kind == MIG_KIND_END || !kind_name(kind))
		return fail(s, -EINVAL, "%s: kind %u is not a section kind", fn, kind);
	return 0;
}

static void open_section(struct mig_stream *s, uint16_t kind, uint16_t flags, uint32_t instance,
			 uint32_t version, uint64_t len)
{
	s->cur = (struct mig_section){ .kind = kind, .flags = flags, .instance = instance,
				       .version = version, .len = len };
	s->in_section = true;
	s->done = 0;
	s->crc = 0;
}

int mig_section_begin(struct mig_stream *s, uint16_t kind, uint32_t instance, uint32_t version,
		      uint64_t len)
{
	int r = writer_can_open(s, kind, "mig_section_begin");

	if (r)
		return r;
	if (kind != MIG_KIND_RAM && len > MIG_SECTION_MAX)
		return fail(s, -EFBIG, "a %s section of %llu bytes is over the %u-byte limit",
			    kind_name(kind), (unsigned long long)len, MIG_SECTION_MAX);
	r = write_section_header(s, kind, 0, instance, version, len);
	if (r)
		return r;
	open_section(s, kind, 0, instance, version, len);
	return 0;
}

/* Whether len more body bytes fit the open plain section (then counted); 0 or the error. */
static int plain_body(struct mig_stream *s, size_t len, const char *fn)
{
	if (s->err)
		return s->err;
	if (!s->writing || !s->in_section || s->cur.flags & MIG_SECTION_CHUNKED)
		return fail(s, -EINVAL, "%s outside a plain section", fn);
	if (len > s->cur.len - s->done)
		return fail(s, -EINVAL, "%s past the section's %llu bytes", fn,
			    (unsigned long long)s->cur.len);
	s->done += len;
	return 0;
}

int mig_section_write(struct mig_stream *s, const void *buf, size_t len)
{
	int r = plain_body(s, len, "mig_section_write");

	return r || !len ? r : out_body(s, buf, len);
}

int mig_section_write_live(struct mig_stream *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int r = plain_body(s, len, "mig_section_write_live");

	if (r)
		return r;
	while (len) {
		size_t n;

		if (s->fill == MIG_BUF_SIZE && (r = mig_flush(s)))
			return r;
		n = MIN(len, (size_t)MIG_BUF_SIZE - s->fill);
		s->crc = mig_crc32c_copy(s->crc, s->buf + s->fill, p, n);
		s->fill += n;
		p += n;
		len -= n;
	}
	return 0;
}

int mig_chunked_end(struct mig_stream *s)
{
	uint8_t t[8];

	if (s->err)
		return s->err;
	if (!s->writing || !s->in_section || !(s->cur.flags & MIG_SECTION_CHUNKED))
		return fail(s, -EINVAL, "mig_chunked_end outside a chunked section");
	memset(t, 0, 4);
	put32(t + 4, s->crc);
	s->in_section = false;
	return out(s, t, sizeof(t));
}

int mig_section_end(struct mig_stream *s)
{
	uint8_t t[4];

	if (s->err)
		return s->err;
	if (!s->writing || !s->in_section)
		return fail(s, -EINVAL, "mig_section_end with no section open");
	if (s->cur.flags & MIG_SECTION_CHUNKED)
		return mig_chunked_end(s);
	if (s->done != s->cur.len)
		return fail(s, -EINVAL, "mig_section_end after %llu of the section's %llu bytes",
			    (unsigned long long)s->done, (unsigned long long)s->cur.len);
	put32(t, s->crc);
	s->in_section = false;
	return out(s, t, sizeof(t));
}

int mig_write_section(struct mig_stream *s, uint16_t kind, uint32_t instance, uint32_t version,
		      const void *buf, size_t len)
{
	int r = mig_section_begin(s, kind, instance, version, len);

	if (!r)
		r = mig_section_write(s, buf, len);
	if (!r)
		r = mig_section_end(s);
	return r;
}

int mig_chunked_begin(struct mig_stream *s, uint16_t kind, uint32_t instance, uint32_t version)
{
	int r = writer_can_open(s, kind, "mig_chunked_begin");

	if (r)
		return r;
	r = write_section_header(s, kind, MIG_SECTION_CHUNKED, instance, version, 0);
	if (r)
		return r;
	open_section(s, kind, MIG_SECTION_CHUNKED, instance, version, 0);
	return 0;
}

int mig_chunk_write(struct mig_stream *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	if (s->err)
		return s->err;
	if (!s->writing || !s->in_section || !(s->cur.flags & MIG_SECTION_CHUNKED))
		return fail(s, -EINVAL, "mig_chunk_write outside a chunked section");
	while (len) {
		uint32_t n = (uint32_t)MIN(len, (size_t)MIG_CHUNK_MAX), be = htobe32(n);
		int r = out(s, &be, 4);

		if (!r)
			r = out_body(s, p, n);
		if (r)
			return r;
		s->done += n;
		p += n;
		len -= n;
	}
	return 0;
}

int mig_write_end(struct mig_stream *s)
{
	int r;

	if (s->err)
		return s->err;
	if (!s->writing || s->phase != PHASE_SECTIONS || s->in_section)
		return fail(s, -EINVAL, "mig_write_end: no header written or a section open");
	r = write_section_header(s, MIG_KIND_END, 0, 0, 0, 0);
	if (r)
		return r;
	s->phase = PHASE_DONE;
	return mig_flush(s);
}

/* ---- reading ---- */

int mig_read_header(struct mig_stream *s)
{
	uint8_t h[HDR_LEN];
	uint32_t version, flags;
	int r;

	if (s->err)
		return s->err;
	if (s->writing || s->phase != PHASE_START)
		return fail(s, -EINVAL, "mig_read_header: not a new reader");
	r = in(s, h, sizeof(h), false, "its header");
	if (r)
		return r;
	if (memcmp(h, MIG_MAGIC, 8))
		return fail(s, -EPROTO, "not a vmm state stream (no " MIG_MAGIC " magic)");
	if (get32(h + 32) != mig_crc32c(0, h, 32))
		return fail(s, -EBADMSG, "the stream header's checksum does not match");
	version = get32(h + 8);
	flags = get32(h + 12);
	if (version < MIG_VERSION_MIN || version > MIG_VERSION)
		return fail(s, -EPROTONOSUPPORT,
			    "stream format version %u; this vmm reads versions %u to %u", version,
			    MIG_VERSION_MIN, MIG_VERSION);
	if (flags & ~MIG_F_LIVE)
		return fail(s, -EPROTONOSUPPORT, "unknown stream flags %#x", flags & ~MIG_F_LIVE);
	if (h[16 + MIG_ARCH_LEN - 1])
		return fail(s, -EPROTO, "the stream header's arch name is not terminated");
	memcpy(s->arch, h + 16, MIG_ARCH_LEN);
	s->flags = flags;
	s->phase = PHASE_SECTIONS;
	return 0;
}

int mig_section_next(struct mig_stream *s, struct mig_section *sec)
{
	uint8_t h[SEC_HDR_LEN];
	struct mig_section n;
	int r;

	if (s->err)
		return s->err;
	if (s->writing || s->phase != PHASE_SECTIONS || s->in_section)
		return fail(s, -EINVAL, "mig_section_next: %s",
			    s->in_section ? "the previous section is not finished" :
			    s->phase == PHASE_DONE ? "the stream ended" : "no header read");
	r = in(s, h, sizeof(h), false, "a section header (no END section)");
	if (r)
		return r;
	if (get32(h) != MIG_SECTION_MAGIC)
		return fail(s, -EPROTO, "no section magic where a section starts");
	if (get32(h + 24) != mig_crc32c(0, h, 24))
		return fail(s, -EBADMSG, "a section header's checksum does not match");
	n = (struct mig_section){ .kind = get16(h + 4), .flags = get16(h + 6),
				  .instance = get32(h + 8), .version = get32(h + 12),
				  .len = get64(h + 16) };
	if (!kind_name(n.kind))
		return fail(s, -EPROTO, "unknown section kind %u", n.kind);
	if (n.flags & ~MIG_SECTION_CHUNKED)
		return fail(s, -EPROTO, "unknown section flags %#x", n.flags);
	if (n.kind == MIG_KIND_END) {
		if (n.flags || n.len)
			return fail(s, -EBADMSG, "an END section with a body");
		s->phase = PHASE_DONE;
		*sec = n;
		return 0;
	}
	if (n.flags & MIG_SECTION_CHUNKED && n.len)
		return fail(s, -EBADMSG, "a chunked %s section with a length", kind_name(n.kind));
	if (n.kind != MIG_KIND_RAM && n.len > MIG_SECTION_MAX)
		return fail(s, -EBADMSG, "a %s section of %llu bytes, over the %u-byte limit",
			    kind_name(n.kind), (unsigned long long)n.len, MIG_SECTION_MAX);
	open_section(s, n.kind, n.flags, n.instance, n.version, n.len);
	*sec = n;
	return 0;
}

/* Whether a plain section is open for reading; fn names the caller. */
static int reader_plain(struct mig_stream *s, const char *fn)
{
	if (s->err)
		return s->err;
	if (s->writing || !s->in_section || s->cur.flags & MIG_SECTION_CHUNKED)
		return fail(s, -EINVAL, "%s outside a plain section", fn);
	return 0;
}

int mig_section_read(struct mig_stream *s, void *buf, size_t len)
{
	int r = reader_plain(s, "mig_section_read");

	if (r)
		return r;
	if (len > s->cur.len - s->done)
		return fail(s, -EBADMSG, "%zu bytes read past the section's end (%llu of %llu read)",
			    len, (unsigned long long)s->done, (unsigned long long)s->cur.len);
	r = in(s, buf, len, true, "a section's body");
	if (r)
		return r;
	s->done += len;
	return 0;
}

/* Reads a body crc and compares it; closes the section. */
static int check_crc(struct mig_stream *s)
{
	uint8_t t[4];
	int r = in(s, t, sizeof(t), false, "a section's checksum");

	if (r)
		return r;
	if (get32(t) != s->crc)
		return fail(s, -EBADMSG, "the body's checksum does not match");
	s->in_section = false;
	return 0;
}

int mig_section_finish(struct mig_stream *s)
{
	if (s->err)
		return s->err;
	if (s->writing || !s->in_section)
		return fail(s, -EINVAL, "mig_section_finish with no section open");
	if (s->cur.flags & MIG_SECTION_CHUNKED)
		return fail(s, -EBADMSG, "finished before its last chunk");
	if (s->done != s->cur.len)
		return fail(s, -EBADMSG, "finished after %llu of its %llu bytes",
			    (unsigned long long)s->done, (unsigned long long)s->cur.len);
	return check_crc(s);
}

int mig_section_read_all(struct mig_stream *s, void **out_buf)
{
	size_t have = 0, cap;
	uint8_t *p, *q;
	int r = reader_plain(s, "mig_section_read_all");

	*out_buf = NULL;
	if (r)
		return r;
	if (s->done)
		return fail(s, -EINVAL, "mig_section_read_all after a partial read");
	if (s->cur.len > MIG_SECTION_MAX)
		return fail(s, -EBADMSG, "%llu bytes are too many to read whole",
			    (unsigned long long)s->cur.len);
	/* Grows as bytes arrive: a length the peer claims costs memory only once sent. */
	cap = (size_t)MIN(s->cur.len, (uint64_t)MIG_BUF_SIZE);
	p = malloc(cap ? cap : 1);
	if (!p)
		return fail(s, -ENOMEM, "out of memory for a section's body");
	while (have < s->cur.len) {
		if (have == cap) {
			cap = (size_t)MIN((uint64_t)cap * 2, s->cur.len);
			q = realloc(p, cap);
			if (!q) {
				free(p);
				return fail(s, -ENOMEM, "out of memory for a section's body");
			}
			p = q;
		}
		r = mig_section_read(s, p + have, cap - have);
		if (r) {
			free(p);
			return r;
		}
		have = cap;
	}
	r = mig_section_finish(s);
	if (r) {
		free(p);
		return r;
	}
	*out_buf = p;
	return 0;
}

/* Reads a chunk frame's length: 0..MIG_CHUNK_MAX, or -errno. */
static int64_t chunk_len(struct mig_stream *s)
{
	uint32_t be;
	int r = in(s, &be, 4, false, "a chunk's length");

	if (r)
		return r;
	if (be32toh(be) > MIG_CHUNK_MAX)
		return fail(s, -EBADMSG, "a chunk of %u bytes, over the %u-byte limit",
			    be32toh(be), MIG_CHUNK_MAX);
	return be32toh(be);
}

ssize_t mig_chunk_read(struct mig_stream *s, void *buf, size_t cap)
{
	int64_t n;
	int r;

	if (s->err)
		return s->err;
	if (s->writing || !s->in_section || !(s->cur.flags & MIG_SECTION_CHUNKED))
		return fail(s, -EINVAL, "mig_chunk_read outside a chunked section");
	n = chunk_len(s);
	if (n < 0)
		return n;
	if (n == 0) {
		r = check_crc(s);
		return r ? r : 0;
	}
	if ((uint64_t)n > cap)
		return fail(s, -EBADMSG, "a chunk of %lld bytes does not fit the reader's %zu",
			    (long long)n, cap);
	r = in(s, buf, (size_t)n, true, "a chunk");
	if (r)
		return r;
	s->done += (uint64_t)n;
	return n;
}

int mig_section_skip(struct mig_stream *s)
{
	int64_t n;
	int r;

	if (s->err)
		return s->err;
	if (s->writing || !s->in_section)
		return fail(s, -EINVAL, "mig_section_skip with no section open");
	if (!(s->cur.flags & MIG_SECTION_CHUNKED)) {
		r = in_skip(s, s->cur.len - s->done, "a section's body");
		if (r)
			return r;
		s->done = s->cur.len;
		return check_crc(s);
	}
	while ((n = chunk_len(s)) > 0) {
		r = in_skip(s, (uint64_t)n, "a chunk");
		if (r)
			return r;
		s->done += (uint64_t)n;
	}
	return n < 0 ? (int)n : check_crc(s);
}
