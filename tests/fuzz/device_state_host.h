/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The devices of fuzz_device_state and of its seed generator
 * (gen_seeds_device_state.c), created the way the unit tests create them
 * (tests/unit/fake_driver.c) but without Criterion: guest RAM from a heap
 * buffer, a struct virtio_host whose KVM hooks accept everything, an event
 * loop the caller runs by hand, and a stand-in for the data paths that live
 * outside the VMM (kernel vhost, vhost-user), so devices on those (vsock, fs,
 * vhost-user-blk) can be created too.
 *
 * The first byte of a fuzz input or seed says which device and how it is set
 * up: bits 0-2 the kind (enum ds_kind), bits 3-7 the flags below. The rest is
 * the device's saved state (virtio_mmio_save() or serial_save()).
 *
 * Guest RAM is DS_RAM_SIZE bytes at guest-physical 0. A driver set up here puts
 * queue q's rings in the 64 KiB at DS_RING_GPA(q) (descriptors, avail ring
 * right after them, used ring at +32 KiB) and the buffers of its chains at
 * DS_BUF_GPA(q, i).
 */
#ifndef TESTS_FUZZ_DEVICE_STATE_HOST_H
#define TESTS_FUZZ_DEVICE_STATE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/mmio.h"
#include "vmm/base/sbuf.h"
#include "vmm/serial.h"

#define DS_RAM_SIZE		(1u << 20)
#define DS_RING_GPA(q)		(0x10000ULL * ((q) + 1))
#define DS_USED_OFF		0x8000ULL
#define DS_BUF_GPA(q, i)	(0xa0000ULL + 0x4000ULL * (q) + 0x400ULL * ((i) % 16))
#define DS_CHAIN_IN		513	/* writable bytes of an offered chain (data + status) */

enum ds_kind {
	DS_RNG,
	DS_NET,		/* userspace data path over one end of a socketpair (no tap) */
	DS_CONSOLE,	/* output to /dev/null */
	DS_BLK,		/* a 1 MiB temporary image */
	DS_VSOCK,	/* rx/tx on the stand-in back-end, the event queue the VMM's */
	DS_FS,		/* 2 request queues on the stand-in back-end */
	DS_BLK_USER,	/* vhost-user-blk on the stand-in back-end, 2 queues */
	DS_SERIAL,	/* the 16550 */
	DS_NKINDS
};

/* Flags, bits 3-7 of the first byte. */
#define DS_F_LOG	0x08	/* a dirty log is installed while the device runs */
#define DS_F_OFFER	0x10	/* the driver offers chains on every ready queue before the resume */
#define DS_F_STALE	0x20	/* ... with the avail index behind the device's position */
#define DS_F_RESET	0x40	/* the driver resets the device and starts it again afterwards */
/*
 * Kind-specific: blk: readonly image and the synchronous engine; net: a frame
 * arrives from the host network; vsock, fs: the back-end refuses the driver's
 * features; vhost-user-blk: the back-end goes away after the resume.
 */
#define DS_F_ALT	0x80

static inline enum ds_kind ds_kind_of(uint8_t first)
{
	return (enum ds_kind)(first & 7);
}

struct ds_stub;

/* One device under test. */
struct ds_dev {
	enum ds_kind kind;
	uint8_t flags;
	struct virtio_mmio_dev *d;	/* every kind but DS_SERIAL */
	struct serial serial;		/* DS_SERIAL */
	int peer;			/* DS_NET: the host network's end of the socketpair */
	struct ds_stub *stub;		/* DS_VSOCK, DS_FS, DS_BLK_USER: their back-end */
};

/*
 * Sets up guest RAM, the event loop and the host once per process (later calls do
 * nothing); aborts if the machine cannot give them.
 */
void ds_host_init(void);

/* Zeroes guest RAM. */
void ds_ram_clear(void);

/* A host pointer for [gpa, gpa + len) of guest RAM, or NULL. */
void *ds_gpa(uint64_t gpa, uint64_t len);

/* Installs (true) or removes the dirty log of the VMM's writes to guest RAM. */
void ds_log_dirty(bool on);

/* Creates a device of the kind and flags in first (see the top); 0 or -errno. */
int ds_create(struct ds_dev *x, uint8_t first);

/* Tears the device down. */
void ds_destroy(struct ds_dev *x);

/* Pauses a virtio device (no-op for the 16550) and appends its state to w; 0 or -errno. */
int ds_save(struct ds_dev *x, struct sbuf *w);

/* Loads state into the device (virtio_mmio_load or serial_load); their result. */
int ds_load(struct ds_dev *x, const void *data, size_t len);

/* virtio_mmio_resume() under the device's lock; nothing for the 16550. */
void ds_resume(struct ds_dev *x);

/* The stand-in back-end of x (vsock, fs, vhost-user-blk) tells its device it is gone. */
void ds_backend_gone(struct ds_dev *x);

/* Runs the event loop's ready sources, up to rounds times or until none is ready. */
void ds_run_loop(int rounds);

/* ---- The driver ---- */

uint32_t ds_rd(struct virtio_mmio_dev *d, uint64_t off);
void ds_wr(struct virtio_mmio_dev *d, uint64_t off, uint32_t v);

/*
 * What a driver does to start the device: negotiates VERSION_1 plus the offered
 * features in `features`, sets up every queue at DS_RING_GPA(q) with QueueNumMax
 * entries (fresh rings), sets DRIVER_OK. Whether the device is live then.
 */
bool ds_driver_start(struct virtio_mmio_dev *d, uint64_t features);

/*
 * Makes n chains available on queue q as the driver would, after the avail index
 * the ring holds: each a 16-byte readable header (a virtio-blk request of `type`
 * for sector i; other devices ignore or drop it) then DS_CHAIN_IN writable bytes.
 * Uses d->queues[q]'s ring addresses; nothing if they are not usable.
 */
void ds_offer(struct virtio_mmio_dev *d, unsigned int q, unsigned int n, uint32_t type);

/* Sets queue q's avail and used indexes in guest RAM (a driver's rings as a migration left them). */
void ds_set_ring_idx(struct virtio_mmio_dev *d, unsigned int q, uint16_t avail, uint16_t used);

/* QueueNotify for queue q, then the event loop. */
void ds_kick(struct virtio_mmio_dev *d, unsigned int q);

/*
 * Runs the event loop until every ready queue's used index in guest RAM has caught
 * up with its avail index (for disk workers on their own threads), the device is no
 * longer live, or ms passed; whether it settled.
 */
bool ds_settle(struct virtio_mmio_dev *d, int ms);

/* Waits up to ms for queue q's used index in guest RAM to reach want; whether it did. */
bool ds_wait_used(struct virtio_mmio_dev *d, unsigned int q, uint16_t want, int ms);

#endif
