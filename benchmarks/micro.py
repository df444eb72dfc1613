"""Items 1 and 2: the current-CPU read and the per-CPU counter."""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (C_DIR, GLIBC_ENVS, BenchError, Compiler, Sample, aligned_flags,
                               disassemble, generate, perf_annotate, run_kv,
                               shifted_flags)


@dataclass(frozen=True)
class Case:
    name: str          # argument of the C program
    label: str         # row label in the table
    scale: float       # iterations = base * scale
    diagnostic: bool = False


CPU_BASELINE = "tls"
CPU_CASES = (
    Case("rseqgen", "bench_current_cpu()", 1.0),
    Case("sched_getcpu", "sched_getcpu()", 0.5),
    Case("syscall", "raw getcpu syscall", 0.01),
    Case("tls", "plain TLS load (floor)", 1.0),
)
CPU_DIAGNOSTICS = (
    Case("rseqgen_raw", "diag: bench_current_cpu_raw()", 1.0, True),
    Case("diag_no_offcheck", "diag: current_cpu without the offset!=0 branch", 1.0, True),
    Case("diag_hoisted", "diag: current_cpu, offset hoisted out of the loop", 1.0, True),
)
#: Cases of the alignment sweep (the fast ones; the syscall is far above any
#: alignment effect).
CPU_SWEEP = ("rseqgen", "sched_getcpu", "tls")

COUNTER_BASELINE = "rseqgen"
COUNTER_CASES = (
    Case("rseqgen", "bench_percpu_counter_add()", 0.5),
    Case("shared_atomic", "__atomic_fetch_add, one shared counter", 0.1),
    Case("sched_getcpu_atomic", "sched_getcpu() + atomic on per-CPU slot", 0.1),
)
COUNTER_SWEEP = ("rseqgen", "shared_atomic", "sched_getcpu_atomic")

#: The one-constraint change recommended for the x86 template: let the
#: compiler pass a constant count as an immediate (`addq $1, (%reg)`).
WHATIF_FROM = '[count] "r"(count)'
WHATIF_TO = '[count] "er"(count)'


def _iters(base: int, case: Case) -> int:
    return max(1, int(base * case.scale))


def _record(item, env, case, sample, *, baseline, threads=None, owner=None, extra=None):
    rec = {"item": item, "env": env, "case": case.name, "label": case.label,
           "threads": threads, "baseline": baseline, "diagnostic": case.diagnostic,
           "owner": owner, **sample.as_dict()}
    if extra:
        rec.update(extra)
    if rec.get("wall_median_ns"):
        # Below 1: the thread(s) waited for a CPU part of the time; at N
        # threads that also means they did not all run at once, so a
        # contended case was measured with less contention than it has.
        rec["cpu_over_wall"] = rec["median_ns"] / rec["wall_median_ns"]
    return rec


def _set_ratios(records):
    """ratio = median / median of the baseline case of the same item, env
    and thread count, measured in this run."""
    by_key = {(r["item"], r["env"], r["threads"], r["case"]): r for r in records
              if not r["diagnostic"]}
    for r in records:
        base = by_key.get((r["item"], r["env"], r["threads"], r["baseline"]))
        r["ratio"] = r["median_ns"] / base["median_ns"] if base and base["median_ns"] else None


class Micro:
    def __init__(self, work: Path, gen_dir: Path, cc: Compiler, *, base_iters: int, reps: int,
                 pads: list, threads: list, log, launcher=()):
        self.work, self.gen, self.cc = work, gen_dir, cc
        #: Prefix of every benchmark command (``chrt -f 1`` with --realtime).
        self.launcher = list(launcher)
        self.base, self.reps, self.pads, self.threads, self.log = base_iters, reps, pads, threads, log
        self.src_gen = gen_dir / "bench_rseq.c"

    # ---- builds ---------------------------------------------------------
    def _build(self, prog: str, tag: str, flags, gen_dir=None) -> Path:
        gen_dir = gen_dir or self.gen
        out = self.work / f"{prog}_{tag}"
        return self.cc.build(out, [C_DIR / f"{prog}.c", gen_dir / "bench_rseq.c"],
                             gen_dir=gen_dir, flags=flags)

    def _whatif_dir(self) -> Path | None:
        d = self.work / "whatif"
        shutil.copytree(self.gen, d, dirs_exist_ok=True)
        header = d / "bench_rseq.h"
        text = header.read_text()
        if WHATIF_FROM not in text:
            return None
        header.write_text(text.replace(WHATIF_FROM, WHATIF_TO))
        return d

    # ---- runs -----------------------------------------------------------
    def _run_cpu(self, binary, case: Case, env: str, iters=None):
        out = run_kv([*self.launcher, binary, case.name, iters or _iters(self.base, case)],
                     GLIBC_ENVS[env])
        self._last_wall = float(out["wall_ns_per_op"])
        return float(out["ns_per_op"]), out.get("owner")

    def _run_counter(self, binary, case: Case, env: str, threads: int, iters=None):
        out = run_kv([*self.launcher, binary, case.name, threads,
                      iters or _iters(self.base, case)], GLIBC_ENVS[env])
        if out.get("total_ok") != "1":
            raise BenchError(f"{binary.name} {case.name}: the counter total is wrong")
        self._last_wall = float(out["wall_ns_per_op"])
        return float(out["ns_per_op"]), out.get("owner")

    def run(self, *, cpu: bool = True, counter: bool = True) -> dict:
        self.do_cpu, self.do_counter = cpu, counter
        cpu_bin = self._build("bench_cpu", "aligned", aligned_flags())
        # Diagnostic: the same code generated with --tls-model global-dynamic
        # (what a dlopen'd module uses).
        gd_gen = generate(self.work / "gen-compat-gd", "compat", "--tls-model", "global-dynamic")
        gd_bin = self._build("bench_cpu", "gd", aligned_flags(), gen_dir=gd_gen)
        gd_case = Case("rseqgen", "diag: bench_current_cpu(), code generated with "
                                  "--tls-model global-dynamic", 1.0, True)
        counter_bin = self._build("bench_counter", "aligned", aligned_flags())
        records = []

        # Item 1, at the same (64-byte) loop alignment, interleaved repetitions.
        cpu_cases = CPU_CASES + CPU_DIAGNOSTICS
        for env in (GLIBC_ENVS if cpu else ()):
            samples = {c.name: Sample() for c in cpu_cases}
            walls = {c.name: Sample() for c in cpu_cases}
            owners = {}
            for rep in range(self.reps):
                for c in cpu_cases:
                    ns, owners[c.name] = self._run_cpu(cpu_bin, c, env)
                    samples[c.name].values.append(ns)
                    walls[c.name].values.append(self._last_wall)
            gd = Sample()
            gd_wall = Sample()
            for rep in range(self.reps):
                ns, gd_owner = self._run_cpu(gd_bin, gd_case, env)
                gd.values.append(ns)
                gd_wall.values.append(self._last_wall)
            for c in cpu_cases:
                records.append(_record("current_cpu", env, c, samples[c.name],
                                       baseline=CPU_BASELINE, owner=owners[c.name],
                                       extra={"wall_median_ns": walls[c.name].median}))
            records.append(_record("current_cpu", env, gd_case, gd, baseline=CPU_BASELINE,
                                   owner=gd_owner, extra={"wall_median_ns": gd_wall.median,
                                                          "tls_model": "global-dynamic"}))
            self.log(f"current_cpu/{env}: done")

        # Item 2, both glibc settings, 1 and N threads.
        for env in (GLIBC_ENVS if counter else ()):
            for t in self.threads:
                samples = {c.name: Sample() for c in COUNTER_CASES}
                walls = {c.name: Sample() for c in COUNTER_CASES}
                owners = {}
                for rep in range(self.reps):
                    for c in COUNTER_CASES:
                        ns, owners[c.name] = self._run_counter(counter_bin, c, env, t)
                        samples[c.name].values.append(ns)
                        walls[c.name].values.append(self._last_wall)
                for c in COUNTER_CASES:
                    records.append(_record("percpu_counter", env, c, samples[c.name],
                                           baseline=COUNTER_BASELINE, threads=t,
                                           owner=owners[c.name],
                                           extra={"wall_median_ns": walls[c.name].median}))
                self.log(f"percpu_counter/{env}/{t} threads: done")

        # Diagnostics of the counter (glibc setting): the same critical section
        # with the offset read once per loop, and the recommended constraint
        # in a patched copy of the generated header ("what-if": not the
        # generated code).
        whatif = self._whatif_dir() if counter else None
        whatif_note = None
        diags = []
        if counter:
            diags.append((counter_bin, Case("diag_no_offcheck",
                                            "diag: counter_add without the offset!=0 branch",
                                            0.5, True), False))
            diags.append((counter_bin, Case("diag_hoisted",
                                            "diag: same critical section, offset read once per loop",
                                            0.5, True), False))
        if whatif is None and counter:
            whatif_note = (f"(No what-if rows: the generated header no longer passes the count as "
                           f"{WHATIF_FROM}, the change they tried.)")
        elif whatif is not None:
            wbin = self._build("bench_counter", "whatif", aligned_flags(), gen_dir=whatif)
            diags.append((wbin, Case("rseqgen", f"what-if: counter_add with {WHATIF_TO} "
                                                f"(patched header)", 0.5, True), True))
            diags.append((wbin, Case("diag_hoisted", f"what-if: {WHATIF_TO} and offset read "
                                                     f"once per loop", 0.5, True), True))
        rmw = []
        if counter and platform.machine() == "x86_64":
            rmw = [(counter_bin, Case("diag_add_imm", "diag: plain `addq $1, (slot)` (no rseq)",
                                      0.5, True), False),
                   (counter_bin, Case("diag_add_reg", "diag: plain `addq %reg, (slot)` (no rseq)",
                                      0.5, True), False)]
        for t in self.threads:
            diags_t = diags + (rmw if t == 1 else [])
            got = [Sample() for _ in diags_t]
            walls = [Sample() for _ in diags_t]
            owners = [None] * len(diags_t)
            for rep in range(self.reps):
                for i, (binary, case, _) in enumerate(diags_t):
                    ns, owners[i] = self._run_counter(binary, case, "glibc", t)
                    got[i].values.append(ns)
                    walls[i].values.append(self._last_wall)
            for i, (binary, case, is_whatif) in enumerate(diags_t):
                records.append(_record("percpu_counter", "glibc", case, got[i],
                                       baseline=COUNTER_BASELINE, threads=t, owner=owners[i],
                                       extra={"whatif": is_whatif, "diag_of": case.name,
                                              "wall_median_ns": walls[i].median}))
        _set_ratios(records)

        # Alignment sweep: the loops moved by `pad` bytes, no loop alignment.
        sweep = self._sweep()
        for r in records:
            key = (r["item"], r["env"], r["threads"], r["case"])
            if key in sweep and not r["diagnostic"]:
                r["alignment_sweep"] = sweep[key]

        disasm = {
            "bench_current_cpu loop (bench_cpu, aligned)": disassemble(cpu_bin, "loop_rseqgen"),
            "plain TLS load loop (bench_cpu, aligned)": disassemble(cpu_bin, "loop_tls"),
            "bench_percpu_counter_add loop (bench_counter, aligned)":
                disassemble(counter_bin, "loop_rseqgen"),
        }
        if whatif is not None:
            disasm[f"bench_percpu_counter_add loop with {WHATIF_TO} (what-if)"] = disassemble(
                self.work / "bench_counter_whatif", "loop_rseqgen")
            disasm[f"what-if: {WHATIF_TO} and offset read once per loop"] = disassemble(
                self.work / "bench_counter_whatif", "loop_diag_hoisted")
        profile = {}
        if cpu:
            profile["bench_current_cpu loop (bench_cpu rseqgen)"] = perf_annotate(
                self.work, cpu_bin, ["rseqgen", _iters(self.base, CPU_CASES[0]) * 3],
                "loop_rseqgen", GLIBC_ENVS["glibc"])
        if counter:
            profile["bench_percpu_counter_add loop (bench_counter rseqgen 1)"] = perf_annotate(
                self.work, counter_bin, ["rseqgen", 1, _iters(self.base, COUNTER_CASES[0]) * 4],
                "loop_rseqgen", GLIBC_ENVS["glibc"])
        return {"records": records, "disassembly": disasm, "profile": profile,
                "whatif_note": whatif_note}

    def _sweep(self) -> dict:
        """Per case: the median at each loop offset, and the range of the
        medians and of the ratios (each at one offset) over the offsets."""
        per = {}  # key -> {pad: (median, baseline median)}
        sweep_reps = max(1, min(3, self.reps))
        cpu_cases = [c for c in CPU_CASES if c.name in CPU_SWEEP]
        counter_cases = [c for c in COUNTER_CASES if c.name in COUNTER_SWEEP]
        for pad in self.pads:
            cpu_bin = self._build("bench_cpu", f"pad{pad}", shifted_flags(pad))
            counter_bin = self._build("bench_counter", f"pad{pad}", shifted_flags(pad))
            for env in (GLIBC_ENVS if self.do_cpu else ()):
                got = {c.name: Sample() for c in cpu_cases}
                for rep in range(sweep_reps):
                    for c in cpu_cases:
                        got[c.name].values.append(self._run_cpu(cpu_bin, c, env)[0])
                for c in cpu_cases:
                    per.setdefault(("current_cpu", env, None, c.name), {})[pad] = (
                        got[c.name].median, got[CPU_BASELINE].median)
            if not self.do_counter:
                continue
            got = {c.name: Sample() for c in counter_cases}
            for rep in range(sweep_reps):
                for c in counter_cases:
                    got[c.name].values.append(self._run_counter(counter_bin, c, "glibc", 1)[0])
            for c in counter_cases:
                per.setdefault(("percpu_counter", "glibc", 1, c.name), {})[pad] = (
                    got[c.name].median, got[COUNTER_BASELINE].median)
            self.log(f"alignment sweep: offset {pad} done")
        out = {}
        for key, by_pad in per.items():
            medians = [m for m, _ in by_pad.values()]
            ratios = [m / b for m, b in by_pad.values() if b]
            out[key] = {"offsets": {str(p): m for p, (m, _) in sorted(by_pad.items())},
                        "median_ns_range": [min(medians), max(medians)],
                        "ratio_range": [min(ratios), max(ratios)] if ratios else None}
        return out
