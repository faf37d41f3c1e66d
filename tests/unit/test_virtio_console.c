// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for virtio-console (virtio/console.c): the receive/transmit
 * helpers over pipes and host buffers, then the device with its file and pty
 * back-ends, driven through its registers by the fake driver (fake_driver.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "fake_driver.h"
#include "virtio/console.h"
#include "vmm/base/util.h"

/* ---- helpers over host buffers ---- */

static struct virtq_chain hc;

static void pattern(uint8_t *p, size_t len, size_t start)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((start + i) * 13 + 1);
}

static void nonblocking_pipe(int p[2])
{
	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

Test(console_helpers, rx_reads_into_writable_segments)
{
	char a[3], b[10], ro[4] = "xxxx";
	int p[2];

	nonblocking_pipe(p);
	cr_assert_eq(write(p[1], "hello", 5), 5);
	host_chain(&hc, (struct iovec[]){ { ro, sizeof(ro) } }, 1,
		   (struct iovec[]){ { a, sizeof(a) }, { b, sizeof(b) } }, 2);
	cr_assert_eq(virtio_console_rx_chain(p[0], &hc), 5);
	cr_assert_arr_eq(a, "hel", 3);
	cr_assert_arr_eq(b, "lo", 2);
	cr_assert_arr_eq(ro, "xxxx", 4, "readable segment written");
	cr_assert_eq(virtio_console_rx_chain(p[0], &hc), -EAGAIN, "nothing to read");
	close(p[1]);
	cr_assert_eq(virtio_console_rx_chain(p[0], &hc), -EAGAIN, "end of file reads as no input");
	close(p[0]);
}

Test(console_helpers, rx_reads_no_more_than_the_chain_holds)
{
	char a[4];
	int p[2];

	nonblocking_pipe(p);
	cr_assert_eq(write(p[1], "abcdefgh", 8), 8);
	host_chain(&hc, NULL, 0, (struct iovec[]){ { a, sizeof(a) } }, 1);
	cr_assert_eq(virtio_console_rx_chain(p[0], &hc), 4);
	cr_assert_arr_eq(a, "abcd", 4);
	cr_assert_eq(virtio_console_rx_chain(p[0], &hc), 4,
		     "the rest stays in the pipe for the next chain");
	cr_assert_arr_eq(a, "efgh", 4);
	host_chain(&hc, NULL, 0, NULL, 0);
	cr_assert_eq(virtio_console_rx_chain(p[0], &hc), 0, "a chain without writable bytes");
	close(p[0]);
	close(p[1]);
}

Test(console_helpers, tx_writes_readable_segments_in_order)
{
	char got[32], w[4];
	size_t done = 0;
	int p[2];

	nonblocking_pipe(p);
	host_chain(&hc, (struct iovec[]){ { "hello ", 6 }, { "", 0 }, { "world", 5 } }, 3,
		   (struct iovec[]){ { w, sizeof(w) } }, 1);
	cr_assert_eq(virtio_console_tx_chain(p[1], &hc, &done), 0);
	cr_assert_eq(done, 11);
	cr_assert_eq(read(p[0], got, sizeof(got)), 11);
	cr_assert_arr_eq(got, "hello world", 11);
	close(p[0]);
	close(p[1]);
}

Test(console_helpers, tx_resumes_where_a_full_pipe_stopped_it)
{
	static uint8_t a[3000], b[3000], got[8192];
	size_t done = 0, total = 0;
	ssize_t r;
	int p[2];

	nonblocking_pipe(p);
	cr_assert_eq(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
	pattern(a, sizeof(a), 0);
	pattern(b, sizeof(b), sizeof(a));
	host_chain(&hc, (struct iovec[]){ { a, sizeof(a) }, { b, sizeof(b) } }, 2, NULL, 0);
	cr_assert_eq(virtio_console_tx_chain(p[1], &hc, &done), -EAGAIN);
	cr_assert_gt(done, 0);
	cr_assert_lt(done, 6000);
	while ((r = read(p[0], got + total, sizeof(got) - total)) > 0)
		total += (size_t)r;
	cr_assert_eq(total, done);
	cr_assert_eq(virtio_console_tx_chain(p[1], &hc, &done), 0);
	cr_assert_eq(done, 6000);
	while ((r = read(p[0], got + total, sizeof(got) - total)) > 0)
		total += (size_t)r;
	cr_assert_eq(total, 6000);
	cr_assert_arr_eq(got, a, sizeof(a));
	cr_assert_arr_eq(got + sizeof(a), b, sizeof(b), "bytes lost or repeated across the resume");
	close(p[0]);
	close(p[1]);
}

Test(console_helpers, pty_reader_detection)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY), s;

	cr_assert_geq(m, 0);
	cr_assert_eq(grantpt(m), 0);
	cr_assert_eq(unlockpt(m), 0);
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	cr_assert_geq(s, 0);
	cr_assert(virtio_console_pty_has_reader(m));
	close(s);
	cr_assert_not(virtio_console_pty_has_reader(m));
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	cr_assert(virtio_console_pty_has_reader(m), "a new reader is seen");
	close(s);
	close(m);
}

/* ---- the device with a fake driver ---- */

#define BASE		0xd0000000ULL
#define GSI		7
#define QSIZE		32

static struct virtio_console *con;
static char path[64];
static int slave = -1;			/* the user's end of the pty */

/* Queues len bytes of output (copied into a fresh guest buffer); returns the chain's head. */
static uint16_t drv_output(const void *data, uint32_t len)
{
	uint64_t gpa = alloc_buf(len);

	memcpy(gpa_ptr(gpa), data, len);
	return drv_add(CONSOLE_TXQ, &(struct drv_seg){ gpa, len, false }, 1);
}

static uint64_t drv_add_rx(uint32_t len, uint16_t *head)
{
	uint64_t gpa = alloc_buf(len);
	uint16_t h = drv_add(CONSOLE_RXQ, &(struct drv_seg){ gpa, len, true }, 1);

	if (head)
		*head = h;
	return gpa;
}

static void base_setup(void)
{
	fake_driver_init(QSIZE);
	con = NULL;
}

static void create(enum console_backend backend, const char *file)
{
	struct console_options o = { .backend = backend, .path = file };

	cr_assert_eq(virtio_console_create(&fake_host, &o, "virtio-console0", BASE, GSI, &con), 0);
}

static void base_teardown(void)
{
	virtio_console_destroy(con);
	con = NULL;
	fake_driver_fini();
}

/* ---- file back-end ---- */

static void file_setup(void)
{
	int fd;

	base_setup();
	snprintf(path, sizeof(path), "/tmp/test_virtio_console.%d.log", (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "old\n", 4), 4);
	close(fd);
	create(CONSOLE_BACKEND_FILE, path);
}

static void file_teardown(void)
{
	base_teardown();
	unlink(path);
}

static size_t file_contents(char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	cr_assert_geq(fd, 0);
	n = read(fd, buf, len);
	close(fd);
	cr_assert_geq(n, 0);
	return (size_t)n;
}

TestSuite(virtio_console_file, .init = file_setup, .fini = file_teardown);

Test(virtio_console_file, identity_and_config)
{
	uint8_t cfg[12];

	cr_assert_eq(drv_rd(&con->dev, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_CONSOLE);
	drv_wr(&con->dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	cr_assert_eq(drv_rd(&con->dev, VIRTIO_MMIO_DEVICE_FEATURES) & 0x7, 0,
		     "no SIZE, MULTIPORT or EMERG_WRITE");
	drv_wr(&con->dev, VIRTIO_MMIO_QUEUE_SEL, 2);
	cr_assert_eq(drv_rd(&con->dev, VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "two queues only");
	for (unsigned int i = 0; i < sizeof(cfg); i++)
		virtio_mmio_io(&con->dev, VIRTIO_MMIO_CONFIG + i, &cfg[i], 1, false);
	cr_assert_eq(cfg[0] | cfg[1] << 8, 0, "cols");
	cr_assert_eq(cfg[2] | cfg[3] << 8, 0, "rows");
}

Test(virtio_console_file, output_is_appended)
{
	char got[64];
	uint32_t id, len;
	uint16_t h1, h2;
	uint64_t a = alloc_buf(8), b = alloc_buf(8);

	drv_start(&con->dev, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	h1 = drv_output("hello ", 6);
	memcpy(gpa_ptr(a), "wor", 3);
	memcpy(gpa_ptr(b), "ld\n", 3);
	h2 = drv_add(CONSOLE_TXQ, (struct drv_seg[]){ { a, 3, false }, { b, 3, false } }, 2);
	drv_kick(&con->dev, CONSOLE_TXQ);
	cr_assert(drv_used(CONSOLE_TXQ, &id, &len));
	cr_assert_eq(id, h1);
	cr_assert_eq(len, 0);
	cr_assert(drv_used(CONSOLE_TXQ, &id, &len));
	cr_assert_eq(id, h2);
	cr_assert_eq(file_contents(got, sizeof(got)), 16);
	cr_assert_arr_eq(got, "old\nhello world\n", 16);
	cr_assert_eq(con->tx_bytes, 12);
}

Test(virtio_console_file, no_input)
{
	uint32_t id, len;

	drv_start(&con->dev, 0);
	drv_add_rx(64, NULL);
	drv_kick(&con->dev, CONSOLE_RXQ);
	cr_assert_not(drv_used(CONSOLE_RXQ, &id, &len));
}

Test(virtio_console_file, malformed_transmit_ring_needs_reset)
{
	drv_start(&con->dev, 0);
	drv_offer(CONSOLE_TXQ, QSIZE + 1);	/* head out of range */
	drv_kick(&con->dev, CONSOLE_TXQ);
	cr_assert(drv_rd(&con->dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

TestSuite(virtio_console_create, .init = base_setup, .fini = base_teardown);

Test(virtio_console_create, bad_file_is_refused)
{
	struct console_options o = { .backend = CONSOLE_BACKEND_FILE, .path = "/nonexistent/dir/log" };

	struct virtio_console *c;

	cr_assert_eq(virtio_console_create(&fake_host, &o, "virtio-console0", BASE, GSI, &c),
		     -ENOENT);
	cr_assert_null(c);
	o.path = NULL;
	cr_assert_eq(virtio_console_create(&fake_host, &o, "virtio-console0", BASE, GSI, &c),
		     -EINVAL);
	o.path = "/tmp";
	cr_assert_eq(virtio_console_create(&fake_host, &o, "virtio-console0", BASE, GSI, &c),
		     -EISDIR);
}

Test(virtio_console_create, write_errors_drop_output)
{
	uint32_t id, len;

	if (access("/dev/full", W_OK))
		cr_skip_test("no /dev/full");
	create(CONSOLE_BACKEND_FILE, "/dev/full");
	drv_start(&con->dev, 0);
	drv_output("lost", 4);
	drv_kick(&con->dev, CONSOLE_TXQ);
	cr_assert(drv_used(CONSOLE_TXQ, &id, &len), "the guest got its buffer back");
	cr_assert_eq(con->tx_dropped, 4);
	cr_assert_not(drv_rd(&con->dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* ---- pty back-end ---- */

static void pty_setup(void)
{
	base_setup();
	create(CONSOLE_BACKEND_PTY, NULL);
	slave = -1;
}

static void pty_teardown(void)
{
	if (slave >= 0)
		close(slave);
	base_teardown();
}

/* A user opens the pty; the reconnect timer notices. */
static void user_connects(void)
{
	slave = open(con->pty_path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	cr_assert_geq(slave, 0);
	con->timer_src.fn(&con->timer_src, EPOLLIN);
	cr_assert(con->connected);
	cr_assert(con->pty_watched);
}

static void pty_event(uint32_t events)
{
	con->pty_src.fn(&con->pty_src, events);
}

/* Reads everything the user's end has now. */
static size_t user_reads(uint8_t *buf, size_t len)
{
	size_t total = 0;
	ssize_t r;

	while (total < len && (r = read(slave, buf + total, len - total)) > 0)
		total += (size_t)r;
	return total;
}

TestSuite(virtio_console_pty, .init = pty_setup, .fini = pty_teardown);

Test(virtio_console_pty, path_and_initial_state)
{
	cr_assert(strncmp(con->pty_path, "/dev/pts/", 9) == 0, "path %s", con->pty_path);
	cr_assert_not(con->connected, "nobody has the pty open yet");
	cr_assert_not(con->pty_watched, "a hung-up master would spin the event loop");
	cr_assert(con->timer_watched);
}

Test(virtio_console_pty, output_is_dropped_while_nobody_reads)
{
	static uint8_t chunk[1024];
	uint32_t id, len;
	unsigned int used = 0;

	drv_start(&con->dev, 0);
	/* Far more than the pty buffers: nothing may wait for a reader that is not there. */
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < QSIZE; i++)
			drv_output(chunk, sizeof(chunk));
		drv_kick(&con->dev, CONSOLE_TXQ);
		while (drv_used(CONSOLE_TXQ, &id, &len))
			used++;
		free_bufs();
	}
	cr_assert_eq(used, 4 * QSIZE);
	cr_assert_not(con->tx_blocked);
	cr_assert_gt(con->tx_dropped, 0);
}

Test(virtio_console_pty, raw_output_to_the_user)
{
	uint8_t got[32];
	uint32_t id, len;

	user_connects();
	drv_start(&con->dev, 0);
	drv_output("a\nb\r\n", 5);
	drv_kick(&con->dev, CONSOLE_TXQ);
	cr_assert(drv_used(CONSOLE_TXQ, &id, &len));
	cr_assert_eq(user_reads(got, sizeof(got)), 5);
	cr_assert_arr_eq(got, "a\nb\r\n", 5, "the pty changed the bytes (not raw)");
}

Test(virtio_console_pty, input_reaches_the_guest)
{
	uint32_t id, len;
	uint16_t head;
	uint64_t gpa;

	user_connects();
	drv_start(&con->dev, 0);
	cr_assert(con->pty_src.events & EPOLLIN);
	gpa = drv_add_rx(64, &head);
	drv_kick(&con->dev, CONSOLE_RXQ);
	cr_assert_not(drv_used(CONSOLE_RXQ, &id, &len), "no input yet");
	cr_assert_eq(write(slave, "ls\r", 3), 3);
	pty_event(EPOLLIN);
	cr_assert(drv_used(CONSOLE_RXQ, &id, &len));
	cr_assert_eq(id, head);
	cr_assert_eq(len, 3);
	cr_assert_arr_eq(gpa_ptr(gpa), "ls\r", 3);
}

Test(virtio_console_pty, input_waits_for_buffers_and_is_not_lost)
{
	static uint8_t typed[200];
	uint8_t got[200];
	uint32_t id, len;
	size_t total = 0;
	uint64_t gpa[4];

	user_connects();
	drv_start(&con->dev, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	pattern(typed, sizeof(typed), 7);
	cr_assert_eq(write(slave, typed, sizeof(typed)), (ssize_t)sizeof(typed));
	pty_event(EPOLLIN);
	cr_assert(con->rx_waiting);
	cr_assert_eq(con->pty_src.events & EPOLLIN, 0, "pty still read with no buffers");

	/* Small buffers: the input arrives in pieces, in order. */
	for (int i = 0; i < 4; i++)
		gpa[i] = drv_add_rx(64, NULL);
	drv_kick(&con->dev, CONSOLE_RXQ);
	for (int i = 0; i < 4; i++) {
		if (!drv_used(CONSOLE_RXQ, &id, &len))
			break;
		memcpy(got + total, gpa_ptr(gpa[i]), len);
		total += len;
	}
	cr_assert_eq(total, sizeof(typed));
	cr_assert_arr_eq(got, typed, sizeof(typed));
	cr_assert_eq(con->rx_bytes, sizeof(typed));
}

Test(virtio_console_pty, output_waits_for_a_slow_reader)
{
	static uint8_t sent[QSIZE * 1024], got[QSIZE * 1024];
	uint32_t id, len;
	unsigned int used = 0;
	size_t total = 0;

	user_connects();
	drv_start(&con->dev, 0);
	pattern(sent, sizeof(sent), 0);
	for (int i = 0; i < QSIZE; i++)
		drv_output(sent + i * 1024, 1024);
	drv_kick(&con->dev, CONSOLE_TXQ);
	while (drv_used(CONSOLE_TXQ, &id, &len))
		used++;
	cr_assert_lt(used, QSIZE, "the pty never filled up");
	cr_assert(con->tx_blocked);
	cr_assert(con->pty_src.events & EPOLLOUT);

	for (int rounds = 0; rounds < 1000 && used < QSIZE; rounds++) {
		total += user_reads(got + total, sizeof(got) - total);
		pty_event(EPOLLOUT);
		while (drv_used(CONSOLE_TXQ, &id, &len))
			used++;
	}
	total += user_reads(got + total, sizeof(got) - total);
	cr_assert_eq(used, QSIZE);
	cr_assert_eq(total, sizeof(sent));
	cr_assert_arr_eq(got, sent, sizeof(sent), "output lost or repeated");
	cr_assert_eq(con->tx_dropped, 0);
	cr_assert_not(con->tx_blocked);
}

Test(virtio_console_pty, reader_leaving_unblocks_the_guest)
{
	static uint8_t chunk[1024];
	uint32_t id, len;
	unsigned int used = 0;

	user_connects();
	drv_start(&con->dev, 0);
	for (int i = 0; i < QSIZE; i++)
		drv_output(chunk, sizeof(chunk));
	drv_kick(&con->dev, CONSOLE_TXQ);
	while (drv_used(CONSOLE_TXQ, &id, &len))
		used++;
	cr_assert(con->tx_blocked);

	close(slave);
	slave = -1;
	pty_event(EPOLLHUP);
	while (drv_used(CONSOLE_TXQ, &id, &len))
		used++;
	cr_assert_eq(used, QSIZE, "output waited for a reader that left");
	cr_assert_not(con->connected);
	cr_assert_not(con->pty_watched);
	cr_assert_gt(con->tx_dropped, 0);

	/* A new reader is found again by the timer. */
	user_connects();
	cr_assert(con->pty_src.events & EPOLLIN);
}

/* ---- migration ---- */

/* A destination console at another address writing to a file; its path in dst_path. */
static char dst_path[64];

static struct virtio_console *create_file_dst(void)
{
	struct console_options o = { .backend = CONSOLE_BACKEND_FILE, .path = dst_path };
	struct virtio_console *c;

	snprintf(dst_path, sizeof(dst_path), "/tmp/test_virtio_console.%d.dst", (int)getpid());
	unlink(dst_path);
	cr_assert_eq(virtio_console_create(&fake_host, &o, "virtio-console1", BASE + 0x1000, GSI + 1,
					   &c), 0);
	return c;
}

Test(virtio_console_pty, migrates_a_transmit_the_pty_took_part_of)
{
	static uint8_t sent[QSIZE * 1000], got[QSIZE * 1000];
	struct drv_regs src_regs, dst_regs;
	struct virtio_console *to;
	unsigned int used = 0;
	uint32_t id, len;
	size_t total = 0;
	struct sbuf w;
	int fd;
	ssize_t n;

	user_connects();
	drv_start(&con->dev, 0);
	pattern(sent, sizeof(sent), 0);
	for (int i = 0; i < QSIZE; i++)
		drv_output(sent + i * 1000, 1000);	/* 1000: the pty fills inside a chain */
	drv_kick(&con->dev, CONSOLE_TXQ);
	while (drv_used(CONSOLE_TXQ, &id, &len))
		used++;
	cr_assert(con->tx_blocked, "the pty never filled up");
	cr_assert(con->tx_partial);

	drv_pause_save(&con->dev, &w);
	drv_read_all(&con->dev, &src_regs);
	/* What the source's pty took is the source host's: its user reads it. */
	total = user_reads(got, sizeof(got));
	cr_assert_eq(total, used * 1000 + con->tx_done);

	to = create_file_dst();
	drv_expect_truncations_refused(&to->dev, &w);
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	cr_assert(to->tx_partial);
	cr_assert_eq(to->tx_done, con->tx_done);
	drv_read_all(&to->dev, &dst_regs);
	drv_expect_same_regs(&src_regs, &dst_regs);
	virtio_console_destroy(con);
	con = to;
	drv_resume(&con->dev);
	while (drv_used(CONSOLE_TXQ, &id, &len))
		used++;
	cr_assert_eq(used, QSIZE, "every transmit is answered once");
	fd = open(dst_path, O_RDONLY);
	cr_assert_geq(fd, 0);
	n = read(fd, got + total, sizeof(got) - total + 1);
	close(fd);
	unlink(dst_path);
	cr_assert_eq((size_t)n, sizeof(sent) - total, "the destination wrote the rest, once");
	cr_assert_arr_eq(got, sent, sizeof(sent), "output lost or repeated across the move");
	sbuf_free(&w);
}

Test(virtio_console_pty, load_refuses_a_partial_transmit_outside_the_queue)
{
	struct virtio_console *to;
	struct sbuf w;

	drv_start(&con->dev, 0);
	con->tx_partial = true;
	con->tx_head = 3;
	con->tx_done = 10;
	drv_pause_save(&con->dev, &w);
	/* The model's part ends the state: u32 version, u8 partial, u16 head, u32 done. */
	cr_assert_eq(w.data[w.len - 6], 3);
	w.data[w.len - 6] = QSIZE;
	to = create_file_dst();
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), -EINVAL);
	cr_assert_not(to->tx_partial);
	cr_assert_eq(to->dev.status, 0, "nothing changed");
	w.data[w.len - 6] = 3;
	w.data[w.len - 7] = 2;
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), -EBADMSG, "partial is not a bool");
	w.data[w.len - 7] = 1;
	cr_assert_eq(drv_load(&to->dev, w.data, w.len), 0);
	cr_assert_eq(to->tx_head, 3);
	virtio_console_destroy(to);
	unlink(dst_path);
	sbuf_free(&w);
}

Test(virtio_console_pty, input_marks_its_buffer_dirty)
{
	struct dirty_log log;
	uint32_t id, len;
	uint64_t gpa;

	cr_assert_eq(dirty_log_init(&log, FAKE_RAM_SIZE), 0);
	user_connects();
	drv_start(&con->dev, 0);
	gpa = drv_add_rx(64, NULL);
	drv_kick(&con->dev, CONSOLE_RXQ);
	fake_driver_log_dirty(&log);
	cr_assert_eq(write(slave, "x", 1), 1);
	pty_event(EPOLLIN);
	cr_assert(drv_used(CONSOLE_RXQ, &id, &len));
	cr_assert(drv_page_dirty(&log, gpa));
	cr_assert(drv_page_dirty(&log, drv_used_gpa(CONSOLE_RXQ)));
	cr_assert_not(drv_page_dirty(&log, drv_used_gpa(CONSOLE_TXQ)));
	fake_driver_log_dirty(NULL);
	dirty_log_destroy(&log);
}
