// SPDX-License-Identifier: GPL-2.0-only
/*
 * Writes the seed inputs of fuzz_device_state into a directory (argument 1,
 * e.g. tests/fuzz/corpus/device_state): real devices, created and driven as the
 * target creates them (device_state_host.c), saved in several states each —
 * fresh, driver-ready with its queues, mid-stream (requests done, more waiting,
 * an interrupt not yet acknowledged), broken (DEVICE_NEEDS_RESET) and the
 * kind's own (a frame net holds for the guest, a readonly disk, a 16550 with
 * input waiting, in loopback, with its divisor latch open) — each file the
 * target's first byte (kind and flags) followed by the saved state. Built with
 * the fuzz targets (a clang build); run it again after changing a device's state
 * layout (where disk workers race the driver, a seed may differ from run to run):
 *
 *   FUZZ_OUT=/tmp/f tests/fuzz/run device_state     # the clang build in /tmp/f/build
 *   meson compile -C /tmp/f/build gen_seeds_device_state
 *   /tmp/f/build/tests/fuzz/gen_seeds_device_state tests/fuzz/corpus/device_state
 */
#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device_state_host.h"

static const char *out_dir;
static unsigned int written;

static const char *const kind_names[DS_NKINDS] = {
	[DS_RNG] = "rng", [DS_NET] = "net", [DS_CONSOLE] = "console", [DS_BLK] = "blk",
	[DS_VSOCK] = "vsock", [DS_FS] = "fs", [DS_BLK_USER] = "blk-user", [DS_SERIAL] = "serial",
};

static void fail(const char *what)
{
	fprintf(stderr, "gen_seeds_device_state: %s\n", what);
	exit(1);
}

/* Saves x and writes <kind>-<name> with first as its first byte. */
static void emit(struct ds_dev *x, uint8_t first, const char *name)
{
	char path[512];
	struct sbuf w;
	FILE *f;

	sbuf_init_writer(&w);
	if (ds_save(x, &w))
		fail("a device refused to save");
	snprintf(path, sizeof(path), "%s/%s-%s", out_dir, kind_names[ds_kind_of(first)], name);
	f = fopen(path, "wb");
	if (!f || fwrite(&first, 1, 1, f) != 1 || (w.len && fwrite(w.data, 1, w.len, f) != w.len) ||
	    fclose(f))
		fail("cannot write a seed");
	sbuf_free(&w);
	written++;
}

static void create(struct ds_dev *x, uint8_t first)
{
	ds_ram_clear();
	if (ds_create(x, first))
		fail("cannot create a device");
}

/* Offers n chains on every queue and kicks; waits for the userspace ones to be used. */
static void requests(struct ds_dev *x, unsigned int n, bool wait)
{
	struct virtio_mmio_dev *d = x->d;

	for (unsigned int q = 0; q < d->ops->nqueues; q++) {
		uint16_t used = d->queues[q].used_idx;

		ds_offer(d, q, n, q % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
		ds_kick(d, q);
		/* Queues that answer every chain: blk's, rng's, the transmit queues. */
		if (wait)
			ds_wait_used(d, q, (uint16_t)(used + n), 2000);
	}
	ds_run_loop(8);
}

static bool answers_all(const struct ds_dev *x, unsigned int q)
{
	switch (x->kind) {
	case DS_RNG:
	case DS_BLK:
		return true;
	case DS_NET:
	case DS_CONSOLE:
		return q == 1;	/* transmit */
	default:
		return false;
	}
}

/* A queue whose chains the VMM itself pops (where a malformed ring breaks the device). */
static unsigned int broken_queue(const struct ds_dev *x)
{
	return x->kind == DS_NET || x->kind == DS_CONSOLE ? 1 : 0;
}

static void virtio_seeds(enum ds_kind kind, uint8_t flags)
{
	const char *suffix = flags & DS_F_ALT ? "-alt" : "";
	uint8_t first = (uint8_t)kind | flags;
	struct ds_dev x;
	char name[64];

	create(&x, first);
	snprintf(name, sizeof(name), "fresh%s", suffix);
	emit(&x, first, name);
	ds_destroy(&x);

	create(&x, first);
	if (!ds_driver_start(x.d, ~0ULL) && !(flags & DS_F_ALT && x.stub))
		fail("the driver could not start a device");
	snprintf(name, sizeof(name), "ready%s", suffix);
	emit(&x, first | DS_F_RESET, name);
	ds_destroy(&x);

	create(&x, first);
	ds_driver_start(x.d, 1ULL << VIRTIO_F_VERSION_1);
	snprintf(name, sizeof(name), "ready-plain-rings%s", suffix);
	emit(&x, first | DS_F_OFFER, name);
	ds_destroy(&x);

	/* Mid-stream: requests done, an interrupt not acknowledged, more chains waiting. */
	create(&x, first);
	ds_driver_start(x.d, ~0ULL);
	for (unsigned int round = 0; round < 3; round++) {
		for (unsigned int q = 0; q < x.d->ops->nqueues; q++) {
			uint16_t used = 0;
			struct vring_used *u = ds_gpa(x.d->queues[q].used_gpa, 4);

			if (u)
				used = le16toh(u->idx);
			ds_offer(x.d, q, 2, round % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
			ds_kick(x.d, q);
			if (answers_all(&x, q))
				ds_wait_used(x.d, q, (uint16_t)(used + 2), 2000);
		}
	}
	for (unsigned int q = 0; q < x.d->ops->nqueues; q++)
		ds_offer(x.d, q, 1, VIRTIO_BLK_T_FLUSH);
	snprintf(name, sizeof(name), "mid-stream%s", suffix);
	emit(&x, first | DS_F_OFFER | DS_F_LOG, name);
	ds_destroy(&x);

	/*
	 * Broken: the driver published more chains than the ring holds, on a queue the VMM
	 * serves; where it serves none, the driver enabled a queue of 3 entries.
	 */
	create(&x, first);
	ds_driver_start(x.d, ~0ULL);
	requests(&x, 1, false);
	ds_set_ring_idx(x.d, broken_queue(&x), 0x8000, 0);
	ds_kick(x.d, broken_queue(&x));
	for (int t = 0; t < 1000 && !(ds_rd(x.d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	     t++) {
		ds_run_loop(4);
		usleep(1000);
	}
	if (!(ds_rd(x.d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)) {
		ds_wr(x.d, VIRTIO_MMIO_QUEUE_SEL, 0);
		ds_wr(x.d, VIRTIO_MMIO_QUEUE_READY, 0);
		ds_wr(x.d, VIRTIO_MMIO_QUEUE_NUM, 3);
		ds_wr(x.d, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	if (!(ds_rd(x.d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET))
		fail("a broken device does not need a reset");
	snprintf(name, sizeof(name), "needs-reset%s", suffix);
	emit(&x, first | DS_F_RESET, name);
	ds_destroy(&x);
}

static void net_held_frame(void)
{
	uint8_t first = DS_NET | DS_F_ALT;
	uint8_t frame[12 + 64] = { [12] = 0xff, [13] = 0xff, [14] = 0xff, [24] = 0x08 };
	struct ds_dev x;

	/* No receive buffers: the frame waits in the device for the guest. */
	create(&x, first);
	ds_driver_start(x.d, ~0ULL);
	if (write(x.peer, frame, sizeof(frame)) != sizeof(frame))
		fail("cannot send a frame");
	ds_run_loop(8);
	emit(&x, first | DS_F_OFFER, "held-frame");
	ds_destroy(&x);
}

static void serial_seeds(void)
{
	static const uint8_t hello[] = "hello from the source";
	struct ds_dev x;
	uint8_t v;

	create(&x, DS_SERIAL);
	emit(&x, DS_SERIAL, "fresh");
	ds_destroy(&x);

	/* Input waiting, every interrupt enabled, FIFOs on, a transmitted byte not yet seen. */
	create(&x, DS_SERIAL);
	v = 0x0f;
	serial_io(&x.serial, 1, &v, 1, true);
	v = 0xc1;
	serial_io(&x.serial, 2, &v, 1, true);
	v = 'x';
	serial_io(&x.serial, 0, &v, 1, true);
	serial_receive(&x.serial, hello, sizeof(hello));
	serial_io(&x.serial, 0, &v, 1, false);
	emit(&x, DS_SERIAL, "input-waiting");
	ds_destroy(&x);

	/* A full receive buffer. */
	create(&x, DS_SERIAL);
	for (unsigned int i = 0; i < 4; i++)
		serial_receive(&x.serial, hello, sizeof(hello));
	emit(&x, DS_SERIAL, "rx-full");
	ds_destroy(&x);

	/* Loopback with bytes looped back, modem lines up. */
	create(&x, DS_SERIAL);
	v = 0x1f;
	serial_io(&x.serial, 4, &v, 1, true);
	for (v = 'a'; v < 'e'; v++)
		serial_io(&x.serial, 0, &v, 1, true);
	emit(&x, DS_SERIAL, "loopback");
	ds_destroy(&x);

	/* The divisor latch open (115200 baud being set), scratch written. */
	create(&x, DS_SERIAL);
	v = 0x83;
	serial_io(&x.serial, 3, &v, 1, true);
	v = 1;
	serial_io(&x.serial, 0, &v, 1, true);
	v = 0;
	serial_io(&x.serial, 1, &v, 1, true);
	v = 0x5a;
	serial_io(&x.serial, 7, &v, 1, true);
	emit(&x, DS_SERIAL, "dlab");
	ds_destroy(&x);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR (e.g. tests/fuzz/corpus/device_state)\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];
	if (mkdir(out_dir, 0755) && errno != EEXIST)
		fail("cannot create the directory");
	ds_host_init();
	for (enum ds_kind k = 0; k < DS_SERIAL; k++)
		virtio_seeds(k, 0);
	virtio_seeds(DS_BLK, DS_F_ALT);		/* readonly, synchronous engine */
	virtio_seeds(DS_BLK_USER, DS_F_ALT);	/* the back-end goes away after the load */
	virtio_seeds(DS_VSOCK, DS_F_ALT);	/* the back-end refuses the driver's features */
	net_held_frame();
	serial_seeds();
	printf("gen_seeds_device_state: %u seeds in %s\n", written, out_dir);
	return 0;
}
