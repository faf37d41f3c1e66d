// SPDX-License-Identifier: GPL-2.0-only
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "vmm/base/log.h"
#include "vmm/base/util.h"

static bool verbose;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * The terminal may be in raw mode while the guest runs, so every message
 * starts at column 0 and ends with "\r\n".
 */
static __attribute__((format(printf, 2, 0))) void log_vprint(const char *level, const char *fmt,
							     va_list ap)
{
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "\r\nvmm: %s", level);
	vfprintf(stderr, fmt, ap);
	fputs("\r\n", stderr);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}

void log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint("error: ", fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint("warning: ", fmt, ap);
	va_end(ap);
}

void log_notice(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint("", fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	log_vprint("", fmt, ap);
	va_end(ap);
}

void log_set_verbose(bool on)
{
	verbose = on;
}

void log_warn_ratelimited(struct log_ratelimit *rl, const char *fmt, ...)
{
	uint64_t now = monotonic_ms();
	unsigned int suppressed = 0;
	va_list ap;

	pthread_mutex_lock(&log_lock);
	if (now - rl->window_start_ms >= rl->interval_ms) {
		suppressed = rl->suppressed;
		rl->window_start_ms = now;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	if (rl->printed >= rl->burst) {
		rl->suppressed++;
		pthread_mutex_unlock(&log_lock);
		return;
	}
	rl->printed++;
	pthread_mutex_unlock(&log_lock);

	if (suppressed)
		log_warn("%u similar warnings suppressed", suppressed);
	va_start(ap, fmt);
	log_vprint("warning: ", fmt, ap);
	va_end(ap);
}
