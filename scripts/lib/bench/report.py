#!/usr/bin/env python3
"""Report side of scripts/bench: reads the CSV files and meta.json that measure.py wrote
into the output directory and writes results.md (a Markdown table per suite),
summary.csv (medians, ratios, targets) and one SVG plot per suite (gnuplot), then prints
the tables on stdout.

Usage (scripts/bench calls it): report.py --out DIR --runs N [--no-plots] SUITE...
Exit status: 0 when every run of every suite was measured, 1 when some failed or are
missing (the report says which), 2 on usage errors.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

KVM_BREAKDOWN = ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits",
                 "irq_window_exits", "irq_injections", "insn_emulation", "signal_exits",
                 "pf_taken", "hypercalls"]
COLORS = {"vmm": 0x1F77B4, "qemu": 0xFF7F0E, "vmm-vhost": 0x2CA02C, "qemu-vhost": 0xD62728,
          "vmm-vub": 0x2CA02C, "vmm-qsd": 0x9467BD, "qemu-vub": 0xD62728,
          "qemu-qsd": 0x8C564B}


def load_rows(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return None


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class SuiteData:
    """Values of one suite: per metric and VMM, the per-run value ("fail" or None when the
    run failed or was not run)."""

    def __init__(self, suite, rows, runs, jobs=None):
        self.suite, self.rows, self.runs = suite, rows or [], runs
        # The jobs measured: every one of the suite's, or (migrate) the cases chosen.
        self.jobs = jobs or common.jobs(suite)
        self.metrics = (common.mig_metrics(self.jobs) if suite == "migrate"
                        else common.metrics(suite))

    def select(self, kind, job, run):
        for r in self.rows:
            if r["vmm"] == kind and int(r["run"]) == run and (job is None or r.get("job") == job):
                return r
        return None

    def runs_of(self, metric, kind):
        out = []
        for run in range(1, self.runs + 1):
            r = self.select(kind, metric.job, run)
            if r is None:
                out.append(("missing", None))
            elif r["status"] == "skipped":
                out.append(("skipped", None))
            elif r["status"] != "ok":
                out.append(("fail", None))
            else:
                v = num(r.get(metric.key))
                # A run that went fine but could not measure this figure: "unmeasured".
                out.append(("ok", v * metric.scale) if v is not None else ("unmeasured", None))
        return out

    def medians(self, metric, kinds=("vmm", "qemu")):
        """Median per VMM (variant) over the runs that measured the metric (None: none did)."""
        return {k: median([v for s, v in self.runs_of(metric, k) if s == "ok"]) for k in kinds}

    def variants(self):
        """The suite's variants that have rows, in common.VARIANTS order."""
        have = {r["vmm"] for r in self.rows}
        return [v for v in common.VARIANTS.get(self.suite, ["vmm", "qemu"]) if v in have]

    def skipped(self, kind):
        """Why variant kind was not measured at all (its rows say "skipped"), or None."""
        for r in self.rows:
            if r["vmm"] == kind and r["status"] == "skipped":
                return r.get("error") or "skipped"
        return None

    def unmeasured(self, metric, kind):
        """Whether some successful run of kind could not measure the metric."""
        return any(s == "unmeasured" for s, _ in self.runs_of(metric, kind))

    def failures(self):
        """(run, vmm, job, error) of each failed or missing measurement, and notes of
        successful ones that had a problem afterwards (e.g. the VMM did not exit)."""
        jobs = self.jobs
        kinds = ["vmm", "qemu"] + [v for v in self.variants() if v not in ("vmm", "qemu")]
        fails, notes = [], []
        for run in range(1, self.runs + 1):
            for kind in kinds:
                for j in jobs:
                    r = self.select(kind, j, run)
                    if r is None:
                        fails.append((run, kind, j, "not measured (the measurement stopped before it)"))
                    elif r["status"] == "skipped":
                        continue
                    elif r["status"] != "ok":
                        fails.append((run, kind, j, r.get("error") or "failed"))
                    else:
                        for k in ("error", "unmeasured", "note"):
                            if r.get(k):
                                notes.append((run, kind, j, ("not measured: " if k == "unmeasured"
                                                             else "") + r[k]))
        return fails, notes


def fmt(metric, v):
    return "—" if v is None else metric.fmt.format(v)


def run_cells(metric, values):
    cells = []
    for s, v in values:
        cells.append("FAIL" if s == "fail" else "—" if s == "missing" else
                     "n/a" if s in ("unmeasured", "skipped") else fmt(metric, v))
    return " / ".join(cells)


def median_cell(sd, metric, kind, v):
    """A median, or why there is none: "n/a — not measured" when runs went fine but none
    could measure it (the notes below the table say why)."""
    if v is not None:
        return fmt(metric, v)
    if sd.skipped(kind):
        return "n/a — not run (see below)"
    states = [st for st, _ in sd.runs_of(metric, kind)]
    if states and all(st == "fail" for st in states):
        return "FAIL (see below)"
    return "n/a — not measured (see notes)" if sd.unmeasured(metric, kind) else "—"


def met_text(m):
    return "n/a" if m is None else ("yes" if m else "**NO**")


def suite_markdown(sd, meta, plots):
    s = sd.suite
    lines = [f"## {common.SUITE_TITLES[s]}", ""]
    lines += [suite_conditions(s, meta), ""]
    lines.append("| metric | vmm runs | vmm median | QEMU runs | QEMU median | vmm/QEMU | target | met |")
    lines.append("|---|---:|---:|---:|---:|---:|---|---|")
    summary = []
    for m in sd.metrics:
        med = sd.medians(m)
        ratio = med["vmm"] / med["qemu"] if med["vmm"] is not None and med["qemu"] else None
        met = m.met(med["vmm"], med["qemu"])
        lines.append(f"| {m.title} | {run_cells(m, sd.runs_of(m, 'vmm'))} | "
                     f"{median_cell(sd, m, 'vmm', med['vmm'])} | "
                     f"{run_cells(m, sd.runs_of(m, 'qemu'))} | {median_cell(sd, m, 'qemu', med['qemu'])} | "
                     f"{'—' if ratio is None else f'{ratio:.2f}'} | {m.target_text()} | "
                     f"{met_text(met) if m.target else '—'} |")
        summary.append({"suite": s, "job": m.job or "", "metric": m.key, "label": m.title,
                        "vmm_median": med["vmm"], "qemu_median": med["qemu"], "ratio": ratio,
                        "target": m.target_text() if m.target else "",
                        "met": "" if not m.target else ("n/a" if met is None else "yes" if met else "no")})
    lines.append("")
    lines += breakdown_markdown(sd)
    fails, notes = sd.failures()
    if fails:
        lines.append(f"Failed measurements ({len(fails)}):")
        lines.append("")
        for run, kind, job, err in fails:
            lines.append(f"- run {run}, {common.variant_label(s, kind)}{', ' + job if job else ''}: {err}")
        lines.append("")
    if any(sd.unmeasured(m, k) for m in sd.metrics for k in ("vmm", "qemu")):
        lines.append("n/a: that run went fine but the figure could not be measured (why: in "
                     "the notes); medians are over the runs that measured it, and a figure "
                     "nobody measured never counts as a target met.")
        lines.append("")
    if notes:
        lines.append("Notes:")
        lines.append("")
        for run, kind, job, err in notes:
            lines.append(f"- run {run}, {common.variant_label(s, kind)}{', ' + job if job else ''}: {err}")
        lines.append("")
    if plots.get(s):
        lines.append(f"![{s}: vmm vs QEMU]({os.path.basename(plots[s])})")
        lines.append("")
    off_lines, off_summary = offload_markdown(sd, meta)
    lines += off_lines
    summary += off_summary
    if plots.get(s + "-offload"):
        lines.append(f"![{s}: every variant]({os.path.basename(plots[s + '-offload'])})")
        lines.append("")
    return lines, summary, len(fails)


def offload_markdown(sd, meta):
    """The offload table: every variant of the suite side by side (medians), then the
    offload targets with met / NO / n/a, and for net the issue's anchor unit (per 64 MiB
    guest→host, in clock ticks). Returns (lines, summary rows)."""
    s = sd.suite
    kinds = sd.variants()
    ms = common.offload_metrics(s)
    if not ms or len(kinds) <= 2 and s != "vsock" or not kinds:
        return [], []
    if s == "vsock":
        return vsock_notes(sd), []
    lines = [f"### {s}: every variant (medians)", ""]
    lines.append("| metric | " + " | ".join(common.variant_label(s, k) for k in kinds) + " |")
    lines.append("|---" + "|---:" * len(kinds) + "|")
    for m in ms:
        med = sd.medians(m, kinds)
        lines.append(f"| {m.title} | " + " | ".join(median_cell(sd, m, k, med[k]) for k in kinds) + " |")
    lines.append("")
    skipped = [(k, sd.skipped(k)) for k in kinds if sd.skipped(k)]
    for k, why in skipped:
        lines.append(f"- {common.variant_label(s, k)}: n/a — not run: {why}")
    if skipped:
        lines.append("")
    lines.append("Off-process data path: the CPU of the kernel's vhost worker threads (`vhost-PID`) "
                 "and of the vhost-user back-end process over the same window; the VMM's non-vCPU "
                 "threads exclude them.")
    lines.append("")
    summary = []
    targets = common.offload_targets(s)
    if targets:
        lines.append("| target | job | figure | reference | met |")
        lines.append("|---|---|---:|---:|---|")
        for t in targets:
            m = next(x for x in ms if x.job == t.job and x.key == t.key)
            v = sd.medians(m, [t.variant])[t.variant]
            r = sd.medians(m, [t.ref])[t.ref] if t.ref else None
            met = t.met(v, r)
            ref = (f"{fmt(m, r)} ({common.variant_label(s, t.ref)})" if t.ref
                   else f"≤ {t.x:g}")
            lines.append(f"| {t.text} | {common.job_label(s, t.job)} | {fmt(m, v)} | {ref} | "
                         f"{met_text(met)} |")
            summary.append({"suite": s, "job": t.job, "metric": f"{t.variant}:{t.key}",
                            "label": t.text, "vmm_median": v, "qemu_median": r,
                            "ratio": v / r if v is not None and r else None,
                            "target": t.text, "met": "n/a" if met is None else "yes" if met else "no"})
        lines.append("")
    if s == "net":
        lines += net_anchor(sd, kinds)
    return lines, summary


def per_64mib(gib_value):
    """A per-GiB figure per 64 MiB."""
    return None if gib_value is None else gib_value / 16


def net_anchor(sd, kinds):
    """Issue 9's anchor: QEMU 7.2's non-vCPU threads per 64 MiB guest→host, in clock ticks
    (10 ms) and wakeups, with vhost-net on (545 ticks, 28,592 wakeups) and off (234, 6,328)."""
    cpu = next(m for m in common.offload_metrics("net") if m.job == "tx" and m.key == "other_cpu_s_per_gib")
    wk = next(m for m in common.offload_metrics("net") if m.job == "tx" and m.key == "other_ctxsw_per_gib")
    c, w = sd.medians(cpu, kinds), sd.medians(wk, kinds)
    cells = []
    for k in kinds:
        ct, wt = per_64mib(c[k]), per_64mib(w[k])
        cells.append(f"{common.variant_label('net', k)}: "
                     + ("n/a" if ct is None else f"{ct * 100:,.1f} ticks") + ", "
                     + ("n/a" if wt is None else f"{wt:,.0f} wakeups"))
    return ["Per 64 MiB guest→host, the unit of issue 9's anchor (clock ticks of 10 ms of the VMM's "
            "non-vCPU threads, and their wakeups): " + "; ".join(cells) + ". The anchor, measured "
            "once with QEMU 7.2 microvm: vhost-net on 545 ticks / 28,592 wakeups, off 234 / 6,328.", ""]


def vsock_notes(sd):
    m = next(x for x in common.metrics("vsock") if x.key == "offload_cpu_us_per_op")
    lines = ["Both VMMs serve vsock's data queues in kernel vhost-vsock; \"vhost worker's CPU\" is "
             "the kernel's vhost-PID thread over the window (the off-process data path). "
             f"Wakeup bound for \"~0\": {common.OFFLOAD_WAKEUPS_PER_GIB:g} per GiB (10 per 64 MiB, "
             "the vhost integration suite's bound), 0.01 per round trip.", ""]
    return lines


def breakdown_markdown(sd):
    """Median KVM exit counts by reason (what the guest did that needed the host): up to
    the marker for boot, per GiB moved for blk and net."""
    if sd.suite == "migrate" or not any(r["status"] == "ok" for r in sd.rows):
        return []
    boot = sd.suite == "boot"
    jobs = common.jobs(sd.suite)
    cols = [(j, k) for j in jobs for k in sd.variants()]
    head = ("| KVM statistic (median, up to the marker)" if boot
            else "| KVM statistic (median per GiB moved)")
    lines = [head + " | " + " | ".join(
        (f"{j} " if j else "") + common.vname(k) for j, k in cols) + " |",
        "|---" + "|---:" * len(cols) + "|"]
    for stat in KVM_BREAKDOWN:
        cells = []
        for j, k in cols:
            vals = []
            for r in sd.rows:
                if r["vmm"] != k or r["status"] != "ok" or (j is not None and r.get("job") != j):
                    continue
                v, b = num(r.get(stat)), num(r.get("bytes"))
                if v is not None and r.get("job") == "rr":
                    continue  # a ping-pong moves 2 bytes per round trip: per GiB says nothing
                if v is not None and not boot:
                    v = v / (b / (1 << 30)) if b else None
                vals.append(v)
            v = median(vals)
            cells.append("—" if v is None else f"{v:,.0f}")
        lines.append(f"| {stat} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def suite_conditions(s, meta):
    nested = ("nested KVM under TCG: throughput and latency say little there; where the CPU goes "
              "(the VMM's non-vCPU threads vs the off-process data path) is the judge.")
    if s == "migrate":
        nested = ("nested KVM under TCG: times are tens of times longer than on hardware and "
                  "noisy (the two VMMs run alternately on the same emulated machine); bytes are "
                  "exact.")
    return (f"**Where**: {meta.get('where', '?')}, Linux {meta.get('kernel_running', '?')}"
            + (" — " + nested if "nested" in meta.get("where", "") else ".") + " "
            + suite_setup(s, meta))


def suite_setup(s, meta):
    q = " ".join(common.QEMU_BASE_ARGS)
    mem = meta.get("vmm_memory")
    thp = meta.get("thp")
    where = ("" if not thp else " Transparent huge pages where the guests ran: "
             + ", ".join(f"{k}=[{v}]" for k, v in thp.items())
             + (f" (`--thp {meta['thp_requested']}`)" if meta.get("thp_requested", "keep") != "keep"
                else "") + ".")
    if "vmm_memory" in meta:
        where += (f" vmm's guest RAM: `--memory SIZE,{mem}`." if mem else
                  " vmm's guest RAM: the default (anonymous private memory).")
    if s == "migrate":
        return migrate_setup(meta) + where
    if s == "boot":
        return ("Guest: 1 vCPU, 256 MiB, command line `console=ttyS0 quiet panic=-1`, initramfs "
                "whose /init echoes `BENCH-BOOT-MARKER`, waits for the harness's go line on the "
                "console and runs `poweroff -f`. Time: from just "
                "before the VMM process is forked to the marker line on its stdout; exits (KVM "
                "debugfs, summed over vCPUs) and RSS (/proc/PID/smaps, total Rss minus the guest "
                "RAM mapping) read when the marker arrives, before the go line is sent. "
                f"QEMU: `qemu-system-x86_64 {q}`." + where)
    info = meta.get("suites", {}).get(s, {})
    if s == "vsock":
        return (f"Guest: 1 vCPU, {common.IO_GUEST_MIB} MiB. "
                f"{info.get('vsock_link', 'vhost-vsock')}. vmm `--vsock cid=N`, QEMU "
                "`-device vhost-vsock-device,guest-cid=N`. vsock-bench (scripts/lib/bench/"
                "vsock-bench.c): throughput until the receiver has every byte (guest→host: "
                "until the server's 1-byte answer); round trips timed in the guest. CPU, wakeups "
                "and exits as for net, per GiB or per round trip." + where)
    if s == "blk":
        return (f"Guest: 1 vCPU, {common.IO_GUEST_MIB} MiB. Disk: "
                f"{info.get('blk_disk', '1 GiB raw image')}; vmm `--disk path=…,direct=on`, QEMU "
                "`-drive …,format=raw,cache=none,aio=threads -device virtio-blk-device`. fio "
                f"{meta.get('fio_version', '')} in the guest on /dev/vda: direct=1, iodepth 16, "
                f"{meta.get('fio_runtime_s', '?')} s per job (time_based), io_uring (libaio if "
                "io_uring fails); fio itself comes from a second, read-only virtio-blk disk. "
                "CPU = utime+stime of the VMM process over the job's I/O loop (guest time of its "
                "vCPU thread included), exits = KVM exits over the same window; both per GiB "
                "that fio moved. Outside guest mode: the non-vCPU threads' CPU plus each vCPU "
                "thread's run time minus its (tick-sampled) guest time. vhost-user variants: "
                "vmm `--memory SIZE,shared=on --disk vhost-user=SOCKET` (vhost-user needs shared "
                "guest RAM), QEMU `-object memory-backend-memfd,id=mem0,share=on -M …,memory-backend="
                "mem0 -chardev socket,… -device vhost-user-blk` (on virtio-mmio); back-ends: "
                + "; ".join(f"`{v}`" for v in info.get("backends", {}).values())
                + " (every back-end bypasses the host's page cache, as the in-process disks "
                "do)." + where)
    return (f"Guest: 1 vCPU, {common.IO_GUEST_MIB} MiB. Network: "
            f"{info.get('net_link', 'tap with link-local addresses')}; vmm `--net tap=…,vhost=off` "
            "(main table) and `vhost=on` (kernel vhost-net), QEMU `-netdev tap,…,vhost=off|on "
            "-device virtio-net-device` on the same tap. iperf3 "
            f"{meta.get('iperf_time_s', '?')} s per direction, one TCP stream; throughput from the "
            "receiver's byte count. CPU and exits as for blk, per GiB received." + where)


def migrate_setup(meta):
    info = meta.get("suites", {}).get("migrate", {})
    o = info.get("opts", {})
    be = info.get("backends", {})
    return (f"Guest: 2 vCPUs, 512 MiB, the same kernel and initramfs for both; mig-load "
            f"(scripts/lib/bench/mig-load.c) prints a heartbeat line every {o.get('beat_ms', '?')} ms "
            "on the serial console. Two hosts: two network namespaces joined by a veth pair "
            f"({info.get('link', 'veth')}); the source VMM in the first, the destination (vmm "
            "`run --incoming tcp:…`, QEMU `-incoming tcp:…`) in the second. vmm: PUT vm.migrate "
            f"`{{\"to\": …, \"max_downtime_ms\": {o.get('downtime_ms', '?')}}}`, no bandwidth cap, "
            "progress from GET vm.migration; "
            f"{info.get('qemu10_version', 'QEMU 10')} (`-M microvm,acpi=on`, the other options as in "
            f"the boot suite): QMP migrate-set-parameters downtime-limit={o.get('downtime_ms', '?')} "
            "and max-bandwidth=100 GiB/s (its default caps at 128 MiB/s), migrate, query-migrate "
            f"every 100 ms; every other migration setting the default. Cases: idle (the heartbeat "
            f"only); dirty ({o.get('dirty_mib', '?')} MiB/s asked, one store per 4 KiB page over "
            f"a {o.get('wss_mib', '?')} MiB working set filled with non-zero data first); vublk "
            "(a 4 KiB O_DIRECT write every 10 ms to a vhost-user-blk disk; vmm with "
            "vmm-vhost-user-blk, whose state moves with DEVICE_STATE, QEMU with "
            "qemu-storage-daemon 10, which has none; the source's back-end on the image, the "
            "destination's on a loop device over it); fs (a file held open on a virtio-fs share "
            "and appended to every 100 ms, virtiofsd 1.13 on both sides, its state moved with "
            "DEVICE_STATE by both VMMs). Back-ends: "
            + "; ".join(f"{k}: `{v}`" for k, v in be.items())
            + ". vhost-user cases: vmm `--memory 512M,shared=on`, QEMU a shared memfd backend. "
            "**Downtime the guest saw**: the gap between the last heartbeat line from the "
            "source's console and the first from the destination's, timestamped by the harness "
            "on arrival (includes up to one heartbeat period). **Total time**: from the migrate "
            "request to that first heartbeat on the destination. **Bytes on the wire**: the veth's "
            "transmit counter on the source side over the migration (Ethernet frames, the same "
            "count for both). The VMMs' own figures: vmm's total_ms (start to the destination's "
            "acknowledgement), downtime_ms (pause to acknowledgement), bytes (the whole stream), "
            "iteration; QEMU's total-time, downtime, ram.transferred (RAM only), "
            "ram.dirty-sync-count.")


# ---- plots ----------------------------------------------------------------------------------

def gp_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plot_suite(sd, out_dir, kinds=("vmm", "qemu"), ms=None, name=None):
    """One SVG per suite: a panel per metric, bars = medians, dots = single runs, dashed red
    line = the target in the metric's unit (main table: vmm vs QEMU). With kinds, ms and
    name: a bar per variant (the offload table, no targets). Returns the SVG path or None."""
    s = sd.suite
    ms = ms or sd.metrics
    name = name or s
    main = tuple(kinds) == ("vmm", "qemu")
    data_path = os.path.join(out_dir, "plots", f"{name}.dat")
    gp_path = os.path.join(out_dir, "plots", f"{name}.gp")
    svg_path = os.path.join(out_dir, f"{name}.svg")
    os.makedirs(os.path.dirname(data_path), exist_ok=True)
    cols = 5 if s == "boot" else 4
    rows = (len(ms) + cols - 1) // cols
    with open(data_path, "w") as d:
        for i, m in enumerate(ms):
            med = sd.medians(m, kinds)
            d.write(f"# {m.title}: medians (x label value color)\n")
            for x, k in enumerate(kinds):
                v = med[k]
                d.write(f"{x} {common.vname(k)} {'NaN' if v is None else repr(v)} {COLORS.get(k, 0x7F7F7F)}\n")
            d.write("\n\n")
            d.write(f"# {m.title}: single runs (x value)\n")
            n = 0
            for x, k in enumerate(kinds):
                for st, v in sd.runs_of(m, k):
                    if st == "ok" and v is not None:
                        d.write(f"{x} {v!r}\n")
                        n += 1
            if not n:
                d.write("0 NaN\n")
            d.write("\n\n")
    g = [
        f"set terminal svg size {cols * 300},{rows * 300 + 40} dynamic noenhanced "
        'font "sans,11" background rgb "white"',
        f"set output {gp_str(svg_path)}",
        f"set multiplot layout {rows},{cols} title "
        + gp_str(f"{s}: vmm vs QEMU {'10' if s == 'migrate' else '7.2'} microvm (bars: median, dots: runs, dashed: target)" if main
                 else f"{s}: every variant (bars: median, dots: runs)"),
        "set style fill solid 0.75 border rgb '#333333'",
        "set boxwidth 0.6",
        f"set xrange [-0.7:{len(kinds) - 0.3}]",
        "set grid ytics lc rgb '#dddddd'",
        "set border 3",
        "set xtics nomirror scale 0",
        "set ytics nomirror",
        "unset key",
    ]
    for i, m in enumerate(ms):
        med = sd.medians(m, kinds)
        vals = [v for k in kinds for st, v in sd.runs_of(m, k) if st == "ok" and v is not None]
        t = m.target_value(med["qemu"]) if main else None
        met = m.met(med["vmm"], med["qemu"]) if main else None
        sub = "no target" if not m.target or not main else f"target {m.target_text()}: " + (
            "n/a" if met is None else "met" if met else "NOT met")
        g.append("set title " + ' . "\\n" . '.join(gp_str(x) for x in m.plot_title + [sub]))
        g.append("unset arrow")
        g.append("unset label")
        if not vals:
            g.append("set yrange [0:1]")
            g.append('set label "no data" at 0.5,0.5 center')
            g.append("plot 1/0 notitle")
            continue
        top = max(vals + ([t] if t is not None else []))
        g.append(f"set yrange [0:{top * 1.15 if top > 0 else 1!r}]")
        g.append("set format y '%.0s%c'" if top >= 10000 else "set format y '%g'")
        if t is not None:
            g.append(f"set arrow from -0.6,{t!r} to {len(kinds) - 0.4},{t!r} nohead dt 2 lw 1.5 lc rgb '#d62728'")
        g.append(f"plot {gp_str(data_path)} index {2 * i} using 1:3:4:xtic(2) with boxes lc rgb variable, "
                 f"'' index {2 * i + 1} using 1:2 with points pt 7 ps 0.6 lc rgb '#222222'")
    g.append("unset multiplot")
    with open(gp_path, "w") as f:
        f.write("\n".join(g) + "\n")
    p = subprocess.run(["gnuplot", gp_path], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"bench: warning: gnuplot failed for {s}: {p.stderr.strip()[:300]}", file=sys.stderr)
        return None
    return svg_path


# ---- main -----------------------------------------------------------------------------------

def header(meta, runs, suites, out_dir):
    when = meta.get("date") or time.strftime("%Y-%m-%d %H:%M %Z")
    lines = [f"# vmm benchmark results ({when})", ""]
    if meta:
        lines.append(
            f"Measured {meta.get('where', '?')}: {meta.get('cpus', '?')} CPUs "
            f"({meta.get('cpu_model', '?')}), {meta.get('mem_total_mib', '?')} MiB, Linux "
            f"{meta.get('kernel_running', '?')}; load average {meta.get('loadavg_start', '?')} at "
            f"the start, {meta.get('loadavg_end', '?')} at the end; {meta.get('seconds', '?')} s of "
            "measuring."
            + (f" The host ({meta['host_cpus']} CPUs) had a load average of "
               f"{meta['host_loadavg']} (start / end)." if meta.get("host_loadavg") else ""))
        q10 = meta.get("suites", {}).get("migrate", {}).get("qemu10_version")
        lines.append(f"{meta.get('vmm_version', 'vmm')} (git {meta.get('git', '?')}) vs "
                     + (f"{q10} (migrate)" if q10 and suites == ["migrate"] else
                        f"{meta.get('qemu_version', 'QEMU')}" + (f", and {q10} for migrate" if q10 else ""))
                     + f"; guest kernel {meta.get('guest_kernel', '?')}."
                     + (f" Column vmm-base (--baseline): {meta['vmm_base_version']}."
                        if meta.get("vmm_base_version") else ""))
    else:
        lines.append("(meta.json is missing: the measurement did not finish; see the messages above.)")
    lines.append(f"{runs} run(s) per VMM, alternating (odd runs start with vmm, even runs with QEMU); "
                 "medians over the successful runs; single runs listed in run order "
                 "(FAIL: that run failed, see below the table). Raw data: "
                 + ", ".join(f"{s}.csv" for s in suites) + "; console logs in logs/.")
    lines.append("")
    return lines


def migrate_cases(meta, rows):
    """The migrate cases measured: as meta.json says (the ones asked for), else those the CSV
    has, else all."""
    cases = meta.get("suites", {}).get("migrate", {}).get("cases")
    if not cases and rows:
        have = {r.get("job") for r in rows}
        cases = [c for c in common.MIG_CASES if c in have]
    return [c for c in (cases or common.MIG_CASES) if c in common.MIG_CASES] or list(common.MIG_CASES)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--extra-meta", default="{}", help="JSON merged into meta (date, git, ...)")
    ap.add_argument("suites", nargs="+")
    args = ap.parse_args()
    out = args.out
    meta = {}
    try:
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        pass
    meta.update(json.loads(args.extra_meta))

    plots_ok = not args.no_plots and shutil.which("gnuplot")
    if not args.no_plots and not plots_ok:
        print("bench: warning: gnuplot not found (scripts/install-deps installs gnuplot-nox): no plots",
              file=sys.stderr)
    md = header(meta, args.runs, args.suites, out)
    summary = []
    nfail = 0
    for s in args.suites:
        rows = load_rows(os.path.join(out, f"{s}.csv"))
        sd = SuiteData(s, rows, args.runs, migrate_cases(meta, rows) if s == "migrate" else None)
        plots = {}
        if plots_ok and rows:
            # migrate: the figures with a target, a row of panels per case
            p = plot_suite(sd, out, ms=[m for m in sd.metrics if m.target] if s == "migrate" else None)
            if p:
                plots[s] = p
            kinds = sd.variants()
            if s != "vsock" and len(kinds) > 2:
                p = plot_suite(sd, out, kinds, common.offload_metrics(s), f"{s}-offload")
                if p:
                    plots[s + "-offload"] = p
        lines, summ, nf = suite_markdown(sd, meta, plots)
        if rows is None:
            lines.insert(2, f"**Not measured**: {s}.csv is missing (the measurement stopped "
                            "before this suite; see the messages above).\n")
        md += lines
        summary += summ
        nfail += nf
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md).rstrip() + "\n")
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["suite", "job", "metric", "label", "vmm_median",
                                          "qemu_median", "ratio", "target", "met"])
        w.writeheader()
        for r in summary:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v))
                        for k, v in r.items()})
    # stdout: the tables, without the image links.
    print("\n".join(l for l in md if not l.startswith("![")).rstrip())
    print()
    print(f"Results: {os.path.join(out, 'results.md')} (plots: "
          + (", ".join(f"{s}.svg" for s in args.suites) + " and *-offload.svg" if plots_ok else "none")
          + ", raw: *.csv)")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
