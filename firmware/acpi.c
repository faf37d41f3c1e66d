// SPDX-License-Identifier: GPL-2.0-only
/*
 * Builds the guest's ACPI tables (ACPI 6.x): RSDP, XSDT, a HW-reduced FADT,
 * MADT and a DSDT describing COM1 and the platform's MMIO devices.
 *
 * Layout in the caller's buffer, each table 16-byte aligned:
 *   RSDP (offset 0) | XSDT | FADT | MADT | DSDT
 *
 * The I/O APIC gets ID ncpus, the first ID after the local APICs (0..ncpus-1),
 * so no APIC ID appears twice in the MADT. Linux x86-64 only requires I/O APIC
 * IDs to be unique among I/O APICs and does not reprogram KVM's IOAPIC.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "firmware/acpi.h"
#include "firmware/aml.h"
#include "firmware/x86_layout.h"

#define ACPI_ALIGN		16
#define ACPI_OEM_ID		"VMM   "	/* 6 bytes */
#define ACPI_OEM_REVISION	1
#define ACPI_CREATOR_ID		"VMM "		/* 4 bytes */
#define ACPI_CREATOR_REVISION	1
#define ACPI_HYPERVISOR_ID	"VMMVMM\0\0"	/* 8 bytes */

/* System description table header. */
#define ACPI_HDR_LEN		36
#define ACPI_HDR_LENGTH		4
#define ACPI_HDR_REVISION	8
#define ACPI_HDR_CHECKSUM	9
#define ACPI_HDR_OEM_ID		10
#define ACPI_HDR_OEM_TABLE_ID	16
#define ACPI_HDR_OEM_REVISION	24
#define ACPI_HDR_CREATOR_ID	28
#define ACPI_HDR_CREATOR_REV	32

/* RSDP, revision 2. */
#define ACPI_RSDP_LEN		36
#define ACPI_RSDP_V1_LEN	20
#define ACPI_RSDP_CHECKSUM	8
#define ACPI_RSDP_OEM_ID	9
#define ACPI_RSDP_REVISION	15
#define ACPI_RSDP_LENGTH	20
#define ACPI_RSDP_XSDT		24
#define ACPI_RSDP_EXT_CHECKSUM	32

/* XSDT: header and one 64-bit pointer per table (FADT, MADT). */
#define ACPI_XSDT_ENTRIES	2
#define ACPI_XSDT_LEN		(ACPI_HDR_LEN + 8 * ACPI_XSDT_ENTRIES)

/* FADT, revision 6. */
#define ACPI_FADT_LEN		276
#define ACPI_FADT_REVISION	6
#define ACPI_FADT_MINOR		3		/* ACPI 6.3 */
#define ACPI_FADT_DSDT		40
#define ACPI_FADT_SCI_INT	46
#define ACPI_FADT_BOOT_ARCH	109
#define ACPI_FADT_FLAGS		112
#define ACPI_FADT_RESET_REG	116
#define ACPI_FADT_RESET_VALUE	128
#define ACPI_FADT_MINOR_REV	131
#define ACPI_FADT_X_DSDT	140
#define ACPI_FADT_SLEEP_CTL	244
#define ACPI_FADT_SLEEP_STS	256
#define ACPI_FADT_HYPERVISOR	268

#define ACPI_BOOT_NO_VGA	(1u << 2)
#define ACPI_BOOT_NO_CMOS_RTC	(1u << 5)

#define ACPI_FADT_PWR_BUTTON	(1u << 4)	/* no fixed power button */
#define ACPI_FADT_SLP_BUTTON	(1u << 5)	/* no fixed sleep button */
#define ACPI_FADT_RESET_REG_SUP	(1u << 10)
#define ACPI_FADT_HW_REDUCED	(1u << 20)

/* Generic Address Structure. */
#define ACPI_GAS_SYSTEM_IO	1
#define ACPI_GAS_ACCESS_BYTE	1

/* MADT. */
#define ACPI_MADT_REVISION	5
#define ACPI_MADT_LAPIC_ADDR	36
#define ACPI_MADT_FLAGS		40
#define ACPI_MADT_ENTRIES	44
#define ACPI_MADT_PCAT_COMPAT	(1u << 0)
#define ACPI_MADT_LAPIC		0
#define ACPI_MADT_LAPIC_LEN	8
#define ACPI_MADT_LAPIC_ENABLED	(1u << 0)
#define ACPI_MADT_IOAPIC	1
#define ACPI_MADT_IOAPIC_LEN	12
#define ACPI_MADT_ISO		2
#define ACPI_MADT_ISO_LEN	10
#define ACPI_MADT_LAPIC_NMI	4
#define ACPI_MADT_NMI_LEN	6
#define ACPI_MADT_ALL_CPUS	0xff
#define ACPI_MADT_LEN(ncpus)	(ACPI_MADT_ENTRIES + ACPI_MADT_LAPIC_LEN * (ncpus) + \
				 ACPI_MADT_IOAPIC_LEN + ACPI_MADT_ISO_LEN + ACPI_MADT_NMI_LEN)

#define ACPI_PIT_IRQ		0
#define ACPI_PIT_GSI		2	/* KVM wires the PIT to IOAPIC pin 2 */

/* DSDT, revision 2: 64-bit AML integers. */
#define ACPI_DSDT_REVISION	2

struct acpi_layout {
	size_t xsdt;
	size_t fadt;
	size_t madt;
	size_t dsdt;
};

static size_t acpi_align(size_t off)
{
	return (off + ACPI_ALIGN - 1) & ~(size_t)(ACPI_ALIGN - 1);
}

static bool acpi_ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int acpi_check_device(const struct acpi_device_desc *d)
{
	size_t i, len;

	if (!d->hid)
		return -EINVAL;
	len = strnlen(d->hid, ACPI_HID_MAX_LEN + 1);
	if (len == 0 || len > ACPI_HID_MAX_LEN)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		unsigned char c = d->hid[i];

		if (c <= ' ' || c > '~')
			return -EINVAL;
	}
	/* Memory32Fixed: the window must lie below 4 GiB. */
	if (!d->mmio_size || d->mmio_base > UINT32_MAX ||
	    d->mmio_size > UINT32_MAX - d->mmio_base + 1)
		return -EINVAL;
	/* One I/O APIC; pin 2 takes the PIT and COM1 has its own pin. */
	if (d->gsi >= X86_IOAPIC_PINS || d->gsi == ACPI_PIT_GSI ||
	    d->gsi == X86_SERIAL_GSI)
		return -EINVAL;
	return 0;
}

static int acpi_check_platform(const struct acpi_platform *p)
{
	const struct acpi_device_desc *d, *e;
	size_t i, j;

	if (!p || p->ncpus == 0 || p->ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	if (p->ndevices > ACPI_MAX_DEVICES || (p->ndevices && !p->devices))
		return -EINVAL;
	for (i = 0; i < p->ndevices; i++) {
		d = &p->devices[i];
		if (acpi_check_device(d))
			return -EINVAL;
		/* Interrupts are declared Exclusive, windows must not overlap. */
		for (j = 0; j < i; j++) {
			e = &p->devices[j];
			if (d->gsi == e->gsi ||
			    acpi_ranges_overlap(d->mmio_base, d->mmio_size,
						e->mmio_base, e->mmio_size))
				return -EINVAL;
		}
	}
	return 0;
}

static void acpi_layout(const struct acpi_platform *p, struct acpi_layout *l)
{
	l->xsdt = acpi_align(ACPI_RSDP_LEN);
	l->fadt = acpi_align(l->xsdt + ACPI_XSDT_LEN);
	l->madt = acpi_align(l->fadt + ACPI_FADT_LEN);
	l->dsdt = acpi_align(l->madt + ACPI_MADT_LEN(p->ncpus));
}

/* Sets the byte at field so that the len bytes at t sum to zero. */
static void acpi_checksum(uint8_t *t, size_t len, size_t field)
{
	uint8_t sum = 0;
	size_t i;

	t[field] = 0;
	for (i = 0; i < len; i++)
		sum += t[i];
	t[field] = -sum;
}

/* Fills the header of the table at t; the checksum is computed last. */
static void acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	aml_le32(t + ACPI_HDR_LENGTH, len);
	t[ACPI_HDR_REVISION] = rev;
	memcpy(t + ACPI_HDR_OEM_ID, ACPI_OEM_ID, 6);
	/* OEM table id: "VMM" + signature + ' ' */
	memcpy(t + ACPI_HDR_OEM_TABLE_ID, "VMM", 3);
	memcpy(t + ACPI_HDR_OEM_TABLE_ID + 3, sig, 4);
	t[ACPI_HDR_OEM_TABLE_ID + 7] = ' ';
	aml_le32(t + ACPI_HDR_OEM_REVISION, ACPI_OEM_REVISION);
	memcpy(t + ACPI_HDR_CREATOR_ID, ACPI_CREATOR_ID, 4);
	aml_le32(t + ACPI_HDR_CREATOR_REV, ACPI_CREATOR_REVISION);
}

/* Writes a Generic Address Structure for an 8-bit I/O port. */
static void acpi_gas_io8(uint8_t *g, uint16_t port)
{
	g[0] = ACPI_GAS_SYSTEM_IO;
	g[1] = 8;		/* register bit width */
	g[2] = 0;		/* register bit offset */
	g[3] = ACPI_GAS_ACCESS_BYTE;
	aml_le64(g + 4, port);
}

static void acpi_build_rsdp(uint8_t *t, uint64_t xsdt_gpa)
{
	memcpy(t, "RSD PTR ", 8);
	memcpy(t + ACPI_RSDP_OEM_ID, ACPI_OEM_ID, 6);
	t[ACPI_RSDP_REVISION] = 2;
	/* RsdtAddress stays 0: there is only an XSDT. */
	aml_le32(t + ACPI_RSDP_LENGTH, ACPI_RSDP_LEN);
	aml_le64(t + ACPI_RSDP_XSDT, xsdt_gpa);
	acpi_checksum(t, ACPI_RSDP_V1_LEN, ACPI_RSDP_CHECKSUM);
	acpi_checksum(t, ACPI_RSDP_LEN, ACPI_RSDP_EXT_CHECKSUM);
}

static void acpi_build_xsdt(uint8_t *t, uint64_t fadt_gpa, uint64_t madt_gpa)
{
	acpi_header(t, "XSDT", ACPI_XSDT_LEN, 1);
	aml_le64(t + ACPI_HDR_LEN, fadt_gpa);
	aml_le64(t + ACPI_HDR_LEN + 8, madt_gpa);
	acpi_checksum(t, ACPI_XSDT_LEN, ACPI_HDR_CHECKSUM);
}

static void acpi_build_fadt(uint8_t *t, uint64_t dsdt_gpa)
{
	acpi_header(t, "FACP", ACPI_FADT_LEN, ACPI_FADT_REVISION);
	/* The 32-bit pointer only when it fits; X_DSDT is what OSPM uses. */
	if (dsdt_gpa <= UINT32_MAX)
		aml_le32(t + ACPI_FADT_DSDT, dsdt_gpa);
	aml_le16(t + ACPI_FADT_SCI_INT, 0);
	aml_le16(t + ACPI_FADT_BOOT_ARCH, ACPI_BOOT_NO_VGA | ACPI_BOOT_NO_CMOS_RTC);
	aml_le32(t + ACPI_FADT_FLAGS, ACPI_FADT_HW_REDUCED | ACPI_FADT_RESET_REG_SUP |
		 ACPI_FADT_PWR_BUTTON | ACPI_FADT_SLP_BUTTON);
	acpi_gas_io8(t + ACPI_FADT_RESET_REG, X86_ACPI_RESET_PORT);
	t[ACPI_FADT_RESET_VALUE] = X86_ACPI_RESET_VALUE;
	t[ACPI_FADT_MINOR_REV] = ACPI_FADT_MINOR;
	aml_le64(t + ACPI_FADT_X_DSDT, dsdt_gpa);
	acpi_gas_io8(t + ACPI_FADT_SLEEP_CTL, X86_ACPI_SLEEP_CTL_PORT);
	acpi_gas_io8(t + ACPI_FADT_SLEEP_STS, X86_ACPI_SLEEP_STS_PORT);
	memcpy(t + ACPI_FADT_HYPERVISOR, ACPI_HYPERVISOR_ID, 8);
	acpi_checksum(t, ACPI_FADT_LEN, ACPI_HDR_CHECKSUM);
}

static void acpi_build_madt(uint8_t *t, unsigned int ncpus)
{
	uint32_t len = ACPI_MADT_LEN(ncpus);
	uint8_t *e = t + ACPI_MADT_ENTRIES;
	unsigned int cpu;

	acpi_header(t, "APIC", len, ACPI_MADT_REVISION);
	aml_le32(t + ACPI_MADT_LAPIC_ADDR, X86_LAPIC_GPA);
	aml_le32(t + ACPI_MADT_FLAGS, ACPI_MADT_PCAT_COMPAT);

	for (cpu = 0; cpu < ncpus; cpu++, e += ACPI_MADT_LAPIC_LEN) {
		e[0] = ACPI_MADT_LAPIC;
		e[1] = ACPI_MADT_LAPIC_LEN;
		e[2] = cpu;		/* ACPI processor UID */
		e[3] = cpu;		/* APIC ID */
		aml_le32(e + 4, ACPI_MADT_LAPIC_ENABLED);
	}

	e[0] = ACPI_MADT_IOAPIC;
	e[1] = ACPI_MADT_IOAPIC_LEN;
	e[2] = ncpus;			/* I/O APIC ID: after the LAPIC IDs */
	e[3] = 0;
	aml_le32(e + 4, X86_IOAPIC_GPA);
	aml_le32(e + 8, 0);		/* GSI base */
	e += ACPI_MADT_IOAPIC_LEN;

	e[0] = ACPI_MADT_ISO;
	e[1] = ACPI_MADT_ISO_LEN;
	e[2] = 0;			/* bus: ISA */
	e[3] = ACPI_PIT_IRQ;
	aml_le32(e + 4, ACPI_PIT_GSI);
	aml_le16(e + 8, 0);		/* conforms to the bus */
	e += ACPI_MADT_ISO_LEN;

	e[0] = ACPI_MADT_LAPIC_NMI;
	e[1] = ACPI_MADT_NMI_LEN;
	e[2] = ACPI_MADT_ALL_CPUS;
	aml_le16(e + 3, 0);		/* conforms to the bus */
	e[5] = 1;			/* LINT1 */

	acpi_checksum(t, len, ACPI_HDR_CHECKSUM);
}

/* Device(COM1): the 16550 UART at 0x3f8, ISA IRQ 4. */
static void acpi_dsdt_com1(struct aml *a)
{
	size_t dev, res;

	dev = aml_device_begin(a, "COM1");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_CRS");
	res = aml_restemplate_begin(a);
	aml_res_io(a, true, X86_SERIAL_PORT, X86_SERIAL_PORT, 0, 8);
	aml_res_irq_noflags(a, X86_SERIAL_GSI);
	aml_restemplate_end(a, res);
	aml_end(a, dev);
}

/* Device(Vnnn): one MMIO device with one edge-triggered interrupt. */
static void acpi_dsdt_device(struct aml *a, const struct acpi_device_desc *d, size_t index)
{
	char name[5] = { 'V', '0' + index / 100 % 10, '0' + index / 10 % 10,
			 '0' + index % 10, '\0' };
	size_t dev, res;

	dev = aml_device_begin(a, name);
	aml_name(a, "_HID");
	aml_string(a, d->hid);
	aml_name(a, "_UID");
	aml_integer(a, index);
	aml_name(a, "_CCA");
	aml_integer(a, 1);
	aml_name(a, "_CRS");
	res = aml_restemplate_begin(a);
	aml_res_mem32_fixed(a, true, d->mmio_base, d->mmio_size);
	aml_res_ext_irq(a, AML_IRQ_CONSUMER | AML_IRQ_EDGE, d->gsi);
	aml_restemplate_end(a, res);
	aml_end(a, dev);
}

/* Emits the DSDT's AML (everything after its header). */
static void acpi_dsdt_body(struct aml *a, const struct acpi_platform *p)
{
	size_t pkg, sb, i;

	/* \_S5_: SLP_TYP for the HW-reduced sleep control register. */
	aml_name(a, "\\_S5");
	pkg = aml_package_begin(a, 2);
	aml_integer(a, X86_ACPI_S5_SLP_TYP);
	aml_integer(a, 0);
	aml_end(a, pkg);

	sb = aml_scope_begin(a, "\\_SB");
	acpi_dsdt_com1(a);
	for (i = 0; i < p->ndevices; i++)
		acpi_dsdt_device(a, &p->devices[i], i);
	aml_end(a, sb);
}

ssize_t acpi_build_tables(const struct acpi_platform *p, void *buf, size_t size, uint64_t gpa)
{
	struct acpi_layout l;
	struct aml a;
	uint8_t *b = buf;
	size_t dsdt_len;
	uint64_t end;
	int err;

	err = acpi_check_platform(p);
	if (err)
		return err;
	if (!buf || gpa % ACPI_ALIGN || __builtin_add_overflow(gpa, size, &end))
		return -EINVAL;

	acpi_layout(p, &l);
	if (size < l.dsdt + ACPI_HDR_LEN)
		return -ENOSPC;
	memset(b, 0, l.dsdt + ACPI_HDR_LEN);

	aml_init(&a, b + l.dsdt + ACPI_HDR_LEN, size - l.dsdt - ACPI_HDR_LEN);
	acpi_dsdt_body(&a, p);
	err = aml_error(&a);
	if (err)
		return err;
	dsdt_len = ACPI_HDR_LEN + aml_len(&a);
	if (dsdt_len > UINT32_MAX)
		return -ENOSPC;
	acpi_header(b + l.dsdt, "DSDT", dsdt_len, ACPI_DSDT_REVISION);
	acpi_checksum(b + l.dsdt, dsdt_len, ACPI_HDR_CHECKSUM);

	acpi_build_madt(b + l.madt, p->ncpus);
	acpi_build_fadt(b + l.fadt, gpa + l.dsdt);
	acpi_build_xsdt(b + l.xsdt, gpa + l.fadt, gpa + l.madt);
	acpi_build_rsdp(b, gpa + l.xsdt);
	return l.dsdt + dsdt_len;
}
