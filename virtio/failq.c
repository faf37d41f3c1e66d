// SPDX-License-Identifier: GPL-2.0-only
/* Queues whose vhost-user back-end is gone: every request fails (see virtio/failq.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "virtio/failq.h"
#include "vmm/base/util.h"

int failq_init(struct failq_set *s, struct virtio_mmio_dev *dev, unsigned int nqueues,
	       failq_chain_fn fail_chain)
{
	memset(s, 0, sizeof(*s));
	s->dev = dev;
	s->fail_chain = fail_chain;
	s->nqueues = nqueues;
	s->q = calloc(nqueues, sizeof(*s->q));
	s->chain = malloc(sizeof(*s->chain));
	s->lost = calloc(VIRTQ_MAX_SIZE, sizeof(*s->lost));
	if (!s->q || !s->chain || !s->lost) {
		failq_fini(s);
		return -ENOMEM;
	}
	return 0;
}

/* sync: the device is being freed (no lock held), see event_loop_remove_sync(). */
static void failq_unwatch(struct failq_set *s, bool sync)
{
	struct event_loop *loop = s->dev && s->dev->host ? s->dev->host->loop : NULL;

	for (unsigned int q = 0; s->q && q < s->nqueues; q++) {
		if (s->q[q].watched && loop)
			(sync ? event_loop_remove_sync : event_loop_remove)(loop, &s->q[q].kick);
		s->q[q].watched = false;
		memset(&s->q[q].vq, 0, sizeof(s->q[q].vq));
	}
}

void failq_release(struct failq_set *s)
{
	failq_unwatch(s, false);
}

void failq_fini(struct failq_set *s)
{
	failq_unwatch(s, true);
	free(s->q);
	free(s->chain);
	free(s->lost);
	s->q = NULL;
	s->chain = NULL;
	s->lost = NULL;
}

/* Finishes one chain with the device's error answer and puts it in the used ring. */
static int failq_finish(struct failq *fq, uint16_t head)
{
	uint32_t written = fq->set->fail_chain(fq->set->chain);

	return virtq_push(&fq->vq, head, written);
}

/*
 * Fails every chain waiting on fq's ring (lock held); raises the interrupt if
 * due. Then asks for kicks again: the dead back-end may have left them off
 * (VRING_USED_F_NO_NOTIFY while it was busy, or with EVENT_IDX an avail_event
 * behind what it took), and the driver would never kick for its next
 * request, which would hang instead of failing.
 */
static void failq_pending(struct failq *fq)
{
	struct failq_set *s = fq->set;
	bool pushed = false;
	int ret;

	for (;;) {
		while ((ret = virtq_pop(&fq->vq, s->chain)) == 1) {
			if (failq_finish(fq, s->chain->head)) {
				ret = -EIO;
				break;
			}
			pushed = true;
		}
		if (ret < 0)
			break;	/* a broken ring: the driver must reset the device */
		virtq_set_notify(&fq->vq, true);
		if (!virtq_has_work(&fq->vq))
			break;	/* nothing slipped in before the driver saw the request */
	}
	if (pushed && virtq_should_notify(&fq->vq))
		s->dev->q[fq->q].call.raise(&s->dev->q[fq->q].call);
}

static void failq_kick_event(struct event_source *src, uint32_t events)
{
	struct failq *fq = container_of(src, struct failq, kick);
	struct virtio_mmio_dev *dev = fq->set->dev;
	eventfd_t v;

	(void)events;
	pthread_mutex_lock(&dev->lock);
	eventfd_read(src->fd, &v);
	if (fq->watched && fq->vq.ready)
		failq_pending(fq);
	pthread_mutex_unlock(&dev->lock);
}

void failq_take(struct failq_set *s, unsigned int q, const uint16_t *lost, unsigned int nlost)
{
	struct failq *fq;
	bool pushed = false;

	if (q >= s->nqueues || !s->dev->queues[q].ready)
		return;
	fq = &s->q[q];
	fq->set = s;
	fq->q = q;
	if (virtq_start_from(&fq->vq, s->dev->host->mem, &s->dev->queues[q]))
		return;
	for (unsigned int i = 0; i < nlost; i++) {
		if (virtq_pop_head(&fq->vq, lost[i], s->chain) != 1 || failq_finish(fq, lost[i]))
			break;
		pushed = true;
	}
	/* The avail entries of the chains it held come first: they are done now. */
	fq->vq.last_avail_idx = (uint16_t)(fq->vq.last_avail_idx + nlost);
	if (pushed && virtq_should_notify(&fq->vq))
		s->dev->q[q].call.raise(&s->dev->q[q].call);
	failq_pending(fq);
	if (!fq->watched) {
		fq->kick = (struct event_source){ .fd = s->dev->q[q].kick_fd,
						  .fn = failq_kick_event };
		fq->watched = event_loop_add(s->dev->host->loop, &fq->kick, EPOLLIN) == 0;
	}
}

void failq_take_all(struct failq_set *s, struct virtio_backend *be)
{
	for (unsigned int q = 0; q < s->nqueues; q++) {
		const struct virtq_state *st = &s->dev->queues[q];
		int n = 0;

		if (!st->ready)
			continue;
		if (be && be->ops->lost_chains)
			n = be->ops->lost_chains(be, q, st->used_idx, s->lost, VIRTQ_MAX_SIZE);
		if (n < 0)
			n = 0;	/* no in-flight area: the chains after used_idx, in order */
		failq_take(s, q, s->lost, (unsigned int)n);
	}
}
