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
from rseq_gen.adopters import ADOPTERS, reserved_prefix_owner
from rseq_gen.arches import ARCHES, Arch, parse_arch_list
from rseq_gen.errors import UsageError, unknown_choice
from rseq_gen.protocols import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol

TLS_MODELS = ("auto", "initial-exec", "global-dynamic")
VISIBILITIES = ("hidden", "default")
DEFAULT_PREFIX = "rseqgen"
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


def _choice(flag: str, what: str, choices) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise unknown_choice(f"--{flag}", what, text, choices)
        return text
    return parse


def _parse_prefix(prefix: str) -> str:
    problem = prefix_problem(prefix or "")
    if problem:
        raise UsageError(f"--prefix: {prefix!r} {problem}")
    return prefix


def _parse_registration(text: str) -> RegistrationMode:
    return REGISTRATION_MODES[_choice("registration", "registration mode", tuple(REGISTRATION_MODES))(text)]


def _option(**kw):
    return field(metadata={"option": Option(**kw)})


@dataclass(frozen=True)
class GenerateOptions:
    protocol: Protocol = _option(
        flag="protocol", metavar="P", default=DEFAULT_PROTOCOL, choices=tuple(PROTOCOLS),
        parse=lambda text: get_protocol(text or DEFAULT_PROTOCOL), plain=lambda p: p.name,
        doc="Coexistence protocol: who registers rseq for a thread, and which area it uses.")
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
        parse=_choice("tls-model", "TLS model", TLS_MODELS),
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
        parse=_choice("visibility", "visibility", VISIBILITIES),
        doc="ELF visibility of the names the module defines: hidden keeps them inside the "
            "executable or shared library the module is linked into, whatever -fvisibility "
            "the build uses (no interposition, nothing added to a library's ABI); default "
            "exports them, for one module serving several shared objects. The names a "
            "protocol shares by design (__rseq_abi, __rseq_refcount, __rseq_handled) are "
            "exported either way.")

    @classmethod
    def from_strings(cls, **texts) -> "GenerateOptions":
        """The options from what the user typed (field name, or the flag
        with ``_`` for ``-`` (``arch``), -> text; a missing field takes its
        default). One line and exit code 2 for a bad value (UsageError)."""
        spelled = {f.metadata["option"].flag.replace("-", "_"): f.name for f in fields(cls)}
        spelled.update({f.name: f.name for f in fields(cls)})
        unknown = set(texts) - set(spelled)
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}")
        texts = {spelled[k]: v for k, v in texts.items()}
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
