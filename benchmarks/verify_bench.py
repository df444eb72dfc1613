"""Benchmark ``rseq-gen verify`` against ``readelf -sW`` on the same files.

    PYTHONPATH=toolkit python benchmarks/verify_bench.py [--big FILE] [--archive FILE]
        [--reps N] [--json FILE] [--quick]

Files: the largest ELF found under the usual library trees (Debian's
libLLVM is 100 MB+) unless ``--big`` names one, and glibc's ``libc.a``.
For each file it times, best of N runs:

* ``readelf -sW FILE`` (output discarded),
* ``rseq-gen verify FILE`` as a command (Python start-up included),
* the verification alone, in this process (``rseq_gen.verify.check_path``),

and prints the ratios to readelf. Goals (issue 3): at most 2x readelf on the
big library, under 5 s for libc.a. Nothing here is a test: timings on a
shared machine are noise; the numbers go in the README by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "toolkit") not in sys.path:
    sys.path.insert(0, str(ROOT / "toolkit"))

from rseq_gen.verify import check_path  # noqa: E402
from rseq_gen.verify.model import Context  # noqa: E402

SEARCH_DIRS = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/opt", "/usr/bin")
DEFAULT_ARCHIVE = "/usr/lib/x86_64-linux-gnu/libc.a"


def largest_elf(dirs=SEARCH_DIRS, floor=8 << 20) -> Path | None:
    """The largest shared library (``*.so*``): the symbol-heavy kind of
    file readelf -sW has real work on (a stripped static executable has no
    symbol table at all)."""
    best, best_size = None, floor
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            for name in filenames:
                if ".so" not in name:
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not os.path.isfile(path) or os.path.islink(path) or st.st_size <= best_size:
                    continue
                try:
                    with open(path, "rb") as f:
                        if f.read(4) != b"\x7fELF":
                            continue
                except OSError:
                    continue
                best, best_size = Path(path), st.st_size
    return best


def _best_of(reps: int, fn) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _run(cmd: list[str], env=None) -> None:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)


def measure(path: Path, reps: int) -> dict:
    readelf = shutil.which("readelf")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "toolkit"), env.get("PYTHONPATH")) if p)
    result = {"file": str(path), "bytes": path.stat().st_size}
    if readelf:
        result["readelf_s"] = _best_of(reps, lambda: _run([readelf, "-sW", str(path)]))
    result["verify_cli_s"] = _best_of(reps, lambda: _run([sys.executable, "-m", "rseq_gen", "verify",
                                                          str(path)], env))
    result["python_startup_s"] = _best_of(reps, lambda: _run([sys.executable, "-m", "rseq_gen",
                                                              "--version"], env))
    out = {}

    def inproc():
        out.update(check_path(str(path), Context()))

    result["verify_inprocess_s"] = _best_of(reps, inproc)
    result["unreadable"] = len(out.get("errors", []))
    result["members"] = out.get("file", {}).get("members")
    if readelf:
        result["ratio_cli"] = result["verify_cli_s"] / result["readelf_s"]
        result["ratio_inprocess"] = result["verify_inprocess_s"] / result["readelf_s"]
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--big", type=Path, help="the big ELF file (default: the largest one found)")
    p.add_argument("--archive", type=Path, default=Path(DEFAULT_ARCHIVE), help="a static archive")
    p.add_argument("--reps", type=int, default=5, help="runs per measurement, best kept (default 5)")
    p.add_argument("--quick", action="store_true", help="one run each (smoke test)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    reps = 1 if args.quick else max(1, args.reps)
    big = args.big or largest_elf()
    cases = {}
    if big is not None:
        cases["big"] = measure(big, reps)
    if args.archive and args.archive.exists():
        cases["archive"] = measure(args.archive, reps)
    result = {"machine": platform.machine(), "python": platform.python_version(),
              "cpus": os.cpu_count(), "reps": reps, "cases": cases,
              "goals": {"big_ratio_max": 2.0, "archive_seconds_max": 5.0}}
    for name, c in cases.items():
        print(f"{name}: {c['file']} ({c['bytes'] / 1e6:.1f} MB"
              + (f", {c['members']} members" if c.get("members") else "") + ")")
        if "readelf_s" in c:
            print(f"  readelf -sW          {c['readelf_s'] * 1000:8.1f} ms")
        print(f"  rseq-gen verify      {c['verify_cli_s'] * 1000:8.1f} ms  (command; "
              f"Python start-up alone {c['python_startup_s'] * 1000:.1f} ms)")
        print(f"  verify in-process    {c['verify_inprocess_s'] * 1000:8.1f} ms")
        if "ratio_cli" in c:
            print(f"  ratio to readelf     {c['ratio_cli']:.2f}x command, "
                  f"{c['ratio_inprocess']:.2f}x in-process")
    if "big" in cases and "ratio_cli" in cases["big"]:
        ok = cases["big"]["ratio_cli"] <= 2.0
        print(f"Goal big library <= 2x readelf (command): {'met' if ok else 'NOT met'}")
    if "archive" in cases:
        ok = cases["archive"]["verify_cli_s"] < 5.0
        print(f"Goal libc.a < 5 s: {'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
