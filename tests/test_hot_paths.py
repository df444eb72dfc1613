"""The fast paths do not grow: every hot path, compiled fresh by gcc and
clang for x86_64 and aarch64, as executable (-fPIE) and shared-object (-fPIC)
code, needs at most the instructions and branches recorded in
benchmarks/hot_paths.json (``python -m benchmarks.hotpath --record`` writes
it; benchmarks/hotpath.py says what a hot path is). No timer involved."""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT, require_tool

sys.path.insert(0, str(ROOT))
from benchmarks import hotpath  # noqa: E402

PACKAGES = {"gcc": "gcc", "clang": "clang", "objdump": "binutils",
            "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
            "aarch64-linux-gnu-objdump": "binutils-aarch64-linux-gnu"}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    for tool in hotpath.TOOLCHAINS:
        for exe in (tool.cc[0], tool.objdump):
            require_tool(exe, PACKAGES.get(exe))
    return hotpath.measure(tmp_path_factory.mktemp("hotpath"))


def test_every_recorded_path_is_measured(measured):
    recorded = set(hotpath.load_budget()["counts"])
    got = {hotpath.budget_key(r) for r in measured}
    assert recorded == got, (f"not measured: {sorted(recorded - got)}; "
                             f"not recorded (run --record): {sorted(got - recorded)}")


def test_no_hot_path_grows(measured):
    budget = hotpath.load_budget()["counts"]
    grown = []
    for r in measured:
        want = budget.get(hotpath.budget_key(r))
        if want is None:
            continue
        for field in ("instructions", "branches"):
            if r[field] > want[field]:
                grown.append(f"{hotpath.budget_key(r)}: {field} {r[field]} > {want[field]}\n    "
                             + "\n    ".join(r["path"]))
    assert not grown, "hot paths grew past benchmarks/hot_paths.json:\n" + "\n".join(grown)


def test_executable_code_on_x86_64_is_at_the_floor(measured):
    """What the speed goal rests on: compiled for an executable, each x86_64
    fast path is no longer than its hand-written floor (counter_add_at: one more register move in the wrapper, putting the slots
    where the out-of-line fallback takes them; inlined in a loop it goes; pop:
    likewise up to two moves of its arguments, measured at the floor in
    bench_ops)."""
    by = {hotpath.budget_key(r): r for r in measured}
    allowance = {"counter_add_at": 1, "percpu_pop": 2, "mmcid_pop": 2}
    for compiler in ("gcc", "clang"):
        for name, has_floor in hotpath.PATHS:
            if not has_floor:
                continue
            gen = by[f"{compiler}/x86_64/exe/{name}/generated"]
            floor = by[f"{compiler}/x86_64/exe/{name}/floor"]
            assert gen["branches"] <= floor["branches"], (compiler, name, gen["path"])
            assert gen["instructions"] <= floor["instructions"] + allowance.get(name, 0), \
                (compiler, name, gen["path"], floor["path"])


def test_hot_path_walk_rejects_a_call():
    """The walker refuses a layout it does not understand instead of
    counting it (a call on the straight-line path)."""
    isa = hotpath.ISAS["x86_64"]
    insns = [hotpath.Insn(0, "mov", "mov 0x0(%rip),%rax", []),
             hotpath.Insn(7, "call", "call c <f+0xc>", [(8, "R_X86_64_PLT32", "g-0x4")]),
             hotpath.Insn(12, "ret", "ret", [])]
    with pytest.raises(hotpath.BenchError, match="makes a call"):
        hotpath.hot_path(insns, 13, isa, "f")
    ok = [insns[0], hotpath.Insn(7, "js", "js c <f+0xc>", []), hotpath.Insn(9, "ret", "ret", []),
          hotpath.Insn(12, "jmp", "jmp 11 <f+0x11>", [(13, "R_X86_64_PLT32", "slow-0x4")])]
    path = hotpath.hot_path(ok, 17, isa, "f")
    assert [i.mnemonic for i in path] == ["mov", "js", "ret"]


def test_floor_reads_the_mmcid_word_where_the_generated_code_does():
    """floor.h's FLOOR_WORD_FROM_TP_<op> lists the operations whose mm_cid
    word per thread comes from the thread pointer: the same as the
    operations table says (mmcid_word_from_thread_pointer), for every
    operation, so each floor stays the same job as its generated twin."""
    import re

    from rseq_gen import operations

    text = (ROOT / "benchmarks" / "c" / "floor.h").read_text()
    floor = {m[1]: m[2] == "1" for m in re.finditer(r"#define FLOOR_WORD_FROM_TP_(\w+) ([01])\b", text)}
    table = {f"{op.name}{operations.ORDERS[o].suffix}": op.mmcid_word_from_thread_pointer
             for op in operations.OPERATIONS for o in op.orders}
    assert floor == table
