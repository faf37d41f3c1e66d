/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The x86 platform: the RAM layout, the fixed I/O ports (the HW-reduced ACPI
 * sleep control and reset registers for poweroff and reboot, the i8042
 * controller's reset line, the kernel's reboot fallback), where the 16550 and
 * the virtio-mmio windows go, and the ACPI tables that describe them. The
 * platform hooks of vmm/arch.h live here.
 */
#ifndef VMM_X86_PLATFORM_H
#define VMM_X86_PLATFORM_H

#include <stdint.h>

#include "vmm/arch.h"

/* What a write of value to the ACPI sleep control register asks for: ARCH_STOP_POWEROFF, or 0. */
int x86_acpi_sleep_request(uint8_t value);

#endif
