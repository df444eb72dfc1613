"""rseq-gen.pc: the pkg-config file the wheel ships (``rseq-gen
--pkgconfigdir``), and the other directories the CLI prints for build
systems. Run against the wheel installed into a venv (the rseq_env fixture).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, require_tool
from installed import clean_env, run

pytestmark = pytest.mark.xdist_group("pkgconfig")

DIR_FLAGS = ("--cmakedir", "--pkgconfigdir", "--aclocaldir")


def pkg_config(env_dir: Path, *args, check=True):
    return run([require_tool("pkg-config", "pkgconf"), *args, "rseq-gen"],
               env=clean_env(hide_rseq_gen=True, PKG_CONFIG_PATH=str(env_dir)), check=check)


@pytest.mark.parametrize("flag", DIR_FLAGS)
def test_dirs_from_source_tree_are_a_clear_error(flag):
    proc = run([sys.executable, "-m", "rseq_gen", flag],
               env=clean_env(PYTHONPATH=str(ROOT / "toolkit")), check=False)
    assert proc.returncode == 2, proc.stdout
    assert proc.stdout.count("\n") == 1, proc.stdout
    assert proc.stdout.startswith(f"rseq-gen: error: {flag}: ") and "source tree" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout


def test_the_wheel_ships_each_directory(rseq_env):
    package = rseq_env.package_dir
    assert rseq_env.cmakedir == package / "share" / "cmake" / "RseqGen"
    assert rseq_env.pkgconfigdir == package / "share" / "pkgconfig"
    assert rseq_env.aclocaldir == package / "share" / "aclocal"
    assert (rseq_env.pkgconfigdir / "rseq-gen.pc").is_file()
    for name in ("rseq-gen.m4", "rseq-gen.mk"):
        assert (rseq_env.aclocaldir / name).is_file(), name
    # Several flags: one line each, in the order of --help.
    out = run([rseq_env.rseq_gen, "--aclocaldir", "--pkgconfigdir"]).stdout.splitlines()
    assert out == [str(rseq_env.pkgconfigdir), str(rseq_env.aclocaldir)]


def test_pkg_config_answers(rseq_env):
    from rseq_gen import __version__

    pcdir = rseq_env.pkgconfigdir
    assert pkg_config(pcdir, "--modversion").stdout.strip() == __version__
    assert pkg_config(pcdir, f"--atleast-version={__version__}").returncode == 0
    assert pkg_config(pcdir, "--atleast-version=999", check=False).returncode != 0
    # A tool, not a library: nothing to compile or link with.
    assert pkg_config(pcdir, "--cflags", "--libs").stdout.strip() == ""

    tool = Path(pkg_config(pcdir, "--variable=rseq_gen").stdout.strip())
    assert tool.resolve() == rseq_env.rseq_gen.resolve()
    assert run([tool, "--version"]).stdout.strip() == f"rseq-gen {__version__}"
    for variable, expected in (("cmakedir", rseq_env.cmakedir), ("aclocaldir", rseq_env.aclocaldir),
                               ("templatedir", rseq_env.package_dir / "templates")):
        value = Path(pkg_config(pcdir, f"--variable={variable}").stdout.strip())
        assert value.resolve() == expected.resolve(), variable
        assert value.is_dir(), variable


def test_pc_file_is_relocatable(rseq_env, tmp_path):
    """Every path follows the file: the same .pc in another environment's
    layout (a user site: ~/.local/lib/pythonX.Y/site-packages) names that
    environment's rseq-gen."""
    moved = tmp_path / "home" / ".local"
    package = moved / "lib" / "python3.99" / "site-packages" / "rseq_gen"
    shutil.copytree(rseq_env.pkgconfigdir, package / "share" / "pkgconfig")
    (package / "share" / "cmake" / "RseqGen").mkdir(parents=True)
    (moved / "bin").mkdir()
    (moved / "bin" / "rseq-gen").write_text("#!/bin/sh\necho 'rseq-gen 0.1.0'\n")
    os.chmod(moved / "bin" / "rseq-gen", 0o755)
    pcdir = package / "share" / "pkgconfig"
    text = (pcdir / "rseq-gen.pc").read_text()
    assert str(rseq_env.venv) not in text, "an absolute path in rseq-gen.pc"
    tool = Path(pkg_config(pcdir, "--variable=rseq_gen").stdout.strip())
    assert tool.resolve() == (moved / "bin" / "rseq-gen").resolve()
    cmakedir = Path(pkg_config(pcdir, "--variable=cmakedir").stdout.strip())
    assert cmakedir.resolve() == (package / "share" / "cmake" / "RseqGen").resolve()
