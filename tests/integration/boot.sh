#!/usr/bin/env bash
# Integration suite "boot" (TAP): boots Debian's stock kernel (6.1) with a busybox initramfs
# under vmm on real KVM and checks what the guest sees (CPUs, memory, command line), poweroff,
# shared (memfd) guest RAM split around the 32-bit hole,
# reboot with --no-reboot through the ACPI reset register (reboot=a), the keyboard controller
# (reboot=k) and a triple fault (reboot=t), the reboot loop without --no-reboot plus SIGTERM,
# the second guest kernel (6.12 from bookworm-backports: 2 vCPUs, a virtio disk read), and the
# CLI's error paths (exit codes 2, 3, 4, 5 with "vmm: error: ..." on stderr, never a signal).
# Usage: tests/integration/boot.sh PATH/TO/vmm
#   Normally run by meson: scripts/with-kvm meson test -C build --suite integration boot
#   Needs /dev/kvm (scripts/with-kvm provides one) and both kernels (scripts/test fetches them).
# Environment: VMM_TEST_TIMEOUT (seconds per vmm run that boots a guest, default 180),
#   VMM_TEST_KEEP=1 keeps the work directory (printed at the end).
# shellcheck disable=SC2016 # check's conditions are single-quoted: lib.sh evaluates them
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=boot.sh
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_setup "$@"
lib_kernel2

BASE=$("$REPO/scripts/mkinitramfs" guest-base) || bail "scripts/mkinitramfs guest-base failed"

# ---- the guests --------------------------------------------------------------------------------
# make_initrd NAME ACTION [BASE [STEPS]]: initramfs whose /init prints what the guest sees, runs
# the shell STEPS, then ACTION (poweroff -f or reboot -f). BASE defaults to the 6.1 kernel's.
make_initrd() {
	local name=$1 action=$2 base=${3:-$BASE} steps=${4:-}
	cat >"$WORK/$name.init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "VMMTEST-BOOT-START"
echo "VMMTEST-KERNEL \$(uname -r)"
echo "VMMTEST-CPUINFO \$(grep -c '^processor' /proc/cpuinfo)"
echo "VMMTEST-NPROC \$(nproc)"
echo "VMMTEST-MEMTOTAL-KB \$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)"
echo "VMMTEST-CMDLINE \$(cat /proc/cmdline)"
grep -m1 '^flags' /proc/cpuinfo >/flags
echo "VMMTEST-CPUFLAGS \$(for f in hypervisor x2apic; do grep -q -w \$f /flags && printf '%s ' \$f; done)"
$steps
echo "VMMTEST-ACTION $action"
$action
echo "VMMTEST-ACTION-RETURNED"
sleep 5
EOF
	"$REPO/scripts/mkinitramfs" overlay "$WORK/$name.overlay" --init "$WORK/$name.init"
	cat "$base" "$WORK/$name.overlay" >"$WORK/$name.initrd"
}

CMDLINE="console=ttyS0 quiet panic=-1"
make_initrd poweroff "poweroff -f" # loads no modules: none are needed to boot
make_initrd reboot "reboot -f"
# For the reboot loop: the guest idles 3 s before each reboot, so that the SIGTERM below finds
# a running guest rather than a reset in progress. (Twice the nested L1 froze at that point,
# SIGTERM arriving during the reset; under the emulator, not seen elsewhere. Stopping a VM
# in mid-reset is still covered: the reboot runs above end with --no-reboot in one.)
make_initrd reboot_loop "sleep 3; reboot -f"
# The 6.12 guest loads its virtio drivers (the base's load-modules) and reads its disk.
make_initrd kernel2 "poweroff -f" "$BASE2" '
if /sbin/load-modules; then echo "VMMTEST-MODULES ok"; else echo "VMMTEST-MODULES failed"; fi
mount -t devtmpfs devtmpfs /dev
i=0
while [ ! -e /dev/vda ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
echo "VMMTEST-VDA-SHA $(sha256sum </dev/vda | cut -d" " -f1)"'
head -c $((4 * 1024 * 1024)) /dev/urandom >"$WORK/kernel2.img"
read -r DISK2_SHA _ < <(sha256sum "$WORK/kernel2.img")

# check_sees CPUS MEM_MIN_MIB MEM_MAX_MIB LABEL: the last guest saw CPUS CPUs (/proc/cpuinfo
# and nproc) and a MemTotal within the range.
check_sees() {
	local cpus=$1 lo=$2 hi=$3 label=$4 ci=${MARK[VMMTEST-CPUINFO]-} np=${MARK[VMMTEST-NPROC]-}
	local kb=${MARK[VMMTEST-MEMTOTAL-KB]-}
	check "$label: guest sees $cpus CPU(s) (/proc/cpuinfo and nproc)" '[[ $ci == "$cpus" && $np == "$cpus" ]]' \
		"expected $cpus; /proc/cpuinfo processor lines: '${ci:-none}', nproc: '${np:-none}'"
	check "$label: MemTotal $((${kb:-0} / 1024)) MiB is within $lo..$hi MiB" \
		'[[ $kb =~ ^[0-9]+$ ]] && ((kb >= lo * 1024 && kb <= hi * 1024))' "MemTotal: '${kb:-none}' kB, expected $lo..$hi MiB"
}

# ---- CLI: help and version ---------------------------------------------------------------------
OPTIONS=(--kernel --initrd --cmdline --cpus --memory --no-reboot)
has=()
for o in "${OPTIONS[@]}"; do has+=(--stdout-has "$o"); done
run_cli help --expect-status 0 "${has[@]}" --label "vmm --help exits 0 and mentions ${OPTIONS[*]}" -- --help
run_cli help --expect-status 0 "${has[@]}" --label "vmm run --help exits 0 and mentions ${OPTIONS[*]}" -- run --help
run_cli version --expect-status 0 --stdout-nonempty --label "vmm --version exits 0 and prints the version" -- --version
echo "# vmm --version: $(head -n1 "$WORK/version.out")"

# ---- CLI: bad inputs ---------------------------------------------------------------------------
INITRD=$WORK/poweroff.initrd
mkdir "$WORK/kernel-dir"
: >"$WORK/empty-kernel"
printf 'this is not a kernel\n%.0s' {1..200} >"$WORK/text-kernel"
truncate -s 256M "$WORK/huge-initrd" # sparse: costs no disk
expect_error "missing kernel file: exit 4" 4 "$WORK/no-such-kernel" -- \
	run --kernel "$WORK/no-such-kernel" --initrd "$INITRD" --memory 256M
expect_error "kernel path is a directory (unreadable): exit 4" 4 "$WORK/kernel-dir" -- \
	run --kernel "$WORK/kernel-dir" --initrd "$INITRD" --memory 256M
expect_error "empty kernel file: exit 4" 4 "$WORK/empty-kernel" -- \
	run --kernel "$WORK/empty-kernel" --initrd "$INITRD" --memory 256M
expect_error "kernel that is not a bzImage (text): exit 4" 4 "$WORK/text-kernel" -- \
	run --kernel "$WORK/text-kernel" --initrd "$INITRD" --memory 256M
expect_error "missing initrd: exit 4" 4 "$WORK/no-such-initrd" -- \
	run --kernel "$KERNEL" --initrd "$WORK/no-such-initrd" --memory 256M
expect_error "kernel + 256 MiB initrd in --memory 128M do not fit: exit 4" 4 "" -- \
	run --kernel "$KERNEL" --initrd "$WORK/huge-initrd" --memory 128M
expect_error "--memory 1K (below the minimum): exit 2" 2 "" -- \
	run --kernel "$KERNEL" --initrd "$INITRD" --memory 1K
expect_error "--memory 100T (more than the host has): exit 5" 5 "" -- \
	run --kernel "$KERNEL" --initrd "$INITRD" --memory 100T
expect_error "--cpus 0: exit 2" 2 "" -- \
	run --kernel "$KERNEL" --initrd "$INITRD" --cpus 0
expect_error "--cpus abc: exit 2" 2 "" -- \
	run --kernel "$KERNEL" --initrd "$INITRD" --cpus abc
expect_error "unknown option: exit 2" 2 "--bogus-option" -- \
	run --kernel "$KERNEL" --initrd "$INITRD" --bogus-option
expect_error "run without --kernel: exit 2" 2 "" -- run --initrd "$INITRD"
VMM_KVM_DEVICE=/nonexistent expect_error "VMM_KVM_DEVICE=/nonexistent (no KVM): exit 3" 3 "" -- \
	run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M
if file_has "$WORK/err.err" /nonexistent || file_has "$WORK/err.err" /dev/kvm; then
	result OK "the no-KVM message names /nonexistent or /dev/kvm"
else
	note "stderr: $(head -n3 "$WORK/err.err")"
	result FAIL "the no-KVM message names /nonexistent or /dev/kvm"
fi

# ---- boots -------------------------------------------------------------------------------------
# Each boot costs ~15-30 s under nested KVM; every one checks what the guest saw.

run_guest boot2 --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label "boot --cpus 2 --memory 512M: the guest powers off and vmm exits 0" -- \
	run --kernel "$KERNEL" --initrd "$WORK/poweroff.initrd" --cpus 2 --memory 512M --cmdline "$CMDLINE vmmtest=42"
check_sees 2 440 512 "boot --cpus 2 --memory 512M"
check "/proc/cmdline has vmmtest=42 from --cmdline" '[[ " ${MARK[VMMTEST-CMDLINE]-} " == *" vmmtest=42 "* ]]' \
	"guest /proc/cmdline: '${MARK[VMMTEST-CMDLINE]-}'"
check "the guest's CPU flags include hypervisor" '[[ " ${MARK[VMMTEST-CPUFLAGS]-} " == *" hypervisor "* ]]' \
	"guest CPU flags (of hypervisor, x2apic): '${MARK[VMMTEST-CPUFLAGS]-}'"
# On a hardware-virtualization KVM host (kvm_amd in the nested L1) vmm has nothing to warn about;
# on a kvm_pvm host it warns that a stock guest may hang (unit-tested in test_kvm_host.c).
check "vmm prints no warning on a kvm_amd/kvm_intel host" '! file_has_line "$WORK/boot2.err" "vmm: warning: "'

run_guest reboot_acpi --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label "reboot=a (ACPI reset register) with --no-reboot: vmm exits 0" -- \
	run -v --kernel "$KERNEL" --initrd "$WORK/reboot.initrd" --cpus 1 --memory 256M --no-reboot --cmdline "$CMDLINE reboot=a"
expect_log "through the ACPI reset register" "reboot=a: the reset came through the ACPI reset register"
check_sees 1 180 256 "boot --cpus 1 --memory 256M"

run_guest reboot_kbd --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label "reboot=k (i8042 keyboard controller reset) with --no-reboot: vmm exits 0" -- \
	run -v --kernel "$KERNEL" --initrd "$WORK/reboot.initrd" --cpus 4 --memory 1G --no-reboot --cmdline "$CMDLINE reboot=k"
expect_log "through the i8042 controller" "reboot=k: the reset came through the i8042 controller"
check_sees 4 900 1024 "boot --cpus 4 --memory 1G"

# Shared guest RAM (a memfd, as vhost-user needs) larger than 3 GiB: split around the 32-bit
# MMIO hole into two KVM memslots that are slices of one memfd; the guest uses both.
run_guest shared_split --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label "--memory 3328M,shared=on (memfd RAM split around the 32-bit hole): the guest powers off" -- \
	run -v --kernel "$KERNEL" --initrd "$WORK/poweroff.initrd" --cpus 1 --memory 3328M,shared=on --cmdline "$CMDLINE"
check_sees 1 3000 3328 "boot --memory 3328M,shared=on"
expect_log "guest RAM: shared memfd" "shared=on: vmm -v says guest RAM is a shared memfd"

run_guest reboot_triple --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label "reboot=t (triple fault on purpose) with --no-reboot: vmm exits 0" -- \
	run -v --kernel "$KERNEL" --initrd "$WORK/reboot.initrd" --cpus 1 --memory 256M --no-reboot --cmdline "$CMDLINE reboot=t"
expect_log "the guest triple-faulted" "reboot=t: vmm -v says the guest triple-faulted"
expect_log "rip=" "reboot=t: vmm -v logs the vCPU state (rip, control registers, segment bases)"

# Without --no-reboot the guest boots again; vmm is stopped with SIGTERM after the second boot.
# -v: vmm logs each boot and the reset between them (a second boot that never printed its
# marker was seen a few times under nested KVM; the log shows how far vmm got).
run_guest reboot_loop --limit $((2 * BOOT_TIMEOUT)) --stop-at VMMTEST-BOOT-START 2 \
	--label "without --no-reboot the guest boots again after reboot -f" -- \
	run -v --kernel "$KERNEL" --initrd "$WORK/reboot_loop.initrd" --cpus 1 --memory 256M --cmdline "$CMDLINE"
check_sigterm_stop "SIGTERM stops vmm within 10 s"

# ---- the second guest kernel: 6.12 (bookworm-backports) ------------------------------------------
run_guest kernel2 --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label "$VMM_KERNEL2_VERSION with --cpus 2 and a virtio disk: the guest powers off and vmm exits 0" -- \
	run --kernel "$KERNEL2" --initrd "$WORK/kernel2.initrd" --cpus 2 --memory 512M --cmdline "$CMDLINE" \
	--disk path="$WORK/kernel2.img",readonly=on
expect_mark VMMTEST-KERNEL "$VMM_KERNEL2_VERSION" "the guest runs kernel $VMM_KERNEL2_VERSION (uname -r)"
check_sees 2 440 512 "$VMM_KERNEL2_VERSION, --cpus 2 --memory 512M"
expect_mark VMMTEST-MODULES ok "$VMM_KERNEL2_VERSION: the guest loads its virtio-mmio drivers"
expect_mark VMMTEST-VDA-SHA "$DISK2_SHA" "$VMM_KERNEL2_VERSION: the guest reads its 4 MiB virtio disk intact (sha256 matches the image)"

finish
