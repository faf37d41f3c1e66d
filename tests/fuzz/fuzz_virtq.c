// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for split virtqueues (virtio/virtq.c): the input is a
 * guest. Its first HDR_SIZE bytes choose the queue (size, ring offsets,
 * negotiated features, one or two RAM regions) and a short script of device
 * operations; the rest is the image of GUEST_RAM bytes of guest RAM
 * (zero-filled when the input is shorter). Each region is its own heap
 * allocation of exactly its size, so ASan sees any access past a region.
 *
 * Besides "never crashes", the target checks what virtq_pop() promises: a
 * popped chain's head is < size, every iovec is non-empty and inside one
 * region, the segment counts and byte totals add up, and a failed pop leaves
 * the queue broken. A violation traps.
 *
 * Header (little-endian):
 *   0      queue size = 1 << (byte % 10)
 *   1      flags, see F_*
 *   2..7   desc, avail, used offsets modulo 2 * GUEST_RAM (so about half are
 *          RAM), 16/2/4-aligned unless F_RAW_OFFSETS; F_DESC_AT_END puts the
 *          descriptor table against the end of region 0 instead, so reading
 *          an entry past it is an ASan error
 *   8..9   size of region 0 when F_TWO_REGIONS (modulo GUEST_RAM; 0 means half)
 *   10..11 gap between the two regions when F_HOLE
 *   12..15 unused
 *   16..31 operations, one byte each: low 3 bits which, high 5 bits a parameter
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/virtio_ring.h>

#include "virtio/virtq.h"
#include "vmm/base/guest_mem.h"

#define GUEST_RAM	0x4000ULL	/* 16 KiB: rings of the largest size chosen (512) fit */
#define GUEST_GPA	0x10000ULL	/* RAM starts above 0, so small addresses are not RAM */
#define HDR_SIZE	32
#define NOPS		16
#define MAX_POPS	64		/* pops per input, to keep each run short */

#define F_EVENT_IDX	0x01
#define F_INDIRECT	0x02
#define F_TWO_REGIONS	0x04
#define F_HOLE		0x08
#define F_RAW_OFFSETS	0x10
#define F_DESC_AT_END	0x20		/* descriptor table ends where region 0 ends */

enum op {
	OP_POP_PUSH,		/* pop, read and write the chain, push it */
	OP_POP_HOLD,		/* pop and keep the chain (pushed by OP_PUSH_HELD) */
	OP_POP_UNPOP,		/* pop and give it back */
	OP_PUSH_HELD,		/* push the held chain, or a raw head from the parameter */
	OP_NOTIFY,		/* virtq_should_notify */
	OP_SET_NOTIFY,		/* virtq_set_notify(parameter & 1), then virtq_has_work */
	OP_DRIVER_KICK,		/* the driver publishes more: avail->idx += parameter */
	OP_DRAIN,		/* pop and push until empty or out of budget */
};

struct fuzz_guest {
	struct guest_mem mem;
	uint8_t *r[2];		/* host buffers of the regions */
	uint64_t rsize[2];
	struct virtq vq;
	struct virtq_chain chain;
	unsigned int pops;
	bool held;
	uint16_t held_head;
	uint8_t scratch[4096];
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static bool inside(const void *p, size_t len, const uint8_t *base, uint64_t size)
{
	const uint8_t *b = p;

	return b >= base && len <= size && (uint64_t)(b - base) <= size - len;
}

/* Checks what a successful pop promises; traps if it does not hold. */
static void check_chain(const struct fuzz_guest *g)
{
	const struct virtq_chain *c = &g->chain;
	uint64_t out = 0, in = 0;

	if (c->head >= g->vq.size || c->nout + c->nin > VIRTQ_MAX_IOV)
		__builtin_trap();
	for (unsigned int i = 0; i < c->nout + c->nin; i++) {
		const struct iovec *v = &c->iov[i];

		if (!v->iov_len)
			__builtin_trap();
		if (!inside(v->iov_base, v->iov_len, g->r[0], g->rsize[0]) &&
		    !(g->r[1] && inside(v->iov_base, v->iov_len, g->r[1], g->rsize[1])))
			__builtin_trap();
		if (i < c->nout)
			out += v->iov_len;
		else
			in += v->iov_len;
	}
	if (out != c->out_len || in != c->in_len)
		__builtin_trap();
}

static size_t expected_copy(uint32_t total, size_t offset, size_t len)
{
	if (offset >= total)
		return 0;
	return total - offset < len ? total - offset : len;
}

/* Pops one chain; on success checks it and exercises the copy helpers. */
static int pop(struct fuzz_guest *g, uint8_t param)
{
	int ret;
	size_t n;

	if (g->pops >= MAX_POPS)
		return 0;
	g->pops++;
	ret = virtq_pop(&g->vq, &g->chain);
	if (ret < 0) {
		if (ret != -EIO || !g->vq.broken || virtq_pop(&g->vq, &g->chain) != -EIO)
			__builtin_trap();
		return ret;
	}
	if (ret == 0)
		return 0;
	if (ret != 1)
		__builtin_trap();
	check_chain(g);

	/* Both copy helpers move min(total - offset, len) bytes, or none past the end. */
	n = virtq_chain_read(&g->chain, param, g->scratch, sizeof(g->scratch));
	if (n != expected_copy(g->chain.out_len, param, sizeof(g->scratch)))
		__builtin_trap();
	memset(g->scratch, param, sizeof(g->scratch));
	n = virtq_chain_write(&g->chain, param, g->scratch, sizeof(g->scratch));
	if (n != expected_copy(g->chain.in_len, param, sizeof(g->scratch)))
		__builtin_trap();
	return 1;
}

static void run_op(struct fuzz_guest *g, uint8_t byte)
{
	uint8_t param = byte >> 3;
	struct vring_avail *avail;

	switch ((enum op)(byte & 7)) {
	case OP_POP_PUSH:
		if (pop(g, param) == 1)
			virtq_push(&g->vq, g->chain.head, g->chain.in_len);
		break;
	case OP_POP_HOLD:
		if (!g->held && pop(g, param) == 1) {
			g->held = true;
			g->held_head = g->chain.head;
		}
		break;
	case OP_POP_UNPOP:
		if (pop(g, param) == 1)
			virtq_unpop(&g->vq);
		break;
	case OP_PUSH_HELD:
		if (g->held)
			virtq_push(&g->vq, g->held_head, param);
		else if (virtq_push(&g->vq, (uint16_t)(param * 37), 0) == 0 &&
			 param * 37 >= g->vq.size)
			__builtin_trap();
		g->held = false;
		break;
	case OP_NOTIFY:
		virtq_should_notify(&g->vq);
		break;
	case OP_SET_NOTIFY:
		virtq_set_notify(&g->vq, param & 1);
		virtq_has_work(&g->vq);
		break;
	case OP_DRIVER_KICK:
		if (!g->vq.ready)
			break;
		avail = g->vq.avail;
		avail->idx = htole16((uint16_t)(le16toh(avail->idx) + param));
		break;
	case OP_DRAIN:
		while (pop(g, param) == 1)
			virtq_push(&g->vq, g->chain.head, g->chain.in_len);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_guest g;	/* the chain's iovec array is 16 KiB */
	uint8_t hdr[HDR_SIZE] = { 0 };
	const uint8_t *img = data + (size < HDR_SIZE ? size : HDR_SIZE);
	size_t img_len = size > HDR_SIZE ? size - HDR_SIZE : 0;
	uint64_t split, gap = 0;
	uint8_t flags;

	memcpy(hdr, data, size < HDR_SIZE ? size : HDR_SIZE);
	if (img_len > GUEST_RAM)
		img_len = GUEST_RAM;
	flags = hdr[1];

	memset(&g.mem, 0, sizeof(g.mem));
	g.mem.fd = -1;
	split = GUEST_RAM;
	if (flags & F_TWO_REGIONS) {
		split = get16(hdr + 8) % GUEST_RAM;
		if (split == 0)
			split = GUEST_RAM / 2;
		if (flags & F_HOLE)
			gap = get16(hdr + 10);
	}
	g.rsize[0] = split;
	g.rsize[1] = GUEST_RAM - split;
	g.r[0] = malloc(g.rsize[0]);
	g.r[1] = g.rsize[1] ? malloc(g.rsize[1]) : NULL;
	if (!g.r[0] || (g.rsize[1] && !g.r[1]))
		goto out;
	memset(g.r[0], 0, g.rsize[0]);
	memcpy(g.r[0], img, img_len < split ? img_len : split);
	g.mem.regions[0] = (struct guest_region){ .gpa = GUEST_GPA, .size = split, .hva = g.r[0] };
	g.mem.nregions = 1;
	if (g.r[1]) {
		memset(g.r[1], 0, g.rsize[1]);
		if (img_len > split)
			memcpy(g.r[1], img + split, img_len - split);
		g.mem.regions[1] = (struct guest_region){ .gpa = GUEST_GPA + split + gap,
							  .size = g.rsize[1], .hva = g.r[1],
							  .fd_offset = split };
		g.mem.nregions = 2;
	}
	g.mem.size = GUEST_RAM;

	virtq_reset(&g.vq, &g.mem);
	g.vq.size = (uint16_t)(1u << (hdr[0] % 10));
	g.vq.desc_gpa = GUEST_GPA + get16(hdr + 2) % (2 * GUEST_RAM);
	g.vq.avail_gpa = GUEST_GPA + get16(hdr + 4) % (2 * GUEST_RAM);
	g.vq.used_gpa = GUEST_GPA + get16(hdr + 6) % (2 * GUEST_RAM);
	if (!(flags & F_RAW_OFFSETS)) {
		g.vq.desc_gpa &= ~15ULL;
		g.vq.avail_gpa &= ~1ULL;
		g.vq.used_gpa &= ~3ULL;
	}
	if ((flags & F_DESC_AT_END) && split >= 16ULL * g.vq.size)
		g.vq.desc_gpa = GUEST_GPA + split - 16ULL * g.vq.size;
	g.vq.event_idx = flags & F_EVENT_IDX;
	g.vq.indirect = flags & F_INDIRECT;
	g.pops = 0;
	g.held = false;

	if (virtq_start(&g.vq) == 0) {
		for (unsigned int i = 0; i < NOPS; i++)
			run_op(&g, hdr[16 + i]);
	} else if (g.vq.ready) {
		__builtin_trap();
	}
out:
	free(g.r[0]);
	free(g.r[1]);
	g.r[0] = g.r[1] = NULL;
	return 0;
}
