"""``rseq-gen verify`` recognises the other rseq adopters (rseq_gen.adopters)
in real ELF files, predicts each process's registrations per environment
(rseq_gen.coexistence) and reports the conflicts: peer libraries built here
in the shape the real ones have (tests/fixtures/verify/peer_*), generated
rseq-gen modules, programs linking them in several orders, --preload and
--plugin, and the inputs given together. Each coexistence rule has a
failing case and a passing twin."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, generate, require_tool, run_rseq_gen
from rseq_gen import coexistence
from rseq_gen.adopters import ADOPTERS, LIBC_ENVIRONMENTS
from rseq_gen.cli import main as cli_main
from rseq_gen.coexistence import ORDERS, THREADS, Member

# Its tests share one module-wide build: keep them on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("verify-coexistence")

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
LIBRSEQ_C = FIXTURES / "peer_librseq.c"
TCMALLOC_S = FIXTURES / "peer_tcmalloc.S"


def cc(*args, compiler="gcc"):
    require_tool(compiler)
    proc = subprocess.run([compiler, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{compiler} {' '.join(map(str, args))} failed:\n{proc.stderr}")


def verify(tmp: Path, *args) -> tuple[int, dict]:
    out = Path(tmp) / f"report-{len(list(Path(tmp).glob('report-*')))}.json"
    rc = cli_main(["verify", "--format", "json", "--output", str(out), *map(str, args)])
    return rc, json.loads(out.read_text())


def found(rep: dict, rule: str, severity: str | None = None) -> list[dict]:
    return [f for f in rep["findings"] if f["rule"] == rule and severity in (None, f["severity"])]


class Build:
    """Peers, rseq-gen modules and programs, each built once for the module."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def lib(self, name: str, *sources_and_flags, compiler="gcc") -> Path:
        out = self.path(name)
        if not out.exists():
            cc("-O2", "-fPIC", "-shared", "-o", out, *sources_and_flags, compiler=compiler)
        return out

    def module(self, protocol: str, prefix: str, *extra) -> Path:
        """An rseq-gen module as a shared library linked -z nodelete."""
        out = self.path(f"lib{prefix}.so")
        if not out.exists():
            d = generate(self.path(f"gen-{prefix}"), protocol, prefix, *extra)
            cc("-O2", "-fPIC", "-shared", "-Wl,-z,nodelete", "-o", out, d / f"{prefix}_rseq.c")
        return out

    def program(self, name: str, *libs_and_sources) -> Path:
        """A program whose DT_NEEDED list is ``libs`` in this order (the
        symbol lookup order after the program itself)."""
        out = self.path(name)
        if not out.exists():
            main = self.path("main.c")
            main.write_text("int main(void) { return 0; }\n")
            cc("-o", out, main, "-Wl,--no-as-needed", *libs_and_sources, f"-Wl,-rpath,{self.root}")
        return out


@pytest.fixture(scope="module")
def b(tmp_path_factory) -> Build:
    build = Build(tmp_path_factory.mktemp("coexist"))
    build.librseq = build.lib("libpeer-librseq.so", LIBRSEQ_C)
    build.selftests = build.lib("libpeer-selftests.so", "-DSELFTESTS_SHAPE", LIBRSEQ_C)
    build.tcmalloc = build.lib("libpeer-tcmalloc.so", TCMALLOC_S)
    build.compat = build.module("compat", "mc")
    build.own = build.module("own", "mo")
    return build


def members(rep: dict, i: int = 0) -> list[tuple[str, str, str | None, str]]:
    return [(Path(m["file"]).name, m["adopter"], m["protocol"], m["loaded"])
            for m in rep["closures"][i]["prediction"]["members"]]


def outcome(rep: dict, env: str, first: str, i: int = 0) -> dict:
    return rep["closures"][i]["prediction"]["environments"][env][first]


def label_of(rep: dict, name: str, i: int = 0) -> str:
    return next(m["label"] for m in rep["closures"][i]["prediction"]["members"]
                if Path(m["file"]).name == name)


# ---------------------------------------------------------------------------
# recognition

def test_each_adopter_recognised_from_its_symbols(b, tmp_path):
    """Every row of the adopter table is recognised from the symbols it
    defines: librseq by its API and mempool, the selftests by the same API
    without it, tcmalloc by its TLS __rseq_abi and slabs, glibc by ld.so's
    (and a static program's) __rseq_* definitions, rseq-gen by its note."""
    require_tool("gcc")
    static = tmp_path / "static"
    main = tmp_path / "main.c"
    main.write_text("int main(void) { return 0; }\n")
    cc("-static", "-o", static, main)
    rc, rep = verify(tmp_path, b.librseq, b.selftests, b.tcmalloc, b.compat, static,
                     "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6")
    got = {Path(f["path"]).name: [a["name"] for a in f["adopters"]] for f in rep["files"]}
    assert got == {"libpeer-librseq.so": ["librseq"], "libpeer-selftests.so": ["selftests"],
                   "libpeer-tcmalloc.so": ["tcmalloc"], "libmc.so": ["rseq-gen"], "static": ["glibc"],
                   "ld-linux-x86-64.so.2": ["glibc"], "libc.so.6": []}, got
    evidence = {Path(f["path"]).name: f["adopters"][0]["evidence"] for f in rep["files"] if f["adopters"]}
    assert "private area __rseq_abi (local tls, 32 bytes)" in evidence["libpeer-librseq.so"]
    assert "__rseq_abi (global tls, 32 bytes)" in evidence["libpeer-tcmalloc.so"]
    assert "tcmalloc_slabs (global tls, 8 bytes)" in evidence["libpeer-tcmalloc.so"]
    assert "no rseq_mempool_create" in evidence["libpeer-selftests.so"]
    assert "protocol compat, prefix mc" in evidence["libmc.so"]


def test_sizes_scale_with_the_elf_class(b, tmp_path):
    """The table's sizes are LP64: an ILP32 librseq has a 4-byte
    rseq_offset; a 64-bit look-alike with an int rseq_offset is no librseq."""
    i386 = b.lib("libpeer-librseq-i386.so", LIBRSEQ_C, compiler=require_tool("i686-linux-gnu-gcc",
                                                                            "gcc-i686-linux-gnu"))
    fake = b.lib("libpeer-int-offset.so", "-DOFFSET_TYPE=int", LIBRSEQ_C)
    rc, rep = verify(tmp_path, i386, fake)
    got = {Path(f["path"]).name: (f["elfclass"], [a["name"] for a in f["adopters"]]) for f in rep["files"]}
    assert got == {i386.name: (32, ["librseq"]), fake.name: (64, [])}, got
    assert "rseq_offset (global object, 4 bytes)" in rep["files"][0]["adopters"][0]["evidence"]
    assert rep["closures"] == []  # two ELF classes cannot make one process


def test_librseq_archive_recognised_across_members(b, tmp_path):
    """A static archive is one library: librseq.a holds the registration
    API and the mempool in different members, and is librseq (not the
    selftests, which lack the mempool)."""
    objs = []
    for part in ("NO_MEMPOOL", "MEMPOOL_ONLY"):
        o = tmp_path / f"{part}.o"
        cc("-O2", "-fPIC", "-c", f"-D{part}", "-o", o, LIBRSEQ_C)
        objs.append(o)
    archive = tmp_path / "libpeer-librseq.a"
    subprocess.run([require_tool("ar", "binutils"), "rcs", str(archive), *map(str, objs)], check=True)
    rc, rep = verify(tmp_path, archive, objs[0])
    got = {Path(f["path"]).name: [a["name"] for a in f["adopters"]] for f in rep["files"]}
    assert got == {archive.name: ["librseq"], objs[0].name: ["selftests"]}, got


def test_a_stripped_librseq_is_still_recognised(b, tmp_path):
    """Distribution packages are stripped: the local area goes, the exported
    API stays, and the API is the signature."""
    stripped = tmp_path / "libpeer-librseq-stripped.so"
    stripped.write_bytes(b.librseq.read_bytes())
    subprocess.run([require_tool("strip", "binutils"), "--strip-all", str(stripped)], check=True)
    rc, rep = verify(tmp_path, stripped)
    assert [a["name"] for a in rep["files"][0]["adopters"]] == ["librseq"]


def test_librseq_area_is_private_not_a_foreign_rseq_abi(b, tmp_path):
    """librseq's __rseq_abi is a local TLS symbol: nobody binds to it, so it
    is no foreign shared area (no RSEQ502 beside an own module) and the
    prediction shows the rseq-gen module on librseq's area."""
    exe = b.program("app-own-librseq", b.own, b.librseq)
    rc, rep = verify(tmp_path, exe, "--closure")
    assert not found(rep, "RSEQ502") and not found(rep, "RSEQ501"), rep["findings"]
    assert rc == 0, [f for f in rep["findings"] if f["severity"] == "error"]
    assert members(rep) == [("libmo.so", "rseq-gen", "own", "startup"),
                            ("libpeer-librseq.so", "librseq", None, "startup")]
    mo, lr = label_of(rep, "libmo.so"), label_of(rep, "libpeer-librseq.so")
    for first in ORDERS:
        off = outcome(rep, "glibc-rseq-off", first)
        assert off["threads"]["main"] == {"owners": {mo: "librseq"}, "peers": {lr: "ok"}, "registrant": lr}
        assert off["fast_path"] == {mo: {"main": True, "worker": True}}
        on = outcome(rep, "glibc", first)
        assert on["threads"]["worker"] == {"owners": {mo: "glibc"}, "peers": {lr: "uses-glibc"},
                                           "registrant": "glibc"}
    # The DT_NEEDED librseq without NODELETE: at most a warning.
    assert {f["severity"] for f in found(rep, "RSEQ302")} == {"warning"}
    assert "librseq registers its private TLS area __rseq_abi" in found(rep, "RSEQ302")[0]["message"]


# ---------------------------------------------------------------------------
# the prediction

def test_prediction_is_the_coexistence_model(b, tmp_path):
    """Every environment and order of the JSON report is what
    rseq_gen.coexistence predicts for the members it lists."""
    exe = b.program("app-tc-compat", b.tcmalloc, b.compat)
    rc, rep = verify(tmp_path, exe, "--closure", "--plugin", b.own)
    pred = rep["closures"][0]["prediction"]
    rows = [Member(m["label"], m["adopter"], m["protocol"], m["loaded"]) for m in pred["members"]]
    assert [(r.adopter, r.loaded) for r in rows] == [("tcmalloc", "startup"), ("rseq-gen", "startup"),
                                                     ("rseq-gen", "dlopen")]
    assert set(pred["environments"]) == set(LIBC_ENVIRONMENTS) == set(pred["order_matters"])
    for env in LIBC_ENVIRONMENTS:
        assert pred["order_matters"][env] == coexistence.order_matters(rows, env)
        for first in ORDERS:
            want = coexistence.predict(rows, env, first)
            got = pred["environments"][env][first]
            for t in THREADS:
                assert got["threads"][t] == {"owners": want.threads[t].owners, "peers": want.threads[t].peers,
                                             "registrant": want.threads[t].registrant}
            assert [tuple(e.values()) for e in got["broken"]] == [tuple(e) for e in want.broken]
            assert [tuple(e.values()) for e in got["degraded"]] == [tuple(e) for e in want.degraded]
            assert got["fast_path"] == {r.label: want.fast_path(r.label) for r in rows if r.is_rseq_gen}


def test_prediction_matches_the_schema(b, tmp_path):
    import jsonschema  # test dependency (pip install .[test])
    from importlib.resources import files

    schema = json.loads(files("rseq_gen").joinpath("verify-schema.json").read_text())
    defs = schema["$defs"]
    assert defs["environment"]["enum"] == list(LIBC_ENVIRONMENTS)
    assert defs["adopter"]["enum"] == list(ADOPTERS)
    exe = b.program("app-own", b.own)
    rc, rep = verify(tmp_path, exe, b.compat, "--closure", "--preload", b.tcmalloc, "--plugin", b.librseq,
                     "--min-glibc", "2.31")
    jsonschema.validate(rep, schema)
    rc, rep = verify(tmp_path, b.tcmalloc, b.compat)  # given together
    jsonschema.validate(rep, schema)


# ---------------------------------------------------------------------------
# lookup order: the program's DT_NEEDED order, --preload, --plugin

def test_tcmalloc_first_in_lookup_order_shares_with_compat(b, tmp_path):
    """RSEQ704's passing twin: tcmalloc's __rseq_abi comes first, so the
    compat module binds to it and shares tcmalloc's registration."""
    exe = b.program("app-tc-compat", b.tcmalloc, b.compat)
    rc, rep = verify(tmp_path, exe, "--closure")
    assert members(rep) == [("libpeer-tcmalloc.so", "tcmalloc", None, "startup"),
                            ("libmc.so", "rseq-gen", "compat", "startup")]
    assert not found(rep, "RSEQ704") and not found(rep, "RSEQ703") and rc == 0, rep["findings"]
    tc, mc = label_of(rep, "libpeer-tcmalloc.so"), label_of(rep, "libmc.so")
    peer_first = outcome(rep, "glibc-rseq-off", "peer")["threads"]
    ours_first = outcome(rep, "glibc-rseq-off", "rseq-gen")["threads"]
    assert peer_first["main"] == {"owners": {mc: "shared"}, "peers": {tc: "ok"}, "registrant": tc}
    assert ours_first["main"] == {"owners": {mc: "self"}, "peers": {tc: "shared"}, "registrant": mc}
    assert rep["closures"][0]["prediction"]["order_matters"]["glibc-rseq-off"] is True


def test_rseq_abi_shadowed(b, tmp_path):
    """RSEQ704: the compat module's __rseq_abi comes first, tcmalloc binds
    to it and its layout check aborts once it registers (glibc's
    registration off), whichever group touches the thread first."""
    exe = b.program("app-compat-tc", b.compat, b.tcmalloc)
    rc, rep = verify(tmp_path, exe, "--closure")
    f = found(rep, "RSEQ704", "error")
    assert len(f) == 1 and rc == 1, rep["findings"]
    assert f[0]["file"] == str(exe)
    assert str(b.tcmalloc) in f[0]["message"] and str(b.compat) in f[0]["message"]
    assert "glibc, glibc.pthread.rseq=0 (either order)" in f[0]["message"]
    tc = label_of(rep, "libpeer-tcmalloc.so")
    assert outcome(rep, "glibc-rseq-off", "rseq-gen")["threads"]["main"]["peers"] == {tc: "aborts"}
    assert not found(rep, "RSEQ703")  # the abort is reported once, as the shadowing


def test_preload_comes_before_the_needed_libraries(b, tmp_path):
    """--preload (LD_PRELOAD) puts tcmalloc before the program's DT_NEEDED
    compat module in lookup order: RSEQ704 goes away."""
    exe = b.program("app-compat-only", b.compat)
    rc, rep = verify(tmp_path, exe, "--closure", "--preload", b.tcmalloc)
    assert [n for n, *_ in members(rep)] == ["libpeer-tcmalloc.so", "libmc.so"]
    assert not found(rep, "RSEQ704"), rep["findings"]
    loaded = rep["closures"][0]["loaded"]
    assert [Path(l["path"]).name for l in loaded[:2]] == [exe.name, "libpeer-tcmalloc.so"]


def test_tcmalloc_inside_the_program(b, tmp_path):
    """tcmalloc linked into the executable: the executable is first in
    lookup order, so nothing shadows it."""
    exe = b.program("app-static-tc", TCMALLOC_S, b.compat)
    rc, rep = verify(tmp_path, exe, "--closure")
    assert [a["name"] for a in rep["files"][0]["adopters"]] == ["tcmalloc"]
    assert members(rep)[0] == (exe.name, "tcmalloc", None, "startup")
    assert not found(rep, "RSEQ704"), rep["findings"]


def test_peer_broken_librseq_dlopened_after_an_owner(b, tmp_path):
    """RSEQ703: librseq dlopen'd into a program whose own module already
    registered the main thread without glibc: librseq's registration is
    refused (EINVAL), and the own module falls back on the threads librseq
    registers later (RSEQ708). Passing twin: librseq loaded at start-up,
    where every rseq-gen module sees it before registering."""
    exe = b.program("app-own", b.own)
    rc, rep = verify(tmp_path, exe, "--closure", "--plugin", b.librseq)
    f = found(rep, "RSEQ703", "error")
    assert len(f) == 1 and rc == 1, rep["findings"]
    assert str(b.librseq) in f[0]["message"] and str(b.own) in f[0]["message"]
    assert "registration refused" in f[0]["message"] and "main thread" in f[0]["message"]
    assert members(rep)[-1] == ("libpeer-librseq.so", "librseq", None, "dlopen")
    lr = label_of(rep, "libpeer-librseq.so")
    assert outcome(rep, "glibc-rseq-off", "peer")["broken"] == [
        {"label": lr, "thread": "main", "state": "refused", "alone": "ok"}]
    assert len(found(rep, "RSEQ708", "note")) == 1
    # The plugin is dlopen'd: its IE TLS and missing NODELETE are errors.
    assert {(x["rule"], x["severity"]) for x in rep["findings"] if x["file"] == str(b.librseq)} >= \
        {("RSEQ301", "error"), ("RSEQ302", "error")}

    twin = b.program("app-own-librseq", b.own, b.librseq)
    rc, rep = verify(tmp_path, twin, "--closure")
    assert not found(rep, "RSEQ703") and not found(rep, "RSEQ708") and rc == 0, rep["findings"]


def test_selftests_beside_an_owner_is_broken_too(b, tmp_path):
    """The selftests' library behaves as librseq (the same exported names):
    dlopen'd after an own module registered, it is refused."""
    rc, rep = verify(tmp_path, b.program("app-own", b.own), "--closure", "--plugin", b.selftests)
    assert any(str(b.selftests) in f["message"] for f in found(rep, "RSEQ703")), rep["findings"]


def test_peer_slow_mode_beside_own(b, tmp_path):
    """RSEQ707: an own module that registers its private area before
    tcmalloc's first use leaves tcmalloc in slow mode (glibc's registration
    off); RSEQ502 names the pairing. Passing twin: compat after tcmalloc
    shares tcmalloc's area."""
    exe = b.program("app-tc-own", b.tcmalloc, b.own)
    rc, rep = verify(tmp_path, exe, "--closure")
    f = found(rep, "RSEQ707", "warning")
    assert len(f) == 1, rep["findings"]
    assert "when an rseq-gen module touches the thread first" in f[0]["message"]
    assert str(b.own) in f[0]["message"] and str(b.tcmalloc) in f[0]["message"]
    assert found(rep, "RSEQ502", "error") and rc == 1
    rc, rep = verify(tmp_path, b.program("app-tc-compat", b.tcmalloc, b.compat), "--closure")
    assert not found(rep, "RSEQ707") and not found(rep, "RSEQ502"), rep["findings"]


def test_tcmalloc_slow_under_glibc(b, tmp_path):
    """RSEQ705: tcmalloc never uses glibc's registration, so under glibc
    >= 2.35 it is refused and runs in slow mode, alone or not. Passing
    twins: librseq uses glibc's area; tcmalloc in a static musl program
    meets no registering libc."""
    rc, rep = verify(tmp_path, b.program("app-tc", b.tcmalloc), "--closure")
    f = found(rep, "RSEQ705", "warning")
    assert len(f) == 1 and rc == 0 and str(b.tcmalloc) in f[0]["message"], rep["findings"]
    rc, rep = verify(tmp_path, b.program("app-librseq", b.librseq), "--closure")
    assert not found(rep, "RSEQ705"), rep["findings"]
    musl = tmp_path / "tc-musl"
    main = tmp_path / "main.c"
    main.write_text("int main(void) { return 0; }\n")
    cc("-static", "-o", musl, main, TCMALLOC_S, compiler=require_tool("musl-gcc", "musl-tools"))
    rc, rep = verify(tmp_path, musl, "--closure")
    pred = rep["closures"][0]["prediction"]
    assert pred["libc"] is None and pred["applicable"] == ["musl", "denied"]
    assert not found(rep, "RSEQ705"), rep["findings"]


def test_cpu_id_start_overlay(b, tmp_path):
    """RSEQ706: tcmalloc in fast mode keeps its slabs pointer over
    cpu_id_start (kernels >= 6.19, v2 registrations). Passing twin: a
    program with librseq, which never writes the field."""
    rc, rep = verify(tmp_path, b.program("app-tc", b.tcmalloc), "--closure", "--min-glibc", "2.31")
    f = found(rep, "RSEQ706", "warning")
    assert len(f) == 1, rep["findings"]
    assert "glibc, glibc.pthread.rseq=0 (either order); glibc < 2.35 (either order)" in f[0]["message"]
    assert rep["closures"][0]["prediction"]["applicable"] == ["glibc", "glibc-rseq-off", "glibc-old", "denied"]
    rc, rep = verify(tmp_path, b.program("app-librseq", b.librseq), "--closure")
    assert not found(rep, "RSEQ706"), rep["findings"]


def test_module_on_fallbacks_twin(b, tmp_path):
    """RSEQ708 also for a module beside tcmalloc when tcmalloc registers
    first and the module keeps a private area; not for compat, which shares."""
    rc, rep = verify(tmp_path, b.program("app-tc-own", b.tcmalloc, b.own), "--closure")
    f = found(rep, "RSEQ708", "note")
    assert len(f) == 1 and "when a peer touches the thread first" in f[0]["message"], rep["findings"]
    rc, rep = verify(tmp_path, b.program("app-tc-compat", b.tcmalloc, b.compat), "--closure")
    assert not found(rep, "RSEQ708"), rep["findings"]


# ---------------------------------------------------------------------------
# inputs given together, text output

def test_inputs_given_together_are_one_process(b, tmp_path):
    """Without --closure, linked inputs given together are one process in
    the order given: the same conflict as the program that links them."""
    rc, rep = verify(tmp_path, b.compat, b.tcmalloc)
    c = rep["closures"][0]
    assert c["kind"] == "inputs" and c["prediction"]["libc"] == "unknown"
    assert c["prediction"]["applicable"] == list(LIBC_ENVIRONMENTS)
    assert [n for n, *_ in members(rep)] == ["libmc.so", "libpeer-tcmalloc.so"]
    assert found(rep, "RSEQ704") and rc == 1
    rc, rep = verify(tmp_path, b.tcmalloc, b.compat)
    assert not found(rep, "RSEQ704"), rep["findings"]


def test_musl_program(b, tmp_path):
    """A dynamic musl program: ld-musl is its libc (no unresolved libc.so),
    no libc registration, the compat module registers every thread."""
    musl = require_tool("musl-gcc", "musl-tools")
    d = generate(tmp_path / "gen", "compat", "mm")
    lib = tmp_path / "libmm.so"
    cc("-O2", "-fPIC", "-shared", "-Wl,-z,nodelete", "-o", lib, d / "mm_rseq.c", compiler=musl)
    main = tmp_path / "main.c"
    main.write_text("int main(void) { return 0; }\n")
    exe = tmp_path / "app-musl"
    cc("-o", exe, main, "-Wl,--no-as-needed", lib, f"-Wl,-rpath,{tmp_path}", compiler=musl)
    rc, rep = verify(tmp_path, exe, "--closure")
    assert not found(rep, "RSEQ701") and rc == 0, rep["findings"]
    pred = rep["closures"][0]["prediction"]
    assert pred["libc"] == "musl" and pred["applicable"] == ["musl", "denied"]
    label = f"{lib}:mm"
    assert outcome(rep, "musl", "peer")["threads"]["worker"] == {"owners": {label: "self"}, "peers": {},
                                                                 "registrant": label}


def test_text_output_has_a_table_per_closure(b, tmp_path):
    exe = b.program("app-tc-compat", b.tcmalloc, b.compat)
    proc = run_rseq_gen("verify", "--closure", exe, check=False)
    lines = proc.stdout.splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith(f"{exe}: rseq registration per environment"))
    assert lines[head + 1:head + 3] == ["  1. libpeer-tcmalloc.so (tcmalloc)", "  2. libmc.so:mc (rseq-gen compat)"]
    table = lines[head + 3:head + 8]
    assert table[0].split()[:2] == ["environment", "first"]
    glibc = next(l for l in table if l.lstrip().startswith("glibc >= 2.35 registering"))
    assert glibc.split()[4] == "either"
    assert "libmc.so:mc yes/yes" in glibc and "libpeer-tcmalloc.so slow-mode/slow-mode" in glibc
    off = [l for l in table if l.lstrip().startswith("glibc, glibc.pthread.rseq=0")]
    assert [l.split()[2] for l in off] == ["peer", "rseq-gen"]  # the order matters there
    assert "libpeer-tcmalloc.so/libpeer-tcmalloc.so" in off[0]
    assert "libmc.so:mc/libmc.so:mc" in off[1]
    # The example of docs/verify.md is this very table.
    doc = (ROOT / "docs" / "verify.md").read_text()
    example = doc[doc.index("$ rseq-gen verify --closure ./app"):].split("```", 1)[0].splitlines()
    assert example[2:8] == lines[head + 1:head + 7]
