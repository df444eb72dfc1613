"""Who owns each thread's rseq registration in a process, predicted from
what the process holds: the adopters of rseq_gen.adopters, the protocols of
rseq_gen.protocols, how each module is loaded, and the libc environment.

The prediction replays, for one thread, the steps each module takes on it,
in the order they take them, against one piece of state: which area (if
any) the kernel has registered for the thread, and who registered it. Two
kinds of thread are replayed, because they meet the modules in different
orders:

- the main thread: the libc first, then the modules loaded at start-up in
  the order their constructors (or the application's start-up code) run,
  then the modules dlopen'd later, in load order;
- a worker thread created after every module was loaded: the libc first,
  then every module in the given order.

``first`` says which group touches a thread first where the modules'
load order does not decide it: "peer" (the other adopters) or "rseq-gen".
Within the rseq-gen group, start-up modules act in constructor order (each
registers the main thread from its constructor), which is not the lookup
order: ld.so runs the constructors of libraries that do not depend on each
other in the reverse of their load order, the executable's last, and a
static executable runs them in link order (measured; ``Member.init``).
Workers are assumed to meet them in the same order.

The generated runtime implements the rseq-gen side of these rules
(templates/rseq.c.j2); the coexistence matrix test measures each cell and
compares it with this prediction, as ``rseq-gen verify`` reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rseq_gen.adopters import (ADOPTERS, LIBC_ENVIRONMENT_TITLES, LIBC_ENVIRONMENTS, LIBC_REGISTERS, LIBRSEQ_ABI,
                               NO_DLSYM)
from rseq_gen.protocols import PROTOCOLS

THREADS = ("main", "worker")
ORDERS = ("peer", "rseq-gen")


@dataclass(frozen=True)
class Member:
    """One module of the process."""

    label: str
    adopter: str                 # a row of rseq_gen.adopters.ADOPTERS
    protocol: str | None = None  # for rseq-gen modules
    loaded: str = "startup"      # "startup" (executable, DT_NEEDED, preload) or "dlopen" (later)
    #: Rank in constructor order among the start-up members (lower runs
    #: first). None: the reverse of the list order, what ld.so does for an
    #: executable and libraries that do not depend on each other. Give it
    #: for a library that depends on another start-up member (it runs
    #: after it) and for the objects of a static executable (link order).
    init: int | None = None

    @property
    def is_rseq_gen(self) -> bool:
        return self.adopter == "rseq-gen"

    @property
    def defines_rseq_abi(self) -> bool:
        if self.is_rseq_gen:
            return PROTOCOLS[self.protocol].area == "shared"
        return ADOPTERS[self.adopter].area == "shared"


@dataclass
class ThreadOutcome:
    #: What each rseq-gen module's P_owner() reports on the thread.
    owners: dict = field(default_factory=dict)
    #: Each peer's state on the thread: "ok", "uses-glibc", "shared",
    #: "slow-mode", "refused" (registration refused: its own checks fail),
    #: "aborts", "denied" (the environment refuses everyone).
    peers: dict = field(default_factory=dict)
    #: Who made the live registration: "glibc", a member label, or "none".
    registrant: str = "none"


@dataclass
class Prediction:
    env: str
    first: str
    threads: dict = field(default_factory=dict)   # "main"/"worker" -> ThreadOutcome
    #: (label, thread, state, state alone) of every peer whose own checks
    #: fail although they pass alone ("refused", "aborts").
    broken: list = field(default_factory=list)
    #: The same for peers that still pass but lose their fast path ("slow-mode").
    degraded: list = field(default_factory=list)

    def fast_path(self, label: str) -> dict:
        return {t: o.owners.get(label, "none") != "none" for t, o in self.threads.items()}


class _Process:
    """Process-wide state of one replay."""

    def __init__(self, members: list[Member], env: str):
        self.members = members
        self.env = env
        startup = [m for m in members if m.loaded == "startup"]
        # __rseq_abi resolves to the first definition in lookup order: the
        # start-up modules in load order; a dlopen'd module's references go
        # to a start-up definition when there is one, else to its own.
        definers = [m for m in startup if m.defines_rseq_abi]
        self.startup_rseq_abi = definers[0].label if definers else None
        self.kind: dict[str, str] = {}          # rseq-gen label -> GLIBC/LIBRSEQ/OWN/NONE
        self.registered_any: dict[str, bool] = {}
        self.handler: str | None = None          # the handled-protocol module that claimed it
        self.peer_mode: dict[str, str] = {}     # tcmalloc-like: "fast"/"slow"; librseq: "succeeded"
        self.loaded = {m.label for m in startup}

    def rseq_abi_of(self, m: Member) -> str:
        return self.startup_rseq_abi or m.label

    def librseq_visible(self) -> bool:
        return any(m.adopter in LIBRSEQ_ABI and m.label in self.loaded for m in self.members)


def _librseq_area(proc: _Process, m: Member) -> str:
    """The area a librseq-ABI member publishes through rseq_offset."""
    return "glibc" if ADOPTERS[m.adopter].sees_glibc_registration(proc.env) else f"private:{m.label}"


def _librseq_registered(proc: _Process, state: dict) -> bool:
    reg = state["area"]
    return reg is not None and any(
        reg == _librseq_area(proc, m) for m in proc.members if m.adopter in LIBRSEQ_ABI)


def _register(proc: _Process, state: dict, area: str, who: str) -> str:
    """One rseq() call: "ok", "busy" (the same area already), "refused"
    (another area is registered: EINVAL), "denied" (ENOSYS/EPERM)."""
    if proc.env == "denied":
        return "denied"
    if state["area"] is None:
        state["area"], state["by"] = area, who
        return "ok"
    return "busy" if state["area"] == area else "refused"


def _rseq_gen_step(proc: _Process, m: Member, state: dict) -> None:
    p = PROTOCOLS[m.protocol]
    if m.label not in proc.kind:               # process init, at the module's first use
        if p.glibc_area and proc.env in LIBC_REGISTERS:
            proc.kind[m.label] = "GLIBC"
        elif proc.librseq_visible():
            proc.kind[m.label] = "LIBRSEQ"
        else:
            proc.kind[m.label] = "OWN" if p.area else "NONE"
        if p.handled_flag and p.area and proc.handler is None:
            proc.handler = m.label
    kind = proc.kind[m.label]
    if kind in ("OWN", "NONE") and proc.librseq_visible():
        # librseq arrived after this module's start: switch to its area while
        # this module registered nothing, else stop registering threads.
        if not proc.registered_any.get(m.label):
            kind = proc.kind[m.label] = "LIBRSEQ"
        elif state["area"] is None:
            state.setdefault("stopped", set()).add(m.label)
            return
    if kind in ("GLIBC", "LIBRSEQ", "NONE"):
        return
    area = f"private:{m.label}" if p.area == "private" else f"__rseq_abi:{proc.rseq_abi_of(m)}"
    if p.handled_flag and proc.handler != m.label:
        return                                  # only the handler registers
    if state["area"] == area:
        return                                  # a peer registered this very area
    if _register(proc, state, area, m.label) == "ok":
        proc.registered_any[m.label] = True


def _rseq_gen_owner(proc: _Process, m: Member, state: dict) -> str:
    kind = proc.kind.get(m.label, "NONE")
    if m.label in state.get("stopped", ()):
        kind = "NONE"
    p = PROTOCOLS[m.protocol]
    if kind == "GLIBC":
        return "glibc"
    if kind == "LIBRSEQ":
        return "librseq" if _librseq_registered(proc, state) else "none"
    if kind == "NONE":
        return "none"
    area = f"private:{m.label}" if p.area == "private" else f"__rseq_abi:{proc.rseq_abi_of(m)}"
    if state["area"] != area:
        return "none"
    return "self" if state["by"] == m.label else "shared"


def _peer_step(proc: _Process, m: Member, state: dict, out: ThreadOutcome) -> None:
    a = ADOPTERS[m.adopter]
    if a.area == "private":                     # librseq, selftests: on request
        if a.sees_glibc_registration(proc.env):
            out.peers[m.label] = "uses-glibc"
            return
        r = _register(proc, state, f"private:{m.label}", m.label)
        if r == "ok":
            proc.peer_mode[m.label] = "succeeded"
            out.peers[m.label] = "ok"
        elif r == "denied":
            out.peers[m.label] = "denied"
        else:
            out.peers[m.label] = "aborts" if proc.peer_mode.get(m.label) == "succeeded" else "refused"
        return
    if a.area == "shared":                      # tcmalloc: its __rseq_abi, when cpu_id < 0
        area = f"__rseq_abi:{proc.rseq_abi_of(m)}"
        mode = proc.peer_mode.get(m.label)
        if mode == "slow":
            out.peers[m.label] = "slow-mode"
            return
        if state["area"] == area:
            ok = True
        else:
            ok = _register(proc, state, area, m.label) == "ok"
        if mode is None:                        # the process's first per-CPU use decides
            if not ok:
                proc.peer_mode[m.label] = "slow"
                out.peers[m.label] = "slow-mode"
                return
            proc.peer_mode[m.label] = "fast"
            if a.needs_own_rseq_abi and proc.rseq_abi_of(m) != m.label:
                out.peers[m.label] = "aborts"  # its layout check fails
                return
        if not ok:
            out.peers[m.label] = "aborts"      # fast mode, and now a refused thread
            return
        out.peers[m.label] = "ok" if state["by"] == m.label else "shared"


def _replay(members: list[Member], env: str, first: str) -> dict[str, ThreadOutcome]:
    proc = _Process(members, env)
    startup = [m for m in members if m.loaded == "startup"]
    later = [m for m in members if m.loaded == "dlopen"]

    def rank(m: Member):
        if m.loaded == "dlopen":
            return (1, members.index(m))
        return (0, m.init if m.init is not None else -startup.index(m))

    def ordered(group):
        ours = sorted((m for m in group if m.is_rseq_gen), key=rank)
        peers = [m for m in group if not m.is_rseq_gen]
        return ours + peers if first == "rseq-gen" else peers + ours

    results = {}
    for thread in THREADS:
        state = {"area": "glibc" if env in LIBC_REGISTERS else None, "by": "glibc"}
        if thread == "main":
            steps = []
            for group in (ordered(startup), later):
                for m in group:
                    steps.append(m)
        else:
            steps = ordered(members)
        out = ThreadOutcome()
        for m in steps:
            proc.loaded.add(m.label)  # a dlopen'd module is visible from its load on
            if m.is_rseq_gen:
                _rseq_gen_step(proc, m, state)
            else:
                _peer_step(proc, m, state, out)
        out.registrant = state["by"] if state["area"] else "none"
        results[thread] = (out, state)
    # Owners are read at the end, as the program reports them: a module that
    # switched to librseq's area on a later thread reports it everywhere.
    for out, state in results.values():
        for m in members:
            if m.is_rseq_gen:
                out.owners[m.label] = _rseq_gen_owner(proc, m, state)
    return {t: out for t, (out, _) in results.items()}


_FINE = ("ok", "uses-glibc", "shared", "denied")
_DEGRADED = ("slow-mode",)


def predict(members: list[Member], env: str, first: str = "peer") -> Prediction:
    """The outcome of one process in one environment."""
    if env not in LIBC_ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}")
    pred = Prediction(env=env, first=first, threads=_replay(members, env, first))
    for m in members:
        if m.is_rseq_gen:
            continue
        alone = _replay([Member(m.label, m.adopter)], env, first)
        for thread, out in pred.threads.items():
            now, before = out.peers.get(m.label), alone[thread].peers.get(m.label)
            if now != before and now not in _FINE:
                (pred.degraded if now in _DEGRADED else pred.broken).append((m.label, thread, now, before))
    return pred


def order_matters(members: list[Member], env: str) -> bool:
    a, b = (predict(members, env, f) for f in ORDERS)
    return _summary(a) != _summary(b)


def _summary(p: Prediction):
    return {t: (o.owners, o.peers, o.registrant) for t, o in p.threads.items()}, p.broken, p.degraded


# ---- the pairing table of docs/protocols.md ----------------------------------


@dataclass(frozen=True)
class Scenario:
    """How a program holds one rseq-gen module and one peer."""

    title: str
    first: str               # predict()'s `first`
    rgen_loaded: str         # "startup" or "dlopen"
    peer_loaded: str
    #: Symbol lookup order of the start-up modules ("rseq-gen", "peer").
    lookup: tuple[str, ...]

    def members(self, protocol: str, adopter: str) -> list[Member]:
        loaded = {"rseq-gen": self.rgen_loaded, "peer": self.peer_loaded}
        order = [*self.lookup, *(u for u in ("rseq-gen", "peer") if loaded[u] == "dlopen")]
        return [Member("rseq-gen", "rseq-gen", protocol, loaded[u]) if u == "rseq-gen"
                else Member(adopter, adopter, None, loaded[u]) for u in order]


SCENARIOS = {
    # both at start-up, the peer earlier in lookup order and first on each thread
    "peer-first": Scenario("peer first", "peer", "startup", "startup", ("peer", "rseq-gen")),
    "rseq-gen-first": Scenario("rseq-gen first", "rseq-gen", "startup", "startup", ("rseq-gen", "peer")),
    "rseq-gen-dlopen": Scenario("rseq-gen dlopen'd", "peer", "dlopen", "startup", ("peer",)),
    "peer-dlopen": Scenario("peer dlopen'd", "rseq-gen", "startup", "dlopen", ("rseq-gen",)),
}

#: Peers of the pairing table (a second rseq-gen module is the protocol
#: table's "second module").
PAIRING_PEERS = ("librseq", "selftests", "tcmalloc")
_STATE_TEXT = {"ok": "ok", "uses-glibc": "ok (glibc's area)", "shared": "ok (shared area)",
               "slow-mode": "*slow mode*", "refused": "**refused**", "aborts": "**aborts**",
               "denied": "denied"}
#: What each conflict of the table means, why nothing can fix it, and what to
#: do instead (a test checks that every conflict the table shows is named).
PAIRING_NOTES = {
    "librseq": (
        "**refused** under static glibc: librseq looks glibc up with `dlsym(RTLD_NEXT)` only, "
        "which finds nothing in a static executable, so it registers its own area on threads "
        "glibc registered and gets EINVAL, alone as well as beside rseq-gen (whose `glibc`, `own` "
        "and `compat` modules use glibc's area). Link dynamically, or give librseq weak references "
        "to `__rseq_offset`/`__rseq_size` as the kernel selftests did. glibc cannot dlopen librseq: "
        "its initial-exec TLS area is aligned to 1024, above the start-up TLS alignment (64), and "
        "dlopen fails with \"cannot allocate memory in static TLS block\"; link it at start-up. "
        "librseq.a linked into an executable exports nothing: rseq-gen code in a shared library "
        "cannot see it and registers threads librseq then finds taken (checked with the real "
        "librseq); link such executables with "
        "`-Wl,--export-dynamic-symbol=rseq_offset,--export-dynamic-symbol=rseq_register_current_thread` "
        "(rseq-gen code in the executable itself sees it without that)."),
    "selftests": (
        "glibc cannot dlopen the 2026 selftests either (area aligned to 256). A librseq-ABI library "
        "that does arrive after rseq-gen code registered threads without glibc's registration "
        "(a build whose area is aligned to at most 64, such as the selftests before 2026; the test "
        "matrix measures one) is **refused** on those threads: the kernel keeps one area per thread "
        "and nothing can move a registration, so they stay with rseq-gen and "
        "`rseq_register_current_thread()` returns -1 there (librseq would abort once one of its "
        "registrations succeeded); from then on rseq-gen registers no more threads and uses the "
        "library's area where it registered. Do instead: link the library at start-up (DT_NEEDED or "
        "LD_PRELOAD), so every rseq-gen module sees it from its first call and never registers, or "
        "leave glibc's registration on."),
    "tcmalloc": (
        "**aborts** where an rseq-gen `__rseq_abi` (`cpu-id`, `refcount`, `handled`, `compat`) comes "
        "earlier in symbol lookup order than tcmalloc's, without glibc's registration: tcmalloc "
        "binds to that `__rseq_abi`, and once the area is registered its check that "
        "`tcmalloc_slabs` overlays `__rseq_abi.cpu_id_start` fails. A binding cannot change at run "
        "time. Do instead: link tcmalloc before the rseq-gen libraries (DT_NEEDED order; in a "
        "static link tcmalloc's strong definition wins anyway) and never dlopen it after them; "
        "then `compat` and tcmalloc share one area and both get a fast path. *slow mode* under "
        "glibc's registration is tcmalloc's own behaviour (it never reads glibc's symbols, so its "
        "registration is refused, alone too): only `GLIBC_TUNABLES=glibc.pthread.rseq=0` gives it "
        "per-CPU caches. `own` beside tcmalloc without glibc's registration: whichever registers "
        "a thread first keeps it, so either tcmalloc runs in slow mode (own first) or the `own` "
        "module runs on fallbacks (tcmalloc first), and a thread `own` registers after tcmalloc "
        "went fast makes tcmalloc abort; use `compat` linked after tcmalloc."),
}


def _pairing_outcome(protocol: str, adopter: str, env: str, scenario: Scenario) -> str:
    pred = predict(scenario.members(protocol, adopter), env, scenario.first)

    def one(t):
        o = pred.threads[t]
        return f"`{o.owners['rseq-gen']}` / {_STATE_TEXT[o.peers[adopter]]}"

    if pred.threads["main"].peers[adopter] == "aborts":
        return "**aborts** (main thread)"
    main, worker = one("main"), one("worker")
    return main if main == worker else f"main {main}, workers {worker}"


def _pairing_cell(protocol: str, adopter: str, env: str) -> str:
    groups: dict[str, list[str]] = {}
    for scenario in SCENARIOS.values():
        if "dlopen" in (scenario.rgen_loaded, scenario.peer_loaded) and env in NO_DLSYM:
            continue  # a static executable loads nothing later
        if scenario.peer_loaded == "dlopen" and ADOPTERS[adopter].dlopen_refused:
            continue  # glibc cannot load it later (the row says so)
        text = _pairing_outcome(protocol, adopter, env, scenario)
        groups.setdefault(text, []).append(scenario.title)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{', '.join(titles)}: {text}" for text, titles in groups.items())


def pairing_rows() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(adopter, protocols, one cell per column group) in table order; the
    environments with identical columns are merged (pairing_columns)."""
    columns = pairing_columns()
    rows = []
    for adopter in PAIRING_PEERS:
        by_cells: dict[tuple, list[str]] = {}
        for protocol in PROTOCOLS:
            cells = tuple(_pairing_cell(protocol, adopter, envs[0]) for envs in columns)
            by_cells.setdefault(cells, []).append(protocol)
        rows += [(adopter, tuple(protocols), list(cells)) for cells, protocols in by_cells.items()]
    return rows


def pairing_columns() -> list[tuple[str, ...]]:
    """LIBC_ENVIRONMENTS grouped where every pairing comes out the same."""
    groups: dict[tuple, list[str]] = {}
    for env in LIBC_ENVIRONMENTS:
        key = tuple(_pairing_cell(p, a, env) for a in PAIRING_PEERS for p in PROTOCOLS)
        groups.setdefault(key, []).append(env)
    return [tuple(envs) for envs in groups.values()]


def pairing_markdown() -> str:
    """The pairing table of docs/protocols.md and its notes (a test keeps the page in
    step): per peer and protocol, per environment, what the rseq-gen module's
    P_owner() reports / the peer's state, by how the program holds the two."""
    columns = pairing_columns()
    head = ["peer", "protocols", *(" / ".join(LIBC_ENVIRONMENT_TITLES[e] for e in envs) for envs in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for adopter, protocols, cells in pairing_rows():
        name = adopter + (" (cannot be dlopen'd)" if ADOPTERS[adopter].dlopen_refused else "")
        lines.append("| " + " | ".join([name, ", ".join(f"`{p}`" for p in protocols), *cells]) + " |")
    lines.append("")
    for adopter in PAIRING_PEERS:
        lines.append(f"- {adopter}: {PAIRING_NOTES[adopter]}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(pairing_markdown())
