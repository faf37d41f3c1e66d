/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A small vhost-user front-end and virtio driver for unit tests of the
 * back-end library (vhost/vu_backend.h) and vmm-vhost-user-blk's device:
 * a socketpair, guest memory in a memfd (shared with the back-end through
 * SET_MEM_TABLE), split rings laid out in it, and a poll-based event loop
 * for the fds the library asks to watch. Single-threaded: vf_pump() runs the
 * back-end's side (vu_dispatch and ready watches).
 */
#ifndef TESTS_VU_FRONT_H
#define TESTS_VU_FRONT_H

#include <stdbool.h>
#include <stdint.h>

#include "vhost/user_proto.h"
#include "vhost/vu_backend.h"

#define VF_GPA		0x100000ULL	/* guest-physical base of the memory */
#define VF_QVA		0x7f0000000000ULL	/* the "front-end virtual address" of it */
#define VF_MEM_SIZE	(4ULL << 20)

struct vf_watch {
	int fd;
	uint32_t events;
	vu_watch_cb cb;
	void *data;
	bool on;
};

struct vf_ring {
	unsigned int index;
	uint16_t num;
	uint64_t desc, avail, used;	/* guest-physical */
	uint16_t avail_idx, last_used, next_desc;
	int kick, call, err;		/* eventfds (the test keeps its copies) */
};

struct vu_front {
	int fe, be;			/* the test's end, the back-end's end */
	int memfd;
	uint8_t *mem;			/* VF_MEM_SIZE bytes at VF_GPA */
	struct vu_dev *dev;		/* the back-end being driven */
	struct vf_watch w[40];
};

extern const struct vu_ops vf_ops;

/* Sets up the socketpair and the guest memory (zeroed); dev is attached later. */
void vf_init(struct vu_front *f);
/* Closes the test's fds and unmaps the memory (the back-end is the caller's to vu_fini first). */
void vf_fini(struct vu_front *f);
/* Number of open fds of the process. */
int vf_count_fds(void);

/* Host pointer to guest address gpa. */
void *vf_ptr(struct vu_front *f, uint64_t gpa);

/* Runs the back-end: vu_dispatch until -EAGAIN (returns its last result) and the ready watches. */
int vf_pump(struct vu_front *f);

/* Sends a request (then pumps the back-end); returns vf_pump's result or the send's -errno. */
int vf_send(struct vu_front *f, uint32_t req, uint32_t flags, const void *payload,
	    uint32_t size, const int *fds, unsigned int nfds);
/* Sends a request expecting a reply and receives it; 0 or -errno. */
int vf_call(struct vu_front *f, uint32_t req, uint32_t flags, const void *payload,
	    uint32_t size, const int *fds, unsigned int nfds, struct vhost_user_msg *reply);
/* Receives one message from the back-end (waits up to 1 s); 0 or -errno. */
int vf_recv(struct vu_front *f, struct vhost_user_msg *m);

/* Negotiates features (all offered but extra_off) and protocol features; sends the memory table. */
void vf_negotiate(struct vu_front *f, uint64_t extra_features, uint64_t protocol_mask);
/* Sends SET_MEM_TABLE with the whole memory as one region. */
int vf_set_mem(struct vu_front *f);

/* Lays out ring q (size num) at area (gpa) and sends NUM, ADDR, BASE (base), CALL, ERR, KICK. */
void vf_ring_setup(struct vu_front *f, struct vf_ring *r, unsigned int q, uint16_t num,
		   uint64_t area, uint16_t base);
/* Lays the ring out without messages (for a ring that already exists in guest memory). */
void vf_ring_layout(struct vf_ring *r, unsigned int q, uint16_t num, uint64_t area);
/* Sends the ring's NUM, ADDR, BASE (base), CALL, ERR and KICK messages with new eventfds. */
void vf_ring_send(struct vu_front *f, struct vf_ring *r, uint16_t base);

struct vf_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Adds a chain of n buffers, publishes it and kicks; returns its head. */
uint16_t vf_add(struct vu_front *f, struct vf_ring *r, const struct vf_buf *b, unsigned int n);
/* Waits (pumping the back-end) up to timeout_ms for the next used element. */
bool vf_used(struct vu_front *f, struct vf_ring *r, uint32_t *id, uint32_t *len, int timeout_ms);

#endif
