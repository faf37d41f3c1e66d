/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The serial console: host stdin feeds the UART's receiver (with flow
 * control, so no typed or piped byte is lost), the UART's transmitter writes
 * to host stdout. On a terminal, Ctrl-A x asks the VMM to quit and Ctrl-A
 * Ctrl-A sends a literal Ctrl-A.
 */
#ifndef VMM_SERIAL_CONSOLE_H
#define VMM_SERIAL_CONSOLE_H

#include <stdbool.h>

#include "vmm/base/event_loop.h"
#include "vmm/serial.h"

#define SERIAL_CONSOLE_ESCAPE 0x01	/* Ctrl-A */

struct serial_console {
	struct serial serial;
	struct event_loop *loop;
	struct event_source in_src;	/* stdin */
	struct event_source space_src;	/* eventfd: the UART has room again */
	int out_fd;
	bool in_paused, in_closed, escapes, escape_seen;
	void (*quit)(void *opaque);	/* Ctrl-A x */
	void (*set_irq)(void *opaque, bool level);
	void *opaque;
};

/*
 * Sets up the UART and connects it to in_fd/out_fd through loop. escapes
 * enables Ctrl-A handling. 0 or -errno.
 */
int serial_console_init(struct serial_console *c, struct event_loop *loop, int in_fd, int out_fd, bool escapes,
		 void (*set_irq)(void *opaque, bool level), void (*quit)(void *opaque), void *opaque);

/* Disconnects from the event loop and frees resources. */
void serial_console_destroy(struct serial_console *c);

#endif
