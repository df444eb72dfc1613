"""examples/autotools-library built for real with autoconf, automake and
libtool, against the rseq-gen wheel installed into a venv: autoreconf with
the shipped rseq-gen.m4, an out-of-tree configure that finds rseq-gen
through rseq-gen.pc, `make check` (the program and the verify rule), a
no-op rebuild that runs nothing, the generated files equal to what the CLI
writes, regeneration when a template or an option changes, and bad options
or a wrong rseq-gen stopping configure.
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

pytestmark = pytest.mark.xdist_group("autotools")

EXAMPLE = ROOT / "examples" / "autotools-library"
PREFIX = "st"
OUTPUTS = (f"{PREFIX}_rseq.h", f"{PREFIX}_rseq.c", f"{PREFIX}_rseq.manifest.json")
#: What automake's silent rules print for a step that does work.
WORK = re.compile(r"^\s*(GEN|CC|CCLD)\s", re.M)


@pytest.fixture(scope="module")
def autotools() -> dict:
    tools = {name: require_tool(name, package) for name, package in (
        ("autoreconf", "autoconf"), ("automake", "automake"), ("libtoolize", "libtool"),
        ("pkg-config", "pkgconf"), ("make", "make"))}
    return tools


def env_for(rseq_env, **extra) -> dict:
    """rseq-gen only through its pkg-config file (PATH has none)."""
    return clean_env(hide_rseq_gen=True, PKG_CONFIG_PATH=str(rseq_env.pkgconfigdir), **extra)


@pytest.fixture(scope="module")
def source(autotools, rseq_env, tmp_path_factory) -> Path:
    """The example after `autoreconf -fi`, with aclocal finding rseq-gen.m4
    through ACLOCAL_PATH (and copying it into m4/)."""
    src = tmp_path_factory.mktemp("autotools") / "src"
    shutil.copytree(EXAMPLE, src)
    run([autotools["autoreconf"], "-fi"], cwd=src, env=env_for(rseq_env, ACLOCAL_PATH=str(rseq_env.aclocaldir)))
    assert (src / "m4" / "rseq-gen.m4").read_bytes() == (rseq_env.aclocaldir / "rseq-gen.m4").read_bytes()
    return src


def make(build: Path, *targets, env, check=True):
    return run(["make", "-j2", *targets], cwd=build, env=env, check=check)


def assert_noop(build: Path, env: dict):
    out = make(build, env=env).stdout
    assert not WORK.search(out), f"no-op build did work:\n{out}"


def test_autotools_library(source, rseq_env, tmp_path):
    from rseq_gen import __version__

    build = tmp_path / "build"
    build.mkdir()
    env = env_for(rseq_env)
    configure = source / "configure"

    # Out of tree, as make distcheck builds; rseq-gen found through pkg-config.
    out = run([configure], cwd=build, env=env).stdout
    assert re.search(r"checking for rseq-gen through pkg-config\.\.\. \S*/bin/rseq-gen", out), out
    assert "checking the version of " in out and f"... {__version__}" in out, out
    assert "checking the rseq-gen options of st... --arch x86_64 --protocol compat" in out, out

    # make check: the program, then the verify rule (the library against its
    # manifest, the test program's whole process).
    proc = make(build, "check", env=env, check=False)
    assert proc.returncode == 0, proc.stdout
    assert "PASS: stats-test" in proc.stdout, proc.stdout
    assert "libstats: 400000 events" in (build / "stats-test.log").read_text()
    assert re.search(r"verify --manifest st_rseq\.manifest\.json \./\.libs/libstats\.so\.1\b", proc.stdout), proc.stdout
    assert re.search(r"verify --closure stats-test", proc.stdout), proc.stdout
    summaries = re.findall(r"rseq-gen verify: \d+ file\(s\), (\d+) error\(s\)", proc.stdout)
    assert summaries and set(summaries) == {"0"} and len(summaries) == 2, proc.stdout

    # The library exports its API and nothing of the generated code.
    exported = dynsym_defined(build / ".libs" / "libstats.so.1")
    assert {"stats_count", "stats_total", "stats_cpus", "stats_rseq_owner"} <= exported, sorted(exported)
    assert not {s for s in exported if s.startswith(f"{PREFIX}_")}, sorted(exported)

    # The generated files are those the CLI writes for the same options.
    cli = tmp_path / "cli"
    origin = json.loads((build / OUTPUTS[2]).read_text())["origin"]
    assert Path(origin["file"]).name == "configure.ac", origin
    run([rseq_env.rseq_gen, "generate", "--protocol", "compat", "--prefix", PREFIX, "--output-dir", cli,
         "--manifest", cli / OUTPUTS[2], "--origin", origin["file"]], cwd=build)
    assert_same_as_cli(build, cli, PREFIX)

    # Nothing changed: nothing runs, also after configure ran again.
    header = build / OUTPUTS[0]
    mtime = header.stat().st_mtime_ns
    assert_noop(build, env)
    run([configure], cwd=build, env=env)
    assert_noop(build, env)
    assert header.stat().st_mtime_ns == mtime

    # A template of the installed rseq-gen changed (the depfile): regenerate.
    template = rseq_env.package_dir / "templates" / "rseq.h.j2"
    time.sleep(0.01)
    os.utime(template)
    out = make(build, env=env).stdout
    assert re.search(r"GEN\s+st_rseq\.h", out) and re.search(r"CCLD\s+libstats\.la", out), out
    assert_noop(build, env)

    # An option change (at configure) regenerates and rebuilds; check passes.
    run([configure, "--with-rseq-protocol=own"], cwd=build, env=env)
    out = make(build, env=env).stdout
    assert re.search(r"GEN\s+st_rseq\.h", out) and re.search(r"CCLD\s+libstats\.la", out), out
    assert json.loads((build / OUTPUTS[2]).read_text())["options"]["protocol"] == "own"
    assert_noop(build, env)
    proc = make(build, "check", env=env, check=False)
    assert proc.returncode == 0 and "PASS: stats-test" in proc.stdout, proc.stdout


def test_cross_build_generates_for_the_host(source, rseq_env, tmp_path):
    """configure --host=aarch64-linux-gnu: the code is generated for aarch64
    and the verify rule checks the aarch64 library and program."""
    require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    env = env_for(rseq_env)
    out = run([source / "configure", "--host=aarch64-linux-gnu"], cwd=tmp_path, env=env).stdout
    assert "checking the rseq-gen options of st... --arch aarch64 --protocol compat" in out, out
    make(tmp_path, env=env)
    make(tmp_path, "stats-test", env=env)
    assert json.loads((tmp_path / OUTPUTS[2]).read_text())["options"]["arches"] == ["aarch64"]
    from elftools.elf.elffile import ELFFile
    with open(tmp_path / ".libs" / "libstats.so.1", "rb") as f:
        assert ELFFile(f)["e_machine"] == "EM_AARCH64"
    # The library against its manifest (the closure of a cross program would
    # need the target's libc: not checked here).
    proc = make(tmp_path, "rseq-gen-verify", "RSEQ_GEN_VERIFY_CLOSURE=", env=env, check=False)
    summaries = re.findall(r"rseq-gen verify: \d+ file\(s\), (\d+) error\(s\)", proc.stdout)
    assert proc.returncode == 0 and summaries == ["0"], proc.stdout


def test_bad_protocol_stops_configure(source, rseq_env, tmp_path):
    proc = run([source / "configure", "--with-rseq-protocol=bogus"], cwd=tmp_path, env=env_for(rseq_env),
               check=False)
    assert proc.returncode != 0, proc.stdout
    assert re.search(r"configure: error: rseq-gen generate: error: --protocol: unknown protocol 'bogus'", proc.stdout), proc.stdout
    assert not (tmp_path / "Makefile").exists()


@pytest.mark.parametrize("prefix,stage,message", [
    pytest.param("2st", "autoreconf", "RSEQ_GEN_MODULE: the prefix '2st' is not a C identifier", id="not-c"),
    pytest.param("rseq", "configure", "configure: error: rseq-gen generate: error: --prefix: 'rseq' would collide with librseq",
                 id="reserved"),
])
def test_bad_prefix_stops_autoreconf_or_configure(prefix, stage, message, autotools, rseq_env, tmp_path):
    """RSEQ_GEN_MODULE's prefix is known when autoconf runs: one that is no
    C identifier stops autoreconf; rseq-gen's own checks of the prefix (a
    name another adopter's API owns) stop configure."""
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src)
    text = (src / "configure.ac").read_text()
    assert "RSEQ_GEN_MODULE([st]," in text
    (src / "configure.ac").write_text(text.replace("RSEQ_GEN_MODULE([st],", f"RSEQ_GEN_MODULE([{prefix}],"))
    env = env_for(rseq_env, ACLOCAL_PATH=str(rseq_env.aclocaldir))
    proc = run([autotools["autoreconf"], "-fi"], cwd=src, check=False, env=env)
    if stage == "configure":
        assert proc.returncode == 0, proc.stdout
        proc = run([src / "configure"], cwd=src, check=False, env=env)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stdout, proc.stdout
    assert not (src / "Makefile").exists()


def test_rseq_gen_missing_or_too_old_stops_configure(source, rseq_env, tmp_path):
    env = clean_env(hide_rseq_gen=True)  # neither on PATH nor through pkg-config
    proc = run([source / "configure"], cwd=tmp_path, env=env, check=False)
    assert proc.returncode != 0 and "configure: error: rseq-gen not found" in proc.stdout, proc.stdout

    old = tmp_path / "bin" / "rseq-gen"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'rseq-gen 0.0.9'\n")
    old.chmod(0o755)
    proc = run([source / "configure", f"RSEQ_GEN={old}"], cwd=tmp_path, env=env, check=False)
    assert proc.returncode != 0, proc.stdout
    assert f"configure: error: {old} is version 0.0.9; this package needs rseq-gen 0.1 or newer" in proc.stdout, proc.stdout
