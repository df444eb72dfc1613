"""The rseq-gen notes (.note.rseq-gen) of an image: which generated modules
it holds, with which options.

Rules: RSEQ504 protocol-unknown, RSEQ505 protocol-mismatch.
"""

from __future__ import annotations

from rseq_gen import abi
from rseq_gen.protocols import PROTOCOLS
from rseq_gen.settings import parse_note
from rseq_gen.verify.model import Context, Unit


def read(unit: Unit, ctx: Context) -> list[dict]:
    """The image's notes, parsed, one per generated module (the same
    object linked twice collapses); checked against the protocol asked for."""
    notes = []
    seen = set()
    for n in unit.elf.notes(abi.NOTE_SECTION):
        if n.owner != abi.NOTE_OWNER or n.type != abi.NOTE_TYPE_PROTOCOL:
            continue
        parsed = parse_note(n.desc)
        if parsed is None:
            unit.add("RSEQ504", section=abi.NOTE_SECTION, problem=f"unparsable rseq-gen note {n.desc[:60]!r}")
            continue
        if parsed["protocol"] not in PROTOCOLS:
            unit.add("RSEQ504", section=abi.NOTE_SECTION,
                     problem=f"note names unknown protocol {parsed['protocol']!r}")
        key = (parsed.get("prefix"), parsed["protocol"])
        if key not in seen:
            seen.add(key)
            notes.append(parsed)
    expected = expected_protocol(ctx)
    if expected and notes and expected not in {n["protocol"] for n in notes}:
        unit.add("RSEQ505", section=abi.NOTE_SECTION,
                 found=", ".join(sorted({n["protocol"] for n in notes})), expected=expected)
    return notes


def expected_protocol(ctx: Context) -> str | None:
    """The protocol asked for: --protocol, else the manifest's."""
    return ctx.protocol or (ctx.manifest or {}).get("options", {}).get("protocol")
