/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A fake virtio driver for the virtio unit tests: fake guest RAM, a
 * virtio_host whose KVM hooks accept everything, an event loop, and what a
 * guest driver does to a device: register accesses through virtio_mmio_io(),
 * feature negotiation, queue set-up and split rings in the fake RAM.
 *
 * One fake guest per test process (Criterion runs each test in its own), so
 * the guest is global: fake_driver_init() in a fixture's set-up,
 * fake_driver_fini() in its tear-down after the device is destroyed.
 * Functions that touch registers take the device; functions that only touch
 * the rings in guest memory take the queue index.
 *
 * Guest memory: queue q's rings live in the 64 KiB at FAKE_RING_GPA(q)
 * (descriptors, avail ring right after them, used ring at +32 KiB), and
 * alloc_buf() hands out buffers from FAKE_BUF_GPA up.
 */
#ifndef TESTS_UNIT_FAKE_DRIVER_H
#define TESTS_UNIT_FAKE_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/mmio.h"
#include "vmm/base/dirty.h"
#include "vmm/base/sbuf.h"

#define FAKE_RAM_SIZE		(4 << 20)
#define FAKE_RING_GPA(q)	(0x10000ULL + 0x10000ULL * (q))
#define FAKE_BUF_GPA		0x100000ULL

/* One descriptor of a chain: a guest buffer the device reads or (writable) writes. */
struct drv_seg {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

/* The host the device is created on; a test may replace .ioeventfd/.irqfd after init. */
extern struct virtio_host fake_host;

/* Zeroed guest RAM, the event loop and fake_host; the driver's rings get size entries. */
void fake_driver_init(uint16_t size);
/* The same with guest RAM in a shared memfd (for vhost-user back-ends). */
void fake_driver_init_shared(uint16_t size);
void fake_driver_fini(void);
/* The guest RAM and the event loop of fake_host. */
const struct guest_mem *fake_driver_mem(void);
struct event_loop *fake_driver_loop(void);

/* ---- Guest memory ---- */

void *gpa_ptr(uint64_t gpa);
/* A zeroed guest buffer of len bytes, 64-byte aligned; returns its address. */
uint64_t alloc_buf(size_t len);
/* Makes every buffer from alloc_buf() free for reuse. */
void free_bufs(void);

/* ---- Registers ---- */

uint32_t drv_rd(struct virtio_mmio_dev *d, uint64_t off);
void drv_wr(struct virtio_mmio_dev *d, uint64_t off, uint32_t v);
/* All 64 bits the device offers. */
uint64_t drv_device_features(struct virtio_mmio_dev *d);
/* ACKNOWLEDGE | DRIVER, writes features, sets FEATURES_OK; whether the device kept it. */
bool drv_negotiate(struct virtio_mmio_dev *d, uint64_t features);
/* The raw register writes that set up queue q at the given addresses and make it ready. */
void drv_queue_at(struct virtio_mmio_dev *d, unsigned int q, uint32_t size, uint64_t desc,
		  uint64_t avail, uint64_t used);
/* Sets up queue q with fresh rings at FAKE_RING_GPA(q); checks it is ready. */
void drv_setup_queue(struct virtio_mmio_dev *d, unsigned int q);
/* Negotiates VERSION_1 plus features, brings every queue of d up to DRIVER_OK, runs the kicks. */
void drv_start(struct virtio_mmio_dev *d, uint64_t features);
/* Notifies queue q through the QueueNotify register, then runs the kicks (drv_run_kicks). */
void drv_kick(struct virtio_mmio_dev *d, unsigned int q);
/*
 * Does what the event loop thread would do with d's kick eventfds: runs the
 * handlers of those that are readable, until none is. Other sources (a tap, a
 * pty) are left for the test to run by hand.
 */
void drv_run_kicks(struct virtio_mmio_dev *d);
/* Runs the event loop's ready sources once, waiting up to ms for one; how many ran. */
int drv_run_loop(int ms);
/*
 * Runs the event loop on its own thread, as the VMM does (devices served on
 * it need no drv_run_kicks), until drv_loop_stop(); fake_driver_fini stops it.
 */
void drv_loop_start(void);
void drv_loop_stop(void);

/* ---- Rings ---- */

/* Writes descriptor i of queue q as given. */
void drv_set_desc(unsigned int q, uint16_t i, uint64_t gpa, uint32_t len, uint16_t flags,
		  uint16_t next);
/* Publishes head as the next avail entry of queue q (whatever the descriptors hold). */
void drv_offer(unsigned int q, uint16_t head);
/* Makes a chain of segs available on queue q, in the next free descriptors; returns its head. */
uint16_t drv_add(unsigned int q, const struct drv_seg *segs, unsigned int nsegs);
/* Takes the next used element of queue q; false if there is none. */
bool drv_used(unsigned int q, uint32_t *id, uint32_t *len);
/*
 * Waits up to ms for the next used element of queue q, for back-ends that
 * complete on their own threads; false if none came in time.
 */
bool drv_wait_used(unsigned int q, uint32_t *id, uint32_t *len, int ms);
/* The driver's avail index of queue q: how many chains it has offered. */
uint16_t drv_avail_idx(unsigned int q);
/* The device's avail_event of queue q (VIRTIO_RING_F_EVENT_IDX). */
uint16_t drv_avail_event(unsigned int q);

/* ---- Migration ---- */

/*
 * Everything the driver can read of a device: the register window at the
 * selectors as they are, then for every queue selection (and as many feature
 * words), the config space, and each queue's state (the registers the driver
 * cannot read back). drv_read_all puts the selectors back.
 */
struct drv_regs {
	uint32_t now[VIRTIO_MMIO_CONFIG / 4];
	uint32_t sel[VIRTIO_MMIO_MAX_QUEUES + 1][VIRTIO_MMIO_CONFIG / 4];
	uint8_t config[VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG];
	struct virtq_state queues[VIRTIO_MMIO_MAX_QUEUES];
	unsigned int nqueues;
};
void drv_read_all(struct virtio_mmio_dev *d, struct drv_regs *r);
/* Asserts that two devices read the same in every register. */
void drv_expect_same_regs(const struct drv_regs *want, const struct drv_regs *got);

/* Pauses d (under its lock) and saves it into w, a new writer the caller frees. */
void drv_pause_save(struct virtio_mmio_dev *d, struct sbuf *w);
/* Loads data into d under its lock: virtio_mmio_load()'s result. */
int drv_load(struct virtio_mmio_dev *d, const void *data, size_t len);
/* virtio_mmio_resume() under d's lock, then runs the kicks (drv_run_kicks). */
void drv_resume(struct virtio_mmio_dev *d);
/*
 * Asserts that d (not running) refuses every truncation of state and state with
 * a byte more with -EBADMSG, and that each refusal left it as it was (its own save
 * is the same before and after).
 */
void drv_expect_truncations_refused(struct virtio_mmio_dev *d, const struct sbuf *state);

/* Installs l as the log of the VMM's writes to the fake RAM (guest_mem.dirty); NULL removes it. */
void fake_driver_log_dirty(struct dirty_log *l);
/* Whether page gpa >> 12 is marked in l (without clearing it). */
bool drv_page_dirty(const struct dirty_log *l, uint64_t gpa);
/* How many pages l has marked. */
uint64_t drv_dirty_pages(const struct dirty_log *l);
/* The used ring's guest address of queue q (its page is what a completion marks). */
uint64_t drv_used_gpa(unsigned int q);

/* Fills c with a chain over host buffers: out[] readable, then in[] writable (no guest RAM). */
void host_chain(struct virtq_chain *c, const struct iovec *out, unsigned int nout,
		const struct iovec *in, unsigned int nin);

#endif
