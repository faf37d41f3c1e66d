// SPDX-License-Identifier: GPL-2.0-only
/* One vhost device over a back-end kind's vhost_ops (see vhost/vhost.h). */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vhost/vhost.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

static struct log_ratelimit vhost_rl = LOG_RATELIMIT_INIT;

static struct vhost_dev *to_vhost(struct virtio_backend *be)
{
	return container_of(be, struct vhost_dev, be);
}

/* The bits the back-end is in charge of. */
static uint64_t vhost_backend_bits(const struct vhost_dev *dev)
{
	return (dev->dev_ops->backend_bits | VHOST_RING_FEATURES) & ~VHOST_PRIVATE_FEATURES;
}

uint64_t vhost_dev_features(const struct vhost_dev *dev)
{
	uint64_t charge = vhost_backend_bits(dev);

	return ((~charge) | (charge & dev->backend_features)) & ~VHOST_PRIVATE_FEATURES;
}

uint64_t vhost_dev_backend_ack(const struct vhost_dev *dev, uint64_t acked)
{
	return acked & vhost_backend_bits(dev) & dev->backend_features;
}

int vhost_mem_table_build(const struct guest_mem *mem, struct vhost_mem_table *table)
{
	if (mem->nregions > ARRAY_SIZE(table->regions))
		return -E2BIG;
	table->nregions = mem->nregions;
	for (unsigned int i = 0; i < mem->nregions; i++) {
		const struct guest_region *r = &mem->regions[i];

		table->regions[i] = (struct vhost_mem_region){
			.gpa = r->gpa,
			.size = r->size,
			.hva = (uint64_t)(uintptr_t)r->hva,
			.fd = mem->fd,
			.fd_offset = r->fd_offset,
		};
	}
	return 0;
}

/* ---- the device back-end seam ---- */

static uint64_t vhost_be_features(struct virtio_backend *be)
{
	return vhost_dev_features(to_vhost(be));
}

/* What SET_FEATURES sends for the acked features f: with LOG_ALL while logging. */
static uint64_t vhost_wire_features(const struct vhost_dev *dev, uint64_t f)
{
	return dev->log ? f | (1ULL << VHOST_F_LOG_ALL_BIT) : f;
}

/* Hands the log to the back-end if this connection does not have it yet. */
static int vhost_send_log_base(struct vhost_dev *dev)
{
	int ret;

	if (!dev->log || dev->log_base_sent)
		return 0;
	ret = dev->ops->set_log_base ? dev->ops->set_log_base(dev, dev->log) : -EOPNOTSUPP;
	if (ret) {
		log_warn_ratelimited(&vhost_rl, "%s: %s back-end refuses the dirty log (SET_LOG_BASE): "
				     "%s", dev->name, dev->dev_ops->name, strerror(-ret));
		return ret;
	}
	dev->log_base_sent = true;
	return 0;
}

/* DRIVER_OK (or a resume): the negotiated features and the memory table. */
static int vhost_be_set_features(struct virtio_backend *be, uint64_t acked)
{
	struct vhost_dev *dev = to_vhost(be);
	struct vhost_mem_table table;
	uint64_t f = vhost_dev_backend_ack(dev, acked);
	int ret;

	/* A migration's log first: the kernel checks it when LOG_ALL arrives. */
	ret = vhost_send_log_base(dev);
	if (ret)
		return ret;
	ret = dev->ops->set_features(dev, vhost_wire_features(dev, f));
	if (ret) {
		log_warn_ratelimited(&vhost_rl, "%s: %s back-end refuses features %#llx: %s",
				     dev->name, dev->dev_ops->name,
				     (unsigned long long)vhost_wire_features(dev, f), strerror(-ret));
		return ret;
	}
	dev->acked_features = f;
	dev->features_sent = true;
	ret = vhost_mem_table_build(dev->mem, &table);
	if (!ret)
		ret = dev->ops->set_mem_table(dev, &table);
	if (ret)
		log_warn_ratelimited(&vhost_rl, "%s: %s back-end refuses the memory table (%u "
				     "regions): %s", dev->name, dev->dev_ops->name,
				     dev->mem->nregions, strerror(-ret));
	return ret;
}

/* The ring's addresses in the VMM's mappings; -EINVAL if a ring is not inside one RAM region. */
static int vhost_ring_addrs(const struct guest_mem *mem, const struct virtq_state *s,
			    struct vhost_ring_addrs *a)
{
	/* The split ring's sizes with EVENT_IDX's trailing fields (VIRTIO 1.x §2.7). */
	void *desc = guest_mem_ptr(mem, s->desc_gpa, 16ULL * s->size);
	void *avail = guest_mem_ptr(mem, s->avail_gpa, 6 + 2ULL * s->size);
	void *used = guest_mem_ptr(mem, s->used_gpa, 6 + 8ULL * s->size);

	if (!desc || !avail || !used)
		return -EINVAL;
	*a = (struct vhost_ring_addrs){
		.desc = (uint64_t)(uintptr_t)desc,
		.avail = (uint64_t)(uintptr_t)avail,
		.used = (uint64_t)(uintptr_t)used,
		.used_gpa = s->used_gpa,
	};
	return 0;
}

static bool vhost_connected(const struct vhost_dev *dev);

/*
 * Unbinds ring q's kick and call (best effort: the ring is stopped or never ran); the
 * answers are read here, so that a refusal is not taken for the next start's.
 */
static void vhost_unbind(struct vhost_dev *dev, unsigned int q)
{
	if (!vhost_connected(dev))
		return;
	dev->ops->set_vring_kick(dev, q, -1);
	dev->ops->set_vring_call(dev, q, -1);
	if (dev->ops->flush)
		dev->ops->flush(dev);
}

static int vhost_be_start(struct virtio_backend *be, unsigned int q, const struct virtq_state *s,
			  int kick_fd, struct virtio_call *call)
{
	struct vhost_dev *dev = to_vhost(be);
	struct vhost_ring_addrs addrs;
	const char *step;
	int ret;

	if (q >= dev->nrings || dev->rings[q].started)
		return -EINVAL;
	/* The back-end writes the irqfd itself: the transport must be in direct mode. */
	if (call->irq_fd < 0)
		return -EINVAL;
	step = "its ring addresses are not in guest RAM";
	ret = vhost_ring_addrs(dev->mem, s, &addrs);
	addrs.log = dev->log != NULL;
	if (!ret && dev->log) {
		step = "SET_LOG_BASE";
		ret = vhost_send_log_base(dev);
	}
	if (!ret) {
		step = "SET_VRING_NUM";
		ret = dev->ops->set_vring_num(dev, q, s->size);
	}
	if (!ret) {
		step = "SET_VRING_BASE";
		ret = dev->ops->set_vring_base(dev, q, s->last_avail_idx);
	}
	if (!ret) {
		step = "SET_VRING_ADDR";
		ret = dev->ops->set_vring_addr(dev, q, &addrs);
	}
	/*
	 * The call fd before the kick fd: a back-end starts a ring at its kick fd (vhost-user),
	 * and one that must stop a running ring to change its call fd (ours: its I/O thread
	 * signals it) would otherwise start it twice — on a migration's destination, while the
	 * guest waits.
	 */
	if (!ret) {
		step = "SET_VRING_CALL";
		ret = dev->ops->set_vring_call(dev, q, call->irq_fd);
	}
	if (!ret) {
		step = "SET_VRING_KICK";
		ret = dev->ops->set_vring_kick(dev, q, kick_fd);
	}
	if (!ret && dev->ops->set_vring_enable) {
		step = "SET_VRING_ENABLE";
		ret = dev->ops->set_vring_enable(dev, q, true);
	}
	if (!ret && dev->ops->flush) {
		step = "the answers to the ring's setup";
		ret = dev->ops->flush(dev);
	}
	if (!ret && dev->dev_ops->queue_started) {
		step = "attaching the ring";
		ret = dev->dev_ops->queue_started(dev, q);
	}
	if (ret) {
		log_warn_ratelimited(&vhost_rl, "%s: %s back-end cannot start ring %u (%s): %s",
				     dev->name, dev->dev_ops->name, q, step, strerror(-ret));
		if (dev->ops->set_vring_enable)
			dev->ops->set_vring_enable(dev, q, false);
		vhost_unbind(dev, q);
		return ret;
	}
	dev->rings[q].started = true;
	dev->rings[q].desc_gpa = s->desc_gpa;
	dev->rings[q].used_gpa = s->used_gpa;
	dev->rings[q].size = s->size;
	dev->rings[q].addrs = addrs;
	return 0;
}

static bool vhost_connected(const struct vhost_dev *dev)
{
	return !dev->ops->connected || dev->ops->connected(dev);
}

static void vhost_be_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *s)
{
	struct vhost_dev *dev = to_vhost(be);
	uint16_t base = s->last_avail_idx, used;
	bool read_used;
	int ret;

	if (q >= dev->nrings || !dev->rings[q].started)
		return;
	dev->rings[q].started = false;
	if (dev->dev_ops->queue_stopping)
		dev->dev_ops->queue_stopping(dev, q);
	if (vhost_connected(dev) && dev->ops->set_vring_enable)
		dev->ops->set_vring_enable(dev, q, false);
	ret = vhost_connected(dev) ? dev->ops->get_vring_base(dev, q, &base) : -ENOTCONN;
	/* The back-end published its used elements there (it reads it back on a start, too). */
	read_used = guest_mem_read(dev->mem, dev->rings[q].used_gpa + 2, &used, sizeof(used)) == 0;
	if (read_used)
		s->used_idx = le16toh(used);
	if (ret == -ENOTCONN && read_used) {
		/* A dead back-end: what it finished is known, the rest is to do again. */
		s->last_avail_idx = s->used_idx;
	} else if (ret) {
		log_warn_ratelimited(&vhost_rl, "%s: %s back-end did not say where ring %u stopped "
				     "(%s); it continues from where it started", dev->name,
				     dev->dev_ops->name, q, strerror(-ret));
	} else {
		s->last_avail_idx = base;
	}
	/* Whether the driver heard about the last used elements is unknown: the next check says yes. */
	s->signalled_used = s->used_idx;
	s->signalled_used_valid = false;
	vhost_unbind(dev, q);
	if (dev->log && read_used && dev->dev_ops->queue_stopped) {
		struct virtq_state at = *s;

		at.size = dev->rings[q].size;
		at.desc_gpa = dev->rings[q].desc_gpa;
		at.used_gpa = dev->rings[q].used_gpa;
		dev->dev_ops->queue_stopped(dev, q, &at);
	}
}

static void vhost_be_destroy(struct virtio_backend *be)
{
	struct vhost_dev *dev = to_vhost(be);

	vhost_dev_fini(dev);
	dev->dev_ops->destroy(dev);
}

static int vhost_be_get_config(struct virtio_backend *be, uint32_t offset, void *buf,
			       uint32_t len)
{
	return vhost_dev_get_config(to_vhost(be), offset, buf, len);
}

static int vhost_be_set_config(struct virtio_backend *be, uint32_t offset, const void *buf,
			       uint32_t len)
{
	return vhost_dev_set_config(to_vhost(be), offset, buf, len);
}

static void vhost_be_set_events(struct virtio_backend *be, const struct virtio_backend_events *ev,
				void *opaque)
{
	struct vhost_dev *dev = to_vhost(be);

	dev->events = ev;
	dev->events_opaque = opaque;
}

static int vhost_be_reconnect(struct virtio_backend *be)
{
	return vhost_dev_reconnect(to_vhost(be));
}

static int vhost_be_lost_chains(struct virtio_backend *be, unsigned int q, uint16_t used_idx,
				uint16_t *heads, unsigned int max)
{
	struct vhost_dev *dev = to_vhost(be);

	if (!dev->ops || !dev->ops->lost_chains)
		return -EOPNOTSUPP;
	return dev->ops->lost_chains(dev, q, used_idx, heads, max);
}

static void vhost_be_reset(struct virtio_backend *be)
{
	struct vhost_dev *dev = to_vhost(be);

	if (dev->ops && dev->ops->reset)
		dev->ops->reset(dev);
}

/* ---- migration ---- */

/*
 * Sends what logging changes on a set-up device: SET_FEATURES (LOG_ALL on or
 * off) if features were sent, SET_VRING_ADDR (F_LOG on or off) for each
 * started ring, then the kind's barrier. 0 or the first failure's -errno.
 */
static int vhost_log_apply(struct vhost_dev *dev)
{
	const char *step = NULL;
	int ret = 0;

	if (!vhost_connected(dev))
		return -ENOTCONN;
	if (dev->features_sent) {
		uint64_t f = vhost_wire_features(dev, dev->acked_features);

		ret = dev->ops->update_features ? dev->ops->update_features(dev, f)
						: dev->ops->set_features(dev, f);
		step = "SET_FEATURES";
	}
	for (unsigned int q = 0; !ret && q < dev->nrings; q++) {
		struct vhost_ring_addrs a = dev->rings[q].addrs;

		if (!dev->rings[q].started)
			continue;
		a.log = dev->log != NULL;
		ret = dev->ops->set_vring_addr(dev, q, &a);
		if (!ret)
			dev->rings[q].addrs = a;
		step = "SET_VRING_ADDR";
	}
	if (!ret && dev->ops->sync) {
		ret = dev->ops->sync(dev);
		step = "a barrier after them";
	}
	if (ret)
		log_warn("%s: %s back-end: %s dirty logging failed at %s: %s", dev->name,
			 dev->dev_ops->name, dev->log ? "starting" : "stopping", step,
			 strerror(-ret));
	return ret;
}

/* Whether log covers every byte of guest RAM (the kernel would write past it otherwise). */
static bool vhost_log_covers(const struct vhost_dev *dev, const struct dirty_log *log)
{
	for (unsigned int i = 0; i < dev->mem->nregions; i++) {
		const struct guest_region *r = &dev->mem->regions[i];

		if (r->size && (r->gpa + r->size - 1) >> DIRTY_PAGE_SHIFT >= log->pages)
			return false;
	}
	return log->words && log->size * 8 >= log->pages;
}

static int vhost_be_log_start(struct virtio_backend *be, struct dirty_log *log)
{
	struct vhost_dev *dev = to_vhost(be);
	char why[256] = "";
	int ret;

	if (dev->log == log)
		return 0;
	if (dev->log)
		return -EBUSY;
	ret = 0;
	if (dev->ops->log_check) {
		ret = dev->ops->log_check(dev, why, sizeof(why));
	} else if (!(dev->backend_features & (1ULL << VHOST_F_LOG_ALL_BIT)) ||
		   !dev->ops->set_log_base) {
		snprintf(why, sizeof(why), "the %s back-end does not offer VHOST_F_LOG_ALL (it does "
			 "not log its writes to guest memory)", dev->ops->name);
		ret = -EOPNOTSUPP;
	}
	if (ret) {
		log_error("%s (%s): %s, so the VM cannot be migrated live — use a back-end that "
			  "logs its writes, or stop the VM and snapshot it instead", dev->name,
			  dev->dev_ops->name, why);
		return ret;
	}
	if (!vhost_log_covers(dev, log)) {
		log_error("%s: the dirty log covers %llu pages, less than guest RAM — a VMM bug",
			  dev->name, (unsigned long long)log->pages);
		return -EINVAL;
	}
	if (!vhost_connected(dev))
		return -ENOTCONN;
	dev->log = log;
	dev->log_base_sent = false;
	ret = vhost_send_log_base(dev);
	if (!ret)
		ret = vhost_log_apply(dev);
	if (ret) {
		/* Back to no logging (best effort): the caller gives the migration up. */
		dev->log = NULL;
		dev->log_base_sent = false;
		if (vhost_connected(dev))
			vhost_log_apply(dev);
		return ret;
	}
	return 0;
}

static void vhost_be_log_stop(struct virtio_backend *be)
{
	struct vhost_dev *dev = to_vhost(be);

	if (!dev->log)
		return;
	dev->log = NULL;
	dev->log_base_sent = false;
	/*
	 * Features and rings without logging; the back-end keeps the old base (no
	 * request takes it back) but writes nothing to it any more. A dead back-end
	 * writes nothing at all.
	 */
	if (vhost_connected(dev))
		vhost_log_apply(dev);
}

static int vhost_be_migratable(struct virtio_backend *be, char *why, size_t whylen)
{
	struct vhost_dev *dev = to_vhost(be);

	return dev->ops && dev->ops->migratable ? dev->ops->migratable(dev, why, whylen) : 0;
}

static bool vhost_be_has_state(struct virtio_backend *be)
{
	struct vhost_dev *dev = to_vhost(be);

	return dev->ops && dev->ops->has_state && dev->ops->has_state(dev);
}

/* The device-state transfer's precondition: every ring stopped. */
static int vhost_state_ready(struct vhost_dev *dev, const char *what)
{
	for (unsigned int q = 0; q < dev->nrings; q++) {
		if (dev->rings[q].started) {
			log_error("%s: %s of the back-end's state while ring %u runs — a VMM bug "
				  "(pause the device first)", dev->name, what, q);
			return -EBUSY;
		}
	}
	return 0;
}

static int vhost_be_save_state(struct virtio_backend *be, const struct virtio_state_sink *sink)
{
	struct vhost_dev *dev = to_vhost(be);
	int ret;

	if (!dev->ops || !dev->ops->save_state)
		return -EOPNOTSUPP;
	ret = vhost_state_ready(dev, "a save");
	return ret ? ret : dev->ops->save_state(dev, sink);
}

static int vhost_be_load_state(struct virtio_backend *be, const struct virtio_state_source *src)
{
	struct vhost_dev *dev = to_vhost(be);
	int ret;

	if (!dev->ops || !dev->ops->load_state)
		return -EOPNOTSUPP;
	ret = vhost_state_ready(dev, "a load");
	return ret ? ret : dev->ops->load_state(dev, src);
}

static int vhost_be_announce(struct virtio_backend *be, const uint8_t mac[6])
{
	struct vhost_dev *dev = to_vhost(be);

	if (!dev->ops || !dev->ops->send_rarp)
		return -EOPNOTSUPP;
	return dev->ops->send_rarp(dev, mac);
}

static const struct virtio_backend_ops vhost_backend_ops = {
	.name = "vhost",
	.signals_irqfd = true,
	.features = vhost_be_features,
	.set_features = vhost_be_set_features,
	.start = vhost_be_start,
	.stop = vhost_be_stop,
	.destroy = vhost_be_destroy,
	.get_config = vhost_be_get_config,
	.set_config = vhost_be_set_config,
	.set_events = vhost_be_set_events,
	.reconnect = vhost_be_reconnect,
	.lost_chains = vhost_be_lost_chains,
	.reset = vhost_be_reset,
	.migratable = vhost_be_migratable,
	.log_start = vhost_be_log_start,
	.log_stop = vhost_be_log_stop,
	.has_state = vhost_be_has_state,
	.save_state = vhost_be_save_state,
	.announce = vhost_be_announce,
	.load_state = vhost_be_load_state,
};

/* ---- set-up, config ---- */

int vhost_dev_init(struct vhost_dev *dev, const struct vhost_ops *ops, void *conn,
		   const struct vhost_device_ops *dev_ops, const struct guest_mem *mem,
		   const char *name, unsigned int nrings)
{
	int ret;

	if (!nrings || nrings > VHOST_MAX_RINGS || !dev_ops->destroy)
		return -EINVAL;
	memset(dev, 0, sizeof(*dev));
	dev->ops = ops;
	dev->conn = conn;
	dev->dev_ops = dev_ops;
	dev->mem = mem;
	dev->name = name;
	dev->nrings = nrings;
	ret = ops->set_owner(dev);
	if (!ret)
		ret = ops->get_features(dev, &dev->backend_features);
	if (!ret && !(dev->backend_features & (1ULL << 32)))
		ret = -EOPNOTSUPP;	/* no VERSION_1: the transport is modern only */
	if (ret) {
		dev->ops = NULL;
		dev->conn = NULL;
		return ret;
	}
	dev->be.ops = &vhost_backend_ops;
	return 0;
}

void vhost_dev_fini(struct vhost_dev *dev)
{
	if (!dev->ops)
		return;
	for (unsigned int q = 0; q < dev->nrings; q++) {
		struct virtq_state s = { 0 };

		if (dev->rings[q].started)
			vhost_be_stop(&dev->be, q, &s);
	}
	if (dev->ops->cleanup)
		dev->ops->cleanup(dev);
	dev->ops = NULL;
	dev->conn = NULL;
}

int vhost_dev_get_config(struct vhost_dev *dev, uint32_t offset, void *buf, uint32_t len)
{
	return dev->ops && dev->ops->get_config ? dev->ops->get_config(dev, offset, buf, len)
						: -EOPNOTSUPP;
}

int vhost_dev_set_config(struct vhost_dev *dev, uint32_t offset, const void *buf, uint32_t len)
{
	return dev->ops && dev->ops->set_config ? dev->ops->set_config(dev, offset, buf, len)
						: -EOPNOTSUPP;
}

void vhost_dev_set_config_notifier(struct vhost_dev *dev, void (*fn)(void *opaque), void *opaque)
{
	dev->config_notify = fn;
	dev->config_opaque = opaque;
}

void vhost_dev_config_changed(struct vhost_dev *dev)
{
	if (dev->config_notify)
		dev->config_notify(dev->config_opaque);
	if (dev->events && dev->events->config_changed)
		dev->events->config_changed(dev->events_opaque);
}

void vhost_dev_disconnected(struct vhost_dev *dev, const char *why)
{
	if (dev->events && dev->events->disconnected)
		dev->events->disconnected(dev->events_opaque, why);
}

int vhost_dev_reconnect(struct vhost_dev *dev)
{
	uint64_t features;
	int ret;

	if (!dev->ops || !dev->ops->reconnect)
		return -EOPNOTSUPP;
	ret = dev->ops->reconnect(dev);
	if (!ret)
		ret = dev->ops->get_features(dev, &features);
	if (ret)
		return ret;
	if ((features & dev->acked_features) != dev->acked_features ||
	    (features & vhost_backend_bits(dev)) != (dev->backend_features & vhost_backend_bits(dev))) {
		log_error("%s: the vhost-user back-end came back with other features (%#llx, was "
			  "%#llx) — restart it as it was", dev->name, (unsigned long long)features,
			  (unsigned long long)dev->backend_features);
		return -EOPNOTSUPP;
	}
	for (unsigned int q = 0; q < dev->nrings; q++)
		dev->rings[q].started = false;
	/* A new connection: features and the log (if a migration logs) go again at the resume. */
	dev->features_sent = false;
	dev->log_base_sent = false;
	return 0;
}
