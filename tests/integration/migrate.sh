#!/usr/bin/env bash
# Integration suite "migrate" (TAP): live migration and snapshots on real KVM with Debian's
# stock kernel. Two hosts are two network namespaces joined by a veth pair, each with its own
# vmm and its own back-ends. The guest (2 vCPUs, 512 MiB shared RAM) runs
# tests/integration/mig_guest.c: a counter in memory and a numbered, checksummed record
# stream written with O_DIRECT to a vhost-user-blk disk served by vmm-vhost-user-blk (one per
# host, same image: shared storage; its in-flight requests and queue positions move as
# DEVICE_STATE), while it holds a file open on a virtiofs share served by virtiofsd 1.13
# (one per host, same directory; the guest's open inodes and file handles move as
# DEVICE_STATE) and appends a line to it at every heartbeat. A second, in-process virtio-blk
# disk carries the host's "stop" word. While it writes:
#   - 6 migrations in a row, A → B → A → B → A → B → A, each by `vmm migrate` on the current
#     host's API socket to a `vmm run --incoming` on the other: each reports its total time
#     and downtime, the source vmm exits 0, the guest's heartbeat goes on at the destination;
#   - a migration to a port where nobody listens fails (exit 1) and the guest runs on;
#   - a migration through a proxy that corrupts one byte of the stream: the destination
#     refuses it (exit 8, says why), the source's guest runs on; the same with a stream cut
#     short;
#   - a snapshot (`vmm snapshot`), then `vmm shutdown`, then `vmm run --restore` of it: the
#     guest continues from the snapshot;
#   then the guest is told to stop (a control disk), reads every record back and reports: no
#   gap, no duplicate, no corruption, the counter only grew; and reads the open file back
#   through the same descriptor: every line, in order, no failed write.
# Usage: tests/integration/migrate.sh PATH/TO/vmm PATH/TO/mig_guest (meson passes them)
# shellcheck disable=SC2016 # check's conditions are single-quoted: lib.sh evaluates them
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=migrate.sh
DEFAULT_BOOT_TIMEOUT=240
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
MIG_GUEST=${2:-}
lib_setup "$1"
[[ -x $MIG_GUEST ]] || bail "the guest workload '$MIG_GUEST' is missing — meson compile -C build builds it"
IP=$(command -v ip) || bail "ip (iproute2) is missing — install it (scripts/install-deps)"
PEERS=$VMM_CACHE/peers/bin
need "$PEERS/virtiofsd" "run scripts/fetch-peers (scripts/test does)"
BLK_BACKEND=$(cd "$(dirname "$VMM")/../vhost" && pwd)/vmm-vhost-user-blk
need "$BLK_BACKEND" "build it: meson compile -C build"
((EUID == 0)) || bail "the migrate suite runs virtiofsd and network namespaces as root — run it as root (scripts/with-kvm's nested L1 does)"
PY=$(command -v python3) || bail "python3 is missing — install it (scripts/install-deps)"

MIB=$((1024 * 1024))
CMDLINE="console=ttyS0 quiet loglevel=4 panic=-1"
NSA=vmmmigA$$ NSB=vmmmigB$$
ADDR_A=10.231.0.1 ADDR_B=10.231.0.2 PORT=4444

# ---- the guest ----
cat >"$WORK/init" <<'GUEST'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/sbin/load-modules >/dev/null 2>&1
i=0; while { [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; } && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p /mnt
mount -t virtiofs share /mnt
echo "VMMTEST-MOUNT $?"
echo "VMMTEST-READY"
/mig_guest /dev/vda /dev/vdb /mnt/open.txt
echo "VMMTEST-EXIT $?"
poweroff -f
GUEST
BASE=$("$REPO/scripts/mkinitramfs" guest-base --add-modules "fuse virtiofs") || bail "scripts/mkinitramfs guest-base --add-modules 'fuse virtiofs' failed"
"$REPO/scripts/mkinitramfs" overlay "$WORK/overlay.cpio" --init "$WORK/init" \
	--file "$MIG_GUEST:/mig_guest" || bail "scripts/mkinitramfs overlay failed"
cat "$BASE" "$WORK/overlay.cpio" >"$WORK/initrd"
truncate -s 64M "$WORK/records.img"
truncate -s 1M "$WORK/control.img"
mkdir -p "$WORK/share"

# ---- two hosts: network namespaces joined by a veth pair ----
"$IP" netns add "$NSA" && at_exit "'$IP' netns del $NSA"
"$IP" netns add "$NSB" && at_exit "'$IP' netns del $NSB"
"$IP" link add "vmA$$" netns "$NSA" type veth peer name "vmB$$" netns "$NSB" ||
	bail "cannot create a veth pair between two network namespaces"
"$IP" -n "$NSA" addr add "$ADDR_A/24" dev "vmA$$"
"$IP" -n "$NSB" addr add "$ADDR_B/24" dev "vmB$$"
for ns in "$NSA" "$NSB"; do "$IP" -n "$ns" link set lo up; done
"$IP" -n "$NSA" link set "vmA$$" up
"$IP" -n "$NSB" link set "vmB$$" up

declare -A PID=() BPIDS=()
# vm_opts NAME: the VM's options with NAME's back-ends (its sockets) into VM_OPTS.
vm_opts() {
	VM_OPTS=(--cpus 2 --memory 512M,shared=on --disk "vhost-user=$WORK/$1.blk.sock"
		--disk "path=$WORK/control.img" --fs "vhost-user=$WORK/$1.fs.sock,tag=share")
}
# backends NAME NS [--incoming]: NAME's vmm-vhost-user-blk and virtiofsd 1.13 in NS.
backends() {
	local name=$1 ns=$2 p1 p2 i
	"$IP" netns exec "$ns" "$BLK_BACKEND" --socket "$WORK/$name.blk.sock" \
		--image "$WORK/records.img" ${3:-} -v >"$WORK/$name.blk.log" 2>&1 &
	p1=$!
	"$IP" netns exec "$ns" "$PEERS/virtiofsd" --socket-path="$WORK/$name.fs.sock" \
		--shared-dir="$WORK/share" --sandbox=none >"$WORK/$name.fs.log" 2>&1 &
	p2=$!
	BPIDS[$name]="$p1 $p2"
	at_exit "kill -KILL $p1 $p2 2>/dev/null || true"
	for ((i = 0; i < 120; i++)); do
		[[ -S $WORK/$name.blk.sock && -S $WORK/$name.fs.sock ]] && return 0
		nap 0.25
	done
	note "the back-ends of $name did not create their sockets"
	show "$WORK/$name.blk.log" "$name vmm-vhost-user-blk log"
	show "$WORK/$name.fs.log" "$name virtiofsd log"
	return 1
}
# stop_backends NAME: ends NAME's back-ends (virtiofsd ends by itself with its front-end).
stop_backends() {
	local p
	for p in ${BPIDS[$1]-}; do
		kill "$p" 2>/dev/null || true
		wait_gone "$p" 10 || kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}

# start NAME NS ARGS...: a vmm in network namespace NS, console in $WORK/NAME.out.
start() {
	local name=$1 ns=$2
	shift 2
	echo "$VMM $*" >"$WORK/$name.cmd"
	rm -f "$WORK/$name.sock"
	"$IP" netns exec "$ns" "$VMM" "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err" &
	PID[$name]=$!
	at_exit "kill -KILL ${PID[$name]} 2>/dev/null || true"
}
# wait_text FILE TEXT SECONDS: until FILE has TEXT (builtins only); true if it did.
wait_text() {
	local t=$((SECONDS + $3)) content
	while ((SECONDS < t)); do
		content=''
		[[ -f $1 ]] && content=$(<"$1")
		[[ $content == *"$2"* ]] && return 0
		nap 0.25
	done
	return 1
}
# beat NAME: the last heartbeat's record number on NAME's console, or -1.
beat() {
	local line n=-1
	[[ -f $WORK/$1.out ]] || { echo -1; return 0; }
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line//$'\r'/}
		[[ $line == "VMMTEST-BEAT "* ]] && { n=${line#VMMTEST-BEAT }; n=${n%% *}; }
	done <"$WORK/$1.out"
	echo "$n"
}
# wait_beat NAME N SECONDS: until NAME's heartbeat passes N.
wait_beat() {
	local t=$((SECONDS + $3))
	while (($(beat "$1") <= $2)) && ((SECONDS < t)); do nap 0.25; done
	(($(beat "$1") > $2))
}
# exit_of NAME SECONDS: sets ERC to NAME's exit status once it is gone (or "running").
# (Not in a $(...): only this shell can wait for its children.)
exit_of() {
	ERC=0
	wait_gone "${PID[$1]}" "$2" || { ERC=running; return 0; }
	wait "${PID[$1]}" 2>/dev/null || ERC=$?
}
# show_run NAME: its command, console tail and log tail, as diagnostics.
show_run() {
	note "$1: $(cat "$WORK/$1.cmd" 2>/dev/null)"
	show "$WORK/$1.err" "$1 vmm log"
	show "$WORK/$1.out" "$1 console"
	[[ -f $WORK/$1.blk.log ]] && show "$WORK/$1.blk.log" "$1 vmm-vhost-user-blk log"
	[[ -f $WORK/$1.fs.log ]] && show "$WORK/$1.fs.log" "$1 virtiofsd log"
	return 0
}

# ---- boot on host A ----
CUR=hop0 CUR_NS=$NSA CUR_SOCK=$WORK/hop0.sock
phase "booting the guest on host A"
backends hop0 "$NSA" || bail "the back-ends did not start"
vm_opts hop0
start hop0 "$NSA" run -v --kernel "$KERNEL" --initrd "$WORK/initrd" --cmdline "$CMDLINE" \
	"${VM_OPTS[@]}" --api-socket "$CUR_SOCK"
if wait_beat hop0 30 "$BOOT_TIMEOUT"; then
	result OK "the guest boots on host A and writes records"
else
	show_run hop0
	result FAIL "the guest boots on host A and writes records"
	finish
fi

# migrate_to NAME NS ADDR: starts `vmm run --incoming` as NAME in NS and migrates CUR there.
# Sets MIG_RC, MIG_OUT, SRC_RC and NEW_BEAT (true: the guest beats at NAME).
migrate_to() {
	local name=$1 ns=$2 addr=$3 b0
	MIG_RC=x SRC_RC=x NEW_BEAT=''
	MIG_OUT="the back-ends did not start"
	backends "$name" "$ns" --incoming || return 0
	vm_opts "$name"
	start "$name" "$ns" run -v --incoming "tcp:$addr:$PORT" --kernel "$KERNEL" \
		--initrd "$WORK/initrd" --cmdline "$CMDLINE" "${VM_OPTS[@]}" --api-socket "$WORK/$name.sock"
	wait_text "$WORK/$name.err" "waiting for a migration" 60 || true
	b0=$(beat "$CUR")
	MIG_RC=0
	MIG_OUT=$("$VMM" migrate --api-socket "$CUR_SOCK" --to "tcp:$addr:$PORT" 2>&1) || MIG_RC=$?
	exit_of "$CUR" 30
	SRC_RC=$ERC
	NEW_BEAT=''
	if wait_beat "$name" "$b0" 60; then NEW_BEAT=1; fi
	[[ $SRC_RC != 0 ]] || stop_backends "$CUR"
}

HOSTS=("$NSB" "$NSA")
ADDRS=("$ADDR_B" "$ADDR_A")
LETTERS=(B A)
for hop in 1 2 3 4 5 6; do
	k=$(((hop - 1) % 2))
	name=hop$hop
	phase "migration $hop: to host ${LETTERS[k]}"
	wait_beat "$CUR" $(($(beat "$CUR") + 20)) 60 || true
	migrate_to "$name" "${HOSTS[k]}" "${ADDRS[k]}"
	summary=$(grep '^migrated to' <<<"$MIG_OUT" || true)
	ok=OK
	[[ $MIG_RC == 0 && -n $summary ]] || { ok=FAIL; note "vmm migrate: exit $MIG_RC: $MIG_OUT"; }
	[[ $SRC_RC == 0 ]] || { ok=FAIL; note "the source vmm: $SRC_RC (want exit 0)"; show_run "$CUR"; }
	[[ -n $NEW_BEAT ]] || { ok=FAIL; note "no heartbeat at the destination"; show_run "$name"; }
	result "$ok" "migration $hop (to host ${LETTERS[k]}): vmm migrate exits 0, the source exits 0, the guest goes on there (${summary:-no summary})"
	[[ $ok == OK ]] || finish
	CUR=$name CUR_NS=${HOSTS[k]} CUR_SOCK=$WORK/$name.sock
done

# ---- failures leave the source running ----
other_ns() { [[ $CUR_NS == "$NSA" ]] && echo "$NSB" || echo "$NSA"; }
other_addr() { [[ $CUR_NS == "$NSA" ]] && echo "$ADDR_B" || echo "$ADDR_A"; }
phase "a migration to where nobody listens"
b0=$(beat "$CUR")
rc=0
out=$("$VMM" migrate --api-socket "$CUR_SOCK" --to "tcp:$(other_addr):4999" 2>&1) || rc=$?
ok=OK
[[ $rc == 1 && $out == *"cannot connect"* ]] || { ok=FAIL; note "vmm migrate: exit $rc: $out"; }
wait_beat "$CUR" $((b0 + 10)) 30 || { ok=FAIL; note "the guest stopped beating"; }
result "$ok" "a migration to a port where nobody listens fails (exit 1, says so) and the guest runs on"

# bad_stream NAME MODE: migrate CUR through a proxy (corrupt one byte / cut the stream short).
bad_stream() {
	local name=$1 mode=$2 b0 rc=0 out drc
	backends "$name" "$(other_ns)" --incoming || { result FAIL "bad stream $mode: back-ends"; return 0; }
	vm_opts "$name"
	start "$name" "$(other_ns)" run -v --incoming "tcp:$(other_addr):$PORT" "${VM_OPTS[@]}"
	wait_text "$WORK/$name.err" "waiting for a migration" 60 || true
	"$IP" netns exec "$CUR_NS" "$PY" - "$mode" "$(other_addr)" "$PORT" 5555 \
		<<'PROXY' >"$WORK/$name.proxy" 2>&1 &
import socket, sys, threading
mode, host, port, lport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", lport)); ls.listen(1)
print("listening", flush=True)
c, _ = ls.accept(); d = socket.create_connection((host, port))
def close_both():
    for s in (c, d):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
def back():
    try:
        while True:
            b = d.recv(65536)
            if not b: break
            c.sendall(b)
    except OSError: pass
    close_both()
threading.Thread(target=back, daemon=True).start()
n, at = 0, (3 if mode == "corrupt" else 2) * 1024 * 1024
try:
    while True:
        b = c.recv(65536)
        if not b: break
        if mode == "corrupt" and n <= at < n + len(b):
            i = at - n; b = b[:i] + bytes([b[i] ^ 0x40]) + b[i + 1:]
        if mode == "truncate" and n + len(b) > at:
            d.sendall(b[:at - n]); n = at; break
        d.sendall(b); n += len(b)
except OSError: pass
print("forwarded", n, flush=True)
close_both()
PROXY
	wait_text "$WORK/$name.proxy" listening 30 || true
	b0=$(beat "$CUR")
	out=$("$VMM" migrate --api-socket "$CUR_SOCK" --to "tcp:127.0.0.1:5555" 2>&1) || rc=$?
	exit_of "$name" 60
	drc=$ERC
	ok=OK
	[[ $rc == 1 ]] || { ok=FAIL; note "vmm migrate: exit $rc (want 1): $out"; }
	[[ $drc == 8 ]] || { ok=FAIL; note "the destination: exit $drc (want 8)"; show_run "$name"; }
	grep -q 'migration: ' "$WORK/$name.err" || { ok=FAIL; note "the destination does not say why"; show_run "$name"; }
	wait_beat "$CUR" $((b0 + 10)) 60 || { ok=FAIL; note "the source's guest stopped beating"; show_run "$CUR"; }
	[[ $ok == OK ]] && note "destination: $(grep -m1 'migration: ' "$WORK/$name.err")"
	stop_backends "$name"
	local how=corrupted
	[[ $mode == truncate ]] && how="cut short"
	result "$ok" "a migration whose stream is $how on the way: the destination refuses it (exit 8, says why) and the source's guest runs on"
}
phase "a corrupted stream"
bad_stream bad1 corrupt
phase "a stream cut short"
bad_stream bad2 truncate

# ---- snapshot and restore ----
phase "snapshot, shutdown, restore"
b0=$(beat "$CUR")
rc=0
out=$("$VMM" snapshot --api-socket "$CUR_SOCK" --to "$WORK/snap" 2>&1) || rc=$?
ok=OK
[[ $rc == 0 && -s $WORK/snap ]] || { ok=FAIL; note "vmm snapshot: exit $rc: $out"; }
wait_beat "$CUR" $((b0 + 10)) 30 || { ok=FAIL; note "the guest did not run on after the snapshot"; }
result "$ok" "vmm snapshot writes the VM's state and the guest runs on ($out)"
snap_beat=$b0
"$VMM" shutdown --api-socket "$CUR_SOCK" >/dev/null 2>&1 || true
exit_of "$CUR" 30
# The snapshot names CUR's back-ends' sockets: its blk back-end serves the next front-end,
# its virtiofsd ended with the VM: a new one on the same socket and directory.
stop_backends "$CUR"
backends "$CUR" "$CUR_NS" --incoming || true
start restored "$CUR_NS" run -v --restore "$WORK/snap" --api-socket "$WORK/restored.sock"
ok=OK
wait_beat restored "$snap_beat" 120 || { ok=FAIL; note "no heartbeat after the restore"; show_run restored; }
first=$(tr -d '\r' <"$WORK/restored.out" | sed -n 's/^VMMTEST-BEAT \([0-9]*\) .*/\1/p' | head -n1)
[[ -n $first ]] && ((first <= snap_beat + 40)) || { ok=FAIL; note "the restored guest's first beat is $first; the snapshot was taken near $snap_beat"; }
result "$ok" "vmm run --restore: the guest continues from the snapshot (first beat $first, snapshot near beat $snap_beat)"
CUR=restored CUR_SOCK=$WORK/restored.sock

# ---- the guest checks its records ----
phase "stopping the workload"
printf 'STOP' | dd of="$WORK/control.img" conv=notrunc status=none
exit_of "$CUR" 120
rc=$ERC
recs=$(tr -d '\r' <"$WORK/$CUR.out" | sed -n 's/^VMMTEST-RECORDS //p' | head -n1)
ok=OK
[[ $rc == 0 && $recs == *" ok "* ]] || { ok=FAIL; note "vmm exit $rc; records: '$recs'"; show_run "$CUR"; }
result "$ok" "every record written across the migrations and the restore reads back: no gap, no duplicate, no corruption, the counter only grew ($recs)"
file=$(tr -d '\r' <"$WORK/$CUR.out" | sed -n 's/^VMMTEST-FILE //p' | head -n1)
check "the file held open on the virtiofs share across every migration is still usable: every line there, in order, no failed write ($file)" \
	'[[ $file == "ok "* ]]' "VMMTEST-FILE: '$file'"
lines=$(wc -l <"$WORK/share/open.txt" 2>/dev/null || echo 0)
check "the host sees the open file's lines in the shared directory ($lines)" '((lines > 0))' ""
finish
