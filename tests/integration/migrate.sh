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
#     guest continues from the snapshot; then the same through the API: a second snapshot,
#     `vmm run --incoming defer` with the VM's options and `curl` PUT vm.restore;
#   then the guest is told to stop (a control disk), reads every record back and reports: no
#   gap, no duplicate, no corruption, the counter only grew; and reads the open file back
#   through the same descriptor: every line, in order, no failed write.
# Part 2, kernel vhost: a second guest (2 vCPUs, 512 MiB) with --net tap=tap0,vhost=on and
# --vsock. Each host has a persistent tap0 in a bridge whose uplink (a veth pair) joins a
# bridge in a third namespace, the network, where a peer (Python) listens: after a
# migration the guest's MAC is behind the other host's tap, and the network's bridge learns
# it from the destination's RARPs (5 from the guest's MAC, counted in the network) or the
# guest's next frame. The guest streams
# 64 MiB from /dev/urandom to the peer and the peer 64 MiB of its own to the guest, both at
# once over TCP, the peer pacing both at 1 MiB/s until it is told to go at full speed, so
# both are mid-way through each migration:
#   - A → B → A: each migration exits 0 and both streams go on at the destination;
#   - the guest receives during the migrations, so kernel vhost-net's dirty log is what
#     brings the pages it wrote to the destination: the guest's sha256 of the 64 MiB it
#     received matches the peer's, and the peer's of what it received the guest's; neither
#     side saw a reset or an error;
#   - vhost-vsock: host A and host B are one kernel here, whose vhost-vsock cids are global,
#     so the destination has another cid (A: N, B: N+1; vmm keeps the destination's in the
#     device's config space and sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET after the load, and
#     the guest's driver reads the cid again). A client here sends 4 MiB to a server in the
#     guest, which answers with their sha256: before the first migration (cid N), and in a
#     new connection after each migration, to the destination's cid. A guest still on the
#     old cid would answer from it, and vhost-vsock drops such packets.
# Usage: tests/integration/migrate.sh PATH/TO/vmm PATH/TO/mig_guest (meson passes them)
# For chasing a failure (not CI): VMM_MIGRATE_HOPS=N makes the first part N migrations
# (default 6), VMM_MIGRATE_BAD_ROUNDS=N runs the corrupted and cut-short streams N times
# (default 1), VMM_MIGRATE_NET_HOPS=N makes part 2 N migrations (default 2),
# VMM_MIGRATE_NET_MEMORY=SPEC is part 2's --memory (default 512M: anonymous RAM).
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
CURL=$(command -v curl) || bail "curl is missing — install it (scripts/install-deps)"
SOCAT=/usr/bin/socat
need "$SOCAT" "run scripts/install-deps (Debian package socat)"
[[ -c /dev/vhost-net && -c /dev/vhost-vsock ]] ||
	bail "/dev/vhost-net or /dev/vhost-vsock is missing — modprobe vhost_net vhost_vsock (scripts/nested's L1 loads them)"

# A phase past 4 minutes (the longest, a boot, takes ~1) says what the suite's processes are
# doing into meson's log: the suite went silent twice in CI with nothing on the L1 console.
PHASE_LIMIT=240
phase_report_more() {
	local name
	for name in "${CUR:-}" "${NCUR:-}"; do
		[[ -n $name && -n ${PID[$name]:-} ]] || continue
		echo "vmm $name (pid ${PID[$name]}):"
		proc_threads "${PID[$name]}"
		echo "its guest's console, last lines:"
		tail -n 15 "$WORK/$name.out" 2>/dev/null | tr -d '\r'
	done
}
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
/mig_guest /dev/vda /dev/vdb /mnt/open.txt &
pid=$!
# Every 2 s while it runs, what tells a stalled workload from a stalled guest: the kernel's
# clock (timers run), each disk's requests in flight (reads writes), where the workload waits.
( while kill -0 $pid 2>/dev/null; do
	sleep 2
	echo "VMMTEST-TICK $(cut -d' ' -f1 /proc/uptime) vda $(cat /sys/block/vda/inflight) vdb $(cat /sys/block/vdb/inflight) wchan $(cat /proc/$pid/wchan 2>/dev/null)"
done ) &
wait $pid
echo "VMMTEST-EXIT $?"
poweroff -f
GUEST
# One base for both guests (one archive to build and cache): virtiofs for part 1, AF_VSOCK's
# virtio transport (dependencies first) for part 2.
GUEST_MODULES="fuse virtiofs vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"
BASE=$("$REPO/scripts/mkinitramfs" guest-base --add-modules "$GUEST_MODULES") || bail "scripts/mkinitramfs guest-base --add-modules '$GUEST_MODULES' failed"
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
		# (a line still being written may end anywhere: only a whole number counts)
		[[ $line =~ ^VMMTEST-BEAT\ ([0-9]+)\  ]] && n=${BASH_REMATCH[1]}
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
# dest_times NAME: where NAME's load and start went, from its log ("; destination: ...").
dest_times() {
	local t
	t=$(grep -hoE '(the paused state loaded in [0-9]+ ms \(back-ends. state [0-9]+ ms\)|the loaded VM started in [0-9]+ ms|[a-z0-9-]+: its queues took [0-9]+ ms|[a-z0-9-]+: the back-end took [0-9]+ ms to answer [A-Z_]+)' \
		"$WORK/$1.err" 2>/dev/null | tr '\n' ',' || true)
	t+=$(grep -hoE 'vhost-user-blk: queue [0-9]+ took [0-9]+ ms to start \([^)]*\)' \
		"$WORK/$1.blk.log" 2>/dev/null | tr '\n' ',' || true)
	[[ -z $t ]] || echo "; destination: ${t%,}"
}
# vcpus_in_run NAME: true if every vCPU thread of NAME's vmm is inside KVM_RUN (an ioctl,
# syscall 16, with request 0xae80) in 3 looks over a second: vmm holds none of them back.
vcpus_in_run() {
	local pid=${PID[$1]} look t comm sc n in
	for look in 1 2 3; do
		n=0 in=0
		for t in /proc/"$pid"/task/*; do
			comm=$(cat "$t/comm" 2>/dev/null) || continue
			[[ $comm == vmm-vcpu* ]] || continue
			n=$((n + 1))
			sc=$(cat "$t/syscall" 2>/dev/null) || sc=''
			read -r -a sc <<<"$sc"
			[[ ${sc[0]:-} == 16 && ${sc[2]:-} == 0xae80 ]] && in=$((in + 1))
		done
		((n > 0 && in == n)) || return 1
		nap 0.5
	done
}
# ask_vcpus NAME: vmm's own account of its vCPUs (SIGUSR2, into NAME.err), then
# check_wedged_vcpu: a vCPU wedged on a page fault at its own RIP is reported to scripts/nested.
ask_vcpus() {
	[[ -n ${PID[$1]-} ]] && kill -USR2 "${PID[$1]}" 2>/dev/null || return 0
	nap 1
	check_wedged_vcpu "$1"
}
# stall_dump NAME: where NAME's guest and processes wait, once its heartbeat or streams
# stopped: the guest's last ticks (its clock, and its disks' requests in flight and the
# workload's wait channel, or its interface's counters), vmm's threads (record_threads: kernel
# stacks, backtraces, KVM's counters and exits over 2 s) and the back-ends' threads; first
# ask_vcpus (a wedged vCPU is the emulated machine's kind).
stall_dump() {
	local p l
	note "$1: the guest's last ticks: $(tr -d '\r' <"$WORK/$1.out" 2>/dev/null | grep '^VMMTEST-TICK' | tail -n 3 | tr '\n' '|')"
	note "$1: lines after its last beat: $(tr -d '\r' <"$WORK/$1.out" 2>/dev/null | awk '/^VMMTEST-BEAT/ { n = 0; next } { n++ } END { print n + 0 }')"
	[[ -n ${PID[$1]-} ]] || return 0
	ask_vcpus "$1"
	note "$1: its vmm (pid ${PID[$1]}):"
	while IFS= read -r l; do note "  $l"; done < <(record_threads "${PID[$1]}")
	for p in ${BPIDS[$1]-}; do
		note "$1: back-end pid $p ($(cat "/proc/$p/comm" 2>/dev/null)):"
		while IFS= read -r l; do note "  $l"; done < <(proc_threads "$p")
	done
}
# silent_after_migration NAME: NAME's guest said nothing after a migration that loaded;
# if every vCPU is inside KVM_RUN, reported as the emulated machine's kind (QEMU 10 as the
# L2's VMM met it too: docs/testing.md, "Whose failure is it").
silent_after_migration() {
	grep -q 'the guest runs from the migration' "$WORK/$1.err" 2>/dev/null || return 0
	ask_vcpus "$1"
	vcpus_in_run "$1" || { note "$1: not every vCPU of vmm is inside KVM_RUN"; return 0; }
	report_nested_fault "run \"$1\": the migrated L2 guest is silent at the destination while every vCPU thread of vmm is inside KVM_RUN; guest console: '$(tail -n1 "$WORK/$1.out" 2>/dev/null | tr -d '\r')'"
}
# done_checked: finish, once every run that failed was checked for a guest triple fault (a
# kind of the emulated machine's: docs/testing.md, "Whose failure is it").
done_checked() {
	local n
	if ((NFAIL)); then
		for n in "${!PID[@]}"; do check_triple_fault "$n"; done
	fi
	finish
}
# verified NAME: the destination NAME's line saying it checked every page (--verify), or fails.
verified() {
	local line
	line=$(grep -m1 -oE 'migration: verified: .*' "$WORK/$1.err" 2>/dev/null) || return 1
	echo "${line#migration: }"
}
# shmem_mib NAME: MiB of shared memory (its guest RAM memfd) NAME's vmm has in use, or -1.
shmem_mib() {
	local kib
	kib=$(sed -n 's/^RssShmem:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/${PID[$1]}/status" 2>/dev/null)
	echo $((${kib:--1024} / 1024))
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
	done_checked
fi

# migrate_to NAME NS ADDR [OPTION...]: starts `vmm run --incoming` as NAME in NS and migrates
# CUR there (`vmm migrate` with the OPTIONs). Sets MIG_RC, MIG_OUT, SRC_RC and NEW_BEAT (true:
# the guest beats at NAME).
migrate_to() {
	local name=$1 ns=$2 addr=$3 b0
	shift 3
	MIG_RC=x SRC_RC=x NEW_BEAT=''
	MIG_OUT="the back-ends did not start"
	backends "$name" "$ns" --incoming || return 0
	vm_opts "$name"
	start "$name" "$ns" run -v --incoming "tcp:$addr:$PORT" --kernel "$KERNEL" \
		--initrd "$WORK/initrd" --cmdline "$CMDLINE" "${VM_OPTS[@]}" --api-socket "$WORK/$name.sock"
	wait_text "$WORK/$name.err" "waiting for a migration" 60 || true
	b0=$(beat "$CUR")
	MIG_RC=0
	MIG_OUT=$("$VMM" migrate --api-socket "$CUR_SOCK" --to "tcp:$addr:$PORT" "$@" 2>&1) || MIG_RC=$?
	exit_of "$CUR" 30
	SRC_RC=$ERC
	NEW_BEAT=''
	if wait_beat "$name" "$b0" 60; then NEW_BEAT=1; fi
	[[ $SRC_RC != 0 ]] || stop_backends "$CUR"
}

HOSTS=("$NSB" "$NSA")
ADDRS=("$ADDR_B" "$ADDR_A")
LETTERS=(B A)
for ((hop = 1; hop <= ${VMM_MIGRATE_HOPS:-6}; hop++)); do
	k=$(((hop - 1) % 2))
	name=hop$hop
	phase "migration $hop: to host ${LETTERS[k]}"
	wait_beat "$CUR" $(($(beat "$CUR") + 20)) 60 || true
	src_mib=$(shmem_mib "$CUR")
	# Odd migrations are verified: the destination checks every page against the source's.
	verify=() opts=() finisher='' src=$CUR
	((hop % 2 == 0)) || verify=(--verify)
	if ((hop == 2)); then
		# The switch-over an orchestrator times itself, under a bandwidth cap: RAM keeps
		# moving until `vmm migrate --finish`, sent here once the source logged pass 3.
		opts=(--max-downtime 0 --bandwidth 16M)
		(
			t=$((SECONDS + 120))
			until grep -q 'migration: pass 3 sent' "$WORK/$src.err" 2>/dev/null || ((SECONDS > t)); do
				nap 0.2
			done
			rc=0
			"$VMM" migrate --api-socket "$CUR_SOCK" --finish >"$WORK/finish.out" 2>&1 || rc=$?
			echo "exit $rc" >>"$WORK/finish.out"
		) &
		finisher=$!
	fi
	migrate_to "$name" "${HOSTS[k]}" "${ADDRS[k]}" "${verify[@]}" "${opts[@]}"
	if [[ -n $finisher ]]; then
		wait "$finisher" || true
		ok=OK pass1=$(grep -m1 -o 'migration: pass 1 sent [0-9]* MiB in [0-9]* ms' "$WORK/$src.err" || true)
		passes=$(grep -c 'migration: pass [0-9]* sent' "$WORK/$src.err" || true)
		grep -q '^exit 0$' "$WORK/finish.out" 2>/dev/null || { ok=FAIL; note "vmm migrate --finish: $(tr '\n' ' ' <"$WORK/finish.out" 2>/dev/null)"; }
		if [[ $pass1 =~ sent\ ([0-9]+)\ MiB\ in\ ([0-9]+)\ ms ]]; then
			# at most 16 MiB/s, with 10% for the one-second windows' edges
			((BASH_REMATCH[1] * 10000 <= 176 * BASH_REMATCH[2])) || { ok=FAIL; note "pass 1 went faster than --bandwidth 16M: $pass1"; }
		else
			ok=FAIL
			note "the source logged no first pass"
		fi
		((passes >= 3)) || { ok=FAIL; note "pre-copy ended after $passes passes, before --finish"; }
		[[ $MIG_RC == 0 ]] || ok=FAIL
		result "$ok" "migration $hop with --max-downtime 0 --bandwidth 16M: RAM keeps moving ($passes passes) until vmm migrate --finish, then the guest moves; at most 16 MiB/s (${pass1#migration: })"
	fi
	dst_mib=$(shmem_mib "$name")
	summary=$(grep -E '^(migrated to|paused:)' <<<"$MIG_OUT" | tr '\n' ' ' || true)
	summary="${summary% }$(dest_times "$name")"
	ok=OK
	[[ $MIG_RC == 0 && -n $summary ]] || { ok=FAIL; note "vmm migrate: exit $MIG_RC: $MIG_OUT"; }
	[[ $SRC_RC == 0 ]] || { ok=FAIL; note "the source vmm: $SRC_RC (want exit 0)"; show_run "$CUR"; }
	[[ -n $NEW_BEAT ]] || { ok=FAIL; note "no heartbeat at the destination"; silent_after_migration "$name"; show_run "$name"; }
	if ((${#verify[@]})); then
		v=$(verified "$name") || { ok=FAIL; v="not verified"; note "--verify: the destination did not say it verified the guest's RAM"; show_run "$name"; }
		summary="$summary; $v"
	fi
	result "$ok" "migration $hop (to host ${LETTERS[k]}${verify[*]:+, verified}): vmm migrate exits 0, the source exits 0, the guest goes on there (${summary:-no summary})"
	[[ $ok == OK ]] || done_checked
	# RAM the guest never wrote is a hole in the memfd: sent as zero without being read
	# (a read would allocate it), and left a hole at the destination.
	ok=OK
	((src_mib >= 0 && dst_mib >= 0 && dst_mib <= src_mib + 64)) || ok=FAIL
	result "$ok" "migration $hop: the destination holds no more guest RAM than the source did ($dst_mib MiB in use there, $src_mib MiB here before; at most 64 more): never-written RAM stays unallocated"
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
	local name=$1 mode=$2 b0 rc=0 out drc dumped=''
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
	out=$(timeout 180 "$VMM" migrate --api-socket "$CUR_SOCK" --to "tcp:127.0.0.1:5555" 2>&1) || rc=$?
	((rc != 124)) || { stall_dump "$CUR"; dumped=1; }
	exit_of "$name" 60
	drc=$ERC
	ok=OK
	[[ $rc == 1 ]] || { ok=FAIL; note "vmm migrate: exit $rc (want 1): $out"; }
	[[ $drc == 8 ]] || { ok=FAIL; note "the destination: exit $drc (want 8)"; show_run "$name"; }
	grep -q 'migration: ' "$WORK/$name.err" || { ok=FAIL; note "the destination does not say why"; show_run "$name"; }
	wait_beat "$CUR" $((b0 + 10)) 60 || { ok=FAIL; note "the source's guest stopped beating"; [[ -n $dumped ]] || stall_dump "$CUR"; show_run "$CUR"; }
	[[ $ok == OK ]] && note "destination: $(grep -m1 'migration: ' "$WORK/$name.err")"
	stop_backends "$name"
	local how=corrupted
	[[ $mode == truncate ]] && how="cut short"
	result "$ok" "a migration whose stream is $how on the way: the destination refuses it (exit 8, says why) and the source's guest runs on"
}
for ((round = 1; round <= ${VMM_MIGRATE_BAD_ROUNDS:-1}; round++)); do
	phase "a corrupted stream"
	bad_stream "bad$((2 * round - 1))" corrupt
	phase "a stream cut short"
	bad_stream "bad$((2 * round))" truncate
done

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
RESTORED_BE=$CUR # the restored VM's back-ends
CUR=restored CUR_SOCK=$WORK/restored.sock

phase "snapshot, shutdown, restore through the API"
b0=$(beat "$CUR")
rc=0
out=$("$VMM" snapshot --api-socket "$CUR_SOCK" --to "$WORK/snap2" 2>&1) || rc=$?
snap_beat=$b0
"$VMM" shutdown --api-socket "$CUR_SOCK" >/dev/null 2>&1 || true
exit_of "$CUR" 30
stop_backends "$RESTORED_BE"
backends "$RESTORED_BE" "$CUR_NS" --incoming || true
vm_opts "$RESTORED_BE"
start restored2 "$CUR_NS" run -v --incoming defer "${VM_OPTS[@]}" --api-socket "$WORK/restored2.sock"
ok=OK
[[ $rc == 0 && -s $WORK/snap2 ]] || { ok=FAIL; note "vmm snapshot: exit $rc: $out"; }
wait_text "$WORK/restored2.err" "vm.restore" 60 || { ok=FAIL; note "vmm run --incoming defer never waited"; }
code=$("$CURL" -s -o "$WORK/restore-bad.json" -w '%{http_code}' --max-time 30 -X PUT \
	-d "{\"from\":\"$WORK/restored2.cmd\"}" --unix-socket "$WORK/restored2.sock" \
	http://localhost/api/v1/vm.restore 2>&1) || true
[[ $code == 400 ]] || { ok=FAIL; note "PUT vm.restore of a file that is no snapshot: $code $(cat "$WORK/restore-bad.json" 2>/dev/null)"; }
code=$("$CURL" -s -o "$WORK/restore.json" -w '%{http_code}' --max-time 30 -X PUT \
	-d "{\"from\":\"$WORK/snap2\"}" --unix-socket "$WORK/restored2.sock" \
	http://localhost/api/v1/vm.restore 2>&1) || true
[[ $code == 202 ]] || { ok=FAIL; note "PUT vm.restore: $code $(cat "$WORK/restore.json" 2>/dev/null)"; }
wait_beat restored2 "$snap_beat" 120 || { ok=FAIL; note "no heartbeat after the restore through the API"; show_run restored2; }
first=$(tr -d '\r' <"$WORK/restored2.out" | sed -n 's/^VMMTEST-BEAT \([0-9]*\) .*/\1/p' | head -n1)
[[ -n $first ]] && ((first <= snap_beat + 40)) || { ok=FAIL; note "the guest's first beat after PUT vm.restore is $first; the snapshot was taken near $snap_beat"; }
result "$ok" "PUT vm.restore on a vmm run --incoming defer: a file that is no snapshot gets 400, the snapshot 202, and the guest continues from it (first beat $first, snapshot near beat $snap_beat)"
CUR=restored2 CUR_SOCK=$WORK/restored2.sock

# ---- the guest checks its records ----
phase "stopping the workload"
printf 'STOP' | dd of="$WORK/control.img" conv=notrunc status=none
exit_of "$CUR" 120
rc=$ERC
recs=$(tr -d '\r' <"$WORK/$CUR.out" | sed -n 's/^VMMTEST-RECORDS //p' | head -n1)
ok=OK
if [[ $rc != 0 || $recs != *" ok "* ]]; then
	ok=FAIL
	note "vmm exit $rc; records: '$recs'"
	if [[ $rc == running ]]; then # what it was doing, then out of part 2's way
		record_threads "${PID[$CUR]}" >"$WORK/$CUR.threads" 2>&1 || true
		show "$WORK/$CUR.threads" "$CUR: vmm's threads" 80
		kill -KILL "${PID[$CUR]}" 2>/dev/null || true
	fi
	show_run "$CUR"
	show "$WORK/$RESTORED_BE.blk.log" "$CUR: its vmm-vhost-user-blk's log ($RESTORED_BE.blk.log)"
fi
result "$ok" "every record written across the migrations and the restore reads back: no gap, no duplicate, no corruption, the counter only grew ($recs)"
file=$(tr -d '\r' <"$WORK/$CUR.out" | sed -n 's/^VMMTEST-FILE //p' | head -n1)
ok=OK
[[ $file == "ok "* ]] || { ok=FAIL; note "VMMTEST-FILE: '$file'"; }
result "$ok" "the file held open on the virtiofs share across every migration is still usable: every line there, in order, no failed write ($file)"
lines=$(wc -l <"$WORK/share/open.txt" 2>/dev/null || echo 0)
ok=OK
((lines > 0)) || ok=FAIL
result "$ok" "the host sees the open file's lines in the shared directory ($lines)"

# ==== part 2: kernel vhost-net and vhost-vsock across migrations ====
phase "part 2: a guest on kernel vhost-net and vhost-vsock"
NSP=vmmmigP$$
PEER_IP=10.232.0.1 GUEST_IP=10.232.0.2 GUEST_MAC=52:54:00:12:34:58
UP_PORT=5021 DOWN_PORT=5022 VSOCK_PORT=6021
NET_BYTES=$((64 * MIB))
NET_RATE=$((1 * MIB)) # bytes/s each way until the peer is released
VDATA_BYTES=$((4 * MIB))
CID_A=$((1000 + $$ % 50000)) # vhost-vsock cids are global in this kernel: B's is CID_A + 1
CID_B=$((CID_A + 1))

# ---- the network: a bridge per host (tap0 and the uplink up0), joined in namespace P ----
"$IP" netns add "$NSP" && at_exit "'$IP' netns del $NSP"
"$IP" -n "$NSP" link set lo up
"$IP" -n "$NSP" link add br0 type bridge || bail "cannot create a bridge (the bridge module)"
"$IP" -n "$NSP" addr add "$PEER_IP/24" dev br0
for h in A B; do
	ns=$NSA
	[[ $h == B ]] && ns=$NSB
	"$IP" -n "$ns" link add br0 type bridge
	"$IP" -n "$ns" tuntap add dev tap0 mode tap >"$WORK/tap.log" 2>&1 ||
		bail "cannot create tap0 in host $h's namespace ($(cat "$WORK/tap.log")) — the tun module and root are needed"
	"$IP" -n "$ns" link add up0 type veth peer name "from$h" netns "$NSP"
	"$IP" -n "$ns" link set tap0 master br0
	"$IP" -n "$ns" link set up0 master br0
	"$IP" -n "$NSP" link set "from$h" master br0
	for l in br0 tap0 up0; do "$IP" -n "$ns" link set "$l" up; done
	"$IP" -n "$NSP" link set "from$h" up
done
"$IP" -n "$NSP" link set br0 up

# ---- the guest ----
mkdir -p "$WORK/net-overlay"
cat >"$WORK/net-overlay/env" <<EOF
GUEST_MAC=$GUEST_MAC
GUEST_IP=$GUEST_IP
PEER_IP=$PEER_IP
UP_PORT=$UP_PORT
DOWN_PORT=$DOWN_PORT
VSOCK_PORT=$VSOCK_PORT
NET_BYTES=$NET_BYTES
EOF
cat >"$WORK/net-init" <<'GUEST'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /vmmtest/env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/sbin/load-modules >/dev/null 2>&1
iface='' i=0
while [ -z "$iface" ] && [ $i -lt 100 ]; do
	for n in /sys/class/net/*; do
		read -r a <"$n/address"
		[ "$a" = "$GUEST_MAC" ] && iface=${n##*/}
	done
	[ -n "$iface" ] || sleep 0.1
	i=$((i + 1))
done
echo "VMMTEST-NET-IFACE ${iface:-none}"
[ -n "$iface" ] || { poweroff -f; sleep 5; }
ip link set "$iface" up
ip addr add "$GUEST_IP/24" dev "$iface"
# AF_VSOCK: each connection's bytes come back as their sha256
socat "VSOCK-LISTEN:$VSOCK_PORT,fork" EXEC:sha256sum &
ping -c 2 -W 10 "$PEER_IP" >/tmp/ping 2>&1
echo "VMMTEST-NET-READY $(grep 'packets transmitted' /tmp/ping)"
# both ways at once: the pattern goes out and through a fifo to sha256sum, what comes in
# straight into sha256sum (nothing kept). The sender waits for the peer's close (-t), so
# everything it sent has arrived before the guest powers off.
# every 2 s: the kernel's clock (timers run) and the interface's counters
( while :; do sleep 2; echo "VMMTEST-TICK $(cut -d' ' -f1 /proc/uptime) $(grep "$iface:" /proc/net/dev | tr -s ' ')"; done ) &
mkfifo /tmp/txf
sha256sum </tmp/txf >/tmp/txsha &
shapid=$!
( head -c "$NET_BYTES" /dev/urandom | tee /tmp/txf |
	socat -t 120 STDIO "TCP:$PEER_IP:$UP_PORT,connect-timeout=30" >/dev/null; echo $? >/tmp/txrc ) &
txpid=$!
( { socat -u "TCP:$PEER_IP:$DOWN_PORT,connect-timeout=30" STDOUT; echo $? >/tmp/rxrc; } |
	sha256sum >/tmp/rxsha ) &
rxpid=$!
wait $txpid
wait $shapid
wait $rxpid
read -r txsha _ </tmp/txsha
read -r rxsha _ </tmp/rxsha
echo "VMMTEST-NET-TX $(cat /tmp/txrc) $txsha"
echo "VMMTEST-NET-RX $(cat /tmp/rxrc) $rxsha"
poweroff -f
GUEST
"$REPO/scripts/mkinitramfs" overlay "$WORK/net-overlay.cpio" --init "$WORK/net-init" \
	--file "$WORK/net-overlay:/vmmtest" --binary "$SOCAT" || bail "scripts/mkinitramfs overlay failed"
cat "$BASE" "$WORK/net-overlay.cpio" >"$WORK/net-initrd"
head -c "$NET_BYTES" /dev/urandom >"$WORK/down.bin"
sha_of "$WORK/down.bin" DOWN_SHA
head -c "$VDATA_BYTES" /dev/urandom >"$WORK/vdata"
sha_of "$WORK/vdata" VDATA_SHA

# ---- the peer in the network's namespace ----
# Takes the guest's stream on UP_PORT and sends down.bin on DOWN_PORT, each paced at RATE
# bytes/s (and stopping 4 MiB short of the end) until the file "release" exists; writes
# "up BYTES", "down BYTES" and at the end "up_done BYTES SHA256" / "down_done BYTES" (or
# "up_error" / "down_error" WHAT) to peer.status, replaced whole every 0.25 s.
"$IP" netns exec "$NSP" "$PY" - "$WORK" "$PEER_IP" "$UP_PORT" "$DOWN_PORT" "$NET_BYTES" "$NET_RATE" \
	<<'PEER' >"$WORK/peer.log" 2>&1 &
import hashlib, os, socket, sys, threading, time
work, host = sys.argv[1], sys.argv[2]
up_port, down_port, total, rate = (int(a) for a in sys.argv[3:7])
release = os.path.join(work, "release")
cap = total - 4 * 1024 * 1024
moved = {"up": 0, "down": 0}
final = {}

def listener(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024) # the pace reaches the guest
    s.bind((host, port))
    s.listen(1)
    s.settimeout(600)
    return s

def allowed(t0, done):
    """How many bytes may move now: None once released."""
    if os.path.exists(release):
        return None
    return min(cap, int(rate * (time.monotonic() - t0))) - done

def up(ls):
    try:
        c, _ = ls.accept()
        c.settimeout(120)
        h, t0 = hashlib.sha256(), time.monotonic()
        while True:
            n = allowed(t0, moved["up"])
            if n is not None and n <= 0:
                time.sleep(0.05)
                continue
            b = c.recv(65536 if n is None else min(65536, n))
            if not b:
                break
            h.update(b)
            moved["up"] += len(b)
        c.close()
        final["up_done"] = "%d %s" % (moved["up"], h.hexdigest())
    except Exception as e:
        final["up_error"] = repr(e)

def down(ls):
    try:
        with open(os.path.join(work, "down.bin"), "rb") as f:
            data = memoryview(f.read())
        c, _ = ls.accept()
        c.settimeout(120)
        t0, off = time.monotonic(), 0
        while off < len(data):
            n = allowed(t0, off)
            if n is not None and n <= 0:
                time.sleep(0.05)
                continue
            off += c.send(data[off:off + (65536 if n is None else min(65536, n))])
            moved["down"] = off
        c.shutdown(socket.SHUT_WR)
        while c.recv(4096):
            pass
        c.close()
        final["down_done"] = "%d" % off
    except Exception as e:
        final["down_error"] = repr(e)

def write_status():
    tmp = os.path.join(work, "peer.status.tmp")
    with open(tmp, "w") as f:
        f.write("up %d\ndown %d\n" % (moved["up"], moved["down"]))
        for k, v in list(final.items()):
            f.write("%s %s\n" % (k, v))
    os.replace(tmp, os.path.join(work, "peer.status"))

threads = [threading.Thread(target=up, args=(listener(up_port),), daemon=True),
           threading.Thread(target=down, args=(listener(down_port),), daemon=True)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    write_status()
    time.sleep(0.25)
write_status()
PEER
PEER_PID=$!
at_exit "kill -KILL $PEER_PID 2>/dev/null || true"
# The network counts the RARPs from the guest's MAC that reach its bridge (rarp.count).
"$IP" netns exec "$NSP" "$PY" - "$WORK/rarp.count" "$GUEST_MAC" <<'RARP' >"$WORK/rarp.log" 2>&1 &
import os, socket, sys
out, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8035))
s.bind(("br0", 0))
n = 0
def write():
    with open(out + ".tmp", "w") as f:
        f.write("%d\n" % n)
    os.replace(out + ".tmp", out)
write()
while True:
    f = s.recv(2048)
    if len(f) >= 42 and f[6:12] == mac and f[12:14] == b"\x80\x35" and f[22:28] == mac:
        n += 1
        write()
RARP
RARP_PID=$!
at_exit "kill -KILL $RARP_PID 2>/dev/null || true"
# rarps: how many RARPs from the guest's MAC the network has seen.
rarps() {
	local n=0
	[[ -f $WORK/rarp.count ]] && read -r n <"$WORK/rarp.count"
	echo "${n:-0}"
}

declare -A PEER=()
# peer_status: PEER[up], PEER[down], PEER[up_done] ... from peer.status (builtins only).
peer_status() {
	local k v
	PEER=()
	[[ -f $WORK/peer.status ]] || return 0
	while read -r k v; do [[ -n $k ]] && PEER[$k]=$v; done <"$WORK/peer.status"
	return 0
}
# wait_flow UP DOWN SECONDS: until the peer has received more than UP bytes and sent more
# than DOWN; true if it did.
wait_flow() {
	local t=$((SECONDS + $3))
	while ((SECONDS < t)); do
		peer_status
		((${PEER[up]:-0} > $1 && ${PEER[down]:-0} > $2)) && return 0
		nap 0.25
	done
	return 1
}
# show_peer: the peer's status and log, as diagnostics.
show_peer() {
	note "peer: $(tr '\n' ';' <"$WORK/peer.status" 2>/dev/null)"
	show "$WORK/peer.log" "peer log"
}
# net_opts CID: the second guest's device options into NET_OPTS.
net_opts() {
	NET_OPTS=(--kernel "$KERNEL" --initrd "$WORK/net-initrd" --cmdline "$CMDLINE" --cpus 2
		--memory "${VMM_MIGRATE_NET_MEMORY:-512M}" --net "tap=tap0,mac=$GUEST_MAC,vhost=on" --vsock "cid=$1")
}
# vsock_check NAME CID WHEN: a new AF_VSOCK connection from here to the guest (run NAME) at
# CID sends vdata; the guest's server answers with its sha256.
vsock_check() {
	local name=$1 cid=$2 when=$3 rc=0 got='' ok=OK
	: >"$WORK/vreply"
	timeout 90 "$SOCAT" -t 60 - "VSOCK-CONNECT:$cid:$VSOCK_PORT" <"$WORK/vdata" \
		>"$WORK/vreply" 2>"$WORK/vsock.err" || rc=$?
	read -r got _ <"$WORK/vreply" || true
	if [[ $rc != 0 || $got != "$VDATA_SHA" ]]; then
		ok=FAIL
		note "socat: exit $rc, '$(tr '\n' ' ' <"$WORK/vsock.err")'; the guest's answer: '$got'; sent: $VDATA_SHA"
		show_run "$name"
	fi
	result "$ok" "vhost-vsock $when: a new connection from here to cid $cid carries 4 MiB to the guest, whose sha256 of them comes back and matches"
}
# net_marks KEY: the value of the second guest's "KEY value" line on any host's console
# (whole lines only: a console may be read in the middle of one).
net_marks() {
	local f line v=''
	for f in "$WORK"/net*.out; do
		[[ -f $f ]] || continue
		while IFS= read -r line; do
			line=${line//$'\r'/}
			[[ $line == "$1 "* ]] && v=${line#"$1" }
		done <"$f"
	done
	echo "$v"
}

phase "part 2: booting the second guest on host A"
wait_text "$WORK/peer.status" "up 0" 60 || { show_peer; bail "the peer did not start"; }
net_opts "$CID_A"
start net0 "$NSA" run -v "${NET_OPTS[@]}" --api-socket "$WORK/net0.sock"
ok=OK
wait_text "$WORK/net0.out" "VMMTEST-NET-READY" "$BOOT_TIMEOUT" || { ok=FAIL; note "the guest did not get ready"; }
[[ $ok == FAIL ]] || wait_flow $MIB $MIB 60 || { ok=FAIL; note "the streams did not start"; show_peer; }
[[ $ok == OK ]] || show_run net0
result "$ok" "the second guest boots on host A (tap0 in a bridge, vhost=on; vhost-vsock cid $CID_A) and streams over TCP both ways ($(net_marks VMMTEST-NET-READY))"
[[ $ok == OK ]] || done_checked
vsock_check net0 "$CID_A" "before the migrations"

NCUR=net0 NCUR_SOCK=$WORK/net0.sock
NET_HOSTS=("$NSB" "$NSA") NET_ADDRS=("$ADDR_B" "$ADDR_A") NET_CIDS=("$CID_B" "$CID_A")
for ((hop = 1; hop <= ${VMM_MIGRATE_NET_HOPS:-2}; hop++)); do
	k=$(((hop - 1) % 2))
	name=net$hop
	phase "part 2: migration $hop: to host ${LETTERS[k]}"
	peer_status
	up0=${PEER[up]:-0} down0=${PEER[down]:-0}
	rarp0=$(rarps)
	net_opts "${NET_CIDS[k]}"
	start "$name" "${NET_HOSTS[k]}" run -v --incoming "tcp:${NET_ADDRS[k]}:$PORT" "${NET_OPTS[@]}" \
		--api-socket "$WORK/$name.sock"
	wait_text "$WORK/$name.err" "waiting for a migration" 60 || true
	MIG_RC=0
	MIG_OUT=$("$VMM" migrate --api-socket "$NCUR_SOCK" --to "tcp:${NET_ADDRS[k]}:$PORT" --verify 2>&1) || MIG_RC=$?
	exit_of "$NCUR" 30
	SRC_RC=$ERC
	peer_status
	up1=${PEER[up]:-0} down1=${PEER[down]:-0}
	summary=$(grep -E '^(migrated to|paused:)' <<<"$MIG_OUT" | tr '\n' ' ' || true)
	summary="${summary% }$(dest_times "$name")"
	ok=OK
	[[ $MIG_RC == 0 && -n $summary ]] || { ok=FAIL; note "vmm migrate: exit $MIG_RC: $MIG_OUT"; }
	[[ $SRC_RC == 0 ]] || { ok=FAIL; note "the source vmm: $SRC_RC (want exit 0)"; show_run "$NCUR"; }
	v=$(verified "$name") || { ok=FAIL; v="not verified"; note "--verify: the destination did not say it verified the guest's RAM"; show_run "$name"; }
	summary="$summary; $v"
	if [[ -n ${PEER[up_done]-}${PEER[down_done]-}${PEER[up_error]-}${PEER[down_error]-} ]] ||
		((up0 >= NET_BYTES || down0 >= NET_BYTES)); then
		ok=FAIL
		note "the streams were not mid-way when the migration started"
		show_peer
	fi
	# at the destination both streams go on: the network's bridge learned the guest's MAC
	wait_flow $((up1 + MIB)) $((down1 + MIB)) 60 || {
		ok=FAIL
		note "the streams did not go on at the destination (peer at the migration's end: up $up1, down $down1; until released it stops $((NET_BYTES / MIB - 4)) MiB in)"
		show_peer
		stall_dump "$name"
		show_run "$name"
	}
	result "$ok" "part 2, migration $hop (to host ${LETTERS[k]}): vmm migrate exits 0, the source exits 0, both TCP streams on vhost-net go on there (peer: up $((up0 / MIB)) → $((up1 / MIB)) MiB, down $((down0 / MIB)) → $((down1 / MIB)) MiB during it; ${summary:-no summary})"
	[[ $ok == OK ]] || done_checked
	t=$((SECONDS + 20))
	while (($(rarps) < rarp0 + 5 && SECONDS < t)); do nap 0.25; done
	ok=OK
	(($(rarps) == rarp0 + 5)) || { ok=FAIL; note "RARPs from $GUEST_MAC seen by the network: $rarp0 before, $(rarps) after"; show "$WORK/rarp.log" "the RARP counter's log"; }
	result "$ok" "part 2, migration $hop: host ${LETTERS[k]} announced the guest's MAC — the network saw exactly 5 RARPs from it"
	NCUR=$name NCUR_SOCK=$WORK/$name.sock
	vsock_check "$name" "${NET_CIDS[k]}" "after migration $hop (host ${LETTERS[k]}'s cid)"
done

phase "part 2: the streams at full speed"
: >"$WORK/release"
t=$((SECONDS + 240))
while [[ -z $(net_marks VMMTEST-NET-RX) ]] && ((SECONDS < t)); do nap 0.5; done
wait_gone "$PEER_PID" 30 || true
peer_status
tx=$(net_marks VMMTEST-NET-TX) rx=$(net_marks VMMTEST-NET-RX)
ok=OK
[[ $tx == "0 "* && ${PEER[up_done]-} == "$NET_BYTES ${tx#0 }" && -z ${PEER[up_error]-} ]] || ok=FAIL
[[ $ok == OK ]] || { note "guest (exit of its socat, sha256 of what it sent): '$tx'"; show_peer; stall_dump "$NCUR"; show_run "$NCUR"; }
result "$ok" "guest → peer: the 64 MiB the guest sent over TCP across both migrations arrive intact, no reset (sha256 ${tx#0 })"
ok=OK
[[ $rx == "0 $DOWN_SHA" && ${PEER[down_done]-} == "$NET_BYTES" && -z ${PEER[down_error]-} ]] || ok=FAIL
[[ $ok == OK ]] || { note "guest (exit of its socat, sha256 of what it received): '$rx'; sent: $DOWN_SHA"; show_peer; show_run "$NCUR"; }
result "$ok" "peer → guest: the 64 MiB the guest received over TCP across both migrations (vhost-net's writes during them logged and sent) are intact, no reset"
exit_of "$NCUR" 60
ok=OK
[[ $ERC == 0 ]] || { ok=FAIL; note "vmm: $ERC (want exit 0 once the guest powers off)"; show_run "$NCUR"; }
result "$ok" "the second guest powers off at the last destination and its vmm exits 0"
phase "done"
done_checked
