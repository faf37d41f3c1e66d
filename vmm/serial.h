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

#include "vmm/base/sbuf.h"

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

/*
 * ---- Migration ----
 * The UART's saved state (little-endian; docs/migration.md, "Device state"):
 *   u32 SERIAL_STATE_VERSION
 *   u8  IER, LCR, MCR, LSR, MSR, SCR, FCR, DLL, DLM
 *   u8  thre_pending (0/1: a transmitter-empty interrupt not yet seen by the driver)
 *   u8  rx_count (0..SERIAL_RX_BUF), then the received bytes not yet read, oldest first
 * The interrupt a guest has pending follows from these (IER, LSR, the receive
 * buffer, thre_pending), so it is not stored: serial_load() raises the line again.
 */
#define SERIAL_STATE_VERSION	1

/* Appends the UART's state to out; 0 or out's error (-ENOMEM). */
int serial_save(struct serial *s, struct sbuf *out);

/*
 * Loads serial_save()'s output into s, checking every value (register bits the
 * UART cannot hold, a receive count over SERIAL_RX_BUF, a data-ready bit that
 * disagrees with it): 0, or -EBADMSG (truncated, trailing bytes, not a bool),
 * -EPROTONOSUPPORT (another version), -EINVAL (impossible values), with s
 * unchanged. On success the line is driven to the loaded state through
 * ops->set_irq (raised if an interrupt is pending) and ops->rx_space is called
 * if the receive buffer has room, so the input source feeds it again.
 */
int serial_load(struct serial *s, struct sbuf *in);

#endif
