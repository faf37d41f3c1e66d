/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel vhost (/dev/vhost-net, /dev/vhost-vsock): the vhost_ops of
 * vhost/vhost.h as ioctls on the device's fd (linux/vhost.h). The kernel
 * works in the VMM's address space: the memory table and ring addresses are
 * the VMM's own mappings, so any guest RAM works (memfd or anonymous).
 */
#ifndef VHOST_KERNEL_H
#define VHOST_KERNEL_H

#include "vhost/vhost.h"

extern const struct vhost_ops vhost_kernel_ops;

/* Opens the kernel vhost device at path; *conn for vhost_dev_init(), or -errno. */
int vhost_kernel_open(const char *path, void **conn);

/* Closes a connection vhost_dev_init() did not take (it failed). */
void vhost_kernel_close(void *conn);

/* The vhost fd behind dev (for a device kind's own ioctls: NET_SET_BACKEND, VSOCK_*). */
int vhost_kernel_fd(const struct vhost_dev *dev);

#endif
