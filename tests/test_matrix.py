"""The coexistence matrix: every protocol, compiled with gcc and clang, run on
this kernel in every environment of rseq_gen.environments.ENVIRONMENTS.

Each run executes tests/c/matrix_main.c (owners per module and per thread,
pinned cpu == sched_getcpu, 16 threads x 200k per-CPU adds with forced
migrations and signals, fork, and, where dynamic linking exists, a plugin
dlopen'd and dlclose'd 200 times while threads run) under strace, and checks
the output against the protocol table:

- the owner each module reports is the one the table promises;
- no thread ever holds more than one registration (strace, per thread);
- a refused registration fails only with an errno the table expects;
- every per-CPU total is exact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import generate, locked, require_tool, ROOT, run_build
from rseq_gen.environments import ENVIRONMENT_VARIABLES, ENVIRONMENTS, LIBC_REGISTERS
from rseq_gen.protocols import PROTOCOLS

C_DIR = ROOT / "tests" / "c"
CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-g"]
COMPILERS = ("gcc", "clang")
ADDS = "200000"
THREADS = "16"
#: What the test program links besides its modules: dlopen is in libdl
#: before glibc 2.34 (the sysroot builds of tests/test_glibcs.py).
PROGRAM_LIBS = ("-lpthread", "-ldl")


@dataclass(frozen=True)
class Build:
    """How one environment's program is built and started."""

    variant: str            # which binary: dyn (exe + 2 libs + plugin), static, musl
    env: dict
    args: tuple = ()


ENV_BUILDS = {
    "glibc": Build("dyn", ENVIRONMENT_VARIABLES["glibc"]),
    "glibc-rseq-off": Build("dyn", ENVIRONMENT_VARIABLES["glibc-rseq-off"]),
    "glibc-static": Build("static", ENVIRONMENT_VARIABLES["glibc-static"]),
    "musl-static": Build("musl", ENVIRONMENT_VARIABLES["musl-static"]),
    "seccomp-enosys": Build("dyn", ENVIRONMENT_VARIABLES["seccomp-enosys"], ("--seccomp", "enosys")),
    "seccomp-eperm": Build("dyn", ENVIRONMENT_VARIABLES["seccomp-eperm"], ("--seccomp", "eperm")),
}
assert set(ENV_BUILDS) == set(ENVIRONMENTS)


def _run(cmd, cwd):
    proc = run_build(cmd, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr}")


def _module_cmd(cc, gen, prefix, *extra):
    return [cc, *CFLAGS, f"-I{gen}", f"-I{C_DIR}", f"-DMOD={prefix}",
            f'-DMOD_HEADER="{prefix}_rseq.h"', *extra]


class MatrixBuild:
    """Generates the four prefixes for one protocol and builds the programs
    once per (protocol, compiler, glibc) for the whole run, whichever
    pytest-xdist worker asks first; variants are built on first use.
    ``glibc`` (a tests/helpers/glibcs.py Glibc, None: the host's) is the sysroot the
    programs are compiled and linked against."""

    def __init__(self, root: Path, protocol: str, cc: str, glibc=None, generate_args: tuple = ()):
        self.root, self.protocol, self.cc = root, protocol, cc
        self.generate_args = tuple(generate_args)  # e.g. ("--registration", "extended")
        self.gen = root / "gen"
        self.sysroot = glibc.sysroot_flags() if glibc is not None else []
        self.out = root / (cc if not self.sysroot else f"{cc}-{glibc.name}")
        self._built: dict[str, tuple[Path, tuple]] = {}

    def _generate(self):
        with locked(self.root / "gen.lock"):
            if (self.gen / "generated").exists():
                return
            for prefix in ("m", "a", "b"):
                generate(self.gen, self.protocol, prefix, *self.generate_args)
            generate(self.gen, self.protocol, "c", "--dlopen-safe", *self.generate_args)
            (self.gen / "generated").touch()

    def _cmd(self, cc, prefix, *extra):
        return _module_cmd(cc, self.gen, prefix, *self.sysroot, *extra)

    def _objects(self, cc, out, pic):
        objs = []
        for prefix in ("a", "b", "m"):
            for src, tag in ((C_DIR / "matrix_module.c", "mod"), (self.gen / f"{prefix}_rseq.c", "rseq")):
                obj = out / f"{prefix}_{tag}.o"
                _run(self._cmd(cc, prefix, *pic, "-c", src, "-o", obj), out)
                objs.append(obj)
        main = out / "main.o"
        _run(self._cmd(cc, "m", *pic, "-DWITH_LIBS", "-c", C_DIR / "matrix_main.c", "-o", main), out)
        return [main, *objs]

    def _build(self, variant: str, out: Path) -> None:
        cc = self.cc
        if variant == "dyn":
            for prefix in ("a", "b"):
                _run(self._cmd(cc, prefix, "-fPIC", "-shared", C_DIR / "matrix_module.c",
                               self.gen / f"{prefix}_rseq.c", "-o", out / f"lib{prefix}.so",
                               "-lpthread", "-Wl,-z,nodelete"), out)
            _run(self._cmd(cc, "c", "-fPIC", "-shared", C_DIR / "matrix_module.c",
                           self.gen / "c_rseq.c", "-o", out / "plugin.so", "-lpthread"), out)
            _run(self._cmd(cc, "m", "-DWITH_LIBS", C_DIR / "matrix_main.c",
                           C_DIR / "matrix_module.c", self.gen / "m_rseq.c", "-o", out / "matrix",
                           f"-L{out}", "-la", "-lb", "-Wl,-rpath,$ORIGIN", *PROGRAM_LIBS), out)
        elif variant == "alone":
            _run(self._cmd(cc, "m", C_DIR / "matrix_main.c", C_DIR / "matrix_module.c",
                           self.gen / "m_rseq.c", "-o", out / "matrix", *PROGRAM_LIBS), out)
        elif variant == "static":
            objs = self._objects(cc, out, [])
            _run([cc, *self.sysroot, *objs, "-static", "-o", out / "matrix", *PROGRAM_LIBS], out)
        elif variant == "musl":
            assert not self.sysroot, "musl-gcc brings its own C library"
            objs = self._objects("musl-gcc", out, [])
            _run(["musl-gcc", *objs, "-static", "-o", out / "matrix"], out)
        else:
            raise ValueError(variant)

    def binary(self, variant: str) -> tuple[Path, tuple]:
        if variant not in self._built:
            out = self.out / variant
            with locked(self.out / f"{variant}.lock"):
                if not (out / "built").exists():
                    self._generate()
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir(parents=True)
                    self._build(variant, out)
                    (out / "built").touch()
            args = ("--plugin", str(out / "plugin.so")) if variant == "dyn" else ()
            self._built[variant] = (out / "matrix", args)
        return self._built[variant]


# ---- strace: registrations per thread ---------------------------------------

_RSEQ_LINE = re.compile(r"^rseq\((?P<args>.*)\)\s+= (?P<ret>-?\d+)(?: (?P<errno>[A-Z]+))?")
_EXECVE_OK = re.compile(r"^execve\(.*\)\s+= 0")


class Strace(NamedTuple):
    """The rseq calls of one thread, or of a whole run (strace -ff output,
    one file per thread)."""

    max_live: int          # most registrations one thread held at once
    errnos: list           # errno of every refused registration
    successes: int         # registrations that succeeded
    lengths: frozenset     # lengths the successful registrations passed


def strace_by_thread(directory: Path) -> dict[int, Strace]:
    """Per thread id (the trace.<tid> file names)."""
    out = {}
    for path in directory.glob("trace.*"):
        live, max_live, errnos, successes, lengths = 0, 0, [], 0, set()
        for line in path.read_text().splitlines():
            if _EXECVE_OK.match(line):
                # execve drops the registration; count from the new image on
                live, max_live, errnos, successes, lengths = 0, 0, [], 0, set()
                continue
            m = _RSEQ_LINE.match(line)
            if not m:
                continue
            _, length, flags, _ = m["args"].split(", ")
            unregister = "UNREGISTER" in flags or (flags.isdigit() and int(flags) & 1) or flags == "0x1"
            if m["ret"] == "0":
                live += -1 if unregister else 1
                if not unregister:
                    successes += 1
                    lengths.add(int(length, 0))
            elif not unregister:
                errnos.append(m["errno"])
            max_live = max(max_live, live)
        out[int(path.name.rpartition(".")[2])] = Strace(max_live, errnos, successes, frozenset(lengths))
    return out


def parse_strace(directory: Path) -> Strace:
    """The whole run: the most any thread held, every errno, every success."""
    threads = strace_by_thread(directory).values()
    return Strace(max((t.max_live for t in threads), default=0), [e for t in threads for e in t.errnos],
                  sum(t.successes for t in threads), frozenset().union(*(t.lengths for t in threads)))


def strace_command(trace_dir: Path, seccomp_bpf: bool = True) -> list[str]:
    """strace writing one file per thread into trace_dir (see
    strace_by_thread). --seccomp-bpf stops the tracee only at rseq and
    execve, so programs on the fallback paths (a getcpu syscall per call on
    i386) run at full speed; not where the program installs its own filter:
    its denial of rseq would take precedence, and strace would no longer see
    the errno."""
    return [require_tool("strace"), "-ff", "-qq", *(["--seccomp-bpf"] if seccomp_bpf else []),
            "-e", "trace=rseq,execve", "-e", "signal=none", "-o", str(trace_dir / "trace")]


def run_matrix(binary: Path, extra_args, env_extra, tmp: Path, adds: str = ADDS,
               threads: str = THREADS, launcher=()):
    """Run the matrix program under strace; ``launcher`` goes before it (a
    glibc's own dynamic loader, tests/helpers/glibcs.py)."""
    trace_dir = tmp / "strace"
    trace_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(env_extra)
    cmd = [*strace_command(trace_dir, seccomp_bpf="--seccomp" not in extra_args),
           *map(str, launcher), str(binary), "--threads", threads, "--adds", adds, *extra_args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, events, parse_strace(trace_dir)


def _check_owner_group(owners: dict, lone: str, peer: str, what: str):
    """One module of a group registered (self) and the others see the peer
    owner; or, where no module registers, all see the lone owner."""
    values = list(owners.values())
    if len(values) == 1:
        assert values[0] == lone, f"{what}: owner {values[0]}, table says {lone}"
    elif lone == "self":
        assert values.count("self") == 1, f"{what}: expected exactly one self owner: {owners}"
        assert all(v == peer for v in values if v != "self"), f"{what}: peers {owners}, table says {peer}"
    else:
        assert all(v == lone for v in values), f"{what}: owners {owners}, table says {lone}"


def _by_event(proc, events) -> dict:
    assert proc.returncode == 0, f"matrix failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    by_event: dict[str, list] = {}
    for e in events:
        by_event.setdefault(e["event"], []).append(e)
    assert by_event["done"][0]["ok"] is True
    assert not by_event.get("failure"), by_event.get("failure")
    return by_event


def check_run(protocol: str, env_name: str, variant: str, run, threads: str = THREADS,
              adds: str = ADDS) -> dict:
    """What every run of a program with peer modules asserts, against the
    protocol table's column ``env_name``: owners per module and thread, exact
    counts, the fork child, the plugin (dynamic variants), and from strace:
    never two registrations on a thread, only the refusals the table
    expects, registrations on every thread exactly where someone registers.
    Returns the events by name."""
    proc, events, trace = run
    proto = PROTOCOLS[protocol]
    by_event = _by_event(proc, events)
    lone, peer = proto.owner[env_name], proto.peer_owner[env_name]
    main_owners = {k: v["owner"] for k, v in by_event["owners"][0]["modules"].items()}
    _check_owner_group(main_owners, lone, peer, "main thread")
    for i, thread in enumerate(by_event["thread_owners"][0]["threads"]):
        _check_owner_group({k: v[0] for k, v in thread.items()}, lone, peer, f"thread {i}")

    count = by_event["count"][0]
    assert count["got"] == count["expected"] == int(threads) * int(adds)
    assert count["signal_adds"] == count["signals"]
    assert by_event["pinned"][0]["ok"] is True
    child = by_event["fork_child"][0]
    assert child["got"] == child["expected"]
    assert child["owner"] == main_owners["m"], "after fork the child keeps the parent's registration"
    assert ("dlopen" in by_event) == (variant == "dyn"), "the plugin scenario runs with dynamic linking"
    if variant == "dyn":
        d = by_event["dlopen"][0]
        assert d["iterations"] == 200 and d["same_owner"] and d["plugin_exact"]
        assert d["got"] == d["expected"]
        assert d["owner"] == peer, f"plugin owner {d['owner']}, table says {peer}"

    # strace: never two registrations on one thread, only expected refusals.
    assert trace.max_live <= 1, "a thread held two rseq registrations at once"
    unexpected = set(trace.errnos) - set(proto.expected_errnos[env_name])
    assert not unexpected, f"unexpected rseq errors {sorted(unexpected)} (all: {trace.errnos})"
    if lone == "self" or env_name in LIBC_REGISTERS:
        assert trace.successes >= 1 + int(threads), "every thread should hold a registration"
    else:
        assert trace.successes == 0, "no registration should succeed here"
    if lone == "glibc":
        ours = sum(v["registrations"] for v in by_event["owners"][-1]["modules"].values())
        assert ours == 0, "glibc owns registration: the generated code must make no rseq syscall"
    return by_event


def check_alone(protocol: str, env_name: str, run, threads: str = THREADS, adds: str = ADDS) -> dict:
    """What a run of the program with only its own module asserts: the lone
    owner on every thread, exact counts, only expected refusals, and where
    the module registers, exactly one registration per thread, all its own
    (main, the workers, the fork child's two threads)."""
    proc, events, trace = run
    owner = PROTOCOLS[protocol].owner[env_name]
    by_event = _by_event(proc, events)
    owners = by_event["owners"][0]["modules"]
    assert owners["m"]["owner"] == owner
    assert {t["m"][0] for t in by_event["thread_owners"][0]["threads"]} == {owner}
    count = by_event["count"][0]
    assert count["got"] == count["expected"] == int(threads) * int(adds)
    assert trace.max_live <= 1
    assert set(trace.errnos) <= set(PROTOCOLS[protocol].expected_errnos[env_name])
    if owner == "self":
        assert owners["m"]["registrations"] >= 1 and trace.successes == 1 + int(threads) + 2
    return by_event


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("env_name", ENVIRONMENTS)
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_matrix(protocol, env_name, cc, matrix_builds, tmp_path):
    require_tool(cc)
    build = ENV_BUILDS[env_name]
    if build.variant == "musl":
        require_tool("musl-gcc", "musl-tools")
        if cc != "gcc":
            # musl-gcc is the musl toolchain here; clang builds are covered by
            # every glibc environment. Not a skip: the gcc run covers musl.
            cc = "gcc"
    binary, args = matrix_builds(protocol, cc).binary(build.variant)
    check_run(protocol, env_name, build.variant,
              run_matrix(binary, (*args, *build.args), build.env, tmp_path))


#: i386 compilers: Debian's cross gcc and clang aimed at its sysroot (gcc
#: -m32 would need gcc-multilib, which conflicts with the cross compilers,
#: or a lib32gcc-<version>-dev tied to one gcc release). The binaries run
#: natively: libc6-i386 provides /lib/ld-linux.so.2.
I386_COMPILERS = {"gcc": ["i686-linux-gnu-gcc"], "clang": ["clang", "--target=i686-linux-gnu"]}
#: Fewer adds than on x86_64: without a fast path (protocol glibc, rseq off)
#: every add makes a getcpu syscall on i386 (no vDSO getcpu), and strace
#: stops at each one (its --seccomp-bpf filter covers the native ABI only).
I386_ADDS = "10000"


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_i386_native(protocol, cc, tmp_path):
    """i386 code on the real kernel: glibc's registration and ours."""
    compiler = I386_COMPILERS[cc]
    require_tool(compiler[0], "gcc-i686-linux-gnu" if cc == "gcc" else "clang")
    gen = generate(tmp_path / "gen", protocol, "m", "--arch", "x86_64,i386")
    binary = tmp_path / "matrix32"
    _run([*compiler, *_module_cmd("", gen, "m")[1:], C_DIR / "matrix_main.c",
          C_DIR / "matrix_module.c", gen / "m_rseq.c", "-o", binary, "-lpthread"], tmp_path)
    for env_name in ("glibc", "glibc-rseq-off"):
        run_dir = tmp_path / env_name
        run_dir.mkdir()
        check_alone(protocol, env_name, run_matrix(binary, ENV_BUILDS[env_name].args,
                                                   ENV_BUILDS[env_name].env, run_dir, I386_ADDS),
                    adds=I386_ADDS)


DYNAMIC_ENVS = [name for name, b in ENV_BUILDS.items() if b.variant == "dyn"]


@pytest.mark.parametrize("env_name", DYNAMIC_ENVS)
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_program_alone(protocol, env_name, matrix_builds, tmp_path):
    """The program with only its own generated code: the lone owner."""
    build = ENV_BUILDS[env_name]
    binary, _ = matrix_builds(protocol, "gcc").binary("alone")
    check_alone(protocol, env_name, run_matrix(binary, build.args, build.env, tmp_path))
