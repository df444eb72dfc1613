"""TLS model and lifetime: what a dlopen'd (and dlclose'd) library may hold.

Rules: RSEQ301 initial-exec-dlopen, RSEQ302 owner-without-nodelete.
"""

from __future__ import annotations

from rseq_gen.adopters import ADOPTERS
from rseq_gen.elf import DF_1_NODELETE, DF_STATIC_TLS
from rseq_gen.protocols import PROTOCOLS
from rseq_gen.verify.model import Context, Unit
from rseq_gen.verify.symbols import Symbols


def _dlopen_reasons(ctx: Context, notes) -> list[str]:
    """Why the image is to be dlopen'd (empty: nothing says so)."""
    reasons = []
    if ctx.loaded_as == "plugin":
        reasons.append("--plugin")
    if ctx.dlopen:
        reasons.append("--dlopen")
    if ctx.manifest and ctx.manifest.get("options", {}).get("dlopen_safe"):
        reasons.append("the manifest says dlopen_safe")
    if any(n.get("dlopen_safe") for n in notes) and ctx.loaded_as != "needed":
        reasons.append("the rseq-gen note says dlopen_safe=1")
    return reasons


def _initial_exec_uses(unit: Unit, syms: Symbols, area_syms: list[str], notes) -> list[str]:
    """What makes the image's rseq TLS initial-exec (static TLS)."""
    elf = unit.elf
    what = []
    if elf.kind() == "shared-library":
        if elf.dynamic().get("flags", 0) & DF_STATIC_TLS:
            what.append("DT_FLAGS has DF_STATIC_TLS (initial-exec TLS)")
        if unit.arch.relocs.tpoff_relocs and syms.dynamic:
            wanted = {s.index for n in area_syms for s in syms.dynamic.get(n, [])}
            ie = [r for r in elf.dynamic_relocations()
                  if r.type in unit.arch.relocs.tpoff_relocs and r.sym in wanted]
            if ie:
                what.append(f"{len(ie)} TPOFF relocation(s) against the area symbols")
        return what
    wanted_names = set(area_syms)
    count = 0
    for sec in elf.sections:
        if sec.type not in ("SHT_RELA", "SHT_REL"):
            continue
        target = elf.section_at(sec.info)
        if target is None or not target.executable:
            continue
        for r in elf.relocations(sec):
            if r.type in unit.arch.relocs.ie_relocs:
                sym = elf.symbol_at(sec.link, r.sym)
                if sym is not None and sym.name in wanted_names:
                    count += 1
    if count:
        what.append(f"{count} initial-exec relocation(s) against the rseq area")
    elif any(n.get("tls_model") == "initial-exec" for n in notes):
        what.append("the rseq-gen note says tls_model=initial-exec")
    return what


def check(unit: Unit, ctx: Context, syms: Symbols, notes, private_names, defines_abi: bool,
          adopters) -> None:
    """RSEQ301 for initial-exec rseq TLS in a library to be dlopen'd; RSEQ302 for a library that
    registers TLS of its own without -z nodelete."""
    elf = unit.elf
    kind = elf.kind()
    reasons = _dlopen_reasons(ctx, notes)
    area_syms = ["__rseq_abi", "__rseq_refcount"] + list(private_names)
    has_area = bool(notes) or any(syms.best(n) is not None for n in area_syms)
    if reasons and has_area and kind in ("shared-library", "relocatable") and unit.arch:
        what = _initial_exec_uses(unit, syms, area_syms, notes)
        if what:
            unit.add("RSEQ301", what="; ".join(what), why=", ".join(reasons))

    if kind != "shared-library":
        return
    owning = [n for n in notes if PROTOCOLS.get(n["protocol"]) and PROTOCOLS[n["protocol"]].area]
    if not (owning or (defines_abi and not notes)) or elf.dynamic().get("flags_1", 0) & DF_1_NODELETE:
        return
    if owning:
        n = owning[0]
        what = (f"protocol {n['protocol']} (prefix {n.get('prefix')}) registers "
                f"{PROTOCOLS[n['protocol']].area} TLS of this library")
    else:
        owners = [a["name"] for a in adopters if ADOPTERS[a["name"]].area in ("private", "shared")]
        what = (f"{owners[0]} registers its {ADOPTERS[owners[0]].area} TLS area __rseq_abi"
                if owners else "the library defines __rseq_abi in its own TLS")
    # An error only where the library is to be dlopen'd: loaded at start-up
    # (DT_NEEDED) it is never unloaded.
    if reasons:
        unit.add("RSEQ302", what=what, severity="error",
                 how=f"the library is to be dlopen'd ({', '.join(reasons)})")
    elif ctx.loaded_as == "needed":
        unit.add("RSEQ302", what=what, how="loaded as DT_NEEDED it stays loaded; a dlopen'd copy would not")
    else:
        unit.add("RSEQ302", what=what,
                 how="harmless while it is only loaded at start-up (DT_NEEDED); an error with --dlopen")
