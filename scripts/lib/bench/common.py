"""Definitions shared by scripts/lib/bench/measure.py and report.py: the QEMU reference
command line, the suites' jobs, the reported metrics with their targets, and number
formatting."""

VMM_NAMES = {"vmm": "vmm", "qemu": "QEMU"}

# Variants (the "vmm" column of the CSV files): each suite's main table compares "vmm" with
# "qemu"; the offload table (report.py) puts every variant of the suite side by side.
#   net:   vmm and qemu run the userspace data path (vhost=off), as before the vhost work;
#          vmm-vhost / qemu-vhost put the queues in kernel vhost-net on the same tap.
#   blk:   vmm and qemu serve the disk in-process; vmm-vub is vmm's vhost-user front-end on
#          the project's back-end (vmm-vhost-user-blk), vmm-qsd on qemu-storage-daemon,
#          qemu-vub QEMU's vhost-user-blk-device on the project's back-end, qemu-qsd on
#          qemu-storage-daemon (QEMU's own pair: the reference for a vmm-qsd failure).
#   vsock: both on kernel vhost-vsock (there is no userspace path).
#   vmm-base (blk, net, vsock; only with scripts/bench --baseline VMM): another vmm binary
#          run exactly as "vmm" (in-process disk, userspace net), for an A/B of a change.
VARIANTS = {
    "boot": ["vmm", "qemu"],
    "blk": ["vmm", "vmm-base", "vmm-vub", "vmm-qsd", "qemu", "qemu-vub", "qemu-qsd"],
    "net": ["vmm", "vmm-base", "vmm-vhost", "qemu", "qemu-vhost"],
    "vsock": ["vmm", "vmm-base", "qemu"],
    "migrate": ["vmm", "qemu"],
}
VARIANT_LABELS = {
    ("net", "vmm"): "vmm userspace (vhost=off)",
    ("net", "vmm-base"): "vmm-base userspace (--baseline)",
    ("blk", "vmm-base"): "vmm-base in-process (--baseline)",
    ("vsock", "vmm-base"): "vmm-base (--baseline)",
    ("net", "vmm-vhost"): "vmm vhost-net",
    ("net", "qemu"): "QEMU vhost=off",
    ("net", "qemu-vhost"): "QEMU vhost-net",
    ("blk", "vmm"): "vmm in-process",
    ("blk", "vmm-vub"): "vmm + vmm-vhost-user-blk",
    ("blk", "vmm-qsd"): "vmm + qemu-storage-daemon",
    ("blk", "qemu"): "QEMU in-process",
    ("blk", "qemu-vub"): "QEMU + vmm-vhost-user-blk",
    ("blk", "qemu-qsd"): "QEMU + qemu-storage-daemon",
    ("vsock", "vmm"): "vmm vhost-vsock",
    ("vsock", "qemu"): "QEMU vhost-vsock-device",
    ("migrate", "qemu"): "QEMU 10",
}
# Bound for "~0 wakeups per I/O" of a VMM whose data path is offloaded: at most 10 context
# switches of its non-vCPU threads per 64 MiB (the vhost integration suite's bound), i.e.
# 160 per GiB, or one per 100 I/Os of 64 KiB (the largest TSO/GSO frame). vmm's interrupt
# watchdog looks at each vhost device's rings once a second (virtio/mmio.h): ~13 per GiB at
# 650 Mbit/s, inside the bound.
OFFLOAD_WAKEUPS_PER_GIB = 160.0
IO_UNIT = 64 << 10


def kind_of(variant):
    """"vmm" or "qemu": whose binary a variant runs."""
    return variant.split("-", 1)[0]


def variant_label(suite, variant):
    return VARIANT_LABELS.get((suite, variant), VMM_NAMES.get(variant, variant))


def vname(variant):
    """Short name of a variant for progress lines ("vmm", "QEMU", "vmm-vhost", ...)."""
    return VMM_NAMES.get(variant, variant)

# The reference: QEMU 7.2's microvm machine with modern (virtio 1.x) virtio-mmio devices,
# ACPI on (the stock kernel finds virtio-mmio devices only through the DSDT), no default
# devices, the serial console on stdio. vCPUs, memory, kernel, initrd, command line and
# devices are appended per suite, the same as vmm's.
QEMU_BASE_ARGS = [
    "-M", "microvm,acpi=on", "-global", "virtio-mmio.force-legacy=false",
    "-accel", "kvm", "-cpu", "host", "-nodefaults", "-no-user-config", "-nographic",
    "-serial", "stdio",
]

# Guest RAM of the blk and net guests: their initramfs carries fio (~84 MB with its
# libraries) or iperf3, which does not leave enough room in 256 MiB.
IO_GUEST_MIB = 512

BLK_JOBS = ["randread", "randwrite", "seqread", "seqwrite"]
NET_JOBS = ["tx", "rx"]
VSOCK_JOBS = ["tx", "rx", "rr"]
# The migrate suite's cases (its CSV's "job" column), in the order they run.
MIG_CASES = ["idle", "dirty", "vublk", "fs"]


def jobs(suite):
    return {"boot": [None], "blk": BLK_JOBS, "net": NET_JOBS, "vsock": VSOCK_JOBS,
            "migrate": MIG_CASES}[suite]

JOB_LABELS = {
    "randread": "4k random read",
    "randwrite": "4k random write",
    "seqread": "1M sequential read",
    "seqwrite": "1M sequential write",
    "tx": "TCP guest→host",
    "rx": "TCP host→guest",
}
VSOCK_JOB_LABELS = {
    "tx": "vsock guest→host",
    "rx": "vsock host→guest",
    "rr": "vsock 1-byte ping-pong",
}
MIG_JOB_LABELS = {
    "idle": "idle guest",
    "dirty": "guest dirtying memory",
    "vublk": "vhost-user-blk with state",
    "fs": "virtio-fs, virtiofsd 1.13",
}


def job_label(suite, job):
    return {"vsock": VSOCK_JOB_LABELS, "migrate": MIG_JOB_LABELS}.get(suite, JOB_LABELS)[job]

SUITE_TITLES = {
    "boot": "boot: process start to the guest's first line on the serial console",
    "blk": "blk: fio in the guest on a virtio-blk disk",
    "net": "net: iperf3 between the guest and the host over a tap",
    "vsock": "vsock: AF_VSOCK streams and ping-pong between the guest and the host",
    "migrate": "migrate: live migration between two network namespaces, vmm vs QEMU 10",
}


class Metric:
    """One reported line: `key` is a CSV column (times `scale`), `job` selects CSV rows
    (None: all rows of the suite). target: ("ratio_max", x): vmm ≤ x × QEMU;
    ("ratio_min", x): vmm ≥ x × QEMU; ("abs_max", x): vmm ≤ x (in the metric's unit)."""

    def __init__(self, suite, job, key, label, unit, fmt, target=None, scale=1.0, short=None):
        self.suite, self.job, self.key, self.label = suite, job, key, label
        self.unit, self.fmt, self.target, self.scale = unit, fmt, target, scale
        self.short = short or label

    @property
    def title(self):
        base = f"{job_label(self.suite, self.job)}: {self.label}" if self.job else self.label
        return f"{base} ({self.unit})" if self.unit and self.unit != self.label else base

    @property
    def plot_title(self):
        """Short lines for a plot panel."""
        m = f"{self.short} ({self.unit})" if self.unit and self.unit != self.short else self.short
        return [job_label(self.suite, self.job), m] if self.job else [m]

    @property
    def slug(self):
        return f"{self.suite}-{self.job + '-' if self.job else ''}{self.key}"

    def target_text(self):
        if not self.target:
            return "—"
        kind, x = self.target
        if kind == "ratio_max":
            return f"≤ {x:g}× QEMU"
        if kind == "ratio_min":
            return f"≥ {x:g}× QEMU"
        return f"≤ {x:g} {self.unit}"

    def met(self, vmm, qemu):
        """True/False, or None when it cannot be decided (no data, or no target): a figure
        that was not measured never counts as met."""
        if not self.target or vmm is None:
            return None
        kind, x = self.target
        if kind == "abs_max":
            return vmm <= x
        if qemu is None or qemu == 0:
            return None
        r = vmm / qemu
        return r <= x if kind == "ratio_max" else r >= x

    def target_value(self, qemu):
        """The target in the metric's unit (for the plots), or None."""
        if not self.target:
            return None
        kind, x = self.target
        if kind == "abs_max":
            return x
        return None if qemu is None else x * qemu


def metrics(suite):
    if suite == "migrate":
        return mig_metrics()
    if suite == "boot":
        return [
            Metric("boot", None, "time_to_marker_s", "time to marker", "s", "{:.2f}", ("ratio_max", 0.7)),
            Metric("boot", None, "exits", "KVM exits to marker", "", "{:,.0f}", ("ratio_max", 0.8)),
            Metric("boot", None, "rss_outside_kib", "VMM RSS outside guest RAM at marker", "MiB",
                   "{:.2f}", ("abs_max", 3.0), scale=1 / 1024, short="RSS outside guest RAM"),
            Metric("boot", None, "cpu_s", "VMM CPU time to marker", "s", "{:.2f}",
                   short="CPU time to marker"),
            Metric("boot", None, "ram_huge_kib", "guest RAM in huge pages at marker", "MiB",
                   "{:.1f}", scale=1 / 1024, short="guest RAM in huge pages"),
            Metric("boot", None, "poweroff_to_exit_s", "time from poweroff to process exit", "s",
                   "{:.2f}", short="poweroff to exit"),
        ]
    out = []
    if suite == "blk":
        for j in BLK_JOBS:
            if j.startswith("rand"):
                out.append(Metric("blk", j, "iops", "IOPS", "IOPS", "{:,.0f}", ("ratio_min", 1.0)))
            else:
                out.append(Metric("blk", j, "mb_per_s", "throughput", "MB/s", "{:.1f}", ("ratio_min", 1.0)))
            out += io_cost_metrics("blk", j)
    elif suite == "net":
        for j in NET_JOBS:
            out.append(Metric("net", j, "mbit_per_s", "throughput", "Mbit/s", "{:,.0f}", ("ratio_min", 1.0)))
            out += io_cost_metrics("net", j)
    elif suite == "vsock":
        for j in ("tx", "rx"):
            out.append(Metric("vsock", j, "mbit_per_s", "throughput", "Mbit/s", "{:,.0f}", ("ratio_min", 1.0)))
            for m in io_cost_metrics("vsock", j):
                if m.key == "other_ctxsw_per_gib":
                    # the data path is in kernel vhost-vsock: ~0 wakeups of the VMM per I/O
                    m.target = ("abs_max", OFFLOAD_WAKEUPS_PER_GIB)
                out.append(m)
            out.append(Metric("vsock", j, "offload_cpu_s_per_gib", "vhost worker's CPU per GiB", "s/GiB",
                              "{:.3f}", short="vhost worker CPU"))
        out += [
            Metric("vsock", "rr", "median_us", "round trip, median", "µs", "{:,.0f}", ("ratio_max", 1.0),
                   short="median RTT"),
            Metric("vsock", "rr", "p99_us", "round trip, 99th percentile", "µs", "{:,.0f}",
                   ("ratio_max", 1.0), short="p99 RTT"),
            Metric("vsock", "rr", "exits_per_op", "KVM exits per round trip", "", "{:.1f}",
                   ("ratio_max", 1.0), short="exits per RTT"),
            Metric("vsock", "rr", "other_cpu_us_per_op", "non-vCPU threads' CPU per round trip", "µs",
                   "{:.2f}", short="non-vCPU CPU per RTT"),
            Metric("vsock", "rr", "other_ctxsw_per_op", "non-vCPU threads' wakeups per round trip",
                   "", "{:.3f}", ("abs_max", 0.01), short="non-vCPU wakeups per RTT"),
            Metric("vsock", "rr", "offload_cpu_us_per_op", "vhost worker's CPU per round trip", "µs",
                   "{:.2f}", short="vhost worker CPU per RTT"),
        ]
    return out


def offload_metrics(suite):
    """The rows of a suite's offload table (report.py): every variant side by side."""
    if suite in ("boot", "migrate"):
        return []
    out = []
    for j in jobs(suite):
        if j == "rr":
            out += [m for m in metrics("vsock") if m.job == "rr"]
            continue
        if suite == "blk" and j.startswith("rand"):
            out.append(Metric(suite, j, "iops", "IOPS", "IOPS", "{:,.0f}"))
        else:
            out.append(Metric(suite, j, "mbit_per_s" if suite != "blk" else "mb_per_s", "throughput",
                              "Mbit/s" if suite != "blk" else "MB/s", "{:,.0f}" if suite != "blk" else "{:.1f}"))
        out += [
            Metric(suite, j, "exits_per_gib", "KVM exits per GiB", "", "{:,.0f}"),
            Metric(suite, j, "other_cpu_s_per_gib", "VMM's non-vCPU threads' CPU per GiB", "s/GiB",
                   "{:.3f}", short="non-vCPU CPU"),
            Metric(suite, j, "other_ctxsw_per_gib", "VMM's non-vCPU threads' wakeups per GiB", "",
                   "{:,.0f}", short="non-vCPU wakeups"),
            Metric(suite, j, "offload_cpu_s_per_gib", "off-process data path's CPU per GiB", "s/GiB",
                   "{:.3f}", short="offload CPU"),
            Metric(suite, j, "host_cpu_s_per_gib", "VMM's CPU outside guest mode per GiB", "s/GiB",
                   "{:.3f}", short="CPU outside guest mode"),
        ]
    return out


class OffloadTarget:
    """A target between two variants of a suite's offload table, or of one against a bound:
    `key` of `variant` (job `job`) ≤ / ≥ x × the same figure of `ref`, or ≤ x absolute
    (ref None)."""

    def __init__(self, suite, job, key, variant, kind, x, ref=None, text=""):
        self.suite, self.job, self.key, self.variant = suite, job, key, variant
        self.kind, self.x, self.ref, self.text = kind, x, ref, text

    def met(self, v, r):
        """True/False, or None when a figure is missing (never met without data). A ratio
        target against a reference of 0 holds only when the figure is 0 too."""
        if v is None:
            return None
        if self.kind == "abs_max":
            return v <= self.x
        if r is None:
            return None
        return v <= self.x * r if self.kind == "ratio_max" else v >= self.x * r


def offload_targets(suite):
    """The issue's targets for the offload (net: vhost-net against vmm's userspace path and
    QEMU with vhost-net)."""
    if suite != "net":
        return []
    out = []
    for j in NET_JOBS:
        out += [
            OffloadTarget("net", j, "other_cpu_s_per_gib", "vmm-vhost", "ratio_max", 0.02, "vmm",
                          "vmm vhost-net: non-vCPU CPU per GiB ≤ 0.02× vmm userspace's"),
            OffloadTarget("net", j, "other_ctxsw_per_gib", "vmm-vhost", "abs_max",
                          OFFLOAD_WAKEUPS_PER_GIB, None,
                          f"vmm vhost-net: ~0 wakeups per I/O (≤ {OFFLOAD_WAKEUPS_PER_GIB:g} per GiB, "
                          "i.e. ≤ 0.01 per 64 KiB)"),
            OffloadTarget("net", j, "exits_per_gib", "vmm-vhost", "ratio_max", 1.0, "qemu-vhost",
                          "vmm vhost-net: KVM exits per GiB ≤ QEMU vhost-net's"),
            OffloadTarget("net", j, "mbit_per_s", "vmm-vhost", "ratio_min", 1.0, "qemu-vhost",
                          "vmm vhost-net: throughput ≥ QEMU vhost-net's"),
        ]
    return out


def mig_metrics(cases=None):
    """Per migrate case: the issue's targets (downtime ≤ 0.5× QEMU's, total time and bytes
    ≤ 1.0×) on the figures measured the same way for both VMMs — the guest's heartbeat gap,
    the harness's clock, the bytes on the veth. What each VMM reports is informational: the
    two do not count the same thing (QEMU's downtime ends when its source has sent the last
    byte, before the destination has loaded and started the guest; vmm's at the
    destination's acknowledgement that its guest runs; QEMU's bytes are RAM only)."""
    out = []
    for c in cases or MIG_CASES:
        out += [
            Metric("migrate", c, "guest_downtime_ms", "downtime the guest saw", "ms", "{:,.0f}",
                   ("ratio_max", 0.5), short="guest-seen downtime"),
            Metric("migrate", c, "vmm_downtime_ms", "downtime the VMM reports", "ms", "{:,.0f}",
                   short="reported downtime"),
            Metric("migrate", c, "total_s", "total time, request to the guest running there", "s",
                   "{:.2f}", ("ratio_max", 1.0), short="total time"),
            Metric("migrate", c, "wire_bytes", "bytes on the wire", "MiB", "{:,.1f}",
                   ("ratio_max", 1.0), scale=1 / (1 << 20), short="bytes on the wire"),
            Metric("migrate", c, "vmm_total_ms", "total time the VMM reports", "ms", "{:,.0f}",
                   short="reported total time"),
            Metric("migrate", c, "vmm_bytes", "bytes the VMM reports (QEMU: RAM transferred)", "MiB",
                   "{:,.1f}", scale=1 / (1 << 20), short="reported bytes"),
            Metric("migrate", c, "max_stall_ms", "longest heartbeat gap, request to 3 s after", "ms",
                   "{:,.0f}", short="longest stall"),
            Metric("migrate", c, "console_gap_ms", "console silent across the switchover", "ms",
                   "{:,.0f}", short="console gap"),
            Metric("migrate", c, "resume_beat_ms", "destination's first output to its first heartbeat",
                   "ms", "{:,.0f}", short="first heartbeat after resume"),
            Metric("migrate", c, "passes", "passes over RAM", "", "{:.0f}"),
        ]
        if c == "dirty":
            out.append(Metric("migrate", c, "dirty_mib_s", "dirty rate the guest reached", "MiB/s",
                              "{:.1f}", short="dirty rate"))
    return out


def io_cost_metrics(suite, job):
    return [
        Metric(suite, job, "cpu_s_per_gib", "VMM CPU per GiB", "s/GiB", "{:.2f}", ("ratio_max", 1.0),
               short="VMM CPU"),
        Metric(suite, job, "exits_per_gib", "KVM exits per GiB", "", "{:,.0f}", ("ratio_max", 1.0)),
        Metric(suite, job, "host_cpu_s_per_gib", "VMM CPU per GiB outside guest mode", "s/GiB",
               "{:.2f}", short="CPU outside guest mode"),
        Metric(suite, job, "other_cpu_s_per_gib", "non-vCPU threads' CPU per GiB", "s/GiB",
               "{:.2f}", short="non-vCPU CPU"),
        Metric(suite, job, "other_ctxsw_per_gib", "non-vCPU threads' wakeups per GiB", "",
               "{:,.0f}", short="non-vCPU wakeups"),
    ]


def fmt_int(v):
    return "?" if v is None else f"{v:,.0f}"


def fmt_mib(kib):
    return "?" if kib in (None, "") else f"{float(kib) / 1024:.2f}"


def describe_job(suite, row):
    """One progress line for a finished job (measure.py)."""
    def g(k, f):
        v = row.get(k)
        return "?" if v is None else f.format(v)
    if suite == "blk":
        tput = g("iops", "{:,.0f} IOPS") if row["job"].startswith("rand") else g("mb_per_s", "{:.1f} MB/s")
    elif row["job"] == "rr":
        tput = (f"{g('ops', '{:,.0f}')} round trips, median {g('median_us', '{:,.0f}')} µs, "
                f"p99 {g('p99_us', '{:,.0f}')} µs")
    else:
        tput = g("mbit_per_s", "{:,.0f} Mbit/s")
    return (f"{row['job']}: {tput}, CPU {g('cpu_s', '{:.2f}')} s ({g('host_cpu_s', '{:.2f}')} s outside "
            f"guest mode, {g('other_cpu_s', '{:.3f}')} s and {g('other_ctxsw', '{:,.0f}')} wakeups in "
            f"non-vCPU threads, {g('offload_cpu_s', '{:.3f}')} s off-process), "
            f"{g('exits', '{:,.0f}')} exits, "
            + (f"{g('exits_per_op', '{:.1f}')} exits per round trip" if row["job"] == "rr"
               else f"{g('exits_per_gib', '{:,.0f}')} exits/GiB")
            + (f" [not measured: {row['unmeasured']}]" if row.get("unmeasured") else "")
            + (f" [{row['note']}]" if row.get("note") else ""))
