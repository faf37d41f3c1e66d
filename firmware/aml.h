/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A small ACPI Machine Language (AML) byte-code writer.
 *
 * Everything is appended to a caller-supplied buffer of fixed size. The
 * first failure (buffer full, bad name, bad string) is remembered in a
 * sticky error; every later call is then a no-op, so a caller emits a whole
 * block of AML and checks aml_error() once at the end.
 *
 * Objects that carry a PkgLength (Scope, Device, Package, Buffer) are
 * written as begin/end pairs: *_begin() returns a mark, the caller emits
 * the contents, and aml_end() (or the buffer/template variants) inserts the
 * minimal PkgLength in front of them. Pairs must be closed innermost first.
 */
#ifndef FIRMWARE_AML_H
#define FIRMWARE_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t size;		/* capacity of buf */
	size_t len;		/* bytes written so far */
	int err;		/* 0, or the first -ENOSPC / -EINVAL */
};

/* AML opcodes and prefixes used by the writer (ACPI 6.x, section 20). */
#define AML_ZERO_OP		0x00
#define AML_ONE_OP		0x01
#define AML_NAME_OP		0x08
#define AML_BYTE_PREFIX		0x0a
#define AML_WORD_PREFIX		0x0b
#define AML_DWORD_PREFIX	0x0c
#define AML_STRING_PREFIX	0x0d
#define AML_QWORD_PREFIX	0x0e
#define AML_SCOPE_OP		0x10
#define AML_BUFFER_OP		0x11
#define AML_PACKAGE_OP		0x12
#define AML_DUAL_NAME_PREFIX	0x2e
#define AML_MULTI_NAME_PREFIX	0x2f
#define AML_EXT_OP_PREFIX	0x5b
#define AML_ROOT_CHAR		0x5c
#define AML_PARENT_CHAR		0x5e
#define AML_DEVICE_OP		0x82	/* after AML_EXT_OP_PREFIX */

/* Resource descriptor tags (ACPI 6.x, section 6.4). */
#define AML_RES_IRQ_NOFLAGS	0x22	/* small IRQ descriptor, 2 data bytes */
#define AML_RES_IO		0x47	/* small I/O port descriptor, 7 data bytes */
#define AML_RES_END_TAG		0x79	/* small end tag, 1 data byte */
#define AML_RES_MEM32_FIXED	0x86	/* large Memory32Fixed descriptor */
#define AML_RES_EXT_IRQ		0x89	/* large Extended Interrupt descriptor */

/* Extended Interrupt descriptor flags. */
#define AML_IRQ_CONSUMER	(1u << 0)	/* else ResourceProducer */
#define AML_IRQ_EDGE		(1u << 1)	/* else Level */
#define AML_IRQ_ACTIVE_LOW	(1u << 2)	/* else ActiveHigh */
#define AML_IRQ_SHARED		(1u << 3)	/* else Exclusive */

/* Stores v little-endian at p. */
static inline void aml_le16(void *p, uint16_t v)
{
	uint8_t *b = p;

	b[0] = v;
	b[1] = v >> 8;
}

/* Stores v little-endian at p. */
static inline void aml_le32(void *p, uint32_t v)
{
	aml_le16(p, v);
	aml_le16((uint8_t *)p + 2, v >> 16);
}

/* Stores v little-endian at p. */
static inline void aml_le64(void *p, uint64_t v)
{
	aml_le32(p, v);
	aml_le32((uint8_t *)p + 4, v >> 32);
}

/* Starts an empty writer over buf[0..size). */
void aml_init(struct aml *a, void *buf, size_t size);
/* Returns 0, or the first error met: -ENOSPC (buffer too small) or -EINVAL. */
int aml_error(const struct aml *a);
/* Returns the number of bytes written so far. */
size_t aml_len(const struct aml *a);

/* Appends one raw byte. */
void aml_byte(struct aml *a, uint8_t b);
/* Appends n raw bytes. */
void aml_bytes(struct aml *a, const void *p, size_t n);

/* Appends a NameString: '\' or '^' prefixes, then '.'-joined segments of 1-4 chars padded with '_'. */
void aml_name_string(struct aml *a, const char *path);
/* Appends an integer as Zero, One, or the shortest of Byte/Word/DWord/QWordPrefix. */
void aml_integer(struct aml *a, uint64_t v);
/* Appends a String (StringPrefix, ASCII 0x01-0x7f, NUL); other characters are -EINVAL. */
void aml_string(struct aml *a, const char *s);
/* Appends EisaId("ABC1234") as its 32-bit compressed integer; a malformed id is -EINVAL. */
void aml_eisaid(struct aml *a, const char *id);
/* Appends Name(path, ...): NameOp and NameString; the caller appends the value object. */
void aml_name(struct aml *a, const char *path);

/* Opens Scope(path); returns the mark to pass to aml_end(). */
size_t aml_scope_begin(struct aml *a, const char *path);
/* Opens Device(path); returns the mark to pass to aml_end(). */
size_t aml_device_begin(struct aml *a, const char *path);
/* Opens Package() with nelems elements to follow; returns the mark for aml_end(). */
size_t aml_package_begin(struct aml *a, uint8_t nelems);
/* Closes a Scope, Device or Package opened at mark by inserting its PkgLength. */
void aml_end(struct aml *a, size_t mark);

/* Opens Buffer(){...}; returns the mark to pass to aml_buffer_end(). */
size_t aml_buffer_begin(struct aml *a);
/* Closes a Buffer: inserts PkgLength and BufferSize in front of the bytes since mark. */
void aml_buffer_end(struct aml *a, size_t mark);
/* Opens ResourceTemplate(){...}; returns the mark to pass to aml_restemplate_end(). */
size_t aml_restemplate_begin(struct aml *a);
/* Closes a ResourceTemplate: appends the EndTag with a correct checksum, then closes the Buffer. */
void aml_restemplate_end(struct aml *a, size_t mark);

/* Appends IO(Decode16 or Decode10, min, max, align, len). */
void aml_res_io(struct aml *a, bool decode16, uint16_t min, uint16_t max,
		uint8_t align, uint8_t len);
/* Appends IRQNoFlags(){irq}; irq above 15 is -EINVAL. */
void aml_res_irq_noflags(struct aml *a, unsigned int irq);
/* Appends Memory32Fixed(ReadWrite or ReadOnly, base, size). */
void aml_res_mem32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t size);
/* Appends Interrupt(flags from AML_IRQ_*){gsi} with one interrupt and no resource source. */
void aml_res_ext_irq(struct aml *a, uint8_t flags, uint32_t gsi);

#endif
