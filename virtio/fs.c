// SPDX-License-Identifier: GPL-2.0-only
/* virtio-fs on a vhost-user back-end (see virtio/fs.h). */
#include <endian.h>
#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/fs.h"
#include "vmm/base/guest_mem.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

static struct virtio_fs *to_fs(struct virtio_mmio_dev *d)
{
	return container_of(d, struct virtio_fs, dev);
}

const char *virtio_fs_check(const struct fs_options *o)
{
	size_t len;

	if (!o->vhost_user || !o->vhost_user[0])
		return "no vhost-user socket given (vhost-user=PATH)";
	if (!o->tag)
		return "no tag given (tag=NAME, what the guest mounts)";
	len = strlen(o->tag);
	if (len < 1 || len > FS_TAG_MAX)
		return "the tag must be 1 to 36 bytes";
	if (o->queues > FS_REQUEST_QUEUES_MAX)
		return "too many request queues (at most 8)";
	return NULL;
}

unsigned int virtio_fs_nqueues(const struct fs_options *o)
{
	return 1 + (o->queues ? o->queues : 1);
}

uint32_t virtio_fs_fail_chain(const struct virtq_chain *c)
{
	struct fuse_in_header in;
	struct fuse_out_header out = {
		.len = htole32(sizeof(out)),
		.error = (int32_t)htole32((uint32_t)-EIO),
	};

	if (c->in_len < sizeof(out))
		return 0;	/* no reply expected (FORGET), or no room for one */
	if (virtq_chain_read(c, 0, &in, sizeof(in)) == sizeof(in))
		out.unique = in.unique;	/* the driver's own byte order, as it sent it */
	return virtq_chain_write(c, 0, &out, sizeof(out)) == sizeof(out) ? sizeof(out) : 0;
}

void virtio_fs_destroy(struct virtio_fs *f)
{
	if (!f)
		return;
	virtio_mmio_destroy(&f->dev);
	failq_fini(&f->fq);
	if (f->offload)
		f->offload->ops->destroy(f->offload);
	free(f);
}

/*
 * The back-end died (event loop thread, device lock not held): the device
 * needs a reset, and the VMM answers the guest's requests with -EIO from now
 * on (see virtio/fs.h); other devices go on.
 */
static void fs_backend_gone(void *opaque, const char *why)
{
	struct virtio_fs *f = opaque;

	pthread_mutex_lock(&f->dev.lock);
	if (!f->failed) {
		f->failed = true;
		log_error("%s: its vhost-user back-end is gone (%s) — the share's requests fail "
			  "with an I/O error; unmount it in the guest, then restart the back-end "
			  "and the VM", f->dev.name, why);
		virtio_mmio_set_needs_reset(&f->dev, "its vhost-user back-end is gone");
		failq_take_all(&f->fq, f->offload);
	}
	pthread_mutex_unlock(&f->dev.lock);
}

/* Restarted by the driver after the back-end died: its requests fail again. */
static int fs_activate(struct virtio_mmio_dev *d)
{
	struct virtio_fs *f = to_fs(d);

	if (!f->failed)
		return 0;
	for (unsigned int q = 0; q < f->ops.nqueues; q++)
		failq_take(&f->fq, q, NULL, 0);
	return -ENOTCONN;
}

static void fs_reset(struct virtio_mmio_dev *d)
{
	failq_release(&to_fs(d)->fq);
}

static const struct virtio_backend_events fs_backend_events = {
	.disconnected = fs_backend_gone,
};

static void fs_destroy(struct virtio_mmio_dev *d)
{
	virtio_fs_destroy(to_fs(d));
}

/*
 * Migration: the model has only its config space (tag, request queues), which
 * must be the same on the destination; the share's state is the back-end's
 * (DEVICE_STATE, saved by the migration core through the back-end's ops).
 */
#define FS_STATE_VERSION	1

static int fs_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	if (to_fs(d)->failed) {
		log_error("%s: its vhost-user back-end is gone, and with it the guest's open files "
			  "on the share — this VM cannot be migrated; restart it", d->name);
		return -EBUSY;
	}
	sbuf_put_u32(out, FS_STATE_VERSION);
	return 0;
}

static int fs_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	int ret = virtio_mmio_load_version(d, in, FS_STATE_VERSION);

	if (!ret)
		ret = sbuf_finish(in);
	if (!ret)
		ret = virtio_mmio_load_config_same(d, "the share's tag or request queue count");
	return ret;
}

int virtio_fs_create_with(struct virtio_host *host, const struct fs_options *o, const char *name,
			  uint64_t base, uint32_t gsi, struct virtio_backend *offload,
			  struct virtio_fs **out)
{
	struct virtio_fs *f;
	int ret;

	*out = NULL;
	if (virtio_fs_check(o)) {
		offload->ops->destroy(offload);
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		offload->ops->destroy(offload);
		return -ENOMEM;
	}
	f->offload = offload;
	f->dev.host = host;
	/* The tag is NUL-padded, not NUL-terminated: all 36 bytes may be used. */
	memcpy(f->config.tag, o->tag, strlen(o->tag));
	f->config.num_request_queues = htole32(virtio_fs_nqueues(o) - 1);
	f->ops = (struct virtio_dev_ops){
		.name = "virtio-fs",
		.device_id = VIRTIO_ID_FS,
		.nqueues = virtio_fs_nqueues(o),
		.queue_max_size = FS_QUEUE_SIZE,
		.activate = fs_activate,
		.reset = fs_reset,
		.destroy = fs_destroy,
		.save = fs_save,
		.load = fs_load,
	};
	ret = failq_init(&f->fq, &f->dev, f->ops.nqueues, virtio_fs_fail_chain);
	if (!ret)
		ret = virtio_mmio_init(&f->dev, &f->ops, host, name, base, gsi, 0,
				       &f->config, sizeof(f->config), offload);
	if (ret) {
		virtio_fs_destroy(f);
		return ret;
	}
	if (offload->ops->set_events)
		offload->ops->set_events(offload, &fs_backend_events, f);
	*out = f;
	return 0;
}

int virtio_fs_create(struct virtio_host *host, const struct fs_options *o, const char *name,
		     uint64_t base, uint32_t gsi, struct virtio_fs **out)
{
	struct virtio_offload_user ou = {
		.path = o->vhost_user,
		.max_queues = virtio_fs_nqueues(o),
		.base_queues = virtio_fs_nqueues(o),	/* hiprio and the request queues asked for */
		.queue_size = 0,	/* no in-flight area: virtio-fs back-ends have no INFLIGHT_SHMFD */
		.backend_bits = 0,	/* virtio-fs has no device feature the VMM offers */
		/* Its inodes and open files: without DEVICE_STATE the guest would lose them. */
		.state = "the guest's open files and looked-up inodes",
		.state_hint = "virtiofsd 1.13 or later hands them over; QEMU 7.2's C virtiofsd "
			      "cannot",
	};
	struct virtio_backend *be = NULL;
	char why[200] = "this VMM has no vhost-user support";
	const char *bad = virtio_fs_check(o);
	int ret;

	*out = NULL;
	if (bad) {
		log_error("%s: %s — see `vmm run --help` for --fs", name, bad);
		return -EINVAL;
	}
	ret = -EOPNOTSUPP;
	if (host->offload && host->offload->user)
		ret = host->offload->user(host->offload, host->mem, name, host->loop, &ou, &be, why,
					  sizeof(why));
	if (ret) {
		log_error("%s: cannot use the vhost-user back-end at %s: %s — start it first "
			  "(e.g. virtiofsd --socket-path=%s --shared-dir=DIR)", name, o->vhost_user,
			  why, o->vhost_user);
		return ret;
	}
	if (ou.queues < ou.max_queues) {
		log_error("%s: the vhost-user back-end at %s serves %u queues; %u request queue%s "
			  "need %u — ask for fewer (queues=%u)", name, o->vhost_user, ou.queues,
			  ou.max_queues - 1, ou.max_queues > 2 ? "s" : "", ou.max_queues,
			  ou.queues > 1 ? ou.queues - 1 : 1);
		be->ops->destroy(be);
		return -EOPNOTSUPP;
	}
	ret = virtio_fs_create_with(host, o, name, base, gsi, be, out);
	if (ret) {
		log_error("%s: cannot set up the device: %s — check memory and file limits", name,
			  strerror(-ret));
		return ret;
	}
	log_info("%s: tag '%s' served by the vhost-user back-end at %s", name, o->tag,
		 o->vhost_user);
	return 0;
}
