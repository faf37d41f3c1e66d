/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-blk whose data path is a vhost-user back-end in another process
 * (--disk vhost-user=SOCKET[,reconnect=SECONDS]): the device model keeps
 * the transport; config space and the device's features come from the
 * back-end (GET_CONFIG; features are the intersection of what the back-end
 * offers, what this model supports and what the guest acks: vhost/vhost.h).
 * The back-end comes from the VM assembly's offload (virtio_offload.user):
 * virtio/ does not know vhost/.
 *
 * Config changes (the back-end's CONFIG_CHANGE_MSG, e.g. a resized image)
 * are read again and announced with a config interrupt. A driver's config
 * write (writeback) is passed on.
 *
 * A back-end that dies (its socket hangs up or breaks the protocol):
 * - without reconnect: the device gets DEVICE_NEEDS_RESET, and the VMM
 *   finishes every request the guest has outstanding with VIRTIO_BLK_S_IOERR
 *   (those the back-end held, named by its in-flight area when it has one,
 *   else the avail entries after the used index, which is exact for a
 *   back-end that completes in order; then everything not yet taken), and
 *   keeps failing new ones, so guest programs get EIO instead of hanging.
 *   Other devices are not touched. A driver reset and restart fails again.
 * - with reconnect=SECONDS: the queues are held for the back-end
 *   (virtio_mmio_backend_away), and every 200 ms the VMM tries to connect
 *   again; once the back-end is back the device resumes (features, the
 *   in-flight area with SET_INFLIGHT_FD, memory, rings from their
 *   positions), so requests in flight at the crash are resubmitted by a
 *   back-end with INFLIGHT_SHMFD and the guest sees no error. After SECONDS
 *   without a back-end it fails as above. The transport keeps the VM's pause
 *   and the back-end's absence apart: a back-end that returns while the VM is
 *   paused (vm.pause, a migration's stop-and-copy) gets its queues at the VM's
 *   resume, and a VM resumed while the back-end is away keeps them stopped
 *   until it returns.
 *
 * Threads: the back-end's events (disconnect, config change), the reconnect
 * timer and the kicks served while failed run on the event loop thread and
 * take the device lock.
 */
#ifndef VIRTIO_BLK_USER_H
#define VIRTIO_BLK_USER_H

#include <linux/virtio_blk.h>
#include <stdint.h>

#include "virtio/mmio.h"
#include "virtio/options.h"

#define BLK_USER_QUEUE_SIZE	256
#define BLK_USER_MAX_QUEUES	8

struct blk_user;

/*
 * Creates a disk served by the vhost-user back-end at o->vhost_user, with its
 * transport at base/gsi: 0 with *out (its transport), or -errno after
 * log_error (-EINVAL: guest RAM not shared, which the offload refuses —
 * add shared=on to --memory).
 */
int blk_user_create(struct virtio_host *host, const struct blk_options *o, const char *name,
		    uint64_t base, uint32_t gsi, struct virtio_mmio_dev **out);

/*
 * How many bytes of config space a back-end offering `features` (device bits)
 * is asked for with GET_CONFIG: the fields through num_queues, then the
 * discard group (DISCARD) and the write-zeroes group with its padding
 * (WRITE_ZEROES) — virtio 1.2 5.2.4: a field exists only with its feature.
 * Never this machine's whole struct virtio_blk_config: a back-end built with
 * older headers refuses a longer read (QEMU 7.2's qemu-storage-daemon fails
 * any GET_CONFIG past its 60-byte struct). The model offers neither
 * SECURE_ERASE nor ZONED, so their fields are never read.
 */
uint32_t blk_user_config_len(uint64_t features);

/*
 * Fails (VIRTIO_BLK_S_IOERR) the request on chain c: its status byte, marked
 * dirty. Returns the bytes written (1, or 0 for a chain without a writable byte).
 */
uint32_t blk_user_fail_chain(const struct virtq_chain *c);

#endif
