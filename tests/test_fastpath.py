"""The fast paths stay correct where the floor promises nothing: calls made
before the module's constructor ran, threads not registered yet, glibc's
registration on and off, and every way the generated file and the code
including its header can be compiled and linked (executable code reads an
offset valid from load time, shared-object code an offset that is 0 until
known; see the header).

tests/c/fastpath_early.c calls the fast paths (the mm_cid ones too) from a
constructor that runs before the module's own, then counts from 4 threads on
CPU and on mm_cid slots and checks both totals exactly, the area the fast
paths read and, in executable code, that the module moved the executable's
offset words to that area (the mm_cid word only when the kernel maintains
mm_cid), and the per-thread word the x86 P_mmcid_* operations read: the null
area before anything was known, the mm_cid area once the thread read its index
while registered there, the null area again at the first index read after the
thread was unregistered."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from conftest import ROOT, generate, require_tool
from rseq_gen.protocols import ENVIRONMENT_VARIABLES

PROGRAM = ROOT / "tests" / "c" / "fastpath_early.c"
STRICT = ("-O2", "-Wall", "-Wextra", "-Werror", "-pthread")
ENVS = ("glibc", "glibc-rseq-off")


@dataclass(frozen=True)
class Build:
    cc: str
    #: flags of the program's translation unit and of the generated file
    main_flags: tuple
    gen_flags: tuple
    link_flags: tuple = ()
    #: the generated file in a shared library the program links against
    gen_in_shared_lib: bool = False
    #: the program runs before the module's constructor (both in the
    #: executable): the raw read must find the null area (-1)
    pre_init: bool = True


BUILDS = {
    "pie": Build("gcc", ("-fPIE",), ("-fPIE",), ("-pie",)),
    "no-pie": Build("gcc", ("-fno-pie",), ("-fno-pie",), ("-no-pie",)),
    "static": Build("gcc", (), (), ("-static",)),
    "clang-lld": Build("clang", ("-fPIE",), ("-fPIE",), ("-pie", "-fuse-ld=lld")),
    "musl-static": Build("musl-gcc", (), (), ("-static",)),
    # i386: the words in .data and .tdata hold R_386_TLS_LE_32 offsets.
    "i686-pie": Build("i686-linux-gnu-gcc", ("-fPIE",), ("-fPIE",), ("-pie",)),
    # The generated file compiled as position-independent code but linked
    # into the executable with code that includes the header as executable code.
    "pic-module-in-exe": Build("gcc", ("-fPIE",), ("-fPIC",), ("-pie",)),
    # The generated file in a shared library; the executable's code includes
    # its header. The library's constructor runs first.
    "module-in-shared-lib": Build("gcc", ("-fPIE",), ("-fPIC",), ("-pie",),
                                  gen_in_shared_lib=True, pre_init=False),
    # Everything position-independent: the fast paths test the offset for 0.
    "all-pic": Build("gcc", ("-fPIC",), ("-fPIC",), ("-pie",), gen_in_shared_lib=True,
                     pre_init=False),
}
PACKAGES = {"gcc": "gcc", "clang": "clang", "musl-gcc": "musl-tools", "i686-linux-gnu-gcc": "gcc-i686-linux-gnu"}


def _build(tmp: Path, gen: Path, b: Build) -> Path:
    require_tool(b.cc, PACKAGES[b.cc])
    exe = tmp / "fastpath_early"
    inc = ("-I", str(gen))
    if b.gen_in_shared_lib:
        lib = tmp / "libfp.so"
        subprocess.run([b.cc, *STRICT, *b.gen_flags, *inc, "-shared", "-Wl,-z,nodelete", "-o",
                        lib, gen / "fp_rseq.c"], check=True, capture_output=True, text=True)
        cmd = [b.cc, *STRICT, *b.main_flags, *inc, *b.link_flags, "-o", exe, PROGRAM, "-L", tmp,
               "-lfp", f"-Wl,-rpath,{tmp}"]
    else:
        obj = tmp / "fp_rseq.o"
        subprocess.run([b.cc, *STRICT, *b.gen_flags, *inc, "-c", "-o", obj, gen / "fp_rseq.c"],
                       check=True, capture_output=True, text=True)
        cmd = [b.cc, *STRICT, *b.main_flags, *inc, *b.link_flags, "-o", exe, PROGRAM, obj]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    # glibc's note about dlopen in static programs is a linker warning, not ours.
    assert proc.returncode == 0, proc.stderr
    return exe


def _run(exe: Path, env_name: str) -> dict:
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    env.update(ENVIRONMENT_VARIABLES[env_name])
    proc = subprocess.run([exe, "4", "20000"], capture_output=True, text=True, env=env,
                          timeout=120)
    out = dict(re.findall(r"(\w+)=(\S+)", proc.stdout))
    assert proc.returncode == 0 and out.get("ok") == "1", (env_name, proc.stdout, proc.stderr)
    return out


def _check(b: Build, results: dict, protocol: str) -> None:
    for env_name, out in results.items():
        if b.pre_init:
            # Nothing was known yet: the null area (executable code) said
            # "not registered", and the counter add still counted.
            assert out["early_raw"] == "-1", (env_name, out)
            assert out["early_registrations"] == "0", (env_name, out)
    owners = {env_name: out["owner"] for env_name, out in results.items()}
    if protocol in ("compat", "own"):
        assert owners == {"glibc": "glibc", "glibc-rseq-off": "self"} or b.cc == "musl-gcc", owners
        if b.cc == "musl-gcc":
            assert set(owners.values()) == {"self"}, owners


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_fast_paths_before_and_after_init(tmp_path, build):
    b = BUILDS[build]
    # A module in a shared library serving the executable's code exports
    # its names (--visibility default); otherwise they stay hidden.
    vis = ("--visibility", "default" if b.gen_in_shared_lib else "hidden")
    gen = generate(tmp_path / "gen", "compat", "fp", "--arch", "x86_64,i386", *vis)
    exe = _build(tmp_path, gen, b)
    _check(b, {e: _run(exe, e) for e in ENVS}, "compat")


@pytest.mark.parametrize("protocol", ["own", "glibc", "cpu-id"])
def test_other_protocols_before_init(tmp_path, protocol):
    gen = generate(tmp_path / "gen", protocol, "fp")
    b = BUILDS["pie"]
    exe = _build(tmp_path, gen, b)
    _check(b, {e: _run(exe, e) for e in ENVS}, protocol)


@pytest.mark.parametrize("extra", [("--tls-model", "global-dynamic"), ("--dlopen-safe",)],
                         ids=["global-dynamic", "dlopen-safe"])
def test_global_dynamic_and_dlopen_safe_code(tmp_path, extra):
    """Areas this module registers in dynamic TLS are found per thread, out of
    line: the executable's word stays on the null area for them, and the raw
    read looks out of line when it finds cpu_id < 0 (so an early call already
    initialises the module)."""
    gen = generate(tmp_path / "gen", "compat", "fp", *extra)
    b = replace(BUILDS["pie"], pre_init=False)
    exe = _build(tmp_path, gen, b)
    _check(b, {e: _run(exe, e) for e in ENVS}, "compat")


def test_shared_object_code_has_no_load_time_word(tmp_path):
    """Code compiled -fPIC never defines the executable's word (no linker
    accepts a thread-pointer offset in a shared object's data): the object
    only references it, weakly, to keep it in step."""
    require_tool("readelf", "binutils")
    gen = generate(tmp_path / "gen", "compat", "fp")
    obj = tmp_path / "pic.o"
    subprocess.run(["gcc", *STRICT, "-fPIC", "-I", gen, "-c", "-o", obj, gen / "fp_rseq.c"],
                   check=True)
    syms = subprocess.run(["readelf", "-sW", obj], capture_output=True, text=True,
                          check=True).stdout
    word = [line for line in syms.splitlines() if line.endswith(" fp__exe_area_offset")]
    assert word and all(" WEAK " in line and " UND " in line for line in word), word
    assert not re.search(r" fp__null_area$", syms, re.M), syms
    exe_obj = tmp_path / "pie.o"
    subprocess.run(["gcc", *STRICT, "-fPIE", "-I", gen, "-c", "-o", exe_obj, gen / "fp_rseq.c"],
                   check=True)
    syms = subprocess.run(["readelf", "-sW", exe_obj], capture_output=True, text=True,
                          check=True).stdout
    assert re.search(r"\bTLS +WEAK +HIDDEN +\d+ fp__null_area$", syms, re.M), syms
