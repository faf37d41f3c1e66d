#!/usr/bin/env bash
# Integration suite "virtio" (TAP): boots Debian's stock kernel under vmm on real KVM with
# virtio-mmio devices (two disks, one read-only; a net device on a tap; rng; console) and
# checks, from markers the guest's /init prints, that the stock drivers find every device
# and that data moves through them intact:
#   run "devices" (one boot): device ids and drivers in /sys/bus/virtio, /dev nodes and
#     sizes, the read-only disk (ro flag, writes fail, contents read back), /dev/hwrng
#     bytes, a marker through /dev/hvc0 into --console file=, a 64 MiB random pattern
#     written to /dev/vda (hash in the guest, read back, hash of the image on the host),
#     ping and 64 MiB each way over TCP between the guest and a tap in this (L1) machine,
#     and vmm -v's per-device counters (no QueueNotify by MMIO exit; ioeventfd used);
#   run "ext4-root" (one boot, a fresh vmm): the initramfs mounts /dev/vda (an ext4 image
#     built here with mkfs.ext4 -d) and switch_roots into it; the ext4 root's init checks
#     the mount, writes a file (read back here with debugfs; e2fsck finds the image clean),
#     and hashes the disk written by the first run, now a read-only /dev/vdb;
#   error paths of --disk / --net / --console (no boot).
# Usage: tests/integration/virtio.sh PATH/TO/vmm
#   Normally run by meson: scripts/with-kvm meson test -C build --suite integration
#   Needs /dev/kvm (scripts/with-kvm provides one), scripts/fetch-kernel's kernel, root (for
#   the tap), and iproute2, socat and e2fsprogs (scripts/install-deps).
# Environment: VMM_TEST_TIMEOUT (seconds per vmm run that boots a guest, default 300),
#   VMM_TEST_KEEP=1 keeps the work directory (printed at the end).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=virtio.sh
DEFAULT_BOOT_TIMEOUT=300
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_setup "$@"

# ---- more preconditions ------------------------------------------------------------------------
IP=/usr/sbin/ip # iproute2 (busybox's ip applet has no tuntap)
need() { # need PATH PACKAGE
	[[ -x $1 ]] || bail "$1 not found — run scripts/install-deps (Debian package $2)"
}
need "$IP" iproute2
need /usr/bin/socat socat
need /usr/sbin/mkfs.ext4 e2fsprogs
need /usr/sbin/debugfs e2fsprogs
need /usr/sbin/e2fsck e2fsprogs
need /bin/busybox busybox-static
((EUID == 0)) || bail "the virtio suite creates a tap interface and needs root — run it as root (scripts/with-kvm's nested L1 runs as root)"

MIB=$((1024 * 1024))
PATTERN_BYTES=$((64 * MIB)) # the random pattern written to the disk and sent over TCP
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
CMDLINE="console=ttyS0 quiet panic=-1"

sha() { sha256sum | cut -d' ' -f1; }
elapsed() { echo "# $1 took $2 s"; }

# ---- initramfs --------------------------------------------------------------------------------
# The cached base (busybox + the virtio drivers) plus ext4 and its dependencies.
"$REPO/scripts/mkinitramfs" guest-base "$WORK/base.cpio" --add-modules "ext4" ||
	bail "scripts/mkinitramfs guest-base --add-modules ext4 failed"

cat >"$WORK/vmmtest.env" <<EOF
PATTERN_BYTES=$PATTERN_BYTES
RO_BYTES=$RO_BYTES
GUEST_MAC=$GUEST_MAC
HOST_IP=$HOST_IP
GUEST_IP=$GUEST_IP
TX_PORT=$TX_PORT
RX_PORT=$RX_PORT
TOKEN=$TOKEN
EOF

# Shared start of both inits: mounts, modules, waiting for the device nodes.
cat >"$WORK/common.sh" <<'EOF'
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/vmmtest.env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "VMMTEST-BOOT-START"
if /sbin/load-modules; then echo "VMMTEST-MODULES ok"; else echo "VMMTEST-MODULES failed"; fi
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
	echo "VMMTEST-WAIT missing after 10 s: $*"
	return 1
}
EOF

# Run "devices": every device, data through the disks, the network, rng and console.
cat >"$WORK/devices.init" <<'EOF'
#!/bin/sh
. /etc/vmmtest-common.sh
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
echo "VMMTEST-VDA-BYTES $(($(cat /sys/block/vda/size) * 512))"
echo "VMMTEST-VDB-BYTES $(($(cat /sys/block/vdb/size) * 512))"

# read-only disk
echo "VMMTEST-VDB-RO $(cat /sys/block/vdb/ro)"
if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct conv=notrunc,fsync 2>/tmp/err; then
	echo "VMMTEST-VDB-WRITE succeeded"
else
	echo "VMMTEST-VDB-WRITE failed: $(grep -v records /tmp/err | head -n1)"
fi
echo "VMMTEST-VDB-SHA $(sha256sum </dev/vdb | cut -d' ' -f1)"

# rng
timeout 30 head -c 64 /dev/hwrng >/tmp/rng
echo "VMMTEST-RNG-CURRENT $(cat /sys/class/misc/hw_random/rng_current)"
echo "VMMTEST-RNG-BYTES $(wc -c </tmp/rng)"
echo "VMMTEST-RNG-HEX $(od -An -v -tx1 /tmp/rng | tr -d ' \n')"

# console
if echo "VMMTEST-HVC0 $TOKEN" >/dev/hvc0; then echo "VMMTEST-HVC-WRITE ok"; else echo "VMMTEST-HVC-WRITE failed"; fi

# disk: write a random pattern with O_DIRECT, read it back past the page cache
head -c "$PATTERN_BYTES" /dev/urandom >/tmp/pattern
echo "VMMTEST-PATTERN-SHA $(sha256sum </tmp/pattern | cut -d' ' -f1)"
if dd if=/tmp/pattern of=/dev/vda bs=1M oflag=direct conv=notrunc,fsync 2>/tmp/err; then
	echo "VMMTEST-VDA-WRITE ok"
else
	echo "VMMTEST-VDA-WRITE failed: $(grep -v records /tmp/err | head -n1)"
fi
sync
echo 3 >/proc/sys/vm/drop_caches
echo "VMMTEST-VDA-READBACK-SHA $(dd if=/dev/vda bs=1M count=$((PATTERN_BYTES / 1048576)) iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"

# network
iface=''
for n in /sys/class/net/*; do
	[ "$(cat "$n/address")" = "$GUEST_MAC" ] && iface=${n##*/}
done
echo "VMMTEST-NET-IFACE ${iface:-none} $(ls /sys/class/net | tr '\n' ' ')"
if [ -n "$iface" ]; then
	ip link set "$iface" up
	ip addr add "$GUEST_IP/24" dev "$iface"
	# L1 -> guest: listen first (L1's sender retries until it connects)
	( timeout 200 socat -u "TCP-LISTEN:$RX_PORT,reuseaddr" CREATE:/tmp/rx
	  echo "VMMTEST-NET-RX-EXIT $?" ) &
	rxpid=$!
	ping -c 3 -W 10 "$HOST_IP" >/tmp/ping 2>&1
	echo "VMMTEST-PING $(grep 'packets transmitted' /tmp/ping)"
	# guest -> L1
	timeout 200 socat -u FILE:/tmp/pattern "TCP:$HOST_IP:$TX_PORT,connect-timeout=30"
	echo "VMMTEST-NET-TX-EXIT $?"
	wait $rxpid
	echo "VMMTEST-NET-RX-SHA $(sha256sum </tmp/rx | cut -d' ' -f1) $(wc -c </tmp/rx)"
fi
echo "VMMTEST-ACTION poweroff"
poweroff -f
sleep 5
EOF

# Run "ext4-root": the initramfs only mounts the ext4 disk and switches into it.
cat >"$WORK/ext4.init" <<'EOF'
#!/bin/sh
. /etc/vmmtest-common.sh
wait_for /dev/vda
mkdir -p /newroot
if mount -t ext4 /dev/vda /newroot; then
	echo "VMMTEST-EXT4-MOUNT ok"
	umount /proc /sys /dev
	exec switch_root /newroot /sbin/init
	echo "VMMTEST-SWITCH-ROOT failed"
else
	echo "VMMTEST-EXT4-MOUNT failed"
fi
echo "VMMTEST-ACTION poweroff (from the initramfs)"
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
echo "VMMTEST-EXT4-INIT $(cat /etc/vmmtest-token)"
echo "VMMTEST-ROOT-MOUNT $(mount | grep ' on / ' | tr '\n' ';')"
if echo "$TOKEN written by the guest" >/guest-wrote && sync; then
	echo "VMMTEST-EXT4-WRITE ok"
else
	echo "VMMTEST-EXT4-WRITE failed"
fi
i=0
while [ ! -e /dev/vdb ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
echo "VMMTEST-VDB-PATTERN-SHA $(head -c "$PATTERN_BYTES" /dev/vdb | sha256sum | cut -d' ' -f1)"
if mount -o remount,ro /; then echo "VMMTEST-REMOUNT-RO ok"; else echo "VMMTEST-REMOUNT-RO failed"; fi
echo "VMMTEST-ACTION poweroff"
poweroff -f
sleep 5
EOF

"$REPO/scripts/mkinitramfs" overlay "$WORK/devices.overlay" --init "$WORK/devices.init" \
	--file "$WORK/common.sh:/etc/vmmtest-common.sh" --file "$WORK/vmmtest.env:/etc/vmmtest.env" \
	--binary /usr/bin/socat || bail "scripts/mkinitramfs overlay failed"
cat "$WORK/base.cpio" "$WORK/devices.overlay" >"$WORK/devices.initrd"
"$REPO/scripts/mkinitramfs" overlay "$WORK/ext4.overlay" --init "$WORK/ext4.init" \
	--file "$WORK/common.sh:/etc/vmmtest-common.sh" --file "$WORK/vmmtest.env:/etc/vmmtest.env" ||
	bail "scripts/mkinitramfs overlay failed"
cat "$WORK/base.cpio" "$WORK/ext4.overlay" >"$WORK/ext4.initrd"

# ---- disk images ------------------------------------------------------------------------------
truncate -s "$DATA_BYTES" "$WORK/data.img"
head -c "$RO_BYTES" /dev/urandom >"$WORK/ro.img"
RO_SHA=$(sha <"$WORK/ro.img")
head -c "$RX_BYTES" /dev/urandom >"$WORK/l1-data"
RX_SHA=$(sha <"$WORK/l1-data")

# ext4 root: static busybox with its applet links, the init above, the token and settings.
R=$WORK/rootfs
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,mnt}
chmod 1777 "$R/tmp"
cp /bin/busybox "$R/bin/busybox"
while IFS= read -r applet; do
	[[ $applet == bin/busybox || $applet == sbin/init ]] && continue
	ln -sf /bin/busybox "$R/$applet"
done < <(/bin/busybox --list-full)
install -m 755 "$WORK/ext4-root.init" "$R/sbin/init"
echo "$TOKEN" >"$R/etc/vmmtest-token"
cp "$WORK/vmmtest.env" "$R/etc/vmmtest.env"
truncate -s 64M "$WORK/root.ext4"
mkfs.ext4 -q -F -L vmmroot -d "$R" "$WORK/root.ext4" >"$WORK/mkfs.log" 2>&1 ||
	bail "mkfs.ext4 -d failed: $(tail -n3 "$WORK/mkfs.log")"

# ---- error paths (no boot) --------------------------------------------------------------------
B=(run --kernel "$KERNEL" --initrd "$WORK/ext4.initrd" --memory 256M)
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
expect_error "--net tap=...,vhost=on (not available yet): exit 2 with a clear message" 2 "vhost" -- \
	"${B[@]}" --net tap=vmmtapx,vhost=on
expect_error "--console with neither pty nor file=: exit 2" 2 "" -- \
	"${B[@]}" --console bogus
nine=()
for ((i = 0; i < 9; i++)); do nine+=(--disk "path=$WORK/ro.img,readonly=on"); done
expect_error "nine --disk options (at most 8): exit 2" 2 "" -- "${B[@]}" "${nine[@]}"
if /usr/sbin/ip link show vmmtapx >/dev/null 2>&1; then
	note "a failed vmm run left the interface vmmtapx behind"
	$IP link del vmmtapx 2>/dev/null || true
	result FAIL "failed --net runs leave no tap interface behind"
else
	result OK "failed --net runs leave no tap interface behind"
fi

# ---- network set-up in this (L1) machine ----------------------------------------------------
if $IP link show "$TAP" >/dev/null 2>&1; then
	bail "interface $TAP exists already — another run of this suite is using it, or one was killed: delete it with $IP link del $TAP"
fi
$IP tuntap add dev "$TAP" mode tap >"$WORK/tap.log" 2>&1 ||
	bail "cannot create tap $TAP ($(cat "$WORK/tap.log")) — the tun module and root are needed (scripts/with-kvm's L1 has both)"
at_exit "$IP link del $TAP"
$IP addr add "$HOST_IP/24" dev "$TAP"
$IP link set "$TAP" up

# Background helpers: guest -> L1 receiver, L1 -> guest sender (retries until the guest listens).
timeout "$BOOT_TIMEOUT" socat -u "TCP-LISTEN:$TX_PORT,bind=$HOST_IP,reuseaddr" "CREATE:$WORK/l1-received" \
	>"$WORK/socat-rx.log" 2>&1 &
rx_pid=$!
timeout "$BOOT_TIMEOUT" socat -u "FILE:$WORK/l1-data" \
	"TCP:$GUEST_IP:$RX_PORT,retry=$BOOT_TIMEOUT,interval=1,connect-timeout=5" >"$WORK/socat-tx.log" 2>&1 &
tx_pid=$!

# ---- run "devices" ------------------------------------------------------------------------------
t0=$SECONDS
run_vmm devices "$BOOT_TIMEOUT" run -v --kernel "$KERNEL" --initrd "$WORK/devices.initrd" \
	--cpus 2 --memory 768M --cmdline "$CMDLINE" \
	--disk path="$WORK/data.img" --disk path="$WORK/ro.img",readonly=on \
	--net tap="$TAP",mac="$GUEST_MAC" --rng --console file="$WORK/hvc.log"
elapsed 'run "devices"' $((SECONDS - t0))
# reap_job PID VAR: VAR := the helper's exit status (killed if still running 10 s after vmm).
reap_job() {
	local pid=$1 n=0 st=0
	while kill -0 "$pid" 2>/dev/null && ((n < 20)); do
		sleep 0.5
		n=$((n + 1))
	done
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" || st=$?
	printf -v "$2" '%s' "$st"
}
rx_rc='' tx_rc=''
reap_job "$rx_pid" rx_rc
reap_job "$tx_pid" tx_rc

M() { marker devices "$1"; }
check_exit devices 0 'run "devices": the guest powers off, vmm exits 0'

# 1. devices found
want="0x0001:virtio_net 0x0002:virtio_blk 0x0002:virtio_blk 0x0003:virtio_console 0x0004:virtio_rng "
got=$(M VMMTEST-VIRTIO-DEVICES)
if [[ $got == "$want" ]]; then
	result OK "/sys/bus/virtio: 2 blk, net, console, rng, each bound to its driver"
else
	note "expected '$want'" "got      '$got'  (device id:driver)"
	note_run devices
	result FAIL "/sys/bus/virtio: 2 blk, net, console, rng, each bound to its driver"
fi
got=$(M VMMTEST-DEVNODES)
if [[ $got == "vda vdb hwrng hvc0" ]]; then
	result OK "/dev/vda, /dev/vdb, /dev/hwrng and /dev/hvc0 exist"
else
	note "present: '$got'"
	note_run devices
	result FAIL "/dev/vda, /dev/vdb, /dev/hwrng and /dev/hvc0 exist"
fi
if [[ $(M VMMTEST-VDA-BYTES) == "$DATA_BYTES" && $(M VMMTEST-VDB-BYTES) == "$RO_BYTES" ]]; then
	result OK "the guest's disk sizes match the images ($DATA_BYTES and $RO_BYTES bytes)"
else
	note "vda: '$(M VMMTEST-VDA-BYTES)' bytes, want $DATA_BYTES; vdb: '$(M VMMTEST-VDB-BYTES)', want $RO_BYTES"
	note_run devices
	result FAIL "the guest's disk sizes match the images"
fi

# read-only disk
ok=OK
[[ $(M VMMTEST-VDB-RO) == 1 ]] || { ok=FAIL; note "/sys/block/vdb/ro is '$(M VMMTEST-VDB-RO)', want 1"; }
[[ $(M VMMTEST-VDB-WRITE) == failed* ]] || { ok=FAIL; note "writing to /dev/vdb: '$(M VMMTEST-VDB-WRITE)'"; }
now=$(sha <"$WORK/ro.img")
[[ $now == "$RO_SHA" ]] || { ok=FAIL; note "ro.img changed on the host during the run"; }
[[ $ok == OK ]] || note_run devices
result $ok "readonly=on: vdb is read-only in the guest (ro=1, a write fails: $(M VMMTEST-VDB-WRITE | cut -c1-60)), the image is unchanged"
if [[ $(M VMMTEST-VDB-SHA) == "$RO_SHA" ]]; then
	result OK "the guest reads the read-only disk's 8 MiB intact (sha256 matches the image)"
else
	note "guest sha256 of /dev/vdb: '$(M VMMTEST-VDB-SHA)'" "image: $RO_SHA"
	note_run devices
	result FAIL "the guest reads the read-only disk's 8 MiB intact"
fi

# 5. rng
hex=$(M VMMTEST-RNG-HEX)
if [[ $(M VMMTEST-RNG-BYTES) == 64 && $hex =~ ^[0-9a-f]{128}$ && ! $hex =~ ^0+$ ]]; then
	result OK "/dev/hwrng ($(M VMMTEST-RNG-CURRENT)) gives 64 bytes, not all zero"
else
	note "bytes read: '$(M VMMTEST-RNG-BYTES)', hex: '$hex', rng_current: '$(M VMMTEST-RNG-CURRENT)'"
	note_run devices
	result FAIL "/dev/hwrng gives 64 bytes, not all zero"
fi

# 6. console
if [[ $(M VMMTEST-HVC-WRITE) == ok ]] && tr -d '\r' <"$WORK/hvc.log" | grep -qxF "VMMTEST-HVC0 $TOKEN"; then
	result OK "a line written to /dev/hvc0 is in the --console file"
else
	note "write to /dev/hvc0: '$(M VMMTEST-HVC-WRITE)'; wanted the line 'VMMTEST-HVC0 $TOKEN' in the file"
	show "$WORK/hvc.log" "console file"
	note_run devices
	result FAIL "a line written to /dev/hvc0 is in the --console file"
fi

# 2. disk data
P=$(M VMMTEST-PATTERN-SHA)
if [[ $P =~ ^[0-9a-f]{64}$ && $(M VMMTEST-VDA-WRITE) == ok && $(M VMMTEST-VDA-READBACK-SHA) == "$P" ]]; then
	result OK "64 MiB written to /dev/vda with O_DIRECT read back intact in the guest"
else
	note "pattern sha256: '$P'; write: '$(M VMMTEST-VDA-WRITE)'; read back: '$(M VMMTEST-VDA-READBACK-SHA)'"
	note_run devices
	result FAIL "64 MiB written to /dev/vda with O_DIRECT read back intact in the guest"
fi
host_sha=$(head -c "$PATTERN_BYTES" "$WORK/data.img" | sha)
if [[ -n $P && $host_sha == "$P" ]]; then
	result OK "the host's image holds the guest's 64 MiB pattern (sha256 of its first 64 MiB)"
else
	note "image's first 64 MiB: $host_sha; guest's pattern: '$P'"
	note_run devices
	result FAIL "the host's image holds the guest's 64 MiB pattern"
fi
if tail -c +$((PATTERN_BYTES + 1)) "$WORK/data.img" | cmp -s -n $((DATA_BYTES - PATTERN_BYTES)) - /dev/zero; then
	result OK "the image's last 16 MiB, past the pattern, are still zero"
else
	note "bytes after the pattern changed: $(tail -c +$((PATTERN_BYTES + 1)) "$WORK/data.img" | cmp -n $((DATA_BYTES - PATTERN_BYTES)) - /dev/zero 2>&1 | head -n1)"
	result FAIL "the image's last 16 MiB, past the pattern, are still zero"
fi

# 4. network
iface=$(M VMMTEST-NET-IFACE)
if [[ $iface == eth* ]]; then
	result OK "the guest has a network interface with --net's mac $GUEST_MAC (${iface%% *})"
else
	note "interface with $GUEST_MAC, then all interfaces: '$iface'"
	note_run devices
	result FAIL "the guest has a network interface with --net's mac $GUEST_MAC"
fi
ping=$(M VMMTEST-PING)
if [[ $ping == "3 packets transmitted, 3 packets received"* ]]; then
	result OK "the guest pings $HOST_IP on the tap: 3 of 3 answered"
else
	note "ping summary: '$ping'"
	note_run devices
	result FAIL "the guest pings $HOST_IP on the tap: 3 of 3 answered"
fi
got=''
[[ -f $WORK/l1-received ]] && got=$(sha <"$WORK/l1-received")
if [[ -n $P && $got == "$P" && $(M VMMTEST-NET-TX-EXIT) == 0 ]]; then
	result OK "guest -> L1 over TCP: 64 MiB arrive intact (sha256 matches the guest's)"
else
	note "guest's socat exit status: '$(M VMMTEST-NET-TX-EXIT)'; L1 receiver's: $rx_rc"
	note "received $(stat -c %s "$WORK/l1-received" 2>/dev/null || echo no) bytes, sha256 '$got'; guest's pattern '$P'"
	show "$WORK/socat-rx.log" "L1 receiver (socat) output"
	note_run devices
	result FAIL "guest -> L1 over TCP: 64 MiB arrive intact"
fi
got=$(M VMMTEST-NET-RX-SHA)
if [[ $got == "$RX_SHA $RX_BYTES" ]]; then
	result OK "L1 -> guest over TCP: 64 MiB arrive intact (sha256 matches)"
else
	note "guest's sha256 and size of what it received: '$got'; sent: $RX_SHA $RX_BYTES"
	note "guest's listener exit status: '$(M VMMTEST-NET-RX-EXIT)'; L1 sender's: $tx_rc"
	show "$WORK/socat-tx.log" "L1 sender (socat) output"
	note_run devices
	result FAIL "L1 -> guest over TCP: 64 MiB arrive intact"
fi

# 7. notifications: vmm -v's counters at exit, one line per device.
# check_counters NAME DEVICES...: each device has a line with 0 by MMIO exit; blk and net
# devices took notifications by ioeventfd.
check_counters() {
	local name=$1 dev line ioev mmio ok=OK
	shift
	for dev in "$@"; do
		line=$(tr -d '\r' <"$WORK/$name.err" | grep "^vmm: $dev: " | tail -n1)
		if [[ ! $line =~ ^vmm:\ $dev:\ ([0-9]+)\ queue\ notifications\ by\ ioeventfd,\ ([0-9]+)\ by\ MMIO\ exit,\ ([0-9]+)\ interrupts$ ]]; then
			ok=FAIL
			note "$dev: no counter line ('vmm: $dev: N queue notifications by ioeventfd, N by MMIO exit, N interrupts') in vmm -v's stderr"
			continue
		fi
		ioev=${BASH_REMATCH[1]}
		mmio=${BASH_REMATCH[2]}
		echo "# $line"
		((mmio == 0)) || { ok=FAIL; note "$dev: $mmio queue notifications took the MMIO exit path"; }
		if [[ $dev == virtio-blk* || $dev == virtio-net* ]] && ((ioev == 0)); then
			ok=FAIL
			note "$dev: no queue notification by ioeventfd"
		fi
	done
	[[ $ok == OK ]] || show "$WORK/$name.err" "vmm stderr"
	result $ok "run \"$name\": vmm -v counters: 0 notifications by MMIO exit for $*; ioeventfd used by the disks and net"
}
check_counters devices virtio-blk0 virtio-blk1 virtio-net0 virtio-rng0 virtio-console0

# ---- run "ext4-root" ---------------------------------------------------------------------------
t0=$SECONDS
run_vmm ext4 "$BOOT_TIMEOUT" run -v --kernel "$KERNEL" --initrd "$WORK/ext4.initrd" \
	--cpus 2 --memory 512M --cmdline "$CMDLINE root=/dev/vda rootfstype=ext4" \
	--disk path="$WORK/root.ext4" --disk path="$WORK/data.img",readonly=on
elapsed 'run "ext4-root"' $((SECONDS - t0))
E() { marker ext4 "$1"; }
check_exit ext4 0 'run "ext4-root": the guest powers off, vmm exits 0'
if [[ $(E VMMTEST-EXT4-MOUNT) == ok && $(E VMMTEST-EXT4-INIT) == "$TOKEN" ]]; then
	result OK "the initramfs mounts the ext4 /dev/vda and switch_root runs its /sbin/init"
else
	note "mount in the initramfs: '$(E VMMTEST-EXT4-MOUNT)'; marker of the ext4 root's init: '$(E VMMTEST-EXT4-INIT)' (want $TOKEN)"
	note_run ext4
	result FAIL "the initramfs mounts the ext4 /dev/vda and switch_root runs its /sbin/init"
fi
got=$(E VMMTEST-ROOT-MOUNT)
if [[ $got == "/dev/vda on / type ext4 "* ]]; then
	result OK "mount shows /dev/vda as ext4 on /: ${got%;}"
else
	note "mount's line for /: '$got'"
	note_run ext4
	result FAIL "mount shows /dev/vda as ext4 on /"
fi
ok=OK
[[ $(E VMMTEST-EXT4-WRITE) == ok && $(E VMMTEST-REMOUNT-RO) == ok ]] ||
	{ ok=FAIL; note "write: '$(E VMMTEST-EXT4-WRITE)', remount read-only: '$(E VMMTEST-REMOUNT-RO)'"; }
got=$(debugfs -R "cat /guest-wrote" "$WORK/root.ext4" 2>/dev/null) || true
[[ $got == "$TOKEN written by the guest" ]] || { ok=FAIL; note "debugfs cat /guest-wrote: '$got'"; }
if ! e2fsck -fn "$WORK/root.ext4" >"$WORK/e2fsck.log" 2>&1; then
	ok=FAIL
	note "e2fsck -fn finds problems:"
	show "$WORK/e2fsck.log" "e2fsck" 20
fi
[[ $ok == OK ]] || note_run ext4
result $ok "a file the guest wrote on the ext4 root is on the image (debugfs), and e2fsck finds it clean"
got=$(E VMMTEST-VDB-PATTERN-SHA)
if [[ -n $P && $got == "$P" ]]; then
	result OK "a fresh vmm reads the 64 MiB pattern back intact from the first run's disk (now read-only vdb)"
else
	note "sha256 of vdb's first 64 MiB in the guest: '$got'; pattern: '$P'"
	note_run ext4
	result FAIL "a fresh vmm reads the 64 MiB pattern back intact from the first run's disk"
fi
check_counters ext4 virtio-blk0 virtio-blk1

finish
