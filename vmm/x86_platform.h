/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The x86 platform's fixed I/O ports: the HW-reduced ACPI sleep control and
 * reset registers (poweroff, reboot) and the i8042 controller's reset line
 * (the kernel's reboot fallback).
 */
#ifndef VMM_X86_PLATFORM_H
#define VMM_X86_PLATFORM_H

#include "vmm/vm.h"

/* Registers the platform ports on vm->pio; 0 or -errno. */
int x86_platform_init(struct vm *vm);

/* What a write to the ACPI sleep control register asks for: VM_POWEROFF, or VM_RUNNING for nothing. */
enum vm_stop_reason x86_acpi_sleep_request(uint8_t value);

#endif
