// SPDX-License-Identifier: GPL-2.0-only
/* The exit status of each setup step's -errno (vmm/exit_status.c). */
#include <criterion/criterion.h>
#include <errno.h>

#include "vmm/config.h"
#include "vmm/exit_status.h"

Test(exit_status, success_is_ok_for_every_step)
{
	for (int s = EXIT_STEP_DEVICE; s <= EXIT_STEP_VCPU; s++)
		cr_assert_eq(exit_status_for((enum exit_step)s, 0), VMM_EXIT_OK, "step %d", s);
}

Test(exit_status, host_shortage_is_a_resource_error_for_every_step)
{
	static const int errs[] = { ENOMEM, EMFILE, ENFILE };

	for (int s = EXIT_STEP_DEVICE; s <= EXIT_STEP_VCPU; s++)
		for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
			cr_assert_eq(exit_status_for((enum exit_step)s, -errs[i]), VMM_EXIT_RESOURCE,
				     "step %d errno %d", s, errs[i]);
}

/* What each device constructor returns for a bad option value (test_virtio_devices.c). */
Test(exit_status, device_option_errors_are_usage_errors)
{
	static const int errs[] = { EINVAL, ENOENT, ENOTDIR, EISDIR, EACCES, EPERM, EROFS, EBUSY,
				    ELOOP, ENXIO, ENAMETOOLONG, EOPNOTSUPP };

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		cr_assert_eq(exit_status_for(EXIT_STEP_DEVICE, -errs[i]), VMM_EXIT_USAGE,
			     "errno %d", errs[i]);
}

Test(exit_status, other_device_errors_are_runtime_errors)
{
	cr_assert_eq(exit_status_for(EXIT_STEP_DEVICE, -EIO), VMM_EXIT_RUNTIME);
	cr_assert_eq(exit_status_for(EXIT_STEP_DEVICE, -ENODEV), VMM_EXIT_RUNTIME);
}

Test(exit_status, boot_files)
{
	cr_assert_eq(exit_status_for(EXIT_STEP_BOOT_IMAGE, -ENOENT), VMM_EXIT_IMAGE);
	cr_assert_eq(exit_status_for(EXIT_STEP_BOOT_IMAGE, -ENOEXEC), VMM_EXIT_IMAGE);
	cr_assert_eq(exit_status_for(EXIT_STEP_BOOT_IMAGE, -EINVAL), VMM_EXIT_IMAGE);
	/* The files are fine, --cmdline is too long for this kernel: the user's value. */
	cr_assert_eq(exit_status_for(EXIT_STEP_BOOT_IMAGE, -E2BIG), VMM_EXIT_USAGE);
	cr_assert_eq(exit_status_for(EXIT_STEP_LOAD_GUEST, -ENOSPC), VMM_EXIT_IMAGE);
	cr_assert_eq(exit_status_for(EXIT_STEP_LOAD_GUEST, -EIO), VMM_EXIT_IMAGE);
}

Test(exit_status, kvm_and_vcpus)
{
	cr_assert_eq(exit_status_for(EXIT_STEP_ARCH_VM, -ENODEV), VMM_EXIT_NO_KVM);
	cr_assert_eq(exit_status_for(EXIT_STEP_ARCH_VM, -EINVAL), VMM_EXIT_NO_KVM);
	cr_assert_eq(exit_status_for(EXIT_STEP_VCPU, -EINVAL), VMM_EXIT_RUNTIME);
}
