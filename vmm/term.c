// SPDX-License-Identifier: GPL-2.0-only
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/term.h"

static struct termios saved;
static volatile sig_atomic_t saved_valid;

void term_restore(void)
{
	if (saved_valid) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		saved_valid = 0;
	}
}

/* Fatal signals: restore the terminal, then die the way the signal says. */
static void term_fatal_signal(int sig)
{
	term_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

bool term_raw_enable(void)
{
	static const int fatal[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	struct termios raw;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved) < 0)
		return false;
	raw = saved;
	/* The guest gets every key, Ctrl-C included; Ctrl-A x leaves (see console.c). */
	cfmakeraw(&raw);
	saved_valid = 1;
	atexit(term_restore);
	for (unsigned int i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = term_fatal_signal;
		sa.sa_flags = SA_RESETHAND;
		sigaction(fatal[i], &sa, NULL);
	}
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0) {
		saved_valid = 0;
		return false;
	}
	return true;
}
