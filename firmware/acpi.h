/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ACPI tables for the x86-64 guest: RSDP -> XSDT -> FADT (HW-reduced),
 * MADT; FADT -> DSDT. The tables are generated from a description of the
 * platform so that what the guest reads matches what the VMM emulates.
 */
#ifndef FIRMWARE_ACPI_H
#define FIRMWARE_ACPI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ACPI_MAX_CPUS		255	/* xAPIC IDs 0..254; 0xff is broadcast */
#define ACPI_MAX_DEVICES	32
#define ACPI_HID_MAX_LEN	8	/* "LNRO0005"; _HID strings are 7 or 8 chars */

struct acpi_device_desc {
	const char *hid;	/* _HID, e.g. "LNRO0005" for virtio-mmio */
	uint64_t mmio_base;	/* Memory32Fixed window */
	uint32_t mmio_size;
	uint32_t gsi;		/* IOAPIC input; Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) */
};

struct acpi_platform {
	unsigned int ncpus;	/* 1..255; APIC IDs 0..ncpus-1 */
	const struct acpi_device_desc *devices;
	size_t ndevices;
};

/*
 * Builds RSDP (at offset 0), XSDT, FADT, MADT and DSDT into buf, which the guest sees at guest-physical gpa.
 * Returns the number of bytes used, -EINVAL for a bad platform, -ENOSPC if buf is too small.
 * gpa must be 16-byte aligned (the legacy RSDP scan steps by 16) and [gpa, gpa + size) must not wrap.
 * Devices must have a printable 1-8 char hid, a non-empty window below 4 GiB that overlaps no
 * other device's, and a GSI below 24 that is not 2 (PIT), 4 (COM1) or another device's.
 */
ssize_t acpi_build_tables(const struct acpi_platform *p, void *buf, size_t size, uint64_t gpa);

#endif
