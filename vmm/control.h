/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control API's side of the VM: struct api_ops over the running struct
 * vm. main.c attaches each boot's VM once it runs and detaches it before
 * destroying it; between the two the API thread (`vmm-api`) may pause,
 * resume, read or stop it. One lock orders the two threads, so a VM is never
 * destroyed under a pause, and a pause never meets a VM half made.
 */
#ifndef VMM_CONTROL_H
#define VMM_CONTROL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "vmm/api.h"
#include "vmm/config.h"
#include "vmm/migration.h"

struct vm;

/* How long a pause waits for every vCPU to leave the guest before giving up. */
#define CONTROL_PAUSE_TIMEOUT_MS 10000

struct control {
	pthread_mutex_t lock;
	const struct vmm_config *cfg;
	struct vm *vm;			/* the running VM; NULL while starting or rebooting */
	unsigned int boot;		/* its boot number, from 1 */
	struct timespec boot_start;	/* CLOCK_MONOTONIC when it started running */
	bool shutdown;			/* the API asked vmm to stop */

	/* A live migration: its thread (vmm-migrate) owns mig_fd while it runs. */
	bool mig_thread;		/* started and not joined */
	bool mig_running;		/* between vm.migrate and its end */
	bool mig_ever;			/* one was started in this process */
	int mig_fd;
	char mig_to[256];
	pthread_t mig_tid;
	struct mig_params mig_params;
	struct mig_progress mig;
	bool mig_reported;		/* a client read the migration's final state */

	/* `vmm run --incoming defer`: the API's vm.receive-migration says where to listen. */
	bool incoming_wait;		/* main waits for it (control_wait_incoming) */
	int incoming_lfd;		/* the listening socket vm.receive-migration made, or -1 */
	int incoming_efd;		/* eventfd: written when incoming_lfd or restore_fd is set */
	int restore_fd;			/* or the snapshot file vm.restore opened, or -1 */
	char incoming_from[256];
};

/* The ops api_handle() calls with a struct control as opaque. */
extern const struct api_ops control_api_ops;

/* Sets up c for cfg (which outlives it); 0 or -errno. */
int control_init(struct control *c, const struct vmm_config *cfg);

/* Frees c's lock. */
void control_destroy(struct control *c);

/*
 * Hands boot number `boot`'s started VM to the API. If the API asked for a
 * shutdown meanwhile, the VM is asked to stop (VM_SHUTDOWN) at once.
 */
void control_attach(struct control *c, struct vm *vm, unsigned int boot);

/*
 * Takes the VM back (before vm_destroy); waits for a request in progress on it,
 * and for a migration's thread (cancelled if it still runs).
 */
void control_detach(struct control *c);

/*
 * After a migration completed: waits (at most timeout_ms) until a client has read
 * its final state (GET vm.migration), so `vmm migrate` prints the summary before
 * this vmm exits and its socket goes.
 */
void control_wait_reported(struct control *c, unsigned int timeout_ms);

/*
 * `--incoming defer`: waits until the API's vm.receive-migration has made the listening
 * socket, or its vm.restore has opened a snapshot file (*is_file set; positioned at its
 * start), and returns it (the caller's); -1 when a stop signal arrives on sig_fd first.
 * *from gets the address or the path.
 */
int control_wait_incoming(struct control *c, int sig_fd, const char **from, bool *is_file);

/*
 * A listening TCP socket at spec (tcp:HOST:PORT; an empty HOST: every address);
 * the fd, or -errno with a one-line reason in why.
 */
int control_tcp_listen(const char *spec, char *why, size_t whylen);

/*
 * Turns Nagle's algorithm off on a migration socket (both ends): the stream is
 * buffered and flushed on purpose, and a flush's small tail must not wait for the
 * peer's delayed ACK (up to 40 ms, paid at every flush while the guest is paused).
 */
void control_tcp_nodelay(int fd);

/* Whether the API asked vmm to stop (then no new boot starts). */
bool control_shutdown_requested(struct control *c);

/*
 * vm.info's "config" object for cfg: cpus, memory (size, kind), kernel,
 * initrd, cmdline, and devices (id, kind, options) in the order and with the
 * names the VM gives them. NULL when out of memory.
 */
json_t *control_config_json(const struct vmm_config *cfg);

#endif
