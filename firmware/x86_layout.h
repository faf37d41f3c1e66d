/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The x86-64 guest-physical address map and I/O port map that vmm presents.
 * Everything the guest reads as platform description (boot_params/e820,
 * ACPI) and everything the VMM traps is placed from these constants, so the
 * description and the devices can never disagree.
 *
 *   0x00000000 - 0x0009fbff  RAM (real-mode area; GDT, boot_params, page tables, cmdline)
 *   0x0009fc00 - 0x000fffff  reserved: EBDA, ACPI tables (RSDP at 0xe0000)
 *   0x00100000 - lowmem end  RAM (kernel at 1 MiB, initrd at the top)
 *   0xc0000000 - 0xffffffff  MMIO hole: virtio-mmio windows, IOAPIC, LAPIC
 *   0x100000000 -            RAM above 4 GiB when the guest has more than 3 GiB
 */
#ifndef FIRMWARE_X86_LAYOUT_H
#define FIRMWARE_X86_LAYOUT_H

/* Boot-time structures in low RAM. */
#define X86_GDT_GPA             0x500ULL
#define X86_IDT_GPA             0x520ULL
#define X86_BOOT_PARAMS_GPA     0x7000ULL       /* struct boot_params, "zero page" */
#define X86_PML4_GPA            0x9000ULL
#define X86_PDPT_GPA            0xa000ULL
#define X86_PD_GPA              0xb000ULL       /* 4 pages: identity map 4 GiB with 2 MiB pages */
#define X86_BOOT_STACK_GPA      0x8ff0ULL
#define X86_CMDLINE_GPA         0x20000ULL
#define X86_CMDLINE_MAX         0x10000ULL      /* bytes, including the NUL */

#define X86_EBDA_GPA            0x9fc00ULL
#define X86_LOW_RAM_END         X86_EBDA_GPA    /* RAM below 1 MiB ends here */

/* ACPI tables: RSDP first, then the other tables, all inside [start, end). */
#define X86_ACPI_GPA            0xe0000ULL
#define X86_ACPI_END            X86_RESET_VECTOR_GPA

/*
 * The real-mode reset vector (F000:FFF0). There is no BIOS: a few bytes there
 * write the ACPI reset register, so a kernel that falls back to a "BIOS"
 * reboot (Linux does on HW-reduced ACPI without EFI) still resets the VM.
 */
#define X86_RESET_VECTOR_GPA    0xffff0ULL

#define X86_HIMEM_GPA           0x100000ULL     /* bzImage protected-mode kernel */

/* The MMIO hole below 4 GiB. */
#define X86_MMIO_HOLE_GPA       0xc0000000ULL
#define X86_MMIO_HOLE_END       0x100000000ULL
#define X86_VIRTIO_MMIO_GPA     0xd0000000ULL   /* first virtio-mmio window */
#define X86_VIRTIO_MMIO_SIZE    0x1000ULL       /* one page per device */
#define X86_VIRTIO_MMIO_MAX     32              /* windows reserved in the map */
#define X86_IDENTITY_MAP_GPA    0xfeffc000ULL   /* KVM_SET_IDENTITY_MAP_ADDR (Intel only) */
#define X86_TSS_GPA             0xfeffd000ULL   /* KVM_SET_TSS_ADDR, 3 pages */
#define X86_IOAPIC_GPA          0xfec00000ULL
#define X86_LAPIC_GPA           0xfee00000ULL
#define X86_HIGH_RAM_GPA        X86_MMIO_HOLE_END

/* Interrupts: the in-kernel IOAPIC has 24 pins; virtio-mmio devices get GSIs 5..23. */
#define X86_IOAPIC_PINS         24
#define X86_SERIAL_GSI          4
#define X86_VIRTIO_FIRST_GSI    5

/* I/O ports. */
#define X86_SERIAL_PORT         0x3f8           /* COM1, 8 registers */
#define X86_I8042_DATA_PORT     0x60
#define X86_I8042_CMD_PORT      0x64            /* write 0xfe: pulse reset line */
#define X86_I8042_CMD_RESET     0xfe
/*
 * The HW-reduced ACPI sleep control/status and reset registers (FADT).
 * Writing (SLP_TYP << 2) | SLP_EN to the sleep control register with
 * SLP_TYP = X86_ACPI_S5_SLP_TYP powers the machine off; writing
 * X86_ACPI_RESET_VALUE to the reset register resets it.
 */
#define X86_ACPI_SLEEP_CTL_PORT 0x600
#define X86_ACPI_SLEEP_STS_PORT 0x601
#define X86_ACPI_RESET_PORT     0x602
#define X86_ACPI_RESET_VALUE    0x01
#define X86_ACPI_S5_SLP_TYP     5
#define X86_ACPI_SLP_EN         (1u << 5)
#define X86_ACPI_SLP_TYP_SHIFT  2

#endif
