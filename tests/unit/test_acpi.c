// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the AML writer and the ACPI table builder, plus a check
 * that iasl (acpica-tools) disassembles the generated tables cleanly.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* memmem */
#endif
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "firmware/acpi.h"
#include "firmware/aml.h"
#include "firmware/x86_layout.h"

#define ACPI_AREA_SIZE		(X86_ACPI_END - X86_ACPI_GPA)
#define FADT_HW_REDUCED		(1u << 20)
#define FADT_RESET_REG_SUP	(1u << 10)
#define FADT_PWR_BUTTON		(1u << 4)
#define FADT_SLP_BUTTON		(1u << 5)
#define BOOT_8042		(1u << 1)
#define BOOT_NO_VGA		(1u << 2)
#define BOOT_NO_CMOS_RTC	(1u << 5)

static uint16_t rd16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

/* ---- AML writer ---- */

static void expect_bytes(const struct aml *a, const uint8_t *want, size_t n)
{
	cr_assert_eq(aml_error(a), 0);
	cr_assert_eq(aml_len(a), n, "len %zu, want %zu", aml_len(a), n);
	cr_assert_arr_eq(a->buf, want, n);
}

Test(aml, integers_use_shortest_encoding)
{
	static const struct {
		uint64_t v;
		uint8_t enc[9];
		size_t len;
	} cases[] = {
		{ 0, { 0x00 }, 1 },
		{ 1, { 0x01 }, 1 },
		{ 2, { 0x0a, 0x02 }, 2 },
		{ 0xff, { 0x0a, 0xff }, 2 },
		{ 0x100, { 0x0b, 0x00, 0x01 }, 3 },
		{ 0xffff, { 0x0b, 0xff, 0xff }, 3 },
		{ 0x10000, { 0x0c, 0x00, 0x00, 0x01, 0x00 }, 5 },
		{ 0xfec00000, { 0x0c, 0x00, 0x00, 0xc0, 0xfe }, 5 },
		{ 0x100000000ULL, { 0x0e, 0, 0, 0, 0, 1, 0, 0, 0 }, 9 },
		{ UINT64_MAX, { 0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 9 },
	};
	uint8_t buf[16];
	struct aml a;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		aml_init(&a, buf, sizeof(buf));
		aml_integer(&a, cases[i].v);
		expect_bytes(&a, cases[i].enc, cases[i].len);
	}
}

Test(aml, name_strings)
{
	uint8_t buf[32];
	struct aml a;

	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, "_SB");
	expect_bytes(&a, (const uint8_t *)"_SB_", 4);

	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, "\\_SB.PCI0");
	expect_bytes(&a, (const uint8_t *)"\\\x2e_SB_PCI0", 10);

	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, "^^A.B1.C");
	expect_bytes(&a, (const uint8_t *)"^^\x2f\x03" "A___B1__C___", 16);

	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, "\\");
	expect_bytes(&a, (const uint8_t *)"\\\0", 2);
}

Test(aml, bad_names_are_einval)
{
	static const char *bad[] = { "1ABC", "ABCDE", "abc", "A..B", "A.", ".A", "\\^A", "A-B" };
	uint8_t buf[32];
	struct aml a;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_init(&a, buf, sizeof(buf));
		aml_name_string(&a, bad[i]);
		cr_assert_eq(aml_error(&a), -EINVAL, "name \"%s\" accepted", bad[i]);
	}
	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, NULL);
	cr_assert_eq(aml_error(&a), -EINVAL);
}

Test(aml, strings_and_eisaid)
{
	uint8_t buf[32];
	struct aml a;

	aml_init(&a, buf, sizeof(buf));
	aml_string(&a, "LNRO0005");
	expect_bytes(&a, (const uint8_t *)"\x0dLNRO0005", 10);

	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP0501");
	expect_bytes(&a, (const uint8_t[]){ 0x0c, 0x41, 0xd0, 0x05, 0x01 }, 5);

	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP0A03");
	expect_bytes(&a, (const uint8_t[]){ 0x0c, 0x41, 0xd0, 0x0a, 0x03 }, 5);

	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP050");
	cr_assert_eq(aml_error(&a), -EINVAL);
	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "pNP0501");
	cr_assert_eq(aml_error(&a), -EINVAL);
	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP05G1");
	cr_assert_eq(aml_error(&a), -EINVAL);
	aml_init(&a, buf, sizeof(buf));
	aml_string(&a, "caf\xc3\xa9");
	cr_assert_eq(aml_error(&a), -EINVAL);
}

/* Decodes a PkgLength at p; returns its value and stores its size in *n. */
static size_t decode_pkg_length(const uint8_t *p, size_t *n)
{
	size_t follow = p[0] >> 6, v, i;

	*n = follow + 1;
	if (!follow)
		return p[0] & 0x3f;
	v = p[0] & 0x0f;
	for (i = 0; i < follow; i++)
		v |= (size_t)p[1 + i] << (4 + 8 * i);
	return v;
}

Test(aml, pkg_length_boundaries)
{
	/* body = bytes after PkgLength (the NumElements byte + k raw bytes) */
	static const struct {
		size_t body;
		size_t pkg_bytes;
	} cases[] = {
		{ 1, 1 }, { 62, 1 }, { 63, 2 }, { 0xfff - 2, 2 }, { 0xfff - 1, 3 },
		{ 0xfffff - 3, 3 }, { 0xfffff - 2, 4 }, { 0x123456, 4 },
	};
	size_t cap = 0x123456 + 16, i, n, v;
	uint8_t *buf = calloc(1, cap);
	struct aml a;

	cr_assert_not_null(buf);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t body = cases[i].body, mark, k;

		aml_init(&a, buf, cap);
		mark = aml_package_begin(&a, 0);
		for (k = 1; k < body; k++)
			aml_byte(&a, 0);
		aml_end(&a, mark);
		cr_assert_eq(aml_error(&a), 0);
		cr_assert_eq(buf[0], AML_PACKAGE_OP);
		v = decode_pkg_length(buf + 1, &n);
		cr_assert_eq(n, cases[i].pkg_bytes, "body %zu: %zu PkgLength bytes", body, n);
		cr_assert_eq(v, body + n, "body %zu: PkgLength %zu", body, v);
		cr_assert_eq(aml_len(&a), 1 + n + body);
		if (n > 1)
			cr_assert_eq(buf[1] & 0x30, 0, "reserved bits set");
	}
	free(buf);
}

Test(aml, nested_scope_device_package)
{
	static const uint8_t want[] = {
		0x10, 0x18, '\\', '_', 'S', 'B', '_',		/* Scope(\_SB) */
		0x5b, 0x82, 0x10, 'D', 'E', 'V', '0',		/* Device(DEV0) */
		0x08, 'P', 'K', 'G', '_',			/* Name(PKG_, */
		0x12, 0x05, 0x02, 0x0a, 0x05, 0x00,		/* Package(){5, 0}) */
	};
	uint8_t buf[64];
	struct aml a;
	size_t sb, dev, pkg;

	aml_init(&a, buf, sizeof(buf));
	sb = aml_scope_begin(&a, "\\_SB");
	dev = aml_device_begin(&a, "DEV0");
	aml_name(&a, "PKG");
	pkg = aml_package_begin(&a, 2);
	aml_integer(&a, 5);
	aml_integer(&a, 0);
	aml_end(&a, pkg);
	aml_end(&a, dev);
	aml_end(&a, sb);
	expect_bytes(&a, want, sizeof(want));
}

Test(aml, resource_template)
{
	static const uint8_t want[] = {
		0x11, 0x1a, 0x0a, 0x17,				/* Buffer(23) */
		0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00,
		0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00,
		0x79,
	};
	uint8_t buf[64];
	struct aml a;
	size_t res;

	aml_init(&a, buf, sizeof(buf));
	res = aml_restemplate_begin(&a);
	aml_res_mem32_fixed(&a, true, 0xd0000000, 0x1000);
	aml_res_ext_irq(&a, AML_IRQ_CONSUMER | AML_IRQ_EDGE, 5);
	aml_restemplate_end(&a, res);
	cr_assert_eq(aml_error(&a), 0);
	cr_assert_eq(aml_len(&a), sizeof(want) + 1);
	cr_assert_arr_eq(buf, want, sizeof(want));
	/* the EndTag checksum makes the descriptors sum to zero */
	cr_assert_eq(sum8(buf + 4, 23), 0);

	aml_init(&a, buf, sizeof(buf));
	res = aml_restemplate_begin(&a);
	aml_res_io(&a, true, 0x3f8, 0x3f8, 0, 8);
	aml_res_irq_noflags(&a, 4);
	aml_restemplate_end(&a, res);
	expect_bytes(&a, (const uint8_t[]){ 0x11, 0x10, 0x0a, 0x0d,
		0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,
		0x22, 0x10, 0x00, 0x79, 0x0f }, 17);

	aml_init(&a, buf, sizeof(buf));
	aml_res_irq_noflags(&a, 16);
	cr_assert_eq(aml_error(&a), -EINVAL);
	aml_init(&a, buf, sizeof(buf));
	aml_res_ext_irq(&a, 0x80, 5);
	cr_assert_eq(aml_error(&a), -EINVAL);
}

Test(aml, overflow_is_sticky_and_bounded)
{
	uint8_t buf[16];
	struct aml a;
	size_t mark, i;

	memset(buf, 0xcc, sizeof(buf));
	aml_init(&a, buf, 8);
	aml_name(&a, "ABCD");			/* 5 bytes */
	aml_integer(&a, 0x12345678);		/* 5 more: does not fit */
	cr_assert_eq(aml_error(&a), -ENOSPC);
	cr_assert_eq(aml_len(&a), 5);
	aml_byte(&a, 0);			/* would fit, but the error sticks */
	cr_assert_eq(aml_len(&a), 5);
	for (i = 8; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0xcc);

	/* inserting the PkgLength at the end needs room too */
	memset(buf, 0xcc, sizeof(buf));
	aml_init(&a, buf, 7);
	mark = aml_scope_begin(&a, "ABCD");	/* 5 bytes */
	aml_byte(&a, 0);
	aml_byte(&a, 0);			/* 7: full */
	aml_end(&a, mark);
	cr_assert_eq(aml_error(&a), -ENOSPC);
	for (i = 7; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0xcc);

	/* a stale mark is refused */
	aml_init(&a, buf, sizeof(buf));
	aml_end(&a, 3);
	cr_assert_eq(aml_error(&a), -EINVAL);
}

/* ---- ACPI tables ---- */

struct tables {
	uint8_t *base;
	uint64_t gpa;
	size_t len;
	uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt;
};

/* Returns the host pointer for a guest table of len bytes at addr. */
static uint8_t *table_at(const struct tables *t, uint64_t addr)
{
	uint32_t len;

	cr_assert(addr >= t->gpa && addr - t->gpa + 36 <= t->len,
		  "table address 0x%llx outside [0x%llx, +0x%zx)",
		  (unsigned long long)addr, (unsigned long long)t->gpa, t->len);
	len = rd32(t->base + (addr - t->gpa) + 4);
	cr_assert(addr - t->gpa + len <= t->len, "table runs past the end");
	cr_assert_eq(addr % 8, 0, "table not 8-byte aligned");
	return t->base + (addr - t->gpa);
}

/* Follows RSDP -> XSDT -> FADT/MADT -> DSDT and checks every checksum. */
static void find_tables(struct tables *t, void *buf, ssize_t len, uint64_t gpa)
{
	uint8_t *x;

	cr_assert_gt(len, 0, "acpi_build_tables: %zd", len);
	t->base = buf;
	t->gpa = gpa;
	t->len = len;
	t->rsdp = buf;
	cr_assert_arr_eq(t->rsdp, "RSD PTR ", 8);
	cr_assert_eq(sum8(t->rsdp, 20), 0, "RSDP checksum");
	cr_assert_eq(sum8(t->rsdp, 36), 0, "RSDP extended checksum");

	x = t->xsdt = table_at(t, rd64(t->rsdp + 24));
	cr_assert_arr_eq(x, "XSDT", 4);
	cr_assert_eq(rd32(x + 4), 36 + 2 * 8);
	cr_assert_eq(sum8(x, rd32(x + 4)), 0, "XSDT checksum");

	t->fadt = table_at(t, rd64(x + 36));
	cr_assert_arr_eq(t->fadt, "FACP", 4);
	cr_assert_eq(sum8(t->fadt, rd32(t->fadt + 4)), 0, "FADT checksum");
	t->madt = table_at(t, rd64(x + 44));
	cr_assert_arr_eq(t->madt, "APIC", 4);
	cr_assert_eq(sum8(t->madt, rd32(t->madt + 4)), 0, "MADT checksum");
	t->dsdt = table_at(t, rd64(t->fadt + 140));
	cr_assert_arr_eq(t->dsdt, "DSDT", 4);
	cr_assert_eq(sum8(t->dsdt, rd32(t->dsdt + 4)), 0, "DSDT checksum");
}

static struct acpi_device_desc virtio_devs[X86_IOAPIC_PINS];

/* A platform of ncpus CPUs and ndev virtio-mmio devices laid out like the VMM does. */
static struct acpi_platform platform(unsigned int ncpus, size_t ndev)
{
	size_t i;

	cr_assert_leq(ndev, X86_IOAPIC_PINS - X86_VIRTIO_FIRST_GSI);
	for (i = 0; i < ndev; i++) {
		virtio_devs[i].hid = "LNRO0005";
		virtio_devs[i].mmio_base = X86_VIRTIO_MMIO_GPA + i * X86_VIRTIO_MMIO_SIZE;
		virtio_devs[i].mmio_size = X86_VIRTIO_MMIO_SIZE;
		virtio_devs[i].gsi = X86_VIRTIO_FIRST_GSI + i;
	}
	return (struct acpi_platform){ .ncpus = ncpus, .devices = virtio_devs, .ndevices = ndev };
}

static uint8_t acpi_buf[ACPI_AREA_SIZE];

Test(acpi, rsdp_and_xsdt)
{
	struct acpi_platform p = platform(2, 3);
	struct tables t;
	ssize_t n;

	n = acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA);
	find_tables(&t, acpi_buf, n, X86_ACPI_GPA);
	cr_assert_eq(t.rsdp[15], 2, "RSDP revision");
	cr_assert_eq(rd32(t.rsdp + 20), 36, "RSDP length");
	cr_assert_arr_eq(t.rsdp + 9, "VMM   ", 6);
	cr_assert_eq(rd64(t.rsdp + 24), X86_ACPI_GPA + (t.xsdt - acpi_buf));
	cr_assert_eq(rd64(t.xsdt + 36), X86_ACPI_GPA + (t.fadt - acpi_buf));
	cr_assert_eq(rd64(t.xsdt + 44), X86_ACPI_GPA + (t.madt - acpi_buf));
	cr_assert_leq(n, (ssize_t)sizeof(acpi_buf));
}

Test(acpi, fadt_fields)
{
	struct acpi_platform p = platform(1, 1);
	struct tables t;
	const uint8_t *f;
	uint32_t flags;
	ssize_t n;

	n = acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA);
	find_tables(&t, acpi_buf, n, X86_ACPI_GPA);
	f = t.fadt;
	cr_assert_eq(rd32(f + 4), 276);
	cr_assert_eq(f[8], 6, "FADT revision");
	cr_assert_eq(f[131], 3, "FADT minor version (ACPI 6.3)");
	flags = rd32(f + 112);
	cr_assert_eq(flags, FADT_HW_REDUCED | FADT_RESET_REG_SUP |
		     FADT_PWR_BUTTON | FADT_SLP_BUTTON,
		     "flags 0x%x", flags);
	cr_assert_eq(rd16(f + 109), BOOT_NO_VGA | BOOT_NO_CMOS_RTC);
	cr_assert_eq(rd16(f + 109) & BOOT_8042, 0);
	cr_assert_eq(rd16(f + 46), 0, "SCI_INT");
	cr_assert_eq(rd64(f + 140), X86_ACPI_GPA + (t.dsdt - acpi_buf), "X_DSDT");
	cr_assert_eq(rd32(f + 40), X86_ACPI_GPA + (t.dsdt - acpi_buf), "DSDT");
	cr_assert_eq(rd32(f + 36), 0, "FACS");
	cr_assert_eq(rd64(f + 132), 0, "X_FACS");

	/* RESET_REG: SystemIO, 8 bits, offset 0, byte access */
	cr_assert_arr_eq(f + 116, ((uint8_t[]){ 1, 8, 0, 1 }), 4);
	cr_assert_eq(rd64(f + 120), X86_ACPI_RESET_PORT);
	cr_assert_eq(f[128], X86_ACPI_RESET_VALUE);
	cr_assert_arr_eq(f + 244, ((uint8_t[]){ 1, 8, 0, 1 }), 4);
	cr_assert_eq(rd64(f + 248), X86_ACPI_SLEEP_CTL_PORT);
	cr_assert_arr_eq(f + 256, ((uint8_t[]){ 1, 8, 0, 1 }), 4);
	cr_assert_eq(rd64(f + 260), X86_ACPI_SLEEP_STS_PORT);
	cr_assert_arr_eq(f + 268, "VMMVMM\0\0", 8);
}

Test(acpi, tables_above_4g)
{
	struct acpi_platform p = platform(1, 1);
	uint64_t gpa = 0x100000000ULL;
	struct tables t;
	ssize_t n;

	n = acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), gpa);
	find_tables(&t, acpi_buf, n, gpa);
	cr_assert_eq(rd64(t.fadt + 140), gpa + (t.dsdt - acpi_buf));
	cr_assert_eq(rd32(t.fadt + 40), 0, "32-bit DSDT pointer must be 0 above 4 GiB");
}

static void check_madt(unsigned int ncpus)
{
	struct acpi_platform p = platform(ncpus, 2);
	unsigned int nlapic = 0, nioapic = 0, niso = 0, nnmi = 0;
	struct tables t;
	const uint8_t *m, *e, *end;
	ssize_t n;

	n = acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA);
	find_tables(&t, acpi_buf, n, X86_ACPI_GPA);
	m = t.madt;
	cr_assert_eq(rd32(m + 36), X86_LAPIC_GPA);
	cr_assert_eq(rd32(m + 40), 1, "PCAT_COMPAT");
	end = m + rd32(m + 4);
	for (e = m + 44; e < end; e += e[1]) {
		cr_assert_geq(e[1], 2);
		cr_assert_leq(e + e[1], end, "entry runs past the MADT");
		switch (e[0]) {
		case 0:
			cr_assert_eq(e[1], 8);
			cr_assert_eq(e[2], nlapic, "processor UID");
			cr_assert_eq(e[3], nlapic, "APIC ID");
			cr_assert_eq(rd32(e + 4), 1, "enabled");
			nlapic++;
			break;
		case 1:
			cr_assert_eq(e[1], 12);
			cr_assert_eq(e[2], ncpus, "I/O APIC ID");
			cr_assert_eq(rd32(e + 4), X86_IOAPIC_GPA);
			cr_assert_eq(rd32(e + 8), 0, "GSI base");
			nioapic++;
			break;
		case 2:
			cr_assert_eq(e[1], 10);
			cr_assert_eq(e[2], 0);
			cr_assert_eq(e[3], 0);
			cr_assert_eq(rd32(e + 4), 2);
			cr_assert_eq(rd16(e + 8), 0);
			niso++;
			break;
		case 4:
			cr_assert_eq(e[1], 6);
			cr_assert_eq(e[2], 0xff);
			cr_assert_eq(rd16(e + 3), 0);
			cr_assert_eq(e[5], 1, "LINT1");
			nnmi++;
			break;
		default:
			cr_assert_fail("unexpected MADT entry type %u", e[0]);
		}
	}
	cr_assert_eq(e, end);
	cr_assert_eq(nlapic, ncpus);
	cr_assert_eq(nioapic, 1);
	cr_assert_eq(niso, 1);
	cr_assert_eq(nnmi, 1);
}

Test(acpi, madt_one_lapic_per_cpu)
{
	static const unsigned int counts[] = { 1, 2, 8, 255 };
	size_t i;

	for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		check_madt(counts[i]);
}

Test(acpi, dsdt_header)
{
	struct acpi_platform p = platform(4, 4);
	struct tables t;
	ssize_t n;

	n = acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA);
	find_tables(&t, acpi_buf, n, X86_ACPI_GPA);
	cr_assert_eq(t.dsdt[8], 2, "DSDT revision");
	/* the DSDT is last: the returned size ends with it */
	cr_assert_eq(t.dsdt + rd32(t.dsdt + 4), acpi_buf + n);
	cr_assert_not_null(memmem(t.dsdt, rd32(t.dsdt + 4), "\x0dLNRO0005", 10));
	cr_assert_not_null(memmem(t.dsdt, rd32(t.dsdt + 4), "V003", 4));
}

Test(acpi, largest_platform_fits_acpi_area)
{
	struct acpi_platform p = platform(ACPI_MAX_CPUS, X86_IOAPIC_PINS - X86_VIRTIO_FIRST_GSI);
	struct tables t;
	ssize_t n;

	n = acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA);
	find_tables(&t, acpi_buf, n, X86_ACPI_GPA);
	cr_assert_lt(n, 4096, "tables unexpectedly large: %zd", n);
}

Test(acpi, enospc_never_writes_past_size)
{
	struct acpi_platform p = platform(8, 4);
	enum { CANARY = 64 };
	ssize_t need, n;
	uint8_t *buf;
	size_t size, i;

	need = acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA);
	cr_assert_gt(need, 0);
	buf = malloc(need + CANARY);
	cr_assert_not_null(buf);
	for (size = 0; size < (size_t)need; size++) {
		memset(buf, 0xa5, need + CANARY);
		n = acpi_build_tables(&p, buf, size, X86_ACPI_GPA);
		cr_assert_eq(n, -ENOSPC, "size %zu: %zd", size, n);
		for (i = size; i < (size_t)need + CANARY; i++)
			cr_assert_eq(buf[i], 0xa5, "size %zu: byte %zu written", size, i);
	}
	/* exactly enough */
	memset(buf, 0xa5, need + CANARY);
	n = acpi_build_tables(&p, buf, need, X86_ACPI_GPA);
	cr_assert_eq(n, need);
	for (i = need; i < (size_t)need + CANARY; i++)
		cr_assert_eq(buf[i], 0xa5);
	cr_assert_arr_eq(buf, acpi_buf, need, "output depends on the buffer size");
	free(buf);
}

static ssize_t build_with(const struct acpi_device_desc *d, size_t nd, unsigned int ncpus)
{
	struct acpi_platform p = { .ncpus = ncpus, .devices = d, .ndevices = nd };

	return acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA);
}

Test(acpi, invalid_platforms)
{
	const struct acpi_device_desc good = { "LNRO0005", 0xd0000000, 0x1000, 5 };
	struct acpi_device_desc d[2];
	struct acpi_platform p = platform(1, 1);
	struct acpi_device_desc many[ACPI_MAX_DEVICES + 1];
	size_t i;

	cr_assert_gt(build_with(&good, 1, 1), 0);
	cr_assert_gt(build_with(NULL, 0, 1), 0, "no devices is fine");

	cr_assert_eq(acpi_build_tables(NULL, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA), -EINVAL);
	cr_assert_eq(acpi_build_tables(&p, NULL, sizeof(acpi_buf), X86_ACPI_GPA), -EINVAL);
	cr_assert_eq(acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA + 8), -EINVAL);
	cr_assert_eq(acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), UINT64_MAX - 0xfff),
		     -EINVAL, "[gpa, gpa + size) wraps");

	cr_assert_eq(build_with(&good, 1, 0), -EINVAL, "0 CPUs");
	cr_assert_eq(build_with(&good, 1, 256), -EINVAL, "256 CPUs");
	cr_assert_eq(build_with(NULL, 1, 1), -EINVAL, "NULL devices");

	for (i = 0; i < ACPI_MAX_DEVICES + 1; i++)
		many[i] = (struct acpi_device_desc){ "LNRO0005", 0xd0000000 + i * 0x1000,
						     0x1000, 5 + i % 19 };
	cr_assert_eq(build_with(many, ACPI_MAX_DEVICES + 1, 1), -EINVAL, "33 devices");

#define BAD(field, value, why)							\
	do {									\
		d[0] = good;							\
		d[0].field = value;						\
		cr_assert_eq(build_with(d, 1, 1), -EINVAL, why);		\
	} while (0)
	BAD(hid, NULL, "NULL hid");
	BAD(hid, "", "empty hid");
	BAD(hid, "LNRO00051", "9-char hid");
	BAD(hid, "LNRO 005", "space in hid");
	BAD(hid, "LNR\xc3\xa9", "non-ASCII hid");
	BAD(mmio_size, 0, "empty window");
	BAD(mmio_base, 0x100000000ULL, "window above 4 GiB");
	BAD(mmio_base, 0xfffff800ULL, "window crossing 4 GiB");
	BAD(gsi, X86_IOAPIC_PINS, "GSI past the IOAPIC");
	BAD(gsi, 2, "GSI of the PIT");
	BAD(gsi, X86_SERIAL_GSI, "GSI of COM1");
#undef BAD
	d[0] = good;
	d[0].mmio_base = 0xfffff000ULL;
	cr_assert_gt(build_with(d, 1, 1), 0, "window ending at 4 GiB");

	d[0] = good;
	d[1] = good;
	d[1].mmio_base += 0x1000;
	cr_assert_eq(build_with(d, 2, 1), -EINVAL, "shared GSI declared Exclusive");
	d[1].gsi = 6;
	cr_assert_gt(build_with(d, 2, 1), 0);
	d[1].mmio_base = good.mmio_base + 0x800;
	cr_assert_eq(build_with(d, 2, 1), -EINVAL, "overlapping windows");
}

/* ---- iasl: what the kernel's ACPICA will make of the tables ---- */

static char iasl_dir[64];

static void iasl_cleanup(void)
{
	struct dirent *de;
	char path[512];
	DIR *dir;

	if (!iasl_dir[0])
		return;
	dir = opendir(iasl_dir);
	if (dir) {
		while ((de = readdir(dir))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", iasl_dir, de->d_name);
			unlink(path);
		}
		closedir(dir);
	}
	rmdir(iasl_dir);
	iasl_dir[0] = '\0';
}

static void write_file(const char *name, const void *p, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", iasl_dir, name);
	f = fopen(path, "wb");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fwrite(p, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static char *read_text(const char *name)
{
	char path[512];
	char *text;
	long len;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", iasl_dir, name);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = calloc(1, len + 1);
	cr_assert_not_null(text);
	cr_assert_eq(fread(text, 1, len, f), (size_t)len);
	fclose(f);
	return text;
}

/* Runs iasl with args in the temp dir; returns its exit status. */
static int run_iasl(const char *args, const char *log)
{
	char cmd[1024];
	int st;

	snprintf(cmd, sizeof(cmd), "cd '%s' && iasl %s >%s 2>&1", iasl_dir, args, log);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Disassembles name.dat and returns the text of name.dsl. */
static char *disassemble(const char *name, const void *table)
{
	char file[64], args[128], log[64];
	int rc;

	snprintf(file, sizeof(file), "%s.dat", name);
	write_file(file, table, rd32((const uint8_t *)table + 4));
	snprintf(args, sizeof(args), "-d %s.dat", name);
	snprintf(log, sizeof(log), "%s.log", name);
	rc = run_iasl(args, log);
	cr_assert_eq(rc, 0, "iasl -d %s.dat exited %d:\n%s", name, rc, read_text(log));
	snprintf(file, sizeof(file), "%s.dsl", name);
	return read_text(file);
}

static void expect_text(const char *text, const char *what, const char *table)
{
	cr_assert_not_null(strstr(text, what), "%s disassembly lacks \"%s\":\n%s",
			   table, what, text);
}

Test(acpi, iasl_accepts_tables, .fini = iasl_cleanup)
{
	struct acpi_device_desc d[2] = {
		{ "LNRO0005", 0xd0000000, 0x1000, 5 },
		{ "LNRO0005", 0xd0001000, 0x200, 11 },
	};
	struct acpi_platform p = { .ncpus = 4, .devices = d, .ndevices = 2 };
	char *dsdt, *fadt, *madt, *xsdt, fadt_addr[64];
	struct tables t;
	ssize_t n;
	int rc;

	cr_assert_eq(system("command -v iasl >/dev/null 2>&1"), 0,
		     "iasl not found: run scripts/install-deps (package acpica-tools)");
	strcpy(iasl_dir, "/tmp/test_acpi.XXXXXX");
	cr_assert_not_null(mkdtemp(iasl_dir), "mkdtemp: %s", strerror(errno));

	n = acpi_build_tables(&p, acpi_buf, sizeof(acpi_buf), X86_ACPI_GPA);
	find_tables(&t, acpi_buf, n, X86_ACPI_GPA);

	dsdt = disassemble("dsdt", t.dsdt);
	expect_text(dsdt, "\"LNRO0005\"", "DSDT");
	expect_text(dsdt, "Device (V000)", "DSDT");
	expect_text(dsdt, "Device (V001)", "DSDT");
	expect_text(dsdt, "Memory32Fixed (ReadWrite,", "DSDT");
	expect_text(dsdt, "0xD0001000,         // Address Base", "DSDT");
	expect_text(dsdt, "0x00000200,         // Address Length", "DSDT");
	expect_text(dsdt, "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )", "DSDT");
	expect_text(dsdt, "0x0000000B,", "DSDT");
	expect_text(dsdt, "_S5_", "DSDT");
	expect_text(dsdt, "EisaId (\"PNP0501\")", "DSDT");
	expect_text(dsdt, "0x03F8,             // Range Minimum", "DSDT");
	expect_text(dsdt, "IRQNoFlags ()\n                    {4}", "DSDT");
	expect_text(dsdt, "Name (_CCA, One)", "DSDT");
	/* and iasl compiles its own disassembly back without errors */
	rc = run_iasl("-p recompiled dsdt.dsl", "recompile.log");
	cr_assert_eq(rc, 0, "iasl could not recompile the DSDT:\n%s", read_text("recompile.log"));

	fadt = disassemble("facp", t.fadt);
	expect_text(fadt, "Hardware Reduced (V5) : 1", "FADT");
	expect_text(fadt, "Reset Register Supported (V2) : 1", "FADT");
	expect_text(fadt, "8042 Present on ports 60/64 (V2) : 0", "FADT");
	expect_text(fadt, "Address : 0000000000000602", "FADT");
	expect_text(fadt, "Address : 0000000000000600", "FADT");
	expect_text(fadt, "Address : 0000000000000601", "FADT");

	madt = disassemble("apic", t.madt);
	expect_text(madt, "Local Apic Address : FEE00000", "MADT");
	expect_text(madt, "Local Apic ID : 03", "MADT");
	expect_text(madt, "I/O Apic ID : 04", "MADT");
	expect_text(madt, "Address : FEC00000", "MADT");
	expect_text(madt, "[Interrupt Source Override]", "MADT");
	expect_text(madt, "[Local APIC NMI]", "MADT");

	xsdt = disassemble("xsdt", t.xsdt);
	snprintf(fadt_addr, sizeof(fadt_addr), "ACPI Table Address   0 : %016llX",
		 (unsigned long long)rd64(t.xsdt + 36));
	expect_text(xsdt, fadt_addr, "XSDT");

	free(dsdt);
	free(fadt);
	free(madt);
	free(xsdt);
}
