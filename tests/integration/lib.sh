# Shared helpers for the integration suites (tests/integration/*.sh). Source it, do not run it:
#   PROG=NAME.sh                  # the suite's name in messages (set before sourcing)
#   . "$HERE/lib.sh"              # also sources scripts/lib/common.sh (REPO, VMM_CACHE, ...)
#   lib_setup "$@"                # preconditions, $VMM, $KERNEL, $WORK, exit trap
#   ... result OK|FAIL "description" ...
#   finish                        # prints the TAP plan and exits 1 if anything failed
# Provides:
#   TAP: result, note, show, bail, finish (plan printed last: "1..N").
#   Preconditions (failures, never skips: a skipped integration test proves nothing): vmm
#     binary, kernel from scripts/fetch-kernel, usable /dev/kvm.
#   WORK (fresh directory, removed at exit unless VMM_TEST_KEEP=1; at_exit CMD adds clean-up
#     commands run before that), run_vmm, marker, count_marker, describe_rc, note_run,
#     check_exit, expect_error.
#   Processes without blocking for ever on one stuck in the kernel: nap (sleep without a
#     process), gone, wait_gone, stop_proc, proc_threads; record_threads (with gdb's
#     backtraces and KVM's counters: record_kvm_activity, kvm_stats) for a run past its limit.
#   Failures of scripts/nested's emulated machine, reported to it (report_nested_fault):
#     check_triple_fault, check_guest_stall; a vmm stuck in the kernel (stop_proc).
# Environment: VMM_TEST_TIMEOUT (seconds per vmm run that boots a guest; default 180, or
#   the suite's DEFAULT_BOOT_TIMEOUT set before sourcing), VMM_TEST_KEEP=1 keeps the work
#   directory (printed at the end), KVM_DEBUGFS (KVM's debugfs directory, for tests).
# shellcheck shell=bash

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	echo "lib.sh: this file is a library; source it from a suite in tests/integration/" >&2
	exit 2
fi

# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"

# shellcheck disable=SC2034 # used by the suites
BOOT_TIMEOUT=${VMM_TEST_TIMEOUT:-${DEFAULT_BOOT_TIMEOUT:-180}}
ERR_TIMEOUT=30

# ---- TAP -------------------------------------------------------------------------------------
N=0
NFAIL=0
DIAG=()
bail() {
	echo "Bail out! $*"
	exit 1
}
note() { DIAG+=("$@"); }
# result OK|FAIL DESCRIPTION: prints one TAP line (plus the collected diagnostics on failure).
result() {
	N=$((N + 1))
	if [[ $1 == OK ]]; then
		echo "ok $N - $2"
	else
		NFAIL=$((NFAIL + 1))
		echo "not ok $N - $2"
		local l
		for l in "${DIAG[@]}"; do printf '# %s\n' "$l"; done
	fi
	DIAG=()
}
# show FILE LABEL [LINES]: the last LINES (default 40) lines of FILE as diagnostics
# (printable, without CRs).
show() {
	local f=$1 label=$2 lines=${3:-40} l
	if [[ ! -s $f ]]; then
		note "$label: (empty)"
		return
	fi
	note "$label (last $lines lines of $(wc -l <"$f")):"
	while IFS= read -r l; do note "  $l"; done < <(tail -n "$lines" "$f" | tr -d '\r' | tr -c '[:print:]\n\t' '?')
}
# finish: the TAP plan, then exit 1 if any test failed.
finish() {
	echo "1..$N"
	if ((NFAIL)); then
		echo "# $NFAIL of $N failed"
		exit 1
	fi
	exit 0
}

# ---- preconditions, work directory, clean-up --------------------------------------------------
CLEANUP_CMDS=()
# at_exit CMD: run CMD (with eval) at exit, before the work directory is removed.
at_exit() { CLEANUP_CMDS+=("$1"); }
cleanup() {
	local p c
	for p in $(jobs -p); do kill -KILL "$p" 2>/dev/null || true; done
	for c in "${CLEANUP_CMDS[@]}"; do eval "$c" || true; done
	if [[ -n ${VMM_TEST_KEEP:-} ]]; then
		echo "# work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}

# lib_work: WORK (removed at exit) and nap's fifo; lib_setup does it, after its checks.
lib_work() {
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmm-${PROG%.sh}.XXXXXX")
	trap cleanup EXIT
	mkfifo "$WORK/nap.fifo"
	exec {NAP_FD}<>"$WORK/nap.fifo"
}

# lib_setup "$@": the suite's arguments (meson passes the vmm binary). Sets VMM, KERNEL, WORK.
lib_setup() {
	local why
	(($# == 1)) || bail "usage: $PROG PATH/TO/vmm (meson passes it)"
	VMM=$1
	[[ -x $VMM ]] || bail "vmm binary '$VMM' is missing or not executable — build it: meson compile -C build"
	kernel_fetched || bail "kernel $VMM_KERNEL_VERSION is not in $VMM_CACHE — run scripts/fetch-kernel (scripts/test does)"
	# shellcheck disable=SC2034 # used by the suites
	KERNEL=$(kernel_vmlinuz)
	if ! why=$(kvm_usable /dev/kvm); then
		bail "no usable KVM: $why — run the integration tests through scripts/with-kvm (e.g. scripts/with-kvm meson test -C build --suite integration, as scripts/test does); it boots a nested L1 VM with KVM when the host has none"
	fi
	lib_work
}

# ---- running vmm -----------------------------------------------------------------------------

# nap SECONDS: sleep without starting a process (a read with a timeout on a private fifo).
nap() { read -r -t "$1" -u "$NAP_FD" _ || true; }

# gone PID: the process has exited (a zombie counts: it only waits to be reaped). A zombie
# main thread whose other threads still run (one stuck in the kernel, say) is not gone:
# `wait` would block on it. Builtins only.
gone() {
	local stat='' tasks
	{ IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
	stat=${stat##*) }
	[[ ${stat:0:1} == Z ]] || return 1
	tasks=(/proc/"$1"/task/*)
	((${#tasks[@]} <= 1))
}
# wait_gone PID SECONDS: polls until PID is gone; true if it went. Not `wait`, and not
# timeout(1)'s own wait: a process stuck in the kernel would block either of them for ever.
wait_gone() {
	local n=0
	while ! gone "$1" && ((n < 4 * $2)); do
		nap 0.25
		n=$((n + 1))
	done
	gone "$1"
}
# proc_threads PID: one line per thread of PID: tid, state, wchan and kernel stack.
proc_threads() {
	local t st stack w
	for t in /proc/"$1"/task/*; do
		st='' w='' stack=''
		{ IFS= read -r st <"$t/stat"; } 2>/dev/null || continue
		st=${st##*) }
		{ IFS= read -r w <"$t/wchan"; } 2>/dev/null || true
		stack=$(tr '\n' ' ' <"$t/stack" 2>/dev/null | cut -c1-400) || true
		echo "  thread ${t##*/}: state ${st:0:1} wchan=$w $stack"
	done
}
# record_threads PID: what a process past its time limit is doing, before it is stopped:
# each thread's state and kernel stack, and with gdb (if installed) their user-space
# backtraces — a vCPU thread waiting on a lock, say, shows only there; then what KVM did
# for its VMs meanwhile (record_kvm_activity). A diagnosis: nothing it finds or fails to find
# may end the suite under set -e/pipefail, so callers need no guard (harness checks it).
record_threads() {
	echo "threads at the time limit (state, wchan, kernel stack):"
	proc_threads "$1"
	if command -v gdb >/dev/null; then
		echo "user-space backtraces (gdb):"
		{ timeout -k 5 90 gdb -p "$1" -batch -nx -ex 'thread apply all bt 12' </dev/null 2>&1 |
			grep -E '^(Thread |#[0-9])' | cut -c1-200 | head -n 150; } || true
	fi
	record_kvm_activity "$1" || true
}

KVM_STATS=(exits irq_injections nmi_injections irq_window_exits nmi_window_exits halt_exits
	halt_wakeup io_exits mmio_exits pf_taken pf_fixed insn_emulation signal_exits)
# kvm_stats PID: "NAME VALUE" for each of KVM_STATS, summed over PID's VMs and vCPUs (KVM's
# debugfs files, readable by root when debugfs is mounted; nothing otherwise). Builtins only.
kvm_stats() {
	local d f v
	declare -A sum=()
	for d in "${KVM_DEBUGFS:-/sys/kernel/debug/kvm}/$1"-*/; do
		[[ -d $d ]] || continue
		for f in "${KVM_STATS[@]}"; do
			v=''
			{ IFS= read -r v <"$d$f"; } 2>/dev/null || continue
			[[ $v =~ ^[0-9]+$ ]] && sum[$f]=$((${sum[$f]:-0} + v))
		done
	done
	for f in "${KVM_STATS[@]}"; do
		[[ -n ${sum[$f]+x} ]] && echo "$f ${sum[$f]}"
	done
	return 0
}
# record_kvm_activity PID: how KVM's counters for PID's VMs moved over 2 s (a guest CPU that
# makes no progress while KVM runs it shows here: no exits at all, or a loop of one kind —
# or vmm's fault, an interrupt storm, say), and inside scripts/nested's L1 a sample of the
# VM exits themselves (tracefs; the L1 is the suite's own, so its tracing is ours to use).
record_kvm_activity() {
	local before after line name t=/sys/kernel/tracing traced=''
	before=$(kvm_stats "$1")
	[[ -n $before ]] || return 0
	if [[ -n ${VMM_NESTED_FAULT_REPORT:-} && -w $t/events/kvm/kvm_exit/enable ]] &&
		{ echo 0 >"$t/tracing_on" && : >"$t/trace" && echo 1 >"$t/events/kvm/kvm_exit/enable" &&
			echo 1 >"$t/events/kvm/kvm_inj_virq/enable" && echo 1 >"$t/tracing_on"; } 2>/dev/null; then
		traced=1
	fi
	nap 2
	[[ -n $traced ]] && { echo 0 >"$t/tracing_on"; } 2>/dev/null
	after=$(kvm_stats "$1")
	declare -A was=()
	while read -r name line; do was[$name]=$line; done <<<"$before"
	echo "KVM counters of its VMs over 2 s (debugfs; +increase, total):"
	while read -r name line; do
		echo "  $name +$((line - ${was[$name]:-0})) ($line)"
	done <<<"$after"
	if [[ -n $traced ]]; then
		echo "VM exits and injected interrupts over those 2 s (tracefs, last 40 of them):"
		{ grep -v '^#' "$t/trace" 2>/dev/null | tail -n 40 | cut -c1-200 | sed 's/^ */  /'; } || true
		{
			echo 0 >"$t/events/kvm/kvm_exit/enable"
			echo 0 >"$t/events/kvm/kvm_inj_virq/enable"
			: >"$t/trace"
		} 2>/dev/null
	fi
	return 0
}

# stop_proc PID: SIGTERM, SIGKILL after 10 s; sets STOPPED ("" if PID exited, or how it
# ended: "killed" / "unkillable" with its threads' kernel stacks in STOP_NOTE).
STOPPED='' STOP_NOTE=''
stop_proc() {
	STOPPED='' STOP_NOTE=''
	kill -TERM "$1" 2>/dev/null || true
	wait_gone "$1" 10 && return 0
	STOPPED=killed
	kill -KILL "$1" 2>/dev/null || true
	wait_gone "$1" 20 && return 0
	STOPPED=unkillable
	STOP_NOTE="process $1 did not die within 20 s of SIGKILL (stuck in the kernel); its threads:"$'\n'$(proc_threads "$1")
	# In scripts/nested's L1 that is the (emulated) L1 kernel's failure: say so, and the L1 is
	# stopped and the suite rerun in a fresh one. On a real KVM host it is a failure like any.
	report_nested_fault "$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")"$'\n'"$STOP_NOTE"
}

# report_nested_fault TEXT: inside scripts/nested's L1, tells it that the emulated machine
# failed (it stops the L1 and reruns the suite in a fresh one, at most twice); elsewhere nothing.
report_nested_fault() {
	[[ -n ${VMM_NESTED_FAULT_REPORT:-} ]] || return 0
	printf '%s: %s\n' "$PROG" "$1" >>"$VMM_NESTED_FAULT_REPORT" || true
}

# run_vmm NAME TIMEOUT ARGS...: runs vmm with stdin from /dev/null, output in NAME.out/.err,
# exit status in RC (124: timed out and stopped, like timeout(1); >128 otherwise: killed by
# signal RC-128; "unkillable": still stuck in the kernel 20 s after SIGKILL — the suite goes
# on, STOP_NOTE says where its threads were, and note_run shows it).
RC=0
run_vmm() {
	local name=$1 t=$2 pid deadline
	shift 2
	echo "$VMM $*" >"$WORK/$name.cmd"
	rm -f "$WORK/$name.threads"
	RC=0
	STOPPED='' STOP_NOTE=''
	"$VMM" "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err" &
	pid=$!
	deadline=$((SECONDS + t))
	local copied=$SECONDS
	while ! gone "$pid" && ((SECONDS < deadline)); do
		nap 0.25
		((SECONDS - copied < 5)) || { live_copy "$name"; copied=$SECONDS; }
	done
	live_copy "$name" done
	if ! gone "$pid"; then
		record_threads "$pid" >"$WORK/$name.threads" 2>&1
		stop_proc "$pid"
		if [[ $STOPPED == unkillable ]]; then
			RC=unkillable
			return 0
		fi
		wait "$pid" 2>/dev/null || true
		RC=124
		check_guest_stall "$name"
		check_guest_xsave "$name"
		return 0
	fi
	# (bash's own "Killed"/"Segmentation fault" notice goes to /dev/null: RC says it)
	{ wait "$pid" || RC=$?; } 2>/dev/null
	# reboot=t: the guest triple-faults on purpose to reboot
	[[ " $* " == *" reboot=t"* ]] || check_triple_fault "$name"
	((RC == 0)) || check_guest_xsave "$name"
}

# live_copy NAME [done]: inside scripts/nested's L1 (VMM_NESTED_LIVE_DIR set), a copy of run
# NAME's output so far (guest console, vmm's log), which the host shows if the whole L1 dies
# (a kernel crash there takes /tmp with it); every 5 s while it runs, gone once it ended.
# Builtins only: a process costs ~0.4 s in the emulated L1.
live_copy() {
	local dir=${VMM_NESTED_LIVE_DIR:-} f content
	[[ -n $dir && -d $dir ]] || return 0
	for f in out err; do
		if [[ ${2:-} == done ]]; then
			: >"$dir/$1.$f" 2>/dev/null || true
			continue
		fi
		content=''
		{ IFS= read -r -d '' content <"$WORK/$1.$f"; } 2>/dev/null || true
		((${#content} <= 8000)) || content=${content: -8000}
		printf '%s' "$content" >"$dir/$1.$f" 2>/dev/null || true
	done
}

# check_guest_xsave NAME: run NAME failed (or hit its limit) after its guest's kernel found
# its CPU's XSAVE state inconsistent at boot ("XSAVE consistency problem, dumping leaves": the
# sizes in CPUID leaf 0xD disagree with each other for the XCR0 the kernel set). vmm passes
# KVM's leaf 0xD unchanged and KVM computes its sizes from the guest's XCR0, so on a working
# CPU the same kernel, vmm and options get the same answer every boot; under nested KVM on
# QEMU 7.2 TCG the warning came now and then (and on every boot with single-threaded TCG),
# each time followed by a guest that stalled — once with a vCPU looping on nested page faults
# for an address 4 GiB above its RAM while delivering a page fault. The emulated CPU, so
# inside scripts/nested's L1 it is reported as its failure (the suite is rerun in a fresh L1).
# On real KVM it fails the run's checks like any other failure.
check_guest_xsave() {
	file_has "$WORK/$1.out" 'XSAVE consistency problem' || return 0
	report_nested_fault "run \"$1\": the L2 guest's kernel found its CPU's XSAVE state inconsistent at boot ('XSAVE consistency problem', CPUID leaf 0xD), and the run then failed (RC $RC)"
}

# check_triple_fault NAME: a guest of run NAME (vmm -v) that triple-faulted, with no panic
# message, broke its CPU state. No test here makes a guest do that on purpose. Under nested
# KVM on QEMU 7.2 TCG it was seen a few times, mostly under heavy virtio-net interrupt load
# (once right after a virtio-blk read), next to L1 oopses in __svm_vcpu_run with a broken
# GS base right after VMRUN: the emulated SVM, not vmm. So inside scripts/nested's L1 it is
# reported as the emulated machine's failure (the suite is rerun in a fresh L1); with the
# vCPU state vmm logged, so that a pattern would show. On real KVM it fails the run's checks
# like any other crash.
check_triple_fault() {
	local line state=''
	file_has "$WORK/$1.err" 'the guest triple-faulted' || return 0
	while IFS= read -r line; do
		[[ $line == *"rip="* ]] && state+=$'\n'"  $line"
	done <"$WORK/$1.err"
	report_nested_fault "run \"$1\": the L2 guest triple-faulted (no panic message); guest console's last line: '$(tail -n1 "$WORK/$1.out" | tr -d '\r')'; vCPU state:${state:- (not logged)}"
}

# check_guest_stall NAME: run NAME hit its time limit with its guest's kernel reporting a CPU
# that made no progress (RCU stall, soft or hard lockup) while every vCPU thread of vmm was
# inside KVM_RUN (gdb's record at the limit; an ioctl with request 44672 = 0xAE80): vmm held no
# vCPU back, KVM ran them and a guest CPU still went nowhere. Under nested KVM on QEMU 7.2 TCG
# that was seen after heavy virtio-net load, with the stalled CPU taking no timer tick and not
# answering the NMI backtrace request for minutes — the emulated SVM, like the triple faults
# of check_triple_fault: reported to scripts/nested (the suite is rerun in a fresh L1), with
# the record. On real KVM it fails the run's checks like any other hang.
check_guest_stall() {
	local name=$1 line stall='' thread='' frame0='' vcpus=0 in_run=0 counting='' counters=''
	[[ -f $WORK/$name.out && -f $WORK/$name.threads ]] || return 0
	while IFS= read -r line; do
		case $line in
		*"detected stalls on CPUs"* | *"self-detected stall on CPU"* | *"soft lockup - CPU#"* | *"hard LOCKUP"*)
			line=${line//$'\r'/}
			stall=${line:0:160}
			break
			;;
		esac
	done <"$WORK/$name.out"
	[[ -n $stall ]] || return 0
	# gdb: 'Thread N (... "vmm-vcpuK"):', then '#0  __GI___ioctl (fd=.., request=...=44672)'
	# with libc's debug symbols, '#0  0x... in ioctl () from ...libc.so.6' and
	# '#1  0x... in vcpu_thread (...)' without (vcpu_thread's own ioctl is KVM_RUN).
	while IFS= read -r line; do
		case $line in
		"Thread "*'"vmm-vcpu'*) thread=vcpu vcpus=$((vcpus + 1)) ;;
		"Thread "*) thread='' ;;
		"#0 "*) frame0=$line ;;
		"#1 "*)
			if [[ $thread == vcpu && $frame0 == *ioctl* ]] &&
				[[ ($frame0 == *"request="* && $frame0 == *"=44672"[,\)]*) || ($frame0 != *"request="* && $line == *" vcpu_thread "*) ]]; then
				in_run=$((in_run + 1))
			fi
			;;
		"KVM counters"*) counting=1 ;;
		"  exits "* | "  irq_injections "* | "  nmi_injections "* | "  halt_exits "*)
			if [[ -n $counting ]]; then counters+=" ${line#  }"; fi
			;;
		esac
	done <"$WORK/$name.threads"
	((vcpus > 0 && in_run == vcpus)) || return 0
	report_nested_fault "run \"$name\": the L2 guest stalled ('$stall') while all $vcpus vCPU threads of vmm were inside KVM_RUN${counters:+; KVM counters over 2 s:$counters}"
}

# marker NAME KEY: value of the guest's "KEY value" line (first one).
marker() { tr -d '\r' <"$WORK/$1.out" | sed -n "s/^$2 //p" | head -n1; }
count_marker() { tr -d '\r' <"$WORK/$1.out" | grep -c "^$2" || true; }

# load_markers NAME: parses the guest's output once, with bash builtins only (every process
# costs ~0.4 s in scripts/nested's emulated L1): MARK[KEY] is the value of the first
# "KEY value" line for each KEY starting with VMMTEST- (CRs removed); MARK_LINES holds all
# those lines in order.
declare -A MARK=()
MARK_LINES=()
load_markers() {
	local line key
	MARK=()
	MARK_LINES=()
	[[ -f $WORK/$1.out ]] || return 0
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line//$'\r'/}
		[[ $line == VMMTEST-* ]] || continue
		MARK_LINES+=("$line")
		[[ $line == *" "* ]] || continue
		key=${line%% *}
		[[ -n ${MARK[$key]+x} ]] || MARK[$key]=${line#* }
	done <"$WORK/$1.out"
}

# file_has FILE STRING: FILE contains STRING (grep -qF, without a process).
file_has() {
	local content=''
	[[ -f $1 ]] || return 1
	IFS= read -r -d '' content <"$1" || true
	[[ $content == *"$2"* ]]
}
# file_has_line FILE PREFIX: a line of FILE starts with PREFIX (grep -q "^PREFIX", no process).
file_has_line() {
	local content=''
	[[ -f $1 ]] || return 1
	IFS= read -r -d '' content <"$1" || true
	[[ $'\n'$content == *$'\n'"$2"* ]]
}

describe_rc() {
	case $1 in
	unkillable) echo "stuck in the kernel: not gone 20 s after SIGKILL" ;;
	124) echo "timed out" ;;
	12[5-9]) echo "exit status $1" ;;
	*) if (($1 > 128)); then echo "killed by signal $(($1 - 128)) ($(kill -l $(($1 - 128)) 2>/dev/null || echo '?'))"; else echo "exit status $1"; fi ;;
	esac
}

# A vmm run that booted a guest: shows its command, status and output on failure.
note_run() {
	local name=$1
	note "command: $(cat "$WORK/$name.cmd")"
	note "vmm: $(describe_rc "$RC")"
	show "$WORK/$name.out" "guest console (vmm stdout)"
	show "$WORK/$name.err" "vmm stderr"
	local l
	if [[ $RC == unkillable && -n $STOP_NOTE ]]; then
		while IFS= read -r l; do note "$l"; done <<<"$STOP_NOTE"
	fi
	if [[ -s $WORK/$name.threads ]]; then
		while IFS= read -r l; do note "$l"; done <"$WORK/$name.threads"
	fi
	if file_has "$WORK/$name.err" 'triple-faulted'; then
		note "the guest triple-faulted (no panic message: its CPU state broke). Under nested KVM on"
		note "QEMU 7.2 TCG this was seen under heavy virtio-net load (see check_triple_fault: there it"
		note "is reported to scripts/nested and the suite rerun); on real KVM it is a bug to report."
	fi
}

# check_exit NAME WANT LABEL: vmm exited with WANT, the guest reached its final action
# (printed "VMMTEST-ACTION ...") and did not panic.
check_exit() {
	local name=$1 want=$2 label=$3 ok=OK
	[[ $RC == "$want" ]] || { ok=FAIL; note "expected exit status $want"; }
	if [[ -z $(marker "$name" VMMTEST-ACTION) ]]; then
		ok=FAIL
		note "the guest's init did not reach its final action"
	fi
	if tr -d '\r' <"$WORK/$name.out" | grep -q 'Kernel panic'; then
		ok=FAIL
		note "the guest kernel panicked"
	fi
	[[ $ok == OK ]] || note_run "$name"
	result "$ok" "$label"
}

# expect_error LABEL WANT [PATH_IN_MESSAGE] -- VMM_ARGS...: vmm exits quickly with WANT and
# a "vmm: error: ..." message on stderr (naming PATH_IN_MESSAGE if given), never by a signal.
expect_error() {
	local label=$1 want=$2 path=$3 ok=OK
	shift 4
	run_vmm err "$ERR_TIMEOUT" "$@"
	if [[ $RC != "$want" ]]; then
		ok=FAIL
		note "expected exit status $want, got $(describe_rc "$RC")"
	fi
	if ! file_has_line "$WORK/err.err" 'vmm: error: '; then
		ok=FAIL
		note "stderr has no 'vmm: error: <what> — <what to do>' line"
	elif [[ -n $path ]] && ! file_has "$WORK/err.err" "$path"; then
		ok=FAIL
		note "the message does not name '$path'"
	fi
	if [[ $ok == FAIL ]]; then
		note "command: $(cat "$WORK/err.cmd")"
		show "$WORK/err.err" "vmm stderr"
		show "$WORK/err.out" "vmm stdout"
	fi
	result "$ok" "$label"
}
