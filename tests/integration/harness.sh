#!/usr/bin/env bash
# Suite "harness" (TAP, no KVM needed): the integration suites' process helpers in lib.sh —
# run_vmm's time limit, SIGTERM then SIGKILL, exit statuses, gone/wait_gone, and the report
# of a guest triple fault to scripts/nested (VMM_NESTED_FAULT_REPORT) — with
# stand-in programs instead of vmm; and scripts/nested's own verdicts on an L1 that stops
# (QEMU TCG, no KVM needed). (A process stuck in the kernel cannot be made on purpose;
# that path is the same code with one more step, and it reports through proc_threads, which
# is checked on a live process here.)
# Usage: tests/integration/harness.sh (meson runs it in the unit suite's wake: scripts/test)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PROG=harness.sh
# shellcheck source=tests/integration/lib.sh
. "$HERE/lib.sh"
lib_work

# stand_in NAME BODY: a bash script $WORK/NAME running BODY, used as VMM.
stand_in() {
	printf '#!/bin/bash\n%s\n' "$2" >"$WORK/$1"
	chmod +x "$WORK/$1"
}

# expect LABEL WANT_RC WANT_STOPPED MAX_SECONDS: checks the last run_vmm.
expect() {
	local label=$1 want=$2 stopped=$3 max=$4 ok=OK
	[[ $RC == "$want" ]] || { ok=FAIL; note "RC '$RC', want '$want'"; }
	[[ $STOPPED == "$stopped" ]] || { ok=FAIL; note "STOPPED '$STOPPED', want '$stopped'"; }
	((SECONDS - t0 <= max)) || { ok=FAIL; note "took $((SECONDS - t0)) s, want at most $max"; }
	result "$ok" "$label"
}

stand_in exits3 'echo out; echo err >&2; exit 3'
t0=$SECONDS; VMM=$WORK/exits3 run_vmm exits3 10 run
expect "an exit status comes back as RC" 3 '' 3
if [[ $(<"$WORK/exits3.out") == out && $(<"$WORK/exits3.err") == err ]]; then
	result OK "stdout and stderr land in NAME.out and NAME.err"
else
	result FAIL "stdout and stderr land in NAME.out and NAME.err"
fi

stand_in sleeper 'exec sleep 100'
t0=$SECONDS; VMM=$WORK/sleeper run_vmm sleeper 1
expect "past its limit a program is stopped with SIGTERM: RC 124" 124 '' 4
if grep -q "^  thread [0-9]*: state" "$WORK/sleeper.threads" 2>/dev/null; then
	result OK "what it was doing at the limit is kept (its threads' states and stacks)"
else
	note "sleeper.threads: $(head -c 300 "$WORK/sleeper.threads" 2>/dev/null)"
	result FAIL "what it was doing at the limit is kept (its threads' states and stacks)"
fi

stand_in stubborn "trap '' TERM; while :; do sleep 0.1; done"
t0=$SECONDS; VMM=$WORK/stubborn run_vmm stubborn 1
expect "one that ignores SIGTERM is killed 10 s later: RC 124, STOPPED=killed" 124 killed 15

stand_in signalled 'kill -SEGV $$'
t0=$SECONDS; VMM=$WORK/signalled run_vmm signalled 10
expect "death by a signal is RC 128+N" $((128 + 11)) '' 3

# A triple fault (vmm -v's lines) is reported to scripts/nested, with the vCPU state; one on
# purpose (reboot=t) is not. Here the report goes to a file of ours.
stand_in triple 'echo "[ 1.0] last words"; echo "vmm: vCPU 0: the guest triple-faulted; resetting it" >&2
echo "vmm: vCPU 0: rip=0xffffffff81000000 rsp=0x0 gs.base=0x0" >&2'
export VMM_NESTED_FAULT_REPORT=$WORK/fault-report
VMM=$WORK/triple run_vmm triple 10 run --cmdline "console=ttyS0"
report=''
[[ -f $VMM_NESTED_FAULT_REPORT ]] && report=$(<"$VMM_NESTED_FAULT_REPORT")
if [[ $report == *"the L2 guest triple-faulted"*"last words"*"rip=0xffffffff81000000"* ]]; then
	result OK "a guest triple fault is reported as the nested machine's failure, with the vCPU state"
else
	note "report: '$report'"
	result FAIL "a guest triple fault is reported as the nested machine's failure, with the vCPU state"
fi
rm -f "$VMM_NESTED_FAULT_REPORT"
VMM=$WORK/triple run_vmm triple 10 run --cmdline "console=ttyS0 reboot=t"
if [[ -e $VMM_NESTED_FAULT_REPORT ]]; then
	result FAIL "a triple fault on purpose (reboot=t) is not reported"
else
	result OK "a triple fault on purpose (reboot=t) is not reported"
fi
unset VMM_NESTED_FAULT_REPORT

sleep 30 &
pid=$!
if gone "$pid"; then
	result FAIL "a running process does not count as gone"
else
	result OK "a running process does not count as gone"
fi
# SIGKILL: a SIGTERM sent between the fork and sleep's exec was lost once (the sleep ran its
# 30 s and the check failed) — most likely taken by the handler bash installs for its EXIT
# trap, which the child keeps until exec. What is tested here is wait_gone, not the signal.
kill -KILL "$pid"
t0=$SECONDS
if wait_gone "$pid" 5; then
	result OK "wait_gone: a process that exits is gone within the limit"
else
	result FAIL "wait_gone: a process that exits is gone within the limit"
fi
wait "$pid" 2>/dev/null || true

sleep 30 &
pid=$!
threads=$(proc_threads "$pid")
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
if [[ $threads == "  thread $pid: state "[RSD]" wchan="* ]]; then
	result OK "proc_threads lists a live process's thread with its state"
else
	note "got: $threads"
	result FAIL "proc_threads lists a live process's thread with its state"
fi

# scripts/nested itself, with a small L1 (~5-8 s per boot under TCG): CMD's exit status comes
# back; a machine reset nobody in L1 asked for (here the i8042 reset line, pulsed through
# /dev/port, as an emulator fault would) is an L1 failure, rerun (here at most once), then
# given up with 125; a reboot that CMD asked for is CMD's failure, not rerun.
NESTED=$HERE/../../scripts/nested
nested() {
	local name=$1
	shift
	t0=$SECONDS
	RC=0
	"$NESTED" --memory 1024 --timeout 150 --reruns 1 -- bash -c "$*" >"$WORK/$name.out" 2>"$WORK/$name.err" || RC=$?
}
nested exit7 'echo hello from L1; exit 7'
if [[ $RC == 7 && $(<"$WORK/exit7.out") == "hello from L1" ]]; then
	result OK "scripts/nested: CMD's output and exit status come back"
else
	note "RC $RC; stdout: $(<"$WORK/exit7.out"); stderr: $(tail -n 5 "$WORK/exit7.err")"
	result FAIL "scripts/nested: CMD's output and exit status come back"
fi
nested reset 'sleep 1; printf "\xfe" | dd of=/dev/port bs=1 seek=100 count=1 conv=notrunc status=none; sleep 60'
if [[ $RC == 125 && $(grep -c 'L1 FAILURE: the L1 VM reset itself.*i8042 reset line' "$WORK/reset.err") == 2 ]] &&
	grep -q '^nested: RERUN' "$WORK/reset.err"; then
	result OK "scripts/nested: an L1 machine reset nobody asked for is an L1 failure: said, rerun once, then exit 125"
else
	note "RC $RC; stderr: $(grep '^nested:' "$WORK/reset.err")"
	result FAIL "scripts/nested: an L1 machine reset nobody asked for is an L1 failure: said, rerun once, then exit 125"
fi
# A frozen L1 (its heartbeat loop stopped here, as a hung emulator stops everything) is
# stopped after VMM_NESTED_FROZEN_AFTER s, in the rerun too: a stale pid once left the rerun's
# QEMU running and scripts/nested waiting for it until the whole budget ran out.
freeze='for s in $(pgrep -x sleep); do pp=$(ps -o ppid= -p "$s" | tr -d " ")
	[[ -n $pp && $(ps -o ppid= -p "$pp" | tr -d " ") == 1 ]] && kill -STOP "$pp"; done; sleep 100'
VMM_NESTED_FROZEN_AFTER=8 nested frozen "$freeze"
if [[ $RC == 125 && $(grep -c 'L1 FAILURE: the L1 VM froze' "$WORK/frozen.err") == 2 ]] && ((SECONDS - t0 < 90)); then
	result OK "scripts/nested: a frozen L1 is stopped, in the rerun too, well within the budget"
else
	note "RC $RC after $((SECONDS - t0)) s; stderr: $(grep '^nested:' "$WORK/frozen.err")"
	result FAIL "scripts/nested: a frozen L1 is stopped, in the rerun too, well within the budget"
fi
nested reboot 'sleep 1; echo b >/proc/sysrq-trigger; sleep 60'
if [[ $RC == 125 ]] && grep -q 'a process in L1 asked its kernel to reboot' "$WORK/reboot.err" &&
	! grep -q '^nested: RERUN' "$WORK/reboot.err"; then
	result OK "scripts/nested: a reboot that CMD asked for is said as such and not rerun"
else
	note "RC $RC; stderr: $(grep '^nested:' "$WORK/reboot.err")"
	result FAIL "scripts/nested: a reboot that CMD asked for is said as such and not rerun"
fi

finish
