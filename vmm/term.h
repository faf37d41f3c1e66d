/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The host terminal: raw mode while the guest owns the console, restored on
 * every exit path (normal exit, error, fatal signal).
 */
#ifndef VMM_TERM_H
#define VMM_TERM_H

#include <stdbool.h>

/* Puts stdin's terminal in raw mode if it is a terminal; returns true if it did. */
bool term_raw_enable(void);

/* Restores the saved terminal settings; async-signal-safe, idempotent. */
void term_restore(void);

#endif
