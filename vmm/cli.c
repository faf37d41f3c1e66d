// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <string.h>

#include "vmm/cli.h"
#include "vmm/util.h"

enum {
	OPT_KERNEL = 256,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_CPUS,
	OPT_MEMORY,
	OPT_NO_REBOOT,
};

static const struct option run_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "no-reboot", no_argument, NULL, OPT_NO_REBOOT },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

void cli_print_help(FILE *out)
{
	fputs("Usage: vmm COMMAND [OPTIONS]\n"
	      "       vmm --help | --version\n"
	      "\n"
	      "A minimal virtual machine monitor for Linux guests on KVM.\n"
	      "\n"
	      "Commands:\n"
	      "  run        boot a Linux kernel (see `vmm run --help`)\n"
	      "\n"
	      "Exit status:\n"
	      "  0    the guest powered off (or rebooted with --no-reboot), or Ctrl-A x was typed\n"
	      "  1    runtime failure: KVM or the guest failed while running\n"
	      "  2    usage error: unknown option or bad value\n"
	      "  3    KVM unavailable: /dev/kvm missing, not permitted, or unusable\n"
	      "  4    boot image error: kernel or initrd missing, unreadable, invalid, or too big\n"
	      "  5    host resource error: the host cannot provide the memory or threads asked for\n"
	      "  128+N  the VMM was stopped by signal N (e.g. 143 for SIGTERM)\n"
	      "\n"
	      "Environment:\n"
	      "  VMM_KVM_DEVICE   KVM device to open (default /dev/kvm)\n", out);
}

void cli_print_run_help(FILE *out)
{
	fputs("Usage: vmm run --kernel PATH [OPTIONS]\n"
	      "\n"
	      "Boots a Linux bzImage. The guest's serial console (ttyS0) is the terminal:\n"
	      "stdin goes to the guest, the guest's output to stdout. On a terminal, type\n"
	      "Ctrl-A x to quit, Ctrl-A Ctrl-A to send Ctrl-A.\n"
	      "\n"
	      "Options:\n"
	      "  --kernel PATH     Linux kernel, bzImage format (e.g. /boot/vmlinuz-*); required\n"
	      "  --initrd PATH     initramfs / initrd image\n"
	      "  --cmdline STR     kernel command line (default \"" VMM_DEFAULT_CMDLINE "\")\n"
	      "  --cpus N          number of vCPUs, 1-255 (default 1)\n"
	      "  --memory SIZE     guest RAM with a K, M, G or T suffix, at least 16M (default 512M)\n"
	      "  --no-reboot       exit with status 0 when the guest reboots, instead of rebooting it\n"
	      "  -v, --verbose     report progress on stderr\n"
	      "  -h, --help        show this help\n", out);
}

static int usage_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return VMM_EXIT_USAGE;
}

static void config_defaults(struct vmm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cmdline = VMM_DEFAULT_CMDLINE;
	cfg->ncpus = 1;
	cfg->memory = VMM_DEFAULT_MEMORY;
}

static int parse_run_option(int opt, const char *arg, struct vmm_config *cfg, char *err,
			    size_t errlen)
{
	unsigned long n;
	uint64_t size;

	switch (opt) {
	case OPT_KERNEL:
		cfg->kernel = arg;
		return 0;
	case OPT_INITRD:
		cfg->initrd = arg;
		return 0;
	case OPT_CMDLINE:
		cfg->cmdline = arg;
		return 0;
	case OPT_CPUS:
		if (parse_uint(arg, 1, VMM_MAX_CPUS, &n))
			return usage_error(err, errlen, "--cpus '%s' is not a number from 1 to %d — "
					   "give the number of vCPUs", arg, VMM_MAX_CPUS);
		cfg->ncpus = (unsigned int)n;
		return 0;
	case OPT_MEMORY:
		if (parse_size(arg, &size))
			return usage_error(err, errlen, "--memory '%s' is not a size — write it like "
					   "512M or 2G", arg);
		if (size < VMM_MIN_MEMORY)
			return usage_error(err, errlen, "--memory %s is too small: a Linux guest needs "
					   "at least 16M — give more memory", arg);
		if (size % 4096)
			return usage_error(err, errlen, "--memory %s is not a whole number of 4 KiB "
					   "pages — round it", arg);
		cfg->memory = size;
		return 0;
	case OPT_NO_REBOOT:
		cfg->no_reboot = true;
		return 0;
	case 'v':
		cfg->verbose = true;
		return 0;
	default:
		return usage_error(err, errlen, "unknown option");
	}
}

int cli_parse(int argc, char **argv, struct vmm_config *cfg, enum cli_command *cmd,
	      char *err, size_t errlen)
{
	int opt;

	config_defaults(cfg);
	err[0] = '\0';
	*cmd = CLI_HELP;
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help"))
		return 0;
	if (!strcmp(argv[1], "--version")) {
		*cmd = CLI_VERSION;
		return 0;
	}
	if (strcmp(argv[1], "run"))
		return usage_error(err, errlen, "unknown command '%s' — see `vmm --help`", argv[1]);

	*cmd = CLI_RUN;
	optind = 0;	/* full reset: cli_parse may be called more than once */
	opterr = 0;
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, ":vh", run_options, NULL)) != -1) {
		int ret;

		if (opt == 'h') {
			*cmd = CLI_RUN_HELP;
			return 0;
		}
		if (opt == '?')
			return usage_error(err, errlen, "unknown option '%s' — see `vmm run --help`",
					   argv[optind - 1]);
		if (opt == ':')
			return usage_error(err, errlen, "option '%s' needs a value — see `vmm run --help`",
					   argv[optind - 1]);
		ret = parse_run_option(opt, optarg, cfg, err, errlen);
		if (ret)
			return ret;
	}
	if (optind < argc)
		return usage_error(err, errlen, "unexpected argument '%s' — see `vmm run --help`",
				   argv[optind]);
	if (!cfg->kernel)
		return usage_error(err, errlen, "no kernel given — add --kernel PATH (a bzImage such "
				   "as /boot/vmlinuz-$(uname -r))");
	return 0;
}
