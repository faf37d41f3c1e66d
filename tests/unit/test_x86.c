// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the pure parts of vmm/x86/ behind vmm/arch.h: the crash dump
 * line, virtio-mmio and 16550 placement, the RAM ranges, the platform ports
 * (ACPI sleep/reset, i8042) on a real io_bus, the ACPI description built from
 * the neutral device list, and the MSRs a vCPU's saved state holds.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "firmware/x86_layout.h"
#include "vmm/arch.h"
#include "vmm/base/io_bus.h"
#include "vmm/base/util.h"
#include "vmm/x86/platform.h"
#include "vmm/x86/vcpu.h"
#include "vmm/x86/x86.h"

/* ---- the crash dump line ---- */

Test(x86_vcpu_state, the_crash_line_names_what_a_triple_fault_report_needs)
{
	struct kvm_regs r = { .rip = 0xffffffff81000000ull, .rsp = 0xffffc90000003f00ull,
			      .rflags = 0x10046 };
	struct kvm_sregs s = { .cr0 = 0x80050033, .cr3 = 0x1000, .cr4 = 0x3706f0, .efer = 0xd01,
			       .cs = { .selector = 0x10 }, .gs = { .base = 0xdeadbeef00000000ull },
			       .idt = { .base = 0xfffffe0000000000ull, .limit = 0xfff } };
	char line[512];

	x86_vcpu_format_state(line, sizeof(line), &r, &s);
	cr_assert(strstr(line, "rip=0xffffffff81000000 "), "%s", line);
	cr_assert(strstr(line, "rsp=0xffffc90000003f00 "), "%s", line);
	cr_assert(strstr(line, "cr3=0x1000 "), "%s", line);
	cr_assert(strstr(line, "cs=0x10 "), "%s", line);
	cr_assert(strstr(line, "gs.base=0xdeadbeef00000000 "), "%s", line);
	cr_assert(strstr(line, "idt=0xfffffe0000000000/0xfff "), "%s", line);
	cr_assert(strstr(line, "efer=0xd01 "), "%s", line);
}

Test(x86_vcpu_state, the_reset_state_says_the_fault_state_is_lost)
{
	struct kvm_regs r = { .rip = 0xfff0, .rflags = 2 };
	struct kvm_sregs s = { .cs = { .selector = 0xf000, .base = 0xffff0000 } };
	char line[512];

	x86_vcpu_format_state(line, sizeof(line), &r, &s);
	cr_assert(strstr(line, "rip=0xfff0 "), "%s", line);
	cr_assert(strstr(line, "(the reset state: KVM on AMD reinitializes the vCPU at a triple "
			       "fault, so the state at the fault is lost)"), "%s", line);
	r.rip = 0xfff1;
	x86_vcpu_format_state(line, sizeof(line), &r, &s);
	cr_assert_null(strstr(line, "reset state"), "%s", line);
}

/* ---- the interrupt state a stuck guest's dump shows (SIGUSR2) ---- */

static void set_vector(struct kvm_lapic_state *l, unsigned int base, unsigned int v)
{
	uint32_t r;

	memcpy(&r, &l->regs[base + (v / 32) * 0x10], 4);
	r |= 1u << (v % 32);
	memcpy(&l->regs[base + (v / 32) * 0x10], &r, 4);
}

Test(x86_vcpu_state, the_irq_line_shows_vectors_in_service_and_requested)
{
	struct kvm_lapic_state l;
	struct kvm_vcpu_events ev;
	char line[512];
	uint32_t ppr = 0x20;

	memset(&l, 0, sizeof(l));
	memset(&ev, 0, sizeof(ev));
	set_vector(&l, 0x100, 0x22);	/* ISR: handled, never EOIed */
	set_vector(&l, 0x200, 0x22);	/* IRR: the same vector again, blocked behind it */
	set_vector(&l, 0x200, 0xec);
	memcpy(&l.regs[0xa0], &ppr, 4);
	x86_format_irq_state(line, sizeof(line), 0x246, KVM_MP_STATE_HALTED, &l, &ev);
	cr_assert(strstr(line, "interrupts enabled (IF=1), halted; "), "%s", line);
	cr_assert(strstr(line, "TPR 0, PPR 0x20, in service: 0x22; "), "%s", line);
	cr_assert(strstr(line, "requested: 0x22 0xec; level-triggered: none; "), "%s", line);
	cr_assert(strstr(line, "KVM injecting: nothing"), "%s", line);

	memset(&l, 0, sizeof(l));
	ev.interrupt.injected = 1;
	ev.interrupt.nr = 0x23;
	ev.interrupt.shadow = 1;
	x86_format_irq_state(line, sizeof(line), 0x46, KVM_MP_STATE_RUNNABLE, &l, &ev);
	cr_assert(strstr(line, "interrupts disabled (IF=0) in an interrupt shadow, runnable; "),
		  "%s", line);
	cr_assert(strstr(line, "in service: none; requested: none;"), "%s", line);
	cr_assert(strstr(line, "KVM injecting: interrupt 0x23"), "%s", line);
}

Test(x86_vcpu_state, the_ioapic_pin_line_says_masked_and_pending)
{
	struct kvm_ioapic_state io;
	char line[256];

	memset(&io, 0, sizeof(io));
	io.redirtbl[5].fields.vector = 0x22;
	io.redirtbl[5].fields.mask = 1;
	io.redirtbl[5].fields.dest_id = 1;
	io.irr = 1u << 5;
	x86_format_ioapic_pin(line, sizeof(line), &io, 5);
	cr_assert_str_eq(line, "IOAPIC pin 5: vector 0x22, edge-triggered, active high, MASKED, "
			       "remote IRR 0, line asserted, destination 0x1 (physical)");
	io.redirtbl[6].fields.trig_mode = 1;
	io.redirtbl[6].fields.remote_irr = 1;
	io.redirtbl[6].fields.polarity = 1;
	x86_format_ioapic_pin(line, sizeof(line), &io, 6);
	cr_assert(strstr(line, "level-triggered, active low, unmasked, remote IRR 1, line not "
			       "asserted"), "%s", line);
	char out[64];

	cr_assert_eq(arch_vm_dump_irq_line(-1, KVM_IOAPIC_NUM_PINS, out, sizeof(out)), -ERANGE);
}

Test(x86_vcpu_state, a_short_buffer_is_cut_not_overrun)
{
	struct kvm_regs r = { .rip = 1 };
	struct kvm_sregs s = { 0 };
	char line[16];

	memset(line, 'x', sizeof(line));
	x86_vcpu_format_state(line, 12, &r, &s);
	cr_assert_eq(strlen(line), 11);
	cr_assert_eq(line[12], 'x');
}

/* ---- placement ---- */

Test(x86_place, virtio_slots_are_consecutive_pages_and_gsis)
{
	uint64_t base;
	uint32_t gsi;

	cr_assert_eq(arch_virtio_max(), 19);	/* IOAPIC pins 5..23 */
	arch_virtio_place(0, &base, &gsi);
	cr_assert_eq(base, X86_VIRTIO_MMIO_GPA);
	cr_assert_eq(gsi, X86_VIRTIO_FIRST_GSI);
	arch_virtio_place(3, &base, &gsi);
	cr_assert_eq(base, X86_VIRTIO_MMIO_GPA + 3 * X86_VIRTIO_MMIO_SIZE);
	cr_assert_eq(gsi, X86_VIRTIO_FIRST_GSI + 3);
}

Test(x86_place, every_virtio_slot_fits_the_platform)
{
	uint64_t prev_end = 0;

	for (unsigned int i = 0; i < arch_virtio_max(); i++) {
		uint64_t base;
		uint32_t gsi;

		arch_virtio_place(i, &base, &gsi);
		cr_assert_geq(base, prev_end, "slot %u overlaps the one before", i);
		cr_assert_geq(base, X86_MMIO_HOLE_GPA);
		cr_assert_leq(base + X86_VIRTIO_MMIO_SIZE, X86_IOAPIC_GPA);
		cr_assert_lt(gsi, X86_IOAPIC_PINS);
		cr_assert_neq(gsi, X86_SERIAL_GSI);
		cr_assert_neq(gsi, 2);	/* the PIT's */
		prev_end = base + X86_VIRTIO_MMIO_SIZE;
	}
}

Test(x86_place, uart_is_com1)
{
	struct arch_uart u = arch_uart_place();

	cr_assert(u.pio);
	cr_assert_eq(u.base, 0x3f8);
	cr_assert_eq(u.irq, 4);
}

/* ---- the RAM ranges ---- */

Test(x86_ram_ranges, below_3g)
{
	struct guest_mem_range r[GUEST_MEM_MAX_REGIONS];

	cr_assert_eq(arch_ram_ranges(512 * MIB, r), 1);
	cr_assert_eq(r[0].gpa, 0);
	cr_assert_eq(r[0].size, 512 * MIB);
	cr_assert_eq(arch_ram_ranges(16 * MIB, r), 1);
	cr_assert_eq(r[0].size, 16 * MIB);
}

Test(x86_ram_ranges, exactly_3g)
{
	struct guest_mem_range r[GUEST_MEM_MAX_REGIONS];

	cr_assert_eq(arch_ram_ranges(3 * GIB, r), 1);
	cr_assert_eq(r[0].gpa, 0);
	cr_assert_eq(r[0].size, 3 * GIB);
}

Test(x86_ram_ranges, above_3g_skips_the_mmio_hole)
{
	struct guest_mem_range r[GUEST_MEM_MAX_REGIONS];

	cr_assert_eq(arch_ram_ranges(3 * GIB + 4096, r), 2);
	cr_assert_eq(r[0].gpa, 0);
	cr_assert_eq(r[0].size, X86_MMIO_HOLE_GPA);
	cr_assert_eq(r[1].gpa, 4 * GIB);
	cr_assert_eq(r[1].size, 4096);

	cr_assert_eq(arch_ram_ranges(8 * GIB, r), 2);
	cr_assert_eq(r[0].size, 3 * GIB);
	cr_assert_eq(r[1].gpa, X86_HIGH_RAM_GPA);
	cr_assert_eq(r[1].size, 5 * GIB);
	cr_assert_eq(r[0].size + r[1].size, 8 * GIB);
}

/*
 * RAM split around the 32-bit hole, as vm.c creates it: with shared=on each
 * region is its own slice of the memfd, so a vhost-user back-end mapping
 * region 1 at its fd_offset (3 GiB, not its guest address 4 GiB) sees what the
 * guest wrote there. Private RAM has the same layout and no fd. The memfd is
 * sparse: only the pages touched here are allocated.
 */
Test(x86_ram_ranges, split_ram_keeps_fd_offsets)
{
	static const enum guest_mem_backing kinds[] = { GUEST_MEM_MEMFD, GUEST_MEM_ANON };
	struct guest_mem_range r[GUEST_MEM_MAX_REGIONS];
	unsigned int n = arch_ram_ranges(3 * GIB + 2 * MIB, r);

	cr_assert_eq(n, 2);
	for (unsigned int k = 0; k < 2; k++) {
		struct guest_mem mem;
		uint8_t *peer;

		cr_assert_eq(guest_mem_init(&mem, r, n, kinds[k]), 0);
		cr_assert_eq(mem.regions[0].fd_offset, 0);
		cr_assert_eq(mem.regions[1].gpa, X86_HIGH_RAM_GPA);
		cr_assert_eq(mem.regions[1].fd_offset, 3 * GIB);
		cr_assert_eq(mem.regions[1].hva, mem.base + 3 * GIB);
		/* hva and gpa agree modulo 2 MiB, so KVM can use 2 MiB pages in both regions. */
		for (unsigned int i = 0; i < n; i++)
			cr_assert_eq(((uintptr_t)mem.regions[i].hva - mem.regions[i].gpa) % (2 * MIB), 0);
		*(uint8_t *)guest_mem_ptr(&mem, X86_HIGH_RAM_GPA + 0x10, 1) = 0x77;
		*(uint8_t *)guest_mem_ptr(&mem, X86_MMIO_HOLE_GPA - 1, 1) = 0x66;
		cr_assert_null(guest_mem_ptr(&mem, X86_MMIO_HOLE_GPA, 1));
		if (kinds[k] == GUEST_MEM_ANON) {
			cr_assert_eq(mem.fd, -1);
			guest_mem_destroy(&mem);
			continue;
		}
		cr_assert(mem.shared);
		peer = mmap(NULL, 2 * MIB, PROT_READ, MAP_SHARED, mem.fd,
			    (off_t)mem.regions[1].fd_offset);
		cr_assert_neq(peer, MAP_FAILED);
		cr_assert_eq(peer[0x10], 0x77);
		munmap(peer, 2 * MIB);
		peer = mmap(NULL, 4096, PROT_READ, MAP_SHARED, mem.fd,
			    (off_t)(mem.regions[0].fd_offset + mem.regions[0].size - 4096));
		cr_assert_neq(peer, MAP_FAILED);
		cr_assert_eq(peer[4095], 0x66);
		munmap(peer, 4096);
		guest_mem_destroy(&mem);
	}
}

/* ---- the platform ports ---- */

static struct {
	enum arch_stop why[8];
	unsigned int n;
} stops;

static void record_stop(void *opaque, enum arch_stop why)
{
	cr_assert_eq(opaque, &stops);
	stops.why[stops.n++] = why;
}

static struct io_bus pio, mmio;
static struct arch_vm avm;

static void platform_setup(void)
{
	memset(&stops, 0, sizeof(stops));
	memset(&pio, 0, sizeof(pio));
	memset(&mmio, 0, sizeof(mmio));
	memset(&avm, 0, sizeof(avm));
	cr_assert_eq(arch_platform_init(&avm, &pio, &mmio, record_stop, &stops), 0);
}

static void platform_teardown(void)
{
	io_bus_destroy(&pio);
	io_bus_destroy(&mmio);
}

static void outb(uint16_t port, uint8_t v)
{
	cr_assert(io_bus_access(&pio, port, &v, 1, true), "port %#x is not claimed", port);
}

Test(x86_platform, acpi_s5_powers_off, .init = platform_setup, .fini = platform_teardown)
{
	outb(X86_ACPI_SLEEP_CTL_PORT, X86_ACPI_S5_SLP_TYP << X86_ACPI_SLP_TYP_SHIFT |
				      X86_ACPI_SLP_EN);
	cr_assert_eq(stops.n, 1);
	cr_assert_eq(stops.why[0], ARCH_STOP_POWEROFF);
}

Test(x86_platform, other_sleep_requests_do_nothing, .init = platform_setup,
     .fini = platform_teardown)
{
	outb(X86_ACPI_SLEEP_CTL_PORT, 3 << X86_ACPI_SLP_TYP_SHIFT | X86_ACPI_SLP_EN);	/* S3 */
	/* S5 without SLP_EN */
	outb(X86_ACPI_SLEEP_CTL_PORT, X86_ACPI_S5_SLP_TYP << X86_ACPI_SLP_TYP_SHIFT);
	cr_assert_eq(stops.n, 0);
	cr_assert_eq(x86_acpi_sleep_request(X86_ACPI_S5_SLP_TYP << X86_ACPI_SLP_TYP_SHIFT |
					    X86_ACPI_SLP_EN), ARCH_STOP_POWEROFF);
	cr_assert_eq(x86_acpi_sleep_request(0), 0);
}

Test(x86_platform, acpi_and_i8042_reset, .init = platform_setup, .fini = platform_teardown)
{
	outb(X86_ACPI_RESET_PORT, X86_ACPI_RESET_VALUE);
	outb(X86_I8042_CMD_PORT, X86_I8042_CMD_RESET);
	outb(X86_I8042_CMD_PORT, 0xaa);	/* another command: nothing */
	cr_assert_eq(stops.n, 2);
	cr_assert_eq(stops.why[0], ARCH_STOP_RESET);
	cr_assert_eq(stops.why[1], ARCH_STOP_RESET);
}

Test(x86_platform, the_uart_port_is_left_to_the_core, .init = platform_setup,
     .fini = platform_teardown)
{
	cr_assert_null(io_bus_find(&pio, X86_SERIAL_PORT, 1));
	cr_assert_eq(mmio.nranges, 0);
}

/* ---- the ACPI description from the neutral device list ---- */

static uint8_t low_ram[1 << 20];

Test(x86_describe, acpi_tables_from_the_device_list)
{
	struct arch_device devs[19];
	struct guest_mem mem;

	guest_mem_init_from_buffer(&mem, low_ram, 0, sizeof(low_ram));
	for (unsigned int i = 0; i < arch_virtio_max(); i++) {
		devs[i] = (struct arch_device){ .kind = ARCH_DEVICE_VIRTIO_MMIO,
						.mmio_size = 0x200 };
		arch_virtio_place(i, &devs[i].mmio_base, &devs[i].gsi);
	}
	cr_assert_eq(arch_describe_platform(NULL, &mem, 4, devs, arch_virtio_max()), 0);
	cr_assert_eq(memcmp(low_ram + X86_ACPI_GPA, "RSD PTR ", 8), 0);
	cr_assert_not_null(memmem(low_ram + X86_ACPI_GPA, X86_ACPI_END - X86_ACPI_GPA,
				  "LNRO0005", 8), "no virtio-mmio device in the DSDT");
}

Test(x86_describe, bad_device_lists_are_refused)
{
	struct arch_device dev = { .kind = ARCH_DEVICE_VIRTIO_MMIO,
				   .mmio_base = X86_VIRTIO_MMIO_GPA, .mmio_size = 0x200,
				   .gsi = X86_SERIAL_GSI };
	struct guest_mem mem;

	guest_mem_init_from_buffer(&mem, low_ram, 0, sizeof(low_ram));
	cr_assert_lt(arch_describe_platform(NULL, &mem, 1, &dev, 1), 0);	/* COM1's GSI */
	dev.gsi = X86_VIRTIO_FIRST_GSI;
	dev.kind = (enum arch_device_kind)99;
	cr_assert_lt(arch_describe_platform(NULL, &mem, 1, &dev, 1), 0);
	/* No RAM where the tables go. */
	guest_mem_init_from_buffer(&mem, low_ram, 2 * MIB, sizeof(low_ram));
	dev.kind = ARCH_DEVICE_VIRTIO_MMIO;
	cr_assert_lt(arch_describe_platform(NULL, &mem, 1, &dev, 1), 0);
}

/* ---- the MSRs a vCPU's saved state holds ---- */

static int index_of(const uint32_t *list, unsigned int n, uint32_t msr)
{
	for (unsigned int i = 0; i < n; i++)
		if (list[i] == msr)
			return (int)i;
	return -1;
}

Test(x86_msrs, only_ours_that_kvm_has_in_restore_order)
{
	/* KVM's list in its own order, with MSRs we do not save and without some we would. */
	const uint32_t kvm[] = { 0x4b564d02, 0x6e0, 0xc0000082, 0x10, 0x4b564d06, 0x4b564d01,
				 0x12345678, 0x174, 0x1b, 0xc0000080 };
	uint32_t *out = calloc(x86_saved_msrs_max(), sizeof(*out));
	unsigned int n;

	cr_assert_not_null(out);
	n = x86_saved_msrs(kvm, ARRAY_SIZE(kvm), out);
	cr_assert_eq(n, 7);
	cr_assert_eq(index_of(out, n, 0x12345678), -1);
	cr_assert_eq(index_of(out, n, 0x1b), -1, "the APIC base travels in kvm_sregs");
	cr_assert_eq(index_of(out, n, 0xc0000080), -1, "EFER travels in kvm_sregs");
	cr_assert_eq(out[0], 0x10, "the TSC first");
	cr_assert_lt(index_of(out, n, 0x10), index_of(out, n, 0x4b564d01),
		     "TSC before kvmclock");
	cr_assert_lt(index_of(out, n, 0x4b564d06), index_of(out, n, 0x4b564d02),
		     "the async PF vector before async PF is enabled");
	cr_assert_eq(out[n - 1], 0x6e0, "TSC deadline last");
	cr_assert_eq(x86_saved_msrs(kvm, 0, out), 0);
	free(out);
}
