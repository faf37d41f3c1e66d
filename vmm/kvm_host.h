/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What serves /dev/kvm on this host. A stock Linux guest needs hardware
 * virtualization (kvm_intel or kvm_amd); some sandboxes offer a /dev/kvm from
 * another module (kvm_pvm: process-level virtualization) that creates VMs
 * but cannot boot an unmodified kernel, which then hangs without a word.
 */
#ifndef VMM_KVM_HOST_H
#define VMM_KVM_HOST_H

#include <stddef.h>

#define KVM_HOST_MODULE_DIR "/sys/module"

enum kvm_host_backend {
	KVM_HOST_UNKNOWN,	/* no kvm_* module listed (KVM built in, or no sysfs) */
	KVM_HOST_HARDWARE,	/* kvm_intel or kvm_amd */
	KVM_HOST_OTHER,		/* only another kvm_* module, e.g. kvm_pvm */
};

/*
 * Looks at the modules listed in module_dir (normally /sys/module). Writes the
 * backend's module name ("kvm_amd", "kvm_pvm"...) to name (len bytes, at
 * least 1) when one is found, "" otherwise.
 */
enum kvm_host_backend kvm_host_backend(const char *module_dir, char *name, size_t len);

#endif
