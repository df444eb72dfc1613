"""What the verifier passes around: what the user asked (``Context``), one
image under check (``Unit``), what a check found (``Finding``, made by
``finding()`` and nowhere else) and what the process analysis needs to know
about an image (``Facts``, merged for archives by ``Facts.merge``).

Findings and facts are frozen dataclasses: they pickle (``verify --jobs``
checks files in worker processes) and ``as_dict()`` gives their JSON form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from rseq_gen.elf import ElfFile
from rseq_gen.rules import RULES


@dataclass(frozen=True)
class Context:
    """What the user told verify (per run)."""
    protocol: str | None = None
    min_glibc: tuple[int, int] | None = None
    dlopen: bool = False
    manifest: dict | None = None
    #: How the file is loaded, when known: "needed" (a DT_NEEDED library of
    #: a closure: never unloaded on its own), "plugin" (--plugin: dlopen'd),
    #: None (an input; --dlopen and the manifest say).
    loaded_as: str | None = None


@dataclass(frozen=True)
class Finding:
    """One finding of one rule (the report's ``findings`` rows)."""
    rule: str
    name: str
    severity: str
    message: str
    fix: str
    file: str
    member: str | None = None
    symbol: str | None = None
    section: str | None = None
    address: int | None = None
    #: {"file", "line"} in the user's tree, from the manifest.
    source: dict | None = None

    def with_source(self, source: dict | None) -> "Finding":
        return replace(self, source=dict(source) if source else None)

    def as_dict(self) -> dict:
        return asdict(self)


def finding(rule_id: str, file: str, member: str | None = None, *, symbol: str | None = None,
            section: str | None = None, address: int | None = None, severity: str | None = None,
            source: dict | None = None, **fields) -> Finding:
    """The one constructor of findings: the rule's message filled with
    ``fields`` (its summary when a field the template names is missing)."""
    rule = RULES[rule_id]
    try:
        message = rule.message.format(symbol=symbol, section=section, address=address, **fields)
    except (KeyError, ValueError, IndexError):
        message = rule.summary
    return Finding(rule.id, rule.name, severity or rule.severity, message, rule.fix, file, member,
                   symbol, section, address, dict(source) if source else None)


@dataclass
class Unit:
    """One ELF image being checked (a file, or one member of an archive),
    and the findings made on it so far."""
    path: str
    member: str | None
    elf: ElfFile
    arch: object  # rseq_gen.verify.machine.ArchFacts or None
    findings: list = field(default_factory=list)

    def add(self, rule_id: str, symbol: str | None = None, section: str | None = None,
            address: int | None = None, severity: str | None = None, source: dict | None = None,
            **fields) -> None:
        self.findings.append(finding(rule_id, self.path, self.member, symbol=symbol, section=section,
                                     address=address, severity=severity, source=source, **fields))


@dataclass(frozen=True)
class Facts:
    """What the process analysis (conflicts, closure, prediction) needs to
    know about one image (or one archive, merged)."""
    #: The image's rseq-gen notes, parsed (rseq_gen.settings.parse_note).
    notes: tuple = ()
    #: It defines __rseq_abi, and other modules can bind to that definition.
    defines_abi: bool = False
    abi_exported: bool = False
    #: (size, alignment) of the __rseq_abi definition, when it is TLS.
    abi_layout: tuple | None = None
    #: It defines glibc's __rseq_offset/__rseq_size/__rseq_flags (libc itself).
    defines_glibc_rseq: bool = False
    #: Its references to glibc's rseq symbols: {"symbol", "weak", "version", "file"}.
    glibc_refs: tuple = ()
    #: Defined adopter signature symbols (rseq_gen.verify.recognise.defined_symbols).
    signature: dict = field(default_factory=dict)
    #: Adopters recognised in it: {"name", "evidence"}.
    adopters: tuple = ()
    #: {"descriptors": n, "checked": k}.
    critical_sections: dict = field(default_factory=lambda: {"descriptors": 0, "checked": 0})
    #: {prefix: [names]}: the generated names of each note's prefix that
    #: other modules can bind to (built with --visibility default).
    exported_prefix_names: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def merge(cls, members: list["Facts"], elfclass: int) -> "Facts":
        """An archive is one library: its facts are its members' together
        (the adopter signature spans members: librseq.a has the registration
        API and the mempool in two objects)."""
        from rseq_gen.verify import recognise

        signature: dict = {}
        for fc in members:
            for name, sym in fc.signature.items():
                signature.setdefault(name, sym)
        notes = tuple(n for fc in members for n in fc.notes)
        layout = next((fc.abi_layout for fc in members if fc.abi_layout), None)
        sections = {"descriptors": 0, "checked": 0}
        exported: dict = {}
        for fc in members:
            for k, v in fc.critical_sections.items():
                sections[k] = sections.get(k, 0) + v
            for prefix, names in fc.exported_prefix_names.items():
                exported.setdefault(prefix, [])
                exported[prefix] += [n for n in names if n not in exported[prefix]]
        return cls(notes=notes,
                   defines_abi=any(fc.defines_abi for fc in members),
                   abi_exported=any(fc.abi_exported for fc in members),
                   abi_layout=layout,
                   defines_glibc_rseq=any(fc.defines_glibc_rseq for fc in members),
                   glibc_refs=tuple(r for fc in members for r in fc.glibc_refs),
                   signature=signature,
                   adopters=tuple(recognise.adopters_of(signature, list(notes), elfclass)),
                   critical_sections=sections,
                   exported_prefix_names=exported)
