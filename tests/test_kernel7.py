"""The generated code on a second kernel: Debian sid's newest 7.x under
qemu-system-x86_64 (tests/helpers/guest.py), where a registration longer than 32
bytes is v2 mode (kernel-owned fields read-only) and glibc 2.43 registers at
the feature size.

One boot runs every program of this module (and of any other module whose
builders are decorated with @guest_programs):

- the coexistence program (tests/c/matrix_main.c --probe-live) for every
  protocol and --registration mode: alone under sid's glibc with its
  registration on (v2 mode) and off (our own), statically linked with glibc
  2.36 (legacy), and with two libraries and a plugin dlopen'd and dlclose'd
  while threads run. Checked as on the host: owners, exact counts, and, with
  no strace in the guest, the registration itself: each thread's area must be
  the live registration with the expected length (EBUSY on re-registration),
  and a self-owning module made exactly one registration per thread;
- the witness (tests/c/v2_witness.c): a store to cpu_id_start is killed
  under a v2 registration and survives a legacy one;
- the time-slice extension API under contention (tests/c/slice_ext.c);
- the probe's inputs gathered in C (tests/c/cross_selfview.c), fed to
  rseq_gen.probe.decide() here.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import generate, require_tool, ROOT, run_build
from helpers.guest import XDIST_GROUP, GuestProgram, guest_programs
from rseq_gen import abi
from rseq_gen.probe import decide, extended_length
from rseq_gen.environments import ENVIRONMENT_VARIABLES
from rseq_gen.protocols import PROTOCOLS
from test_matrix import MatrixBuild, _check_owner_group
from test_probe import inputs_from_selfview, parse_selfview

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)

C_DIR = ROOT / "tests" / "c"
CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
#: Smaller than on the host (16 threads x 200000 adds, 200 dlopen rounds):
#: the guest is emulated, one host thread for both vCPUs.
THREADS, ADDS, DLOPEN_ITERATIONS, BACKGROUND_THREADS = 8, 50000, 20, 4

#: Scenario -> (how the program is linked, the protocol table's environment).
SCENARIOS = {
    "alone-sid": ("alone", "glibc"),
    "alone-sid-off": ("alone", "glibc-rseq-off"),
    "static": ("static", "glibc-static"),
    "dyn-sid": ("dyn", "glibc"),
    "dyn-sid-off": ("dyn", "glibc-rseq-off"),
}
#: Scenarios per --registration mode. Static glibc 2.36 owns a 32-byte
#: registration whatever the mode, so it runs once (legacy); the plugin loop
#: under sid's glibc (its 33-byte v2 registration) runs with the extended
#: code, the legacy code meets that registration alone; auto registers like
#: extended on 7.x and is checked where our own code registers.
SCENARIOS_BY_REGISTRATION = {
    "legacy": ("alone-sid", "alone-sid-off", "static", "dyn-sid-off"),
    "extended": ("alone-sid", "alone-sid-off", "dyn-sid", "dyn-sid-off"),
    "auto": ("alone-sid-off",),
}
assert set(SCENARIOS_BY_REGISTRATION) == set(abi.REGISTRATION_MODES)
#: glibc >= 2.41 registers max(AT_RSEQ_FEATURE_SIZE, 32) bytes; 2.35-2.40
#: (the static 2.36 here) 32 (shared/reference/rseq-abi.md section 2, 7.2).
GLIBC_STATIC_LEN = abi.AREA_SIZE


def _matrix_cases():
    for protocol in PROTOCOLS:
        for registration, scenarios in SCENARIOS_BY_REGISTRATION.items():
            for scenario in scenarios:
                yield protocol, registration, scenario


MATRIX_CASES = list(_matrix_cases())


def _name(protocol, registration, scenario):
    return f"matrix-{protocol}-{registration}-{scenario}"


def _run(cmd, cwd):
    proc = run_build(cmd, cwd=cwd)
    assert proc.returncode == 0 and not proc.stderr.strip(), f"{' '.join(map(str, cmd))}:\n{proc.stderr}"


@guest_programs
def matrix_programs(workdir: Path):
    builds = {}
    for protocol, registration, _ in MATRIX_CASES:
        builds.setdefault((protocol, registration), MatrixBuild(
            workdir / f"{protocol}-{registration}", protocol, "gcc",
            generate_args=("--registration", registration)))

    def build_all(key):  # the compilers are subprocesses: one thread per CPU keeps them busy
        for protocol, registration, scenario in MATRIX_CASES:
            if (protocol, registration) == key:
                builds[key].binary(SCENARIOS[scenario][0])

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(build_all, builds))
    for protocol, registration, scenario in MATRIX_CASES:
        variant, table_env = SCENARIOS[scenario]
        binary, _ = builds[(protocol, registration)].binary(variant)
        name = _name(protocol, registration, scenario)
        args = ["matrix", "--threads", str(THREADS), "--adds", str(ADDS), "--probe-live"]
        files = {"matrix": binary}
        if variant == "dyn":
            files.update({p.name: p for p in binary.parent.glob("*.so")})
            args += ["--plugin", f"/p/{name}/plugin.so", "--dlopen-iterations", str(DLOPEN_ITERATIONS)]
        yield GuestProgram(name, tuple(args), files, ENVIRONMENT_VARIABLES[table_env])


def _generated_program(workdir: Path, source: str, protocol: str, registration: str,
                       static: bool = False) -> Path:
    gen = generate(workdir / f"gen-{protocol}-{registration}", protocol, "w", "--registration", registration)
    out = workdir / f"{Path(source).stem}-{protocol}-{registration}{'-static' if static else ''}"
    _run([require_tool("gcc"), *CFLAGS, f"-I{gen}", C_DIR / source, gen / "w_rseq.c", "-o", out,
          "-lpthread", *(["-static"] if static else [])], workdir)
    return out


#: Witness runs: name -> (protocol, registration, static, environment, argument).
WITNESS = {
    f"witness-{protocol}-{registration}-{action}": (protocol, registration, False, "glibc-rseq-off", action)
    for protocol in ("compat", "own") for registration in ("legacy", "extended")
    for action in ("store", "read")
}
WITNESS["witness-glibc-sid-store"] = ("glibc", "legacy", False, "glibc", "store")
WITNESS["witness-glibc-static-store"] = ("glibc", "legacy", True, "glibc-static", "store")

#: Slice runs: name -> (registration, environment).
SLICE = {
    "slice-extended-own": ("extended", "glibc-rseq-off"),
    "slice-legacy-own": ("legacy", "glibc-rseq-off"),
    "slice-glibc-sid": ("legacy", "glibc"),
}


@guest_programs
def witness_and_slice_programs(workdir: Path):
    for name, (protocol, registration, static, env, action) in WITNESS.items():
        exe = _generated_program(workdir, "v2_witness.c", protocol, registration, static)
        yield GuestProgram(name, ("witness", action), {"witness": exe}, ENVIRONMENT_VARIABLES[env], 60)
    for name, (registration, env) in SLICE.items():
        exe = _generated_program(workdir, "slice_ext.c", "compat", registration)
        yield GuestProgram(name, ("slice",), {"slice": exe}, ENVIRONMENT_VARIABLES[env], 120)


PROBE_ENVS = {"probe-sid": "glibc", "probe-sid-off": "glibc-rseq-off"}


@guest_programs
def probe_programs(workdir: Path):
    exe = workdir / "selfview"
    _run([require_tool("gcc"), "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2",
          C_DIR / "cross_selfview.c", "-o", exe], workdir)
    for name, env in PROBE_ENVS.items():
        yield GuestProgram(name, ("selfview",), {"selfview": exe}, ENVIRONMENT_VARIABLES[env], 60)


# ---- facts of the guest, from the probe record ---------------------------------

_INPUTS: dict = {}


def probe_inputs(guest_results) -> dict:
    """ProbeInputs of the guest by probe program (a plain function, not a
    fixture: without the guest, each test fails with the one line why)."""
    if _INPUTS:
        return _INPUTS
    out = {}
    for name in PROBE_ENVS:
        r = guest_results[name]
        assert r.returncode == 0, r.describe()
        inp = inputs_from_selfview(*parse_selfview(r.stdout), arch="x86_64")
        inp.tunable = "0" if name.endswith("-off") else None
        out[name] = inp
    _INPUTS.update(out)
    return out


def _expected_len(owner: str, table_env: str, registration: str, inputs) -> int:
    """Length of the live registration the module's area must have."""
    if owner == "none":
        return 0
    feature, align = inputs.at_rseq_feature_size, inputs.at_rseq_align
    if owner == "glibc":
        return GLIBC_STATIC_LEN if table_env == "glibc-static" else max(feature, abi.AREA_SIZE)
    if registration == "legacy":
        return abi.AREA_SIZE
    return extended_length(feature, align)


# ---- the kernel package ----------------------------------------------------------

def test_guest_kernel_is_7x_with_v2_mode_entry(guest_results):
    image = guest_results.image
    assert image.release.startswith("7."), image
    assert probe_inputs(guest_results)["probe-sid"].kernel_release == image.release
    assert image.config_value("RSEQ") == "y"
    # v2 mode needs the generic entry code (Documentation/userspace-api/rseq.rst).
    assert image.config_value("GENERIC_IRQ_ENTRY") == "y"
    assert image.libc_version.startswith("2.4"), image.libc_version
    boots = guest_results.boots
    assert len(boots) == 1 and boots[0].release == image.release, boots


# ---- coexistence ---------------------------------------------------------------

@pytest.mark.parametrize("protocol, registration, scenario", MATRIX_CASES)
def test_matrix_in_guest(protocol, registration, scenario, guest_results):
    r = guest_results[_name(protocol, registration, scenario)]
    assert r.returncode == 0, r.describe()
    variant, table_env = SCENARIOS[scenario]
    proto = PROTOCOLS[protocol]
    by_event = {}
    for e in r.events():
        by_event.setdefault(e["event"], []).append(e)
    assert by_event["done"][0]["ok"] is True, r.describe()
    assert not by_event.get("failure"), by_event.get("failure")

    lone, peer = proto.owner[table_env], proto.peer_owner[table_env]
    main_owners = {k: v["owner"] for k, v in by_event["owners"][0]["modules"].items()}
    _check_owner_group(main_owners, lone, peer, "main thread")
    threads = by_event["thread_owners"][0]["threads"]
    assert len(threads) == THREADS
    for i, thread in enumerate(threads):
        _check_owner_group({k: v[0] for k, v in thread.items()}, lone, peer, f"thread {i}")
        errs = {errno.errorcode.get(v[1]) for v in thread.values() if v[1]}
        assert errs <= set(proto.expected_errnos[table_env]), f"thread {i}: errnos {errs}"

    count = by_event["count"][0]
    assert count["got"] == count["expected"] == THREADS * ADDS
    assert count["signal_adds"] == count["signals"]
    assert by_event["pinned"][0]["ok"] is True
    child = by_event["fork_child"][0]
    assert child["got"] == child["expected"]
    assert ("dlopen" in by_event) == (variant == "dyn")
    if variant == "dyn":
        d = by_event["dlopen"][0]
        assert d["iterations"] == DLOPEN_ITERATIONS and d["same_owner"] and d["plugin_exact"]
        assert d["got"] == d["expected"]
        assert d["owner"] == peer, f"plugin owner {d['owner']}, table says {peer}"

    # No strace here: ask the kernel. The module's area on every thread is
    # the live registration, with the length the mode promises.
    m_owner = main_owners["m"]
    want = _expected_len(m_owner, table_env, registration, probe_inputs(guest_results)["probe-sid"])
    for live in by_event["live"]:
        assert (live["len"], live["module_len"]) == (want, want), f"{live['scope']}: {live}, want {want}"
    for i, live in enumerate(by_event["thread_live"][0]["threads"]):
        assert (live["len"], live["module_len"]) == (want, want), f"thread {i}: {live}, want {want}"
    registrations = sum(v["registrations"] for v in by_event["owners"][-1]["modules"].values())
    if lone == "self":
        # one registration per thread, all made by the generated code; the
        # dlopen scenario's background threads run module m only, which under
        # `handled` is not the handler (a library constructor claimed it first)
        # and so leaves them unregistered
        background = BACKGROUND_THREADS if variant == "dyn" and not proto.handled_flag else 0
        assert registrations == 1 + THREADS + background, registrations
    else:
        assert registrations == 0, "glibc owns, or nobody can register: the generated code registered"
    if want > abi.AREA_SIZE:
        assert probe_inputs(guest_results)["probe-sid"].at_rseq_feature_size > abi.AREA_SIZE


def test_extended_registration_is_v2_in_the_guest_and_legacy_on_the_host(guest_results,
                                                                         tmp_path):
    """--registration extended: 64 bytes on 7.x (v2 mode), 32 on this host's
    6.18 (feature size 28): the same binary decides at run time."""
    r = guest_results[_name("compat", "extended", "alone-sid-off")]
    live = [e for e in r.events() if e["event"] == "live"][0]
    assert live["len"] == 64 == extended_length(probe_inputs(guest_results)["probe-sid"].at_rseq_feature_size,
                                                probe_inputs(guest_results)["probe-sid"].at_rseq_align)
    exe = _generated_program(tmp_path, "v2_witness.c", "compat", "extended")
    env = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0", "PATH": "/usr/bin:/bin"}
    host = subprocess.run([str(exe), "read"], capture_output=True, text=True, env=env, timeout=60)
    assert host.returncode == 0, host.stderr
    assert '"owner": "self", "len": 32' in host.stdout, host.stdout


# ---- the witness ----------------------------------------------------------------

@pytest.mark.parametrize("name", list(WITNESS))
def test_v2_witness(name, guest_results):
    protocol, registration, static, env, action = WITNESS[name]
    r = guest_results[name]
    events = r.events()
    assert events and events[0]["event"] == "witness", r.describe()
    length = events[0]["len"]
    owner = events[0]["owner"]
    assert owner == ("glibc" if protocol == "glibc" else "self"), r.describe()
    want = _expected_len(owner, env, registration, probe_inputs(guest_results)["probe-sid"])
    assert length == want, r.describe()
    survived = any(e["event"] == "survived" for e in events)
    if action == "store" and length > abi.AREA_SIZE:
        # v2 mode: the kernel kills the process for the store
        assert r.signal == signal.SIGSEGV and not survived, r.describe()
    else:
        # legacy registration, or no store: the program lives
        assert r.returncode == 0 and survived, r.describe()


def test_witness_kills_exactly_the_v2_stores(guest_results):
    killed = {name for name in WITNESS if guest_results[name].signal == signal.SIGSEGV}
    assert killed == {"witness-compat-extended-store", "witness-own-extended-store",
                      "witness-glibc-sid-store"}


# ---- time-slice extension -------------------------------------------------------

@pytest.mark.parametrize("name", list(SLICE))
def test_slice_extension_in_guest(name, guest_results):
    registration, env = SLICE[name]
    r = guest_results[name]
    assert r.returncode == 0, r.describe()
    s = [e for e in r.events() if e["event"] == "slice"][0]
    assert s["count"] == s["expected"], s
    built_in = guest_results.image.config_value("RSEQ_SLICE_EXTENSION") == "y"
    v2 = s["len"] > abi.AREA_SIZE
    assert v2 == (registration == "extended" or env == "glibc"), s
    if built_in and v2:
        # The kernel offers it: the API enables it and, with two threads
        # fighting for one CPU, some regions get an extension.
        assert s["available"] == [1, 1] and s["grants"] > 0, s
    else:
        assert s["available"] == [0, 0] and s["grants"] == 0, s
        want = abi.ENOTSUPP if v2 else errno.EOPNOTSUPP
        assert s["errno"] == [want, want], s
    if not built_in:
        # Debian's 7.x build: the prctl exists but the mechanism does not,
        # rseq_slice_yield is not a system call, and the kernel sets no
        # slice bits in rseq->flags.
        assert s["prctl"] == -1 and s["prctl_errno"] == abi.ENOTSUPP, s
        assert s["yield_errno"] == errno.ENOSYS, s
        assert s["flags"] & (abi.FLAG_SLICE_EXT_AVAILABLE | abi.FLAG_SLICE_EXT_ENABLED) == 0, s


# ---- rseq-gen probe ----------------------------------------------------------------

def test_probe_reports_7x_facts(guest_results):
    inp = probe_inputs(guest_results)["probe-sid"]
    d = decide(inp)
    assert inp.at_rseq_feature_size == 33 and inp.at_rseq_align == 64, inp
    assert inp.libc == "glibc" and inp.libc_version == guest_results.image.libc_version.split("-")[0]
    assert inp.rseq_size == 33 and inp.registration_len == 33, inp
    assert d.kernel == "available" and d.libc_registered is True
    assert d.v2_mode is True and "registered 33 bytes (v2 mode" in d.registration_detail
    assert "--registration extended registers 64 bytes here (v2 mode)" in d.registration_detail
    built_in = guest_results.image.config_value("RSEQ_SLICE_EXTENSION") == "y"
    assert d.slice_extension == ("available" if built_in else "unavailable"), d.slice_detail
    if not built_in:
        assert inp.slice_errno == abi.ENOTSUPP and "CONFIG_RSEQ_SLICE_EXTENSION" in d.slice_detail
    off = probe_inputs(guest_results)["probe-sid-off"]
    d_off = decide(off)
    assert off.rseq_size == 0 and off.area_cpu_id == -2 and off.registration_len is None
    assert d_off.libc_registered is False and d_off.v2_mode is None
    assert "64 bytes here (v2 mode)" in d_off.registration_detail
