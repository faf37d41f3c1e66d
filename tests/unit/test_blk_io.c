// SPDX-License-Identifier: GPL-2.0-only
/*
 * The disk-I/O engine (virtio/blk_io.h), each test on both kinds: io_uring
 * (skipped where the kernel refuses it) and the synchronous worker. A fake
 * owner queues requests for next() and counts what complete() reports.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "virtio/blk_io.h"
#include "vmm/base/event_loop.h"

#define MAXREQ		1024
#define WAIT_MS		5000

/* The engine's owner: a queue of requests for next(), a count of reports per request. */
struct fake {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct blk_io_req *queue[MAXREQ];
	unsigned int head, tail;
	unsigned int pulled, reported, batches;
	unsigned int seen[MAXREQ];	/* reports per request id (its cookie) */
	ssize_t result[MAXREQ];
};

static struct blk_io_req *fake_next(void *opaque)
{
	struct fake *f = opaque;
	struct blk_io_req *req = NULL;

	pthread_mutex_lock(&f->lock);
	if (f->head < f->tail) {
		req = f->queue[f->head++];
		f->pulled++;
	}
	pthread_mutex_unlock(&f->lock);
	return req;
}

static void fake_complete(void *opaque, struct blk_io_req **reqs, unsigned int n)
{
	struct fake *f = opaque;

	cr_assert_gt(n, 0);
	pthread_mutex_lock(&f->lock);
	for (unsigned int i = 0; i < n; i++) {
		uintptr_t id = (uintptr_t)reqs[i]->cookie;

		f->seen[id]++;
		f->result[id] = reqs[i]->result;
	}
	f->reported += n;
	f->batches++;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static const struct blk_io_ops fake_ops = {
	.next = fake_next,
	.complete = fake_complete,
};

static struct fake *fake_new(void)
{
	struct fake *f = calloc(1, sizeof(*f));

	cr_assert_not_null(f);
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	return f;
}

/* Queues req as request id (no kick). */
static void fake_add(struct fake *f, struct blk_io_req *req, uintptr_t id)
{
	cr_assert_lt(id, MAXREQ);
	req->cookie = (void *)id;
	req->result = 12345;	/* a value the engine never returns */
	pthread_mutex_lock(&f->lock);
	cr_assert_lt(f->tail, MAXREQ);
	f->queue[f->tail++] = req;
	pthread_mutex_unlock(&f->lock);
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Waits until *counter (reported or pulled) reaches n; whether it did within ms. */
static bool fake_wait(struct fake *f, unsigned int *counter, unsigned int n, int ms)
{
	struct timespec ts;
	bool ok;

	deadline_in(&ts, ms);
	pthread_mutex_lock(&f->lock);
	while (*counter < n)
		if (pthread_cond_timedwait(&f->cond, &f->lock, &ts) == ETIMEDOUT)
			break;
	ok = *counter >= n;
	pthread_mutex_unlock(&f->lock);
	return ok;
}

/* Waits until n requests were pulled (polling: next() does not signal). */
static bool fake_wait_pulled(struct fake *f, unsigned int n, int ms)
{
	for (int t = 0; t < ms; t += 5) {
		unsigned int p;

		pthread_mutex_lock(&f->lock);
		p = f->pulled;
		pthread_mutex_unlock(&f->lock);
		if (p >= n)
			return true;
		usleep(5000);
	}
	return false;
}

/* ---- Set-up ---- */

static char tmp_path[] = "/tmp/test_blk_io.XXXXXX";

/* A temporary file of size bytes, byte i being (i * 7 + i / 4096) & 0xff; its fd. */
static int temp_disk(size_t size, int extra_flags)
{
	uint8_t *buf = malloc(size);
	int fd;

	cr_assert_not_null(buf);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 7 + i / 4096);
	strcpy(tmp_path, "/tmp/test_blk_io.XXXXXX");
	fd = mkstemp(tmp_path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, buf, size, 0), (ssize_t)size);
	free(buf);
	if (extra_flags) {
		int fd2 = open(tmp_path, O_RDWR | extra_flags);

		close(fd);
		fd = fd2;
	}
	unlink(tmp_path);
	return fd;
}

static uint8_t disk_byte(uint64_t i)
{
	return (uint8_t)(i * 7 + i / 4096);
}

/* An engine of kind on fd, or the test skipped if io_uring is not available here. */
static struct blk_io *engine(enum blk_io_kind kind, int fd, unsigned int depth,
			     uint32_t dio_align, uint64_t size)
{
	struct blk_io_config cfg = {
		.name = "test", .fd = fd, .depth = depth, .dio_align = dio_align,
		.size = size, .kind = kind,
	};
	struct blk_io *e;
	int r = blk_io_create(&e, &cfg);

	if (r < 0 && kind == BLK_IO_URING)
		cr_skip_test("io_uring is not available here: %s", strerror(-r));
	cr_assert_eq(r, 0, "blk_io_create: %s", strerror(-r));
	cr_assert_eq(blk_io_kind(e), kind);
	return e;
}

/* Runs one request on a started engine and returns its result. */
static ssize_t run_one(struct blk_io *e, struct fake *f, struct blk_io_req *req)
{
	unsigned int id = f->tail;

	fake_add(f, req, id);
	blk_io_kick(e);
	cr_assert(fake_wait(f, &f->reported, id + 1, WAIT_MS), "request %u not completed", id);
	cr_assert_eq(f->seen[id], 1);
	return f->result[id];
}

static ssize_t run_rw(struct blk_io *e, struct fake *f, enum blk_io_op op, uint64_t off,
		      struct iovec *iov, unsigned int niov)
{
	struct blk_io_req req = { .op = op, .offset = off, .iov = iov, .niov = niov };

	return run_one(e, f, &req);
}

static ssize_t run_op(struct blk_io *e, struct fake *f, enum blk_io_op op, uint64_t off,
		      uint64_t len, uint32_t flags)
{
	struct blk_io_req req = { .op = op, .offset = off, .len = len, .flags = flags };

	return run_one(e, f, &req);
}

/* ---- Data ---- */

static void rw_flush(enum blk_io_kind kind)
{
	int fd = temp_disk(1 << 20, 0);
	struct blk_io *e = engine(kind, fd, 8, 0, 1 << 20);
	struct fake *f = fake_new();
	uint8_t out[65536], in[65536], check[65536];
	struct iovec wiov[3] = { { out, 1000 }, { out + 1000, 30000 }, { out + 31000, 34536 } };
	struct iovec riov[2] = { { in, 4096 }, { in + 4096, 61440 } };

	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 13 + 5);
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert_eq(run_rw(e, f, BLK_IO_WRITE, 131072, wiov, 3), 65536);
	cr_assert_eq(run_op(e, f, BLK_IO_FLUSH, 0, 0, 0), 0);
	cr_assert_eq(run_rw(e, f, BLK_IO_READ, 131072, riov, 2), 65536);
	cr_assert_arr_eq(in, out, sizeof(out));
	cr_assert_eq(pread(fd, check, sizeof(check), 131072), (ssize_t)sizeof(check));
	cr_assert_arr_eq(check, out, sizeof(out));
	/* The bytes around it are untouched. */
	cr_assert_eq(pread(fd, check, 16, 131072 - 16), 16);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(check[i], disk_byte(131072 - 16 + i));
	cr_assert_eq(run_op(e, f, BLK_IO_NOP, 0, 0, 0), 0);
	blk_io_destroy(e);
	close(fd);
	free(f);
}

Test(blk_io, uring_reads_writes_and_flushes, .timeout = 20) { rw_flush(BLK_IO_URING); }
Test(blk_io, sync_reads_writes_and_flushes, .timeout = 20) { rw_flush(BLK_IO_SYNC); }

/*
 * 256 writes of distinct 4 KiB blocks, then 256 reads of them, all queued
 * before one kick (through the kick eventfd), 16 in flight: each completes
 * exactly once and the data is right.
 */
static void many_concurrent(enum blk_io_kind kind)
{
	enum { N = 256, BS = 4096, DISK = N * BS * 2 };
	int fd = temp_disk(DISK, 0);
	struct blk_io *e = engine(kind, fd, 16, 0, DISK);
	struct fake *f = fake_new();
	int kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	static struct blk_io_req req[2 * N];
	static struct iovec iov[2 * N];
	static uint8_t wbuf[N][BS], rbuf[N][BS];
	unsigned int block[N];
	uint64_t one = 1;

	cr_assert_geq(kick, 0);
	for (unsigned int i = 0; i < N; i++)
		block[i] = (i * 97) % (2 * N);	/* distinct: 97 is odd */
	for (unsigned int i = 0; i < N; i++) {
		memset(wbuf[i], (int)(i + 1), BS);
		iov[i] = (struct iovec){ wbuf[i], BS };
		req[i] = (struct blk_io_req){ .op = BLK_IO_WRITE, .offset = (uint64_t)block[i] * BS,
					      .iov = &iov[i], .niov = 1 };
		fake_add(f, &req[i], i);
	}
	cr_assert_eq(blk_io_start(e, kick, &fake_ops, f), 0);
	cr_assert_eq(write(kick, &one, sizeof(one)), (ssize_t)sizeof(one));
	cr_assert(fake_wait(f, &f->reported, N, WAIT_MS), "%u of %u writes done", f->reported, N);

	for (unsigned int i = 0; i < N; i++) {
		iov[N + i] = (struct iovec){ rbuf[i], BS };
		req[N + i] = (struct blk_io_req){ .op = BLK_IO_READ,
						  .offset = (uint64_t)block[i] * BS,
						  .iov = &iov[N + i], .niov = 1 };
		fake_add(f, &req[N + i], N + i);
	}
	cr_assert_eq(write(kick, &one, sizeof(one)), (ssize_t)sizeof(one));
	cr_assert(fake_wait(f, &f->reported, 2 * N, WAIT_MS), "%u of %u done", f->reported,
		  2 * N);
	usleep(20000);	/* time for a wrong extra report to show */
	cr_assert_eq(f->reported, 2 * N);
	cr_assert_eq(f->pulled, 2 * N);
	for (unsigned int i = 0; i < 2 * N; i++) {
		cr_assert_eq(f->seen[i], 1, "request %u reported %u times", i, f->seen[i]);
		cr_assert_eq(f->result[i], BS);
	}
	for (unsigned int i = 0; i < N; i++)
		cr_assert_arr_eq(rbuf[i], wbuf[i], BS, "block %u", block[i]);
	cr_assert_lt(f->batches, 2 * N, "completions come in batches");
	blk_io_destroy(e);
	close(kick);
	close(fd);
	free(f);
}

Test(blk_io, uring_many_requests_complete_once, .timeout = 30) { many_concurrent(BLK_IO_URING); }
Test(blk_io, sync_many_requests_complete_once, .timeout = 30) { many_concurrent(BLK_IO_SYNC); }

/* ---- Short transfers ---- */

struct slow_writer {
	int fd;
	const uint8_t *data;
	size_t first, len;
};

/* Writes the first part, waits, writes the rest: the reader sees a short read. */
static void *slow_writer_fn(void *arg)
{
	struct slow_writer *w = arg;

	cr_assert_eq(write(w->fd, w->data, w->first), (ssize_t)w->first);
	usleep(50000);
	cr_assert_eq(write(w->fd, w->data + w->first, w->len - w->first),
		     (ssize_t)(w->len - w->first));
	return NULL;
}

static void short_transfers(enum blk_io_kind kind)
{
	enum { SEGS = 1500, SEG = 512 };
	int pfd[2];
	struct fake *f = fake_new();
	struct blk_io *pe, *fe;
	uint8_t data[8192], got[8192];
	struct iovec iov[2] = { { got, 5000 }, { got + 5000, 3192 } };
	struct slow_writer w = { .data = data, .first = 3000, .len = sizeof(data) };
	static uint8_t big[SEGS * SEG];
	static struct iovec biov[SEGS];
	pthread_t t;
	int fd;

	/* A pipe returns what it has: 3000 bytes, then the rest. */
	cr_assert_eq(pipe(pfd), 0);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i ^ 0x5a);
	w.fd = pfd[1];
	pe = engine(kind, pfd[0], 4, 0, 0);
	cr_assert_eq(blk_io_start(pe, -1, &fake_ops, f), 0);
	cr_assert_eq(pthread_create(&t, NULL, slow_writer_fn, &w), 0);
	cr_assert_eq(run_rw(pe, f, BLK_IO_READ, 0, iov, 2), (ssize_t)sizeof(data));
	pthread_join(t, NULL);
	cr_assert_arr_eq(got, data, sizeof(data));
	blk_io_destroy(pe);

	/* More segments than one system call takes (IOV_MAX): moved in several. */
	fd = temp_disk(2 << 20, 0);
	fe = engine(kind, fd, 4, 0, 2 << 20);
	cr_assert_eq(blk_io_start(fe, -1, &fake_ops, f), 0);
	for (unsigned int i = 0; i < SEGS; i++)
		biov[i] = (struct iovec){ big + i * SEG, SEG };
	cr_assert_eq(run_rw(fe, f, BLK_IO_READ, 4096, biov, SEGS), SEGS * SEG);
	for (size_t i = 0; i < sizeof(big); i++)
		cr_assert_eq(big[i], disk_byte(4096 + i), "byte %zu", i);
	blk_io_destroy(fe);
	close(fd);
	close(pfd[0]);
	close(pfd[1]);
	free(f);
}

Test(blk_io, uring_short_transfers_continue, .timeout = 20) { short_transfers(BLK_IO_URING); }
Test(blk_io, sync_short_transfers_continue, .timeout = 20) { short_transfers(BLK_IO_SYNC); }

/* ---- Errors ---- */

static void errors(enum blk_io_kind kind)
{
	int fd = temp_disk(8192, 0), ro, bad;
	struct fake *f = fake_new();
	struct blk_io *e, *re, *be;
	uint8_t buf[4096];
	struct iovec iov = { buf, sizeof(buf) };

	/* Reads that run into the end of a truncated image. */
	e = engine(kind, fd, 4, 0, 16384);
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert_eq(run_rw(e, f, BLK_IO_READ, 6144, &iov, 1), -EIO);
	iov = (struct iovec){ buf, sizeof(buf) };
	cr_assert_eq(run_rw(e, f, BLK_IO_READ, 16384, &iov, 1), -EIO);
	blk_io_destroy(e);

	/* A write to a read-only fd. */
	snprintf((char *)buf, sizeof(buf), "/proc/self/fd/%d", fd);
	ro = open((char *)buf, O_RDONLY);
	cr_assert_geq(ro, 0);
	re = engine(kind, ro, 4, 0, 8192);
	cr_assert_eq(blk_io_start(re, -1, &fake_ops, f), 0);
	iov = (struct iovec){ buf, 512 };
	cr_assert_eq(run_rw(re, f, BLK_IO_WRITE, 0, &iov, 1), -EBADF);
	blk_io_destroy(re);
	close(ro);

	/* An fd that is not open (high, so that the engine's own fds do not take its number). */
	bad = 1000;
	cr_assert_eq(fcntl(bad, F_GETFD), -1);
	be = engine(kind, bad, 4, 0, 8192);
	cr_assert_eq(blk_io_start(be, -1, &fake_ops, f), 0);
	iov = (struct iovec){ buf, 512 };
	cr_assert_eq(run_rw(be, f, BLK_IO_READ, 0, &iov, 1), -EBADF);
	cr_assert_eq(run_op(be, f, BLK_IO_FLUSH, 0, 0, 0), -EBADF);
	blk_io_destroy(be);
	close(fd);
	free(f);
}

Test(blk_io, uring_errors_are_negative_errno, .timeout = 20) { errors(BLK_IO_URING); }
Test(blk_io, sync_errors_are_negative_errno, .timeout = 20) { errors(BLK_IO_SYNC); }

Test(blk_io, bad_configurations_are_refused)
{
	struct blk_io_config cfg = { .fd = 0, .depth = 0, .kind = BLK_IO_SYNC };
	struct blk_io *e = (struct blk_io *)&cfg;

	cr_assert_eq(blk_io_create(&e, &cfg), -EINVAL);
	cr_assert_null(e);
	cfg.depth = BLK_IO_MAX_DEPTH + 1;
	cr_assert_eq(blk_io_create(&e, &cfg), -EINVAL);
	cfg.depth = 4;
	cfg.dio_align = 3000;
	cr_assert_eq(blk_io_create(&e, &cfg), -EINVAL);
	cfg.dio_align = 512;
	cr_assert_eq(blk_io_create(&e, &cfg), 0);
	cr_assert_eq(blk_io_start(e, -1, NULL, NULL), -EINVAL);
	blk_io_destroy(e);
	blk_io_destroy(NULL);
}

/* ---- Discard, write-zeroes ---- */

static void discard_zeroes(enum blk_io_kind kind)
{
	enum { DISK = 1 << 20 };
	int fd = temp_disk(DISK, 0);
	struct blk_io *e = engine(kind, fd, 4, 0, DISK);
	struct fake *f = fake_new();
	static uint8_t buf[DISK];

	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert_eq(run_op(e, f, BLK_IO_WRITE_ZEROES, 4096, 65536, 0), 0);
	cr_assert_eq(run_op(e, f, BLK_IO_WRITE_ZEROES, 131072, 65536, BLK_IO_F_UNMAP), 0);
	cr_assert_eq(run_op(e, f, BLK_IO_DISCARD, 524288, 65536, 0), 0);
	cr_assert_eq(run_op(e, f, BLK_IO_DISCARD, 0, 0, 0), 0);
	cr_assert_eq(pread(fd, buf, DISK, 0), DISK);
	for (size_t i = 0; i < DISK; i++) {
		bool zero = (i >= 4096 && i < 4096 + 65536) ||
			    (i >= 131072 && i < 131072 + 65536);

		if (i >= 524288 && i < 524288 + 65536)
			continue;	/* a hint: either answer is right */
		cr_assert_eq(buf[i], zero ? 0 : disk_byte(i), "byte %zu", i);
	}
	blk_io_destroy(e);
	close(fd);
	free(f);
}

Test(blk_io, uring_discard_and_write_zeroes, .timeout = 20) { discard_zeroes(BLK_IO_URING); }
Test(blk_io, sync_discard_and_write_zeroes, .timeout = 20) { discard_zeroes(BLK_IO_SYNC); }

/* ---- O_DIRECT ---- */

/* Unaligned offsets, lengths and buffers on an O_DIRECT fd go through the bounce buffer. */
static void direct_unaligned(enum blk_io_kind kind)
{
	enum { DISK = 1 << 20, AL = 4096 };
	int fd = temp_disk(DISK, O_DIRECT);
	struct blk_io *e;
	struct fake *f = fake_new();
	uint8_t *abuf = aligned_alloc(AL, 3 * AL);
	uint8_t out[1600], in[3000], check[3000];
	struct iovec iov;

	if (fd < 0)
		cr_skip_test("no O_DIRECT on /tmp here");
	e = engine(kind, fd, 4, AL, DISK);
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(0xc3 ^ i);
	/* A write of 1600 bytes at 1000 from an unaligned buffer: a read-modify-write. */
	iov = (struct iovec){ out, sizeof(out) };
	cr_assert_eq(run_rw(e, f, BLK_IO_WRITE, 1000, &iov, 1), (ssize_t)sizeof(out));
	/* An unaligned read around it. */
	iov = (struct iovec){ in + 1, 2999 };
	cr_assert_eq(run_rw(e, f, BLK_IO_READ, 501, &iov, 1), 2999);
	for (size_t i = 0; i < 2999; i++) {
		uint64_t off = 501 + i;
		uint8_t want = off >= 1000 && off < 2600 ? out[off - 1000] : disk_byte(off);

		cr_assert_eq(in[1 + i], want, "byte at %llu", (unsigned long long)off);
	}
	/* An aligned read goes straight (no bounce), and sees the same. */
	iov = (struct iovec){ abuf, 2 * AL };
	cr_assert_eq(run_rw(e, f, BLK_IO_READ, 0, &iov, 1), 2 * AL);
	memcpy(check, abuf + 501, 2999);
	cr_assert_arr_eq(check, in + 1, 2999);
	/* Write-zeroes through fallocate or the bounce buffer. */
	cr_assert_eq(run_op(e, f, BLK_IO_WRITE_ZEROES, 8192, 4096, 0), 0);
	iov = (struct iovec){ abuf, AL };
	cr_assert_eq(run_rw(e, f, BLK_IO_READ, 8192, &iov, 1), AL);
	for (int i = 0; i < AL; i++)
		cr_assert_eq(abuf[i], 0);
	blk_io_destroy(e);
	close(fd);
	free(abuf);
	free(f);
}

Test(blk_io, uring_direct_io_bounces_unaligned, .timeout = 20) { direct_unaligned(BLK_IO_URING); }
Test(blk_io, sync_direct_io_bounces_unaligned, .timeout = 20) { direct_unaligned(BLK_IO_SYNC); }

/* ---- Stop and restart ---- */

struct stopper {
	struct blk_io *e;
	atomic_bool done;
};

static void *stopper_fn(void *arg)
{
	struct stopper *s = arg;

	blk_io_stop(s->e);
	atomic_store(&s->done, true);
	return NULL;
}

/*
 * Three 100-byte reads on a pipe with nothing in it yet: stop waits for the
 * ones pulled until the data comes, reports each once, then returns; a
 * restart does the rest.
 */
static void stop_drains(enum blk_io_kind kind)
{
	enum { N = 4, SZ = 100 };
	int pfd[2];
	struct fake *f = fake_new();
	struct blk_io *e;
	struct blk_io_req req[N];
	struct iovec iov[N];
	uint8_t buf[N][SZ], data[N * SZ];
	struct stopper s = { 0 };
	unsigned int pulled;
	pthread_t t;

	cr_assert_eq(pipe(pfd), 0);
	memset(data, 0x77, sizeof(data));
	e = engine(kind, pfd[0], N, 0, 0);
	for (unsigned int i = 0; i < N - 1; i++) {
		iov[i] = (struct iovec){ buf[i], SZ };
		req[i] = (struct blk_io_req){ .op = BLK_IO_READ, .iov = &iov[i], .niov = 1 };
		fake_add(f, &req[i], i);
	}
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	/* io_uring pulls all three; the sync worker is stuck in the first. */
	cr_assert(fake_wait_pulled(f, kind == BLK_IO_URING ? N - 1 : 1, WAIT_MS));
	usleep(20000);

	s.e = e;
	cr_assert_eq(pthread_create(&t, NULL, stopper_fn, &s), 0);
	usleep(100000);
	cr_assert_not(atomic_load(&s.done), "stop returned with reads in flight");
	cr_assert_eq(f->reported, 0);
	pulled = f->pulled;
	cr_assert_eq(pulled, kind == BLK_IO_URING ? N - 1 : 1);

	cr_assert_eq(write(pfd[1], data, pulled * SZ), (ssize_t)(pulled * SZ));
	pthread_join(t, NULL);
	cr_assert(atomic_load(&s.done));
	/* Everything pulled was reported, once, before stop returned; nothing more pulled. */
	cr_assert_eq(f->reported, pulled);
	cr_assert_eq(f->pulled, pulled);
	for (unsigned int i = 0; i < pulled; i++) {
		cr_assert_eq(f->seen[i], 1);
		cr_assert_eq(f->result[i], SZ);
	}

	/* Restart: what was left in the queue, and one more. */
	iov[N - 1] = (struct iovec){ buf[N - 1], SZ };
	req[N - 1] = (struct blk_io_req){ .op = BLK_IO_READ, .iov = &iov[N - 1], .niov = 1 };
	fake_add(f, &req[N - 1], N - 1);
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert_eq(write(pfd[1], data, (N - pulled) * SZ), (ssize_t)((N - pulled) * SZ));
	cr_assert(fake_wait(f, &f->reported, N, WAIT_MS), "%u of %u after restart",
		  f->reported, N);
	for (unsigned int i = 0; i < N; i++) {
		cr_assert_eq(f->seen[i], 1);
		cr_assert_eq(f->result[i], SZ);
		cr_assert_arr_eq(buf[i], data, SZ);
	}
	blk_io_stop(e);
	blk_io_stop(e);	/* twice: a no-op */
	blk_io_destroy(e);
	close(pfd[0]);
	close(pfd[1]);
	free(f);
}

Test(blk_io, uring_stop_drains_and_restarts, .timeout = 20) { stop_drains(BLK_IO_URING); }
Test(blk_io, sync_stop_drains_and_restarts, .timeout = 20) { stop_drains(BLK_IO_SYNC); }

/*
 * Completion coalescing (io_uring): twelve 100-byte reads in flight on a pipe,
 * fed one at a time. The first two finished are held (a batch under a quarter
 * of those in flight, ten others still in the ring) and go out with the third
 * in one report; then one held alone goes out when its wait (hold_us) ends;
 * a depth under eight reports each at once.
 */
/* A counter of f (reported, batches) as the worker has left it. */
static unsigned int fake_now(struct fake *f, const unsigned int *counter)
{
	unsigned int n;

	pthread_mutex_lock(&f->lock);
	n = *counter;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static unsigned int reported_now(struct fake *f)
{
	return fake_now(f, &f->reported);
}

Test(blk_io, uring_batches_wait_for_company, .timeout = 30)
{
	enum { N = 12, SZ = 100 };
	struct blk_io_config cfg = { .name = "test", .depth = 16, .kind = BLK_IO_URING,
				     .hold_us = 1500000 };
	struct blk_io_req req[N];
	struct iovec iov[N];
	uint8_t buf[N][SZ], data[N * SZ];
	struct fake *f = fake_new();
	struct blk_io *e;
	struct timespec t0, t1;
	unsigned int batches_before;
	int pfd[2], r;

	cr_assert_eq(pipe(pfd), 0);
	memset(data, 0x3c, sizeof(data));
	cfg.fd = pfd[0];
	r = blk_io_create(&e, &cfg);
	if (r < 0)
		cr_skip_test("io_uring is not available here: %s", strerror(-r));
	for (unsigned int i = 0; i < N; i++) {
		iov[i] = (struct iovec){ buf[i], SZ };
		req[i] = (struct blk_io_req){ .op = BLK_IO_READ, .iov = &iov[i], .niov = 1 };
		fake_add(f, &req[i], i);
	}
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert(fake_wait_pulled(f, N, WAIT_MS));
	usleep(20000);

	for (unsigned int i = 0; i < 2; i++) {
		cr_assert_eq(write(pfd[1], data, SZ), SZ);
		usleep(50000);
		cr_assert_eq(reported_now(f), 0, "completion %u reported alone, not held", i + 1);
	}
	cr_assert_eq(write(pfd[1], data, SZ), SZ);
	cr_assert(fake_wait(f, &f->reported, 3, WAIT_MS));
	cr_assert_eq(f->reported, 3);
	cr_assert_eq(f->batches, 1, "three completions in %u reports", f->batches);

	/* Nine in flight: one finished is held, and goes alone once its wait is over. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(write(pfd[1], data, SZ), SZ);
	usleep(50000);
	cr_assert_eq(reported_now(f), 3, "held for less than its wait");
	cr_assert(fake_wait(f, &f->reported, 4, WAIT_MS));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(f->batches, 2);
	cr_assert_geq((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000, 1400);

	/* The rest: every request reported once with its data. */
	cr_assert_eq(write(pfd[1], data, (N - 4) * SZ), (N - 4) * SZ);
	cr_assert(fake_wait(f, &f->reported, N, WAIT_MS), "%u of %u", f->reported, N);
	for (unsigned int i = 0; i < N; i++) {
		cr_assert_eq(f->seen[i], 1);
		cr_assert_eq(f->result[i], SZ);
	}
	blk_io_stop(e);

	/* Four in flight: nothing is held. */
	batches_before = f->batches;
	f->batches = 0;
	for (unsigned int i = 0; i < 4; i++) {
		req[i] = (struct blk_io_req){ .op = BLK_IO_READ, .iov = &iov[i], .niov = 1 };
		fake_add(f, &req[i], N + i);
	}
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert(fake_wait_pulled(f, N + 4, WAIT_MS));
	usleep(20000);
	cr_assert_eq(write(pfd[1], data, SZ), SZ);
	cr_assert(fake_wait(f, &f->reported, N + 1, 200), "a completion at depth 4 was held");
	cr_assert_eq(write(pfd[1], data, 3 * SZ), 3 * SZ);
	cr_assert(fake_wait(f, &f->reported, N + 4, WAIT_MS));
	blk_io_stop(e);

	/* What the statistics say of it all. */
	{
		struct blk_io_stats st;

		blk_io_get_stats(e, &st);
		cr_assert_eq(st.completed, N + 4);
		cr_assert_eq(st.reports, batches_before + f->batches, "every complete() call counted");
		cr_assert_geq(st.holds, 3, "the first two and the lone one waited: %" PRIu64, st.holds);
		cr_assert_geq(st.hold_expiries, 1, "the lone one went by the safety net");
		cr_assert_geq(st.reports_shallow, 1, "at depth 4 and at the end: shallow reports");
		cr_assert_leq(st.reports_shallow, st.reports);
	}
	blk_io_destroy(e);
	close(pfd[0]);
	close(pfd[1]);
	free(f);
}

/*
 * A streaming guest (io_uring): 40 reads taken while others are in flight make
 * the engine see one. Then, with the disk idle, a lone answer waits (the
 * window, 300 ms here) for the guest's next request, and, once that one is at
 * the disk, for its answer: the two go out in one report. With no next
 * request the answer goes when the window ends. A guest that sends one request
 * at a time (the end of the test) is not streaming: its answer goes at once.
 */
static unsigned int batches_now(struct fake *f)
{
	return fake_now(f, &f->batches);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

Test(blk_io, uring_streaming_guest_waits_for_its_next_request, .timeout = 30)
{
	enum { N = 40, SZ = 100 };
	struct blk_io_config cfg = { .name = "test", .depth = 64, .kind = BLK_IO_URING,
				     .hold_us = 5000000, .window_us = 300000 };
	struct blk_io_req req[N + 3], one;
	struct iovec iov[N + 3], one_iov;
	uint8_t buf[N + 3][SZ], data[N * SZ];
	struct fake *f = fake_new();
	struct timespec t0;
	unsigned int b;
	struct blk_io *e;
	int pfd[2], r;

	cr_assert_eq(pipe(pfd), 0);
	memset(data, 0x7e, sizeof(data));
	cfg.fd = pfd[0];
	r = blk_io_create(&e, &cfg);
	if (r < 0)
		cr_skip_test("io_uring is not available here: %s", strerror(-r));
	for (unsigned int i = 0; i < N + 3; i++) {
		iov[i] = (struct iovec){ buf[i], SZ };
		req[i] = (struct blk_io_req){ .op = BLK_IO_READ, .iov = &iov[i], .niov = 1 };
	}
	for (unsigned int i = 0; i < N; i++)
		fake_add(f, &req[i], i);
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert(fake_wait_pulled(f, N, WAIT_MS));
	cr_assert_eq(write(pfd[1], data, N * SZ), N * SZ);
	cr_assert(fake_wait(f, &f->reported, N, WAIT_MS), "%u of %u", f->reported, N);
	usleep(400000);		/* the last of them may have waited out a window */

	/* One request, answered with the disk idle: it waits for the next. */
	fake_add(f, &req[N], N);
	blk_io_kick(e);
	cr_assert(fake_wait_pulled(f, N + 1, WAIT_MS));
	b = batches_now(f);
	cr_assert_eq(write(pfd[1], data, SZ), SZ);
	usleep(100000);
	cr_assert_eq(reported_now(f), N, "the lone answer waits for the guest's next request");
	fake_add(f, &req[N + 1], N + 1);
	blk_io_kick(e);
	cr_assert(fake_wait_pulled(f, N + 2, WAIT_MS));
	usleep(400000);
	cr_assert_eq(reported_now(f), N, "... and then for that request's answer, past the window");
	cr_assert_eq(write(pfd[1], data, SZ), SZ);
	cr_assert(fake_wait(f, &f->reported, N + 2, WAIT_MS));
	cr_assert_eq(batches_now(f), b + 1, "the two answers in one report");

	/* No next request: the answer goes when the window ends. */
	usleep(400000);
	fake_add(f, &req[N + 2], N + 2);
	blk_io_kick(e);
	cr_assert(fake_wait_pulled(f, N + 3, WAIT_MS));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(write(pfd[1], data, SZ), SZ);
	cr_assert(fake_wait(f, &f->reported, N + 3, WAIT_MS));
	cr_assert_geq(ms_since(&t0), 250, "it waited out the window");
	cr_assert_lt(ms_since(&t0), 3000, "not the safety net's 5 s");
	blk_io_stop(e);

	/* A new start: one request at a time, waited for — not streaming, no wait. */
	one_iov = (struct iovec){ buf[0], SZ };
	one = (struct blk_io_req){ .op = BLK_IO_READ, .iov = &one_iov, .niov = 1 };
	fake_add(f, &one, N + 3);
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert(fake_wait_pulled(f, N + 4, WAIT_MS));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(write(pfd[1], data, SZ), SZ);
	cr_assert(fake_wait(f, &f->reported, N + 4, WAIT_MS));
	cr_assert_lt(ms_since(&t0), 200, "answered at once");
	blk_io_stop(e);
	blk_io_destroy(e);
	close(pfd[0]);
	close(pfd[1]);
	free(f);
}

/*
 * next() is asked again after every batch of completions, so an owner may
 * leave guest kicks off while requests are in flight: a request queued then,
 * without a kick, is still taken.
 */
static void pulls_after_completions(enum blk_io_kind kind)
{
	int pfd[2];
	struct fake *f = fake_new();
	struct blk_io *e;
	uint8_t buf[2][64], data[128];
	struct iovec iov[2] = { { buf[0], 64 }, { buf[1], 64 } };
	struct blk_io_req req[2] = {
		{ .op = BLK_IO_READ, .iov = &iov[0], .niov = 1 },
		{ .op = BLK_IO_READ, .iov = &iov[1], .niov = 1 },
	};

	cr_assert_eq(pipe(pfd), 0);
	memset(data, 0x19, sizeof(data));
	e = engine(kind, pfd[0], 4, 0, 0);
	fake_add(f, &req[0], 0);
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert(fake_wait_pulled(f, 1, WAIT_MS));
	usleep(20000);	/* io_uring: next() has said "nothing more" by now */
	fake_add(f, &req[1], 1);	/* no kick */
	cr_assert_eq(write(pfd[1], data, sizeof(data)), (ssize_t)sizeof(data));
	cr_assert(fake_wait(f, &f->reported, 2, WAIT_MS), "%u of 2 done", f->reported);
	cr_assert_eq(f->seen[0], 1);
	cr_assert_eq(f->seen[1], 1);
	cr_assert_eq(f->result[1], 64);
	blk_io_destroy(e);
	close(pfd[0]);
	close(pfd[1]);
	free(f);
}

Test(blk_io, uring_asks_again_after_completions, .timeout = 20)
{
	pulls_after_completions(BLK_IO_URING);
}

Test(blk_io, sync_asks_again_after_completions, .timeout = 20)
{
	pulls_after_completions(BLK_IO_SYNC);
}

/* ---- Isolation ---- */

static sem_t loop_ran;

static void loop_cb(struct event_source *src, uint32_t events)
{
	uint64_t v;

	cr_assert_eq(read(src->fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	sem_post(&loop_ran);
}

/*
 * A disk that blocks (a pipe with no data) holds up its own engine only:
 * another engine's request completes, and the event loop runs its sources.
 */
static void blocked_disk(enum blk_io_kind kind)
{
	int pfd[2], fd = temp_disk(65536, 0);
	struct fake *fa = fake_new(), *fb = fake_new();
	struct blk_io *a, *b;
	uint8_t abuf[512], bbuf[4096], data[512];
	struct iovec aiov = { abuf, sizeof(abuf) }, biov = { bbuf, sizeof(bbuf) };
	struct blk_io_req areq = { .op = BLK_IO_READ, .iov = &aiov, .niov = 1 };
	struct event_loop loop;
	struct event_source src = { 0 };
	struct timespec ts;
	uint64_t one = 1;

	cr_assert_eq(pipe(pfd), 0);
	a = engine(kind, pfd[0], 4, 0, 0);
	b = engine(kind, fd, 4, 0, 65536);
	cr_assert_eq(blk_io_start(a, -1, &fake_ops, fa), 0);
	cr_assert_eq(blk_io_start(b, -1, &fake_ops, fb), 0);
	sem_init(&loop_ran, 0, 0);
	cr_assert_eq(event_loop_init(&loop), 0);
	src.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	src.fn = loop_cb;
	cr_assert_eq(event_loop_add(&loop, &src, EPOLLIN), 0);
	cr_assert_eq(event_loop_start(&loop), 0);

	/* The blocked disk: a read that waits for data. */
	fake_add(fa, &areq, 0);
	blk_io_kick(a);
	cr_assert(fake_wait_pulled(fa, 1, WAIT_MS));
	usleep(20000);

	/* Another engine, and the event loop, go on. */
	cr_assert_eq(run_rw(b, fb, BLK_IO_READ, 8192, &biov, 1), 4096);
	for (int i = 0; i < 4096; i++)
		cr_assert_eq(bbuf[i], disk_byte(8192 + i));
	cr_assert_eq(write(src.fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	deadline_in(&ts, WAIT_MS);
	cr_assert_eq(sem_timedwait(&loop_ran, &ts), 0, "the event loop is stuck");
	cr_assert_eq(fa->reported, 0, "the blocked read completed without data");

	/* The blocked disk delivers: its read completes. */
	memset(data, 0x42, sizeof(data));
	cr_assert_eq(write(pfd[1], data, sizeof(data)), (ssize_t)sizeof(data));
	cr_assert(fake_wait(fa, &fa->reported, 1, WAIT_MS));
	cr_assert_eq(fa->result[0], 512);
	cr_assert_arr_eq(abuf, data, sizeof(data));

	event_loop_destroy(&loop);
	close(src.fd);
	blk_io_destroy(a);
	blk_io_destroy(b);
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
	free(fa);
	free(fb);
}

Test(blk_io, uring_blocked_disk_blocks_only_its_engine, .timeout = 20)
{
	blocked_disk(BLK_IO_URING);
}

Test(blk_io, sync_blocked_disk_blocks_only_its_engine, .timeout = 20)
{
	blocked_disk(BLK_IO_SYNC);
}

/* AUTO picks io_uring where it works, the sync worker elsewhere; both do I/O. */
Test(blk_io, auto_picks_a_working_kind, .timeout = 20)
{
	int fd = temp_disk(65536, 0);
	struct blk_io *e;
	struct blk_io_config cfg = { .name = "auto", .fd = fd, .depth = 4, .kind = BLK_IO_AUTO };
	struct fake *f = fake_new();
	uint8_t buf[512];
	struct iovec iov = { buf, sizeof(buf) };

	cr_assert_eq(blk_io_create(&e, &cfg), 0);
	cr_assert(blk_io_kind(e) == BLK_IO_URING || blk_io_kind(e) == BLK_IO_SYNC);
	cr_assert_eq(blk_io_start(e, -1, &fake_ops, f), 0);
	cr_assert_eq(run_rw(e, f, BLK_IO_READ, 512, &iov, 1), 512);
	cr_assert_eq(buf[0], disk_byte(512));
	blk_io_destroy(e);
	close(fd);
	free(f);
}
