"""Shared fixtures: run rseq-gen, generate code, find the tools a test needs.

Tests never skip for a missing tool: .ci/run installs everything, and a
missing tool is a failure that says what to install.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent

try:  # the installed package (CI: pip install .[test])
    import rseq_gen  # noqa: F401
except ImportError:  # a source checkout: use toolkit/ directly
    sys.path.insert(0, str(ROOT / "toolkit"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "toolkit"), os.environ.get("PYTHONPATH")) if p)

RSEQ_GEN = [sys.executable, "-m", "rseq_gen"]


#: Debian's ccache puts a gcc/g++/clang/cross-gcc of its own here.
CCACHE_MASQUERADE = Path("/usr/lib/ccache")


def pytest_cmdline_main(config):
    """One temporary directory per checkout, the same every run (unless
    --basetemp names another), instead of a new numbered one: ccache hashes
    a source's path (relative to the working directory, which may be outside
    /tmp), so with pytest-<N> in every path a warm run missed for most
    generated sources (test_portability.py: 41 s -> 22 s once hits). Runs of
    one checkout share it, so two at once would clobber each other's files,
    as they would the pytest cache. Set before pytest_configure, where the
    tmp_path plugin reads it; pytest-xdist workers get a subdirectory of it."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        import hashlib
        import tempfile

        tag = hashlib.sha256(str(config.rootpath).encode()).hexdigest()[:8]
        config.option.basetemp = str(Path(tempfile.gettempdir()) / f"rseq-gen-tests-{tag}")
    return None


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Compilers run through ccache, its cache in the pytest cache: a warm
    run recompiles only what changed. Sound for the warning checks too: a
    hit replays the compiler's stderr. The generated sources are rewritten
    by every run (at the same paths: pytest_cmdline_main), hence the mtime
    sloppiness, and the base directory (absolute paths under /tmp
    are hashed relative to the working directory)."""
    if not CCACHE_MASQUERADE.is_dir() or getattr(config, "cache", None) is None or os.environ.get("RSEQ_GEN_NO_CCACHE"):
        return
    os.environ["PATH"] = f"{CCACHE_MASQUERADE}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("CCACHE_DIR", str(config.cache.mkdir("ccache")))
    os.environ.setdefault("CCACHE_BASEDIR", "/tmp")
    os.environ.setdefault("CCACHE_NOHASHDIR", "1")
    os.environ.setdefault("CCACHE_SLOPPINESS", "include_file_mtime,include_file_ctime,time_macros")
    os.environ.setdefault("CCACHE_MAXSIZE", "2G")


def pytest_sessionstart(session):
    """The preflight (tests/helpers/toolchains.py): every toolchain the suite uses
    builds and runs a program before any test starts; otherwise the run
    stops with one line per missing package. It runs once, in the process
    that schedules the tests (not again in each pytest-xdist worker)."""
    config = session.config
    if hasattr(config, "workerinput") or config.getoption("collectonly"):
        return
    import tempfile

    from helpers.toolchains import preflight

    with tempfile.TemporaryDirectory(prefix="rseq-gen-preflight-") as tmp:
        problems = preflight(Path(tmp))
    if problems:
        pytest.exit("preflight: the machine lacks what the tests need "
                    "(.ci/apt-packages.txt and the test extra install it):\n  "
                    + "\n  ".join(problems), returncode=3)


# ---- builds that a compiler cache can serve ----------------------------------

_SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".S", ".s")
_COMPILERS = ("gcc", "g++", "clang", "clang++", "cc", "c++", "musl-gcc")
#: Options that only the link step takes (a value joined or as the next word).
_LINK_ONLY = ("-l", "-L", "-Wl,", "-fuse-ld=")
_LINK_ONLY_WORDS = {"-static", "-shared", "-rdynamic", "-pie", "-no-pie", "-static-pie", "-nostdlib"}
_TAKES_VALUE = {"-o", "-I", "-L", "-B", "-isystem", "-include", "-target", "-MF", "-l"}


def _is_compiler(word: str) -> bool:
    name = os.path.basename(word)
    return name in _COMPILERS or name.endswith(("-gcc", "-g++")) or name.startswith(("clang-", "gcc-"))


def split_build(cmd: list) -> list[list[str]] | None:
    """A compile-and-link command (``cc FLAGS a.c b.c -o prog``) as one
    ``-c`` compile per source, then the link: ccache caches single-source
    compiles only. None where the command is not of that shape."""
    cmd = [str(c) for c in cmd]
    if not cmd or not _is_compiler(cmd[0]) or {"-c", "-E", "-S", "-x", "-M", "-MM"} & set(cmd):
        return None
    sources, out, compile_flags, i = [], None, [], 1
    while i < len(cmd):
        word = cmd[i]
        value = cmd[i + 1] if word in _TAKES_VALUE and i + 1 < len(cmd) else None
        if word == "-o":
            out = value
        elif word.endswith(_SOURCE_SUFFIXES) and not word.startswith("-"):
            sources.append(i)
        elif word in _LINK_ONLY_WORDS or (word.startswith(_LINK_ONLY) and value is None):
            pass
        elif word in ("-L", "-l"):
            pass
        else:
            compile_flags += [word] + ([value] if value is not None else [])
        i += 2 if value is not None else 1
    if out is None or not sources:
        return None
    objdir = Path(out).parent / f".{Path(out).name}.objs"
    steps, link = [], list(cmd)
    for n, index in enumerate(sources):
        obj = objdir / f"{n}-{Path(cmd[index]).stem}.o"
        steps.append([cmd[0], *compile_flags, "-c", cmd[index], "-o", str(obj)])
        link[index] = str(obj)
    return [*steps, link]


def run_build(cmd: list, cwd=None, **kw) -> subprocess.CompletedProcess:
    """Run a compiler command as split_build() splits it (each source
    through the compiler cache, then the link), or as it is. One result:
    the first failing step's exit status, every step's output."""
    steps = split_build(cmd) or [[str(c) for c in cmd]]
    if len(steps) > 1:
        (Path(cwd or ".") / Path(steps[0][-1]).parent).mkdir(parents=True, exist_ok=True)
    stdout, stderr = [], []
    for step in steps:
        proc = subprocess.run(step, cwd=cwd, capture_output=True, text=True, **kw)
        stdout.append(proc.stdout)
        stderr.append(proc.stderr)
        if proc.returncode != 0:
            break
    return subprocess.CompletedProcess([str(c) for c in cmd], proc.returncode, "".join(stdout), "".join(stderr))


def require_tool(name: str, package: str | None = None) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install {package or name} (.ci/run installs it)")
    return path


def run_rseq_gen(*args, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([*RSEQ_GEN, *map(str, args)], capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"rseq-gen {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def generate(outdir: Path, protocol: str = "compat", prefix: str = "rseqgen", *extra) -> Path:
    """Run ``rseq-gen generate`` into outdir (with a manifest) and return outdir."""
    outdir = Path(outdir)
    run_rseq_gen("generate", "--protocol", protocol, "--prefix", prefix, "--output-dir", outdir,
                 "--manifest", outdir / f"{prefix}_rseq.manifest.json", *extra)
    return outdir


@pytest.fixture
def gen(tmp_path):
    """``gen(protocol, prefix, *extra_args)`` -> output directory."""
    counter = iter(range(1000))

    def _gen(protocol="compat", prefix="rseqgen", *extra):
        return generate(tmp_path / f"gen{next(counter)}", protocol, prefix, *extra)

    return _gen


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on ``path`` (created if missing): what the
    pytest-xdist workers share is built by one of them while the others
    wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def session_shared_dir(tmp_path_factory) -> Path:
    """A directory every pytest-xdist worker of this run shares (the parent
    of each worker's basetemp); the basetemp itself without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def matrix_builds(tmp_path_factory):
    """``get(protocol, cc, glibc=None)`` -> the tests/test_matrix.py builds
    of that protocol (against ``glibc``'s sysroot, a tests/helpers/glibcs.py Glibc;
    None: the host's), shared by every test module and xdist worker."""
    from test_matrix import MatrixBuild

    root = session_shared_dir(tmp_path_factory) / "matrix-builds"
    cache: dict[tuple, MatrixBuild] = {}

    def get(protocol, cc, glibc=None):
        key = (protocol, cc, glibc)
        if key not in cache:
            cache[key] = MatrixBuild(root / protocol, protocol, cc, glibc)
        return cache[key]

    return get


# ---- rseq-gen installed from its wheel (tests/helpers/installed.py) --------------------

@pytest.fixture(scope="session")
def rseq_env(tmp_path_factory):
    """The rseq-gen wheel built from this tree and installed into a venv,
    once per worker, for the build-system tests (CMake, pkg-config, Meson,
    autotools)."""
    from helpers.installed import install_wheel

    return install_wheel(tmp_path_factory.mktemp("rseq_wheel"))


# ---- the Linux 7.x guest (tests/helpers/guest.py) -----------------------------------

@pytest.fixture(scope="session")
def guest_results(request, tmp_path_factory):
    """Builds the guest programs of every module with a selected test using
    this fixture, boots Debian sid's 7.x kernel once with all of them, and
    returns their results by program name (a lookup fails the test with one
    line when the guest cannot run)."""
    from helpers import guest

    modules = {item.module.__name__ for item in request.session.items
               if "guest_results" in getattr(item, "fixturenames", ())}
    workdir = tmp_path_factory.mktemp("guest")
    cache = guest.KernelCache(request.config.cache.mkdir("rseq-gen-kernel7"))
    vm = guest.Guest(cache, workdir / "vm")
    image = results = error = None
    try:
        vm.tools()
        image = vm.image()
        programs = []
        for name, (module, builder) in sorted(guest.BUILDERS.items()):
            if module in modules:
                out = workdir / name
                out.mkdir()
                programs += list(builder(out))
        results = vm.run(programs)
    except guest.GuestError as exc:
        error = str(exc)
    _record_boots(request.config, tmp_path_factory, vm.boots)
    return guest.GuestResults(results, error, image, vm.boots)


def _boot_record_dir(config, tmp_path_factory) -> Path:
    """Where boots are recorded for the terminal summary (the controller's
    base temporary directory holds the workers')."""
    if hasattr(config, "workerinput"):
        return session_shared_dir(tmp_path_factory) / "guest-boots"
    return tmp_path_factory.getbasetemp() / "guest-boots"


def _record_boots(config, tmp_path_factory, boots) -> None:
    import dataclasses
    import json

    out = _boot_record_dir(config, tmp_path_factory)
    out.mkdir(exist_ok=True)
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    (out / f"{worker}.json").write_text(json.dumps([dataclasses.asdict(b) for b in boots]))


def pytest_terminal_summary(terminalreporter, config):
    """How long the guest took (boot + programs), for the record."""
    import json

    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None or hasattr(config, "workerinput"):
        return
    directory = _boot_record_dir(config, factory)
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        for b in json.loads(path.read_text()):
            boot = SimpleNamespace(**b)
            terminalreporter.write_line(
                f"guest: {boot.release}, {boot.programs} programs, {boot.seconds:.1f} s (boot to "
                f"/init {boot.boot_seconds:.1f} s, programs {boot.program_seconds:.1f} s in guest "
                f"time; slowest: {', '.join(f'{n} {s:.1f} s' for n, s in boot.slowest)})")
