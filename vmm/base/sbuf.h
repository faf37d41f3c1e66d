/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A byte buffer for saved state: a growable writer and a bounds-checked reader
 * of little-endian integers and byte strings. Device models, the transport and
 * the serial console save into one and load from one; the migration stream
 * (mig_stream.h) carries it as one section. A reader never reads past its end:
 * an underrun sets a sticky error and returns zeros, so a load function reads
 * everything it expects and checks sbuf_error() once at the end (and rejects
 * values it cannot take, e.g. a queue size that is not a power of two).
 */
#ifndef VMM_BASE_SBUF_H
#define VMM_BASE_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sbuf {
	uint8_t *data;
	size_t len;		/* writer: bytes written; reader: bytes available */
	size_t cap;		/* writer: allocated */
	size_t pos;		/* reader: next byte */
	int err;		/* sticky: 0, -ENOMEM (writer), -EBADMSG (reader underrun),
				 * -EINVAL (a put on a reader or a get on a writer) */
	bool writer;
};

/* An empty growable writer (no allocation until the first put). */
void sbuf_init_writer(struct sbuf *b);

/* A reader over data[0, len) (not copied, not owned). */
void sbuf_init_reader(struct sbuf *b, const void *data, size_t len);

/* Frees a writer's buffer (a reader's data is left alone) and clears the error. Safe twice. */
void sbuf_free(struct sbuf *b);

/* Writer: appends little-endian values or raw bytes; on allocation failure err = -ENOMEM. */
void sbuf_put_u8(struct sbuf *b, uint8_t v);
void sbuf_put_u16(struct sbuf *b, uint16_t v);
void sbuf_put_u32(struct sbuf *b, uint32_t v);
void sbuf_put_u64(struct sbuf *b, uint64_t v);
void sbuf_put_bytes(struct sbuf *b, const void *p, size_t n);
/* A length-prefixed (u32) byte string; NULL is written as length 0. */
void sbuf_put_str(struct sbuf *b, const char *s);

/* Reader: the next value, or 0 with err = -EBADMSG when fewer bytes remain. */
uint8_t sbuf_get_u8(struct sbuf *b);
uint16_t sbuf_get_u16(struct sbuf *b);
uint32_t sbuf_get_u32(struct sbuf *b);
uint64_t sbuf_get_u64(struct sbuf *b);
bool sbuf_get_bool(struct sbuf *b);	/* a u8 that must be 0 or 1, else -EBADMSG */
/* Copies n bytes into p (zeroes p on underrun). */
void sbuf_get_bytes(struct sbuf *b, void *p, size_t n);
/* Points at the next n bytes in place, or NULL (err set) on underrun. */
const void *sbuf_get_ptr(struct sbuf *b, size_t n);
/*
 * A length-prefixed string into buf (cap bytes, NUL-terminated); a string that does not
 * fit or holds a NUL is -EBADMSG. Returns buf, or NULL on error.
 */
char *sbuf_get_str(struct sbuf *b, char *buf, size_t cap);

/* Bytes a reader has left. */
size_t sbuf_remaining(const struct sbuf *b);

/* The sticky error: 0, -ENOMEM, -EBADMSG or -EINVAL. */
int sbuf_error(const struct sbuf *b);

/* Reader: 0 if no error and every byte was consumed, else -EBADMSG (trailing bytes) or err. */
int sbuf_finish(const struct sbuf *b);

#endif
