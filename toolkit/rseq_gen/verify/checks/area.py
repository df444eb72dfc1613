"""The rseq areas and the shared coordination symbols.

Rules: RSEQ101 abi-not-tls, RSEQ102 abi-too-small, RSEQ103 abi-misaligned,
RSEQ104 tls-segment-align, RSEQ105 abi-not-exported, RSEQ106
private-area-exported, RSEQ107 refcount-layout, RSEQ108 handled-layout,
RSEQ109 executable-symbol-not-dynamic, RSEQ110 abi-shorter-than-registration
(for one image, and across the modules of a process).
"""

from __future__ import annotations

from rseq_gen import abi
from rseq_gen.elf import Symbol
from rseq_gen.protocols import PROTOCOLS
from rseq_gen.verify.model import Unit
from rseq_gen.verify.symbols import Symbols, effective_align, tls_alignment


def longest_registration(notes, shared: bool, prefix: str | None = None):
    """(max_len, who) over the notes of modules registering the shared area
    (or the private one of `prefix`), or None when none registers more than 32."""
    best = None
    for n in notes:
        p = PROTOCOLS.get(n["protocol"])
        if p is None or p.area is None or (p.area == "shared") != shared:
            continue
        if prefix is not None and n.get("prefix") != prefix:
            continue
        if best is None or n["max_len"] > best[0]:
            best = (n["max_len"], f"prefix {n.get('prefix')} (--registration {n['registration']})")
    return best if best and best[0] > abi.AREA_SIZE else None


def _check_area(unit: Unit, s: Symbol, label: str, need=None) -> None:
    """One area's type, size and alignment. `need`: (length, who) of the
    longest registration made on the area."""
    if s.type != "STT_TLS":
        unit.add("RSEQ101", symbol=label, type=s.type)
        return
    if s.size < abi.AREA_SIZE:
        unit.add("RSEQ102", symbol=label, size=s.size)
    offset, align = tls_alignment(unit.elf, s)
    if offset % abi.AREA_ALIGN or (unit.elf.is_relocatable and align < abi.AREA_ALIGN):
        unit.add("RSEQ103", symbol=label, offset=offset, align=align)
    if not unit.elf.is_relocatable:
        tls = unit.elf.segment("PT_TLS")
        if tls is not None and tls.align < abi.AREA_ALIGN:
            unit.add("RSEQ104", symbol=label, align=tls.align)
    if need is not None:
        length, who = need
        have = effective_align(offset, align)
        if s.size < length or have < length:
            unit.add("RSEQ110", symbol=label, size=s.size, align=have, who=who, length=length)


def check(unit: Unit, syms: Symbols, protocols: list[str], private_names: list[str], notes) -> dict:
    """The area checks of one image; returns its __rseq_abi facts
    (``defines_abi``, ``abi_exported``, ``abi_layout``)."""
    facts = {"defines_abi": False, "abi_exported": False, "abi_layout": None}
    s = syms.best("__rseq_abi")
    if s is not None:
        facts["defines_abi"] = True
        if s.type == "STT_TLS":
            offset, align = tls_alignment(unit.elf, s)
            facts["abi_layout"] = (s.size, effective_align(offset, align))
        _check_area(unit, s, "__rseq_abi", longest_registration(notes, shared=True))
        exported = syms.exported("__rseq_abi", s)
        facts["abi_exported"] = exported
        shared = [p for p in protocols if PROTOCOLS.get(p) and PROTOCOLS[p].area == "shared"]
        if shared and not exported:
            bind = s.bind
            if unit.elf.kind() == "shared-library" and syms.dyn("__rseq_abi") is None:
                bind = f"{bind} (not in .dynsym)"
            unit.add("RSEQ105", symbol="__rseq_abi", bind=bind, visibility=s.visibility, protocol=shared[0])
    for name in dict.fromkeys(private_names):
        p = syms.best(name)
        if p is None:
            continue
        prefix = name[:-len("__private_area")] if name.endswith("__private_area") else None
        _check_area(unit, p, name, longest_registration(notes, shared=False, prefix=prefix)
                    if prefix else None)
        if syms.exported(name, p):
            proto = next((pr for pr in protocols if PROTOCOLS.get(pr) and PROTOCOLS[pr].area == "private"),
                         "own")
            unit.add("RSEQ106", symbol=name, bind=p.bind, visibility=p.visibility, protocol=proto)
    if unit.elf.kind() in ("pie-executable", "executable") and unit.elf.segment("PT_DYNAMIC") is not None:
        for proto in dict.fromkeys(protocols):
            p = PROTOCOLS.get(proto)
            if p is None:
                continue
            for name in p.shared_symbols:
                if syms.best(name) is not None and syms.dyn(name) is None:
                    unit.add("RSEQ109", symbol=name, protocol=proto)
    r = syms.best("__rseq_refcount")
    if r is not None and (r.type != "STT_TLS" or r.size != 4):
        unit.add("RSEQ107", symbol="__rseq_refcount", type=r.type, size=r.size)
    h = syms.best("__rseq_handled")
    if h is not None and (h.type not in ("STT_OBJECT", "STT_COMMON") or h.size != 4):
        unit.add("RSEQ108", symbol="__rseq_handled", type=h.type, size=h.size)
    return facts


def check_process(facts_by_file, shared_notes, add) -> None:
    """Across modules: the __rseq_abi definition the process binds to (the
    first one: it wins the interposition) must hold the longest
    registration any module sharing it makes."""
    definers = [(label, facts) for label, facts in facts_by_file if facts.abi_layout]
    need = longest_registration(shared_notes, shared=True)
    if definers and need is not None:
        label, facts = definers[0]
        size, align = facts.abi_layout
        own = longest_registration(facts.notes, shared=True)
        if (size < need[0] or align < need[0]) and own != need:  # else reported for the file itself
            add("RSEQ110", symbol="__rseq_abi", size=size, align=align, length=need[0],
                who=f"{need[1]} in another module (the definition in {label} wins)")
