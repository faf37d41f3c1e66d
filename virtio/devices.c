// SPDX-License-Identifier: GPL-2.0-only
/*
 * The table of virtio device kinds (see virtio/devices.h): one adapter per
 * kind from the common arguments to the device's own constructor.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "virtio/blk.h"
#include "virtio/blk_user.h"
#include "virtio/console.h"
#include "virtio/devices.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

static int create_blk(const struct virtio_device_args *a, struct virtio_mmio_dev **out)
{
	const struct blk_options *o = a->options;
	struct virtio_blk *b;
	int ret;

	if (o->vhost_user)
		return blk_user_create(a->host, o, a->name, a->base, a->gsi, out);
	ret = virtio_blk_create(a->host, a->options, a->name, a->base, a->gsi, &b);

	*out = ret ? NULL : &b->dev;
	return ret;
}

static int create_net(const struct virtio_device_args *a, struct virtio_mmio_dev **out)
{
	struct virtio_net *n;
	int ret = virtio_net_create(a->host, a->options, a->name, a->base, a->gsi, &n);

	*out = ret ? NULL : &n->dev;
	return ret;
}

static int create_rng(const struct virtio_device_args *a, struct virtio_mmio_dev **out)
{
	struct virtio_rng *r;
	int ret = virtio_rng_create(a->host, a->name, a->base, a->gsi, &r);

	*out = ret ? NULL : &r->dev;
	return ret;
}

static int create_console(const struct virtio_device_args *a, struct virtio_mmio_dev **out)
{
	struct virtio_console *c;
	int ret = virtio_console_create(a->host, a->options, a->name, a->base, a->gsi, &c);

	*out = ret ? NULL : &c->dev;
	return ret;
}

static int create_vsock(const struct virtio_device_args *a, struct virtio_mmio_dev **out)
{
	struct virtio_vsock *v;
	int ret = virtio_vsock_create(a->host, a->options, a->name, a->base, a->gsi, &v);

	*out = ret ? NULL : &v->dev;
	return ret;
}

static const struct virtio_device_kind kinds[] = {
	{ "blk", create_blk },
	{ "net", create_net },
	{ "rng", create_rng },
	{ "console", create_console },
	{ "vsock", create_vsock },
};

const struct virtio_device_kind *virtio_device_kinds(unsigned int *n)
{
	*n = ARRAY_SIZE(kinds);
	return kinds;
}

const struct virtio_device_kind *virtio_device_kind_find(const char *kind)
{
	for (size_t i = 0; kind && i < ARRAY_SIZE(kinds); i++)
		if (strcmp(kinds[i].kind, kind) == 0)
			return &kinds[i];
	return NULL;
}

int virtio_device_create(const char *kind, const struct virtio_device_args *a,
			 struct virtio_mmio_dev **out)
{
	const struct virtio_device_kind *k = virtio_device_kind_find(kind);

	*out = NULL;
	if (!k) {
		log_error("%s: no virtio device of kind '%s' — use blk, net, rng, console or vsock",
			  a->name ? a->name : "virtio", kind ? kind : "(none)");
		return -EINVAL;
	}
	if (!a->options && k->create != create_rng) {
		log_error("%s: no options given for a %s device — this is a bug in the caller",
			  a->name ? a->name : "virtio", k->kind);
		return -EINVAL;
	}
	return k->create(a, out);
}

void virtio_device_destroy(struct virtio_mmio_dev *d)
{
	if (d && d->ops && d->ops->destroy)
		d->ops->destroy(d);
}
