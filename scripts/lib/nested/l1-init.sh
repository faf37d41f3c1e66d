#!/bin/sh
# The L1's /init (busybox sh), copied into the L1's initramfs by scripts/nested together with
# /etc/nested.conf (msize: the 9p message size; token: this run's exit-line token).
# Its console (ttyS0) goes to the run directory's console.log only. It mounts the host's
# files over 9p, checks /dev/kvm, starts the heartbeats and the hang report, runs CMD
# (/run/nested/cmd.sh, chrooted into the host's /) and powers off. It only ever powers off:
# scripts/lib/nested/l1-judge.sh counts any other stop as a reset (docs/testing.md).
# shellcheck disable=SC2154 # msize and token come from /etc/nested.conf
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
# shellcheck disable=SC1091 # msize, token: written by scripts/lib/nested/l1-boot.sh
. /etc/nested.conf
say() { echo "nested-l1: $*"; }
fail() {
	say "FAILED: $*"
	[ -d /nested/. ] && echo "$*" >> /nested/l1-error
	sync
	poweroff -f
}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say "init started"
# A module that fails to load (e.g. kvm_amd without SVM) is reported below, with /dev/kvm.
load-modules >/dev/null 2>/load-errors || say "some modules did not load: $(cat /load-errors)"
p9="trans=virtio,version=9p2000.L,msize=$msize"
mkdir -p /nested /host
mount -t 9p -o "$p9,cache=mmap" nestedrun /nested || fail "could not mount the run directory over 9p"
mount -t 9p -o "$p9,cache=loose,ro" hostroot /host || fail "could not mount the host's / over 9p"
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /host/sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null
mount --rbind /dev /host/dev
mount -t tmpfs -o mode=1777 tmpfs /host/tmp
mount -t tmpfs -o mode=755 tmpfs /host/run
mkdir -p /host/run/nested /host/run/lock
mount --bind /nested /host/run/nested
# Writable shares last, so that one under /tmp or /run is not hidden by the tmpfs.
while read -r tag path; do
	[ -d "/host$path" ] || mkdir -p "/host$path"
	mount -t 9p -o "$p9,cache=mmap" "$tag" "/host$path" || fail "could not mount $path ($tag) over 9p"
done < /nested/mounts
ip link set lo up
hostname vmm-nested-l1
# The kernel reports a task blocked (uninterruptibly) for 60 s, not only after 120 s.
echo 60 > /proc/sys/kernel/hung_task_timeout_secs 2>/dev/null
# Like a tuned VM host: memfd-backed guest RAM (vmm's) may get transparent huge pages.
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null
# ...at fault time only: khugepaged collapsing guest RAM behind running L2 guests was seen
# blocked for over 60 s under the emulator (hung-task report, then an L1 rerun). Once an hour.
echo 3600000 > /sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs 2>/dev/null
if [ ! -c /dev/kvm ]; then
	{
		echo "/dev/kvm did not appear in L1; kernel messages about KVM/SVM:"
		dmesg | grep -i -E 'kvm|svm|virtuali' || echo "(none)"
		cat /load-errors
		grep -o -w -m1 svm /proc/cpuinfo >/dev/null || echo "(the L1 CPU has no svm flag: QEMU must run with -cpu max)"
	} > /nested/l1-error
	fail "no /dev/kvm"
fi
say "ready after $(cut -d' ' -f1 /proc/uptime) s uptime"
# The hang report: shortly before the host's deadline, what every process is doing.
hang_report() {
	echo "L1 uptime $(cut -d' ' -f1 /proc/uptime) s; processes (pid state command):"
	for p in /proc/[0-9]*; do
		read -r st < "$p/stat" 2>/dev/null || continue
		st=${st##*) }
		cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null | cut -c1-160)
		[ -n "$cmd" ] || continue
		echo "  ${p#/proc/} ${st%% *} $cmd"
		case "${st%% *} $cmd" in
		D*|*vmm*)
			for t in "$p"/task/*; do
				echo "    thread ${t##*/} wchan=$(cat "$t/wchan" 2>/dev/null):"
				sed 's/^/      /' "$t/stack" 2>/dev/null
			done ;;
		esac
		case "$cmd" in
		*/vmm\ *) # a vmm run: the end of its output files (the guest console, its log)
			for f in 1 2; do
				[ -f "$p/fd/$f" ] || continue
				echo "    fd $f ($(readlink "$p/fd/$f")), last 15 lines:"
				tail -n 15 "$p/fd/$f" | sed 's/^/      /'
			done ;;
		esac
	done
	echo w > /proc/sysrq-trigger 2>/dev/null # blocked tasks, into the kernel log
	echo "L1 kernel log, last 60 lines:"
	dmesg | tail -n 60
}
# The heartbeat: the host takes an L1 that stops writing it for frozen (l1-watch.sh). And one
# per CPU, pinned to it (heartbeat.N): a CPU that stops running its tasks while the others go
# on is frozen too — the migrate suite once sat silent for 1000 s until an RCU stall named
# CPU 0, idle and not answering, 1405 grace periods behind.
( while :; do cut -d' ' -f1 /proc/uptime > /nested/heartbeat; sleep 5; done ) &
c=0
while [ "$c" -lt "$(nproc)" ]; do
	# shellcheck disable=SC2016 # the inner script's variables are its own
	taskset -c "$c" sh -c 'while :; do read -r u _ < /proc/uptime; echo "$u" > /nested/heartbeat.$0; sleep 5; done' "$c" &
	c=$((c + 1))
done
read -r hang_after < /nested/hang-after 2>/dev/null || hang_after=0
if [ "$hang_after" -gt 0 ] 2>/dev/null; then
	( sleep "$hang_after"; hang_report > /nested/hang-report 2>&1 ) &
fi
env -i /usr/sbin/chroot /host /bin/bash /run/nested/cmd.sh </dev/null >/nested/stdout 2>/nested/stderr
rc=$?
echo "$rc" > /nested/status
say "NESTED-EXIT-$token $rc"
umount /host/run/nested 2>/dev/null
sync
poweroff -f
