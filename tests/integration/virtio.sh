#!/usr/bin/env bash
# Integration suite "virtio" (TAP): boots Debian's stock kernel under vmm on real KVM with
# virtio-mmio devices and checks, from markers the guest's /init prints, that the stock
# drivers find every device and that data moves through them intact. Two boots:
#   run "devices": two disks (vdb readonly=on), net on a tap in this machine (vhost=off: the
#     userspace data path; vhost.sh tests kernel vhost-net), rng, console
#     in a file, vmm -v. Device ids and drivers in /sys/bus/virtio, /dev nodes and sizes;
#     vdb's ro flag, a failing write, its contents; 64 bytes from /dev/hwrng, whose first
#     interrupt vmm drops on purpose (VMM_DROP_INTERRUPT) for its watchdog to send again; a line through
#     /dev/hvc0 into the --console file; a 64 MiB random pattern written to /dev/vda with
#     O_DIRECT, read back in the guest and hashed on the host; ping and 64 MiB each way over
#     TCP between the guest and the tap; vmm -v's per-device counters at exit (no
#     QueueNotify by MMIO exit, ioeventfd used).
#   run "ext4-root" (a fresh vmm): the initramfs mounts /dev/vda, an ext4 image built here
#     with mkfs.ext4 -d, and switch_roots into it; that root's /sbin/init checks the mount,
#     writes a file (read back here with debugfs; e2fsck then finds the image clean) and
#     hashes the first run's data disk, now a read-only /dev/vdb.
# Plus the error paths of --disk, --net and --console (no boot).
# Usage: tests/integration/virtio.sh PATH/TO/vmm
#   Normally run by meson: scripts/with-kvm meson test -C build --suite integration
#   Needs /dev/kvm (scripts/with-kvm provides one), scripts/fetch-kernel's kernel, root (for
#   the tap) and iproute2, socat, e2fsprogs, busybox-static (scripts/install-deps).
# Environment: VMM_TEST_TIMEOUT (seconds per vmm run that boots a guest, default 300),
#   VMM_TEST_KEEP=1 keeps the work directory (printed at the end).
# Every process started here costs ~0.4 s in scripts/nested's emulated L1, so the checks use
# bash builtins where they can.
# shellcheck disable=SC2016 # check's conditions are single-quoted: lib.sh evaluates them
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=virtio.sh
DEFAULT_BOOT_TIMEOUT=300
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_setup "$@"

# ---- more preconditions ------------------------------------------------------------------------
IP=/usr/sbin/ip # iproute2: busybox's ip applet has no tuntap
need "$IP" "run scripts/install-deps (Debian package iproute2)"
need /usr/bin/socat "run scripts/install-deps (Debian package socat)"
need /usr/sbin/mkfs.ext4 "run scripts/install-deps (Debian package e2fsprogs)"
need /usr/sbin/debugfs "run scripts/install-deps (Debian package e2fsprogs)"
need /usr/sbin/e2fsck "run scripts/install-deps (Debian package e2fsprogs)"
need /bin/busybox "run scripts/install-deps (Debian package busybox-static)"
((EUID == 0)) || bail "the virtio suite creates a tap interface and needs root — run it as root (scripts/with-kvm's nested L1 runs it as root)"

MIB=$((1024 * 1024))
PATTERN_BYTES=$((64 * MIB)) # random pattern the guest writes to vda and sends over TCP
DATA_BYTES=$((80 * MIB))    # data disk: the pattern, then 16 MiB that must stay zero
RO_BYTES=$((8 * MIB))       # read-only disk, random contents
RX_BYTES=$((64 * MIB))      # sent from L1 to the guest
TAP=vmmtap0
HOST_IP=169.254.10.1
GUEST_IP=169.254.10.2
GUEST_MAC=52:54:00:12:34:56
TX_PORT=5001 # guest -> L1
RX_PORT=5002 # L1 -> guest
TOKEN=vmmtest-$$-$RANDOM$RANDOM
# loglevel=5 after quiet: the console also gets warnings, among them the stack traces of a
# soft lockup or an RCU stall (seen in the "devices" run under nested KVM, where only their
# first lines, KERN_ERR and worse, reached the console).
CMDLINE="console=ttyS0 quiet loglevel=5 panic=-1"
# ext4 and what it needs, dependencies first (checked against the modules' depends= below;
# crc32c_generic is ext4's soft dependency "crypto-crc32c", which depends= does not list).
EXT4_MODULES="crc16 mbcache jbd2 crc32c_generic ext4"

# sha_of FILE VAR: VAR := sha256 of FILE.

# ---- guest files ----------------------------------------------------------------------------
# OV is merged onto the base initramfs (scripts/mkinitramfs guest-base: busybox and the
# virtio drivers): /vmmtest (settings, ext4 modules) and socat with its libraries.
OV=$WORK/overlay
KMOD=$(kernel_modules_dir)
mkdir -p "$OV/vmmtest/modules"
paths=()
for m in $EXT4_MODULES; do paths+=(-name "$m.ko" -o); done
mapfile -t found < <(find "$KMOD/kernel" "${paths[@]}" -false)
((${#found[@]} == 5)) || bail "expected the 5 modules $EXT4_MODULES in $KMOD, found: ${found[*]} — check the kernel from scripts/fetch-kernel"
cp "${found[@]}" "$OV/vmmtest/modules/"
# Each module's depends= must come earlier in EXT4_MODULES or in the base.
base_mods=" virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net virtio_console virtio_rng "
seen=" "
deps=()
while IFS= read -r l; do
	m=${l##*/}
	m=${m%%.ko:*}
	deps+=("$m ${l#*depends=}")
done < <(cd "$OV/vmmtest/modules" && grep -Hao 'depends=[a-z0-9_,-]*' ./*.ko)
for m in $EXT4_MODULES; do
	for l in "${deps[@]}"; do
		[[ $l == "$m "* ]] || continue
		IFS=, read -r -a ds <<<"${l#* }"
		for d in "${ds[@]}"; do
			[[ $seen$base_mods == *" $d "* ]] ||
				bail "module $m depends on $d, which is not loaded before it — update EXT4_MODULES in $PROG"
		done
	done
	seen+="$m "
done
# socat and the libraries ldd lists, at their paths.
mapfile -t libs < <(ldd /usr/bin/socat | grep -o '/[^ ]*')
cp -L --parents /usr/bin/socat "${libs[@]}" "$OV/"

cat >"$OV/vmmtest/env" <<EOF
PATTERN_BYTES=$PATTERN_BYTES
GUEST_MAC=$GUEST_MAC
HOST_IP=$HOST_IP
GUEST_IP=$GUEST_IP
TX_PORT=$TX_PORT
RX_PORT=$RX_PORT
TOKEN=$TOKEN
EXT4_MODULES="$EXT4_MODULES"
EOF

# The initramfs's /init: common start, then run "devices" or (vmmtest=ext4 on the kernel
# command line) the switch into the ext4 root.
cat >"$WORK/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /vmmtest/env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
t() { read -r up _ </proc/uptime; echo "VMMTEST-T $up $*"; }
echo "VMMTEST-BOOT-START"
t init started
if /sbin/load-modules; then echo "VMMTEST-MODULES ok"; else echo "VMMTEST-MODULES failed"; fi
t virtio modules loaded
# wait_for PATH...: up to 10 s for device nodes (devtmpfs adds them asynchronously).
wait_for() {
	i=0
	while [ $i -lt 50 ]; do
		ok=1
		for p in "$@"; do [ -e "$p" ] || ok=''; done
		[ -n "$ok" ] && return 0
		sleep 0.2
		i=$((i + 1))
	done
	echo "VMMTEST-WAIT still missing after 10 s: $*"
	return 1
}
read -r cmdline </proc/cmdline

case " $cmdline " in
*" vmmtest=ext4 "*)
	for m in $EXT4_MODULES; do
		insmod "/vmmtest/modules/$m.ko" || echo "VMMTEST-INSMOD $m failed"
	done
	wait_for /dev/vda
	mkdir -p /newroot
	if mount -t ext4 /dev/vda /newroot; then
		echo "VMMTEST-EXT4-MOUNT ok"
		t ext4 mounted
		umount /proc /sys /dev
		exec switch_root /newroot /sbin/init
		echo "VMMTEST-SWITCH-ROOT failed"
	else
		echo "VMMTEST-EXT4-MOUNT failed"
	fi
	echo "VMMTEST-ACTION poweroff (from the initramfs)"
	poweroff -f
	sleep 5
	;;
esac

wait_for /dev/vda /dev/vdb /dev/hwrng /dev/hvc0
devs=''
for d in /sys/bus/virtio/devices/*; do
	[ -e "$d/device" ] || continue
	drv=none
	[ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
	devs="$devs $(cat "$d/device"):$drv"
done
echo "VMMTEST-VIRTIO-DEVICES $(echo $devs | tr ' ' '\n' | sort | tr '\n' ' ')"
nodes=''
for n in vda vdb hwrng hvc0; do [ -e /dev/$n ] && nodes="$nodes $n"; done
echo "VMMTEST-DEVNODES$nodes"
read -r s </sys/block/vda/size
echo "VMMTEST-VDA-BYTES $((s * 512))"
read -r s </sys/block/vdb/size
echo "VMMTEST-VDB-BYTES $((s * 512))"

# read-only disk
read -r ro </sys/block/vdb/ro
echo "VMMTEST-VDB-RO $ro"
if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct conv=notrunc,fsync 2>/tmp/err; then
	echo "VMMTEST-VDB-WRITE succeeded"
else
	echo "VMMTEST-VDB-WRITE failed: $(grep -v records /tmp/err | head -n1)"
fi
echo "VMMTEST-VDB-SHA $(sha256sum </dev/vdb | cut -d' ' -f1)"
t vdb checked

# rng
timeout 30 head -c 64 /dev/hwrng >/tmp/rng
read -r cur </sys/class/misc/hw_random/rng_current
echo "VMMTEST-RNG-CURRENT $cur"
echo "VMMTEST-RNG-BYTES $(wc -c </tmp/rng)"
echo "VMMTEST-RNG-HEX $(od -An -v -tx1 /tmp/rng | tr -d ' \n')"

# console
if echo "VMMTEST-HVC0 $TOKEN" >/dev/hvc0; then echo "VMMTEST-HVC-WRITE ok"; else echo "VMMTEST-HVC-WRITE failed"; fi
t rng and hvc0 done

# disk: write a random pattern with O_DIRECT, read it back past the page cache
head -c "$PATTERN_BYTES" /dev/urandom >/tmp/pattern
t pattern made
echo "VMMTEST-PATTERN-SHA $(sha256sum </tmp/pattern | cut -d' ' -f1)"
t pattern hashed
if dd if=/tmp/pattern of=/dev/vda bs=1M oflag=direct conv=notrunc,fsync 2>/tmp/err; then
	echo "VMMTEST-VDA-WRITE ok"
else
	echo "VMMTEST-VDA-WRITE failed: $(grep -v records /tmp/err | head -n1)"
fi
t pattern written to vda
echo 3 >/proc/sys/vm/drop_caches
echo "VMMTEST-VDA-READBACK-SHA $(dd if=/dev/vda bs=1M count=$((PATTERN_BYTES / 1048576)) iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
t vda read back

# network
iface=''
for n in /sys/class/net/*; do
	read -r a <"$n/address"
	[ "$a" = "$GUEST_MAC" ] && iface=${n##*/}
done
echo "VMMTEST-NET-IFACE ${iface:-none} $(ls /sys/class/net | tr '\n' ' ')"
if [ -n "$iface" ]; then
	ip link set "$iface" up
	ip addr add "$GUEST_IP/24" dev "$iface"
	ping -c 3 -W 10 "$HOST_IP" >/tmp/ping 2>&1
	echo "VMMTEST-PING $(grep 'packets transmitted' /tmp/ping)"
	t ping done
	# guest -> L1 (L1 listens from the start), then L1 -> guest: one direction at a time,
	# as scripts/bench does (see the note on nested SVM at the devices run below).
	timeout 200 socat -u FILE:/tmp/pattern "TCP:$HOST_IP:$TX_PORT,connect-timeout=30"
	echo "VMMTEST-NET-TX-EXIT $?"
	t sent to L1
	# L1 -> guest: listen, then say so (L1 starts its sender on that line)
	( timeout 200 socat -u "TCP-LISTEN:$RX_PORT,reuseaddr" CREATE:/tmp/rx
	  echo "VMMTEST-NET-RX-EXIT $?" ) &
	rxpid=$!
	i=0
	while [ $i -lt 50 ] && ! netstat -ltn 2>/dev/null | grep -q ":$RX_PORT "; do sleep 0.2; i=$((i + 1)); done
	echo "VMMTEST-NET-LISTENING $RX_PORT"
	wait $rxpid
	t received from L1
	echo "VMMTEST-NET-RX-SHA $(sha256sum </tmp/rx | cut -d' ' -f1) $(wc -c </tmp/rx)"
	t received data hashed
fi
echo "VMMTEST-ACTION poweroff"
poweroff -f
sleep 5
EOF

# /sbin/init of the ext4 root.
cat >"$WORK/ext4-root.init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/vmmtest.env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
t() { read -r up _ </proc/uptime; echo "VMMTEST-T $up $*"; }
echo "VMMTEST-EXT4-INIT $(cat /etc/vmmtest-token)"
echo "VMMTEST-ROOT-MOUNT $(mount | grep ' on / ' | tr '\n' ';')"
if echo "$TOKEN written by the guest" >/guest-wrote && sync; then
	echo "VMMTEST-EXT4-WRITE ok"
else
	echo "VMMTEST-EXT4-WRITE failed"
fi
i=0
while [ ! -e /dev/vdb ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
echo "VMMTEST-VDB-PATTERN-SHA $(dd if=/dev/vdb bs=1M count=$((PATTERN_BYTES / 1048576)) iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
t vdb hashed
if mount -o remount,ro /; then echo "VMMTEST-REMOUNT-RO ok"; else echo "VMMTEST-REMOUNT-RO failed"; fi
echo "VMMTEST-ACTION poweroff"
poweroff -f
sleep 5
EOF

BASE=$("$REPO/scripts/mkinitramfs" guest-base) || bail "scripts/mkinitramfs guest-base failed"
"$REPO/scripts/mkinitramfs" overlay "$WORK/overlay.cpio" --init "$WORK/init" \
	--file "$OV/vmmtest:/vmmtest" --file "$OV/lib:/lib" --file "$OV/lib64:/lib64" \
	--file "$OV/usr:/usr" || bail "scripts/mkinitramfs overlay failed"
cat "$BASE" "$WORK/overlay.cpio" >"$WORK/initrd"

# ---- disk images ------------------------------------------------------------------------------
truncate -s "$DATA_BYTES" "$WORK/data.img"
head -c "$RO_BYTES" /dev/urandom >"$WORK/ro.img"
sha_of "$WORK/ro.img" RO_SHA
head -c "$RX_BYTES" /dev/urandom >"$WORK/l1-data"
sha_of "$WORK/l1-data" RX_SHA

# ext4 root: the base archive's busybox and applet links, the init above, token, settings.
R=$WORK/rootfs
mkdir "$R"
(cd "$R" && cpio -id --quiet <"$BASE")
rm -f "$R/sbin/init"
cp "$WORK/ext4-root.init" "$R/sbin/init"
chmod 755 "$R/sbin/init"
echo "$TOKEN" >"$R/etc/vmmtest-token"
cp "$OV/vmmtest/env" "$R/etc/vmmtest.env"
truncate -s 64M "$WORK/root.ext4"
mkfs.ext4 -q -F -L vmmroot -d "$R" "$WORK/root.ext4" >"$WORK/mkfs.log" 2>&1 ||
	bail "mkfs.ext4 -d failed: $(tail -n3 "$WORK/mkfs.log")"
phase "guest files and images ready"

# ---- error paths (no boot) --------------------------------------------------------------------
B=(run --kernel "$KERNEL" --initrd "$WORK/initrd" --memory 256M)
head -c 1000 /dev/zero >"$WORK/odd.img"
mkdir "$WORK/disk-dir"
expect_error "--disk with a missing file: exit 2 naming the path" 2 "$WORK/no-such.img" -- \
	"${B[@]}" --disk path="$WORK/no-such.img"
expect_error "--disk with a 1000-byte image (not a multiple of 512): exit 2 naming the path" 2 "$WORK/odd.img" -- \
	"${B[@]}" --disk path="$WORK/odd.img"
expect_error "--disk on a directory: exit 2 naming the path" 2 "$WORK/disk-dir" -- \
	"${B[@]}" --disk path="$WORK/disk-dir"
expect_error "--disk with an unknown key: exit 2 naming the key" 2 "bogus" -- \
	"${B[@]}" --disk path="$WORK/data.img",bogus=1
expect_error "--disk readonly=maybe: exit 2" 2 "maybe" -- \
	"${B[@]}" --disk path="$WORK/data.img",readonly=maybe
expect_error "--net with a malformed mac: exit 2 naming it" 2 "52:54:00:12:34" -- \
	"${B[@]}" --net tap=vmmtapx,mac=52:54:00:12:34
expect_error "--net with a multicast mac: exit 2 naming it" 2 "01:00:5e:00:00:01" -- \
	"${B[@]}" --net tap=vmmtapx,mac=01:00:5e:00:00:01
expect_error "--net with a 16-character tap name: exit 2" 2 "vmmtap0123456789" -- \
	"${B[@]}" --net tap=vmmtap0123456789
expect_error "--net tap=...,vhost=auto (only on or off): exit 2 naming the value" 2 "auto" -- \
	"${B[@]}" --net tap=vmmtapx,vhost=auto
expect_error "--console with neither pty nor file=: exit 2" 2 "" -- \
	"${B[@]}" --console bogus
nine=()
for ((i = 0; i < 9; i++)); do nine+=(--disk "path=$WORK/ro.img,readonly=on"); done
expect_error "nine --disk options (at most 8): exit 2" 2 "" -- "${B[@]}" "${nine[@]}"
if [[ -e /sys/class/net/vmmtapx ]]; then
	note "a failed vmm run left the interface vmmtapx behind"
	$IP link del vmmtapx 2>/dev/null || true
	result FAIL "failed --net runs leave no tap interface behind"
else
	result OK "failed --net runs leave no tap interface behind"
fi
phase "error paths done"

# ---- network set-up in this (L1) machine ----------------------------------------------------
[[ ! -e /sys/class/net/$TAP ]] ||
	bail "interface $TAP exists already — another run of this suite is using it, or one was killed: delete it with $IP link del $TAP"
$IP tuntap add dev "$TAP" mode tap >"$WORK/tap.log" 2>&1 ||
	bail "cannot create tap $TAP ($(cat "$WORK/tap.log")) — the tun module and root are needed (scripts/with-kvm's L1 has both)"
at_exit "$IP link del $TAP"
$IP addr add "$HOST_IP/24" dev "$TAP"
$IP link set "$TAP" up

# guest -> L1: a receiver listening before the boot.
timeout "$BOOT_TIMEOUT" socat -u "TCP-LISTEN:$TX_PORT,bind=$HOST_IP,reuseaddr" "CREATE:$WORK/l1-received" \
	>"$WORK/socat-rx.log" 2>&1 &
rx_pid=$!
# L1 -> guest: a sender started when the guest prints VMMTEST-NET-LISTENING (its console is
# followed with read, no process per poll).
: >"$WORK/devices.out"
(
	exec {fd}<"$WORK/devices.out"
	buf=''
	deadline=$((SECONDS + BOOT_TIMEOUT))
	while ((SECONDS < deadline)); do
		if IFS= read -r -u "$fd" chunk; then
			line=$buf$chunk
			buf=''
			if [[ $line == VMMTEST-NET-LISTENING* ]]; then
				echo "the guest listens; socat sends $RX_BYTES bytes" >"$WORK/socat-tx.log"
				exec timeout 200 socat -u "FILE:$WORK/l1-data" "TCP:$GUEST_IP:$RX_PORT,connect-timeout=30" \
					>>"$WORK/socat-tx.log" 2>&1
			fi
		else
			buf+=$chunk
			nap 0.5
		fi
	done
	echo "the guest did not print VMMTEST-NET-LISTENING within $BOOT_TIMEOUT s" >"$WORK/socat-tx.log"
	exit 99
) &
tx_pid=$!

# ---- run "devices" ------------------------------------------------------------------------------
# --no-reboot: an unexpected guest reset ends the run at once (and says why) instead of
# booting again into a run that can only time out.
# Nested SVM: with 64 MiB going both ways at once, the guest triple-faulted in most runs
# under nested KVM on QEMU 7.2 TCG (and once the L1 kernel itself oopsed in __svm_vcpu_run);
# one direction at a time passed every run. So the guest sends first, then receives.
# The rng's first interrupt is dropped (VMM_DROP_INTERRUPT), as if lost on the way: the
# guest's first entropy request never completes unless the transport's watchdog sends the
# interrupt again, and its read of /dev/hwrng (5. below) waits for that request.
export VMM_DROP_INTERRUPT=virtio-rng0:1
run_guest devices --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label 'run "devices": the guest powers off, vmm exits 0' -- \
	run -v --no-reboot --kernel "$KERNEL" --initrd "$WORK/initrd" --cpus 2 --memory 768M --cmdline "$CMDLINE" \
	--disk path="$WORK/data.img" --disk path="$WORK/ro.img",readonly=on \
	--net tap="$TAP",mac="$GUEST_MAC",vhost=off --rng --console file="$WORK/hvc.log"
unset VMM_DROP_INTERRUPT
phase 'run "devices" done'
guest_timeline
# reap_job PID VAR: VAR := the helper's exit status (killed if still running 10 s after vmm).
reap_job() {
	local pid=$1 n=0 st=0
	while kill -0 "$pid" 2>/dev/null && ((n < 20)); do
		nap 0.5
		n=$((n + 1))
	done
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" || st=$?
	printf -v "$2" '%s' "$st"
}
rx_rc='' tx_rc=''
reap_job "$rx_pid" rx_rc
reap_job "$tx_pid" tx_rc

# 1. every device is found
want="0x0001:virtio_net 0x0002:virtio_blk 0x0002:virtio_blk 0x0003:virtio_console 0x0004:virtio_rng "
expect_mark VMMTEST-VIRTIO-DEVICES "$want" "/sys/bus/virtio: 2 blk, net, console, rng, each bound to its driver (device id:driver)"
expect_mark VMMTEST-DEVNODES "vda vdb hwrng hvc0" "/dev/vda, /dev/vdb, /dev/hwrng and /dev/hvc0 exist"
va=${MARK[VMMTEST-VDA-BYTES]-} vb=${MARK[VMMTEST-VDB-BYTES]-}
check "the guest's disk sizes match the images ($DATA_BYTES and $RO_BYTES bytes)" \
	'[[ $va == "$DATA_BYTES" && $vb == "$RO_BYTES" ]]' "vda: '$va' bytes, want $DATA_BYTES; vdb: '$vb', want $RO_BYTES"

# read-only disk
now=''
sha_of "$WORK/ro.img" now
w=${MARK[VMMTEST-VDB-WRITE]-}
check "readonly=on: vdb is read-only in the guest (ro=1; a write ${w:0:60}), the image is unchanged" \
	'[[ ${MARK[VMMTEST-VDB-RO]-} == 1 && $w == failed* && $now == "$RO_SHA" ]]' \
	"/sys/block/vdb/ro: '${MARK[VMMTEST-VDB-RO]-}' (want 1); writing to /dev/vdb: '$w' (want failed...)" \
	"ro.img's sha256 before the run: $RO_SHA, after: $now"
expect_mark VMMTEST-VDB-SHA "$RO_SHA" "the guest reads the read-only disk's 8 MiB intact (sha256 matches the image)"

# 5. rng
hex=${MARK[VMMTEST-RNG-HEX]-}
check "/dev/hwrng (${MARK[VMMTEST-RNG-CURRENT]-?}) gives 64 bytes, not all zero" \
	'[[ ${MARK[VMMTEST-RNG-BYTES]-} == 64 && $hex =~ ^[0-9a-f]{128}$ && ! $hex =~ ^0+$ ]]' \
	"bytes read: '${MARK[VMMTEST-RNG-BYTES]-}', hex: '$hex', rng_current: '${MARK[VMMTEST-RNG-CURRENT]-}'"

# 6. console
if [[ ${MARK[VMMTEST-HVC-WRITE]-} == ok ]] && file_has_line "$WORK/hvc.log" "VMMTEST-HVC0 $TOKEN"; then
	result OK "a line written to /dev/hvc0 is in the --console file"
else
	note "write to /dev/hvc0: '${MARK[VMMTEST-HVC-WRITE]-}'; wanted the line 'VMMTEST-HVC0 $TOKEN' in the file"
	show "$WORK/hvc.log" "console file"
	note_run_once devices
	result FAIL "a line written to /dev/hvc0 is in the --console file"
fi

# 2. disk data
P=${MARK[VMMTEST-PATTERN-SHA]-}
rb=${MARK[VMMTEST-VDA-READBACK-SHA]-}
check "64 MiB written to /dev/vda with O_DIRECT read back intact in the guest" \
	'[[ $P =~ ^[0-9a-f]{64}$ && ${MARK[VMMTEST-VDA-WRITE]-} == ok && $rb == "$P" ]]' \
	"pattern sha256: '$P'; write: '${MARK[VMMTEST-VDA-WRITE]-}'; read back: '$rb'"
read -r host_sha _ < <(head -c "$PATTERN_BYTES" "$WORK/data.img" | sha256sum)
check "the host's image holds the guest's 64 MiB pattern (sha256 of its first 64 MiB)" '[[ -n $P && $host_sha == "$P" ]]' \
	"image's first 64 MiB: $host_sha; guest's pattern: '$P'"
if tail -c +$((PATTERN_BYTES + 1)) "$WORK/data.img" | cmp -s -n $((DATA_BYTES - PATTERN_BYTES)) - /dev/zero; then
	result OK "the image's last 16 MiB, past the pattern, are still zero"
else
	note "the bytes after the pattern changed"
	result FAIL "the image's last 16 MiB, past the pattern, are still zero"
fi

# 4. network
iface=${MARK[VMMTEST-NET-IFACE]-}
check "the guest has a network interface with --net's mac $GUEST_MAC (${iface%% *})" '[[ $iface == eth* ]]' \
	"interface with $GUEST_MAC, then all interfaces: '$iface'"
ping=${MARK[VMMTEST-PING]-}
check "the guest pings $HOST_IP on the tap: 3 of 3 answered" '[[ $ping == "3 packets transmitted, 3 packets received"* ]]' \
	"ping summary: '$ping'"
got=''
[[ -f $WORK/l1-received ]] && sha_of "$WORK/l1-received" got
if [[ -n $P && $got == "$P" && ${MARK[VMMTEST-NET-TX-EXIT]-} == 0 ]]; then
	result OK "guest -> L1 over TCP: 64 MiB arrive intact (sha256 matches the guest's)"
else
	note "guest's socat exit status: '${MARK[VMMTEST-NET-TX-EXIT]-}'; L1 receiver's: $rx_rc"
	note "received $(stat -c %s "$WORK/l1-received" 2>/dev/null || echo no) bytes, sha256 '$got'; guest's pattern '$P'"
	show "$WORK/socat-rx.log" "L1 receiver (socat) output"
	note_run_once devices
	result FAIL "guest -> L1 over TCP: 64 MiB arrive intact"
fi
got=${MARK[VMMTEST-NET-RX-SHA]-}
if [[ $got == "$RX_SHA $RX_BYTES" ]]; then
	result OK "L1 -> guest over TCP: 64 MiB arrive intact (sha256 matches)"
else
	note "guest's sha256 and size of what it received: '$got'; sent: $RX_SHA $RX_BYTES"
	note "guest's listener exit status: '${MARK[VMMTEST-NET-RX-EXIT]-}'; L1 sender's: $tx_rc"
	[[ -s $WORK/socat-tx.log ]] ||
		note "(the L1 sender never started: the guest did not print VMMTEST-NET-LISTENING)"
	show "$WORK/socat-tx.log" "L1 sender (socat) output"
	note_run_once devices
	result FAIL "L1 -> guest over TCP: 64 MiB arrive intact"
fi

# 7. notifications: vmm -v's counters at exit, "vmm: DEV: N queue notifications by
# ioeventfd, N by MMIO exit, N interrupts (N more causes merged into pending ones, N sent
# again as lost)".
# check_counters NAME DEVICES...: every device has its line with 0 by MMIO exit; blk and
# net devices took notifications by ioeventfd. RESENT[DEV] := the interrupts sent again.
declare -A RESENT=()
check_counters() {
	local name=$1 dev line ioev mmio ok=OK
	local -A lines=()
	RESENT=()
	shift
	while IFS= read -r line; do
		line=${line//$'\r'/}
		[[ $line =~ ^vmm:\ (virtio-[a-z]+[0-9]+):\ [0-9]+\ queue\ notifications ]] &&
			lines[${BASH_REMATCH[1]}]=$line
	done <"$WORK/$name.err"
	for dev in "$@"; do
		line=${lines[$dev]-}
		if [[ ! $line =~ ^vmm:\ $dev:\ ([0-9]+)\ queue\ notifications\ by\ ioeventfd,\ ([0-9]+)\ by\ MMIO\ exit,\ ([0-9]+)\ interrupts\ \(([0-9]+)\ more\ causes\ merged\ into\ pending\ ones,\ ([0-9]+)\ sent\ again\ as\ lost\)$ ]]; then
			ok=FAIL
			note "$dev: no line 'vmm: $dev: N queue notifications by ioeventfd, N by MMIO exit, N interrupts (N more causes merged into pending ones, N sent again as lost)' on vmm -v's stderr"
			continue
		fi
		ioev=${BASH_REMATCH[1]}
		mmio=${BASH_REMATCH[2]}
		RESENT[$dev]=${BASH_REMATCH[5]}
		echo "#   $line"
		((mmio == 0)) || { ok=FAIL; note "$dev: $mmio queue notifications took the MMIO exit path"; }
		if [[ $dev == virtio-blk* || $dev == virtio-net* ]] && ((ioev == 0)); then
			ok=FAIL
			note "$dev: no queue notification by ioeventfd"
		fi
	done
	[[ $ok == OK ]] || show "$WORK/$name.err" "vmm stderr"
	local users="the disks"
	[[ " $* " == *" virtio-net"* ]] && users+=" and net"
	result $ok "run \"$name\": vmm -v: no queue notification by MMIO exit ($*); ioeventfd used by $users"
}
check_counters devices virtio-blk0 virtio-blk1 virtio-net0 virtio-rng0 virtio-console0
expect_log 'virtio-rng0: interrupt 1 not sent (VMM_DROP_INTERRUPT)' \
	'run "devices": the rng'"'"'s first interrupt was dropped on purpose'
check "run \"devices\": the watchdog sent the rng's lost interrupt again (${RESENT[virtio-rng0]-?} times), so /dev/hwrng gave its bytes" \
	'[[ ${RESENT[virtio-rng0]-0} -ge 1 && ${MARK[VMMTEST-RNG-BYTES]-} == 64 ]]' \
	"interrupts sent again: '${RESENT[virtio-rng0]-}', bytes read from /dev/hwrng: '${MARK[VMMTEST-RNG-BYTES]-}'"

# ---- run "ext4-root" ---------------------------------------------------------------------------
run_guest ext4-root --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label 'run "ext4-root": the guest powers off, vmm exits 0' -- \
	run -v --no-reboot --kernel "$KERNEL" --initrd "$WORK/initrd" --cpus 2 --memory 512M --cmdline "$CMDLINE vmmtest=ext4" \
	--disk path="$WORK/root.ext4" --disk path="$WORK/data.img",readonly=on
phase 'run "ext4-root" done'
guest_timeline
check "the initramfs mounts the ext4 /dev/vda and switch_root runs its /sbin/init" \
	'[[ ${MARK[VMMTEST-EXT4-MOUNT]-} == ok && ${MARK[VMMTEST-EXT4-INIT]-} == "$TOKEN" ]]' \
	"mount in the initramfs: '${MARK[VMMTEST-EXT4-MOUNT]-}'; the ext4 root's init printed: '${MARK[VMMTEST-EXT4-INIT]-}' (want $TOKEN)"
got=${MARK[VMMTEST-ROOT-MOUNT]-}
check "mount shows /dev/vda as ext4 on /: ${got%;}" '[[ $got == "/dev/vda on / type ext4 "* ]]' "mount's line for /: '$got'"
ok=OK
[[ ${MARK[VMMTEST-EXT4-WRITE]-} == ok && ${MARK[VMMTEST-REMOUNT-RO]-} == ok ]] ||
	{ ok=FAIL; note "write: '${MARK[VMMTEST-EXT4-WRITE]-}', remount read-only: '${MARK[VMMTEST-REMOUNT-RO]-}'"; }
got=$(debugfs -R "cat /guest-wrote" "$WORK/root.ext4" 2>/dev/null) || true
[[ $got == "$TOKEN written by the guest" ]] || { ok=FAIL; note "debugfs -R 'cat /guest-wrote': '$got'"; }
if ! e2fsck -fn "$WORK/root.ext4" >"$WORK/e2fsck.log" 2>&1; then
	ok=FAIL
	note "e2fsck -fn finds problems:"
	show "$WORK/e2fsck.log" "e2fsck" 20
fi
[[ $ok == OK ]] || note_run_once ext4-root
result $ok "a file the guest wrote on the ext4 root is on the image (debugfs), and e2fsck finds it clean"
got=${MARK[VMMTEST-VDB-PATTERN-SHA]-}
check "a fresh vmm reads the 64 MiB pattern back intact from the first run's disk (now read-only vdb)" '[[ -n $P && $got == "$P" ]]' \
	"sha256 of vdb's first 64 MiB in the guest: '$got'; pattern: '$P'"
check_counters ext4-root virtio-blk0 virtio-blk1

phase "done"
finish
