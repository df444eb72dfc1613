"""Items 1, 2 and 6: the current-CPU read (and the area lookup), the per-CPU
counter and every per-CPU operation, each generated fast path beside its
floor in the same binary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (C_DIR, GLIBC_ENVS, BenchError, Compiler, Sample, aligned_flags,
                               disassemble, generate, perf_annotate, run_kv, shifted_flags)
from rseq_gen import operations


@dataclass(frozen=True)
class Case:
    name: str                 # argument of the C program
    label: str                # row label in the table
    scale: float              # iterations = base * scale
    floor: str | None = None  # the case this one is reported as a ratio to
    diagnostic: bool = False


CPU_CASES = (
    Case("rseqgen", "bench_current_cpu()", 1.0, floor="floor"),
    Case("floor", "floor: current_cpu", 1.0),
    Case("rseqgen_raw", "bench_current_cpu_raw()", 1.0, floor="floor_raw"),
    Case("floor_raw", "floor: current_cpu_raw", 1.0),
    Case("rseqgen_area", "bench_area()", 1.0, floor="floor_area"),
    Case("floor_area", "floor: area", 1.0),
    Case("tls", "plain TLS load", 1.0, floor="floor"),
    Case("sched_getcpu", "sched_getcpu()", 0.5, floor="floor"),
    Case("syscall", "raw getcpu syscall", 0.01, floor="floor"),
    Case("rseqgen_at", "bench_current_cpu_at(off), off = bench_area_offset() once", 1.0,
         floor="floor_hoisted"),
    Case("floor_hoisted", "floor: current_cpu, offset read once before the loop", 1.0),
)
#: The same generated code with --tls-model global-dynamic (what a dlopen'd
#: module uses), in its own binary.
GD_CASE = Case("rseqgen", "diag: bench_current_cpu(), code generated with --tls-model "
                          "global-dynamic", 1.0, floor="floor", diagnostic=True)
GD_COUNTER_CASE = Case("rseqgen", "diag: bench_percpu_counter_add(), code generated with "
                                  "--tls-model global-dynamic", 0.5, floor="floor",
                       diagnostic=True)
#: Cases of the alignment sweep (the fast ones; the syscall is far above any
#: alignment effect).
CPU_SWEEP = ("rseqgen", "floor", "tls", "sched_getcpu")

COUNTER_CASES = (
    Case("rseqgen", "bench_percpu_counter_add()", 0.5, floor="floor"),
    Case("floor", "floor: counter add", 0.5),
    Case("shared_atomic", "__atomic_fetch_add, one shared counter", 0.1, floor="floor"),
    Case("sched_getcpu_atomic", "sched_getcpu() + atomic on per-CPU slot", 0.1, floor="floor"),
    Case("rseqgen_at", "bench_percpu_counter_add_at(off, ...), off read once", 0.5,
         floor="floor_hoisted"),
    Case("floor_hoisted", "floor: counter add, offset read once before the loop", 0.5),
)
COUNTER_SWEEP = ("rseqgen", "floor", "shared_atomic", "sched_getcpu_atomic")

def _ops_cases() -> tuple:
    """Item 6 (benchmarks/c/bench_ops.c): every operation of the operations
    table in both indexing modes, then the mm_cid counter and index, each
    beside its floor; one thread."""
    names = [f"{v.mode.api}_{v.stem}" for v in operations.variants()]
    names += ["mmcid_counter_add", "mmcid_index"]
    out = []
    for n in names:
        out += [Case(n, f"bench_{n}()", 0.1, floor=f"floor_{n}"), Case(f"floor_{n}", f"floor: {n}", 0.1)]
    return tuple(out)


OPS_CASES = _ops_cases()

#: What the generated cases are measured against, and the tables' names for it.
FLOOR_OF = {c.name: c.floor for c in CPU_CASES + COUNTER_CASES + OPS_CASES if c.floor}


def _iters(base: int, case: Case) -> int:
    return max(1, int(base * case.scale))


def _record(item, env, case, runs, *, threads=None, owner=None, extra=None):
    """One table row: the median of the per-run medians (each run: the
    interleaved repetitions), the spread of those run medians, every
    sample."""
    run_medians = [r.median for r in runs]
    every = Sample([v for r in runs for v in r.values])
    rec = {"item": item, "env": env, "case": case.name, "label": case.label,
           "threads": threads, "floor": case.floor, "diagnostic": case.diagnostic,
           "owner": owner, **every.as_dict(), "median_ns": Sample(run_medians).median,
           "run_medians_ns": run_medians}
    if extra:
        rec.update(extra)
    if rec.get("wall_median_ns"):
        # Below 1: the thread(s) waited for a CPU part of the time; at N
        # threads that also means they did not all run at once, so a
        # contended case was measured with less contention than it has.
        rec["cpu_over_wall"] = rec["median_ns"] / rec["wall_median_ns"]
    return rec


def set_ratios(records):
    """ratio = median / median of the case's floor (same item, env and
    thread count, this run); run_ratios: the same per run."""
    by_key = {(r["item"], r["env"], r["threads"], r["case"]): r for r in records
              if not r["diagnostic"]}
    for r in records:
        f = by_key.get((r["item"], r["env"], r["threads"], r["floor"])) if r["floor"] else None
        r["ratio"] = r["median_ns"] / f["median_ns"] if f and f["median_ns"] else None
        if f and len(f["run_medians_ns"]) == len(r["run_medians_ns"]):
            r["run_ratios"] = [a / b for a, b in zip(r["run_medians_ns"], f["run_medians_ns"]) if b]


class Micro:
    def __init__(self, work: Path, gen_dir: Path, cc: Compiler, *, base_iters: int, reps: int,
                 runs: int, pads: list, threads: list, log, launcher=()):
        self.work, self.gen, self.cc = work, gen_dir, cc
        #: Prefix of every benchmark command (``chrt -f 1`` with --realtime).
        self.launcher = list(launcher)
        self.base, self.reps, self.runs = base_iters, reps, runs
        self.pads, self.threads, self.log = pads, threads, log

    def _build(self, prog: str, tag: str, flags, gen_dir=None) -> Path:
        gen_dir = gen_dir or self.gen
        out = self.work / f"{prog}_{tag}"
        return self.cc.build(out, [C_DIR / f"{prog}.c", gen_dir / "bench_rseq.c"],
                             gen_dir=gen_dir, flags=flags)

    def _build_solib(self, prog: str) -> Path:
        """prog as a shared library (loops, generated module and floor all
        -fPIC in lib<prog>_so.so, the way a library adopting rseq-gen is
        built), and the program that calls its main (c/solib_main.c)."""
        lib = self.work / f"lib{prog}_so.so"
        self.cc.build(lib, [C_DIR / f"{prog}.c", self.gen / "bench_rseq.c"], gen_dir=self.gen,
                      flags=(*aligned_flags(), "-fPIC", "-shared", "-Dmain=bench_solib_main"))
        return self.cc.build(self.work / f"{prog}_so", [C_DIR / "solib_main.c"], gen_dir=None,
                             libs=("-L", str(self.work), f"-Wl,-rpath,{self.work}", f"-l{prog}_so"))

    def _run_cpu(self, binary, case: Case, env: str):
        out = run_kv([*self.launcher, binary, case.name, _iters(self.base, case)], GLIBC_ENVS[env])
        return float(out["ns_per_op"]), float(out["wall_ns_per_op"]), out.get("owner")

    def _run_counter(self, binary, case: Case, env: str, threads: int):
        out = run_kv([*self.launcher, binary, case.name, threads, _iters(self.base, case)],
                     GLIBC_ENVS[env])
        if out.get("total_ok") != "1":
            raise BenchError(f"{binary.name} {case.name}: the counter total is wrong")
        return float(out["ns_per_op"]), float(out["wall_ns_per_op"]), out.get("owner")

    def _run_paired(self, binary, case: Case, floor: Case, env: str) -> dict:
        """case and its floor in one process, alternating (bench_ops paired)."""
        out = run_kv([*self.launcher, binary, case.name, _iters(self.base, case), "paired"],
                     GLIBC_ENVS[env])
        owner = out.get("owner")
        return {(env, case): (float(out["ns_per_op"]), float(out["wall_ns_per_op"]), owner),
                (env, floor): (float(out["floor_ns_per_op"]), float(out["floor_wall_ns_per_op"]), owner)}

    def _measure(self, jobs) -> dict:
        """jobs: key -> callable returning (ns, wall, owner), or a dict of
        such results by key (one process measuring several cases). Runs them
        interleaved, `reps` times per run, `runs` runs; returns key ->
        (per-run Samples, wall Sample, owner)."""
        got = {}
        for run_no in range(self.runs):
            for _ in range(self.reps):
                for key, job in jobs.items():
                    result = job()
                    for k, (ns, wall, owner) in (result.items() if isinstance(result, dict)
                                                 else ((key, result),)):
                        runs, walls, _ = got.setdefault(k, ([Sample() for _ in range(self.runs)],
                                                            Sample(), None))
                        runs[run_no].values.append(ns)
                        walls.values.append(wall)
                        got[k] = (runs, walls, owner)
            self.log(f"  run {run_no + 1}/{self.runs} done")
        return got

    def run(self, *, cpu: bool = True, counter: bool = True, ops: bool = True) -> dict:
        self.do_cpu, self.do_counter = cpu, counter
        cpu_bin = self._build("bench_cpu", "aligned", aligned_flags())
        gd_gen = generate(self.work / "gen-compat-gd", "compat", "--tls-model", "global-dynamic")
        gd_bin = self._build("bench_cpu", "gd", aligned_flags(), gen_dir=gd_gen)
        counter_bin = self._build("bench_counter", "aligned", aligned_flags())
        gd_counter_bin = self._build("bench_counter", "gd", aligned_flags(), gen_dir=gd_gen)
        cpu_so, counter_so = self._build_solib("bench_cpu"), self._build_solib("bench_counter")
        records = []

        if cpu:
            # Item 1: both glibc settings, every case interleaved with every other.
            jobs = {}
            for env in GLIBC_ENVS:
                for c in CPU_CASES:
                    jobs[(env, c)] = (lambda c=c, env=env: self._run_cpu(cpu_bin, c, env))
                jobs[(env, GD_CASE)] = (lambda env=env: self._run_cpu(gd_bin, GD_CASE, env))
            self.log("current_cpu: measuring")
            for (env, c), (runs, walls, owner) in self._measure(jobs).items():
                extra = {"wall_median_ns": walls.median}
                if c is GD_CASE:
                    extra["tls_model"] = "global-dynamic"
                records.append(_record("current_cpu", env, c, runs, owner=owner, extra=extra))
            # The same cases as shared-library code (item current_cpu_so).
            jobs = {(env, c): (lambda c=c, env=env: self._run_cpu(cpu_so, c, env))
                    for env in GLIBC_ENVS for c in CPU_CASES}
            self.log("current_cpu, shared library: measuring")
            for (env, c), (runs, walls, owner) in self._measure(jobs).items():
                records.append(_record("current_cpu_so", env, c, runs, owner=owner,
                                       extra={"wall_median_ns": walls.median}))

        if counter:
            # Item 2: both glibc settings, 1 and N threads.
            for t in self.threads:
                jobs = {(env, c): (lambda c=c, env=env, t=t: self._run_counter(counter_bin, c, env, t))
                        for env in GLIBC_ENVS for c in COUNTER_CASES}
                for env in GLIBC_ENVS:
                    jobs[(env, GD_COUNTER_CASE)] = (lambda env=env, t=t:
                                                    self._run_counter(gd_counter_bin, GD_COUNTER_CASE, env, t))
                self.log(f"percpu_counter, {t} thread(s): measuring")
                for (env, c), (runs, walls, owner) in self._measure(jobs).items():
                    records.append(_record("percpu_counter", env, c, runs, threads=t, owner=owner,
                                           extra={"wall_median_ns": walls.median}))
                jobs = {(env, c): (lambda c=c, env=env, t=t: self._run_counter(counter_so, c, env, t))
                        for env in GLIBC_ENVS for c in COUNTER_CASES}
                self.log(f"percpu_counter, {t} thread(s), shared library: measuring")
                for (env, c), (runs, walls, owner) in self._measure(jobs).items():
                    records.append(_record("percpu_counter_so", env, c, runs, threads=t, owner=owner,
                                           extra={"wall_median_ns": walls.median}))
        if ops:
            # Item 6: both glibc settings, every operation interleaved with every other.
            # Each operation shares a process with its floor, alternating in
            # slices (bench_ops.c says why).
            floors = {c.name: c for c in OPS_CASES}
            for item, ops_bin in (("percpu_ops", self._build("bench_ops", "aligned", aligned_flags())),
                                  ("percpu_ops_so", self._build_solib("bench_ops"))):
                jobs = {(env, c): (lambda c=c, env=env, b=ops_bin:
                                   self._run_paired(b, c, floors[c.floor], env))
                        for env in GLIBC_ENVS for c in OPS_CASES if c.floor}
                self.log(f"per-CPU operations ({item}): measuring")
                for (env, c), (runs, walls, owner) in self._measure(jobs).items():
                    records.append(_record(item, env, c, runs, owner=owner,
                                           extra={"wall_median_ns": walls.median}))
        set_ratios(records)

        # Alignment sweep: the loops moved by `pad` bytes, no loop alignment.
        sweep = self._sweep()
        for r in records:
            key = (r["item"], r["env"], r["threads"], r["case"])
            if key in sweep and not r["diagnostic"]:
                r["alignment_sweep"] = sweep[key]

        disasm = {
            "bench_current_cpu loop (bench_cpu, aligned)": disassemble(cpu_bin, "loop_rseqgen"),
            "floor current_cpu loop (bench_cpu, aligned)": disassemble(cpu_bin, "loop_floor"),
            "bench_percpu_counter_add loop (bench_counter, aligned)":
                disassemble(counter_bin, "loop_rseqgen"),
            "floor counter add loop (bench_counter, aligned)": disassemble(counter_bin, "loop_floor"),
        }
        profile = {}
        if cpu:
            profile["bench_current_cpu loop (bench_cpu rseqgen)"] = perf_annotate(
                self.work, cpu_bin, ["rseqgen", _iters(self.base, CPU_CASES[0]) * 3],
                "loop_rseqgen", GLIBC_ENVS["glibc"])
        if counter:
            profile["bench_percpu_counter_add loop (bench_counter rseqgen 1)"] = perf_annotate(
                self.work, counter_bin, ["rseqgen", 1, _iters(self.base, COUNTER_CASES[0]) * 4],
                "loop_rseqgen", GLIBC_ENVS["glibc"])
        return {"records": records, "disassembly": disasm, "profile": profile}

    def _sweep(self) -> dict:
        """Per case: the median at each loop offset, and the range of the
        medians and of the ratios to the floor (each at one offset) over the
        offsets."""
        per = {}  # key -> {pad: (median, floor median)}
        sweep_reps = max(1, min(3, self.reps))
        cpu_cases = [c for c in CPU_CASES if c.name in CPU_SWEEP]
        counter_cases = [c for c in COUNTER_CASES if c.name in COUNTER_SWEEP]
        for pad in self.pads:
            cpu_bin = self._build("bench_cpu", f"pad{pad}", shifted_flags(pad))
            counter_bin = self._build("bench_counter", f"pad{pad}", shifted_flags(pad))
            for env in (GLIBC_ENVS if self.do_cpu else ()):
                got = {c.name: Sample() for c in cpu_cases}
                for _ in range(sweep_reps):
                    for c in cpu_cases:
                        got[c.name].values.append(self._run_cpu(cpu_bin, c, env)[0])
                for c in cpu_cases:
                    per.setdefault(("current_cpu", env, None, c.name), {})[pad] = (
                        got[c.name].median, got[c.floor or c.name].median)
            if self.do_counter:
                got = {c.name: Sample() for c in counter_cases}
                for _ in range(sweep_reps):
                    for c in counter_cases:
                        got[c.name].values.append(self._run_counter(counter_bin, c, "glibc", 1)[0])
                for c in counter_cases:
                    per.setdefault(("percpu_counter", "glibc", 1, c.name), {})[pad] = (
                        got[c.name].median, got[c.floor or c.name].median)
            self.log(f"alignment sweep: offset {pad} done")
        out = {}
        for key, by_pad in per.items():
            medians = [m for m, _ in by_pad.values()]
            ratios = [m / b for m, b in by_pad.values() if b]
            out[key] = {"offsets": {str(p): m for p, (m, _) in sorted(by_pad.items())},
                        "median_ns_range": [min(medians), max(medians)],
                        "ratio_range": [min(ratios), max(ratios)] if ratios else None}
        return out
