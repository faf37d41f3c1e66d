/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The command line: `vmm run [options]`, `vmm pause|resume|status|shutdown
 * --api-socket PATH`, `vmm --help`, `vmm --version`.
 */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vmm/config.h"

enum cli_command {
	CLI_RUN,
	CLI_HELP,	/* `vmm --help` or no command */
	CLI_RUN_HELP,	/* `vmm run --help` */
	CLI_VERSION,
	CLI_PAUSE,	/* `vmm pause --api-socket PATH` (cfg->api_socket) */
	CLI_RESUME,
	CLI_STATUS,
	CLI_SHUTDOWN,
	CLI_MIGRATE,	/* `vmm migrate --api-socket PATH --to tcp:HOST:PORT ...` (cfg->ctl) */
	CLI_SNAPSHOT,	/* `vmm snapshot --api-socket PATH --to FILE` */
	CLI_CTL_HELP,	/* `vmm pause --help` and the like */
};

/*
 * Parses argv into *cfg (defaults filled in). Returns 0, or VMM_EXIT_USAGE
 * with a message (what is wrong — what to do) in err.
 */
int cli_parse(int argc, char **argv, struct vmm_config *cfg, enum cli_command *cmd,
	      char *err, size_t errlen);

/* Frees the strings cli_parse() split out of option values. */
void cli_config_free(struct vmm_config *cfg);

/* Parses on/off (also true/false, yes/no, 1/0); 0 or -EINVAL. */
int cli_parse_bool(const char *v, bool *out);

/* Parses a unicast MAC address "52:54:00:12:34:56"; 0 or -EINVAL. */
int cli_parse_mac(const char *s, uint8_t mac[6]);

/* Prints the general help (commands, exit statuses). */
void cli_print_help(FILE *out);

/* Prints the help of `vmm run` (every option). */
void cli_print_run_help(FILE *out);

/* Prints the help of `vmm pause|resume|status|shutdown` (options, exit statuses). */
void cli_print_ctl_help(FILE *out);

#endif
