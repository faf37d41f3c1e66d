// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>

#include "vmm/config.h"
#include "vmm/exit_status.h"

/* The host could not give what was asked: memory, file descriptors. */
static int host_short(int err)
{
	return err == ENOMEM || err == EMFILE || err == ENFILE;
}

/* A device option value that cannot work: a path, a name, a mode, a busy file. */
static int bad_device_option(int err)
{
	switch (err) {
	case EINVAL:
	case ENOENT:
	case ENOTDIR:
	case EISDIR:
	case EACCES:
	case EPERM:
	case EROFS:
	case EBUSY:
	case ELOOP:
	case ENXIO:
	case ENAMETOOLONG:
	case EOPNOTSUPP:
	case EADDRINUSE:	/* a vsock cid another VM has */
		return 1;
	default:
		return 0;
	}
}

int exit_status_for(enum exit_step step, int err)
{
	err = -err;
	if (!err)
		return VMM_EXIT_OK;
	if (host_short(err))
		return VMM_EXIT_RESOURCE;
	switch (step) {
	case EXIT_STEP_DEVICE:
		return bad_device_option(err) ? VMM_EXIT_USAGE : VMM_EXIT_RUNTIME;
	case EXIT_STEP_BOOT_IMAGE:
		/* The kernel and initrd are fine but --cmdline is longer than the kernel takes. */
		return err == E2BIG ? VMM_EXIT_USAGE : VMM_EXIT_IMAGE;
	case EXIT_STEP_LOAD_GUEST:
		return VMM_EXIT_IMAGE;
	case EXIT_STEP_ARCH_VM:
		return VMM_EXIT_NO_KVM;
	case EXIT_STEP_VCPU:
	default:
		return VMM_EXIT_RUNTIME;
	}
}
