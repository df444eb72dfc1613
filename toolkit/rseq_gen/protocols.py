"""The coexistence protocols, one row each.

The generator reads the behaviour flags; the table of docs/protocols.md, the manifest and the
test matrix read the documentation and expectation columns. Keep them here so a
protocol is described once.
"""

from __future__ import annotations

from dataclasses import dataclass

from rseq_gen.errors import unknown_choice

#: Environments the test matrix and the demo run in (tests/test_matrix.py
#: makes each one).
ENVIRONMENTS = (
    "glibc",           # dynamic glibc >= 2.35, its registration on (default)
    "glibc-rseq-off",  # GLIBC_TUNABLES=glibc.pthread.rseq=0
    "glibc-static",    # static glibc, registration on
    "musl-static",     # musl libc: never registers rseq
    "seccomp-enosys",  # rseq denied with ENOSYS (as a kernel without rseq)
    "seccomp-eperm",   # rseq denied with EPERM (an old container profile)
)
#: Environments in which the libc registers every thread itself.
LIBC_REGISTERS = frozenset({"glibc", "glibc-static"})
#: Process environment variables that make an environment (the others are
#: made by how the program is linked, or by a seccomp filter).
ENVIRONMENT_VARIABLES = {env: {} for env in ENVIRONMENTS}
ENVIRONMENT_VARIABLES["glibc-rseq-off"] = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}


@dataclass(frozen=True)
class Protocol:
    name: str
    #: Use glibc's area (``__rseq_offset``) whenever glibc registered the thread.
    glibc_area: bool
    #: Area this protocol registers when glibc did not: None (never registers),
    #: "private" (hidden TLS of the module) or "shared" (the interposable TLS
    #: symbol ``__rseq_abi``).
    area: str | None
    #: Skip registration when the shared area's cpu_id is already >= 0.
    cpu_id_check: bool
    #: Coordinate through the TLS counter ``__rseq_refcount``.
    refcount: bool
    #: Coordinate through the global flag ``__rseq_handled``.
    handled_flag: bool
    #: One-line rule (header comment) and table cells for docs/protocols.md.
    rule: str
    registers: str
    area_doc: str
    unregisters: str
    #: Owner reported by P_owner() in a lone module, per environment.
    owner: dict
    #: Owner seen by a second module of the same protocol in the same thread.
    peer_owner: dict
    #: errno values a registration attempt in the process may end with, per
    #: environment (anything else is a bug): the libc's own attempt under a
    #: seccomp denial, plus what a lone or a peer module of the protocol gets.
    expected_errnos: dict

    @property
    def shared_symbols(self) -> tuple[str, ...]:
        names = []
        if self.area == "shared":
            names.append("__rseq_abi")
        if self.refcount:
            names.append("__rseq_refcount")
        if self.handled_flag:
            names.append("__rseq_handled")
        return tuple(names)

    @property
    def executable_link_flags(self) -> tuple[str, ...]:
        """Flags an executable needs so that modules it dlopen's later bind to
        its copy of the shared symbols: an executable exports a symbol only
        when a library linked at build time references it."""
        return tuple(f"-Wl,--export-dynamic-symbol={name}" for name in self.shared_symbols)


def _row(glibc, off, static, musl, enosys, eperm):
    return dict(zip(ENVIRONMENTS, (glibc, off, static, musl, enosys, eperm)))


_DENIED = {"seccomp-enosys": "ENOSYS", "seccomp-eperm": "EPERM"}


def _errnos(**extra):
    table = {env: set() for env in ENVIRONMENTS}
    for env, err in _DENIED.items():
        table[env].add(err)
    for env, errs in extra.items():
        table[env.replace("_", "-")] |= set(errs)
    return {env: tuple(sorted(v)) for env, v in table.items()}


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="glibc",
            glibc_area=True, area=None, cpu_id_check=False, refcount=False, handled_flag=False,
            rule="Use glibc's area through weak references to __rseq_offset/__rseq_size; never register.",
            registers="glibc only",
            area_doc="glibc's (thread pointer + __rseq_offset)",
            unregisters="never (the kernel, at thread exit)",
            owner=_row("glibc", "none", "glibc", "none", "none", "none"),
            peer_owner=_row("glibc", "none", "glibc", "none", "none", "none"),
            expected_errnos=_errnos(),
        ),
        Protocol(
            name="own",
            glibc_area=True, area="private", cpu_id_check=False, refcount=False, handled_flag=False,
            rule="glibc's area when glibc registered; otherwise a private TLS area of this module, "
                 "registered per thread and unregistered by a pthread key destructor at thread exit.",
            registers="this module, when glibc did not",
            area_doc="glibc's, else private hidden TLS",
            unregisters="thread exit (key destructor), before the TLS is freed",
            owner=_row("glibc", "self", "glibc", "self", "none", "none"),
            # A second private owner in the same thread is refused by the kernel.
            peer_owner=_row("glibc", "none", "glibc", "none", "none", "none"),
            expected_errnos=_errnos(glibc_rseq_off=["EINVAL"], musl_static=["EINVAL"]),
        ),
        Protocol(
            name="cpu-id",
            glibc_area=False, area="shared", cpu_id_check=True, refcount=False, handled_flag=False,
            rule="Shared interposable TLS __rseq_abi; register only while __rseq_abi.cpu_id == -1 "
                 "(option 3 of the 2020 LKML thread 'Rseq registration: Google tcmalloc vs glibc'). Does not look at glibc.",
            registers="the first module whose thread sees cpu_id == -1",
            area_doc="shared __rseq_abi",
            unregisters="never (the kernel, at thread exit)",
            owner=_row("none", "self", "none", "self", "none", "none"),
            peer_owner=_row("none", "shared", "none", "shared", "none", "none"),
            expected_errnos=_errnos(glibc=["EINVAL"], glibc_static=["EINVAL"]),
        ),
        Protocol(
            name="refcount",
            glibc_area=False, area="shared", cpu_id_check=False, refcount=True, handled_flag=False,
            rule="Shared __rseq_abi plus TLS __rseq_refcount: the 0->1 increment registers, the "
                 "1->0 decrement unregisters (option 1 of the 2020 LKML thread 'Rseq registration: Google tcmalloc vs glibc'). Does not look at glibc.",
            registers="the module that takes the count from 0 to 1",
            area_doc="shared __rseq_abi",
            unregisters="when the count drops to 0 (explicit call or thread exit)",
            owner=_row("none", "self", "none", "self", "none", "none"),
            peer_owner=_row("none", "shared", "none", "shared", "none", "none"),
            expected_errnos=_errnos(glibc=["EINVAL"], glibc_static=["EINVAL"]),
        ),
        Protocol(
            name="handled",
            glibc_area=False, area="shared", cpu_id_check=True, refcount=False, handled_flag=True,
            rule="Global __rseq_handled: the first constructor that finds it 0 sets it and registers "
                 "every thread in the shared __rseq_abi; its destructor clears it (option 2 of the 2020 LKML thread 'Rseq registration: Google tcmalloc vs glibc'). "
                 "Not for dlopen'd modules. Does not look at glibc.",
            registers="the module whose constructor claimed __rseq_handled",
            area_doc="shared __rseq_abi",
            unregisters="the handler's destructor (its thread); the kernel at thread exit",
            owner=_row("none", "self", "none", "self", "none", "none"),
            peer_owner=_row("none", "shared", "none", "shared", "none", "none"),
            expected_errnos=_errnos(glibc=["EINVAL"], glibc_static=["EINVAL"]),
        ),
        Protocol(
            name="compat",
            glibc_area=True, area="shared", cpu_id_check=True, refcount=True, handled_flag=False,
            rule="glibc's area when glibc registered; otherwise the shared __rseq_abi, registered "
                 "only while cpu_id == -1, with __rseq_refcount so dlopen'd co-adopters come and go "
                 "(what the 2020 LKML thread 'Rseq registration: Google tcmalloc vs glibc' recommends for early adopters, on top of today's glibc).",
            registers="glibc; else the module that takes the count from 0 to 1",
            area_doc="glibc's, else shared __rseq_abi",
            unregisters="when the count drops to 0 (explicit call or thread exit)",
            owner=_row("glibc", "self", "glibc", "self", "none", "none"),
            peer_owner=_row("glibc", "shared", "glibc", "shared", "none", "none"),
            expected_errnos=_errnos(),
        ),
    )
}

DEFAULT_PROTOCOL = "compat"


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise unknown_choice("--protocol", "protocol", name, PROTOCOLS) from None


ENVIRONMENT_TITLES = {
    "glibc": "glibc ≥ 2.35",
    "glibc-rseq-off": "glibc, rseq=0",
    "glibc-static": "static glibc",
    "musl-static": "musl",
    "seccomp-enosys": "ENOSYS",
    "seccomp-eperm": "seccomp EPERM",
}


def markdown_table() -> str:
    """The protocol table of docs/protocols.md, made from the rows above (a test
    keeps the page in step). Owner cells read lone module / second module."""
    envs = [ENVIRONMENT_TITLES[e] for e in ENVIRONMENTS]
    head = ["protocol", "who registers", "area", "unregistered", *envs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in PROTOCOLS.values():
        cells = []
        for env in ENVIRONMENTS:
            lone, peer = p.owner[env], p.peer_owner[env]
            cell = lone if lone == peer else f"{lone} / {peer}"
            errs = [e for e in p.expected_errnos[env] if e == "EINVAL"]
            cells.append(cell + (" (EINVAL)" if errs else ""))
        lines.append("| " + " | ".join([f"`{p.name}`", p.registers, p.area_doc, p.unregisters, *cells]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
