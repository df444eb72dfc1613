"""The process a closure makes, as rseq_gen.coexistence replays it: its
members in symbol lookup order, who owns each thread's registration in each
libc environment of rseq_gen.environments.LIBC_ENVIRONMENTS, which rseq-gen
modules get a fast path, the peers' states, and the conflicts as findings.

A module is one member per adopter it holds (rseq_gen.verify.recognise):
each rseq-gen note is a member labelled ``"<file>:<prefix>"``, any other
adopter a member labelled ``"<file>"``. glibc is not a member: the
environment says whether it registers. A module whose generated names an
earlier module in lookup order also exports (both built with
``--visibility default``) is no member either: every reference its code
makes binds to the earlier module's definitions, so it runs that module's
code and protocol (RSEQ507 reports it).

Rules: RSEQ702 registration-owner, RSEQ703 peer-broken, RSEQ704
rseq-abi-shadowed, RSEQ705 peer-slow-under-glibc, RSEQ706
cpu-id-start-overlay, RSEQ707 peer-slow-mode, RSEQ708 module-on-fallbacks.
"""

from __future__ import annotations

import os

from rseq_gen import coexistence
from rseq_gen.adopters import ADOPTERS
from rseq_gen.environments import LIBC_ENVIRONMENT_TITLES, LIBC_ENVIRONMENTS, LIBC_REGISTERS
from rseq_gen.coexistence import ORDERS, THREADS, Member
from rseq_gen.protocols import PROTOCOLS
from rseq_gen.verify.checks.conflicts import interposers
from rseq_gen.verify.model import Facts

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
    "glibc-static": ("glibc-static", "glibc-rseq-off", "denied"),
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
    report lists them, and as coexistence.Member rows.

    Within one file (a static executable holds everything) there is one
    merged __rseq_abi: a strong definition (tcmalloc's, in assembly) wins
    over the weak ones rseq-gen emits, so such a peer comes first in lookup
    order; and the file's constructors run in link order (the order of its
    rseq-gen notes), while separate start-up files run theirs in the reverse
    of lookup order: ``init`` ranks both (lower runs first)."""
    rows, members = [], []
    interposed = interposers([(m["path"], m["facts"]) for m in modules if m["facts"]])
    for index, mod in enumerate(modules):
        facts = mod["facts"] or Facts()
        path, loaded = mod["path"], mod["loaded"]
        here = []
        notes = [n for n in facts.notes if n["protocol"] in PROTOCOLS
                 and (path, n.get("prefix")) not in interposed]
        for n in notes:
            prefix = n.get("prefix")
            here.append(({"label": f"{path}:{prefix or n['protocol']}", "file": path, "adopter": "rseq-gen",
                          "protocol": n["protocol"], "prefix": prefix, "loaded": loaded}, False))
        peers = [a["name"] for a in facts.adopters if a["name"] not in ("rseq-gen", "glibc")]
        for i, name in enumerate(peers):
            label = path if i == 0 else f"{path}({name})"
            here.append(({"label": label, "file": path, "adopter": name, "protocol": None, "prefix": None,
                          "loaded": loaded}, ADOPTERS[name].area == "shared"))
        # strong __rseq_abi definers first, then the rest in note (link) order
        here.sort(key=lambda item: not item[1])
        for rank, (row, _) in enumerate(here):
            row["init"] = -1000 * index + rank if loaded == "startup" else None
            rows.append(row)
            members.append(Member(row["label"], row["adopter"], row["protocol"], loaded, row["init"]))
    return rows, members


def libc_of(modules: list[dict]) -> str | None:
    """The libc of the process (glibc, glibc-static, musl), from its modules; None when none tells."""
    glibc = [m for m in modules if any(a["name"] == "glibc" for a in (m["facts"] or Facts()).adopters)]
    if glibc:
        # glibc's symbols in a file that is not its dynamic linker: libc.a
        # linked into a static executable.
        dynamic = any(os.path.basename(m["path"]).startswith("ld-linux") for m in modules)
        return "glibc" if dynamic else "glibc-static"
    for mod in modules:
        base = os.path.basename(mod["path"])
        for start, libc in LIBC_FILES:
            if base.startswith(start):
                return libc
    return None


def applicable_environments(libc: str | None, min_glibc) -> list[str]:
    envs = list(APPLICABLE[libc])
    if libc in ("glibc", "glibc-static") and min_glibc is not None and min_glibc < (2, 35):
        envs.insert(2, "glibc-old")  # the program must also load on a glibc without rseq
    return envs


# ---------------------------------------------------------------------------
# prediction

def _outcome(pred: coexistence.Prediction, members: list[Member]) -> dict:
    """One (environment, first) case of the prediction as the JSON report has it."""
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
    """The (environment, first) cases as text: 'glibc, glibc.pthread.rseq=0
    (either order); musl (when a peer touches the thread first)'."""
    out = []
    for env in LIBC_ENVIRONMENTS:
        firsts = [f for f in ORDERS if (env, f) in cases]
        if not firsts:
            continue
        order = "either order" if len(firsts) == len(ORDERS) else _FIRST_TITLES[firsts[0]]
        out.append(f"{LIBC_ENVIRONMENT_TITLES[env]} ({order})")
    return "; ".join(out)


def _threads(threads: set) -> str:
    names = [t for t in THREADS if t in threads]
    return " and ".join(names) + (" threads" if len(names) > 1 else " thread")


class _Cases:
    """The cases (environment, first, thread) of each finding, and the files
    that bring it, gathered under the finding's key."""

    def __init__(self):
        self.by_key: dict = {}

    def add(self, key, env: str, first: str, thread: str, files=()) -> None:
        entry = self.by_key.setdefault(key, {"cases": set(), "threads": set(), "files": {}})
        entry["cases"].add((env, first))
        entry["threads"].add(thread)
        entry["files"].update(dict.fromkeys(files))

    def items(self):
        for key, e in self.by_key.items():
            yield key, {"where": _where(e["cases"]), "threads": _threads(e["threads"]),
                        "by": ", ".join(e["files"])}


def _shadowing(rows: list[dict], modules: list[dict]) -> dict[str, str]:
    """{peer label: file of the earlier __rseq_abi definition} for every peer
    that needs its own __rseq_abi while another module's comes first in
    lookup order (start-up modules, in order; a dlopen'd module binds to a
    start-up definition when there is one)."""
    exported = {m["path"] for m in modules if m["facts"] and m["facts"].abi_exported}
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


def _alone(row: dict, env: str, first: str) -> coexistence.Prediction:
    return coexistence.predict([Member(row["label"], row["adopter"], row["protocol"])], env, first)


def findings(prediction: dict, modules: list[dict], add) -> None:
    """``add(rule_id, **fields)``: RSEQ702 (who registers), then each
    conflict the prediction shows in the environments the closure can meet."""
    add("RSEQ702", summary=owner_summary(prediction))
    rows = {r["label"]: r for r in prediction["members"]}
    shadowed = _shadowing(prediction["members"], modules)

    def holder(label: str) -> list[str]:
        """The file whose registration a thread has ("glibc" for glibc's)."""
        return [] if label == "none" else [rows[label]["file"] if label in rows else label]

    found = {rule: _Cases() for rule in ("RSEQ703", "RSEQ704", "RSEQ706", "RSEQ707", "RSEQ708")}
    for env in prediction["applicable"]:
        for first in ORDERS:
            out = prediction["environments"][env][first]
            threads = out["threads"]
            for kind, rule in (("broken", "RSEQ703"), ("degraded", "RSEQ707")):
                for e in out[kind]:
                    label, thread = e["label"], e["thread"]
                    if kind == "broken" and e["state"] == "aborts" and label in shadowed:
                        found["RSEQ704"].add(label, env, first, thread, [shadowed[label]])
                    else:
                        found[rule].add((label, e["state"], e["alone"]), env, first, thread,
                                        holder(threads[thread]["registrant"]))
            for t, th in threads.items():
                for label, state in th["peers"].items():
                    if state in ("ok", "shared") and ADOPTERS[rows[label]["adopter"]].writes_cpu_id_start:
                        found["RSEQ706"].add(label, env, first, t)
                for label, owner in th["owners"].items():
                    if owner == "none" and th["registrant"] != "none" and \
                            _alone(rows[label], env, first).threads[t].owners[label] != "none":
                        found["RSEQ708"].add(label, env, first, t, holder(th["registrant"]))

    def peer(label: str) -> dict:
        return {"peer": label, "adopter": rows[label]["adopter"]}

    for (label, state, alone), f in found["RSEQ703"].items():
        add("RSEQ703", **peer(label), state=_STATE_TEXT.get(state, state), threads=f["threads"],
            where=f["where"], by=f["by"] or "the rseq-gen modules", alone=alone)
    for label, f in found["RSEQ704"].items():
        add("RSEQ704", **peer(label), by=f["by"], where=f["where"])
    for label, row in rows.items():  # RSEQ705: slow under a registering libc even alone
        if row["adopter"] == "rseq-gen":
            continue
        for env in prediction["applicable"]:
            if env in LIBC_REGISTERS and any(o.peers.get(label) == "slow-mode"
                                             for o in _alone(row, env, ORDERS[0]).threads.values()):
                add("RSEQ705", **peer(label), env=LIBC_ENVIRONMENT_TITLES[env])
    for label, f in found["RSEQ706"].items():
        add("RSEQ706", **peer(label), where=f["where"])
    for (label, state, alone), f in found["RSEQ707"].items():
        add("RSEQ707", **peer(label), threads=f["threads"], where=f["where"],
            by=f["by"] or "the rseq-gen modules", alone=alone)
    for label, f in found["RSEQ708"].items():
        add("RSEQ708", module=label, threads=f["threads"], where=f["where"], by=f["by"])


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
