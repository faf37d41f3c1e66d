/* SPDX-License-Identifier: GPL-2.0-only */
/* What a function writes to stderr, for tests of messages a user asked for. */
#ifndef TESTS_UNIT_STDERR_CAPTURE_H
#define TESTS_UNIT_STDERR_CAPTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>

/* Runs fn(arg) with stderr going to a file; returns what it wrote (a static buffer). */
static inline const char *capture_stderr(void (*fn)(void *), void *arg)
{
	static char out[4096];
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	cr_assert(tmp && saved >= 0);
	fflush(stderr);
	cr_assert_geq(dup2(fileno(tmp), STDERR_FILENO), 0);
	fn(arg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, sizeof(out) - 1, tmp);
	out[n] = 0;
	fclose(tmp);
	return out;
}

#endif
