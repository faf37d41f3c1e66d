// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the command line (vmm/cli.c) and the number helpers it
 * uses (vmm/util.c: parse_size, parse_uint, format_size).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "vmm/cli.h"
#include "vmm/config.h"
#include "vmm/base/util.h"

#define MAX_ARGS	160
#define MAX_ARG_LEN	128

/*
 * getopt permutes argv and the config points into it, so every parse gets a
 * private, writable copy that stays valid until the next parse.
 */
static char arg_store[MAX_ARGS][MAX_ARG_LEN];
static char *argv_buf[MAX_ARGS + 1];

static struct vmm_config cfg;
static enum cli_command cmd;
static char err[256];

static int parse_args(const char *const *args)
{
	int argc = 0;

	for (; args[argc]; argc++) {
		cr_assert_lt(argc, MAX_ARGS);
		cr_assert_lt(strlen(args[argc]), MAX_ARG_LEN);
		strcpy(arg_store[argc], args[argc]);
		argv_buf[argc] = arg_store[argc];
	}
	argv_buf[argc] = NULL;
	cli_config_free(&cfg);
	memset(&cfg, 0xa5, sizeof(cfg));	/* cli_parse must fill in everything */
	cmd = (enum cli_command)-1;
	strcpy(err, "stale");
	return cli_parse(argc, argv_buf, &cfg, &cmd, err, sizeof(err));
}

static void cli_teardown(void)
{
	cli_config_free(&cfg);
}

TestSuite(cli, .fini = cli_teardown);

/* PARSE("run", "--kernel", "k") parses { "vmm", "run", "--kernel", "k" }. */
#define PARSE(...)	parse_args((const char *const[]){ "vmm", __VA_ARGS__, NULL })

static void expect_usage_error(int ret, const char *needle)
{
	cr_assert_eq(ret, VMM_EXIT_USAGE, "ret %d, want VMM_EXIT_USAGE (%d)", ret,
		     VMM_EXIT_USAGE);
	cr_assert_neq(err[0], '\0', "no error message");
	cr_assert_str_neq(err, "stale");
	if (needle)
		cr_assert(strstr(err, needle), "error '%s' does not mention '%s'", err, needle);
}

static void expect_defaults_except_kernel(void)
{
	cr_assert_eq(cfg.ncpus, 1);
	cr_assert_eq(cfg.memory, 512ULL << 20);
	cr_assert_str_eq(cfg.cmdline, "console=ttyS0");
	cr_assert_null(cfg.initrd);
	cr_assert_not(cfg.no_reboot);
	cr_assert_not(cfg.verbose);
	cr_assert_not(cfg.hugepages);
	cr_assert_not(cfg.mem_shared);
	cr_assert_eq(cfg.ndisks, 0);
	cr_assert_eq(cfg.nnets, 0);
	cr_assert_not(cfg.rng);
	cr_assert_not(cfg.console_set);
	cr_assert_not(cfg.virtio_cmdline);
}

/* ---- commands ---- */

Test(cli, no_arguments_is_help)
{
	const char *const args[] = { "vmm", NULL };

	cr_assert_eq(parse_args(args), 0);
	cr_assert_eq(cmd, CLI_HELP);
	cr_assert_str_empty(err);
}

Test(cli, help_spellings)
{
	cr_assert_eq(PARSE("--help"), 0);
	cr_assert_eq(cmd, CLI_HELP);
	cr_assert_eq(PARSE("-h"), 0);
	cr_assert_eq(cmd, CLI_HELP);
	cr_assert_eq(PARSE("help"), 0);
	cr_assert_eq(cmd, CLI_HELP);
	cr_assert_str_empty(err);
}

Test(cli, version)
{
	cr_assert_eq(PARSE("--version"), 0);
	cr_assert_eq(cmd, CLI_VERSION);
	cr_assert_str_empty(err);
}

Test(cli, run_help_needs_no_kernel)
{
	cr_assert_eq(PARSE("run", "--help"), 0);
	cr_assert_eq(cmd, CLI_RUN_HELP);
	cr_assert_eq(PARSE("run", "-h"), 0);
	cr_assert_eq(cmd, CLI_RUN_HELP);
	cr_assert_eq(PARSE("run", "--kernel", "bzImage", "--help"), 0);
	cr_assert_eq(cmd, CLI_RUN_HELP);
}

Test(cli, unknown_command)
{
	expect_usage_error(PARSE("boot", "--kernel", "k"), "boot");
	expect_usage_error(PARSE("--kernel", "k"), "--kernel");
}

/* ---- run: defaults and every option ---- */

Test(cli, run_defaults)
{
	cr_assert_eq(PARSE("run", "--kernel", "/boot/vmlinuz"), 0, "%s", err);
	cr_assert_eq(cmd, CLI_RUN);
	cr_assert_str_eq(cfg.kernel, "/boot/vmlinuz");
	cr_assert_str_empty(err);
	expect_defaults_except_kernel();
}

Test(cli, defaults_filled_for_help_too)
{
	cr_assert_eq(PARSE("--help"), 0);
	cr_assert_null(cfg.kernel);
	expect_defaults_except_kernel();
}

Test(cli, every_option)
{
	cr_assert_eq(PARSE("run", "--kernel", "bz", "--initrd", "initrd.img",
			   "--cmdline", "console=ttyS0 quiet", "--cpus", "4", "--memory", "2G",
			   "--no-reboot", "--verbose"), 0, "%s", err);
	cr_assert_eq(cmd, CLI_RUN);
	cr_assert_str_eq(cfg.kernel, "bz");
	cr_assert_str_eq(cfg.initrd, "initrd.img");
	cr_assert_str_eq(cfg.cmdline, "console=ttyS0 quiet");
	cr_assert_eq(cfg.ncpus, 4);
	cr_assert_eq(cfg.memory, 2ULL << 30);
	cr_assert(cfg.no_reboot);
	cr_assert(cfg.verbose);
}

Test(cli, equals_form_and_short_verbose)
{
	cr_assert_eq(PARSE("run", "--kernel=bz", "--cpus=255", "--memory=16M", "-v"), 0, "%s", err);
	cr_assert_str_eq(cfg.kernel, "bz");
	cr_assert_eq(cfg.ncpus, 255);
	cr_assert_eq(cfg.memory, 16ULL << 20);
	cr_assert(cfg.verbose);
	cr_assert_not(cfg.no_reboot);
}

Test(cli, memory_suffixes)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "1g"), 0, "%s", err);
	cr_assert_eq(cfg.memory, 1ULL << 30);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "512MiB"), 0, "%s", err);
	cr_assert_eq(cfg.memory, 512ULL << 20);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "32768K"), 0, "%s", err);
	cr_assert_eq(cfg.memory, 32ULL << 20);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "16777216"), 0, "%s", err);
	cr_assert_eq(cfg.memory, 16ULL << 20);
}

Test(cli, options_in_any_order)
{
	cr_assert_eq(PARSE("run", "--cpus", "2", "--memory", "64M", "--kernel", "k"), 0, "%s", err);
	cr_assert_eq(cfg.ncpus, 2);
	cr_assert_eq(cfg.memory, 64ULL << 20);
	cr_assert_str_eq(cfg.kernel, "k");
}

Test(cli, last_value_wins)
{
	cr_assert_eq(PARSE("run", "--kernel", "a", "--cpus", "2", "--kernel", "b", "--cpus", "3"),
		     0, "%s", err);
	cr_assert_str_eq(cfg.kernel, "b");
	cr_assert_eq(cfg.ncpus, 3);
}

Test(cli, empty_cmdline_allowed)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--cmdline", ""), 0, "%s", err);
	cr_assert_str_eq(cfg.cmdline, "");
}

/* ---- run: errors ---- */

Test(cli, cpus_zero)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--cpus", "0"), "--cpus");
	cr_assert(strstr(err, "255"), "%s", err);
}

Test(cli, cpus_256)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--cpus", "256"), "256");
}

Test(cli, cpus_not_a_number)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--cpus", "abc"), "abc");
	expect_usage_error(PARSE("run", "--kernel", "k", "--cpus", "2x"), "2x");
	expect_usage_error(PARSE("run", "--kernel", "k", "--cpus", ""), "--cpus");
}

Test(cli, cpus_negative)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--cpus", "-1"), "-1");
	expect_usage_error(PARSE("run", "--kernel", "k", "--cpus=-1"), "-1");
}

Test(cli, memory_too_small)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "1K"), "16M");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "15M"), "16M");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "0"), "--memory");
}

Test(cli, memory_not_a_size)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "abc"), "abc");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "12X"), "12X");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "-1G"), "-1G");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "99999999999T"), "--memory");
}

Test(cli, memory_not_page_multiple)
{
	/* 4097 bytes is rejected (too small, and not whole pages either). */
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "4097"), "--memory");
	/* Large enough but not whole 4 KiB pages: the message says so. */
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "16777217"), "pages");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "16781313"), "pages");
}

Test(cli, missing_kernel)
{
	expect_usage_error(PARSE("run"), "--kernel");
	expect_usage_error(PARSE("run", "--cpus", "2", "--memory", "1G"), "--kernel");
}

Test(cli, unknown_long_option)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--frobnicate"), "--frobnicate");
}

Test(cli, unknown_short_option)
{
	expect_usage_error(PARSE("run", "-x", "--kernel", "k"), "-x");
}

Test(cli, no_argument_option_given_a_value)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--no-reboot=yes"), "no-reboot");
}

Test(cli, missing_value)
{
	expect_usage_error(PARSE("run", "--kernel"), "--kernel");
	cr_assert(strstr(err, "value"), "%s", err);
	expect_usage_error(PARSE("run", "--kernel", "k", "--cpus"), "--cpus");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory"), "--memory");
}

Test(cli, stray_argument)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "extra"), "extra");
	expect_usage_error(PARSE("run", "stray", "--kernel", "k"), "stray");
}

Test(cli, error_message_truncated_safely)
{
	const char *const args[] = { "vmm", "run", "--kernel", "k", "--cpus", "abc", NULL };
	char small[8];
	int argc = 6;

	cli_config_free(&cfg);
	for (int i = 0; args[i]; i++) {
		strcpy(arg_store[i], args[i]);
		argv_buf[i] = arg_store[i];
	}
	argv_buf[argc] = NULL;
	memset(small, 'x', sizeof(small));
	cr_assert_eq(cli_parse(argc, argv_buf, &cfg, &cmd, small, sizeof(small)), VMM_EXIT_USAGE);
	cr_assert_eq(strnlen(small, sizeof(small)), sizeof(small) - 1);
}

/* ---- --memory SIZE[,shared=on][,hugepages=on] ---- */

Test(cli, memory_hugepages)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "1G,hugepages=on"), 0, "%s", err);
	cr_assert_eq(cfg.memory, 1ULL << 30);
	cr_assert(cfg.hugepages);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "size=64M,hugepages=off"), 0, "%s",
		     err);
	cr_assert_eq(cfg.memory, 64ULL << 20);
	cr_assert_not(cfg.hugepages);
	/* hugepages alone keeps the default size (a multiple of 2M). */
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "hugepages=on"), 0, "%s", err);
	cr_assert_eq(cfg.memory, 512ULL << 20);
	cr_assert(cfg.hugepages);
}

Test(cli, memory_shared)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "1G,shared=on"), 0, "%s", err);
	cr_assert_eq(cfg.memory, 1ULL << 30);
	cr_assert(cfg.mem_shared);
	cr_assert_not(cfg.hugepages);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "size=64M,shared=off"), 0, "%s", err);
	cr_assert_not(cfg.mem_shared);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "64M,shared=on,hugepages=on"), 0,
		     "%s", err);
	cr_assert(cfg.mem_shared);
	cr_assert(cfg.hugepages);
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "64M,shared=maybe"),
			   "maybe");
}

Test(cli, memory_hugepages_errors)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "17M,hugepages=on"), "2M");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "64M,hugepages=maybe"), "maybe");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "64M,colour=blue"), "colour");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "64M,128M"), "128M");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "size=1K"), "16M");
}

Test(cli, memory_empty_value)
{
	/* An empty size must not silently mean the default 512M. */
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", ""), "--memory");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory="), "--memory");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", ","), "--memory");
}

/* ---- --disk ---- */

Test(cli, disk_all_keys)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--disk",
			   "path=/var/disk.img,readonly=on,direct=on,id=serial-1"), 0, "%s", err);
	cr_assert_eq(cfg.ndisks, 1);
	cr_assert_str_eq(cfg.disks[0].path, "/var/disk.img");
	cr_assert(cfg.disks[0].readonly);
	cr_assert(cfg.disks[0].direct);
	cr_assert_str_eq(cfg.disks[0].id, "serial-1");
}

Test(cli, disk_bare_path_and_defaults)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--disk", "a.img", "--disk", "b.img,readonly=yes"),
		     0, "%s", err);
	cr_assert_eq(cfg.ndisks, 2);
	cr_assert_str_eq(cfg.disks[0].path, "a.img");
	cr_assert_not(cfg.disks[0].readonly);
	cr_assert_not(cfg.disks[0].direct);
	cr_assert_null(cfg.disks[0].id);
	cr_assert_str_eq(cfg.disks[1].path, "b.img");
	cr_assert(cfg.disks[1].readonly);
	/* The values are copies: argv may change afterwards. */
	for (int i = 0; i < MAX_ARGS; i++)
		memset(arg_store[i], 'X', MAX_ARG_LEN - 1);
	cr_assert_str_eq(cfg.disks[0].path, "a.img");
}

Test(cli, disk_id_length)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--disk", "path=d,id=12345678901234567890"), 0,
		     "%s", err);
	cr_assert_str_eq(cfg.disks[0].id, "12345678901234567890");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", "path=d,id=123456789012345678901"),
			   "20");
}

Test(cli, disk_errors)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", "readonly=on"), "path");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", "path="), "path");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", ""), "path");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", "path=d,readonly=perhaps"),
			   "perhaps");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", "path=d,direct=2"), "direct");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", "path=d,cache=none"), "cache");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", "path=d,ro"), "ro");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk"), "--disk");
}

Test(cli, disk_limit)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--disk", "1", "--disk", "2", "--disk", "3",
			   "--disk", "4", "--disk", "5", "--disk", "6", "--disk", "7", "--disk", "8"),
		     0, "%s", err);
	cr_assert_eq(cfg.ndisks, 8);
	cr_assert_str_eq(cfg.disks[7].path, "8");
	expect_usage_error(PARSE("run", "--kernel", "k", "--disk", "1", "--disk", "2", "--disk", "3",
				 "--disk", "4", "--disk", "5", "--disk", "6", "--disk", "7",
				 "--disk", "8", "--disk", "9"), "8");
}

/* ---- --vsock ---- */

Test(cli, vsock)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--vsock", "cid=3"), 0, "%s", err);
	cr_assert(cfg.vsock_set);
	cr_assert_eq(cfg.vsock.cid, 3);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--vsock", "cid=4294967294"), 0, "%s", err);
	cr_assert_eq(cfg.vsock.cid, 4294967294ULL);
	cr_assert_eq(PARSE("run", "--kernel", "k"), 0, "%s", err);
	cr_assert_not(cfg.vsock_set);
}

Test(cli, vsock_errors)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--vsock", "cid=2"), "2");
	expect_usage_error(PARSE("run", "--kernel", "k", "--vsock", "cid=4294967295"), "4294967295");
	expect_usage_error(PARSE("run", "--kernel", "k", "--vsock", "cid=-5"), "-5");
	expect_usage_error(PARSE("run", "--kernel", "k", "--vsock", "cid=3x"), "3x");
	expect_usage_error(PARSE("run", "--kernel", "k", "--vsock", "cid="), "cid");
	expect_usage_error(PARSE("run", "--kernel", "k", "--vsock", "port=3"), "port");
	expect_usage_error(PARSE("run", "--kernel", "k", "--vsock", "cid=3", "--vsock", "cid=4"),
			   "twice");
}

/* ---- --net ---- */

Test(cli, net_all_keys)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };

	cr_assert_eq(PARSE("run", "--kernel", "k", "--net", "tap=tap0,mac=52:54:00:AB:cd:ef,vhost=on",
			   "--net", "tap=tap1,vhost=off"), 0, "%s", err);
	cr_assert_eq(cfg.nnets, 2);
	cr_assert_str_eq(cfg.nets[0].tap, "tap0");
	cr_assert(cfg.nets[0].mac_set);
	cr_assert_arr_eq(cfg.nets[0].mac, mac, 6);
	cr_assert_eq(cfg.nets[0].vhost, NET_VHOST_ON);
	cr_assert_str_eq(cfg.nets[1].tap, "tap1");
	cr_assert_not(cfg.nets[1].mac_set);
	cr_assert_eq(cfg.nets[1].vhost, NET_VHOST_OFF);
}

Test(cli, net_errors)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "mac=52:54:00:12:34:56"), "tap");
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "tap0"), "tap0");
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "tap="), "tap");
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "tap=0123456789abcdef"), "15");
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "tap=t,mac=01:00:5e:00:00:01"),
			   "mac");
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "tap=t,mac=52:54:00:12:34"), "mac");
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "tap=t,vhost=auto"), "auto");
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "tap=t,queues=2"), "queues");
	cr_assert_eq(PARSE("run", "--kernel", "k", "--net", "tap=0123456789abcde"), 0, "%s", err);
	cr_assert_eq(cfg.nets[0].vhost, NET_VHOST_AUTO, "no vhost= key: vhost-net when usable");
}

Test(cli, net_limit)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--net", "tap=a", "--net", "tap=b", "--net",
			   "tap=c", "--net", "tap=d"), 0, "%s", err);
	cr_assert_eq(cfg.nnets, 4);
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "tap=a", "--net", "tap=b", "--net",
				 "tap=c", "--net", "tap=d", "--net", "tap=e"), "4");
}

Test(cli, net_vhost_user)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x02 };

	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "1G,shared=on", "--net",
			   "vhost-user=/run/net.sock,mac=52:54:00:00:00:02", "--net", "tap=tap0"), 0,
		     "%s", err);
	cr_assert_eq(cfg.nnets, 2);
	cr_assert_str_eq(cfg.nets[0].vhost_user, "/run/net.sock");
	cr_assert_null(cfg.nets[0].tap);
	cr_assert(cfg.nets[0].mac_set);
	cr_assert_arr_eq(cfg.nets[0].mac, mac, 6);
	cr_assert_null(cfg.nets[1].vhost_user);
	cr_assert_str_eq(cfg.nets[1].tap, "tap0");
}

Test(cli, net_vhost_user_errors)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--net", "vhost-user=/run/net.sock"),
			   "shared=on");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "1G,shared=on", "--net",
				 "vhost-user="), "socket");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "1G,shared=on", "--net",
				 "vhost-user=/s,tap=tap0"), "exclude");
	expect_usage_error(PARSE("run", "--kernel", "k", "--memory", "1G,shared=on", "--net",
				 "vhost-user=/s,vhost=on"), "vhost=on|off");
	/* A tap device alone needs no shared memory. */
	cr_assert_eq(PARSE("run", "--kernel", "k", "--net", "tap=tap0"), 0, "%s", err);
}

/* ---- the rule for every vhost-user device: shareable guest RAM ---- */

/* One device of each vhost-user kind: the option and its value. */
static const char *const vu_kinds[][2] = {
	{ "--disk", "vhost-user=/run/blk.sock,reconnect=5" },
	{ "--net", "vhost-user=/run/net.sock" },
	{ "--fs", "vhost-user=/run/fs.sock,tag=share" },
};

/* The one message, naming the device, for every kind. */
static void expect_shared_refusal(int ret, const char *opt, const char *sock)
{
	char what[64];

	expect_usage_error(ret, "add shared=on to --memory (e.g. --memory 1G,shared=on)");
	snprintf(what, sizeof(what), "%s vhost-user=%s:", opt, sock);
	cr_assert(strstr(err, what), "error '%s' does not name '%s'", err, what);
}

Test(cli, every_vhost_user_kind_is_refused_without_shared_memory)
{
	static const char *const socks[] = { "/run/blk.sock", "/run/net.sock", "/run/fs.sock" };

	for (unsigned int i = 0; i < ARRAY_SIZE(vu_kinds); i++) {
		const char *opt = vu_kinds[i][0], *val = vu_kinds[i][1];

		expect_shared_refusal(PARSE("run", "--kernel", "k", opt, val), opt, socks[i]);
		expect_shared_refusal(PARSE("run", "--kernel", "k", "--memory", "1G", opt, val), opt,
				      socks[i]);
		expect_shared_refusal(PARSE("run", "--kernel", "k", "--memory", "1G,shared=off", opt,
					    val), opt, socks[i]);
		expect_shared_refusal(PARSE("run", "--kernel", "k", opt, val, "--memory",
					    "1G,hugepages=off"), opt, socks[i]);
		/* Among other devices: still refused, and this one is named. */
		expect_shared_refusal(PARSE("run", "--kernel", "k", "--disk", "path=d.img", "--net",
					    "tap=tap0", opt, val), opt, socks[i]);
		/* A migration's destination and a snapshot's options parse the same way. */
		expect_shared_refusal(PARSE("run", "--incoming", "tcp:0.0.0.0:4444", "--memory", "1G",
					    opt, val), opt, socks[i]);
		expect_shared_refusal(PARSE("run", "--kernel", "k", opt, val, "--restore", "/snap"),
				      opt, socks[i]);
	}
}

Test(cli, every_vhost_user_kind_is_accepted_with_shared_or_hugepages)
{
	for (unsigned int i = 0; i < ARRAY_SIZE(vu_kinds); i++) {
		const char *opt = vu_kinds[i][0], *val = vu_kinds[i][1];

		cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "1G,shared=on", opt, val), 0,
			     "%s %s: %s", opt, val, err);
		cr_assert(cfg.mem_shared);
		/* --memory after the device: the rule looks at the whole command line. */
		cr_assert_eq(PARSE("run", "--kernel", "k", opt, val, "--memory", "1G,shared=on"), 0,
			     "%s", err);
		/* hugetlbfs RAM is a memfd a back-end can map too. */
		cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "1G,hugepages=on", opt, val),
			     0, "%s %s: %s", opt, val, err);
		cr_assert_not(cfg.mem_shared);
		cr_assert(cfg.hugepages);
		cr_assert_eq(PARSE("run", "--incoming", "tcp:0.0.0.0:4444", "--memory",
				   "1G,shared=on", opt, val), 0, "%s", err);
		cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "1G,hugepages=on", opt, val,
				   "--restore", "/snap"), 0, "%s", err);
	}
	/* Devices without a back-end in another process need nothing shared. */
	cr_assert_eq(PARSE("run", "--kernel", "k", "--disk", "path=d.img", "--net", "tap=tap0"),
		     0, "%s", err);
}

/* ---- --fs ---- */

Test(cli, fs)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--memory", "1G,shared=on", "--fs",
			   "vhost-user=/run/fs.sock,tag=share", "--fs",
			   "tag=abcdefghijklmnopqrstuvwxyz0123456789,vhost-user=/s2,queues=8"), 0, "%s",
		     err);
	cr_assert_eq(cfg.nfs, 2);
	cr_assert_str_eq(cfg.fs[0].vhost_user, "/run/fs.sock");
	cr_assert_str_eq(cfg.fs[0].tag, "share");
	cr_assert_eq(cfg.fs[0].queues, 0, "default: one request queue");
	cr_assert_str_eq(cfg.fs[1].tag, "abcdefghijklmnopqrstuvwxyz0123456789");
	cr_assert_eq(cfg.fs[1].queues, 8);
	cr_assert_eq(PARSE("run", "--kernel", "k"), 0, "%s", err);
	cr_assert_eq(cfg.nfs, 0);
}

Test(cli, fs_errors)
{
#define SH "--memory", "1G,shared=on"
	expect_usage_error(PARSE("run", "--kernel", "k", "--fs", "vhost-user=/s,tag=t"), "shared=on");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "tag=t"), "vhost-user");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "vhost-user=/s"), "tag");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "vhost-user=/s,tag="), "tag");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs",
				 "vhost-user=/s,tag=abcdefghijklmnopqrstuvwxyz01234567890"), "36");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "vhost-user=,tag=t"), "socket");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "vhost-user=/s,tag=t,queues=0"),
			   "queues");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "vhost-user=/s,tag=t,queues=9"),
			   "queues");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "vhost-user=/s,tag=t,cache=auto"),
			   "cache");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "vhost-user=/s,tag=t", "--fs",
				 "vhost-user=/s2,tag=t"), "twice");
	expect_usage_error(PARSE("run", "--kernel", "k", SH, "--fs", "vhost-user=/a,tag=a", "--fs",
				 "vhost-user=/b,tag=b", "--fs", "vhost-user=/c,tag=c", "--fs",
				 "vhost-user=/d,tag=d", "--fs", "vhost-user=/e,tag=e"), "4");
#undef SH
}

/* ---- --rng, --console, --virtio-cmdline ---- */

Test(cli, rng_and_virtio_cmdline)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--rng", "--virtio-cmdline"), 0, "%s", err);
	cr_assert(cfg.rng);
	cr_assert(cfg.virtio_cmdline);
	expect_usage_error(PARSE("run", "--kernel", "k", "--rng=on"), "rng");
}

Test(cli, console_backends)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--console", "pty"), 0, "%s", err);
	cr_assert(cfg.console_set);
	cr_assert_eq(cfg.console.backend, CONSOLE_BACKEND_PTY);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--console", "file=/tmp/hvc0.log"), 0, "%s", err);
	cr_assert(cfg.console_set);
	cr_assert_eq(cfg.console.backend, CONSOLE_BACKEND_FILE);
	cr_assert_str_eq(cfg.console.path, "/tmp/hvc0.log");
}

Test(cli, console_errors)
{
	expect_usage_error(PARSE("run", "--kernel", "k", "--console", "tty"), "tty");
	expect_usage_error(PARSE("run", "--kernel", "k", "--console", "file="), "file");
	expect_usage_error(PARSE("run", "--kernel", "k", "--console", "pipe=x"), "pipe");
	expect_usage_error(PARSE("run", "--kernel", "k", "--console", "pty", "--console", "pty"),
			   "twice");
}

Test(cli, console_empty_value)
{
	/* An empty value is neither pty nor file=PATH. */
	expect_usage_error(PARSE("run", "--kernel", "k", "--console", ""), "--console");
}

Test(cli, many_option_values)
{
	const char *args[2 + 2 + 2 * 70 + 1] = { "vmm", "run", "--kernel", "k" };
	int n = 4, ret;

	/* Each --memory value is copied; the copies are bounded, and running out is an error. */
	for (int i = 0; i < 70; i++) {
		args[n++] = "--memory";
		args[n++] = "64M";
	}
	args[n] = NULL;
	ret = parse_args(args);
	cr_assert(ret == 0 || ret == VMM_EXIT_USAGE, "ret %d", ret);
	if (ret)
		cr_assert_neq(err[0], '\0');
	cr_assert_leq(cfg.nowned, VMM_MAX_OWNED);
}

/* ---- cli_parse_bool, cli_parse_mac ---- */

Test(cli, parse_bool)
{
	static const char *const yes[] = { "on", "true", "yes", "1" };
	static const char *const no[] = { "off", "false", "no", "0" };
	static const char *const bad[] = { "", "2", "onn", "o", "y", "n", "truee", " on", "on " };
	bool b;

	for (size_t i = 0; i < 4; i++) {
		b = false;
		cr_assert_eq(cli_parse_bool(yes[i], &b), 0, "%s", yes[i]);
		cr_assert(b, "%s", yes[i]);
		b = true;
		cr_assert_eq(cli_parse_bool(no[i], &b), 0, "%s", no[i]);
		cr_assert_not(b, "%s", no[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = true;
		cr_assert_eq(cli_parse_bool(bad[i], &b), -EINVAL, "'%s' accepted", bad[i]);
		cr_assert(b, "'%s' changed the value", bad[i]);
	}
}

Test(cli, parse_mac_valid)
{
	static const uint8_t want[6] = { 0x52, 0x54, 0x00, 0x12, 0xab, 0xcd };
	uint8_t mac[6];

	cr_assert_eq(cli_parse_mac("52:54:00:12:ab:cd", mac), 0);
	cr_assert_arr_eq(mac, want, 6);
	cr_assert_eq(cli_parse_mac("52:54:00:12:AB:CD", mac), 0);
	cr_assert_arr_eq(mac, want, 6);
	cr_assert_eq(cli_parse_mac("02:00:00:00:00:00", mac), 0);
	cr_assert_eq(mac[0], 0x02);
	cr_assert_eq(cli_parse_mac("fe:ff:ff:ff:ff:ff", mac), 0);
}

Test(cli, parse_mac_invalid)
{
	static const char *const bad[] = {
		"", "52:54:00:12:34", "52:54:00:12:34:56:78", "52-54-00-12-34-56",
		"52:54:00:12:34:5g", "5254.0012.3456", "52:54:00:12:34:5", "52:54:00:12:34:567",
		" 52:54:00:12:34:56", "52:54:00:12:34:56 ", "+2:54:00:12:34:56", "52:54:-0:12:34:56",
		"52: 4:00:12:34:56", "52:54:00:12:34: 6", "525:4:00:12:34:56",
		"01:00:5e:00:00:01",	/* multicast */
		"ff:ff:ff:ff:ff:ff",	/* broadcast */
	};
	uint8_t mac[6];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(cli_parse_mac(bad[i], mac), -EINVAL, "'%s' accepted", bad[i]);
}

Test(cli, parse_mac_rejects_hex_prefix)
{
	uint8_t mac[6];

	/* scanf's %x takes "0x" as a prefix: "0x" is not two hex digits. */
	cr_assert_eq(cli_parse_mac("0x:54:00:12:34:56", mac), -EINVAL, "'0x' accepted as a byte");
	cr_assert_eq(cli_parse_mac("52:54:0x:12:34:56", mac), -EINVAL, "'0x' accepted as a byte");
	cr_assert_eq(cli_parse_mac("52:54:00:12:34:0X", mac), -EINVAL, "'0X' accepted as a byte");
}

/* ---- getopt state is reset between calls ---- */

Test(cli, parse_twice)
{
	cr_assert_eq(PARSE("run", "--kernel", "a", "--cpus", "2"), 0, "%s", err);
	cr_assert_eq(cfg.ncpus, 2);
	cr_assert_eq(PARSE("run", "--kernel", "b", "--memory", "1G"), 0, "%s", err);
	cr_assert_str_eq(cfg.kernel, "b");
	cr_assert_eq(cfg.ncpus, 1, "value from the previous parse leaked");
	cr_assert_eq(cfg.memory, 1ULL << 30);
}

Test(cli, parse_after_error_and_help)
{
	expect_usage_error(PARSE("run", "--kernel", "a", "--bogus", "x"), "--bogus");
	cr_assert_eq(PARSE("run", "-h"), 0);
	cr_assert_eq(cmd, CLI_RUN_HELP);
	/* An error stopped getopt halfway through a bundle of short options. */
	expect_usage_error(PARSE("run", "-vx", "--kernel", "k"), NULL);
	cr_assert_eq(PARSE("run", "-v", "--kernel", "c"), 0, "%s", err);
	cr_assert_eq(cmd, CLI_RUN);
	cr_assert_str_eq(cfg.kernel, "c");
	cr_assert(cfg.verbose);
	cr_assert_str_empty(err);
}

/* ---- help text ---- */

static char *capture(void (*print)(FILE *))
{
	static char buf[16384];
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	cr_assert_not_null(f);
	print(f);
	fclose(f);
	cr_assert(strlen(buf) < sizeof(buf) - 1, "the help text outgrew the test's buffer");
	return buf;
}

Test(cli, help_texts)
{
	char *h = capture(cli_print_help);

	cr_assert(strstr(h, "run"));
	cr_assert(strstr(h, "Exit status"));
	h = capture(cli_print_run_help);
	cr_assert(strstr(h, "--kernel"));
	cr_assert(strstr(h, "--initrd"));
	cr_assert(strstr(h, "--cmdline"));
	cr_assert(strstr(h, "--cpus"));
	cr_assert(strstr(h, "--memory"));
	cr_assert(strstr(h, "--no-reboot"));
	cr_assert(strstr(h, "--verbose"));
	cr_assert(strstr(h, "--disk"));
	cr_assert(strstr(h, "--net"));
	cr_assert(strstr(h, "--rng"));
	cr_assert(strstr(h, "--console"));
	cr_assert(strstr(h, "--virtio-cmdline"));
	cr_assert(strstr(h, "hugepages"));
	cr_assert(strstr(h, "shared=on"));
	cr_assert(strstr(h, VMM_DEFAULT_CMDLINE));
}

/* ---- util.c: parse_size ---- */

Test(util, parse_size_plain_and_suffixes)
{
	uint64_t v;

	cr_assert_eq(parse_size("4096", &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(parse_size("0", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(parse_size("1K", &v), 0);
	cr_assert_eq(v, 1024);
	cr_assert_eq(parse_size("1k", &v), 0);
	cr_assert_eq(v, 1024);
	cr_assert_eq(parse_size("512M", &v), 0);
	cr_assert_eq(v, 512ULL << 20);
	cr_assert_eq(parse_size("3G", &v), 0);
	cr_assert_eq(v, 3ULL << 30);
	cr_assert_eq(parse_size("2t", &v), 0);
	cr_assert_eq(v, 2ULL << 40);
	cr_assert_eq(parse_size("512MiB", &v), 0);
	cr_assert_eq(v, 512ULL << 20);
	cr_assert_eq(parse_size("1GB", &v), 0);
	cr_assert_eq(v, 1ULL << 30);
	cr_assert_eq(parse_size("18446744073709551615", &v), 0);
	cr_assert_eq(v, UINT64_MAX);
}

Test(util, parse_size_errors)
{
	uint64_t v = 77;

	cr_assert_eq(parse_size(NULL, &v), -EINVAL);
	cr_assert_eq(parse_size("", &v), -EINVAL);
	cr_assert_eq(parse_size("M", &v), -EINVAL);
	cr_assert_eq(parse_size("-1", &v), -EINVAL);
	cr_assert_eq(parse_size("+1", &v), -EINVAL);
	cr_assert_eq(parse_size(" 1", &v), -EINVAL);
	cr_assert_eq(parse_size("1X", &v), -EINVAL);
	cr_assert_eq(parse_size("1MX", &v), -EINVAL);
	cr_assert_eq(parse_size("1 M", &v), -EINVAL);
	cr_assert_eq(parse_size("1B", &v), -EINVAL);	/* B only after a suffix */
	cr_assert_eq(parse_size("1.5G", &v), -EINVAL);
	cr_assert_eq(v, 77, "*out written on error");
}

Test(util, parse_size_overflow)
{
	uint64_t v = 77;

	cr_assert_eq(parse_size("18446744073709551616", &v), -ERANGE);
	cr_assert_eq(parse_size("16777216T", &v), -ERANGE);	/* 2^64 */
	cr_assert_eq(parse_size("17179869184G", &v), -ERANGE);	/* 2^64 */
	cr_assert_eq(v, 77);
	cr_assert_eq(parse_size("16777215T", &v), 0);
	cr_assert_eq(v, 16777215ULL << 40);
}

/* ---- util.c: parse_uint ---- */

Test(util, parse_uint_range)
{
	unsigned long v;

	cr_assert_eq(parse_uint("1", 1, 255, &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(parse_uint("255", 1, 255, &v), 0);
	cr_assert_eq(v, 255);
	cr_assert_eq(parse_uint("0", 0, 0, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(parse_uint("007", 1, 255, &v), 0);
	cr_assert_eq(v, 7);
}

Test(util, parse_uint_errors)
{
	unsigned long v = 77;

	cr_assert_eq(parse_uint("0", 1, 255, &v), -ERANGE);
	cr_assert_eq(parse_uint("256", 1, 255, &v), -ERANGE);
	cr_assert_eq(parse_uint("99999999999999999999999", 1, 255, &v), -ERANGE);
	cr_assert_eq(parse_uint(NULL, 1, 255, &v), -EINVAL);
	cr_assert_eq(parse_uint("", 1, 255, &v), -EINVAL);
	cr_assert_eq(parse_uint("-1", 0, 255, &v), -EINVAL);
	cr_assert_eq(parse_uint("+1", 0, 255, &v), -EINVAL);
	cr_assert_eq(parse_uint(" 1", 0, 255, &v), -EINVAL);
	cr_assert_eq(parse_uint("1 ", 0, 255, &v), -EINVAL);
	cr_assert_eq(parse_uint("abc", 0, 255, &v), -EINVAL);
	cr_assert_eq(parse_uint("12abc", 0, 255, &v), -EINVAL);
	cr_assert_eq(parse_uint("0x10", 0, 255, &v), -EINVAL);
	cr_assert_eq(v, 77, "*out written on error");
}

/* ---- util.c: format_size ---- */

Test(util, format_size_units)
{
	char buf[32];

	cr_assert_str_eq(format_size(0, buf, sizeof(buf)), "0 bytes");
	cr_assert_str_eq(format_size(1, buf, sizeof(buf)), "1 bytes");
	cr_assert_str_eq(format_size(1023, buf, sizeof(buf)), "1023 bytes");
	cr_assert_str_eq(format_size(1536, buf, sizeof(buf)), "1536 bytes");
	cr_assert_str_eq(format_size(1024, buf, sizeof(buf)), "1 KiB");
	cr_assert_str_eq(format_size(3 * 1024 + 1024 * 1024, buf, sizeof(buf)), "1027 KiB");
	cr_assert_str_eq(format_size(512ULL << 20, buf, sizeof(buf)), "512 MiB");
	cr_assert_str_eq(format_size(3ULL << 30, buf, sizeof(buf)), "3 GiB");
	cr_assert_str_eq(format_size(1ULL << 40, buf, sizeof(buf)), "1 TiB");
	cr_assert_str_eq(format_size(1ULL << 50, buf, sizeof(buf)), "1024 TiB");
	cr_assert_eq(format_size(1, buf, sizeof(buf)), buf);
}

Test(util, format_size_round_units)
{
	char buf[32];

	cr_assert_str_eq(format_size_round(0, buf, sizeof(buf)), "0 bytes");
	cr_assert_str_eq(format_size_round(1023, buf, sizeof(buf)), "1023 bytes");
	cr_assert_str_eq(format_size_round(1536, buf, sizeof(buf)), "1.5 KiB");
	cr_assert_str_eq(format_size_round(512ULL << 20, buf, sizeof(buf)), "512 MiB");
	cr_assert_str_eq(format_size_round(1ULL << 40, buf, sizeof(buf)), "1 TiB");
	cr_assert_str_eq(format_size_round(1ULL << 50, buf, sizeof(buf)), "1024 TiB");
	cr_assert_str_eq(format_size_round(UINT64_MAX, buf, sizeof(buf)), "16777216.0 TiB");
	/* Rounds to the nearest tenth, carrying into the whole part. */
	cr_assert_str_eq(format_size_round((2ULL << 30) - 1, buf, sizeof(buf)), "2.0 GiB");
	cr_assert_str_eq(format_size_round((1ULL << 30) + (1ULL << 29), buf, sizeof(buf)),
			 "1.5 GiB");
}

/* Issue 8: `--memory 1T` on a host with 24683584 KiB of RAM and swap compared sizes in KiB. */
Test(util, format_size_round_host_limit)
{
	char want[32], have[32];

	cr_assert_str_eq(format_size_round(1ULL << 40, want, sizeof(want)), "1 TiB");
	cr_assert_str_eq(format_size_round(24683584ULL * 1024, have, sizeof(have)), "23.5 GiB");
}

Test(util, format_size_round_truncates)
{
	char buf[4];

	cr_assert_eq(format_size_round(1536, buf, sizeof(buf)), buf);
	cr_assert_str_eq(buf, "1.5");
}

Test(util, format_size_truncates)
{
	char buf[5];

	memset(buf, 'x', sizeof(buf));
	format_size(512ULL << 20, buf, sizeof(buf));
	cr_assert_str_eq(buf, "512 ");
}

/* ---- util.c: time ---- */

Test(util, timespec_from_ms_splits_seconds)
{
	struct timespec t = timespec_from_ms(2250);

	cr_assert_eq(t.tv_sec, 2);
	cr_assert_eq(t.tv_nsec, 250000000L);
	t = timespec_from_ms(999);
	cr_assert_eq(t.tv_sec, 0);
	cr_assert_eq(t.tv_nsec, 999000000L);
	t = timespec_from_ms(0);
	cr_assert(t.tv_sec == 0 && t.tv_nsec == 0);
}

Test(util, monotonic_deadline_ms_is_normalised_and_ahead)
{
	uint64_t before = monotonic_ns();
	struct timespec d = monotonic_deadline_ms(1999);
	uint64_t at = (uint64_t)d.tv_sec * 1000000000ULL + (uint64_t)d.tv_nsec;

	cr_assert(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L, "tv_nsec %ld", d.tv_nsec);
	cr_assert_geq(at, before + 1999000000ULL);
	cr_assert_lt(at, monotonic_ns() + 1999000000ULL + 1);
}

/* ---- util.c: thread_start ---- */

static void *report_stack(void *arg)
{
	pthread_attr_t attr;
	size_t *size = arg;

	cr_assert_eq(pthread_getattr_np(pthread_self(), &attr), 0);
	cr_assert_eq(pthread_attr_getstacksize(&attr, size), 0);
	pthread_attr_destroy(&attr);
	return NULL;
}

Test(util, thread_start_uses_a_small_stack)
{
	pthread_t t;
	size_t size = 0;

	cr_assert_eq(thread_start(&t, report_stack, &size), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	/* Too small to hold a 2 MiB huge page, big enough for vmm's frames. */
	cr_assert_eq(size, VMM_THREAD_STACK);
	cr_assert_lt(size, 2 * MIB);
}

Test(cli, api_socket_for_run)
{
	cr_assert_eq(PARSE("run", "--kernel", "k"), 0);
	cr_assert_null(cfg.api_socket);
	cr_assert_eq(PARSE("run", "--kernel", "k", "--api-socket", "/run/vm.sock"), 0);
	cr_assert_str_eq(cfg.api_socket, "/run/vm.sock");
	expect_usage_error(PARSE("run", "--kernel", "k", "--api-socket", ""), "--api-socket is empty");
}

Test(cli, control_subcommands)
{
	static const struct { const char *name; enum cli_command cmd; } cmds[] = {
		{ "pause", CLI_PAUSE }, { "resume", CLI_RESUME }, { "status", CLI_STATUS },
		{ "shutdown", CLI_SHUTDOWN },
	};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		cr_assert_eq(PARSE(cmds[i].name, "--api-socket", "/s"), 0, "%s: %s", cmds[i].name, err);
		cr_assert_eq(cmd, cmds[i].cmd);
		cr_assert_str_eq(cfg.api_socket, "/s");
		cr_assert_eq(PARSE(cmds[i].name, "--api-socket=/t"), 0);
		cr_assert_str_eq(cfg.api_socket, "/t");
		cr_assert_eq(PARSE(cmds[i].name, "--help"), 0);
		cr_assert_eq(cmd, CLI_CTL_HELP);
		expect_usage_error(PARSE(cmds[i].name), "needs --api-socket PATH");
		expect_usage_error(PARSE(cmds[i].name, "--api-socket"), "needs a value");
		expect_usage_error(PARSE(cmds[i].name, "--api-socket", ""), "is empty");
		expect_usage_error(PARSE(cmds[i].name, "--api-socket", "/s", "x"), "unexpected argument 'x'");
		expect_usage_error(PARSE(cmds[i].name, "--kernel", "k"), "unknown option '--kernel'");
	}
}

Test(cli, help_lists_control)
{
	static char buf[16384];
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");

	cli_print_help(f);
	cli_print_run_help(f);
	cli_print_ctl_help(f);
	fclose(f);
	cr_assert(strstr(buf, "pause      pause a running VM"));
	cr_assert(strstr(buf, "--api-socket PATH serve the control API"));
	cr_assert(strstr(buf, "  7    the VM is not in a state for it"));
	cr_assert(strstr(buf, "SIGUSR2 logs where every\nvirtio queue stands"));
	cr_assert(strlen(buf) < sizeof(buf) - 2, "the help texts outgrew the test's buffer");
}

/* ---- migration and snapshots ---- */

Test(cli, run_options_recorded_without_host_only_ones)
{
	cr_assert_eq(PARSE("run", "--kernel", "k", "--api-socket", "/s", "-v", "--cpus", "2",
			   "--disk", "path=d.img", "--api-socket=/t"), 0);
	cr_assert_eq(cfg.run_argc, 6);
	cr_assert_str_eq(cfg.run_argv[0], "--kernel");
	cr_assert_str_eq(cfg.run_argv[1], "k");
	cr_assert_str_eq(cfg.run_argv[2], "--cpus");
	cr_assert_str_eq(cfg.run_argv[3], "2");
	cr_assert_str_eq(cfg.run_argv[4], "--disk");
	cr_assert_str_eq(cfg.run_argv[5], "path=d.img");
	cr_assert_eq(cfg.vm_options, 3);
}

Test(cli, incoming_needs_no_kernel_and_takes_tcp_only)
{
	cr_assert_eq(PARSE("run", "--incoming", "tcp:0.0.0.0:4444", "--memory", "1G"), 0);
	cr_assert_str_eq(cfg.incoming, "tcp:0.0.0.0:4444");
	cr_assert_null(cfg.kernel);
	cr_assert_eq(cfg.run_argc, 2, "--incoming is not part of the VM's shape");
	expect_usage_error(PARSE("run", "--incoming", "unix:/x"), "tcp:HOST:PORT");
	expect_usage_error(PARSE("run", "--incoming", "tcp:4444"), "tcp:HOST:PORT");
	expect_usage_error(PARSE("run", "--incoming", "tcp:a:1", "--restore", "s"), "exclude");
	cr_assert_eq(PARSE("run", "--incoming", "defer", "--api-socket", "/s"), 0);
	cr_assert_str_eq(cfg.incoming, "defer");
	expect_usage_error(PARSE("run", "--incoming", "defer"), "--api-socket");
}

Test(cli, restore_alone_counts_no_vm_options)
{
	cr_assert_eq(PARSE("run", "--restore", "/snap", "--api-socket", "/s", "-v"), 0);
	cr_assert_str_eq(cfg.restore, "/snap");
	cr_assert_eq(cfg.vm_options, 0);
	cr_assert_eq(cfg.run_argc, 0);
	expect_usage_error(PARSE("run", "--restore", ""), "snapshot");
}

Test(cli, migrate_subcommand)
{
	cr_assert_eq(PARSE("migrate", "--api-socket", "/s", "--to", "tcp:h:1"), 0);
	cr_assert_eq(cmd, CLI_MIGRATE);
	cr_assert_str_eq(cfg.ctl.to, "tcp:h:1");
	cr_assert_eq(cfg.ctl.max_downtime_ms, 300);
	cr_assert_eq(cfg.ctl.bandwidth, 0);
	cr_assert_eq(PARSE("migrate", "--api-socket", "/s", "--to", "tcp:h:1", "--max-downtime",
			   "1s", "--bandwidth", "1G"), 0);
	cr_assert_eq(cfg.ctl.max_downtime_ms, 1000);
	cr_assert_eq(cfg.ctl.bandwidth, 1ULL << 30);
	cr_assert_eq(PARSE("migrate", "--api-socket", "/s", "--max-downtime", "50ms", "--to",
			   "tcp:h:1"), 0);
	cr_assert_eq(cfg.ctl.max_downtime_ms, 50);
	cr_assert_eq(PARSE("migrate", "--api-socket", "/s", "--max-downtime", "0", "--to",
			   "tcp:h:1"), 0);
	cr_assert_eq(cfg.ctl.max_downtime_ms, 0, "0: the switch-over waits for --finish");
	cr_assert_eq(PARSE("migrate", "--api-socket", "/s", "--finish"), 0);
	cr_assert(cfg.ctl.finish);
	expect_usage_error(PARSE("migrate", "--api-socket", "/s"), "--to");
	expect_usage_error(PARSE("migrate", "--to", "tcp:h:1"), "--api-socket");
	expect_usage_error(PARSE("migrate", "--api-socket", "/s", "--to", "t", "--max-downtime",
				 "soon"), "milliseconds");
	expect_usage_error(PARSE("migrate", "--api-socket", "/s", "--to", "t", "--bandwidth",
				 "0"), "bytes");
}

Test(cli, snapshot_subcommand)
{
	cr_assert_eq(PARSE("snapshot", "--api-socket", "/s", "--to", "/snap"), 0);
	cr_assert_eq(cmd, CLI_SNAPSHOT);
	cr_assert_str_eq(cfg.ctl.to, "/snap");
	expect_usage_error(PARSE("snapshot", "--api-socket", "/s"), "--to");
	expect_usage_error(PARSE("snapshot", "--api-socket", "/s", "--to", "/x", "--finish"),
			   "--api-socket and --to");
	expect_usage_error(PARSE("pause", "--api-socket", "/s", "--to", "/x"), "only --api-socket");
}
