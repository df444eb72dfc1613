"""Options of ``rseq-gen generate``, as one schema: the ``GenerateOptions``
fields, each with an ``Option`` that says how the user spells it. Everything
else is derived from the fields: the command-line options
(``add_arguments``), the parsing and checking of what the user typed
(``GenerateOptions.from_strings``), the manifest's ``options``
(``describe``), the stamp in the generated files (``stamp_flags``), the
ELF note's text (``note_text``) and the verifier's reading of it
(``parse_note``). Adding an option is adding a field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from rseq_gen.abi import AREA_SIZE, DEFAULT_REGISTRATION, REGISTRATION_MODES, RegistrationMode
from rseq_gen.adopters import reserved_prefix_owner
from rseq_gen.arches import ARCHES, Arch, parse_arch_list
from rseq_gen.errors import UsageError
from rseq_gen.protocols import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol

TLS_MODELS = ("auto", "initial-exec", "global-dynamic")
VISIBILITIES = ("hidden", "default")
DEFAULT_PREFIX = "rseqgen"
_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED_PREFIX = re.compile(r"_[A-Z_]")


@dataclass(frozen=True)
class Option:
    """How one GenerateOptions field is spelled outside Python."""
    #: The command-line flag, without ``--``.
    flag: str
    doc: str
    #: What the user types when the flag is absent (None: worked out, see
    #: ``default_text``). A flag of a bool field takes no value.
    default: Any = None
    default_text: str | None = None
    metavar: str | None = None
    #: The values the help lists ("One of" or "Known").
    choices: tuple = ()
    choices_word: str = "One of"
    #: The user's text -> the field's value (raises UsageError).
    parse: Callable[[Any], Any] = str
    #: The field's value -> plain data (manifest, note, stamp).
    plain: Callable[[Any], Any] = lambda v: v

    def help(self) -> str:
        text = self.doc
        if self.choices:
            text += f" {self.choices_word}: {', '.join(self.choices)}."
        default = self.default_text or (self.default if isinstance(self.default, str) else None)
        return text + (f" Default: {default}." if default else "")


def _choice(flag: str, choices) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise UsageError(f"--{flag}: {text!r} is not one of {', '.join(choices)}")
        return text
    return parse


def _parse_prefix(prefix: str) -> str:
    if not _C_IDENTIFIER.match(prefix or ""):
        raise UsageError(f"--prefix: {prefix!r} is not a C identifier")
    if _RESERVED_PREFIX.match(prefix):
        raise UsageError(f"--prefix: {prefix!r} is reserved (starts with _ and a capital or _)")
    owner = reserved_prefix_owner(prefix)
    if owner is not None:
        raise UsageError(f"--prefix: {prefix!r} would collide with {owner.title}'s "
                         f"{'/'.join(p + '_*' for p in owner.api_prefixes)} API; pick another")
    return prefix


def _parse_registration(text: str) -> RegistrationMode:
    return REGISTRATION_MODES[_choice("registration", tuple(REGISTRATION_MODES))(text)]


def _option(**kw):
    return field(metadata={"option": Option(**kw)})


@dataclass(frozen=True)
class GenerateOptions:
    protocol: Protocol = _option(
        flag="protocol", metavar="P", default=DEFAULT_PROTOCOL, choices=tuple(PROTOCOLS),
        parse=lambda text: get_protocol(text or DEFAULT_PROTOCOL), plain=lambda p: p.name,
        doc="Coexistence protocol (see the README's protocol table).")
    prefix: str = _option(
        flag="prefix", metavar="NAME", default=DEFAULT_PREFIX, parse=_parse_prefix,
        doc="C identifier that starts every exported symbol.")
    arches: tuple[Arch, ...] = _option(
        flag="arch", metavar="A[,A...]", default=None, default_text="the host", choices=tuple(ARCHES),
        choices_word="Known", parse=lambda text: tuple(parse_arch_list(text)),
        plain=lambda arches: [a.name for a in arches],
        doc="Architectures the header carries code for.")
    tls_model: str = _option(
        flag="tls-model", metavar="M", default="auto", choices=TLS_MODELS,
        parse=_choice("tls-model", TLS_MODELS),
        doc="TLS model of the module's own TLS: initial-exec is fastest; global-dynamic "
            "suits modules that are dlopen'd. auto picks global-dynamic with --dlopen-safe, "
            "initial-exec otherwise.")
    dlopen_safe: bool = _option(
        flag="dlopen-safe", default=False, parse=bool,
        doc="The module may be dlopen'd and dlclose'd: clear rseq_cs after every critical "
            "section so no descriptor pointer outlives the code.")
    registration: RegistrationMode = _option(
        flag="registration", metavar="R", default=DEFAULT_REGISTRATION, choices=tuple(REGISTRATION_MODES),
        parse=_parse_registration, plain=lambda mode: mode.name,
        doc="Length of the registrations this module makes: legacy registers 32 bytes; "
            "extended registers max(AT_RSEQ_FEATURE_SIZE, 32) rounded up to AT_RSEQ_ALIGN "
            "(64 on 7.x: v2 mode) on a 64-byte area; auto is extended when the kernel's "
            "feature size is above 32. Modules sharing __rseq_abi must use the same.")
    visibility: str = _option(
        flag="visibility", metavar="V", default="hidden", choices=VISIBILITIES,
        parse=_choice("visibility", VISIBILITIES),
        doc="ELF visibility of the names the module defines: hidden keeps them inside the "
            "executable or shared library the module is linked into, whatever -fvisibility "
            "the build uses (no interposition, nothing added to a library's ABI); default "
            "exports them, for one module serving several shared objects. The names a "
            "protocol shares by design (__rseq_abi, __rseq_refcount, __rseq_handled) are "
            "exported either way.")

    @classmethod
    def from_strings(cls, **texts) -> "GenerateOptions":
        """The options from what the user typed (field name -> text; a
        missing field takes its default). One line and exit code 2 for a
        bad value (UsageError)."""
        unknown = set(texts) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}")
        values = {}
        for f in fields(cls):
            opt: Option = f.metadata["option"]
            values[f.name] = opt.parse(texts.get(f.name, opt.default))
        if values["tls_model"] == "auto":
            values["tls_model"] = "global-dynamic" if values["dlopen_safe"] else "initial-exec"
        return cls(**values)

    def describe(self) -> dict:
        """The options as plain data, for the manifest (and the stamp and note)."""
        return {f.name: f.metadata["option"].plain(getattr(self, f.name)) for f in fields(self)}

    def stamp_flags(self) -> str:
        """The command line that generates the same code."""
        words = []
        for f in fields(self):
            opt: Option = f.metadata["option"]
            value = opt.plain(getattr(self, f.name))
            if isinstance(value, bool):
                words += [f"--{opt.flag}"] if value else []
            else:
                words += [f"--{opt.flag}", ",".join(value) if isinstance(value, list) else str(value)]
        return " ".join(words)

    def note_text(self, version: str) -> str:
        """The text of the module's ELF note (``parse_note`` reads it back):
        ``key=value`` pairs, the options, the generator's version and the
        longest registration the module makes."""
        pairs = [(k, _note_value(v)) for k, v in self.describe().items()]
        pairs += [("version", version), ("max_len", str(self.registration.area_size))]
        return ";".join(f"{k}={v}" for k, v in pairs)


def _note_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def add_arguments(parser) -> None:
    """The generate options of the command line, one per field."""
    for f in fields(GenerateOptions):
        opt: Option = f.metadata["option"]
        if f.type in ("bool", bool):
            parser.add_argument(f"--{opt.flag}", dest=f.name, action="store_true", help=opt.help())
        else:
            parser.add_argument(f"--{opt.flag}", dest=f.name, default=opt.default, metavar=opt.metavar,
                                help=opt.help())


def from_arguments(args) -> GenerateOptions:
    """The options from an argparse namespace built by ``add_arguments``."""
    return GenerateOptions.from_strings(**{f.name: getattr(args, f.name) for f in fields(GenerateOptions)})


#: What a note recorded before an option existed: the behaviour then.
_NOTE_DEFAULTS = {"registration": "legacy"}


def parse_note(desc: bytes) -> dict | None:
    """The options an rseq-gen note's text records, in ``describe``'s form
    (None: not such a note). Keys the schema does not know stay text."""
    text = desc.split(b"\0", 1)[0].decode("utf-8", "replace")
    raw = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            return None
        raw[key.strip()] = value.strip()
    if "protocol" not in raw:
        return None
    out: dict = dict(raw)
    for f in fields(GenerateOptions):
        value = raw.get(f.name, _NOTE_DEFAULTS.get(f.name))
        if f.type in ("bool", bool):
            out[f.name] = value == "1"
        elif f.name == "arches":
            out[f.name] = [a for a in (value or "").split(",") if a]
        elif value is not None:
            out[f.name] = value
    try:
        out["max_len"] = int(raw.get("max_len", AREA_SIZE))
    except ValueError:
        return None
    out["desc"] = text
    return out
