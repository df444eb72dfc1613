"""The generated code under real kernels of every architecture: Debian's
kernel lines (tests/helpers/kernels.py) booted under qemu-system, one boot per line,
and Debian sid's 7.x x86_64 kernel (tests/helpers/guest.py, the same boot as
tests/test_kernel7.py).

Each boot runs, for every program architecture the kernel runs (the arm64
kernel also runs ARM and Thumb programs, the x86_64 kernel i386 ones):

- the `rseq-gen selftest` witness (rseq_gen.selftest), dynamic with glibc's
  registration on and off, and static: judged here by the same code as on
  the host; every abort property must pass (aborts counted on same-CPU
  preemption, signal delivery and migration, all totals exact), mm_cid
  within its bound where the kernel maintains it (6.3 on), the registration
  length what the kernel line and its owner say;
- tests/c/percpu_ops.c stress (every per-CPU structure, both indexing modes,
  16 threads, migrations, a signal storm) with the delay before each commit
  on every architecture: aborts counted in both modes, invariants exact;
  once more with every thread on one CPU (busybox taskset);
- tests/c/cross_count.c for every protocol alone, with glibc's registration
  on, off and static (the machine's own architecture): the owners the
  protocol table gives, totals exact.
"""

from __future__ import annotations

import errno
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import locked, run_build, session_shared_dir
from helpers.guest import GuestError, GuestProgram
from helpers.kernels import COMPILER_PACKAGES, GENERATED_ARCH, KERNEL_LINES, LIBCS, MACHINES, LineCache, boot
from rseq_gen import abi, selftest
from rseq_gen.arches import ARCHES
from rseq_gen.protocols import ENVIRONMENT_VARIABLES, PROTOCOLS

C_DIR = Path(__file__).parent / "c"
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-pthread")
#: The sid x86_64 line of tests/helpers/guest.py, beside KERNEL_LINES.
SID_LINE = "x86_64-7"
#: Long enough: at 1 s every phase of the witness saw 26 aborts or more in the
#: slowest guest here (aarch64 7.x under TCG, AArch32 too), migrations about 100.
SELFTEST_SECONDS = "1"
OPS_ITERS = "2000"
COUNT_ITERS = "2000"
#: How each program is run: name -> (static, environment of the protocol table when glibc registers).
RUNS = {"on": (False, "glibc"), "off": (False, "glibc-rseq-off"), "static": (True, "glibc-static")}
#: percpu_ops stress runs (static linking is covered by the witness and
#: the protocol runs; one run less per architecture and line keeps the
#: guests' time down), plus "pinned".
OPS_RUNS = ("on", "off")
#: Program architectures whose glibc (the host's 2.36 cross libc) does not
#: register rseq: there the "on" and "static" runs behave like "off".
GLIBC_NO_RSEQ = {"riscv64"}


def _table_env(arch: str, run: str) -> str:
    return "glibc-rseq-off" if arch in GLIBC_NO_RSEQ else RUNS[run][1]


def _env(run: str) -> dict:
    return dict(ENVIRONMENT_VARIABLES[RUNS[run][1]])


def _line_arches(line_id: str) -> tuple[str, ...]:
    return ("x86_64", "i386") if line_id == SID_LINE else MACHINES[KERNEL_LINES[line_id].machine].programs


def _line_version(line_id: str) -> tuple[int, ...]:
    return (7,) if line_id == SID_LINE else KERNEL_LINES[line_id].version_tuple


# ---- building, once per program architecture for the whole run -------------------

def _compile(arch: str, out: Path, sources, extra=()) -> Path:
    libc = LIBCS[arch]
    if shutil.which(libc.compiler) is None:
        raise GuestError(f"{libc.compiler} not found: install {COMPILER_PACKAGES[libc.compiler]}")
    cmd = [libc.compiler, *libc.flags, *CFLAGS, *sources, "-o", out, *extra]
    proc = run_build(cmd, cwd=out.parent)
    if proc.returncode != 0:
        raise GuestError(f"{out.name} did not build: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return out


def _generated(root: Path) -> Path:
    """Every protocol's code (prefix rseqgen) and the witness, for every
    architecture, generated once."""
    gen = root / "gen"
    with locked(root / "gen.lock"):
        if not (gen / "done").exists():
            from rseq_gen.generate import render, write_outputs
            from rseq_gen.settings import GenerateOptions

            arches = ",".join(ARCHES)
            for protocol in PROTOCOLS:
                out = gen / protocol
                write_outputs(render(GenerateOptions.from_strings(protocol=protocol, prefix="rseqgen",
                                                                  arch=arches)), out, None, None)
                (out / "rseqgen_inject_delay.h").write_text(selftest.inject_header("rseqgen"))
            selftest.generate_sources(gen / "selftest", arches)
            (gen / "done").touch()
    return gen


def build_programs(root: Path, arch: str, protocols: bool) -> dict[str, Path]:
    """name -> program for one architecture (built once per run, shared by
    the pytest-xdist workers)."""
    gen = _generated(root)
    out = root / arch
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    witness = gen / "selftest" / "selftest_witness.c"
    for static in (False, True):
        tag = "static" if static else "dyn"
        link = ("-static",) if static else ()
        jobs.append((f"selftest-{tag}", [witness, gen / "selftest" / f"{selftest.PREFIX}_rseq.c"], link))
        if not static:
            jobs.append((f"ops-{tag}", ["-DINJECT_DELAY", f"-I{gen / 'compat'}", C_DIR / "percpu_ops.c",
                                        gen / "compat" / "rseqgen_rseq.c"], link))
        if protocols:
            for protocol in PROTOCOLS:
                jobs.append((f"count-{protocol}-{tag}", [f"-I{gen / protocol}", C_DIR / "cross_count.c",
                                                         gen / protocol / "rseqgen_rseq.c"], link))
    with locked(out / "build.lock"):
        def one(job):
            name, sources, link = job
            exe = out / name
            if not exe.exists():
                extra = [f"-I{gen / 'selftest'}"] if name.startswith("selftest") else []
                _compile(arch, out / f"{name}.tmp", [*extra, *sources], link).rename(exe)
            return name, exe

        with ThreadPoolExecutor(max_workers=2) as pool:
            return dict(pool.map(one, jobs))


def batch(line_id: str, root: Path) -> list[GuestProgram]:
    """The programs one boot runs."""
    programs = []
    for i, arch in enumerate(_line_arches(line_id)):
        built = build_programs(root, arch, protocols=(i == 0))
        for run, (static, _) in RUNS.items():
            tag = "static" if static else "dyn"
            programs.append(GuestProgram(f"selftest-{arch}-{run}", ("w", "--seconds", SELFTEST_SECONDS),
                                         {"w": built[f"selftest-{tag}"]}, _env(run), 120))
            if run in OPS_RUNS:
                programs.append(GuestProgram(f"ops-{arch}-{run}", ("ops", "stress", OPS_ITERS),
                                             {"ops": built[f"ops-{tag}"]}, _env(run), 300))
            if i == 0:
                for protocol in PROTOCOLS:
                    programs.append(GuestProgram(f"count-{arch}-{protocol}-{run}", ("count", COUNT_ITERS),
                                                 {"count": built[f"count-{protocol}-{tag}"]}, _env(run), 120))
        programs.append(GuestProgram(f"ops-{arch}-pinned", ("/bin/taskset", "1", "./ops", "stress", OPS_ITERS),
                                     {"ops": built["ops-dyn"]}, _env("off"), 300))
    return programs


# ---- one boot per kernel line, per pytest-xdist worker's group --------------------

_BOOTS: dict[str, tuple] = {}


def line_results(line_id: str, request) -> tuple:
    """(image, results by name, boot record) of one kernel line; pytest.fail
    with the one line why when it cannot boot."""
    if line_id not in _BOOTS:
        factory = request.config._tmp_path_factory
        root = session_shared_dir(factory) / "kernel-programs"
        try:
            image = LineCache(request.config.cache.mkdir("rseq-gen-kernels"), KERNEL_LINES[line_id]).image()
            results, record = boot(image, batch(line_id, root), factory.mktemp(f"boot-{line_id}"))
            _record(request.config, factory, line_id, record)
            _BOOTS[line_id] = (image, results, record, None)
        except GuestError as exc:
            _BOOTS[line_id] = (None, None, None, str(exc))
    image, results, record, error = _BOOTS[line_id]
    if error:
        pytest.fail(error, pytrace=False)
    return image, results, record


def _param(line_id: str, *rest):
    return pytest.param(line_id, *rest, marks=pytest.mark.xdist_group(f"kernel-{line_id}"),
                        id="-".join([line_id, *map(str, rest)]))


# ---- the tests ---------------------------------------------------------------------

def _expected_length(line_id: str, arch: str, run: str, owner: str, feature_size: int) -> int:
    """The host's glibc 2.36 (every program here, and the static ones in the
    sid guest) registers 32 bytes, sid's 2.43 (the sid guest's dynamic
    x86_64 programs) max(AT_RSEQ_FEATURE_SIZE, 32); the generated code's
    default (legacy) registration is 32 bytes."""
    assert abi.DEFAULT_REGISTRATION == "legacy"
    if owner == "glibc" and line_id == SID_LINE and arch == "x86_64" and run != "static":
        return max(feature_size, abi.AREA_SIZE)
    return abi.AREA_SIZE if owner in ("glibc", "self") else 0


def _record(config, factory, line_id, record) -> None:
    """For conftest's terminal summary of guest boots."""
    import dataclasses
    import json

    from conftest import _boot_record_dir

    out = _boot_record_dir(config, factory)
    out.mkdir(exist_ok=True)
    (out / f"line-{line_id}.json").write_text(json.dumps([dataclasses.asdict(record)]))


@pytest.mark.parametrize("line_id", [_param(k) for k in KERNEL_LINES])
def test_kernel_line_boots(line_id, request):
    image, results, record = line_results(line_id, request)
    line = KERNEL_LINES[line_id]
    assert record.release == image.release, record
    assert image.release.startswith(line.line + "."), image.release
    if image.config is not None:
        assert image.config_value("RSEQ") == "y"
    assert record.programs == len(results)


def check_selftest(line_id, arch, run, release, results):
    r = results[f"selftest-{arch}-{run}"]
    report = selftest.judge(selftest.parse(r.stdout), r.returncode)
    assert r.returncode == 0 and report["finished"], r.describe()
    reg = report["registration"]
    assert reg["kernel"] == release
    props = report["properties"]
    want_owner = "glibc" if _table_env(arch, run) != "glibc-rseq-off" else "self"
    assert reg["owner"] == want_owner, reg
    assert reg["length"] == _expected_length(line_id, arch, run, reg["owner"], reg["feature_size"]), reg
    if _table_env(arch, run) == "glibc-rseq-off":
        # a fresh thread nobody registered: 32 bytes everywhere; 64 (len > 32,
        # at least the feature size) only from 6.3 on, where the length became extensible
        lengths = reg["length_errno"]
        assert lengths["32"] == 0, reg
        assert lengths["64"] == (0 if _line_version(line_id) >= (6, 3) else errno.EINVAL), reg
    for prop in ("registration", "abort_on_preemption", "abort_on_signal", "abort_on_migration", "no_lost_update"):
        assert props[prop]["verdict"] == "pass", (prop, props[prop], r.describe())
    has_mm_cid = _line_version(line_id) >= (6, 3)
    assert reg["mm_cid_available"] == int(has_mm_cid), reg
    if not has_mm_cid:
        assert reg["feature_size"] == 0, reg  # no AT_RSEQ_FEATURE_SIZE before 6.3
    assert props["mm_cid"]["verdict"] == ("pass" if has_mm_cid else "not-applicable"), props["mm_cid"]
    assert not report["atomicity_violated"]


def check_percpu_ops(line_id, arch, run, results):
    r = results[f"ops-{arch}-{run}"]
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), r.describe()
    records = [dict(kv.split("=", 1) for kv in line.split()) for line in r.stdout.splitlines() if "mode=" in line]
    modes = {rec["mode"]: rec for rec in records}
    assert set(modes) == {"percpu", "mmcid"}, r.describe()
    table_env = "glibc-rseq-off" if run == "pinned" else _table_env(arch, run)
    for mode, rec in modes.items():
        assert rec["owner"] == ("self" if table_env == "glibc-rseq-off" else "glibc"), rec
        assert rec["mm_cid_available"] == str(int(_line_version(line_id) >= (6, 3))), rec
        if mode == "percpu" or rec["mm_cid_available"] == "1":
            assert int(rec["aborts"]) > 0, f"{mode}: no sequence was aborted: {rec}"
        else:  # before 6.3 the mm_cid operations run their fallbacks: nothing to abort
            assert int(rec["aborts"]) == 0, rec
        if run != "pinned":  # pinned: the only CPU it may move to is the one it is on
            assert int(rec["migrations"]) > 0, rec


def check_protocol(arch, protocol, run, results):
    r = results[f"count-{arch}-{protocol}-{run}"]
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), r.describe()
    info = dict(kv.split("=", 1) for kv in r.stdout.splitlines()[0].split())
    want = PROTOCOLS[protocol].owner[_table_env(arch, run)]
    assert info["owner"] == want and info["worker_owner"] == want, (info, want)
    assert info["add_total"] == info["cas_total"] == info["expected"], info


@pytest.mark.parametrize("line_id, arch, run", [_param(line, arch, run) for line in KERNEL_LINES
                                                for arch in _line_arches(line) for run in RUNS])
def test_selftest_in_guest(line_id, arch, run, request):
    image, results, _ = line_results(line_id, request)
    check_selftest(line_id, arch, run, image.release, results)


@pytest.mark.parametrize("line_id, arch, run", [_param(line, arch, run) for line in KERNEL_LINES
                                                for arch in _line_arches(line) for run in (*OPS_RUNS, "pinned")])
def test_percpu_ops_in_guest(line_id, arch, run, request):
    _, results, _ = line_results(line_id, request)
    check_percpu_ops(line_id, arch, run, results)


@pytest.mark.parametrize("line_id, protocol, run", [_param(line, protocol, run) for line in KERNEL_LINES
                                                    for protocol in PROTOCOLS for run in RUNS])
def test_protocols_in_guest(line_id, protocol, run, request):
    _, results, _ = line_results(line_id, request)
    check_protocol(_line_arches(line_id)[0], protocol, run, results)
