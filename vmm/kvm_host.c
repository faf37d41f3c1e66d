// SPDX-License-Identifier: GPL-2.0-only
#include "vmm/kvm_host.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool is_hardware_backend(const char *m)
{
	return !strcmp(m, "kvm_intel") || !strcmp(m, "kvm_amd");
}

enum kvm_host_backend kvm_host_backend(const char *module_dir, char *name, size_t len)
{
	enum kvm_host_backend found = KVM_HOST_UNKNOWN;
	struct dirent *e;
	DIR *d;

	name[0] = '\0';
	d = opendir(module_dir);
	if (!d)
		return KVM_HOST_UNKNOWN;
	while ((e = readdir(d))) {
		/* kvm itself is the common core; its backends are kvm_<something>. */
		if (strncmp(e->d_name, "kvm_", 4) || !e->d_name[4])
			continue;
		if (is_hardware_backend(e->d_name)) {
			snprintf(name, len, "%s", e->d_name);
			found = KVM_HOST_HARDWARE;
			break;
		}
		if (found == KVM_HOST_UNKNOWN) {
			snprintf(name, len, "%s", e->d_name);
			found = KVM_HOST_OTHER;
		}
	}
	closedir(d);
	return found;
}
