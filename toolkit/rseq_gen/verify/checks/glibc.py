"""Use of glibc's rseq ABI (__rseq_offset, __rseq_size, __rseq_flags).

Rules: RSEQ201 glibc-strong-reference, RSEQ202 glibc-version-node.
"""

from __future__ import annotations

from rseq_gen import abi
from rseq_gen.elf import Symbol
from rseq_gen.verify.model import Unit
from rseq_gen.verify.symbols import Symbols


def check(unit: Unit, min_glibc, syms: Symbols) -> dict:
    """Returns ``defines_glibc_rseq`` and ``glibc_refs`` of the image."""
    elf = unit.elf
    refs: list[Symbol] = []
    defs: list[Symbol] = []
    for name in abi.GLIBC_SYMBOLS:
        refs += syms.undefined_refs(name)
        d = syms.dyn(name) or syms.best(name)
        if d is not None and d.defined:
            defs.append(d)
    versions = {}
    if elf.has_table(".dynsym"):
        idx = [s.index for s in refs + defs if s.table == ".dynsym"]
        if idx:
            versions = elf.symbol_versions(idx)
    old = min_glibc is not None and min_glibc < (2, 35)
    glibc_refs = []
    for s in refs:
        v = versions.get(s.index) if s.table == ".dynsym" else None
        glibc_refs.append({"symbol": s.name, "weak": s.bind == "STB_WEAK",
                           "version": v["version"] if v else None, "file": v["file"] if v else None})
        vtext = f" to {v['version']} in {v['file']}" if v else ""
        if old and s.bind != "STB_WEAK":
            unit.add("RSEQ201", symbol=s.name, version_text=vtext, min_glibc=".".join(map(str, min_glibc)))
        elif old and v and v["version"] == abi.GLIBC_SYMBOL_VERSION and not v["weak"]:
            unit.add("RSEQ201", symbol=s.name,
                     version_text=f" (weak symbol, but its {v['version']} requirement on {v['file']} "
                                  "is not marked weak)",
                     min_glibc=".".join(map(str, min_glibc)))
        strength = "weak" if s.bind == "STB_WEAK" else "strong"
        if v:
            unit.add("RSEQ202", symbol=s.name, how="needs", version=v["version"],
                     where=f"from {v['file']} ({strength} reference)")
        elif s.table == ".dynsym":
            unit.add("RSEQ202", symbol=s.name, how="is referenced", version="without a version",
                     where=f"({strength}): it binds to ld.so's GLIBC_2.35 definition when one is loaded")
    for s in defs:
        v = versions.get(s.index) if s.table == ".dynsym" else None
        if v and v["defined"]:
            unit.add("RSEQ202", symbol=s.name, how="is defined here at version", version=v["version"],
                     where="(this file provides glibc's rseq ABI)")
    return {"defines_glibc_rseq": bool(defs), "glibc_refs": tuple(glibc_refs)}


def drop_satisfied_in_archive(findings: list, defined: set) -> list:
    """A reference satisfied by another member of the same archive (libc.a
    itself) does not depend on the glibc the program later runs on."""
    return [f for f in findings if not (f.rule == "RSEQ201" and f.symbol in defined)]
