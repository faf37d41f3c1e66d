# The integration suites' library (tests/integration/*.sh): a test says what it runs and what
# it expects — guest, time limit, exit status, markers — and this file does the rest: TAP
# output, running vmm without ever blocking on a stuck process, what a failed run shows, and
# the reports of a failure of scripts/nested's emulated machine (whose failure is whose:
# docs/testing.md). Source it, do not run it:
#   PROG=NAME.sh                  # the suite's name in messages (set before sourcing)
#   . "$HERE/lib.sh"              # also sources scripts/lib/common.sh (REPO, VMM_CACHE, ...)
#   lib_setup "$@"                # preconditions, $VMM, $KERNEL, $WORK, exit trap
#   run_guest NAME --limit 120 --expect-status 0 --expect VMMTEST-ACTION -- run --kernel ...
#   check "what must hold" '[[ ${MARK[VMMTEST-X]-} == 42 ]]' "diagnostic if not"
#   finish                        # prints the TAP plan and exits 1 if anything failed
# Provides:
#   Tests: run_guest (a vmm run that boots a guest, one TAP point for its end), run_cli (a vmm
#     run with no guest), expect_error (a vmm run that must fail with a status and a message),
#     then about the last run_guest: check, expect_mark, expect_log, check_sigterm_stop,
#     guest_timeline; MARK[KEY] holds the guest's "VMMTEST-KEY value" lines.
#   TAP: result, note, show, bail, finish (plan printed last: "1..N").
#   Preconditions (failures, never skips: a skipped integration test proves nothing): vmm
#     binary, kernel from scripts/fetch-kernel, usable /dev/kvm; lib_kernel2: the second guest
#     kernel (KERNEL2, 6.12) and its base initramfs (BASE2).
#   WORK (fresh directory, removed at exit unless VMM_TEST_KEEP=1; at_exit CMD adds clean-up
#     commands run before that), run_vmm, marker, count_marker, load_markers, describe_rc,
#     note_run, note_run_once.
#   Processes without blocking for ever on one stuck in the kernel: nap (sleep without a
#     process), gone, wait_gone, stop_proc, proc_threads; record_threads (with gdb's
#     backtraces and KVM's counters: record_kvm_activity, kvm_stats) for a run past its limit.
#   Failures of scripts/nested's emulated machine, reported to it (report_nested_fault):
#     check_triple_fault, check_guest_xsave; a vmm stuck in the kernel (stop_proc). And
#     check_guest_stall, a diagnosis of a stalled guest shown with the run (not reported).
#   phase (a TAP comment; with PHASE_LIMIT set, a watchdog that reports a phase that runs
#     too long: phase_report, and the suite's phase_report_more).
# Environment: VMM_TEST_TIMEOUT (seconds per vmm run that boots a guest; default 180, or
#   the suite's DEFAULT_BOOT_TIMEOUT set before sourcing), VMM_TEST_KEEP=1 keeps the work
#   directory (printed at the end), KVM_DEBUGFS (KVM's debugfs directory, for tests).
# Every process started costs ~0.4 s in scripts/nested's emulated L1, so what runs after each
# poll or per line uses bash builtins.
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
		local l report=("not ok $N - $2")
		for l in "${DIAG[@]}"; do report+=("# $l"); done
		printf '%s\n' "${report[@]}"
		# and on stderr, which meson --print-errorlogs shows: the log of a run that a
		# rerun replaced (scripts/nested) keeps why it failed
		printf '%s\n' "${report[@]}" >&2
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
	# phase's watchdogs first, reaped here: bash would print "Killed" for each of them
	if ((${#PHASE_WDS[@]})); then
		kill -KILL "${PHASE_WDS[@]}" 2>/dev/null || true
		wait "${PHASE_WDS[@]}" 2>/dev/null || true
	fi
	for p in $(jobs -p); do kill -KILL "$p" 2>/dev/null || true; done
	for c in "${CLEANUP_CMDS[@]}"; do eval "$c" || true; done
	if [[ -n ${VMM_TEST_KEEP:-} ]]; then
		echo "# work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}

# lib_work: WORK (removed at exit), nap's fifo and phase's zero (T0); lib_setup does it, after its checks.
lib_work() {
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmm-${PROG%.sh}.XXXXXX")
	trap cleanup EXIT
	mkfifo "$WORK/nap.fifo"
	exec {NAP_FD}<>"$WORK/nap.fifo"
	T0=$SECONDS # phase's zero
}

# lib_setup "$@": the suite's arguments (meson passes the vmm binary). Sets VMM, KERNEL, WORK, T0.
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

# phase MSG: a TAP comment with the seconds since lib_setup. A suite that sets PHASE_LIMIT
# (seconds) also gets a watchdog per phase: a phase still running after PHASE_LIMIT writes,
# once, what the suite's processes are doing into meson's log (stderr) — phase_report, then
# the suite's own phase_report_more if it defines one — so a suite that goes silent until
# meson's time limit says where it stood. A watchdog whose phase has ended ends silently; it
# is never killed: a bash subshell signalled right after its fork can run the EXIT trap
# (cleanup: every job killed, WORK removed), as this one did in the harness suite.
PHASE_N=0 PHASE_WDS=()
phase() {
	local n
	PHASE_N=$((PHASE_N + 1))
	echo "# [$((SECONDS - T0)) s] $*"
	[[ -n ${PHASE_LIMIT:-} ]] || return 0
	echo "$PHASE_N" >"$WORK/phase.now"
	{
		nap "$PHASE_LIMIT"
		{ IFS= read -r n <"$WORK/phase.now"; } 2>/dev/null || exit 0
		[[ $n == "$PHASE_N" ]] && phase_report "$*" >&2
	} &
	PHASE_WDS+=("$!")
}
# phase_report PHASE: the suite's processes (its session) and any process in the D state:
# state, wait channel, kernel stack; the kernel log's last lines; then phase_report_more.
# A diagnosis: it never fails.
phase_report() {
	local p st sid mine
	echo "$PROG: phase '$1' has run more than $PHASE_LIMIT s; this session's processes:"
	{ IFS= read -r st <"/proc/$$/stat"; } 2>/dev/null && st=${st##*) } && read -r _ _ _ mine _ <<<"$st"
	for p in /proc/[0-9]*; do
		{ IFS= read -r st <"$p/stat"; } 2>/dev/null || continue
		st=${st##*) } && read -r _ _ _ sid _ <<<"$st"
		[[ $sid == "${mine:-}" || ${st:0:1} == D ]] || continue
		echo "  ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-120): state ${st:0:1}" \
			"wchan=$(cat "$p/wchan" 2>/dev/null) $(tr '\n' ' ' <"$p/stack" 2>/dev/null | cut -c1-300)"
	done 2>/dev/null
	echo "the kernel's log, last lines:"
	dmesg 2>/dev/null | tail -n 10 || true
	if declare -F phase_report_more >/dev/null; then phase_report_more || true; fi
}

# need PATH HINT: bails out unless PATH is an executable; HINT says how to get it.
need() {
	[[ -x $1 ]] || bail "$1 not found — $2"
}

# sha_of FILE VAR: sets VAR to FILE's sha256.
sha_of() {
	local h _
	read -r h _ < <(sha256sum "$1")
	printf -v "$2" '%s' "$h"
}

# lib_kernel2: KERNEL2 and BASE2, the second guest kernel (VMM_KERNEL2_VERSION, 6.12 from
# bookworm-backports: scripts/lib/common.sh) and its base initramfs.
lib_kernel2() {
	kernel2_fetched || bail "kernel $VMM_KERNEL2_VERSION is not in $(kernel2_cache) — scripts/test fetches it (by hand: bash -c '. scripts/lib/common.sh && fetch_kernel2')"
	# shellcheck disable=SC2034 # used by the suites
	KERNEL2=$(with_kernel2 kernel_vmlinuz)
	# shellcheck disable=SC2034 # used by the suites
	BASE2=$(with_kernel2 "$REPO/scripts/mkinitramfs" guest-base) || bail "scripts/mkinitramfs guest-base failed for kernel $VMM_KERNEL2_VERSION"
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
	local before after line name d counts t=/sys/kernel/tracing traced=''
	before=$(kvm_stats "$1")
	[[ -n $before ]] || return 0
	if [[ -n ${VMM_NESTED_FAULT_REPORT:-} && -w $t/events/kvm/kvm_exit/enable ]] &&
		{ echo 0 >"$t/tracing_on" && : >"$t/trace" && echo 1 >"$t/events/kvm/kvm_exit/enable" &&
			echo 1 >"$t/events/kvm/kvm_inj_virq/enable" && echo 1 >"$t/tracing_on"; } 2>/dev/null; then
		# the timer's and the MSRs' side too (a vCPU whose LAPIC timer stopped shows here)
		{ echo 1 >"$t/events/kvm/kvm_msr/enable" && echo 1 >"$t/events/kvm/kvm_apic_accept_irq/enable"; } 2>/dev/null || true
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
	for d in "${KVM_DEBUGFS:-/sys/kernel/debug/kvm}/$1"-*/vcpu*/; do
		[[ -f ${d}tsc-offset ]] || continue
		echo "  $(basename "$d"): tsc-offset $(cat "${d}tsc-offset" 2>/dev/null)"
	done
	if [[ -n $traced ]]; then
		echo "VM exits, MSR accesses and interrupts over those 2 s (tracefs), per thread: how many, the last 20:"
		counts=$(grep -v '^#' "$t/trace" 2>/dev/null | awk '{ print $1 }' | sort | uniq -c || true)
		printf '%s\n' "$counts" | sed 's/^ */  /'
		while read -r _ line; do
			[[ -n $line ]] || continue
			echo "  -- $line"
			{ awk -v who="$line" '$1 == who' "$t/trace" | tail -n 20 | cut -c1-200 | sed 's/^ */    /'; } || true
		done <<<"$counts"
		{
			for name in kvm_exit kvm_inj_virq kvm_msr kvm_apic_accept_irq; do
				echo 0 >"$t/events/kvm/$name/enable"
			done
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
	# The emulated machine's failure inside scripts/nested's L1 (docs/testing.md).
	report_nested_fault "$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")"$'\n'"$STOP_NOTE"
}

# report_nested_fault TEXT: inside scripts/nested's L1, tells it that the emulated machine
# failed (it stops the L1 and reruns the suite in a fresh one); elsewhere nothing. Only the
# kinds docs/testing.md lists are reported.
report_nested_fault() {
	[[ -n ${VMM_NESTED_FAULT_REPORT:-} ]] || return 0
	printf '%s: %s\n' "$PROG" "$1" >>"$VMM_NESTED_FAULT_REPORT" || true
}

# run_vmm [--stop-at MARKER COUNT] NAME TIMEOUT ARGS...: runs vmm with stdin from /dev/null,
# output in NAME.out/.err, exit status in RC (124: timed out and stopped, like timeout(1); >128
# otherwise: killed by signal RC-128; "unkillable": still stuck in the kernel 20 s after
# SIGKILL — the suite goes on, STOP_NOTE says where its threads were, and note_run shows it).
# With --stop-at, vmm is stopped with SIGTERM once the guest printed COUNT lines starting with
# MARKER (REACHED=1). Whenever it was stopped: TERM_RC is the status it exited with and
# TERM_SECS how long it took after SIGTERM. Past the limit, what its threads were doing is
# kept in NAME.threads. Then the failures of the emulated machine are looked for (below).
RC=0 REACHED='' TERM_RC='' TERM_SECS=''
run_vmm() {
	local stop_marker='' stop_count=0
	if [[ $1 == --stop-at ]]; then
		stop_marker=$2 stop_count=$3
		shift 3
	fi
	local name=$1 t=$2 pid deadline copied t0
	shift 2
	echo "$VMM $*" >"$WORK/$name.cmd"
	rm -f "$WORK/$name.threads" "$WORK/$name.diagnosis"
	RC=0 REACHED='' TERM_RC='' TERM_SECS=''
	STOPPED='' STOP_NOTE=''
	"$VMM" "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err" &
	pid=$!
	echo "$pid" >"$WORK/$name.pid"	# for helpers that signal it meanwhile
	deadline=$((SECONDS + t))
	copied=$SECONDS
	while ! gone "$pid" && ((SECONDS < deadline)); do
		if [[ -n $stop_marker ]] && (($(count_lines "$WORK/$name.out" "$stop_marker") >= stop_count)); then
			REACHED=1
			break
		fi
		nap 0.25
		((SECONDS - copied < 5)) || { live_copy "$name"; copied=$SECONDS; }
	done
	live_copy "$name" done
	# (a vmm that ended by itself may still have shown the marker COUNT times)
	if [[ -n $stop_marker && -z $REACHED ]] && (($(count_lines "$WORK/$name.out" "$stop_marker") >= stop_count)); then
		REACHED=1
	fi
	if ! gone "$pid"; then
		if [[ -z $REACHED ]]; then
			record_threads "$pid" >"$WORK/$name.threads" 2>&1
			# vmm run's own account (SIGUSR2): each vCPU's registers and interrupt
			# state, each device's queues and interrupt line, into NAME.err
			[[ ${1-} == run ]] && kill -USR2 "$pid" 2>/dev/null && nap 1
		fi
		t0=$SECONDS
		stop_proc "$pid"
		TERM_SECS=$((SECONDS - t0))
		if [[ $STOPPED == unkillable ]]; then
			RC=unkillable
			return 0
		fi
		TERM_RC=0
		{ wait "$pid" || TERM_RC=$?; } 2>/dev/null
		RC=$TERM_RC
		if [[ -z $REACHED ]]; then
			RC=124
			check_guest_stall "$name"
			check_wedged_vcpu "$name"
		fi
	else
		# (bash's own "Killed"/"Segmentation fault" notice goes to /dev/null: RC says it)
		{ wait "$pid" || RC=$?; } 2>/dev/null
	fi
	# reboot=t: the guest triple-faults on purpose to reboot
	[[ " $* " == *" reboot=t"* ]] || check_triple_fault "$name"
	[[ $RC == 0 || -n $REACHED ]] || check_guest_xsave "$name"
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
# its CPU's XSAVE state inconsistent at boot ("XSAVE consistency problem, dumping leaves"):
# inside scripts/nested's L1, the emulated machine's failure (docs/testing.md).
check_guest_xsave() {
	file_has "$WORK/$1.out" 'XSAVE consistency problem' || return 0
	report_nested_fault "run \"$1\": the L2 guest's kernel found its CPU's XSAVE state inconsistent at boot ('XSAVE consistency problem', CPUID leaf 0xD), and the run then failed (RC $RC)"
}

# check_triple_fault NAME: a guest of run NAME (vmm -v) that triple-faulted, with no panic
# message (none does here on purpose but with reboot=t): inside scripts/nested's L1, the
# emulated machine's failure (docs/testing.md), reported with the vCPU state vmm logged.
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
# inside KVM_RUN (gdb's record at the limit; an ioctl with request 44672 = 0xAE80): vmm held
# no vCPU back. A diagnosis, written to NAME.diagnosis and shown with the failed run; not
# reported to scripts/nested: never seen with QEMU as the L2's VMM, so ours (docs/testing.md).
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
	echo "run \"$name\": the L2 guest stalled ('$stall') while all $vcpus vCPU threads of vmm were inside KVM_RUN${counters:+; KVM counters over 2 s:$counters}" >"$WORK/$name.diagnosis"
}

# check_wedged_vcpu NAME: run NAME hit its limit and vmm's SIGUSR2 dump (run_vmm sends it at
# the limit) shows a vCPU wedged on a page fault at its own instruction pointer: cr2 = rip,
# KVM injecting exception 14, the interrupts sent to it never taken. Seen with QEMU as the
# L2's VMM too (docs/testing.md), so reported to scripts/nested. Builtins only.
check_wedged_vcpu() {
	local line n wedged=''
	local -A at=()
	[[ -f $WORK/$1.err ]] || return 0
	while IFS= read -r line; do
		line=${line//$'\r'/}
		if [[ $line =~ ^vmm:\ vCPU\ ([0-9]+):\ rip=(0x[0-9a-f]+)\ .*\ cr2=(0x[0-9a-f]+)\  ]]; then
			[[ ${BASH_REMATCH[2]} == "${BASH_REMATCH[3]}" ]] && at[${BASH_REMATCH[1]}]=${line:0:220}
		elif [[ $line =~ ^vmm:\ vCPU\ ([0-9]+):\ interrupts\ .*KVM\ injecting:\ exception\ 14$ ]]; then
			n=${BASH_REMATCH[1]}
			[[ -n ${at[$n]-} ]] && wedged+=$'\n'"  ${at[$n]}"$'\n'"  ${line:0:220}"
		fi
	done <"$WORK/$1.err"
	[[ -n $wedged ]] || return 0
	report_nested_fault "run \"$1\": an L2 vCPU is wedged on a page fault at its own instruction pointer (KVM injecting it; interrupts requested, never taken):$wedged"
}

# marker NAME KEY: value of the guest's "KEY value" line (first one).
marker() { tr -d '\r' <"$WORK/$1.out" | sed -n "s/^$2 //p" | head -n1; }
count_marker() { count_lines "$WORK/$1.out" "$2"; }
# count_lines FILE PREFIX: how many lines of FILE start with PREFIX (CRs ignored). Builtins only.
count_lines() {
	local line n=0
	[[ -f $1 ]] || { echo 0; return 0; }
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line//$'\r'/}
		[[ $line == "$2"* ]] && n=$((n + 1))
	done <"$1"
	echo "$n"
}

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
	if [[ -s $WORK/$name.diagnosis ]]; then
		while IFS= read -r l; do note "diagnosis: $l"; done <"$WORK/$name.diagnosis"
	fi
	if file_has "$WORK/$name.err" 'triple-faulted'; then
		note "the guest triple-faulted (no panic message: its CPU state broke); inside scripts/nested's"
		note "L1 that is reported as the emulated machine's failure (docs/testing.md), on real KVM it is a bug."
	fi
}
# note_run_once NAME: note_run the first time a run's check fails; later failures of the same
# run refer to it.
declare -A SHOWN=()
note_run_once() {
	if [[ -n ${SHOWN[$1]+x} ]]; then
		note "(guest console and vmm stderr of run \"$1\": see test ${SHOWN[$1]} above)"
	else
		SHOWN[$1]=$((N + 1))
		note_run "$1"
	fi
}

# ---- tests, as a suite writes them ------------------------------------------------------------
# run_guest NAME [--limit SEC] [--expect-status N] [--expect MARKER]... [--stop-at MARKER COUNT]
#           [--label TEXT] -- VMM_ARGS...
# A vmm run that boots a guest, and one TAP point for how it ended: vmm exited with N (default
# 0) within SEC (default BOOT_TIMEOUT), the guest printed each MARKER (a VMMTEST-... line)
# and its kernel did not panic. With --stop-at, vmm is stopped with SIGTERM once the guest
# printed COUNT lines starting with MARKER, and the point is that it did (how vmm took the
# SIGTERM: check_sigterm_stop). Then RUN is NAME and MARK/MARK_LINES hold its markers, for
# the checks below; a failed check shows the run's command, status, console and log once.
RUN=''
run_guest() {
	local name=$1 limit=$BOOT_TIMEOUT want=0 label='' ok=OK m l
	local -a expect=() stop=()
	shift
	while (($#)); do
		case $1 in
		--limit) limit=$2; shift ;;
		--expect-status) want=$2; shift ;;
		--expect) expect+=("$2"); shift ;;
		--stop-at) stop=(--stop-at "$2" "$3"); shift 2 ;;
		--label) label=$2; shift ;;
		--) shift; break ;;
		*) bail "run_guest $name: unknown option '$1'" ;;
		esac
		shift
	done
	RUN=$name
	run_vmm "${stop[@]}" "$name" "$limit" "$@"
	load_markers "$name"
	if ((${#stop[@]})); then
		[[ -n $label ]] || label="run \"$name\": the guest prints ${stop[1]} ${stop[2]} times"
		if [[ -z $REACHED ]]; then
			ok=FAIL
			if [[ -z $TERM_SECS && $RC != unkillable ]]; then
				note "vmm ended by itself before the guest printed ${stop[1]} ${stop[2]} times"
			else
				note "the guest printed ${stop[1]} $(count_marker "$name" "${stop[1]}") time(s) within $limit s (then vmm got SIGTERM)"
			fi
		fi
	else
		[[ -n $label ]] || label="run \"$name\": vmm exits $want"
		[[ $RC == "$want" ]] || { ok=FAIL; note "expected exit status $want"; }
	fi
	for m in "${expect[@]}"; do
		local seen=''
		for l in "${MARK_LINES[@]}"; do [[ $l == "$m" || $l == "$m "* ]] && { seen=1; break; }; done
		[[ -n $seen ]] || { ok=FAIL; note "the guest did not print $m"; }
	done
	if file_has "$WORK/$name.out" 'Kernel panic'; then
		ok=FAIL
		note "the guest kernel panicked"
	fi
	[[ $ok == OK ]] || note_run_once "$name"
	result "$ok" "$label"
}

# check LABEL CONDITION [DIAGNOSTIC...]: one TAP point about the last run_guest: CONDITION (a
# bash expression, eval'ed) holds; if not, the diagnostics and (once) the run's output.
check() {
	local check_label=$1 check_cond=$2
	shift 2
	if eval "$check_cond"; then
		result OK "$check_label"
	else
		(($#)) && note "$@"
		note_run_once "$RUN"
		result FAIL "$check_label"
	fi
}
# expect_mark KEY WANT LABEL: the guest's "KEY value" line says WANT.
expect_mark() {
	local key=$1 want=$2
	check "$3" '[[ ${MARK[$key]-} == "$want" ]]' "$key: '${MARK[$key]-}', want '$want'"
}
# expect_log TEXT LABEL: vmm's stderr (its log) says TEXT.
expect_log() {
	if file_has "$WORK/$RUN.err" "$1"; then
		result OK "$2"
	else
		note "vmm's stderr does not say '$1'"
		show "$WORK/$RUN.err" "vmm stderr"
		result FAIL "$2"
	fi
}
# check_sigterm_stop LABEL: the last run_guest --stop-at: vmm was still running when it got
# SIGTERM and exited within 10 s of it (143, or a status of its own), not by another signal.
check_sigterm_stop() {
	local why=''
	if [[ -z $TERM_SECS && $RC != unkillable ]]; then
		result FAIL "$1 (vmm was not running any more)"
		return 0
	elif [[ $RC == unkillable ]]; then
		why="vmm was stuck in the kernel after SIGKILL (its threads are listed below)"
	elif [[ $STOPPED == killed ]]; then
		why="vmm did not exit within 10 s of SIGTERM; killed it"
	elif ((TERM_RC > 128 && TERM_RC != 128 + 15)); then
		why="vmm crashed after SIGTERM"
	fi
	if [[ -n $why ]]; then
		note "$why"
		note_run_once "$RUN"
		result FAIL "$1"
	else
		result OK "$1 ($(describe_rc "$TERM_RC") after $TERM_SECS s)"
	fi
}
# guest_timeline: the guest's "VMMTEST-T UPTIME STEP" lines as TAP comments.
guest_timeline() {
	local l
	for l in "${MARK_LINES[@]}"; do
		[[ $l == "VMMTEST-T "* ]] && echo "#   guest ${l#VMMTEST-T }"
	done
	return 0
}

# run_cli NAME [--expect-status N] [--stdout-has TEXT]... [--stdout-nonempty] --label LABEL
#         -- VMM_ARGS...: a vmm run with no guest (help, version): one TAP point.
run_cli() {
	local name=$1 want=0 label='' ok=OK nonempty='' s
	local -a has=()
	shift
	while (($#)); do
		case $1 in
		--expect-status) want=$2; shift ;;
		--stdout-has) has+=("$2"); shift ;;
		--stdout-nonempty) nonempty=1 ;;
		--label) label=$2; shift ;;
		--) shift; break ;;
		*) bail "run_cli $name: unknown option '$1'" ;;
		esac
		shift
	done
	run_vmm "$name" "$ERR_TIMEOUT" "$@"
	[[ $RC == "$want" ]] || { ok=FAIL; note "expected exit status $want, got $(describe_rc "$RC")"; }
	for s in "${has[@]}"; do
		file_has "$WORK/$name.out" "$s" || { ok=FAIL; note "stdout does not mention $s"; }
	done
	[[ -z $nonempty || -s $WORK/$name.out ]] || { ok=FAIL; note "stdout is empty"; }
	[[ $ok == OK ]] || { show "$WORK/$name.out" "stdout"; show "$WORK/$name.err" "stderr"; }
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
