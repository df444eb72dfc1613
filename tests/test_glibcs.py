"""The generated code under more than one glibc (tests/glibcs.py): the host's
(2.36 on Debian 12), Debian 13's 2.41 (``__rseq_size`` is the kernel's
feature size, ``__rseq_offset`` negative) and Debian 11's 2.31 (no rseq ABI
at all), each with its registration on and off where it has one.

Programs are built twice with the same flags: against the host's glibc,
and against 2.31 as a sysroot (the oldest release, so the binary loads on
every one). Each build runs the scenarios of tests/test_matrix.py on every
glibc it loads on, through that glibc's own dynamic loader, and asserts
what the matrix asserts (owners per module and thread, exact counts, at
most one live registration per thread and only the expected refusals, from
strace), plus that the run really used that glibc: its version, the
``__rseq_size`` and ``__rseq_offset`` it published, the length it
registered. A build on the host's glibc run on the host's glibc is
tests/test_matrix.py itself.

Where a build does not load (built against a newer glibc than the one it
runs on), ``rseq-gen verify --min-glibc`` must say so exactly where the
rseq ABI is the reason: RSEQ201 on a file <=> the old loader names
GLIBC_2.35 for it.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Callable

import pytest

from conftest import run_rseq_gen
from glibcs import RELEASES, FetchError, Release, host_version, provide, version_key
from rseq_gen import abi
from rseq_gen.coexistence import Member, predict
from rseq_gen.protocols import ENVIRONMENT_VARIABLES, PROTOCOLS
from test_matrix import check_alone, check_run, run_matrix

HOST = host_version()
#: Fewer threads and adds than tests/test_matrix.py: every scenario still
#: runs (migrations, signals, fork, 200 dlopen/dlclose), on many glibcs.
THREADS, ADDS = "4", "20000"


#: The glibcs programs are built against: the host's, and every release
#: that is a sysroot.
BUILT_ON = [HOST, *(v for v, r in RELEASES.items() if r.sysroot and v != HOST)]


@dataclass(frozen=True)
class Runtime:
    """A glibc a program runs on, with its own registration on or off
    (None: that glibc has no rseq ABI)."""

    glibc: str
    registration: bool | None

    @property
    def id(self) -> str:
        state = {True: "", False: "-rseq-off", None: ""}[self.registration]
        return f"{self.glibc}{state}"

    @property
    def table_env(self) -> str:
        """The protocol table's column (rseq_gen.protocols.ENVIRONMENTS): a
        glibc without the rseq ABI publishes nothing and registers nothing,
        which the generated code sees exactly as it sees the tunable."""
        return "glibc" if self.registration else "glibc-rseq-off"

    @property
    def libc_env(self) -> str:
        """The prediction's environment (rseq_gen.adopters.LIBC_ENVIRONMENTS)."""
        return {True: "glibc", False: "glibc-rseq-off", None: "glibc-old"}[self.registration]

    @property
    def env(self) -> dict:
        return ENVIRONMENT_VARIABLES["glibc-rseq-off"] if self.registration is False else {}


RUNTIMES = [Runtime(v, on) for v, r in RELEASES.items() for on in ((True, False) if r.rseq_abi else (None,))]


@dataclass(frozen=True)
class Scenario:
    """One program of tests/test_matrix.py: its build variant
    (MatrixBuild.binary), what its run asserts (protocol, protocol-table
    column, run -> events by name), and what the prediction is given: the
    rseq-gen modules loaded at start-up and later with dlopen (labels, as
    the program reports them), any other adopter in the process, and which
    group touches a thread first (rseq_gen.coexistence.predict). A peer
    fixture is one more row."""

    variant: str
    check: Callable
    startup: tuple[str, ...]
    dlopened: tuple[str, ...] = ()
    peers: tuple[Member, ...] = ()
    first: str = "rseq-gen"


SCENARIOS = {
    "alone": Scenario("alone", lambda p, env, run: check_alone(p, env, run, THREADS, ADDS), ("m",)),
    "peers-dlopen": Scenario("dyn", lambda p, env, run: check_run(p, env, "dyn", run, THREADS, ADDS),
                             ("m", "a", "b"), ("c",)),
}


#: gcc builds every protocol; clang those that read glibc's ABI (what
#: changes between glibcs is what they read: __rseq_size, the sign of
#: __rseq_offset, no ABI at all). The protocols that never look at glibc
#: see only registration on or off, and their clang builds run in
#: tests/test_matrix.py.
BUILDS = [(p, cc) for p, proto in PROTOCOLS.items() for cc in ("gcc", "clang")
          if cc == "gcc" or proto.glibc_area]


@pytest.fixture(scope="session")
def glibcs(request):
    """``get(version)`` -> tests/glibcs.py Glibc, fetched on first use into
    the pytest cache; a fetch that failed fails every test that needs it,
    with the same line, without fetching again."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        pytest.fail("the glibc packages are kept in the pytest cache: drop -p no:cacheprovider", pytrace=False)
    cache_dir = cache.mkdir("rseq-gen-glibc")
    found: dict = {}

    def get(version: str):
        if version not in found:
            try:
                found[version] = provide(RELEASES[version], cache_dir)
            except FetchError as e:
                found[version] = e
        if isinstance(found[version], FetchError):
            pytest.fail(str(found[version]), pytrace=False)
        return found[version]

    return get


def _build(matrix_builds, glibcs, protocol, cc, built_on):
    sysroot = None if built_on == HOST else glibcs(built_on)
    return matrix_builds(protocol, cc, sysroot)


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def check_libc(libc: dict, trace, runtime: Runtime, module_registers: bool) -> None:
    """The run used ``runtime``'s glibc, which published and registered
    what that release does."""
    release = RELEASES[runtime.glibc]
    assert libc["glibc"] == release.version, f"ran on glibc {libc['glibc']}, not {release.version}"
    assert libc["rseq_abi"] is release.rseq_abi
    lengths = set()
    if runtime.registration:
        assert libc["rseq_size"] == release.rseq_size(libc["feature_size"]), libc
        assert _sign(libc["rseq_offset"]) == release.rseq_offset_sign, libc
        lengths.add(release.registration_length(libc["feature_size"]))
    else:
        assert libc["rseq_size"] == 0, libc
    if module_registers:
        lengths.add(abi.AREA_SIZE)
    assert trace.lengths == lengths, f"registration lengths {sorted(trace.lengths)}, expected {sorted(lengths)}"


def check_prediction(protocol: str, scenario: Scenario, runtime: Runtime, by_event: dict) -> None:
    """rseq_gen.coexistence predicts the owners measured. Start-up modules
    are compared as a multiset per thread: which of them registers first
    depends on the order their constructors run, which the table does not
    fix (tests/test_matrix.py checks that exactly one does)."""
    members = [Member(label, "rseq-gen", protocol) for label in scenario.startup]
    members += [*scenario.peers, *(Member(label, "rseq-gen", protocol, "dlopen") for label in scenario.dlopened)]
    predicted = predict(members, runtime.libc_env, scenario.first).threads

    def startup(owners: dict) -> list:
        return sorted(owners[label] for label in scenario.startup)

    main = {k: v["owner"] for k, v in by_event["owners"][0]["modules"].items()}
    assert startup(main) == startup(predicted["main"].owners), (main, predicted["main"].owners)
    for label in scenario.dlopened:
        assert by_event["dlopen"][0]["owner"] == predicted["main"].owners[label]
    for thread in by_event["thread_owners"][0]["threads"]:
        owners = {k: v[0] for k, v in thread.items()}
        assert startup(owners) == startup(predicted["worker"].owners), (owners, predicted["worker"].owners)


RUN_CASES = [
    pytest.param(built_on, runtime, id=f"built-{built_on}-on-{runtime.id}")
    for built_on in BUILT_ON for runtime in RUNTIMES
    # a program loads on the glibc it was built against and on newer ones;
    # the host's build on the host's glibc is tests/test_matrix.py
    if version_key(runtime.glibc) >= version_key(built_on) and not (built_on == HOST == runtime.glibc)
]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("built_on, runtime", RUN_CASES)
@pytest.mark.parametrize("protocol, cc", BUILDS)
def test_glibc_run(protocol, cc, built_on, runtime, scenario, matrix_builds, glibcs, tmp_path):
    """One program, built against one glibc, run on another: the table's
    owners, exact counts, one live registration per thread, the expected
    errnos; the glibc it ran on; the prediction."""
    s = SCENARIOS[scenario]
    binary, args = _build(matrix_builds, glibcs, protocol, cc, built_on).binary(s.variant)
    glibc = glibcs(runtime.glibc)
    run = run_matrix(binary, args, runtime.env, tmp_path, ADDS, THREADS, glibc.launcher())
    by_event = s.check(protocol, runtime.table_env, run)
    check_libc(by_event["libc"][0], run[2], runtime, PROTOCOLS[protocol].owner[runtime.table_env] == "self")
    check_prediction(protocol, s, runtime, by_event)


_NOT_FOUND = re.compile(r"version `(?P<version>[^']+)' not found \(required by (?P<file>[^)]+)\)")


def _missing_versions(loader: list[str], path) -> set[str]:
    """Symbol versions the loader cannot find for ``path`` itself (ld.so
    --list reports every one, for the file and its dependencies)."""
    proc = subprocess.run([*loader, "--list", str(path)], capture_output=True, text=True, timeout=60)
    return {m["version"] for m in _NOT_FOUND.finditer(proc.stdout + proc.stderr)
            if m["file"].rsplit("/", 1)[-1] == path.name}


OLD_GLIBCS = [v for v, r in RELEASES.items() if not r.rseq_abi]


@pytest.mark.parametrize("old", OLD_GLIBCS)
@pytest.mark.parametrize("built_on", BUILT_ON)
def test_verify_min_glibc_agrees_with_the_loader(built_on, old, matrix_builds, glibcs):
    """``rseq-gen verify --min-glibc OLD`` on every dynamic build (program,
    libraries, plugin; every protocol): RSEQ201 exactly on the files the
    old loader refuses for GLIBC_2.35, the rseq ABI's version. A build
    against the old glibc loads there: no version missing at all. A build
    against a newer glibc needs more than the rseq ABI (glibc 2.34 moved
    libpthread and libdl into libc.so.6 at GLIBC_2.34): nothing built
    against it runs on the old one, which is why programs for old glibcs
    are built against the oldest one."""
    loader = glibcs(old).launcher()[:3]
    files = []
    for protocol in PROTOCOLS:
        binary, args = _build(matrix_builds, glibcs, protocol, "gcc", built_on).binary("dyn")
        files += [binary, binary.parent / "liba.so", binary.parent / "libb.so", binary.parent / "plugin.so"]
    proc = run_rseq_gen("verify", "--min-glibc", old, "--format", "json", *files, check=False)
    report = json.loads(proc.stdout)
    rseq201 = {f["file"] for f in report["findings"] if f["rule"] == "RSEQ201"}
    for path in files:
        missing = _missing_versions(loader, path)
        assert (abi.GLIBC_SYMBOL_VERSION in missing) == (str(path) in rseq201), (path, missing, sorted(rseq201))
        if version_key(built_on) <= version_key(old):
            assert not missing, f"{path} built against glibc {built_on} does not load on {old}: {missing}"
        else:
            assert missing, f"{path} built against glibc {built_on} loads on {old}"


def test_fetch_failure_is_one_line(tmp_path):
    """No network (here: nothing listening): the fetch fails with one line
    naming the release, the packages and the mirror, and leaves nothing
    that looks complete."""
    unreachable = Release("0.0", "bullseye", "lib/x86_64-linux-gnu", None, None,
                          mirror="http://127.0.0.1:9/debian")
    with pytest.raises(FetchError) as e:
        provide(unreachable, tmp_path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("could not fetch glibc 0.0 (Debian bullseye: libc6) from http://127.0.0.1:9/debian: ")
    assert not any(p.name == "root" for p in tmp_path.rglob("*"))


def test_docs_list_the_releases_the_suite_runs_under():
    """docs/support-matrix.md (its summary and its details) names exactly the
    releases of tests/glibcs.py, each with its Debian suite."""
    from conftest import ROOT

    summary = (ROOT / "docs" / "support-matrix.md").read_text()
    section = summary[summary.index("## In short: glibc versions"):]
    section = section[:section.index("\n## ", 1)]
    rows = set(re.findall(r"^\| (\d+\.\d+) \| \d+ (\w+)", section, re.M))
    assert rows == {(v, r.suite) for v, r in RELEASES.items()}
    matrix = (ROOT / "docs" / "support-matrix.md").read_text()
    section = matrix[matrix.index("## glibc versions"):]
    assert set(re.findall(r"^\| (\d+\.\d+) \| (\w+)", section, re.M)) == {(v, r.suite) for v, r in RELEASES.items()}
