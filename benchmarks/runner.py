"""``python -m benchmarks``: generate, build, run, print the table, write JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report
from benchmarks.common import (GLIBC_ENVS, BenchError, Compiler, generate, load_snapshot, machine,
                               source_state)

ITEMS = ("cpu", "counter", "ops", "hotpath", "registration", "build")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="tiny iteration counts and 2 repetitions: checks that everything runs; "
                        "the numbers mean nothing")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="also write the tables as Markdown (what docs/benchmarks.md shows)")
    p.add_argument("--reps", type=int, metavar="N",
                   help="interleaved repetitions of each case per run (default 7)")
    p.add_argument("--runs", type=int, metavar="N",
                   help="runs of the current-CPU and counter items; each case's figure is the "
                        "median of the runs' medians (default 3)")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="base iteration count of the loops (default 100000000)")
    p.add_argument("--offsets", type=int, default=8, metavar="N",
                   help="loop offsets of the alignment sweep, 64/N bytes apart (default 8; 0: none)")
    p.add_argument("--cc", default=os.environ.get("CC", "gcc"), help="C compiler (default $CC or gcc)")
    p.add_argument("--items", default=",".join(ITEMS),
                   help=f"comma-separated subset of {','.join(ITEMS)} (default: all)")
    p.add_argument("--realtime", action="store_true",
                   help="run the loops under SCHED_FIFO (chrt -f 1) so that other work on the "
                        "machine neither preempts them nor keeps the N threads from running at "
                        "once (contended cases are only contended when they do)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="build in DIR and keep it (default: a temporary directory)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    items = [i.strip() for i in args.items.split(",") if i.strip()]
    unknown = sorted(set(items) - set(ITEMS))
    if unknown:
        print(f"python -m benchmarks: unknown item(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    if not shutil.which(args.cc):
        print(f"python -m benchmarks: C compiler {args.cc!r} not found", file=sys.stderr)
        return 2
    quick = args.quick
    reps = args.reps or (2 if quick else 7)
    runs = args.runs or (1 if quick else 3)
    base = args.iterations or (20_000 if quick else 100_000_000)
    noffsets = min(args.offsets, 2) if quick else args.offsets
    pads = [i * (64 // noffsets) for i in range(noffsets)] if noffsets > 0 else []
    nproc = os.cpu_count() or 1
    threads = sorted({1, nproc})

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work_ctx = None
        work = args.keep.resolve()
    else:
        work_ctx = tempfile.TemporaryDirectory(prefix="rseq-gen-bench-")
        work = Path(work_ctx.name)

    cc = Compiler(args.cc)
    launcher = []
    if args.realtime:
        if shutil.which("chrt") and subprocess.run(["chrt", "-f", "1", "true"],
                                                   capture_output=True).returncode == 0:
            launcher = ["chrt", "-f", "1"]
        else:
            print("python -m benchmarks: --realtime: chrt -f 1 is not permitted here; "
                  "running at normal priority", file=sys.stderr)
    result = {
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "compiler": cc.version(),
        "cflags": " ".join(cc.base) + " + -falign-loops=64 (sweep: -falign-loops=1 -DPAD_BYTES=k)",
        "reps": reps,
        "runs": runs,
        "base_iterations": base,
        "loop_offsets": pads,
        "threads": threads,
        "glibc_settings": {k: v or "(default)" for k, v in GLIBC_ENVS.items()},
        "load_before": load_snapshot(),
        "items": items,
        "realtime": bool(launcher),
        "source": source_state(),
    }
    try:
        if "cpu" in items or "counter" in items or "ops" in items:
            from benchmarks.micro import Micro
            gen = generate(work / "gen-compat", "compat")
            log(f"generated compat code in {gen}")
            micro = Micro(work, gen, cc, base_iters=base, reps=reps, runs=runs, pads=pads,
                          threads=threads, log=log, launcher=launcher)
            m = micro.run(cpu="cpu" in items, counter="counter" in items, ops="ops" in items)
            result["micro"] = m
        if "hotpath" in items:
            from benchmarks import hotpath
            log("instruction table: compiling")
            result["hotpath"] = {"records": hotpath.measure(work),
                                 "compilers": hotpath.compiler_versions()}
        if "registration" in items:
            from benchmarks.threads import Threads
            t = Threads(work, cc, threads_per_run=20 if quick else 2000,
                        strace_threads=2 if quick else 20, reps=reps, log=log, launcher=launcher)
            result["registration"] = t.run()
        if "build" in items:
            from benchmarks.buildtime import BuildBench
            result["build"] = BuildBench(work, quick=quick, reps=2 if quick else 5, log=log).run()
    except BenchError as exc:
        print(f"python -m benchmarks: {exc}", file=sys.stderr)
        return 1
    finally:
        result["load_after"] = load_snapshot()
        if work_ctx is not None:
            work_ctx.cleanup()

    micro_records = result.get("micro", {}).get("records", [])
    reg_records = result.get("registration", {}).get("records", [])
    result["goals"] = report.goals(micro_records, reg_records, max(threads))
    text = render(result)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


def render(result) -> str:
    parts = []
    if result.get("quick"):
        parts.append("**--quick: tiny iteration counts; the numbers below only show that every case "
                     "runs, they measure nothing.**")
    mach = result["machine"]
    parts.append(f"Machine: {mach.get('model_name', '?')}, {mach.get('nproc')} CPUs"
                 f"{', ' + mach['hypervisor_vendor'] + ' guest' if mach.get('hypervisor_vendor') else ''}; "
                 f"kernel {mach['kernel']}; {mach['libc']}; {result['compiler']}.")
    parts.append(f"Command: `{result['command']}` ({result.get('runs', 1)} runs of "
                 f"{result['reps']} repetitions, interleaved; "
                 f"loops aligned to 64 bytes; the sweep moves them over {len(result['loop_offsets'])} "
                 f"offsets; ns/op is thread CPU time; "
                 f"{'SCHED_FIFO' if result.get('realtime') else 'normal priority'}). "
                 f"Load average before/after: "
                 f"{', '.join(f'{x:.2f}' for x in result['load_before']['loadavg'])} / "
                 f"{', '.join(f'{x:.2f}' for x in result['load_after']['loadavg'])}.")
    src = result.get("source") or {}
    if src.get("commit"):
        parts.append(f"Generator measured: commit {src['commit']}"
                     + (f" plus uncommitted changes to {', '.join(src['uncommitted'])}"
                        if src.get("uncommitted") else "") + ".")
    busy = result["load_before"]["busy_processes"] + result["load_after"]["busy_processes"]
    if busy:
        parts.append("Other busy processes seen: " + "; ".join(dict.fromkeys(busy)) + ".")
    micro = result.get("micro")
    if micro:
        # Each table twice: executable code, then the same cases built into a
        # shared library (items with the suffix _so).
        for suffix, where in (("", ""), ("_so", ", shared library (-fPIC, in a .so)")):
            cpu = [r for r in micro["records"] if r["item"] == "current_cpu" + suffix]
            cnt = [r for r in micro["records"] if r["item"] == "percpu_counter" + suffix]
            ops = [r for r in micro["records"] if r["item"] == "percpu_ops" + suffix]
            if cpu:
                parts.append(f"### 1{suffix and 'b'}. Current CPU and area{where} (each case as a ratio "
                             "to its floor; the references to the current_cpu floor)\n\n"
                             + report.micro_table(cpu))
            if cnt:
                parts.append(f"### 2{suffix and 'b'}. Per-CPU counter{where} (ns per increment, per "
                             "thread; ratios to the floor counter add)\n\n" + report.micro_table(cnt))
            if ops:
                parts.append(f"### 3{suffix and 'b'}. Per-CPU operations{where} (ns per call, one "
                             "thread; each operation in both indexing modes as a ratio to its floor)"
                             "\n\n" + report.micro_table(ops))
    reg = result.get("registration")
    if reg:
        parts.append(f"### 4. Registration (pthread_create + join, one CPU read in the thread; "
                     f"syscalls per thread: strace -f of {2 * reg['strace_threads']} threads minus "
                     f"{reg['strace_threads']}, divided by {reg['strace_threads']})\n\n"
                     + report.registration_table(reg["records"]))
    build = result.get("build")
    if build:
        if build.get("skipped"):
            parts.append(f"### 5. Build overhead\n\nskipped: {build['skipped']}")
        else:
            parts.append("### 5. Build overhead (small CMake project, Ninja)\n\n"
                         + report.build_table(build["records"])
                         + (f"\n\n{build['note']}" if build.get("note") else ""))
    hot = result.get("hotpath")
    if hot:
        from benchmarks import hotpath
        parts.append("### 6. Code size and hot-path instructions (generated / floor; exe: "
                     "-fPIE, pic: -fPIC)\n\n" + hotpath.table(hot["records"]))
    if result.get("goals"):
        parts.append("### Goals\n\n" + report.goals_table(result["goals"]))
    return "\n\n".join(parts)
