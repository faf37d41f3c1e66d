// SPDX-License-Identifier: GPL-2.0-only
/* Saved-state buffers (sbuf.h): a growable little-endian writer and a bounds-checked reader. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/base/sbuf.h"

void sbuf_init_writer(struct sbuf *b)
{
	*b = (struct sbuf){ .writer = true };
}

void sbuf_init_reader(struct sbuf *b, const void *data, size_t len)
{
	*b = (struct sbuf){ .data = (uint8_t *)data, .len = data ? len : 0 };
}

void sbuf_free(struct sbuf *b)
{
	if (b->writer)
		free(b->data);
	b->data = NULL;
	b->len = b->cap = b->pos = 0;
	b->err = 0;
}

/* Room for n more bytes in a writer: a pointer to them, or NULL (err set). */
static uint8_t *sbuf_reserve(struct sbuf *b, size_t n)
{
	size_t need, cap;
	uint8_t *p;

	if (b->err || !b->writer) {
		if (!b->err)
			b->err = -EINVAL;
		return NULL;
	}
	if (__builtin_add_overflow(b->len, n, &need)) {
		b->err = -ENOMEM;
		return NULL;
	}
	if (need > b->cap) {
		cap = b->cap ? b->cap : 64;
		while (cap < need) {
			if (__builtin_mul_overflow(cap, 2, &cap)) {
				cap = need;
				break;
			}
		}
		p = realloc(b->data, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->data = p;
		b->cap = cap;
	}
	p = b->data + b->len;
	b->len = need;
	return p;
}

void sbuf_put_bytes(struct sbuf *b, const void *p, size_t n)
{
	uint8_t *d;

	if (!n)
		return;
	d = sbuf_reserve(b, n);
	if (d)
		memcpy(d, p, n);
}

void sbuf_put_u8(struct sbuf *b, uint8_t v)
{
	sbuf_put_bytes(b, &v, 1);
}

void sbuf_put_u16(struct sbuf *b, uint16_t v)
{
	uint16_t le = htole16(v);

	sbuf_put_bytes(b, &le, sizeof(le));
}

void sbuf_put_u32(struct sbuf *b, uint32_t v)
{
	uint32_t le = htole32(v);

	sbuf_put_bytes(b, &le, sizeof(le));
}

void sbuf_put_u64(struct sbuf *b, uint64_t v)
{
	uint64_t le = htole64(v);

	sbuf_put_bytes(b, &le, sizeof(le));
}

void sbuf_put_str(struct sbuf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n > UINT32_MAX) {
		if (!b->err)
			b->err = -ENOMEM;
		return;
	}
	sbuf_put_u32(b, (uint32_t)n);
	sbuf_put_bytes(b, s, n);
}

const void *sbuf_get_ptr(struct sbuf *b, size_t n)
{
	const void *p;

	if (b->err)
		return NULL;
	if (b->writer) {
		b->err = -EINVAL;
		return NULL;
	}
	if (n > b->len - b->pos) {
		b->err = -EBADMSG;
		b->pos = b->len;
		return NULL;
	}
	p = b->data + b->pos;
	b->pos += n;
	return p;
}

void sbuf_get_bytes(struct sbuf *b, void *p, size_t n)
{
	const void *s = sbuf_get_ptr(b, n);

	if (!n)
		return;
	if (s)
		memcpy(p, s, n);
	else
		memset(p, 0, n);
}

uint8_t sbuf_get_u8(struct sbuf *b)
{
	uint8_t v;

	sbuf_get_bytes(b, &v, sizeof(v));
	return v;
}

uint16_t sbuf_get_u16(struct sbuf *b)
{
	uint16_t v;

	sbuf_get_bytes(b, &v, sizeof(v));
	return le16toh(v);
}

uint32_t sbuf_get_u32(struct sbuf *b)
{
	uint32_t v;

	sbuf_get_bytes(b, &v, sizeof(v));
	return le32toh(v);
}

uint64_t sbuf_get_u64(struct sbuf *b)
{
	uint64_t v;

	sbuf_get_bytes(b, &v, sizeof(v));
	return le64toh(v);
}

bool sbuf_get_bool(struct sbuf *b)
{
	uint8_t v = sbuf_get_u8(b);

	if (v > 1) {
		if (!b->err)
			b->err = -EBADMSG;
		return false;
	}
	return v;
}

char *sbuf_get_str(struct sbuf *b, char *buf, size_t cap)
{
	uint32_t n = sbuf_get_u32(b);
	const char *s;

	if (cap)
		buf[0] = '\0';
	if (b->err)
		return NULL;
	if (n >= cap) {
		b->err = -EBADMSG;
		return NULL;
	}
	s = sbuf_get_ptr(b, n);
	if (!s)
		return NULL;
	if (memchr(s, '\0', n)) {
		b->err = -EBADMSG;
		return NULL;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

size_t sbuf_remaining(const struct sbuf *b)
{
	return b->writer ? 0 : b->len - b->pos;
}

int sbuf_error(const struct sbuf *b)
{
	return b->err;
}

int sbuf_finish(const struct sbuf *b)
{
	if (b->err)
		return b->err;
	return b->pos == b->len ? 0 : -EBADMSG;
}
