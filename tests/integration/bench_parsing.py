#!/usr/bin/env python3
"""Suite "harness": scripts/bench's own parsing and reporting, without KVM (unittest).

What a benchmark must never do, checked on made-up inputs: claim a figure it did not
measure (an empty smaps — the VMM already gone — or no guest RAM mapping gives no RSS
figure, not 0; a metric nobody measured is "n/a" and never "met"), or print a value that
cannot be negative as negative (CPU outside guest mode when the tick-sampled guest time
exceeds the exact run time). Also: vmm's guest RAM is found in smaps for each backing
(anonymous private memory, memfd), and QEMU's.

Usage: tests/integration/bench_parsing.py (meson runs it in the harness suite)
"""

import csv
import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts", "lib", "bench"))
import common  # noqa: E402
import measure  # noqa: E402
import report  # noqa: E402

MIB = 1 << 20


def smaps_entry(lo, size, name="", rss=0, anon_huge=0, shmem_pmd=0, flags="rd wr mr mw me ac"):
    hi = lo + size
    inode = "0" if not name.startswith("/") else "1234"
    return (f"{lo:x}-{hi:x} rw-p 00000000 00:00 {inode}          {name}\n"
            f"Size:           {size // 1024} kB\n"
            f"Rss:            {rss} kB\n"
            f"AnonHugePages:  {anon_huge} kB\n"
            f"ShmemPmdMapped: {shmem_pmd} kB\n"
            f"VmFlags: {flags}\n")


class SmapsTest(unittest.TestCase):
    RAM = 256 * MIB

    def test_vmm_private_ram_found_by_size_and_advice(self):
        text = (smaps_entry(0x400000, 2 * MIB, "/usr/bin/vmm", rss=900)
                # a thread stack of the same size would be ambiguous: the advised one wins
                + smaps_entry(0x7f0000000000, self.RAM, rss=100, flags="rd wr mr mw me ac")
                + smaps_entry(0x7f1000000000, self.RAM, rss=120000, anon_huge=118784,
                              flags="rd wr mr mw me ac hg dd")
                + smaps_entry(0x7f2000000000, 4 * MIB, "[heap]", rss=700))
        r = measure.split_rss(measure.parse_smaps(text), self.RAM)
        self.assertEqual(r["ram_mapping"], "anonymous mapping of the RAM size")
        self.assertEqual(r["rss_guest_ram_kib"], 120000)
        self.assertEqual(r["rss_outside_kib"], 900 + 100 + 700)
        self.assertEqual(r["ram_huge_kib"], 118784)
        self.assertNotIn("unmeasured", r)

    def test_vmm_memfd_ram_found_by_name(self):
        text = (smaps_entry(0x400000, 2 * MIB, "/usr/bin/vmm", rss=800)
                + smaps_entry(0x7f1000000000, self.RAM, "/memfd:vmm-guest-ram (deleted)",
                              rss=130000, shmem_pmd=126976, flags="rd wr sh mr mw me ms hg dd"))
        r = measure.split_rss(measure.parse_smaps(text), self.RAM)
        self.assertEqual(r["ram_mapping"], "memfd vmm-guest-ram")
        self.assertEqual(r["rss_outside_kib"], 800)
        self.assertEqual(r["ram_huge_kib"], 126976)

    def test_qemu_ram_is_the_anonymous_mapping_of_the_ram_size(self):
        text = (smaps_entry(0x5500000000, 20 * MIB, "/usr/bin/qemu-system-x86_64", rss=20000)
                + smaps_entry(0x7f1000000000, self.RAM, rss=125000, anon_huge=120000,
                              flags="rd wr mr mw me ac hg")
                + smaps_entry(0x7f3000000000, 64 * MIB, rss=25000))
        r = measure.split_rss(measure.parse_smaps(text), self.RAM)
        self.assertEqual(r["rss_guest_ram_kib"], 125000)
        self.assertEqual(r["rss_outside_kib"], 45000)

    def test_empty_smaps_is_not_zero(self):
        """The VMM had exited: smaps is empty. Before, this came out as 0 MiB — "met"."""
        r = measure.split_rss(measure.parse_smaps(""), self.RAM)
        self.assertIsNone(r["rss_outside_kib"])
        self.assertIsNone(r["rss_total_kib"])
        self.assertIn("empty", r["unmeasured"])

    def test_no_ram_mapping_is_not_measured(self):
        text = smaps_entry(0x400000, 2 * MIB, "/usr/bin/vmm", rss=800)
        r = measure.split_rss(measure.parse_smaps(text), self.RAM)
        self.assertIsNone(r["rss_outside_kib"])
        self.assertEqual(r["ram_mapping"], "not found")
        self.assertIn("no mapping of the guest RAM", r["unmeasured"])


def snap(t, utime, stime, gtime, threads):
    s = measure.Snapshot(t=t, utime=utime, stime=stime, guest_time=gtime)
    s["threads"] = {tid: {"cpu": c, "gtime": g, "ctxsw": w} for tid, (c, g, w) in threads.items()}
    for k in measure.KVM_STATS:
        s[k] = 0
    return s


class CpuSplitTest(unittest.TestCase):
    def test_split_by_thread_role(self):
        # tid 1: main (no guest time), 2: vCPU, 3: an I/O worker
        a = snap(0, 1.0, 1.0, 0.5, {1: (0.2, 0, 10), 2: (1.0, 0.5, 100), 3: (0.8, 0, 50)})
        b = snap(10, 6.0, 4.0, 5.5, {1: (0.2, 0, 10), 2: (7.0, 5.5, 400), 3: (2.8, 0, 250)})
        c = measure.split_cpu(a, b)
        self.assertAlmostEqual(c["cpu_s"], 8.0)
        self.assertAlmostEqual(c["vcpu_cpu_s"], 6.0)
        self.assertAlmostEqual(c["other_cpu_s"], 2.0)
        self.assertEqual(c["other_ctxsw"], 200)
        # outside guest mode: non-vCPU 2.0 + vCPU (6.0 - 5.0)
        self.assertAlmostEqual(c["host_cpu_s"], 3.0)
        self.assertIsNone(c["note"])

    def test_sampled_guest_time_above_run_time_is_not_negative(self):
        """The 1M sequential write figure once came out at -0.10 s/GiB: the process's exact
        utime+stime minus its tick-sampled guest time. The vCPU's part is counted as 0, the
        non-vCPU threads' part stays exact, and a note says so."""
        a = snap(0, 1.0, 1.0, 0.5, {2: (1.0, 0.5, 100), 3: (1.0, 0, 50)})
        b = snap(10, 5.0, 2.0, 5.9, {2: (4.0, 5.9, 400), 3: (3.0, 0, 250)})
        c = measure.split_cpu(a, b)
        self.assertLess(c["cpu_s"] - c["guest_cpu_s"], 0)  # what the old figure was
        self.assertGreaterEqual(c["host_cpu_s"], 0)
        self.assertAlmostEqual(c["host_cpu_s"], 2.0)  # the I/O worker's exact 2.0 s
        self.assertIn("guest time exceeded", c["note"])

    def test_missing_snapshots_give_no_figures(self):
        a = snap(0, 1.0, 1.0, 0.5, {2: (1.0, 0.5, 100)})
        b = measure.Snapshot(t=10, utime=None, stime=None, guest_time=None)
        c = measure.split_cpu(a, b)
        self.assertIsNone(c["cpu_s"])
        self.assertIsNone(c["host_cpu_s"])

    def test_window_of_a_gone_process_is_unmeasured(self):
        a = snap(0, 1.0, 1.0, 0.5, {2: (1.0, 0.5, 100)})
        b = measure.Snapshot(t=10, utime=None, stime=None, guest_time=None,
                             unmeasured="the VMM had exited")
        row = {}
        measure.fill_window(row, a, b)
        self.assertIsNone(row["host_cpu_s"])
        self.assertIn("exited", row["unmeasured"])


class SnapshotTest(unittest.TestCase):
    def test_snapshot_of_an_exited_process_is_all_unmeasured(self):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        try:
            # A zombie: /proc/PID/stat is there, its memory and VM are not.
            for _ in range(200):
                if not measure.proc_alive(pid):
                    break
                os.sched_yield()
            s = measure.snapshot(pid, 1.0, 256 * MIB)
            self.assertIsNone(s["rss_outside_kib"])
            self.assertIsNone(s["exits"])
            self.assertIsNone(s["utime"])
            self.assertIn("exited", s["unmeasured"])
        finally:
            os.waitpid(pid, 0)

    def test_snapshot_of_a_live_process_reads_its_threads(self):
        s = measure.snapshot(os.getpid(), 1.0, threads=True)
        self.assertIsNotNone(s["utime"])
        self.assertIn(os.getpid(), s["threads"])


class ReportTest(unittest.TestCase):
    def write_boot_csv(self, d, rows):
        with open(os.path.join(d, "boot.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=measure.BOOT_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: measure.fmt_csv(r.get(k)) for k in measure.BOOT_COLUMNS})

    def boot_rows(self, vmm_rss):
        rows = []
        for run in (1, 2):
            for kind, t, rss in (("vmm", 9.0, vmm_rss[run - 1]), ("qemu", 13.0, 45000)):
                rows.append({"run": run, "vmm": kind, "status": "ok", "time_to_marker_s": t,
                             "exits": 30000 if kind == "vmm" else 80000,
                             "rss_outside_kib": rss, "cpu_s": t,
                             "unmeasured": None if rss is not None else "RSS: smaps was empty"})
        return rows

    def test_unmeasured_figure_is_na_and_never_met(self):
        with tempfile.TemporaryDirectory() as d:
            self.write_boot_csv(d, self.boot_rows([None, None]))
            sd = report.SuiteData("boot", report.load_rows(os.path.join(d, "boot.csv")), 2)
            lines, summary, nfail = report.suite_markdown(sd, {}, {})
            self.assertEqual(nfail, 0)
            rss = [l for l in lines if l.startswith("| VMM RSS outside guest RAM")][0]
            self.assertIn("n/a / n/a", rss)
            self.assertIn("n/a — not measured", rss)
            self.assertNotIn("| yes |", rss)
            self.assertNotIn("0.00", rss)
            row = [r for r in summary if r["metric"] == "rss_outside_kib"][0]
            self.assertEqual(row["met"], "n/a")
            self.assertTrue(any("not measured: RSS: smaps was empty" in l for l in lines))
            # The measured figures are still judged.
            t = [r for r in summary if r["metric"] == "time_to_marker_s"][0]
            self.assertEqual(t["met"], "yes")

    def test_partly_measured_figure_uses_the_measured_runs(self):
        with tempfile.TemporaryDirectory() as d:
            self.write_boot_csv(d, self.boot_rows([None, 1900]))
            sd = report.SuiteData("boot", report.load_rows(os.path.join(d, "boot.csv")), 2)
            lines, summary, _ = report.suite_markdown(sd, {}, {})
            rss = [l for l in lines if l.startswith("| VMM RSS outside guest RAM")][0]
            self.assertIn("n/a / 1.86", rss)
            row = [r for r in summary if r["metric"] == "rss_outside_kib"][0]
            self.assertEqual(row["met"], "yes")

    def test_met_is_undecided_without_data(self):
        m = common.metrics("boot")[2]
        self.assertIsNone(m.met(None, 44.0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
