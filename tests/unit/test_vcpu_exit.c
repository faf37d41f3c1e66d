// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the vCPU exit decoder (vcpu_handle_exit in vmm/vcpu.c) fed
 * with fabricated struct kvm_run buffers and real io_bus objects whose
 * handlers record what they see.
 */
#include <criterion/criterion.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/base/io_bus.h"
#include "vmm/vcpu.h"

#define RUN_SIZE	8192
#define DATA_OFFSET	4096	/* where KVM puts PIO data: the second page of the mapping */
#define MAX_ACCESSES	16

struct access {
	uint64_t offset;
	uint32_t len;
	bool is_write;
	uint8_t data[8];
};

struct recorder {
	const char *name;
	unsigned int n;
	struct access a[MAX_ACCESSES];
};

/* Records each access; a read of access k returns bytes 0x10 * (k + 1) + i. */
static void record(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct recorder *r = opaque;
	struct access *a;

	cr_assert_lt(r->n, MAX_ACCESSES);
	cr_assert_leq(len, 8);
	a = &r->a[r->n];
	a->offset = offset;
	a->len = len;
	a->is_write = is_write;
	if (is_write) {
		memcpy(a->data, data, len);
	} else {
		for (uint32_t i = 0; i < len; i++)
			data[i] = a->data[i] = (uint8_t)(0x10 * (r->n + 1) + i);
	}
	r->n++;
}

static struct io_bus pio, mmio;
static struct recorder serial_rec = { .name = "serial" };
static struct recorder pio_shadow_rec = { .name = "pio shadow in mmio" };
static struct recorder virtio_rec = { .name = "virtio" };
static struct kvm_run *run;

static void setup(void)
{
	memset(&pio, 0, sizeof(pio));
	memset(&mmio, 0, sizeof(mmio));
	serial_rec.n = 0;
	pio_shadow_rec.n = 0;
	virtio_rec.n = 0;
	cr_assert_eq(io_bus_register(&pio, 0x3f8, 8, record, &serial_rec, "serial"), 0);
	/* The same numbers on the MMIO bus: port I/O must never land there. */
	cr_assert_eq(io_bus_register(&mmio, 0x3f8, 8, record, &pio_shadow_rec, "shadow"), 0);
	cr_assert_eq(io_bus_register(&mmio, 0xd0000000, 0x1000, record, &virtio_rec, "virtio"), 0);
	run = aligned_alloc(4096, RUN_SIZE);
	cr_assert_not_null(run);
	memset(run, 0, RUN_SIZE);
	cr_assert_leq(sizeof(*run), DATA_OFFSET);
}

static void teardown(void)
{
	io_bus_destroy(&pio);
	io_bus_destroy(&mmio);
	free(run);
}

TestSuite(vcpu_exit, .init = setup, .fini = teardown);

static enum vcpu_exit_action handle(void)
{
	return vcpu_handle_exit(run, &pio, &mmio, 0);
}

static uint8_t *pio_data(void)
{
	return (uint8_t *)run + DATA_OFFSET;
}

static void set_io(uint8_t direction, uint16_t port, uint8_t size, uint32_t count)
{
	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = direction;
	run->io.port = port;
	run->io.size = size;
	run->io.count = count;
	run->io.data_offset = DATA_OFFSET;
}

static void set_mmio(uint64_t addr, uint32_t len, bool is_write)
{
	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = addr;
	run->mmio.len = len;
	run->mmio.is_write = is_write;
}

/* ---- port I/O ---- */

Test(vcpu_exit, io_out_sizes)
{
	static const uint8_t bytes[4] = { 0xef, 0xbe, 0xad, 0xde };
	static const uint8_t sizes[] = { 1, 2, 4 };

	for (unsigned int i = 0; i < 3; i++) {
		memcpy(pio_data(), bytes, 4);
		set_io(KVM_EXIT_IO_OUT, 0x3f8, sizes[i], 1);
		cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
		cr_assert_eq(serial_rec.n, i + 1);
		cr_assert_eq(serial_rec.a[i].offset, 0);
		cr_assert_eq(serial_rec.a[i].len, sizes[i]);
		cr_assert(serial_rec.a[i].is_write);
		cr_assert_arr_eq(serial_rec.a[i].data, bytes, sizes[i]);
	}
	cr_assert_eq(pio_shadow_rec.n, 0, "port I/O went to the MMIO bus");
}

Test(vcpu_exit, io_in_sizes)
{
	static const uint8_t sizes[] = { 1, 2, 4 };

	for (unsigned int i = 0; i < 3; i++) {
		memset(pio_data(), 0, 8);
		set_io(KVM_EXIT_IO_IN, 0x3f9, sizes[i], 1);
		cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
		cr_assert_eq(serial_rec.n, i + 1);
		cr_assert_eq(serial_rec.a[i].offset, 1, "offset into the range");
		cr_assert_eq(serial_rec.a[i].len, sizes[i]);
		cr_assert_not(serial_rec.a[i].is_write);
		cr_assert_arr_eq(pio_data(), serial_rec.a[i].data, sizes[i]);
		cr_assert_eq(pio_data()[sizes[i]], 0, "wrote past the access");
	}
}

Test(vcpu_exit, string_out_advances_data_not_port)
{
	static const uint8_t bytes[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

	memcpy(pio_data(), bytes, sizeof(bytes));
	set_io(KVM_EXIT_IO_OUT, 0x3f9, 2, 6);	/* rep outsw, 6 words */
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(serial_rec.n, 6);
	for (unsigned int i = 0; i < 6; i++) {
		cr_assert_eq(serial_rec.a[i].offset, 1, "access %u at another port", i);
		cr_assert_eq(serial_rec.a[i].len, 2);
		cr_assert(serial_rec.a[i].is_write);
		cr_assert_arr_eq(serial_rec.a[i].data, bytes + 2 * i, 2, "access %u data", i);
	}
}

Test(vcpu_exit, string_in_fills_each_element)
{
	memset(pio_data(), 0, 32);
	set_io(KVM_EXIT_IO_IN, 0x3f8, 4, 3);	/* rep insd, 3 dwords */
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(serial_rec.n, 3);
	for (unsigned int i = 0; i < 3; i++) {
		cr_assert_eq(serial_rec.a[i].offset, 0);
		cr_assert_arr_eq(pio_data() + 4 * i, serial_rec.a[i].data, 4, "element %u", i);
	}
	cr_assert_eq(pio_data()[0], 0x10);
	cr_assert_eq(pio_data()[4], 0x20);
	cr_assert_eq(pio_data()[8], 0x30);
	cr_assert_eq(pio_data()[12], 0, "one element too many");
}

Test(vcpu_exit, string_in_bytes)
{
	memset(pio_data(), 0, 8);
	set_io(KVM_EXIT_IO_IN, 0x3ff, 1, 4);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(serial_rec.n, 4);
	cr_assert_eq(serial_rec.a[3].offset, 7);
	cr_assert_eq(pio_data()[0], 0x10);
	cr_assert_eq(pio_data()[1], 0x20);
	cr_assert_eq(pio_data()[2], 0x30);
	cr_assert_eq(pio_data()[3], 0x40);
	cr_assert_eq(pio_data()[4], 0);
}

Test(vcpu_exit, io_data_offset_respected)
{
	uint8_t *data = (uint8_t *)run + 0x1800;

	set_io(KVM_EXIT_IO_OUT, 0x3f8, 1, 1);
	run->io.data_offset = 0x1800;
	pio_data()[0] = 0x11;
	data[0] = 0x77;
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(serial_rec.n, 1);
	cr_assert_eq(serial_rec.a[0].data[0], 0x77);
}

Test(vcpu_exit, io_bad_size_ignored)
{
	static const uint8_t bad[] = { 0, 3, 8, 16, 255 };

	for (unsigned int i = 0; i < sizeof(bad); i++) {
		memset(pio_data(), 0x5a, 16);
		set_io(KVM_EXIT_IO_IN, 0x3f8, bad[i], 1);
		cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
		set_io(KVM_EXIT_IO_OUT, 0x3f8, bad[i], 2);
		cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
		cr_assert_eq(serial_rec.n, 0, "size %u dispatched", bad[i]);
		cr_assert_eq(pio_data()[0], 0x5a);
	}
}

Test(vcpu_exit, io_count_zero)
{
	set_io(KVM_EXIT_IO_OUT, 0x3f8, 1, 0);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(serial_rec.n, 0);
}

Test(vcpu_exit, io_unclaimed_port)
{
	memset(pio_data(), 0, 8);
	set_io(KVM_EXIT_IO_IN, 0x80, 2, 2);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	for (unsigned int i = 0; i < 4; i++)
		cr_assert_eq(pio_data()[i], 0xff, "byte %u", i);
	cr_assert_eq(pio_data()[4], 0);
	set_io(KVM_EXIT_IO_OUT, 0x80, 1, 1);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(serial_rec.n, 0);
}

Test(vcpu_exit, io_straddling_range_end)
{
	memset(pio_data(), 0, 8);
	set_io(KVM_EXIT_IO_IN, 0x3fe, 4, 1);	/* 0x3fe..0x401: past the UART */
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(serial_rec.n, 0);
	cr_assert_eq(pio_data()[0], 0xff);
}

/* ---- MMIO ---- */

Test(vcpu_exit, mmio_write)
{
	static const uint8_t bytes[8] = { 0x78, 0x56, 0x34, 0x12, 0xf0, 0xde, 0xbc, 0x9a };

	set_mmio(0xd0000070, 4, true);
	memcpy(run->mmio.data, bytes, 8);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(virtio_rec.n, 1);
	cr_assert_eq(virtio_rec.a[0].offset, 0x70);
	cr_assert_eq(virtio_rec.a[0].len, 4);
	cr_assert(virtio_rec.a[0].is_write);
	cr_assert_arr_eq(virtio_rec.a[0].data, bytes, 4);

	set_mmio(0xd0000ff8, 8, true);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(virtio_rec.n, 2);
	cr_assert_eq(virtio_rec.a[1].offset, 0xff8);
	cr_assert_eq(virtio_rec.a[1].len, 8);
	cr_assert_arr_eq(virtio_rec.a[1].data, bytes, 8);
}

Test(vcpu_exit, mmio_read)
{
	static const uint32_t lens[] = { 1, 2, 4, 8 };

	for (unsigned int i = 0; i < 4; i++) {
		memset(run->mmio.data, 0, 8);
		set_mmio(0xd0000100 + i, lens[i], false);
		cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
		cr_assert_eq(virtio_rec.n, i + 1);
		cr_assert_eq(virtio_rec.a[i].offset, 0x100 + i);
		cr_assert_eq(virtio_rec.a[i].len, lens[i]);
		cr_assert_not(virtio_rec.a[i].is_write);
		cr_assert_arr_eq(run->mmio.data, virtio_rec.a[i].data, lens[i]);
	}
	cr_assert_eq(serial_rec.n, 0);
}

Test(vcpu_exit, mmio_uses_mmio_bus)
{
	set_mmio(0x3f8, 1, true);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(pio_shadow_rec.n, 1);
	cr_assert_eq(serial_rec.n, 0, "MMIO went to the port bus");
}

Test(vcpu_exit, mmio_unclaimed_continues)
{
	memset(run->mmio.data, 0, 8);
	set_mmio(0xfed00000, 4, false);	/* HPET: nobody there */
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(run->mmio.data[0], 0xff);
	cr_assert_eq(run->mmio.data[3], 0xff);
	cr_assert_eq(run->mmio.data[4], 0);
	set_mmio(0xfed00000, 4, true);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	/* Straddling the end of a window is unclaimed too. */
	set_mmio(0xd0000ffc, 8, false);
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	cr_assert_eq(virtio_rec.n, 0);
	/* Many in a row (the warning is rate limited) still all continue. */
	for (int i = 0; i < 50; i++) {
		set_mmio(0x100000000ULL + (uint64_t)i * 8, 8, i & 1);
		cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	}
}

Test(vcpu_exit, mmio_bad_len_ignored)
{
	static const uint32_t bad[] = { 0, 9, 16, 0xffffffff };

	for (unsigned int i = 0; i < 4; i++) {
		memset(run->mmio.data, 0x5a, 8);
		set_mmio(0xd0000000, bad[i], false);
		cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
		set_mmio(0xd0000000, bad[i], true);
		cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
		cr_assert_eq(virtio_rec.n, 0, "len %u dispatched", bad[i]);
		cr_assert_eq(run->mmio.data[0], 0x5a);
		cr_assert_eq(run->mmio.data[7], 0x5a);
	}
}

/* ---- other exits ---- */

Test(vcpu_exit, hlt_and_interruptions_continue)
{
	run->exit_reason = KVM_EXIT_HLT;
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	run->exit_reason = KVM_EXIT_IRQ_WINDOW_OPEN;
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
	run->exit_reason = KVM_EXIT_INTR;
	cr_assert_eq(handle(), VCPU_EXIT_CONTINUE);
}

Test(vcpu_exit, shutdown_is_reset)
{
	run->exit_reason = KVM_EXIT_SHUTDOWN;
	cr_assert_eq(handle(), VCPU_EXIT_RESET);
}

Test(vcpu_exit, system_events)
{
	run->exit_reason = KVM_EXIT_SYSTEM_EVENT;
	run->system_event.type = KVM_SYSTEM_EVENT_SHUTDOWN;
	cr_assert_eq(handle(), VCPU_EXIT_POWEROFF);
	run->system_event.type = KVM_SYSTEM_EVENT_RESET;
	cr_assert_eq(handle(), VCPU_EXIT_RESET);
	run->system_event.type = KVM_SYSTEM_EVENT_CRASH;
	cr_assert_eq(handle(), VCPU_EXIT_FAIL);
	run->system_event.type = 0x1234;
	cr_assert_eq(handle(), VCPU_EXIT_FAIL);
}

Test(vcpu_exit, failures)
{
	run->exit_reason = KVM_EXIT_FAIL_ENTRY;
	run->fail_entry.hardware_entry_failure_reason = 0x80000021;
	cr_assert_eq(handle(), VCPU_EXIT_FAIL);

	memset(run, 0, sizeof(*run));
	run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
	run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
	cr_assert_eq(handle(), VCPU_EXIT_FAIL);
}

Test(vcpu_exit, unknown_reasons_fail)
{
	static const uint32_t reasons[] = {
		KVM_EXIT_UNKNOWN, KVM_EXIT_EXCEPTION, KVM_EXIT_DEBUG, KVM_EXIT_HYPERCALL,
		KVM_EXIT_TPR_ACCESS, KVM_EXIT_NMI, 9999, 0xffffffff,
	};

	for (unsigned int i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		run->exit_reason = reasons[i];
		cr_assert_eq(handle(), VCPU_EXIT_FAIL, "exit reason %u", reasons[i]);
	}
	cr_assert_eq(serial_rec.n + virtio_rec.n + pio_shadow_rec.n, 0);
}

Test(vcpu_exit, index_only_used_for_messages)
{
	run->exit_reason = KVM_EXIT_SHUTDOWN;
	cr_assert_eq(vcpu_handle_exit(run, &pio, &mmio, 254), VCPU_EXIT_RESET);
	pio_data()[0] = 'z';
	set_io(KVM_EXIT_IO_OUT, 0x3f8, 1, 1);
	cr_assert_eq(vcpu_handle_exit(run, &pio, &mmio, 7), VCPU_EXIT_CONTINUE);
	cr_assert_eq(serial_rec.a[0].data[0], 'z');
}
