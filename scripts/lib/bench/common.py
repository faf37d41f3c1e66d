"""Definitions shared by scripts/lib/bench/measure.py and report.py: the QEMU reference
command line, the suites' jobs, the reported metrics with their targets, and number
formatting."""

VMM_NAMES = {"vmm": "vmm", "qemu": "QEMU"}

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

JOB_LABELS = {
    "randread": "4k random read",
    "randwrite": "4k random write",
    "seqread": "1M sequential read",
    "seqwrite": "1M sequential write",
    "tx": "TCP guest→host",
    "rx": "TCP host→guest",
}

SUITE_TITLES = {
    "boot": "boot: process start to the guest's first line on the serial console",
    "blk": "blk: fio in the guest on a virtio-blk disk",
    "net": "net: iperf3 between the guest and the host over a tap",
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
        base = f"{JOB_LABELS[self.job]}: {self.label}" if self.job else self.label
        return f"{base} ({self.unit})" if self.unit and self.unit != self.label else base

    @property
    def plot_title(self):
        """Short lines for a plot panel."""
        m = f"{self.short} ({self.unit})" if self.unit and self.unit != self.short else self.short
        return [JOB_LABELS[self.job], m] if self.job else [m]

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
    else:
        tput = g("mbit_per_s", "{:,.0f} Mbit/s")
    return (f"{row['job']}: {tput}, CPU {g('cpu_s', '{:.2f}')} s ({g('host_cpu_s', '{:.2f}')} s outside "
            f"guest mode, {g('other_cpu_s', '{:.2f}')} s in non-vCPU threads), "
            f"{g('exits', '{:,.0f}')} exits, {g('exits_per_gib', '{:,.0f}')} exits/GiB"
            + (f" [not measured: {row['unmeasured']}]" if row.get("unmeasured") else "")
            + (f" [{row['note']}]" if row.get("note") else ""))
