/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the user chose for each kind of virtio device, as the command line
 * parses it (vmm/cli.c) and the device constructors take it. Plain data.
 */
#ifndef VIRTIO_OPTIONS_H
#define VIRTIO_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * --disk path=FILE[,readonly=on][,direct=on][,id=SERIAL]
 * --disk vhost-user=SOCKET[,reconnect=SECONDS]
 */
struct blk_options {
	const char *path;	/* raw image file or block device */
	bool readonly;
	bool direct;		/* O_DIRECT */
	const char *id;		/* GET_ID answer (at most 20 bytes); NULL: derived from path */
	const char *vhost_user;	/* a vhost-user-blk back-end's socket instead of path */
	unsigned int reconnect;	/* seconds to wait for a dead back-end to come back; 0: none */
};

/* Who runs a virtio-net device's data path. */
enum net_vhost {
	NET_VHOST_AUTO,		/* kernel vhost-net when usable, else userspace (with a note) */
	NET_VHOST_ON,		/* kernel vhost-net or an error */
	NET_VHOST_OFF,		/* the VMM's userspace data path */
};

/* --net tap=NAME[,mac=52:54:00:12:34:56][,vhost=on|off] */
struct net_options {
	const char *tap;	/* existing or new tap interface name */
	uint8_t mac[6];
	bool mac_set;		/* false: a locally administered MAC is generated */
	enum net_vhost vhost;	/* default (zero) auto */
};

/* --vsock cid=N : virtio-vsock, its data path in kernel vhost-vsock */
struct vsock_options {
	uint64_t cid;		/* the guest's context id: 3 .. 0xfffffffe */
};

/* --console pty|stdio|off : virtio-console (hvc0) */
enum console_backend {
	CONSOLE_BACKEND_PTY,	/* a host pseudo-terminal; its path is printed */
	CONSOLE_BACKEND_FILE,	/* output appended to a file, no input (for tests and logs) */
};

struct console_options {
	enum console_backend backend;
	const char *path;	/* CONSOLE_BACKEND_FILE: the file */
};

#endif
