// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for the devices' side of an incoming migration or a restore:
 * after the stream reader (fuzz_mig_stream) the destination loads each device's
 * saved state, virtio_mmio_load() with the model's ops->load (rng, net, console,
 * blk, vsock, fs, vhost-user-blk) and serial_load() for the 16550, and the device
 * then runs with the guest. The input is those hostile bytes.
 *
 * The first byte chooses the device and how the test drives it (kind and flags,
 * device_state_host.h); the rest is the saved state. Each input gets a new device,
 * created as the unit tests create theirs (device_state_host.c: guest RAM from a
 * heap buffer, a host whose KVM hooks accept everything, the userspace data paths
 * on an event loop run by hand, a stand-in for kernel vhost and vhost-user), and:
 *   - a refused load must return an error the contract names (virtio/mmio.h,
 *     vmm/serial.h) and leave the device exactly as it was (its own save is the
 *     same before and after, and no load is pending);
 *   - a successful load is resumed with guest RAM as a migration would leave it:
 *     the rings at the loaded addresses hold the loaded indexes, and with DS_F_OFFER
 *     new chains (DS_F_STALE: an avail index behind the device's). Then the driver's
 *     interrupt handler, a read of every register and of config space, more chains
 *     and a kick on every queue, so the queues run from the loaded positions (a
 *     dirty log on with DS_F_LOG); DS_F_ALT adds the kind's own event (a frame from
 *     the host network, a back-end that goes away);
 *   - what was loaded must save again and load back into the same device (the
 *     way back of a migration), then run on; DS_F_RESET ends with a driver reset
 *     and a fresh start.
 * The load leaves a virtio device paused with a load pending; after the resume a
 * live one runs with every ready queue on its back-end.
 * Then the device is destroyed. Nothing may crash, trip ASan/UBSan, leak memory
 * or an fd (counted around every input), or break one of the rules above (a trap).
 */
#include <dirent.h>
#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_mmio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device_state_host.h"

#define INPUT_MAX	(128u << 10)

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

/* Whether err is what the load's contract allows for a refused state. */
static bool allowed_refusal(const struct ds_dev *x, int err)
{
	switch (err) {
	case -EPROTONOSUPPORT:
	case -EBADMSG:
	case -EINVAL:
		return true;
	case -EOPNOTSUPP:
		/* The stand-in back-end's set_features refusal, passed on. */
		return x->stub && (x->flags & DS_F_ALT) && x->kind != DS_BLK_USER;
	default:
		return false;
	}
}

static bool same(const struct sbuf *a, const struct sbuf *b)
{
	return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

/* The device saves, and what it saved loads back into it (a migration back); traps if not. */
static void round_trip(struct ds_dev *x)
{
	struct sbuf w;
	int ret;

	sbuf_init_writer(&w);
	ret = ds_save(x, &w);
	if (ret == -EBUSY && x->kind == DS_BLK_USER && (x->flags & DS_F_ALT)) {
		/* Documented: a disk whose back-end is gone cannot move. */
		sbuf_free(&w);
		return;
	}
	if (ret || ds_load(x, w.data, w.len))
		__builtin_trap();
	sbuf_free(&w);
	ds_resume(x);
}

static void drive_serial(struct ds_dev *x)
{
	static const uint8_t input[] = "fuzz";
	uint8_t v;

	for (unsigned int reg = 0; reg < SERIAL_NREGS; reg++)
		serial_io(&x->serial, reg, &v, 1, false);
	serial_receive(&x->serial, input, sizeof(input));
	v = 0x0f;
	serial_io(&x->serial, 1, &v, 1, true);		/* IER: every interrupt */
	v = 'x';
	serial_io(&x->serial, 0, &v, 1, true);		/* THR (or DLL with DLAB) */
	for (unsigned int i = 0; i < 4; i++) {
		serial_io(&x->serial, 2, &v, 1, false);	/* IIR */
		serial_io(&x->serial, 0, &v, 1, false);	/* RBR */
		serial_io(&x->serial, 5, &v, 1, false);	/* LSR */
	}
	round_trip(x);
}

/* What the driver's interrupt handler and a curious driver do to every register. */
static void poke_registers(struct virtio_mmio_dev *d)
{
	uint32_t isr = ds_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS);
	uint8_t b;

	ds_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, isr);
	for (uint64_t off = 0; off < VIRTIO_MMIO_CONFIG; off += 4)
		ds_rd(d, off);
	for (unsigned int q = 0; q <= d->ops->nqueues; q++) {
		ds_wr(d, VIRTIO_MMIO_QUEUE_SEL, q);
		ds_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
		ds_rd(d, VIRTIO_MMIO_QUEUE_READY);
	}
	for (uint32_t i = 0; i < VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG; i++)
		virtio_mmio_io(d, VIRTIO_MMIO_CONFIG + i, &b, 1, false);
	ds_wr(d, VIRTIO_MMIO_STATUS, ds_rd(d, VIRTIO_MMIO_STATUS));
}

static const uint32_t blk_types[] = {
	VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
};

static void drive_virtio(struct ds_dev *x)
{
	struct virtio_mmio_dev *d = x->d;
	unsigned int nq = d->ops->nqueues;

	ds_log_dirty(x->flags & DS_F_LOG);
	/* Guest RAM as the migration left it: the rings hold the positions the device loaded. */
	for (unsigned int q = 0; q < nq; q++) {
		const struct virtq_state *s = &d->queues[q];

		if (!s->ready)
			continue;
		ds_set_ring_idx(d, q, (uint16_t)(s->last_avail_idx - !!(x->flags & DS_F_STALE)),
				s->used_idx);
		if (x->flags & DS_F_OFFER)
			ds_offer(d, q, 1 + q % 3, blk_types[q % 4]);
	}
	ds_resume(x);
	/* Live after the resume: running, every ready queue with its back-end (mmio.h). */
	if (virtio_mmio_is_active(d)) {
		if (!d->running)
			__builtin_trap();
		for (unsigned int q = 0; q < nq; q++)
			if (d->queues[q].ready && !d->q[q].started)
				__builtin_trap();
	}
	if (d->load_pending)
		__builtin_trap();
	if (x->kind == DS_NET && (x->flags & DS_F_ALT)) {
		uint8_t frame[12 + 60] = { [12] = 0xff, [13] = 0xff, [24] = 0x08 };

		if (write(x->peer, frame, sizeof(frame)) != sizeof(frame))
			abort();
	}
	ds_run_loop(16);
	poke_registers(d);
	for (unsigned int q = 0; q < nq; q++) {
		if (x->flags & DS_F_OFFER)
			ds_offer(d, q, 2, VIRTIO_BLK_T_IN);
		ds_kick(d, q);
	}
	if (x->kind == DS_BLK)
		ds_settle(d, 10);	/* the disk's workers answer on their own threads */
	if (x->kind == DS_BLK_USER && (x->flags & DS_F_ALT)) {
		ds_backend_gone(x);
		for (unsigned int q = 0; q < nq; q++)
			ds_kick(d, q);
	}
	round_trip(x);
	ds_run_loop(8);
	if (x->flags & DS_F_RESET) {
		ds_driver_start(d, ~0ULL);
		for (unsigned int q = 0; q < nq; q++) {
			ds_offer(d, q, 2, blk_types[q % 4]);
			ds_kick(d, q);
		}
		if (x->kind == DS_BLK)
			ds_settle(d, 10);
	}
	ds_log_dirty(false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbuf before, after;
	struct ds_dev x;
	int fds, ret;

	if (size < 1 || size > INPUT_MAX)
		return 0;
	ds_host_init();
	ds_ram_clear();
	fds = count_fds();
	if (ds_create(&x, data[0]))
		abort();	/* the machine, not the input */
	sbuf_init_writer(&before);
	if (ds_save(&x, &before))
		abort();

	ret = ds_load(&x, data + 1, size - 1);
	if (ret) {
		if (!allowed_refusal(&x, ret))
			__builtin_trap();
		/* Refused with nothing changed. */
		sbuf_init_writer(&after);
		if (ds_save(&x, &after) || !same(&before, &after) || (x.d && x.d->load_pending))
			__builtin_trap();
		sbuf_free(&after);
	} else if (x.d && (x.d->running || !x.d->load_pending)) {
		__builtin_trap();	/* loaded: paused until the resume */
	} else if (x.kind == DS_SERIAL) {
		drive_serial(&x);
	} else {
		drive_virtio(&x);
	}
	ds_destroy(&x);
	sbuf_free(&before);
	if (count_fds() != fds)
		abort();	/* an fd leaked */
	return 0;
}
