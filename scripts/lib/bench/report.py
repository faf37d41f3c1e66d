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
COLORS = {"vmm": 0x1F77B4, "qemu": 0xFF7F0E}


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

    def __init__(self, suite, rows, runs):
        self.suite, self.rows, self.runs = suite, rows or [], runs
        self.metrics = common.metrics(suite)

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
            elif r["status"] != "ok":
                out.append(("fail", None))
            else:
                v = num(r.get(metric.key))
                # A run that went fine but could not measure this figure: "unmeasured".
                out.append(("ok", v * metric.scale) if v is not None else ("unmeasured", None))
        return out

    def medians(self, metric):
        """Median per VMM over the runs that measured the metric (None: none did)."""
        return {k: median([v for s, v in self.runs_of(metric, k) if s == "ok"]) for k in ("vmm", "qemu")}

    def unmeasured(self, metric, kind):
        """Whether some successful run of kind could not measure the metric."""
        return any(s == "unmeasured" for s, _ in self.runs_of(metric, kind))

    def failures(self):
        """(run, vmm, job, error) of each failed or missing measurement, and notes of
        successful ones that had a problem afterwards (e.g. the VMM did not exit)."""
        jobs = [None] if self.suite == "boot" else (common.BLK_JOBS if self.suite == "blk" else common.NET_JOBS)
        fails, notes = [], []
        for run in range(1, self.runs + 1):
            for kind in ("vmm", "qemu"):
                for j in jobs:
                    r = self.select(kind, j, run)
                    if r is None:
                        fails.append((run, kind, j, "not measured (the measurement stopped before it)"))
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
                     "n/a" if s == "unmeasured" else fmt(metric, v))
    return " / ".join(cells)


def median_cell(sd, metric, kind, v):
    """A median, or why there is none: "n/a — not measured" when runs went fine but none
    could measure it (the notes below the table say why)."""
    if v is not None:
        return fmt(metric, v)
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
            lines.append(f"- run {run}, {common.VMM_NAMES[kind]}{', ' + job if job else ''}: {err}")
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
            lines.append(f"- run {run}, {common.VMM_NAMES[kind]}{', ' + job if job else ''}: {err}")
        lines.append("")
    if plots.get(s):
        lines.append(f"![{s}: vmm vs QEMU]({os.path.basename(plots[s])})")
        lines.append("")
    return lines, summary, len(fails)


def breakdown_markdown(sd):
    """Median KVM exit counts by reason (what the guest did that needed the host): up to
    the marker for boot, per GiB moved for blk and net."""
    if not any(r["status"] == "ok" for r in sd.rows):
        return []
    boot = sd.suite == "boot"
    jobs = [None] if boot else (common.BLK_JOBS if sd.suite == "blk" else common.NET_JOBS)
    cols = [(j, k) for j in jobs for k in ("vmm", "qemu")]
    head = ("| KVM statistic (median, up to the marker)" if boot
            else "| KVM statistic (median per GiB moved)")
    lines = [head + " | " + " | ".join(
        (f"{j} " if j else "") + common.VMM_NAMES[k] for j, k in cols) + " |",
        "|---" + "|---:" * len(cols) + "|"]
    for stat in KVM_BREAKDOWN:
        cells = []
        for j, k in cols:
            vals = []
            for r in sd.rows:
                if r["vmm"] != k or r["status"] != "ok" or (j is not None and r.get("job") != j):
                    continue
                v, b = num(r.get(stat)), num(r.get("bytes"))
                if v is not None and not boot:
                    v = v / (b / (1 << 30)) if b else None
                vals.append(v)
            v = median(vals)
            cells.append("—" if v is None else f"{v:,.0f}")
        lines.append(f"| {stat} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def suite_conditions(s, meta):
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
    if s == "boot":
        return ("Guest: 1 vCPU, 256 MiB, command line `console=ttyS0 quiet panic=-1`, initramfs "
                "whose /init echoes `BENCH-BOOT-MARKER`, waits for the harness's go line on the "
                "console and runs `poweroff -f`. Time: from just "
                "before the VMM process is forked to the marker line on its stdout; exits (KVM "
                "debugfs, summed over vCPUs) and RSS (/proc/PID/smaps, total Rss minus the guest "
                "RAM mapping) read when the marker arrives, before the go line is sent. "
                f"QEMU: `qemu-system-x86_64 {q}`." + where)
    info = meta.get("suites", {}).get(s, {})
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
                "thread's run time minus its (tick-sampled) guest time." + where)
    return (f"Guest: 1 vCPU, {common.IO_GUEST_MIB} MiB. Network: "
            f"{info.get('net_link', 'tap with link-local addresses')}; vmm `--net tap=…,vhost=off`, "
            "QEMU `-netdev tap,…,vhost=off -device virtio-net-device`. iperf3 "
            f"{meta.get('iperf_time_s', '?')} s per direction, one TCP stream; throughput from the "
            "receiver's byte count. CPU and exits as for blk, per GiB received." + where)


# ---- plots ----------------------------------------------------------------------------------

def gp_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plot_suite(sd, out_dir):
    """One SVG per suite: a panel per metric, bars = medians, dots = single runs, dashed red
    line = the target in the metric's unit. Returns the SVG path or None."""
    s = sd.suite
    ms = sd.metrics
    data_path = os.path.join(out_dir, "plots", f"{s}.dat")
    gp_path = os.path.join(out_dir, "plots", f"{s}.gp")
    svg_path = os.path.join(out_dir, f"{s}.svg")
    os.makedirs(os.path.dirname(data_path), exist_ok=True)
    cols = 5 if s == "boot" else 4
    rows = (len(ms) + cols - 1) // cols
    with open(data_path, "w") as d:
        for i, m in enumerate(ms):
            med = sd.medians(m)
            d.write(f"# {m.title}: medians (x label value color)\n")
            for x, k in enumerate(("vmm", "qemu")):
                v = med[k]
                d.write(f"{x} {common.VMM_NAMES[k]} {'NaN' if v is None else repr(v)} {COLORS[k]}\n")
            d.write("\n\n")
            d.write(f"# {m.title}: single runs (x value)\n")
            n = 0
            for x, k in enumerate(("vmm", "qemu")):
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
        + gp_str(f"{s}: vmm vs QEMU 7.2 microvm (bars: median, dots: runs, dashed: target)"),
        "set style fill solid 0.75 border rgb '#333333'",
        "set boxwidth 0.6",
        "set xrange [-0.7:1.7]",
        "set grid ytics lc rgb '#dddddd'",
        "set border 3",
        "set xtics nomirror scale 0",
        "set ytics nomirror",
        "unset key",
    ]
    for i, m in enumerate(ms):
        med = sd.medians(m)
        vals = [v for k in ("vmm", "qemu") for st, v in sd.runs_of(m, k) if st == "ok" and v is not None]
        t = m.target_value(med["qemu"])
        met = m.met(med["vmm"], med["qemu"])
        sub = "no target" if not m.target else f"target {m.target_text()}: " + (
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
            g.append(f"set arrow from -0.6,{t!r} to 1.6,{t!r} nohead dt 2 lw 1.5 lc rgb '#d62728'")
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
        lines.append(f"{meta.get('vmm_version', 'vmm')} (git {meta.get('git', '?')}) vs "
                     f"{meta.get('qemu_version', 'QEMU')}; guest kernel {meta.get('guest_kernel', '?')}.")
    else:
        lines.append("(meta.json is missing: the measurement did not finish; see the messages above.)")
    lines.append(f"{runs} run(s) per VMM, alternating (odd runs start with vmm, even runs with QEMU); "
                 "medians over the successful runs; single runs listed in run order "
                 "(FAIL: that run failed, see below the table). Raw data: "
                 + ", ".join(f"{s}.csv" for s in suites) + "; console logs in logs/.")
    lines.append("")
    return lines


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
        sd = SuiteData(s, rows, args.runs)
        plots = {}
        if plots_ok and rows:
            p = plot_suite(sd, out)
            if p:
                plots[s] = p
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
          + (", ".join(f"{s}.svg" for s in args.suites) if plots_ok else "none") + ", raw: *.csv)")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
