#!/usr/bin/env bash
# Integration suite "vhost_user_blk" (TAP): virtio-blk served by vmm-vhost-user-blk (the build
# dir's) through the VMM's vhost-user front-end, on real KVM with Debian's stock kernel.
#   run "io": 16 MiB of random data written to the vhost-user disk with fsync, the page cache
#     dropped, read back, sha256-checked in the guest and against the image in this machine.
#   run "killed": the back-end is killed (SIGKILL) while the guest writes in a loop with
#     fsync; no reconnect: vmm keeps running, the guest's write fails with EIO (not a hang),
#     and its other disk (a userspace virtio-blk) still reads its pattern intact.
#   run "reconnect": the same kill with reconnect=20, the back-end restarted 1 s later on the
#     same socket and image: the guest's writes all succeed and the 16 MiB read back verify.
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

MIB=$((1024 * 1024))
CMDLINE="console=ttyS0 quiet loglevel=5 panic=-1"
SOCK=$WORK/blk.sock

cat >"$WORK/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/sbin/load-modules >/dev/null 2>&1
mode=$(sed -n 's/.*vmmtest=\([a-z]*\).*/\1/p' /proc/cmdline)
echo "VMMTEST-MODE $mode"
i=0; while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
echo "VMMTEST-VDA-SECTORS $(cat /sys/block/vda/size 2>/dev/null)"
head -c 16777216 /dev/urandom >/tmp/p
echo "VMMTEST-PATTERN-SHA $(sha256sum </tmp/p | cut -d' ' -f1)"
case $mode in
io)
	dd if=/tmp/p of=/dev/vda bs=1M conv=fsync 2>/dev/null; echo "VMMTEST-WRITE-EXIT $?"
	echo 3 >/proc/sys/vm/drop_caches
	echo "VMMTEST-READ-SHA $(head -c 16777216 /dev/vda | sha256sum | cut -d' ' -f1)"
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
esac
echo "VMMTEST-ACTION poweroff"
poweroff -f
sleep 5
EOF
BASE=$("$REPO/scripts/mkinitramfs" guest-base) || bail "scripts/mkinitramfs guest-base failed"
"$REPO/scripts/mkinitramfs" overlay "$WORK/overlay.cpio" --init "$WORK/init" || bail "scripts/mkinitramfs overlay failed"
cat "$BASE" "$WORK/overlay.cpio" >"$WORK/initrd"
head -c $((4 * MIB)) /dev/urandom >"$WORK/vdb.img"
read -r VDB_SHA _ < <(sha256sum "$WORK/vdb.img")

VM=(run -v --no-reboot --kernel "$KERNEL" --initrd "$WORK/initrd" --cpus 2 --memory 512M,shared=on)
B=(run --kernel "$KERNEL" --initrd "$WORK/initrd" --memory 256M)
expect_error "--disk vhost-user= without shared=on: exit 2 saying to add it" 2 "shared=on" -- \
	"${B[@]}" --disk vhost-user="$SOCK"

BE_PID=''
start_backend() { # start_backend LOG
	rm -f "$SOCK"
	"$BACKEND" --socket "$SOCK" --image "$WORK/vda.img" >>"$WORK/$1" 2>&1 &
	BE_PID=$!
	local i=0
	while [[ ! -S $SOCK ]] && ((i < 100)); do nap 0.1; i=$((i + 1)); done
	[[ -S $SOCK ]] || bail "vmm-vhost-user-blk did not create its socket: $(cat "$WORK/$1")"
}
stop_backend() {
	[[ -n $BE_PID ]] && kill "$BE_PID" 2>/dev/null || true
	[[ -n $BE_PID ]] && wait "$BE_PID" 2>/dev/null || true
	BE_PID=''
}
at_exit stop_backend
# killer NAME RESTART: kills the back-end once the guest's I/O loop runs; restarts it if asked.
killer() {
	local i=0
	while ! file_has "$WORK/$1.out" VMMTEST-IO-RUNNING && ((i < 1200)); do nap 0.25; i=$((i + 1)); done
	nap 2
	kill -9 "$BE_PID" 2>/dev/null
	echo killed >"$WORK/$1.killed"
	if [[ $2 == 1 ]]; then
		nap 1
		"$BACKEND" --socket "$SOCK" --image "$WORK/vda.img" >>"$WORK/$1.be2" 2>&1 &
		echo "$!" >"$WORK/$1.be2pid"
	fi
}

# ---- run "io" ----
truncate -s $((64 * MIB)) "$WORK/vda.img"
start_backend io.be
run_guest io --expect VMMTEST-ACTION -- "${VM[@]}" --cmdline "$CMDLINE vmmtest=io" \
	--disk vhost-user="$SOCK"
stop_backend
P=${MARK[VMMTEST-PATTERN-SHA]-}
expect_mark VMMTEST-VDA-SECTORS $((64 * MIB / 512)) "run \"io\": the guest sees the back-end's capacity (GET_CONFIG)"
read -r IMG_SHA _ < <(head -c $((16 * MIB)) "$WORK/vda.img" | sha256sum)
check "run \"io\": 16 MiB written with fsync and read back intact (sha256, in the guest and in the image)" \
	'[[ $P =~ ^[0-9a-f]{64}$ && ${MARK[VMMTEST-READ-SHA]-} == "$P" && $IMG_SHA == "$P" && ${MARK[VMMTEST-WRITE-EXIT]-} == 0 ]]' \
	"pattern $P, read back '${MARK[VMMTEST-READ-SHA]-}', image $IMG_SHA, dd exit '${MARK[VMMTEST-WRITE-EXIT]-}'"

# ---- run "killed" ----
start_backend killed.be
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
start_backend reconnect.be
killer reconnect 1 &
kpid=$!
run_guest reconnect --expect VMMTEST-ACTION -- "${VM[@]}" --cmdline "$CMDLINE vmmtest=reconnect" \
	--disk vhost-user="$SOCK",reconnect=20
wait "$kpid" 2>/dev/null || true
[[ -f $WORK/reconnect.be2pid ]] && BE_PID=$(cat "$WORK/reconnect.be2pid")
stop_backend
P=${MARK[VMMTEST-PATTERN-SHA]-}
L=${MARK[VMMTEST-LOOP-EXIT]-}
check "run \"reconnect\": killed and restarted mid-I/O, every write succeeded and the data verifies" \
	'[[ -f $WORK/reconnect.killed && $L == "0 40 "* && ${MARK[VMMTEST-READ-SHA]-} == "$P" ]]' \
	"loop: '$L', pattern $P, read back '${MARK[VMMTEST-READ-SHA]-}'"
expect_log "reconnected to the vhost-user back-end" "run \"reconnect\": vmm reconnected and resumed the device"
finish
