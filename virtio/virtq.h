/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Split virtqueues (VIRTIO 1.x §2.7) as seen by a device: popping descriptor
 * chains the driver made available, pushing used elements back, and
 * notification suppression (VIRTIO_F_EVENT_IDX, or the flags fields).
 *
 * Everything in the rings is guest input. virtq_pop() checks every
 * descriptor: index < queue size, no loops (at most `size` descriptors per
 * chain, and at most the indirect table's length inside it), an indirect table
 * that is 16-byte sized, non-empty, not nested and inside guest RAM, no
 * readable descriptor after a writable one, total lengths that do not
 * overflow 32 bits, and every buffer inside guest RAM (a buffer that spans two
 * RAM regions becomes two iovecs). An indirect descriptor may also end a chain
 * of direct ones (it cannot have NEXT), and its table may span adjacent
 * regions. Zero-length buffers are allowed and produce no iovec; the
 * readable-before-writable order is checked on the flags, so it applies to
 * them too. On any violation the queue is marked broken and every later
 * operation on it fails, so the transport can set DEVICE_NEEDS_RESET; the
 * device and the VMM keep running.
 */
#ifndef VIRTIO_VIRTQ_H
#define VIRTIO_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/base/guest_mem.h"

#define VIRTQ_MAX_SIZE		32768	/* largest queue size a split ring may have */
#define VIRTQ_MAX_IOV		1024	/* segments in one chain after splitting at region ends */
#define VIRTQ_MAX_INDIRECT	VIRTQ_MAX_SIZE	/* entries in one indirect table (16 bytes each) */

/*
 * A queue as plain data: what the driver configured and how far the device
 * got. The transport keeps one per queue (the driver's writes); a back-end
 * takes a queue over from it and gives it back with its position on stop, and
 * migration moves it between hosts. Published used elements only: a queue is
 * saved between requests (a back-end publishes what it added before it stops).
 */
struct virtq_state {
	uint16_t size;			/* power of two, 1..VIRTQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;			/* the driver set QueueReady (rings checked) */
	bool event_idx;			/* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;			/* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	uint16_t last_avail_idx;	/* next avail ring entry to pop */
	uint16_t used_idx;		/* used->idx as last published */
	uint16_t signalled_used;	/* used_idx at the last interrupt sent */
	bool signalled_used_valid;	/* false: the next notification check says yes */
};

struct virtq {
	/* Configured by the transport; the driver writes them while the queue is not ready. */
	uint16_t size;			/* power of two, 1..VIRTQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;
	bool event_idx;			/* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;			/* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	const struct guest_mem *mem;

	/* Device-side state. */
	uint16_t last_avail_idx;	/* next avail ring entry to pop */
	uint16_t used_idx;		/* used->idx as last published */
	uint16_t used_pending;		/* next used ring entry to fill (>= used_idx) */
	uint16_t signalled_used;	/* used_idx at the last interrupt we sent */
	bool signalled_used_valid;
	bool broken;			/* a guest error was found; see the header comment */

	/* Host pointers to the rings, set by virtq_start(). */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
};

/* One chain: readable ("out") segments first, then writable ("in") segments. */
struct virtq_chain {
	uint16_t head;			/* id to pass back to virtq_push() */
	unsigned int nout, nin;		/* iov[0..nout) readable, iov[nout..nout+nin) writable */
	uint32_t out_len, in_len;	/* total bytes of each kind */
	/* The guest RAM the iovecs point into (set by the pops), for dirty logging; NULL: none. */
	const struct guest_mem *mem;
	struct iovec iov[VIRTQ_MAX_IOV];
};

/* Resets a queue to its just-created state (size 0, not ready, not broken), keeping mem. */
void virtq_reset(struct virtq *vq, const struct guest_mem *mem);

/* Whether s's size and ring addresses are usable in mem, as virtq_start checks; 0 or -EINVAL. */
int virtq_check_rings(const struct guest_mem *mem, const struct virtq_state *s);

/*
 * Validates the ring addresses (alignment, inside guest RAM, size) and maps
 * the rings; called when the driver sets QueueReady. 0, or -EINVAL (nothing
 * changed; the queue stays not ready). On success the queue is ready and its
 * indices start at 0; a broken queue stays broken (only virtq_reset clears
 * it). Overlapping rings are not rejected: the device then overwrites what
 * the driver placed there, and later pops check whatever they find.
 */
int virtq_start(struct virtq *vq);

/*
 * Starts vq from a saved state, keeping its indices (last_avail_idx,
 * used_idx, signalled_used): the queue continues where the state left it, with
 * no chain lost or repeated. Checks the rings as virtq_start(); s must be
 * ready. 0, or -EINVAL with vq reset (not ready).
 */
int virtq_start_from(struct virtq *vq, const struct guest_mem *mem, const struct virtq_state *s);

/* Saves vq's configuration and position into *s (unpublished used elements are not included). */
void virtq_save(const struct virtq *vq, struct virtq_state *s);

/*
 * Takes the next available chain. Returns 1 with *chain filled, 0 if none is
 * available (or the queue is not ready), -EIO if the ring or chain is
 * malformed (the queue is then broken and logs a rate-limited warning).
 */
int virtq_pop(struct virtq *vq, struct virtq_chain *chain);

/*
 * Walks the chain that starts at head without reading or advancing the
 * avail ring, with virtq_pop()'s checks: for a request taken from the ring
 * earlier and resubmitted (a vhost-user back-end after a reconnect or a
 * state load). 1 with *chain filled, -EIO if head is out of range or the
 * chain is malformed (the queue is then broken), 0 if the queue is not ready.
 */
int virtq_pop_head(struct virtq *vq, uint16_t head, struct virtq_chain *chain);

/* Returns an unused chain to the front of the queue (e.g. no room to process it yet). */
void virtq_unpop(struct virtq *vq);

/*
 * Puts (head, written) in the used ring and publishes the new used index.
 * `written` is how many bytes the device wrote into the writable segments.
 * 0, or -EIO if the queue is broken or head is out of range.
 */
int virtq_push(struct virtq *vq, uint16_t head, uint32_t written);

/*
 * Fills the next used element without publishing it: several elements that
 * belong together (one frame over several mergeable rx buffers) become visible
 * to the driver at once with virtq_publish_used(). 0 or -EIO as virtq_push().
 */
int virtq_add_used(struct virtq *vq, uint16_t head, uint32_t written);

/* Publishes the used elements added since the last publication (release store of used->idx). */
void virtq_publish_used(struct virtq *vq);

/*
 * After pushes: whether the driver wants an interrupt now (EVENT_IDX's
 * used_event, or VRING_AVAIL_F_NO_INTERRUPT otherwise). With EVENT_IDX every
 * call records used_idx in signalled_used (true or false, as vhost and QEMU
 * do), so the next call asks about the entries pushed since this one.
 */
bool virtq_should_notify(struct virtq *vq);

/*
 * Asks the driver not to send kicks (false) or to send them again (true):
 * VRING_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX. After enabling,
 * the caller must check for more work (virtq_has_work) to close the race.
 */
void virtq_set_notify(struct virtq *vq, bool enable);

/* Whether chains are waiting in the avail ring. */
bool virtq_has_work(struct virtq *vq);

/*
 * Where both sides of a running ring stand, for diagnostics (a guest that
 * waits on a queue: did it offer requests the device has not taken, or did the
 * device publish completions without an interrupt the driver asked for?).
 * The guest's fields are read from its memory as they are now; the device's
 * are read without the ring's owner stopping (a racy but harmless snapshot).
 */
struct virtq_view {
	uint16_t avail_idx, avail_flags, used_event;	/* the driver's */
	uint16_t used_idx, avail_event, used_flags;	/* the device's, in guest memory */
	uint16_t last_avail_idx, signalled_used;	/* the device's own (if device_side) */
	bool event_idx;
	/*
	 * vq is the ring's owner's: its last_avail_idx and signalled_used are real.
	 * false: vq maps a ring somebody else serves (a vhost back-end), only the
	 * fields in guest memory mean something.
	 */
	bool device_side;
};

/* Fills v from a started queue (device_side true); false (v untouched) when it is not started. */
bool virtq_view(const struct virtq *vq, struct virtq_view *v);

/* Formats v on one line into buf ("offered 12, taken 10 (2 waiting), used 10, ..."). */
void virtq_view_format(const struct virtq_view *v, char *buf, size_t len);

/* Copies up to len bytes from the chain's readable segments, starting at offset; returns bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *dst, size_t len);

/*
 * Copies up to len bytes into the chain's writable segments, starting at offset;
 * returns bytes copied. The bytes written are marked dirty (virtq_chain_mark_written).
 */
size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *src, size_t len);

/*
 * ---- Dirty logging (live migration) ----
 * Every write of the VMM's own to guest RAM is recorded with guest_mem_mark_dirty()
 * while a migration logs (guest_mem.dirty), so the page is sent again. The rings'
 * writes are marked here: used elements and used->idx when they are published
 * (virtq_publish_used, virtq_push), used->flags and avail_event in
 * virtq_set_notify(). Buffers: virtq_chain_write() marks what it copies; a device
 * that fills a chain's writable segments another way (readv, getrandom, a disk
 * I/O engine) marks them with the functions below after the write, before it
 * pushes the chain. Each costs one atomic load when no migration logs.
 */

/* The chain's writable bytes [offset, offset + len) were written. No-op for c->mem NULL. */
void virtq_chain_mark_written(const struct virtq_chain *c, size_t offset, size_t len);

/*
 * [p, p + len), host addresses inside mem's regions (e.g. a chain's iovec, or its
 * status byte), were written; parts outside guest RAM are ignored.
 */
void virtq_mark_dirty_host(const struct guest_mem *mem, const void *p, size_t len);

/* The first len bytes of iov[0..n), host addresses inside mem's regions, were written. */
void virtq_mark_dirty_iov(const struct guest_mem *mem, const struct iovec *iov, unsigned int n,
			  size_t len);

#endif
