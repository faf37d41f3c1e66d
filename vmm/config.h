/* SPDX-License-Identifier: GPL-2.0-only */
/* What the user asked for on the command line, validated by cli.c. */
#ifndef VMM_CONFIG_H
#define VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/devices.h"

/*
 * Process exit statuses, documented in `vmm --help` and README.md.
 * Setup functions return 0 or one of these after reporting the error.
 */
enum vmm_exit {
	VMM_EXIT_OK = 0,	/* guest powered off (or rebooted with --no-reboot) */
	VMM_EXIT_RUNTIME = 1,	/* KVM or guest failure while running */
	VMM_EXIT_USAGE = 2,	/* bad option or value */
	VMM_EXIT_NO_KVM = 3,	/* /dev/kvm missing, no permission, or unusable */
	VMM_EXIT_IMAGE = 4,	/* kernel/initrd missing, unreadable, invalid, or too big */
	VMM_EXIT_RESOURCE = 5,	/* the host cannot provide what was asked */
	/* 6 and 7 are the control subcommands' (vmm/api_client.h) */
	VMM_EXIT_MIGRATION = 8,	/* --incoming/--restore: the stream was refused or lost; no guest ran */
};

#define VMM_MAX_CPUS		255
#define VMM_MIN_MEMORY		(16ULL << 20)
#define VMM_DEFAULT_MEMORY	(512ULL << 20)
#define VMM_DEFAULT_CMDLINE	"console=ttyS0"
#define VMM_MAX_DISKS		8
#define VMM_MAX_NETS		4
#define VMM_MAX_FS		4
#define VMM_MAX_OWNED		64

struct vmm_config {
	const char *kernel;
	const char *initrd;		/* NULL: none */
	const char *cmdline;
	unsigned int ncpus;
	uint64_t memory;		/* bytes */
	bool hugepages;			/* --memory hugepages=on: hugetlbfs memfd */
	bool mem_shared;		/* --memory shared=on: a memfd other processes can map */
	bool no_reboot;
	bool verbose;

	struct blk_options disks[VMM_MAX_DISKS];
	unsigned int ndisks;
	struct net_options nets[VMM_MAX_NETS];
	unsigned int nnets;
	bool rng;
	bool console_set;
	struct console_options console;
	bool vsock_set;
	struct vsock_options vsock;
	struct fs_options fs[VMM_MAX_FS];
	unsigned int nfs;
	bool virtio_cmdline;	/* also announce devices with virtio_mmio.device= */
	const char *api_socket;	/* --api-socket: the control API's unix socket; NULL: none */
	const char *incoming;	/* --incoming tcp:HOST:PORT: wait for a migration there; NULL: none */
	const char *restore;	/* --restore PATH: start from a snapshot; NULL: none */
	unsigned int vm_options;	/* options that shape the VM (all but the four above and -v) */
	/* The options that shape the VM, as given (a migration and a snapshot carry them). */
	int run_argc;
	char **run_argv;		/* into main's argv; freed array by cli_config_free() */

	/* The control subcommands' own options (vmm migrate, vmm snapshot). */
	struct {
		const char *to;			/* --to */
		uint64_t max_downtime_ms;	/* --max-downtime (default 300 ms) */
		uint64_t bandwidth;		/* --bandwidth, bytes/s (0: no cap) */
		bool verify;			/* --verify */
		bool finish, cancel;		/* --finish, --cancel */
	} ctl;

	/* Strings split out of option values; freed by cli_config_free(). */
	char *owned[VMM_MAX_OWNED];
	unsigned int nowned;
};

#endif
