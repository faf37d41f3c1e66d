/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A 16550A UART (8 registers, 16-byte FIFOs reported, 64-byte receive buffer).
 * Transmitted bytes go to an output callback; received bytes come from
 * serial_receive(). The interrupt line follows the UART's interrupt state:
 * raised while an enabled condition is pending, lowered when it clears.
 * Thread-safe: the vCPU threads and the event loop may call in concurrently.
 */
#ifndef VMM_SERIAL_H
#define VMM_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL_RX_BUF 64
#define SERIAL_NREGS 8

/* Callbacks run with the UART's lock held: they must not call back into the UART. */
struct serial_ops {
	void (*set_irq)(void *opaque, bool level);	/* interrupt line level changed */
	void (*tx)(void *opaque, uint8_t byte);		/* the guest transmitted a byte */
	void (*rx_space)(void *opaque);			/* room in the receive buffer again */
};

struct serial {
	pthread_mutex_t lock;
	const struct serial_ops *ops;
	void *opaque;
	uint8_t ier, lcr, mcr, lsr, msr, scr, fcr, dll, dlm;
	bool thre_pending;	/* transmitter-empty interrupt waiting to be seen */
	bool irq_level;
	bool rx_was_full;
	uint8_t rx[SERIAL_RX_BUF];
	unsigned int rx_head, rx_count;
};

/* Initialises the UART in its reset state. */
void serial_init(struct serial *s, const struct serial_ops *ops, void *opaque);

/* Releases the UART's resources. */
void serial_destroy(struct serial *s);

/* I/O handler for the 8 registers (an io_handler_fn; opaque is the struct serial). */
void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* Queues up to len received bytes; returns how many fit (the rest must be offered again). */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

/* Bytes the receive buffer can take now. */
size_t serial_rx_room(struct serial *s);

#endif
