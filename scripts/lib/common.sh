#!/usr/bin/env bash
# Shared helpers for the scripts in scripts/. Source it, do not run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# Provides: REPO (repository root), VMM_CACHE (cache dir, default $REPO/.cache, gitignored),
# VMM_KERNEL_VERSION / VMM_KERNEL_PACKAGE (the stock Debian kernel used for L1 and guests),
# kernel_root / kernel_vmlinuz / kernel_modules_dir (where scripts/fetch-kernel unpacks it),
# VMM_KERNEL2_VERSION and with_kernel2 / kernel2_fetched / fetch_kernel2 (the integration
# tests' second guest kernel, 6.12 from bookworm-backports),
# info / warn / die (messages on stderr, prefixed with the calling script's name).
set -euo pipefail

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	echo "common.sh: this file is a library; source it from a script in scripts/" >&2
	exit 2
fi

PROG=${PROG:-$(basename "$0")}

# Repository root: two levels above this file (scripts/lib/common.sh).
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

# Cache for downloaded kernels, initramfs archives and nested-run logs. Made absolute so
# that it stays valid after a cd (and inside the nested L1, which sees the same paths).
VMM_CACHE=${VMM_CACHE:-$REPO/.cache}
mkdir -p "$VMM_CACHE"
VMM_CACHE=$(cd "$VMM_CACHE" && pwd -P)
export VMM_CACHE

# The stock Debian 12 kernel: L1 kernel of scripts/nested and default guest kernel of the
# integration tests. If Debian's mirror drops this ABI, change it here (one place).
VMM_KERNEL_VERSION=${VMM_KERNEL_VERSION:-6.1.0-56-amd64}
# shellcheck disable=SC2034 # used by the scripts that source this file
VMM_KERNEL_PACKAGE=linux-image-$VMM_KERNEL_VERSION

# The second guest kernel of the integration tests (the L1 keeps the one above): Linux 6.12
# from bookworm-backports. It lives in a cache of its own ($VMM_CACHE/kernel2/VERSION, used as
# VMM_CACHE by the scripts that handle it: with_kernel2), so that its package and initramfs
# archives never replace the default kernel's.
VMM_KERNEL2_VERSION=${VMM_KERNEL2_VERSION:-6.12.95+deb12-amd64}
VMM_KERNEL2_SUITE=${VMM_KERNEL2_SUITE:-bookworm-backports}
kernel2_cache() { printf '%s\n' "$VMM_CACHE/kernel2/$VMM_KERNEL2_VERSION"; }
# with_kernel2 CMD...: runs CMD (one of scripts/, or a kernel_* helper) for the second kernel.
with_kernel2() {
	(
		VMM_CACHE=$(kernel2_cache)
		VMM_KERNEL_VERSION=$VMM_KERNEL2_VERSION
		VMM_KERNEL_PACKAGE=linux-image-$VMM_KERNEL2_VERSION
		mkdir -p "$VMM_CACHE"
		export VMM_CACHE VMM_KERNEL_VERSION
		"$@"
	)
}
kernel2_fetched() { with_kernel2 kernel_fetched; }
# fetch_kernel2 [--quiet]: scripts/fetch-kernel for the second kernel. apt reads
# $VMM_KERNEL2_SUITE from a sources list and package lists of its own in the cache
# (APT_CONFIG, set in this subshell only): the host's apt configuration is left as it is.
fetch_kernel2() (
	dir=$VMM_CACHE/apt-$VMM_KERNEL2_SUITE
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d"
	printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
		"${VMM_DEBIAN_MIRROR:-http://deb.debian.org/debian}" "$VMM_KERNEL2_SUITE" >"$dir/sources.list"
	cat >"$dir/apt.conf" <<-EOF
		Dir::Etc::SourceList "$dir/sources.list";
		Dir::Etc::SourceParts "$dir/sources.list.d";
		Dir::State::Lists "$dir/lists";
		Dir::Cache "$dir/cache";
	EOF
	export APT_CONFIG=$dir/apt.conf
	if ! kernel2_fetched && [[ -z $(find "$dir/lists" -maxdepth 1 -name '*_Packages*' -print -quit) ]]; then
		apt-get update -qq >/dev/null || die "apt-get update of $VMM_KERNEL2_SUITE (for linux-image-$VMM_KERNEL2_VERSION) failed"
	fi
	with_kernel2 "$REPO/scripts/fetch-kernel" "$@"
)

info() { printf '%s: %s\n' "$PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}

# Unpacked kernel package (dpkg -x) lives here; "$(kernel_root)/.complete" marks a finished unpack.
kernel_root() { printf '%s\n' "$VMM_CACHE/kernel/$VMM_KERNEL_VERSION/root"; }
kernel_vmlinuz() { printf '%s\n' "$(kernel_root)/boot/vmlinuz-$VMM_KERNEL_VERSION"; }
# The uncompressed ELF kernel, extracted from vmlinuz by scripts/fetch-kernel: QEMU boots it
# through PVH, skipping the BIOS and the decompression (~4 s less per L1 boot under TCG).
kernel_vmlinux() { printf '%s\n' "$(kernel_root)/boot/vmlinux-$VMM_KERNEL_VERSION"; }
kernel_config() { printf '%s\n' "$(kernel_root)/boot/config-$VMM_KERNEL_VERSION"; }
kernel_modules_dir() { printf '%s\n' "$(kernel_root)/lib/modules/$VMM_KERNEL_VERSION"; }
kernel_fetched() { [[ -f "$(kernel_root)/.complete" && -f "$(kernel_vmlinuz)" && -f "$(kernel_vmlinux)" ]]; }

# Fails with a hint unless scripts/fetch-kernel has run.
require_kernel() {
	kernel_fetched || die "kernel $VMM_KERNEL_VERSION is not in $VMM_CACHE — run scripts/fetch-kernel first"
}

# require_cmd CMD PACKAGE: fails with a hint when a host tool is missing.
require_cmd() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' not found — run scripts/install-deps (Debian package $2)"
}

# kvm_usable [DEVICE]: succeeds when DEVICE (default /dev/kvm) is a KVM that can run a stock
# Linux guest: it opens read-write, KVM_GET_API_VERSION is 12, KVM_CREATE_VM works, and a
# hardware-virtualization backend (kvm_intel or kvm_amd) serves it. On failure the reason
# is printed on stdout. (Some sandboxes offer a /dev/kvm backed by kvm_pvm, which creates
# VMs but cannot boot an unmodified kernel: that counts as unusable.)
kvm_usable() {
	local dev=${1:-/dev/kvm}
	[[ -e $dev ]] || { echo "$dev does not exist"; return 1; }
	[[ -c $dev ]] || { echo "$dev is not a character device"; return 1; }
	if command -v python3 >/dev/null 2>&1; then
		python3 - "$dev" <<'PY' || return 1
import fcntl, os, sys
dev = sys.argv[1]
try:
    fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
except OSError as e:
    print(f"cannot open {dev} read-write: {e.strerror}")
    sys.exit(1)
try:
    api = fcntl.ioctl(fd, 0xAE00)  # KVM_GET_API_VERSION
    if api != 12:
        print(f"{dev}: KVM_GET_API_VERSION is {api}, not 12")
        sys.exit(1)
    vm = fcntl.ioctl(fd, 0xAE01, 0)  # KVM_CREATE_VM
    os.close(vm)
except OSError as e:
    print(f"{dev}: KVM ioctl failed: {e.strerror}")
    sys.exit(1)
PY
	else
		{ : <>"$dev"; } 2>/dev/null || { echo "cannot open $dev read-write"; return 1; }
	fi
	if [[ ! -d /sys/module/kvm_intel && ! -d /sys/module/kvm_amd ]]; then
		local other
		other=$(find /sys/module -maxdepth 1 -name 'kvm_*' -printf '%f ' 2>/dev/null)
		other=${other% }
		echo "$dev is not served by kvm_intel or kvm_amd (${other:-no kvm_* module}): no hardware virtualization for a stock Linux guest"
		return 1
	fi
	return 0
}
