#!/usr/bin/env bash
# Integration suite "vhost" (TAP): virtio-net with its data path in the host kernel
# (vhost-net), on real KVM with Debian's stock kernel. Two boots, each moving 64 MiB of
# random data over TCP guest -> L1, then 64 MiB L1 -> guest, through a tap in this machine,
# checked by sha256:
#   run "vhost-net": --net tap=... (no vhost= key: the default, vhost-net when
#     /dev/vhost-net is usable, as it is in scripts/nested's L1). vmm -v says the data path
#     is in kernel vhost-net, and handled no queue notification itself. With --vsock
#     cid=VSOCK_CID (kernel vhost-vsock) too: then 32 MiB from a guest AF_VSOCK client to a
#     server in this machine, and 32 MiB from a client here to a server in the guest
#     (connecting to the guest's cid), sha256-checked, with vmm's threads off that path too.
#   run "fallback": the same, with VMM_VHOST_NET_DEVICE naming a missing device: vmm warns
#     and runs the userspace data path (vhost=off's), which moves the same data.
# The proof that vmm is off the data path: the context switches of vmm's threads other than
# the vCPUs' (vmm-events, main; /proc/PID/task/*/status) are sampled when each transfer
# starts and ends. With vhost-net they must stay within CTXT_BOUND per 64 MiB; on the
# userspace path the same count must be at least CTXT_USERSPACE_MIN, so the probe is shown
# to see the wake-ups it would have to see. The guest also reports its interrupt counts for
# the device (/proc/irq/N/spurious): the direct interrupt mode (virtio/mmio.h) must leave
# most interrupts handled, and no "nobody cared" (an IRQ disabled as spurious).
# Plus the error paths of vhost=: on with no usable vhost-net (exit 2, a clear message), a
# bad value; --vsock without a usable vhost-vsock, and with the host's cid.
# Usage: tests/integration/vhost.sh PATH/TO/vmm (meson passes it)
#   Needs /dev/kvm (scripts/with-kvm), /dev/vhost-net (scripts/nested loads vhost_net), root
#   (the tap), iproute2, socat, busybox-static (scripts/install-deps).
# Environment: VMM_TEST_TIMEOUT (seconds per vmm run that boots a guest, default 300),
#   VMM_TEST_KEEP=1 keeps the work directory (printed at the end).
# shellcheck disable=SC2016 # check's conditions are single-quoted: lib.sh evaluates them
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=vhost.sh
DEFAULT_BOOT_TIMEOUT=300
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_setup "$@"

IP=/usr/sbin/ip # iproute2: busybox's ip applet has no tuntap
need "$IP" "run scripts/install-deps (Debian package iproute2)"
need /usr/bin/socat "run scripts/install-deps (Debian package socat)"
need /bin/busybox "run scripts/install-deps (Debian package busybox-static)"
((EUID == 0)) || bail "the vhost suite creates a tap interface and needs root — run it as root (scripts/with-kvm's nested L1 runs it as root)"
[[ -c /dev/vhost-net ]] || bail "/dev/vhost-net is missing — load vhost_net (modprobe vhost_net; scripts/nested's L1 does)"

MIB=$((1024 * 1024))
BYTES=$((64 * MIB))
TAP=vmmvtap0
HOST_IP=169.254.11.1
GUEST_IP=169.254.11.2
GUEST_MAC=52:54:00:12:34:57
TX_PORT=5011 # guest -> L1
RX_PORT=5012 # L1 -> guest
VSOCK_CID=$((1000 + $$ % 50000)) # one VM per cid in this machine
VSOCK_BYTES=$((32 * MIB))
VSOCK_TX_PORT=6011 # guest client -> server here
VSOCK_RX_PORT=6012 # client here -> server in the guest
# The guest's AF_VSOCK transport (virtio), dependencies first; loaded by /sbin/load-modules.
VSOCK_MODULES="vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"
# Context switches of vmm's non-vCPU threads allowed per 64 MiB transfer with vhost-net. On
# that path no vmm thread has anything to do: kicks go from KVM's ioeventfd to the kernel's
# vhost worker, interrupts from vhost to KVM's irqfd, the tap is not watched. What may still
# wake one is not per I/O: a config interrupt, the console, and the interrupt watchdog
# (virtio/mmio.h), which looks at each direct-mode device's rings once a second
# (VIRTIO_MMIO_DIRECT_WATCH_MS): CTXT_WATCHED such devices here, vhost-net and vhost-vsock.
# 10 is two orders of magnitude below one wake-up per frame (64 MiB is >= 1000 frames even
# with 64 KiB TSO frames); the bound is 10 + CTXT_WATCHED per second of the transfer.
CTXT_BOUND=10
CTXT_WATCHED=2
# The userspace path wakes vmm-events at least once per burst of frames: the probe must see
# at least this many for 64 MiB, or it is not measuring anything.
CTXT_USERSPACE_MIN=100
CMDLINE="console=ttyS0 quiet loglevel=5 panic=-1"


# ---- guest files ----------------------------------------------------------------------------
OV=$WORK/overlay
mkdir -p "$OV/vmmtest"
cat >"$OV/vmmtest/env" <<EOF
BYTES=$BYTES
GUEST_MAC=$GUEST_MAC
HOST_IP=$HOST_IP
GUEST_IP=$GUEST_IP
TX_PORT=$TX_PORT
RX_PORT=$RX_PORT
VSOCK_BYTES=$VSOCK_BYTES
VSOCK_TX_PORT=$VSOCK_TX_PORT
VSOCK_RX_PORT=$VSOCK_RX_PORT
EOF
cat >"$WORK/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /vmmtest/env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
t() { read -r up _ </proc/uptime; echo "VMMTEST-T $up $*"; }
echo "VMMTEST-BOOT-START"
if /sbin/load-modules; then echo "VMMTEST-MODULES ok"; else echo "VMMTEST-MODULES failed"; fi
iface=''
i=0
while [ -z "$iface" ] && [ $i -lt 50 ]; do
	for n in /sys/class/net/*; do
		read -r a <"$n/address"
		[ "$a" = "$GUEST_MAC" ] && iface=${n##*/}
	done
	[ -n "$iface" ] || sleep 0.2
	i=$((i + 1))
done
echo "VMMTEST-NET-IFACE ${iface:-none}"
[ -n "$iface" ] || { poweroff -f; sleep 5; }
vdev=$(basename "$(readlink "/sys/class/net/$iface/device")")
irq=$(grep " $vdev\$" /proc/interrupts | sed 's/^ *\([0-9]*\):.*/\1/')
echo "VMMTEST-NET-IRQ ${irq:-none} $vdev"
head -c "$BYTES" /dev/urandom >/tmp/pattern
echo "VMMTEST-PATTERN-SHA $(sha256sum </tmp/pattern | cut -d' ' -f1)"
ip link set "$iface" up
ip addr add "$GUEST_IP/24" dev "$iface"
ping -c 3 -W 10 "$HOST_IP" >/tmp/ping 2>&1
echo "VMMTEST-PING $(grep 'packets transmitted' /tmp/ping)"
t ping done
# guest -> L1; the 2 s after socat let the last segments reach L1 inside the sampled window.
echo "VMMTEST-NET-TX-START"
timeout 200 socat -u FILE:/tmp/pattern "TCP:$HOST_IP:$TX_PORT,connect-timeout=30"
rc=$?
sleep 2
echo "VMMTEST-NET-TX-EXIT $rc"
t sent to L1
rm -f /tmp/pattern
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
# vsock, if the VM has a virtio-vsock device (id 19)
if grep -qx 0x0013 /sys/bus/virtio/devices/*/device 2>/dev/null; then
	head -c "$VSOCK_BYTES" /dev/urandom >/tmp/vpattern
	echo "VMMTEST-VSOCK-PATTERN-SHA $(sha256sum </tmp/vpattern | cut -d' ' -f1)"
	echo "VMMTEST-VSOCK-TX-START"
	timeout 200 socat -u FILE:/tmp/vpattern "VSOCK-CONNECT:2:$VSOCK_TX_PORT"
	rc=$?
	sleep 2
	echo "VMMTEST-VSOCK-TX-EXIT $rc"
	rm -f /tmp/vpattern
	( timeout 200 socat -u "VSOCK-LISTEN:$VSOCK_RX_PORT" CREATE:/tmp/vrx
	  echo "VMMTEST-VSOCK-RX-EXIT $?" ) &
	rxpid=$!
	sleep 1
	echo "VMMTEST-VSOCK-LISTENING $VSOCK_RX_PORT"
	wait $rxpid
	echo "VMMTEST-VSOCK-RX-SHA $(sha256sum </tmp/vrx | cut -d' ' -f1) $(wc -c </tmp/vrx)"
	t vsock done
fi
if [ -n "$irq" ]; then
	echo "VMMTEST-IRQ-COUNT $(grep "^ *$irq:" /proc/interrupts | awk '{ s = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; print s }')"
	echo "VMMTEST-IRQ-SPURIOUS $(tr '\n' ' ' </proc/irq/$irq/spurious)"
fi
echo "VMMTEST-ACTION poweroff"
poweroff -f
sleep 5
EOF

BASE=$("$REPO/scripts/mkinitramfs" guest-base --add-modules "$VSOCK_MODULES") || bail "scripts/mkinitramfs guest-base --add-modules '$VSOCK_MODULES' failed"
"$REPO/scripts/mkinitramfs" overlay "$WORK/overlay.cpio" --init "$WORK/init" \
	--file "$OV/vmmtest:/vmmtest" --binary /usr/bin/socat || bail "scripts/mkinitramfs overlay failed"
cat "$BASE" "$WORK/overlay.cpio" >"$WORK/initrd"
head -c "$BYTES" /dev/urandom >"$WORK/l1-data"
sha_of "$WORK/l1-data" RX_SHA
head -c "$VSOCK_BYTES" /dev/urandom >"$WORK/l1-vdata"
sha_of "$WORK/l1-vdata" VRX_SHA
phase "guest files ready"

# ---- error paths (no boot) --------------------------------------------------------------------
B=(run --kernel "$KERNEL" --initrd "$WORK/initrd" --memory 256M)
VMM_VHOST_NET_DEVICE=$WORK/no-vhost-net expect_error \
	"--net vhost=on with no usable vhost-net: exit 2 naming the device and vhost=off" 2 "$WORK/no-vhost-net" -- \
	"${B[@]}" --net tap=vmmvtapx,vhost=on
if file_has "$WORK/err.err" "vhost=off" && file_has "$WORK/err.err" "modprobe vhost_net"; then
	result OK "the vhost=on error says what to do (modprobe vhost_net, or vhost=off)"
else
	show "$WORK/err.err" "vmm stderr"
	result FAIL "the vhost=on error says what to do (modprobe vhost_net, or vhost=off)"
fi
expect_error "--net vhost=maybe: exit 2 naming the value" 2 "maybe" -- \
	"${B[@]}" --net tap=vmmvtapx,vhost=maybe
VMM_VHOST_VSOCK_DEVICE=$WORK/no-vhost-vsock expect_error \
	"--vsock with no usable vhost-vsock: exit 2 naming the device" 2 "$WORK/no-vhost-vsock" -- \
	"${B[@]}" --vsock cid="$VSOCK_CID"
expect_error "--vsock cid=2 (the host's): exit 2 naming it" 2 "cid '2'" -- "${B[@]}" --vsock cid=2
if [[ -e /sys/class/net/vmmvtapx ]]; then
	$IP link del vmmvtapx 2>/dev/null || true
	result FAIL "failed --net runs leave no tap interface behind"
else
	result OK "failed --net runs leave no tap interface behind"
fi

# ---- network set-up in this (L1) machine ----------------------------------------------------
[[ ! -e /sys/class/net/$TAP ]] ||
	bail "interface $TAP exists already — another run of this suite is using it, or one was killed: delete it with $IP link del $TAP"
$IP tuntap add dev "$TAP" mode tap >"$WORK/tap.log" 2>&1 ||
	bail "cannot create tap $TAP ($(cat "$WORK/tap.log")) — the tun module and root are needed"
at_exit "$IP link del $TAP"
$IP addr add "$HOST_IP/24" dev "$TAP"
$IP link set "$TAP" up

# ctxt_sample PID VAR: VAR := the context switches (voluntary + involuntary) of PID's threads
# other than its vCPUs, then "name=count ..." per thread in VAR_threads, and the time in
# microseconds in VAR_us. Builtins only.
ctxt_sample() {
	local t comm line n=0 per='' c
	for t in /proc/"$1"/task/*; do
		{ IFS= read -r comm <"$t/comm"; } 2>/dev/null || continue
		[[ $comm == vmm-vcpu* ]] && continue
		c=0
		while IFS= read -r line; do
			case $line in
			voluntary_ctxt_switches:* | nonvoluntary_ctxt_switches:*) c=$((c + ${line##*[[:space:]]})) ;;
			esac
		done <"$t/status" 2>/dev/null || true
		n=$((n + c))
		per+="$comm=$c "
	done
	printf -v "$2" '%s' "$n"
	printf -v "$2_threads" '%s' "$per"
	printf -v "$2_us" '%s' "${EPOCHREALTIME/./}"
}
# vmm_pid VAR: VAR := the pid of the running vmm (the only one in this machine). Builtins only.
vmm_pid() {
	local p comm
	printf -v "$1" '%s' ''
	for p in /proc/[0-9]*; do
		{ IFS= read -r comm <"$p/comm"; } 2>/dev/null || continue
		[[ $comm == vmm ]] && { printf -v "$1" '%s' "${p#/proc/}"; return 0; }
	done
}

# follow NAME: follows run NAME's console (no process per poll); samples vmm's non-vCPU
# context switches when each transfer starts and ends (into NAME.ctxt: "tx-start N", ...),
# and starts the L1 -> guest sender when the guest listens.
follow() {
	local name=$1 fd buf='' chunk line pid='' v v_threads v_us tx='' vtx='' deadline=$((SECONDS + BOOT_TIMEOUT))
	exec {fd}<"$WORK/$name.out"
	while ((SECONDS < deadline)); do
		if IFS= read -r -u "$fd" chunk; then
			line=$buf$chunk
			buf=''
			line=${line%$'\r'}
			case $line in
			VMMTEST-NET-TX-START*)
				vmm_pid pid
				ctxt_sample "$pid" v
				echo "tx-start $v $v_us $v_threads"
				;;
			VMMTEST-NET-TX-EXIT*)
				ctxt_sample "$pid" v
				echo "tx-end $v $v_us $v_threads"
				;;
			VMMTEST-NET-LISTENING*)
				[[ -n $pid ]] || vmm_pid pid
				ctxt_sample "$pid" v
				echo "rx-start $v $v_us $v_threads"
				timeout 200 socat -u "FILE:$WORK/l1-data" "TCP:$GUEST_IP:$RX_PORT,connect-timeout=30" \
					>"$WORK/$name.socat-tx.log" 2>&1 &
				tx=$!
				;;
			VMMTEST-NET-RX-EXIT*)
				ctxt_sample "$pid" v
				echo "rx-end $v $v_us $v_threads"
				;;
			VMMTEST-VSOCK-TX-START*)
				ctxt_sample "$pid" v
				echo "vtx-start $v $v_us $v_threads"
				;;
			VMMTEST-VSOCK-TX-EXIT*)
				ctxt_sample "$pid" v
				echo "vtx-end $v $v_us $v_threads"
				;;
			VMMTEST-VSOCK-LISTENING*)
				ctxt_sample "$pid" v
				echo "vrx-start $v $v_us $v_threads"
				timeout 200 socat -u "FILE:$WORK/l1-vdata" "VSOCK-CONNECT:$VSOCK_CID:$VSOCK_RX_PORT" \
					>"$WORK/$name.vsock-tx.log" 2>&1 &
				vtx=$!
				;;
			VMMTEST-VSOCK-RX-EXIT*)
				ctxt_sample "$pid" v
				echo "vrx-end $v $v_us $v_threads"
				;;
			VMMTEST-ACTION*) break ;;
			esac
		else
			buf+=$chunk
			nap 0.2
		fi
	done >"$WORK/$name.ctxt"
	[[ -z $tx ]] || wait "$tx" || echo "L1 sender exit status $?" >>"$WORK/$name.socat-tx.log"
	[[ -z $vtx ]] || wait "$vtx" || echo "vsock client exit status $?" >>"$WORK/$name.vsock-tx.log"
}

# transfer_run NAME LABEL VMM_ARGS...: a boot that moves the data both ways; the TAP points
# for the run, both directions and the guest's interrupt report. Leaves CTXT[NAME-tx/rx].
declare -A CTXT=() CTXT_SECS=()
transfer_run() {
	local name=$1 label=$2 rx_pid f_pid got s e d
	shift 2
	rm -f "$WORK/$name.received"
	timeout "$BOOT_TIMEOUT" socat -u "TCP-LISTEN:$TX_PORT,bind=$HOST_IP,reuseaddr" "CREATE:$WORK/$name.received" \
		>"$WORK/$name.socat-rx.log" 2>&1 &
	rx_pid=$!
	: >"$WORK/$name.out"
	follow "$name" &
	f_pid=$!
	run_guest "$name" --limit "$BOOT_TIMEOUT" --expect-status 0 --expect VMMTEST-ACTION \
		--label "run \"$name\" ($label): the guest powers off, vmm exits 0" -- "$@"
	phase "run \"$name\" done"
	guest_timeline
	wait_gone "$f_pid" 20 || kill "$f_pid" 2>/dev/null || true
	wait "$f_pid" 2>/dev/null || true
	wait_gone "$rx_pid" 10 || kill "$rx_pid" 2>/dev/null || true
	wait "$rx_pid" 2>/dev/null || true

	P=${MARK[VMMTEST-PATTERN-SHA]-}
	got=''
	[[ -f $WORK/$name.received ]] && sha_of "$WORK/$name.received" got
	check "run \"$name\": guest -> L1, 64 MiB over TCP arrive intact (sha256)" \
		'[[ $P =~ ^[0-9a-f]{64}$ && $got == "$P" && ${MARK[VMMTEST-NET-TX-EXIT]-} == 0 ]]' \
		"guest's socat: '${MARK[VMMTEST-NET-TX-EXIT]-}'; received $(stat -c %s "$WORK/$name.received" 2>/dev/null || echo no) bytes, sha256 '$got'; guest's pattern '$P'; ping: '${MARK[VMMTEST-PING]-}'" \
		"L1 receiver: $(tr '\n' ' ' <"$WORK/$name.socat-rx.log")"
	got=${MARK[VMMTEST-NET-RX-SHA]-}
	check "run \"$name\": L1 -> guest, 64 MiB over TCP arrive intact (sha256)" \
		'[[ $got == "$RX_SHA $BYTES" ]]' \
		"guest's sha256 and size of what it received: '$got'; sent: $RX_SHA $BYTES; guest's listener: '${MARK[VMMTEST-NET-RX-EXIT]-}'" \
		"L1 sender: $(tr '\n' ' ' <"$WORK/$name.socat-tx.log" 2>/dev/null)"

	# context switches of vmm's non-vCPU threads during each transfer
	local -A at=() th=() us=()
	local k n t rest
	while read -r k n t rest; do
		at[$k]=$n
		us[$k]=$t
		th[$k]=$rest
	done <"$WORK/$name.ctxt"
	for d in tx rx vtx vrx; do
		[[ -n ${at[$d-start]+x} ]] || continue
		s=${at[$d-start]-} e=${at[$d-end]-}
		if [[ $s =~ ^[0-9]+$ && $e =~ ^[0-9]+$ ]]; then
			CTXT[$name-$d]=$((e - s))
			CTXT_SECS[$name-$d]=$(((${us[$d-end]:-0} - ${us[$d-start]:-0} + 999999) / 1000000))
		else
			CTXT[$name-$d]=''
		fi
		echo "#   $name $d: non-vCPU context switches at start: ${th[$d-start]-?}; at end: ${th[$d-end]-?}"
	done

	# the device's interrupts in the guest: handled, not disabled as spurious
	local sp=${MARK[VMMTEST-IRQ-SPURIOUS]-} cnt=${MARK[VMMTEST-IRQ-COUNT]-} count='' unhandled=''
	[[ $sp =~ count\ ([0-9]+) ]] && count=${BASH_REMATCH[1]}
	[[ $sp =~ unhandled\ ([0-9]+) ]] && unhandled=${BASH_REMATCH[1]}
	check "run \"$name\": the net device's interrupts ($cnt) mostly found work (unhandled $unhandled of the last $count), none disabled as spurious" \
		'[[ $cnt =~ ^[0-9]+$ && $count =~ ^[0-9]+$ && $unhandled =~ ^[0-9]+$ ]] && ((cnt > 0 && unhandled * 2 <= count)) && ! file_has "$WORK/$name.out" "nobody cared"' \
		"/proc/irq/N/spurious: '$sp'; interrupts: '$cnt'; irq: '${MARK[VMMTEST-NET-IRQ]-}'"
}

# counters NAME VAR_IOEV VAR_MMIO: vmm -v's exit line for virtio-net0.
net_counters() {
	local line
	printf -v "$2" '%s' ''
	printf -v "$3" '%s' ''
	while IFS= read -r line; do
		line=${line//$'\r'/}
		if [[ $line =~ ^vmm:\ virtio-net0:\ ([0-9]+)\ queue\ notifications\ by\ ioeventfd,\ ([0-9]+)\ by\ MMIO\ exit ]]; then
			printf -v "$2" '%s' "${BASH_REMATCH[1]}"
			printf -v "$3" '%s' "${BASH_REMATCH[2]}"
		fi
	done <"$WORK/$1.err"
}

VM=(run -v --no-reboot --kernel "$KERNEL" --initrd "$WORK/initrd" --cpus 2 --memory 512M --cmdline "$CMDLINE")

# ---- run "vhost-net" ----------------------------------------------------------------------------
# the vsock server in this machine, listening before the boot
timeout "$BOOT_TIMEOUT" socat -u "VSOCK-LISTEN:$VSOCK_TX_PORT" "CREATE:$WORK/vsock.received" \
	>"$WORK/vsock-rx.log" 2>&1 &
vrx_pid=$!
transfer_run vhost-net "default vhost: kernel vhost-net, and vhost-vsock" "${VM[@]}" \
	--net tap="$TAP",mac="$GUEST_MAC" --vsock cid="$VSOCK_CID"
wait_gone "$vrx_pid" 10 || kill "$vrx_pid" 2>/dev/null || true
wait "$vrx_pid" 2>/dev/null || true
VP=${MARK[VMMTEST-VSOCK-PATTERN-SHA]-}
got=''
[[ -f $WORK/vsock.received ]] && sha_of "$WORK/vsock.received" got
check "run \"vhost-net\": vsock, a guest client sends 32 MiB to a server here (cid 2) intact (sha256)" \
	'[[ $VP =~ ^[0-9a-f]{64}$ && $got == "$VP" && ${MARK[VMMTEST-VSOCK-TX-EXIT]-} == 0 ]]' \
	"guest's socat: '${MARK[VMMTEST-VSOCK-TX-EXIT]-}'; received $(stat -c %s "$WORK/vsock.received" 2>/dev/null || echo no) bytes, sha256 '$got'; guest's '$VP'" \
	"server here: $(tr '\n' ' ' <"$WORK/vsock-rx.log")"
got=${MARK[VMMTEST-VSOCK-RX-SHA]-}
check "run \"vhost-net\": vsock, a client here sends 32 MiB to a server in the guest (cid $VSOCK_CID) intact (sha256)" \
	'[[ $got == "$VRX_SHA $VSOCK_BYTES" ]]' \
	"guest's sha256 and size: '$got'; sent $VRX_SHA $VSOCK_BYTES; guest's listener: '${MARK[VMMTEST-VSOCK-RX-EXIT]-}'" \
	"client here: $(tr '\n' ' ' <"$WORK/vhost-net.vsock-tx.log" 2>/dev/null)"
expect_log "virtio-net0: data path in kernel vhost-net" "run \"vhost-net\": vmm -v says the data path is in kernel vhost-net"
ioev='' mmio=''
net_counters vhost-net ioev mmio
check "run \"vhost-net\": vmm handled no queue notification itself (ioeventfd: $ioev, MMIO exit: $mmio)" \
	'[[ $ioev == 0 && $mmio == 0 ]]' "vmm -v's line for virtio-net0 says ioeventfd '$ioev', MMIO '$mmio' (want 0 and 0)"
for d in tx rx vtx vrx; do
	v=${CTXT[vhost-net-$d]-}
	secs=${CTXT_SECS[vhost-net-$d]-0}
	bound=$((CTXT_BOUND + CTXT_WATCHED * secs))
	case $d in
	tx) dir="guest -> L1" ;;
	rx) dir="L1 -> guest" ;;
	vtx) dir="vsock guest -> here" ;;
	vrx) dir="vsock here -> guest" ;;
	esac
	check "run \"vhost-net\": $dir, vmm's non-vCPU threads took $v context switches for the transfer (at most $bound for its $secs s: off the data path)" \
		'[[ $v =~ ^[0-9]+$ ]] && ((v <= bound))' \
		"samples: $(tr '\n' ';' <"$WORK/vhost-net.ctxt")"
done

# ---- run "fallback" ------------------------------------------------------------------------------
VMM_VHOST_NET_DEVICE=$WORK/no-vhost-net transfer_run fallback "vhost-net unusable: userspace" \
	"${VM[@]}" --net tap="$TAP",mac="$GUEST_MAC"
expect_log "kernel vhost-net is not usable" "run \"fallback\": vmm warns that vhost-net is not usable and runs the userspace data path"
net_counters fallback ioev mmio
check "run \"fallback\": the userspace data path took the queue notifications (ioeventfd: $ioev, MMIO exit: $mmio)" \
	'[[ $ioev =~ ^[0-9]+$ && $mmio == 0 ]] && ((ioev > 0))' "vmm -v's line for virtio-net0: ioeventfd '$ioev', MMIO '$mmio'"
for d in tx rx; do
	v=${CTXT[fallback-$d]-}
	dir="guest -> L1"
	[[ $d == rx ]] && dir="L1 -> guest"
	check "run \"fallback\": $dir on the userspace path, vmm's non-vCPU threads took $v context switches (at least $CTXT_USERSPACE_MIN: the probe sees them)" \
		'[[ $v =~ ^[0-9]+$ ]] && ((v >= CTXT_USERSPACE_MIN))' \
		"samples: $(tr '\n' ';' <"$WORK/fallback.ctxt")"
done

phase "done"
finish
