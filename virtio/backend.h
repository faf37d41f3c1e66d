/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The device back-end seam: who owns what in a virtio device.
 *
 * The DEVICE MODEL (virtio/blk.c, net.c, ...) with its TRANSPORT
 * (virtio/mmio.c) owns the device as the driver sees it: config space, the
 * device features, the status and feature negotiation, InterruptStatus, and
 * each queue's configuration as the driver wrote it (a struct virtq_state:
 * size, ring addresses, ready). The transport checks the ring addresses when
 * the driver sets QueueReady, so guest errors are reported there.
 *
 * A BACK-END owns the data path of the device's queues: it pops chains,
 * does the I/O and pushes used elements. The transport hands it each ready
 * queue when the driver sets DRIVER_OK (start) and takes it back, with the
 * position the back-end reached, on a reset, on DEVICE_NEEDS_RESET and at
 * teardown (stop). A started queue is the back-end's alone: the transport
 * does not touch its rings until it stops it.
 *
 * Kicks: each queue has one kick eventfd, owned by the transport: KVM's
 * ioeventfd for QueueNotify, onto which the transport also writes the
 * QueueNotify writes that take the MMIO exit path, so there is one path. A
 * back-end waits on it: the in-process one on the event loop
 * (virtio/userspace.h), kernel vhost and vhost-user as their kick fd. Kicks
 * sent while no back-end watches stay counted in the eventfd; when queues
 * resume from saved positions (virtio_mmio_resume) the transport kicks each
 * once more, so chains the previous back-end left are not stranded.
 *
 * Calls: the back-end tells the driver about used buffers through the queue's
 * struct virtio_call, after applying the driver's suppression itself
 * (EVENT_IDX / VRING_AVAIL_F_NO_INTERRUPT), as vhost does. An in-process
 * back-end calls raise(), which goes through the transport's level-triggered
 * InterruptStatus logic. irq_fd is the device's KVM irqfd: a write to it
 * injects the interrupt without the VMM seeing it. Only a back-end whose ops
 * set signals_irqfd may write it (vhost hands it to the kernel or a vhost-user
 * process as the rings' call fd); for such a device the transport runs in its
 * direct interrupt mode, in which InterruptStatus reports a used buffer
 * whenever the device is live, so the Linux driver, which processes nothing
 * when it reads 0 (../shared/docs/vhost-reference.md D.2), looks at its
 * queues on every interrupt (virtio/mmio.h explains the mode). raise() stays
 * usable in that mode, e.g. for a queue the VMM keeps (vsock's event queue).
 *
 * Features: the transport offers the device model's features (plus its own
 * ring bits) intersected with what the back-end says it can do.
 *
 * Threads: the transport calls start/stop/set_features from vCPU threads
 * (register writes) or the VM's thread (teardown) with the device lock held;
 * raise() and error() expect the device lock held too (InterruptStatus and
 * the status are the transport's, shared with vCPU register accesses). The
 * userspace back-end runs its queue handlers on the event loop thread under
 * the same lock, so a stop never races with a handler. stop() may be called
 * from inside the back-end's own handler (error() sets DEVICE_NEEDS_RESET,
 * which stops every queue): after error() a handler must return without
 * touching the queue again. A back-end with worker threads (virtio-blk's)
 * must not do I/O under the lock: its workers take it only around raise(),
 * must not wait for it while a stop (which holds it) waits for them, and
 * report error() from a thread that stop() does not wait for (see
 * virtio/blk.h).
 */
#ifndef VIRTIO_BACKEND_H
#define VIRTIO_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "virtio/virtq.h"

#define VIRTIO_BACKEND_MAX_QUEUES	16

/* How a back-end gets the driver's attention for one queue; owned by the transport. */
struct virtio_call {
	/* The driver wants a used-buffer interrupt now. Device lock held. */
	void (*raise)(struct virtio_call *call);
	/* The queue is unusable (a guest error; why says what): DEVICE_NEEDS_RESET. Lock held. */
	void (*error)(struct virtio_call *call, const char *why);
	int irq_fd;		/* the device's KVM irqfd; only for ops->signals_irqfd (above) */
	/* Statistics: kick wake-ups an in-process back-end handled (a worker adds atomically). */
	uint64_t kicks;
};

struct virtio_backend;
struct event_loop;
struct guest_mem;
struct dirty_log;

/*
 * Where a back-end's internal state goes during a migration's save, one chunk
 * at a time (never the whole state in memory): chunk() takes 1..max bytes and
 * returns 0 or -errno (the save then fails with it).
 */
struct virtio_state_sink {
	int (*chunk)(void *opaque, const void *buf, size_t len);
	void *opaque;
	size_t max;		/* the largest chunk the sink takes */
};

/*
 * Where a back-end's internal state comes from during a load: chunk() fills up to
 * cap bytes and returns how many, 0 at the end of the state, or -errno.
 */
struct virtio_state_source {
	ssize_t (*chunk)(void *opaque, void *buf, size_t cap);
	void *opaque;
};

/*
 * What a back-end in another process (vhost-user) tells its device model,
 * from the event loop thread, without the device lock (the model takes it).
 */
struct virtio_backend_events {
	/* The back-end's config space changed: read it again, config interrupt. */
	void (*config_changed)(void *opaque);
	/*
	 * The back-end is gone (why: for messages). The model takes its queues back
	 * (pause or DEVICE_NEEDS_RESET) and decides: reconnect() later, or finish
	 * the guest's requests itself (lost_chains() names those the back-end held).
	 */
	void (*disconnected)(void *opaque, const char *why);
};

struct virtio_backend_ops {
	const char *name;	/* e.g. "userspace", "vhost-net" */
	/*
	 * The back-end signals the device's irqfd (virtio_call.irq_fd) itself, without
	 * raise(): the transport then uses its direct interrupt mode (virtio/mmio.h).
	 */
	bool signals_irqfd;
	/* Every feature bit (device, ring, VERSION_1) the back-end can serve. */
	uint64_t (*features)(struct virtio_backend *be);
	/* Optional: the features the driver accepted, at DRIVER_OK before a start; 0 or -errno. */
	int (*set_features)(struct virtio_backend *be, uint64_t features);
	/*
	 * Takes over queue q from *state (ring addresses, negotiated ring features, indices):
	 * watches kick_fd, signals through call. 0 or -errno (the device then needs a reset).
	 */
	int (*start)(struct virtio_backend *be, unsigned int q, const struct virtq_state *state,
		     int kick_fd, struct virtio_call *call);
	/* Stops queue q (no more ring access, kicks or calls); saves its position into *state. */
	void (*stop)(struct virtio_backend *be, unsigned int q, struct virtq_state *state);
	/* Frees the back-end; its queues are stopped. Called by the device that created it. */
	void (*destroy)(struct virtio_backend *be);

	/* The rest is optional: back-ends with a config space or a life of their own (vhost-user). */
	/* The back-end's config space [offset, offset + len) into buf; 0 or -errno. */
	int (*get_config)(struct virtio_backend *be, uint32_t offset, void *buf, uint32_t len);
	/* A driver's write of the config space; 0 or -errno. */
	int (*set_config)(struct virtio_backend *be, uint32_t offset, const void *buf, uint32_t len);
	/* Registers the model's events (NULL: none). */
	void (*set_events)(struct virtio_backend *be, const struct virtio_backend_events *ev,
			   void *opaque);
	/* After disconnected: one attempt to get the back-end back; 0 (then resume) or -errno. */
	int (*reconnect)(struct virtio_backend *be);
	/*
	 * After disconnected and a stop of queue q (whose used index is used_idx): the
	 * heads of chains the back-end took and never returned, in order, up to max;
	 * the count, or -EOPNOTSUPP if it cannot know (then: none beyond used_idx's).
	 */
	int (*lost_chains)(struct virtio_backend *be, unsigned int q, uint16_t used_idx,
			   uint16_t *heads, unsigned int max);
	/* The driver reset the device (queues stopped): forget per-run state. */
	void (*reset)(struct virtio_backend *be);

	/*
	 * Migration (all optional). A back-end without these has no state beyond its
	 * queues' positions (struct virtq_state) and writes guest RAM only through
	 * guest_mem_mark_dirty() (in-process) — or cannot be migrated at all, which
	 * migratable() says.
	 */
	/*
	 * Whether the device can be migrated with this back-end; -EOPNOTSUPP with a
	 * one-line reason in why when not (e.g. a vhost-user back-end that keeps state
	 * but cannot hand it over: no DEVICE_STATE). Asked before anything moves.
	 */
	int (*migratable)(struct virtio_backend *be, char *why, size_t whylen);
	/*
	 * Starts logging the back-end's writes to guest RAM into log (kernel vhost:
	 * VHOST_F_LOG_ALL + VHOST_SET_LOG_BASE; vhost-user: LOG_SHMFD's SET_LOG_BASE with
	 * log->fd, and the rings' VHOST_VRING_F_LOG); 0 or -errno. Any queue state.
	 */
	int (*log_start)(struct virtio_backend *be, struct dirty_log *log);
	/* Stops logging (the log may be destroyed after this returns). */
	void (*log_stop)(struct virtio_backend *be);
	/*
	 * Whether save_state() has something to send (vhost-user with DEVICE_STATE);
	 * false: the back-end is stateless beyond its queues.
	 */
	bool (*has_state)(struct virtio_backend *be);
	/*
	 * With every queue stopped (virtio_mmio_pause): streams the back-end's internal
	 * state into sink, chunk by chunk, until its end (vhost-user: SET_DEVICE_STATE_FD
	 * SAVE/STOPPED with a pipe, read to EOF, then CHECK_DEVICE_STATE). 0 or -errno
	 * (the back-end reported a failure, or the sink did).
	 */
	int (*save_state)(struct virtio_backend *be, const struct virtio_state_sink *sink);
	/*
	 * On the destination, features set and queues not started: feeds the state from
	 * source into the back-end (LOAD), then checks it (CHECK_DEVICE_STATE). 0 or -errno.
	 */
	int (*load_state)(struct virtio_backend *be, const struct virtio_state_source *src);
	/*
	 * Optional, net: after a migration, has the back-end announce the guest's MAC on
	 * its own port (vhost-user SEND_RARP). 0, or -EOPNOTSUPP when it cannot.
	 */
	int (*announce)(struct virtio_backend *be, const uint8_t mac[6]);
};

/* A back-end: embedded in its implementation's struct, which gets back with container_of(). */
struct virtio_backend {
	const struct virtio_backend_ops *ops;
};

/*
 * Data paths the VMM does not run itself (kernel vhost, vhost-user) for the
 * device models to ask for. The VM assembly supplies one (vhost/offload.h):
 * virtio/ cannot include vhost/. A constructor returns 0 with *out, a
 * back-end the device then owns (it calls its destroy), or -errno with a
 * one-line reason in why (-ENOENT, -EACCES, -EOPNOTSUPP: not usable here).
 */
/* What a device model asks of a vhost-user back-end (virtio_offload.user). */
struct virtio_offload_user {
	const char *path;		/* the back-end's unix socket */
	unsigned int max_queues;	/* queues the device model can have */
	/* Queues it has at least (a back-end without MQ is taken to serve these); 0: 1. */
	unsigned int base_queues;
	uint16_t queue_size;		/* its QueueNumMax: sizes the in-flight area (0: none) */
	uint64_t backend_bits;		/* device feature bits the back-end is in charge of */
	/*
	 * Migration: what the back-end keeps beyond its queues' positions that a
	 * migration must move, for messages (virtio-fs: the guest's open files), or
	 * NULL: nothing (blk, net). Such a device is migratable only with a back-end
	 * that negotiated DEVICE_STATE; state_hint (may be NULL) says which back-ends
	 * can. Static strings.
	 */
	const char *state, *state_hint;
	unsigned int queues;		/* out: how many the back-end serves (<= max_queues) */
};

struct virtio_offload {
	/* Kernel vhost-net for a virtio-net device over tap_fd (not owned; attached while running). */
	int (*net)(const struct virtio_offload *o, const struct guest_mem *mem, const char *name,
		   int tap_fd, struct virtio_backend **out, char *why, size_t whylen);
	/*
	 * Kernel vhost-vsock for a virtio-vsock device with guest context id cid: its
	 * receive (0) and transmit (1) queues; the event queue (2) stays with the VMM.
	 * -EADDRINUSE: another VM has the cid.
	 */
	int (*vsock)(const struct virtio_offload *o, const struct guest_mem *mem, const char *name,
		     uint64_t cid, struct virtio_backend **out, char *why, size_t whylen);
	/*
	 * A vhost-user back-end at u->path serving the device's queues (guest RAM must be
	 * shared: mem->fd >= 0), watched on loop; fills u->queues. -ENOENT /
	 * -ECONNREFUSED: nobody listens there.
	 */
	int (*user)(const struct virtio_offload *o, const struct guest_mem *mem, const char *name,
		    struct event_loop *loop, struct virtio_offload_user *u,
		    struct virtio_backend **out, char *why, size_t whylen);
};

#endif
