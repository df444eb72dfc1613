"""The coexistence matrix: an rseq-gen module of every protocol beside every
kind of peer, in every load order, in every libc environment, run on this
kernel and compared with the verifier's prediction.

A cell is (protocol, peer, order, environment):

- peer: none (glibc's own registration is the environment, not a peer); a
  librseq-like, a selftests-like and a tcmalloc-like library
  (tests/c/coexist_*.c, written by this project from the documented
  behaviour of those adopters); a second rseq-gen module (prefix q, the same
  protocol);
- order: rseq_gen.coexistence.SCENARIOS (peer first, rseq-gen first, each
  linked at start-up and earlier in lookup order; rseq-gen dlopen'd; peer
  dlopen'd);
- environment: ENVS below.

The program is tests/c/coexist_main.c: it uses each module on the main
thread and on three workers in the cell's order, then every rseq-gen module
counts per-CPU adds with migrations. Every cell asserts:

- no crash and no abort, except where the prediction says a peer aborts,
  and then exactly that peer on exactly that thread;
- each peer's state and its own checks (registration returns 0 on every
  thread it is asked for, its area follows the CPU; tcmalloc's layout
  check), and "broken"/"degraded" as measured against the peer alone;
- the owner each rseq-gen module reports, and which modules get a fast path;
- at most one live registration per thread, exactly one where somebody
  registered the thread, none otherwise, and refusals only with EINVAL
  (strace -ff);
- exact per-CPU counts;
- that the verifier's prediction for the closure
  (prediction.environments[env][first]) equals all of the above.

Cells that cannot exist are listed in cannot_exist() with the reason, and
test_cells_that_cannot_exist checks what can be checked of each reason.

Builds are shared by every cell of a pytest session, across pytest-xdist
workers too (a file lock per artifact in the session's base directory).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import locked, require_tool, ROOT, run_build, run_rseq_gen
from rseq_gen import cli
from rseq_gen.coexistence import SCENARIOS, Member, predict
from rseq_gen.environments import ENVIRONMENT_VARIABLES
from rseq_gen.protocols import PROTOCOLS
from test_matrix import strace_by_thread, strace_command

C_DIR = ROOT / "tests" / "c"
CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-g")
THREADS = 3
ADDS = 4000


@dataclass(frozen=True)
class Peer:
    adopter: str                 # row of rseq_gen.adopters.ADOPTERS
    sources: tuple[str, ...]     # in tests/c; () for the second rseq-gen module

    @property
    def is_rseq_gen(self) -> bool:
        return self.adopter == "rseq-gen"


PEERS = {
    "none": None,
    "librseq": Peer("librseq", ("coexist_librseq.c", "coexist_librseq_app.c")),
    "selftests": Peer("selftests", ("coexist_selftests.c", "coexist_librseq_app.c")),
    "tcmalloc": Peer("tcmalloc", ("coexist_tcmalloc.c", "coexist_tcmalloc_tls.S")),
    "rseq-gen": Peer("rseq-gen", ()),
}


#: The four ways a program holds the two (rseq_gen.coexistence.SCENARIOS:
#: which group uses each thread first, how each is loaded, the start-up
#: symbol lookup order). Units here: "r" (the rseq-gen module) and "peer".
ORDERS = SCENARIOS
_UNIT = {"rseq-gen": "r", "peer": "peer"}


def lookup_of(order: str) -> tuple[str, ...]:
    return tuple(_UNIT[u] for u in ORDERS[order].lookup)


def link_order(order: str, peer: str, static: bool) -> tuple[str, ...]:
    """DT_NEEDED order (dynamic) or object order (static) of the start-up
    units. A second rseq-gen module acts from its constructor; ld.so runs
    constructors in the reverse of DT_NEEDED order, a static executable in
    link order (measured; coexistence.Member.init)."""
    lookup = lookup_of(order)
    if peer == "none":
        return tuple(u for u in lookup if u == "r")
    if PEERS[peer].is_rseq_gen and len(lookup) == 2 and not static:
        return tuple(reversed(lookup))
    return lookup


@dataclass(frozen=True)
class Env:
    libc: str        # "glibc" or "musl"
    static: bool
    predict: str     # rseq_gen.environments.LIBC_ENVIRONMENTS


ENVS = {
    "glibc": Env("glibc", False, "glibc"),
    "glibc-rseq-off": Env("glibc", False, "glibc-rseq-off"),
    "glibc-static": Env("glibc", True, "glibc-static"),
    "musl-static": Env("musl", True, "musl"),
}

#: Measured (see test_cells_that_cannot_exist): glibc refuses to dlopen an
#: object whose initial-exec TLS is aligned above the start-up TLS alignment.
STATIC_TLS_FAILURE = "cannot allocate memory in static TLS block"


def cannot_exist(protocol: str, peer: str, order: str, env: str) -> str | None:
    """Why a cell cannot exist, or None."""
    if ENVS[env].static and "dlopen" in (ORDERS[order].rgen_loaded, ORDERS[order].peer_loaded):
        return ("a static executable loads nothing later here: static glibc's dlopen would bring in "
                "a second, shared libc with its own TLS and rseq state, and musl's static dlopen "
                "always fails")
    if peer == "none" and order == "peer-dlopen":
        return "no peer to load"
    if peer == "none" and order == "rseq-gen-first":
        return "the same process as peer-first: without a peer there is no order"
    if peer == "librseq" and order == "peer-dlopen":
        return ("glibc cannot dlopen librseq: its initial-exec TLS area is aligned to 1024, above the "
                f"start-up TLS alignment, so dlopen fails with '{STATIC_TLS_FAILURE}' (the real "
                "librseq.so too); the selftests-like peer, with the same names and no such "
                "alignment, is the librseq-ABI library loaded later")
    return None


ALL_CELLS = list(itertools.product(PROTOCOLS, PEERS, ORDERS, ENVS))
CELLS = [c for c in ALL_CELLS if cannot_exist(*c) is None]
IMPOSSIBLE = [c for c in ALL_CELLS if cannot_exist(*c) is not None]


def _cell_id(cell) -> str:
    return "-".join(cell)


# ---- builds, shared across cells and xdist workers ---------------------------


def _run(cmd, cwd=None):
    proc = run_build(cmd, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}{proc.stderr}")


class Builds:
    """Every file a cell needs, built on first use once per session: the
    generated code per protocol, objects per libc, the peer and rseq-gen
    shared libraries, and the programs."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _once(self, rel: str, make) -> Path:
        path = self.root / rel
        done = path.with_name(path.name + ".done")
        if done.exists():
            return path
        with locked(path.with_name(path.name + ".lock")):
            if not done.exists():
                make(path)
                done.touch()
        return path

    @staticmethod
    def _cc(libc: str) -> list[str]:
        if libc == "musl":
            return [require_tool("musl-gcc", "musl-tools")]
        return [require_tool("gcc"), "-fPIC"]

    def generated(self, protocol: str) -> Path:
        def make(path):
            for prefix in ("r", "q"):
                rc = cli.main(["generate", "--protocol", protocol, "--prefix", prefix, "--output-dir", str(path)])
                assert rc == 0, f"rseq-gen generate --protocol {protocol} --prefix {prefix} failed"
        return self._once(f"gen/{protocol}", make)

    def _object(self, libc: str, rel: str, src: Path, *flags) -> Path:
        return self._once(f"{libc}/obj/{rel}.o", lambda path: _run(
            [*self._cc(libc), *CFLAGS, f"-I{C_DIR}", *flags, "-c", src, "-o", path]))

    def peer_objects(self, libc: str, peer: str) -> list[Path]:
        return [self._object(libc, f"peer-{peer}-{Path(s).stem}", C_DIR / s) for s in PEERS[peer].sources]

    def rgen_objects(self, libc: str, protocol: str, prefix: str) -> list[Path]:
        gen = self.generated(protocol)
        flags = (f"-I{gen}", f"-DMOD={prefix}", f'-DMOD_HEADER="{prefix}_rseq.h"')
        return [self._object(libc, f"{protocol}-{prefix}-module", C_DIR / "matrix_module.c", *flags),
                self._object(libc, f"{protocol}-{prefix}-rseq", gen / f"{prefix}_rseq.c", *flags)]

    def driver_object(self, libc: str) -> Path:
        return self._object(libc, "coexist_main", C_DIR / "coexist_main.c")

    def _shared(self, rel: str, objects: list[Path]) -> Path:
        # -z nodelete: what the CMake package does for an owning library
        return self._once(rel, lambda path: _run(
            [require_tool("gcc"), "-shared", *objects, "-o", path, f"-Wl,-soname,{path.name}",
             "-Wl,-z,nodelete", "-lpthread"]))

    def rgen_library(self, protocol: str, prefix: str = "r") -> Path:
        return self._shared(f"glibc/{protocol}/librgen-{prefix}.so", self.rgen_objects("glibc", protocol, prefix))

    def peer_library(self, protocol: str, peer: str) -> Path:
        if PEERS[peer].is_rseq_gen:
            return self.rgen_library(protocol, "q")
        return self._shared(f"glibc/peers/libpeer-{peer}.so", self.peer_objects("glibc", peer))

    def dynamic_program(self, protocol: str, peer: str, lookup: tuple[str, ...]) -> Path:
        """The driver linked (in this DT_NEEDED order) against the libraries
        named by `lookup` ("r", "peer")."""
        libs = [self.rgen_library(protocol) if unit == "r" else self.peer_library(protocol, peer)
                for unit in lookup]
        rpath = ":".join(sorted({str(lib.parent) for lib in libs}))
        name = "-".join(lookup) or "alone"
        driver = self.driver_object("glibc")
        return self._once(f"glibc/{protocol}/{peer}/{name}", lambda path: _run(
            [require_tool("gcc"), driver, "-Wl,--no-as-needed", *libs, *([f"-Wl,-rpath,{rpath}"] if libs else []),
             "-o", path, "-lpthread"]))

    def static_program(self, libc: str, protocol: str | None, peer: str,
                       units: tuple[str, ...] = ("peer", "r")) -> Path:
        """The driver, the peer and (unless protocol is None) the rseq-gen
        module in one static executable, their objects in `units` order
        (constructors run in link order)."""
        objects = [self.driver_object(libc)]
        for unit in units:
            if unit == "peer" and peer != "none":
                objects += (self.rgen_objects(libc, protocol, "q") if PEERS[peer].is_rseq_gen
                            else self.peer_objects(libc, peer))
            elif unit == "r" and protocol is not None:
                objects += self.rgen_objects(libc, protocol, "r")
        cc = self._cc(libc)[:1]
        return self._once(f"{libc}/{protocol or 'alone'}/{peer}/static-{'-'.join(units)}", lambda path: _run(
            [*cc, "-static", *objects, "-o", path, "-lpthread"]))


@pytest.fixture(scope="session")
def builds(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    # under pytest-xdist every worker has its own base directory below one
    # session directory: share the builds there
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return Builds(root / "coexist-builds")


# ---- one run ---------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    events: list
    stderr: str
    threads: dict           # tid -> (max live, errnos, successes)

    def of(self, kind: str) -> list:
        return [e for e in self.events if e.get("event") == kind]

    @property
    def aborted(self) -> bool:
        return self.returncode in (-signal.SIGABRT, 128 + signal.SIGABRT)


def run_program(program: Path, env_name: str, first: str, tmp: Path, *args) -> Run:
    trace_dir = tmp / "strace"
    trace_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(ENVIRONMENT_VARIABLES[env_name])
    env["COEXIST_FIRST"] = first
    cmd = [*strace_command(trace_dir), str(program), "--threads", str(THREADS), "--adds", str(ADDS), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return Run(proc.returncode, events, proc.stderr, strace_by_thread(trace_dir))


def _thread_kind(name: str) -> str:
    return "main" if name == "main" else "worker"


def measured_threads(run: Run) -> dict[str, dict]:
    """Per thread name: owners of each rseq-gen unit, the peer's state and
    check, and who registered the thread (as the prediction names them)."""
    glibc = run.of("process")[0]["glibc_registered"]
    out = {}
    for t in run.of("thread"):
        owners = {unit: info["owner"] for unit, info in t["owners"].items()}
        peer = t.get("peer")
        if glibc:
            registrant = "glibc"
        elif "self" in owners.values():
            registrant = next(u for u, o in owners.items() if o == "self")
        elif peer is not None and peer["state"] == "ok":
            registrant = "peer"
        else:
            registrant = "none"
        out[t["thread"]] = {"owners": owners, "peer": peer["state"] if peer else None,
                            "check": peer["check"] if peer else "", "registrant": registrant,
                            "tid": t["tid"]}
    return out


# ---- the prediction ----------------------------------------------------------


def members_of(protocol: str, peer: str, order: str, env: str, files: dict) -> list[dict]:
    """The closure's members as the verifier lists them (JSON contract):
    lookup order, labels "<file>:<prefix>" for rseq-gen modules and
    "<file>" for other adopters. `files`: unit -> the file holding it.
    "init" (not in the contract yet) is the constructor rank where it is not
    the reverse of the list order: in a static executable, link order."""
    o, p = ORDERS[order], PEERS[peer]

    def member(unit, init=None):
        if unit == "r":
            m = {"label": f"{files['r']}:r", "file": str(files["r"]), "adopter": "rseq-gen",
                 "protocol": protocol, "prefix": "r", "loaded": o.rgen_loaded}
        elif p.is_rseq_gen:
            m = {"label": f"{files['peer']}:q", "file": str(files["peer"]), "adopter": "rseq-gen",
                 "protocol": protocol, "prefix": "q", "loaded": o.peer_loaded}
        else:
            m = {"label": str(files["peer"]), "file": str(files["peer"]), "adopter": p.adopter,
                 "protocol": None, "prefix": None, "loaded": o.peer_loaded}
        m["init"] = init
        return m

    if peer == "none":
        return [member("r")]
    units = link_order(order, peer, ENVS[env].static)
    if ENVS[env].static:
        # One executable: constructors run in link order. A strong
        # __rseq_abi (tcmalloc's, in assembly) wins over rseq-gen's weak
        # ones whatever the order; two rseq-gen modules' are identical.
        if p.adopter == "tcmalloc":
            units = ("peer", "r")
        return [member(u, init=units.index(u)) for u in units]
    units = [*units, *(["r"] if o.rgen_loaded == "dlopen" else []),
             *(["peer"] if o.peer_loaded == "dlopen" else [])]
    return [member(u) for u in units]


def _reported_prediction(program: Path, plugins: list[Path], env: str, first: str) -> tuple[list[dict], dict]:
    """The prediction `rseq-gen verify --closure` reports for the program."""
    plugin_args = [a for p in plugins for a in ("--plugin", str(p))]
    proc = run_rseq_gen("verify", "--closure", program, *plugin_args, "--format", "json", check=False)
    assert proc.returncode in (0, 1), proc.stderr
    (closure,) = json.loads(proc.stdout)["closures"]
    prediction = closure["prediction"]
    return prediction["members"], prediction["environments"][env][first]


def verifier_prediction(program: Path, plugins: list[Path], members: list[dict], env: str,
                        first: str) -> tuple[list[dict], dict]:
    """(prediction.members, prediction.environments[env][first]) of
    `rseq-gen verify --closure PROGRAM [--plugin P ...] --format json`,
    after checking that it found the modules this test built, each as what
    it is and loaded as it is (``members``, from members_of)."""
    reported, outcome = _reported_prediction(program, plugins, env, first)

    def key(m):
        return (m["label"], m["adopter"], m["protocol"], m["loaded"])

    assert sorted(map(key, reported)) == sorted(map(key, members)), (reported, members)
    return reported, outcome


def canonical(members: list[dict], outcome: dict) -> dict:
    """The prediction keyed by this test's unit names (r, q, peer)."""
    unit = {m["label"]: (m["prefix"] if m["adopter"] == "rseq-gen" else "peer") for m in members}
    threads = {}
    for t, o in outcome["threads"].items():
        peers = {unit[label]: state for label, state in o["peers"].items()}
        threads[t] = {"owners": {unit[label]: owner for label, owner in o["owners"].items()},
                      "peer": peers.get("peer"),
                      "registrant": unit.get(o["registrant"], o["registrant"])}
    return {"threads": threads,
            "fast_path": {unit[label]: v for label, v in outcome["fast_path"].items()},
            "broken": sorted((unit[b["label"]], b["thread"]) for b in outcome["broken"]),
            "degraded": sorted((unit[d["label"]], d["thread"]) for d in outcome["degraded"])}


# ---- the peer alone ----------------------------------------------------------

#: Peer states whose own checks pass (slow mode works, without per-CPU caches).
CHECKS_PASS = ("ok", "uses-glibc", "shared", "slow-mode", "denied")

_alone_cache: dict = {}


def peer_alone(builds: Builds, peer: str, env: str, tmp: Path) -> dict:
    """The peer's state per thread kind with no rseq-gen code in the
    process, measured (once per session and worker)."""
    key = (peer, env)
    if key not in _alone_cache:
        e = ENVS[env]
        program = (builds.static_program(e.libc, None, peer, ("peer",)) if e.static
                   else builds.dynamic_program(next(iter(PROTOCOLS)), peer, ("peer",)))
        run = run_program(program, env, "peer", tmp / f"alone-{peer}-{env}")
        assert run.returncode == 0, f"{peer} alone in {env}: {run.returncode}\n{run.stderr[-2000:]}"
        states = {}
        for name, t in measured_threads(run).items():
            states.setdefault(_thread_kind(name), set()).add(t["peer"])
        assert all(len(v) == 1 for v in states.values()), states
        _alone_cache[key] = {k: v.pop() for k, v in states.items()}
    return _alone_cache[key]


@pytest.mark.parametrize("env", list(ENVS))
@pytest.mark.parametrize("peer", [p for p, v in PEERS.items() if v is not None and not v.is_rseq_gen])
def test_peer_alone(peer, env, builds, tmp_path):
    """Each peer fixture alone behaves as its adopter row predicts, and its
    own checks pass wherever its state says they should."""
    alone = peer_alone(builds, peer, env, tmp_path)
    pred = predict([Member("peer", PEERS[peer].adopter)], ENVS[env].predict, "peer")
    assert alone == {t: o.peers["peer"] for t, o in pred.threads.items()}


# ---- the matrix --------------------------------------------------------------


def _program(builds: Builds, protocol, peer, order, env):
    """(program, arguments, {unit: file}, plugins) for one cell."""
    o, e = ORDERS[order], ENVS[env]
    if e.static:
        program = builds.static_program(e.libc, protocol, peer, link_order(order, peer, static=True))
        return program, [], {"r": program, "peer": program}, []
    program = builds.dynamic_program(protocol, peer, link_order(order, peer, static=False))
    files = {"r": builds.rgen_library(protocol)}
    if peer != "none":
        files["peer"] = builds.peer_library(protocol, peer)
    args, plugins = [], []
    if o.rgen_loaded == "dlopen":
        args, plugins = ["--dlopen-rgen", str(files["r"])], [files["r"]]
    if o.peer_loaded == "dlopen":
        args, plugins = ["--dlopen-peer", str(files["peer"])], [files["peer"]]
    return program, args, files, plugins


@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
def test_cell(cell, builds, tmp_path):
    protocol, peer, order, env = cell
    o, e = ORDERS[order], ENVS[env]
    program, args, files, plugins = _program(builds, protocol, peer, order, env)
    members, outcome = verifier_prediction(program, plugins, members_of(protocol, peer, order, env, files),
                                           e.predict, o.first)
    want = canonical(members, outcome)
    run = run_program(program, env, o.first, tmp_path, *args)

    # strace: never two registrations at once on any thread
    assert all(t[0] <= 1 for t in run.threads.values()), f"a thread held two registrations: {run.threads}"

    aborting = [t for t in ("main", "worker") if want["threads"][t]["peer"] == "aborts"]
    if aborting:
        assert run.aborted, (f"predicted: {peer} aborts on the {aborting[0]} thread; measured exit "
                             f"{run.returncode}\n{run.stderr[-2000:]}")
        touches = [ev for ev in run.events if ev["event"] in ("touch", "peer_abort")]
        last = touches[touches.index(run.of("peer_abort")[0]) - 1]
        assert (_thread_kind(last["thread"]), last["unit"]) == (aborting[0], "peer"), \
            f"the abort happened in {last}, predicted on the {aborting[0]} thread"
        assert ("peer", aborting[0]) in want["broken"]
        return
    assert run.returncode == 0 and run.of("done"), \
        f"exit {run.returncode}\n{run.events[-5:]}\n{run.stderr[-2000:]}"

    got = measured_threads(run)
    assert set(got) == {"main", *(f"worker{i}" for i in range(THREADS))}
    alone = peer_alone(builds, peer, env, tmp_path) if peer in ("librseq", "selftests", "tcmalloc") else {}
    broken, degraded = set(), set()
    for name, t in got.items():
        kind = _thread_kind(name)
        w = want["threads"][kind]
        assert t["owners"] == w["owners"], f"{name}: owners {t['owners']}, predicted {w['owners']}"
        assert t["peer"] == w["peer"], f"{name}: peer {t['peer']}, predicted {w['peer']}"
        assert t["registrant"] == w["registrant"], \
            f"{name}: registered by {t['registrant']}, predicted {w['registrant']}"
        for unit, fast in want["fast_path"].items():
            assert (t["owners"][unit] != "none") == fast[kind], f"{name}: fast path of {unit}"
        if t["peer"] is not None and t["peer"] in CHECKS_PASS:
            assert t["check"] == "", f"{name}: the peer's own checks failed: {t['check']}"
        elif t["peer"] is not None:
            assert t["check"], f"{name}: peer state {t['peer']} but its checks passed"
        if t["peer"] is not None and t["peer"] != alone.get(kind):
            if t["peer"] == "slow-mode":
                degraded.add(("peer", kind))
            elif t["peer"] not in CHECKS_PASS:
                broken.add(("peer", kind))
        # strace, for this thread: one registration exactly where someone registered it
        max_live, errnos, successes, _ = run.threads[t["tid"]]
        assert successes == (t["registrant"] != "none"), \
            f"{name}: {successes} successful registrations, registrant {t['registrant']}"
        assert set(errnos) <= {"EINVAL"}, f"{name}: refused with {errnos}"
    assert sorted(broken) == want["broken"], f"broken: measured {sorted(broken)}, predicted {want['broken']}"
    assert sorted(degraded) == want["degraded"]
    for count in run.of("count"):
        assert count["got"] == count["expected"] == THREADS * ADDS, count


def test_every_cell_is_run_or_listed():
    assert len(CELLS) + len(IMPOSSIBLE) == len(PROTOCOLS) * len(PEERS) * len(ORDERS) * len(ENVS)
    assert CELLS and IMPOSSIBLE


@pytest.mark.parametrize("cell", IMPOSSIBLE, ids=_cell_id)
def test_cell_that_cannot_exist(cell, builds, tmp_path):
    """A cell the matrix cannot run, with its reason; where the reason is a
    measurement on this machine, it is measured again."""
    protocol, peer, order, env = cell
    reason = cannot_exist(*cell)
    assert reason
    if peer == "librseq" and order == "peer-dlopen":
        # librseq's 1024-aligned initial-exec TLS cannot be dlopen'd
        program = builds.dynamic_program(protocol, "librseq", ("r",))
        run = run_program(program, env, "rseq-gen", tmp_path,
                          "--dlopen-peer", str(builds.peer_library(protocol, "librseq")))
        errors = run.of("error")
        assert run.returncode == 3 and errors and STATIC_TLS_FAILURE in errors[0]["detail"], run.events
    elif env == "musl-static" and peer != "none" and order.endswith("dlopen"):
        # musl's dlopen in a static executable fails, whatever it loads
        program = builds.static_program("musl", protocol, "none", ("r",))
        run = run_program(program, env, "rseq-gen", tmp_path,
                          "--dlopen-peer", str(builds.peer_library(protocol, peer)))
        assert run.returncode == 3 and run.of("error"), run.events
