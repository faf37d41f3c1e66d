// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <string.h>

#include "firmware/acpi.h"
#include "firmware/x86_layout.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"
#include "vmm/x86/platform.h"
#include "vmm/x86/x86.h"

/* The _HID of each neutral device kind in the DSDT. */
static const char *const device_hid[] = {
	[ARCH_DEVICE_VIRTIO_MMIO] = "LNRO0005",
};

/* RAM up to the MMIO hole at 3 GiB, the rest from 4 GiB. */
unsigned int arch_ram_ranges(uint64_t mem_size, struct guest_mem_range out[GUEST_MEM_MAX_REGIONS])
{
	uint64_t low_max = X86_MMIO_HOLE_GPA;

	out[0] = (struct guest_mem_range){ 0, MIN(mem_size, low_max) };
	if (mem_size <= low_max)
		return 1;
	out[1] = (struct guest_mem_range){ X86_HIGH_RAM_GPA, mem_size - low_max };
	return 2;
}

int x86_acpi_sleep_request(uint8_t value)
{
	unsigned int slp_typ = (value >> X86_ACPI_SLP_TYP_SHIFT) & 0x7;

	if (!(value & X86_ACPI_SLP_EN))
		return 0;
	/* Only S5 (soft off) is offered in the DSDT; other sleep states are not supported. */
	return slp_typ == X86_ACPI_S5_SLP_TYP ? ARCH_STOP_POWEROFF : 0;
}

static void acpi_port_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct arch_vm *avm = opaque;
	uint16_t port = (uint16_t)(X86_ACPI_SLEEP_CTL_PORT + offset);

	if (!is_write) {
		memset(data, 0, len);	/* sleep status: nothing to report */
		return;
	}
	if (port == X86_ACPI_SLEEP_CTL_PORT) {
		int r = x86_acpi_sleep_request(data[0]);

		if (r)
			avm->stop(avm->stop_opaque, (enum arch_stop)r);
		else if (data[0] & X86_ACPI_SLP_EN)
			log_warn("the guest asked for ACPI sleep type %u, which is not offered; ignored",
				 (data[0] >> X86_ACPI_SLP_TYP_SHIFT) & 0x7);
	} else if (port == X86_ACPI_RESET_PORT && data[0] == X86_ACPI_RESET_VALUE) {
		log_info("the guest reset the machine through the ACPI reset register");
		avm->stop(avm->stop_opaque, ARCH_STOP_RESET);
	}
}

static void i8042_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct arch_vm *avm = opaque;

	if (!is_write) {
		/* Status 0: no data waiting, input buffer empty; so reboot code never waits. */
		memset(data, 0, len);
		return;
	}
	if (offset == X86_I8042_CMD_PORT - X86_I8042_DATA_PORT && data[0] == X86_I8042_CMD_RESET) {
		log_info("the guest reset the machine through the i8042 controller");
		avm->stop(avm->stop_opaque, ARCH_STOP_RESET);
	}
}

int arch_platform_init(struct arch_vm *avm, struct io_bus *pio, struct io_bus *mmio,
		       arch_stop_fn *stop, void *opaque)
{
	int ret;

	(void)mmio;
	avm->stop = stop;
	avm->stop_opaque = opaque;
	ret = io_bus_register(pio, X86_ACPI_SLEEP_CTL_PORT,
			      X86_ACPI_RESET_PORT - X86_ACPI_SLEEP_CTL_PORT + 1, acpi_port_io, avm,
			      "acpi-pm");
	if (!ret)
		ret = io_bus_register(pio, X86_I8042_DATA_PORT,
				      X86_I8042_CMD_PORT - X86_I8042_DATA_PORT + 1, i8042_io, avm,
				      "i8042");
	return ret;
}

struct arch_uart arch_uart_place(void)
{
	return (struct arch_uart){ .pio = true, .base = X86_SERIAL_PORT, .irq = X86_SERIAL_GSI };
}

unsigned int arch_virtio_max(void)
{
	/* One window each, and one IOAPIC pin each from X86_VIRTIO_FIRST_GSI up. */
	return MIN(X86_VIRTIO_MMIO_MAX, X86_IOAPIC_PINS - X86_VIRTIO_FIRST_GSI);
}

void arch_virtio_place(unsigned int n, uint64_t *base, uint32_t *gsi)
{
	*base = X86_VIRTIO_MMIO_GPA + n * X86_VIRTIO_MMIO_SIZE;
	*gsi = X86_VIRTIO_FIRST_GSI + n;
}

int arch_describe_platform(struct arch_vm *avm, const struct guest_mem *mem, unsigned int ncpus,
			   const struct arch_device *devs, size_t ndevs)
{
	struct acpi_device_desc desc[ACPI_MAX_DEVICES];
	struct acpi_platform platform = { .ncpus = ncpus, .devices = desc, .ndevices = ndevs };
	uint64_t size = X86_ACPI_END - X86_ACPI_GPA;
	void *buf = guest_mem_ptr(mem, X86_ACPI_GPA, size);
	ssize_t n = -EINVAL;

	(void)avm;
	/* The DSDT is generated from the device list, so it always matches the devices. */
	for (size_t i = 0; i < ndevs && i < ACPI_MAX_DEVICES; i++) {
		if ((unsigned int)devs[i].kind >= ARRAY_SIZE(device_hid) ||
		    devs[i].mmio_size > UINT32_MAX)
			goto fail;
		desc[i] = (struct acpi_device_desc){
			.hid = device_hid[devs[i].kind],
			.mmio_base = devs[i].mmio_base,
			.mmio_size = (uint32_t)devs[i].mmio_size,
			.gsi = devs[i].gsi,
		};
	}
	n = buf ? acpi_build_tables(&platform, buf, size, X86_ACPI_GPA) : -EFAULT;
	if (n >= 0)
		return 0;
fail:
	log_error("cannot build the ACPI tables: %s", strerror((int)-n));
	return (int)n;
}
