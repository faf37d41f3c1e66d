// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <linux/serial_reg.h>
#include <string.h>

#include "vmm/serial.h"

/* Interrupt identification values (IIR bits 3:0). */
#define IIR_FIFO_ENABLED	0xc0

static void serial_reset_locked(struct serial *s)
{
	s->ier = 0;
	s->lcr = 0;
	s->mcr = UART_MCR_OUT2;
	s->lsr = UART_LSR_TEMT | UART_LSR_THRE;
	s->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	s->scr = 0;
	s->fcr = 0;
	s->dll = 0x0c;	/* 9600 baud */
	s->dlm = 0;
	s->thre_pending = false;
	s->rx_head = 0;
	s->rx_count = 0;
}

void serial_init(struct serial *s, const struct serial_ops *ops, void *opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->ops = ops;
	s->opaque = opaque;
	serial_reset_locked(s);
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
}

/* The highest-priority pending interrupt, as the IIR reports it. */
static uint8_t serial_iir_locked(const struct serial *s)
{
	uint8_t fifo = (s->fcr & UART_FCR_ENABLE_FIFO) ? IIR_FIFO_ENABLED : 0;

	if ((s->ier & UART_IER_RLSI) && (s->lsr & UART_LSR_BRK_ERROR_BITS))
		return fifo | UART_IIR_RLSI;
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return fifo | UART_IIR_RDI;
	if ((s->ier & UART_IER_THRI) && s->thre_pending)
		return fifo | UART_IIR_THRI;
	return fifo | UART_IIR_NO_INT;
}

/* Recomputes the interrupt line and signals it when it changes. */
static void serial_update_irq_locked(struct serial *s)
{
	bool level = !(serial_iir_locked(s) & UART_IIR_NO_INT);

	/* In loopback mode the interrupt output is disconnected. */
	if (s->mcr & UART_MCR_LOOP)
		level = false;
	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (s->ops->set_irq)
		s->ops->set_irq(s->opaque, level);
}

static uint8_t serial_rx_pop_locked(struct serial *s)
{
	uint8_t b = 0;

	if (s->rx_count) {
		b = s->rx[s->rx_head];
		s->rx_head = (s->rx_head + 1) % SERIAL_RX_BUF;
		s->rx_count--;
	}
	if (!s->rx_count)
		s->lsr &= ~UART_LSR_DR;
	return b;
}

static void serial_rx_push_locked(struct serial *s, uint8_t b)
{
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_BUF] = b;
	s->rx_count++;
	s->lsr |= UART_LSR_DR;
}

static uint8_t serial_read_locked(struct serial *s, unsigned int reg, bool *tx_space)
{
	bool dlab = s->lcr & UART_LCR_DLAB;
	uint8_t v;

	switch (reg) {
	case UART_RX:
		if (dlab)
			return s->dll;
		*tx_space = s->rx_count == SERIAL_RX_BUF;
		return serial_rx_pop_locked(s);
	case UART_IER:
		return dlab ? s->dlm : s->ier;
	case UART_IIR:
		v = serial_iir_locked(s);
		/* Reading the IIR acknowledges a transmitter-empty interrupt. */
		if ((v & 0x0f) == UART_IIR_THRI)
			s->thre_pending = false;
		return v;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		v = s->lsr;
		s->lsr &= ~UART_LSR_BRK_ERROR_BITS;
		return v;
	case UART_MSR:
		if (s->mcr & UART_MCR_LOOP) {
			/* Loopback: modem outputs appear on the modem inputs. */
			v = 0;
			if (s->mcr & UART_MCR_DTR)
				v |= UART_MSR_DSR;
			if (s->mcr & UART_MCR_RTS)
				v |= UART_MSR_CTS;
			if (s->mcr & UART_MCR_OUT1)
				v |= UART_MSR_RI;
			if (s->mcr & UART_MCR_OUT2)
				v |= UART_MSR_DCD;
			return v;
		}
		return s->msr;
	default:
		return s->scr;
	}
}

/* Returns a byte to transmit in *tx (and true), if the write produced one. */
static bool serial_write_locked(struct serial *s, unsigned int reg, uint8_t v, uint8_t *tx,
				bool *rx_space)
{
	bool dlab = s->lcr & UART_LCR_DLAB;

	switch (reg) {
	case UART_TX:
		if (dlab) {
			s->dll = v;
			return false;
		}
		/* Transmission is instant: the holding register is empty again at once. */
		s->thre_pending = true;
		s->lsr |= UART_LSR_TEMT | UART_LSR_THRE;
		if (s->mcr & UART_MCR_LOOP) {
			if (s->rx_count < SERIAL_RX_BUF)
				serial_rx_push_locked(s, v);
			return false;
		}
		*tx = v;
		return true;
	case UART_IER:
		if (dlab) {
			s->dlm = v;
			return false;
		}
		/* Enabling the THR interrupt while the THR is empty raises it. */
		if (!(s->ier & UART_IER_THRI) && (v & UART_IER_THRI))
			s->thre_pending = true;
		s->ier = v & 0x0f;
		return false;
	case UART_FCR:
		s->fcr = v & (UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_MASK);
		if (v & UART_FCR_CLEAR_RCVR) {
			*rx_space = s->rx_count == SERIAL_RX_BUF;
			s->rx_count = 0;
			s->lsr &= ~UART_LSR_DR;
		}
		return false;
	case UART_LCR:
		s->lcr = v;
		return false;
	case UART_MCR:
		s->mcr = v & 0x1f;
		return false;
	case UART_LSR:
	case UART_MSR:
		return false;	/* read-only (factory test writes ignored) */
	default:
		s->scr = v;
		return false;
	}
}

void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = opaque;
	bool tx = false, space = false;
	uint8_t out = 0;

	if (offset >= SERIAL_NREGS)
		return;
	pthread_mutex_lock(&s->lock);
	if (is_write) {
		bool was_loop = s->mcr & UART_MCR_LOOP;

		tx = serial_write_locked(s, (unsigned int)offset, data[0], &out, &space);
		/* Leaving loopback reconnects the receiver to the line. */
		space = space || (was_loop && !(s->mcr & UART_MCR_LOOP));
	} else {
		data[0] = serial_read_locked(s, (unsigned int)offset, &space);
		/* Wider accesses see the register in the low byte, zeros above. */
		if (len > 1)
			memset(data + 1, 0, len - 1);
	}
	/* Callbacks run under the lock so output order and line levels never reorder. */
	if (tx && s->ops->tx)
		s->ops->tx(s->opaque, out);
	if (space && s->ops->rx_space)
		s->ops->rx_space(s->opaque);
	serial_update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	/* In loopback mode the receiver is disconnected from the line: nothing is taken. */
	if (!(s->mcr & UART_MCR_LOOP))
		for (; n < len && s->rx_count < SERIAL_RX_BUF; n++)
			serial_rx_push_locked(s, buf[n]);
	serial_update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_rx_room(struct serial *s)
{
	size_t room;

	pthread_mutex_lock(&s->lock);
	room = (s->mcr & UART_MCR_LOOP) ? 0 : SERIAL_RX_BUF - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return room;
}

int serial_save(struct serial *s, struct sbuf *out)
{
	pthread_mutex_lock(&s->lock);
	sbuf_put_u32(out, SERIAL_STATE_VERSION);
	sbuf_put_u8(out, s->ier);
	sbuf_put_u8(out, s->lcr);
	sbuf_put_u8(out, s->mcr);
	sbuf_put_u8(out, s->lsr);
	sbuf_put_u8(out, s->msr);
	sbuf_put_u8(out, s->scr);
	sbuf_put_u8(out, s->fcr);
	sbuf_put_u8(out, s->dll);
	sbuf_put_u8(out, s->dlm);
	sbuf_put_u8(out, s->thre_pending);
	sbuf_put_u8(out, (uint8_t)s->rx_count);
	for (unsigned int i = 0; i < s->rx_count; i++)
		sbuf_put_u8(out, s->rx[(s->rx_head + i) % SERIAL_RX_BUF]);
	pthread_mutex_unlock(&s->lock);
	return sbuf_error(out);
}

int serial_load(struct serial *s, struct sbuf *in)
{
	uint8_t ier, lcr, mcr, lsr, msr, scr, fcr, dll, dlm, count;
	uint8_t rx[SERIAL_RX_BUF];
	const uint8_t *bytes;
	uint32_t version;
	bool thre;
	int ret;

	version = sbuf_get_u32(in);
	if (!sbuf_error(in) && version != SERIAL_STATE_VERSION)
		return -EPROTONOSUPPORT;
	ier = sbuf_get_u8(in);
	lcr = sbuf_get_u8(in);
	mcr = sbuf_get_u8(in);
	lsr = sbuf_get_u8(in);
	msr = sbuf_get_u8(in);
	scr = sbuf_get_u8(in);
	fcr = sbuf_get_u8(in);
	dll = sbuf_get_u8(in);
	dlm = sbuf_get_u8(in);
	thre = sbuf_get_bool(in);
	count = sbuf_get_u8(in);
	if (count > SERIAL_RX_BUF)
		return sbuf_error(in) ? sbuf_error(in) : -EINVAL;
	bytes = sbuf_get_ptr(in, count);
	ret = sbuf_finish(in);
	if (ret)
		return ret;
	/* Only what the register writes can leave there (serial_write_locked). */
	if ((ier & ~0x0f) || (mcr & ~0x1f) ||
	    (fcr & ~(UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_MASK)) ||
	    !(lsr & UART_LSR_DR) != !count)
		return -EINVAL;
	memcpy(rx, bytes, count);

	pthread_mutex_lock(&s->lock);
	s->ier = ier;
	s->lcr = lcr;
	s->mcr = mcr;
	s->lsr = lsr;
	s->msr = msr;
	s->scr = scr;
	s->fcr = fcr;
	s->dll = dll;
	s->dlm = dlm;
	s->thre_pending = thre;
	memcpy(s->rx, rx, count);
	s->rx_head = 0;
	s->rx_count = count;
	/* The line follows the loaded state: a pending interrupt is raised on this host's line. */
	serial_update_irq_locked(s);
	if (s->rx_count < SERIAL_RX_BUF && !(s->mcr & UART_MCR_LOOP) && s->ops->rx_space)
		s->ops->rx_space(s->opaque);
	pthread_mutex_unlock(&s->lock);
	return 0;
}
