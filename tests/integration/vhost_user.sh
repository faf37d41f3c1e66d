#!/usr/bin/env bash
# Integration suite "vhost_user" (TAP): devices whose queues third-party vhost-user back-ends
# serve, on real KVM with Debian's stock kernel and guest RAM shared with the back-end
# (--memory 512M,shared=on). The back-ends come from Debian (scripts/fetch-peers):
#   run "virtiofsd": --fs vhost-user=SOCK,tag=share on virtiofsd 1.13 (Rust, Debian trixie,
#     --sandbox=none). The guest mounts the tag (mount -t virtiofs share /mnt), reads a 4 MiB
#     file this machine put in the shared directory and reports its sha256, then writes 4 MiB
#     of its own there and unmounts; this machine checks that file's sha256 against the one
#     the guest computed before writing it.
#   run "qemu-virtiofsd": the same with QEMU 7.2's C virtiofsd (/usr/lib/qemu/virtiofsd,
#     -o sandbox=chroot: it cannot pivot_root out of the L1's initramfs root).
#   run "virtiofsd-killed": virtiofsd 1.13 killed (SIGKILL) while the guest reads the share in a
#     loop: the read fails with EIO (vmm answers the outstanding FUSE requests), a new request
#     fails too, the share unmounts and the guest powers off (no hang).
#   run "testpmd": --net vhost-user=SOCK on DPDK 22.11's vhost PMD: dpdk-testpmd in server mode
#     with two vhost ports forwarding to each other (io mode), and two guests, each on one
#     port: guest A sends 8 MiB of random data over TCP to guest B (link-local addresses),
#     which reports its sha256 and sends it back to A (A stays up until then: its last
#     segments may still be in flight when its sender exits); A reports the pattern's. testpmd busy-polls one of the L1's
#     two vCPUs, so this run is slow; its data volume is kept small.
# Plus the error paths: --fs without shared=on (exit 2, says to add it), --fs on a socket
# nobody listens on (exit 2, names it), a tag longer than 36 bytes.
# Usage: tests/integration/vhost_user.sh PATH/TO/vmm (meson passes it)
#   Needs /dev/kvm (scripts/with-kvm), root, socat, busybox-static (scripts/install-deps), the
#   peers in $VMM_CACHE/peers (scripts/fetch-peers; scripts/test runs it).
# Environment: VMM_TEST_TIMEOUT (seconds per vmm run that boots a guest, default 300),
#   VMM_TEST_KEEP=1 keeps the work directory (printed at the end).
# shellcheck disable=SC2016 # check's conditions are single-quoted: lib.sh evaluates them
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=vhost_user.sh
DEFAULT_BOOT_TIMEOUT=300
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_setup "$@"

PEERS=$VMM_CACHE/peers/bin
need "$PEERS/virtiofsd" "run scripts/fetch-peers (scripts/test does)"
need "$PEERS/dpdk-testpmd" "run scripts/fetch-peers (scripts/test does)"
need /usr/lib/qemu/virtiofsd "run scripts/install-deps (Debian package qemu-system-common)"
need /usr/bin/socat "run scripts/install-deps (Debian package socat)"
need /bin/busybox "run scripts/install-deps (Debian package busybox-static)"
((EUID == 0)) || bail "the vhost_user suite runs virtiofsd on a shared directory as root — run it as root (scripts/with-kvm's nested L1 does)"

MIB=$((1024 * 1024))
FS_BYTES=$((4 * MIB))
NET_BYTES=$((8 * MIB))
TAG=share
MAC_A=52:54:00:12:35:01
MAC_B=52:54:00:12:35:02
IP_A=169.254.12.1
IP_B=169.254.12.2
PORT=5021
ACK_PORT=5022
# The guest's virtio-fs driver (fuse first).
FS_MODULES="fuse virtiofs"
CMDLINE="console=ttyS0 quiet loglevel=5 panic=-1"


# ---- guest files ----------------------------------------------------------------------------
OV=$WORK/overlay
mkdir -p "$OV/vmmtest"
cat >"$OV/vmmtest/env" <<EOF
FS_BYTES=$FS_BYTES
NET_BYTES=$NET_BYTES
TAG=$TAG
MAC_A=$MAC_A
MAC_B=$MAC_B
IP_A=$IP_A
IP_B=$IP_B
PORT=$PORT
ACK_PORT=$ACK_PORT
EOF
cat >"$WORK/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /vmmtest/env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
t() { read -r up _ </proc/uptime; echo "VMMTEST-T $up $*"; }
bye() { echo "VMMTEST-ACTION poweroff"; poweroff -f; sleep 5; }
role=''
for w in $(cat /proc/cmdline); do case $w in vmmtest=*) role=${w#vmmtest=} ;; esac; done
echo "VMMTEST-BOOT-START $role"
if /sbin/load-modules; then echo "VMMTEST-MODULES ok"; else echo "VMMTEST-MODULES failed"; fi

if [ "$role" = fs ]; then
	mkdir -p /mnt
	mount -t virtiofs "$TAG" /mnt
	echo "VMMTEST-MOUNT $?"
	t mounted
	echo "VMMTEST-LS $(ls /mnt | tr '\n' ' ')"
	echo "VMMTEST-HOST-FILE $(sha256sum </mnt/host.bin | cut -d' ' -f1) $(wc -c </mnt/host.bin)"
	head -c "$FS_BYTES" /dev/urandom >/tmp/pattern
	echo "VMMTEST-GUEST-PATTERN $(sha256sum </tmp/pattern | cut -d' ' -f1)"
	cp /tmp/pattern /mnt/guest.bin
	echo "VMMTEST-WRITE $?"
	sync
	umount /mnt
	echo "VMMTEST-UMOUNT $?"
	t written
	bye
fi

if [ "$role" = fskill ]; then
	# Reads the share until it fails: the host kills the back-end meanwhile. The page cache
	# is dropped each time, so every read goes to the back-end (and then to the VMM).
	mkdir -p /mnt
	mount -t virtiofs "$TAG" /mnt
	echo "VMMTEST-MOUNT $?"
	echo "VMMTEST-FS-READING"
	n=0
	err=''
	while [ $n -lt 2000 ]; do
		err=$(cat /mnt/host.bin 2>&1 >/dev/null) || break
		echo 3 >/proc/sys/vm/drop_caches
		n=$((n + 1))
	done
	t reads ended
	echo "VMMTEST-FS-LOOP $n $err"
	# A new request after the back-end is gone fails too, rather than hang.
	err=$(ls /mnt/ 2>&1 >/dev/null)
	echo "VMMTEST-FS-AFTER $? $err"
	timeout 60 umount /mnt
	echo "VMMTEST-FS-UMOUNT $?"
	bye
fi

# net roles: a sends, b receives
want=$MAC_A; me=$IP_A; peer=$IP_B
[ "$role" = netb ] && { want=$MAC_B; me=$IP_B; peer=$IP_A; }
iface=''
i=0
while [ -z "$iface" ] && [ $i -lt 50 ]; do
	for n in /sys/class/net/*; do
		read -r a <"$n/address"
		[ "$a" = "$want" ] && iface=${n##*/}
	done
	[ -n "$iface" ] || sleep 0.2
	i=$((i + 1))
done
echo "VMMTEST-NET-IFACE ${iface:-none}"
[ -n "$iface" ] || bye
ip link set "$iface" up
ip addr add "$me/16" dev "$iface"
t link up
if [ "$role" = netb ]; then
	( timeout 400 socat -u "TCP-LISTEN:$PORT,reuseaddr" CREATE:/tmp/rx
	  echo "VMMTEST-NET-RX-EXIT $?" ) &
	rxpid=$!
	echo "VMMTEST-NET-LISTENING"
	wait $rxpid
	t received
	got="$(sha256sum </tmp/rx | cut -d' ' -f1) $(wc -c </tmp/rx)"
	echo "VMMTEST-NET-RX-SHA $got"
	# tell A (which stays up until then: its last segments and FIN may still be in flight)
	i=0
	until echo "$got" | timeout 30 socat -u - "TCP:$peer:$ACK_PORT,connect-timeout=5"; do
		i=$((i + 1))
		[ $i -lt 20 ] || break
		sleep 1
	done
	echo "VMMTEST-NET-ACK-SENT $i"
	bye
fi
head -c "$NET_BYTES" /dev/urandom >/tmp/pattern
echo "VMMTEST-PATTERN-SHA $(sha256sum </tmp/pattern | cut -d' ' -f1)"
# B may still be booting: ping until it answers (ARP goes through testpmd too).
i=0
until ping -c 1 -W 2 "$peer" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 120 ] || break
done
echo "VMMTEST-PING-TRIES $i"
t peer answers
# B's answer comes on ACK_PORT once it has the whole stream: listen before sending.
( timeout 200 socat -u "TCP-LISTEN:$ACK_PORT,reuseaddr" CREATE:/tmp/ack
  echo "VMMTEST-NET-ACK-EXIT $?" ) &
ackpid=$!
i=0
until timeout 300 socat -u FILE:/tmp/pattern "TCP:$peer:$PORT,connect-timeout=10"; do
	i=$((i + 1))
	[ $i -lt 20 ] || break
	sleep 2
done
echo "VMMTEST-NET-TX-EXIT $i"
t sent
# socat's close does not wait for the data still in the socket: stay up until B has it all.
wait $ackpid
echo "VMMTEST-NET-ACK $(cat /tmp/ack)"
t acknowledged
bye
EOF

BASE=$("$REPO/scripts/mkinitramfs" guest-base --add-modules "$FS_MODULES") || bail "scripts/mkinitramfs guest-base --add-modules '$FS_MODULES' failed"
"$REPO/scripts/mkinitramfs" overlay "$WORK/overlay.cpio" --init "$WORK/init" \
	--file "$OV/vmmtest:/vmmtest" --binary /usr/bin/socat || bail "scripts/mkinitramfs overlay failed"
cat "$BASE" "$WORK/overlay.cpio" >"$WORK/initrd"
phase "guest files ready"

# ---- error paths (no boot) --------------------------------------------------------------------
B=(run --kernel "$KERNEL" --initrd "$WORK/initrd")
expect_error "--fs without --memory shared=on: exit 2, says to add shared=on" 2 "shared=on" -- \
	"${B[@]}" --memory 256M --fs vhost-user="$WORK/fs.sock",tag=share
expect_error "--fs on a socket nobody listens on: exit 2 naming it" 2 "$WORK/nobody.sock" -- \
	"${B[@]}" --memory 256M,shared=on --fs vhost-user="$WORK/nobody.sock",tag=share
expect_error "--fs with a 37-byte tag: exit 2" 2 "36" -- \
	"${B[@]}" --memory 256M,shared=on --fs vhost-user="$WORK/fs.sock",tag=abcdefghijklmnopqrstuvwxyz01234567890
expect_error "--net vhost-user without --memory shared=on: exit 2, says to add shared=on" 2 "shared=on" -- \
	"${B[@]}" --memory 256M --net vhost-user="$WORK/net.sock"

VM=(run -v --no-reboot --kernel "$KERNEL" --initrd "$WORK/initrd" --cpus 1 --memory "512M,shared=on")

# stop_peer PID: the back-end is done (SIGTERM, then SIGKILL after 10 s).
stop_peer() {
	kill "$1" 2>/dev/null || true
	wait_gone "$1" 10 || kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# wait_socket PATH PID: the back-end PID created its socket PATH (up to 30 s).
wait_socket() {
	local i
	for ((i = 0; i < 120; i++)); do
		[[ -S $1 ]] && return 0
		gone "$2" && return 1
		nap 0.25
	done
	return 1
}

# fs_run NAME LABEL BACKEND_CMD...: a shared directory with host.bin, the back-end started
# on $WORK/NAME.sock (in BACKEND_CMD, @SOCK@ and @DIR@ are replaced), one boot, the checks.
fs_run() {
	local name=$1 label=$2 dir=$WORK/$1.share sock=$WORK/$1.sock pid host_sha got a
	shift 2
	local -a cmd=()
	for a in "$@"; do
		a=${a//@SOCK@/$sock}
		cmd+=("${a//@DIR@/$dir}")
	done
	mkdir -p "$dir"
	head -c "$FS_BYTES" /dev/urandom >"$dir/host.bin"
	sha_of "$dir/host.bin" host_sha
	"${cmd[@]}" >"$WORK/$name.backend.log" 2>&1 &
	pid=$!
	at_exit "kill $pid 2>/dev/null"
	if ! wait_socket "$sock" "$pid"; then
		note "the back-end did not create $sock: $(tail -n 5 "$WORK/$name.backend.log" | tr '\n' ' ')"
		result FAIL "run \"$name\" ($label): the back-end listens"
		stop_peer "$pid"
		return 0
	fi
	run_guest "$name" --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
		--label "run \"$name\" ($label): the guest mounts the tag and powers off, vmm exits 0" -- \
		"${VM[@]}" --cmdline "$CMDLINE vmmtest=fs" --fs vhost-user="$sock",tag="$TAG"
	phase "run \"$name\" done"
	guest_timeline
	stop_peer "$pid"
	expect_mark VMMTEST-MOUNT 0 "run \"$name\": mount -t virtiofs $TAG /mnt succeeds in the guest"
	got=${MARK[VMMTEST-HOST-FILE]-}
	check "run \"$name\": the guest reads a 4 MiB host file intact (sha256)" \
		'[[ $got == "$host_sha $FS_BYTES" ]]' \
		"guest's sha256 and size of /mnt/host.bin: '$got'; the host's: $host_sha $FS_BYTES; ls: '${MARK[VMMTEST-LS]-}'" \
		"back-end log: $(tail -n 5 "$WORK/$name.backend.log" | tr '\n' ' ')"
	P=${MARK[VMMTEST-GUEST-PATTERN]-}
	got=''
	[[ -f $dir/guest.bin ]] && sha_of "$dir/guest.bin" got
	check "run \"$name\": a 4 MiB file the guest writes reaches the host intact (sha256)" \
		'[[ $P =~ ^[0-9a-f]{64}$ && $got == "$P" && ${MARK[VMMTEST-WRITE]-} == 0 && ${MARK[VMMTEST-UMOUNT]-} == 0 ]]' \
		"guest's pattern '$P'; host's guest.bin: $(stat -c %s "$dir/guest.bin" 2>/dev/null || echo no) bytes, sha256 '$got'; cp: '${MARK[VMMTEST-WRITE]-}', umount: '${MARK[VMMTEST-UMOUNT]-}'"
	expect_log "virtio-fs0: tag '$TAG' served by the vhost-user back-end" \
		"run \"$name\": vmm -v says the device is served by the vhost-user back-end"
}

# ---- runs "virtiofsd" and "qemu-virtiofsd" ---------------------------------------------------
fs_run virtiofsd "virtiofsd 1.13 from Debian trixie" \
	"$PEERS/virtiofsd" --socket-path=@SOCK@ --shared-dir=@DIR@ --sandbox=none
fs_run qemu-virtiofsd "QEMU 7.2's C virtiofsd" \
	/usr/lib/qemu/virtiofsd --socket-path=@SOCK@ -o source=@DIR@ -o sandbox=chroot

# ---- run "virtiofsd-killed" -------------------------------------------------------------------
# virtiofsd 1.13 is killed (SIGKILL) while the guest reads the share in a loop: vmm answers
# the guest's outstanding and new FUSE requests with -EIO, so its reads fail instead of
# hanging, the unmount completes, and the guest powers off.
KDIR=$WORK/fskill.share
KSOCK=$WORK/fskill.sock
mkdir -p "$KDIR"
head -c "$FS_BYTES" /dev/urandom >"$KDIR/host.bin"
"$PEERS/virtiofsd" --socket-path="$KSOCK" --shared-dir="$KDIR" --sandbox=none \
	>"$WORK/fskill.backend.log" 2>&1 &
KPID=$!
at_exit "kill -9 $KPID 2>/dev/null"
if wait_socket "$KSOCK" "$KPID"; then
	fs_killer() {
		local i=0
		while ! file_has "$WORK/fskill.out" VMMTEST-FS-READING && ((i < 1200)); do
			nap 0.25
			i=$((i + 1))
		done
		nap 2
		kill -9 "$KPID" 2>/dev/null && echo killed >"$WORK/fskill.killed"
	}
	fs_killer &
	kpid=$!
	run_guest fskill --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
		--label "run \"virtiofsd-killed\": the guest powers off after its back-end was killed, vmm exits 0" -- \
		"${VM[@]}" --cmdline "$CMDLINE vmmtest=fskill" --fs vhost-user="$KSOCK",tag="$TAG"
	wait "$kpid" 2>/dev/null || true
	phase "run \"virtiofsd-killed\" done"
	L=${MARK[VMMTEST-FS-LOOP]-}
	check "run \"virtiofsd-killed\": virtiofsd was killed mid-read and the guest's read failed with EIO" \
		'[[ -f $WORK/fskill.killed && $L =~ ^[0-9]+\ .*(I/O\ error|Input/output\ error) ]]' \
		"loop: '$L', killed: $([[ -f $WORK/fskill.killed ]] && echo yes || echo no)"
	A=${MARK[VMMTEST-FS-AFTER]-}
	check "run \"virtiofsd-killed\": a new request on the share fails at once (not a hang), and the share unmounts" \
		'[[ $A != 0* && -n $A && ${MARK[VMMTEST-FS-UMOUNT]-} == 0 ]]' \
		"ls after: '$A', umount: '${MARK[VMMTEST-FS-UMOUNT]-}'"
	expect_log "the share's requests fail with an I/O error" \
		"run \"virtiofsd-killed\": vmm logs the dead back-end and what it does"
else
	note "virtiofsd did not create $KSOCK: $(tail -n 5 "$WORK/fskill.backend.log" | tr '\n' ' ')"
	result FAIL "run \"virtiofsd-killed\": the back-end listens"
fi

# ---- run "testpmd" ----------------------------------------------------------------------------
# testpmd is the server of both sockets (vhost PMD without client=1); each vmm connects.
S0=$WORK/net0.sock
S1=$WORK/net1.sock
"$PEERS/dpdk-testpmd" -l 0-1 --no-huge --no-pci -m 256 --no-shconf --file-prefix "vmmtest$$" \
	--vdev "net_vhost0,iface=$S0,queues=1" --vdev "net_vhost1,iface=$S1,queues=1" -- \
	--auto-start --forward-mode=io --total-num-mbufs=8192 --stats-period=30 \
	</dev/null >"$WORK/testpmd.log" 2>&1 &
tp=$!
at_exit "kill $tp 2>/dev/null"
if ! wait_socket "$S0" "$tp" || ! wait_socket "$S1" "$tp"; then
	show "$WORK/testpmd.log" "testpmd"
	result FAIL "run \"testpmd\": dpdk-testpmd listens on both vhost-user sockets"
	phase "done"
	finish
fi
phase "testpmd listens"
# guest B (receiver) in the background, guest A (sender) as the run the checks look at
echo "$VMM ${VM[*]} --cmdline $CMDLINE vmmtest=netb --net vhost-user=$S1,mac=$MAC_B" >"$WORK/netb.cmd"
"$VMM" "${VM[@]}" --cmdline "$CMDLINE vmmtest=netb" --net vhost-user="$S1",mac="$MAC_B" \
	</dev/null >"$WORK/netb.out" 2>"$WORK/netb.err" &
vb=$!
at_exit "kill $vb 2>/dev/null"
run_guest neta --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
	--label "run \"testpmd\": guest A on net_vhost0 sends and powers off, vmm exits 0" -- \
	"${VM[@]}" --cmdline "$CMDLINE vmmtest=neta" --net vhost-user="$S0",mac="$MAC_A"
phase "guest A done"
guest_timeline
A_SHA=${MARK[VMMTEST-PATTERN-SHA]-}
A_TX=${MARK[VMMTEST-NET-TX-EXIT]-}
A_PING=${MARK[VMMTEST-PING-TRIES]-}
A_ACK=${MARK[VMMTEST-NET-ACK]-}
expect_log "virtio-net0: data path in the vhost-user back-end" \
	"run \"testpmd\": vmm -v says guest A's data path is in the vhost-user back-end"
vb_rc=0
wait_gone "$vb" 120 || { note "guest B's vmm still ran 120 s after A's ended"; kill "$vb" 2>/dev/null || true; }
wait "$vb" 2>/dev/null || vb_rc=$?
stop_peer "$tp"
load_markers netb
RUN=netb
got=${MARK[VMMTEST-NET-RX-SHA]-}
check "run \"testpmd\": guest B on net_vhost1 receives A's 8 MiB TCP stream through testpmd intact (sha256)" \
	'[[ $A_SHA =~ ^[0-9a-f]{64}$ && $got == "$A_SHA $NET_BYTES" && $A_ACK == "$got" && $A_TX == 0 && $vb_rc == 0 ]]' \
	"A's pattern '$A_SHA', A's sender retries '$A_TX', pings before B answered '$A_PING', B's answer as A got it '$A_ACK'; B's sha256 and size '$got', B's listener '${MARK[VMMTEST-NET-RX-EXIT]-}', B's answer retries '${MARK[VMMTEST-NET-ACK-SENT]-}', B's vmm exit status $vb_rc" \
	"testpmd: $(grep -E 'RX-packets|TX-packets|Port [01]|rror' "$WORK/testpmd.log" | tail -n 12 | tr '\n' ';')"

phase "done"
finish
