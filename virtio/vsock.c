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

/* The event queue: its buffers wait for an event the VMM may send later. */
static void vsock_event_kick(struct userspace_backend *ub, unsigned int q)
{
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

static const struct virtio_dev_ops vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.nqueues = 3,
	.queue_max_size = VSOCK_QUEUE_SIZE,
	.destroy = vsock_destroy,
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
