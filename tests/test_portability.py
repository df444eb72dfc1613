"""Every architecture rseq-gen supports: cross-compile the generated code
warning-free, link tests/c/cross_count.c statically, run it natively or under
qemu-user, and check the objects with ``rseq-gen verify`` and the signature
bytes before every abort handler.

How each target is tested (docs/support-matrix.md says the same):
- x86_64, i386: native runs on the real kernel (glibc registers; with
  GLIBC_TUNABLES=glibc.pthread.rseq=0 the generated code registers itself),
  so the critical sections run with real preemption and aborts.
- everything else: qemu-user runs. qemu does not implement rseq, so the
  registration path is the ENOSYS one (owner "none", current_cpu falls back,
  the per-CPU operations use atomics) and the totals must still be exact.
  tests/c/percpu_ops.c runs each architecture's sequences against a fake
  area in its own TLS, which checks the descriptor address (PC-relative
  code), the rseq_cs word written (32-bit big endian!) and the signature at
  run time, then the per-CPU structures and the pool.
- Debian bookworm has no gcc for loongarch64, aarch64_be or armeb: those are
  built with zig cc (PyPI ``ziglang``, musl) and run under qemu-user too.

The builds run in a module fixture, two at a time (the machine has 2 cores).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from conftest import ROOT, run_build, run_rseq_gen
from helpers.toolchains import TARGETS, Target

from rseq_gen.arches import ARCHES
from rseq_gen.probe import TP_STUBS
from rseq_gen.protocols import PROTOCOLS


# Its tests share one module-wide build: keep them on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("portability")

CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"]
TEST_PROGRAM = ROOT / "tests" / "c" / "cross_count.c"
OPS_PROGRAM = ROOT / "tests" / "c" / "percpu_ops.c"
STUB_PROGRAM = ROOT / "tests" / "c" / "cross_tp_stub.c"
PREFIX = "rseqgen"
QEMU_ITERS = "20000"
QEMU_STRESS_ITERS = "2000"
NATIVE_ITERS = "200000"


#: Compile-only variants of the generated .c per target (name -> generate
#: arguments, extra flags); the linked program uses the first.
VARIANTS = {
    "compat": (["--protocol", "compat"], ["-O2"]),
    "compat-O0": (["--protocol", "compat"], ["-O0"]),
    "own": (["--protocol", "own"], ["-O2"]),
    "compat-dlopen-safe": (["--protocol", "compat", "--dlopen-safe"], ["-O2", "-fPIC"]),
    "glibc": (["--protocol", "glibc"], ["-O2"]),
}


@dataclass
class BuildResult:
    target: Target
    compiler: list[str] | None = None
    missing: str | None = None
    compile_errors: dict = field(default_factory=dict)   # variant -> stderr
    objects: dict = field(default_factory=dict)          # variant -> Path
    manifests: dict = field(default_factory=dict)        # variant -> manifest Path
    link_error: str | None = None
    exe: Path | None = None
    ops_exe: Path | None = None        # tests/c/percpu_ops.c
    stub_exe: Path | None = None
    stub_error: str | None = None
    clang_error: str | None = None      # clang --target compile (gcc targets)


def _compiler(t: Target) -> tuple[list[str] | None, str | None]:
    if t.compiler.startswith("zig:"):
        if importlib.util.find_spec("ziglang") is None:
            return None, f"zig not found: install {t.compiler_package} (needed for {t.id})"
    elif shutil.which(t.command[0]) is None:
        return None, f"{t.command[0]} not found: install {t.compiler_package} (.ci/apt-packages.txt)"
    return t.command, None


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    """A build (through the compiler cache) or a program run."""
    return run_build(cmd, **kw)


def _build(t: Target, gendirs: dict, out: Path) -> BuildResult:
    res = BuildResult(t)
    res.manifests = {v: gendirs[v] / "manifest.json" for v in VARIANTS}
    res.compiler, res.missing = _compiler(t)
    if res.compiler is None:
        return res
    out.mkdir(parents=True, exist_ok=True)
    for variant, (_, flags) in VARIANTS.items():
        gdir = gendirs[variant]
        obj = out / f"{variant}.o"
        p = _run([*res.compiler, *CFLAGS, *flags, *t.extra, "-I", gdir, "-c",
                  gdir / f"{PREFIX}_rseq.c", "-o", obj])
        if p.returncode != 0 or p.stderr.strip():
            res.compile_errors[variant] = p.stderr or f"exit {p.returncode}"
        else:
            res.objects[variant] = obj
    if t.compiler.startswith("gcc:"):
        # clang's integrated assembler is stricter than GAS in places
        # (e.g. riscv `tail` to an asm goto label in another section).
        triple = ARCHES[t.arch].cross_triple
        clang = shutil.which("clang")
        if clang is None:
            res.clang_error = "clang not found: install clang (Debian)"
        else:
            for variant in ("compat", "compat-dlopen-safe"):
                gdir = gendirs[variant]
                p = _run([clang, f"--target={triple}", *CFLAGS, *VARIANTS[variant][1], *t.extra,
                          "-I", gdir, "-c", gdir / f"{PREFIX}_rseq.c", "-o", out / f"clang-{variant}.o"])
                if p.returncode != 0 or p.stderr.strip():
                    res.clang_error = f"{variant}: {p.stderr or p.returncode}"
    gdir = gendirs["compat"]
    exe = out / "cross_count"
    link = [*res.compiler, *CFLAGS, "-O2", *t.extra, "-I", gdir, "-pthread",
            TEST_PROGRAM, gdir / f"{PREFIX}_rseq.c", "-o", exe]
    if t.static:
        link.insert(len(res.compiler), "-static")
    else:
        # Export the shared symbols so later dlopen'd modules bind to them
        # (verify RSEQ109), as the README tells users to.
        link += PROTOCOLS["compat"].executable_link_flags
    p = _run(link)
    # Link-time notes (glibc's "dlopen in static binaries") are not compiler
    # warnings; only the exit status counts here.
    if p.returncode != 0:
        res.link_error = p.stderr
    else:
        res.exe = exe
    ops_exe = out / "percpu_ops"
    p = _run([{TEST_PROGRAM: OPS_PROGRAM, exe: ops_exe}.get(a, a) for a in link])
    if p.returncode != 0:
        res.link_error = (res.link_error or "") + p.stderr
    else:
        res.ops_exe = ops_exe
    stub = TP_STUBS.get(t.arch)
    if stub is not None:
        (out / "tp_stub.h").write_text(
            "static const unsigned char tp_stub[] = {" + ", ".join(map(hex, stub)) + "};\n")
        stub_exe = out / "cross_tp_stub"
        cmd = [*res.compiler, *CFLAGS, "-O2", *t.extra, "-I", gdir, "-I", out, "-pthread",
               STUB_PROGRAM, "-o", stub_exe]
        if t.static:
            cmd.insert(len(res.compiler), "-static")
        p = _run(cmd)
        if p.returncode != 0 or p.stderr.strip():
            res.stub_error = p.stderr or f"exit {p.returncode}"
        else:
            res.stub_exe = stub_exe
    return res


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, BuildResult]:
    base = tmp_path_factory.mktemp("portability")
    all_arches = ",".join(ARCHES)
    gendirs = {}
    for variant, (args, _) in VARIANTS.items():
        gdir = base / "gen" / variant
        run_rseq_gen("generate", *args, "--prefix", PREFIX, "--arch", all_arches,
                     "--output-dir", gdir, "--manifest", gdir / "manifest.json")
        gendirs[variant] = gdir
    with ThreadPoolExecutor(max_workers=2) as pool:
        # zig targets first: on a fresh machine zig builds musl for each of
        # them once (cached in ~/.cache/zig afterwards), the longest jobs.
        order = sorted(TARGETS, key=lambda t: not t.compiler.startswith("zig:"))
        futures = {t.id: pool.submit(_build, t, gendirs, base / t.id) for t in order}
        return {name: f.result() for name, f in futures.items()}


def _get(builds, tid) -> BuildResult:
    res = builds[tid]
    if res.missing:
        pytest.fail(res.missing)
    return res


IDS = [t.id for t in TARGETS]


def test_every_arch_row_has_a_target():
    assert {t.arch for t in TARGETS} == set(ARCHES)
    for t in TARGETS:
        assert t.endian in ARCHES[t.arch].endians, t


@pytest.mark.parametrize("tid", IDS)
def test_compiles_warning_free(builds, tid):
    res = _get(builds, tid)
    assert not res.compile_errors, "\n".join(f"--- {v}:\n{e}" for v, e in res.compile_errors.items())
    assert res.exe is not None, f"link failed:\n{res.link_error}"


@pytest.mark.parametrize("tid", [t.id for t in TARGETS if t.compiler.startswith("gcc:")])
def test_clang_compiles_warning_free(builds, tid):
    """The same code through clang --target=<Debian triple> (compile only;
    the zig targets are clang already)."""
    res = _get(builds, tid)
    assert res.clang_error is None, res.clang_error


@pytest.mark.parametrize("tid", IDS)
def test_elf_machine_and_signatures(builds, tid):
    """The linked program: right machine/class/byte order, one pointer in
    __rseq_cs_ptr_array per descriptor, and RSEQ_SIG in data byte order in
    the 4 bytes before every abort IP."""
    res = _get(builds, tid)
    assert res.exe is not None and res.ops_exe is not None, f"link failed:\n{res.link_error}"
    for exe in (res.exe, res.ops_exe):
        _check_descriptors(res, exe)


def _check_descriptors(res: BuildResult, exe: Path) -> None:
    arch = ARCHES[res.target.arch]
    with open(exe, "rb") as fh:
        elf = ELFFile(fh)
        assert elf["e_machine"] == arch.e_machine
        assert elf.elfclass == arch.elfclass
        endian = "little" if elf.little_endian else "big"
        assert endian == res.target.endian
        fmt = "<" if elf.little_endian else ">"
        cs = elf.get_section_by_name("__rseq_cs")
        ptrs = elf.get_section_by_name("__rseq_cs_ptr_array")
        assert cs is not None and ptrs is not None, "missing __rseq_cs / __rseq_cs_ptr_array"
        assert cs["sh_addralign"] >= 32
        data = cs.data()
        descriptors = {}
        for off in range(0, len(data) - 31, 32):
            version, flags, start, pco, abort = struct.unpack_from(fmt + "IIQQQ", data, off)
            if start == 0 and pco == 0 and abort == 0:
                continue  # padding
            assert version == 0 and flags == 0
            assert pco > 0 and not (start <= abort < start + pco)
            descriptors[cs["sh_addr"] + off] = abort
        pointers = [struct.unpack_from(fmt + "Q", ptrs.data(), i)[0]
                    for i in range(0, ptrs.data_size, 8)]
        assert sorted(pointers) == sorted(descriptors), "ptr array does not match the descriptors"
        assert descriptors, "no critical sections linked"
        want = struct.pack(fmt + "I", arch.sig_for(endian))
        for desc, abort in descriptors.items():
            sec = next(s for s in elf.iter_sections()
                       if s["sh_addr"] <= abort - 4 and abort <= s["sh_addr"] + s["sh_size"]
                       and s["sh_type"] == "SHT_PROGBITS")
            got = sec.data()[abort - 4 - sec["sh_addr"]: abort - sec["sh_addr"]]
            assert got == want, (f"descriptor {desc:#x}: bytes {got.hex()} before abort {abort:#x} "
                                 f"in {sec.name}, want {want.hex()}")


@pytest.mark.parametrize("tid", IDS)
def test_rseq_gen_verify(builds, tid):
    """``rseq-gen verify`` accepts each arch's objects (with the manifest of
    the code they came from) and the linked program."""
    res = _get(builds, tid)
    assert res.exe is not None and res.ops_exe is not None and res.objects.keys() == VARIANTS.keys()
    groups = [("compat", [res.objects["compat"], res.objects["compat-O0"], res.exe, res.ops_exe])]
    groups += [(v, [res.objects[v]]) for v in ("own", "glibc", "compat-dlopen-safe")]
    for variant, paths in groups:
        proc = run_rseq_gen("verify", "--manifest", res.manifests[variant], *paths, check=False)
        assert proc.returncode == 0, f"{variant}:\n{proc.stdout}{proc.stderr}"
        assert " 0 error(s)" in proc.stdout and " 0 warning(s)" in proc.stdout, proc.stdout


def _command(t: Target, exe: Path, *args) -> list:
    if t.run == "native":
        return [exe, *args]
    qemu = t.qemu_binary
    if shutil.which(qemu) is None:
        pytest.fail(f"{qemu} not found: install qemu-user (Debian)")
    if shutil.which("setarch") is None:
        pytest.fail("setarch not found: install util-linux (Debian)")
    # Without address randomisation: under qemu-user with randomised host
    # mappings, glibc's static malloc in a 16 KiB-page guest (loongarch64)
    # sometimes asks for a mapping below address 0 and fails ("out of memory"
    # in 1 of 40 pool runs, 0 of 100 with setarch -R); nothing of ours is in
    # those calls.
    return ["setarch", "-R", qemu, exe, *args]


@pytest.mark.parametrize("tid", [t.id for t in TARGETS if t.arch in TP_STUBS])
def test_probe_thread_pointer_stub(builds, tid):
    """The machine code `rseq-gen probe` runs through ctypes to find the
    thread pointer returns what the generated header's asm returns."""
    res = _get(builds, tid)
    assert res.stub_exe is not None, f"stub program did not build:\n{res.stub_error}"
    p = _run(_command(res.target, res.stub_exe), timeout=60)
    assert p.returncode == 0 and p.stdout.rstrip().endswith("OK"), p.stdout + p.stderr


def test_probe_stub_coverage():
    """Every arch has a way for probe to find the thread pointer, except
    big-endian ppc64 (ELFv1 function descriptors): probe says so."""
    assert set(ARCHES) - set(TP_STUBS) == {"x86_64", "ppc64"}


def _run_program(res: BuildResult, env_extra: dict | None = None) -> dict:
    t = res.target
    env = dict(os.environ, **(env_extra or {}))
    cmd = _command(t, res.exe, NATIVE_ITERS if t.run == "native" else QEMU_ITERS)
    p = _run(cmd, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout.rstrip().endswith("OK"), \
        f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("owner="))
    fields = dict(kv.split("=", 1) for kv in line.split())
    assert fields["add_total"] == fields["expected"] == fields["cas_total"]
    return fields


@pytest.mark.parametrize("tid", IDS)
def test_runs_and_counts_exactly(builds, tid):
    res = _get(builds, tid)
    assert res.exe is not None, f"link failed:\n{res.link_error}"
    fields = _run_program(res)
    if res.target.run == "qemu":
        # qemu-user has no rseq: the ENOSYS path.
        assert fields["owner"] == fields["worker_owner"] == "none", fields
        assert fields["errno"] == "38" and fields["registrations"] == "0", fields
        assert int(fields["cpu"]) >= 0, fields
    else:
        # Native: this machine's glibc (>= 2.35) registered every thread.
        assert fields["owner"] == fields["worker_owner"] == "glibc", fields
        assert int(fields["raw"]) >= 0, fields


@pytest.mark.parametrize("tid", [t.id for t in TARGETS if t.run == "native"])
def test_native_own_registration(builds, tid):
    """With glibc's registration off the generated code registers the shared
    area itself, and its critical sections run under real preemption."""
    res = _get(builds, tid)
    assert res.exe is not None, f"link failed:\n{res.link_error}"
    fields = _run_program(res, {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
    assert fields["owner"] == fields["worker_owner"] == "self", fields
    assert int(fields["registrations"]) >= 2 and fields["errno"] == "0", fields


@pytest.mark.parametrize("cc,arch", [("gcc", "x86_64"), ("riscv64-linux-gnu-gcc", "riscv64"),
                                     ("arm-linux-gnueabihf-gcc", "arm")])
def test_gc_sections_keeps_the_arrays(tmp_path, cc, arch):
    """Linking with --gc-sections keeps __rseq_cs_ptr_array and
    __rseq_exit_point_array (the sections are SHF_GNU_RETAIN), so the
    program still passes rseq-gen verify."""
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} not found: install {'gcc' if cc == 'gcc' else 'gcc-' + cc[:-4]} (Debian)")
    run_rseq_gen("generate", "--prefix", PREFIX, "--arch", arch, "--output-dir", tmp_path)
    exe = tmp_path / "gc"
    p = _run([cc, *CFLAGS, "-O2", "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections",
              "-static", "-pthread", "-I", tmp_path, TEST_PROGRAM, tmp_path / f"{PREFIX}_rseq.c",
              "-o", exe])
    assert p.returncode == 0, p.stderr
    with open(exe, "rb") as fh:
        names = {s.name for s in ELFFile(fh).iter_sections()}
    assert {"__rseq_cs", "__rseq_cs_ptr_array", "__rseq_exit_point_array"} <= names, names
    proc = run_rseq_gen("verify", exe, check=False)
    assert proc.returncode == 0 and " 0 error(s)" in proc.stdout, proc.stdout


@pytest.mark.parametrize("tid", IDS)
def test_percpu_operations_and_pool(builds, tid):
    """tests/c/percpu_ops.c on each architecture: every operation's
    sequence in both indexing modes against a fake area (descriptor,
    signature, results, which field is compared), every public operation's
    result, the pool, and 16 threads over every per-CPU structure with
    migrations and signals. Under qemu that is the fallback path (no rseq);
    natively, glibc's registration."""
    res = _get(builds, tid)
    assert res.ops_exe is not None, f"link failed:\n{res.link_error}"
    t = res.target
    qemu = t.run == "qemu"
    for args in (["selfcheck"], ["pool"], ["stress", QEMU_STRESS_ITERS]):
        cmd = _command(t, res.ops_exe, *args)
        p = _run(cmd, timeout=300)
        assert p.returncode == 0 and p.stdout.rstrip().endswith("OK"), \
            f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-4000:]}\n{p.stderr[-2000:]}"
        records = [dict(kv.split("=", 1) for kv in line.split()) for line in p.stdout.splitlines() if "owner=" in line]
        assert records or args == ["pool"], p.stdout
        for r in records:
            assert r["owner"] == ("none" if qemu else "glibc"), r
            assert r["mm_cid_available"] == ("0" if qemu else "1"), r
