"""Which rseq adopters (rseq_gen.adopters.ADOPTERS) one ELF image holds,
from the symbols it defines and the rseq-gen note, with the evidence.

What a row's ``SymbolRule`` calls "global" is what other modules can bind
to: in a shared object only a symbol in the dynamic table counts (the link
made every other one local, whatever .symtab still says), and a hidden or
internal symbol never does. Sizes in the table are LP64; the table scales
pointer-sized ones for ELF32.
"""

from __future__ import annotations

from rseq_gen.adopters import ADOPTERS, SIGNATURE_SYMBOLS, recognise

#: Symbols looked up for the signatures (and the area every adopter names).
NAMES = tuple(dict.fromkeys(SIGNATURE_SYMBOLS + ("__rseq_abi",)))

_TYPES = {"STT_OBJECT": "object", "STT_COMMON": "object", "STT_FUNC": "func", "STT_GNU_IFUNC": "func",
          "STT_TLS": "tls"}
_BINDS = {"STB_GLOBAL": "global", "STB_GNU_UNIQUE": "global", "STB_WEAK": "weak", "STB_LOCAL": "local"}


def defined_symbols(syms, shared_library: bool) -> dict[str, dict]:
    """``{name: {"type", "bind", "size", "dynamic"}}`` for the defined
    symbols among NAMES, in the form rseq_gen.adopters.recognise reads.
    ``syms`` is a verify.symbols.Symbols lookup that covers NAMES."""
    out = {}
    for name in NAMES:
        s = syms.dyn(name)
        dynamic = s is not None
        if s is None:
            s = syms.best(name)
        if s is None:
            continue
        bind = _BINDS.get(s.bind, "global")
        if s.visibility in ("STV_HIDDEN", "STV_INTERNAL") or (shared_library and not dynamic):
            bind = "local"
        out[name] = {"type": _TYPES.get(s.type, s.type), "bind": bind, "size": s.size, "dynamic": dynamic}
    return out


def _describe(name: str, sym: dict) -> str:
    return f"{name} ({sym['bind']} {sym['type']}, {sym['size']} bytes)"


def adopters_of(defined: dict[str, dict], notes: list[dict], elfclass: int) -> list[dict]:
    """``[{"name": adopter, "evidence": text}]`` for every row that matches."""
    out = []
    for name in recognise(defined, notes=bool(notes), elfclass=elfclass):
        row = ADOPTERS[name]
        if row.elf_note:
            evidence = "; ".join(f"{row.elf_note}: protocol {n['protocol']}, prefix {n.get('prefix')}"
                                 for n in notes)
        else:
            evidence = "defines " + ", ".join(_describe(r.name, defined[r.name]) for r in row.elf_defines)
            if row.elf_absent:
                evidence += "; no " + ", ".join(row.elf_absent)
            area = defined.get("__rseq_abi")
            if row.area == "private" and area is not None and area["bind"] == "local":
                evidence += f"; private area {_describe('__rseq_abi', area)}"
        out.append({"name": name, "evidence": evidence})
    return out
