"""Keeps ``python -m benchmarks`` working: run it with --quick (tiny
iteration counts) and check the JSON has every case with sane numbers.
No assertion is about time: a shared CI machine makes every timing noise."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from conftest import ROOT, require_tool

CPU_CASES = {"rseqgen", "floor", "rseqgen_raw", "floor_raw", "rseqgen_area", "floor_area",
             "rseqgen_at", "floor_hoisted", "sched_getcpu", "syscall", "tls"}
COUNTER_CASES = {"rseqgen", "floor", "rseqgen_at", "floor_hoisted", "shared_atomic",
                 "sched_getcpu_atomic"}
PROTOCOLS = {"none", "glibc", "own", "cpu-id", "refcount", "handled", "compat"}
ENVS = {"glibc", "glibc-rseq-off"}


def _sane(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_run_writes_every_case(tmp_path):
    require_tool("gcc")
    require_tool("strace")
    require_tool("cmake", "cmake (pip install .[test])")
    require_tool("ninja", "ninja (pip install .[test])")
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Goals" in proc.stdout
    data = json.loads(out.read_text())
    assert data["quick"] is True
    nproc = os.cpu_count() or 1

    records = data["micro"]["records"]
    cpu = {(r["env"], r["case"]) for r in records if r["item"] == "current_cpu"}
    assert cpu >= {(e, c) for e in ENVS for c in CPU_CASES}
    counter = {(r["env"], r["case"], r["threads"]) for r in records
               if r["item"] == "percpu_counter"}
    assert counter >= {(e, c, t) for e in ENVS for c in COUNTER_CASES for t in {1, nproc}}
    # every operation of the table in both indexing modes, and its floor
    sys.path.insert(0, str(ROOT / "toolkit"))
    from rseq_gen import operations
    ops = {(r["env"], r["case"]) for r in records if r["item"] == "percpu_ops"}
    names = {f"{v.mode.api}_{v.stem}" for v in operations.variants()} | {"mmcid_counter_add", "mmcid_index"}
    assert ops == {(e, c) for e in ENVS for n in names for c in (n, f"floor_{n}")}
    for r in records:
        assert _sane(r["median_ns"]), r
        assert r["min_ns"] <= r["median_ns"] <= r["max_ns"], r
        assert len(r["samples_ns"]) == data["reps"] * data["runs"], r
        assert len(r["run_medians_ns"]) == data["runs"], r
        if r["floor"]:  # every case but the floors is a ratio to its floor
            assert _sane(r["ratio"]), r
        else:
            assert r["ratio"] is None and r["case"].startswith("floor"), r
    owners = {(r["env"], r["owner"]) for r in records if r["case"] == "rseqgen"}
    assert owners == {("glibc", "glibc"), ("glibc-rseq-off", "self")}

    regs = data["registration"]["records"]
    assert {(r["env"], r["protocol"]) for r in regs} == {(e, p) for e in ENVS for p in PROTOCOLS}
    for r in regs:
        assert _sane(r["median_ns"]), r
        per_thread = r["syscalls_per_thread"]
        assert per_thread["total"] > 0, r
        # The timing-dependent calls are a difference of two runs: it can be negative.
        sys.path.insert(0, str(ROOT))
        from benchmarks.threads import TIMING_DEPENDENT
        assert all(v >= 0 for k, v in per_thread.items() if k not in TIMING_DEPENDENT), r
        if r["protocol"] != "none":
            assert r["owner"] == r["expected_owner"], r

    build = data["build"]
    if not build.get("skipped"):
        projects = {r["project"] for r in build["records"]}
        assert {"without rseq_gen_add_library", "with rseq_gen_add_library"} <= projects
        for r in build["records"]:
            for key in ("configure_s", "build_s", "noop_s"):
                assert _sane(r[key]["median"]), r

    hot = data["hotpath"]["records"]
    assert {(r["fast_path"], r["variant"]) for r in hot} >= {
        ("current_cpu", "generated"), ("current_cpu", "floor"), ("counter_add", "floor")}
    for r in hot:
        assert r["instructions"] > 0 and r["bytes"] > 0, r
    assert "Code size and hot-path instructions" in proc.stdout

    assert data["goals"], "no goal was evaluated"
    assert any("its floor" in g["goal"] for g in data["goals"])
    for g in data["goals"]:
        assert isinstance(g["met"], bool), g


def test_syscall_counter_reads_split_strace_lines():
    """strace -f splits calls that interleave; each counts once, by its result."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.threads import count_syscalls

    trace = "\n".join([
        "100 rseq(0x7f, 0x20, 0, 0x53053053 <unfinished ...>",
        "101 futex(0x1, FUTEX_WAIT, 2, NULL <unfinished ...>",
        "100 <... rseq resumed>)               = -1 EINVAL (Invalid argument)",
        "101 <... futex resumed>) = 0",
        "102 rseq(0x7f, 0x20, 0x1, 0x53053053) = 0",
        "103 rseq(0x7f, 0x20, 0, 0x53053053) = 0",
        "104 rseq(0x7f, 0x20, 0, 0x53053053) = -1 EINVAL (Invalid argument)",
        "105 rseq(0x7f, 0x20, 0 <unfinished ...>",
        "105 <... rseq resumed>, 0x53053053) = 0",
        "106 rseq(0x7f, 0x20, RSEQ_FLAG_UNREGISTER, 0x53053053) = 0",
        "106 munmap(0x7f0000000000, 8392704) = 0",
        "106 +++ exited with 0 +++",
    ])
    assert count_syscalls(trace) == {"total": 6, "futex": 1, "munmap": 1, "rseq_register": 2,
                                     "rseq_unregister": 2, "rseq_failed": 2}


def test_pool_rss_benchmark_counts_pages_exactly():
    """benchmarks/pool_rss.py: the touched copies are resident page for
    page, the untouched ones not at all (memory, not time: exact)."""
    require_tool("gcc")
    sys.path.insert(0, str(ROOT))
    from benchmarks.pool_rss import markdown, measure

    rows = measure()
    assert markdown(rows).count("\n") == len(rows) + 1
    for r in rows:
        per_copy = r["resident_pages_per_copy"]
        assert len(per_copy) == r["copies"] and r["touched_cpus"] >= 1, r
        assert sum(per_copy) == r["pages_needed"], r
        assert len([v for v in per_copy if v]) == r["touched_cpus"], r
        assert all(v == r["items"] for v in r["adds_on_own_copy"].values()), r
        assert r["rss_growth_touch_pages"] >= r["pages_needed"], r
        if r["items"] == 1:
            assert r["rss_growth_touch_pages"] <= r["touched_cpus"], r
