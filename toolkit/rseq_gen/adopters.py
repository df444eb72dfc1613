"""The rseq adopters rseq-gen knows, one row each: how to recognise each one
in a running process and in ELF files, and what each does in each libc
environment. The generated runtime (templates/rseq.c.j2), the verifier's
prediction (rseq_gen.coexistence), the pairing table of docs/protocols.md and the
coexistence matrix test all read these rows.

Facts and their public sources: glibc's sys/rseq.h and the glibc manual
(glibc), github.com/compudj/librseq @cbdabc45 (librseq), the kernel's
tools/testing/selftests/rseq (kernel selftests), github.com/google/tcmalloc
@fce3f55d (tcmalloc); the rows say what was checked on this project's machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Libc environments a prediction is made for. Static glibc registers
#: every thread as dynamic glibc does, but dlsym finds none of its symbols
#: there (measured: dlsym(RTLD_NEXT, "__rseq_size") is NULL in a static
#: glibc 2.36 program): adopters that look glibc up only with dlsym do not
#: see its registration. musl never registers.
LIBC_ENVIRONMENTS = (
    "glibc",           # glibc >= 2.35 registers every thread (dynamic linking)
    "glibc-static",    # the same, statically linked: dlsym finds nothing
    "glibc-rseq-off",  # GLIBC_TUNABLES=glibc.pthread.rseq=0
    "glibc-old",       # glibc < 2.35: no rseq ABI at all
    "musl",            # musl: never registers
    "denied",          # rseq() fails with ENOSYS or EPERM (seccomp, old kernel, qemu-user)
)
LIBC_ENVIRONMENT_TITLES = {
    "glibc": "glibc >= 2.35 registering",
    "glibc-static": "static glibc >= 2.35 registering",
    "glibc-rseq-off": "glibc, glibc.pthread.rseq=0",
    "glibc-old": "glibc < 2.35",
    "musl": "musl (or no libc registration)",
    "denied": "rseq denied (ENOSYS/EPERM)",
}
#: Environments in which the libc registers every thread before any module runs.
LIBC_REGISTERS = frozenset({"glibc", "glibc-static"})
#: Environments in which dlsym finds no symbol (static links).
NO_DLSYM = frozenset({"glibc-static"})
#: Alignment of glibc's static TLS block when no start-up module asks for
#: more (x86_64, glibc 2.36, measured): dlopen refuses an object whose
#: initial-exec TLS is aligned above the start-up alignment ("cannot
#: allocate memory in static TLS block"), however much surplus
#: glibc.rtld.optional_static_tls gives.
GLIBC_STARTUP_TLS_ALIGN = 64


@dataclass(frozen=True)
class SymbolRule:
    """A symbol an ELF image defines (or must not define) for the adopter to
    be recognised. ``type`` is "object", "func" or "tls"; ``bind`` "global"
    (global or weak, in the dynamic table of a shared object), "local" (only
    in .symtab: stripped files lose it) or "any"; ``size`` the LP64 size
    (None: any size)."""

    name: str
    type: str
    bind: str = "global"
    size: int | None = None
    #: The size is that of a pointer or ptrdiff_t (8 on LP64, 4 on ILP32).
    pointer_sized: bool = False

    def size_for(self, elfclass: int) -> int | None:
        """The size expected in an ELF file of this class (32 or 64)."""
        if self.size is None or not self.pointer_sized or elfclass == 64:
            return self.size
        return self.size // 2


@dataclass(frozen=True)
class Adopter:
    name: str
    title: str
    #: The area the adopter registers: "libc" (the libc's own), "private"
    #: (hidden TLS nobody else can see), "shared" (the interposable TLS
    #: symbol __rseq_abi), "protocol" (rseq-gen: per the module's protocol).
    area: str
    #: Exported symbols that publish where its area is (offset from the
    #: thread pointer and active size), for other modules to use.
    publishes: tuple[str, ...]
    #: All of these defined: the image belongs to the adopter.
    elf_defines: tuple[SymbolRule, ...]
    #: None of these defined (tells look-alikes apart).
    elf_absent: tuple[str, ...] = ()
    #: An ELF note section that marks the adopter's objects, if any.
    elf_note: str | None = None
    #: How the generated runtime recognises the adopter in the process.
    runtime_recognition: str = ""
    #: Uses glibc's registration (through __rseq_offset/__rseq_size) when
    #: glibc registered, instead of registering.
    uses_glibc_area: bool = False
    #: How it finds glibc's symbols: "weak" (weak references, perhaps then
    #: dlsym: works in static links too) or "dlsym" (dlsym(RTLD_NEXT) only:
    #: finds nothing in a static link, so it registers its own area there).
    glibc_lookup: str = "weak"
    #: When it calls rseq() on a thread.
    registers_when: str = ""
    #: Registration length it passes.
    length: str = "32"
    #: What it does when the kernel refuses its registration.
    on_refusal: str = ""
    #: Outcome of a refusal: "fallback" (runs without, nothing breaks),
    #: "slow-mode" (the whole process runs without per-CPU paths),
    #: "abort-after-success" (abort() when any thread registered before),
    #: "fatal" (the process dies).
    refusal: str = "fallback"
    #: Aborts unless __rseq_abi resolves to its own definition once its
    #: registration succeeded (tcmalloc's layout check).
    needs_own_rseq_abi: bool = False
    #: Stores to cpu_id_start (killed under a v2-mode registration, broken
    #: by the 6.19+ optimisations: it only works with 32-byte registrations).
    writes_cpu_id_start: bool = False
    #: Can be linked statically / with musl (for the test matrix).
    links_static: bool = True
    #: Alignment of its initial-exec TLS area (None: it has none). Above
    #: GLIBC_STARTUP_TLS_ALIGN, glibc cannot dlopen it.
    tls_align: int | None = None
    #: C name prefixes its API takes ("rseq": rseq_* and rseq itself). A
    #: generated module's prefix may not be one of them, nor start with one
    #: and an underscore: its names would collide with the adopter's (and
    #: the generated code looks some of them up to detect the adopter).
    api_prefixes: tuple[str, ...] = ()
    #: What it does, per libc environment (docs and verifier text).
    behaviour: dict = field(default_factory=dict)
    notes: str = ""

    @property
    def dlopen_refused(self) -> bool:
        """glibc refuses to dlopen it (its initial-exec TLS alignment)."""
        return self.tls_align is not None and self.tls_align > GLIBC_STARTUP_TLS_ALIGN

    def sees_glibc_registration(self, env: str) -> bool:
        """Uses glibc's area in ``env`` instead of registering."""
        return self.uses_glibc_area and env in LIBC_REGISTERS and not (
            self.glibc_lookup == "dlsym" and env in NO_DLSYM)


def _behaviour(**by_env) -> dict:
    out = {env.replace("_", "-"): text for env, text in by_env.items()}
    assert set(out) == set(LIBC_ENVIRONMENTS), sorted(set(LIBC_ENVIRONMENTS) ^ set(out))
    return out


_LIBRSEQ_API = (
    SymbolRule("rseq_offset", "object", size=8, pointer_sized=True),
    SymbolRule("rseq_size", "object", size=4),
    SymbolRule("rseq_flags", "object", size=4),
    SymbolRule("rseq_register_current_thread", "func"),
)

ADOPTERS: dict[str, Adopter] = {
    a.name: a
    for a in (
        Adopter(
            name="glibc",
            title="glibc >= 2.35",
            area="libc",
            publishes=("__rseq_offset", "__rseq_size", "__rseq_flags"),
            elf_defines=(SymbolRule("__rseq_offset", "object", size=8, pointer_sized=True),
                         SymbolRule("__rseq_size", "object", size=4),
                         SymbolRule("__rseq_flags", "object", size=4)),
            runtime_recognition="weak references to __rseq_offset and __rseq_size: __rseq_size != 0 "
                                "means glibc registered every thread",
            registers_when="every thread, at start-up and in pthread_create, unless glibc.pthread.rseq=0",
            length="32 up to 2.40; max(AT_RSEQ_FEATURE_SIZE, 32) from 2.41",
            on_refusal="the main thread runs without (cpu_id -2, __rseq_size 0); a thread created by a "
                       "registered thread dies with 'Fatal glibc error: rseq registration failed'",
            refusal="fatal",
            behaviour=_behaviour(
                glibc="registers every thread; publishes the area through __rseq_offset",
                glibc_static="the same (libc.a); the symbols are reachable by weak references only",
                glibc_rseq_off="registers nothing; __rseq_size is 0, __rseq_offset still valid",
                glibc_old="no rseq support at all",
                musl="-",
                denied="main thread: cpu_id -2, __rseq_size 0 (no registration)",
            ),
            notes="__rseq_size: 32 (2.35-2.39 releases), 20 (2.40 and the bug 31965 backports; the "
                  "registration is still 32 bytes), the kernel feature size from 2.41 (28 on 6.3-6.19, "
                  "33 on 7.x). __rseq_offset is negative on x86_64 from 2.41.",
        ),
        Adopter(
            name="librseq",
            title="librseq (compudj/librseq)",
            area="private",
            api_prefixes=("rseq",),
            publishes=("rseq_offset", "rseq_size", "rseq_flags"),
            elf_defines=(*_LIBRSEQ_API, SymbolRule("rseq_mempool_create", "func")),
            runtime_recognition="weak references (and, for a library loaded later, dlsym(RTLD_DEFAULT)) "
                                "of rseq_register_current_thread and rseq_offset",
            uses_glibc_area=True,
            glibc_lookup="dlsym",
            registers_when="a thread, only when the application calls rseq_register_current_thread()",
            length="max(rseq_size, 32): 32 for the first thread, the feature size after",
            on_refusal="returns -1 while no thread registered; abort() ('incoherent success/failure') "
                       "once one did",
            refusal="abort-after-success",
            tls_align=1024,
            behaviour=_behaviour(
                glibc="uses glibc's area (finds __rseq_offset with dlsym(RTLD_NEXT)); no syscall",
                glibc_static="dlsym finds nothing, so it registers its private area: refused "
                             "(EINVAL, glibc registered), rseq_register_current_thread() returns -1",
                glibc_rseq_off="registers its private initial-exec TLS area (1024-aligned) on request",
                glibc_old="registers its private area on request",
                musl="registers its private area on request",
                denied="rseq_register_current_thread() returns -1",
            ),
            notes="The area is a static (local) TLS symbol __rseq_abi: invisible to other modules. "
                  "rseq_offset is 0 and rseq_size -1U until its constructor ran.",
        ),
        Adopter(
            name="selftests",
            title="Linux kernel rseq selftests (tools/testing/selftests/rseq)",
            area="private",
            api_prefixes=("rseq",),
            publishes=("rseq_offset", "rseq_size", "rseq_flags"),
            elf_defines=_LIBRSEQ_API,
            elf_absent=("rseq_mempool_create",),
            runtime_recognition="the same as librseq (the same exported names)",
            uses_glibc_area=True,
            registers_when="a thread, when the test calls rseq_register_current_thread()",
            length="32, or the feature size when above 32 (2026 versions)",
            on_refusal="returns -1 while no thread registered; abort() once one did",
            refusal="abort-after-success",
            tls_align=256,
            behaviour=_behaviour(
                glibc="uses glibc's area (weak references, then dlsym)",
                glibc_static="uses glibc's area (the weak references resolve in libc.a)",
                glibc_rseq_off="registers its private TLS area __rseq on request",
                glibc_old="registers its private area on request",
                musl="registers its private area on request",
                denied="rseq_register_current_thread() returns -1",
            ),
            notes="Area: a local TLS union __rseq of 1024 bytes (struct rseq_abi aligned 256 since 2026, "
                  "32 before: only the older builds can be dlopen'd).",
        ),
        Adopter(
            name="tcmalloc",
            title="tcmalloc (google/tcmalloc)",
            area="shared",
            publishes=("__rseq_abi",),
            elf_defines=(SymbolRule("__rseq_abi", "tls", size=32), SymbolRule("tcmalloc_slabs", "tls")),
            runtime_recognition="shares __rseq_abi: a thread it registered has cpu_id >= 0 there",
            uses_glibc_area=False,
            registers_when="a thread, on its first per-CPU use (first malloc), when __rseq_abi.cpu_id < 0",
            length="32",
            on_refusal="the first thread refused: slow mode for the whole process; after fast mode, a "
                       "refused thread aborts (TC_CHECK)",
            refusal="slow-mode",
            tls_align=64,
            needs_own_rseq_abi=True,
            writes_cpu_id_start=True,
            behaviour=_behaviour(
                glibc="its registration is refused (EINVAL: glibc's area is registered): slow mode, "
                      "unless glibc.pthread.rseq=0",
                glibc_static="the same as dynamic glibc: slow mode",
                glibc_rseq_off="registers __rseq_abi on each thread: fast mode",
                glibc_old="registers __rseq_abi on each thread: fast mode",
                musl="registers __rseq_abi on each thread: fast mode",
                denied="slow mode",
            ),
            notes="Never reads glibc's symbols. Overlays tcmalloc_slabs (8 bytes) on "
                  "__rseq_abi.cpu_id_start and checks that layout in fast mode, so __rseq_abi must "
                  "resolve to its own definition: another module's __rseq_abi earlier in symbol "
                  "lookup order makes it abort.",
        ),
        Adopter(
            name="rseq-gen",
            title="rseq-gen generated modules",
            area="protocol",
            publishes=(),
            elf_defines=(),
            elf_note=".note.rseq-gen",
            runtime_recognition="shared-area protocols meet on __rseq_abi (and __rseq_refcount, "
                                "__rseq_handled); see the protocol table",
            registers_when="as its protocol says (rseq_gen.protocols)",
            length="32",
            on_refusal="runs on exact fallbacks",
            refusal="fallback",
            behaviour=_behaviour(
                glibc="per protocol", glibc_static="per protocol", glibc_rseq_off="per protocol",
                glibc_old="per protocol",
                musl="per protocol", denied="fallbacks",
            ),
        ),
    )
}

#: Adopters that publish a private area through the librseq names; the
#: generated runtime treats them alike (owner "librseq").
LIBRSEQ_ABI = tuple(a.name for a in ADOPTERS.values() if a.publishes == ("rseq_offset", "rseq_size",
                                                                            "rseq_flags"))


#: Every symbol name an ELF signature looks at (what a reader must look up).
SIGNATURE_SYMBOLS = tuple(dict.fromkeys(
    [r.name for a in ADOPTERS.values() for r in a.elf_defines]
    + [n for a in ADOPTERS.values() for n in a.elf_absent]))


def recognise(defined: dict[str, dict], notes: bool = False, elfclass: int = 64) -> list[str]:
    """Adopter names whose ELF signature matches. ``defined`` maps a defined
    symbol name to ``{"type": ..., "bind": ..., "size": ..., "dynamic": bool}``
    (type "object", "func" or "tls"; bind "global", "weak" or "local": a
    symbol a shared object does not export is "local" whatever its STB);
    ``notes``: the image carries the rseq-gen note; ``elfclass``: 32 or 64
    (pointer-sized symbols are half as big in ELF32)."""
    found = []
    for a in ADOPTERS.values():
        if a.elf_note:
            if notes:
                found.append(a.name)
            continue
        if not a.elf_defines:
            continue
        if all(_matches(rule, defined.get(rule.name), elfclass) for rule in a.elf_defines) and \
                not any(name in defined for name in a.elf_absent):
            found.append(a.name)
    return found


def _matches(rule: SymbolRule, sym: dict | None, elfclass: int = 64) -> bool:
    if sym is None or sym.get("type") != rule.type:
        return False
    if rule.bind == "global" and sym.get("bind") not in ("global", "weak"):
        return False
    if rule.bind == "local" and sym.get("bind") != "local":
        return False
    size = rule.size_for(elfclass)
    return size is None or sym.get("size") in (None, size)


def reserved_prefix_owner(prefix: str) -> Adopter | None:
    """The adopter whose API a generated module of this prefix would collide
    with, or None."""
    for adopter in ADOPTERS.values():
        for taken in adopter.api_prefixes:
            if prefix == taken or prefix.startswith(taken + "_"):
                return adopter
    return None
