// SPDX-License-Identifier: GPL-2.0-only
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/base/util.h"

int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	default:
		return -EINVAL;
	}
	/* Accept an optional "iB" or "B" after the suffix: 512MiB, 1GB. */
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long v;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

const char *format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB" };
	unsigned int u = 0;

	while (u + 1 < ARRAY_SIZE(units) && bytes >= 1024 && bytes % 1024 == 0) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, len, "%llu %s", (unsigned long long)bytes, units[u]);
	return buf;
}

const char *format_size_round(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB" };
	unsigned int u = 0, tenths;
	uint64_t unit = 1, whole;

	while (u + 1 < ARRAY_SIZE(units) && bytes >= unit * 1024) {
		unit *= 1024;
		u++;
	}
	whole = bytes / unit;
	/* bytes % unit < 2^40, so the product cannot overflow. */
	tenths = (unsigned int)(((bytes % unit) * 10 + unit / 2) / unit);
	if (tenths == 10) {
		whole++;
		tenths = 0;
	}
	if (bytes % unit == 0)
		snprintf(buf, len, "%llu %s", (unsigned long long)whole, units[u]);
	else
		snprintf(buf, len, "%llu.%u %s", (unsigned long long)whole, tenths, units[u]);
	return buf;
}

int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int ret = pthread_attr_init(&attr);

	if (ret)
		return -ret;
	ret = pthread_attr_setstacksize(&attr, VMM_THREAD_STACK);
	if (!ret)
		ret = pthread_create(thread, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -ret;
}

uint64_t monotonic_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000 + (uint64_t)t.tv_nsec;
}

uint64_t monotonic_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

struct timespec timespec_from_ms(uint64_t ms)
{
	return (struct timespec){ .tv_sec = (time_t)(ms / 1000),
				  .tv_nsec = (long)(ms % 1000) * 1000000L };
}

struct timespec monotonic_deadline_ms(uint64_t ms)
{
	struct timespec t, add = timespec_from_ms(ms);

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += add.tv_sec;
	t.tv_nsec += add.tv_nsec;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

uint64_t drop_interrupt_for(const char *name)
{
	const char *env = getenv("VMM_DROP_INTERRUPT");
	size_t len = strlen(name);

	if (!env || strncmp(env, name, len) || env[len] != ':')
		return 0;
	return strtoull(env + len + 1, NULL, 10);
}
