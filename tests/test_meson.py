"""examples/meson-library built for real with Meson and Ninja, against the
rseq-gen wheel installed into a venv (found through its rseq-gen.pc):
setup, build, `meson test` (the program and both verify tests), a no-op
rebuild that runs nothing, the generated files equal to what the CLI writes,
regeneration when a template or an option changes, and bad options stopping
`meson setup`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT, require_tool
from helpers.installed import assert_same_as_cli, clean_env, dynsym_defined, run

pytestmark = pytest.mark.xdist_group("meson")

EXAMPLE = ROOT / "examples" / "meson-library"
PREFIX = "st"
OUTPUTS = (f"{PREFIX}_rseq.h", f"{PREFIX}_rseq.c", f"{PREFIX}_rseq.manifest.json")


@pytest.fixture(scope="module")
def meson() -> str:
    return require_tool("meson", "meson (pip install meson: the test extra)")


@pytest.fixture(scope="module")
def ninja(tmp_path_factory) -> str:
    """Ninja, alone in a directory of its own: Meson looks for it on PATH,
    and the directory pip put it in may also hold an installed rseq-gen
    (CI's), which these tests must not find."""
    try:
        import ninja as ninja_pkg  # pip's ninja (the test extra)
        found = str(Path(ninja_pkg.BIN_DIR) / "ninja")
    except ImportError:
        found = require_tool("ninja", "ninja (pip install ninja: the test extra)")
    link = tmp_path_factory.mktemp("ninja-bin") / "ninja"
    link.symlink_to(found)
    return str(link)


def meson_env(rseq_env, ninja, **extra) -> dict:
    """rseq-gen only through its pkg-config file; Meson's Ninja on PATH."""
    env = clean_env(hide_rseq_gen=True, PKG_CONFIG_PATH=str(rseq_env.pkgconfigdir), **extra)
    env["PATH"] = os.pathsep.join((str(Path(ninja).parent), env["PATH"]))
    return env


def copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build", "build-*"))
    return dest


def assert_noop(ninja: str, build: Path, env: dict):
    out = run([ninja, "-C", build, "-n", "-d", "explain"], env=env).stdout
    assert "no work to do" in out and "explain:" not in out, f"not a no-op:\n{out}"
    out = run([ninja, "-C", build], env=env).stdout
    assert "no work to do" in out and not re.search(r"\[\d+/\d+\]", out), f"no-op build did work:\n{out}"


def test_meson_library(meson, ninja, rseq_env, tmp_path):
    from rseq_gen import __version__

    src = copy_example(tmp_path / "src")
    build = tmp_path / "build"
    env = meson_env(rseq_env, ninja)

    out = run([meson, "setup", build, src], env=env).stdout
    assert f"Run-time dependency rseq-gen found: YES {__version__}" in out, out
    assert str(rseq_env.pkgconfigdir) in out, f"rseq-gen was not found through rseq-gen.pc:\n{out}"

    # Build and test: the program counts right, both verify tests pass.
    proc = run([meson, "test", "-C", build, "--print-errorlogs"], env=env, check=False)
    assert proc.returncode == 0, proc.stdout
    for name in ("stats-test", "rseq-gen verify libstats", "rseq-gen verify closure"):
        assert re.search(rf"{re.escape(name)}\s+OK", proc.stdout), f"{name}:\n{proc.stdout}"
    log = (build / "meson-logs" / "testlog.txt").read_text()
    assert "libstats: 400000 events" in log and "\nOK\n" in log, log
    assert re.search(r"rseq-gen verify: 1 file\(s\), 0 error\(s\)", log), log

    # The library exports its API and nothing of the generated code.
    exported = dynsym_defined(build / "libstats.so.1.0")
    assert {"stats_count", "stats_total", "stats_cpus", "stats_rseq_owner"} <= exported, sorted(exported)
    assert not {s for s in exported if s.startswith(f"{PREFIX}_")}, sorted(exported)

    # The generated files are those the CLI writes for the same options.
    cli = tmp_path / "cli"
    run([rseq_env.rseq_gen, "generate", "--protocol", "compat", "--prefix", PREFIX, "--output-dir", cli,
         "--manifest", cli / OUTPUTS[2], "--origin", src / "meson.build"])
    assert_same_as_cli(build, cli, PREFIX)

    # Nothing changed: nothing runs, also after a reconfigure.
    header = build / OUTPUTS[0]
    mtime = header.stat().st_mtime_ns
    assert_noop(ninja, build, env)
    run([meson, "setup", "--reconfigure", build, src], env=env)
    assert_noop(ninja, build, env)
    assert header.stat().st_mtime_ns == mtime

    # A template of the installed rseq-gen changed (the depfile): regenerate.
    template = rseq_env.package_dir / "templates" / "rseq.h.j2"
    time.sleep(0.01)
    os.utime(template)
    out = run([ninja, "-C", build], env=env).stdout
    assert "Generating st_rseq" in out, out
    assert_noop(ninja, build, env)

    # An option change regenerates and rebuilds; the test still passes.
    run([meson, "configure", build, "-Drseq_protocol=own"], env=env)
    out = run([ninja, "-C", build], env=env).stdout
    assert "Generating st_rseq" in out and "Linking target libstats" in out, out
    manifest = json.loads((build / OUTPUTS[2]).read_text())
    assert manifest["options"]["protocol"] == "own"
    assert_noop(ninja, build, env)
    proc = run([meson, "test", "-C", build, "--print-errorlogs"], env=env, check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("setting,message", [
    pytest.param("-Drseq_protocol=bogus", "unknown protocol 'bogus'", id="protocol"),
    pytest.param("prefix=2st", "'2st' is not a C identifier", id="prefix"),
    pytest.param("prefix=rseq", "'rseq' would collide with librseq", id="reserved-prefix"),
])
def test_bad_option_stops_meson_setup(setting, message, meson, ninja, rseq_env, tmp_path):
    src = copy_example(tmp_path / "src")
    args = []
    if setting.startswith("prefix="):
        text = (src / "meson.build").read_text()
        assert "rseq_prefix = 'st'" in text
        (src / "meson.build").write_text(text.replace("rseq_prefix = 'st'", f"rseq_prefix = '{setting[7:]}'"))
    else:
        args.append(setting)
    build = tmp_path / "build"
    proc = run([meson, "setup", build, src, *args], env=meson_env(rseq_env, ninja), check=False)
    assert proc.returncode != 0, proc.stdout
    assert re.search(rf"ERROR: .*rseq-gen generate: error: .*{re.escape(message)}", proc.stdout), proc.stdout
    assert not (build / "build.ninja").exists()


def test_rseq_gen_on_path_or_nowhere(meson, ninja, rseq_env, tmp_path):
    """Without rseq-gen.pc: rseq-gen on PATH (its version checked by
    Meson); with neither, setup stops naming the program."""
    from rseq_gen import __version__

    src = copy_example(tmp_path / "src")
    env = meson_env(rseq_env, ninja)
    del env["PKG_CONFIG_PATH"]
    nowhere = run([meson, "setup", tmp_path / "b1", src], env=env, check=False)
    assert nowhere.returncode != 0 and re.search(r"Program 'rseq-gen' not found", nowhere.stdout), nowhere.stdout

    env["PATH"] = os.pathsep.join((str(rseq_env.bindir), env["PATH"]))
    out = run([meson, "setup", tmp_path / "b2", src], env=env).stdout
    assert re.search(rf"Program rseq-gen found: YES .*{re.escape(__version__)}.*{re.escape(str(rseq_env.bindir))}",
                     out), out


def test_cross_build_generates_for_the_host_machine(meson, ninja, rseq_env, tmp_path):
    """A cross file for aarch64: the code is generated for aarch64 (Meson's
    host machine), rseq-gen still runs on the build machine, and `meson
    test` runs the program under qemu (the cross file's exe_wrapper)."""
    cc = require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    qemu = require_tool("qemu-aarch64", "qemu-user")
    cross = tmp_path / "aarch64.ini"
    cross.write_text(f"""[binaries]
c = '{cc}'
strip = 'aarch64-linux-gnu-strip'
exe_wrapper = ['{qemu}', '-L', '/usr/aarch64-linux-gnu']

[host_machine]
system = 'linux'
cpu_family = 'aarch64'
cpu = 'aarch64'
endian = 'little'
""")
    src = copy_example(tmp_path / "src")
    build = tmp_path / "build"
    env = meson_env(rseq_env, ninja)
    # Cross builds take the build machine's pkg-config path from an option,
    # not from PKG_CONFIG_PATH.
    out = run([meson, "setup", "--cross-file", cross, f"-Dbuild.pkg_config_path={rseq_env.pkgconfigdir}",
               build, src], env=env).stdout
    assert "Build-time dependency rseq-gen found: YES" in out, out
    proc = run([meson, "test", "-C", build, "--print-errorlogs", "stats-test", "rseq-gen verify closure"],
               env=env, check=False)
    assert proc.returncode == 0, proc.stdout
    assert "libstats: 400000 events" in (build / "meson-logs" / "testlog.txt").read_text()
    assert json.loads((build / OUTPUTS[2]).read_text())["options"]["arches"] == ["aarch64"]
    from elftools.elf.elffile import ELFFile
    with open(build / "libstats.so.1.0", "rb") as f:
        assert ELFFile(f)["e_machine"] == "EM_AARCH64"
