"""rseq-gen generate: input validation, determinism, atomic output, the
manifest and depfile, and warning-free compilation of every variant."""

from __future__ import annotations

import itertools
import json
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from conftest import generate, require_tool, run_rseq_gen
from rseq_gen.protocols import PROTOCOLS

STRICT = ["-Wall", "-Wextra", "-Werror", "-pedantic"]
C_DIR = Path(__file__).parent / "c"


@pytest.mark.parametrize("args, message", [
    (["--prefix", "1abc"], "is not a C identifier"),
    (["--prefix", "a-b"], "is not a C identifier"),
    (["--prefix", "_Reserved"], "reserved"),
    (["--protocol", "nope"], "unknown protocol"),
    (["--arch", "sparc"], "unknown architecture"),
    (["--tls-model", "local-exec"], "--tls-model"),
    (["--registration", "v2"], "--registration"),
    (["--bogus"], "unknown option --bogus"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_rseq_gen("generate", "--output-dir", out, "--manifest", tmp_path / "m.json", *args,
                        check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "m.json").exists()


def test_missing_output_dir_is_usage_error():
    proc = run_rseq_gen("generate", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, status", [
    ([], 0),
    (["--protocol", "own", "--arch", "x86_64,aarch64", "--dlopen-safe"], 0),
    (["--protocol", "nope"], 2),
    (["--prefix", "1abc"], 2),
])
def test_dry_run_checks_the_options_and_writes_nothing(tmp_path, args, status):
    """What the Meson and autotools integrations run at configure time."""
    out = tmp_path / "out"
    proc = run_rseq_gen("generate", "--dry-run", "--output-dir", out, "--manifest", tmp_path / "m.json",
                        "--depfile", tmp_path / "m.d", *args, check=False)
    assert proc.returncode == status, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == (status != 0)
    assert not out.exists() and not (tmp_path / "m.json").exists() and not (tmp_path / "m.d").exists()


def test_output_is_deterministic_and_stamped(tmp_path):
    a = generate(tmp_path / "a", "compat", "foo", "--depfile", tmp_path / "a.d")
    b = generate(tmp_path / "b", "compat", "foo", "--depfile", tmp_path / "b.d")
    for name in ("foo_rseq.h", "foo_rseq.c"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        first = (a / name).read_text().splitlines()[0]
        assert "rseq-gen 0.1.0" in first and "--protocol compat" in first and "--prefix foo" in first
    # no temp files are left behind
    assert sorted(p.name for p in a.iterdir()) == ["foo_rseq.c", "foo_rseq.h", "foo_rseq.manifest.json"]


def test_options_change_the_output(tmp_path):
    base = (generate(tmp_path / "a", "compat", "foo") / "foo_rseq.c").read_text()
    other = (generate(tmp_path / "b", "own", "foo") / "foo_rseq.c").read_text()
    gd = (generate(tmp_path / "c", "compat", "foo", "--tls-model", "global-dynamic") / "foo_rseq.c").read_text()
    assert len({base, other, gd}) == 3


def test_depfile_lists_the_templates_read(tmp_path):
    out = generate(tmp_path / "g", "compat", "foo", "--depfile", tmp_path / "g.d")
    text = (tmp_path / "g.d").read_text()
    target, _, deps = text.partition(":")
    assert target == str(out / "foo_rseq.h")
    for template in ("rseq.h.j2", "rseq.c.j2", "arch/x86.h.j2"):
        assert template in deps
    assert "aarch64.h.j2" not in deps  # only the arches asked for
    for dep in deps.replace("\\\n", " ").split():
        assert Path(dep).is_file(), dep


def test_manifest_matches_its_schema(tmp_path):
    schema = json.loads(resources.files("rseq_gen").joinpath("manifest-schema.json").read_text())
    for protocol in PROTOCOLS:
        out = generate(tmp_path / protocol, protocol, "foo", "--arch", "x86_64,aarch64,i386",
                       "--origin", "CMakeLists.txt:12")
        manifest = json.loads((out / "foo_rseq.manifest.json").read_text())
        jsonschema.validate(manifest, schema)
        assert manifest["options"]["protocol"] == protocol
        assert manifest["origin"] == {"file": "CMakeLists.txt", "line": 12}
        names = {s["name"]: s for s in manifest["symbols"]}
        shared = PROTOCOLS[protocol].shared_symbols
        for sym in shared:
            assert names[sym]["st_visibility"] == "STV_DEFAULT"
        if "__rseq_abi" in shared:
            assert names["__rseq_abi"]["st_type"] == "STT_TLS"
            assert names["__rseq_abi"]["st_size"] == {"x86_64": 32, "aarch64": 32, "i386": 32}
            assert names["__rseq_abi"]["source"]["line"] > 0
        if PROTOCOLS[protocol].glibc_area:
            assert names["__rseq_offset"]["st_size"] == {"x86_64": 8, "aarch64": 8, "i386": 4}


def test_registration_option_in_stamp_note_and_area(tmp_path):
    legacy = generate(tmp_path / "l", "compat", "foo")
    ext = generate(tmp_path / "e", "compat", "foo", "--registration", "extended")
    for out, mode in ((legacy, "legacy"), (ext, "extended")):
        src = (out / "foo_rseq.c").read_text()
        assert f"--registration {mode}" in src.splitlines()[0]
        assert f"registration={mode};" in src and f";max_len={64 if mode == 'extended' else 32}" in src
        m = json.loads((out / "foo_rseq.manifest.json").read_text())
        assert m["options"]["registration"] == mode
    assert "kernel_reserved[32]" in (ext / "foo_rseq.c").read_text()
    assert "kernel_reserved" not in (legacy / "foo_rseq.c").read_text()


def test_templates_ship_inside_the_package():
    import rseq_gen.templating as templating

    root = templating.template_dir()
    assert (root / "rseq.h.j2").is_file() and (root / "arch" / "x86.h.j2").is_file()
    if "site-packages" in str(templating.PACKAGE_DIR):  # installed: never the source tree
        assert root == templating.PACKAGE_DIR / "templates"


# ---- every variant compiles warning-free as C11 and from C++ ---------------

CXX_TU = """#include "{prefix}_rseq.h"
#include <cstdint>
extern "C++" int use_from_cxx(std::intptr_t *slots) {{
    int cpu = {prefix}_current_cpu() + {prefix}_current_cpu_raw() + {prefix}_current_node_id();
    {prefix}_percpu_add(slots, 1, 0);
    {prefix}_percpu_cmpxchg(slots, 0, 1, 0);
    {prefix}_slice_begin();
    cpu += {prefix}_slice_end() + {prefix}_slice_extension_available() + {prefix}_slice_extension_errno();
    cpu += static_cast<int>({prefix}_registration_length());
    return cpu + {prefix}_percpu_counter_add(slots, 64, 1) + ({prefix}_area() != nullptr);
}}
"""

VARIANTS = [(*v, "legacy") for v in itertools.product(PROTOCOLS, ("initial-exec", "global-dynamic"),
                                                        (False, True))]
# The registration mode changes the area storage and the length code only.
VARIANTS += [(p, "initial-exec", False, r) for p in PROTOCOLS for r in ("extended", "auto")]
VARIANTS += [(p, "global-dynamic", True, "extended") for p in PROTOCOLS]


@pytest.mark.parametrize("protocol, tls_model, dlopen_safe, registration", VARIANTS)
def test_compiles_warning_free(tmp_path, protocol, tls_model, dlopen_safe, registration):
    extra = ["--tls-model", tls_model, "--registration", registration] + (["--dlopen-safe"] if dlopen_safe else [])
    out = generate(tmp_path, protocol, "pfx", *extra)
    (out / "use.cpp").write_text(CXX_TU.format(prefix="pfx"))
    for cc, cxx in (("gcc", "g++"), ("clang", "clang++")):
        require_tool(cc)
        for opt in ("-O0", "-O2"):
            for pic in ("-fPIC", "-fno-pic"):
                cmd = [cc, "-std=c11", *STRICT, opt, pic, "-c", "pfx_rseq.c", "-o", f"{cc}{opt}{pic}.o"]
                proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
                assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
        cmd = [cxx, "-std=c++17", *STRICT, "-O2", "-c", "use.cpp", "-o", f"{cxx}.o"]
        proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"


def test_aarch64_cross_compiles(tmp_path):
    cc = require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    out = generate(tmp_path, "compat", "pfx", "--arch", "aarch64")
    proc = subprocess.run([cc, "-std=c11", *STRICT, "-O2", "-fPIC", "-c", "pfx_rseq.c"], cwd=out,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_wrong_arch_header_refuses_to_compile(tmp_path):
    out = generate(tmp_path, "compat", "pfx", "--arch", "aarch64")
    proc = subprocess.run(["gcc", "-std=c11", "-c", "pfx_rseq.c"], cwd=out, capture_output=True, text=True)
    assert proc.returncode != 0 and "generated for aarch64 only" in proc.stderr


def test_object_carries_the_protocol_note(tmp_path):
    from elftools.elf.elffile import ELFFile

    out = generate(tmp_path, "refcount", "pfx")
    subprocess.run(["gcc", "-O2", "-fPIC", "-c", "pfx_rseq.c", "-o", "x.o"], cwd=out, check=True)
    subprocess.run(["gcc", "-shared", "-Wl,--gc-sections", "x.o", "-o", "libx.so", "-lpthread"], cwd=out, check=True)
    for path in (out / "x.o", out / "libx.so"):
        with open(path, "rb") as f:
            elf = ELFFile(f)
            sec = elf.get_section_by_name(".note.rseq-gen")
            assert sec is not None and sec["sh_type"] == "SHT_NOTE", path
            notes = list(sec.iter_notes())
            assert notes[0]["n_name"] == "rseq-gen"
            desc = notes[0]["n_desc"]
            desc = desc if isinstance(desc, str) else bytes(desc).decode()
            assert "protocol=refcount" in desc and "prefix=pfx" in desc


def test_unwritable_destination_is_one_line_and_writes_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_rseq_gen("generate", "--output-dir", blocker, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    # the manifest cannot be written: neither are the sources (all or nothing)
    out = tmp_path / "out"
    proc = run_rseq_gen("generate", "--output-dir", out, "--manifest", blocker / "m.json", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


# ---- one translation unit with librseq's header ------------------------------

SAME_TU = """{first}
{second}
#include <stdio.h>
#include <sys/rseq.h>

#define ROUNDS 100000
#ifdef NO_PEER
#define RUNS 1
#else
#define RUNS 2
#endif
static intptr_t slots[4096 * 8];

int main(void)
{{
    if (__rseq_size == 0) {{
        puts("no glibc registration: the peer's operation needs it");
        return 3;
    }}
    for (int i = 0; i < ROUNDS; i++) {{
        int cpu;
        do cpu = pfx_current_cpu(); while (pfx_percpu_add(&slots[cpu * 8], 1, cpu) != 0);
#ifndef NO_PEER
        do cpu = pfx_current_cpu(); while (peer_librseq_percpu_add(&slots[cpu * 8], 1, cpu) != 0);
#endif
    }}
    long total = 0;
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        total += slots[i];
    printf("total=%ld\\n", total);
    return total == (long)ROUNDS * RUNS ? 0 : 1;
}}
"""


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("ours_first", [True, False], ids=["ours-first", "peer-first"])
def test_one_translation_unit_with_librseq_header(tmp_path, cc, ours_first):
    """librseq's header opens __rseq_cs_ptr_array and __rseq_exit_point_array
    as "aw", ours as "awR": clang's assembler refused the second set of flags
    in one translation unit until ours were marked unique. Both operations
    run, and the verifier checks every descriptor of the executable: one
    more than in the same program without the peer's operation."""
    require_tool(cc)
    out = generate(tmp_path, "compat", "pfx")
    headers = ['#include "pfx_rseq.h"', f'#include "{C_DIR / "peer_librseq_header.h"}"']
    first, second = headers if ours_first else headers[::-1]
    (out / "both.c").write_text(SAME_TU.format(first=first, second=second))
    descriptors = {}
    for name, defs, total in (("both", [], 200000), ("ours", ["-DNO_PEER"], 100000)):
        cmd = [cc, "-std=gnu11", *STRICT, *defs, "-O2", "both.c", "pfx_rseq.c", "-o", name, "-pthread"]
        proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
        proc = subprocess.run([out / name], capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.strip() == f"total={total}", proc.stdout + proc.stderr
        rep = json.loads(run_rseq_gen("verify", "--format", "json", out / name).stdout)
        assert rep["summary"]["errors"] == 0, rep["findings"]
        tables = rep["files"][0]["critical_sections"]
        assert tables["checked"] == tables["descriptors"], tables
        descriptors[name] = tables["descriptors"]
    assert descriptors["both"] == descriptors["ours"] + 1, descriptors


@pytest.mark.parametrize("argv", [
    [],
    ["--protocol", "own", "--prefix", "st", "--dlopen-safe", "--visibility", "default"],
    ["--protocol", "glibc", "--arch", "x86_64,aarch64", "--tls-model", "global-dynamic",
     "--registration", "extended"],
])
def test_one_options_schema(argv):
    """The command line, the manifest's options, the stamp and the note all
    come from the GenerateOptions fields: the stamp's flags and the note's
    text read back to the same options."""
    import argparse
    from dataclasses import fields

    from rseq_gen.settings import GenerateOptions, add_arguments, from_arguments, parse_note

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    opts = from_arguments(parser.parse_args(argv))
    assert {a.dest for a in parser._actions} - {"help"} == {f.name for f in fields(GenerateOptions)}
    assert from_arguments(parser.parse_args(opts.stamp_flags().split())) == opts
    note = parse_note(opts.note_text("9.9").encode() + b"\0")
    assert {k: note[k] for k in opts.describe()} == opts.describe()
    assert note["version"] == "9.9" and note["max_len"] == opts.registration.area_size


def test_compiled_templates_are_cached_and_a_broken_cache_costs_nothing(tmp_path):
    """generate keeps its compiled templates in $XDG_CACHE_HOME/rseq-gen: the
    second run reads them and writes the same files; a cache that is
    truncated, or a cache home that cannot be a directory, still generates
    the same files."""
    import os

    def run(out, cache_home):
        env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
        run_rseq_gen("generate", "--protocol", "own", "--prefix", "cc", "--output-dir", out, env=env)
        return {p.name: p.read_bytes() for p in out.iterdir()}

    home = tmp_path / "cache"
    first = run(tmp_path / "a", home)
    compiled = sorted((home / "rseq-gen").glob("templates-*/*.cache"))
    assert compiled, "no compiled template was cached"
    stamps = {p: p.stat().st_mtime_ns for p in compiled}
    assert run(tmp_path / "b", home) == first
    assert {p: p.stat().st_mtime_ns for p in compiled} == stamps  # read, not rewritten
    for p in compiled:
        p.write_bytes(p.read_bytes()[:64])
    assert run(tmp_path / "c", home) == first
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    assert run(tmp_path / "d", not_a_directory) == first
