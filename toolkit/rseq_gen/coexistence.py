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

The generated runtime implements the rseq-gen side of these rules
(templates/rseq.c.j2); the coexistence matrix test measures each cell and
compares it with this prediction, as ``rseq-gen verify`` reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rseq_gen.adopters import ADOPTERS, LIBC_ENVIRONMENTS, LIBC_REGISTERS, LIBRSEQ_ABI
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


def _librseq_registered(proc: _Process, state: dict) -> bool:
    reg = state["area"]
    return reg is not None and (reg == "glibc" or any(
        reg == f"private:{m.label}" for m in proc.members if m.adopter in LIBRSEQ_ABI))


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
        if a.uses_glibc_area and proc.env in LIBC_REGISTERS:
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

    def ordered(group):
        ours = [m for m in group if m.is_rseq_gen]
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
