"""Generated code inside shared libraries built the way C libraries are built.

- With plain flags a library exports none of the generated names: only its
  own API and the names its protocol shares by design (the manifest's
  ``version_script_globals``).
- ``--visibility default`` exports them (one module serving several objects).
- Two libraries embedding code of the same prefix, in every protocol pair and
  both link orders, never bind to each other's names (``LD_DEBUG=bindings``),
  count exactly, and each reports the owner the coexistence model predicts
  for its own protocol, on the main thread and on a worker, with glibc
  registering and with ``glibc.pthread.rseq=0``.
- Prefixes that are another adopter's API or reserved C identifiers are
  refused, with one line, exit 2 and nothing written.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess

import pytest

from conftest import RSEQ_GEN, generate, require_tool, run_build
from rseq_gen.coexistence import Member, predict
from rseq_gen.environments import ENVIRONMENT_VARIABLES
from rseq_gen.protocols import PROTOCOLS

PREFIX = "st"
ENVS = ("glibc", "glibc-rseq-off")

#: A library with per-CPU counters on the generated code; NAME() gives its
#: API names a per-library prefix (so two copies can sit in one process).
LIBRARY = r"""
#include "st_rseq.h"
#include <stdlib.h>
#define API __attribute__((visibility("default")))
static intptr_t *slots;
static int ncpus;
API void NAME(init)(void)
{
    ncpus = st_max_cpus();
    slots = calloc((size_t)ncpus, 64);
}
API void NAME(add)(void) { st_percpu_counter_add(slots, 64, 1); }
API long NAME(total)(void)
{
    long t = 0;
    for (int i = 0; i < ncpus; i++)
        t += *(intptr_t *)((char *)slots + (size_t)i * 64);
    return t;
}
API const char *NAME(owner)(void) { return st_owner(); }
"""

APP = r"""
#include <pthread.h>
#include <stdio.h>
#define LIB(x) void x##_init(void); void x##_add(void); long x##_total(void); const char *x##_owner(void);
LIB(liba) LIB(libb)
static void *worker(void *arg)
{
    const char **out = arg;
    /* The model's worker meets the modules in constructor order: b, then a. */
    for (int i = 0; i < 1000; i++) { libb_add(); liba_add(); }
    out[0] = liba_owner();
    out[1] = libb_owner();
    return NULL;
}
int main(void)
{
    const char *w[2];
    pthread_t t;
    liba_init(); libb_init();
    for (int i = 0; i < 1000; i++) { liba_add(); libb_add(); }
    const char *ma = liba_owner(), *mb = libb_owner();
    pthread_create(&t, NULL, worker, w);
    pthread_join(t, NULL);
    printf("{\"a\": {\"main\": \"%s\", \"worker\": \"%s\", \"total\": %ld}, "
           "\"b\": {\"main\": \"%s\", \"worker\": \"%s\", \"total\": %ld}}\n",
           ma, w[0], liba_total(), mb, w[1], libb_total());
    return 0;
}
"""


def _build_library(tmp, gen_dir, name, *flags):
    src = tmp / f"{name}.c"
    src.write_text(LIBRARY)
    out = tmp / f"lib{name}.so"
    run_build(["gcc", "-O2", "-Wall", "-Werror", "-fPIC", "-shared", "-pthread", f"-DNAME(x)={name}_##x",
               "-I", str(gen_dir), *flags, "-o", str(out), str(src), str(gen_dir / f"{PREFIX}_rseq.c")])
    return out


def _dynamic_names(lib) -> set[str]:
    out = subprocess.run([require_tool("nm", "binutils"), "-D", "--defined-only", str(lib)],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def _manifest(gen_dir) -> dict:
    return json.loads((gen_dir / f"{PREFIX}_rseq.manifest.json").read_text())


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """One generated module per protocol, prefix st, with its manifest."""
    base = tmp_path_factory.mktemp("same-prefix")
    out = {}
    for proto in PROTOCOLS:
        out[proto] = generate(base / proto, proto, PREFIX)
    return base, out


@pytest.fixture(scope="module")
def libraries(modules):
    """liba_<protocol>.so and libb_<protocol>.so: the same library built from
    each module, under two API names (liba_*, libb_*), plain flags."""
    base, gens = modules
    libs = {}
    for proto, gen_dir in gens.items():
        d = base / f"lib-{proto}"
        d.mkdir()
        libs[proto] = {n: _build_library(d, gen_dir, n) for n in ("liba", "libb")}
    return libs


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_plain_flags_export_no_generated_name(protocol, modules, libraries):
    """No -fvisibility, no version script: the dynamic symbol table holds the
    library's API and the names the protocol shares by design, nothing else."""
    _, gens = modules
    lib = libraries[protocol]["liba"]
    api = {f"liba_{n}" for n in ("init", "add", "total", "owner")}
    shared = set(_manifest(gens[protocol])["version_script_globals"])
    assert shared <= {"__rseq_abi", "__rseq_refcount", "__rseq_handled"}
    assert _dynamic_names(lib) == api | shared
    # CMake's RSEQ_GEN_VERSION_SCRIPT_GLOBALS comes from the protocol table
    # (cmake/write_tables.py), set before the manifest exists: the same names.
    assert shared == set(PROTOCOLS[protocol].shared_symbols)


def test_visibility_default_exports_the_module(tmp_path):
    """--visibility default: the generated names are in the dynamic table and
    the manifest asks a version script to keep them."""
    gen_dir = generate(tmp_path / "gen", "own", PREFIX, "--visibility", "default")
    lib = _build_library(tmp_path, gen_dir, "liba")
    names = _dynamic_names(lib)
    assert {"st_register_current_thread", "st_owner", "st__current_cpu_slow"} <= names
    assert "st_owner" in _manifest(gen_dir)["version_script_globals"]


PAIRS = list(itertools.product(PROTOCOLS, repeat=2))


@pytest.mark.parametrize("proto_a,proto_b", PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_same_prefix_libraries_run_their_own_code(proto_a, proto_b, libraries, tmp_path):
    """liba (proto_a) and libb (proto_b), both on prefix st, linked in this
    order: no st_ name is bound by the dynamic linker, every count is exact,
    and each library's owner is what the coexistence model predicts for the
    two modules (lookup order a, b; constructors b, a)."""
    app_c = tmp_path / "app.c"
    app_c.write_text(APP)
    a, b = libraries[proto_a]["liba"], libraries[proto_b]["libb"]
    app = tmp_path / "app"
    run_build(["gcc", "-O2", "-pthread", "-o", str(app), str(app_c), str(a), str(b),
               f"-Wl,-rpath,{a.parent}:{b.parent}"])
    members = [Member("a", "rseq-gen", proto_a), Member("b", "rseq-gen", proto_b)]
    for env in ENVS:
        run_env = dict(os.environ, **ENVIRONMENT_VARIABLES[env])
        proc = subprocess.run([str(app)], capture_output=True, text=True, env=run_env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        want = predict(members, env)
        for label in ("a", "b"):
            assert got[label]["total"] == 2000, (env, got)
            for thread in ("main", "worker"):
                assert got[label][thread] == want.threads[thread].owners[label], (env, label, thread, got)
        bindings = subprocess.run([str(app)], capture_output=True, text=True, timeout=60,
                                  env=dict(run_env, LD_DEBUG="bindings")).stderr
        # The program's own calls into each library do go through ld.so (so
        # the output is the format read here); no st_ name ever does.
        assert "normal symbol `liba_add'" in bindings and "normal symbol `libb_add'" in bindings, \
            bindings[-2000:]
        bound = [line for line in bindings.splitlines() if "normal symbol `st_" in line]
        assert not bound, "\n".join(bound[:5])


@pytest.mark.parametrize("prefix,why", [
    ("rseq", "librseq"), ("rseq_counters", "librseq"),
    ("__x", "reserved"), ("_X", "reserved"),
])
def test_reserved_prefixes_are_refused(prefix, why, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([*RSEQ_GEN, "generate", "--prefix", prefix, "--output-dir", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0] and prefix in lines[0], proc.stderr
    assert not out.exists()


def test_prefixes_near_a_reserved_one_are_accepted(tmp_path):
    """Only the adopter's own namespace is refused: rseqgen, myrseq are fine."""
    for prefix in ("rseqgen", "myrseq"):
        generate(tmp_path / prefix, "compat", prefix)
        assert (tmp_path / prefix / f"{prefix}_rseq.h").is_file()


@pytest.mark.parametrize("protocol", ["own", "compat"])
def test_rdynamic_executable_exports_no_generated_name(protocol, modules, tmp_path):
    """An executable linked with -rdynamic (what protocols sharing __rseq_abi
    ask of an executable that dlopen's modules) exports the protocol's shared
    names and nothing else of the module, -fPIE and -fPIC code alike."""
    _, gens = modules
    gen_dir = gens[protocol]
    main_c = tmp_path / "main.c"
    main_c.write_text('#include "st_rseq.h"\nint main(void) { return st_current_cpu() < 0; }\n')
    shared = set(_manifest(gen_dir)["version_script_globals"])
    for pic in ("-fPIE", "-fPIC"):
        exe = tmp_path / f"app{pic}"
        run_build(["gcc", "-O2", pic, "-pthread", "-rdynamic", "-I", str(gen_dir), "-o", str(exe),
                   str(main_c), str(gen_dir / f"{PREFIX}_rseq.c")])
        assert subprocess.run([str(exe)]).returncode == 0
        exported = {n for n in _dynamic_names(exe) if n.startswith(PREFIX + "_") or n.startswith("__rseq")}
        assert exported == shared, (pic, exported)
