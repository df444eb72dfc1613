"""``rseq-gen verify``: real objects and binaries built from generated code,
one deliberately broken build per rule with its passing twin, system files,
output formats and the JSON schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import generate, require_tool, ROOT, run_build, run_rseq_gen
from rseq_gen.arches import ARCHES
from rseq_gen.cli import main as cli_main
from rseq_gen.protocols import PROTOCOLS
from rseq_gen.rules import RULE_LIST, render_markdown


# Its tests share one module-wide build: keep them on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("verify")

SNIPPETS = Path(__file__).parent / "fixtures" / "verify"
LIBC_SO = "/lib/x86_64-linux-gnu/libc.so.6"
LD_SO = "/lib64/ld-linux-x86-64.so.2"
LIBC_A = "/usr/lib/x86_64-linux-gnu/libc.a"


# ---------------------------------------------------------------------------
# helpers

def verify(tmp: Path, *args) -> tuple[int, dict]:
    """Run verify in-process with --format json; (exit code, report)."""
    out = Path(tmp) / f"report-{os.getpid()}-{len(list(Path(tmp).glob('report-*')))}.json"
    rc = cli_main(["verify", "--format", "json", "--output", str(out), *map(str, args)])
    return rc, json.loads(out.read_text())


def rules_of(report: dict, severity: str | None = None) -> set[str]:
    return {f["rule"] for f in report["findings"] if severity is None or f["severity"] == severity}


def cc(*args, compiler="gcc", cwd=None):
    require_tool(compiler)
    proc = run_build([compiler, *map(str, args)], cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(f"{compiler} {' '.join(map(str, args))} failed:\n{proc.stderr}")


class Builder:
    """Builds generated code once per configuration for the whole session."""

    def __init__(self, root: Path):
        self.root = root
        self.cache: dict = {}

    def gen(self, protocol="compat", prefix="rg", *extra) -> Path:
        key = ("gen", protocol, prefix, extra)
        if key not in self.cache:
            out = self.root / "-".join(["gen", protocol, prefix, *[e.strip("-") for e in extra]])
            generate(out, protocol, prefix, *extra)
            self.cache[key] = out
        return self.cache[key]

    def obj(self, protocol="compat", prefix="rg", *extra, compiler="gcc", flags=("-O2", "-fPIC")) -> Path:
        key = ("obj", protocol, prefix, extra, compiler, flags)
        if key not in self.cache:
            d = self.gen(protocol, prefix, *extra)
            o = d / f"{prefix}-{compiler}-{'_'.join(f.strip('-') for f in flags)}.o"
            cc(*flags, "-c", "-o", o, d / f"{prefix}_rseq.c", compiler=compiler)
            self.cache[key] = o
        return self.cache[key]

    def shared(self, name, objs, *ldflags, compiler="gcc") -> Path:
        out = self.root / name
        if not out.exists():
            cc("-shared", "-o", out, *objs, *ldflags, compiler=compiler)
        return out

    def asm(self, name: str, text: str, compiler="gcc") -> Path:
        src = self.root / f"{name}.S"
        src.write_text(text)
        o = self.root / f"{name}.o"
        cc("-c", "-o", o, src, compiler=compiler)
        return o

    def manifest(self, protocol="compat", prefix="rg", *extra) -> Path:
        return self.gen(protocol, prefix, *extra) / f"{prefix}_rseq.manifest.json"


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    return Builder(tmp_path_factory.mktemp("verify-build"))


def snippet(name: str, **subst) -> str:
    text = (SNIPPETS / name).read_text()
    for k, v in subst.items():
        text = text.replace("@" + k + "@", str(v))
    return text


# ---------------------------------------------------------------------------
# generated code passes, for every protocol and TLS model, gcc and clang

@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("tls_model", ["initial-exec", "global-dynamic"])
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_generated_objects_pass(build, tmp_path, protocol, tls_model, compiler):
    extra = ("--tls-model", tls_model)
    o = build.obj(protocol, "rg", *extra, compiler=compiler)
    rc, rep = verify(tmp_path, o, "--manifest", build.manifest(protocol, "rg", *extra),
                     "--protocol", protocol, "--min-glibc", "2.17")
    assert rc == 0, rep["findings"]
    assert rules_of(rep, "error") == set()
    assert rep["files"][0]["kind"] == "relocatable"
    assert [n["protocol"] for n in rep["files"][0]["notes"]] == [protocol]
    cs = rep["files"][0]["critical_sections"]
    assert cs["descriptors"] > 0 and cs["checked"] == cs["descriptors"]


@pytest.mark.parametrize("protocol", ["compat", "own", "glibc"])
def test_generated_shared_library_and_pie_pass(build, tmp_path, protocol):
    o = build.obj(protocol, "rg")
    lib = build.shared(f"lib{protocol}.so", [o], "-Wl,-z,nodelete")
    d = build.gen(protocol, "rg")
    main = tmp_path / "main.c"
    main.write_text('#include "rg_rseq.h"\nint main(void){ intptr_t v = 0;'
                    ' return rg__percpu_add_slow(&v, 1, 0) < -1; }\n')
    pie, nopie = tmp_path / "pie", tmp_path / "nopie"
    cc("-O2", "-fPIE", "-pie", "-I", d, "-o", pie, main, d / "rg_rseq.c")
    cc("-O2", "-fno-PIE", "-no-pie", "-I", d, "-o", nopie, main, d / "rg_rseq.c")
    rc, rep = verify(tmp_path, lib, pie, nopie, "--manifest", build.manifest(protocol, "rg"),
                     "--min-glibc", "2.17")
    assert rc == 0, rep["findings"]
    kinds = {Path(f["path"]).name: f["kind"] for f in rep["files"]}
    assert kinds == {lib.name: "shared-library", "pie": "pie-executable", "nopie": "executable"}
    for f in rep["files"]:  # descriptors resolved through RELATIVE relocations / absolute
        cs = f["critical_sections"]
        assert cs["descriptors"] > 0 and cs["checked"] == cs["descriptors"], f


def test_aarch64_object_passes(build, tmp_path):
    require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    d = build.gen("compat", "a64", "--arch", "aarch64")
    o = tmp_path / "a64.o"
    cc("-O2", "-fPIC", "-c", "-o", o, d / "a64_rseq.c", compiler="aarch64-linux-gnu-gcc")
    lib = tmp_path / "liba64.so"
    cc("-shared", "-Wl,-z,nodelete", "-o", lib, o, compiler="aarch64-linux-gnu-gcc")
    rc, rep = verify(tmp_path, o, lib, "--manifest", d / "a64_rseq.manifest.json", "--min-glibc", "2.17")
    assert rc == 0, rep["findings"]
    assert {f["arch"] for f in rep["files"]} == {"aarch64"}


CROSS = {  # arch table name -> Debian cross compiler
    "aarch64": "aarch64-linux-gnu-gcc", "arm": "arm-linux-gnueabihf-gcc",
    "ppc64le": "powerpc64le-linux-gnu-gcc", "ppc64": "powerpc64-linux-gnu-gcc",
    "ppc32": "powerpc-linux-gnu-gcc", "s390x": "s390x-linux-gnu-gcc",
    "riscv64": "riscv64-linux-gnu-gcc", "i386": "i686-linux-gnu-gcc",
}


@pytest.mark.parametrize("arch", [a for a in CROSS if a in ARCHES])
def test_cross_arch_objects(build, tmp_path, arch):
    """Every generated arch with a Debian cross compiler: the .o and a .so
    pass with every descriptor resolved (relocations of that machine), and a
    flipped RSEQ_SIG in the object is caught."""
    compiler = shutil.which(CROSS[arch])
    if compiler is None:
        pytest.fail(f"{CROSS[arch]} not found: install its gcc cross package (.ci/apt-packages.txt)")
    d = build.gen("compat", "xa", "--arch", arch)
    o, lib = tmp_path / "x.o", tmp_path / "libx.so"
    cc("-O2", "-fPIC", "-c", "-o", o, d / "xa_rseq.c", compiler=compiler)
    cc("-shared", "-Wl,-z,nodelete", "-o", lib, o, compiler=compiler)
    rc, rep = verify(tmp_path, o, lib, "--manifest", d / "xa_rseq.manifest.json", "--min-glibc", "2.17")
    assert rc == 0, rep["findings"]
    for f in rep["files"]:
        assert f["arch"] == arch
        cs = f["critical_sections"]
        assert cs["descriptors"] > 0 and cs["checked"] == cs["descriptors"], f
    a = ARCHES[arch]
    endian = a.endians[0]
    sig = a.sig_for(endian).to_bytes(4, endian)
    data = o.read_bytes()
    assert sig in data
    bad = tmp_path / "bad.o"
    bad.write_bytes(data.replace(sig, b"\xde\xad\xbe\xef"))
    rc, rep = verify(tmp_path, bad)
    assert "RSEQ406" in rules_of(rep) and rc == 1


def test_aarch64_wrong_signature_caught(build, tmp_path):
    """The signature comes from the arch table, per machine: an x86 signature
    in an aarch64 object is wrong."""
    require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    src = tmp_path / "bad.S"
    src.write_text(snippet("cs_aarch64.S", SIG="0x53053053"))
    o = tmp_path / "bad.o"
    cc("-c", "-o", o, src, compiler="aarch64-linux-gnu-gcc")
    rc, rep = verify(tmp_path, o)
    assert "RSEQ406" in rules_of(rep) and rc == 1
    src.write_text(snippet("cs_aarch64.S", SIG="0xd428bc00"))
    cc("-c", "-o", o, src, compiler="aarch64-linux-gnu-gcc")
    rc, rep = verify(tmp_path, o)
    assert rc == 0, rep["findings"]


def test_i386_object_passes(build, tmp_path):
    require_tool("i686-linux-gnu-gcc", "gcc-i686-linux-gnu")
    d = build.gen("compat", "x32", "--arch", "i386")
    o = tmp_path / "i386.o"
    cc("-O2", "-fPIC", "-c", "-o", o, d / "x32_rseq.c", compiler="i686-linux-gnu-gcc")
    lib = tmp_path / "libi386.so"
    cc("-shared", "-Wl,-z,nodelete", "-o", lib, o, compiler="i686-linux-gnu-gcc")
    rc, rep = verify(tmp_path, o, lib, "--manifest", d / "x32_rseq.manifest.json")
    assert rc == 0, rep["findings"]
    assert {(f["arch"], f["elfclass"]) for f in rep["files"]} == {("i386", 32)}


# ---------------------------------------------------------------------------
# every rule: a failing fixture and its passing twin

CS = "cs_x86_64.S"
GOOD_CS = dict(VERSION=0, FLAGS=0, SIG="0x53053053", PCO="(2b - 1b)", ABORT="4b", PTRS=".quad 3b",
               EXIT=".quad 1b, 2b")


def _cs(build, name, **over):
    return build.asm(name, snippet(CS, **{**GOOD_CS, **over}))


@pytest.mark.parametrize("rule,bad,good", [
    ("RSEQ101", dict(SECTION=".data", FLAGS='"aw"', TYPE="@object"),
     dict(SECTION=".tbss", FLAGS='"awT",@nobits', TYPE="@tls_object")),
    ("RSEQ102", dict(SIZE=16), dict(SIZE=32)),
    ("RSEQ103", dict(PAD=8), dict(PAD=0)),
    ("RSEQ105", dict(VIS=".hidden __rseq_abi"), dict(VIS="")),
    ("RSEQ107", dict(REFSIZE=8), dict(REFSIZE=4)),
    ("RSEQ108", dict(HANDLEDSIZE=8), dict(HANDLEDSIZE=4)),
])
def test_area_symbol_rules(build, tmp_path, rule, bad, good):
    base = dict(SECTION=".tbss", FLAGS='"awT",@nobits', TYPE="@tls_object", SIZE=32, PAD=0, VIS="",
                REFSIZE=4, HANDLEDSIZE=4)
    ob = build.asm(f"{rule}-bad", snippet("area.S", **{**base, **bad}))
    og = build.asm(f"{rule}-good", snippet("area.S", **{**base, **good}))
    rc, rep = verify(tmp_path, ob, "--protocol", "handled")
    assert rule in rules_of(rep) and rc == 1, rep["findings"]
    rc, rep = verify(tmp_path, og, "--protocol", "handled")
    assert rc == 0 and rules_of(rep, "error") == set(), rep["findings"]


def test_tls_segment_alignment(build, tmp_path):
    """RSEQ104: a PT_TLS aligned to 8 cannot hold a 32-aligned area."""
    base = dict(SECTION=".tbss", FLAGS='"awT",@nobits', TYPE="@tls_object", SIZE=32, PAD=0, VIS="",
                REFSIZE=4, HANDLEDSIZE=4)
    bad = build.asm("tlsalign-bad", snippet("area.S", **base).replace(".balign 32", ".balign 8"))
    good = build.asm("tlsalign-good", snippet("area.S", **base))
    libs = []
    for o in (bad, good):
        lib = tmp_path / f"{o.stem}.so"
        cc("-shared", "-nostdlib", "-Wl,-z,nodelete", "-o", lib, o)
        libs.append(lib)
    rc, rep = verify(tmp_path, libs[0])
    assert "RSEQ104" in rules_of(rep), rep["findings"]
    rc, rep = verify(tmp_path, libs[1])
    assert rc == 0, rep["findings"]


def test_hidden_abi_under_cpu_id(build, tmp_path):
    """RSEQ105 on a real build: generated cpu-id code linked with a version
    script that makes __rseq_abi local."""
    o = build.obj("cpu-id", "rg")
    script = tmp_path / "hide.map"
    script.write_text("{ global: *; local: __rseq_abi; };\n")
    bad = tmp_path / "libhidden.so"
    cc("-shared", "-Wl,-z,nodelete", f"-Wl,--version-script={script}", "-o", bad, o)
    good = build.shared("libcpuid.so", [o], "-Wl,-z,nodelete")
    rc, rep = verify(tmp_path, bad)
    assert "RSEQ105" in rules_of(rep) and rc == 1, rep["findings"]
    rc, rep = verify(tmp_path, good)
    assert rc == 0, rep["findings"]


@pytest.mark.parametrize("protocol", ["compat", "handled"])
def test_executable_exports_shared_symbols(build, tmp_path, protocol):
    """RSEQ109: an executable's shared symbols must be in .dynsym for
    modules dlopen'd later; the protocol row lists the link flags."""
    d = build.gen(protocol, "rg")
    main = tmp_path / "main.c"
    main.write_text('#include "rg_rseq.h"\nint main(void){ return rg_register_current_thread() < -1; }\n')
    bad, good = tmp_path / "bad", tmp_path / "good"
    cc("-O2", "-I", d, "-o", bad, main, d / "rg_rseq.c")
    cc("-O2", "-I", d, "-o", good, main, d / "rg_rseq.c", *PROTOCOLS[protocol].executable_link_flags)
    rc, rep = verify(tmp_path, bad)
    flagged = {f["symbol"] for f in rep["findings"] if f["rule"] == "RSEQ109"}
    assert flagged == set(PROTOCOLS[protocol].shared_symbols) and rc == 0  # a warning
    rc, rep = verify(tmp_path, good, "--fail-on", "warning")
    assert rc == 0, rep["findings"]


def test_private_area_exported(build, tmp_path):
    """RSEQ106: the own protocol keeps its area private."""
    bad = build.asm("private-bad", snippet("private.S", BIND=".globl"))
    good = build.asm("private-good", snippet("private.S", BIND=".local"))
    rc, rep = verify(tmp_path, bad)
    assert "RSEQ106" in rules_of(rep) and rc == 1, rep["findings"]
    rc, rep = verify(tmp_path, good)
    assert rc == 0, rep["findings"]


def test_strong_glibc_reference(build, tmp_path):
    """RSEQ201: a strong __rseq_size@GLIBC_2.35 reference with --min-glibc 2.17."""
    strong = tmp_path / "strong.c"
    strong.write_text("extern const unsigned int __rseq_size;\n"
                      "unsigned int get(void) { return __rseq_size; }\n")
    weak = tmp_path / "weak.c"
    weak.write_text("extern const unsigned int __rseq_size __attribute__((weak));\n"
                    "unsigned int get(void) { return &__rseq_size ? __rseq_size : 0; }\n")
    libs = {}
    for src in (strong, weak):
        libs[src.stem] = tmp_path / f"lib{src.stem}.so"
        cc("-O2", "-shared", "-fPIC", "-o", libs[src.stem], src)
    rc, rep = verify(tmp_path, libs["strong"], "--min-glibc", "2.17")
    assert "RSEQ201" in rules_of(rep) and rc == 1
    msg = next(f["message"] for f in rep["findings"] if f["rule"] == "RSEQ202")
    assert "GLIBC_2.35" in msg and "ld-linux-x86-64.so.2" in msg
    rc, rep = verify(tmp_path, libs["strong"], "--min-glibc", "2.35")
    assert rc == 0
    rc, rep = verify(tmp_path, libs["weak"], "--min-glibc", "2.17")
    assert rc == 0, rep["findings"]


def test_initial_exec_when_dlopened(build, tmp_path):
    """RSEQ301: initial-exec area in a library meant for dlopen."""
    ie = build.shared("libie.so", [build.obj("compat", "rg", "--tls-model", "initial-exec")],
                      "-Wl,-z,nodelete")
    gd = build.shared("libgd.so", [build.obj("compat", "rg", "--tls-model", "global-dynamic")],
                      "-Wl,-z,nodelete")
    rc, rep = verify(tmp_path, ie, "--dlopen")
    assert "RSEQ301" in rules_of(rep) and rc == 1, rep["findings"]
    rc, rep = verify(tmp_path, ie)
    assert rc == 0, rep["findings"]
    rc, rep = verify(tmp_path, gd, "--dlopen")
    assert rc == 0, rep["findings"]


def test_owner_without_nodelete(build, tmp_path):
    """RSEQ302: an owning library must be linked -z nodelete where it is to
    be dlopen'd (an error); loaded at start-up it is never unloaded (at most
    a warning)."""
    o = build.obj("compat", "rg", "--tls-model", "global-dynamic")  # dlopen-able TLS (RSEQ301)
    bad = build.shared("libnodelete-missing-gd.so", [o])
    good = build.shared("libnodelete-gd.so", [o], "-Wl,-z,nodelete")
    rc, rep = verify(tmp_path, bad, "--dlopen")
    assert "RSEQ302" in rules_of(rep, "error") and rc == 1
    rc, rep = verify(tmp_path, good, "--dlopen")
    assert rc == 0, rep["findings"]
    rc, rep = verify(tmp_path, bad)
    assert "RSEQ302" in rules_of(rep, "warning") and rc == 0
    # As a DT_NEEDED library of a program: a warning; as its --plugin: an error.
    exe = _closure_exe(tmp_path, [bad], "needs-nodelete-missing")
    rc, rep = verify(tmp_path, exe, "--closure")
    assert {(f["file"], f["severity"]) for f in rep["findings"] if f["rule"] == "RSEQ302"} == \
        {(str(bad), "warning")} and rc == 0, rep["findings"]
    rc, rep = verify(tmp_path, _closure_exe(tmp_path, [good], "plain"), "--closure", "--plugin", bad)
    assert {(f["file"], f["severity"]) for f in rep["findings"] if f["rule"] == "RSEQ302"} == \
        {(str(bad), "error")} and rc == 1, rep["findings"]
    # The glibc protocol owns nothing: no NODELETE needed.
    rc, rep = verify(tmp_path, build.shared("libglibconly.so", [build.obj("glibc", "rg")]))
    assert rc == 0, rep["findings"]


@pytest.mark.parametrize("rule,over", [
    ("RSEQ402", dict(VERSION=1)),
    ("RSEQ403", dict(FLAGS=1)),
    ("RSEQ404", dict(PCO="0x1000")),
    ("RSEQ405", dict(ABORT="1b + 1")),
    ("RSEQ406", dict(SIG="0x12345678")),
    ("RSEQ407", dict(PTRS=".quad 3b, 3b")),
    ("RSEQ408", dict(EXIT=".quad 2b, 2b")),
])
def test_critical_section_rules(build, tmp_path, rule, over):
    bad = _cs(build, f"cs-{rule}", **over)
    good = _cs(build, "cs-good")
    rc, rep = verify(tmp_path, bad)
    assert rule in rules_of(rep), rep["findings"]
    assert rc == (1 if RULE_LIST[[r.id for r in RULE_LIST].index(rule)].severity == "error" else 0)
    rc, rep = verify(tmp_path, good)
    assert rc == 0 and rep["findings"] == [], rep["findings"]
    # The same checks on the linked form (RELATIVE relocations applied).
    lib_bad, lib_good = tmp_path / "bad.so", tmp_path / "good.so"
    cc("-shared", "-nostdlib", "-o", lib_bad, bad)
    cc("-shared", "-nostdlib", "-o", lib_good, good)
    rc, rep = verify(tmp_path, lib_bad)
    assert rule in rules_of(rep), rep["findings"]
    rc, rep = verify(tmp_path, lib_good)
    assert rc == 0 and rep["findings"] == [], rep["findings"]


@pytest.mark.parametrize("linker", [
    ("gcc",), ("gcc", "-Wl,-z,pack-relative-relocs"),
    ("clang", "-fuse-ld=lld"), ("clang", "-fuse-ld=lld", "-Wl,--pack-dyn-relocs=relr"),
], ids=["bfd", "bfd-relr", "lld", "lld-relr"])
def test_linkers_and_relative_relocation_forms(build, tmp_path, linker):
    """RELA with the addend in place (GNU ld) or not (lld), and packed RELR:
    descriptors resolve either way, so the good build is clean and a wrong
    signature is still caught."""
    compiler, *flags = linker
    require_tool("ld.lld", "lld") if "-fuse-ld=lld" in flags else None
    good, bad = _cs(build, "cs-good"), _cs(build, "cs-RSEQ406", SIG="0x12345678")
    for o, expect in ((good, set()), (bad, {"RSEQ406"})):
        lib = tmp_path / f"{o.stem}.so"
        cc("-shared", "-nostdlib", *flags, "-o", lib, o, compiler=compiler)
        rc, rep = verify(tmp_path, lib)
        assert rules_of(rep) == expect, rep["findings"]
        assert rep["files"][0]["critical_sections"] == {"descriptors": 1, "checked": 1}
    gen = build.shared(f"libgen-{'-'.join(f.strip('-') for f in linker)}.so".replace("=", "_").replace(",", "_"),
                       [build.obj("compat", "rg")], "-Wl,-z,nodelete", *flags, compiler=compiler)
    rc, rep = verify(tmp_path, gen)
    assert rc == 0, rep["findings"]
    cs = rep["files"][0]["critical_sections"]
    assert cs["descriptors"] > 0 and cs["checked"] == cs["descriptors"]


def test_cs_section_layout(build, tmp_path):
    """RSEQ401: __rseq_cs aligned to 8 with a 24-byte descriptor."""
    bad = build.asm("cs-layout-bad", snippet(CS, **GOOD_CS).replace(".balign 32", ".balign 8")
                    .replace(".quad 1b, (2b - 1b), 4b", ".quad 1b, 4b"))
    rc, rep = verify(tmp_path, bad)
    assert "RSEQ401" in rules_of(rep), rep["findings"]
    rc, rep = verify(tmp_path, _cs(build, "cs-good"))
    assert rc == 0


def _closure_exe(tmp_path, libs, name="app"):
    main = tmp_path / f"{name}.c"
    main.write_text("int main(void) { return 0; }\n")
    exe = tmp_path / name
    cc("-o", exe, main, "-Wl,--no-as-needed", *libs, "-Wl,-rpath," + str(libs[0].parent))
    return exe


@pytest.mark.parametrize("rule,protocols", [
    ("RSEQ501", ("own", "own")),
    ("RSEQ502", ("own", "compat")),
    ("RSEQ503", ("compat", "cpu-id")),
])
def test_two_owners_in_one_closure(build, tmp_path, rule, protocols):
    libs = []
    for i, proto in enumerate(protocols):
        libs.append(build.shared(f"libowner-{proto}-p{i}.so", [build.obj(proto, f"p{i}")],
                                 "-Wl,-z,nodelete"))
    exe = _closure_exe(tmp_path, libs)
    rc, rep = verify(tmp_path, exe, "--closure")
    assert rule in rules_of(rep), rep["findings"]
    finding = next(f for f in rep["findings"] if f["rule"] == rule)
    assert libs[0].name in finding["message"] and libs[1].name in finding["message"]
    # Passing twin: every module on the same shared protocol.
    twins = [build.shared(f"libtwin-p{i}.so", [build.obj("compat", f"p{i}")], "-Wl,-z,nodelete")
             for i in range(2)]
    exe = _closure_exe(tmp_path, twins, "twin")
    rc, rep = verify(tmp_path, exe, "--closure")
    assert rc == 0 and not rules_of(rep, "error") and not rules_of(rep, "warning"), rep["findings"]
    pred = rep["closures"][0]["prediction"]
    assert [m["prefix"] for m in pred["members"]] == ["p0", "p1"]
    assert {t["registrant"] for t in pred["environments"]["glibc"]["peer"]["threads"].values()} == {"glibc"}


def test_registration_modes_must_agree(build, tmp_path):
    """RSEQ506 and RSEQ110: a legacy compat executable (its 32-byte
    __rseq_abi wins) with an extended compat library (which may register 64
    bytes); the twin has both extended."""
    main = tmp_path / "main.c"
    main.write_text('#include "app_rseq.h"\nint main(void){ return app_register_current_thread() < -1; }\n')
    results = {}
    for mode in ("legacy", "extended"):
        lib = build.shared("libext.so", [build.obj("compat", "lx", "--registration", "extended")],
                           "-Wl,-z,nodelete")
        d = build.gen("compat", "app", "--registration", mode)
        exe = tmp_path / f"app-{mode}"
        cc("-O2", "-I", d, "-o", exe, main, d / "app_rseq.c", "-Wl,--no-as-needed", lib,
           f"-Wl,-rpath,{lib.parent}",
           *PROTOCOLS["compat"].executable_link_flags)
        results[mode] = verify(tmp_path, exe, "--closure")
    rc, rep = results["legacy"]
    assert {"RSEQ506", "RSEQ110"} <= rules_of(rep) and rc == 1, rep["findings"]
    msg = next(f["message"] for f in rep["findings"] if f["rule"] == "RSEQ110")
    assert "32 bytes" in msg and "64 bytes" in msg, msg
    rc, rep = results["extended"]
    assert rc == 0 and not rules_of(rep, "error"), rep["findings"]


@pytest.mark.parametrize("first", ["legacy", "extended"])
def test_registration_mismatch_inside_one_file(build, tmp_path, first):
    """Two compat objects of different modes in one library: the linker keeps
    the first weak __rseq_abi; a legacy one first is too small (RSEQ110)."""
    objs = {m: build.obj("compat", f"m{m[0]}", "--registration", m) for m in ("legacy", "extended")}
    order = [objs[first], objs["extended" if first == "legacy" else "legacy"]]
    lib = tmp_path / f"libmixed-{first}.so"
    cc("-shared", "-Wl,-z,nodelete", "-o", lib, *order)
    rc, rep = verify(tmp_path, lib)
    assert "RSEQ506" in rules_of(rep) and rc == 1, rep["findings"]
    assert ("RSEQ110" in rules_of(rep)) == (first == "legacy"), rep["findings"]


def test_extended_area_layout_in_the_manifest(build, tmp_path):
    """The manifest of extended code promises a 64-byte, 64-aligned area, and
    the built object keeps the promise."""
    for protocol in ("compat", "own"):
        m = json.loads(build.manifest(protocol, "ex", "--registration", "extended").read_text())
        assert m["registration"] == {"mode": "extended", "min_len": 32, "max_len": 64, "area_size": 64,
                                     "area_align": 64, "extend_from_feature_size": 0}
        area = next(s for s in m["symbols"] if s["role"] in ("shared", "private"))
        assert area["st_size"]["x86_64"] == 64 and area["align"]["x86_64"] == 64
        o = build.obj(protocol, "ex", "--registration", "extended")
        rc, rep = verify(tmp_path, o, "--manifest", build.manifest(protocol, "ex", "--registration", "extended"))
        assert rc == 0, rep["findings"]


def test_conflict_inside_one_file(build, tmp_path):
    """Two generated objects with private areas linked into one library."""
    lib = tmp_path / "libboth.so"
    cc("-shared", "-Wl,-z,nodelete", "-o", lib, build.obj("own", "a1"), build.obj("own", "a2"))
    rc, rep = verify(tmp_path, lib)
    assert "RSEQ501" in rules_of(rep)


def test_protocol_note_rules(build, tmp_path):
    """RSEQ504 (unknown protocol in a note) and RSEQ505 (--protocol mismatch)."""
    bad = build.asm("note-unknown", snippet("private.S", BIND=".local").replace("protocol=own", "protocol=zzz"))
    rc, rep = verify(tmp_path, bad)
    assert "RSEQ504" in rules_of(rep)
    o = build.obj("compat", "rg")
    rc, rep = verify(tmp_path, o, "--protocol", "cpu-id")
    assert "RSEQ505" in rules_of(rep) and rc == 1
    rc, rep = verify(tmp_path, o, "--protocol", "compat")
    assert rc == 0


def test_manifest_rules(build, tmp_path):
    o = build.obj("compat", "rg")
    good = json.loads(build.manifest("compat", "rg").read_text())
    # RSEQ603 + RSEQ601: the manifest of another prefix.
    rc, rep = verify(tmp_path, o, "--manifest", build.manifest("compat", "other"))
    assert {"RSEQ601", "RSEQ603"} <= rules_of(rep) and rc == 1
    missing = next(f for f in rep["findings"] if f["rule"] == "RSEQ601")
    assert missing["source"]["file"].endswith("other_rseq.c") and missing["source"]["line"]
    # RSEQ602: a manifest promising a 64-byte __rseq_abi.
    changed = json.loads(json.dumps(good))
    for s in changed["symbols"]:
        if s["name"] == "__rseq_abi":
            s["st_size"]["x86_64"] = 64
    m = tmp_path / "changed.json"
    m.write_text(json.dumps(changed))
    rc, rep = verify(tmp_path, o, "--manifest", m)
    assert "RSEQ602" in rules_of(rep) and rc == 1
    # RSEQ604: an operation whose slow path holds no critical section (a
    # manifest naming a function without one).
    changed = json.loads(json.dumps(good))
    assert len(changed["operations"]) == 18
    changed["operations"][3].update(slow_path="rg_owner", arch_function="rg_no_such_function")
    m.write_text(json.dumps(changed))
    rc, rep = verify(tmp_path, o, "--manifest", m)
    assert [f["rule"] for f in rep["findings"]] == ["RSEQ604"] and rc == 1
    rc, rep = verify(tmp_path, o, "--manifest", build.manifest("compat", "rg"))
    assert rc == 0


def test_closure_unresolved(build, tmp_path):
    """RSEQ701: a DT_NEEDED library that is gone."""
    d = tmp_path / "gone"
    d.mkdir()
    lib = d / "libgone.so"
    cc("-shared", "-fPIC", "-o", lib, "-x", "c", "/dev/null")
    exe = tmp_path / "needs-gone"
    main = tmp_path / "m.c"
    main.write_text("int main(void){return 0;}\n")
    cc("-o", exe, main, "-Wl,--no-as-needed", "-L", d, "-lgone")
    rc, rep = verify(tmp_path, exe, "--closure")
    assert "RSEQ701" in rules_of(rep) and rc == 0  # a warning
    rc, rep = verify(tmp_path, exe, "--closure", "--fail-on", "warning")
    assert rc == 1
    rc, rep = verify(tmp_path, exe, "--closure", "--fail-on", "warning")
    env = dict(os.environ, LD_LIBRARY_PATH=str(d))
    proc = run_rseq_gen("verify", "--closure", "--format", "json", exe, env=env)
    rep = json.loads(proc.stdout)
    assert "RSEQ701" not in rules_of(rep)
    assert str(lib) in [l["path"] for l in rep["closures"][0]["loaded"]]


def test_arch_unknown(build, tmp_path):
    """RSEQ801: an object whose e_machine has no known RSEQ_SIG."""
    good = _cs(build, "cs-good")
    bad = tmp_path / "odd.o"
    data = bytearray(good.read_bytes())
    data[18:20] = (0x99).to_bytes(2, "little")
    bad.write_bytes(bytes(data))
    rc, rep = verify(tmp_path, bad)
    assert "RSEQ801" in rules_of(rep)
    rc, rep = verify(tmp_path, good)
    assert "RSEQ801" not in rules_of(rep)


def test_every_rule_has_a_fixture():
    """Keep the rule table and the verify tests in step (the coexistence
    rules' fixtures are in test_verify_coexistence.py)."""
    here = Path(__file__).parent
    text = "".join((here / n).read_text() for n in ("test_verify.py", "test_verify_coexistence.py"))
    for r in RULE_LIST:
        assert f'"{r.id}"' in text, f"{r.id} has no fixture in the verify tests"


# ---------------------------------------------------------------------------
# system files

def test_closure_of_bin_ls_says_glibc():
    proc = run_rseq_gen("verify", "--closure", "--notes", "/bin/ls")  # the owners are an RSEQ702 note
    assert proc.returncode == 0
    assert "glibc >= 2.35 registering: glibc |" in proc.stdout
    assert "ld-linux" in proc.stdout
    rep = json.loads(run_rseq_gen("verify", "--closure", "--format", "json", "/bin/ls").stdout)
    owner = next(f for f in rep["findings"] if f["rule"] == "RSEQ702")
    assert owner["severity"] == "note"
    assert owner["message"] == ("registration owner per environment: glibc >= 2.35 registering: glibc | "
                                "glibc, glibc.pthread.rseq=0: none | rseq denied (ENOSYS/EPERM): none")
    pred = rep["closures"][0]["prediction"]
    assert pred["members"] == [] and pred["libc"] == "glibc"


def test_libc_and_ld_so(tmp_path):
    rc, rep = verify(tmp_path, LIBC_SO, LD_SO, "--closure", "--jobs", "2")
    assert rc == 0 and not rep["errors"]
    notes = [f["message"] for f in rep["findings"] if f["rule"] == "RSEQ202"]
    assert any("__rseq_size needs GLIBC_2.35 from ld-linux-x86-64.so.2" in n for n in notes)
    assert any("__rseq_offset is defined here at version GLIBC_2.35" in n for n in notes)
    assert {c["prediction"]["libc"] for c in rep["closures"]} == {"glibc"}
    adopters = {Path(f["path"]).name: [a["name"] for a in f["adopters"]] for f in rep["files"]}
    assert adopters == {"libc.so.6": [], "ld-linux-x86-64.so.2": ["glibc"]}, adopters


def test_symbol_lookup_through_an_anchor_finds_the_same(tmp_path):
    """find_symbols with an anchor (one scan for "rseq") finds exactly what
    one scan per name finds, tails of merged strings included."""
    from rseq_gen.elf import map_file, open_elf
    from rseq_gen.verify.checks import _AREA_NAMES
    from rseq_gen.verify.recognise import NAMES

    names = list(dict.fromkeys(_AREA_NAMES + NAMES + ("rseq", "_rseq_size", "malloc")))
    strtab = tmp_path / "merged.S"  # "x__rseq_abi" holds "__rseq_abi" as its tail
    strtab.write_text('.globl x__rseq_abi\n.data\nx__rseq_abi: .long 0\n'
                      '.globl __rseq_abi\n.set __rseq_abi, x__rseq_abi + 0\n'
                      '.section .note.GNU-stack,"",@progbits\n')
    obj = tmp_path / "merged.o"
    subprocess.run(["gcc", "-c", "-o", obj, strtab], check=True)
    for path in (LIBC_SO, LD_SO, str(obj)):
        elf = open_elf(map_file(path), path)
        for table in (".symtab", ".dynsym"):
            plain = elf.find_symbols(names, table)
            anchored = elf.find_symbols(names, table, "rseq")
            assert plain == anchored, (path, table)
    elf = open_elf(map_file(str(obj)), str(obj))
    assert [s.name for s in elf.find_symbols(["__rseq_abi"], ".symtab", "rseq")["__rseq_abi"]] == ["__rseq_abi"]


def test_libc_a_parses_cleanly(tmp_path):
    rc, rep = verify(tmp_path, LIBC_A, "--jobs", "2", "--min-glibc", "2.17")
    assert rc == 0, (rep["errors"][:3], rep["findings"][:3])
    assert rep["files"][0]["kind"] == "archive" and rep["files"][0]["members"] > 1000


def test_static_executable_owner(build, tmp_path):
    d = build.gen("compat", "rg")
    main = tmp_path / "main.c"
    main.write_text('#include "rg_rseq.h"\nint main(void){ return rg_register_current_thread() < -1; }\n')
    exe = tmp_path / "static"
    cc("-O2", "-static", "-I", d, "-o", exe, main, d / "rg_rseq.c")
    rc, rep = verify(tmp_path, exe, "--closure")
    assert rc == 0, rep["findings"]
    assert [a["name"] for a in rep["files"][0]["adopters"]] == ["glibc", "rseq-gen"]
    pred = rep["closures"][0]["prediction"]
    assert pred["libc"] == "glibc-static" and pred["applicable"] == ["glibc-static", "glibc-rseq-off", "denied"]
    label = f"{exe}:rg"
    assert [m["label"] for m in pred["members"]] == [label]
    glibc, off = (pred["environments"][e]["rseq-gen"] for e in ("glibc-static", "glibc-rseq-off"))
    assert glibc["threads"]["main"]["owners"] == {label: "glibc"}
    assert off["threads"]["worker"] == {"owners": {label: "self"}, "peers": {}, "registrant": label}


# ---------------------------------------------------------------------------
# outputs

def test_json_report_matches_schema(build, tmp_path):
    import jsonschema  # test dependency (pip install .[test])
    from importlib.resources import files

    schema = json.loads(files("rseq_gen").joinpath("verify-schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    bad = build.shared("libnodelete-missing.so", [build.obj("compat", "rg")])
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf at all")
    rc, rep = verify(tmp_path, bad, junk, "/bin/ls", "--closure", "--manifest",
                     build.manifest("compat", "rg"))
    assert rc == 2 and rep["version"] == 2
    jsonschema.validate(rep, schema)


def test_sarif_junit_github(build, tmp_path):
    m = build.manifest("compat", "rg")
    data = json.loads(m.read_text())
    data["origin"] = {"file": str(tmp_path / "CMakeLists.txt"), "line": 12}
    m2 = tmp_path / "m.json"
    m2.write_text(json.dumps(data))
    bad = build.shared("libnodelete-missing.so", [build.obj("compat", "rg")])
    out = tmp_path / "out.sarif"
    rc = cli_main(["verify", "--format", "sarif", "--output", str(out), "--manifest", str(m2), str(bad)])
    assert rc == 0  # RSEQ302 is a warning unless the library is to be dlopen'd
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0"
    res = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "RSEQ302"]
    assert len(res) == 1 and res[0]["level"] == "warning"
    loc = res[0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("CMakeLists.txt") and loc["region"]["startLine"] == 12
    assert res[0]["properties"]["binary"] == str(bad)
    ids = [r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]]
    assert ids == [r.id for r in RULE_LIST]

    out = tmp_path / "out.xml"
    rc = cli_main(["verify", "--format", "junit", "--output", str(out), "--fail-on", "warning", str(bad),
                   LIBC_SO])
    tree = ET.parse(out)
    suites = tree.getroot().findall("testsuite")
    assert len(suites) == 2
    cases = suites[0].findall("testcase")
    assert len(cases) == len(RULE_LIST)
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["RSEQ302 owner-without-nodelete"]

    out = tmp_path / "out.txt"
    objs = [_cs(build, f"cs-gh-{i}", SIG="0x1") for i in range(12)]
    rc = cli_main(["verify", "--format", "github", "--output", str(out), *map(str, objs)])
    lines = out.read_text().splitlines()
    assert sum(1 for l in lines if l.startswith("::error ")) == 10
    assert lines[-1].startswith("rseq-gen verify: 12 file(s), 12 error(s)") and "2 more" in lines[-1]


def test_text_output_and_exit_codes(build, tmp_path):
    bad = build.shared("libnodelete-missing-gd.so", [build.obj("compat", "rg", "--tls-model", "global-dynamic")])
    proc = run_rseq_gen("verify", "--dlopen", bad, check=False)
    assert proc.returncode == 1
    assert f"{bad}: error RSEQ302 owner-without-nodelete:" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("rseq-gen verify: 1 file(s), 1 error(s)")
    proc = run_rseq_gen("verify", "--min-glibc", "two", bad, check=False)
    assert proc.returncode == 2 and "--min-glibc" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_rseq_gen("verify", "--protocol", "nope", bad, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run_rseq_gen("verify", "--manifest", tmp_path / "missing.json", bad, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_rules_doc_in_sync():
    assert (ROOT / "docs" / "rules.md").read_text() == render_markdown(), \
        "docs/rules.md is stale: run PYTHONPATH=toolkit python -m rseq_gen.rules docs/rules.md"


def test_rules_generator_options(tmp_path):
    # An option is never taken for the output path (a file named "--help" was once written and committed).
    env = {**os.environ, "PYTHONPATH": str(ROOT / "toolkit")}
    def rules(*args):
        return subprocess.run([sys.executable, "-m", "rseq_gen.rules", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
    proc = rules("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage:")
    proc = rules("--bogus")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert rules("--check").returncode == 2
    assert rules("--check", "stale.md").returncode == 1
    assert rules("out.md").returncode == 0 and (tmp_path / "out.md").read_text() == render_markdown()
    assert rules("--check", "out.md").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.md"]


def test_elftools_only_in_elf_module():
    pkg = ROOT / "toolkit" / "rseq_gen"
    importing = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                       if any(line.lstrip().startswith(("import elftools", "from elftools"))
                              for line in p.read_text().splitlines()))
    assert importing == ["elf.py"]


def test_cli_parser_is_import_light():
    """Building the parser (every `rseq-gen` command) imports neither
    pyelftools nor the verify engine: they load when verify runs."""
    code = ("import sys; from rseq_gen.cli import build_parser; build_parser(); "
            "heavy = sorted(m for m in sys.modules if m.startswith(('elftools', 'rseq_gen.elf', "
            "'rseq_gen.verify.'))); print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "toolkit")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
