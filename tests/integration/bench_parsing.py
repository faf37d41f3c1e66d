#!/usr/bin/env python3
"""Suite "harness": scripts/bench's own parsing and reporting, without KVM (unittest).

What a benchmark must never do, checked on made-up inputs: claim a figure it did not
measure (an empty smaps — the VMM already gone — or no guest RAM mapping gives no RSS
figure, not 0; a metric nobody measured is "n/a" and never "met"), or print a value that
cannot be negative as negative (CPU outside guest mode when the tick-sampled guest time
exceeds the exact run time). Also: vmm's guest RAM is found in smaps for each backing
(anonymous private memory, memfd), and QEMU's. The offload variants (vhost-net, vhost-user-blk,
vhost-vsock): their command lines, the alternation, the vhost worker's and back-end's CPU kept
apart from the VMM's non-vCPU threads, vsock-bench's result lines, and the offload table's
targets (met / NO / n/a, a variant not run is n/a with its reason and not a failure).
The migrate suite: the guest's console lines (a heartbeat cut by the switchover does not
count), the downtime the guest saw from the heartbeats' arrival times (no destination beat:
no figure, not 0), each VMM's own figures (QEMU's bytes are ram.transferred, never its
ram.total), the veth's counters, the command lines of both ends, and its report (targets,
cases not asked for are neither failures nor rows, a failed case is FAIL).

Usage: tests/integration/bench_parsing.py (meson runs it in the harness suite)
"""

import csv
import json
import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts", "lib", "bench"))
import common  # noqa: E402
import measure  # noqa: E402
import migrate  # noqa: E402
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
            # A zombie: /proc/PID/stat is there, its memory and VM are not. Wait for the
            # exit without reaping it (a bounded spin lost the race on a loaded machine).
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
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


def blk_row(kind, job, iops, **more):
    """One successful blk CSV row of run 1 (256 MiB in 10 s), its per-GiB figures filled in."""
    r = {"run": 1, "vmm": kind, "job": job, "status": "ok", "bytes": 1 << 28, "seconds": 10,
         "iops": iops, "mb_per_s": 30, "exits": 1000, "cpu_s": 2, "host_cpu_s": 1,
         "other_cpu_s": 0.1, "other_ctxsw": 10, **more}
    measure.per_gib(r)
    return r


class FakeWork:
    vmm, qemu, kernel, mem_opts = "/w/vmm", "/usr/bin/qemu-system-x86_64", "/w/vmlinuz", ""
    vmm_base = "/w/vmm-base"


class VariantTest(unittest.TestCase):
    def test_order_interleaves_and_alternates(self):
        v = [k for k in common.VARIANTS["net"] if k != "vmm-base"]
        self.assertEqual(measure.order(1, v), ("vmm", "qemu", "vmm-vhost", "qemu-vhost"))
        self.assertEqual(measure.order(2, v), ("qemu-vhost", "vmm-vhost", "qemu", "vmm"))
        self.assertEqual(measure.order(1), ("vmm", "qemu"))
        self.assertEqual(measure.order(2), ("qemu", "vmm"))
        self.assertEqual(sorted(measure.order(1, common.VARIANTS["blk"])), sorted(common.VARIANTS["blk"]))
        # --baseline: vmm-base runs next to vmm's QEMU partner, in every run
        self.assertEqual(measure.order(1, ["vmm", "vmm-base", "qemu"]), ("vmm", "qemu", "vmm-base"))
        self.assertEqual(measure.order(2, ["vmm", "vmm-base", "qemu"]), ("vmm-base", "qemu", "vmm"))

    def test_net_argv_vhost_on_and_off(self):
        w = FakeWork()
        for kind, want in (("vmm", "vhost=off"), ("vmm-vhost", "vhost=on")):
            a = measure.vmm_argv(kind, w, "i", 1, 512, "c", tap="t0")
            self.assertTrue(a[a.index("--net") + 1].endswith(want), a)
        for kind, want in (("qemu", "vhost=off"), ("qemu-vhost", "vhost=on")):
            a = measure.vmm_argv(kind, w, "i", 1, 512, "c", tap="t0")
            self.assertTrue(a[a.index("-netdev") + 1].endswith(want), a)
            self.assertIn("virtio-mmio.force-legacy=false", a)

    def test_baseline_runs_its_own_binary_the_same_way(self):
        w = FakeWork()
        a = measure.vmm_argv("vmm", w, "i", 1, 512, "c", disk="/dev/loop0", tap="t0")
        b = measure.vmm_argv("vmm-base", w, "i", 1, 512, "c", disk="/dev/loop0", tap="t0")
        self.assertEqual((a[0], b[0]), ("/w/vmm", "/w/vmm-base"))
        self.assertEqual(a[1:], b[1:])
        w.vmm_base = None
        self.assertIn("--baseline", measure.backend_missing(w, "vmm-base"))

    def test_vhost_user_blk_argv_shares_guest_ram(self):
        w = FakeWork()
        a = measure.vmm_argv("vmm-vub", w, "i", 1, 512, "c", disk="/dev/loop0", tools="t",
                             vhost_user="/s.sock")
        self.assertEqual(a[a.index("--memory") + 1], "512M,shared=on")
        self.assertIn("vhost-user=/s.sock", a)
        self.assertNotIn("path=/dev/loop0,direct=on", a)
        w.mem_opts = "shared=on"
        a = measure.vmm_argv("vmm-vub", w, "i", 1, 512, "c", vhost_user="/s.sock")
        self.assertEqual(a[a.index("--memory") + 1], "512M,shared=on")
        q = measure.vmm_argv("qemu-vub", w, "i", 1, 512, "c", vhost_user="/s.sock")
        self.assertIn("microvm,acpi=on,memory-backend=mem0", q)
        self.assertIn("memory-backend-memfd,id=mem0,size=512M,share=on", q)
        self.assertIn("vhost-user-blk,chardev=vu0", q)
        self.assertEqual(common.QEMU_BASE_ARGS[1], "microvm,acpi=on")  # not modified in place

    def test_qsd_backend_and_missing_tools(self):
        w = FakeWork()
        w.qsd, w.vub = None, None
        self.assertIn("not installed", measure.backend_missing(w, "vmm-qsd"))
        self.assertIn("not built", measure.backend_missing(w, "qemu-vub"))
        self.assertIsNone(measure.backend_missing(w, "vmm"))
        w.qsd = "/usr/bin/qemu-storage-daemon"
        a = measure.backend_argv(w, "vmm-qsd", "/dev/loop3", "/s")
        self.assertTrue(any(x.startswith("driver=host_device,") and "cache.direct=on" in x for x in a))
        self.assertTrue(any("type=vhost-user-blk" in x and "addr.path=/s" in x for x in a))
        self.assertIsNone(measure.backend_argv(w, "qemu", "/dev/loop3", "/s"))
        # QEMU's own pair, the reference for a vmm-qsd failure: the same daemon
        self.assertEqual(measure.backend_argv(w, "qemu-qsd", "/dev/loop3", "/s"), a)
        w.qsd = None
        self.assertIn("not installed", measure.backend_missing(w, "qemu-qsd"))
        self.assertIn("qemu-qsd", common.VARIANTS["blk"])

    def test_vsock_argv(self):
        w = FakeWork()
        self.assertIn("cid=103", measure.vmm_argv("vmm", w, "i", 1, 512, "c", vsock_cid=103))
        self.assertIn("vhost-vsock-device,guest-cid=104",
                      measure.vmm_argv("qemu", w, "i", 1, 512, "c", vsock_cid=104))


class VsockParseTest(unittest.TestCase):
    def test_stream_and_ping_pong(self):
        row = {}
        measure.parse_vsock(row, {"bytes": str(128 << 20), "seconds": "2.0"})
        self.assertAlmostEqual(row["mbit_per_s"], (128 << 20) * 8 / 2 / 1e6)
        row = {"exits": 12000, "other_cpu_s": 0.002, "other_ctxsw": 4, "offload_cpu_s": 0.5}
        measure.parse_vsock(row, {"ops": "4000", "seconds": "1.5", "median_us": "310.5",
                                  "p99_us": "900.0"})
        measure.per_gib(row)
        self.assertEqual(row["ops"], 4000)
        self.assertAlmostEqual(row["exits_per_op"], 3.0)
        self.assertAlmostEqual(row["other_cpu_us_per_op"], 0.5)
        self.assertAlmostEqual(row["other_ctxsw_per_op"], 0.001)
        self.assertAlmostEqual(row["offload_cpu_us_per_op"], 125.0)
        self.assertNotIn("exits_per_gib", row)  # 2 bytes per round trip: per GiB says nothing

    def test_bad_lines_raise(self):
        for kv in ({"ops": "0", "seconds": "1", "median_us": "1", "p99_us": "1"},
                   {"bytes": "10", "seconds": "0"}, {"bytes": "10"}):
            with self.assertRaises((KeyError, ValueError)):
                measure.parse_vsock({}, kv)


class OffloadCpuTest(unittest.TestCase):
    def test_vhost_worker_thread_is_not_a_vmm_thread(self):
        """Linux >= 6.4 runs the vhost worker as a thread "vhost-PID" of the VMM process: its
        CPU is the offloaded data path, not the VMM's non-vCPU threads'."""
        a = snap(0, 1.0, 1.0, 0.5, {1: (0.2, 0, 10), 2: (1.0, 0.5, 100), 9: (0.0, 0, 0)})
        b = snap(10, 4.0, 4.0, 3.5, {1: (0.21, 0, 11), 2: (4.0, 3.5, 200), 9: (3.0, 0, 5000)})
        for x in (a, b):
            x["threads"][9]["comm"] = "vhost-4242"
            x["offload"] = {"cpu": 0.0, "ctxsw": 0, "tasks": 0}
        c = measure.split_cpu(a, b, pid=4242)
        self.assertAlmostEqual(c["other_cpu_s"], 0.01)
        self.assertEqual(c["other_ctxsw"], 1)
        self.assertAlmostEqual(c["offload_cpu_s"], 3.0)
        self.assertEqual(c["offload_ctxsw"], 5000)
        # without the pid the worker would be counted as the VMM's own
        self.assertAlmostEqual(measure.split_cpu(a, b)["other_cpu_s"], 3.01)

    def test_kernel_thread_and_back_end_process(self):
        a = snap(0, 1.0, 1.0, 0.5, {2: (1.0, 0.5, 100)})
        b = snap(10, 3.0, 1.0, 2.5, {2: (3.0, 2.5, 200)})
        a["offload"] = {"cpu": 1.0, "ctxsw": 10, "tasks": 1}
        b["offload"] = {"cpu": 2.5, "ctxsw": 40, "tasks": 1}
        row = {}
        measure.fill_window(row, a, b, pid=7, expect_offload=True)
        self.assertAlmostEqual(row["offload_cpu_s"], 1.5)
        self.assertEqual(row["offload_ctxsw"], 30)
        self.assertAlmostEqual(row["other_cpu_s"], 0.0)
        self.assertNotIn("unmeasured", row)

    def test_no_worker_found_is_unmeasured_not_zero(self):
        a = snap(0, 1.0, 1.0, 0.5, {2: (1.0, 0.5, 100)})
        b = snap(10, 3.0, 1.0, 2.5, {2: (3.0, 2.5, 200)})
        for x in (a, b):
            x["offload"] = {"cpu": 0.0, "ctxsw": 0, "tasks": 0}
        row = {}
        measure.fill_window(row, a, b, pid=7, expect_offload=True)
        self.assertIsNone(row["offload_cpu_s"])
        self.assertIn("no vhost worker", row["unmeasured"])
        row = {}
        measure.fill_window(row, a, b, pid=7, expect_offload=False)
        self.assertEqual(row["offload_cpu_s"], 0.0)  # in-process path: nothing off-process

    def test_exact_thread_time_and_ended_threads(self):
        # process total 2.0 s over the window, vCPU 1.5 s, the living non-vCPU thread 0.004 s:
        # the remainder is skew between /proc/PID/stat and the threads' schedstat (a busy vCPU
        # read a little later), not CPU of the VMM's threads: the exact thread time counts.
        a = snap(0, 1.0, 1.0, 0.5, {2: (1.0, 0.5, 100), 3: (0.5, 0, 10)})
        b = snap(10, 2.0, 2.0, 2.0, {2: (2.5, 2.0, 200), 3: (0.504, 0, 12)})
        c = measure.split_cpu(a, b)
        self.assertAlmostEqual(c["other_cpu_s"], 0.004)
        self.assertIsNone(c["note"])
        # a worker (tid 4) ended inside the window: the process total's remainder, with a note
        a = snap(0, 1.0, 1.0, 0.5, {2: (1.0, 0.5, 100), 3: (0.5, 0, 10), 4: (0.1, 0, 5)})
        c = measure.split_cpu(a, b)
        self.assertAlmostEqual(c["other_cpu_s"], 0.5)
        self.assertIn("ended inside the window", c["note"])

    def test_offload_usage_of_this_process(self):
        u = measure.offload_usage([os.getpid()])
        self.assertGreater(u["tasks"], 0)
        self.assertGreater(u["cpu"], 0)
        self.assertEqual(measure.offload_usage([]), {"cpu": 0.0, "ctxsw": 0, "tasks": 0})
        self.assertEqual(measure.vhost_workers(2 ** 22 + 12345), [])


class OffloadReportTest(unittest.TestCase):
    def write_csv(self, d, suite, rows):
        with open(os.path.join(d, f"{suite}.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=measure.IO_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: measure.fmt_csv(r.get(k)) for k in measure.IO_COLUMNS})

    def net_rows(self, vals):
        rows = []
        for kind, (mbit, other_cpu, ctxsw, exits) in vals.items():
            for j in common.NET_JOBS:
                if mbit is None:
                    rows.append({"run": 1, "vmm": kind, "job": j, "status": "fail", "error": "boom"})
                    continue
                r = {"run": 1, "vmm": kind, "job": j, "status": "ok", "bytes": 1 << 28,
                     "seconds": 10, "mbit_per_s": mbit, "exits": exits, "cpu_s": 3.0,
                     "host_cpu_s": 1.0, "other_cpu_s": other_cpu, "other_ctxsw": ctxsw,
                     "offload_cpu_s": 0.0 if "vhost" not in kind else 0.3}
                measure.per_gib(r)
                rows.append(r)
        return rows

    def report(self, suite, rows):
        with tempfile.TemporaryDirectory() as d:
            self.write_csv(d, suite, rows)
            sd = report.SuiteData(suite, report.load_rows(os.path.join(d, f"{suite}.csv")), 1)
            return report.suite_markdown(sd, {"where": "in a nested L1 VM (scripts/with-kvm: QEMU TCG on the host)"}, {})

    def target(self, summary, job, key):
        return [r for r in summary if r["job"] == job and r["metric"] == f"vmm-vhost:{key}"][0]

    def test_net_targets_met_and_missed_and_the_anchor_unit(self):
        # per 256 MiB: vmm userspace 0.5 s / 28,000 wakeups; vhost 0.002 s / 2 wakeups
        lines, summary, nfail = self.report("net", self.net_rows({
            "vmm": (400, 0.5, 28000, 90000), "vmm-vhost": (450, 0.002, 2, 60000),
            "qemu": (300, 0.25, 1600, 100000), "qemu-vhost": (500, 0.53, 7148, 50000)}))
        self.assertEqual(nfail, 0)
        self.assertEqual(self.target(summary, "tx", "other_cpu_s_per_gib")["met"], "yes")
        self.assertEqual(self.target(summary, "tx", "other_ctxsw_per_gib")["met"], "yes")
        self.assertEqual(self.target(summary, "tx", "exits_per_gib")["met"], "no")  # 60k > 50k
        self.assertEqual(self.target(summary, "tx", "mbit_per_s")["met"], "no")     # 450 < 500
        text = "\n".join(lines)
        self.assertIn("| vmm userspace (vhost=off) | vmm vhost-net | QEMU vhost=off | QEMU vhost-net |", text)
        self.assertIn("**NO**", text)
        self.assertIn("nested", text)
        # 0.53 s per 256 MiB = 13.25 ticks per 64 MiB; 7,148 wakeups = 1,787 per 64 MiB
        self.assertIn("QEMU vhost-net: 13.2 ticks, 1,787 wakeups", text)
        self.assertIn("545 ticks / 28,592 wakeups", text)

    def test_net_target_without_data_is_na(self):
        lines, summary, nfail = self.report("net", self.net_rows({
            "vmm": (400, 0.5, 28000, 90000), "vmm-vhost": (None, None, None, None),
            "qemu": (300, 0.25, 1600, 100000), "qemu-vhost": (500, 0.53, 7148, 50000)}))
        self.assertEqual(nfail, 2)
        self.assertIn("| TCP host→guest: throughput (Mbit/s) | 400 | FAIL (see below) | 300 | 500 |",
                      "\n".join(lines))
        for key in ("other_cpu_s_per_gib", "other_ctxsw_per_gib", "exits_per_gib", "mbit_per_s"):
            self.assertEqual(self.target(summary, "rx", key)["met"], "n/a")

    def test_blk_variant_not_run_is_na_with_reason_not_a_failure(self):
        rows = []
        for kind in common.VARIANTS["blk"]:
            for j in common.BLK_JOBS:
                if kind == "vmm-qsd":
                    rows.append({"run": 1, "vmm": kind, "job": j, "status": "skipped",
                                 "error": "qemu-storage-daemon is not installed"})
                    continue
                rows.append(blk_row(kind, j, 900, offload_cpu_s=0.2))
        lines, summary, nfail = self.report("blk", rows)
        self.assertEqual(nfail, 0)
        text = "\n".join(lines)
        self.assertIn("vmm + qemu-storage-daemon", text)
        self.assertIn("n/a — not run", text)
        self.assertIn("qemu-storage-daemon is not installed", text)
        self.assertNotIn("FAIL", text)

    def test_variants_not_asked_for_are_not_failures(self):
        # scripts/bench blk --variants vmm-qsd: one column measured, the rest not asked for.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "blk.csv")
            out = measure.CSVOut(path, measure.IO_COLUMNS)
            for j in common.BLK_JOBS:
                r = {"run": 1, "vmm": "vmm-qsd", "job": j, "status": "ok", "bytes": 1 << 28,
                     "seconds": 10, "iops": 900, "mb_per_s": 30, "exits": 1000, "cpu_s": 2,
                     "host_cpu_s": 1, "other_cpu_s": 0.0, "other_ctxsw": 0, "offload_cpu_s": 0.2}
                measure.per_gib(r)
                out.row(r)
            out.close()
            measure.skip_not_asked(path, "blk", ["vmm-qsd"], 1)
            rows = report.load_rows(path)
            # vmm-base is a column only with --baseline: without it, not even a skipped one.
            self.assertEqual({r["vmm"] for r in rows if r["status"] == "skipped"},
                             set(common.VARIANTS["blk"]) - {"vmm-qsd", "vmm-base"})
            sd = report.SuiteData("blk", rows, 1)
            fails, _ = sd.failures()
            self.assertEqual(fails, [])
            lines, _, nfail = report.suite_markdown(sd, {"where": "here"}, {})
        self.assertEqual(nfail, 0)
        self.assertIn("not asked for (--variants)", "\n".join(lines))

    def test_baseline_column_beside_the_others(self):
        # scripts/bench blk --baseline OTHER-VMM: vmm-base is one more column of the
        # variants' table, measured as vmm is; the main table stays vmm against QEMU.
        rows = []
        for kind, iops in (("vmm", 1000), ("qemu", 800), ("vmm-base", 900)):
            for j in common.BLK_JOBS:
                rows.append(blk_row(kind, j, iops, offload_cpu_s=0.0))
        lines, _, nfail = self.report("blk", rows)
        self.assertEqual(nfail, 0)
        text = "\n".join(lines)
        self.assertIn("vmm-base in-process (--baseline)", text)
        self.assertIn("1.25", text)  # vmm / QEMU IOPS in the main table: 1000 / 800
        self.assertIn("900", text)

    def test_vsock_wakeup_bound(self):
        ms = {m.key: m for m in common.metrics("vsock") if m.job == "tx"}
        self.assertTrue(ms["other_ctxsw_per_gib"].met(100, None))
        self.assertFalse(ms["other_ctxsw_per_gib"].met(5000, 10))
        rr = {m.key: m for m in common.metrics("vsock") if m.job == "rr"}
        self.assertFalse(rr["median_us"].met(400, 300))
        self.assertIsNone(rr["median_us"].met(None, 300))


class MigrateParseTest(unittest.TestCase):
    def test_console_lines(self):
        self.assertEqual(migrate.parse_line("H123;"), ("beat", 123))
        self.assertEqual(migrate.parse_line("H123;\r"), ("beat", 123))
        self.assertIsNone(migrate.parse_line("H12"))       # cut by the switchover
        self.assertIsNone(migrate.parse_line("3;"))
        self.assertIsNone(migrate.parse_line("xH12;"))
        self.assertEqual(migrate.parse_line("D4096;"), ("dirty", 4096))
        self.assertEqual(migrate.parse_line("W77;"), ("disk", 77))
        self.assertEqual(migrate.parse_line("F9;"), ("file", 9))
        self.assertEqual(migrate.parse_line("MIGBENCH-READY beat=10 dirty=0"), ("ready", "READY"))
        self.assertEqual(migrate.parse_line("MIGBENCH-DIRTY-READY 32768 pages"), ("ready", "DIRTY-READY"))
        self.assertEqual(migrate.parse_line("MIGBENCH-ERROR disk: write 5 failed: EIO"),
                         ("error", "disk: write 5 failed: EIO"))
        self.assertEqual(migrate.parse_line("BENCH-ERROR no /dev/vda"), ("error", "no /dev/vda"))
        self.assertEqual(migrate.parse_line("[ 1.0] Kernel panic - not syncing")[0], "panic")
        self.assertIsNone(migrate.parse_line("BENCH-INFO migrate case idle"))
        self.assertEqual(migrate.ready_needed("dirty"), {"READY", "DIRTY-READY"})

    def test_guest_lines_are_timestamped_and_a_cut_beat_dropped(self):
        g = migrate.Guest("t", [], "ns", os.devnull, 0.0)
        g.console = open(os.devnull, "wb")
        g.feed(b"H1;\r\nH2;\r\nH", 1.0)
        g.feed(b"3;\nH2;\nD5;\nMIGBENCH-ERROR boom\n", 2.0)
        g.console.close()
        self.assertEqual(g.beats, [(1.0, 1), (1.0, 2), (2.0, 3)])  # a repeated number is not a beat
        self.assertEqual(g.counters["dirty"], [(2.0, 5)])
        self.assertEqual(g.errors, ["error: boom"])

    def test_console_bytes_are_timed_whole_lines_or_not(self):
        r, w = os.pipe()
        g = migrate.Guest("t", [], "ns", os.devnull, 0.0)
        g.console, g.fd = open(os.devnull, "wb"), r
        os.set_blocking(r, False)
        self.assertTrue(g.read(5.0))  # nothing there yet
        self.assertIsNone(g.t_first_byte)
        os.write(w, b"H1;\nH2")
        g.read(6.0)
        os.write(w, b";\n")
        g.read(7.0)
        os.close(w)
        self.assertFalse(g.read(8.0))
        g.console.close()
        os.close(r)
        self.assertEqual((g.t_first_byte, g.t_last_byte), (6.0, 7.0))
        self.assertEqual(g.beats, [(6.0, 1), (7.0, 2)])
        self.assertTrue(g.eof)

    def beats(self, t_pause, t_resume, period=0.01, n_before=400, n_after=300, first_dst_seq=None):
        out, seq, t = [], 0, t_pause - n_before * period
        while t <= t_pause + 1e-9:
            seq += 1
            out.append((t, seq, "src"))
            t += period
        seq = first_dst_seq - 1 if first_dst_seq else seq
        t = t_resume
        for _ in range(n_after):
            seq += 1
            out.append((t, seq, "dst"))
            t += period
        return out

    def test_switchover_gap_and_stall(self):
        b = self.beats(10.0, 10.25)
        sw = migrate.switchover(b, t0=7.0)
        self.assertAlmostEqual(sw["guest_downtime_ms"], 250, places=3)
        self.assertAlmostEqual(sw["max_stall_ms"], 250, places=3)
        self.assertAlmostEqual(sw["beat_period_ms"], 10, places=3)
        self.assertEqual(sw["beats_lost"], 0)
        self.assertAlmostEqual(sw["t_dst_first"], 10.25)

    def test_stall_in_precopy_is_not_the_downtime(self):
        b = [x for x in self.beats(10.0, 10.05) if not 8.0 < x[0] < 8.4]
        sw = migrate.switchover(b, t0=7.0)
        self.assertAlmostEqual(sw["guest_downtime_ms"], 50, places=3)
        self.assertGreaterEqual(sw["max_stall_ms"], 400)

    def test_lost_beats_are_counted(self):
        b = self.beats(10.0, 10.3, first_dst_seq=405)
        sw = migrate.switchover(b, t0=7.0)
        self.assertEqual(sw["beats_lost"], 405 - 401 - 1)

    def test_no_destination_beat_is_no_figure(self):
        b = [x for x in self.beats(10.0, 10.3) if x[2] == "src"]
        sw = migrate.switchover(b, t0=7.0)
        self.assertIsNone(sw["guest_downtime_ms"])
        self.assertIsNone(sw["max_stall_ms"])
        self.assertIsNone(sw["t_dst_first"])
        self.assertAlmostEqual(sw["beat_period_ms"], 10, places=3)

    def test_vmm_and_qemu_figures(self):
        v = migrate.vmm_figures({"state": "completed", "total_ms": 2140, "downtime_ms": 61,
                                 "bytes": 137573171, "iteration": 3})
        self.assertEqual(v, {"vmm_total_ms": 2140, "vmm_downtime_ms": 61, "vmm_bytes": 137573171,
                             "passes": 3})
        q = migrate.qemu_figures({"status": "completed", "total-time": 5300, "downtime": 73,
                                  "setup-time": 4, "ram": {"transferred": 91800000,
                                                           "total": 537726976,
                                                           "dirty-sync-count": 4}})
        self.assertEqual(q, {"vmm_total_ms": 5300, "vmm_downtime_ms": 73, "vmm_bytes": 91800000,
                             "passes": 4})
        self.assertEqual(migrate.qemu_figures({"status": "completed"})["vmm_bytes"], None)

    def test_link_bytes_and_rates(self):
        js = json.dumps([{"ifname": "vbmA", "stats64": {"rx": {"bytes": 10}, "tx": {"bytes": 99}}}])
        self.assertEqual(migrate.link_bytes(js, "tx"), 99)
        self.assertIsNone(migrate.link_bytes("", "tx"))
        self.assertIsNone(migrate.link_bytes("[]", "tx"))
        self.assertIsNone(migrate.link_bytes(json.dumps([{"ifname": "x"}]), "tx"))
        s = [(1.0, 0), (2.0, 4096), (3.0, 8192), (9.0, 99999)]
        self.assertAlmostEqual(migrate.rate_between(s, 0.5, 3.5), 4096)
        self.assertIsNone(migrate.rate_between(s, 1.5, 2.5))

    def test_both_ends_command_lines(self):
        t = {"vmm": "/w/vmm", "qemu10": "/c/qemu10/bin/qemu-system-x86_64", "kernel": "/w/vmlinuz",
             "initrd": "/w/migrate.initrd", "vub": "/w/vub", "qsd10": "/c/qsd", "virtiofsd": "/c/vfs"}
        opts = {"beat_ms": 10, "dirty_mib": 16, "wss_mib": 128, "downtime_ms": 300}
        a = migrate.vmm_argv(t, "dirty", opts, "/s/api", "/s/be")
        self.assertIn("512M", a)
        self.assertIn("bench.dirty=16", " ".join(a))
        self.assertNotIn("--incoming", a)
        d = migrate.vmm_argv(t, "dirty", opts, "/s/api2", "/s/be", incoming="tcp:10.233.0.2:4461")
        self.assertEqual(d[:len(a) - 2], a[:len(a) - 2])  # the same VM, its own API socket
        self.assertEqual(d[-2:], ["--incoming", "tcp:10.233.0.2:4461"])
        v = migrate.vmm_argv(t, "vublk", opts, "/s/api", "/s/be")
        self.assertIn("512M,shared=on", v)
        self.assertIn("vhost-user=/s/be", v)
        f = migrate.vmm_argv(t, "fs", opts, "/s/api", "/s/be")
        self.assertIn(f"vhost-user=/s/be,tag={migrate.FS_TAG}", f)
        q = migrate.qemu_argv(t, "vublk", opts, "/s/qmp", "/s/be", incoming="tcp:10.233.0.2:4462")
        self.assertIn("microvm,acpi=on,memory-backend=mem0", q)
        self.assertIn("vhost-user-blk,chardev=vu0", q)
        self.assertEqual(q[-2:], ["-incoming", "tcp:10.233.0.2:4462"])
        self.assertIn("unix:/s/qmp,server=on,wait=off", q)
        self.assertIn("-smp", q)
        self.assertEqual(q[q.index("-smp") + 1], str(migrate.GUEST_CPUS))
        self.assertEqual(a[a.index("--cpus") + 1], str(migrate.GUEST_CPUS))
        qi = migrate.qemu_argv(t, "idle", opts, "/s/qmp", "/s/be")
        self.assertNotIn("memory-backend-memfd", " ".join(qi))
        self.assertNotIn("-bios", qi)
        qb = migrate.qemu_argv(dict(t, qemu10_bios="/c/qboot.rom"), "vublk", opts, "/s/qmp", "/s/be")
        self.assertEqual(qb[qb.index("-bios") + 1], "/c/qboot.rom")
        self.assertEqual(migrate.backend_argv(t, "vublk", "vmm", "dst", "/dev/loop3", "/s/b", "/sh"),
                         ["/w/vub", "--socket", "/s/b", "--image", "/dev/loop3"])
        self.assertIn("driver=host_device,node-name=disk0,filename=/dev/loop3",
                      migrate.backend_argv(t, "vublk", "qemu", "dst", "/dev/loop3", "/s/b", "/sh"))
        self.assertIn("driver=file,node-name=disk0,filename=/x.img",
                      migrate.backend_argv(t, "vublk", "qemu", "src", "/x.img", "/s/b", "/sh"))
        self.assertIn("--shared-dir=/sh", migrate.backend_argv(t, "fs", "qemu", "src", None, "/s/b", "/sh"))
        self.assertIsNone(migrate.backend_argv(t, "idle", "vmm", "src", None, "/s/b", "/sh"))
        self.assertIsNone(migrate.missing(t, "fs", "qemu"))
        self.assertIn("fetch-qemu10", migrate.missing(dict(t, qemu10=""), "idle", "qemu"))
        self.assertIn("fetch-qsd", migrate.missing(dict(t, qsd10=None), "vublk", "qemu"))
        self.assertIsNone(migrate.missing(dict(t, qsd10=None), "vublk", "vmm"))


class AttemptTest(unittest.TestCase):
    def test_an_earlier_attempts_results_are_kept_not_overwritten(self):
        with tempfile.TemporaryDirectory() as d:
            measure.keep_attempt(d)  # nothing there: nothing moved
            self.assertEqual(os.listdir(d), [])
            for n in (1, 2):
                os.makedirs(os.path.join(d, "logs"))
                for f in ("migrate.csv", "meta.json", "logs/x.log"):
                    with open(os.path.join(d, f), "w") as fh:
                        fh.write(str(n))
                measure.keep_attempt(d)
            self.assertEqual(sorted(os.listdir(d)), ["attempt-1", "attempt-2"])
            with open(os.path.join(d, "attempt-2", "logs", "x.log")) as fh:
                self.assertEqual(fh.read(), "2")
            self.assertTrue(os.path.exists(os.path.join(d, "attempt-1", "migrate.csv")))


class MigrateReportTest(unittest.TestCase):
    def report(self, rows, cases, runs=1):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "migrate.csv"), "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=migrate.MIG_COLUMNS, extrasaction="ignore")
                w.writeheader()
                for r in rows:
                    w.writerow({k: measure.fmt_csv(r.get(k)) for k in migrate.MIG_COLUMNS})
            rows = report.load_rows(os.path.join(d, "migrate.csv"))
            meta = {"suites": {"migrate": {"cases": cases}}}
            sd = report.SuiteData("migrate", rows, runs, report.migrate_cases(meta, rows))
            return report.suite_markdown(sd, meta, {})

    def row(self, kind, case, **kv):
        r = {"run": 1, "vmm": kind, "job": case, "status": "ok", "total_s": 9.0,
             "guest_downtime_ms": 150.0, "vmm_downtime_ms": 120, "wire_bytes": 100 << 20,
             "vmm_bytes": 90 << 20, "vmm_total_ms": 8000, "max_stall_ms": 150.0, "passes": 3}
        r.update(kv)
        return r

    def test_targets_and_cases_not_asked(self):
        rows = [self.row("vmm", "idle", guest_downtime_ms=60.0, vmm_downtime_ms=40,
                         total_s=8.0, wire_bytes=80 << 20),
                self.row("qemu", "idle"),
                self.row("vmm", "dirty", guest_downtime_ms=100.0, vmm_downtime_ms=70),
                self.row("qemu", "dirty")]
        lines, summary, nfail = self.report(rows, ["idle", "dirty"])
        self.assertEqual(nfail, 0)
        met = {(r["job"], r["metric"]): r["met"] for r in summary}
        self.assertEqual(met[("idle", "guest_downtime_ms")], "yes")    # 60 ≤ 0.5 × 150
        self.assertEqual(met[("idle", "vmm_downtime_ms")], "")       # not the same clock: no target
        self.assertEqual(met[("idle", "total_s")], "yes")
        self.assertEqual(met[("idle", "wire_bytes")], "yes")
        self.assertEqual(met[("dirty", "guest_downtime_ms")], "no")    # 100 > 75
        self.assertEqual(met[("dirty", "total_s")], "yes")             # equal: ≤ 1.0×
        self.assertEqual(met[("idle", "max_stall_ms")], "")           # informational
        self.assertFalse(any(r["job"] in ("vublk", "fs") for r in summary))
        text = "\n".join(lines)
        self.assertIn("idle guest: downtime the guest saw (ms)", text)
        self.assertIn("| 100.0 |", text)  # 100 MiB on the wire

    def test_failed_and_unmeasured_cases(self):
        rows = [self.row("vmm", "vublk", guest_downtime_ms=None, total_s=None, status="fail",
                         error="vmm's migration failed: boom"),
                self.row("qemu", "vublk"),
                self.row("vmm", "fs", wire_bytes=None, unmeasured="bytes on the veth: no counters"),
                self.row("qemu", "fs")]
        lines, summary, nfail = self.report(rows, ["vublk", "fs"])
        self.assertEqual(nfail, 1)
        text = "\n".join(lines)
        self.assertIn("FAIL (see below)", text)
        self.assertIn("vmm's migration failed: boom", text)
        met = {(r["job"], r["metric"]): r["met"] for r in summary}
        self.assertEqual(met[("vublk", "guest_downtime_ms")], "n/a")
        self.assertEqual(met[("fs", "wire_bytes")], "n/a")
        self.assertIn("not measured: bytes on the veth: no counters", text)

    def test_case_not_run_is_na_with_its_reason(self):
        rows = [self.row("vmm", "fs"),
                {"run": 1, "vmm": "qemu", "job": "fs", "status": "skipped",
                 "error": "virtiofsd 1.13 is not in the cache (scripts/fetch-peers)"}]
        lines, summary, nfail = self.report(rows, ["fs"])
        self.assertEqual(nfail, 0)
        text = "\n".join(lines)
        self.assertIn("n/a — not run", text)
        self.assertTrue(all(r["met"] in ("n/a", "") for r in summary))

    def test_cases_from_the_csv_without_meta(self):
        rows = [{"job": "dirty"}, {"job": "idle"}]
        self.assertEqual(report.migrate_cases({}, rows), ["idle", "dirty"])
        self.assertEqual(report.migrate_cases({}, None), common.MIG_CASES)


class BenchArguments(unittest.TestCase):
    """scripts/bench refuses what it cannot measure before doing anything (exit 2)."""

    def bench(self, *args):
        import subprocess
        return subprocess.run([os.path.join(REPO, "scripts", "bench"), *args], capture_output=True,
                              text=True, timeout=60)

    def refused(self, *args):
        """scripts/bench ARGS: a usage error (exit 2); its message."""
        r = self.bench(*args)
        self.assertEqual(r.returncode, 2, r.stderr)
        return r.stderr

    def test_unknown_variant_is_a_usage_error(self):
        err = self.refused("blk", "--variants", "vmm,bogus")
        self.assertIn("--variants takes a comma-separated list of vmm, vmm-vub", err)
        self.assertIn("not 'vmm,bogus'", err)

    def test_every_measured_variant_is_accepted(self):
        known = sorted({v for s in ("blk", "net", "vsock") for v in common.VARIANTS[s]})
        # (--max-downtime is checked after --variants: its refusal shows the list passed)
        err = self.refused("blk", "--variants", ",".join(known), "--baseline", "/bin/true",
                           "--max-downtime", "0")
        self.assertNotIn("--variants", err)
        self.assertIn("--max-downtime must be", err)

    def test_baseline_must_be_a_program(self):
        err = self.refused("blk", "--baseline", "/nonexistent/vmm")
        self.assertIn("--baseline takes the path of a vmm binary", err)
        self.assertIn("'/nonexistent/vmm'", err)

    def test_vmm_base_needs_a_baseline(self):
        err = self.refused("blk", "--variants", "vmm,vmm-base")
        self.assertIn("--variants vmm-base needs --baseline VMM", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
