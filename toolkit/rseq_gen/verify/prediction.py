"""The process a closure makes, as rseq_gen.coexistence replays it: its
members in symbol lookup order, who owns each thread's registration in each
libc environment of rseq_gen.adopters.LIBC_ENVIRONMENTS, which rseq-gen
modules get a fast path, the peers' states, and the conflicts as findings.

A module is one member per adopter it holds (rseq_gen.verify.recognise):
each rseq-gen note is a member labelled ``"<file>:<prefix>"``, any other
adopter a member labelled ``"<file>"``. glibc is not a member: the
environment says whether it registers.
"""

from __future__ import annotations

import os

from rseq_gen import coexistence
from rseq_gen.adopters import ADOPTERS, LIBC_ENVIRONMENT_TITLES, LIBC_ENVIRONMENTS, LIBC_REGISTERS
from rseq_gen.coexistence import ORDERS, THREADS, Member
from rseq_gen.protocols import PROTOCOLS

#: The libc a closure runs on, from the files it loads: a glibc that
#: publishes the rseq ABI is recognised by its symbols (ld.so, or libc.a in
#: a static program); the others by file name. None: no libc in the closure
#: (a static program without glibc's rseq symbols: musl, or glibc < 2.35).
LIBC_FILES = (
    ("ld-musl-", "musl"),
    ("libc.musl-", "musl"),
    ("libc.so.6", "glibc-old"),
    ("ld-linux", "glibc-old"),
)
#: The environments a closure can meet, per libc it runs on ("unknown": the
#: inputs alone, without their closure).
APPLICABLE = {
    "glibc": ("glibc", "glibc-rseq-off", "denied"),
    "glibc-old": ("glibc-old", "denied"),
    "musl": ("musl", "denied"),
    None: ("musl", "denied"),
    "unknown": LIBC_ENVIRONMENTS,
}
_FIRST_TITLES = {"peer": "when a peer touches the thread first",
                 "rseq-gen": "when an rseq-gen module touches the thread first"}
_STATE_TEXT = {
    "refused": "gets its registration refused (EINVAL: the thread already has another area)",
    "aborts": "aborts",
    "slow-mode": "runs in slow mode (no per-CPU fast path in the whole process)",
}


# ---------------------------------------------------------------------------
# members

def members_of(modules: list[dict]) -> tuple[list[dict], list[Member]]:
    """``modules``: ``[{"path", "facts", "loaded"}]`` in lookup order (the
    start-up ones, then the dlopen'd ones). Returns the members as the JSON
    report lists them, and as coexistence.Member rows."""
    rows, members = [], []
    for mod in modules:
        facts = mod["facts"] or {}
        path, loaded = mod["path"], mod["loaded"]
        for n in facts.get("notes", []):
            if n["protocol"] not in PROTOCOLS:
                continue
            prefix = n.get("prefix")
            label = f"{path}:{prefix or n['protocol']}"
            rows.append({"label": label, "file": path, "adopter": "rseq-gen", "protocol": n["protocol"],
                         "prefix": prefix, "loaded": loaded})
            members.append(Member(label, "rseq-gen", n["protocol"], loaded))
        peers = [a["name"] for a in facts.get("adopters", []) if a["name"] not in ("rseq-gen", "glibc")]
        for i, name in enumerate(peers):
            label = path if i == 0 else f"{path}({name})"
            rows.append({"label": label, "file": path, "adopter": name, "protocol": None, "prefix": None,
                         "loaded": loaded})
            members.append(Member(label, name, None, loaded))
    return rows, members


def libc_of(modules: list[dict]) -> str | None:
    if any(a["name"] == "glibc" for m in modules for a in (m["facts"] or {}).get("adopters", [])):
        return "glibc"
    for mod in modules:
        base = os.path.basename(mod["path"])
        for start, libc in LIBC_FILES:
            if base.startswith(start):
                return libc
    return None


def applicable_environments(libc: str | None, min_glibc) -> list[str]:
    envs = list(APPLICABLE[libc])
    if libc == "glibc" and min_glibc is not None and min_glibc < (2, 35):
        envs.insert(2, "glibc-old")  # the program must also load on a glibc without rseq
    return envs


# ---------------------------------------------------------------------------
# prediction

def _outcome(pred: coexistence.Prediction, members: list[Member]) -> dict:
    def entries(rows):
        return [{"label": label, "thread": thread, "state": state, "alone": alone}
                for label, thread, state, alone in rows]

    return {
        "threads": {t: {"owners": dict(o.owners), "peers": dict(o.peers), "registrant": o.registrant}
                    for t, o in pred.threads.items()},
        "fast_path": {m.label: pred.fast_path(m.label) for m in members if m.is_rseq_gen},
        "broken": entries(pred.broken),
        "degraded": entries(pred.degraded),
    }


def predict(modules: list[dict], libc_hint: str | None = None, min_glibc=None) -> dict:
    """The ``prediction`` object of one closure in the JSON report.
    ``libc_hint``: the libc to assume when no module tells (None: none in
    the closure; "unknown": the inputs alone, which may run anywhere)."""
    rows, members = members_of(modules)
    libc = libc_of(modules) or libc_hint
    return {
        "members": rows,
        "libc": libc,
        "applicable": applicable_environments(libc, min_glibc),
        "order_matters": {env: coexistence.order_matters(members, env) for env in LIBC_ENVIRONMENTS},
        "environments": {env: {first: _outcome(coexistence.predict(members, env, first), members)
                               for first in ORDERS}
                         for env in LIBC_ENVIRONMENTS},
    }


# ---------------------------------------------------------------------------
# findings

def _where(cases: set) -> str:
    """'with glibc.pthread.rseq=0 (either order), under musl (... first)'."""
    out = []
    for env in LIBC_ENVIRONMENTS:
        firsts = [f for f in ORDERS if (env, f) in cases]
        if not firsts:
            continue
        order = "either order" if len(firsts) == len(ORDERS) else _FIRST_TITLES[firsts[0]]
        out.append(f"{LIBC_ENVIRONMENT_TITLES[env]} ({order})")
    return "; ".join(out)


def _threads(cases: set) -> str:
    names = [t for t in THREADS if t in cases]
    return " and ".join(names) + (" threads" if len(names) > 1 else " thread")


def _file_of(label: str, rows: list[dict]) -> str:
    return next((r["file"] for r in rows if r["label"] == label), label)


class _Grouped:
    """Cases of one finding (env, first, thread) gathered under one key."""

    def __init__(self):
        self.cases: dict = {}

    def add(self, key, env, first, thread, culprits=()):
        entry = self.cases.setdefault(key, {"cases": set(), "threads": set(), "culprits": {}})
        entry["cases"].add((env, first))
        entry["threads"].add(thread)
        for c in culprits:
            entry["culprits"].setdefault(c, None)

    def items(self):
        return self.cases.items()


def _shadowing(rows: list[dict], modules: list[dict]) -> dict[str, str]:
    """{peer label: file of the earlier __rseq_abi definition} for every peer
    that needs its own __rseq_abi while another module's comes first in
    lookup order (start-up modules, in order; a dlopen'd module binds to a
    start-up definition when there is one)."""
    exported = {m["path"] for m in modules if (m["facts"] or {}).get("abi_exported")}
    definers = [m["path"] for m in modules if m["loaded"] == "startup" and m["path"] in exported]
    out = {}
    for r in rows:
        if r["adopter"] == "rseq-gen" or not ADOPTERS[r["adopter"]].needs_own_rseq_abi:
            continue
        if r["file"] not in exported:
            continue  # not interposable: its references bind to its own definition
        first = definers[0] if definers else r["file"]
        if first != r["file"]:
            out[r["label"]] = first
    return out


def findings(prediction: dict, modules: list[dict], add) -> None:
    """``add(rule_id, **fields)`` for each conflict the prediction shows in
    the environments the closure can meet."""
    rows = prediction["members"]
    by_label = {r["label"]: r for r in rows}
    envs = prediction["applicable"]
    shadowed = _shadowing(rows, modules)
    broken, degraded, fast, fallback = _Grouped(), _Grouped(), _Grouped(), _Grouped()
    for env in envs:
        for first in ORDERS:
            out = prediction["environments"][env][first]
            registrant = {t: out["threads"][t]["registrant"] for t in THREADS}
            for kind, group in (("broken", broken), ("degraded", degraded)):
                for e in out[kind]:
                    culprit = registrant[e["thread"]]
                    culprits = [_file_of(culprit, rows)] if culprit not in ("glibc", "none", e["label"]) \
                        else []
                    if e["label"] in shadowed and e["state"] == "aborts":
                        broken.add(("RSEQ704", e["label"]), env, first, e["thread"], [shadowed[e["label"]]])
                        continue
                    group.add((e["label"], e["state"], e["alone"]), env, first, e["thread"], culprits)
            for t in THREADS:
                for label, state in out["threads"][t]["peers"].items():
                    if state in ("ok", "shared") and ADOPTERS[by_label[label]["adopter"]].writes_cpu_id_start:
                        fast.add(label, env, first, t)
                for label, owner in out["threads"][t]["owners"].items():
                    if owner == "none" and registrant[t] != "none" and \
                            _alone_owner(by_label[label], env, first, t) != "none":
                        fallback.add(label, env, first, t, [_file_of(registrant[t], rows)]
                                     if registrant[t] != "glibc" else ["glibc"])
    for key, e in broken.items():
        if key[0] == "RSEQ704":
            label = key[1]
            add("RSEQ704", peer=label, adopter=by_label[label]["adopter"], by=", ".join(e["culprits"]),
                where=_where(e["cases"]))
            continue
        label, state, alone = key
        add("RSEQ703", peer=label, adopter=by_label[label]["adopter"], state=_STATE_TEXT.get(state, state),
            threads=_threads(e["threads"]), where=_where(e["cases"]),
            by=", ".join(e["culprits"]) or "the rseq-gen modules", alone=alone or "not involved")
    for (label, state, alone), e in degraded.items():
        add("RSEQ707", peer=label, adopter=by_label[label]["adopter"], threads=_threads(e["threads"]),
            where=_where(e["cases"]), by=", ".join(e["culprits"]) or "the rseq-gen modules",
            alone=alone or "not involved")
    _alone_findings(rows, envs, add)
    for label, e in fast.items():
        add("RSEQ706", peer=label, adopter=by_label[label]["adopter"], where=_where(e["cases"]))
    for label, e in fallback.items():
        add("RSEQ708", module=label, threads=_threads(e["threads"]), where=_where(e["cases"]),
            by=", ".join(e["culprits"]))


def _alone_owner(row: dict, env: str, first: str, thread: str) -> str:
    alone = coexistence.predict([Member(row["label"], "rseq-gen", row["protocol"])], env, first)
    return alone.threads[thread].owners[row["label"]]


def _alone_findings(rows: list[dict], envs, add) -> None:
    """Peers that lose their fast path under a registering libc even alone
    (they never use its area): tcmalloc under glibc >= 2.35."""
    for r in rows:
        if r["adopter"] == "rseq-gen":
            continue
        for env in envs:
            if env not in LIBC_REGISTERS:
                continue
            alone = coexistence.predict([Member(r["label"], r["adopter"])], env)
            if any(o.peers.get(r["label"]) == "slow-mode" for o in alone.threads.values()):
                add("RSEQ705", peer=r["label"], adopter=r["adopter"], env=LIBC_ENVIRONMENT_TITLES[env])


def owner_summary(prediction: dict) -> str:
    """RSEQ702's message: who registers the threads, per environment."""
    parts = []
    for env in prediction["applicable"]:
        per_first = {}
        for first in ORDERS:
            th = prediction["environments"][env][first]["threads"]
            regs = [th[t]["registrant"] for t in THREADS]
            per_first[first] = regs[0] if len(set(regs)) == 1 else \
                ", ".join(f"{t} {r}" for t, r in zip(THREADS, regs))
        if len(set(per_first.values())) == 1:
            text = per_first[ORDERS[0]]
        else:
            text = "; ".join(f"{f} first: {w}" for f, w in per_first.items())
        parts.append(f"{LIBC_ENVIRONMENT_TITLES[env]}: {text}")
    return " | ".join(parts)
