// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the 16550A UART model (vmm/serial.c): registers as Linux's
 * 8250 driver probes them, transmit and receive paths, interrupts, loopback,
 * a two-thread receive stress, and migration (serial_save/serial_load).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/serial_reg.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "vmm/serial.h"

#define MAX_EVENTS 256

/* Everything the UART told the outside world. */
struct env {
	struct serial s;
	uint8_t tx[MAX_EVENTS];
	unsigned int ntx;
	bool irq[MAX_EVENTS];
	unsigned int nirq;
	atomic_uint irq_changes;
	atomic_bool irq_repeated;	/* set_irq called with the level it already had */
	bool irq_now;
	atomic_uint rx_space;
};

static struct env env;

static void env_set_irq(void *opaque, bool level)
{
	struct env *e = opaque;

	if (level == e->irq_now)
		atomic_store(&e->irq_repeated, true);
	e->irq_now = level;
	if (e->nirq < MAX_EVENTS)
		e->irq[e->nirq++] = level;
	atomic_fetch_add(&e->irq_changes, 1);
}

static void env_tx(void *opaque, uint8_t byte)
{
	struct env *e = opaque;

	if (e->ntx < MAX_EVENTS)
		e->tx[e->ntx++] = byte;
}

static void env_rx_space(void *opaque)
{
	struct env *e = opaque;

	atomic_fetch_add(&e->rx_space, 1);
}

static const struct serial_ops env_ops = {
	.set_irq = env_set_irq,
	.tx = env_tx,
	.rx_space = env_rx_space,
};

static void setup(void)
{
	memset(&env, 0, sizeof(env));
	serial_init(&env.s, &env_ops, &env);
}

static void teardown(void)
{
	serial_destroy(&env.s);
}

TestSuite(serial, .init = setup, .fini = teardown);

static void wr(unsigned int reg, uint8_t v)
{
	serial_io(&env.s, reg, &v, 1, true);
}

static uint8_t rd(unsigned int reg)
{
	uint8_t v = 0x5a;

	serial_io(&env.s, reg, &v, 1, false);
	return v;
}

static size_t receive_str(const char *str)
{
	return serial_receive(&env.s, (const uint8_t *)str, strlen(str));
}

static void expect_irq_events(const bool *want, unsigned int n)
{
	cr_assert_eq(env.nirq, n, "%u interrupt line changes, want %u", env.nirq, n);
	for (unsigned int i = 0; i < n; i++)
		cr_assert_eq(env.irq[i], want[i], "change %u: level %d, want %d", i, env.irq[i],
			     want[i]);
	cr_assert_not(atomic_load(&env.irq_repeated), "set_irq called without a change");
}

/* ---- reset state and plain registers ---- */

Test(serial, reset_state)
{
	cr_assert_eq(rd(UART_IER), 0);
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	cr_assert_eq(rd(UART_LCR), 0);
	cr_assert_eq(rd(UART_MCR), UART_MCR_OUT2);
	cr_assert_eq(rd(UART_LSR), UART_LSR_TEMT | UART_LSR_THRE);
	cr_assert_eq(rd(UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	cr_assert_eq(rd(UART_SCR), 0);
	cr_assert_eq(serial_rx_room(&env.s), SERIAL_RX_BUF);
	cr_assert_eq(env.nirq, 0, "the line changed with nothing pending");
	cr_assert_eq(env.ntx, 0);
}

Test(serial, scratch_register)
{
	wr(UART_SCR, 0x55);
	cr_assert_eq(rd(UART_SCR), 0x55);
	wr(UART_SCR, 0xaa);
	cr_assert_eq(rd(UART_SCR), 0xaa);
	wr(UART_SCR, 0x00);
	cr_assert_eq(rd(UART_SCR), 0x00);
}

Test(serial, ier_keeps_low_four_bits)
{
	/* Linux's autoconfig: write 0, read back 0; write 0x0f, read back 0x0f. */
	wr(UART_IER, 0);
	cr_assert_eq(rd(UART_IER) & 0x0f, 0);
	wr(UART_IER, 0x0f);
	cr_assert_eq(rd(UART_IER) & 0x0f, 0x0f);
	wr(UART_IER, 0);
	cr_assert_eq(rd(UART_IER), 0);
	wr(UART_IER, 0xff);
	cr_assert_eq(rd(UART_IER), 0x0f);
	wr(UART_IER, 0xf5);
	cr_assert_eq(rd(UART_IER), 0x05);
}

Test(serial, lcr_and_mcr)
{
	wr(UART_LCR, 0x03);	/* 8N1 */
	cr_assert_eq(rd(UART_LCR), 0x03);
	wr(UART_MCR, 0xff);
	cr_assert_eq(rd(UART_MCR), 0x1f);
	wr(UART_MCR, UART_MCR_OUT2 | UART_MCR_RTS | UART_MCR_DTR);
	cr_assert_eq(rd(UART_MCR), 0x0b);
}

Test(serial, lsr_msr_writes_ignored)
{
	wr(UART_LSR, 0x00);
	cr_assert_eq(rd(UART_LSR), UART_LSR_TEMT | UART_LSR_THRE);
	wr(UART_MSR, 0x00);
	cr_assert_eq(rd(UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
}

Test(serial, dlab_divisor_latch)
{
	wr(UART_IER, 0x05);
	wr(UART_LCR, UART_LCR_DLAB | 0x03);
	wr(UART_DLL, 0x01);	/* 115200 baud */
	wr(UART_DLM, 0x02);
	cr_assert_eq(rd(UART_DLL), 0x01);
	cr_assert_eq(rd(UART_DLM), 0x02);
	cr_assert_eq(env.ntx, 0, "a divisor write was transmitted");
	wr(UART_LCR, 0x03);
	cr_assert_eq(rd(UART_IER), 0x05, "the DLM write changed the IER");
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0, "the DLL read looked like data");
	wr(UART_LCR, UART_LCR_DLAB);
	cr_assert_eq(rd(UART_DLL), 0x01, "divisor lost");
	cr_assert_eq(rd(UART_DLM), 0x02);
}

Test(serial, dlab_does_not_pop_rx)
{
	cr_assert_eq(receive_str("x"), 1);
	wr(UART_LCR, UART_LCR_DLAB);
	cr_assert_neq(rd(UART_RX), 'x');
	wr(UART_LCR, 0);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	cr_assert_eq(rd(UART_RX), 'x');
}

Test(serial, fifo_bits_in_iir)
{
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	wr(UART_FCR, UART_FCR_ENABLE_FIFO);
	cr_assert_eq(rd(UART_IIR), 0xc0 | UART_IIR_NO_INT);
	wr(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | 0x04 | 0xc0);
	cr_assert_eq(rd(UART_IIR), 0xc1);
	wr(UART_FCR, 0);
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
}

Test(serial, wide_access_and_bad_offset)
{
	uint8_t d[4] = { 0xaa, 0xbb, 0xcc, 0xdd };

	wr(UART_SCR, 0x42);
	serial_io(&env.s, UART_SCR, d, 4, false);
	cr_assert_eq(d[0], 0x42);
	cr_assert_eq(d[1], 0);
	cr_assert_eq(d[2], 0);
	cr_assert_eq(d[3], 0);

	memset(d, 0x77, sizeof(d));
	serial_io(&env.s, SERIAL_NREGS, d, 1, false);
	cr_assert_eq(d[0], 0x77, "offset 8 was handled");
	serial_io(&env.s, SERIAL_NREGS, d, 1, true);
	cr_assert_eq(rd(UART_SCR), 0x42);
	cr_assert_eq(env.ntx, 0);
}

/* ---- transmit ---- */

Test(serial, thr_write_transmits)
{
	wr(UART_TX, 'H');
	wr(UART_TX, 'i');
	wr(UART_TX, 0x00);
	wr(UART_TX, 0xff);
	cr_assert_eq(env.ntx, 4);
	cr_assert_eq(env.tx[0], 'H');
	cr_assert_eq(env.tx[1], 'i');
	cr_assert_eq(env.tx[2], 0x00);
	cr_assert_eq(env.tx[3], 0xff);
	cr_assert_eq(rd(UART_LSR) & (UART_LSR_TEMT | UART_LSR_THRE), UART_LSR_TEMT | UART_LSR_THRE);
}

Test(serial, thre_interrupt)
{
	static const bool want[] = { true, false, true, false };

	/* Enabling THRI with an empty THR raises it at once. */
	wr(UART_IER, UART_IER_THRI);
	cr_assert_eq(env.nirq, 1);
	cr_assert(env.irq_now);
	/* Reading the IIR that reports it acknowledges it. */
	cr_assert_eq(rd(UART_IIR), UART_IIR_THRI);
	cr_assert_not(env.irq_now);
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	/* The next transmission raises it again. */
	wr(UART_TX, 'a');
	cr_assert(env.irq_now);
	cr_assert_eq(rd(UART_IIR), UART_IIR_THRI);
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	expect_irq_events(want, 4);
}

Test(serial, thre_interrupt_with_fifo_bits)
{
	wr(UART_FCR, UART_FCR_ENABLE_FIFO);
	wr(UART_IER, UART_IER_THRI);
	cr_assert_eq(rd(UART_IIR), 0xc0 | UART_IIR_THRI);
	cr_assert_eq(rd(UART_IIR), 0xc0 | UART_IIR_NO_INT);
}

Test(serial, thre_masked_when_disabled)
{
	wr(UART_TX, 'a');
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	cr_assert_eq(env.nirq, 0);
	/* Disabling THRI while pending lowers the line. */
	wr(UART_IER, UART_IER_THRI);
	cr_assert(env.irq_now);
	wr(UART_IER, 0);
	cr_assert_not(env.irq_now);
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	cr_assert_eq(env.nirq, 2);
}

Test(serial, irq_line_changes_only)
{
	static const bool want[] = { true, false };

	wr(UART_IER, UART_IER_THRI);
	wr(UART_SCR, 1);		/* unrelated accesses: no callback */
	rd(UART_LSR);
	wr(UART_IER, UART_IER_THRI | UART_IER_RDI);
	cr_assert_eq(receive_str("ab"), 2);	/* RDI now pending too: still high */
	cr_assert_eq(receive_str("c"), 1);
	cr_assert_eq(rd(UART_IIR), UART_IIR_RDI);	/* RDI first */
	rd(UART_RX);
	rd(UART_RX);
	rd(UART_RX);
	cr_assert_eq(rd(UART_IIR), UART_IIR_THRI);	/* then THRE, acknowledged */
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	expect_irq_events(want, 2);
}

/* ---- receive ---- */

Test(serial, receive_fills_up_to_buffer)
{
	uint8_t buf[100];

	for (unsigned int i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i + 1);
	cr_assert_eq(serial_rx_room(&env.s), 64);
	cr_assert_eq(serial_receive(&env.s, buf, sizeof(buf)), SERIAL_RX_BUF);
	cr_assert_eq(serial_rx_room(&env.s), 0);
	cr_assert_eq(serial_receive(&env.s, buf + 64, 36), 0, "a full buffer took more");
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	cr_assert_eq(atomic_load(&env.rx_space), 0);

	for (unsigned int i = 0; i < SERIAL_RX_BUF; i++) {
		cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR, "DR clear at byte %u", i);
		cr_assert_eq(rd(UART_RX), i + 1, "byte %u out of order", i);
		/* Reading from the full buffer says there is room again, once. */
		cr_assert_eq(atomic_load(&env.rx_space), 1, "rx_space calls after byte %u", i);
		cr_assert_eq(serial_rx_room(&env.s), i + 1);
	}
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	cr_assert_eq(env.nirq, 0, "interrupt raised with IER 0");
}

Test(serial, receive_partial_and_wraparound)
{
	uint8_t buf[48];
	unsigned int next_in = 0, next_out = 0;

	/* Push and pop in uneven chunks so the ring wraps several times. */
	for (int round = 0; round < 20; round++) {
		size_t room = serial_rx_room(&env.s);
		size_t n;

		for (unsigned int i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)(next_in + i);
		n = serial_receive(&env.s, buf, sizeof(buf));
		cr_assert_eq(n, room < sizeof(buf) ? room : sizeof(buf));
		next_in += (unsigned int)n;
		for (int k = 0; k < 37 && (rd(UART_LSR) & UART_LSR_DR); k++)
			cr_assert_eq(rd(UART_RX), (uint8_t)next_out++, "round %d", round);
	}
	while (rd(UART_LSR) & UART_LSR_DR)
		cr_assert_eq(rd(UART_RX), (uint8_t)next_out++);
	cr_assert_eq(next_in, next_out);
	cr_assert_gt(next_in, 3 * SERIAL_RX_BUF);
}

Test(serial, receive_zero_bytes)
{
	cr_assert_eq(serial_receive(&env.s, (const uint8_t *)"", 0), 0);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	cr_assert_eq(serial_rx_room(&env.s), SERIAL_RX_BUF);
}

Test(serial, rx_interrupt)
{
	static const bool want[] = { true, false };

	wr(UART_IER, UART_IER_RDI);
	cr_assert_eq(env.nirq, 0);
	cr_assert_eq(receive_str("ok"), 2);
	cr_assert(env.irq_now);
	cr_assert_eq(rd(UART_IIR), UART_IIR_RDI);
	cr_assert_eq(rd(UART_IIR), UART_IIR_RDI, "reading the IIR must not clear RDI");
	cr_assert_eq(rd(UART_RX), 'o');
	cr_assert(env.irq_now);
	cr_assert_eq(rd(UART_RX), 'k');
	cr_assert_not(env.irq_now);
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	expect_irq_events(want, 2);
}

Test(serial, rx_interrupt_enabled_with_data_waiting)
{
	cr_assert_eq(receive_str("z"), 1);
	cr_assert_eq(env.nirq, 0);
	wr(UART_IER, UART_IER_RDI);
	cr_assert(env.irq_now);
	cr_assert_eq(rd(UART_IIR), UART_IIR_RDI);
}

Test(serial, rx_space_only_from_full)
{
	cr_assert_eq(receive_str("abc"), 3);
	rd(UART_RX);
	rd(UART_RX);
	rd(UART_RX);
	rd(UART_RX);	/* empty */
	cr_assert_eq(atomic_load(&env.rx_space), 0);
}

Test(serial, fifo_clear_empties_receiver)
{
	cr_assert_eq(receive_str("abcdef"), 6);
	wr(UART_IER, UART_IER_RDI);
	cr_assert(env.irq_now);
	wr(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	cr_assert_not(env.irq_now, "RDI still raised after the FIFO was cleared");
	cr_assert_eq(serial_rx_room(&env.s), SERIAL_RX_BUF);
	cr_assert_eq(receive_str("g"), 1);
	cr_assert_eq(rd(UART_RX), 'g', "old bytes came back after a clear");
}

Test(serial, fifo_clear_of_full_buffer_signals_space)
{
	uint8_t buf[SERIAL_RX_BUF];

	memset(buf, 'q', sizeof(buf));
	cr_assert_eq(serial_receive(&env.s, buf, sizeof(buf)), SERIAL_RX_BUF);
	cr_assert_eq(serial_rx_room(&env.s), 0);
	/*
	 * The console stops reading its input when the buffer is full and
	 * resumes on rx_space; Linux clears the FIFOs when the port is opened.
	 */
	wr(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR);
	cr_assert_eq(serial_rx_room(&env.s), SERIAL_RX_BUF);
	cr_assert_eq(atomic_load(&env.rx_space), 1,
		     "room appeared in a full buffer but rx_space was not called: input stalls");
}

/* ---- loopback ---- */

Test(serial, loopback_thr_to_rbr)
{
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	wr(UART_TX, 'L');
	wr(UART_TX, 'b');
	cr_assert_eq(env.ntx, 0, "loopback bytes went out");
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	cr_assert_eq(rd(UART_RX), 'L');
	cr_assert_eq(rd(UART_RX), 'b');
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0);
}

Test(serial, loopback_receiver_disconnected)
{
	wr(UART_MCR, UART_MCR_LOOP);
	cr_assert_eq(serial_rx_room(&env.s), 0);
	cr_assert_eq(receive_str("abc"), 0);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	/* Leaving loopback reconnects the line and says there is room. */
	wr(UART_MCR, UART_MCR_OUT2);
	cr_assert_eq(atomic_load(&env.rx_space), 1);
	cr_assert_eq(serial_rx_room(&env.s), SERIAL_RX_BUF);
	cr_assert_eq(receive_str("abc"), 3);
	cr_assert_eq(rd(UART_RX), 'a');
}

Test(serial, loopback_full_buffer_drops)
{
	wr(UART_MCR, UART_MCR_LOOP);
	for (unsigned int i = 0; i < SERIAL_RX_BUF + 10; i++)
		wr(UART_TX, (uint8_t)i);
	wr(UART_MCR, 0);
	for (unsigned int i = 0; i < SERIAL_RX_BUF; i++)
		cr_assert_eq(rd(UART_RX), i);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0);
}

Test(serial, loopback_msr_follows_mcr)
{
	wr(UART_MCR, UART_MCR_LOOP);
	cr_assert_eq(rd(UART_MSR) & 0xf0, 0);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	cr_assert_eq(rd(UART_MSR) & 0xf0, UART_MSR_DSR);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_RTS);
	cr_assert_eq(rd(UART_MSR) & 0xf0, UART_MSR_CTS);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT1);
	cr_assert_eq(rd(UART_MSR) & 0xf0, UART_MSR_RI);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	cr_assert_eq(rd(UART_MSR) & 0xf0, UART_MSR_DCD);
	/* Linux's 8250 loopback check: MCR = LOOP|OUT2|RTS must read MSR 0x90. */
	wr(UART_MCR, UART_MCR_LOOP | 0x0a);
	cr_assert_eq(rd(UART_MSR) & 0xf0, 0x90);
	wr(UART_MCR, UART_MCR_LOOP | 0x0f);
	cr_assert_eq(rd(UART_MSR) & 0xf0, 0xf0);
	/* Out of loopback the real modem lines come back. */
	wr(UART_MCR, 0);
	cr_assert_eq(rd(UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
}

Test(serial, loopback_interrupt_output_disconnected)
{
	static const bool want[] = { true };

	wr(UART_IER, UART_IER_RDI);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	wr(UART_TX, 'x');
	cr_assert_eq(rd(UART_IIR), UART_IIR_RDI, "the UART itself still sees the interrupt");
	cr_assert_eq(env.nirq, 0, "the line moved in loopback");
	wr(UART_MCR, UART_MCR_OUT2);
	expect_irq_events(want, 1);
}

/* ---- two threads: receive and read concurrently ---- */

#define STRESS_BYTES 200000

static uint8_t stress_byte(unsigned int i)
{
	return (uint8_t)(i % 251 + (i / 251) % 3);
}

static void *stress_producer(void *arg)
{
	unsigned int sent = 0;
	uint8_t chunk[23];

	(void)arg;
	while (sent < STRESS_BYTES) {
		size_t n = sizeof(chunk), got;

		if (n > STRESS_BYTES - sent)
			n = STRESS_BYTES - sent;
		for (size_t i = 0; i < n; i++)
			chunk[i] = stress_byte(sent + (unsigned int)i);
		got = serial_receive(&env.s, chunk, n);
		sent += (unsigned int)got;
		if (got < n)
			sched_yield();
	}
	return NULL;
}

struct consumer_result {
	unsigned int received;
	unsigned int first_bad;		/* index of the first out-of-order byte, or UINT32_MAX */
};

static void *stress_consumer(void *arg)
{
	struct consumer_result *res = arg;

	res->first_bad = UINT32_MAX;
	while (res->received < STRESS_BYTES) {
		uint8_t v;

		if (!(rd(UART_LSR) & UART_LSR_DR)) {
			sched_yield();
			continue;
		}
		v = rd(UART_RX);
		if (v != stress_byte(res->received) && res->first_bad == UINT32_MAX)
			res->first_bad = res->received;
		res->received++;
	}
	return NULL;
}

Test(serial, concurrent_receive_and_read, .timeout = 60)
{
	struct consumer_result res = { 0 };
	pthread_t prod, cons;

	wr(UART_IER, UART_IER_RDI);
	cr_assert_eq(pthread_create(&cons, NULL, stress_consumer, &res), 0);
	cr_assert_eq(pthread_create(&prod, NULL, stress_producer, NULL), 0);
	pthread_join(prod, NULL);
	pthread_join(cons, NULL);
	cr_assert_eq(res.received, STRESS_BYTES);
	cr_assert_eq(res.first_bad, UINT32_MAX, "byte %u lost or out of order", res.first_bad);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0, "bytes left over");
	cr_assert_eq(serial_rx_room(&env.s), SERIAL_RX_BUF);
	cr_assert_not(atomic_load(&env.irq_repeated), "set_irq called without a change");
	cr_assert_not(env.irq_now, "line still raised with nothing pending");
	cr_assert_eq(atomic_load(&env.irq_changes) % 2, 0);
}

/* ---- migration: serial_save / serial_load ---- */

/* A second UART, the destination of a migration, with its own record of the outside world. */
static struct env dst;

static void dst_init(void)
{
	memset(&dst, 0, sizeof(dst));
	serial_init(&dst.s, &env_ops, &dst);
}

static uint8_t rd_on(struct serial *s, unsigned int reg)
{
	uint8_t v = 0x5a;

	serial_io(s, reg, &v, 1, false);
	return v;
}

static void wr_on(struct serial *s, unsigned int reg, uint8_t v)
{
	serial_io(s, reg, &v, 1, true);
}

/* env.s's state into a new writer (freed by the caller). */
static void save_src(struct sbuf *w)
{
	sbuf_init_writer(w);
	cr_assert_eq(serial_save(&env.s, w), 0);
}

static int load_dst(const void *data, size_t len)
{
	struct sbuf r;

	sbuf_init_reader(&r, data, len);
	return serial_load(&dst.s, &r);
}

/* Every register of both UARTs reads the same, in the same order (reads have side effects). */
static void expect_same_reads(void)
{
	static const unsigned int regs[] = { UART_IER, UART_IIR, UART_LCR, UART_MCR, UART_LSR,
					     UART_MSR, UART_SCR, UART_IIR };

	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		cr_assert_eq(rd_on(&dst.s, regs[i]), rd_on(&env.s, regs[i]), "register %u",
			     regs[i]);
	/* The divisor latch. */
	wr_on(&env.s, UART_LCR, rd_on(&env.s, UART_LCR) | UART_LCR_DLAB);
	wr_on(&dst.s, UART_LCR, rd_on(&dst.s, UART_LCR) | UART_LCR_DLAB);
	cr_assert_eq(rd_on(&dst.s, UART_DLL), rd_on(&env.s, UART_DLL));
	cr_assert_eq(rd_on(&dst.s, UART_DLM), rd_on(&env.s, UART_DLM));
	wr_on(&env.s, UART_LCR, rd_on(&env.s, UART_LCR) & ~UART_LCR_DLAB);
	wr_on(&dst.s, UART_LCR, rd_on(&dst.s, UART_LCR) & ~UART_LCR_DLAB);
}

/* A UART mid-stream: divisor, line settings, FIFO on, a wrapped receive buffer, RX interrupt. */
static void busy_source(void)
{
	char in[SERIAL_RX_BUF + 1];

	wr(UART_LCR, UART_LCR_DLAB);
	wr(UART_DLL, 0x01);
	wr(UART_DLM, 0x02);
	wr(UART_LCR, UART_LCR_WLEN8 | UART_LCR_STOP);
	wr(UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
	wr(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_14);
	wr(UART_SCR, 0x77);
	/* Fill, read 40, refill: the buffer's head is not at 0 any more. */
	memset(in, 'a', SERIAL_RX_BUF);
	in[SERIAL_RX_BUF] = '\0';
	cr_assert_eq(receive_str(in), SERIAL_RX_BUF);
	for (int i = 0; i < 40; i++)
		rd(UART_RX);
	cr_assert_eq(receive_str("0123456789"), 10);
	wr(UART_IER, UART_IER_RDI);
	cr_assert(env.irq_now, "the source has a receive interrupt pending");
}

Test(serial, save_load_round_trip_mid_stream)
{
	struct sbuf w;

	busy_source();
	save_src(&w);
	dst_init();
	cr_assert_eq(load_dst(w.data, w.len), 0);
	cr_assert(dst.irq_now, "the pending receive interrupt is raised on the destination");
	cr_assert_eq(dst.nirq, 1);
	cr_assert_geq(atomic_load(&dst.rx_space), 1, "the destination's input is asked for more");
	cr_assert_eq(serial_rx_room(&dst.s), serial_rx_room(&env.s));
	expect_same_reads();
	/* The received bytes, oldest first, then the same empty state. */
	for (unsigned int i = 0; i < SERIAL_RX_BUF - 40 + 10; i++) {
		uint8_t a = rd(UART_RX), b = rd_on(&dst.s, UART_RX);

		cr_assert_eq(b, a, "byte %u: %#x, want %#x", i, b, a);
	}
	cr_assert_eq(rd_on(&dst.s, UART_LSR) & UART_LSR_DR, 0);
	cr_assert_not(dst.irq_now, "reading everything lowers the destination's line");
	expect_same_reads();
	sbuf_free(&w);
	serial_destroy(&dst.s);
}

Test(serial, save_load_keeps_a_pending_thre_interrupt)
{
	struct sbuf w, w2;

	wr(UART_IER, UART_IER_THRI);
	cr_assert(env.irq_now);
	save_src(&w);
	dst_init();
	cr_assert_eq(load_dst(w.data, w.len), 0);
	cr_assert(dst.irq_now);
	sbuf_init_writer(&w2);
	cr_assert_eq(serial_save(&dst.s, &w2), 0);
	cr_assert_eq(w2.len, w.len);
	cr_assert_arr_eq(w2.data, w.data, w.len, "a loaded UART saves as its source");
	cr_assert_eq(rd_on(&dst.s, UART_IIR) & 0x0f, UART_IIR_THRI);
	cr_assert_not(dst.irq_now, "reading the IIR acknowledges it");
	sbuf_free(&w);
	sbuf_free(&w2);
	serial_destroy(&dst.s);
}

Test(serial, load_lowers_a_line_the_state_does_not_raise)
{
	struct sbuf w;

	save_src(&w);	/* reset state: nothing pending */
	dst_init();
	wr_on(&dst.s, UART_IER, UART_IER_THRI);
	cr_assert(dst.irq_now);
	cr_assert_eq(load_dst(w.data, w.len), 0);
	cr_assert_not(dst.irq_now);
	expect_same_reads();
	sbuf_free(&w);
	serial_destroy(&dst.s);
}

/* The destination's own state, as a save shows it (to see that a refused load changed nothing). */
static void dst_snapshot(struct sbuf *w)
{
	sbuf_init_writer(w);
	cr_assert_eq(serial_save(&dst.s, w), 0);
}

static void expect_dst_unchanged(const struct sbuf *before)
{
	struct sbuf now;

	dst_snapshot(&now);
	cr_assert_eq(now.len, before->len);
	cr_assert_arr_eq(now.data, before->data, now.len, "a refused load changed the UART");
	sbuf_free(&now);
}

Test(serial, load_refuses_every_truncation)
{
	struct sbuf w, before;

	busy_source();
	save_src(&w);
	dst_init();
	wr_on(&dst.s, UART_SCR, 0x42);
	dst_snapshot(&before);
	for (size_t len = 0; len < w.len; len++) {
		cr_assert_eq(load_dst(w.data, len), -EBADMSG, "%zu of %zu bytes", len, w.len);
		expect_dst_unchanged(&before);
	}
	cr_assert_eq(dst.nirq, 0);
	sbuf_free(&w);
	sbuf_free(&before);
	serial_destroy(&dst.s);
}

Test(serial, load_refuses_corrupted_state)
{
	/* Offsets in the saved state: u32 version, then IER LCR MCR LSR MSR SCR FCR DLL DLM. */
	enum { V = 0, IER = 4, MCR = 6, LSR = 7, FCR = 10, THRE = 13, COUNT = 14 };
	static const struct {
		size_t off;
		uint8_t val;
		int err;
	} bad[] = {
		{ V, 2, -EPROTONOSUPPORT },
		{ IER, 0x10, -EINVAL },
		{ MCR, 0x20, -EINVAL },
		{ LSR, UART_LSR_TEMT, -EINVAL },	/* data ready clear with bytes waiting */
		{ FCR, UART_FCR_CLEAR_RCVR, -EINVAL },
		{ THRE, 2, -EBADMSG },
		{ COUNT, SERIAL_RX_BUF + 1, -EINVAL },
		{ COUNT, 0, -EBADMSG },		/* then the bytes are trailing */
	};
	struct sbuf w, before;

	cr_assert_eq(receive_str("xy"), 2);
	save_src(&w);
	cr_assert_eq(w.len, 15 + 2);
	dst_init();
	dst_snapshot(&before);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t copy[64];

		memcpy(copy, w.data, w.len);
		copy[bad[i].off] = bad[i].val;
		cr_assert_eq(load_dst(copy, w.len), bad[i].err, "case %zu", i);
		expect_dst_unchanged(&before);
	}
	/* One byte more than saved. */
	{
		uint8_t copy[64];

		memcpy(copy, w.data, w.len);
		copy[w.len] = 0;
		cr_assert_eq(load_dst(copy, w.len + 1), -EBADMSG);
		expect_dst_unchanged(&before);
	}
	cr_assert_eq(load_dst(w.data, w.len), 0, "the uncorrupted state loads");
	sbuf_free(&w);
	sbuf_free(&before);
	serial_destroy(&dst.s);
}
