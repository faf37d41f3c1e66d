/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The offloads vhost/ provides to device models (struct virtio_offload of
 * virtio/backend.h); the VM assembly puts it in its struct virtio_host.
 */
#ifndef VHOST_OFFLOAD_H
#define VHOST_OFFLOAD_H

#include "virtio/backend.h"

extern const struct virtio_offload vhost_offload;

#endif
