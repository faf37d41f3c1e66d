// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for saved-state buffers (vmm/base/sbuf.c): the writer's encoding and
 * growth, the reader's bounds (an underrun is a sticky -EBADMSG with zeros), bools,
 * strings, and sbuf_finish's check for trailing bytes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "vmm/base/sbuf.h"

TestSuite(sbuf);

Test(sbuf, writes_little_endian)
{
	static const uint8_t want[] = {
		0xab,
		0x34, 0x12,
		0x78, 0x56, 0x34, 0x12,
		0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01,
		'x', 'y',
		3, 0, 0, 0, 'a', 'b', 'c',
		0, 0, 0, 0,
	};
	struct sbuf b;

	sbuf_init_writer(&b);
	cr_assert_null(b.data, "no allocation before the first put");
	sbuf_put_u8(&b, 0xab);
	sbuf_put_u16(&b, 0x1234);
	sbuf_put_u32(&b, 0x12345678);
	sbuf_put_u64(&b, 0x0123456789abcdefULL);
	sbuf_put_bytes(&b, "xy", 2);
	sbuf_put_str(&b, "abc");
	sbuf_put_str(&b, NULL);
	sbuf_put_bytes(&b, NULL, 0);
	cr_assert_eq(sbuf_error(&b), 0);
	cr_assert_eq(b.len, sizeof(want));
	cr_assert_arr_eq(b.data, want, sizeof(want));
	sbuf_free(&b);
	cr_assert_null(b.data);
	sbuf_free(&b);
}

Test(sbuf, round_trip)
{
	struct sbuf w, r;
	char s[16];
	uint8_t raw[3];
	const uint8_t *p;

	sbuf_init_writer(&w);
	sbuf_put_u8(&w, 1);
	sbuf_put_u8(&w, 0);
	sbuf_put_u16(&w, 0xbeef);
	sbuf_put_u32(&w, 0xdeadbeef);
	sbuf_put_u64(&w, UINT64_MAX - 1);
	sbuf_put_str(&w, "hello");
	sbuf_put_bytes(&w, "\x01\x02\x03", 3);
	sbuf_put_bytes(&w, "zz", 2);
	cr_assert_eq(sbuf_error(&w), 0);

	sbuf_init_reader(&r, w.data, w.len);
	cr_assert_eq(sbuf_remaining(&r), w.len);
	cr_assert_eq(sbuf_get_bool(&r), true);
	cr_assert_eq(sbuf_get_bool(&r), false);
	cr_assert_eq(sbuf_get_u16(&r), 0xbeef);
	cr_assert_eq(sbuf_get_u32(&r), 0xdeadbeef);
	cr_assert_eq(sbuf_get_u64(&r), UINT64_MAX - 1);
	cr_assert_eq(sbuf_get_str(&r, s, sizeof(s)), s);
	cr_assert_str_eq(s, "hello");
	sbuf_get_bytes(&r, raw, 3);
	cr_assert_arr_eq(raw, "\x01\x02\x03", 3);
	cr_assert_eq(sbuf_finish(&r), -EBADMSG, "two bytes are left");
	p = sbuf_get_ptr(&r, 2);
	cr_assert_not_null(p);
	cr_assert_arr_eq(p, "zz", 2);
	cr_assert_eq(sbuf_remaining(&r), 0);
	cr_assert_eq(sbuf_finish(&r), 0);
	sbuf_free(&r);
	cr_assert_eq(r.data, NULL);
	sbuf_free(&w);
}

/* Many small puts: the buffer grows and keeps every byte. */
Test(sbuf, grows)
{
	struct sbuf w, r;

	sbuf_init_writer(&w);
	for (uint32_t i = 0; i < 100000; i++)
		sbuf_put_u32(&w, i * 2654435761u);
	cr_assert_eq(sbuf_error(&w), 0);
	cr_assert_eq(w.len, 400000);
	cr_assert_geq(w.cap, w.len);
	sbuf_init_reader(&r, w.data, w.len);
	for (uint32_t i = 0; i < 100000; i++)
		cr_assert_eq(sbuf_get_u32(&r), i * 2654435761u, "word %u", i);
	cr_assert_eq(sbuf_finish(&r), 0);
	sbuf_free(&w);
}

/* An underrun returns zeros, sets -EBADMSG, and every later get fails too. */
Test(sbuf, underrun_is_sticky)
{
	static const uint8_t data[] = { 1, 2, 3, 4, 5, 6 };
	uint8_t out[4] = { 9, 9, 9, 9 };
	struct sbuf r;

	sbuf_init_reader(&r, data, sizeof(data));
	cr_assert_eq(sbuf_get_u32(&r), 0x04030201);
	cr_assert_eq(sbuf_get_u32(&r), 0, "only two bytes are left");
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
	cr_assert_eq(sbuf_get_u8(&r), 0, "sticky: not the byte that is left");
	cr_assert_eq(sbuf_get_u16(&r), 0);
	cr_assert_eq(sbuf_get_u64(&r), 0);
	sbuf_get_bytes(&r, out, sizeof(out));
	cr_assert_arr_eq(out, "\0\0\0\0", 4, "zeroed on underrun");
	cr_assert_null(sbuf_get_ptr(&r, 0));
	cr_assert_eq(sbuf_finish(&r), -EBADMSG);
}

Test(sbuf, every_type_underruns)
{
	static const uint8_t seven[7];
	struct sbuf r;

	sbuf_init_reader(&r, seven, 0);
	cr_assert_eq(sbuf_get_u8(&r), 0);
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
	sbuf_init_reader(&r, seven, 1);
	cr_assert_eq(sbuf_get_u16(&r), 0);
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
	sbuf_init_reader(&r, seven, 3);
	cr_assert_eq(sbuf_get_u32(&r), 0);
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
	sbuf_init_reader(&r, seven, 7);
	cr_assert_eq(sbuf_get_u64(&r), 0);
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
	sbuf_init_reader(&r, seven, 7);
	cr_assert_null(sbuf_get_ptr(&r, 8));
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
	sbuf_init_reader(&r, seven, 7);
	cr_assert_null(sbuf_get_ptr(&r, SIZE_MAX), "no overflow in the bounds check");
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
	sbuf_init_reader(&r, NULL, 5);
	cr_assert_eq(sbuf_remaining(&r), 0, "NULL data is empty");
	cr_assert_eq(sbuf_finish(&r), 0);
}

Test(sbuf, bool_must_be_0_or_1)
{
	static const uint8_t data[] = { 2 };
	struct sbuf r;

	sbuf_init_reader(&r, data, 1);
	cr_assert_eq(sbuf_get_bool(&r), false);
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
}

Test(sbuf, strings)
{
	static const uint8_t fits[] = { 3, 0, 0, 0, 'a', 'b', 'c' };
	static const uint8_t nul[] = { 3, 0, 0, 0, 'a', 0, 'c' };
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 'a' };
	static const uint8_t empty[] = { 0, 0, 0, 0 };
	char buf[8];
	struct sbuf r;

	sbuf_init_reader(&r, fits, sizeof(fits));
	cr_assert_null(sbuf_get_str(&r, buf, 3), "\"abc\" and its NUL need 4 bytes");
	cr_assert_eq(sbuf_error(&r), -EBADMSG);
	cr_assert_str_empty(buf);

	sbuf_init_reader(&r, fits, sizeof(fits));
	cr_assert_str_eq(sbuf_get_str(&r, buf, 4), "abc");
	cr_assert_eq(sbuf_finish(&r), 0);

	sbuf_init_reader(&r, nul, sizeof(nul));
	cr_assert_null(sbuf_get_str(&r, buf, sizeof(buf)), "a NUL inside the string");
	cr_assert_eq(sbuf_error(&r), -EBADMSG);

	sbuf_init_reader(&r, huge, sizeof(huge));
	cr_assert_null(sbuf_get_str(&r, buf, sizeof(buf)));
	cr_assert_eq(sbuf_error(&r), -EBADMSG);

	sbuf_init_reader(&r, fits, 5);
	cr_assert_null(sbuf_get_str(&r, buf, sizeof(buf)), "truncated string");
	cr_assert_eq(sbuf_error(&r), -EBADMSG);

	sbuf_init_reader(&r, empty, sizeof(empty));
	cr_assert_str_empty(sbuf_get_str(&r, buf, 1));
	cr_assert_eq(sbuf_finish(&r), 0);
}

/* Mixing up a reader and a writer is -EINVAL, never a write into the reader's data. */
Test(sbuf, misuse)
{
	static const uint8_t data[4] = { 1, 2, 3, 4 };
	struct sbuf r, w;

	sbuf_init_reader(&r, data, sizeof(data));
	sbuf_put_u32(&r, 0);
	cr_assert_eq(sbuf_error(&r), -EINVAL);
	cr_assert_arr_eq(data, "\x01\x02\x03\x04", 4);

	sbuf_init_writer(&w);
	sbuf_put_u8(&w, 7);
	cr_assert_eq(sbuf_get_u8(&w), 0);
	cr_assert_eq(sbuf_error(&w), -EINVAL);
	sbuf_put_u8(&w, 8);
	cr_assert_eq(w.len, 1, "sticky: nothing appended after the error");
	sbuf_free(&w);
	cr_assert_eq(sbuf_error(&w), 0, "sbuf_free clears the error");
}
