"""Options of ``rseq-gen generate``, as one typed tree. The docstrings are the
documentation (``rseq-gen generate --help`` and the manifest read them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from rseq_gen.adopters import reserved_prefix_owner
from rseq_gen.abi import DEFAULT_REGISTRATION, REGISTRATION_MODES, RegistrationMode
from rseq_gen.arches import Arch, parse_arch_list
from rseq_gen.errors import UsageError
from rseq_gen.protocols import DEFAULT_PROTOCOL, Protocol, get_protocol

TLS_MODELS = ("auto", "initial-exec", "global-dynamic")
VISIBILITIES = ("hidden", "default")
_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED_PREFIX = re.compile(r"_[A-Z_]")


@dataclass(frozen=True)
class GenerateOptions:
    protocol: Protocol = field(metadata={"doc": "Coexistence protocol (see the README's protocol table)."})
    prefix: str = field(metadata={"doc": "C identifier that starts every exported symbol."})
    arches: tuple[Arch, ...] = field(metadata={"doc": "Architectures the header carries code for."})
    tls_model: str = field(metadata={
        "doc": "TLS model of the module's own TLS: initial-exec is fastest; global-dynamic "
               "suits modules that are dlopen'd. auto picks global-dynamic with --dlopen-safe, "
               "initial-exec otherwise."})
    dlopen_safe: bool = field(metadata={
        "doc": "The module may be dlopen'd and dlclose'd: clear rseq_cs after every critical "
               "section so no descriptor pointer outlives the code."})
    registration: RegistrationMode = field(default=REGISTRATION_MODES[DEFAULT_REGISTRATION], metadata={
        "doc": "Length of the registrations this module makes: legacy registers 32 bytes; "
               "extended registers max(AT_RSEQ_FEATURE_SIZE, 32) rounded up to AT_RSEQ_ALIGN "
               "(64 on 7.x: v2 mode) on a 64-byte area; auto is extended when the kernel's "
               "feature size is above 32. Modules sharing __rseq_abi must use the same."})
    visibility: str = field(default="hidden", metadata={
        "doc": "ELF visibility of the names the module defines: hidden keeps them inside the "
               "executable or shared library the module is linked into, whatever -fvisibility "
               "the build uses (no interposition, nothing added to a library's ABI); default "
               "exports them, for one module serving several shared objects. The names a "
               "protocol shares by design (__rseq_abi, __rseq_refcount, __rseq_handled) are "
               "exported either way."})

    @classmethod
    def from_strings(cls, *, protocol: str | None, prefix: str, arch: str | None,
                     tls_model: str = "auto", dlopen_safe: bool = False,
                     registration: str = DEFAULT_REGISTRATION,
                     visibility: str = "hidden") -> "GenerateOptions":
        if not _C_IDENTIFIER.match(prefix or ""):
            raise UsageError(f"--prefix: {prefix!r} is not a C identifier")
        if _RESERVED_PREFIX.match(prefix):
            raise UsageError(f"--prefix: {prefix!r} is reserved (starts with _ and a capital or _)")
        owner = reserved_prefix_owner(prefix)
        if owner is not None:
            raise UsageError(f"--prefix: {prefix!r} would collide with {owner.title}'s "
                             f"{'/'.join(p + '_*' for p in owner.api_prefixes)} API; pick another")
        if visibility not in VISIBILITIES:
            raise UsageError(f"--visibility: {visibility!r} is not one of {', '.join(VISIBILITIES)}")
        if tls_model not in TLS_MODELS:
            raise UsageError(f"--tls-model: {tls_model!r} is not one of {', '.join(TLS_MODELS)}")
        if registration not in REGISTRATION_MODES:
            raise UsageError(f"--registration: {registration!r} is not one of "
                             f"{', '.join(REGISTRATION_MODES)}")
        resolved = tls_model
        if tls_model == "auto":
            resolved = "global-dynamic" if dlopen_safe else "initial-exec"
        return cls(
            protocol=get_protocol(protocol or DEFAULT_PROTOCOL),
            prefix=prefix,
            arches=tuple(parse_arch_list(arch)),
            tls_model=resolved,
            dlopen_safe=dlopen_safe,
            registration=REGISTRATION_MODES[registration],
            visibility=visibility,
        )

    def describe(self) -> dict:
        """The options as plain data, for the stamp and the manifest."""
        return {
            "protocol": self.protocol.name,
            "prefix": self.prefix,
            "arches": [a.name for a in self.arches],
            "tls_model": self.tls_model,
            "dlopen_safe": self.dlopen_safe,
            "registration": self.registration.name,
            "visibility": self.visibility,
        }


def option_docs() -> dict[str, str]:
    return {f.name: f.metadata.get("doc", "") for f in fields(GenerateOptions)}
