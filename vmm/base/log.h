/* SPDX-License-Identifier: GPL-2.0-only */
/* Messages to stderr: "vmm: error: ...", "vmm: warning: ...". Safe from any thread. */
#ifndef VMM_LOG_H
#define VMM_LOG_H

#include <stdbool.h>
#include <stdint.h>

/* Reports an error: what went wrong, then (after " — ") what to do. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports a warning. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports what the user asked for (a state dump on a signal), --verbose or not. */
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports progress when --verbose was given. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Enables log_info output. */
void log_set_verbose(bool verbose);

/* A rate limit for warnings that a guest can trigger: at most `burst` messages per `interval_ms`. */
struct log_ratelimit {
	uint64_t window_start_ms;
	unsigned int interval_ms, burst, printed, suppressed;
};
#define LOG_RATELIMIT_INIT { 0, 5000, 10, 0, 0 }

/* Reports a warning unless rl's budget is spent; says how many were suppressed. */
void log_warn_ratelimited(struct log_ratelimit *rl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
