/* SPDX-License-Identifier: GPL-2.0-only */
/* Small helpers shared by every folder. */
#ifndef VMM_UTIL_H
#define VMM_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define ALIGN_UP(x, a)		(((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a)	((x) & ~((__typeof__(x))(a) - 1))
#define MIN(a, b)		((a) < (b) ? (a) : (b))
#define MAX(a, b)		((a) > (b) ? (a) : (b))

#define KIB	(1ULL << 10)
#define MIB	(1ULL << 20)
#define GIB	(1ULL << 30)
#define TIB	(1ULL << 40)

/* Parses "512M", "1G", "4096" (binary suffixes K M G T, case-insensitive) into *out; 0 or -EINVAL/-ERANGE. */
int parse_size(const char *s, uint64_t *out);

/* Parses a decimal unsigned integer in [min, max] into *out; 0 or -EINVAL/-ERANGE. */
int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* Formats a byte count as "512 MiB" style into buf (always NUL-terminated); returns buf. */
const char *format_size(uint64_t bytes, char *buf, size_t len);

/*
 * Formats a byte count in the largest binary unit it reaches, with one decimal
 * unless exact ("23.5 GiB", "1 TiB", "1023 bytes"), for sizes the user did not
 * type (the host's RAM); always NUL-terminated; returns buf.
 */
const char *format_size_round(uint64_t bytes, char *buf, size_t len);

/*
 * Stack size of every thread vmm starts. Small on purpose: glibc's default of
 * 8 MiB can hold whole 2 MiB huge pages, which a host with THP "always" then
 * backs with 2 MiB of RAM per thread for a few KiB of use.
 */
#define VMM_THREAD_STACK	(1 * MIB)

/* CLOCK_MONOTONIC in nanoseconds and milliseconds (timeouts, how long a step took). */
uint64_t monotonic_ns(void);
uint64_t monotonic_ms(void);
/* ms milliseconds as a timespec (timerfd periods, deadlines). */
struct timespec timespec_from_ms(uint64_t ms);
/* CLOCK_MONOTONIC's now plus ms milliseconds (a deadline for pthread_cond_timedwait). */
struct timespec monotonic_deadline_ms(uint64_t ms);

/* pthread_create with a VMM_THREAD_STACK stack; 0 or -errno. */
int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/*
 * Fault injection for tests: with VMM_DROP_INTERRUPT=NAME:N in the environment,
 * N (counting from 1) for the device called name — whose Nth interrupt is then
 * not sent, as if lost on the way to the guest —, else 0.
 */
uint64_t drop_interrupt_for(const char *name);

#endif
