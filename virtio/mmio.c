// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <inttypes.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
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

/* Whether a device with this status is live: DRIVER_OK without NEEDS_RESET. */
static bool status_live(uint32_t status)
{
	return (status & VIRTIO_CONFIG_S_DRIVER_OK) && !(status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

bool virtio_mmio_is_active(const struct virtio_mmio_dev *d)
{
	return status_live(d->status);
}

/*
 * Queue q as guest memory shows it, mapped from the transport's copy of its
 * configuration (whoever serves it); false when it is not ready or not in RAM.
 */
static bool queue_view(const struct virtio_mmio_dev *d, unsigned int q, struct virtq_view *v)
{
	struct virtq vq = { 0 };

	return d->queues[q].ready && !virtq_start_from(&vq, d->host->mem, &d->queues[q]) &&
	       virtq_view(&vq, v);
}

/* Whether the watchdog has something to look at: a cause set, or a running direct-mode device. */
static bool irq_watch_wanted(const struct virtio_mmio_dev *d)
{
	return d->isr || (d->irq_direct && d->running);
}

/* Arms the interrupt watchdog's timer for one look, unless it is armed already. */
static void irq_watch_arm(struct virtio_mmio_dev *d)
{
	unsigned int ms = d->irq_direct ? VIRTIO_MMIO_DIRECT_WATCH_MS : VIRTIO_MMIO_RESEND_MS;
	struct itimerspec t = { .it_value = timespec_from_ms(ms) };

	if (d->irq_watch_armed || d->irq_watch_src.fd < 0)
		return;
	if (timerfd_settime(d->irq_watch_src.fd, 0, &t, NULL)) {
		log_warn_ratelimited(&guest_error_rl, "%s: cannot arm the interrupt watchdog: %s",
				     d->name, strerror(errno));
		return;
	}
	d->irq_watch_armed = true;
	d->isr_reads_armed = d->isr_reads;
}

/* One edge on the irqfd: KVM injects the device's interrupt once. */
static void virtio_mmio_pulse(struct virtio_mmio_dev *d)
{
	uint64_t one = 1;

	d->interrupts++;
	irq_watch_arm(d);
	if (d->interrupts == d->drop_interrupt) {
		log_notice("%s: interrupt %" PRIu64 " not sent (VMM_DROP_INTERRUPT)", d->name,
			   d->interrupts);
		return;
	}
	if (write(d->irq_fd, &one, sizeof(one)) != sizeof(one))
		log_warn_ratelimited(&guest_error_rl, "%s: cannot raise the interrupt: %s", d->name,
				     strerror(errno));
}

/*
 * Direct mode: whether a queue's driver has waited a whole watchdog period for an
 * interrupt it is owed — its used index past its used_event, and neither index
 * nor its offer moved since the previous look. Records this look.
 */
static bool direct_irq_owed(struct virtio_mmio_dev *d)
{
	bool stale = false;

	for (unsigned int q = 0; q < d->ops->nqueues; q++) {
		struct virtio_mmio_queue *mq = &d->q[q];
		struct virtq_view v;
		bool owed;

		if (!mq->started || !queue_view(d, q, &v) || !v.event_idx) {
			mq->watch_owed = false;
			continue;
		}
		owed = (uint16_t)(v.used_idx - v.used_event - 1) < 0x8000;
		if (owed && mq->watch_owed && v.used_idx == mq->watch_used &&
		    v.used_event == mq->watch_event && v.avail_idx == mq->watch_avail)
			stale = true;
		mq->watch_owed = owed;
		mq->watch_used = v.used_idx;
		mq->watch_event = v.used_event;
		mq->watch_avail = v.avail_idx;
	}
	return stale;
}

bool virtio_mmio_irq_watch(struct virtio_mmio_dev *d)
{
	bool unread = d->isr && d->isr_reads == d->isr_reads_armed;
	bool owed = false;

	d->irq_watch_armed = false;
	if (d->vm_paused)
		return false;	/* virtio_mmio_resume() arms it again */
	if (d->irq_direct && d->running)
		owed = direct_irq_owed(d);
	if (unread || owed) {
		d->interrupts_resent++;
		log_warn_ratelimited(&guest_error_rl, "%s: %s; sending the interrupt again (%"
				     PRIu64 " so far)", d->name, unread ?
				     "the driver has not read InterruptStatus since its interrupt" :
				     "a queue is owed an interrupt its driver has not taken",
				     d->interrupts_resent);
		virtio_mmio_pulse(d);
	}
	if (irq_watch_wanted(d))
		irq_watch_arm(d);
	return unread || owed;
}

/* The watchdog's timer fired: one look. */
static void virtio_mmio_irq_timer(struct event_source *src, uint32_t events)
{
	struct virtio_mmio_dev *d = container_of(src, struct virtio_mmio_dev, irq_watch_src);
	uint64_t expirations;

	(void)events;
	if (read(src->fd, &expirations, sizeof(expirations)) < 0 && errno == EAGAIN)
		return;
	pthread_mutex_lock(&d->lock);
	virtio_mmio_irq_watch(d);
	pthread_mutex_unlock(&d->lock);
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

/*
 * DRIVER_OK or a resume: gives the back-end the accepted features, then every ready
 * queue. Not while the VM or an absent back-end holds the queues (see mmio.h).
 */
static void virtio_mmio_start_queues(struct virtio_mmio_dev *d, bool resume)
{
	const struct virtio_backend_ops *be = d->backend->ops;
	int ret;

	if (d->vm_paused || d->backend_away)
		return;
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
		d->q[q].watch_owed = false;
		if (virtio_mmio_start_queue(d, q, resume)) {
			virtio_mmio_set_needs_reset(d, "the device could not start");
			return;
		}
	}
	if (d->irq_direct)
		irq_watch_arm(d);
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

/*
 * Restarts a live device's queues once nothing holds them, each kicked once; then
 * the interrupt a back-end that came back owes (see virtio_mmio_backend_returned).
 */
static void virtio_mmio_restart(struct virtio_mmio_dev *d)
{
	if (d->running || d->vm_paused || d->backend_away)
		return;
	if (virtio_mmio_is_active(d))
		virtio_mmio_start_queues(d, true);
	if (d->backend_returned && d->running)
		virtio_mmio_raise(d, VIRTIO_MMIO_INT_VRING);
	d->backend_returned = false;
}

void virtio_mmio_pause(struct virtio_mmio_dev *d)
{
	d->vm_paused = true;
	virtio_mmio_stop_queues(d);
}

void virtio_mmio_backend_away(struct virtio_mmio_dev *d)
{
	d->backend_away = true;
	virtio_mmio_stop_queues(d);
}

void virtio_mmio_backend_returned(struct virtio_mmio_dev *d)
{
	if (!d->backend_away)
		return;
	d->backend_away = false;
	d->backend_returned = true;
	virtio_mmio_restart(d);
}

void virtio_mmio_resume(struct virtio_mmio_dev *d)
{
	bool loaded = d->load_pending;

	d->load_pending = false;
	d->vm_paused = false;
	virtio_mmio_restart(d);
	if (irq_watch_wanted(d))
		irq_watch_arm(d);
	if (!loaded)
		return;
	/*
	 * The first resume after a load: one edge, so the driver looks at whatever the
	 * source left pending — a cause it had not acknowledged (its interrupt may have been
	 * in flight), or in direct mode used buffers a back-end signalled. At worst the
	 * handler finds nothing new once.
	 */
	if (d->isr || (d->irq_direct && virtio_mmio_is_active(d)))
		virtio_mmio_pulse(d);
	if (d->ops->loaded)
		d->ops->loaded(d);
}

uint64_t virtio_mmio_eventfd_notifies(const struct virtio_mmio_dev *d)
{
	uint64_t n = 0;

	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		if (d->q[q].kick_bound)
			n += __atomic_load_n(&d->q[q].call.kicks, __ATOMIC_RELAXED);
	return n;
}

void virtio_mmio_log_queues(struct virtio_mmio_dev *d)
{
	unsigned int logged = 0;

	pthread_mutex_lock(&d->lock);
	for (unsigned int q = 0; q < d->ops->nqueues; q++) {
		struct virtq_view v;
		char line[256];

		if (!queue_view(d, q, &v))
			continue;
		v.device_side = false;	/* the transport's copy of the positions may be stale */
		virtq_view_format(&v, line, sizeof(line));
		log_notice("%s: queue %u: %s; %s%s", d->name, q, line,
			   d->q[q].started ? "served" : "not started",
			   d->backend_away ? " (its back-end is away)" : "");
		logged++;
	}
	log_notice("%s: status 0x%x, InterruptStatus 0x%x, %" PRIu64 " interrupts sent by the "
		   "transport (%" PRIu64 " of them again, lost), %s interrupts%s", d->name,
		   d->status, d->isr, d->interrupts, d->interrupts_resent,
		   d->irq_direct ? "back-end" : "transport", logged ? "" : ", no queue ready");
	if (d->ops->log_state)
		d->ops->log_state(d);
	pthread_mutex_unlock(&d->lock);
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
		d->isr_reads++;
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
	d->vm_paused = d->backend_away = d->backend_returned = false;
	d->irq_direct = backend->ops->signals_irqfd;
	d->device_features = (device_features | TRANSPORT_FEATURES) &
			     backend->ops->features(backend);
	d->irq_fd = -1;
	d->irq_watch_src = (struct event_source){ .fd = -1, .fn = virtio_mmio_irq_timer };
	d->irq_watch_armed = false;
	d->isr_reads = d->isr_reads_armed = d->interrupts_resent = 0;
	d->drop_interrupt = drop_interrupt_for(name);
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
	if (host->loop) {
		d->irq_watch_src.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (d->irq_watch_src.fd < 0)
			return -errno;
		ret = event_loop_add(host->loop, &d->irq_watch_src, EPOLLIN);
		if (ret) {
			close(d->irq_watch_src.fd);
			d->irq_watch_src.fd = -1;
			return ret;
		}
	}

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
	if (d->irq_watch_src.fd >= 0) {
		event_loop_remove_sync(d->host->loop, &d->irq_watch_src);
		close(d->irq_watch_src.fd);
		d->irq_watch_src.fd = -1;
	}
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

/* ---- Migration ---- */

/*
 * What virtio_mmio_save() writes and virtio_mmio_load() reads (layout in
 * virtio/mmio.h and docs/migration.md), in one place so a load can check it
 * whole before anything changes, and put it back if the model refuses.
 */
struct mmio_regs {
	uint64_t device_features, driver_features;
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint32_t status, isr, config_generation;
	struct virtq_state queues[VIRTIO_MMIO_MAX_QUEUES];
};

/* The status bits a driver can set (VIRTIO 1.x §2.1) plus the device's NEEDS_RESET. */
#define STATUS_KNOWN \
	(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK | \
	 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)

static void mmio_regs_get(const struct virtio_mmio_dev *d, struct mmio_regs *r)
{
	r->device_features = d->device_features;
	r->driver_features = d->driver_features;
	r->device_features_sel = d->device_features_sel;
	r->driver_features_sel = d->driver_features_sel;
	r->queue_sel = d->queue_sel;
	r->status = d->status;
	r->isr = d->isr;
	r->config_generation = d->config_generation;
	memcpy(r->queues, d->queues, sizeof(r->queues));
}

/* Commits r into d; device_features stay this device's own (what it can serve). */
static void mmio_regs_set(struct virtio_mmio_dev *d, const struct mmio_regs *r)
{
	d->driver_features = r->driver_features;
	d->device_features_sel = r->device_features_sel;
	d->driver_features_sel = r->driver_features_sel;
	d->queue_sel = r->queue_sel;
	d->status = r->status;
	d->isr = r->isr;
	d->config_generation = r->config_generation;
	memcpy(d->queues, r->queues, sizeof(d->queues));
}

static void put_queue(struct sbuf *out, const struct virtq_state *s)
{
	sbuf_put_u16(out, s->size);
	sbuf_put_u64(out, s->desc_gpa);
	sbuf_put_u64(out, s->avail_gpa);
	sbuf_put_u64(out, s->used_gpa);
	sbuf_put_u8(out, s->ready);
	sbuf_put_u8(out, s->event_idx);
	sbuf_put_u8(out, s->indirect);
	sbuf_put_u16(out, s->last_avail_idx);
	sbuf_put_u16(out, s->used_idx);
	sbuf_put_u16(out, s->signalled_used);
	sbuf_put_u8(out, s->signalled_used_valid);
}

static void get_queue(struct sbuf *in, struct virtq_state *s)
{
	s->size = sbuf_get_u16(in);
	s->desc_gpa = sbuf_get_u64(in);
	s->avail_gpa = sbuf_get_u64(in);
	s->used_gpa = sbuf_get_u64(in);
	s->ready = sbuf_get_bool(in);
	s->event_idx = sbuf_get_bool(in);
	s->indirect = sbuf_get_bool(in);
	s->last_avail_idx = sbuf_get_u16(in);
	s->used_idx = sbuf_get_u16(in);
	s->signalled_used = sbuf_get_u16(in);
	s->signalled_used_valid = sbuf_get_bool(in);
}

int virtio_mmio_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	struct sbuf model;
	int ret = 0;

	if (d->running) {
		log_error("%s: cannot save a device whose queues run — pause it first", d->name);
		return -EBUSY;
	}
	sbuf_put_u32(out, VIRTIO_MMIO_STATE_VERSION);
	sbuf_put_u32(out, d->ops->device_id);
	sbuf_put_u32(out, d->ops->nqueues);
	sbuf_put_u32(out, d->config_size);
	sbuf_put_u16(out, d->ops->queue_max_size);
	sbuf_put_u8(out, d->irq_direct);
	sbuf_put_u64(out, d->device_features);
	sbuf_put_u64(out, d->driver_features);
	sbuf_put_u32(out, d->device_features_sel);
	sbuf_put_u32(out, d->driver_features_sel);
	sbuf_put_u32(out, d->queue_sel);
	sbuf_put_u32(out, d->status);
	sbuf_put_u32(out, d->isr);
	sbuf_put_u32(out, d->config_generation);
	sbuf_put_bytes(out, d->config, d->config_size);
	for (unsigned int q = 0; q < d->ops->nqueues; q++)
		put_queue(out, &d->queues[q]);

	/* The model's bytes, length-prefixed, so the transport can hand the model exactly those. */
	sbuf_init_writer(&model);
	if (d->ops->save)
		ret = d->ops->save(d, &model);
	if (!ret)
		ret = sbuf_error(&model);
	if (!ret && model.len > UINT32_MAX)
		ret = -EFBIG;
	if (!ret) {
		sbuf_put_u32(out, (uint32_t)model.len);
		sbuf_put_bytes(out, model.data, model.len);
		ret = sbuf_error(out);
	}
	sbuf_free(&model);
	if (ret)
		log_error("%s: cannot save the device's state: %s", d->name, strerror(-ret));
	return ret;
}

/* Says why a load is refused (the stream came from another build or another device). */
static int load_refuse(const struct virtio_mmio_dev *d, int err, const char *why)
{
	log_error("%s: the incoming device state does not fit: %s — start the destination with "
		  "the same device options as the source", d->name, why);
	return err;
}

/* Checks a loaded queue as the driver's writes are checked (QueueNum, QueueReady). */
static const char *check_queue(const struct virtio_mmio_dev *d, const struct virtq_state *s)
{
	if (s->size > d->ops->queue_max_size)
		return "a queue is larger than this device allows";
	if (!s->ready)
		return NULL;
	if (virtq_check_rings(d->host->mem, s))
		return "a ready queue has an invalid size or rings outside guest RAM";
	if (s->event_idx && !(d->device_features & (1ULL << VIRTIO_RING_F_EVENT_IDX)))
		return "a queue uses EVENT_IDX, which this device does not offer";
	if (s->indirect && !(d->device_features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC)))
		return "a queue uses INDIRECT_DESC, which this device does not offer";
	return NULL;
}

/* Checks loaded registers as guest input; NULL if they are usable, else why not. */
static const char *check_regs(const struct virtio_mmio_dev *d, const struct mmio_regs *r)
{
	if (r->status & ~STATUS_KNOWN)
		return "the status has bits no driver can set";
	if (r->isr & ~(uint32_t)(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG))
		return "InterruptStatus has unknown bits";
	if ((r->status & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !(r->driver_features & (1ULL << VIRTIO_F_VERSION_1)))
		return "the driver's features lack VERSION_1";
	if ((r->status & VIRTIO_CONFIG_S_FEATURES_OK) && (r->driver_features & ~d->device_features))
		return "the driver accepted features this device does not offer here";
	if ((r->status & VIRTIO_CONFIG_S_DRIVER_OK) && !(r->status & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !(r->status & VIRTIO_CONFIG_S_NEEDS_RESET))
		return "the device is live without FEATURES_OK";
	for (unsigned int q = 0; q < d->ops->nqueues; q++) {
		const char *bad = check_queue(d, &r->queues[q]);

		if (bad)
			return bad;
	}
	return NULL;
}

int virtio_mmio_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	uint8_t config[VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG], config_old[sizeof(config)];
	struct mmio_regs r = { 0 }, old;
	struct sbuf model;
	const void *model_bytes;
	const char *bad;
	uint32_t version, id, nq, csize, model_len;
	uint16_t qmax;
	bool src_direct;
	int ret;

	if (d->running) {
		log_error("%s: cannot load state into a device whose queues run", d->name);
		return -EBUSY;
	}
	version = sbuf_get_u32(in);
	if (!sbuf_error(in) && version != VIRTIO_MMIO_STATE_VERSION) {
		log_error("%s: the incoming device state has format version %u; this build reads "
			  "%u — migrate between matching builds", d->name, version,
			  VIRTIO_MMIO_STATE_VERSION);
		return -EPROTONOSUPPORT;
	}
	id = sbuf_get_u32(in);
	nq = sbuf_get_u32(in);
	csize = sbuf_get_u32(in);
	qmax = sbuf_get_u16(in);
	src_direct = sbuf_get_bool(in);
	if (sbuf_error(in))
		return load_refuse(d, sbuf_error(in), "it is truncated");
	if (id != d->ops->device_id)
		return load_refuse(d, -EINVAL, "it is another kind of device");
	if (nq != d->ops->nqueues)
		return load_refuse(d, -EINVAL, "the device has another number of queues");
	if (csize != d->config_size)
		return load_refuse(d, -EINVAL, "the config space has another size");
	if (qmax != d->ops->queue_max_size)
		return load_refuse(d, -EINVAL, "the queues have another maximum size");

	/* device_features: the source's offer, for the record; this device keeps its own. */
	r.device_features = sbuf_get_u64(in);
	r.driver_features = sbuf_get_u64(in);
	r.device_features_sel = sbuf_get_u32(in);
	r.driver_features_sel = sbuf_get_u32(in);
	r.queue_sel = sbuf_get_u32(in);
	r.status = sbuf_get_u32(in);
	r.isr = sbuf_get_u32(in);
	r.config_generation = sbuf_get_u32(in);
	sbuf_get_bytes(in, config, csize);
	for (unsigned int q = 0; q < nq; q++)
		get_queue(in, &r.queues[q]);
	model_len = sbuf_get_u32(in);
	model_bytes = sbuf_get_ptr(in, model_len);
	ret = sbuf_finish(in);
	if (ret)
		return load_refuse(d, ret, ret == -EBADMSG ? "it is truncated or malformed" :
				   "it cannot be read");
	bad = check_regs(d, &r);
	if (bad)
		return load_refuse(d, -EINVAL, bad);
	if (!d->ops->load && model_len)
		return load_refuse(d, -EINVAL, "it holds model state this device does not know");

	/*
	 * Interrupts sent by a back-end that wrote the irqfd itself are not in the source's
	 * InterruptStatus (mmio.h). A live device that lands in the level mode reports them
	 * as a used-buffer cause, so the driver's handler reaps its queues; the resume then
	 * sends the edge (virtio_mmio_resume).
	 */
	if (src_direct && !d->irq_direct && status_live(r.status))
		r.isr |= VIRTIO_MMIO_INT_VRING;

	/*
	 * Commit, keeping what was there in case the back-end or the model refuses. A
	 * device without config space (rng) has d->config NULL: no memcpy from or to it.
	 */
	mmio_regs_get(d, &old);
	if (d->config_size)
		memcpy(config_old, d->config, d->config_size);
	mmio_regs_set(d, &r);
	if (d->config_size)
		memcpy(d->config, config, d->config_size);

	if (virtio_mmio_is_active(d) && d->backend->ops->set_features) {
		ret = d->backend->ops->set_features(d->backend, d->driver_features);
		if (ret) {
			log_error("%s: the %s back-end refuses the driver's features %#llx: %s", d->name,
				  d->backend->ops->name, (unsigned long long)d->driver_features,
				  strerror(-ret));
			goto rollback;
		}
	}
	if (d->ops->load) {
		sbuf_init_reader(&model, model_bytes, model_len);
		d->config_before_load = config_old;
		ret = d->ops->load(d, &model);
		d->config_before_load = NULL;
		if (!ret)
			ret = sbuf_finish(&model);
		if (ret) {
			log_error("%s: the incoming device state does not fit the %s model: %s",
				  d->name, d->ops->name, strerror(-ret));
			goto rollback;
		}
	}
	d->load_pending = true;
	d->vm_paused = true;	/* until the resume that finishes the load */
	return 0;

rollback:
	mmio_regs_set(d, &old);
	if (d->config_size)
		memcpy(d->config, config_old, d->config_size);
	return ret;
}

int virtio_mmio_load_version(const struct virtio_mmio_dev *d, struct sbuf *in, uint32_t version)
{
	uint32_t v = sbuf_get_u32(in);

	if (sbuf_error(in))
		return sbuf_error(in);
	if (v != version) {
		log_error("%s: the incoming %s state has format version %u; this build reads %u — "
			  "migrate between matching builds", d->name, d->ops->name, v, version);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

int virtio_mmio_load_config_same(const struct virtio_mmio_dev *d, const char *what)
{
	if (!d->config_before_load || !memcmp(d->config, d->config_before_load, d->config_size))
		return 0;
	log_error("%s: %s differs between the source and this host — the destination must "
		  "have the same device as the source", d->name, what);
	return -EINVAL;
}
