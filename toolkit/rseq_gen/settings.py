"""Options of ``rseq-gen generate``, as one typed tree. The docstrings are the
documentation (``rseq-gen generate --help`` and the manifest read them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from rseq_gen.abi import DEFAULT_REGISTRATION, REGISTRATION_MODES, RegistrationMode
from rseq_gen.adopters import ADOPTERS, reserved_prefix_owner
from rseq_gen.arches import Arch, parse_arch_list
from rseq_gen.errors import UsageError, unknown_choice
from rseq_gen.protocols import DEFAULT_PROTOCOL, Protocol, get_protocol

TLS_MODELS = ("auto", "initial-exec", "global-dynamic")
VISIBILITIES = ("hidden", "default")
#: What a prefix must be, as (regex, whether the prefix must match it, what
#: is wrong otherwise). The regexes keep to what CMake's regex understands too:
#: cmake/write_tables.py exports this table, so rseq_gen_add_library checks
#: PREFIX by the same rules at configure time.
PREFIX_RULES = (
    (r"^[A-Za-z_][A-Za-z0-9_]*$", True, "is not a C identifier"),
    (r"^_[A-Z_]", False, "is reserved (starts with _ and a capital or _)"),
) + tuple(
    # Another adopter's API namespace (rseq_gen.adopters: api_prefixes): the
    # module's names would collide with it (the first adopter taking it names it).
    (rf"^{taken}(_.*)?$", False, f"would collide with {owner.title}'s {taken}_* API; pick another")
    for taken, owner in {taken: reserved_prefix_owner(taken)
                         for a in ADOPTERS.values() for taken in a.api_prefixes}.items()
)


def prefix_problem(prefix: str) -> str | None:
    """What is wrong with ``prefix`` (None: nothing)."""
    for pattern, must_match, problem in PREFIX_RULES:
        if pattern.endswith("$"):  # CMake's end of string; Python's would allow a final newline
            pattern = pattern[:-1] + r"\Z"
        if bool(re.search(pattern, prefix)) != must_match:
            return problem
    return None


@dataclass(frozen=True)
class GenerateOptions:
    protocol: Protocol = field(metadata={"doc": "Coexistence protocol: who registers rseq for a thread, and which area it uses."})
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
        problem = prefix_problem(prefix or "")
        if problem:
            raise UsageError(f"--prefix: {prefix!r} {problem}")
        if visibility not in VISIBILITIES:
            raise unknown_choice("--visibility", "visibility", visibility, VISIBILITIES)
        if tls_model not in TLS_MODELS:
            raise unknown_choice("--tls-model", "TLS model", tls_model, TLS_MODELS)
        if registration not in REGISTRATION_MODES:
            raise unknown_choice("--registration", "registration mode", registration, REGISTRATION_MODES)
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
