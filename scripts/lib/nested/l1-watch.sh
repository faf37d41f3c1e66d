# scripts/nested, watching the L1 while CMD runs: its readiness, its heartbeats (a frozen L1 or CPU),
# a failure CMD saw and reported, the L1 kernel's console (judged by l1-judge.sh), the
# deadlines; and what is shown when it fails: the console, the live copies of the runs in
# progress, the hang report, QEMU's reset events and, for a frozen L1, QEMU's threads. Why
# each counts as whose failure: docs/testing.md. Sourced by scripts/nested.
# shellcheck shell=bash disable=SC2154 # run, deadline, timeout, attempt...: the driver's (scripts/nested)

now() { printf '%s\n' "${EPOCHREALTIME/./}"; } # microseconds
secs() { printf '%d.%d' $(($1 / 1000000)) $(($1 % 1000000 / 100000)); }

show_log() {
	{
		echo "----- L1 console log ($run/console.log), last 80 lines -----"
		tail -n 80 "$run/console.log" 2>/dev/null || true
		local f
		for f in "$run"/live/*; do
			[[ -s $f ]] || continue
			echo "----- a run in progress in L1, its output so far (${f##*/}; copied every 5 s), last 20 lines -----"
			tail -n 20 "$f" | tr -d '\r'
		done
		if [[ -s $run/hang-report ]]; then
			echo "----- L1 hang report, written 60 s before the deadline ($run/hang-report) -----"
			cat "$run/hang-report"
		fi
		if grep -q -E "$reset_log_re" "$run/qemu-debug.log" 2>/dev/null; then
			echo "----- QEMU's power-off and reset events ($run/qemu-debug.log) -----"
			grep -E "$reset_log_re" "$run/qemu-debug.log" | tail -n 10
		fi
		if [[ -s $run/qemu.log ]]; then
			echo "----- QEMU messages ($run/qemu.log) -----"
			tail -n 30 "$run/qemu.log"
		fi
		echo "----- end of L1 log -----"
	} >&2
}

# qemu_threads_report: what QEMU's threads did over 2 s, for an L1 that froze: emulated CPUs
# spinning ("CPU N/TCG" busy: the emulated machine loops without reaching the L1 kernel's
# timer), or every thread asleep (QEMU itself stuck, e.g. waiting for a lock). Thread names
# come from -name ...,debug-threads=on.
qemu_threads_report() {
	local pid hz t line rest name f tid
	local -A ticks0=()
	{ read -r pid <"$run/qemu-self.pid"; } 2>/dev/null || return 0
	[[ $pid =~ ^[0-9]+$ && -d /proc/$pid/task ]] || return 0
	hz=$(getconf CLK_TCK 2>/dev/null) || hz=100
	for t in /proc/"$pid"/task/*; do
		{ read -r line <"$t/stat"; } 2>/dev/null || continue
		read -ra f <<<"${line##*) }"
		ticks0[${t##*/}]=$((f[11] + f[12]))
	done
	sleep 2
	echo "QEMU's threads (pid $pid) over 2 s: tid, name, state, CPU use, kernel wait channel:"
	for t in /proc/"$pid"/task/*; do
		tid=${t##*/}
		{ read -r line <"$t/stat"; } 2>/dev/null || continue
		rest=${line##*) }
		name=${line#*(}
		name=${name%) "$rest"}
		read -ra f <<<"$rest"
		printf '  %s %-16s %s %3d%% %s\n' "$tid" "'$name'" "${f[0]}" \
			$(((f[11] + f[12] - ${ticks0[$tid]:-0}) * 100 / (2 * hz))) "$(cat "$t/wchan" 2>/dev/null || true)"
	done
}

# l1_froze WHAT: stops a frozen L1 (or one with a frozen CPU) and says so, with what QEMU's
# threads did over 2 s first (taken while it still runs).
l1_froze() {
	local threads
	threads=$(qemu_threads_report)
	stop_l1
	stop_tails
	show_log
	info "L1 FAILURE: $1; L1 stopped"
	[[ -z $threads ]] || sed 's/^/    /' <<<"$threads" >&2
}

# watch_l1 CMD...: polls the running L1 (start_l1) until QEMU exits by itself (returns 0), or
# stops it: 2 on a failure of the emulated machine (worth a rerun), 124 past $deadline (the
# whole run's, reruns included), 1 when the L1 never got ready. Sets the caller's ready (time
# to ready, microseconds) and max_gap (the heartbeat's longest gap), from its start.
watch_l1() {
	local t beat last_beat='' last_beat_t=0 boot_deadline f c cbeat
	local -A cpu_beat=() cpu_beat_t=()
	boot_deadline=$((start + boot_timeout * 1000000))
	while [[ ! -e $run/qemu.rc ]]; do
		sleep 0.25
		t=$(now)
		if [[ -z $ready ]] && grep -q '^nested-l1: ready' "$run/console.log"; then
			ready=$((t - start))
			last_beat_t=$t
		fi
		# Frozen: no heartbeat for frozen_after s.
		if [[ -n $ready ]]; then
			beat=''
			{ read -r beat <"$run/heartbeat"; } 2>/dev/null || true
			if [[ $beat != "$last_beat" ]]; then
				((t - last_beat_t > max_gap)) && max_gap=$((t - last_beat_t))
				last_beat=$beat
				last_beat_t=$t
			elif ((t - last_beat_t > frozen_after * 1000000)); then
				l1_froze "the L1 VM froze: its heartbeat (L1 uptime ${beat:-none} s) has not changed for $(((t - last_beat_t) / 1000000)) s, and its kernel said nothing"
				return 2
			fi
			# One CPU frozen: the heartbeat pinned to it stopped while the L1's own went on
			# (at least 10 s past it: when everything stops, that is the frozen L1 above).
			for f in "$run"/heartbeat.[0-9]*; do
				[[ -e $f ]] || continue
				c=${f##*.} cbeat=''
				{ read -r cbeat <"$f"; } 2>/dev/null || true
				if [[ $cbeat != "${cpu_beat[$c]-}" || -z ${cpu_beat_t[$c]-} ]]; then
					cpu_beat[$c]=$cbeat cpu_beat_t[$c]=$t
				elif ((t - cpu_beat_t[$c] > frozen_after * 1000000 && last_beat_t - cpu_beat_t[$c] > 10000000)); then
					l1_froze "the L1's CPU $c froze: the heartbeat pinned to it (L1 uptime ${cbeat:-none} s) has not changed for $(((t - cpu_beat_t[$c]) / 1000000)) s while the L1's own went on (uptime $last_beat s)"
					return 2
				fi
			done
		fi
		if [[ -s $run/l1-fault ]]; then
			sleep 1 # the rest of the report
			stop_l1
			stop_tails
			info "L1 FAILURE: the test saw the emulated machine fail; L1 stopped at once. What it saw:"
			sed 's/^/    /' "$run/l1-fault" >&2
			show_log
			return 2
		fi
		if l1_kernel_failed; then
			sleep 1 # let the rest of the report reach the log
			stop_l1
			stop_tails
			info "L1 FAILURE: the L1 kernel stalled or crashed (not the code under test); L1 stopped at once:"
			l1_kernel_failure_lines | sed 's/^/    /' >&2
			show_log
			return 2
		fi
		if ((t > deadline)); then
			stop_l1
			stop_tails
			show_log
			local earlier=''
			((attempt > 1)) && earlier=" in attempt $attempt, after $((attempt - 1)) L1 failure(s) above"
			if [[ -s $run/hang-report ]]; then
				info "TIMEOUT: '$*' did not finish within $timeout s (L1 boots included$earlier); L1 stopped (the hang report above shows what was running)"
			else
				info "TIMEOUT: '$*' did not finish within $timeout s (L1 boots included$earlier); L1 stopped (it wrote no hang report)"
			fi
			return 124
		fi
		if [[ -z $ready ]] && ((t > boot_deadline)) && [[ ! -e $run/l1-error ]]; then
			stop_l1
			stop_tails
			info "the L1 VM did not get ready within $boot_timeout s; L1 stopped"
			show_log
			return 1
		fi
	done
	return 0
}
