/* SPDX-License-Identifier: GPL-2.0-only */
/* The command line: `vmm run [options]`, `vmm --help`, `vmm --version`. */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "vmm/config.h"

enum cli_command {
	CLI_RUN,
	CLI_HELP,	/* `vmm --help` or no command */
	CLI_RUN_HELP,	/* `vmm run --help` */
	CLI_VERSION,
};

/*
 * Parses argv into *cfg (defaults filled in). Returns 0, or VMM_EXIT_USAGE
 * with a message (what is wrong — what to do) in err.
 */
int cli_parse(int argc, char **argv, struct vmm_config *cfg, enum cli_command *cmd,
	      char *err, size_t errlen);

/* Prints the general help (commands, exit statuses). */
void cli_print_help(FILE *out);

/* Prints the help of `vmm run` (every option). */
void cli_print_run_help(FILE *out);

#endif
