"""``rseq-gen verify`` on shared libraries built the way C libraries are
built (``-fvisibility=hidden``, a version script, ``-z defs``,
``--as-needed``), RSEQ602 on what the manifest promises about visibility,
and RSEQ507 with the prediction when two modules of one process export the
same prefix's generated names (``--visibility default``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import generate, require_tool
from rseq_gen.elf import map_file, open_elf
from rseq_gen.names import module_names
from rseq_gen.protocols import PROTOCOLS
from test_verify import cc, rules_of, verify

#: A library's own API around the generated module: what it exports.
LIBRARY = r"""
#include "st_rseq.h"
#define STATS_API __attribute__((visibility("default")))
STATS_API const char *stats_owner(void) { return st_owner(); }
STATS_API int stats_cpu(void) { return st_current_cpu(); }
STATS_API void *stats_owner_function(void) { return (void *)&st_owner; }
"""

#: How a library may be built; each verifies clean against its manifest.
BUILDS = {
    "hidden": ("-fvisibility=hidden",),
    "version-script": ("@script",),
    "hidden+version-script": ("-fvisibility=hidden", "@script"),
    "plain": (),
}


def _library(tmp: Path, gen: Path, name: str, flags, script_globals, source=LIBRARY) -> Path:
    """lib<name>.so from the generated source and ``source``, linked with
    -z defs and --as-needed; "@script" in flags stands for a version script
    that keeps stats_* and ``script_globals`` global and the rest local."""
    src = tmp / f"{name}.c"
    src.write_text(source)
    script = tmp / f"{name}.map"
    script.write_text("{\n  global:\n    stats_*;\n" + "".join(f"    {g};\n" for g in script_globals)
                      + "  local:\n    *;\n};\n")
    args = [f"-Wl,--version-script={script}" if f == "@script" else f for f in flags]
    out = tmp / f"lib{name}.so"
    cc("-O2", "-fPIC", "-shared", "-I", gen, *args, "-Wl,-z,defs", "-Wl,--as-needed",
       "-o", out, src, gen / "st_rseq.c")
    return out


def _dynamic_names(path: Path) -> set[str]:
    elf = open_elf(map_file(str(path)), str(path))
    return {s.name for s in elf.symbols(".dynsym") if s.defined and s.name}


def _manifest(gen: Path) -> dict:
    return json.loads((gen / "st_rseq.manifest.json").read_text())


@pytest.mark.parametrize("how", list(BUILDS))
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_library_built_as_libraries_are_verifies_clean(tmp_path, protocol, how):
    gen = generate(tmp_path / "gen", protocol, "st")
    manifest = _manifest(gen)
    lib = _library(tmp_path, gen, "stats", BUILDS[how], manifest["version_script_globals"])
    rc, rep = verify(tmp_path, lib, "--manifest", gen / "st_rseq.manifest.json")
    assert rc == 0 and rules_of(rep, "error") == set(), rep["findings"]
    # Its dynamic symbol table holds its API and the names the protocol
    # shares, none of the module's own names.
    exported = _dynamic_names(lib)
    assert not exported & set(module_names("st")), exported & set(module_names("st"))
    assert {"stats_owner", "stats_cpu"} <= exported
    shared = {s["name"] for s in manifest["symbols"] if s["role"] == "shared"}
    assert shared <= exported, shared - exported


def test_version_script_hiding_a_shared_name_is_an_error(tmp_path):
    """__rseq_abi left out of the version script's global: list."""
    gen = generate(tmp_path / "gen", "compat", "st")
    assert "__rseq_abi" in _manifest(gen)["version_script_globals"]
    lib = _library(tmp_path, gen, "stats", ("-fvisibility=hidden", "@script"), ["__rseq_refcount"])
    rc, rep = verify(tmp_path, lib, "--manifest", gen / "st_rseq.manifest.json")
    assert rc == 1
    found = [f for f in rep["findings"] if f["rule"] == "RSEQ602" and f["symbol"] == "__rseq_abi"]
    assert found and "keep it in the version script's global: list" in found[0]["message"], rep["findings"]
    assert "RSEQ105" in rules_of(rep, "error")
    assert "version_script_globals" in found[0]["fix"] and "version script" in found[0]["fix"]


def test_exported_name_the_manifest_says_hidden_is_an_error(tmp_path):
    """A module generated with --visibility default, checked against the
    manifest of a hidden one: its names are in .dynsym."""
    hidden = generate(tmp_path / "hidden", "compat", "st")
    default = generate(tmp_path / "default", "compat", "st", "--visibility", "default")
    lib = _library(tmp_path, default, "stats", (), [])
    rc, rep = verify(tmp_path, lib, "--manifest", hidden / "st_rseq.manifest.json")
    assert rc == 1
    export = {f["symbol"] for f in rep["findings"] if f["rule"] == "RSEQ602" and "in .dynsym" in f["message"]}
    assert "st_register_current_thread" in export and "st_owner" in export, rep["findings"]
    # ... while the same file verifies clean against its own manifest.
    rc, rep = verify(tmp_path, lib, "--manifest", default / "st_rseq.manifest.json")
    assert rc == 0, rep["findings"]


def test_default_visibility_names_hidden_by_a_version_script_are_an_error(tmp_path):
    default = generate(tmp_path / "default", "own", "st", "--visibility", "default")
    lib = _library(tmp_path, default, "stats", ("@script",), [])
    rc, rep = verify(tmp_path, lib, "--manifest", default / "st_rseq.manifest.json")
    assert rc == 1
    hidden = {f["symbol"] for f in rep["findings"] if f["rule"] == "RSEQ602"}
    assert "st_register_current_thread" in hidden, rep["findings"]


# ---------------------------------------------------------------------------
# Two libraries with one prefix in one process

APP = r"""
#include <stdio.h>
void *stats_owner_function_a(void);
void *stats_owner_function_b(void);
int main(void)
{
    printf("%d\n", stats_owner_function_a() == stats_owner_function_b());
    return 0;
}
"""


def _pair(tmp: Path, visibility: str, order: str):
    """libstatsa.so (own) and libstatsb.so (compat), both prefix st, and an
    app linked against them in ``order`` ("ab": a first in load order)."""
    libs = {}
    for tag, protocol in (("a", "own"), ("b", "compat")):
        gen = generate(tmp / f"gen{tag}", protocol, "st", "--visibility", visibility)
        source = LIBRARY.replace("stats_owner_function", f"stats_owner_function_{tag}")
        libs[tag] = _library(tmp, gen, f"stats{tag}", (), _manifest(gen)["version_script_globals"], source)
    app_c = tmp / "app.c"
    app_c.write_text(APP)
    app = tmp / f"app-{order}"
    cc("-O2", "-o", app, app_c, "-L", tmp, *[f"-lstats{t}" for t in order], f"-Wl,-rpath,{tmp}")
    return libs, app


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_same_prefix_exported_twice_is_reported_and_predicted(tmp_path, order):
    require_tool("gcc")
    libs, app = _pair(tmp_path, "default", order)
    # What runs: the second library's code binds to the first one's st_owner.
    ran = subprocess.run([str(app)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.strip() == "1", ran
    first, second = libs[order[0]], libs[order[1]]
    rc, rep = verify(tmp_path, app, "--closure")
    found = [f for f in rep["findings"] if f["rule"] == "RSEQ507"]
    assert rc == 1 and len(found) == 1, rep["findings"]
    assert str(first) in found[0]["message"] and str(second) in found[0]["message"]
    assert found[0]["message"].index(str(first)) < found[0]["message"].index(str(second))
    # The prediction has the first library's module and not the second's:
    # the second runs the first's code and protocol.
    members = rep["closures"][0]["prediction"]["members"]
    modules = {(Path(m["file"]).name, m["prefix"], m["protocol"]) for m in members if m["adopter"] == "rseq-gen"}
    protocol = {"a": "own", "b": "compat"}[order[0]]
    assert modules == {(first.name, "st", protocol)}, members


def test_same_prefix_hidden_twice_runs_each_its_own(tmp_path):
    require_tool("gcc")
    libs, app = _pair(tmp_path, "hidden", "ab")
    ran = subprocess.run([str(app)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.strip() == "0", ran
    rc, rep = verify(tmp_path, app, "--closure")
    assert "RSEQ507" not in rules_of(rep), rep["findings"]
    members = rep["closures"][0]["prediction"]["members"]
    modules = {(Path(m["file"]).name, m["protocol"]) for m in members if m["adopter"] == "rseq-gen"}
    assert modules == {(libs["a"].name, "own"), (libs["b"].name, "compat")}, members
