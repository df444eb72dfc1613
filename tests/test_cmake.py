"""The CMake package, built for real: the rseq-gen wheel is built once per
session and installed into a venv; the examples and the fixture projects under
tests/fixtures/cmake are configured and built in temp dirs with CMake 3.20
(pip's cmake==3.20.*) and the newest CMake (pip's cmake), with Ninja and Unix
Makefiles.

Each build scenario checks what a user would see: a fresh build that runs, a
no-op rebuild that runs nothing, an option change that regenerates, and a
broken variant that rseq_gen_verify turns into a failed build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT, require_tool
from installed import RseqEnv, clean_env, run  # the rseq_env fixture: conftest.py
from rseq_gen.protocols import PROTOCOLS


# Its tests share one module-wide build: keep them on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("cmake")

EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "fixtures" / "cmake"
BUILD_TYPE = "RelWithDebInfo"
NINJA = "Ninja"
MAKE = "Unix Makefiles"


# ---- helpers ---------------------------------------------------------------

def cmake_version(cmake: str) -> tuple[int, ...]:
    out = run([cmake, "--version"]).stdout
    m = re.search(r"cmake version (\d+)\.(\d+)\.(\d+)", out)
    assert m, out
    return tuple(int(x) for x in m.groups())


# ---- session fixtures: tools, the wheel, the venv ------------------------------

@dataclass
class Tools:
    cmakes: dict = field(default_factory=dict)   # "3.20" / "newest" -> path
    ninja: str = ""
    make: str = ""


@pytest.fixture(scope="session")
def tools() -> Tools:
    t = Tools()
    t.make = require_tool("make")
    try:
        import ninja as ninja_pkg  # pip's ninja (the [test] extra)
        t.ninja = str(Path(ninja_pkg.BIN_DIR) / "ninja")
    except ImportError:
        t.ninja = require_tool("ninja", "ninja (pip install ninja)")
    try:
        import cmake as cmake_pkg  # pip's cmake: the newest release
        newest = str(Path(cmake_pkg.CMAKE_BIN_DIR) / "cmake")
    except ImportError:
        newest = require_tool("cmake", "cmake (pip install cmake)")
    t.cmakes["newest"] = newest

    # CMake 3.20, the oldest supported, from PyPI into a venv of its own. The
    # venv is kept between sessions (RSEQ_GEN_TEST_CACHE, default
    # ~/.cache/rseq-gen-tests) and remade when it does not answer 3.20.
    cache = Path(os.environ.get("RSEQ_GEN_TEST_CACHE", Path.home() / ".cache" / "rseq-gen-tests"))
    venv = cache / "cmake-3.20"
    cmake320 = venv / "bin" / "cmake"
    if not (cmake320.exists() and b"cmake version 3.20." in subprocess.run(
            [cmake320, "--version"], capture_output=True, env=clean_env()).stdout):
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "venv", "--without-pip", venv])
        proc = run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
                    "--quiet", "--disable-pip-version-check", "cmake==3.20.*"], check=False)
        if proc.returncode != 0 or not cmake320.exists():
            pytest.fail("could not pip install cmake==3.20.* (PyPI must be reachable):\n" + proc.stdout)
    assert cmake_version(str(cmake320))[:2] == (3, 20)
    assert cmake_version(newest) > (3, 20, 99), f"{newest} is not newer than 3.20"
    t.cmakes["3.20"] = str(cmake320)
    return t


@pytest.fixture(scope="session")
def verify_available(rseq_env):
    """rseq_gen_verify runs `rseq-gen verify`: the build tests need it."""
    proc = run([rseq_env.rseq_gen, "verify", "--help"], check=False)
    if proc.returncode != 0:
        pytest.fail("`rseq-gen verify` is not available in this rseq-gen (issue 3); "
                    f"rseq_gen_verify needs it:\n{proc.stdout}")


# ---- a CMake build directory -------------------------------------------------

class Build:
    def __init__(self, tools: Tools, rseq_env: RseqEnv, version: str, generator: str,
                 source: Path, binary: Path, env: dict | None = None):
        self.cmake = tools.cmakes[version]
        self.ctest = str(Path(self.cmake).with_name("ctest"))
        self.generator = generator
        self.tools = tools
        self.rseq_env = rseq_env
        self.source = source
        self.binary = binary
        self.env = env or clean_env()

    def configure(self, *defs: str, check=True, find="RseqGen_DIR",
                  build_type=BUILD_TYPE) -> subprocess.CompletedProcess:
        args = [self.cmake, "-S", self.source, "-B", self.binary, "-G", self.generator]
        if build_type is not None:
            args.append(f"-DCMAKE_BUILD_TYPE={build_type}")
        if self.generator == NINJA:
            args.append(f"-DCMAKE_MAKE_PROGRAM={self.tools.ninja}")
        if find == "RseqGen_DIR":
            args.append(f"-DRseqGen_DIR={self.rseq_env.cmakedir}")
        args += [f"-D{d}" for d in defs]
        return run(args, env=self.env, check=check)

    def build(self, check=True) -> subprocess.CompletedProcess:
        return run([self.cmake, "--build", self.binary], env=self.env, check=check)

    def assert_noop(self):
        """A rebuild that runs nothing at all."""
        if self.generator == NINJA:
            out = run([self.tools.ninja, "-C", self.binary, "-n", "-d", "explain"], env=self.env).stdout
            assert "no work to do" in out and "explain:" not in out, f"not a no-op:\n{out}"
        out = self.build().stdout
        busy = [ln for ln in out.splitlines()
                if re.search(r"Building|Linking|rseq-gen:|Generating|Re-running CMake", ln)]
        assert not busy, f"no-op rebuild did work:\n{out}"


def assert_verified(out: str, *targets: str):
    """Each target's POST_BUILD verification ran: its COMMENT, or (Ninja with
    older CMake does not print POST_BUILD comments) a verify summary line each."""
    if all(f"rseq-gen: verifying {t}" in out for t in targets):
        return
    assert out.count("rseq-gen verify: ") >= len(targets), f"verification of {targets} did not run:\n{out}"


def matrix():
    return [pytest.param(v, g, id=f"cmake{v}-{g.split()[-1].lower()}")
            for v in ("3.20", "newest") for g in (NINJA, MAKE)]


def copy_project(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("build", "build-*", "__pycache__"))
    return dest


# ---- the package itself ------------------------------------------------------

def test_cmakedir_from_source_tree_is_a_clear_error():
    proc = run([sys.executable, "-m", "rseq_gen", "--cmakedir"],
               env=clean_env(PYTHONPATH=str(ROOT / "toolkit")), check=False)
    assert proc.returncode == 2, proc.stdout
    assert "source tree" in proc.stdout and "install" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout


def test_wheel_carries_the_config_package(rseq_env):
    d = rseq_env.cmakedir
    assert d == rseq_env.package_dir / "share" / "cmake" / "RseqGen"
    for name in ("RseqGenConfig.cmake", "RseqGenConfigVersion.cmake", "RseqGenTables.cmake",
                 "RseqGenGenerate.cmake", "RseqGenVerify.cmake"):
        assert (d / name).is_file(), name
    version_file = (d / "RseqGenConfigVersion.cmake").read_text()
    assert 'set(PACKAGE_VERSION "0.1.0")' in version_file or "0.1.0" in version_file
    assert "CMAKE_SIZEOF_VOID_P" not in version_file, "version file is not ARCH_INDEPENDENT"
    config = (d / "RseqGenConfig.cmake").read_text()
    assert "include_guard(GLOBAL)" in config and "rseq_gen_verify" in config
    # The cmake.root entry point that scikit-build-core consumers rely on.
    import zipfile
    with zipfile.ZipFile(rseq_env.wheel) as z:
        eps = next(z.read(n).decode() for n in z.namelist() if n.endswith("entry_points.txt"))
    assert re.search(r"\[cmake\.root\]\s*\nRseqGen\s*=\s*rseq_gen", eps), eps


def test_config_fails_clearly_without_its_rseq_gen(rseq_env, tools, tmp_path):
    """A config dir copied away from its environment (no bin/rseq-gen beside
    it), and a rseq-gen of another version: both stop with a message."""
    fake = tmp_path / "env" / "lib" / "python3.99" / "site-packages" / "rseq_gen"
    shutil.copytree(rseq_env.cmakedir, fake / "share" / "cmake" / "RseqGen")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "CMakeLists.txt").write_text(textwrap.dedent("""\
        cmake_minimum_required(VERSION 3.20)
        project(p LANGUAGES NONE)
        find_package(RseqGen CONFIG REQUIRED)
        """))
    cmake = tools.cmakes["newest"]
    proc = run([cmake, "-S", proj, "-B", tmp_path / "b1", f"-DRseqGen_DIR={fake}/share/cmake/RseqGen"],
               check=False)
    assert proc.returncode != 0
    assert "cannot find the rseq-gen" in proc.stdout and "RSEQ_GEN_EXECUTABLE" in proc.stdout, proc.stdout

    other = tmp_path / "rseq-gen"
    other.write_text("#!/bin/sh\necho 'rseq-gen 9.9.9'\n")
    other.chmod(0o755)
    proc = run([cmake, "-S", proj, "-B", tmp_path / "b2", f"-DRseqGen_DIR={rseq_env.cmakedir}",
                f"-DRSEQ_GEN_EXECUTABLE={other}"], check=False)
    assert proc.returncode != 0
    assert "version '9.9.9'" in proc.stdout and "0.1.0" in proc.stdout, proc.stdout


# ---- the plugin-counter example: fresh, no-op, option change, template change --

@pytest.mark.parametrize("version,generator", matrix())
def test_plugin_counter(version, generator, tools, rseq_env, verify_available, tmp_path):
    src = copy_project(EXAMPLES / "plugin-counter", tmp_path / "src")
    b = Build(tools, rseq_env, version, generator, src, tmp_path / "build")

    # Fresh configure + build + run.
    b.configure()
    out = b.build().stdout
    assert "rseq-gen: generating counter_rseq.h/.c" in out, out
    assert "rseq-gen: generating plugin_rseq.h/.c" in out, out
    assert_verified(out, "counter_plugin", "plugin-counter")
    plugin = b.binary / "counter_plugin.so"
    res = run([b.binary / "plugin-counter", plugin, "3", "20000"])
    assert "total 60000 60000" in res.stdout and res.stdout.rstrip().endswith("OK"), res.stdout
    assert "still mapped (nodelete)" in res.stdout, res.stdout
    # The executable exports the shared area for modules it dlopen's.
    exported = _dynsym_defined(b.binary / "plugin-counter")
    assert {"__rseq_abi", "__rseq_refcount"} <= exported, sorted(exported)
    header = b.binary / "rseq_gen" / "counter_rseq" / "counter_rseq.h"
    manifest = json.loads((header.parent / "counter_rseq.manifest.json").read_text())
    assert manifest["options"]["protocol"] == "compat"
    assert manifest["origin"]["file"].endswith("CMakeLists.txt")

    # No-op rebuild, also after a configure that changes nothing.
    mtime = header.stat().st_mtime_ns
    b.assert_noop()
    b.configure()
    b.assert_noop()
    assert header.stat().st_mtime_ns == mtime

    # An option change regenerates both sets and rebuilds what uses them.
    b.configure("COUNTER_PROTOCOL=refcount")
    out = b.build().stdout
    assert "generating counter_rseq.h/.c for counter_rseq (protocol refcount" in out, out
    assert "generating plugin_rseq.h/.c for counter_plugin (protocol refcount" in out, out
    assert '"refcount"' in header.read_text()
    res = run([b.binary / "plugin-counter", plugin, "2", "10000"])
    assert "total 20000 20000" in res.stdout and "protocol refcount" in res.stdout, res.stdout
    b.assert_noop()

    # A template change (the generator's depfile) regenerates too.
    template = rseq_env.package_dir / "templates" / "rseq.h.j2"
    time.sleep(0.01)
    os.utime(template)  # now: newer than the outputs, not in the future
    out = b.build().stdout
    assert "rseq-gen: generating counter_rseq.h/.c" in out, out
    b.assert_noop()

    # The CTest tests: both verifications and the demo.
    res = run([b.ctest, "--test-dir", b.binary, "--output-on-failure"], env=b.env, check=False)
    assert res.returncode == 0 and "100% tests passed" in res.stdout, res.stdout


# ---- library kinds, nodelete, pre-link verification, the broken variant -------

def _flags_1(path: Path) -> int:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_FLAGS_1":
                        return tag.entry.d_val
    return 0


DF_1_NODELETE = 0x8


def _dynsym_defined(path: Path) -> set:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        dynsym = ELFFile(f).get_section_by_name(".dynsym")
        return {s.name for s in dynsym.iter_symbols() if s["st_shndx"] != "SHN_UNDEF"}


@pytest.mark.parametrize("version,generator", [
    pytest.param("newest", NINJA, id="cmakenewest-ninja"),
    pytest.param("3.20", MAKE, id="cmake3.20-makefiles"),
])
def test_variants_and_broken_build(version, generator, tools, rseq_env, verify_available, tmp_path):
    src = copy_project(FIXTURES / "variants", tmp_path / "src")
    b = Build(tools, rseq_env, version, generator, src, tmp_path / "build")
    b.configure()
    out = b.build().stdout
    # OBJECT library: its objects are verified before the executable links.
    lines = out.splitlines()
    verified = next(i for i, ln in enumerate(lines) if "verifying the objects of objrseq" in ln)
    linked = next(i for i, ln in enumerate(lines) if re.search(r"Linking C executable uses_object", ln))
    assert verified < linked, out
    assert "object cpu=" in run([b.binary / "uses_object"]).stdout
    assert "interface cpu=" in run([b.binary / "uses_interface"]).stdout

    # -z nodelete exactly where an owning protocol meets a shared object.
    assert _flags_1(b.binary / "libowning.so") & DF_1_NODELETE
    assert _flags_1(b.binary / "libplugin.so") & DF_1_NODELETE, "not inherited from the STATIC library"
    assert not _flags_1(b.binary / "libborrowing.so") & DF_1_NODELETE, "glibc protocol never owns"
    # REGISTRATION reaches the generator (and its manifest).
    owning_manifest = json.loads((b.binary / "rseq_gen" / "owning" / "owning_rseq.manifest.json").read_text())
    assert owning_manifest["options"]["registration"] == "extended"
    assert owning_manifest["registration"]["max_len"] == 64
    report = json.loads((b.binary / "borrowing-verify.json").read_text())
    assert "version" in report, report
    b.assert_noop()

    # The broken variant: the build fails at the owning library's verification.
    b.configure("BREAK_NODELETE=ON")
    proc = b.build(check=False)
    assert proc.returncode != 0, proc.stdout
    assert re.search(r"(?i)error.*nodelete", proc.stdout), proc.stdout
    # Makefiles delete an output whose POST_BUILD step failed; Ninja keeps it.
    owning = b.binary / "libowning.so"
    assert not owning.exists() or not _flags_1(owning) & DF_1_NODELETE

    # And its passing twin again.
    b.configure("BREAK_NODELETE=OFF")
    b.build()


# ---- three lines: clang, CMAKE_PREFIX_PATH, cross-compiling -------------------

def test_three_lines_with_clang_and_prefix_path(tools, rseq_env, verify_available, tmp_path):
    clang = require_tool("clang")
    src = copy_project(FIXTURES / "three-lines", tmp_path / "src")
    b = Build(tools, rseq_env, "newest", NINJA, src, tmp_path / "build", env=clean_env(CC=clang))
    # No build type: the generated code must compile unoptimised too.
    b.configure(f"CMAKE_PREFIX_PATH={rseq_env.package_dir}", find="prefix", build_type=None)
    cache = (b.binary / "CMakeCache.txt").read_text()
    assert re.search(r"CMAKE_C_COMPILER:\w+=.*clang", cache)
    out = b.build().stdout
    assert_verified(out, "app")
    res = run([b.binary / "app"])
    assert "protocol=compat" in res.stdout, res.stdout
    b.assert_noop()


# ---- a shared library built the way C libraries are built ---------------------

@pytest.mark.parametrize("proto_a,proto_b", [("glibc", "compat"), ("compat", "refcount")])
def test_shared_library_with_version_script(proto_a, proto_b, tools, rseq_env, verify_available,
                                            tmp_path):
    """tests/fixtures/cmake/shared-library: hidden visibility, a version
    script from RSEQ_GEN_VERSION_SCRIPT_GLOBALS, -z defs, --as-needed; two
    copies of the library on one generated prefix with different protocols.
    Each exports exactly its API plus its protocol's shared names, both
    verify clean (POST_BUILD), and the program counts exactly with glibc
    registering and without."""
    src = copy_project(FIXTURES / "shared-library", tmp_path / "src")
    b = Build(tools, rseq_env, "newest", NINJA, src, tmp_path / "build")
    b.configure(f"STATSA_PROTOCOL={proto_a}", f"STATSB_PROTOCOL={proto_b}")
    out = b.build().stdout
    assert_verified(out, "statsa", "statsb", "app")
    for lib, proto in (("statsa", proto_a), ("statsb", proto_b)):
        api = {f"{lib}_{n}" for n in ("init", "add", "total", "owner")}
        shared = set(PROTOCOLS[proto].shared_symbols)
        assert _dynsym_defined(b.binary / f"lib{lib}.so") == api | shared, lib
    ctest = run([b.ctest, "--test-dir", b.binary, "--output-on-failure"], check=False)
    assert ctest.returncode == 0, ctest.stdout
    b.assert_noop()


CROSS = {
    # arch: (CMAKE_SYSTEM_PROCESSOR, compiler, how to run the result)
    "aarch64": ("aarch64", "aarch64-linux-gnu-gcc", ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]),
    "i386": ("i686", "i686-linux-gnu-gcc", ["qemu-i386", "-L", "/usr/i686-linux-gnu"]),
}


@pytest.mark.parametrize("arch", sorted(CROSS))
def test_cross_compiling_picks_the_target_arch(arch, tools, rseq_env, verify_available, tmp_path):
    processor, compiler, runner = CROSS[arch]
    cc = require_tool(compiler, f"gcc-{compiler.rsplit('-', 1)[0]}")
    require_tool(runner[0], "qemu-user")
    toolchain = tmp_path / "toolchain.cmake"
    toolchain.write_text(textwrap.dedent(f"""\
        set(CMAKE_SYSTEM_NAME Linux)
        set(CMAKE_SYSTEM_PROCESSOR {processor})
        set(CMAKE_C_COMPILER {cc})
        set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
        set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
        set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
        set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
        """))
    src = copy_project(FIXTURES / "three-lines", tmp_path / "src")
    b = Build(tools, rseq_env, "newest", NINJA, src, tmp_path / "build")
    # RseqGen_DIR is honoured whatever CMAKE_FIND_ROOT_PATH_MODE_PACKAGE says.
    b.configure(f"CMAKE_TOOLCHAIN_FILE={toolchain}")
    b.build()
    manifest = json.loads((b.binary / "rseq_gen" / "myrseq" / "myrseq_rseq.manifest.json").read_text())
    assert manifest["options"]["arches"] == [arch]
    res = run([*runner, b.binary / "app"])
    assert "protocol=compat" in res.stdout, res.stdout


# ---- the Python example: pip install with scikit-build-core, import, count ----

@pytest.mark.parametrize("isolated", [
    pytest.param(True, id="build-isolation"),
    pytest.param(False, id="no-build-isolation"),
])
def test_python_extension_installs_and_counts(isolated, rseq_env, verify_available, tmp_path):
    src = copy_project(EXAMPLES / "python-extension", tmp_path / "src")
    cmd = [sys.executable, "-m", "pip", "--python", rseq_env.python, "install", "--no-deps",
           "--disable-pip-version-check", "-v"]
    if isolated:
        # What a user gets: pip makes a build env with scikit-build-core (from
        # the index) and rseq-gen (our wheel); the cmake.root entry point of
        # that rseq-gen is all find_package(RseqGen) needs.
        cmd += ["--find-links", rseq_env.wheel.parent]
    else:
        # The venv's rseq-gen and the system site's scikit-build-core.
        cmd += ["--no-index", "--no-build-isolation"]
    proc = run([*cmd, src], check=False)
    assert proc.returncode == 0, proc.stdout
    assert "Found RseqGen" in proc.stdout and "rseq-gen verify: " in proc.stdout, proc.stdout
    assert "RseqGen_DIR" not in proc.stdout  # found through the entry point alone
    if isolated:
        assert re.search(r"Found RseqGen: \S*pip-build-env", proc.stdout), proc.stdout

    script = textwrap.dedent("""\
        import json, threading, rseq_counter
        c = rseq_counter.Counter()
        ts = [threading.Thread(target=c.add, args=(25000,)) for _ in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()
        last = c.add(5)
        print(json.dumps({"cpu": rseq_counter.current_cpu(), "total": c.total(),
                          "per_cpu": c.per_cpu(), "owner": rseq_counter.owner(),
                          "protocol": rseq_counter.protocol, "last": last,
                          "file": rseq_counter.__file__}))
        """)
    res = run([rseq_env.python, "-c", script], cwd=tmp_path)
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert data["file"].startswith(str(rseq_env.venv)), data
    assert data["total"] == 100005 and sum(data["per_cpu"]) == 100005, data
    assert 0 <= data["cpu"] < len(data["per_cpu"]) and 0 <= data["last"] < len(data["per_cpu"]), data
    assert data["protocol"] == "compat"
    assert data["owner"] in ("glibc", "self", "shared", "none"), data


# ---- every argument is checked at configure time ------------------------------

_BAD_CALLS = [
    # (call, what the one message says; the function and the argument are named)
    ("rseq_gen_add_library(x STATIC PROTOCOL compat PREFIX my-lib)",
     "rseq_gen_add_library(x): PREFIX 'my-lib' is not a C identifier"),
    ("rseq_gen_add_library(x PREFIX _Mine)",
     "rseq_gen_add_library(x): PREFIX '_Mine' is reserved"),
    ("rseq_gen_add_library(_Lib)",
     "rseq_gen_add_library(_Lib): PREFIX (from the target name; pass PREFIX) '_Lib' is reserved"),
    ("add_library(t STATIC t.c)\nrseq_gen_target_sources(t PREFIX 9lives)",
     "rseq_gen_target_sources(t): PREFIX '9lives' is not a C identifier"),
    ("rseq_gen_add_library(x PROTOCOL compt)", "rseq_gen_add_library(x): PROTOCOL 'compt' is not one of: glibc,"),
    ("rseq_gen_add_library(x TLS_MODEL local-exec)", "rseq_gen_add_library(x): TLS_MODEL 'local-exec' is not one of"),
    ("rseq_gen_add_library(x REGISTRATION v2)", "rseq_gen_add_library(x): REGISTRATION 'v2' is not one of"),
    ("rseq_gen_add_library(x ARCH x86_64,sparc)", "rseq_gen_add_library(x): ARCH 'sparc' is not one of"),
    ("rseq_gen_add_library(x PROTCOL compat)", "rseq_gen_add_library(x): unexpected arguments: PROTCOL;compat"),
    ("rseq_gen_add_library(x PREFIX)", "rseq_gen_add_library(x): PREFIX needs a value"),
    ("rseq_gen_target_sources(nothere)", "rseq_gen_target_sources(nothere): no target 'nothere'"),
    ("rseq_gen_add_library(x)\nrseq_gen_verify(x FORMAT xml)", "rseq_gen_verify(x): FORMAT 'xml' is not one of"),
    ("rseq_gen_add_library(x)\nrseq_gen_verify(x FAIL_ON warn)", "rseq_gen_verify(x): FAIL_ON 'warn' is not one of"),
    ("rseq_gen_add_library(x)\nrseq_gen_verify(x MIN_GLIBC 2)",
     "rseq_gen_verify(x): MIN_GLIBC '2' is not a version like 2.17"),
    ("rseq_gen_add_library(x)\nrseq_gen_verify(x POSTBUILD)", "rseq_gen_verify(x): unexpected arguments: POSTBUILD"),
]


def test_every_argument_is_checked_at_configure_time(tools, rseq_env, tmp_path):
    """A bad argument stops `cmake` (configure), with one message naming the
    function, the target and the argument; PREFIX by the same rules as
    `rseq-gen generate --prefix` (the shared PREFIX_RULES table)."""
    from rseq_gen.settings import prefix_problem

    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "t.c").write_text("int t;\n")
    b = Build(tools, rseq_env, "newest", NINJA, proj, tmp_path / "build")

    def configure(call):
        (proj / "CMakeLists.txt").write_text(
            "cmake_minimum_required(VERSION 3.20)\nproject(p LANGUAGES C)\n"
            f"find_package(RseqGen CONFIG REQUIRED)\n{call}\n")
        proc = b.configure(check=False)
        return proc.returncode, " ".join(proc.stdout.split())

    for call, message in _BAD_CALLS:
        rc, out = configure(call)
        assert rc != 0 and f"RseqGen: {message}" in out, (call, out)
        assert out.count("CMake Error") == 1, (call, out)
    # The CMake check and the command line agree on every prefix.
    for prefix in ("mylib", "_mylib", "a1_b", "_Mylib", "__x", "my-lib", "1abc", "a.b", "x__y", "rseq",
                   "rseq_counters", "rseqx"):
        rc, out = configure(f"rseq_gen_add_library(lib_{abs(hash(prefix))} PREFIX {prefix})")
        problem = prefix_problem(prefix)
        assert (rc != 0) == (problem is not None), (prefix, out)
        if problem:
            assert f"PREFIX '{prefix}' {problem}" in out, (prefix, out)
        cli = subprocess.run([rseq_env.rseq_gen, "generate", "--prefix", prefix, "--output-dir",
                              tmp_path / "cli" / str(abs(hash(prefix)))], capture_output=True, text=True,
                             env=clean_env())
        assert (cli.returncode == 0) == (problem is None), (prefix, cli.stderr)


# ---- the README's library recipe, as written ------------------------------------

_RECIPE_MAIN = r"""
#include <pthread.h>
#include <stdio.h>
int counters_init(void);
void hit(void);
long total(void);
static void *worker(void *arg) { (void)arg; for (int i = 0; i < 100000; i++) hit(); return NULL; }
int main(void)
{
    pthread_t t[4];
    if (counters_init() != 0) return 2;
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("%ld\n", total());
    return total() == 400000 ? 0 : 1;
}
"""


def test_readme_library_recipe(tools, rseq_env, verify_available, tmp_path):
    """The README's three steps, copied verbatim: the CMake block builds a
    shared library from the C block, verified after linking; it exports
    only its own API (and the symbols the protocol shares by design), and
    a program linking it counts exactly with and without glibc's
    registration."""
    readme = (ROOT / "README.md").read_text()
    recipe = readme[readme.index("## Add per-CPU counters to your library"):]
    recipe = recipe[:recipe.index("\n## ")]
    cmake_block = re.search(r"```cmake\n(.+?)\n```", recipe, re.S).group(1)
    c_block = re.search(r"```c\n(.+?)\n```", recipe, re.S).group(1)
    src = tmp_path / "src"
    src.mkdir()
    (src / "mylib.c").write_text(c_block + "\n")
    (src / "main.c").write_text(_RECIPE_MAIN)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.20)\nproject(recipe LANGUAGES C)\n" + cmake_block
        + "\nadd_executable(app main.c)\ntarget_link_libraries(app PRIVATE mylib Threads::Threads)\n")
    b = Build(tools, rseq_env, "newest", NINJA, src, tmp_path / "build")
    b.configure()
    assert_verified(b.build().stdout, "mylib")
    exported = run(["nm", "-D", "--defined-only", b.binary / "libmylib.so"]).stdout.split()
    assert {"counters_init", "hit", "total"} <= set(exported)
    assert not [name for name in exported if name.startswith("mylib_")], exported
    for tunables in ("", "glibc.pthread.rseq=0"):
        res = run([b.binary / "app"], env=clean_env(GLIBC_TUNABLES=tunables))
        assert res.stdout.split() == ["400000"], res.stdout
