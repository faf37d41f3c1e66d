// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "virtio/mmio.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

#define VIRTIO_MMIO_MAGIC	0x74726976	/* "virt" */
#define VIRTIO_MMIO_VERSION_2	2
#define VIRTIO_MMIO_VENDOR	0x00564d4d	/* "MMV" */

/* Feature bits the transport itself offers on top of the device's. */
#define TRANSPORT_FEATURES \
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
	 (1ULL << VIRTIO_RING_F_EVENT_IDX))

static struct log_ratelimit guest_error_rl = LOG_RATELIMIT_INIT;

bool virtio_mmio_is_active(const struct virtio_mmio_dev *d)
{
	return (d->status & VIRTIO_CONFIG_S_DRIVER_OK) && !(d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* One edge on the irqfd: KVM injects the device's interrupt once. */
static void virtio_mmio_pulse(struct virtio_mmio_dev *d)
{
	uint64_t one = 1;

	d->interrupts++;
	if (write(d->irq_fd, &one, sizeof(one)) != sizeof(one))
		log_warn_ratelimited(&guest_error_rl, "%s: cannot raise the interrupt: %s", d->name,
				     strerror(errno));
}

/*
 * Level-triggered, as QEMU's (see mmio.h): a cause that arrives before the
 * driver's acknowledgement only adds its bit — the driver's handler reads the
 * status, acknowledges, then looks at every queue, so it sees the new used
 * buffers too. This spares the guest an interrupt, and two MMIO exits, per
 * merged cause.
 */
static void virtio_mmio_raise(struct virtio_mmio_dev *d, uint32_t bits)
{
	bool pending = d->isr != 0;

	d->isr |= bits;
	if (pending) {
		d->interrupts_merged++;
		return;
	}
	virtio_mmio_pulse(d);
}

/* InterruptACK: clears the acknowledged bits; what is left still needs the driver's attention. */
static void virtio_mmio_ack(struct virtio_mmio_dev *d, uint32_t bits)
{
	if (!(d->isr & bits))
		return;
	d->isr &= ~bits;
	if (d->isr)
		virtio_mmio_pulse(d);
}

void virtio_mmio_signal_used(struct virtio_mmio_dev *d, unsigned int q)
{
	if (q < d->ops->nqueues && virtq_should_notify(&d->queues[q]))
		virtio_mmio_raise(d, VIRTIO_MMIO_INT_VRING);
}

void virtio_mmio_signal_config(struct virtio_mmio_dev *d)
{
	d->config_generation++;
	if (d->status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_mmio_raise(d, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_mmio_set_needs_reset(struct virtio_mmio_dev *d, const char *why)
{
	if (d->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	log_warn_ratelimited(&guest_error_rl, "%s: guest error: %s — the device needs a reset by "
			     "the guest driver", d->name, why);
	d->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	if (d->status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_mmio_raise(d, VIRTIO_MMIO_INT_CONFIG);
}

static void virtio_mmio_reset_locked(struct virtio_mmio_dev *d)
{
	d->status = 0;
	d->isr = 0;
	d->driver_features = 0;
	d->device_features_sel = 0;
	d->driver_features_sel = 0;
	d->queue_sel = 0;
	for (unsigned int q = 0; q < d->ops->nqueues; q++)
		virtq_reset(&d->queues[q], d->host->mem);
	if (d->ops->reset)
		d->ops->reset(d);
}

/* Runs the device's queue handler if the queue may be used. d->lock held. */
static void virtio_mmio_notify_locked(struct virtio_mmio_dev *d, unsigned int q)
{
	struct virtq *vq = &d->queues[q];

	if (!virtio_mmio_is_active(d) || !vq->ready || vq->broken)
		return;
	d->ops->queue_notify(d, q);
	if (vq->broken)
		virtio_mmio_set_needs_reset(d, "malformed virtqueue");
}

static void virtio_mmio_kick(struct event_source *src, uint32_t events)
{
	struct virtio_mmio_kick *k = container_of(src, struct virtio_mmio_kick, src);
	struct virtio_mmio_dev *d = k->dev;
	uint64_t v;

	(void)events;
	if (read(src->fd, &v, sizeof(v)) < 0)
		return;
	pthread_mutex_lock(&d->lock);
	d->eventfd_notifies++;
	virtio_mmio_notify_locked(d, k->queue);
	pthread_mutex_unlock(&d->lock);
}

/* The features word the driver reads through DeviceFeaturesSel. */
static uint32_t features_word(uint64_t features, uint32_t sel)
{
	return sel < 2 ? (uint32_t)(features >> (32 * sel)) : 0;
}

static struct virtq *selected_queue(struct virtio_mmio_dev *d)
{
	return d->queue_sel < d->ops->nqueues ? &d->queues[d->queue_sel] : NULL;
}

static uint32_t virtio_mmio_read_reg(struct virtio_mmio_dev *d, uint64_t offset)
{
	struct virtq *vq = selected_queue(d);

	switch (offset) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return VIRTIO_MMIO_VERSION_2;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return features_word(d->device_features, d->device_features_sel);
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return vq ? d->ops->queue_max_size : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? vq->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return d->isr;
	case VIRTIO_MMIO_STATUS:
		return d->status;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		return 0xffffffff;	/* no shared memory regions */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return d->config_generation;
	default:
		return 0;
	}
}

/* FEATURES_OK is accepted only for a modern driver that took nothing we did not offer. */
static bool features_acceptable(const struct virtio_mmio_dev *d)
{
	return (d->driver_features & (1ULL << VIRTIO_F_VERSION_1)) &&
	       !(d->driver_features & ~d->device_features);
}

static void virtio_mmio_set_features_ok(struct virtio_mmio_dev *d)
{
	bool event_idx = virtio_has_feature(d, VIRTIO_RING_F_EVENT_IDX);
	bool indirect = virtio_has_feature(d, VIRTIO_RING_F_INDIRECT_DESC);

	for (unsigned int q = 0; q < d->ops->nqueues; q++) {
		d->queues[q].event_idx = event_idx;
		d->queues[q].indirect = indirect;
	}
}

static void virtio_mmio_write_status(struct virtio_mmio_dev *d, uint32_t v)
{
	uint32_t added = v & ~d->status;

	if (v == 0) {
		virtio_mmio_reset_locked(d);
		return;
	}
	if (added & VIRTIO_CONFIG_S_FEATURES_OK) {
		if (!features_acceptable(d)) {
			/* Leave FEATURES_OK clear: the driver reads it back and gives up. */
			v &= ~VIRTIO_CONFIG_S_FEATURES_OK;
		} else {
			virtio_mmio_set_features_ok(d);
		}
	}
	/* The driver cannot set NEEDS_RESET, nor clear it except by a reset. */
	v = (v & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	d->status = v;
	if ((added & VIRTIO_CONFIG_S_DRIVER_OK) && !(d->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
		virtio_mmio_set_needs_reset(d, "DRIVER_OK without FEATURES_OK");
		return;
	}
	if ((added & VIRTIO_CONFIG_S_DRIVER_OK) && d->ops->activate && d->ops->activate(d))
		virtio_mmio_set_needs_reset(d, "the device could not start");
}

static void set_low(uint64_t *addr, uint32_t v)
{
	*addr = (*addr & ~0xffffffffULL) | v;
}

static void set_high(uint64_t *addr, uint32_t v)
{
	*addr = (*addr & 0xffffffffULL) | (uint64_t)v << 32;
}

static void virtio_mmio_write_queue_ready(struct virtio_mmio_dev *d, struct virtq *vq, uint32_t v)
{
	if (!v) {
		vq->ready = false;
		return;
	}
	if (vq->ready)
		return;
	if (!(d->status & VIRTIO_CONFIG_S_FEATURES_OK) || virtq_start(vq)) {
		virtio_mmio_set_needs_reset(d, "queue enabled with an invalid size or ring address");
		return;
	}
}

static void virtio_mmio_write_reg(struct virtio_mmio_dev *d, uint64_t offset, uint32_t v)
{
	struct virtq *vq = selected_queue(d);
	/* Queue registers may change only while the queue is not ready. */
	struct virtq *cfg_vq = vq && !vq->ready ? vq : NULL;

	switch (offset) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (d->driver_features_sel < 2 && !(d->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
			uint64_t mask = 0xffffffffULL << (32 * d->driver_features_sel);

			d->driver_features = (d->driver_features & ~mask) |
					     ((uint64_t)v << (32 * d->driver_features_sel));
		}
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (cfg_vq)
			cfg_vq->size = v > d->ops->queue_max_size ? 0 : (uint16_t)v;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (vq)
			virtio_mmio_write_queue_ready(d, vq, v);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* The slow path: only taken when KVM could not bind an ioeventfd. */
		d->mmio_notifies++;
		if (v < d->ops->nqueues)
			virtio_mmio_notify_locked(d, v);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		virtio_mmio_ack(d, v);
		break;
	case VIRTIO_MMIO_STATUS:
		virtio_mmio_write_status(d, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		if (cfg_vq)
			set_low(&cfg_vq->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (cfg_vq)
			set_high(&cfg_vq->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		if (cfg_vq)
			set_low(&cfg_vq->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (cfg_vq)
			set_high(&cfg_vq->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		if (cfg_vq)
			set_low(&cfg_vq->used_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (cfg_vq)
			set_high(&cfg_vq->used_gpa, v);
		break;
	default:
		break;	/* read-only or unknown registers: writes are ignored */
	}
}

static void virtio_mmio_config_access(struct virtio_mmio_dev *d, uint64_t offset, uint8_t *data,
				      uint32_t len, bool is_write)
{
	uint64_t off = offset - VIRTIO_MMIO_CONFIG;

	if (off >= d->config_size || len > d->config_size - off) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (!is_write) {
		memcpy(data, (uint8_t *)d->config + off, len);
		return;
	}
	if (d->ops->config_write)
		d->ops->config_write(d, (uint32_t)off, data, len);
}

void virtio_mmio_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_mmio_dev *d = opaque;
	uint32_t v;

	pthread_mutex_lock(&d->lock);
	if (offset >= VIRTIO_MMIO_CONFIG) {
		virtio_mmio_config_access(d, offset, data, len, is_write);
	} else if (len != 4 || offset % 4) {
		/* Registers are 32-bit wide and aligned; anything else is ignored. */
		if (!is_write)
			memset(data, 0, len);
	} else if (is_write) {
		memcpy(&v, data, 4);
		virtio_mmio_write_reg(d, offset, le32toh(v));
	} else {
		v = htole32(virtio_mmio_read_reg(d, offset));
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&d->lock);
}

int virtio_mmio_init(struct virtio_mmio_dev *d, const struct virtio_dev_ops *ops,
		     struct virtio_host *host, const char *name, uint64_t base, uint32_t gsi,
		     uint64_t device_features, void *config, uint32_t config_size)
{
	int ret;

	if (!ops->nqueues || ops->nqueues > VIRTIO_MMIO_MAX_QUEUES || !ops->queue_notify ||
	    config_size > VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG)
		return -EINVAL;
	d->ops = ops;
	d->host = host;
	d->name = name;
	d->base = base;
	d->gsi = gsi;
	d->config = config;
	d->config_size = config_size;
	d->device_features = device_features | TRANSPORT_FEATURES;
	d->irq_fd = -1;
	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		d->kick[q].src.fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	for (unsigned int q = 0; q < ops->nqueues; q++)
		virtq_reset(&d->queues[q], host->mem);

	d->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->irq_fd < 0)
		return -errno;
	ret = host->irqfd(host, gsi, d->irq_fd, true);
	if (ret)
		return ret;

	for (unsigned int q = 0; q < ops->nqueues; q++) {
		struct virtio_mmio_kick *k = &d->kick[q];

		k->dev = d;
		k->queue = q;
		k->src.fn = virtio_mmio_kick;
		k->src.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (k->src.fd < 0)
			return -errno;
		k->bound = host->ioeventfd(host, base + VIRTIO_MMIO_QUEUE_NOTIFY, q, k->src.fd, true) == 0;
		if (!k->bound)
			log_warn("%s: KVM cannot deliver queue %u notifications by eventfd; "
				 "they go through MMIO exits (slower)", name, q);
		ret = event_loop_add(host->loop, &k->src, EPOLLIN);
		if (ret)
			return ret;
	}
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio_dev *d)
{
	if (!d->ops)
		return;
	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		struct virtio_mmio_kick *k = &d->kick[q];

		if (k->src.fd < 0)
			continue;
		event_loop_remove(d->host->loop, &k->src);
		if (k->bound)
			d->host->ioeventfd(d->host, d->base + VIRTIO_MMIO_QUEUE_NOTIFY, q, k->src.fd, false);
		close(k->src.fd);
		k->src.fd = -1;
	}
	if (d->irq_fd >= 0) {
		d->host->irqfd(d->host, d->gsi, d->irq_fd, false);
		close(d->irq_fd);
		d->irq_fd = -1;
	}
	pthread_mutex_destroy(&d->lock);
	d->ops = NULL;
}
