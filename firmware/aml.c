// SPDX-License-Identifier: GPL-2.0-only
/*
 * AML byte-code writer: names, integers, strings, PkgLength-framed objects
 * and the few resource descriptors the DSDT needs. Encodings follow the
 * ACPI 6.x specification, sections 6.4 (resources) and 20 (AML grammar).
 */
#include <errno.h>
#include <string.h>

#include "firmware/aml.h"

#define AML_NULL_NAME		0x00
#define AML_SEG_LEN		4
#define AML_INT_MAX_LEN		9	/* QWordPrefix + 8 bytes */
#define AML_PKG_MAX_LEN		4

void aml_init(struct aml *a, void *buf, size_t size)
{
	a->buf = buf;
	a->size = buf ? size : 0;
	a->len = 0;
	a->err = 0;
}

int aml_error(const struct aml *a)
{
	return a->err;
}

size_t aml_len(const struct aml *a)
{
	return a->len;
}

static void aml_fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->err || !n)
		return;
	if (n > a->size - a->len) {
		aml_fail(a, -ENOSPC);
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

/* Inserts p[0..n) at offset at, moving the bytes behind it up by n. */
static void aml_insert(struct aml *a, size_t at, const uint8_t *p, size_t n)
{
	if (a->err)
		return;
	if (at > a->len) {
		aml_fail(a, -EINVAL);
		return;
	}
	if (n > a->size - a->len) {
		aml_fail(a, -ENOSPC);
		return;
	}
	memmove(a->buf + at + n, a->buf + at, a->len - at);
	memcpy(a->buf + at, p, n);
	a->len += n;
}

/*
 * Encodes the PkgLength of an object whose remaining body (after the
 * PkgLength) is body bytes. The encoded value counts its own bytes too.
 * Returns the number of bytes used (1-4), or 0 if body is too long.
 */
static size_t aml_pkg_length(uint8_t out[AML_PKG_MAX_LEN], size_t body)
{
	size_t n, i, total;

	if (body <= 0x3f - 1) {
		out[0] = body + 1;
		return 1;
	}
	for (n = 2; n <= AML_PKG_MAX_LEN; n++) {
		/* 4 bits in the lead byte, 8 in each following byte */
		size_t limit = ((size_t)1 << (4 + 8 * (n - 1))) - 1;

		total = body + n;
		if (total > limit)
			continue;
		out[0] = ((n - 1) << 6) | (total & 0xf);
		for (i = 1; i < n; i++)
			out[i] = total >> (4 + 8 * (i - 1));
		return n;
	}
	return 0;
}

/* Encodes v as the shortest integer object; returns its size. */
static size_t aml_encode_int(uint8_t out[AML_INT_MAX_LEN], uint64_t v)
{
	if (v == 0) {
		out[0] = AML_ZERO_OP;
		return 1;
	}
	if (v == 1) {
		out[0] = AML_ONE_OP;
		return 1;
	}
	if (v <= UINT8_MAX) {
		out[0] = AML_BYTE_PREFIX;
		out[1] = v;
		return 2;
	}
	if (v <= UINT16_MAX) {
		out[0] = AML_WORD_PREFIX;
		aml_le16(out + 1, v);
		return 3;
	}
	if (v <= UINT32_MAX) {
		out[0] = AML_DWORD_PREFIX;
		aml_le32(out + 1, v);
		return 5;
	}
	out[0] = AML_QWORD_PREFIX;
	aml_le64(out + 1, v);
	return 9;
}

void aml_integer(struct aml *a, uint64_t v)
{
	uint8_t enc[AML_INT_MAX_LEN];

	aml_bytes(a, enc, aml_encode_int(enc, v));
}

static bool aml_seg_char(char c, bool lead)
{
	return c == '_' || (c >= 'A' && c <= 'Z') ||
	       (!lead && c >= '0' && c <= '9');
}

/* Returns the length (1-4) of the NameSeg at p, ended by '.' or NUL; 0 if invalid. */
static size_t aml_seg_len(const char *p)
{
	size_t n = 0;

	while (p[n] && p[n] != '.') {
		if (n == AML_SEG_LEN || !aml_seg_char(p[n], n == 0))
			return 0;
		n++;
	}
	return n;
}

void aml_name_string(struct aml *a, const char *path)
{
	const char *p, *s;
	size_t nseg = 0, n, i;

	if (!path) {
		aml_fail(a, -EINVAL);
		return;
	}
	p = path;
	if (*p == '\\') {
		aml_byte(a, AML_ROOT_CHAR);
		p++;
	} else {
		for (; *p == '^'; p++)
			aml_byte(a, AML_PARENT_CHAR);
	}
	if (*p == '\0') {
		aml_byte(a, AML_NULL_NAME);
		return;
	}

	for (s = p;; s++) {
		n = aml_seg_len(s);
		if (!n || nseg == UINT8_MAX) {
			aml_fail(a, -EINVAL);
			return;
		}
		nseg++;
		s += n;
		if (*s == '\0')
			break;
	}

	if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, nseg);
	}
	for (s = p; nseg; nseg--, s += n + 1) {
		uint8_t seg[AML_SEG_LEN];

		n = aml_seg_len(s);
		for (i = 0; i < AML_SEG_LEN; i++)
			seg[i] = i < n ? s[i] : '_';
		aml_bytes(a, seg, sizeof(seg));
	}
}

void aml_string(struct aml *a, const char *s)
{
	size_t i;

	if (!s) {
		aml_fail(a, -EINVAL);
		return;
	}
	for (i = 0; s[i]; i++) {
		if ((unsigned char)s[i] > 0x7f) {
			aml_fail(a, -EINVAL);
			return;
		}
	}
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, i + 1);
}

static int aml_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * The compressed EISA id is four bytes in this order: three letters of
 * five bits each (A = 1) in a big-endian 16-bit word, then four hex digits
 * as two bytes; the AML integer is those bytes read little-endian.
 */
void aml_eisaid(struct aml *a, const char *id)
{
	uint8_t enc[5];
	uint16_t vendor = 0;
	int i, d;

	if (!id || strlen(id) != 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	for (i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			aml_fail(a, -EINVAL);
			return;
		}
		vendor = (vendor << 5) | (id[i] - 'A' + 1);
	}
	enc[0] = AML_DWORD_PREFIX;
	enc[1] = vendor >> 8;
	enc[2] = vendor;
	enc[3] = 0;
	enc[4] = 0;
	for (i = 0; i < 4; i++) {
		d = aml_hex_digit(id[3 + i]);
		if (d < 0) {
			aml_fail(a, -EINVAL);
			return;
		}
		enc[3 + i / 2] |= d << (i % 2 ? 0 : 4);
	}
	aml_bytes(a, enc, sizeof(enc));
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_name_string(a, path);
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
	size_t mark;

	aml_byte(a, AML_SCOPE_OP);
	mark = a->len;
	aml_name_string(a, path);
	return mark;
}

size_t aml_device_begin(struct aml *a, const char *path)
{
	size_t mark;

	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	mark = a->len;
	aml_name_string(a, path);
	return mark;
}

size_t aml_package_begin(struct aml *a, uint8_t nelems)
{
	size_t mark;

	aml_byte(a, AML_PACKAGE_OP);
	mark = a->len;
	aml_byte(a, nelems);
	return mark;
}

void aml_end(struct aml *a, size_t mark)
{
	uint8_t pkg[AML_PKG_MAX_LEN];
	size_t n;

	if (a->err)
		return;
	if (mark > a->len) {
		aml_fail(a, -EINVAL);
		return;
	}
	n = aml_pkg_length(pkg, a->len - mark);
	if (!n) {
		aml_fail(a, -ENOSPC);
		return;
	}
	aml_insert(a, mark, pkg, n);
}

size_t aml_buffer_begin(struct aml *a)
{
	aml_byte(a, AML_BUFFER_OP);
	return a->len;
}

void aml_buffer_end(struct aml *a, size_t mark)
{
	uint8_t hdr[AML_PKG_MAX_LEN + AML_INT_MAX_LEN];
	uint8_t size_enc[AML_INT_MAX_LEN];
	size_t nsize, npkg;

	if (a->err)
		return;
	if (mark > a->len) {
		aml_fail(a, -EINVAL);
		return;
	}
	nsize = aml_encode_int(size_enc, a->len - mark);
	npkg = aml_pkg_length(hdr, nsize + a->len - mark);
	if (!npkg) {
		aml_fail(a, -ENOSPC);
		return;
	}
	memcpy(hdr + npkg, size_enc, nsize);
	aml_insert(a, mark, hdr, npkg + nsize);
}

size_t aml_restemplate_begin(struct aml *a)
{
	return aml_buffer_begin(a);
}

void aml_restemplate_end(struct aml *a, size_t mark)
{
	uint8_t sum = AML_RES_END_TAG;
	size_t i;

	if (a->err)
		return;
	if (mark > a->len) {
		aml_fail(a, -EINVAL);
		return;
	}
	for (i = mark; i < a->len; i++)
		sum += a->buf[i];
	aml_byte(a, AML_RES_END_TAG);
	aml_byte(a, -sum);
	aml_buffer_end(a, mark);
}

void aml_res_io(struct aml *a, bool decode16, uint16_t min, uint16_t max,
		uint8_t align, uint8_t len)
{
	uint8_t d[8] = { AML_RES_IO, decode16 ? 1 : 0 };

	aml_le16(d + 2, min);
	aml_le16(d + 4, max);
	d[6] = align;
	d[7] = len;
	aml_bytes(a, d, sizeof(d));
}

void aml_res_irq_noflags(struct aml *a, unsigned int irq)
{
	uint8_t d[3] = { AML_RES_IRQ_NOFLAGS };

	if (irq > 15) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_le16(d + 1, 1u << irq);
	aml_bytes(a, d, sizeof(d));
}

void aml_res_mem32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t size)
{
	uint8_t d[12] = { AML_RES_MEM32_FIXED };

	aml_le16(d + 1, sizeof(d) - 3);
	d[3] = writable ? 1 : 0;
	aml_le32(d + 4, base);
	aml_le32(d + 8, size);
	aml_bytes(a, d, sizeof(d));
}

void aml_res_ext_irq(struct aml *a, uint8_t flags, uint32_t gsi)
{
	uint8_t d[9] = { AML_RES_EXT_IRQ };
	const uint8_t known = AML_IRQ_CONSUMER | AML_IRQ_EDGE |
			      AML_IRQ_ACTIVE_LOW | AML_IRQ_SHARED;

	if (flags & ~known) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_le16(d + 1, sizeof(d) - 3);
	d[3] = flags;
	d[4] = 1;		/* interrupt table length */
	aml_le32(d + 5, gsi);
	aml_bytes(a, d, sizeof(d));
}
