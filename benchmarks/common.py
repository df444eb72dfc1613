"""Helpers shared by the benchmark items: generating, compiling, running,
statistics and the description of the machine."""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
C_DIR = Path(__file__).resolve().parent / "c"
PREFIX = "bench"

# The generator's own tables (protocols, environments): from the checkout
# when run from one, else the installed package.
if (ROOT / "toolkit" / "rseq_gen").is_dir() and str(ROOT / "toolkit") not in sys.path:
    sys.path.insert(0, str(ROOT / "toolkit"))
from rseq_gen.environments import ENVIRONMENT_VARIABLES  # noqa: E402,F401 (re-exported)
from rseq_gen.protocols import PROTOCOLS  # noqa: E402,F401 (re-exported)

#: The two glibc settings every ownership-dependent case runs under.
GLIBC_ENVS = {env: ENVIRONMENT_VARIABLES[env] for env in ("glibc", "glibc-rseq-off")}


class BenchError(RuntimeError):
    """A step failed: the message says which and why."""


def python_env() -> dict:
    """Environment in which ``python -m rseq_gen`` runs the checkout's
    generator (toolkit/ first on PYTHONPATH), or the installed one when this
    is not a source checkout."""
    env = dict(os.environ)
    toolkit = ROOT / "toolkit"
    if (toolkit / "rseq_gen").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(toolkit), os.environ.get("PYTHONPATH")) if p)
    return env


def run(cmd, *, env=None, cwd=None, timeout=900, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
    if check and proc.returncode != 0:
        raise BenchError(f"command failed (exit {proc.returncode}): {shlex.join(map(str, cmd))}\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return proc


def generate(outdir: Path, protocol: str, *extra: str) -> Path:
    """``rseq-gen generate --prefix bench`` into outdir."""
    outdir.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "rseq_gen", "generate", "--protocol", protocol, "--prefix", PREFIX,
         "--output-dir", outdir, *extra], env=python_env())
    return outdir


@dataclass
class Compiler:
    cc: str
    #: Flags of every build (-O2 is the issue's requirement).
    base: tuple = ("-O2", "-Wall", "-pthread")

    def build(self, out: Path, sources, *, gen_dir: Path | None, flags=(), libs=()) -> Path:
        inc = ["-I", str(C_DIR)] + (["-I", str(gen_dir)] if gen_dir else [])
        run([self.cc, *self.base, *flags, *inc, "-o", out, *sources, *libs])
        return out

    def version(self) -> str:
        return run([self.cc, "--version"]).stdout.splitlines()[0]


def aligned_flags() -> tuple:
    """Every loop head on a 64-byte boundary (and every BENCH_FN function)."""
    return ("-falign-loops=64",)


def shifted_flags(pad: int) -> tuple:
    """No loop alignment; the loop moved by `pad` bytes from a 64-byte
    aligned function start (the alignment sweep)."""
    return ("-falign-loops=1", "-falign-jumps=1", "-falign-labels=1", f"-DPAD_BYTES={pad}")


_KV = re.compile(r"(\w+)=(\S+)")


def run_kv(cmd, env_extra: dict, *, timeout=600) -> dict:
    """Run a benchmark program, parse its ``key=value`` output."""
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    env.update(env_extra)
    proc = run(cmd, env=env, timeout=timeout)
    out = dict(_KV.findall(proc.stdout))
    if not out:
        raise BenchError(f"no output from {shlex.join(map(str, cmd))}: {proc.stdout!r}")
    return out


@dataclass
class Sample:
    """Repeated measurements of one case, in ns."""
    values: list = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> tuple:
        return (min(self.values), max(self.values)) if self.values else (float("nan"),) * 2

    def as_dict(self) -> dict:
        lo, hi = self.spread
        return {"median_ns": self.median, "min_ns": lo, "max_ns": hi, "samples_ns": list(self.values)}


def disassemble(binary: Path, function: str) -> str:
    """objdump of one function (the hot loop), without raw bytes."""
    if not shutil.which("objdump"):
        return ""
    text = run(["objdump", "-d", "--no-show-raw-insn", binary], check=False).stdout
    m = re.search(rf"^[0-9a-f]+ <{re.escape(function)}>:\n(.*?)(?:\n\n|\Z)", text, re.S | re.M)
    return m.group(0).rstrip() if m else ""


def machine() -> dict:
    """What the results were measured on."""
    info = {"kernel": platform.release(), "arch": platform.machine(), "nproc": os.cpu_count()}
    lscpu = run(["lscpu"], check=False).stdout if shutil.which("lscpu") else ""
    for key in ("Model name", "Hypervisor vendor", "CPU(s)", "L1d cache", "L2 cache", "L3 cache"):
        m = re.search(rf"^{re.escape(key)}:\s*(.+)$", lscpu, re.M)
        if m:
            info[key.lower().replace(" ", "_").replace("(s)", "s")] = m.group(1).strip()
    ldd = run(["ldd", "--version"], check=False).stdout if shutil.which("ldd") else ""
    info["libc"] = ldd.splitlines()[0] if ldd else platform.libc_ver()[1]
    return info


def load_snapshot() -> dict:
    """Load average and the busiest other processes: builds running next to
    the benchmark show up here."""
    snap = {"loadavg": list(os.getloadavg())}
    ps = run(["ps", "-eo", "pcpu=,pid=,comm=", "--sort=-pcpu"], check=False).stdout
    busy = []
    for line in ps.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] != str(os.getpid()):
            try:
                if float(parts[0]) >= 10.0:
                    busy.append(f"{parts[2]} ({parts[0]}%)")
            except ValueError:
                pass
    snap["busy_processes"] = busy[:8]
    return snap


def perf_annotate(work: Path, binary: Path, args, function: str, env_extra: dict) -> str:
    """Where ``perf record -e cpu-clock`` (a software clock: works without
    hardware counters) puts the time inside one function, as ``perf
    annotate`` prints it; "" when perf is missing or refuses."""
    if not shutil.which("perf"):
        return ""
    data = work / f"perf-{binary.name}-{function}.data"
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    env.update(env_extra)
    rec = run(["perf", "record", "-q", "-e", "cpu-clock", "-o", data, binary, *args], env=env,
              check=False)
    if rec.returncode != 0 or not data.exists():
        return ""
    ann = run(["perf", "annotate", "-i", data, "--stdio", "-s", function], check=False)
    lines = [l.rstrip() for l in ann.stdout.splitlines()
             if re.match(r"\s+[0-9]+\.[0-9]+ :\s+[0-9a-f]+:", l)]
    return "\n".join(lines)


def source_state() -> dict:
    """Which generator was measured: the commit, and the generator files
    that differ from it (other work in progress in the same tree)."""
    state = {"commit": None, "uncommitted": []}
    if not shutil.which("git") or not (ROOT / ".git").exists():
        return state
    rev = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False)
    if rev.returncode == 0:
        state["commit"] = rev.stdout.strip()
    st = run(["git", "-C", ROOT, "status", "--porcelain", "--", "templates", "toolkit", "cmake"],
             check=False)
    state["uncommitted"] = [line[3:] for line in st.stdout.splitlines() if line.strip()]
    return state
