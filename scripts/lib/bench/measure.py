#!/usr/bin/env python3
"""Measurement side of scripts/bench: runs where /dev/kvm works (directly, or inside the
nested L1 of scripts/with-kvm). Boots the prepared guests under vmm and QEMU alternately,
timestamps the guests' BENCH-* console markers, takes KVM exit counts (debugfs), CPU time
(/proc/PID/stat) and memory (/proc/PID/smaps) at those moments, and writes one CSV per
suite plus meta.json into the output directory. Progress goes to stderr.

Usage (scripts/bench calls it; not meant to be run by hand):
  measure.py --work DIR --out DIR --runs N [--fio-runtime S] [--iperf-time S] SUITE...
DIR of --work holds what scripts/bench prepared on the host: vmm, vmlinuz, and
boot.initrd / blk.initrd / net.initrd.
"""

import argparse
import csv
import glob
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (scripts/lib/bench/common.py)
import migrate  # noqa: E402  (scripts/lib/bench/migrate.py)

CLK_TCK = os.sysconf("SC_CLK_TCK")
MARKER_RE = re.compile(r"BENCH-([A-Z]+)(?: (.*))?$")
PANIC_RE = re.compile(r"Kernel panic|BUG: |Oops:|soft lockup|self-detected stall")
KVM_DEBUGFS = "/sys/kernel/debug/kvm"
# Per-VM KVM statistics kept per snapshot (each sums over the VM's vCPUs).
KVM_STATS = ("exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits",
             "irq_window_exits", "insn_emulation", "signal_exits", "irq_injections",
             "pf_taken", "pf_fixed", "pf_emulate", "hypercalls")

BOOT_CMDLINE = "console=ttyS0 quiet panic=-1"
MAC = "52:54:00:12:34:56"
TAP = "vbench0"
HOST_ADDR = "169.254.77.1"
GUEST_ADDR = "169.254.77.2"
PREFIX = 24
PORT_TX, PORT_RX = 5301, 5302

# Per-step time limits (seconds). Guest boots take ~15-50 s under nested emulation on a
# busy machine; the limits are generous so that only real hangs trip them.
BOOT_LIMIT = 300      # process start -> first marker (boot suite) / first BENCH line
EXIT_LIMIT = 60       # guest's poweroff -> VMM process gone
JOB_SLACK = 120       # per fio/iperf3 job, on top of its runtime


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class StepFailed(Exception):
    pass


# ---- snapshots of a running VMM -------------------------------------------------------------

def kvm_vm_dir(pid):
    """debugfs directory of the VM that process PID created (PID-FD), or None."""
    dirs = glob.glob(f"{KVM_DEBUGFS}/{pid}-*")
    if not dirs:
        return None
    # One VM per VMM process; if there were several, the newest fd is the live one.
    return max(dirs, key=lambda d: int(d.rsplit("-", 1)[1]))


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def proc_cpu(pid):
    """(utime, stime, guest_time) of the whole process in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state): utime is field 14, stime 15, guest_time 43.
    return (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK, int(fields[40]) / CLK_TCK)


def proc_alive(pid):
    """Whether PID is still a running process (not gone, not a zombie whose memory and
    KVM VM are already torn down)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def proc_threads(pid):
    """Per thread of PID: {tid: {"cpu": run time in s (schedstat, ns precision), "gtime":
    guest time in s (tick-sampled), "ctxsw": voluntary + involuntary context switches,
    "comm": the thread's name}}."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        d = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{d}/schedstat") as f:
                cpu = int(f.read().split()[0]) / 1e9
            with open(f"{d}/stat") as f:
                gtime = int(f.read().rsplit(")", 1)[1].split()[40]) / CLK_TCK
            ctxsw = 0
            comm = ""
            with open(f"{d}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        ctxsw += int(line.split()[1])
                    elif line.startswith("Name:"):
                        comm = line.split(None, 1)[1].strip() if len(line.split()) > 1 else ""
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
        out[int(tid)] = {"cpu": cpu, "gtime": gtime, "ctxsw": ctxsw, "comm": comm}
    return out


def is_vhost_worker(comm, pid):
    """Whether a task named comm is the kernel's vhost worker of process pid: a kernel
    thread "vhost-PID" before Linux 6.4, a thread of the process itself with that name
    from 6.4 on (which must not count as one of the VMM's own non-vCPU threads)."""
    return comm == f"vhost-{pid}"


def vhost_workers(pid):
    """PIDs of the kernel threads named vhost-PID (Linux < 6.4: one per vhost device of
    process pid; from 6.4 they are threads of the process and proc_threads sees them)."""
    out = []
    want = f"vhost-{pid}"
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() == want:
                    out.append(int(d))
        except OSError:
            pass
    return out


def offload_usage(pids):
    """CPU (s, schedstat) and context switches summed over every thread of each process in
    pids (vhost worker kernel threads, a vhost-user back-end): {"cpu": s, "ctxsw": n,
    "tasks": how many threads were read} (all 0 when there is none)."""
    cpu, ctxsw, n = 0.0, 0, 0
    for p in pids:
        for t in proc_threads(p).values():
            cpu += t["cpu"]
            ctxsw += t["ctxsw"]
            n += 1
    return {"cpu": cpu, "ctxsw": ctxsw, "tasks": n}


def parse_smaps(text):
    """The mappings of an smaps text: a list of dicts with size (bytes), name, rss,
    anon_huge and shmem_pmd (KiB), and flags (the VmFlags)."""
    maps = []
    for line in text.splitlines():
        head = line.split(None, 5)
        if not head:
            continue
        if "-" in head[0] and not head[0].endswith(":"):
            try:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
            except ValueError:
                continue
            maps.append({"size": hi - lo, "name": head[5].strip() if len(head) > 5 else "",
                         "rss": 0, "anon_huge": 0, "shmem_pmd": 0, "flags": set()})
        elif maps and head[0] == "Rss:":
            maps[-1]["rss"] = int(head[1])
        elif maps and head[0] == "AnonHugePages:":
            maps[-1]["anon_huge"] = int(head[1])
        elif maps and head[0] == "ShmemPmdMapped:":
            maps[-1]["shmem_pmd"] = int(head[1])
        elif maps and head[0] == "VmFlags:":
            maps[-1]["flags"] = set(line.split()[1:])
    return maps


def split_rss(maps, ram_bytes):
    """Resident memory split into guest RAM and the rest, in KiB. Guest RAM: vmm's memfd
    mapping ("/memfd:vmm-guest-ram (deleted)", --memory shared=on or hugepages=on), or the
    anonymous mapping of exactly the guest RAM size (vmm's default private RAM, QEMU's RAM;
    preferring one advised for huge pages), or failing that the largest anonymous one at
    least that big. Returns the figures and ram_mapping (how it was found); when there is
    nothing to measure (no mappings: the process was gone) or the RAM mapping is not
    found, the figures are None and "unmeasured" says why."""
    if not maps:
        return {"rss_total_kib": None, "rss_guest_ram_kib": None, "rss_outside_kib": None,
                "ram_huge_kib": None, "ram_mapping": "none",
                "unmeasured": "RSS: /proc/PID/smaps was empty (the process had exited)"}
    total = sum(m["rss"] for m in maps)
    ram = [m for m in maps if "vmm-guest-ram" in m["name"]]
    how = "memfd vmm-guest-ram"
    if not ram:
        exact = [m for m in maps if m["name"] == "" and m["size"] == ram_bytes]
        advised = [m for m in exact if "hg" in m["flags"]]
        ram = (advised or exact)[:1]
        how = "anonymous mapping of the RAM size"
    if not ram:
        big = [m for m in maps if m["name"] == "" and m["size"] >= ram_bytes]
        ram = [max(big, key=lambda m: m["size"])] if big else []
        how = "largest anonymous mapping"
    if not ram:
        return {"rss_total_kib": total, "rss_guest_ram_kib": None, "rss_outside_kib": None,
                "ram_huge_kib": None, "ram_mapping": "not found",
                "unmeasured": f"RSS outside guest RAM: no mapping of the guest RAM "
                              f"({ram_bytes >> 20} MiB) in /proc/PID/smaps"}
    guest = sum(m["rss"] for m in ram)
    return {"rss_total_kib": total, "rss_guest_ram_kib": guest, "rss_outside_kib": total - guest,
            "ram_huge_kib": sum(m["anon_huge"] + m["shmem_pmd"] for m in ram), "ram_mapping": how}


def proc_rss(pid, ram_bytes):
    """split_rss of /proc/PID/smaps."""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            text = f.read()
    except OSError as e:
        r = split_rss([], ram_bytes)
        r["unmeasured"] = f"RSS: /proc/PID/smaps unreadable ({e.strerror})"
        return r
    return split_rss(parse_smaps(text), ram_bytes)


class Snapshot(dict):
    pass


def add_unmeasured(d, why):
    """Appends a reason to d["unmeasured"] ("; "-separated)."""
    d["unmeasured"] = "; ".join(x for x in (d.get("unmeasured"), why) if x)


def snapshot(pid, t, ram_bytes=None, threads=False, offload=None):
    """KVM statistics, CPU times (and per-thread CPU when threads, smaps when ram_bytes) of
    the VMM process PID. What could not be read is None and said in s["unmeasured"]: in
    particular everything, when the process had exited by the end of the snapshot (a VM
    torn down while being read gives partial statistics otherwise)."""
    s = Snapshot(t=t)
    d = kvm_vm_dir(pid)
    for k in KVM_STATS:
        s[k] = read_int(f"{d}/{k}") if d else None
    cpu = proc_cpu(pid)
    s["utime"], s["stime"], s["guest_time"] = cpu if cpu else (None, None, None)
    if threads:
        s["threads"] = proc_threads(pid)
    if offload is not None:
        # The data path outside the VMM process: its vhost workers and back-end processes.
        s["offload"] = offload_usage(offload)
    if ram_bytes:
        s.update(proc_rss(pid, ram_bytes))
    if not proc_alive(pid) or (d and not os.path.isdir(d)):
        for k in KVM_STATS + ("utime", "stime", "guest_time", "rss_total_kib",
                              "rss_guest_ram_kib", "rss_outside_kib", "ram_huge_kib"):
            s[k] = None
        s.pop("threads", None)
        s["unmeasured"] = "the VMM had exited (or torn its VM down) before it could be measured"
        return s
    if d is None:
        add_unmeasured(s, f"KVM statistics: no {KVM_DEBUGFS}/{pid}-* directory")
    elif any(s[k] is None for k in KVM_STATS):
        missing = [k for k in KVM_STATS if s[k] is None]
        add_unmeasured(s, f"KVM statistics unreadable: {', '.join(missing)}")
    if cpu is None:
        add_unmeasured(s, "CPU time: /proc/PID/stat unreadable")
    return s


def diff(a, b, k):
    if a.get(k) is None or b.get(k) is None:
        return None
    return b[k] - a[k]


# ---- one VMM process ------------------------------------------------------------------------

class VMMRun:
    """A VMM process whose stdout is the guest's serial console. Lines are read as they
    arrive and timestamped with the monotonic clock; t=0 is just before the fork."""

    def __init__(self, argv, log_path, stdin_pipe=False):
        self.argv = argv
        self.log_path = log_path
        self.stdin_pipe = stdin_pipe  # the guest's console input (see send())
        self.buf = b""
        self.rc = None
        self.deadline = 0

    def start(self):
        self.console = open(self.log_path, "wb")
        self.console.write(("# " + " ".join(self.argv) + "\n").encode())
        self.errfile = open(self.log_path + ".stderr", "w+b")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(self.argv,
                                  stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=self.errfile, start_new_session=True, close_fds=True)
        self.pid = self.p.pid
        self.fd = self.p.stdout.fileno()
        os.set_blocking(self.fd, False)

    def send(self, data):
        """Types data on the guest's console (the VMM's stdin); False if it cannot."""
        try:
            self.p.stdin.write(data)
            self.p.stdin.flush()
            return True
        except (OSError, ValueError, AttributeError):
            return False

    def now(self):
        return time.monotonic() - self.t0

    def lines(self):
        """Yields (t, line) for each console line until EOF (the VMM exited). Raises
        StepFailed("timed out") when self.deadline (seconds since start; the caller may
        move it between lines) passes first."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                raw, self.buf = self.buf[:nl], self.buf[nl + 1:]
                t, line = self.now(), raw.decode("utf-8", "replace").replace("\r", "")
                self.console.write(f"[{t:9.3f}] {line}\n".encode())
                yield t, line
                continue
            left = self.deadline - self.now()
            if left <= 0:
                raise StepFailed("timed out")
            r, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if not r:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                if self.buf:
                    t, line = self.now(), self.buf.decode("utf-8", "replace").replace("\r", "")
                    self.buf = b""
                    self.console.write(f"[{t:9.3f}] {line}\n".encode())
                    yield t, line
                return
            self.buf += chunk

    def wait_exit(self, limit):
        """Waits up to `limit` s for the process to end (reading its output meanwhile).
        Returns (exit status, seconds since start) or (None, None) after killing it."""
        self.deadline = self.now() + limit
        try:
            for _ in self.lines():
                pass
        except StepFailed:
            self.kill()
            return None, None
        try:
            self.rc = self.p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.kill()
            return None, None
        return self.rc, self.now()

    def kill(self):
        if self.p.poll() is None:
            for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.p.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    pass
        self.rc = self.p.poll()

    def close(self):
        self.kill()
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        self.console.close()
        self.errfile.close()

    def stderr_tail(self, n=3):
        try:
            with open(self.log_path + ".stderr", "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def console_tail(self, n=3):
        self.console.flush()
        try:
            with open(self.log_path, "rb") as f:
                lines = [l for l in f.read().decode("utf-8", "replace").replace("\r", "").splitlines()
                         if l.strip() and not l.startswith("# ")]
        except OSError:
            return ""
        return " | ".join(lines[-n:])


def vmm_argv(kind, w, initrd, cpus, mem_mib, cmdline, disk=None, tools=None, tap=None,
             vhost_user=None, vsock_cid=None):
    """The command line of variant `kind` (common.VARIANTS). disk: the benchmark disk
    (O_DIRECT); tools: a read-only image with the guest's tools (page cache, default
    caching of both VMMs); tap: the tap device (kind *-vhost: kernel vhost-net, else the
    userspace path); vhost_user: the socket of a vhost-user-blk back-end serving the
    benchmark disk instead of disk (vmm then needs shared guest RAM, QEMU a shared memfd
    memory backend); vsock_cid: a vhost-vsock device with that guest CID."""
    vhost = kind.endswith("-vhost")
    if common.kind_of(kind) == "vmm":
        mem_opts = [o for o in w.mem_opts.split(",") if o]
        if vhost_user and "shared=on" not in mem_opts:
            mem_opts.append("shared=on")
        binary = w.vmm_base if kind == "vmm-base" else w.vmm
        argv = [binary, "run", "--kernel", w.kernel, "--initrd", initrd, "--cpus", str(cpus),
                "--memory", ",".join([f"{mem_mib}M"] + mem_opts), "--cmdline", cmdline]
        if vhost_user:
            argv += ["--disk", f"vhost-user={vhost_user}"]
        elif disk:
            argv += ["--disk", f"path={disk},direct=on"]
        if tools:
            argv += ["--disk", f"path={tools},readonly=on"]
        if tap:
            argv += ["--net", f"tap={tap},mac={MAC},vhost={'on' if vhost else 'off'}"]
        if vsock_cid:
            argv += ["--vsock", f"cid={vsock_cid}"]
        return argv
    base = list(common.QEMU_BASE_ARGS)
    mem = []
    if vhost_user:
        # vhost-user needs guest RAM the back-end can map: a shared memfd backend.
        base[base.index("-M") + 1] += ",memory-backend=mem0"
        mem = ["-object", f"memory-backend-memfd,id=mem0,size={mem_mib}M,share=on"]
    argv = [w.qemu, *base, *mem, "-smp", str(cpus), "-m", f"{mem_mib}M",
            "-kernel", w.kernel, "-initrd", initrd, "-append", cmdline]
    if vhost_user:
        argv += ["-chardev", f"socket,id=vu0,path={vhost_user}",
                 "-device", "vhost-user-blk,chardev=vu0"]
    elif disk:
        argv += ["-drive", f"id=d0,file={disk},format=raw,if=none,cache=none,aio=threads",
                 "-device", "virtio-blk-device,drive=d0"]
    if tools:
        argv += ["-drive", f"id=d1,file={tools},format=raw,if=none,readonly=on",
                 "-device", "virtio-blk-device,drive=d1"]
    if tap:
        argv += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost={'on' if vhost else 'off'}",
                 "-device", f"virtio-net-device,netdev=n0,mac={MAC}"]
    if vsock_cid:
        argv += ["-device", f"vhost-vsock-device,guest-cid={vsock_cid}"]
    return argv


def order(run, variants=("vmm", "qemu")):
    """Alternation: odd runs go through the variants in their order (vmm's and QEMU's
    interleaved), even runs in the reverse order."""
    vmms = [v for v in variants if common.kind_of(v) == "vmm"]
    qemus = [v for v in variants if common.kind_of(v) != "vmm"]
    seq = []
    for i in range(max(len(vmms), len(qemus))):
        seq += vmms[i:i + 1] + qemus[i:i + 1]
    return tuple(seq) if run % 2 == 1 else tuple(reversed(seq))


def check_line(line):
    if PANIC_RE.search(line):
        raise StepFailed(f"guest kernel: {line.strip()[:120]}")


# ---- CSV output -----------------------------------------------------------------------------

def skip_not_asked(path, suite, only, runs, baseline=False):
    """Appends "skipped" rows for the suite's variants that --variants left out, so that the
    report shows them as not run (n/a, with the reason) and not as failed measurements."""
    with open(path, "a", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=IO_COLUMNS, extrasaction="ignore")
        for v in common.VARIANTS[suite]:
            if v in only or (v == "vmm-base" and not baseline):
                continue
            for run in range(1, runs + 1):
                for j in common.jobs(suite):
                    wr.writerow({"run": run, "vmm": v, "job": j, "status": "skipped",
                                 "error": "not asked for (--variants)"})


class CSVOut:
    def __init__(self, path, columns):
        self.columns = columns
        self.f = open(path, "w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=columns, extrasaction="ignore")
        self.w.writeheader()
        self.f.flush()

    def row(self, d):
        self.w.writerow({k: fmt_csv(d.get(k)) for k in self.columns})
        self.f.flush()

    def close(self):
        self.f.close()


def fmt_csv(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


# ---- suites ---------------------------------------------------------------------------------

BOOT_COLUMNS = ["run", "vmm", "status", "error", "time_to_marker_s", "exits",
                "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits",
                "irq_injections", "insn_emulation", "signal_exits", "pf_taken", "pf_fixed",
                "pf_emulate", "hypercalls", "rss_total_kib", "rss_guest_ram_kib", "rss_outside_kib",
                "ram_huge_kib", "ram_mapping", "cpu_s", "poweroff_to_exit_s", "exit_status",
                "unmeasured"]

IO_COLUMNS = ["run", "vmm", "job", "status", "error", "bytes", "seconds", "iops", "mb_per_s",
              "mbit_per_s", "window_s", "cpu_s", "guest_cpu_s", "host_cpu_s", "vcpu_cpu_s",
              "other_cpu_s", "other_ctxsw", "exits",
              "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits",
              "irq_injections", "insn_emulation", "signal_exits", "pf_taken", "pf_fixed",
              "pf_emulate", "hypercalls", "exits_per_gib", "cpu_s_per_gib", "host_cpu_s_per_gib",
              "other_cpu_s_per_gib", "other_ctxsw_per_gib", "offload_cpu_s", "offload_ctxsw",
              "offload_cpu_s_per_gib", "ops", "median_us", "p99_us", "exits_per_op",
              "other_cpu_us_per_op", "other_ctxsw_per_op", "offload_cpu_us_per_op",
              "exit_status", "unmeasured", "note"]


def boot_suite(w, runs, out):
    """The guest prints the marker and then waits for a line on its console before it
    powers off: the harness measures first and then sends that line, so the VMM is still
    running (its memory and its KVM VM intact) while it is measured."""
    ram = 256
    csvf = CSVOut(os.path.join(out, "boot.csv"), BOOT_COLUMNS)
    failures = 0
    for run in range(1, runs + 1):
        for kind in order(run):
            name = common.vname(kind)
            row = {"run": run, "vmm": kind, "status": "fail"}
            r = VMMRun(vmm_argv(kind, w, w.initrd("boot"), 1, ram, BOOT_CMDLINE),
                       os.path.join(out, "logs", f"boot-{run}-{kind}.log"), stdin_pipe=True)
            try:
                r.start()
                snap = None
                r.deadline = BOOT_LIMIT
                try:
                    for t, line in r.lines():
                        if "BENCH-BOOT-MARKER" in line:
                            snap = snapshot(r.pid, t, ram << 20)
                            break
                        check_line(line)
                except StepFailed as e:
                    raise StepFailed(f"no marker within {BOOT_LIMIT} s ({e})") from None
                if snap is None:
                    raise StepFailed(f"{name} exited (status {r.p.wait()}) before the marker: "
                                     f"{r.stderr_tail() or r.console_tail()}")
                t_go = r.now()
                if not r.send(b"go\n"):
                    add_unmeasured(row, "could not send the guest its go line")
                cpu = None
                if snap["utime"] is not None and snap["stime"] is not None:
                    cpu = snap["utime"] + snap["stime"]
                row.update(status="ok", time_to_marker_s=snap["t"], cpu_s=cpu)
                row.update({k: snap.get(k) for k in BOOT_COLUMNS
                            if k in snap and k not in ("t", "unmeasured")})
                if snap.get("unmeasured"):
                    add_unmeasured(row, snap["unmeasured"])
                rc, t_exit = r.wait_exit(EXIT_LIMIT)
                row.update(exit_status=rc,
                           poweroff_to_exit_s=None if t_exit is None else t_exit - t_go)
                if rc is None:
                    row["error"] = f"did not exit within {EXIT_LIMIT} s of the marker (killed)"
                elif rc != 0:
                    row["error"] = f"exit status {rc} after poweroff"
                log(f"boot run {run}/{runs} {name:>4}: marker after {snap['t']:.2f} s, "
                    f"{common.fmt_int(snap['exits'])} exits, "
                    f"{common.fmt_mib(row.get('rss_outside_kib'))} MiB RSS outside guest RAM, "
                    f"{common.fmt_mib(row.get('ram_huge_kib'))} MiB of guest RAM in huge pages"
                    + (f" ({row['error']})" if row.get("error") else "")
                    + (f" [not measured: {row['unmeasured']}]" if row.get("unmeasured") else ""))
            except StepFailed as e:
                failures += 1
                row["error"] = str(e)
                log(f"boot run {run}/{runs} {name:>4}: FAILED: {e}")
            finally:
                r.close()
            csvf.row(row)
    csvf.close()
    return failures


def vmm_log_queues(r):
    """vmm logs where its virtio queues stand (SIGUSR2) into the run's stderr log."""
    try:
        os.kill(r.pid, signal.SIGUSR2)
    except ProcessLookupError:
        pass


def qemu_log_state(sock, errfile):
    """A QEMU guest stuck in a job: what vmm's SIGUSR2 logs, as QEMU's monitor has it (HMP
    info registers and info lapic over the run's QMP socket), appended to the run's stderr
    log, so that a stall of QEMU's can be told apart from vmm's."""
    import socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(sock)
            f = c.makefile("rwb")

            def call(cmd, **args):
                f.write((json.dumps({"execute": cmd, "arguments": args}) + "\n").encode())
                f.flush()
                while True:  # skip events
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        return reply

            json.loads(f.readline())  # the greeting
            call("qmp_capabilities")
            for hmp in ("info registers", "info lapic", "info pic"):
                reply = call("human-monitor-command", **{"command-line": hmp})
                text = reply.get("return", reply.get("error", {}).get("desc", "?"))
                errfile.write(f"# QEMU monitor: {hmp}\n{text}\n".encode())
            errfile.flush()
    except (OSError, ValueError) as e:
        errfile.write(f"# QEMU monitor at {sock}: {e}\n".encode())
        errfile.flush()


def io_vm_run(kind, w, suite, run, runs, out, argv, jobs, job_limit, parse_result, csvf,
              backend_pids=(), expect_offload=None, on_stall=None):
    """Runs one blk/net/vsock guest and writes one CSV row per job: CPU time and KVM exits
    are snapshotted at each BENCH-BEGIN and BENCH-END, the job's own numbers come with its
    BENCH-RESULT line. The data path outside the VMM process (its vhost worker kernel
    threads, found by name at each snapshot, and backend_pids: a vhost-user back-end) is
    snapshotted too. When a job times out, vmm is asked to log its virtio queues (SIGUSR2)
    and on_stall, if given, is called (to have a back-end log its queues) before the guest
    is killed. Returns the number of failed jobs."""
    name = common.vname(kind)
    if expect_offload is None:
        expect_offload = bool(backend_pids) or kind.endswith("-vhost") or suite == "vsock"

    def snap(t):
        return snapshot(r.pid, t, threads=True,
                        offload=list(backend_pids) + vhost_workers(r.pid))
    qmp = None
    if not kind.startswith("vmm"):
        # A monitor socket, for qemu_log_state() when the guest gets stuck.
        qmp = os.path.join(w.scratch, f"qmp-{suite}-{run}-{kind}.sock")
        argv = list(argv) + ["-qmp", f"unix:{qmp},server=on,wait=off"]
    r = VMMRun(argv, os.path.join(out, "logs", f"{suite}-{run}-{kind}.log"))
    rows = {j: {"run": run, "vmm": kind, "job": j, "status": "fail"} for j in jobs}
    begin, stop = {}, {}
    current = None
    try:
        r.start()
        r.deadline = BOOT_LIMIT  # until the first marker
        done = False
        try:
            for t, line in r.lines():
                m = MARKER_RE.search(line)
                if not m:
                    check_line(line)
                    continue
                what, rest = m.group(1), (m.group(2) or "").strip()
                parts = rest.split()
                job = parts[0] if parts else ""
                if what in ("BEGIN", "START") and job in rows:
                    begin[job] = snap(t)
                    stop.pop(job, None)
                    current = job
                    r.deadline = t + job_limit
                elif what == "STOP" and job in begin:
                    stop[job] = snap(t)
                    if suite == "blk" and kind.startswith("vmm"):
                        vmm_log_queues(r)  # after the window: the batching so far, job by job
                    current = None
                    r.deadline = t + JOB_SLACK  # the next job's START, or the END lines
                elif what == "END" and job in begin:
                    fill_window(rows[job], begin[job], stop.get(job) or snap(t), r.pid, expect_offload)
                    grc = parts[1] if len(parts) > 1 else "?"
                    rows[job]["_grc"] = grc
                    if grc != "0":
                        rows[job]["error"] = f"the guest's job exited with status {grc}"
                    current = None
                    r.deadline = t + BOOT_LIMIT  # its result line, then the next BEGIN
                elif what == "RESULT" and job in rows:
                    row = rows[job]
                    kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
                    try:
                        parse_result(row, kv)
                    except (KeyError, ValueError) as e:
                        row["error"] = f"unreadable result ({e}): {rest[:80]}"
                        continue
                    if row.get("_grc") == "0" and row.get("window_s") is not None and "error" not in row:
                        row["status"] = "ok"
                        per_gib(row)
                        log(f"{suite} run {run}/{runs} {name:>4}: {common.describe_job(suite, row)}")
                elif what == "INFO":
                    log(f"{suite} run {run}/{runs} {name:>4}: guest: {rest}")
                elif what == "ERROR":
                    raise StepFailed(f"guest: {rest}")
                elif what == "DONE":
                    done = True
                    break
        except StepFailed as e:
            if str(e) == "timed out":
                if kind.startswith("vmm"):
                    vmm_log_queues(r)
                    time.sleep(0.5)
                elif qmp:
                    qemu_log_state(qmp, r.errfile)
                if on_stall:
                    on_stall()
                raise StepFailed(f"timed out{' in job ' + current if current else ''} "
                                 f"after {r.now():.0f} s") from None
            raise
        if not done:
            raise StepFailed(f"{name} exited (status {r.p.wait()}) before the guest finished: "
                             f"{r.stderr_tail() or r.console_tail()}")
        rc, _ = r.wait_exit(EXIT_LIMIT)
        for row in rows.values():
            row["exit_status"] = rc
            if rc is None and row["status"] == "ok":
                row["error"] = f"did not exit within {EXIT_LIMIT} s of the guest's poweroff (killed)"
    except StepFailed as e:
        for row in rows.values():
            if row["status"] != "ok" and not row.get("error"):
                row["error"] = str(e)
        log(f"{suite} run {run}/{runs} {name:>4}: FAILED: {e}")
    finally:
        r.close()
    nfail = 0
    for j in jobs:
        if rows[j]["status"] != "ok" and not rows[j].get("error"):
            rows[j]["error"] = "the guest did not run this job"
        csvf.row(rows[j])
        nfail += rows[j]["status"] != "ok"
    return nfail


def split_cpu(a, b, pid=None):
    """CPU over the window a..b (two snapshots taken with threads=True), split by thread
    role. vCPU threads are those with guest time; a thread named vhost-PID (the kernel's
    vhost worker inside the process, Linux >= 6.4) is the offloaded data path, not one of
    the VMM's threads. Returns a dict:
      cpu_s          utime+stime of the whole process (all threads, also ones that ended)
      guest_cpu_s    guest time of the process (KVM's tick-sampled guest mode)
      vcpu_cpu_s     run time of the vCPU threads (schedstat, exact)
      other_cpu_s    the VMM's non-vCPU threads (event loop, I/O workers...): their exact
                     run time (schedstat); when a thread of a is gone at b (it ended inside
                     the window, its last run time unknown), cpu_s - vcpu_cpu_s - vhost
                     workers instead if that is larger (10 ms ticks, and /proc/PID/stat and
                     the threads' schedstat are not read at the same instant: a busy vCPU
                     skews it by tens of ms, so it is not used otherwise)
      other_ctxsw    context switches (wakeups) of the non-vCPU threads alive at b
      offload_cpu_s  run time of in-process vhost workers plus, when both snapshots have
                     "offload", the vhost worker kernel threads and back-end processes
      offload_ctxsw  their context switches
      host_cpu_s     other_cpu_s + each vCPU thread's run time minus its guest time: the
                     VMM's CPU outside guest mode
      note           set when a part that cannot be negative came out negative and was
                     counted as 0: guest time is sampled at the timer tick, run time is
                     exact, and under nested emulation a vCPU that mostly sleeps is often
                     running exactly at the tick (its own timer interrupt woke it), so its
                     sampled guest time can exceed its run time.
    Values are None when a snapshot lacks them."""
    r = {k: None for k in ("cpu_s", "guest_cpu_s", "vcpu_cpu_s", "other_cpu_s", "other_ctxsw",
                           "host_cpu_s", "offload_cpu_s", "offload_ctxsw", "note")}
    oa, ob = a.get("offload"), b.get("offload")
    off_cpu = off_ctxsw = None
    if oa is not None and ob is not None:
        off_cpu = max(0.0, ob["cpu"] - oa["cpu"])
        off_ctxsw = max(0, ob["ctxsw"] - oa["ctxsw"])
    ut, st, gt = diff(a, b, "utime"), diff(a, b, "stime"), diff(a, b, "guest_time")
    if ut is None or st is None:
        return r
    r["cpu_s"], r["guest_cpu_s"] = ut + st, gt
    ta, tb = a.get("threads"), b.get("threads")
    if not ta or not tb:
        return r
    vcpu_cpu = vcpu_host = clamped = threads_cpu = worker_cpu = 0.0
    other_ctxsw = worker_ctxsw = 0
    for tid, x in tb.items():
        y = ta.get(tid, {"cpu": 0.0, "gtime": 0.0, "ctxsw": 0})
        if pid is not None and is_vhost_worker(x.get("comm", ""), pid):
            worker_cpu += x["cpu"] - y["cpu"]
            worker_ctxsw += x["ctxsw"] - y["ctxsw"]
        elif x["gtime"] > 0:
            d_cpu, d_g = x["cpu"] - y["cpu"], x["gtime"] - y["gtime"]
            vcpu_cpu += d_cpu
            if d_cpu - d_g < 0:
                clamped += d_g - d_cpu
            else:
                vcpu_host += d_cpu - d_g
        else:
            other_ctxsw += x["ctxsw"] - y["ctxsw"]
            threads_cpu += x["cpu"] - y["cpu"]
    rest = r["cpu_s"] - vcpu_cpu - worker_cpu
    notes = []
    if rest < -0.05:
        # /proc/PID/stat counts in 10 ms ticks, schedstat in ns: more than rounding.
        notes.append(f"non-vCPU CPU from the process total came out {rest:.2f} s (below the "
                     "vCPU threads' sum); the threads' own run time is used")
    other = threads_cpu
    ended = [tid for tid in ta if tid not in tb]
    if ended and rest > threads_cpu:
        other = rest
        notes.append(f"{len(ended)} thread(s) ended inside the window: non-vCPU CPU from the "
                     "process total (10 ms ticks)")
    if clamped > 0.005:
        notes.append(f"the vCPU threads' tick-sampled guest time exceeded their run time by "
                     f"{clamped:.2f} s; that vCPU time outside guest mode counted as 0")
    workers = sum(1 for x in tb.values() if pid is not None and is_vhost_worker(x.get("comm", ""), pid))
    if workers:
        off_cpu = (off_cpu or 0.0) + worker_cpu
        off_ctxsw = (off_ctxsw or 0) + worker_ctxsw
    r["offload_tasks"] = (ob or {}).get("tasks", 0) + workers
    r.update(vcpu_cpu_s=vcpu_cpu, other_cpu_s=other, other_ctxsw=other_ctxsw,
             host_cpu_s=other + vcpu_host, offload_cpu_s=off_cpu, offload_ctxsw=off_ctxsw,
             note="; ".join(notes) or None)
    return r


def fill_window(row, a, b, pid=None, expect_offload=False):
    """Fills row with the window a..b. expect_offload: the variant has a data path outside
    the VMM's own threads (vhost, a back-end): if no such task was found, its CPU is not
    measured (rather than 0)."""
    row["window_s"] = b["t"] - a["t"]
    c = split_cpu(a, b, pid)
    if expect_offload and c["offload_cpu_s"] is not None and not c.get("offload_tasks"):
        c["offload_cpu_s"] = c["offload_ctxsw"] = None
        add_unmeasured(row, f"off-process data path: no vhost worker (vhost-{pid}) or back-end "
                            "process found")
    for k in ("cpu_s", "guest_cpu_s", "vcpu_cpu_s", "other_cpu_s", "other_ctxsw", "host_cpu_s",
              "offload_cpu_s", "offload_ctxsw"):
        row[k] = c[k]
    if c["note"]:
        row["note"] = c["note"]
    for k in KVM_STATS:
        row[k] = diff(a, b, k)
    for snap in (a, b):
        if snap.get("unmeasured"):
            add_unmeasured(row, snap["unmeasured"])


def per_gib(row):
    """Per GiB moved (rows with bytes), or per operation (rows with ops: the ping-pong)."""
    if row.get("ops"):
        n = row["ops"]
        for k, out, scale in (("exits", "exits_per_op", 1), ("other_cpu_s", "other_cpu_us_per_op", 1e6),
                              ("other_ctxsw", "other_ctxsw_per_op", 1),
                              ("offload_cpu_s", "offload_cpu_us_per_op", 1e6)):
            if row.get(k) is not None:
                row[out] = row[k] * scale / n
        return
    gib = row["bytes"] / (1 << 30)
    if gib <= 0:
        return
    for k, out in (("exits", "exits_per_gib"), ("cpu_s", "cpu_s_per_gib"),
                   ("host_cpu_s", "host_cpu_s_per_gib"), ("other_cpu_s", "other_cpu_s_per_gib"),
                   ("other_ctxsw", "other_ctxsw_per_gib"), ("offload_cpu_s", "offload_cpu_s_per_gib")):
        if row.get(k) is not None:
            row[out] = row[k] / gib


def parse_fio(row, kv):
    rkib, wkib = int(kv["read_kib"]), int(kv["write_kib"])
    rms, wms = int(kv["read_ms"]), int(kv["write_ms"])
    if int(kv.get("error", "0") or 0):
        raise ValueError(f"fio error {kv['error']}")
    row["bytes"] = (rkib + wkib) * 1024
    row["seconds"] = max(rms, wms) / 1000
    if row["seconds"] <= 0:
        raise ValueError("runtime 0")
    row["iops"] = float(kv["read_iops"]) + float(kv["write_iops"])
    row["mb_per_s"] = row["bytes"] / row["seconds"] / 1e6


def parse_iperf(row, kv):
    row["bytes"] = int(kv["bytes"])
    row["seconds"] = float(kv["seconds"])
    if row["seconds"] <= 0:
        raise ValueError("duration 0")
    row["mbit_per_s"] = row["bytes"] * 8 / row["seconds"] / 1e6
    row["mb_per_s"] = row["bytes"] / row["seconds"] / 1e6


def run_cmd(argv, check=True, timeout=120):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise StepFailed(f"{' '.join(argv)}: exit status {p.returncode}: {p.stderr.strip()[:200]}")
    return p


def o_direct_works(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return False
    os.close(fd)
    return True


def backend_argv(w, kind, disk, sock):
    """The vhost-user-blk back-end process of blk variant kind (serving disk on sock), or
    None for the in-process variants. Every back-end bypasses the host's page cache, as
    QEMU's and vmm's in-process disks do: vmm-vhost-user-blk with --direct,
    qemu-storage-daemon with cache.direct=on."""
    if kind in ("vmm-vub", "qemu-vub"):
        return [w.vub or "vmm-vhost-user-blk", "--socket", sock, "--image", disk, "--direct"]
    if kind in ("vmm-qsd", "qemu-qsd"):
        driver = "host_device" if disk.startswith("/dev/") else "file"
        return [w.qsd or "qemu-storage-daemon",
                "--blockdev", f"driver={driver},node-name=disk0,filename={disk},cache.direct=on,aio=threads",
                "--export", f"type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,"
                            f"addr.path={sock},writable=on"]
    return None


def backend_missing(w, kind):
    """Why blk variant kind cannot be measured here, or None."""
    if kind == "vmm-base" and not w.vmm_base:
        return "no vmm binary to measure as vmm-base (scripts/bench --baseline VMM)"
    if kind in ("vmm-vub", "qemu-vub") and not w.vub:
        return "vmm-vhost-user-blk was not built (build/vhost/vmm-vhost-user-blk)"
    if kind in ("vmm-qsd", "qemu-qsd") and not w.qsd:
        return ("qemu-storage-daemon is not installed (Debian package qemu-system-common; "
                "scripts/install-deps)")
    return None


def start_backend(w, kind, disk, sock, log_path):
    """Starts blk variant kind's back-end and waits (30 s at most) for its socket; None for
    the in-process variants. Raises StepFailed when it does not come up."""
    argv = backend_argv(w, kind, disk, sock)
    if not argv:
        return None
    try:
        os.unlink(sock)
    except OSError:
        pass
    logf = open(log_path, "w")
    logf.write("# " + " ".join(argv) + "\n")
    logf.flush()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True, close_fds=True)
    except OSError as e:
        raise StepFailed(f"cannot start the back-end {argv[0]}: {e.strerror}") from None
    finally:
        logf.close()
    t = time.monotonic()
    while not os.path.exists(sock):
        if p.poll() is not None:
            raise StepFailed(f"the back-end {os.path.basename(argv[0])} exited with status "
                             f"{p.returncode} before listening (see {os.path.basename(log_path)})")
        if time.monotonic() - t > 30:
            stop_backend(p)
            raise StepFailed(f"the back-end {os.path.basename(argv[0])} did not create its socket in 30 s")
        time.sleep(0.05)
    return p


def backend_log_queues(kind, p):
    """A guest stuck in a job: vmm-vhost-user-blk logs where each of its queues stands
    (SIGUSR1) into its log, so that the log says whether requests waited untaken, stayed
    in flight, or were answered without the interrupt the guest asked for."""
    if kind not in ("vmm-vub", "qemu-vub") or p is None or p.poll() is not None:
        return
    try:
        os.kill(p.pid, signal.SIGUSR1)
    except ProcessLookupError:
        return
    time.sleep(0.5)
    log(f"blk: {common.vname(kind)}'s back-end logged its queues (SIGUSR1): see its .backend.log")


def stop_backend(p):
    if p is None or p.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass


def blk_suite(w, runs, out, runtime, variants=None):
    jobs = common.BLK_JOBS
    variants = variants or common.VARIANTS["blk"]
    csvf = CSVOut(os.path.join(out, "blk.csv"), IO_COLUMNS)
    img = os.path.join(w.scratch, "bench-disk.img")
    loop = None
    failures = 0
    try:
        t = time.monotonic()
        run_cmd(["fallocate", "-l", "1G", img])
        fstype = run_cmd(["stat", "-f", "-c", "%T", img]).stdout.strip()
        if o_direct_works(img):
            # A real file system: write every block, so that reads hit the device and not
            # unwritten extents that read back as zeros without any I/O.
            run_cmd(["dd", "if=/dev/zero", f"of={img}", "bs=1M", "count=1024",
                     "conv=notrunc,fsync", "status=none"], timeout=600)
            disk = img
            how = f"raw image on {fstype} ({img})"
        else:
            # tmpfs (the L1's /tmp) has no O_DIRECT before Linux 6.6: put a loop device on it.
            # fallocate already allocated (zeroed) every page of the image.
            loop = run_cmd(["losetup", "--find", "--show", img]).stdout.strip()
            disk = loop
            how = f"loop device {loop} on a raw image on {fstype} (no O_DIRECT on {fstype})"
        log(f"blk: disk: 1 GiB {how}, prepared in {time.monotonic() - t:.1f} s")
        w.meta["blk_disk"] = how
        cmdline = f"{BOOT_CMDLINE} bench.runtime={runtime}"
        limit = runtime + JOB_SLACK
        skipped = {}
        for v in variants:
            why = backend_missing(w, v)
            if why:
                skipped[v] = why
                log(f"blk: {common.variant_label('blk', v)}: not measured: {why}")
        w.meta["skipped"] = skipped
        w.meta["backends"] = {v: " ".join(backend_argv(w, v, disk, "SOCKET"))
                              for v in variants if v not in skipped and backend_argv(w, v, disk, "S")}
        for run in range(1, runs + 1):
            for kind in order(run, variants):
                if kind in skipped:
                    for j in jobs:
                        csvf.row({"run": run, "vmm": kind, "job": j, "status": "skipped",
                                  "error": skipped[kind]})
                    continue
                sock = os.path.join(w.scratch, f"blk-{kind}.sock")
                be = None
                try:
                    be = start_backend(w, kind, disk, sock,
                                       os.path.join(out, "logs", f"blk-{run}-{kind}.backend.log"))
                except StepFailed as e:
                    log(f"blk run {run}/{runs} {common.vname(kind)}: FAILED: {e}")
                    for j in jobs:
                        csvf.row({"run": run, "vmm": kind, "job": j, "status": "fail", "error": str(e)})
                        failures += 1
                    continue
                try:
                    argv = vmm_argv(kind, w, w.initrd("blk"), 1, common.IO_GUEST_MIB, cmdline,
                                    disk=disk, tools=w.file("blk-tools.img"),
                                    vhost_user=sock if be else None)
                    failures += io_vm_run(kind, w, "blk", run, runs, out, argv, jobs, limit,
                                          parse_fio, csvf, backend_pids=[be.pid] if be else [],
                                          on_stall=lambda: backend_log_queues(kind, be))
                finally:
                    stop_backend(be)
    except (StepFailed, subprocess.TimeoutExpired) as e:
        log(f"blk: FAILED to set up: {e}")
        for run in range(1, runs + 1):
            for kind in order(run, variants):
                for j in jobs:
                    csvf.row({"run": run, "vmm": kind, "job": j, "status": "fail",
                              "error": f"setup failed: {e}"})
                    failures += 1
    finally:
        if loop:
            run_cmd(["losetup", "-d", loop], check=False)
        try:
            os.unlink(img)
        except OSError:
            pass
        csvf.close()
    return failures


def port_listening(port):
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                for line in fh.readlines()[1:]:
                    p = line.split()
                    if int(p[1].rsplit(":", 1)[1], 16) == port and p[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def start_iperf_servers(out, run, kind):
    servers = []
    for port in (PORT_TX, PORT_RX):
        logf = open(os.path.join(out, "logs", f"net-{run}-{kind}.iperf3-server-{port}.log"), "w")
        servers.append(subprocess.Popen(["iperf3", "-s", "-1", "-B", HOST_ADDR, "-p", str(port)],
                                        stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, start_new_session=True))
        logf.close()
    t = time.monotonic()
    while not all(port_listening(p) for p in (PORT_TX, PORT_RX)):
        if time.monotonic() - t > 30:
            stop_servers(servers)
            raise StepFailed("the iperf3 servers did not start listening within 30 s")
        if any(s.poll() is not None for s in servers):
            stop_servers(servers)
            raise StepFailed("an iperf3 server exited at once (see logs/net-*.iperf3-server-*.log)")
        time.sleep(0.1)
    return servers


def stop_servers(servers):
    for s in servers:
        if s.poll() is None:
            try:
                os.killpg(s.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        s.wait()


def net_suite(w, runs, out, seconds, variants=None):
    jobs = common.NET_JOBS
    variants = variants or common.VARIANTS["net"]
    csvf = CSVOut(os.path.join(out, "net.csv"), IO_COLUMNS)
    ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"
    failures = 0
    tap_made = False
    try:
        run_cmd([ip, "link", "del", TAP], check=False)
        run_cmd([ip, "tuntap", "add", "dev", TAP, "mode", "tap"])
        tap_made = True
        run_cmd([ip, "addr", "add", f"{HOST_ADDR}/{PREFIX}", "dev", TAP])
        run_cmd([ip, "link", "set", TAP, "up"])
        w.meta["net_link"] = (f"tap {TAP} in the VMM's host ({HOST_ADDR}/{PREFIX}); guest "
                              f"{GUEST_ADDR}; iperf3 server on the host side, client in the guest")
        log(f"net: tap {TAP} with {HOST_ADDR}/{PREFIX}; guest {GUEST_ADDR}")
        cmdline = (f"{BOOT_CMDLINE} bench.time={seconds} bench.host={HOST_ADDR} "
                   f"bench.guest={GUEST_ADDR}/{PREFIX} bench.port_tx={PORT_TX} bench.port_rx={PORT_RX}")
        limit = seconds + JOB_SLACK
        for run in range(1, runs + 1):
            for kind in order(run, variants):
                argv = vmm_argv(kind, w, w.initrd("net"), 1, common.IO_GUEST_MIB, cmdline, tap=TAP)
                try:
                    servers = start_iperf_servers(out, run, kind)
                except StepFailed as e:
                    log(f"net run {run}/{runs} {common.vname(kind):>4}: FAILED: {e}")
                    for j in jobs:
                        csvf.row({"run": run, "vmm": kind, "job": j, "status": "fail", "error": str(e)})
                        failures += 1
                    continue
                try:
                    failures += io_vm_run(kind, w, "net", run, runs, out, argv, jobs, limit,
                                          parse_iperf, csvf)
                finally:
                    stop_servers(servers)
    except (StepFailed, subprocess.TimeoutExpired) as e:
        log(f"net: FAILED to set up: {e}")
        for run in range(1, runs + 1):
            for kind in order(run, variants):
                for j in jobs:
                    csvf.row({"run": run, "vmm": kind, "job": j, "status": "fail",
                              "error": f"setup failed: {e}"})
                    failures += 1
    finally:
        if tap_made:
            run_cmd([ip, "link", "del", TAP], check=False)
        csvf.close()
    return failures


VSOCK_PORT = 5401
VSOCK_CIDS = {"vmm": 103, "qemu": 104}  # one per VMM: a CID still held by the previous VM never blocks the next


def parse_vsock(row, kv):
    """vsock-bench's line: bytes= seconds= (tx, rx) or ops= seconds= median_us= p99_us= (rr)."""
    row["seconds"] = float(kv["seconds"])
    if row["seconds"] <= 0:
        raise ValueError("duration 0")
    if "ops" in kv:
        row["ops"] = int(kv["ops"])
        if row["ops"] <= 0:
            raise ValueError("no round trips")
        row["median_us"] = float(kv["median_us"])
        row["p99_us"] = float(kv["p99_us"])
        row["bytes"] = 2 * row["ops"]
        return
    parse_iperf(row, kv)


def vsock_suite(w, runs, out, nbytes, ops, variants=None):
    jobs = common.VSOCK_JOBS
    variants = variants or common.VARIANTS["vsock"]
    csvf = CSVOut(os.path.join(out, "vsock.csv"), IO_COLUMNS)
    failures = 0
    try:
        tool = w.file("vsock-bench")
        cmdline = f"{BOOT_CMDLINE} bench.port={VSOCK_PORT} bench.bytes={nbytes} bench.ops={ops}"
        w.meta["vsock_link"] = (f"vhost-vsock, guest CID {VSOCK_CIDS['vmm']} (vmm) / "
                                f"{VSOCK_CIDS['qemu']} (QEMU); vsock-bench server on the host "
                                f"(CID 2, port {VSOCK_PORT}), client in the guest; {nbytes >> 20} MiB "
                                f"each way, {ops} round trips of 1 byte")
        limit = JOB_SLACK + 60
        for run in range(1, runs + 1):
            for kind in order(run, variants):
                logf = open(os.path.join(out, "logs", f"vsock-{run}-{kind}.server.log"), "w")
                srv = subprocess.Popen([tool, "server", str(VSOCK_PORT)], stdin=subprocess.DEVNULL,
                                       stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
                logf.close()
                try:
                    time.sleep(0.3)
                    if srv.poll() is not None:
                        raise StepFailed(f"the vsock-bench server exited with status {srv.returncode} "
                                         f"(see logs/vsock-{run}-{kind}.server.log)")
                    argv = vmm_argv(kind, w, w.initrd("vsock"), 1, common.IO_GUEST_MIB, cmdline,
                                    vsock_cid=VSOCK_CIDS[common.kind_of(kind)])
                    failures += io_vm_run(kind, w, "vsock", run, runs, out, argv, jobs, limit,
                                          parse_vsock, csvf)
                except StepFailed as e:
                    log(f"vsock run {run}/{runs} {common.vname(kind):>4}: FAILED: {e}")
                    for j in jobs:
                        csvf.row({"run": run, "vmm": kind, "job": j, "status": "fail", "error": str(e)})
                        failures += 1
                finally:
                    stop_servers([srv])
    except (StepFailed, OSError, subprocess.TimeoutExpired) as e:
        log(f"vsock: FAILED to set up: {e}")
        for run in range(1, runs + 1):
            for kind in order(run, variants):
                for j in jobs:
                    csvf.row({"run": run, "vmm": kind, "job": j, "status": "fail",
                              "error": f"setup failed: {e}"})
                    failures += 1
    finally:
        csvf.close()
    return failures


# ---- environment ----------------------------------------------------------------------------

class Work:
    def __init__(self, work, scratch):
        self.scratch = scratch
        # Copies on local storage (tmpfs inside L1): the originals may be on 9p.
        self.vmm = os.path.join(scratch, "vmm")
        shutil.copy2(os.path.join(work, "vmm"), self.vmm)
        self.kernel = os.path.join(scratch, "vmlinuz")
        shutil.copy2(os.path.join(work, "vmlinuz"), self.kernel)
        self.work = work
        self.qemu = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
        self.qsd = shutil.which("qemu-storage-daemon")
        self.vmm_base = None  # --baseline: the vmm binary of variant vmm-base
        if os.path.exists(os.path.join(work, "vmm-base")):
            self.vmm_base = os.path.join(scratch, "vmm-base")
            shutil.copy2(os.path.join(work, "vmm-base"), self.vmm_base)
        self.vub = None
        if os.path.exists(os.path.join(work, "vmm-vhost-user-blk")):
            self.vub = os.path.join(scratch, "vmm-vhost-user-blk")
            shutil.copy2(os.path.join(work, "vmm-vhost-user-blk"), self.vub)
        self.meta = {}
        self.mem_opts = ""  # appended to vmm's --memory SIZE (--vmm-memory)

    def file(self, name):
        """A prepared file, copied to local storage on first use."""
        path = os.path.join(self.scratch, name)
        if not os.path.exists(path):
            shutil.copy2(os.path.join(self.work, name), path)
        return path

    def initrd(self, suite):
        return self.file(f"{suite}.initrd")


def warm_qemu(qemu):
    """Reads QEMU's binary, libraries and firmware once, so that the first timed run does
    not pay for cold file caches (inside L1 they come over 9p)."""
    files = [qemu]
    try:
        out = run_cmd(["ldd", qemu], check=False).stdout
        files += re.findall(r"=> (/\S+)", out)
    except (OSError, subprocess.TimeoutExpired):
        pass
    files += glob.glob("/usr/share/qemu/*.bin") + glob.glob("/usr/share/qemu/*.rom")
    files += glob.glob("/usr/lib/x86_64-linux-gnu/qemu/*.so")
    for f in files:
        try:
            with open(f, "rb") as fh:
                while fh.read(1 << 20):
                    pass
        except OSError:
            pass


def ensure_debugfs():
    if os.path.isdir(KVM_DEBUGFS):
        return True
    subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"],
                   stdin=subprocess.DEVNULL, capture_output=True)
    return os.path.isdir(KVM_DEBUGFS)


THP_DIR = "/sys/kernel/mm/transparent_hugepage"
THP_FILES = ("enabled", "shmem_enabled", "defrag")
# Debian 12's kernel (6.1) defaults: CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS=y (anonymous memory
# gets huge pages), shmem (memfd) none, defrag only where advised.
THP_DEBIAN = {"enabled": "always", "shmem_enabled": "never", "defrag": "madvise"}


def thp_read():
    """The selected mode of each THP setting ("?" when unreadable)."""
    out = {}
    for name in THP_FILES:
        try:
            with open(f"{THP_DIR}/{name}") as f:
                m = re.search(r"\[([^\]]+)\]", f.read())
            out[name] = m.group(1) if m else "?"
        except OSError:
            out[name] = "?"
    return out


def thp_parse(spec):
    """--thp: "keep" (None), "debian", or "ENABLED,SHMEM_ENABLED" (e.g. madvise,advise)."""
    if spec == "keep":
        return None
    if spec == "debian":
        return dict(THP_DEBIAN)
    parts = spec.split(",")
    if len(parts) != 2 or not all(parts):
        raise SystemExit(f"--thp '{spec}': use keep, debian or ENABLED,SHMEM_ENABLED")
    return {"enabled": parts[0], "shmem_enabled": parts[1]}


def thp_write(settings):
    for name, mode in settings.items():
        try:
            with open(f"{THP_DIR}/{name}", "w") as f:
                f.write(mode)
        except OSError as e:
            raise SystemExit(f"cannot set {THP_DIR}/{name} to {mode}: {e.strerror}")


def environment(w, args):
    def cmd(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else ""
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    nested = os.path.isdir("/run/nested") and os.path.exists("/run/nested/cmd.sh")
    return {
        "where": ("in a nested L1 VM (scripts/with-kvm: QEMU TCG on the host)" if nested
                  else "directly on this machine"),
        "kernel_running": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_mib": int(open("/proc/meminfo").read().split()[1]) // 1024,
        "loadavg_start": load,
        "qemu_version": cmd(w.qemu, "--version").splitlines()[0] if cmd(w.qemu, "--version") else "",
        "vmm_version": cmd(w.vmm, "--version").splitlines()[0] if cmd(w.vmm, "--version") else "",
        "fio_version": cmd("fio", "--version"),
        "iperf3_version": (cmd("iperf3", "--version").splitlines() or [""])[0],
        "runs": args.runs,
        "fio_runtime_s": args.fio_runtime,
        "iperf_time_s": args.iperf_time,
        "vsock_mib": args.vsock_mib,
        "vsock_ops": args.vsock_ops,
    }


def keep_attempt(out):
    """scripts/bench empties the output directory before it starts; what is in it now was
    measured by an earlier attempt of this same run (scripts/nested runs the command again in
    a fresh L1 when the emulated machine failed). Moved to out/attempt-N/ rather than
    overwritten: the report covers the last attempt, the earlier ones stay for a look."""
    names = [n for n in os.listdir(out) if n == "logs" or n == "meta.json" or n.endswith(".csv")]
    if not names:
        return
    n = 1
    while os.path.exists(os.path.join(out, f"attempt-{n}")):
        n += 1
    dest = os.path.join(out, f"attempt-{n}")
    os.makedirs(dest)
    for name in names:
        os.rename(os.path.join(out, name), os.path.join(dest, name))
    log(f"the output directory had an earlier attempt's results (the L1 was restarted): moved to {dest}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fio-runtime", type=int, default=10)
    ap.add_argument("--iperf-time", type=int, default=10)
    ap.add_argument("--vmm-memory", default="")
    ap.add_argument("--thp", default="keep")
    ap.add_argument("--vsock-mib", type=int, default=128)
    ap.add_argument("--vsock-ops", type=int, default=5000)
    ap.add_argument("--mig-cases", default=",".join(common.MIG_CASES))
    ap.add_argument("--mig-dirty", type=int, default=16)
    ap.add_argument("--mig-wss", type=int, default=128)
    ap.add_argument("--mig-downtime", type=int, default=300)
    ap.add_argument("--mig-beat", type=int, default=10)
    ap.add_argument("--variants", default="")
    ap.add_argument("--baseline", action="store_true")
    ap.add_argument("suites", nargs="+")
    args = ap.parse_args()

    keep_attempt(args.out)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="vmm-bench.", dir=os.environ.get("TMPDIR", "/tmp"))
    failures = 0
    thp_want = thp_parse(args.thp)
    thp_saved = thp_read()
    try:
        if thp_want:
            thp_write(thp_want)
        w = Work(args.work, scratch)
        w.mem_opts = args.vmm_memory
        if not ensure_debugfs():
            log(f"warning: {KVM_DEBUGFS} is missing (debugfs not mounted?): no exit counts")
        meta = environment(w, args)
        meta["thp"] = thp_read()
        meta["thp_requested"] = args.thp
        meta["vmm_memory"] = args.vmm_memory
        log(f"transparent huge pages here: " + ", ".join(f"{k}={v}" for k, v in meta["thp"].items())
            + (f" (set by --thp {args.thp})" if thp_want else "")
            + (f"; vmm --memory SIZE,{args.vmm_memory}" if args.vmm_memory else ""))
        log(f"measuring {', '.join(args.suites)} ({args.runs} run(s) each for vmm and QEMU), "
            f"{meta['where']}, {meta['cpus']} CPUs, load {meta['loadavg_start']}")
        warm_qemu(w.qemu)
        if "migrate" in args.suites:
            try:
                with open(os.path.join(args.work, "migrate.json")) as fh:
                    q10 = json.load(fh).get("qemu10")
                if q10:
                    warm_qemu(os.path.join(os.path.dirname(q10), "..", "root", "usr", "bin",
                                           "qemu-system-x86_64"))
            except (OSError, ValueError):
                pass
        meta["suites"] = {}
        t_all = time.monotonic()
        for s in args.suites:
            t = time.monotonic()
            w.meta = {}
            log(f"suite {s}: starting")
            chosen = [v for v in args.variants.split(",") if v]
            only = None
            if s in ("blk", "net", "vsock") and not args.baseline:
                # No --baseline: vmm-base is not a column at all (not even a skipped one).
                only = [v for v in common.VARIANTS[s] if v != "vmm-base"]
            if chosen and s in ("blk", "net", "vsock"):
                only = [v for v in (only or common.VARIANTS[s]) if v in chosen]
                if not only:
                    log(f"suite {s}: none of --variants {args.variants} belongs to it: skipped")
                    continue
                log(f"suite {s}: only {', '.join(common.vname(v) for v in only)} (--variants)")
            if s == "boot":
                f = boot_suite(w, args.runs, args.out)
            elif s == "blk":
                f = blk_suite(w, args.runs, args.out, args.fio_runtime, only)
            elif s == "net":
                f = net_suite(w, args.runs, args.out, args.iperf_time, only)
            elif s == "vsock":
                f = vsock_suite(w, args.runs, args.out, args.vsock_mib << 20, args.vsock_ops, only)
            elif s == "migrate":
                opts = {"cases": [c for c in args.mig_cases.split(",") if c],
                        "dirty_mib": args.mig_dirty, "wss_mib": args.mig_wss,
                        "downtime_ms": args.mig_downtime, "beat_ms": args.mig_beat}
                f = migrate.migrate_suite(w, args.runs, args.out, opts, CSVOut, order)
            else:
                raise SystemExit(f"unknown suite {s}")
            failures += f
            if only is not None:
                skip_not_asked(os.path.join(args.out, f"{s}.csv"), s, only, args.runs,
                               args.baseline)
            took = time.monotonic() - t
            meta["suites"][s] = dict(w.meta, seconds=round(took, 1), failures=f)
            log(f"suite {s}: done in {took:.0f} s" + (f", {f} failed measurement(s)" if f else ""))
        with open("/proc/loadavg") as fh:
            meta["loadavg_end"] = " ".join(fh.read().split()[:3])
        meta["seconds"] = round(time.monotonic() - t_all, 1)
        with open(os.path.join(args.out, "meta.json"), "w") as fh:
            json.dump(meta, fh, indent=2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if thp_want:
            # Put the host's settings back (inside a nested L1 it is thrown away anyway).
            try:
                thp_write({k: v for k, v in thp_saved.items() if k in thp_want and v != "?"})
            except SystemExit as e:
                log(f"warning: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
