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

/*
 * What the driver reads in InterruptStatus: the causes the transport keeps,
 * plus, in direct interrupt mode, a used buffer whenever the device is live
 * (the back-end's irqfd writes are invisible here; see mmio.h).
 */
static uint32_t virtio_mmio_interrupt_status(const struct virtio_mmio_dev *d)
{
	if (d->irq_direct && virtio_mmio_is_active(d))
		return d->isr | VIRTIO_MMIO_INT_VRING;
	return d->isr;
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

void virtio_mmio_signal_config(struct virtio_mmio_dev *d)
{
	d->config_generation++;
	if (d->status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_mmio_raise(d, VIRTIO_MMIO_INT_CONFIG);
}

/* Takes every started queue back from the back-end, keeping its position in d->queues. */
static void virtio_mmio_stop_queues(struct virtio_mmio_dev *d)
{
	if (!d->running)
		return;
	d->running = false;
	for (unsigned int q = 0; q < d->ops->nqueues; q++) {
		if (!d->q[q].started)
			continue;
		d->q[q].started = false;
		d->backend->ops->stop(d->backend, q, &d->queues[q]);
	}
}

void virtio_mmio_backend_gone(struct virtio_mmio_dev *d, const char *why, const char *effect)
{
	pthread_mutex_lock(&d->lock);
	log_error("%s: its vhost-user back-end is gone (%s) — %s", d->name, why, effect);
	virtio_mmio_set_needs_reset(d, why);
	pthread_mutex_unlock(&d->lock);
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
	virtio_mmio_stop_queues(d);
}

/* The call's raise(): the back-end pushed used buffers the driver wants to hear about. */
static void virtio_mmio_call_raise(struct virtio_call *call)
{
	struct virtio_mmio_queue *mq = container_of(call, struct virtio_mmio_queue, call);

	virtio_mmio_raise(mq->dev, VIRTIO_MMIO_INT_VRING);
}

/* The call's error(): the back-end found the queue unusable. */
static void virtio_mmio_call_error(struct virtio_call *call, const char *why)
{
	struct virtio_mmio_queue *mq = container_of(call, struct virtio_mmio_queue, call);

	virtio_mmio_set_needs_reset(mq->dev, why);
}

/* One kick on queue q's eventfd: the back-end looks at the ring. */
static void virtio_mmio_kick_queue(struct virtio_mmio_dev *d, unsigned int q)
{
	uint64_t one = 1;

	if (write(d->q[q].kick_fd, &one, sizeof(one)) != sizeof(one))
		log_warn_ratelimited(&guest_error_rl, "%s: cannot kick queue %u: %s", d->name, q,
				     strerror(errno));
}

/*
 * Hands queue q, if ready, to the back-end; 0 or -errno (then the device needs
 * a reset). kick: the queue resumes from a saved position, so the back-end
 * must look at the ring once (chains may have come while nobody watched).
 * Otherwise any kick the driver sent is still counted in the eventfd.
 */
static int virtio_mmio_start_queue(struct virtio_mmio_dev *d, unsigned int q, bool kick)
{
	int ret;

	if (!d->queues[q].ready || d->q[q].started)
		return 0;
	ret = d->backend->ops->start(d->backend, q, &d->queues[q], d->q[q].kick_fd, &d->q[q].call);
	if (ret) {
		log_warn_ratelimited(&guest_error_rl, "%s: the %s back-end cannot start queue "
				     "%u: %s", d->name, d->backend->ops->name, q, strerror(-ret));
		return ret;
	}
	d->q[q].started = true;
	if (kick)
		virtio_mmio_kick_queue(d, q);
	return 0;
}

/* DRIVER_OK or a resume: gives the back-end the accepted features, then every ready queue. */
static void virtio_mmio_start_queues(struct virtio_mmio_dev *d, bool resume)
{
	const struct virtio_backend_ops *be = d->backend->ops;
	int ret;

	if (be->set_features) {
		ret = be->set_features(d->backend, d->driver_features);
		if (ret) {
			log_warn_ratelimited(&guest_error_rl,
					     "%s: the %s back-end refuses features %#llx: %s",
					     d->name, be->name,
					     (unsigned long long)d->driver_features,
					     strerror(-ret));
			virtio_mmio_set_needs_reset(d, "the device could not start");
			return;
		}
	}
	d->running = true;
	for (unsigned int q = 0; q < d->ops->nqueues; q++) {
		if (virtio_mmio_start_queue(d, q, resume)) {
			virtio_mmio_set_needs_reset(d, "the device could not start");
			return;
		}
	}
}

static void virtio_mmio_reset_locked(struct virtio_mmio_dev *d)
{
	virtio_mmio_stop_queues(d);
	d->status = 0;
	d->isr = 0;
	d->driver_features = 0;
	d->device_features_sel = 0;
	d->driver_features_sel = 0;
	d->queue_sel = 0;
	for (unsigned int q = 0; q < d->ops->nqueues; q++)
		d->queues[q] = (struct virtq_state){ 0 };
	if (d->ops->reset)
		d->ops->reset(d);
}

void virtio_mmio_pause(struct virtio_mmio_dev *d)
{
	virtio_mmio_stop_queues(d);
}

void virtio_mmio_resume(struct virtio_mmio_dev *d)
{
	if (!d->running && virtio_mmio_is_active(d))
		virtio_mmio_start_queues(d, true);
}

uint64_t virtio_mmio_eventfd_notifies(const struct virtio_mmio_dev *d)
{
	uint64_t n = 0;

	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		if (d->q[q].kick_bound)
			n += __atomic_load_n(&d->q[q].call.kicks, __ATOMIC_RELAXED);
	return n;
}

/* The features word the driver reads through DeviceFeaturesSel. */
static uint32_t features_word(uint64_t features, uint32_t sel)
{
	return sel < 2 ? (uint32_t)(features >> (32 * sel)) : 0;
}

static struct virtq_state *selected_queue(struct virtio_mmio_dev *d)
{
	return d->queue_sel < d->ops->nqueues ? &d->queues[d->queue_sel] : NULL;
}

static uint32_t virtio_mmio_read_reg(struct virtio_mmio_dev *d, uint64_t offset)
{
	struct virtq_state *vq = selected_queue(d);

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
		return virtio_mmio_interrupt_status(d);
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
	if (!(added & VIRTIO_CONFIG_S_DRIVER_OK))
		return;
	if (d->ops->activate && d->ops->activate(d)) {
		virtio_mmio_set_needs_reset(d, "the device could not start");
		return;
	}
	if (!(d->status & VIRTIO_CONFIG_S_NEEDS_RESET))
		virtio_mmio_start_queues(d, false);
}

static void set_low(uint64_t *addr, uint32_t v)
{
	*addr = (*addr & ~0xffffffffULL) | v;
}

static void set_high(uint64_t *addr, uint32_t v)
{
	*addr = (*addr & 0xffffffffULL) | (uint64_t)v << 32;
}

static void virtio_mmio_write_queue_ready(struct virtio_mmio_dev *d, unsigned int q, uint32_t v)
{
	struct virtq_state *vq = &d->queues[q];

	if (!v) {
		if (d->q[q].started) {
			d->q[q].started = false;
			d->backend->ops->stop(d->backend, q, vq);
		}
		vq->ready = false;
		return;
	}
	if (vq->ready)
		return;
	if (!(d->status & VIRTIO_CONFIG_S_FEATURES_OK) || virtq_check_rings(d->host->mem, vq)) {
		virtio_mmio_set_needs_reset(d, "queue enabled with an invalid size or ring address");
		return;
	}
	/* A queue the driver enables starts at the beginning of its rings. */
	vq->last_avail_idx = 0;
	vq->used_idx = 0;
	vq->signalled_used = 0;
	vq->signalled_used_valid = false;
	vq->ready = true;
	if (d->running && virtio_mmio_start_queue(d, q, false))
		virtio_mmio_set_needs_reset(d, "the device could not start");
}

static void virtio_mmio_write_reg(struct virtio_mmio_dev *d, uint64_t offset, uint32_t v)
{
	struct virtq_state *vq = selected_queue(d);
	/* Queue registers may change only while the queue is not ready. */
	struct virtq_state *cfg_vq = vq && !vq->ready ? vq : NULL;

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
			virtio_mmio_write_queue_ready(d, d->queue_sel, v);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* The slow path (KVM could not bind an ioeventfd): onto the same eventfd. */
		d->mmio_notifies++;
		if (v < d->ops->nqueues)
			virtio_mmio_kick_queue(d, v);
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
		     uint64_t device_features, void *config, uint32_t config_size,
		     struct virtio_backend *backend)
{
	int ret;

	if (!ops->nqueues || ops->nqueues > VIRTIO_MMIO_MAX_QUEUES ||
	    config_size > VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG || !backend || !backend->ops ||
	    !backend->ops->features || !backend->ops->start || !backend->ops->stop)
		return -EINVAL;
	d->ops = ops;
	d->host = host;
	d->name = name;
	d->base = base;
	d->gsi = gsi;
	d->config = config;
	d->config_size = config_size;
	d->backend = backend;
	d->running = false;
	d->irq_direct = backend->ops->signals_irqfd;
	d->device_features = (device_features | TRANSPORT_FEATURES) &
			     backend->ops->features(backend);
	d->irq_fd = -1;
	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		d->queues[q] = (struct virtq_state){ 0 };
		d->q[q] = (struct virtio_mmio_queue){
			.call = { .raise = virtio_mmio_call_raise, .error = virtio_mmio_call_error,
				  .irq_fd = -1 },
			.dev = d,
			.kick_fd = -1,
		};
	}
	pthread_mutex_init(&d->lock, NULL);

	d->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->irq_fd < 0)
		return -errno;
	ret = host->irqfd(host, gsi, d->irq_fd, true);
	if (ret)
		return ret;

	for (unsigned int q = 0; q < ops->nqueues; q++) {
		struct virtio_mmio_queue *mq = &d->q[q];

		mq->call.irq_fd = d->irq_direct ? d->irq_fd : -1;
		mq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (mq->kick_fd < 0)
			return -errno;
		mq->kick_bound = host->ioeventfd(host, base + VIRTIO_MMIO_QUEUE_NOTIFY, q,
						 mq->kick_fd, true) == 0;
		if (!mq->kick_bound)
			log_warn("%s: KVM cannot deliver queue %u notifications by eventfd; "
				 "they go through MMIO exits (slower)", name, q);
	}
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio_dev *d)
{
	if (!d->ops)
		return;
	pthread_mutex_lock(&d->lock);
	virtio_mmio_stop_queues(d);
	pthread_mutex_unlock(&d->lock);
	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		struct virtio_mmio_queue *mq = &d->q[q];

		if (mq->kick_fd < 0)
			continue;
		if (mq->kick_bound)
			d->host->ioeventfd(d->host, d->base + VIRTIO_MMIO_QUEUE_NOTIFY, q,
					   mq->kick_fd, false);
		close(mq->kick_fd);
		mq->kick_fd = -1;
	}
	if (d->irq_fd >= 0) {
		d->host->irqfd(d->host, d->gsi, d->irq_fd, false);
		close(d->irq_fd);
		d->irq_fd = -1;
	}
	pthread_mutex_destroy(&d->lock);
	d->ops = NULL;
}
