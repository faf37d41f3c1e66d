// SPDX-License-Identifier: GPL-2.0-only
/* virtio-vsock on kernel vhost-vsock (see virtio/vsock.h). */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/vsock.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

static struct virtio_vsock *to_vsock(struct virtio_mmio_dev *d)
{
	return container_of(d, struct virtio_vsock, dev);
}

static struct virtio_vsock *be_to_vsock(struct virtio_backend *be)
{
	return container_of(be, struct virtio_vsock, be);
}

/* The back-end that owns queue q. */
static struct virtio_backend *vsock_owner(struct virtio_vsock *v, unsigned int q)
{
	return q == VSOCK_EVENTQ ? &v->ub.be : v->offload;
}

/* ---- the routing back-end ---- */

static uint64_t vsock_be_features(struct virtio_backend *be)
{
	struct virtio_vsock *v = be_to_vsock(be);

	return v->offload->ops->features(v->offload) & v->ub.be.ops->features(&v->ub.be);
}

static int vsock_be_set_features(struct virtio_backend *be, uint64_t features)
{
	struct virtio_vsock *v = be_to_vsock(be);
	int ret = 0;

	if (v->offload->ops->set_features)
		ret = v->offload->ops->set_features(v->offload, features);
	if (!ret && v->ub.be.ops->set_features)
		ret = v->ub.be.ops->set_features(&v->ub.be, features);
	return ret;
}

static int vsock_be_start(struct virtio_backend *be, unsigned int q, const struct virtq_state *s,
			  int kick_fd, struct virtio_call *call)
{
	struct virtio_backend *owner = vsock_owner(be_to_vsock(be), q);

	return owner->ops->start(owner, q, s, kick_fd, call);
}

static void vsock_be_stop(struct virtio_backend *be, unsigned int q, struct virtq_state *s)
{
	struct virtio_backend *owner = vsock_owner(be_to_vsock(be), q);

	owner->ops->stop(owner, q, s);
}

static const struct virtio_backend_ops vsock_backend_ops = {
	.name = "vhost-vsock",
	.signals_irqfd = true,	/* vhost-vsock writes the irqfd for queues 0 and 1 */
	.features = vsock_be_features,
	.set_features = vsock_be_set_features,
	.start = vsock_be_start,
	.stop = vsock_be_stop,
};

/*
 * Sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET if one is owed (VIRTIO 1.2 §5.10.6.6:
 * after a migration the driver drops its connections and reads guest_cid again)
 * into the next buffer of the event queue; without one it stays owed until the
 * driver adds a buffer (a kick). A buffer too short for the event is returned
 * unused. Device lock held.
 */
static void vsock_send_reset(struct virtio_vsock *v)
{
	struct virtio_vsock_event ev = { .id = htole32(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET) };
	struct virtq *vq = userspace_backend_vq(&v->ub, VSOCK_EVENTQ);
	bool pushed = false;
	struct virtq_chain *c;
	int ret;

	if (!v->reset_pending || !userspace_backend_running(&v->ub, VSOCK_EVENTQ))
		return;
	c = malloc(sizeof(*c));
	if (!c) {
		log_warn("%s: out of memory; the transport-reset event waits for the next kick",
			 v->dev.name);
		return;
	}
	while (v->reset_pending) {
		size_t n;

		ret = virtq_pop(vq, c);
		if (ret < 0) {
			userspace_backend_error(&v->ub, VSOCK_EVENTQ, "malformed event queue");
			break;
		}
		if (ret == 0) {
			virtq_set_notify(vq, true);
			if (virtq_has_work(vq))
				continue;
			break;
		}
		n = c->in_len >= sizeof(ev) ? virtq_chain_write(c, 0, &ev, sizeof(ev)) : 0;
		if (virtq_push(vq, c->head, (uint32_t)n)) {
			userspace_backend_error(&v->ub, VSOCK_EVENTQ, "malformed event queue");
			break;
		}
		pushed = true;
		if (n == sizeof(ev))
			v->reset_pending = false;
	}
	if (pushed)
		userspace_backend_signal(&v->ub, VSOCK_EVENTQ);
	free(c);
}

/* The event queue: its buffers wait for an event the VMM sends (the transport reset). */
static void vsock_event_kick(struct userspace_backend *ub, unsigned int q)
{
	if (q == VSOCK_EVENTQ)
		vsock_send_reset(container_of(ub, struct virtio_vsock, ub));
}

static const struct userspace_backend_ops vsock_event_ops = {
	.queue_kick = vsock_event_kick,
};

/* ---- the device ---- */

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	virtio_mmio_destroy(&v->dev);
	if (v->ub.be.ops)
		v->ub.be.ops->destroy(&v->ub.be);
	if (v->offload)
		v->offload->ops->destroy(v->offload);
	free(v);
}

static void vsock_destroy(struct virtio_mmio_dev *d)
{
	virtio_vsock_destroy(to_vsock(d));
}

/*
 * Migration: the model has nothing beyond its queues (the connections live in
 * the host kernels and do not move). The guest_cid stays this host's: the
 * transport-reset event the destination sends once its queues run
 * (vsock_loaded) makes the driver read it again.
 */
#define VSOCK_STATE_VERSION	1

static int vsock_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	sbuf_put_u32(out, VSOCK_STATE_VERSION);
	return 0;
}

static int vsock_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	struct virtio_vsock *v = to_vsock(d);
	int ret = virtio_mmio_load_version(d, in, VSOCK_STATE_VERSION);

	if (!ret)
		ret = sbuf_finish(in);
	if (ret)
		return ret;
	if (d->config_before_load)
		memcpy(d->config, d->config_before_load, d->config_size);
	v->reset_pending = true;
	return 0;
}

/* After the load's resume: the transport-reset event, now or at the driver's next buffer. */
static void vsock_loaded(struct virtio_mmio_dev *d)
{
	vsock_send_reset(to_vsock(d));
}

static void vsock_reset(struct virtio_mmio_dev *d)
{
	/* A driver that starts over has no connections to drop. */
	to_vsock(d)->reset_pending = false;
}

static const struct virtio_dev_ops vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.nqueues = 3,
	.queue_max_size = VSOCK_QUEUE_SIZE,
	.reset = vsock_reset,
	.destroy = vsock_destroy,
	.save = vsock_save,
	.load = vsock_load,
	.loaded = vsock_loaded,
};

int virtio_vsock_create_with(struct virtio_host *host, const struct vsock_options *o,
			     const char *name, uint64_t base, uint32_t gsi,
			     struct virtio_backend *offload, struct virtio_vsock **out)
{
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	int ret;

	*out = NULL;
	if (!v) {
		offload->ops->destroy(offload);
		return -ENOMEM;
	}
	v->offload = offload;
	v->be.ops = &vsock_backend_ops;
	v->dev.host = host;
	v->config.guest_cid = htole64(o->cid);
	userspace_backend_init(&v->ub, &vsock_event_ops, host->mem, host->loop, &v->dev.lock, 3, 0);
	ret = virtio_mmio_init(&v->dev, &vsock_ops, host, name, base, gsi, 0, &v->config,
			       sizeof(v->config), &v->be);
	if (ret) {
		virtio_vsock_destroy(v);
		return ret;
	}
	*out = v;
	return 0;
}

int virtio_vsock_create(struct virtio_host *host, const struct vsock_options *o, const char *name,
			uint64_t base, uint32_t gsi, struct virtio_vsock **out)
{
	struct virtio_backend *be = NULL;
	char why[160] = "this VMM has no vhost support";
	int ret;

	*out = NULL;
	if (o->cid < VSOCK_CID_MIN || o->cid > VSOCK_CID_MAX) {
		log_error("%s: guest cid %llu is reserved — use 3 to 4294967294", name,
			  (unsigned long long)o->cid);
		return -EINVAL;
	}
	ret = -EOPNOTSUPP;
	if (host->offload && host->offload->vsock)
		ret = host->offload->vsock(host->offload, host->mem, name, o->cid, &be, why,
					   sizeof(why));
	if (ret) {
		if (ret == -EADDRINUSE)
			log_error("%s: guest cid %llu is in use by another VM — pick another cid",
				  name, (unsigned long long)o->cid);
		else
			log_error("%s: kernel vhost-vsock is not usable: %s — load it (modprobe "
				  "vhost_vsock) and give access to /dev/vhost-vsock", name, why);
		return ret;
	}
	ret = virtio_vsock_create_with(host, o, name, base, gsi, be, out);
	if (ret)
		log_error("%s: cannot set up the device: %s — check memory and file limits", name,
			  strerror(-ret));
	return ret;
}
