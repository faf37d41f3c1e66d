#!/usr/bin/env bash
# Integration suite "vhost_user_blk" (TAP): virtio-blk served through the VMM's vhost-user
# front-end by vmm-vhost-user-blk (the build dir's) and by qemu-storage-daemon, on real KVM
# with Debian's stock kernel.
#   run "io": the back-end on a loop device over the image with --direct (O_DIRECT), its first
#     interrupt dropped on purpose for vmm's interrupt watchdog to send again; 16 MiB
#     of random data written to the vhost-user disk with fsync, the page cache
#     dropped, read back, sha256-checked in the guest and against the image in this machine;
#     then the image and its loop device grow and the back-end gets SIGHUP:
#     CONFIG_CHANGE_MSG, the VMM reads the config again and raises the config interrupt,
#     and the guest sees the new capacity in /sys/block/vda/size. Before the resize vmm
#     (SIGUSR2) and the back-end (SIGUSR1) log where the queues stand: all answered.
#   run "killed": the back-end is killed (SIGKILL) while the guest writes in a loop with
#     fsync; no reconnect: vmm keeps running, the guest's write fails with EIO (not a hang),
#     and its other disk (a userspace virtio-blk) still reads its pattern intact.
#   run "reconnect": the same kill with reconnect=20, the back-end restarted 1 s later on the
#     same socket and image: the guest's writes all succeed (requests in flight at the kill
#     resubmitted from the in-flight area: the back-end holds its answers 500 ms and is killed
#     right after it wrote) and the 16 MiB read back verify.
#   run "qsd-reboot": Debian 12's qemu-storage-daemon (QEMU 7.2) as the back-end: the guest
#     makes an ext4 file system on the disk, writes an 8 MiB random file, syncs, unmounts and
#     reboots (vmm builds a new VM: a new connection to the same daemon); the second boot
#     mounts it and reads the file back (sha256 in both boots, and in this machine with
#     debugfs; e2fsck finds the file system clean).
#   run "qsd10-resize": QEMU 10's qemu-storage-daemon (bookworm-backports: scripts/fetch-qsd)
#     on the same image: the file reads back intact, then QMP block_resize grows the node and
#     the guest sees the new capacity. (QEMU 7.2's daemon does not announce a resize: its
#     export learnt it in QEMU 8.1 — docs/testing.md.)
#   error path: a vhost-user disk without shared=on exits 2 saying to add it.
# Usage: tests/integration/vhost_user_blk.sh PATH/TO/vmm (meson passes it)
# shellcheck disable=SC2016 # check's conditions are single-quoted: lib.sh evaluates them
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=vhost_user_blk.sh
DEFAULT_BOOT_TIMEOUT=300
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_setup "$@"
BACKEND=$(cd "$(dirname "$VMM")/../vhost" && pwd)/vmm-vhost-user-blk
[[ -x $BACKEND ]] || bail "$BACKEND is missing — build it: meson compile -C build"
QSD=/usr/bin/qemu-storage-daemon
[[ -x $QSD ]] || bail "$QSD not found — run scripts/install-deps (Debian package qemu-system-common)"
QSD10=$VMM_CACHE/qsd10/root/usr/bin/qemu-storage-daemon
[[ -x $QSD10 ]] || bail "$QSD10 not found — run scripts/fetch-qsd (scripts/test does)"
for p in /usr/sbin/mkfs.ext4 /usr/sbin/debugfs /usr/sbin/e2fsck; do
	[[ -x $p ]] || bail "$p not found — run scripts/install-deps (Debian package e2fsprogs)"
done
command -v python3 >/dev/null || bail "python3 not found — run scripts/install-deps"

MIB=$((1024 * 1024))
CMDLINE="console=ttyS0 quiet loglevel=5 panic=-1"
SOCK=$WORK/blk.sock
QSOCK=$WORK/qsd.sock
QMP=$WORK/qmp.sock
# ext4 and what it needs, dependencies first (as in virtio.sh; crc32c_generic is ext4's soft
# dependency "crypto-crc32c", which depends= does not list).
EXT4_MODULES="crc16 mbcache jbd2 crc32c_generic ext4"

cat >"$WORK/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/sbin/load-modules >/dev/null 2>&1
mode=$(sed -n 's/.*vmmtest=\([a-z0-9]*\).*/\1/p' /proc/cmdline)
echo "VMMTEST-MODE $mode"
i=0; while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
echo "VMMTEST-VDA-SECTORS $(cat /sys/block/vda/size 2>/dev/null)"
# wait_resize: announces that the guest waits, then waits up to 60 s for vda's capacity to
# change and prints the new one.
wait_resize() {
	before=$(cat /sys/block/vda/size)
	echo "VMMTEST-RESIZE-READY $before"
	i=0
	while [ "$(cat /sys/block/vda/size)" = "$before" ] && [ $i -lt 240 ]; do
		sleep 0.25; i=$((i + 1))
	done
	echo "VMMTEST-RESIZED-SECTORS $(cat /sys/block/vda/size)"
}
case $mode in
io|killed|reconnect)
	head -c 16777216 /dev/urandom >/tmp/p
	echo "VMMTEST-PATTERN-SHA $(sha256sum </tmp/p | cut -d' ' -f1)"
	;;
esac
case $mode in
io)
	dd if=/tmp/p of=/dev/vda bs=1M conv=fsync 2>/dev/null; echo "VMMTEST-WRITE-EXIT $?"
	echo 3 >/proc/sys/vm/drop_caches
	echo "VMMTEST-READ-SHA $(head -c 16777216 /dev/vda | sha256sum | cut -d' ' -f1)"
	wait_resize
	;;
killed|reconnect)
	echo "VMMTEST-IO-RUNNING"
	rc=0; n=0
	while [ $n -lt 40 ]; do
		dd if=/tmp/p of=/dev/vda bs=1M conv=fsync 2>/tmp/dd.err || { rc=$?; break; }
		n=$((n + 1))
	done
	echo "VMMTEST-LOOP-EXIT $rc $n $(tr '\n' ' ' </tmp/dd.err)"
	if [ "$mode" = reconnect ]; then
		echo 3 >/proc/sys/vm/drop_caches
		echo "VMMTEST-READ-SHA $(head -c 16777216 /dev/vda | sha256sum | cut -d' ' -f1)"
	else
		echo "VMMTEST-VDB-SHA $(head -c 4194304 /dev/vdb | sha256sum | cut -d' ' -f1)"
	fi
	;;
ext4|ext4resize)
	. /vmmtest/env
	for m in $EXT4_MODULES; do
		[ -d /sys/module/$m ] || insmod /vmmtest/$m.ko || echo "VMMTEST-INSMOD-FAILED $m"
	done
	mkdir -p /mnt
	if mount -t ext4 /dev/vda /mnt 2>/tmp/mount.err; then
		# A later boot: the file system the first one made.
		echo "VMMTEST-READBACK-SHA $(sha256sum </mnt/data | cut -d' ' -f1)"
		umount /mnt; echo "VMMTEST-UMOUNT2-EXIT $?"
	elif [ "$mode" = ext4 ] && ! head -c 1048576 /dev/vda | od -An -tx1 | grep -q '[1-9a-f]'; then
		# The first boot, on a blank disk: make the file system, write, sync, reboot.
		mkfs.ext4 -q -F /dev/vda >/tmp/mkfs.out 2>&1; r=$?
		echo "VMMTEST-MKFS-EXIT $r $(tr '\n' ' ' </tmp/mkfs.out)"
		mount -t ext4 /dev/vda /mnt; echo "VMMTEST-MOUNT-EXIT $?"
		head -c 8388608 /dev/urandom >/mnt/data
		echo "VMMTEST-WRITTEN-SHA $(sha256sum </mnt/data | cut -d' ' -f1)"
		sync
		umount /mnt; echo "VMMTEST-UMOUNT-EXIT $?"
		echo "VMMTEST-ACTION reboot"
		reboot -f
		sleep 5
	else
		echo "VMMTEST-MOUNT-FAILED $(tr '\n' ' ' </tmp/mount.err)"
	fi
	[ "$mode" = ext4resize ] && wait_resize
	;;
esac
echo "VMMTEST-ACTION poweroff"
poweroff -f
sleep 5
EOF
# The ext4 modules of the guest kernel, and mkfs.ext4 with its libraries.
OV=$WORK/overlay
mkdir -p "$OV/vmmtest"
paths=()
for m in $EXT4_MODULES; do paths+=(-name "$m.ko" -o); done
mapfile -t found < <(find "$(kernel_modules_dir)/kernel" "${paths[@]}" -false)
((${#found[@]} == 5)) || bail "expected the 5 modules $EXT4_MODULES in $(kernel_modules_dir), found: ${found[*]}"
cp "${found[@]}" "$OV/vmmtest/"
printf 'EXT4_MODULES="%s"\n' "$EXT4_MODULES" >"$OV/vmmtest/env"
BASE=$("$REPO/scripts/mkinitramfs" guest-base) || bail "scripts/mkinitramfs guest-base failed"
"$REPO/scripts/mkinitramfs" overlay "$WORK/overlay.cpio" --init "$WORK/init" \
	--file "$OV/vmmtest:/vmmtest" --file /etc/mke2fs.conf:/etc/mke2fs.conf \
	--binary /usr/sbin/mkfs.ext4 || bail "scripts/mkinitramfs overlay failed"
cat "$BASE" "$WORK/overlay.cpio" >"$WORK/initrd"
head -c $((4 * MIB)) /dev/urandom >"$WORK/vdb.img"
read -r VDB_SHA _ < <(sha256sum "$WORK/vdb.img")

VM=(run -v --no-reboot --kernel "$KERNEL" --initrd "$WORK/initrd" --cpus 2 --memory 512M,shared=on)
B=(run --kernel "$KERNEL" --initrd "$WORK/initrd" --memory 256M)
expect_error "--disk vhost-user= without shared=on: exit 2 saying to add it" 2 "shared=on" -- \
	"${B[@]}" --disk vhost-user="$SOCK"

BE_PID=''
start_backend() { # start_backend LOG [OPTION...]
	local log=$1
	shift
	rm -f "$SOCK"
	"$BACKEND" --socket "$SOCK" --image "${IMAGE:-$WORK/vda.img}" "$@" >>"$WORK/$log" 2>&1 &
	BE_PID=$!
	local i=0
	while [[ ! -S $SOCK ]] && ((i < 100)); do nap 0.1; i=$((i + 1)); done
	[[ -S $SOCK ]] || bail "vmm-vhost-user-blk did not create its socket: $(cat "$WORK/$log")"
}
stop_backend() {
	[[ -n $BE_PID ]] && kill "$BE_PID" 2>/dev/null || true
	[[ -n $BE_PID ]] && wait "$BE_PID" 2>/dev/null || true
	BE_PID=''
}
at_exit stop_backend
# killer NAME RESTART: kills the back-end once the guest's I/O loop runs, right after the
# back-end wrote to the image (the image's mtime passes a mark: it then holds those answers
# for --hold-ms, so requests are in flight at the kill); restarts it if asked.
killer() {
	local i=0
	while ! file_has "$WORK/$1.out" VMMTEST-IO-RUNNING && ((i < 1200)); do nap 0.25; i=$((i + 1)); done
	nap 1
	: >"$WORK/$1.mark"
	i=0
	while [[ ! $WORK/vda.img -nt $WORK/$1.mark ]] && ((i < 600)); do nap 0.05; i=$((i + 1)); done
	kill -9 "$BE_PID" 2>/dev/null
	echo killed >"$WORK/$1.killed"
	if [[ $2 == 1 ]]; then
		nap 1
		"$BACKEND" -v --socket "$SOCK" --image "$WORK/vda.img" >>"$WORK/$1.be2" 2>&1 &
		echo "$!" >"$WORK/$1.be2pid"
	fi
}
# resizer NAME CMD...: once the guest of run NAME waits for a resize, runs CMD (which grows
# the disk); its output goes to NAME.resize.
resizer() {
	local name=$1 i=0
	shift
	while ! file_has "$WORK/$name.out" VMMTEST-RESIZE-READY && ((i < 1200)); do nap 0.25; i=$((i + 1)); done
	file_has "$WORK/$name.out" VMMTEST-RESIZE-READY || return 0
	"$@" >"$WORK/$name.resize" 2>&1 || echo "resize failed: $*" >>"$WORK/$name.resize"
}
grow_ours() { # grow_ours BYTES: the image (and its loop device) grows, the back-end re-reads its size (SIGHUP)
	truncate -s "$1" "$WORK/vda.img" && losetup -c "$LOOP" && kill -HUP "$BE_PID"
}

# ---- run "io" ----
# The back-end serves a loop device over the image with --direct (O_DIRECT: WORK is on
# tmpfs, which takes O_DIRECT only from Linux 6.6; a block device takes it anywhere).
truncate -s $((64 * MIB)) "$WORK/vda.img"
LOOP=$(losetup --find --show "$WORK/vda.img") || bail "cannot attach $WORK/vda.img to a loop device"
at_exit 'losetup -d "$LOOP"'
# The back-end drops its first interrupt (VMM_DROP_INTERRUPT), as if lost on the way: the
# guest's first read (its partition table, alone in flight) is answered and never
# signalled, until vmm's interrupt watchdog sees the ring owed an interrupt and sends it.
VMM_DROP_INTERRUPT=vhost-user-blk:1 IMAGE=$LOOP start_backend io.be --direct -v
# Before the resize (the guest idle, its I/O all answered) both sides are asked where the
# queues stand: vmm (SIGUSR2) and the back-end (SIGUSR1).
dump_and_grow() {
	kill -USR2 "$(cat "$WORK/io.pid")" && kill -USR1 "$BE_PID" && nap 1 && grow_ours "$1"
}
resizer io dump_and_grow $((96 * MIB)) &
rpid=$!
run_guest io --expect VMMTEST-ACTION -- "${VM[@]}" --cmdline "$CMDLINE vmmtest=io" \
	--disk vhost-user="$SOCK"
wait "$rpid" 2>/dev/null || true
stop_backend
P=${MARK[VMMTEST-PATTERN-SHA]-}
check "run \"io\": the back-end served the loop device with O_DIRECT" \
	'grep -q "serving $LOOP .*O_DIRECT" "$WORK/io.be"' "$(head -c 600 "$WORK/io.be")"
expect_mark VMMTEST-VDA-SECTORS $((64 * MIB / 512)) "run \"io\": the guest sees the back-end's capacity (GET_CONFIG)"
read -r IMG_SHA _ < <(head -c $((16 * MIB)) "$WORK/vda.img" | sha256sum)
check "run \"io\": 16 MiB written with fsync and read back intact (sha256, in the guest and in the image)" \
	'[[ $P =~ ^[0-9a-f]{64}$ && ${MARK[VMMTEST-READ-SHA]-} == "$P" && $IMG_SHA == "$P" && ${MARK[VMMTEST-WRITE-EXIT]-} == 0 ]]' \
	"pattern $P, read back '${MARK[VMMTEST-READ-SHA]-}', image $IMG_SHA, dd exit '${MARK[VMMTEST-WRITE-EXIT]-}'"
expect_mark VMMTEST-RESIZED-SECTORS $((96 * MIB / 512)) \
	"run \"io\": image grown to 96 MiB + SIGHUP: the guest sees the new capacity (CONFIG_CHANGE_MSG, config interrupt)"
expect_log "config changed (capacity $((96 * MIB / 512)) sectors)" "run \"io\": vmm read the new config from the back-end"
check "run \"io\": the back-end's first interrupt, dropped on purpose, was sent again by vmm's watchdog" \
	'grep -q "vhost-user-blk: interrupt 1 not sent (VMM_DROP_INTERRUPT)" "$WORK/io.be" &&
	 grep -q "virtio-blk0: a queue is owed an interrupt its driver has not taken; sending the interrupt again" "$WORK/io.err"' \
	"$(grep -a "VMM_DROP_INTERRUPT" "$WORK/io.be" | head -n 2)" "$(grep -a "interrupt again" "$WORK/io.err" | head -n 2)"
# (N: the same number thrice: every request offered was taken and answered)
check "run \"io\": SIGUSR1: the back-end logs each queue, every request offered taken and answered, none in flight" \
	'grep -Eq "queue 0: offered ([0-9]+), taken \1 \(0 waiting\), used \1, .*; 0 in flight in the back-end" "$WORK/io.be"' \
	"$(grep -a "queue" "$WORK/io.be" | head -n 4)"
check "run \"io\": SIGUSR2: vmm logs the vhost-user disk's queues as guest memory shows them, all answered" \
	'grep -Eq "virtio-blk0: queue 0: offered ([0-9]+), used \1 \(0 not answered\), .*; served" "$WORK/io.err" &&
	 grep -q "virtio-blk0: status 0xf, InterruptStatus" "$WORK/io.err"' \
	"$(grep -a "queue\|InterruptStatus\|virtio device" "$WORK/io.err" | head -n 6)"
check "run \"io\": SIGUSR2: vmm logs each vCPU's registers and interrupt state, and the disk's IOAPIC pin (unmasked)" \
	'grep -q "vCPU 0: rip=0x" "$WORK/io.err" && grep -q "vCPU 1: interrupts .*; local APIC TPR" "$WORK/io.err" &&
	 grep -q "virtio-blk0: its interrupt: IOAPIC pin [0-9]*: vector 0x[0-9a-f]*, edge-triggered, active high, unmasked" "$WORK/io.err"' \
	"$(grep -a "vCPU\|its interrupt" "$WORK/io.err" | head -n 8)"

# ---- run "killed" ----
# --hold-ms: the back-end holds its answers a little, so that requests are in flight at the kill.
start_backend killed.be --hold-ms 500
killer killed 0 &
kpid=$!
run_guest killed --expect VMMTEST-ACTION -- "${VM[@]}" --cmdline "$CMDLINE vmmtest=killed" \
	--disk vhost-user="$SOCK" --disk path="$WORK/vdb.img"
wait "$kpid" 2>/dev/null || true
BE_PID=''
L=${MARK[VMMTEST-LOOP-EXIT]-}
check "run \"killed\": the back-end was killed mid-I/O, vmm survived and the guest's write failed with EIO" \
	'[[ -f $WORK/killed.killed && $L != 0* && $L == *"error"* ]]' "loop: '$L'"
expect_mark VMMTEST-VDB-SHA "$VDB_SHA" "run \"killed\": the guest's other disk still reads intact"
expect_log "its requests fail with an I/O error" "run \"killed\": vmm logs the dead back-end and what it does"

# ---- run "reconnect" ----
start_backend reconnect.be --hold-ms 500
killer reconnect 1 &
kpid=$!
run_guest reconnect --expect VMMTEST-ACTION -- "${VM[@]}" --cmdline "$CMDLINE vmmtest=reconnect" \
	--disk vhost-user="$SOCK",reconnect=20
wait "$kpid" 2>/dev/null || true
[[ -f $WORK/reconnect.be2pid ]] && BE_PID=$(cat "$WORK/reconnect.be2pid")
stop_backend
show "$WORK/reconnect.be2" "the restarted back-end's log" 20
P=${MARK[VMMTEST-PATTERN-SHA]-}
L=${MARK[VMMTEST-LOOP-EXIT]-}
check "run \"reconnect\": killed and restarted mid-I/O, every write succeeded and the data verifies" \
	'[[ -f $WORK/reconnect.killed && $L == "0 40 "* && ${MARK[VMMTEST-READ-SHA]-} == "$P" ]]' \
	"loop: '$L', pattern $P, read back '${MARK[VMMTEST-READ-SHA]-}'"
expect_log "reconnected to the vhost-user back-end" "run \"reconnect\": vmm reconnected and resumed the device"
RESUB=$(sed -n 's/.* \([0-9]*\) requests\{0,1\} in flight at the last connection.s end resubmitted.*/\1/p' \
	"$WORK/reconnect.be2" 2>/dev/null | sed -n 1p)
check "run \"reconnect\": the restarted back-end resubmitted the requests in flight at the kill (INFLIGHT_SHMFD)" \
	'[[ ${RESUB:-0} -ge 1 ]]' "resubmitted: '${RESUB-}'"

# ---- qemu-storage-daemon ----
QSD_PID=''
start_qsd() { # start_qsd BINARY LOG: serves qsd.img on QSOCK, its QMP monitor on QMP
	rm -f "$QSOCK" "$QMP"
	"$1" --blockdev driver=file,node-name=disk0,filename="$WORK/qsd.img" \
		--export type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path="$QSOCK",writable=on \
		--chardev socket,id=mon0,path="$QMP",server=on,wait=off --monitor chardev=mon0 \
		>>"$WORK/$2" 2>&1 &
	QSD_PID=$!
	local i=0
	while [[ ! -S $QSOCK ]] && ((i < 300)); do nap 0.1; i=$((i + 1)); done
	[[ -S $QSOCK ]] || bail "qemu-storage-daemon ($1) did not create its socket: $(cat "$WORK/$2")"
}
stop_qsd() {
	[[ -n $QSD_PID ]] && kill "$QSD_PID" 2>/dev/null || true
	[[ -n $QSD_PID ]] && wait "$QSD_PID" 2>/dev/null || true
	QSD_PID=''
}
at_exit stop_qsd
# qmp_resize BYTES: QMP block_resize of the daemon's node (prints the reply; fails on an error).
qmp_resize() {
	python3 - "$QMP" disk0 "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
def call(cmd):
    f.write(json.dumps(cmd) + "\n")
    f.flush()
    while True:  # events may come first
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
json.loads(f.readline())  # the greeting
call({"execute": "qmp_capabilities"})
r = call({"execute": "block_resize", "arguments": {"node-name": sys.argv[2], "size": int(sys.argv[3])}})
print(json.dumps(r))
sys.exit(0 if "return" in r else 1)
PY
}

# ---- run "qsd-reboot": QEMU 7.2's daemon, ext4, a guest reboot ----
truncate -s $((64 * MIB)) "$WORK/qsd.img"
start_qsd "$QSD" qsd72.log
QSD_VERSION=$("$QSD" --version | sed -n 1p)
run_guest qsd-reboot --expect VMMTEST-ACTION \
	--label "run \"qsd-reboot\" ($QSD_VERSION): mkfs, write, sync, reboot, read back; vmm exits 0" -- \
	run -v --kernel "$KERNEL" --initrd "$WORK/initrd" --cpus 2 --memory 512M,shared=on \
	--cmdline "$CMDLINE vmmtest=ext4" --disk vhost-user="$QSOCK"
stop_qsd
W=${MARK[VMMTEST-WRITTEN-SHA]-}
check "run \"qsd-reboot\": mkfs.ext4 on the vhost-user disk, an 8 MiB file written, synced and unmounted" \
	'[[ ${MARK[VMMTEST-MKFS-EXIT]-} == 0* && ${MARK[VMMTEST-MOUNT-EXIT]-} == 0 && $W =~ ^[0-9a-f]{64}$ && ${MARK[VMMTEST-UMOUNT-EXIT]-} == 0 ]]' \
	"mkfs '${MARK[VMMTEST-MKFS-EXIT]-}', mount '${MARK[VMMTEST-MOUNT-EXIT]-}', file '$W', umount '${MARK[VMMTEST-UMOUNT-EXIT]-}'"
expect_log "the guest rebooted" "run \"qsd-reboot\": the guest rebooted (vmm built a new VM: a new connection to the daemon)"
check "run \"qsd-reboot\": after the reboot the file reads back intact (sha256)" \
	'[[ ${MARK[VMMTEST-READBACK-SHA]-} == "$W" ]]' "written $W, read back '${MARK[VMMTEST-READBACK-SHA]-}' ${MARK[VMMTEST-MOUNT-FAILED]-}"
read -r HOST_SHA _ < <(debugfs -R "cat /data" "$WORK/qsd.img" 2>/dev/null | sha256sum)
e2fsck -fn "$WORK/qsd.img" >"$WORK/e2fsck.out" 2>&1 && FSCK=0 || FSCK=$?
check "run \"qsd-reboot\": in the image the file system is clean (e2fsck -fn) and the file intact (debugfs, sha256)" \
	'[[ $FSCK == 0 && $HOST_SHA == "$W" ]]' "e2fsck exit $FSCK: $(tail -n3 "$WORK/e2fsck.out" | tr '\n' ' '); debugfs sha $HOST_SHA"

# ---- run "qsd10-resize": QEMU 10's daemon, the same file system, block_resize ----
start_qsd "$QSD10" qsd10.log
QSD10_VERSION=$("$QSD10" --version | sed -n 1p)
resizer qsd10-resize qmp_resize $((96 * MIB)) &
rpid=$!
run_guest qsd10-resize --expect VMMTEST-ACTION \
	--label "run \"qsd10-resize\" ($QSD10_VERSION): the guest reads the file, then sees a resize; vmm exits 0" -- \
	"${VM[@]}" --cmdline "$CMDLINE vmmtest=ext4resize" --disk vhost-user="$QSOCK"
wait "$rpid" 2>/dev/null || true
stop_qsd
check "run \"qsd10-resize\": the file written through QEMU 7.2's daemon reads back intact through QEMU 10's" \
	'[[ ${MARK[VMMTEST-READBACK-SHA]-} == "$W" ]]' "written $W, read back '${MARK[VMMTEST-READBACK-SHA]-}' ${MARK[VMMTEST-MOUNT-FAILED]-}"
check "run \"qsd10-resize\": QMP block_resize to 96 MiB: the guest sees the new capacity" \
	'[[ ${MARK[VMMTEST-RESIZED-SECTORS]-} == $((96 * MIB / 512)) ]]' \
	"sectors before '${MARK[VMMTEST-RESIZE-READY]-}', after '${MARK[VMMTEST-RESIZED-SECTORS]-}'; QMP: $(cat "$WORK/qsd10-resize.resize" 2>/dev/null)"
expect_log "config changed (capacity $((96 * MIB / 512)) sectors)" "run \"qsd10-resize\": vmm took the daemon's CONFIG_CHANGE_MSG"
finish
