/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One vhost device: a virtio device whose queues another party serves — the
 * host kernel (vhost-net, vhost-vsock) or a vhost-user process — while the VMM
 * keeps the device model and the transport. A struct vhost_dev plugs into the
 * device back-end seam (virtio/backend.h) as the device's struct
 * virtio_backend, and speaks to its back-end through a struct vhost_ops
 * table, one per back-end kind (vhost/kernel.c: ioctls on /dev/vhost-*; the
 * vhost-user front-end: messages on a socket). The model is QEMU's
 * include/hw/virtio/vhost.h over vhost-backend.h.
 *
 * Life of a device:
 *   init      SET_OWNER, GET_FEATURES (vhost_dev_init).
 *   DRIVER_OK the transport's set_features: SET_FEATURES with the negotiated
 *             bits the back-end serves, SET_MEM_TABLE from struct guest_mem
 *             (every region, each with its host mapping and its fd/offset).
 *   start(q)  SET_VRING_NUM, SET_VRING_BASE (the queue's last_avail_idx),
 *             SET_VRING_ADDR (ring addresses translated through guest_mem's
 *             checked helpers into the VMM's mappings), SET_VRING_KICK (the
 *             queue's KVM ioeventfd), SET_VRING_CALL (the device's KVM irqfd:
 *             the transport runs in its direct interrupt mode, virtio/mmio.h),
 *             SET_VRING_ENABLE where the kind has it, then the device kind's
 *             queue_started (vhost-net: NET_SET_BACKEND with the tap).
 *             vhost-user sends these back to back and reads their REPLY_ACK
 *             acks together (flush): one round trip per ring, not six.
 *   stop(q)   the kind's queue_stopping (vhost-net: NET_SET_BACKEND -1), ring
 *             disabled, GET_VRING_BASE (stops the ring and returns where it
 *             stopped: last_avail_idx), used->idx read from guest memory,
 *             kick and call unbound. So struct virtq_state holds the position
 *             and a restarted device continues where it stopped, on this
 *             back-end or any other.
 *
 * Feature negotiation: the VMM decides, the back-end never sees the guest
 * directly. Each device kind names the feature bits its back-end is in charge
 * of (backend_bits: vhost-net's MRG_RXBUF; the ring bits and VERSION_1 are
 * always the back-end's). For those bits the device offers only what the
 * back-end offered (GET_FEATURES); the other bits (config features, the tap's
 * offloads, ...) are the device model's. The transport intersects that with
 * the device model's own features, the guest acks a subset, and SET_FEATURES
 * gets acked & backend_bits & offered. Bits that are vhost's own business are
 * never offered to a guest nor sent as guest features (VHOST_PRIVATE_FEATURES):
 * VHOST_F_LOG_ALL (26, migration sets it itself), bit 27 (VIRTIO_F_ANY_LAYOUT
 * to the guest, VHOST_NET_F_VIRTIO_NET_HDR to vhost-net: set, vhost-net would
 * add and strip the header itself while the tap already does, IFF_VNET_HDR),
 * bit 30 (VHOST_USER_F_PROTOCOL_FEATURES, the vhost-user front-end handles it),
 * ACCESS_PLATFORM (33: no IOMMU; set, vhost would expect IOTLB messages) and
 * NOTIFY_ON_EMPTY (24, legacy only).
 *
 * Migration (the seam's migratable, log_start/log_stop, has_state,
 * save_state, load_state; virtio/backend.h):
 *   dirty log  log_start hands the back-end the shared dirty log
 *             (vmm/base/dirty.h: one bit per 4 KiB page of guest-physical
 *             address): SET_LOG_BASE (kernel: the log's address in the VMM;
 *             vhost-user: its memfd), then, if SET_FEATURES was sent,
 *             SET_FEATURES again with VHOST_F_LOG_ALL, and SET_VRING_ADDR
 *             again for every started ring with VHOST_VRING_F_LOG and the
 *             used ring's guest-physical address (so used-ring writes are
 *             logged too); then the kind's barrier (vhost-user without
 *             REPLY_ACK: GET_FEATURES). Until log_stop every later
 *             SET_FEATURES carries LOG_ALL and every ring starts with F_LOG;
 *             after a reconnect the log base is sent again first. log_stop
 *             sends features and rings again without them. QEMU's
 *             vhost_dev_set_log order. Refused (-EOPNOTSUPP, logged) when the
 *             back-end did not offer VHOST_F_LOG_ALL or its kind cannot share
 *             the log (vhost-user without LOG_SHMFD); -EINVAL when the log
 *             does not cover every RAM region (the kernel would write past it).
 *   state     kernel vhost has none beyond the rings' positions (migratable,
 *             has_state false); vhost-user: vhost/user.h.
 *
 * Config space: vhost_dev_get_config/set_config reach the back-end's config
 * (vhost-user-blk), and a back-end's "config changed" (vhost-user's
 * CONFIG_CHANGE_MSG) reaches the device through the notifier.
 *
 * Threads: the seam's start/stop/set_features run with the device lock held
 * (virtio/backend.h); vhost_ops calls are synchronous. Nothing here runs on
 * the data path: kicks and interrupts go between KVM and the back-end. The
 * migration ops expect the device lock too (log_start/log_stop change what a
 * start sends; save_state/load_state check that no ring runs); a state
 * transfer waits for the back-end (vhost-user: at most its state timeout per
 * silence), so it runs while the device is paused, never on a vCPU's access.
 */
#ifndef VHOST_VHOST_H
#define VHOST_VHOST_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/backend.h"
#include "virtio/virtq.h"
#include "vmm/base/dirty.h"
#include "vmm/base/guest_mem.h"

#define VHOST_MAX_RINGS		VIRTIO_BACKEND_MAX_QUEUES

/* Feature bits never offered to a guest nor passed on as guest features (see above). */
#define VHOST_PRIVATE_FEATURES \
	((1ULL << 24) | (1ULL << 26) | (1ULL << 27) | (1ULL << 30) | (1ULL << 33))

#define VHOST_F_LOG_ALL_BIT	26	/* VHOST_F_LOG_ALL: log every write to guest RAM */

/* Feature bits every vhost back-end is in charge of: it runs the rings. */
#define VHOST_RING_FEATURES \
	((1ULL << 28) /* INDIRECT_DESC */ | (1ULL << 29) /* EVENT_IDX */ | \
	 (1ULL << 32) /* VERSION_1 */)

/* One region of guest RAM as a back-end maps it. */
struct vhost_mem_region {
	uint64_t gpa;		/* guest-physical start */
	uint64_t size;		/* bytes */
	uint64_t hva;		/* the VMM's mapping (kernel vhost uses the VMM's address space) */
	int fd;			/* the memory's fd for a back-end in another process, or -1 */
	uint64_t fd_offset;	/* where the region starts in fd */
};

struct vhost_mem_table {
	unsigned int nregions;
	struct vhost_mem_region regions[GUEST_MEM_MAX_REGIONS];
};

/* A ring's addresses as vhost takes them: the VMM's mappings, plus the used ring's GPA (log). */
struct vhost_ring_addrs {
	uint64_t desc, avail, used;	/* host virtual addresses */
	uint64_t used_gpa;		/* for dirty logging (VHOST_VRING_F_LOG) */
	bool log;			/* VHOST_VRING_F_LOG: log used-ring writes at used_gpa */
};

struct vhost_dev;

/*
 * A back-end kind: how to say each vhost request to it. Every function returns
 * 0 or -errno. Ring indices are the back-end's (the device's queue index).
 */
struct vhost_ops {
	const char *name;	/* "kernel", "vhost-user" */
	int (*set_owner)(struct vhost_dev *dev);
	int (*get_features)(struct vhost_dev *dev, uint64_t *features);
	int (*set_features)(struct vhost_dev *dev, uint64_t features);
	int (*set_mem_table)(struct vhost_dev *dev, const struct vhost_mem_table *table);
	int (*set_vring_num)(struct vhost_dev *dev, unsigned int ring, unsigned int num);
	int (*set_vring_base)(struct vhost_dev *dev, unsigned int ring, uint16_t base);
	/* Stops the ring; *base gets the next avail index it would have taken. */
	int (*get_vring_base)(struct vhost_dev *dev, unsigned int ring, uint16_t *base);
	int (*set_vring_addr)(struct vhost_dev *dev, unsigned int ring,
			      const struct vhost_ring_addrs *addrs);
	/* fd -1 unbinds. */
	int (*set_vring_kick)(struct vhost_dev *dev, unsigned int ring, int fd);
	int (*set_vring_call)(struct vhost_dev *dev, unsigned int ring, int fd);
	/* Optional (vhost-user with PROTOCOL_FEATURES): a started ring processes only if enabled. */
	int (*set_vring_enable)(struct vhost_dev *dev, unsigned int ring, bool enable);
	/* Optional: the back-end's config space (vhost-user CONFIG). */
	int (*get_config)(struct vhost_dev *dev, uint32_t offset, void *buf, uint32_t len);
	int (*set_config)(struct vhost_dev *dev, uint32_t offset, const void *buf, uint32_t len);
	/* Optional (vhost-user): after the back-end died, connect and set up again; 0 or -errno. */
	int (*reconnect)(struct vhost_dev *dev);
	/* Optional: whether the back-end is reachable (absent: always). */
	bool (*connected)(const struct vhost_dev *dev);
	/* Optional: after a death, ring q's chains the back-end took and never returned (user.h). */
	int (*lost_chains)(struct vhost_dev *dev, unsigned int q, uint16_t used_idx,
			   uint16_t *heads, unsigned int max);
	/* Optional: the driver reset the device (in-flight tracking starts afresh). */
	void (*reset)(struct vhost_dev *dev);

	/* Optional, migration (see the top of this file and vhost/user.h). */
	/* The back-end logs its writes into log from now on (SET_LOG_BASE). Absent: cannot log. */
	int (*set_log_base)(struct vhost_dev *dev, const struct dirty_log *log);
	/* Whether the kind can share a log with this back-end: 0, or -EOPNOTSUPP with why. */
	int (*log_check)(struct vhost_dev *dev, char *why, size_t whylen);
	/* SET_FEATURES on a device already set up (LOG_ALL on or off); absent: set_features. */
	int (*update_features)(struct vhost_dev *dev, uint64_t features);
	/* Returns once the back-end has acted on every earlier request (absent: they are synchronous). */
	int (*sync)(struct vhost_dev *dev);
	/*
	 * Optional: the outcome of the requests whose answers were not awaited (vhost-user
	 * reads a ring's setup acks in one go): 0, or the first refusal since the last flush.
	 */
	int (*flush)(struct vhost_dev *dev);
	/* Whether the device can be migrated (absent: yes, positions only); -EOPNOTSUPP + why. */
	int (*migratable)(struct vhost_dev *dev, char *why, size_t whylen);
	/* Whether the back-end has internal state to save (absent: no). */
	bool (*has_state)(struct vhost_dev *dev);
	/* Streams the back-end's state into sink / from src; every ring stopped. 0 or -errno. */
	int (*save_state)(struct vhost_dev *dev, const struct virtio_state_sink *sink);
	int (*load_state)(struct vhost_dev *dev, const struct virtio_state_source *src);
	/* Optional: the back-end announces mac on its port (SEND_RARP); 0 or -EOPNOTSUPP. */
	int (*send_rarp)(struct vhost_dev *dev, const uint8_t mac[6]);
	/* Closes the connection (dev->conn) and frees what the kind allocated; the rings are stopped. */
	void (*cleanup)(struct vhost_dev *dev);
};

/* What a device kind (vhost-net, vhost-vsock, vhost-user-blk) adds around the rings. */
struct vhost_device_ops {
	const char *name;	/* for messages: "vhost-net" */
	/* Device feature bits the back-end is in charge of (the ring bits are added). */
	uint64_t backend_bits;
	/* Optional: ring q is set up and enabled (vhost-net: attach the tap). 0 or -errno. */
	int (*queue_started)(struct vhost_dev *dev, unsigned int q);
	/* Optional: ring q is about to stop (vhost-net: detach the tap). */
	void (*queue_stopping)(struct vhost_dev *dev, unsigned int q);
	/*
	 * Optional: ring q stopped at *s (used_idx read from guest memory) while a
	 * migration logs (dev->log set): for writes the back-end does not log itself
	 * (vhost-vsock's receive buffers, vhost/vsock.h).
	 */
	void (*queue_stopped)(struct vhost_dev *dev, unsigned int q, const struct virtq_state *s);
	/* Frees the device kind's struct that embeds dev, after vhost_dev_fini(). */
	void (*destroy)(struct vhost_dev *dev);
};

struct vhost_dev {
	struct virtio_backend be;		/* the seam; be.ops is vhost's */
	const struct vhost_ops *ops;
	void *conn;				/* the back-end kind's connection state */
	const struct vhost_device_ops *dev_ops;
	const struct guest_mem *mem;
	const char *name;			/* the device's, for messages */
	unsigned int nrings;
	uint64_t backend_features;		/* what GET_FEATURES offered */
	uint64_t acked_features;		/* what SET_FEATURES got last (without LOG_ALL) */
	bool features_sent;			/* SET_FEATURES since init or the last reconnect */
	/* Migration: the dirty log the back-end writes into (log_start..log_stop), or NULL. */
	struct dirty_log *log;
	bool log_base_sent;			/* this connection has log's SET_LOG_BASE */
	struct {
		bool started;
		uint64_t desc_gpa, used_gpa;
		uint16_t size;
		struct vhost_ring_addrs addrs;	/* what SET_VRING_ADDR got at the start */
	} rings[VHOST_MAX_RINGS];
	/* The back-end said its config changed (vhost_dev_config_changed); optional. */
	void (*config_notify)(void *opaque);
	void *config_opaque;
	/* The device model's events (virtio/backend.h), set through the seam's set_events. */
	const struct virtio_backend_events *events;
	void *events_opaque;
};

/*
 * Sets dev up over a connected back-end (ops, conn) for a device kind with
 * nrings rings: SET_OWNER and GET_FEATURES. A back-end without VERSION_1 is
 * refused (-EOPNOTSUPP): the virtio-mmio transport is modern only. 0 or
 * -errno; on failure the caller still owns conn.
 */
int vhost_dev_init(struct vhost_dev *dev, const struct vhost_ops *ops, void *conn,
		   const struct vhost_device_ops *dev_ops, const struct guest_mem *mem,
		   const char *name, unsigned int nrings);

/* Stops any started ring and closes the connection (ops->cleanup); safe to call twice. */
void vhost_dev_fini(struct vhost_dev *dev);

/*
 * The features the device may offer for its back-end: every bit outside the
 * back-end's charge (backend_bits | VHOST_RING_FEATURES), and those inside it
 * that the back-end offered; never VHOST_PRIVATE_FEATURES. The transport
 * intersects this with the device model's features.
 */
uint64_t vhost_dev_features(const struct vhost_dev *dev);

/* What SET_FEATURES gets for the guest's accepted features: the back-end's bits it offered. */
uint64_t vhost_dev_backend_ack(const struct vhost_dev *dev, uint64_t acked);

/* Builds the back-end's memory table from guest RAM: every region; 0 or -E2BIG. */
int vhost_mem_table_build(const struct guest_mem *mem, struct vhost_mem_table *table);

/* Reads the back-end's config space; -EOPNOTSUPP when its kind has none. */
int vhost_dev_get_config(struct vhost_dev *dev, uint32_t offset, void *buf, uint32_t len);

/* Writes the back-end's config space; -EOPNOTSUPP when its kind has none. */
int vhost_dev_set_config(struct vhost_dev *dev, uint32_t offset, const void *buf, uint32_t len);

/* Registers fn(opaque) to hear about the back-end's config changes (NULL: none). */
void vhost_dev_set_config_notifier(struct vhost_dev *dev, void (*fn)(void *opaque), void *opaque);

/* Called by a back-end kind when its back-end reports a config change. */
void vhost_dev_config_changed(struct vhost_dev *dev);

/*
 * Called by a back-end kind (from the event loop) when its back-end is gone:
 * the device model hears it through its events (virtio/backend.h) and takes
 * its queues back; vhost stops rings of a dead back-end without asking it,
 * each ring's position then being its used index (what the back-end
 * finished; an in-flight area or the device model accounts for the rest).
 */
void vhost_dev_disconnected(struct vhost_dev *dev, const char *why);

/*
 * Connects again to a back-end that died (ops->reconnect) and checks that it
 * still offers every feature the device acked: 0, -EOPNOTSUPP (no reconnect
 * for this kind, or fewer features: the connection is then closed) or the
 * connection's -errno (retry later). The rings start again at the device's
 * resume (set_features, then start per ring).
 */
int vhost_dev_reconnect(struct vhost_dev *dev);

#endif
