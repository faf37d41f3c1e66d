#!/usr/bin/env bash
# Integration suite "boot" (TAP): boots Debian's stock kernel with a busybox initramfs under
# vmm on real KVM and checks what the guest sees (CPUs, memory, command line), poweroff,
# reboot with --no-reboot through the ACPI reset register (reboot=a) and the keyboard
# controller (reboot=k), the reboot loop without --no-reboot plus SIGTERM, and the CLI's
# error paths (exit codes 2, 3, 4, 5 with "vmm: error: ..." on stderr, never a signal).
# Usage: tests/integration/boot.sh PATH/TO/vmm
#   Normally run by meson: scripts/with-kvm meson test -C build --suite integration
#   Needs /dev/kvm (scripts/with-kvm provides one) and scripts/fetch-kernel's kernel.
# Environment: VMM_TEST_TIMEOUT (seconds per vmm run that boots a guest, default 180),
#   VMM_TEST_KEEP=1 keeps the work directory (printed at the end).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=boot.sh
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_setup "$@"

BASE=$("$REPO/scripts/mkinitramfs" guest-base) || bail "scripts/mkinitramfs guest-base failed"

# make_initrd NAME ACTION: initramfs whose /init prints what the guest sees, then runs
# ACTION (poweroff -f or reboot -f). Loads no modules: none are needed to boot.
make_initrd() {
	local name=$1 action=$2
	cat >"$WORK/$name.init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "VMMTEST-BOOT-START"
echo "VMMTEST-CPUINFO \$(grep -c '^processor' /proc/cpuinfo)"
echo "VMMTEST-NPROC \$(nproc)"
echo "VMMTEST-MEMTOTAL-KB \$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)"
echo "VMMTEST-CMDLINE \$(cat /proc/cmdline)"
grep -m1 '^flags' /proc/cpuinfo >/flags
echo "VMMTEST-CPUFLAGS \$(for f in hypervisor x2apic; do grep -q -w \$f /flags && printf '%s ' \$f; done)"
echo "VMMTEST-ACTION $action"
$action
echo "VMMTEST-ACTION-RETURNED"
sleep 5
EOF
	"$REPO/scripts/mkinitramfs" overlay "$WORK/$name.overlay" --init "$WORK/$name.init"
	cat "$BASE" "$WORK/$name.overlay" >"$WORK/$name.initrd"
}

# check_guest NAME CPUS MEM_MIN_MIB MEM_MAX_MIB: TAP results for what the guest saw.
check_guest() {
	local name=$1 cpus=$2 lo=$3 hi=$4 label=$5 ci np kb
	ci=$(marker "$name" VMMTEST-CPUINFO)
	np=$(marker "$name" VMMTEST-NPROC)
	if [[ $ci == "$cpus" && $np == "$cpus" ]]; then
		result OK "$label: guest sees $cpus CPU(s) (/proc/cpuinfo and nproc)"
	else
		note "expected $cpus; /proc/cpuinfo processor lines: '${ci:-none}', nproc: '${np:-none}'"
		note_run "$name"
		result FAIL "$label: guest sees $cpus CPU(s) (/proc/cpuinfo and nproc)"
	fi
	kb=$(marker "$name" VMMTEST-MEMTOTAL-KB)
	if [[ $kb =~ ^[0-9]+$ ]] && ((kb >= lo * 1024 && kb <= hi * 1024)); then
		result OK "$label: MemTotal $((kb / 1024)) MiB is within $lo..$hi MiB"
	else
		note "MemTotal: '${kb:-none}' kB, expected $lo..$hi MiB"
		note_run "$name"
		result FAIL "$label: MemTotal is within $lo..$hi MiB"
	fi
}

CMDLINE="console=ttyS0 quiet panic=-1"
make_initrd poweroff "poweroff -f"
make_initrd reboot "reboot -f"
# For the reboot loop: the guest idles 3 s before each reboot, so that the SIGTERM below finds
# a running guest rather than a reset in progress. (Twice the nested L1 froze at that point,
# SIGTERM arriving during the reset; under the emulator, not seen elsewhere. Stopping a VM
# in mid-reset is still covered: the reboot runs above end with --no-reboot in one.)
make_initrd reboot_loop "sleep 3; reboot -f"

# ---- CLI: help and version -------------------------------------------------------------------
OPTIONS=(--kernel --initrd --cmdline --cpus --memory --no-reboot)
for args in "--help" "run --help"; do
	# shellcheck disable=SC2086
	run_vmm help "$ERR_TIMEOUT" $args
	ok=OK
	[[ $RC == 0 ]] || { ok=FAIL; note "expected exit status 0, got $(describe_rc "$RC")"; }
	for o in "${OPTIONS[@]}"; do
		grep -q -e "$o" "$WORK/help.out" || { ok=FAIL; note "stdout does not mention $o"; }
	done
	[[ $ok == OK ]] || { show "$WORK/help.out" "stdout"; show "$WORK/help.err" "stderr"; }
	result $ok "vmm $args exits 0 and mentions ${OPTIONS[*]}"
done
run_vmm version "$ERR_TIMEOUT" --version
if [[ $RC == 0 && -s $WORK/version.out ]]; then
	result OK "vmm --version exits 0: $(head -n1 "$WORK/version.out")"
else
	note "vmm: $(describe_rc "$RC")"
	show "$WORK/version.out" "stdout"
	show "$WORK/version.err" "stderr"
	result FAIL "vmm --version exits 0 and prints the version"
fi

# ---- CLI: bad inputs -------------------------------------------------------------------------
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
if ! grep -q -e /nonexistent -e /dev/kvm "$WORK/err.err"; then
	note "stderr: $(head -n3 "$WORK/err.err")"
	result FAIL "the no-KVM message names /nonexistent or /dev/kvm"
else
	result OK "the no-KVM message names /nonexistent or /dev/kvm"
fi

# ---- boots -----------------------------------------------------------------------------------
# Each boot costs ~15-30 s under nested KVM; every one checks what the guest saw.

run_vmm boot2 "$BOOT_TIMEOUT" run --kernel "$KERNEL" --initrd "$WORK/poweroff.initrd" \
	--cpus 2 --memory 512M --cmdline "$CMDLINE vmmtest=42"
check_exit boot2 0 "boot --cpus 2 --memory 512M: the guest powers off and vmm exits 0"
check_guest boot2 2 440 512 "boot --cpus 2 --memory 512M"
if [[ " $(marker boot2 VMMTEST-CMDLINE) " == *" vmmtest=42 "* ]]; then
	result OK "/proc/cmdline has vmmtest=42 from --cmdline"
else
	note "guest /proc/cmdline: '$(marker boot2 VMMTEST-CMDLINE)'"
	note_run boot2
	result FAIL "/proc/cmdline has vmmtest=42 from --cmdline"
fi
flags=" $(marker boot2 VMMTEST-CPUFLAGS) "
if [[ $flags == *" hypervisor "* ]]; then
	result OK "the guest's CPU flags include hypervisor"
else
	note "guest CPU flags (of hypervisor, x2apic): '$flags'"
	result FAIL "the guest's CPU flags include hypervisor"
fi
# On a hardware-virtualization KVM host (kvm_amd in the nested L1) vmm has nothing to warn about;
# on a kvm_pvm host it warns that a stock guest may hang (unit-tested in test_kvm_host.c).
if file_has_line "$WORK/boot2.err" 'vmm: warning: '; then
	show "$WORK/boot2.err" "vmm stderr"
	result FAIL "vmm prints no warning on a kvm_amd/kvm_intel host"
else
	result OK "vmm prints no warning on a kvm_amd/kvm_intel host"
fi

# check_reset_source NAME TEXT LABEL: vmm -v said which reset path the guest took.
check_reset_source() {
	if file_has "$WORK/$1.err" "$2"; then
		result OK "$3"
	else
		note "vmm -v did not log '$2'"
		show "$WORK/$1.err" "vmm stderr"
		result FAIL "$3"
	fi
}

run_vmm reboot_acpi "$BOOT_TIMEOUT" run -v --kernel "$KERNEL" --initrd "$WORK/reboot.initrd" \
	--cpus 1 --memory 256M --no-reboot --cmdline "$CMDLINE reboot=a"
check_exit reboot_acpi 0 "reboot=a (ACPI reset register) with --no-reboot: vmm exits 0"
check_reset_source reboot_acpi "through the ACPI reset register" \
	"reboot=a: the reset came through the ACPI reset register"
check_guest reboot_acpi 1 180 256 "boot --cpus 1 --memory 256M"

run_vmm reboot_kbd "$BOOT_TIMEOUT" run -v --kernel "$KERNEL" --initrd "$WORK/reboot.initrd" \
	--cpus 4 --memory 1G --no-reboot --cmdline "$CMDLINE reboot=k"
check_exit reboot_kbd 0 "reboot=k (i8042 keyboard controller reset) with --no-reboot: vmm exits 0"
check_reset_source reboot_kbd "through the i8042 controller" \
	"reboot=k: the reset came through the i8042 controller"
check_guest reboot_kbd 4 900 1024 "boot --cpus 4 --memory 1G"

run_vmm reboot_triple "$BOOT_TIMEOUT" run -v --kernel "$KERNEL" --initrd "$WORK/reboot.initrd" \
	--cpus 1 --memory 256M --no-reboot --cmdline "$CMDLINE reboot=t"
check_exit reboot_triple 0 "reboot=t (triple fault on purpose) with --no-reboot: vmm exits 0"
check_reset_source reboot_triple "the guest triple-faulted" "reboot=t: vmm -v says the guest triple-faulted"
check_reset_source reboot_triple "rip=" "reboot=t: vmm -v logs the vCPU state (rip, control registers, segment bases)"

# Without --no-reboot the guest boots again; stop vmm with SIGTERM after the second boot.
name=reboot_loop
# -v: vmm logs each boot and the reset between them (a second boot that never printed its
# marker was seen a few times under nested KVM; the log shows how far vmm got).
echo "$VMM run -v --kernel $KERNEL --initrd $WORK/reboot_loop.initrd --cpus 1 --memory 256M --cmdline '$CMDLINE'" >"$WORK/$name.cmd"
"$VMM" run -v --kernel "$KERNEL" --initrd "$WORK/reboot_loop.initrd" --cpus 1 --memory 256M \
	--cmdline "$CMDLINE" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err" &
pid=$!
deadline=$((SECONDS + 2 * BOOT_TIMEOUT))
boots=0
alive=1
while ((SECONDS < deadline)); do
	boots=$(count_marker "$name" VMMTEST-BOOT-START)
	((boots >= 2)) && break
	if gone "$pid"; then
		alive=''
		break
	fi
	nap 0.5
done
# Stop vmm first, so that the diagnostics below show how it ended.
term=''
if [[ -z $alive ]]; then
	RC=0
	wait "$pid" || RC=$?
else
	((boots >= 2)) || record_threads "$pid" >"$WORK/$name.threads" 2>&1
	t0=$SECONDS
	stop_proc "$pid"
	elapsed=$((SECONDS - t0))
	case $STOPPED in
	'')
		RC=0
		wait "$pid" || RC=$?
		((RC > 128 && RC != 128 + 15)) && term="vmm crashed after SIGTERM"
		;;
	killed)
		RC=0
		wait "$pid" || RC=$?
		term="vmm did not exit within 10 s of SIGTERM; killed it"
		;;
	unkillable)
		RC=unkillable
		term="vmm was stuck in the kernel after SIGKILL (its threads are listed below)"
		;;
	esac
fi
if ((boots >= 2)); then
	result OK "without --no-reboot the guest boots again after reboot -f (init ran $boots times)"
else
	if [[ -z $alive ]]; then
		note "vmm ended by itself before the second boot"
	else
		note "the guest's init ran $boots time(s) within $((2 * BOOT_TIMEOUT)) s (then vmm got SIGTERM)"
	fi
	note_run "$name"
	result FAIL "without --no-reboot the guest boots again after reboot -f"
fi
if [[ -z $alive ]]; then
	result FAIL "SIGTERM stops vmm within 10 s (vmm was not running any more)"
elif [[ -n $term ]]; then
	while IFS= read -r line; do note "$line"; done <<<"$term"
	note_run "$name"
	result FAIL "SIGTERM stops vmm within 10 s"
else
	result OK "SIGTERM stops vmm within 10 s ($(describe_rc "$RC") after ${elapsed} s)"
fi

finish
