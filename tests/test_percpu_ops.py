"""The per-CPU operations and the per-CPU pool, natively on this kernel
(x86_64 and i386): tests/c/percpu_ops.c built with gcc and clang, as C11 and
as C++17, with ASan+UBSan and with TSan, and run

- with glibc's registration, with the generated code's own
  (GLIBC_TUNABLES=glibc.pthread.rseq=0) and with rseq denied by seccomp (the
  exact fallbacks, on real hardware threads);
- with a delay inside every sequence window (-DINJECT_DELAY) while 16
  threads migrate and take a signal storm, so the kernel really aborts
  sequences: the aborts are counted and must be there, in both indexing
  modes, and every structure's invariants must hold afterwards.

The other architectures run the same program under qemu-user
(tests/test_portability.py). Programs are built in a module fixture, two at
a time; the stress runs are sized to take about a second each.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import generate, require_tool, ROOT, run_build, run_rseq_gen
from rseq_gen import operations, selftest

#: The module fixture builds every program once: keep its tests on one worker.
pytestmark = pytest.mark.xdist_group("percpu-ops")

C_DIR = ROOT / "tests" / "c"
PROGRAM = C_DIR / "percpu_ops.c"
WARN = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-pthread"]
RSEQ_OFF = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}
#: Iterations per worker thread (16 threads) for each kind of build.
ITERS = {"plain": 20000, "asan": 5000, "tsan": 5000}
INJECT = "-DINJECT_DELAY"


@dataclass(frozen=True)
class Build:
    name: str
    cc: str
    flags: tuple
    kind: str = "plain"          # plain, asan, tsan
    cxx: str | None = None       # compile the program as C++17 with this
    gen: str = "compat"          # generated-code variant (GENERATED)
    whole_program: bool = False  # the generated .c in the program's TU (hooks apply to slow paths)


#: Generated-code variants: name -> rseq-gen generate arguments.
GENERATED = {
    "compat": ["--protocol", "compat"],
    "global-dynamic": ["--protocol", "compat", "--tls-model", "global-dynamic", "--dlopen-safe"],
}

BUILDS = [
    Build("gcc", "gcc", ("-std=c11", "-O2", INJECT)),
    Build("clang", "clang", ("-std=c11", "-O2", INJECT)),
    # Shared-object code (-fPIC, not PIE): x86_64's operations take the area
    # from the pointer per thread ("_area" sequences).
    Build("gcc-pic", "gcc", ("-std=c11", "-O2", "-fPIC", INJECT)),
    Build("clang-pic", "clang", ("-std=c11", "-O2", "-fPIC", INJECT)),
    Build("i386", "i686-linux-gnu-gcc", ("-std=c11", "-O2", INJECT)),
    Build("i386-O0-pic", "i686-linux-gnu-gcc", ("-std=c11", "-O0", "-fPIC", INJECT)),
    Build("i386-clang", "clang", ("--target=i686-linux-gnu", "-std=c11", "-O2", INJECT)),
    Build("g++", "gcc", ("-O2",), cxx="g++"),
    Build("clang++", "clang", ("-O0",), cxx="clang++"),
    Build("global-dynamic", "gcc", ("-std=c11", "-O2", "-fPIC", INJECT), gen="global-dynamic",
          whole_program=True),
    Build("asan", "gcc", ("-std=c11", "-O1", "-g", "-fsanitize=address,undefined",
                          "-fno-sanitize-recover=all"), kind="asan"),
    Build("tsan", "gcc", ("-std=c11", "-O1", "-g", "-fsanitize=thread"), kind="tsan"),
]


def _run(cmd, **kw):
    """A build (through the compiler cache) or a program run."""
    return run_build(cmd, **kw)


def _build(b: Build, gendirs: dict, out: Path) -> tuple[Path | None, str]:
    gdir = gendirs[b.gen]
    exe = out / f"percpu_ops-{b.name}"
    src = gdir / "rseqgen_rseq.c"
    if b.cxx:
        obj = out / f"{b.name}-rseq.o"
        p = _run([b.cc, "-std=c11", *WARN, *b.flags, "-I", gdir, "-c", src, "-o", obj])
        if p.returncode or p.stderr.strip():
            return None, p.stderr
        cmd = [b.cxx, "-std=c++17", *WARN, *b.flags, "-I", gdir, "-x", "c++", PROGRAM, "-x", "none",
               obj, "-o", exe]
    elif b.whole_program:
        cmd = [b.cc, *WARN, *b.flags, "-I", gdir, "-DWHOLE_PROGRAM", PROGRAM, "-o", exe]
    else:
        cmd = [b.cc, *WARN, *b.flags, "-I", gdir, PROGRAM, src, "-o", exe]
    p = _run(cmd)
    if p.returncode or p.stderr.strip():
        return None, f"{' '.join(map(str, cmd))}\n{p.stderr}"
    return exe, ""


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("percpu_ops")
    for b in BUILDS:
        require_tool(b.cxx or b.cc, {"i686-linux-gnu-gcc": "gcc-i686-linux-gnu"}.get(b.cc))
    gendirs = {}
    for name, args in GENERATED.items():
        gendirs[name] = base / "gen" / name
        run_rseq_gen("generate", *args, "--prefix", "rseqgen", "--arch", "x86_64,i386",
                     "--output-dir", gendirs[name])
        (gendirs[name] / "rseqgen_inject_delay.h").write_text(selftest.inject_header("rseqgen"))
    # The filter denies rseq for its own ABI only: one per ABI.
    seccomp = {}
    for abi, cc in (("x86_64", "gcc"), ("i386", "i686-linux-gnu-gcc")):
        seccomp[abi] = base / f"seccomp_exec-{abi}"
        p = _run([cc, "-O2", *WARN, C_DIR / "seccomp_exec.c", "-o", seccomp[abi]])
        assert p.returncode == 0, p.stderr
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {b.name: pool.submit(_build, b, gendirs, base) for b in BUILDS}
        built = {name: f.result() for name, f in futures.items()}
    return {"builds": built, "seccomp": seccomp, "gendirs": gendirs}


def _exe(programs, name) -> Path:
    exe, err = programs["builds"][name]
    assert exe is not None, f"{name} did not build:\n{err}"
    return exe


def run_program(exe: Path, *args, env_extra=None, prefix=(), timeout=300) -> list[dict]:
    """Runs one mode of the program; returns its key=value lines as dicts
    (the last line must be OK)."""
    env = dict(os.environ, **(env_extra or {}))
    cmd = [*prefix, exe, *args]
    p = _run(cmd, env=env, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and p.stdout.rstrip().endswith("\nOK"), \
        f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{out[-6000:]}"
    assert "WARNING: ThreadSanitizer" not in out and "ERROR: AddressSanitizer" not in out, out[-6000:]
    assert "runtime error" not in out, out[-6000:]
    return [dict(kv.split("=", 1) for kv in line.split()) for line in p.stdout.splitlines() if "=" in line]


OWNERSHIPS = {"glibc": ({}, "glibc"), "self": (RSEQ_OFF, "self")}


def _stress_runs(kind: str):
    return [(b.name, own) for b in BUILDS if b.kind == kind for own in OWNERSHIPS]


@pytest.mark.parametrize("name, ownership", _stress_runs("plain"))
def test_stress_with_kernel_aborts(programs, name, ownership):
    """16 threads, migrations, signals and a delay in every window: the
    kernel aborts sequences in both modes, and nothing is lost or doubled."""
    env, owner = OWNERSHIPS[ownership]
    records = run_program(_exe(programs, name), "stress", str(ITERS["plain"]), env_extra=env)
    modes = {r["mode"]: r for r in records if "mode" in r}
    assert set(modes) == {"percpu", "mmcid"}, records
    for mode, r in modes.items():
        assert r["owner"] == owner and r["mm_cid_available"] == "1", r
        assert int(r["migrations"]) > 0 and int(r["swaps"]) > 0, r
        injected = next(b for b in BUILDS if b.name == name).flags
        if INJECT in injected:
            assert int(r["aborts"]) > 0, f"{mode}: no sequence was aborted: {r}"


@pytest.mark.parametrize("name", [b.name for b in BUILDS])
def test_selfcheck_and_pool(programs, name):
    """Every arch sequence against a fake area, every public operation's
    result, and the pool (zeroing, stride, residency, exhaustion, threads)."""
    exe = _exe(programs, name)
    (info,) = run_program(exe, "selfcheck")
    assert info["owner"] == "glibc" and info["mm_cid_available"] == "1", info
    assert int(info["max_cpus"]) == _possible_cpus() and info["max_mm_cids"] == info["max_cpus"], info
    pool = {k: v for r in run_program(exe, "pool") for k, v in r.items()}
    assert int(pool["pool_capacity_stride_items"]) == operations.POOL_RANGES, pool


@pytest.mark.parametrize("kind", ["asan", "tsan"])
@pytest.mark.parametrize("ownership", ["glibc", "self", "fallback"])
def test_stress_under_sanitizers(programs, kind, ownership):
    exe = _exe(programs, kind)
    if ownership == "fallback":
        records = run_program(exe, "stress", str(ITERS[kind]), env_extra=RSEQ_OFF,
                              prefix=(programs["seccomp"]["x86_64"], "EPERM"))
        assert all(r["owner"] == "none" for r in records if "mode" in r), records
    else:
        env, owner = OWNERSHIPS[ownership]
        records = run_program(exe, "stress", str(ITERS[kind]), env_extra=env)
        assert all(r["owner"] == owner for r in records if "mode" in r), records
    assert len([r for r in records if "mode" in r]) == 2


@pytest.mark.parametrize("errno_name", ["ENOSYS", "EPERM"])
def test_fallback_stress_is_exact(programs, errno_name):
    """rseq denied (no area in any thread): every operation takes its exact
    fallback, on real hardware threads, and mm_cid is said unavailable."""
    for name, abi in (("gcc", "x86_64"), ("i386", "i386")):
        exe = _exe(programs, name)
        deny = (programs["seccomp"][abi], errno_name)
        records = run_program(exe, "stress", str(ITERS["plain"] // 4), env_extra=RSEQ_OFF, prefix=deny)
        for r in (r for r in records if "mode" in r):
            assert r["owner"] == "none" and r["aborts"] == "0" and r["mm_cid_available"] == "0", r
        (info,) = run_program(exe, "selfcheck", env_extra=RSEQ_OFF, prefix=deny)
        assert info["owner"] == "none" and info["mm_cid_available"] == "0", info
        assert 0 <= int(info["mmcid_index"]) < int(info["max_mm_cids"]), info


def _possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return max(int(part.split("-")[-1]) for part in text.split(",")) + 1


def test_operation_table_invariants():
    operations.check_table()
    names = {v.public("p") for v in operations.variants()}
    for op in ("cmpxchg", "add", "pop", "deref_add", "cmpxchg_store", "cmpxchg_store_release",
               "cmp2xchg", "cmpxchg_memcpy", "cmpxchg_memcpy_release"):
        assert {f"p_percpu_{op}", f"p_mmcid_{op}"} <= names, op
    assert len(names) == 18


def test_header_declares_every_operation(tmp_path):
    """The manifest lists every generated operation, and the header and the
    source define each one's fast path and slow path."""
    import json

    out = generate(tmp_path, "compat", "pfx", "--arch", "x86_64,aarch64")
    manifest = json.loads((out / "pfx_rseq.manifest.json").read_text())
    header = (out / "pfx_rseq.h").read_text()
    source = (out / "pfx_rseq.c").read_text()
    listed = manifest["operations"]
    assert len(listed) == len(operations.variants())
    symbols = {s["name"] for s in manifest["symbols"]}
    for op in listed:
        assert f"static inline int {op['name']}(" in header, op
        assert header.count(f"static inline int {op['arch_function']}(") == 2, op  # one per arch
        assert f"int {op['slow_path']}(" in source and op["slow_path"] in symbols, op
