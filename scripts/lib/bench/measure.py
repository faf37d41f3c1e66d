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


def proc_rss(pid, ram_bytes):
    """Resident memory split into guest RAM and the rest, in KiB, from /proc/PID/smaps.
    Guest RAM: vmm's memfd mapping "/memfd:vmm-guest-ram (deleted)"; QEMU's anonymous
    mapping of exactly the guest RAM size (or, failing that, the largest anonymous one
    at least that big)."""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            text = f.read()
    except OSError:
        return None
    maps = []  # [size, name, rss]
    for line in text.splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            maps.append([hi - lo, head[5] if len(head) > 5 else "", 0])
        elif head and head[0] == "Rss:" and maps:
            maps[-1][2] = int(head[1])
    total = sum(m[2] for m in maps)
    ram = [m for m in maps if "vmm-guest-ram" in m[1]]
    how = "memfd vmm-guest-ram"
    if not ram:
        ram = [m for m in maps if m[1] == "" and m[0] == ram_bytes]
        how = "anonymous mapping of the RAM size"
    if not ram:
        big = [m for m in maps if m[1] == "" and m[0] >= ram_bytes]
        ram = [max(big, key=lambda m: m[0])] if big else []
        how = "largest anonymous mapping"
    guest = sum(m[2] for m in ram)
    return {"rss_total_kib": total, "rss_guest_ram_kib": guest,
            "rss_outside_kib": total - guest, "ram_mapping": how if ram else "not found"}


class Snapshot(dict):
    pass


def snapshot(pid, t, ram_bytes=None):
    s = Snapshot(t=t)
    d = kvm_vm_dir(pid)
    for k in KVM_STATS:
        s[k] = read_int(f"{d}/{k}") if d else None
    cpu = proc_cpu(pid)
    s["utime"], s["stime"], s["guest_time"] = cpu if cpu else (None, None, None)
    if ram_bytes:
        r = proc_rss(pid, ram_bytes)
        if r:
            s.update(r)
    return s


def diff(a, b, k):
    if a.get(k) is None or b.get(k) is None:
        return None
    return b[k] - a[k]


# ---- one VMM process ------------------------------------------------------------------------

class VMMRun:
    """A VMM process whose stdout is the guest's serial console. Lines are read as they
    arrive and timestamped with the monotonic clock; t=0 is just before the fork."""

    def __init__(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self.buf = b""
        self.rc = None
        self.deadline = 0

    def start(self):
        self.console = open(self.log_path, "wb")
        self.console.write(("# " + " ".join(self.argv) + "\n").encode())
        self.errfile = open(self.log_path + ".stderr", "w+b")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=self.errfile, start_new_session=True, close_fds=True)
        self.pid = self.p.pid
        self.fd = self.p.stdout.fileno()
        os.set_blocking(self.fd, False)

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


def vmm_argv(kind, w, initrd, cpus, mem_mib, cmdline, disk=None, tools=None, tap=None):
    """The VMM's command line. disk: the benchmark disk (O_DIRECT); tools: a read-only
    image with the guest's tools (page cache, default caching of both VMMs)."""
    if kind == "vmm":
        argv = [w.vmm, "run", "--kernel", w.kernel, "--initrd", initrd, "--cpus", str(cpus),
                "--memory", f"{mem_mib}M", "--cmdline", cmdline]
        if disk:
            argv += ["--disk", f"path={disk},direct=on"]
        if tools:
            argv += ["--disk", f"path={tools},readonly=on"]
        if tap:
            argv += ["--net", f"tap={tap},mac={MAC},vhost=off"]
        return argv
    argv = [w.qemu, *common.QEMU_BASE_ARGS, "-smp", str(cpus), "-m", f"{mem_mib}M",
            "-kernel", w.kernel, "-initrd", initrd, "-append", cmdline]
    if disk:
        argv += ["-drive", f"id=d0,file={disk},format=raw,if=none,cache=none,aio=threads",
                 "-device", "virtio-blk-device,drive=d0"]
    if tools:
        argv += ["-drive", f"id=d1,file={tools},format=raw,if=none,readonly=on",
                 "-device", "virtio-blk-device,drive=d1"]
    if tap:
        argv += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off",
                 "-device", f"virtio-net-device,netdev=n0,mac={MAC}"]
    return argv


def order(run):
    """Alternation: odd runs start with vmm, even runs with QEMU."""
    return ("vmm", "qemu") if run % 2 == 1 else ("qemu", "vmm")


def check_line(line):
    if PANIC_RE.search(line):
        raise StepFailed(f"guest kernel: {line.strip()[:120]}")


# ---- CSV output -----------------------------------------------------------------------------

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
                "ram_mapping", "cpu_s", "time_to_exit_s", "exit_status"]

IO_COLUMNS = ["run", "vmm", "job", "status", "error", "bytes", "seconds", "iops", "mb_per_s",
              "mbit_per_s", "window_s", "cpu_s", "guest_cpu_s", "host_cpu_s", "exits",
              "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits",
              "irq_injections", "insn_emulation", "signal_exits", "pf_taken", "pf_fixed",
              "pf_emulate", "hypercalls", "exits_per_gib", "cpu_s_per_gib", "host_cpu_s_per_gib",
              "exit_status"]


def boot_suite(w, runs, out):
    ram = 256
    csvf = CSVOut(os.path.join(out, "boot.csv"), BOOT_COLUMNS)
    failures = 0
    for run in range(1, runs + 1):
        for kind in order(run):
            name = common.VMM_NAMES[kind]
            row = {"run": run, "vmm": kind, "status": "fail"}
            r = VMMRun(vmm_argv(kind, w, w.initrd("boot"), 1, ram, BOOT_CMDLINE),
                       os.path.join(out, "logs", f"boot-{run}-{kind}.log"))
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
                row.update(status="ok", time_to_marker_s=snap["t"],
                           cpu_s=(snap["utime"] or 0) + (snap["stime"] or 0))
                row.update({k: snap.get(k) for k in BOOT_COLUMNS if k in snap and k != "t"})
                rc, t_exit = r.wait_exit(EXIT_LIMIT)
                row.update(exit_status=rc, time_to_exit_s=t_exit)
                if rc is None:
                    row["error"] = f"did not exit within {EXIT_LIMIT} s of the marker (killed)"
                elif rc != 0:
                    row["error"] = f"exit status {rc} after poweroff"
                log(f"boot run {run}/{runs} {name:>4}: marker after {snap['t']:.2f} s, "
                    f"{common.fmt_int(snap['exits'])} exits, "
                    f"{common.fmt_mib(row.get('rss_outside_kib'))} MiB RSS outside guest RAM"
                    + (f" ({row['error']})" if row.get("error") else ""))
            except StepFailed as e:
                failures += 1
                row["error"] = str(e)
                log(f"boot run {run}/{runs} {name:>4}: FAILED: {e}")
            finally:
                r.close()
            csvf.row(row)
    csvf.close()
    return failures


def io_vm_run(kind, w, suite, run, runs, out, argv, jobs, job_limit, parse_result, csvf):
    """Runs one blk/net guest and writes one CSV row per job: CPU time and KVM exits are
    snapshotted at each BENCH-BEGIN and BENCH-END, the job's own numbers come with its
    BENCH-RESULT line. Returns the number of failed jobs."""
    name = common.VMM_NAMES[kind]
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
                    begin[job] = snapshot(r.pid, t)
                    stop.pop(job, None)
                    current = job
                    r.deadline = t + job_limit
                elif what == "STOP" and job in begin:
                    stop[job] = snapshot(r.pid, t)
                    current = None
                    r.deadline = t + JOB_SLACK  # the next job's START, or the END lines
                elif what == "END" and job in begin:
                    fill_window(rows[job], begin[job], stop.get(job) or snapshot(r.pid, t))
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
                    if row.get("_grc") == "0" and row.get("window_s") is not None:
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


def fill_window(row, a, b):
    row["window_s"] = b["t"] - a["t"]
    ut, st, gt = diff(a, b, "utime"), diff(a, b, "stime"), diff(a, b, "guest_time")
    if ut is not None:
        row["cpu_s"] = ut + st
        row["guest_cpu_s"] = gt
        row["host_cpu_s"] = ut + st - gt
    for k in KVM_STATS:
        row[k] = diff(a, b, k)


def per_gib(row):
    gib = row["bytes"] / (1 << 30)
    if gib <= 0:
        return
    for k, out in (("exits", "exits_per_gib"), ("cpu_s", "cpu_s_per_gib"),
                   ("host_cpu_s", "host_cpu_s_per_gib")):
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


def blk_suite(w, runs, out, runtime):
    jobs = common.BLK_JOBS
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
        for run in range(1, runs + 1):
            for kind in order(run):
                argv = vmm_argv(kind, w, w.initrd("blk"), 1, common.IO_GUEST_MIB, cmdline,
                                disk=disk, tools=w.file("blk-tools.img"))
                failures += io_vm_run(kind, w, "blk", run, runs, out, argv, jobs, limit,
                                      parse_fio, csvf)
    except (StepFailed, subprocess.TimeoutExpired) as e:
        log(f"blk: FAILED to set up: {e}")
        for run in range(1, runs + 1):
            for kind in order(run):
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


def net_suite(w, runs, out, seconds):
    jobs = common.NET_JOBS
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
            for kind in order(run):
                argv = vmm_argv(kind, w, w.initrd("net"), 1, common.IO_GUEST_MIB, cmdline, tap=TAP)
                try:
                    servers = start_iperf_servers(out, run, kind)
                except StepFailed as e:
                    log(f"net run {run}/{runs} {common.VMM_NAMES[kind]:>4}: FAILED: {e}")
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
            for kind in order(run):
                for j in jobs:
                    csvf.row({"run": run, "vmm": kind, "job": j, "status": "fail",
                              "error": f"setup failed: {e}"})
                    failures += 1
    finally:
        if tap_made:
            run_cmd([ip, "link", "del", TAP], check=False)
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
        self.meta = {}

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
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fio-runtime", type=int, default=10)
    ap.add_argument("--iperf-time", type=int, default=10)
    ap.add_argument("suites", nargs="+")
    args = ap.parse_args()

    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="vmm-bench.", dir=os.environ.get("TMPDIR", "/tmp"))
    failures = 0
    try:
        w = Work(args.work, scratch)
        if not ensure_debugfs():
            log(f"warning: {KVM_DEBUGFS} is missing (debugfs not mounted?): no exit counts")
        meta = environment(w, args)
        log(f"measuring {', '.join(args.suites)} ({args.runs} run(s) each for vmm and QEMU), "
            f"{meta['where']}, {meta['cpus']} CPUs, load {meta['loadavg_start']}")
        warm_qemu(w.qemu)
        meta["suites"] = {}
        t_all = time.monotonic()
        for s in args.suites:
            t = time.monotonic()
            w.meta = {}
            log(f"suite {s}: starting")
            if s == "boot":
                f = boot_suite(w, args.runs, args.out)
            elif s == "blk":
                f = blk_suite(w, args.runs, args.out, args.fio_runtime)
            elif s == "net":
                f = net_suite(w, args.runs, args.out, args.iperf_time)
            else:
                raise SystemExit(f"unknown suite {s}")
            failures += f
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
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
