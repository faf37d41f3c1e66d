"""The "migrate" suite of scripts/bench (measure.py runs it where KVM works): a live
migration of the same guest by vmm and by QEMU 10 microvm, side by side, per case:

  idle    an idle guest (512 MiB, 2 vCPUs): its heartbeat only
  dirty   a guest dirtying memory at a set rate over a working set (mig-load -r/-w)
  vublk   a guest writing to a vhost-user-blk disk every 10 ms (vmm: vmm-vhost-user-blk,
          whose in-flight requests and queue positions move with DEVICE_STATE; QEMU 10:
          qemu-storage-daemon 10, which has no device state: QEMU drains it)
  fs      a guest holding a file open on a virtio-fs share and appending to it (virtiofsd
          1.13 on both, its state moved with DEVICE_STATE by both VMMs)

Two hosts are two network namespaces joined by a veth pair (as tests/integration/
migrate.sh): the source VMM runs in A, the destination (`vmm run --incoming`, QEMU
`-incoming`) in B; the stream crosses the veth. The guest (mig-load.c) prints a heartbeat
line every 10 ms on its serial console; the harness timestamps each line's arrival from
the source's console and then from the destination's, so the downtime the guest saw is
the gap across the switchover, measured by the host's clock and not the VMM's.

Measured per migration (one CSV row):
  total_s           from the migrate request to the first heartbeat on the destination
  guest_downtime_ms the gap between the last heartbeat from the source and the first
                    from the destination (includes up to one heartbeat period)
  max_stall_ms      the largest gap between heartbeats from the request to 3 s after the
                    switchover, or later if the guest was silent then (pre-copy's own stalls
                    show here; a guest silent for 20 s at the destination fails the run)
  console_gap_ms    the console's silence across the switchover: its last byte from the
                    source to its first from the destination (part of a line counts)
  resume_beat_ms    from that first byte to the destination's first whole heartbeat
  vmm_total_ms, vmm_downtime_ms, vmm_bytes, passes: what the VMM itself reports (vmm: GET
                    vm.migration's total_ms, downtime_ms, bytes, iteration; QEMU:
                    query-migrate's total-time, downtime, ram.transferred, ram.dirty-sync-count)
  wire_bytes        bytes that crossed the veth from A to B (Ethernet frames: both VMMs'
                    streams counted the same way, headers included)
  dirty_mib_s       the dirty rate the guest reached during pre-copy (dirty case)
"""

import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

import common

NS = ("vbmigA", "vbmigB")
VETH = ("vbmA", "vbmB")
ADDR = ("10.233.0.1", "10.233.0.2")
PREFIX = 24
PORT_BASE = 4460          # one port per migration: no TIME_WAIT socket of the last one in the way
GUEST_MIB = 512
GUEST_CPUS = 2
CMDLINE = "console=ttyS0 quiet panic=-1"
FS_TAG = "benchfs"
DISK_MIB = 64

BOOT_LIMIT = 300          # VMM start -> the guest's loads are ready
SETTLE_S = 4.0            # heartbeats before the migration (the normal period, baseline)
LISTEN_LIMIT = 60         # destination started -> it listens
MIGRATE_LIMIT = 600       # migrate request -> completed or failed
DEST_BEAT_LIMIT = 60      # completion -> first heartbeat on the destination
AFTER_S = 3.0             # heartbeats watched on the destination after the first one
STUCK_S = 1.5             # no heartbeat for this long at the end of that: stalled or stuck,
STUCK_WAIT = 20           # stuck if none comes within this
POLL_S = 0.1              # progress queries (both VMMs alike)
QEMU_NO_CAP = 100 << 30   # QEMU's max-bandwidth (its default caps at 128 MiB/s; vmm has none)

BEAT_RE = re.compile(r"H(\d+);")
COUNTER_RE = re.compile(r"^([DWF])(\d+);$")
PANIC_RE = re.compile(r"Kernel panic|BUG: |Oops:|soft lockup|self-detected stall")
IP = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"


class StepFailed(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---- pure parts (tests/integration/bench_parsing.py) ----------------------------------------

def parse_line(line):
    """What a console line of the migrate guest says: ("beat", seq), ("dirty"|"disk"|"file",
    count), ("ready", what), ("error", text), ("panic", text) or None. A heartbeat counts only
    whole ("H<seq>;"): a line cut by the switchover has no terminator."""
    s = line.strip()
    m = COUNTER_RE.match(s)
    if m:
        return ({"D": "dirty", "W": "disk", "F": "file"}[m.group(1)], int(m.group(2)))
    if s.startswith("MIGBENCH-ERROR"):
        return ("error", s[len("MIGBENCH-ERROR"):].strip())
    if s.startswith("MIGBENCH-") and "READY" in s.split()[0]:
        return ("ready", s.split()[0][len("MIGBENCH-"):])
    if s.startswith("BENCH-ERROR"):
        return ("error", s[len("BENCH-ERROR"):].strip())
    if PANIC_RE.search(s):
        return ("panic", s[:120])
    m = BEAT_RE.fullmatch(s)
    if m:
        return ("beat", int(m.group(1)))
    return None


def ready_needed(case):
    """The READY lines the guest prints before case's loads run."""
    return {"idle": {"READY"}, "dirty": {"READY", "DIRTY-READY"},
            "vublk": {"READY", "DISK-READY"}, "fs": {"READY", "FILE-READY"}}[case]


def switchover(beats, t0, after_s=AFTER_S):
    """From the heartbeats [(t, seq, side)] (side "src" or "dst", t on one clock) and the
    migrate request's time t0: the gap across the switchover (last source beat -> first
    destination beat), the largest gap from t0 to after_s past the first destination beat,
    beats missing from the sequence across the switchover, the normal period (median gap
    of the source's beats before t0), and when the destination's first beat came. Values
    that cannot be had are None (no destination beat: no switchover)."""
    out = {"guest_downtime_ms": None, "max_stall_ms": None, "beats_lost": None,
           "beat_period_ms": None, "t_dst_first": None}
    src = sorted((t, s) for t, s, side in beats if side == "src")
    dst = sorted((t, s) for t, s, side in beats if side == "dst")
    before = [t for t, _ in src if t < t0]
    if len(before) >= 3:
        gaps = [b - a for a, b in zip(before, before[1:])]
        out["beat_period_ms"] = statistics.median(gaps) * 1000
    if not dst:
        return out
    t_first, seq_first = dst[0]
    out["t_dst_first"] = t_first
    last_src = [(t, s) for t, s in src if t <= t_first]
    if last_src:
        t_last, seq_last = last_src[-1]
        out["guest_downtime_ms"] = (t_first - t_last) * 1000
        out["beats_lost"] = max(0, seq_first - seq_last - 1)
    window = sorted(t for t, _ in src + dst if t >= (before[-1] if before else t0)
                    and t <= t_first + after_s)
    if len(window) >= 2:
        out["max_stall_ms"] = max(b - a for a, b in zip(window, window[1:])) * 1000
    return out


def vmm_figures(state):
    """The figures of vmm's GET /api/v1/vm.migration reply once "completed"."""
    return {"vmm_total_ms": state.get("total_ms"), "vmm_downtime_ms": state.get("downtime_ms"),
            "vmm_bytes": state.get("bytes"), "passes": state.get("iteration")}


def qemu_figures(info):
    """The figures of QEMU's query-migrate reply once "completed": total-time, downtime and
    the RAM bytes it sent (ram.transferred; ram.total is the guest's RAM size, not a
    transfer), and its dirty-bitmap syncs (the passes over RAM)."""
    ram = info.get("ram") or {}
    return {"vmm_total_ms": info.get("total-time"), "vmm_downtime_ms": info.get("downtime"),
            "vmm_bytes": ram.get("transferred"), "passes": ram.get("dirty-sync-count")}


def link_bytes(ip_json, direction):
    """rx or tx bytes of the one link in `ip -s -j link show dev X`'s output, or None."""
    try:
        links = json.loads(ip_json)
        return int(links[0]["stats64"][direction]["bytes"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def rate_between(samples, t_a, t_b):
    """Pages per second from cumulative counter samples [(t, count)] between t_a and t_b
    (the first and last sample inside), or None with fewer than two."""
    inside = [(t, c) for t, c in samples if t_a <= t <= t_b]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


# ---- processes and their consoles ---------------------------------------------------------

class Guest:
    """A VMM process (in a network namespace) whose stdout is the guest's console: lines are
    timestamped (time.monotonic) as they arrive and logged with the seconds since t_ref."""

    def __init__(self, name, argv, netns, log_path, t_ref):
        self.name, self.argv, self.netns, self.log_path, self.t_ref = name, argv, netns, log_path, t_ref
        self.buf = b""
        self.eof = False
        self.beats = []        # (t, seq)
        self.counters = {"dirty": [], "disk": [], "file": []}  # (t, cumulative)
        self.ready = set()
        self.errors = []
        self.p = None
        self.t_first_byte = self.t_last_byte = None  # console bytes, whole lines or not

    def start(self):
        self.console = open(self.log_path, "wb")
        self.console.write(("# ip netns exec " + self.netns + " " + " ".join(self.argv) + "\n").encode())
        self.err = open(self.log_path + ".stderr", "wb")
        self.p = subprocess.Popen([IP, "netns", "exec", self.netns] + self.argv,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.err,
                                  start_new_session=True, close_fds=True)
        self.pid = self.p.pid  # ip netns exec execs the VMM: the same process
        self.fd = self.p.stdout.fileno()
        os.set_blocking(self.fd, False)

    def feed(self, data, t):
        self.buf += data
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                break
            raw, self.buf = self.buf[:nl], self.buf[nl + 1:]
            self.line(raw.decode("utf-8", "replace").replace("\r", ""), t)

    def line(self, line, t):
        self.console.write(f"[{t - self.t_ref:9.3f}] {line}\n".encode())
        what = parse_line(line)
        if not what:
            return
        kind, v = what
        if kind == "beat":
            if not self.beats or v > self.beats[-1][1]:
                self.beats.append((t, v))
        elif kind in self.counters:
            self.counters[kind].append((t, v))
        elif kind == "ready":
            self.ready.add(v)
        else:
            self.errors.append(f"{kind}: {v}")

    def read(self, t):
        """Reads what is there; False at EOF."""
        if self.eof:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if chunk:
            if self.t_first_byte is None:
                self.t_first_byte = t
            self.t_last_byte = t
        if not chunk:
            if self.buf:
                self.line(self.buf.decode("utf-8", "replace").replace("\r", ""), t)
                self.buf = b""
            self.eof = True
            return False
        self.feed(chunk, t)
        return True

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def stderr_tail(self, n=3):
        self.err.flush()
        try:
            with open(self.log_path + ".stderr", "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def kill(self, grace=5):
        if self.p is None:
            return
        if self.p.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.p.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    pass

    def close(self):
        self.kill()
        end = time.monotonic() + 2  # what is left in the pipe (a stuck writer: give up)
        try:
            while not self.eof and time.monotonic() < end:
                r, _, _ = select.select([self.fd], [], [], 0.2)
                if r:
                    self.read(time.monotonic())
        except OSError:
            pass
        self.p.stdout.close()
        self.console.close()
        self.err.close()


def pump(guests, seconds):
    """Reads the consoles of guests for `seconds` (at least one select)."""
    end = time.monotonic() + seconds
    while True:
        fds = {g.fd: g for g in guests if g.p is not None and not g.eof}
        left = end - time.monotonic()
        if not fds:
            if left > 0:
                time.sleep(left)
            return
        r, _, _ = select.select(list(fds), [], [], max(0.0, left))
        t = time.monotonic()
        for fd in r:
            fds[fd].read(t)
        if time.monotonic() >= end:
            return


class Helper:
    """A back-end process (vmm-vhost-user-blk, qemu-storage-daemon, virtiofsd)."""

    def __init__(self, argv, log_path, sock):
        self.argv, self.log_path, self.sock = argv, log_path, sock
        try:
            os.unlink(sock)
        except OSError:
            pass
        logf = open(log_path, "w")
        logf.write("# " + " ".join(argv) + "\n")
        logf.flush()
        try:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except OSError as e:
            raise StepFailed(f"cannot start {argv[0]}: {e.strerror}") from None
        finally:
            logf.close()
        t = time.monotonic()
        while not os.path.exists(sock):
            if self.p.poll() is not None:
                raise StepFailed(f"{os.path.basename(argv[0])} exited with status {self.p.returncode} "
                                 f"before listening (see {os.path.basename(log_path)})")
            if time.monotonic() - t > 30:
                self.stop()
                raise StepFailed(f"{os.path.basename(argv[0])} did not create {sock} in 30 s")
            time.sleep(0.05)

    def stop(self):
        if self.p.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.p.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                pass


# ---- control channels -----------------------------------------------------------------------

class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def vmm_api(sock, method, path, body=None):
    """One request to vmm's control API: (HTTP status, JSON reply or {})."""
    conn = UnixHTTP(sock)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, f"/api/v1/{path}", body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        r = conn.getresponse()
        raw = r.read()
    except OSError as e:
        raise StepFailed(f"vmm's API at {sock}: {method} {path}: {e}") from None
    finally:
        conn.close()
    try:
        return r.status, json.loads(raw) if raw.strip() else {}
    except ValueError:
        return r.status, {"error": raw[:200].decode("utf-8", "replace")}


class QMP:
    def __init__(self, path, limit=30):
        t = time.monotonic()
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.settimeout(30)
                self.s.connect(path)
                break
            except OSError as e:
                self.s.close()
                if time.monotonic() - t > limit:
                    raise StepFailed(f"QEMU's QMP socket {path}: {e.strerror}") from None
                time.sleep(0.1)
        self.f = self.s.makefile("rwb")
        self.events = []
        greeting = self.f.readline()
        if b"QMP" not in greeting:
            raise StepFailed(f"QMP greeting: {greeting[:100]!r}")
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        try:
            self.f.write(json.dumps(msg).encode() + b"\n")
            self.f.flush()
            while True:
                line = self.f.readline()
                if not line:
                    raise StepFailed(f"QMP {name}: QEMU closed the monitor")
                obj = json.loads(line)
                if "return" in obj:
                    return obj["return"]
                if "error" in obj:
                    raise StepFailed(f"QMP {name}: {obj['error'].get('desc', obj['error'])}")
                self.events.append(obj)
        except (OSError, ValueError) as e:
            raise StepFailed(f"QMP {name}: {e}") from None

    def close(self):
        try:
            self.f.close()
            self.s.close()
        except OSError:
            pass


def listening(pid, port):
    """Whether a socket listens on TCP port in the network namespace of process pid."""
    for f in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{f}") as fh:
                for line in fh.readlines()[1:]:
                    p = line.split()
                    if int(p[1].rsplit(":", 1)[1], 16) == port and p[3] == "0A":
                        return True
        except (OSError, ValueError, IndexError):
            pass
    return False


def run(argv, check=True, timeout=60):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise StepFailed(f"{' '.join(argv)}: exit status {p.returncode}: {p.stderr.strip()[:200]}")
    return p


def veth_bytes(ns, dev, direction):
    p = run([IP, "-n", ns, "-s", "-j", "link", "show", "dev", dev], check=False)
    return link_bytes(p.stdout, direction) if p.returncode == 0 else None


def net_up():
    for ns in NS:
        run([IP, "netns", "del", ns], check=False)
    for ns in NS:
        run([IP, "netns", "add", ns])
    run([IP, "link", "add", VETH[0], "netns", NS[0], "type", "veth", "peer", "name", VETH[1],
         "netns", NS[1]])
    for i in (0, 1):
        run([IP, "-n", NS[i], "addr", "add", f"{ADDR[i]}/{PREFIX}", "dev", VETH[i]])
        run([IP, "-n", NS[i], "link", "set", "lo", "up"])
        run([IP, "-n", NS[i], "link", "set", VETH[i], "up"])


def net_down():
    for ns in NS:
        run([IP, "netns", "del", ns], check=False)


# ---- command lines ----------------------------------------------------------------------------

def guest_cmdline(case, opts):
    c = f"{CMDLINE} bench.case={case} bench.beat={opts['beat_ms']}"
    if case == "dirty":
        c += f" bench.dirty={opts['dirty_mib']} bench.wss={opts['wss_mib']}"
    if case == "fs":
        c += f" bench.tag={FS_TAG}"
    return c


def vmm_argv(t, case, opts, api_sock, backend_sock, incoming=None):
    mem = f"{GUEST_MIB}M" + (",shared=on" if case in ("vublk", "fs") else "")
    argv = [t["vmm"], "run", "-v", "--kernel", t["kernel"], "--initrd", t["initrd"],
            "--cpus", str(GUEST_CPUS), "--memory", mem, "--cmdline", guest_cmdline(case, opts),
            "--api-socket", api_sock]
    if case == "vublk":
        argv += ["--disk", f"vhost-user={backend_sock}"]
    elif case == "fs":
        argv += ["--fs", f"vhost-user={backend_sock},tag={FS_TAG}"]
    if incoming:
        argv += ["--incoming", incoming]
    return argv


def qemu_argv(t, case, opts, qmp_sock, backend_sock, incoming=None):
    base = list(common.QEMU_BASE_ARGS)
    mem = []
    if case in ("vublk", "fs"):
        base[base.index("-M") + 1] += ",memory-backend=mem0"
        mem = ["-object", f"memory-backend-memfd,id=mem0,size={GUEST_MIB}M,share=on"]
    argv = [t["qemu10"], *base, *mem, "-smp", str(GUEST_CPUS), "-m", f"{GUEST_MIB}M",
            "-kernel", t["kernel"], "-initrd", t["initrd"], "-append", guest_cmdline(case, opts),
            "-qmp", f"unix:{qmp_sock},server=on,wait=off"]
    if t.get("qemu10_bios"):
        # microvm's own firmware, qboot (QEMU 7.2's default there too): Debian's QEMU 10 makes
        # bios-microvm.bin a SeaBIOS build, which drives a virtio-blk disk itself from
        # outside the guest's RAM, and a vhost-user-blk back-end refuses those buffers
        # (qemu-storage-daemon: "vu_panic: virtio: invalid address for buffers").
        argv += ["-bios", t["qemu10_bios"]]
    if case == "vublk":
        argv += ["-chardev", f"socket,id=vu0,path={backend_sock}", "-device", "vhost-user-blk,chardev=vu0"]
    elif case == "fs":
        argv += ["-chardev", f"socket,id=fs0,path={backend_sock}",
                 "-device", f"vhost-user-fs-device,chardev=fs0,tag={FS_TAG}"]
    if incoming:
        argv += ["-incoming", incoming]
    return argv


def backend_argv(t, case, kind, side, disk, sock, share):
    """The back-end of case for VMM kind on side ("src"/"dst"), or None."""
    if case == "vublk" and common.kind_of(kind) == "vmm":
        return [t["vub"], "--socket", sock, "--image", disk]
    if case == "vublk":
        driver = "host_device" if disk.startswith("/dev/") else "file"
        return [t["qsd10"], "--blockdev", f"driver={driver},node-name=disk0,filename={disk}",
                "--export", f"type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,"
                            f"addr.path={sock},writable=on"]
    if case == "fs":
        return [t["virtiofsd"], f"--socket-path={sock}", f"--shared-dir={share}", "--sandbox=none"]
    return None


def missing(t, case, kind):
    """Why case cannot run for kind here, or None."""
    if common.kind_of(kind) == "qemu" and not t.get("qemu10"):
        return "QEMU 10 is not in the cache (scripts/fetch-qemu10)"
    if case == "vublk" and common.kind_of(kind) == "vmm" and not t.get("vub"):
        return "vmm-vhost-user-blk was not built (build/vhost/vmm-vhost-user-blk)"
    if case == "vublk" and common.kind_of(kind) == "qemu" and not t.get("qsd10"):
        return "QEMU 10's qemu-storage-daemon is not in the cache (scripts/fetch-qsd)"
    if case == "fs" and not t.get("virtiofsd"):
        return "virtiofsd 1.13 is not in the cache (scripts/fetch-peers)"
    return None


# ---- one migration ---------------------------------------------------------------------------

def one_migration(t, case, kind, run_no, index, out, opts, disk, share):
    """Boots case's guest under kind in namespace A, migrates it to B and measures. Returns
    the CSV row."""
    name = common.vname(kind)
    row = {"run": run_no, "vmm": kind, "job": case, "status": "fail"}
    port = PORT_BASE + index
    uri = f"tcp:{ADDR[1]}:{port}"
    stem = os.path.join(out, "logs", f"migrate-{run_no}-{case}-{kind}")
    scratch = t["scratch"]
    is_vmm = common.kind_of(kind) == "vmm"
    ctl = {s: os.path.join(scratch, f"mig-{s}.{'api' if is_vmm else 'qmp'}") for s in ("src", "dst")}
    for p in ctl.values():
        try:
            os.unlink(p)
        except OSError:
            pass
    helpers, guests, qmps = [], [], []
    t_ref = time.monotonic()
    try:
        # Back-ends: the source's on the disk image, the destination's on a loop device over
        # the same image (another inode: the two back-ends' image locks do not collide, and
        # the destination reads what the source wrote — as two hosts on shared storage).
        bsock = {}
        for side in ("src", "dst"):
            bsock[side] = os.path.join(scratch, f"mig-{side}-backend.sock")
            d = disk.get(side)
            a = backend_argv(t, case, kind, side, d, bsock[side], share)
            if a:
                helpers.append(Helper(a, f"{stem}.{side}-backend.log", bsock[side]))
        mk = vmm_argv if is_vmm else qemu_argv
        src = Guest("source", mk(t, case, opts, ctl["src"], bsock["src"]), NS[0], f"{stem}.src.log", t_ref)
        guests.append(src)
        src.start()
        need = ready_needed(case)
        t_boot = time.monotonic()
        while not need <= src.ready:
            pump([src], 0.2)
            if src.errors:
                raise StepFailed(f"guest on the source: {src.errors[0]}")
            if src.eof or not src.alive():
                raise StepFailed(f"{name} (source) exited before the guest was ready: "
                                 f"{src.stderr_tail()}")
            if time.monotonic() - t_boot > BOOT_LIMIT:
                raise StepFailed(f"the guest's loads were not ready within {BOOT_LIMIT} s "
                                 f"(have {sorted(src.ready)})")
        row["boot_s"] = time.monotonic() - t_boot
        pump([src], SETTLE_S)
        if not src.beats:
            raise StepFailed("no heartbeat from the guest on the source")
        dst_argv = mk(t, case, opts, ctl["dst"], bsock["dst"], incoming=uri)
        dst = Guest("destination", dst_argv, NS[1], f"{stem}.dst.log", t_ref)
        guests.append(dst)
        dst.start()
        t_l = time.monotonic()
        while not listening(dst.pid, port):
            pump(guests, 0.1)
            if not dst.alive():
                raise StepFailed(f"{name} (destination) exited before listening: {dst.stderr_tail()}")
            if time.monotonic() - t_l > LISTEN_LIMIT:
                raise StepFailed(f"{name} (destination) did not listen on {uri} within {LISTEN_LIMIT} s")
        if not is_vmm:
            qsrc = QMP(ctl["src"])
            qmps.append(qsrc)
            qsrc.cmd("migrate-set-parameters", **{"downtime-limit": opts["downtime_ms"],
                                                   "max-bandwidth": QEMU_NO_CAP})
        pump(guests, 0.5)
        wire0 = veth_bytes(NS[0], VETH[0], "tx")

        # ---- the migration ----
        t0 = time.monotonic()
        if is_vmm:
            st, body = vmm_api(ctl["src"], "PUT", "vm.migrate",
                               {"to": uri, "max_downtime_ms": opts["downtime_ms"]})
            if st not in (200, 202):
                raise StepFailed(f"PUT vm.migrate: HTTP {st}: {body.get('error', body)}")
        else:
            qsrc.cmd("migrate", uri=uri)
        final = None
        last_poll = 0.0
        while final is None:
            pump(guests, POLL_S / 2)
            if time.monotonic() - last_poll < POLL_S:
                continue
            last_poll = time.monotonic()
            if last_poll - t0 > MIGRATE_LIMIT:
                raise StepFailed(f"the migration did not end within {MIGRATE_LIMIT} s")
            if is_vmm:
                st, body = vmm_api(ctl["src"], "GET", "vm.migration")
                state = body.get("state")
                if st != 200:
                    raise StepFailed(f"GET vm.migration: HTTP {st}: {body.get('error', body)}")
                if state == "completed":
                    final = vmm_figures(body)
                elif state == "failed":
                    raise StepFailed(f"vmm's migration failed: {body.get('error', body)}")
                elif body.get("not_converging"):
                    row["note"] = f"vmm said the migration does not converge (pass {body.get('iteration')})"
            else:
                info = qsrc.cmd("query-migrate")
                state = info.get("status")
                if state == "completed":
                    final = qemu_figures(info)
                elif state in ("failed", "cancelled"):
                    raise StepFailed(f"QEMU's migration {state}: {info.get('error-desc', info)}")
        t_done = time.monotonic()
        row.update(final)
        # The guest on the destination: its first heartbeat, then AFTER_S more of them.
        t_w = time.monotonic()
        while not dst.beats:
            pump(guests, 0.1)
            if not dst.alive():
                raise StepFailed(f"{name} (destination) exited after the migration: {dst.stderr_tail()}")
            if time.monotonic() - t_w > DEST_BEAT_LIMIT:
                raise StepFailed(f"no heartbeat from the destination within {DEST_BEAT_LIMIT} s of the "
                                 f"migration's end")
        pump(guests, AFTER_S + 0.5)
        # A guest silent at the end of that: stalled (it goes on: a long stall, counted) or
        # stuck (it does not within STUCK_WAIT: the migration failed).
        silent = time.monotonic() - dst.beats[-1][0]
        if silent > STUCK_S:
            n, t_x = len(dst.beats), time.monotonic()
            while len(dst.beats) == n and time.monotonic() - t_x < STUCK_WAIT:
                pump(guests, 0.2)
            if len(dst.beats) == n:
                raise StepFailed(f"the guest's heartbeat at the destination stopped "
                                 f"{dst.beats[-1][0] - dst.beats[0][0]:.1f} s after it resumed there "
                                 f"(beat {dst.beats[-1][1]}; nothing for {time.monotonic() - dst.beats[-1][0]:.1f} s)")
            row["note"] = (f"the guest's heartbeat at the destination paused for "
                           f"{dst.beats[n][0] - dst.beats[n - 1][0]:.1f} s, "
                           f"{dst.beats[n - 1][0] - dst.beats[0][0]:.1f} s after it resumed there")
            pump(guests, 1.0)
        t_end = time.monotonic()
        wire1 = veth_bytes(NS[0], VETH[0], "tx")
        # The guest goes on where it was, not afresh: a destination whose guest crashed and
        # rebooted (QEMU and vmm reboot a guest that resets) prints its boot lines again and
        # restarts its heartbeat at 1.
        if dst.ready:
            raise StepFailed(f"the guest booted afresh at the destination (MIGBENCH-{sorted(dst.ready)[0]} "
                             "again): it crashed or reset after the migration — see the console logs")
        if src.beats and dst.beats[0][1] <= src.beats[-1][1]:
            raise StepFailed(f"the heartbeat went back from {src.beats[-1][1]} at the source to "
                             f"{dst.beats[0][1]} at the destination: not the same guest run")

        beats = [(tt, s, "src") for tt, s in src.beats] + [(tt, s, "dst") for tt, s in dst.beats]
        sw = switchover(beats, t0, after_s=t_end - dst.beats[0][0])
        row.update({k: sw[k] for k in ("guest_downtime_ms", "max_stall_ms", "beats_lost", "beat_period_ms")})
        row["total_s"] = sw["t_dst_first"] - t0
        # Finer than whole heartbeats: the console's silence across the switchover (its last
        # byte from the source to its first from the destination — neither VMM writes
        # anything else there) and how long after its first byte the destination's first
        # whole heartbeat came (a guest slow to get going again there).
        if src.t_last_byte is not None and dst.t_first_byte is not None:
            row["console_gap_ms"] = (dst.t_first_byte - src.t_last_byte) * 1000
            row["resume_beat_ms"] = (sw["t_dst_first"] - dst.t_first_byte) * 1000
        row["wire_bytes"] = None if wire0 is None or wire1 is None else wire1 - wire0
        if row["wire_bytes"] is None:
            add_unmeasured(row, "bytes on the veth: ip -s -j link show gave no counters")
        if case == "dirty":
            r = rate_between(src.counters["dirty"], t0, t_done)
            row["dirty_mib_s"] = None if r is None else r / 256
        # The loads go on at the destination (and nothing went wrong anywhere).
        if src.errors or dst.errors:
            raise StepFailed(f"guest: {(src.errors + dst.errors)[0]}")
        load = {"dirty": "dirty", "vublk": "disk", "fs": "file"}.get(case)
        if load:
            after = [c for tt, c in dst.counters[load] if tt > sw["t_dst_first"]]
            before = [c for tt, c in src.counters[load]]
            if len(after) < 2 or (before and after[-1] <= before[-1]):
                raise StepFailed(f"the guest's {load} load did not go on at the destination "
                                 f"(source's last count {before[-1] if before else '?'}, "
                                 f"destination's {after[-1] if after else 'none'})")
            row["load_on_dest"] = after[-1] - (before[-1] if before else 0)
        # The source: vmm exits 0 by itself; QEMU's stays paused ("postmigrate") until told.
        if is_vmm:
            try:
                src.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise StepFailed("the source vmm did not exit within 30 s of the migration") from None
            if src.p.returncode != 0:
                raise StepFailed(f"the source vmm exited with status {src.p.returncode}: {src.stderr_tail()}")
        else:
            st = qsrc.cmd("query-status").get("status")
            if st != "postmigrate":
                row["note"] = f"QEMU's source ended in state {st}, not postmigrate"
            try:
                qsrc.cmd("quit")
            except StepFailed:
                pass  # it may close the monitor before its reply
        row["status"] = "ok"
        log(f"migrate run {run_no} {case:>5} {name:>4}: total {row['total_s']:.2f} s, guest saw "
            f"{fmt(row['guest_downtime_ms'], '{:.0f}')} ms (the VMM says {fmt(row['vmm_downtime_ms'], '{:.0f}')} ms), "
            f"longest stall {fmt(row['max_stall_ms'], '{:.0f}')} ms, "
            f"{fmt(row['wire_bytes'], '{:,.0f}', 1 / (1 << 20))} MiB on the wire "
            f"({fmt(row['vmm_bytes'], '{:,.0f}', 1 / (1 << 20))} MiB by its count) in {row['passes']} passes"
            + (f", dirtying {row['dirty_mib_s']:.1f} MiB/s" if row.get("dirty_mib_s") is not None else ""))
    except (StepFailed, subprocess.TimeoutExpired, OSError) as e:
        row["error"] = str(e)
        log(f"migrate run {run_no} {case:>5} {name:>4}: FAILED: {e}")
    finally:
        for q in qmps:
            q.close()
        for g in guests:
            if g.alive() and g.name == "destination":
                try:
                    if is_vmm:
                        vmm_api(ctl["dst"], "PUT", "vm.shutdown")
                    else:
                        q = QMP(ctl["dst"], limit=2)
                        q.cmd("quit")
                        q.close()
                    g.p.wait(timeout=15)
                except (StepFailed, OSError, subprocess.TimeoutExpired):
                    pass
            g.close()
        for h in helpers:
            h.stop()
    return row


def fmt(v, f, scale=1.0):
    return "?" if v is None else f.format(v * scale)


def add_unmeasured(d, why):
    d["unmeasured"] = "; ".join(x for x in (d.get("unmeasured"), why) if x)


MIG_COLUMNS = ["run", "vmm", "job", "status", "error", "total_s", "guest_downtime_ms",
               "max_stall_ms", "beat_period_ms", "beats_lost", "console_gap_ms", "resume_beat_ms", "vmm_total_ms", "vmm_downtime_ms",
               "vmm_bytes", "passes", "wire_bytes", "dirty_mib_s", "load_on_dest", "boot_s",
               "unmeasured", "note"]


def migrate_suite(w, runs, out, opts, csv_out, order):
    """Runs every case of opts["cases"] for vmm and QEMU 10, runs times, alternating.
    Returns the number of failed measurements."""
    with open(os.path.join(w.work, "migrate.json")) as f:
        tools = json.load(f)
    t = {"vmm": w.vmm, "kernel": w.kernel, "initrd": w.initrd("migrate"), "scratch": w.scratch,
         "vub": w.vub, "qemu10": tools.get("qemu10"), "qemu10_bios": tools.get("qemu10_bios"),
         "qsd10": tools.get("qsd10"),
         "virtiofsd": tools.get("virtiofsd")}
    cases = opts["cases"]
    csvf = csv_out(os.path.join(out, "migrate.csv"), MIG_COLUMNS)
    failures = 0
    loop = None
    img = os.path.join(w.scratch, "mig-disk.img")
    share = os.path.join(w.scratch, "mig-share")
    try:
        net_up()
        w.meta["link"] = (f"veth {VETH[0]} ({ADDR[0]}, netns {NS[0]}, the source) — {VETH[1]} "
                          f"({ADDR[1]}, netns {NS[1]}, the destination)")
        disk = {}
        if "vublk" in cases:
            run(["truncate", "-s", f"{DISK_MIB}M", img])
            loop = run(["losetup", "--find", "--show", img]).stdout.strip()
            disk = {"src": img, "dst": loop}
        if "fs" in cases:
            os.makedirs(share, exist_ok=True)
        if t["qemu10"]:
            p = run([t["qemu10"], "--version"], check=False)
            w.meta["qemu10_version"] = (p.stdout.splitlines() or ["?"])[0]
        w.meta["cases"] = cases
        w.meta["opts"] = dict(opts)
        w.meta["backends"] = {f"{case}:{kind}": " ".join(a) for case in cases
                              for kind in ("vmm", "qemu")
                              for a in [backend_argv(t, case, kind, "src", disk.get("src", "DISK"),
                                                     "SOCKET", share)] if a}
        skipped = {}
        for case in cases:
            for kind in ("vmm", "qemu"):
                why = missing(t, case, kind)
                if why:
                    skipped[(case, kind)] = why
                    log(f"migrate {case} {common.vname(kind)}: not measured: {why}")
        index = 0
        for run_no in range(1, runs + 1):
            for case in cases:
                for kind in order(run_no):
                    if (case, kind) in skipped:
                        csvf.row({"run": run_no, "vmm": kind, "job": case, "status": "skipped",
                                  "error": skipped[(case, kind)]})
                        continue
                    index += 1
                    if case == "vublk":
                        # A fresh disk for each guest; the loop device sees the new data.
                        run(["truncate", "-s", "0", img])
                        run(["truncate", "-s", f"{DISK_MIB}M", img])
                        run(["losetup", "-c", loop], check=False)
                    row = one_migration(t, case, kind, run_no, index, out, opts, disk, share)
                    failures += row["status"] != "ok"
                    csvf.row(row)
    except (StepFailed, subprocess.TimeoutExpired, OSError) as e:
        log(f"migrate: FAILED to set up: {e}")
        for run_no in range(1, runs + 1):
            for case in cases:
                for kind in order(run_no):
                    csvf.row({"run": run_no, "vmm": kind, "job": case, "status": "fail",
                              "error": f"setup failed: {e}"})
                    failures += 1
    finally:
        if loop:
            run(["losetup", "-d", loop], check=False)
        for p in (img,):
            try:
                os.unlink(p)
            except OSError:
                pass
        shutil.rmtree(share, ignore_errors=True)
        net_down()
        csvf.close()
    return failures
