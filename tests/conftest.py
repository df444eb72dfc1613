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

import pytest

ROOT = Path(__file__).resolve().parent.parent

try:  # the installed package (CI: pip install .[test])
    import rseq_gen  # noqa: F401
except ImportError:  # a source checkout: use toolkit/ directly
    sys.path.insert(0, str(ROOT / "toolkit"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "toolkit"), os.environ.get("PYTHONPATH")) if p)

RSEQ_GEN = [sys.executable, "-m", "rseq_gen"]


def pytest_sessionstart(session):
    """The preflight (tests/toolchains.py): every toolchain the suite uses
    builds and runs a program before any test starts; otherwise the run
    stops with one line per missing package. It runs once, in the process
    that schedules the tests (not again in each pytest-xdist worker)."""
    config = session.config
    if hasattr(config, "workerinput") or config.getoption("collectonly"):
        return
    import tempfile

    from toolchains import preflight

    with tempfile.TemporaryDirectory(prefix="rseq-gen-preflight-") as tmp:
        problems = preflight(Path(tmp))
    if problems:
        pytest.exit("preflight: the machine lacks what the tests need "
                    "(.ci/apt-packages.txt and the test extra install it):\n  "
                    + "\n  ".join(problems), returncode=3)


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
    of that protocol (against ``glibc``'s sysroot, a tests/glibcs.py Glibc;
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
