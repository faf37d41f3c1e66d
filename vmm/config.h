/* SPDX-License-Identifier: GPL-2.0-only */
/* What the user asked for on the command line, validated by cli.c. */
#ifndef VMM_CONFIG_H
#define VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define VMM_MAX_CPUS		255
#define VMM_MIN_MEMORY		(16ULL << 20)
#define VMM_DEFAULT_MEMORY	(512ULL << 20)
#define VMM_DEFAULT_CMDLINE	"console=ttyS0"

struct vmm_config {
	const char *kernel;
	const char *initrd;		/* NULL: none */
	const char *cmdline;
	unsigned int ncpus;
	uint64_t memory;		/* bytes */
	bool hugepages;
	bool no_reboot;
	bool verbose;
};

#endif
