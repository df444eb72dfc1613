"""rseq-gen as a user installs it: the wheel, built from a copy of this
source tree and installed into a venv, with the files it ships for build
systems (the CMake package, rseq-gen.pc, rseq-gen.m4 and rseq-gen.mk).

The build-system tests (test_cmake, test_pkgconfig, test_meson,
test_autotools) share one such venv per pytest worker through the
``rseq_env`` fixture of conftest.py. Per worker, not per run: some tests touch
a template of the venv to check that builds regenerate, which would upset a
no-op check running at the same moment on another worker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Environment variables that would make a tool find something other than
#: what a test gives it.
_FOREIGN = ("PYTHONPATH", "PYTHONHOME", "CMAKE_GENERATOR", "CMAKE_PREFIX_PATH", "RseqGen_DIR",
            "RseqGen_ROOT", "CC", "CXX", "MAKEFLAGS", "MFLAGS", "PKG_CONFIG_PATH", "ACLOCAL_PATH",
            "RSEQ_GEN", "CFLAGS", "LDFLAGS", "MESON_BUILD_ROOT")


def path_without_rseq_gen(path: str | None = None) -> str:
    """PATH less every directory that holds a rseq-gen (CI pip-installs one
    into the system): a test that finds the tool through pkg-config, or
    passes it explicitly, then cannot pick up another one by accident."""
    dirs = (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not (Path(d) / "rseq-gen").exists())


def clean_env(*, hide_rseq_gen: bool = False, **extra) -> dict:
    """The environment for every build-tool run: no PYTHONPATH (it would make
    the venv's Python import rseq_gen from the source tree instead of the
    installed wheel), no inherited build settings. ``hide_rseq_gen``: no
    rseq-gen on PATH either (for tests of how a build system finds it; the
    tools they run are then given by absolute path)."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    if hide_rseq_gen:
        env["PATH"] = path_without_rseq_gen(env.get("PATH"))
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = "2"
    env.update(extra)
    return env


def run(cmd, *, cwd=None, env=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    """Run a command (stdout and stderr together); a failure shows its output."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}")
    return proc


@dataclass
class RseqEnv:
    venv: Path
    python: Path
    rseq_gen: Path
    cmakedir: Path
    pkgconfigdir: Path
    aclocaldir: Path
    package_dir: Path
    wheel: Path

    @property
    def bindir(self) -> Path:
        return self.rseq_gen.parent


def install_wheel(base: Path) -> RseqEnv:
    """Build the rseq-gen wheel from a copy of the source tree (so no build
    files land in the checkout) and install it into a venv under ``base``."""
    try:
        import scikit_build_core  # noqa: F401
    except ImportError:
        pytest.fail("scikit-build-core not found: pip install 'scikit-build-core>=0.11'")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("CMakeLists.txt", "pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    if not (src / "README.md").exists():  # pyproject's readme must exist
        (src / "README.md").write_text("# rseq-gen\n")
    for name in ("toolkit", "templates", "cmake", "pkgconfig", "autotools"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    dist = base / "dist"
    proc = run([sys.executable, "-c",
                "import sys; from scikit_build_core.build import build_wheel; "
                "print(build_wheel(sys.argv[1]))", dist], cwd=src, check=False)
    if proc.returncode != 0:
        pytest.fail(f"building the rseq-gen wheel failed:\n{proc.stdout}")
    wheel = dist / proc.stdout.strip().splitlines()[-1]
    assert wheel.is_file(), proc.stdout

    venv = base / "venv"
    # System site-packages supply jinja2, pyelftools and scikit-build-core;
    # the venv's own site-packages (our wheel) come first.
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv])
    python = venv / "bin" / "python"
    # --ignore-installed: an rseq-gen already in the system site-packages (CI
    # installs one) must not stand in for the wheel under test.
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--no-index", "--ignore-installed", "--disable-pip-version-check", wheel])
    rseq_gen = venv / "bin" / "rseq-gen"
    assert rseq_gen.exists(), "the wheel did not install the rseq-gen script"
    dirs = run([rseq_gen, "--cmakedir", "--pkgconfigdir", "--aclocaldir"]).stdout.split("\n")
    package_dir = Path(run([python, "-c", "import os, rseq_gen; print(os.path.dirname(rseq_gen.__file__))"],
                           cwd=base).stdout.strip())
    assert package_dir.is_relative_to(venv), f"venv imports rseq_gen from {package_dir}"
    return RseqEnv(venv, python, rseq_gen, Path(dirs[0]), Path(dirs[1]), Path(dirs[2]),
                   package_dir, wheel)


# ---- what the build-system tests check ---------------------------------------

def assert_same_as_cli(build: Path, cli: Path, prefix: str):
    """A build system's generated files equal those ``rseq-gen generate``
    wrote into ``cli`` for the same options: the header and the source byte
    for byte, the manifest up to the output directory it records."""
    for suffix in ("_rseq.h", "_rseq.c"):
        name = prefix + suffix
        assert (build / name).read_bytes() == (cli / name).read_bytes(), name
    name = f"{prefix}_rseq.manifest.json"
    built, expected = (json.loads((d / name).read_text()) for d in (build, cli))
    assert Path(built.pop("output_dir")).resolve() == build.resolve()
    expected.pop("output_dir")
    assert built == expected


def dynsym_defined(path: Path) -> set:
    """The names a shared object exports."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        dynsym = ELFFile(f).get_section_by_name(".dynsym")
        return {s.name for s in dynsym.iter_symbols() if s["st_shndx"] != "SHN_UNDEF"}
