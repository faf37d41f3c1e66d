# Shell helpers for the benchmark guests' /init scripts (scripts/bench), copied into the
# guest as /bench-common.sh. Everything the guest reports is one line on the serial
# console starting with "BENCH-"; the harness on the host side parses these lines:
#   BENCH-INFO <text>              informational (engine, link state, ...)
#   BENCH-BEGIN <job>              the job starts now (harness snapshots CPU time and exits)
#   BENCH-START <job>              optional: the job's measured part starts (snapshot again)
#   BENCH-STOP <job>               optional: the job's measured part has ended (snapshot)
#   BENCH-END <job> <exit status>  the job has ended (second snapshot, unless STOP came)
#   BENCH-RESULT <job> k=v ...     the job's own numbers (printed after BENCH-END)
#   BENCH-ERROR <text>             the guest cannot go on
#   BENCH-DONE                     all jobs ran; the guest powers off next
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

say() { echo "BENCH-$*"; }
fail() {
	say "ERROR $*"
	poweroff -f
}
# arg NAME DEFAULT: value of bench.NAME=... on the kernel command line.
arg() {
	v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^bench\.$1=//p" | head -n1)
	echo "${v:-$2}"
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
