"""Item 5: code size and instructions of every fast path, generated beside
the floor, read from compiled objects (no timer involved).

``benchmarks/c/hotpath.c`` wraps each fast path in its own ``noinline``
function (``hp_gen_*`` the generated code, ``hp_floor_*`` the hand-written
floor of ``benchmarks/c/floor.h``). Each toolchain compiles it with ``-O2
-ffunction-sections``, as executable code (``-fPIE``) and as shared-object code
(``-fPIC``); ``objdump -dr`` of the object gives the instructions. The *hot
path* of a wrapper is the shortest path, in instructions, from its entry to a
``ret`` that makes no call and never leaves the function (a branch with a
relocation goes to another function or section: the fallbacks, a ``.cold``
part, an abort handler). Reported per wrapper: bytes (the function, and its
``.cold`` part), instructions and branches on the hot path.

``python -m benchmarks.hotpath`` prints the table; ``--record`` rewrites
``benchmarks/hot_paths.json``, the counts ``tests/test_hot_paths.py`` holds
every hot path to (run it after a change that is meant to shorten a path, or
that knowingly lengthens one, and say why in the commit).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import C_DIR, ROOT, BenchError, generate, run
from rseq_gen import operations

BUDGET_FILE = ROOT / "benchmarks" / "hot_paths.json"


@dataclass(frozen=True)
class Toolchain:
    compiler: str          # compiler family: the key of the recorded counts
    arch: str
    cc: tuple              # compiler command
    objdump: str
    flags: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.compiler}/{self.arch}"


TOOLCHAINS = (
    # No endbr64 (CET) whatever the distribution's default: the floor has none.
    Toolchain("gcc", "x86_64", ("gcc",), "objdump", ("-fcf-protection=none",)),
    Toolchain("clang", "x86_64", ("clang",), "objdump", ("-fcf-protection=none",)),
    Toolchain("gcc", "aarch64", ("aarch64-linux-gnu-gcc",), "aarch64-linux-gnu-objdump"),
    Toolchain("clang", "aarch64", ("clang", "--target=aarch64-linux-gnu"),
              "aarch64-linux-gnu-objdump"),
)

#: Code compiled for an executable, and for a shared object.
MODES = {"exe": ("-fPIE",), "pic": ("-fPIC",)}

#: The fast paths of hotpath.c: name, and whether it has a floor wrapper.
PATHS = (
    ("current_cpu", True),
    ("current_cpu_raw", True),
    ("area", True),
    ("counter_add", True),
    ("current_cpu_at", True),
    ("counter_add_at", True),
    # every per-CPU operation in both indexing modes (hotpath.c: HP_OPS)
    *((f"{v.mode.api}_{v.stem}", True) for v in operations.variants()),
    ("mmcid_counter_add", True),
    ("mmcid_index", True),
)


@dataclass(frozen=True)
class Isa:
    """How objdump spells control flow, per architecture (mnemonics)."""
    ret: re.Pattern
    jump: re.Pattern      # unconditional direct or indirect jump
    cond: re.Pattern      # conditional branch
    call: re.Pattern


ISAS = {
    "x86_64": Isa(ret=re.compile(r"^(?:rep[z]? )?retq?$"),
                  jump=re.compile(r"^(?:bnd |notrack )?jmpq?$"),
                  cond=re.compile(r"^(?:j(?!mp)[a-z]+|loop[a-z]*)$"),
                  call=re.compile(r"^(?:bnd )?callq?$")),
    "aarch64": Isa(ret=re.compile(r"^ret[a-z]*$"),
                   jump=re.compile(r"^(?:b|br)$"),
                   cond=re.compile(r"^(?:b\.[a-z]+|cbn?z|tbn?z)$"),
                   call=re.compile(r"^bl[r]?$")),
}

_FUNC = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")
_INSN = re.compile(r"^\s*([0-9a-f]+):\t(.*)$")
_RELOC = re.compile(r"\t([0-9a-f]+): (R_\w+)\t(\S+)")
_TARGET = re.compile(r"(?:^|[\s,])([0-9a-f]+) <[^>]+>\s*(?://.*)?$")
_SYM = re.compile(r"^[0-9a-f]+ (.{7}) (\S+)\t([0-9a-f]+) (\S+)$")


@dataclass
class Insn:
    addr: int
    mnemonic: str
    text: str
    relocs: list


def _disassemble(objdump: str, obj: Path) -> dict:
    """function name -> its instructions, from ``objdump -dr -w``."""
    out = run([objdump, "-dr", "-w", "--no-show-raw-insn", obj]).stdout
    funcs: dict[str, list[Insn]] = {}
    current = None
    for line in out.splitlines():
        m = _FUNC.match(line)
        if m:
            current = funcs.setdefault(m.group(1), [])
            continue
        m = _INSN.match(line)
        if not m or current is None:
            continue
        body = m.group(2)
        relocs = [(int(r.group(1), 16), r.group(2), r.group(3)) for r in _RELOC.finditer("\t" + body)]
        body = _RELOC.sub("", "\t" + body).strip().replace("\t", " ")
        if not body or body.startswith("(bad)"):
            continue
        mnemonic = body.split()[0]
        current.append(Insn(int(m.group(1), 16), mnemonic, re.sub(r"\s+", " ", body), relocs))
    return funcs


def _sizes(objdump: str, obj: Path) -> dict:
    """function symbol -> size in bytes (``objdump -t``)."""
    out = run([objdump, "-t", obj]).stdout
    sizes = {}
    for line in out.splitlines():
        m = _SYM.match(line)
        if m and "F" in m.group(1):
            sizes[m.group(4)] = int(m.group(3), 16)
    return sizes


def hot_path(insns: list, size: int, isa: Isa, name: str = "?") -> list:
    """The instructions run when every fast-path check passes: from the
    entry, the fall-through of each conditional branch (where the compiler
    puts the likely successor: __builtin_expect, and the asm sequences'
    own layout) and the target of each unconditional jump, to the first
    return. A loop whose test is at its top (a memcpy) is walked once and
    left through that test; a loop tested at its bottom is left by its
    fall-through, its body not walked (the memcpy of x86_64). A call, a jump
    out of the function or a loop without a test on the way means the layout
    is not the one this table assumes: an error, not a guess."""
    index = {i.addr: n for n, i in enumerate(insns)}
    ends = [insns[n + 1].addr if n + 1 < len(insns) else size for n in range(len(insns))]

    def internal_target(n):
        insn = insns[n]
        if any(insn.addr <= off < ends[n] for off, _, _ in insn.relocs):
            return None  # resolved by the linker: another function or section
        m = _TARGET.search(insn.text[len(insn.mnemonic):])
        return index.get(int(m.group(1), 16)) if m else None

    path, seen, n = [], set(), 0
    while True:
        if n is not None and n in seen:
            n = _loop_exit(path, n, index, internal_target, isa)
        if n is None or n >= len(insns) or n in seen:
            raise BenchError(f"{name}: the straight-line path leaves the function or loops "
                             f"after {' ; '.join(i.text for i in path[-4:])}")
        seen.add(n)
        insn = insns[n]
        path.append(insn)
        if isa.ret.match(insn.mnemonic):
            return path
        if isa.call.match(insn.mnemonic):
            raise BenchError(f"{name}: the straight-line path makes a call: {insn.text}")
        n = internal_target(n) if isa.jump.match(insn.mnemonic) else n + 1


def _loop_exit(path: list, head: int, index: dict, internal_target, isa: Isa):
    """The path jumped back to instruction ``head``: a loop whose test sits
    at its top (the memcpy of the load/store architectures: the fall-through
    of the test is the body). Its one iteration is on the path; it leaves
    through the target of the last conditional branch since ``head`` (None
    when there is none: an error)."""
    start = next(k for k, i in enumerate(path) if index[i.addr] == head)
    for insn in reversed(path[start:]):
        if isa.cond.match(insn.mnemonic):
            return internal_target(index[insn.addr])
    return None


def _count(path: list, isa: Isa) -> dict:
    """Instructions (alignment nops left out: they move with the layout,
    not with the code) and branches on the path."""
    real = [i for i in path if not i.mnemonic.startswith("nop")]
    branches = sum(1 for i in real if isa.jump.match(i.mnemonic) or isa.cond.match(i.mnemonic))
    return {"instructions": len(real), "branches": branches, "path": [i.text for i in path]}


def available(tool: Toolchain) -> str | None:
    """None when the toolchain can run here, else what is missing."""
    for exe in (tool.cc[0], tool.objdump):
        if not shutil.which(exe):
            return exe
    return None


def measure(work: Path, toolchains=TOOLCHAINS, modes=tuple(MODES)) -> list:
    """One record per toolchain, mode, fast path and variant (generated,
    floor). Raises BenchError when a toolchain is missing."""
    gen = generate(work / "gen-hotpath", "compat", "--arch", ",".join(
        dict.fromkeys(t.arch for t in toolchains)))
    records = []
    for tool in toolchains:
        missing = available(tool)
        if missing:
            raise BenchError(f"{missing} not found (needed for the {tool.key} instruction table)")
        isa = ISAS[tool.arch]
        for mode in modes:
            obj = work / f"hotpath-{tool.compiler}-{tool.arch}-{mode}.o"
            run([*tool.cc, "-O2", "-ffunction-sections", *tool.flags, *MODES[mode], "-I", C_DIR,
                 "-I", gen, "-c", "-o", obj, C_DIR / "hotpath.c"])
            funcs, sizes = _disassemble(tool.objdump, obj), _sizes(tool.objdump, obj)
            for name, has_floor in PATHS:
                for variant in ("generated", "floor") if has_floor else ("generated",):
                    fn = f"hp_{'gen' if variant == 'generated' else 'floor'}_{name}"
                    if fn not in funcs:
                        raise BenchError(f"{fn} missing from {obj.name}")
                    counts = _count(hot_path(funcs[fn], sizes.get(fn, 0), isa, f"{tool.key}/{mode}/{fn}"), isa)
                    records.append({"compiler": tool.compiler, "arch": tool.arch, "mode": mode,
                                    "fast_path": name, "variant": variant,
                                    "bytes": sizes.get(fn, 0),
                                    "cold_bytes": sizes.get(f"{fn}.cold", 0), **counts})
    return records


def compiler_versions(toolchains=TOOLCHAINS) -> dict:
    out = {}
    for tool in toolchains:
        if available(tool) is None:
            out[tool.key] = run([*tool.cc, "--version"]).stdout.splitlines()[0]
    return out


def budget_key(r: dict) -> str:
    return f"{r['compiler']}/{r['arch']}/{r['mode']}/{r['fast_path']}/{r['variant']}"


def load_budget() -> dict:
    return json.loads(BUDGET_FILE.read_text())


def record_budget(records: list) -> None:
    data = {
        "about": "Hot-path instruction and branch counts per compiler family, architecture, "
                 "mode (exe: -fPIE, pic: -fPIC), fast path and variant, from "
                 "`python -m benchmarks.hotpath --record`. tests/test_hot_paths.py fails when "
                 "a path needs more.",
        "recorded_with": compiler_versions(),
        "counts": {budget_key(r): {"instructions": r["instructions"], "branches": r["branches"]}
                   for r in records},
    }
    # One line per count: a change to the budget reads as a one-line diff.
    counts = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
                        for k, v in sorted(data["counts"].items()))
    head = {k: v for k, v in data.items() if k != "counts"}
    text = json.dumps(head, indent=2, sort_keys=True)[:-2]
    BUDGET_FILE.write_text(f"{text},\n  \"counts\": {{\n{counts}\n  }}\n}}\n")


def table(records: list) -> str:
    """Markdown: one row per compiler, arch, mode and fast path, the
    generated code beside its floor."""
    floors = {(r["compiler"], r["arch"], r["mode"], r["fast_path"]): r for r in records
              if r["variant"] == "floor"}
    rows = []
    for r in records:
        if r["variant"] != "generated":
            continue
        f = floors.get((r["compiler"], r["arch"], r["mode"], r["fast_path"]))

        def pair(key, r=r, f=f):
            return f"{r[key]} / {f[key]}" if f else f"{r[key]} / -"
        cold = f" (+{r['cold_bytes']} cold)" if r["cold_bytes"] else ""
        rows.append([f"`{r['fast_path']}`", r["compiler"], r["arch"], r["mode"],
                     f"{r['bytes']}{cold}" + (f" / {f['bytes']}" if f else " / -"),
                     pair("instructions"), pair("branches"),
                     f"{r['instructions'] - f['instructions']:+d}" if f else "-"])
    header = ["fast path", "compiler", "arch", "mode", "bytes: generated / floor",
              "hot-path instructions: generated / floor", "branches: generated / floor",
              "instructions vs floor"]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    import tempfile
    p = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", action="store_true", help=f"rewrite {BUDGET_FILE.relative_to(ROOT)}")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the records as JSON")
    p.add_argument("--paths", action="store_true", help="also print each hot path")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rseq-gen-hotpath-") as work:
        try:
            records = measure(Path(work))
        except BenchError as exc:
            print(f"python -m benchmarks.hotpath: {exc}", file=sys.stderr)
            return 1
    print(table(records))
    if args.paths:
        for r in records:
            print(f"\n{budget_key(r)}:\n  " + "\n  ".join(r["path"]))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    if args.record:
        record_budget(records)
        print(f"\nrecorded {BUDGET_FILE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
