/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * From a setup step's -errno to the process exit status (enum vmm_exit in
 * vmm/config.h). Constructors and arch hooks report their error themselves and
 * return -errno; what the status says is decided here, once: the host is short
 * of something (resource), the user gave a value that cannot work (usage), the
 * boot files are bad (image), KVM is missing or refuses (no KVM), or something
 * failed while running.
 */
#ifndef VMM_EXIT_STATUS_H
#define VMM_EXIT_STATUS_H

/* Which setup step failed: each maps the errnos it can return differently. */
enum exit_step {
	EXIT_STEP_DEVICE,	/* a device constructor (virtio_device_create) */
	EXIT_STEP_BOOT_IMAGE,	/* arch_boot_open: opening and checking kernel, initrd, cmdline */
	EXIT_STEP_LOAD_GUEST,	/* arch_load_guest */
	EXIT_STEP_ARCH_VM,	/* arch_vm_create */
	EXIT_STEP_VCPU,		/* creating a vCPU */
};

/* The VMM_EXIT_* status for step's error err (a negative errno; 0 gives VMM_EXIT_OK). */
int exit_status_for(enum exit_step step, int err);

#endif
