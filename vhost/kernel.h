/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel vhost (/dev/vhost-net, /dev/vhost-vsock): the vhost_ops of
 * vhost/vhost.h as ioctls on the device's fd (linux/vhost.h). The kernel
 * works in the VMM's address space: the memory table and ring addresses are
 * the VMM's own mappings, so any guest RAM works (memfd or anonymous).
 *
 * Migration: vhost-net and vhost-vsock keep nothing beyond their rings'
 * positions (GET_VRING_BASE / SET_VRING_BASE), so they are always migratable;
 * their dirty logging is VHOST_SET_LOG_BASE with the shared log's address in
 * the VMM, VHOST_F_LOG_ALL (offered by both) in SET_FEATURES, and
 * VHOST_VRING_F_LOG with the used ring's guest-physical address in
 * SET_VRING_ADDR, each accepted while the rings run (vhost/vhost.h).
 */
#ifndef VHOST_KERNEL_H
#define VHOST_KERNEL_H

#include "vhost/vhost.h"

extern const struct vhost_ops vhost_kernel_ops;

/* Opens the kernel vhost device at path; *conn for vhost_dev_init(), or -errno. */
int vhost_kernel_open(const char *path, void **conn);

/* Closes a connection vhost_dev_init() did not take (it failed). */
void vhost_kernel_close(void *conn);

/*
 * For tests: a connection over fd (taken: closed with the connection) whose
 * ioctls go through fn (0 or -errno) instead of ioctl(2). 0 or -ENOMEM.
 */
int vhost_kernel_wrap(int fd, int (*fn)(int fd, unsigned long req, void *arg), void **conn);

/* The vhost fd behind dev (for a device kind's own ioctls: NET_SET_BACKEND, VSOCK_*). */
int vhost_kernel_fd(const struct vhost_dev *dev);

#endif
