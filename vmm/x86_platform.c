// SPDX-License-Identifier: GPL-2.0-only
#include <string.h>

#include "firmware/x86_layout.h"
#include "vmm/base/log.h"
#include "vmm/x86_platform.h"

enum vm_stop_reason x86_acpi_sleep_request(uint8_t value)
{
	unsigned int slp_typ = (value >> X86_ACPI_SLP_TYP_SHIFT) & 0x7;

	if (!(value & X86_ACPI_SLP_EN))
		return VM_RUNNING;
	/* Only S5 (soft off) is offered in the DSDT; other sleep states are not supported. */
	return slp_typ == X86_ACPI_S5_SLP_TYP ? VM_POWEROFF : VM_RUNNING;
}

static void acpi_port_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct vm *vm = opaque;
	uint16_t port = (uint16_t)(X86_ACPI_SLEEP_CTL_PORT + offset);

	if (!is_write) {
		memset(data, 0, len);	/* sleep status: nothing to report */
		return;
	}
	if (port == X86_ACPI_SLEEP_CTL_PORT) {
		enum vm_stop_reason r = x86_acpi_sleep_request(data[0]);

		if (r != VM_RUNNING)
			vm_request_stop(vm, r);
		else if (data[0] & X86_ACPI_SLP_EN)
			log_warn("the guest asked for ACPI sleep type %u, which is not offered; ignored",
				 (data[0] >> X86_ACPI_SLP_TYP_SHIFT) & 0x7);
	} else if (port == X86_ACPI_RESET_PORT && data[0] == X86_ACPI_RESET_VALUE) {
		log_info("the guest reset the machine through the ACPI reset register");
		vm_request_stop(vm, VM_RESET);
	}
}

static void i8042_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct vm *vm = opaque;

	if (!is_write) {
		/* Status 0: no data waiting, input buffer empty; so reboot code never waits. */
		memset(data, 0, len);
		return;
	}
	if (offset == X86_I8042_CMD_PORT - X86_I8042_DATA_PORT && data[0] == X86_I8042_CMD_RESET) {
		log_info("the guest reset the machine through the i8042 controller");
		vm_request_stop(vm, VM_RESET);
	}
}

int x86_platform_init(struct vm *vm)
{
	int ret;

	ret = io_bus_register(&vm->pio, X86_ACPI_SLEEP_CTL_PORT,
			      X86_ACPI_RESET_PORT - X86_ACPI_SLEEP_CTL_PORT + 1, acpi_port_io, vm,
			      "acpi-pm");
	if (!ret)
		ret = io_bus_register(&vm->pio, X86_I8042_DATA_PORT,
				      X86_I8042_CMD_PORT - X86_I8042_DATA_PORT + 1, i8042_io, vm,
				      "i8042");
	return ret;
}
