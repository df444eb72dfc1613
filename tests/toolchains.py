"""The toolchains the test suite uses, as one table, and the preflight that
proves each one can build what the tests build before any test runs.

A cross gcc on Debian only *recommends* its C library
(libc6-dev-<arch>-cross), which ``--no-install-recommends`` skips: the
compiler is there but nothing links. The preflight compiles **and links** a
small program the way the tests do (static where they link static), runs it
where the tests run it (natively or under qemu-user), and reports one line
per missing piece naming the package to install, instead of dozens of
compile errors spread over the suite.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rseq_gen.arches import ARCHES

ZIG = [sys.executable, "-m", "ziglang", "cc"]
ZIG_PACKAGE = "the PyPI package ziglang (pip install '.[test]')"

#: Debian's architecture name for each cross triple: the C library of the
#: cross compiler for triple T is libc6-dev-<DEBIAN_ARCH[T]>-cross.
DEBIAN_ARCH = {
    "i686-linux-gnu": "i386", "aarch64-linux-gnu": "arm64", "arm-linux-gnueabihf": "armhf",
    "powerpc64le-linux-gnu": "ppc64el", "powerpc64-linux-gnu": "ppc64",
    "powerpc-linux-gnu": "powerpc", "s390x-linux-gnu": "s390x", "riscv64-linux-gnu": "riscv64",
}


@dataclass(frozen=True)
class Target:
    """One architecture build of tests/test_portability.py."""

    id: str
    arch: str                      # row of rseq_gen.arches.ARCHES
    endian: str
    compiler: str                  # "gcc:<command>" or "zig:<zig target>"
    extra: tuple[str, ...] = ()    # extra compiler flags
    run: str = "qemu"              # "qemu" or "native"
    qemu: str | None = None        # qemu-user binary (default: the row's)
    static: bool = True

    @property
    def command(self) -> list[str]:
        kind, _, what = self.compiler.partition(":")
        return [*ZIG, "-target", what] if kind == "zig" else [what]

    @property
    def compiler_package(self) -> str:
        kind, _, what = self.compiler.partition(":")
        if kind == "zig":
            return ZIG_PACKAGE
        return "gcc" if what == "gcc" else f"gcc-{what[:-len('-gcc')]}"

    @property
    def libc_package(self) -> str:
        kind, _, what = self.compiler.partition(":")
        if kind == "zig":
            return ZIG_PACKAGE  # zig brings its own musl
        if what == "gcc":
            return "libc6-dev"
        return f"libc6-dev-{DEBIAN_ARCH[what[:-len('-gcc')]]}-cross"

    @property
    def qemu_binary(self) -> str | None:
        return None if self.run == "native" else (self.qemu or ARCHES[self.arch].qemu)


TARGETS = [
    Target("x86_64", "x86_64", "little", "gcc:gcc", run="native", static=False),
    Target("i386", "i386", "little", "gcc:i686-linux-gnu-gcc", run="native"),
    Target("i386-dynamic", "i386", "little", "gcc:i686-linux-gnu-gcc", run="native", static=False),
    Target("aarch64", "aarch64", "little", "gcc:aarch64-linux-gnu-gcc"),
    Target("aarch64_be", "aarch64", "big", "zig:aarch64_be-linux-musl", qemu="qemu-aarch64_be"),
    Target("arm-thumb", "arm", "little", "gcc:arm-linux-gnueabihf-gcc", ("-mthumb",)),
    Target("arm-arm", "arm", "little", "gcc:arm-linux-gnueabihf-gcc", ("-marm",)),
    Target("armeb", "arm", "big", "zig:armeb-linux-musleabihf", qemu="qemu-armeb"),
    Target("ppc64le", "ppc64le", "little", "gcc:powerpc64le-linux-gnu-gcc"),
    Target("ppc64", "ppc64", "big", "gcc:powerpc64-linux-gnu-gcc"),
    Target("ppc32", "ppc32", "big", "gcc:powerpc-linux-gnu-gcc"),
    Target("s390x", "s390x", "big", "gcc:s390x-linux-gnu-gcc"),
    Target("riscv64", "riscv64", "little", "gcc:riscv64-linux-gnu-gcc"),
    # qemu 7.2 (bookworm) has no LSX/LASX: keep musl's memcpy scalar.
    Target("loongarch64", "loongarch64", "little", "zig:loongarch64-linux-musl",
           ("-mcpu=la464-lsx-lasx",)),
]


@dataclass(frozen=True)
class Check:
    """Build a hello program with ``command + flags`` and run it
    (``runner`` + program; None: build only)."""

    what: str
    command: tuple[str, ...]
    package: str                   # what provides the command
    link_package: str              # what provides the libraries it links
    flags: tuple[str, ...] = ()
    runner: tuple[str, ...] | None = ()
    runner_package: str = ""
    language: str = "c"


def _target_checks() -> list[Check]:
    checks, seen = [], set()
    for t in TARGETS:
        key = (tuple(t.command), t.static, t.extra)
        if key in seen:
            continue
        seen.add(key)
        runner = (t.qemu_binary,) if t.qemu_binary else ()
        checks.append(Check(
            f"{t.id} ({' '.join(t.command[-2:] if t.compiler.startswith('zig') else t.command)}"
            f"{', static' if t.static else ''})",
            tuple(t.command), t.compiler_package, t.libc_package,
            (*t.extra, *(("-static",) if t.static else ())), runner, "qemu-user" if runner else ""))
    return checks


#: Everything the suite compiles with, beyond the architecture targets.
CHECKS = [
    *_target_checks(),
    Check("gcc, static", ("gcc",), "gcc", "libc6-dev", ("-static",)),
    Check("g++ (C++17)", ("g++",), "g++", "g++", ("-std=c++17",), language="c++"),
    Check("clang", ("clang",), "clang", "libc6-dev"),
    Check("clang, static", ("clang",), "clang", "libc6-dev", ("-static",)),
    Check("clang with lld", ("clang",), "clang", "lld", ("-fuse-ld=lld",)),
    Check("clang++ (C++17)", ("clang++",), "clang", "g++", ("-std=c++17",), language="c++"),
    Check("clang for i386", ("clang", "--target=i686-linux-gnu"), "clang", "libc6-dev-i386-cross"),
    Check("musl-gcc, static", ("musl-gcc",), "musl-tools", "musl-tools", ("-static",)),
]

#: Commands the tests run, each with the package that provides it.
COMMANDS = {"strace": "strace", "ar": "binutils", "objdump": "binutils", "make": "make",
            "cmake": "cmake (pip install '.[test]')", "ninja": "ninja (pip install '.[test]')",
            # the Meson and autotools integrations (tests/test_meson.py, test_autotools.py)
            "meson": "meson (pip install '.[test]')", "pkg-config": "pkgconf",
            "autoreconf": "autoconf", "automake": "automake", "libtoolize": "libtool",
            # the Linux 7.x guest (tests/guest.py)
            "qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static"}

_HELLO = {"c": "#include <stdio.h>\n#include <errno.h>\n#include <pthread.h>\n"
               "int main(void) { printf(\"ok %d\\n\", EINVAL > 0); return 0; }\n",
          "c++": "#include <cstdio>\n#include <string>\n"
                 "int main() { std::string s(\"ok\"); std::printf(\"%s 1\\n\", s.c_str()); }\n"}


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _run_check(check: Check, workdir: Path) -> str | None:
    """None when the check passes, else one line saying what to install."""
    if check.command[0] == sys.executable:
        if importlib.util.find_spec("ziglang") is None:
            return f"{check.what}: zig not found: install {check.package}"
    elif shutil.which(check.command[0]) is None:
        return f"{check.what}: {check.command[0]} not found: install {check.package}"
    d = Path(tempfile.mkdtemp(dir=workdir))
    src = d / ("hello.cpp" if check.language == "c++" else "hello.c")
    src.write_text(_HELLO[check.language])
    exe = d / "hello"
    try:
        p = subprocess.run([*check.command, *check.flags, str(src), "-o", str(exe)],
                           capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return f"{check.what}: the compiler did not finish in 600 s"
    if p.returncode != 0:
        return f"{check.what}: cannot build a program ({_last_line(p.stderr)}): install {check.link_package}"
    if check.runner is None:
        return None
    if check.runner and shutil.which(check.runner[0]) is None:
        return f"{check.what}: {check.runner[0]} not found: install {check.runner_package}"
    p = subprocess.run([*check.runner, str(exe)], capture_output=True, text=True, timeout=120)
    if p.returncode != 0 or not p.stdout.startswith("ok 1"):
        return (f"{check.what}: the program does not run ({_last_line(p.stderr) or p.returncode})"
                f": install {check.runner_package or check.link_package}")
    return None


def preflight(workdir: Path, jobs: int = 2) -> list[str]:
    """One line per missing piece; empty when everything the suite needs is
    there. The zig checks come first: on a fresh machine zig builds musl
    for each target once (cached afterwards), the longest jobs."""
    problems = [f"{name} not found: install {pkg}" for name, pkg in COMMANDS.items()
                if shutil.which(name) is None]
    order = sorted(CHECKS, key=lambda c: c.command[0] != sys.executable)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        problems += [r for r in pool.map(lambda c: _run_check(c, workdir), order) if r]
    return problems


def packages() -> set[str]:
    """Debian packages the table names (for the test that .ci/apt-packages.txt
    reaches them all)."""
    names = {c.package for c in CHECKS} | {c.link_package for c in CHECKS} | \
            {c.runner_package for c in CHECKS if c.runner_package} | set(COMMANDS.values())
    return {n for n in names if " " not in n}
