// SPDX-License-Identifier: GPL-2.0-only
/* virtio-blk over a vhost-user back-end (see virtio/blk_user.h). */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "virtio/blk_user.h"
#include "virtio/failq.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

#define BLK_USER_RETRY_MS	200

/* The device feature bits this model passes through (the back-end decides each one). */
#define BLK_USER_FEATURES \
	((1ULL << VIRTIO_BLK_F_SIZE_MAX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) | \
	 (1ULL << VIRTIO_BLK_F_GEOMETRY) | (1ULL << VIRTIO_BLK_F_RO) | \
	 (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH) | \
	 (1ULL << VIRTIO_BLK_F_TOPOLOGY) | (1ULL << VIRTIO_BLK_F_CONFIG_WCE) | \
	 (1ULL << VIRTIO_BLK_F_MQ) | (1ULL << VIRTIO_BLK_F_DISCARD) | \
	 (1ULL << VIRTIO_BLK_F_WRITE_ZEROES))

struct blk_user {
	struct virtio_mmio_dev dev;
	struct virtio_dev_ops ops;		/* per device: nqueues from the back-end */
	struct virtio_backend *be;
	struct virtio_blk_config config;	/* little-endian, as the back-end gave it */
	char *name, *path;
	unsigned int reconnect_s;

	bool failed;				/* the back-end is gone for good: fail requests */
	struct failq_set fq;			/* its queues then */

	int timer_fd;				/* reconnect attempts */
	struct event_source timer;
	bool timer_watched, reconnecting;
	struct timespec deadline;
	struct log_ratelimit rl;
};

static struct blk_user *to_bu(struct virtio_mmio_dev *d)
{
	return container_of(d, struct blk_user, dev);
}

uint32_t blk_user_config_len(uint64_t features)
{
	/* Each group ends where the next begins: the padding after a group is its own. */
	if (features & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES))
		return offsetof(struct virtio_blk_config, max_secure_erase_sectors);
	if (features & (1ULL << VIRTIO_BLK_F_DISCARD))
		return offsetof(struct virtio_blk_config, max_write_zeroes_sectors);
	return offsetof(struct virtio_blk_config, max_discard_sectors);
}

/* Reads the back-end's config space into c (zeroed past what it was asked for). */
static int blk_user_read_config(struct blk_user *b, struct virtio_blk_config *c)
{
	memset(c, 0, sizeof(*c));
	return b->be->ops->get_config(b->be, 0, c, blk_user_config_len(b->be->ops->features(b->be)));
}

uint32_t blk_user_fail_chain(const struct virtq_chain *c)
{
	/* The status byte is the last writable byte of the chain. */
	for (unsigned int i = c->nout + c->nin; i > c->nout; i--) {
		const struct iovec *v = &c->iov[i - 1];

		if (v->iov_len) {
			((uint8_t *)v->iov_base)[v->iov_len - 1] = VIRTIO_BLK_S_IOERR;
			virtq_mark_dirty_host(c->mem, (uint8_t *)v->iov_base + v->iov_len - 1, 1);
			return 1;
		}
	}
	return 0;
}

/* The back-end is gone for good (lock held): NEEDS_RESET, its requests fail. */
static void blk_user_fail(struct blk_user *b, const char *why)
{
	b->failed = true;
	log_error("%s: %s; its requests fail with an I/O error until the back-end at %s is "
		  "restarted%s", b->name, why, b->path,
		  b->reconnect_s ? "" : " (reconnect=SECONDS lets the VMM wait for it)");
	virtio_mmio_set_needs_reset(&b->dev, "its vhost-user back-end is gone");
	failq_take_all(&b->fq, b->be);
}

static void blk_user_stop_timer(struct blk_user *b)
{
	struct itimerspec off = { 0 };

	timerfd_settime(b->timer_fd, 0, &off, NULL);
	b->reconnecting = false;
}

static bool past(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void blk_user_timer_event(struct event_source *src, uint32_t events)
{
	struct blk_user *b = container_of(src, struct blk_user, timer);
	uint64_t n;
	int ret;

	if (read(b->timer_fd, &n, sizeof(n)) != sizeof(n))
		return;
	pthread_mutex_lock(&b->dev.lock);
	if (!b->reconnecting)
		goto out;
	ret = b->be->ops->reconnect(b->be);
	if (!ret) {
		blk_user_stop_timer(b);
		log_info("%s: reconnected to the vhost-user back-end at %s; the device resumes%s",
			 b->name, b->path, b->dev.vm_paused ? " when the VM does" : "");
		/*
		 * The queues restart (and the driver gets one interrupt, for used buffers the
		 * dead back-end may have published without signalling them) — now, or, if the
		 * VM is paused (vm.pause, a migration's stop-and-copy), at the VM's resume.
		 */
		virtio_mmio_backend_returned(&b->dev);
	} else if (past(&b->deadline)) {
		blk_user_stop_timer(b);
		blk_user_fail(b, "its vhost-user back-end did not come back in time");
	}
out:
	pthread_mutex_unlock(&b->dev.lock);
}

/* ---- the back-end's events ---- */

static void blk_user_disconnected(void *opaque, const char *why)
{
	struct blk_user *b = opaque;

	pthread_mutex_lock(&b->dev.lock);
	if (b->failed || b->reconnecting)
		goto out;
	if (b->reconnect_s && b->be->ops->reconnect) {
		struct itimerspec t = {
			.it_interval = timespec_from_ms(BLK_USER_RETRY_MS),
			.it_value = timespec_from_ms(BLK_USER_RETRY_MS),
		};

		log_warn("%s: %s; the device waits up to %u s for it to come back at %s", b->name,
			 why, b->reconnect_s, b->path);
		virtio_mmio_backend_away(&b->dev);
		clock_gettime(CLOCK_MONOTONIC, &b->deadline);
		b->deadline.tv_sec += b->reconnect_s;
		b->reconnecting = true;
		timerfd_settime(b->timer_fd, 0, &t, NULL);
	} else {
		blk_user_fail(b, why);
	}
out:
	pthread_mutex_unlock(&b->dev.lock);
}

static void blk_user_config_changed(void *opaque)
{
	struct blk_user *b = opaque;
	struct virtio_blk_config c;

	pthread_mutex_lock(&b->dev.lock);
	if (blk_user_read_config(b, &c) == 0) {
		b->config = c;
		log_info("%s: the back-end's config changed (capacity %llu sectors)", b->name,
			 (unsigned long long)le64toh(c.capacity));
		virtio_mmio_signal_config(&b->dev);
	}
	pthread_mutex_unlock(&b->dev.lock);
}

static const struct virtio_backend_events blk_user_events = {
	.config_changed = blk_user_config_changed,
	.disconnected = blk_user_disconnected,
};

/* ---- the transport's hooks ---- */

static void blk_user_config_write(struct virtio_mmio_dev *d, uint32_t offset, const void *data,
				  uint32_t len)
{
	struct blk_user *b = to_bu(d);

	if (b->be->ops->set_config(b->be, offset, data, len))
		log_warn_ratelimited(&b->rl, "%s: the back-end refuses a config write at %u",
				     b->name, offset);
}

static int blk_user_activate(struct virtio_mmio_dev *d)
{
	struct blk_user *b = to_bu(d);

	/* Restarted by the driver after the back-end died: its requests fail again. */
	if (b->failed) {
		for (unsigned int q = 0; q < b->ops.nqueues; q++)
			failq_take(&b->fq, q, NULL, 0);
		return -ENOTCONN;
	}
	return 0;
}

static void blk_user_reset(struct virtio_mmio_dev *d)
{
	struct blk_user *b = to_bu(d);

	failq_release(&b->fq);
	if (b->be->ops->reset)
		b->be->ops->reset(b->be);
}

/*
 * Migration: the requests and queue positions the back-end holds are its own
 * state (DEVICE_STATE, which the migration core moves through the back-end's
 * ops); the model adds nothing but a check that the destination's back-end
 * serves the same disk: its config space (capacity, geometry, limits) must
 * equal the source's, but for the write-cache byte the driver may have set. A
 * disk whose back-end is gone or being waited for cannot move: what that
 * back-end held is not to be had.
 */
#define BLK_USER_STATE_VERSION	1

static int blk_user_save(struct virtio_mmio_dev *d, struct sbuf *out)
{
	struct blk_user *b = to_bu(d);

	if (b->failed || b->reconnecting) {
		log_error("%s: its vhost-user back-end is %s; the disk's requests cannot be "
			  "migrated — restart the back-end (reconnect=SECONDS) and try again",
			  b->name, b->failed ? "gone" : "being waited for");
		return -EBUSY;
	}
	sbuf_put_u32(out, BLK_USER_STATE_VERSION);
	return 0;
}

static int blk_user_load(struct virtio_mmio_dev *d, struct sbuf *in)
{
	const struct virtio_blk_config *local = d->config_before_load;
	struct blk_user *b = to_bu(d);
	struct virtio_blk_config src;
	int ret = virtio_mmio_load_version(d, in, BLK_USER_STATE_VERSION);

	if (!ret)
		ret = sbuf_finish(in);
	if (ret || !local)
		return ret;
	src = b->config;
	src.wce = local->wce;
	if (memcmp(&src, local, sizeof(src))) {
		log_error("%s: the disk the back-end at %s serves (%llu sectors) is not the "
			  "source's (%llu sectors, or another geometry) — give the destination's "
			  "back-end the same image", b->name, b->path,
			  (unsigned long long)le64toh(local->capacity),
			  (unsigned long long)le64toh(src.capacity));
		return -EINVAL;
	}
	return 0;
}

static void blk_user_destroy_dev(struct virtio_mmio_dev *d)
{
	struct blk_user *b = to_bu(d);

	virtio_mmio_destroy(&b->dev);
	failq_fini(&b->fq);
	if (b->dev.host && b->dev.host->loop && b->timer_watched)
		event_loop_remove_sync(b->dev.host->loop, &b->timer);
	if (b->be)
		b->be->ops->destroy(b->be);
	if (b->timer_fd >= 0)
		close(b->timer_fd);
	free(b->name);
	free(b->path);
	free(b);
}

int blk_user_create(struct virtio_host *host, const struct blk_options *o, const char *name,
		    uint64_t base, uint32_t gsi, struct virtio_mmio_dev **out)
{
	struct virtio_offload_user ou = {
		.path = o->vhost_user,
		.max_queues = BLK_USER_MAX_QUEUES,
		.queue_size = BLK_USER_QUEUE_SIZE,
		.backend_bits = ~0ULL,	/* every device bit is the back-end's to offer */
	};
	char why[200] = "this VMM has no vhost-user support";
	struct blk_user *b;
	unsigned int nq = 1;
	int ret;

	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->timer_fd = -1;
	b->name = strdup(name);
	b->path = strdup(o->vhost_user);
	b->reconnect_s = o->reconnect;
	b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (!b->name || !b->path || b->timer_fd < 0) {
		ret = b->timer_fd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	ret = -EOPNOTSUPP;
	if (host->offload && host->offload->user)
		ret = host->offload->user(host->offload, host->mem, b->name, host->loop, &ou,
					  &b->be, why, sizeof(why));
	if (ret) {
		log_error("%s: the vhost-user back-end is not usable: %s — start it first (e.g. "
			  "vmm-vhost-user-blk --socket %s --image IMAGE)", name, why, o->vhost_user);
		goto fail;
	}
	if (!b->be->ops->get_config ||
	    (ret = blk_user_read_config(b, &b->config)) != 0) {
		log_error("%s: the vhost-user back-end at %s gives no config space (%s) — a "
			  "vhost-user-blk back-end must offer VHOST_USER_PROTOCOL_F_CONFIG", name,
			  o->vhost_user, strerror(ret ? -ret : EOPNOTSUPP));
		ret = -EOPNOTSUPP;
		goto fail;
	}
	if (b->be->ops->features(b->be) & (1ULL << VIRTIO_BLK_F_MQ))
		nq = MIN(MAX(le16toh(b->config.num_queues), 1u), ou.queues);
	b->ops = (struct virtio_dev_ops){
		.name = "vhost-user-blk",
		.device_id = VIRTIO_ID_BLOCK,
		.nqueues = nq,
		.queue_max_size = BLK_USER_QUEUE_SIZE,
		.config_write = blk_user_config_write,
		.activate = blk_user_activate,
		.reset = blk_user_reset,
		.destroy = blk_user_destroy_dev,
		.save = blk_user_save,
		.load = blk_user_load,
	};
	if (nq > 1)
		b->config.num_queues = htole16((uint16_t)nq);
	ret = failq_init(&b->fq, &b->dev, nq, blk_user_fail_chain);
	if (ret)
		goto fail;
	b->timer = (struct event_source){ .fd = b->timer_fd, .fn = blk_user_timer_event };
	ret = event_loop_add(host->loop, &b->timer, EPOLLIN);
	if (ret)
		goto fail;
	b->timer_watched = true;
	b->dev.host = host;
	ret = virtio_mmio_init(&b->dev, &b->ops, host, b->name, base, gsi, BLK_USER_FEATURES,
			       &b->config, sizeof(b->config), b->be);
	if (ret) {
		log_error("%s: cannot set up the device: %s", name, strerror(-ret));
		goto fail;
	}
	b->be->ops->set_events(b->be, &blk_user_events, b);
	log_info("%s: vhost-user-blk on %s: %llu sectors, %u queue%s", name, o->vhost_user,
		 (unsigned long long)le64toh(b->config.capacity), nq, nq > 1 ? "s" : "");
	*out = &b->dev;
	return 0;
fail:
	b->dev.host = host;
	blk_user_destroy_dev(&b->dev);
	return ret;
}
