#!/usr/bin/env bash
# Integration suite "api" (TAP): the control API (docs/api.md) and vmm pause|resume|status|
# shutdown on real KVM with Debian's stock kernel, 2 vCPUs and a virtio-blk disk.
#   The guest prints a heartbeat line (VMMTEST-BEAT n) every 100 ms and, every 10 beats,
#   the sha256 of its disk read after dropping its caches. While it runs a driver here:
#   - `vmm status` says running, 2 vCPUs, 512 MiB; `curl --unix-socket ... vm.info` is JSON
#     with the config (cpus, memory, the disk);
#   - bad requests (unknown path, wrong method, malformed JSON, not an object, an unknown
#     field, a duplicate key, a 1 MiB body, not HTTP) get 4xx with {"error": ...}, 40
#     clients at once are all served, one silent client and one stopped mid-header change
#     nothing; the guest keeps beating through all of it;
#   - `vmm pause`: no new heartbeat for 2.5 s, `vmm status` says paused, a second pause
#     exits 7 (409);
#   - `vmm resume`: the heartbeat continues, a disk read after the resume has the image's
#     sha256 (the queues came back), no soft lockup on the console; a second resume exits 7;
#   - `vmm shutdown`: returns once vmm is gone; vmm exits 0 and its socket is unlinked.
#   error paths: --api-socket on a regular file exits 2 and leaves the file; `vmm status`
#   with nobody serving exits 6.
# Usage: tests/integration/api.sh PATH/TO/vmm (meson passes it)
# shellcheck disable=SC2016 # check's conditions are single-quoted: lib.sh evaluates them
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=api.sh
DEFAULT_BOOT_TIMEOUT=240
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_setup "$@"
CURL=$(command -v curl) || bail "curl is missing — install it (scripts/install-deps)"
PY=$(command -v python3) || bail "python3 is missing — install it (scripts/install-deps)"

MIB=$((1024 * 1024))
CMDLINE="console=ttyS0 quiet loglevel=5 panic=-1"
SOCK=$WORK/vm.sock

cat >"$WORK/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/sbin/load-modules >/dev/null 2>&1
i=0; while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
echo "VMMTEST-READY $(cat /sys/block/vda/size 2>/dev/null)"
i=0
while :; do
	echo "VMMTEST-BEAT $i"
	if [ $((i % 10)) -eq 5 ]; then
		echo 3 >/proc/sys/vm/drop_caches
		echo "VMMTEST-VDA-SHA $i $(head -c 4194304 /dev/vda | sha256sum | cut -d' ' -f1)"
	fi
	i=$((i + 1))
	sleep 0.1
done
EOF
BASE=$("$REPO/scripts/mkinitramfs" guest-base) || bail "scripts/mkinitramfs guest-base failed"
"$REPO/scripts/mkinitramfs" overlay "$WORK/overlay.cpio" --init "$WORK/init" || bail "scripts/mkinitramfs overlay failed"
cat "$BASE" "$WORK/overlay.cpio" >"$WORK/initrd"
head -c $((4 * MIB)) /dev/urandom >"$WORK/vda.img"
read -r VDA_SHA _ < <(sha256sum "$WORK/vda.img")

# ---- error paths ----
: >"$WORK/plain-file"
expect_error "--api-socket on a regular file: exit 2 naming it" 2 "$WORK/plain-file" -- \
	run --kernel "$KERNEL" --initrd "$WORK/initrd" --api-socket "$WORK/plain-file"
check "--api-socket on a regular file: the file is left alone" '[[ -f $WORK/plain-file && ! -S $WORK/plain-file ]]'
run_cli status-nobody --expect-status 6 --label "vmm status with nobody serving the socket exits 6" -- \
	status --api-socket "$WORK/nobody.sock"

# ---- the driver: talks to the running vmm while run_guest watches it ----
# R KEY VALUE...: one result line for the checks after the run.
R() { echo "$*" >>"$WORK/results"; }
# last_beat: the last heartbeat number on the guest's console so far (builtins only).
# Only whole lines count: the console may be read in the middle of one.
last_beat() {
	local line n=-1
	[[ -f $WORK/main.out ]] || { echo -1; return 0; }
	while IFS= read -r line; do
		line=${line//$'\r'/}
		[[ $line =~ ^VMMTEST-BEAT\ ([0-9]+)$ ]] && n=${BASH_REMATCH[1]}
	done <"$WORK/main.out"
	echo "$n"
}
# wait_beat N SECONDS: until the guest's heartbeat reaches N; true if it did.
wait_beat() {
	local t=$((SECONDS + $2))
	while (($(last_beat) < $1)) && ((SECONDS < t)); do nap 0.25; done
	(($(last_beat) >= $1))
}
# ctl CMD: `vmm CMD --api-socket SOCK`; R lines with its status and output.
ctl() {
	local rc=0 out
	out=$("$VMM" "$1" --api-socket "$SOCK" 2>&1) || rc=$?
	R "$2-RC" "$rc"
	R "$2-OUT" "${out//$'\n'/ | }"
}
driver() {
	local b0 b1 b2 p
	wait_beat 10 200 || { R DRIVER "the guest never reached heartbeat 10"; "$VMM" shutdown --api-socket "$SOCK" >/dev/null 2>&1; return 0; }
	ctl status STATUS1
	"$CURL" -s -S --max-time 30 --unix-socket "$SOCK" http://localhost/api/v1/vm.info >"$WORK/info.json" 2>>"$WORK/driver.err" || true
	"$CURL" -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST --unix-socket "$SOCK" http://localhost/api/v1/vm.pause >"$WORK/curl405" 2>>"$WORK/driver.err" || true
	"$PY" "$HERE/api_requests.py" "$SOCK" >"$WORK/requests" 2>>"$WORK/driver.err" || R REQUESTS-FAILED "$?"
	b0=$(last_beat)
	wait_beat $((b0 + 5)) 60 || true
	R AFTER-BAD "$b0 $(last_beat)"

	ctl pause PAUSE
	nap 0.5
	b1=$(last_beat)
	nap 2.5
	b2=$(last_beat)
	R PAUSED-BEATS "$b1 $b2"
	ctl status STATUS2
	ctl pause PAUSE2

	ctl resume RESUME
	p=$((b2 + 20))
	wait_beat "$p" 60 || true
	R RESUMED-BEATS "$b2 $(last_beat)"
	ctl resume RESUME2
	ctl status STATUS3
	R RESUME-AT "$b2"
	ctl shutdown SHUTDOWN
	R SOCKET-AFTER "$([[ -e $SOCK ]] && echo present || echo gone)"
}
: >"$WORK/results"
driver &
DRIVER_PID=$!
at_exit "kill $DRIVER_PID 2>/dev/null || true"

run_guest main --expect VMMTEST-READY --label "run \"main\": vmm shut down through the API exits 0" -- \
	run -v --kernel "$KERNEL" --initrd "$WORK/initrd" --cpus 2 --memory 512M \
	--cmdline "$CMDLINE" --disk path="$WORK/vda.img",readonly=on --api-socket "$SOCK"
wait_gone "$DRIVER_PID" 60 || kill "$DRIVER_PID" 2>/dev/null || true
wait "$DRIVER_PID" 2>/dev/null || true

declare -A RES=()
while IFS= read -r line; do RES[${line%% *}]=${line#* }; done <"$WORK/results"
declare -A REQ=()
while IFS= read -r line; do REQ[${line%% *}]=${line#* }; done <"$WORK/requests" 2>/dev/null || true
note "driver results: $(tr '\n' ';' <"$WORK/results")"

check "vmm status while running: exit 0, 'running: 2 vCPUs, 512 MiB anonymous memory, 1 device'" \
	'[[ ${RES[STATUS1-RC]-} == 0 && ${RES[STATUS1-OUT]-} == "running: 2 vCPUs, 512 MiB anonymous memory, 1 device, up "* ]]' \
	"status: rc '${RES[STATUS1-RC]-}', '${RES[STATUS1-OUT]-}'"
INFO=$("$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
c = d["config"]; dev = c["devices"][0]
print(d["state"], c["cpus"], c["memory"]["size"], c["memory"]["kind"], dev["id"], dev["kind"],
      dev["options"]["path"] == sys.argv[2], dev["options"]["readonly"], d["uptime_s"] > 0)' \
	"$WORK/info.json" "$WORK/vda.img" 2>&1) || true
check "curl --unix-socket ... vm.info: JSON with state, cpus, memory and the disk with its options" \
	'[[ $INFO == "running 2 $((512 * MIB)) anonymous virtio-blk0 virtio-blk True True True" ]]' \
	"parsed: '$INFO'; body: $(head -c 600 "$WORK/info.json" 2>/dev/null)"
check "curl -X POST vm.pause: 405" '[[ $(cat "$WORK/curl405" 2>/dev/null) == 405 ]]' \
	"curl: '$(cat "$WORK/curl405" 2>/dev/null)'; $(cat "$WORK/driver.err" 2>/dev/null)"
for want in unknown-path:404 wrong-method:405 get-on-put:405 malformed-json:400 \
	not-an-object:400 unknown-field:400 duplicate-key:400 huge-body:413; do
	k=${want%%:*} s=${want#*:}
	check "bad request $k: $s with a JSON {\"error\": ...} body" \
		'[[ ${REQ[$k]-} == "$s error="* ]]' "seen: '${REQ[$k]-}'; $(cat "$WORK/driver.err" 2>/dev/null)"
done
check "not HTTP at all: closed or 400, nothing else" \
	'[[ ${REQ[not-http]-} == "not-http -" || ${REQ[not-http]-} == "400 "* ]]' "seen: '${REQ[not-http]-}'"
check "40 clients at once: all served (vm.info, running)" '[[ ${REQ[concurrent-info]-} == "40 40" ]]' \
	"seen: '${REQ[concurrent-info]-}'"
check "a silent client and a half-sent vm.shutdown change nothing: still running" \
	'[[ ${REQ[still-running]-} == "200 running" ]]' "seen: '${REQ[still-running]-}'"
read -r a b <<<"${RES[AFTER-BAD]-x x}"
check "the guest keeps running through the bad requests (5 more heartbeats)" \
	'[[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]] && ((b >= a + 5))' "heartbeat $a then $b"

check "vmm pause: exit 0, prints paused" '[[ ${RES[PAUSE-RC]-} == 0 && ${RES[PAUSE-OUT]-} == paused ]]' \
	"rc '${RES[PAUSE-RC]-}', '${RES[PAUSE-OUT]-}'"
read -r a b <<<"${RES[PAUSED-BEATS]-x y}"
check "paused: no heartbeat for 2.5 s" '[[ $a =~ ^[0-9]+$ && $a == "$b" ]]' "heartbeat $a, 2.5 s later $b"
check "vmm status while paused: 'paused: 2 vCPUs, ...'" \
	'[[ ${RES[STATUS2-RC]-} == 0 && ${RES[STATUS2-OUT]-} == "paused: 2 vCPUs, 512 MiB"* ]]' \
	"rc '${RES[STATUS2-RC]-}', '${RES[STATUS2-OUT]-}'"
check "vmm pause of a paused VM: exit 7, says it is already paused (409)" \
	'[[ ${RES[PAUSE2-RC]-} == 7 && ${RES[PAUSE2-OUT]-} == *"409: the VM is already paused"* ]]' \
	"rc '${RES[PAUSE2-RC]-}', '${RES[PAUSE2-OUT]-}'"

check "vmm resume: exit 0, prints resumed" '[[ ${RES[RESUME-RC]-} == 0 && ${RES[RESUME-OUT]-} == resumed ]]' \
	"rc '${RES[RESUME-RC]-}', '${RES[RESUME-OUT]-}'"
read -r a b <<<"${RES[RESUMED-BEATS]-x y}"
check "resumed: the heartbeat goes on (20 more beats)" '[[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]] && ((b >= a + 20))' \
	"heartbeat $a at the resume, then $b"
# The disk reads after the resume: VMMTEST-VDA-SHA lines with a beat past the pause.
RESUME_AT=${RES[RESUME-AT]-999999}
after=0 bad=0
while IFS= read -r line; do
	line=${line//$'\r'/}
	[[ $line == "VMMTEST-VDA-SHA "* ]] || continue
	read -r _ beat sha <<<"$line"
	((beat > RESUME_AT)) || continue
	after=$((after + 1))
	[[ $sha == "$VDA_SHA" ]] || bad=$((bad + 1))
done <"$WORK/main.out"
check "after the resume the guest reads its virtio-blk disk intact (sha256 of 4 MiB, caches dropped)" \
	'((after >= 1 && bad == 0))' "$after reads after beat $RESUME_AT, $bad with a wrong sha256 (want $VDA_SHA)"
check "no soft lockup reported by the guest after the pause (KVM_KVMCLOCK_CTRL, clock frozen)" \
	'! file_has "$WORK/main.out" "soft lockup"'
check "vmm resume of a running VM: exit 7, says it is not paused (409)" \
	'[[ ${RES[RESUME2-RC]-} == 7 && ${RES[RESUME2-OUT]-} == *"409: the VM is running, not paused"* ]]' \
	"rc '${RES[RESUME2-RC]-}', '${RES[RESUME2-OUT]-}'"
check "vmm status after the resume: running" '[[ ${RES[STATUS3-OUT]-} == "running: "* ]]' \
	"'${RES[STATUS3-OUT]-}'"

check "vmm shutdown: exit 0 once vmm is gone, prints 'shut down'" \
	'[[ ${RES[SHUTDOWN-RC]-} == 0 && ${RES[SHUTDOWN-OUT]-} == "shut down" ]]' \
	"rc '${RES[SHUTDOWN-RC]-}', '${RES[SHUTDOWN-OUT]-}'"
check "the API socket is unlinked when vmm exits" '[[ ${RES[SOCKET-AFTER]-} == gone && ! -e $SOCK ]]' \
	"after the shutdown: '${RES[SOCKET-AFTER]-}'"
expect_log "the VM is paused (2 vCPUs held, 1 devices' queues stopped)" "vmm -v logs the pause: every vCPU held, the disk's queues stopped"

finish
