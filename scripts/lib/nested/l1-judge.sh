# scripts/nested, judging its failures: which ways an L1 can end count as a failure of the
# emulated machine (rerun in a fresh L1) and which as CMD's own. The rule and the evidence for
# each kind: docs/testing.md ("Whose failure is it"). Sourced by scripts/nested; needs $run.
# shellcheck shell=bash disable=SC2034,SC2154 # reset_log_re is used by l1-watch.sh; run is the driver's

# Kernel messages that mean the L1 is stuck or has crashed (a task blocked in the kernel for
# minutes included: no user program can make itself unkillable).
stall_re='soft lockup|self-detected stall|rcu: INFO: rcu_[a-z]+ detected stall|detected stalls on CPUs|blocked for more than [0-9]+ seconds'
crash_re='Kernel panic - not syncing|BUG: |Oops: |general protection fault'

# QEMU's own log (-d cpu_reset and two trace points): what stopped the L1 machine.
reset_log_re='^Triple fault|qemu_system_shutdown_request|pckbd_kbd_write_command 0xfe'

# l1_kernel_failed: the L1 kernel's console says it stalled or crashed.
l1_kernel_failed() { grep -q -E "$stall_re|$crash_re" "$run/console.log"; }

# l1_kernel_failure_lines: the stall or crash lines, with the task it hit (the oops header's
# "CPU: N PID: P Comm: NAME" line). head may end grep with SIGPIPE when the kernel repeated
# itself: not a reason to stop here.
l1_kernel_failure_lines() {
	{ grep -E "$stall_re|$crash_re|CPU: [0-9]+ PID: [0-9]+ Comm: " "$run/console.log" | head -n 6; } || true
}

# l1_reset_cause: why the L1 stopped before CMD finished, read off the console and QEMU's reset
# log. Its init only ever powers off (after CMD, or on a setup failure), so a stop without a
# power-off request is a reset: a kernel crash (panic=-1 reboots at once, before the watcher
# greps the log), a triple fault of an emulated CPU, or a reset line pulled without the L1
# kernel asking. Prints the cause; fails when the L1 kernel itself was asked to reboot or
# powered off (something in L1 did that: CMD's failure, no rerun).
l1_reset_cause() {
	local dbg=$run/qemu-debug.log crash reboot
	crash=$(grep -m1 -E "$stall_re|$crash_re" "$run/console.log") || true
	reboot=$(grep -o -m1 -E 'reboot: Restarting system|sysrq: Resetting' "$run/console.log") || true
	if [[ -n $crash ]]; then
		echo "its kernel crashed or stalled: $crash"
	elif [[ -n $reboot ]]; then
		echo "a process in L1 asked its kernel to reboot (the console says '$reboot')"
		return 1
	elif grep -q 'reboot: Power down' "$run/console.log"; then
		echo "a process in L1 powered it off (the console says 'reboot: Power down')"
		return 1
	elif grep -q '^Triple fault' "$dbg" 2>/dev/null; then
		echo "an emulated L1 CPU triple-faulted (QEMU's log: $dbg)"
	elif grep -q qemu_system_shutdown_request "$dbg" 2>/dev/null; then
		echo "QEMU was asked to power off, and the L1 kernel did not say why"
		return 1
	elif [[ $(grep pckbd_kbd_write_command "$dbg" 2>/dev/null | tail -n 1) == *0xfe ]]; then
		echo "the i8042 reset line was pulsed, and the L1 kernel did not say why"
	else
		echo "its machine reset, and the L1 kernel did not say why"
	fi
}

# judge_l1_end: after QEMU exited by itself. Returns like run_l1: 0 when CMD ran (its status in
# $run/status), 2 on a failure of the emulated machine (rerun), 1 otherwise.
judge_l1_end() {
	if [[ -e $run/l1-error ]]; then
		info "the L1 VM failed: $(head -n1 "$run/l1-error")"
		tail -n +2 "$run/l1-error" | sed 's/^/    /' >&2
		show_log
		return 1
	fi
	if [[ ! -s $run/status ]]; then
		local why
		if why=$(l1_reset_cause); then
			show_log
			info "L1 FAILURE: the L1 VM reset itself before CMD finished (QEMU exit status $(cat "$run/qemu.rc")): $why; not the code under test"
			return 2
		fi
		show_log
		info "the L1 VM stopped (QEMU exit status $(cat "$run/qemu.rc")) before CMD finished: $why"
		return 1
	fi
	return 0
}
