// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/cli.h"
#include "vmm/base/util.h"

enum {
	OPT_KERNEL = 256,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_CPUS,
	OPT_MEMORY,
	OPT_NO_REBOOT,
	OPT_DISK,
	OPT_NET,
	OPT_RNG,
	OPT_CONSOLE,
	OPT_VSOCK,
	OPT_FS,
	OPT_VIRTIO_CMDLINE,
	OPT_API_SOCKET,
	OPT_INCOMING,
	OPT_RESTORE,
	OPT_TO,
	OPT_MAX_DOWNTIME,
	OPT_BANDWIDTH,
	OPT_FINISH,
	OPT_VERIFY,
	OPT_CANCEL,
};

/* The control subcommands: thin clients of the API (vmm/api_client.c). */
static const struct { const char *name; enum cli_command cmd; } ctl_commands[] = {
	{ "pause", CLI_PAUSE },
	{ "resume", CLI_RESUME },
	{ "status", CLI_STATUS },
	{ "shutdown", CLI_SHUTDOWN },
	{ "migrate", CLI_MIGRATE },
	{ "snapshot", CLI_SNAPSHOT },
};

static const struct option ctl_options[] = {
	{ "api-socket", required_argument, NULL, OPT_API_SOCKET },
	{ "to", required_argument, NULL, OPT_TO },
	{ "max-downtime", required_argument, NULL, OPT_MAX_DOWNTIME },
	{ "bandwidth", required_argument, NULL, OPT_BANDWIDTH },
	{ "finish", no_argument, NULL, OPT_FINISH },
	{ "verify", no_argument, NULL, OPT_VERIFY },
	{ "cancel", no_argument, NULL, OPT_CANCEL },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct option run_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "no-reboot", no_argument, NULL, OPT_NO_REBOOT },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "net", required_argument, NULL, OPT_NET },
	{ "rng", no_argument, NULL, OPT_RNG },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "vsock", required_argument, NULL, OPT_VSOCK },
	{ "fs", required_argument, NULL, OPT_FS },
	{ "virtio-cmdline", no_argument, NULL, OPT_VIRTIO_CMDLINE },
	{ "api-socket", required_argument, NULL, OPT_API_SOCKET },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ "restore", required_argument, NULL, OPT_RESTORE },
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
	      "  pause      pause a running VM: vmm pause --api-socket PATH\n"
	      "  resume     resume a paused VM: vmm resume --api-socket PATH\n"
	      "  status     print a VM's state, vCPUs, memory and uptime: vmm status --api-socket PATH\n"
	      "  shutdown   stop a VM's guest and its vmm (exit 0): vmm shutdown --api-socket PATH\n"
	      "  migrate    move a running VM to another host: vmm migrate --api-socket PATH --to\n"
	      "             tcp:HOST:PORT (that host runs `vmm run --incoming tcp:HOST:PORT ...`)\n"
	      "  snapshot   write a VM's state to a file: vmm snapshot --api-socket PATH --to FILE\n"
	      "             (these talk to `vmm run --api-socket PATH`; see `vmm pause --help`)\n"
	      "\n"
	      "Exit status of `vmm run`:\n"
	      "  0    the guest powered off (or rebooted with --no-reboot), Ctrl-A x was typed,\n"
	      "       or the control API asked for a shutdown\n"
	      "  1    runtime failure: KVM or the guest failed while running\n"
	      "  2    usage error: unknown option or bad value\n"
	      "  3    KVM unavailable: /dev/kvm missing, not permitted, or unusable\n"
	      "  4    boot image error: kernel or initrd missing, unreadable, invalid, or too big\n"
	      "  5    host resource error: the host cannot provide the memory or threads asked for\n"
	      "  8    --incoming or --restore: the migration stream or snapshot was refused (not\n"
	      "       vmm's, another version, another VM shape, corrupted or cut short) or the\n"
	      "       source went away; no guest ran here\n"
	      "  0    also: the guest was migrated away (vmm migrate) and runs on elsewhere\n"
	      "  128+N  the VMM was stopped by signal N (e.g. 143 for SIGTERM)\n"
	      "\n"
	      "Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT stop the VMM; SIGUSR2 logs where every\n"
	      "virtio queue stands (requests offered, answered, interrupts wanted: for a guest\n"
	      "that seems stuck, whoever serves the queue), each vCPU's registers and interrupt\n"
	      "state, and each device's interrupt line.\n"
	      "\n"
	      "Environment:\n"
	      "  VMM_KVM_DEVICE   KVM device to open (default /dev/kvm)\n"
	      "  VMM_DROP_INTERRUPT=NAME:N  tests: device NAME's Nth interrupt is not sent, as if\n"
	      "                   lost (the transport's watchdog sends it again)\n", out);
}

void cli_print_run_help(FILE *out)
{
	fputs("Usage: vmm run --kernel PATH [OPTIONS]\n"
	      "       vmm run --incoming tcp:HOST:PORT [OPTIONS]   vmm run --restore FILE [OPTIONS]\n"
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
	      "  --memory SIZE[,shared=on][,hugepages=on]\n"
	      "                    guest RAM with a K, M, G or T suffix, at least 16M (default 512M):\n"
	      "                    private memory given transparent huge pages where the host allows;\n"
	      "                    shared=on puts it in a memfd other processes can map (vhost-user\n"
	      "                    back-ends need it); hugepages=on backs it with reserved 2 MiB huge\n"
	      "                    pages (hugetlbfs, shareable too)\n"
	      "  --no-reboot       exit with status 0 when the guest reboots, instead of rebooting it\n"
	      "\n"
	      "Devices (virtio-mmio, announced to the guest in the ACPI DSDT):\n"
	      "  --disk vhost-user=SOCKET[,reconnect=SECONDS]\n"
	      "                    virtio-blk served by a vhost-user back-end (needs --memory ...,shared=on);\n"
	      "                    reconnect: wait that long for a dead back-end to come back\n"
	      "  --disk path=FILE[,readonly=on][,direct=on][,id=SERIAL]\n"
	      "                    virtio-blk disk on a raw image or block device (repeatable, up to 8);\n"
	      "                    direct=on opens it with O_DIRECT; id is what the guest reads as serial\n"
	      "  --net tap=NAME[,mac=52:54:00:12:34:56][,vhost=on|off]\n"
	      "                    virtio-net on a tap interface (repeatable, up to 4). Its data path\n"
	      "                    runs in the host kernel (vhost-net) when /dev/vhost-net is usable,\n"
	      "                    else in vmm (with a note); vhost=on requires vhost-net, vhost=off\n"
	      "                    keeps the data path in vmm\n"
	      "  --net vhost-user=SOCKET[,mac=52:54:00:12:34:56]\n"
	      "                    virtio-net whose frames a vhost-user back-end listening on SOCKET\n"
	      "                    moves (e.g. DPDK's vhost PMD); needs --memory ...,shared=on\n"
	      "  --rng             virtio-rng entropy device fed from getrandom()\n"
	      "  --console pty|file=PATH\n"
	      "                    virtio-console (hvc0) on a new pseudo-terminal (its path is printed)\n"
	      "                    or appended to a file\n"
	      "  --vsock cid=N     virtio-vsock with guest context id N (3-4294967294), served by the\n"
	      "                    host kernel (vhost-vsock): host programs reach the guest with AF_VSOCK\n"
	      "  --fs vhost-user=SOCKET,tag=TAG[,queues=N]\n"
	      "                    virtio-fs served by a vhost-user back-end listening on SOCKET (e.g.\n"
	      "                    virtiofsd --socket-path=SOCKET --shared-dir=DIR); the guest mounts it\n"
	      "                    with mount -t virtiofs TAG /mnt. TAG: 1-36 bytes; N request queues,\n"
	      "                    1-8 (default 1); repeatable, up to 4; needs --memory ...,shared=on\n"
	      "  --virtio-cmdline  also announce the devices on the kernel command line\n"
	      "                    (virtio_mmio.device=, for kernels without ACPI)\n"
	      "\n"
	      "Control:\n"
	      "  --api-socket PATH serve the control API (HTTP/1.1 + JSON, docs/api.md) on a unix\n"
	      "                    socket created there (mode 0600; a stale socket is replaced, any\n"
	      "                    other file is refused); vmm pause|resume|status|shutdown|migrate|\n"
	      "                    snapshot use it\n"
	      "  --incoming tcp:HOST:PORT\n"
	      "                    wait there for a live migration (vmm migrate on the source) instead\n"
	      "                    of booting: give the source's --cpus, --memory and device options\n"
	      "                    (in the same order; paths may differ), --kernel is optional\n"
	      "  --incoming defer  the same, listening where the API's PUT vm.receive-migration\n"
	      "                    {\"from\": \"tcp:HOST:PORT\"} says, or loading the snapshot its\n"
	      "                    PUT vm.restore {\"from\": \"FILE\"} names (needs --api-socket)\n"
	      "  --restore FILE    start from a snapshot (vmm snapshot): alone, with the snapshot's\n"
	      "                    own options; with device options, those (same shape) instead\n"
	      "  -v, --verbose     report progress on stderr\n"
	      "  -h, --help        show this help\n", out);
}

void cli_print_ctl_help(FILE *out)
{
	fputs("Usage: vmm pause|resume|status|shutdown --api-socket PATH\n"
	      "       vmm migrate --api-socket PATH --to tcp:HOST:PORT [--max-downtime MS]\n"
	      "                   [--bandwidth BYTES] [--verify]\n"
	      "       vmm migrate --api-socket PATH --finish|--cancel\n"
	      "       vmm snapshot --api-socket PATH --to FILE\n"
	      "\n"
	      "Talk to a `vmm run --api-socket PATH` through its control API (docs/api.md):\n"
	      "  pause      hold every vCPU and stop the devices' queues; the guest sees no time pass\n"
	      "  resume     run a paused VM again\n"
	      "  status     print one line: state, vCPUs, memory, devices, uptime\n"
	      "  shutdown   stop the guest; that vmm exits 0. Returns once it has exited\n"
	      "  migrate    move the running guest to `vmm run --incoming tcp:HOST:PORT` on another\n"
	      "             host: progress on the terminal, a summary at the end; the source vmm\n"
	      "             then exits 0. --finish: stop-and-copy now (a migration that does not\n"
	      "             converge); --cancel: give up, the guest runs on here\n"
	      "  snapshot   write the VM's whole state to a new FILE (the guest pauses meanwhile);\n"
	      "             `vmm run --restore FILE` starts it again, here or on another host\n"
	      "\n"
	      "Options:\n"
	      "  --api-socket PATH the VM's control socket; required\n"
	      "  --to DEST         migrate: tcp:HOST:PORT; snapshot: a file that does not exist\n"
	      "  --max-downtime T  migrate: the pause the guest may see, in ms (300, 300ms, 1s);\n"
	      "                    default 300 ms; 0: RAM keeps moving until --finish\n"
	      "  --bandwidth B     migrate: bytes per second at most (e.g. 1G); default no cap\n"
	      "  --verify          migrate: after the last copy the destination checks every page\n"
	      "                    of guest RAM against the source's and refuses a guest that\n"
	      "                    differs (the guest then runs on here); a longer pause\n"
	      "  -h, --help        show this help\n"
	      "\n"
	      "Exit status:\n"
	      "  0    done (status: the line was printed)\n"
	      "  1    the VMM refused or failed the request (its reason is printed)\n"
	      "  2    usage error: unknown option, no --api-socket\n"
	      "  6    cannot reach the VMM: no socket there, nobody serving it, or not an answer\n"
	      "       from vmm's API\n"
	      "  7    the VM is not in a state for it: pause of a paused VM, resume of a running\n"
	      "       one, or a VM shutting down, a migration already running\n"
	      "  1    (migrate) the migration failed; the guest runs on at the source\n", out);
}

static int usage_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return VMM_EXIT_USAGE;
}

/* Keeps a copy of s owned by cfg (freed by cli_config_free); NULL when full. */
static char *config_strdup(struct vmm_config *cfg, const char *s)
{
	char *copy;

	if (cfg->nowned == VMM_MAX_OWNED)
		return NULL;
	copy = strdup(s);
	if (copy)
		cfg->owned[cfg->nowned++] = copy;
	return copy;
}

void cli_config_free(struct vmm_config *cfg)
{
	for (unsigned int i = 0; i < cfg->nowned; i++)
		free(cfg->owned[i]);
	cfg->nowned = 0;
	free(cfg->run_argv);
	cfg->run_argv = NULL;
	cfg->run_argc = 0;
}

/* Whether argv entry a is option `name` (as --name or --name=VALUE); *joined: VALUE is in a. */
static bool is_option(const char *a, const char *name, bool *joined)
{
	size_t n = strlen(name);

	if (strncmp(a, "--", 2) || strncmp(a + 2, name, n) || (a[2 + n] && a[2 + n] != '='))
		return false;
	*joined = a[2 + n] == '=';
	return true;
}

/*
 * Keeps the options that shape the VM (argv after `run`, without --api-socket,
 * --incoming, --restore and -v): what a migration or a snapshot carries. 0 or -ENOMEM.
 */
static int record_vm_options(struct vmm_config *cfg, int argc, char **argv)
{
	static const char *const host_only[] = { "api-socket", "incoming", "restore" };

	cfg->run_argv = calloc((size_t)argc + 1, sizeof(char *));
	if (!cfg->run_argv)
		return -ENOMEM;
	cfg->run_argc = 0;
	for (int i = 1; i < argc; i++) {
		bool joined = false, skip = false;

		for (size_t k = 0; k < ARRAY_SIZE(host_only) && !skip; k++)
			skip = is_option(argv[i], host_only[k], &joined);
		if (skip) {
			i += !joined;
			continue;
		}
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
			continue;
		cfg->run_argv[cfg->run_argc++] = argv[i];
	}
	return 0;
}

int cli_parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cli_parse_mac(const char *s, uint8_t mac[6])
{
	if (strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hex_digit(s[i * 3]), lo = hex_digit(s[i * 3 + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	/* A unicast address is required: the multicast bit is the lowest bit of byte 0. */
	return (mac[0] & 1) ? -EINVAL : 0;
}

/*
 * Splits "a=1,b=2" (a copy owned by cfg) into key/value pairs for fn. A bare
 * first item without '=' is given with key `bare_key` (e.g. "--console pty").
 */
static int parse_kv_list(struct vmm_config *cfg, const char *opt, const char *arg,
			 const char *bare_key,
			 int (*fn)(struct vmm_config *cfg, void *obj, const char *key, char *val,
				   char *err, size_t errlen),
			 void *obj, char *err, size_t errlen)
{
	char *copy = config_strdup(cfg, arg), *save = NULL, *item;
	bool first = true;

	if (!copy)
		return usage_error(err, errlen, "too many option values — give fewer options");
	if (!*arg || strspn(arg, ",") == strlen(arg))
		return usage_error(err, errlen, "%s needs a value (%s=...) — see `vmm run --help`", opt,
				   bare_key && strcmp(bare_key, "backend") ? bare_key : "key");
	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save), first = false) {
		char *eq = strchr(item, '=');
		int ret;

		if (!eq && !(first && bare_key))
			return usage_error(err, errlen, "%s: '%s' is not key=value — see `vmm run --help`",
					   opt, item);
		if (eq)
			*eq = '\0';
		ret = fn(cfg, obj, eq ? item : bare_key, eq ? eq + 1 : item, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

static int disk_kv(struct vmm_config *cfg, void *obj, const char *key, char *val, char *err,
		   size_t errlen)
{
	struct blk_options *d = obj;

	(void)cfg;
	if (!strcmp(key, "path")) {
		if (!*val)
			return usage_error(err, errlen, "--disk: path is empty — give a file");
		d->path = val;
	} else if (!strcmp(key, "readonly")) {
		if (cli_parse_bool(val, &d->readonly))
			return usage_error(err, errlen, "--disk: readonly='%s' — use on or off", val);
	} else if (!strcmp(key, "direct")) {
		if (cli_parse_bool(val, &d->direct))
			return usage_error(err, errlen, "--disk: direct='%s' — use on or off", val);
	} else if (!strcmp(key, "id")) {
		if (strlen(val) > 20)
			return usage_error(err, errlen, "--disk: id '%s' is longer than 20 bytes — shorten it", val);
		d->id = val;
	} else if (!strcmp(key, "vhost-user")) {
		if (!*val)
			return usage_error(err, errlen, "--disk: vhost-user is empty — give the back-end's socket");
		d->vhost_user = val;
	} else if (!strcmp(key, "reconnect")) {
		char *end;
		unsigned long n;

		errno = 0;
		n = strtoul(val, &end, 10);
		if (!*val || *end || errno || n > 3600 || *val == '-')
			return usage_error(err, errlen, "--disk: reconnect='%s' — give seconds, 0 to 3600", val);
		d->reconnect = (unsigned int)n;
	} else {
		return usage_error(err, errlen, "--disk: unknown key '%s' — use path, readonly, direct, id, vhost-user or reconnect", key);
	}
	return 0;
}

static int net_kv(struct vmm_config *cfg, void *obj, const char *key, char *val, char *err,
		  size_t errlen)
{
	struct net_options *n = obj;

	(void)cfg;
	if (!strcmp(key, "tap")) {
		if (!*val || strlen(val) >= 16)
			return usage_error(err, errlen, "--net: tap name '%s' must be 1 to 15 characters", val);
		n->tap = val;
	} else if (!strcmp(key, "vhost-user")) {
		if (!*val)
			return usage_error(err, errlen, "--net: vhost-user needs the back-end's socket path");
		n->vhost_user = val;
	} else if (!strcmp(key, "mac")) {
		if (cli_parse_mac(val, n->mac))
			return usage_error(err, errlen, "--net: mac '%s' is not a unicast MAC address like "
					   "52:54:00:12:34:56", val);
		n->mac_set = true;
	} else if (!strcmp(key, "vhost")) {
		bool on;

		if (cli_parse_bool(val, &on))
			return usage_error(err, errlen, "--net: vhost='%s' — use on or off", val);
		n->vhost = on ? NET_VHOST_ON : NET_VHOST_OFF;
	} else {
		return usage_error(err, errlen, "--net: unknown key '%s' — use tap, vhost-user, mac or vhost", key);
	}
	return 0;
}

static int fs_kv(struct vmm_config *cfg, void *obj, const char *key, char *val, char *err,
		 size_t errlen)
{
	struct fs_options *f = obj;
	unsigned long n;

	(void)cfg;
	if (!strcmp(key, "vhost-user")) {
		if (!*val)
			return usage_error(err, errlen, "--fs: vhost-user needs the back-end's socket path");
		f->vhost_user = val;
	} else if (!strcmp(key, "tag")) {
		if (!*val || strlen(val) > FS_TAG_MAX)
			return usage_error(err, errlen, "--fs: tag '%s' must be 1 to %d bytes", val,
					   FS_TAG_MAX);
		f->tag = val;
	} else if (!strcmp(key, "queues")) {
		if (parse_uint(val, 1, FS_REQUEST_QUEUES_MAX, &n))
			return usage_error(err, errlen, "--fs: queues '%s' is not a number from 1 to %d",
					   val, FS_REQUEST_QUEUES_MAX);
		f->queues = (unsigned int)n;
	} else {
		return usage_error(err, errlen, "--fs: unknown key '%s' — use vhost-user, tag or queues",
				   key);
	}
	return 0;
}

static int console_kv(struct vmm_config *cfg, void *obj, const char *key, char *val, char *err,
		      size_t errlen)
{
	struct console_options *c = obj;

	(void)cfg;
	if (!strcmp(key, "backend") && !strcmp(val, "pty")) {
		c->backend = CONSOLE_BACKEND_PTY;
	} else if (!strcmp(key, "file") && *val) {
		c->backend = CONSOLE_BACKEND_FILE;
		c->path = val;
	} else {
		return usage_error(err, errlen, "--console: '%s%s%s' — use pty or file=PATH",
				   strcmp(key, "backend") ? key : "", strcmp(key, "backend") ? "=" : "", val);
	}
	return 0;
}

static int vsock_kv(struct vmm_config *cfg, void *obj, const char *key, char *val, char *err,
		    size_t errlen)
{
	struct vsock_options *v = obj;
	char *end;
	unsigned long long cid;

	(void)cfg;
	if (strcmp(key, "cid"))
		return usage_error(err, errlen, "--vsock: unknown key '%s' — use cid=N", key);
	errno = 0;
	cid = strtoull(val, &end, 10);
	if (!*val || *end || errno || *val == '-' || cid < 3 || cid > 0xfffffffeULL)
		return usage_error(err, errlen, "--vsock: cid '%s' is not a guest context id — use a "
				   "number from 3 to 4294967294", val);
	v->cid = cid;
	return 0;
}

static int memory_kv(struct vmm_config *cfg, void *obj, const char *key, char *val, char *err,
		     size_t errlen)
{
	uint64_t size;

	(void)obj;
	if (!strcmp(key, "size")) {
		if (parse_size(val, &size))
			return usage_error(err, errlen, "--memory '%s' is not a size — write it like "
					   "512M or 2G", val);
		if (size < VMM_MIN_MEMORY)
			return usage_error(err, errlen, "--memory %s is too small: a Linux guest needs "
					   "at least 16M — give more memory", val);
		if (size % 4096)
			return usage_error(err, errlen, "--memory %s is not a whole number of 4 KiB "
					   "pages — round it", val);
		cfg->memory = size;
	} else if (!strcmp(key, "hugepages")) {
		if (cli_parse_bool(val, &cfg->hugepages))
			return usage_error(err, errlen, "--memory: hugepages='%s' — use on or off", val);
	} else if (!strcmp(key, "shared")) {
		if (cli_parse_bool(val, &cfg->mem_shared))
			return usage_error(err, errlen, "--memory: shared='%s' — use on or off", val);
	} else {
		return usage_error(err, errlen, "--memory: unknown key '%s' — use "
				   "SIZE[,shared=on][,hugepages=on]", key);
	}
	return 0;
}

static void config_defaults(struct vmm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ctl.max_downtime_ms = 300;
	cfg->cmdline = VMM_DEFAULT_CMDLINE;
	cfg->ncpus = 1;
	cfg->memory = VMM_DEFAULT_MEMORY;
}

static int parse_run_option(int opt, const char *arg, struct vmm_config *cfg, char *err,
			    size_t errlen)
{
	unsigned long n;
	int ret;

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
		ret = parse_kv_list(cfg, "--memory", arg, "size", memory_kv, NULL, err, errlen);
		if (!ret && cfg->hugepages && cfg->memory % (2 * MIB))
			return usage_error(err, errlen, "--memory with hugepages=on must be a multiple of 2M");
		return ret;
	case OPT_DISK: {
		struct blk_options *d = &cfg->disks[cfg->ndisks];

		if (cfg->ndisks == VMM_MAX_DISKS)
			return usage_error(err, errlen, "more than %d --disk options", VMM_MAX_DISKS);
		memset(d, 0, sizeof(*d));
		ret = parse_kv_list(cfg, "--disk", arg, "path", disk_kv, d, err, errlen);
		if (!ret && !d->path && !d->vhost_user)
			return usage_error(err, errlen, "--disk needs path=FILE or vhost-user=SOCKET");
		if (!ret && d->path && d->vhost_user)
			return usage_error(err, errlen, "--disk: path and vhost-user exclude each other — give one");
		if (!ret && d->vhost_user && (d->readonly || d->direct || d->id))
			return usage_error(err, errlen, "--disk: readonly, direct and id are the vhost-user back-end's options — set them there");
		if (!ret && d->reconnect && !d->vhost_user)
			return usage_error(err, errlen, "--disk: reconnect is for vhost-user disks");
		if (!ret)
			cfg->ndisks++;
		return ret;
	}
	case OPT_NET: {
		struct net_options *net = &cfg->nets[cfg->nnets];

		if (cfg->nnets == VMM_MAX_NETS)
			return usage_error(err, errlen, "more than %d --net options", VMM_MAX_NETS);
		memset(net, 0, sizeof(*net));
		ret = parse_kv_list(cfg, "--net", arg, NULL, net_kv, net, err, errlen);
		if (!ret && !net->tap && !net->vhost_user)
			return usage_error(err, errlen, "--net needs tap=NAME or vhost-user=SOCKET");
		if (!ret && net->tap && net->vhost_user)
			return usage_error(err, errlen, "--net: tap and vhost-user exclude each other — "
					   "give one");
		if (!ret && net->vhost_user && net->vhost != NET_VHOST_AUTO)
			return usage_error(err, errlen, "--net: vhost=on|off is for tap; a vhost-user "
					   "device is always served by its back-end");
		if (!ret)
			cfg->nnets++;
		return ret;
	}
	case OPT_RNG:
		cfg->rng = true;
		return 0;
	case OPT_CONSOLE:
		if (cfg->console_set)
			return usage_error(err, errlen, "--console given twice");
		ret = parse_kv_list(cfg, "--console", arg, "backend", console_kv, &cfg->console, err, errlen);
		cfg->console_set = !ret;
		return ret;
	case OPT_VSOCK:
		if (cfg->vsock_set)
			return usage_error(err, errlen, "--vsock given twice");
		memset(&cfg->vsock, 0, sizeof(cfg->vsock));
		ret = parse_kv_list(cfg, "--vsock", arg, NULL, vsock_kv, &cfg->vsock, err, errlen);
		if (!ret && !cfg->vsock.cid)
			return usage_error(err, errlen, "--vsock needs cid=N");
		cfg->vsock_set = !ret;
		return ret;
	case OPT_FS: {
		struct fs_options *f = &cfg->fs[cfg->nfs];

		if (cfg->nfs == VMM_MAX_FS)
			return usage_error(err, errlen, "more than %d --fs options", VMM_MAX_FS);
		memset(f, 0, sizeof(*f));
		ret = parse_kv_list(cfg, "--fs", arg, NULL, fs_kv, f, err, errlen);
		if (!ret && !f->vhost_user)
			return usage_error(err, errlen, "--fs needs vhost-user=SOCKET (virtio-fs has no "
					   "back-end in vmm)");
		if (!ret && !f->tag)
			return usage_error(err, errlen, "--fs needs tag=TAG (the name the guest mounts)");
		for (unsigned int i = 0; !ret && i < cfg->nfs; i++)
			if (!strcmp(cfg->fs[i].tag, f->tag))
				return usage_error(err, errlen, "--fs: tag '%s' given twice — give each "
						   "share its own tag", f->tag);
		if (!ret)
			cfg->nfs++;
		return ret;
	}
	case OPT_VIRTIO_CMDLINE:
		cfg->virtio_cmdline = true;
		return 0;
	case OPT_API_SOCKET:
		if (!*arg)
			return usage_error(err, errlen, "--api-socket is empty — give a path for the "
					   "control socket");
		cfg->api_socket = arg;
		return 0;
	case OPT_INCOMING:
		if (strcmp(arg, "defer") && (strncmp(arg, "tcp:", 4) || !strchr(arg + 4, ':')))
			return usage_error(err, errlen, "--incoming %s: give tcp:HOST:PORT (e.g. "
					   "tcp:0.0.0.0:4444), or defer (the API's "
					   "vm.receive-migration says where)", arg);
		cfg->incoming = arg;
		return 0;
	case OPT_RESTORE:
		if (!*arg)
			return usage_error(err, errlen, "--restore is empty — give a snapshot's path");
		cfg->restore = arg;
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

/* `vmm pause|resume|status|shutdown --api-socket PATH`. */
static int cli_parse_ctl(int argc, char **argv, struct vmm_config *cfg, enum cli_command which,
			 enum cli_command *cmd, char *err, size_t errlen)
{
	const char *name = argv[1];
	int opt;

	*cmd = which;
	optind = 0;
	opterr = 0;
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, ":h", ctl_options, NULL)) != -1) {
		if (opt == 'h') {
			*cmd = CLI_CTL_HELP;
			return 0;
		}
		if (opt == '?')
			return usage_error(err, errlen, "vmm %s: unknown option '%s' — see `vmm %s "
					   "--help`", name, argv[optind - 1], name);
		if (opt == ':')
			return usage_error(err, errlen, "vmm %s: option '%s' needs a value", name,
					   argv[optind - 1]);
		if (which != CLI_MIGRATE && which != CLI_SNAPSHOT && opt != OPT_API_SOCKET)
			return usage_error(err, errlen, "vmm %s takes only --api-socket — see `vmm %s "
					   "--help`", name, name);
		if (which == CLI_SNAPSHOT && opt != OPT_API_SOCKET && opt != OPT_TO)
			return usage_error(err, errlen, "vmm snapshot takes --api-socket and --to — "
					   "see `vmm snapshot --help`");
		if (optarg && !*optarg)
			return usage_error(err, errlen, "vmm %s: %s is empty", name, argv[optind - 1]);
		switch (opt) {
		case OPT_API_SOCKET:
			cfg->api_socket = optarg;
			break;
		case OPT_TO:
			cfg->ctl.to = optarg;
			break;
		case OPT_MAX_DOWNTIME: {
			char *end;
			unsigned long long v = strtoull(optarg, &end, 10);

			if (end == optarg || (strcmp(end, "") && strcmp(end, "ms") && strcmp(end, "s")))
				return usage_error(err, errlen, "vmm migrate: --max-downtime %s: give "
						   "milliseconds (300, 300ms) or seconds (1s)", optarg);
			cfg->ctl.max_downtime_ms = !strcmp(end, "s") ? v * 1000 : v;
			break;
		}
		case OPT_BANDWIDTH:
			if (parse_size(optarg, &cfg->ctl.bandwidth) || !cfg->ctl.bandwidth)
				return usage_error(err, errlen, "vmm migrate: --bandwidth %s: give bytes "
						   "per second, e.g. 1G or 500M", optarg);
			break;
		case OPT_FINISH:
			cfg->ctl.finish = true;
			break;
		case OPT_VERIFY:
			cfg->ctl.verify = true;
			break;
		case OPT_CANCEL:
			cfg->ctl.cancel = true;
			break;
		}
	}
	if (optind < argc)
		return usage_error(err, errlen, "vmm %s: unexpected argument '%s' — see `vmm %s "
				   "--help`", name, argv[optind], name);
	if (!cfg->api_socket)
		return usage_error(err, errlen, "vmm %s needs --api-socket PATH (the socket given "
				   "to `vmm run --api-socket`)", name);
	if (which == CLI_SNAPSHOT && !cfg->ctl.to)
		return usage_error(err, errlen, "vmm snapshot needs --to FILE (a new file)");
	if (which == CLI_MIGRATE && !cfg->ctl.to && !cfg->ctl.finish && !cfg->ctl.cancel)
		return usage_error(err, errlen, "vmm migrate needs --to tcp:HOST:PORT (the "
				   "destination's `vmm run --incoming`), or --finish / --cancel");
	return 0;
}

/*
 * The one rule for vhost-user devices (--disk, --net and --fs vhost-user=): their
 * back-end maps guest RAM from another process, so the RAM must be shareable —
 * shared=on, or hugepages=on (a hugetlbfs memfd, shareable too). It applies to every
 * parse, --incoming and --restore (a snapshot's own options) included. 0 or
 * VMM_EXIT_USAGE naming the first such device.
 */
static int check_vhost_user_memory(const struct vmm_config *cfg, char *err, size_t errlen)
{
	const char *opt = NULL, *sock = NULL;

	if (cfg->mem_shared || cfg->hugepages)
		return 0;
	for (unsigned int i = 0; i < cfg->ndisks && !sock; i++)
		if (cfg->disks[i].vhost_user) {
			opt = "--disk";
			sock = cfg->disks[i].vhost_user;
		}
	for (unsigned int i = 0; i < cfg->nnets && !sock; i++)
		if (cfg->nets[i].vhost_user) {
			opt = "--net";
			sock = cfg->nets[i].vhost_user;
		}
	for (unsigned int i = 0; i < cfg->nfs && !sock; i++) {
		opt = "--fs";
		sock = cfg->fs[i].vhost_user;
	}
	if (!sock)
		return 0;
	return usage_error(err, errlen, "%s vhost-user=%s: a vhost-user back-end must map guest "
			   "RAM from its own process — add shared=on to --memory (e.g. --memory "
			   "1G,shared=on)", opt, sock);
}

int cli_parse(int argc, char **argv, struct vmm_config *cfg, enum cli_command *cmd,
	      char *err, size_t errlen)
{
	int opt, ret;

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
	for (size_t i = 0; i < ARRAY_SIZE(ctl_commands); i++)
		if (!strcmp(argv[1], ctl_commands[i].name))
			return cli_parse_ctl(argc, argv, cfg, ctl_commands[i].cmd, cmd, err, errlen);
	if (strcmp(argv[1], "run"))
		return usage_error(err, errlen, "unknown command '%s' — see `vmm --help`", argv[1]);

	*cmd = CLI_RUN;
	optind = 0;	/* full reset: cli_parse may be called more than once */
	opterr = 0;
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, ":vh", run_options, NULL)) != -1) {
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
		if (opt != OPT_API_SOCKET && opt != OPT_INCOMING && opt != OPT_RESTORE && opt != 'v')
			cfg->vm_options++;
	}
	if (optind < argc)
		return usage_error(err, errlen, "unexpected argument '%s' — see `vmm run --help`",
				   argv[optind]);
	ret = check_vhost_user_memory(cfg, err, errlen);
	if (ret)
		return ret;
	if (cfg->incoming && !strcmp(cfg->incoming, "defer") && !cfg->api_socket)
		return usage_error(err, errlen, "--incoming defer waits for the control API's "
				   "vm.receive-migration — add --api-socket PATH");
	if (cfg->incoming && cfg->restore)
		return usage_error(err, errlen, "--incoming and --restore exclude each other — a VM "
				   "starts from a migration or from a snapshot");
	if (!cfg->kernel && !cfg->incoming && !cfg->restore)
		return usage_error(err, errlen, "no kernel given — add --kernel PATH (a bzImage such "
				   "as /boot/vmlinuz-$(uname -r))");
	if (record_vm_options(cfg, argc, argv))
		return usage_error(err, errlen, "out of memory");
	return 0;
}
