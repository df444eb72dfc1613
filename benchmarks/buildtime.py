"""Item 4: what ``rseq_gen_add_library`` adds to a CMake build.

The CMake package only exists in an installed rseq-gen (the wheel makes
RseqGenConfig.cmake), so this item installs the checkout into a virtual
environment in the work directory first (not timed), then times, for a small
project with and without the generated library:

* configure: ``cmake -S <project> -B <fresh dir> -G Ninja``;
* build: ``cmake --build`` of that fresh tree;
* no-op rebuild: ``cmake --build`` again (Ninja must find no work to do).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, BenchError, run

#: What the package build needs from the checkout.
_SOURCE_ITEMS = ("pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE", "cmake", "templates",
                 "toolkit")

_MAIN_WITHOUT = r"""
#define _GNU_SOURCE 1
#include <sched.h>
#include <stdio.h>
#include "work.h"
int main(void)
{
    long counts[4096] = {0};
    for (int i = 0; i < 1000; i++)
        counts[sched_getcpu() & 4095] += work(i);
    printf("%ld\n", counts[0]);
    return 0;
}
"""

_MAIN_WITH = r"""
#include <stdio.h>
#include "bench_rseq.h"
#include "work.h"
int main(void)
{
    static intptr_t slots[4096 * 8];
    for (int i = 0; i < 1000; i++)
        bench_percpu_counter_add(slots, 64, work(i));
    printf("%s\n", bench_owner());
    return 0;
}
"""

_WORK_H = "long work(int i);\n"
_WORK_C = '#include "work.h"\nlong work(int i) { return i & 1; }\n'

_CMAKE_WITHOUT = """cmake_minimum_required(VERSION 3.20)
project(bench_plain LANGUAGES C)
add_library(work STATIC work.c)
add_executable(app main.c)
target_link_libraries(app PRIVATE work)
"""

_CMAKE_WITH = """cmake_minimum_required(VERSION 3.20)
project(bench_rseq LANGUAGES C)
find_package(RseqGen CONFIG REQUIRED)
add_library(work STATIC work.c)
rseq_gen_add_library(bench_rseq STATIC PROTOCOL compat PREFIX bench)
add_executable(app main.c)
target_link_libraries(app PRIVATE work bench_rseq)
"""

PROJECTS = {
    "without rseq_gen_add_library": (_CMAKE_WITHOUT, _MAIN_WITHOUT),
    "with rseq_gen_add_library": (_CMAKE_WITH, _MAIN_WITH),
}


def _timed(cmd, **kw) -> tuple:
    t0 = time.perf_counter()
    proc = run(cmd, **kw)
    return time.perf_counter() - t0, proc


class BuildBench:
    def __init__(self, work: Path, *, quick: bool, reps: int, log):
        self.work, self.quick, self.reps, self.log = work / "build-bench", quick, reps, log

    # ---- the installed package ---------------------------------------------
    def _install(self) -> tuple:
        """A venv with this checkout installed; returns (RseqGen_DIR, how)."""
        src = self.work / "src"
        src.mkdir(parents=True, exist_ok=True)
        for item in _SOURCE_ITEMS:
            p = ROOT / item
            if p.is_dir():
                shutil.copytree(p, src / item, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif p.is_file():
                shutil.copy2(p, src / item)
        notes = []
        if not (src / "README.md").exists():
            # pyproject names README.md as the long description; the package
            # cannot be built without one.
            (src / "README.md").write_text("rseq-gen (README missing in the checkout)\n")
            notes.append("the checkout has no README.md yet: the benchmark copy got a stub one")
        venv = self.work / "venv"
        if not (venv / "bin" / "python").exists():
            # --system-site-packages: reuse the build backend and the
            # dependencies already installed, so no download is needed.
            run([sys.executable, "-m", "venv", "--system-site-packages", venv])
        py = venv / "bin" / "python"
        attempts = [
            [py, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", src],
            [py, "-m", "pip", "install", "-q", src],
        ]
        err = ""
        for cmd in attempts:
            proc = run(cmd, check=False, timeout=900)
            if proc.returncode == 0:
                break
            err = (proc.stdout + proc.stderr)[-3000:]
        else:
            raise BenchError(f"could not install the checkout into {venv}:\n{err}")
        proc = run([venv / "bin" / "rseq-gen", "--cmakedir"], check=False)
        if proc.returncode != 0:
            raise BenchError(f"rseq-gen --cmakedir failed:\n{proc.stderr}")
        return Path(proc.stdout.strip()), notes

    # ---- timing ----------------------------------------------------------
    def _project(self, name: str, cmake_text: str, main_text: str) -> Path:
        d = self.work / "projects" / name.replace(" ", "_")
        d.mkdir(parents=True, exist_ok=True)
        (d / "CMakeLists.txt").write_text(cmake_text)
        (d / "main.c").write_text(main_text)
        (d / "work.h").write_text(_WORK_H)
        (d / "work.c").write_text(_WORK_C)
        return d

    def run(self) -> dict:
        for tool in ("cmake", "ninja"):
            if not shutil.which(tool):
                return {"skipped": f"{tool} not found (pip install cmake ninja)"}
        try:
            cmake_dir, notes = self._install()
        except BenchError as exc:
            return {"skipped": f"the CMake package is not usable: {exc}"}
        self.log(f"build: CMake package at {cmake_dir}")
        env = dict(os.environ)
        records = []
        projects = {name: self._project(name, *texts) for name, texts in PROJECTS.items()}
        times = {name: {"configure": [], "build": [], "noop": []} for name in projects}
        noop_out = {}
        # Untimed warm-up: the first configure on a machine pays for compiler
        # detection caches and cold files; it would land on one project only.
        for name, proj in projects.items():
            warm = self.work / "trees" / f"{proj.name}-warmup"
            run(["cmake", "-S", proj, "-B", warm, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                 f"-DRseqGen_DIR={cmake_dir}"], env=env)
            run(["cmake", "--build", warm], env=env)
        for rep in range(self.reps):
            for name, proj in projects.items():  # interleaved
                bdir = self.work / "trees" / f"{proj.name}-{rep}"
                shutil.rmtree(bdir, ignore_errors=True)
                t, _ = _timed(["cmake", "-S", proj, "-B", bdir, "-G", "Ninja",
                               "-DCMAKE_BUILD_TYPE=Release", f"-DRseqGen_DIR={cmake_dir}"], env=env)
                times[name]["configure"].append(t)
                t, _ = _timed(["cmake", "--build", bdir], env=env)
                times[name]["build"].append(t)
                t, proc = _timed(["cmake", "--build", bdir], env=env)
                times[name]["noop"].append(t)
                noop_out[name] = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
                if rep == 0:
                    subprocess.run([str(bdir / "app")], capture_output=True, timeout=60)
        base = None
        for name in projects:
            t = times[name]
            rec = {"project": name,
                   **{f"{k}_s": {"median": statistics.median(v), "min": min(v), "max": max(v),
                                 "samples": v} for k, v in t.items()},
                   "noop_ninja_output": noop_out[name]}
            cb = [c + b for c, b in zip(t["configure"], t["build"])]
            rec["configure_build_s"] = statistics.median(cb)
            if base is None:
                base = rec["configure_build_s"]
            rec["ratio_configure_build"] = rec["configure_build_s"] / base if base else None
            records.append(rec)
        self.log("build: done")
        return {"records": records, "cmake_dir": str(cmake_dir), "generator": "Ninja",
                "cmake": run(["cmake", "--version"]).stdout.splitlines()[0],
                "note": "; ".join(notes) if notes else None}
