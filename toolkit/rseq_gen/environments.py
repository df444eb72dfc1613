"""The environments a process runs in, as one vocabulary.

Two tables, one mapped onto the other:

- ``LIBC_ENVIRONMENTS``: what the prediction distinguishes (the verifier's
  closure report, rseq_gen.coexistence, the adopters' rows): whether the
  libc registers every thread before any module runs, and whether dlsym
  finds its symbols. Static glibc registers every thread as dynamic glibc
  does, but dlsym finds none of its symbols there (measured:
  dlsym(RTLD_NEXT, "__rseq_size") is NULL in a static glibc 2.36 program):
  adopters that look glibc up only with dlsym do not see its registration.
  musl never registers.
- ``RUN_ENVIRONMENTS``: how the test matrix and the demo make one on this
  machine (a link, a tunable, a seccomp filter: tests/test_matrix.py makes
  each one), each naming the libc environment it is an instance of.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LibcEnvironment:
    name: str
    title: str
    #: The libc registers every thread before any module runs.
    libc_registers: bool = False
    #: dlsym finds no symbol (a static link).
    no_dlsym: bool = False


@dataclass(frozen=True)
class RunEnvironment:
    name: str
    #: The column title in the README's protocol table.
    title: str
    #: The LibcEnvironment this is an instance of.
    libc: str
    #: Process environment variables that make it (the others are made by
    #: how the program is linked, or by a seccomp filter).
    variables: dict = field(default_factory=dict)
    #: The errno rseq() fails with (a seccomp filter), or None.
    denied: str | None = None


LIBC_ENVIRONMENT_ROWS = (
    LibcEnvironment("glibc", "glibc >= 2.35 registering", libc_registers=True),
    LibcEnvironment("glibc-static", "static glibc >= 2.35 registering", libc_registers=True, no_dlsym=True),
    LibcEnvironment("glibc-rseq-off", "glibc, glibc.pthread.rseq=0"),
    LibcEnvironment("glibc-old", "glibc < 2.35"),            # no rseq ABI at all
    LibcEnvironment("musl", "musl (or no libc registration)"),
    LibcEnvironment("denied", "rseq denied (ENOSYS/EPERM)"),  # seccomp, an old kernel, qemu-user
)

RUN_ENVIRONMENT_ROWS = (
    RunEnvironment("glibc", "glibc ≥ 2.35", "glibc"),
    RunEnvironment("glibc-rseq-off", "glibc, rseq=0", "glibc-rseq-off",
                   variables={"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}),
    RunEnvironment("glibc-static", "static glibc", "glibc-static"),
    RunEnvironment("musl-static", "musl", "musl"),
    RunEnvironment("seccomp-enosys", "ENOSYS", "denied", denied="ENOSYS"),
    RunEnvironment("seccomp-eperm", "seccomp EPERM", "denied", denied="EPERM"),
)

LIBC: dict[str, LibcEnvironment] = {e.name: e for e in LIBC_ENVIRONMENT_ROWS}
RUN: dict[str, RunEnvironment] = {e.name: e for e in RUN_ENVIRONMENT_ROWS}
assert all(e.libc in LIBC for e in RUN_ENVIRONMENT_ROWS)

#: Libc environments a prediction is made for.
LIBC_ENVIRONMENTS = tuple(LIBC)
LIBC_ENVIRONMENT_TITLES = {e.name: e.title for e in LIBC_ENVIRONMENT_ROWS}
#: Environments (libc or run: the registering ones have the same names in
#: both) in which the libc registers every thread before any module runs.
LIBC_REGISTERS = frozenset(e.name for e in LIBC_ENVIRONMENT_ROWS if e.libc_registers) | frozenset(
    e.name for e in RUN_ENVIRONMENT_ROWS if LIBC[e.libc].libc_registers)
#: Environments in which dlsym finds no symbol (static links).
NO_DLSYM = frozenset(e.name for e in LIBC_ENVIRONMENT_ROWS if e.no_dlsym)

#: Environments the test matrix and the demo run in.
ENVIRONMENTS = tuple(RUN)
ENVIRONMENT_TITLES = {e.name: e.title for e in RUN_ENVIRONMENT_ROWS}
ENVIRONMENT_VARIABLES = {e.name: dict(e.variables) for e in RUN_ENVIRONMENT_ROWS}
DENIED = {e.name: e.denied for e in RUN_ENVIRONMENT_ROWS if e.denied}
