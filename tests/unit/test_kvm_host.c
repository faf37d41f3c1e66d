// SPDX-License-Identifier: GPL-2.0-only
/* Which module serves /dev/kvm, read from a fake /sys/module. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/kvm_host.h"

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vmm-modules-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void add_module(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s", path);
}

static void remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(kvm_host, .init = make_dir, .fini = remove_dir);

/* The fake module directory names WANT's backend as WANT_NAME. */
static void expect_backend(enum kvm_host_backend want, const char *want_name)
{
	char name[32] = "stale";

	cr_assert_eq(kvm_host_backend(dir, name, sizeof(name)), want);
	cr_assert_str_eq(name, want_name);
}

Test(kvm_host, hardware_backend_is_named)
{
	add_module("kvm");
	add_module("kvm_amd");
	add_module("vhost_net");
	expect_backend(KVM_HOST_HARDWARE, "kvm_amd");
}

Test(kvm_host, hardware_backend_wins_over_another_one)
{
	add_module("kvm_pvm");
	add_module("kvm_intel");
	expect_backend(KVM_HOST_HARDWARE, "kvm_intel");
}

Test(kvm_host, only_another_backend_is_reported)
{
	add_module("kvm");
	add_module("kvm_pvm");
	expect_backend(KVM_HOST_OTHER, "kvm_pvm");
}

Test(kvm_host, no_backend_module_is_unknown)
{
	add_module("kvm");
	add_module("kvm_");
	add_module("kvmgt_helper");
	expect_backend(KVM_HOST_UNKNOWN, "");
}

Test(kvm_host, missing_directory_is_unknown)
{
	char name[32] = "stale";

	cr_assert_eq(kvm_host_backend("/nonexistent/vmm-modules", name, sizeof(name)),
		     KVM_HOST_UNKNOWN);
	cr_assert_str_eq(name, "");
}

Test(kvm_host, long_names_are_cut_to_the_buffer)
{
	char name[6];

	add_module("kvm_something_long");
	cr_assert_eq(kvm_host_backend(dir, name, sizeof(name)), KVM_HOST_OTHER);
	cr_assert_str_eq(name, "kvm_s");
}
